/* test_metrics.c — rt_metrics: counters, gauges, cumulative histogram buckets, label escaping,
 * and the exposition text. */
#include <stdlib.h>
#include "tests/t.h"
#include "runtime/rt_metrics.h"

static void test_counter_and_gauge(void)
{
	rt_metrics *m = rt_metrics_new();
	rt_metric_family *c = rt_metrics_family(m, "x_total", RT_METRIC_COUNTER, "Things.", NULL, 0);
	rt_metric_family *g = rt_metrics_family(m, "x_level", RT_METRIC_GAUGE, "Level.", NULL, 0);
	T_CHECK(c && g);
	T_CHECK(rt_metrics_family(m, "x_total", RT_METRIC_COUNTER, "Things.", NULL, 0) == c);
	T_CHECK(rt_metrics_family(m, "x_total", RT_METRIC_GAUGE, "Things.", NULL, 0) == NULL);
	const char *a[] = {"route", "/a", "code", "200"};
	const char *b[] = {"route", "q\"u\\o\nte", "code", "500"};
	rt_metric_add(c, 1, 2, a);
	rt_metric_add(c, 2, 2, a);
	rt_metric_add(c, 1, 2, b);
	rt_metric_set(g, 7.5, 0, NULL);
	rt_metric_set(g, 3, 0, NULL);
	char *text;
	size_t len;
	T_EQ_INT(rt_metrics_render(m, &text, &len), 0);
	T_EQ_INT(strlen(text), len);
	T_CHECK(strstr(text, "# HELP x_total Things.\n# TYPE x_total counter\n") != NULL);
	T_CHECK(strstr(text, "x_total{route=\"/a\",code=\"200\"} 3\n") != NULL);
	T_CHECK(strstr(text, "x_total{route=\"q\\\"u\\\\o\\nte\",code=\"500\"} 1\n") != NULL);
	T_CHECK(strstr(text, "x_level 3\n") != NULL);
	free(text);
	rt_metrics_free(m);
}

static void test_histogram(void)
{
	rt_metrics *m = rt_metrics_new();
	double bounds[] = {0.1, 1, 10};
	rt_metric_family *h = rt_metrics_family(m, "lat_seconds", RT_METRIC_HISTOGRAM, "Latency.", bounds, 3);
	const char *kv[] = {"f", "a"};
	double obs[] = {0.05, 0.1, 0.5, 2, 20, 30};
	for (size_t i = 0; i < 6; i++)
		rt_metric_observe(h, obs[i], 1, kv);
	char *text;
	size_t len;
	T_EQ_INT(rt_metrics_render(m, &text, &len), 0);
	T_CHECK(strstr(text, "lat_seconds_bucket{f=\"a\",le=\"0.1\"} 2\n") != NULL);
	T_CHECK(strstr(text, "lat_seconds_bucket{f=\"a\",le=\"1\"} 3\n") != NULL);
	T_CHECK(strstr(text, "lat_seconds_bucket{f=\"a\",le=\"10\"} 4\n") != NULL);
	T_CHECK(strstr(text, "lat_seconds_bucket{f=\"a\",le=\"+Inf\"} 6\n") != NULL);
	T_CHECK(strstr(text, "lat_seconds_count{f=\"a\"} 6\n") != NULL);
	T_CHECK(strstr(text, "lat_seconds_sum{f=\"a\"} 52.65") != NULL);
	free(text);
	rt_metrics_free(m);
}

void t_main(void)
{
	T_RUN(test_counter_and_gauge);
	T_RUN(test_histogram);
}

/* test_metrics.c — rt_metrics: counters, gauges, cumulative histogram buckets, label escaping,
 * and the exposition text. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tests/t.h"
#include "runtime/base/rt_metrics.h"

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

static char *render(rt_metrics *m)
{
	char *text = NULL;
	size_t len;
	T_EQ_INT(rt_metrics_render(m, &text, &len), 0);
	return text;
}

static int count_lines(const char *text, const char *prefix)
{
	int n = 0;
	size_t pl = strlen(prefix);
	for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
		if (strncmp(p, prefix, pl) == 0)
			n++;
	return n;
}

/* a deleted function's series go from every family; other functions' and unlabelled ones stay;
 * a value that merely contains the name, or a quote-escaped look-alike, is not matched */
static void test_drop_label(void)
{
	rt_metrics *m = rt_metrics_new();
	rt_metric_family *c = rt_metrics_family(m, "calls_total", RT_METRIC_COUNTER, "C.", NULL, 0);
	double b[] = {1};
	rt_metric_family *h = rt_metrics_family(m, "lat_seconds", RT_METRIC_HISTOGRAM, "L.", b, 1);
	const char *a1[] = {"function", "a", "code", "200"};
	const char *a2[] = {"function", "a", "code", "500"};
	const char *ab[] = {"function", "ab", "code", "200"};
	const char *tricky[] = {"x", "function=\"a\"", "function", "b"};
	const char *ha[] = {"function", "a"};
	const char *hb[] = {"function", "b"};
	rt_metric_add(c, 1, 2, a1);
	rt_metric_add(c, 1, 2, a2);
	rt_metric_add(c, 1, 2, ab);
	rt_metric_add(c, 1, 2, tricky);
	rt_metric_add(c, 1, 0, NULL);
	rt_metric_observe(h, 0.5, 1, ha);
	rt_metric_observe(h, 0.5, 1, hb);
	T_EQ_INT(rt_metrics_drop_label(m, "function", "a"), 3);
	char *t = render(m);
	T_CHECK(strstr(t, "function=\"a\"}") == NULL);
	T_CHECK(strstr(t, "function=\"a\",") == NULL);
	T_CHECK(strstr(t, "calls_total{function=\"ab\",code=\"200\"} 1\n") != NULL);
	T_CHECK(strstr(t, "calls_total{x=\"function=\\\"a\\\"\",function=\"b\"} 1\n") != NULL);
	T_CHECK(strstr(t, "calls_total 1\n") != NULL);
	T_CHECK(strstr(t, "lat_seconds_count{function=\"b\"} 1\n") != NULL);
	free(t);
	T_EQ_INT(rt_metrics_drop_label(m, "function", "a"), 0);
	/* a label set dropped comes back from zero when used again */
	rt_metric_add(c, 1, 2, a1);
	t = render(m);
	T_CHECK(strstr(t, "calls_total{function=\"a\",code=\"200\"} 1\n") != NULL);
	free(t);
	rt_metrics_free(m);
}

/* past the cap, a counter's or histogram's new label sets fold into one overflow series (the
 * family total stays right), a gauge's are dropped, each counted; dropping series frees room */
static void test_series_cap(void)
{
	rt_metrics *m = rt_metrics_new();
	rt_metrics_set_max_series(m, 50);
	rt_metric_family *c = rt_metrics_family(m, "calls_total", RT_METRIC_COUNTER, "C.", NULL, 0);
	rt_metric_family *g = rt_metrics_family(m, "state", RT_METRIC_GAUGE, "S.", NULL, 0);
	double b[] = {1};
	rt_metric_family *h = rt_metrics_family(m, "lat_seconds", RT_METRIC_HISTOGRAM, "L.", b, 1);
	for (int i = 0; i < 1000; i++) {
		char name[16];
		snprintf(name, sizeof name, "f%d", i);
		const char *kv[] = {"function", name};
		rt_metric_add(c, 2, 1, kv);
		rt_metric_set(g, 1, 1, kv);
		rt_metric_observe(h, 0.5, 1, kv);
	}
	char *t = render(m);
	T_EQ_INT(count_lines(t, "calls_total{function="), 50);
	T_EQ_INT(count_lines(t, "state{function="), 50);
	T_EQ_INT(count_lines(t, "lat_seconds_count{function="), 50);
	T_CHECK(strstr(t, "calls_total{overflow=\"true\"} 1900\n") != NULL);
	T_CHECK(strstr(t, "lat_seconds_count{overflow=\"true\"} 950\n") != NULL);
	T_CHECK(strstr(t, "state{overflow") == NULL);
	T_CHECK(strstr(t, "thaw_metrics_overflow_total{family=\"calls_total\"} 950\n") != NULL);
	T_CHECK(strstr(t, "thaw_metrics_overflow_total{family=\"state\"} 950\n") != NULL);
	T_CHECK(strstr(t, "calls_total{function=\"f999\"}") == NULL);
	/* an existing series keeps counting past the cap */
	const char *f0[] = {"function", "f0"};
	rt_metric_add(c, 1, 1, f0);
	free(t);
	t = render(m);
	T_CHECK(strstr(t, "calls_total{function=\"f0\"} 3\n") != NULL);
	free(t);
	T_EQ_INT(rt_metrics_drop_label(m, "function", "f0"), 3);
	const char *n1[] = {"function", "new"};
	rt_metric_add(c, 1, 1, n1);
	t = render(m);
	T_CHECK(strstr(t, "calls_total{function=\"new\"} 1\n") != NULL);
	T_EQ_INT(count_lines(t, "calls_total{function="), 50);
	free(t);
	rt_metrics_free(m);
}

void t_main(void)
{
	T_RUN(test_drop_label);
	T_RUN(test_series_cap);
	T_RUN(test_counter_and_gauge);
	T_RUN(test_histogram);
}

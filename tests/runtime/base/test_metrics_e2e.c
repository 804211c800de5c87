/* test_metrics_e2e.c — metric series of deleted functions over real HTTP: 500 functions are
 * created, invoked once (a cold start, an invocation, queue and latency histograms, state
 * gauges) and deleted; GET /metrics afterwards is within a small margin of its size before,
 * names none of them, and still holds the series of a function that was kept. The job series
 * the Grafana dashboard reads are exported at zero before any job ran. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tests/e2e/e2e.h"
#include "tests/t.h"

#define NFUNCS 500

static e2e_server srv;
static int srv_ok;

static void setup(void)
{
	const char *args[] = {"--no-access-log", NULL};
	srv_ok = e2e_start(&srv, args, NULL) == 0;
}

static void teardown(void)
{
	if (srv_ok)
		e2e_stop(&srv, 15, 30);
}

/* create, invoke once, delete; 0 when each answered as it should */
static int cycle(const char *name)
{
	char path[128];
	snprintf(path, sizeof path, "/v1/functions/%s", name);
	if (e2e_call(&srv, "PUT", path, NULL, "{\"kind\":\"echo\"}", NULL) != 201)
		return -1;
	char ipath[160];
	snprintf(ipath, sizeof ipath, "%s/invoke", path);
	if (e2e_call(&srv, "POST", ipath, NULL, "{\"x\":1}", NULL) != 200)
		return -1;
	if (e2e_call(&srv, "DELETE", path, NULL, NULL, NULL) != 200)
		return -1;
	return 0;
}

static char *get_metrics(size_t *len)
{
	e2e_resp r;
	if (e2e_call(&srv, "GET", "/metrics", NULL, NULL, &r) != 200) {
		e2e_resp_free(&r);
		return NULL;
	}
	char *body = r.body;
	*len = r.body_len;
	r.body = NULL;
	e2e_resp_free(&r);
	return body;
}

/* deploy/grafana/dashboard.json's job panels: every series there from the start, at zero */
static void test_job_series_at_zero(void)
{
	if (!srv_ok)
		T_SKIP("server did not start");
	size_t len = 0;
	char *m = get_metrics(&len);
	T_CHECK(m != NULL);
	if (!m)
		return;
	static const char *const want[] = {
		"thaw_jobs{state=\"queued\"} 0\n", "thaw_jobs{state=\"running\"} 0\n",
		"thaw_job_steps_total{type=\"finetune\"} 0\n", "thaw_job_steps_total{type=\"quantize\"} 0\n",
		"thaw_job_preemptions_total 0\n", "thaw_job_spills_total 0\n", "thaw_job_restores_total 0\n",
		"thaw_preemption_latency_seconds_bucket{le=\"+Inf\"} 0\n",
		"thaw_preemption_latency_seconds_count 0\n",
	};
	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
		if (!strstr(m, want[i])) {
			fprintf(stderr, "  /metrics lacks %s", want[i]);
			T_CHECK(0);
		}
	free(m);
}

static void test_deleted_functions_leave_no_series(void)
{
	if (!srv_ok)
		T_SKIP("server did not start");
	/* one function kept throughout, one full cycle first: every family and route/code series
	 * the loop touches exists before the baseline is read */
	T_EQ_INT(e2e_call(&srv, "PUT", "/v1/functions/kept", NULL, "{\"kind\":\"echo\"}", NULL), 201);
	T_EQ_INT(e2e_call(&srv, "POST", "/v1/functions/kept/invoke", NULL, "{}", NULL), 200);
	T_EQ_INT(cycle("warmup"), 0);
	size_t len0 = 0, len1 = 0;
	free(get_metrics(&len0));   /* the first GET /metrics adds its own route's series */
	char *m0 = get_metrics(&len0);
	T_CHECK(m0 != NULL);
	int failed = 0;
	for (int i = 0; i < NFUNCS; i++) {
		char name[32];
		snprintf(name, sizeof name, "gone-%d", i);
		if (cycle(name) < 0)
			failed++;
	}
	T_EQ_INT(failed, 0);
	char *m1 = get_metrics(&len1);
	T_CHECK(m1 != NULL);
	printf("# /metrics: %zu bytes before %d create/invoke/delete cycles, %zu after\n", len0,
	       NFUNCS, len1);
	/* counters' digits may grow (request counts: 500 -> 2000); no series may be added */
	T_CHECK(len1 <= len0 + 512);
	T_CHECK(strstr(m1, "gone-") == NULL);
	T_CHECK(strstr(m1, "warmup") == NULL);
	T_CHECK(strstr(m1, "thaw_invocations_total{function=\"kept\",code=\"200\"} 1\n") != NULL);
	T_CHECK(strstr(m1, "thaw_function_state{function=\"kept\",state=\"warm\"} 1\n") != NULL);
	/* a name deleted and created again starts its series afresh */
	T_EQ_INT(e2e_call(&srv, "PUT", "/v1/functions/gone-7", NULL, "{\"kind\":\"echo\"}", NULL), 201);
	T_EQ_INT(e2e_call(&srv, "POST", "/v1/functions/gone-7/invoke", NULL, "{}", NULL), 200);
	free(m1);
	m1 = get_metrics(&len1);
	T_CHECK(m1 && strstr(m1, "thaw_invocations_total{function=\"gone-7\",code=\"200\"} 1\n"));
	free(m0);
	free(m1);
}

void t_main(void)
{
	setup();
	T_RUN(test_job_series_at_zero);
	T_RUN(test_deleted_functions_leave_no_series);
	teardown();
}

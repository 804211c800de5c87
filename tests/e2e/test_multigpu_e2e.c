/* test_multigpu_e2e.c — issue 9 end to end over real HTTP on a node with several GPUs, faked on
 * the CPU: `thaw serve --no-gpu --fake-gpus 2:MIB` opens two CPU lanes that the scheduler places
 * as cuda:0 and cuda:1, each with its own weight budget. Checks: /v1/devices lists them;
 * functions spread over them; two cold starts at once go to different devices; "cuda:N"
 * pinning is honoured (an unknown GPU is a clear 503); a full device spills to the other one
 * before anything is evicted; per-device metrics; "auto" jobs spread over idle GPUs. Every
 * answer is checked against the PyTorch reference logits of tests/data/mlp_digits. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <jansson.h>
#include "tests/e2e/e2e.h"
#include "tests/t.h"

static e2e_server srv;
static int srv_ok;
static const char *src, *bin;
static char body1[4096];       /* one digits row as an invoke body */
static int want_label;         /* its label from the reference */

static int call(const char *method, const char *path, const char *body, json_t **out)
{
	return e2e_call_json(&srv, method, path, NULL, body, out);
}

/* the device function name is warm on ("" when none) */
static const char *fn_device(const char *name)
{
	static char dev[32];
	char path[128];
	json_t *o = NULL;
	dev[0] = 0;
	snprintf(path, sizeof path, "/v1/functions/%s", name);
	if (call("GET", path, NULL, &o) == 200) {
		const char *d = json_string_value(json_object_get(o, "device"));
		snprintf(dev, sizeof dev, "%s", d ? d : "");
	}
	json_decref(o);
	return dev;
}

static double metric(const char *series)
{
	e2e_resp r;
	double v = -1;
	memset(&r, 0, sizeof r);
	if (e2e_request(&srv, "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n", &r) == 0) {
		char *p = strstr(r.body, series);
		v = p ? atof(p + strlen(series) + 1) : 0;
	}
	e2e_resp_free(&r);
	return v;
}

static int deploy(const char *name, const char *device)
{
	char path[128], body[256];
	snprintf(path, sizeof path, "/v1/functions/%s", name);
	snprintf(body, sizeof body, "{\"kind\":\"mlp\",\"snapshot\":\"digits.thaw\",\"device\":\"%s\","
		 "\"idle_timeout_s\":600}", device);
	return call("PUT", path, body, NULL);
}

/* invokes name and checks the label against the PyTorch reference */
static int invoke_ok(const char *name)
{
	char path[128];
	json_t *o = NULL;
	snprintf(path, sizeof path, "/v1/functions/%s/invoke", name);
	int st = call("POST", path, body1, &o);
	int ok = st == 200 &&
		 json_integer_value(json_array_get(json_object_get(o, "labels"), 0)) == want_label;
	if (!ok)
		fprintf(stderr, "  invoke %s: %d\n", name, st);
	json_decref(o);
	return ok;
}

static void unload(const char *name)
{
	char path[128];
	snprintf(path, sizeof path, "/v2/repository/models/%s/unload", name);
	call("POST", path, "{}", NULL);
	/* the unload completes asynchronously: wait for it (generously: ASan on a loaded machine) */
	T_CHECK(e2e_wait_state(&srv, name, "cold", 20000));
}

static void setup(void)
{
	src = getenv("THAW_SRC");
	bin = getenv("THAW_BIN");
	if (!src)
		src = ".";
	if (!bin)
		bin = "build/thaw";
	char cmd[2048];
	json_t *exp = NULL;
	double row[1][64] = {{0}};
	e2e_digits(row, 1, &exp);
	want_label = (int)json_integer_value(json_array_get(json_object_get(exp, "labels"), 0));
	json_decref(exp);
	int n = snprintf(body1, sizeof body1, "{\"inputs\":[[");
	for (int k = 0; k < 64; k++)
		n += snprintf(body1 + n, sizeof body1 - n, "%s%g", k ? "," : "", row[0][k]);
	snprintf(body1 + n, sizeof body1 - n, "]]}");
	/* each fake GPU holds two digits images (~9.3 KB each) but not three */
	static char root[700];
	char *abs = realpath(src, NULL);
	snprintf(root, sizeof root, "%s/tests/data", abs ? abs : src);
	free(abs);
	const char *args[] = {"--no-gpu", "--fake-gpus", "2:0.02", "--no-access-log", "--allow-root",
			      root, "--job-checkpoint", "0.05", NULL};
	srv_ok = e2e_start(&srv, args, NULL) == 0;
	if (!srv_ok)
		return;
	snprintf(cmd, sizeof cmd, "mkdir -p %s/snapshots && %s snapshot pack "
		 "%s/tests/data/mlp_digits/model.safetensors -o %s/snapshots/digits.thaw --kind mlp "
		 "--quiet", srv.data_dir, bin, src, srv.data_dir);
	if (system(cmd) != 0)
		srv_ok = 0;
}

#define NEED() do { if (!srv_ok) { T_CHECK(!"server did not start"); return; } } while (0)

static void test_devices_listed(void)
{
	NEED();
	json_t *o = NULL;
	T_EQ_INT(call("GET", "/v1/devices", NULL, &o), 200);
	json_t *arr = json_object_get(o, "devices");
	if (!arr)
		arr = o;
	T_EQ_INT((int)json_array_size(arr), 3);
	T_EQ_STR(json_string_value(json_object_get(json_array_get(arr, 0), "device")), "cpu");
	T_EQ_STR(json_string_value(json_object_get(json_array_get(arr, 1), "device")), "cuda:0");
	T_EQ_STR(json_string_value(json_object_get(json_array_get(arr, 2), "device")), "cuda:1");
	T_CHECK(json_is_true(json_object_get(json_array_get(arr, 2), "fake")));
	T_EQ_INT((int)json_integer_value(json_object_get(json_array_get(arr, 1), "memory_total")),
		 (int)(0.02 * (1 << 20)));
	json_decref(o);
	T_CHECK(e2e_log_contains(&srv, "2 fake GPUs"));
}

static void test_spread_and_concurrent_cold_starts(void)
{
	NEED();
	T_EQ_INT(deploy("a", "auto"), 201);
	T_EQ_INT(deploy("b", "auto"), 201);
	/* one after the other: a on cuda:0, b where there is more free memory */
	T_CHECK(invoke_ok("a"));
	T_EQ_STR(fn_device("a"), "cuda:0");
	T_CHECK(invoke_ok("b"));
	T_EQ_STR(fn_device("b"), "cuda:1");
	unload("a");
	unload("b");
	/* both at once from cold: the second goes where no cold start is under way */
	int fa = e2e_connect(&srv), fb = e2e_connect(&srv);
	T_CHECK(fa >= 0 && fb >= 0);
	char raw[5000];
	const char *names[] = {"a", "b"};
	int fds[] = {fa, fb};
	for (int i = 0; i < 2; i++) {
		int n = snprintf(raw, sizeof raw, "POST /v1/functions/%s/invoke HTTP/1.1\r\nHost: t\r\n"
				 "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
				 names[i], strlen(body1), body1);
		T_EQ_INT(e2e_send(fds[i], raw, (size_t)n), 0);
	}
	for (int i = 0; i < 2; i++) {
		e2e_resp r;
		memset(&r, 0, sizeof r);
		T_EQ_INT(e2e_read_resp(fds[i], &r), 0);
		T_EQ_INT(r.status, 200);
		e2e_resp_free(&r);
		close(fds[i]);
	}
	const char *da = fn_device("a");
	char dev_a[32];
	snprintf(dev_a, sizeof dev_a, "%s", da);
	T_CHECK(strncmp(dev_a, "cuda:", 5) == 0);
	T_CHECK(strncmp(fn_device("b"), "cuda:", 5) == 0);
	T_CHECK(strcmp(dev_a, fn_device("b")) != 0);
	T_EQ_INT(metric("thaw_device_cold_starts_total{device=\"cuda:0\",tier=\"host\"}") +
		 metric("thaw_device_cold_starts_total{device=\"cuda:1\",tier=\"host\"}") +
		 metric("thaw_device_cold_starts_total{device=\"cuda:0\",tier=\"disk\"}") +
		 metric("thaw_device_cold_starts_total{device=\"cuda:1\",tier=\"disk\"}"), 4);
	unload("a");
	unload("b");
}

static void test_pinning(void)
{
	NEED();
	T_EQ_INT(deploy("p1", "cuda:1"), 201);
	T_CHECK(invoke_ok("p1"));
	T_EQ_STR(fn_device("p1"), "cuda:1");
	/* cuda:1 is now the fuller one, but pinning wins */
	T_EQ_INT(deploy("p2", "cuda:1"), 201);
	T_CHECK(invoke_ok("p2"));
	T_EQ_STR(fn_device("p2"), "cuda:1");
	T_EQ_INT(deploy("pc", "cpu"), 201);
	T_CHECK(invoke_ok("pc"));
	T_EQ_STR(fn_device("pc"), "cpu");
	/* a GPU this node does not have: a clear 503, others unaffected */
	T_EQ_INT(deploy("p9", "cuda:9"), 201);
	json_t *o = NULL;
	T_EQ_INT(call("POST", "/v1/functions/p9/invoke", body1, &o), 503);
	const char *e = json_string_value(json_object_get(o, "error"));
	T_CHECK(e && strstr(e, "cuda:9") && strstr(e, "not available"));
	json_decref(o);
	T_CHECK(invoke_ok("p1"));
}

static void test_spill_before_evict(void)
{
	NEED();
	/* cuda:1 is full (p1, p2); an auto function goes to cuda:0 and nothing is evicted */
	double ev0 = metric("thaw_evictions_total{function=\"p1\"}") +
		     metric("thaw_evictions_total{function=\"p2\"}");
	T_EQ_INT(deploy("s1", "auto"), 201);
	T_CHECK(invoke_ok("s1"));
	T_EQ_STR(fn_device("s1"), "cuda:0");
	T_EQ_INT(deploy("s2", "auto"), 201);
	T_CHECK(invoke_ok("s2"));
	T_EQ_STR(fn_device("s2"), "cuda:0");
	T_EQ_INT(metric("thaw_evictions_total{function=\"p1\"}") +
		 metric("thaw_evictions_total{function=\"p2\"}"), ev0);
	T_EQ_STR(fn_device("p1"), "cuda:1");
	/* both GPUs full: a third auto function evicts the least recently used idle one on a GPU
	 * rather than running on the CPU */
	T_EQ_INT(deploy("s3", "auto"), 201);
	T_CHECK(invoke_ok("s3"));
	T_CHECK(strncmp(fn_device("s3"), "cuda:", 5) == 0);
	double ev = 0;
	const char *four[] = {"s1", "s2", "p1", "p2"};
	for (int i = 0; i < 4; i++) {
		char series[96];
		snprintf(series, sizeof series, "thaw_evictions_total{function=\"%s\"}", four[i]);
		ev += metric(series);
	}
	T_EQ_INT(ev, ev0 + 1);     /* one idle instance made room, on the device s3 went to */
	/* per-device metrics */
	T_CHECK(metric("thaw_device_invocations_total{device=\"cuda:0\"}") >= 3);
	T_CHECK(metric("thaw_device_invocations_total{device=\"cuda:1\"}") >= 3);
	T_CHECK(metric("thaw_device_invocations_total{device=\"cpu\"}") >= 1);
	T_EQ_INT(metric("thaw_device_functions{device=\"cuda:0\"}") +
		 metric("thaw_device_functions{device=\"cuda:1\"}"), 4);
	T_CHECK(metric("thaw_device_memory_bytes{device=\"cuda:1\",type=\"used\"}") > 0);
	T_CHECK(metric("thaw_lane_busy_ratio{device=\"cuda:1\"}") >= 0);
}

static void test_jobs_spread_over_idle_gpus(void)
{
	NEED();
	/* cuda:0 holds s1,s2 (or s3), cuda:1 the rest: unload everything on cuda:1, then two auto
	 * jobs: the first takes the GPU with no functions, the second the other GPU, not the CPU */
	const char *all[] = {"p1", "p2", "s1", "s2", "s3", "pc"};
	for (int i = 0; i < 6; i++)
		if (strcmp(fn_device(all[i]), "cuda:1") == 0)
			unload(all[i]);
	T_CHECK(invoke_ok("s2"));
	char spec[1024];
	long long ids[2];
	for (int i = 0; i < 2; i++) {
		snprintf(spec, sizeof spec, "{\"type\": \"finetune\", \"function\": \"a\", \"revision\": 1, "
			 "\"device\": \"auto\", \"params\": {\"data\": \"%s/tests/data/digits.csv.gz\", "
			 "\"epochs\": 1, \"batch_size\": 32, \"feature_scale\": 0.0625, \"seed\": %d}}",
			 src, i + 1);
		json_t *o = NULL;
		T_EQ_INT(call("POST", "/v1/jobs", spec, &o), 202);
		ids[i] = (long long)json_integer_value(json_object_get(o, "id"));
		json_decref(o);
	}
	char line[128];
	int seen[2] = {0, 0};
	double end = e2e_now_s() + 30;
	while (e2e_now_s() < end && !(seen[0] && seen[1])) {
		snprintf(line, sizeof line, "job %lld starting on cuda:1", ids[0]);
		seen[0] = e2e_log_contains(&srv, line);
		snprintf(line, sizeof line, "job %lld starting on cuda:0", ids[1]);
		seen[1] = e2e_log_contains(&srv, line);
		usleep(20000);
	}
	T_CHECK(seen[0]);
	T_CHECK(seen[1]);
	/* both finish; serving goes on meanwhile */
	T_CHECK(invoke_ok("s2"));
	for (int i = 0; i < 2; i++) {
		const char *st = "";
		for (int t = 0; t < 1500; t++) {
			char path[64];
			json_t *o = NULL;
			snprintf(path, sizeof path, "/v1/jobs/%lld", ids[i]);
			call("GET", path, NULL, &o);
			static char buf[32];
			const char *v = json_string_value(json_object_get(o, "state"));
			snprintf(buf, sizeof buf, "%s", v ? v : "");
			json_decref(o);
			st = buf;
			if (strcmp(st, "succeeded") == 0 || strcmp(st, "failed") == 0)
				break;
			usleep(20000);
		}
		T_EQ_STR(st, "succeeded");
	}
}

/* the same on real GPUs when this node has two or more (the H100 x2 machine); skipped else */
static void test_real_gpus(void)
{
	if (!srv_ok) {
		T_CHECK(!"server did not start");
		return;
	}
	e2e_server keep = srv, g;
	const char *args[] = {"--no-access-log", NULL};
	T_EQ_INT(e2e_start(&g, args, NULL), 0);
	srv = g;
	json_t *o = NULL;
	int ngpu = 0;
	if (call("GET", "/v1/devices", NULL, &o) == 200) {
		json_t *arr = json_object_get(o, "devices");
		for (size_t i = 0; i < json_array_size(arr ? arr : o); i++) {
			const char *k = json_string_value(json_object_get(json_array_get(arr ? arr : o, i), "kind"));
			ngpu += k && strcmp(k, "cuda") == 0;
		}
	}
	json_decref(o);
	if (ngpu < 2) {
		T_EQ_INT(e2e_stop(&srv, SIGTERM, 20), 0);
		srv = keep;
		T_SKIP("fewer than 2 GPUs");
	}
	char cmd[2048];
	snprintf(cmd, sizeof cmd, "mkdir -p %s/snapshots && cp %s/snapshots/digits.thaw %s/snapshots/",
		 srv.data_dir, keep.data_dir, srv.data_dir);
	T_EQ_INT(system(cmd), 0);
	T_EQ_INT(deploy("ga", "auto"), 201);
	T_EQ_INT(deploy("gb", "auto"), 201);
	T_EQ_INT(deploy("g1", "cuda:1"), 201);
	T_CHECK(invoke_ok("ga"));
	T_CHECK(invoke_ok("gb"));
	T_CHECK(invoke_ok("g1"));
	char da[32];
	snprintf(da, sizeof da, "%s", fn_device("ga"));
	T_CHECK(strncmp(da, "cuda:", 5) == 0);
	T_CHECK(strncmp(fn_device("gb"), "cuda:", 5) == 0);
	T_CHECK(strcmp(da, fn_device("gb")) != 0);
	T_EQ_STR(fn_device("g1"), "cuda:1");
	T_CHECK(metric("thaw_device_invocations_total{device=\"cuda:1\"}") >= 2);
	T_EQ_INT(e2e_stop(&srv, SIGTERM, 20), 0);
	srv = keep;
}

void t_main(void)
{
	setup();
	T_RUN(test_devices_listed);
	T_RUN(test_spread_and_concurrent_cold_starts);
	T_RUN(test_pinning);
	T_RUN(test_spill_before_evict);
	T_RUN(test_jobs_spread_over_idle_gpus);
	T_RUN(test_real_gpus);
	if (srv_ok)
		T_EQ_INT(e2e_stop(&srv, SIGTERM, 20), 0);
}

/* test_functions_e2e.c — issue 5 end to end over real HTTP: deploy, invoke (checked against the
 * PyTorch reference logits of tests/data/mlp_digits), idle eviction to the host tier and to
 * disk, cold starts counted, concurrent calls during a cold start, restart persistence, traffic
 * split, the Open Inference Protocol (JSON and binary tensors), bad manifests and bodies, and the
 * GPU variants (skipped without a GPU). */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <jansson.h>
#include "tests/e2e/e2e.h"
#include "tests/t.h"

static e2e_server srv;
static int srv_ok;
/* digits' idle timeout and the server's host-tier ttl: long enough that a few requests under
 * ASan on a loaded machine fit inside each, short enough to keep the test quick; the waits
 * poll the state with a deadline (WAIT_MS) instead of sleeping a fixed time */
#define IDLE_S 1.0
#define HOST_TTL "2"
#define WAIT_MS 20000
static char snap_path[600];
static double rows[16][64];      /* digits rows, scaled by 1/16 as the model was trained */
static json_t *expected;         /* tests/data/mlp_digits/expected.json */

static int sh(const char *fmt, const char *a, const char *b)
{
	char cmd[2048];
	snprintf(cmd, sizeof cmd, fmt, a, b);
	return system(cmd);
}

static void setup(void)
{
	const char *bin = t_bin(), *src = t_src();
	if (e2e_digits(rows, 16, &expected) < 0)
		expected = NULL;
	const char *args[] = {"--keepalive-timeout", "5", "--host-ttl", HOST_TTL, "--no-access-log", NULL};
	srv_ok = e2e_start(&srv, args, NULL) == 0;
	if (!srv_ok)
		return;
	snprintf(snap_path, sizeof snap_path, "%s/snapshots/digits.thaw", srv.data_dir);
	char dir[600];
	snprintf(dir, sizeof dir, "%s/snapshots", srv.data_dir);
	sh("mkdir -p %s%s", dir, "");
	char in[600];
	snprintf(in, sizeof in, "%s/tests/data/mlp_digits/model.safetensors", src);
	char cmd[2048];
	snprintf(cmd, sizeof cmd, "%s snapshot pack %s -o %s --kind mlp >/dev/null", bin, in, snap_path);
	if (system(cmd) != 0)
		srv_ok = 0;
	/* a snapshot that records no kind ("unknown") */
	snprintf(cmd, sizeof cmd, "%s snapshot pack %s -o %s/nokind.thaw -q", bin, in, dir);
	if (system(cmd) != 0)
		srv_ok = 0;
}

/* method path body -> response (status, parsed JSON in *out when not NULL) */
static int call(const e2e_server *s, const char *method, const char *path, const char *body,
		const char *extra_headers, json_t **out, char **hdrs)
{
	e2e_resp r;
	int st = e2e_call(s, method, path, extra_headers, body, &r);
	if (st < 0)
		return -1;
	if (out)
		*out = json_loadb(r.body, r.body_len, 0, NULL);
	if (hdrs)
		*hdrs = strdup(r.headers);
	e2e_resp_free(&r);
	return st;
}

static char *rows_json(int first, int n)
{
	json_t *arr = json_array();
	for (int r = first; r < first + n; r++) {
		json_t *row = json_array();
		for (int k = 0; k < 64; k++)
			json_array_append_new(row, json_real(rows[r][k]));
		json_array_append_new(arr, row);
	}
	json_t *o = json_pack("{s:o}", "inputs", arr);
	char *t = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return t;
}

static double metric(const e2e_server *s, const char *series)
{
	e2e_resp r;
	double v = -1;
	if (e2e_request(s, "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n", &r) == 0) {
		char *p = strstr(r.body, series);
		if (p)
			v = atof(p + strlen(series) + 1);
		else
			v = 0;
	}
	e2e_resp_free(&r);
	return v;
}

static const char *fn_state(const e2e_server *s, const char *name)
{
	static char st[32];
	char path[128];
	json_t *o = NULL;
	snprintf(path, sizeof path, "/v1/functions/%s", name);
	st[0] = 0;
	if (call(s, "GET", path, NULL, NULL, &o, NULL) == 200)
		snprintf(st, sizeof st, "%s", json_string_value(json_object_get(o, "state")));
	json_decref(o);
	return st;
}

/* checks outputs of rows first..first+n against the PyTorch logits */
static void check_logits(json_t *out, int first, int n, double tol)
{
	json_t *outs = json_object_get(out, "outputs"), *labels = json_object_get(out, "labels");
	json_t *ref = json_object_get(expected, "first_logits");
	T_EQ_INT(json_array_size(outs), n);
	for (int r = 0; r < n && r < (int)json_array_size(outs); r++) {
		json_t *row = json_array_get(outs, r), *rr = json_array_get(ref, first + r);
		T_EQ_INT(json_array_size(row), 10);
		double maxdiff = 0;
		for (int k = 0; k < 10; k++)
			maxdiff = fmax(maxdiff, fabs(json_number_value(json_array_get(row, k)) -
						     json_number_value(json_array_get(rr, k))));
		T_CHECK(maxdiff < tol);
		T_EQ_INT(json_integer_value(json_array_get(labels, r)),
			 json_integer_value(json_array_get(json_object_get(expected, "labels"), first + r)));
	}
}

#define NEED() do { if (!srv_ok || !expected) { T_CHECK(!"setup failed"); return; } } while (0)

static void test_deploy_invoke_evict(void)
{
	NEED();
	json_t *o = NULL;
	char manifest[256];
	snprintf(manifest, sizeof manifest, "{\"kind\":\"mlp\",\"snapshot\":\"digits.thaw\","
		 "\"idle_timeout_s\":%g,\"device\":\"cpu\"}", IDLE_S);
	T_EQ_INT(call(&srv, "PUT", "/v1/functions/digits", manifest, NULL, &o, NULL), 201);
	T_EQ_INT(json_integer_value(json_object_get(o, "revision")), 1);
	T_EQ_STR(json_string_value(json_object_get(o, "state")), "cold");
	json_decref(o);
	char *body = rows_json(0, 4);
	double t0 = e2e_now_s();
	T_EQ_INT(call(&srv, "POST", "/v1/functions/digits/invoke", body, NULL, &o, NULL), 200);
	check_logits(o, 0, 4, 1e-3);
	char *first = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	/* warm right after the call: certain only while less than the idle timeout has passed since
	 * the call was sent (half of it, for slack in the server's timer clock) */
	const char *st = fn_state(&srv, "digits");
	if (e2e_now_s() - t0 < IDLE_S / 2)
		T_EQ_STR(st, "warm");
	else
		fprintf(stderr, "  note: state read %.0f ms after the call (%s); warm check skipped\n",
			(e2e_now_s() - t0) * 1e3, st);
	T_EQ_INT(metric(&srv, "thaw_cold_starts_total{function=\"digits\",tier=\"disk\"}"), 1);
	/* idle IDLE_S -> evicted to the host tier (which it keeps for the host ttl, 2 s) */
	T_CHECK(e2e_wait_state(&srv, "digits", "host", WAIT_MS));
	T_EQ_INT(metric(&srv, "thaw_evictions_total{function=\"digits\"}"), 1);
	T_EQ_INT(metric(&srv, "thaw_function_state{function=\"digits\",state=\"host\"}"), 1);
	/* the next call comes back from the host tier with the same answer */
	T_EQ_INT(call(&srv, "POST", "/v1/functions/digits/invoke", body, NULL, &o, NULL), 200);
	char *second = json_dumps(o, JSON_COMPACT);
	T_EQ_STR(second, first);
	json_decref(o);
	T_EQ_INT(metric(&srv, "thaw_cold_starts_total{function=\"digits\",tier=\"host\"}"), 1);
	/* idle again, then the host tier's ttl passes -> cold (disk only) */
	T_CHECK(e2e_wait_state(&srv, "digits", "cold", WAIT_MS));
	T_EQ_INT(metric(&srv, "thaw_evictions_total{function=\"digits\"}"), 2);
	T_EQ_INT(call(&srv, "POST", "/v1/functions/digits/invoke", body, NULL, &o, NULL), 200);
	char *third = json_dumps(o, JSON_COMPACT);
	T_EQ_STR(third, first);
	json_decref(o);
	T_EQ_INT(metric(&srv, "thaw_cold_starts_total{function=\"digits\",tier=\"disk\"}"), 2);
	free(first);
	free(second);
	free(third);
	free(body);
}

static void test_concurrent_calls_during_cold_start(void)
{
	NEED();
	T_EQ_INT(call(&srv, "PUT", "/v1/functions/burst",
		      "{\"kind\":\"mlp\",\"snapshot\":\"digits.thaw\",\"max_queue\":64,\"concurrency\":4,\"max_batch\":4}",
		      NULL, NULL, NULL), 201);
	enum { N = 50 };
	int fds[N];
	char *body = rows_json(5, 1);
	char raw[4096];
	snprintf(raw, sizeof raw, "POST /v1/functions/burst/invoke HTTP/1.1\r\nHost: t\r\n"
		 "Content-Length: %zu\r\n\r\n%s", strlen(body), body);
	for (int i = 0; i < N; i++) {
		fds[i] = e2e_connect(&srv);
		T_CHECK(fds[i] >= 0);
	}
	for (int i = 0; i < N; i++)
		if (fds[i] >= 0)
			e2e_send(fds[i], raw, strlen(raw));
	int ok = 0, label = (int)json_integer_value(json_array_get(json_object_get(expected, "labels"), 5));
	for (int i = 0; i < N; i++) {
		e2e_resp r;
		if (fds[i] < 0 || e2e_read_resp(fds[i], &r) < 0) {
			e2e_resp_free(&r);
			continue;
		}
		json_t *o = json_loadb(r.body, r.body_len, 0, NULL);
		if (r.status == 200 &&
		    json_integer_value(json_array_get(json_object_get(o, "labels"), 0)) == label)
			ok++;
		json_decref(o);
		e2e_resp_free(&r);
		close(fds[i]);
	}
	T_EQ_INT(ok, N);
	T_EQ_INT(metric(&srv, "thaw_cold_starts_total{function=\"burst\",tier=\"disk\"}"), 1);
	/* calls held during the cold start ran in merged batches of at most max_batch (4) */
	json_t *st = NULL;
	T_EQ_INT(call(&srv, "GET", "/v2/models/burst/stats", NULL, NULL, &st, NULL), 200);
	json_t *ms = json_array_get(json_object_get(st, "model_stats"), 0);
	long long execs = json_integer_value(json_object_get(ms, "execution_count"));
	T_EQ_INT(json_integer_value(json_object_get(ms, "success_count")), N);
	T_CHECK(execs >= (N + 3) / 4 && execs < N);
	json_decref(st);
	free(body);
}

static void test_queue_full_503(void)
{
	NEED();
	T_EQ_INT(call(&srv, "PUT", "/v1/functions/noqueue",
		      "{\"kind\":\"mlp\",\"snapshot\":\"digits.thaw\",\"max_queue\":0}", NULL, NULL, NULL), 201);
	char *body = rows_json(0, 1), *h = NULL;
	json_t *o = NULL;
	T_EQ_INT(call(&srv, "POST", "/v1/functions/noqueue/invoke", body, NULL, &o, &h), 503);
	T_CHECK(json_is_string(json_object_get(o, "error")));
	T_CHECK(h && strstr(h, "Retry-After: 1"));
	free(h);
	json_decref(o);
	free(body);
}

static void test_min_scale_and_unload(void)
{
	NEED();
	T_EQ_INT(call(&srv, "PUT", "/v1/functions/pinned",
		      "{\"kind\":\"mlp\",\"snapshot\":\"digits.thaw\",\"min_scale\":1,\"idle_timeout_s\":0.2}",
		      NULL, NULL, NULL), 201);
	/* min_scale 1: it warms up by itself */
	T_CHECK(e2e_wait_state(&srv, "pinned", "warm", WAIT_MS));
	T_EQ_INT(call(&srv, "GET", "/v2/models/pinned/ready", NULL, NULL, NULL, NULL), 200);
	usleep(400000);   /* past its idle timeout (0.2 s) since it became warm: min_scale keeps it */
	T_EQ_STR(fn_state(&srv, "pinned"), "warm");
	/* V2 repository: unload = scale to zero now, load = scale up now */
	T_EQ_INT(call(&srv, "POST", "/v2/repository/models/pinned/unload", "{}", NULL, NULL, NULL), 200);
	T_CHECK(e2e_wait_state(&srv, "pinned", "cold", WAIT_MS));
	/* scaled to zero: 200 with "ready": false (test_triton_e2e checks the body) */
	T_EQ_INT(call(&srv, "GET", "/v2/models/pinned/ready", NULL, NULL, NULL, NULL), 200);
	T_EQ_INT(call(&srv, "POST", "/v2/repository/models/pinned/load", "{}", NULL, NULL, NULL), 200);
	T_CHECK(e2e_wait_state(&srv, "pinned", "warm", WAIT_MS));
	T_EQ_INT(call(&srv, "POST", "/v2/repository/models/nosuch/load", "{}", NULL, NULL, NULL), 404);
	json_t *idx = NULL;
	T_EQ_INT(call(&srv, "POST", "/v2/repository/index", "{}", NULL, &idx, NULL), 200);
	T_CHECK(json_array_size(idx) >= 2);
	json_decref(idx);
}

static void test_traffic_split(void)
{
	NEED();
	T_EQ_INT(call(&srv, "PUT", "/v1/functions/split", "{\"kind\":\"mlp\",\"snapshot\":\"digits.thaw\"}",
		      NULL, NULL, NULL), 201);
	T_EQ_INT(call(&srv, "PUT", "/v1/functions/split",
		      "{\"kind\":\"mlp\",\"snapshot\":\"digits.thaw\",\"concurrency\":2}", NULL, NULL, NULL), 200);
	json_t *o = NULL;
	T_EQ_INT(call(&srv, "PUT", "/v1/functions/split", "{\"traffic\":{\"1\":30,\"2\":70}}", NULL, &o, NULL), 200);
	T_EQ_INT(json_integer_value(json_object_get(json_object_get(o, "traffic"), "1")), 30);
	json_decref(o);
	T_EQ_INT(call(&srv, "PUT", "/v1/functions/split", "{\"traffic\":{\"9\":100}}", NULL, NULL, NULL), 400);
	T_EQ_INT(call(&srv, "PUT", "/v1/functions/nosplit", "{\"traffic\":{\"1\":100}}", NULL, NULL, NULL), 404);
	char *body = rows_json(0, 1);
	int n1 = 0, n2 = 0;
	for (int i = 0; i < 1000; i++) {
		char *h = NULL;
		if (call(&srv, "POST", "/v1/functions/split/invoke", body, NULL, NULL, &h) == 200) {
			if (strstr(h, "Thaw-Revision: 1\r\n"))
				n1++;
			else if (strstr(h, "Thaw-Revision: 2\r\n"))
				n2++;
		}
		free(h);
	}
	T_EQ_INT(n1 + n2, 1000);
	/* 30% of 1000 = 300; sd ~14.5: +-75 is over 5 sd (a false failure ~1 in 5 million) */
	T_CHECK(n1 > 225 && n1 < 375);
	/* a pinned revision */
	char *h = NULL;
	T_EQ_INT(call(&srv, "POST", "/v1/functions/split/invoke", body, "Thaw-Revision: 1\r\n", NULL, &h), 200);
	T_CHECK(h && strstr(h, "Thaw-Revision: 1\r\n"));
	free(h);
	T_EQ_INT(call(&srv, "POST", "/v1/functions/split/invoke", body, "Thaw-Revision: 7\r\n", NULL, NULL), 404);
	/* rollback: all traffic to revision 1 */
	T_EQ_INT(call(&srv, "PUT", "/v1/functions/split", "{\"traffic\":{\"1\":100}}", NULL, NULL, NULL), 200);
	for (int i = 0; i < 10; i++) {
		h = NULL;
		call(&srv, "POST", "/v1/functions/split/invoke", body, NULL, NULL, &h);
		T_CHECK(h && strstr(h, "Thaw-Revision: 1\r\n"));
		free(h);
	}
	free(body);
}

static void test_v2_matches_invoke(void)
{
	NEED();
	char *body = rows_json(0, 3);
	json_t *inv = NULL, *v2 = NULL;
	T_EQ_INT(call(&srv, "POST", "/v1/functions/digits/invoke", body, NULL, &inv, NULL), 200);
	/* JSON tensors */
	json_t *data = json_array();
	for (int r = 0; r < 3; r++)
		for (int k = 0; k < 64; k++)
			json_array_append_new(data, json_real(rows[r][k]));
	json_t *req = json_pack("{s:s,s:[{s:s,s:[i,i],s:s,s:o}]}", "id", "req-42", "inputs", "name",
				"INPUT0", "shape", 3, 64, "datatype", "FP32", "data", data);
	char *rb = json_dumps(req, JSON_COMPACT);
	T_EQ_INT(call(&srv, "POST", "/v2/models/digits/infer", rb, NULL, &v2, NULL), 200);
	T_EQ_STR(json_string_value(json_object_get(v2, "id")), "req-42");
	T_EQ_STR(json_string_value(json_object_get(v2, "model_name")), "digits");
	json_t *outs = json_object_get(v2, "outputs"), *probs = NULL, *labels = NULL;
	for (size_t i = 0; i < json_array_size(outs); i++) {
		json_t *t = json_array_get(outs, i);
		if (!strcmp(json_string_value(json_object_get(t, "name")), "OUTPUT0"))
			probs = t;
		if (!strcmp(json_string_value(json_object_get(t, "name")), "LABEL"))
			labels = t;
	}
	T_CHECK(probs && labels);
	if (probs && labels) {
		T_EQ_STR(json_string_value(json_object_get(probs, "datatype")), "FP32");
		T_EQ_INT(json_integer_value(json_array_get(json_object_get(probs, "shape"), 1)), 10);
		for (int r = 0; r < 3; r++) {
			json_t *lr = json_array_get(json_object_get(inv, "outputs"), r);
			double mx = -1e300, sum = 0;
			for (int k = 0; k < 10; k++)
				mx = fmax(mx, json_number_value(json_array_get(lr, k)));
			for (int k = 0; k < 10; k++)
				sum += exp(json_number_value(json_array_get(lr, k)) - mx);
			for (int k = 0; k < 10; k++) {
				double want = exp(json_number_value(json_array_get(lr, k)) - mx) / sum;
				double got = json_number_value(json_array_get(json_object_get(probs, "data"), r * 10 + k));
				T_CHECK(fabs(want - got) < 1e-5);
			}
			T_EQ_INT(json_integer_value(json_array_get(json_object_get(labels, "data"), r)),
				 json_integer_value(json_array_get(json_object_get(inv, "labels"), r)));
		}
	}
	json_decref(v2);
	free(rb);
	json_decref(req);
	/* binary tensor extension: FP32 input as bytes, LABEL requested as binary */
	float fin[3 * 64];
	for (int r = 0; r < 3; r++)
		for (int k = 0; k < 64; k++)
			fin[r * 64 + k] = (float)rows[r][k];
	const char *hdr = "{\"inputs\":[{\"name\":\"INPUT0\",\"shape\":[3,64],\"datatype\":\"FP32\","
			  "\"parameters\":{\"binary_data_size\":768}}],"
			  "\"outputs\":[{\"name\":\"LABEL\",\"parameters\":{\"binary_data\":true}}]}";
	size_t hl = strlen(hdr);
	char *raw = malloc(4096);
	int n = snprintf(raw, 4096, "POST /v2/models/digits/infer HTTP/1.1\r\nHost: t\r\n"
			 "Inference-Header-Content-Length: %zu\r\nContent-Type: application/octet-stream\r\n"
			 "Content-Length: %zu\r\n\r\n%s", hl, hl + sizeof fin, hdr);
	memcpy(raw + n, fin, sizeof fin);
	int fd = e2e_connect(&srv);
	e2e_resp r;
	T_EQ_INT(e2e_send(fd, raw, (size_t)n + sizeof fin), 0);
	T_EQ_INT(e2e_read_resp(fd, &r), 0);
	T_EQ_INT(r.status, 200);
	char *jl = e2e_header(&r, "Inference-Header-Content-Length");
	T_CHECK(jl != NULL);
	if (jl) {
		size_t jlen = strtoul(jl, NULL, 10);
		json_t *h = json_loadb(r.body, jlen, 0, NULL);
		json_t *o0 = json_array_get(json_object_get(h, "outputs"), 0);
		T_EQ_INT(json_array_size(json_object_get(h, "outputs")), 1);
		T_EQ_STR(json_string_value(json_object_get(o0, "name")), "LABEL");
		T_EQ_INT(json_integer_value(json_object_get(json_object_get(o0, "parameters"), "binary_data_size")), 24);
		T_EQ_INT(r.body_len, jlen + 24);
		for (int i = 0; i < 3 && r.body_len == jlen + 24; i++) {
			int64_t lab;
			memcpy(&lab, r.body + jlen + 8 * i, 8);
			T_EQ_INT(lab, json_integer_value(json_array_get(json_object_get(inv, "labels"), i)));
		}
		json_decref(h);
	}
	free(jl);
	e2e_resp_free(&r);
	close(fd);
	free(raw);
	json_decref(inv);
	free(body);
	/* metadata */
	json_t *meta = NULL;
	T_EQ_INT(call(&srv, "GET", "/v2/models/digits", NULL, NULL, &meta, NULL), 200);
	json_t *i0 = json_array_get(json_object_get(meta, "inputs"), 0);
	T_EQ_STR(json_string_value(json_object_get(i0, "name")), "INPUT0");
	T_EQ_INT(json_integer_value(json_array_get(json_object_get(i0, "shape"), 0)), -1);
	T_EQ_INT(json_integer_value(json_array_get(json_object_get(i0, "shape"), 1)), 64);
	json_decref(meta);
	json_t *sv = NULL;
	T_EQ_INT(call(&srv, "GET", "/v2", NULL, NULL, &sv, NULL), 200);
	T_EQ_STR(json_string_value(json_object_get(sv, "name")), "thaw");
	json_decref(sv);
	json_t *st = NULL;
	T_EQ_INT(call(&srv, "GET", "/v2/models/digits/stats", NULL, NULL, &st, NULL), 200);
	T_CHECK(json_integer_value(json_object_get(json_array_get(json_object_get(st, "model_stats"), 0),
						   "success_count")) >= 4);
	json_decref(st);
}

static void test_bad_manifests(void)
{
	NEED();
	static const struct { const char *name, *body, *needle; int status; } cases[] = {
		{"ok-name", "{\"snapshot\":\"nokind.thaw\"}", "records kind 'unknown'", 400},
		{"ok-name", "{}", "field 'kind': required", 400},
		{"ok-name", "{\"kind\":\"mlp\",\"snapshot\":\"digits.thaw\",\"bogus\":1}", "bogus", 400},
		{"ok-name", "{\"kind\":\"mlp\",\"snapshot\":\"digits.thaw\",\"concurrency\":0}", "concurrency", 400},
		{"ok-name", "{\"kind\":\"mlp\",\"snapshot\":\"digits.thaw\",\"device\":\"tpu\"}", "device", 400},
		{"ok-name", "{\"kind\":\"nosuchkind\",\"snapshot\":\"digits.thaw\"}", "kind", 400},
		{"ok-name", "{\"kind\":\"mlp\"}", "snapshot", 400},
		{"ok-name", "{\"kind\":\"mlp\",\"snapshot\":\"missing.thaw\"}", "snapshot", 400},
		{"ok-name", "{\"kind\":\"mlp\",\"snapshot\":\"/etc/passwd\"}", "snapshot", 403},
		{"ok-name", "{\"kind\":\"mlp\",\"snapshot\":\"../registry.db\"}", "snapshot", 403},
		{"ok-name", "{\"kind\":\"mlp\",\"snapshot\":\"notasnap.thaw\"}", "snapshot", 400},
		{"ok-name", "[1,2]", "object", 400},
		{"ok-name", "{\"kind\":", "JSON", 400},
		{"Bad_Name", "{\"kind\":\"echo\"}", "name", 400},
	};
	char bad[700];
	snprintf(bad, sizeof bad, "%s/snapshots/notasnap.thaw", srv.data_dir);
	FILE *f = fopen(bad, "w");
	fputs("this is not a snapshot\n", f);
	fclose(f);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char path[128];
		json_t *o = NULL;
		snprintf(path, sizeof path, "/v1/functions/%s", cases[i].name);
		int st = call(&srv, "PUT", path, cases[i].body, NULL, &o, NULL);
		if (st != cases[i].status)
			fprintf(stderr, "  case %zu: %s -> %d\n", i, cases[i].body, st);
		T_EQ_INT(st, cases[i].status);
		const char *e = json_string_value(json_object_get(o, "error"));
		T_CHECK(e && strstr(e, cases[i].needle));
		json_decref(o);
	}
	T_EQ_INT(call(&srv, "GET", "/v1/functions/ok-name", NULL, NULL, NULL, NULL), 404);
	T_EQ_INT(call(&srv, "DELETE", "/v1/functions/ok-name", NULL, NULL, NULL, NULL), 404);
	T_EQ_INT(call(&srv, "POST", "/v1/functions/ok-name/invoke", "{}", NULL, NULL, NULL), 404);
	/* bad input to a deployed function: the kind's 4xx */
	json_t *o = NULL;
	T_EQ_INT(call(&srv, "POST", "/v1/functions/digits/invoke", "{\"inputs\":[[1,2]]}", NULL, &o, NULL), 400);
	T_CHECK(json_is_string(json_object_get(o, "error")));
	json_decref(o);
	T_EQ_INT(call(&srv, "POST", "/v1/functions/digits/invoke", "{\"inputs\":", NULL, NULL, NULL), 400);
}

static void test_bad_v2_bodies(void)
{
	NEED();
	static const struct { const char *body; int status; } cases[] = {
		{"{\"inputs\":", 400},
		{"{}", 400},
		{"{\"inputs\":[{\"name\":\"INPUT0\",\"shape\":[1,64],\"datatype\":\"FP32\",\"data\":[1,2]}]}", 400},
		{"{\"inputs\":[{\"name\":\"INPUT0\",\"shape\":[1,2],\"datatype\":\"BYTES\",\"data\":[\"a\",\"b\"]}]}", 400},
		{"{\"inputs\":[{\"name\":\"INPUT0\",\"shape\":[1,2],\"datatype\":\"FP32\",\"data\":[\"a\",\"b\"]}]}", 400},
		{"{\"inputs\":[{\"name\":\"WRONG\",\"shape\":[1,2],\"datatype\":\"FP32\",\"data\":[1,2]}]}", 400},
		{"{\"inputs\":[{\"name\":\"INPUT0\",\"shape\":[-1,2],\"datatype\":\"FP32\",\"data\":[1,2]}]}", 400},
		{"{\"inputs\":[{\"name\":\"INPUT0\",\"shape\":[1,3],\"datatype\":\"INT32\",\"data\":[1,2.5,3]}]}", 400},
		{"{\"inputs\":[{\"name\":\"INPUT0\",\"shape\":[1,2],\"datatype\":\"FP32\",\"data\":[1,2]}]}", 400},
		{"{\"inputs\":[{\"name\":\"INPUT0\",\"shape\":[1,1],\"datatype\":\"FP32\",\"parameters\":{\"binary_data_size\":4}}]}", 400},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		json_t *o = NULL;
		int st = call(&srv, "POST", "/v2/models/digits/infer", cases[i].body, NULL, &o, NULL);
		if (st != cases[i].status)
			fprintf(stderr, "  v2 case %zu -> %d\n", i, st);
		T_EQ_INT(st, cases[i].status);
		T_CHECK(json_is_string(json_object_get(o, "error")));
		json_decref(o);
	}
	T_EQ_INT(call(&srv, "POST", "/v2/models/nosuch/infer", "{}", NULL, NULL, NULL), 404);
	T_EQ_INT(call(&srv, "GET", "/v2/models/nosuch", NULL, NULL, NULL, NULL), 404);
	T_EQ_INT(call(&srv, "POST", "/v2/models/digits/versions/99/infer", "{}", NULL, NULL, NULL), 404);
	/* NaN in binary data */
	float nanv[64];
	for (int k = 0; k < 64; k++)
		nanv[k] = k == 3 ? NAN : 0.5f;
	const char *hdr = "{\"inputs\":[{\"name\":\"INPUT0\",\"shape\":[1,64],\"datatype\":\"FP32\","
			  "\"parameters\":{\"binary_data_size\":256}}]}";
	char raw[2048];
	int n = snprintf(raw, sizeof raw, "POST /v2/models/digits/infer HTTP/1.1\r\nHost: t\r\n"
			 "Inference-Header-Content-Length: %zu\r\nContent-Length: %zu\r\n\r\n%s",
			 strlen(hdr), strlen(hdr) + sizeof nanv, hdr);
	memcpy(raw + n, nanv, sizeof nanv);
	int fd = e2e_connect(&srv);
	e2e_resp r;
	e2e_send(fd, raw, (size_t)n + sizeof nanv);
	T_EQ_INT(e2e_read_resp(fd, &r), 0);
	T_EQ_INT(r.status, 400);
	T_CHECK(strstr(r.body, "finite") != NULL);
	e2e_resp_free(&r);
	close(fd);
}

static void test_delete(void)
{
	NEED();
	T_EQ_INT(call(&srv, "PUT", "/v1/functions/gone", "{\"kind\":\"mlp\",\"snapshot\":\"digits.thaw\"}",
		      NULL, NULL, NULL), 201);
	char *body = rows_json(0, 1);
	T_EQ_INT(call(&srv, "POST", "/v1/functions/gone/invoke", body, NULL, NULL, NULL), 200);
	T_EQ_INT(call(&srv, "DELETE", "/v1/functions/gone", NULL, NULL, NULL, NULL), 200);
	T_EQ_INT(call(&srv, "POST", "/v1/functions/gone/invoke", body, NULL, NULL, NULL), 404);
	T_EQ_INT(call(&srv, "GET", "/v1/functions/gone", NULL, NULL, NULL, NULL), 404);
	free(body);
}

static void test_restart_keeps_functions(void)
{
	NEED();
	json_t *before = NULL, *after = NULL;
	T_EQ_INT(call(&srv, "GET", "/v1/functions/split", NULL, NULL, &before, NULL), 200);
	T_EQ_INT(e2e_stop(&srv, SIGTERM, 10), 0);
	/* same data directory, new process */
	const char *args[] = {"--no-access-log", NULL};
	e2e_server s2;
	T_EQ_INT(e2e_start_in(&s2, srv.data_dir, args, NULL), 0);
	T_EQ_INT(call(&s2, "GET", "/v1/functions/split", NULL, NULL, &after, NULL), 200);
	T_EQ_INT(json_array_size(json_object_get(after, "revisions")), 2);
	T_EQ_INT(json_integer_value(json_object_get(json_object_get(after, "traffic"), "1")), 100);
	T_CHECK(json_equal(json_object_get(before, "revisions"), json_object_get(after, "revisions")));
	json_t *list = NULL;
	T_EQ_INT(call(&s2, "GET", "/v1/functions", NULL, NULL, &list, NULL), 200);
	T_CHECK(json_array_size(json_object_get(list, "functions")) >= 5);
	json_decref(list);
	/* min_scale functions come back warm by themselves */
	T_CHECK(e2e_wait_state(&s2, "pinned", "warm", WAIT_MS));
	char *body = rows_json(0, 2);
	json_t *o = NULL;
	T_EQ_INT(call(&s2, "POST", "/v1/functions/digits/invoke", body, NULL, &o, NULL), 200);
	check_logits(o, 0, 2, 1e-3);
	json_decref(o);
	free(body);
	json_decref(before);
	json_decref(after);
	T_EQ_INT(e2e_stop(&s2, SIGTERM, 10), 0);
	srv_ok = 0;
}

static void test_memory_pressure_evicts_lru(void)
{
	/* a CPU budget that holds one digits image (~10 KB) but not two: calling b evicts idle a */
	NEED();
	e2e_server s;
	const char *args[] = {"--cpu-memory", "15000", "--no-gpu", "--no-access-log", NULL};
	T_EQ_INT(e2e_start(&s, args, NULL), 0);
	char cmd[2048];
	snprintf(cmd, sizeof cmd, "mkdir -p %s/snapshots && cp %s %s/snapshots/", s.data_dir, snap_path, s.data_dir);
	T_EQ_INT(system(cmd), 0);
	T_EQ_INT(call(&s, "PUT", "/v1/functions/a", "{\"kind\":\"mlp\",\"snapshot\":\"digits.thaw\"}", NULL, NULL, NULL), 201);
	T_EQ_INT(call(&s, "PUT", "/v1/functions/b", "{\"kind\":\"mlp\",\"snapshot\":\"digits.thaw\"}", NULL, NULL, NULL), 201);
	char *body = rows_json(0, 1);
	json_t *o = NULL;
	T_EQ_INT(call(&s, "POST", "/v1/functions/a/invoke", body, NULL, &o, NULL), 200);
	check_logits(o, 0, 1, 1e-3);
	json_decref(o);
	T_EQ_STR(fn_state(&s, "a"), "warm");
	T_EQ_INT(call(&s, "POST", "/v1/functions/b/invoke", body, NULL, &o, NULL), 200);
	check_logits(o, 0, 1, 1e-3);
	json_decref(o);
	T_EQ_STR(fn_state(&s, "b"), "warm");
	T_EQ_STR(fn_state(&s, "a"), "host");
	T_EQ_INT(metric(&s, "thaw_evictions_total{function=\"a\"}"), 1);
	/* and back: a returns from the host tier, evicting b */
	T_EQ_INT(call(&s, "POST", "/v1/functions/a/invoke", body, NULL, &o, NULL), 200);
	check_logits(o, 0, 1, 1e-3);
	json_decref(o);
	T_EQ_STR(fn_state(&s, "a"), "warm");
	T_EQ_STR(fn_state(&s, "b"), "host");
	T_EQ_INT(metric(&s, "thaw_cold_starts_total{function=\"a\",tier=\"host\"}"), 1);
	/* an image larger than the whole budget (the 215 KB llama fixture): a clear 503 */
	const char *bin = getenv("THAW_BIN"), *src = getenv("THAW_SRC");
	snprintf(cmd, sizeof cmd, "%s snapshot pack %s/tests/data/llama_tiny -o %s/snapshots/tiny.thaw --quiet",
		 bin ? bin : "build/thaw", src ? src : ".", s.data_dir);
	T_EQ_INT(system(cmd), 0);
	T_EQ_INT(call(&s, "PUT", "/v1/functions/big", "{\"kind\":\"llama\",\"snapshot\":\"tiny.thaw\"}", NULL, NULL, NULL), 201);
	T_EQ_INT(call(&s, "POST", "/v1/functions/big/invoke", "{\"tokens\":[1,2],\"max_tokens\":1}", NULL, &o, NULL), 503);
	const char *e = json_string_value(json_object_get(o, "error"));
	T_CHECK(e && strstr(e, "not enough device memory"));
	json_decref(o);
	/* the others are unaffected */
	T_EQ_INT(call(&s, "POST", "/v1/functions/a/invoke", body, NULL, NULL, NULL), 200);
	free(body);
	T_EQ_INT(e2e_stop(&s, SIGTERM, 10), 0);
}

static void test_gpu_variant(void)
{
	/* the same function on cuda:0 must agree with the PyTorch reference */
	NEED();
	json_t *devs = NULL;
	int have_gpu = 0;
	if (call(&srv, "GET", "/v1/devices", NULL, NULL, &devs, NULL) == 200) {
		json_t *d;
		size_t i;
		json_array_foreach(json_object_get(devs, "devices"), i, d)
			if (!strcmp(json_string_value(json_object_get(d, "kind")), "cuda"))
				have_gpu = 1;
	}
	json_decref(devs);
	if (!have_gpu)
		T_SKIP("no GPU");
	T_EQ_INT(call(&srv, "PUT", "/v1/functions/digits-gpu",
		      "{\"kind\":\"mlp\",\"snapshot\":\"digits.thaw\",\"device\":\"cuda:0\",\"idle_timeout_s\":0.3}",
		      NULL, NULL, NULL), 201);
	char *body = rows_json(0, 8);
	json_t *o = NULL;
	T_EQ_INT(call(&srv, "POST", "/v1/functions/digits-gpu/invoke", body, NULL, &o, NULL), 200);
	check_logits(o, 0, 8, 5e-2);
	json_decref(o);
	json_t *f = NULL;
	call(&srv, "GET", "/v1/functions/digits-gpu", NULL, NULL, &f, NULL);
	T_EQ_STR(json_string_value(json_object_get(f, "device")), "cuda:0");
	json_decref(f);
	/* idle 0.3 s -> host tier (kept for the host ttl, 2 s) */
	T_CHECK(e2e_wait_state(&srv, "digits-gpu", "host", WAIT_MS));
	T_EQ_INT(call(&srv, "POST", "/v1/functions/digits-gpu/invoke", body, NULL, &o, NULL), 200);
	check_logits(o, 0, 8, 5e-2);
	json_decref(o);
	T_EQ_INT(metric(&srv, "thaw_cold_starts_total{function=\"digits-gpu\",tier=\"host\"}"), 1);
	free(body);
}

void t_main(void)
{
	setup();
	T_RUN(test_deploy_invoke_evict);
	T_RUN(test_concurrent_calls_during_cold_start);
	T_RUN(test_queue_full_503);
	T_RUN(test_min_scale_and_unload);
	T_RUN(test_traffic_split);
	T_RUN(test_v2_matches_invoke);
	T_RUN(test_bad_manifests);
	T_RUN(test_bad_v2_bodies);
	T_RUN(test_delete);
	T_RUN(test_memory_pressure_evicts_lru);
	T_RUN(test_gpu_variant);
	T_RUN(test_restart_keeps_functions);
	if (srv_ok)
		e2e_stop(&srv, SIGTERM, 10);
	json_decref(expected);
}

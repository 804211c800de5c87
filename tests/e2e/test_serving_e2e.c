/* test_serving_e2e.c — iteration-level serving through the daemon on the CPU: a llama function
 * holds many calls at once and steps them together, and every call gets the tokens it gets
 * alone.
 *  - tests/data/llama_tiny through /v1/functions/{name}/invoke: 8 calls at once (8 threads,
 *    prompts of different lengths and lengths of generation) == each call alone, greedy;
 *  - a random llama with the test tokenizer through /v1/completions, "stream": true: 8 streams
 *    at once, each stream's text == the same request alone; the steps ran several sequences
 *    (thaw_step_sequences), and the serving metrics count first tokens and gaps;
 *  - a short call of another function (echo) answers while the streams generate.
 * THAW_TEST_DEVICE=cuda:0 runs the llama functions on a GPU lane (the device machine). */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <jansson.h>
#include "runtime/tok/tok.h"
#include "tests/e2e/e2e.h"
#include "tests/t.h"

#define NCALL 8

static e2e_server srv;
static int srv_ok;
static char dev[48] = "cpu";   /* the llama functions' device */

/* the value of one metric series (the first line starting with `series `), -1 when absent */
static double metric(const char *series)
{
	e2e_resp r;
	double v = -1;
	if (e2e_call(&srv, "GET", "/metrics", NULL, NULL, &r) != 200)
		return -1;
	size_t n = strlen(series);
	for (const char *p = r.body; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
		if (strncmp(p, series, n) == 0 && p[n] == ' ') {
			v = atof(p + n + 1);
			break;
		}
	e2e_resp_free(&r);
	return v;
}

static void setup(void)
{
	char cmd[4000], dir[700], path[800], cfg[800], to[900];
	const char *args[] = {"--no-access-log", NULL};
	srv_ok = e2e_start(&srv, args, NULL) == 0;
	T_CHECK(srv_ok);
	if (!srv_ok)
		return;
	/* the test tokenizer's vocabulary sizes the random llama */
	snprintf(path, sizeof path, "%s/tests/data/tok/small/tokenizer.json", t_src());
	snprintf(cfg, sizeof cfg, "%s/tests/data/tok/small/tokenizer_config.json", t_src());
	size_t tl = 0, cl = 0;
	char *tj = t_read_file(path, &tl), *cj = t_read_file(cfg, &cl), err[256] = "";
	tok_tokenizer *tok = NULL;
	if (!tj || tok_load(&tok, tj, tl, cj, cl, err, sizeof err) < 0) {
		fprintf(stderr, "  cannot load the test tokenizer: %s\n", err);
		free(tj);
		free(cj);
		srv_ok = 0;
		T_CHECK(0);
		return;
	}
	free(tj);
	free(cj);
	size_t nv = tok_vocab_size(tok);
	int eos = tok_eos(tok);
	tok_free(tok);
	snprintf(dir, sizeof dir, "%s/tl", t_tmpdir());
	mkdir(dir, 0755);
	T_EQ_INT(e2e_llama_write(dir, nv, eos), 0);
	snprintf(to, sizeof to, "%s/tokenizer.json", dir);
	T_EQ_INT(t_copy_file(path, to), 0);
	snprintf(to, sizeof to, "%s/tokenizer_config.json", dir);
	T_EQ_INT(t_copy_file(cfg, to), 0);
	snprintf(cmd, sizeof cmd, "mkdir -p %s/snapshots && %s snapshot pack %s/tests/data/llama_tiny "
		 "-o %s/snapshots/tiny.thaw --quiet && %s snapshot pack %s -o %s/snapshots/tl.thaw --quiet",
		 srv.data_dir, t_bin(), t_src(), srv.data_dir, t_bin(), dir, srv.data_dir);
	T_EQ_INT(system(cmd), 0);
	if (getenv("THAW_TEST_DEVICE"))
		snprintf(dev, sizeof dev, "%.40s", getenv("THAW_TEST_DEVICE"));
	const char *man = "{\"kind\":\"llama\",\"snapshot\":\"%s\",\"device\":\"%s\","
			  "\"concurrency\":8,\"max_batch\":8,\"min_scale\":1}";
	char body[300];
	snprintf(body, sizeof body, man, "tiny.thaw", dev);
	T_EQ_INT(e2e_call(&srv, "PUT", "/v1/functions/tiny", NULL, body, NULL), 201);
	snprintf(body, sizeof body, man, "tl.thaw", dev);
	T_EQ_INT(e2e_call(&srv, "PUT", "/v1/functions/tl", NULL, body, NULL), 201);
	T_EQ_INT(e2e_call(&srv, "PUT", "/v1/functions/ec", NULL, "{\"kind\":\"echo\"}", NULL), 201);
	T_CHECK(e2e_wait_state(&srv, "tiny", "warm", 20000));
	T_CHECK(e2e_wait_state(&srv, "tl", "warm", 20000));
}

#define NEED() do { if (!srv_ok) T_SKIP("server not started"); } while (0)

/* ---- invoke: llama_tiny ---- */

typedef struct icall {
	char body[1024];
	json_t *tokens;    /* generated ids */
	int status;
} icall;

static void *invoke_thread(void *arg)
{
	icall *c = arg;
	json_t *o = NULL;
	c->status = e2e_call_json(&srv, "POST", "/v1/functions/tiny/invoke", NULL, c->body, &o);
	c->tokens = json_incref(json_object_get(o, "tokens"));
	json_decref(o);
	return NULL;
}

static void test_invoke_batch_equals_alone(void)
{
	NEED();
	char path[800];
	snprintf(path, sizeof path, "%s/tests/data/llama_tiny/expected.json", t_src());
	json_t *ex = json_load_file(path, 0, NULL);
	json_t *prompts = json_object_get(ex, "prompts");
	T_CHECK(json_array_size(prompts) == 3);
	icall alone[NCALL], together[NCALL];
	for (int i = 0; i < NCALL; i++) {
		/* the reference prompts, and shorter and longer variants of them */
		json_t *p = json_deep_copy(json_array_get(prompts, (size_t)i % 3));
		if (i >= 3)
			json_array_append_new(p, json_integer(10 + 7 * i));
		if (i >= 6)
			json_array_remove(p, 0);
		json_t *in = json_pack("{s:o,s:i,s:i,s:[]}", "tokens", p, "max_tokens", 20 + 9 * i,
				       "temperature", 0, "stop");
		char *s = json_dumps(in, JSON_COMPACT);
		snprintf(alone[i].body, sizeof alone[i].body, "%s", s);
		snprintf(together[i].body, sizeof together[i].body, "%s", s);
		free(s);
		json_decref(in);
	}
	for (int i = 0; i < NCALL; i++)
		invoke_thread(&alone[i]);
	pthread_t th[NCALL];
	for (int i = 0; i < NCALL; i++)
		T_EQ_INT(pthread_create(&th[i], NULL, invoke_thread, &together[i]), 0);
	for (int i = 0; i < NCALL; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < NCALL; i++) {
		T_EQ_INT(alone[i].status, 200);
		T_EQ_INT(together[i].status, 200);
		T_EQ_INT(json_array_size(alone[i].tokens), (size_t)(20 + 9 * i));
		int same = json_equal(alone[i].tokens, together[i].tokens);
		if (!same) {
			char *a = json_dumps(alone[i].tokens, JSON_COMPACT);
			char *b = json_dumps(together[i].tokens, JSON_COMPACT);
			fprintf(stderr, "  call %d alone %s\n  together %s\n", i, a, b);
			free(a);
			free(b);
		}
		T_CHECK(same);
		json_decref(alone[i].tokens);
		json_decref(together[i].tokens);
	}
	json_decref(ex);
}

/* ---- streams: /v1/completions ---- */

/* sends a request on a new connection (closed by the server after the answer); fd or -1 */
static int send_req(const char *path, const char *body)
{
	char raw[4096];
	snprintf(raw, sizeof raw, "POST %s HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
		 "Connection: close\r\nContent-Length: %zu\r\n\r\n%s", path, strlen(body), body);
	int fd = e2e_connect(&srv);
	if (fd >= 0 && e2e_send(fd, raw, strlen(raw)) < 0) {
		close(fd);
		fd = -1;
	}
	return fd;
}

/* reads the whole answer until the server closes fd (closed here); malloc'd, NUL-terminated */
static char *read_all(int fd)
{
	size_t cap = 1 << 16, n = 0;
	char *in = malloc(cap);
	for (;;) {
		if (n + 4096 > cap)
			in = realloc(in, cap *= 2);
		ssize_t k = recv(fd, in + n, cap - n - 1, 0);
		if (k <= 0)
			break;
		n += (size_t)k;
	}
	in[n] = 0;
	close(fd);
	return in;
}

/* the text of a streamed completion: the "text" of every data event, in order, after
 * de-chunking; NULL when the answer is not a complete 200 stream ending in [DONE] */
static char *stream_text(const char *raw)
{
	const char *p = strstr(raw, "\r\n\r\n");
	if (strncmp(raw, "HTTP/1.1 200", 12) != 0 || !p || !strcasestr(raw, "chunked"))
		return NULL;
	p += 4;
	size_t cap = strlen(p) + 1, len = 0;
	char *body = malloc(cap);
	for (;;) {   /* de-chunk */
		char *end;
		unsigned long sz = strtoul(p, &end, 16);
		if (end == p || strncmp(end, "\r\n", 2) != 0)
			break;
		p = end + 2;
		if (sz == 0 || strlen(p) < sz)
			break;
		memcpy(body + len, p, sz);
		len += sz;
		p += sz + 2;
	}
	body[len] = 0;
	char *text = calloc(1, len + 1);
	size_t tl = 0;
	int done = 0;
	for (const char *e = body; *e; ) {
		const char *nn = strstr(e, "\n\n");
		if (!nn || strncmp(e, "data: ", 6) != 0)
			break;
		if (strncmp(e + 6, "[DONE]", 6) == 0) {
			done = 1;
			break;
		}
		json_t *o = json_loadb(e + 6, (size_t)(nn - e - 6), 0, NULL);
		const char *t = json_string_value(json_object_get(
			json_array_get(json_object_get(o, "choices"), 0), "text"));
		if (t) {
			memcpy(text + tl, t, strlen(t));
			tl += strlen(t);
		}
		json_decref(o);
		e = nn + 2;
	}
	free(body);
	if (!done) {
		free(text);
		return NULL;
	}
	return text;
}

static const char *const stream_prompts[NCALL] = {
	"alpha beta", "Gamma, delta and epsilon.", "a", "the quick brown fox",
	"one two three four five six", "zeta", "eta theta iota kappa", "lambda mu",
};

static void stream_body(int i, char *buf, size_t cap)
{
	snprintf(buf, cap, "{\"model\":\"tl\",\"prompt\":\"%s\",\"max_tokens\":%d,\"temperature\":0,"
		 "\"stream\":true}", stream_prompts[i], 24 + 5 * i);
}

static void test_streams_batch_equals_alone(void)
{
	NEED();
	char body[512];
	char *want[NCALL], *got[NCALL];
	for (int i = 0; i < NCALL; i++) {
		stream_body(i, body, sizeof body);
		int fd = send_req("/v1/completions", body);
		T_CHECK(fd >= 0);
		char *raw = fd >= 0 ? read_all(fd) : NULL;
		want[i] = raw ? stream_text(raw) : NULL;
		T_CHECK(want[i] != NULL);
		free(raw);
	}
	double steps0 = metric("thaw_step_sequences_count{function=\"tl\"}");
	double le1_0 = metric("thaw_step_sequences_bucket{function=\"tl\",le=\"1\"}");
	double ttft0 = metric("thaw_time_to_first_token_seconds_count{function=\"tl\"}");
	/* all at once: sent first, read afterwards; an echo call answers meanwhile */
	int fds[NCALL];
	for (int i = 0; i < NCALL; i++) {
		stream_body(i, body, sizeof body);
		fds[i] = send_req("/v1/completions", body);
		T_CHECK(fds[i] >= 0);
	}
	json_t *eo = NULL;
	T_EQ_INT(e2e_call_json(&srv, "POST", "/v1/functions/ec/invoke", NULL, "{\"ping\":1}", &eo), 200);
	T_EQ_INT(json_integer_value(json_object_get(eo, "ping")), 1);
	json_decref(eo);
	for (int i = 0; i < NCALL; i++) {
		char *raw = fds[i] >= 0 ? read_all(fds[i]) : NULL;
		got[i] = raw ? stream_text(raw) : NULL;
		free(raw);
		T_CHECK(got[i] != NULL);
		T_CHECK(want[i] && got[i] && strcmp(want[i], got[i]) == 0);
		if (want[i] && got[i] && strcmp(want[i], got[i]) != 0)
			fprintf(stderr, "  stream %d alone \"%s\"\n  together \"%s\"\n", i, want[i], got[i]);
	}
	/* the streams were stepped together: some steps ran more than one sequence */
	double steps = metric("thaw_step_sequences_count{function=\"tl\"}") - steps0;
	double le1 = metric("thaw_step_sequences_bucket{function=\"tl\",le=\"1\"}") - le1_0;
	T_CHECK(steps > 0 && le1 < steps);
	fprintf(stderr, "  %.0f steps, %.0f of them with one sequence\n", steps, le1);
	T_EQ_INT(metric("thaw_time_to_first_token_seconds_count{function=\"tl\"}") - ttft0, NCALL);
	T_CHECK(metric("thaw_inter_token_latency_seconds_count{function=\"tl\"}") > 0);
	char series[160];
	snprintf(series, sizeof series, "thaw_kv_blocks{device=\"%s\",function=\"tl\",type=\"total\"}", dev);
	T_CHECK(metric(series) > 0);
	snprintf(series, sizeof series, "thaw_kv_blocks{device=\"%s\",function=\"tl\",type=\"used\"}", dev);
	T_CHECK(metric(series) >= 0);
	for (int i = 0; i < NCALL; i++) {
		free(want[i]);
		free(got[i]);
	}
}

void t_main(void)
{
	T_RUN(setup);
	T_RUN(test_invoke_batch_equals_alone);
	T_RUN(test_streams_batch_equals_alone);
	if (srv_ok)
		T_EQ_INT(e2e_stop(&srv, SIGTERM, 10), 0);
}

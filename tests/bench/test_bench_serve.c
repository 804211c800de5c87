/* test_bench_serve.c — the serving benchmark's client (bench/bench_serve.c, built next to the
 * daemon as BUILD/bench/bench_serve):
 *  - against a scripted server in this test (the truth is what it sends): a streamed
 *    completion written a few bytes at a time (chunk headers, lines and JSON split anywhere) is
 *    counted whole (tokens from the usage chunk, one delta per text event); a 500, bytes that
 *    are not HTTP, a stream cut short, a stream without [DONE], a malformed event and a stream
 *    that stalls past --timeout each fail their request in their own error class without
 *    stopping the run; a kept-alive connection the server closed is retried once on a new one;
 *  - against `thaw serve`: a random-weight llama whose eos row is zero (bench/snap_genmodel
 *    --no-eos) with the Mistral test tokenizer, closed loop and open loop: every request ends
 *    at max_tokens, counted through the OpenAI streaming route; the invoke mode times echo.
 *    THAW_TEST_DEVICE=cuda:0 puts the llama on a GPU. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "tests/t.h"
#include "tests/e2e/e2e.h"

static char client[1024], genmodel[1024];

/* the bench binaries next to THAW_BIN (BUILD/thaw -> BUILD/bench/NAME) */
static void find_bins(void)
{
	char dir[900];
	snprintf(dir, sizeof dir, "%s", t_bin());
	char *slash = strrchr(dir, '/');
	if (slash)
		*slash = 0;
	else
		snprintf(dir, sizeof dir, ".");
	snprintf(client, sizeof client, "%s/bench/bench_serve", dir);
	snprintf(genmodel, sizeof genmodel, "%s/bench/snap_genmodel", dir);
}

/* the value of key=... in a bench_serve line, as a number (-1 when absent or "-") */
static double kv(const char *line, const char *key)
{
	char pat[64];
	snprintf(pat, sizeof pat, " %s=", key);
	const char *p = strstr(line, pat);
	if (!p || p[strlen(pat)] == '-')
		return -1;
	return atof(p + strlen(pat));
}

/* ---- the scripted server ---- */

enum { M_OK, M_500, M_GARBAGE, M_OK_CLOSE, M_CUT, M_NODONE, M_BADJSON, M_HANG };
static const int script[] = {M_OK, M_500, M_GARBAGE, M_OK_CLOSE, M_OK, M_CUT, M_NODONE, M_BADJSON,
			     M_HANG, M_OK};
#define SCRIPT_N (int)(sizeof script / sizeof script[0])
static atomic_int next_req, srv_requests;
static int lfd = -1, sport;

static int send_all(int fd, const char *b, size_t n)
{
	while (n) {
		ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
		if (w <= 0)
			return -1;
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

/* a few bytes at a time, so every boundary of the client's parsers is crossed somewhere */
static int send_dribble(int fd, const char *b, size_t n)
{
	for (size_t o = 0; o < n; o += 7) {
		if (send_all(fd, b + o, n - o < 7 ? n - o : 7) < 0)
			return -1;
		usleep(300);
	}
	return 0;
}

static void chunk(char *out, size_t cap, const char *data)
{
	size_t l = strlen(out);
	snprintf(out + l, cap - l, "%zx\r\n%s\r\n", strlen(data), data);
}

/* reads one request (headers + Content-Length body); 0, or -1 when the client closed */
static int read_req(int fd)
{
	char buf[65536];
	size_t n = 0;
	for (;;) {
		ssize_t r = recv(fd, buf + n, sizeof buf - 1 - n, 0);
		if (r <= 0)
			return -1;
		n += (size_t)r;
		buf[n] = 0;
		char *end = strstr(buf, "\r\n\r\n");
		if (!end)
			continue;
		char *cl = strcasestr(buf, "content-length:");
		size_t want = (size_t)(end + 4 - buf) + (cl ? (size_t)atol(cl + 15) : 0);
		if (n >= want)
			return 0;
		if (want >= sizeof buf)
			return -1;
	}
}

static const char *HEAD = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
			  "Transfer-Encoding: chunked\r\n\r\n";
static const char *EV_A = "data: {\"choices\":[{\"text\":\"a\",\"index\":0,\"finish_reason\":null}]}\n\n";

static void *conn_main(void *arg)
{
	int fd = (int)(intptr_t)arg, one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	char r[4096];
	while (read_req(fd) == 0) {
		atomic_fetch_add(&srv_requests, 1);
		int m = script[atomic_fetch_add(&next_req, 1) % SCRIPT_N];
		int keep = 1;
		r[0] = 0;
		switch (m) {
		case M_OK:
		case M_OK_CLOSE:
			snprintf(r, sizeof r, "%s", HEAD);
			chunk(r, sizeof r, EV_A);
			chunk(r, sizeof r, "data: {\"choices\":[{\"text\":\"b\"}]}\r\n\r\n"
			      "data: {\"choices\":[{\"text\":\"\\u00e9\"}]}\n\n");
			chunk(r, sizeof r, ": a comment\nevent: x\ndata: {\"choices\":[{\"text\":\"\","
			      "\"finish_reason\":\"length\"}]}\n\n");
			chunk(r, sizeof r, "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":4,"
			      "\"completion_tokens\":3}}\n\ndata: [DONE]\n\n");
			snprintf(r + strlen(r), sizeof r - strlen(r), "0\r\n\r\n");
			send_dribble(fd, r, strlen(r));
			keep = m == M_OK;
			break;
		case M_500:
			snprintf(r, sizeof r, "HTTP/1.1 500 Oops\r\nContent-Length: 2\r\n\r\nno");
			send_all(fd, r, strlen(r));
			break;
		case M_GARBAGE:
			send_all(fd, "HELLO THERE\r\n\r\n", 15);
			keep = 0;
			break;
		case M_CUT:
			snprintf(r, sizeof r, "%s", HEAD);
			chunk(r, sizeof r, EV_A);
			send_all(fd, r, strlen(r));
			keep = 0;
			break;
		case M_NODONE:
			snprintf(r, sizeof r, "%s", HEAD);
			chunk(r, sizeof r, EV_A);
			snprintf(r + strlen(r), sizeof r - strlen(r), "0\r\n\r\n");
			send_all(fd, r, strlen(r));
			break;
		case M_BADJSON:
			snprintf(r, sizeof r, "%s", HEAD);
			chunk(r, sizeof r, "data: {nope\n\n");
			chunk(r, sizeof r, "data: [DONE]\n\n");
			snprintf(r + strlen(r), sizeof r - strlen(r), "0\r\n\r\n");
			send_all(fd, r, strlen(r));
			break;
		case M_HANG:   /* one event, then nothing until the client gives up */
			snprintf(r, sizeof r, "%s", HEAD);
			chunk(r, sizeof r, EV_A);
			send_all(fd, r, strlen(r));
			while (recv(fd, r, sizeof r, 0) > 0)
				;
			keep = 0;
			break;
		}
		if (!keep)
			break;
	}
	close(fd);
	return NULL;
}

static void *accept_main(void *arg)
{
	for (;;) {
		int c = accept(lfd, NULL, NULL);
		if (c < 0)
			return NULL;
		pthread_t t;
		if (pthread_create(&t, NULL, conn_main, (void *)(intptr_t)c) == 0)
			pthread_detach(t);
		else
			close(c);
	}
}

static int scripted_start(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof a;
	int one = 1;
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	if (lfd < 0)
		return -1;
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 64) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&a, &al) < 0)
		return -1;
	sport = ntohs(a.sin_port);
	pthread_t t;
	if (pthread_create(&t, NULL, accept_main, NULL) != 0)
		return -1;
	pthread_detach(t);
	return 0;
}

static void test_scripted(void)
{
	if (scripted_start() < 0)
		T_SKIP("cannot listen on loopback");
	char out[4096];
	int st = t_sh(out, sizeof out, "%s --url http://127.0.0.1:%d --model m --closed 1 --requests %d "
		      "--timeout 2 --prompt 4 --new 3", client, sport, SCRIPT_N);
	fprintf(stderr, "  %s", out);
	T_EQ_INT(st, 1);   /* some requests failed */
	T_EQ_INT(kv(out, "requests"), SCRIPT_N);   /* the retried one counts once */
	T_EQ_INT(kv(out, "ok"), 4);            /* 0, 3, 4 (retried on a new connection), 9 */
	T_EQ_INT(kv(out, "errors"), 6);
	T_EQ_INT(kv(out, "err_status"), 1);
	T_EQ_INT(kv(out, "err_parse"), 2);     /* not HTTP; a malformed event */
	T_EQ_INT(kv(out, "err_stream"), 2);    /* cut short; no [DONE] */
	T_EQ_INT(kv(out, "err_timeout"), 1);
	T_EQ_INT(kv(out, "out_tok"), 12);      /* the usage chunks: 4 x 3 */
	T_EQ_INT(kv(out, "deltas"), 12);       /* "a", "b", "é" of each; the empty final one is none */
	T_EQ_INT(kv(out, "shorter"), 0);
	T_CHECK(kv(out, "ttft_p50_ms") > 0 && kv(out, "ttft_p50_ms") <= kv(out, "lat_max_ms"));
	T_CHECK(kv(out, "itl_p50_ms") >= 0);
	/* the request written to the connection closed after request 3 was never read there */
	T_EQ_INT(atomic_load(&srv_requests), SCRIPT_N);
	/* usage errors: exit 2 with a message, no run */
	T_EQ_INT(t_sh(NULL, 0, "%s --closed 1 2>/dev/null", client), 2);
	T_EQ_INT(t_sh(NULL, 0, "%s --model m --closed 1 --rate 2 2>/dev/null", client), 2);
	T_EQ_INT(t_sh(NULL, 0, "%s --model m --closed x 2>/dev/null", client), 2);
	T_EQ_INT(t_sh(NULL, 0, "%s --model m --closed 1 --url ftp://x 2>/dev/null", client), 2);
	/* nothing listening: every request is a connect error */
	int port = t_free_port();
	T_EQ_INT(t_sh(out, sizeof out, "%s --url http://127.0.0.1:%d --model m --closed 2 --requests 4",
		      client, port), 1);
	T_EQ_INT(kv(out, "err_connect"), 4);
	T_EQ_INT(kv(out, "ok"), 0);
}

/* ---- against thaw serve ---- */

static void test_thaw(void)
{
	char m[700], cmd[4096], out[4096];
	snprintf(m, sizeof m, "%s/model", t_tmpdir());
	e2e_server srv;
	T_EQ_INT(t_sh(NULL, 0, "%s %s 2 1 --shape 64,128,4,2,32000 --no-eos >/dev/null", genmodel, m), 0);
	/* THAW_TEST_DEVICE=cuda:0 runs the llama on a GPU lane (the device machine) */
	const char *dev = getenv("THAW_TEST_DEVICE") ? getenv("THAW_TEST_DEVICE") : "cpu";
	int cpu = !strcmp(dev, "cpu");
	const char *args[] = {"--no-access-log", "--no-audit", cpu ? "--no-gpu" : NULL, NULL};
	if (e2e_start(&srv, args, NULL) < 0) {
		T_CHECK(0);
		return;
	}
	snprintf(cmd, sizeof cmd, "mkdir -p %s/snapshots && %s snapshot pack %s -o %s/snapshots/m.thaw "
		 "--kind llama --tokenizer %s/tests/data/tok/mistral --quiet", srv.data_dir, t_bin(), m,
		 srv.data_dir, t_src());
	T_EQ_INT(t_sh(NULL, 0, "%s", cmd), 0);
	char man[300];
	snprintf(man, sizeof man, "{\"kind\":\"llama\",\"snapshot\":\"m.thaw\",\"device\":\"%.40s\","
		 "\"concurrency\":4,\"max_batch\":4,\"max_queue\":64,\"timeout_s\":120}", dev);
	T_EQ_INT(e2e_call(&srv, "PUT", "/v1/functions/m", NULL, man, NULL), 201);
	T_EQ_INT(e2e_call(&srv, "PUT", "/v1/functions/ec", NULL, "{\"kind\":\"echo\"}", NULL), 201);
	/* closed loop: 8 requests over 4 streams, each to max_tokens (eos can never win) */
	T_EQ_INT(t_sh(out, sizeof out, "%s --url http://127.0.0.1:%d --model m --closed 4 --requests 8 "
		      "--prompt 16 --new 12 --label t", client, srv.port), 0);
	fprintf(stderr, "  %s", out);
	T_CHECK(strstr(out, "label=t mode=closed streams=4 ") != NULL);
	T_EQ_INT(kv(out, "ok"), 8);
	T_EQ_INT(kv(out, "errors"), 0);
	T_EQ_INT(kv(out, "out_tok"), 8 * 12);
	T_EQ_INT(kv(out, "shorter"), 0);
	T_CHECK(kv(out, "deltas") >= 8 && kv(out, "deltas") <= 8 * 12);
	T_CHECK(kv(out, "out_tok_s") > 0 && kv(out, "ttft_p99_ms") >= kv(out, "ttft_p50_ms"));
	/* a shared prefix and a text prompt */
	T_EQ_INT(t_sh(out, sizeof out, "%s --url http://127.0.0.1:%d --model m --closed 2 --requests 2 "
		      "--prefix 40 --prompt 8 --new 4", client, srv.port), 0);
	T_EQ_INT(kv(out, "out_tok"), 8);
	T_EQ_INT(t_sh(out, sizeof out, "%s --url http://127.0.0.1:%d --model m --closed 1 --requests 1 "
		      "--text 'Once upon a time' --new 5", client, srv.port), 0);
	T_EQ_INT(kv(out, "out_tok"), 5);
	/* open loop: evenly spaced arrivals, 10/s for 0.5 s */
	T_EQ_INT(t_sh(out, sizeof out, "%s --url http://127.0.0.1:%d --model m --rate 10 --uniform "
		      "--duration 0.5 --prompt 8 --new 4", client, srv.port), 0);
	T_EQ_INT(kv(out, "requests"), 5);
	T_EQ_INT(kv(out, "ok"), 5);
	T_EQ_INT(kv(out, "out_tok"), 20);
	/* an unknown model: status errors */
	T_EQ_INT(t_sh(out, sizeof out, "%s --url http://127.0.0.1:%d --model nope --closed 1 --requests 2",
		      client, srv.port), 1);
	T_EQ_INT(kv(out, "err_status"), 2);
	/* invoke mode against echo */
	T_EQ_INT(t_sh(out, sizeof out, "%s --url http://127.0.0.1:%d --invoke ec --body '{\"a\":1}' "
		      "--closed 2 --requests 50", client, srv.port), 0);
	T_EQ_INT(kv(out, "ok"), 50);
	T_CHECK(kv(out, "lat_max_ms") > 0);
	e2e_stop(&srv, 15, 30);
}

void t_main(void)
{
	find_bins();
	T_RUN(test_scripted);
	T_RUN(test_thaw);
}

/* test_client.c — rt_client (URL parsing, framing: Content-Length, chunked with extensions and
 * trailers, close-delimited, 1xx, slow dribbled responses, truncation, garbage) and the CLI
 * commands deploy / invoke / status / functions run as the real `thaw` binary: against a real
 * `thaw serve` (healthz, echo invoke) and against a scripted fake server for the /v1/functions
 * answers. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <jansson.h>
#include "runtime/cli/rt_client.h"
#include "tests/e2e/e2e.h"
#include "tests/t.h"

/* ---- URL parsing ---- */

static void test_url_parse(void)
{
	rt_client_url u;
	char err[256];
	T_EQ_INT(rt_client_url_parse("http://127.0.0.1:8080", &u, err, sizeof err), 0);
	T_EQ_STR(u.host, "127.0.0.1");
	T_EQ_STR(u.port, "8080");
	T_EQ_STR(u.prefix, "");
	T_EQ_STR(u.hostport, "127.0.0.1:8080");
	T_EQ_INT(rt_client_url_parse("HTTP://example.com/", &u, err, sizeof err), 0);
	T_EQ_STR(u.host, "example.com");
	T_EQ_STR(u.port, "80");
	T_EQ_STR(u.hostport, "example.com");
	T_EQ_INT(rt_client_url_parse("http://h:9/base/path//", &u, err, sizeof err), 0);
	T_EQ_STR(u.prefix, "/base/path");
	T_EQ_INT(rt_client_url_parse("http://[::1]:8081/x", &u, err, sizeof err), 0);
	T_EQ_STR(u.host, "::1");
	T_EQ_STR(u.port, "8081");
	T_EQ_STR(u.hostport, "[::1]:8081");
	const char *bad[] = {"https://h", "ftp://h", "h:80", "http://", "http://:80", "http://h:0",
			     "http://h:65536", "http://h:8a", "http://u@h", "http://h/?q", "http://[::1",
			     "http://h x", NULL};
	for (int i = 0; bad[i]; i++) {
		err[0] = 0;
		T_EQ_INT(rt_client_url_parse(bad[i], &u, err, sizeof err), -EINVAL);
		T_CHECK(err[0] != 0);
	}
	T_CHECK(strstr((rt_client_url_parse("https://h", &u, err, sizeof err), err), "https") != NULL);
	/* --url, then $THAW_URL, then the default */
	unsetenv("THAW_URL");
	T_EQ_STR(rt_client_pick_url(NULL), RT_CLIENT_DEFAULT_URL);
	setenv("THAW_URL", "http://env:1", 1);
	T_EQ_STR(rt_client_pick_url(NULL), "http://env:1");
	T_EQ_STR(rt_client_pick_url("http://flag:2"), "http://flag:2");
	setenv("THAW_URL", "", 1);
	T_EQ_STR(rt_client_pick_url(NULL), RT_CLIENT_DEFAULT_URL);
	unsetenv("THAW_URL");
}

/* ---- a scripted fake server (one thread) ---- */

#define MAX_PIECES 16
static struct {
	int lfd, port;
	pthread_t th;
	volatile int stop;
	pthread_mutex_t mu;
	const char *pieces[MAX_PIECES];   /* the response, written piece by piece */
	int delay_us;                     /* pause between pieces */
	char req[65536];                  /* the last request received (head + body) */
	size_t req_len;
	int n_conns;
} fk;

static void fake_script(int delay_us, const char *const *pieces)
{
	pthread_mutex_lock(&fk.mu);
	memset(fk.pieces, 0, sizeof fk.pieces);
	for (int i = 0; pieces[i] && i < MAX_PIECES - 1; i++)
		fk.pieces[i] = pieces[i];
	fk.delay_us = delay_us;
	fk.req_len = 0;
	fk.req[0] = 0;
	pthread_mutex_unlock(&fk.mu);
}

static void fake_serve_one(int fd)
{
	char buf[65536];
	size_t n = 0;
	long clen = 0;
	char *end = NULL;
	struct timeval tv = {.tv_sec = 5};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	while (n < sizeof buf - 1) {
		ssize_t r = recv(fd, buf + n, sizeof buf - 1 - n, 0);
		if (r <= 0)
			break;
		n += (size_t)r;
		buf[n] = 0;
		if (!end && (end = strstr(buf, "\r\n\r\n"))) {
			char *cl = strcasestr(buf, "\r\ncontent-length:");
			if (cl && cl < end)
				clen = strtol(cl + 17, NULL, 10);
		}
		if (end && n >= (size_t)(end + 4 - buf) + (size_t)clen)
			break;
	}
	pthread_mutex_lock(&fk.mu);
	memcpy(fk.req, buf, n);
	fk.req[n] = 0;
	fk.req_len = n;
	const char *pieces[MAX_PIECES];
	memcpy(pieces, fk.pieces, sizeof pieces);
	int delay = fk.delay_us;
	fk.n_conns++;
	pthread_mutex_unlock(&fk.mu);
	for (int i = 0; pieces[i]; i++) {
		if (send(fd, pieces[i], strlen(pieces[i]), MSG_NOSIGNAL) < 0)
			break;
		if (delay)
			usleep((useconds_t)delay);
	}
	close(fd);
}

static void *fake_main(void *arg)
{
	(void)arg;
	while (!fk.stop) {
		struct pollfd p = {.fd = fk.lfd, .events = POLLIN};
		if (poll(&p, 1, 50) <= 0)
			continue;
		int fd = accept(fk.lfd, NULL, NULL);
		if (fd >= 0)
			fake_serve_one(fd);
	}
	return NULL;
}

static int fake_start(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t al = sizeof a;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	pthread_mutex_init(&fk.mu, NULL);
	fk.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fk.lfd < 0 || bind(fk.lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fk.lfd, 16) < 0 ||
	    getsockname(fk.lfd, (struct sockaddr *)&a, &al) < 0)
		return -1;
	fk.port = ntohs(a.sin_port);
	return pthread_create(&fk.th, NULL, fake_main, NULL) == 0 ? 0 : -1;
}

static void fake_stop(void)
{
	fk.stop = 1;
	pthread_join(fk.th, NULL);
	close(fk.lfd);
}

static int fake_req(const char *method, const char *path, rt_client_resp *r, char *err, size_t errlen)
{
	rt_client_url u;
	char url[64];
	snprintf(url, sizeof url, "http://127.0.0.1:%d", fk.port);
	rt_client_url_parse(url, &u, err, errlen);
	return rt_client_request(&u, method, path, NULL, 0, NULL, 5, r, err, errlen);
}

static void test_framing(void)
{
	rt_client_resp r;
	char err[256];
	/* Content-Length, status and content type */
	fake_script(0, (const char *[]){"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
					"Content-Length: 11\r\n\r\n{\"ok\":true}", NULL});
	T_EQ_INT(fake_req("GET", "/a", &r, err, sizeof err), 0);
	T_EQ_INT(r.status, 201);
	T_EQ_STR(r.body, "{\"ok\":true}");
	T_EQ_INT(r.body_len, 11);
	T_EQ_STR(r.content_type, "application/json");
	rt_client_resp_free(&r);
	T_CHECK(strncmp(fk.req, "GET /a HTTP/1.1\r\n", 17) == 0);
	T_CHECK(strstr(fk.req, "\r\nHost: 127.0.0.1:") != NULL);
	T_CHECK(strstr(fk.req, "\r\nConnection: close\r\n") != NULL);

	/* chunked, dribbled a few bytes at a time, with an extension and trailers */
	fake_script(2000, (const char *[]){"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
					   "5;ext=1\r\nhel", "lo\r\n", "1", "\r\n \r\n", "a\r\n0123456789\r\n",
					   "0\r\nX-Trailer: t\r\n\r\n", NULL});
	T_EQ_INT(fake_req("GET", "/c", &r, err, sizeof err), 0);
	T_EQ_INT(r.status, 200);
	T_EQ_STR(r.body, "hello 0123456789");
	rt_client_resp_free(&r);

	/* a 100 Continue before the real answer; a body delimited by the close */
	fake_script(1000, (const char *[]){"HTTP/1.1 100 Continue\r\n\r\n", "HTTP/1.1 404 Not Found\r\n"
					   "Content-Type: application/json\r\n\r\n", "{\"error\":\"no such",
					   " thing\"}", NULL});
	T_EQ_INT(fake_req("GET", "/x", &r, err, sizeof err), 0);
	T_EQ_INT(r.status, 404);
	char msg[128];
	rt_client_error_text(&r, msg, sizeof msg);
	T_EQ_STR(msg, "no such thing");
	rt_client_resp_free(&r);

	/* 204 and HEAD carry no body even with a Content-Length */
	fake_script(0, (const char *[]){"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", NULL});
	T_EQ_INT(fake_req("HEAD", "/h", &r, err, sizeof err), 0);
	T_EQ_INT(r.body_len, 0);
	T_EQ_STR(r.body, "");
	rt_client_resp_free(&r);

	/* a non-JSON error body is passed on as text */
	fake_script(0, (const char *[]){"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 9\r\n\r\nupstream\n", NULL});
	T_EQ_INT(fake_req("GET", "/e", &r, err, sizeof err), 0);
	rt_client_error_text(&r, msg, sizeof msg);
	T_EQ_STR(msg, "upstream");
	rt_client_resp_free(&r);

	/* broken answers are errors, never partial bodies */
	static const char *broken[][3] = {
		{"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", NULL},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", NULL},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", NULL},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n", NULL},
		{"SMTP ready\r\n\r\n", NULL},
		{"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", NULL},
		{"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", NULL},
		{"HTTP/1.1 200 OK\r\nContent-Le", NULL},
		{"", NULL},
	};
	for (size_t i = 0; i < sizeof broken / sizeof broken[0]; i++) {
		fake_script(0, broken[i]);
		err[0] = 0;
		int rc = fake_req("GET", "/b", &r, err, sizeof err);
		if (rc != -EPROTO || r.body != NULL || !err[0]) {
			t_cur_failed++;
			fprintf(stderr, "  FAIL broken case %zu: rc=%d err=%s\n", i, rc, err);
		}
	}
}

static void test_unreachable(void)
{
	/* a port nobody listens on: bind one, close it */
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t al = sizeof a;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	bind(fd, (struct sockaddr *)&a, sizeof a);
	getsockname(fd, (struct sockaddr *)&a, &al);
	close(fd);
	char url[64], err[256];
	snprintf(url, sizeof url, "http://127.0.0.1:%d", ntohs(a.sin_port));
	rt_client_url u;
	rt_client_resp r;
	T_EQ_INT(rt_client_url_parse(url, &u, err, sizeof err), 0);
	T_EQ_INT(rt_client_request(&u, "GET", "/healthz", NULL, 0, NULL, 2, &r, err, sizeof err),
		 -ECONNREFUSED);
	T_CHECK(strstr(err, "cannot connect to http://127.0.0.1:") != NULL);
}

/* ---- running the thaw binary ---- */

typedef struct run_out {
	int status;           /* exit status, or 128+signal */
	char out[16384], err[4096];
} run_out;

static void slurp(const char *path, char *buf, size_t cap)
{
	FILE *f = fopen(path, "r");
	size_t n = f ? fread(buf, 1, cap - 1, f) : 0;
	buf[n] = 0;
	if (f)
		fclose(f);
}

/* run_thaw runs THAW_BIN with args (NULL-terminated), stdin from in (may be NULL). */
static void run_thaw(run_out *o, const char *in, const char *const *args)
{
	const char *bin = getenv("THAW_BIN");
	char po[1024], pe[1024], pi[1024];
	snprintf(po, sizeof po, "%s/out.txt", t_tmpdir());
	snprintf(pe, sizeof pe, "%s/err.txt", t_tmpdir());
	snprintf(pi, sizeof pi, "%s/in.txt", t_tmpdir());
	FILE *f = fopen(pi, "w");
	if (f) {
		fputs(in ? in : "", f);
		fclose(f);
	}
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		const char *argv[40];
		int a = 0;
		argv[a++] = bin ? bin : "build/thaw";
		for (int i = 0; args[i] && a < 39; i++)
			argv[a++] = args[i];
		argv[a] = NULL;
		int fo = open(po, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		int fe = open(pe, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		int fi = open(pi, O_RDONLY);
		dup2(fo, 1);
		dup2(fe, 2);
		dup2(fi, 0);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	int st = 0;
	waitpid(pid, &st, 0);
	o->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	slurp(po, o->out, sizeof o->out);
	slurp(pe, o->err, sizeof o->err);
}

static e2e_server srv;
static int srv_ok;
static char srv_url[64];

static void test_real_server(void)
{
	if (!srv_ok) {
		T_CHECK(!"thaw serve did not start");
		return;
	}
	rt_client_url u;
	rt_client_resp r;
	char err[256];
	T_EQ_INT(rt_client_url_parse(srv_url, &u, err, sizeof err), 0);
	T_EQ_INT(rt_client_request(&u, "GET", "/healthz", NULL, 0, NULL, 5, &r, err, sizeof err), 0);
	T_EQ_INT(r.status, 200);
	T_EQ_STR(r.body, "{\"status\":\"ok\"}");
	T_CHECK(strstr(r.content_type, "application/json") != NULL);
	rt_client_resp_free(&r);
	/* a large body both ways (several reads) */
	size_t n = 700000;
	char *big = malloc(n + 32);
	int k = sprintf(big, "{\"s\":\"");
	memset(big + k, 'x', n);
	strcpy(big + k + n, "\"}");
	size_t blen = strlen(big);
	T_EQ_INT(rt_client_request(&u, "POST", "/v1/functions/echo/invoke", big, blen, NULL, 10, &r,
				   err, sizeof err), 0);
	T_EQ_INT(r.status, 200);
	T_EQ_INT(r.body_len, blen);
	T_CHECK(r.body && memcmp(r.body, big, blen) == 0);
	rt_client_resp_free(&r);
	free(big);
	T_EQ_INT(rt_client_request(&u, "POST", "/v1/functions/nope/invoke", "{}", 2, NULL, 5, &r, err,
				   sizeof err), 0);
	T_EQ_INT(r.status, 404);
	rt_client_error_text(&r, err, sizeof err);
	T_CHECK(strstr(err, "nope") != NULL);
	rt_client_resp_free(&r);
}

static void test_cli_invoke(void)
{
	if (!srv_ok) {
		T_CHECK(!"thaw serve did not start");
		return;
	}
	run_out o;
	const char *body = "{\"inputs\":[[1,2.5,-3]],\"s\":\"h\\u00e9\"}";
	run_thaw(&o, NULL, (const char *[]){"invoke", "echo", "--input", body, "--url", srv_url, NULL});
	T_EQ_INT(o.status, 0);
	char want[256];
	snprintf(want, sizeof want, "%s\n", body);
	T_EQ_STR(o.out, want);
	/* --input @file and @-, $THAW_URL */
	char path[1024];
	snprintf(path, sizeof path, "%s/input.json", t_tmpdir());
	FILE *f = fopen(path, "w");
	fputs("{\"from\":\"file\"}", f);
	fclose(f);
	char at[1100];
	snprintf(at, sizeof at, "@%s", path);
	setenv("THAW_URL", srv_url, 1);
	run_thaw(&o, NULL, (const char *[]){"invoke", "echo", "--input", at, NULL});
	T_EQ_INT(o.status, 0);
	T_EQ_STR(o.out, "{\"from\":\"file\"}\n");
	run_thaw(&o, "{\"from\":\"stdin\"}", (const char *[]){"invoke", "--input", "@-", "echo", NULL});
	T_EQ_INT(o.status, 0);
	T_EQ_STR(o.out, "{\"from\":\"stdin\"}\n");
	/* non-2xx: the error on stderr, exit 1 */
	run_thaw(&o, NULL, (const char *[]){"invoke", "nope", "--input", "{}", NULL});
	T_EQ_INT(o.status, 1);
	T_CHECK(strstr(o.err, "HTTP 404") && strstr(o.err, "nope"));
	T_EQ_STR(o.out, "");
	run_thaw(&o, NULL, (const char *[]){"invoke", "echo", "--input", "{\"a\":", NULL});
	T_EQ_INT(o.status, 1);
	T_CHECK(strstr(o.err, "HTTP 400") && strstr(o.err, "invalid JSON"));
	unsetenv("THAW_URL");
	/* bad usage: exit 2 */
	run_thaw(&o, NULL, (const char *[]){"invoke", "echo", NULL});
	T_EQ_INT(o.status, 2);
	run_thaw(&o, NULL, (const char *[]){"invoke", "Bad_Name", "--input", "{}", NULL});
	T_EQ_INT(o.status, 2);
	T_CHECK(strstr(o.err, "function name") != NULL);
	run_thaw(&o, NULL, (const char *[]){"invoke", "echo", "--input", "@/nonexistent/x", NULL});
	T_EQ_INT(o.status, 2);
	run_thaw(&o, NULL, (const char *[]){"invoke", "echo", "--bogus", NULL});
	T_EQ_INT(o.status, 2);
	run_thaw(&o, NULL, (const char *[]){"invoke", "--help", NULL});
	T_EQ_INT(o.status, 0);
	T_CHECK(strstr(o.out, "usage: thaw invoke") != NULL);
}

static void test_cli_unreachable(void)
{
	run_out o;
	const char *cmds[][6] = {
		{"invoke", "echo", "--input", "{}", NULL},
		{"status", NULL},
		{"deploy", "f", "--kind", "echo", NULL},
		{"functions", "rm", "f", NULL},
	};
	for (size_t i = 0; i < 4; i++) {
		const char *args[8];
		int a = 0;
		for (; cmds[i][a]; a++)
			args[a] = cmds[i][a];
		args[a++] = "--url";
		args[a++] = "http://127.0.0.1:1";
		args[a] = NULL;
		run_thaw(&o, NULL, args);
		T_EQ_INT(o.status, 1);
		T_CHECK(strstr(o.err, "cannot connect to http://127.0.0.1:1") != NULL);
	}
}

static void test_cli_deploy(void)
{
	run_out o;
	char url[64];
	snprintf(url, sizeof url, "http://127.0.0.1:%d", fk.port);
	fake_script(0, (const char *[]){"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
					"Content-Length: 30\r\n\r\n{\"name\":\"my-fn\",\"revision\":3}\n", NULL});
	run_thaw(&o, NULL, (const char *[]){"deploy", "my-fn", "--kind", "mlp", "--snapshot", "m.thaw",
					    "--min-scale", "1", "--idle-timeout", "0.5", "--concurrency",
					    "4", "--max-queue", "10", "--timeout", "30", "--device", "cuda:1",
					    "--max-batch", "16", "--max-batch-delay-us", "250", "--traffic",
					    "1=10,latest=90", "--no-prefix-caching", "--url", url, NULL});
	T_EQ_INT(o.status, 0);
	T_EQ_STR(o.out, "deployed my-fn revision 3\n");
	T_CHECK(strncmp(fk.req, "PUT /v1/functions/my-fn HTTP/1.1\r\n", 34) == 0);
	T_CHECK(strstr(fk.req, "\r\nContent-Type: application/json\r\n") != NULL);
	char *b = strstr(fk.req, "\r\n\r\n");
	json_t *j = b ? json_loads(b + 4, 0, NULL) : NULL;
	json_t *want = json_loads("{\"kind\":\"mlp\",\"snapshot\":\"m.thaw\",\"min_scale\":1,"
				  "\"idle_timeout_s\":0.5,\"concurrency\":4,\"max_queue\":10,\"timeout_s\":30,"
				  "\"device\":\"cuda:1\",\"max_batch\":16,\"max_batch_delay_us\":250,"
				  "\"prefix_caching\":false,\"traffic\":{\"1\":10,\"latest\":90}}", 0, NULL);
	T_CHECK(j && want && json_equal(j, want));
	json_decref(j);
	json_decref(want);
	/* only given options are sent: the daemon fills the defaults */
	run_thaw(&o, NULL, (const char *[]){"deploy", "--kind", "echo", "e1", "--url", url, NULL});
	T_EQ_INT(o.status, 0);
	b = strstr(fk.req, "\r\n\r\n");
	T_EQ_STR(b ? b + 4 : NULL, "{\"kind\":\"echo\"}");
	/* --traffic alone: a traffic-only body (rollback), no new revision */
	run_thaw(&o, NULL, (const char *[]){"deploy", "my-fn", "--traffic", "1=100", "--url", url, NULL});
	T_EQ_INT(o.status, 0);
	b = strstr(fk.req, "\r\n\r\n");
	T_EQ_STR(b ? b + 4 : NULL, "{\"traffic\":{\"1\":100}}");
	T_EQ_STR(o.out, "traffic of my-fn: 1=100% (no new revision)\n");   /* as asked: the fake's
									     * answer has no split */
	/* the daemon's answer to a traffic move: the split, not a "deployed" line */
	fake_script(0, (const char *[]){"HTTP/1.1 200 OK\r\nContent-Length: 61\r\n\r\n"
					"{\"name\":\"my-fn\",\"revision\":3,\"traffic\":{\"1\":100,\"latest\":0}}\n", NULL});
	run_thaw(&o, NULL, (const char *[]){"deploy", "my-fn", "--traffic", "1=100", "--url", url, NULL});
	T_EQ_INT(o.status, 0);
	T_EQ_STR(o.out, "traffic of my-fn: 1=100% (no new revision)\n");
	/* a snapshot without --kind: the daemon takes the snapshot's kind */
	fake_script(0, (const char *[]){"HTTP/1.1 201 Created\r\nContent-Length: 39\r\n\r\n"
					"{\"name\":\"s\",\"kind\":\"mlp\",\"revision\":1}\n", NULL});
	run_thaw(&o, NULL, (const char *[]){"deploy", "s", "--snapshot", "m.thaw", "--rate-limit",
					    "10/s,20", "--url", url, NULL});
	T_EQ_INT(o.status, 0);
	T_EQ_STR(o.out, "deployed s revision 1 (kind mlp)\n");
	b = strstr(fk.req, "\r\n\r\n");
	T_EQ_STR(b ? b + 4 : NULL, "{\"snapshot\":\"m.thaw\",\"rate_limit\":\"10/s,20\"}");
	/* the daemon's refusal */
	fake_script(0, (const char *[]){"HTTP/1.1 400 Bad Request\r\nContent-Length: 44\r\n\r\n"
					"{\"error\":\"field 'kind': unknown kind 'zzz'\"}", NULL});
	run_thaw(&o, NULL, (const char *[]){"deploy", "f", "--kind", "zzz", "--snapshot", "a", "--url",
					    url, NULL});
	T_EQ_INT(o.status, 1);
	T_CHECK(strstr(o.err, "HTTP 400: field 'kind': unknown kind 'zzz'") != NULL);
	/* refused locally, nothing sent: exit 2 naming the option */
	int before = fk.n_conns;
	static const char *bad[][8] = {
		{"deploy", "f", NULL},
		{"deploy", "--kind", "echo", NULL},
		{"deploy", "F!", "--kind", "echo", NULL},
		{"deploy", "f", "--kind", "mlp", NULL},
		{"deploy", "f", "--kind", "echo", "--concurrency", "0", NULL},
		{"deploy", "f", "--kind", "echo", "--concurrency", "x", NULL},
		{"deploy", "f", "--kind", "echo", "--device", "gpu", NULL},
		{"deploy", "f", "--kind", "echo", "--traffic", "1=50", NULL},
		{"deploy", "f", "--kind", "echo", "--traffic", "1=50,,", NULL},
		{"deploy", "f", "g", "--kind", "echo", NULL},
	};
	const char *want_err[] = {"--snapshot or --kind is required", "expected one function NAME", "function name",
				  "--snapshot: required", "--concurrency: must be an integer 1..1024",
				  "--concurrency: 'x' is not an integer", "--device", "--traffic: percents must sum",
				  "--traffic", "expected one function NAME"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		const char *args[12];
		int a = 0;
		for (; bad[i][a]; a++)
			args[a] = bad[i][a];
		args[a++] = "--url";
		args[a++] = url;
		args[a] = NULL;
		run_thaw(&o, NULL, args);
		if (o.status != 2 || !strstr(o.err, want_err[i])) {
			t_cur_failed++;
			fprintf(stderr, "  FAIL deploy case %zu: status %d err %s", i, o.status, o.err);
		}
	}
	T_EQ_INT(fk.n_conns, before);
	run_thaw(&o, NULL, (const char *[]){"deploy", "--help", NULL});
	T_EQ_INT(o.status, 0);
	T_CHECK(strstr(o.out, "--max-batch-delay-us") != NULL);
}

static void test_cli_status_and_functions(void)
{
	run_out o;
	char url[64];
	snprintf(url, sizeof url, "http://127.0.0.1:%d", fk.port);
	/* a chunked answer, split mid-JSON */
	fake_script(1000, (const char *[]){"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
		"62\r\n{\"functions\":[{\"name\":\"digits\",\"kind\":\"mlp\",\"revision\":2,\"traffic\":"
		"{\"1\":90,\"latest\":10},\"state\":\"w\r\n",
		"8a\r\narm\",\"device\":\"cuda:0\",\"resident_bytes\":1572864,\"last_call\":"
		"\"2026-11-25T17:00:00Z\"},{\"name\":\"e\",\"kind\":\"echo\",\"revision\":1,\"state\":\"cold\",\r\n",
		"34\r\n\"device\":null,\"resident_bytes\":0,\"last_call\":null}]}\r\n", "0\r\n\r\n", NULL});
	run_thaw(&o, NULL, (const char *[]){"status", "--url", url, NULL});
	T_EQ_INT(o.status, 0);
	/* the table below proves GET /v1/functions was answered; the devices table comes after it
	 * from GET /v1/devices, the last request the fake saw */
	T_CHECK(strncmp(fk.req, "GET /v1/functions HTTP/1.1\r\n", 28) == 0 ||
		strncmp(fk.req, "GET /v1/devices HTTP/1.1\r\n", 26) == 0);
	char l0[256] = "", l1[256] = "", l2[256] = "";
	T_EQ_INT(sscanf(o.out, "%255[^\n]\n%255[^\n]\n%255[^\n]", l0, l1, l2), 3);
	T_CHECK(strstr(l0, "NAME") && strstr(l0, "STATE") && strstr(l0, "RESIDENT") && strstr(l0, "LAST CALL"));
	char name[64] = "", kind[64] = "", state[64] = "", dev[64] = "", unit[16] = "", last[64] = "";
	char split[64] = "";
	int rev = 0;
	double res = 0;
	T_CHECK(strstr(l0, "LATEST") && strstr(l0, "TRAFFIC"));
	T_EQ_INT(sscanf(l1, "%63s %63s %d %63s %63s %63s %lf %15s %63s", name, kind, &rev, split, state,
			dev, &res, unit, last), 9);
	T_EQ_STR(split, "1=90%,2=10%");
	T_EQ_STR(name, "digits");
	T_EQ_STR(kind, "mlp");
	T_EQ_INT(rev, 2);
	T_EQ_STR(state, "warm");
	T_EQ_STR(dev, "cuda:0");
	T_CHECK(res == 1.5);
	T_EQ_STR(unit, "MiB");
	T_EQ_STR(last, "2026-11-25T17:00:00Z");
	T_EQ_INT(sscanf(l2, "%63s %63s %d %63s %63s %63s %lf %15s %63s", name, kind, &rev, split, state,
			dev, &res, unit, last), 9);
	T_EQ_STR(split, "-");
	T_EQ_STR(name, "e");
	T_EQ_STR(state, "cold");
	T_EQ_STR(dev, "-");
	T_EQ_STR(unit, "B");
	T_EQ_STR(last, "never");
	/* --json passes the answer through */
	fake_script(0, (const char *[]){"HTTP/1.1 200 OK\r\nContent-Length: 16\r\n\r\n{\"functions\":[]}", NULL});
	run_thaw(&o, NULL, (const char *[]){"status", "--json", "--url", url, NULL});
	T_EQ_INT(o.status, 0);
	T_EQ_STR(o.out, "{\"functions\":[]}\n");
	/* a body without "functions" is an error */
	fake_script(0, (const char *[]){"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", NULL});
	run_thaw(&o, NULL, (const char *[]){"status", "--url", url, NULL});
	T_EQ_INT(o.status, 1);
	run_thaw(&o, NULL, (const char *[]){"status", "extra", NULL});
	T_EQ_INT(o.status, 2);
	/* functions rm / get */
	fake_script(0, (const char *[]){"HTTP/1.1 204 No Content\r\n\r\n", NULL});
	run_thaw(&o, NULL, (const char *[]){"functions", "rm", "digits", "--url", url, NULL});
	T_EQ_INT(o.status, 0);
	T_CHECK(strncmp(fk.req, "DELETE /v1/functions/digits HTTP/1.1\r\n", 38) == 0);
	T_EQ_STR(o.out, "deleted digits\n");
	fake_script(0, (const char *[]){"HTTP/1.1 404 Not Found\r\nContent-Length: 38\r\n\r\n"
					"{\"error\":\"function 'zz' not found\"}\n\n\n", NULL});
	run_thaw(&o, NULL, (const char *[]){"functions", "get", "zz", "--url", url, NULL});
	T_EQ_INT(o.status, 1);
	T_CHECK(strstr(o.err, "HTTP 404: function 'zz' not found") != NULL);
	run_thaw(&o, NULL, (const char *[]){"functions", "frob", "zz", NULL});
	T_EQ_INT(o.status, 2);
}

void t_main(void)
{
	signal(SIGPIPE, SIG_IGN);
	T_RUN(test_url_parse);
	if (fake_start() < 0) {
		T_CHECK(!"fake server");
		return;
	}
	T_RUN(test_framing);
	T_RUN(test_unreachable);
	srv_ok = e2e_start(&srv, (const char *[]){"--no-access-log", NULL}, NULL) == 0;
	snprintf(srv_url, sizeof srv_url, "http://127.0.0.1:%d", srv.port);
	T_RUN(test_real_server);
	T_RUN(test_cli_invoke);
	T_RUN(test_cli_unreachable);
	T_RUN(test_cli_deploy);
	T_RUN(test_cli_status_and_functions);
	if (srv_ok)
		e2e_stop(&srv, SIGTERM, 10);
	fake_stop();
}

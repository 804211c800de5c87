/* test_http_e2e.c — end-to-end tests of `thaw serve` over real TCP: framing, pipelining,
 * limits, timeouts, logging, metrics and the SIGTERM drain. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include "tests/e2e/e2e.h"
#include "tests/t.h"

static e2e_server srv;
static int srv_ok;

static void start_default(void)
{
	/* read timeout 2 s: every request here, even test_one_byte_writes' 80 separate sends,
	 * arrives well within it under ASan on a loaded machine; 408 is tested with a request that
	 * never completes */
	const char *args[] = {"--read-timeout", "2", "--keepalive-timeout", "1", "--max-body", "4096",
			      "--max-header", "2048", NULL};
	const char *env[] = {"K_SERVICE=svc-a", "K_REVISION=svc-a-00001", "K_CONFIGURATION=svc-a", NULL};
	srv_ok = e2e_start(&srv, args, env) == 0;
}

#define NEED_SERVER() do { if (!srv_ok) { T_CHECK(!"server did not start"); return; } } while (0)

static void test_health_endpoints(void)
{
	static const char *paths[] = {"/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"};
	NEED_SERVER();
	for (size_t i = 0; i < 4; i++) {
		char raw[256];
		e2e_resp r;
		snprintf(raw, sizeof raw, "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", paths[i]);
		T_EQ_INT(e2e_request(&srv, raw, &r), 0);
		T_EQ_INT(r.status, 200);
		char *ct = e2e_header(&r, "Content-Type");
		T_CHECK(ct && strstr(ct, "application/json"));
		free(ct);
		e2e_resp_free(&r);
	}
}

static void test_echo_roundtrip(void)
{
	NEED_SERVER();
	const char *body = "{\"inputs\":[[1,2.5,-3]],\"s\":\"h\\u00e9\"}";
	char raw[512];
	snprintf(raw, sizeof raw, "POST /v1/functions/echo/invoke HTTP/1.1\r\nHost: t\r\n"
		 "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s", strlen(body), body);
	e2e_resp r;
	T_EQ_INT(e2e_request(&srv, raw, &r), 0);
	T_EQ_INT(r.status, 200);
	T_EQ_STR(r.body, body);
	e2e_resp_free(&r);
}

static void test_echo_invalid_json(void)
{
	NEED_SERVER();
	e2e_resp r;
	T_EQ_INT(e2e_request(&srv, "POST /v1/functions/echo/invoke HTTP/1.1\r\nHost: t\r\n"
			     "Content-Length: 7\r\n\r\n{\"a\":1,", &r), 0);
	T_EQ_INT(r.status, 400);
	T_CHECK(strstr(r.body, "\"error\":\"invalid JSON") != NULL);
	e2e_resp_free(&r);
	T_EQ_INT(e2e_request(&srv, "POST /v1/functions/echo/invoke HTTP/1.1\r\nHost: t\r\n"
			     "Content-Length: 0\r\n\r\n", &r), 0);
	T_EQ_INT(r.status, 400);
	e2e_resp_free(&r);
}

static void test_unknown_route_and_method(void)
{
	NEED_SERVER();
	e2e_resp r;
	T_EQ_INT(e2e_request(&srv, "GET /nope HTTP/1.1\r\nHost: t\r\n\r\n", &r), 0);
	T_EQ_INT(r.status, 404);
	T_CHECK(strstr(r.body, "\"error\"") != NULL);
	e2e_resp_free(&r);
	T_EQ_INT(e2e_request(&srv, "POST /v1/functions/nosuch/invoke HTTP/1.1\r\nHost: t\r\n"
			     "Content-Length: 2\r\n\r\n{}", &r), 0);
	T_EQ_INT(r.status, 404);
	T_CHECK(strstr(r.body, "nosuch") != NULL);
	e2e_resp_free(&r);
	T_EQ_INT(e2e_request(&srv, "DELETE /healthz HTTP/1.1\r\nHost: t\r\n\r\n", &r), 0);
	T_EQ_INT(r.status, 405);
	char *allow = e2e_header(&r, "Allow");
	T_EQ_STR(allow, "GET");
	free(allow);
	e2e_resp_free(&r);
}

static void test_pipelined_in_order(void)
{
	NEED_SERVER();
	int fd = e2e_connect(&srv);
	T_CHECK(fd >= 0);
	if (fd < 0)
		return;
	char raw[2048] = "";
	for (int i = 0; i < 5; i++) {
		char one[256];
		snprintf(one, sizeof one, "POST /v1/functions/echo/invoke HTTP/1.1\r\nHost: t\r\n"
			 "X-Request-Id: pipe-%d\r\nContent-Length: %d\r\n\r\n[%d]", i, i < 10 ? 3 : 4, i);
		strcat(raw, one);
	}
	T_EQ_INT(e2e_send(fd, raw, strlen(raw)), 0);
	for (int i = 0; i < 5; i++) {
		e2e_resp r;
		char want[32], body[16];
		T_EQ_INT(e2e_read_resp(fd, &r), 0);
		snprintf(want, sizeof want, "pipe-%d", i);
		snprintf(body, sizeof body, "[%d]", i);
		char *rid = e2e_header(&r, "X-Request-Id");
		T_EQ_STR(rid, want);
		T_EQ_STR(r.body, body);
		free(rid);
		e2e_resp_free(&r);
	}
	close(fd);
}

static void test_one_byte_writes(void)
{
	NEED_SERVER();
	const char *raw = "POST /v1/functions/echo/invoke HTTP/1.1\r\nHost: t\r\n"
			  "Content-Length: 11\r\n\r\n{\"k\":[1,2]}";
	int fd = e2e_connect(&srv);
	T_CHECK(fd >= 0);
	if (fd < 0)
		return;
	for (size_t i = 0; raw[i]; i++) {
		T_EQ_INT(e2e_send(fd, raw + i, 1), 0);
		if (i % 16 == 0)
			usleep(200);
	}
	e2e_resp r;
	T_EQ_INT(e2e_read_resp(fd, &r), 0);
	T_EQ_INT(r.status, 200);
	T_EQ_STR(r.body, "{\"k\":[1,2]}");
	e2e_resp_free(&r);
	close(fd);
}

static void test_bad_request_line_closes(void)
{
	static const char *bad[] = {
		"GARBAGE\r\n\r\n",
		"GET /x HTTP/9.9\r\n\r\n",
		"GET /healthz HTTP/1.1\r\nBad Header Without Colon\r\n\r\n",
		"POST /v1/functions/echo/invoke HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
		"POST /v1/functions/echo/invoke HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
	};
	NEED_SERVER();
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		int fd = e2e_connect(&srv);
		T_CHECK(fd >= 0);
		if (fd < 0)
			return;
		e2e_resp r;
		T_EQ_INT(e2e_send(fd, bad[i], strlen(bad[i])), 0);
		T_EQ_INT(e2e_read_resp(fd, &r), 0);
		T_EQ_INT(r.status, 400);
		T_CHECK(strstr(r.body, "\"error\"") != NULL);
		T_CHECK(e2e_is_closed(fd, 10000));
		e2e_resp_free(&r);
		close(fd);
	}
}

static void test_oversize_headers_431(void)
{
	NEED_SERVER();
	char *raw = malloc(8192);
	strcpy(raw, "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: ");
	size_t l = strlen(raw);
	memset(raw + l, 'a', 4000);
	strcpy(raw + l + 4000, "\r\n\r\n");
	int fd = e2e_connect(&srv);
	e2e_resp r;
	T_EQ_INT(e2e_send(fd, raw, strlen(raw)), 0);
	T_EQ_INT(e2e_read_resp(fd, &r), 0);
	T_EQ_INT(r.status, 431);
	T_CHECK(e2e_is_closed(fd, 10000));
	e2e_resp_free(&r);
	close(fd);
	/* too many headers */
	strcpy(raw, "GET /healthz HTTP/1.1\r\n");
	for (int i = 0; i < 80; i++)
		sprintf(raw + strlen(raw), "X-%d: v\r\n", i);
	strcat(raw, "\r\n");
	T_EQ_INT(e2e_request(&srv, raw, &r), 0);
	T_EQ_INT(r.status, 431);
	e2e_resp_free(&r);
	free(raw);
}

static void test_oversize_body_413(void)
{
	NEED_SERVER();
	e2e_resp r;
	/* declared too large: refused before the body is sent */
	T_EQ_INT(e2e_request(&srv, "POST /v1/functions/echo/invoke HTTP/1.1\r\nHost: t\r\n"
			     "Content-Length: 100000\r\n\r\n", &r), 0);
	T_EQ_INT(r.status, 413);
	e2e_resp_free(&r);
	/* chunked, growing past the limit */
	int fd = e2e_connect(&srv);
	const char *h = "POST /v1/functions/echo/invoke HTTP/1.1\r\nHost: t\r\n"
			"Transfer-Encoding: chunked\r\n\r\n";
	T_EQ_INT(e2e_send(fd, h, strlen(h)), 0);
	char chunk[1100];
	memcpy(chunk, "400\r\n", 5);
	memset(chunk + 5, ' ', 1024);
	memcpy(chunk + 5 + 1024, "\r\n", 2);
	for (int i = 0; i < 5; i++)
		if (e2e_send(fd, chunk, 1031) < 0)
			break;
	T_EQ_INT(e2e_read_resp(fd, &r), 0);
	T_EQ_INT(r.status, 413);
	T_CHECK(e2e_is_closed(fd, 10000));
	e2e_resp_free(&r);
	close(fd);
}

static void test_chunked_body(void)
{
	NEED_SERVER();
	e2e_resp r;
	T_EQ_INT(e2e_request(&srv, "POST /v1/functions/echo/invoke HTTP/1.1\r\nHost: t\r\n"
			     "Transfer-Encoding: chunked\r\n\r\n"
			     "4\r\n{\"a\"\r\n5;ext=1\r\n:[1,2\r\n2\r\n]}\r\n0\r\n\r\n", &r), 0);
	T_EQ_INT(r.status, 200);
	T_EQ_STR(r.body, "{\"a\":[1,2]}");
	e2e_resp_free(&r);
}

static void test_keep_alive_reuse(void)
{
	NEED_SERVER();
	int fd = e2e_connect(&srv);
	for (int i = 0; i < 3; i++) {
		const char *raw = "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
		e2e_resp r;
		T_EQ_INT(e2e_send(fd, raw, strlen(raw)), 0);
		T_EQ_INT(e2e_read_resp(fd, &r), 0);
		T_EQ_INT(r.status, 200);
		char *conn = e2e_header(&r, "Connection");
		T_CHECK(conn == NULL);  /* HTTP/1.1 default: keep-alive */
		free(conn);
		e2e_resp_free(&r);
	}
	/* Connection: close is honoured */
	const char *raw = "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
	e2e_resp r;
	T_EQ_INT(e2e_send(fd, raw, strlen(raw)), 0);
	T_EQ_INT(e2e_read_resp(fd, &r), 0);
	char *conn = e2e_header(&r, "Connection");
	T_EQ_STR(conn, "close");
	free(conn);
	T_CHECK(e2e_is_closed(fd, 10000));
	e2e_resp_free(&r);
	close(fd);
	/* HTTP/1.0 without keep-alive closes */
	fd = e2e_connect(&srv);
	raw = "GET /healthz HTTP/1.0\r\n\r\n";
	T_EQ_INT(e2e_send(fd, raw, strlen(raw)), 0);
	T_EQ_INT(e2e_read_resp(fd, &r), 0);
	T_EQ_INT(r.status, 200);
	T_CHECK(e2e_is_closed(fd, 10000));
	e2e_resp_free(&r);
	close(fd);
}

static void test_expect_100_continue(void)
{
	NEED_SERVER();
	int fd = e2e_connect(&srv);
	const char *h = "POST /v1/functions/echo/invoke HTTP/1.1\r\nHost: t\r\n"
			"Expect: 100-continue\r\nContent-Length: 4\r\n\r\n";
	e2e_resp r;
	T_EQ_INT(e2e_send(fd, h, strlen(h)), 0);
	T_EQ_INT(e2e_read_resp(fd, &r), 0);
	T_EQ_INT(r.status, 100);
	e2e_resp_free(&r);
	T_EQ_INT(e2e_send(fd, "[42]", 4), 0);
	T_EQ_INT(e2e_read_resp(fd, &r), 0);
	T_EQ_INT(r.status, 200);
	T_EQ_STR(r.body, "[42]");
	e2e_resp_free(&r);
	close(fd);
	/* a body over the limit is refused instead of continued */
	T_EQ_INT(e2e_request(&srv, "POST /v1/functions/echo/invoke HTTP/1.1\r\nHost: t\r\n"
			     "Expect: 100-continue\r\nContent-Length: 999999\r\n\r\n", &r), 0);
	T_EQ_INT(r.status, 413);
	e2e_resp_free(&r);
}

static void test_slow_client_408_and_idle_close(void)
{
	NEED_SERVER();
	int fd = e2e_connect(&srv);
	const char *part = "POST /v1/functions/echo/invoke HTTP/1.1\r\nHost: t\r\nContent-Len";
	e2e_resp r;
	T_EQ_INT(e2e_send(fd, part, strlen(part)), 0);
	T_EQ_INT(e2e_read_resp(fd, &r), 0);   /* read timeout is 2 s */
	T_EQ_INT(r.status, 408);
	T_CHECK(e2e_is_closed(fd, 10000));
	e2e_resp_free(&r);
	close(fd);
	/* an idle keep-alive connection is closed after the idle timeout (1 s) */
	fd = e2e_connect(&srv);
	T_CHECK(e2e_is_closed(fd, 10000));
	close(fd);
}

/* a keep-alive connection that answered a request and then sits idle closes within the
 * keep-alive timeout (1 s here; the first-byte timeout of a silent connection is 10 s) */
static int closes_after_keepalive(const e2e_server *s)
{
	int fd = e2e_connect(s);
	const char *g = "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
	e2e_resp r;
	int ok = fd >= 0 && e2e_send(fd, g, strlen(g)) == 0 && e2e_read_resp(fd, &r) == 0;
	if (ok) {
		ok = r.status == 200;
		e2e_resp_free(&r);
	}
	ok = ok && e2e_is_closed(fd, 4000);
	if (fd >= 0)
		close(fd);
	return ok;
}

/* --keepalive-timeout sets the keep-alive idle timeout; --idle-timeout, its deprecated
 * spelling, still does and logs a warning naming the new flag */
static void test_keepalive_timeout_flags(void)
{
	NEED_SERVER();
	T_CHECK(closes_after_keepalive(&srv));
	T_CHECK(!e2e_log_contains(&srv, "deprecated"));
	e2e_server old;
	const char *args[] = {"--idle-timeout", "1", NULL};
	if (e2e_start(&old, args, NULL) != 0) {
		T_CHECK(!"server with --idle-timeout did not start");
		return;
	}
	T_CHECK(closes_after_keepalive(&old));
	T_CHECK(e2e_log_contains(&old, "--idle-timeout is deprecated: use --keepalive-timeout"));
	T_CHECK(e2e_log_contains(&old, "idle_timeout_s"));
	e2e_stop(&old, SIGTERM, 10);
}

static void test_request_id_and_traceparent(void)
{
	NEED_SERVER();
	e2e_resp r;
	const char *tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
	char raw[512];
	snprintf(raw, sizeof raw, "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Request-Id: my-req-77\r\n"
		 "traceparent: %s\r\n\r\n", tp);
	T_EQ_INT(e2e_request(&srv, raw, &r), 0);
	char *rid = e2e_header(&r, "X-Request-Id"), *tpo = e2e_header(&r, "traceparent");
	T_EQ_STR(rid, "my-req-77");
	T_EQ_STR(tpo, tp);
	free(rid);
	free(tpo);
	e2e_resp_free(&r);
	/* a missing id is assigned; an invalid traceparent is not passed on */
	T_EQ_INT(e2e_request(&srv, "GET /healthz HTTP/1.1\r\nHost: t\r\ntraceparent: 00-zz\r\n\r\n", &r), 0);
	rid = e2e_header(&r, "X-Request-Id");
	tpo = e2e_header(&r, "traceparent");
	T_CHECK(rid && strlen(rid) > 4);
	T_CHECK(tpo == NULL);
	free(rid);
	free(tpo);
	e2e_resp_free(&r);
	/* the access log line may be written after the response went out: poll for it */
	T_CHECK(e2e_wait_log(&srv, "\"request_id\":\"my-req-77\"", 10000));
	T_CHECK(e2e_wait_log(&srv, tp, 10000));
	T_CHECK(e2e_wait_log(&srv, "\"method\":\"GET\",\"path\":\"/healthz\",\"status\":200", 10000));
	/* Knative labels in the start-up line */
	T_CHECK(e2e_log_contains(&srv, "\"msg\":\"listening\""));
	T_CHECK(e2e_log_contains(&srv, "\"k_service\":\"svc-a\""));
	T_CHECK(e2e_log_contains(&srv, "\"k_revision\":\"svc-a-00001\""));
	T_CHECK(e2e_log_contains(&srv, "\"k_configuration\":\"svc-a\""));
}

static void test_metrics(void)
{
	NEED_SERVER();
	e2e_resp r;
	T_EQ_INT(e2e_request(&srv, "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n", &r), 0);
	T_EQ_INT(r.status, 200);
	T_CHECK(strstr(r.body, "thaw_http_requests_total{route=\"/healthz\",code=\"200\"}") != NULL);
	T_CHECK(strstr(r.body, "thaw_http_requests_total{route=\"/v1/functions/{name}/invoke\",code=\"400\"}") != NULL);
	T_CHECK(strstr(r.body, "# TYPE thaw_http_request_duration_seconds histogram") != NULL);
	T_CHECK(strstr(r.body, "thaw_http_request_duration_seconds_bucket{route=\"/healthz\",le=\"+Inf\"}") != NULL);
	T_CHECK(strstr(r.body, "k_service=\"svc-a\"") != NULL);
	/* promtool (Debian's prometheus package) must accept the exposition */
	if (system("command -v promtool >/dev/null 2>&1") == 0) {
		char path[600], cmd[800];
		snprintf(path, sizeof path, "%s/metrics.txt", t_tmpdir());
		FILE *f = fopen(path, "w");
		fwrite(r.body, 1, r.body_len, f);
		fclose(f);
		snprintf(cmd, sizeof cmd, "promtool check metrics < %s", path);
		T_EQ_INT(system(cmd), 0);
	} else {
		fprintf(stderr, "  note: promtool not installed; exposition not linted\n");
	}
	e2e_resp_free(&r);
}

static void test_head_request(void)
{
	NEED_SERVER();
	int fd = e2e_connect(&srv);
	const char *raw = "HEAD /healthz HTTP/1.1\r\nHost: t\r\n\r\nGET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
	T_EQ_INT(e2e_send(fd, raw, strlen(raw)), 0);
	/* HEAD carries Content-Length but no body: read the header block by hand */
	char buf[4096];
	size_t len = 0;
	while (len < sizeof buf - 1) {
		ssize_t n = recv(fd, buf + len, sizeof buf - 1 - len, 0);
		if (n <= 0)
			break;
		len += (size_t)n;
		buf[len] = 0;
		char *second = strstr(buf, "\r\n\r\nHTTP/1.1 200");
		if (second && strstr(second, "{\"status\":\"ok\"}"))
			break;
	}
	buf[len] = 0;
	T_CHECK(strncmp(buf, "HTTP/1.1 200", 12) == 0);
	char *second = strstr(buf, "\r\n\r\nHTTP/1.1 200");
	T_CHECK(second != NULL);  /* no body bytes between the two responses */
	close(fd);
}

/* a 6 MiB /invoke answer (sent by rt_req_reply_take without a copy) arrives intact; a
 * client that closes while it is being written leaves the server serving (ASan: no leak) */
static void test_large_answer_take(void)
{
	e2e_server s;
	const char *args[] = {"--max-body", "16777216", "--no-access-log", NULL};
	T_EQ_INT(e2e_start(&s, args, NULL), 0);
	size_t n = 6u << 20;
	char *body = malloc(n + 16);
	char *raw = malloc(n + 256);
	T_CHECK(body && raw);
	if (!body || !raw)
		goto out;
	memcpy(body, "{\"s\":\"", 6);
	memset(body + 6, 'a', n);
	memcpy(body + 6 + n, "\"}", 3);
	int hl = snprintf(raw, 256, "POST /v1/functions/echo/invoke HTTP/1.1\r\nHost: t\r\n"
			  "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n", n + 8);
	memcpy(raw + hl, body, n + 8);
	size_t rl = (size_t)hl + n + 8;
	int fd = e2e_connect(&s);
	T_EQ_INT(e2e_send(fd, raw, rl), 0);
	e2e_resp r;
	T_EQ_INT(e2e_read_resp(fd, &r), 0);
	T_EQ_INT(r.status, 200);
	T_CHECK(r.body && strlen(r.body) == n + 8 && memcmp(r.body, body, n + 8) == 0);
	e2e_resp_free(&r);
	close(fd);
	for (int i = 0; i < 3; i++) {   /* closes before reading the answer */
		fd = e2e_connect(&s);
		T_EQ_INT(e2e_send(fd, raw, rl), 0);
		usleep(200000);
		close(fd);
	}
	T_EQ_INT(e2e_request(&s, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n", &r), 0);
	T_EQ_INT(r.status, 200);
	e2e_resp_free(&r);
out:
	free(body);
	free(raw);
	T_EQ_INT(e2e_stop(&s, SIGTERM, 20), 0);
}

static void test_max_connections(void)
{
	e2e_server s;
	const char *args[] = {"--max-connections", "2", "--probe-reserve", "0", "--no-access-log", NULL};
	T_EQ_INT(e2e_start(&s, args, NULL), 0);
	/* two connections with a request under way (an idle one would make room instead) */
	const char *part = "GET /healthz HTTP/1.1\r\n", *rest = "Host: t\r\n\r\n";
	int a = e2e_connect(&s), b = e2e_connect(&s);
	T_CHECK(a >= 0 && b >= 0);
	T_EQ_INT(e2e_send(a, part, strlen(part)), 0);
	T_EQ_INT(e2e_send(b, part, strlen(part)), 0);
	usleep(100000);
	int c = e2e_connect(&s);
	e2e_resp r;
	T_CHECK(c >= 0);
	T_EQ_INT(e2e_read_resp(c, &r), 0);
	T_EQ_INT(r.status, 503);
	e2e_resp_free(&r);
	close(c);
	/* the first two still work */
	T_EQ_INT(e2e_send(a, rest, strlen(rest)), 0);
	T_EQ_INT(e2e_read_resp(a, &r), 0);
	T_EQ_INT(r.status, 200);
	e2e_resp_free(&r);
	close(a);
	close(b);
	T_EQ_INT(e2e_stop(&s, SIGTERM, 20), 0);
}

/* RFC 9112: what llhttp's lenient mode let through is refused, each on its own connection,
 * which then closes */
static void test_strict_parsing(void)
{
	static const struct { const char *raw; int status; } cases[] = {
		{"GET /healthz HTTP/1.1\r\nHost: t\r\nX-A : b\r\n\r\n", 400},
		{"GET /healthz HTTP/1.1\r\nHost: t\r\nAUTHORIZATION : Bearer thaw_x\r\n\r\n", 400},
		{"GET /healthz HTTP/1.1\r\nHost: t\r\nX-A: a\r\n  folded\r\n\r\n", 400},
		{"GET /healthz HTTP/1.1\r\nHost: t\r\nX-A: a\r\n\tfolded\r\n\r\n", 400},
		{"POST /v1/functions/echo/invoke HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked"
		 "\r\n\r\n2\r\n{}\r\n0\r\n\r\n", 501},
		{"POST /v1/functions/echo/invoke HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
		{"POST /v1/functions/echo/invoke HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, chunked"
		 "\r\n\r\n2\r\n{}\r\n0\r\n\r\n", 400},
		{"GET /healthz HTTP/2.0\r\nHost: t\r\n\r\n", 505},
		{"GET /healthz HTTP/0.9\r\nHost: t\r\n\r\n", 505},
		{"POST /v1/functions/echo/invoke HTTP/1.1\r\nHost: t\r\nExpect: 200-ok\r\n"
		 "Content-Length: 2\r\n\r\n{}", 417},
	};
	NEED_SERVER();
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		int fd = e2e_connect(&srv);
		T_CHECK(fd >= 0);
		if (fd < 0)
			return;
		e2e_resp r;
		T_EQ_INT(e2e_send(fd, cases[i].raw, strlen(cases[i].raw)), 0);
		T_EQ_INT(e2e_read_resp(fd, &r), 0);
		if (r.status != cases[i].status)
			fprintf(stderr, "  case %zu: %d %s\n", i, r.status, r.body ? r.body : "");
		T_EQ_INT(r.status, cases[i].status);
		T_CHECK(e2e_is_closed(fd, 10000));
		if (cases[i].status == 417)
			T_CHECK(strstr(r.headers, "417 Expectation Failed") != NULL);
		e2e_resp_free(&r);
		close(fd);
	}
	/* an obs-fold whose line break ends one write and whose blank starts the next */
	int fd = e2e_connect(&srv);
	const char *a = "GET /healthz HTTP/1.1\r\nHost: t\r\nX-A: a\r\n", *b = " folded\r\n\r\n";
	e2e_resp r;
	T_EQ_INT(e2e_send(fd, a, strlen(a)), 0);
	usleep(100000);
	T_EQ_INT(e2e_send(fd, b, strlen(b)), 0);
	T_EQ_INT(e2e_read_resp(fd, &r), 0);
	T_EQ_INT(r.status, 400);
	e2e_resp_free(&r);
	close(fd);
}

/* connection exhaustion: the server full of busy connections (each with a request under way)
 * still answers probes from its reserve and refuses other requests there with 503; full of idle
 * ones, a new connection closes the oldest that never sent a byte; a connection that never
 * sends a byte is closed after --first-byte-timeout */
static void test_probe_reserve_and_first_byte_timeout(void)
{
	e2e_server s;
	const char *args[] = {"--max-connections", "2", "--probe-reserve", "2", "--first-byte-timeout", "3",
			      "--no-access-log", NULL};
	T_EQ_INT(e2e_start(&s, args, NULL), 0);
	const char *part = "GET /healthz HTTP/1.1\r\nHost: t\r\n";   /* headers not finished */
	int a = e2e_connect(&s), b = e2e_connect(&s);
	T_CHECK(a >= 0 && b >= 0);
	T_EQ_INT(e2e_send(a, part, strlen(part)), 0);
	T_EQ_INT(e2e_send(b, part, strlen(part)), 0);
	usleep(100000);
	e2e_resp r;
	T_EQ_INT(e2e_call(&s, "GET", "/healthz", NULL, NULL, &r), 200);
	char *conn = e2e_header(&r, "Connection");
	T_CHECK(conn && strcasecmp(conn, "close") == 0);   /* one probe per reserve connection */
	free(conn);
	e2e_resp_free(&r);
	T_EQ_INT(e2e_call(&s, "GET", "/v2/health/ready", NULL, NULL, NULL), 200);
	T_EQ_INT(e2e_call(&s, "GET", "/v1/functions", NULL, NULL, &r), 503);
	T_CHECK(strstr(r.body, "too many connections") != NULL);
	e2e_resp_free(&r);
	close(a);
	close(b);
	/* full of idle connections: the oldest silent one makes room for a new client */
	double t0 = e2e_now_s();
	int c = -1, d = -1;
	for (int i = 0; i < 200 && c < 0; i++) {   /* until the server has let a and b go */
		if (e2e_call(&s, "GET", "/v1/functions", NULL, NULL, NULL) == 200)
			c = e2e_connect(&s);
		else
			usleep(10000);
	}
	usleep(50000);
	d = e2e_connect(&s);
	usleep(50000);
	T_CHECK(c >= 0 && d >= 0);
	T_EQ_INT(e2e_call(&s, "GET", "/v1/functions", NULL, NULL, NULL), 200);
	T_CHECK(e2e_is_closed(c, 2000));      /* evicted: the oldest that never sent a byte */
	T_CHECK(!e2e_is_closed(d, 0));
	/* d never sends a byte: closed after about 3 s (generous bound under ASan) */
	T_CHECK(e2e_is_closed(d, 15000));
	T_CHECK(e2e_now_s() - t0 >= 2.5);
	close(c);
	close(d);
	T_EQ_INT(e2e_stop(&s, SIGTERM, 20), 0);
}

/* bodies in flight across all connections are bounded: a body that would pass
 * --max-body-inflight gets 503 + Retry-After before any of it is read; once the first is done
 * the budget is free again */
static void test_body_inflight_budget(void)
{
	e2e_server s;
	const char *args[] = {"--max-body", "1000000", "--max-body-inflight", "1500000", "--no-access-log", NULL};
	T_EQ_INT(e2e_start(&s, args, NULL), 0);
	static char body[600000];
	memset(body, ' ', sizeof body);
	body[0] = '[';
	body[sizeof body - 2] = '1';
	body[sizeof body - 1] = ']';
	char head[256];
	int hn = snprintf(head, sizeof head, "POST /v1/functions/echo/invoke HTTP/1.1\r\nHost: t\r\n"
			  "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n", sizeof body);
	int a = e2e_connect(&s), b = e2e_connect(&s), c = e2e_connect(&s);
	T_CHECK(a >= 0 && b >= 0 && c >= 0);
	/* a and b announce 600 kB each and send half: 1.2 MB of the 1.5 MB budget held */
	T_EQ_INT(e2e_send(a, head, (size_t)hn), 0);
	T_EQ_INT(e2e_send(a, body, sizeof body / 2), 0);
	T_EQ_INT(e2e_send(b, head, (size_t)hn), 0);
	T_EQ_INT(e2e_send(b, body, sizeof body / 2), 0);
	usleep(200000);
	e2e_resp r;
	T_EQ_INT(e2e_send(c, head, (size_t)hn), 0);
	T_EQ_INT(e2e_read_resp(c, &r), 0);
	T_EQ_INT(r.status, 503);
	char *ra = e2e_header(&r, "Retry-After");
	T_CHECK(ra != NULL);
	free(ra);
	e2e_resp_free(&r);
	T_CHECK(e2e_is_closed(c, 10000));
	close(c);
	/* a and b complete normally; then a new one fits again */
	T_EQ_INT(e2e_send(a, body + sizeof body / 2, sizeof body - sizeof body / 2), 0);
	T_EQ_INT(e2e_read_resp(a, &r), 0);
	T_EQ_INT(r.status, 200);
	e2e_resp_free(&r);
	T_EQ_INT(e2e_send(b, body + sizeof body / 2, sizeof body - sizeof body / 2), 0);
	T_EQ_INT(e2e_read_resp(b, &r), 0);
	T_EQ_INT(r.status, 200);
	e2e_resp_free(&r);
	T_EQ_INT(e2e_send(a, head, (size_t)hn), 0);
	T_EQ_INT(e2e_send(a, body, sizeof body), 0);
	T_EQ_INT(e2e_read_resp(a, &r), 0);
	T_EQ_INT(r.status, 200);
	T_EQ_INT((int)r.body_len, (int)sizeof body);
	e2e_resp_free(&r);
	close(a);
	close(b);
	T_EQ_INT(e2e_stop(&s, SIGTERM, 20), 0);
}

static void test_sigterm_drain(void)
{
	e2e_server s;
	/* the drain timeout only has to outlast the checks below, however slow the machine: the
	 * server exits as soon as the in-flight request is done */
	const char *args[] = {"--drain-timeout", "60", NULL};
	T_EQ_INT(e2e_start(&s, args, NULL), 0);
	/* a request whose body is still arriving when SIGTERM comes */
	int slow = e2e_connect(&s);
	const char *h = "POST /v1/functions/echo/invoke HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\n[1,2";
	T_EQ_INT(e2e_send(slow, h, strlen(h)), 0);
	/* a keep-alive connection with a request answered, idle at SIGTERM */
	int idle = e2e_connect(&s);
	e2e_resp r;
	const char *g = "GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n";
	T_EQ_INT(e2e_send(idle, g, strlen(g)), 0);
	T_EQ_INT(e2e_read_resp(idle, &r), 0);
	T_EQ_INT(r.status, 200);
	e2e_resp_free(&r);
	usleep(100000);
	kill(s.pid, SIGTERM);
	/* the drain has begun (logged just before the listener is closed) */
	T_CHECK(e2e_wait_log(&s, "draining", 20000));
	/* still running: the slow request is in flight */
	T_CHECK(kill(s.pid, 0) == 0);
	/* new connections are refused */
	T_CHECK(e2e_wait_refused(&s, 10000));
	/* idle connection closed */
	T_CHECK(e2e_is_closed(idle, 10000));
	close(idle);
	/* the in-flight request completes, with Connection: close */
	T_EQ_INT(e2e_send(slow, ",3,4,5]", 7), 0);
	T_EQ_INT(e2e_read_resp(slow, &r), 0);
	T_EQ_INT(r.status, 200);
	T_EQ_STR(r.body, "[1,2,3,4,5]");
	char *conn = e2e_header(&r, "Connection");
	T_EQ_STR(conn, "close");
	free(conn);
	e2e_resp_free(&r);
	close(slow);
	T_EQ_INT(e2e_stop(&s, 0, 20), 0);
	T_CHECK(e2e_log_contains(&s, "draining"));
}

static void test_drain_timeout_exits_zero(void)
{
	e2e_server s;
	const char *args[] = {"--drain-timeout", "0.3", NULL};
	T_EQ_INT(e2e_start(&s, args, NULL), 0);
	int slow = e2e_connect(&s);
	const char *h = "POST /v1/functions/echo/invoke HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n[";
	T_EQ_INT(e2e_send(slow, h, strlen(h)), 0);
	usleep(50000);
	/* exits 0 once the 0.3 s drain timeout cut the slow request off (20 s: ASan's exit is slow) */
	T_EQ_INT(e2e_stop(&s, SIGTERM, 20), 0);
	close(slow);
}

static void test_port_env_and_cli(void)
{
	/* --help works and bad options are refused with exit 2 */
	char cmd[1200];
	const char *bin = getenv("THAW_BIN");
	snprintf(cmd, sizeof cmd, "%s serve --help >/dev/null", bin ? bin : "build/thaw");
	T_EQ_INT(system(cmd), 0);
	snprintf(cmd, sizeof cmd, "%s serve --port notanumber 2>/dev/null", bin ? bin : "build/thaw");
	T_EQ_INT(WEXITSTATUS(system(cmd)), 2);
	snprintf(cmd, sizeof cmd, "%s frobnicate 2>/dev/null", bin ? bin : "build/thaw");
	T_EQ_INT(WEXITSTATUS(system(cmd)), 2);
	snprintf(cmd, sizeof cmd, "%s --help | grep -q serve", bin ? bin : "build/thaw");
	T_EQ_INT(system(cmd), 0);
}

void t_main(void)
{
	start_default();
	T_RUN(test_health_endpoints);
	T_RUN(test_echo_roundtrip);
	T_RUN(test_echo_invalid_json);
	T_RUN(test_unknown_route_and_method);
	T_RUN(test_pipelined_in_order);
	T_RUN(test_one_byte_writes);
	T_RUN(test_bad_request_line_closes);
	T_RUN(test_oversize_headers_431);
	T_RUN(test_oversize_body_413);
	T_RUN(test_chunked_body);
	T_RUN(test_keep_alive_reuse);
	T_RUN(test_expect_100_continue);
	T_RUN(test_slow_client_408_and_idle_close);
	T_RUN(test_keepalive_timeout_flags);
	T_RUN(test_request_id_and_traceparent);
	T_RUN(test_head_request);
	T_RUN(test_strict_parsing);
	T_RUN(test_metrics);
	if (srv_ok)
		T_EQ_INT(e2e_stop(&srv, SIGTERM, 20), 0);
	T_RUN(test_large_answer_take);
	T_RUN(test_max_connections);
	T_RUN(test_probe_reserve_and_first_byte_timeout);
	T_RUN(test_body_inflight_budget);
	T_RUN(test_sigterm_drain);
	T_RUN(test_drain_timeout_exits_zero);
	T_RUN(test_port_env_and_cli);
}

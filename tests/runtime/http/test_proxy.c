/* test_proxy.c — rt_proxy between two real rt_http servers on loopback: a "front" whose
 * handler forwards every request to a "peer" (or to a raw socket server that answers canned
 * bytes), and clients on their own threads with blocking sockets while the loop runs here.
 * Covers plain and large answers and bodies, chunked and SSE answers relayed as they come,
 * keep-alive reuse, HEAD, pipelining, hop-by-hop headers, the fallbacks (refused, malformed,
 * oversize, 503), the deadline, a client leaving mid-stream, backpressure from a client that
 * does not read, and the X-Thaw-Forwarded signature. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <uv.h>
#include "runtime/base/rt_clock.h"
#include "runtime/base/rt_log.h"
#include "runtime/http/rt_http.h"
#include "runtime/http/rt_proxy.h"
#include "tests/t.h"

static const char secret[] = "0123456789abcdef-cluster-secret";

static uv_loop_t loop_storage, *loop = &loop_storage;
static rt_http *front, *peer;
static rt_proxy *px;
static char peer_url[64];
static const char *target_url;      /* where the front forwards (peer_url unless a test says) */
static rt_proxy_opts fopts;
static rt_http_header fhdrs[2];
static uint64_t deadline_in_ms;     /* > 0: each forward gets now + this */
static rt_proxy_result last;
static int ndone;
static rt_req *front_req;           /* the request being forwarded (backpressure sampling) */
static size_t max_pending;

static atomic_int got_first;        /* the client saw the first SSE event */
static atomic_int peer_saw_gone;    /* the peer's streaming request learned its client left */
static atomic_int sse_sent;

/* ---- the peer ---- */

typedef struct stream_job {
	uv_timer_t t;
	rt_req *req;
	int n;
	int mode;   /* 0: SSE waiting for got_first; 1: endless ticks until gone */
	int gone;
} stream_job;

static void job_closed(uv_handle_t *h)
{
	free(h->data);
}

static void job_gone(void *ud)
{
	stream_job *j = ud;
	j->gone = 1;
	atomic_store(&peer_saw_gone, 1);
}

static void job_tick(uv_timer_t *t)
{
	stream_job *j = t->data;
	if (j->gone) {
		rt_req_stream_end(j->req);
		uv_timer_stop(t);
		uv_close((uv_handle_t *)t, job_closed);
		return;
	}
	if (j->mode == 0) {
		if (!atomic_load(&got_first))
			return;   /* the first event has not reached the client yet: hold on */
		rt_req_stream_write(j->req, "data: 2\n\n", 9);
		rt_req_stream_write(j->req, "data: [DONE]\n\n", 14);
		rt_req_stream_end(j->req);
		uv_timer_stop(t);
		uv_close((uv_handle_t *)t, job_closed);
		return;
	}
	char ev[64];
	int n = snprintf(ev, sizeof ev, "data: tick %d\n\n", ++j->n);
	rt_req_stream_write(j->req, ev, (size_t)n);
	atomic_fetch_add(&sse_sent, 1);
}

static void hang_gone(void *ud)
{
	rt_req *req = ud;
	atomic_store(&peer_saw_gone, 1);
	rt_req_reply(req, 200, "text/plain", "late", 4);
}

static void peer_dispatch(rt_req *req, void *ud)
{
	(void)ud;
	if (!strcmp(req->path, "/json")) {
		char out[512];
		int n = snprintf(out, sizeof out, "{\"method\":\"%s\",\"query\":\"%s\",\"len\":%zu}",
				 req->method, req->query, req->body_len);
		rt_req_reply(req, 200, "application/json", out, (size_t)n);
	} else if (!strcmp(req->path, "/echo")) {
		rt_req_add_header(req, "X-Peer", "yes");
		rt_req_reply(req, 200, "application/octet-stream", req->body, req->body_len);
	} else if (!strcmp(req->path, "/big")) {
		size_t n = (size_t)strtoull(req->query, NULL, 10);
		char *b = malloc(n ? n : 1);
		for (size_t i = 0; i < n; i++)
			b[i] = (char)('a' + i % 23);
		rt_req_reply_take(req, 200, "application/octet-stream", b, n);
	} else if (!strcmp(req->path, "/hdrs")) {
		/* the request's headers, one "name: value" a line, and the signature's verdict */
		char out[4096];
		size_t o = 0;
		for (int i = 0; i < req->nheaders && o < sizeof out - 256; i++)
			o += (size_t)snprintf(out + o, sizeof out - o, "%s: %s\n", req->headers[i].name,
					      req->headers[i].value);
		const char *fw = rt_req_header(req, RT_PROXY_FORWARDED_HEADER);
		char node[64] = "";
		int rc = fw ? rt_proxy_verify(secret, sizeof secret - 1, fw, req->method, req->target,
					      rt_clock_wall_ms(), node, sizeof node) : -ENOENT;
		o += (size_t)snprintf(out + o, sizeof out - o, "verify=%d node=%s\n", rc, node);
		rt_req_reply(req, 200, "text/plain", out, o);
	} else if (!strcmp(req->path, "/chunked")) {
		rt_req_stream_begin(req, 201, "application/json");
		rt_req_stream_write(req, "[1,", 3);
		rt_req_stream_write(req, "2,", 2);
		rt_req_stream_write(req, "3]", 2);
		rt_req_stream_end(req);
	} else if (!strcmp(req->path, "/sse") || !strcmp(req->path, "/ticks")) {
		stream_job *j = calloc(1, sizeof *j);
		j->req = req;
		j->mode = !strcmp(req->path, "/ticks");
		uv_timer_init(loop, &j->t);
		j->t.data = j;
		rt_req_add_header(req, "X-Accel-Buffering", "no");
		rt_req_stream_begin(req, 200, "text/event-stream");
		rt_req_stream_write(req, j->mode ? "data: tick 0\n\n" : "data: 1\n\n", j->mode ? 14 : 9);
		rt_req_on_gone(req, job_gone, j);
		uv_timer_start(&j->t, job_tick, 5, 5);
	} else if (!strcmp(req->path, "/hang")) {
		rt_req_on_gone(req, hang_gone, req);
	} else if (!strcmp(req->path, "/busy")) {
		rt_req_add_header(req, "Retry-After", "1");
		rt_req_reply_error(req, 503, "no room");
	} else {
		rt_req_reply_error(req, 404, "no route");
	}
}

/* ---- the front ---- */

static void front_done(void *ud, const rt_proxy_result *res)
{
	last = *res;
	ndone++;
	front_req = NULL;
	if (!res->answered) {   /* the caller serves it itself */
		rt_req *req = ud;
		char v[32];
		snprintf(v, sizeof v, "%d", res->err);
		rt_req_add_header(req, "X-Fallback", v);
		rt_req_reply(req, 200, "text/plain", "local", 5);
	}
}

static void front_dispatch(rt_req *req, void *ud)
{
	(void)ud;
	fopts.deadline_ms = deadline_in_ms ? rt_clock_mono_ns() / 1000000 + deadline_in_ms : 0;
	char sig[RT_PROXY_SIG_MAX];
	rt_proxy_sign(secret, sizeof secret - 1, "node-a", rt_clock_wall_ms() + 5000, req->method,
		      req->target, sig, sizeof sig);
	fhdrs[0].name = RT_PROXY_FORWARDED_HEADER;
	fhdrs[0].value = sig;
	fopts.headers = fhdrs;
	fopts.nheaders = 1;
	front_req = req;
	int rc = rt_proxy_forward(px, req, target_url, &fopts, front_done, req);
	if (rc < 0) {
		front_req = NULL;
		rt_req_reply_error(req, 500, "forward: %d", rc);
	}
}

/* ---- running a client thread while the loop runs ---- */

static uv_async_t client_done;
static uv_timer_t sampler, watchdog;
static void (*client_fn)(void);

static void *client_main(void *arg)
{
	(void)arg;
	client_fn();
	uv_async_send(&client_done);
	return NULL;
}

static void on_client_done(uv_async_t *a)
{
	(void)a;
	uv_stop(loop);
}

static void on_sample(uv_timer_t *t)
{
	(void)t;
	if (front_req) {
		size_t p = rt_req_write_pending(front_req);
		if (p > max_pending)
			max_pending = p;
	}
}

static void on_watchdog(uv_timer_t *t)
{
	(void)t;
	fprintf(stderr, "  watchdog: the client did not finish in 60 s\n");
	abort();
}

static void run_client(void (*fn)(void))
{
	pthread_t th;
	client_fn = fn;
	uv_timer_start(&sampler, on_sample, 1, 1);
	uv_timer_start(&watchdog, on_watchdog, 60000, 0);
	pthread_create(&th, NULL, client_main, NULL);
	uv_run(loop, UV_RUN_DEFAULT);
	pthread_join(th, NULL);
	uv_timer_stop(&sampler);
	uv_timer_stop(&watchdog);
	/* a few turns for the closes and pool returns that follow the last answer */
	for (int i = 0; i < 20; i++) {
		uv_run(loop, UV_RUN_NOWAIT);
		usleep(1000);
	}
}

/* ---- a blocking client ---- */

typedef struct conn {
	int fd;
	char in[1 << 16];
	size_t len;
} conn;

typedef struct resp {
	int status;
	char head[32768];
	char *body;
	size_t body_len;
	int chunked;
} resp;

static int c_open(conn *c, int port, int rcvbuf)
{
	c->len = 0;
	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	if (c->fd < 0)
		return -1;
	if (rcvbuf)
		setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
	struct timeval tv = {.tv_sec = 10};
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(c->fd, (struct sockaddr *)&a, sizeof a) < 0) {
		close(c->fd);
		return -1;
	}
	return 0;
}

static int c_send(conn *c, const void *p, size_t n)
{
	const char *s = p;
	while (n) {
		ssize_t w = send(c->fd, s, n, MSG_NOSIGNAL);
		if (w <= 0)
			return -1;
		s += w;
		n -= (size_t)w;
	}
	return 0;
}

static int c_fill(conn *c)
{
	if (c->len == sizeof c->in)
		return -1;
	ssize_t r = recv(c->fd, c->in + c->len, sizeof c->in - c->len, 0);
	if (r <= 0)
		return -1;
	c->len += (size_t)r;
	return 0;
}

static void c_take(conn *c, size_t n)
{
	memmove(c->in, c->in + n, c->len - n);
	c->len -= n;
}

/* reads up to and including the first "\r\n" (or "\r\n\r\n" with blank) into out */
static int c_until(conn *c, const char *delim, char *out, size_t cap)
{
	size_t dl = strlen(delim);
	for (;;) {
		char *e = memmem(c->in, c->len, delim, dl);
		if (e) {
			size_t n = (size_t)(e - c->in) + dl;
			if (n >= cap)
				return -1;
			memcpy(out, c->in, n);
			out[n] = 0;
			c_take(c, n);
			return 0;
		}
		if (c_fill(c) < 0)
			return -1;
	}
}

static int c_bytes(conn *c, char *out, size_t n)
{
	size_t got = 0;
	while (got < n) {
		if (!c->len && c_fill(c) < 0)
			return -1;
		size_t k = c->len < n - got ? c->len : n - got;
		memcpy(out + got, c->in, k);
		c_take(c, k);
		got += k;
	}
	return 0;
}

static const char *hval(const resp *r, const char *name, char *out, size_t cap)
{
	size_t nl = strlen(name);
	for (const char *p = strstr(r->head, "\r\n"); p && p[2]; p = strstr(p + 2, "\r\n")) {
		const char *l = p + 2;
		if (!strncasecmp(l, name, nl) && l[nl] == ':') {
			const char *v = l + nl + 1;
			while (*v == ' ')
				v++;
			size_t vl = strcspn(v, "\r");
			if (vl >= cap)
				vl = cap - 1;
			memcpy(out, v, vl);
			out[vl] = 0;
			return out;
		}
	}
	return NULL;
}

/* reads one response; head_only: no body (HEAD) */
static int c_resp(conn *c, resp *r, int head_only)
{
	memset(r, 0, offsetof(resp, head) + 1);
	r->body = NULL;
	r->body_len = 0;
	if (c_until(c, "\r\n\r\n", r->head, sizeof r->head) < 0)
		return -1;
	r->status = atoi(r->head + 9);
	char v[64];
	r->chunked = hval(r, "Transfer-Encoding", v, sizeof v) && !strcasecmp(v, "chunked");
	if (head_only)
		return 0;
	if (r->chunked) {
		size_t cap = 0;
		for (;;) {
			char line[64];
			if (c_until(c, "\r\n", line, sizeof line) < 0)
				return -1;
			size_t n = strtoul(line, NULL, 16);
			if (n == 0) {
				c_until(c, "\r\n", line, sizeof line);
				return 0;
			}
			if (r->body_len + n + 1 > cap) {
				cap = (r->body_len + n + 1) * 2;
				r->body = realloc(r->body, cap);
			}
			if (c_bytes(c, r->body + r->body_len, n) < 0)
				return -1;
			r->body_len += n;
			r->body[r->body_len] = 0;
			if (c_until(c, "\r\n", line, sizeof line) < 0)
				return -1;
		}
	}
	if (!hval(r, "Content-Length", v, sizeof v))
		return -1;
	size_t n = strtoull(v, NULL, 10);
	r->body = malloc(n + 1);
	if (c_bytes(c, r->body, n) < 0)
		return -1;
	r->body[n] = 0;
	r->body_len = n;
	return 0;
}

static int request(const char *raw, resp *r)
{
	conn *c = malloc(sizeof *c);
	int rc = -1;
	if (c_open(c, rt_http_port(front), 0) == 0) {
		rc = c_send(c, raw, strlen(raw)) == 0 ? c_resp(c, r, 0) : -1;
		close(c->fd);
	}
	free(c);
	return rc;
}

/* ---- a raw peer: answers canned bytes to each request (blocking, its own thread) ---- */

typedef struct raw_peer {
	int lfd, port;
	const char *answer;
	size_t answer_len;
	int nconns;
	int keep;   /* 1: keep the connection after the answer; a second request on it is
	             * met with a close (a keep-alive connection the peer dropped) */
	pthread_t th;
} raw_peer;

static void *raw_main(void *arg)
{
	raw_peer *rp = arg;
	for (int i = 0; i < rp->nconns; i++) {
		int fd = accept(rp->lfd, NULL, NULL);
		if (fd < 0)
			break;
		char buf[8192];
		size_t got = 0;
		while (got < sizeof buf - 1) {
			ssize_t r = recv(fd, buf + got, sizeof buf - 1 - got, 0);
			if (r <= 0)
				break;
			got += (size_t)r;
			buf[got] = 0;
			if (strstr(buf, "\r\n\r\n"))
				break;
		}
		size_t off = 0;
		while (off < rp->answer_len) {
			ssize_t w = send(fd, rp->answer + off, rp->answer_len - off, MSG_NOSIGNAL);
			if (w <= 0)
				break;
			off += (size_t)w;
		}
		if (rp->keep) {
			struct timeval tv = {.tv_usec = 500000};
			setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
			recv(fd, buf, sizeof buf, 0);
			close(fd);
			continue;
		}
		shutdown(fd, SHUT_WR);
		while (recv(fd, buf, sizeof buf, 0) > 0)
			;
		close(fd);
	}
	return NULL;
}

static void raw_start(raw_peer *rp, const char *answer, size_t len, int nconns, int keep)
{
	rp->answer = answer;
	rp->answer_len = len;
	rp->nconns = nconns;
	rp->keep = keep;
	rp->lfd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t l = sizeof a;
	bind(rp->lfd, (struct sockaddr *)&a, sizeof a);
	listen(rp->lfd, 8);
	getsockname(rp->lfd, (struct sockaddr *)&a, &l);
	rp->port = ntohs(a.sin_port);
	pthread_create(&rp->th, NULL, raw_main, rp);
}

static void raw_stop(raw_peer *rp)
{
	shutdown(rp->lfd, SHUT_RDWR);
	pthread_join(rp->th, NULL);
	close(rp->lfd);
}

/* ---- tests ---- */

static void cl_plain(void)
{
	resp r;
	T_EQ_INT(request("POST /json?x=1 HTTP/1.1\r\nHost: f\r\nContent-Length: 5\r\n\r\nhello", &r), 0);
	T_EQ_INT(r.status, 200);
	T_EQ_STR(r.body, "{\"method\":\"POST\",\"query\":\"x=1\",\"len\":5}");
	char v[128];
	T_CHECK(hval(&r, "Content-Type", v, sizeof v) && !strcmp(v, "application/json"));
	T_CHECK(hval(&r, "Content-Length", v, sizeof v) && !strcmp(v, "39"));
	T_CHECK(!r.chunked);
	free(r.body);
}

static void test_plain_json(void)
{
	ndone = 0;
	run_client(cl_plain);
	T_EQ_INT(ndone, 1);
	T_EQ_INT(last.err, 0);
	T_EQ_INT(last.answered, 1);
	T_EQ_INT(last.status, 200);
}

static void cl_headers(void)
{
	resp r;
	T_EQ_INT(request("GET /hdrs HTTP/1.1\r\nHost: front.example\r\nConnection: X-Drop\r\n"
			 "X-Drop: secret\r\nX-Pass: 2\r\nTE: trailers\r\nKeep-Alive: timeout=5\r\n"
			 "Proxy-Authorization: Basic eA==\r\nX-Request-Id: rid-42\r\n"
			 "X-Thaw-Forwarded: forged;1;00\r\nX-Forwarded-For: 10.0.0.9\r\n\r\n", &r), 0);
	T_EQ_INT(r.status, 200);
	const char *b = r.body ? r.body : "";
	char want[128];
	snprintf(want, sizeof want, "Host: %s\n", peer_url + 7);
	T_CHECK(strstr(b, want) != NULL);
	T_CHECK(strstr(b, "X-Pass: 2\n") != NULL);
	T_CHECK(strstr(b, "X-Drop") == NULL);
	T_CHECK(strstr(b, "TE:") == NULL);
	T_CHECK(strstr(b, "Keep-Alive") == NULL);
	T_CHECK(strstr(b, "Proxy-Authorization") == NULL);
	T_CHECK(strstr(b, "front.example") == NULL);
	T_CHECK(strstr(b, "X-Request-Id: rid-42\n") != NULL);
	T_CHECK(strstr(b, "X-Forwarded-For: 10.0.0.9, 127.0.0.1\n") != NULL);
	T_CHECK(strstr(b, "forged") == NULL);
	T_CHECK(strstr(b, "X-Thaw-Timeout-Ms: ") != NULL);
	T_CHECK(strstr(b, "verify=0 node=node-a\n") != NULL);
	char v[64];
	T_CHECK(hval(&r, "X-Request-Id", v, sizeof v) && !strcmp(v, "rid-42"));
	free(r.body);
}

static void test_request_headers(void)
{
	deadline_in_ms = 5000;
	run_client(cl_headers);
	deadline_in_ms = 0;
	T_EQ_INT(last.err, 0);
}

static const char hop_answer[] =
	"HTTP/1.1 200 OK\r\nConnection: close, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\n"
	"X-Keep: yes\r\nUpgrade: h2c\r\nDate: Mon, 01 Jan 2001 00:00:00 GMT\r\nContent-Type: text/plain\r\n"
	"Content-Length: 2\r\n\r\nok";

static void cl_hop(void)
{
	resp r;
	T_EQ_INT(request("GET /x HTTP/1.1\r\nHost: f\r\n\r\n", &r), 0);
	T_EQ_INT(r.status, 200);
	T_EQ_STR(r.body, "ok");
	char v[64];
	T_CHECK(hval(&r, "X-Keep", v, sizeof v) && !strcmp(v, "yes"));
	T_CHECK(!hval(&r, "X-Secret", v, sizeof v));
	T_CHECK(!hval(&r, "Keep-Alive", v, sizeof v));
	T_CHECK(!hval(&r, "Upgrade", v, sizeof v));
	T_CHECK(!strstr(r.head, "2001"));
	/* the peer said close: the front's own connection stays open */
	T_CHECK(!hval(&r, "Connection", v, sizeof v));
	free(r.body);
}

static void test_response_hop_by_hop(void)
{
	raw_peer rp;
	char url[64];
	raw_start(&rp, hop_answer, sizeof hop_answer - 1, 1, 0);
	snprintf(url, sizeof url, "http://127.0.0.1:%d", rp.port);
	target_url = url;
	run_client(cl_hop);
	target_url = peer_url;
	raw_stop(&rp);
	T_EQ_INT(last.err, 0);
	T_EQ_INT(rt_proxy_idle_count(px, url), 0);   /* Connection: close: not pooled */
}

#define BIG_UP (3u << 20)
#define BIG_DOWN (5u << 20)

static void cl_large(void)
{
	conn *c = malloc(sizeof *c);
	resp *r = malloc(sizeof *r);
	T_EQ_INT(c_open(c, rt_http_port(front), 0), 0);
	char *body = malloc(BIG_UP);
	for (size_t i = 0; i < BIG_UP; i++)
		body[i] = (char)(i * 7 + (i >> 12));
	char head[128];
	int hl = snprintf(head, sizeof head, "POST /echo HTTP/1.1\r\nHost: f\r\nContent-Length: %u\r\n\r\n",
			  BIG_UP);
	T_EQ_INT(c_send(c, head, (size_t)hl), 0);
	T_EQ_INT(c_send(c, body, BIG_UP), 0);
	T_EQ_INT(c_resp(c, r, 0), 0);
	T_EQ_INT(r->status, 200);
	T_EQ_INT(r->body_len, BIG_UP);
	T_CHECK(r->body && memcmp(r->body, body, BIG_UP) == 0);
	char v[16];
	T_CHECK(hval(r, "X-Peer", v, sizeof v) != NULL);
	free(r->body);
	snprintf(head, sizeof head, "GET /big?%u HTTP/1.1\r\nHost: f\r\n\r\n", BIG_DOWN);
	T_EQ_INT(c_send(c, head, strlen(head)), 0);
	T_EQ_INT(c_resp(c, r, 0), 0);
	T_EQ_INT(r->status, 200);
	T_EQ_INT(r->body_len, BIG_DOWN);
	int ok = r->body != NULL;
	for (size_t i = 0; ok && i < BIG_DOWN; i++)
		ok = r->body[i] == (char)('a' + i % 23);
	T_CHECK(ok);
	free(r->body);
	free(body);
	close(c->fd);
	free(c);
	free(r);
}

static void test_large_bodies(void)
{
	ndone = 0;
	run_client(cl_large);
	T_EQ_INT(ndone, 2);
	T_EQ_INT(last.err, 0);
	T_EQ_INT(last.reused, 1);   /* the second went over the first one's connection */
}

static void cl_chunked(void)
{
	resp r;
	T_EQ_INT(request("GET /chunked HTTP/1.1\r\nHost: f\r\n\r\n", &r), 0);
	T_EQ_INT(r.status, 201);
	T_CHECK(r.chunked);
	T_EQ_STR(r.body, "[1,2,3]");
	free(r.body);
}

static void test_chunked(void)
{
	run_client(cl_chunked);
	T_EQ_INT(last.err, 0);
	T_EQ_INT(last.status, 201);
}

static void cl_sse(void)
{
	conn *c = malloc(sizeof *c);
	resp *r = malloc(sizeof *r);
	atomic_store(&got_first, 0);
	T_EQ_INT(c_open(c, rt_http_port(front), 0), 0);
	const char *q = "POST /sse HTTP/1.1\r\nHost: f\r\nContent-Length: 2\r\n\r\n{}";
	T_EQ_INT(c_send(c, q, strlen(q)), 0);
	/* head and the first event: the peer sends nothing more until we have seen it */
	T_EQ_INT(c_resp(c, r, 1), 0);
	T_EQ_INT(r->status, 200);
	char v[64];
	T_CHECK(hval(r, "Content-Type", v, sizeof v) && !strcmp(v, "text/event-stream"));
	T_CHECK(hval(r, "X-Accel-Buffering", v, sizeof v) && !strcmp(v, "no"));
	T_CHECK(r->chunked);
	char line[64];
	T_EQ_INT(c_until(c, "\r\n", line, sizeof line), 0);
	char ev[64] = "";
	size_t n = strtoul(line, NULL, 16);
	T_CHECK(n > 0 && n < sizeof ev);
	if (n > 0 && n < sizeof ev)
		T_EQ_INT(c_bytes(c, ev, n), 0);
	T_EQ_STR(ev, "data: 1\n\n");
	atomic_store(&got_first, 1);
	/* the rest, then the end of the stream */
	char rest[256] = "";
	size_t got = 0;
	while (!strstr(rest, "0\r\n\r\n") && got < sizeof rest - 1) {
		if (!c->len && c_fill(c) < 0)
			break;
		size_t k = c->len < sizeof rest - 1 - got ? c->len : sizeof rest - 1 - got;
		memcpy(rest + got, c->in, k);
		c_take(c, k);
		got += k;
		rest[got] = 0;
	}
	T_CHECK(strstr(rest, "data: 2\n\n") != NULL);
	T_CHECK(strstr(rest, "data: [DONE]\n\n") != NULL);
	T_CHECK(strstr(rest, "0\r\n\r\n") != NULL);
	close(c->fd);
	free(c);
	free(r);
}

static void test_sse_incremental(void)
{
	run_client(cl_sse);
	T_EQ_INT(last.err, 0);
	T_EQ_INT(last.answered, 1);
}

static void cl_keepalive(void)
{
	conn *c = malloc(sizeof *c);
	resp r;
	T_EQ_INT(c_open(c, rt_http_port(front), 0), 0);
	for (int i = 0; i < 3; i++) {
		const char *q = "GET /json?k HTTP/1.1\r\nHost: f\r\n\r\n";
		T_EQ_INT(c_send(c, q, strlen(q)), 0);
		T_EQ_INT(c_resp(c, &r, 0), 0);
		T_EQ_INT(r.status, 200);
		free(r.body);
	}
	/* HEAD: a Content-Length and no body, and the connection still frames the next answer */
	const char *h = "HEAD /json HTTP/1.1\r\nHost: f\r\n\r\n";
	T_EQ_INT(c_send(c, h, strlen(h)), 0);
	T_EQ_INT(c_resp(c, &r, 1), 0);
	T_EQ_INT(r.status, 200);
	char v[32];
	T_CHECK(hval(&r, "Content-Length", v, sizeof v) != NULL);
	const char *q = "GET /json?after HTTP/1.1\r\nHost: f\r\n\r\n";
	T_EQ_INT(c_send(c, q, strlen(q)), 0);
	T_EQ_INT(c_resp(c, &r, 0), 0);
	T_CHECK(r.body && strstr(r.body, "after") != NULL);
	free(r.body);
	close(c->fd);
	free(c);
}

static void test_keepalive_reuse(void)
{
	ndone = 0;
	run_client(cl_keepalive);
	T_EQ_INT(ndone, 5);
	T_EQ_INT(last.reused, 1);
	T_CHECK(rt_proxy_idle_count(px, peer_url) >= 1);
	T_CHECK(rt_proxy_idle_count(px, peer_url) <= 8);
	T_EQ_INT(rt_proxy_inflight(px), 0);
}

static void cl_pipeline(void)
{
	conn *c = malloc(sizeof *c);
	resp r;
	T_EQ_INT(c_open(c, rt_http_port(front), 0), 0);
	const char *q = "GET /json?i=1 HTTP/1.1\r\nHost: f\r\n\r\n"
			"POST /json?i=2 HTTP/1.1\r\nHost: f\r\nContent-Length: 3\r\n\r\nabc"
			"GET /chunked HTTP/1.1\r\nHost: f\r\n\r\n"
			"GET /json?i=4 HTTP/1.1\r\nHost: f\r\n\r\n";
	T_EQ_INT(c_send(c, q, strlen(q)), 0);
	T_EQ_INT(c_resp(c, &r, 0), 0);
	T_CHECK(r.body && strstr(r.body, "\"i=1\"") != NULL);
	free(r.body);
	T_EQ_INT(c_resp(c, &r, 0), 0);
	T_CHECK(r.body && strstr(r.body, "\"i=2\",\"len\":3") != NULL);
	free(r.body);
	T_EQ_INT(c_resp(c, &r, 0), 0);
	T_EQ_STR(r.body, "[1,2,3]");
	free(r.body);
	T_EQ_INT(c_resp(c, &r, 0), 0);
	T_CHECK(r.body && strstr(r.body, "\"i=4\"") != NULL);
	free(r.body);
	close(c->fd);
	free(c);
}

static void test_pipelined_in_order(void)
{
	ndone = 0;
	run_client(cl_pipeline);
	T_EQ_INT(ndone, 4);
}

static void cl_local(void)
{
	resp r;
	T_EQ_INT(request("POST /json HTTP/1.1\r\nHost: f\r\nContent-Length: 2\r\n\r\n{}", &r), 0);
	T_EQ_INT(r.status, 200);
	T_EQ_STR(r.body, "local");
	char v[32];
	T_CHECK(hval(&r, "X-Fallback", v, sizeof v) != NULL);
	free(r.body);
}

static void cl_shutdown_hang(void)
{
	resp r;
	T_EQ_INT(request("GET /hang HTTP/1.1\r\nHost: f\r\n\r\n", &r), 0);
	T_EQ_INT(r.status, 503);
	char v[16];
	T_CHECK(hval(&r, "Retry-After", v, sizeof v) && !strcmp(v, "1"));
	free(r.body);
	for (int i = 0; i < 500 && !atomic_load(&peer_saw_gone); i++)
		usleep(10000);
	T_CHECK(atomic_load(&peer_saw_gone));   /* its upstream connection was closed */
}

static void test_refused_falls_back(void)
{
	char url[64];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/", t_free_port());
	target_url = url;
	run_client(cl_local);
	target_url = peer_url;
	T_EQ_INT(last.err, -ECONNREFUSED);
	T_EQ_INT(last.answered, 0);
	T_EQ_INT(rt_proxy_inflight(px), 0);
}

static void cl_busy_client(void)
{
	resp r;
	T_EQ_INT(request("GET /busy HTTP/1.1\r\nHost: f\r\n\r\n", &r), 0);
	T_EQ_STR(r.body, "local");
	free(r.body);
}

static void cl_busy_relayed(void)
{
	resp r;
	T_EQ_INT(request("GET /busy HTTP/1.1\r\nHost: f\r\n\r\n", &r), 0);
	T_EQ_INT(r.status, 503);
	char v[16];
	T_CHECK(hval(&r, "Retry-After", v, sizeof v) && !strcmp(v, "1"));
	T_EQ_STR(r.body, "{\"error\":\"no room\"}");
	free(r.body);
}

static void test_busy_falls_back(void)
{
	fopts.fallback_on_503 = 1;
	run_client(cl_busy_client);
	fopts.fallback_on_503 = 0;
	T_EQ_INT(last.err, -EAGAIN);
	T_EQ_INT(last.answered, 0);
	run_client(cl_busy_relayed);   /* without the option a 503 is an answer like any */
	T_EQ_INT(last.err, 0);
	T_EQ_INT(last.status, 503);
}

static void test_malformed_falls_back(void)
{
	static const char *const answers[] = {
		"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
		"hello there\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX-Bad\x01: v\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Le",   /* cut inside the head */
		"",                                /* closed without a byte */
	};
	for (size_t i = 0; i < sizeof answers / sizeof answers[0]; i++) {
		raw_peer rp;
		char url[64];
		raw_start(&rp, answers[i], strlen(answers[i]), 1, 0);
		snprintf(url, sizeof url, "http://127.0.0.1:%d", rp.port);
		target_url = url;
		run_client(cl_local);
		target_url = peer_url;
		raw_stop(&rp);
		T_EQ_INT(last.answered, 0);
		T_CHECK(last.err == -EPROTO || last.err == -ECONNRESET);
	}
}

/* the head and what came of the body, then the front must close: never a whole answer */
static void cl_cut(void)
{
	conn *c = malloc(sizeof *c);
	resp *r = malloc(sizeof *r);
	T_EQ_INT(c_open(c, rt_http_port(front), 0), 0);
	const char *q = "GET /x HTTP/1.1\r\nHost: f\r\n\r\n";
	T_EQ_INT(c_send(c, q, strlen(q)), 0);
	T_EQ_INT(c_resp(c, r, 1), 0);
	T_EQ_INT(r->status, 200);
	while (c_fill(c) == 0)
		;   /* until the front closes (or the 10 s receive timeout: a failure below) */
	c->in[c->len < sizeof c->in ? c->len : sizeof c->in - 1] = 0;
	if (r->chunked) {
		T_CHECK(strstr(c->in, "hello") != NULL);
		T_CHECK(strstr(c->in, "0\r\n\r\n") == NULL);   /* no last chunk */
	} else {
		T_EQ_STR(c->in, "0123456789");
	}
	char probe;
	T_EQ_INT(recv(c->fd, &probe, 1, 0), 0);   /* closed, not timed out */
	close(c->fd);
	free(c);
	free(r);
}

static void test_cut_after_relaying(void)
{
	static const char *const answers[] = {
		"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
	};
	for (int i = 0; i < 2; i++) {
		raw_peer rp;
		char url[64];
		raw_start(&rp, answers[i], strlen(answers[i]), 1, 0);
		snprintf(url, sizeof url, "http://127.0.0.1:%d", rp.port);
		target_url = url;
		run_client(cl_cut);
		target_url = peer_url;
		raw_stop(&rp);
		T_EQ_INT(last.err, -ECONNRESET);
		T_EQ_INT(last.answered, 1);
		T_EQ_INT(last.status, 200);
	}
}

static void test_oversize_head_falls_back(void)
{
	size_t n = 64 * 1024;
	char *a = malloc(n + 128);
	int o = snprintf(a, 128, "HTTP/1.1 200 OK\r\nX-Huge: ");
	memset(a + o, 'x', n);
	memcpy(a + o + n, "\r\nContent-Length: 0\r\n\r\n", 24);
	raw_peer rp;
	char url[64];
	raw_start(&rp, a, (size_t)o + n + 23, 1, 0);
	snprintf(url, sizeof url, "http://127.0.0.1:%d", rp.port);
	target_url = url;
	run_client(cl_local);
	target_url = peer_url;
	raw_stop(&rp);
	free(a);
	T_EQ_INT(last.err, -E2BIG);
	T_EQ_INT(last.answered, 0);
}

static void cl_deadline(void)
{
	resp r;
	double t0 = rt_clock_mono_s();
	T_EQ_INT(request("GET /hang HTTP/1.1\r\nHost: f\r\n\r\n", &r), 0);
	double dt = rt_clock_mono_s() - t0;
	T_EQ_INT(r.status, 504);
	T_CHECK(dt >= 0.25 && dt < 5);
	free(r.body);
	for (int i = 0; i < 500 && !atomic_load(&peer_saw_gone); i++)
		usleep(10000);
	T_CHECK(atomic_load(&peer_saw_gone));   /* the upstream connection was closed */
}

static void test_deadline_504(void)
{
	atomic_store(&peer_saw_gone, 0);
	deadline_in_ms = 300;
	run_client(cl_deadline);
	deadline_in_ms = 0;
	T_EQ_INT(last.err, -ETIMEDOUT);
	T_EQ_INT(last.answered, 1);
	T_EQ_INT(last.status, 504);
	T_EQ_INT(rt_proxy_inflight(px), 0);
}

static void cl_leave(void)
{
	conn *c = malloc(sizeof *c);
	resp *r = malloc(sizeof *r);
	T_EQ_INT(c_open(c, rt_http_port(front), 0), 0);
	const char *q = "GET /ticks HTTP/1.1\r\nHost: f\r\n\r\n";
	T_EQ_INT(c_send(c, q, strlen(q)), 0);
	T_EQ_INT(c_resp(c, r, 1), 0);
	T_EQ_INT(r->status, 200);
	char line[64];
	T_EQ_INT(c_until(c, "\r\n", line, sizeof line), 0);   /* the first chunk is coming */
	close(c->fd);
	for (int i = 0; i < 500 && !atomic_load(&peer_saw_gone); i++)
		usleep(10000);
	T_CHECK(atomic_load(&peer_saw_gone));
	free(c);
	free(r);
}

static void test_client_leaves_mid_stream(void)
{
	atomic_store(&peer_saw_gone, 0);
	ndone = 0;
	run_client(cl_leave);
	T_EQ_INT(ndone, 1);
	T_CHECK(last.err == -ECANCELED || last.err == -EPIPE);
	T_EQ_INT(last.answered, 1);
	T_EQ_INT(rt_proxy_inflight(px), 0);
}

#define SLOW_BYTES (24u << 20)

static void cl_slow_reader(void)
{
	conn *c = malloc(sizeof *c);
	resp *r = malloc(sizeof *r);
	T_EQ_INT(c_open(c, rt_http_port(front), 64 * 1024), 0);
	char q[96];
	snprintf(q, sizeof q, "GET /big?%u HTTP/1.1\r\nHost: f\r\n\r\n", SLOW_BYTES);
	T_EQ_INT(c_send(c, q, strlen(q)), 0);
	usleep(800 * 1000);   /* not reading: the front must stop reading the peer */
	T_EQ_INT(c_resp(c, r, 0), 0);
	T_EQ_INT(r->body_len, SLOW_BYTES);
	int ok = r->body != NULL;
	for (size_t i = 0; ok && i < SLOW_BYTES; i += 4099)
		ok = r->body[i] == (char)('a' + i % 23);
	T_CHECK(ok);
	free(r->body);
	close(c->fd);
	free(c);
	free(r);
}

static void test_backpressure(void)
{
	max_pending = 0;
	run_client(cl_slow_reader);
	T_EQ_INT(last.err, 0);
	/* the proxy's bound (256 KiB) plus one read of the peer and its chunk framing */
	fprintf(stderr, "  most unsent to the client: %zu bytes\n", max_pending);
	T_CHECK(max_pending <= 256 * 1024 + 80 * 1024);
}

static void cl_two_on_one(void)
{
	conn *c = malloc(sizeof *c);
	resp r;
	T_EQ_INT(c_open(c, rt_http_port(front), 0), 0);
	for (int i = 0; i < 2; i++) {
		const char *q = "GET /x HTTP/1.1\r\nHost: f\r\n\r\n";
		T_EQ_INT(c_send(c, q, strlen(q)), 0);
		T_EQ_INT(c_resp(c, &r, 0), 0);
		T_EQ_INT(r.status, 200);
		T_EQ_STR(r.body, "ok");
		free(r.body);
	}
	close(c->fd);
	free(c);
}

static const char keep_answer[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

static void test_stale_pooled_connection_retried(void)
{
	raw_peer rp;
	char url[64];
	raw_start(&rp, keep_answer, sizeof keep_answer - 1, 2, 1);
	snprintf(url, sizeof url, "http://127.0.0.1:%d", rp.port);
	target_url = url;
	ndone = 0;
	run_client(cl_two_on_one);
	target_url = peer_url;
	raw_stop(&rp);
	T_EQ_INT(ndone, 2);
	T_EQ_INT(last.err, 0);
	T_EQ_INT(last.retried, 1);   /* the pooled one was closed: a new connection answered */
}

static const char info_answer[] =
	"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
	"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

static void cl_info(void)
{
	resp r;
	T_EQ_INT(request("GET /x HTTP/1.1\r\nHost: f\r\n\r\n", &r), 0);
	T_EQ_INT(r.status, 200);
	T_EQ_STR(r.body, "ok");
	char v[16];
	T_CHECK(!hval(&r, "Link", v, sizeof v));
	free(r.body);
}

static void test_informational_skipped(void)
{
	raw_peer rp;
	char url[64];
	raw_start(&rp, info_answer, sizeof info_answer - 1, 1, 0);
	snprintf(url, sizeof url, "http://127.0.0.1:%d", rp.port);
	target_url = url;
	run_client(cl_info);
	target_url = peer_url;
	raw_stop(&rp);
	T_EQ_INT(last.err, 0);
}

static void test_peer_by_name(void)
{
	char url[64];
	snprintf(url, sizeof url, "http://localhost:%d", rt_http_port(peer));
	target_url = url;
	run_client(cl_plain);
	target_url = peer_url;
	T_EQ_INT(last.err, 0);
	T_EQ_INT(last.status, 200);
	snprintf(url, sizeof url, "http://no-such-host.invalid:%d", rt_http_port(peer));
	target_url = url;
	run_client(cl_local);
	target_url = peer_url;
	T_EQ_INT(last.answered, 0);
	T_CHECK(last.err < 0);
}

static rt_proxy *px_doomed;
static uv_timer_t doom_timer;

static void on_doom(uv_timer_t *t)
{
	if (rt_proxy_inflight(px_doomed) == 1) {
		rt_proxy_free(px_doomed);   /* the forward in flight ends: 503, -ESHUTDOWN */
		uv_timer_stop(t);
	}
}

static void test_free_in_flight(void)
{
	T_EQ_INT(rt_proxy_new(loop, NULL, &px_doomed), 0);
	rt_proxy *keep = px;
	px = px_doomed;
	target_url = peer_url;
	uv_timer_init(loop, &doom_timer);
	uv_timer_start(&doom_timer, on_doom, 5, 5);
	atomic_store(&peer_saw_gone, 0);
	ndone = 0;
	run_client(cl_shutdown_hang);
	px = keep;
	uv_timer_stop(&doom_timer);
	uv_close((uv_handle_t *)&doom_timer, NULL);
	T_EQ_INT(ndone, 1);
	T_EQ_INT(last.err, -ESHUTDOWN);
	T_EQ_INT(last.answered, 1);
	T_EQ_INT(last.status, 503);
}

static void test_bad_forward_args(void)
{
	rt_req fake;
	memset(&fake, 0, sizeof fake);
	fake.method = "GET";
	fake.target = "/";
	static const char *const bad[] = { "127.0.0.1:80", "http://", "http://[::1", "http://h:0",
		"http://h:65536", "http://h:80/path", "https://h:1", "http://h:8x", NULL };
	for (int i = 0; bad[i]; i++)
		T_EQ_INT(rt_proxy_forward(px, &fake, bad[i], NULL, front_done, NULL), -EINVAL);
	rt_http_header h = { "Bad Name", "v" };
	rt_proxy_opts o = { .headers = &h, .nheaders = 1 };
	T_EQ_INT(rt_proxy_forward(px, &fake, peer_url, &o, front_done, NULL), -EINVAL);
	rt_http_header h2 = { "X-Ok", "line\r\nInjected: 1" };
	o.headers = &h2;
	T_EQ_INT(rt_proxy_forward(px, &fake, peer_url, &o, front_done, NULL), -EINVAL);
	static const char *const reserved[] = { "Content-Length", "transfer-encoding", "Host",
		"Connection", "Upgrade", "Proxy-Authorization", NULL };
	for (int i = 0; reserved[i]; i++) {
		rt_http_header h3 = { reserved[i], "1" };
		o.headers = &h3;
		T_EQ_INT(rt_proxy_forward(px, &fake, peer_url, &o, front_done, NULL), -EINVAL);
	}
	rt_proxy_opts past = { .deadline_ms = 1 };
	T_EQ_INT(rt_proxy_forward(px, &fake, peer_url, &past, front_done, NULL), -ETIMEDOUT);
	T_EQ_INT(rt_proxy_inflight(px), 0);
}

/* ---- X-Thaw-Forwarded ---- */

static void test_sign_verify(void)
{
	char sig[RT_PROXY_SIG_MAX], node[64];
	const size_t sl = sizeof secret - 1;
	int64_t now = 1700000000000;
	T_EQ_INT(rt_proxy_sign(secret, sl, "node-1.pod", now + 1000, "POST", "/v1/x?a=1", sig, sizeof sig), 0);
	T_EQ_INT(rt_proxy_verify(secret, sl, sig, "POST", "/v1/x?a=1", now, node, sizeof node), 0);
	T_EQ_STR(node, "node-1.pod");
	T_EQ_INT(rt_proxy_verify(secret, sl, sig, "POST", "/v1/x?a=1", now + 1000, NULL, 0), 0);
	/* expired */
	T_EQ_INT(rt_proxy_verify(secret, sl, sig, "POST", "/v1/x?a=1", now + 1001, node, sizeof node),
		 -ETIMEDOUT);
	T_EQ_STR(node, "");
	/* another method, target, secret */
	T_EQ_INT(rt_proxy_verify(secret, sl, sig, "GET", "/v1/x?a=1", now, NULL, 0), -EACCES);
	T_EQ_INT(rt_proxy_verify(secret, sl, sig, "POST", "/v1/x?a=2", now, NULL, 0), -EACCES);
	T_EQ_INT(rt_proxy_verify("another-secret-of-length", 24, sig, "POST", "/v1/x?a=1", now, NULL, 0),
		 -EACCES);
	/* tampered node, expiry, mac */
	char t[RT_PROXY_SIG_MAX + 32];
	snprintf(t, sizeof t, "node-2.pod%s", sig + 10);
	T_EQ_INT(rt_proxy_verify(secret, sl, t, "POST", "/v1/x?a=1", now, NULL, 0), -EACCES);
	char *semi = strchr(sig, ';');
	snprintf(t, sizeof t, "node-1.pod;%lld%s", (long long)(now + 99999), strchr(semi + 1, ';'));
	T_EQ_INT(rt_proxy_verify(secret, sl, t, "POST", "/v1/x?a=1", now, NULL, 0), -EACCES);
	snprintf(t, sizeof t, "%s", sig);
	char *last_c = t + strlen(t) - 1;
	*last_c = *last_c == '0' ? '1' : '0';
	T_EQ_INT(rt_proxy_verify(secret, sl, t, "POST", "/v1/x?a=1", now, NULL, 0), -EACCES);
	/* a field split differently must not verify: node "a" + target "b;c" style confusions */
	char s2[RT_PROXY_SIG_MAX];
	T_EQ_INT(rt_proxy_sign(secret, sl, "n", now + 1000, "GET", "/ab", s2, sizeof s2), 0);
	T_EQ_INT(rt_proxy_verify(secret, sl, s2, "GETx", "/ab", now, NULL, 0), -EACCES);
	T_EQ_INT(rt_proxy_verify(secret, sl, s2, "GE", "T/ab", now, NULL, 0), -EACCES);
	/* malformed */
	static const char *const bad[] = { "", ";;", "n;1;", "n;;abc", ";1;" "00", "n;x;00",
		"n;1;zz", "n;-1;00", "n o;1;00", "n;01;00", "n;1;ABCDEF", "n;1", "n",
		"n;1234567890123456789;00", NULL };
	for (int i = 0; bad[i]; i++)
		T_EQ_INT(rt_proxy_verify(secret, sl, bad[i], "GET", "/", now, NULL, 0), -EINVAL);
	snprintf(t, sizeof t, "%sx", sig);   /* a longer mac */
	T_EQ_INT(rt_proxy_verify(secret, sl, t, "POST", "/v1/x?a=1", now, NULL, 0), -EINVAL);
	snprintf(t, sizeof t, "%.*s", (int)strlen(sig) - 2, sig);   /* a shorter one */
	T_EQ_INT(rt_proxy_verify(secret, sl, t, "POST", "/v1/x?a=1", now, NULL, 0), -EINVAL);
	/* bad arguments to sign */
	T_EQ_INT(rt_proxy_sign("short", 5, "n", now, "GET", "/", sig, sizeof sig), -EINVAL);
	T_EQ_INT(rt_proxy_verify("short", 5, sig, "GET", "/", now, NULL, 0), -EINVAL);
	T_EQ_INT(rt_proxy_sign(secret, sl, "", now, "GET", "/", sig, sizeof sig), -EINVAL);
	T_EQ_INT(rt_proxy_sign(secret, sl, "a;b", now, "GET", "/", sig, sizeof sig), -EINVAL);
	T_EQ_INT(rt_proxy_sign(secret, sl, "a b", now, "GET", "/", sig, sizeof sig), -EINVAL);
	T_EQ_INT(rt_proxy_sign(secret, sl, "n", -1, "GET", "/", sig, sizeof sig), -EINVAL);
	T_EQ_INT(rt_proxy_sign(secret, sl, "n", now, "GET", "/", sig, 20), -ENOSPC);
	char longid[RT_PROXY_NODE_ID_MAX + 1];
	memset(longid, 'a', sizeof longid - 1);
	longid[sizeof longid - 1] = 0;
	T_EQ_INT(rt_proxy_sign(secret, sl, longid, now, "GET", "/", sig, sizeof sig), -EINVAL);
	longid[RT_PROXY_NODE_ID_MAX - 1] = 0;   /* the longest accepted */
	T_EQ_INT(rt_proxy_sign(secret, sl, longid, INT64_C(999999999999999999), "DELETE", "/", sig,
			       sizeof sig), 0);
	T_EQ_INT(rt_proxy_verify(secret, sl, sig, "DELETE", "/", now, NULL, 0), 0);
}

/* ---- setup ---- */

static void setup(void)
{
	rt_log_init(RT_LOG_ERROR);
	uv_loop_init(loop);
	rt_http_config cfg;
	rt_http_config_defaults(&cfg);
	cfg.host = "127.0.0.1";
	cfg.port = 0;
	cfg.access_log = 0;
	if (rt_http_open(loop, &cfg, peer_dispatch, NULL, &peer) < 0 ||
	    rt_http_open(loop, &cfg, front_dispatch, NULL, &front) < 0)
		abort();
	snprintf(peer_url, sizeof peer_url, "http://127.0.0.1:%d", rt_http_port(peer));
	target_url = peer_url;
	rt_proxy_config pc;
	rt_proxy_config_defaults(&pc);
	pc.max_client_queue = 256 * 1024;
	if (rt_proxy_new(loop, &pc, &px) < 0)
		abort();
	uv_async_init(loop, &client_done, on_client_done);
	uv_timer_init(loop, &sampler);
	uv_timer_init(loop, &watchdog);
}

static void drained(void *ud)
{
	(void)ud;
}

static void close_walk(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

static void test_teardown(void)
{
	rt_proxy_free(px);
	rt_http_drain(front, drained, NULL);
	rt_http_drain(peer, drained, NULL);
	rt_http_close_all(front);
	rt_http_close_all(peer);
	uv_close((uv_handle_t *)&client_done, NULL);
	uv_close((uv_handle_t *)&sampler, NULL);
	uv_close((uv_handle_t *)&watchdog, NULL);
	uv_run(loop, UV_RUN_DEFAULT);
	uv_walk(loop, close_walk, NULL);   /* what rt_http leaves to its owner (rt_server does so) */
	uv_run(loop, UV_RUN_DEFAULT);
	rt_http_free(front);
	rt_http_free(peer);
	T_EQ_INT(uv_loop_close(loop), 0);
}

void t_main(void)
{
	setup();
	T_RUN(test_plain_json);
	T_RUN(test_request_headers);
	T_RUN(test_response_hop_by_hop);
	T_RUN(test_large_bodies);
	T_RUN(test_chunked);
	T_RUN(test_sse_incremental);
	T_RUN(test_keepalive_reuse);
	T_RUN(test_pipelined_in_order);
	T_RUN(test_refused_falls_back);
	T_RUN(test_busy_falls_back);
	T_RUN(test_malformed_falls_back);
	T_RUN(test_oversize_head_falls_back);
	T_RUN(test_cut_after_relaying);
	T_RUN(test_deadline_504);
	T_RUN(test_client_leaves_mid_stream);
	T_RUN(test_backpressure);
	T_RUN(test_stale_pooled_connection_retried);
	T_RUN(test_informational_skipped);
	T_RUN(test_peer_by_name);
	T_RUN(test_free_in_flight);
	T_RUN(test_bad_forward_args);
	T_RUN(test_sign_verify);
	T_RUN(test_teardown);
}

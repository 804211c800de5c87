/* rt_proxy.c — HTTP/1.1 forwarder on the loop. See rt_proxy.h for the contract.
 *
 * A forward (px_call) runs on one upstream connection (px_conn) at a time: taken from the idle
 * pool of its peer ("host:port"), or opened (name resolved on libuv's thread pool when it is
 * not a literal, connect bounded by connect_timeout_ms). The request head is built once (kept
 * for a retry) and written with the client's buffered body, without a copy. The answer is parsed
 * with llhttp as it is read: its head is collected into a buffer of max_header_bytes as the
 * relayed header lines, hop-by-hop ones dropped; at the end of the head the answer is relayed
 * (rt_req_relay_begin), then every body span goes out as it is parsed (rt_req_stream_write).
 * Callbacks inside llhttp_execute only record what happened; the forward is ended (call_end)
 * after llhttp_execute returns, so nothing is freed under the parser. After a whole answer the
 * connection goes back to the pool when both sides keep it alive, the request was written whole
 * and nothing followed the answer. An idle pooled connection reads into a scratch buffer: any
 * byte or EOF from the peer closes it. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <llhttp.h>
#include <sodium.h>
#include "runtime/base/rt_clock.h"
#include "runtime/http/rt_proxy.h"

#define PX_READ_BUF (64 * 1024)
#define PX_MAX_HEADER_LINES 100
#define PX_HOST_MAX 256

typedef struct px_conn px_conn;
typedef struct px_call px_call;

enum px_state {
	PX_RESOLVING,
	PX_CONNECTING,
	PX_ACTIVE,      /* a forward runs on it */
	PX_IDLE,        /* in the pool */
	PX_CLOSING,
};

struct px_conn {
	uv_tcp_t tcp;
	uv_timer_t timer;
	uv_getaddrinfo_t gai;
	uv_connect_t connect;
	uv_write_t write;
	rt_proxy *px;
	px_conn *prev, *next;           /* all connections */
	px_conn *idle_prev, *idle_next; /* the pool */
	enum px_state state;
	int handles;                    /* tcp + timer not yet closed */
	int gai_pending;                /* getaddrinfo callback still to come */
	int reading;
	char key[PX_HOST_MAX + 8];      /* "host:port" */
	px_call *call;
	llhttp_t parser;
	char *rbuf;                     /* PX_READ_BUF, while active */
	char *hdr;                      /* relayed header lines, max_header_bytes, while active */
	size_t hdr_len;
	size_t line_start;              /* where the header line being parsed begins */
	int nlines;
	char conn_tokens[256];          /* the answer's Connection header value (truncated) */
};

/* what the parser callbacks saw */
enum px_event {
	PX_EV_NONE,
	PX_EV_COMPLETE,     /* the whole answer parsed */
	PX_EV_GONE,         /* a write to the client failed */
	PX_EV_BUSY,         /* 503 with fallback_on_503 */
	PX_EV_OVERSIZE,     /* head over max_header_bytes */
	PX_EV_MALFORMED,    /* an answer the relay refuses (101, bad header block) */
	PX_EV_NOMEM,
};

struct px_call {
	rt_proxy *px;
	rt_req *req;
	px_call *prev, *next;           /* forwards in flight */
	px_conn *conn;
	char host[PX_HOST_MAX];
	int port;
	int literal;                    /* host is an IP literal: no resolution */
	char key[PX_HOST_MAX + 8];
	char *head;                     /* the request head */
	size_t head_len;
	uint64_t deadline_ms;
	int fallback_503;
	int head_only;                  /* HEAD: the answer has no body */
	rt_proxy_done_fn done;
	void *ud;
	int relaying;                   /* rt_req_relay_begin was called: the answer is committed */
	int reused, retried;
	int got_bytes;                  /* a byte of the answer came */
	int req_written;
	int informational;              /* a 1xx answer is being skipped */
	int paused;                     /* upstream not read: client backlog */
	int status;
	enum px_event ev;
};

struct rt_proxy {
	uv_loop_t *loop;
	rt_proxy_config cfg;
	px_conn *conns;
	int nconns;
	px_conn *idle;
	int nidle;
	px_call *calls;
	int ncalls;
	int closing;
	llhttp_settings_t settings;
	char scratch[256];              /* read buffer of idle connections */
};

static void conn_close(px_conn *c);
static void call_connect(px_call *call);
static void conn_send_request(px_conn *c);
static void on_timer(uv_timer_t *t);
static void read_start(px_conn *c);

void rt_proxy_config_defaults(rt_proxy_config *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	cfg->connect_timeout_ms = 1000;
	cfg->idle_timeout_ms = 10000;
	cfg->max_idle_per_peer = 8;
	cfg->max_idle = 256;
	cfg->max_header_bytes = 16 * 1024;
	cfg->max_client_queue = 1024 * 1024;
}

static uint64_t now_ms(void)
{
	return rt_clock_mono_ns() / 1000000;
}

/* ---- parsing the peer URL ---- */

static int host_char(int ch)
{
	return isalnum(ch) || ch == '.' || ch == '-' || ch == '_';
}

/* "http://host[:port][/]" -> host, port, literal; 0 or -EINVAL */
static int parse_peer(const char *url, char *host, size_t cap, int *port, int *literal)
{
	if (!url || strncmp(url, "http://", 7) != 0)
		return -EINVAL;
	const char *p = url + 7, *hs, *he;
	int v6 = 0;
	if (*p == '[') {
		hs = p + 1;
		he = strchr(hs, ']');
		if (!he)
			return -EINVAL;
		p = he + 1;
		v6 = 1;
	} else {
		hs = p;
		while (host_char((unsigned char)*p))
			p++;
		he = p;
	}
	size_t hl = (size_t)(he - hs);
	if (hl == 0 || hl >= cap)
		return -EINVAL;
	memcpy(host, hs, hl);
	host[hl] = 0;
	long pt = 80;
	if (*p == ':') {
		char *end;
		p++;
		if (!isdigit((unsigned char)*p))
			return -EINVAL;
		pt = strtol(p, &end, 10);
		if (pt < 1 || pt > 65535 || end - p > 5)
			return -EINVAL;
		p = end;
	}
	if (*p == '/')
		p++;
	if (*p)
		return -EINVAL;
	*port = (int)pt;
	struct sockaddr_in6 a6;
	struct sockaddr_in a4;
	if (v6) {
		if (uv_ip6_addr(host, *port, &a6) < 0)
			return -EINVAL;
		*literal = 1;
	} else {
		*literal = uv_ip4_addr(host, *port, &a4) == 0 && strspn(host, "0123456789.") == hl;
	}
	return 0;
}

/* ---- building the request head ---- */

static int is_token(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr("!#$%&'*+-.^_`|~", *s))
			return 0;
	return 1;
}

static int clean_value(const char *s)
{
	for (; *s; s++)
		if (((unsigned char)*s < 0x20 && *s != '\t') || *s == 0x7f)
			return 0;
	return 1;
}

/* 1 when name is one of the comma-separated tokens of list */
static int in_token_list(const char *list, const char *name, size_t nlen)
{
	const char *p = list;
	while (p && *p) {
		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		size_t n = strcspn(p, ", \t");
		if (n && n == nlen && strncasecmp(p, name, n) == 0)
			return 1;
		p += n;
	}
	return 0;
}

/* hop-by-hop headers (RFC 9110 7.6.1) and the framing ones, which each hop sets itself */
static int hop_by_hop(const char *name, size_t n)
{
	static const char *const names[] = { "Connection", "Keep-Alive", "TE", "Trailer",
		"Transfer-Encoding", "Upgrade", "Content-Length", "Proxy-Connection", NULL };
	for (int i = 0; names[i]; i++)
		if (strlen(names[i]) == n && strncasecmp(names[i], name, n) == 0)
			return 1;
	return n >= 6 && strncasecmp(name, "Proxy-", 6) == 0;
}

typedef struct buf {
	char *p;
	size_t len, cap;
	int oom;
} buf;

static void buf_add(buf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 1024;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *np = realloc(b->p, cap);
		if (!np) {
			b->oom = 1;
			return;
		}
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = 0;
}

static void buf_str(buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

static void buf_header(buf *b, const char *name, const char *value)
{
	buf_str(b, name);
	buf_add(b, ": ", 2);
	buf_str(b, value);
	buf_add(b, "\r\n", 2);
}

static int opt_has(const rt_proxy_opts *o, const char *name)
{
	for (int k = 0; o && k < o->nheaders; k++)
		if (strcasecmp(o->headers[k].name, name) == 0)
			return 1;
	return 0;
}

static int build_head(px_call *call, const rt_proxy_opts *o)
{
	rt_req *req = call->req;
	buf b = {0};
	const char *conn_hdr = rt_req_header(req, "Connection");
	buf_str(&b, req->method);
	buf_add(&b, " ", 1);
	buf_str(&b, req->target);
	buf_str(&b, " HTTP/1.1\r\nHost: ");
	if (strchr(call->host, ':')) {
		buf_add(&b, "[", 1);
		buf_str(&b, call->host);
		buf_add(&b, "]", 1);
	} else {
		buf_str(&b, call->host);
	}
	char num[64];
	snprintf(num, sizeof num, ":%d\r\n", call->port);
	buf_str(&b, num);
	static const char *const own[] = { "Host", "Expect", "X-Request-Id", "X-Forwarded-For",
		"X-Thaw-Timeout-Ms", RT_PROXY_FORWARDED_HEADER, NULL };
	const char *xff = NULL;
	for (int i = 0; i < req->nheaders; i++) {
		const char *name = req->headers[i].name;
		size_t nl = strlen(name);
		int skip = hop_by_hop(name, nl) || (conn_hdr && in_token_list(conn_hdr, name, nl));
		for (int k = 0; own[k] && !skip; k++)
			skip = strcasecmp(own[k], name) == 0;
		for (int k = 0; o && k < o->nheaders && !skip; k++)
			skip = strcasecmp(o->headers[k].name, name) == 0;
		if (strcasecmp(name, "X-Forwarded-For") == 0 && !xff)
			xff = req->headers[i].value;
		if (!skip)
			buf_header(&b, name, req->headers[i].value);
	}
	if (!opt_has(o, "X-Request-Id"))
		buf_header(&b, "X-Request-Id", req->request_id);
	char peer[64];
	if (!opt_has(o, "X-Forwarded-For") && rt_req_peer(req, peer, sizeof peer) == 0 && peer[0]) {
		buf_str(&b, "X-Forwarded-For: ");
		if (xff && xff[0]) {
			buf_str(&b, xff);
			buf_add(&b, ", ", 2);
		}
		buf_str(&b, peer);
		buf_add(&b, "\r\n", 2);
	}
	if (call->deadline_ms && !opt_has(o, "X-Thaw-Timeout-Ms")) {
		uint64_t now = now_ms();
		snprintf(num, sizeof num, "%llu",
			 (unsigned long long)(call->deadline_ms > now ? call->deadline_ms - now : 0));
		buf_header(&b, "X-Thaw-Timeout-Ms", num);
	}
	for (int k = 0; o && k < o->nheaders; k++)
		buf_header(&b, o->headers[k].name, o->headers[k].value);
	int had_body = rt_req_header(req, "Content-Length") || rt_req_header(req, "Transfer-Encoding");
	if (req->body_len || had_body) {
		snprintf(num, sizeof num, "%zu", req->body_len);
		buf_header(&b, "Content-Length", num);
	}
	buf_add(&b, "\r\n", 2);
	if (b.oom) {
		free(b.p);
		return -ENOMEM;
	}
	call->head = b.p;
	call->head_len = b.len;
	return 0;
}

/* ---- connections ---- */

static void idle_unlink(px_conn *c)
{
	rt_proxy *px = c->px;
	if (c->idle_prev)
		c->idle_prev->idle_next = c->idle_next;
	else
		px->idle = c->idle_next;
	if (c->idle_next)
		c->idle_next->idle_prev = c->idle_prev;
	c->idle_prev = c->idle_next = NULL;
	px->nidle--;
}

static void conn_maybe_free(px_conn *c)
{
	if (c->handles > 0 || c->gai_pending)
		return;
	rt_proxy *px = c->px;
	if (c->prev)
		c->prev->next = c->next;
	else
		px->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	px->nconns--;
	free(c->rbuf);
	free(c->hdr);
	free(c);
	if (px->closing && px->nconns == 0 && px->ncalls == 0)
		free(px);
}

static void on_conn_closed(uv_handle_t *h)
{
	px_conn *c = h->data;
	c->handles--;
	conn_maybe_free(c);
}

static void conn_close(px_conn *c)
{
	if (c->state == PX_CLOSING)
		return;
	if (c->state == PX_IDLE)
		idle_unlink(c);
	c->state = PX_CLOSING;
	c->call = NULL;
	if (c->gai_pending)
		uv_cancel((uv_req_t *)&c->gai);
	uv_timer_stop(&c->timer);
	uv_close((uv_handle_t *)&c->timer, on_conn_closed);
	uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static px_conn *conn_new(rt_proxy *px, const char *key)
{
	px_conn *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	c->px = px;
	snprintf(c->key, sizeof c->key, "%s", key);
	uv_tcp_init(px->loop, &c->tcp);
	uv_timer_init(px->loop, &c->timer);
	c->tcp.data = c;
	c->timer.data = c;
	c->gai.data = c;
	c->connect.data = c;
	c->write.data = c;
	c->handles = 2;
	c->next = px->conns;
	if (px->conns)
		px->conns->prev = c;
	px->conns = c;
	px->nconns++;
	llhttp_init(&c->parser, HTTP_RESPONSE, &px->settings);
	c->parser.data = c;
	return c;
}

/* ---- ending a forward ---- */

enum px_end {
	END_OK,         /* relayed whole */
	END_FAIL,       /* upstream failure: unanswered before relaying, else cut */
	END_DEADLINE,   /* 504 before relaying, else cut */
	END_GONE,       /* the client went away: 499 before relaying, else cut */
	END_SHUTDOWN,   /* rt_proxy_free: 503 before relaying, else cut */
};

/* ends call: releases (pool) or closes its connection, answers or cuts the client as the
 * outcome says, frees call, then tells its owner */
static void call_end(px_call *call, enum px_end how, int err, const char *what, int reusable)
{
	rt_proxy *px = call->px;
	rt_req *req = call->req;
	px_conn *c = call->conn;
	rt_req_on_gone(req, NULL, NULL);
	rt_req_on_drain(req, 0, NULL, NULL);
	if (c) {
		c->call = NULL;
		call->conn = NULL;
		int keep = reusable && how == END_OK && call->req_written && !px->closing &&
			   c->state == PX_ACTIVE && llhttp_should_keep_alive(&c->parser) &&
			   px->nidle < px->cfg.max_idle;
		if (keep) {
			int n = 0;
			for (px_conn *o = px->idle; o; o = o->idle_next)
				n += strcmp(o->key, c->key) == 0;
			keep = n < px->cfg.max_idle_per_peer;
		}
		if (keep) {
			c->state = PX_IDLE;
			free(c->rbuf);
			c->rbuf = NULL;
			free(c->hdr);
			c->hdr = NULL;
			c->idle_prev = NULL;
			c->idle_next = px->idle;
			if (px->idle)
				px->idle->idle_prev = c;
			px->idle = c;
			px->nidle++;
			uv_timer_start(&c->timer, on_timer, px->cfg.idle_timeout_ms, 0);
		} else {
			conn_close(c);
		}
	}
	if (call->prev)
		call->prev->next = call->next;
	else
		px->calls = call->next;
	if (call->next)
		call->next->prev = call->prev;
	px->ncalls--;
	rt_proxy_result res = { .err = err, .answered = 1, .status = call->status,
				.reused = call->reused, .retried = call->retried, .what = what ? what : "" };
	switch (how) {
	case END_OK:
		rt_req_stream_end(req);
		break;
	case END_FAIL:
		if (call->relaying)
			rt_req_stream_abort(req);
		else
			res.answered = 0;
		break;
	case END_DEADLINE:
		if (call->relaying) {
			rt_req_stream_abort(req);
		} else {
			res.status = 504;
			rt_req_reply_error(req, 504, "the peer did not answer within the deadline");
		}
		break;
	case END_GONE:
		if (call->relaying) {
			rt_req_stream_abort(req);
		} else {
			res.status = 499;
			rt_req_reply_error(req, 499, "client closed the connection");
		}
		break;
	case END_SHUTDOWN:
		if (call->relaying) {
			rt_req_stream_abort(req);
		} else {
			res.status = 503;
			rt_req_add_header(req, "Retry-After", "1");
			rt_req_reply_error(req, 503, "shutting down");
		}
		break;
	}
	rt_proxy_done_fn done = call->done;
	void *ud = call->ud;
	free(call->head);
	free(call);
	done(ud, &res);   /* last: done may forward again, or free the proxy */
}

/* ---- reading the answer ---- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	px_conn *c = h->data;
	(void)suggested;
	if (c->state == PX_ACTIVE && c->rbuf)
		*b = uv_buf_init(c->rbuf, PX_READ_BUF);
	else
		*b = uv_buf_init(c->px->scratch, sizeof c->px->scratch);
}

/* the call could not get an answer over c: retried once on a new connection when c was a
 * pooled one that the peer had closed before answering, else ended */
static void call_upstream_failed(px_call *call, int err, const char *what)
{
	if (call->reused && !call->retried && !call->got_bytes && !call->relaying) {
		px_conn *c = call->conn;
		call->conn = NULL;
		if (c)
			conn_close(c);
		call->retried = 1;
		call->reused = 0;
		call->req_written = 0;
		call_connect(call);
		return;
	}
	call_end(call, END_FAIL, err, what, 0);
}

static void on_client_drain(void *ud)
{
	px_call *call = ud;
	px_conn *c = call->conn;
	call->paused = 0;
	if (c && c->state == PX_ACTIVE)
		read_start(c);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b);

static void read_start(px_conn *c)
{
	if (c->reading)
		return;
	if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
		c->reading = 1;
}

static void read_stop(px_conn *c)
{
	if (!c->reading)
		return;
	uv_read_stop((uv_stream_t *)&c->tcp);
	c->reading = 0;
}

/* after llhttp ran: ends the call or goes on reading */
static void after_parse(px_conn *c, llhttp_errno_t err, const char *end)
{
	px_call *call = c->call;
	if (!call)
		return;
	switch (call->ev) {
	case PX_EV_COMPLETE: {
		const char *pos = err == HPE_PAUSED ? llhttp_get_error_pos(&c->parser) : end;
		call_end(call, END_OK, 0, "", pos == end);
		return;
	}
	case PX_EV_GONE:
		call_end(call, END_GONE, -EPIPE, "client write failed", 0);
		return;
	case PX_EV_BUSY:
		call_end(call, END_FAIL, -EAGAIN, "peer busy (503)", 0);
		return;
	case PX_EV_OVERSIZE:
		call_end(call, END_FAIL, -E2BIG, "peer answer head too large", 0);
		return;
	case PX_EV_MALFORMED:
		call_end(call, END_FAIL, -EPROTO, "malformed peer answer", 0);
		return;
	case PX_EV_NOMEM:
		call_end(call, END_FAIL, -ENOMEM, "out of memory", 0);
		return;
	case PX_EV_NONE:
		break;
	}
	if (err != HPE_OK) {
		call_end(call, END_FAIL, -EPROTO, "malformed peer answer", 0);
		return;
	}
	if (call->relaying && rt_req_write_pending(call->req) > c->px->cfg.max_client_queue) {
		read_stop(c);   /* backpressure: the client's backlog drains first */
		call->paused = 1;
		rt_req_on_drain(call->req, c->px->cfg.max_client_queue / 2, on_client_drain, call);
	}
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
	px_conn *c = s->data;
	(void)b;
	if (c->state == PX_IDLE) {   /* the peer closed, or sent what nobody asked for */
		if (nread != 0)
			conn_close(c);
		return;
	}
	px_call *call = c->call;
	if (!call || c->state != PX_ACTIVE || nread == 0)
		return;
	if (nread < 0) {
		if (nread == UV_EOF && call->relaying) {
			/* an answer framed by the end of the connection ends here; any other is cut */
			llhttp_finish(&c->parser);
			if (call->ev == PX_EV_COMPLETE)
				call_end(call, END_OK, 0, "", 0);
			else
				call_end(call, END_FAIL, -ECONNRESET, "peer answer cut short", 0);
			return;
		}
		call_upstream_failed(call, nread == UV_EOF ? -ECONNRESET : (int)nread,
				     call->got_bytes ? "peer answer cut short" : "peer closed the connection");
		return;
	}
	call->got_bytes = 1;
	const char *data = c->rbuf;
	llhttp_errno_t err = llhttp_execute(&c->parser, data, (size_t)nread);
	after_parse(c, err, data + nread);
}

/* ---- llhttp callbacks (they record; after_parse acts) ---- */

static int hdr_add(px_conn *c, const char *at, size_t len)
{
	px_call *call = c->call;
	if (c->hdr_len + len > c->px->cfg.max_header_bytes) {
		call->ev = PX_EV_OVERSIZE;
		return -1;
	}
	memcpy(c->hdr + c->hdr_len, at, len);
	c->hdr_len += len;
	return 0;
}

static int cb_message_begin(llhttp_t *p)
{
	px_conn *c = p->data;
	c->hdr_len = 0;
	c->line_start = 0;
	c->nlines = 0;
	c->conn_tokens[0] = 0;
	return 0;
}

static int cb_header_field(llhttp_t *p, const char *at, size_t len)
{
	return hdr_add(p->data, at, len);
}

static int cb_header_field_complete(llhttp_t *p)
{
	return hdr_add(p->data, ": ", 2);
}

static int cb_header_value(llhttp_t *p, const char *at, size_t len)
{
	return hdr_add(p->data, at, len);
}

static int cb_header_value_complete(llhttp_t *p)
{
	px_conn *c = p->data;
	px_call *call = c->call;
	while (c->hdr_len > c->line_start &&
	       (c->hdr[c->hdr_len - 1] == ' ' || c->hdr[c->hdr_len - 1] == '\t'))
		c->hdr_len--;
	if (hdr_add(c, "\r\n", 2) < 0)
		return -1;
	if (++c->nlines > PX_MAX_HEADER_LINES) {
		call->ev = PX_EV_OVERSIZE;
		return -1;
	}
	const char *line = c->hdr + c->line_start;
	const char *colon = memchr(line, ':', c->hdr_len - c->line_start);
	size_t nl = colon ? (size_t)(colon - line) : 0;
	if (nl == 10 && strncasecmp(line, "Connection", 10) == 0) {
		/* the value: after ':' and its blanks, up to the line's CRLF */
		const char *v = colon + 1, *ve = c->hdr + c->hdr_len - 2;
		while (v < ve && (*v == ' ' || *v == '\t'))
			v++;
		size_t used = strlen(c->conn_tokens);
		size_t vl = (size_t)(ve - v), room = sizeof c->conn_tokens - used - 2;
		if (vl > room)
			vl = room;
		c->conn_tokens[used] = ',';
		memcpy(c->conn_tokens + used + 1, v, vl);
		c->conn_tokens[used + 1 + vl] = 0;
	}
	/* framing and hop-by-hop lines, and the ones rt_http writes itself, are not relayed */
	if (!colon || hop_by_hop(line, nl) || (nl == 4 && strncasecmp(line, "Date", 4) == 0) ||
	    (nl == 12 && strncasecmp(line, "X-Request-Id", 12) == 0) ||
	    (nl == 11 && strncasecmp(line, "traceparent", 11) == 0))
		c->hdr_len = c->line_start;
	c->line_start = c->hdr_len;
	return 0;
}

/* drops the lines named by the answer's Connection header (RFC 9110 7.6.1) */
static void drop_connection_named(px_conn *c)
{
	if (!c->conn_tokens[0])
		return;
	size_t r = 0, w = 0;
	while (r < c->hdr_len) {
		const char *line = c->hdr + r;
		const char *eol = memchr(line, '\n', c->hdr_len - r);
		size_t ll = eol ? (size_t)(eol - line) + 1 : c->hdr_len - r;
		const char *colon = memchr(line, ':', ll);
		if (!colon || !in_token_list(c->conn_tokens, line, (size_t)(colon - line))) {
			memmove(c->hdr + w, line, ll);
			w += ll;
		}
		r += ll;
	}
	c->hdr_len = w;
}

static int cb_headers_complete(llhttp_t *p)
{
	px_conn *c = p->data;
	px_call *call = c->call;
	int status = p->status_code;
	if (status >= 100 && status < 200) {
		if (status == 101) {   /* nothing asked to upgrade */
			call->ev = PX_EV_MALFORMED;
			return -1;
		}
		call->informational = 1;   /* skipped: the real answer follows */
		return 0;
	}
	if (status < 200 || status > 999) {
		call->ev = PX_EV_MALFORMED;
		return -1;
	}
	if (status == 503 && call->fallback_503) {
		call->ev = PX_EV_BUSY;
		return -1;
	}
	drop_connection_named(c);
	int64_t length = (p->flags & F_CONTENT_LENGTH) && !(p->flags & F_CHUNKED) ?
			 (int64_t)p->content_length : -1;
	int rc = rt_req_relay_begin(call->req, status, c->hdr, c->hdr_len, length);
	if (rc == -EINVAL) {
		call->ev = PX_EV_MALFORMED;
		return -1;
	}
	if (rc == -ENOMEM || rc == -ENOSPC) {
		call->ev = PX_EV_NOMEM;
		return -1;
	}
	call->relaying = 1;
	call->status = status;
	if (rc < 0) {
		call->ev = PX_EV_GONE;
		return -1;
	}
	return call->head_only ? 1 : 0;
}

static int cb_body(llhttp_t *p, const char *at, size_t len)
{
	px_conn *c = p->data;
	px_call *call = c->call;
	if (!call->relaying)
		return 0;   /* a 1xx answer's (none expected) */
	int rc = rt_req_stream_write(call->req, at, len);
	if (rc < 0) {
		call->ev = rc == -ENOMEM ? PX_EV_NOMEM : PX_EV_GONE;
		return -1;
	}
	return 0;
}

static int cb_message_complete(llhttp_t *p)
{
	px_conn *c = p->data;
	px_call *call = c->call;
	if (call->informational) {
		call->informational = 0;
		return 0;
	}
	call->ev = PX_EV_COMPLETE;
	return HPE_PAUSED;
}

/* ---- connecting and sending ---- */

static void on_timer(uv_timer_t *t)
{
	px_conn *c = t->data;
	if (c->state == PX_IDLE) {
		conn_close(c);
		return;
	}
	px_call *call = c->call;
	if (!call)
		return;
	if (call->deadline_ms && now_ms() >= call->deadline_ms)
		call_end(call, END_DEADLINE, -ETIMEDOUT, "deadline", 0);
	else
		call_end(call, END_FAIL, -ETIMEDOUT, "connect timeout", 0);
}

/* the connection's timer: the connect timeout (connecting) and the deadline */
static void conn_arm(px_conn *c, int connecting)
{
	px_call *call = c->call;
	uint64_t ms = 0, now = now_ms();
	if (connecting)
		ms = c->px->cfg.connect_timeout_ms;
	if (call->deadline_ms) {
		uint64_t left = call->deadline_ms > now ? call->deadline_ms - now : 0;
		if (!ms || left < ms)
			ms = left ? left : 1;
	}
	if (ms)
		uv_timer_start(&c->timer, on_timer, ms, 0);
	else
		uv_timer_stop(&c->timer);
}

static void on_write(uv_write_t *w, int status)
{
	px_conn *c = w->data;
	px_call *call = c->call;
	if (!call || c->state != PX_ACTIVE)
		return;
	if (status < 0) {
		if (!call->got_bytes)
			call_upstream_failed(call, status, "sending to the peer");
		/* else: the peer answered without reading all of it; the answer decides */
		return;
	}
	call->req_written = 1;
}

static void conn_send_request(px_conn *c)
{
	px_call *call = c->call;
	rt_proxy *px = c->px;
	c->state = PX_ACTIVE;
	if (!c->rbuf)
		c->rbuf = malloc(PX_READ_BUF);
	if (!c->hdr)
		c->hdr = malloc(px->cfg.max_header_bytes);
	if (!c->rbuf || !c->hdr) {
		call_end(call, END_FAIL, -ENOMEM, "out of memory", 0);
		return;
	}
	llhttp_init(&c->parser, HTTP_RESPONSE, &px->settings);
	c->parser.data = c;
	read_stop(c);
	read_start(c);
	conn_arm(c, 0);
	uv_buf_t bufs[2] = { uv_buf_init(call->head, (unsigned)call->head_len),
			     uv_buf_init(call->req->body, (unsigned)call->req->body_len) };
	int rc = uv_write(&c->write, (uv_stream_t *)&c->tcp, bufs, call->req->body_len ? 2 : 1, on_write);
	if (rc < 0)
		call_upstream_failed(call, rc, "sending to the peer");
}

static void on_connect(uv_connect_t *cr, int status)
{
	px_conn *c = cr->data;
	px_call *call = c->call;
	if (!call || c->state != PX_CONNECTING)
		return;
	if (status < 0) {
		call_end(call, END_FAIL, status, "connect", 0);
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	conn_send_request(c);
}

static void conn_connect(px_conn *c, const struct sockaddr *addr)
{
	c->state = PX_CONNECTING;
	int rc = uv_tcp_connect(&c->connect, &c->tcp, addr, on_connect);
	if (rc < 0)
		call_end(c->call, END_FAIL, rc, "connect", 0);
}

static void on_resolved(uv_getaddrinfo_t *g, int status, struct addrinfo *res)
{
	px_conn *c = g->data;
	c->gai_pending = 0;
	px_call *call = c->call;
	if (!call || c->state != PX_RESOLVING) {
		if (res)
			uv_freeaddrinfo(res);
		conn_maybe_free(c);
		return;
	}
	if (status < 0 || !res) {
		if (res)
			uv_freeaddrinfo(res);
		call_end(call, END_FAIL, status < 0 ? status : -EHOSTUNREACH, "resolving the peer", 0);
		return;
	}
	struct sockaddr_storage ss;
	memcpy(&ss, res->ai_addr, res->ai_addrlen < sizeof ss ? res->ai_addrlen : sizeof ss);
	uv_freeaddrinfo(res);
	conn_connect(c, (struct sockaddr *)&ss);
}

/* a pooled connection to the call's peer, or a new one */
static void call_connect(px_call *call)
{
	rt_proxy *px = call->px;
	if (!call->retried) {
		for (px_conn *o = px->idle; o; o = o->idle_next) {
			if (strcmp(o->key, call->key) != 0)
				continue;
			idle_unlink(o);
			uv_timer_stop(&o->timer);
			read_stop(o);
			o->call = call;
			call->conn = o;
			call->reused = 1;
			conn_send_request(o);
			return;
		}
	}
	px_conn *c = conn_new(px, call->key);
	if (!c) {
		call_end(call, END_FAIL, -ENOMEM, "out of memory", 0);
		return;
	}
	c->call = call;
	call->conn = c;
	conn_arm(c, 1);
	if (call->literal) {
		struct sockaddr_storage ss;
		if (strchr(call->host, ':'))
			uv_ip6_addr(call->host, call->port, (struct sockaddr_in6 *)&ss);
		else
			uv_ip4_addr(call->host, call->port, (struct sockaddr_in *)&ss);
		conn_connect(c, (struct sockaddr *)&ss);
		return;
	}
	c->state = PX_RESOLVING;
	char port[16];
	snprintf(port, sizeof port, "%d", call->port);
	struct addrinfo hints;
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	int rc = uv_getaddrinfo(px->loop, &c->gai, on_resolved, call->host, port, &hints);
	if (rc < 0) {
		call_end(call, END_FAIL, rc, "resolving the peer", 0);
		return;
	}
	c->gai_pending = 1;
}

/* ---- the public calls ---- */

static void on_client_gone(void *ud)
{
	px_call *call = ud;
	call_end(call, END_GONE, -ECANCELED, "client gone", 0);
}

int rt_proxy_new(uv_loop_t *loop, const rt_proxy_config *cfg, rt_proxy **out)
{
	rt_proxy *px = calloc(1, sizeof *px);
	if (!px)
		return -ENOMEM;
	rt_proxy_config d;
	rt_proxy_config_defaults(&d);
	px->loop = loop;
	px->cfg = cfg ? *cfg : d;
	if (!px->cfg.connect_timeout_ms)
		px->cfg.connect_timeout_ms = d.connect_timeout_ms;
	if (!px->cfg.idle_timeout_ms)
		px->cfg.idle_timeout_ms = d.idle_timeout_ms;
	if (px->cfg.max_idle_per_peer <= 0)
		px->cfg.max_idle_per_peer = d.max_idle_per_peer;
	if (px->cfg.max_idle <= 0)
		px->cfg.max_idle = d.max_idle;
	if (px->cfg.max_header_bytes < 256)
		px->cfg.max_header_bytes = px->cfg.max_header_bytes ? 256 : d.max_header_bytes;
	if (!px->cfg.max_client_queue)
		px->cfg.max_client_queue = d.max_client_queue;
	llhttp_settings_init(&px->settings);
	px->settings.on_message_begin = cb_message_begin;
	px->settings.on_header_field = cb_header_field;
	px->settings.on_header_field_complete = cb_header_field_complete;
	px->settings.on_header_value = cb_header_value;
	px->settings.on_header_value_complete = cb_header_value_complete;
	px->settings.on_headers_complete = cb_headers_complete;
	px->settings.on_body = cb_body;
	px->settings.on_message_complete = cb_message_complete;
	*out = px;
	return 0;
}

void rt_proxy_free(rt_proxy *px)
{
	if (!px || px->closing)
		return;
	px->closing = 1;
	px->ncalls++;   /* holds px while the calls end */
	while (px->calls)
		call_end(px->calls, END_SHUTDOWN, -ESHUTDOWN, "shutting down", 0);
	for (px_conn *c = px->conns, *n; c; c = n) {
		n = c->next;
		conn_close(c);
	}
	px->ncalls--;
	if (px->nconns == 0 && px->ncalls == 0)
		free(px);
}

int rt_proxy_forward(rt_proxy *px, rt_req *req, const char *peer_url, const rt_proxy_opts *o,
		     rt_proxy_done_fn done, void *ud)
{
	if (px->closing)
		return -ESHUTDOWN;
	if (!req || !done || !req->method || !req->target)
		return -EINVAL;
	for (int k = 0; o && k < o->nheaders; k++)
		if (!o->headers[k].name || !o->headers[k].value || !is_token(o->headers[k].name) ||
		    !clean_value(o->headers[k].value) ||
		    hop_by_hop(o->headers[k].name, strlen(o->headers[k].name)) ||
		    !strcasecmp(o->headers[k].name, "Host"))
			return -EINVAL;   /* framing and routing are the forwarder's own */
	if (o && o->deadline_ms && now_ms() >= o->deadline_ms)
		return -ETIMEDOUT;
	px_call *call = calloc(1, sizeof *call);
	if (!call)
		return -ENOMEM;
	int rc = parse_peer(peer_url, call->host, sizeof call->host, &call->port, &call->literal);
	if (rc < 0) {
		free(call);
		return rc;
	}
	snprintf(call->key, sizeof call->key, "%s:%d", call->host, call->port);
	call->px = px;
	call->req = req;
	call->done = done;
	call->ud = ud;
	call->deadline_ms = o ? o->deadline_ms : 0;
	call->fallback_503 = o ? o->fallback_on_503 : 0;
	call->head_only = strcmp(req->method, "HEAD") == 0;
	rc = build_head(call, o);
	if (rc < 0) {
		free(call);
		return rc;
	}
	call->next = px->calls;
	if (px->calls)
		px->calls->prev = call;
	px->calls = call;
	px->ncalls++;
	rt_req_on_gone(req, on_client_gone, call);
	call_connect(call);
	return 0;
}

int rt_proxy_idle_count(const rt_proxy *px, const char *peer_url)
{
	if (!peer_url)
		return px->nidle;
	char host[PX_HOST_MAX], key[PX_HOST_MAX + 8];
	int port, literal;
	if (parse_peer(peer_url, host, sizeof host, &port, &literal) < 0)
		return 0;
	snprintf(key, sizeof key, "%s:%d", host, port);
	int n = 0;
	for (const px_conn *c = px->idle; c; c = c->idle_next)
		n += strcmp(c->key, key) == 0;
	return n;
}

int rt_proxy_inflight(const rt_proxy *px)
{
	return px->ncalls;
}

/* ---- X-Thaw-Forwarded ---- */

static int node_id_ok(const char *id)
{
	size_t n = strlen(id);
	if (n == 0 || n >= RT_PROXY_NODE_ID_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)id[i]) && !strchr("._-:", id[i]))
			return 0;
	return 1;
}

static void mac_of(const void *secret, size_t slen, const char *node, size_t nlen, int64_t exp,
		   const char *method, const char *target,
		   unsigned char out[crypto_auth_hmacsha512256_BYTES])
{
	crypto_auth_hmacsha512256_state st;
	char e[32];
	int el = snprintf(e, sizeof e, "%lld", (long long)exp);
	crypto_auth_hmacsha512256_init(&st, secret, slen);
	/* length-prefixed fields: no two different tuples hash the same bytes */
	const void *parts[4] = { node, e, method, target };
	size_t lens[4] = { nlen, (size_t)el, strlen(method), strlen(target) };
	for (int i = 0; i < 4; i++) {
		unsigned char l[8];
		for (int k = 0; k < 8; k++)
			l[k] = (unsigned char)((uint64_t)lens[i] >> (8 * k));
		crypto_auth_hmacsha512256_update(&st, l, sizeof l);
		crypto_auth_hmacsha512256_update(&st, parts[i], lens[i]);
	}
	crypto_auth_hmacsha512256_final(&st, out);
	sodium_memzero(&st, sizeof st);
}

int rt_proxy_sign(const void *secret, size_t secret_len, const char *node_id, int64_t expires_ms,
		  const char *method, const char *target, char *out, size_t cap)
{
	if (!secret || secret_len < RT_PROXY_SECRET_MIN || !node_id || !node_id_ok(node_id) ||
	    expires_ms < 0 || !method || !target || !out)
		return -EINVAL;
	if (sodium_init() < 0)
		return -EINVAL;
	unsigned char mac[crypto_auth_hmacsha512256_BYTES];
	mac_of(secret, secret_len, node_id, strlen(node_id), expires_ms, method, target, mac);
	char hex[2 * sizeof mac + 1];
	sodium_bin2hex(hex, sizeof hex, mac, sizeof mac);
	int n = snprintf(out, cap, "%s;%lld;%s", node_id, (long long)expires_ms, hex);
	if (n < 0 || (size_t)n >= cap) {
		if (cap)
			out[0] = 0;
		return -ENOSPC;
	}
	return 0;
}

int rt_proxy_verify(const void *secret, size_t secret_len, const char *header, const char *method,
		    const char *target, int64_t now_ms, char *node_out, size_t node_cap)
{
	if (node_out && node_cap)
		node_out[0] = 0;
	if (!secret || secret_len < RT_PROXY_SECRET_MIN || !header || !method || !target)
		return -EINVAL;
	if (sodium_init() < 0)
		return -EINVAL;
	const char *s1 = strchr(header, ';');
	const char *s2 = s1 ? strchr(s1 + 1, ';') : NULL;
	if (!s1 || !s2)
		return -EINVAL;
	size_t nlen = (size_t)(s1 - header);
	char node[RT_PROXY_NODE_ID_MAX];
	if (nlen == 0 || nlen >= sizeof node)
		return -EINVAL;
	memcpy(node, header, nlen);
	node[nlen] = 0;
	if (!node_id_ok(node))
		return -EINVAL;
	const char *e = s1 + 1;
	size_t elen = (size_t)(s2 - e);
	if (elen == 0 || elen > 18 || strspn(e, "0123456789") != elen || (elen > 1 && e[0] == '0'))
		return -EINVAL;
	int64_t exp = 0;
	for (size_t i = 0; i < elen; i++)
		exp = exp * 10 + (e[i] - '0');
	const char *hex = s2 + 1;
	unsigned char got[crypto_auth_hmacsha512256_BYTES], want[sizeof got];
	if (strlen(hex) != 2 * sizeof got || strspn(hex, "0123456789abcdef") != 2 * sizeof got)
		return -EINVAL;
	size_t bl = 0;
	if (sodium_hex2bin(got, sizeof got, hex, 2 * sizeof got, NULL, &bl, NULL) < 0 || bl != sizeof got)
		return -EINVAL;
	mac_of(secret, secret_len, node, nlen, exp, method, target, want);
	if (sodium_memcmp(got, want, sizeof got) != 0)
		return -EACCES;
	if (now_ms > exp)
		return -ETIMEDOUT;
	if (node_out && node_cap)
		snprintf(node_out, node_cap, "%s", node);
	return 0;
}

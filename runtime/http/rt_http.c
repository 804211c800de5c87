/* rt_http.c — HTTP/1.1 server on libuv + llhttp. See rt_http.h for the contract.
 *
 * Per connection: bytes are read straight into `in` (grown as needed) and fed to llhttp.
 * on_message_complete pauses the parser, so exactly one request is dispatched at a time and
 * pipelined requests wait, unparsed, in `in` until the current response is written; this keeps
 * responses in order even when a handler replies later. The request line and headers are copied
 * into a per-connection buffer of max_header_bytes (which is also the 431 limit), the body into
 * a growable buffer capped at max_body_bytes (413) and, across all connections, at
 * max_body_inflight (503).
 *
 * Pipelined requests are served by the loop in conn_process, never by recursion: a reply made
 * while conn_process is on the connection's stack only marks the request finished, and the loop
 * goes on with the next one. At the end of the headers the head hook routes and gates the
 * request; when it answers (401, 404, ...) the body is never buffered. Flow control: reading
 * stops while more than RT_HTTP_IN_HIGH unparsed bytes wait, and dispatching stops while more
 * than max_write_queue response bytes wait to be written (a client that does not read); both
 * resume as the backlog drains. Fairness: a connection is served at most RT_HTTP_BATCH
 * pipelined requests in a row; the rest wait one loop turn (the resume idle handle) so that
 * other connections, probes included, are polled in between. */
#include <ctype.h>
#include <errno.h>
#include <sys/resource.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <llhttp.h>
#include "runtime/base/rt_clock.h"
#include "runtime/http/rt_http.h"
#include "runtime/base/rt_log.h"

enum conn_state {
	CONN_IDLE,      /* nothing of a next request received */
	CONN_READING,   /* part of a request received */
	CONN_BUSY,      /* request dispatched, waiting for its reply */
};

#define RT_HTTP_IN_HIGH (1024 * 1024)   /* unparsed input past which reading stops */
#define RT_HTTP_KEEP_BUF (16 * 1024)    /* a body buffer up to this stays between requests */
#define RT_HTTP_DISCARD_MAX (64 * 1024) /* a body announced with a request answered at its head
                                         * is read and dropped up to this; over it, or
                                         * chunked: the connection closes */
#define RT_HTTP_BATCH 64                /* requests one connection is served before the loop polls
                                         * again (the rest wait for the resume handle) */
#define RT_HTTP_PROBE_MS 1000          /* a reserve connection's request must arrive within this */
#define RT_HTTP_FD_MARGIN 128           /* descriptors kept for files, lanes, logs, listener */

enum conn_class {
	CONN_NORMAL,    /* counted against max_connections */
	CONN_PROBE,     /* in the probe reserve: probe paths only, one request */
};

struct rt_conn {
	uv_tcp_t tcp;
	uv_timer_t timer;
	rt_http *srv;
	rt_conn *prev, *next;
	llhttp_t parser;
	enum conn_state state;
	int closing;            /* uv_close issued */
	int close_after;        /* close once the current response is written */
	int handles_open;       /* tcp + timer still to be closed */
	int reading_paused;     /* uv_read_stop issued by conn_flow */
	int in_process;         /* conn_process is on the stack: a reply only marks the request done */
	int queued;             /* on the server's ready list (more pipelined requests to serve) */
	rt_conn *ready_next;
	int in_head;            /* the head hook runs */
	int head_body;          /* the message being headed announced a body that an answer at
	                         * the head does not read (chunked or over RT_HTTP_DISCARD_MAX) */
	int head_answered;      /* the head hook answered this message: its body is not kept */
	int write_blocked;      /* not dispatching: too many unsent response bytes */
	int got_bytes;          /* a byte has been received */
	enum conn_class klass;
	unsigned nfinished;     /* requests finished (replied) on this connection */
	size_t body_reserved;   /* bytes of the server's body budget this connection holds */
	size_t body_announced;  /* Content-Length of the request being read (0: none, chunked) */
	const char *exec_start; /* the data of the llhttp_execute under way */
	char prev_byte;         /* the byte before exec_start in the stream */
	unsigned char addr[17]; /* peer: family byte + address, for the per-address cap */
	int err_status;         /* 413/431 raised from a callback */
	const char *err_msg;    /* its message when not the default one */
	char *in;               /* unparsed input: in[in_off, in_len) */
	size_t in_len, in_off, in_cap;
	char *hdr;              /* request line + header storage, max_header_bytes */
	size_t hdr_len;
	size_t cur_name, cur_value;   /* offsets of the header being parsed */
	size_t url_off;
	char *body;
	size_t body_cap;
	rt_req req;
	uint64_t bytes_out;
	char peer[64];          /* the peer's address, cached by rt_req_peer */
	int write_failed;       /* a write to the peer failed (peer gone) */
	int peer_gone;          /* the peer closed or reset the connection while a request ran */
	int streaming;          /* a streamed head went out: STREAM_* */
	uint64_t stream_left;   /* STREAM_LENGTH: body bytes still to come */
	int stream_keep;        /* keep-alive decided at stream begin */
	size_t stream_bytes;    /* bytes written for the streamed response */
	const rt_body_sink *sink;  /* the body of the request being read goes here (rt_req_body_sink) */
	void *sink_ud;
	uint64_t sink_max, sink_bytes;
	int sink_paused;        /* the sink is full: not reading until rt_req_body_resume */
	int over_body;          /* Content-Length over max_body_bytes: 413 unless the head streams it */
	void (*drain_fn)(void *ud);   /* rt_req_on_drain */
	void *drain_ud;
	size_t drain_low;
};

/* framing of a streamed response (rt_conn.streaming) */
enum {
	STREAM_NONE,
	STREAM_CHUNKED,   /* Transfer-Encoding: chunked */
	STREAM_CLOSE,     /* HTTP/1.0 client: no framing, the connection closes at the end */
	STREAM_LENGTH,    /* relayed with Content-Length: raw bytes, exactly that many */
	STREAM_NOBODY,    /* relayed answer without a body (HEAD, 204, 304) */
};

struct rt_http {
	uv_loop_t *loop;
	uv_tcp_t listener;
	rt_http_config cfg;
	rt_handler_fn dispatch;
	rt_handler_fn head;
	void *ud;
	rt_http_observer_fn observer;
	void *observer_ud;
	rt_conn *conns;
	int nconns;             /* all open connections */
	int nnormal, nprobe;    /* by class */
	size_t body_inflight;   /* bytes reserved by bodies being read or handled */
	uv_idle_t resume;       /* runs conn_process of the ready list once per loop turn */
	rt_conn *ready;         /* connections that used their RT_HTTP_BATCH with input left */
	int port;
	int draining;
	int listener_closed;
	void (*drained)(void *);
	void *drained_ud;
	llhttp_settings_t settings;
	uint64_t next_id;
	char id_prefix[16];
	char date[64];
	uint64_t date_sec;
};

static void conn_process(rt_conn *c);
static void conn_close(rt_conn *c);
static void conn_arm_timer(rt_conn *c);
static void conn_flow(rt_conn *c);

void rt_http_config_defaults(rt_http_config *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	cfg->host = "0.0.0.0";
	cfg->port = 8080;
	cfg->max_header_bytes = 16 * 1024;
	cfg->max_body_bytes = 64u * 1024 * 1024;
	cfg->max_body_inflight = 256u * 1024 * 1024;
	cfg->max_connections = 4096;
	cfg->probe_reserve = 32;
	cfg->max_conns_per_addr = 0;
	cfg->max_write_queue = 1024 * 1024;
	cfg->read_timeout_ms = 30000;
	cfg->idle_timeout_ms = 60000;
	cfg->first_byte_timeout_ms = 10000;
	cfg->access_log = 1;
}

const char *rt_http_status_text(int s)
{
	switch (s) {
	case 100: return "Continue";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 415: return "Unsupported Media Type";
	case 417: return "Expectation Failed";
	case 422: return "Unprocessable Content";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 499: return "Client Closed Request";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	default: return "Unknown";
	}
}

/* ---- small helpers ---- */

static const char *http_date(rt_http *h)
{
	time_t now = time(NULL);
	if ((uint64_t)now != h->date_sec) {
		struct tm tm;
		gmtime_r(&now, &tm);
		strftime(h->date, sizeof h->date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
		h->date_sec = (uint64_t)now;
	}
	return h->date;
}

/* A client-supplied request id is honoured when short and made of visible ASCII. */
static int sane_request_id(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 64)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (s[i] <= 0x20 || s[i] >= 0x7f || s[i] == '"' || s[i] == '\\')
			return 0;
	return 1;
}

/* W3C traceparent: "00-<32 hex>-<16 hex>-<2 hex>", trace id and parent id not all zero. */
static int valid_traceparent(const char *s)
{
	if (strlen(s) != 55 || s[2] != '-' || s[35] != '-' || s[52] != '-')
		return 0;
	int nz_trace = 0, nz_parent = 0;
	for (int i = 0; i < 55; i++) {
		if (i == 2 || i == 35 || i == 52)
			continue;
		if (!isxdigit((unsigned char)s[i]) || isupper((unsigned char)s[i]))
			return 0;
		if (i >= 3 && i < 35 && s[i] != '0')
			nz_trace = 1;
		if (i >= 36 && i < 52 && s[i] != '0')
			nz_parent = 1;
	}
	if (s[0] == 'f' && s[1] == 'f')
		return 0;
	return nz_trace && nz_parent;
}

const char *rt_req_header(const rt_req *req, const char *name)
{
	for (int i = 0; i < req->nheaders; i++)
		if (strcasecmp(req->headers[i].name, name) == 0)
			return req->headers[i].value;
	return NULL;
}

const char *rt_req_param(const rt_req *req, const char *name)
{
	for (int i = 0; i < req->nparams; i++)
		if (strcmp(req->param_names[i], name) == 0)
			return req->param_values[i];
	return NULL;
}

int rt_req_add_header(rt_req *req, const char *name, const char *value)
{
	size_t room = sizeof req->extra_headers - req->extra_len;
	int n = snprintf(req->extra_headers + req->extra_len, room, "%s: %s\r\n", name, value);
	if (n < 0 || (size_t)n >= room) {
		req->extra_headers[req->extra_len] = 0;
		return -ENOSPC;
	}
	req->extra_len += (size_t)n;
	return 0;
}

/* ---- writing ---- */

static double req_observe(rt_req *req, size_t total, const char *body, size_t len);
static void req_finish(rt_req *req, int status, size_t total, int keep, double secs);

typedef struct write_req {
	uv_write_t w;
	rt_conn *c;
	size_t len;
	char *owned;   /* a body handed over by rt_req_reply_take, freed with the request */
	char data[];
} write_req;

static size_t write_queue(const rt_conn *c)
{
	return uv_stream_get_write_queue_size((const uv_stream_t *)&c->tcp);
}

static void on_write(uv_write_t *w, int status)
{
	write_req *wr = (write_req *)w;
	rt_conn *c = wr->c;
	free(wr->owned);
	free(wr);
	if (status < 0)
		c->write_failed = 1;
	if (status < 0 && !c->closing)
		conn_close(c);
	if (c->drain_fn && (status < 0 || write_queue(c) <= c->drain_low)) {
		void (*fn)(void *) = c->drain_fn;
		c->drain_fn = NULL;
		fn(c->drain_ud);   /* may write or finish the request: c stays valid (async close) */
	}
	if (c->closing || !c->write_blocked)
		return;
	if (write_queue(c) > c->srv->cfg.max_write_queue / 2) {
		conn_arm_timer(c);   /* progress: the idle timeout starts again */
		return;
	}
	/* drained: read and dispatch again */
	c->write_blocked = 0;
	conn_flow(c);
	conn_process(c);
}

/* Sends buf; returns 0 or a negative errno (connection then closed). */
static int conn_send(rt_conn *c, const char *buf, size_t len)
{
	if (c->closing)
		return -ECONNRESET;
	uv_buf_t b = uv_buf_init((char *)buf, (unsigned)len);
	int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
	if (n == (int)len)
		return 0;
	if (n < 0 && n != UV_EAGAIN) {
		c->write_failed = 1;
		conn_close(c);
		return n;
	}
	size_t done = n > 0 ? (size_t)n : 0;
	write_req *wr = malloc(sizeof *wr + (len - done));
	if (!wr) {
		conn_close(c);
		return -ENOMEM;
	}
	wr->c = c;
	wr->len = len - done;
	wr->owned = NULL;
	memcpy(wr->data, buf + done, len - done);
	b = uv_buf_init(wr->data, (unsigned)wr->len);
	int rc = uv_write(&wr->w, (uv_stream_t *)&c->tcp, &b, 1, on_write);
	if (rc < 0) {
		free(wr);
		conn_close(c);
		return rc;
	}
	return 0;
}

/* Sends head (copied when it must wait) then body, which it owns from here: body is freed
 * once written, or when the write fails or the connection closes first. Returns 0 or a
 * negative errno (connection then closed). */
static int conn_send_take(rt_conn *c, const char *head, size_t hl, char *body, size_t blen)
{
	if (c->closing) {
		free(body);
		return -ECONNRESET;
	}
	uv_buf_t b[2] = { uv_buf_init((char *)head, (unsigned)hl), uv_buf_init(body, (unsigned)blen) };
	int n = uv_try_write((uv_stream_t *)&c->tcp, b, 2);
	if (n >= 0 && (size_t)n == hl + blen) {
		free(body);
		return 0;
	}
	if (n < 0 && n != UV_EAGAIN) {
		c->write_failed = 1;
		free(body);
		conn_close(c);
		return n;
	}
	size_t done = n > 0 ? (size_t)n : 0;
	size_t hrest = done < hl ? hl - done : 0;
	size_t boff = done > hl ? done - hl : 0;
	write_req *wr = malloc(sizeof *wr + hrest);
	if (!wr) {
		free(body);
		conn_close(c);
		return -ENOMEM;
	}
	wr->c = c;
	wr->len = hrest + (blen - boff);
	wr->owned = body;
	memcpy(wr->data, head + (hl - hrest), hrest);
	unsigned nb = 0;
	if (hrest)
		b[nb++] = uv_buf_init(wr->data, (unsigned)hrest);
	b[nb++] = uv_buf_init(body + boff, (unsigned)(blen - boff));
	int rc = uv_write(&wr->w, (uv_stream_t *)&c->tcp, b, nb, on_write);
	if (rc < 0) {
		free(body);
		free(wr);
		conn_close(c);
		return rc;
	}
	return 0;
}

static void req_reset(rt_conn *c)
{
	rt_req *r = &c->req;
	r->nheaders = 0;
	c->body_announced = 0;
	r->nparams = 0;
	r->body_len = 0;
	r->extra_len = 0;
	r->extra_headers[0] = 0;
	r->status = 0;
	r->method = NULL;
	r->target = NULL;
	r->path = NULL;
	r->query = "";
	r->route = "unmatched";
	r->request_id[0] = 0;
	r->traceparent[0] = 0;
	r->auth_key_id[0] = 0;
	r->auth_scopes[0] = 0;
	r->gone_fn = NULL;
	r->gone_ud = NULL;
	r->handler = NULL;
	r->handler_ud = NULL;
	r->body = NULL;
	r->sink_ud = NULL;
	c->sink = NULL;
	c->sink_ud = NULL;
	c->sink_bytes = 0;
	c->sink_paused = 0;
	c->over_body = 0;
	c->streaming = STREAM_NONE;
	c->stream_left = 0;
	c->stream_bytes = 0;
	c->drain_fn = NULL;
	c->drain_ud = NULL;
	c->hdr_len = 0;
	c->err_status = 0;
	c->err_msg = NULL;
}

/* body budget: total bytes of body buffers, server-wide, held by requests being read or
 * handled. body_reserve makes this connection's share at least total; -1 when that would pass
 * max_body_inflight. */
static int body_reserve(rt_conn *c, size_t total)
{
	rt_http *h = c->srv;
	if (total <= c->body_reserved)
		return 0;
	size_t extra = total - c->body_reserved;
	if (h->body_inflight + extra > h->cfg.max_body_inflight)
		return -1;
	h->body_inflight += extra;
	c->body_reserved += extra;
	return 0;
}

/* gives the connection's share back; a body buffer over RT_HTTP_KEEP_BUF is freed (a
 * keep-alive connection keeps no large body buffer between requests) */
static void body_release(rt_conn *c)
{
	c->srv->body_inflight -= c->body_reserved;
	c->body_reserved = 0;
	if (c->body_cap > RT_HTTP_KEEP_BUF) {
		free(c->body);
		c->body = NULL;
		c->body_cap = 0;
	}
}

/* builds the response head (status line, headers, extra headers, blank line) for a body of
 * len bytes into out (RT_HTTP_HEAD_MAX bytes); returns its length and sets *keep */
#define RT_HTTP_HEAD_MAX (1024 + sizeof ((rt_req *)0)->extra_headers + 2)
static size_t reply_head(rt_req *req, int status, const char *ctype, size_t len, char *out,
			 int *keep)
{
	rt_conn *c = req->conn;
	rt_http *h = c->srv;
	*keep = req->keep_alive && !c->close_after && !h->draining && !(c->in_head && c->head_body);
	int n = snprintf(out, 1024,
			 "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
			 "X-Request-Id: %s\r\n%s%s%s%s\r\n",
			 status, rt_http_status_text(status), http_date(h),
			 ctype ? ctype : "application/json", len, req->request_id,
			 req->traceparent[0] ? "traceparent: " : "", req->traceparent,
			 req->traceparent[0] ? "\r\n" : "", *keep ? "" : "Connection: close\r\n");
	size_t hl = (size_t)n >= 1024 ? 1022 : (size_t)n - 2;
	memcpy(out + hl, req->extra_headers, req->extra_len);
	memcpy(out + hl + req->extra_len, "\r\n", 2);
	return hl + req->extra_len + 2;
}

void rt_req_reply_take(rt_req *req, int status, const char *ctype, char *body, size_t len)
{
	rt_conn *c = req->conn;
	req->gone_fn = NULL;
	char head[RT_HTTP_HEAD_MAX];
	int keep;
	size_t hl = reply_head(req, status, ctype, len, head, &keep);
	req->status = status;
	double secs = req_observe(req, hl + len, body, len);
	if (len && strcmp(req->method ? req->method : "", "HEAD") != 0) {
		conn_send_take(c, head, hl, body, len);
	} else {
		free(body);
		conn_send(c, head, hl);
	}
	req_finish(req, status, hl + len, keep, secs);
}

void rt_req_reply(rt_req *req, int status, const char *ctype, const char *body, size_t len)
{
	rt_conn *c = req->conn;
	req->gone_fn = NULL;   /* answered: nobody to cancel any more */
	char head[RT_HTTP_HEAD_MAX];
	int keep;
	size_t hl = reply_head(req, status, ctype, len, head, &keep);
	size_t total = hl + len;
	char stackbuf[8192];
	char *out = total <= sizeof stackbuf ? stackbuf : malloc(total);
	req->status = status;
	/* the observer (metrics, audit log) runs before the bytes go out: an admin action's
	 * audit line is written and fsync'd before the client can see the answer */
	double secs = req_observe(req, total, body, len);
	if (out) {
		memcpy(out, head, hl);
		size_t send_len = hl;
		if (len && strcmp(req->method ? req->method : "", "HEAD") != 0) {
			memcpy(out + hl, body, len);
			send_len = total;
		}
		conn_send(c, out, send_len);
		if (out != stackbuf)
			free(out);
	} else {
		conn_close(c);
	}
	req_finish(req, status, total, keep, secs);
}

/* calls the observer (body: the response body, NULL when streamed); returns the request's
 * time so far */
static double req_observe(rt_req *req, size_t total, const char *body, size_t len)
{
	rt_http *h = req->conn->srv;
	double secs = (double)(rt_clock_mono_ns() - req->start_ns) / 1e9;
	req->resp_body = body;
	req->resp_body_len = len;
	if (h->observer)
		h->observer(req, total, secs, h->observer_ud);
	req->resp_body = NULL;
	req->resp_body_len = 0;
	return secs;
}

/* after a response went out (its observer already called): access log, then the
 * connection's next request. When conn_process is on this connection's stack (a synchronous
 * reply, or one from the head hook inside llhttp_execute) it only marks the request done and
 * that loop goes on; otherwise (a later reply) it starts the loop. Never recursive. */
/* a streamed body that will not complete: its sink learns it once */
static void sink_abort(rt_conn *c)
{
	const rt_body_sink *s = c->sink;
	void *ud = c->sink_ud;
	c->sink = NULL;
	c->sink_ud = NULL;
	c->sink_paused = 0;
	if (s)
		s->abort(ud);
}

static void req_finish(rt_req *req, int status, size_t total, int keep, double secs)
{
	rt_conn *c = req->conn;
	rt_http *h = c->srv;
	sink_abort(c);
	if (h->cfg.access_log)
		rt_log_access(req->method, req->target, status, secs, total, req->request_id,
			      req->traceparent);
	c->state = CONN_IDLE;
	c->nfinished++;
	req_reset(c);
	body_release(c);
	if (c->closing)
		return;
	if (!keep || c->close_after) {
		c->close_after = 1;
		conn_close(c);
		return;
	}
	if (!c->in_process)
		conn_process(c);
}

int rt_req_stream_begin(rt_req *req, int status, const char *ctype)
{
	rt_conn *c = req->conn;
	rt_http *h = c->srv;
	int http10 = c->parser.http_major == 1 && c->parser.http_minor == 0;
	int keep = req->keep_alive && !c->close_after && !h->draining && !http10;
	char head[RT_HTTP_HEAD_MAX];
	int n = snprintf(head, 1024,
			 "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: %s\r\n%s"
			 "Cache-Control: no-cache\r\nX-Request-Id: %s\r\n%s%s%s%s",
			 status, rt_http_status_text(status), http_date(h),
			 ctype ? ctype : "application/octet-stream",
			 http10 ? "" : "Transfer-Encoding: chunked\r\n", req->request_id,
			 req->traceparent[0] ? "traceparent: " : "", req->traceparent,
			 req->traceparent[0] ? "\r\n" : "", keep ? "" : "Connection: close\r\n");
	if (n < 0 || n >= 1024 || (size_t)n + req->extra_len + 2 > sizeof head)
		return -ENOSPC;
	memcpy(head + n, req->extra_headers, req->extra_len);
	memcpy(head + n + req->extra_len, "\r\n", 2);
	size_t len = (size_t)n + req->extra_len + 2;
	req->status = status;
	c->streaming = http10 ? STREAM_CLOSE : STREAM_CHUNKED;
	c->stream_keep = keep;
	c->stream_bytes = len;
	if (conn_send(c, head, len) < 0 || c->write_failed)
		return -EPIPE;
	return 0;
}

int rt_req_stream_write(rt_req *req, const char *data, size_t len)
{
	rt_conn *c = req->conn;
	if (c->streaming == STREAM_NONE)
		return -EINVAL;
	if (c->write_failed || c->closing)
		return -EPIPE;
	if (len == 0)
		return 0;
	int rc;
	if (c->streaming == STREAM_NOBODY) {
		return -EINVAL;
	} else if (c->streaming == STREAM_LENGTH) {
		if (len > c->stream_left)
			return -EMSGSIZE;
		c->stream_left -= len;
		rc = conn_send(c, data, len);
		c->stream_bytes += len;
	} else if (c->streaming == STREAM_CLOSE) {
		rc = conn_send(c, data, len);
		c->stream_bytes += len;
	} else {
		char stackbuf[4096];
		size_t total = len + 20;
		char *out = total <= sizeof stackbuf ? stackbuf : malloc(total);
		if (!out)
			return -ENOMEM;
		int n = snprintf(out, 20, "%zx\r\n", len);
		memcpy(out + n, data, len);
		memcpy(out + n + len, "\r\n", 2);
		rc = conn_send(c, out, (size_t)n + len + 2);
		c->stream_bytes += (size_t)n + len + 2;
		if (out != stackbuf)
			free(out);
	}
	return rc < 0 || c->write_failed ? -EPIPE : 0;
}

/* ends a streamed response; complete = 0: it is cut short (abort), the connection closes
 * without the framing that would make it look whole */
static void stream_finish(rt_req *req, int complete)
{
	rt_conn *c = req->conn;
	req->gone_fn = NULL;
	c->drain_fn = NULL;
	if (c->streaming == STREAM_LENGTH && c->stream_left)
		complete = 0;   /* fewer bytes than its Content-Length: the client must see it cut */
	int keep = complete && c->stream_keep && !c->write_failed &&
		   (c->streaming == STREAM_CHUNKED || c->streaming == STREAM_LENGTH ||
		    c->streaming == STREAM_NOBODY);
	/* a stream whose client went away was not delivered: the access log and the request
	 * metrics say 499, as the call's own metrics do, not the 200 of the head */
	if (rt_req_gone(req) && req->status < 400)
		req->status = 499;
	if (complete && c->streaming == STREAM_CHUNKED && !c->write_failed && !c->closing) {
		conn_send(c, "0\r\n\r\n", 5);
		c->stream_bytes += 5;
	}
	if (!complete)
		c->close_after = 1;
	req_finish(req, req->status, c->stream_bytes, keep,
		   req_observe(req, c->stream_bytes, NULL, 0));
}

void rt_req_stream_end(rt_req *req)
{
	rt_conn *c = req->conn;
	req->gone_fn = NULL;
	if (c->streaming == STREAM_NONE) {   /* begin failed before the head went out */
		rt_req_reply_error(req, 500, "the response stream could not start");
		return;
	}
	stream_finish(req, 1);
}

void rt_req_stream_abort(rt_req *req)
{
	rt_conn *c = req->conn;
	req->gone_fn = NULL;
	if (c->streaming == STREAM_NONE) {
		rt_req_reply_error(req, 502, "the response could not be relayed");
		return;
	}
	stream_finish(req, 0);
}

/* 1 when the header line [name, name + nlen) is one of the block's names */
static int block_has_name(const char *block, size_t blen, const char *name, size_t nlen)
{
	const char *p = block, *end = block + blen;
	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		const char *colon = memchr(p, ':', (size_t)((eol ? eol : end) - p));
		if (colon && (size_t)(colon - p) == nlen && strncasecmp(p, name, nlen) == 0)
			return 1;
		p = eol ? eol + 1 : end;
	}
	return 0;
}

int rt_req_relay_begin(rt_req *req, int status, const char *headers, size_t hlen, int64_t length)
{
	rt_conn *c = req->conn;
	rt_http *h = c->srv;
	if (status < 200 || status > 999 || (hlen && !headers) ||
	    (hlen && (hlen < 2 || headers[hlen - 2] != '\r' || headers[hlen - 1] != '\n')))
		return -EINVAL;
	for (size_t i = 0; i < hlen; i++)   /* every line break is CRLF, nothing control but tab */
		if ((headers[i] == '\n' && (i == 0 || headers[i - 1] != '\r')) ||
		    (headers[i] == '\r' && (i + 1 >= hlen || headers[i + 1] != '\n')) ||
		    headers[i] == 0)
			return -EINVAL;
	int http10 = c->parser.http_major == 1 && c->parser.http_minor == 0;
	int nobody = status == 204 || status == 304 ||
		     strcmp(req->method ? req->method : "", "HEAD") == 0;
	int mode = nobody ? STREAM_NOBODY : length >= 0 ? STREAM_LENGTH :
		   http10 ? STREAM_CLOSE : STREAM_CHUNKED;
	int keep = req->keep_alive && !c->close_after && !h->draining && mode != STREAM_CLOSE;
	char framing[48] = "";
	if (length >= 0 && status != 204)
		snprintf(framing, sizeof framing, "Content-Length: %lld\r\n", (long long)length);
	else if (length < 0 && !http10 && status != 204 && status != 304)
		snprintf(framing, sizeof framing, "Transfer-Encoding: chunked\r\n");
	char line[1024];
	int n = snprintf(line, sizeof line,
			 "HTTP/1.1 %d %s\r\nDate: %s\r\n%sX-Request-Id: %s\r\n%s%s%s%s",
			 status, rt_http_status_text(status), http_date(h), framing, req->request_id,
			 req->traceparent[0] ? "traceparent: " : "", req->traceparent,
			 req->traceparent[0] ? "\r\n" : "", keep ? "" : "Connection: close\r\n");
	if (n < 0 || (size_t)n >= sizeof line)
		return -ENOSPC;
	char *head = malloc((size_t)n + req->extra_len + hlen + 2);
	if (!head)
		return -ENOMEM;
	size_t len = (size_t)n;
	memcpy(head, line, len);
	memcpy(head + len, req->extra_headers, req->extra_len);
	len += req->extra_len;
	/* the relayed lines, less those this request already set (rt_req_add_header wins) */
	for (const char *p = headers, *end = headers + hlen; p && p < end;) {
		const char *eol = memchr(p, '\n', (size_t)(end - p)) + 1;
		const char *colon = memchr(p, ':', (size_t)(eol - p));
		if (!colon || !block_has_name(req->extra_headers, req->extra_len, p, (size_t)(colon - p))) {
			memcpy(head + len, p, (size_t)(eol - p));
			len += (size_t)(eol - p);
		}
		p = eol;
	}
	memcpy(head + len, "\r\n", 2);
	len += 2;
	req->status = status;
	c->streaming = mode;
	c->stream_left = mode == STREAM_LENGTH ? (uint64_t)length : 0;
	c->stream_keep = keep;
	c->stream_bytes = len;
	int rc = conn_send(c, head, len);
	free(head);
	if (rc < 0 || c->write_failed)
		return -EPIPE;
	return 0;
}

size_t rt_req_write_pending(const rt_req *req)
{
	const rt_conn *c = req->conn;
	return c && !c->closing ? write_queue(c) : 0;
}

void rt_req_on_drain(rt_req *req, size_t low, void (*fn)(void *ud), void *ud)
{
	rt_conn *c = req->conn;
	c->drain_fn = fn;
	c->drain_ud = ud;
	c->drain_low = low;
}

void rt_req_reply_error(rt_req *req, int status, const char *fmt, ...)
{
	char msg[512], out[1200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	size_t o = 0;
	o += (size_t)snprintf(out, sizeof out, "{\"error\":\"");
	o += rt_json_escape(out + o, sizeof out - o - 4, msg);
	o += (size_t)snprintf(out + o, sizeof out - o, "\"}");
	rt_req_reply(req, status, "application/json", out, o);
}

/* Error raised by the connection itself (bad request, limits, timeouts): reply and close. */
static void conn_fail(rt_conn *c, int status, const char *msg)
{
	if (c->closing)
		return;
	rt_req *r = &c->req;
	if (!r->request_id[0])
		snprintf(r->request_id, sizeof r->request_id, "%s-%llx", c->srv->id_prefix,
			 (unsigned long long)++c->srv->next_id);
	if (!r->method)
		r->method = "-";
	if (!r->target)
		r->target = "-";
	if (!r->start_ns)
		r->start_ns = rt_clock_mono_ns();
	r->keep_alive = 0;
	c->close_after = 1;
	c->state = CONN_BUSY;
	if (status == 503)
		rt_req_add_header(r, "Retry-After", "1");
	rt_req_reply_error(r, status, "%s", msg);
}

/* ---- parser callbacks ---- */

static int hdr_append(rt_conn *c, const char *at, size_t len)
{
	if (!c->hdr) {   /* header bytes after the message's head was answered (trailers) */
		c->err_status = 400;
		return -1;
	}
	if (c->hdr_len + len + 1 > c->srv->cfg.max_header_bytes) {
		c->err_status = 431;
		return -1;
	}
	memcpy(c->hdr + c->hdr_len, at, len);
	c->hdr_len += len;
	return 0;
}

static int hdr_terminate(rt_conn *c)
{
	return hdr_append(c, "", 1);
}

static int cb_message_begin(llhttp_t *p)
{
	rt_conn *c = p->data;
	req_reset(c);
	c->head_answered = 0;
	if (!c->hdr) {   /* allocated per request: an idle connection holds none */
		c->hdr = malloc(c->srv->cfg.max_header_bytes + 1);
		if (!c->hdr) {
			c->err_status = 503;
			c->err_msg = "out of memory";
			return -1;
		}
	}
	c->req.start_ns = rt_clock_mono_ns();
	c->url_off = 0;
	if (c->state == CONN_IDLE) {
		c->state = CONN_READING;
		conn_arm_timer(c);
	}
	return 0;
}

static int cb_url(llhttp_t *p, const char *at, size_t len)
{
	return hdr_append(p->data, at, len);
}

static int cb_url_complete(llhttp_t *p)
{
	rt_conn *c = p->data;
	if (hdr_terminate(c))
		return -1;
	c->cur_name = c->hdr_len;
	return 0;
}

static int cb_header_field(llhttp_t *p, const char *at, size_t len)
{
	return hdr_append(p->data, at, len);
}

static int cb_header_field_complete(llhttp_t *p)
{
	rt_conn *c = p->data;
	if (hdr_terminate(c))
		return -1;
	c->cur_value = c->hdr_len;
	return 0;
}

static int cb_header_value(llhttp_t *p, const char *at, size_t len)
{
	rt_conn *c = p->data;
	/* a value span that starts right after a line break continues the value on the next
	 * line (obs-fold), which RFC 9112 5.2 lets a server reject; llhttp accepts it */
	char before = at > c->exec_start ? at[-1] : c->prev_byte;
	if (before == '\n') {
		c->err_status = 400;
		c->err_msg = "malformed request: obsolete line folding in a header value";
		return -1;
	}
	return hdr_append(c, at, len);
}

static int cb_header_value_complete(llhttp_t *p)
{
	rt_conn *c = p->data;
	/* trim trailing blanks */
	while (c->hdr_len > c->cur_value &&
	       (c->hdr[c->hdr_len - 1] == ' ' || c->hdr[c->hdr_len - 1] == '\t'))
		c->hdr_len--;
	if (hdr_terminate(c))
		return -1;
	rt_req *r = &c->req;
	if (r->nheaders >= RT_HTTP_MAX_HEADERS) {
		c->err_status = 431;
		return -1;
	}
	/* store offsets now; turned into pointers at headers_complete (hdr never moves) */
	r->headers[r->nheaders].name = c->hdr + c->cur_name;
	r->headers[r->nheaders].value = c->hdr + c->cur_value;
	r->nheaders++;
	c->cur_name = c->hdr_len;
	return 0;
}

/* every transfer coding named must be chunked, once (RFC 9112 6.1: an unknown coding is 501) */
static int check_transfer_coding(rt_conn *c, const rt_req *r)
{
	int nchunked = 0;
	for (int i = 0; i < r->nheaders; i++) {
		if (strcasecmp(r->headers[i].name, "Transfer-Encoding") != 0)
			continue;
		const char *v = r->headers[i].value;
		while (*v) {
			size_t n = strcspn(v, ",");
			const char *e = v + n;
			while (v < e && (*v == ' ' || *v == '\t'))
				v++;
			size_t tl = (size_t)(e - v);
			while (tl && (v[tl - 1] == ' ' || v[tl - 1] == '\t'))
				tl--;
			if (tl == 7 && strncasecmp(v, "chunked", 7) == 0) {
				nchunked++;
			} else if (tl) {
				c->err_status = 501;
				c->err_msg = "transfer coding not implemented (only chunked is)";
				return -1;
			}
			v = *e ? e + 1 : e;
		}
	}
	if (nchunked > 1) {
		c->err_status = 400;
		c->err_msg = "malformed request: chunked applied more than once";
		return -1;
	}
	return 0;
}

static const char *const default_probe_paths[] = {"/healthz", "/readyz", "/v2/health/live",
						   "/v2/health/ready", NULL};

static int is_probe_path(const rt_http *h, const char *path)
{
	const char *const *pp = h->cfg.probe_paths ? h->cfg.probe_paths : default_probe_paths;
	for (; *pp; pp++)
		if (strcmp(*pp, path) == 0)
			return 1;
	return 0;
}

static int cb_headers_complete(llhttp_t *p)
{
	rt_conn *c = p->data;
	rt_http *h = c->srv;
	rt_req *r = &c->req;
	r->method = llhttp_method_name(p->method);
	r->target = c->hdr + c->url_off;
	if (p->http_major != 1 || p->http_minor > 1) {
		c->err_status = 505;
		c->err_msg = "HTTP version not supported (HTTP/1.0 and HTTP/1.1 are)";
		return -1;
	}
	/* split path and query in a copy stored in the header buffer */
	size_t tl = strlen(r->target);
	if (c->hdr_len + tl + 2 > h->cfg.max_header_bytes) {
		c->err_status = 431;
		return -1;
	}
	char *path = c->hdr + c->hdr_len;
	memcpy(path, r->target, tl + 1);
	c->hdr_len += tl + 1;
	char *q = strchr(path, '?');
	if (q) {
		*q = 0;
		r->query = q + 1;
	} else {
		r->query = "";
	}
	r->path = path;
	const char *rid = rt_req_header(r, "X-Request-Id");
	if (rid && sane_request_id(rid))
		snprintf(r->request_id, sizeof r->request_id, "%s", rid);
	else
		snprintf(r->request_id, sizeof r->request_id, "%s-%llx", h->id_prefix,
			 (unsigned long long)++h->next_id);
	const char *tp = rt_req_header(r, "traceparent");
	if (tp && valid_traceparent(tp))
		snprintf(r->traceparent, sizeof r->traceparent, "%s", tp);
	if ((p->flags & F_TRANSFER_ENCODING) && check_transfer_coding(c, r) < 0)
		return -1;
	c->over_body = (p->flags & F_CONTENT_LENGTH) && p->content_length > h->cfg.max_body_bytes;
	if (c->over_body && !h->head) {
		c->err_status = 413;
		return -1;
	}
	const char *expect = rt_req_header(r, "Expect");
	if (expect && strcasecmp(expect, "100-continue") != 0) {
		c->err_status = 417;
		return -1;
	}
	if (c->klass == CONN_PROBE) {
		if (!is_probe_path(h, r->path)) {
			c->err_status = 503;
			c->err_msg = "too many connections (only health probes are served)";
			return -1;
		}
		c->close_after = 1;   /* one probe, then the reserve is free again */
	}
	r->keep_alive = llhttp_should_keep_alive(p);
	c->body_announced = (p->flags & F_CONTENT_LENGTH) ? (size_t)p->content_length : 0;
	if (h->head) {
		/* route and authority before any body byte is kept or 100 Continue is sent */
		unsigned before = c->nfinished;
		c->in_head = 1;
		c->head_body = (p->flags & F_CHUNKED) ||
			       ((p->flags & F_CONTENT_LENGTH) && p->content_length > RT_HTTP_DISCARD_MAX);
		r->conn = c;
		h->head(r, h->ud);
		c->in_head = 0;
		if (c->nfinished != before) {
			c->head_answered = 1;
			/* a large or chunked body: the reply closed the connection, stop parsing; a
			 * small one is read and dropped (cb_body), keeping the connection, within the
			 * read timeout like any request */
			if (c->closing || c->head_body)
				return HPE_PAUSED;
			c->state = CONN_READING;
			conn_arm_timer(c);
			return 0;
		}
	}
	if (c->over_body && !c->sink) {
		c->err_status = 413;
		return -1;
	}
	if (c->sink) {
		conn_arm_timer(c);   /* the read timeout runs from the last body byte */
	} else if ((p->flags & F_CONTENT_LENGTH) && p->content_length > 0 &&
	    body_reserve(c, (size_t)p->content_length + 1) < 0) {
		c->err_status = 503;
		c->err_msg = "too many request bodies in flight; retry";
		return -1;
	}
	if (expect && p->http_major == 1 && p->http_minor >= 1) {
		static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
		conn_send(c, cont, sizeof cont - 1);
	}
	return 0;
}

static int cb_body(llhttp_t *p, const char *at, size_t len)
{
	rt_conn *c = p->data;
	rt_req *r = &c->req;
	size_t max = c->srv->cfg.max_body_bytes;
	if (c->head_answered || c->closing)
		return 0;   /* answered at the head: the body is not kept */
	if (c->sink) {
		if (c->sink_bytes + len > c->sink_max || c->sink_bytes + len < c->sink_bytes) {
			c->err_status = 413;
			c->err_msg = "request body too large for this route";
			return -1;
		}
		c->sink_bytes += len;
		conn_arm_timer(c);
		if (c->sink->data(c->sink_ud, at, len) == 1 && c->sink) {
			c->sink_paused = 1;
			uv_timer_stop(&c->timer);
			conn_flow(c);
		}
		return 0;
	}
	if (r->body_len + len > max) {
		c->err_status = 413;
		return -1;
	}
	if (r->body_len + len + 1 > c->body_cap) {
		size_t cap = c->body_cap ? c->body_cap : 4096;
		while (cap < r->body_len + len + 1)
			cap *= 2;
		if (cap > max + 1)
			cap = max + 1;
		if (c->body_announced && cap > c->body_announced + 1)
			cap = c->body_announced + 1;   /* what was reserved at the head */
		if (body_reserve(c, cap) < 0) {
			c->err_status = 503;
			c->err_msg = "too many request bodies in flight; retry";
			return -1;
		}
		char *nb = realloc(c->body, cap);
		if (!nb) {
			c->err_status = 503;
			return -1;
		}
		c->body = nb;
		c->body_cap = cap;
		r->body = nb;
	}
	memcpy(c->body + r->body_len, at, len);
	r->body_len += len;
	return 0;
}

static int cb_message_complete(llhttp_t *p)
{
	rt_conn *c = p->data;
	rt_req *r = &c->req;
	if (c->head_answered)
		return HPE_PAUSED;
	if (!c->body) {
		c->body = malloc(64);
		if (!c->body) {
			c->err_status = 503;
			return -1;
		}
		c->body_cap = 64;
	}
	r->body = c->body;
	r->body[r->body_len] = 0;
	r->keep_alive = llhttp_should_keep_alive(p);
	return HPE_PAUSED;
}

/* ---- connection lifecycle ---- */

static void on_resume(uv_idle_t *idle)
{
	rt_http *h = idle->data;
	rt_conn *list = h->ready;
	h->ready = NULL;
	while (list) {
		rt_conn *c = list;
		list = c->ready_next;
		c->ready_next = NULL;
		c->queued = 0;
		if (!c->closing)
			conn_process(c);
	}
	if (!h->ready)
		uv_idle_stop(&h->resume);
}

/* c has pipelined input left after its batch: served again on the next loop turn, after the
 * loop has polled every other connection */
static void conn_defer(rt_conn *c)
{
	rt_http *h = c->srv;
	if (c->queued)
		return;
	c->queued = 1;
	c->ready_next = h->ready;
	h->ready = c;
	uv_idle_start(&h->resume, on_resume);
}

static void on_handle_closed(uv_handle_t *hd)
{
	rt_conn *c = hd->data;
	if (--c->handles_open > 0)
		return;
	rt_http *h = c->srv;
	if (c->prev)
		c->prev->next = c->next;
	else
		h->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	h->nconns--;
	if (c->queued)
		for (rt_conn **pp = &h->ready; *pp; pp = &(*pp)->ready_next)
			if (*pp == c) {
				*pp = c->ready_next;
				break;
			}
	h->body_inflight -= c->body_reserved;
	sink_abort(c);
	free(c->in);
	free(c->hdr);
	free(c->body);
	free(c);
	if (h->draining && h->nconns == 0 && h->listener_closed && h->drained) {
		void (*done)(void *) = h->drained;
		h->drained = NULL;
		done(h->drained_ud);
	}
}

static void conn_close(rt_conn *c)
{
	if (c->closing)
		return;
	if (c->state == CONN_BUSY) {
		/* A handler still owns the request: close once it has replied. */
		c->close_after = 1;
		conn_flow(c);
		return;
	}
	c->closing = 1;
	if (c->klass == CONN_PROBE)   /* its descriptor is closed now: its place is free */
		c->srv->nprobe--;
	else
		c->srv->nnormal--;
	uv_timer_stop(&c->timer);
	uv_close((uv_handle_t *)&c->timer, on_handle_closed);
	uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

static void on_timer(uv_timer_t *t)
{
	rt_conn *c = t->data;
	if (c->state == CONN_READING)
		conn_fail(c, 408, "request not received in time");
	else if (c->state == CONN_IDLE)
		conn_close(c);   /* idle, never sent a byte, or its responses made no progress */
}

static void conn_arm_timer(rt_conn *c)
{
	if (c->closing)
		return;
	uint64_t ms = 0;
	if (c->state == CONN_IDLE)
		ms = c->got_bytes ? c->srv->cfg.idle_timeout_ms : c->srv->cfg.first_byte_timeout_ms;
	else if (c->state == CONN_READING && !c->sink_paused)
		ms = c->srv->cfg.read_timeout_ms;
	if (c->klass == CONN_PROBE && (ms == 0 || ms > RT_HTTP_PROBE_MS))
		ms = c->state == CONN_BUSY ? 0 : RT_HTTP_PROBE_MS;   /* probes send at once */
	if (ms)
		uv_timer_start(&c->timer, on_timer, ms, 0);
	else
		uv_timer_stop(&c->timer);
}

static void on_alloc(uv_handle_t *hd, size_t suggested, uv_buf_t *buf)
{
	rt_conn *c = hd->data;
	(void)suggested;
	if (c->in_off > 0 && c->in_off == c->in_len) {
		c->in_off = c->in_len = 0;
	}
	if (c->in_cap - c->in_len < 16384) {
		if (c->in_off > 0) {
			memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
			c->in_len -= c->in_off;
			c->in_off = 0;
		}
		if (c->in_cap - c->in_len < 16384) {
			size_t cap = c->in_cap ? c->in_cap * 2 : 65536;
			char *n = realloc(c->in, cap);
			if (!n) {
				*buf = uv_buf_init(NULL, 0);
				return;
			}
			c->in = n;
			c->in_cap = cap;
		}
	}
	*buf = uv_buf_init(c->in + c->in_len, (unsigned)(c->in_cap - c->in_len));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* reads from the peer unless the connection is closing, has more than RT_HTTP_IN_HIGH bytes
 * of unparsed input, or is write-blocked (a client that does not read its responses) */
static void conn_flow(rt_conn *c)
{
	if (c->closing)
		return;
	int stop = (c->close_after && c->state == CONN_BUSY) || c->peer_gone || c->write_blocked ||
		   c->sink_paused ||
		   c->in_len - c->in_off > RT_HTTP_IN_HIGH;
	if (stop && !c->reading_paused) {
		uv_read_stop((uv_stream_t *)&c->tcp);
		c->reading_paused = 1;
	} else if (!stop && c->reading_paused) {
		c->reading_paused = 0;
		if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0)
			conn_close(c);
	}
}

static int parse_error_status(rt_conn *c, llhttp_errno_t err)
{
	if (c->err_status)
		return c->err_status;
	(void)err;
	return 400;
}

/* Feeds buffered input to the parser and dispatches complete requests, one at a time, in a
 * loop: a request answered synchronously (by its handler or the head hook) lets the loop go on
 * with the next; one answered later restarts it from req_finish. Stops while the connection's
 * unsent responses exceed max_write_queue (on_write restarts it). */
static void conn_process(rt_conn *c)
{
	rt_http *h = c->srv;
	if (c->in_process)
		return;
	c->in_process = 1;
	int served = 0;
	while (!c->closing && c->state != CONN_BUSY && c->in_off < c->in_len) {
		if (++served > RT_HTTP_BATCH) {   /* fairness: other connections first */
			conn_defer(c);
			break;
		}
		if (write_queue(c) > h->cfg.max_write_queue) {
			c->write_blocked = 1;
			break;
		}
		if (llhttp_get_errno(&c->parser) == HPE_PAUSED)
			llhttp_resume(&c->parser);
		const char *start = c->in + c->in_off;
		size_t len = c->in_len - c->in_off;
		c->exec_start = start;
		llhttp_errno_t err = llhttp_execute(&c->parser, start, len);
		if (err == HPE_OK) {
			c->prev_byte = start[len - 1];
			c->in_off = c->in_len;
			break;
		}
		if (err == HPE_PAUSED) {
			const char *pos = llhttp_get_error_pos(&c->parser);
			if (pos > start)
				c->prev_byte = pos[-1];
			c->in_off = (size_t)(pos - c->in);
			if (c->closing)
				break;
			if (c->head_answered) {   /* answered at the head, nothing to dispatch */
				c->head_answered = 0;
				c->state = CONN_IDLE;
				continue;
			}
			c->state = CONN_BUSY;
			uv_timer_stop(&c->timer);
			c->req.conn = c;
			if (c->sink) {   /* the handler owns the sink's state from here */
				c->req.sink_ud = c->sink_ud;
				c->sink = NULL;
				c->sink_ud = NULL;
				c->sink_paused = 0;
			}
			h->dispatch(&c->req, h->ud);
			continue;   /* answered already: req_finish made the connection IDLE */
		}
		char msg[160];
		int st = parse_error_status(c, err);
		if (c->err_msg)
			snprintf(msg, sizeof msg, "%s", c->err_msg);
		else if (st == 431)
			snprintf(msg, sizeof msg, "request header fields too large (limit %zu bytes)",
				 h->cfg.max_header_bytes);
		else if (st == 413)
			snprintf(msg, sizeof msg, "request body too large (limit %zu bytes)",
				 h->cfg.max_body_bytes);
		else if (st == 417)
			snprintf(msg, sizeof msg, "unsupported Expect header");
		else
			snprintf(msg, sizeof msg, "malformed request: %s", llhttp_get_error_reason(&c->parser));
		c->in_off = c->in_len;
		conn_fail(c, st, msg);
		break;
	}
	c->in_process = 0;
	if (c->closing)
		return;
	if (c->in_off == c->in_len) {
		c->in_off = c->in_len = 0;
		if (c->state == CONN_IDLE) {   /* nothing of a next request: hold no buffers */
			free(c->in);
			c->in = NULL;
			c->in_cap = 0;
			free(c->hdr);
			c->hdr = NULL;
		}
	}
	conn_flow(c);
	if (h->draining && c->state == CONN_IDLE && c->in_off == c->in_len) {
		conn_close(c);
		return;
	}
	if (c->state == CONN_IDLE)
		conn_arm_timer(c);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	rt_conn *c = s->data;
	(void)buf;
	if (nread < 0) {
		if (c->state == CONN_BUSY) {
			/* the handler still owns the request: close after its reply; its on-gone
			 * hook (rt_req_on_gone) learns the client went away */
			c->close_after = 1;
			c->peer_gone = 1;
			conn_flow(c);
			void (*fn)(void *) = c->req.gone_fn;
			c->req.gone_fn = NULL;
			if (fn)
				fn(c->req.gone_ud);   /* may reply (c stays valid: its close is async) */
			return;
		}
		conn_close(c);
		return;
	}
	if (nread == 0)
		return;
	c->in_len += (size_t)nread;
	c->got_bytes = 1;
	if (c->state != CONN_BUSY)
		conn_process(c);
	else
		conn_flow(c);
}

/* the peer's address into c->peer (text) and c->addr (family + bytes); 1 when it is a
 * loopback address, 0 when not, -1 when unknown */
static int conn_peer_addr(rt_conn *c)
{
	struct sockaddr_storage ss;
	int len = sizeof ss;
	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) < 0)
		return -1;
	if (ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
		uv_ip6_name(a, c->peer, sizeof c->peer);
		c->addr[0] = 6;
		memcpy(c->addr + 1, &a->sin6_addr, 16);
		const unsigned char *b = c->addr + 1;
		static const unsigned char v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
		if (IN6_IS_ADDR_LOOPBACK(&a->sin6_addr))
			return 1;
		return memcmp(b, v4mapped, 12) == 0 && b[12] == 127;
	}
	const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
	uv_ip4_name(a, c->peer, sizeof c->peer);
	c->addr[0] = 4;
	memcpy(c->addr + 1, &a->sin_addr, 4);
	return c->addr[1] == 127;
}

/* normal connections already open from c's address */
static int conns_from(const rt_http *h, const rt_conn *c)
{
	int n = 0;
	size_t alen = c->addr[0] == 6 ? 17 : 5;
	for (const rt_conn *o = h->conns; o; o = o->next)
		if (o != c && o->klass == CONN_NORMAL && !o->closing && memcmp(o->addr, c->addr, alen) == 0)
			n++;
	return n;
}

/* the connection of class k (not except) that is cheapest to close for a new one: the oldest
 * that never sent a byte, else the oldest idle keep-alive one; it holds no request, no unparsed
 * input and no unsent answer. In the probe reserve also the oldest still sending its request
 * (a probe sends it at once; one that trickles is an attacker's). NULL when every one is busy. */
static rt_conn *idle_victim(rt_http *h, enum conn_class k, const rt_conn *except)
{
	rt_conn *silent = NULL, *kept = NULL, *slow = NULL;
	for (rt_conn *o = h->conns; o; o = o->next) {   /* newest first */
		if (o == except || o->klass != k || o->closing)
			continue;
		if (k == CONN_PROBE && o->state == CONN_READING)
			slow = o;
		if (o->state != CONN_IDLE || o->in_off != o->in_len || o->write_blocked ||
		    write_queue(o) > 0)
			continue;
		if (o->got_bytes)
			kept = o;
		else
			silent = o;
	}
	return silent ? silent : kept ? kept : slow;
}

static void on_connection(uv_stream_t *server, int status)
{
	rt_http *h = server->data;
	if (status < 0)
		return;
	rt_conn *c = calloc(1, sizeof *c);
	if (!c)
		return;
	c->srv = h;
	uv_tcp_init(h->loop, &c->tcp);
	uv_timer_init(h->loop, &c->timer);
	c->tcp.data = c;
	c->timer.data = c;
	c->handles_open = 2;
	c->next = h->conns;
	if (h->conns)
		h->conns->prev = c;
	h->conns = c;
	h->nconns++;
	c->klass = CONN_NORMAL;
	h->nnormal++;
	c->req.conn = c;
	req_reset(c);
	c->reading_paused = 1;   /* conn_flow starts reading */
	if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
		conn_close(c);
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	llhttp_init(&c->parser, HTTP_REQUEST, &h->settings);
	c->parser.data = c;
	if (h->draining) {
		conn_fail(c, 503, "server is draining");
		return;
	}
	int loopback = conn_peer_addr(c);
	int cap = h->cfg.max_conns_per_addr;
	if (cap == 0 && loopback == 0)
		cap = h->cfg.max_connections / 4 > 0 ? h->cfg.max_connections / 4 : 1;
	/* full: an idle connection makes room (as nginx reuses keep-alive connections), so idle
	 * connections alone can never lock new clients out */
	rt_conn *victim;
	if (h->nnormal > h->cfg.max_connections && (victim = idle_victim(h, CONN_NORMAL, c)))
		conn_close(victim);
	int over = h->nnormal > h->cfg.max_connections ||
		   (cap > 0 && loopback >= 0 && conns_from(h, c) >= cap);
	if (over) {
		h->nnormal--;
		c->klass = CONN_PROBE;   /* counted in the reserve: probes only */
		h->nprobe++;
		if (h->nprobe > h->cfg.probe_reserve && (victim = idle_victim(h, CONN_PROBE, c)))
			conn_close(victim);
		if (h->nprobe > h->cfg.probe_reserve) {
			conn_fail(c, 503, "too many connections");
			return;
		}
	}
	conn_flow(c);
	conn_arm_timer(c);
}

int rt_http_open(uv_loop_t *loop, const rt_http_config *cfg, rt_handler_fn dispatch, void *ud,
		 rt_http **out)
{
	int rc;
	struct sockaddr_storage addr;
	rt_http *h = calloc(1, sizeof *h);
	if (!h)
		return -ENOMEM;
	h->loop = loop;
	h->cfg = *cfg;
	if (h->cfg.max_header_bytes < 256)
		h->cfg.max_header_bytes = 256;
	h->dispatch = dispatch;
	h->ud = ud;
	if (!h->cfg.max_body_inflight) {
		h->cfg.max_body_inflight = h->cfg.max_body_bytes * 4;
		if (h->cfg.max_body_inflight < 256u * 1024 * 1024)
			h->cfg.max_body_inflight = 256u * 1024 * 1024;
	}
	if (!h->cfg.max_write_queue)
		h->cfg.max_write_queue = 1024 * 1024;
	if (h->cfg.probe_reserve < 0)
		h->cfg.probe_reserve = 0;
	/* every connection is a descriptor: fit them, and the probe reserve, in RLIMIT_NOFILE */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
		long avail = (long)rl.rlim_cur - RT_HTTP_FD_MARGIN - h->cfg.probe_reserve;
		if (avail < 16)
			avail = 16;
		if (h->cfg.max_connections > avail) {
			rt_logf(RT_LOG_WARN, "max connections %d lowered to %ld: the descriptor limit is %llu "
				"(%d kept for probes, %d for files)", h->cfg.max_connections, avail,
				(unsigned long long)rl.rlim_cur, h->cfg.probe_reserve, RT_HTTP_FD_MARGIN);
			h->cfg.max_connections = (int)avail;
		}
	}
	llhttp_settings_init(&h->settings);
	h->settings.on_message_begin = cb_message_begin;
	h->settings.on_url = cb_url;
	h->settings.on_url_complete = cb_url_complete;
	h->settings.on_header_field = cb_header_field;
	h->settings.on_header_field_complete = cb_header_field_complete;
	h->settings.on_header_value = cb_header_value;
	h->settings.on_header_value_complete = cb_header_value_complete;
	h->settings.on_headers_complete = cb_headers_complete;
	h->settings.on_body = cb_body;
	h->settings.on_message_complete = cb_message_complete;
	snprintf(h->id_prefix, sizeof h->id_prefix, "%08x",
		 (unsigned)(rt_clock_mono_ns() ^ ((uint64_t)getpid() << 16)));
	if (strchr(cfg->host, ':'))
		rc = uv_ip6_addr(cfg->host, cfg->port, (struct sockaddr_in6 *)&addr);
	else
		rc = uv_ip4_addr(cfg->host, cfg->port, (struct sockaddr_in *)&addr);
	if (rc < 0)
		goto fail;
	uv_tcp_init(loop, &h->listener);
	h->listener.data = h;
	uv_idle_init(loop, &h->resume);
	h->resume.data = h;
	rc = uv_tcp_bind(&h->listener, (struct sockaddr *)&addr, 0);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&h->listener, 1024, on_connection);
	if (rc < 0) {
		uv_close((uv_handle_t *)&h->listener, NULL);
		uv_close((uv_handle_t *)&h->resume, NULL);
		uv_run(loop, UV_RUN_NOWAIT);
		goto fail;
	}
	struct sockaddr_storage bound;
	int blen = sizeof bound;
	uv_tcp_getsockname(&h->listener, (struct sockaddr *)&bound, &blen);
	h->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
						   : ((struct sockaddr_in *)&bound)->sin_port);
	*out = h;
	return 0;
fail:
	free(h);
	return rc;
}

int rt_http_port(const rt_http *h)
{
	return h->port;
}

int rt_http_open_connections(const rt_http *h)
{
	return h->nconns;
}

int rt_req_body_sink(rt_req *req, const rt_body_sink *sink, void *ud, uint64_t max_bytes)
{
	rt_conn *c = req->conn;
	if (!c->in_head || c->sink || !sink || !sink->data || !sink->abort)
		return -EINVAL;
	if ((c->parser.flags & F_CONTENT_LENGTH) && c->parser.content_length > max_bytes)
		return -EFBIG;
	c->sink = sink;
	c->sink_ud = ud;
	c->sink_max = max_bytes;
	c->sink_bytes = 0;
	c->sink_paused = 0;
	return 0;
}

void rt_req_body_resume(rt_req *req)
{
	rt_conn *c = req->conn;
	if (!c->sink_paused || c->closing)
		return;
	c->sink_paused = 0;
	conn_arm_timer(c);
	conn_flow(c);
}

void rt_req_body_fail(rt_req *req, int status, const char *msg)
{
	conn_fail(req->conn, status, msg);
}

void rt_http_set_head(rt_http *h, rt_handler_fn head)
{
	h->head = head;
}

void rt_http_set_observer(rt_http *h, rt_http_observer_fn fn, void *ud)
{
	h->observer = fn;
	h->observer_ud = ud;
}

static void on_listener_closed(uv_handle_t *hd)
{
	rt_http *h = hd->data;
	h->listener_closed = 1;
	if (h->draining && h->nconns == 0 && h->drained) {
		void (*done)(void *) = h->drained;
		h->drained = NULL;
		done(h->drained_ud);
	}
}

void rt_http_drain(rt_http *h, void (*done)(void *ud), void *ud)
{
	if (h->draining)
		return;
	h->draining = 1;
	h->drained = done;
	h->drained_ud = ud;
	uv_close((uv_handle_t *)&h->listener, on_listener_closed);
	for (rt_conn *c = h->conns, *n; c; c = n) {
		n = c->next;
		if (c->state == CONN_IDLE && c->in_off == c->in_len)
			conn_close(c);
		else
			c->close_after = 1;
	}
}

void rt_http_close_all(rt_http *h)
{
	for (rt_conn *c = h->conns, *n; c; c = n) {
		n = c->next;
		conn_close(c);
	}
	if (!h->draining) {
		h->draining = 1;
		uv_close((uv_handle_t *)&h->listener, on_listener_closed);
	}
}

void rt_http_free(rt_http *h)
{
	free(h);
}

void rt_req_on_gone(rt_req *req, void (*fn)(void *ud), void *ud)
{
	req->gone_fn = fn;
	req->gone_ud = ud;
}

int rt_req_gone(const rt_req *req)
{
	const rt_conn *c = req->conn;
	return c && (c->peer_gone || c->write_failed);
}

int rt_req_peer(const rt_req *req, char *buf, size_t cap)
{
	struct sockaddr_storage ss;
	int len = sizeof ss;
	if (cap)
		buf[0] = 0;
	if (!req->conn)
		return -ENOTCONN;
	rt_conn *c = req->conn;
	if (!c->peer[0]) {   /* once per connection: no getpeername(2) per request */
		if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) < 0)
			return -ENOTCONN;
		int rc = ss.ss_family == AF_INET6 ? uv_ip6_name((struct sockaddr_in6 *)&ss, c->peer, sizeof c->peer)
						  : uv_ip4_name((struct sockaddr_in *)&ss, c->peer, sizeof c->peer);
		if (rc < 0) {
			c->peer[0] = 0;
			return -EINVAL;
		}
	}
	snprintf(buf, cap, "%s", c->peer);
	return 0;
}

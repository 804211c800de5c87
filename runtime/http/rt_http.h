/* rt_http.h — HTTP/1.1 server on libuv + llhttp.
 * Keep-alive and pipelining (responses in request order, served iteratively: any depth of
 * pipeline), Content-Length and chunked bodies, Expect: 100-continue, strict parsing (RFC 9112:
 * whitespace before a header colon, obs-fold -> 400; a transfer coding other than chunked ->
 * 501; a version other than HTTP/1.x -> 505), limits (header bytes -> 431, body bytes -> 413,
 * bodies in flight across all connections -> 503, connections, connections per address),
 * slow-client and idle timeouts (408 or close), a short timeout for connections that never
 * send a byte, write backpressure (a connection whose unsent responses exceed
 * max_write_queue is neither read nor dispatched until they drain), a full server closing its
 * oldest idle connection to make room, a reserve of connections above max_connections that
 * serves only the probe paths, malformed requests -> 400 and close, graceful drain.
 * Everything here runs on the loop thread. A handler receives an rt_req and must eventually
 * call exactly one rt_req_reply* function (on the loop thread); it may do so after returning,
 * which keeps the connection's later pipelined requests waiting, in order. */
#ifndef THAW_RT_HTTP_H
#define THAW_RT_HTTP_H
#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include "runtime/base/rt_clock.h"

typedef struct rt_http rt_http;
typedef struct rt_req rt_req;
typedef struct rt_conn rt_conn;

/* rt_handler_fn serves one request; see the file comment for the reply rule. */
typedef void (*rt_handler_fn)(rt_req *req, void *ud);

#define RT_HTTP_MAX_HEADERS 64
#define RT_HTTP_MAX_PARAMS 4
#define RT_HTTP_MAX_EXTRA_HEADERS 8
#define RT_HTTP_PARAM_BYTES 1024   /* route parameter values of one request, NULs included */

typedef struct rt_http_header {
	const char *name;   /* as sent by the client */
	const char *value;  /* leading and trailing blanks removed */
} rt_http_header;

struct rt_req {
	rt_conn *conn;                 /* internal */
	const char *method;            /* "GET", "POST", ... */
	const char *target;            /* request target as sent (path + query) */
	const char *path;              /* path part of target (not decoded) */
	const char *query;             /* after '?', or "" */
	rt_http_header headers[RT_HTTP_MAX_HEADERS];
	int nheaders;
	char *body;                    /* NUL-terminated; body_len bytes (owned by the connection) */
	size_t body_len;
	const char *route;             /* route pattern that matched, or "unmatched" */
	const char *param_names[RT_HTTP_MAX_PARAMS];
	const char *param_values[RT_HTTP_MAX_PARAMS];
	int nparams;
	char param_buf[RT_HTTP_PARAM_BYTES];  /* the values above point here (the router fills it):
	                                        * they stay the request's own until it is answered */
	rt_handler_fn handler;         /* set by the head hook (the matched route's handler) for */
	void *handler_ud;              /*  the dispatcher; NULL when none matched */
	char request_id[80];           /* X-Request-Id honoured (if sane) or assigned */
	char traceparent[64];          /* valid W3C traceparent passed through, or "" */
	uint64_t start_ns;             /* when the request line's first byte arrived */
	int status;                    /* set by rt_req_reply */
	const char *resp_body;         /* set by rt_req_reply: its body, valid only during the */
	size_t resp_body_len;          /*  observer call (audit payloads) */
	char auth_key_id[16];          /* API key id that authenticated it, or "" (rt_access.c) */
	char auth_scopes[512];         /* that key's scopes where the function is named in the
	                                * body, for the handler's check (rt_access.c), or "" */
	int keep_alive;                /* internal */
	void (*gone_fn)(void *ud);     /* internal: rt_req_on_gone */
	void *gone_ud;
	void *sink_ud;                 /* rt_req_body_sink's ud, for the handler at the end of a
	                                * streamed body; NULL otherwise */
	char extra_headers[1024];       /* internal: added by rt_req_add_header */
	size_t extra_len;
};

typedef struct rt_http_config {
	const char *host;              /* listen address, e.g. "0.0.0.0" or "127.0.0.1" */
	int port;
	size_t max_header_bytes;       /* request line + headers; over it: 431 */
	size_t max_body_bytes;         /* over it: 413 */
	size_t max_body_inflight;      /* request body bytes buffered across all connections; a body
	                                * that would pass it: 503 + Retry-After and close (0: four
	                                * times max_body_bytes, at least 256 MiB) */
	int max_connections;           /* at it, a new connection closes the oldest idle one (never
	                                * sent a byte first, else idle keep-alive); none idle: the
	                                * probe reserve, past that 503 and close; clamped to the
	                                * descriptor limit at open */
	int probe_reserve;             /* connections above max_connections (or over an address's
	                                * cap) that serve only probe_paths, one request each; others
	                                * get 503 and close */
	int max_conns_per_addr;        /* 0: a quarter of max_connections for non-loopback peers
	                                * (a Knative pod's only peer is its queue-proxy on
	                                * loopback); > 0: that cap for every peer; < 0: no cap */
	const char *const *probe_paths;/* NULL-terminated; NULL: the defaults (/healthz, /readyz,
	                                * /v2/health/live, /v2/health/ready) */
	size_t max_write_queue;        /* unsent response bytes of one connection past which it is
	                                * not read or dispatched (0: 1 MiB) */
	uint64_t read_timeout_ms;      /* a started request must arrive whole within this: 408 */
	uint64_t idle_timeout_ms;      /* keep-alive connection with nothing pending, or whose
	                                * unsent responses made no progress: closed */
	uint64_t first_byte_timeout_ms;/* a new connection that sent nothing within this: closed */
	int access_log;                /* 1: one JSON line per request on stderr */
} rt_http_config;

/* rt_http_config_defaults fills sane production defaults (port 8080, 16 KiB headers, 64 MiB
 * bodies, 256 MiB of bodies in flight, 4096 connections + 32 for probes, per-address cap
 * automatic, 1 MiB write queue, 30 s read, 60 s idle, 10 s to the first byte, access log on). */
void rt_http_config_defaults(rt_http_config *cfg);

/* rt_http_open binds and listens on loop. dispatch is called for every complete request that
 * the head hook (rt_http_set_head) did not answer. max_connections is clamped so that it and
 * the probe reserve fit the process's descriptor limit (RLIMIT_NOFILE less a margin; logged).
 * Returns 0 or a negative errno (e.g. -EADDRINUSE); *out is owned by the caller and released
 * by rt_http_free. */
int rt_http_open(uv_loop_t *loop, const rt_http_config *cfg, rt_handler_fn dispatch, void *ud,
		 rt_http **out);

/* rt_http_set_head installs head(req, ud) (ud as given to rt_http_open), called on the loop
 * thread once a request's line and headers are in, before any body byte is kept and before
 * `100 Continue` is sent (req->body is NULL, body_len 0). It runs for a Content-Length over
 * max_body_bytes too (the route may stream it, rt_req_body_sink); unless it installs a sink
 * such a request is answered 413 after it, without reading the body. The head hook routes the request and
 * checks its authority; it may answer at once with rt_req_reply* (401, 403, 404, 429, ...):
 * then the body is never buffered (no `100 Continue` is sent): an announced body of up to
 * 64 KiB is read and dropped (within the read timeout), a larger or chunked one is not read
 * and the connection is closed after the answer. When it returns without answering, the
 * body is read and dispatch runs at the end of the message. Replying from the hook is safe:
 * the answer is written at once and the connection's next request is parsed after it. */
void rt_http_set_head(rt_http *h, rt_handler_fn head);

/* Streamed request bodies (uploads larger than max_body_bytes). Only from the head hook,
 * rt_req_body_sink sends req's body to sink->data(ud, bytes, len) as it arrives instead of
 * into a buffer: max_bytes replaces max_body_bytes as its limit (a Content-Length over it:
 * -EFBIG and nothing installed, the caller answers 413; a chunked body growing past it: 413
 * and close), it takes no share of max_body_inflight, and the read timeout runs from the last
 * body byte received rather than from the request's start (a steady multi-GiB upload is not
 * cut off; a stalled one is, 408). data must take every byte it is given (copy them) and
 * returns 0 to go on, or 1 to stop reading from the client until rt_req_body_resume (its
 * buffer is full: backpressure; the read timeout does not run meanwhile). At the end of the
 * message the request is dispatched as usual, body_len 0, with req->sink_ud = ud: from then
 * the handler owns ud. If the message never completes (client gone, timeout, malformed,
 * rt_req_body_fail), sink->abort(ud) is called once on the loop thread instead, and the
 * request is not dispatched. Returns 0, -EFBIG, -EINVAL outside the head hook. */
typedef struct rt_body_sink {
	int (*data)(void *ud, const char *bytes, size_t len);
	void (*abort)(void *ud);
} rt_body_sink;
int rt_req_body_sink(rt_req *req, const rt_body_sink *sink, void *ud, uint64_t max_bytes);

/* rt_req_body_resume reads the client again after sink->data returned 1. Loop thread. */
void rt_req_body_resume(rt_req *req);

/* rt_req_body_fail ends a request whose body is still streaming into a sink: answers status
 * with {"error": msg}, closes the connection after it, and calls sink->abort(ud). */
void rt_req_body_fail(rt_req *req, int status, const char *msg);

/* rt_http_port returns the bound port (useful with port 0). */
int rt_http_port(const rt_http *h);

/* rt_http_drain stops accepting, closes idle connections, lets in-flight requests finish
 * (their responses carry Connection: close) and calls done(ud) once no connection is left. */
void rt_http_drain(rt_http *h, void (*done)(void *ud), void *ud);

/* rt_http_close_all closes every connection at once (drain deadline passed). */
void rt_http_close_all(rt_http *h);

/* rt_http_free releases the server after the loop has closed its handles (after drain/close_all
 * and uv_run returned). */
void rt_http_free(rt_http *h);

/* rt_http_open_connections reports the number of open client connections. */
int rt_http_open_connections(const rt_http *h);

/* rt_req_header returns the value of the first header named name (case-insensitive) or NULL. */
const char *rt_req_header(const rt_req *req, const char *name);

/* rt_req_peer writes the connection's peer IP address ("127.0.0.1", "::1") into buf (cap
 * bytes; 46 fit any address). Returns 0, or a negative errno with buf "" (connection gone). */
int rt_req_peer(const rt_req *req, char *buf, size_t cap);

/* rt_req_gone: 1 when the client closed or reset its connection (or a write to it failed)
 * while this request is handled — work not yet started for it can be skipped (the reply must
 * still be made; it goes nowhere); 0 otherwise. Loop thread only. Work under way learns it
 * through rt_req_on_gone. */
int rt_req_gone(const rt_req *req);

/* rt_req_on_gone registers fn(ud), called once on the loop thread if the client closes or
 * resets its connection before this request is answered (so a long call can be cancelled);
 * never after rt_req_reply / rt_req_stream_end has begun. fn may reply. NULL unregisters. */
void rt_req_on_gone(rt_req *req, void (*fn)(void *ud), void *ud);

/* rt_req_param returns the route parameter named name, or NULL. */
const char *rt_req_param(const rt_req *req, const char *name);

/* rt_req_add_header adds a response header (before rt_req_reply). Returns -ENOSPC when full. */
int rt_req_add_header(rt_req *req, const char *name, const char *value);

/* rt_req_reply sends the response (body copied) and finishes the request. */
void rt_req_reply(rt_req *req, int status, const char *content_type, const char *body, size_t len);

/* rt_req_reply_take is rt_req_reply for a malloc'd body, sent without a copy: it owns body
 * from the call on (freed once written, or when the write fails or the connection closes;
 * at once for HEAD). body may be NULL when len is 0. The observer sees body as resp_body. */
void rt_req_reply_take(rt_req *req, int status, const char *content_type, char *body, size_t len);

/* rt_req_reply_error sends {"error": "<formatted message>"} with status. */
void rt_req_reply_error(rt_req *req, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Streamed responses (server-sent events): rt_req_stream_begin sends the status line and
 * headers (those added with rt_req_add_header too) with Transfer-Encoding: chunked (HTTP/1.0:
 * no framing, the connection closes at the end); each rt_req_stream_write sends one chunk at
 * once; rt_req_stream_end sends the last chunk and finishes the request (in place of
 * rt_req_reply; it must be called even after a write failed). begin and write return 0, or
 * -EPIPE once the client is gone (stop producing; still call end), -ENOSPC (headers too long),
 * -ENOMEM. */
int rt_req_stream_begin(rt_req *req, int status, const char *content_type);
int rt_req_stream_write(rt_req *req, const char *data, size_t len);
void rt_req_stream_end(rt_req *req);

/* Relayed responses (runtime/http/rt_proxy.c passes a peer's answer on): rt_req_relay_begin
 * sends the status line, rt_http's own headers (Date, X-Request-Id, traceparent, those of
 * rt_req_add_header, Connection: close when the connection will not be kept), the framing, then
 * headers: hlen bytes of "Name: value\r\n" lines (no framing or hop-by-hop ones; a line whose
 * name rt_req_add_header already set is left out). length >= 0: Content-Length: length, and the
 * rt_req_stream_write calls that follow must add up to exactly length bytes (more: -EMSGSIZE;
 * fewer at rt_req_stream_end: the connection closes, the client sees the answer cut); -1: the
 * body is chunked as with rt_req_stream_begin (HTTP/1.0: no framing, close at the end). A HEAD
 * request, 204 and 304 carry no body (a write: -EINVAL). The request then goes on as a stream:
 * rt_req_stream_write, and rt_req_stream_end or rt_req_stream_abort. Returns 0, -EINVAL (status
 * outside 200..999, a header block that is not CRLF lines), -ENOMEM, -EPIPE (client gone:
 * still call end or abort). */
int rt_req_relay_begin(rt_req *req, int status, const char *headers, size_t hlen, int64_t length);

/* rt_req_stream_abort finishes a streamed or relayed response that cannot be completed: no last
 * chunk is sent and the connection closes, so the client sees a cut answer, never a whole one
 * (HTTP/1.0 close-framed streams cannot tell). Before any head went out it answers 502. */
void rt_req_stream_abort(rt_req *req);

/* rt_req_write_pending returns the bytes written for req's connection that the client has not
 * taken yet (0 once the connection is closing). */
size_t rt_req_write_pending(const rt_req *req);

/* rt_req_on_drain registers fn(ud), called once on the loop thread when a write to req's client
 * completes with at most low bytes left unsent, or fails (a producer that paused for
 * backpressure resumes, and learns a failure from its next write). NULL unregisters; cleared
 * when the request finishes. fn may write or finish the request. */
void rt_req_on_drain(rt_req *req, size_t low, void (*fn)(void *ud), void *ud);

/* rt_http_status_text returns the reason phrase for status ("OK", "Not Found", ...). */
const char *rt_http_status_text(int status);

/* Observer called after each response is written: used for metrics and the access log hook. */
typedef void (*rt_http_observer_fn)(const rt_req *req, size_t resp_bytes, double seconds, void *ud);
void rt_http_set_observer(rt_http *h, rt_http_observer_fn fn, void *ud);

#endif

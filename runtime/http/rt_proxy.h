/* rt_proxy.h — forwards a request that rt_http received to a peer node over HTTP/1.1 and
 * relays the peer's answer on the same rt_req, on the loop thread (libuv + llhttp).
 *
 * The forwarded request carries the client's method, target, end-to-end headers and the body
 * rt_http buffered (req->body), with Host rewritten, hop-by-hop headers dropped (Connection and
 * the headers it names, Keep-Alive, TE, Trailer, Transfer-Encoding, Upgrade, Proxy-*, Expect),
 * X-Request-Id set to req->request_id, X-Forwarded-For extended with the client's address,
 * X-Thaw-Timeout-Ms (the milliseconds left before the deadline) when there is one, and the
 * caller's own headers (e.g. X-Thaw-Forwarded from rt_proxy_sign; one named like the three
 * before replaces it); a client header of the same name as any of those is dropped. The peer's answer is relayed as it arrives (status,
 * end-to-end headers, body; a chunked or SSE answer chunk by chunk) through rt_req_relay_begin.
 *
 * Failures: before any byte of the answer reached the client (connect refused, reset or timed
 * out, the peer closing early, a malformed or oversize answer, 503 with fallback_on_503) the
 * request is left unanswered and done reports it, so the caller can still serve it itself.
 * Past the deadline before relaying began: 504 to the client. After relaying began: the
 * client's connection is cut (it cannot be told whole from truncated otherwise). A client that
 * goes away cancels the forward: the upstream connection is closed. A reused keep-alive
 * connection that the peer had closed is retried once on a new connection.
 *
 * Bounds: per peer at most max_idle_per_peer idle connections (max_idle in all), closed after
 * idle_timeout_ms; a response head of max_header_bytes; the peer is not read while more than
 * max_client_queue bytes wait to be written to the client (a slow client costs that much, plus
 * one read buffer of 64 KiB).
 *
 * Request bodies streamed into a sink (rt_req_body_sink) are not forwarded: only buffered ones. */
#ifndef THAW_RT_PROXY_H
#define THAW_RT_PROXY_H
#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include "runtime/http/rt_http.h"

typedef struct rt_proxy rt_proxy;

typedef struct rt_proxy_config {
	uint64_t connect_timeout_ms;   /* a new connection must be up within this (1000) */
	uint64_t idle_timeout_ms;      /* a pooled connection unused this long is closed (10000;
	                                * below the peer's own idle timeout) */
	int max_idle_per_peer;         /* idle keep-alive connections kept per peer (8) */
	int max_idle;                  /* across all peers (256) */
	size_t max_header_bytes;       /* bytes of a peer's answer headers kept for the relay, or
	                                * of one dropped line; more, or over 100 lines: the answer
	                                * is refused (-E2BIG) (16 KiB) */
	size_t max_client_queue;       /* unsent bytes to the client past which the peer is not
	                                * read until half of them drained (1 MiB) */
} rt_proxy_config;

/* rt_proxy_config_defaults fills the defaults named above. */
void rt_proxy_config_defaults(rt_proxy_config *cfg);

/* rt_proxy_new makes a forwarder on loop (the loop rt_http runs on). cfg is copied; zero fields
 * take the defaults. Returns 0 or -ENOMEM; *out is released with rt_proxy_free. */
int rt_proxy_new(uv_loop_t *loop, const rt_proxy_config *cfg, rt_proxy **out);

/* rt_proxy_free ends every forward in flight (done is called with -ESHUTDOWN and answered 1:
 * 503 with Retry-After: 1 when relaying had not begun, else the client's connection is cut:
 * a daemon going away serves nothing more) and closes every connection;
 * the memory goes once the loop has closed their handles (run it after, as after rt_http_drain).
 * Loop thread. */
void rt_proxy_free(rt_proxy *px);

typedef struct rt_proxy_opts {
	const rt_http_header *headers; /* added to the forwarded request (names: tokens, not Host,
	                                * framing or hop-by-hop ones; values: no control
	                                * characters), e.g. X-Thaw-Forwarded */
	int nheaders;
	uint64_t deadline_ms;          /* absolute, on the monotonic clock in milliseconds
	                                * (rt_clock_mono_ns() / 1000000); 0: none */
	int fallback_on_503;           /* 1: a 503 from the peer is not relayed but reported
	                                * (-EAGAIN, unanswered): the peer has no room */
} rt_proxy_opts;

/* How a forward ended, given to done. */
typedef struct rt_proxy_result {
	int err;          /* 0: the peer's answer was relayed whole; else a negative errno:
	                   * -ECONNREFUSED, -ECONNRESET, -ETIMEDOUT (connect timeout or deadline),
	                   * -EPROTO (malformed answer), -E2BIG (oversize head), -EAGAIN (503 with
	                   * fallback_on_503), -ECANCELED (client gone), -EPIPE (client write
	                   * failed), -ESHUTDOWN (rt_proxy_free), -ENOMEM, other connect errors */
	int answered;     /* 1: req has been answered (relayed, cut, 504, 499, 503) and must not be
	                   * touched again; 0: req is the caller's again, still to be answered */
	int status;       /* the status sent to the client (the peer's, 504, 499, 503), 0 when
	                   * none */
	int reused;       /* 1: it went over a pooled keep-alive connection */
	int retried;      /* 1: a pooled connection the peer had closed was replaced by a new one */
	const char *what; /* a short static reason for logs ("connect", "deadline", ...), "" on
	                   * success */
} rt_proxy_result;

/* done is called exactly once per started forward, on the loop thread, never from inside
 * rt_proxy_forward; res is valid during the call only. */
typedef void (*rt_proxy_done_fn)(void *ud, const rt_proxy_result *res);

/* rt_proxy_forward sends req (from an rt_http handler, not yet answered) to peer_url
 * ("http://host:port", host an IPv4 or [IPv6] literal or a name resolved off the loop, an
 * optional trailing "/"; no path), relays the answer and calls done. o may be NULL (no extra
 * headers, no deadline); it is read during the call only. From the call until done the proxy
 * owns the answer of req: it registers rt_req_on_gone and rt_req_on_drain, and clears both
 * before done (a caller that serves an unanswered req itself registers its own again). Returns 0 (done will follow), or a negative
 * errno with nothing started and req untouched: -EINVAL (malformed peer_url or extra header),
 * -ETIMEDOUT (deadline already past), -ESHUTDOWN (freed), -ENOMEM. */
int rt_proxy_forward(rt_proxy *px, rt_req *req, const char *peer_url, const rt_proxy_opts *o,
		     rt_proxy_done_fn done, void *ud);

/* rt_proxy_idle_count returns the idle pooled connections to peer_url (NULL: to every peer). */
int rt_proxy_idle_count(const rt_proxy *px, const char *peer_url);

/* rt_proxy_inflight returns the forwards started and not yet done. */
int rt_proxy_inflight(const rt_proxy *px);

/* Node-to-node authentication. The header X-Thaw-Forwarded: "<node-id>;<expires-ms>;<mac>"
 * names the forwarding node and when the permission lapses (wall clock, ms since the epoch);
 * mac is the lower-case hex HMAC-SHA-512-256 (libsodium) keyed with the cluster secret over
 * node id, expiry, method and target. It proves the request came from a node holding the
 * secret; it does not hide or bind the body (keep node-to-node traffic on a private network). */
#define RT_PROXY_FORWARDED_HEADER "X-Thaw-Forwarded"
#define RT_PROXY_NODE_ID_MAX 128   /* node id bytes, letters, digits, '.', '_', '-', ':' */
#define RT_PROXY_SIG_MAX 224       /* a signed header value fits this, NUL included */
#define RT_PROXY_SECRET_MIN 16     /* shortest cluster secret accepted, bytes */

/* rt_proxy_sign writes the header value for a request (method, target) forwarded by node_id,
 * valid until expires_ms, into out (cap bytes; RT_PROXY_SIG_MAX suffices). Returns 0, or
 * -EINVAL (secret shorter than RT_PROXY_SECRET_MIN, node id empty, too long or with other
 * characters, expiry negative, method or target NULL), -ENOSPC (cap too small). */
int rt_proxy_sign(const void *secret, size_t secret_len, const char *node_id, int64_t expires_ms,
		  const char *method, const char *target, char *out, size_t cap);

/* rt_proxy_verify checks a header value against method and target at wall time now_ms, in
 * constant time for the MAC. On success writes the forwarding node's id into node_out (cap
 * bytes, may be NULL) and returns 0; else -EINVAL (malformed, or secret too short), -ETIMEDOUT
 * (expired: now_ms past expires), -EACCES (MAC does not match: other secret, method, target,
 * node or expiry). */
int rt_proxy_verify(const void *secret, size_t secret_len, const char *header, const char *method,
		    const char *target, int64_t now_ms, char *node_out, size_t node_cap);

#endif

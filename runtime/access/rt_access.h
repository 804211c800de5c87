/* rt_access.h — the daemon's access gate and audit hook: between route match and
 * handler, rt_access_gate applies the per-address rate limit, the API key and its scopes
 * (unless --dev), and the per-key limit; after every response rt_access_observe writes the
 * audit line of invocations, admin actions and refused requests (with the request and
 * response bodies for functions whose manifest has "audit": {"payloads": true}). Invocation
 * lines are buffered and flushed by a timer; admin lines are written and fsync'd before the
 * observer returns. Loop thread only. */
#ifndef THAW_RT_ACCESS_H
#define THAW_RT_ACCESS_H
#include <stddef.h>
#include "functions/fn.h"
#include "runtime/rt_server.h"

/* rt_access_init opens the key store (on the registry's connection), the rate-limit table and
 * the audit log of srv (after the registry is open). 0 or a negative errno (message in err). */
int rt_access_init(rt_server *srv, char *err, size_t errlen);

/* rt_access_start starts the audit flush timer (every RT_AUDIT_FLUSH_MS, unreferenced) on
 * srv->loop; rt_server_run calls it. The handle is closed with the loop's other handles. */
void rt_access_start(rt_server *srv);

/* rt_access_free releases what rt_access_init made; safe on a partly initialized srv. */
void rt_access_free(rt_server *srv);

/* Why the gate refused a request. The gate adds the response headers the refusal needs
 * (Retry-After with 429 and 503, WWW-Authenticate with 401); the API layer renders the body in
 * its route's shape (rt_api_refuse). */
typedef struct rt_access_refusal {
	int status;                /* 401, 403, 429 or 503 */
	const char *code;          /* static: "invalid_api_key", "insufficient_scope",
	                            * "rate_limit_exceeded", "unavailable" */
	char msg[256];
} rt_access_refusal;

/* rt_access_gate checks a matched request, once, at the end of its headers: the per-address
 * rate limit, the API key and its scopes (unless --dev), the per-key limit, then for an
 * invocation its function's rate limit, for an admin change its audit intent line. 0: the
 * handler may run; 1: refused, *why says why (401, 403, 429, or 503 when the key store or the
 * audit log fails). On a route whose function is named in the body (RT_AUTH_INVOKE_BODY: the
 * OpenAI endpoints) the key needs some invoke scope here; its scopes are kept in the request
 * for rt_access_check_fn. */
int rt_access_gate(rt_server *srv, rt_req *req, rt_access_refusal *why);

/* rt_access_check_fn finishes the gate's decision on a RT_AUTH_INVOKE_BODY route once the
 * handler knows the function fn from the body: the invoke scope for fn among the scopes the
 * gate kept (unless --dev; the key is not looked up again) and fn's rate limit; it also names
 * fn in the request for the audit line. 0: go on; 1: refused, *why says why (403, 429). */
int rt_access_check_fn(rt_server *srv, rt_req *req, const char *fn, rt_access_refusal *why);

/* rt_access_kind_headers writes to out (cap entries) the headers of req that a function kind
 * may see (fn_call.headers): all of them, in order, less the caller's credentials for thaw
 * itself (Authorization, Proxy-Authorization), which are never handed to functions. The
 * entries point into req. Returns their number. */
size_t rt_access_kind_headers(const rt_req *req, fn_header *out, size_t cap);

/* rt_access_note_revision tells the gate about a deployed revision's manifest (at start and on
 * every deploy): once some revision has a rate limit or audited payloads, calls read their
 * function's manifest for them. */
void rt_access_note_revision(rt_server *srv, const rt_manifest *m);

/* rt_access_client writes the client address of req to buf: the socket's peer, or with
 * --trust-proxy the address the proxy reports (last Forwarded for=, else last
 * X-Forwarded-For entry). */
void rt_access_client(const rt_server *srv, const rt_req *req, char *buf, size_t cap);

/* rt_access_observe writes the audit line for a finished request when it is one to audit. */
void rt_access_observe(rt_server *srv, const rt_req *req, size_t resp_bytes, double secs);

#endif

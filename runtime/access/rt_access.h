/* rt_access.h — the daemon's access gate and audit hook (issue 7): between route match and
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

/* rt_access_gate checks a matched request. 0: the handler may run; 1: the gate has answered
 * (401, 403, 429 with Retry-After, or 503 when the key store fails). */
int rt_access_gate(rt_server *srv, rt_req *req);

/* rt_access_check_fn is the second half of the gate for routes whose function is named in
 * the body (RT_AUTH_INVOKE_BODY: the OpenAI endpoints), called by the handler once it knows
 * fn: the key's invoke scope for fn (unless --dev) and fn's rate limit. 0: go on; 1: it has
 * answered (403, 429 with Retry-After, 401 for a key revoked meanwhile, 503). */
int rt_access_check_fn(rt_server *srv, rt_req *req, const char *fn);

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

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
#include <stdint.h>
#include <uv.h>
#include "functions/fn.h"
#include "runtime/base/rt_rate.h"
#include "runtime/http/rt_http.h"
#include "runtime/store/rt_registry.h"

/* What `thaw serve` sets for the gate and the audit log. */
typedef struct rt_access_config {
	const char *data_dir;        /* DATA: the key store's secret and DATA/audit/ */
	int dev;                     /* 1: no API keys checked (local use only) */
	int trust_proxy;             /* client address from Forwarded / X-Forwarded-For */
	rt_rate limit_key, limit_ip; /* token buckets per API key and per client address */
	uint64_t audit_max_bytes;    /* rotate DATA/audit/audit.log past this (0: default) */
	int audit_days;              /* remove rotated audit files older than this (0: never) */
	uint64_t audit_max_total;    /* all audit files together at most this (0: default) */
	int no_audit;                /* 1: no audit log (another system audits; benchmarks) */
	const char *node_id;         /* this node, named in the admin lines a shared registry keeps
				      * (NULL: the host name) */
} rt_access_config;

/* The gate's state (the daemon holds one; loop thread only). */
typedef struct rt_access {
	rt_access_config cfg;
	uv_loop_t *loop;
	rt_registry *reg;            /* borrowed: keys, and the manifests of rate-limited calls */
	struct rt_auth *auth;        /* API keys */
	struct rt_limiter *limiter;  /* rate-limit buckets */
	struct rt_audit *audit;      /* audit log, NULL with no_audit */
	uv_timer_t audit_timer;      /* flushes buffered audit lines (rt_access_start) */
	int fn_rate_limits;          /* some revision has a "rate_limit": check it per call */
	int fn_audit_payloads;       /* some revision has "audit": {"payloads": true} */
	char node[RT_NODE_ID_MAX + 1];   /* cfg.node_id or the host name */
} rt_access;

/* rt_access_init sets a up over the open registry reg (borrowed) with cfg (copied; data_dir
 * must outlive a): the key store, the rate-limit table and the audit log. 0 or a negative
 * errno (message in err); rt_access_free cleans up either way. */
int rt_access_init(rt_access *a, uv_loop_t *loop, rt_registry *reg, const rt_access_config *cfg,
		   char *err, size_t errlen);

/* rt_access_start starts the audit flush timer (every RT_AUDIT_FLUSH_MS, unreferenced) on
 * a's loop; rt_server_run calls it. The handle is closed with the loop's other handles. */
void rt_access_start(rt_access *a);

/* rt_access_free releases what rt_access_init made; safe on a partly initialized a. */
void rt_access_free(rt_access *a);

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
int rt_access_gate(rt_access *a, rt_req *req, rt_access_refusal *why);

/* rt_access_check_fn finishes the gate's decision on a RT_AUTH_INVOKE_BODY route once the
 * handler knows the function fn from the body: the invoke scope for fn among the scopes the
 * gate kept (unless --dev; the key is not looked up again) and fn's rate limit; it also names
 * fn in the request for the audit line. 0: go on; 1: refused, *why says why (403, 429). */
int rt_access_check_fn(rt_access *a, rt_req *req, const char *fn, rt_access_refusal *why);

/* rt_access_kind_headers writes to out (cap entries) the headers of req that a function kind
 * may see (fn_call.headers): all of them, in order, less the caller's credentials for thaw
 * itself (Authorization, Proxy-Authorization), which are never handed to functions. The
 * entries point into req. Returns their number. */
size_t rt_access_kind_headers(const rt_req *req, fn_header *out, size_t cap);

/* rt_access_note_revision tells the gate about a deployed revision's manifest (at start and on
 * every deploy): once some revision has a rate limit or audited payloads, calls read their
 * function's manifest for them. */
void rt_access_note_revision(rt_access *a, const rt_manifest *m);

/* rt_access_client writes the client address of req to buf: the socket's peer, or with
 * --trust-proxy the address the proxy reports (last Forwarded for=, else last
 * X-Forwarded-For entry). */
void rt_access_client(const rt_access *a, const rt_req *req, char *buf, size_t cap);

/* rt_access_observe writes the audit line for a finished request when it is one to audit. */
void rt_access_observe(rt_access *a, const rt_req *req, size_t resp_bytes, double secs);

#endif

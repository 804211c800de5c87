/* rt_api.h — the API layer's context (rt_api: what the HTTP handlers read), helpers shared by
 * the handlers (rt_api_*.c; defined in rt_api.c) and the registration of each API part. */
#ifndef THAW_RT_API_H
#define THAW_RT_API_H
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include <uv.h>
#include "functions/fn.h"
#include "runtime/access/rt_access.h"
#include "runtime/base/rt_metrics.h"
#include "runtime/http/rt_http.h"
#include "runtime/http/rt_router.h"
#include "runtime/jobs/rt_jobs.h"
#include "runtime/sched/rt_call.h"
#include "runtime/sched/rt_cluster.h"
#include "runtime/sched/rt_sched.h"
#include "runtime/store/rt_registry.h"

/* rt_api is the context every handler receives as its `ud`: the parts it calls (owned by the
 * daemon's wiring, which fills this in and outlives the handlers), the configuration values
 * it reads, and the API layer's own state. Changed on the loop thread only (work offloaded to
 * the threadpool may read the configuration values). */
typedef struct rt_api {
	uv_loop_t *loop;
	rt_router *router;           /* where rt_api_register adds the routes */
	rt_registry *reg;
	rt_sched *sched;
	rt_jobs *jobs;
	rt_access *access;           /* the access gate (rt_access.h) */
	rt_metrics *metrics;         /* rendered by GET /metrics */
	rt_metric_family *m_connections;   /* thaw_http_open_connections, set from http */
	rt_http *http;               /* the listener: its open connections */
	const int *draining;         /* non-zero once the daemon drains: readiness answers 503 */
	const char *data_dir;        /* snapshots/ and data/ by name: the directory every node of a
				      * cluster shares (thaw serve --shared-dir; DATA by default) */
	const char *const *allowed_roots;   /* snapshot paths allowed outside data_dir */
	size_t n_allowed_roots;
	const char *const *plugin_roots;    /* where "plugin:/path.so" kinds may live */
	size_t n_plugin_roots;
	uint64_t max_upload_bytes;   /* largest PUT /v1/snapshots|data body (rt_api_upload.c) */
	size_t max_body_bytes;       /* largest request body (rt_http_config.max_body_bytes) */
	rt_cluster *cluster;         /* routing between the nodes of a shared registry */
	struct rt_proxy *proxy;      /* forwards calls to peers (runtime/http/rt_proxy.h) */
	const unsigned char *cluster_secret;  /* signs and checks forwarded calls */
	size_t cluster_secret_len;   /* 0: calls are not forwarded */
	int echo_deployed;           /* a function named "echo" is in the registry (else built in);
				      * kept by rt_api_note_function */
} rt_api;

/* rt_api_register adds the HTTP endpoints (health, readiness, metrics, functions, V2, OpenAI,
 * jobs, keys, uploads) to api->router, each with api as its `ud`. Returns 0 or a negative
 * errno. */
int rt_api_register(rt_api *api);

/* rt_api_reply_json sends body (reference stolen) as compact JSON with status (rt_json_dumps:
 * reals in their shortest round-trip form). */
void rt_api_reply_json(rt_req *req, int status, json_t *body);
/* rt_api_parse_body parses the request body as JSON, on the calling thread, within the
 * bounded-JSON budget (runtime/base/rt_json.h); on failure replies 400 (naming line and column) or
 * 413 (too costly a tree) and returns NULL. The caller owns the result. For bodies that may
 * be large, rt_api_parse_body_then keeps the loop free. */
json_t *rt_api_parse_body(rt_req *req);
/* Large work off the loop thread. Request bodies of at least RT_API_INLINE_BYTES (and every
 * compressed V2 body) are parsed, and answers of requests that large serialized, on libuv's
 * threadpool, at most RT_API_WORKERS jobs at a time (the pool also runs cold-start restores,
 * which must not wait behind parses); further jobs wait in order. Smaller ones run inline,
 * so their behaviour and timing are those of a plain handler. */
#define RT_API_INLINE_BYTES ((size_t)256 << 10)
#define RT_API_WORKERS 1

/* rt_api_offload runs work(arg) — on a threadpool thread when big is set, else at once on
 * the caller's (loop) thread — then done(arg, gone) on the loop thread. gone is 1 when the
 * client had already left when the job was due to start: work was skipped, and done must
 * still answer req (it stays valid until answered). work must not touch the loop, the
 * connection or req other than reading its body. When a job cannot be queued, it runs
 * inline. */
void rt_api_offload(rt_api *api, rt_req *req, int big, void (*work)(void *arg),
		    void (*done)(void *arg, int gone), void *arg);

/* rt_api_body_fn continues a handler once its JSON body is parsed (loop thread; body is a new
 * reference owned by the callee). */
typedef void (*rt_api_body_fn)(rt_req *req, json_t *body, void *ud);

/* rt_api_parse_body_then parses req's body as rt_api_parse_body does (within the bounded-JSON
 * budget of runtime/base/rt_json.h: 413 when its tree would cost more), off the loop thread when
 * it is large, then calls fn(req, body, ud) on the loop thread. On a parse error, or when the
 * client left meanwhile (499), it answers req itself and fn is not called. */
void rt_api_parse_body_then(rt_api *api, rt_req *req, rt_api_body_fn fn, void *ud);

/* rt_api_version parses a revision named in a route (Triton's /versions/{v}): digits only,
 * 1..RT_MANIFEST_REV_MAX, into *rev; 0 or -EINVAL. */
int rt_api_version(const char *s, uint32_t *rev);
/* rt_api_kind_known reports whether a function kind is registered (manifest validation). */
int rt_api_kind_known(const char *kind, void *ud);

/* rt_api_call_from_req fills the request's side of call c: c->headers, the headers of req a
 * kind may see (rt_access_kind_headers), written to hdrs (RT_HTTP_MAX_HEADERS entries that
 * point into req: c is submitted before req is answered), and the cancel hook (req's client
 * going away cancels the call: 499). The function, input and callbacks are the caller's. */
void rt_api_call_from_req(rt_call *c, rt_req *req, fn_header *hdrs);

/* rt_api_route decides where a call for function fn runs (rt_cluster_route) before the
 * handler does more with req. 0: here — the caller goes on (also for a call a peer forwarded
 * here, whose X-Thaw-Forwarded header checked out, and for an unknown function, answered
 * here). 1: req went to a peer, whose answer is relayed to req; then here(req, ud, 1) runs
 * once it is done, or here(req, ud, 0) when the peer failed before its answer began (the
 * call runs here after all; req unanswered). -1: req was answered (403: a forwarded header
 * that does not check out); ud is the caller's to release. Loop thread. */
typedef void (*rt_api_here_fn)(rt_req *req, void *ud, int answered);
int rt_api_route(rt_api *api, rt_req *req, const char *fn, rt_api_here_fn here, void *ud);

/* rt_api_result_headers adds the response headers a call's result asks for to req: Retry-After
 * when the scheduler refused it for now. Before the reply. */
void rt_api_result_headers(rt_req *req, const rt_call_result *r);

/* rt_api_registry_down answers a write that failed (rc < 0) while the shared registry cannot
 * reach its database: 503 {"error": "registry unavailable: postgresql: <reason>"} with
 * Retry-After: 1, and returns 1; 0 (nothing sent) when the registry is reachable and rc is not
 * -ENOTCONN. */
int rt_api_registry_down(rt_api *api, rt_req *req, int rc);

/* rt_api_note_function tells the API layer (and the access gate) that function name has a
 * revision with manifest m (deployed now, or found at start), or, with m NULL, that it was
 * deleted: a deployed "echo" replaces the built-in one, and the gate learns whether any
 * revision has a rate limit or audited payloads (rt_access_note_revision). Loop thread. */
void rt_api_note_function(rt_api *api, const char *name, const rt_manifest *m);

/* rt_api_refuse answers a request the access gate refused (rt_access_refusal: status, code,
 * message; the gate added its headers) in the error shape of the request's API: an OpenAI
 * error object on the OpenAI routes (rt_api_openai_refuse), {"error": message} elsewhere. */
void rt_api_refuse(rt_req *req, const rt_access_refusal *why);

/* The OpenAI-compatible API (rt_api_openai.c): rt_api_openai_route tells whether a route
 * pattern is one of its routes (answered with OpenAI error objects); rt_api_openai_refuse
 * renders a refusal as one: {"error": {"message", "type", "param": null, "code"}}. */
int rt_api_openai_route(const char *route);
void rt_api_openai_refuse(rt_req *req, const rt_access_refusal *why);

/* Route registration of each API part; 0 or a negative errno. */
int rt_api_fn_register(rt_api *api);
int rt_api_v2_register(rt_api *api);
int rt_api_jobs_register(rt_api *api);
int rt_api_keys_register(rt_api *api);   /* rt_api_keys.c: /v1/keys (admin) */
int rt_api_openai_register(rt_api *api); /* rt_api_openai.c: /v1/models, /v1/completions,
					 * /v1/chat/completions (OpenAI-compatible) */
int rt_api_upload_register(rt_api *api); /* rt_api_upload.c: /v1/snapshots, /v1/data (admin) */

/* Uploads (rt_api_upload.c). rt_api_upload_head runs in the head hook after the access gate:
 * for PUT /v1/snapshots/{snapshot} and PUT /v1/data/{file} it checks the name, the size
 * (--max-upload: 413), the free disk (507), whether a deployed revision uses the snapshot
 * (409 unless ?force=1) and the number of uploads under way (503), then streams the body into
 * a temporary file (rt_req_body_sink). Returns 1 when it answered, 0 otherwise (other routes
 * too). */
#define RT_UPLOAD_MAX_ACTIVE 4
int rt_api_upload_head(rt_api *api, rt_req *req);

#endif

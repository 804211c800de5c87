/* rt_api.c — what the API handlers (rt_api_*.c) share: JSON replies and body parsing, route
 * revisions, the request's side of a call (rt_call: the headers a kind may see, the cancel
 * hook, the result's response headers), the offload of large parse and serialize work to the
 * threadpool (rt_api_offload), in order and a bounded number at a time, so that the loop
 * keeps answering probes while a 60 MiB body is read; and the daemon's own endpoints: health
 * and readiness (ours and the Open Inference Protocol's) and Prometheus metrics. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <jansson.h>
#include "functions/fn.h"
#include "runtime/access/rt_access.h"
#include "runtime/api/rt_api.h"
#include "runtime/base/rt_clock.h"
#include "runtime/base/rt_json.h"
#include "runtime/base/rt_log.h"
#include "runtime/http/rt_proxy.h"
#include "runtime/sched/rt_sched.h"
#include "runtime/store/rt_manifest.h"
#include "runtime/base/rt_version.h"

void rt_api_reply_json(rt_req *req, int status, json_t *body)
{
	char *text = rt_json_dumps(body, 0);
	json_decref(body);
	if (!text) {
		rt_req_reply_error(req, 500, "out of memory");
		return;
	}
	rt_req_reply_take(req, status, "application/json", text, strlen(text));
}

int rt_api_kind_known(const char *kind, void *ud)
{
	(void)ud;
	return fn_kind_find(kind) != NULL;
}

/* Parses the request body as JSON (400 naming line and column when it is not, 413 when its
 * tree would cost more than the bounded-JSON budget). */
json_t *rt_api_parse_body(rt_req *req)
{
	char err[512];
	int st = 400;
	json_t *v = rt_json_load(req->body, req->body_len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES,
				 rt_json_budget(req->body_len), &st, err, sizeof err);
	if (!v)
		rt_req_reply_error(req, st, "%s", err);
	return v;
}

int rt_api_version(const char *s, uint32_t *rev)
{
	uint64_t v = 0;
	if (!s || !*s)
		return -EINVAL;
	for (; *s; s++)
		if (*s < '0' || *s > '9' || (v = v * 10 + (uint64_t)(*s - '0')) > RT_MANIFEST_REV_MAX)
			return -EINVAL;
	if (v == 0)
		return -EINVAL;
	*rev = (uint32_t)v;
	return 0;
}

void rt_api_note_function(rt_api *api, const char *name, const rt_manifest *m)
{
	if (m)
		rt_access_note_revision(api->access, m);
	if (strcmp(name, "echo") == 0)
		api->echo_deployed = m != NULL;
}

void rt_api_refuse(rt_req *req, const rt_access_refusal *why)
{
	if (rt_api_openai_route(req->route))
		rt_api_openai_refuse(req, why);
	else
		rt_req_reply_error(req, why->status, "%s", why->msg);
}

/* the cancel hook of a call made for req: its client going away */
static int req_watch(void *ctx, rt_call_cancel_fn cancel, void *arg)
{
	rt_req *req = ctx;
	int gone = rt_req_gone(req);
	if (!cancel || !gone)
		rt_req_on_gone(req, cancel, arg);
	return gone;
}

void rt_api_call_from_req(rt_call *c, rt_req *req, fn_header *hdrs)
{
	c->headers = hdrs;
	c->n_headers = rt_access_kind_headers(req, hdrs, RT_HTTP_MAX_HEADERS);
	c->watch = req_watch;
	c->watch_ctx = req;
}

void rt_api_result_headers(rt_req *req, const rt_call_result *r)
{
	if (r->retry_after_s > 0) {
		char ra[16];
		snprintf(ra, sizeof ra, "%d", r->retry_after_s);
		rt_req_add_header(req, "Retry-After", ra);
	}
}

int rt_api_registry_down(rt_api *api, rt_req *req, int rc)
{
	if (rc >= 0 || (rc != -ENOTCONN && rt_registry_available(api->reg)))
		return 0;
	char msg[400];
	rt_registry_unavailable_msg(api->reg, msg, sizeof msg);
	rt_req_add_header(req, "Retry-After", "1");
	rt_req_reply_error(req, 503, "%s", msg);
	return 1;
}

typedef struct offload_job {
	uv_work_t w;
	uv_loop_t *loop;
	rt_req *req;
	void (*work)(void *arg);
	void (*done)(void *arg, int gone);
	void *arg;
	struct offload_job *next;
} offload_job;

/* jobs waiting for a worker and the number running; loop thread only (one daemon a process) */
static struct {
	offload_job *head, *tail;
	int running;
} q_off;

static void offload_start(void);

static void offload_work(uv_work_t *w)
{
	offload_job *j = w->data;
	j->work(j->arg);
}

static void offload_after(uv_work_t *w, int status)
{
	offload_job *j = w->data;
	void (*done)(void *, int) = j->done;
	void *arg = j->arg;
	(void)status;
	q_off.running--;
	free(j);
	done(arg, 0);
	offload_start();
}

/* starts waiting jobs while fewer than RT_API_WORKERS run (a job whose client left is
 * answered at once, without its work) */
static void offload_start(void)
{
	while (q_off.head && q_off.running < RT_API_WORKERS) {
		offload_job *j = q_off.head;
		q_off.head = j->next;
		if (!q_off.head)
			q_off.tail = NULL;
		void (*work)(void *) = j->work;
		void (*done)(void *, int) = j->done;
		void *arg = j->arg;
		if (rt_req_gone(j->req)) {
			free(j);
			done(arg, 1);
			continue;
		}
		j->w.data = j;
		q_off.running++;
		if (uv_queue_work(j->loop, &j->w, offload_work, offload_after) < 0) {
			q_off.running--;
			free(j);
			work(arg);
			done(arg, 0);
		}
	}
}

void rt_api_offload(rt_api *api, rt_req *req, int big, void (*work)(void *arg),
		    void (*done)(void *arg, int gone), void *arg)
{
	offload_job *j = big ? calloc(1, sizeof *j) : NULL;
	if (!j) {
		work(arg);
		done(arg, 0);
		return;
	}
	j->loop = api->loop;
	j->req = req;
	j->work = work;
	j->done = done;
	j->arg = arg;
	if (q_off.tail)
		q_off.tail->next = j;
	else
		q_off.head = j;
	q_off.tail = j;
	offload_start();
}

typedef struct parse_job {
	rt_req *req;
	rt_api_body_fn fn;
	void *ud;
	size_t flags;
	json_t *v;
	int status;
	char err[512];
} parse_job;

static void parse_work(void *arg)
{
	parse_job *p = arg;
	p->v = rt_json_load(p->req->body, p->req->body_len, p->flags,
			    rt_json_budget(p->req->body_len), &p->status, p->err, sizeof p->err);
}

static void parse_done(void *arg, int gone)
{
	parse_job *p = arg;
	if (gone)
		rt_req_reply_error(p->req, 499, "the client closed the request");
	else if (!p->v)
		rt_req_reply_error(p->req, p->status, "%s", p->err);
	else
		p->fn(p->req, p->v, p->ud);
	free(p);
}

void rt_api_parse_body_then(rt_api *api, rt_req *req, rt_api_body_fn fn, void *ud)
{
	parse_job *p = calloc(1, sizeof *p);
	if (!p) {
		rt_req_reply_error(req, 500, "out of memory");
		return;
	}
	p->req = req;
	p->fn = fn;
	p->ud = ud;
	p->flags = JSON_DECODE_ANY | JSON_REJECT_DUPLICATES;
	rt_api_offload(api, req, req->body_len >= RT_API_INLINE_BYTES, parse_work, parse_done, p);
}

static void reply_json_text(rt_req *req, int status, const char *text)
{
	rt_req_reply(req, status, "application/json", text, strlen(text));
}

static void h_healthz(rt_req *req, void *ud)
{
	(void)ud;
	reply_json_text(req, 200, "{\"status\":\"ok\"}");
}

static void h_readyz(rt_req *req, void *ud)
{
	rt_api *api = ud;
	if (*api->draining)
		reply_json_text(req, 503, "{\"status\":\"draining\"}");
	else
		reply_json_text(req, 200, "{\"status\":\"ready\"}");
}

/* V2 health: 200 with an empty body means live/ready (KServe V2 REST). */
static void h_v2_live(rt_req *req, void *ud)
{
	(void)ud;
	reply_json_text(req, 200, "{\"live\":true}");
}

static void h_v2_ready(rt_req *req, void *ud)
{
	rt_api *api = ud;
	if (*api->draining)
		reply_json_text(req, 503, "{\"ready\":false}");
	else
		reply_json_text(req, 200, "{\"ready\":true}");
}

static void h_metrics(rt_req *req, void *ud)
{
	rt_api *api = ud;
	char *text;
	size_t len;
	rt_metric_set(api->m_connections, rt_http_open_connections(api->http), 0, NULL);
	if (api->sched)
		rt_sched_update_gauges(api->sched);
	if (rt_metrics_render(api->metrics, &text, &len) < 0) {
		rt_req_reply_error(req, 500, "out of memory rendering metrics");
		return;
	}
	rt_req_reply(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
	free(text);
}

int rt_api_register(rt_api *api)
{
	static const rt_route_def routes[] = {
		{"GET", "/healthz", h_healthz},
		{"GET", "/readyz", h_readyz},
		{"GET", "/v2/health/live", h_v2_live},
		{"GET", "/v2/health/ready", h_v2_ready},
		{"GET", "/metrics", h_metrics},
	};
	int rc = rt_router_add_all(api->router, routes, sizeof routes / sizeof routes[0], api);
	if (rc < 0)
		return rc;
	rc = rt_api_fn_register(api);
	if (rc == 0)
		rc = rt_api_v2_register(api);
	if (rc == 0)
		rc = rt_api_jobs_register(api);
	if (rc == 0)
		rc = rt_api_keys_register(api);
	if (rc == 0)
		rc = rt_api_openai_register(api);
	if (rc == 0)
		rc = rt_api_upload_register(api);
	return rc;
}

/* ---- routing between nodes ---- */

/* a call handed to a peer, until the relay is done */
typedef struct fwd {
	rt_api *api;
	rt_req *req;
	rt_api_here_fn here;
	void *ud;
	char fn[RT_MANIFEST_NAME_MAX + 1];
	rt_route route;
	char sig[RT_PROXY_SIG_MAX];
} fwd;

static void fwd_done(void *arg, const rt_proxy_result *res)
{
	fwd *f = arg;
	if (!res->answered) {
		/* nothing reached the client: the call runs here after all */
		rt_logf(RT_LOG_WARN, "forward of %s to node %s failed (%s: %s); running it here",
			f->fn, f->route.node, res->what, strerror(-res->err));
		rt_cluster_peer_failed(f->api->cluster, f->route.node);
	}
	f->here(f->req, f->ud, res->answered);
	free(f);
}

int rt_api_route(rt_api *api, rt_req *req, const char *fn, rt_api_here_fn here, void *ud)
{
	const char *hv = rt_req_header(req, RT_PROXY_FORWARDED_HEADER);
	if (hv) {
		char from[RT_PROXY_NODE_ID_MAX];
		int rc = api->cluster_secret_len ?
			 rt_proxy_verify(api->cluster_secret, api->cluster_secret_len, hv, req->method,
					 req->target, rt_clock_wall_ms(), from, sizeof from) : -EACCES;
		if (rc < 0) {
			rt_req_reply_error(req, 403, "header %s: %s", RT_PROXY_FORWARDED_HEADER,
					   rc == -ETIMEDOUT ? "expired" :
					   rc == -EINVAL ? "malformed" : "not signed by this cluster");
			return -1;
		}
		return 0;   /* forwarded here: runs here */
	}
	if (!api->cluster || !api->proxy || !api->cluster_secret_len)
		return 0;
	rt_revision_info *info = malloc(sizeof *info);
	if (!info)
		return 0;
	int known = rt_registry_get(api->reg, fn, info) == 0;
	double timeout_s = known ? info->manifest.timeout_s : 0;
	free(info);
	if (!known)
		return 0;   /* answered here (404) */
	rt_route r;
	rt_cluster_route(api->cluster, fn, &r);
	if (!r.peer)
		return 0;
	fwd *f = calloc(1, sizeof *f);
	if (!f)
		return 0;
	f->api = api;
	f->req = req;
	f->here = here;
	f->ud = ud;
	f->route = r;
	snprintf(f->fn, sizeof f->fn, "%s", fn);
	/* the permission lasts as long as the call may: the function's timeout, and a margin for
	 * clocks that differ between nodes */
	uint64_t budget_ms = (uint64_t)((timeout_s > 0 ? timeout_s : 60) * 1000.0);
	if (rt_proxy_sign(api->cluster_secret, api->cluster_secret_len,
			  rt_cluster_node_id(api->cluster),
			  rt_clock_wall_ms() + (int64_t)budget_ms + 30000, req->method, req->target,
			  f->sig, sizeof f->sig) < 0) {
		free(f);
		return 0;
	}
	rt_http_header h = {.name = RT_PROXY_FORWARDED_HEADER, .value = f->sig};
	rt_proxy_opts o = {
		.headers = &h,
		.nheaders = 1,
		/* past the function's timeout the call is answered 504 wherever it runs */
		.deadline_ms = rt_clock_mono_ns() / 1000000 + budget_ms + 1000,
	};
	if (rt_proxy_forward(api->proxy, req, r.url, &o, fwd_done, f) < 0) {
		rt_cluster_peer_failed(api->cluster, r.node);
		free(f);
		return 0;
	}
	rt_cluster_note_forward(api->cluster, fn, &r);
	return 1;
}

/* rt_access.c — API keys, scopes and rate limits at dispatch; audit lines after responses.
 * See rt_access.h, docs/operations.md ("Security"). */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <strings.h>
#include "runtime/base/rt_clock.h"
#include "runtime/access/rt_access.h"
#include "runtime/access/rt_audit.h"
#include "runtime/access/rt_auth.h"
#include "runtime/access/rt_limit.h"
#include "runtime/base/rt_log.h"
#include "runtime/http/rt_router.h"

#define LIMITER_MAX_BUCKETS 100000

/* admin-action lines of a node on a shared registry also go to the registry's audit table,
 * with the node's id first */
static void audit_to_registry(void *ud, const char *line, size_t len)
{
	rt_access *a = ud;
	size_t cap = len + sizeof a->node + 16;
	char *l = len > 1 && line[0] == '{' ? malloc(cap) : NULL;
	int rc = -ENOMEM;
	if (l) {
		int n = snprintf(l, cap, "{\"node\":\"%s\",%.*s", a->node, (int)(len - 1), line + 1);
		rc = rt_registry_audit_add(a->reg, l, (size_t)n);
		free(l);
	}
	if (rc < 0)
		rt_logf(RT_LOG_WARN, "audit: line not copied to the %s registry (%s); it is in the "
			"local audit log", rt_registry_backend(a->reg), strerror(-rc));
}

int rt_access_init(rt_access *a, uv_loop_t *loop, rt_registry *reg, const rt_access_config *cfg,
		   char *err, size_t errlen)
{
	memset(a, 0, sizeof *a);
	a->loop = loop;
	a->reg = reg;
	a->cfg = *cfg;
	int rc = rt_auth_open(a->reg, a->cfg.data_dir, &a->auth, err, errlen);
	if (rc < 0)
		return rc;
	a->limiter = rt_limiter_new(LIMITER_MAX_BUCKETS);
	if (!a->limiter)
		return rt_errf(err, errlen, -ENOMEM, "out of memory");
	if (a->cfg.no_audit) {
		rt_logf(RT_LOG_WARN, "audit log off (--no-audit): invocations and admin actions are not recorded");
		return 0;
	}
	rc = rt_audit_open(a->cfg.data_dir, a->cfg.audit_max_bytes, a->cfg.audit_days,
			   &a->audit, err, errlen);
	if (rc == 0)
		rt_audit_set_max_total(a->audit, a->cfg.audit_max_total ? a->cfg.audit_max_total
								   : RT_AUDIT_DEFAULT_MAX_TOTAL);
	if (rc == 0 && rt_registry_shared(reg)) {
		/* the id as the node's leases carry it: [A-Za-z0-9._-] (other host name bytes: _) */
		if (cfg->node_id && cfg->node_id[0])
			snprintf(a->node, sizeof a->node, "%s", cfg->node_id);
		else if (gethostname(a->node, sizeof a->node - 1) < 0 || !a->node[0])
			snprintf(a->node, sizeof a->node, "node");
		for (char *c = a->node; *c; c++)
			if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
			      (*c >= '0' && *c <= '9') || *c == '.' || *c == '_' || *c == '-'))
				*c = '_';
		rt_audit_set_mirror(a->audit, audit_to_registry, a);
	}
	return rc;
}

static void on_audit_timer(uv_timer_t *t)
{
	rt_access *a = t->data;
	int rc = rt_audit_tick(a->audit, (int64_t)(rt_clock_mono_ns() / 1000000));
	if (rc < 0)
		rt_logf(RT_LOG_ERROR, "audit: cannot write a refusal summary: %s", strerror(-rc));
	if (!rt_audit_pending(a->audit))
		return;
	rc = rt_audit_flush(a->audit);
	if (rc < 0)
		rt_logf(RT_LOG_ERROR, "audit: cannot write buffered lines: %s", strerror(-rc));
}

void rt_access_start(rt_access *a)
{
	if (!a->audit)
		return;
	uv_timer_init(a->loop, &a->audit_timer);
	a->audit_timer.data = a;
	uv_timer_start(&a->audit_timer, on_audit_timer, RT_AUDIT_FLUSH_MS, RT_AUDIT_FLUSH_MS);
	uv_unref((uv_handle_t *)&a->audit_timer);
}

void rt_access_free(rt_access *a)
{
	rt_auth_close(a->auth);
	rt_limiter_free(a->limiter);
	rt_audit_close(a->audit);
	a->auth = NULL;
	a->limiter = NULL;
	a->audit = NULL;
}

void rt_access_note_revision(rt_access *a, const rt_manifest *m)
{
	if (m->rate_limit_rps > 0)
		a->fn_rate_limits = 1;
	if (m->audit_payloads)
		a->fn_audit_payloads = 1;
}

/* Headers never handed to functions: the caller's credentials for thaw itself, and the
 * signature of a call another node forwarded (X-Thaw-Forwarded). */
static int header_withheld(const char *name)
{
	return strcasecmp(name, "Authorization") == 0 ||
	       strcasecmp(name, "Proxy-Authorization") == 0 ||
	       strcasecmp(name, "X-Thaw-Forwarded") == 0;
}

size_t rt_access_kind_headers(const rt_req *req, fn_header *out, size_t cap)
{
	size_t n = 0;
	for (int i = 0; i < req->nheaders && n < cap; i++)
		if (!header_withheld(req->headers[i].name)) {
			out[n].name = req->headers[i].name;
			out[n].value = req->headers[i].value;
			n++;
		}
	return n;
}

/* copy the token [p, e) without blanks, quotes, brackets and a port, into buf */
static void copy_addr(const char *p, const char *e, char *buf, size_t cap)
{
	while (p < e && (isspace((unsigned char)*p) || *p == '"'))
		p++;
	while (e > p && (isspace((unsigned char)e[-1]) || e[-1] == '"'))
		e--;
	if (p < e && *p == '[') {               /* "[v6]:port" */
		const char *q = memchr(p, ']', (size_t)(e - p));
		if (q) {
			p++;
			e = q;
		}
	} else {
		const char *c1 = memchr(p, ':', (size_t)(e - p));
		if (c1 && !memchr(c1 + 1, ':', (size_t)(e - c1 - 1)))   /* "v4:port" */
			e = c1;
	}
	size_t n = (size_t)(e - p);
	if (n >= cap)
		n = cap - 1;
	memcpy(buf, p, n);
	buf[n] = 0;
}

void rt_access_client(const rt_access *a, const rt_req *req, char *buf, size_t cap)
{
	if (a->cfg.trust_proxy) {
		/* one trusted proxy: the address it appended (the last one) is the client's */
		const char *fw = rt_req_header(req, "Forwarded");
		if (fw) {
			const char *last = NULL;
			for (const char *p = fw; (p = strcasestr(p, "for=")); p += 4)
				last = p + 4;
			if (last) {
				const char *e = last + strcspn(last, ";,");
				copy_addr(last, e, buf, cap);
				if (*buf)
					return;
			}
		}
		const char *xff = rt_req_header(req, "X-Forwarded-For");
		if (xff && *xff) {
			const char *c = strrchr(xff, ',');
			copy_addr(c ? c + 1 : xff, xff + strlen(xff), buf, cap);
			if (*buf)
				return;
		}
	}
	if (rt_req_peer(req, buf, cap) < 0 && cap)
		snprintf(buf, cap, "unknown");
}

/* fills *why; returns 1 (refused) */
static int refuse(rt_access_refusal *why, int status, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int refuse(rt_access_refusal *why, int status, const char *code, const char *fmt, ...)
{
	va_list ap;
	why->status = status;
	why->code = code;
	va_start(ap, fmt);
	vsnprintf(why->msg, sizeof why->msg, fmt, ap);
	va_end(ap);
	return 1;
}

static int limited(rt_access *a, rt_req *req, const char *kind, const char *who,
		   const rt_rate *lim, rt_access_refusal *why)
{
	if (lim->rate <= 0)
		return 0;
	char key[256];
	double retry;
	snprintf(key, sizeof key, "%s:%s", kind, who);
	if (rt_limiter_take(a->limiter, key, lim, rt_clock_mono_ns(), &retry) == 0)
		return 0;
	char ra[32];
	snprintf(ra, sizeof ra, "%.0f", ceil(retry) < 1 ? 1 : ceil(retry));
	rt_req_add_header(req, "Retry-After", ra);
	return refuse(why, 429, "rate_limit_exceeded", "rate limit exceeded");
}

static int check_key(rt_access *a, rt_req *req, rt_auth_need need, rt_access_refusal *why);
static int function_limited(rt_access *a, rt_req *req, const char *client,
			    rt_access_refusal *why);
static int fn_limited(rt_access *a, rt_req *req, const char *fn, const char *client,
		      rt_access_refusal *why);

static int is_mutation(const rt_req *req)
{
	return strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0;
}

/* the route's function: {name}, else {m} */
static const char *route_fn(const rt_req *req)
{
	const char *fn = rt_req_param(req, "name");
	return fn ? fn : rt_req_param(req, "m");
}

/* An admin change is applied only when it is audited: its intent line is written and
 * fdatasync'd before the handler runs, else the request is refused with 503. 0: go on. */
static int audit_intent(rt_access *a, rt_req *req, const char *action, const char *client,
			rt_access_refusal *why)
{
	rt_audit_rec r = {
		.key_id = req->auth_key_id, .client = client, .action = action,
		.function = route_fn(req), .method = req->method, .path = req->path,
		.request_id = req->request_id, .phase = "intent",
	};
	int rc = rt_audit_write(a->audit, &r, 1);
	if (rc == 0)
		return 0;
	rt_logf(RT_LOG_ERROR, "audit: cannot write to %s/audit/audit.log (%s): %s refused",
		a->cfg.data_dir, strerror(-rc), action);
	rt_req_add_header(req, "Retry-After", "5");
	return refuse(why, 503, "unavailable", "audit log unavailable (audit/audit.log: %s): the %s "
		      "is refused because it cannot be recorded", strerror(-rc), action);
}

int rt_access_gate(rt_access *a, rt_req *req, rt_access_refusal *why)
{
	const char *action;
	rt_auth_need need = rt_auth_route_need(req->method, req->route, &action);
	if (need == RT_AUTH_OPEN)
		return 0;
	char client[64];
	rt_access_client(a, req, client, sizeof client);
	/* the address limit comes first: it also slows down key guessing */
	if (limited(a, req, "ip", client, &a->cfg.limit_ip, why))
		return 1;
	if (!a->cfg.dev) {
		int rc = check_key(a, req, need, why);
		if (rc)
			return rc;
	}
	if (need == RT_AUTH_INVOKE)
		return function_limited(a, req, client, why);
	if (need == RT_AUTH_ADMIN && is_mutation(req) && a->audit)
		return audit_intent(a, req, action, client, why);
	return 0;
}

/* per-function limit from the manifest ("rate_limit"), per caller: key id, else address */
static int function_limited(rt_access *a, rt_req *req, const char *client,
			    rt_access_refusal *why)
{
	if (!a->fn_rate_limits)   /* no revision has one: skip the registry read */
		return 0;
	return fn_limited(a, req, route_fn(req), client, why);
}

static int fn_limited(rt_access *a, rt_req *req, const char *fn, const char *client,
		      rt_access_refusal *why)
{
	rt_revision_info *info = malloc(sizeof *info);
	int rc = 0;
	if (fn && info && rt_registry_get(a->reg, fn, info) == 0 && info->manifest.rate_limit_rps > 0) {
		rt_rate lim = {info->manifest.rate_limit_rps, info->manifest.rate_limit_burst};
		char who[256];
		snprintf(who, sizeof who, "%s:%s", fn, req->auth_key_id[0] ? req->auth_key_id : client);
		rc = limited(a, req, "fn", who, &lim, why);
	}
	free(info);
	return rc;
}

/* 403 naming the scope the key lacks; returns 1 */
static int forbidden(rt_auth_need need, const char *fn, rt_access_refusal *why)
{
	char scope[RT_MANIFEST_NAME_MAX + 16];
	rt_auth_missing_scope(need, fn, scope, sizeof scope);
	if (need == RT_AUTH_INVOKE_BODY && !fn)
		return refuse(why, 403, "insufficient_scope",
			      "forbidden: key lacks scope invoke:* or invoke:MODEL");
	return refuse(why, 403, "insufficient_scope", "forbidden: key lacks scope %s", scope);
}

_Static_assert(RT_AUTH_SCOPES_MAX <= sizeof ((rt_req *)0)->auth_scopes,
	       "a key's scopes fit the request's auth_scopes");

static int check_key(rt_access *a, rt_req *req, rt_auth_need need, rt_access_refusal *why)
{
	char scopes[RT_AUTH_SCOPES_MAX];
	int rc = rt_auth_check(a->auth, rt_req_header(req, "Authorization"), req->auth_key_id, scopes);
	if (rc == -EIO)
		return refuse(why, 503, "unavailable", "authentication unavailable");
	if (rc < 0) {
		rt_req_add_header(req, "WWW-Authenticate", "Bearer");
		return refuse(why, 401, "invalid_api_key", "missing or invalid API key");
	}
	const char *fn = route_fn(req);
	if (!rt_auth_allows(scopes, need, fn))
		return forbidden(need, fn, why);
	if (need == RT_AUTH_INVOKE_BODY)   /* the handler checks the body's function against them */
		memcpy(req->auth_scopes, scopes, sizeof scopes);
	return limited(a, req, "key", req->auth_key_id, &a->cfg.limit_key, why);
}

int rt_access_check_fn(rt_access *a, rt_req *req, const char *fn, rt_access_refusal *why)
{
	char client[64];
	/* the audit line names the function the body named (a copy in the request's own
	 * param_buf, whatever becomes of fn) */
	if (!rt_req_param(req, "name"))
		rt_router_param_add(req, "name", fn);
	if (!a->cfg.dev && !rt_auth_allows(req->auth_scopes, RT_AUTH_INVOKE, fn))
		return forbidden(RT_AUTH_INVOKE, fn, why);
	if (!a->fn_rate_limits)
		return 0;
	rt_access_client(a, req, client, sizeof client);
	return fn_limited(a, req, fn, client, why);
}

/* revision the handler answered with (Thaw-Revision header), else the route's {v} */
static long served_revision(const rt_req *req)
{
	const char *h = strcasestr(req->extra_headers, "Thaw-Revision:");
	if (h)
		return strtol(h + 14, NULL, 10);
	const char *v = rt_req_param(req, "v");
	return v ? strtol(v, NULL, 10) : 0;
}

/* the payloads of an invocation when the served revision's manifest opts in (one registry
 * read per call, only while some revision has the field) */
static void payload_opt_in(rt_access *a, const char *fn, long rev, rt_audit_rec *r,
			   const rt_req *req)
{
	rt_revision_info *info = malloc(sizeof *info);
	if (!info)
		return;
	int rc = rev > 0 ? rt_registry_get_revision(a->reg, fn, (uint32_t)rev, info)
			 : rt_registry_get(a->reg, fn, info);
	if (rc == 0 && info->manifest.audit_payloads) {
		r->payload_max = (size_t)info->manifest.audit_payload_max;
		r->payload_in = req->body ? req->body : "";
		r->payload_in_len = req->body ? req->body_len : 0;
		r->payload_out = req->resp_body ? req->resp_body : "";
		r->payload_out_len = req->resp_body ? req->resp_body_len : 0;
	}
	free(info);
}

void rt_access_observe(rt_access *a, const rt_req *req, size_t resp_bytes, double secs)
{
	if (!a->audit || !req->method || strcmp(req->route, "unmatched") == 0)
		return;
	const char *action;
	rt_auth_need need = rt_auth_route_need(req->method, req->route, &action);
	int mutation = is_mutation(req);
	int refused = req->status == 401 || req->status == 403 || req->status == 429;
	int admin = need == RT_AUTH_ADMIN && mutation;
	if (need == RT_AUTH_INVOKE_BODY)
		need = RT_AUTH_INVOKE;   /* the handler set the function as param "name" */
	if (need == RT_AUTH_OPEN || !(need == RT_AUTH_INVOKE || admin || refused))
		return;
	char client[64];
	rt_access_client(a, req, client, sizeof client);
	const char *fn = route_fn(req);
	rt_audit_rec r = {
		.key_id = req->auth_key_id, .client = client, .action = action, .function = fn,
		.revision = served_revision(req), .method = req->method, .path = req->path,
		.status = req->status, .latency_s = secs, .bytes_in = req->body_len,
		.bytes_out = resp_bytes, .request_id = req->request_id,
	};
	if (a->fn_audit_payloads && need == RT_AUTH_INVOKE && fn && !refused)
		payload_opt_in(a, fn, r.revision, &r, req);
	/* refusals are sampled per client (a refusal changes nothing: no fsync) */
	int rc = refused ? rt_audit_refusal(a->audit, &r, (int64_t)(rt_clock_mono_ns() / 1000000))
			 : rt_audit_write(a->audit, &r, admin);
	if (rc < 0)
		rt_logf(RT_LOG_ERROR, "audit: cannot write a line: %s", strerror(-rc));
}

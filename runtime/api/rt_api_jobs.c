/* rt_api_jobs.c — the jobs API: POST /v1/jobs, GET /v1/jobs (?state=), GET|DELETE
 * /v1/jobs/{id}. The job store and runner are runtime/jobs/rt_jobs.c. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "runtime/api/rt_api.h"
#include "runtime/jobs/rt_jobs.h"

static int parse_id(rt_req *req, int64_t *id)
{
	const char *s = rt_req_param(req, "id");
	char *end = NULL;
	errno = 0;
	long long v = s ? strtoll(s, &end, 10) : 0;
	if (!s || !*s || *end || v < 1 || errno == ERANGE || *s == '+' || *s == ' ') {
		rt_req_reply_error(req, 400, "job id must be a positive integer, got '%s'", s ? s : "");
		return -1;
	}
	*id = v;
	return 0;
}

static void submit_parsed(rt_req *req, json_t *body, void *ud);

static void h_submit(rt_req *req, void *ud)
{
	rt_api_parse_body_then(ud, req, submit_parsed, ud);
}

static void submit_parsed(rt_req *req, json_t *body, void *ud)
{
	rt_api *api = ud;
	char err[1024] = "";
	int64_t id = 0;
	int rc = rt_jobs_submit(api->jobs, body, &id, err, sizeof err);
	json_decref(body);
	if (rc < 0) {
		int st = rc == -ENOENT ? 404 : rc == -EACCES ? 403 : rc == -EINVAL ? 400 : 500;
		if (st == 500 && rt_api_registry_down(api, req, rc))
			return;
		rt_req_reply_error(req, st, "%s", err);
		return;
	}
	char loc[64];
	snprintf(loc, sizeof loc, "/v1/jobs/%" PRId64, id);
	rt_req_add_header(req, "Location", loc);
	json_t *o = rt_jobs_get_json(api->jobs, id);
	rt_api_reply_json(req, 202, o ? o : json_pack("{s:I}", "id", (json_int_t)id));
}

/* the value of key in a query string ("a=1&state=running"), copied into buf; NULL if absent */
static const char *query_get(const char *query, const char *key, char *buf, size_t cap)
{
	size_t kl = strlen(key);
	for (const char *p = query; p && *p;) {
		const char *amp = strchr(p, '&');
		size_t len = amp ? (size_t)(amp - p) : strlen(p);
		if (len > kl && !strncmp(p, key, kl) && p[kl] == '=') {
			size_t vl = len - kl - 1;
			if (vl >= cap)
				vl = cap - 1;
			memcpy(buf, p + kl + 1, vl);
			buf[vl] = 0;
			return buf;
		}
		p = amp ? amp + 1 : NULL;
	}
	return NULL;
}

static void h_list(rt_req *req, void *ud)
{
	rt_api *api = ud;
	char buf[32];
	const char *state = query_get(req->query, "state", buf, sizeof buf);
	json_t *o = NULL;
	if (rt_jobs_list_json(api->jobs, state, &o) < 0) {
		rt_req_reply_error(req, 400, "state: must be one of queued, running, preempted, succeeded, "
				   "failed, cancelled");
		return;
	}
	rt_api_reply_json(req, 200, o);
}

static void h_get(rt_req *req, void *ud)
{
	rt_api *api = ud;
	int64_t id;
	if (parse_id(req, &id) < 0)
		return;
	json_t *o = rt_jobs_get_json(api->jobs, id);
	if (!o) {
		rt_req_reply_error(req, 404, "job %" PRId64 " not found", id);
		return;
	}
	rt_api_reply_json(req, 200, o);
}

static void h_cancel(rt_req *req, void *ud)
{
	rt_api *api = ud;
	char err[256];
	int64_t id;
	if (parse_id(req, &id) < 0)
		return;
	int rc = rt_jobs_cancel(api->jobs, id, err, sizeof err);
	if (rc < 0) {
		if ((rc == -EIO || rc == -ENOTCONN) && rt_api_registry_down(api, req, rc))
			return;
		rt_req_reply_error(req, rc == -ENOENT ? 404 : rc == -EALREADY ? 409 :
				   rc == -EBUSY ? 503 : 500, "%s", err);
		return;
	}
	rt_api_reply_json(req, 200, rt_jobs_get_json(api->jobs, id));
}

int rt_api_jobs_register(rt_api *api)
{
	static const rt_route_def routes[] = {
		{"POST", "/v1/jobs", h_submit},
		{"GET", "/v1/jobs", h_list},
		{"GET", "/v1/jobs/{id}", h_get},
		{"DELETE", "/v1/jobs/{id}", h_cancel},
	};
	return rt_router_add_all(api->router, routes, sizeof routes / sizeof routes[0], api);
}

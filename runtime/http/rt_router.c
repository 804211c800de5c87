/* rt_router.c — see rt_router.h. Patterns are pre-split into segments at registration. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "runtime/http/rt_router.h"

#define MAX_SEGS 8

typedef struct route {
	char method[12];
	const char *pattern;
	char *segbuf;
	const char *segs[MAX_SEGS];
	int is_param[MAX_SEGS];
	int nsegs;
	rt_handler_fn fn;
	void *ud;
} route;

struct rt_router {
	route *routes;
	int n, cap;
};

rt_router *rt_router_new(void)
{
	return calloc(1, sizeof(rt_router));
}

void rt_router_free(rt_router *r)
{
	if (!r)
		return;
	for (int i = 0; i < r->n; i++)
		free(r->routes[i].segbuf);
	free(r->routes);
	free(r);
}

int rt_router_add(rt_router *r, const char *method, const char *pattern, rt_handler_fn fn, void *ud)
{
	if (!pattern || pattern[0] != '/' || strlen(method) >= sizeof(((route *)0)->method))
		return -EINVAL;
	if (r->n == r->cap) {
		int cap = r->cap ? r->cap * 2 : 16;
		route *n = realloc(r->routes, (size_t)cap * sizeof *n);
		if (!n)
			return -ENOMEM;
		r->routes = n;
		r->cap = cap;
	}
	route *rt = &r->routes[r->n];
	memset(rt, 0, sizeof *rt);
	strcpy(rt->method, method);
	rt->pattern = pattern;
	rt->fn = fn;
	rt->ud = ud;
	rt->segbuf = strdup(pattern + 1);
	if (!rt->segbuf)
		return -ENOMEM;
	char *save = NULL;
	for (char *s = strtok_r(rt->segbuf, "/", &save); s; s = strtok_r(NULL, "/", &save)) {
		if (rt->nsegs == MAX_SEGS) {
			free(rt->segbuf);
			return -EINVAL;
		}
		size_t l = strlen(s);
		rt->is_param[rt->nsegs] = l > 2 && s[0] == '{' && s[l - 1] == '}';
		if (rt->is_param[rt->nsegs]) {
			s[l - 1] = 0;
			s++;
		}
		rt->segs[rt->nsegs++] = s;
	}
	r->n++;
	return 0;
}

int rt_router_add_all(rt_router *r, const rt_route_def *routes, size_t n, void *ud)
{
	for (size_t i = 0; i < n; i++) {
		int rc = rt_router_add(r, routes[i].method, routes[i].pattern, routes[i].fn, ud);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* Splits path into segments (no empty ones except a trailing slash rejects the match). */
static int split_path(const char *path, const char **segs, size_t *lens, int max)
{
	int n = 0;
	const char *p = path;
	if (*p != '/')
		return -1;
	if (p[1] == 0)
		return 0;
	while (*p == '/') {
		p++;
		const char *e = strchr(p, '/');
		size_t l = e ? (size_t)(e - p) : strlen(p);
		if (l == 0 || n == max)
			return -1;
		segs[n] = p;
		lens[n] = l;
		n++;
		p += l;
	}
	return n;
}

static int route_matches(const route *rt, const char **segs, const size_t *lens, int n)
{
	if (rt->nsegs != n)
		return 0;
	for (int i = 0; i < n; i++) {
		if (rt->is_param[i])
			continue;
		if (strlen(rt->segs[i]) != lens[i] || memcmp(rt->segs[i], segs[i], lens[i]) != 0)
			return 0;
	}
	return 1;
}

rt_route_result rt_router_match(const rt_router *r, rt_req *req, rt_handler_fn *fn, void **ud,
				char *allow, size_t allow_cap)
{
	char *scratch = req->param_buf;
	const size_t scratch_cap = sizeof req->param_buf;
	const char *segs[MAX_SEGS];
	size_t lens[MAX_SEGS];
	int n = split_path(req->path, segs, lens, MAX_SEGS);
	int path_matched = 0;
	if (allow && allow_cap)
		allow[0] = 0;
	if (n < 0)
		return RT_ROUTE_NOT_FOUND;
	for (int i = 0; i < r->n; i++) {
		const route *rt = &r->routes[i];
		if (!route_matches(rt, segs, lens, n))
			continue;
		if (strcmp(rt->method, req->method) != 0 &&
		    !(strcmp(rt->method, "GET") == 0 && strcmp(req->method, "HEAD") == 0)) {
			if (allow && allow_cap && !strstr(allow, rt->method)) {
				size_t l = strlen(allow);
				snprintf(allow + l, allow_cap - l, "%s%s", l ? ", " : "", rt->method);
			}
			path_matched = 1;
			continue;
		}
		size_t used = 0;
		req->nparams = 0;
		for (int s = 0; s < n; s++) {
			if (!rt->is_param[s])
				continue;
			if (req->nparams == RT_HTTP_MAX_PARAMS || used + lens[s] + 1 > scratch_cap)
				return RT_ROUTE_NOT_FOUND;
			memcpy(scratch + used, segs[s], lens[s]);
			scratch[used + lens[s]] = 0;
			req->param_names[req->nparams] = rt->segs[s];
			req->param_values[req->nparams] = scratch + used;
			req->nparams++;
			used += lens[s] + 1;
		}
		req->route = rt->pattern;
		*fn = rt->fn;
		*ud = rt->ud;
		return RT_ROUTE_FOUND;
	}
	return path_matched ? RT_ROUTE_METHOD_NOT_ALLOWED : RT_ROUTE_NOT_FOUND;
}

int rt_router_param_add(rt_req *req, const char *name, const char *value)
{
	size_t used = 0, n = strlen(value);
	for (int i = 0; i < req->nparams; i++) {
		const char *v = req->param_values[i];
		if (v >= req->param_buf && v < req->param_buf + sizeof req->param_buf) {
			size_t end = (size_t)(v - req->param_buf) + strlen(v) + 1;
			if (end > used)
				used = end;
		}
	}
	if (req->nparams == RT_HTTP_MAX_PARAMS || used + n + 1 > sizeof req->param_buf)
		return -ENOSPC;
	memcpy(req->param_buf + used, value, n + 1);
	req->param_names[req->nparams] = name;
	req->param_values[req->nparams] = req->param_buf + used;
	req->nparams++;
	return 0;
}

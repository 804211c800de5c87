/* rt_router.h — method + path routing with {param} segments, e.g.
 * "/v1/functions/{name}/invoke". Routes are matched in registration order; a literal segment
 * must match exactly, a {param} segment matches one non-empty segment. */
#ifndef THAW_RT_ROUTER_H
#define THAW_RT_ROUTER_H
#include "runtime/http/rt_http.h"

typedef struct rt_router rt_router;

typedef enum rt_route_result {
	RT_ROUTE_FOUND,
	RT_ROUTE_NOT_FOUND,          /* no pattern matches the path: 404 */
	RT_ROUTE_METHOD_NOT_ALLOWED, /* the path matches, the method does not: 405 + Allow */
} rt_route_result;

/* rt_router_new returns an empty router or NULL on allocation failure. */
rt_router *rt_router_new(void);
void rt_router_free(rt_router *r);

/* rt_router_add registers method (e.g. "GET") + pattern -> fn(req, ud). The pattern string must
 * outlive the router (it names the route in metrics). Returns 0, -EINVAL for a bad pattern,
 * -ENOMEM. */
int rt_router_add(rt_router *r, const char *method, const char *pattern, rt_handler_fn fn, void *ud);

/* One row of a module's route table. */
typedef struct rt_route_def {
	const char *method, *pattern;
	rt_handler_fn fn;
} rt_route_def;

/* rt_router_add_all registers n routes, all with the same ud (a module's table); 0 or the
 * first rt_router_add error. */
int rt_router_add_all(rt_router *r, const rt_route_def *routes, size_t n, void *ud);

/* rt_router_match matches method and path. On FOUND, *fn and *ud are set and req's route and
 * params are filled (param values are copied into the request's own req->param_buf, so they
 * stay valid and unchanged until the request is answered, whatever other requests do; a path
 * whose parameters do not fit is NOT_FOUND). On METHOD_NOT_ALLOWED, allow (if non-NULL)
 * receives "GET, PUT" style text. */
rt_route_result rt_router_match(const rt_router *r, rt_req *req, rt_handler_fn *fn, void **ud,
				char *allow, size_t allow_cap);

/* rt_router_param_add adds route parameter name = value to a matched request, the value
 * copied into req->param_buf after the router's (name: a static string). A handler that
 * learns a request's function from its body names it this way for the audit line. 0, or
 * -ENOSPC when the parameters or param_buf are full (nothing added). */
int rt_router_param_add(rt_req *req, const char *name, const char *value);

#endif

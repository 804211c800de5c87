/* test_router.c — rt_router: literal and {param} segments, 404 vs 405, HEAD on GET routes. */
#include <errno.h>
#include "tests/t.h"
#include "runtime/http/rt_router.h"

static int hits[4];
static void h0(rt_req *r, void *ud) { (void)r; (void)ud; hits[0]++; }
static void h1(rt_req *r, void *ud) { (void)r; (void)ud; hits[1]++; }
static void h2(rt_req *r, void *ud) { (void)r; (void)ud; hits[2]++; }

static rt_route_result match(rt_router *rt, const char *method, const char *path, rt_req *req,
			     char *allow, rt_handler_fn *fn)
{
	void *ud;
	memset(req, 0, sizeof *req);
	req->method = method;
	req->path = path;
	req->route = "unmatched";
	return rt_router_match(rt, req, fn, &ud, allow, 128);
}

static void test_match_params(void)
{
	rt_router *rt = rt_router_new();
	rt_req req;
	char allow[128];
	rt_handler_fn fn = NULL;
	T_EQ_INT(rt_router_add(rt, "GET", "/healthz", h0, NULL), 0);
	T_EQ_INT(rt_router_add(rt, "POST", "/v1/functions/{name}/invoke", h1, NULL), 0);
	T_EQ_INT(rt_router_add(rt, "GET", "/v2/models/{m}/versions/{v}", h2, NULL), 0);
	T_EQ_INT(rt_router_add(rt, "PUT", "/v1/functions/{name}", h2, NULL), 0);
	T_EQ_INT(rt_router_add(rt, "DELETE", "/v1/functions/{name}", h2, NULL), 0);
	T_EQ_INT(rt_router_add(rt, "GET", "no-slash", h0, NULL), -EINVAL);

	T_EQ_INT(match(rt, "GET", "/healthz", &req, allow, &fn), RT_ROUTE_FOUND);
	T_CHECK(fn == h0);
	T_EQ_STR(req.route, "/healthz");
	T_EQ_INT(match(rt, "POST", "/v1/functions/mnist-7/invoke", &req, allow, &fn), RT_ROUTE_FOUND);
	T_CHECK(fn == h1);
	T_EQ_STR(rt_req_param(&req, "name"), "mnist-7");
	T_EQ_STR(req.route, "/v1/functions/{name}/invoke");
	T_EQ_INT(match(rt, "GET", "/v2/models/a/versions/3", &req, allow, &fn), RT_ROUTE_FOUND);
	T_EQ_STR(rt_req_param(&req, "m"), "a");
	T_EQ_STR(rt_req_param(&req, "v"), "3");
	T_CHECK(rt_req_param(&req, "zz") == NULL);
	/* HEAD is served by GET routes */
	T_EQ_INT(match(rt, "HEAD", "/healthz", &req, allow, &fn), RT_ROUTE_FOUND);
	rt_router_free(rt);
}

static void test_not_found_and_method(void)
{
	rt_router *rt = rt_router_new();
	rt_req req;
	char allow[128];
	rt_handler_fn fn = NULL;
	rt_router_add(rt, "GET", "/healthz", h0, NULL);
	rt_router_add(rt, "PUT", "/v1/functions/{name}", h2, NULL);
	rt_router_add(rt, "DELETE", "/v1/functions/{name}", h2, NULL);
	rt_router_add(rt, "GET", "/v1/functions/{name}", h2, NULL);
	T_EQ_INT(match(rt, "GET", "/nope", &req, allow, &fn), RT_ROUTE_NOT_FOUND);
	T_EQ_INT(match(rt, "GET", "/healthz/", &req, allow, &fn), RT_ROUTE_NOT_FOUND);
	T_EQ_INT(match(rt, "GET", "//healthz", &req, allow, &fn), RT_ROUTE_NOT_FOUND);
	T_EQ_INT(match(rt, "GET", "/v1/functions/", &req, allow, &fn), RT_ROUTE_NOT_FOUND);
	T_EQ_INT(match(rt, "GET", "/v1/functions/a/b", &req, allow, &fn), RT_ROUTE_NOT_FOUND);
	T_EQ_INT(match(rt, "GET", "", &req, allow, &fn), RT_ROUTE_NOT_FOUND);
	T_EQ_INT(match(rt, "POST", "/v1/functions/x", &req, allow, &fn), RT_ROUTE_METHOD_NOT_ALLOWED);
	T_EQ_STR(allow, "PUT, DELETE, GET");
	T_EQ_INT(match(rt, "POST", "/healthz", &req, allow, &fn), RT_ROUTE_METHOD_NOT_ALLOWED);
	T_EQ_STR(allow, "GET");
	T_EQ_INT(match(rt, "GET", "/a/b/c/d/e/f/g/h/i/j", &req, allow, &fn), RT_ROUTE_NOT_FOUND);
	rt_router_free(rt);
}

/* a module's table: every row registered, the first bad row's error returned */
static void test_add_all(void)
{
	rt_router *rt = rt_router_new();
	rt_req req;
	char allow[128];
	rt_handler_fn fn = NULL;
	static const rt_route_def ok[] = {{"GET", "/a", h0}, {"POST", "/b/{x}", h1}};
	static const rt_route_def bad[] = {{"GET", "/c", h2}, {"GET", "nope", h0}, {"GET", "/d", h0}};
	T_EQ_INT(rt_router_add_all(rt, ok, 2, NULL), 0);
	T_EQ_INT(match(rt, "POST", "/b/7", &req, allow, &fn), RT_ROUTE_FOUND);
	T_CHECK(fn == h1);
	T_EQ_INT(match(rt, "GET", "/a", &req, allow, &fn), RT_ROUTE_FOUND);
	T_CHECK(fn == h0);
	T_EQ_INT(rt_router_add_all(rt, bad, 3, NULL), -EINVAL);
	T_EQ_INT(match(rt, "GET", "/c", &req, allow, &fn), RT_ROUTE_FOUND);
	T_EQ_INT(match(rt, "GET", "/d", &req, allow, &fn), RT_ROUTE_NOT_FOUND);
	rt_router_free(rt);
}

void t_main(void)
{
	T_RUN(test_match_params);
	T_RUN(test_not_found_and_method);
	T_RUN(test_add_all);
}

/* test_access.c — rt_access_client: the socket peer unless --trust-proxy; with it the last
 * Forwarded for= (quotes, brackets and ports removed), else the last X-Forwarded-For entry.
 * rt_access_kind_headers: every header but the caller's credentials, in order.
 * rt_access_check_fn: the body's model against the scopes the gate kept, as a refusal. */
#include <stdio.h>
#include <string.h>
#include "runtime/access/rt_access.h"
#include "tests/t.h"

static const char *client(int trust, const char *name, const char *value)
{
	static char buf[64];
	rt_access srv;
	rt_req req;
	memset(&srv, 0, sizeof srv);
	memset(&req, 0, sizeof req);
	srv.cfg.trust_proxy = trust;
	if (name) {
		req.headers[0].name = name;
		req.headers[0].value = value;
		req.nheaders = 1;
	}
	rt_access_client(&srv, &req, buf, sizeof buf);
	return buf;
}

static void test_client_address(void)
{
	/* no connection in this unit test: the peer is "unknown" */
	T_EQ_STR(client(0, NULL, NULL), "unknown");
	T_EQ_STR(client(0, "X-Forwarded-For", "1.2.3.4"), "unknown");   /* not trusted */
	T_EQ_STR(client(1, "X-Forwarded-For", "6.6.6.6, 1.2.3.4"), "1.2.3.4");
	T_EQ_STR(client(1, "X-Forwarded-For", " 9.9.9.9 "), "9.9.9.9");
	T_EQ_STR(client(1, "x-forwarded-for", "2001:db8::1"), "2001:db8::1");
	T_EQ_STR(client(1, "Forwarded", "for=6.6.6.6;proto=http, for=192.0.2.60:4711"), "192.0.2.60");
	T_EQ_STR(client(1, "Forwarded", "for=\"[2001:db8:cafe::17]:4711\""), "2001:db8:cafe::17");
	T_EQ_STR(client(1, "Forwarded", "proto=https"), "unknown");
	T_EQ_STR(client(1, "X-Forwarded-For", ""), "unknown");
}

static void test_kind_headers(void)
{
	rt_req req;
	memset(&req, 0, sizeof req);
	const char *h[][2] = {{"Host", "t"}, {"authorization", "Bearer thaw_x"}, {"X-A", "1"},
			      {"Proxy-Authorization", "Basic eA=="}, {"X-A", "2"},
			      {"Authorization-Extra", "kept"}};
	for (int i = 0; i < 6; i++) {
		req.headers[i].name = h[i][0];
		req.headers[i].value = h[i][1];
	}
	req.nheaders = 6;
	fn_header out[8];
	T_EQ_INT(rt_access_kind_headers(&req, out, 8), 4);
	T_EQ_STR(out[0].name, "Host");
	T_EQ_STR(out[1].name, "X-A");
	T_EQ_STR(out[1].value, "1");
	T_EQ_STR(out[2].value, "2");
	T_EQ_STR(out[3].name, "Authorization-Extra");
	T_EQ_INT(rt_access_kind_headers(&req, out, 2), 2);   /* bounded by cap */
}

static void test_check_fn_scopes(void)
{
	rt_access srv;
	rt_req req;
	rt_access_refusal why;
	memset(&srv, 0, sizeof srv);
	memset(&req, 0, sizeof req);
	snprintf(req.auth_scopes, sizeof req.auth_scopes, "invoke:chat metrics");
	T_EQ_INT(rt_access_check_fn(&srv, &req, "chat", &why), 0);
	T_EQ_STR(rt_req_param(&req, "name"), "chat");   /* named for the audit line */
	memset(&req, 0, sizeof req);
	snprintf(req.auth_scopes, sizeof req.auth_scopes, "invoke:chat metrics");
	T_EQ_INT(rt_access_check_fn(&srv, &req, "other", &why), 1);
	T_EQ_INT(why.status, 403);
	T_EQ_STR(why.code, "insufficient_scope");
	T_EQ_STR(why.msg, "forbidden: key lacks scope invoke:other");
	/* --dev: no scope is checked */
	memset(&req, 0, sizeof req);
	srv.cfg.dev = 1;
	T_EQ_INT(rt_access_check_fn(&srv, &req, "other", &why), 0);
}

void t_main(void)
{
	T_RUN(test_kind_headers);
	T_RUN(test_check_fn_scopes);
	T_RUN(test_client_address);
}

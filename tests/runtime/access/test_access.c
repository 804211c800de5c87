/* test_access.c — rt_access_client: the socket peer unless --trust-proxy; with it the last
 * Forwarded for= (quotes, brackets and ports removed), else the last X-Forwarded-For entry. */
#include <stdio.h>
#include <string.h>
#include "runtime/access/rt_access.h"
#include "tests/t.h"

static const char *client(int trust, const char *name, const char *value)
{
	static char buf[64];
	rt_server srv;
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

void t_main(void)
{
	T_RUN(test_client_address);
}

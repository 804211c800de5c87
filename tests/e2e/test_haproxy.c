/* test_haproxy.c — the haproxy helper (tests/e2e/haproxy.h) on its own: two rt_http servers on a
 * loop thread behind it; calls through it alternate between them, a server whose health check
 * fails is taken out (every call then goes to the other) and comes back, and stopping haproxy
 * frees its port. Fails when haproxy is missing. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>
#include "runtime/base/rt_log.h"
#include "runtime/http/rt_http.h"
#include "tests/e2e/e2e.h"
#include "tests/e2e/haproxy.h"
#include "tests/t.h"

static uv_loop_t loop;
static uv_async_t stop_async;
static rt_http *srv[2];
static atomic_int sick[2];   /* 1: that server's /healthz answers 503 */
static pthread_t loop_th;

static void dispatch(rt_req *req, void *ud)
{
	int i = (int)(intptr_t)ud;
	if (!strcmp(req->path, "/healthz")) {
		if (atomic_load(&sick[i]))
			rt_req_reply_error(req, 503, "sick");
		else
			rt_req_reply(req, 200, "application/json", "{\"status\":\"ok\"}", 15);
		return;
	}
	char out[32];
	int n = snprintf(out, sizeof out, "backend %d", i);
	rt_req_reply(req, 200, "text/plain", out, (size_t)n);
}

static void close_walk(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

static void on_stop(uv_async_t *a)
{
	(void)a;
	for (int i = 0; i < 2; i++)
		rt_http_close_all(srv[i]);
	uv_walk(&loop, close_walk, NULL);
}

static void *loop_main(void *arg)
{
	(void)arg;
	uv_run(&loop, UV_RUN_DEFAULT);
	return NULL;
}

static int start_backends(int ports[2])
{
	rt_log_init(RT_LOG_ERROR);
	uv_loop_init(&loop);
	uv_async_init(&loop, &stop_async, on_stop);
	for (int i = 0; i < 2; i++) {
		rt_http_config cfg;
		rt_http_config_defaults(&cfg);
		cfg.host = "127.0.0.1";
		cfg.port = 0;
		cfg.access_log = 0;
		if (rt_http_open(&loop, &cfg, dispatch, (void *)(intptr_t)i, &srv[i]) < 0)
			return -1;
		ports[i] = rt_http_port(srv[i]);
	}
	return pthread_create(&loop_th, NULL, loop_main, NULL) == 0 ? 0 : -1;
}

static void stop_backends(void)
{
	uv_async_send(&stop_async);
	pthread_join(loop_th, NULL);
	for (int i = 0; i < 2; i++)
		rt_http_free(srv[i]);
	uv_loop_close(&loop);
}

/* one call on a new connection through the balancer: the backend's number, or -1 */
static int call(const e2e_haproxy *h)
{
	e2e_server s = {.port = h->port};
	e2e_resp r;
	if (e2e_request(&s, "GET /who HTTP/1.1\r\nHost: lb\r\nConnection: close\r\n\r\n", &r) < 0)
		return -1;
	int who = r.status == 200 && r.body && !strncmp(r.body, "backend ", 8) ? atoi(r.body + 8) : -1;
	e2e_resp_free(&r);
	return who;
}

static void test_round_robin_and_health(void)
{
	T_CHECK(e2e_haproxy_bin() != NULL);   /* make test installs it: missing is a failure */
	int ports[2];
	T_EQ_INT(start_backends(ports), 0);
	e2e_haproxy h;
	int rc = e2e_haproxy_start(&h, ports, 2, "/healthz", NULL);
	T_EQ_INT(rc, 0);
	if (rc == 0) {
		T_CHECK(e2e_haproxy_wait_up(&h, 2, 10000));
		int prev = call(&h), alternations = 0;
		T_CHECK(prev == 0 || prev == 1);
		for (int i = 0; i < 6; i++) {
			int who = call(&h);
			T_CHECK(who == 0 || who == 1);
			alternations += who != prev;
			prev = who;
		}
		T_EQ_INT(alternations, 6);   /* round robin: every call goes to the other one */
		/* server 1 fails its checks: out of the rotation */
		atomic_store(&sick[1], 1);
		T_CHECK(e2e_haproxy_wait_up(&h, 1, 10000));
		for (int i = 0; i < 4; i++)
			T_EQ_INT(call(&h), 0);
		atomic_store(&sick[1], 0);
		T_CHECK(e2e_haproxy_wait_up(&h, 2, 10000));
		int seen1 = 0;
		for (int i = 0; i < 4; i++)
			seen1 += call(&h) == 1;
		T_EQ_INT(seen1, 2);
		int port = h.port;
		T_CHECK(e2e_haproxy_stop(&h) >= 0);
		e2e_server s = {.port = port};
		T_EQ_INT(e2e_connect(&s), -1);   /* the listener is gone with it */
	}
	stop_backends();
}

static void test_refuses_bad_arguments(void)
{
	e2e_haproxy h;
	int none[1] = {0};
	T_EQ_INT(e2e_haproxy_start(&h, none, 0, NULL, NULL), -1);
	T_EQ_INT(e2e_haproxy_stop(&h), -1);
	/* a config haproxy refuses: the start fails and says why */
	int ports[1] = {t_free_port()};
	T_EQ_INT(e2e_haproxy_start(&h, ports, 1, NULL, "    no-such-keyword here"), -1);
}

void t_main(void)
{
	T_RUN(test_round_robin_and_health);
	T_RUN(test_refuses_bad_arguments);
}

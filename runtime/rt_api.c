/* rt_api.c — HTTP endpoints of the daemon: health and readiness (ours and the Open Inference
 * Protocol's), Prometheus metrics, and function invocation. */
#include <string.h>
#include <stdlib.h>
#include <jansson.h>
#include "runtime/rt_api.h"
#include "runtime/rt_sched.h"
#include "runtime/rt_version.h"

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
	rt_server *srv = ud;
	if (srv->draining)
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
	rt_server *srv = ud;
	if (srv->draining)
		reply_json_text(req, 503, "{\"ready\":false}");
	else
		reply_json_text(req, 200, "{\"ready\":true}");
}

static void h_metrics(rt_req *req, void *ud)
{
	rt_server *srv = ud;
	char *text;
	size_t len;
	rt_metric_set(srv->m_connections, rt_http_open_connections(srv->http), 0, NULL);
	if (srv->sched)
		rt_sched_update_gauges(srv->sched);
	if (rt_metrics_render(srv->metrics, &text, &len) < 0) {
		rt_req_reply_error(req, 500, "out of memory rendering metrics");
		return;
	}
	rt_req_reply(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
	free(text);
}

int rt_api_register(rt_server *srv)
{
	static const rt_route_def routes[] = {
		{"GET", "/healthz", h_healthz},
		{"GET", "/readyz", h_readyz},
		{"GET", "/v2/health/live", h_v2_live},
		{"GET", "/v2/health/ready", h_v2_ready},
		{"GET", "/metrics", h_metrics},
	};
	int rc = rt_router_add_all(srv->router, routes, sizeof routes / sizeof routes[0], srv);
	if (rc < 0)
		return rc;
	rc = rt_api_fn_register(srv);
	if (rc == 0)
		rc = rt_api_v2_register(srv);
	if (rc == 0)
		rc = rt_api_jobs_register(srv);
	if (rc == 0)
		rc = rt_api_keys_register(srv);
	if (rc == 0)
		rc = rt_api_openai_register(srv);
	return rc;
}

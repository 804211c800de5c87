/* rt_server.c — daemon lifecycle: listener, routing, metrics, signals and graceful drain
 * (Knative runtime contract: on SIGTERM readiness fails, the listener closes, in-flight requests
 * finish, exit 0 within the drain timeout). */
#include <dirent.h>
#include <errno.h>
#include <time.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "runtime/base/rt_clock.h"
#include "runtime/base/rt_log.h"
#include "runtime/api/rt_api.h"
#include "runtime/http/rt_proxy.h"
#include "runtime/access/rt_access.h"
#include "runtime/access/rt_auth.h"
#include "runtime/base/rt_mem.h"
#include "runtime/rt_server.h"
#include "runtime/base/rt_version.h"

/* the head hook (rt_http_set_head): at the end of the headers, before any body byte is kept,
 * the CORS policy is applied (rt_cors.h: preflights answered), the route is matched and the
 * access gate applied (keys, scopes, rate limits: 401, 403, 429, 503); 404 and 405 are
 * answered here too. A request that passes gets req->handler set, which
 * rt_server_dispatch calls at the end of the message (the gate is not applied twice: a rate
 * limit token is taken once). */
static void server_head(rt_req *req, void *ud)
{
	rt_server *srv = ud;
	if (rt_cors_head(srv->cfg.cors_origins, srv->cfg.n_cors_origins, srv->router, req))
		return;   /* a preflight, answered */
	rt_handler_fn fn;
	void *fud;
	char allow[128];
	rt_access_refusal why;
	switch (rt_router_match(srv->router, req, &fn, &fud, allow, sizeof allow)) {
	case RT_ROUTE_FOUND:
		if (rt_access_gate(&srv->access, req, &why)) {
			rt_api_refuse(req, &why);   /* in the route's error shape */
			return;
		}
		if (rt_api_upload_head(&srv->api, req))   /* answered */
			return;
		req->handler = fn;
		req->handler_ud = fud;
		return;
	case RT_ROUTE_METHOD_NOT_ALLOWED:
		rt_req_add_header(req, "Allow", allow);
		rt_req_reply_error(req, 405, "method %s not allowed on %s (allowed: %s)", req->method,
				   req->path, allow);
		return;
	default:
		rt_req_reply_error(req, 404, "no route for %s %s", req->method, req->path);
	}
}

void rt_server_dispatch(rt_req *req, void *ud)
{
	(void)ud;
	if (!req->handler) {   /* rt_http dispatches only what server_head let through */
		rt_logf(RT_LOG_ERROR, "%s:%d: request dispatched without a handler", __FILE__, __LINE__);
		abort();
	}
	req->handler(req, req->handler_ud);
}

static void observe(const rt_req *req, size_t bytes, double secs, void *ud)
{
	rt_server *srv = ud;
	char code[8];
	snprintf(code, sizeof code, "%d", req->status);
	const char *kv[] = {"route", req->route, "code", code};
	rt_metric_add(srv->m_requests, 1, 2, kv);
	rt_metric_observe(srv->m_duration, secs, 1, kv);
	rt_access_observe(&srv->access, req, bytes, secs);
}

/* a keyed server without a live key answers 401 to all but the probes: say how to make one */
static void log_first_key_hint(struct rt_auth *a, const char *data_dir, int shared)
{
	json_t *j = NULL;
	size_t live = 0, i;
	json_t *k;
	if (rt_auth_key_list(a, &j) < 0)
		return;
	json_array_foreach(json_object_get(j, "keys"), i, k)
		if (json_is_null(json_object_get(k, "revoked")))
			live++;
	json_decref(j);
	if (live == 0 && shared)
		rt_logf(RT_LOG_WARN, "no API key exists yet: every call but the probes gets 401; create "
			"the first admin key with: thaw keys create --scope admin --registry URL (the "
			"registry URL this daemon was given)");
	else if (live == 0)
		rt_logf(RT_LOG_WARN, "no API key exists yet: every call but the probes gets 401; create "
			"the first admin key with: thaw keys create --scope admin --data %s", data_dir);
}

static int mkdir_p(const char *path)
{
	char tmp[4096];
	if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp)
		return -ENAMETOOLONG;
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
		return -errno;
	struct stat st;
	if (stat(tmp, &st) < 0)
		return -errno;
	return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

/* removes what an interrupted pack or upload (kill -9, power loss) left in DATA/snapshots or
 * DATA/data: the NAME.tmp.XXXXXX files are never used, only renamed when complete. Files
 * written in the last 10 minutes are left alone (a `thaw snapshot pack` may be running beside
 * the daemon). */
static void sweep_pack_leftovers(const char *data_dir, const char *sub)
{
	char dir[4096];
	snprintf(dir, sizeof dir, "%s/%s", data_dir, sub);
	DIR *d = opendir(dir);
	if (!d)
		return;
	time_t now = time(NULL);
	struct dirent *e;
	while ((e = readdir(d))) {
		const char *t = strstr(e->d_name, ".tmp.");
		if (!t || strlen(t) != 11)
			continue;
		char path[4400];
		struct stat st;
		snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
		if (lstat(path, &st) == 0 && S_ISREG(st.st_mode) && now - st.st_mtime > 600 &&
		    unlink(path) == 0)
			rt_logf(RT_LOG_WARN, "removed %s, left by an interrupted snapshot pack or upload", path);
	}
	closedir(d);
}

/* load_secret reads the cluster secret from file (or $THAW_CLUSTER_SECRET when file is NULL):
 * 16..RT_SERVER_SECRET_MAX bytes, a trailing newline dropped; 0 with len 0 when none is set */
static int load_secret(rt_server *srv, const char *file)
{
	srv->cluster_secret_len = 0;
	const char *env = getenv("THAW_CLUSTER_SECRET");
	size_t n = 0;
	if (file) {
		FILE *f = fopen(file, "rb");
		if (!f) {
			rt_logf(RT_LOG_ERROR, "--cluster-secret-file %s: %s", file, strerror(errno));
			return -errno;
		}
		n = fread(srv->cluster_secret, 1, sizeof srv->cluster_secret, f);
		int more = fgetc(f) != EOF;
		fclose(f);
		if (more) {
			rt_logf(RT_LOG_ERROR, "--cluster-secret-file %s: longer than %d bytes", file,
				RT_SERVER_SECRET_MAX);
			return -EINVAL;
		}
	} else if (env && *env) {
		n = strlen(env);
		if (n > sizeof srv->cluster_secret) {
			rt_logf(RT_LOG_ERROR, "THAW_CLUSTER_SECRET: longer than %d bytes",
				RT_SERVER_SECRET_MAX);
			return -EINVAL;
		}
		memcpy(srv->cluster_secret, env, n);
	} else {
		return 0;
	}
	while (n && (srv->cluster_secret[n - 1] == '\n' || srv->cluster_secret[n - 1] == '\r'))
		n--;
	if (n < 16) {
		rt_logf(RT_LOG_ERROR, "the cluster secret must have at least 16 bytes (it has %zu)", n);
		return -EINVAL;
	}
	srv->cluster_secret_len = n;
	return 0;
}

/* cluster_init: advertised URL (default the listening address when it is loopback), secret,
 * and the node's cluster state (its id: srv->node_id) */
static int cluster_init(rt_server *srv, const rt_server_config *cfg)
{
	int rc = load_secret(srv, cfg->cluster_secret_file);
	if (rc < 0)
		return rc;
	const char *h = cfg->http.host ? cfg->http.host : "";
	if (cfg->cluster.advertise)
		snprintf(srv->advertise, sizeof srv->advertise, "%s", cfg->cluster.advertise);
	else if (!strcmp(h, "127.0.0.1") || !strcmp(h, "localhost"))
		snprintf(srv->advertise, sizeof srv->advertise, "http://127.0.0.1:%d",
			 rt_http_port(srv->http));
	rt_cluster_config cc = cfg->cluster;
	cc.node_id = srv->node_id;
	cc.advertise = srv->advertise;
	cc.forwarding = srv->cluster_secret_len > 0;
	rc = rt_cluster_new(srv->loop, srv->reg, srv->sched, srv->metrics, &cc, &srv->cluster);
	if (rc < 0) {
		rt_logf(RT_LOG_ERROR, "cluster: bad node id '%s' or --advertise '%s' (expected "
			"http://HOST:PORT)", srv->node_id, srv->advertise);
		return rc;
	}
	if (rt_registry_shared(srv->reg) && !cc.forwarding)
		rt_logf(RT_LOG_WARN, "cluster: no cluster secret (--cluster-secret-file or "
			"THAW_CLUSTER_SECRET): calls run where they arrive, none is forwarded");
	if (rt_registry_shared(srv->reg) && cc.forwarding) {
		rt_proxy_config pc;
		rt_proxy_config_defaults(&pc);
		rc = rt_proxy_new(srv->loop, &pc, &srv->proxy);
		if (rc < 0)
			return rc;
	}
	srv->api.proxy = srv->proxy;
	srv->api.cluster = srv->cluster;
	srv->api.cluster_secret = srv->cluster_secret;
	srv->api.cluster_secret_len = srv->cluster_secret_len;
	return 0;
}

int rt_server_init(rt_server *srv, uv_loop_t *loop, const rt_server_config *cfg)
{
	int rc;
	memset(srv, 0, sizeof *srv);
	rt_mem_tune();
	srv->loop = loop;
	srv->cfg = *cfg;
	srv->started_ns = rt_clock_mono_ns();
	rc = mkdir_p(cfg->data_dir);
	if (rc < 0) {
		rt_logf(RT_LOG_ERROR, "cannot create data directory %s: %s", cfg->data_dir, strerror(-rc));
		return rc;
	}
	if (!srv->cfg.shared_dir || !srv->cfg.shared_dir[0])
		srv->cfg.shared_dir = srv->cfg.data_dir;
	if (strcmp(srv->cfg.shared_dir, srv->cfg.data_dir) != 0 && (rc = mkdir_p(srv->cfg.shared_dir)) < 0) {
		rt_logf(RT_LOG_ERROR, "cannot create shared directory %s: %s", srv->cfg.shared_dir,
			strerror(-rc));
		return rc;
	}
	/* snapshots and data by name, job checkpoints and results: in the shared directory; the
	 * node's own data directory stays an allowed root (snapshots packed there before) */
	for (size_t i = 0; i < cfg->n_allowed_roots; i++)
		srv->roots[srv->n_roots++] = cfg->allowed_roots[i];
	if (strcmp(srv->cfg.shared_dir, srv->cfg.data_dir) != 0)
		srv->roots[srv->n_roots++] = srv->cfg.data_dir;
	sweep_pack_leftovers(srv->cfg.shared_dir, "snapshots");
	sweep_pack_leftovers(srv->cfg.shared_dir, "data");
	if (!srv->cfg.max_upload_bytes)
		srv->cfg.max_upload_bytes = (uint64_t)64 << 30;
	srv->router = rt_router_new();
	srv->metrics = rt_metrics_new();
	if (!srv->router || !srv->metrics) {
		rc = -ENOMEM;
		goto fail;
	}
	srv->m_requests = rt_metrics_family(srv->metrics, "thaw_http_requests_total", RT_METRIC_COUNTER,
					    "HTTP requests answered, by route and status code.", NULL, 0);
	srv->m_duration = rt_metrics_family(srv->metrics, "thaw_http_request_duration_seconds",
					    RT_METRIC_HISTOGRAM,
					    "Time from a request's first byte to its response, by route.",
					    rt_metrics_latency_buckets, rt_metrics_latency_nbuckets);
	srv->m_connections = rt_metrics_family(srv->metrics, "thaw_http_open_connections",
					       RT_METRIC_GAUGE, "Open client connections.", NULL, 0);
	rt_metric_family *info = rt_metrics_family(srv->metrics, "thaw_build_info", RT_METRIC_GAUGE,
						   "Build and deployment labels; always 1.", NULL, 0);
	const char *ks = getenv("K_SERVICE"), *kr = getenv("K_REVISION"), *kc = getenv("K_CONFIGURATION");
	const char *kv[] = {"version", THAW_VERSION, "k_service", ks ? ks : "",
			    "k_revision", kr ? kr : "", "k_configuration", kc ? kc : ""};
	rt_metric_set(info, 1, 4, kv);
	char err[512];
	rc = rt_registry_open_url(cfg->registry_url, cfg->data_dir, &srv->reg, err, sizeof err);
	if (rc < 0) {
		rt_logf(RT_LOG_ERROR, "cannot open the registry: %s", err);
		goto fail;
	}
	/* one node id for job leases, membership and the shared audit trail */
	if (cfg->cluster.node_id)
		snprintf(srv->node_id, sizeof srv->node_id, "%s", cfg->cluster.node_id);
	else
		rt_cluster_default_node_id(srv->node_id);
	srv->cfg.access.data_dir = srv->cfg.data_dir;
	srv->cfg.access.node_id = srv->node_id;
	rc = rt_access_init(&srv->access, loop, srv->reg, &srv->cfg.access, err, sizeof err);
	if (rc < 0) {
		rt_logf(RT_LOG_ERROR, "cannot set up access control: %s", err);
		goto fail;
	}
	if (cfg->access.dev)
		rt_logf(RT_LOG_WARN, "DEV MODE (--dev): API keys are NOT checked; anyone who can reach "
			"this server can deploy, delete and invoke. Never use --dev outside local development.");
	else if (srv->access.auth)
		log_first_key_hint(srv->access.auth, cfg->data_dir, rt_registry_shared(srv->reg));
	/* the API handlers' context (rt_api.h); the scheduler and the job runner join it once they
	 * exist, the listener once it is open */
	srv->api = (rt_api){
		.loop = loop,
		.router = srv->router,
		.reg = srv->reg,
		.access = &srv->access,
		.metrics = srv->metrics,
		.m_connections = srv->m_connections,
		.draining = &srv->draining,
		.data_dir = srv->cfg.shared_dir,
		.allowed_roots = srv->roots,
		.n_allowed_roots = srv->n_roots,
		.plugin_roots = srv->cfg.plugin_roots,
		.n_plugin_roots = srv->cfg.n_plugin_roots,
		.max_upload_bytes = srv->cfg.max_upload_bytes,
		.max_body_bytes = srv->cfg.http.max_body_bytes,
	};
	/* what the hot path would otherwise ask SQLite on every call */
	{
		rt_registry_entry *e = NULL;
		size_t n = 0;
		rt_revision_info *ri = malloc(sizeof *ri);
		if (ri && rt_registry_list(srv->reg, &e, &n) == 0)
			for (size_t i = 0; i < n; i++)
				for (uint32_t r = 1; r <= e[i].latest_rev; r++)
					if (rt_registry_get_revision(srv->reg, e[i].name, r, ri) == 0)
						rt_api_note_function(&srv->api, e[i].name, &ri->manifest);
		free(e);
		free(ri);
	}
	rc = rt_sched_new(loop, srv->reg, srv->metrics, &cfg->sched, &srv->sched);
	if (rc < 0) {
		rt_logf(RT_LOG_ERROR, "cannot start the device lanes: %s", strerror(-rc));
		goto fail;
	}
	rt_jobs_config jc = cfg->jobs;
	jc.node_id = srv->node_id;
	if (cfg->cluster.lease_ms > 0)
		jc.lease_ms = cfg->cluster.lease_ms;
	rc = rt_jobs_new(loop, srv->reg, srv->sched, srv->metrics, srv->cfg.shared_dir, srv->roots,
			 srv->n_roots, &jc, &srv->jobs, err, sizeof err);
	if (rc < 0) {
		rt_logf(RT_LOG_ERROR, "cannot start the job runner: %s", err);
		goto fail;
	}
	srv->api.sched = srv->sched;
	srv->api.jobs = srv->jobs;
	rc = rt_api_register(&srv->api);
	if (rc < 0)
		goto fail;
	rc = rt_http_open(loop, &cfg->http, rt_server_dispatch, srv, &srv->http);
	if (rc < 0) {
		rt_logf(RT_LOG_ERROR, "cannot listen on %s:%d: %s", cfg->http.host, cfg->http.port,
			uv_strerror(rc));
		goto fail;
	}
	srv->api.http = srv->http;
	rc = cluster_init(srv, cfg);
	if (rc < 0)
		goto fail;
	rt_http_set_head(srv->http, server_head);
	rt_http_set_observer(srv->http, observe, srv);
	rt_sched_start(srv->sched);
	rt_jobs_start(srv->jobs);
	rt_cluster_start(srv->cluster);
	return 0;
fail:
	rt_proxy_free(srv->proxy);
	srv->proxy = NULL;
	rt_cluster_free(srv->cluster);
	srv->cluster = NULL;
	rt_jobs_free(srv->jobs);
	srv->jobs = NULL;
	if (srv->sched) {
		rt_sched_stop(srv->sched, NULL, NULL);
		uv_run(loop, UV_RUN_NOWAIT);
		rt_sched_free(srv->sched);
		srv->sched = NULL;
	}
	rt_access_free(&srv->access);
	rt_registry_close(srv->reg);
	srv->reg = NULL;
	rt_router_free(srv->router);
	rt_metrics_free(srv->metrics);
	srv->router = NULL;
	srv->metrics = NULL;
	return rc;
}

static void on_sched_stopped(void *ud)
{
	rt_server *srv = ud;
	rt_logf(RT_LOG_INFO, "drained; exiting");
	uv_timer_stop(&srv->drain_timer);
	uv_stop(srv->loop);
}

static void on_jobs_stopped(void *ud)
{
	rt_server *srv = ud;
	/* jobs are checkpointed and off the lanes: release every function's device state, stop
	 * the lanes */
	rt_sched_stop(srv->sched, on_sched_stopped, srv);
}

static void on_drained(void *ud)
{
	rt_server *srv = ud;
	/* no connection is left: stop the jobs (each checkpoints after its current step) */
	rt_jobs_stop(srv->jobs, on_jobs_stopped, srv);
}

static void on_drain_timeout(uv_timer_t *t)
{
	rt_server *srv = t->data;
	rt_logf(RT_LOG_WARN, "drain timeout after %.1f s; closing %d connection(s)",
		srv->cfg.drain_timeout_s, rt_http_open_connections(srv->http));
	rt_http_close_all(srv->http);
	uv_stop(srv->loop);
}

static void on_signal(uv_signal_t *s, int signum)
{
	rt_server *srv = s->data;
	if (srv->draining) {
		rt_logf(RT_LOG_WARN, "second signal %d; stopping now", signum);
		rt_http_close_all(srv->http);
		uv_stop(srv->loop);
		return;
	}
	srv->draining = 1;
	rt_cluster_stop(srv->cluster);   /* peers stop routing here at once */
	int open = rt_http_open_connections(srv->http);
	uv_timer_start(&srv->drain_timer, on_drain_timeout,
		       (uint64_t)(srv->cfg.drain_timeout_s * 1000.0), 0);
	rt_http_drain(srv->http, on_drained, srv);   /* closes the listener first */
	/* logged once it is true: a client reading this line finds the port refusing */
	rt_logf(RT_LOG_INFO, "signal %d: draining (readiness off, listener closed, %d connection(s) open)",
		signum, open);
}

static void close_walk(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

static void on_registry_tick(uv_timer_t *t)
{
	rt_server *srv = t->data;
	rt_registry_tick(srv->reg);
}

int rt_server_run(rt_server *srv)
{
	signal(SIGPIPE, SIG_IGN);
	uv_signal_init(srv->loop, &srv->sig_term);
	uv_signal_init(srv->loop, &srv->sig_int);
	uv_timer_init(srv->loop, &srv->drain_timer);
	srv->sig_term.data = srv->sig_int.data = srv->drain_timer.data = srv;
	uv_signal_start(&srv->sig_term, on_signal, SIGTERM);
	uv_signal_start(&srv->sig_int, on_signal, SIGINT);
	rt_access_start(&srv->access);
	rt_mem_trim_start(srv->loop, &srv->trim_timer);
	if (rt_registry_shared(srv->reg)) {
		/* change notifications and reconnects of the shared registry */
		uv_timer_init(srv->loop, &srv->registry_timer);
		srv->registry_timer.data = srv;
		uv_timer_start(&srv->registry_timer, on_registry_tick, RT_REGISTRY_TICK_MS,
			       RT_REGISTRY_TICK_MS);
		uv_unref((uv_handle_t *)&srv->registry_timer);
	}
	char fields[600];
	snprintf(fields, sizeof fields, "\"host\":\"%s\",\"port\":%d,\"data\":\"%s\",\"registry\":\"%s\","
		 "\"version\":\"%s\"", srv->cfg.http.host, rt_http_port(srv->http), srv->cfg.data_dir,
		 rt_registry_backend(srv->reg), THAW_VERSION);
	rt_log(RT_LOG_INFO, "listening", fields);
	uv_run(srv->loop, UV_RUN_DEFAULT);
	/* forwards still in flight end: 503 (Retry-After), or a cut connection once relaying began */
	rt_proxy_free(srv->proxy);
	srv->proxy = NULL;
	/* close whatever is left (connections past the deadline, signal handles, timers) */
	uv_walk(srv->loop, close_walk, NULL);
	uv_run(srv->loop, UV_RUN_DEFAULT);
	return srv->exit_code;
}

void rt_server_free(rt_server *srv)
{
	rt_cluster_free(srv->cluster);
	rt_jobs_free(srv->jobs);
	rt_sched_free(srv->sched);
	rt_access_free(&srv->access);
	rt_registry_close(srv->reg);
	rt_http_free(srv->http);
	rt_router_free(srv->router);
	rt_metrics_free(srv->metrics);
	memset(srv, 0, sizeof *srv);
}

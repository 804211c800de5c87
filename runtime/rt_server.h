/* rt_server.h — the daemon's shared state, owned by the loop thread: HTTP server, router,
 * metrics, drain state, and the API layer's context (rt_api), which the handlers in
 * rt_api*.c receive as their `ud`. */
#ifndef THAW_RT_SERVER_H
#define THAW_RT_SERVER_H
#include <uv.h>
#include "runtime/api/rt_api.h"
#include "runtime/http/rt_cors.h"
#include "runtime/http/rt_http.h"
#include "runtime/jobs/rt_jobs.h"
#include "runtime/access/rt_access.h"
#include "runtime/base/rt_metrics.h"
#include "runtime/store/rt_registry.h"
#include "runtime/http/rt_router.h"
#include "runtime/sched/rt_cluster.h"
#include "runtime/sched/rt_sched.h"

#define RT_SERVER_MAX_ROOTS 8
#define RT_SERVER_SECRET_MAX 256   /* bytes of a cluster secret (at least 16) */

typedef struct rt_server_config {
	rt_http_config http;
	const char *data_dir;        /* created if missing */
	const char *registry_url;    /* rt_registry_open_url; NULL or "": DATA/registry.db */
	const char *shared_dir;      /* snapshots/, data/ and jobs/ that every node of a cluster
				      * mounts; NULL: data_dir. Created if missing */
	double drain_timeout_s;      /* SIGTERM -> exit 0 within this */
	const char *allowed_roots[RT_SERVER_MAX_ROOTS];  /* snapshot paths allowed outside DATA */
	size_t n_allowed_roots;
	const char *plugin_roots[RT_SERVER_MAX_ROOTS];   /* where "plugin:/path.so" kinds may live */
	size_t n_plugin_roots;
	rt_sched_config sched;
	rt_jobs_config jobs;
	rt_access_config access;     /* keys, limits and audit (its data_dir is set from data_dir) */
	const char *cors_origins[RT_CORS_MAX_ORIGINS];  /* browser origins allowed (rt_cors.h) */
	size_t n_cors_origins;
	uint64_t max_upload_bytes;   /* largest PUT /v1/snapshots|data body (rt_api_upload.c) */
	rt_cluster_config cluster;   /* node id (NULL: the host name), advertised URL, lease */
	const char *cluster_secret_file;  /* NULL: $THAW_CLUSTER_SECRET, else no forwarding */
} rt_server_config;

typedef struct rt_server {
	uv_loop_t *loop;
	rt_server_config cfg;
	rt_http *http;
	rt_router *router;
	rt_metrics *metrics;
	rt_registry *reg;
	rt_sched *sched;
	rt_jobs *jobs;
	rt_cluster *cluster;         /* this node among the nodes of a shared registry */
	struct rt_proxy *proxy;      /* forwards calls to peers (NULL: not in a cluster) */
	char node_id[RT_NODE_ID_MAX + 1];
	char advertise[RT_NODE_URL_MAX];
	unsigned char cluster_secret[RT_SERVER_SECRET_MAX];
	size_t cluster_secret_len;   /* 0: no secret, calls are not forwarded */
	rt_access access;            /* the access gate and audit log (rt_access.h) */
	const char *roots[RT_SERVER_MAX_ROOTS + 1];   /* allowed roots, and data_dir when the
						       * shared directory is elsewhere */
	size_t n_roots;
	rt_api api;                  /* the handlers' context, filled in by rt_server_init */
	uv_timer_t trim_timer;       /* returns freed memory to the kernel (rt_mem.h) */
	uv_timer_t registry_timer;   /* rt_registry_tick of a shared registry */
	rt_metric_family *m_requests, *m_duration, *m_connections;
	int draining;
	uint64_t started_ns;
	uv_signal_t sig_term, sig_int;
	uv_timer_t drain_timer;
	int exit_code;
} rt_server;

/* rt_server_dispatch runs the handler that the head hook (installed by rt_server_init) chose
 * for a request at the end of its headers, where routing (404/405) and the access gate ran;
 * the rt_http dispatch callback, ud = rt_server. */
void rt_server_dispatch(rt_req *req, void *ud);

/* rt_server_init creates router, metrics and the listener (binding cfg->http.port).
 * Returns 0 or a negative errno; on failure nothing is left allocated. */
int rt_server_init(rt_server *srv, uv_loop_t *loop, const rt_server_config *cfg);

/* rt_server_run runs the loop until drained after SIGTERM/SIGINT; returns the exit code. */
int rt_server_run(rt_server *srv);

/* rt_server_free releases everything rt_server_init created. */
void rt_server_free(rt_server *srv);

#endif

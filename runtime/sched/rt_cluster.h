/* rt_cluster.h — this node's place among the nodes that share a registry (a cluster: several
 * daemons on one PostgreSQL registry, docs/architecture.md "Several nodes").
 *
 * Membership: every beat (lease/6) the node upserts its lease row (rt_registry_node_beat)
 * with its state — devices and their memory, free device memory, calls in flight, and its
 * resident functions with their state and whether they have room — and reads the rows of
 * the live nodes, its view of the peers. A residency change here (a cold start begins or
 * ends, an eviction) is announced at once with a notifying beat; a notification from a peer
 * makes the next routing decision re-read the rows (at most every RT_CLUSTER_REREAD_MS). A node
 * whose lease expired is gone from the rows, so from the view.
 *
 * Routing (rt_cluster_route), for a call that was not forwarded to this node already:
 *   1. the function is warm (or loading, or in the host tier) here with room: run it here;
 *   2. else a live peer has it warm or loading with room: forward to the least loaded one;
 *   3. else it is resident here (no room): run it here, unless a peer without it has more
 *      free device memory than any other node and the load needs a second copy (the copy
 *      here has a full round queued): forward there, which cold-starts it;
 *   4. else (resident nowhere) cold-start it on the node with the most free device memory,
 *      ties to the smallest node id: here, or forward there.
 * A peer whose forward failed is left out for RT_CLUSTER_SUSPECT_MS. Without a shared
 * registry, advertised peers or forwarding (no cluster secret) every call runs here.
 *
 * All calls on the loop thread. Functions return 0 or a negative errno. */
#ifndef THAW_RT_CLUSTER_H
#define THAW_RT_CLUSTER_H
#include <stdint.h>
#include <jansson.h>
#include <uv.h>
#include "runtime/base/rt_metrics.h"
#include "runtime/sched/rt_sched.h"
#include "runtime/store/rt_registry.h"

#define RT_CLUSTER_DEFAULT_LEASE_MS 3000
#define RT_CLUSTER_SUSPECT_MS 2000
#define RT_CLUSTER_REREAD_MS 20      /* rows re-read after a notification at most this often */

typedef struct rt_cluster_config {
	const char *node_id;      /* this node's id (rt_cluster_node_id_ok) */
	const char *advertise;    /* URL peers reach this node at ("" or NULL: it takes no
				   * forwarded calls, and no call is routed to it) */
	int64_t lease_ms;         /* the node's lease (0: RT_CLUSTER_DEFAULT_LEASE_MS); beat
				   * every lease/6 */
	int forwarding;           /* 1: calls may be forwarded to peers (a cluster secret is set) */
} rt_cluster_config;

typedef struct rt_cluster rt_cluster;

/* Where one call runs. */
typedef struct rt_route {
	int peer;                          /* 0: here; 1: forward to node/url */
	int cold;                          /* the function is resident nowhere: a cold start */
	char node[RT_NODE_ID_MAX + 1];
	char url[RT_NODE_URL_MAX];
} rt_route;

/* rt_cluster_node_id_ok reports whether id is a valid node id: 1..RT_NODE_ID_MAX characters
 * of [A-Za-z0-9._-]. */
int rt_cluster_node_id_ok(const char *id);

/* rt_cluster_default_node_id writes the default node id to out (RT_NODE_ID_MAX + 1 bytes):
 * the host name (in Kubernetes the pod's name), other characters than those of a node id
 * replaced by '-', cut to RT_NODE_ID_MAX; "localhost" when there is none. */
void rt_cluster_default_node_id(char *out);

/* rt_cluster_new makes the node's cluster state (registry, scheduler and metrics borrowed;
 * they outlive it). -EINVAL for a bad node id or advertised URL (not http://host:port). */
int rt_cluster_new(uv_loop_t *loop, rt_registry *reg, rt_sched *sched, rt_metrics *m,
		   const rt_cluster_config *cfg, rt_cluster **out);

/* rt_cluster_start beats once (the first beat of this run) and starts the beat timer. */
void rt_cluster_start(rt_cluster *c);

/* rt_cluster_stop stops beating and drops the node's row (a clean stop: peers stop routing
 * here at once). Idempotent. */
void rt_cluster_stop(rt_cluster *c);

/* rt_cluster_free releases c after its loop has closed its handles (or it never started);
 * NULL is fine. */
void rt_cluster_free(rt_cluster *c);

/* rt_cluster_route decides where a call for function fn runs (see above). */
void rt_cluster_route(rt_cluster *c, const char *fn, rt_route *out);

/* rt_cluster_peer_failed leaves node out of routing for RT_CLUSTER_SUSPECT_MS (a forward to
 * it failed before its answer began) and counts thaw_peer_failures_total. */
void rt_cluster_peer_failed(rt_cluster *c, const char *node);

/* rt_cluster_note_forward counts a call forwarded to node (thaw_forwarded_calls_total) and,
 * when route->cold, marks fn as loading there in the view until the next read of the rows,
 * so calls meanwhile follow it rather than starting another copy. */
void rt_cluster_note_forward(rt_cluster *c, const char *fn, const rt_route *route);

/* rt_cluster_node_id is this node's id. */
const char *rt_cluster_node_id(const rt_cluster *c);

/* rt_cluster_json describes the cluster as this node sees it (GET /v1/cluster):
 * {"node", "registry": backend, "shared", "forwarding", "lease_ms", "nodes": [{"id",
 * "advertise", "self", "lease_left_ms", "free_bytes", "load", "functions": {...}}, ...]}
 * (new reference). */
json_t *rt_cluster_json(rt_cluster *c);

#endif

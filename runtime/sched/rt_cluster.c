/* rt_cluster.c — membership beats, the view of the peers, and the routing of calls between
 * the nodes of a cluster (contract in rt_cluster.h). */
#include "runtime/sched/rt_cluster.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "runtime/base/rt_clock.h"
#include "runtime/base/rt_log.h"

#define SUSPECTS 32

typedef struct peer {
	char id[RT_NODE_ID_MAX + 1];
	char url[RT_NODE_URL_MAX];
	uint64_t free_bytes;
	int load;
	int64_t lease_left_ms;
	json_t *residents;        /* {"fn": {"state", "room", "inflight", "queued", ...}} */
} peer;

typedef struct suspect {
	char id[RT_NODE_ID_MAX + 1];
	uint64_t until_ns;
} suspect;

struct rt_cluster {
	uv_loop_t *loop;
	rt_registry *reg;
	rt_sched *sched;
	char id[RT_NODE_ID_MAX + 1];
	char url[RT_NODE_URL_MAX];
	int64_t lease_ms;
	int forwarding;
	int active;               /* shared registry: beats and routing */
	int started, stopped;
	int fresh;                /* the next beat is the first of this run */
	int notify_due;           /* a residency change waits for the soon timer */
	int beat_failing;         /* the last beat failed (logged once until one succeeds) */
	uv_timer_t beat, soon;
	peer *peers;              /* live nodes other than this one, sorted by id */
	size_t npeers;
	uint64_t nodes_gen;       /* rt_registry_nodes_generation at the last read of the rows */
	uint64_t read_ns;         /* when the rows were last read */
	uint64_t self_free;       /* free_bytes of this node's own row as last read (what the
				   * peers compare against); 0 until its first beat was read */
	int self_listed;
	suspect sus[SUSPECTS];
	rt_metric_family *m_fwd, *m_fail, *m_nodes;
};

static int id_char_ok(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       ch == '.' || ch == '_' || ch == '-';
}

int rt_cluster_node_id_ok(const char *id)
{
	size_t n = id ? strlen(id) : 0;
	if (n == 0 || n > RT_NODE_ID_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!id_char_ok(id[i]))
			return 0;
	return 1;
}

void rt_cluster_default_node_id(char *out)
{
	char host[256] = "";
	if (gethostname(host, sizeof host - 1) < 0 || !host[0])
		snprintf(host, sizeof host, "localhost");
	host[RT_NODE_ID_MAX] = 0;
	for (char *c = host; *c; c++)
		if (!id_char_ok(*c))
			*c = '-';
	snprintf(out, RT_NODE_ID_MAX + 1, "%s", host);
}

/* url_ok accepts http://HOST:PORT with an optional trailing slash and no path */
static int url_ok(const char *u)
{
	if (strncmp(u, "http://", 7) != 0 || strlen(u) >= RT_NODE_URL_MAX)
		return 0;
	const char *h = u + 7, *colon = strrchr(h, ':');
	if (!colon || colon == h)
		return 0;
	for (const char *p = h; p < colon; p++)
		if (*p <= ' ' || *p == '/' || *p == '?' || *p == '#' || *p == '@')
			return 0;
	const char *p = colon + 1;
	long port = 0;
	int digits = 0;
	for (; *p >= '0' && *p <= '9' && digits < 6; p++, digits++)
		port = port * 10 + (*p - '0');
	if (!digits || port < 1 || port > 65535)
		return 0;
	return *p == 0 || (p[0] == '/' && p[1] == 0);
}

static void peers_clear(rt_cluster *c)
{
	for (size_t i = 0; i < c->npeers; i++)
		json_decref(c->peers[i].residents);
	free(c->peers);
	c->peers = NULL;
	c->npeers = 0;
}

/* refresh re-reads the rows of the live nodes into the view; on failure the view stays */
static void refresh(rt_cluster *c)
{
	uint64_t gen = rt_registry_nodes_generation(c->reg);
	rt_node_row *rows = NULL;
	size_t n = 0;
	if (rt_registry_node_list(c->reg, &rows, &n) < 0)
		return;
	peer *ps = n ? calloc(n, sizeof *ps) : NULL;
	if (n && !ps) {
		rt_registry_node_rows_free(rows, n);
		return;
	}
	size_t k = 0;
	c->self_listed = 0;
	for (size_t i = 0; i < n; i++) {
		int self = !strcmp(rows[i].id, c->id);
		if (!self && rows[i].lease_left_ms <= 0)
			continue;
		json_t *st = rows[i].state ? json_loads(rows[i].state, 0, NULL) : NULL;
		json_t *fr = json_object_get(st, "free_bytes");
		uint64_t free_b = json_is_integer(fr) && json_integer_value(fr) > 0 ?
				  (uint64_t)json_integer_value(fr) : 0;
		if (self) {
			c->self_free = free_b;
			c->self_listed = 1;
		} else {
			peer *p = &ps[k++];
			snprintf(p->id, sizeof p->id, "%s", rows[i].id);
			snprintf(p->url, sizeof p->url, "%s", rows[i].advertise);
			p->lease_left_ms = rows[i].lease_left_ms;
			p->free_bytes = free_b;
			p->load = (int)json_integer_value(json_object_get(st, "load"));
			json_t *res = json_object_get(st, "residents");
			p->residents = json_is_object(res) ? json_incref(res) : json_object();
		}
		json_decref(st);
	}
	rt_registry_node_rows_free(rows, n);
	peers_clear(c);
	c->peers = ps;
	c->npeers = k;
	c->nodes_gen = gen;
	c->read_ns = rt_clock_mono_ns();
	rt_metric_set(c->m_nodes, (double)(k + 1), 0, NULL);
}

static char *state_text(rt_cluster *c)
{
	json_t *devs = json_array(), *all = rt_sched_devices_json(c->sched);
	size_t i;
	json_t *d;
	json_array_foreach(all, i, d)
		json_array_append_new(devs, json_pack("{s:O,s:O,s:O}", "device",
						      json_object_get(d, "device"), "memory_total",
						      json_object_get(d, "memory_total"), "memory_used",
						      json_object_get(d, "memory_used")));
	json_decref(all);
	json_t *o = json_pack("{s:o,s:I,s:i,s:o}", "devices", devs, "free_bytes",
			      (json_int_t)rt_sched_free_bytes(c->sched), "load",
			      rt_sched_calls(c->sched), "residents", rt_sched_residents_json(c->sched));
	char *txt = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	return txt;
}

static void beat(rt_cluster *c, int notify)
{
	if (!c->active || c->stopped)
		return;
	char *st = state_text(c);
	int rc = st ? rt_registry_node_beat(c->reg, c->id, c->url, st, c->lease_ms, c->fresh,
					    notify) : -ENOMEM;
	free(st);
	if (rc < 0) {
		if (!c->beat_failing)
			rt_logf(RT_LOG_WARN, "cluster: node %s cannot renew its lease: %s", c->id,
				strerror(-rc));
		c->beat_failing = 1;
		return;
	}
	if (c->beat_failing)
		rt_logf(RT_LOG_INFO, "cluster: node %s renews its lease again", c->id);
	c->beat_failing = 0;
	c->fresh = 0;
	refresh(c);
}

static void on_beat(uv_timer_t *t)
{
	beat(t->data, 0);
}

static void on_soon(uv_timer_t *t)
{
	rt_cluster *c = t->data;
	c->notify_due = 0;
	beat(c, 1);
}

/* the scheduler's residency hook: announce the change with a notifying beat, coalesced */
static void on_residency(void *ud)
{
	rt_cluster *c = ud;
	if (!c->started || c->stopped || c->notify_due)
		return;
	c->notify_due = 1;
	uv_timer_start(&c->soon, on_soon, 0, 0);
}

int rt_cluster_new(uv_loop_t *loop, rt_registry *reg, rt_sched *sched, rt_metrics *m,
		   const rt_cluster_config *cfg, rt_cluster **out)
{
	*out = NULL;
	const char *adv = cfg->advertise ? cfg->advertise : "";
	if (!rt_cluster_node_id_ok(cfg->node_id) || (adv[0] && !url_ok(adv)))
		return -EINVAL;
	rt_cluster *c = calloc(1, sizeof *c);
	if (!c)
		return -ENOMEM;
	c->loop = loop;
	c->reg = reg;
	c->sched = sched;
	snprintf(c->id, sizeof c->id, "%s", cfg->node_id);
	snprintf(c->url, sizeof c->url, "%s", adv);
	size_t ul = strlen(c->url);
	if (ul && c->url[ul - 1] == '/')
		c->url[ul - 1] = 0;
	c->lease_ms = cfg->lease_ms > 0 ? cfg->lease_ms : RT_CLUSTER_DEFAULT_LEASE_MS;
	c->forwarding = cfg->forwarding;
	c->active = rt_registry_shared(reg);
	c->fresh = 1;
	uv_timer_init(loop, &c->beat);
	uv_timer_init(loop, &c->soon);
	c->beat.data = c->soon.data = c;
	c->m_fwd = rt_metrics_family(m, "thaw_forwarded_calls_total", RT_METRIC_COUNTER,
				     "Calls this node forwarded to a peer, by peer node.", NULL, 0);
	c->m_fail = rt_metrics_family(m, "thaw_peer_failures_total", RT_METRIC_COUNTER,
				      "Forwards that failed before the peer answered, by peer node.",
				      NULL, 0);
	c->m_nodes = rt_metrics_family(m, "thaw_cluster_nodes", RT_METRIC_GAUGE,
				       "Live nodes this node sees, itself included.", NULL, 0);
	rt_metric_family *info = rt_metrics_family(m, "thaw_node_info", RT_METRIC_GAUGE,
						   "This node's id and registry; always 1.", NULL, 0);
	const char *kv[] = {"node", c->id, "registry", rt_registry_backend(reg)};
	rt_metric_set(info, 1, 2, kv);
	rt_metric_set(c->m_nodes, 1, 0, NULL);
	*out = c;
	return 0;
}

void rt_cluster_start(rt_cluster *c)
{
	if (c->started)
		return;
	c->started = 1;
	if (!c->active)
		return;
	rt_sched_set_residency_hook(c->sched, on_residency, c);
	beat(c, 1);
	uint64_t every = (uint64_t)(c->lease_ms / 6 > 0 ? c->lease_ms / 6 : 1);
	uv_timer_start(&c->beat, on_beat, every, every);
}

void rt_cluster_stop(rt_cluster *c)
{
	if (!c || c->stopped)
		return;
	c->stopped = 1;
	uv_timer_stop(&c->beat);
	uv_timer_stop(&c->soon);
	if (c->active && c->started) {
		rt_sched_set_residency_hook(c->sched, NULL, NULL);
		if (rt_registry_node_leave(c->reg, c->id) < 0)
			rt_logf(RT_LOG_WARN, "cluster: node %s could not drop its row; its lease "
				"expires in %lld ms", c->id, (long long)c->lease_ms);
	}
}

void rt_cluster_free(rt_cluster *c)
{
	if (!c)
		return;
	peers_clear(c);
	free(c);
}

const char *rt_cluster_node_id(const rt_cluster *c)
{
	return c->id;
}

static int is_suspect(rt_cluster *c, const char *id)
{
	uint64_t now = rt_clock_mono_ns();
	for (int i = 0; i < SUSPECTS; i++)
		if (c->sus[i].until_ns > now && !strcmp(c->sus[i].id, id))
			return 1;
	return 0;
}

void rt_cluster_peer_failed(rt_cluster *c, const char *node)
{
	uint64_t now = rt_clock_mono_ns();
	int slot = 0;
	for (int i = 0; i < SUSPECTS; i++) {
		if (!strcmp(c->sus[i].id, node) || c->sus[i].until_ns <= now) {
			slot = i;
			break;
		}
		if (c->sus[i].until_ns < c->sus[slot].until_ns)
			slot = i;
	}
	snprintf(c->sus[slot].id, sizeof c->sus[slot].id, "%s", node);
	c->sus[slot].until_ns = now + (uint64_t)RT_CLUSTER_SUSPECT_MS * 1000000u;
	const char *kv[] = {"peer", node};
	rt_metric_add(c->m_fail, 1, 1, kv);
}

void rt_cluster_note_forward(rt_cluster *c, const char *fn, const rt_route *route)
{
	const char *kv[] = {"peer", route->node};
	rt_metric_add(c->m_fwd, 1, 1, kv);
	if (!route->cold)
		return;
	for (size_t i = 0; i < c->npeers; i++)
		if (!strcmp(c->peers[i].id, route->node) &&
		    !json_object_get(c->peers[i].residents, fn))
			json_object_set_new(c->peers[i].residents, fn,
					    json_pack("{s:s,s:b,s:i,s:i}", "state", "loading",
						      "room", 1, "inflight", 0, "queued", 0));
}

/* the routing state of fn at peer p: 0 none, else 1 with *room and *busy (calls of fn there) */
static int peer_has(const peer *p, const char *fn, int *room, int *busy)
{
	json_t *r = json_object_get(p->residents, fn);
	const char *st = json_string_value(json_object_get(r, "state"));
	if (!st || !strcmp(st, "cold"))
		return 0;
	*room = json_is_true(json_object_get(r, "room"));
	*busy = (int)(json_integer_value(json_object_get(r, "inflight")) +
		      json_integer_value(json_object_get(r, "queued")));
	return 1;
}

static int usable(rt_cluster *c, const peer *p)
{
	return p->url[0] && p->lease_left_ms > 0 && !is_suspect(c, p->id);
}

static void to_peer(rt_route *out, const peer *p, int cold)
{
	out->peer = 1;
	out->cold = cold;
	snprintf(out->node, sizeof out->node, "%s", p->id);
	snprintf(out->url, sizeof out->url, "%s", p->url);
}

static int decide(rt_cluster *c, const char *fn, int here, rt_route *out);

/* to_self: the call runs on this node */
static void to_self(const rt_cluster *c, rt_route *out)
{
	memset(out, 0, sizeof *out);
	snprintf(out->node, sizeof out->node, "%s", c->id);
	snprintf(out->url, sizeof out->url, "%s", c->url);
}

void rt_cluster_route(rt_cluster *c, const char *fn, rt_route *out)
{
	to_self(c, out);
	int room = 0;
	int here = rt_sched_local_state(c->sched, fn, &room);
	if (!c->active || !c->forwarding || c->stopped || (here != RT_SCHED_COLD && room))
		return;
	/* a peer announced a residency change: read the rows again, at most every
	 * RT_CLUSTER_REREAD_MS (a burst of changes costs one read, not one per change) */
	if (rt_registry_nodes_generation(c->reg) != c->nodes_gen &&
	    rt_clock_mono_ns() - c->read_ns >= (uint64_t)RT_CLUSTER_REREAD_MS * 1000000u)
		refresh(c);
	if (decide(c, fn, here, out) == 0)
		return;
	/* a new copy: decided on the newest rows there are (notifications heard just now
	 * included), so that nodes deciding at once agree */
	rt_registry_tick(c->reg);
	if (rt_registry_nodes_generation(c->reg) != c->nodes_gen) {
		refresh(c);
		to_self(c, out);
		decide(c, fn, here, out);
	}
}

/* decide fills out for fn from the view (here: fn's state on this node); 0 when the call
 * goes to a copy that exists, 1 when it makes a new one (here or at a peer) */
static int decide(rt_cluster *c, const char *fn, int here, rt_route *out)
{
	/* 2: a peer with it and room, the least busy */
	const peer *best = NULL;
	int best_busy = 0, holders = here != RT_SCHED_COLD;
	for (size_t i = 0; i < c->npeers; i++) {
		const peer *p = &c->peers[i];
		int proom, busy;
		if (!usable(c, p) || !peer_has(p, fn, &proom, &busy))
			continue;
		holders++;
		if (proom && (!best || busy < best_busy ||
			      (busy == best_busy && p->load < best->load))) {
			best = p;
			best_busy = busy;
		}
	}
	if (best) {
		to_peer(out, best, 0);
		return 0;
	}
	/* 3 and 4: a new copy on the node with the most free device memory among those without
	 * it (all nodes when none has it); this node when it holds the only full copies and no
	 * other node can take one */
	/* this node's free memory as its row says, which is what the peers compare */
	uint64_t self_free = here != RT_SCHED_COLD ? 0 :
			     c->self_listed ? c->self_free : rt_sched_free_bytes(c->sched);
	int self_ok = here == RT_SCHED_COLD;
	const peer *target = NULL;
	for (size_t i = 0; i < c->npeers; i++) {
		const peer *p = &c->peers[i];
		int proom, busy;
		if (!usable(c, p) || peer_has(p, fn, &proom, &busy))
			continue;
		if (!target || p->free_bytes > target->free_bytes)
			target = p;   /* ties: the first, the smallest id (rows sorted by id) */
	}
	out->cold = holders == 0;
	if (!target)
		return here == RT_SCHED_COLD;
	if (self_ok && (self_free > target->free_bytes ||
			(self_free == target->free_bytes && strcmp(c->id, target->id) < 0)))
		return 1;
	to_peer(out, target, holders == 0);
	return 1;
}

json_t *rt_cluster_json(rt_cluster *c)
{
	json_t *nodes = json_array();
	json_t *self = json_pack("{s:s,s:s,s:b,s:I,s:I,s:i,s:o}", "id", c->id, "advertise", c->url,
				 "self", 1, "lease_left_ms", (json_int_t)c->lease_ms, "free_bytes",
				 (json_int_t)rt_sched_free_bytes(c->sched), "load",
				 rt_sched_calls(c->sched), "functions",
				 rt_sched_residents_json(c->sched));
	int placed = 0;
	for (size_t i = 0; i < c->npeers; i++) {
		const peer *p = &c->peers[i];
		if (!placed && strcmp(c->id, p->id) < 0) {
			json_array_append_new(nodes, self);
			placed = 1;
		}
		json_array_append_new(nodes, json_pack("{s:s,s:s,s:b,s:I,s:I,s:i,s:O,s:b}", "id", p->id,
						       "advertise", p->url, "self", 0,
						       "lease_left_ms", (json_int_t)p->lease_left_ms,
						       "free_bytes", (json_int_t)p->free_bytes,
						       "load", p->load, "functions", p->residents,
						       "suspect", is_suspect(c, p->id)));
	}
	if (!placed)
		json_array_append_new(nodes, self);
	return json_pack("{s:s,s:s,s:b,s:b,s:I,s:o}", "node", c->id, "registry",
			 rt_registry_backend(c->reg), "shared", c->active, "forwarding",
			 c->forwarding, "lease_ms", (json_int_t)c->lease_ms, "nodes", nodes);
}

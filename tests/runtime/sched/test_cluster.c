/* test_cluster.c — routing decisions of rt_cluster on a real PostgreSQL registry (tests/pg.c):
 * a node's view of its peers comes from their lease rows (written here with
 * rt_registry_node_beat through a second registry handle, as another node would), its own
 * state from a real scheduler (CPU lane, nothing loaded). Checked: a peer holding the function
 * with room gets the call (the least busy of several); a full copy elsewhere makes a new copy
 * on the node with the most free memory, itself included; nothing anywhere: the most free
 * memory wins, ties to the smallest id; a failed peer is left out; a cold forward marks the
 * function loading there, so the next call follows it; an expired lease drops a peer; the
 * node's own beat publishes its state; without forwarding or a shared registry every call
 * runs here. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>
#include "runtime/base/rt_metrics.h"
#include "runtime/sched/rt_cluster.h"
#include "runtime/sched/rt_sched.h"
#include "runtime/store/rt_registry.h"
#include "tests/pg.h"
#include "tests/t.h"

typedef struct env {
	uv_loop_t loop;
	rt_registry *reg, *other;   /* this node's registry handle, the peers' */
	rt_metrics *m;
	rt_sched *s;
	rt_cluster *c;
	uint64_t self_free;
} env;

static int env_open(env *e, int forwarding)
{
	memset(e, 0, sizeof *e);
	char uri[512], err[512];
	t_pg *pg = t_pg_server();
	if (!pg || t_pg_new_db(pg, uri, sizeof uri) < 0)
		return -1;
	uv_loop_init(&e->loop);
	if (rt_registry_open_url(uri, t_tmpdir(), &e->reg, err, sizeof err) < 0 ||
	    rt_registry_open_url(uri, t_tmpdir(), &e->other, err, sizeof err) < 0) {
		fprintf(stderr, "  open: %s\n", err);
		return -1;
	}
	e->m = rt_metrics_new();
	rt_sched_config sc;
	rt_sched_config_defaults(&sc);
	sc.cpu_threads = 1;
	sc.no_gpu = 1;
	sc.cpu_budget_bytes = 1000;
	if (rt_sched_new(&e->loop, e->reg, e->m, &sc, &e->s) < 0)
		return -1;
	rt_sched_start(e->s);
	e->self_free = rt_sched_free_bytes(e->s);
	rt_cluster_config cc = {.node_id = "n2", .advertise = "http://127.0.0.1:9002",
				.lease_ms = 3000, .forwarding = forwarding};
	if (rt_cluster_new(&e->loop, e->reg, e->s, e->m, &cc, &e->c) < 0)
		return -1;
	rt_cluster_start(e->c);
	return 0;
}

static void close_one(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

static int stopped;
static void on_stopped(void *ud)
{
	(void)ud;
	stopped = 1;
}

static void env_close(env *e)
{
	rt_cluster_stop(e->c);
	if (e->s) {
		stopped = 0;
		rt_sched_stop(e->s, on_stopped, NULL);
		while (!stopped)
			uv_run(&e->loop, UV_RUN_ONCE);
	}
	uv_walk(&e->loop, close_one, NULL);
	uv_run(&e->loop, UV_RUN_DEFAULT);
	rt_cluster_free(e->c);
	rt_sched_free(e->s);
	rt_registry_close(e->reg);
	rt_registry_close(e->other);
	rt_metrics_free(e->m);
	uv_loop_close(&e->loop);
}

/* peer writes node id's row: free bytes, and residents (JSON object text) */
static void peer(env *e, const char *id, uint64_t free_b, const char *residents, int64_t lease)
{
	char st[1024], url[64];
	snprintf(st, sizeof st, "{\"devices\":[],\"free_bytes\":%llu,\"load\":0,\"residents\":%s}",
		 (unsigned long long)free_b, residents);
	snprintf(url, sizeof url, "http://127.0.0.1:90%s", id + 1);
	T_EQ_INT(rt_registry_node_beat(e->other, id, url, st, lease, 1, 1), 0);
	/* the notification reaches this node's registry */
	for (int i = 0; i < 100; i++) {
		rt_registry_tick(e->reg);
		usleep(2000);
	}
}

static void route(env *e, const char *fn, rt_route *r)
{
	rt_registry_tick(e->reg);
	rt_cluster_route(e->c, fn, r);
}

static void test_routes(void)
{
	env e;
	T_EQ_INT(env_open(&e, 1), 0);
	if (!e.c) {
		env_close(&e);
		return;
	}
	rt_route r;
	/* nothing anywhere, nobody else: here, a cold start */
	route(&e, "f", &r);
	T_EQ_INT(r.peer, 0);
	T_EQ_INT(r.cold, 1);
	/* a peer with more free memory takes the cold start; with as much, the smaller id */
	peer(&e, "n3", e.self_free + 100, "{}", 3000);
	route(&e, "f", &r);
	T_EQ_INT(r.peer, 1);
	T_EQ_INT(r.cold, 1);
	T_EQ_STR(r.node, "n3");
	T_EQ_STR(r.url, "http://127.0.0.1:903");
	peer(&e, "n1", e.self_free + 100, "{}", 3000);
	route(&e, "f", &r);
	T_EQ_STR(r.node, "n1");
	/* the cold forward marks f loading at n1: the next call follows it */
	rt_cluster_note_forward(e.c, "f", &r);
	route(&e, "f", &r);
	T_EQ_INT(r.peer, 1);
	T_EQ_INT(r.cold, 0);
	T_EQ_STR(r.node, "n1");
	/* holders with room: the least busy */
	peer(&e, "n1", 10, "{\"g\":{\"state\":\"warm\",\"room\":true,\"inflight\":3,\"queued\":0}}",
	     3000);
	peer(&e, "n3", 10, "{\"g\":{\"state\":\"warm\",\"room\":true,\"inflight\":1,\"queued\":0}}",
	     3000);
	route(&e, "g", &r);
	T_EQ_INT(r.peer, 1);
	T_EQ_STR(r.node, "n3");
	/* a failed peer is left out: n1 has g too */
	rt_cluster_peer_failed(e.c, "n3");
	route(&e, "g", &r);
	T_EQ_STR(r.node, "n1");
	/* every copy full: a new copy where memory is most free among the nodes without one —
	 * this node here (n1 and n3 hold g, n4 has less free memory than this node) */
	peer(&e, "n1", 10, "{\"g\":{\"state\":\"warm\",\"room\":false,\"inflight\":8,\"queued\":8}}",
	     3000);
	peer(&e, "n4", e.self_free > 10 ? e.self_free - 10 : 0, "{}", 3000);
	route(&e, "g", &r);
	T_EQ_INT(r.peer, 0);
	T_EQ_INT(r.cold, 0);
	/* a peer with more free memory than this node takes the new copy */
	peer(&e, "n4", e.self_free + 50, "{}", 3000);
	route(&e, "g", &r);
	T_EQ_INT(r.peer, 1);
	T_EQ_STR(r.node, "n4");
	T_EQ_INT(r.cold, 0);
	/* a lease that runs out drops the peer: n4 beats a 150 ms lease and stops */
	peer(&e, "n4", e.self_free + 50, "{}", 150);
	usleep(300000);
	rt_registry_node_leave(e.other, "n1");
	peer(&e, "n3", 0, "{}", 3000);   /* a notification, so the view is read again */
	route(&e, "g", &r);
	T_EQ_INT(r.peer, 0);   /* n1 left, n4 expired, n3 has less free memory: here */
	T_EQ_INT(r.cold, 1);
	/* this node's own row carries its state */
	rt_node_row *rows = NULL;
	size_t n = 0;
	T_EQ_INT(rt_registry_node_list(e.other, &rows, &n), 0);
	int self = 0;
	for (size_t i = 0; i < n; i++)
		if (!strcmp(rows[i].id, "n2")) {
			self = 1;
			T_EQ_STR(rows[i].advertise, "http://127.0.0.1:9002");
			T_CHECK(rows[i].state && strstr(rows[i].state, "\"free_bytes\""));
			T_CHECK(rows[i].lease_left_ms > 0);
		}
	T_CHECK(self);
	rt_registry_node_rows_free(rows, n);
	json_t *j = rt_cluster_json(e.c);
	T_EQ_STR(json_string_value(json_object_get(j, "node")), "n2");
	T_CHECK(json_is_true(json_object_get(j, "shared")));
	T_EQ_INT(json_array_size(json_object_get(j, "nodes")), 2);   /* n2 and n3 */
	json_decref(j);
	env_close(&e);
}

static void test_no_forwarding_runs_here(void)
{
	env e;
	T_EQ_INT(env_open(&e, 0), 0);
	if (!e.c) {
		env_close(&e);
		return;
	}
	peer(&e, "n1", e.self_free + 100, "{\"f\":{\"state\":\"warm\",\"room\":true}}", 3000);
	rt_route r;
	route(&e, "f", &r);
	T_EQ_INT(r.peer, 0);
	env_close(&e);
}

static void test_ids_and_urls(void)
{
	T_CHECK(rt_cluster_node_id_ok("node-1.a_b"));
	T_CHECK(!rt_cluster_node_id_ok(""));
	T_CHECK(!rt_cluster_node_id_ok("a b"));
	T_CHECK(!rt_cluster_node_id_ok("a/b"));
	char longid[80];
	memset(longid, 'a', 64);
	longid[64] = 0;
	T_CHECK(!rt_cluster_node_id_ok(longid));
	longid[63] = 0;
	T_CHECK(rt_cluster_node_id_ok(longid));
	/* advertised URLs: http://HOST:PORT only */
	uv_loop_t loop;
	uv_loop_init(&loop);
	char err[256];
	rt_registry *reg;
	T_EQ_INT(rt_registry_open(t_tmpdir(), &reg, err, sizeof err), 0);
	rt_metrics *m = rt_metrics_new();
	const char *bad[] = {"https://a:1", "http://a", "http://a:0", "http://a:70000", "http://:80",
			     "http://a:80/x", "http://u@a:80", "ftp://a:1"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		rt_cluster *c = NULL;
		rt_cluster_config cc = {.node_id = "n", .advertise = bad[i]};
		T_EQ_INT(rt_cluster_new(&loop, reg, NULL, m, &cc, &c), -EINVAL);
		T_CHECK(c == NULL);
	}
	rt_cluster *c = NULL;
	rt_cluster_config cc = {.node_id = "n", .advertise = "http://[::1]:8080/"};
	T_EQ_INT(rt_cluster_new(&loop, reg, NULL, m, &cc, &c), 0);
	/* the embedded registry: no cluster, every call here */
	rt_cluster_start(c);
	rt_cluster_stop(c);
	uv_walk(&loop, close_one, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	rt_cluster_free(c);
	rt_metrics_free(m);
	rt_registry_close(reg);
	uv_loop_close(&loop);
}

void t_main(void)
{
	T_RUN(test_ids_and_urls);
	T_RUN(test_routes);
	T_RUN(test_no_forwarding_runs_here);
}

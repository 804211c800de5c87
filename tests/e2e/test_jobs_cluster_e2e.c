/* test_jobs_cluster_e2e.c — jobs leased across nodes, over real HTTP: two `thaw serve` daemons
 * (nodes "node-a" and "node-b"), each with its own data directory, on one registry (a SQLite
 * file, then a PostgreSQL database: tests/pg.h) and one --shared-dir. A job submitted on one
 * node runs exactly once in the cluster and both nodes report it; kill -9 of the node running
 * a fine-tune: the other node resumes it from its checkpoint in the shared directory within the
 * lease time, and it ends with the figures and weights of an uninterrupted run; a cancel sent
 * to the node that does not run a job stops it on the node that does. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <jansson.h>
#include "snapshot/snap.h"
#include "tests/e2e/e2e.h"
#include "tests/pg.h"
#include "tests/t.h"

#define LEASE_MS 1000

static e2e_server node[2];
static int up[2];
static const char *src;
static char shared[600], data[2][600], root[700], registry[700];

static const char *const node_names[2] = {"node-a", "node-b"};

static int start_node(int i)
{
	const char *args[] = {"--no-access-log", "--job-checkpoint", "0.05", "--node-id",
			      node_names[i], "--node-lease", "1000", "--shared-dir", shared,
			      "--registry", registry, "--allow-root", root, NULL};
	up[i] = e2e_start_in(&node[i], data[i], args, NULL) == 0;
	return up[i];
}

static json_t *job(const e2e_server *s, long long id)
{
	char p[64];
	json_t *o = NULL;
	snprintf(p, sizeof p, "/v1/jobs/%lld", id);
	e2e_call_json(s, "GET", p, NULL, NULL, &o);
	return o;
}

static const char *jstr(json_t *o, const char *k)
{
	const char *v = json_string_value(json_object_get(o, k));
	return v ? v : "";
}

static int final(const char *st)
{
	return !strcmp(st, "succeeded") || !strcmp(st, "failed") || !strcmp(st, "cancelled");
}

/* polls job id on node s until it is in a final state (or timeout_s passed) */
static json_t *wait_final(const e2e_server *s, long long id, double timeout_s)
{
	double end = e2e_now_s() + timeout_s;
	json_t *o = NULL;
	while (e2e_now_s() < end) {
		json_decref(o);
		o = job(s, id);
		if (final(jstr(o, "state")))
			break;
		usleep(20000);
	}
	if (!final(jstr(o, "state")))
		fprintf(stderr, "  job %lld: still %s\n", id, jstr(o, "state"));
	return o;
}

static long long submit(const e2e_server *s, int epochs)
{
	char body[1024];
	snprintf(body, sizeof body, "{\"type\": \"finetune\", \"function\": \"digits\", \"revision\": 1, "
		 "\"params\": {\"data\": \"%s/tests/data/digits.csv.gz\", \"epochs\": %d, "
		 "\"learning_rate\": 0.003, \"batch_size\": 16, \"feature_scale\": 0.0625, "
		 "\"seed\": 5}}", src, epochs);
	json_t *o = NULL;
	int st = e2e_call_json(s, "POST", "/v1/jobs", NULL, body, &o);
	long long id = json_integer_value(json_object_get(o, "id"));
	if (st != 202)
		fprintf(stderr, "  submit: %d %s\n", st, jstr(o, "error"));
	json_decref(o);
	return st == 202 ? id : -1;
}

/* the node index whose id is name, -1 for none */
static int node_of(const char *name)
{
	for (int i = 0; i < 2; i++)
		if (!strcmp(name, node_names[i]))
			return i;
	return -1;
}


static json_t *baseline;   /* the uninterrupted run's job object */

/* a fresh cluster of two nodes on the registry url (NULL: a SQLite file in the shared
 * directory); 0, or -1 with the reason on stderr */
static int cluster_start(const char *tag, const char *url)
{
	src = getenv("THAW_SRC");
	if (!src)
		src = ".";
	snprintf(root, sizeof root, "%s/tests/data", src);
	snprintf(shared, sizeof shared, "%s/%s-shared", t_tmpdir(), tag);
	mkdir(shared, 0700);
	for (int i = 0; i < 2; i++) {
		snprintf(data[i], sizeof data[i], "%s/%s-data-%d", t_tmpdir(), tag, i);
		mkdir(data[i], 0700);
	}
	if (url)
		snprintf(registry, sizeof registry, "%s", url);
	else
		snprintf(registry, sizeof registry, "sqlite:%s/registry.db", shared);
	const char *bin = getenv("THAW_BIN");
	char cmd[2400];
	/* the source snapshot in the shared directory, where a deploy by name finds it */
	snprintf(cmd, sizeof cmd, "mkdir -p %s/snapshots && %s snapshot pack "
		 "%s/tests/data/mlp_digits/model.safetensors -o %s/snapshots/digits.thaw --kind mlp "
		 ">/dev/null", shared, bin ? bin : "build/thaw", src, shared);
	if (system(cmd) != 0) {
		fprintf(stderr, "  cannot pack the digits snapshot\n");
		return -1;
	}
	json_decref(baseline);
	baseline = NULL;
	return start_node(0) && start_node(1) ? 0 : -1;
}

static void cluster_stop(void)
{
	for (int i = 0; i < 2; i++)
		if (up[i])
			e2e_stop(&node[i], SIGTERM, 20);
	up[0] = up[1] = 0;
}

static void check_deploy_seen_by_both(void)
{
	json_t *o = NULL;
	T_EQ_INT(e2e_call_json(&node[0], "PUT", "/v1/functions/digits",
			       NULL, "{\"kind\": \"mlp\", \"snapshot\": \"digits.thaw\"}", &o), 201);
	json_decref(o);
	/* resolved in the shared directory */
	T_EQ_INT(e2e_call_json(&node[1], "GET", "/v1/functions/digits", NULL, NULL, &o), 200);
	T_CHECK(strstr(jstr(o, "snapshot_path"), "-shared/snapshots/digits.thaw") != NULL);
	json_decref(o);
}

static void check_job_runs_once(void)
{
	long long id = submit(&node[0], 120);
	T_CHECK(id > 0);
	baseline = wait_final(&node[1], id, 180);
	T_EQ_STR(jstr(baseline, "state"), "succeeded");
	T_EQ_INT(json_integer_value(json_object_get(json_object_get(baseline, "result"), "revision")), 2);
	/* the result lies in the shared directory */
	const char *res = json_string_value(json_object_get(json_object_get(baseline, "result"), "snapshot"));
	T_CHECK(res && strncmp(res, shared, strlen(shared)) == 0);
	/* one node ran it, the other never started it */
	char needle[80];
	snprintf(needle, sizeof needle, "job %lld starting on", id);
	int ran = e2e_log_contains(&node[0], needle) + e2e_log_contains(&node[1], needle);
	T_EQ_INT(ran, 1);
	snprintf(needle, sizeof needle, "job %lld succeeded", id);
	T_EQ_INT(e2e_log_contains(&node[0], needle) + e2e_log_contains(&node[1], needle), 1);
	/* both answer the same for it */
	json_t *a = job(&node[0], id);
	T_EQ_STR(jstr(a, "state"), "succeeded");
	T_CHECK(json_equal(json_object_get(a, "metrics"), json_object_get(baseline, "metrics")));
	json_decref(a);
}

static void check_kill9_other_node_resumes(void)
{
	T_CHECK(baseline != NULL);
	if (!baseline)
		return;
	long long id = submit(&node[1], 120);
	T_CHECK(id > 0);
	/* running with a checkpoint written, on one of the two */
	json_t *o = NULL;
	double end = e2e_now_s() + 120;
	while (e2e_now_s() < end) {
		json_decref(o);
		o = job(&node[1], id);
		if (json_is_string(json_object_get(o, "checkpoint")) &&
		    json_integer_value(json_object_get(o, "step")) > 0 && node_of(jstr(o, "node")) >= 0)
			break;
		usleep(5000);
	}
	int victim = node_of(jstr(o, "node")), other = 1 - victim;
	T_CHECK(victim >= 0);
	T_CHECK(!final(jstr(o, "state")));
	json_decref(o);
	if (victim < 0)
		return;
	kill(node[victim].pid, SIGKILL);
	e2e_stop(&node[victim], SIGKILL, 5);
	up[victim] = 0;
	double killed = e2e_now_s();
	/* the other node resumes it once the lease ran out */
	char needle[80];
	snprintf(needle, sizeof needle, "job %lld resumed from its checkpoint at step", id);
	int resumed = e2e_wait_log(&node[other], needle, 30000);
	double took = e2e_now_s() - killed;
	T_CHECK(resumed);
	fprintf(stderr, "  %s resumed job %lld %.0f ms after the kill of %s (lease %d ms)\n",
		node_names[other], id, took * 1000, node_names[victim], LEASE_MS);
	/* within the lease, plus the claimer's poll and a margin for a loaded machine */
	T_CHECK(took * 1000 < LEASE_MS + 2500);
	snprintf(needle, sizeof needle, "job %lld resumed from its checkpoint at step 0\"", id);
	T_CHECK(!e2e_log_contains(&node[other], needle));
	o = wait_final(&node[other], id, 180);
	T_EQ_STR(jstr(o, "state"), "succeeded");
	T_EQ_STR(jstr(o, "node"), "");
	/* the result equals the uninterrupted run's */
	T_CHECK(json_equal(json_object_get(o, "metrics"), json_object_get(baseline, "metrics")));
	T_EQ_INT(json_integer_value(json_object_get(o, "step")),
		 json_integer_value(json_object_get(baseline, "step")));
	json_t *ta = e2e_snapshot_digests(json_string_value(json_object_get(json_object_get(o, "result"), "snapshot")));
	json_t *tb = e2e_snapshot_digests(json_string_value(json_object_get(json_object_get(baseline, "result"),
								      "snapshot")));
	T_CHECK(json_object_size(ta) > 0);
	T_CHECK(json_equal(ta, tb));
	json_decref(ta);
	json_decref(tb);
	json_decref(o);
	/* the killed node comes back under its id and leaves the finished job alone */
	T_CHECK(start_node(victim));
}

static void check_cancel_from_other_node(void)
{
	T_CHECK(up[0] && up[1]);
	if (!up[0] || !up[1])
		return;
	long long id = submit(&node[0], 100000);
	json_t *o = NULL;
	double end = e2e_now_s() + 60;
	while (e2e_now_s() < end) {
		json_decref(o);
		o = job(&node[0], id);
		if (node_of(jstr(o, "node")) >= 0 && json_integer_value(json_object_get(o, "step")) > 0)
			break;
		usleep(5000);
	}
	int owner = node_of(jstr(o, "node"));
	json_decref(o);
	T_CHECK(owner >= 0);
	if (owner < 0)
		return;
	char p[64];
	snprintf(p, sizeof p, "/v1/jobs/%lld", id);
	T_EQ_INT(e2e_call_json(&node[1 - owner], "DELETE", p, NULL, NULL, NULL), 200);
	/* the owner stops it at its next save or renewal */
	T_CHECK(e2e_wait_log(&node[owner], "cancelled from another node", LEASE_MS * 5));
	/* and leaves its lane once the unit in flight ends */
	o = NULL;
	end = e2e_now_s() + 30;
	while (e2e_now_s() < end) {
		json_decref(o);
		o = job(&node[owner], id);
		if (!json_object_get(o, "lane"))
			break;
		usleep(5000);
	}
	T_EQ_STR(jstr(o, "state"), "cancelled");
	T_CHECK(json_object_get(o, "lane") == NULL);
	T_CHECK(json_is_null(json_object_get(o, "checkpoint")));   /* removed, and the row says so */
	json_decref(o);
}

/* the checks on a cluster on url (NULL: SQLite); a node that does not start fails the test */
static void run_cluster(const char *tag, const char *url)
{
	int ok = cluster_start(tag, url) == 0;
	T_CHECK(ok);
	if (ok) {
		/* on the store asked for */
		const char *want = url ? "\"registry\":\"postgresql\"" : "\"registry\":\"sqlite\"";
		T_CHECK(e2e_log_contains(&node[0], want) && e2e_log_contains(&node[1], want));
		check_deploy_seen_by_both();
		check_job_runs_once();
		check_kill9_other_node_resumes();
		check_cancel_from_other_node();
	}
	cluster_stop();
}

static void test_cluster_sqlite(void)
{
	run_cluster("sqlite", NULL);
}

static void test_cluster_postgresql(void)
{
	char uri[512];
	t_pg *pg = t_pg_server();
	if (!pg || t_pg_new_db(pg, uri, sizeof uri) < 0)
		return;   /* counted as a failure */
	run_cluster("pg", uri);
}

void t_main(void)
{
	T_RUN(test_cluster_sqlite);
	T_RUN(test_cluster_postgresql);
	json_decref(baseline);
}

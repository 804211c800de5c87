/* test_jobs_lease.c — job leases (rt_jobstore.h) with two registry handles (and two
 * processes) on one store, as two daemons sharing it have, on a SQLite file and on PostgreSQL
 * (tests/pg.h): a claim race has exactly one winner, an expired lease makes a job a candidate
 * again, a save after the lease was lost is -ESTALE, recovery touches only the starting node's
 * jobs; and the runner stops a job taken over by another node (no file touched) or cancelled
 * from another node. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <sqlite3.h>
#include "runtime/store/rt_jobstore.h"
#include "tests/pg.h"
#include "tests/t.h"
#include "tests/runtime/jobs/jobs_env.h"

/* the store the store tests run on: a fresh SQLite file, or a fresh PostgreSQL database */
static int use_pg;

static const char *fresh_store(void)
{
	static char url[1024];
	static int n;
	if (use_pg) {
		t_pg *pg = t_pg_server();
		if (!pg || t_pg_new_db(pg, url, sizeof url) < 0)
			return NULL;   /* counted as a failure */
		return url;
	}
	char d[900];
	snprintf(d, sizeof d, "%s/lease-%d", t_tmpdir(), ++n);
	mkdir(d, 0700);
	snprintf(url, sizeof url, "sqlite:%s/registry.db", d);
	return url;
}

/* a registry handle on url (a store URL, or a data directory: its DATA/registry.db) */
static rt_registry *open_reg(const char *url)
{
	char err[256];
	rt_registry *reg = NULL;
	if (!url)
		return NULL;
	int rc = strchr(url, ':') ? rt_registry_open_url(url, NULL, &reg, err, sizeof err) :
		 rt_registry_open(url, &reg, err, sizeof err);
	if (rc < 0)
		fprintf(stderr, "  open %s: %s\n", url, err);
	return reg;
}

static int64_t insert_job(rt_registry *reg)
{
	rt_job_row r;
	memset(&r, 0, sizeof r);
	snprintf(r.type, sizeof r.type, "quantize");
	snprintf(r.snapshot, sizeof r.snapshot, "/nonexistent.thaw");
	snprintf(r.device, sizeof r.device, "cpu");
	r.created_ms = rt_clock_wall_ms();
	int64_t id = -1;
	return rt_jobstore_insert(reg, &r, &id) == 0 ? id : -1;
}

/* job id as stored (owner, state), read through reg */
static int stored(rt_registry *reg, int64_t id, char *owner, size_t cap)
{
	rt_job_row r;
	if (rt_jobstore_get(reg, id, &r) < 0)
		return -1;
	if (owner)
		snprintf(owner, cap, "%s", r.owner);
	int st = r.state;
	rt_job_row_clear(&r);
	return st;
}

static int save_state(rt_registry *reg, int64_t id, int state, const char *node)
{
	rt_job_row r;
	int rc = rt_jobstore_get(reg, id, &r);
	if (rc < 0)
		return rc;
	r.state = state;
	r.step += 1;
	rc = rt_jobstore_save_owned(reg, &r, node);
	rt_job_row_clear(&r);
	return rc;
}

static int is_candidate(rt_registry *reg, int64_t id)
{
	int64_t ids[64];
	size_t n = 0;
	if (rt_jobstore_candidates(reg, ids, 64, &n) < 0)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (ids[i] == id)
			return 1;
	return 0;
}

static void test_claim_and_save_owned(void)
{
	const char *dir = fresh_store();
	rt_registry *a = open_reg(dir), *b = open_reg(dir);
	T_CHECK(a && b);
	if (!a || !b)
		return;
	int64_t id = insert_job(a);
	T_CHECK(id > 0);
	char owner[80];
	T_EQ_INT(is_candidate(b, id), 1);
	T_EQ_INT(rt_jobstore_claim(a, id, "node-a", 60000), 0);
	T_EQ_INT(stored(b, id, owner, sizeof owner), RT_JOB_QUEUED);
	T_EQ_STR(owner, "node-a");
	/* another node: busy, and it is no candidate while the lease lives */
	T_EQ_INT(rt_jobstore_claim(b, id, "node-b", 60000), -EBUSY);
	T_EQ_INT(is_candidate(b, id), 0);
	/* the owner claims again (a resume on the same node) */
	T_EQ_INT(rt_jobstore_claim(a, id, "node-a", 60000), 0);
	/* only the owner saves */
	T_EQ_INT(save_state(a, id, RT_JOB_RUNNING, "node-a"), 0);
	T_EQ_INT(save_state(b, id, RT_JOB_RUNNING, "node-b"), -ESTALE);
	T_EQ_INT(save_state(b, id, RT_JOB_CANCELLED, ""), -ESTALE);   /* not unowned */
	T_EQ_INT(stored(b, id, owner, sizeof owner), RT_JOB_RUNNING);
	T_EQ_STR(owner, "node-a");
	/* preempted gives the lease up: a candidate for everyone, owner "" */
	T_EQ_INT(save_state(a, id, RT_JOB_PREEMPTED, "node-a"), 0);
	T_EQ_INT(stored(b, id, owner, sizeof owner), RT_JOB_PREEMPTED);
	T_EQ_STR(owner, "");
	T_EQ_INT(is_candidate(a, id), 1);
	T_EQ_INT(save_state(a, id, RT_JOB_RUNNING, "node-a"), -ESTALE);
	/* b takes it; a cancel made from a row read with owner node-b lands while b owns it */
	T_EQ_INT(rt_jobstore_claim(b, id, "node-b", 60000), 0);
	T_EQ_INT(save_state(a, id, RT_JOB_CANCELLED, "node-b"), 0);
	T_EQ_INT(stored(a, id, owner, sizeof owner), RT_JOB_CANCELLED);
	T_EQ_STR(owner, "");
	/* finished: not claimable, no candidate, no more owned saves */
	T_EQ_INT(rt_jobstore_claim(a, id, "node-a", 60000), -ENOENT);
	T_EQ_INT(is_candidate(a, id), 0);
	T_EQ_INT(save_state(b, id, RT_JOB_RUNNING, "node-b"), -ESTALE);
	T_EQ_INT(save_state(b, id, RT_JOB_RUNNING, ""), -ESTALE);
	/* unknown job, bad arguments */
	T_EQ_INT(rt_jobstore_claim(a, id + 100, "node-a", 60000), -ENOENT);
	T_EQ_INT(save_state(a, id + 100, RT_JOB_RUNNING, "node-a"), -ENOENT);
	T_EQ_INT(rt_jobstore_claim(a, id, "", 60000), -EINVAL);
	T_EQ_INT(rt_jobstore_claim(a, id, "node-a", 0), -EINVAL);
	rt_registry_close(a);
	rt_registry_close(b);
}

static void test_expiry_and_renew(void)
{
	const char *dir = fresh_store();
	rt_registry *a = open_reg(dir), *b = open_reg(dir);
	T_CHECK(a && b);
	if (!a || !b)
		return;
	int64_t id = insert_job(a), other = insert_job(a);
	char owner[80];
	T_EQ_INT(rt_jobstore_claim(a, id, "node-a", 150), 0);
	T_EQ_INT(save_state(a, id, RT_JOB_RUNNING, "node-a"), 0);
	T_EQ_INT(rt_jobstore_claim(a, other, "node-a", 150), 0);
	T_EQ_INT(is_candidate(b, id), 0);
	/* renewals keep both alive past the first lease */
	for (int i = 0; i < 4; i++) {
		int n = -1;
		usleep(60 * 1000);
		T_EQ_INT(rt_jobstore_renew(a, "node-a", 150, &n), 0);
		T_EQ_INT(n, 2);
	}
	T_EQ_INT(is_candidate(b, id), 0);
	T_EQ_INT(rt_jobstore_claim(b, id, "node-b", 150), -EBUSY);
	/* node-a goes silent: its running job is a candidate once the lease ran out */
	usleep(250 * 1000);
	T_EQ_INT(is_candidate(b, id), 1);
	T_EQ_INT(is_candidate(b, other), 1);
	T_EQ_INT(rt_jobstore_claim(b, id, "node-b", 60000), 0);
	T_EQ_INT(stored(a, id, owner, sizeof owner), RT_JOB_RUNNING);
	T_EQ_STR(owner, "node-b");
	/* node-a comes back: its save is stale, its renewal no longer covers the job */
	T_EQ_INT(save_state(a, id, RT_JOB_RUNNING, "node-a"), -ESTALE);
	int n = -1;
	T_EQ_INT(rt_jobstore_renew(a, "node-a", 60000, &n), 0);
	T_EQ_INT(n, 1);   /* only the other job, still its own */
	T_EQ_INT(save_state(b, id, RT_JOB_SUCCEEDED, "node-b"), 0);
	T_EQ_INT(rt_jobstore_renew(b, "node-b", 60000, &n), 0);
	T_EQ_INT(n, 0);   /* finished jobs are not renewed */
	rt_registry_close(a);
	rt_registry_close(b);
}

static void test_recover_own_jobs_only(void)
{
	const char *dir = fresh_store();
	rt_registry *a = open_reg(dir), *b = open_reg(dir);
	T_CHECK(a && b);
	if (!a || !b)
		return;
	int64_t mine = insert_job(a), theirs = insert_job(a), legacy = insert_job(a),
		queued = insert_job(a);
	T_EQ_INT(rt_jobstore_claim(a, mine, "node-a", 60000), 0);
	T_EQ_INT(save_state(a, mine, RT_JOB_RUNNING, "node-a"), 0);
	T_EQ_INT(rt_jobstore_claim(b, theirs, "node-b", 60000), 0);
	T_EQ_INT(save_state(b, theirs, RT_JOB_RUNNING, "node-b"), 0);
	T_EQ_INT(save_state(a, legacy, RT_JOB_RUNNING, ""), 0);   /* running, no owner */
	T_EQ_INT(rt_jobstore_claim(a, queued, "node-a", 60000), 0);
	int n = -1;
	char owner[80];
	T_EQ_INT(rt_jobstore_recover(a, "node-a", &n), 0);
	T_EQ_INT(n, 2);
	T_EQ_INT(stored(b, mine, owner, sizeof owner), RT_JOB_PREEMPTED);
	T_EQ_STR(owner, "");
	T_EQ_INT(stored(b, legacy, owner, sizeof owner), RT_JOB_PREEMPTED);
	T_EQ_INT(stored(b, theirs, owner, sizeof owner), RT_JOB_RUNNING);
	T_EQ_STR(owner, "node-b");
	T_EQ_INT(stored(b, queued, owner, sizeof owner), RT_JOB_QUEUED);
	T_EQ_STR(owner, "");
	T_EQ_INT(rt_jobstore_recover(a, "", &n), -EINVAL);
	rt_registry_close(a);
	rt_registry_close(b);
}

/* two processes claim every candidate they see at once: each job is won by exactly one */
static void test_claim_race_processes(void)
{
	enum { JOBS = 60 };
	const char *dir = fresh_store();
	rt_registry *reg = open_reg(dir);
	T_CHECK(reg != NULL);
	if (!reg)
		return;
	for (int i = 0; i < JOBS; i++)
		T_CHECK(insert_job(reg) > 0);
	rt_registry_close(reg);
	pid_t pid[2];
	int go[2];
	T_EQ_INT(pipe(go), 0);
	for (int k = 0; k < 2; k++) {
		pid[k] = fork();
		if (pid[k] == 0) {
			char c;
			close(go[1]);
			rt_registry *r = open_reg(dir);
			if (!r || read(go[0], &c, 1) != 0)
				_exit(255);
			const char *node = k ? "node-b" : "node-a";
			int won = 0;
			int64_t ids[JOBS];
			size_t n = 0;
			if (rt_jobstore_candidates(r, ids, JOBS, &n) < 0)
				_exit(255);
			for (size_t i = 0; i < n; i++) {
				int rc = rt_jobstore_claim(r, ids[i], node, 60000);
				if (rc == 0)
					won++;
				else if (rc != -EBUSY)
					_exit(254);
			}
			rt_registry_close(r);
			_exit(won);
		}
	}
	close(go[0]);
	usleep(100 * 1000);
	close(go[1]);   /* both start */
	int total = 0;
	for (int k = 0; k < 2; k++) {
		int status = 0;
		waitpid(pid[k], &status, 0);
		T_CHECK(WIFEXITED(status) && WEXITSTATUS(status) <= JOBS);
		total += WIFEXITED(status) ? WEXITSTATUS(status) : 1000;
	}
	T_EQ_INT(total, JOBS);
	/* and every job has one of them as its owner */
	reg = open_reg(dir);
	int owned = 0;
	for (int64_t id = 1; id <= JOBS; id++) {
		char owner[80] = "";
		stored(reg, id, owner, sizeof owner);
		owned += !strcmp(owner, "node-a") || !strcmp(owner, "node-b");
	}
	T_EQ_INT(owned, JOBS);
	rt_registry_close(reg);
}

/* ---- the runner ---- */

#define FT_LONG "{\"type\": \"finetune\", \"function\": \"digits\", \"revision\": 1, \"params\": " \
	"{\"data\": \"%s/tests/data/digits.csv.gz\", \"epochs\": 400, \"learning_rate\": 0.003, " \
	"\"feature_scale\": 0.0625, \"seed\": 11, \"batch_size\": 16}}"

static int runner_open(env *e, const char *node)
{
	rt_sched_config sc;
	rt_sched_config_defaults(&sc);
	sc.cpu_threads = 1;
	sc.no_gpu = 1;
	rt_jobs_config jc;
	rt_jobs_config_defaults(&jc);
	jc.poll_s = 0.02;
	jc.checkpoint_s = 0.02;
	jc.lease_ms = 300;
	jc.node_id = node;
	return env_open_with(e, "lease", "{\"kind\": \"mlp\", \"snapshot\": \"digits.thaw\"}", &sc, &jc);
}

static int64_t runner_submit(env *e)
{
	char buf[2048];
	snprintf(buf, sizeof buf, FT_LONG, t_src());
	return env_submit(e, buf);
}

/* runs the loop until job id is live on a lane with a checkpoint written (1) or ms passed */
static int wait_live_checkpointed(env *e, int64_t id, int ms)
{
	uint64_t end = rt_clock_mono_ns() + (uint64_t)ms * 1000000;
	while (rt_clock_mono_ns() < end) {
		json_t *o = rt_jobs_get_json(e->J, id);
		int ok = o && json_object_get(o, "lane") && json_string_value(json_object_get(o, "checkpoint"));
		json_decref(o);
		if (ok)
			return 1;
		uv_run(&e->loop, UV_RUN_NOWAIT);
		usleep(500);
	}
	return 0;
}

/* runs the loop until job id is on no lane here (1) or ms passed */
static int wait_off_lane(env *e, int64_t id, int ms)
{
	uint64_t end = rt_clock_mono_ns() + (uint64_t)ms * 1000000;
	while (rt_clock_mono_ns() < end) {
		json_t *o = rt_jobs_get_json(e->J, id);
		int on = o && json_object_get(o, "lane");
		json_decref(o);
		if (!on)
			return 1;
		uv_run(&e->loop, UV_RUN_NOWAIT);
		usleep(500);
	}
	return 0;
}

static void test_runner_drops_a_job_taken_over(void)
{
	env e;
	if (runner_open(&e, "node-a") < 0) {
		T_CHECK(0);
		return;
	}
	T_EQ_STR(rt_jobs_node(e.J), "node-a");
	int64_t id = runner_submit(&e);
	T_CHECK(id > 0);
	T_CHECK(wait_live_checkpointed(&e, id, 120000));
	/* another node takes the job over (as after node-a's lease ran out while it stalled) */
	rt_registry *b = open_reg(e.data);
	char path[1200];
	snprintf(path, sizeof path, "%s/registry.db", e.data);
	sqlite3 *db;
	T_EQ_INT(sqlite3_open(path, &db), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	T_EQ_INT(sqlite3_exec(db, "UPDATE jobs SET owner = 'node-b', lease_until = 0", NULL, NULL, NULL),
		 SQLITE_OK);
	sqlite3_close(db);
	T_EQ_INT(rt_jobstore_claim(b, id, "node-b", 60000), 0);
	rt_job_row before;
	T_EQ_INT(rt_jobstore_get(b, id, &before), 0);
	/* node-a sees it at its next save or renewal and drops it */
	T_CHECK(wait_off_lane(&e, id, 60000));
	rt_job_row after;
	T_EQ_INT(rt_jobstore_get(b, id, &after), 0);
	T_EQ_STR(after.owner, "node-b");
	T_EQ_INT(after.state, before.state);
	T_EQ_INT(after.step, before.step);        /* node-a wrote nothing more */
	struct stat st;
	T_CHECK(after.checkpoint[0] && stat(after.checkpoint, &st) == 0);   /* nor removed it */
	/* node-a's later picks leave it alone: node-b's lease is live */
	for (int i = 0; i < 100; i++) {
		uv_run(&e.loop, UV_RUN_NOWAIT);
		usleep(1000);
	}
	json_t *o = rt_jobs_get_json(e.J, id);
	T_CHECK(o && !json_object_get(o, "lane"));
	T_EQ_STR(json_string_value(json_object_get(o, "node")), "node-b");
	json_decref(o);
	rt_job_row_clear(&before);
	rt_job_row_clear(&after);
	rt_registry_close(b);
	env_close(&e);
}

static void test_runner_stops_a_job_cancelled_elsewhere(void)
{
	env e;
	if (runner_open(&e, "node-a") < 0) {
		T_CHECK(0);
		return;
	}
	int64_t id = runner_submit(&e);
	T_CHECK(wait_live_checkpointed(&e, id, 120000));
	/* another node cancels it in the store, as rt_jobs_cancel does there */
	rt_registry *b = open_reg(e.data);
	rt_job_row r;
	T_EQ_INT(rt_jobstore_get(b, id, &r), 0);
	T_EQ_STR(r.owner, "node-a");
	char ckpt[4096];
	snprintf(ckpt, sizeof ckpt, "%s", r.checkpoint);
	r.state = RT_JOB_CANCELLED;
	r.finished_ms = rt_clock_wall_ms();
	T_EQ_INT(rt_jobstore_save_owned(b, &r, r.owner), 0);
	rt_job_row_clear(&r);
	T_CHECK(wait_off_lane(&e, id, 60000));
	T_EQ_STR(state_of(&e, id), "cancelled");
	T_EQ_INT(rt_jobstore_get(b, id, &r), 0);
	T_EQ_INT(r.state, RT_JOB_CANCELLED);
	T_EQ_STR(r.owner, "");
	rt_job_row_clear(&r);
	struct stat st;
	T_CHECK(stat(ckpt, &st) < 0);   /* the owner cleans up as a local cancel does */
	rt_registry_close(b);
	env_close(&e);
}

static void test_pg_claim_and_save_owned(void) { use_pg = 1; test_claim_and_save_owned(); }
static void test_pg_expiry_and_renew(void) { use_pg = 1; test_expiry_and_renew(); }
static void test_pg_recover_own_jobs_only(void) { use_pg = 1; test_recover_own_jobs_only(); }
static void test_pg_claim_race_processes(void) { use_pg = 1; test_claim_race_processes(); }

void t_main(void)
{
	rt_log_init(RT_LOG_ERROR);
	T_RUN(test_claim_and_save_owned);
	T_RUN(test_expiry_and_renew);
	T_RUN(test_recover_own_jobs_only);
	T_RUN(test_claim_race_processes);
	T_RUN(test_pg_claim_and_save_owned);
	T_RUN(test_pg_expiry_and_renew);
	T_RUN(test_pg_recover_own_jobs_only);
	T_RUN(test_pg_claim_race_processes);
	use_pg = 0;
	T_RUN(test_runner_drops_a_job_taken_over);
	T_RUN(test_runner_stops_a_job_cancelled_elsewhere);
}

/* test_registry.c — rt_registry: revisions, traffic splits and picks, JSON views, delete,
 * reopen, schema versioning, and crashes in the middle of a put (child _exit()s or is
 * SIGKILLed inside the transaction; the parent reopens and sees all of the revision or none). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <sqlite3.h>
#include "runtime/store/rt_registry.h"
#include "snapshot/snap_pack.h"
#include "tests/t.h"

static const char *fresh_dir(void)
{
	static char d[1024];
	static int n;
	snprintf(d, sizeof d, "%s/reg-%d", t_tmpdir(), ++n);
	mkdir(d, 0755);
	return d;
}

static rt_manifest mk(const char *json)
{
	rt_manifest m;
	char err[256];
	if (rt_manifest_parse(json, strlen(json), NULL, NULL, &m, err, sizeof err) < 0) {
		fprintf(stderr, "  bad test manifest %s: %s\n", json, err);
		t_cur_failed++;
	}
	return m;
}

/* pick_counts counts which revision each draw 0..99 picks (index = revision, up to 15). */
static void pick_counts(rt_registry *reg, const char *name, int counts[16])
{
	memset(counts, 0, 16 * sizeof counts[0]);
	for (uint64_t d = 0; d < 100; d++) {
		uint32_t rev = 0;
		T_EQ_INT(rt_registry_pick_revision(reg, name, d + 100 * 12345, &rev), 0);
		if (rev < 16)
			counts[rev]++;
	}
}

static void test_open_schema(void)
{
	const char *dir = fresh_dir();
	rt_registry *reg;
	char err[256], path[1100];
	T_EQ_INT(rt_registry_open(dir, &reg, err, sizeof err), 0);
	rt_registry_close(reg);
	snprintf(path, sizeof path, "%s/registry.db", dir);
	sqlite3 *db;
	T_EQ_INT(sqlite3_open(path, &db), SQLITE_OK);
	sqlite3_stmt *s;
	T_EQ_INT(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL), SQLITE_OK);
	T_EQ_INT(sqlite3_step(s), SQLITE_ROW);
	T_EQ_INT(sqlite3_column_int(s, 0), RT_REGISTRY_SCHEMA_VERSION);
	sqlite3_finalize(s);
	T_EQ_INT(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, NULL), SQLITE_OK);
	T_EQ_INT(sqlite3_step(s), SQLITE_ROW);
	T_EQ_STR((const char *)sqlite3_column_text(s, 0), "wal");
	sqlite3_finalize(s);
	/* a schema from the future is refused, not clobbered */
	T_EQ_INT(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	err[0] = 0;
	T_EQ_INT(rt_registry_open(dir, &reg, err, sizeof err), -EPROTO);
	T_CHECK(strstr(err, "schema version 99") != NULL);
	/* a missing data directory */
	T_CHECK(rt_registry_open("/nonexistent-thaw-dir/x", &reg, err, sizeof err) < 0);
	T_CHECK(reg == NULL);
}

static void test_put_get_revisions(void)
{
	rt_registry *reg;
	char err[256];
	uint32_t rev = 0;
	T_EQ_INT(rt_registry_open(fresh_dir(), &reg, err, sizeof err), 0);
	rt_manifest m1 = mk("{\"kind\":\"mlp\",\"snapshot\":\"a.thaw\",\"concurrency\":4}");
	rt_manifest m2 = mk("{\"kind\":\"mlp\",\"snapshot\":\"b.thaw\",\"device\":\"cuda:1\",\"idle_timeout_s\":0.5}");
	rt_manifest m3 = mk("{\"kind\":\"llama\",\"snapshot\":\"c.thaw\",\"min_scale\":1}");
	T_EQ_INT(rt_registry_put(reg, "fn", &m1, "/d/snapshots/a.thaw", &rev, err, sizeof err), 0);
	T_EQ_INT(rev, 1);
	T_EQ_INT(rt_registry_put(reg, "fn", &m2, "/d/snapshots/b.thaw", &rev, err, sizeof err), 0);
	T_EQ_INT(rev, 2);
	T_EQ_INT(rt_registry_put(reg, "fn", &m3, "/d/snapshots/c.thaw", &rev, err, sizeof err), 0);
	T_EQ_INT(rev, 3);
	rt_manifest e = mk("{\"kind\":\"echo\"}");
	T_EQ_INT(rt_registry_put(reg, "other", &e, NULL, &rev, err, sizeof err), 0);
	T_EQ_INT(rev, 1);
	/* bad names are refused before touching the database */
	T_EQ_INT(rt_registry_put(reg, "Bad_Name", &e, NULL, &rev, err, sizeof err), -EINVAL);
	T_CHECK(strstr(err, "function name") != NULL);

	rt_revision_info ri;
	T_EQ_INT(rt_registry_get(reg, "fn", &ri), 0);
	T_EQ_INT(ri.rev, 3);
	T_EQ_STR(ri.manifest.kind, "llama");
	T_EQ_STR(ri.manifest.snapshot, "c.thaw");
	T_EQ_INT(ri.manifest.min_scale, 1);
	T_EQ_STR(ri.snapshot_path, "/d/snapshots/c.thaw");
	T_CHECK(ri.created_ms > 1700000000000LL);
	T_EQ_INT(rt_registry_get_revision(reg, "fn", 2, &ri), 0);
	T_EQ_INT(ri.rev, 2);
	T_EQ_STR(ri.manifest.snapshot, "b.thaw");
	T_EQ_INT(ri.manifest.device, RT_DEVICE_CUDA);
	T_EQ_INT(ri.manifest.device_index, 1);
	T_CHECK(ri.manifest.idle_timeout_s == 0.5);
	T_EQ_INT(rt_registry_get_revision(reg, "fn", 1, &ri), 0);
	T_EQ_INT(ri.manifest.concurrency, 4);
	T_EQ_INT(rt_registry_get_revision(reg, "fn", 4, &ri), -ENOENT);
	T_EQ_INT(rt_registry_get(reg, "nope", &ri), -ENOENT);
	T_EQ_INT(rt_registry_get(reg, "other", &ri), 0);
	T_EQ_STR(ri.snapshot_path, "");

	/* list, sorted */
	rt_registry_entry *v;
	size_t n;
	T_EQ_INT(rt_registry_list(reg, &v, &n), 0);
	T_EQ_INT(n, 2);
	if (n == 2) {
		T_EQ_STR(v[0].name, "fn");
		T_EQ_STR(v[0].kind, "llama");
		T_EQ_INT(v[0].latest_rev, 3);
		T_EQ_STR(v[1].name, "other");
	}
	free(v);
	json_t *lj;
	T_EQ_INT(rt_registry_list_json(reg, &lj), 0);
	json_t *fa = json_object_get(lj, "functions");
	T_EQ_INT(json_array_size(fa), 2);
	T_EQ_STR(json_string_value(json_object_get(json_array_get(fa, 0), "name")), "fn");
	T_EQ_INT(json_integer_value(json_object_get(json_array_get(fa, 0), "revision")), 3);
	json_decref(lj);

	/* GET body */
	json_t *g;
	T_EQ_INT(rt_registry_get_json(reg, "fn", &g), 0);
	T_EQ_STR(json_string_value(json_object_get(g, "name")), "fn");
	T_EQ_STR(json_string_value(json_object_get(g, "kind")), "llama");
	T_EQ_INT(json_integer_value(json_object_get(g, "revision")), 3);
	T_EQ_STR(json_string_value(json_object_get(g, "snapshot_path")), "/d/snapshots/c.thaw");
	T_EQ_INT(json_integer_value(json_object_get(json_object_get(g, "settings"), "min_scale")), 1);
	json_t *revs = json_object_get(g, "revisions");
	T_EQ_INT(json_array_size(revs), 3);
	T_EQ_INT(json_integer_value(json_object_get(json_array_get(revs, 0), "revision")), 1);
	T_EQ_INT(json_integer_value(json_object_get(json_object_get(json_array_get(revs, 0), "settings"),
						    "concurrency")), 4);
	const char *created = json_string_value(json_object_get(g, "created"));
	T_CHECK(created && strlen(created) == 24 && created[10] == 'T' && created[23] == 'Z');
	char *tr = json_dumps(json_object_get(g, "traffic"), JSON_COMPACT);
	T_EQ_STR(tr, "{\"latest\":100}");
	free(tr);
	json_decref(g);
	T_EQ_INT(rt_registry_get_json(reg, "nope", &g), -ENOENT);
	T_CHECK(g == NULL);
	rt_registry_close(reg);
}

static void test_traffic(void)
{
	rt_registry *reg;
	char err[256];
	uint32_t rev;
	int c[16];
	T_EQ_INT(rt_registry_open(fresh_dir(), &reg, err, sizeof err), 0);
	rt_manifest m = mk("{\"kind\":\"echo\"}");
	T_EQ_INT(rt_registry_put(reg, "f", &m, NULL, &rev, err, sizeof err), 0);
	pick_counts(reg, "f", c);
	T_EQ_INT(c[1], 100);
	T_EQ_INT(rt_registry_put(reg, "f", &m, NULL, &rev, err, sizeof err), 0);
	pick_counts(reg, "f", c);
	T_EQ_INT(c[2], 100);   /* default: all to the latest */

	/* a put with a split naming itself ("latest") and an old revision */
	rt_manifest s = mk("{\"kind\":\"echo\",\"traffic\":{\"1\":30,\"latest\":70}}");
	T_EQ_INT(rt_registry_put(reg, "f", &s, NULL, &rev, err, sizeof err), 0);
	T_EQ_INT(rev, 3);
	pick_counts(reg, "f", c);
	T_EQ_INT(c[1], 30);
	T_EQ_INT(c[3], 70);
	T_EQ_INT(c[2], 0);
	/* draw order is deterministic: "latest" first, then ascending revisions */
	T_EQ_INT(rt_registry_pick_revision(reg, "f", 0, &rev), 0);
	T_EQ_INT(rev, 3);
	T_EQ_INT(rt_registry_pick_revision(reg, "f", 69, &rev), 0);
	T_EQ_INT(rev, 3);
	T_EQ_INT(rt_registry_pick_revision(reg, "f", 70, &rev), 0);
	T_EQ_INT(rev, 1);
	T_EQ_INT(rt_registry_pick_revision(reg, "f", UINT64_MAX, &rev), 0);   /* 15 % 100 */
	T_EQ_INT(rev, 3);

	/* a put whose split names a revision that does not exist stores nothing */
	rt_manifest bad = mk("{\"kind\":\"echo\",\"traffic\":{\"9\":50,\"latest\":50}}");
	err[0] = 0;
	T_EQ_INT(rt_registry_put(reg, "f", &bad, NULL, &rev, err, sizeof err), -ENOENT);
	T_CHECK(strstr(err, "no revision 9") != NULL);
	rt_revision_info ri;
	T_EQ_INT(rt_registry_get(reg, "f", &ri), 0);
	T_EQ_INT(ri.rev, 3);
	/* the next revision number is not burnt either: rev 4 may be named by the put creating it */
	rt_manifest self = mk("{\"kind\":\"echo\",\"traffic\":{\"4\":100}}");
	T_EQ_INT(rt_registry_put(reg, "f", &self, NULL, &rev, err, sizeof err), 0);
	T_EQ_INT(rev, 4);
	pick_counts(reg, "f", c);
	T_EQ_INT(c[4], 100);

	/* set_traffic: rollback to revision 1, then a canary */
	rt_traffic t = {.n = 1, .e = {{1, 100}}};
	T_EQ_INT(rt_registry_set_traffic(reg, "f", &t, err, sizeof err), 0);
	pick_counts(reg, "f", c);
	T_EQ_INT(c[1], 100);
	rt_traffic t2 = {.n = 2, .e = {{2, 90}, {4, 10}}};
	T_EQ_INT(rt_registry_set_traffic(reg, "f", &t2, err, sizeof err), 0);
	pick_counts(reg, "f", c);
	T_EQ_INT(c[2], 90);
	T_EQ_INT(c[4], 10);
	rt_traffic got;
	T_EQ_INT(rt_registry_get_traffic(reg, "f", &got), 0);
	T_EQ_INT(got.n, 2);
	T_EQ_INT(got.e[0].rev, 2);
	T_EQ_INT(got.e[1].percent, 10);
	rt_traffic t5 = {.n = 1, .e = {{5, 100}}};
	err[0] = 0;
	T_EQ_INT(rt_registry_set_traffic(reg, "f", &t5, err, sizeof err), -ENOENT);
	T_CHECK(strstr(err, "no revision 5 (latest is 4)") != NULL);
	T_EQ_INT(rt_registry_set_traffic(reg, "ghost", &t, err, sizeof err), -ENOENT);
	T_CHECK(strstr(err, "function 'ghost' not found") != NULL);
	rt_traffic bad_sum = {.n = 2, .e = {{1, 50}, {2, 40}}};
	T_EQ_INT(rt_registry_set_traffic(reg, "f", &bad_sum, err, sizeof err), -EINVAL);
	rt_traffic dup = {.n = 2, .e = {{1, 50}, {1, 50}}};
	T_EQ_INT(rt_registry_set_traffic(reg, "f", &dup, err, sizeof err), -EINVAL);
	pick_counts(reg, "f", c);   /* failed calls changed nothing */
	T_EQ_INT(c[2], 90);
	T_EQ_INT(rt_registry_pick_revision(reg, "ghost", 0, &rev), -ENOENT);

	/* statistical check with real random draws: 90/10 within tolerance */
	rt_traffic t3 = {.n = 2, .e = {{0, 25}, {1, 75}}};
	T_EQ_INT(rt_registry_set_traffic(reg, "f", &t3, err, sizeof err), 0);
	srand(42);
	int n1 = 0, n4 = 0;
	for (int i = 0; i < 4000; i++) {
		uint64_t d = ((uint64_t)rand() << 31) ^ (uint64_t)rand();
		T_EQ_INT(rt_registry_pick_revision(reg, "f", d, &rev), 0);
		n1 += rev == 1;
		n4 += rev == 4;
	}
	T_CHECK(n1 + n4 == 4000);
	T_CHECK(n4 > 900 && n4 < 1100);   /* 25 % of 4000 = 1000; sd ~ 27 */
	rt_registry_close(reg);
}

static void test_delete_and_reopen(void)
{
	const char *dir = fresh_dir();
	rt_registry *reg;
	char err[256];
	uint32_t rev;
	T_EQ_INT(rt_registry_open(dir, &reg, err, sizeof err), 0);
	rt_manifest m = mk("{\"kind\":\"mlp\",\"snapshot\":\"a.thaw\",\"max_batch\":16}");
	for (int i = 0; i < 3; i++)
		T_EQ_INT(rt_registry_put(reg, "keep", &m, "/x/a.thaw", &rev, err, sizeof err), 0);
	rt_traffic t = {.n = 2, .e = {{1, 50}, {3, 50}}};
	T_EQ_INT(rt_registry_set_traffic(reg, "keep", &t, err, sizeof err), 0);
	T_EQ_INT(rt_registry_put(reg, "gone", &m, "/x/a.thaw", &rev, err, sizeof err), 0);
	T_EQ_INT(rt_registry_put(reg, "gone", &m, "/x/a.thaw", &rev, err, sizeof err), 0);
	T_EQ_INT(rt_registry_delete(reg, "gone"), 0);
	T_EQ_INT(rt_registry_delete(reg, "gone"), -ENOENT);
	rt_revision_info ri;
	T_EQ_INT(rt_registry_get(reg, "gone", &ri), -ENOENT);
	T_EQ_INT(rt_registry_get_revision(reg, "gone", 1, &ri), -ENOENT);
	json_t *before;
	T_EQ_INT(rt_registry_get_json(reg, "keep", &before), 0);
	rt_registry_close(reg);

	T_EQ_INT(rt_registry_open(dir, &reg, err, sizeof err), 0);
	json_t *after = NULL;
	T_EQ_INT(rt_registry_get_json(reg, "keep", &after), 0);
	T_CHECK(after && json_equal(before, after));
	T_EQ_INT(rt_registry_get(reg, "gone", &ri), -ENOENT);
	/* revisions and traffic went with the function (cascade): a new "gone" starts at 1 */
	T_EQ_INT(rt_registry_put(reg, "gone", &m, "/x/a.thaw", &rev, err, sizeof err), 0);
	T_EQ_INT(rev, 1);
	T_EQ_INT(rt_registry_pick_revision(reg, "gone", 7, &rev), 0);
	T_EQ_INT(rev, 1);
	json_decref(before);
	json_decref(after);
	rt_registry_close(reg);
}

static int raw_exec(const char *dir, const char *sqltext)
{
	char path[1100];
	sqlite3 *db;
	snprintf(path, sizeof path, "%s/registry.db", dir);
	if (sqlite3_open(path, &db) != SQLITE_OK)
		return -1;
	int rc = sqlite3_exec(db, sqltext, NULL, NULL, NULL);
	sqlite3_close(db);
	return rc == SQLITE_OK ? 0 : -1;
}

/* a revision's descriptor: recorded at put (image size, digest, kind, V2 signature), read back
 * from the store after a reopen, and computed once for rows stored without one (a database of
 * schema 3 upgraded in place) */
static void test_descriptors(void)
{
	const char *dir = fresh_dir();
	char err[256], snap[1200], src[1200];
	snprintf(snap, sizeof snap, "%s/digits.thaw", dir);
	snprintf(src, sizeof src, "%s/tests/data/mlp_digits/model.safetensors", t_src());
	snap_pack_opts po = {.kind = "mlp", .w = {.threads = 1}};
	T_EQ_INT(snap_pack(src, snap, &po, NULL, err, sizeof err), 0);
	rt_registry *reg;
	T_EQ_INT(rt_registry_open(dir, &reg, err, sizeof err), 0);
	rt_manifest m = mk("{\"kind\":\"mlp\",\"snapshot\":\"digits.thaw\"}");
	T_EQ_INT(rt_registry_put(reg, "d", &m, snap, NULL, err, sizeof err), 0);
	rt_revision_info *ri = malloc(sizeof *ri);
	T_EQ_INT(rt_registry_get(reg, "d", ri), 0);
	rt_desc want = ri->desc;
	T_CHECK(want.known && want.image_bytes > 0 && strlen(want.digest) == 16 && want.has_v2);
	T_EQ_STR(want.kind, "mlp");
	T_EQ_INT(want.v2.n_inputs, 1);
	T_EQ_STR(want.v2.inputs[0].name, "INPUT0");
	T_EQ_INT(want.v2.inputs[0].shape[0], -1);
	T_EQ_INT(want.v2.inputs[0].shape[1], 64);
	T_EQ_INT(want.v2.n_outputs, 2);
	T_EQ_INT(want.v2.outputs[0].shape[1], 10);
	T_EQ_STR(want.v2.outputs[1].datatype, "INT64");
	rt_registry_close(reg);
	/* reopened: the stored descriptor, the same */
	T_EQ_INT(rt_registry_open(dir, &reg, err, sizeof err), 0);
	T_EQ_INT(rt_registry_get(reg, "d", ri), 0);
	T_CHECK(memcmp(&ri->desc, &want, sizeof want) == 0);
	rt_registry_close(reg);
	/* schema 3: no descriptor column (nor the later job lease columns); the upgrade adds it
	 * and the first read fills it */
	T_EQ_INT(raw_exec(dir, "ALTER TABLE revisions DROP COLUMN descriptor; ALTER TABLE jobs DROP "
			  "COLUMN owner; ALTER TABLE jobs DROP COLUMN lease_until; "
			  "PRAGMA user_version = 3"), 0);
	T_EQ_INT(rt_registry_open(dir, &reg, err, sizeof err), 0);
	T_EQ_INT(rt_registry_get(reg, "d", ri), 0);
	T_CHECK(memcmp(&ri->desc, &want, sizeof want) == 0);
	rt_registry_close(reg);
	char path[1100];
	sqlite3 *db;
	sqlite3_stmt *st;
	snprintf(path, sizeof path, "%s/registry.db", dir);
	T_EQ_INT(sqlite3_open(path, &db), SQLITE_OK);
	T_EQ_INT(sqlite3_prepare_v2(db, "SELECT count(*) FROM revisions WHERE descriptor IS NOT NULL",
				    -1, &st, NULL), SQLITE_OK);
	T_EQ_INT(sqlite3_step(st), SQLITE_ROW);
	T_EQ_INT(sqlite3_column_int(st, 0), 1);
	sqlite3_finalize(st);
	sqlite3_close(db);
	/* a snapshot gone before it was described: no descriptor, the revision still reads */
	T_EQ_INT(raw_exec(dir, "UPDATE revisions SET descriptor = NULL, snapshot_path = '/nonexistent.thaw'"), 0);
	T_EQ_INT(rt_registry_open(dir, &reg, err, sizeof err), 0);
	T_EQ_INT(rt_registry_get(reg, "d", ri), 0);
	T_EQ_INT(ri->desc.known, 0);
	rt_registry_close(reg);
	free(ri);
}

static void crash_exit(const char *point)
{
	if (strcmp(point, "after-insert-revision") == 0)
		_exit(3);
}

static void crash_kill(const char *point)
{
	if (strcmp(point, "after-traffic") == 0)
		kill(getpid(), SIGKILL);
}

/* crash_child runs in a fork: opens the registry, puts a revision with a traffic split and dies
 * as the hook decides (or after the commit when hook is NULL). */
static void crash_child(const char *dir, void (*hook)(const char *))
{
	rt_registry *reg;
	char err[256];
	uint32_t rev;
	if (rt_registry_open(dir, &reg, err, sizeof err) < 0)
		_exit(10);
	rt_registry_test_hook = hook;
	rt_manifest m = mk("{\"kind\":\"echo\",\"concurrency\":77,\"traffic\":{\"1\":50,\"latest\":50}}");
	int rc = rt_registry_put(reg, "f", &m, NULL, &rev, err, sizeof err);
	if (rc == 0)
		kill(getpid(), SIGKILL);   /* committed: die without closing */
	_exit(11);
}

static void test_crash_mid_put(void)
{
	const char *dir = fresh_dir();
	rt_registry *reg;
	char err[256];
	uint32_t rev;
	T_EQ_INT(rt_registry_open(dir, &reg, err, sizeof err), 0);
	rt_manifest m = mk("{\"kind\":\"echo\"}");
	T_EQ_INT(rt_registry_put(reg, "f", &m, NULL, &rev, err, sizeof err), 0);
	T_EQ_INT(rt_registry_put(reg, "f", &m, NULL, &rev, err, sizeof err), 0);
	rt_registry_close(reg);

	void (*hooks[3])(const char *) = {crash_exit, crash_kill, NULL};
	uint32_t want_latest[3] = {2, 2, 3};
	for (int i = 0; i < 3; i++) {
		fflush(NULL);
		pid_t pid = fork();
		if (pid == 0)
			crash_child(dir, hooks[i]);
		int st = 0;
		T_EQ_INT(waitpid(pid, &st, 0), pid);
		if (i == 0)
			T_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 3);
		else
			T_CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
		T_EQ_INT(rt_registry_open(dir, &reg, err, sizeof err), 0);
		rt_revision_info ri;
		T_EQ_INT(rt_registry_get(reg, "f", &ri), 0);
		T_EQ_INT(ri.rev, want_latest[i]);
		T_EQ_INT(rt_registry_get_revision(reg, "f", want_latest[i] + 1, &ri), -ENOENT);
		rt_traffic t;
		T_EQ_INT(rt_registry_get_traffic(reg, "f", &t), 0);
		if (want_latest[i] == 2) {
			/* nothing of the crashed put: no revision 3, the old split, old settings */
			T_EQ_INT(t.n, 1);
			T_EQ_INT(t.e[0].rev, RT_MANIFEST_REV_LATEST);
			T_EQ_INT(ri.manifest.concurrency, 8);
		} else {
			/* all of it: revision 3 with its settings and its split */
			T_EQ_INT(rt_registry_get(reg, "f", &ri), 0);
			T_EQ_INT(ri.manifest.concurrency, 77);
			T_EQ_INT(t.n, 2);
			T_EQ_INT(t.e[1].rev, 1);
			T_EQ_INT(t.e[1].percent, 50);
		}
		/* the registry is writable and consistent after the crash */
		T_EQ_INT(rt_registry_put(reg, "probe", &m, NULL, &rev, err, sizeof err), 0);
		T_EQ_INT(rt_registry_delete(reg, "probe"), 0);
		rt_registry_close(reg);
	}
	char path[1100];
	snprintf(path, sizeof path, "%s/registry.db", dir);
	sqlite3 *db;
	T_EQ_INT(sqlite3_open(path, &db), SQLITE_OK);
	sqlite3_stmt *s;
	T_EQ_INT(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &s, NULL), SQLITE_OK);
	T_EQ_INT(sqlite3_step(s), SQLITE_ROW);
	T_EQ_STR((const char *)sqlite3_column_text(s, 0), "ok");
	sqlite3_finalize(s);
	T_EQ_INT(sqlite3_prepare_v2(db, "SELECT count(*) FROM revisions", -1, &s, NULL), SQLITE_OK);
	T_EQ_INT(sqlite3_step(s), SQLITE_ROW);
	T_EQ_INT(sqlite3_column_int(s, 0), 3);
	sqlite3_finalize(s);
	sqlite3_close(db);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Calls are made on the event loop: they must stay quick. */
static void test_speed(void)
{
	rt_registry *reg;
	char err[256];
	uint32_t rev;
	T_EQ_INT(rt_registry_open(fresh_dir(), &reg, err, sizeof err), 0);
	rt_manifest m = mk("{\"kind\":\"mlp\",\"snapshot\":\"a.thaw\"}");
	double t0 = now_s();
	for (int i = 0; i < 200; i++)
		T_EQ_INT(rt_registry_put(reg, i % 2 ? "a" : "b", &m, "/x", &rev, err, sizeof err), 0);
	double t1 = now_s();
	for (uint64_t i = 0; i < 20000; i++)
		rt_registry_pick_revision(reg, "a", i, &rev);
	double t2 = now_s();
	rt_revision_info ri;
	for (int i = 0; i < 2000; i++)
		rt_registry_get(reg, "a", &ri);
	double t3 = now_s();
	fprintf(stderr, "  put %.1f us, pick %.2f us, get %.1f us\n", (t1 - t0) / 200 * 1e6,
		(t2 - t1) / 20000 * 1e6, (t3 - t2) / 2000 * 1e6);
	T_CHECK((t2 - t1) / 20000 < 200e-6);   /* generous: ASan on 2 busy cores */
	T_CHECK((t1 - t0) / 200 < 20e-3);
	rt_registry_close(reg);
}

/* a function deployed many times answers with its newest revisions and those taking traffic */
static void test_many_revisions(void)
{
	const char *dir = fresh_dir();
	rt_registry *reg;
	char err[256];
	T_EQ_INT(rt_registry_open(dir, &reg, err, sizeof err), 0);
	rt_manifest m = mk("{\"kind\": \"echo\"}");
	for (int i = 0; i < 30; i++)
		T_EQ_INT(rt_registry_put(reg, "many", &m, NULL, NULL, err, sizeof err), 0);
	rt_traffic t = {.n = 2, .e = {{3, 10}, {30, 90}}};
	T_EQ_INT(rt_registry_set_traffic(reg, "many", &t, err, sizeof err), 0);
	json_t *g = NULL;
	T_EQ_INT(rt_registry_get_json(reg, "many", &g), 0);
	json_t *revs = json_object_get(g, "revisions");
	T_EQ_INT(json_integer_value(json_object_get(g, "revisions_total")), 30);
	T_EQ_INT(json_array_size(revs), RT_REGISTRY_LIST_REVS + 1);
	T_EQ_INT(json_integer_value(json_object_get(json_array_get(revs, 0), "revision")), 3);
	T_EQ_INT(json_integer_value(json_object_get(json_array_get(revs, 1), "revision")),
		 30 - RT_REGISTRY_LIST_REVS + 1);
	T_EQ_INT(json_integer_value(json_object_get(json_array_get(revs, RT_REGISTRY_LIST_REVS),
						    "revision")), 30);
	json_decref(g);
	rt_registry_close(reg);
}

static int file_mode(const char *dir, const char *name)
{
	char p[1200];
	struct stat st;
	snprintf(p, sizeof p, "%s/%s", dir, name);
	return stat(p, &st) == 0 ? (int)(st.st_mode & 0777) : -1;
}

/* the database and its -wal/-shm are private whatever the umask; an older readable one is
 * tightened when opened */
static void test_private_files(void)
{
	rt_registry *reg;
	char err[256];
	uint32_t rev = 0;
	mode_t old = umask(022);
	const char *dir = fresh_dir();
	T_EQ_INT(rt_registry_open(dir, &reg, err, sizeof err), 0);
	rt_manifest e = mk("{\"kind\":\"echo\"}");
	T_EQ_INT(rt_registry_put(reg, "fn", &e, NULL, &rev, err, sizeof err), 0);
	T_EQ_INT(file_mode(dir, "registry.db"), 0600);
	T_EQ_INT(file_mode(dir, "registry.db-wal"), 0600);
	rt_registry_close(reg);
	char p[1200];
	snprintf(p, sizeof p, "%s/registry.db", dir);
	T_EQ_INT(chmod(p, 0644), 0);
	T_EQ_INT(rt_registry_open(dir, &reg, err, sizeof err), 0);
	T_EQ_INT(file_mode(dir, "registry.db"), 0600);
	rt_registry_close(reg);
	umask(old);
}

void t_main(void)
{
	T_RUN(test_private_files);
	T_RUN(test_open_schema);
	T_RUN(test_put_get_revisions);
	T_RUN(test_traffic);
	T_RUN(test_delete_and_reopen);
	T_RUN(test_descriptors);
	T_RUN(test_crash_mid_put);
	T_RUN(test_many_revisions);
	T_RUN(test_speed);
}

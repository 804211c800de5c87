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
#include "tests/runtime/store/registry_contract.h"

static const char *fresh_dir(void)
{
	static char d[1024];
	static int n;
	snprintf(d, sizeof d, "%s/reg-%d", t_tmpdir(), ++n);
	mkdir(d, 0755);
	return d;
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
			  "COLUMN owner; ALTER TABLE jobs DROP COLUMN lease_until; DROP TABLE nodes; "
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

/* the contract's places: a fresh SQLite file each, named by URL */
static const char *sqlite_place(void)
{
	static char u[1200];
	snprintf(u, sizeof u, "sqlite:%s/registry.db", fresh_dir());
	return u;
}

void t_main(void)
{
	contract_place = sqlite_place;
	contract_run();
	T_RUN(test_private_files);
	T_RUN(test_open_schema);
	T_RUN(test_descriptors);
	T_RUN(test_crash_mid_put);
}

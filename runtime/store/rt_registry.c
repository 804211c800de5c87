/* rt_registry.c — the function registry on SQLite. See rt_registry.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <sqlite3.h>
#include "runtime/base/rt_log.h"
#include "runtime/base/rt_fault.h"
#include "runtime/store/rt_registry.h"

void (*rt_registry_test_hook)(const char *point);

/* Migrations: entry v brings a database from user_version v to v + 1. Append only; never edit
 * a released entry. */
static const char *const migrations[] = {
	/* 0 -> 1: functions, revisions, traffic */
	"CREATE TABLE functions("
	"  id INTEGER PRIMARY KEY,"
	"  name TEXT NOT NULL UNIQUE,"
	"  kind TEXT NOT NULL,"                /* kind of the latest revision */
	"  latest_rev INTEGER NOT NULL CHECK(latest_rev >= 1),"
	"  created_ms INTEGER NOT NULL,"
	"  updated_ms INTEGER NOT NULL);"
	"CREATE TABLE revisions("
	"  function_id INTEGER NOT NULL REFERENCES functions(id) ON DELETE CASCADE,"
	"  rev INTEGER NOT NULL CHECK(rev >= 1),"
	"  manifest TEXT NOT NULL,"            /* rt_manifest_to_json, without traffic */
	"  snapshot_path TEXT NOT NULL,"       /* resolved; '' when none */
	"  created_ms INTEGER NOT NULL,"
	"  PRIMARY KEY(function_id, rev)) WITHOUT ROWID;"
	"CREATE TABLE traffic("
	"  function_id INTEGER NOT NULL REFERENCES functions(id) ON DELETE CASCADE,"
	"  rev INTEGER NOT NULL CHECK(rev >= 0),"  /* 0 = the latest revision */
	"  percent INTEGER NOT NULL CHECK(percent BETWEEN 0 AND 100),"
	"  PRIMARY KEY(function_id, rev)) WITHOUT ROWID;",
	/* 1 -> 2: batch jobs (issue 6; runtime/jobs/rt_jobs.c owns the rows) */
	"CREATE TABLE jobs("
	"  id INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  type TEXT NOT NULL,"                /* quantize | finetune */
	"  function TEXT,"                     /* source function, or NULL */
	"  revision INTEGER,"                  /* its source revision (resolved at submit) */
	"  snapshot TEXT,"                     /* source snapshot path (resolved) */
	"  params TEXT NOT NULL,"              /* JSON object */
	"  schedule TEXT NOT NULL,"            /* JSON: "now", "idle" or {"window", "tz"} */
	"  priority INTEGER NOT NULL DEFAULT 0,"
	"  device TEXT NOT NULL,"              /* auto | cpu | cuda:N */
	"  state TEXT NOT NULL CHECK(state IN ('queued','running','preempted','succeeded',"
	"    'failed','cancelled')),"
	"  progress REAL NOT NULL DEFAULT 0,"
	"  step INTEGER NOT NULL DEFAULT 0,"
	"  metrics TEXT NOT NULL DEFAULT '{}',"
	"  preemptions INTEGER NOT NULL DEFAULT 0,"
	"  created_ms INTEGER NOT NULL,"
	"  started_ms INTEGER,"
	"  finished_ms INTEGER,"
	"  updated_ms INTEGER NOT NULL,"
	"  error TEXT,"
	"  result_snapshot TEXT,"
	"  result_revision INTEGER,"
	"  checkpoint TEXT);"
	"CREATE INDEX jobs_by_state ON jobs(state, priority DESC, id);",
	/* 2 -> 3: API keys (issue 7; runtime/access/rt_auth.c owns the rows): only a keyed hash of each
	 * key is stored, found by its non-secret id */
	"CREATE TABLE api_keys("
	"  id TEXT PRIMARY KEY,"
	"  hash BLOB NOT NULL,"
	"  scopes TEXT NOT NULL,"              /* space-separated */
	"  created_ms INTEGER NOT NULL,"
	"  revoked_ms INTEGER) WITHOUT ROWID;",
};
#define N_MIGRATIONS (int)(sizeof migrations / sizeof migrations[0])
_Static_assert(N_MIGRATIONS == RT_REGISTRY_SCHEMA_VERSION, "one migration per schema version");

enum {
	S_BEGIN, S_BEGIN_READ, S_COMMIT, S_ROLLBACK,
	S_FN_FIND, S_FN_INFO, S_FN_INSERT, S_FN_UPDATE, S_FN_DELETE,
	S_REV_INSERT, S_REV_GET, S_REV_LIST, S_REV_EXISTS,
	S_TR_DELETE, S_TR_INSERT, S_TR_GET, S_TR_PICK,
	S_LIST,
	S_COUNT
};

static const char *const sql[S_COUNT] = {
	[S_BEGIN] = "BEGIN IMMEDIATE",
	[S_BEGIN_READ] = "BEGIN",
	[S_COMMIT] = "COMMIT",
	[S_ROLLBACK] = "ROLLBACK",
	[S_FN_FIND] = "SELECT id, latest_rev FROM functions WHERE name = ?1",
	[S_FN_INFO] = "SELECT id, kind, latest_rev, created_ms, updated_ms FROM functions WHERE name = ?1",
	[S_FN_INSERT] = "INSERT INTO functions(name, kind, latest_rev, created_ms, updated_ms) "
			"VALUES(?1, ?2, 1, ?3, ?3)",
	[S_FN_UPDATE] = "UPDATE functions SET kind = ?2, latest_rev = ?3, updated_ms = ?4 WHERE id = ?1",
	[S_FN_DELETE] = "DELETE FROM functions WHERE name = ?1",
	[S_REV_INSERT] = "INSERT INTO revisions(function_id, rev, manifest, snapshot_path, created_ms) "
			 "VALUES(?1, ?2, ?3, ?4, ?5)",
	[S_REV_GET] = "SELECT r.rev, r.manifest, r.snapshot_path, r.created_ms FROM functions f "
		      "JOIN revisions r ON r.function_id = f.id WHERE f.name = ?1 AND "
		      "r.rev = CASE WHEN ?2 = 0 THEN f.latest_rev ELSE ?2 END",
	[S_REV_LIST] = "SELECT rev, manifest, snapshot_path, created_ms FROM revisions "
		       "WHERE function_id = ?1 ORDER BY rev",
	[S_REV_EXISTS] = "SELECT 1 FROM revisions WHERE function_id = ?1 AND rev = ?2",
	[S_TR_DELETE] = "DELETE FROM traffic WHERE function_id = ?1",
	[S_TR_INSERT] = "INSERT INTO traffic(function_id, rev, percent) VALUES(?1, ?2, ?3)",
	[S_TR_GET] = "SELECT rev, percent FROM traffic WHERE function_id = ?1 ORDER BY rev",
	[S_TR_PICK] = "SELECT f.latest_rev, t.rev, t.percent FROM functions f "
		      "LEFT JOIN traffic t ON t.function_id = f.id WHERE f.name = ?1 ORDER BY t.rev",
	[S_LIST] = "SELECT name, kind, latest_rev, updated_ms FROM functions ORDER BY name",
};

struct rt_registry {
	sqlite3 *db;
	sqlite3_stmt *st[S_COUNT];
};


static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void rt_registry_format_time(int64_t ms, char *buf, size_t cap)
{
	time_t s = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&s, &tm);
	snprintf(buf, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

/* sql_err maps a SQLite result code to a negative errno and logs the message. */
static int sql_err(rt_registry *reg, int rc, const char *what)
{
	rt_logf(RT_LOG_ERROR, "registry: %s: %s (%d)", what, sqlite3_errmsg(reg->db), rc);
	switch (rc & 0xff) {
	case SQLITE_BUSY: case SQLITE_LOCKED: return -EBUSY;
	case SQLITE_FULL: return -ENOSPC;
	case SQLITE_NOMEM: return -ENOMEM;
	case SQLITE_READONLY: case SQLITE_PERM: case SQLITE_AUTH: return -EACCES;
	default: return -EIO;
	}
}

/* stmt returns cached statement i, reset and with bindings cleared. */
static sqlite3_stmt *stmt(rt_registry *reg, int i)
{
	sqlite3_reset(reg->st[i]);
	sqlite3_clear_bindings(reg->st[i]);
	return reg->st[i];
}

/* exec1 runs a statement without result rows (binding done by the caller): 0 or -errno. */
static int exec_done(rt_registry *reg, sqlite3_stmt *s, const char *what)
{
	int rc = sqlite3_step(s);
	sqlite3_reset(s);
	return rc == SQLITE_DONE ? 0 : sql_err(reg, rc, what);
}

static int begin(rt_registry *reg, int write)
{
	return exec_done(reg, stmt(reg, write ? S_BEGIN : S_BEGIN_READ), "begin");
}

static int commit(rt_registry *reg)
{
	int rc = exec_done(reg, stmt(reg, S_COMMIT), "commit");
	if (rc < 0 && !sqlite3_get_autocommit(reg->db))
		exec_done(reg, stmt(reg, S_ROLLBACK), "rollback");
	return rc;
}

static void rollback(rt_registry *reg)
{
	for (int i = 0; i < S_COUNT; i++)
		sqlite3_reset(reg->st[i]);
	if (!sqlite3_get_autocommit(reg->db))
		exec_done(reg, stmt(reg, S_ROLLBACK), "rollback");
}

static int migrate(sqlite3 *db, char *err, size_t errlen)
{
	sqlite3_stmt *s;
	int v = -1;
	if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL) != SQLITE_OK)
		return rt_errf(err, errlen, -EIO, "registry: %s", sqlite3_errmsg(db));
	if (sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int(s, 0);
	sqlite3_finalize(s);
	if (v < 0)
		return rt_errf(err, errlen, -EIO, "registry: cannot read the schema version");
	if (v > N_MIGRATIONS)
		return rt_errf(err, errlen, -EPROTO, "registry: schema version %d is newer than this thaw "
			    "understands (%d)", v, N_MIGRATIONS);
	for (; v < N_MIGRATIONS; v++) {
		char pragma[64], *msg = NULL;
		snprintf(pragma, sizeof pragma, "PRAGMA user_version = %d", v + 1);
		if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, &msg) != SQLITE_OK ||
		    sqlite3_exec(db, migrations[v], NULL, NULL, &msg) != SQLITE_OK ||
		    sqlite3_exec(db, pragma, NULL, NULL, &msg) != SQLITE_OK ||
		    sqlite3_exec(db, "COMMIT", NULL, NULL, &msg) != SQLITE_OK) {
			rt_errf(err, errlen, -EIO, "registry: migration to schema %d: %s", v + 1,
			     msg ? msg : sqlite3_errmsg(db));
			sqlite3_free(msg);
			if (!sqlite3_get_autocommit(db))
				sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
			return -EIO;
		}
	}
	return 0;
}

/* creates the database file 0600 before SQLite does (SQLite's default is 0644 less the umask,
 * and its -wal and -shm files copy the database's mode), and takes group and other access from
 * one an older version left readable, with its -wal and -shm */
static void make_private(const char *db)
{
	static const char *const sfx[] = {"", "-wal", "-shm"};
	char p[4200];
	for (int i = 0; i < 3; i++) {
		snprintf(p, sizeof p, "%s%s", db, sfx[i]);
		int fd = open(p, O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | (i ? 0 : O_CREAT), 0600);
		struct stat st;
		if (fd < 0)
			continue;
		if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 077))
			fchmod(fd, st.st_mode & 0700);
		close(fd);
	}
}

int rt_registry_open(const char *data_dir, rt_registry **out, char *err, size_t errlen)
{
	char path[4096];
	char *msg = NULL;
	*out = NULL;
	if ((size_t)snprintf(path, sizeof path, "%s/registry.db", data_dir) >= sizeof path)
		return rt_errf(err, errlen, -ENAMETOOLONG, "registry: data directory path too long");
	make_private(path);
	rt_registry *reg = calloc(1, sizeof *reg);
	if (!reg)
		return rt_errf(err, errlen, -ENOMEM, "registry: out of memory");
	int rc = sqlite3_open_v2(path, &reg->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
				 SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		rt_errf(err, errlen, rc == SQLITE_CANTOPEN ? -ENOENT : -EIO, "registry: cannot open %s: %s",
		     path, reg->db ? sqlite3_errmsg(reg->db) : sqlite3_errstr(rc));
		rc = rc == SQLITE_CANTOPEN ? -ENOENT : -EIO;
		goto fail;
	}
	sqlite3_busy_timeout(reg->db, 5000);
	sqlite3_extended_result_codes(reg->db, 1);
	/* journal_mode answers with the mode in effect: insist on WAL */
	sqlite3_stmt *s;
	const char *mode = NULL;
	if (sqlite3_prepare_v2(reg->db, "PRAGMA journal_mode = WAL", -1, &s, NULL) == SQLITE_OK) {
		if (sqlite3_step(s) == SQLITE_ROW)
			mode = (const char *)sqlite3_column_text(s, 0);
		int wal = mode && strcmp(mode, "wal") == 0;
		sqlite3_finalize(s);
		if (!wal) {
			rc = rt_errf(err, errlen, -EIO, "registry: %s: cannot switch to WAL journal (%s)", path,
				  sqlite3_errmsg(reg->db));
			goto fail;
		}
	} else {
		rc = rt_errf(err, errlen, -EIO, "registry: %s: %s", path, sqlite3_errmsg(reg->db));
		goto fail;
	}
	if (sqlite3_exec(reg->db, "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;", NULL,
			 NULL, &msg) != SQLITE_OK) {
		rc = rt_errf(err, errlen, -EIO, "registry: %s: %s", path, msg ? msg : "pragma failed");
		sqlite3_free(msg);
		goto fail;
	}
	if ((rc = migrate(reg->db, err, errlen)) < 0)
		goto fail;
	for (int i = 0; i < S_COUNT; i++) {
		if (sqlite3_prepare_v3(reg->db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &reg->st[i],
				       NULL) != SQLITE_OK) {
			rc = rt_errf(err, errlen, -EIO, "registry: preparing '%s': %s", sql[i],
				  sqlite3_errmsg(reg->db));
			goto fail;
		}
	}
	*out = reg;
	return 0;
fail:
	rt_registry_close(reg);
	return rc;
}

struct sqlite3 *rt_registry_db(rt_registry *reg)
{
	return reg->db;
}

void rt_registry_close(rt_registry *reg)
{
	if (!reg)
		return;
	for (int i = 0; i < S_COUNT; i++)
		sqlite3_finalize(reg->st[i]);
	if (reg->db)
		sqlite3_close(reg->db);
	free(reg);
}

/* find_fn looks up a function's id and latest revision: 0, -ENOENT, or -errno. */
static int find_fn(rt_registry *reg, const char *name, int64_t *id, uint32_t *latest)
{
	sqlite3_stmt *s = stmt(reg, S_FN_FIND);
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*id = sqlite3_column_int64(s, 0);
		*latest = (uint32_t)sqlite3_column_int64(s, 1);
		sqlite3_reset(s);
		return 0;
	}
	sqlite3_reset(s);
	return rc == SQLITE_DONE ? -ENOENT : sql_err(reg, rc, "find function");
}

static int rev_exists(rt_registry *reg, int64_t id, uint32_t rev)
{
	sqlite3_stmt *s = stmt(reg, S_REV_EXISTS);
	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_int64(s, 2, rev);
	int rc = sqlite3_step(s);
	sqlite3_reset(s);
	if (rc == SQLITE_ROW)
		return 1;
	return rc == SQLITE_DONE ? 0 : sql_err(reg, rc, "revision lookup");
}

/* traffic_ok re-validates a split given as a struct (the JSON path validated it already). */
static int traffic_ok(const rt_traffic *t, char *err, size_t errlen)
{
	if (t->n < 1 || t->n > RT_MANIFEST_TRAFFIC_MAX)
		return rt_errf(err, errlen, -EINVAL, "field 'traffic': must name 1..%d revisions",
			    RT_MANIFEST_TRAFFIC_MAX);
	int sum = 0;
	for (int i = 0; i < t->n; i++) {
		if (t->e[i].percent < 0 || t->e[i].percent > 100 || t->e[i].rev > RT_MANIFEST_REV_MAX)
			return rt_errf(err, errlen, -EINVAL, "field 'traffic': bad entry %d", i);
		for (int j = 0; j < i; j++)
			if (t->e[j].rev == t->e[i].rev)
				return rt_errf(err, errlen, -EINVAL, "field 'traffic': revision %u twice",
					    t->e[i].rev);
		sum += t->e[i].percent;
	}
	if (sum != 100)
		return rt_errf(err, errlen, -EINVAL, "field 'traffic': percents must sum to 100 (got %d)", sum);
	return 0;
}

/* write_traffic replaces the split of function id inside an open transaction; revisions must
 * exist. */
static int write_traffic(rt_registry *reg, const char *name, int64_t id, uint32_t latest,
			 const rt_traffic *t, char *err, size_t errlen)
{
	int rc;
	for (int i = 0; i < t->n; i++) {
		uint32_t r = t->e[i].rev;
		if (r == RT_MANIFEST_REV_LATEST)
			continue;
		if (r > latest || (rc = rev_exists(reg, id, r)) == 0)
			return rt_errf(err, errlen, -ENOENT, "field 'traffic': function '%s' has no revision "
				    "%u (latest is %u)", name, r, latest);
		if (rc < 0)
			return rt_errf(err, errlen, rc, "registry error");
	}
	sqlite3_stmt *s = stmt(reg, S_TR_DELETE);
	sqlite3_bind_int64(s, 1, id);
	if ((rc = exec_done(reg, s, "delete traffic")) < 0)
		return rt_errf(err, errlen, rc, "registry error: %s", sqlite3_errmsg(reg->db));
	for (int i = 0; i < t->n; i++) {
		s = stmt(reg, S_TR_INSERT);
		sqlite3_bind_int64(s, 1, id);
		sqlite3_bind_int64(s, 2, t->e[i].rev);
		sqlite3_bind_int(s, 3, t->e[i].percent);
		if ((rc = exec_done(reg, s, "insert traffic")) < 0)
			return rt_errf(err, errlen, rc, "registry error: %s", sqlite3_errmsg(reg->db));
	}
	return 0;
}

int rt_registry_put(rt_registry *reg, const char *name, const rt_manifest *m,
		    const char *snapshot_path, uint32_t *rev_out, char *err, size_t errlen)
{
	int rc;
	if ((rc = rt_manifest_name_valid(name, err, errlen)) < 0)
		return rc;
	if (m->traffic.n > 0 && (rc = traffic_ok(&m->traffic, err, errlen)) < 0)
		return rc;
	json_t *mj = rt_manifest_to_json(m, 0);
	char *text = mj ? json_dumps(mj, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(mj);
	if (!text)
		return rt_errf(err, errlen, -ENOMEM, "out of memory");
	int64_t t = now_ms(), id = 0;
	uint32_t latest = 0, rev;
	if ((rc = begin(reg, 1)) < 0) {
		rt_errf(err, errlen, rc, "registry busy or failing: %s", sqlite3_errmsg(reg->db));
		goto out;
	}
	rc = find_fn(reg, name, &id, &latest);
	sqlite3_stmt *s;
	if (rc == -ENOENT) {
		s = stmt(reg, S_FN_INSERT);
		sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 2, m->kind, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 3, t);
		if ((rc = exec_done(reg, s, "insert function")) < 0)
			goto sqlfail;
		id = sqlite3_last_insert_rowid(reg->db);
		rev = 1;
	} else if (rc < 0) {
		goto sqlfail;
	} else {
		if (latest >= RT_MANIFEST_REV_MAX) {
			rc = rt_errf(err, errlen, -EOVERFLOW, "function '%s' has too many revisions", name);
			goto undo;
		}
		rev = latest + 1;
		s = stmt(reg, S_FN_UPDATE);
		sqlite3_bind_int64(s, 1, id);
		sqlite3_bind_text(s, 2, m->kind, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 3, rev);
		sqlite3_bind_int64(s, 4, t);
		if ((rc = exec_done(reg, s, "update function")) < 0)
			goto sqlfail;
	}
	s = stmt(reg, S_REV_INSERT);
	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_int64(s, 2, rev);
	sqlite3_bind_text(s, 3, text, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 4, snapshot_path ? snapshot_path : "", -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 5, t);
	if ((rc = exec_done(reg, s, "insert revision")) < 0)
		goto sqlfail;
	if (rt_registry_test_hook)
		rt_registry_test_hook("after-insert-revision");
	rt_traffic all_latest = {.n = 1, .e = {{.rev = RT_MANIFEST_REV_LATEST, .percent = 100}}};
	if ((rc = write_traffic(reg, name, id, rev, m->traffic.n > 0 ? &m->traffic : &all_latest,
				err, errlen)) < 0)
		goto undo;
	if (rt_registry_test_hook)
		rt_registry_test_hook("after-traffic");
	rt_fault_point("deploy.commit");
	if ((rc = commit(reg)) < 0)
		goto sqlfail;
	if (rev_out)
		*rev_out = rev;
	rc = 0;
	goto out;
sqlfail:
	rt_errf(err, errlen, rc, "registry error: %s", sqlite3_errmsg(reg->db));
undo:
	rollback(reg);
out:
	free(text);
	return rc;
}

int rt_registry_set_traffic(rt_registry *reg, const char *name, const rt_traffic *t,
			    char *err, size_t errlen)
{
	int rc;
	int64_t id;
	uint32_t latest;
	if ((rc = traffic_ok(t, err, errlen)) < 0)
		return rc;
	if ((rc = begin(reg, 1)) < 0)
		return rt_errf(err, errlen, rc, "registry busy or failing: %s", sqlite3_errmsg(reg->db));
	if ((rc = find_fn(reg, name, &id, &latest)) < 0) {
		if (rc == -ENOENT)
			rt_errf(err, errlen, rc, "function '%s' not found", name);
		else
			rt_errf(err, errlen, rc, "registry error: %s", sqlite3_errmsg(reg->db));
		rollback(reg);
		return rc;
	}
	if ((rc = write_traffic(reg, name, id, latest, t, err, errlen)) < 0) {
		rollback(reg);
		return rc;
	}
	if ((rc = commit(reg)) < 0)
		return rt_errf(err, errlen, rc, "registry error: %s", sqlite3_errmsg(reg->db));
	return 0;
}

/* row_to_rev fills out from a (rev, manifest, snapshot_path, created_ms) row. */
static int row_to_rev(rt_registry *reg, sqlite3_stmt *s, const char *name, rt_revision_info *out)
{
	char err[256];
	memset(out, 0, sizeof *out);
	snprintf(out->name, sizeof out->name, "%s", name);
	out->rev = (uint32_t)sqlite3_column_int64(s, 0);
	const char *mtext = (const char *)sqlite3_column_text(s, 1);
	const char *path = (const char *)sqlite3_column_text(s, 2);
	out->created_ms = sqlite3_column_int64(s, 3);
	if (!mtext || rt_manifest_parse(mtext, strlen(mtext), NULL, NULL, &out->manifest, err,
					sizeof err) < 0) {
		rt_logf(RT_LOG_ERROR, "registry: function '%s' revision %u: stored manifest unreadable: %s",
			name, out->rev, mtext ? err : "NULL");
		return -EIO;
	}
	snprintf(out->snapshot_path, sizeof out->snapshot_path, "%s", path ? path : "");
	(void)reg;
	return 0;
}

int rt_registry_get_revision(rt_registry *reg, const char *name, uint32_t rev,
			     rt_revision_info *out)
{
	sqlite3_stmt *s = stmt(reg, S_REV_GET);
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, rev);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		rc = row_to_rev(reg, s, name, out);
	else
		rc = rc == SQLITE_DONE ? -ENOENT : sql_err(reg, rc, "get revision");
	sqlite3_reset(s);
	return rc;
}

int rt_registry_get(rt_registry *reg, const char *name, rt_revision_info *out)
{
	return rt_registry_get_revision(reg, name, RT_MANIFEST_REV_LATEST, out);
}

static int read_traffic(rt_registry *reg, int64_t id, rt_traffic *t)
{
	memset(t, 0, sizeof *t);
	sqlite3_stmt *s = stmt(reg, S_TR_GET);
	sqlite3_bind_int64(s, 1, id);
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW && t->n < RT_MANIFEST_TRAFFIC_MAX) {
		t->e[t->n].rev = (uint32_t)sqlite3_column_int64(s, 0);
		t->e[t->n].percent = sqlite3_column_int(s, 1);
		t->n++;
	}
	sqlite3_reset(s);
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : sql_err(reg, rc, "get traffic");
}

int rt_registry_get_traffic(rt_registry *reg, const char *name, rt_traffic *t)
{
	int64_t id;
	uint32_t latest;
	int rc = find_fn(reg, name, &id, &latest);
	return rc < 0 ? rc : read_traffic(reg, id, t);
}

static json_t *time_json(int64_t ms)
{
	char b[40];
	rt_registry_format_time(ms, b, sizeof b);
	return json_string(b);
}

int rt_registry_get_json(rt_registry *reg, const char *name, json_t **out)
{
	int rc;
	json_t *o = NULL, *revs = NULL;
	rt_revision_info *ri = malloc(sizeof *ri);
	*out = NULL;
	if (!ri)
		return -ENOMEM;
	if ((rc = begin(reg, 0)) < 0)
		goto done;
	sqlite3_stmt *s = stmt(reg, S_FN_INFO);
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc != SQLITE_ROW) {
		rc = rc == SQLITE_DONE ? -ENOENT : sql_err(reg, rc, "get function");
		goto fail;
	}
	int64_t id = sqlite3_column_int64(s, 0);
	o = json_object();
	revs = json_array();
	if (!o || !revs) {
		rc = -ENOMEM;
		goto fail;
	}
	json_object_set_new(o, "name", json_string(name));
	json_object_set_new(o, "kind", json_string((const char *)sqlite3_column_text(s, 1)));
	json_object_set_new(o, "revision", json_integer(sqlite3_column_int64(s, 2)));
	json_object_set_new(o, "created", time_json(sqlite3_column_int64(s, 3)));
	json_object_set_new(o, "updated", time_json(sqlite3_column_int64(s, 4)));
	uint32_t latest = (uint32_t)sqlite3_column_int64(s, 2);
	sqlite3_reset(s);
	rt_traffic t;
	if ((rc = read_traffic(reg, id, &t)) < 0)
		goto fail;
	json_int_t total = 0;
	s = stmt(reg, S_REV_LIST);
	sqlite3_bind_int64(s, 1, id);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if ((rc = row_to_rev(reg, s, name, ri)) < 0)
			goto fail;
		total++;
		/* the newest RT_REGISTRY_LIST_REVS and those taking traffic: a function deployed
		 * thousands of times keeps a small answer */
		int keep = ri->rev + RT_REGISTRY_LIST_REVS > latest;
		for (int k = 0; k < t.n && !keep; k++)
			keep = t.e[k].rev == ri->rev;
		if (!keep)
			continue;
		json_t *r = json_object();
		if (!r) {
			rc = -ENOMEM;
			goto fail;
		}
		json_object_set_new(r, "revision", json_integer(ri->rev));
		json_object_set_new(r, "created", time_json(ri->created_ms));
		json_object_set_new(r, "snapshot_path", ri->snapshot_path[0] ?
				    json_string(ri->snapshot_path) : json_null());
		json_object_set_new(r, "settings", rt_manifest_to_json(&ri->manifest, 0));
		json_array_append_new(revs, r);
		if (ri->rev == latest) {
			json_object_set_new(o, "settings", rt_manifest_to_json(&ri->manifest, 0));
			json_object_set_new(o, "snapshot_path", ri->snapshot_path[0] ?
					    json_string(ri->snapshot_path) : json_null());
		}
	}
	if (rc != SQLITE_DONE) {
		rc = sql_err(reg, rc, "list revisions");
		goto fail;
	}
	json_object_set_new(o, "revisions", revs);
	json_object_set_new(o, "revisions_total", json_integer(total));
	revs = NULL;
	json_object_set_new(o, "traffic", rt_traffic_to_json(&t));
	rollback(reg); /* read-only transaction: just end it */
	*out = o;
	free(ri);
	return 0;
fail:
	rollback(reg);
done:
	json_decref(o);
	json_decref(revs);
	free(ri);
	return rc;
}

int rt_registry_list(rt_registry *reg, rt_registry_entry **out, size_t *n)
{
	size_t cap = 0, k = 0;
	rt_registry_entry *v = NULL;
	*out = NULL;
	*n = 0;
	sqlite3_stmt *s = stmt(reg, S_LIST);
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (k == cap) {
			size_t nc = cap ? cap * 2 : 16;
			rt_registry_entry *nv = realloc(v, nc * sizeof *v);
			if (!nv) {
				sqlite3_reset(s);
				free(v);
				return -ENOMEM;
			}
			v = nv;
			cap = nc;
		}
		memset(&v[k], 0, sizeof v[k]);
		snprintf(v[k].name, sizeof v[k].name, "%s", (const char *)sqlite3_column_text(s, 0));
		snprintf(v[k].kind, sizeof v[k].kind, "%s", (const char *)sqlite3_column_text(s, 1));
		v[k].latest_rev = (uint32_t)sqlite3_column_int64(s, 2);
		v[k].updated_ms = sqlite3_column_int64(s, 3);
		k++;
	}
	sqlite3_reset(s);
	if (rc != SQLITE_DONE) {
		free(v);
		return sql_err(reg, rc, "list functions");
	}
	*out = v;
	*n = k;
	return 0;
}

int rt_registry_list_json(rt_registry *reg, json_t **out)
{
	rt_registry_entry *v;
	size_t n;
	*out = NULL;
	int rc = rt_registry_list(reg, &v, &n);
	if (rc < 0)
		return rc;
	json_t *o = json_object(), *a = json_array();
	if (!o || !a) {
		json_decref(o);
		json_decref(a);
		free(v);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		json_t *f = json_object();
		if (!f) {
			rc = -ENOMEM;
			break;
		}
		json_object_set_new(f, "name", json_string(v[i].name));
		json_object_set_new(f, "kind", json_string(v[i].kind));
		json_object_set_new(f, "revision", json_integer(v[i].latest_rev));
		json_object_set_new(f, "updated", time_json(v[i].updated_ms));
		json_array_append_new(a, f);
	}
	free(v);
	json_object_set_new(o, "functions", a);
	if (rc < 0) {
		json_decref(o);
		return rc;
	}
	*out = o;
	return 0;
}

int rt_registry_delete(rt_registry *reg, const char *name)
{
	sqlite3_stmt *s = stmt(reg, S_FN_DELETE);
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	int rc = exec_done(reg, s, "delete function");
	if (rc < 0)
		return rc;
	/* revisions and traffic go with it (ON DELETE CASCADE, one statement = one transaction) */
	return sqlite3_changes(reg->db) > 0 ? 0 : -ENOENT;
}

int rt_registry_pick_revision(rt_registry *reg, const char *name, uint64_t random_draw,
			      uint32_t *rev)
{
	sqlite3_stmt *s = stmt(reg, S_TR_PICK);
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	int rc, found = 0, chosen = 0, acc = 0;
	int point = (int)(random_draw % 100);
	uint32_t latest = 0;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		found = 1;
		latest = (uint32_t)sqlite3_column_int64(s, 0);
		if (chosen || sqlite3_column_type(s, 1) == SQLITE_NULL)
			continue;
		uint32_t r = (uint32_t)sqlite3_column_int64(s, 1);
		acc += sqlite3_column_int(s, 2);
		if (point < acc) {
			*rev = r == RT_MANIFEST_REV_LATEST ? latest : r;
			chosen = 1;
		}
	}
	sqlite3_reset(s);
	if (rc != SQLITE_DONE)
		return sql_err(reg, rc, "pick revision");
	if (!found)
		return -ENOENT;
	if (!chosen)
		*rev = latest; /* no split stored (cannot happen through this API): the latest */
	return 0;
}

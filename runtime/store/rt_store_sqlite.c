/* rt_store_sqlite.c — the embedded registry store: one SQLite database, DATA/registry.db,
 * holding functions, revisions, traffic splits and API keys (rt_store.h is the interface,
 * rt_registry.h the contracts). WAL journal, every multi-statement change in one transaction,
 * synchronous=NORMAL (a commit does not wait for fsync: a power loss can lose the last
 * commits, never corrupt the file). The schema is versioned with PRAGMA user_version and
 * upgraded by numbered migrations at open.
 *
 * Statements are counted through SQLite's statement trace (each execution of a prepared
 * statement and each statement of an exec). Changes made by other processes (`thaw keys`)
 * are announced through DATA/registry.gen: 8 bytes mapped shared, incremented after every
 * commit of any process that writes through this file. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <sqlite3.h>
#include "runtime/base/rt_clock.h"
#include "runtime/base/rt_log.h"
#include "runtime/base/rt_fault.h"
#include "runtime/store/rt_store.h"
#include "runtime/store/rt_store_rows.h"

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
	/* 1 -> 2: batch jobs (runtime/jobs/rt_jobs.c owns the rows) */
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
	/* 2 -> 3: API keys (runtime/access/rt_auth.c owns the rows): only a keyed hash of each
	 * key is stored, found by its non-secret id */
	"CREATE TABLE api_keys("
	"  id TEXT PRIMARY KEY,"
	"  hash BLOB NOT NULL,"
	"  scopes TEXT NOT NULL,"              /* space-separated */
	"  created_ms INTEGER NOT NULL,"
	"  revoked_ms INTEGER) WITHOUT ROWID;",
	/* 3 -> 4: revision descriptors (rt_desc.h, JSON); NULL for revisions stored before:
	 * computed at their first read */
	"ALTER TABLE revisions ADD COLUMN descriptor TEXT;",
	/* 4 -> 5: job leases (rt_jobstore.h): the node running a job and the end of its lease
	 * (Unix ms; NULL: none), so that daemons sharing this file run each job once */
	"ALTER TABLE jobs ADD COLUMN owner TEXT NOT NULL DEFAULT '';"
	"ALTER TABLE jobs ADD COLUMN lease_until INTEGER;",
	/* 5 -> 6: cluster membership (rt_registry_node_*): one lease row per node; the one
	 * daemon of a machine keeps its own row, as a node of a cluster does */
	"CREATE TABLE nodes("
	"  id TEXT PRIMARY KEY,"
	"  advertise TEXT NOT NULL,"
	"  started_ms INTEGER NOT NULL,"
	"  beat_ms INTEGER NOT NULL,"
	"  lease_until INTEGER NOT NULL,"   /* Unix ms */
	"  state TEXT) WITHOUT ROWID;",
};
#define N_MIGRATIONS (int)(sizeof migrations / sizeof migrations[0])
_Static_assert(N_MIGRATIONS == RT_REGISTRY_SCHEMA_VERSION, "one migration per schema version");

enum {
	S_BEGIN, S_BEGIN_READ, S_COMMIT, S_ROLLBACK,
	S_FN_FIND, S_FN_INFO, S_FN_INSERT, S_FN_UPDATE, S_FN_DELETE,
	S_REV_INSERT, S_REV_DESC, S_REV_GET, S_REV_LIST, S_REV_EXISTS,
	S_TR_DELETE, S_TR_INSERT, S_TR_GET,
	S_LIST,
	S_KEY_INSERT, S_KEY_REVOKE, S_KEY_ALL,
	S_JOB_INSERT, S_JOB_GET, S_JOB_LIST, S_JOB_LIST_STATE, S_JOB_SAVE, S_JOB_CANDIDATES,
	S_JOB_RECOVER, S_JOB_DISOWN, S_JOB_COUNTS, S_JOB_LEASE_GET, S_JOB_CLAIM, S_JOB_RENEW,
	S_JOB_SAVE_OWNED, S_JOB_EXISTS,
	S_NODE_BEAT, S_NODE_LIST, S_NODE_LEAVE,
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
	[S_REV_INSERT] = "INSERT INTO revisions(function_id, rev, manifest, snapshot_path, created_ms, "
			 "descriptor) VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
	[S_REV_DESC] = "UPDATE revisions SET descriptor = ?3 WHERE rev = ?2 AND function_id = "
		       "(SELECT id FROM functions WHERE name = ?1)",
	[S_REV_GET] = "SELECT r.rev, r.manifest, r.snapshot_path, r.created_ms, r.descriptor FROM functions f "
		      "JOIN revisions r ON r.function_id = f.id WHERE f.name = ?1 AND "
		      "r.rev = CASE WHEN ?2 = 0 THEN f.latest_rev ELSE ?2 END",
	[S_REV_LIST] = "SELECT rev, manifest, snapshot_path, created_ms, descriptor FROM revisions "
		       "WHERE function_id = ?1 ORDER BY rev",
	[S_REV_EXISTS] = "SELECT 1 FROM revisions WHERE function_id = ?1 AND rev = ?2",
	[S_TR_DELETE] = "DELETE FROM traffic WHERE function_id = ?1",
	[S_TR_INSERT] = "INSERT INTO traffic(function_id, rev, percent) VALUES(?1, ?2, ?3)",
	[S_TR_GET] = "SELECT rev, percent FROM traffic WHERE function_id = ?1 ORDER BY rev",
	[S_LIST] = "SELECT name, kind, latest_rev, updated_ms FROM functions ORDER BY name",
	[S_KEY_INSERT] = "INSERT INTO api_keys(id, hash, scopes, created_ms) VALUES(?1, ?2, ?3, ?4)",
	[S_KEY_REVOKE] = "UPDATE api_keys SET revoked_ms = ?2 WHERE id = ?1 AND revoked_ms IS NULL",
	[S_KEY_ALL] = "SELECT id, hash, scopes, created_ms, revoked_ms FROM api_keys "
		      "ORDER BY created_ms, id",
	[S_JOB_INSERT] = "INSERT INTO jobs(type, function, revision, snapshot, params, schedule, "
			 "priority, device, state, created_ms, updated_ms) "
			 "VALUES(?1,?2,?3,?4,?5,?6,?7,?8,'queued',?9,?9)",
	[S_JOB_GET] = "SELECT id, type, function, revision, snapshot, params, schedule, priority, "
		      "device, state, progress, step, metrics, preemptions, created_ms, started_ms, "
		      "finished_ms, updated_ms, error, result_snapshot, result_revision, checkpoint, "
		      "owner, lease_until FROM jobs WHERE id = ?1",
	[S_JOB_LIST] = "SELECT id FROM jobs ORDER BY id",
	[S_JOB_LIST_STATE] = "SELECT id FROM jobs WHERE state = ?1 ORDER BY id",
	[S_JOB_SAVE] = "UPDATE jobs SET state=?2, progress=?3, step=?4, metrics=?5, preemptions=?6, "
		       "started_ms=?7, finished_ms=?8, updated_ms=?9, error=?10, result_snapshot=?11, "
		       "result_revision=?12, checkpoint=?13 WHERE id = ?1",
	/* unfinished and not leased live: queued or preempted jobs nobody holds, and running jobs
	 * whose owner stopped renewing (or that have none) */
	[S_JOB_CANDIDATES] = "SELECT id FROM jobs WHERE state IN ('queued','preempted','running') "
			     "AND (owner = '' OR lease_until IS NULL OR lease_until <= ?1) "
			     "ORDER BY priority DESC, id",
	[S_JOB_RECOVER] = "UPDATE jobs SET state='preempted', owner='', lease_until=NULL "
			  "WHERE state='running' AND (owner = ?1 OR owner = '')",
	[S_JOB_DISOWN] = "UPDATE jobs SET owner='', lease_until=NULL WHERE owner = ?1 AND "
			 "state IN ('queued','preempted')",
	[S_JOB_LEASE_GET] = "SELECT state, owner, lease_until FROM jobs WHERE id = ?1",
	[S_JOB_CLAIM] = "UPDATE jobs SET owner = ?2, lease_until = ?3 WHERE id = ?1",
	[S_JOB_RENEW] = "UPDATE jobs SET lease_until = ?2 WHERE owner = ?1 AND "
			"state IN ('queued','running','preempted')",
	[S_JOB_SAVE_OWNED] = "UPDATE jobs SET state=?2, progress=?3, step=?4, metrics=?5, "
			     "preemptions=?6, started_ms=?7, finished_ms=?8, updated_ms=?9, error=?10, "
			     "result_snapshot=?11, result_revision=?12, checkpoint=?13, "
			     "owner = CASE WHEN ?2 IN ('queued','running') THEN owner ELSE '' END, "
			     "lease_until = CASE WHEN ?2 IN ('queued','running') THEN lease_until END "
			     "WHERE id = ?1 AND owner = ?14 AND state IN ('queued','running','preempted')",
	[S_JOB_EXISTS] = "SELECT 1 FROM jobs WHERE id = ?1",
	[S_JOB_COUNTS] = "SELECT state, COUNT(*) FROM jobs GROUP BY state",
	[S_NODE_BEAT] = "INSERT INTO nodes(id, advertise, started_ms, beat_ms, lease_until, state) "
			"VALUES(?1, ?2, ?4, ?4, ?4 + ?5, ?3) ON CONFLICT(id) DO UPDATE SET "
			"advertise = excluded.advertise, state = excluded.state, "
			"beat_ms = excluded.beat_ms, lease_until = excluded.lease_until, "
			"started_ms = CASE WHEN ?6 THEN excluded.started_ms ELSE started_ms END",
	[S_NODE_LIST] = "SELECT id, advertise, started_ms, beat_ms, lease_until - ?1, state FROM nodes "
			"WHERE lease_until > ?1 ORDER BY id",
	[S_NODE_LEAVE] = "DELETE FROM nodes WHERE id = ?1",
};

typedef struct rt_store sq;
struct rt_store {
	sqlite3 *db;
	sqlite3_stmt *st[S_COUNT];
	uint64_t statements;
	uint64_t *gen;             /* DATA/registry.gen, mapped shared; NULL when unavailable:
				    * [0] changes committed, [1] membership notifications */
	uint64_t local_gen;        /* stand in for them when it is unavailable */
	uint64_t local_nodes_gen;
};



/* sql_err maps a SQLite result code to a negative errno and logs the message. */
static int sql_err(sq *reg, int rc, const char *what)
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
static sqlite3_stmt *stmt(sq *reg, int i)
{
	sqlite3_reset(reg->st[i]);
	sqlite3_clear_bindings(reg->st[i]);
	return reg->st[i];
}

/* exec1 runs a statement without result rows (binding done by the caller): 0 or -errno. */
static int exec_done(sq *reg, sqlite3_stmt *s, const char *what)
{
	int rc = sqlite3_step(s);
	sqlite3_reset(s);
	return rc == SQLITE_DONE ? 0 : sql_err(reg, rc, what);
}

/* a statement's current row as an rt_store_row (rt_store_rows.h): res is the sqlite3_stmt */
static int col_is_null(const rt_store_row *row, int c)
{
	return sqlite3_column_type(row->res, c) == SQLITE_NULL;
}

static const char *col_text(const rt_store_row *row, int c)
{
	return (const char *)sqlite3_column_text(row->res, c);
}

static int64_t col_i64(const rt_store_row *row, int c)
{
	return sqlite3_column_int64(row->res, c);
}

static double col_f64(const rt_store_row *row, int c)
{
	return sqlite3_column_double(row->res, c);
}

static const rt_store_row_ops cols = {
	.is_null = col_is_null, .text = col_text, .i64 = col_i64, .f64 = col_f64};
#define ROW(s) (&(rt_store_row){.ops = &cols, .res = (s)})

static int begin(sq *reg, int write)
{
	return exec_done(reg, stmt(reg, write ? S_BEGIN : S_BEGIN_READ), "begin");
}

static int commit(sq *reg)
{
	int rc = exec_done(reg, stmt(reg, S_COMMIT), "commit");
	if (rc < 0 && !sqlite3_get_autocommit(reg->db))
		exec_done(reg, stmt(reg, S_ROLLBACK), "rollback");
	return rc;
}

static void rollback(sq *reg)
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

/* counts each statement SQLite starts on the connection */
static int on_trace(unsigned type, void *ud, void *p, void *x)
{
	(void)type;
	(void)p;
	(void)x;
	((sq *)ud)->statements++;
	return 0;
}

#define GEN_BYTES (2 * sizeof(uint64_t))

/* maps the generation file p (created 0600 with zero counts when missing, grown to two
 * counts when shorter); NULL when it cannot: then only this process's changes are seen */
static uint64_t *map_gen(const char *p)
{
	int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return NULL;
	struct stat st;
	void *m = MAP_FAILED;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
	    (st.st_size >= (off_t)GEN_BYTES || ftruncate(fd, GEN_BYTES) == 0))
		m = mmap(NULL, GEN_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	return m == MAP_FAILED ? NULL : m;
}

/* announces a committed change to every process on this file */
static void bump(sq *reg)
{
	if (reg->gen)
		__atomic_add_fetch(reg->gen, 1, __ATOMIC_SEQ_CST);
	else
		reg->local_gen++;
}

static uint64_t sq_generation(rt_store *reg)
{
	return reg->gen ? __atomic_load_n(reg->gen, __ATOMIC_SEQ_CST) : reg->local_gen;
}

static uint64_t sq_statements(rt_store *reg)
{
	return reg->statements;
}

static void sq_close(sq *reg);

/* sq_open opens the database file path; changes are announced through gen_path */
static int sq_open(const char *path, const char *gen_path, sq **out, char *err, size_t errlen)
{
	char *msg = NULL;
	*out = NULL;
	make_private(path);
	sq *reg = calloc(1, sizeof *reg);
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
	reg->gen = map_gen(gen_path);
	sqlite3_trace_v2(reg->db, SQLITE_TRACE_STMT, on_trace, reg);
	*out = reg;
	return 0;
fail:
	sq_close(reg);
	return rc;
}


static void sq_close(sq *reg)
{
	if (!reg)
		return;
	for (int i = 0; i < S_COUNT; i++)
		sqlite3_finalize(reg->st[i]);
	if (reg->db)
		sqlite3_close(reg->db);
	if (reg->gen)
		munmap(reg->gen, GEN_BYTES);
	free(reg);
}

/* find_fn looks up a function's id and latest revision: 0, -ENOENT, or -errno. */
static int find_fn(sq *reg, const char *name, int64_t *id, uint32_t *latest)
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

static int rev_exists(sq *reg, int64_t id, uint32_t rev)
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

/* write_traffic replaces the split of function id inside an open transaction; revisions must
 * exist. */
static int write_traffic(sq *reg, const char *name, int64_t id, uint32_t latest,
			 const rt_traffic *t, char *err, size_t errlen)
{
	int rc;
	for (int i = 0; i < t->n; i++) {
		uint32_t r = t->e[i].rev;
		if (r == RT_MANIFEST_REV_LATEST)
			continue;
		if (r > latest || (rc = rev_exists(reg, id, r)) == 0)
			return rt_store_no_revision(name, r, latest, err, errlen);
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

static int sq_put(sq *reg, const char *name, const rt_manifest *m,
		    const char *snapshot_path, const rt_desc *desc, uint32_t *rev_out, char *err,
		    size_t errlen)
{
	char *text, *dtext;
	int rc = rt_store_put_texts(name, m, desc, &text, &dtext, err, errlen);
	if (rc < 0)
		return rc;
	int64_t t = rt_clock_wall_ms(), id = 0;
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
	if (dtext)
		sqlite3_bind_text(s, 6, dtext, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(s, 6);
	if ((rc = exec_done(reg, s, "insert revision")) < 0)
		goto sqlfail;
	if (rt_registry_test_hook)
		rt_registry_test_hook("after-insert-revision");
	if ((rc = write_traffic(reg, name, id, rev, rt_store_put_split(m), err, errlen)) < 0)
		goto undo;
	if (rt_registry_test_hook)
		rt_registry_test_hook("after-traffic");
	rt_fault_point("deploy.commit");
	if ((rc = commit(reg)) < 0)
		goto sqlfail;
	bump(reg);
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
	free(dtext);
	return rc;
}

static int sq_set_desc(sq *reg, const char *name, uint32_t rev, const rt_desc *desc)
{
	char *dtext = rt_store_desc_text(desc);
	if (!dtext)
		return -ENOMEM;
	sqlite3_stmt *s = stmt(reg, S_REV_DESC);
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, rev);
	sqlite3_bind_text(s, 3, dtext, -1, SQLITE_STATIC);
	int rc = exec_done(reg, s, "record descriptor");
	free(dtext);
	if (rc < 0)
		return rc;
	if (sqlite3_changes(reg->db) != 1)
		return -ENOENT;
	bump(reg);
	return 0;
}

static int sq_set_traffic(sq *reg, const char *name, const rt_traffic *t,
			    char *err, size_t errlen)
{
	int rc;
	int64_t id;
	uint32_t latest;
	if ((rc = rt_store_traffic_ok(t, err, errlen)) < 0)
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
	bump(reg);
	return 0;
}

static int sq_get_revision(sq *reg, const char *name, uint32_t rev,
			     rt_revision_info *out)
{
	sqlite3_stmt *s = stmt(reg, S_REV_GET);
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, rev);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		rc = rt_store_rev_from_row(ROW(s), name, out);
	else
		rc = rc == SQLITE_DONE ? -ENOENT : sql_err(reg, rc, "get revision");
	sqlite3_reset(s);
	return rc;
}


static int read_traffic(sq *reg, int64_t id, rt_traffic *t)
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

static int sq_get_head(sq *reg, const char *name, uint32_t *latest, rt_traffic *t)
{
	int64_t id;
	int rc = find_fn(reg, name, &id, latest);
	return rc < 0 ? rc : read_traffic(reg, id, t);
}

static int sq_get_json(sq *reg, const char *name, json_t **out)
{
	rt_store_fn_json b;
	*out = NULL;
	int rc = rt_store_fn_json_init(&b, name);
	if (rc < 0)
		goto done;
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
	if ((rc = rt_store_fn_json_head(&b, ROW(s))) < 0)
		goto fail;
	sqlite3_reset(s);
	if ((rc = read_traffic(reg, id, &b.traffic)) < 0)
		goto fail;
	s = stmt(reg, S_REV_LIST);
	sqlite3_bind_int64(s, 1, id);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		if ((rc = rt_store_fn_json_rev(&b, ROW(s))) < 0)
			goto fail;
	if (rc != SQLITE_DONE) {
		rc = sql_err(reg, rc, "list revisions");
		goto fail;
	}
	rollback(reg); /* read-only transaction: just end it */
	*out = rt_store_fn_json_done(&b);
	return 0;
fail:
	rollback(reg);
done:
	rt_store_fn_json_clear(&b);
	return rc;
}

/* collect_rows steps statement s to its end (or its first cap rows when cap > 0) and returns
 * its rows as an array of elem-sized entries, each zeroed, then filled by fill (a fill that
 * runs out of memory leaves its part unset: a node row without state): *out (malloc'd, NULL
 * when there are none) and *n. 0, -ENOMEM or the SQL error (what names the query in its
 * message). s is reset in every case. */
static int collect_rows(sq *reg, sqlite3_stmt *s, size_t cap, size_t elem, rt_store_fill_fn fill,
			const char *what, void **out, size_t *n)
{
	char *v = NULL;
	size_t k = 0, have = 0;
	int rc = SQLITE_DONE;
	*out = NULL;
	*n = 0;
	while ((!cap || k < cap) && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (k == have) {
			size_t nh = have ? have * 2 : 16;
			char *nv = realloc(v, nh * elem);
			if (!nv) {
				sqlite3_reset(s);
				free(v);
				return -ENOMEM;
			}
			v = nv;
			have = nh;
		}
		memset(v + k * elem, 0, elem);
		(void)fill(ROW(s), v + k * elem);
		k++;
	}
	sqlite3_reset(s);
	if (cap && k == cap)
		rc = SQLITE_DONE;
	if (rc != SQLITE_DONE) {
		free(v);
		return sql_err(reg, rc, what);
	}
	*out = v;
	*n = k;
	return 0;
}

static int sq_list(sq *reg, rt_registry_entry **out, size_t *n)
{
	return collect_rows(reg, stmt(reg, S_LIST), 0, sizeof **out, rt_store_fill_entry,
			    "list functions", (void **)out, n);
}


static int sq_delete(sq *reg, const char *name)
{
	sqlite3_stmt *s = stmt(reg, S_FN_DELETE);
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	int rc = exec_done(reg, s, "delete function");
	if (rc < 0)
		return rc;
	/* revisions and traffic go with it (ON DELETE CASCADE, one statement = one transaction) */
	if (sqlite3_changes(reg->db) == 0)
		return -ENOENT;
	bump(reg);
	return 0;
}

static int sq_key_insert(sq *reg, const rt_store_key *k)
{
	sqlite3_stmt *s = stmt(reg, S_KEY_INSERT);
	sqlite3_bind_text(s, 1, k->id, -1, SQLITE_STATIC);
	sqlite3_bind_blob(s, 2, k->hash, RT_REGISTRY_KEY_HASH_LEN, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, k->scopes, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 4, k->created_ms);
	int rc = sqlite3_step(s);
	sqlite3_reset(s);
	if (rc == SQLITE_DONE) {
		bump(reg);
		return 0;
	}
	return (rc & 0xff) == SQLITE_CONSTRAINT ? -EEXIST : sql_err(reg, rc, "insert key");
}

static int sq_key_revoke(sq *reg, const char *id, int64_t ms)
{
	sqlite3_stmt *s = stmt(reg, S_KEY_REVOKE);
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, ms);
	int rc = exec_done(reg, s, "revoke key");
	if (rc < 0)
		return rc;
	if (sqlite3_changes(reg->db) != 1)
		return -ENOENT;
	bump(reg);
	return 0;
}

/* the hash column is a blob; one of another length is damaged */
static int fill_key(const rt_store_row *row, void *entry)
{
	sqlite3_stmt *s = row->res;
	const unsigned char *hash = sqlite3_column_bytes(s, 1) == RT_REGISTRY_KEY_HASH_LEN ?
				    sqlite3_column_blob(s, 1) : NULL;
	rt_store_key_from_row(row, hash, entry);
	return 0;
}

static int sq_key_all(sq *reg, rt_store_key **out, size_t *n)
{
	return collect_rows(reg, stmt(reg, S_KEY_ALL), 0, sizeof **out, fill_key, "list keys",
			    (void **)out, n);
}

/* ---- jobs ---- */

static void bind_opt_text(sqlite3_stmt *s, int i, const char *t)
{
	if (t && t[0])
		sqlite3_bind_text(s, i, t, -1, SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(s, i);
}

static void bind_opt_int(sqlite3_stmt *s, int i, int64_t v)
{
	if (v)
		sqlite3_bind_int64(s, i, v);
	else
		sqlite3_bind_null(s, i);
}

static int sq_job_insert(sq *reg, const rt_job_row *r, int64_t *id)
{
	char *ptext, *stext;
	int rc = rt_store_job_texts(r, &ptext, &stext);
	if (rc == 0) {
		sqlite3_stmt *s = stmt(reg, S_JOB_INSERT);
		sqlite3_bind_text(s, 1, r->type, -1, SQLITE_STATIC);
		bind_opt_text(s, 2, r->function);
		bind_opt_int(s, 3, r->revision);
		sqlite3_bind_text(s, 4, r->snapshot, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 5, ptext, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 6, stext, -1, SQLITE_STATIC);
		sqlite3_bind_int(s, 7, r->priority);
		sqlite3_bind_text(s, 8, r->device, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 9, r->created_ms);
		rc = exec_done(reg, s, "insert job");
		if (rc == 0)
			*id = sqlite3_last_insert_rowid(reg->db);
	}
	free(ptext);
	free(stext);
	return rc;
}

static int sq_job_get(sq *reg, int64_t id, rt_job_row *r)
{
	sqlite3_stmt *s = stmt(reg, S_JOB_GET);
	memset(r, 0, sizeof *r);
	sqlite3_bind_int64(s, 1, id);
	int rc = sqlite3_step(s);
	if (rc != SQLITE_ROW) {
		sqlite3_reset(s);
		return rc == SQLITE_DONE ? -ENOENT : sql_err(reg, rc, "get job");
	}
	rt_store_job_from_row(ROW(s), r);
	sqlite3_reset(s);
	return 0;
}

/* binds r's progress columns (?1..?13 of S_JOB_SAVE and S_JOB_SAVE_OWNED); *metrics gets the
 * JSON text to free after the statement ran */
static int bind_progress(sqlite3_stmt *s, const rt_job_row *r, char **metrics)
{
	int rc = rt_store_job_metrics(r, metrics);
	if (rc < 0)
		return rc;
	sqlite3_bind_int64(s, 1, r->id);
	sqlite3_bind_text(s, 2, rt_job_state_names[r->state], -1, SQLITE_STATIC);
	sqlite3_bind_double(s, 3, r->progress);
	sqlite3_bind_int64(s, 4, r->step);
	sqlite3_bind_text(s, 5, *metrics ? *metrics : "{}", -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(s, 6, r->preemptions);
	bind_opt_int(s, 7, r->started_ms);
	bind_opt_int(s, 8, r->finished_ms);
	sqlite3_bind_int64(s, 9, r->updated_ms);
	bind_opt_text(s, 10, r->error);
	bind_opt_text(s, 11, r->result_snapshot);
	bind_opt_int(s, 12, r->result_revision);
	bind_opt_text(s, 13, r->checkpoint);
	return 0;
}

static int sq_job_save(sq *reg, const rt_job_row *r)
{
	char *metrics = NULL;
	sqlite3_stmt *s = stmt(reg, S_JOB_SAVE);
	int rc = bind_progress(s, r, &metrics);
	if (rc == 0)
		rc = exec_done(reg, s, "save job");
	free(metrics);
	return rc;
}

/* the first column of statement s's rows, as ids (at most cap when cap > 0) */
static int collect_ids(sq *reg, sqlite3_stmt *s, size_t cap, int64_t **ids, size_t *n)
{
	return collect_rows(reg, s, cap, sizeof **ids, rt_store_fill_id, "list jobs", (void **)ids,
			    n);
}

static int sq_job_ids(sq *reg, int state, int64_t **ids, size_t *n)
{
	*ids = NULL;
	*n = 0;
	if (state >= RT_JOB_STATES)
		return -EINVAL;
	sqlite3_stmt *s = stmt(reg, state >= 0 ? S_JOB_LIST_STATE : S_JOB_LIST);
	if (state >= 0)
		sqlite3_bind_text(s, 1, rt_job_state_names[state], -1, SQLITE_STATIC);
	return collect_ids(reg, s, 0, ids, n);
}

static int sq_job_candidates(sq *reg, int64_t *ids, size_t cap, size_t *n)
{
	int64_t *v;
	*n = 0;
	if (!cap)
		return 0;
	sqlite3_stmt *s = stmt(reg, S_JOB_CANDIDATES);
	sqlite3_bind_int64(s, 1, rt_clock_wall_ms());
	int rc = collect_ids(reg, s, cap, &v, n);
	if (rc < 0)
		return rc;
	if (*n)
		memcpy(ids, v, *n * sizeof *v);
	free(v);
	return 0;
}

static int sq_job_counts(sq *reg, int64_t *counts)
{
	memset(counts, 0, RT_JOB_STATES * sizeof *counts);
	sqlite3_stmt *s = stmt(reg, S_JOB_COUNTS);
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		int st = rt_store_job_state((const char *)sqlite3_column_text(s, 0));
		if (st >= 0)
			counts[st] = sqlite3_column_int64(s, 1);
	}
	sqlite3_reset(s);
	return rc == SQLITE_DONE ? 0 : sql_err(reg, rc, "count jobs");
}

static int sq_job_recover(sq *reg, const char *node, int *n)
{
	*n = 0;
	if (!rt_store_node_ok(node, 0))
		return -EINVAL;
	int rc = begin(reg, 1);
	if (rc < 0)
		return rc;
	sqlite3_stmt *s = stmt(reg, S_JOB_RECOVER);
	sqlite3_bind_text(s, 1, node, -1, SQLITE_STATIC);
	if ((rc = exec_done(reg, s, "recover jobs")) < 0)
		goto fail;
	int changed = sqlite3_changes(reg->db);
	s = stmt(reg, S_JOB_DISOWN);
	sqlite3_bind_text(s, 1, node, -1, SQLITE_STATIC);
	if ((rc = exec_done(reg, s, "drop job leases")) < 0 || (rc = commit(reg)) < 0)
		goto fail;
	*n = changed;
	return 0;
fail:
	rollback(reg);
	return rc;
}

/* claims in one write transaction (BEGIN IMMEDIATE: a second process's claim of the row waits
 * for this one and then sees its owner) */
static int sq_job_claim(sq *reg, int64_t id, const char *node, int64_t lease_ms)
{
	if (!rt_store_node_ok(node, 0) || lease_ms <= 0)
		return -EINVAL;
	int rc = begin(reg, 1);
	if (rc < 0)
		return rc;
	int64_t now = rt_clock_wall_ms();
	sqlite3_stmt *s = stmt(reg, S_JOB_LEASE_GET);
	sqlite3_bind_int64(s, 1, id);
	int src = sqlite3_step(s);
	if (src != SQLITE_ROW) {
		rc = src == SQLITE_DONE ? -ENOENT : sql_err(reg, src, "claim job");
		goto fail;
	}
	int st = rt_store_job_state((const char *)sqlite3_column_text(s, 0));
	const char *owner = (const char *)sqlite3_column_text(s, 1);
	int live = sqlite3_column_type(s, 2) != SQLITE_NULL && sqlite3_column_int64(s, 2) > now;
	int other = owner && owner[0] && strcmp(owner, node) != 0;
	sqlite3_reset(s);
	if (st != RT_JOB_QUEUED && st != RT_JOB_RUNNING && st != RT_JOB_PREEMPTED) {
		rc = -ENOENT;
		goto fail;
	}
	if (other && live) {
		rc = -EBUSY;
		goto fail;
	}
	s = stmt(reg, S_JOB_CLAIM);
	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_text(s, 2, node, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, now + lease_ms);
	if ((rc = exec_done(reg, s, "claim job")) < 0 || (rc = commit(reg)) < 0)
		goto fail;
	return 0;
fail:
	rollback(reg);
	return rc;
}

static int sq_job_renew(sq *reg, const char *node, int64_t lease_ms, int *n)
{
	if (n)
		*n = 0;
	if (!rt_store_node_ok(node, 0) || lease_ms <= 0)
		return -EINVAL;
	sqlite3_stmt *s = stmt(reg, S_JOB_RENEW);
	sqlite3_bind_text(s, 1, node, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, rt_clock_wall_ms() + lease_ms);
	int rc = exec_done(reg, s, "renew job leases");
	if (rc == 0 && n)
		*n = sqlite3_changes(reg->db);
	return rc;
}

static int sq_job_save_owned(sq *reg, const rt_job_row *r, const char *node)
{
	if (!rt_store_node_ok(node, 1))
		return -EINVAL;
	char *metrics = NULL;
	sqlite3_stmt *s = stmt(reg, S_JOB_SAVE_OWNED);
	int rc = bind_progress(s, r, &metrics);
	if (rc == 0) {
		sqlite3_bind_text(s, 14, node, -1, SQLITE_STATIC);
		rc = exec_done(reg, s, "save job");
	}
	free(metrics);
	if (rc < 0 || sqlite3_changes(reg->db) > 0)
		return rc;
	/* nothing written: an unknown job, or it changed hands */
	s = stmt(reg, S_JOB_EXISTS);
	sqlite3_bind_int64(s, 1, r->id);
	int src = sqlite3_step(s);
	sqlite3_reset(s);
	if (src == SQLITE_ROW)
		return -ESTALE;
	return src == SQLITE_DONE ? -ENOENT : sql_err(reg, src, "save job");
}

/* ---- nodes (the store's clock: this machine's wall clock) ---- */

static void bump_nodes(sq *reg)
{
	if (reg->gen)
		__atomic_add_fetch(&reg->gen[1], 1, __ATOMIC_SEQ_CST);
	else
		reg->local_nodes_gen++;
}

static uint64_t sq_nodes_generation(sq *reg)
{
	return reg->gen ? __atomic_load_n(&reg->gen[1], __ATOMIC_SEQ_CST) : reg->local_nodes_gen;
}

static int sq_node_beat(sq *reg, const char *id, const char *advertise, const char *state,
			int64_t lease_ms, int fresh, int notify)
{
	sqlite3_stmt *s = stmt(reg, S_NODE_BEAT);
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, advertise, -1, SQLITE_STATIC);
	if (state)
		sqlite3_bind_text(s, 3, state, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(s, 3);
	sqlite3_bind_int64(s, 4, rt_clock_wall_ms());
	sqlite3_bind_int64(s, 5, lease_ms);
	sqlite3_bind_int(s, 6, fresh);
	int rc = exec_done(reg, s, "node beat");
	if (rc == 0 && notify)
		bump_nodes(reg);
	return rc;
}

static int sq_node_list(sq *reg, rt_node_row **out, size_t *n)
{
	sqlite3_stmt *s = stmt(reg, S_NODE_LIST);
	sqlite3_bind_int64(s, 1, rt_clock_wall_ms());
	return collect_rows(reg, s, 0, sizeof **out, rt_store_fill_node, "list nodes", (void **)out,
			    n);
}

static int sq_node_leave(sq *reg, const char *id)
{
	sqlite3_stmt *s = stmt(reg, S_NODE_LEAVE);
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	int rc = exec_done(reg, s, "node leave");
	if (rc < 0)
		return rc;
	if (sqlite3_changes(reg->db) == 0)
		return -ENOENT;
	bump_nodes(reg);
	return 0;
}

static const rt_store_ops sqlite_ops = {
	.name = "sqlite",
	.close = sq_close,
	.statements = sq_statements,
	.generation = sq_generation,
	.put = sq_put,
	.set_desc = sq_set_desc,
	.set_traffic = sq_set_traffic,
	.get_revision = sq_get_revision,
	.get_head = sq_get_head,
	.get_json = sq_get_json,
	.list = sq_list,
	.delete_fn = sq_delete,
	.key_insert = sq_key_insert,
	.key_revoke = sq_key_revoke,
	.key_all = sq_key_all,
	.job_insert = sq_job_insert,
	.job_get = sq_job_get,
	.job_save = sq_job_save,
	.job_ids = sq_job_ids,
	.job_candidates = sq_job_candidates,
	.job_counts = sq_job_counts,
	.job_recover = sq_job_recover,
	.job_claim = sq_job_claim,
	.job_renew = sq_job_renew,
	.job_save_owned = sq_job_save_owned,
	.node_beat = sq_node_beat,
	.node_list = sq_node_list,
	.node_leave = sq_node_leave,
	.nodes_generation = sq_nodes_generation,
};

int rt_store_sqlite_open(const char *data_dir, const rt_store_ops **ops, rt_store **out,
			 char *err, size_t errlen)
{
	char path[4096], gen[4096];
	*ops = &sqlite_ops;
	*out = NULL;
	if ((size_t)snprintf(path, sizeof path, "%s/registry.db", data_dir) >= sizeof path)
		return rt_errf(err, errlen, -ENAMETOOLONG, "registry: data directory path too long");
	snprintf(gen, sizeof gen, "%s/registry.gen", data_dir);
	return sq_open(path, gen, out, err, errlen);
}

int rt_store_sqlite_open_file(const char *path, const rt_store_ops **ops, rt_store **out,
			      char *err, size_t errlen)
{
	char gen[4096];
	size_t n = strlen(path);
	*ops = &sqlite_ops;
	*out = NULL;
	if (n == 0)
		return rt_errf(err, errlen, -EINVAL, "registry: sqlite: needs a file path");
	if (n >= sizeof gen - 8)
		return rt_errf(err, errlen, -ENAMETOOLONG, "registry: sqlite: path too long");
	if (path[n - 1] == '/')
		return rt_errf(err, errlen, -EINVAL, "registry: sqlite:%s: a file path, not a directory",
			       path);
	if (n > 3 && !strcmp(path + n - 3, ".db"))
		n -= 3;
	snprintf(gen, sizeof gen, "%.*s.gen", (int)n, path);
	return sq_open(path, gen, out, err, errlen);
}

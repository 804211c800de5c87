/* rt_store_pg.c — the registry store shared by the nodes of a cluster: one PostgreSQL
 * database (libpq) holding functions, revisions, traffic splits, API keys, jobs with their
 * leases, the nodes' lease rows, the keys' hash secret and the cluster's admin audit trail
 * (rt_store.h is the interface, rt_registry.h and rt_jobstore.h the contracts; the behaviour
 * of every op is that of rt_store_sqlite.c).
 *
 * Schema: a schema_version table and forward-only migrations, each one transaction, taken
 * under an advisory lock so that nodes starting together migrate once. Writes: each one
 * transaction; those two nodes can race on (a new revision number, a job claim) lock the row
 * they change (SELECT ... FOR UPDATE, SKIP LOCKED for claims), and a transaction that fails
 * with a serialization failure or a deadlock is run again (a few times).
 *
 * Change fan-out: the session LISTENs on thaw_registry and thaw_nodes; every write NOTIFYs
 * in its transaction (payload: the function name, "*" for keys and anything wider), so the
 * other nodes hear of it at commit. The tick consumes notifications without blocking
 * (PQconsumeInput, PQnotifies), skipping this session's own. generation counts this
 * session's own commits and each reconnect (the whole view goes: changes may have been
 * missed meanwhile); other nodes' changes reach the registry through the tick's callback.
 *
 * The database going away: a statement that finds the connection broken fails with
 * -ENOTCONN, the connection is dropped, and every statement fails at once with -ENOTCONN
 * until the tick has reconnected (PQconnectStartParams / PQconnectPoll, never blocking,
 * attempts at most every RT_REGISTRY_RETRY_MS). Connections carry connect_timeout and TCP
 * keepalives / tcp_user_timeout unless the URI sets them, so a dead peer on TCP is noticed
 * within seconds. The URL's password is never written to a message or the log. */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libpq-fe.h>
#include "runtime/base/rt_clock.h"
#include "runtime/base/rt_fault.h"
#include "runtime/base/rt_log.h"
#include "runtime/store/rt_store.h"
#include "runtime/store/rt_store_rows.h"

/* The database clock in Unix milliseconds: leases and beats are judged by one clock. */
#define NOW_MS "(extract(epoch from clock_timestamp()) * 1000)::bigint"
#define MIGRATION_LOCK "7461696c"   /* pg_advisory_xact_lock key of the migrations */
#define TX_TRIES 5

/* Migrations: entry v brings a database from schema_version v to v + 1. Append only; never
 * edit a released entry. */
static const char *const migrations[] = {
	/* 0 -> 1: every table of the registry */
	"CREATE TABLE functions("
	"  id BIGSERIAL PRIMARY KEY,"
	"  name TEXT NOT NULL UNIQUE,"
	"  kind TEXT NOT NULL,"
	"  latest_rev INTEGER NOT NULL CHECK(latest_rev >= 1),"
	"  created_ms BIGINT NOT NULL,"
	"  updated_ms BIGINT NOT NULL);"
	"CREATE TABLE revisions("
	"  function_id BIGINT NOT NULL REFERENCES functions(id) ON DELETE CASCADE,"
	"  rev INTEGER NOT NULL CHECK(rev >= 1),"
	"  manifest TEXT NOT NULL,"
	"  snapshot_path TEXT NOT NULL,"
	"  created_ms BIGINT NOT NULL,"
	"  descriptor TEXT,"
	"  PRIMARY KEY(function_id, rev));"
	"CREATE TABLE traffic("
	"  function_id BIGINT NOT NULL REFERENCES functions(id) ON DELETE CASCADE,"
	"  rev INTEGER NOT NULL CHECK(rev >= 0),"
	"  percent INTEGER NOT NULL CHECK(percent BETWEEN 0 AND 100),"
	"  PRIMARY KEY(function_id, rev));"
	"CREATE TABLE jobs("
	"  id BIGSERIAL PRIMARY KEY,"
	"  type TEXT NOT NULL,"
	"  function TEXT,"
	"  revision INTEGER,"
	"  snapshot TEXT,"
	"  params TEXT NOT NULL,"
	"  schedule TEXT NOT NULL,"
	"  priority INTEGER NOT NULL DEFAULT 0,"
	"  device TEXT NOT NULL,"
	"  state TEXT NOT NULL CHECK(state IN ('queued','running','preempted','succeeded',"
	"    'failed','cancelled')),"
	"  progress DOUBLE PRECISION NOT NULL DEFAULT 0,"
	"  step BIGINT NOT NULL DEFAULT 0,"
	"  metrics TEXT NOT NULL DEFAULT '{}',"
	"  preemptions BIGINT NOT NULL DEFAULT 0,"
	"  created_ms BIGINT NOT NULL,"
	"  started_ms BIGINT,"
	"  finished_ms BIGINT,"
	"  updated_ms BIGINT NOT NULL,"
	"  error TEXT,"
	"  result_snapshot TEXT,"
	"  result_revision INTEGER,"
	"  checkpoint TEXT,"
	"  owner TEXT NOT NULL DEFAULT '',"   /* node id holding the lease; '' when none */
	"  lease_until BIGINT);"              /* Unix ms by the database clock */
	"CREATE INDEX jobs_by_state ON jobs(state, priority DESC, id);"
	"CREATE TABLE api_keys("
	"  id TEXT PRIMARY KEY,"
	"  hash BYTEA NOT NULL,"
	"  scopes TEXT NOT NULL,"
	"  created_ms BIGINT NOT NULL,"
	"  revoked_ms BIGINT);"
	"CREATE TABLE nodes("
	"  id TEXT PRIMARY KEY,"
	"  advertise TEXT NOT NULL,"
	"  started_ms BIGINT NOT NULL,"
	"  beat_ms BIGINT NOT NULL,"
	"  lease_until BIGINT NOT NULL,"
	"  state TEXT);"
	"CREATE TABLE secrets("               /* the API keys' hash secret: one row */
	"  name TEXT PRIMARY KEY,"
	"  value BYTEA NOT NULL);"
	"CREATE TABLE audit("                 /* admin actions of every node */
	"  id BIGSERIAL PRIMARY KEY,"
	"  at_ms BIGINT NOT NULL,"
	"  line TEXT NOT NULL);",
};
#define N_MIGRATIONS (int)(sizeof migrations / sizeof migrations[0])

typedef struct rt_store pgs;
struct rt_store {
	PGconn *conn;              /* NULL while down */
	PGconn *pending;           /* a reconnect under way */
	PostgresPollingStatusType poll_state;
	char *url;                 /* as given (holds credentials: never printed) */
	char shown[512];           /* url with the password cut */
	uint64_t statements;
	uint64_t gen;              /* own commits + reconnects */
	uint64_t nodes_gen;        /* membership notifications heard */
	int64_t next_try_ms;       /* monotonic: earliest next reconnect attempt */
	char why[256];             /* why the database is unreachable ("" while up) */
};

/* secret_spans finds the passwords of url: the one of its user-info part (scheme://user:PW@;
 * up to the last '@' before any '?', so that a raw '/' in it does not hide it) and the value of
 * each password= parameter. Up to max spans (start, length) go to sp; the count is returned. */
static int secret_spans(const char *url, const char **sp, size_t *len, int max)
{
	int k = 0;
	const char *sep = strstr(url, "://");
	if (sep) {
		const char *h = sep + 3, *end = h + strcspn(h, "?"), *at = NULL;
		for (const char *c = h; c < end; c++)
			if (*c == '@')
				at = c;
		const char *colon = at ? memchr(h, ':', (size_t)(at - h)) : NULL;
		if (colon && k < max) {
			sp[k] = colon + 1;
			len[k++] = (size_t)(at - colon - 1);
		}
	}
	for (const char *p = strchr(url, '?'); p && k < max; p = strchr(p + 1, '&')) {
		if (!strncmp(p + 1, "password=", 9)) {
			sp[k] = p + 10;
			len[k++] = strcspn(p + 10, "&");
		}
	}
	return k;
}

void rt_store_pg_redact(const char *url, char *out, size_t cap)
{
	const char *sp[8];
	size_t len[8], k = 0;
	int n = secret_spans(url, sp, len, 8);
	if (!cap)
		return;
	for (const char *p = url; *p && k + 1 < cap;) {
		int i = 0;
		while (i < n && p != sp[i])
			i++;
		if (i < n) {
			for (const char *m = "***"; *m && k + 1 < cap; m++)
				out[k++] = *m;
			p += len[i];
			continue;
		}
		out[k++] = *p++;
	}
	out[k] = 0;
}

/* scrub replaces in msg (in place) every occurrence of a password of url with "***" */
static void scrub(char *msg, const char *url)
{
	const char *sp[8];
	size_t len[8];
	int n = secret_spans(url, sp, len, 8);
	for (int i = 0; i < n; i++) {
		if (len[i] < 1)
			continue;
		char *hit;
		char *pw = strndup(sp[i], len[i]);
		if (!pw) {
			snprintf(msg, strlen(msg) + 1, "%s", "(message withheld)");
			return;
		}
		while ((hit = strstr(msg, pw))) {
			size_t rest = strlen(hit + len[i]);
			if (len[i] >= 3) {
				memcpy(hit, "***", 3);
				memmove(hit + 3, hit + len[i], rest + 1);
			} else {
				memset(hit, '*', len[i]);
			}
		}
		free(pw);
	}
}

/* ---- connection, errors ---- */

static void set_why(pgs *st, const char *msg)
{
	snprintf(st->why, sizeof st->why, "%s", msg && *msg ? msg : "connection lost");
	scrub(st->why, st->url);
	size_t n = strlen(st->why);
	while (n && (st->why[n - 1] == '\n' || st->why[n - 1] == ' '))
		st->why[--n] = 0;
	for (char *c = st->why; *c; c++)
		if (*c == '\n' || *c == '\t')
			*c = ' ';
}

/* lose drops a broken connection: the store is down until the tick reconnects */
static void lose(pgs *st)
{
	if (!st->conn)
		return;
	set_why(st, PQerrorMessage(st->conn));
	rt_logf(RT_LOG_WARN, "registry: postgresql %s: connection lost: %s", st->shown, st->why);
	PQfinish(st->conn);
	st->conn = NULL;
	st->next_try_ms = (int64_t)(rt_clock_mono_ns() / 1000000);
}

/* fail maps a failed result to a negative errno (logging the server's message) and clears
 * it: -ENOTCONN for a lost connection, -EAGAIN for a transaction to run again, -EEXIST for a
 * unique violation, -EACCES, -ENOSPC, else -EIO */
static int fail(pgs *st, PGresult *r, const char *what)
{
	const char *code = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
	int rc = -EIO;
	if (!st->conn || PQstatus(st->conn) == CONNECTION_BAD ||
	    (code && (!strncmp(code, "08", 2) || !strncmp(code, "57P", 3)))) {
		PQclear(r);
		lose(st);
		return -ENOTCONN;
	}
	if (code && (!strcmp(code, "40001") || !strcmp(code, "40P01")))
		rc = -EAGAIN;
	else if (code && !strcmp(code, "23505"))
		rc = -EEXIST;
	else if (code && (!strcmp(code, "42501") || !strcmp(code, "28000")))
		rc = -EACCES;
	else if (code && (!strncmp(code, "53", 2)))
		rc = -ENOSPC;
	if (rc != -EAGAIN && rc != -EEXIST)
		rt_logf(RT_LOG_ERROR, "registry: postgresql: %s: %s", what,
			r ? PQresultErrorMessage(r) : PQerrorMessage(st->conn));
	PQclear(r);
	return rc;
}

/* q runs sql with n text parameters (NULL = SQL NULL); *out gets the result of a statement
 * that succeeded (PQclear it). 0 or fail()'s errno. */
static int q(pgs *st, PGresult **out, const char *what, const char *sql, int n,
	     const char *const *vals)
{
	*out = NULL;
	if (!st->conn)
		return -ENOTCONN;
	st->statements++;
	/* without parameters: the simple protocol, which also takes several statements */
	PGresult *r = n ? PQexecParams(st->conn, sql, n, NULL, vals, NULL, NULL, 0)
			: PQexec(st->conn, sql);
	ExecStatusType s = PQresultStatus(r);
	if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK)
		return fail(st, r, what);
	*out = r;
	return 0;
}

/* x is q for a statement whose rows are not needed; *changed (may be NULL) gets the rows it
 * touched */
static int x(pgs *st, const char *what, const char *sql, int n, const char *const *vals,
	     long *changed)
{
	PGresult *r;
	int rc = q(st, &r, what, sql, n, vals);
	if (rc < 0)
		return rc;
	if (changed)
		*changed = atol(PQcmdTuples(r));
	PQclear(r);
	return 0;
}

static int begin(pgs *st)
{
	return x(st, "begin", "BEGIN", 0, NULL, NULL);
}

static int commit(pgs *st)
{
	return x(st, "commit", "COMMIT", 0, NULL, NULL);
}

static void rollback(pgs *st)
{
	if (st->conn && PQtransactionStatus(st->conn) != PQTRANS_IDLE)
		x(st, "rollback", "ROLLBACK", 0, NULL, NULL);
}

/* notify queues a notification on channel for the commit of the open transaction */
static int notify(pgs *st, const char *channel, const char *payload)
{
	const char *v[] = {channel, payload};
	return x(st, "notify", "SELECT pg_notify($1, $2)", 2, v, NULL);
}

static const char *i64s(char *b, int64_t v)
{
	snprintf(b, 24, "%" PRId64, v);
	return b;
}

static int64_t col_i64(PGresult *r, int row, int c)
{
	return PQgetisnull(r, row, c) ? 0 : strtoll(PQgetvalue(r, row, c), NULL, 10);
}

/* row i of a result as an rt_store_row (rt_store_rows.h): res is the PGresult */
static int row_is_null(const rt_store_row *row, int c)
{
	return PQgetisnull(row->res, row->i, c);
}

static const char *row_text(const rt_store_row *row, int c)
{
	return PQgetisnull(row->res, row->i, c) ? NULL : PQgetvalue(row->res, row->i, c);
}

static int64_t row_i64(const rt_store_row *row, int c)
{
	return col_i64(row->res, row->i, c);
}

static double row_f64(const rt_store_row *row, int c)
{
	return PQgetisnull(row->res, row->i, c) ? 0 : strtod(PQgetvalue(row->res, row->i, c), NULL);
}

static const rt_store_row_ops cols = {
	.is_null = row_is_null, .text = row_text, .i64 = row_i64, .f64 = row_f64};
#define ROW(r, n) (&(rt_store_row){.ops = &cols, .res = (r), .i = (n)})

/* collect_rows runs sql (n parameters; what names it in messages) and returns its rows (the
 * first cap when cap > 0) as an array of elem-sized entries, each zeroed, then filled by fill:
 * *out (malloc'd, NULL when there are none) and *count. A fill that fails fails the call with
 * its errno, after clear (may be NULL) dropped what the entries filled so far hold. */
static int collect_rows(pgs *st, const char *what, const char *sql, int n, const char *const *v,
			size_t cap, size_t elem, rt_store_fill_fn fill, void (*clear)(void *entry),
			void **out, size_t *count)
{
	PGresult *r;
	*out = NULL;
	*count = 0;
	int rc = q(st, &r, what, sql, n, v);
	if (rc < 0)
		return rc;
	size_t k = (size_t)PQntuples(r);
	if (cap && k > cap)
		k = cap;
	char *a = k ? calloc(k, elem) : NULL;
	if (k && !a) {
		PQclear(r);
		return -ENOMEM;
	}
	for (size_t i = 0; i < k; i++) {
		if ((rc = fill(ROW(r, (int)i), a + i * elem)) < 0) {
			for (size_t j = 0; clear && j <= i; j++)
				clear(a + j * elem);
			free(a);
			PQclear(r);
			return rc;
		}
	}
	PQclear(r);
	*out = a;
	*count = k;
	return 0;
}

/* server notices (NOTICE, the FATAL of a shutdown) go to the debug log, not stderr */
static void on_notice(void *ud, const char *msg)
{
	(void)ud;
	rt_logf(RT_LOG_DEBUG, "registry: postgresql: %s", msg);
}

/* listen subscribes the fresh connection c to both channels */
static int listen_on(PGconn *c)
{
	PQsetNoticeProcessor(c, on_notice, NULL);
	PGresult *r = PQexec(c, "LISTEN thaw_registry; LISTEN thaw_nodes");
	int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
	PQclear(r);
	return ok ? 0 : -1;
}

/* connect_params: the defaults (a connect timeout, TCP keepalives) first, the URI last, so
 * what the URI sets wins */
#define N_PARAMS 8
static void connect_params(const char *url, const char **k, const char **v)
{
	static const char *const keys[N_PARAMS] = {
		"connect_timeout", "keepalives", "keepalives_idle", "keepalives_interval",
		"keepalives_count", "tcp_user_timeout", "application_name", "dbname"};
	static const char *const vals[N_PARAMS - 1] = {"3", "1", "5", "2", "2", "5000", "thaw"};
	for (int i = 0; i < N_PARAMS; i++) {
		k[i] = keys[i];
		v[i] = i < N_PARAMS - 1 ? vals[i] : url;
	}
	k[N_PARAMS] = v[N_PARAMS] = NULL;
}

/* came_back finishes a reconnect: listen again and drop the whole view */
static void came_back(pgs *st, PGconn *c)
{
	if (listen_on(c) < 0) {
		set_why(st, PQerrorMessage(c));
		PQfinish(c);
		return;
	}
	st->conn = c;
	st->why[0] = 0;
	st->gen++;
	st->nodes_gen++;
	rt_logf(RT_LOG_INFO, "registry: postgresql %s: reconnected", st->shown);
}

/* reconnect_step advances a non-blocking reconnect by what its socket allows now */
static void reconnect_step(pgs *st)
{
	int64_t now = (int64_t)(rt_clock_mono_ns() / 1000000);
	if (!st->pending) {
		if (now < st->next_try_ms)
			return;
		st->next_try_ms = now + RT_REGISTRY_RETRY_MS;
		const char *k[N_PARAMS + 1], *v[N_PARAMS + 1];
		connect_params(st->url, k, v);
		st->pending = PQconnectStartParams(k, v, 1);
		if (!st->pending)
			return;
		if (PQstatus(st->pending) == CONNECTION_BAD) {
			set_why(st, PQerrorMessage(st->pending));
			PQfinish(st->pending);
			st->pending = NULL;
			return;
		}
		st->poll_state = PGRES_POLLING_WRITING;
	}
	for (int rounds = 0; rounds < 16; rounds++) {
		if (st->poll_state == PGRES_POLLING_OK) {
			PGconn *c = st->pending;
			st->pending = NULL;
			came_back(st, c);
			return;
		}
		if (st->poll_state == PGRES_POLLING_FAILED) {
			set_why(st, PQerrorMessage(st->pending));
			PQfinish(st->pending);
			st->pending = NULL;
			return;
		}
		struct pollfd pfd = {.fd = PQsocket(st->pending),
				     .events = st->poll_state == PGRES_POLLING_READING ? POLLIN : POLLOUT};
		if (pfd.fd >= 0 && poll(&pfd, 1, 0) == 0) {
			/* not ready yet; give up an attempt that outlived the connect timeout */
			if (now > st->next_try_ms + 3000) {
				set_why(st, "connection attempt timed out");
				PQfinish(st->pending);
				st->pending = NULL;
			}
			return;
		}
		st->poll_state = PQconnectPoll(st->pending);
	}
}

/* ---- open, close, schema ---- */

static int migrate(pgs *st, char *err, size_t errlen)
{
	for (;;) {
		PGresult *r;
		int rc;
		if ((rc = begin(st)) < 0 ||
		    (rc = x(st, "migration lock", "SELECT pg_advisory_xact_lock(x'" MIGRATION_LOCK
			    "'::bigint)", 0, NULL, NULL)) < 0 ||
		    (rc = x(st, "schema version", "CREATE TABLE IF NOT EXISTS schema_version("
			    "version INTEGER NOT NULL)", 0, NULL, NULL)) < 0 ||
		    (rc = q(st, &r, "schema version", "SELECT max(version), count(*) FROM "
			    "schema_version", 0, NULL)) < 0) {
			rollback(st);
			return rt_errf(err, errlen, rc, "registry: postgresql %s: reading the schema "
				       "version failed: %s", st->shown, st->conn ?
				       PQerrorMessage(st->conn) : st->why);
		}
		int v = (int)col_i64(r, 0, 0), rows = (int)col_i64(r, 0, 1);
		PQclear(r);
		if (v > N_MIGRATIONS) {
			rollback(st);
			return rt_errf(err, errlen, -EPROTO, "registry: postgresql %s: schema version %d "
				       "is newer than this thaw understands (%d)", st->shown, v,
				       N_MIGRATIONS);
		}
		if (v == N_MIGRATIONS)
			return commit(st) < 0 ? rt_errf(err, errlen, -EIO, "registry: postgresql: "
							"commit failed") : 0;
		char nv[24];
		const char *p[] = {i64s(nv, v + 1)};
		if ((rc = x(st, "migration", migrations[v], 0, NULL, NULL)) < 0 ||
		    (rc = x(st, "schema version", rows ? "UPDATE schema_version SET version = $1"
			    : "INSERT INTO schema_version(version) VALUES($1)", 1, p, NULL)) < 0 ||
		    (rc = commit(st)) < 0) {
			char m[256];
			snprintf(m, sizeof m, "%s", st->conn ? PQerrorMessage(st->conn) : st->why);
			rollback(st);
			return rt_errf(err, errlen, rc == -ENOTCONN ? rc : -EIO, "registry: postgresql %s: "
				       "migration to schema %d: %s", st->shown, v + 1, m);
		}
	}
}

static void pg_close(pgs *st)
{
	if (!st)
		return;
	if (st->conn)
		PQfinish(st->conn);
	if (st->pending)
		PQfinish(st->pending);
	free(st->url);
	free(st);
}

static uint64_t pg_statements(pgs *st)
{
	return st->statements;
}

static uint64_t pg_generation(pgs *st)
{
	return st->gen;
}

static uint64_t pg_nodes_generation(pgs *st)
{
	return st->nodes_gen;
}

static int pg_available(pgs *st, char *why, size_t cap)
{
	if (st->conn)
		return 1;
	if (why && cap)
		snprintf(why, cap, "%s", st->why[0] ? st->why : "connection lost");
	return 0;
}

static void pg_tick(pgs *st, void (*changed)(void *ud, const char *name), void *ud)
{
	if (!st->conn) {
		reconnect_step(st);
		return;
	}
	if (!PQconsumeInput(st->conn) || PQstatus(st->conn) == CONNECTION_BAD) {
		lose(st);
		return;
	}
	int self = PQbackendPID(st->conn);
	PGnotify *n;
	while ((n = PQnotifies(st->conn))) {
		if (n->be_pid != self) {
			if (!strcmp(n->relname, "thaw_nodes"))
				st->nodes_gen++;
			else if (changed)
				changed(ud, strcmp(n->extra, "*") ? n->extra : NULL);
		} else if (!strcmp(n->relname, "thaw_nodes")) {
			st->nodes_gen++;
		}
		PQfreemem(n);
	}
}

/* ---- functions ---- */

/* find_fn: id and latest revision of name (row-locked when lock): 0, -ENOENT or -errno */
static int find_fn(pgs *st, const char *name, int lock, int64_t *id, uint32_t *latest)
{
	PGresult *r;
	const char *v[] = {name};
	int rc = q(st, &r, "find function", lock ? "SELECT id, latest_rev FROM functions WHERE "
		   "name = $1 FOR UPDATE" : "SELECT id, latest_rev FROM functions WHERE name = $1",
		   1, v);
	if (rc < 0)
		return rc;
	if (PQntuples(r) == 0) {
		PQclear(r);
		return -ENOENT;
	}
	*id = col_i64(r, 0, 0);
	*latest = (uint32_t)col_i64(r, 0, 1);
	PQclear(r);
	return 0;
}

/* store_err words a store failure into err */
static int store_err(pgs *st, int rc, char *err, size_t errlen)
{
	if (rc == -ENOTCONN)
		return rt_errf(err, errlen, rc, "postgresql: %s", st->why);
	return rt_errf(err, errlen, rc, "registry error: %s",
		       st->conn ? PQerrorMessage(st->conn) : st->why);
}

/* write_traffic replaces the split of function id inside an open transaction */
static int write_traffic(pgs *st, const char *name, int64_t id, uint32_t latest,
			 const rt_traffic *t, char *err, size_t errlen)
{
	char ids[24], rs[24], ps[24];
	int rc;
	i64s(ids, id);
	for (int i = 0; i < t->n; i++) {
		uint32_t r = t->e[i].rev;
		if (r == RT_MANIFEST_REV_LATEST)
			continue;
		PGresult *res;
		const char *v[] = {ids, i64s(rs, r)};
		if (r <= latest) {
			if ((rc = q(st, &res, "revision lookup", "SELECT 1 FROM revisions WHERE "
				    "function_id = $1 AND rev = $2", 2, v)) < 0)
				return store_err(st, rc, err, errlen);
			int found = PQntuples(res) > 0;
			PQclear(res);
			if (found)
				continue;
		}
		return rt_store_no_revision(name, r, latest, err, errlen);
	}
	const char *v1[] = {ids};
	if ((rc = x(st, "delete traffic", "DELETE FROM traffic WHERE function_id = $1", 1, v1,
		    NULL)) < 0)
		return store_err(st, rc, err, errlen);
	for (int i = 0; i < t->n; i++) {
		const char *v[] = {ids, i64s(rs, t->e[i].rev), i64s(ps, t->e[i].percent)};
		if ((rc = x(st, "insert traffic", "INSERT INTO traffic(function_id, rev, percent) "
			    "VALUES($1, $2, $3)", 3, v, NULL)) < 0)
			return store_err(st, rc, err, errlen);
	}
	return 0;
}

static int put_once(pgs *st, const char *name, const rt_manifest *m, const char *snapshot_path,
		    const char *text, const char *dtext, uint32_t *rev_out, char *err,
		    size_t errlen)
{
	int64_t id = 0;
	uint32_t latest = 0, rev;
	char ts[24], ids[24], rs[24];
	int rc;
	i64s(ts, rt_clock_wall_ms());
	if ((rc = begin(st)) < 0)
		return store_err(st, rc, err, errlen);
	rc = find_fn(st, name, 1, &id, &latest);
	if (rc == -ENOENT) {
		PGresult *r;
		const char *v[] = {name, m->kind, ts};
		if ((rc = q(st, &r, "insert function", "INSERT INTO functions(name, kind, latest_rev, "
			    "created_ms, updated_ms) VALUES($1, $2, 1, $3, $3) ON CONFLICT (name) DO "
			    "NOTHING RETURNING id", 3, v)) < 0)
			goto sqlfail;
		if (PQntuples(r) == 0) {
			/* another node created it meanwhile: run again, it is there now */
			PQclear(r);
			rollback(st);
			return -EAGAIN;
		}
		id = col_i64(r, 0, 0);
		PQclear(r);
		rev = 1;
	} else if (rc < 0) {
		goto sqlfail;
	} else {
		if (latest >= RT_MANIFEST_REV_MAX) {
			rollback(st);
			return rt_errf(err, errlen, -EOVERFLOW, "function '%s' has too many revisions", name);
		}
		rev = latest + 1;
		const char *v[] = {i64s(ids, id), m->kind, i64s(rs, rev), ts};
		if ((rc = x(st, "update function", "UPDATE functions SET kind = $2, latest_rev = $3, "
			    "updated_ms = $4 WHERE id = $1", 4, v, NULL)) < 0)
			goto sqlfail;
	}
	const char *v[] = {i64s(ids, id), i64s(rs, rev), text, snapshot_path ? snapshot_path : "",
			   ts, dtext};
	if ((rc = x(st, "insert revision", "INSERT INTO revisions(function_id, rev, manifest, "
		    "snapshot_path, created_ms, descriptor) VALUES($1, $2, $3, $4, $5, $6)", 6, v,
		    NULL)) < 0)
		goto sqlfail;
	if (rt_registry_test_hook)
		rt_registry_test_hook("after-insert-revision");
	if ((rc = write_traffic(st, name, id, rev, rt_store_put_split(m), err, errlen)) < 0) {
		rollback(st);
		return rc;
	}
	if (rt_registry_test_hook)
		rt_registry_test_hook("after-traffic");
	rt_fault_point("deploy.commit");
	if ((rc = notify(st, "thaw_registry", name)) < 0 || (rc = commit(st)) < 0)
		goto sqlfail;
	st->gen++;
	if (rev_out)
		*rev_out = rev;
	return 0;
sqlfail:
	rollback(st);
	return rc == -EAGAIN ? rc : store_err(st, rc, err, errlen);
}

static int pg_put(pgs *st, const char *name, const rt_manifest *m, const char *snapshot_path,
		  const rt_desc *desc, uint32_t *rev_out, char *err, size_t errlen)
{
	char *text, *dtext;
	int rc = rt_store_put_texts(name, m, desc, &text, &dtext, err, errlen);
	if (rc < 0)
		return rc;
	for (int i = 0; i < TX_TRIES; i++)
		if ((rc = put_once(st, name, m, snapshot_path, text, dtext, rev_out, err,
				   errlen)) != -EAGAIN)
			break;
	if (rc == -EAGAIN)
		rt_errf(err, errlen, -EBUSY, "registry busy: concurrent deploys of '%s'", name);
	free(text);
	free(dtext);
	return rc == -EAGAIN ? -EBUSY : rc;
}

static int pg_set_desc(pgs *st, const char *name, uint32_t rev, const rt_desc *desc)
{
	char *dtext = rt_store_desc_text(desc);
	if (!dtext)
		return -ENOMEM;
	char rs[24];
	long n = 0;
	const char *v[] = {name, i64s(rs, rev), dtext};
	int rc = x(st, "record descriptor", "UPDATE revisions SET descriptor = $3 WHERE rev = $2 "
		   "AND function_id = (SELECT id FROM functions WHERE name = $1)", 3, v, &n);
	free(dtext);
	if (rc < 0)
		return rc;
	if (n != 1)
		return -ENOENT;
	st->gen++;
	return 0;
}

static int traffic_once(pgs *st, const char *name, const rt_traffic *t, char *err, size_t errlen)
{
	int rc;
	int64_t id;
	uint32_t latest;
	if ((rc = begin(st)) < 0)
		return store_err(st, rc, err, errlen);
	if ((rc = find_fn(st, name, 1, &id, &latest)) < 0) {
		rollback(st);
		if (rc == -ENOENT)
			return rt_errf(err, errlen, rc, "function '%s' not found", name);
		return rc == -EAGAIN ? rc : store_err(st, rc, err, errlen);
	}
	if ((rc = write_traffic(st, name, id, latest, t, err, errlen)) < 0 ||
	    (rc = notify(st, "thaw_registry", name)) < 0 || (rc = commit(st)) < 0) {
		rollback(st);
		return rc;
	}
	st->gen++;
	return 0;
}

static int pg_set_traffic(pgs *st, const char *name, const rt_traffic *t, char *err,
			  size_t errlen)
{
	int rc;
	if ((rc = rt_store_traffic_ok(t, err, errlen)) < 0)
		return rc;
	for (int i = 0; i < TX_TRIES; i++)
		if ((rc = traffic_once(st, name, t, err, errlen)) != -EAGAIN)
			break;
	return rc == -EAGAIN ? rt_errf(err, errlen, -EBUSY, "registry busy") : rc;
}

static int pg_get_revision(pgs *st, const char *name, uint32_t rev, rt_revision_info *out)
{
	PGresult *r;
	char rs[24];
	const char *v[] = {name, i64s(rs, rev)};
	int rc = q(st, &r, "get revision", "SELECT r.rev, r.manifest, r.snapshot_path, r.created_ms, "
		   "r.descriptor FROM functions f JOIN revisions r ON r.function_id = f.id WHERE "
		   "f.name = $1 AND r.rev = CASE WHEN $2::int = 0 THEN f.latest_rev ELSE $2::int END",
		   2, v);
	if (rc < 0)
		return rc;
	rc = PQntuples(r) ? rt_store_rev_from_row(ROW(r, 0), name, out) : -ENOENT;
	PQclear(r);
	return rc;
}

static int read_traffic(pgs *st, int64_t id, rt_traffic *t)
{
	PGresult *r;
	char ids[24];
	const char *v[] = {i64s(ids, id)};
	memset(t, 0, sizeof *t);
	int rc = q(st, &r, "get traffic", "SELECT rev, percent FROM traffic WHERE function_id = $1 "
		   "ORDER BY rev", 1, v);
	if (rc < 0)
		return rc;
	for (int i = 0; i < PQntuples(r) && t->n < RT_MANIFEST_TRAFFIC_MAX; i++) {
		t->e[t->n].rev = (uint32_t)col_i64(r, i, 0);
		t->e[t->n].percent = (int)col_i64(r, i, 1);
		t->n++;
	}
	PQclear(r);
	return 0;
}

static int pg_get_head(pgs *st, const char *name, uint32_t *latest, rt_traffic *t)
{
	int64_t id;
	int rc = begin(st);
	if (rc < 0)
		return rc;
	if ((rc = find_fn(st, name, 0, &id, latest)) < 0 || (rc = read_traffic(st, id, t)) < 0) {
		rollback(st);
		return rc;
	}
	return commit(st);
}

static int pg_get_json(pgs *st, const char *name, json_t **out)
{
	rt_store_fn_json b;
	PGresult *r = NULL;
	*out = NULL;
	int rc = rt_store_fn_json_init(&b, name);
	if (rc < 0)
		goto done;
	if ((rc = x(st, "begin", "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL,
		    NULL)) < 0)
		goto done;
	const char *v[] = {name};
	if ((rc = q(st, &r, "get function", "SELECT id, kind, latest_rev, created_ms, updated_ms "
		    "FROM functions WHERE name = $1", 1, v)) < 0)
		goto fail;
	if (PQntuples(r) == 0) {
		rc = -ENOENT;
		goto fail;
	}
	int64_t id = col_i64(r, 0, 0);
	if ((rc = rt_store_fn_json_head(&b, ROW(r, 0))) < 0)
		goto fail;
	PQclear(r);
	r = NULL;
	if ((rc = read_traffic(st, id, &b.traffic)) < 0)
		goto fail;
	char ids[24];
	const char *v2[] = {i64s(ids, id)};
	if ((rc = q(st, &r, "list revisions", "SELECT rev, manifest, snapshot_path, created_ms, "
		    "descriptor FROM revisions WHERE function_id = $1 ORDER BY rev", 1, v2)) < 0)
		goto fail;
	for (int i = 0; i < PQntuples(r); i++)
		if ((rc = rt_store_fn_json_rev(&b, ROW(r, i))) < 0)
			goto fail;
	PQclear(r);
	r = NULL;
	rollback(st);
	*out = rt_store_fn_json_done(&b);
	return 0;
fail:
	PQclear(r);
	rollback(st);
done:
	rt_store_fn_json_clear(&b);
	return rc;
}

static int pg_list(pgs *st, rt_registry_entry **out, size_t *n)
{
	return collect_rows(st, "list functions", "SELECT name, kind, latest_rev, updated_ms FROM "
			    "functions ORDER BY name COLLATE \"C\"", 0, NULL, 0, sizeof **out,
			    rt_store_fill_entry, NULL, (void **)out, n);
}

static int pg_delete(pgs *st, const char *name)
{
	long n = 0;
	const char *v[] = {name};
	int rc;
	/* revisions and traffic go with it (ON DELETE CASCADE) */
	if ((rc = begin(st)) < 0 ||
	    (rc = x(st, "delete function", "DELETE FROM functions WHERE name = $1", 1, v, &n)) < 0)
		goto fail;
	if (n == 0) {
		rc = -ENOENT;
		goto fail;
	}
	if ((rc = notify(st, "thaw_registry", name)) < 0 || (rc = commit(st)) < 0)
		goto fail;
	st->gen++;
	return 0;
fail:
	rollback(st);
	return rc;
}

/* ---- keys ---- */

static void hex(const unsigned char *b, size_t n, char *out)
{
	static const char d[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = d[b[i] >> 4];
		out[2 * i + 1] = d[b[i] & 15];
	}
	out[2 * n] = 0;
}

static int unhex(const char *s, unsigned char *out, size_t n)
{
	if (strlen(s) != 2 * n)
		return -1;
	for (size_t i = 0; i < n; i++) {
		unsigned v = 0;
		for (int k = 0; k < 2; k++) {
			char c = s[2 * i + k];
			v <<= 4;
			if (c >= '0' && c <= '9')
				v |= (unsigned)(c - '0');
			else if (c >= 'a' && c <= 'f')
				v |= (unsigned)(c - 'a' + 10);
			else
				return -1;
		}
		out[i] = (unsigned char)v;
	}
	return 0;
}

/* one_write runs sql (n parameters) as one transaction that notifies channel with payload;
 * *changed gets its row count; with need_row, no row touched is -ENOENT */
static int one_write(pgs *st, const char *what, const char *sql, int n, const char *const *v,
		     const char *channel, const char *payload, int need_row, long *changed)
{
	long k = 0;
	int rc;
	if ((rc = begin(st)) < 0 || (rc = x(st, what, sql, n, v, &k)) < 0)
		goto fail;
	if (need_row && k == 0) {
		rc = -ENOENT;
		goto fail;
	}
	if ((channel && (rc = notify(st, channel, payload)) < 0) || (rc = commit(st)) < 0)
		goto fail;
	if (changed)
		*changed = k;
	return 0;
fail:
	rollback(st);
	return rc;
}

static int pg_key_insert(pgs *st, const rt_store_key *k)
{
	char h[2 * RT_REGISTRY_KEY_HASH_LEN + 1], ts[24];
	hex(k->hash, RT_REGISTRY_KEY_HASH_LEN, h);
	const char *v[] = {k->id, h, k->scopes, i64s(ts, k->created_ms)};
	int rc = one_write(st, "insert key", "INSERT INTO api_keys(id, hash, scopes, created_ms) "
			   "VALUES($1, decode($2, 'hex'), $3, $4)", 4, v, "thaw_registry", "*", 0,
			   NULL);
	if (rc == 0)
		st->gen++;
	return rc;
}

static int pg_key_revoke(pgs *st, const char *id, int64_t ms)
{
	char ts[24];
	const char *v[] = {id, i64s(ts, ms)};
	int rc = one_write(st, "revoke key", "UPDATE api_keys SET revoked_ms = $2 WHERE id = $1 AND "
			   "revoked_ms IS NULL", 2, v, "thaw_registry", "*", 1, NULL);
	if (rc == 0)
		st->gen++;
	return rc;
}

/* the hash column comes as hex (encode(hash, 'hex')); one that does not decode is damaged */
static int fill_key(const rt_store_row *row, void *entry)
{
	unsigned char h[RT_REGISTRY_KEY_HASH_LEN];
	int ok = unhex(PQgetvalue(row->res, row->i, 1), h, sizeof h) == 0;
	rt_store_key_from_row(row, ok ? h : NULL, entry);
	return 0;
}

static int pg_key_all(pgs *st, rt_store_key **out, size_t *n)
{
	return collect_rows(st, "list keys", "SELECT id, encode(hash, 'hex'), scopes, created_ms, "
			    "revoked_ms FROM api_keys ORDER BY created_ms, id COLLATE \"C\"", 0, NULL,
			    0, sizeof **out, fill_key, NULL, (void **)out, n);
}

static int pg_secret(pgs *st, const unsigned char *proposed, size_t len, unsigned char *out)
{
	char h[2 * 64 + 1];
	PGresult *r;
	int rc;
	if (len > 64)
		return -EINVAL;
	hex(proposed, len, h);
	const char *v[] = {h};
	if ((rc = x(st, "store secret", "INSERT INTO secrets(name, value) VALUES('api_keys', "
		    "decode($1, 'hex')) ON CONFLICT (name) DO NOTHING", 1, v, NULL)) < 0 ||
	    (rc = q(st, &r, "read secret", "SELECT encode(value, 'hex') FROM secrets WHERE name = "
		    "'api_keys'", 0, NULL)) < 0)
		return rc;
	rc = PQntuples(r) && unhex(PQgetvalue(r, 0, 0), out, len) == 0 ? 0 : -EIO;
	PQclear(r);
	return rc;
}

/* ---- jobs ---- */

static const char *opt_text(const char *t)
{
	return t && t[0] ? t : NULL;
}

static const char *opt_i64(char *b, int64_t v)
{
	return v ? i64s(b, v) : NULL;
}

static int pg_job_insert(pgs *st, const rt_job_row *r, int64_t *id)
{
	char *ptext, *stext;
	int rc = rt_store_job_texts(r, &ptext, &stext);
	if (rc == 0) {
		char rv[24], pr[24], ts[24];
		PGresult *res;
		const char *v[] = {r->type, opt_text(r->function), opt_i64(rv, r->revision), r->snapshot,
				   ptext, stext, i64s(pr, r->priority), r->device, i64s(ts, r->created_ms)};
		rc = q(st, &res, "insert job", "INSERT INTO jobs(type, function, revision, snapshot, "
		       "params, schedule, priority, device, state, created_ms, updated_ms) "
		       "VALUES($1,$2,$3,$4,$5,$6,$7,$8,'queued',$9,$9) RETURNING id", 9, v);
		if (rc == 0) {
			*id = col_i64(res, 0, 0);
			PQclear(res);
		}
	}
	free(ptext);
	free(stext);
	return rc;
}

static int pg_job_get(pgs *st, int64_t id, rt_job_row *r)
{
	PGresult *res;
	char ids[24];
	const char *v[] = {i64s(ids, id)};
	memset(r, 0, sizeof *r);
	int rc = q(st, &res, "get job", "SELECT id, type, function, revision, snapshot, params, "
		   "schedule, priority, device, state, progress, step, metrics, preemptions, "
		   "created_ms, started_ms, finished_ms, updated_ms, error, result_snapshot, "
		   "result_revision, checkpoint, owner, lease_until FROM jobs WHERE id = $1", 1, v);
	if (rc < 0)
		return rc;
	if (PQntuples(res) == 0) {
		PQclear(res);
		return -ENOENT;
	}
	rt_store_job_from_row(ROW(res, 0), r);
	PQclear(res);
	return 0;
}

/* save_job writes r's progress columns; with node, only while node owns the row (clearing
 * the owner when the state is final or preempted); *n gets the rows written */
static int save_job(pgs *st, const rt_job_row *r, const char *node, long *n)
{
	char *metrics;
	int rc = rt_store_job_metrics(r, &metrics);
	if (rc < 0)
		return rc;
	char ids[24], pr[32], stp[24], pre[24], sa[24], fi[24], up[24], rr[24];
	snprintf(pr, sizeof pr, "%.17g", r->progress);
	const char *v[] = {i64s(ids, r->id), rt_job_state_names[r->state], pr, i64s(stp, r->step),
			   metrics ? metrics : "{}", i64s(pre, r->preemptions),
			   opt_i64(sa, r->started_ms), opt_i64(fi, r->finished_ms),
			   i64s(up, r->updated_ms), opt_text(r->error), opt_text(r->result_snapshot),
			   opt_i64(rr, r->result_revision), opt_text(r->checkpoint), node};
	rc = x(st, "save job", node ?
	       "UPDATE jobs SET state=$2, progress=$3, step=$4, metrics=$5, preemptions=$6, "
	       "started_ms=$7, finished_ms=$8, updated_ms=$9, error=$10, result_snapshot=$11, "
	       "result_revision=$12, checkpoint=$13, "
	       "owner = CASE WHEN $2 IN ('running','queued') THEN owner ELSE '' END, "
	       "lease_until = CASE WHEN $2 IN ('running','queued') THEN lease_until END "
	       "WHERE id = $1 AND owner = $14 AND state IN ('queued','running','preempted')" :
	       "UPDATE jobs SET state=$2, progress=$3, step=$4, metrics=$5, preemptions=$6, "
	       "started_ms=$7, finished_ms=$8, updated_ms=$9, error=$10, result_snapshot=$11, "
	       "result_revision=$12, checkpoint=$13 WHERE id = $1", node ? 14 : 13, v, n);
	free(metrics);
	return rc;
}

static int pg_job_save(pgs *st, const rt_job_row *r)
{
	return save_job(st, r, NULL, NULL);
}

static int pg_job_save_owned(pgs *st, const rt_job_row *r, const char *node)
{
	long n = 0;
	if (!rt_store_node_ok(node, 1))
		return -EINVAL;
	int rc = save_job(st, r, node, &n);
	if (rc < 0 || n == 1)
		return rc;
	PGresult *res;
	char ids[24];
	const char *v[] = {i64s(ids, r->id)};
	if ((rc = q(st, &res, "job owner", "SELECT owner FROM jobs WHERE id = $1", 1, v)) < 0)
		return rc;
	rc = PQntuples(res) ? -ESTALE : -ENOENT;
	PQclear(res);
	return rc;
}

static int collect_ids(pgs *st, const char *sql, int n, const char *const *v, size_t cap,
		       int64_t **ids, size_t *count)
{
	return collect_rows(st, "list jobs", sql, n, v, cap, sizeof **ids, rt_store_fill_id, NULL,
			    (void **)ids, count);
}

static int pg_job_ids(pgs *st, int state, int64_t **ids, size_t *n)
{
	*ids = NULL;
	*n = 0;
	if (state >= RT_JOB_STATES)
		return -EINVAL;
	if (state < 0)
		return collect_ids(st, "SELECT id FROM jobs ORDER BY id", 0, NULL, 0, ids, n);
	const char *v[] = {rt_job_state_names[state]};
	return collect_ids(st, "SELECT id FROM jobs WHERE state = $1 ORDER BY id", 1, v, 0, ids, n);
}

/* candidates: unfinished jobs no live lease holds: queued or preempted ones nobody holds, and
 * running ones whose owner stopped renewing (that node died) or that have none */
#define CANDIDATES "state IN ('queued','preempted','running') AND (owner = '' OR lease_until " \
	"IS NULL OR lease_until <= " NOW_MS ")"

static int pg_job_candidates(pgs *st, int64_t *ids, size_t cap, size_t *n)
{
	int64_t *v;
	char lim[24];
	*n = 0;
	if (!cap)
		return 0;
	const char *p[] = {i64s(lim, (int64_t)cap)};
	int rc = collect_ids(st, "SELECT id FROM jobs WHERE " CANDIDATES " ORDER BY priority DESC, "
			     "id LIMIT $1", 1, p, cap, &v, n);
	if (rc < 0)
		return rc;
	if (*n)
		memcpy(ids, v, *n * sizeof *v);
	free(v);
	return 0;
}

static int pg_job_counts(pgs *st, int64_t *counts)
{
	PGresult *r;
	memset(counts, 0, RT_JOB_STATES * sizeof *counts);
	int rc = q(st, &r, "count jobs", "SELECT state, COUNT(*) FROM jobs GROUP BY state", 0, NULL);
	if (rc < 0)
		return rc;
	for (int i = 0; i < PQntuples(r); i++) {
		int s = rt_store_job_state(PQgetvalue(r, i, 0));
		if (s >= 0)
			counts[s] = col_i64(r, i, 1);
	}
	PQclear(r);
	return 0;
}

/* recover: the jobs node left running and running jobs of no owner become preempted, and
 * node's leases on unfinished jobs go; jobs other nodes hold are not touched */
static int pg_job_recover(pgs *st, const char *node, int *n)
{
	long k = 0;
	int rc;
	*n = 0;
	if (!rt_store_node_ok(node, 0))
		return -EINVAL;
	const char *v[] = {node};
	if ((rc = begin(st)) < 0 ||
	    (rc = x(st, "recover jobs", "UPDATE jobs SET state = 'preempted', owner = '', "
		    "lease_until = NULL WHERE state = 'running' AND (owner = $1 OR owner = '')", 1, v,
		    &k)) < 0 ||
	    (rc = x(st, "drop job leases", "UPDATE jobs SET owner = '', lease_until = NULL WHERE "
		    "owner = $1 AND state IN ('queued','preempted')", 1, v, NULL)) < 0 ||
	    (rc = commit(st)) < 0) {
		rollback(st);
		return rc;
	}
	*n = (int)k;
	return 0;
}

static int claim_once(pgs *st, int64_t id, const char *node, int64_t lease_ms)
{
	PGresult *r;
	char ids[24], ls[24];
	int rc;
	const char *v[] = {i64s(ids, id)};
	if ((rc = begin(st)) < 0)
		return rc;
	if ((rc = q(st, &r, "claim job", "SELECT state, owner, COALESCE(lease_until, 0) <= " NOW_MS
		    " FROM jobs WHERE id = $1 FOR UPDATE SKIP LOCKED", 1, v)) < 0)
		goto fail;
	if (PQntuples(r) == 0) {
		/* locked by another claim, or no such job */
		PQclear(r);
		if ((rc = q(st, &r, "claim job", "SELECT 1 FROM jobs WHERE id = $1", 1, v)) < 0)
			goto fail;
		rc = PQntuples(r) ? -EBUSY : -ENOENT;
		PQclear(r);
		goto fail;
	}
	int state = rt_store_job_state(PQgetvalue(r, 0, 0));
	int free_row = !strcmp(PQgetvalue(r, 0, 1), "") || !strcmp(PQgetvalue(r, 0, 1), node) ||
		       !strcmp(PQgetvalue(r, 0, 2), "t");
	PQclear(r);
	if (state < 0 || state >= RT_JOB_SUCCEEDED) {
		rc = -ENOENT;
		goto fail;
	}
	if (!free_row) {
		rc = -EBUSY;
		goto fail;
	}
	const char *v2[] = {ids, node, i64s(ls, lease_ms)};
	if ((rc = x(st, "claim job", "UPDATE jobs SET owner = $2, lease_until = " NOW_MS
		    " + $3::bigint WHERE id = $1", 3, v2, NULL)) < 0 || (rc = commit(st)) < 0)
		goto fail;
	return 0;
fail:
	rollback(st);
	return rc;
}

static int pg_job_claim(pgs *st, int64_t id, const char *node, int64_t lease_ms)
{
	int rc = -EAGAIN;
	if (!rt_store_node_ok(node, 0) || lease_ms <= 0)
		return -EINVAL;
	for (int i = 0; i < TX_TRIES && rc == -EAGAIN; i++)
		rc = claim_once(st, id, node, lease_ms);
	return rc == -EAGAIN ? -EBUSY : rc;
}

static int pg_job_renew(pgs *st, const char *node, int64_t lease_ms, int *n)
{
	long k = 0;
	if (n)
		*n = 0;
	if (!rt_store_node_ok(node, 0) || lease_ms <= 0)
		return -EINVAL;
	char ls[24];
	const char *v[] = {node, i64s(ls, lease_ms)};
	int rc = x(st, "renew leases", "UPDATE jobs SET lease_until = " NOW_MS " + $2::bigint "
		   "WHERE owner = $1 AND state IN ('queued','running','preempted')", 2, v, &k);
	if (n)
		*n = rc == 0 ? (int)k : 0;
	return rc;
}

/* ---- the admin audit trail ---- */

static int pg_audit_add(pgs *st, const char *line, size_t len)
{
	char *t = strndup(line, len), ts[24];
	if (!t)
		return -ENOMEM;
	const char *v[] = {i64s(ts, rt_clock_wall_ms()), t};
	int rc = x(st, "audit line", "INSERT INTO audit(at_ms, line) VALUES($1, $2)", 2, v, NULL);
	free(t);
	return rc;
}

#define AUDIT_PAGE 1000

static int pg_audit_read(pgs *st, size_t tail, void (*fn)(void *ud, const char *line), void *ud)
{
	PGresult *r;
	char a[24], b[24];
	int rc;
	if (tail) {
		const char *v[] = {i64s(a, (int64_t)tail)};
		if ((rc = q(st, &r, "read audit", "SELECT line FROM (SELECT id, line FROM audit ORDER BY "
			    "id DESC LIMIT $1) t ORDER BY id", 1, v)) < 0)
			return rc;
		for (int i = 0; i < PQntuples(r); i++)
			fn(ud, PQgetvalue(r, i, 0));
		PQclear(r);
		return 0;
	}
	for (int64_t after = 0;;) {   /* page by page: the table may be large */
		const char *v[] = {i64s(a, after), i64s(b, AUDIT_PAGE)};
		if ((rc = q(st, &r, "read audit", "SELECT id, line FROM audit WHERE id > $1 ORDER BY id "
			    "LIMIT $2", 2, v)) < 0)
			return rc;
		int n = PQntuples(r);
		for (int i = 0; i < n; i++) {
			fn(ud, PQgetvalue(r, i, 1));
			after = col_i64(r, i, 0);
		}
		PQclear(r);
		if (n < AUDIT_PAGE)
			return 0;
	}
}

/* ---- nodes ---- */

static int pg_node_beat(pgs *st, const char *id, const char *advertise, const char *state,
			int64_t lease_ms, int fresh, int notify_others)
{
	char ls[24];
	const char *v[] = {id, advertise ? advertise : "", state, i64s(ls, lease_ms),
			   fresh ? "t" : "f"};
	const char *sql = "INSERT INTO nodes(id, advertise, started_ms, beat_ms, lease_until, state) "
			  "VALUES($1, $2, " NOW_MS ", " NOW_MS ", " NOW_MS " + $4::bigint, $3) "
			  "ON CONFLICT (id) DO UPDATE SET advertise = EXCLUDED.advertise, "
			  "state = EXCLUDED.state, beat_ms = EXCLUDED.beat_ms, "
			  "lease_until = EXCLUDED.lease_until, started_ms = CASE WHEN $5::boolean "
			  "THEN EXCLUDED.started_ms ELSE nodes.started_ms END";
	if (!notify_others)
		return x(st, "node beat", sql, 5, v, NULL);
	return one_write(st, "node beat", sql, 5, v, "thaw_nodes", id, 0, NULL);
}

static void clear_node(void *entry)
{
	free(((rt_node_row *)entry)->state);
}

static int pg_node_list(pgs *st, rt_node_row **out, size_t *n)
{
	return collect_rows(st, "list nodes", "SELECT id, advertise, started_ms, beat_ms, "
			    "lease_until - " NOW_MS ", state FROM nodes WHERE lease_until > " NOW_MS
			    " ORDER BY id COLLATE \"C\"", 0, NULL, 0, sizeof **out, rt_store_fill_node,
			    clear_node, (void **)out, n);
}

static int pg_node_leave(pgs *st, const char *id)
{
	const char *v[] = {id};
	return one_write(st, "node leave", "DELETE FROM nodes WHERE id = $1", 1, v, "thaw_nodes", id,
			 1, NULL);
}

static const rt_store_ops pg_ops = {
	.name = "postgresql",
	.shared = 1,
	.close = pg_close,
	.statements = pg_statements,
	.generation = pg_generation,
	.put = pg_put,
	.set_desc = pg_set_desc,
	.set_traffic = pg_set_traffic,
	.get_revision = pg_get_revision,
	.get_head = pg_get_head,
	.get_json = pg_get_json,
	.list = pg_list,
	.delete_fn = pg_delete,
	.key_insert = pg_key_insert,
	.key_revoke = pg_key_revoke,
	.key_all = pg_key_all,
	.job_insert = pg_job_insert,
	.job_get = pg_job_get,
	.job_save = pg_job_save,
	.job_ids = pg_job_ids,
	.job_candidates = pg_job_candidates,
	.job_counts = pg_job_counts,
	.job_recover = pg_job_recover,
	.job_claim = pg_job_claim,
	.job_renew = pg_job_renew,
	.job_save_owned = pg_job_save_owned,
	.node_beat = pg_node_beat,
	.node_list = pg_node_list,
	.node_leave = pg_node_leave,
	.nodes_generation = pg_nodes_generation,
	.secret = pg_secret,
	.audit_add = pg_audit_add,
	.audit_read = pg_audit_read,
	.tick = pg_tick,
	.available = pg_available,
};

int rt_store_pg_open(const char *url, const rt_store_ops **ops, rt_store **out, char *err,
		     size_t errlen)
{
	char *perr = NULL;
	int rc;
	*out = NULL;
	*ops = &pg_ops;
	pgs *st = calloc(1, sizeof *st);
	if (!st || !(st->url = strdup(url))) {
		free(st);
		return rt_errf(err, errlen, -ENOMEM, "registry: out of memory");
	}
	rt_store_pg_redact(url, st->shown, sizeof st->shown);
	PQconninfoOption *opts = PQconninfoParse(url, &perr);
	if (!opts) {
		char why[256];
		snprintf(why, sizeof why, "%s", perr ? perr : "out of memory");
		scrub(why, url);
		rc = rt_errf(err, errlen, -EINVAL, "registry: bad PostgreSQL URL %s: %s", st->shown, why);
		PQfreemem(perr);
		for (char *c = err; c && *c; c++)
			if (*c == '\n')
				*c = ' ';
		goto fail;
	}
	PQconninfoFree(opts);
	const char *k[N_PARAMS + 1], *v[N_PARAMS + 1];
	connect_params(url, k, v);
	PGconn *c = PQconnectdbParams(k, v, 1);
	if (!c || PQstatus(c) != CONNECTION_OK || listen_on(c) < 0) {
		set_why(st, c ? PQerrorMessage(c) : "out of memory");
		PQfinish(c);
		rc = rt_errf(err, errlen, -ENOTCONN, "registry: cannot reach postgresql %s: %s",
			     st->shown, st->why);
		goto fail;
	}
	st->conn = c;
	if ((rc = migrate(st, err, errlen)) < 0)
		goto fail;
	*out = st;
	return 0;
fail:
	pg_close(st);
	return rc;
}

/* test_store_pg.c — the PostgreSQL registry store (runtime/store/rt_store_pg.c) on a real
 * PostgreSQL 15 server started by the test (tests/pg.h): the registry/store contract
 * (registry_contract.h, the same cases the SQLite store passes), schema versioning, URLs,
 * the keys' shared secret, and an outage: the server stopped, the view keeps answering,
 * writes fail at once with -ENOTCONN, and the store reconnects by itself when the server is
 * back. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "runtime/store/rt_registry.h"
#include "runtime/store/rt_store.h"
#include "tests/pg.h"
#include "tests/t.h"
#include "tests/runtime/store/registry_contract.h"

static const char *pg_place(void)
{
	static char u[512];
	t_pg *pg = t_pg_server();
	if (!pg || t_pg_new_db(pg, u, sizeof u) < 0)
		snprintf(u, sizeof u, "postgresql:///no-server?host=/nonexistent");
	return u;
}

static void test_schema(void)
{
	const char *place = c_keep(pg_place());
	rt_registry *reg;
	char err[512], v[32];
	if (c_open(place, &reg, err, sizeof err) < 0) {
		T_CHECK(!"open");
		return;
	}
	T_EQ_STR(rt_registry_backend(reg), "postgresql");
	T_EQ_INT(rt_registry_shared(reg), 1);
	T_EQ_INT(rt_registry_available(reg), 1);
	rt_registry_close(reg);
	T_EQ_INT(t_pg_query1(place, "SELECT version FROM schema_version", v, sizeof v), 0);
	T_EQ_STR(v, "1");
	/* opening again migrates nothing */
	T_EQ_INT(c_open(place, &reg, err, sizeof err), 0);
	rt_registry_close(reg);
	T_EQ_INT(t_pg_query1(place, "SELECT count(*) FROM schema_version", v, sizeof v), 0);
	T_EQ_STR(v, "1");
	/* a schema from the future is refused, not clobbered */
	T_EQ_INT(t_pg_exec(place, "UPDATE schema_version SET version = 99"), 0);
	err[0] = 0;
	T_EQ_INT(rt_registry_open_url(place, NULL, &reg, err, sizeof err), -EPROTO);
	T_CHECK(strstr(err, "schema version 99") != NULL);
	T_CHECK(reg == NULL);
}

/* two nodes starting at once on an empty database: both open, one schema */
static void test_concurrent_migration(void)
{
	const char *place = c_keep(pg_place());
	char err[512], v[32];
	pid_t kid[3];
	for (int i = 0; i < 3; i++) {
		fflush(NULL);
		if ((kid[i] = fork()) == 0) {
			rt_registry *reg;
			_exit(rt_registry_open_url(place, NULL, &reg, err, sizeof err) == 0 ? 0 : 1);
		}
	}
	for (int i = 0; i < 3; i++) {
		int st = 0;
		T_EQ_INT(waitpid(kid[i], &st, 0), kid[i]);
		T_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	T_EQ_INT(t_pg_query1(place, "SELECT string_agg(version::text, ',') FROM schema_version", v,
			     sizeof v), 0);
	T_EQ_STR(v, "1");
}

static void test_urls(void)
{
	rt_registry *reg = (rt_registry *)1;
	char err[512], shown[256];
	T_EQ_INT(rt_registry_open_url("mysql://u:p@h/db", NULL, &reg, err, sizeof err), -EINVAL);
	T_CHECK(reg == NULL);
	T_CHECK(strstr(err, "unknown scheme") != NULL);
	T_CHECK(strstr(err, ":p@") == NULL && strstr(err, "***") != NULL);
	T_EQ_INT(rt_registry_open_url("junk", NULL, &reg, err, sizeof err), -EINVAL);
	T_CHECK(strstr(err, "no scheme") != NULL);
	T_EQ_INT(rt_registry_open_url("sqlite://x", NULL, &reg, err, sizeof err), -EINVAL);
	/* libpq refuses the URI: the message names it with its password cut */
	err[0] = 0;
	T_EQ_INT(rt_registry_open_url("postgresql://u:sekrit@h/db%zz", NULL, &reg, err,
				      sizeof err), -EINVAL);
	T_CHECK(strstr(err, "sekrit") == NULL);
	T_CHECK(strstr(err, "bad PostgreSQL URL") != NULL);
	T_EQ_INT(rt_registry_open_url("postgresql:///db?nosuchoption=1", NULL, &reg, err, sizeof err),
		 -EINVAL);
	/* a bad escape inside the password: libpq's message quotes it, ours does not */
	T_EQ_INT(rt_registry_open_url("postgresql://u:se%zzcret@h/db", NULL, &reg, err, sizeof err),
		 -EINVAL);
	T_CHECK(strstr(err, "se%zzcret") == NULL && strstr(err, "zzcret") == NULL);
	/* nothing listens there: -ENOTCONN, quickly, no password in the message */
	time_t t0 = time(NULL);
	err[0] = 0;
	T_EQ_INT(rt_registry_open_url("postgresql://u:sekrit@/db?host=/nonexistent-dir", NULL, &reg,
				      err, sizeof err), -ENOTCONN);
	T_CHECK(time(NULL) - t0 < 3);
	T_CHECK(strstr(err, "sekrit") == NULL);
	T_CHECK(strstr(err, "cannot reach postgresql") != NULL);
	rt_store_pg_redact("postgresql://alice:pw@db.example:5432/thaw?sslmode=require&password=x2",
			   shown, sizeof shown);
	T_EQ_STR(shown, "postgresql://alice:***@db.example:5432/thaw?sslmode=require&password=***");
	rt_store_pg_redact("postgres://alice@h/db", shown, sizeof shown);
	T_EQ_STR(shown, "postgres://alice@h/db");
	rt_store_pg_redact("postgresql://bob:a/b@h/db", shown, sizeof shown);
	T_EQ_STR(shown, "postgresql://bob:***@h/db");
	rt_store_pg_redact("postgresql:///db?host=/run/x&user=u", shown, sizeof shown);
	T_EQ_STR(shown, "postgresql:///db?host=/run/x&user=u");
}

static void test_secret(void)
{
	const char *place = c_keep(pg_place());
	rt_registry *a, *b;
	char err[512];
	unsigned char p1[32], p2[32], o1[32], o2[32];
	memset(p1, 0x11, sizeof p1);
	memset(p2, 0x22, sizeof p2);
	T_EQ_INT(c_open(place, &a, err, sizeof err), 0);
	T_EQ_INT(c_open(place, &b, err, sizeof err), 0);
	T_EQ_INT(rt_registry_secret(a, p1, sizeof p1, o1), 0);
	T_EQ_INT(rt_registry_secret(b, p2, sizeof p2, o2), 0);
	T_CHECK(memcmp(o1, p1, 32) == 0);
	T_CHECK(memcmp(o2, p1, 32) == 0);   /* first writer wins */
	rt_registry_close(a);
	rt_registry_close(b);
}

static void collect(void *ud, const char *line)
{
	char *buf = ud;
	strncat(buf, line, 4000 - strlen(buf));
	strncat(buf, "|", 4000 - strlen(buf));
}

/* the shared audit table: appended lines read back whole or as the last N, in order */
static void test_audit_table(void)
{
	rt_registry *reg;
	char err[512], got[4096];
	T_EQ_INT(c_open(pg_place(), &reg, err, sizeof err), 0);
	T_EQ_INT(rt_registry_audit_add(reg, "{\"a\":1}", 7), 0);
	T_EQ_INT(rt_registry_audit_add(reg, "{\"a\":2}xx", 7), 0);   /* len bytes only */
	T_EQ_INT(rt_registry_audit_add(reg, "{\"a\":3}", 7), 0);
	T_EQ_INT(rt_registry_audit_add(reg, "", 0), -EINVAL);
	got[0] = 0;
	T_EQ_INT(rt_registry_audit_read(reg, 0, collect, got), 0);
	T_EQ_STR(got, "{\"a\":1}|{\"a\":2}|{\"a\":3}|");
	got[0] = 0;
	T_EQ_INT(rt_registry_audit_read(reg, 2, collect, got), 0);
	T_EQ_STR(got, "{\"a\":2}|{\"a\":3}|");
	rt_registry_close(reg);
	/* the embedded store has no audit table */
	snprintf(got, sizeof got, "sqlite:%s/audit.db", t_tmpdir());
	T_EQ_INT(c_open(got, &reg, err, sizeof err), 0);
	T_EQ_INT(rt_registry_audit_add(reg, "{}", 2), -ENOSYS);
	T_EQ_STR(rt_registry_backend(reg), "sqlite");
	T_EQ_INT(rt_registry_shared(reg), 0);
	rt_registry_close(reg);
}

static double ms_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* the server goes away and comes back: the view answers meanwhile, writes fail at once with
 * -ENOTCONN and a message naming the database, and the registry reconnects from its ticks */
static void test_outage(void)
{
	t_pg *pg = t_pg_server();
	if (!pg)
		return;
	const char *place = c_keep(pg_place());
	rt_registry *reg, *other;
	char err[512];
	uint32_t rev;
	T_EQ_INT(c_open(place, &reg, err, sizeof err), 0);
	T_EQ_INT(c_open(place, &other, err, sizeof err), 0);
	rt_manifest m = mk("{\"kind\":\"echo\",\"concurrency\":3}");
	T_EQ_INT(rt_registry_put(reg, "warm", &m, NULL, &rev, err, sizeof err), 0);
	rt_revision_info ri;
	T_EQ_INT(rt_registry_get(reg, "warm", &ri), 0);   /* in the view now */
	unsigned char h[RT_REGISTRY_KEY_HASH_LEN] = {9};
	char sc[RT_REGISTRY_KEY_SCOPES_MAX];
	T_EQ_INT(rt_registry_key_insert(reg, "kk", h, "invoke"), 0);
	T_EQ_INT(rt_registry_key_find(reg, "kk", h, sc), 0);

	T_EQ_INT(t_pg_stop(pg), 0);
	for (int i = 0; i < 5; i++) {
		rt_registry_tick(reg);
		usleep(2000);
	}
	T_EQ_INT(rt_registry_available(reg), 0);
	/* warm reads answer from memory */
	uint32_t pick = 0;
	T_EQ_INT(rt_registry_pick_revision(reg, "warm", 1, &pick), 0);
	T_EQ_INT(pick, 1);
	T_EQ_INT(rt_registry_get(reg, "warm", &ri), 0);
	T_EQ_INT(ri.manifest.concurrency, 3);
	T_EQ_INT(rt_registry_key_find(reg, "kk", h, sc), 0);
	/* writes fail fast */
	double t0 = ms_now();
	err[0] = 0;
	T_EQ_INT(rt_registry_put(reg, "warm", &m, NULL, &rev, err, sizeof err), -ENOTCONN);
	T_CHECK(strstr(err, "postgresql") != NULL);
	T_EQ_INT(rt_registry_key_revoke(reg, "kk"), -ENOTCONN);
	T_EQ_INT(rt_registry_node_beat(reg, "n1", "", "{}", 1000, 1, 0), -ENOTCONN);
	/* a handle that had not noticed yet notices at its first statement */
	T_EQ_INT(rt_registry_delete(other, "warm"), -ENOTCONN);
	T_EQ_INT(rt_registry_available(other), 0);
	T_CHECK(ms_now() - t0 < 500);
	/* the refused writes left the view as it was */
	T_EQ_INT(rt_registry_pick_revision(reg, "warm", 2, &pick), 0);
	T_EQ_INT(pick, 1);
	T_EQ_INT(rt_registry_key_find(reg, "kk", h, sc), 0);
	char msg[512];
	rt_registry_unavailable_msg(reg, msg, sizeof msg);
	T_CHECK(strncmp(msg, "registry unavailable: postgresql: ", 34) == 0);
	/* ticks while down are quick (one attempt every RT_REGISTRY_RETRY_MS) */
	t0 = ms_now();
	for (int i = 0; i < 20; i++)
		rt_registry_tick(reg);
	T_CHECK(ms_now() - t0 < 200);

	T_EQ_INT(t_pg_start(pg), 0);
	double end = ms_now() + 3000;
	while (ms_now() < end && !(rt_registry_available(reg) && rt_registry_available(other))) {
		rt_registry_tick(reg);
		rt_registry_tick(other);
		usleep(5000);
	}
	T_EQ_INT(rt_registry_available(reg), 1);
	T_EQ_INT(rt_registry_available(other), 1);
	T_EQ_INT(rt_registry_put(reg, "warm", &m, NULL, &rev, err, sizeof err), 0);
	T_EQ_INT(rev, 2);
	/* the other handle's view was dropped at reconnect, and it hears again */
	T_EQ_INT(rt_registry_get(other, "warm", &ri), 0);
	T_EQ_INT(ri.rev, 2);
	T_EQ_INT(rt_registry_put(reg, "warm", &m, NULL, &rev, err, sizeof err), 0);
	uint32_t want = 3;
	T_EQ_INT(rt_registry_get(other, "warm", &ri), 0);
	rt_registry_close(reg);
	reg = other;
	double t1 = ms_now();
	while (ms_now() - t1 < 100 && !(rt_registry_tick(reg), rt_registry_get(reg, "warm", &ri) == 0 &&
					 ri.rev == want))
		usleep(2000);
	T_EQ_INT(ri.rev, want);
	rt_registry_close(reg);
}

/* the server starts (PostgreSQL missing fails here, and nothing else runs) */
static int have_server;
static void test_server(void)
{
	have_server = t_pg_server() != NULL;
	T_CHECK(have_server);
}

void t_main(void)
{
	T_RUN(test_server);
	if (!have_server)
		return;
	contract_place = pg_place;
	T_RUN(test_urls);
	T_RUN(test_schema);
	T_RUN(test_concurrent_migration);
	contract_run();
	T_RUN(test_secret);
	T_RUN(test_audit_table);
	T_RUN(test_outage);
}

/* registry_contract.h — the registry/store contract, run on every backend: revisions,
 * traffic splits and picks, JSON views, delete and reopen, keys, jobs and their leases, node
 * rows, and two handles on one store (a change made through one is seen by the other after its
 * ticks, within 100 ms). A test binary sets contract_place (a fresh store's URL for
 * rt_registry_open_url: "sqlite:FILE" or "postgresql://...") and calls contract_run(). */
#ifndef THAW_TESTS_REGISTRY_CONTRACT_H
#define THAW_TESTS_REGISTRY_CONTRACT_H
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "runtime/store/rt_jobstore.h"
#include "runtime/store/rt_registry.h"
#include "tests/t.h"

/* a fresh, empty store each call (static buffer) */
static const char *(*contract_place)(void);

/* c_keep copies a place for a test that opens it more than once */
static const char *c_keep(const char *place)
{
	static char keep[8][1200];
	static int k;
	char *d = keep[k++ % 8];
	snprintf(d, 1200, "%s", place);
	return d;
}

static int c_open(const char *place, rt_registry **reg, char *err, size_t errlen)
{
	int rc = rt_registry_open_url(place, NULL, reg, err, errlen);
	if (rc < 0)
		fprintf(stderr, "  open %s: %s\n", place, err);
	return rc;
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

static void c_put_get_revisions(void)
{
	rt_registry *reg;
	char err[256];
	uint32_t rev = 0;
	T_EQ_INT(c_open(contract_place(), &reg, err, sizeof err), 0);
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

static void c_traffic(void)
{
	rt_registry *reg;
	char err[256];
	uint32_t rev;
	int c[16];
	T_EQ_INT(c_open(contract_place(), &reg, err, sizeof err), 0);
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

static void c_delete_and_reopen(void)
{
	const char *dir = c_keep(contract_place());
	rt_registry *reg;
	char err[256];
	uint32_t rev;
	T_EQ_INT(c_open(dir, &reg, err, sizeof err), 0);
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

	T_EQ_INT(c_open(dir, &reg, err, sizeof err), 0);
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

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Calls are made on the event loop: they must stay quick. */
static void c_speed(void)
{
	rt_registry *reg;
	char err[256];
	uint32_t rev;
	T_EQ_INT(c_open(contract_place(), &reg, err, sizeof err), 0);
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
static void c_many_revisions(void)
{
	const char *dir = c_keep(contract_place());
	rt_registry *reg;
	char err[256];
	T_EQ_INT(c_open(dir, &reg, err, sizeof err), 0);
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


static double c_now_ms(void)
{
	return now_s() * 1e3;
}

/* c_settle ticks reg (up to 100 ms) until cond(reg, ud) holds; 1 when it did */
static int c_settle(rt_registry *reg, int (*cond)(rt_registry *reg, void *ud), void *ud)
{
	double end = c_now_ms() + 100;
	for (;;) {
		rt_registry_tick(reg);
		if (cond(reg, ud))
			return 1;
		if (c_now_ms() > end)
			return 0;
		usleep(2000);
	}
}

static int latest_is(rt_registry *reg, void *ud)
{
	rt_revision_info ri;
	return rt_registry_get(reg, "shared", &ri) == 0 && ri.rev == *(uint32_t *)ud;
}

static int pick_is(rt_registry *reg, void *ud)
{
	uint32_t rev = 0;
	return rt_registry_pick_revision(reg, "shared", 5, &rev) == 0 && rev == *(uint32_t *)ud;
}

static int gone(rt_registry *reg, void *ud)
{
	rt_revision_info ri;
	(void)ud;
	return rt_registry_get(reg, "shared", &ri) == -ENOENT;
}

static int key_state(rt_registry *reg, void *ud)
{
	unsigned char h[RT_REGISTRY_KEY_HASH_LEN];
	char sc[RT_REGISTRY_KEY_SCOPES_MAX];
	return rt_registry_key_find(reg, "k1", h, sc) == *(int *)ud;
}

/* two handles on one store: deploys, traffic changes, deletes and key changes made through
 * one are seen by the other, which holds the old answers in its view until it hears */
static void c_two_handles(void)
{
	const char *place = c_keep(contract_place());
	rt_registry *a, *b;
	char err[256];
	uint32_t rev;
	T_EQ_INT(c_open(place, &a, err, sizeof err), 0);
	T_EQ_INT(c_open(place, &b, err, sizeof err), 0);
	rt_manifest m = mk("{\"kind\":\"echo\"}");
	T_EQ_INT(rt_registry_put(a, "shared", &m, NULL, &rev, err, sizeof err), 0);
	uint32_t want = 1;
	T_CHECK(c_settle(b, latest_is, &want));
	uint32_t pick = 0;
	T_EQ_INT(rt_registry_pick_revision(b, "shared", 5, &pick), 0);
	T_EQ_INT(pick, 1);
	T_EQ_INT(rt_registry_put(a, "shared", &m, NULL, &rev, err, sizeof err), 0);
	want = 2;
	T_CHECK(c_settle(b, latest_is, &want));
	T_CHECK(c_settle(b, pick_is, &want));
	/* a rollback made through b holds on a */
	rt_traffic t = {.n = 1, .e = {{1, 100}}};
	T_EQ_INT(rt_registry_set_traffic(b, "shared", &t, err, sizeof err), 0);
	want = 1;
	T_CHECK(c_settle(a, pick_is, &want));
	/* keys */
	unsigned char h[RT_REGISTRY_KEY_HASH_LEN] = {1, 2, 3};
	int st = -ENOENT;
	T_CHECK(c_settle(b, key_state, &st));   /* b has loaded its (empty) key view */
	T_EQ_INT(rt_registry_key_insert(a, "k1", h, "admin"), 0);
	st = 0;
	T_CHECK(c_settle(b, key_state, &st));
	T_EQ_INT(rt_registry_key_revoke(a, "k1"), 0);
	st = -ENOENT;
	T_CHECK(c_settle(b, key_state, &st));
	T_EQ_INT(rt_registry_delete(a, "shared"), 0);
	T_CHECK(c_settle(b, gone, NULL));
	rt_registry_close(a);
	rt_registry_close(b);
}

static void c_keys(void)
{
	rt_registry *reg;
	char err[256], sc[RT_REGISTRY_KEY_SCOPES_MAX];
	unsigned char h[RT_REGISTRY_KEY_HASH_LEN], got[RT_REGISTRY_KEY_HASH_LEN];
	for (int i = 0; i < RT_REGISTRY_KEY_HASH_LEN; i++)
		h[i] = (unsigned char)(i * 7 + 1);
	T_EQ_INT(c_open(contract_place(), &reg, err, sizeof err), 0);
	T_EQ_INT(rt_registry_key_find(reg, "a", got, sc), -ENOENT);
	T_EQ_INT(rt_registry_key_insert(reg, "a", h, "admin invoke"), 0);
	T_EQ_INT(rt_registry_key_insert(reg, "a", h, "admin"), -EEXIST);
	T_EQ_INT(rt_registry_key_insert(reg, "", h, "admin"), -EINVAL);
	T_EQ_INT(rt_registry_key_insert(reg, "b", h, "invoke:fn"), 0);
	T_EQ_INT(rt_registry_key_find(reg, "a", got, sc), 0);
	T_CHECK(memcmp(got, h, sizeof h) == 0);
	T_EQ_STR(sc, "admin invoke");
	T_EQ_INT(rt_registry_key_revoke(reg, "a"), 0);
	T_EQ_INT(rt_registry_key_revoke(reg, "a"), -ENOENT);
	T_EQ_INT(rt_registry_key_revoke(reg, "zz"), -ENOENT);
	T_EQ_INT(rt_registry_key_find(reg, "a", got, sc), -ENOENT);
	T_EQ_INT(rt_registry_key_find(reg, "b", got, sc), 0);
	json_t *l = NULL;
	T_EQ_INT(rt_registry_key_list(reg, &l), 0);
	json_t *ks = json_object_get(l, "keys");
	T_EQ_INT(json_array_size(ks), 2);
	T_EQ_STR(json_string_value(json_object_get(json_array_get(ks, 0), "id")), "a");
	T_CHECK(json_is_string(json_object_get(json_array_get(ks, 0), "revoked")));
	T_CHECK(json_is_null(json_object_get(json_array_get(ks, 1), "revoked")));
	T_EQ_INT(json_array_size(json_object_get(json_array_get(ks, 0), "scopes")), 2);
	json_decref(l);
	rt_registry_close(reg);
}

static void c_jobs(void)
{
	rt_registry *reg;
	char err[256];
	T_EQ_INT(c_open(contract_place(), &reg, err, sizeof err), 0);
	rt_job_row r;
	memset(&r, 0, sizeof r);
	snprintf(r.type, sizeof r.type, "quantize");
	snprintf(r.function, sizeof r.function, "fn");
	r.revision = 3;
	snprintf(r.snapshot, sizeof r.snapshot, "/s/a.thaw");
	r.params = json_pack("{s:s, s:i}", "format", "int8", "n", 5);
	r.schedule = json_pack("{s:s, s:s}", "window", "01:00-05:00", "tz", "UTC");
	r.priority = 2;
	snprintf(r.device, sizeof r.device, "auto");
	r.created_ms = 1700000000123LL;
	int64_t id1 = 0, id2 = 0, id3 = 0;
	T_EQ_INT(rt_jobstore_insert(reg, &r, &id1), 0);
	json_decref(r.params);
	json_decref(r.schedule);
	r.params = r.schedule = NULL;
	r.priority = 5;
	r.function[0] = 0;
	T_EQ_INT(rt_jobstore_insert(reg, &r, &id2), 0);
	r.priority = 0;
	T_EQ_INT(rt_jobstore_insert(reg, &r, &id3), 0);
	T_CHECK(id1 > 0 && id2 > id1 && id3 > id2);
	rt_job_row g;
	T_EQ_INT(rt_jobstore_get(reg, id1, &g), 0);
	T_EQ_STR(g.type, "quantize");
	T_EQ_STR(g.function, "fn");
	T_EQ_INT(g.revision, 3);
	T_EQ_STR(g.snapshot, "/s/a.thaw");
	T_EQ_STR(json_string_value(json_object_get(g.params, "format")), "int8");
	T_EQ_INT(json_integer_value(json_object_get(g.params, "n")), 5);
	T_EQ_STR(json_string_value(json_object_get(g.schedule, "tz")), "UTC");
	T_EQ_INT(g.priority, 2);
	T_EQ_INT(g.state, RT_JOB_QUEUED);
	T_EQ_INT(g.created_ms, 1700000000123LL);
	T_CHECK(json_is_object(g.metrics) && json_object_size(g.metrics) == 0);
	T_EQ_STR(g.error, "");
	T_EQ_STR(g.owner, "");
	rt_job_row_clear(&g);
	T_EQ_INT(rt_jobstore_get(reg, id2, &g), 0);
	T_EQ_STR(g.function, "");
	T_EQ_STR(json_string_value(g.schedule), "now");
	T_CHECK(json_is_object(g.params));
	rt_job_row_clear(&g);
	T_EQ_INT(rt_jobstore_get(reg, 99999, &g), -ENOENT);
	int64_t c[8];
	size_t n = 0;
	T_EQ_INT(rt_jobstore_candidates(reg, c, 8, &n), 0);
	T_EQ_INT(n, 3);
	T_EQ_INT(c[0], id2);   /* priority, then age */
	T_EQ_INT(c[1], id1);
	T_EQ_INT(c[2], id3);
	T_EQ_INT(rt_jobstore_candidates(reg, c, 1, &n), 0);
	T_EQ_INT(n, 1);
	/* progress of job 1 */
	T_EQ_INT(rt_jobstore_get(reg, id1, &g), 0);
	g.state = RT_JOB_RUNNING;
	g.progress = 0.25;
	g.step = 12;
	json_decref(g.metrics);
	g.metrics = json_pack("{s:f}", "loss", 1.5);
	g.started_ms = 1700000001000LL;
	g.updated_ms = 1700000002000LL;
	snprintf(g.checkpoint, sizeof g.checkpoint, "/ck/1");
	T_EQ_INT(rt_jobstore_save(reg, &g), 0);
	rt_job_row_clear(&g);
	T_EQ_INT(rt_jobstore_get(reg, id1, &g), 0);
	T_EQ_INT(g.state, RT_JOB_RUNNING);
	T_CHECK(g.progress == 0.25);
	T_EQ_INT(g.step, 12);
	T_CHECK(json_real_value(json_object_get(g.metrics, "loss")) == 1.5);
	T_EQ_INT(g.started_ms, 1700000001000LL);
	T_EQ_INT(g.finished_ms, 0);
	T_EQ_STR(g.checkpoint, "/ck/1");
	int64_t counts[RT_JOB_STATES];
	T_EQ_INT(rt_jobstore_counts(reg, counts), 0);
	T_EQ_INT(counts[RT_JOB_QUEUED], 2);
	T_EQ_INT(counts[RT_JOB_RUNNING], 1);
	int64_t *ids = NULL;
	T_EQ_INT(rt_jobstore_ids(reg, RT_JOB_QUEUED, &ids, &n), 0);
	T_EQ_INT(n, 2);
	free(ids);
	T_EQ_INT(rt_jobstore_ids(reg, -1, &ids, &n), 0);
	T_EQ_INT(n, 3);
	if (n == 3)
		T_EQ_INT(ids[0], id1);
	free(ids);

	/* leases: node a claims job 1; b cannot while a's lease is live */
	T_EQ_INT(rt_jobstore_claim(reg, id1, "node-a", 60000), 0);
	T_EQ_INT(rt_jobstore_claim(reg, id1, "node-a", 60000), 0);   /* again: its own */
	T_EQ_INT(rt_jobstore_claim(reg, id1, "node-b", 60000), -EBUSY);
	T_EQ_INT(rt_jobstore_claim(reg, 99999, "node-b", 60000), -ENOENT);
	T_EQ_INT(rt_jobstore_candidates(reg, c, 8, &n), 0);
	T_EQ_INT(n, 2);   /* job 1 is held */
	int k = -1;
	T_EQ_INT(rt_jobstore_renew(reg, "node-a", 60000, &k), 0);
	T_EQ_INT(k, 1);
	T_EQ_INT(rt_jobstore_renew(reg, "node-b", 60000, &k), 0);
	T_EQ_INT(k, 0);
	g.progress = 0.5;
	T_EQ_INT(rt_jobstore_save_owned(reg, &g, "node-a"), 0);
	T_EQ_INT(rt_jobstore_save_owned(reg, &g, "node-b"), -ESTALE);
	rt_job_row_clear(&g);
	T_EQ_INT(rt_jobstore_get(reg, id1, &g), 0);
	T_CHECK(g.progress == 0.5);
	T_EQ_STR(g.owner, "node-a");
	T_CHECK(g.lease_until_ms > 0);
	/* a's lease runs out: b may take the job */
	T_EQ_INT(rt_jobstore_claim(reg, id2, "node-a", 1), 0);
	usleep(20000);
	T_EQ_INT(rt_jobstore_claim(reg, id2, "node-b", 60000), 0);
	/* a preempted save clears the owner */
	g.state = RT_JOB_PREEMPTED;
	T_EQ_INT(rt_jobstore_save_owned(reg, &g, "node-a"), 0);
	rt_job_row_clear(&g);
	T_EQ_INT(rt_jobstore_get(reg, id1, &g), 0);
	T_EQ_STR(g.owner, "");
	T_EQ_INT(g.state, RT_JOB_PREEMPTED);
	/* finished jobs cannot be claimed */
	g.state = RT_JOB_SUCCEEDED;
	g.finished_ms = 1700000003000LL;
	T_EQ_INT(rt_jobstore_save(reg, &g), 0);
	rt_job_row_clear(&g);
	T_EQ_INT(rt_jobstore_claim(reg, id1, "node-a", 60000), -ENOENT);
	/* recovery by node b: its running job becomes preempted */
	T_EQ_INT(rt_jobstore_get(reg, id2, &g), 0);
	g.state = RT_JOB_RUNNING;
	T_EQ_INT(rt_jobstore_save_owned(reg, &g, "node-b"), 0);
	rt_job_row_clear(&g);
	T_EQ_INT(rt_jobstore_recover(reg, "node-a", &k), 0);
	T_EQ_INT(k, 0);
	T_EQ_INT(rt_jobstore_recover(reg, "node-b", &k), 0);
	T_EQ_INT(k, 1);
	T_EQ_INT(rt_jobstore_get(reg, id2, &g), 0);
	T_EQ_INT(g.state, RT_JOB_PREEMPTED);
	T_EQ_STR(g.owner, "");
	rt_job_row_clear(&g);
	rt_registry_close(reg);
}

static int nodes_moved(rt_registry *reg, void *ud)
{
	return rt_registry_nodes_generation(reg) != *(uint64_t *)ud;
}

static void c_nodes(void)
{
	const char *place = c_keep(contract_place());
	rt_registry *reg, *other;
	char err[256];
	T_EQ_INT(c_open(place, &reg, err, sizeof err), 0);
	T_EQ_INT(c_open(place, &other, err, sizeof err), 0);
	rt_node_row *v = NULL;
	size_t n = 9;
	T_EQ_INT(rt_registry_node_list(reg, &v, &n), 0);
	T_EQ_INT(n, 0);
	T_EQ_INT(rt_registry_node_beat(reg, "bad id", "", "{}", 1000, 1, 0), -EINVAL);
	T_EQ_INT(rt_registry_node_beat(reg, "", "", "{}", 1000, 1, 0), -EINVAL);
	T_EQ_INT(rt_registry_node_beat(reg, "n1", "", "{}", 0, 1, 0), -EINVAL);
	uint64_t g0 = rt_registry_nodes_generation(other);
	T_EQ_INT(rt_registry_node_beat(reg, "n2", "http://127.0.0.1:2", "{\"load\":2}", 60000, 1, 1),
		 0);
	T_CHECK(c_settle(other, nodes_moved, &g0));
	T_EQ_INT(rt_registry_node_beat(reg, "n1", "http://127.0.0.1:1", NULL, 60000, 1, 0), 0);
	T_EQ_INT(rt_registry_node_beat(reg, "short", "", "{}", 1, 1, 0), 0);
	usleep(20000);
	T_EQ_INT(rt_registry_node_list(other, &v, &n), 0);
	T_EQ_INT(n, 2);   /* "short" has expired */
	if (n == 2) {
		T_EQ_STR(v[0].id, "n1");
		T_EQ_STR(v[0].advertise, "http://127.0.0.1:1");
		T_CHECK(v[0].state == NULL);
		T_EQ_STR(v[1].id, "n2");
		T_EQ_STR(v[1].state, "{\"load\":2}");
		T_CHECK(v[1].lease_left_ms > 50000 && v[1].lease_left_ms <= 60000);
		T_CHECK(v[1].started_ms > 1700000000000LL && v[1].beat_ms >= v[1].started_ms);
	}
	int64_t started = n == 2 ? v[1].started_ms : 0;
	rt_registry_node_rows_free(v, n);
	usleep(5000);
	/* a plain beat keeps started_ms; a fresh one resets it */
	T_EQ_INT(rt_registry_node_beat(reg, "n2", "http://127.0.0.1:2", "{\"load\":3}", 60000, 0, 0),
		 0);
	T_EQ_INT(rt_registry_node_list(other, &v, &n), 0);
	if (n == 2) {
		T_EQ_INT(v[1].started_ms, started);
		T_EQ_STR(v[1].state, "{\"load\":3}");
	}
	rt_registry_node_rows_free(v, n);
	g0 = rt_registry_nodes_generation(other);
	T_EQ_INT(rt_registry_node_leave(reg, "n2"), 0);
	T_EQ_INT(rt_registry_node_leave(reg, "n2"), -ENOENT);
	T_CHECK(c_settle(other, nodes_moved, &g0));
	T_EQ_INT(rt_registry_node_list(other, &v, &n), 0);
	T_EQ_INT(n, 1);
	rt_registry_node_rows_free(v, n);
	rt_registry_close(reg);
	rt_registry_close(other);
}

/* two processes claim the same jobs at once: each job goes to exactly one */
static void c_claim_race(void)
{
	const char *place = c_keep(contract_place());
	rt_registry *reg;
	char err[256];
	enum { JOBS = 20 };
	T_EQ_INT(c_open(place, &reg, err, sizeof err), 0);
	rt_job_row r;
	memset(&r, 0, sizeof r);
	snprintf(r.type, sizeof r.type, "quantize");
	snprintf(r.device, sizeof r.device, "auto");
	r.created_ms = 1;
	int64_t ids[JOBS];
	for (int i = 0; i < JOBS; i++)
		T_EQ_INT(rt_jobstore_insert(reg, &r, &ids[i]), 0);
	rt_registry_close(reg);
	int pipes[2][2];
	pid_t pid[2];
	for (int c = 0; c < 2; c++) {
		T_EQ_INT(pipe(pipes[c]), 0);
		fflush(NULL);
		pid[c] = fork();
		if (pid[c] == 0) {
			char node[16], won[JOBS];
			rt_registry *mine;
			snprintf(node, sizeof node, "racer-%d", c);
			if (rt_registry_open_url(place, NULL, &mine, err, sizeof err) < 0)
				_exit(2);
			for (int i = 0; i < JOBS; i++) {
				int rc = rt_jobstore_claim(mine, ids[i], node, 60000);
				won[i] = rc == 0 ? 'w' : rc == -EBUSY ? 'b' : 'e';
			}
			rt_registry_close(mine);
			_exit(write(pipes[c][1], won, JOBS) == JOBS ? 0 : 3);
		}
		close(pipes[c][1]);
	}
	char won[2][JOBS];
	for (int c = 0; c < 2; c++) {
		int st = 0;
		T_EQ_INT(read(pipes[c][0], won[c], JOBS), JOBS);
		close(pipes[c][0]);
		T_EQ_INT(waitpid(pid[c], &st, 0), pid[c]);
		T_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	for (int i = 0; i < JOBS; i++) {
		T_CHECK(won[0][i] != 'e' && won[1][i] != 'e');
		T_CHECK((won[0][i] == 'w') + (won[1][i] == 'w') == 1);
	}
	T_EQ_INT(c_open(place, &reg, err, sizeof err), 0);
	for (int i = 0; i < JOBS; i++) {
		rt_job_row g;
		T_EQ_INT(rt_jobstore_get(reg, ids[i], &g), 0);
		T_EQ_STR(g.owner, won[0][i] == 'w' ? "racer-0" : "racer-1");
		rt_job_row_clear(&g);
	}
	rt_registry_close(reg);
}

/* the hot path (picks, revision lookups, key checks) runs no statement once loaded, ticks
 * included */
static void c_view_runs_nothing(void)
{
	rt_registry *reg;
	char err[256], sc[RT_REGISTRY_KEY_SCOPES_MAX];
	unsigned char h[RT_REGISTRY_KEY_HASH_LEN] = {4};
	uint32_t rev;
	T_EQ_INT(c_open(contract_place(), &reg, err, sizeof err), 0);
	rt_manifest m = mk("{\"kind\":\"echo\"}");
	T_EQ_INT(rt_registry_put(reg, "hot", &m, NULL, &rev, err, sizeof err), 0);
	T_EQ_INT(rt_registry_key_insert(reg, "hk", h, "invoke:hot"), 0);
	rt_revision_info ri;
	T_EQ_INT(rt_registry_get(reg, "hot", &ri), 0);
	T_EQ_INT(rt_registry_key_find(reg, "hk", h, sc), 0);
	uint64_t s0 = rt_registry_statements(reg);
	for (int i = 0; i < 1000; i++) {
		T_EQ_INT(rt_registry_pick_revision(reg, "hot", (uint64_t)i, &rev), 0);
		T_EQ_INT(rt_registry_get_revision(reg, "hot", 1, &ri), 0);
		T_EQ_INT(rt_registry_key_find(reg, "hk", h, sc), 0);
		if (i % 100 == 0)
			rt_registry_tick(reg);
	}
	T_EQ_INT(rt_registry_statements(reg) - s0, 0);
	rt_registry_close(reg);
}

static void contract_run(void)
{
	T_RUN(c_put_get_revisions);
	T_RUN(c_traffic);
	T_RUN(c_delete_and_reopen);
	T_RUN(c_many_revisions);
	T_RUN(c_keys);
	T_RUN(c_jobs);
	T_RUN(c_nodes);
	T_RUN(c_two_handles);
	T_RUN(c_claim_race);
	T_RUN(c_view_runs_nothing);
	T_RUN(c_speed);
}
#endif

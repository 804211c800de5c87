/* test_auth.c — rt_auth: keys stored only as keyed hashes, lookup by id, wrong/forged/revoked
 * keys refused, the install secret shared by a second opener (another process's view),
 * scope checks and the route policy table. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sodium.h>
#include <sqlite3.h>
#include "runtime/access/rt_auth.h"
#include "runtime/store/rt_registry.h"
#include "tests/t.h"

static const char *fresh_dir(void)
{
	static char d[1024];
	static int n;
	snprintf(d, sizeof d, "%s/auth-%d", t_tmpdir(), ++n);
	mkdir(d, 0755);
	return d;
}

static int check(rt_auth *a, const char *key, char *id, char *scopes)
{
	char h[256];
	snprintf(h, sizeof h, "Bearer %s", key);
	return rt_auth_check(a, h, id, scopes);
}

static void test_create_check_revoke(void)
{
	const char *d = fresh_dir();
	rt_registry *reg;
	rt_auth *a;
	char err[256], key[RT_AUTH_KEY_MAX], id[RT_AUTH_ID_LEN + 1], gid[RT_AUTH_ID_LEN + 1];
	char scopes[RT_AUTH_SCOPES_MAX];
	T_EQ_INT(rt_registry_open(d, &reg, err, sizeof err), 0);
	T_EQ_INT(rt_auth_open(reg, d, &a, err, sizeof err), 0);
	const char *sc[] = {"invoke:echo", "metrics"};
	T_EQ_INT(rt_auth_key_create(a, sc, 2, key, id, err, sizeof err), 0);
	T_EQ_INT(strlen(id), RT_AUTH_ID_LEN);
	T_CHECK(strncmp(key, "thaw_", 5) == 0 && strncmp(key + 5, id, RT_AUTH_ID_LEN) == 0);
	T_CHECK(strlen(key) > 40);
	T_EQ_INT(check(a, key, gid, scopes), 0);
	T_EQ_STR(gid, id);
	T_EQ_STR(scopes, "invoke:echo metrics");
	/* the row holds the keyed BLAKE2b hash of the key (independently recomputed), not the key */
	unsigned char secret[32], want[32];
	char sp[1100];
	snprintf(sp, sizeof sp, "%s/auth.secret", d);
	FILE *f = fopen(sp, "rb");
	T_CHECK(f && fread(secret, 1, 32, f) == 32);
	if (f)
		fclose(f);
	struct stat st;
	T_CHECK(stat(sp, &st) == 0 && (st.st_mode & 077) == 0);
	crypto_generichash(want, 32, (const unsigned char *)key, strlen(key), secret, 32);
	/* what the database holds, read through a connection of its own */
	sqlite3 *db;
	char dbp[1100];
	snprintf(dbp, sizeof dbp, "%s/registry.db", d);
	T_EQ_INT(sqlite3_open(dbp, &db), SQLITE_OK);
	sqlite3_stmt *s;
	T_EQ_INT(sqlite3_prepare_v2(db, "SELECT hash, scopes FROM api_keys WHERE id = ?",
				    -1, &s, NULL), SQLITE_OK);
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	T_EQ_INT(sqlite3_step(s), SQLITE_ROW);
	T_EQ_INT(sqlite3_column_bytes(s, 0), 32);
	T_CHECK(memcmp(sqlite3_column_blob(s, 0), want, 32) == 0);
	sqlite3_finalize(s);
	T_EQ_INT(sqlite3_prepare_v2(db, "SELECT count(*) FROM api_keys WHERE "
				    "instr(hash, ?) > 0 OR instr(scopes, ?) > 0", -1, &s, NULL), SQLITE_OK);
	sqlite3_bind_text(s, 1, key + 18, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, key + 18, -1, SQLITE_STATIC);
	T_EQ_INT(sqlite3_step(s), SQLITE_ROW);
	T_EQ_INT(sqlite3_column_int(s, 0), 0);
	sqlite3_finalize(s);
	sqlite3_close(db);
	/* wrong secret part, unknown id, malformed, missing, wrong scheme */
	char bad[RT_AUTH_KEY_MAX];
	snprintf(bad, sizeof bad, "%s", key);
	bad[strlen(bad) - 1] ^= 1;
	T_EQ_INT(check(a, bad, gid, scopes), -EACCES);
	T_EQ_STR(gid, "");
	snprintf(bad, sizeof bad, "%s", key);
	bad[5] = bad[5] == 'a' ? 'b' : 'a';
	T_EQ_INT(check(a, bad, gid, scopes), -EACCES);
	T_EQ_INT(check(a, "thaw_zz", gid, scopes), -EACCES);
	T_EQ_INT(check(a, "", gid, scopes), -EACCES);
	T_EQ_INT(rt_auth_check(a, NULL, gid, scopes), -EACCES);
	char basic[200];
	snprintf(basic, sizeof basic, "Basic %s", key);
	T_EQ_INT(rt_auth_check(a, basic, gid, scopes), -EACCES);
	/* a second opener (as `thaw keys` in another process) shares the secret and sees the key;
	 * its revocation counts for the first at the next check */
	rt_registry *reg2;
	rt_auth *a2;
	T_EQ_INT(rt_registry_open(d, &reg2, err, sizeof err), 0);
	T_EQ_INT(rt_auth_open(reg2, d, &a2, err, sizeof err), 0);
	T_EQ_INT(check(a2, key, gid, scopes), 0);
	T_EQ_INT(rt_auth_key_revoke(a2, id), 0);
	T_EQ_INT(rt_auth_key_revoke(a2, id), -ENOENT);
	T_EQ_INT(rt_auth_key_revoke(a2, "000000000000"), -ENOENT);
	T_EQ_INT(check(a, key, gid, scopes), -EACCES);
	json_t *list;
	T_EQ_INT(rt_auth_key_list(a, &list), 0);
	json_t *k0 = json_array_get(json_object_get(list, "keys"), 0);
	T_EQ_STR(json_string_value(json_object_get(k0, "id")), id);
	T_CHECK(json_is_string(json_object_get(k0, "revoked")));
	T_CHECK(!json_object_get(k0, "hash"));
	json_decref(list);
	/* bad scopes are refused */
	const char *badsc[] = {"invoke:"};
	T_EQ_INT(rt_auth_key_create(a, badsc, 1, key, id, err, sizeof err), -EINVAL);
	T_EQ_INT(rt_auth_key_create(a, badsc, 0, key, id, err, sizeof err), -EINVAL);
	rt_auth_close(a2);
	rt_registry_close(reg2);
	rt_auth_close(a);
	rt_registry_close(reg);
}

static void test_scopes(void)
{
	T_CHECK(rt_auth_scope_valid("admin"));
	T_CHECK(rt_auth_scope_valid("metrics"));
	T_CHECK(rt_auth_scope_valid("invoke:*"));
	T_CHECK(rt_auth_scope_valid("invoke:my-fn-1"));
	/* scopes that can never match a function (not a function name) are refused */
	T_CHECK(!rt_auth_scope_valid("invoke:my-fn_1.2"));
	T_CHECK(!rt_auth_scope_valid("invoke:Bad_Name"));
	T_CHECK(!rt_auth_scope_valid("invoke:-x"));
	char why[300];
	T_CHECK(rt_auth_scope_check("invoke:Bad_Name", why, sizeof why) == -EINVAL);
	T_CHECK(strstr(why, "invoke:Bad_Name") && strstr(why, "never match") && strstr(why, "lower-case"));
	T_CHECK(rt_auth_scope_check("root", why, sizeof why) == -EINVAL && strstr(why, "bad scope 'root'"));
	/* the OpenAI routes at the end of the headers (function not known): an invoke scope */
	T_CHECK(!rt_auth_allows("metrics", RT_AUTH_INVOKE_BODY, NULL));
	T_CHECK(!rt_auth_allows("", RT_AUTH_INVOKE_BODY, NULL));
	T_CHECK(rt_auth_allows("metrics invoke:echo", RT_AUTH_INVOKE_BODY, NULL));
	T_CHECK(rt_auth_allows("invoke:*", RT_AUTH_INVOKE_BODY, NULL));
	T_CHECK(rt_auth_allows("admin", RT_AUTH_INVOKE_BODY, NULL));
	T_CHECK(!rt_auth_allows("invoke:echo", RT_AUTH_INVOKE_BODY, "llama"));
	T_CHECK(rt_auth_allows("invoke:llama", RT_AUTH_INVOKE_BODY, "llama"));
	/* the scope a 403 names */
	char sc[100];
	rt_auth_missing_scope(RT_AUTH_INVOKE, "echo", sc, sizeof sc);
	T_EQ_STR(sc, "invoke:echo");
	rt_auth_missing_scope(RT_AUTH_INVOKE, "a\"b", sc, sizeof sc);
	T_EQ_STR(sc, "invoke:FUNCTION");
	rt_auth_missing_scope(RT_AUTH_METRICS, NULL, sc, sizeof sc);
	T_EQ_STR(sc, "metrics");
	rt_auth_missing_scope(RT_AUTH_ADMIN, "echo", sc, sizeof sc);
	T_EQ_STR(sc, "admin");
	T_CHECK(!rt_auth_scope_valid("invoke:"));
	T_CHECK(!rt_auth_scope_valid("invoke:a b"));
	T_CHECK(!rt_auth_scope_valid("root"));
	T_CHECK(!rt_auth_scope_valid("Admin"));
	T_CHECK(rt_auth_allows("invoke:echo", RT_AUTH_INVOKE, "echo"));
	T_CHECK(!rt_auth_allows("invoke:echo", RT_AUTH_INVOKE, "ech"));
	T_CHECK(!rt_auth_allows("invoke:ech", RT_AUTH_INVOKE, "echo"));
	T_CHECK(!rt_auth_allows("invoke:echo", RT_AUTH_ADMIN, "echo"));
	T_CHECK(!rt_auth_allows("invoke:echo", RT_AUTH_METRICS, NULL));
	T_CHECK(rt_auth_allows("invoke:echo", RT_AUTH_READ_FN, "echo"));
	T_CHECK(rt_auth_allows("invoke:echo", RT_AUTH_ANY, NULL));
	T_CHECK(rt_auth_allows("metrics invoke:*", RT_AUTH_INVOKE, "x"));
	T_CHECK(rt_auth_allows("metrics invoke:*", RT_AUTH_METRICS, NULL));
	T_CHECK(!rt_auth_allows("metrics", RT_AUTH_INVOKE, "x"));
	T_CHECK(!rt_auth_allows("metrics", RT_AUTH_INVOKE, NULL));
	T_CHECK(rt_auth_allows("admin", RT_AUTH_ADMIN, NULL));
	T_CHECK(rt_auth_allows("admin", RT_AUTH_INVOKE, "x"));
	T_CHECK(rt_auth_allows("", RT_AUTH_ANY, NULL));
	T_CHECK(rt_auth_allows(NULL, RT_AUTH_OPEN, NULL));
	T_CHECK(!rt_auth_allows(NULL, RT_AUTH_ANY, NULL));
	T_CHECK(!rt_auth_allows("adminx", RT_AUTH_ADMIN, NULL));
}

static void test_routes(void)
{
	const char *act;
	T_EQ_INT(rt_auth_route_need("GET", "/healthz", &act), RT_AUTH_OPEN);
	T_EQ_INT(rt_auth_route_need("HEAD", "/readyz", &act), RT_AUTH_OPEN);
	T_EQ_INT(rt_auth_route_need("GET", "/v2/health/ready", &act), RT_AUTH_OPEN);
	T_EQ_INT(rt_auth_route_need("POST", "/v1/functions/{name}/invoke", &act), RT_AUTH_INVOKE);
	T_EQ_STR(act, "invoke");
	T_EQ_INT(rt_auth_route_need("POST", "/v2/models/{m}/infer", &act), RT_AUTH_INVOKE);
	T_EQ_STR(act, "infer");
	T_EQ_INT(rt_auth_route_need("PUT", "/v1/functions/{name}", &act), RT_AUTH_ADMIN);
	T_EQ_STR(act, "deploy");
	T_EQ_INT(rt_auth_route_need("DELETE", "/v1/jobs/{id}", &act), RT_AUTH_ADMIN);
	T_EQ_INT(rt_auth_route_need("GET", "/metrics", &act), RT_AUTH_METRICS);
	T_EQ_INT(rt_auth_route_need("POST", "/v2/repository/models/{m}/load", &act), RT_AUTH_ADMIN);
	/* an unknown route needs admin (deny by default) */
	T_EQ_INT(rt_auth_route_need("POST", "/v9/new-thing", &act), RT_AUTH_ADMIN);
}

void t_main(void)
{
	T_RUN(test_create_check_revoke);
	T_RUN(test_scopes);
	T_RUN(test_routes);
}

/* test_manifest.c — rt_manifest: defaults, every field's validation and message, round trips,
 * function names, snapshot path resolution (bare names, allowed roots, "..", symlinks). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "runtime/store/rt_manifest.h"
#include "tests/t.h"

static int known(const char *kind, void *ud)
{
	(void)ud;
	return strcmp(kind, "mlp") == 0 || strcmp(kind, "llama") == 0 || strcmp(kind, "echo") == 0;
}

static int parse(const char *s, rt_manifest *m, char *err, size_t errlen)
{
	err[0] = 0;
	return rt_manifest_parse(s, strlen(s), known, NULL, m, err, errlen);
}

static void test_defaults(void)
{
	rt_manifest m;
	char err[256];
	T_EQ_INT(parse("{\"kind\":\"mlp\",\"snapshot\":\"m.thaw\"}", &m, err, sizeof err), 0);
	T_EQ_STR(m.kind, "mlp");
	T_EQ_STR(m.snapshot, "m.thaw");
	T_EQ_INT(m.min_scale, 0);
	T_CHECK(m.idle_timeout_s == 30.0);
	T_EQ_INT(m.concurrency, 8);
	T_EQ_INT(m.max_queue, 64);
	T_CHECK(m.timeout_s == 60.0);
	T_EQ_INT(m.device, RT_DEVICE_AUTO);
	T_EQ_INT(m.device_index, -1);
	T_EQ_INT(m.max_batch, 8);
	T_EQ_INT(m.max_batch_delay_us, 500);
	T_EQ_INT(m.prefix_caching, 1);
	T_EQ_INT(m.traffic.n, 0);
	/* echo needs no snapshot */
	T_EQ_INT(parse("{\"kind\":\"echo\"}", &m, err, sizeof err), 0);
	T_EQ_STR(m.snapshot, "");
	/* a snapshot without a kind: valid, kind left for the snapshot's metadata */
	T_EQ_INT(parse("{\"snapshot\":\"m.thaw\",\"concurrency\":2}", &m, err, sizeof err), 0);
	T_EQ_STR(m.kind, "");
	T_EQ_STR(m.snapshot, "m.thaw");
	T_EQ_INT(m.concurrency, 2);
	json_t *j = rt_manifest_to_json(&m, 0);   /* and it round-trips without a kind */
	T_CHECK(j && !json_object_get(j, "kind"));
	rt_manifest back;
	T_EQ_INT(rt_manifest_from_json(j, known, NULL, &back, err, sizeof err), 0);
	T_EQ_STR(back.snapshot, "m.thaw");
	json_decref(j);
}

static const char *FULL =
	"{\"kind\":\"llama\",\"snapshot\":\"/models/l.thaw\",\"min_scale\":1,\"idle_timeout_s\":2.5,"
	"\"concurrency\":1024,\"max_queue\":0,\"timeout_s\":3600,\"device\":\"cuda:7\",\"max_batch\":1,"
	"\"max_batch_delay_us\":1000000,\"prefix_caching\":false,"
	"\"traffic\":{\"3\":10,\"latest\":60,\"1\":30}}";

static void test_all_fields(void)
{
	rt_manifest m;
	char err[256];
	T_EQ_INT(parse(FULL, &m, err, sizeof err), 0);
	T_EQ_STR(err, "");
	T_EQ_STR(m.kind, "llama");
	T_EQ_STR(m.snapshot, "/models/l.thaw");
	T_EQ_INT(m.min_scale, 1);
	T_CHECK(m.idle_timeout_s == 2.5);
	T_EQ_INT(m.concurrency, 1024);
	T_EQ_INT(m.max_queue, 0);
	T_CHECK(m.timeout_s == 3600.0);
	T_EQ_INT(m.device, RT_DEVICE_CUDA);
	T_EQ_INT(m.device_index, 7);
	T_EQ_INT(m.max_batch, 1);
	T_EQ_INT(m.max_batch_delay_us, 1000000);
	T_EQ_INT(m.prefix_caching, 0);
	/* traffic sorted by revision, "latest" (0) first */
	T_EQ_INT(m.traffic.n, 3);
	T_EQ_INT(m.traffic.e[0].rev, RT_MANIFEST_REV_LATEST);
	T_EQ_INT(m.traffic.e[0].percent, 60);
	T_EQ_INT(m.traffic.e[1].rev, 1);
	T_EQ_INT(m.traffic.e[1].percent, 30);
	T_EQ_INT(m.traffic.e[2].rev, 3);
	T_EQ_INT(m.traffic.e[2].percent, 10);
	char dev[32];
	rt_device_format(&m, dev, sizeof dev);
	T_EQ_STR(dev, "cuda:7");
	T_EQ_INT(parse("{\"kind\":\"mlp\",\"snapshot\":\"a\",\"device\":\"cpu\"}", &m, err, sizeof err), 0);
	T_EQ_INT(m.device, RT_DEVICE_CPU);
	T_EQ_INT(parse("{\"kind\":\"mlp\",\"snapshot\":\"a\",\"device\":\"cuda:0\"}", &m, err, sizeof err), 0);
	T_EQ_INT(m.device_index, 0);
}

static void test_errors_name_the_field(void)
{
	static const struct { const char *json, *want; } cases[] = {
		{"[]", "manifest must be a JSON object"},
		{"\"x\"", "invalid JSON"},
		{"{\"kind\":", "invalid JSON at line 1"},
		{"{\"kind\":\"mlp\",\"kind\":\"echo\"}", "duplicate"},
		{"{}", "field 'kind': required"},
		{"{\"kind\":\"nope\"}", "field 'kind': unknown kind 'nope'"},
		{"{\"kind\":\"MLP\"}", "field 'kind'"},
		{"{\"kind\":\"\"}", "field 'kind'"},
		{"{\"kind\":7}", "field 'kind': must be a string"},
		{"{\"kind\":\"mlp\"}", "field 'snapshot': required for kind 'mlp'"},
		{"{\"kind\":\"mlp\",\"snapshot\":\"\"}", "field 'snapshot'"},
		{"{\"kind\":\"mlp\",\"snapshot\":null}", "field 'snapshot': must be a string"},
		{"{\"kind\":\"echo\",\"bogus\":1}", "field 'bogus': unknown field"},
		{"{\"kind\":\"echo\",\"Concurrency\":1}", "field 'Concurrency': unknown field"},
		{"{\"kind\":\"echo\",\"concurrency\":0}", "field 'concurrency': must be an integer 1..1024"},
		{"{\"kind\":\"echo\",\"concurrency\":1025}", "field 'concurrency': must be an integer 1..1024"},
		{"{\"kind\":\"echo\",\"concurrency\":8.5}", "field 'concurrency': must be an integer"},
		{"{\"kind\":\"echo\",\"concurrency\":8.0}", "field 'concurrency': must be an integer"},
		{"{\"kind\":\"echo\",\"concurrency\":\"8\"}", "field 'concurrency': must be an integer"},
		{"{\"kind\":\"echo\",\"concurrency\":true}", "field 'concurrency': must be an integer"},
		{"{\"kind\":\"echo\",\"min_scale\":2}", "field 'min_scale': must be an integer 0..1"},
		{"{\"kind\":\"echo\",\"min_scale\":-1}", "field 'min_scale'"},
		{"{\"kind\":\"echo\",\"max_queue\":-1}", "field 'max_queue': must be an integer 0..65536"},
		{"{\"kind\":\"echo\",\"max_queue\":65537}", "field 'max_queue'"},
		{"{\"kind\":\"echo\",\"max_batch\":0}", "field 'max_batch': must be an integer 1..1024"},
		{"{\"kind\":\"echo\",\"max_batch_delay_us\":1000001}", "field 'max_batch_delay_us'"},
		{"{\"kind\":\"echo\",\"prefix_caching\":1}", "field 'prefix_caching': must be true or false"},
		{"{\"kind\":\"echo\",\"prefix_caching\":\"true\"}", "field 'prefix_caching'"},
		{"{\"kind\":\"echo\",\"prefix_caching\":null}", "field 'prefix_caching'"},
		{"{\"kind\":\"echo\",\"max_batch_delay_us\":99999999999999999999}", "invalid JSON"},
		{"{\"kind\":\"echo\",\"idle_timeout_s\":0}", "field 'idle_timeout_s': must be a number of seconds"},
		{"{\"kind\":\"echo\",\"idle_timeout_s\":\"30\"}", "field 'idle_timeout_s'"},
		{"{\"kind\":\"echo\",\"idle_timeout_s\":1e9}", "field 'idle_timeout_s'"},
		{"{\"kind\":\"echo\",\"timeout_s\":3601}", "field 'timeout_s'"},
		{"{\"kind\":\"echo\",\"timeout_s\":-1}", "field 'timeout_s'"},
		{"{\"kind\":\"echo\",\"device\":\"gpu\"}", "field 'device': must be \"auto\", \"cpu\" or \"cuda:N\""},
		{"{\"kind\":\"echo\",\"device\":\"cuda:\"}", "field 'device'"},
		{"{\"kind\":\"echo\",\"device\":\"cuda:64\"}", "field 'device'"},
		{"{\"kind\":\"echo\",\"device\":\"cuda:01\"}", "field 'device'"},
		{"{\"kind\":\"echo\",\"device\":\"cuda:-1\"}", "field 'device'"},
		{"{\"kind\":\"echo\",\"device\":0}", "field 'device'"},
		{"{\"kind\":\"echo\",\"traffic\":[]}", "field 'traffic': must be an object"},
		{"{\"kind\":\"echo\",\"traffic\":{}}", "field 'traffic': must name at least one revision"},
		{"{\"kind\":\"echo\",\"traffic\":{\"1\":50}}", "field 'traffic': percents must sum to 100 (got 50)"},
		{"{\"kind\":\"echo\",\"traffic\":{\"1\":60,\"2\":60}}", "(got 120)"},
		{"{\"kind\":\"echo\",\"traffic\":{\"0\":100}}", "field 'traffic': key '0' must be a revision number"},
		{"{\"kind\":\"echo\",\"traffic\":{\"01\":100}}", "key '01'"},
		{"{\"kind\":\"echo\",\"traffic\":{\"-1\":100}}", "key '-1'"},
		{"{\"kind\":\"echo\",\"traffic\":{\"v1\":100}}", "key 'v1'"},
		{"{\"kind\":\"echo\",\"traffic\":{\"99999999999\":100}}", "key '99999999999'"},
		{"{\"kind\":\"echo\",\"traffic\":{\"1\":100.0}}", "field 'traffic': percent for '1' must be an integer 0..100"},
		{"{\"kind\":\"echo\",\"traffic\":{\"1\":101,\"2\":-1}}", "percent for '1'"},
		{"{\"kind\":\"echo\",\"traffic\":{\"1\":\"100\"}}", "percent for '1'"},
		{"{\"kind\":\"echo\",\"traffic\":{\"1\":100,\"1\":0}}", "duplicate"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		rt_manifest m;
		char err[256];
		int rc = parse(cases[i].json, &m, err, sizeof err);
		if (rc != -EINVAL || !strstr(err, cases[i].want)) {
			t_cur_failed++;
			fprintf(stderr, "  FAIL case %zu %s: rc=%d err=\"%s\" want \"%s\"\n", i,
				cases[i].json, rc, err, cases[i].want);
		}
	}
	/* a NUL inside a string (jansson refuses \u0000 unless asked) and a NULL kind callback */
	rt_manifest m;
	char err[256];
	T_EQ_INT(parse("{\"kind\":\"echo\",\"snapshot\":\"a\\u0000b\"}", &m, err, sizeof err), -EINVAL);
	json_t *o = json_pack("{s:s, s:s%}", "kind", "mlp", "snapshot", "a\0b", (size_t)3);
	T_CHECK(o != NULL);
	T_EQ_INT(rt_manifest_from_json(o, NULL, NULL, &m, err, sizeof err), -EINVAL);
	T_CHECK(strstr(err, "field 'snapshot'") != NULL);
	json_decref(o);
	o = json_pack("{s:s, s:s}", "kind", "whatever", "snapshot", "x");
	T_EQ_INT(rt_manifest_from_json(o, NULL, NULL, &m, err, sizeof err), 0);
	json_decref(o);
	/* messages never echo control characters of unknown field names */
	T_EQ_INT(parse("{\"kind\":\"echo\",\"a\\nb\":1}", &m, err, sizeof err), -EINVAL);
	T_CHECK(strstr(err, "field 'a?b': unknown field") != NULL);
}

static void test_round_trip(void)
{
	rt_manifest a, b;
	char err[256];
	T_EQ_INT(parse(FULL, &a, err, sizeof err), 0);
	json_t *ja = rt_manifest_to_json(&a, 1);
	T_CHECK(ja != NULL);
	char *text = json_dumps(ja, JSON_COMPACT | JSON_SORT_KEYS);
	T_EQ_INT(parse(text, &b, err, sizeof err), 0);
	json_t *jb = rt_manifest_to_json(&b, 1);
	T_CHECK(json_equal(ja, jb));
	T_CHECK(b.idle_timeout_s == 2.5 && b.device_index == 7 && b.traffic.n == 3);
	T_CHECK(memcmp(&a.traffic, &b.traffic, sizeof a.traffic) == 0);
	/* integral seconds come back as integers; traffic only when asked */
	T_CHECK(json_is_integer(json_object_get(ja, "timeout_s")));
	T_CHECK(json_is_real(json_object_get(ja, "idle_timeout_s")));
	json_t *nt = rt_manifest_to_json(&a, 0);
	T_CHECK(json_object_get(nt, "traffic") == NULL);
	free(text);
	json_decref(ja);
	json_decref(jb);
	json_decref(nt);
	/* defaults are spelled out; echo without snapshot has no "snapshot" key */
	T_EQ_INT(parse("{\"kind\":\"echo\"}", &a, err, sizeof err), 0);
	ja = rt_manifest_to_json(&a, 1);
	text = json_dumps(ja, JSON_COMPACT | JSON_SORT_KEYS);
	T_EQ_STR(text, "{\"concurrency\":8,\"device\":\"auto\",\"idle_timeout_s\":30,\"kind\":\"echo\","
		 "\"max_batch\":8,\"max_batch_delay_us\":500,\"max_queue\":64,\"min_scale\":0,"
		 "\"prefix_caching\":true,\"timeout_s\":60}");
	free(text);
	json_decref(ja);
}

static void test_names(void)
{
	char err[256];
	char n63[64], n64[65];
	memset(n63, 'a', 63);
	n63[63] = 0;
	memset(n64, 'b', 64);
	n64[64] = 0;
	const char *good[] = {"a", "0", "my-fn", "a1-b2-c3", "a--b", n63};
	const char *bad[] = {"", "-a", "a-", "-", "A", "Fn", "a_b", "a.b", "a b", "a/b", "caf\xc3\xa9", n64};
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
		T_EQ_INT(rt_manifest_name_valid(good[i], err, sizeof err), 0);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		err[0] = 0;
		T_EQ_INT(rt_manifest_name_valid(bad[i], err, sizeof err), -EINVAL);
		T_CHECK(strstr(err, "function name") != NULL);
	}
	T_EQ_INT(rt_manifest_name_valid(NULL, err, sizeof err), -EINVAL);
}

static void touch(const char *dir, const char *name)
{
	char p[PATH_MAX];
	snprintf(p, sizeof p, "%s/%s", dir, name);
	FILE *f = fopen(p, "w");
	T_CHECK(f != NULL);
	if (f) {
		fputs("x", f);
		fclose(f);
	}
}

static void test_resolve(void)
{
	char rbase[PATH_MAX], base[1024], data[1200], snaps[1200], root[1200], root2[1200], outside[1200],
	     p[PATH_MAX], q[PATH_MAX], res[PATH_MAX], want[PATH_MAX], err[512];
	T_CHECK(realpath(t_tmpdir(), rbase) != NULL);
	snprintf(base, sizeof base, "%.1000s", rbase);
	snprintf(data, sizeof data, "%s/data", base);
	snprintf(snaps, sizeof snaps, "%s/data/snapshots", base);
	snprintf(root, sizeof root, "%s/models", base);
	snprintf(root2, sizeof root2, "%s/models2", base);
	snprintf(outside, sizeof outside, "%s/outside", base);
	mkdir(data, 0755);
	mkdir(snaps, 0755);
	mkdir(root, 0755);
	mkdir(root2, 0755);
	mkdir(outside, 0755);
	touch(snaps, "m.thaw");
	touch(root, "w.thaw");
	touch(root2, "x.thaw");
	touch(outside, "secret.thaw");
	snprintf(p, sizeof p, "%s/sub", snaps);
	mkdir(p, 0755);
	snprintf(p, sizeof p, "%s/secret.thaw", outside);
	snprintf(q, sizeof q, "%s/evil", snaps);
	T_EQ_INT(symlink(p, q), 0);
	snprintf(q, sizeof q, "%s/link", root);
	T_EQ_INT(symlink(outside, q), 0);
	snprintf(p, sizeof p, "%s/w.thaw", root);
	snprintf(q, sizeof q, "%s/good", snaps);
	T_EQ_INT(symlink(p, q), 0);   /* a link from snapshots into an allowed root is fine */
	const char *roots[] = {root, "relative/ignored"};
	size_t nr = 2;
#define RESOLVE(s) rt_manifest_resolve_snapshot(data, roots, nr, (s), res, sizeof res, err, sizeof err)

	T_EQ_INT(RESOLVE("m.thaw"), 0);
	snprintf(want, sizeof want, "%s/m.thaw", snaps);
	T_EQ_STR(res, want);
	snprintf(p, sizeof p, "%s/./m.thaw", snaps);
	T_EQ_INT(RESOLVE(p), 0);
	T_EQ_STR(res, want);
	snprintf(p, sizeof p, "%s/w.thaw", root);
	T_EQ_INT(RESOLVE(p), 0);
	T_EQ_STR(res, p);
	T_EQ_INT(RESOLVE("good"), 0);
	T_EQ_STR(res, p);
	/* escapes */
	snprintf(p, sizeof p, "%s/../outside/secret.thaw", root);
	T_EQ_INT(RESOLVE(p), -EACCES);
	T_CHECK(strstr(err, "field 'snapshot'") && strstr(err, "outside"));
	snprintf(p, sizeof p, "%s/secret.thaw", outside);
	T_EQ_INT(RESOLVE(p), -EACCES);
	T_EQ_INT(RESOLVE("evil"), -EACCES);
	snprintf(p, sizeof p, "%s/link/secret.thaw", root);
	T_EQ_INT(RESOLVE(p), -EACCES);
	snprintf(p, sizeof p, "%s/x.thaw", root2);   /* "models2" is not under "models" */
	T_EQ_INT(RESOLVE(p), -EACCES);
	T_EQ_INT(RESOLVE("/etc/passwd"), -EACCES);
	T_EQ_INT(RESOLVE("../outside/secret.thaw"), -EACCES);
	T_EQ_INT(RESOLVE("sub/m.thaw"), -EACCES);
	T_EQ_INT(RESOLVE(".."), -EACCES);
	T_EQ_INT(RESOLVE("."), -EACCES);
	/* missing files: ENOENT inside the roots, EACCES (no probing) outside */
	T_EQ_INT(RESOLVE("missing.thaw"), -ENOENT);
	T_CHECK(strstr(err, "does not exist") != NULL);
	snprintf(p, sizeof p, "%s/missing.thaw", root);
	T_EQ_INT(RESOLVE(p), -ENOENT);
	snprintf(p, sizeof p, "%s/missing.thaw", outside);
	T_EQ_INT(RESOLVE(p), -EACCES);
	char err_missing[512];
	snprintf(err_missing, sizeof err_missing, "%s", err);
	snprintf(p, sizeof p, "%s/secret.thaw", outside);
	T_EQ_INT(RESOLVE(p), -EACCES);
	/* existing and missing files outside read alike (no probing the file system) */
	T_CHECK(strstr(err_missing, "is outside") && strstr(err, "is outside"));
	T_EQ_INT(RESOLVE("/nonexistent-dir/x.thaw"), -EACCES);
	/* not a file, empty, too small a buffer */
	T_EQ_INT(RESOLVE("sub"), -EINVAL);
	T_EQ_INT(RESOLVE(""), -EINVAL);
	char tiny[8];
	T_EQ_INT(rt_manifest_resolve_snapshot(data, roots, nr, "m.thaw", tiny, sizeof tiny, err,
					      sizeof err), -ENAMETOOLONG);
	/* no allowed roots: only DATA/snapshots */
	T_EQ_INT(rt_manifest_resolve_snapshot(data, NULL, 0, "m.thaw", res, sizeof res, err, sizeof err), 0);
	snprintf(p, sizeof p, "%s/w.thaw", root);
	T_EQ_INT(rt_manifest_resolve_snapshot(data, NULL, 0, p, res, sizeof res, err, sizeof err), -EACCES);
	/* a relative data directory */
	char cwd[PATH_MAX];
	T_CHECK(getcwd(cwd, sizeof cwd) != NULL);
	T_EQ_INT(chdir(base), 0);
	T_EQ_INT(rt_manifest_resolve_snapshot("data", NULL, 0, "m.thaw", res, sizeof res, err, sizeof err), 0);
	T_EQ_STR(res, want);
	T_EQ_INT(chdir(cwd), 0);
#undef RESOLVE
}

/* "rate_limit": per-caller invocation limit; omitted from the JSON when none */
static void test_rate_limit(void)
{
	rt_manifest a, b;
	char err[256];
	T_EQ_INT(parse("{\"kind\":\"echo\"}", &a, err, sizeof err), 0);
	T_CHECK(a.rate_limit_rps == 0 && a.rate_limit_burst == 0);
	T_EQ_INT(parse("{\"kind\":\"echo\",\"rate_limit\":\"10/s,20\"}", &a, err, sizeof err), 0);
	T_CHECK(a.rate_limit_rps == 10 && a.rate_limit_burst == 20);
	json_t *j = rt_manifest_to_json(&a, 0);
	T_EQ_STR(json_string_value(json_object_get(j, "rate_limit")), "10/s,20");
	char *text = json_dumps(j, JSON_COMPACT);
	T_EQ_INT(parse(text, &b, err, sizeof err), 0);
	T_CHECK(b.rate_limit_rps == 10 && b.rate_limit_burst == 20);
	free(text);
	json_decref(j);
	T_EQ_INT(parse("{\"kind\":\"echo\",\"rate_limit\":\"0.5\"}", &a, err, sizeof err), 0);
	T_CHECK(a.rate_limit_rps == 0.5 && a.rate_limit_burst == 1);
	T_EQ_INT(parse("{\"kind\":\"echo\",\"rate_limit\":\"off\"}", &a, err, sizeof err), 0);
	j = rt_manifest_to_json(&a, 0);
	T_CHECK(json_object_get(j, "rate_limit") == NULL);
	json_decref(j);
	static const char *bad[] = {"{\"kind\":\"echo\",\"rate_limit\":10}",
				    "{\"kind\":\"echo\",\"rate_limit\":\"10/m\"}",
				    "{\"kind\":\"echo\",\"rate_limit\":\"-1\"}",
				    "{\"kind\":\"echo\",\"rate_limit\":\"5,0\"}",
				    "{\"kind\":\"echo\",\"rate_limit\":\"2000000/s\"}"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		T_EQ_INT(parse(bad[i], &a, err, sizeof err), -EINVAL);
		T_CHECK(strstr(err, "field 'rate_limit'") != NULL);
	}
}

/* "audit": payload logging is opt-in per function, validated, omitted when off */
static void test_audit_field(void)
{
	rt_manifest a, b;
	char err[256];
	T_EQ_INT(parse("{\"kind\":\"echo\"}", &a, err, sizeof err), 0);
	T_EQ_INT(a.audit_payloads, 0);
	T_EQ_INT(parse("{\"kind\":\"echo\",\"audit\":{\"payloads\":true}}", &a, err, sizeof err), 0);
	T_EQ_INT(a.audit_payloads, 1);
	T_EQ_INT(a.audit_payload_max, 4096);
	T_EQ_INT(parse("{\"kind\":\"echo\",\"audit\":{\"payloads\":true,\"max_bytes\":100}}", &a, err,
		       sizeof err), 0);
	T_EQ_INT(a.audit_payload_max, 100);
	json_t *j = rt_manifest_to_json(&a, 0);
	char *text = json_dumps(j, JSON_COMPACT);
	T_CHECK(text && strstr(text, "\"audit\":{\"payloads\":true,\"max_bytes\":100}") != NULL);
	T_EQ_INT(parse(text, &b, err, sizeof err), 0);
	T_CHECK(b.audit_payloads == 1 && b.audit_payload_max == 100);
	free(text);
	json_decref(j);
	T_EQ_INT(parse("{\"kind\":\"echo\",\"audit\":{\"payloads\":false}}", &a, err, sizeof err), 0);
	j = rt_manifest_to_json(&a, 0);
	T_CHECK(json_object_get(j, "audit") == NULL);
	json_decref(j);
	static const char *bad[] = {"{\"kind\":\"echo\",\"audit\":true}",
				    "{\"kind\":\"echo\",\"audit\":{\"payloads\":1}}",
				    "{\"kind\":\"echo\",\"audit\":{\"payloads\":true,\"max_bytes\":0}}",
				    "{\"kind\":\"echo\",\"audit\":{\"payloads\":true,\"max_bytes\":65537}}",
				    "{\"kind\":\"echo\",\"audit\":{\"payload\":true}}"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		T_EQ_INT(parse(bad[i], &a, err, sizeof err), -EINVAL);
		T_CHECK(strstr(err, "field 'audit") != NULL);
	}
}

/* plugin kinds: the manifest syntax and the path rules (roots, realpath, .so) */
static void test_plugin_kind(void)
{
	rt_manifest m;
	char err[512], res[4096], p[1024], q[1024];
	T_EQ_INT(parse("{\"kind\":\"plugin:/opt/k/libx.so\",\"snapshot\":\"m.thaw\"}", &m, err,
		       sizeof err), 0);
	T_EQ_STR(m.kind, "plugin:/opt/k/libx.so");
	T_EQ_STR(rt_manifest_plugin_path(m.kind), "/opt/k/libx.so");
	T_CHECK(rt_manifest_plugin_path("mlp") == NULL);
	T_CHECK(parse("{\"kind\":\"plugin:libx.so\",\"snapshot\":\"m\"}", &m, err, sizeof err) < 0);
	T_CHECK(strstr(err, "plugin:/absolute/path/lib.so") != NULL);
	T_CHECK(parse("{\"kind\":\"plugin:/opt/libx.txt\",\"snapshot\":\"m\"}", &m, err, sizeof err) < 0);
	T_CHECK(parse("{\"kind\":\"plugin:\",\"snapshot\":\"m\"}", &m, err, sizeof err) < 0);
	/* a kind name is still at most 63 characters */
	T_CHECK(parse("{\"kind\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\","
		      "\"snapshot\":\"m\"}", &m, err, sizeof err) < 0);
	/* resolving */
	const char *dir = t_tmpdir();
	char root[900], outside[900];
	snprintf(root, sizeof root, "%s/plugroot", dir);
	snprintf(outside, sizeof outside, "%s/plugout", dir);
	T_EQ_INT(mkdir(root, 0755), 0);
	T_EQ_INT(mkdir(outside, 0755), 0);
	snprintf(p, sizeof p, "%s/a.so", root);
	FILE *f = fopen(p, "w");
	if (f)
		fclose(f);
	snprintf(q, sizeof q, "%s/b.so", outside);
	f = fopen(q, "w");
	if (f)
		fclose(f);
	const char *roots[] = {root};
	T_EQ_INT(rt_manifest_resolve_plugin(roots, 1, p, res, sizeof res, err, sizeof err), 0);
	T_EQ_STR(res, p);
	T_EQ_INT(rt_manifest_resolve_plugin(roots, 1, q, res, sizeof res, err, sizeof err), -EACCES);
	T_EQ_INT(rt_manifest_resolve_plugin(NULL, 0, p, res, sizeof res, err, sizeof err), -EACCES);
	T_CHECK(strstr(err, "--plugin-root") != NULL);
	/* a link inside the root that points outside is outside */
	char l[1024];
	snprintf(l, sizeof l, "%s/link.so", root);
	T_EQ_INT(symlink(q, l), 0);
	T_EQ_INT(rt_manifest_resolve_plugin(roots, 1, l, res, sizeof res, err, sizeof err), -EACCES);
	snprintf(l, sizeof l, "%s/../plugout/b.so", root);
	T_EQ_INT(rt_manifest_resolve_plugin(roots, 1, l, res, sizeof res, err, sizeof err), -EACCES);
	snprintf(l, sizeof l, "%s/none.so", root);
	T_EQ_INT(rt_manifest_resolve_plugin(roots, 1, l, res, sizeof res, err, sizeof err), -ENOENT);
	snprintf(l, sizeof l, "%s/none.so", outside);   /* outside: not told whether it exists */
	T_EQ_INT(rt_manifest_resolve_plugin(roots, 1, l, res, sizeof res, err, sizeof err), -EACCES);
	T_EQ_INT(rt_manifest_resolve_plugin(roots, 1, "rel/a.so", res, sizeof res, err, sizeof err), -EINVAL);
	snprintf(l, sizeof l, "%s/dir.so", root);
	T_EQ_INT(mkdir(l, 0755), 0);
	T_EQ_INT(rt_manifest_resolve_plugin(roots, 1, l, res, sizeof res, err, sizeof err), -EINVAL);
}

void t_main(void)
{
	T_RUN(test_defaults);
	T_RUN(test_all_fields);
	T_RUN(test_errors_name_the_field);
	T_RUN(test_round_trip);
	T_RUN(test_names);
	T_RUN(test_resolve);
	T_RUN(test_rate_limit);
	T_RUN(test_audit_field);
	T_RUN(test_plugin_kind);
}

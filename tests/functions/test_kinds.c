/* test_kinds.c — the kind table (built-ins, run-time registration) and the `echo` kind. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tests/t.h"
#include "functions/fn.h"

static void test_registry(void)
{
	T_CHECK(fn_kind_count() >= 3);
	T_EQ_STR(fn_kind_find("echo")->name, "echo");
	T_EQ_STR(fn_kind_find("mlp")->name, "mlp");
	T_EQ_STR(fn_kind_find("llama")->name, "llama");
	T_CHECK(fn_kind_find("nope") == NULL);
	T_CHECK(fn_kind_find(NULL) == NULL);
	T_EQ_INT(fn_kind_register(fn_kind_find("echo")), -EEXIST);
	fn_kind bad = *fn_kind_find("echo");
	bad.abi = 99;
	bad.name = "echo2";
	T_EQ_INT(fn_kind_register(&bad), -EPROTO);
	bad.abi = FN_ABI_VERSION;
	bad.invoke = NULL;
	T_EQ_INT(fn_kind_register(&bad), -EINVAL);
	static fn_kind good;
	good = *fn_kind_find("echo");
	good.name = "echo-copy";
	T_EQ_INT(fn_kind_register(&good), 0);
	T_CHECK(fn_kind_find("echo-copy") == &good);
	char err[256];
	T_EQ_INT(fn_kind_load_so("/nonexistent/kind.so", NULL, err, sizeof err), -ENOENT);
	T_CHECK(strstr(err, "/nonexistent/kind.so") != NULL);
}

/* an ABI 3 table as a kind built against that header lays it out: it ends at hf_model_types
 * (a static object, so that reading past it is a global-buffer-overflow under ASan) */
typedef struct kind_v3 {
	int abi;
	const char *name, *summary;
	int (*load)(const fn_load_args *args, void **state, fn_error *err);
	int (*invoke)(void *state, fn_call *calls, size_t n);
	void (*release)(void *state);
	int (*v2_sig)(const fn_load_args *args, fn_v2_sig *sig, fn_error *err);
	const char *const *hf_model_types;
} kind_v3;

static const char *const v3_types[] = {"v3model", NULL};
static kind_v3 v3;

static int seq_add_any(void *state, fn_call *call) { (void)state; (void)call; return 0; }
static int seq_step_any(void *state, fn_step *st) { (void)state; st->n_done = 0; st->held = 0; return 0; }

/* ABI 3 kinds load as kinds without sequence operations; ABI 4 needs both or neither */
static void test_abi_versions(void)
{
	const fn_kind *echo = fn_kind_find("echo");
	v3 = (kind_v3){.abi = 3, .name = "echo-v3", .summary = "ABI 3 table", .load = echo->load,
		       .invoke = echo->invoke, .release = echo->release, .hf_model_types = v3_types};
	T_EQ_INT(fn_kind_register((const fn_kind *)&v3), 0);
	const fn_kind *k = fn_kind_find("echo-v3");
	T_CHECK(k != NULL && (const void *)k != (const void *)&v3);   /* a full copy */
	if (k) {
		T_EQ_INT(k->abi, 3);
		T_CHECK(k->invoke == echo->invoke && k->release == echo->release);
		T_CHECK(k->seq_add == NULL && k->seq_step == NULL);
		T_CHECK(fn_kind_for_model_type("v3model") == k);
		fn_error e;
		json_t *in = json_pack("{s:i}", "a", 1);
		json_t *out = fn_invoke_one(k, NULL, in, &e);
		T_CHECK(out && json_equal(out, in));
		json_decref(out);
		json_decref(in);
	}
	T_EQ_INT(fn_kind_register((const fn_kind *)&v3), -EEXIST);
	/* versions outside 3..4 */
	static fn_kind other;
	other = *echo;
	other.name = "echo-abi";
	other.abi = 2;
	T_EQ_INT(fn_kind_register(&other), -EPROTO);
	other.abi = FN_ABI_VERSION + 1;
	T_EQ_INT(fn_kind_register(&other), -EPROTO);
	/* ABI 4: one sequence operation without the other is incomplete */
	other.abi = FN_ABI_VERSION;
	other.seq_add = seq_add_any;
	T_EQ_INT(fn_kind_register(&other), -EINVAL);
	other.seq_add = NULL;
	other.seq_step = seq_step_any;
	T_EQ_INT(fn_kind_register(&other), -EINVAL);
	other.seq_add = seq_add_any;
	T_EQ_INT(fn_kind_register(&other), 0);
	T_CHECK(fn_kind_find("echo-abi") == &other);
}

/* builds src into DIR/name.so; 0, or -1 when no compiler works */
static int build_so(const char *name, const char *src, char *so, size_t cap)
{
	const char *top = getenv("THAW_SRC") ? getenv("THAW_SRC") : ".";
	char c[1024], cmd[4096];
	snprintf(c, sizeof c, "%s/%s.c", t_tmpdir(), name);
	snprintf(so, cap, "%s/%s.so", t_tmpdir(), name);
	FILE *f = fopen(c, "w");
	if (!f)
		return -1;
	fputs(src, f);
	fclose(f);
	snprintf(cmd, sizeof cmd, "${CC:-cc} -shared -fPIC -I%s -o %s %s -ljansson 2>&1", top, so, c);
	return system(cmd) == 0 ? 0 : -1;
}

/* bad shared objects: each refused with its own errno and a message that says why */
static void test_plugin_bad(void)
{
	char so[1024], err[512];
	/* built against ABI 1 (the v1 invoke signature) */
	if (build_so("v1", "#include \"functions/fn.h\"\n"
		     "static int ld(const fn_load_args *a, void **s, fn_error *e) { *s = 0; return 0; }\n"
		     "static int inv(void *s, json_t *const *in, json_t **out, fn_error *e, size_t n)"
		     " { return 0; }\n"
		     "static void rel(void *s) { (void)s; }\n"
		     "static const fn_kind k = {1, \"v1-kind\", \"old\", ld, (void *)inv, rel};\n"
		     "const fn_kind *thaw_fn_kind(void) { return &k; }\n", so, sizeof so) < 0)
		T_SKIP("no C compiler to build plugins");
	T_EQ_INT(fn_kind_load_so(so, NULL, err, sizeof err), -EPROTO);
	T_CHECK(strstr(err, "ABI 1") && strstr(err, "rebuild"));
	T_CHECK(fn_kind_find("v1-kind") == NULL);
	/* no thaw_fn_kind symbol */
	T_EQ_INT(build_so("nosym", "int thaw_something_else(void) { return 1; }\n", so, sizeof so), 0);
	T_EQ_INT(fn_kind_load_so(so, NULL, err, sizeof err), -ENOSYS);
	T_CHECK(strstr(err, "thaw_fn_kind") != NULL);
	/* thaw_fn_kind returns NULL */
	T_EQ_INT(build_so("nullk", "#include <stddef.h>\nconst void *thaw_fn_kind(void) { return NULL; }\n",
			  so, sizeof so), 0);
	T_EQ_INT(fn_kind_load_so(so, NULL, err, sizeof err), -ENOSYS);
	/* incomplete kind (no invoke) */
	T_EQ_INT(build_so("noinv", "#include \"functions/fn.h\"\n"
			  "static int ld(const fn_load_args *a, void **s, fn_error *e) { return 0; }\n"
			  "static void rel(void *s) { (void)s; }\n"
			  "static const fn_kind k = {FN_ABI_VERSION, \"noinv\", \"x\", ld, NULL, rel};\n"
			  "const fn_kind *thaw_fn_kind(void) { return &k; }\n", so, sizeof so), 0);
	T_EQ_INT(fn_kind_load_so(so, NULL, err, sizeof err), -EINVAL);
	T_CHECK(strstr(err, "incomplete") != NULL);
	/* not a shared object at all */
	snprintf(so, sizeof so, "%s/text.so", t_tmpdir());
	FILE *f = fopen(so, "w");
	T_CHECK(f != NULL);
	if (f) {
		fputs("not an ELF file\n", f);
		fclose(f);
	}
	T_EQ_INT(fn_kind_load_so(so, NULL, err, sizeof err), -ENOEXEC);
	T_CHECK(strstr(err, "cannot load plugin") != NULL);
}

/* echo hands back the call's headers, untouched and in order, when asked */
static void test_echo_headers(void)
{
	const fn_kind *k = fn_kind_find("echo");
	fn_header h[] = {{"X-Trace", "  a b "}, {"content-type", "application/json"},
			 {"X-Multi", "1"}, {"X-Multi", "2"}};
	fn_call c = {.in = json_loads("{\"echo_headers\": true}", 0, NULL), .headers = h,
		     .n_headers = 4};
	T_EQ_INT(fn_call_run(k, NULL, &c), 0);
	json_t *hs = json_object_get(c.out, "headers");
	T_EQ_STR(json_string_value(json_object_get(hs, "X-Trace")), "  a b ");
	T_EQ_STR(json_string_value(json_object_get(hs, "content-type")), "application/json");
	T_EQ_INT(json_array_size(json_object_get(hs, "X-Multi")), 2);
	T_EQ_STR(json_string_value(json_array_get(json_object_get(hs, "X-Multi"), 1)), "2");
	T_EQ_INT(json_object_size(hs), 3);
	json_decref(c.out);
	/* not asked: the input back as it was */
	json_t *plain = json_loads("{\"echo_headers\": false}", 0, NULL);
	fn_call d = {.in = plain, .headers = h, .n_headers = 4};
	T_EQ_INT(fn_call_run(k, NULL, &d), 0);
	T_CHECK(json_equal(d.out, plain));
	json_decref(d.out);
	json_decref(plain);
	json_decref((json_t *)c.in);
}

static void test_echo(void)
{
	const fn_kind *k = fn_kind_find("echo");
	void *st = NULL;
	fn_error err;
	fn_load_args a = {NULL, NULL, 0, NULL};
	T_EQ_INT(k->load(&a, &st, &err), 0);
	json_t *in = json_loads("{\"a\": [1, 2, {\"b\": \"c\"}], \"d\": null}", 0, NULL);
	json_t *out = fn_invoke_one(k, st, in, &err);
	T_CHECK(out && json_equal(in, out) && out != in);
	json_decref(in);
	json_decref(out);
	k->release(st);
}

/* a kind built as a shared object against fn.h alone, loaded with fn_kind_load_so */
static void test_plugin_so(void)
{
	const char *src = getenv("THAW_SRC") ? getenv("THAW_SRC") : ".";
	char c[1024], so[1024], cmd[4096];
	snprintf(c, sizeof c, "%s/plugin.c", t_tmpdir());
	snprintf(so, sizeof so, "%s/plugin.so", t_tmpdir());
	FILE *f = fopen(c, "w");
	T_CHECK(f != NULL);
	if (!f)
		return;
	fputs("#include \"functions/fn.h\"\n"
	      "static int ld(const fn_load_args *a, void **s, fn_error *e) { *s = 0; return 0; }\n"
	      "static int inv(void *s, fn_call *c, size_t n) {\n"
	      "  for (size_t i = 0; i < n; i++) { c[i].err.status = 0; c[i].err.msg[0] = 0;\n"
	      "    c[i].out = json_pack(\"{s:b}\", \"plugin\", 1); }\n"
	      "  return 0; }\n"
	      "static void rel(void *s) { (void)s; }\n"
	      "static const fn_kind k = {FN_ABI_VERSION, \"plugin-test\", \"test\", ld, inv, rel};\n"
	      "const fn_kind *thaw_fn_kind(void) { return &k; }\n", f);
	fclose(f);
	snprintf(cmd, sizeof cmd, "${CC:-cc} -shared -fPIC -I%s -o %s %s -ljansson 2>&1", src, so, c);
	if (system(cmd) != 0)
		T_SKIP("no C compiler to build the plugin");
	char err[256] = "";
	const fn_kind *got = NULL;
	int rc = fn_kind_load_so(so, &got, err, sizeof err);
	if (rc)
		fprintf(stderr, "  %s\n", err);
	T_EQ_INT(rc, 0);
	const fn_kind *k = fn_kind_find("plugin-test");
	T_CHECK(k != NULL && k == got);
	if (!k)
		return;
	fn_error e;
	void *st = NULL;
	fn_load_args a = {NULL, NULL, 0, NULL};
	T_EQ_INT(k->load(&a, &st, &e), 0);
	json_t *in = json_object(), *out = fn_invoke_one(k, st, in, &e);
	T_CHECK(out && json_is_true(json_object_get(out, "plugin")));
	json_decref(in);
	json_decref(out);
	k->release(st);
	/* the same path again: the kind already loaded */
	got = NULL;
	T_EQ_INT(fn_kind_load_so(so, &got, err, sizeof err), 0);
	T_CHECK(got == k);
	/* another object with the same kind name: refused */
	char so2[1100];
	snprintf(so2, sizeof so2, "%s/plugin2.so", t_tmpdir());
	snprintf(cmd, sizeof cmd, "cp %s %s", so, so2);
	T_EQ_INT(system(cmd), 0);
	T_EQ_INT(fn_kind_load_so(so2, NULL, err, sizeof err), -EEXIST);
}

void t_main(void)
{
	T_RUN(test_registry);
	T_RUN(test_abi_versions);
	T_RUN(test_echo);
	T_RUN(test_plugin_so);
	T_RUN(test_plugin_bad);
	T_RUN(test_echo_headers);
}

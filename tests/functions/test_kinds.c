/* test_kinds.c — the kind table (built-ins, run-time registration) and the `echo` kind. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
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
	T_EQ_INT(fn_kind_register(&bad), -EINVAL);
	static fn_kind good;
	good = *fn_kind_find("echo");
	good.name = "echo-copy";
	T_EQ_INT(fn_kind_register(&good), 0);
	T_CHECK(fn_kind_find("echo-copy") == &good);
	char err[256];
	T_CHECK(fn_kind_load_so("/nonexistent/kind.so", err, sizeof err) < 0);
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
	      "static int inv(void *s, json_t *const *in, json_t **out, fn_error *e, size_t n) {\n"
	      "  for (size_t i = 0; i < n; i++) { e[i].status = 0; e[i].msg[0] = 0;\n"
	      "    out[i] = json_pack(\"{s:b}\", \"plugin\", 1); }\n"
	      "  return 0; }\n"
	      "static void rel(void *s) { (void)s; }\n"
	      "static const fn_kind k = {FN_ABI_VERSION, \"plugin-test\", \"test\", ld, inv, rel};\n"
	      "const fn_kind *thaw_fn_kind(void) { return &k; }\n", f);
	fclose(f);
	snprintf(cmd, sizeof cmd, "${CC:-cc} -shared -fPIC -I%s -o %s %s -ljansson 2>&1", src, so, c);
	if (system(cmd) != 0)
		T_SKIP("no C compiler to build the plugin");
	char err[256] = "";
	int rc = fn_kind_load_so(so, err, sizeof err);
	if (rc)
		fprintf(stderr, "  %s\n", err);
	T_EQ_INT(rc, 0);
	const fn_kind *k = fn_kind_find("plugin-test");
	T_CHECK(k != NULL);
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
	T_EQ_INT(fn_kind_load_so(so, err, sizeof err), -EEXIST);   /* the name is taken now */
}

void t_main(void)
{
	T_RUN(test_registry);
	T_RUN(test_echo);
	T_RUN(test_plugin_so);
}

/* test_kinds.c — the kind table (built-ins, run-time registration) and the `echo` kind. */
#include <errno.h>
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

void t_main(void)
{
	T_RUN(test_registry);
	T_RUN(test_echo);
}

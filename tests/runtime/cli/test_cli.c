/* test_cli.c — rt_cli helpers: help flags, sizes in binary units, shortest round-trip reals,
 * the JSON printer (parsed back and compared with jansson's own tree), and how the CLI picks
 * the server URL from --url, $THAW_URL, $HOST / $PORT. */
#include <math.h>
#include <stdlib.h>
#include "tests/t.h"
#include "runtime/cli/rt_cli.h"
#include "runtime/cli/rt_client.h"

static void test_is_help(void)
{
	T_CHECK(rt_cli_is_help("--help"));
	T_CHECK(rt_cli_is_help("-h"));
	T_CHECK(!rt_cli_is_help("--helpx"));
	T_CHECK(!rt_cli_is_help(NULL));
}

static void test_fmt_bytes(void)
{
	char b[32];
	static const struct { double v; const char *want; } cases[] = {
		{0, "0 B"}, {1, "1 B"}, {1023, "1023 B"}, {1024, "1.00 KiB"}, {9984, "9.75 KiB"},
		{13135, "12.8 KiB"}, {1572864, "1.50 MiB"}, {131072, "128 KiB"},
		{1048575, "1.00 MiB"},        /* 1023.999 KiB rounds up a unit, not to "1024 KiB" */
		{10.0 * 1024 * 1024 * 1024, "10.0 GiB"}, {80e9, "74.5 GiB"},
		{1125899906842624.0 * 3, "3.00 PiB"}, {-1, "-"}, {NAN, "-"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		T_EQ_STR(rt_cli_fmt_bytes(cases[i].v, b, sizeof b), cases[i].want);
}

static void test_json_print(void)
{
	const char *in = "{\"lr\":0.003,\"n\":-7,\"s\":\"a\\\"\\n\\u00e9\\u0000z\",\"ok\":true,"
			 "\"no\":false,\"x\":null,\"a\":[1,2.5,[],{}],\"o\":{\"k\":[{\"d\":1e300}]}}";
	json_t *v = json_loads(in, JSON_ALLOW_NUL, NULL);
	T_CHECK(v != NULL);
	char path[600];
	snprintf(path, sizeof path, "%s/out.json", t_tmpdir());
	for (int indent = 0; indent <= 2; indent += 2) {
		FILE *f = fopen(path, "w");
		T_EQ_INT(rt_cli_json_print(f, v, indent), 0);
		fclose(f);
		char *text = t_read_file(path, NULL);
		json_t *back = text ? json_loads(text, JSON_ALLOW_NUL, NULL) : NULL;
		T_CHECK(back && json_equal(back, v));
		T_CHECK(text && strstr(text, "0.003") && !strstr(text, "0.0030000000000000001"));
		if (indent == 0)
			T_CHECK(text && strncmp(text, "{\"lr\":0.003,\"n\":-7,", 19) == 0 &&
				strchr(text, '\n') == text + strlen(text) - 1);
		else
			T_CHECK(text && strncmp(text, "{\n  \"lr\": 0.003,\n  \"n\": -7,", 27) == 0);
		json_decref(back);
		free(text);
	}
	json_decref(v);
}

static void test_pick_url(void)
{
	unsetenv("THAW_URL");
	unsetenv("PORT");
	unsetenv("HOST");
	T_EQ_STR(rt_client_pick_url(NULL), RT_CLIENT_DEFAULT_URL);
	setenv("PORT", "9091", 1);
	T_EQ_STR(rt_client_pick_url(NULL), "http://127.0.0.1:9091");
	setenv("HOST", "0.0.0.0", 1);
	T_EQ_STR(rt_client_pick_url(NULL), "http://127.0.0.1:9091");
	setenv("HOST", "::", 1);
	T_EQ_STR(rt_client_pick_url(NULL), "http://[::1]:9091");
	setenv("HOST", "10.1.2.3", 1);
	T_EQ_STR(rt_client_pick_url(NULL), "http://10.1.2.3:9091");
	unsetenv("PORT");
	T_EQ_STR(rt_client_pick_url(NULL), "http://10.1.2.3:8080");
	/* THAW_URL and --url come first */
	setenv("THAW_URL", "http://env:1", 1);
	T_EQ_STR(rt_client_pick_url(NULL), "http://env:1");
	T_EQ_STR(rt_client_pick_url("http://flag:2"), "http://flag:2");
	unsetenv("THAW_URL");
	unsetenv("HOST");
}

void t_main(void)
{
	T_RUN(test_is_help);
	T_RUN(test_fmt_bytes);
	T_RUN(test_json_print);
	T_RUN(test_pick_url);
}

/* test_cli.c — rt_cli helpers. */
#include "tests/t.h"
#include "runtime/rt_cli.h"

static void test_is_help(void)
{
	T_CHECK(rt_cli_is_help("--help"));
	T_CHECK(rt_cli_is_help("-h"));
	T_CHECK(!rt_cli_is_help("--helpx"));
	T_CHECK(!rt_cli_is_help(NULL));
}

void t_main(void)
{
	T_RUN(test_is_help);
}

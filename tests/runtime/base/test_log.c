/* test_log.c — rt_json_escape: quoting, control characters, truncation never splits an escape. */
#include "tests/t.h"
#include "runtime/base/rt_log.h"

static void test_escape(void)
{
	char out[64];
	T_EQ_INT(rt_json_escape(out, sizeof out, "plain"), 5);
	T_EQ_STR(out, "plain");
	rt_json_escape(out, sizeof out, "a\"b\\c\nd\te\x01");
	T_EQ_STR(out, "a\\\"b\\\\c\\nd\\te\\u0001");
	/* truncation: a 4-byte buffer holds at most 3 bytes and no half escape */
	char small[4];
	rt_json_escape(small, sizeof small, "ab\"");
	T_EQ_STR(small, "ab");
	rt_json_escape(small, sizeof small, NULL);
	T_EQ_STR(small, "");
}

void t_main(void)
{
	T_RUN(test_escape);
}

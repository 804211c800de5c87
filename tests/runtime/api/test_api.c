/* test_api.c — helpers shared by the HTTP API handlers (runtime/api/rt_api.h): the revision named
 * by Triton-style /versions/{v} routes. */
#include <errno.h>
#include "tests/t.h"
#include "runtime/api/rt_api.h"
#include "runtime/store/rt_manifest.h"

static void test_api_version(void)
{
	uint32_t rev = 77;
	T_EQ_INT(rt_api_version("1", &rev), 0);
	T_EQ_INT(rev, 1);
	T_EQ_INT(rt_api_version("0042", &rev), 0);
	T_EQ_INT(rev, 42);
	T_EQ_INT(rt_api_version("1000000000", &rev), 0);   /* RT_MANIFEST_REV_MAX */
	T_EQ_INT(rev, (int)RT_MANIFEST_REV_MAX);
	const char *bad[] = {"", "0", "000", "-1", "+3", " 3", "3 ", "3x", "x", "1000000001",
			     "99999999999999999999999"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		rev = 77;
		T_EQ_INT(rt_api_version(bad[i], &rev), -EINVAL);
		T_EQ_INT(rev, 77);   /* untouched on error */
	}
	T_EQ_INT(rt_api_version(NULL, &rev), -EINVAL);
}

void t_main(void)
{
	T_RUN(test_api_version);
}

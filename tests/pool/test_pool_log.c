/* test_pool_log.c — the device error log hook (pool/pool_log.h): lines go to the installed
 * hook, formatted and cut to the line limit; NULL restores stderr. And pool_compute: -ENODEV
 * without a GPU; with one, its scratch slots grow on demand, keep their buffer when large
 * enough, and refuse bad slots. */
#include <errno.h>
#include <string.h>
#include "tests/t.h"
#include "pool/pool_compute.h"
#include "pool/pool_gpu.h"
#include "pool/pool_log.h"

static char last[1024];
static int calls;

static void hook(const char *msg)
{
	snprintf(last, sizeof last, "%s", msg);
	calls++;
}

static void test_log_hook(void)
{
	pool_log_set(hook);
	pool_logf("cuda: %s failed: %d", "cudaMalloc(&p, n)", 2);
	T_EQ_INT(calls, 1);
	T_EQ_STR(last, "cuda: cudaMalloc(&p, n) failed: 2");
	char big[2000];
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = 0;
	pool_logf("%s", big);
	T_EQ_INT(calls, 2);
	T_EQ_INT((int)strlen(last), 511);
	pool_log_set(NULL);
	pool_logf("pool_log test: this line goes to stderr");
	T_EQ_INT(calls, 2);
}

static void test_compute(void)
{
	pool_compute *pc = NULL;
	T_EQ_INT(pool_compute_open(-1, &pc), -ENODEV);
	T_CHECK(pc == NULL);
	if (pool_gpu_count() == 0) {
		T_EQ_INT(pool_compute_open(0, &pc), -ENODEV);
		T_SKIP("no GPU");
	}
	T_EQ_INT(pool_compute_open(0, &pc), 0);
	if (!pc)
		return;
	T_EQ_INT(pool_compute_device(pc), 0);
	void *a = NULL, *b = NULL, *c = NULL;
	T_EQ_INT(pool_compute_scratch(pc, 0, 1 << 20, &a), 0);
	T_CHECK(a != NULL);
	T_EQ_INT(pool_compute_scratch(pc, 0, 1000, &b), 0);
	T_CHECK(a == b);   /* large enough: kept */
	T_EQ_INT(pool_compute_scratch(pc, 0, 4 << 20, &c), 0);
	T_CHECK(c != NULL);
	T_EQ_INT(pool_compute_scratch(pc, POOL_COMPUTE_SLOTS, 16, &a), -EINVAL);
	T_EQ_INT(pool_compute_scratch(pc, -1, 16, &a), -EINVAL);
	pool_compute_close(pc);
	pool_compute_close(NULL);
}

void t_main(void)
{
	T_RUN(test_log_hook);
	T_RUN(test_compute);
}

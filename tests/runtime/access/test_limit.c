/* test_limit.c — rt_rate_parse (runtime/base/rt_rate.h): "R/s,B"; rt_limit: token buckets on a fake clock (burst, refill rate,
 * Retry-After), independent keys, and the bounded table (idle buckets swept, fail open). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include "runtime/access/rt_limit.h"
#include "tests/t.h"

#define S 1000000000ull

static void test_parse(void)
{
	rt_rate l;
	T_EQ_INT(rt_rate_parse("10/s,20", &l), 0);
	T_CHECK(l.rate == 10 && l.burst == 20);
	T_EQ_INT(rt_rate_parse("2.5,3", &l), 0);
	T_CHECK(l.rate == 2.5 && l.burst == 3);
	T_EQ_INT(rt_rate_parse("5/s", &l), 0);
	T_CHECK(l.rate == 5 && l.burst == 5);
	T_EQ_INT(rt_rate_parse("0.5", &l), 0);
	T_CHECK(l.rate == 0.5 && l.burst == 1);
	T_EQ_INT(rt_rate_parse("off", &l), 0);
	T_CHECK(l.rate == 0);
	T_EQ_INT(rt_rate_parse("0", &l), 0);
	T_CHECK(l.rate == 0);
	T_EQ_INT(rt_rate_parse("x", &l), -EINVAL);
	T_EQ_INT(rt_rate_parse("-1", &l), -EINVAL);
	T_EQ_INT(rt_rate_parse("10/m", &l), -EINVAL);
	T_EQ_INT(rt_rate_parse("10,0", &l), -EINVAL);
	T_EQ_INT(rt_rate_parse("10,", &l), -EINVAL);
	T_EQ_INT(rt_rate_parse("inf", &l), -EINVAL);
}

static void test_bucket(void)
{
	rt_limiter *L = rt_limiter_new(100);
	rt_rate lim = {.rate = 2, .burst = 4};
	uint64_t t = 1000 * S;
	double ra;
	/* a burst of 4, then refused */
	for (int i = 0; i < 4; i++)
		T_EQ_INT(rt_limiter_take(L, "k", &lim, t, &ra), 0);
	T_EQ_INT(rt_limiter_take(L, "k", &lim, t, &ra), -EAGAIN);
	T_CHECK(fabs(ra - 0.5) < 1e-9);          /* one token at 2/s: 0.5 s */
	/* another key is independent */
	T_EQ_INT(rt_limiter_take(L, "other", &lim, t, &ra), 0);
	/* 0.25 s later: half a token, still refused, 0.25 s to go */
	T_EQ_INT(rt_limiter_take(L, "k", &lim, t + S / 4, &ra), -EAGAIN);
	T_CHECK(fabs(ra - 0.25) < 1e-6);
	/* at 0.5 s exactly one more */
	T_EQ_INT(rt_limiter_take(L, "k", &lim, t + S / 2, &ra), 0);
	T_EQ_INT(rt_limiter_take(L, "k", &lim, t + S / 2, &ra), -EAGAIN);
	/* over 10 s the sustained rate is 2/s: count admissions at 100 tries per second */
	int ok = 0;
	for (int i = 1; i <= 1000; i++)
		ok += rt_limiter_take(L, "k", &lim, t + S / 2 + (uint64_t)i * (S / 100), NULL) == 0;
	T_CHECK(ok >= 19 && ok <= 21);
	/* a long pause refills to the burst, not beyond */
	uint64_t t2 = t + 100 * S;
	int n = 0;
	while (rt_limiter_take(L, "k", &lim, t2, NULL) == 0 && n < 100)
		n++;
	T_EQ_INT(n, 4);
	/* a disabled limit always allows */
	rt_rate off = {0, 0};
	for (int i = 0; i < 1000; i++)
		T_EQ_INT(rt_limiter_take(L, "k", &off, t2, NULL), 0);
	rt_limiter_free(L);
}

static void test_table_bound(void)
{
	rt_limiter *L = rt_limiter_new(3);
	rt_rate lim = {.rate = 1, .burst = 1};
	uint64_t t = 5 * S;
	T_EQ_INT(rt_limiter_take(L, "a", &lim, t, NULL), 0);
	T_EQ_INT(rt_limiter_take(L, "b", &lim, t, NULL), 0);
	T_EQ_INT(rt_limiter_take(L, "c", &lim, t, NULL), 0);
	T_EQ_INT(rt_limiter_count(L), 3);
	/* full of busy buckets: a new key passes untracked, "a" stays limited */
	T_EQ_INT(rt_limiter_take(L, "d", &lim, t, NULL), 0);
	T_EQ_INT(rt_limiter_count(L), 3);
	T_EQ_INT(rt_limiter_take(L, "a", &lim, t, NULL), -EAGAIN);
	/* once they are full again they are swept for the new key */
	T_EQ_INT(rt_limiter_take(L, "d", &lim, t + 2 * S, NULL), 0);
	T_EQ_INT(rt_limiter_count(L), 1);
	T_EQ_INT(rt_limiter_take(L, "d", &lim, t + 2 * S, NULL), -EAGAIN);
	rt_limiter_free(L);
}

void t_main(void)
{
	T_RUN(test_parse);
	T_RUN(test_bucket);
	T_RUN(test_table_bound);
}

/* rt_limit.h — token-bucket rate limits: one bucket per key string ("key:<id>",
 * "ip:<addr>", "fn:<name>:<caller>"), each refilled at rate tokens/s up to burst. Buckets are
 * created on first use and dropped when full again (idle) once the table holds more than its
 * cap. The clock is passed in (nanoseconds) so tests can use a fake one. Loop thread only. */
#ifndef THAW_RT_LIMIT_H
#define THAW_RT_LIMIT_H
#include <stddef.h>
#include <stdint.h>
#include "runtime/base/rt_rate.h"

typedef struct rt_limiter rt_limiter;

/* rt_limiter_new returns a table holding at most max_buckets live buckets, or NULL. */
rt_limiter *rt_limiter_new(size_t max_buckets);
void rt_limiter_free(rt_limiter *l);

/* rt_limiter_take takes one token from the bucket named key under limit lim at time now_ns.
 * 0: allowed; -EAGAIN: over the limit, *retry_after_s (may be NULL) gets the seconds until a
 * token is available. A disabled limit always allows. When the table is full of busy buckets
 * a new key is allowed untracked (fail open) rather than evicting a busy one. */
int rt_limiter_take(rt_limiter *l, const char *key, const rt_rate *lim, uint64_t now_ns,
		    double *retry_after_s);

/* rt_limiter_count reports the number of live buckets (tests). */
size_t rt_limiter_count(const rt_limiter *l);

#endif

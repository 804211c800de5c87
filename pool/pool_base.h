/* pool_base.h — the two helpers every part of thaw shares: the error formatter of functions
 * that return a negative errno with a message, and the clocks. Header-only and in pool/, the
 * lowest part, so that snapshot/, kernels/, functions/ and runtime/ may all include it without
 * an arrow pointing up (design.md: runtime -> functions -> kernels -> pool, runtime -> snapshot
 * -> pool). Parts name them in their own words: rt_errf and rt_clock_* (runtime/base),
 * snap_errf (snapshot/snap_int.h) and fn_errf (functions/fn_kinds.h) are these. */
#ifndef THAW_POOL_BASE_H
#define THAW_POOL_BASE_H
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

/* pool_errf formats a message into err (when err is not NULL and errlen > 0) and returns rc, so
 * that a failure path reads `return pool_errf(err, errlen, -EINVAL, "bad %s", what);`. */
static inline int pool_errf(char *err, size_t errlen, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static inline int pool_errf(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	if (err && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

/* pool_clock_mono_ns is CLOCK_MONOTONIC in nanoseconds: for durations and deadlines. */
static inline uint64_t pool_clock_mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* pool_clock_mono_s is CLOCK_MONOTONIC in seconds. */
static inline double pool_clock_mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* pool_clock_thread_s is the CPU time the calling thread has used, in seconds. */
static inline double pool_clock_thread_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* pool_clock_wall_ms is CLOCK_REALTIME in milliseconds since the Unix epoch: for timestamps
 * that are stored or shown (registry rows, logs, audit lines), never for durations. */
static inline int64_t pool_clock_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif

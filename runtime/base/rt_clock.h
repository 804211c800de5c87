/* rt_clock.h — the runtime's clocks: monotonic for durations, deadlines and timers; wall time
 * (milliseconds since the epoch) for timestamps that are stored or shown; a thread's CPU time. One implementation,
 * shared with the lower parts (pool/pool_base.h). */
#ifndef THAW_RT_CLOCK_H
#define THAW_RT_CLOCK_H
#include <stdint.h>
#include "pool/pool_base.h"

/* rt_clock_mono_ns is CLOCK_MONOTONIC in nanoseconds. */
static inline uint64_t rt_clock_mono_ns(void) { return pool_clock_mono_ns(); }
/* rt_clock_mono_s is CLOCK_MONOTONIC in seconds. */
static inline double rt_clock_mono_s(void) { return pool_clock_mono_s(); }
/* rt_clock_thread_s is the CPU time the calling thread has used, in seconds. */
static inline double rt_clock_thread_s(void) { return pool_clock_thread_s(); }
/* rt_clock_wall_ms is CLOCK_REALTIME in milliseconds since the Unix epoch. */
static inline int64_t rt_clock_wall_ms(void) { return pool_clock_wall_ms(); }

#endif

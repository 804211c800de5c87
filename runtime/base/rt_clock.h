/* rt_clock.h — the monotonic clock every runtime part reads (timers, latencies, deadlines). */
#ifndef THAW_RT_CLOCK_H
#define THAW_RT_CLOCK_H
#include <stdint.h>

/* rt_now_ns returns CLOCK_MONOTONIC in nanoseconds. Any thread. */
uint64_t rt_now_ns(void);

#endif

/* rt_fault.c — test-only fault injection points; see rt_fault.h. Without THAW_TEST_HOOKS (the
 * production build) a point does nothing. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "runtime/base/rt_fault.h"
#include "runtime/base/rt_log.h"

#ifndef THAW_TEST_HOOKS
void rt_fault_point(const char *name)
{
	(void)name;
}
#else
void rt_fault_point(const char *name)
{
	static atomic_int hits;
	const char *want = getenv("THAW_FAULT_PAUSE");
	if (!want)
		return;
	size_t n = strlen(name);
	if (strncmp(want, name, n) != 0 || (want[n] != 0 && want[n] != ':'))
		return;
	int nth = want[n] == ':' ? atoi(want + n + 1) : 1;
	if (atomic_fetch_add(&hits, 1) + 1 != (nth > 0 ? nth : 1))
		return;
	rt_logf(RT_LOG_WARN, "fault point %s: pausing (THAW_FAULT_PAUSE)", name);
	struct timespec ts = {60, 0};
	while (nanosleep(&ts, &ts) < 0)
		;
}
#endif

/* rt_place.h — where a cold start goes: the order in which the scheduler tries a
 * node's devices for an instance that needs `need` bytes of weight memory. Pure logic, no
 * devices: the scheduler fills one rt_place_dev per lane and tries them in the order given,
 * evicting idle instances on a device only when no device has the room free.
 *
 * Rules, in order:
 *   1. the manifest's device filters: "cpu" keeps only the CPU, "cuda:N" only GPU N (pinning
 *      is honoured even when that GPU is full: the caller then evicts there or answers 503),
 *      "auto" keeps every device;
 *   2. a device whose whole budget is smaller than need is never tried;
 *   3. GPUs before the CPU ("auto" only);
 *   4. devices with need bytes free now, then devices where evicting idle instances would
 *      make the room, then the rest;
 *   5. the least busy first: work queued on the lane, calls running or held on its
 *      instances, cold starts under way there (each counts 1);
 *   6. then the most free memory, then the lowest ordinal. */
#ifndef THAW_RT_PLACE_H
#define THAW_RT_PLACE_H
#include <stdint.h>

typedef struct rt_place_dev {
	int gpu;             /* 1 for a GPU (or a fake GPU in tests), 0 for the CPU */
	int ordinal;         /* N of cuda:N; -1 for the CPU */
	uint64_t budget;     /* weight memory budget, bytes */
	uint64_t used;       /* reserved now, bytes */
	uint64_t evictable;  /* bytes held by idle instances that may be evicted */
	int load;            /* rule 5's count */
} rt_place_dev;

enum { RT_PLACE_AUTO = -2, RT_PLACE_CPU = -1 };   /* want: these, or N >= 0 for cuda:N */

/* rt_place_order writes into order[] the indexes of devs[0..n) to try, best first, and returns
 * how many (0: no device may take it — see rt_place_why). */
int rt_place_order(const rt_place_dev *devs, int n, uint64_t need, int want, int *order);

/* rt_place_why explains an empty order: -ENODEV when the wanted device is not on this node,
 * -E2BIG when no allowed device's budget can hold need bytes. */
int rt_place_why(const rt_place_dev *devs, int n, uint64_t need, int want);

#endif

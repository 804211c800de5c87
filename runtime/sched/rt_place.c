/* rt_place.c — see rt_place.h. */
#include <errno.h>
#include "runtime/sched/rt_place.h"

static int allowed(const rt_place_dev *d, int want)
{
	if (want == RT_PLACE_CPU)
		return !d->gpu;
	if (want >= 0)
		return d->gpu && d->ordinal == want;
	return 1;
}

static uint64_t free_now(const rt_place_dev *d)
{
	return d->used < d->budget ? d->budget - d->used : 0;
}

/* 1 when a should be tried before b */
static int before(const rt_place_dev *a, const rt_place_dev *b, uint64_t need)
{
	if (a->gpu != b->gpu)
		return a->gpu;
	int fa = free_now(a) >= need, fb = free_now(b) >= need;
	if (fa != fb)
		return fa;
	int ea = free_now(a) + a->evictable >= need, eb = free_now(b) + b->evictable >= need;
	if (ea != eb)
		return ea;
	if (a->load != b->load)
		return a->load < b->load;
	if (free_now(a) != free_now(b))
		return free_now(a) > free_now(b);
	return a->ordinal < b->ordinal;
}

int rt_place_order(const rt_place_dev *devs, int n, uint64_t need, int want, int *order)
{
	int k = 0;
	for (int i = 0; i < n; i++)
		if (allowed(&devs[i], want) && devs[i].budget >= need)
			order[k++] = i;
	/* insertion sort: n is small (the CPU plus the GPUs of one node) */
	for (int i = 1; i < k; i++) {
		int v = order[i], j = i;
		while (j > 0 && before(&devs[v], &devs[order[j - 1]], need)) {
			order[j] = order[j - 1];
			j--;
		}
		order[j] = v;
	}
	return k;
}

int rt_place_why(const rt_place_dev *devs, int n, uint64_t need, int want)
{
	(void)need;
	for (int i = 0; i < n; i++)
		if (allowed(&devs[i], want))
			return -E2BIG;
	return -ENODEV;
}

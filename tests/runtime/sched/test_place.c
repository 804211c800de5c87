/* test_place.c — rt_place_order: which device a cold start tries first, on a node
 * described by hand (any number of GPUs, their budgets, reservations and load). */
#include <errno.h>
#include "runtime/sched/rt_place.h"
#include "tests/t.h"

#define MIB (1ull << 20)

/* a node: the CPU and n GPUs of budget each, nothing used */
static int node(rt_place_dev *d, int n, uint64_t budget)
{
	d[0] = (rt_place_dev){.gpu = 0, .ordinal = -1, .budget = 64 * 1024 * MIB};
	for (int i = 0; i < n; i++)
		d[1 + i] = (rt_place_dev){.gpu = 1, .ordinal = i, .budget = budget};
	return n + 1;
}

static void test_auto_prefers_gpus_then_cpu(void)
{
	rt_place_dev d[9];
	int order[9];
	int n = node(d, 4, 1024 * MIB);
	T_EQ_INT(rt_place_order(d, n, 100 * MIB, RT_PLACE_AUTO, order), 5);
	for (int i = 0; i < 4; i++)
		T_EQ_INT(order[i], 1 + i);       /* equal GPUs: lowest ordinal first */
	T_EQ_INT(order[4], 0);                   /* the CPU last */
	/* a model larger than every GPU goes to the CPU only */
	T_EQ_INT(rt_place_order(d, n, 2048 * MIB, RT_PLACE_AUTO, order), 1);
	T_EQ_INT(order[0], 0);
}

static void test_spreads_by_load_then_free_memory(void)
{
	rt_place_dev d[9];
	int order[9];
	int n = node(d, 3, 1024 * MIB);
	d[1].load = 2;                           /* cuda:0 busy */
	d[2].used = 500 * MIB;                   /* cuda:1 idle but half full */
	d[3].used = 100 * MIB;                   /* cuda:2 idle, emptier */
	T_EQ_INT(rt_place_order(d, n, 100 * MIB, RT_PLACE_AUTO, order), 4);
	T_EQ_INT(order[0], 3);
	T_EQ_INT(order[1], 2);
	T_EQ_INT(order[2], 1);
	/* a cold start under way counts as load: the next one goes elsewhere */
	d[3].load = 1;
	d[2].load = 0;
	T_EQ_INT(rt_place_order(d, n, 100 * MIB, RT_PLACE_AUTO, order), 4);
	T_EQ_INT(order[0], 2);
}

static void test_free_room_before_eviction(void)
{
	rt_place_dev d[9];
	int order[9];
	int n = node(d, 2, 1024 * MIB);
	/* cuda:0 is idle but full of evictable instances, cuda:1 busy with room: room wins */
	d[1].used = 1000 * MIB;
	d[1].evictable = 1000 * MIB;
	d[2].used = 200 * MIB;
	d[2].load = 5;
	T_EQ_INT(rt_place_order(d, n, 300 * MIB, RT_PLACE_AUTO, order), 3);
	T_EQ_INT(order[0], 2);
	T_EQ_INT(order[1], 1);
	/* neither has room: the one where eviction can make room first */
	d[2].used = 900 * MIB;
	d[2].evictable = 0;
	T_EQ_INT(rt_place_order(d, n, 300 * MIB, RT_PLACE_AUTO, order), 3);
	T_EQ_INT(order[0], 1);
	T_EQ_INT(order[1], 2);
	T_EQ_INT(order[2], 0);
}

static void test_pinning(void)
{
	rt_place_dev d[9];
	int order[9];
	int n = node(d, 8, 80ull * 1024 * MIB);
	d[8].used = 70ull * 1024 * MIB;          /* cuda:7 nearly full: still the only choice */
	T_EQ_INT(rt_place_order(d, n, 1024 * MIB, 7, order), 1);
	T_EQ_INT(order[0], 8);
	T_EQ_INT(rt_place_order(d, n, 1024 * MIB, RT_PLACE_CPU, order), 1);
	T_EQ_INT(order[0], 0);
	/* cuda:8 does not exist on an 8-GPU node */
	T_EQ_INT(rt_place_order(d, n, 1024 * MIB, 8, order), 0);
	T_EQ_INT(rt_place_why(d, n, 1024 * MIB, 8), -ENODEV);
	/* cuda:7 exists but its budget is too small */
	T_EQ_INT(rt_place_order(d, n, 100ull * 1024 * MIB, 7, order), 0);
	T_EQ_INT(rt_place_why(d, n, 100ull * 1024 * MIB, 7), -E2BIG);
}

static void test_one_gpu_and_cpu_only_nodes(void)
{
	rt_place_dev d[2];
	int order[2];
	int n = node(d, 1, 1024 * MIB);
	T_EQ_INT(rt_place_order(d, n, 10 * MIB, RT_PLACE_AUTO, order), 2);
	T_EQ_INT(order[0], 1);
	n = node(d, 0, 0);
	T_EQ_INT(rt_place_order(d, n, 10 * MIB, RT_PLACE_AUTO, order), 1);
	T_EQ_INT(order[0], 0);
	T_EQ_INT(rt_place_order(d, n, 10 * MIB, 0, order), 0);
	T_EQ_INT(rt_place_why(d, n, 10 * MIB, 0), -ENODEV);
}

void t_main(void)
{
	T_RUN(test_auto_prefers_gpus_then_cpu);
	T_RUN(test_spreads_by_load_then_free_memory);
	T_RUN(test_free_room_before_eviction);
	T_RUN(test_pinning);
	T_RUN(test_one_gpu_and_cpu_only_nodes);
}

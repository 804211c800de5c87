/* test_lane.c — rt_lane: work runs on the lane thread in FIFO order, invocations before
 * background work, completions come back on the loop thread, stop drains the queue. */
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>
#include "tests/t.h"
#include "runtime/sched/rt_lane.h"

typedef struct item {
	rt_work w;
	int id;
	pthread_t ran_on;
} item;

static int order[64], norder;
static int done_ids[64], ndone;
static pthread_t loop_thread;
static int done_on_loop = 1;
static rt_lane *g_lane;
static int saw_waiting;
static int all_submitted;   /* set by the test thread once items 0..5 are queued */

static void run_item(rt_lane *l, rt_work *w)
{
	item *it = (item *)w;
	it->ran_on = pthread_self();
	order[norder++] = it->id;
	T_CHECK(rt_lane_dev(l) != NULL);
	if (it->id == 0) {
		/* let the others queue up behind the first: the lane may start item 0 before the test
		 * thread has submitted the rest, so wait for that (a fixed sleep loses the race when
		 * the machine is loaded), then stay busy 50 ms */
		for (int i = 0; i < 30000 && !__atomic_load_n(&all_submitted, __ATOMIC_ACQUIRE); i++)
			usleep(1000);
		T_CHECK(__atomic_load_n(&all_submitted, __ATOMIC_ACQUIRE));
		usleep(50000);
		saw_waiting = rt_lane_has_waiting(l);
	}
}

static void done_item(rt_work *w)
{
	item *it = (item *)w;
	if (!pthread_equal(pthread_self(), loop_thread))
		done_on_loop = 0;
	done_ids[ndone++] = it->id;
}

static void test_order_and_priority(void)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	loop_thread = pthread_self();
	T_EQ_INT(rt_lane_open(&loop, "cpu", 1, &g_lane), 0);
	T_EQ_STR(rt_lane_name(g_lane), "cpu");
	T_CHECK(!rt_lane_is_cuda(g_lane));
	item items[6];
	for (int i = 0; i < 6; i++) {
		memset(&items[i], 0, sizeof items[i]);
		items[i].id = i;
		items[i].w.run = run_item;
		items[i].w.done = done_item;
		/* 1 and 2 are background; 3..5 invocations queued after them must run first */
		items[i].w.cls = (i == 1 || i == 2) ? RT_WORK_BACKGROUND : RT_WORK_INVOKE;
		T_EQ_INT(rt_lane_submit(g_lane, &items[i].w), 0);
	}
	__atomic_store_n(&all_submitted, 1, __ATOMIC_RELEASE);
	while (ndone < 6)
		uv_run(&loop, UV_RUN_ONCE);
	int want[] = {0, 3, 4, 5, 1, 2};
	for (int i = 0; i < 6; i++)
		T_EQ_INT(order[i], want[i]);
	T_CHECK(saw_waiting);
	T_CHECK(done_on_loop);
	for (int i = 0; i < 6; i++) {
		T_CHECK(!pthread_equal(items[i].ran_on, loop_thread));
		T_CHECK(items[i].w.finished_ns >= items[i].w.started_ns);
		T_CHECK(items[i].w.started_ns >= items[i].w.enqueued_ns);
	}
	T_CHECK(rt_lane_busy_ns(g_lane) >= 50000000ull);
	T_EQ_INT(rt_lane_queued(g_lane), 0);
	rt_lane_stop(g_lane);
	uv_run(&loop, UV_RUN_DEFAULT);
	T_EQ_INT(uv_loop_close(&loop), 0);
}

static void test_bad_device(void)
{
	uv_loop_t loop;
	rt_lane *l = NULL;
	uv_loop_init(&loop);
	T_CHECK(rt_lane_open(&loop, "tpu:3", 1, &l) < 0);
	T_CHECK(rt_lane_open(&loop, "cuda:7", 1, &l) < 0);
	uv_run(&loop, UV_RUN_DEFAULT);
	T_EQ_INT(uv_loop_close(&loop), 0);
}

void t_main(void)
{
	T_RUN(test_order_and_priority);
	T_RUN(test_bad_device);
}

/* test_lane.c — rt_lane: work runs on the lane thread in FIFO order, invocations before
 * background work, completions come back on the loop thread, stop drains the queue; active
 * steppers take turns, invocation items queued during a step run before the next step,
 * background items wait until no stepper is active, deliveries run on the loop, a removed
 * stepper gets no more steps. */
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

/* ---- steppers ---- */

static char trace[256];   /* lane thread: one letter per step or item, in order */
static int ntrace;

typedef struct tstepper {
	rt_stepper st;
	char letter;
	int left;                 /* steps still to run */
	int delivered, deliver_off_loop;
	rt_work kick;             /* the item that wakes it */
} tstepper;

static int t_step(rt_lane *l, rt_stepper *sp)
{
	tstepper *t = sp->ud;
	(void)l;
	trace[ntrace++] = t->letter;
	usleep(2000);
	t->left--;
	return (t->left % 2 == 0 ? RT_STEP_DELIVER : 0) | (t->left > 0 ? RT_STEP_MORE : 0);
}

static void t_deliver(rt_stepper *sp)
{
	tstepper *t = sp->ud;
	if (!pthread_equal(pthread_self(), loop_thread))
		t->deliver_off_loop = 1;
	t->delivered++;
}

static void kick_run(rt_lane *l, rt_work *w)
{
	tstepper *t = w->ud;
	rt_lane_stepper_wake(l, &t->st);
}

typedef struct mark {
	rt_work w;
	char letter;
	int done;
	uint64_t steps_at_run;    /* rt_lane_steps when it ran */
} mark;

static void mark_run(rt_lane *l, rt_work *w)
{
	trace[ntrace++] = ((mark *)w)->letter;
	((mark *)w)->steps_at_run = rt_lane_steps(l);
}

static void rm_run(rt_lane *l, rt_work *w)
{
	rt_lane_stepper_remove(l, &((tstepper *)w->ud)->st);
}

static void mark_done(rt_work *w) { ((mark *)w)->done = 1; }

static void stepper_init(tstepper *t, char letter, int steps)
{
	memset(t, 0, sizeof *t);
	t->letter = letter;
	t->left = steps;
	t->st.step = t_step;
	t->st.deliver = t_deliver;
	t->st.ud = t;
	t->kick.cls = RT_WORK_INVOKE;
	t->kick.run = kick_run;
	t->kick.ud = t;
}

static void test_steppers(void)
{
	uv_loop_t loop;
	rt_lane *l;
	uv_loop_init(&loop);
	loop_thread = pthread_self();
	T_EQ_INT(rt_lane_open(&loop, "cpu", 1, &l), 0);
	memset(trace, 0, sizeof trace);
	ntrace = 0;
	tstepper a, b;
	stepper_init(&a, 'a', 20);
	stepper_init(&b, 'b', 6);
	mark bgm = {.w = {.cls = RT_WORK_BACKGROUND, .run = mark_run, .done = mark_done}, .letter = 'J'};
	mark inv = {.w = {.cls = RT_WORK_INVOKE, .run = mark_run, .done = mark_done}, .letter = 'I'};
	T_EQ_INT(rt_lane_submit(l, &a.kick), 0);
	T_EQ_INT(rt_lane_submit(l, &b.kick), 0);
	usleep(5000);   /* a few steps in */
	T_CHECK(rt_lane_has_waiting(l));   /* active steppers count as waiting work */
	T_EQ_INT(rt_lane_submit(l, &bgm.w), 0);
	uint64_t s0 = rt_lane_steps(l);
	T_EQ_INT(rt_lane_submit(l, &inv.w), 0);
	while (!bgm.done)
		uv_run(&loop, UV_RUN_ONCE);
	T_CHECK(inv.done);
	/* 26 steps, the invocation item among them, the background item after the last */
	T_EQ_INT(ntrace, 28);
	T_EQ_INT(trace[ntrace - 1], 'J');
	T_CHECK(strchr(trace, 'I') != NULL);
	T_CHECK(inv.steps_at_run <= s0 + 1);     /* within one step of its arrival */
	T_EQ_INT(bgm.steps_at_run, 26);
	/* a and b alternate while both are active */
	int alternate = 1, na = 0, nb = 0;
	char prev = 0;
	for (int i = 0; i < ntrace - 1; i++) {
		char c = trace[i];
		if (c == 'I')
			continue;
		na += c == 'a';
		nb += c == 'b';
		if (nb < 6 && prev && c == prev)
			alternate = 0;
		prev = c;
	}
	T_CHECK(alternate);
	T_EQ_INT(na, 20);
	T_EQ_INT(nb, 6);
	T_EQ_INT(rt_lane_steps(l), 26);
	/* deliveries on the loop: at least one, at most one per deliver request */
	uv_run(&loop, UV_RUN_NOWAIT);
	T_CHECK(a.delivered >= 1 && a.delivered <= 10);
	T_CHECK(b.delivered >= 1 && b.delivered <= 3);
	T_CHECK(!a.deliver_off_loop && !b.deliver_off_loop);
	T_CHECK(!rt_lane_has_waiting(l));
	/* removed while active: no more steps */
	stepper_init(&a, 'a', 1000);
	a.kick.run = kick_run;
	T_EQ_INT(rt_lane_submit(l, &a.kick), 0);
	usleep(10000);
	rt_work r = {.cls = RT_WORK_INVOKE, .run = rm_run, .ud = &a};
	T_EQ_INT(rt_lane_submit(l, &r), 0);
	usleep(20000);
	int left = a.left;
	usleep(20000);
	T_EQ_INT(a.left, left);
	T_CHECK(left > 0 && left < 1000);
	T_CHECK(!rt_lane_has_waiting(l));
	rt_lane_stop(l);
	uv_run(&loop, UV_RUN_DEFAULT);
	T_EQ_INT(uv_loop_close(&loop), 0);
}

void t_main(void)
{
	T_RUN(test_order_and_priority);
	T_RUN(test_bad_device);
	T_RUN(test_steppers);
}

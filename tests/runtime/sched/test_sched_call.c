/* test_sched_call.c — the scheduler driven with rt_call directly, no HTTP: a real registry,
 * scheduler and libuv loop, the echo kind on the CPU lane. Covers the result (output, served
 * revision, the headers the kind saw, copied at submission), 404 for an unknown function, a
 * full queue (503 with retry_after_s), cancellation through the cancel hook (499, before and
 * after queueing), the caller's deadline (504) and the hook being cleared once answered. The
 * CPU lane is held by a blocking work item so that calls stay queued while the test acts. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include "runtime/base/rt_clock.h"
#include "runtime/sched/rt_lane.h"
#include "runtime/sched/rt_sched.h"
#include "tests/t.h"

typedef struct env {
	uv_loop_t loop;
	char data[1024];
	rt_registry *reg;
	rt_metrics *m;
	rt_sched *s;
} env;

/* deploys name as an echo function (no snapshot) under the manifest text mj */
static int deploy(env *e, const char *name, const char *mj)
{
	char err[512];
	rt_manifest m;
	if (rt_manifest_parse(mj, strlen(mj), NULL, NULL, &m, err, sizeof err) < 0 ||
	    rt_registry_put(e->reg, name, &m, "", NULL, err, sizeof err) < 0) {
		fprintf(stderr, "  deploy %s: %s\n", name, err);
		return -1;
	}
	return 0;
}

static int env_open(env *e)
{
	static int n;
	char err[512];
	memset(e, 0, sizeof *e);
	snprintf(e->data, sizeof e->data, "%s/sched-call-%d", t_tmpdir(), ++n);
	mkdir(e->data, 0755);
	uv_loop_init(&e->loop);
	if (rt_registry_open(e->data, &e->reg, err, sizeof err) < 0) {
		fprintf(stderr, "  registry: %s\n", err);
		return -1;
	}
	if (deploy(e, "echo", "{\"kind\": \"echo\"}") < 0 ||
	    deploy(e, "narrow", "{\"kind\": \"echo\", \"max_queue\": 1, \"timeout_s\": 30}") < 0)
		return -1;
	rt_sched_config sc;
	rt_sched_config_defaults(&sc);
	sc.no_gpu = 1;
	sc.cpu_threads = 1;
	e->m = rt_metrics_new();
	return rt_sched_new(&e->loop, e->reg, e->m, &sc, &e->s) < 0 ? -1 : 0;
}

static int stopped;
static void on_stopped(void *ud) { (void)ud; stopped = 1; }

static void env_close(env *e)
{
	stopped = 0;
	rt_sched_stop(e->s, on_stopped, NULL);
	for (int i = 0; i < 20000 && !stopped; i++)
		uv_run(&e->loop, UV_RUN_ONCE);
	T_CHECK(stopped);
	uv_run(&e->loop, UV_RUN_NOWAIT);
	rt_sched_free(e->s);
	rt_registry_close(e->reg);
	rt_metrics_free(e->m);
	uv_run(&e->loop, UV_RUN_DEFAULT);   /* the handles closed last */
	T_EQ_INT(uv_loop_close(&e->loop), 0);
}

/* the caller's side of the cancel hook */
typedef struct watcher {
	int gone;                  /* the caller gave up before the call was queued */
	rt_call_cancel_fn cancel;  /* registered by the scheduler, NULL when cleared */
	void *arg;
	int cleared;
} watcher;

static int watch(void *ctx, rt_call_cancel_fn cancel, void *arg)
{
	watcher *w = ctx;
	if (!cancel) {
		w->cancel = NULL;
		w->cleared++;
		return w->gone;
	}
	if (w->gone)
		return 1;
	w->cancel = cancel;
	w->arg = arg;
	return 0;
}

/* what a call's done callback saw */
typedef struct result {
	watcher *w;                /* the call's cancel hook, if any */
	int hooked;                /* the hook was still registered when done ran */
	int n;                     /* times done ran */
	int status;                /* 200 or the error's */
	int retry_after_s;
	uint32_t rev;
	json_t *out;               /* a reference of our own */
	char msg[256];
} result;

static void on_done(const rt_call_result *r, void *ud)
{
	result *x = ud;
	x->n++;
	x->hooked = x->w && x->w->cancel;
	x->status = r->out ? 200 : r->err->status;
	x->retry_after_s = r->retry_after_s;
	x->rev = r->rev;
	x->out = json_incref(r->out);
	snprintf(x->msg, sizeof x->msg, "%s", r->err ? r->err->msg : "");
}

static void run_until(env *e, const result *r)
{
	for (int i = 0; i < 20000 && r->n == 0; i++)
		uv_run(&e->loop, UV_RUN_ONCE);
}

/* a work item that holds the CPU lane until released */
typedef struct blocker {
	rt_work w;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int release, done;
} blocker;

static void block_run(rt_lane *l, rt_work *w)
{
	blocker *b = (blocker *)w;
	(void)l;
	pthread_mutex_lock(&b->mu);
	while (!b->release)
		pthread_cond_wait(&b->cv, &b->mu);
	pthread_mutex_unlock(&b->mu);
}

static void block_done(rt_work *w) { ((blocker *)w)->done = 1; }

static int block_lane(env *e, blocker *b)
{
	memset(b, 0, sizeof *b);
	pthread_mutex_init(&b->mu, NULL);
	pthread_cond_init(&b->cv, NULL);
	b->w.cls = RT_WORK_INVOKE;
	b->w.run = block_run;
	b->w.done = block_done;
	return rt_lane_submit(rt_sched_lane_find(e->s, "cpu"), &b->w);
}

static void unblock_lane(env *e, blocker *b)
{
	pthread_mutex_lock(&b->mu);
	b->release = 1;
	pthread_cond_signal(&b->cv);
	pthread_mutex_unlock(&b->mu);
	for (int i = 0; i < 20000 && !b->done; i++)
		uv_run(&e->loop, UV_RUN_ONCE);
	T_CHECK(b->done);
}

static void test_echo_call(void)
{
	env e;
	if (env_open(&e) < 0) {
		T_CHECK(0);
		return;
	}
	watcher w = {0};
	result r = {.w = &w};
	char name[] = "echo", hv[] = "yes";
	fn_header hs[] = {{.name = "X-Test", .value = hv}, {.name = "Accept", .value = "*/*"}};
	rt_call c = {.function = name, .in = json_pack("{s:i,s:b}", "a", 7, "echo_headers", 1),
		     .headers = hs, .n_headers = 2, .done = on_done, .ud = &r, .watch = watch,
		     .watch_ctx = &w};
	rt_sched_submit(e.s, &c);
	/* the scheduler keeps copies: the caller's strings may change at once */
	memcpy(hv, "no!", 4);
	memcpy(name, "xxxx", 5);
	T_CHECK(w.cancel != NULL);   /* queued: the hook is registered */
	run_until(&e, &r);
	T_EQ_INT(r.n, 1);
	T_EQ_INT(r.status, 200);
	T_EQ_INT(r.rev, 1);
	T_EQ_INT(r.retry_after_s, 0);
	T_EQ_INT(json_integer_value(json_object_get(r.out, "a")), 7);
	json_t *h = json_object_get(r.out, "headers");
	T_EQ_STR(json_string_value(json_object_get(h, "X-Test")), "yes");
	T_EQ_STR(json_string_value(json_object_get(h, "Accept")), "*/*");
	T_EQ_INT(json_object_size(h), 2);
	T_CHECK(!r.hooked && w.cleared >= 1);   /* cleared before done ran */
	json_decref(r.out);

	/* an unknown function: 404 at once, no retry hint */
	result u = {0};
	rt_call c2 = {.function = "nothing", .in = json_object(), .done = on_done, .ud = &u};
	rt_sched_submit(e.s, &c2);
	T_EQ_INT(u.n, 1);
	T_EQ_INT(u.status, 404);
	T_EQ_INT(u.retry_after_s, 0);
	T_EQ_INT(u.rev, 0);
	/* a pinned revision that does not exist */
	result p = {0};
	rt_call c3 = {.function = "echo", .rev = 9, .in = json_object(), .done = on_done, .ud = &p};
	rt_sched_submit(e.s, &c3);
	T_EQ_INT(p.status, 404);
	T_CHECK(strstr(p.msg, "revision 9") != NULL);
	env_close(&e);
}

static void test_queue_cancel_deadline(void)
{
	env e;
	blocker b;
	if (env_open(&e) < 0 || block_lane(&e, &b) < 0) {
		T_CHECK(0);
		return;
	}
	/* the lane is held: "narrow" (max_queue 1) cannot load, its first call waits */
	watcher w1 = {0};
	result r1 = {.w = &w1}, r2 = {0};
	rt_call c1 = {.function = "narrow", .in = json_object(), .done = on_done, .ud = &r1,
		      .watch = watch, .watch_ctx = &w1};
	rt_sched_submit(e.s, &c1);
	for (int i = 0; i < 50; i++)
		uv_run(&e.loop, UV_RUN_NOWAIT);
	T_EQ_INT(r1.n, 0);
	T_CHECK(w1.cancel != NULL);
	/* the queue is full: 503 at once, with a retry hint */
	rt_call c2 = {.function = "narrow", .in = json_object(), .done = on_done, .ud = &r2};
	rt_sched_submit(e.s, &c2);
	T_EQ_INT(r2.n, 1);
	T_EQ_INT(r2.status, 503);
	T_EQ_INT(r2.retry_after_s, 1);
	T_CHECK(strstr(r2.msg, "queue is full") != NULL);
	/* the caller cancels the waiting call: 499 at once, and it leaves the queue */
	w1.cancel(w1.arg);
	T_EQ_INT(r1.n, 1);
	T_EQ_INT(r1.status, 499);
	T_EQ_INT(r1.retry_after_s, 0);
	T_CHECK(!r1.hooked && w1.cancel == NULL);
	/* a caller that gave up before the call was queued: 499, nothing queued */
	result r3 = {0};
	watcher w3 = {.gone = 1};
	rt_call c3 = {.function = "narrow", .in = json_object(), .done = on_done, .ud = &r3,
		      .watch = watch, .watch_ctx = &w3};
	rt_sched_submit(e.s, &c3);
	T_EQ_INT(r3.n, 1);
	T_EQ_INT(r3.status, 499);
	/* room again (the cancelled call left): a call with its own short deadline gets 504 */
	result r4 = {0};
	rt_call c4 = {.function = "narrow", .in = json_object(), .timeout_s = 0.05, .done = on_done,
		      .ud = &r4};
	uint64_t t0 = rt_clock_mono_ns();
	rt_sched_submit(e.s, &c4);
	T_EQ_INT(r4.n, 0);
	run_until(&e, &r4);
	T_EQ_INT(r4.status, 504);
	T_CHECK(strstr(r4.msg, "0.05 s") != NULL);
	T_CHECK(rt_clock_mono_ns() - t0 >= 40000000ull && rt_clock_mono_ns() - t0 < 20000000000ull);
	/* the lane free again: the function loads and answers */
	unblock_lane(&e, &b);
	result r5 = {0};
	rt_call c5 = {.function = "narrow", .in = json_pack("{s:s}", "k", "v"), .done = on_done,
		      .ud = &r5};
	rt_sched_submit(e.s, &c5);
	run_until(&e, &r5);
	T_EQ_INT(r5.status, 200);
	T_EQ_STR(json_string_value(json_object_get(r5.out, "k")), "v");
	json_decref(r5.out);
	/* every answer came exactly once */
	T_EQ_INT(r1.n + r2.n + r3.n + r4.n + r5.n, 5);
	env_close(&e);
}

void t_main(void)
{
	T_RUN(test_echo_call);
	T_RUN(test_queue_cancel_deadline);
}

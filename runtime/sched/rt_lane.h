/* rt_lane.h — a lane: one executor thread per device (each GPU, plus the CPU) that owns the
 * device's compute handle (kern_dev: context, streams, cuBLAS handle, CPU threads), created once
 * when the lane starts and kept while the daemon runs. Work items run on the lane thread one at
 * a time, invocations before background work; each item's `done` callback then runs on the loop
 * thread (uv_async), which is where responses are written.
 *
 * A lane also runs steps (iteration-level scheduling): a stepper is a piece of ongoing work
 * that advances in short steps, such as a generative function instance holding sequences
 * (one step = one batched decode iteration). Active steppers take turns (round-robin), and
 * between two steps the lane runs every invocation item queued by then (calls of other
 * functions, admissions, loads), so a long generation never holds another function's call for
 * more than one step. Background work runs only when no invocation item is queued and no
 * stepper is active. */
#ifndef THAW_RT_LANE_H
#define THAW_RT_LANE_H
#include <stdint.h>
#include <uv.h>
#include "kernels/kern.h"

/* RT_LANE_MAX is the most lanes a daemon opens: the CPU lane and up to 16 GPU lanes. */
#define RT_LANE_MAX 17

typedef struct rt_lane rt_lane;
typedef struct rt_work rt_work;

typedef enum rt_work_class {
	RT_WORK_INVOKE = 0,   /* invocations and loads: served first, FIFO */
	RT_WORK_BACKGROUND,   /* job steps: only when no invocation work waits */
} rt_work_class;

struct rt_work {
	rt_work *next;                          /* internal */
	rt_work_class cls;
	void (*run)(rt_lane *lane, rt_work *w); /* on the lane thread */
	void (*done)(rt_work *w);               /* on the loop thread, after run */
	void *ud;
	uint64_t enqueued_ns, started_ns, finished_ns;  /* filled by the lane */
};

/* rt_lane_open starts a lane for device spec ("cpu", "cuda:N") on loop, opening the device on
 * the lane thread (cpu_threads is the CPU backend's worker count, 0 = all cores). Waits until
 * the device is open; returns 0 or its negative errno (-ENODEV: no such device). */
int rt_lane_open(uv_loop_t *loop, const char *spec, int cpu_threads, rt_lane **out);

/* rt_lane_open_as is rt_lane_open with a label (rt_lane_name) other than the device spec: the
 * scheduler's fake GPUs (--fake-gpus, tests only) are CPU lanes labelled "cuda:N". */
int rt_lane_open_as(uv_loop_t *loop, const char *spec, const char *label, int cpu_threads,
		    rt_lane **out);

/* rt_lane_submit queues w (any thread). Returns -ESHUTDOWN after rt_lane_stop began. */
int rt_lane_submit(rt_lane *l, rt_work *w);

/* rt_lane_has_waiting reports whether invocation work is queued or a stepper is active (called
 * by background work between its units to decide whether to yield). Any thread. */
int rt_lane_has_waiting(rt_lane *l);

/* ---- steppers ---- */

typedef struct rt_stepper rt_stepper;

/* What a step returns: flags. */
enum {
	RT_STEP_MORE = 1,      /* the stepper still has work: it gets another turn */
	RT_STEP_DELIVER = 2,   /* deliver runs on the loop thread (results to hand out) */
};

struct rt_stepper {
	/* set by the owner before the first rt_lane_stepper_wake */
	int (*step)(rt_lane *lane, rt_stepper *st);   /* lane thread: one step; RT_STEP_* flags */
	void (*deliver)(rt_stepper *st);               /* loop thread, after a step said DELIVER */
	void *ud;
	/* internal (the lane's) */
	rt_stepper *run_next, *done_next;
	int running;              /* in the lane's ring of active steppers */
	int delivering;           /* on the lane's deliver list */
};

/* rt_lane_stepper_wake makes st active: the lane runs its steps, taking turns with the other
 * active steppers, until a step returns without RT_STEP_MORE. A stepper already active stays
 * as it is. Called on the lane thread (from a work item's run or a step); st stays valid until
 * rt_lane_stepper_remove. Several deliver requests made before the loop thread gets to them
 * run deliver once (deliver collects everything that is ready). Deliveries run on the loop
 * before the done callbacks of work items that finished in the same wake-up. */
void rt_lane_stepper_wake(rt_lane *l, rt_stepper *st);

/* rt_lane_stepper_remove takes st out of the lane's ring of active steppers (no more steps).
 * Lane thread only (e.g. in the work item that releases the stepper's state). A deliver
 * already requested still runs, before the done callback of the item that called this. */
void rt_lane_stepper_remove(rt_lane *l, rt_stepper *st);

/* rt_lane_steps returns the number of steps run so far (any thread). */
uint64_t rt_lane_steps(rt_lane *l);

/* rt_lane_stop finishes the queued work and the steps of active steppers, stops the thread,
 * closes the device and the async handle; the lane is freed once the loop has closed the handle
 * (run the loop afterwards). Completions (and deliveries) of work finished during stop run on
 * the loop before the free. */
void rt_lane_stop(rt_lane *l);

/* Accessors. rt_lane_dev is for use on the lane thread (inside run). */
kern_dev *rt_lane_dev(rt_lane *l);
const char *rt_lane_name(const rt_lane *l);
int rt_lane_is_cuda(const rt_lane *l);
/* rt_lane_busy_ns returns the total time spent running work (any thread). */
uint64_t rt_lane_busy_ns(rt_lane *l);
/* rt_lane_queued returns the number of queued (not yet running) items. */
int rt_lane_queued(rt_lane *l);

/* ---- time-sharing hooks (used by runtime/jobs/rt_jobs.c) ---- */

/* An invoke hook is called for each RT_WORK_INVOKE item twice: started == 0 right after it was
 * queued, on the submitting thread (the job runner lifts a running job step's CPU priority
 * there), and started == 1 on the lane thread just before it runs, with enqueued_ns and
 * started_ns set (the job runner measures preemption latency there). It must be quick and
 * must not submit work. */
typedef void (*rt_lane_invoke_hook_fn)(void *ud, rt_lane *l, const rt_work *w, int started);

/* rt_lane_set_invoke_hook installs fn (NULL removes it). Any thread. */
void rt_lane_set_invoke_hook(rt_lane *l, rt_lane_invoke_hook_fn fn, void *ud);

/* rt_lane_last_invoke_ns is the last time (rt_clock_mono_ns) invocation work was submitted to or
 * finished on the lane; the lane's start time before any. Any thread. */
uint64_t rt_lane_last_invoke_ns(rt_lane *l);

#endif

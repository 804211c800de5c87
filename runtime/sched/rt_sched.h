/* rt_sched.h — the scheduler: devices (lanes), function instances and their lifecycle
 * (design.md, "Scale to zero and the tiers"). Loop thread only.
 *
 * A function instance is one (name, revision). Its state is
 *   cold     weights only on disk (the snapshot);
 *   loading  a cold start is running (restore -> load), calls are held in its queue;
 *   host     decoded image kept in host RAM (the host tier), not loaded on a device;
 *   warm     loaded on a device lane, calls run.
 * Calls that arrive while an instance is not warm are held (like Knative's activator) in a
 * bounded queue with the function's timeout: past max_queue -> 503 (retry_after_s), past
 * timeout_s -> 504. Per-instance concurrency bounds the calls handed to the lane at once, and
 * queued calls are merged into batches of up to max_batch (waiting max_batch_delay_us for a
 * batch to fill when the lane is idle). An instance of a generative kind (fn.h: seq_add,
 * seq_step) is scheduled at the iteration level instead: each call is handed to the kind as it
 * arrives while it holds fewer than concurrency, and the lane steps the held sequences (at most
 * max_batch a step) in turn with the device's other work; its KV cache is reserved in the
 * device's budget at the cold start (pool_kv_budget). idle_timeout_s after its last call a
 * warm instance is evicted to the host tier (min_scale 1 keeps it warm); the host tier is
 * bounded by a byte budget (LRU) and a time to live, past which only the snapshot remains. A
 * device short of memory evicts its least recently used idle instance. */
#ifndef THAW_RT_SCHED_H
#define THAW_RT_SCHED_H
#include <stdint.h>
#include <jansson.h>
#include <uv.h>
#include "functions/fn.h"
#include "runtime/base/rt_metrics.h"
#include "runtime/sched/rt_call.h"
#include "runtime/store/rt_registry.h"

typedef struct rt_sched rt_sched;

typedef struct rt_sched_config {
	uint64_t host_budget_bytes;   /* host tier; default: a quarter of physical RAM */
	double host_ttl_s;            /* host tier entries dropped after this idle time (600) */
	double gpu_mem_share;         /* share of a GPU's free memory at start for weights (0.85) */
	uint64_t cpu_budget_bytes;    /* weights loaded on the CPU lane; default: half of RAM */
	int cpu_threads;              /* CPU backend threads (0 = all cores) */
	int decode_threads;           /* snapshot decode threads (0 = all cores) */
	int no_gpu;                   /* do not open GPUs even when present */
	uint64_t gpu_budget_bytes;    /* each GPU's weight budget in bytes (0: gpu_mem_share); --gpu-memory */
	int fake_gpus;                /* tests: N CPU lanes placed as GPUs cuda:0..N-1 when no real
	                               * GPU is open (--fake-gpus N[:MiB]) */
	uint64_t fake_gpu_bytes;      /* weight memory budget of each fake GPU */
} rt_sched_config;

/* rt_sched_config_defaults fills the defaults above from the RAM size and core count, bounded
 * by the cgroup v2 limits of the process (memory.max, cpu.max) when it runs in a container
 * (see runtime/base/rt_sys.h). */
void rt_sched_config_defaults(rt_sched_config *c);

/* rt_sched_new opens the CPU lane and one lane per GPU (each with its pinned staging pool and
 * a memory budget), and registers the scheduler's metrics in m. reg is borrowed. Returns 0 or a
 * negative errno (the CPU lane must open; a GPU that fails to open is logged and skipped). */
int rt_sched_new(uv_loop_t *loop, rt_registry *reg, rt_metrics *m, const rt_sched_config *cfg,
		 rt_sched **out);

/* rt_sched_start loads every function whose latest revision has min_scale >= 1. */
void rt_sched_start(rt_sched *s);

/* rt_sched_stop stops the lanes after their queued work (held calls get 503) and frees the
 * instances; done() is called on the loop once every handle is closed. */
void rt_sched_stop(rt_sched *s, void (*done)(void *ud), void *ud);

/* rt_sched_free frees s after rt_sched_stop's done callback ran. */
void rt_sched_free(rt_sched *s);

/* rt_sched_submit runs call c (rt_call.h) of function c->function: revision by the traffic
 * split, or c->rev when non-zero; the input reference c->in is stolen, the name and headers
 * are copied (c itself may go once this returns). c->done is called exactly once, on the loop
 * thread — possibly before rt_sched_submit returns — with the output or an error: the kind's
 * own, or 404 (unknown function or revision), 499 (cancelled through the hook), 503 (queue
 * full, device gone, load failed, shutting down; retry_after_s set) or 504 (past the deadline:
 * the result of a call still running is dropped when it comes). A kind that streams sends its
 * partial results (fn_call.emit, functions/fn.h) to c->emit(c->emit_ctx, chunk) — on the
 * device lane's thread, not the loop's: the receiver hands them to the loop itself
 * (uv_async_t) and copies or increfs the borrowed chunk. emit is never called once the call
 * has been answered (done ran, e.g. a 504) and never concurrently with done; a non-zero
 * return stops the stream (the kind fails the call with 499). A kind's poll (emit with chunk
 * NULL) is answered by the scheduler and never reaches c->emit. */
void rt_sched_submit(rt_sched *s, const rt_call *c);

/* rt_sched_deployed tells the scheduler that name got a new revision (PUT): min_scale
 * instances are loaded now. */
void rt_sched_deployed(rt_sched *s, const char *name);

/* rt_sched_deleted drops every instance of name (held calls get 404; running ones finish). */
void rt_sched_deleted(rt_sched *s, const char *name);

/* rt_sched_load scales name (its traffic's revisions) up now; rt_sched_unload scales it to
 * zero now (to disk; instances with calls in flight are unloaded when those finish).
 * -ENOENT when unknown. */
int rt_sched_load(rt_sched *s, const char *name);
int rt_sched_unload(rt_sched *s, const char *name);

/* rt_sched_state_json returns a new object describing name's live state:
 * {"state": state of the revision taking most traffic, "device", "resident_bytes",
 *  "last_call": RFC3339 or null, "instances": [{"revision", "state", "device",
 *  "resident_bytes", "inflight", "queued", "last_call"}, ...]}. */
json_t *rt_sched_state_json(rt_sched *s, const char *name);

/* rt_sched_is_ready reports whether name's main revision is warm (V2 model ready). */
int rt_sched_is_ready(rt_sched *s, const char *name);

/* rt_sched_devices_json returns [{"device", "kind": "cpu"|"cuda", "name", "memory_used"
 * (weights and job state), "kv_cache_bytes" (KV caches of generative instances), "memory_total"
 * (the budget), "busy_ratio", "queued"}] (new reference). */
json_t *rt_sched_devices_json(rt_sched *s);

/* rt_sched_stats_json returns V2 model statistics for name (new reference) or NULL. */
json_t *rt_sched_stats_json(rt_sched *s, const char *name);

/* rt_sched_update_gauges refreshes device memory and lane busy gauges (before /metrics). */
void rt_sched_update_gauges(rt_sched *s);

/* rt_sched_state_name: "cold", "loading", "host", "warm". */
const char *rt_sched_state_name(int state);

/* ---- residency, for the cluster's node state and routing (rt_cluster.h) ---- */
enum { RT_SCHED_COLD, RT_SCHED_LOADING, RT_SCHED_HOST, RT_SCHED_WARM };

/* rt_sched_local_state returns the best state any live instance of name has here (warm >
 * loading > host > cold; an instance being evicted counts as cold) and sets *room (may be
 * NULL) when that instance would start a call submitted now within one round: fewer calls
 * queued on it than its concurrency (for a cold start under way: than its max_queue). */
int rt_sched_local_state(rt_sched *s, const char *name, int *room);

/* rt_sched_residents_json returns {"<function>": {"revision", "state", "inflight", "queued",
 * "room"}} for every function with a live instance (its best one, as rt_sched_local_state
 * ranks them); new reference. */
json_t *rt_sched_residents_json(rt_sched *s);

/* rt_sched_free_bytes is the most weight memory free on one device functions are placed on:
 * the accelerators' (fake ones included) when the node has any, else the CPU's. */
uint64_t rt_sched_free_bytes(rt_sched *s);

/* rt_sched_calls is the number of calls in flight and queued over every instance. */
int rt_sched_calls(rt_sched *s);

/* rt_sched_set_residency_hook has fn(ud) called on the loop thread whenever an instance
 * changes state (a cold start begins, ends or fails, an eviction); NULL removes it. */
void rt_sched_set_residency_hook(rt_sched *s, void (*fn)(void *ud), void *ud);

/* ---- time-sharing hooks (used by runtime/jobs/rt_jobs.c) ---- */
typedef struct rt_lane rt_lane;

/* rt_sched_lane_count / rt_sched_lane_at list the device lanes: 0 is the CPU, then the GPUs. */
int rt_sched_lane_count(rt_sched *s);
rt_lane *rt_sched_lane_at(rt_sched *s, int i);
/* rt_sched_lane_score ranks lane i for an "auto" job (lower is better, -1 for no such lane):
 * GPUs before the CPU, then the fewest calls queued, running or held and cold starts under way
 * there, then the fewest function instances loaded — so jobs spread over idle GPUs. */
int rt_sched_lane_score(rt_sched *s, int i);
/* rt_sched_lane_find returns the lane of device spec "cpu" or "cuda:N", or for "auto" the
 * first GPU's (else the CPU's); NULL when this node has no such device. */
rt_lane *rt_sched_lane_find(rt_sched *s, const char *spec);

/* Job state in device memory. A job keeps its state on an accelerator lane (a GPU, or a fake
 * GPU in tests) within the device's weight budget: rt_sched_job_reserve counts bytes there (0,
 * or -ENOSPC when they do not fit, a job spill is still running, or a cold start waits for room
 * there; -ENOENT for an unknown lane), rt_sched_job_release gives them back. When a cold start
 * needs room on a device where a job holds memory, the scheduler calls the spill hook first
 * (before evicting idle functions): fn returns the bytes that will be freed (0: none) and later
 * calls rt_sched_job_release(..., spilled = 1), which lets the waiting cold starts go on.
 * rt_sched_lane_is_accel says whether a lane is a GPU (or a fake one). Loop thread. */
typedef uint64_t (*rt_sched_spill_fn)(void *ud, rt_lane *lane);
void rt_sched_set_spill_hook(rt_sched *s, rt_sched_spill_fn fn, void *ud);
int rt_sched_lane_is_accel(rt_sched *s, rt_lane *lane);
int rt_sched_job_reserve(rt_sched *s, rt_lane *lane, uint64_t bytes);
void rt_sched_job_release(rt_sched *s, rt_lane *lane, uint64_t bytes, int spilled);

#endif

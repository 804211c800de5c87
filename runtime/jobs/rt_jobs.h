/* rt_jobs.h — batch jobs on idle devices (design.md, "Time-sharing"): the job store
 * and the job runner.
 *
 * Store: the `jobs` table of the registry's store (rt_jobstore.h: the SQLite file, or the
 * PostgreSQL database a cluster shares), with each job's lease (owner node, lease end). A job is
 * {type: quantize|finetune, a source (a function's revision or a snapshot file), params,
 * schedule, priority, device} with a state (queued, running, preempted, succeeded, failed,
 * cancelled), progress 0..1, step, its own figures (metrics), timestamps, an error, the result
 * (snapshot, revision) and its checkpoint path.
 *
 * Runner (loop thread): at most one job per device lane at a time; the highest priority
 * queued job whose schedule allows runs: "now"; "idle" = the lane has had no invocation work
 * for idle_s; {"window": "HH:MM-HH:MM", "tz": "UTC"|"+HH:MM"} = the wall clock (injectable)
 * is inside the window (which may wrap midnight). A job is prepared on libuv's thread pool
 * (source snapshot and data read into host memory, or its checkpoint loaded), then runs as
 * steps: RT_WORK_BACKGROUND lane items that each run the job kind's units for at most step_ms
 * and return as soon as rt_lane_has_waiting() says invocation work is queued, so invocations
 * go first (the lane runs background items only when no invocation waits). The job's state
 * stays in memory between steps; every checkpoint_s at most it is written to
 * SHARED/jobs/<id>/checkpoint.bin (write, fsync, rename; SHARED is the directory every node
 * mounts, DATA on one machine). When its schedule stops allowing it
 * (an "idle" job sees invocation traffic, a window closes) or the daemon drains, the job
 * checkpoints, becomes `preempted` and leaves memory; it resumes from the checkpoint later,
 * also after a crash (a job this node left `running` is `preempted` at start). The result is
 * written on the thread pool as a new snapshot in SHARED/snapshots and registered as a new
 * revision of the source function, traffic unchanged unless params.promote is true.
 *
 * Several nodes on one store (rt_jobstore.h, "job leases"): a node claims a job before it
 * starts or resumes it (a job another node holds is skipped), renews the leases of its jobs
 * every lease_ms / 3 and saves their progress only while it still owns them. When a save or a
 * renewal finds the job taken over (its lease ran out while this node stalled) the node drops
 * the job at once without touching its files; when it finds the job cancelled (from any node)
 * it stops it as a local cancel does. A job whose node died (its lease expired) is claimed by
 * another node and resumes from its last checkpoint, with the result an uninterrupted run
 * gives (the kinds are deterministic from a checkpoint).
 *
 * On a GPU lane (or a fake one) a job whose kind keeps device state (finetune) reserves its
 * bytes in the device's budget (rt_sched_job_reserve) and its units run as kernels on the
 * lane's device (each unit about a quarter of gpu_step_ms); when a cold start needs that
 * memory the scheduler asks for a spill: a lane item moves the state to host memory, the
 * reservation is given back (the cold start goes on), and the job goes on from host memory
 * until its bytes fit again, when its next unit moves it back (a restore). Checkpoint copies
 * and freeing device state also run on the lane thread (never beside a graph capture there).
 *
 * Metrics: thaw_jobs{state}, thaw_job_steps_total{type}, thaw_job_preemptions_total,
 * thaw_job_spills_total, thaw_job_restores_total,
 * thaw_preemption_latency_seconds (invocation work's wait on a lane while a job is active
 * there: from its submission to the lane to its start).
 * Everything here runs on the loop thread unless said otherwise. */
#ifndef THAW_RT_JOBS_H
#define THAW_RT_JOBS_H
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include <uv.h>
#include "runtime/base/rt_metrics.h"
#include "runtime/store/rt_registry.h"
#include "runtime/sched/rt_sched.h"

typedef struct rt_jobs rt_jobs;

typedef struct rt_jobs_config {
	double idle_s;             /* "idle" schedule: seconds without invocation work (60) */
	double checkpoint_s;       /* at most one checkpoint per this many seconds (10) */
	double step_ms;            /* lane time a step may take before it yields anyway (2) */
	double gpu_step_ms;        /* the same on a GPU lane, where a job's units are kernels (1) */
	double poll_s;             /* how often waiting jobs are reconsidered (0.5) */
	int64_t (*clock_ms)(void *ud);  /* wall clock for windows (Unix ms); NULL: the real one */
	void *clock_ud;
	const char *node_id;       /* this node in job leases: [A-Za-z0-9._-], at most
				    * RT_NODE_ID_MAX characters (NULL or "": the host name) */
	int64_t lease_ms;          /* a claimed job's lease, renewed every lease_ms / 3 (3000) */
} rt_jobs_config;

/* rt_jobs_config_defaults fills the defaults above. */
void rt_jobs_config_defaults(rt_jobs_config *c);

/* rt_jobs_new prepares the job store over reg (borrowed; its migration 2 made the table) and
 * the runner over sched's lanes, registering the metrics in m. data_dir (the shared
 * directory of a cluster: thaw serve --shared-dir) holds jobs/ (checkpoints), snapshots/
 * (results, source snapshots by name) and data/ (data files by name); allowed_roots (n of
 * them, borrowed) are where data files and source snapshots may also lie. 0 or a negative
 * errno with err (-EINVAL for a bad node id or lease). */
int rt_jobs_new(uv_loop_t *loop, rt_registry *reg, rt_sched *sched, rt_metrics *m,
		const char *data_dir, const char *const *allowed_roots, size_t n_roots,
		const rt_jobs_config *cfg, rt_jobs **out, char *err, size_t errlen);

/* rt_jobs_start marks the jobs this node left `running` (a previous process of the same node
 * id) `preempted` (they resume from their checkpoints) and starts the runner and the renewal
 * of its leases. */
void rt_jobs_start(rt_jobs *J);

/* rt_jobs_stop stops starting work: each active job finishes its current step or thread-pool
 * task, checkpoints and becomes `preempted`; done(ud) runs on the loop once none is active
 * (possibly before rt_jobs_stop returns). Call before stopping the scheduler's lanes. */
void rt_jobs_stop(rt_jobs *J, void (*done)(void *ud), void *ud);

/* rt_jobs_free frees J (after rt_jobs_stop's done, or at a forced exit) and removes the lane
 * hooks; must run before the registry closes. NULL is fine. */
void rt_jobs_free(rt_jobs *J);

/* rt_jobs_submit validates spec (see docs/api.md, "Jobs API") and queues it: 0 and *id, or
 * -EINVAL (400: err names the field), -ENOENT (404: unknown function), -EACCES (403: a path
 * outside the allowed places), -EIO (500). */
int rt_jobs_submit(rt_jobs *J, const json_t *spec, int64_t *id, char *err, size_t errlen);

/* rt_jobs_get_json returns the job's object (new reference) or NULL when unknown. */
json_t *rt_jobs_get_json(rt_jobs *J, int64_t id);

/* rt_jobs_list_json returns {"jobs": [...] (ascending id), "preemption": {"samples", "p50_ms",
 * "p99_ms", "max_ms"} (the latest 4096 latencies)}; state filters (NULL: all). -EINVAL for an
 * unknown state name. */
int rt_jobs_list_json(rt_jobs *J, const char *state, json_t **out);

/* rt_jobs_cancel cancels a queued, running or preempted job (a running step stops at its next
 * unit; a job another node runs is cancelled in the store, and that node stops it at its next
 * save or lease renewal). 0, -ENOENT (unknown), -EALREADY (already finished: err says how),
 * -EBUSY (the row kept changing hands), -EIO. */
int rt_jobs_cancel(rt_jobs *J, int64_t id, char *err, size_t errlen);

/* rt_jobs_node returns the node id J's leases carry (rt_jobs_config.node_id or the host name). */
const char *rt_jobs_node(const rt_jobs *J);

/* ---- schedules (pure; exposed for tests) ---- */

typedef enum rt_job_sched_kind {
	RT_JOB_SCHED_NOW = 0,
	RT_JOB_SCHED_IDLE,
	RT_JOB_SCHED_WINDOW,
} rt_job_sched_kind;

typedef struct rt_job_schedule {
	rt_job_sched_kind kind;
	int start_min, end_min;    /* window, minutes after midnight in tz; end may be < start */
	int tz_min;                /* tz offset east of UTC, minutes */
} rt_job_schedule;

/* rt_job_schedule_parse reads "now", "idle" or {"window": "HH:MM-HH:MM", "tz": "UTC"|
 * "+HH:MM"|"-HH:MM"} (tz optional, UTC). 0 or -EINVAL with a message naming the field. */
int rt_job_schedule_parse(const json_t *v, rt_job_schedule *s, char *err, size_t errlen);

/* rt_job_schedule_allows says whether s lets a job run at wall time now_ms (Unix ms) on a lane
 * idle for lane_idle_s seconds, when "idle" needs idle_needed_s. */
int rt_job_schedule_allows(const rt_job_schedule *s, int64_t now_ms, double lane_idle_s,
			   double idle_needed_s);

#endif

/* rt_jobstore.h — the rows of batch jobs (runtime/jobs/rt_jobs.c runs them; the registry's
 * store keeps them, in the same transactional file as functions and keys: table jobs of
 * rt_store_sqlite.c). Calls go through the registry handle; loop thread only. Functions return
 * 0 or a negative errno (-ENOENT for an unknown job, -EIO for a failing store). */
#ifndef THAW_RT_JOBSTORE_H
#define THAW_RT_JOBSTORE_H
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "runtime/store/rt_registry.h"

/* States, in the order the store counts them (their names: rt_job_state_names). */
enum {
	RT_JOB_QUEUED, RT_JOB_RUNNING, RT_JOB_PREEMPTED, RT_JOB_SUCCEEDED, RT_JOB_FAILED,
	RT_JOB_CANCELLED, RT_JOB_STATES
};
extern const char *const rt_job_state_names[RT_JOB_STATES];

/* One stored job. The JSON values are owned by the row (rt_job_row_clear) when the store
 * filled it, borrowed when the caller did. Times are Unix milliseconds, 0 = not set; "" is an
 * absent text. */
typedef struct rt_job_row {
	int64_t id;
	char type[16];
	char function[RT_MANIFEST_NAME_MAX + 1];
	uint32_t revision;
	char snapshot[4096];
	json_t *params, *schedule, *metrics;
	int priority;
	char device[32];
	int state;                 /* RT_JOB_*; -1 for a name this build does not know */
	double progress;
	int64_t step, preemptions;
	int64_t created_ms, started_ms, finished_ms, updated_ms;
	char error[1024];
	char result_snapshot[4096];
	uint32_t result_revision;
	char checkpoint[4096];
	char owner[RT_NODE_ID_MAX + 1];  /* the node holding the job's lease; "" when none (filled
					  * by rt_jobstore_get, ignored by the saves) */
	int64_t lease_until_ms;    /* end of that lease by the store's clock; 0 when none */
} rt_job_row;

/* rt_job_row_clear drops the JSON values of a row the store filled. */
void rt_job_row_clear(rt_job_row *r);

/* rt_jobstore_insert stores a new queued job from r's type, function, revision, snapshot,
 * params (NULL: {}), schedule (NULL: "now"), priority, device and created_ms; *id gets its
 * id. */
int rt_jobstore_insert(rt_registry *reg, const rt_job_row *r, int64_t *id);

/* rt_jobstore_get fills *r with job id (rt_job_row_clear it after). */
int rt_jobstore_get(rt_registry *reg, int64_t id, rt_job_row *r);

/* rt_jobstore_save writes r's progress columns (state, progress, step, metrics, preemptions,
 * started/finished/updated times, error, result snapshot and revision, checkpoint). */
int rt_jobstore_save(rt_registry *reg, const rt_job_row *r);

/* rt_jobstore_ids lists the job ids in ascending order, every job (state < 0) or those in one
 * state: a malloc'd array (*ids, free() it; NULL when *n == 0). */
int rt_jobstore_ids(rt_registry *reg, int state, int64_t **ids, size_t *n);

/* rt_jobstore_candidates writes up to cap ids of the jobs a node may claim, best first
 * (priority, then age), to ids; *n gets the count: queued or preempted jobs that no node holds
 * a live lease on, and running jobs whose owner's lease has expired (that node died; the job
 * resumes from its checkpoint). */
int rt_jobstore_candidates(rt_registry *reg, int64_t *ids, size_t cap, size_t *n);

/* rt_jobstore_counts fills counts[RT_JOB_STATES] with the number of jobs in each state. */
int rt_jobstore_counts(rt_registry *reg, int64_t *counts);

/* rt_jobstore_recover runs when node starts: the jobs node left running (its previous run
 * stopped or crashed) and running jobs of no owner (left by a build without leases) become
 * preempted, and node's leases on unfinished jobs are dropped; jobs other nodes hold are not
 * touched. *n gets how many jobs became preempted. */
int rt_jobstore_recover(rt_registry *reg, const char *node, int *n);

/* ---- job leases: a job runs on one node at a time ----
 * A job row has an owner (a node id, "" when none) and a lease end by the store's clock. A
 * node claims a job before it runs it, renews its leases while it runs (every beat), and
 * saves its progress only while it still holds the lease; a job whose owner's lease ran out
 * (the node died) is a candidate again for every node, state running included, and resumes
 * from its checkpoint. The embedded store keeps the same columns, so two daemons on one
 * SQLite file share jobs the same way. */

/* rt_jobstore_claim makes node the owner of job id for lease_ms from now (row locked, SKIP
 * LOCKED on a shared store) when the job is unfinished and unowned, owned by node already, or
 * its lease has expired. 0 when claimed; -EBUSY when another node holds a live lease or
 * another claim has the row locked; -ENOENT for an unknown or finished job. */
int rt_jobstore_claim(rt_registry *reg, int64_t id, const char *node, int64_t lease_ms);

/* rt_jobstore_renew extends by lease_ms from now the leases node holds on unfinished jobs;
 * *n (may be NULL) gets how many. */
int rt_jobstore_renew(rt_registry *reg, const char *node, int64_t lease_ms, int *n);

/* rt_jobstore_save_owned is rt_jobstore_save for a job node claimed: it writes only while node
 * still owns the job and the stored job is unfinished (-ESTALE when the lease was lost to
 * another node, which has it now, or the job was cancelled or finished meanwhile: the caller
 * reads the row to tell which) and clears the owner and lease when the state it writes is final
 * or preempted. node "" writes only while the job has no owner: a write made from a row read
 * earlier (a cancel from any node) passes the owner it read and lands only if nothing changed
 * hands since. The lease end is left as it is. -ENOENT for an unknown job. */
int rt_jobstore_save_owned(rt_registry *reg, const rt_job_row *r, const char *node);

#endif

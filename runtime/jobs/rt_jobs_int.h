/* rt_jobs_int.h — inside the job runner: the table of job kinds (rt_job_kinds.c) that
 * rt_jobs.c drives. A kind adapts a functions/ job (fn_finetune.h, fn_qjob.h) to the runtime:
 * parameter checks, reading its source snapshot and data, checkpoints, writing the result. */
#ifndef THAW_RT_JOBS_INT_H
#define THAW_RT_JOBS_INT_H
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "kernels/kern.h"

/* What a kind's prepare and finish get (paths resolved by the runner). */
typedef struct rt_job_env {
	int64_t id;
	const char *type;
	const json_t *params;          /* validated at submit */
	const char *function;          /* NULL for a snapshot-only job */
	uint32_t revision;
	char src_path[4096];           /* the source snapshot */
	char data_path[4096];          /* params.data resolved, or "" */
	char ckpt_path[4096];          /* DATA/jobs/<id>/checkpoint.bin */
	char result_path[4096];        /* DATA/snapshots/<name>.thaw to write */
	double unit_us;                /* device state: the wall time a unit of kernels aims at */
} rt_job_env;

typedef struct rt_job_kind {
	const char *name;
	/* check params at submit (kind_of_source: the source snapshot's kind, or NULL when not
	 * known yet); -EINVAL with err naming the field ("params.epochs: ...") */
	int (*check)(const json_t *params, const char *kind_of_source, char *err, size_t errlen);
	/* thread pool: read the source and data, build the state; resume from ckpt (a buffer) when
	 * given. 0 or -errno with err. */
	int (*prepare)(const rt_job_env *env, const void *ckpt, size_t ckpt_len, void **st,
		       char *err, size_t errlen);
	/* lane thread: one unit. dev: the lane's device when the job may keep its state there
	 * (the runner reserved dev_bytes of its budget; the kind moves its state there when it can),
	 * or NULL: run from host memory (state on a device comes back first) */
	int (*unit)(void *st, kern_dev *dev, int *done, char *err, size_t errlen);
	/* device state (NULL for kinds that keep none): the bytes it takes on a device; spill
	 * (lane thread) moves it to host memory; on_device says where it is */
	uint64_t (*dev_bytes)(void *st);
	int (*spill)(void *st, char *err, size_t errlen);
	int (*on_device)(void *st);
	double (*progress)(void *st);
	int64_t (*steps)(void *st);
	json_t *(*metrics)(void *st);  /* new reference */
	/* loop thread, state quiescent: serialize for a checkpoint (NULL: no checkpoints) */
	int (*save)(void *st, void **buf, size_t *len);
	/* thread pool: write the result snapshot to env->result_path; metrics are recorded in it */
	int (*finish)(void *st, const rt_job_env *env, char *err, size_t errlen);
	void (*free)(void *st);
} rt_job_kind;

extern const rt_job_kind rt_job_kind_finetune;
extern const rt_job_kind rt_job_kind_quantize;

/* rt_job_kind_find returns the kind named name or NULL. */
const rt_job_kind *rt_job_kind_find(const char *name);

#endif

/* test_jobs_dev.c — a job's state in device memory, in-process over a real registry and
 * scheduler with one fake GPU (a CPU lane placed as cuda:0 with a small weight budget; its
 * kern device is the CPU one, so the same runner code moves the state as on a GPU): a finetune
 * job on cuda:0 reserves its state's bytes in the budget and steps as kern ops there; a cold
 * start of a function that does not fit beside it makes the scheduler spill the job's state to
 * host memory (counted in thaw_job_spills_total and the job's runner figures) and the function
 * loads; the job goes on from host memory, and once the function is unloaded the state goes
 * back to the device (thaw_job_restores_total); the job still ends at the accuracy bar, within
 * 0.01 of an uninterrupted run's accuracy. A budget that never fits the state: the job runs
 * from host memory all along and succeeds. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "kernels/kern.h"
#include "runtime/jobs/rt_jobs.h"
#include "runtime/sched/rt_lane.h"
#include "runtime/base/rt_log.h"
#include "snapshot/snap_pack.h"
#include "tests/t.h"
#include "tests/runtime/jobs/jobs_env.h"


/* gpu_bytes: the budget of the fake GPU cuda:0, or with real_gpu of the real cuda:0 */
static int env_open_dev(env *e, uint64_t gpu_bytes, int real_gpu)
{
	rt_sched_config sc;
	rt_sched_config_defaults(&sc);
	sc.cpu_threads = 1;
	sc.no_gpu = !real_gpu;
	sc.fake_gpus = real_gpu ? 0 : 1;
	sc.fake_gpu_bytes = gpu_bytes;
	sc.gpu_budget_bytes = real_gpu ? gpu_bytes : 0;
	rt_jobs_config jc;
	rt_jobs_config_defaults(&jc);
	jc.poll_s = 0.02;
	jc.checkpoint_s = 0.05;
	return env_open_with(e, "jobsdev", "{\"kind\": \"mlp\", \"snapshot\": \"digits.thaw\", "
			     "\"device\": \"cuda:0\"}", &sc, &jc);
}

static int env_open(env *e, uint64_t gpu_bytes)
{
	return env_open_dev(e, gpu_bytes, 0);
}


static json_t *job(env *e, int64_t id)
{
	return rt_jobs_get_json(e->J, id);
}


/* runs the loop until cond(e, id) or ms passed; 1 when it held */
static int wait_for(env *e, int64_t id, int (*cond)(env *, int64_t), int ms)
{
	uint64_t end = rt_now_ns() + (uint64_t)ms * 1000000;
	while (rt_now_ns() < end) {
		if (cond(e, id))
			return 1;
		uv_run(&e->loop, UV_RUN_NOWAIT);
		usleep(300);
	}
	return cond(e, id);
}

static int64_t runner_int(env *e, int64_t id, const char *key)
{
	json_t *o = job(e, id);
	int64_t v = json_integer_value(json_object_get(json_object_get(o, "runner"), key));
	json_decref(o);
	return v;
}

static int on_device(env *e, int64_t id) { return runner_int(e, id, "device_bytes") > 0; }
static int off_device(env *e, int64_t id) { return runner_int(e, id, "device_bytes") == 0; }
static int restored(env *e, int64_t id) { return runner_int(e, id, "restores") >= 1; }
static int finished(env *e, int64_t id)
{
	const char *s = state_of(e, id);
	return !strcmp(s, "succeeded") || !strcmp(s, "failed") || !strcmp(s, "cancelled");
}

static const char *fn_state(env *e)
{
	static char st[32];
	json_t *o = rt_sched_state_json(e->s, "digits");
	snprintf(st, sizeof st, "%s", json_string_value(json_object_get(o, "state")));
	json_decref(o);
	return st;
}
static int fn_warm(env *e, int64_t id) { (void)id; return !strcmp(fn_state(e), "warm"); }
static int fn_cold(env *e, int64_t id) { (void)id; return strcmp(fn_state(e), "warm") != 0; }

static int64_t submit(env *e, int epochs)
{
	char buf[2048];
	snprintf(buf, sizeof buf, "{\"type\": \"finetune\", \"function\": \"digits\", \"revision\": 1, "
		 "\"device\": \"cuda:0\", \"params\": {\"data\": \"%s/tests/data/digits.csv.gz\", "
		 "\"epochs\": %d, \"learning_rate\": 0.003, \"feature_scale\": 0.0625, \"seed\": 11, "
		 "\"batch_size\": 16}}", t_src(), epochs);
	return env_submit(e, buf);
}

static double accuracy(env *e, int64_t id)
{
	json_t *o = job(e, id);
	double a = json_number_value(json_object_get(json_object_get(o, "metrics"), "accuracy"));
	json_decref(o);
	return a;
}

static int metric_has(env *e, const char *line)
{
	char *text = NULL;
	size_t len = 0;
	rt_metrics_render(e->m, &text, &len);
	int ok = text && strstr(text, line);
	if (!ok)
		fprintf(stderr, "  metrics: no \"%s\"\n", line);
	free(text);
	return ok;
}

/* sizes measured on a roomy fake GPU: the job's device bytes and the function's */
static uint64_t job_bytes, fn_bytes;
static double acc_ref;

static void test_roomy_device(void)
{
	env e;
	T_EQ_INT(env_open(&e, 64ull << 20), 0);
	int64_t id = submit(&e, 30);
	T_CHECK(id > 0);
	T_CHECK(wait_for(&e, id, on_device, 60000));
	job_bytes = (uint64_t)runner_int(&e, id, "device_bytes");
	T_EQ_INT(rt_sched_load(e.s, "digits"), 0);
	T_CHECK(wait_for(&e, id, fn_warm, 60000));
	json_t *st = rt_sched_state_json(e.s, "digits");
	fn_bytes = (uint64_t)json_integer_value(json_object_get(st, "resident_bytes"));
	json_decref(st);
	T_CHECK(runner_int(&e, id, "device_bytes") > 0);   /* both fit: no spill */
	T_CHECK(wait_for(&e, id, finished, 120000));
	T_EQ_STR(state_of(&e, id), "succeeded");
	T_EQ_INT(runner_int(&e, id, "spills"), 0);
	acc_ref = accuracy(&e, id);
	fprintf(stderr, "  job state %.2f MiB on the device, function %.2f MiB; accuracy %.4f\n",
		(double)job_bytes / (1 << 20), (double)fn_bytes / (1 << 20), acc_ref);
	T_CHECK(acc_ref >= 0.95);
	T_CHECK(job_bytes > 400000 && fn_bytes > 0);
	env_close(&e);
}

static void spill_and_restore(int real_gpu)
{
	uint64_t big = job_bytes > fn_bytes ? job_bytes : fn_bytes;
	uint64_t small = job_bytes > fn_bytes ? fn_bytes : job_bytes;
	env e;
	T_EQ_INT(env_open_dev(&e, big + small / 2, real_gpu), 0);
	int64_t id = submit(&e, 30);
	T_CHECK(id > 0);
	T_CHECK(wait_for(&e, id, on_device, 60000));
	/* a cold start that does not fit beside the job: the job's state is spilled */
	T_EQ_INT(rt_sched_load(e.s, "digits"), 0);
	T_CHECK(wait_for(&e, id, fn_warm, 60000));
	T_CHECK(strcmp(state_of(&e, id), "succeeded") != 0);   /* still running: a real spill */
	T_EQ_INT(runner_int(&e, id, "spills"), 1);
	T_CHECK(off_device(&e, id));
	T_CHECK(metric_has(&e, "thaw_job_spills_total 1"));
	/* the job goes on from host memory while the function stays */
	json_t *o = job(&e, id);
	double p0 = json_number_value(json_object_get(o, "progress"));
	json_decref(o);
	double p1 = p0;
	for (int i = 0; i < 5000 && p1 <= p0 && !finished(&e, id); i++) {
		uv_run(&e.loop, UV_RUN_NOWAIT);
		usleep(1000);
		o = job(&e, id);
		p1 = json_number_value(json_object_get(o, "progress"));
		json_decref(o);
	}
	T_CHECK(p1 > p0 || finished(&e, id));
	T_CHECK(off_device(&e, id));
	/* the function goes: the state goes back to the device */
	T_EQ_INT(rt_sched_unload(e.s, "digits"), 0);
	T_CHECK(wait_for(&e, id, fn_cold, 60000));
	T_CHECK(wait_for(&e, id, restored, 60000) || finished(&e, id));
	T_CHECK(wait_for(&e, id, finished, 120000));
	T_EQ_STR(state_of(&e, id), "succeeded");
	double acc = accuracy(&e, id);
	fprintf(stderr, "  spilled %lld, restored %lld time(s); accuracy %.4f (uninterrupted %.4f)\n",
		(long long)runner_int(&e, id, "spills"), (long long)runner_int(&e, id, "restores"), acc,
		acc_ref);
	T_CHECK(runner_int(&e, id, "restores") >= 1);
	T_CHECK(metric_has(&e, "thaw_job_restores_total"));
	T_CHECK(acc >= 0.95);
	T_CHECK(fabs(acc - acc_ref) <= 0.01);
	env_close(&e);
}

static void test_spill_and_restore(void)
{
	if (!job_bytes || !fn_bytes)
		T_SKIP("sizes not measured (first test failed)");
	spill_and_restore(0);
}

/* the same on the real cuda:0 with its budget set to the same bytes: the state is spilled from
 * and restored to GPU memory, the steps are CUDA kernels */
static void test_gpu_spill_and_restore(void)
{
	if (kern_cuda_count() < 1)
		T_SKIP("no GPU");
	if (!job_bytes || !fn_bytes)
		T_SKIP("sizes not measured (first test failed)");
	spill_and_restore(1);
}

static void test_state_never_fits(void)
{
	env e;
	T_EQ_INT(env_open(&e, 64 << 10), 0);   /* 64 KiB: the data set alone is larger */
	int64_t id = submit(&e, 2);
	T_CHECK(id > 0);
	T_CHECK(wait_for(&e, id, finished, 120000));
	T_EQ_STR(state_of(&e, id), "succeeded");
	T_EQ_INT(runner_int(&e, id, "device_bytes"), 0);
	T_EQ_INT(runner_int(&e, id, "spills"), 0);
	env_close(&e);
}

void t_main(void)
{
	T_RUN(test_roomy_device);
	T_RUN(test_spill_and_restore);
	T_RUN(test_state_never_fits);
	T_RUN(test_gpu_spill_and_restore);
}

/* jobs_env.h — test helper (header only, static) of the in-process job tests (test_jobs.c,
 * test_jobs_dev.c): a data directory with the digits mlp packed and deployed under a given
 * manifest, a real registry, scheduler and job runner on one libuv loop, their orderly stop, and
 * the job state as the runner reports it. */
#ifndef THAW_TESTS_JOBS_ENV_H
#define THAW_TESTS_JOBS_ENV_H
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include "runtime/jobs/rt_jobs.h"
#include "runtime/base/rt_clock.h"
#include "runtime/base/rt_log.h"
#include "snapshot/snap_pack.h"
#include "tests/t.h"

typedef struct env {
	uv_loop_t loop;
	char data[1024];
	rt_registry *reg;
	rt_metrics *m;
	rt_sched *s;
	rt_jobs *J;
	const char *roots[1];
	char root[1024];
} env;

/* env_open_with: a fresh data directory (t_tmpdir()/TAG-N) where "digits" revision 1 is the
 * digits mlp under manifest mj, then a scheduler (sc) and a started job runner (jc) whose only
 * data root is tests/data. 0 or -1 (the reason on stderr). */
static int env_open_with(env *e, const char *tag, const char *mj, const rt_sched_config *sc,
			 const rt_jobs_config *jc)
{
	static int n;
	char err[512];
	memset(e, 0, sizeof *e);
	snprintf(e->data, sizeof e->data, "%s/%s-%d", t_tmpdir(), tag, ++n);
	mkdir(e->data, 0755);
	char snaps[1200], out[1300], src[1200];
	snprintf(snaps, sizeof snaps, "%s/snapshots", e->data);
	mkdir(snaps, 0755);
	snprintf(out, sizeof out, "%s/digits.thaw", snaps);
	snprintf(src, sizeof src, "%s/tests/data/mlp_digits/model.safetensors", t_src());
	snap_pack_opts po = {.kind = "mlp", .w = {.threads = 1}};
	if (snap_pack(src, out, &po, NULL, err, sizeof err) < 0) {
		fprintf(stderr, "  pack: %s\n", err);
		return -1;
	}
	uv_loop_init(&e->loop);
	if (rt_registry_open(e->data, &e->reg, err, sizeof err) < 0)
		return -1;
	rt_manifest m;
	if (rt_manifest_parse(mj, strlen(mj), NULL, NULL, &m, err, sizeof err) < 0 ||
	    rt_registry_put(e->reg, "digits", &m, out, NULL, err, sizeof err) < 0) {
		fprintf(stderr, "  deploy: %s\n", err);
		return -1;
	}
	e->m = rt_metrics_new();
	if (rt_sched_new(&e->loop, e->reg, e->m, sc, &e->s) < 0)
		return -1;
	snprintf(e->root, sizeof e->root, "%s/tests/data", t_src());
	e->roots[0] = e->root;
	if (rt_jobs_new(&e->loop, e->reg, e->s, e->m, e->data, e->roots, 1, jc, &e->J, err,
			sizeof err) < 0) {
		fprintf(stderr, "  jobs: %s\n", err);
		return -1;
	}
	rt_jobs_start(e->J);
	return 0;
}

static int env_stopped;
static void env_sched_stopped(void *ud) { (void)ud; env_stopped = 1; }
static void env_jobs_stopped(void *ud)
{
	env *e = ud;
	rt_sched_stop(e->s, env_sched_stopped, NULL);
}

/* env_close stops the runner, then the scheduler, and frees everything env_open_with made */
static void env_close(env *e)
{
	env_stopped = 0;
	if (e->J)
		rt_jobs_stop(e->J, env_jobs_stopped, e);
	for (int i = 0; i < 20000 && !env_stopped; i++)
		uv_run(&e->loop, UV_RUN_ONCE);
	rt_jobs_free(e->J);
	uv_run(&e->loop, UV_RUN_NOWAIT);
	rt_sched_free(e->s);
	rt_registry_close(e->reg);
	rt_metrics_free(e->m);
	uv_loop_close(&e->loop);
}

/* env_submit submits the job spec text (JSON): its id, or the negative errno (the error on stderr) */
static int64_t env_submit(env *e, const char *spec_text)
{
	char err[512];
	json_t *spec = json_loads(spec_text, 0, NULL);
	int64_t id = -1;
	int rc = rt_jobs_submit(e->J, spec, &id, err, sizeof err);
	if (rc < 0)
		fprintf(stderr, "  submit: %s\n", err);
	json_decref(spec);
	return rc < 0 ? rc : id;
}

/* state_of: job id's state ("(none)" when unknown); valid until the next call */
static const char *state_of(env *e, int64_t id)
{
	static char st[32];
	json_t *o = rt_jobs_get_json(e->J, id);
	snprintf(st, sizeof st, "%s", o ? json_string_value(json_object_get(o, "state")) : "(none)");
	json_decref(o);
	return st;
}
#endif

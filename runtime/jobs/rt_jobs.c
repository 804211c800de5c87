/* rt_jobs.c — the job store and runner (see rt_jobs.h).
 *
 * A job in memory (jrun) goes through phases, each finishing on the loop:
 *   PREPARE  (thread pool) kind.prepare: source + data into host memory, checkpoint loaded
 *   STEP     (lane, RT_WORK_BACKGROUND) kind.unit until step_ms passed, the job is done or
 *            invocation work waits; the done callback counts, checkpoints when due, and
 *            submits the next step (or pauses the job when its schedule no longer allows)
 *   FINISH   (thread pool) kind.finish writes the result snapshot; the loop registers it
 * A checkpoint write (thread pool) may run beside STEP; the state buffer is a copy taken on
 * the loop between steps. The lane invoke hook (lane thread) measures preemption latency. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include "runtime/base/rt_clock.h"
#include "runtime/base/rt_fault.h"
#include "runtime/jobs/rt_jobs.h"
#include "runtime/jobs/rt_jobs_int.h"
#include "runtime/sched/rt_cluster.h"
#include "runtime/sched/rt_lane.h"
#include "runtime/base/rt_log.h"
#include "runtime/store/rt_jobstore.h"
#include "runtime/store/rt_manifest.h"
#include "snapshot/snap.h"

#define LAT_RING 4096

#define state_names rt_job_state_names
enum {
	JS_QUEUED = RT_JOB_QUEUED, JS_RUNNING = RT_JOB_RUNNING, JS_PREEMPTED = RT_JOB_PREEMPTED,
	JS_SUCCEEDED = RT_JOB_SUCCEEDED, JS_FAILED = RT_JOB_FAILED, JS_CANCELLED = RT_JOB_CANCELLED,
	JS_COUNT = RT_JOB_STATES
};

/* one row */
typedef struct jrow {
	int64_t id;
	char type[16];
	char function[RT_MANIFEST_NAME_MAX + 1];   /* "" when none */
	uint32_t revision;
	char snapshot[4096];
	json_t *params, *schedule_json, *metrics;
	rt_job_schedule schedule;
	int priority;
	char device[32];
	int state;
	double progress;
	int64_t step, preemptions;
	int64_t created_ms, started_ms, finished_ms, updated_ms;   /* 0 = null */
	char error[1024];
	char result_snapshot[4096];
	uint32_t result_revision;
	char checkpoint[4096];
	char owner[RT_NODE_ID_MAX + 1];            /* the lease holder as loaded; "" when none */
} jrow;

enum { PH_PREPARE, PH_STEP, PH_FINISH, PH_IDLE };

typedef struct jlane jlane;
typedef struct jrun jrun;

struct jlane {
	rt_jobs *J;
	rt_lane *lane;
	jrun *run;                 /* the job on this lane, or NULL */
	int active;                /* atomic: a job is on this lane (latency samples count) */
	int step_tid;              /* atomic: the lane thread while it runs a step as SCHED_IDLE */
};

struct jrun {
	rt_jobs *J;
	jlane *jl;
	jrow row;
	const rt_job_kind *kind;
	rt_job_env env;
	void *st;
	int phase;
	int busy;                  /* step, prepare or finish in flight */
	int ckpt_busy;             /* checkpoint write in flight */
	int ckpt_again;            /* paused meanwhile: checkpoint again when it is done */
	int cancel;                /* atomic: stop at the next unit */
	int pause;                 /* release after the current work (schedule, stop) */
	int done;                  /* the kind finished its units */
	int lost;                  /* the store says another node has it (or it was cancelled or
				    * finished there): no more saves, no files touched */
	int rc;
	char err[1024];
	uint64_t last_ckpt_ns;
	/* step */
	rt_work w;
	int step_yielded, step_done, step_rc;
	double lane_s, gap_s;      /* CPU time of the steps; lane idle after yields (lane thread) */
	int64_t step_units;
	char step_err[512];
	/* thread pool */
	uv_work_t uvw;
	void *ckpt_in;             /* prepare: checkpoint bytes read */
	size_t ckpt_in_len;
	/* device state (a GPU lane, or a fake one) */
	int dev_want;              /* the kind keeps device state and the lane is an accelerator */
	uint64_t dev_res;          /* bytes reserved in the lane's budget (loop thread) */
	int use_dev;               /* atomic: units may keep the state on the lane's device */
	int spill_busy, freeing, freed, dev_full_logged;
	int64_t spills, restores;
	rt_work sp_w, fr_w, cs_w;  /* lane items: spill, free, checkpoint copy */
	int sp_rc, cs_rc;
	char sp_err[256];
	/* checkpoint write */
	uv_work_t ckw;
	void *ck_buf;
	size_t ck_len;
	int ck_rc;
	char ck_err[256];
};

struct rt_jobs {
	uv_loop_t *loop;
	rt_registry *reg;
	rt_sched *sched;
	rt_jobs_config cfg;
	char data_dir[2048];
	const char *const *roots;
	size_t nroots;
	jlane lanes[RT_LANE_MAX];
	int nlanes;
	uv_timer_t timer;
	int timer_open;
	uv_timer_t renew_timer;    /* renews this node's job leases every lease_ms / 3 */
	int renew_open;
	char node[RT_NODE_ID_MAX + 1];
	int stopping;
	int hooks_cleared;         /* lane hooks removed (before the lanes may stop) */
	void (*stopped)(void *);
	void *stopped_ud;
	rt_metric_family *m_jobs, *m_steps, *m_preempt, *m_lat, *m_spill, *m_restore;
	pthread_mutex_t lat_mu;
	double lat[LAT_RING];
	uint64_t nlat;
};

static const double lat_buckets[] = {
	0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1,
};

static void pick(rt_jobs *J);
static void submit_step(jrun *r);
static void run_release(jrun *r);
static void run_lost(jrun *r);

static int64_t clock_now(rt_jobs *J)
{
	return J->cfg.clock_ms ? J->cfg.clock_ms(J->cfg.clock_ud) : rt_clock_wall_ms();
}

void rt_jobs_config_defaults(rt_jobs_config *c)
{
	memset(c, 0, sizeof *c);
	c->idle_s = 60;
	c->checkpoint_s = 10;
	c->step_ms = 2;
	c->gpu_step_ms = 1;
	c->poll_s = 0.5;
	c->lease_ms = 3000;
}

const char *rt_jobs_node(const rt_jobs *J)
{
	return J->node;
}

/* ---- schedules ---- */

static int parse_hhmm(const char *s, int *min)
{
	int h, m, n = 0;
	if (sscanf(s, "%2d:%2d%n", &h, &m, &n) != 2 || n != 5 || h < 0 || h > 24 || m < 0 || m > 59 ||
	    (h == 24 && m != 0))
		return -1;
	*min = h * 60 + m;
	return 0;
}

int rt_job_schedule_parse(const json_t *v, rt_job_schedule *s, char *err, size_t errlen)
{
	memset(s, 0, sizeof *s);
	if (!v || (json_is_string(v) && !strcmp(json_string_value(v), "now")))
		return 0;
	if (json_is_string(v) && !strcmp(json_string_value(v), "idle")) {
		s->kind = RT_JOB_SCHED_IDLE;
		return 0;
	}
	if (!json_is_object(v))
		return rt_errf(err, errlen, -EINVAL, "schedule: must be \"now\", \"idle\" or "
			       "{\"window\": \"HH:MM-HH:MM\", \"tz\": \"UTC\"}");
	const char *k;
	json_t *x;
	json_object_foreach((json_t *)v, k, x)
		if (strcmp(k, "window") && strcmp(k, "tz"))
			return rt_errf(err, errlen, -EINVAL, "schedule.%s: unknown field", k);
	const char *w = json_string_value(json_object_get(v, "window"));
	if (!w || strlen(w) != 11 || w[5] != '-' || parse_hhmm(w, &s->start_min) < 0 ||
	    parse_hhmm(w + 6, &s->end_min) < 0 || s->start_min == s->end_min)
		return rt_errf(err, errlen, -EINVAL, "schedule.window: must be \"HH:MM-HH:MM\" (24-hour "
			       "clock, start != end; it may wrap midnight)");
	const json_t *tz = json_object_get(v, "tz");
	if (tz) {
		const char *t = json_string_value(tz);
		int h, m, n = 0;
		if (t && (!strcmp(t, "UTC") || !strcmp(t, "Z"))) {
			s->tz_min = 0;
		} else if (t && (t[0] == '+' || t[0] == '-') && sscanf(t + 1, "%2d:%2d%n", &h, &m, &n) == 2 &&
			   n == 5 && t[6] == 0 && h <= 14 && m <= 59) {
			s->tz_min = (t[0] == '-' ? -1 : 1) * (h * 60 + m);
		} else {
			return rt_errf(err, errlen, -EINVAL, "schedule.tz: must be \"UTC\" or an offset "
				       "\"+HH:MM\" / \"-HH:MM\"");
		}
	}
	s->kind = RT_JOB_SCHED_WINDOW;
	return 0;
}

int rt_job_schedule_allows(const rt_job_schedule *s, int64_t now_ms, double lane_idle_s,
			   double idle_needed_s)
{
	switch (s->kind) {
	case RT_JOB_SCHED_IDLE:
		return lane_idle_s >= idle_needed_s;
	case RT_JOB_SCHED_WINDOW: {
		int64_t local_min = (now_ms / 60000 + s->tz_min) % 1440;
		if (local_min < 0)
			local_min += 1440;
		int m = (int)local_min;
		if (s->start_min < s->end_min)
			return m >= s->start_min && m < s->end_min;
		return m >= s->start_min || m < s->end_min;   /* wraps midnight */
	}
	default:
		return 1;
	}
}

/* ---- store ---- */

static int state_of(const char *s)
{
	for (int i = 0; i < JS_COUNT; i++)
		if (s && !strcmp(s, state_names[i]))
			return i;
	return -1;
}

static void row_clear(jrow *r)
{
	json_decref(r->params);
	json_decref(r->schedule_json);
	json_decref(r->metrics);
	r->params = r->schedule_json = r->metrics = NULL;
}

static int row_load(rt_jobs *J, int64_t id, jrow *r)
{
	rt_job_row *d = malloc(sizeof *d);
	memset(r, 0, sizeof *r);
	if (!d)
		return -ENOMEM;
	int rc = rt_jobstore_get(J->reg, id, d);
	if (rc < 0) {
		free(d);
		return rc;
	}
	r->id = d->id;
	memcpy(r->type, d->type, sizeof r->type);
	memcpy(r->function, d->function, sizeof r->function);
	r->revision = d->revision;
	memcpy(r->snapshot, d->snapshot, sizeof r->snapshot);
	r->params = d->params;            /* the row's references move here */
	r->schedule_json = d->schedule;
	r->metrics = d->metrics;
	rt_job_schedule_parse(r->schedule_json, &r->schedule, NULL, 0);
	r->priority = d->priority;
	memcpy(r->device, d->device, sizeof r->device);
	r->state = d->state;
	r->progress = d->progress;
	r->step = d->step;
	r->preemptions = d->preemptions;
	r->created_ms = d->created_ms;
	r->started_ms = d->started_ms;
	r->finished_ms = d->finished_ms;
	r->updated_ms = d->updated_ms;
	memcpy(r->error, d->error, sizeof r->error);
	memcpy(r->result_snapshot, d->result_snapshot, sizeof r->result_snapshot);
	r->result_revision = d->result_revision;
	memcpy(r->checkpoint, d->checkpoint, sizeof r->checkpoint);
	memcpy(r->owner, d->owner, sizeof r->owner);
	free(d);
	return 0;
}

static void update_gauges(rt_jobs *J)
{
	int64_t n[JS_COUNT] = {0};
	if (rt_jobstore_counts(J->reg, n) < 0)
		return;
	for (int i = 0; i < JS_COUNT; i++) {
		const char *kv[] = {"state", state_names[i]};
		rt_metric_set(J->m_jobs, (double)n[i], 1, kv);
	}
}

/* writes r's progress columns while owner holds the job ("": while nobody does; NULL: in any
 * case), with state stored in place of r->state: 0, -ESTALE (the job changed hands: nothing
 * written), -EIO */
static int row_save_as(rt_jobs *J, jrow *r, const char *owner, int state)
{
	rt_job_row *d = calloc(1, sizeof *d);
	if (!d)
		return -ENOMEM;
	r->updated_ms = rt_clock_wall_ms();
	d->id = r->id;
	d->state = state;
	d->progress = r->progress;
	d->step = r->step;
	d->metrics = r->metrics;          /* borrowed */
	d->preemptions = r->preemptions;
	d->started_ms = r->started_ms;
	d->finished_ms = r->finished_ms;
	d->updated_ms = r->updated_ms;
	memcpy(d->error, r->error, sizeof d->error);
	memcpy(d->result_snapshot, r->result_snapshot, sizeof d->result_snapshot);
	d->result_revision = r->result_revision;
	memcpy(d->checkpoint, r->checkpoint, sizeof d->checkpoint);
	int rc = owner ? rt_jobstore_save_owned(J->reg, d, owner) : rt_jobstore_save(J->reg, d);
	free(d);
	if (rc == -ESTALE)
		return rc;
	if (rc < 0) {
		rt_logf(RT_LOG_ERROR, "jobs: saving job %" PRId64 ": %s", r->id, strerror(-rc));
		return -EIO;
	}
	update_gauges(J);
	return 0;
}

/* saves the progress of a job on this node's lane under its lease. A step that yielded to
 * invocation work shows `preempted` but keeps the job (stored as running, its lease held);
 * `preempted` is stored (and the lease given up) only as the run leaves the lane. A save that
 * finds the job taken over marks the run lost (run_lost): the caller's next step releases it. */
static int run_save(jrun *r, int leaving)
{
	if (r->lost)
		return -ESTALE;
	int st = r->row.state == JS_PREEMPTED && !leaving ? JS_RUNNING : r->row.state;
	int rc = row_save_as(r->J, &r->row, r->J->node, st);
	if (rc == -ESTALE)
		run_lost(r);
	return rc;
}

static json_t *time_json(int64_t ms)
{
	char t[40];
	if (!ms)
		return json_null();
	rt_registry_format_time(ms, t, sizeof t);
	return json_string(t);
}

static json_t *opt_str(const char *s)
{
	return s && s[0] ? json_string(s) : json_null();
}

static json_t *row_json(const jrow *r)
{
	json_t *o = json_object();
	json_object_set_new(o, "id", json_integer(r->id));
	json_object_set_new(o, "type", json_string(r->type));
	json_object_set_new(o, "function", opt_str(r->function));
	json_object_set_new(o, "revision", r->revision ? json_integer(r->revision) : json_null());
	json_object_set_new(o, "snapshot", opt_str(r->snapshot));
	json_object_set_new(o, "params", r->params ? json_incref(r->params) : json_object());
	json_object_set_new(o, "schedule", r->schedule_json ? json_incref(r->schedule_json) :
			    json_string("now"));
	json_object_set_new(o, "priority", json_integer(r->priority));
	json_object_set_new(o, "device", json_string(r->device));
	json_object_set_new(o, "state", json_string(r->state >= 0 ? state_names[r->state] : "?"));
	json_object_set_new(o, "progress", json_real(r->progress));
	json_object_set_new(o, "step", json_integer(r->step));
	json_t *m = r->metrics && json_is_object(r->metrics) ? json_copy(r->metrics) : json_object();
	json_t *runner = json_incref(json_object_get(m, "runner"));
	json_object_del(m, "runner");
	json_object_set_new(o, "metrics", m);
	json_object_set_new(o, "runner", runner ? runner : json_null());
	json_object_set_new(o, "preemptions", json_integer(r->preemptions));
	json_object_set_new(o, "created", time_json(r->created_ms));
	json_object_set_new(o, "started", time_json(r->started_ms));
	json_object_set_new(o, "finished", time_json(r->finished_ms));
	json_object_set_new(o, "updated", time_json(r->updated_ms));
	json_object_set_new(o, "error", opt_str(r->error));
	if (r->result_snapshot[0])
		json_object_set_new(o, "result", json_pack("{s:s,s:o}", "snapshot", r->result_snapshot,
							   "revision", r->result_revision ?
							   json_integer(r->result_revision) : json_null()));
	else
		json_object_set_new(o, "result", json_null());
	json_object_set_new(o, "checkpoint", opt_str(r->checkpoint));
	json_object_set_new(o, "node", opt_str(r->owner));
	return o;
}

static jrun *find_run(rt_jobs *J, int64_t id)
{
	for (int i = 0; i < J->nlanes; i++)
		if (J->lanes[i].run && J->lanes[i].run->row.id == id)
			return J->lanes[i].run;
	return NULL;
}

json_t *rt_jobs_get_json(rt_jobs *J, int64_t id)
{
	jrun *r = find_run(J, id);
	if (r) {
		json_t *o = row_json(&r->row);   /* the live figures */
		json_object_set_new(o, "lane", json_string(rt_lane_name(r->jl->lane)));
		return o;
	}
	jrow row;
	if (row_load(J, id, &row) < 0)
		return NULL;
	json_t *o = row_json(&row);
	row_clear(&row);
	return o;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static json_t *latency_json(rt_jobs *J)
{
	double *v = malloc(LAT_RING * sizeof *v);
	size_t n = 0;
	pthread_mutex_lock(&J->lat_mu);
	n = J->nlat < LAT_RING ? (size_t)J->nlat : LAT_RING;
	if (v)
		memcpy(v, J->lat, n * sizeof *v);
	uint64_t total = J->nlat;
	pthread_mutex_unlock(&J->lat_mu);
	json_t *o = json_pack("{s:I}", "samples", (json_int_t)total);
	if (v && n) {
		qsort(v, n, sizeof *v, cmp_double);
		json_object_set_new(o, "p50_ms", json_real(v[(n - 1) / 2] * 1e3));
		json_object_set_new(o, "p99_ms", json_real(v[(size_t)((double)(n - 1) * 0.99)] * 1e3));
		json_object_set_new(o, "max_ms", json_real(v[n - 1] * 1e3));
	}
	free(v);
	return o;
}

int rt_jobs_list_json(rt_jobs *J, const char *state, json_t **out)
{
	int st = -1;
	if (state && (st = state_of(state)) < 0)
		return -EINVAL;
	/* a job on a lane may show another state than the stored one (preempted between steps):
	 * filter on what is shown, over every job when it may be live */
	int any_live = 0;
	for (int i = 0; i < J->nlanes; i++)
		any_live |= J->lanes[i].run != NULL;
	int64_t *ids = NULL;
	size_t n = 0;
	int lrc = rt_jobstore_ids(J->reg, st >= 0 && !any_live ? st : -1, &ids, &n);
	if (lrc < 0)
		return lrc;
	json_t *arr = json_array();
	for (size_t i = 0; i < n; i++) {
		json_t *j = rt_jobs_get_json(J, ids[i]);
		if (j && (st < 0 || !strcmp(json_string_value(json_object_get(j, "state")), state_names[st])))
			json_array_append_new(arr, j);
		else
			json_decref(j);
	}
	free(ids);
	*out = json_pack("{s:o,s:o}", "jobs", arr, "preemption", latency_json(J));
	return 0;
}

/* ---- paths ---- */

static int mkdir_one(const char *p)
{
	return mkdir(p, 0700) < 0 && errno != EEXIST ? -errno : 0;
}

/* under reports whether real path p lies in directory d (real too) */
static int under(const char *p, const char *d)
{
	size_t n = strlen(d);
	return n && strncmp(p, d, n) == 0 && (p[n] == '/' || p[n] == 0 || d[n - 1] == '/');
}

/* resolves params.data: a bare name is DATA/data/NAME; an absolute path must lie (after
 * realpath) in DATA or an allowed root. must_exist: else a missing file is fine (checked when
 * the job runs) as long as its directory is allowed. */
static int resolve_data(rt_jobs *J, const char *in, int must_exist, char *out, size_t cap,
			char *err, size_t errlen)
{
	char cand[PATH_MAX], real[PATH_MAX], root[PATH_MAX];
	if (!strchr(in, '/')) {
		if (!strcmp(in, ".") || !strcmp(in, ".."))
			return rt_errf(err, errlen, -EINVAL, "params.data: not a file name");
		snprintf(cand, sizeof cand, "%s/data/%s", J->data_dir, in);
	} else if (in[0] == '/') {
		snprintf(cand, sizeof cand, "%s", in);
	} else {
		return rt_errf(err, errlen, -EACCES, "params.data: must be a file name in DATA/data or an "
			       "absolute path");
	}
	if (!realpath(cand, real)) {
		if (must_exist || errno != ENOENT)
			return rt_errf(err, errlen, -ENOENT, "params.data: %s: %s", cand, strerror(errno));
		/* check the directory instead */
		char dir[PATH_MAX];
		snprintf(dir, sizeof dir, "%s", cand);
		char *slash = strrchr(dir, '/');
		if (slash)
			*slash = 0;
		if (!realpath(dir[0] ? dir : "/", real))
			return rt_errf(err, errlen, -ENOENT, "params.data: %s: %s", dir, strerror(errno));
	}
	int ok = realpath(J->data_dir, root) && under(real, root);
	for (size_t i = 0; !ok && i < J->nroots; i++)
		ok = realpath(J->roots[i], root) && under(real, root);
	if (!ok)
		return rt_errf(err, errlen, -EACCES, "params.data: '%s' is outside the data directory and "
			       "the allowed roots (thaw serve --allow-root)", in);
	struct stat st;   /* a FIFO or device would block the job's reader (it checks again) */
	if (stat(real, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
		return rt_errf(err, errlen, -EINVAL, "params.data: '%s' is not a regular file", in);
	if ((size_t)snprintf(out, cap, "%s", must_exist ? real : cand) >= cap)
		return rt_errf(err, errlen, -ENAMETOOLONG, "params.data: path too long");
	return 0;
}

/* ---- submit / cancel ---- */

int rt_jobs_submit(rt_jobs *J, const json_t *spec, int64_t *id, char *err, size_t errlen)
{
	static const char *const fields[] = {"type", "function", "snapshot", "params", "schedule",
					     "priority", "device", "revision", NULL};
	if (!json_is_object(spec))
		return rt_errf(err, errlen, -EINVAL, "job spec must be a JSON object");
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)spec, k, v) {
		int ok = 0;
		for (int i = 0; fields[i]; i++)
			ok |= !strcmp(fields[i], k);
		if (!ok)
			return rt_errf(err, errlen, -EINVAL, "%s: unknown field", k);
	}
	const char *type = json_string_value(json_object_get(spec, "type"));
	const rt_job_kind *kind = rt_job_kind_find(type);
	if (!kind)
		return rt_errf(err, errlen, -EINVAL, "type: must be \"quantize\" or \"finetune\"");
	const json_t *fj = json_object_get(spec, "function"), *sj = json_object_get(spec, "snapshot");
	if ((fj && sj) || (!fj && !sj))
		return rt_errf(err, errlen, -EINVAL, "function: give either \"function\" or \"snapshot\"");
	const json_t *params = json_object_get(spec, "params");
	if (params && !json_is_object(params))
		return rt_errf(err, errlen, -EINVAL, "params: must be an object");
	json_t *pcopy = params ? json_deep_copy(params) : json_object();
	rt_job_schedule sch;
	const json_t *schj = json_object_get(spec, "schedule");
	int rc = rt_job_schedule_parse(schj, &sch, err, errlen);
	if (rc < 0)
		goto out;
	const json_t *pj = json_object_get(spec, "priority");
	if (pj && (!json_is_integer(pj) || json_integer_value(pj) < -1000 || json_integer_value(pj) > 1000)) {
		rc = rt_errf(err, errlen, -EINVAL, "priority: must be an integer in -1000..1000");
		goto out;
	}
	const json_t *dj = json_object_get(spec, "device");
	const char *dev = dj ? json_string_value(dj) : "auto";
	if (!dev || (strcmp(dev, "auto") && strcmp(dev, "cpu") && strncmp(dev, "cuda:", 5))) {
		rc = rt_errf(err, errlen, -EINVAL, "device: must be \"auto\", \"cpu\" or \"cuda:N\"");
		goto out;
	}
	if (!rt_sched_lane_find(J->sched, dev)) {
		rc = rt_errf(err, errlen, -EINVAL, "device: %s is not available on this node", dev);
		goto out;
	}
	char fn[RT_MANIFEST_NAME_MAX + 1] = "", snap[4096] = "";
	uint32_t rev = 0;
	const char *src_kind = NULL;
	rt_revision_info info;
	if (fj) {
		const json_t *rj = json_object_get(spec, "revision");
		if (rj && (!json_is_integer(rj) || json_integer_value(rj) < 1 ||
			   json_integer_value(rj) > RT_MANIFEST_REV_MAX)) {
			rc = rt_errf(err, errlen, -EINVAL, "revision: must be a revision number 1..%u",
				     RT_MANIFEST_REV_MAX);
			goto out;
		}
		const char *name = json_string_value(fj);
		if (!name || rt_manifest_name_valid(name, NULL, 0) < 0) {
			rc = rt_errf(err, errlen, -EINVAL, "function: not a valid function name");
			goto out;
		}
		if (rt_registry_get_revision(J->reg, name, rj ? (uint32_t)json_integer_value(rj) :
					     RT_MANIFEST_REV_LATEST, &info) < 0) {
			if (rj)
				rc = rt_errf(err, errlen, -ENOENT, "function '%s' revision %d not found", name,
					     (int)json_integer_value(rj));
			else
				rc = rt_errf(err, errlen, -ENOENT, "function '%s' not found", name);
			goto out;
		}
		if (!info.snapshot_path[0]) {
			rc = rt_errf(err, errlen, -EINVAL, "function: '%s' has no snapshot (a %s)", name,
				     info.manifest.kind);
			goto out;
		}
		snprintf(fn, sizeof fn, "%s", name);
		snprintf(snap, sizeof snap, "%s", info.snapshot_path);
		rev = info.rev;
		src_kind = info.manifest.kind;
	} else {
		if (json_object_get(spec, "revision")) {
			rc = rt_errf(err, errlen, -EINVAL, "revision: only with \"function\"");
			goto out;
		}
		const char *sp = json_string_value(sj);
		if (!sp) {
			rc = rt_errf(err, errlen, -EINVAL, "snapshot: must be a file name or path");
			goto out;
		}
		char e2[512];
		rc = rt_manifest_resolve_snapshot(J->data_dir, J->roots, J->nroots, sp, snap, sizeof snap,
						  e2, sizeof e2);
		if (rc < 0) {
			rc = rt_errf(err, errlen, rc == -EACCES ? -EACCES : -EINVAL, "snapshot: %s", e2);
			goto out;
		}
	}
	if ((rc = kind->check(pcopy, src_kind, err, errlen)) < 0)
		goto out;
	const char *data = json_string_value(json_object_get(pcopy, "data"));
	char dpath[4096];
	if (data && (rc = resolve_data(J, data, 0, dpath, sizeof dpath, err, errlen)) < 0)
		goto out;
	rt_job_row *d = calloc(1, sizeof *d);
	if (!d) {
		rc = rt_errf(err, errlen, -ENOMEM, "out of memory");
		goto out;
	}
	snprintf(d->type, sizeof d->type, "%s", type);
	snprintf(d->function, sizeof d->function, "%s", fn);
	d->revision = rev;
	snprintf(d->snapshot, sizeof d->snapshot, "%s", snap);
	d->params = pcopy;                    /* borrowed */
	d->schedule = (json_t *)schj;
	d->priority = pj ? (int)json_integer_value(pj) : 0;
	snprintf(d->device, sizeof d->device, "%s", dev);
	d->created_ms = rt_clock_wall_ms();
	int src = rt_jobstore_insert(J->reg, d, id);
	free(d);
	if (src < 0) {
		rc = rt_errf(err, errlen, -EIO, "job store: %s", strerror(-src));
		goto out;
	}
	rt_logf(RT_LOG_INFO, "job %" PRId64 " queued: %s of %s", *id, type, fn[0] ? fn : snap);
	update_gauges(J);
	pick(J);
	rc = 0;
out:
	json_decref(pcopy);
	return rc;
}

int rt_jobs_cancel(rt_jobs *J, int64_t id, char *err, size_t errlen)
{
	jrun *r = find_run(J, id);
	if (r && (r->row.state == JS_SUCCEEDED || r->row.state == JS_FAILED ||
		  r->row.state == JS_CANCELLED))
		return rt_errf(err, errlen, -EALREADY, "job %" PRId64 " already %s", id,
			       state_names[r->row.state]);
	if (r && !r->lost) {
		__atomic_store_n(&r->cancel, 1, __ATOMIC_RELEASE);
		r->row.state = JS_CANCELLED;
		r->row.finished_ms = rt_clock_wall_ms();
		int src = run_save(r, 1);
		if (!r->busy && !r->ckpt_busy)
			run_release(r);
		if (src == -ESTALE)   /* r was lost (or is released now): cancel the stored row */
			return rt_jobs_cancel(J, id, err, errlen);
		return 0;
	}
	/* a job no lane here runs: cancelled in the store if it did not change hands since it was
	 * read (its owner, on another node, sees it at its next save or renewal and stops) */
	for (int tries = 0; tries < 8; tries++) {
		jrow row;
		if (row_load(J, id, &row) < 0)
			return rt_errf(err, errlen, -ENOENT, "job %" PRId64 " not found", id);
		int rc = 0;
		if (row.state == JS_SUCCEEDED || row.state == JS_FAILED || row.state == JS_CANCELLED) {
			rc = rt_errf(err, errlen, -EALREADY, "job %" PRId64 " already %s", id,
				     state_names[row.state]);
		} else {
			char ckpt[sizeof row.checkpoint];
			memcpy(ckpt, row.checkpoint, sizeof ckpt);
			row.state = JS_CANCELLED;
			row.finished_ms = rt_clock_wall_ms();
			row.checkpoint[0] = 0;
			rc = row_save_as(J, &row, row.owner, JS_CANCELLED);
			if (rc == 0) {
				if (ckpt[0])
					unlink(ckpt);
				if (row.owner[0])
					rt_logf(RT_LOG_INFO, "job %" PRId64 " cancelled (node %s, which runs it, "
						"stops it)", id, row.owner);
				else
					rt_logf(RT_LOG_INFO, "job %" PRId64 " cancelled", id);
			} else if (rc != -ESTALE) {
				rc = rt_errf(err, errlen, -EIO, "job store: %s", strerror(-rc));
			}
		}
		row_clear(&row);
		if (rc != -ESTALE)
			return rc;
	}
	return rt_errf(err, errlen, -EBUSY, "job %" PRId64 " kept changing hands; try again", id);
}

/* ---- the lane side ---- */

static void invoke_hook(void *ud, rt_lane *l, const rt_work *w, int started)
{
	jlane *jl = ud;
	(void)l;
	if (!started) {
		/* invocation work was queued: a step running as SCHED_IDLE gets a normal priority
		 * back at once, so that it reaches its next yield point even on a busy CPU */
		pid_t tid = __atomic_load_n(&jl->step_tid, __ATOMIC_ACQUIRE);
		if (tid) {
			struct sched_param sp = {0};
			sched_setscheduler(tid, SCHED_OTHER, &sp);
		}
		return;
	}
	if (!__atomic_load_n(&jl->active, __ATOMIC_ACQUIRE))
		return;
	rt_jobs *J = jl->J;
	double s = (double)(w->started_ns - w->enqueued_ns) / 1e9;
	rt_metric_observe(J->m_lat, s, 0, NULL);
	pthread_mutex_lock(&J->lat_mu);
	J->lat[J->nlat % LAT_RING] = s;
	J->nlat++;
	pthread_mutex_unlock(&J->lat_mu);
}

/* Job steps run as SCHED_IDLE when this process may switch a thread back to SCHED_OTHER
 * (probed once by idle_probe): the kernel then treats the CPU as idle, so the loop thread that
 * answers invocations (and anything else on the host) runs there at once instead of waiting
 * for a time slice; when invocation work is queued for the lane, the submitting thread lifts
 * the step back to SCHED_OTHER (invoke_hook) so that it reaches its next yield point promptly. */
static int idle_ok = -1;

static void *idle_probe(void *arg)
{
	(void)arg;
	struct sched_param sp = {0};
	pid_t tid = (pid_t)syscall(SYS_gettid);
	idle_ok = sched_setscheduler(tid, SCHED_IDLE, &sp) == 0 &&
		  sched_setscheduler(tid, SCHED_OTHER, &sp) == 0;
	return NULL;
}

static void run_step(rt_lane *lane, rt_work *w)
{
	jrun *r = w->ud;
	struct sched_param sp = {0};
	pid_t tid = 0;
	if (idle_ok == 1) {
		tid = (pid_t)syscall(SYS_gettid);
		__atomic_store_n(&r->jl->step_tid, tid, __ATOMIC_RELEASE);
		sched_setscheduler(tid, SCHED_IDLE, &sp);
	}
	kern_dev *dev = __atomic_load_n(&r->use_dev, __ATOMIC_ACQUIRE) ? rt_lane_dev(lane) : NULL;
	double step_ms = r->dev_want ? r->J->cfg.gpu_step_ms : r->J->cfg.step_ms;
	uint64_t t0 = rt_clock_mono_ns(), budget = (uint64_t)(step_ms * 1e6);
	double c0 = rt_clock_thread_s();
	if (r->step_yielded) {
		/* the lane between the invocation work that made the last step yield and this one */
		uint64_t li = rt_lane_last_invoke_ns(lane);
		if (li < t0)
			r->gap_s += (double)(t0 - li) / 1e9;
	}
	r->step_units = 0;
	r->step_yielded = r->step_done = r->step_rc = 0;
	r->step_err[0] = 0;
	for (;;) {
		if (__atomic_load_n(&r->cancel, __ATOMIC_ACQUIRE))
			break;
		if (rt_lane_has_waiting(lane)) {   /* also before the first unit */
			r->step_yielded = 1;
			break;
		}
		r->step_rc = r->kind->unit(r->st, dev, &r->step_done, r->step_err, sizeof r->step_err);
		r->step_units++;
		if (r->step_rc < 0 || r->step_done)
			break;
		if (rt_clock_mono_ns() - t0 >= budget)
			break;
	}
	r->lane_s += rt_clock_thread_s() - c0;
	if (tid) {
		__atomic_store_n(&r->jl->step_tid, 0, __ATOMIC_RELEASE);
		sched_setscheduler(tid, SCHED_OTHER, &sp);
	}
}

/* ---- checkpoints ---- */

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static void ckpt_work(uv_work_t *w)
{
	jrun *r = w->data;
	char tmp[4200], dir[4200];
	snprintf(dir, sizeof dir, "%s", r->env.ckpt_path);
	char *slash = strrchr(dir, '/');
	if (slash)
		*slash = 0;
	/* one temporary name per node: a node that lost the job while it wrote never renames
	 * another's half-written file */
	snprintf(tmp, sizeof tmp, "%s.%s.tmp", r->env.ckpt_path, r->J->node);
	unlink(tmp);   /* a leftover (or anything put there) is replaced, never opened */
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	int rc = fd < 0 ? -errno : write_all(fd, r->ck_buf, r->ck_len);
	rt_fault_point("job.checkpoint");
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	if (fd >= 0)
		close(fd);
	if (rc == 0 && rename(tmp, r->env.ckpt_path) < 0)
		rc = -errno;
	if (rc == 0) {
		int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd >= 0) {
			fsync(dfd);
			close(dfd);
		}
	} else {
		unlink(tmp);
	}
	r->ck_rc = rc;
	if (rc < 0)
		snprintf(r->ck_err, sizeof r->ck_err, "%s", strerror(-rc));
}

static void after_work(jrun *r);

static int checkpoint(jrun *r);

static void ckpt_after(uv_work_t *w, int status)
{
	jrun *r = w->data;
	free(r->ck_buf);
	r->ck_buf = NULL;
	r->ckpt_busy = 0;
	if (status == 0 && r->ck_rc == 0) {
		snprintf(r->row.checkpoint, sizeof r->row.checkpoint, "%s", r->env.ckpt_path);
		if (r->row.state != JS_CANCELLED)
			run_save(r, 0);
	} else {
		rt_logf(RT_LOG_WARN, "job %" PRId64 ": checkpoint failed: %s", r->row.id, r->ck_err);
	}
	/* a pause came while this (older) checkpoint was being written: write the state it
	 * stopped at, so that it resumes from there and not from an earlier step */
	if (r->ckpt_again) {
		r->ckpt_again = 0;
		if (r->st && !r->lost && checkpoint(r))
			return;
	}
	after_work(r);
}

/* queues the write of the state copied into ck_buf; 1 when queued */
static int ckpt_queue_write(jrun *r)
{
	r->ckw.data = r;
	if (uv_queue_work(r->J->loop, &r->ckw, ckpt_work, ckpt_after) < 0) {
		free(r->ck_buf);
		r->ck_buf = NULL;
		r->ckpt_busy = 0;
		return 0;
	}
	return 1;
}

/* lane thread: the copy of a state that may be on the lane's device */
static void ckpt_copy_run(rt_lane *lane, rt_work *w)
{
	jrun *r = w->ud;
	(void)lane;
	r->cs_rc = r->kind->save(r->st, &r->ck_buf, &r->ck_len);
}

static void ckpt_copy_done(rt_work *w)
{
	jrun *r = w->ud;
	if (r->cs_rc < 0) {
		rt_logf(RT_LOG_WARN, "job %" PRId64 ": checkpoint failed: copying the state: %s", r->row.id,
			strerror(-r->cs_rc));
		r->ck_buf = NULL;
		r->ckpt_busy = 0;
		after_work(r);
		return;
	}
	if (!ckpt_queue_write(r))
		after_work(r);
}

/* lane_submit queues w (run, then done on the loop thread; ud = r) on lane with *busy set
 * while it is queued or running; 0, or <0 with *busy cleared when the lane refuses (stopping) */
static int lane_submit(jrun *r, rt_lane *lane, rt_work *w, rt_work_class cls,
		       void (*run)(rt_lane *, rt_work *), void (*done)(rt_work *), int *busy)
{
	memset(w, 0, sizeof *w);
	w->cls = cls;
	w->run = run;
	w->done = done;
	w->ud = r;
	*busy = 1;
	int rc = rt_lane_submit(lane, w);
	if (rc < 0)
		*busy = 0;
	return rc;
}

/* starts a checkpoint write if the kind keeps them and none is running; 1 when started. A
 * state that may be on a device is copied on the lane thread (a lane item before the next
 * step), the rest here. */
static int checkpoint(jrun *r)
{
	if (!r->kind->save || r->ckpt_busy || r->row.state == JS_CANCELLED || r->freeing || r->freed ||
	    r->lost)
		return 0;
	r->last_ckpt_ns = rt_clock_mono_ns();
	if (r->dev_want)
		return lane_submit(r, r->jl->lane, &r->cs_w, RT_WORK_BACKGROUND, ckpt_copy_run,
				   ckpt_copy_done, &r->ckpt_busy) == 0;
	if (r->kind->save(r->st, &r->ck_buf, &r->ck_len) < 0)
		return 0;
	r->ckpt_busy = 1;
	return ckpt_queue_write(r);
}

/* ---- run lifecycle ---- */

/* the runner's own figures, stored with the metrics, shown apart as "runner" (loop thread:
 * nothing here reads the kind's state, so it may run while a step does) */
static void runner_figures(jrun *r)
{
	if (!r->row.metrics)
		return;
	json_t *run = json_pack("{s:f,s:f}", "cpu_seconds", r->lane_s, "resume_gap_seconds", r->gap_s);
	if (r->dev_want) {
		json_object_set_new(run, "device_bytes", json_integer((json_int_t)r->dev_res));
		json_object_set_new(run, "spills", json_integer(r->spills));
		json_object_set_new(run, "restores", json_integer(r->restores));
	}
	json_object_set_new(r->row.metrics, "runner", run);
}

static void live_figures(jrun *r)
{
	if (!r->st)
		return;
	r->row.progress = r->kind->progress(r->st);
	r->row.step = r->kind->steps(r->st);
	json_decref(r->row.metrics);
	r->row.metrics = r->kind->metrics(r->st);
	/* the runner's own figures, stored with the metrics, shown apart as "runner" */
	runner_figures(r);
}

static void run_free(jrun *r)
{
	if (r->dev_res) {
		rt_sched_job_release(r->J->sched, r->jl->lane, r->dev_res, 0);
		r->dev_res = 0;
	}
	if (r->st)
		r->kind->free(r->st);
	free(r->ckpt_in);
	row_clear(&r->row);
	free(r);
}

/* every job is off the lanes: remove the lane hooks (the lanes may stop after this), tell the
 * caller */
static void stop_done(rt_jobs *J)
{
	if (!J->hooks_cleared) {
		for (int i = 0; i < J->nlanes; i++)
			rt_lane_set_invoke_hook(J->lanes[i].lane, NULL, NULL);
		rt_sched_set_spill_hook(J->sched, NULL, NULL);
	}
	J->hooks_cleared = 1;
	if (J->renew_open)
		uv_timer_stop(&J->renew_timer);   /* no run is left: no lease to keep */
	if (J->stopped) {
		void (*cb)(void *) = J->stopped;
		J->stopped = NULL;
		cb(J->stopped_ud);
	}
}

/* lane thread: frees a state that may hold device memory (beside the lane's own work, never
 * beside a CUDA graph capture there) */
static void free_run(rt_lane *lane, rt_work *w)
{
	jrun *r = w->ud;
	(void)lane;
	r->kind->free(r->st);
	r->st = NULL;
}

static void free_done(rt_work *w)
{
	jrun *r = w->ud;
	r->freeing = 0;
	r->freed = 1;
	run_release(r);
}

/* drops the run from its lane (state already saved), then looks for more work */
static void run_release(jrun *r)
{
	rt_jobs *J = r->J;
	jlane *jl = r->jl;
	if (r->freeing)
		return;   /* free_done comes back here */
	if (r->st && r->dev_want && !r->freed) {
		if (lane_submit(r, jl->lane, &r->fr_w, RT_WORK_BACKGROUND, free_run, free_done,
				&r->freeing) == 0)
			return;   /* free_done comes back here */
	}
	__atomic_store_n(&jl->active, 0, __ATOMIC_RELEASE);
	jl->run = NULL;
	if (r->row.state == JS_CANCELLED && r->row.checkpoint[0]) {
		unlink(r->row.checkpoint);
		r->row.checkpoint[0] = 0;
		if (!r->lost)   /* the row is final, cancelled from here: nobody else writes it */
			row_save_as(J, &r->row, NULL, JS_CANCELLED);
	} else if (r->row.state == JS_RUNNING || r->row.state == JS_PREEMPTED) {
		/* leaves the lane unfinished (paused, stopping): stored preempted, the lease given up
		 * so that any node may resume it */
		r->row.state = JS_PREEMPTED;
		run_save(r, 1);
	}
	run_free(r);
	if (J->stopping) {
		for (int i = 0; i < J->nlanes; i++)
			if (J->lanes[i].run)
				return;
		stop_done(J);
		return;
	}
	pick(J);
}

static void run_fail(jrun *r, const char *msg)
{
	r->row.state = JS_FAILED;
	r->row.finished_ms = rt_clock_wall_ms();
	snprintf(r->row.error, sizeof r->row.error, "%s", msg);
	live_figures(r);
	run_save(r, 1);
	rt_logf(RT_LOG_ERROR, "job %" PRId64 " failed: %s", r->row.id, msg);
}

/* pause: checkpoint (when it keeps them), become preempted, leave memory */
static void run_pause(jrun *r, const char *why)
{
	r->pause = 1;
	if (r->row.state == JS_RUNNING || r->row.state == JS_PREEMPTED) {
		live_figures(r);
		r->row.state = JS_PREEMPTED;
		run_save(r, 0);
		rt_logf(RT_LOG_INFO, "job %" PRId64 " paused (%s) at %.1f%%", r->row.id, why,
			r->row.progress * 100);
	}
	if (r->phase == PH_STEP && r->st && !checkpoint(r) && r->ckpt_busy)
		r->ckpt_again = 1;   /* an older one is being written: this one after it */
	if (!r->ckpt_busy && !r->spill_busy)
		run_release(r);
}

static int schedule_allows_now(rt_jobs *J, const jrow *row, rt_lane *lane)
{
	double idle = (double)(rt_clock_mono_ns() - rt_lane_last_invoke_ns(lane)) / 1e9;
	if (rt_lane_queued(lane) > 0 && row->schedule.kind == RT_JOB_SCHED_IDLE)
		idle = 0;
	return rt_job_schedule_allows(&row->schedule, clock_now(J), idle, J->cfg.idle_s);
}

static void finish_work(uv_work_t *w)
{
	jrun *r = w->data;
	r->rc = r->kind->finish(r->st, &r->env, r->err, sizeof r->err);
}

/* registers the result as a new revision of the source function (loop) */
static int register_result(jrun *r, char *err, size_t errlen)
{
	rt_jobs *J = r->J;
	const char *base = strrchr(r->env.result_path, '/');
	snprintf(r->row.result_snapshot, sizeof r->row.result_snapshot, "%s", r->env.result_path);
	if (!r->row.function[0])
		return 0;
	rt_revision_info src, latest;
	if (rt_registry_get_revision(J->reg, r->row.function, r->row.revision, &src) < 0 ||
	    rt_registry_get(J->reg, r->row.function, &latest) < 0)
		return rt_errf(err, errlen, -ENOENT, "function '%s' revision %u is gone; the result stays "
			       "at %s", r->row.function, r->row.revision, r->env.result_path);
	rt_manifest m = src.manifest;
	snprintf(m.snapshot, sizeof m.snapshot, "%s", base ? base + 1 : r->env.result_path);
	const json_t *promote = json_object_get(r->row.params, "promote");
	memset(&m.traffic, 0, sizeof m.traffic);
	if (!json_is_true(promote)) {
		/* keep the split: "latest" means the revision that is latest now */
		rt_traffic t;
		if (rt_registry_get_traffic(J->reg, r->row.function, &t) == 0) {
			m.traffic = t;
			for (int i = 0; i < t.n; i++)
				if (t.e[i].rev == RT_MANIFEST_REV_LATEST)
					m.traffic.e[i].rev = latest.rev;
			/* sorted by revision, as the registry wants */
			for (int i = 0; i < m.traffic.n; i++)
				for (int k = i + 1; k < m.traffic.n; k++)
					if (m.traffic.e[k].rev < m.traffic.e[i].rev) {
						rt_traffic_entry x = m.traffic.e[i];
						m.traffic.e[i] = m.traffic.e[k];
						m.traffic.e[k] = x;
					}
		}
	}
	uint32_t rev = 0;
	int rc = rt_registry_put(J->reg, r->row.function, &m, r->env.result_path, &rev, err, errlen);
	if (rc < 0)
		return rc;
	r->row.result_revision = rev;
	rt_sched_deployed(J->sched, r->row.function);
	rt_logf(RT_LOG_INFO, "job %" PRId64 ": %s revision %u registered (%s)", r->row.id,
		r->row.function, rev, json_is_true(promote) ? "traffic moved to it" : "traffic unchanged");
	return 0;
}

static void finish_after(uv_work_t *w, int status)
{
	jrun *r = w->data;
	r->busy = 0;
	if (r->row.state == JS_CANCELLED) {
		unlink(r->env.result_path);
		after_work(r);
		return;
	}
	if (r->lost) {   /* the node that has it now writes (wrote) the same result */
		after_work(r);
		return;
	}
	char err[1024];
	if (status < 0 || r->rc < 0) {
		run_fail(r, r->err[0] ? r->err : "writing the result failed");
	} else if (register_result(r, err, sizeof err) < 0) {
		run_fail(r, err);
	} else {
		live_figures(r);
		r->row.progress = 1;
		r->row.state = JS_SUCCEEDED;
		r->row.finished_ms = rt_clock_wall_ms();
		char ckpt[sizeof r->row.checkpoint];
		memcpy(ckpt, r->row.checkpoint, sizeof ckpt);
		r->row.checkpoint[0] = 0;
		if (run_save(r, 1) == 0) {
			if (ckpt[0])
				unlink(ckpt);
			rt_logf(RT_LOG_INFO, "job %" PRId64 " succeeded: %s", r->row.id, r->env.result_path);
		}
	}
	r->phase = PH_IDLE;
	after_work(r);
}

static void start_finish(jrun *r)
{
	r->phase = PH_FINISH;
	r->busy = 1;
	r->uvw.data = r;
	if (uv_queue_work(r->J->loop, &r->uvw, finish_work, finish_after) < 0) {
		r->busy = 0;
		run_fail(r, "cannot queue the result write");
		after_work(r);
	}
}

/* reserves room for the job's state on its accelerator lane; the next unit moves it there */
static void dev_try(jrun *r)
{
	if (!r->dev_want || r->dev_res || r->spill_busy || !r->st || r->J->stopping)
		return;
	uint64_t b = r->kind->dev_bytes(r->st);
	if (!b)
		return;
	if (rt_sched_job_reserve(r->J->sched, r->jl->lane, b) < 0) {
		if (!r->dev_full_logged)
			rt_logf(RT_LOG_INFO, "job %" PRId64 ": no room for its state (%.1f MiB) on %s now; it "
				"runs from host memory until there is", r->row.id, (double)b / (1 << 20),
				rt_lane_name(r->jl->lane));
		r->dev_full_logged = 1;
		return;
	}
	r->dev_full_logged = 0;
	r->dev_res = b;
	runner_figures(r);
	__atomic_store_n(&r->use_dev, 1, __ATOMIC_RELEASE);
	if (r->spills > 0) {
		r->restores++;
		rt_metric_add(r->J->m_restore, 1, 0, NULL);
		rt_logf(RT_LOG_INFO, "job %" PRId64 ": state goes back to %s (%.1f MiB; restore %" PRId64 ")",
			r->row.id, rt_lane_name(r->jl->lane), (double)b / (1 << 20), r->restores);
	}
}

/* lane thread: the job's state to host memory */
static void spill_run(rt_lane *lane, rt_work *w)
{
	jrun *r = w->ud;
	(void)lane;
	r->sp_err[0] = 0;
	r->sp_rc = r->st ? r->kind->spill(r->st, r->sp_err, sizeof r->sp_err) : 0;
}

static void spill_done(rt_work *w)
{
	jrun *r = w->ud;
	rt_jobs *J = r->J;
	uint64_t b = r->dev_res;
	r->spill_busy = 0;
	r->dev_res = 0;
	/* the cold start that asked goes on (after a failed copy it may find no room: its error) */
	rt_sched_job_release(J->sched, r->jl->lane, b, 1);
	if (r->sp_rc < 0) {
		if (r->row.state == JS_RUNNING || r->row.state == JS_PREEMPTED)
			run_fail(r, r->sp_err[0] ? r->sp_err : "spilling the job state failed");
	} else {
		r->spills++;
		rt_metric_add(J->m_spill, 1, 0, NULL);
		rt_logf(RT_LOG_INFO, "job %" PRId64 ": state spilled to host memory (%.1f MiB) for a cold "
			"start on %s; the job goes on from host memory", r->row.id, (double)b / (1 << 20),
			rt_lane_name(r->jl->lane));
	}
	runner_figures(r);
	after_work(r);   /* releases a failed run (or one paused meanwhile) */
}

/* the scheduler's spill hook (rt_sched_set_spill_hook): a cold start needs room on lane */
static uint64_t spill_hook(void *ud, rt_lane *lane)
{
	rt_jobs *J = ud;
	for (int i = 0; i < J->nlanes; i++) {
		jrun *r = J->lanes[i].run;
		if (J->lanes[i].lane != lane || !r || !r->dev_res || r->spill_busy || r->freeing)
			continue;
		__atomic_store_n(&r->use_dev, 0, __ATOMIC_RELEASE);   /* steps from now: host memory */
		/* RT_WORK_INVOKE: before the job's next step, with the cold start */
		if (lane_submit(r, lane, &r->sp_w, RT_WORK_INVOKE, spill_run, spill_done,
				&r->spill_busy) < 0) {
			__atomic_store_n(&r->use_dev, 1, __ATOMIC_RELEASE);
			return 0;
		}
		return r->dev_res;
	}
	return 0;
}

static void step_done(rt_work *w)
{
	jrun *r = w->ud;
	rt_jobs *J = r->J;
	r->busy = 0;
	const char *kv[] = {"type", r->row.type};
	rt_metric_add(J->m_steps, (double)r->step_units, 1, kv);
	if (r->step_yielded) {
		r->row.preemptions++;
		rt_metric_add(J->m_preempt, 1, 0, NULL);
	}
	if (r->row.state == JS_CANCELLED || r->lost) {
		after_work(r);
		return;
	}
	if (r->step_rc < 0) {
		run_fail(r, r->step_err[0] ? r->step_err : "job step failed");
		after_work(r);
		return;
	}
	r->row.state = r->step_yielded ? JS_PREEMPTED : JS_RUNNING;
	live_figures(r);
	if (r->step_done) {
		start_finish(r);
		return;
	}
	if (J->stopping) {
		run_pause(r, "daemon stopping");
		return;
	}
	if (!schedule_allows_now(J, &r->row, r->jl->lane)) {
		run_pause(r, r->row.schedule.kind == RT_JOB_SCHED_IDLE ? "invocation traffic" :
			  "outside its window");
		return;
	}
	if (rt_clock_mono_ns() - r->last_ckpt_ns >= (uint64_t)(J->cfg.checkpoint_s * 1e9))
		checkpoint(r);
	dev_try(r);
	submit_step(r);
}

static void submit_step(jrun *r)
{
	r->phase = PH_STEP;
	if (lane_submit(r, r->jl->lane, &r->w, RT_WORK_BACKGROUND, run_step, step_done, &r->busy) < 0)
		run_pause(r, "lane stopping");
}

/* after a step, a thread-pool task or a checkpoint finished with nothing else to do now */
static void after_work(jrun *r)
{
	if (r->busy || r->ckpt_busy || r->spill_busy || r->freeing)
		return;
	if (r->row.state == JS_CANCELLED || r->row.state == JS_FAILED ||
	    r->row.state == JS_SUCCEEDED || r->pause) {
		run_release(r);
		return;
	}
}

/* the store says this node no longer holds job r: cancelled (from any node) it stops as a local
 * cancel does; taken over by another node (this one's lease ran out) or finished there, it
 * leaves the lane with no more saves and no file touched. Marks r only (its step stops at the
 * next unit): the caller, or the completion of the work in flight, releases it. */
static void run_lost(jrun *r)
{
	if (r->lost)
		return;
	r->lost = 1;
	rt_job_row *d = calloc(1, sizeof *d);
	int cancelled = d && rt_jobstore_get(r->J->reg, r->row.id, d) == 0 && d->state == JS_CANCELLED;
	if (d) {
		if (!cancelled)
			rt_logf(RT_LOG_WARN, "job %" PRId64 ": taken over by node %s (%s there); this node "
				"stops running it", r->row.id, d->owner[0] ? d->owner : "(none)",
				d->state >= 0 ? state_names[d->state] : "?");
		rt_job_row_clear(d);
		free(d);
	}
	__atomic_store_n(&r->cancel, 1, __ATOMIC_RELEASE);
	r->pause = 1;
	if (cancelled) {
		rt_logf(RT_LOG_INFO, "job %" PRId64 " cancelled from another node: stopping it", r->row.id);
		r->row.state = JS_CANCELLED;
	} else if (r->row.state == JS_CANCELLED || r->row.state == JS_RUNNING ||
		   r->row.state == JS_QUEUED) {
		r->row.state = JS_PREEMPTED;   /* in memory only: nothing is cleaned up */
	}
}

/* the renewal timer: extends this node's leases, then drops the runs the store says it lost */
static void on_renew(uv_timer_t *t)
{
	rt_jobs *J = t->data;
	int n = 0;
	if (rt_jobstore_renew(J->reg, J->node, J->cfg.lease_ms, &n) < 0) {
		rt_logf(RT_LOG_WARN, "jobs: cannot renew the job leases of node %s", J->node);
		return;
	}
	rt_job_row *d = calloc(1, sizeof *d);
	if (!d)
		return;
	for (int i = 0; i < J->nlanes; i++) {
		jrun *r = J->lanes[i].run;
		if (!r || r->lost || (r->row.state != JS_RUNNING && r->row.state != JS_PREEMPTED))
			continue;
		int rc = rt_jobstore_get(J->reg, r->row.id, d);
		if (rc == 0 && (d->state == JS_CANCELLED || d->state == JS_SUCCEEDED ||
				d->state == JS_FAILED || strcmp(d->owner, J->node) != 0))
			rc = -ESTALE;
		if (rc == 0 || rc == -ESTALE)
			rt_job_row_clear(d);
		if (rc == -ESTALE || rc == -ENOENT) {
			run_lost(r);
			if (!r->busy && !r->ckpt_busy && !r->spill_busy && !r->freeing)
				run_release(r);
		}
	}
	free(d);
}

static void prepare_work(uv_work_t *w)
{
	jrun *r = w->data;
	/* the checkpoint, if one was written */
	if (r->kind->save && r->row.checkpoint[0]) {
		int fd = snap_open_regular(r->row.checkpoint, 0);   /* never blocks on a FIFO */
		FILE *f = fd >= 0 ? fdopen(fd, "rb") : NULL;
		if (!f && fd >= 0)
			close(fd);
		if (!f && fd != -ENOENT)
			rt_logf(RT_LOG_WARN, "job %" PRId64 ": checkpoint %s unreadable (%s): starting over",
				r->row.id, r->row.checkpoint, fd == -EINVAL ? "not a regular file" :
				strerror(fd < 0 ? -fd : errno));
		if (f) {
			fseek(f, 0, SEEK_END);
			long n = ftell(f);
			fseek(f, 0, SEEK_SET);
			r->ckpt_in = n > 0 ? malloc((size_t)n) : NULL;
			if (r->ckpt_in && fread(r->ckpt_in, 1, (size_t)n, f) == (size_t)n)
				r->ckpt_in_len = (size_t)n;
			fclose(f);
		}
	}
	r->rc = r->kind->prepare(&r->env, r->ckpt_in_len ? r->ckpt_in : NULL, r->ckpt_in_len, &r->st,
				 r->err, sizeof r->err);
	if (r->rc < 0 && r->ckpt_in_len && r->rc == -EINVAL && strstr(r->err, "checkpoint")) {
		/* a checkpoint this job cannot use: start over rather than fail */
		r->ckpt_in_len = 0;
		r->err[0] = 0;
		r->rc = r->kind->prepare(&r->env, NULL, 0, &r->st, r->err, sizeof r->err);
	}
}

static void prepare_after(uv_work_t *w, int status)
{
	jrun *r = w->data;
	r->busy = 0;
	free(r->ckpt_in);
	r->ckpt_in = NULL;
	if (r->row.state == JS_CANCELLED || r->pause || r->J->stopping) {
		if (r->row.state != JS_CANCELLED && r->row.state != JS_FAILED)
			r->row.state = JS_PREEMPTED;   /* stored so as it leaves (run_release) */
		run_release(r);
		return;
	}
	if (status < 0 || r->rc < 0) {
		run_fail(r, r->err[0] ? r->err : "preparing the job failed");
		run_release(r);
		return;
	}
	if (r->ckpt_in_len)
		rt_logf(RT_LOG_INFO, "job %" PRId64 " resumed from its checkpoint at step %" PRId64,
			r->row.id, r->kind->steps(r->st));
	r->last_ckpt_ns = rt_clock_mono_ns();
	r->row.state = JS_RUNNING;
	dev_try(r);
	live_figures(r);
	if (run_save(r, 0) == -ESTALE) {
		run_release(r);
		return;
	}
	submit_step(r);
}

static void start_run(rt_jobs *J, jlane *jl, jrow *row)
{
	jrun *r = calloc(1, sizeof *r);
	char err[512];
	if (!r) {
		row_clear(row);
		return;
	}
	r->J = J;
	r->jl = jl;
	r->row = *row;   /* takes the JSON references */
	r->kind = rt_job_kind_find(r->row.type);
	rt_job_env *e = &r->env;
	e->id = r->row.id;
	e->type = r->row.type;
	e->params = r->row.params;
	e->function = r->row.function[0] ? r->row.function : NULL;
	e->revision = r->row.revision;
	snprintf(e->src_path, sizeof e->src_path, "%s", r->row.snapshot);
	char dir[3000];
	snprintf(dir, sizeof dir, "%s/jobs", J->data_dir);
	mkdir_one(dir);
	snprintf(dir, sizeof dir, "%s/jobs/%" PRId64, J->data_dir, r->row.id);
	mkdir_one(dir);
	snprintf(e->ckpt_path, sizeof e->ckpt_path, "%s/checkpoint.bin", dir);
	snprintf(dir, sizeof dir, "%s/snapshots", J->data_dir);
	mkdir_one(dir);
	if (e->function)
		snprintf(e->result_path, sizeof e->result_path, "%s/%s-%s-job%" PRId64 ".thaw", dir,
			 e->function, e->type, e->id);
	else
		snprintf(e->result_path, sizeof e->result_path, "%s/job%" PRId64 "-%s.thaw", dir, e->id,
			 e->type);
	r->dev_want = r->kind->dev_bytes && r->kind->spill && rt_sched_lane_is_accel(J->sched, jl->lane);
	e->unit_us = (r->dev_want ? J->cfg.gpu_step_ms : J->cfg.step_ms) * 1000.0 / 4;
	jl->run = r;
	__atomic_store_n(&jl->active, 1, __ATOMIC_RELEASE);
	if (!r->row.started_ms)
		r->row.started_ms = rt_clock_wall_ms();
	r->row.state = JS_RUNNING;
	r->row.error[0] = 0;
	snprintf(r->row.owner, sizeof r->row.owner, "%s", J->node);
	if (run_save(r, 0) == -ESTALE) {
		run_release(r);
		return;
	}
	rt_logf(RT_LOG_INFO, "job %" PRId64 " starting on %s (%s of %s)", r->row.id,
		rt_lane_name(jl->lane), r->row.type, e->function ? e->function : e->src_path);
	const char *data = json_string_value(json_object_get(r->row.params, "data"));
	if (data && resolve_data(J, data, 1, e->data_path, sizeof e->data_path, err, sizeof err) < 0) {
		run_fail(r, err);
		run_release(r);
		return;
	}
	r->phase = PH_PREPARE;
	r->busy = 1;
	r->uvw.data = r;
	if (uv_queue_work(J->loop, &r->uvw, prepare_work, prepare_after) < 0) {
		r->busy = 0;
		run_fail(r, "cannot queue the job's preparation");
		run_release(r);
	}
}

/* starts the best allowed waiting job on every lane that has none */
static void pick(rt_jobs *J)
{
	if (J->stopping)
		return;
	int free_lanes = 0;
	for (int i = 0; i < J->nlanes; i++)
		free_lanes += J->lanes[i].run == NULL;
	if (!free_lanes)
		return;
	int64_t ids[256];
	size_t n = 0;
	if (rt_jobstore_candidates(J->reg, ids, sizeof ids / sizeof ids[0], &n) < 0)
		return;
	for (size_t i = 0; i < n && free_lanes; i++) {
		if (find_run(J, ids[i]))
			continue;
		jrow row;
		if (row_load(J, ids[i], &row) < 0)
			continue;
		rt_lane *lane = NULL;
		jlane *jl = NULL;
		if (strcmp(row.device, "auto") == 0) {
			/* the free lane whose schedule allows it with the least serving work: jobs
			 * spread over idle GPUs (rt_sched_lane_score) */
			int best = -1, best_sc = 0;
			for (int k = 0; k < J->nlanes; k++) {
				int sc = rt_sched_lane_score(J->sched, k);
				if (J->lanes[k].run || sc < 0 ||
				    !schedule_allows_now(J, &row, J->lanes[k].lane))
					continue;
				if (best < 0 || sc < best_sc) {
					best = k;
					best_sc = sc;
				}
			}
			if (best >= 0)
				jl = &J->lanes[best];
			lane = jl ? jl->lane : NULL;
		} else {
			lane = rt_sched_lane_find(J->sched, row.device);
			for (int k = 0; k < J->nlanes; k++)
				if (J->lanes[k].lane == lane)
					jl = &J->lanes[k];
		}
		if (!jl || jl->run || !schedule_allows_now(J, &row, lane)) {
			row_clear(&row);
			continue;
		}
		/* the job runs here only once this node holds its lease; then its row is read again
		 * (the node that had it may have saved since the read above) */
		char was[sizeof row.owner];
		int was_running = row.state == JS_RUNNING;
		memcpy(was, row.owner, sizeof was);
		row_clear(&row);
		int crc = rt_jobstore_claim(J->reg, ids[i], J->node, J->cfg.lease_ms);
		if (crc < 0) {
			if (crc != -EBUSY && crc != -ENOENT)
				rt_logf(RT_LOG_WARN, "jobs: claiming job %" PRId64 ": %s", ids[i], strerror(-crc));
			continue;
		}
		if (row_load(J, ids[i], &row) < 0)
			continue;
		if (row.state != JS_QUEUED && row.state != JS_PREEMPTED && row.state != JS_RUNNING) {
			row_clear(&row);
			continue;
		}
		if (was_running && was[0] && strcmp(was, J->node) != 0)
			rt_logf(RT_LOG_INFO, "job %" PRId64 ": the lease of node %s ran out: resuming it here",
				row.id, was);
		free_lanes--;
		start_run(J, jl, &row);
	}
}

static void on_timer(uv_timer_t *t)
{
	pick(t->data);
}

/* ---- lifecycle ---- */

int rt_jobs_new(uv_loop_t *loop, rt_registry *reg, rt_sched *sched, rt_metrics *m,
		const char *data_dir, const char *const *allowed_roots, size_t n_roots,
		const rt_jobs_config *cfg, rt_jobs **out, char *err, size_t errlen)
{
	rt_jobs *J = calloc(1, sizeof *J);
	*out = NULL;
	if (!J)
		return rt_errf(err, errlen, -ENOMEM, "jobs: out of memory");
	J->loop = loop;
	J->reg = reg;
	J->sched = sched;
	J->cfg = *cfg;
	J->roots = allowed_roots;
	J->nroots = n_roots;
	pthread_mutex_init(&J->lat_mu, NULL);
	if (cfg->node_id && cfg->node_id[0]) {
		if (!rt_cluster_node_id_ok(cfg->node_id)) {
			rt_jobs_free(J);
			return rt_errf(err, errlen, -EINVAL, "jobs: node id '%.80s' must be 1..%d characters "
				       "of A-Z a-z 0-9 . _ -", cfg->node_id, RT_NODE_ID_MAX);
		}
		snprintf(J->node, sizeof J->node, "%s", cfg->node_id);
	} else {
		rt_cluster_default_node_id(J->node);
	}
	if (cfg->lease_ms < 30 || cfg->lease_ms > 3600000) {
		rt_jobs_free(J);
		return rt_errf(err, errlen, -EINVAL, "jobs: lease must be 30..3600000 ms");
	}
	if (snprintf(J->data_dir, sizeof J->data_dir, "%s", data_dir) >= (int)sizeof J->data_dir) {
		rt_jobs_free(J);
		return rt_errf(err, errlen, -ENAMETOOLONG, "jobs: data directory path too long");
	}
	J->m_jobs = rt_metrics_family(m, "thaw_jobs", RT_METRIC_GAUGE, "Jobs by state.", NULL, 0);
	J->m_steps = rt_metrics_family(m, "thaw_job_steps_total", RT_METRIC_COUNTER,
				       "Job units run on device lanes (minibatches, quantized blocks, "
				       "evaluation chunks), by job type.", NULL, 0);
	J->m_preempt = rt_metrics_family(m, "thaw_job_preemptions_total", RT_METRIC_COUNTER,
					 "Job steps that yielded their lane to invocation work.", NULL, 0);
	J->m_lat = rt_metrics_family(m, "thaw_preemption_latency_seconds", RT_METRIC_HISTOGRAM,
				     "Wait of invocation work on a lane with an active job: from its "
				     "submission to the lane to its start.", lat_buckets,
				     (int)(sizeof lat_buckets / sizeof lat_buckets[0]));
	J->m_spill = rt_metrics_family(m, "thaw_job_spills_total", RT_METRIC_COUNTER,
				       "Job states moved from device to host memory for a cold start.", NULL, 0);
	J->m_restore = rt_metrics_family(m, "thaw_job_restores_total", RT_METRIC_COUNTER,
					 "Spilled job states moved back to their device.", NULL, 0);
	/* the job series the dashboard reads (deploy/grafana) exist at zero from the start */
	const rt_job_kind *const job_kinds[] = {&rt_job_kind_finetune, &rt_job_kind_quantize};
	for (size_t i = 0; i < sizeof job_kinds / sizeof job_kinds[0]; i++) {
		const char *kv[] = {"type", job_kinds[i]->name};
		rt_metric_touch(J->m_steps, 1, kv);
	}
	rt_metric_touch(J->m_preempt, 0, NULL);
	rt_metric_touch(J->m_lat, 0, NULL);
	rt_metric_touch(J->m_spill, 0, NULL);
	rt_metric_touch(J->m_restore, 0, NULL);
	rt_sched_set_spill_hook(sched, spill_hook, J);
	J->nlanes = rt_sched_lane_count(sched);
	if (J->nlanes > RT_LANE_MAX)
		J->nlanes = RT_LANE_MAX;
	for (int i = 0; i < J->nlanes; i++) {
		J->lanes[i].J = J;
		J->lanes[i].lane = rt_sched_lane_at(sched, i);
		rt_lane_set_invoke_hook(J->lanes[i].lane, invoke_hook, &J->lanes[i]);
	}
	if (idle_ok < 0) {
		pthread_t th;
		idle_ok = 0;
		if (pthread_create(&th, NULL, idle_probe, NULL) == 0)
			pthread_join(th, NULL);
	}
	uv_timer_init(loop, &J->timer);
	J->timer.data = J;
	J->timer_open = 1;
	uv_timer_init(loop, &J->renew_timer);
	J->renew_timer.data = J;
	J->renew_open = 1;
	update_gauges(J);
	*out = J;
	return 0;
}

void rt_jobs_start(rt_jobs *J)
{
	int n = 0;
	if (rt_jobstore_recover(J->reg, J->node, &n) < 0)
		rt_logf(RT_LOG_ERROR, "jobs: cannot mark the jobs interrupted by the last stop");
	if (n > 0)
		rt_logf(RT_LOG_INFO, "jobs: %d job(s) interrupted by the last stop will resume from their "
			"checkpoints", n);
	update_gauges(J);
	uint64_t every = (uint64_t)(J->cfg.poll_s * 1000);
	uv_timer_start(&J->timer, on_timer, 0, every ? every : 1);
	uint64_t renew = (uint64_t)(J->cfg.lease_ms / 3);
	uv_timer_start(&J->renew_timer, on_renew, renew, renew);
}

void rt_jobs_stop(rt_jobs *J, void (*done)(void *ud), void *ud)
{
	J->stopping = 1;
	J->stopped = done;
	J->stopped_ud = ud;
	uv_timer_stop(&J->timer);
	int active = 0;
	for (int i = 0; i < J->nlanes; i++) {
		jrun *r = J->lanes[i].run;
		if (!r)
			continue;
		active++;
		if (!r->busy && !r->ckpt_busy && !r->spill_busy && !r->freeing)
			run_pause(r, "daemon stopping");   /* may release it now */
		else
			r->pause = 1;   /* step_done / prepare_after / finish_after see J->stopping */
	}
	for (int i = 0; i < J->nlanes; i++)
		if (J->lanes[i].run)
			return;
	stop_done(J);
	(void)active;
}

static void on_timer_closed(uv_handle_t *h)
{
	(void)h;
}

void rt_jobs_free(rt_jobs *J)
{
	if (!J)
		return;
	for (int i = 0; i < J->nlanes; i++) {
		/* after rt_jobs_stop completed the lanes may be gone (hooks already removed) */
		if (J->lanes[i].lane && !J->hooks_cleared)
			rt_lane_set_invoke_hook(J->lanes[i].lane, NULL, NULL);
		if (i == 0 && !J->hooks_cleared)
			rt_sched_set_spill_hook(J->sched, NULL, NULL);
		jrun *r = J->lanes[i].run;
		if (r && !r->busy && !r->ckpt_busy)
			run_free(r);
		/* a run with work in flight at a forced exit is left to the process end */
	}
	if (J->renew_open) {
		uv_timer_stop(&J->renew_timer);
		if (!uv_is_closing((uv_handle_t *)&J->renew_timer))
			uv_close((uv_handle_t *)&J->renew_timer, on_timer_closed);
	}
	if (J->timer_open) {
		uv_timer_stop(&J->timer);
		if (!uv_is_closing((uv_handle_t *)&J->timer))
			uv_close((uv_handle_t *)&J->timer, on_timer_closed);
	}
	if (J->timer_open || J->renew_open)
		uv_run(J->loop, UV_RUN_NOWAIT);
	pthread_mutex_destroy(&J->lat_mu);
	free(J);
}

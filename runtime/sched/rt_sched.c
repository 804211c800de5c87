/* rt_sched.c — see rt_sched.h. Everything here runs on the loop thread except the bodies of
 * lane work (run_* functions, on a device's lane thread) and restores (on libuv's thread pool).
 *
 * A cold start is a chain of steps, each finishing on the loop:
 *   place (loop: pick a device, reserve the image size the revision's descriptor records,
 *   evict idle instances if short; wait for those evictions) -> restore (pool: disk -> host
 *   memory or GPU memory; skipped when the host tier holds the image) -> load (lane: copy from
 *   the host tier to the GPU if needed, kind.load) -> warm: run the held calls.
 *
 * A warm instance runs its calls one of two ways. A kind without sequence operations gets
 * batches: queued calls merged into one lane work item (kind.invoke) of up to max_batch calls,
 * one batch at a time. A generative kind (seq_add, seq_step) gets its calls one by one, up to
 * `concurrency` held at once, through small admission items (seq_add on the lane); while it
 * holds any, its lane stepper (struct gen) runs seq_step, at most max_batch sequences a step,
 * in turn with the other steppers and work of the device (rt_lane.h), and each step's
 * finished calls come back to the loop through the stepper's deliver. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <stddef.h>
#include "runtime/base/rt_clock.h"
#include "pool/pool_gpu.h"
#include "runtime/base/rt_fault.h"
#include "runtime/sched/rt_lane.h"
#include "runtime/base/rt_log.h"
#include "runtime/base/rt_sys.h"
#include "runtime/sched/rt_model.h"
#include "runtime/sched/rt_place.h"
#include "runtime/sched/rt_sched.h"
#include "snapshot/snap.h"

enum { ST_COLD, ST_LOADING, ST_HOST, ST_WARM, ST_EVICTING };

typedef struct sdev {
	char name[32];
	int cuda;                 /* 1 for a GPU */
	int accel;                /* 1 for a GPU or a fake GPU (--fake-gpus: a CPU lane, tests) */
	int ordinal;
	char model_name[128];
	rt_lane *lane;
	pool_gpu *gpu;
	uint64_t budget, used;
	uint64_t job_bytes;       /* of used: reserved by a job's state (rt_sched_job_reserve) */
	uint64_t kv_bytes;        /* of used: reserved by generative instances' KV caches */
	int spills_pending;       /* job spills asked for by cold starts, not yet finished */
	uint64_t busy_prev_ns, wall_prev_ns;
	double busy_ratio;
} sdev;

typedef struct inst inst;

/* a call the scheduler holds: queued on its instance or in a batch on the lane */
typedef struct qcall qcall;
struct qcall {
	qcall *next;
	inst *in;
	json_t *input;
	rt_call_done_fn done;
	void *ud;
	rt_call_watch_fn watch;   /* the caller's cancel hook, or NULL */
	void *watch_ctx;
	uv_timer_t deadline;
	double timeout_s;         /* the deadline, from arrival */
	int replied;              /* set under mu: no emit starts after it */
	pthread_mutex_t mu;
	fn_header *headers;       /* copy of the call's headers (one allocation with the text) */
	size_t n_headers;
	fn_emit_fn emit;          /* the caller's stream receiver, or NULL */
	void *emit_ctx;
	int in_batch;             /* handed to the lane (a batch, or held by a generative kind) */
	uint64_t t_arrive, t_start;
	fn_call fc;               /* what a generative kind holds (seq_add .. the step returning it) */
	int chunks;               /* chunks emitted so far (lane thread, under mu) */
	uint64_t t_chunk;         /* when the last one was */
};

typedef struct batch {
	rt_work w;
	inst *in;
	size_t n;
	qcall **calls;
	fn_call *fc;
	int rc;
} batch;

/* A warm generative instance's sequence side: its lane stepper and the calls that finished in
 * steps, waiting for the loop. kind and state are the model's, used on the lane thread only. */
typedef struct gen {
	rt_stepper st;
	inst *in;
	const fn_kind *kind;
	void *state;
	int max_seqs;             /* fn_step.max_seqs: the manifest's max_batch */
	fn_call **room;           /* fn_step.done: room for `concurrency` calls */
	pthread_mutex_t mu;       /* guards the fields below (lane -> loop) */
	qcall *fin_head, *fin_tail;
	uint64_t steps;           /* steps since the last deliver */
} gen;

/* a lane item handing calls to a generative kind (seq_add); rej[] gets the ones it refused */
typedef struct admit {
	rt_work w;
	inst *in;
	size_t n, nrej;
	qcall **calls, **rej;
} admit;

/* one lane job used for load / evict / destroy of an instance */
typedef struct ijob {
	rt_work w;
	inst *in;
	int kind;                 /* JOB_LOAD, JOB_EVICT, JOB_DESTROY */
	int keep_host;            /* evict: copy the image to the host tier */
	int rc;
	fn_error err;
	char msg[256];
	uint64_t bytes;
	double copy_s, load_s;
	rt_model_seq seq;         /* load: what a generative kind is told */
	uint64_t kv_taken;        /* load: the KV cache bytes it took (0: not known) */
} ijob;

enum { JOB_LOAD, JOB_EVICT, JOB_DESTROY };

struct inst {
	inst *next;
	rt_sched *s;
	char name[RT_MANIFEST_NAME_MAX + 1];
	uint32_t rev;
	rt_revision_info info;
	int state;
	sdev *dev;                /* while loading / warm / evicting */
	rt_image *host_img;       /* host tier, or the live image on the CPU lane */
	rt_image *dev_img;        /* live image on a GPU */
	rt_model *model;
	gen *g;                   /* warm with a generative kind: its sequence side */
	uint64_t image_bytes;     /* 0 until probed */
	uint64_t reserved;        /* bytes reserved on dev (the image, and a KV cache) */
	uint64_t kv_bytes;        /* of reserved: the KV cache of a generative kind */
	int inflight;             /* calls handed to the lane (batch, admission, held) */
	int admits;               /* admission items on the lane */
	int batch_running;
	int batch_ready;
	qcall *qhead, *qtail;
	int nq;
	uv_timer_t idle_timer;    /* scale to zero: a warm instance idle_timeout_s after its last call */
	uv_timer_t host_ttl_timer;/* host tier: the host copy dropped host_ttl_s after it got there */
	uv_timer_t batch_timer;
	int timers_open;
	int64_t last_call_ms;
	uint64_t last_used_ns;
	int deleted, unload_requested, destroying;
	int load_after_unload;    /* a load asked for while an unload was releasing the model */
	int host_counted;         /* host_img counted in the host tier budget */
	int waiting_evictions;
	/* cold start bookkeeping */
	int tier;                 /* 0 disk, 1 host */
	uint64_t t_load0, t_restore_done;
	uv_work_t uvw;
	int uv_busy;
	int restore_rc;
	char restore_err[256];
	rt_image *restored;
	/* statistics (V2 stats) */
	uint64_t n_ok, n_fail, ns_ok_total, ns_queue_total, n_batches;
	/* metrics recorded on the lane thread (steps, emitted chunks) stop once the function is
	 * deleted and its series are dropped: quiet, under mmu */
	pthread_mutex_t mmu;
	int quiet;
};

struct rt_sched {
	uv_loop_t *loop;
	rt_registry *reg;
	rt_sched_config cfg;
	sdev devs[RT_LANE_MAX];
	int ndevs;
	inst *insts;
	uint64_t host_used;
	uint64_t rng;
	int stopping;
	rt_metrics *m;
	rt_metric_family *m_inv, *m_inv_dur, *m_queue, *m_cold, *m_cold_dur, *m_state, *m_evict,
		*m_mem, *m_busy, *m_dev_inv, *m_dev_cold, *m_dev_fn;
	/* iteration-level serving (generative kinds) */
	rt_metric_family *m_step_seqs, *m_kv, *m_ttft, *m_itl, *m_prefix_lookup, *m_prefix_hit,
		*m_preempt;
	void (*stopped)(void *);
	void *stopped_ud;
	int pending_handles;
	int lanes_stopped;
	rt_sched_spill_fn spill_fn;   /* the job runner's: spill a job's device state */
	void *spill_ud;
	void (*res_fn)(void *ud);     /* residency hook (rt_sched_set_residency_hook) */
	void *res_ud;
};

static void check_stopped(rt_sched *s);

static void pump(inst *in);
static void begin_load(inst *in);
static void arm_idle(inst *in);
static void maybe_destroy(inst *in);
static void continue_load(inst *in);

const char *rt_sched_state_name(int st)
{
	switch (st) {
	case ST_COLD: return "cold";
	case ST_LOADING: return "loading";
	case ST_HOST: return "host";
	case ST_WARM: return "warm";
	case ST_EVICTING: return "warm";
	default: return "?";
	}
}

/* counts (on) or uncounts the instance's host image in the host tier */
static void host_account(inst *in, int on)
{
	if (on && in->host_img && !in->host_counted) {
		in->s->host_used += in->host_img->bytes;
		in->host_counted = 1;
	} else if (!on && in->host_counted) {
		in->s->host_used -= in->host_img ? in->host_img->bytes : 0;
		in->host_counted = 0;
	}
}

static void host_free(inst *in)
{
	host_account(in, 0);
	rt_image_free(in->host_img);
	in->host_img = NULL;
}

static uint64_t next_rand(rt_sched *s)
{
	/* xorshift64*: traffic split draws; only the high half is well mixed */
	s->rng ^= s->rng >> 12;
	s->rng ^= s->rng << 25;
	s->rng ^= s->rng >> 27;
	return (s->rng * 2685821657736338717ull) >> 32;
}

void rt_sched_config_defaults(rt_sched_config *c)
{
	rt_sys_limits sys;
	memset(c, 0, sizeof *c);
	/* in a container (Knative pod) the cgroup's limits, not the node's, bound the defaults */
	rt_sys_limits_read(&sys);
	uint64_t ram = sys.ram_bytes;
	if (sys.cpu_limited) {
		c->cpu_threads = sys.cores;
		c->decode_threads = sys.cores;
	}
	c->host_budget_bytes = ram / 4;
	c->cpu_budget_bytes = ram / 2;
	c->host_ttl_s = 600;
	c->gpu_mem_share = 0.85;
}

/* ---- metrics helpers ---- */

static void set_state(inst *in, int st)
{
	static const char *names[] = {"cold", "host", "warm"};
	int changed = in->state != st;
	in->state = st;
	if (changed && in->s->res_fn)
		in->s->res_fn(in->s->res_ud);
	const char *cur = rt_sched_state_name(st);
	if (st == ST_LOADING)
		cur = "cold";
	if (in->deleted)   /* its series were dropped with the function */
		return;
	for (int i = 0; i < 3; i++) {
		const char *kv[] = {"function", in->name, "state", names[i]};
		rt_metric_set(in->s->m_state, strcmp(cur, names[i]) == 0 ? 1 : 0, 2, kv);
	}
}

static void dev_label_mem(rt_sched *s, sdev *d)
{
	const char *used[] = {"device", d->name, "type", "used"};
	const char *kv[] = {"device", d->name, "type", "kv"};
	const char *total[] = {"device", d->name, "type", "total"};
	rt_metric_set(s->m_mem, (double)(d->used - d->kv_bytes), 2, used);
	rt_metric_set(s->m_mem, (double)d->kv_bytes, 2, kv);
	rt_metric_set(s->m_mem, (double)d->budget, 2, total);
}

static int dev_functions(rt_sched *s, const sdev *d);

void rt_sched_update_gauges(rt_sched *s)
{
	uint64_t now = rt_clock_mono_ns();
	for (int i = 0; i < s->ndevs; i++) {
		sdev *d = &s->devs[i];
		uint64_t busy = rt_lane_busy_ns(d->lane);
		if (now > d->wall_prev_ns)
			d->busy_ratio = (double)(busy - d->busy_prev_ns) / (double)(now - d->wall_prev_ns);
		if (d->busy_ratio > 1)
			d->busy_ratio = 1;
		d->busy_prev_ns = busy;
		d->wall_prev_ns = now;
		const char *kv[] = {"device", d->name};
		rt_metric_set(s->m_busy, d->busy_ratio, 1, kv);
		rt_metric_set(s->m_dev_fn, dev_functions(s, d), 1, kv);
		dev_label_mem(s, d);
	}
}

/* ---- instances ---- */

static inst *find_inst(rt_sched *s, const char *name, uint32_t rev)
{
	for (inst *in = s->insts; in; in = in->next)
		if (in->rev == rev && !in->deleted && strcmp(in->name, name) == 0)
			return in;
	return NULL;
}

static void on_idle_timer(uv_timer_t *t);
static void on_host_ttl_timer(uv_timer_t *t);
static void on_batch_timer(uv_timer_t *t);
static void settle(inst *in);

/* stops the instance's scale-to-zero and host-tier timers (a call came, or its state moves) */
static void idle_stop(inst *in)
{
	uv_timer_stop(&in->idle_timer);
	uv_timer_stop(&in->host_ttl_timer);
}

static int get_inst(rt_sched *s, const char *name, uint32_t rev, inst **out)
{
	inst *in = find_inst(s, name, rev);
	if (in) {
		*out = in;
		return 0;
	}
	in = calloc(1, sizeof *in);
	if (!in)
		return -ENOMEM;
	int rc = rt_registry_get_revision(s->reg, name, rev, &in->info);
	if (rc < 0) {
		free(in);
		return rc;
	}
	in->s = s;
	snprintf(in->name, sizeof in->name, "%s", name);
	in->rev = in->info.rev;
	uv_timer_init(s->loop, &in->idle_timer);
	uv_timer_init(s->loop, &in->host_ttl_timer);
	uv_timer_init(s->loop, &in->batch_timer);
	in->idle_timer.data = in->host_ttl_timer.data = in->batch_timer.data = in;
	in->timers_open = 3;
	pthread_mutex_init(&in->mmu, NULL);
	in->next = s->insts;
	s->insts = in;
	set_state(in, ST_COLD);
	*out = in;
	return 0;
}

static void on_inst_timer_closed(uv_handle_t *h)
{
	inst *in = h->data;
	if (--in->timers_open > 0)
		return;
	rt_sched *s = in->s;
	pthread_mutex_destroy(&in->mmu);
	free(in);
	s->pending_handles--;
	check_stopped(s);
}

static void unlink_inst(inst *in)
{
	rt_sched *s = in->s;
	for (inst **p = &s->insts; *p; p = &(*p)->next)
		if (*p == in) {
			*p = in->next;
			break;
		}
}

static void free_inst(inst *in)
{
	rt_sched *s = in->s;
	unlink_inst(in);
	host_free(in);
	s->pending_handles++;
	uv_close((uv_handle_t *)&in->idle_timer, on_inst_timer_closed);
	uv_close((uv_handle_t *)&in->host_ttl_timer, on_inst_timer_closed);
	uv_close((uv_handle_t *)&in->batch_timer, on_inst_timer_closed);
}

/* ---- calls ---- */

static void on_call_closed(uv_handle_t *h)
{
	qcall *c = h->data;
	json_decref(c->input);
	free(c->headers);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

static void call_free(qcall *c)
{
	uv_timer_stop(&c->deadline);
	uv_close((uv_handle_t *)&c->deadline, on_call_closed);
}

static void count_call(inst *in, int status)
{
	char code[8];
	snprintf(code, sizeof code, "%d", status);
	const char *kv[] = {"function", in->name, "code", code};
	if (!in->deleted)
		rt_metric_add(in->s->m_inv, 1, 2, kv);
	if (in->dev) {
		const char *dkv[] = {"device", in->dev->name};
		rt_metric_add(in->s->m_dev_inv, 1, 1, dkv);
	}
}

/* hands a call's end to its caller: a 503 the scheduler gives carries a retry hint */
static void call_done(rt_call_done_fn done, void *ud, const char *name, uint32_t rev, json_t *out,
		      const fn_error *err, int ours)
{
	rt_call_result r = {.function = name, .rev = rev, .out = out, .err = out ? NULL : err};
	if (!out && ours && err->status == 503)
		r.retry_after_s = 1;
	done(&r, ud);
}

/* marks c answered (under its lock, so that no emit runs after) and clears its cancel hook;
 * returns 0 when it already was. Loop thread. */
static int call_claim(qcall *c)
{
	pthread_mutex_lock(&c->mu);
	int first = !c->replied;
	c->replied = 1;
	pthread_mutex_unlock(&c->mu);
	if (first && c->watch)
		c->watch(c->watch_ctx, NULL, NULL);   /* the caller may move on once answered */
	return first;
}

enum { LM_ADD, LM_SET, LM_OBSERVE };

/* records a sample for in from the lane thread, unless the function was deleted (its series
 * dropped: they must not come back) */
static void lane_metric(inst *in, int op, rt_metric_family *f, double v, int nl,
			const char *const *kv)
{
	pthread_mutex_lock(&in->mmu);
	if (!in->quiet) {
		if (op == LM_ADD)
			rt_metric_add(f, v, nl, kv);
		else if (op == LM_SET)
			rt_metric_set(f, v, nl, kv);
		else
			rt_metric_observe(f, v, nl, kv);
	}
	pthread_mutex_unlock(&in->mmu);
}

/* the emit the kind sees: forwards to the caller's (if any) while the call is unanswered and
 * answers a poll (chunk NULL) without forwarding it. The first chunk of a call times its
 * first token (from arrival), the next ones the gaps between tokens. Lane thread. */
static int call_emit(void *ctx, json_t *chunk)
{
	qcall *c = ctx;
	uint64_t now = 0, prev = 0;
	int first = 0;
	pthread_mutex_lock(&c->mu);
	int rc = c->replied ? -1 : 0;
	if (!rc && chunk) {
		rc = c->emit ? c->emit(c->emit_ctx, chunk) : 0;
		now = rt_clock_mono_ns();
		first = c->chunks++ == 0;
		prev = first ? c->t_arrive : c->t_chunk;
		c->t_chunk = now;
	}
	pthread_mutex_unlock(&c->mu);
	if (now) {
		rt_sched *s = c->in->s;
		const char *kv[] = {"function", c->in->name};
		lane_metric(c->in, LM_OBSERVE, first ? s->m_ttft : s->m_itl,
			    (double)(now - prev) / 1e9, 1, kv);
	}
	return rc;
}

/* copies the call's headers into c: one allocation */
static int call_copy_headers(qcall *c, const fn_header *hs, size_t n)
{
	size_t text = 0;
	for (size_t i = 0; i < n; i++)
		text += strlen(hs[i].name) + strlen(hs[i].value) + 2;
	if (n == 0)
		return 0;
	c->headers = malloc(n * sizeof *c->headers + text);
	if (!c->headers)
		return -ENOMEM;
	char *p = (char *)(c->headers + n);
	for (size_t i = 0; i < n; i++) {
		size_t ln = strlen(hs[i].name) + 1, lv = strlen(hs[i].value) + 1;
		fn_header *h = &c->headers[c->n_headers++];
		h->name = memcpy(p, hs[i].name, ln);
		h->value = memcpy(p + ln, hs[i].value, lv);
		p += ln + lv;
	}
	return 0;
}

/* answers a call the scheduler gives up on itself */
static void call_fail(qcall *c, int status, const char *msg)
{
	if (!call_claim(c))
		return;
	fn_error e = {.status = status};
	snprintf(e.msg, sizeof e.msg, "%s", msg);
	call_done(c->done, c->ud, c->in->name, c->in->rev, NULL, &e, 1);
	count_call(c->in, status);
}

static void queue_remove(inst *in, qcall *c)
{
	for (qcall **p = &in->qhead; *p; p = &(*p)->next)
		if (*p == c) {
			*p = c->next;
			if (in->qtail == c) {
				in->qtail = NULL;
				for (qcall *q = in->qhead; q; q = q->next)
					in->qtail = q;
			}
			in->nq--;
			return;
		}
}

static void fail_queue(inst *in, int status, const char *msg)
{
	while (in->qhead) {
		qcall *c = in->qhead;
		in->qhead = c->next;
		in->nq--;
		call_fail(c, status, msg);
		call_free(c);
	}
	in->qtail = NULL;
}

static void on_deadline(uv_timer_t *t)
{
	qcall *c = t->data;
	char msg[160];
	snprintf(msg, sizeof msg, "function '%s' did not answer within its timeout (%.3g s)",
		 c->in->name, c->timeout_s);
	if (c->in_batch) {
		/* running on the lane: answer now, drop the result when it comes */
		call_fail(c, 504, msg);
		return;
	}
	inst *in = c->in;
	queue_remove(in, c);
	call_fail(c, 504, msg);
	call_free(c);
}

/* the caller cancelled the call (its client went away): answer it now (499, nobody reads it)
 * so that the kind's next emit tells it to stop; a queued call leaves the queue */
static void call_cancelled(void *arg)
{
	qcall *c = arg;
	char msg[160];
	snprintf(msg, sizeof msg, "the client of a call of '%s' went away", c->in->name);
	if (c->in_batch) {
		call_fail(c, 499, msg);
		return;
	}
	queue_remove(c->in, c);
	call_fail(c, 499, msg);
	call_free(c);
}

/* answers a call refused before it was queued, through its callback */
static void early_fail(const rt_call *call, const char *name, uint32_t rev, int status,
		       const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void early_fail(const rt_call *call, const char *name, uint32_t rev, int status,
		       const char *fmt, ...)
{
	fn_error e = {.status = status};
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e.msg, sizeof e.msg, fmt, ap);
	va_end(ap);
	json_decref(call->in);
	call_done(call->done, call->ud, name, rev, NULL, &e, 1);
}

void rt_sched_submit(rt_sched *s, const rt_call *call)
{
	inst *in;
	int rc;
	const char *name = call->function;
	uint32_t rev = call->rev;
	if (rev == 0) {
		rc = rt_registry_pick_revision(s->reg, name, next_rand(s), &rev);
		if (rc == -ENOTCONN) {   /* a shared registry away, and name not in this node's view */
			early_fail(call, name, 0, 503, "registry unavailable: function '%s' is not "
				   "loaded on this node", name);
			return;
		}
		if (rc < 0) {
			early_fail(call, name, 0, 404, "function '%s' not found", name);
			return;
		}
	}
	rc = get_inst(s, name, rev, &in);
	if (rc < 0) {
		if (rc == -ENOENT)
			early_fail(call, name, rev, 404, "function '%s' revision %u not found", name, rev);
		else if (rc == -ENOTCONN)
			early_fail(call, name, rev, 503, "registry unavailable: function '%s' revision %u "
				   "is not loaded on this node", name, rev);
		else
			early_fail(call, name, rev, 500, "scheduler: %s", strerror(-rc));
		return;
	}
	name = in->name;   /* the caller's string may be gone before the call ends */
	if (s->stopping) {
		early_fail(call, name, rev, 503, "server is shutting down");
		return;
	}
	/* cancelled while the call was prepared (e.g. a tokenizer load) */
	if (call->watch && call->watch(call->watch_ctx, NULL, NULL)) {
		count_call(in, 499);
		early_fail(call, name, rev, 499, "the client of a call of '%s' went away", name);
		return;
	}
	const rt_manifest *m = &in->info.manifest;
	/* a call that runs at once is never refused for the queue's size (max_queue 0 included) */
	int runs_now = in->state == ST_WARM && in->nq == 0 &&
		       (in->g ? in->inflight < m->concurrency : !in->batch_running);
	if (in->nq >= m->max_queue && !runs_now) {
		count_call(in, 503);
		early_fail(call, name, rev, 503, "function '%s' queue is full (%d waiting)", name, in->nq);
		return;
	}
	qcall *c = calloc(1, sizeof *c);
	if (!c || call_copy_headers(c, call->headers, call->n_headers) < 0) {
		free(c);
		early_fail(call, name, rev, 500, "out of memory");
		return;
	}
	pthread_mutex_init(&c->mu, NULL);
	c->in = in;
	c->input = call->in;
	c->done = call->done;
	c->ud = call->ud;
	c->watch = call->watch;
	c->watch_ctx = call->watch_ctx;
	c->emit = call->emit;
	c->emit_ctx = call->emit_ctx;
	c->t_arrive = rt_clock_mono_ns();
	c->timeout_s = call->timeout_s > 0 && call->timeout_s < m->timeout_s ? call->timeout_s
									     : m->timeout_s;
	uv_timer_init(s->loop, &c->deadline);
	c->deadline.data = c;
	uv_timer_start(&c->deadline, on_deadline, (uint64_t)(c->timeout_s * 1000.0 + 0.5), 0);
	if (c->watch)
		c->watch(c->watch_ctx, call_cancelled, c);
	if (in->qtail)
		in->qtail->next = c;
	else
		in->qhead = c;
	in->qtail = c;
	in->nq++;
	in->last_used_ns = c->t_arrive;
	idle_stop(in);
	if (in->state == ST_COLD || in->state == ST_HOST)
		begin_load(in);
	else
		pump(in);
}

/* after work on an instance finished: destroy or unload it if asked, else run what is queued
 * and start its idle timer when nothing is */
static void settle(inst *in)
{
	if (in->deleted || in->unload_requested) {
		maybe_destroy(in);
		return;
	}
	pump(in);
	if (in->nq == 0 && in->inflight == 0)
		arm_idle(in);
}

/* ---- batches ---- */

static void run_batch(rt_lane *lane, rt_work *w)
{
	batch *b = (batch *)w;
	(void)lane;
	b->rc = rt_model_invoke(b->in->model, b->fc, b->n);
}

/* the end of a call the lane ran: answers it (unless a 504 or 499 did already), counts it and
 * frees it; out (may be NULL) is consumed */
static void call_finish(inst *in, qcall *c, json_t *out, fn_error *e, uint64_t now)
{
	if (!out && e->status == 0)
		fn_err(e, 500, "function '%s' returned no output", in->name);
	int status = out ? 200 : e->status;
	if (call_claim(c)) {
		call_done(c->done, c->ud, in->name, in->rev, out, e, 0);
		count_call(in, status);
		const char *kv[] = {"function", in->name};
		if (!in->deleted)
			rt_metric_observe(in->s->m_inv_dur, (double)(now - c->t_arrive) / 1e9, 1, kv);
	}
	if (status == 200) {
		in->n_ok++;
		in->ns_ok_total += now - c->t_start;
	} else {
		in->n_fail++;
	}
	json_decref(out);
	call_free(c);
}

static void batch_done(rt_work *w)
{
	batch *b = (batch *)w;
	inst *in = b->in;
	uint64_t now = rt_clock_mono_ns();
	for (size_t i = 0; i < b->n; i++)
		call_finish(in, b->calls[i], b->fc[i].out, &b->fc[i].err, now);
	in->n_batches++;
	in->inflight -= (int)b->n;
	in->batch_running = 0;
	in->last_call_ms = rt_clock_wall_ms();
	free(b->calls);
	free(b->fc);
	free(b);
	settle(in);
}

static void on_batch_timer(uv_timer_t *t)
{
	inst *in = t->data;
	in->batch_ready = 1;
	pump(in);
}

/* ---- generative kinds: admissions and steps ---- */

static qcall *call_of(fn_call *fc)
{
	return (qcall *)(void *)((char *)fc - offsetof(qcall, fc));
}

/* one step of the kind's held sequences (lane thread): finished calls go to the loop */
static int gen_step(rt_lane *lane, rt_stepper *sp)
{
	gen *g = sp->ud;
	inst *in = g->in;
	rt_sched *s = in->s;
	(void)lane;
	fn_step st = {.max_seqs = g->max_seqs, .done = g->room};
	int rc = g->kind->seq_step(g->state, &st);
	if (rc < 0)
		rt_logf(RT_LOG_ERROR, "function %s rev %u: step failed (%s): %zu calls failed", in->name,
			in->rev, strerror(-rc), st.n_done);
	size_t cap = (size_t)in->info.manifest.concurrency;
	if (st.n_done > cap) {   /* a kind returning more than it can hold breaks the contract */
		rt_logf(RT_LOG_ERROR, "function %s rev %u: step returned %zu calls (room for %zu) "
			"(%s:%d)", in->name, in->rev, st.n_done, cap, __FILE__, __LINE__);
		abort();
	}
	pthread_mutex_lock(&g->mu);
	for (size_t i = 0; i < st.n_done; i++) {
		qcall *c = call_of(st.done[i]);
		c->next = NULL;
		if (g->fin_tail)
			g->fin_tail->next = c;
		else
			g->fin_head = c;
		g->fin_tail = c;
	}
	g->steps++;
	pthread_mutex_unlock(&g->mu);
	const char *kv[] = {"function", in->name};
	if (st.seqs > 0)
		lane_metric(in, LM_OBSERVE, s->m_step_seqs, st.seqs, 1, kv);
	if (st.kv_blocks_total > 0) {
		const char *ku[] = {"device", in->dev->name, "function", in->name, "type", "used"};
		const char *kt[] = {"device", in->dev->name, "function", in->name, "type", "total"};
		lane_metric(in, LM_SET, s->m_kv, (double)st.kv_blocks_used, 3, ku);
		lane_metric(in, LM_SET, s->m_kv, (double)st.kv_blocks_total, 3, kt);
	}
	if (st.prefix_lookup_tokens > 0) {
		lane_metric(in, LM_ADD, s->m_prefix_lookup, (double)st.prefix_lookup_tokens, 1, kv);
		lane_metric(in, LM_ADD, s->m_prefix_hit, (double)st.prefix_hit_tokens, 1, kv);
	}
	if (st.preempted > 0)
		lane_metric(in, LM_ADD, s->m_preempt, st.preempted, 1, kv);
	return (st.n_done ? RT_STEP_DELIVER : 0) | (st.held ? RT_STEP_MORE : 0);
}

/* the calls that finished in steps, answered on the loop */
static void gen_deliver(rt_stepper *sp)
{
	gen *g = sp->ud;
	inst *in = g->in;
	pthread_mutex_lock(&g->mu);
	qcall *list = g->fin_head;
	g->fin_head = g->fin_tail = NULL;
	in->n_batches += g->steps;
	g->steps = 0;
	pthread_mutex_unlock(&g->mu);
	if (!list)
		return;
	uint64_t now = rt_clock_mono_ns();
	while (list) {
		qcall *c = list;
		list = c->next;
		in->inflight--;
		call_finish(in, c, c->fc.out, &c->fc.err, now);
	}
	in->last_call_ms = rt_clock_wall_ms();
	settle(in);
}

/* allocates the sequence side of in, whose model m is generative; NULL on ENOMEM */
static gen *gen_new(inst *in, rt_model *m)
{
	gen *g = calloc(1, sizeof *g);
	if (!g)
		return NULL;
	g->room = calloc((size_t)in->info.manifest.concurrency, sizeof *g->room);
	if (!g->room) {
		free(g);
		return NULL;
	}
	pthread_mutex_init(&g->mu, NULL);
	g->in = in;
	g->kind = m->kind;
	g->state = m->state;
	g->max_seqs = in->info.manifest.max_batch;
	g->st.step = gen_step;
	g->st.deliver = gen_deliver;
	g->st.ud = g;
	return g;
}

/* frees the sequence side once its stepper is out of the lane's ring and delivered (loop) */
static void gen_free(inst *in)
{
	gen *g = in->g;
	if (!g)
		return;
	in->g = NULL;
	pthread_mutex_destroy(&g->mu);
	free(g->room);
	free(g);
}

static void run_admit(rt_lane *lane, rt_work *w)
{
	admit *a = (admit *)w;
	gen *g = a->in->g;
	int held = 0;
	for (size_t i = 0; i < a->n; i++) {
		qcall *c = a->calls[i];
		int rc = g->kind->seq_add(g->state, &c->fc);
		if (rc == 0) {
			held = 1;
			continue;
		}
		/* refused: finished now (the kind holds nothing of it) */
		json_decref(c->fc.out);
		c->fc.out = NULL;
		if (c->fc.err.status < 400)
			fn_err(&c->fc.err, 500, "function '%s' refused a call without a reason (%s)",
			       a->in->name, strerror(rc < 0 ? -rc : EINVAL));
		a->rej[a->nrej++] = c;
	}
	if (held)
		rt_lane_stepper_wake(lane, &g->st);
}

/* only the refused calls: the others belong to the kind and end through the steps */
static void admit_done(rt_work *w)
{
	admit *a = (admit *)w;
	inst *in = a->in;
	uint64_t now = rt_clock_mono_ns();
	for (size_t i = 0; i < a->nrej; i++) {
		in->inflight--;
		call_finish(in, a->rej[i], NULL, &a->rej[i]->fc.err, now);
	}
	in->admits--;
	free(a->calls);
	free(a);
	settle(in);
}

/* takes the call at the head of in's queue for the lane (its queue time observed) */
static qcall *dequeue(inst *in, uint64_t now)
{
	qcall *c = in->qhead;
	in->qhead = c->next;
	if (!in->qhead)
		in->qtail = NULL;
	in->nq--;
	c->next = NULL;
	c->in_batch = 1;
	c->t_start = now;
	in->ns_queue_total += now - c->t_arrive;
	if (!in->deleted) {
		const char *kv[] = {"function", in->name};
		rt_metric_observe(in->s->m_queue, (double)(now - c->t_arrive) / 1e9, 1, kv);
	}
	return c;
}

/* Hands queued calls to a warm generative instance, up to `concurrency` held at once. */
static void pump_gen(inst *in)
{
	int room = in->info.manifest.concurrency - in->inflight;
	if (room <= 0)
		return;
	size_t n = (size_t)(in->nq < room ? in->nq : room);
	admit *a = calloc(1, sizeof *a);
	if (a)
		a->calls = calloc(2 * n, sizeof *a->calls);
	if (!a || !a->calls) {
		free(a);
		fail_queue(in, 500, "out of memory");
		return;
	}
	a->rej = a->calls + n;
	a->in = in;
	a->n = n;
	uint64_t now = rt_clock_mono_ns();
	for (size_t i = 0; i < n; i++) {
		qcall *c = dequeue(in, now);
		c->fc = (fn_call){.in = c->input, .headers = c->headers, .n_headers = c->n_headers,
				  .emit = call_emit, .emit_ctx = c};
		a->calls[i] = c;
	}
	in->inflight += (int)n;
	in->admits++;
	a->w.cls = RT_WORK_INVOKE;
	a->w.run = run_admit;
	a->w.done = admit_done;
	if (rt_lane_submit(in->dev->lane, &a->w) < 0) {
		for (size_t i = 0; i < n; i++) {
			fn_err(&a->calls[i]->fc.err, 503, "device %s is shutting down", in->dev->name);
			a->rej[a->nrej++] = a->calls[i];
		}
		admit_done(&a->w);
	}
}

/* Hands queued calls to the lane as one batch when the instance is warm and idle. */
static void pump(inst *in)
{
	const rt_manifest *m = &in->info.manifest;
	/* destroying: the lane is releasing the model (unload or delete); calls wait for the
	 * reload that finish_destroy starts */
	if (in->state != ST_WARM || in->batch_running || in->nq == 0 || in->destroying)
		return;
	if (in->g) {
		pump_gen(in);
		return;
	}
	int limit = m->max_batch < m->concurrency ? m->max_batch : m->concurrency;
	if (limit < 1)
		limit = 1;
	if (in->nq < limit && limit > 1 && m->max_batch_delay_us > 0 && !in->batch_ready) {
		if (!uv_is_active((uv_handle_t *)&in->batch_timer))
			uv_timer_start(&in->batch_timer, on_batch_timer,
				       (uint64_t)(m->max_batch_delay_us + 999) / 1000, 0);
		return;
	}
	uv_timer_stop(&in->batch_timer);
	in->batch_ready = 0;
	size_t n = (size_t)(in->nq < limit ? in->nq : limit);
	batch *b = calloc(1, sizeof *b);
	if (b) {
		b->calls = calloc(n, sizeof *b->calls);
		b->fc = calloc(n, sizeof *b->fc);
	}
	if (!b || !b->calls || !b->fc) {
		if (b) {
			free(b->calls);
			free(b->fc);
			free(b);
		}
		fail_queue(in, 500, "out of memory");
		return;
	}
	b->in = in;
	b->n = n;
	uint64_t now = rt_clock_mono_ns();
	for (size_t i = 0; i < n; i++) {
		qcall *c = dequeue(in, now);
		b->calls[i] = c;
		b->fc[i].in = c->input;
		b->fc[i].headers = c->headers;
		b->fc[i].n_headers = c->n_headers;
		/* every call gets an emit: its non-zero return is how a kind learns that the call was
		 * answered without it (timeout, client gone) and may stop */
		b->fc[i].emit = call_emit;
		b->fc[i].emit_ctx = c;
	}
	in->inflight += (int)n;
	in->batch_running = 1;
	b->w.cls = RT_WORK_INVOKE;
	b->w.run = run_batch;
	b->w.done = batch_done;
	if (rt_lane_submit(in->dev->lane, &b->w) < 0) {
		for (size_t i = 0; i < n; i++) {
			b->fc[i].err.status = 503;
			snprintf(b->fc[i].err.msg, sizeof b->fc[i].err.msg, "device %s is shutting down", in->dev->name);
		}
		batch_done(&b->w);
	}
}

/* ---- eviction and host tier ---- */

static void drop_host(inst *in)
{
	if (!in->host_img || !in->host_counted)
		return;
	host_free(in);
	if (in->state == ST_HOST) {
		set_state(in, ST_COLD);
		idle_stop(in);
	}
	rt_logf(RT_LOG_INFO, "function %s rev %u: host tier copy dropped", in->name, in->rev);
}

/* keeps the host tier within budget, dropping least recently used entries (not keep) */
static void enforce_host_budget(rt_sched *s, inst *keep)
{
	while (s->host_used > s->cfg.host_budget_bytes) {
		inst *lru = NULL;
		/* host-tier entries, and host copies of instances warm on a GPU */
		for (inst *in = s->insts; in; in = in->next)
			if ((in->state == ST_HOST || in->state == ST_WARM) && in->host_counted &&
			    in != keep && (!lru || in->last_used_ns < lru->last_used_ns))
				lru = in;
		if (!lru)
			lru = keep && keep->host_counted ? keep : NULL;
		if (!lru)
			break;
		drop_host(lru);
		if (lru == keep)
			break;
	}
}

/* no more steps for in's sequence side (it holds no call: evict and destroy wait for that),
 * and its KV figures read 0; the memory goes with the loop's gen_free. Lane thread. */
static void gen_stop(rt_lane *lane, inst *in)
{
	if (!in->g)
		return;
	rt_lane_stepper_remove(lane, &in->g->st);
	const char *ku[] = {"device", in->dev->name, "function", in->name, "type", "used"};
	const char *kt[] = {"device", in->dev->name, "function", in->name, "type", "total"};
	lane_metric(in, LM_SET, in->s->m_kv, 0, 3, ku);
	lane_metric(in, LM_SET, in->s->m_kv, 0, 3, kt);
}

static void run_ijob(rt_lane *lane, rt_work *w)
{
	ijob *j = (ijob *)w;
	inst *in = j->in;
	sdev *d = in->dev;
	uint64_t t0 = rt_clock_mono_ns();
	switch (j->kind) {
	case JOB_LOAD: {
		const rt_image *img = NULL;
		if (d && d->cuda && in->info.snapshot_path[0]) {
			if (!in->dev_img && in->host_img) {
				/* host tier -> GPU */
				j->rc = rt_image_copy(in->host_img, d->gpu, &in->dev_img, j->msg, sizeof j->msg);
				j->copy_s = (double)(rt_clock_mono_ns() - t0) / 1e9;
				if (j->rc < 0) {
					fn_err(&j->err, 503, "%s", j->msg);
					return;
				}
			}
			img = in->dev_img;
		} else {
			img = in->host_img;
		}
		uint64_t t1 = rt_clock_mono_ns();
		j->rc = rt_model_load(rt_lane_dev(lane), img, in->info.manifest.kind, &j->seq,
				      &in->model, &j->err);
		if (j->rc == 0 && rt_model_is_generative(in->model->kind) &&
		    !(in->g = gen_new(in, in->model))) {
			rt_model_release(in->model);
			in->model = NULL;
			j->rc = -ENOMEM;
			fn_err(&j->err, 503, "out of memory for the sequences of function '%s'", in->name);
		} else if (j->rc == 0 && in->g) {
			/* an empty step only reports: how much of kv_cache_bytes the kind took */
			fn_step st = {0};
			if (in->model->kind->seq_step(in->model->state, &st) == 0)
				j->kv_taken = st.kv_bytes;
		}
		j->load_s = (double)(rt_clock_mono_ns() - t1) / 1e9;
		break;
	}
	case JOB_EVICT:
		gen_stop(lane, in);
		rt_model_release(in->model);
		in->model = NULL;
		if (in->dev_img) {
			if (j->keep_host && !in->host_img) {
				rt_image *h = NULL;
				if (rt_image_copy(in->dev_img, NULL, &h, j->msg, sizeof j->msg) == 0)
					in->host_img = h;
			}
			rt_image_free(in->dev_img);
			in->dev_img = NULL;
		}
		break;
	case JOB_DESTROY:
		gen_stop(lane, in);
		rt_model_release(in->model);
		in->model = NULL;
		rt_image_free(in->dev_img);
		in->dev_img = NULL;
		break;
	}
}

static void release_reservation(inst *in)
{
	if (in->dev && in->reserved) {
		in->dev->used -= in->reserved;
		in->dev->kv_bytes -= in->kv_bytes;
		dev_label_mem(in->s, in->dev);
	}
	in->reserved = 0;
	in->kv_bytes = 0;
}

static void evict_done(rt_work *w);

/* evicts a warm, idle instance: to the host tier (keep_host) or to disk */
static void evict(inst *in, int keep_host, const char *why)
{
	if (in->state != ST_WARM || in->inflight || in->batch_running || in->admits)
		return;
	ijob *j = calloc(1, sizeof *j);
	if (!j)
		return;
	j->in = in;
	j->kind = JOB_EVICT;
	j->keep_host = keep_host && in->info.snapshot_path[0] &&
		       (in->image_bytes <= in->s->cfg.host_budget_bytes);
	j->w.run = run_ijob;
	j->w.done = evict_done;
	j->w.cls = RT_WORK_INVOKE;
	set_state(in, ST_EVICTING);
	idle_stop(in);
	rt_logf(RT_LOG_INFO, "function %s rev %u: evicting from %s (%s)", in->name, in->rev,
		in->dev->name, why);
	if (rt_lane_submit(in->dev->lane, &j->w) < 0) {
		free(j);
		set_state(in, ST_WARM);
	}
}

static void evict_done(rt_work *w)
{
	ijob *j = (ijob *)w;
	inst *in = j->in;
	rt_sched *s = in->s;
	const char *kv[] = {"function", in->name};
	if (!in->deleted)
		rt_metric_add(s->m_evict, 1, 1, kv);
	gen_free(in);
	release_reservation(in);
	sdev *d = in->dev;
	int j_keep = j->keep_host;
	in->dev = NULL;
	free(j);
	if (in->host_img && !j_keep)
		host_free(in);
	if (in->host_img) {
		set_state(in, ST_HOST);
		host_account(in, 1);
		enforce_host_budget(s, in);
	} else {
		set_state(in, ST_COLD);
	}
	/* anyone waiting for this memory? */
	for (inst *o = s->insts; o; o = o->next)
		if (o->waiting_evictions > 0 && o->dev == d && --o->waiting_evictions == 0)
			continue_load(o);
	if (in->deleted || in->unload_requested) {
		maybe_destroy(in);
		return;
	}
	if (in->nq > 0)
		begin_load(in);
	else if (in->state == ST_HOST)
		arm_idle(in);
}

static void on_idle_timer(uv_timer_t *t)
{
	inst *in = t->data;
	if (in->state == ST_WARM && in->inflight == 0 && in->nq == 0 &&
	    in->info.manifest.min_scale < 1)
		evict(in, 1, "idle");
}

static void on_host_ttl_timer(uv_timer_t *t)
{
	inst *in = t->data;
	if (in->state == ST_HOST)
		drop_host(in);
}

static void arm_idle(inst *in)
{
	if (in->s->stopping)
		return;
	if (in->state == ST_WARM && in->info.manifest.min_scale < 1)
		uv_timer_start(&in->idle_timer, on_idle_timer,
			       (uint64_t)(in->info.manifest.idle_timeout_s * 1000.0 + 0.5), 0);
	else if (in->state == ST_HOST)
		uv_timer_start(&in->host_ttl_timer, on_host_ttl_timer,
			       (uint64_t)(in->s->cfg.host_ttl_s * 1000.0), 0);
}

/* ---- cold start ---- */

static void load_failed(inst *in, int status, const char *msg)
{
	rt_logf(RT_LOG_ERROR, "function %s rev %u: cold start failed: %s", in->name, in->rev, msg);
	release_reservation(in);
	in->dev = NULL;
	if (in->restored) {
		rt_image_free(in->restored);
		in->restored = NULL;
	}
	set_state(in, in->host_img ? ST_HOST : ST_COLD);
	host_account(in, 1);
	fail_queue(in, status, msg);
	if (in->deleted || in->unload_requested)
		maybe_destroy(in);
}

static void load_done(rt_work *w)
{
	ijob *j = (ijob *)w;
	inst *in = j->in;
	rt_sched *s = in->s;
	int rc = j->rc;
	double copy_s = j->copy_s, load_s = j->load_s;
	fn_error err = j->err;
	uint64_t kv_taken = j->kv_taken;
	free(j);
	if (rc == 0 && kv_taken && kv_taken < in->kv_bytes && in->dev) {
		/* the kind took less KV cache than it was offered: the rest goes back to the budget */
		uint64_t back = in->kv_bytes - kv_taken;
		in->kv_bytes -= back;
		in->reserved -= back;
		in->dev->used -= back;
		in->dev->kv_bytes -= back;
		dev_label_mem(s, in->dev);
	}
	if (rc < 0) {
		if (in->dev_img && in->dev && in->dev->cuda) {
			rt_image_free(in->dev_img);   /* freeing device memory from the loop is safe */
			in->dev_img = NULL;
		}
		load_failed(in, err.status ? err.status : 503, err.msg[0] ? err.msg : "load failed");
		return;
	}
	uint64_t now = rt_clock_mono_ns();
	double total = (double)(now - in->t_load0) / 1e9;
	double restore_s = in->t_restore_done ? (double)(in->t_restore_done - in->t_load0) / 1e9 : 0;
	const char *tier = in->tier ? "host" : "disk";
	const char *kv[] = {"function", in->name, "tier", tier};
	const char *dkv[] = {"device", in->dev->name, "tier", tier};
	rt_metric_add(s->m_dev_cold, 1, 2, dkv);
	if (!in->deleted) {
		rt_metric_add(s->m_cold, 1, 2, kv);
		rt_metric_observe(s->m_cold_dur, total, 1, kv);
	}
	char f[768];
	int fl = snprintf(f, sizeof f,
		 "\"function\":\"%s\",\"revision\":%u,\"device\":\"%s\",\"tier\":\"%s\",\"bytes\":%" PRIu64
		 ",\"total_ms\":%.3f,\"restore_ms\":%.3f,\"copy_ms\":%.3f,\"load_ms\":%.3f",
		 in->name, in->rev, in->dev->name, tier, in->image_bytes, total * 1e3, restore_s * 1e3,
		 copy_s * 1e3, load_s * 1e3);
	if (in->kv_bytes && fl > 0 && (size_t)fl < sizeof f)   /* a generative kind's KV cache */
		fl += snprintf(f + fl, sizeof f - (size_t)fl, ",\"kv_cache_bytes\":%" PRIu64
			       ",\"max_sequences\":%d", in->kv_bytes, in->info.manifest.concurrency);
	/* how the restore itself went (disk tier): I/O mode and where its time went */
	const rt_image *ri = in->dev->cuda ? in->dev_img : in->host_img;
	if (!in->tier && ri && ri->stats.wall_s > 0 && fl > 0 && (size_t)fl < sizeof f)
		snprintf(f + fl, sizeof f - (size_t)fl,
			 ",\"restore_io\":\"%s\",\"restore_wall_ms\":%.3f,\"read_ms\":%.3f,\"decode_ms\":%.3f,"
			 "\"gpu_copy_ms\":%.3f,\"threads\":%d",
			 snap_io_mode_name(ri->stats.io), ri->stats.wall_s * 1e3, ri->stats.read_s * 1e3,
			 ri->stats.decode_s * 1e3, ri->stats.copy_s * 1e3, ri->stats.threads);
	rt_log(RT_LOG_INFO, "cold start", f);
	/* CPU: the host image is now the live one (device memory, not the tier); GPU: a host copy
	 * stays in the tier as a cache */
	if (!in->dev->cuda)
		host_account(in, 0);
	set_state(in, ST_WARM);
	settle(in);
}

/* For a generative kind: reserves its KV cache on the device (pool_kv_budget of what the
 * device's budget has left once the weights are placed) and fills what the kind is told at
 * load. Other kinds: nothing. */
static void plan_seq(inst *in, ijob *j)
{
	const fn_kind *k = NULL;
	fn_error e = {0};
	const rt_image *img = in->dev_img ? in->dev_img : in->host_img;
	if (rt_model_kind(img, in->info.manifest.kind, &k, &e) < 0 || !rt_model_is_generative(k))
		return;   /* the load reports an unknown kind */
	sdev *d = in->dev;
	uint64_t left = d->budget > d->used ? d->budget - d->used : 0;
	in->kv_bytes = pool_kv_budget(d->cuda, left);
	in->reserved += in->kv_bytes;
	d->used += in->kv_bytes;
	d->kv_bytes += in->kv_bytes;
	dev_label_mem(in->s, d);
	j->seq.kv_cache_bytes = in->kv_bytes;
	j->seq.max_sequences = in->info.manifest.concurrency;
	j->seq.prefix_caching = in->info.manifest.prefix_caching ? 1 : -1;
}

static void submit_load(inst *in)
{
	ijob *j = calloc(1, sizeof *j);
	if (!j) {
		load_failed(in, 500, "out of memory");
		return;
	}
	plan_seq(in, j);
	j->in = in;
	j->kind = JOB_LOAD;
	j->w.run = run_ijob;
	j->w.done = load_done;
	j->w.cls = RT_WORK_INVOKE;
	if (rt_lane_submit(in->dev->lane, &j->w) < 0) {
		free(j);
		load_failed(in, 503, "device is shutting down");
	}
}

static void restore_work(uv_work_t *w)
{
	inst *in = w->data;
	sdev *d = in->dev;
	if (!d) {
		/* probe: learn the image size */
		snap_file *f = NULL;
		in->restore_rc = snap_open(&f, in->info.snapshot_path, in->restore_err, sizeof in->restore_err);
		if (in->restore_rc == 0)
			in->image_bytes = snap_image_size(f);
		snap_close(f);
		return;
	}
	rt_fault_point("restore");
	in->restore_rc = rt_image_restore(in->info.snapshot_path, d->cuda ? d->gpu : NULL, 0,
					  in->s->cfg.decode_threads, &in->restored, in->restore_err,
					  sizeof in->restore_err);
}

static void place(inst *in);

static void restore_after(uv_work_t *w, int status)
{
	inst *in = w->data;
	in->uv_busy = 0;
	if (status < 0 || in->restore_rc < 0) {
		load_failed(in, 503, in->restore_err[0] ? in->restore_err : "snapshot restore failed");
		return;
	}
	if (!in->dev) {   /* probe done */
		place(in);
		return;
	}
	if (in->restored && in->image_bytes && in->restored->bytes != in->image_bytes) {
		char msg[400];
		snprintf(msg, sizeof msg, "snapshot %.200s changed since it was deployed (image of %" PRIu64
			 " bytes, %" PRIu64 " recorded): deploy it again", in->info.snapshot_path,
			 in->restored->bytes, in->image_bytes);
		rt_image_free(in->restored);
		in->restored = NULL;
		load_failed(in, 503, msg);
		return;
	}
	in->t_restore_done = rt_clock_mono_ns();
	if (in->dev->cuda)
		in->dev_img = in->restored;
	else
		in->host_img = in->restored;
	in->restored = NULL;
	submit_load(in);
}

static int start_pool_job(inst *in)
{
	in->uvw.data = in;
	in->uv_busy = 1;
	int rc = uv_queue_work(in->s->loop, &in->uvw, restore_work, restore_after);
	if (rc < 0)
		in->uv_busy = 0;
	return rc;
}

/* continues a cold start once the device has room (evictions finished) */
static void continue_load(inst *in)
{
	if (!in->info.snapshot_path[0] || (in->host_img && (in->tier = 1))) {
		submit_load(in);
		return;
	}
	in->tier = 0;
	if (start_pool_job(in) < 0)
		load_failed(in, 500, "cannot queue the snapshot restore");
}

/* rule 5 of rt_place.h: work queued on the lane, calls running or held on its instances, cold
 * starts under way there */
static int dev_load(rt_sched *s, const sdev *d)
{
	int load = rt_lane_queued(d->lane);
	for (inst *o = s->insts; o; o = o->next)
		if (o->dev == d)
			load += o->inflight + o->nq + (o->state == ST_LOADING);
	return load;
}

/* instances loaded (or loading, or evicting) on d */
static int dev_functions(rt_sched *s, const sdev *d)
{
	int n = 0;
	for (inst *o = s->insts; o; o = o->next)
		n += o->dev == d && (o->state == ST_WARM || o->state == ST_LOADING ||
				     o->state == ST_EVICTING);
	return n;
}

static int evictable_inst(const inst *o, const sdev *d)
{
	return o->dev == d && o->state == ST_WARM && !o->inflight && !o->nq && !o->batch_running &&
	       !o->admits && o->info.manifest.min_scale < 1;
}

/* picks a device with room (evicting idle instances there if needed; rt_place.h says in which
 * order devices are tried) and goes on */
static void place(inst *in)
{
	rt_sched *s = in->s;
	const rt_manifest *m = &in->info.manifest;
	uint64_t need = in->image_bytes;
	rt_place_dev pd[RT_LANE_MAX];
	int order[RT_LANE_MAX];
	for (int i = 0; i < s->ndevs; i++) {
		sdev *d = &s->devs[i];
		pd[i] = (rt_place_dev){.gpu = d->accel, .ordinal = d->ordinal, .budget = d->budget,
				       .used = d->used, .load = dev_load(s, d)};
		for (inst *o = s->insts; o; o = o->next)
			if (evictable_inst(o, d))
				pd[i].evictable += o->reserved;
		if (s->spill_fn && !d->spills_pending)
			pd[i].evictable += d->job_bytes;   /* a job's state can go to host memory */
	}
	int want = m->device == RT_DEVICE_CPU ? RT_PLACE_CPU
		   : m->device == RT_DEVICE_CUDA ? m->device_index : RT_PLACE_AUTO;
	int nc = rt_place_order(pd, s->ndevs, need, want, order);
	if (nc == 0 && rt_place_why(pd, s->ndevs, need, want) == -ENODEV) {
		char msg[160];
		snprintf(msg, sizeof msg, "device cuda:%d is not available on this node", m->device_index);
		load_failed(in, 503, msg);
		return;
	}
	for (int i = 0; i < nc; i++) {
		sdev *d = &s->devs[order[i]];
		uint64_t freeable = d->budget > d->used ? d->budget - d->used : 0;
		if (freeable + pd[order[i]].evictable < need)
			continue;     /* even evicting every idle instance there would not do */
		/* free room: first a job's state on the device goes to host memory (the job goes on
		 * from there and comes back when there is room), then least recently used idle warm
		 * instances are evicted */
		if (freeable < need && d->job_bytes && !d->spills_pending && s->spill_fn) {
			uint64_t got = s->spill_fn(s->spill_ud, d->lane);
			if (got) {
				freeable += got;
				d->spills_pending++;
				rt_logf(RT_LOG_INFO, "function %s rev %u: spilling the job state on %s "
					"(%.1f MiB) to host memory to make room", in->name, in->rev, d->name,
					(double)got / (1 << 20));
			}
		}
		while (freeable < need) {
			inst *lru = NULL;
			for (inst *o = s->insts; o; o = o->next)
				if (evictable_inst(o, d) && (!lru || o->last_used_ns < lru->last_used_ns))
					lru = o;
			if (!lru)
				break;
			freeable += lru->reserved;
			evict(lru, 1, "making room");
		}
		if (freeable < need)
			continue;
		in->dev = d;
		in->reserved = need;
		d->used += need;
		dev_label_mem(s, d);
		in->waiting_evictions = d->spills_pending;
		for (inst *o = s->insts; o; o = o->next)
			if (o->dev == d && o->state == ST_EVICTING)
				in->waiting_evictions++;
		if (in->waiting_evictions == 0)
			continue_load(in);
		return;
	}
	char msg[200];
	snprintf(msg, sizeof msg, "not enough device memory for function '%s' (%" PRIu64 " bytes)",
		 in->name, need);
	load_failed(in, 503, msg);
}

static void begin_load(inst *in)
{
	if (in->state == ST_LOADING || in->state == ST_WARM || in->state == ST_EVICTING ||
	    in->s->stopping)
		return;
	in->t_load0 = rt_clock_mono_ns();
	in->t_restore_done = 0;
	in->tier = in->host_img ? 1 : 0;
	idle_stop(in);
	set_state(in, ST_LOADING);
	in->dev = NULL;
	if (in->image_bytes == 0 && in->info.desc.known)
		in->image_bytes = in->info.desc.image_bytes;
	if (in->info.snapshot_path[0] && in->image_bytes == 0 && !in->host_img) {
		/* a revision without a descriptor (its snapshot was unreadable when it was
		 * described): learn the size on the pool first */
		if (start_pool_job(in) < 0)
			load_failed(in, 500, "cannot queue the snapshot probe");
		return;
	}
	if (in->host_img)
		in->image_bytes = in->host_img->bytes;
	place(in);
}

/* ---- unload, delete, destroy ---- */

/* after the kind state and device image are released: unload to disk, or free the instance */
static void finish_destroy(inst *in)
{
	release_reservation(in);
	in->dev = NULL;
	in->destroying = 0;
	if (in->unload_requested && !in->deleted) {
		in->unload_requested = 0;
		host_free(in);
		set_state(in, ST_COLD);
		const char *kv[] = {"function", in->name};
		rt_metric_add(in->s->m_evict, 1, 1, kv);
		if (in->nq > 0 || in->load_after_unload) {
			in->load_after_unload = 0;
			begin_load(in);
		}
		return;
	}
	free_inst(in);
}

static void destroy_done(rt_work *w)
{
	ijob *j = (ijob *)w;
	inst *in = j->in;
	free(j);
	gen_free(in);
	finish_destroy(in);
}

/* destroys (deleted) or unloads (unload_requested) an instance once nothing runs on it */
static void maybe_destroy(inst *in)
{
	if (in->inflight || in->batch_running || in->admits || in->uv_busy ||
	    in->state == ST_LOADING || in->state == ST_EVICTING || in->destroying)
		return;
	if (in->deleted)
		fail_queue(in, in->s->stopping ? 503 : 404,
			   in->s->stopping ? "server is shutting down" : "function was deleted");
	idle_stop(in);
	uv_timer_stop(&in->batch_timer);
	if (in->state == ST_WARM && in->dev) {
		ijob *j = calloc(1, sizeof *j);
		if (j) {
			j->in = in;
			j->kind = JOB_DESTROY;
			j->w.run = run_ijob;
			j->w.done = destroy_done;
			in->destroying = 1;
			if (rt_lane_submit(in->dev->lane, &j->w) == 0)
				return;
			free(j);
			in->destroying = 0;
		}
		/* no lane to run it (cannot happen before the lanes stop): leak rather than
		 * release a device state from the wrong thread */
		rt_logf(RT_LOG_ERROR, "function %s rev %u: cannot release its device state", in->name, in->rev);
		in->model = NULL;
		in->dev_img = NULL;
		gen_free(in);
	}
	finish_destroy(in);
}

void rt_sched_deleted(rt_sched *s, const char *name)
{
	for (inst *in = s->insts, *n; in; in = n) {
		n = in->next;
		if (strcmp(in->name, name) != 0 || in->deleted)
			continue;
		in->deleted = 1;
		pthread_mutex_lock(&in->mmu);
		in->quiet = 1;   /* its lane stops recording before the series are dropped */
		pthread_mutex_unlock(&in->mmu);
		fail_queue(in, 404, "function was deleted");
		maybe_destroy(in);
	}
	/* a deleted instance records no metric, so these do not come back from its calls that
	 * finish later */
	rt_metrics_drop_label(s->m, "function", name);
}

int rt_sched_unload(rt_sched *s, const char *name)
{
	rt_revision_info info;
	if (rt_registry_get(s->reg, name, &info) < 0)
		return -ENOENT;
	for (inst *in = s->insts; in; in = in->next) {
		if (strcmp(in->name, name) != 0 || in->deleted)
			continue;
		if (in->state == ST_COLD)
			continue;
		in->unload_requested = 1;
		maybe_destroy(in);
	}
	return 0;
}

static void load_revision(rt_sched *s, const char *name, uint32_t rev)
{
	inst *in;
	if (get_inst(s, name, rev, &in) == 0) {
		in->last_used_ns = rt_clock_mono_ns();
		if (in->destroying) {   /* an unload is releasing it: load again once it is done */
			in->load_after_unload = 1;
			return;
		}
		in->unload_requested = 0;
		begin_load(in);
	}
}

int rt_sched_load(rt_sched *s, const char *name)
{
	rt_traffic t;
	rt_revision_info info;
	if (rt_registry_get(s->reg, name, &info) < 0 || rt_registry_get_traffic(s->reg, name, &t) < 0)
		return -ENOENT;
	for (int i = 0; i < t.n; i++)
		if (t.e[i].percent > 0)
			load_revision(s, name, t.e[i].rev == RT_MANIFEST_REV_LATEST ? info.rev : t.e[i].rev);
	return 0;
}

void rt_sched_deployed(rt_sched *s, const char *name)
{
	rt_revision_info info;
	if (rt_registry_get(s->reg, name, &info) < 0)
		return;
	if (info.manifest.min_scale >= 1)
		rt_sched_load(s, name);
}

void rt_sched_start(rt_sched *s)
{
	rt_registry_entry *e = NULL;
	size_t n = 0;
	if (rt_registry_list(s->reg, &e, &n) < 0)
		return;
	for (size_t i = 0; i < n; i++)
		rt_sched_deployed(s, e[i].name);
	free(e);
}

/* ---- state for the API ---- */

static inst *main_inst(rt_sched *s, const char *name)
{
	uint32_t rev;
	/* the revision taking most traffic: draw 0 lands in the first entry; use the registry's
	 * pick with a fixed draw, which is the largest-percent-first ordering's first entry */
	rt_traffic t;
	rt_revision_info info;
	if (rt_registry_get(s->reg, name, &info) < 0)
		return NULL;
	rev = info.rev;
	if (rt_registry_get_traffic(s->reg, name, &t) == 0) {
		int best = -1;
		for (int i = 0; i < t.n; i++)
			if (best < 0 || t.e[i].percent > t.e[best].percent)
				best = i;
		if (best >= 0 && t.e[best].rev != RT_MANIFEST_REV_LATEST)
			rev = t.e[best].rev;
	}
	return find_inst(s, name, rev);
}

static json_t *inst_json(inst *in)
{
	char t[40];
	json_t *o = json_object();
	json_object_set_new(o, "revision", json_integer(in->rev));
	json_object_set_new(o, "state", json_string(rt_sched_state_name(in->state)));
	json_object_set_new(o, "device", in->dev ? json_string(in->dev->name) : json_null());
	uint64_t resident = (in->state == ST_WARM || in->state == ST_EVICTING) ? in->image_bytes :
			    (in->host_img ? in->host_img->bytes : 0);
	json_object_set_new(o, "resident_bytes", json_integer((json_int_t)resident));
	json_object_set_new(o, "inflight", json_integer(in->inflight));
	json_object_set_new(o, "queued", json_integer(in->nq));
	if (in->last_call_ms) {
		rt_registry_format_time(in->last_call_ms, t, sizeof t);
		json_object_set_new(o, "last_call", json_string(t));
	} else {
		json_object_set_new(o, "last_call", json_null());
	}
	return o;
}

json_t *rt_sched_state_json(rt_sched *s, const char *name)
{
	json_t *o = json_object(), *arr = json_array();
	inst *mi = main_inst(s, name);
	for (inst *in = s->insts; in; in = in->next)
		if (!in->deleted && strcmp(in->name, name) == 0)
			json_array_append_new(arr, inst_json(in));
	if (mi) {
		json_t *m = inst_json(mi);
		json_object_set(o, "state", json_object_get(m, "state"));
		json_object_set(o, "device", json_object_get(m, "device"));
		json_object_set(o, "resident_bytes", json_object_get(m, "resident_bytes"));
		json_object_set(o, "last_call", json_object_get(m, "last_call"));
		json_decref(m);
	} else {
		json_object_set_new(o, "state", json_string("cold"));
		json_object_set_new(o, "device", json_null());
		json_object_set_new(o, "resident_bytes", json_integer(0));
		json_object_set_new(o, "last_call", json_null());
	}
	json_object_set_new(o, "instances", arr);
	return o;
}

int rt_sched_is_ready(rt_sched *s, const char *name)
{
	inst *mi = main_inst(s, name);
	return mi && mi->state == ST_WARM;
}

/* route_rank orders instance states for routing: warm > loading > host > cold (evicting) */
static int route_rank(int st)
{
	switch (st) {
	case ST_WARM: return RT_SCHED_WARM;
	case ST_LOADING: return RT_SCHED_LOADING;
	case ST_HOST: return RT_SCHED_HOST;
	default: return RT_SCHED_COLD;
	}
}

/* best_inst returns name's live instance of the best routing state (NULL: none) */
static inst *best_inst(rt_sched *s, const char *name)
{
	inst *best = NULL;
	for (inst *in = s->insts; in; in = in->next)
		if (!in->deleted && strcmp(in->name, name) == 0 &&
		    (!best || route_rank(in->state) > route_rank(best->state)))
			best = in;
	return best;
}

/* room: a cold start under way takes calls up to its queue's bound (how fast it will run them
 * is not known yet); a live instance while fewer than one round of calls wait */
static int inst_room(const inst *in)
{
	if (in->state == ST_LOADING)
		return in->nq < in->info.manifest.max_queue;
	int conc = in->info.manifest.concurrency > 0 ? in->info.manifest.concurrency : 1;
	return in->nq < conc;
}

int rt_sched_local_state(rt_sched *s, const char *name, int *room)
{
	inst *in = best_inst(s, name);
	int st = in ? route_rank(in->state) : RT_SCHED_COLD;
	if (room)
		*room = in && st != RT_SCHED_COLD && inst_room(in);
	return st;
}

json_t *rt_sched_residents_json(rt_sched *s)
{
	static const char *const names[] = {"cold", "loading", "host", "warm"};
	json_t *o = json_object();
	for (inst *in = s->insts; in; in = in->next) {
		if (in->deleted || route_rank(in->state) == RT_SCHED_COLD ||
		    best_inst(s, in->name) != in)
			continue;
		json_object_set_new(o, in->name,
				    json_pack("{s:I,s:s,s:i,s:i,s:b}", "revision", (json_int_t)in->rev,
					      "state", names[route_rank(in->state)],
					      "inflight", in->inflight, "queued", in->nq,
					      "room", inst_room(in)));
	}
	return o;
}

uint64_t rt_sched_free_bytes(rt_sched *s)
{
	uint64_t best = 0, cpu = 0;
	int accel = 0;
	for (int i = 0; i < s->ndevs; i++) {
		const sdev *d = &s->devs[i];
		uint64_t free_b = d->budget > d->used ? d->budget - d->used : 0;
		if (d->accel) {
			accel = 1;
			if (free_b > best)
				best = free_b;
		} else {
			cpu = free_b;
		}
	}
	return accel ? best : cpu;
}

int rt_sched_calls(rt_sched *s)
{
	int n = 0;
	for (inst *in = s->insts; in; in = in->next)
		if (!in->deleted)
			n += in->inflight + in->nq;
	return n;
}

void rt_sched_set_residency_hook(rt_sched *s, void (*fn)(void *ud), void *ud)
{
	s->res_fn = fn;
	s->res_ud = ud;
}

json_t *rt_sched_stats_json(rt_sched *s, const char *name)
{
	uint64_t ok = 0, fail = 0, ns_ok = 0, ns_q = 0, batches = 0;
	for (inst *in = s->insts; in; in = in->next)
		if (!in->deleted && strcmp(in->name, name) == 0) {
			ok += in->n_ok;
			fail += in->n_fail;
			ns_ok += in->ns_ok_total;
			ns_q += in->ns_queue_total;
			batches += in->n_batches;
		}
	return json_pack("{s:I,s:I,s:{s:{s:I,s:I},s:{s:I,s:I},s:{s:I,s:I}},s:I}",
			 "success_count", (json_int_t)ok, "failure_count", (json_int_t)fail,
			 "inference_stats",
			 "success", "count", (json_int_t)ok, "ns", (json_int_t)ns_ok,
			 "fail", "count", (json_int_t)fail, "ns", (json_int_t)0,
			 "queue", "count", (json_int_t)(ok + fail), "ns", (json_int_t)ns_q,
			 "execution_count", (json_int_t)batches);
}

json_t *rt_sched_devices_json(rt_sched *s)
{
	json_t *arr = json_array();
	rt_sched_update_gauges(s);
	for (int i = 0; i < s->ndevs; i++) {
		sdev *d = &s->devs[i];
		json_t *o = json_pack("{s:s,s:s,s:s,s:I,s:I,s:I,s:f,s:i,s:i}", "device", d->name,
				      "kind", d->accel ? "cuda" : "cpu", "name", d->model_name,
				      "memory_used", (json_int_t)(d->used - d->kv_bytes),
				      "kv_cache_bytes", (json_int_t)d->kv_bytes,
				      "memory_total", (json_int_t)d->budget,
				      "busy_ratio", d->busy_ratio,
				      "queued", rt_lane_queued(d->lane),
				      "functions", dev_functions(s, d));
		if (d->accel && !d->cuda)
			json_object_set_new(o, "fake", json_true());
		json_array_append_new(arr, o);
	}
	return arr;
}

/* ---- lifecycle ---- */

int rt_sched_new(uv_loop_t *loop, rt_registry *reg, rt_metrics *m, const rt_sched_config *cfg,
		 rt_sched **out)
{
	int rc;
	rt_sched *s = calloc(1, sizeof *s);
	if (!s)
		return -ENOMEM;
	s->loop = loop;
	s->reg = reg;
	s->cfg = *cfg;
	s->m = m;
	s->rng = rt_clock_mono_ns() | 1;
	/* freed host images stay mapped for the next cold start, within the host tier's budget */
	pool_host_cache_set(cfg->host_budget_bytes);
	s->m_inv = rt_metrics_family(m, "thaw_invocations_total", RT_METRIC_COUNTER,
				     "Function invocations answered, by function and status code.", NULL, 0);
	s->m_inv_dur = rt_metrics_family(m, "thaw_invocation_duration_seconds", RT_METRIC_HISTOGRAM,
					 "Invocation time from arrival to result, by function.",
					 rt_metrics_latency_buckets, rt_metrics_latency_nbuckets);
	s->m_queue = rt_metrics_family(m, "thaw_queue_duration_seconds", RT_METRIC_HISTOGRAM,
				       "Time calls waited (cold start, concurrency, batching) before running.",
				       rt_metrics_latency_buckets, rt_metrics_latency_nbuckets);
	s->m_cold = rt_metrics_family(m, "thaw_cold_starts_total", RT_METRIC_COUNTER,
				      "Cold starts, by function and the tier the weights came from.", NULL, 0);
	s->m_cold_dur = rt_metrics_family(m, "thaw_cold_start_duration_seconds", RT_METRIC_HISTOGRAM,
					  "Cold start time (restore + load), by function.",
					  rt_metrics_latency_buckets, rt_metrics_latency_nbuckets);
	s->m_state = rt_metrics_family(m, "thaw_function_state", RT_METRIC_GAUGE,
				       "1 for the function's current state (cold, host, warm).", NULL, 0);
	s->m_evict = rt_metrics_family(m, "thaw_evictions_total", RT_METRIC_COUNTER,
				       "Evictions of a function from its device.", NULL, 0);
	s->m_mem = rt_metrics_family(m, "thaw_device_memory_bytes", RT_METRIC_GAUGE,
				     "Device memory of each device's budget: used (weights, job state), kv (KV caches of generative functions) and total (the budget).", NULL, 0);
	s->m_busy = rt_metrics_family(m, "thaw_lane_busy_ratio", RT_METRIC_GAUGE,
				      "Share of time each device lane ran work since the last scrape.", NULL, 0);
	s->m_dev_inv = rt_metrics_family(m, "thaw_device_invocations_total", RT_METRIC_COUNTER,
					 "Invocations answered by instances on each device.", NULL, 0);
	s->m_dev_cold = rt_metrics_family(m, "thaw_device_cold_starts_total", RT_METRIC_COUNTER,
					  "Cold starts onto each device, by tier.", NULL, 0);
	s->m_dev_fn = rt_metrics_family(m, "thaw_device_functions", RT_METRIC_GAUGE,
					"Function instances loaded (or loading) on each device.", NULL, 0);
	static const double seq_buckets[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};
	s->m_step_seqs = rt_metrics_family(m, "thaw_step_sequences", RT_METRIC_HISTOGRAM,
					   "Sequences that ran in each step of a generative function (decode rows and prompt chunks).",
					   seq_buckets, (int)(sizeof seq_buckets / sizeof seq_buckets[0]));
	s->m_kv = rt_metrics_family(m, "thaw_kv_blocks", RT_METRIC_GAUGE,
				    "KV cache blocks of each generative function on each device: used and total.",
				    NULL, 0);
	s->m_ttft = rt_metrics_family(m, "thaw_time_to_first_token_seconds", RT_METRIC_HISTOGRAM,
				      "Time from a call's arrival to its first streamed token (chunk), by function.",
				      rt_metrics_latency_buckets, rt_metrics_latency_nbuckets);
	s->m_itl = rt_metrics_family(m, "thaw_inter_token_latency_seconds", RT_METRIC_HISTOGRAM,
				     "Time between two streamed tokens (chunks) of a call, by function.",
				     rt_metrics_latency_buckets, rt_metrics_latency_nbuckets);
	s->m_prefix_lookup = rt_metrics_family(m, "thaw_prefix_cache_lookup_tokens_total", RT_METRIC_COUNTER,
					       "Prompt tokens looked up in the prefix cache, by function.",
					       NULL, 0);
	s->m_prefix_hit = rt_metrics_family(m, "thaw_prefix_cache_hit_tokens_total", RT_METRIC_COUNTER,
					    "Prompt tokens found in the prefix cache (KV blocks shared), by function.",
					    NULL, 0);
	s->m_preempt = rt_metrics_family(m, "thaw_preempted_sequences_total", RT_METRIC_COUNTER,
					 "Sequences whose KV blocks were taken back to be recomputed, by function.",
					 NULL, 0);
	/* the CPU lane */
	sdev *d = &s->devs[0];
	snprintf(d->name, sizeof d->name, "cpu");
	snprintf(d->model_name, sizeof d->model_name, "host CPU");
	d->ordinal = -1;
	d->budget = cfg->cpu_budget_bytes;
	rc = rt_lane_open(loop, "cpu", cfg->cpu_threads, &d->lane);
	if (rc < 0) {
		free(s);
		return rc;
	}
	d->wall_prev_ns = rt_clock_mono_ns();
	s->ndevs = 1;
	int ngpu = cfg->no_gpu ? 0 : pool_gpu_count();
	for (int g = 0; g < ngpu && s->ndevs < RT_LANE_MAX; g++) {
		sdev *gd = &s->devs[s->ndevs];
		char err[256] = "";
		pool_gpu_opts o = {.device = g};
		snprintf(gd->name, sizeof gd->name, "cuda:%d", g);
		gd->cuda = 1;
		gd->accel = 1;
		gd->ordinal = g;
		rc = pool_gpu_open(&gd->gpu, &o, err, sizeof err);
		if (rc == 0)
			rc = rt_lane_open(loop, gd->name, 0, &gd->lane);
		if (rc < 0) {
			rt_logf(RT_LOG_ERROR, "GPU %s not used: %s", gd->name, err[0] ? err : strerror(-rc));
			if (gd->gpu)
				pool_gpu_close(gd->gpu);
			memset(gd, 0, sizeof *gd);
			continue;
		}
		snprintf(gd->model_name, sizeof gd->model_name, "%s", pool_gpu_name(gd->gpu));
		(void)pool_gpu_weight_budget(gd->gpu, cfg->gpu_mem_share, &gd->budget);   /* 0 on failure */
		if (cfg->gpu_budget_bytes)
			gd->budget = cfg->gpu_budget_bytes;
		gd->wall_prev_ns = rt_clock_mono_ns();
		rt_logf(RT_LOG_INFO, "GPU %s (%s) ready: %.1f GiB for weights, pool opened in %.3f s",
			gd->name, gd->model_name, (double)gd->budget / (1 << 30), pool_gpu_open_s(gd->gpu));
		s->ndevs++;
	}
	/* tests only: CPU lanes that placement treats as GPUs cuda:0..N-1 (never next to real ones) */
	int fakes = s->ndevs == 1 ? cfg->fake_gpus : 0;
	for (int g = 0; g < fakes && s->ndevs < RT_LANE_MAX; g++) {
		sdev *fd = &s->devs[s->ndevs];
		snprintf(fd->name, sizeof fd->name, "cuda:%d", g);
		snprintf(fd->model_name, sizeof fd->model_name, "fake GPU (CPU lane, tests)");
		fd->accel = 1;
		fd->ordinal = g;
		fd->budget = cfg->fake_gpu_bytes;
		rc = rt_lane_open_as(loop, "cpu", fd->name, cfg->cpu_threads, &fd->lane);
		if (rc < 0) {
			rt_logf(RT_LOG_ERROR, "fake GPU %s not opened: %s", fd->name, strerror(-rc));
			memset(fd, 0, sizeof *fd);
			break;
		}
		fd->wall_prev_ns = rt_clock_mono_ns();
		s->ndevs++;
	}
	if (fakes > 0)
		rt_logf(RT_LOG_WARN, "%d fake GPUs (CPU lanes with %.1f MiB of weight memory each), for "
			"placement tests only", s->ndevs - 1, (double)cfg->fake_gpu_bytes / (1 << 20));
	for (int i = 0; i < s->ndevs; i++)
		dev_label_mem(s, &s->devs[i]);
	*out = s;
	return 0;
}

/* once every instance is gone: stop the lanes (their queues are empty) and close the pools */
static void check_stopped(rt_sched *s)
{
	if (!s->stopping || s->insts || s->pending_handles > 0 || s->lanes_stopped)
		return;
	s->lanes_stopped = 1;
	for (int i = 0; i < s->ndevs; i++) {
		rt_lane_stop(s->devs[i].lane);
		s->devs[i].lane = NULL;
		if (s->devs[i].gpu)
			pool_gpu_close(s->devs[i].gpu);
		s->devs[i].gpu = NULL;
	}
	pool_host_cache_set(0);
	if (s->stopped)
		s->stopped(s->stopped_ud);
}

void rt_sched_stop(rt_sched *s, void (*done)(void *ud), void *ud)
{
	s->stopping = 1;
	s->stopped = done;
	s->stopped_ud = ud;
	/* every instance is destroyed once its running work finishes; held calls get 503 */
	for (inst *in = s->insts, *n; in; in = n) {
		n = in->next;
		in->deleted = 1;
		maybe_destroy(in);
	}
	check_stopped(s);
}

void rt_sched_free(rt_sched *s)
{
	free(s);
}

/* ---- time-sharing hooks ---- */

int rt_sched_lane_count(rt_sched *s)
{
	return s->ndevs;
}

rt_lane *rt_sched_lane_at(rt_sched *s, int i)
{
	return i >= 0 && i < s->ndevs ? s->devs[i].lane : NULL;
}

rt_lane *rt_sched_lane_find(rt_sched *s, const char *spec)
{
	if (strcmp(spec, "auto") == 0)
		return s->devs[s->ndevs > 1 ? 1 : 0].lane;
	for (int i = 0; i < s->ndevs; i++)
		if (strcmp(s->devs[i].name, spec) == 0)
			return s->devs[i].lane;
	return NULL;
}

int rt_sched_lane_score(rt_sched *s, int i)
{
	if (i < 0 || i >= s->ndevs)
		return -1;
	const sdev *d = &s->devs[i];
	return (d->accel ? 0 : 1 << 20) + 4 * dev_load(s, d) + dev_functions(s, d);
}

/* ---- job state in device memory ---- */

static sdev *dev_of_lane(rt_sched *s, rt_lane *lane)
{
	for (int i = 0; i < s->ndevs; i++)
		if (s->devs[i].lane == lane)
			return &s->devs[i];
	return NULL;
}

void rt_sched_set_spill_hook(rt_sched *s, rt_sched_spill_fn fn, void *ud)
{
	s->spill_fn = fn;
	s->spill_ud = ud;
}

int rt_sched_lane_is_accel(rt_sched *s, rt_lane *lane)
{
	sdev *d = dev_of_lane(s, lane);
	return d && d->accel;
}

int rt_sched_job_reserve(rt_sched *s, rt_lane *lane, uint64_t bytes)
{
	sdev *d = dev_of_lane(s, lane);
	if (!d)
		return -ENOENT;
	if (d->spills_pending || d->used > d->budget || bytes > d->budget - d->used)
		return -ENOSPC;
	/* a cold start waiting for room on this device goes first */
	for (inst *o = s->insts; o; o = o->next)
		if (o->dev == d && o->state == ST_LOADING && o->waiting_evictions > 0)
			return -ENOSPC;
	d->used += bytes;
	d->job_bytes += bytes;
	dev_label_mem(s, d);
	return 0;
}

void rt_sched_job_release(rt_sched *s, rt_lane *lane, uint64_t bytes, int spilled)
{
	sdev *d = dev_of_lane(s, lane);
	if (!d)
		return;
	bytes = bytes > d->job_bytes ? d->job_bytes : bytes;
	d->job_bytes -= bytes;
	d->used -= bytes <= d->used ? bytes : d->used;
	dev_label_mem(s, d);
	if (!spilled || d->spills_pending == 0)
		return;
	d->spills_pending--;
	/* cold starts waiting for this memory go on */
	for (inst *o = s->insts; o; o = o->next)
		if (o->waiting_evictions > 0 && o->dev == d && o->state == ST_LOADING &&
		    --o->waiting_evictions == 0)
			continue_load(o);
}

/* test_sched_gen.c — iteration-level serving in the scheduler, driven with rt_call (no HTTP):
 * a real registry, scheduler and loop, and a generative kind registered here ("seqtest": each
 * held sequence emits one token per step, start, start + 1, ..., until its n-th, then answers
 * {"tokens": [...]}). Covers calls admitted while others run, two functions interleaving on
 * one lane (a short call finishing before a long generation), max_batch bounding the rows of a
 * step, concurrency bounding the calls held, the keys a generative kind gets at load, cancel
 * and timeout in the middle of a generation (also of a call still waiting inside the kind,
 * which learns it through a poll), draining on stop, a background item that yields to steps,
 * unload and delete while sequences are held, a refused seq_add, and the step metrics. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "runtime/base/rt_clock.h"
#include "runtime/sched/rt_lane.h"
#include "runtime/sched/rt_sched.h"
#include "snapshot/snap_pack.h"
#include "tests/t.h"

/* ---- the generative test kind ---- */

/* what the kind saw, across instances (written on the lane thread, read by the test) */
static struct {
	pthread_mutex_t mu;
	int loads, releases;
	long long meta_kv, meta_max_seq;   /* the last load's keys (-1: absent) */
	int meta_prefix;                   /* 1 true, 0 false, -1 absent */
	int max_held, max_rows, over_admit, held_now;
	long long steps, rows, polls;
} ks = {.mu = PTHREAD_MUTEX_INITIALIZER};

typedef struct tseq {
	fn_call *c;
	long long n, k, start, prompt;
	int us;                    /* step time while it runs, µs */
	json_t *toks;
} tseq;

typedef struct tstate {
	int max_sequences, prefix;
	long long kv_bytes;
	tseq *held;
	size_t nheld, cap;
} tstate;

static void ks_reset(void)
{
	pthread_mutex_lock(&ks.mu);
	ks.loads = ks.releases = 0;
	ks.meta_kv = ks.meta_max_seq = -1;
	ks.meta_prefix = -1;
	ks.max_held = ks.max_rows = ks.over_admit = 0;
	ks.steps = ks.rows = ks.polls = 0;
	pthread_mutex_unlock(&ks.mu);
}

static int tk_load(const fn_load_args *a, void **state, fn_error *err)
{
	tstate *t = calloc(1, sizeof *t);
	if (!t)
		return fn_err(err, 503, "out of memory"), -ENOMEM;
	json_t *kv = json_object_get(a->meta, "kv_cache_bytes");
	json_t *ms = json_object_get(a->meta, "max_sequences");
	json_t *pc = json_object_get(a->meta, "prefix_caching");
	t->kv_bytes = json_is_integer(kv) ? json_integer_value(kv) : 1 << 20;
	t->max_sequences = json_is_integer(ms) ? (int)json_integer_value(ms) : 16;
	t->prefix = !pc || json_is_true(pc);
	t->cap = (size_t)t->max_sequences;
	t->held = calloc(t->cap, sizeof *t->held);
	if (!t->held) {
		free(t);
		return fn_err(err, 503, "out of memory"), -ENOMEM;
	}
	pthread_mutex_lock(&ks.mu);
	ks.loads++;
	ks.meta_kv = json_is_integer(kv) ? json_integer_value(kv) : -1;
	ks.meta_max_seq = json_is_integer(ms) ? json_integer_value(ms) : -1;
	ks.meta_prefix = pc ? json_is_true(pc) : -1;
	pthread_mutex_unlock(&ks.mu);
	*state = t;
	return 0;
}

static void tk_release(void *state)
{
	tstate *t = state;
	for (size_t i = 0; i < t->nheld; i++)
		json_decref(t->held[i].toks);
	free(t->held);
	free(t);
	pthread_mutex_lock(&ks.mu);
	ks.releases++;
	pthread_mutex_unlock(&ks.mu);
}

static long long field(const json_t *in, const char *k, long long def)
{
	json_t *v = json_object_get(in, k);
	return json_is_integer(v) ? json_integer_value(v) : def;
}

static int tk_seq_add(void *state, fn_call *c)
{
	tstate *t = state;
	json_t *n = json_object_get(c->in, "n");
	if (!json_is_integer(n) || json_integer_value(n) < 1 || json_integer_value(n) > 1000000)
		return fn_err(&c->err, 400, "'n' must be an integer 1..1000000");
	if (t->nheld == t->cap) {   /* the runtime bounds what a state holds: never happens */
		pthread_mutex_lock(&ks.mu);
		ks.over_admit++;
		pthread_mutex_unlock(&ks.mu);
		return fn_err(&c->err, 503, "more calls than max_sequences");
	}
	tseq *q = &t->held[t->nheld++];
	*q = (tseq){.c = c, .n = json_integer_value(n), .start = field(c->in, "start", 0),
		    .prompt = field(c->in, "prompt", 0), .us = (int)field(c->in, "us", 500),
		    .toks = json_array()};
	pthread_mutex_lock(&ks.mu);
	if ((int)t->nheld > ks.max_held)
		ks.max_held = (int)t->nheld;
	pthread_mutex_unlock(&ks.mu);
	return 0;
}

/* one step: the oldest max_seqs sequences emit their next token, the others are polled */
static int tk_seq_step(void *state, fn_step *st)
{
	tstate *t = state;
	size_t limit = st->max_seqs > 0 ? (size_t)st->max_seqs : t->nheld, keep = 0;
	int rows = 0, us = 0, polls = 0;
	st->n_done = 0;
	st->prefix_lookup_tokens = st->prefix_hit_tokens = 0;
	for (size_t i = 0; i < t->nheld; i++) {
		tseq *q = &t->held[i];
		int stop;
		if (i < limit) {
			if (q->k == 0) {
				st->prefix_lookup_tokens += q->prompt;
				st->prefix_hit_tokens += t->prefix ? q->prompt / 2 : 0;
			}
			json_t *chunk = json_pack("{s:I}", "token", (json_int_t)(q->start + q->k));
			stop = q->c->emit && q->c->emit(q->c->emit_ctx, chunk) != 0;
			json_decref(chunk);
			if (!stop) {
				json_array_append_new(q->toks, json_integer(q->start + q->k));
				q->k++;
				rows++;
				us = q->us > us ? q->us : us;
			}
		} else {
			stop = q->c->emit && q->c->emit(q->c->emit_ctx, NULL) != 0;
			polls++;
		}
		if (stop) {
			fn_err(&q->c->err, 499, "stopped: nobody waits for the call");
			json_decref(q->toks);
			st->done[st->n_done++] = q->c;
		} else if (q->k == q->n) {
			q->c->out = json_pack("{s:o}", "tokens", q->toks);
			st->done[st->n_done++] = q->c;
		} else {
			t->held[keep++] = *q;
		}
	}
	t->nheld = keep;
	if (us)
		usleep((useconds_t)us);
	st->held = t->nheld;
	st->seqs = st->decode_rows = rows;
	st->prefill_tokens = 0;
	st->preempted = 0;
	st->kv_blocks_total = t->kv_bytes / 1024;
	st->kv_bytes = (uint64_t)t->kv_bytes / 2;   /* takes half of what it is offered */
	st->kv_blocks_used = 0;
	for (size_t i = 0; i < t->nheld; i++)
		st->kv_blocks_used += (t->held[i].prompt + t->held[i].k + 3) / 4;
	pthread_mutex_lock(&ks.mu);
	ks.steps++;
	ks.held_now = (int)t->nheld;
	ks.rows += rows;
	ks.polls += polls;
	if (rows > ks.max_rows)
		ks.max_rows = rows;
	pthread_mutex_unlock(&ks.mu);
	return 0;
}

/* invoke: the same sequences, run to the end */
static int tk_invoke(void *state, fn_call *calls, size_t n)
{
	fn_call **done = calloc(n ? n : 1, sizeof *done);
	if (!done)
		return -ENOMEM;
	size_t held = 0;
	for (size_t i = 0; i < n; i++)
		held += tk_seq_add(state, &calls[i]) == 0;
	while (held) {
		fn_step st = {.done = done};
		tk_seq_step(state, &st);
		held = st.held;
	}
	free(done);
	return 0;
}

static const fn_kind seqtest_kind = {
	.abi = FN_ABI_VERSION,
	.name = "seqtest",
	.summary = "test: one token per step per held sequence",
	.load = tk_load,
	.invoke = tk_invoke,
	.release = tk_release,
	.seq_add = tk_seq_add,
	.seq_step = tk_seq_step,
};

/* ---- the scheduler around it ---- */

typedef struct env {
	uv_loop_t loop;
	char data[1024];
	rt_registry *reg;
	rt_metrics *m;
	rt_sched *s;
	int stopped;
} env;

/* a snapshot for the test kind (it reads no weights: any will do), packed once */
static char seq_snap[1100];

static int make_snapshot(void)
{
	char src[1200], err[512];
	snprintf(seq_snap, sizeof seq_snap, "%s/seqtest.thaw", t_tmpdir());
	snprintf(src, sizeof src, "%s/tests/data/mlp_digits/model.safetensors", t_src());
	snap_pack_opts po = {.kind = "seqtest", .w = {.threads = 1}};
	if (snap_pack(src, seq_snap, &po, NULL, err, sizeof err) < 0) {
		fprintf(stderr, "  pack: %s\n", err);
		return -1;
	}
	return 0;
}

/* deploys name as kind with these settings (echo without a snapshot) */
static int deploy(env *e, const char *name, const char *kind, int concurrency, int max_batch,
		  int max_queue, double timeout_s)
{
	char err[512];
	rt_manifest m;
	rt_manifest_defaults(&m);
	snprintf(m.kind, sizeof m.kind, "%s", kind);
	int echo = strcmp(kind, "echo") == 0;
	snprintf(m.snapshot, sizeof m.snapshot, "%s", echo ? "" : seq_snap);
	m.concurrency = concurrency;
	m.max_batch = max_batch;
	m.max_queue = max_queue;
	if (timeout_s > 0)
		m.timeout_s = timeout_s;
	if (rt_registry_put(e->reg, name, &m, echo ? "" : seq_snap, NULL, err, sizeof err) < 0) {
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
	ks_reset();
	snprintf(e->data, sizeof e->data, "%s/sched-gen-%d", t_tmpdir(), ++n);
	mkdir(e->data, 0755);
	uv_loop_init(&e->loop);
	if (rt_registry_open(e->data, &e->reg, err, sizeof err) < 0) {
		fprintf(stderr, "  registry: %s\n", err);
		return -1;
	}
	rt_sched_config sc;
	rt_sched_config_defaults(&sc);
	sc.no_gpu = 1;
	sc.cpu_threads = 1;
	e->m = rt_metrics_new();
	return rt_sched_new(&e->loop, e->reg, e->m, &sc, &e->s) < 0 ? -1 : 0;
}

static void on_stopped(void *ud) { ((env *)ud)->stopped = 1; }

static void env_stop(env *e)
{
	rt_sched_stop(e->s, on_stopped, e);
	for (int i = 0; i < 200000 && !e->stopped; i++)
		uv_run(&e->loop, UV_RUN_ONCE);
	T_CHECK(e->stopped);
}

static void env_close(env *e)
{
	if (!e->stopped)
		env_stop(e);
	uv_run(&e->loop, UV_RUN_NOWAIT);
	rt_sched_free(e->s);
	rt_registry_close(e->reg);
	rt_metrics_free(e->m);
	uv_run(&e->loop, UV_RUN_DEFAULT);
	T_EQ_INT(uv_loop_close(&e->loop), 0);
}

/* one call: its stream (lane thread) and its end (loop) */
typedef struct tcall {
	pthread_mutex_t mu;
	int chunks, got_null, bad_order;
	long long last_token;
	uint64_t t_first, t_last;  /* when the first and the last chunk came */
	/* the end */
	int n, status, order;
	json_t *out;
	char msg[256];
	/* cancel hook */
	rt_call_cancel_fn cancel;
	void *arg;
} tcall;

static int done_seq;

static int on_chunk(void *ctx, json_t *chunk)
{
	tcall *t = ctx;
	pthread_mutex_lock(&t->mu);
	if (!chunk) {
		t->got_null++;
	} else {
		long long tok = json_integer_value(json_object_get(chunk, "token"));
		if (t->chunks > 0 && tok != t->last_token + 1)
			t->bad_order++;
		t->last_token = tok;
		t->t_last = rt_clock_mono_ns();
		if (t->chunks++ == 0)
			t->t_first = t->t_last;
	}
	pthread_mutex_unlock(&t->mu);
	return 0;
}

static int chunks_of(tcall *t)
{
	pthread_mutex_lock(&t->mu);
	int n = t->chunks;
	pthread_mutex_unlock(&t->mu);
	return n;
}

static void on_done(const rt_call_result *r, void *ud)
{
	tcall *t = ud;
	t->n++;
	t->order = ++done_seq;
	t->status = r->out ? 200 : r->err->status;
	t->out = json_incref(r->out);
	snprintf(t->msg, sizeof t->msg, "%s", r->err ? r->err->msg : "");
}

static int watch(void *ctx, rt_call_cancel_fn cancel, void *arg)
{
	tcall *t = ctx;
	t->cancel = cancel;
	t->arg = arg;
	return 0;
}

static void submit(env *e, const char *fn, tcall *t, long long n, long long start, int us,
		   double timeout_s)
{
	memset(t, 0, sizeof *t);
	pthread_mutex_init(&t->mu, NULL);
	rt_call c = {.function = fn, .in = json_pack("{s:I,s:I,s:i,s:i}", "n", (json_int_t)n,
						     "start", (json_int_t)start, "us", us,
						     "prompt", 8),
		     .timeout_s = timeout_s, .emit = on_chunk, .emit_ctx = t, .done = on_done,
		     .ud = t, .watch = watch, .watch_ctx = t};
	rt_sched_submit(e->s, &c);
}

/* runs the loop until cond(arg) or about 20 s */
static int run_until(env *e, int (*cond)(void *), void *arg)
{
	uint64_t t0 = rt_clock_mono_ns();
	while (!cond(arg) && rt_clock_mono_ns() - t0 < 20000000000ull)
		uv_run(&e->loop, UV_RUN_NOWAIT), usleep(200);
	return cond(arg);
}

static int is_done(void *a) { return ((tcall *)a)->n > 0; }
static int has_chunks(void *a) { return chunks_of(a) >= 3; }

/* the call ended with 200 and the tokens start .. start + n - 1, streamed in order */
static int tokens_ok(tcall *t, long long n, long long start)
{
	json_t *toks = json_object_get(t->out, "tokens");
	int ok = t->n == 1 && t->status == 200 && json_array_size(toks) == (size_t)n &&
		 chunks_of(t) == n && !t->bad_order && !t->got_null;
	for (size_t i = 0; ok && i < (size_t)n; i++)
		ok = json_integer_value(json_array_get(toks, i)) == start + (long long)i;
	if (!ok)
		fprintf(stderr, "  call: n=%d status %d (%s), %zu tokens, %d chunks, order %d, null %d\n",
			t->n, t->status, t->msg, json_array_size(toks), chunks_of(t), t->bad_order,
			t->got_null);
	return ok;
}

static void tcall_free(tcall *t)
{
	json_decref(t->out);
	t->out = NULL;
	pthread_mutex_destroy(&t->mu);
}

static json_t *inst0(env *e, const char *fn)
{
	json_t *st = rt_sched_state_json(e->s, fn);
	json_t *i0 = json_incref(json_array_get(json_object_get(st, "instances"), 0));
	json_decref(st);
	return i0;
}

static long long inst_field(env *e, const char *fn, const char *k)
{
	json_t *i0 = inst0(e, fn);
	long long v = json_integer_value(json_object_get(i0, k));
	json_decref(i0);
	return v;
}

static int inst_state_is(env *e, const char *fn, const char *want)
{
	json_t *st = rt_sched_state_json(e->s, fn);
	int ok = strcmp(json_string_value(json_object_get(st, "state")), want) == 0;
	json_decref(st);
	return ok;
}

/* ---- tests ---- */

/* calls that arrive while a long generation runs are admitted at once and finish first; every
 * call gets exactly its own tokens; the kind was told max_sequences, kv_cache_bytes and
 * prefix_caching */
static void test_admitted_while_running(void)
{
	env e;
	if (env_open(&e) < 0 || deploy(&e, "gen", "seqtest", 8, 8, 64, 0) < 0) {
		T_CHECK(0);
		return;
	}
	tcall lng, shrt[6];
	submit(&e, "gen", &lng, 400, 1000, 1000, 0);
	T_CHECK(run_until(&e, has_chunks, &lng));
	for (int i = 0; i < 6; i++)
		submit(&e, "gen", &shrt[i], 5 + i, 100 * i, 1000, 0);
	for (int i = 0; i < 6; i++) {
		T_CHECK(run_until(&e, is_done, &shrt[i]));
		T_CHECK(tokens_ok(&shrt[i], 5 + i, 100 * i));
	}
	T_EQ_INT(lng.n, 0);   /* still generating */
	T_CHECK(run_until(&e, is_done, &lng));
	T_CHECK(tokens_ok(&lng, 400, 1000));
	for (int i = 0; i < 6; i++)
		T_CHECK(shrt[i].order < lng.order);
	pthread_mutex_lock(&ks.mu);
	T_EQ_INT(ks.loads, 1);
	T_EQ_INT(ks.meta_max_seq, 8);
	T_CHECK(ks.meta_kv > 0 && ks.meta_kv <= (512ll << 20));
	T_EQ_INT(ks.meta_prefix, 1);
	T_CHECK(ks.max_held >= 2);              /* held together ... */
	T_CHECK(ks.steps < ks.rows);            /* ... and stepped in batches */
	T_EQ_INT(ks.over_admit, 0);
	pthread_mutex_unlock(&ks.mu);
	T_EQ_INT(inst_field(&e, "gen", "inflight"), 0);
	for (int i = 0; i < 6; i++)
		tcall_free(&shrt[i]);
	tcall_free(&lng);
	env_close(&e);
}

/* two functions on one lane: a short call of another generative function and an echo call
 * finish while a long generation runs, whose steps go on around them */
static void test_interleave_functions(void)
{
	env e;
	if (env_open(&e) < 0 || deploy(&e, "long", "seqtest", 4, 4, 64, 0) < 0 ||
	    deploy(&e, "short", "seqtest", 4, 4, 64, 0) < 0 ||
	    deploy(&e, "echo", "echo", 8, 8, 64, 0) < 0) {
		T_CHECK(0);
		return;
	}
	tcall lng, sh, ec;
	submit(&e, "long", &lng, 600, 0, 1000, 0);
	T_CHECK(run_until(&e, has_chunks, &lng));
	submit(&e, "short", &sh, 4, 50, 1000, 0);   /* a cold start, then 4 steps */
	memset(&ec, 0, sizeof ec);
	pthread_mutex_init(&ec.mu, NULL);
	rt_call c = {.function = "echo", .in = json_pack("{s:i}", "x", 3), .done = on_done, .ud = &ec};
	rt_sched_submit(e.s, &c);
	T_CHECK(run_until(&e, is_done, &sh));
	T_CHECK(run_until(&e, is_done, &ec));
	T_CHECK(tokens_ok(&sh, 4, 50));
	T_EQ_INT(ec.status, 200);
	T_EQ_INT(json_integer_value(json_object_get(ec.out, "x")), 3);
	int at_short = chunks_of(&lng);
	T_EQ_INT(lng.n, 0);
	T_CHECK(at_short < 600);
	T_CHECK(run_until(&e, is_done, &lng));
	T_CHECK(tokens_ok(&lng, 600, 0));
	T_CHECK(sh.order < lng.order && ec.order < lng.order);
	T_EQ_INT(ks.loads, 2);
	tcall_free(&lng);
	tcall_free(&sh);
	tcall_free(&ec);
	env_close(&e);
}

/* max_batch bounds the sequences of one step; concurrency bounds the calls held, the rest wait
 * in the queue and come in as others finish */
static void test_batch_and_concurrency_bounds(void)
{
	env e;
	if (env_open(&e) < 0 || deploy(&e, "gen", "seqtest", 3, 2, 64, 0) < 0) {
		T_CHECK(0);
		return;
	}
	tcall c[10];
	for (int i = 0; i < 10; i++)
		submit(&e, "gen", &c[i], 12, 10 * i, 300, 0);
	int saw_queued = 0, max_inflight = 0, left = 10;
	uint64_t t0 = rt_clock_mono_ns();
	while (left > 0 && rt_clock_mono_ns() - t0 < 30000000000ull) {
		uv_run(&e.loop, UV_RUN_NOWAIT);
		usleep(200);
		long long q = inst_field(&e, "gen", "queued"), f = inst_field(&e, "gen", "inflight");
		saw_queued |= q > 0;
		max_inflight = f > max_inflight ? (int)f : max_inflight;
		left = 0;
		for (int i = 0; i < 10; i++)
			left += c[i].n == 0;
	}
	T_EQ_INT(left, 0);
	T_EQ_INT(max_inflight, 3);
	for (int i = 0; i < 10; i++)
		T_CHECK(tokens_ok(&c[i], 12, 10 * i));
	T_CHECK(saw_queued);
	pthread_mutex_lock(&ks.mu);
	T_EQ_INT(ks.max_held, 3);
	T_EQ_INT(ks.max_rows, 2);
	T_EQ_INT(ks.meta_max_seq, 3);
	T_CHECK(ks.polls > 0);   /* the third held call waited, polled each step */
	T_EQ_INT(ks.over_admit, 0);
	pthread_mutex_unlock(&ks.mu);
	for (int i = 0; i < 10; i++)
		tcall_free(&c[i]);
	env_close(&e);
}

/* cancel and timeout in the middle of a generation: answered at once (499, 504), the kind
 * stops the call at its next step (a running one through emit, a waiting one through a poll)
 * and the instance holds nothing afterwards; the caller's stream never sees a poll */
static void test_cancel_and_timeout(void)
{
	env e;
	if (env_open(&e) < 0 || deploy(&e, "gen", "seqtest", 4, 1, 64, 0) < 0) {
		T_CHECK(0);
		return;
	}
	tcall run, wait;
	submit(&e, "gen", &run, 1000000, 0, 1000, 0);
	T_CHECK(run_until(&e, has_chunks, &run));
	submit(&e, "gen", &wait, 10, 0, 1000, 0);   /* held, but max_batch 1: never advanced */
	for (int i = 0; i < 100; i++)
		uv_run(&e.loop, UV_RUN_NOWAIT), usleep(1000);
	T_EQ_INT(chunks_of(&wait), 0);
	T_CHECK(wait.cancel != NULL);
	wait.cancel(wait.arg);
	T_EQ_INT(wait.n, 1);
	T_EQ_INT(wait.status, 499);
	T_CHECK(run.cancel != NULL);
	run.cancel(run.arg);
	T_EQ_INT(run.n, 1);
	T_EQ_INT(run.status, 499);
	int at_cancel = chunks_of(&run);
	/* both leave the kind: the instance goes idle */
	uint64_t t0 = rt_clock_mono_ns();
	while (inst_field(&e, "gen", "inflight") > 0 && rt_clock_mono_ns() - t0 < 10000000000ull)
		uv_run(&e.loop, UV_RUN_NOWAIT), usleep(500);
	T_EQ_INT(inst_field(&e, "gen", "inflight"), 0);
	T_CHECK(chunks_of(&run) <= at_cancel + 1);
	T_EQ_INT(run.got_null + wait.got_null, 0);
	T_EQ_INT(run.n + wait.n, 2);
	/* a deadline in the middle of a generation */
	tcall late;
	uint64_t t1 = rt_clock_mono_ns();
	submit(&e, "gen", &late, 1000000, 0, 1000, 0.3);
	T_CHECK(run_until(&e, is_done, &late));
	T_EQ_INT(late.status, 504);
	T_CHECK(rt_clock_mono_ns() - t1 >= 250000000ull);
	T_CHECK(chunks_of(&late) > 0);
	t0 = rt_clock_mono_ns();
	while (inst_field(&e, "gen", "inflight") > 0 && rt_clock_mono_ns() - t0 < 10000000000ull)
		uv_run(&e.loop, UV_RUN_NOWAIT), usleep(500);
	T_EQ_INT(inst_field(&e, "gen", "inflight"), 0);
	T_EQ_INT(late.n, 1);
	/* the function still serves */
	tcall after;
	submit(&e, "gen", &after, 3, 7, 100, 0);
	T_CHECK(run_until(&e, is_done, &after));
	T_CHECK(tokens_ok(&after, 3, 7));
	tcall_free(&run);
	tcall_free(&wait);
	tcall_free(&late);
	tcall_free(&after);
	env_close(&e);
}

/* a refused seq_add answers with the kind's error; the others go on */
static void test_refused_call(void)
{
	env e;
	if (env_open(&e) < 0 || deploy(&e, "gen", "seqtest", 4, 4, 64, 0) < 0) {
		T_CHECK(0);
		return;
	}
	tcall bad, good;
	memset(&bad, 0, sizeof bad);
	pthread_mutex_init(&bad.mu, NULL);
	rt_call c = {.function = "gen", .in = json_pack("{s:s}", "n", "many"), .done = on_done,
		     .ud = &bad, .emit = on_chunk, .emit_ctx = &bad};
	rt_sched_submit(e.s, &c);
	submit(&e, "gen", &good, 6, 1, 100, 0);
	T_CHECK(run_until(&e, is_done, &bad));
	T_EQ_INT(bad.status, 400);
	T_CHECK(strstr(bad.msg, "'n' must be") != NULL);
	T_CHECK(run_until(&e, is_done, &good));
	T_CHECK(tokens_ok(&good, 6, 1));
	tcall_free(&bad);
	tcall_free(&good);
	env_close(&e);
}

/* stop drains: held sequences run to their end (200), calls still queued get 503 */
static void test_draining(void)
{
	env e;
	if (env_open(&e) < 0 || deploy(&e, "gen", "seqtest", 1, 1, 64, 0) < 0) {
		T_CHECK(0);
		return;
	}
	tcall held, queued;
	submit(&e, "gen", &held, 80, 5, 1000, 0);
	T_CHECK(run_until(&e, has_chunks, &held));
	submit(&e, "gen", &queued, 5, 0, 1000, 0);
	T_EQ_INT(queued.n, 0);
	env_stop(&e);
	T_EQ_INT(queued.n, 1);
	T_EQ_INT(queued.status, 503);
	T_CHECK(tokens_ok(&held, 80, 5));
	T_EQ_INT(ks.releases, 1);
	tcall_free(&held);
	tcall_free(&queued);
	env_close(&e);
}

/* a background item (a job step) runs units until the lane has waiting work: it yields when a
 * call comes, and no unit runs while the call's sequence is held (steps go first) */
typedef struct bg {
	rt_work w;
	env *e;
	int stop, in_lane, yielded;
	uint64_t unit_ns[4096];
	int nunits;
	pthread_mutex_t mu;
} bg;

static void bg_run(rt_lane *lane, rt_work *w)
{
	bg *b = (bg *)w;
	for (int i = 0; i < 2000; i++) {
		if (rt_lane_has_waiting(lane)) {
			b->yielded++;
			return;
		}
		usleep(200);
		pthread_mutex_lock(&b->mu);
		if (b->nunits < 4096)
			b->unit_ns[b->nunits++] = rt_clock_mono_ns();
		pthread_mutex_unlock(&b->mu);
	}
}

static void bg_done(rt_work *w)
{
	bg *b = (bg *)w;
	b->in_lane = !b->stop && rt_lane_submit(rt_sched_lane_find(b->e->s, "cpu"), &b->w) == 0;
}

static int bg_ran(void *a)
{
	bg *b = a;
	pthread_mutex_lock(&b->mu);
	int n = b->nunits;
	pthread_mutex_unlock(&b->mu);
	return n > 5;
}

static void test_job_yields(void)
{
	env e;
	static bg b;
	if (env_open(&e) < 0 || deploy(&e, "gen", "seqtest", 2, 2, 64, 0) < 0) {
		T_CHECK(0);
		return;
	}
	memset(&b, 0, sizeof b);
	pthread_mutex_init(&b.mu, NULL);
	b.e = &e;
	b.w.cls = RT_WORK_BACKGROUND;
	b.w.run = bg_run;
	b.w.done = bg_done;
	b.in_lane = 1;
	T_EQ_INT(rt_lane_submit(rt_sched_lane_find(e.s, "cpu"), &b.w), 0);
	T_CHECK(run_until(&e, bg_ran, &b));
	tcall c;
	submit(&e, "gen", &c, 60, 0, 1000, 0);
	T_CHECK(run_until(&e, is_done, &c));
	T_CHECK(tokens_ok(&c, 60, 0));
	T_CHECK(b.yielded >= 1);
	/* the job goes on once the lane is free again */
	pthread_mutex_lock(&b.mu);
	int before = b.nunits;
	pthread_mutex_unlock(&b.mu);
	uint64_t t0 = rt_clock_mono_ns();
	for (;;) {
		pthread_mutex_lock(&b.mu);
		int now = b.nunits;
		pthread_mutex_unlock(&b.mu);
		if (now > before || rt_clock_mono_ns() - t0 > 10000000000ull)
			break;
		uv_run(&e.loop, UV_RUN_NOWAIT);
		usleep(500);
	}
	b.stop = 1;
	while (b.in_lane)
		uv_run(&e.loop, UV_RUN_ONCE);
	/* no unit ran from the call's first token to its last: its steps went first */
	int during = 0;
	for (int i = 0; i < b.nunits; i++)
		during += b.unit_ns[i] >= c.t_first && b.unit_ns[i] <= c.t_last;
	T_CHECK(b.nunits > before);
	T_EQ_INT(during, 0);
	tcall_free(&c);
	env_close(&e);
	pthread_mutex_destroy(&b.mu);
}

/* unload while a sequence is held: the call finishes (200), then the instance goes cold;
 * delete while held: queued calls get 404, the held one finishes */
static void test_unload_and_delete(void)
{
	env e;
	if (env_open(&e) < 0 || deploy(&e, "gen", "seqtest", 1, 1, 64, 0) < 0) {
		T_CHECK(0);
		return;
	}
	tcall a;
	submit(&e, "gen", &a, 60, 3, 1000, 0);
	T_CHECK(run_until(&e, has_chunks, &a));
	T_EQ_INT(rt_sched_unload(e.s, "gen"), 0);
	T_CHECK(run_until(&e, is_done, &a));
	T_CHECK(tokens_ok(&a, 60, 3));
	uint64_t t0 = rt_clock_mono_ns();
	while (!inst_state_is(&e, "gen", "cold") && rt_clock_mono_ns() - t0 < 10000000000ull)
		uv_run(&e.loop, UV_RUN_NOWAIT), usleep(500);
	T_CHECK(inst_state_is(&e, "gen", "cold"));
	T_EQ_INT(ks.releases, 1);
	/* warm again, then deleted with one call held and one queued */
	tcall b, q;
	submit(&e, "gen", &b, 60, 0, 1000, 0);
	T_CHECK(run_until(&e, has_chunks, &b));
	submit(&e, "gen", &q, 5, 0, 1000, 0);
	rt_sched_deleted(e.s, "gen");
	T_EQ_INT(q.n, 1);
	T_EQ_INT(q.status, 404);
	T_CHECK(run_until(&e, is_done, &b));
	T_CHECK(tokens_ok(&b, 60, 0));
	t0 = rt_clock_mono_ns();
	while (ks.releases < 2 && rt_clock_mono_ns() - t0 < 10000000000ull)
		uv_run(&e.loop, UV_RUN_NOWAIT), usleep(500);
	T_EQ_INT(ks.releases, 2);
	tcall_free(&a);
	tcall_free(&b);
	tcall_free(&q);
	env_close(&e);
}

/* the serving metrics: sequences per step, KV blocks, time to first token and between
 * tokens, prefix cache lookups and hits */
static void test_metrics(void)
{
	env e;
	if (env_open(&e) < 0 || deploy(&e, "gen", "seqtest", 4, 4, 64, 0) < 0) {
		T_CHECK(0);
		return;
	}
	tcall c[3];
	for (int i = 0; i < 3; i++)
		submit(&e, "gen", &c[i], 10, 0, 500, 0);
	for (int i = 0; i < 3; i++) {
		T_CHECK(run_until(&e, is_done, &c[i]));
		T_CHECK(tokens_ok(&c[i], 10, 0));
	}
	char *text = NULL;
	size_t len = 0;
	T_EQ_INT(rt_metrics_render(e.m, &text, &len), 0);
	T_CHECK(text && strstr(text, "thaw_step_sequences_count{function=\"gen\"}"));
	T_CHECK(text && strstr(text, "thaw_time_to_first_token_seconds_count{function=\"gen\"} 3\n"));
	T_CHECK(text && strstr(text, "thaw_inter_token_latency_seconds_count{function=\"gen\"} 27\n"));
	T_CHECK(text && strstr(text, "thaw_prefix_cache_lookup_tokens_total{function=\"gen\"} 24\n"));
	T_CHECK(text && strstr(text, "thaw_prefix_cache_hit_tokens_total{function=\"gen\"} 12\n"));
	T_CHECK(text && strstr(text, "thaw_kv_blocks{device=\"cpu\",function=\"gen\",type=\"total\"}"));
	T_CHECK(text && strstr(text, "thaw_kv_blocks{device=\"cpu\",function=\"gen\",type=\"used\"} 0\n"));
	/* of the KV cache the kind was offered, what it took (its empty step after load says)
	 * stays reserved in the device's budget */
	char kvline[128];
	snprintf(kvline, sizeof kvline, "thaw_device_memory_bytes{device=\"cpu\",type=\"kv\"} %lld\n",
		 ks.meta_kv / 2);
	T_CHECK(ks.meta_kv > 0 && text && strstr(text, kvline));
	json_t *devs = rt_sched_devices_json(e.s);
	T_EQ_INT(json_integer_value(json_object_get(json_array_get(devs, 0), "kv_cache_bytes")),
		 ks.meta_kv / 2);
	json_decref(devs);
	free(text);
	/* once deleted, its series are gone and stay gone */
	rt_sched_deleted(e.s, "gen");
	uint64_t t0 = rt_clock_mono_ns();
	while (ks.releases < 1 && rt_clock_mono_ns() - t0 < 10000000000ull)
		uv_run(&e.loop, UV_RUN_NOWAIT), usleep(500);
	/* the reservation goes back once the loop has the release */
	const char *kv0 = "thaw_device_memory_bytes{device=\"cpu\",type=\"kv\"} 0\n";
	t0 = rt_clock_mono_ns();
	for (;;) {
		T_EQ_INT(rt_metrics_render(e.m, &text, &len), 0);
		if ((text && strstr(text, kv0)) || rt_clock_mono_ns() - t0 > 10000000000ull)
			break;
		free(text);
		uv_run(&e.loop, UV_RUN_NOWAIT);
		usleep(500);
	}
	T_CHECK(text && !strstr(text, "function=\"gen\""));
	T_CHECK(text && strstr(text, kv0));
	free(text);
	for (int i = 0; i < 3; i++)
		tcall_free(&c[i]);
	env_close(&e);
}

/* calls arriving, cancelled and timing out at random for a while: every call is answered
 * exactly once, with its own tokens when it ends with 200, the kind never holds more than
 * concurrency, and at the end nothing is held or queued */
#define NSTRESS 600
static tcall stress[NSTRESS];

static void test_random_stress(void)
{
	env e;
	if (env_open(&e) < 0 || deploy(&e, "gen", "seqtest", 6, 3, 20, 0) < 0) {
		T_CHECK(0);
		return;
	}
	uint64_t seed = 0x9e3779b97f4a7c15ull, t0 = rt_clock_mono_ns();
	long long n_of[NSTRESS], start_of[NSTRESS];
	int ns = 0;
	while (ns < NSTRESS && rt_clock_mono_ns() - t0 < 2000000000ull) {
		seed ^= seed << 13;
		seed ^= seed >> 7;
		seed ^= seed << 17;
		int r = (int)(seed % 100);
		if (r < 30) {
			n_of[ns] = 1 + (long long)(seed >> 20) % 150;
			start_of[ns] = ns * 1000;
			double to = r < 5 ? 0.01 + (double)((seed >> 40) % 100) / 1000.0 : 0;
			submit(&e, "gen", &stress[ns], n_of[ns], start_of[ns], 100, to);
			ns++;
		} else if (r < 40 && ns > 0) {
			tcall *t = &stress[(seed >> 24) % (uint64_t)ns];
			if (t->n == 0 && t->cancel)
				t->cancel(t->arg);
		}
		uv_run(&e.loop, UV_RUN_NOWAIT);
		usleep(100 + (useconds_t)((seed >> 32) % 400));
	}
	/* the rest runs out */
	uint64_t t1 = rt_clock_mono_ns();
	int left = 1;
	while (left && rt_clock_mono_ns() - t1 < 60000000000ull) {
		uv_run(&e.loop, UV_RUN_NOWAIT);
		usleep(500);
		left = 0;
		for (int i = 0; i < ns; i++)
			left += stress[i].n == 0;
	}
	T_EQ_INT(left, 0);
	t1 = rt_clock_mono_ns();
	while (inst_field(&e, "gen", "inflight") > 0 && rt_clock_mono_ns() - t1 < 10000000000ull)
		uv_run(&e.loop, UV_RUN_NOWAIT), usleep(500);
	T_EQ_INT(inst_field(&e, "gen", "inflight"), 0);
	T_EQ_INT(inst_field(&e, "gen", "queued"), 0);
	int ok = 0, other = 0;
	for (int i = 0; i < ns; i++) {
		tcall *t = &stress[i];
		T_EQ_INT(t->n, 1);
		if (t->status == 200) {
			ok++;
			T_CHECK(tokens_ok(t, n_of[i], start_of[i]));
		} else if (t->status != 499 && t->status != 504 && t->status != 503) {
			other++;
			fprintf(stderr, "  call %d: %d %s\n", i, t->status, t->msg);
		}
		tcall_free(t);
	}
	T_EQ_INT(other, 0);
	T_CHECK(ok > 0);
	pthread_mutex_lock(&ks.mu);
	T_CHECK(ks.max_held <= 6);
	T_EQ_INT(ks.held_now, 0);
	T_EQ_INT(ks.over_admit, 0);
	T_CHECK(ks.max_rows <= 3);
	pthread_mutex_unlock(&ks.mu);
	fprintf(stderr, "  %d calls, %d answered 200\n", ns, ok);
	env_close(&e);
}

void t_main(void)
{
	int rc = fn_kind_register(&seqtest_kind);
	T_CHECK(rc == 0);
	if (rc == 0)
		rc = make_snapshot();
	T_CHECK(rc == 0);
	if (rc < 0)
		return;
	T_RUN(test_admitted_while_running);
	T_RUN(test_interleave_functions);
	T_RUN(test_batch_and_concurrency_bounds);
	T_RUN(test_cancel_and_timeout);
	T_RUN(test_refused_call);
	T_RUN(test_draining);
	T_RUN(test_job_yields);
	T_RUN(test_unload_and_delete);
	T_RUN(test_metrics);
	T_RUN(test_random_stress);
}

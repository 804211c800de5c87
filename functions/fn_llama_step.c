/* fn_llama_step.c — the `llama` kind's engine: calls held as sequences and advanced at the
 * iteration level (fn.h seq_add / seq_step; invoke runs its calls through the same steps).
 *
 * A sequence waits (FIFO) until it is admitted: admission reserves the blocks of its whole
 * prompt (after taking the blocks its prompt shares with the prefix cache), so a burst never
 * over-commits. A step then runs, within its token budget and max_seqs:
 *   1. one decode row for every running sequence whose tokens are all in the cache but the
 *      last (oldest first); a sequence that needs a new block and finds none preempts the most
 *      recently admitted running sequence (its blocks are freed; it waits again at the head of
 *      the queue, its prompt now prompt + the tokens generated so far, which were already
 *      emitted and are not emitted again);
 *   2. the next chunk of every running sequence still in its prompt (chunked prefill);
 *   3. chunks of newly admitted sequences while budget, slots and blocks allow (a prompt
 *      that shares whole blocks with a prompt still being computed waits for them);
 * as one forward pass (fn_llama_run.c), samples one token for every sequence whose chunk
 * reached its last token, and answers each call as a lone invoke would: {"token": id}
 * (+ "logprob") per token, stops, max_tokens, usage, 499 when the receiver leaves (calls not
 * emitting in a step are polled with emit(ctx, NULL)). Sampling draws u from (seed, index of
 * the generated token), so a sequence's tokens do not depend on what it was batched with.
 * A lone greedy sequence is decoded fed (steps queued ahead on the device, fn_llama_run.c)
 * until another call arrives. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "pool/pool_base.h"
#include "functions/fn_kinds.h"
#include "functions/fn_llama_int.h"

#define TRY(call) do { int rc_ = (call); if (rc_ < 0) return rc_; } while (0)

static void list_push(llama_list *l, llama_seq *q, int front)
{
	q->prev = q->next = NULL;
	if (!l->head) {
		l->head = l->tail = q;
	} else if (front) {
		q->next = l->head;
		l->head->prev = q;
		l->head = q;
	} else {
		q->prev = l->tail;
		l->tail->next = q;
		l->tail = q;
	}
	l->n++;
}

static void list_remove(llama_list *l, llama_seq *q)
{
	if (q->prev)
		q->prev->next = q->next;
	else
		l->head = q->next;
	if (q->next)
		q->next->prev = q->prev;
	else
		l->tail = q->prev;
	q->prev = q->next = NULL;
	l->n--;
}

static void seq_free(llama_seq *q)
{
	free(q->r.tokens);
	free(q->toks);
	free(q->blocks);
	json_decref(q->otoks);
	json_decref(q->olps);
	free(q);
}

static uint64_t splitmix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* the uniform draw that picks generated token number `step` of a seeded request */
static float draw(long long seed, int64_t step)
{
	uint64_t z = splitmix((uint64_t)seed ^ splitmix((uint64_t)step + 0x5851f42dull));
	return (float)(z >> 40) * (1.0f / 16777216.0f);
}

/* finish ends q: status 0 answers its output (lrow >= 0: its logits are in s->logits row
 * lrow, kept for fn_llama_last_logits during invoke), else err is already set. q leaves its
 * list, gives back its blocks and waits on s->fin to be returned. */
static void finish(llama *s, llama_seq *q, int ok, int64_t lrow)
{
	fn_call *c = q->call;
	if (ok) {
		int64_t ng = q->ntok - q->r.n;
		double now = pool_clock_mono_s();
		s->prefill_s = (q->t_first > 0 ? q->t_first : now) - q->t_add;
		s->decode_s = q->t_first > 0 ? now - q->t_first : 0;
		s->steps = ng > 1 ? (int)(ng - 1) : 0;
		s->used_graph = q->graphed;
		if (s->in_invoke && lrow >= 0)
			(void)kern_copy_d2h(s->dev, s->last_lg, s->logits + lrow * s->V,
					    (size_t)s->V * 4);
		c->out = json_pack("{s:o,s:s,s:{s:I,s:I}}", "tokens", q->otoks, "finish_reason",
				   q->finish, "usage", "prompt_tokens", (json_int_t)q->r.n,
				   "completion_tokens", (json_int_t)ng);
		q->otoks = NULL;
		if (c->out && q->olps) {
			json_object_set_new(c->out, "logprobs", q->olps);
			q->olps = NULL;
		}
		if (!c->out)
			fn_err(&c->err, 503, "out of memory");
	}
	llama_seq_unblock(s, q);
	list_remove(q->state == LLAMA_SEQ_RUNNING ? &s->running : &s->waiting, q);
	list_push(&s->fin, q, 0);
}

static void finish_gone(llama *s, llama_seq *q)
{
	fn_err(&q->call->err, 499, "llama: stopped: the call was answered without it "
	       "(client gone, timeout)");
	finish(s, q, 0, -1);
}

/* take records generated token tok (log-probability lp) and emits it as {"token": id} (plus
 * "logprob" when asked): 0 to go on, 1 when the receiver of the stream went away, 2 when tok
 * is a stop token (finish "stop"). */
static int take(llama_seq *q, int32_t tok, float lp)
{
	q->toks[q->ntok++] = tok;
	json_array_append_new(q->otoks, json_integer(tok));
	if (q->olps)
		json_array_append_new(q->olps, json_real(lp));
	fn_call *c = q->call;
	if (c->emit) {
		json_t *chunk = json_pack("{s:i}", "token", (int)tok);
		if (chunk && q->olps)
			json_object_set_new(chunk, "logprob", json_real(lp));
		int gone = !chunk || c->emit(c->emit_ctx, chunk) != 0;
		json_decref(chunk);
		if (gone)
			return 1;
	}
	for (int j = 0; j < q->r.n_stop; j++)
		if (q->r.stop[j] == tok) {
			q->finish = "stop";
			return 2;
		}
	return 0;
}

/* took finishes q after take returned k, or when it reached max_tokens */
static void took(llama *s, llama_seq *q, int k, int64_t lrow)
{
	if (q->t_first == 0)
		q->t_first = pool_clock_mono_s();
	if (k == 1)
		finish_gone(s, q);
	else if (k == 2 || q->ntok - q->r.n >= q->r.max_tokens)
		finish(s, q, 1, lrow);
}

static void preempt(llama *s, llama_seq *q, fn_step *st)
{
	llama_seq_unblock(s, q);
	list_remove(&s->running, q);
	q->state = LLAMA_SEQ_WAITING;
	list_push(&s->waiting, q, 1);
	st->preempted++;
}

/* shared_pending: whether a running sequence is still computing whole prompt blocks that q
 * shares beyond the h blocks q found cached (then q waits for them: one prefill for both). */
static int shared_pending(const llama *s, const llama_seq *q, int64_t h, int64_t maxhit)
{
	int64_t B = s->kv.block;
	for (const llama_seq *r = s->running.head; r; r = r->next) {
		int64_t common = 0, lim = (r->ntok - 1) / B < maxhit ? (r->ntok - 1) / B : maxhit;
		if (r->computed >= lim * B)
			continue;
		while (common < lim && !memcmp(r->toks + common * B, q->toks + common * B,
					       (size_t)B * 4))
			common++;
		if (common > h && r->computed < common * B)
			return 1;
	}
	return 0;
}

/* admit q when its blocks are free: the cached prefix blocks first (whole blocks before its
 * last token, which is always recomputed), then new ones for the rest of its tokens; while
 * others run, 1% of the blocks (at least one) stays free for their decoding. 1 when admitted,
 * 0 when there is no room, 2 when q waits for prefix blocks a running sequence computes. */
static int admit(llama *s, llama_seq *q, fn_step *st)
{
	int64_t B = s->kv.block, total = (q->ntok + B - 1) / B, maxhit = (q->ntok - 1) / B;
	int64_t h = 0, h_lru = 0;
	uint64_t chain = LLAMA_KV_ROOT;
	for (; h < maxhit; h++) {
		const int32_t *t = q->toks + h * B;
		uint64_t key = llama_kv_hash(chain, t, B);
		int32_t b = llama_kv_find(&s->kv, key, chain, t);
		if (b < 0)
			break;
		q->blocks[h] = b;
		h_lru += s->kv.ref[b] == 0;
		chain = key;
	}
	if (s->kv.prefix && h < maxhit && shared_pending(s, q, h, maxhit))
		return 2;
	/* with others running, keep a few blocks for their growth (fewer preemptions) */
	int64_t keep = s->running.n ? (s->kv.nblocks - 1) / 100 + 1 : 0;
	if (s->nslot_free < 1 || llama_kv_avail(&s->kv) - h_lru < total - h + keep)
		return 0;
	q->slot = s->slot_free[--s->nslot_free];
	for (int64_t i = 0; i < h; i++) {
		llama_kv_take(&s->kv, q->blocks[i]);
		llama_table_set(s, q->slot, i, q->blocks[i]);
	}
	q->nblk = h;
	q->nkeyed = h;
	q->chain = chain;
	q->computed = h * B;
	if (llama_grow(s, q, q->ntok - 1) < 0) {   /* cannot fail: counted above */
		fprintf(stderr, "llama: block accounting broken at %s:%d\n", __FILE__, __LINE__);
		abort();
	}
	list_remove(&s->waiting, q);
	q->state = LLAMA_SEQ_RUNNING;
	q->order = ++s->order;
	list_push(&s->running, q, 0);
	st->prefix_lookup_tokens += q->ntok;
	st->prefix_hit_tokens += h * B;
	return 1;
}

static int gone(llama_seq *q)
{
	return q->call->emit && q->call->emit(q->call->emit_ctx, NULL) != 0;
}

/* fed_step advances the lone fed sequence by one token. 1: not fed after all (plain step). */
static int fed_step(llama *s, fn_step *st)
{
	llama_seq *q = s->fed;
	int32_t tok;
	float lp;
	int rc = llama_fed_next(s, &tok, &lp);
	if (rc != 0) {
		if (rc == 1)
			TRY(llama_fed_exit(s));
		return rc;
	}
	llama_seq_advance(s, q, q->ntok);
	st->seqs = st->decode_rows = 1;
	int k = take(q, tok, lp);
	if (k || q->ntok - q->r.n >= q->r.max_tokens)
		TRY(llama_fed_exit(s));
	took(s, q, k, 0);
	return 0;
}

static int engine_step(llama *s, int64_t budget, int max_seqs, fn_step *st)
{
	llama_seq *q, *next;
	if (budget <= 0)
		budget = s->budget_def;
	if (budget > s->R)
		budget = s->R;
	max_seqs = max_seqs > 0 && max_seqs < s->nslots ? max_seqs : s->nslots;
	for (q = s->waiting.head; q; q = next) {   /* nothing to generate, or nobody waits */
		next = q->next;
		if (q->r.max_tokens == 0)
			finish(s, q, 1, -1);
		else if (gone(q))
			finish_gone(s, q);
	}
	for (q = s->running.head; q; q = next) {   /* mid-prompt: nothing emitted this step */
		next = q->next;
		if (q != s->fed && q->computed < q->ntok - 1 && gone(q))
			finish_gone(s, q);
	}
	if (s->fed && (s->waiting.n || s->running.n != 1 || s->running.head != s->fed))
		TRY(llama_fed_exit(s));
	q = s->running.head;
	if (!s->fed && s->feed_depth > 0 && !s->waiting.n && s->running.n == 1 &&
	    q->computed == q->ntok - 1 && q->r.temperature == 0)
		TRY(llama_fed_enter(s, q));
	if (s->fed) {
		int rc = fed_step(s, st);
		if (rc <= 0)
			return rc;
	}

	/* 1. decode rows, oldest first; preempt the youngest when blocks run out */
	llama_plan *pl = s->plan;
	int n = 0;
	int64_t rows = 0;
	for (q = s->running.head; q && n < max_seqs && rows < budget; q = next) {
		next = q->next;
		if (q->computed != q->ntok - 1)
			continue;
		int self = 0;
		while (llama_grow(s, q, q->ntok - 1) < 0) {
			llama_seq *v = s->running.tail;
			if (v == next)
				next = NULL;
			self = v == q;
			preempt(s, v, st);
			if (self)
				break;
		}
		if (self)
			break;
		pl[n++] = (llama_plan){q, q->ntok - 1, 1, -1, 1};
		rows++;
	}
	/* 2. prompts under way, 3. new admissions (FIFO) */
	for (q = s->running.head; q && n < max_seqs && rows < budget; q = q->next) {
		if (q->computed >= q->ntok - 1)
			continue;
		int64_t c = q->ntok - q->computed < budget - rows ? q->ntok - q->computed
								   : budget - rows;
		pl[n++] = (llama_plan){q, q->computed, c, -1, 0};
		rows += c;
	}
	for (q = s->waiting.head; q && n < max_seqs && rows < budget; q = next) {
		next = q->next;
		int a = admit(s, q, st);
		if (a == 0)
			break;
		if (a == 2)
			continue;
		int64_t c = q->ntok - q->computed < budget - rows ? q->ntok - q->computed
								   : budget - rows;
		pl[n++] = (llama_plan){q, q->computed, c, -1, 0};
		rows += c;
	}
	if (n == 0)
		return 0;

	/* stage the rows; a decode-only step is padded to its bucket's graph */
	int64_t nl = 0;
	int decode_only = 1, bucket = -1;
	for (int i = 0; i < n; i++) {
		nl += pl[i].start + pl[i].count == pl[i].q->ntok;
		decode_only &= pl[i].decode;
	}
	int64_t M = rows, NL = nl;
	if (decode_only && s->graphs) {
		M = NL = llama_bucket(rows, &bucket);
		if (bucket < 0)
			M = NL = rows;
	}
	llama_rows r;
	llama_rows_layout(s->rin_h, M, NL, &r);
	int64_t row = 0, l = 0;
	for (int i = 0; i < n; i++) {
		q = pl[i].q;
		for (int64_t p = pl[i].start; p < pl[i].start + pl[i].count; p++, row++) {
			r.tok[row] = q->toks[p];
			r.pos[row] = (int32_t)p;
			r.seq[row] = q->slot;
		}
		if (pl[i].start + pl[i].count != q->ntok)
			continue;
		pl[i].lrow = l;
		r.lrows[l] = (int32_t)(row - 1);
		r.temp[l] = (float)q->r.temperature;
		r.topk[l] = (int32_t)q->r.top_k;
		r.topp[l] = (float)q->r.top_p;
		r.u[l] = q->r.temperature > 0 ? draw(q->r.seed, q->ntok - q->r.n) : 0;
		l++;
	}
	for (; row < M; row++) {   /* padding: the scratch sequence */
		r.tok[row] = 0;
		r.pos[row] = 0;
		r.seq[row] = s->nslots;
	}
	for (; l < NL; l++) {
		r.lrows[l] = (int32_t)l;
		r.temp[l] = 0;
		r.topk[l] = 0;
		r.topp[l] = 1;
		r.u[l] = 0;
	}
	int graphed;
	TRY(llama_run_batch(s, M, NL, NL == M, bucket, &graphed));

	/* answer */
	const int32_t *tok = s->obuf_h;
	const float *lp = (const float *)(s->obuf_h + NL);
	for (int i = 0; i < n; i++) {
		q = pl[i].q;
		llama_seq_advance(s, q, pl[i].start + pl[i].count);
		st->seqs++;
		if (pl[i].decode)
			st->decode_rows++;
		else
			st->prefill_tokens += (int)pl[i].count;
		if (pl[i].lrow < 0)
			continue;
		q->graphed |= graphed;
		int k = take(q, tok[pl[i].lrow], lp[pl[i].lrow]);
		took(s, q, k, pl[i].lrow);
	}
	return 0;
}

/* fail_all answers every held call with the device error rc. */
static void fail_all(llama *s, int rc)
{
	(void)llama_fed_exit(s);
	llama_seq *q;
	while ((q = s->running.head) || (q = s->waiting.head)) {
		fn_err(&q->call->err, rc == -ENOMEM ? 503 : 500, "llama: %s", strerror(-rc));
		finish(s, q, 0, -1);
	}
}

int llama_seq_add(void *state, fn_call *c)
{
	llama *s = state;
	c->out = NULL;
	c->err.status = 0;
	c->err.msg[0] = 0;
	llama_seq *q = calloc(1, sizeof *q);
	if (!q)
		return fn_err(&c->err, 503, "out of memory");
	if (llama_parse_req(s, c->in, &q->r, &c->err) < 0) {
		free(q);
		return -EINVAL;
	}
	q->call = c;
	q->toks = malloc((size_t)(q->r.n + q->r.max_tokens) * 4);
	q->blocks = malloc((size_t)s->max_blocks * 4);
	q->otoks = json_array();
	q->olps = q->r.logprobs ? json_array() : NULL;
	if (!q->toks || !q->blocks || !q->otoks || (q->r.logprobs && !q->olps)) {
		seq_free(q);
		return fn_err(&c->err, 503, "out of memory");
	}
	memcpy(q->toks, q->r.tokens, (size_t)q->r.n * 4);
	q->ntok = q->r.n;
	q->slot = -1;
	q->chain = LLAMA_KV_ROOT;
	q->finish = "length";
	q->t_add = pool_clock_mono_s();
	q->state = LLAMA_SEQ_WAITING;
	list_push(&s->waiting, q, 0);
	return 0;
}

int llama_seq_step(void *state, fn_step *st)
{
	llama *s = state;
	st->n_done = 0;
	st->seqs = st->decode_rows = st->prefill_tokens = st->preempted = 0;
	st->prefix_lookup_tokens = st->prefix_hit_tokens = 0;
	int rc = engine_step(s, st->token_budget, st->max_seqs, st);
	if (rc < 0)
		fail_all(s, rc);
	llama_seq *q;
	while ((q = s->fin.head)) {
		list_remove(&s->fin, q);
		st->done[st->n_done++] = q->call;
		seq_free(q);
	}
	st->held = (size_t)(s->waiting.n + s->running.n);
	st->kv_blocks_used = llama_kv_used(&s->kv);
	st->kv_blocks_total = s->kv.nblocks - 1;
	st->kv_bytes = s->kv_layer_bytes * 2 * (uint64_t)s->L;
	return rc < 0 ? rc : 0;
}

int llama_invoke(void *state, fn_call *calls, size_t n)
{
	llama *s = state;
	size_t left = 0;
	int rc = 0;
	for (size_t i = 0; i < n; i++)
		left += llama_seq_add(s, &calls[i]) == 0;
	s->in_invoke = 1;
	while (left > 0) {
		fn_step st = {0};
		rc = engine_step(s, 0, 0, &st);
		if (rc < 0)
			fail_all(s, rc);
		for (llama_seq *q = s->fin.head, *next; q; q = next) {   /* ours; others stay */
			next = q->next;
			if (q->call >= calls && q->call < calls + n) {
				list_remove(&s->fin, q);
				seq_free(q);
				left--;
			}
		}
		if (rc < 0)
			break;
	}
	s->in_invoke = 0;
	return rc < 0 ? rc : 0;
}

void llama_seq_free_all(llama *s)
{
	llama_list *ls[3] = {&s->waiting, &s->running, &s->fin};
	(void)llama_fed_exit(s);
	for (int i = 0; i < 3; i++) {
		llama_seq *q;
		while ((q = ls[i]->head)) {
			list_remove(ls[i], q);
			seq_free(q);
		}
	}
}

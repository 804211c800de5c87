/* fn_llama_run.c — the `llama` kind's device side: the paged KV cache and step buffers, the
 * batched forward pass (any mix of prefill chunks and decode rows of many sequences in one
 * pass: one product per projection over all rows, paged attention, lm_head over the rows
 * whose logits the step needs, per-row sampling), CUDA graphs of decode steps per batch-size
 * bucket, and fed greedy decoding of a lone sequence.
 *
 * Sizes (load metadata, defaults when absent):
 *   kv_cache_bytes  the most device memory for KV blocks (never more than max_sequences full
 *                   contexts take); default: max_sequences full contexts, at most 1 GiB on a
 *                   GPU and 256 MiB on the CPU. Never less than one full context (plus the
 *                   scratch block), so a lone sequence always fits.
 *   max_sequences   sequences running at once (rows of the block table), default 8, 1..4096
 *   kv_cache_dtype  "BF16" (default) or "F32" (for comparisons against F32 references)
 *   prefix_caching  true (default): full blocks are shared between prompts by hash
 * A step runs at most R = max(token budget default (512 GPU, 128 CPU), logit rows) rows.
 *
 * Row inputs are staged in one host buffer and copied with one copy per step (rows_layout):
 * token, position and sequence slot per row, then per logit row its row index, temperature,
 * top_k, top_p and uniform draw. A decode-only step of m rows is padded to its bucket
 * (1, 2, 4 .. 256) with rows of the scratch sequence (its table row names only block 0, the
 * scratch block), so that one captured graph per bucket serves every batch. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "pool/pool_base.h"
#include "pool/pool_log.h"
#include "functions/fn_kinds.h"
#include "functions/fn_llama_int.h"

#define TRY(call) do { int rc_ = (call); if (rc_ < 0) return rc_; } while (0)
#define LLAMA_MAX_SEQS 4096
#define LLAMA_KV_GPU_MAX ((size_t)1 << 30)
#define LLAMA_KV_CPU_MAX ((size_t)256 << 20)

int64_t llama_bucket(int64_t m, int *index)
{
	int64_t b = 1;
	int i = 0;
	while (b < m && b < LLAMA_MAX_BUCKET) {
		b <<= 1;
		i++;
	}
	if (index)
		*index = b >= m ? i : -1;
	return b >= m ? b : m;
}

void llama_rows_layout(int32_t *base, int64_t m, int64_t nl, llama_rows *r)
{
	r->m = m;
	r->nl = nl;
	r->tok = base;
	r->pos = base + m;
	r->seq = base + 2 * m;
	r->lrows = base + 3 * m;
	r->temp = (float *)(base + 3 * m + nl);
	r->topk = base + 3 * m + 2 * nl;
	r->topp = (float *)(base + 3 * m + 3 * nl);
	r->u = (float *)(base + 3 * m + 4 * nl);
}

static int meta_num(const json_t *meta, const char *key, double def, double *out)
{
	const json_t *v = json_object_get(meta, key);
	*out = def;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_number(v))
		return -1;
	*out = json_number_value(v);
	return 0;
}

int llama_engine_init(llama *s, const json_t *meta, fn_error *err)
{
	kern_dev *d = s->dev;
	int gpu = kern_dev_is_cuda(d);
	double bytes, maxseq;
	if (meta_num(meta, "max_sequences", 8, &maxseq) < 0 || maxseq != floor(maxseq) ||
	    maxseq < 1 || maxseq > LLAMA_MAX_SEQS)
		return fn_err(err, 422, "metadata max_sequences must be an integer in [1, %d]",
			      LLAMA_MAX_SEQS);
	if (meta_num(meta, "kv_cache_bytes", -1, &bytes) < 0 ||
	    (json_object_get(meta, "kv_cache_bytes") && !json_is_null(json_object_get(meta,
	    "kv_cache_bytes")) && !(bytes >= 0)))
		return fn_err(err, 422, "metadata kv_cache_bytes must be a number >= 0");
	const json_t *pc = json_object_get(meta, "prefix_caching");
	if (pc && !json_is_boolean(pc) && !json_is_null(pc))
		return fn_err(err, 422, "metadata prefix_caching must be true or false");
	const json_t *kd = json_object_get(meta, "kv_cache_dtype");
	s->kv_dt = KERN_BF16;
	if (kd && !json_is_null(kd)) {
		if (!json_is_string(kd) || (strcmp(json_string_value(kd), "BF16") &&
					    strcmp(json_string_value(kd), "F32")))
			return fn_err(err, 422, "metadata kv_cache_dtype must be \"BF16\" or \"F32\"");
		s->kv_dt = strcmp(json_string_value(kd), "F32") ? KERN_BF16 : KERN_F32;
	}
	s->nslots = (int)maxseq;
	int64_t B = LLAMA_BLOCK, kvd = s->KVH * s->hd, qd = s->H * s->hd;
	s->max_blocks = (s->cap + B - 1) / B;
	size_t per_block = (size_t)s->L * 2 * B * kvd * kern_dtype_size(s->kv_dt);
	double full = (double)s->nslots * s->max_blocks * per_block;   /* every slot's context */
	double want = bytes >= 0 && bytes < full ? bytes : full;
	if (bytes < 0 && want > (double)(gpu ? LLAMA_KV_GPU_MAX : LLAMA_KV_CPU_MAX))
		want = (double)(gpu ? LLAMA_KV_GPU_MAX : LLAMA_KV_CPU_MAX);
	double nb = floor(want / (double)per_block);
	if (nb < (double)s->max_blocks)
		nb = (double)s->max_blocks;
	if (nb > (double)(INT32_MAX / 2))
		nb = (double)(INT32_MAX / 2);
	if ((nb + 1) * (double)per_block > 0x1p60)
		return fn_err(err, 503, "a KV cache of %.0f blocks of %zu bytes is too large", nb + 1,
			      per_block);
	int64_t nblocks = (int64_t)nb + 1;   /* + the scratch block */
	s->kv_layer_bytes = (size_t)nblocks * B * kvd * kern_dtype_size(s->kv_dt);
	s->kvmem = kern_alloc(d, s->kv_layer_bytes * 2 * (size_t)s->L);
	if (!s->kvmem)
		return fn_err(err, 503, "out of device memory for %lld KV blocks (%zu bytes)",
			      (long long)nblocks, s->kv_layer_bytes * 2 * (size_t)s->L);
	if (llama_kv_init(&s->kv, nblocks, B, !pc || !json_is_false(pc)) < 0)
		return fn_err(err, 503, "out of memory");
	size_t tn = (size_t)(s->nslots + 1) * s->max_blocks;
	s->table = kern_alloc(d, tn * 4);
	s->table_h = calloc(tn, 4);
	s->slot_free = malloc((size_t)s->nslots * sizeof *s->slot_free);
	s->plan = calloc((size_t)s->nslots, sizeof *s->plan);
	s->dirty_lo = s->nslots + 1;
	s->dirty_hi = -1;
	if (!s->table || !s->table_h || !s->slot_free || !s->plan)
		return fn_err(err, 503, "out of memory for the block table");
	for (int i = 0; i < s->nslots; i++)
		s->slot_free[i] = s->nslots - 1 - i;
	s->nslot_free = s->nslots;
	s->LR = s->nslots <= LLAMA_MAX_BUCKET ? llama_bucket(s->nslots, NULL) : s->nslots;
	s->budget_def = gpu ? 512 : 128;
	s->R = s->budget_def > s->LR ? s->budget_def : s->LR;
	size_t r = (size_t)s->R * 4;
	s->x = kern_alloc(d, r * s->D);
	s->h = kern_alloc(d, r * s->D);
	s->q = kern_alloc(d, r * qd);
	s->k = kern_alloc(d, r * kvd);
	s->v = kern_alloc(d, r * kvd);
	s->att = kern_alloc(d, r * qd);
	s->g = kern_alloc(d, r * s->F);
	size_t rin = (size_t)(3 * s->R + 5 * s->LR) * 4;
	s->rin = kern_alloc(d, rin);
	s->rin_h = calloc(1, rin);
	s->logits = kern_alloc(d, (size_t)s->LR * s->V * 4);
	s->obuf = kern_alloc(d, (size_t)s->LR * 8);
	s->obuf_h = calloc((size_t)s->LR, 8);
	s->step = kern_alloc(d, 12);
	s->last_lg = calloc((size_t)s->V, 4);
	if (!s->x || !s->h || !s->q || !s->k || !s->v || !s->att || !s->g || !s->rin ||
	    !s->rin_h || !s->logits || !s->obuf || !s->obuf_h || !s->step || !s->last_lg)
		return fn_err(err, 503, "out of device memory for %lld-row steps", (long long)s->R);
	s->graphs = gpu && kern_dev_tuning(d)->graphs;
	/* fed greedy decoding: steps queued ahead of the host (kern_tuning.feed_depth: 2 on a GPU,
	 * 1 on the CPU, where a step run past a stop would cost its full time; 0 = not fed) */
	s->feed_depth = kern_dev_tuning(d)->feed_depth;
	s->hist = kern_alloc_host(d, (size_t)s->cap * 4);
	s->lphist = kern_alloc_host(d, (size_t)s->cap * 4);
	if (!s->hist || !s->lphist)
		s->feed_depth = 0;   /* no memory the device can write: decode with copies */
	return 0;
}

void llama_engine_free(llama *s)
{
	kern_dev *d = s->dev;
	llama_seq_free_all(s);
	for (int i = 0; i < LLAMA_NBUCKETS; i++)
		kern_graph_free(d, s->graph[i]);
	kern_graph_free(d, s->graph_feed);
	float **f[] = {&s->x, &s->h, &s->q, &s->k, &s->v, &s->att, &s->g, &s->logits};
	for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
		kern_free(d, *f[i]);
	kern_free(d, s->kvmem);
	kern_free(d, s->table);
	kern_free(d, s->rin);
	kern_free(d, s->obuf);
	kern_free(d, s->step);
	kern_free_host(d, s->hist);
	kern_free_host(d, s->lphist);
	free(s->table_h);
	free(s->slot_free);
	free(s->plan);
	free(s->rin_h);
	free(s->obuf_h);
	free(s->last_lg);
	llama_kv_free(&s->kv);
}

/* ---- blocks and slots of a sequence ---- */

void llama_table_set(llama *s, int slot, int64_t j, int32_t b)
{
	s->table_h[(size_t)slot * s->max_blocks + j] = b;
	if (slot < s->dirty_lo)
		s->dirty_lo = slot;
	if (slot > s->dirty_hi)
		s->dirty_hi = slot;
}

int llama_grow(llama *s, llama_seq *q, int64_t p)
{
	while (q->nblk * s->kv.block <= p) {
		int32_t b = llama_kv_alloc(&s->kv);
		if (b < 0)
			return -1;
		q->blocks[q->nblk] = b;
		llama_table_set(s, q->slot, q->nblk, b);
		q->nblk++;
	}
	return 0;
}

void llama_seq_unblock(llama *s, llama_seq *q)
{
	for (int64_t i = 0; i < q->nblk; i++)
		llama_kv_put(&s->kv, q->blocks[i]);
	q->nblk = 0;
	q->computed = 0;
	q->nkeyed = 0;
	q->chain = LLAMA_KV_ROOT;
	if (q->slot >= 0)
		s->slot_free[s->nslot_free++] = q->slot;
	q->slot = -1;
}

void llama_seq_advance(llama *s, llama_seq *q, int64_t computed)
{
	int64_t B = s->kv.block;
	q->computed = computed;
	while (s->kv.prefix && (q->nkeyed + 1) * B <= q->computed && q->nkeyed < q->nblk) {
		const int32_t *t = q->toks + q->nkeyed * B;
		uint64_t key = llama_kv_hash(q->chain, t, B);
		llama_kv_publish(&s->kv, q->blocks[q->nkeyed], key, q->chain, t);
		q->chain = key;
		q->nkeyed++;
	}
}

static int upload_table(llama *s)
{
	if (s->dirty_lo > s->dirty_hi)
		return 0;
	size_t off = (size_t)s->dirty_lo * s->max_blocks;
	size_t n = (size_t)(s->dirty_hi - s->dirty_lo + 1) * s->max_blocks;
	s->dirty_lo = s->nslots + 1;
	s->dirty_hi = -1;
	return kern_copy_h2d(s->dev, s->table + off, s->table_h + off, n * 4);
}

/* ---- the forward pass ---- */

/* forward runs m rows (tokens, positions and sequence slots: device arrays) through every
 * layer on the paged cache, then the final norm and lm_head over nl rows into s->logits:
 * the rows lrows[0 .. nl) (device), or every row when lrows is NULL (nl == m). */
static int forward(llama *s, int64_t m, const int32_t *tok, const int32_t *pos,
		   const int32_t *seq, const int32_t *lrows, int64_t nl)
{
	kern_dev *d = s->dev;
	int64_t D = s->D, kvd = s->KVH * s->hd;
	float scale = 1.0f / sqrtf((float)s->hd);
	TRY(kern_embed(d, s->emb_dt, s->emb, s->V, D, tok, m, s->x));
	for (int64_t l = 0; l < s->L; l++) {
		llama_layer *y = &s->lay[l];
		char *kb = (char *)s->kvmem + (size_t)l * 2 * s->kv_layer_bytes;
		kern_kv_pages kv = {s->kv_dt, kb, kb + s->kv_layer_bytes, s->kv.nblocks, s->kv.block,
				    kvd, s->table, s->max_blocks};
		kern_mat qkv[3] = {y->q, y->k, y->v};
		float *outs[3] = {s->q, s->k, s->v};
		kern_norm n1 = {y->ln1, s->eps}, n2 = {y->ln2, s->eps};
		TRY(kern_linear_multi(d, s->x, m, 3, qkv, outs, &n1));   /* RMSNorm fused */
		TRY(kern_paged_rope_attention_proj(d, s->q, s->k, s->v, pos, seq, m, s->H, s->KVH,
						   s->hd, s->theta, &kv, scale, s->att, &y->o, s->x));
		TRY(kern_swiglu_proj(d, s->x, m, &y->gate, &y->up, &n2, s->g, &y->down, s->x));
	}
	if (lrows) {
		TRY(kern_gather_rows(d, s->x, D, lrows, nl, s->h));
		TRY(kern_rmsnorm(d, s->h, s->norm, nl, D, s->eps, s->h));
	} else {
		TRY(kern_rmsnorm(d, s->x, s->norm, m, D, s->eps, s->h));
	}
	return kern_linear(d, s->h, nl, &s->lm_head, NULL, KERN_ACT_NONE, s->logits);
}

static int batch_ops(llama *s, const llama_rows *r, int all_rows)
{
	TRY(forward(s, r->m, r->tok, r->pos, r->seq, all_rows ? NULL : r->lrows, r->nl));
	return kern_sample_rows(s->dev, s->logits, r->nl, s->V, r->temp, r->topk, r->topp, r->u,
				s->obuf, (float *)(s->obuf + r->nl));
}

/* warm_up runs one step of the most rows (R) and logit rows (LR) a step can have on the
 * scratch sequence, outside any capture: the device scratch the ops use grows to its largest
 * here, so that no later step moves a buffer a captured graph points into. */
static int warm_up(llama *s)
{
	llama_rows h, r;
	int64_t cap = s->max_blocks * s->kv.block;
	size_t bytes = (size_t)(3 * s->R + 5 * s->LR) * 4;
	int32_t *buf = malloc(bytes);   /* s->rin_h may hold the step being staged */
	if (!buf)
		return -ENOMEM;
	llama_rows_layout(buf, s->R, s->LR, &h);
	for (int64_t i = 0; i < s->R; i++) {
		h.tok[i] = 0;
		h.pos[i] = (int32_t)(i % cap);
		h.seq[i] = s->nslots;
	}
	for (int64_t i = 0; i < s->LR; i++) {
		h.lrows[i] = (int32_t)i;
		h.temp[i] = i % 2 ? 1.0f : 0.0f;   /* greedy and sampled rows */
		h.topk[i] = i % 4 == 1 ? 8 : 0;
		h.topp[i] = i % 4 == 3 ? 0.9f : 1.0f;
		h.u[i] = 0.5f;
	}
	int rc = kern_copy_h2d(s->dev, s->rin, buf, bytes);
	free(buf);
	llama_rows_layout(s->rin, s->R, s->LR, &r);
	if (rc == 0)
		rc = batch_ops(s, &r, 0);
	if (rc == 0)
		rc = kern_dev_sync(s->dev);
	s->warmed = rc == 0;
	return rc;
}

/* capture_or_run replays *gp where graphs are on, else issues the ops; *used says whether a
 * graph ran. A shape's first step runs its ops directly (so the device scratch they need has
 * grown, kern.h) and is then captured for the next ones; a capture the device refuses leaves
 * graphs off, the step's results stand. */
static int capture_or_run(llama *s, kern_graph **gp, const llama_rows *r, int fed, int *used)
{
	*used = 0;
	if (s->graphs && *gp) {
		*used = 1;
		return kern_graph_launch(s->dev, *gp);
	}
	TRY(fed ? llama_fed_ops(s) : batch_ops(s, r, 1));
	if (!s->graphs)
		return 0;
	if (!s->warmed)
		TRY(warm_up(s));
	int rc = kern_graph_begin(s->dev);
	if (rc == -ENOTSUP) {
		s->graphs = 0;
		return 0;
	}
	TRY(rc);
	rc = fed ? llama_fed_ops(s) : batch_ops(s, r, 1);
	kern_graph *g = NULL;
	int rc2 = kern_graph_end(s->dev, &g);
	if (rc < 0 || rc2 < 0) {
		/* e.g. scratch that would have to grow inside the capture: the direct run stands;
		 * a failure of the device itself shows in the next op */
		kern_graph_free(s->dev, g);
		s->graphs = 0;
		pool_logf("llama: capturing a decode step failed (%s): steps run without CUDA graphs",
			  strerror(rc < 0 ? -rc : -rc2));
		return 0;
	}
	*gp = g;
	return 0;
}

int llama_run_batch(llama *s, int64_t m, int64_t nl, int all_rows, int bucket, int *graphed)
{
	llama_rows r;
	*graphed = 0;
	if (s->graphs && !s->warmed)   /* before the rows are copied: it uses the same buffer */
		TRY(warm_up(s));
	TRY(upload_table(s));
	TRY(kern_copy_h2d(s->dev, s->rin, s->rin_h, (size_t)(3 * m + 5 * nl) * 4));
	llama_rows_layout(s->rin, m, nl, &r);
	if (bucket >= 0 && all_rows)
		TRY(capture_or_run(s, &s->graph[bucket], &r, 0, graphed));
	else
		TRY(batch_ops(s, &r, all_rows));
	return kern_copy_d2h(s->dev, s->obuf_h, s->obuf, (size_t)nl * 8);
}

/* ---- fed greedy decoding ---- */

/* llama_fed_ops: one decode step of the fed sequence: token step[0] at position step[1] of
 * slot step[2], its argmax fed back into step and into hist / lphist. */
int llama_fed_ops(llama *s)
{
	TRY(forward(s, 1, s->step, s->step + 1, s->step + 2, NULL, 1));
	return kern_argmax_feed(s->dev, s->logits, s->V, s->step, s->hist, s->lphist, s->cap);
}

int llama_fed_enter(llama *s, llama_seq *q)
{
	int32_t st[3] = {q->toks[q->ntok - 1], (int32_t)(q->ntok - 1), q->slot};
	TRY(kern_copy_h2d(s->dev, s->step, st, sizeof st));
	s->fed = q;
	s->fed_issued = s->fed_taken = 0;
	return 0;
}

int llama_fed_exit(llama *s)
{
	int rc = 0;
	if (s->fed && s->fed_issued > s->fed_taken)   /* steps run past a stop or a gone receiver */
		rc = kern_dev_sync(s->dev);
	s->fed = NULL;
	s->fed_issued = s->fed_taken = 0;
	return rc;
}

int llama_fed_next(llama *s, int32_t *tok, float *lp)
{
	llama_seq *q = s->fed;
	int64_t gen = q->ntok - q->r.n;
	while (s->fed_issued - s->fed_taken < s->feed_depth &&
	       gen + (s->fed_issued - s->fed_taken) < q->r.max_tokens) {
		int64_t p = q->ntok - 1 + (s->fed_issued - s->fed_taken);   /* the step's position */
		if (llama_grow(s, q, p) < 0)
			break;
		int used;
		TRY(upload_table(s));
		TRY(capture_or_run(s, &s->graph_feed, NULL, 1, &used));
		q->graphed |= used;
		TRY(kern_mark(s->dev, (int)(++s->fed_issued % KERN_MARKS)));
	}
	if (s->fed_issued == s->fed_taken)
		return 1;   /* nothing queued (no block): the caller leaves fed decoding */
	TRY(kern_wait_mark(s->dev, (int)(++s->fed_taken % KERN_MARKS)));
	*tok = ((volatile int32_t *)s->hist)[q->ntok];
	*lp = ((volatile float *)s->lphist)[q->ntok];
	return 0;
}

/* ---- test hooks: a temporary sequence outside the scheduler ---- */

static int helper_begin(llama *s, llama_seq *q, int64_t n)
{
	if (s->running.n || s->waiting.n || s->fed || s->nslot_free < 1)
		return -EBUSY;
	memset(q, 0, sizeof *q);
	q->blocks = malloc((size_t)s->max_blocks * 4);
	if (!q->blocks)
		return -ENOMEM;
	q->slot = s->slot_free[--s->nslot_free];
	q->chain = LLAMA_KV_ROOT;
	if (llama_grow(s, q, n - 1) < 0) {
		llama_seq_unblock(s, q);
		free(q->blocks);
		return -ENOMEM;
	}
	return 0;
}

static void helper_end(llama *s, llama_seq *q)
{
	llama_seq_unblock(s, q);
	free(q->blocks);
}

/* helper_rows runs toks[0 .. n) at positions p0 .. p0 + n - 1 of q (chunks of R rows) and
 * leaves the last row's logits in s->logits row 0 and its argmax in s->obuf_h[0]. */
static int helper_rows(llama *s, llama_seq *q, const int32_t *toks, int64_t p0, int64_t n)
{
	for (int64_t off = 0; off < n;) {
		int64_t c = n - off < s->R ? n - off : s->R;
		llama_rows r;
		llama_rows_layout(s->rin_h, c, 1, &r);
		for (int64_t i = 0; i < c; i++) {
			r.tok[i] = toks[off + i];
			r.pos[i] = (int32_t)(p0 + off + i);
			r.seq[i] = q->slot;
		}
		r.lrows[0] = (int32_t)(c - 1);
		r.temp[0] = 0;
		r.topk[0] = 0;
		r.topp[0] = 1;
		r.u[0] = 0;
		int used;
		TRY(llama_run_batch(s, c, 1, c == 1, c == 1 && s->graphs ? 0 : -1, &used));
		off += c;
	}
	return 0;
}

int llama_helper_prefill(llama *s, const int32_t *toks, int64_t n, float *logits)
{
	llama_seq q;
	TRY(helper_begin(s, &q, n));
	int rc = helper_rows(s, &q, toks, 0, n);
	if (rc == 0)
		rc = kern_copy_d2h(s->dev, s->last_lg, s->logits, (size_t)s->V * 4);
	if (rc == 0)
		memcpy(logits, s->last_lg, (size_t)s->V * 4);
	helper_end(s, &q);
	return rc;
}

int llama_helper_forced(llama *s, const int32_t *prompt, int64_t np, const int32_t *forced,
			int64_t nf, int32_t *argmax)
{
	llama_seq q;
	TRY(helper_begin(s, &q, np + nf - 1));
	int rc = helper_rows(s, &q, prompt, 0, np);
	if (rc == 0)
		argmax[0] = s->obuf_h[0];
	for (int64_t i = 1; rc == 0 && i < nf; i++) {
		rc = helper_rows(s, &q, &forced[i - 1], np + i - 1, 1);
		if (rc == 0)
			argmax[i] = s->obuf_h[0];
	}
	helper_end(s, &q);
	return rc;
}

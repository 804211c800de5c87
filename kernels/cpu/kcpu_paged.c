/* kcpu_paged.c — the CPU reference of the paged KV cache ops (kern.h, "paged KV cache and
 * batched decoding"): RoPE + store of a batch's K and V rows into their sequences' blocks (F32
 * or BF16, rounded to nearest even), causal attention of every row over its own sequence's
 * blocks (one task per (row, head), spread over the device's threads), gathering rows, and
 * per-row token selection through the argmax and sampling code of kcpu_sample.c. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "kernels/cpu/kcpu_int.h"

static inline float bf16_f(uint16_t h)
{
	uint32_t u = (uint32_t)h << 16;
	float f;
	memcpy(&f, &u, 4);
	return f;
}

/* kv_slot: the cache row (block * block_size + offset) that holds position p of sequence s */
static inline int64_t kv_slot(const kern_kv_pages *kv, int32_t s, int64_t p)
{
	int64_t blk = kv->table[(int64_t)s * kv->max_blocks + p / kv->block];
	return blk * kv->block + p % kv->block;
}

/* paged_check: every row's sequence, position and the table entries it reaches are in range
 * (checked before anything is written). */
static int paged_check(const int32_t *pos, const int32_t *seq, int64_t m, const kern_kv_pages *kv)
{
	for (int64_t i = 0; i < m; i++) {
		if (seq[i] < 0 || pos[i] < 0 || (int64_t)pos[i] >= kv->max_blocks * kv->block)
			return -EINVAL;
		const int32_t *t = kv->table + (int64_t)seq[i] * kv->max_blocks;
		for (int64_t j = 0; j <= pos[i] / kv->block; j++)
			if (t[j] < 0 || t[j] >= kv->nblocks)
				return -EINVAL;
	}
	return 0;
}

/* store_row: cache row `slot` of K and V gets k and v (kvdim values), rounded to kv->dt */
static void store_row(const kern_kv_pages *kv, int64_t slot, const float *k, const float *v)
{
	int64_t n = kv->kvdim;
	if (kv->dt == KERN_F32) {
		memcpy((float *)kv->k + slot * n, k, (size_t)n * 4);
		memcpy((float *)kv->v + slot * n, v, (size_t)n * 4);
		return;
	}
	uint16_t *kd = (uint16_t *)kv->k + slot * n, *vd = (uint16_t *)kv->v + slot * n;
	for (int64_t j = 0; j < n; j++) {
		kd[j] = kern_f32_to_bf16(k[j]);
		vd[j] = kern_f32_to_bf16(v[j]);
	}
}

typedef struct paged_ctx {
	const float *q;
	const int32_t *pos, *seq;
	int64_t heads, kvheads, hd, tmax;
	const kern_kv_pages *kv;
	float scale;
	float *out;
} paged_ctx;

static int paged_range(void *arg, int64_t lo, int64_t hi)
{
	paged_ctx *c = arg;
	const kern_kv_pages *kv = c->kv;
	int64_t kvdim = kv->kvdim, group = c->heads / c->kvheads, hd = c->hd;
	float *sc = malloc((size_t)c->tmax * 4 + (size_t)hd * 4);
	if (!sc)
		return -ENOMEM;
	float *kf = sc + c->tmax;   /* one BF16 key or value widened */
	for (int64_t t = lo; t < hi; t++) {
		int64_t i = t / c->heads, h = t % c->heads, off = (h / group) * hd;
		int64_t T = (int64_t)c->pos[i] + 1;
		int32_t s = c->seq[i];
		const float *q = c->q + (i * c->heads + h) * hd;
		float *o = c->out + (i * c->heads + h) * hd;
		float mx = -INFINITY, sum = 0;
		for (int64_t j = 0; j < T; j++) {
			int64_t r = kv_slot(kv, s, j) * kvdim + off;
			const float *kr;
			if (kv->dt == KERN_F32) {
				kr = (const float *)kv->k + r;
			} else {
				const uint16_t *kb = (const uint16_t *)kv->k + r;
				for (int64_t d = 0; d < hd; d++)
					kf[d] = bf16_f(kb[d]);
				kr = kf;
			}
			sc[j] = kcpu_dot(q, kr, hd) * c->scale;
			mx = sc[j] > mx ? sc[j] : mx;
		}
		for (int64_t j = 0; j < T; j++) {
			sc[j] = expf(sc[j] - mx);
			sum += sc[j];
		}
		memset(o, 0, (size_t)hd * 4);
		for (int64_t j = 0; j < T; j++) {
			int64_t r = kv_slot(kv, s, j) * kvdim + off;
			float p = sc[j] / sum;
			if (kv->dt == KERN_F32) {
				const float *vr = (const float *)kv->v + r;
				for (int64_t d = 0; d < hd; d++)
					o[d] += p * vr[d];
			} else {
				const uint16_t *vb = (const uint16_t *)kv->v + r;
				for (int64_t d = 0; d < hd; d++)
					o[d] += p * bf16_f(vb[d]);
			}
		}
	}
	free(sc);
	return 0;
}

int kcpu_paged_rope_attention(void *b, float *q, float *k, const float *v, const int32_t *pos,
			      const int32_t *seq, int64_t m, int64_t heads, int64_t kvheads,
			      int64_t hd, float theta, const kern_kv_pages *kv, float scale,
			      float *out)
{
	int rc = paged_check(pos, seq, m, kv);
	if (rc)
		return rc;
	kcpu_rope(b, q, pos, m, heads, hd, theta);
	kcpu_rope(b, k, pos, m, kvheads, hd, theta);
	int64_t tmax = 0;
	double work = 0;
	for (int64_t i = 0; i < m; i++) {
		store_row(kv, kv_slot(kv, seq[i], pos[i]), k + i * kv->kvdim, v + i * kv->kvdim);
		tmax = pos[i] + 1 > tmax ? pos[i] + 1 : tmax;
		work += (double)(pos[i] + 1);
	}
	paged_ctx c = {q, pos, seq, heads, kvheads, hd, tmax, kv, scale, out};
	return kcpu_par(b, m * heads, work * (double)heads * (double)hd * 4.0, paged_range, &c);
}

typedef struct gather_ctx {
	const float *x;
	int64_t dim;
	const int32_t *rows;
	float *y;
} gather_ctx;

static int gather_range(void *arg, int64_t lo, int64_t hi)
{
	gather_ctx *c = arg;
	for (int64_t i = lo; i < hi; i++)
		memcpy(c->y + i * c->dim, c->x + (int64_t)c->rows[i] * c->dim, (size_t)c->dim * 4);
	return 0;
}

int kcpu_gather_rows(void *b, const float *x, int64_t dim, const int32_t *rows, int64_t n,
		     float *y)
{
	for (int64_t i = 0; i < n; i++)
		if (rows[i] < 0)
			return -EINVAL;
	gather_ctx c = {x, dim, rows, y};
	return kcpu_par(b, n, (double)n * (double)dim, gather_range, &c);
}

typedef struct srows_ctx {
	void *b;
	const float *x;
	int64_t n;
	const float *temp, *top_p, *u;
	const int32_t *top_k;
	int32_t *out;
	float *lp;
} srows_ctx;

/* each row through kcpu_argmax (temp 0) or kcpu_sample with its own parameters */
static int srows_range(void *arg, int64_t lo, int64_t hi)
{
	srows_ctx *c = arg;
	for (int64_t i = lo; i < hi; i++) {
		const float *r = c->x + i * c->n;
		float *lp = c->lp ? c->lp + i : NULL;
		int rc = c->temp[i] == 0.0f
				 ? kcpu_argmax(c->b, r, 1, c->n, c->out + i, lp)
				 : kcpu_sample(c->b, r, 1, c->n, c->temp[i], c->top_k[i], c->top_p[i],
					       c->u + i, c->out + i, lp);
		if (rc)
			return rc;
	}
	return 0;
}

int kcpu_sample_rows(void *b, const float *x, int64_t m, int64_t n, const float *temp,
		     const int32_t *top_k, const float *top_p, const float *u, int32_t *out,
		     float *lp)
{
	double work = 0;
	for (int64_t i = 0; i < m; i++) {
		if (temp[i] == 0.0f) {
			work += (double)n;
			continue;
		}
		/* kern_sample's rule for the parameters of a sampled row */
		if (!(temp[i] > 0) || top_k[i] < 0 || !(top_p[i] > 0) || top_p[i] > 1)
			return -EINVAL;
		work += (double)n * (top_p[i] < 1 ? 70.0 : top_k[i] > 0 ? 35.0 : 3.0);
	}
	srows_ctx c = {b, x, n, temp, top_p, u, top_k, out, lp};
	return kcpu_par(b, m, work, srows_range, &c);
}

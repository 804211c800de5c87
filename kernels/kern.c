/* kern.c — the backend-independent half of kern.h: dtype helpers, float conversions, device
 * open/close, and the op entry points that check their arguments and dispatch to the device's
 * backend (kernels/cpu/ or kernels/cuda/). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "kernels/kern_int.h"
#include "pool/pool_log.h"

size_t kern_dtype_size(kern_dtype dt)
{
	switch (dt) {
	case KERN_F32: case KERN_I32: return 4;
	case KERN_F16: case KERN_BF16: return 2;
	case KERN_I8: return 1;
	}
	return 0;
}

static const char *const dt_names[] = {"F32", "F16", "BF16", "I8", "I32"};

int kern_dtype_parse(const char *s, kern_dtype *out)
{
	for (int i = 0; s && i < (int)(sizeof dt_names / sizeof dt_names[0]); i++)
		if (strcmp(s, dt_names[i]) == 0) {
			*out = (kern_dtype)i;
			return 0;
		}
	return -EINVAL;
}

const char *kern_dtype_name(kern_dtype dt)
{
	return (unsigned)dt < sizeof dt_names / sizeof dt_names[0] ? dt_names[dt] : "?";
}

int kern_act_parse(const char *s, kern_act *out)
{
	static const struct { const char *n; kern_act a; } t[] = {
		{"relu", KERN_ACT_RELU}, {"gelu", KERN_ACT_GELU}, {"tanh", KERN_ACT_TANH},
		{"silu", KERN_ACT_SILU}, {"none", KERN_ACT_NONE}, {"identity", KERN_ACT_NONE},
		{"linear", KERN_ACT_NONE},
	};
	for (size_t i = 0; s && i < sizeof t / sizeof t[0]; i++)
		if (strcasecmp(s, t[i].n) == 0) {
			*out = t[i].a;
			return 0;
		}
	return -EINVAL;
}

float kern_bf16_to_f32(uint16_t h)
{
	uint32_t u = (uint32_t)h << 16;
	float f;
	memcpy(&f, &u, 4);
	return f;
}

uint16_t kern_f32_to_bf16(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	if ((u & 0x7fffffffu) > 0x7f800000u)   /* NaN: keep it a quiet NaN */
		return (uint16_t)((u >> 16) | 0x40);
	u += 0x7fffu + ((u >> 16) & 1u);
	return (uint16_t)(u >> 16);
}

float kern_f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ffu, u;
	if (exp == 0) {
		if (man == 0) {
			u = sign;
		} else {   /* subnormal: normalize */
			int e = -1;
			do { e++; man <<= 1; } while (!(man & 0x400u));
			u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
		}
	} else if (exp == 31) {
		u = sign | 0x7f800000u | (man << 13);
	} else {
		u = sign | ((exp + 127 - 15) << 23) | (man << 13);
	}
	float f;
	memcpy(&f, &u, 4);
	return f;
}

uint16_t kern_f32_to_f16(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	uint32_t sign = (u >> 16) & 0x8000u;
	int32_t exp = (int32_t)((u >> 23) & 0xff) - 127 + 15;
	uint32_t man = u & 0x7fffffu;
	if (((u >> 23) & 0xff) == 0xff)
		return (uint16_t)(sign | 0x7c00u | (man ? 0x200u : 0));
	if (exp >= 31)
		return (uint16_t)(sign | 0x7c00u);
	if (exp <= 0) {
		if (exp < -10)
			return (uint16_t)sign;
		man |= 0x800000u;
		uint32_t shift = (uint32_t)(14 - exp);
		uint32_t half = man >> shift, rem = man & ((1u << shift) - 1), mid = 1u << (shift - 1);
		if (rem > mid || (rem == mid && (half & 1)))
			half++;
		return (uint16_t)(sign | half);
	}
	uint32_t h = sign | ((uint32_t)exp << 10) | (man >> 13), rem = man & 0x1fffu;
	if (rem > 0x1000u || (rem == 0x1000u && (h & 1)))
		h++;   /* may carry into the exponent: still correct rounding */
	return (uint16_t)h;
}

int kern_cuda_count(void)
{
#ifdef THAW_CUDA
	return kern_cuda_device_count();
#else
	return 0;
#endif
}

static int dev_open(const char *spec, int threads, const kern_tuning *t, struct pool_compute *pc,
		    kern_dev **out);

int kern_dev_open(const char *spec, int threads, kern_dev **out)
{
	return kern_dev_open_tuned(spec, threads, NULL, out);
}

int kern_dev_open_tuned(const char *spec, int threads, const kern_tuning *t, kern_dev **out)
{
	return dev_open(spec, threads, t, NULL, out);
}

int kern_dev_open_compute(const char *spec, const kern_tuning *t, struct pool_compute *pc,
			  kern_dev **out)
{
	*out = NULL;
	if (!pc || !spec || strncmp(spec, "cuda", 4) != 0)
		return -EINVAL;
	return dev_open(spec, 0, t, pc, out);
}

static int dev_open(const char *spec, int threads, const kern_tuning *t, struct pool_compute *pc,
		    kern_dev **out)
{
	static const kern_tuning def = KERN_TUNING_DEFAULT;
	const kern_backend *be;
	int index = 0, rc;
	*out = NULL;
	if (!t)
		t = &def;
	if (!spec || t->feed_depth < -1 || t->feed_depth >= KERN_MARKS || t->i8_gemm_rows < 0 ||
	    t->i8_mma_rows < 0 || t->i8_mma_rows > 64)
		return -EINVAL;
	if (strcmp(spec, "cpu") == 0) {
		be = &kern_cpu_backend;
	} else if (strncmp(spec, "cuda", 4) == 0) {
		if (spec[4] == ':') {
			char *end;
			long v = strtol(spec + 5, &end, 10);
			if (end == spec + 5 || *end || v < 0 || v > 64)
				return -EINVAL;
			index = (int)v;
		} else if (spec[4]) {
			return -EINVAL;
		}
#ifdef THAW_CUDA
		be = &kern_cuda_backend;
		if (index >= kern_cuda_device_count())
			return -ENODEV;
#else
		return -ENODEV;
#endif
	} else {
		return -EINVAL;
	}
	kern_dev *d = calloc(1, sizeof *d);
	if (!d)
		return -ENOMEM;
	d->be = be;
	d->tune = *t;
	if (d->tune.feed_depth < 0)
		d->tune.feed_depth = be == &kern_cpu_backend ? 1 : 2;
	snprintf(d->name, sizeof d->name, "%s", be == &kern_cpu_backend ? "cpu" : "cuda");
	if (be != &kern_cpu_backend)
		snprintf(d->name, sizeof d->name, "cuda:%d", index);
	rc = be->open(index, threads, &d->tune, pc, &d->b);
	if (rc < 0) {
		free(d);
		return rc;
	}
	*out = d;
	return 0;
}

void kern_dev_close(kern_dev *d)
{
	if (!d)
		return;
	d->be->close(d->b);
	free(d);
}

int kern_dev_is_cuda(const kern_dev *d) { return d->be != &kern_cpu_backend; }
const char *kern_dev_name(const kern_dev *d) { return d->name; }
const kern_tuning *kern_dev_tuning(const kern_dev *d) { return &d->tune; }

void *kern_alloc(kern_dev *d, size_t bytes) { return d->be->alloc(d->b, bytes ? bytes : 1); }
void kern_free(kern_dev *d, void *p) { if (p) d->be->free(d->b, p); }
int kern_copy_h2d(kern_dev *d, void *dst, const void *src, size_t n)
{ return n ? d->be->h2d(d->b, dst, src, n) : 0; }
int kern_copy_d2h(kern_dev *d, void *dst, const void *src, size_t n)
{ return n ? d->be->d2h(d->b, dst, src, n) : 0; }
int kern_copy_d2d(kern_dev *d, void *dst, const void *src, size_t n)
{ return n ? d->be->d2d(d->b, dst, src, n) : 0; }
int kern_dev_sync(kern_dev *d) { return d->be->sync(d->b); }

int kern_cast_f32(kern_dev *d, kern_dtype dt, const void *src, float *dst, int64_t n)
{
	if (n < 0 || (dt != KERN_F32 && dt != KERN_F16 && dt != KERN_BF16))
		return -EINVAL;
	return n ? d->be->cast_f32(d->b, dt, src, dst, n) : 0;
}

int kern_linear(kern_dev *d, const float *x, int64_t m, const kern_mat *w, const float *bias,
		kern_act act, float *y)
{
	if (!w || m < 0 || w->n <= 0 || w->k <= 0 || !w->data)
		return -EINVAL;
	if (w->dt == KERN_I8) {
		if (!w->scales || (w->qblock != 0 && (w->qblock != 32 || w->k % 32)))
			return -EINVAL;
	} else if (w->dt != KERN_F32 && w->dt != KERN_F16 && w->dt != KERN_BF16) {
		return -EINVAL;
	}
	return m ? d->be->linear(d->b, x, m, w, bias, act, y) : 0;
}

static int mat_ok(const kern_mat *w)
{
	if (!w || w->n <= 0 || w->k <= 0 || !w->data)
		return 0;
	if (w->dt == KERN_I8)
		return w->scales && (w->qblock == 0 || (w->qblock == 32 && w->k % 32 == 0));
	return w->dt == KERN_F32 || w->dt == KERN_F16 || w->dt == KERN_BF16;
}

int kern_linear_add(kern_dev *d, const float *x, int64_t m, const kern_mat *w, float *y)
{
	if (m < 0 || !mat_ok(w))
		return -EINVAL;
	if (!m)
		return 0;
	if (d->be->linear_add)
		return d->be->linear_add(d->b, x, m, w, y);
	float *t = kern_alloc(d, (size_t)(m * w->n) * 4);
	if (!t)
		return -ENOMEM;
	int rc = kern_linear(d, x, m, w, NULL, KERN_ACT_NONE, t);
	if (rc == 0)
		rc = kern_add(d, y, t, m * w->n);
	kern_free(d, t);
	return rc;
}

/* normed_copy: a temporary device copy of norm(x) for composed fallbacks (free with kern_free). */
static float *normed_copy(kern_dev *d, const float *x, int64_t m, int64_t k, const kern_norm *n,
			  int *rc)
{
	float *t = kern_alloc(d, (size_t)(m * k) * 4);
	*rc = t ? kern_rmsnorm(d, x, n->w, m, k, n->eps, t) : -ENOMEM;
	if (*rc && t) {
		kern_free(d, t);
		t = NULL;
	}
	return t;
}

int kern_linear_multi(kern_dev *d, const float *x, int64_t m, int nw, const kern_mat *w,
		      float *const *y, const kern_norm *norm)
{
	if (m < 0 || nw < 1 || nw > 3)
		return -EINVAL;
	for (int i = 0; i < nw; i++)
		if (!mat_ok(&w[i]) || w[i].k != w[0].k || w[i].dt != w[0].dt ||
		    w[i].qblock != w[0].qblock)
			return -EINVAL;
	if (!m)
		return 0;
	if (d->be->linear_multi)
		return d->be->linear_multi(d->b, x, m, nw, w, y, norm);
	int rc = 0;
	float *t = norm ? normed_copy(d, x, m, w[0].k, norm, &rc) : NULL;
	for (int i = 0; i < nw && rc == 0; i++)
		rc = kern_linear(d, t ? t : x, m, &w[i], NULL, KERN_ACT_NONE, y[i]);
	kern_free(d, t);
	return rc;
}

int kern_swiglu(kern_dev *d, const float *x, int64_t m, const kern_mat *wg, const kern_mat *wu,
		float *out, const kern_norm *norm)
{
	if (m < 0 || !mat_ok(wg) || !mat_ok(wu) || wg->n != wu->n || wg->k != wu->k ||
	    wg->dt != wu->dt || wg->qblock != wu->qblock)
		return -EINVAL;
	if (!m)
		return 0;
	if (d->be->swiglu)
		return d->be->swiglu(d->b, x, m, wg, wu, out, norm);
	int rc = 0;
	float *h = norm ? normed_copy(d, x, m, wg->k, norm, &rc) : NULL;
	float *t = rc ? NULL : kern_alloc(d, (size_t)(m * wu->n) * 4);
	if (!rc && !t)
		rc = -ENOMEM;
	if (rc == 0)
		rc = kern_linear(d, h ? h : x, m, wg, NULL, KERN_ACT_NONE, out);
	if (rc == 0)
		rc = kern_linear(d, h ? h : x, m, wu, NULL, KERN_ACT_NONE, t);
	if (rc == 0)
		rc = kern_silu_mul(d, out, t, m * wu->n, out);
	kern_free(d, t);
	kern_free(d, h);
	return rc;
}

int kern_rope_kv(kern_dev *d, float *q, float *k, const float *v, const int32_t *pos, int64_t m,
		 int64_t heads, int64_t kvheads, int64_t hd, float theta, float *kc, float *vc,
		 int64_t cap)
{
	if (m < 0 || heads <= 0 || kvheads <= 0 || hd <= 0 || hd % 2 || theta <= 0 || cap <= 0)
		return -EINVAL;
	if (!m)
		return 0;
	if (d->be->rope_kv)
		return d->be->rope_kv(d->b, q, k, v, pos, m, heads, kvheads, hd, theta, kc, vc, cap);
	int rc = kern_rope(d, q, pos, m, heads, hd, theta);
	if (rc == 0)
		rc = kern_rope(d, k, pos, m, kvheads, hd, theta);
	if (rc == 0)
		rc = kern_kv_store(d, k, v, pos, m, kvheads * hd, kc, vc, cap);
	return rc;
}

int kern_rope_attention(kern_dev *d, float *q, float *k, const float *v, const int32_t *pos,
			int64_t m, int64_t heads, int64_t kvheads, int64_t hd, float theta, float *kc,
			float *vc, int64_t cap, float scale, float *out)
{
	if (m < 0 || heads <= 0 || kvheads <= 0 || heads % kvheads || hd <= 0 || hd % 2 ||
	    hd > 256 || theta <= 0 || cap <= 0)
		return -EINVAL;
	if (!m)
		return 0;
	if (d->be->rope_attention)
		return d->be->rope_attention(d->b, q, k, v, pos, m, heads, kvheads, hd, theta, kc, vc,
					     cap, scale, out);
	int rc = kern_rope_kv(d, q, k, v, pos, m, heads, kvheads, hd, theta, kc, vc, cap);
	return rc ? rc : kern_attention(d, q, kc, vc, pos, m, heads, kvheads, hd, cap, scale, out);
}

int kern_rope_attention_proj(kern_dev *d, float *q, float *k, const float *v, const int32_t *pos,
			     int64_t m, int64_t heads, int64_t kvheads, int64_t hd, float theta,
			     float *kc, float *vc, int64_t cap, float scale, float *att,
			     const kern_mat *wo, float *y)
{
	if (m < 0 || heads <= 0 || kvheads <= 0 || heads % kvheads || hd <= 0 || hd % 2 ||
	    hd > 256 || theta <= 0 || cap <= 0 || !mat_ok(wo) || wo->k != heads * hd)
		return -EINVAL;
	if (!m)
		return 0;
	if (d->be->rope_attention_proj)
		return d->be->rope_attention_proj(d->b, q, k, v, pos, m, heads, kvheads, hd, theta, kc,
						  vc, cap, scale, att, wo, y);
	int rc = kern_rope_attention(d, q, k, v, pos, m, heads, kvheads, hd, theta, kc, vc, cap,
				     scale, att);
	return rc ? rc : kern_linear_add(d, att, m, wo, y);
}

int kern_swiglu_proj(kern_dev *d, const float *x, int64_t m, const kern_mat *wg,
		     const kern_mat *wu, const kern_norm *norm, float *g, const kern_mat *wd,
		     float *y)
{
	if (m < 0 || !mat_ok(wg) || !mat_ok(wu) || wg->n != wu->n || wg->k != wu->k ||
	    wg->dt != wu->dt || wg->qblock != wu->qblock || !mat_ok(wd) || wd->k != wg->n)
		return -EINVAL;
	if (!m)
		return 0;
	if (d->be->swiglu_proj)
		return d->be->swiglu_proj(d->b, x, m, wg, wu, norm, g, wd, y);
	int rc = kern_swiglu(d, x, m, wg, wu, g, norm);
	return rc ? rc : kern_linear_add(d, g, m, wd, y);
}

int kern_embed(kern_dev *d, kern_dtype dt, const void *table, int64_t vocab, int64_t dim,
	       const int32_t *tokens, int64_t m, float *y)
{
	if (vocab <= 0 || dim <= 0 || m < 0 || (dt != KERN_F32 && dt != KERN_F16 && dt != KERN_BF16))
		return -EINVAL;
	return m ? d->be->embed(d->b, dt, table, vocab, dim, tokens, m, y) : 0;
}

int kern_rmsnorm(kern_dev *d, const float *x, const float *w, int64_t m, int64_t dim,
		 float eps, float *y)
{
	if (m < 0 || dim <= 0)
		return -EINVAL;
	return m ? d->be->rmsnorm(d->b, x, w, m, dim, eps, y) : 0;
}

int kern_rope(kern_dev *d, float *x, const int32_t *pos, int64_t m, int64_t heads, int64_t hd,
	      float theta)
{
	if (m < 0 || heads <= 0 || hd <= 0 || hd % 2 || theta <= 0)
		return -EINVAL;
	return m ? d->be->rope(d->b, x, pos, m, heads, hd, theta) : 0;
}

int kern_kv_store(kern_dev *d, const float *k, const float *v, const int32_t *pos, int64_t m,
		  int64_t kvdim, float *kc, float *vc, int64_t cap)
{
	if (m < 0 || kvdim <= 0 || cap <= 0)
		return -EINVAL;
	return m ? d->be->kv_store(d->b, k, v, pos, m, kvdim, kc, vc, cap) : 0;
}

int kern_attention(kern_dev *d, const float *q, const float *kc, const float *vc,
		   const int32_t *pos, int64_t m, int64_t heads, int64_t kvheads, int64_t hd,
		   int64_t cap, float scale, float *out)
{
	if (m < 0 || heads <= 0 || kvheads <= 0 || heads % kvheads || hd <= 0 || hd > 256 ||
	    cap <= 0)
		return -EINVAL;
	return m ? d->be->attention(d->b, q, kc, vc, pos, m, heads, kvheads, hd, cap, scale, out) : 0;
}

int kern_silu_mul(kern_dev *d, const float *gate, const float *up, int64_t n, float *out)
{
	if (n < 0)
		return -EINVAL;
	return n ? d->be->silu_mul(d->b, gate, up, n, out) : 0;
}

int kern_bias_act(kern_dev *d, float *x, const float *bias, int64_t m, int64_t n, kern_act act)
{
	if (m < 0 || n <= 0 || (unsigned)act > KERN_ACT_SILU)
		return -EINVAL;
	return m ? d->be->bias_act(d->b, x, bias, m, n, act) : 0;
}

int kern_add(kern_dev *d, float *y, const float *x, int64_t n)
{
	if (n < 0)
		return -EINVAL;
	return n ? d->be->add(d->b, y, x, n) : 0;
}

int kern_softmax(kern_dev *d, float *x, int64_t m, int64_t n)
{
	if (m < 0 || n <= 0)
		return -EINVAL;
	return m ? d->be->softmax(d->b, x, m, n) : 0;
}

int kern_argmax(kern_dev *d, const float *x, int64_t m, int64_t n, int32_t *out, float *lp)
{
	if (m < 0 || n <= 0 || n > INT32_MAX)
		return -EINVAL;
	return m ? d->be->argmax(d->b, x, m, n, out, lp) : 0;
}

int kern_argmax_feed(kern_dev *d, const float *x, int64_t n, int32_t *step, int32_t *hist,
		     float *lphist, int64_t cap)
{
	if (n <= 0 || n > INT32_MAX || cap < 0 || !x || !step || !hist)
		return -EINVAL;
	return d->be->argmax_feed(d->b, x, n, step, hist, lphist, cap);
}

void *kern_alloc_host(kern_dev *d, size_t bytes)
{
	return d->be->alloc_host(d->b, bytes ? bytes : 1);
}

void kern_free_host(kern_dev *d, void *p)
{
	if (p)
		d->be->free_host(d->b, p);
}

int kern_mark(kern_dev *d, int slot)
{
	if (slot < 0 || slot >= KERN_MARKS)
		return -EINVAL;
	return d->be->mark(d->b, slot);
}

int kern_wait_mark(kern_dev *d, int slot)
{
	if (slot < 0 || slot >= KERN_MARKS)
		return -EINVAL;
	return d->be->wait_mark(d->b, slot);
}

int kern_sample(kern_dev *d, const float *x, int64_t m, int64_t n, float temp, int top_k,
		float top_p, const float *u, int32_t *out, float *lp)
{
	if (m < 0 || n <= 0 || n > INT32_MAX || !(temp > 0) || top_k < 0 || !(top_p > 0) ||
	    top_p > 1)
		return -EINVAL;
	return m ? d->be->sample(d->b, x, m, n, temp, top_k, top_p, u, out, lp) : 0;
}

/* ---- paged KV cache and batched decoding ---- */

/* paged_ok: the shapes every paged attention op needs (kern.h, kern_kv_pages) */
static int paged_ok(float *q, float *k, const float *v, const int32_t *pos, const int32_t *seq,
		    int64_t m, int64_t heads, int64_t kvheads, int64_t hd, float theta,
		    const kern_kv_pages *kv, float scale, const float *out)
{
	if (m < 0 || m > INT32_MAX || heads <= 0 || kvheads <= 0 || heads % kvheads || hd <= 0 ||
	    hd % 2 || hd > 256 || !(theta > 0) || !isfinite(scale) || !kv)
		return 0;
	if ((kv->dt != KERN_BF16 && kv->dt != KERN_F32) || !kv->k || !kv->v || !kv->table ||
	    kv->nblocks <= 0 || kv->nblocks > INT32_MAX || kv->block <= 0 ||
	    kv->block > INT32_MAX || kv->max_blocks <= 0 || kv->max_blocks > INT32_MAX ||
	    kv->kvdim != kvheads * hd || kv->block * kv->max_blocks > INT32_MAX)
		return 0;
	return m == 0 || (q && k && v && pos && seq && out);
}

int kern_paged_rope_attention(kern_dev *d, float *q, float *k, const float *v,
			      const int32_t *pos, const int32_t *seq, int64_t m, int64_t heads,
			      int64_t kvheads, int64_t hd, float theta, const kern_kv_pages *kv,
			      float scale, float *out)
{
	if (!paged_ok(q, k, v, pos, seq, m, heads, kvheads, hd, theta, kv, scale, out))
		return -EINVAL;
	if (!m)
		return 0;
	if (!d->be->paged_rope_attention)
		return -ENOTSUP;
	return d->be->paged_rope_attention(d->b, q, k, v, pos, seq, m, heads, kvheads, hd, theta, kv,
					   scale, out);
}

int kern_paged_rope_attention_proj(kern_dev *d, float *q, float *k, const float *v,
				   const int32_t *pos, const int32_t *seq, int64_t m,
				   int64_t heads, int64_t kvheads, int64_t hd, float theta,
				   const kern_kv_pages *kv, float scale, float *att,
				   const kern_mat *wo, float *y)
{
	if (!paged_ok(q, k, v, pos, seq, m, heads, kvheads, hd, theta, kv, scale, att) ||
	    !mat_ok(wo) || wo->k != heads * hd || (m && !y))
		return -EINVAL;
	if (!m)
		return 0;
	if (d->be->paged_rope_attention_proj)
		return d->be->paged_rope_attention_proj(d->b, q, k, v, pos, seq, m, heads, kvheads, hd,
							theta, kv, scale, att, wo, y);
	int rc = kern_paged_rope_attention(d, q, k, v, pos, seq, m, heads, kvheads, hd, theta, kv,
					   scale, att);
	return rc ? rc : kern_linear_add(d, att, m, wo, y);
}

int kern_gather_rows(kern_dev *d, const float *x, int64_t dim, const int32_t *rows, int64_t n,
		     float *y)
{
	if (dim <= 0 || n < 0 || n > INT32_MAX || (n && (!x || !rows || !y)))
		return -EINVAL;
	if (!n)
		return 0;
	if (!d->be->gather_rows)
		return -ENOTSUP;
	return d->be->gather_rows(d->b, x, dim, rows, n, y);
}

int kern_sample_rows(kern_dev *d, const float *x, int64_t m, int64_t n, const float *temp,
		     const int32_t *top_k, const float *top_p, const float *u, int32_t *out,
		     float *lp)
{
	if (m < 0 || m > INT32_MAX || n <= 0 || n > INT32_MAX ||
	    (m && (!x || !temp || !top_k || !top_p || !u || !out)))
		return -EINVAL;
	if (!m)
		return 0;
	if (!d->be->sample_rows)
		return -ENOTSUP;
	return d->be->sample_rows(d->b, x, m, n, temp, top_k, top_p, u, out, lp);
}

int kern_graph_begin(kern_dev *d)
{
	return d->be->graph_begin && d->tune.graphs ? d->be->graph_begin(d->b) : -ENOTSUP;
}

int kern_graph_end(kern_dev *d, kern_graph **out)
{
	void *g = NULL;
	int rc = d->be->graph_end ? d->be->graph_end(d->b, &g) : -ENOTSUP;
	*out = (kern_graph *)g;
	return rc;
}

int kern_graph_launch(kern_dev *d, kern_graph *g)
{
	return d->be->graph_launch ? d->be->graph_launch(d->b, g) : -ENOTSUP;
}

void kern_graph_free(kern_dev *d, kern_graph *g)
{
	if (g && d->be->graph_free)
		d->be->graph_free(d->b, g);
}

/* ---- training ops ---- */

int kern_gemm(kern_dev *d, int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
	      const float *a, const float *b, float beta, float *c)
{
	if (m < 0 || n < 0 || k < 0 || (ta != 0 && ta != 1) || (tb != 0 && tb != 1) ||
	    m > INT32_MAX || n > INT32_MAX || k > INT32_MAX || !isfinite(alpha) || !isfinite(beta))
		return -EINVAL;
	if (!m || !n)
		return 0;
	if (!d->be->gemm)
		return -ENOTSUP;
	return d->be->gemm(d->b, ta, tb, m, n, k, alpha, a, b, beta, c);
}

int kern_act_grad(kern_dev *d, float *g, const float *z, int64_t n, kern_act act)
{
	if (n < 0 || (unsigned)act > KERN_ACT_SILU)
		return -EINVAL;
	if (!d->be->act_grad)
		return -ENOTSUP;
	return n ? d->be->act_grad(d->b, g, z, n, act) : 0;
}

int kern_xent_grad(kern_dev *d, const float *x, const float *lab, int64_t m, int64_t n,
		   float scale, float *grad, float *loss, float *correct)
{
	if (m < 0 || n <= 0 || n > INT32_MAX || !isfinite(scale))
		return -EINVAL;
	if (!d->be->xent_grad)
		return -ENOTSUP;
	return m ? d->be->xent_grad(d->b, x, lab, m, n, scale, grad, loss, correct) : 0;
}

int kern_mse_grad(kern_dev *d, const float *x, const float *t, int64_t m, int64_t n, float scale,
		  float *grad, float *loss)
{
	if (m < 0 || n <= 0 || !isfinite(scale))
		return -EINVAL;
	if (!d->be->mse_grad)
		return -ENOTSUP;
	return m ? d->be->mse_grad(d->b, x, t, m, n, scale, grad, loss) : 0;
}

int kern_col_sum(kern_dev *d, const float *x, int64_t m, int64_t n, float alpha, float beta,
		 float *out)
{
	if (m < 0 || n < 0 || !isfinite(alpha) || !isfinite(beta))
		return -EINVAL;
	if (!d->be->col_sum)
		return -ENOTSUP;
	return n ? d->be->col_sum(d->b, x, m, n, alpha, beta, out) : 0;
}

int kern_adam(kern_dev *d, float *p, float *mo, float *v, const float *g, int64_t n, float lr,
	      float b1, float b2, float eps)
{
	if (n < 0 || !isfinite(lr) || !(b1 >= 0 && b1 < 1) || !(b2 >= 0 && b2 < 1) || !(eps > 0))
		return -EINVAL;
	if (!d->be->adam)
		return -ENOTSUP;
	return n ? d->be->adam(d->b, p, mo, v, g, n, lr, b1, b2, eps) : 0;
}

/* ---- backward ops of a decoder ---- */

/* the answer of a backend without the op: -ENOTSUP, named in the device log (pool_log) so a
 * job's log says why */
static int bwd_notsup(const kern_dev *d, const char *op)
{
	pool_logf("kern: %s is not implemented on %s", op, d->name);
	return -ENOTSUP;
}

int kern_rmsnorm_bwd(kern_dev *d, const float *x, const float *w, const float *dy, int64_t m,
		     int64_t dim, float eps, float *dx, float *dw)
{
	if (m < 0 || m > INT32_MAX || dim <= 0 || dim > INT32_MAX || !(eps >= 0) || !isfinite(eps) ||
	    (m && (!x || !w || !dy || !dx)))
		return -EINVAL;
	if (!d->be->rmsnorm_bwd)
		return bwd_notsup(d, "rmsnorm_bwd");
	if (!m) {   /* no rows: dw is a sum over none */
		if (!dw)
			return 0;
		float *z = calloc((size_t)dim, 4);
		int rc = z ? kern_copy_h2d(d, dw, z, (size_t)dim * 4) : -ENOMEM;
		free(z);
		return rc;
	}
	return d->be->rmsnorm_bwd(d->b, x, w, dy, m, dim, eps, dx, dw);
}

int kern_rope_bwd(kern_dev *d, float *g, const int32_t *pos, int64_t m, int64_t heads,
		  int64_t hd, float theta)
{
	if (m < 0 || m > INT32_MAX || heads <= 0 || hd <= 0 || hd % 2 || !(theta > 0) || !isfinite(theta) ||
	    (m && (!g || !pos)))
		return -EINVAL;
	if (!d->be->rope_bwd)
		return bwd_notsup(d, "rope_bwd");
	return m ? d->be->rope_bwd(d->b, g, pos, m, heads, hd, theta) : 0;
}

static int causal_shape_ok(int64_t nseq, int64_t T, int64_t heads, int64_t kvheads, int64_t hd,
			   float scale)
{
	return nseq >= 0 && T > 0 && T <= INT32_MAX && heads > 0 && kvheads > 0 &&
	       heads % kvheads == 0 && hd > 0 && isfinite(scale) &&
	       (double)nseq * (double)T * (double)heads <= (double)INT32_MAX &&
	       (double)nseq * (double)T * (double)heads * (double)hd < 9e15;
}

int kern_causal_attention(kern_dev *d, const float *q, const float *k, const float *v,
			  int64_t nseq, int64_t T, int64_t heads, int64_t kvheads, int64_t hd,
			  float scale, float *out, float *lse)
{
	if (!causal_shape_ok(nseq, T, heads, kvheads, hd, scale) ||
	    (nseq && (!q || !k || !v || !out || !lse)))
		return -EINVAL;
	if (!d->be->causal_attention)
		return bwd_notsup(d, "causal_attention");
	return nseq ? d->be->causal_attention(d->b, q, k, v, nseq, T, heads, kvheads, hd, scale,
					      out, lse) : 0;
}

int kern_causal_attention_bwd(kern_dev *d, const float *q, const float *k, const float *v,
			      const float *out, const float *lse, const float *dout, int64_t nseq,
			      int64_t T, int64_t heads, int64_t kvheads, int64_t hd, float scale,
			      float *dq, float *dk, float *dv)
{
	if (!causal_shape_ok(nseq, T, heads, kvheads, hd, scale) ||
	    (nseq && (!q || !k || !v || !out || !lse || !dout || !dq || !dk || !dv)))
		return -EINVAL;
	if (!d->be->causal_attention_bwd)
		return bwd_notsup(d, "causal_attention_bwd");
	return nseq ? d->be->causal_attention_bwd(d->b, q, k, v, out, lse, dout, nseq, T, heads,
						  kvheads, hd, scale, dq, dk, dv) : 0;
}

int kern_silu_mul_bwd(kern_dev *d, const float *gate, const float *up, const float *dout,
		      int64_t n, float *dgate, float *dup)
{
	if (n < 0 || (n && (!gate || !up || !dout || !dgate || !dup)))
		return -EINVAL;
	if (!d->be->silu_mul_bwd)
		return bwd_notsup(d, "silu_mul_bwd");
	return n ? d->be->silu_mul_bwd(d->b, gate, up, dout, n, dgate, dup) : 0;
}

int kern_linear_bwd(kern_dev *d, const float *dy, int64_t m, const kern_mat *w, int accumulate,
		    float *dx)
{
	if (!w || m < 0 || m > INT32_MAX || w->n <= 0 || w->k <= 0 || w->n > INT32_MAX || w->k > INT32_MAX ||
	    !w->data || (accumulate != 0 && accumulate != 1) ||
	    (w->dt != KERN_F32 && w->dt != KERN_F16 && w->dt != KERN_BF16) || (m && (!dy || !dx)))
		return -EINVAL;
	if (!m)
		return 0;
	if (!d->be->linear_bwd)
		return bwd_notsup(d, "linear_bwd");
	return d->be->linear_bwd(d->b, dy, m, w, accumulate, dx);
}

int kern_xent_lm(kern_dev *d, const float *x, const int32_t *tgt, int64_t m, int64_t n,
		 float scale, float *grad, float *loss)
{
	if (m < 0 || m > INT32_MAX || n <= 0 || n > INT32_MAX || !isfinite(scale) ||
	    (m && (!x || !tgt)))
		return -EINVAL;
	if (!d->be->xent_lm)
		return bwd_notsup(d, "xent_lm");
	if (!m) {
		float nan = NAN;
		return loss ? kern_copy_h2d(d, loss, &nan, 4) : 0;
	}
	return d->be->xent_lm(d->b, x, tgt, m, n, scale, grad, loss);
}

static int lora_shape_ok(int64_t m, int64_t k, int64_t n, int64_t r, float scale)
{
	return m >= 0 && k > 0 && n > 0 && r > 0 && m <= INT32_MAX && k <= INT32_MAX &&
	       n <= INT32_MAX && r <= INT32_MAX && isfinite(scale);
}

int kern_lora(kern_dev *d, const float *x, int64_t m, int64_t k, int64_t n, int64_t r,
	      const float *a, const float *b, float scale, float *xa, float *y)
{
	if (!lora_shape_ok(m, k, n, r, scale) || (m && (!x || !a || !b || !xa || !y)))
		return -EINVAL;
	if (!m)
		return 0;
	int rc = kern_gemm(d, 0, 1, m, r, k, 1.0f, x, a, 0.0f, xa);
	return rc ? rc : kern_gemm(d, 0, 1, m, n, r, scale, xa, b, 1.0f, y);
}

int kern_lora_bwd(kern_dev *d, const float *x, int64_t m, int64_t k, int64_t n, int64_t r,
		  const float *a, const float *b, const float *xa, const float *dy, float scale,
		  float *dxa, float *da, float *db, float *dx)
{
	int rc;
	if (!lora_shape_ok(m, k, n, r, scale) ||
	    (m && (!x || !a || !b || !xa || !dy || !dxa)) || !da || !db)
		return -EINVAL;
	/* dB = scale * dy^T . xa and dA = dxa^T . x: with no rows both are zero */
	if ((rc = kern_gemm(d, 0, 0, m, r, n, scale, dy, b, 0.0f, dxa)) < 0 ||
	    (rc = kern_gemm(d, 1, 0, n, r, m, scale, dy, xa, 0.0f, db)) < 0 ||
	    (rc = kern_gemm(d, 1, 0, r, k, m, 1.0f, dxa, x, 0.0f, da)) < 0)
		return rc;
	return dx && m ? kern_gemm(d, 0, 0, m, k, r, 1.0f, dxa, a, 1.0f, dx) : 0;
}

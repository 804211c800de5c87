/* kcpu_bwd.c — the CPU reference versions of a decoder's backward ops (kern.h, "backward ops
 * of a decoder"): RMSNorm, RoPE, training-time causal attention (forward with log-sum-exp and
 * backward), the SiLU gate, the input gradient through a frozen weight, and the language-model
 * cross-entropy. Plain loops in F32 (reductions of a row in double), split over threads with
 * kcpu_par where the work is large; every task writes disjoint outputs. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "kernels/cpu/kcpu_int.h"

/* ---- RMSNorm ---- */

typedef struct rms_ctx {
	const float *x, *w, *dy;
	int64_t dim;
	float eps;
	float *dx, *r;
} rms_ctx;

static int rms_rows(void *arg, int64_t lo, int64_t hi)
{
	rms_ctx *c = arg;
	int64_t dim = c->dim;
	for (int64_t i = lo; i < hi; i++) {
		const float *x = c->x + i * dim, *dy = c->dy + i * dim;
		double ss = 0, gx = 0;
		for (int64_t j = 0; j < dim; j++) {
			ss += (double)x[j] * x[j];
			gx += (double)dy[j] * c->w[j] * x[j];
		}
		double r = 1.0 / sqrt(ss / (double)dim + c->eps);
		/* dx_j = r g_j - r^3 x_j (g . x) / dim with g = dy * w */
		double k = r * r * r * gx / (double)dim;
		for (int64_t j = 0; j < dim; j++)
			c->dx[i * dim + j] = (float)(r * dy[j] * c->w[j] - k * x[j]);
		c->r[i] = (float)r;
	}
	return 0;
}

typedef struct rms_dw_ctx {
	const float *x, *dy, *r;
	int64_t m, dim;
	float *dw;
} rms_dw_ctx;

static int rms_cols(void *arg, int64_t lo, int64_t hi)
{
	rms_dw_ctx *c = arg;
	for (int64_t j = lo; j < hi; j++) {
		double s = 0;
		for (int64_t i = 0; i < c->m; i++)
			s += (double)c->dy[i * c->dim + j] * c->x[i * c->dim + j] * c->r[i];
		c->dw[j] = (float)s;
	}
	return 0;
}

int kcpu_rmsnorm_bwd(void *b, const float *x, const float *w, const float *dy, int64_t m,
			   int64_t dim, float eps, float *dx, float *dw)
{
	float *r = malloc((size_t)m * sizeof *r);
	if (!r)
		return -ENOMEM;
	rms_ctx c = {x, w, dy, dim, eps, dx, r};
	double work = 4.0 * (double)m * (double)dim;
	int rc = kcpu_par(b, m, work, rms_rows, &c);
	if (rc == 0 && dw) {
		rms_dw_ctx cw = {x, dy, r, m, dim, dw};
		rc = kcpu_par(b, dim, work, rms_cols, &cw);
	}
	free(r);
	return rc;
}

/* ---- RoPE ---- */

typedef struct rope_ctx {
	float *g;
	const int32_t *pos;
	int64_t heads, hd;
	float theta;
} rope_ctx;

static int rope_rows(void *arg, int64_t lo, int64_t hi)
{
	rope_ctx *c = arg;
	int64_t half = c->hd / 2;
	for (int64_t i = lo; i < hi; i++)
		for (int64_t j = 0; j < half; j++) {
			/* the forward's F32 angle (kcpu_rope), rotated back */
			float inv = 1.0f / powf(c->theta, (float)(2 * j) / (float)c->hd);
			float ang = (float)c->pos[i] * inv, cs = cosf(ang), sn = sinf(ang);
			for (int64_t h = 0; h < c->heads; h++) {
				float *r = c->g + (i * c->heads + h) * c->hd;
				float a = r[j], bb = r[j + half];
				r[j] = a * cs + bb * sn;
				r[j + half] = bb * cs - a * sn;
			}
		}
	return 0;
}

int kcpu_rope_bwd(void *b, float *g, const int32_t *pos, int64_t m, int64_t heads,
			int64_t hd, float theta)
{
	rope_ctx c = {g, pos, heads, hd, theta};
	return kcpu_par(b, m, 30.0 * (double)m * (double)hd * (double)heads, rope_rows, &c);
}

/* ---- causal attention (training) ----
 * One task per (sequence, KV head): it handles the query heads of that group, so dk and dv
 * of the group are summed inside one task and every output element has one writer. */

typedef struct cattn_ctx {
	const float *q, *k, *v, *out, *lse, *dout;
	int64_t T, heads, kvheads, hd;
	float scale;
	float *o, *l;              /* forward outputs */
	float *dq, *dk, *dv;       /* backward outputs */
} cattn_ctx;

static int cattn_fwd_range(void *arg, int64_t lo, int64_t hi)
{
	cattn_ctx *c = arg;
	int64_t T = c->T, H = c->heads, hd = c->hd, kvd = c->kvheads * hd;
	int64_t group = H / c->kvheads;
	float *sc = malloc((size_t)T * sizeof *sc);
	if (!sc)
		return -ENOMEM;
	for (int64_t t = lo; t < hi; t++) {
		int64_t s = t / c->kvheads, kvh = t % c->kvheads;
		for (int64_t h = kvh * group; h < (kvh + 1) * group; h++)
			for (int64_t i = 0; i < T; i++) {
				int64_t row = s * T + i;
				const float *q = c->q + (row * H + h) * hd;
				float mx = -INFINITY;
				for (int64_t j = 0; j <= i; j++) {
					sc[j] = kcpu_dot(q, c->k + (s * T + j) * kvd + kvh * hd, hd) *
						c->scale;
					mx = sc[j] > mx ? sc[j] : mx;
				}
				double sum = 0;
				for (int64_t j = 0; j <= i; j++) {
					sc[j] = expf(sc[j] - mx);
					sum += sc[j];
				}
				float *o = c->o + (row * H + h) * hd;
				memset(o, 0, (size_t)hd * sizeof *o);
				for (int64_t j = 0; j <= i; j++) {
					const float *v = c->v + (s * T + j) * kvd + kvh * hd;
					float p = (float)(sc[j] / sum);
					for (int64_t e = 0; e < hd; e++)
						o[e] += p * v[e];
				}
				c->l[row * H + h] = mx + (float)log(sum);
			}
	}
	free(sc);
	return 0;
}

int kcpu_causal_attention(void *b, const float *q, const float *k, const float *v,
				int64_t nseq, int64_t T, int64_t heads, int64_t kvheads, int64_t hd,
				float scale, float *out, float *lse)
{
	cattn_ctx c = {.q = q, .k = k, .v = v, .T = T, .heads = heads, .kvheads = kvheads,
		       .hd = hd, .scale = scale, .o = out, .l = lse};
	double work = (double)nseq * heads * hd * 2.0 * (double)T * (double)(T + 1) / 2.0;
	return kcpu_par(b, nseq * kvheads, work, cattn_fwd_range, &c);
}

/* Per query row i: P_ij = exp(q_i.k_j * scale - lse_i), D_i = dout_i . out_i,
 * dS_ij = P_ij (dout_i . v_j - D_i); dq_i = scale sum_j dS_ij k_j, dk_j += scale dS_ij q_i,
 * dv_j += P_ij dout_i. */
static int cattn_bwd_range(void *arg, int64_t lo, int64_t hi)
{
	cattn_ctx *c = arg;
	int64_t T = c->T, H = c->heads, hd = c->hd, kvd = c->kvheads * hd;
	int64_t group = H / c->kvheads;
	for (int64_t t = lo; t < hi; t++) {
		int64_t s = t / c->kvheads, kvh = t % c->kvheads;
		for (int64_t j = 0; j < T; j++) {
			memset(c->dk + (s * T + j) * kvd + kvh * hd, 0, (size_t)hd * 4);
			memset(c->dv + (s * T + j) * kvd + kvh * hd, 0, (size_t)hd * 4);
		}
		for (int64_t h = kvh * group; h < (kvh + 1) * group; h++)
			for (int64_t i = 0; i < T; i++) {
				int64_t row = s * T + i, qo = (row * H + h) * hd;
				const float *q = c->q + qo, *dout = c->dout + qo;
				float lse = c->lse[row * H + h];
				float D = kcpu_dot(dout, c->out + qo, hd);
				float *dq = c->dq + qo;
				memset(dq, 0, (size_t)hd * sizeof *dq);
				for (int64_t j = 0; j <= i; j++) {
					int64_t ko = (s * T + j) * kvd + kvh * hd;
					const float *kj = c->k + ko, *vj = c->v + ko;
					float pj = expf(kcpu_dot(q, kj, hd) * c->scale - lse);
					float ds = pj * (kcpu_dot(dout, vj, hd) - D) * c->scale;
					float *dkj = c->dk + ko, *dvj = c->dv + ko;
					for (int64_t e = 0; e < hd; e++) {
						dq[e] += ds * kj[e];
						dkj[e] += ds * q[e];
						dvj[e] += pj * dout[e];
					}
				}
			}
	}
	return 0;
}

int kcpu_causal_attention_bwd(void *b, const float *q, const float *k, const float *v,
				    const float *out, const float *lse, const float *dout,
				    int64_t nseq, int64_t T, int64_t heads, int64_t kvheads,
				    int64_t hd, float scale, float *dq, float *dk, float *dv)
{
	cattn_ctx c = {q, k, v, out, lse, dout, T, heads, kvheads, hd, scale, NULL, NULL,
		       dq, dk, dv};
	double work = (double)nseq * heads * hd * 6.0 * (double)T * (double)(T + 1) / 2.0;
	return kcpu_par(b, nseq * kvheads, work, cattn_bwd_range, &c);
}

/* ---- SiLU gate ---- */

int kcpu_silu_mul_bwd(void *b, const float *gate, const float *up, const float *dout,
			    int64_t n, float *dgate, float *dup)
{
	(void)b;
	for (int64_t i = 0; i < n; i++) {
		float g = gate[i], sg = 1.0f / (1.0f + expf(-g));
		float du = dout[i] * g * sg;
		dgate[i] = dout[i] * up[i] * sg * (1.0f + g * (1.0f - sg));
		dup[i] = du;
	}
	return 0;
}

/* ---- input gradient through a frozen weight ---- */

typedef struct lbwd_ctx {
	const float *dy;
	const kern_mat *w;
	int accumulate;
	float *dx;
} lbwd_ctx;

/* rows lo..hi of dx; each weight row is converted to F32 once per task */
static int lbwd_rows(void *arg, int64_t lo, int64_t hi)
{
	lbwd_ctx *c = arg;
	int64_t n = c->w->n, k = c->w->k;
	float *wr = malloc((size_t)k * sizeof *wr);
	if (!wr)
		return -ENOMEM;
	if (!c->accumulate)
		memset(c->dx + lo * k, 0, (size_t)(hi - lo) * (size_t)k * sizeof *c->dx);
	for (int64_t o = 0; o < n; o++) {
		kcpu_row_f32(c->w, o, wr);
		for (int64_t i = lo; i < hi; i++) {
			float g = c->dy[i * n + o];
			float *dx = c->dx + i * k;
			if (g != 0.0f)
				for (int64_t j = 0; j < k; j++)
					dx[j] += g * wr[j];
		}
	}
	free(wr);
	return 0;
}

int kcpu_linear_bwd(void *b, const float *dy, int64_t m, const kern_mat *w,
			  int accumulate, float *dx)
{
	lbwd_ctx c = {dy, w, accumulate, dx};
	return kcpu_par(b, m, 2.0 * (double)m * (double)w->n * (double)w->k, lbwd_rows, &c);
}

/* ---- language-model cross-entropy ---- */

typedef struct xlm_ctx {
	const float *x;
	const int32_t *tgt;
	int64_t n;
	float gscale;              /* scale / count */
	float *grad;
	double *rowloss;
} xlm_ctx;

static int xlm_rows(void *arg, int64_t lo, int64_t hi)
{
	xlm_ctx *c = arg;
	int64_t n = c->n;
	for (int64_t i = lo; i < hi; i++) {
		const float *r = c->x + i * n;
		int32_t t = c->tgt[i];
		if (t == KERN_IGNORE_INDEX) {
			c->rowloss[i] = 0;
			if (c->grad)
				memset(c->grad + i * n, 0, (size_t)n * sizeof *c->grad);
			continue;
		}
		float mx = r[0];
		for (int64_t j = 1; j < n; j++)
			mx = r[j] > mx ? r[j] : mx;
		double s = 0;
		for (int64_t j = 0; j < n; j++)
			s += exp((double)r[j] - mx);
		double ls = log(s);
		c->rowloss[i] = -((double)r[t] - mx - ls);
		if (c->grad)
			for (int64_t j = 0; j < n; j++)
				c->grad[i * n + j] = ((float)exp((double)r[j] - mx - ls) -
						      (j == t ? 1.0f : 0.0f)) * c->gscale;
	}
	return 0;
}

int kcpu_xent_lm(void *b, const float *x, const int32_t *tgt, int64_t m, int64_t n,
		       float scale, float *grad, float *loss)
{
	int64_t cnt = 0;
	for (int64_t i = 0; i < m; i++) {
		if (tgt[i] == KERN_IGNORE_INDEX)
			continue;
		if (tgt[i] < 0 || tgt[i] >= n)
			return -EINVAL;
		cnt++;
	}
	double *rl = malloc((size_t)m * sizeof *rl);
	if (!rl)
		return -ENOMEM;
	xlm_ctx c = {x, tgt, n, cnt ? scale / (float)cnt : 0.0f, grad, rl};
	int rc = kcpu_par(b, m, 3.0 * (double)m * (double)n, xlm_rows, &c);
	if (rc == 0 && loss) {
		double s = 0;
		for (int64_t i = 0; i < m; i++)
			s += rl[i];
		loss[0] = cnt ? (float)(s / (double)cnt) : NAN;
	}
	free(rl);
	return rc;
}

/* test_kern_bwd.c — the backward ops of a decoder (kern_rmsnorm_bwd, kern_rope_bwd,
 * kern_causal_attention and its backward, kern_silu_mul_bwd, kern_linear_bwd, kern_xent_lm,
 * kern_lora and kern_lora_bwd) on the CPU backend. Each forward is written again here in double
 * precision and checked against the kern forward; each backward is checked against central
 * finite differences of that double forward, for L = sum(dy * forward) with a random dy (the
 * cross-entropy: L = its mean loss). Outputs are poisoned with NaN before every call, so an
 * element an op forgets to write fails. Then the CUDA device (skipped without a GPU) against
 * the CPU with poisoned outputs for the ops it runs, and -ENOTSUP for those it does not.
 *
 * Tolerance: the differences are taken in double with h = 1e-4 on O(1) inputs, so their own
 * error (truncation ~h^2, rounding ~1e-16/h) is below 1e-8; what remains is the op's F32
 * arithmetic: sums of at most a few hundred terms (relative error ~1e-6) and cancellations
 * (softmax minus one-hot, the two terms of the RMSNorm gradient, the attention's dP - D) that
 * can cost two or three digits against the largest gradient element. Hence rtol 1e-3 with an
 * atol of 1e-4 times the largest |gradient|: a wrong term, sign, scale or group moves elements
 * by far more. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "tests/t.h"
#define KT_SEED 4242
#include "tests/kernels/kt.h"

#define FD_H 1e-4

static kern_dev *cpu(void)
{
	if (!C)
		kern_dev_open("cpu", 2, &C);
	return C;
}

static float *nanbuf(size_t n)
{
	float *p = malloc(n * 4 + 4);
	for (size_t i = 0; i < n; i++)
		p[i] = NAN;
	return p;
}

static double *to_d(const float *p, size_t n)
{
	double *d = malloc(n * sizeof *d + 8);
	for (size_t i = 0; i < n; i++)
		d[i] = p[i];
	return d;
}

static double dotd(const double *a, const float *b, size_t n)
{
	double s = 0;
	for (size_t i = 0; i < n; i++)
		s += a[i] * b[i];
	return s;
}

/* central differences of L(ctx) in each element of p[n] (double, restored) into g (F32) */
static void fd(double (*L)(void *), void *ctx, double *p, size_t n, float *g)
{
	for (size_t i = 0; i < n; i++) {
		double v = p[i];
		p[i] = v + FD_H;
		double lp = L(ctx);
		p[i] = v - FD_H;
		double lm = L(ctx);
		p[i] = v;
		g[i] = (float)((lp - lm) / (2 * FD_H));
	}
}

/* the gradient check: rtol 1e-3, atol 1e-4 * max |want| (see the file comment) */
static int grad_ok(const float *got, const float *want, size_t n, const char *what)
{
	double mx = 0;
	for (size_t i = 0; i < n; i++)
		mx = fabs(want[i]) > mx ? fabs(want[i]) : mx;
	return close_f(got, want, n, 1e-4 * mx + 1e-7, 1e-3, what);
}

/* ---- RMSNorm ---- */

typedef struct rms_t {
	int64_t m, dim;
	double *x, *w, eps;
	const float *dy;
} rms_t;

static void rms_fwd(const rms_t *c, double *y)
{
	for (int64_t i = 0; i < c->m; i++) {
		double ss = 0;
		for (int64_t j = 0; j < c->dim; j++)
			ss += c->x[i * c->dim + j] * c->x[i * c->dim + j];
		double r = 1 / sqrt(ss / c->dim + c->eps);
		for (int64_t j = 0; j < c->dim; j++)
			y[i * c->dim + j] = c->x[i * c->dim + j] * r * c->w[j];
	}
}

static double rms_L(void *arg)
{
	rms_t *c = arg;
	size_t n = (size_t)(c->m * c->dim);
	double *y = malloc(n * sizeof *y);
	rms_fwd(c, y);
	double s = dotd(y, c->dy, n);
	free(y);
	return s;
}

static void test_rmsnorm_bwd(void)
{
	kern_dev *d = cpu();
	int64_t shapes[][2] = {{1, 1}, {3, 7}, {5, 64}, {2, 256}};
	for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
		int64_t m = shapes[s][0], dim = shapes[s][1], n = m * dim;
		float *x = rnd(n, 2), *w = rnd(dim, 1.5f), *dy = rnd(n, 1);
		float *y = nanbuf(n), *dx = nanbuf(n), *dw = nanbuf(dim);
		float *fx = malloc(n * 4 + 4), *fw = malloc(dim * 4 + 4), *yw = malloc(n * 4 + 4);
		rms_t c = {m, dim, to_d(x, n), to_d(w, dim), 1e-5, dy};
		double *yd = malloc(n * sizeof *yd);
		rms_fwd(&c, yd);
		for (int64_t i = 0; i < n; i++)
			yw[i] = (float)yd[i];
		T_EQ_INT(kern_rmsnorm(d, x, w, m, dim, 1e-5f, y), 0);
		T_CHECK(close_f(y, yw, n, 1e-6, 1e-5, "rmsnorm forward"));
		T_EQ_INT(kern_rmsnorm_bwd(d, x, w, dy, m, dim, 1e-5f, dx, dw), 0);
		fd(rms_L, &c, c.x, n, fx);
		fd(rms_L, &c, c.w, dim, fw);
		char what[64];
		snprintf(what, sizeof what, "rmsnorm dx %lldx%lld", (long long)m, (long long)dim);
		T_CHECK(grad_ok(dx, fx, n, what));
		snprintf(what, sizeof what, "rmsnorm dw %lldx%lld", (long long)m, (long long)dim);
		T_CHECK(grad_ok(dw, fw, dim, what));
		/* dw NULL: dx alone */
		for (int64_t i = 0; i < n; i++)
			dx[i] = NAN;
		T_EQ_INT(kern_rmsnorm_bwd(d, x, w, dy, m, dim, 1e-5f, dx, NULL), 0);
		T_CHECK(grad_ok(dx, fx, n, "rmsnorm dx without dw"));
		free(x); free(w); free(dy); free(y); free(dx); free(dw); free(fx); free(fw); free(yw);
		free(c.x); free(c.w); free(yd);
	}
	float one = 1, g = 0;
	T_EQ_INT(kern_rmsnorm_bwd(d, &one, &one, &one, 1, 0, 1e-5f, &g, NULL), -EINVAL);
	T_EQ_INT(kern_rmsnorm_bwd(d, &one, &one, &one, 1, 1, -1.0f, &g, NULL), -EINVAL);
	T_EQ_INT(kern_rmsnorm_bwd(d, NULL, &one, &one, 1, 1, 1e-5f, &g, NULL), -EINVAL);
}

/* ---- RoPE ---- */

typedef struct rope_t {
	int64_t m, heads, hd;
	const int32_t *pos;
	float theta;
	double *x;
	const float *dy;
} rope_t;

static double rope_L(void *arg)
{
	rope_t *c = arg;
	int64_t half = c->hd / 2;
	double s = 0;
	for (int64_t i = 0; i < c->m; i++)
		for (int64_t j = 0; j < half; j++) {
			/* the angle as kern_rope forms it (F32), then exact trigonometry */
			float inv = 1.0f / powf(c->theta, (float)(2 * j) / (float)c->hd);
			double ang = (float)c->pos[i] * inv, cs = cos(ang), sn = sin(ang);
			for (int64_t h = 0; h < c->heads; h++) {
				int64_t o = (i * c->heads + h) * c->hd;
				double a = c->x[o + j], b = c->x[o + j + half];
				s += c->dy[o + j] * (a * cs - b * sn) + c->dy[o + j + half] * (b * cs + a * sn);
			}
		}
	return s;
}

static void test_rope_bwd(void)
{
	kern_dev *d = cpu();
	int32_t pos[] = {0, 1, 17, 4095, 131071, 500000, 2000000};
	int64_t m = sizeof pos / sizeof pos[0];
	float thetas[] = {10000.0f, 500000.0f};
	int64_t cfg[][2] = {{1, 2}, {3, 8}, {2, 64}};
	for (size_t t = 0; t < 2; t++)
		for (size_t s = 0; s < sizeof cfg / sizeof cfg[0]; s++) {
			int64_t heads = cfg[s][0], hd = cfg[s][1], n = m * heads * hd;
			float *x = rnd(n, 1), *dy = rnd(n, 1), *g = malloc(n * 4 + 4);
			float *fx = malloc(n * 4 + 4), *xr = malloc(n * 4 + 4);
			memcpy(g, dy, n * 4);
			rope_t c = {m, heads, hd, pos, thetas[t], to_d(x, n), dy};
			T_EQ_INT(kern_rope_bwd(d, g, pos, m, heads, hd, thetas[t]), 0);
			fd(rope_L, &c, c.x, n, fx);
			char what[80];
			snprintf(what, sizeof what, "rope dx theta %g heads %lld hd %lld",
				 (double)thetas[t], (long long)heads, (long long)hd);
			T_CHECK(grad_ok(g, fx, n, what));
			/* the backward undoes the forward (a rotation): x back after both */
			memcpy(xr, x, n * 4);
			T_EQ_INT(kern_rope(d, xr, pos, m, heads, hd, thetas[t]), 0);
			T_EQ_INT(kern_rope_bwd(d, xr, pos, m, heads, hd, thetas[t]), 0);
			T_CHECK(close_f(xr, x, n, 1e-6, 1e-5, "rope then rope_bwd"));
			free(x); free(dy); free(g); free(fx); free(xr); free(c.x);
		}
	float g[4] = {0};
	T_EQ_INT(kern_rope_bwd(d, g, pos, 1, 1, 3, 10000.0f), -EINVAL);
	T_EQ_INT(kern_rope_bwd(d, g, pos, 1, 1, 4, 0.0f), -EINVAL);
}

/* ---- causal attention ---- */

typedef struct att_t {
	int64_t nseq, T, H, KV, hd;
	double scale;
	double *q, *k, *v;
	const float *dy;
} att_t;

static void att_fwd(const att_t *c, double *out, double *lse)
{
	int64_t g = c->H / c->KV, kvd = c->KV * c->hd;
	double *sc = malloc((size_t)c->T * sizeof *sc);
	for (int64_t s = 0; s < c->nseq; s++)
		for (int64_t i = 0; i < c->T; i++)
			for (int64_t h = 0; h < c->H; h++) {
				int64_t row = s * c->T + i, kvh = h / g;
				const double *q = c->q + (row * c->H + h) * c->hd;
				double mx = -INFINITY, sum = 0;
				for (int64_t j = 0; j <= i; j++) {
					const double *k = c->k + (s * c->T + j) * kvd + kvh * c->hd;
					double dt = 0;
					for (int64_t e = 0; e < c->hd; e++)
						dt += q[e] * k[e];
					sc[j] = dt * c->scale;
					mx = sc[j] > mx ? sc[j] : mx;
				}
				for (int64_t j = 0; j <= i; j++)
					sum += exp(sc[j] - mx);
				double *o = out + (row * c->H + h) * c->hd;
				for (int64_t e = 0; e < c->hd; e++)
					o[e] = 0;
				for (int64_t j = 0; j <= i; j++) {
					const double *v = c->v + (s * c->T + j) * kvd + kvh * c->hd;
					double p = exp(sc[j] - mx) / sum;
					for (int64_t e = 0; e < c->hd; e++)
						o[e] += p * v[e];
				}
				if (lse)
					lse[row * c->H + h] = mx + log(sum);
			}
	free(sc);
}

static double att_L(void *arg)
{
	att_t *c = arg;
	size_t n = (size_t)(c->nseq * c->T * c->H * c->hd);
	double *o = malloc(n * sizeof *o);
	att_fwd(c, o, NULL);
	double s = dotd(o, c->dy, n);
	free(o);
	return s;
}

static void test_attention_bwd(void)
{
	kern_dev *d = cpu();
	/* nseq, T, heads, kvheads, hd: groups of 1, 2 and 4 query heads per KV head */
	int64_t cfg[][5] = {{1, 1, 1, 1, 4}, {2, 5, 2, 2, 8}, {2, 6, 4, 2, 8}, {1, 7, 8, 2, 4},
			    {3, 4, 4, 1, 16}};
	for (size_t s = 0; s < sizeof cfg / sizeof cfg[0]; s++) {
		int64_t nseq = cfg[s][0], T = cfg[s][1], H = cfg[s][2], KV = cfg[s][3], hd = cfg[s][4];
		int64_t nq = nseq * T * H * hd, nk = nseq * T * KV * hd, nl = nseq * T * H;
		float scale = 1.0f / sqrtf((float)hd) * 1.7f;
		float *q = rnd(nq, 1.5f), *k = rnd(nk, 1.5f), *v = rnd(nk, 1), *dy = rnd(nq, 1);
		float *out = nanbuf(nq), *lse = nanbuf(nl), *dq = nanbuf(nq), *dk = nanbuf(nk),
		      *dv = nanbuf(nk);
		float *fq = malloc(nq * 4 + 4), *fk = malloc(nk * 4 + 4), *fv = malloc(nk * 4 + 4);
		float *ow = malloc(nq * 4 + 4), *lw = malloc(nl * 4 + 4);
		att_t c = {nseq, T, H, KV, hd, scale, to_d(q, nq), to_d(k, nk), to_d(v, nk), dy};
		double *od = malloc(nq * sizeof *od), *ld = malloc(nl * sizeof *ld);
		att_fwd(&c, od, ld);
		for (int64_t i = 0; i < nq; i++)
			ow[i] = (float)od[i];
		for (int64_t i = 0; i < nl; i++)
			lw[i] = (float)ld[i];
		char what[96];
		snprintf(what, sizeof what, "attention nseq %lld T %lld heads %lld/%lld hd %lld",
			 (long long)nseq, (long long)T, (long long)H, (long long)KV, (long long)hd);
		T_EQ_INT(kern_causal_attention(d, q, k, v, nseq, T, H, KV, hd, scale, out, lse), 0);
		T_CHECK(close_f(out, ow, nq, 1e-6, 1e-5, what));
		T_CHECK(close_f(lse, lw, nl, 1e-6, 1e-5, what));
		/* the same causal attention as the serving op over a cache of one sequence */
		if (nseq == 1) {
			int32_t *pos = malloc(T * 4);
			float *o2 = nanbuf(nq);
			for (int64_t i = 0; i < T; i++)
				pos[i] = (int32_t)i;
			T_EQ_INT(kern_attention(d, q, k, v, pos, T, H, KV, hd, T, scale, o2), 0);
			T_CHECK(close_f(o2, out, nq, 1e-6, 1e-5, "attention vs kern_attention"));
			free(pos); free(o2);
		}
		T_EQ_INT(kern_causal_attention_bwd(d, q, k, v, out, lse, dy, nseq, T, H, KV, hd, scale,
						   dq, dk, dv), 0);
		fd(att_L, &c, c.q, nq, fq);
		fd(att_L, &c, c.k, nk, fk);
		fd(att_L, &c, c.v, nk, fv);
		T_CHECK(grad_ok(dq, fq, nq, what));
		T_CHECK(grad_ok(dk, fk, nk, what));
		T_CHECK(grad_ok(dv, fv, nk, what));
		/* masked positions: a gradient on the first token of each sequence alone reaches only
		 * that token's k and v (later tokens are masked from it), exactly zero elsewhere */
		float *dy0 = calloc(nq + 1, 4);
		for (int64_t sq = 0; sq < nseq; sq++)
			for (int64_t e = 0; e < H * hd; e++)
				dy0[sq * T * H * hd + e] = dy[sq * T * H * hd + e];
		for (int64_t i = 0; i < nk; i++)
			dk[i] = dv[i] = NAN;
		T_EQ_INT(kern_causal_attention_bwd(d, q, k, v, out, lse, dy0, nseq, T, H, KV, hd, scale,
						   dq, dk, dv), 0);
		int masked_zero = 1, first_set = 0;
		for (int64_t sq = 0; sq < nseq; sq++)
			for (int64_t t = 0; t < T; t++)
				for (int64_t e = 0; e < KV * hd; e++) {
					int64_t o = (sq * T + t) * KV * hd + e;
					if (t > 0 && (dk[o] != 0 || dv[o] != 0))
						masked_zero = 0;
					if (t == 0 && dv[o] != 0)
						first_set = 1;
				}
		T_CHECK(masked_zero);
		T_CHECK(first_set);
		free(dy0);
		free(q); free(k); free(v); free(dy); free(out); free(lse); free(dq); free(dk); free(dv);
		free(fq); free(fk); free(fv); free(ow); free(lw); free(c.q); free(c.k); free(c.v);
		free(od); free(ld);
	}
	float x[4] = {0};
	T_EQ_INT(kern_causal_attention(d, x, x, x, 1, 1, 3, 2, 1, 1.0f, x, x), -EINVAL);
	T_EQ_INT(kern_causal_attention_bwd(d, x, x, x, x, x, x, 1, 0, 1, 1, 1, 1.0f, x, x, x),
		 -EINVAL);
}

/* ---- SiLU gate ---- */

typedef struct silu_t {
	int64_t n;
	double *g, *u;
	const float *dy;
} silu_t;

static double silu_L(void *arg)
{
	silu_t *c = arg;
	double s = 0;
	for (int64_t i = 0; i < c->n; i++)
		s += c->dy[i] * c->g[i] / (1 + exp(-c->g[i])) * c->u[i];
	return s;
}

static void test_silu_mul_bwd(void)
{
	kern_dev *d = cpu();
	int64_t n = 333;
	float *g = rnd(n, 6), *u = rnd(n, 2), *dy = rnd(n, 1);
	float *dg = nanbuf(n), *du = nanbuf(n), *fg = malloc(n * 4 + 4), *fu = malloc(n * 4 + 4);
	silu_t c = {n, to_d(g, n), to_d(u, n), dy};
	T_EQ_INT(kern_silu_mul_bwd(d, g, u, dy, n, dg, du), 0);
	fd(silu_L, &c, c.g, n, fg);
	fd(silu_L, &c, c.u, n, fu);
	T_CHECK(grad_ok(dg, fg, n, "silu_mul dgate"));
	T_CHECK(grad_ok(du, fu, n, "silu_mul dup"));
	T_EQ_INT(kern_silu_mul_bwd(d, g, u, dy, -1, dg, du), -EINVAL);
	free(g); free(u); free(dy); free(dg); free(du); free(fg); free(fu); free(c.g); free(c.u);
}

/* ---- input gradient through a frozen weight ---- */

typedef struct lin_t {
	int64_t m, n, k;
	double *x;
	const float *w;    /* the weight as F32 (already rounded to its dtype) */
	const float *dy;
} lin_t;

static double lin_L(void *arg)
{
	lin_t *c = arg;
	double s = 0;
	for (int64_t i = 0; i < c->m; i++)
		for (int64_t o = 0; o < c->n; o++) {
			double y = 0;
			for (int64_t j = 0; j < c->k; j++)
				y += c->x[i * c->k + j] * c->w[o * c->k + j];
			s += c->dy[i * c->n + o] * y;
		}
	return s;
}

/* a weight in dtype dt (F32, F16, BF16) from w, and w rounded to it in place */
static void *as_dtype(float *w, int64_t n, kern_dtype dt)
{
	void *p = malloc(n * 4 + 4);
	for (int64_t i = 0; i < n; i++) {
		if (dt == KERN_BF16) {
			((uint16_t *)p)[i] = kern_f32_to_bf16(w[i]);
			w[i] = kern_bf16_to_f32(((uint16_t *)p)[i]);
		} else if (dt == KERN_F16) {
			((uint16_t *)p)[i] = kern_f32_to_f16(w[i]);
			w[i] = kern_f16_to_f32(((uint16_t *)p)[i]);
		} else {
			((float *)p)[i] = w[i];
		}
	}
	return p;
}

static void test_linear_bwd(void)
{
	kern_dev *d = cpu();
	kern_dtype dts[] = {KERN_F32, KERN_F16, KERN_BF16};
	int64_t shapes[][3] = {{1, 1, 1}, {3, 5, 7}, {9, 33, 20}};
	for (size_t t = 0; t < 3; t++)
		for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
			int64_t m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
			float *x = rnd(m * k, 1), *w = rnd(n * k, 1), *dy = rnd(m * n, 1);
			void *wd = as_dtype(w, n * k, dts[t]);
			kern_mat W = {.dt = dts[t], .n = n, .k = k, .data = wd};
			float *dx = nanbuf(m * k), *fx = malloc(m * k * 4 + 4);
			float *y = nanbuf(m * n), *yw = malloc(m * n * 4 + 4);
			lin_t c = {m, n, k, to_d(x, m * k), w, dy};
			/* the frozen weight as the forward product reads it */
			T_EQ_INT(kern_linear(d, x, m, &W, NULL, KERN_ACT_NONE, y), 0);
			for (int64_t i = 0; i < m; i++)
				for (int64_t o = 0; o < n; o++) {
					double a = 0;
					for (int64_t j = 0; j < k; j++)
						a += (double)x[i * k + j] * w[o * k + j];
					yw[i * n + o] = (float)a;
				}
			T_CHECK(close_f(y, yw, m * n, 1e-5, 1e-4, "linear forward"));
			T_EQ_INT(kern_linear_bwd(d, dy, m, &W, 0, dx), 0);
			fd(lin_L, &c, c.x, m * k, fx);
			char what[80];
			snprintf(what, sizeof what, "linear_bwd %s %lldx%lldx%lld", kern_dtype_name(dts[t]),
				 (long long)m, (long long)n, (long long)k);
			T_CHECK(grad_ok(dx, fx, m * k, what));
			/* accumulate: dx += dy . W on top of what is there */
			float *base = rnd(m * k, 1), *acc = malloc(m * k * 4 + 4);
			memcpy(dx, base, m * k * 4);
			T_EQ_INT(kern_linear_bwd(d, dy, m, &W, 1, dx), 0);
			for (int64_t i = 0; i < m * k; i++)
				acc[i] = base[i] + fx[i];
			T_CHECK(grad_ok(dx, acc, m * k, "linear_bwd accumulate"));
			free(x); free(w); free(dy); free(wd); free(dx); free(fx); free(y); free(yw);
			free(c.x); free(base); free(acc);
		}
	int8_t q[4] = {1, 2, 3, 4};
	float sc[2] = {1, 1}, g[4] = {0}, dx[4];
	kern_mat W8 = {.dt = KERN_I8, .n = 2, .k = 2, .data = q, .scales = sc};
	T_EQ_INT(kern_linear_bwd(d, g, 2, &W8, 0, dx), -EINVAL);
	kern_mat Wf = {.dt = KERN_F32, .n = 2, .k = 2, .data = g};
	T_EQ_INT(kern_linear_bwd(d, g, 2, &Wf, 2, dx), -EINVAL);
}

/* ---- cross-entropy ---- */

typedef struct xent_t {
	int64_t m, n;
	double *x;
	const int32_t *tgt;
} xent_t;

static double xent_L(void *arg)
{
	xent_t *c = arg;
	double s = 0;
	int cnt = 0;
	for (int64_t i = 0; i < c->m; i++) {
		if (c->tgt[i] == KERN_IGNORE_INDEX)
			continue;
		const double *r = c->x + i * c->n;
		double mx = r[0], z = 0;
		for (int64_t j = 1; j < c->n; j++)
			mx = r[j] > mx ? r[j] : mx;
		for (int64_t j = 0; j < c->n; j++)
			z += exp(r[j] - mx);
		s += -(r[c->tgt[i]] - mx - log(z));
		cnt++;
	}
	return cnt ? s / cnt : NAN;
}

static void test_xent_lm(void)
{
	kern_dev *d = cpu();
	int64_t m = 9, n = 37;
	int32_t tgt[9] = {3, -100, 0, 36, -100, 12, 12, -100, 5};
	float *x = rnd(m * n, 4), *g = nanbuf(m * n), *fx = malloc(m * n * 4 + 4), loss = NAN;
	xent_t c = {m, n, to_d(x, m * n), tgt};
	T_EQ_INT(kern_xent_lm(d, x, tgt, m, n, 1.0f, g, &loss), 0);
	float lw = (float)xent_L(&c);
	T_CHECK(close_f(&loss, &lw, 1, 1e-6, 1e-5, "xent_lm loss"));
	fd(xent_L, &c, c.x, m * n, fx);
	T_CHECK(grad_ok(g, fx, m * n, "xent_lm grad"));
	int ignored_zero = 1;
	for (int64_t i = 0; i < m; i++)
		for (int64_t j = 0; j < n && tgt[i] == KERN_IGNORE_INDEX; j++)
			ignored_zero &= g[i * n + j] == 0.0f;
	T_CHECK(ignored_zero);
	/* scale multiplies the gradient; no loss wanted */
	float *g2 = nanbuf(m * n), *want = malloc(m * n * 4 + 4);
	T_EQ_INT(kern_xent_lm(d, x, tgt, m, n, 0.25f, g2, NULL), 0);
	for (int64_t i = 0; i < m * n; i++)
		want[i] = fx[i] * 0.25f;
	T_CHECK(grad_ok(g2, want, m * n, "xent_lm scaled grad"));
	/* every row ignored: NaN loss (a mean over nothing, as PyTorch), zero gradient */
	int32_t none[3] = {-100, -100, -100};
	for (int64_t i = 0; i < 3 * n; i++)
		g[i] = NAN;
	loss = 0;
	T_EQ_INT(kern_xent_lm(d, x, none, 3, n, 1.0f, g, &loss), 0);
	T_CHECK(isnan(loss));
	int allz = 1;
	for (int64_t i = 0; i < 3 * n; i++)
		allz &= g[i] == 0.0f;
	T_CHECK(allz);
	int32_t bad[2] = {1, 37}, neg[2] = {-1, 0};
	T_EQ_INT(kern_xent_lm(d, x, bad, 2, n, 1.0f, g, &loss), -EINVAL);
	T_EQ_INT(kern_xent_lm(d, x, neg, 2, n, 1.0f, g, &loss), -EINVAL);
	T_EQ_INT(kern_xent_lm(d, x, tgt, 2, n, NAN, g, &loss), -EINVAL);
	free(x); free(g); free(fx); free(c.x); free(g2); free(want);
}

/* ---- LoRA ---- */

typedef struct lora_t {
	int64_t m, k, n, r;
	double *x, *a, *b, scale;
	const float *dy;
} lora_t;

static double lora_L(void *arg)
{
	lora_t *c = arg;
	double s = 0, *xa = malloc((size_t)c->r * sizeof *xa);
	for (int64_t i = 0; i < c->m; i++) {
		for (int64_t p = 0; p < c->r; p++) {
			xa[p] = 0;
			for (int64_t j = 0; j < c->k; j++)
				xa[p] += c->x[i * c->k + j] * c->a[p * c->k + j];
		}
		for (int64_t o = 0; o < c->n; o++) {
			double y = 0;
			for (int64_t p = 0; p < c->r; p++)
				y += xa[p] * c->b[o * c->r + p];
			s += c->dy[i * c->n + o] * c->scale * y;
		}
	}
	free(xa);
	return s;
}

static void test_lora(void)
{
	kern_dev *d = cpu();
	int64_t shapes[][4] = {{1, 1, 1, 1}, {5, 12, 7, 4}, {8, 16, 24, 8}};
	for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
		int64_t m = shapes[s][0], k = shapes[s][1], n = shapes[s][2], r = shapes[s][3];
		float scale = 16.0f / (float)r;
		float *x = rnd(m * k, 1), *a = rnd(r * k, 0.5f), *b = rnd(n * r, 0.5f);
		float *dy = rnd(m * n, 1), *y0 = rnd(m * n, 1), *y = malloc(m * n * 4 + 4);
		float *xa = nanbuf(m * r), *dxa = nanbuf(m * r), *da = nanbuf(r * k), *db = nanbuf(n * r);
		float *dx0 = rnd(m * k, 1), *dx = malloc(m * k * 4 + 4), *yw = malloc(m * n * 4 + 4);
		float *fx = malloc(m * k * 4 + 4), *fa = malloc(r * k * 4 + 4), *fb = malloc(n * r * 4 + 4);
		lora_t c = {m, k, n, r, to_d(x, m * k), to_d(a, r * k), to_d(b, n * r), scale, dy};
		memcpy(y, y0, m * n * 4);
		T_EQ_INT(kern_lora(d, x, m, k, n, r, a, b, scale, xa, y), 0);
		for (int64_t i = 0; i < m; i++)
			for (int64_t o = 0; o < n; o++) {
				double acc = 0;
				for (int64_t p = 0; p < r; p++) {
					double t = 0;
					for (int64_t j = 0; j < k; j++)
						t += (double)x[i * k + j] * a[p * k + j];
					acc += t * b[o * r + p];
				}
				yw[i * n + o] = (float)(y0[i * n + o] + scale * acc);
			}
		T_CHECK(close_f(y, yw, m * n, 1e-5, 1e-4, "lora forward"));
		memcpy(dx, dx0, m * k * 4);
		T_EQ_INT(kern_lora_bwd(d, x, m, k, n, r, a, b, xa, dy, scale, dxa, da, db, dx), 0);
		fd(lora_L, &c, c.x, m * k, fx);
		fd(lora_L, &c, c.a, r * k, fa);
		fd(lora_L, &c, c.b, n * r, fb);
		for (int64_t i = 0; i < m * k; i++)
			fx[i] += dx0[i];   /* dx accumulates */
		char what[64];
		snprintf(what, sizeof what, "lora %lldx%lldx%lld r %lld", (long long)m, (long long)k,
			 (long long)n, (long long)r);
		T_CHECK(grad_ok(dx, fx, m * k, what));
		T_CHECK(grad_ok(da, fa, r * k, what));
		T_CHECK(grad_ok(db, fb, n * r, what));
		free(x); free(a); free(b); free(dy); free(y0); free(y); free(xa); free(dxa); free(da);
		free(db); free(dx0); free(dx); free(yw); free(fx); free(fa); free(fb);
		free(c.x); free(c.a); free(c.b);
	}
	float z[4] = {0};
	T_EQ_INT(kern_lora(d, z, 1, 1, 1, 0, z, z, 1.0f, z, z), -EINVAL);
	T_EQ_INT(kern_lora_bwd(d, z, 1, 1, 1, 1, z, z, z, z, INFINITY, z, z, z, z), -EINVAL);
}

/* ---- CUDA against the CPU ---- */

static void test_cuda(void)
{
	if (!open_devs())
		T_SKIP("no GPU");
	/* LoRA products (kern_gemm: cuBLAS) and the F32 frozen-weight gradient */
	int64_t m = 37, k = 64, n = 48, r = 8;
	float scale = 2.0f;
	float *x = rnd(m * k, 1), *a = rnd(r * k, 0.5f), *b = rnd(n * r, 0.5f), *dy = rnd(m * n, 1);
	float *y = rnd(m * n, 1), *dx = rnd(m * k, 1), *w = rnd(n * k, 1);
	float *gx = up(x, m * k * 4), *ga = up(a, r * k * 4), *gb = up(b, n * r * 4);
	float *gdy = up(dy, m * n * 4), *gy = up(y, m * n * 4), *gdx = up(dx, m * k * 4);
	float *gw = up(w, n * k * 4);
	float *gxa = poisoned(m * r * 4), *gdxa = poisoned(m * r * 4), *gda = poisoned(r * k * 4);
	float *gdb = poisoned(n * r * 4), *glx = poisoned(m * k * 4);
	float *xa = nanbuf(m * r), *dxa = nanbuf(m * r), *da = nanbuf(r * k), *db = nanbuf(n * r);
	float *lx = nanbuf(m * k);
	T_EQ_INT(kern_lora(C, x, m, k, n, r, a, b, scale, xa, y), 0);
	T_EQ_INT(kern_lora_bwd(C, x, m, k, n, r, a, b, xa, dy, scale, dxa, da, db, dx), 0);
	T_EQ_INT(kern_lora(G, gx, m, k, n, r, ga, gb, scale, gxa, gy), 0);
	T_EQ_INT(kern_lora_bwd(G, gx, m, k, n, r, ga, gb, gxa, gdy, scale, gdxa, gda, gdb, gdx), 0);
	kern_mat W = {.dt = KERN_F32, .n = n, .k = k, .data = w};
	kern_mat GW = {.dt = KERN_F32, .n = n, .k = k, .data = gw};
	T_EQ_INT(kern_linear_bwd(C, dy, m, &W, 0, lx), 0);
	T_EQ_INT(kern_linear_bwd(G, gdy, m, &GW, 0, glx), 0);
	struct { float *g, *c; int64_t n; const char *what; } cmp[] = {
		{gxa, xa, m * r, "cuda lora xa"}, {gy, y, m * n, "cuda lora y"},
		{gdxa, dxa, m * r, "cuda lora dxa"}, {gda, da, r * k, "cuda lora da"},
		{gdb, db, n * r, "cuda lora db"}, {gdx, dx, m * k, "cuda lora dx"},
		{glx, lx, m * k, "cuda linear_bwd f32"},
	};
	for (size_t i = 0; i < sizeof cmp / sizeof cmp[0]; i++) {
		float *h = down(cmp[i].g, cmp[i].n * 4);
		T_CHECK(close_f(h, cmp[i].c, cmp[i].n, 1e-4, 1e-4, cmp[i].what));
		free(h);
		kern_free(G, cmp[i].g);
	}
	/* the ops the CUDA backend has no kernel for answer -ENOTSUP, never a result */
	float *s = poisoned(4096);
	int32_t *pos = (int32_t *)poisoned(64), *tgt = (int32_t *)poisoned(64);
	T_EQ_INT(kern_rmsnorm_bwd(G, s, s, s, 1, 8, 1e-5f, s, s), -ENOTSUP);
	T_EQ_INT(kern_rope_bwd(G, s, pos, 1, 1, 8, 10000.0f), -ENOTSUP);
	T_EQ_INT(kern_causal_attention(G, s, s, s, 1, 2, 2, 1, 4, 0.5f, s, s), -ENOTSUP);
	T_EQ_INT(kern_causal_attention_bwd(G, s, s, s, s, s, s, 1, 2, 2, 1, 4, 0.5f, s, s, s),
		 -ENOTSUP);
	T_EQ_INT(kern_silu_mul_bwd(G, s, s, s, 8, s, s), -ENOTSUP);
	T_EQ_INT(kern_xent_lm(G, s, tgt, 1, 8, 1.0f, s, s), -ENOTSUP);
	kern_mat WB = {.dt = KERN_BF16, .n = 4, .k = 4, .data = s};
	T_EQ_INT(kern_linear_bwd(G, s, 1, &WB, 0, s), -ENOTSUP);
	kern_free(G, s); kern_free(G, pos); kern_free(G, tgt);
	kern_free(G, gx); kern_free(G, ga); kern_free(G, gb); kern_free(G, gdy); kern_free(G, gw);
	free(x); free(a); free(b); free(dy); free(y); free(dx); free(w);
	free(xa); free(dxa); free(da); free(db); free(lx);
}

void t_main(void)
{
	T_RUN(test_rmsnorm_bwd);
	T_RUN(test_rope_bwd);
	T_RUN(test_attention_bwd);
	T_RUN(test_silu_mul_bwd);
	T_RUN(test_linear_bwd);
	T_RUN(test_xent_lm);
	T_RUN(test_lora);
	T_RUN(test_cuda);
	if (G)
		kern_dev_close(G);
	if (C)
		kern_dev_close(C);
}

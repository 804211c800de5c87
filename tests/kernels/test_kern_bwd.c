/* test_kern_bwd.c — the backward ops of a decoder (kern_rmsnorm_bwd, kern_rope_bwd,
 * kern_causal_attention and its backward, kern_silu_mul_bwd, kern_linear_bwd, kern_xent_lm,
 * kern_lora and kern_lora_bwd) on the CPU backend. Each forward is written again here in double
 * precision and checked against the kern forward; each backward is checked against central
 * finite differences of that double forward, for L = sum(dy * forward) with a random dy (the
 * cross-entropy: L = its mean loss). Outputs are poisoned with NaN before every call, so an
 * element an op forgets to write fails. Then every op on the CUDA device (skipped without a
 * GPU) against the CPU on fresh random inputs, the GPU outputs poisoned (NaN bytes) first.
 *
 * Tolerance: the differences are taken in double with h = 1e-4 on O(1) inputs, so their own
 * error (truncation ~h^2, rounding ~1e-16/h) is below 1e-8; what remains is the op's F32
 * arithmetic: sums of at most a few hundred terms (relative error ~1e-6) and cancellations
 * (softmax minus one-hot, the two terms of the RMSNorm gradient, the attention's dP - D) that
 * can cost a digit against the largest gradient element. Hence rtol 1e-4 with an atol of 1e-5
 * times the largest |gradient| (the ops pass at a tenth of both): a wrong term, sign, scale,
 * mask or group, or a 0.1% error in one factor, moves elements by more. */
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

/* the gradient check: rtol 1e-4, atol 1e-5 * max |want| (see the file comment) */
static int grad_ok(const float *got, const float *want, size_t n, const char *what)
{
	double mx = 0;
	for (size_t i = 0; i < n; i++)
		mx = fabs(want[i]) > mx ? fabs(want[i]) : mx;
	return close_f(got, want, n, 1e-5 * mx + 1e-7, 1e-4, what);
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
	/* no rows: dw is a sum over none */
	float *dw0 = nanbuf(5);
	T_EQ_INT(kern_rmsnorm_bwd(d, NULL, &one, NULL, 0, 5, 1e-5f, NULL, dw0), 0);
	T_CHECK(dw0[0] == 0 && dw0[4] == 0);
	free(dw0);
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
	loss = 0;
	T_EQ_INT(kern_xent_lm(d, NULL, NULL, 0, n, 1.0f, NULL, &loss), 0);
	T_CHECK(isnan(loss));
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
	/* no rows: the adapter gradients are sums over none */
	float *da0 = nanbuf(6), *db0 = nanbuf(4);
	T_EQ_INT(kern_lora_bwd(d, NULL, 0, 3, 2, 2, z, z, NULL, NULL, 1.0f, NULL, da0, db0, NULL), 0);
	int zero = 1;
	for (int i = 0; i < 6; i++)
		zero &= da0[i] == 0 && (i >= 4 || db0[i] == 0);
	T_CHECK(zero);
	free(da0); free(db0);
	T_EQ_INT(kern_lora(d, z, 1, 1, 1, 0, z, z, 1.0f, z, z), -EINVAL);
	T_EQ_INT(kern_lora_bwd(d, z, 1, 1, 1, 1, z, z, z, z, INFINITY, z, z, z, z), -EINVAL);
}

/* ---- CUDA against the CPU ---- */

/* the GPU result d (n floats, freed) against the CPU's c */
static int cu_cmp(float *d, const float *c, int64_t n, double atol, double rtol, const char *what)
{
	float *h = down(d, (size_t)n * 4);
	int ok = close_f(h, c, (size_t)n, atol, rtol, what);
	free(h);
	kern_free(G, d);
	return ok;
}

static void test_cuda_norm_rope_silu(void)
{
	if (!open_devs())
		T_SKIP("no GPU");
	int64_t shapes[][2] = {{1, 8}, {7, 64}, {33, 2048}};
	char what[64];
	for (size_t s = 0; s < 3; s++) {
		int64_t m = shapes[s][0], dim = shapes[s][1], n = m * dim;
		float *x = rnd(n, 2), *w = rnd(dim, 1.5f), *dy = rnd(n, 1), *up2 = rnd(n, 2);
		float *dx = nanbuf(n), *dw = nanbuf(dim), *dg = nanbuf(n), *du = nanbuf(n);
		float *gx = up(x, n * 4), *gw = up(w, dim * 4), *gdy = up(dy, n * 4), *gu = up(up2, n * 4);
		float *gdx = poisoned(n * 4), *gdw = poisoned(dim * 4);
		float *gdg = poisoned(n * 4), *gdu = poisoned(n * 4);
		T_EQ_INT(kern_rmsnorm_bwd(C, x, w, dy, m, dim, 1e-5f, dx, dw), 0);
		T_EQ_INT(kern_rmsnorm_bwd(G, gx, gw, gdy, m, dim, 1e-5f, gdx, gdw), 0);
		snprintf(what, sizeof what, "cuda rmsnorm_bwd %lldx%lld", (long long)m, (long long)dim);
		T_CHECK(cu_cmp(gdx, dx, n, 1e-5, 1e-4, what));
		T_CHECK(cu_cmp(gdw, dw, dim, 1e-5 * sqrt((double)m), 1e-4, what));
		T_EQ_INT(kern_silu_mul_bwd(C, x, up2, dy, n, dg, du), 0);
		T_EQ_INT(kern_silu_mul_bwd(G, gx, gu, gdy, n, gdg, gdu), 0);
		T_CHECK(cu_cmp(gdg, dg, n, 1e-6, 1e-5, "cuda silu_mul_bwd dgate"));
		T_CHECK(cu_cmp(gdu, du, n, 1e-6, 1e-5, "cuda silu_mul_bwd dup"));
		kern_free(G, gx); kern_free(G, gw); kern_free(G, gdy); kern_free(G, gu);
		free(x); free(w); free(dy); free(up2); free(dx); free(dw); free(dg); free(du);
	}
	/* the angle's powf may differ by a few ulps between the GPU and the CPU, which moves an
	 * angle by about pos * 2e-7 rad: against the CPU at positions up to 300 (as the forward
	 * rope's GPU test), and at large positions the GPU's backward undoes the GPU's forward */
	int32_t pos[] = {0, 5, 100, 300, 131071, 500000, 2000000};
	int64_t m = 4, heads = 4, hd = 128, n = m * heads * hd, ml = 7, nl = ml * heads * hd;
	int32_t *gpos = up(pos, sizeof pos);
	float *g = rnd(nl, 1), *gg = up(g, n * 4), *gl = up(g, nl * 4);
	float *orig = malloc(nl * 4 + 4);
	memcpy(orig, g, nl * 4);
	T_EQ_INT(kern_rope_bwd(C, g, pos, m, heads, hd, 500000.0f), 0);
	T_EQ_INT(kern_rope_bwd(G, gg, gpos, m, heads, hd, 500000.0f), 0);
	T_CHECK(cu_cmp(gg, g, n, 2e-4, 1e-4, "cuda rope_bwd"));
	T_EQ_INT(kern_rope(G, gl, gpos, ml, heads, hd, 500000.0f), 0);
	T_EQ_INT(kern_rope_bwd(G, gl, gpos, ml, heads, hd, 500000.0f), 0);
	T_CHECK(cu_cmp(gl, orig, nl, 1e-6, 1e-5, "cuda rope then rope_bwd"));
	kern_free(G, gpos);
	free(g); free(orig);
}

static void test_cuda_attention(void)
{
	if (!open_devs())
		T_SKIP("no GPU");
	int64_t cfg[][5] = {{1, 1, 1, 1, 4}, {2, 9, 4, 2, 64}, {2, 33, 8, 2, 128}, {1, 17, 4, 4, 40},
			    {1, 64, 32, 8, 64}};
	char what[96];
	for (size_t s = 0; s < sizeof cfg / sizeof cfg[0]; s++) {
		int64_t nseq = cfg[s][0], T = cfg[s][1], H = cfg[s][2], KV = cfg[s][3], hd = cfg[s][4];
		int64_t nq = nseq * T * H * hd, nk = nseq * T * KV * hd, nl = nseq * T * H;
		float scale = 1.0f / sqrtf((float)hd);
		float *q = rnd(nq, 1.5f), *k = rnd(nk, 1.5f), *v = rnd(nk, 1), *dy = rnd(nq, 1);
		float *out = nanbuf(nq), *lse = nanbuf(nl), *dq = nanbuf(nq), *dk = nanbuf(nk),
		      *dv = nanbuf(nk);
		float *gq = up(q, nq * 4), *gk = up(k, nk * 4), *gv = up(v, nk * 4), *gdy = up(dy, nq * 4);
		float *go = poisoned(nq * 4), *gl = poisoned(nl * 4), *gdq = poisoned(nq * 4);
		float *gdk = poisoned(nk * 4), *gdv = poisoned(nk * 4);
		T_EQ_INT(kern_causal_attention(C, q, k, v, nseq, T, H, KV, hd, scale, out, lse), 0);
		T_EQ_INT(kern_causal_attention(G, gq, gk, gv, nseq, T, H, KV, hd, scale, go, gl), 0);
		T_EQ_INT(kern_causal_attention_bwd(C, q, k, v, out, lse, dy, nseq, T, H, KV, hd, scale,
						   dq, dk, dv), 0);
		/* the GPU backward runs on the GPU's own forward */
		T_EQ_INT(kern_causal_attention_bwd(G, gq, gk, gv, go, gl, gdy, nseq, T, H, KV, hd, scale,
						   gdq, gdk, gdv), 0);
		snprintf(what, sizeof what, "cuda attention nseq %lld T %lld heads %lld/%lld hd %lld",
			 (long long)nseq, (long long)T, (long long)H, (long long)KV, (long long)hd);
		double tol = 1e-5 * sqrt((double)T * hd * (H / KV));
		T_CHECK(cu_cmp(go, out, nq, tol, 1e-4, what));
		T_CHECK(cu_cmp(gl, lse, nl, tol, 1e-5, what));
		T_CHECK(cu_cmp(gdq, dq, nq, tol, 1e-3, what));
		T_CHECK(cu_cmp(gdk, dk, nk, tol, 1e-3, what));
		T_CHECK(cu_cmp(gdv, dv, nk, tol, 1e-3, what));
		kern_free(G, gq); kern_free(G, gk); kern_free(G, gv); kern_free(G, gdy);
		free(q); free(k); free(v); free(dy); free(out); free(lse); free(dq); free(dk); free(dv);
	}
	float *s = poisoned(4096);
	T_EQ_INT(kern_causal_attention(G, s, s, s, 1, 1, 1, 1, 264, 0.5f, s, s), -ENOTSUP);
	kern_free(G, s);
}

static void test_cuda_xent_products(void)
{
	if (!open_devs())
		T_SKIP("no GPU");
	/* cross-entropy with ignored rows, and with every row ignored */
	int64_t m = 67, n = 1000;
	int32_t *tgt = malloc(m * 4);
	for (int64_t i = 0; i < m; i++)
		tgt[i] = i % 5 == 2 ? KERN_IGNORE_INDEX : (int32_t)((i * 7919) % n);
	float *x = rnd(m * n, 6), *g = nanbuf(m * n), loss = NAN;
	float *gx = up(x, m * n * 4), *gg = poisoned(m * n * 4), *gloss = poisoned(4);
	int32_t *gt = up(tgt, m * 4);
	T_EQ_INT(kern_xent_lm(C, x, tgt, m, n, 0.5f, g, &loss), 0);
	T_EQ_INT(kern_xent_lm(G, gx, gt, m, n, 0.5f, gg, gloss), 0);
	T_CHECK(cu_cmp(gg, g, m * n, 1e-7, 1e-4, "cuda xent_lm grad"));
	T_CHECK(cu_cmp(gloss, &loss, 1, 1e-6, 1e-5, "cuda xent_lm loss"));
	for (int64_t i = 0; i < m; i++)
		tgt[i] = KERN_IGNORE_INDEX;
	kern_copy_h2d(G, gt, tgt, m * 4);
	gg = poisoned(m * n * 4);
	gloss = poisoned(4);
	T_EQ_INT(kern_xent_lm(G, gx, gt, m, n, 1.0f, gg, gloss), 0);
	float *h = down(gg, m * n * 4), *hl = down(gloss, 4);
	int allz = 1;
	for (int64_t i = 0; i < m * n; i++)
		allz &= h[i] == 0.0f;
	T_CHECK(allz);
	T_CHECK(isnan(hl[0]));
	free(h); free(hl);
	/* a target out of range: NaN loss on the GPU */
	tgt[0] = (int32_t)n;
	kern_copy_h2d(G, gt, tgt, m * 4);
	T_EQ_INT(kern_xent_lm(G, gx, gt, m, n, 1.0f, gg, gloss), 0);
	hl = down(gloss, 4);
	T_CHECK(isnan(hl[0]));
	free(hl);
	kern_free(G, gg); kern_free(G, gloss); kern_free(G, gx); kern_free(G, gt);
	free(tgt); free(x); free(g);

	/* frozen-weight gradients in every float dtype, written and accumulated */
	kern_dtype dts[] = {KERN_F32, KERN_F16, KERN_BF16};
	int64_t ps[][3] = {{1, 96, 64}, {5, 64, 96}, {70, 256, 128}};
	for (size_t t = 0; t < 3; t++)
		for (size_t s = 0; s < 3; s++) {
			int64_t pm = ps[s][0], pn = ps[s][1], pk = ps[s][2];
			float *w = rnd(pn * pk, 1), *dy = rnd(pm * pn, 1), *dx = rnd(pm * pk, 1);
			void *wd = as_dtype(w, pn * pk, dts[t]);
			size_t wb = (size_t)(pn * pk) * kern_dtype_size(dts[t]);
			void *gw = up(wd, wb);
			float *gdy = up(dy, pm * pn * 4), *gdx = up(dx, pm * pk * 4);
			kern_mat W = {.dt = dts[t], .n = pn, .k = pk, .data = wd};
			kern_mat GW = {.dt = dts[t], .n = pn, .k = pk, .data = gw};
			int acc = (int)(s % 2);
			if (!acc) {
				kern_free(G, gdx);
				gdx = poisoned(pm * pk * 4);
			}
			T_EQ_INT(kern_linear_bwd(C, dy, pm, &W, acc, dx), 0);
			T_EQ_INT(kern_linear_bwd(G, gdy, pm, &GW, acc, gdx), 0);
			/* BF16/F16: the GPU rounds dy to the weight dtype (relative error up to 2^-8 /
			 * 2^-11 per term, uniform), so dx's error is a sum of pn such terms of size
			 * |dy w| ~ 1/3: its spread is 7.5e-4 / 9.4e-5 * sqrt(pn); atol is 10 of them */
			double atol = dts[t] == KERN_BF16 ? 8e-3 * sqrt((double)pn)
				    : dts[t] == KERN_F16 ? 1e-3 * sqrt((double)pn) : 1e-5 * sqrt((double)pn);
			char what[64];
			snprintf(what, sizeof what, "cuda linear_bwd %s m %lld acc %d",
				 kern_dtype_name(dts[t]), (long long)pm, acc);
			T_CHECK(cu_cmp(gdx, dx, pm * pk, atol, 1e-4, what));
			kern_free(G, gw); kern_free(G, gdy);
			free(w); free(dy); free(dx); free(wd);
		}

	/* LoRA products (kern_gemm: cuBLAS) */
	int64_t lm = 37, k = 64, ln = 48, r = 8;
	float scale = 2.0f;
	float *lx = rnd(lm * k, 1), *a = rnd(r * k, 0.5f), *b = rnd(ln * r, 0.5f), *dy = rnd(lm * ln, 1);
	float *y = rnd(lm * ln, 1), *dx = rnd(lm * k, 1);
	float *glx = up(lx, lm * k * 4), *ga = up(a, r * k * 4), *gb = up(b, ln * r * 4);
	float *gdy = up(dy, lm * ln * 4), *gy = up(y, lm * ln * 4), *gdx = up(dx, lm * k * 4);
	float *gxa = poisoned(lm * r * 4), *gdxa = poisoned(lm * r * 4), *gda = poisoned(r * k * 4);
	float *gdb = poisoned(ln * r * 4);
	float *xa = nanbuf(lm * r), *dxa = nanbuf(lm * r), *da = nanbuf(r * k), *db = nanbuf(ln * r);
	T_EQ_INT(kern_lora(C, lx, lm, k, ln, r, a, b, scale, xa, y), 0);
	T_EQ_INT(kern_lora_bwd(C, lx, lm, k, ln, r, a, b, xa, dy, scale, dxa, da, db, dx), 0);
	T_EQ_INT(kern_lora(G, glx, lm, k, ln, r, ga, gb, scale, gxa, gy), 0);
	T_EQ_INT(kern_lora_bwd(G, glx, lm, k, ln, r, ga, gb, gxa, gdy, scale, gdxa, gda, gdb, gdx), 0);
	T_CHECK(cu_cmp(gxa, xa, lm * r, 1e-4, 1e-4, "cuda lora xa"));
	T_CHECK(cu_cmp(gy, y, lm * ln, 1e-4, 1e-4, "cuda lora y"));
	T_CHECK(cu_cmp(gdxa, dxa, lm * r, 1e-4, 1e-4, "cuda lora dxa"));
	T_CHECK(cu_cmp(gda, da, r * k, 1e-4, 1e-4, "cuda lora da"));
	T_CHECK(cu_cmp(gdb, db, ln * r, 1e-4, 1e-4, "cuda lora db"));
	T_CHECK(cu_cmp(gdx, dx, lm * k, 1e-4, 1e-4, "cuda lora dx"));
	kern_free(G, glx); kern_free(G, ga); kern_free(G, gb); kern_free(G, gdy);
	free(lx); free(a); free(b); free(dy); free(y); free(dx);
	free(xa); free(dxa); free(da); free(db);
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
	T_RUN(test_cuda_norm_rope_silu);
	T_RUN(test_cuda_attention);
	T_RUN(test_cuda_xent_products);
	if (G)
		kern_dev_close(G);
	if (C)
		kern_dev_close(C);
}

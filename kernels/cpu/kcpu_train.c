/* kcpu_train.c — the CPU reference versions of the training ops (kern.h, "training ops"):
 * general F32 GEMM with transposes, activation backward, softmax cross-entropy and MSE loss with
 * their gradients, column sums and the Adam update. Plain loops, F32 accumulation (the loss
 * rows in double), threads only for large products. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "kernels/cpu/kcpu_int.h"

typedef struct gemm_ctx {
	int ta, tb;
	int64_t m, n, k;
	float alpha, beta;
	const float *a, *b;
	float *c;
} gemm_ctx;

static int gemm_rows(void *arg, int64_t lo, int64_t hi)
{
	gemm_ctx *g = arg;
	int64_t m = g->m, n = g->n, k = g->k;
	float *acc = malloc((size_t)n * sizeof *acc);
	float *arow = malloc((size_t)(k ? k : 1) * sizeof *arow);
	if (!acc || !arow) {
		free(acc);
		free(arow);
		return -ENOMEM;
	}
	for (int64_t i = lo; i < hi; i++) {
		/* row i of op(a), contiguous */
		for (int64_t p = 0; p < k; p++)
			arow[p] = g->ta ? g->a[p * m + i] : g->a[i * k + p];
		if (g->tb) {   /* b is [n, k]: dot products with its rows */
			for (int64_t j = 0; j < n; j++)
				acc[j] = kcpu_dot(arow, g->b + j * k, k);
		} else {       /* b is [k, n]: accumulate its rows */
			memset(acc, 0, (size_t)n * sizeof *acc);
			for (int64_t p = 0; p < k; p++) {
				float av = arow[p];
				const float *br = g->b + p * n;
				for (int64_t j = 0; j < n; j++)
					acc[j] += av * br[j];
			}
		}
		float *cr = g->c + i * n;
		for (int64_t j = 0; j < n; j++)
			cr[j] = g->beta == 0.0f ? g->alpha * acc[j] : g->alpha * acc[j] + g->beta * cr[j];
	}
	free(acc);
	free(arow);
	return 0;
}

int kcpu_gemm(void *b, int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
		    const float *a, const float *bm, float beta, float *c)
{
	gemm_ctx g = {ta, tb, m, n, k, alpha, beta, a, bm, c};
	return kcpu_par(b, m, (double)m * (double)n * (double)k, gemm_rows, &g);
}

/* d act(z) / dz */
static float act_deriv(float z, kern_act act)
{
	switch (act) {
	case KERN_ACT_RELU: return z > 0 ? 1.0f : 0.0f;
	case KERN_ACT_TANH: { float t = tanhf(z); return 1.0f - t * t; }
	case KERN_ACT_GELU:
		return 0.5f * (1.0f + erff(z * 0.70710678118654752f)) +
		       z * 0.39894228040143268f * expf(-0.5f * z * z);
	case KERN_ACT_SILU: { float s = 1.0f / (1.0f + expf(-z)); return s * (1.0f + z * (1.0f - s)); }
	case KERN_ACT_NONE: break;
	}
	return 1.0f;
}

int kcpu_act_grad(void *b, float *g, const float *z, int64_t n, kern_act act)
{
	(void)b;
	for (int64_t i = 0; i < n; i++)
		g[i] *= act_deriv(z[i], act);
	return 0;
}

int kcpu_xent_grad(void *b, const float *x, const float *lab, int64_t m, int64_t n,
			 float scale, float *grad, float *loss, float *correct)
{
	(void)b;
	for (int64_t i = 0; i < m; i++) {
		const float *r = x + i * n;
		float l = lab[i];
		int64_t best = 0;
		float mx = r[0];
		for (int64_t j = 1; j < n; j++)
			if (r[j] > r[best])
				best = j;
		mx = r[best];
		double s = 0;
		for (int64_t j = 0; j < n; j++)
			s += exp((double)r[j] - mx);
		int ok = l == floorf(l) && l >= 0 && l < (float)n;
		int64_t li = ok ? (int64_t)l : -1;
		if (loss)
			loss[i] = ok ? (float)(-((double)r[li] - mx - log(s))) : NAN;
		if (correct)
			correct[i] = ok && best == li ? 1.0f : 0.0f;
		if (grad)
			for (int64_t j = 0; j < n; j++)
				grad[i * n + j] = ((float)(exp((double)r[j] - mx) / s) -
						   (j == li ? 1.0f : 0.0f)) * scale;
	}
	return 0;
}

int kcpu_mse_grad(void *b, const float *x, const float *t, int64_t m, int64_t n, float scale,
			float *grad, float *loss)
{
	(void)b;
	for (int64_t i = 0; i < m; i++) {
		double s = 0;
		for (int64_t j = 0; j < n; j++) {
			float e = x[i * n + j] - t[i * n + j];
			s += (double)e * e;
			if (grad)
				grad[i * n + j] = 2.0f * e / (float)n * scale;
		}
		if (loss)
			loss[i] = (float)(s / (double)n);
	}
	return 0;
}

int kcpu_col_sum(void *b, const float *x, int64_t m, int64_t n, float alpha, float beta,
		       float *out)
{
	(void)b;
	for (int64_t j = 0; j < n; j++) {
		float s = 0;
		for (int64_t i = 0; i < m; i++)
			s += x[i * n + j];
		out[j] = beta == 0.0f ? alpha * s : alpha * s + beta * out[j];
	}
	return 0;
}

int kcpu_adam(void *b, float *p, float *mo, float *v, const float *g, int64_t n, float lr,
		    float b1, float b2, float eps)
{
	(void)b;
	for (int64_t i = 0; i < n; i++) {
		mo[i] = b1 * mo[i] + (1.0f - b1) * g[i];
		v[i] = b2 * v[i] + (1.0f - b2) * g[i] * g[i];
		p[i] -= lr * mo[i] / (sqrtf(v[i]) + eps);
	}
	return 0;
}

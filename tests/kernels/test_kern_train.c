/* test_kern_train.c — the training ops (kern_gemm with every transpose, kern_act_grad,
 * kern_xent_grad, kern_mse_grad, kern_col_sum, kern_adam): the CPU op against independent
 * double-precision loops written here (and the gradients against finite differences of the
 * losses), then every CUDA op against the CPU op on fresh random inputs at several sizes with
 * the GPU outputs poisoned first (NaN bytes), so an element a kernel forgot to write shows.
 * The CUDA half skips without a GPU. Bad arguments get -EINVAL. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "tests/t.h"
#define KT_SEED 777
#include "tests/kernels/kt.h"

static float *labels(int64_t m, int64_t n)
{
	float *p = malloc((size_t)m * 4 + 4);
	for (int64_t i = 0; i < m; i++)
		p[i] = (float)((rng = rng * 1664525u + 1013904223u) >> 8 & 0xffff) ;
	for (int64_t i = 0; i < m; i++)
		p[i] = (float)((int64_t)p[i] % n);
	return p;
}

static double act_ref(double z, kern_act a)
{
	switch (a) {
	case KERN_ACT_RELU: return z > 0 ? z : 0;
	case KERN_ACT_GELU: return 0.5 * z * (1 + erf(z / sqrt(2.0)));
	case KERN_ACT_TANH: return tanh(z);
	case KERN_ACT_SILU: return z / (1 + exp(-z));
	default: return z;
	}
}

static void test_cpu_gemm(void)
{
	kern_dev *d;
	T_EQ_INT(kern_dev_open("cpu", 2, &d), 0);
	int64_t dims[][3] = {{1, 1, 1}, {7, 5, 3}, {32, 64, 64}, {33, 10, 64}, {64, 33, 32}, {3, 4, 0}};
	for (size_t s = 0; s < sizeof dims / sizeof dims[0]; s++)
		for (int ta = 0; ta < 2; ta++)
			for (int tb = 0; tb < 2; tb++) {
				int64_t m = dims[s][0], n = dims[s][1], k = dims[s][2];
				float *a = rnd(m * k, 1), *b = rnd(k * n, 1), *c = rnd(m * n, 1);
				float *c0 = malloc(m * n * 4 + 4), *want = malloc(m * n * 4 + 4);
				memcpy(c0, c, m * n * 4);
				float alpha = 0.75f, beta = (ta + tb) % 2 ? 0.5f : 0.0f;
				for (int64_t i = 0; i < m; i++)
					for (int64_t j = 0; j < n; j++) {
						double acc = 0;
						for (int64_t p = 0; p < k; p++)
							acc += (double)(ta ? a[p * m + i] : a[i * k + p]) *
							       (tb ? b[j * k + p] : b[p * n + j]);
						want[i * n + j] = (float)(alpha * acc + beta * c0[i * n + j]);
					}
				if (beta == 0)   /* beta 0: c must not be read */
					for (int64_t i = 0; i < m * n; i++)
						c[i] = NAN;
				T_EQ_INT(kern_gemm(d, ta, tb, m, n, k, alpha, a, b, beta, c), 0);
				char what[96];
				snprintf(what, sizeof what, "cpu gemm ta %d tb %d %lldx%lldx%lld", ta, tb,
					 (long long)m, (long long)n, (long long)k);
				T_CHECK(close_f(c, want, m * n, 1e-5 * sqrt((double)k + 1), 1e-5, what));
				free(a); free(b); free(c); free(c0); free(want);
			}
	float x = 0;
	T_EQ_INT(kern_gemm(d, 2, 0, 1, 1, 1, 1, &x, &x, 0, &x), -EINVAL);
	T_EQ_INT(kern_gemm(d, 0, 0, -1, 1, 1, 1, &x, &x, 0, &x), -EINVAL);
	T_EQ_INT(kern_gemm(d, 0, 0, 1, 1, 1, NAN, &x, &x, 0, &x), -EINVAL);
	kern_dev_close(d);
}

static void test_cpu_act_grad(void)
{
	kern_dev *d;
	T_EQ_INT(kern_dev_open("cpu", 1, &d), 0);
	int64_t n = 200;
	for (int a = 0; a <= KERN_ACT_SILU; a++) {
		float *z = rnd(n, 3), *g = rnd(n, 1), *g0 = malloc(n * 4), *want = malloc(n * 4);
		memcpy(g0, g, n * 4);
		for (int64_t i = 0; i < n; i++) {
			/* central difference of the activation in double */
			double h = 1e-4, zz = z[i];
			if (a == KERN_ACT_RELU && fabs(zz) < 2 * h)
				zz = z[i] = 0.5f;
			double dv = (act_ref(zz + h, (kern_act)a) - act_ref(zz - h, (kern_act)a)) / (2 * h);
			want[i] = (float)(g0[i] * dv);
		}
		T_EQ_INT(kern_act_grad(d, g, z, n, (kern_act)a), 0);
		char what[64];
		snprintf(what, sizeof what, "cpu act_grad %d", a);
		T_CHECK(close_f(g, want, n, 1e-5, 1e-4, what));
		free(z); free(g); free(g0); free(want);
	}
	float x = 1;
	T_EQ_INT(kern_act_grad(d, &x, &x, 1, (kern_act)99), -EINVAL);
	kern_dev_close(d);
}

static void test_cpu_losses(void)
{
	kern_dev *d;
	T_EQ_INT(kern_dev_open("cpu", 1, &d), 0);
	int64_t m = 9, n = 10;
	float *x = rnd(m * n, 4), *lab = labels(m, n);
	lab[3] = 2.5f;   /* not a class index */
	x[0 * n + 4] = x[0 * n + 7] = 50;   /* a tie: the lower index wins */
	lab[0] = 4;
	float *g = malloc(m * n * 4), *loss = malloc(m * 4), *cor = malloc(m * 4);
	T_EQ_INT(kern_xent_grad(d, x, lab, m, n, 0.5f, g, loss, cor), 0);
	for (int64_t i = 0; i < m; i++) {
		double mx = -INFINITY, s = 0;
		int64_t best = 0;
		for (int64_t j = 0; j < n; j++)
			if (x[i * n + j] > mx) { mx = x[i * n + j]; best = j; }
		for (int64_t j = 0; j < n; j++)
			s += exp(x[i * n + j] - mx);
		if (i == 3) {
			T_CHECK(isnan(loss[i]));
			T_CHECK(cor[i] == 0);
			continue;
		}
		int64_t l = (int64_t)lab[i];
		double want = -(x[i * n + l] - mx - log(s));
		T_CHECK(fabs(loss[i] - want) <= 1e-5 * (1 + want));
		T_CHECK(cor[i] == (best == l ? 1.0f : 0.0f));
		/* gradient: finite differences of the loss (in double) times the scale */
		for (int64_t j = 0; j < n; j++) {
			double h = 1e-3, lp, lm, sp = 0, sm = 0;
			for (int64_t q = 0; q < n; q++) {
				double v = x[i * n + q];
				sp += exp(v + (q == j ? h : 0) - mx);
				sm += exp(v - (q == j ? h : 0) - mx);
			}
			lp = -(x[i * n + l] + (l == j ? h : 0) - mx - log(sp));
			lm = -(x[i * n + l] - (l == j ? h : 0) - mx - log(sm));
			T_CHECK(fabs(g[i * n + j] - 0.5 * (lp - lm) / (2 * h)) < 1e-4);
		}
	}
	T_CHECK(cor[0] == 1.0f);
	/* MSE */
	float *t = rnd(m * n, 2);
	T_EQ_INT(kern_mse_grad(d, x, t, m, n, 2.0f, g, loss), 0);
	for (int64_t i = 0; i < m; i++) {
		double s = 0;
		for (int64_t j = 0; j < n; j++) {
			double e = (double)x[i * n + j] - t[i * n + j];
			s += e * e;
			T_CHECK(fabs(g[i * n + j] - 2.0 * 2 * e / n) < 1e-5 * (1 + fabs(e)));
		}
		T_CHECK(fabs(loss[i] - s / n) < 1e-5 * (1 + s / n));
	}
	T_EQ_INT(kern_xent_grad(d, x, lab, m, 0, 1, g, loss, cor), -EINVAL);
	T_EQ_INT(kern_mse_grad(d, x, t, m, n, INFINITY, g, loss), -EINVAL);
	free(x); free(lab); free(g); free(loss); free(cor); free(t);
	kern_dev_close(d);
}

static void test_cpu_col_sum_adam(void)
{
	kern_dev *d;
	T_EQ_INT(kern_dev_open("cpu", 1, &d), 0);
	int64_t m = 13, n = 21;
	float *x = rnd(m * n, 1), *o = rnd(n, 1), *o0 = malloc(n * 4);
	memcpy(o0, o, n * 4);
	T_EQ_INT(kern_col_sum(d, x, m, n, 0.5f, 2.0f, o), 0);
	for (int64_t j = 0; j < n; j++) {
		double s = 0;
		for (int64_t i = 0; i < m; i++)
			s += x[i * n + j];
		T_CHECK(fabs(o[j] - (0.5 * s + 2.0 * o0[j])) < 1e-5);
	}
	/* Adam: two steps against the formulas in double */
	int64_t np = 100;
	float *p = rnd(np, 1), *mo = calloc(np, 4), *v = calloc(np, 4), *g = rnd(np, 1);
	double *pd = malloc(np * 8), *md = calloc(np, 8), *vd = calloc(np, 8);
	for (int64_t i = 0; i < np; i++)
		pd[i] = p[i];
	for (int step = 0; step < 2; step++) {
		T_EQ_INT(kern_adam(d, p, mo, v, g, np, 0.01f, 0.9f, 0.999f, 1e-8f), 0);
		for (int64_t i = 0; i < np; i++) {
			md[i] = 0.9 * md[i] + 0.1 * g[i];
			vd[i] = 0.999 * vd[i] + 0.001 * (double)g[i] * g[i];
			pd[i] -= 0.01 * md[i] / (sqrt(vd[i]) + 1e-8);
		}
	}
	for (int64_t i = 0; i < np; i++)
		T_CHECK(fabs(p[i] - pd[i]) < 1e-5 && fabs(mo[i] - md[i]) < 1e-6);
	T_EQ_INT(kern_adam(d, p, mo, v, g, np, 0.01f, 1.0f, 0.999f, 1e-8f), -EINVAL);
	T_EQ_INT(kern_col_sum(d, x, -1, n, 1, 0, o), -EINVAL);
	free(x); free(o); free(o0); free(p); free(mo); free(v); free(g); free(pd); free(md); free(vd);
	kern_dev_close(d);
}

/* ---- CUDA ops against the CPU ops ---- */

static void test_cuda_gemm(void)
{
	if (!open_devs())
		T_SKIP("no GPU");
	int64_t dims[][3] = {{1, 1, 1}, {7, 5, 3}, {32, 64, 64}, {33, 10, 64}, {256, 257, 130}, {4, 3, 0}};
	for (size_t s = 0; s < sizeof dims / sizeof dims[0]; s++)
		for (int ta = 0; ta < 2; ta++)
			for (int tb = 0; tb < 2; tb++) {
				int64_t m = dims[s][0], n = dims[s][1], k = dims[s][2];
				float *a = rnd(m * k, 1), *b = rnd(k * n, 1), *c = rnd(m * n, 1);
				float beta = (ta + tb + (int)s) % 2 ? 0.5f : 0.0f;
				float *da = up(a, m * k * 4 + 4), *db = up(b, k * n * 4 + 4);
				float *dc = beta == 0 ? poisoned(m * n * 4) : up(c, m * n * 4);
				T_EQ_INT(kern_gemm(C, ta, tb, m, n, k, 1.25f, a, b, beta, c), 0);
				T_EQ_INT(kern_gemm(G, ta, tb, m, n, k, 1.25f, da, db, beta, dc), 0);
				float *cg = down(dc, m * n * 4);
				char what[96];
				snprintf(what, sizeof what, "cuda gemm ta %d tb %d %lldx%lldx%lld", ta, tb,
					 (long long)m, (long long)n, (long long)k);
				T_CHECK(close_f(cg, c, m * n, 2e-5 * sqrt((double)k + 1), 1e-5, what));
				kern_free(G, da); kern_free(G, db); kern_free(G, dc);
				free(a); free(b); free(c); free(cg);
			}
}

static void test_cuda_train_ops(void)
{
	if (!open_devs())
		T_SKIP("no GPU");
	int64_t shapes[][2] = {{1, 2}, {5, 10}, {32, 10}, {33, 100}, {300, 7}, {64, 1000}};
	for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
		int64_t m = shapes[s][0], n = shapes[s][1];
		char what[96];
		/* act_grad, every activation */
		for (int a = 0; a <= KERN_ACT_SILU; a++) {
			float *z = rnd(m * n, 3), *g = rnd(m * n, 1);
			float *dz = up(z, m * n * 4), *dg = up(g, m * n * 4);
			T_EQ_INT(kern_act_grad(C, g, z, m * n, (kern_act)a), 0);
			T_EQ_INT(kern_act_grad(G, dg, dz, m * n, (kern_act)a), 0);
			float *gg = down(dg, m * n * 4);
			snprintf(what, sizeof what, "cuda act_grad %d n %lld", a, (long long)(m * n));
			T_CHECK(close_f(gg, g, m * n, 1e-6, 1e-5, what));
			kern_free(G, dz); kern_free(G, dg);
			free(z); free(g); free(gg);
		}
		/* softmax cross-entropy (one bad label, one tie) */
		float *x = rnd(m * n, 5), *lab = labels(m, n);
		if (m > 3)
			lab[3] = -1;
		if (n > 3) {
			x[n - 1] = x[n - 3] = 99;
		}
		float *g = malloc(m * n * 4), *loss = malloc(m * 4), *cor = malloc(m * 4);
		T_EQ_INT(kern_xent_grad(C, x, lab, m, n, 1.0f / (float)m, g, loss, cor), 0);
		float *dx = up(x, m * n * 4), *dl = up(lab, m * 4), *dg = poisoned(m * n * 4);
		float *dlo = poisoned(m * 4), *dco = poisoned(m * 4);
		T_EQ_INT(kern_xent_grad(G, dx, dl, m, n, 1.0f / (float)m, dg, dlo, dco), 0);
		float *gg = down(dg, m * n * 4), *lg = down(dlo, m * 4), *cg = down(dco, m * 4);
		snprintf(what, sizeof what, "cuda xent grad %lldx%lld", (long long)m, (long long)n);
		T_CHECK(close_f(gg, g, m * n, 1e-7, 1e-5, what));
		for (int64_t i = 0; i < m; i++) {
			if (isnan(loss[i])) {
				T_CHECK(isnan(lg[i]));
				lg[i] = loss[i] = 0;
			}
		}
		snprintf(what, sizeof what, "cuda xent loss %lldx%lld", (long long)m, (long long)n);
		T_CHECK(close_f(lg, loss, m, 1e-6, 1e-5, what));
		T_CHECK(memcmp(cg, cor, m * 4) == 0);
		/* MSE */
		float *t = rnd(m * n, 2);
		float *dt = up(t, m * n * 4);
		T_EQ_INT(kern_mse_grad(C, x, t, m, n, 0.25f, g, loss), 0);
		kern_free(G, dg); kern_free(G, dlo);
		dg = poisoned(m * n * 4);
		dlo = poisoned(m * 4);
		T_EQ_INT(kern_mse_grad(G, dx, dt, m, n, 0.25f, dg, dlo), 0);
		free(gg); free(lg);
		gg = down(dg, m * n * 4);
		lg = down(dlo, m * 4);
		snprintf(what, sizeof what, "cuda mse %lldx%lld", (long long)m, (long long)n);
		T_CHECK(close_f(gg, g, m * n, 1e-6, 1e-5, what));
		T_CHECK(close_f(lg, loss, m, 1e-6, 1e-5, what));
		/* column sums, beta 0 (poisoned) and beta 1 */
		for (int beta = 0; beta < 2; beta++) {
			float *o = rnd(n, 1);
			float *dd = beta ? up(o, n * 4) : poisoned(n * 4);
			T_EQ_INT(kern_col_sum(C, x, m, n, 0.5f, (float)beta, o), 0);
			T_EQ_INT(kern_col_sum(G, dx, m, n, 0.5f, (float)beta, dd), 0);
			float *og = down(dd, n * 4);
			snprintf(what, sizeof what, "cuda col_sum %lldx%lld beta %d", (long long)m,
				 (long long)n, beta);
			T_CHECK(close_f(og, o, n, 1e-5 * sqrt((double)m) * 5, 1e-5, what));
			kern_free(G, dd);
			free(o); free(og);
		}
		/* Adam, three steps */
		int64_t np = m * n;
		float *p = rnd(np, 1), *mo = rnd(np, 0.1f), *v = rnd(np, 0.1f);
		for (int64_t i = 0; i < np; i++)
			v[i] = fabsf(v[i]);
		float *dp = up(p, np * 4), *dm = up(mo, np * 4), *dv = up(v, np * 4);
		for (int st = 0; st < 3; st++) {
			T_EQ_INT(kern_adam(C, p, mo, v, x, np, 0.003f, 0.9f, 0.999f, 1e-8f), 0);
			T_EQ_INT(kern_adam(G, dp, dm, dv, dx, np, 0.003f, 0.9f, 0.999f, 1e-8f), 0);
		}
		float *pg = down(dp, np * 4), *mg = down(dm, np * 4), *vg = down(dv, np * 4);
		snprintf(what, sizeof what, "cuda adam n %lld", (long long)np);
		T_CHECK(close_f(pg, p, np, 1e-7, 1e-6, what));
		T_CHECK(close_f(mg, mo, np, 1e-8, 1e-6, what));
		T_CHECK(close_f(vg, v, np, 1e-8, 1e-6, what));
		kern_free(G, dp); kern_free(G, dm); kern_free(G, dv);
		free(p); free(mo); free(v); free(pg); free(mg); free(vg);
		kern_free(G, dx); kern_free(G, dl); kern_free(G, dg); kern_free(G, dlo);
		kern_free(G, dco); kern_free(G, dt);
		free(x); free(lab); free(g); free(loss); free(cor); free(gg); free(lg); free(cg); free(t);
	}
}

void t_main(void)
{
	T_RUN(test_cpu_gemm);
	T_RUN(test_cpu_act_grad);
	T_RUN(test_cpu_losses);
	T_RUN(test_cpu_col_sum_adam);
	T_RUN(test_cuda_gemm);
	T_RUN(test_cuda_train_ops);
	if (G)
		kern_dev_close(G);
	if (C)
		kern_dev_close(C);
}

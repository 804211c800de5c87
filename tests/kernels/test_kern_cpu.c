/* test_kern_cpu.c — the CPU reference backend against independent double-precision loops
 * written here: conversions, linear (all weight dtypes, int8 both scale layouts), RoPE,
 * attention with GQA, RMSNorm, argmax/logprob, and the sampling rule. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "tests/t.h"
#include "kernels/kern.h"

static uint32_t rng = 99;
static float frand(void)
{
	rng = rng * 1664525u + 1013904223u;
	return (float)((rng >> 8) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

static void test_conversions(void)
{
	T_EQ_INT(kern_f32_to_bf16(1.0f), 0x3f80);
	T_EQ_INT(kern_f32_to_bf16(1.0f + 1.0f / 256), 0x3f80);        /* tie -> even */
	T_EQ_INT(kern_f32_to_bf16(1.0f + 3.0f / 256), 0x3f82);        /* tie -> even (up) */
	T_CHECK(kern_bf16_to_f32(0xc040) == -3.0f);
	T_EQ_INT(kern_f32_to_f16(1.0f), 0x3c00);
	T_EQ_INT(kern_f32_to_f16(65504.0f), 0x7bff);
	T_EQ_INT(kern_f32_to_f16(1e6f), 0x7c00);
	T_EQ_INT(kern_f32_to_f16(5.960464477539063e-08f), 0x0001);   /* smallest subnormal */
	T_CHECK(kern_f16_to_f32(0x0001) == 5.960464477539063e-08f);
	T_CHECK(kern_f16_to_f32(0xc000) == -2.0f);
	for (int i = 0; i < 1000; i++) {
		float f = frand() * 100;
		T_CHECK(fabsf(kern_f16_to_f32(kern_f32_to_f16(f)) - f) <= fabsf(f) * 0.0005f + 1e-7f);
		T_CHECK(fabsf(kern_bf16_to_f32(kern_f32_to_bf16(f)) - f) <= fabsf(f) * 0.004f);
	}
	kern_dtype dt;
	T_EQ_INT(kern_dtype_parse("BF16", &dt), 0);
	T_EQ_INT(dt, KERN_BF16);
	T_EQ_INT(kern_dtype_parse("bf16", &dt), -EINVAL);
	kern_act a;
	T_EQ_INT(kern_act_parse("GELU", &a), 0);
	T_EQ_INT(a, KERN_ACT_GELU);
}

static double act_d(double v, kern_act a)
{
	switch (a) {
	case KERN_ACT_RELU: return v > 0 ? v : 0;
	case KERN_ACT_GELU: return 0.5 * v * (1 + erf(v / sqrt(2.0)));
	case KERN_ACT_TANH: return tanh(v);
	case KERN_ACT_SILU: return v / (1 + exp(-v));
	default: return v;
	}
}

static void test_linear_all_dtypes(void)
{
	kern_dev *d;
	T_EQ_INT(kern_dev_open("cpu", 3, &d), 0);
	int64_t m = 5, n = 37, k = 64;
	float *x = malloc(m * k * 4), *wf = malloc(n * k * 4), *bias = malloc(n * 4),
	      *y = malloc(m * n * 4), *sc = malloc(n * 2 * 4);
	uint16_t *wh = malloc(n * k * 2);
	int8_t *wq = malloc(n * k);
	for (int64_t i = 0; i < m * k; i++) x[i] = frand();
	for (int64_t i = 0; i < n * k; i++) wf[i] = frand();
	for (int64_t i = 0; i < n; i++) bias[i] = frand();
	for (int dt = 0; dt < 5; dt++) {
		kern_mat w = {KERN_F32, n, k, wf, NULL, 0};
		float *ref = malloc(n * k * 4);   /* the weight values the backend should see */
		if (dt == 1 || dt == 2) {
			for (int64_t i = 0; i < n * k; i++) {
				wh[i] = dt == 1 ? kern_f32_to_f16(wf[i]) : kern_f32_to_bf16(wf[i]);
				ref[i] = dt == 1 ? kern_f16_to_f32(wh[i]) : kern_bf16_to_f32(wh[i]);
			}
			w = (kern_mat){dt == 1 ? KERN_F16 : KERN_BF16, n, k, wh, NULL, 0};
		} else if (dt >= 3) {
			int blk = dt == 3 ? 0 : 32;
			for (int64_t r = 0; r < n; r++)
				for (int64_t b = 0; b < (blk ? k / blk : 1); b++)
					sc[blk ? r * 2 + b : r] = 0.01f + 0.001f * (float)(r + b);
			for (int64_t i = 0; i < n * k; i++) {
				wq[i] = (int8_t)((int)(frand() * 127));
				ref[i] = wq[i] * (blk ? sc[(i / k) * 2 + (i % k) / 32] : sc[i / k]);
			}
			w = (kern_mat){KERN_I8, n, k, wq, sc, blk};
		} else {
			memcpy(ref, wf, n * k * 4);
		}
		for (int a = 0; a <= KERN_ACT_SILU; a++) {
			T_EQ_INT(kern_linear(d, x, m, &w, a % 2 ? bias : NULL, (kern_act)a, y), 0);
			double md = 0;
			for (int64_t i = 0; i < m; i++)
				for (int64_t j = 0; j < n; j++) {
					double s = a % 2 ? bias[j] : 0;
					for (int64_t t = 0; t < k; t++)
						s += (double)x[i * k + t] * ref[j * k + t];
					double e = fabs(act_d(s, (kern_act)a) - y[i * n + j]);
					md = e > md ? e : md;
				}
			T_CHECK(md < 1e-4);
		}
		free(ref);
	}
	/* the fused forms on the CPU equal the plain ops */
	{
		kern_mat w = {KERN_F32, n, k, wf, NULL, 0}, ws[2] = {w, w};
		float *a = malloc(m * n * 4), *b2 = malloc(m * n * 4), *c2 = malloc(m * n * 4);
		float *outs[2] = {b2, c2};
		for (int64_t i = 0; i < m * n; i++) a[i] = y[i] = frand();
		T_EQ_INT(kern_linear_add(d, x, m, &w, a), 0);
		T_EQ_INT(kern_linear_multi(d, x, m, 2, ws, outs, NULL), 0);
		int ok = 1;
		for (int64_t i = 0; i < m * n; i++)
			ok &= fabsf(a[i] - (y[i] + b2[i])) < 1e-5f && b2[i] == c2[i];
		T_CHECK(ok);
		T_EQ_INT(kern_swiglu(d, x, m, &w, &w, a, NULL), 0);
		ok = 1;
		for (int64_t i = 0; i < m * n; i++)
			ok &= fabsf(a[i] - b2[i] / (1 + expf(-b2[i])) * b2[i]) < 1e-5f;
		T_CHECK(ok);
		free(a); free(b2); free(c2);
	}
	kern_mat bad = {KERN_I8, n, k, wq, NULL, 0};
	T_EQ_INT(kern_linear(d, x, m, &bad, NULL, KERN_ACT_NONE, y), -EINVAL);
	free(x); free(wf); free(bias); free(y); free(sc); free(wh); free(wq);
	kern_dev_close(d);
}

static void test_rope_norm_attention(void)
{
	kern_dev *d;
	T_EQ_INT(kern_dev_open("cpu", 2, &d), 0);
	int64_t m = 6, H = 4, KVH = 2, hd = 16, cap = 10, kvd = KVH * hd;
	float *q = malloc(m * H * hd * 4), *q0 = malloc(m * H * hd * 4), *kk = malloc(m * kvd * 4),
	      *vv = malloc(m * kvd * 4), *kc = calloc(cap * kvd, 4), *vc = calloc(cap * kvd, 4),
	      *out = malloc(m * H * hd * 4);
	int32_t pos[6] = {0, 1, 2, 3, 4, 5};
	for (int64_t i = 0; i < m * H * hd; i++) q[i] = q0[i] = frand();
	for (int64_t i = 0; i < m * kvd; i++) { kk[i] = frand(); vv[i] = frand(); }
	T_EQ_INT(kern_rope(d, q, pos, m, H, hd, 500.0f), 0);
	double md = 0;
	for (int64_t i = 0; i < m; i++)
		for (int64_t h = 0; h < H; h++)
			for (int64_t j = 0; j < hd / 2; j++) {
				double ang = pos[i] * pow(500.0, -2.0 * j / hd);
				const float *r0 = q0 + (i * H + h) * hd;
				double a = r0[j] * cos(ang) - r0[j + hd / 2] * sin(ang);
				double b = r0[j + hd / 2] * cos(ang) + r0[j] * sin(ang);
				const float *r = q + (i * H + h) * hd;
				md = fmax(md, fmax(fabs(a - r[j]), fabs(b - r[j + hd / 2])));
			}
	T_CHECK(md < 1e-5);
	T_EQ_INT(kern_kv_store(d, kk, vv, pos, m, kvd, kc, vc, cap), 0);
	T_EQ_INT(kern_attention(d, q, kc, vc, pos, m, H, KVH, hd, cap, 0.25f, out), 0);
	md = 0;
	for (int64_t i = 0; i < m; i++)
		for (int64_t h = 0; h < H; h++) {
			int64_t g = h / (H / KVH);
			double s[16], mx = -1e30, z = 0;
			for (int64_t j = 0; j <= pos[i]; j++) {
				s[j] = 0;
				for (int64_t t = 0; t < hd; t++)
					s[j] += (double)q[(i * H + h) * hd + t] * kk[j * kvd + g * hd + t];
				s[j] *= 0.25;
				mx = fmax(mx, s[j]);
			}
			for (int64_t j = 0; j <= pos[i]; j++) z += exp(s[j] - mx);
			for (int64_t t = 0; t < hd; t++) {
				double o = 0;
				for (int64_t j = 0; j <= pos[i]; j++)
					o += exp(s[j] - mx) / z * vv[j * kvd + g * hd + t];
				md = fmax(md, fabs(o - out[(i * H + h) * hd + t]));
			}
		}
	T_CHECK(md < 1e-5);
	float w[16], y[6 * 16];
	for (int i = 0; i < 16; i++) w[i] = frand();
	T_EQ_INT(kern_rmsnorm(d, q0, w, 6, 16, 1e-5f, y), 0);
	md = 0;
	for (int i = 0; i < 6; i++) {
		double ss = 0;
		for (int j = 0; j < 16; j++) ss += (double)q0[i * 16 + j] * q0[i * 16 + j];
		for (int j = 0; j < 16; j++)
			md = fmax(md, fabs(q0[i * 16 + j] / sqrt(ss / 16 + 1e-5) * w[j] - y[i * 16 + j]));
	}
	T_CHECK(md < 1e-5);
	T_EQ_INT(kern_attention(d, q, kc, vc, pos, m, 3, 2, hd, cap, 1, out), -EINVAL);
	free(q); free(q0); free(kk); free(vv); free(kc); free(vc); free(out);
	kern_dev_close(d);
}

static void test_argmax_sample(void)
{
	kern_dev *d;
	T_EQ_INT(kern_dev_open("cpu", 1, &d), 0);
	float x[8] = {0.5f, 2.0f, -1.0f, 2.0f, 1.0f, 0.0f, 1.9f, -3.0f}, lp;
	int32_t t;
	T_EQ_INT(kern_argmax(d, x, 1, 8, &t, &lp), 0);
	T_EQ_INT(t, 1);   /* lowest index on ties */
	double z = 0;
	for (int i = 0; i < 8; i++) z += exp(x[i] - 2.0);
	T_CHECK(fabs(lp + log(z)) < 1e-5);
	float u = 0.999f;
	T_EQ_INT(kern_sample(d, x, 1, 8, 1.0f, 1, 1.0f, &u, &t, NULL), 0);
	T_EQ_INT(t, 3);   /* top_k 1 keeps both tied maxima; u near 1 picks the later one */
	u = 0.0f;
	T_EQ_INT(kern_sample(d, x, 1, 8, 1.0f, 0, 1.0f, &u, &t, NULL), 0);
	T_EQ_INT(t, 0);   /* u = 0: the first token in index order */
	T_EQ_INT(kern_sample(d, x, 1, 8, 1.0f, 0, 0.01f, &u, &t, NULL), 0);
	T_EQ_INT(t, 1);   /* tiny top_p keeps only the maxima */
	/* inverse-CDF: u sweep over p = 0.1, 0.2, 0.3, 0.4 */
	float l4[4] = {logf(0.1f), logf(0.2f), logf(0.3f), logf(0.4f)};
	int cnt[4] = {0};
	for (int i = 0; i < 1000; i++) {
		u = (i + 0.5f) / 1000;
		kern_sample(d, l4, 1, 4, 1.0f, 0, 1.0f, &u, &t, &lp);
		cnt[t]++;
	}
	T_CHECK(abs(cnt[0] - 100) <= 1 && abs(cnt[1] - 200) <= 1 && abs(cnt[2] - 300) <= 1 &&
		abs(cnt[3] - 400) <= 1);
	/* top_p 0.6: keeps 0.4 and 0.3 (mass 0.7 >= 0.6), renormalized 3:4 */
	memset(cnt, 0, sizeof cnt);
	for (int i = 0; i < 700; i++) {
		u = (i + 0.5f) / 700;
		kern_sample(d, l4, 1, 4, 1.0f, 0, 0.6f, &u, &t, NULL);
		cnt[t]++;
	}
	T_CHECK(cnt[0] == 0 && cnt[1] == 0 && abs(cnt[2] - 300) <= 1 && abs(cnt[3] - 400) <= 1);
	/* top_k 3 drops 0.1 */
	memset(cnt, 0, sizeof cnt);
	for (int i = 0; i < 900; i++) {
		u = (i + 0.5f) / 900;
		kern_sample(d, l4, 1, 4, 1.0f, 3, 1.0f, &u, &t, NULL);
		cnt[t]++;
	}
	T_CHECK(cnt[0] == 0 && abs(cnt[1] - 200) <= 1 && abs(cnt[3] - 400) <= 1);
	T_EQ_INT(kern_sample(d, l4, 1, 4, 0.0f, 0, 1.0f, &u, &t, NULL), -EINVAL);
	float sm[4] = {1, 2, 3, 4};
	T_EQ_INT(kern_softmax(d, sm, 1, 4), 0);
	T_CHECK(fabs(sm[3] - exp(4) / (exp(1) + exp(2) + exp(3) + exp(4))) < 1e-6);
	kern_dev_close(d);
}

/* kern_argmax_feed: the argmax and its log-probability go to the next step and to the
 * history at position + 1; a position at or past cap leaves the history alone. */
static void test_argmax_feed(void)
{
	kern_dev *d;
	T_EQ_INT(kern_dev_open("cpu", 1, &d), 0);
	float x[6] = {0.5f, 3.0f, -1.0f, 3.0f, 2.0f, 0.0f};
	int32_t step[2] = {7, 2}, want;
	float wlp;
	int32_t *hist = kern_alloc_host(d, 5 * 4);
	float *lph = kern_alloc_host(d, 5 * 4);
	T_CHECK(hist && lph);
	T_EQ_INT(kern_argmax(d, x, 1, 6, &want, &wlp), 0);
	T_EQ_INT(want, 1);   /* lowest index of the tie */
	T_EQ_INT(kern_argmax_feed(d, x, 6, step, hist, lph, 5), 0);
	T_EQ_INT(step[0], 1);
	T_EQ_INT(step[1], 3);
	T_EQ_INT(hist[3], 1);
	T_CHECK(lph[3] == wlp && wlp < 0);
	T_EQ_INT(hist[2] | hist[4], 0);
	x[5] = 9.0f;
	T_EQ_INT(kern_argmax_feed(d, x, 6, step, hist, NULL, 5), 0);
	T_EQ_INT(hist[4], 5);
	T_EQ_INT(step[1], 4);
	T_EQ_INT(kern_argmax_feed(d, x, 6, step, hist, lph, 5), 0);   /* position 5: past cap */
	T_EQ_INT(step[0], 5);
	T_EQ_INT(step[1], 5);
	T_EQ_INT(kern_mark(d, 0), 0);
	T_EQ_INT(kern_wait_mark(d, KERN_MARKS - 1), 0);
	T_EQ_INT(kern_mark(d, KERN_MARKS), -EINVAL);
	T_EQ_INT(kern_argmax_feed(d, x, 0, step, hist, lph, 5), -EINVAL);
	T_EQ_INT(kern_argmax_feed(d, x, 6, NULL, hist, lph, 5), -EINVAL);
	kern_free_host(d, hist);
	kern_free_host(d, lph);
	kern_dev_close(d);
}

static void test_dev_open(void)
{
	kern_dev *d;
	T_EQ_INT(kern_dev_open("tpu", 0, &d), -EINVAL);
	T_EQ_INT(kern_dev_open("cuda:x", 0, &d), -EINVAL);
	if (kern_cuda_count() == 0)
		T_EQ_INT(kern_dev_open("cuda:0", 0, &d), -ENODEV);
	T_EQ_INT(kern_dev_open("cpu", 0, &d), 0);
	T_EQ_STR(kern_dev_name(d), "cpu");
	T_EQ_INT(kern_graph_begin(d), -ENOTSUP);
	T_EQ_INT(kern_dev_tuning(d)->feed_depth, 1);   /* the CPU's default depth */
	T_EQ_INT(kern_dev_tuning(d)->graphs, 1);
	kern_dev_close(d);
}

/* kern_tuning: checked at open, copied, feed_depth -1 resolved per device */
static void test_dev_tuning(void)
{
	kern_dev *d = NULL;
	kern_tuning t = KERN_TUNING_DEFAULT;
	T_EQ_INT(t.pdl, 1);
	T_EQ_INT(t.fused_attention, 1);
	T_EQ_INT(t.feed_depth, -1);
	T_EQ_INT(t.i8_mma_rows, 64);
	t.feed_depth = KERN_MARKS;
	T_EQ_INT(kern_dev_open_tuned("cpu", 1, &t, &d), -EINVAL);
	T_CHECK(d == NULL);
	t.feed_depth = -2;
	T_EQ_INT(kern_dev_open_tuned("cpu", 1, &t, &d), -EINVAL);
	t.feed_depth = 0;
	t.i8_gemm_rows = -1;
	T_EQ_INT(kern_dev_open_tuned("cpu", 1, &t, &d), -EINVAL);
	t.i8_gemm_rows = 24;
	t.i8_mma_rows = 65;   /* past the tensor-core kernel's 64 rows */
	T_EQ_INT(kern_dev_open_tuned("cpu", 1, &t, &d), -EINVAL);
	t.i8_mma_rows = -1;
	T_EQ_INT(kern_dev_open_tuned("cpu", 1, &t, &d), -EINVAL);
	t.i8_mma_rows = 0;
	t.feed_depth = 3;
	t.graphs = 0;
	T_EQ_INT(kern_dev_open_tuned("cpu", 1, &t, &d), 0);
	t.feed_depth = 1;   /* the device keeps its own copy */
	T_EQ_INT(kern_dev_tuning(d)->feed_depth, 3);
	T_EQ_INT((int)kern_dev_tuning(d)->i8_gemm_rows, 24);
	T_EQ_INT(kern_dev_tuning(d)->graphs, 0);
	kern_dev_close(d);
	T_EQ_INT(kern_dev_open_tuned("cpu", 1, NULL, &d), 0);
	T_EQ_INT(kern_dev_tuning(d)->feed_depth, 1);
	kern_dev_close(d);
	/* borrowed compute resources: GPU devices only, and one is needed */
	T_EQ_INT(kern_dev_open_compute("cpu", NULL, NULL, &d), -EINVAL);
	T_EQ_INT(kern_dev_open_compute("cuda:0", NULL, NULL, &d), -EINVAL);
	T_CHECK(d == NULL);
}

/* the chained ops equal their two calls on the CPU (kern.c composes them) and check shapes */
static void test_chained_ops(void)
{
	kern_dev *d;
	T_EQ_INT(kern_dev_open("cpu", 2, &d), 0);
	enum { M = 3, H = 4, KVH = 2, HD = 8, D = H * HD, KVD = KVH * HD, I = 12 };
	int32_t pos[M] = {0, 1, 2};
	float q[2][M * D], k[2][M * KVD], v[M * KVD], kc[2][M * KVD], vc[2][M * KVD];
	float att[2][M * D], y[2][M * D], g[2][M * I];
	float wo[D * D], wg[I * D], wu[I * D], wd[D * I], nw[D];
	float *ws[] = {wo, wg, wu, wd, nw, v};
	int ns[] = {D * D, I * D, I * D, D * I, D, M * KVD};
	unsigned r = 7;
	for (int i = 0; i < 6; i++)
		for (int j = 0; j < ns[i]; j++)
			ws[i][j] = (float)((r = r * 1103515245u + 12345u) >> 16 & 0x7fff) / 32768.f - 0.5f;
	for (int c = 0; c < 2; c++) {
		for (int j = 0; j < M * D; j++)
			q[c][j] = y[c][j] = (float)(j % 7) / 7.f - 0.4f;
		for (int j = 0; j < M * KVD; j++)
			k[c][j] = (float)(j % 5) / 5.f - 0.3f;
		memset(kc[c], 0, sizeof kc[c]);
		memset(vc[c], 0, sizeof vc[c]);
	}
	kern_mat mo = {KERN_F32, D, D, wo, NULL, 0}, mg = {KERN_F32, I, D, wg, NULL, 0};
	kern_mat mu = {KERN_F32, I, D, wu, NULL, 0}, md = {KERN_F32, D, I, wd, NULL, 0};
	kern_norm n = {nw, 1e-5f};
	T_EQ_INT(kern_rope_attention_proj(d, q[0], k[0], v, pos, M, H, KVH, HD, 1e4f, kc[0], vc[0], M,
					  0.3f, att[0], &mo, y[0]), 0);
	T_EQ_INT(kern_swiglu_proj(d, y[0], M, &mg, &mu, &n, g[0], &md, y[0]), 0);
	T_EQ_INT(kern_rope_attention(d, q[1], k[1], v, pos, M, H, KVH, HD, 1e4f, kc[1], vc[1], M,
				     0.3f, att[1]), 0);
	T_EQ_INT(kern_linear_add(d, att[1], M, &mo, y[1]), 0);
	T_EQ_INT(kern_swiglu(d, y[1], M, &mg, &mu, g[1], &n), 0);
	T_EQ_INT(kern_linear_add(d, g[1], M, &md, y[1]), 0);
	T_CHECK(memcmp(att[0], att[1], sizeof att[0]) == 0);
	T_CHECK(memcmp(g[0], g[1], sizeof g[0]) == 0);
	T_CHECK(memcmp(y[0], y[1], sizeof y[0]) == 0);
	/* shapes that do not chain */
	T_EQ_INT(kern_rope_attention_proj(d, q[0], k[0], v, pos, M, H, KVH, HD, 1e4f, kc[0], vc[0], M,
					  0.3f, att[0], &md, y[0]), -EINVAL);
	T_EQ_INT(kern_swiglu_proj(d, y[0], M, &mg, &mu, &n, g[0], &mo, y[0]), -EINVAL);
	T_EQ_INT(kern_swiglu_proj(d, y[0], M, &mg, &mu, &n, g[0], NULL, y[0]), -EINVAL);
	kern_dev_close(d);
}

void t_main(void)
{
	T_RUN(test_conversions);
	T_RUN(test_linear_all_dtypes);
	T_RUN(test_rope_norm_attention);
	T_RUN(test_argmax_sample);
	T_RUN(test_argmax_feed);
	T_RUN(test_dev_open);
	T_RUN(test_dev_tuning);
	T_RUN(test_chained_ops);
}

/* test_kern_attn.c — kern_rope_attention (a decode step's RoPE + KV append + attention in one
 * op): the CPU backend against a double-precision reference written here, and the CUDA op
 * (split over blocks, last block merges) against the CPU one at several head layouts, cache
 * capacities and positions, twice in a row and inside a replayed CUDA graph (the per-head
 * counters must reset), with outputs poisoned first; and the prefill attention (many rows) of
 * the CUDA op against the CPU one. */
#include <errno.h>
#define KT_SEED 4242u
#include "tests/kernels/kt.h"
#include "tests/t.h"

/* rotates x[heads, hd] at position p (rotate_half), in double */
static void ref_rope(double *x, int64_t heads, int64_t hd, int32_t p, double theta)
{
	int64_t half = hd / 2;
	for (int64_t h = 0; h < heads; h++)
		for (int64_t j = 0; j < half; j++) {
			double a = pow(theta, -(double)(2 * j) / (double)hd) * p;
			double *r = x + h * hd, x0 = r[j], x1 = r[j + half];
			r[j] = x0 * cos(a) - x1 * sin(a);
			r[j + half] = x1 * cos(a) + x0 * sin(a);
		}
}

/* the reference: out[heads, hd] for one row at position p over cache rows 0..p, where row p is
 * the rotated k and v given (rows < p from the caches) */
static void ref_attn(const float *q, const float *k, const float *v, const float *kc,
		     const float *vc, int64_t H, int64_t KVH, int64_t hd, int32_t p, double theta,
		     double scale, double *out)
{
	int64_t kvd = KVH * hd;
	double *qd = malloc((size_t)(H * hd) * 8), *kd = malloc((size_t)kvd * 8);
	double *sc = malloc((size_t)(p + 1) * 8);
	for (int64_t i = 0; i < H * hd; i++) qd[i] = q[i];
	for (int64_t i = 0; i < kvd; i++) kd[i] = k[i];
	ref_rope(qd, H, hd, p, theta);
	ref_rope(kd, KVH, hd, p, theta);
	for (int64_t h = 0; h < H; h++) {
		int64_t g = h / (H / KVH);
		double mx = -INFINITY, sum = 0;
		for (int32_t j = 0; j <= p; j++) {
			double s = 0;
			for (int64_t d = 0; d < hd; d++)
				s += qd[h * hd + d] * (j == p ? kd[g * hd + d] : kc[j * kvd + g * hd + d]);
			sc[j] = s * scale;
			mx = sc[j] > mx ? sc[j] : mx;
		}
		for (int32_t j = 0; j <= p; j++)
			sum += (sc[j] = exp(sc[j] - mx));
		for (int64_t d = 0; d < hd; d++) {
			double o = 0;
			for (int32_t j = 0; j <= p; j++)
				o += sc[j] / sum * (j == p ? v[g * hd + d] : vc[j * kvd + g * hd + d]);
			out[h * hd + d] = o;
		}
	}
	free(qd); free(kd); free(sc);
}

/* the CPU op against the double reference, and the newest cache row it wrote */
static void test_cpu_rope_attention(void)
{
	kern_dev *c = NULL;
	T_EQ_INT(kern_dev_open("cpu", 2, &c), 0);
	int cfg[][5] = {{4, 2, 16, 40, 7}, {8, 1, 64, 300, 250}, {6, 3, 32, 10, 0}, {2, 2, 128, 64, 63}};
	for (size_t t = 0; t < sizeof cfg / sizeof cfg[0]; t++) {
		int64_t H = cfg[t][0], KVH = cfg[t][1], hd = cfg[t][2], cap = cfg[t][3], kvd = KVH * hd;
		int32_t p = cfg[t][4];
		float *q = rnd(H * hd, 1), *k = rnd(kvd, 1), *v = rnd(kvd, 1);
		float *kc = rnd(cap * kvd, 1), *vc = rnd(cap * kvd, 1);
		float *q2 = malloc(H * hd * 4), *k2 = malloc(kvd * 4), *out = malloc(H * hd * 4);
		memcpy(q2, q, H * hd * 4);
		memcpy(k2, k, kvd * 4);
		double *want = malloc((size_t)(H * hd) * 8);
		double sc = 1.0 / sqrt((double)hd);
		ref_attn(q, k, v, kc, vc, H, KVH, hd, p, 10000.0, sc, want);
		T_EQ_INT(kern_rope_attention(c, q2, k2, v, &p, 1, H, KVH, hd, 10000.0f, kc, vc, cap,
					     (float)sc, out), 0);
		double worst = 0;
		for (int64_t i = 0; i < H * hd; i++)
			worst = fmax(worst, fabs(out[i] - want[i]));
		T_CHECK(worst < 2e-5);
		/* the newest row holds v as given and the rotated k */
		T_CHECK(!memcmp(vc + (int64_t)p * kvd, v, kvd * 4));
		double *kd = malloc((size_t)kvd * 8);
		for (int64_t i = 0; i < kvd; i++) kd[i] = k[i];
		ref_rope(kd, KVH, hd, p, 10000.0);
		for (int64_t i = 0; i < kvd; i++)
			T_CHECK(fabs(kc[(int64_t)p * kvd + i] - kd[i]) < 1e-5);
		free(kd); free(q); free(k); free(v); free(kc); free(vc); free(q2); free(k2);
		free(out); free(want);
	}
	int32_t p = 0;
	float x[16];
	T_EQ_INT(kern_rope_attention(c, x, x, x, &p, 1, 3, 2, 4, 1e4f, x, x, 4, 1.f, x), -EINVAL);
	T_EQ_INT(kern_rope_attention(c, x, x, x, &p, 1, 2, 2, 3, 1e4f, x, x, 4, 1.f, x), -EINVAL);
	kern_dev_close(c);
}

/* runs the GPU op at position p and compares output and caches with the CPU op's */
static int gpu_vs_cpu(int64_t H, int64_t KVH, int64_t hd, int64_t cap, int32_t p, int graph)
{
	int64_t kvd = KVH * hd;
	int ok = 1;
	float *q = rnd(H * hd, 1), *k = rnd(kvd, 1), *v = rnd(kvd, 1);
	float *kc = rnd(cap * kvd, 1), *vc = rnd(cap * kvd, 1);
	void *dq = up(q, H * hd * 4), *dk = up(k, kvd * 4), *dv = up(v, kvd * 4);
	void *dkc = up(kc, cap * kvd * 4), *dvc = up(vc, cap * kvd * 4);
	void *dpos = kern_alloc(G, 4), *dout = poisoned(H * hd * 4);
	float sc = 1.0f / sqrtf((float)hd);
	kern_graph *g = NULL;
	if (graph) {   /* captured at another position, replayed at p */
		int32_t p0 = 1;
		kern_copy_h2d(G, dpos, &p0, 4);
		ok &= kern_graph_begin(G) == 0;
		kern_rope_attention(G, dq, dk, dv, dpos, 1, H, KVH, hd, 10000.0f, dkc, dvc, cap, sc, dout);
		ok &= kern_graph_end(G, &g) == 0;
	}
	kern_copy_h2d(G, dpos, &p, 4);
	for (int rep = 0; rep < 2 && ok; rep++) {   /* twice: the counters must be back at zero */
		/* q and k are scratch (the composed path rotates them in place): fresh each time */
		kern_copy_h2d(G, dq, q, H * hd * 4);
		kern_copy_h2d(G, dk, k, kvd * 4);
		ok &= (graph ? kern_graph_launch(G, g)
			     : kern_rope_attention(G, dq, dk, dv, dpos, 1, H, KVH, hd, 10000.0f, dkc,
						   dvc, cap, sc, dout)) == 0;
	}
	float *oc = malloc(H * hd * 4), *og = NULL, *kg = NULL, *vg = NULL;
	kern_rope_attention(C, q, k, v, &p, 1, H, KVH, hd, 10000.0f, kc, vc, cap, sc, oc);
	if (ok) {
		og = down(dout, H * hd * 4);
		kg = down(dkc, cap * kvd * 4);
		vg = down(dvc, cap * kvd * 4);
		char what[160];
		snprintf(what, sizeof what, "rope_attention H%lld KVH%lld hd%lld cap%lld p%d%s",
			 (long long)H, (long long)KVH, (long long)hd, (long long)cap, p,
			 graph ? " graph" : "");
		ok &= close_f(og, oc, H * hd, 1e-5, 1e-4, what);
		ok &= close_f(kg, kc, cap * kvd, 2e-4, 1e-4, "k cache");
		ok &= !memcmp(vg, vc, cap * kvd * 4);
	}
	if (g)
		kern_graph_free(G, g);
	free(q); free(k); free(v); free(kc); free(vc); free(oc); free(og); free(kg); free(vg);
	void *bufs[] = {dq, dk, dv, dkc, dvc, dpos, dout};
	for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
		kern_free(G, bufs[i]);
	return ok;
}

static void test_cuda_rope_attention(void)
{
	if (!open_devs())
		T_SKIP("no GPU");
	/* H, KVH, hd, cap, p: one split and many; the newest key first, inside and last in its
	 * split; capacities that are not multiples of the split */
	int cfg[][5] = {{4, 2, 16, 300, 7}, {8, 1, 64, 300, 250}, {32, 4, 64, 2048, 383},
			{32, 4, 64, 384, 0}, {32, 4, 64, 4096, 4095}, {4, 4, 128, 600, 599},
			{2, 2, 256, 100, 50}, {8, 8, 32, 1000, 999}, {12, 4, 64, 129, 128}};
	for (size_t t = 0; t < sizeof cfg / sizeof cfg[0]; t++)
		T_CHECK(gpu_vs_cpu(cfg[t][0], cfg[t][1], cfg[t][2], cfg[t][3], cfg[t][4], 0));
	T_CHECK(gpu_vs_cpu(32, 4, 64, 2048, 700, 1));
	T_CHECK(gpu_vs_cpu(8, 2, 64, 256, 3, 1));
	/* more heads than the fused kernel's scratch holds: the composed path runs */
	T_CHECK(gpu_vs_cpu(264, 8, 64, 16, 9, 0));
}

/* Prefill attention (kern_attention, many rows: the tiled kernel of kc_attention.cu, one KV
 * head and up to 32 (row, head) pairs a block) against the CPU op: grouped-query ratios 1, 3,
 * 4, 8, head sizes 32 / 64 / 128 (256: the per-row kernel), a chunk whose rows start deep in a
 * cache with history, a last row at the last cache position, partial last tiles. */
static void test_cuda_prefill_attention(void)
{
	if (!open_devs())
		T_SKIP("no GPU");
	/* H, KVH, hd, m, first position, cap */
	int cfg[][6] = {{32, 4, 64, 512, 0, 512}, {32, 4, 64, 100, 37, 300}, {8, 8, 64, 40, 0, 64},
			{12, 4, 128, 64, 5, 80}, {4, 1, 32, 300, 0, 300}, {2, 2, 256, 40, 0, 40},
			{24, 3, 64, 17, 1000, 1017}, {16, 2, 128, 200, 0, 256}};
	for (size_t t = 0; t < sizeof cfg / sizeof cfg[0]; t++) {
		int64_t H = cfg[t][0], KVH = cfg[t][1], hd = cfg[t][2], m = cfg[t][3], cap = cfg[t][5];
		int64_t kvd = KVH * hd;
		int32_t *pos = malloc(m * 4);
		for (int64_t i = 0; i < m; i++)
			pos[i] = (int32_t)(cfg[t][4] + i);
		float *q = rnd(m * H * hd, 1), *kc = rnd(cap * kvd, 1), *vc = rnd(cap * kvd, 1);
		float *oc = malloc(m * H * hd * 4), sc = 1.0f / sqrtf((float)hd);
		kern_attention(C, q, kc, vc, pos, m, H, KVH, hd, cap, sc, oc);
		void *dq = up(q, m * H * hd * 4), *dkc = up(kc, cap * kvd * 4), *dvc = up(vc, cap * kvd * 4);
		void *dpos = up(pos, m * 4), *dout = poisoned(m * H * hd * 4);
		T_EQ_INT(kern_attention(G, dq, dkc, dvc, dpos, m, H, KVH, hd, cap, sc, dout), 0);
		float *og = down(dout, m * H * hd * 4);
		char what[128];
		snprintf(what, sizeof what, "prefill attention H%lld KVH%lld hd%lld m%lld p0 %d cap%lld",
			 (long long)H, (long long)KVH, (long long)hd, (long long)m, cfg[t][4],
			 (long long)cap);
		T_CHECK(close_f(og, oc, m * H * hd, 2e-5, 2e-4, what));
		free(og); free(oc); free(q); free(kc); free(vc); free(pos);
		kern_free(G, dq); kern_free(G, dkc); kern_free(G, dvc); kern_free(G, dpos);
		kern_free(G, dout);
	}
}

static void test_close(void)
{
	if (G)
		kern_dev_close(G);
	if (C)
		kern_dev_close(C);
	G = C = NULL;
}

void t_main(void)
{
	T_RUN(test_cpu_rope_attention);
	T_RUN(test_cuda_rope_attention);
	T_RUN(test_cuda_prefill_attention);
	T_RUN(test_close);
}

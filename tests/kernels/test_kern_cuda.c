/* test_kern_cuda.c — every CUDA op against the CPU reference op on fresh random inputs at
 * several sizes, tolerances by dtype; GPU outputs are poisoned (all bytes 0xFF = NaN / -1)
 * before each run, so an element the kernel forgot to write shows. Also a captured CUDA
 * graph replayed with new positions, and the chained ops whose product takes its input rounded
 * by the producer. Skips without a GPU. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "tests/t.h"
#define KT_SEED 4242
#include "tests/kernels/kt.h"
#include "pool/pool_compute.h"

/* same_f: bit-exact equality over n floats (conversions, gathers); reports the first miss */
static int same_f(const float *a, const float *b, size_t n, const char *what)
{
	for (size_t i = 0; i < n; i++)
		if (memcmp(&a[i], &b[i], 4)) {
			fprintf(stderr, "  %s: element %zu: gpu %g cpu %g\n", what, i, a[i], b[i]);
			return 0;
		}
	return 1;
}

static void test_cuda_linear(void)
{
	if (!open_devs())
		T_SKIP("no GPU");
	int64_t ms[] = {1, 3, 8, 9, 33, 70};   /* 33, 70: int8 products on dequantized BF16 */
	int64_t nk[][2] = {{64, 32}, {257, 96}, {1000, 520}, {50, 30}};
	for (size_t a = 0; a < sizeof nk / sizeof nk[0]; a++)
		for (int dt = 0; dt < 5; dt++)
			for (size_t mi = 0; mi < sizeof ms / sizeof ms[0]; mi++) {
				int64_t m = ms[mi], n = nk[a][0], k = nk[a][1];
				int blk = dt == 4 ? 32 : 0;
				if (blk && k % 32)
					continue;
				float *x = rnd(m * k, 1), *wf = rnd(n * k, 1), *b = rnd(n, 1);
				float *sc = rnd(n * (k / 32 + 1), 0.01f);
				void *wh;
				size_t wb;
				kern_dtype kd = dt == 0 ? KERN_F32 : dt == 1 ? KERN_F16 : dt == 2 ? KERN_BF16 : KERN_I8;
				if (dt == 0) { wh = wf; wb = n * k * 4; }
				else if (dt <= 2) {
					uint16_t *h = malloc(n * k * 2);
					for (int64_t i = 0; i < n * k; i++)
						h[i] = dt == 1 ? kern_f32_to_f16(wf[i]) : kern_f32_to_bf16(wf[i]);
					wh = h; wb = n * k * 2;
				} else {
					int8_t *q = malloc(n * k);
					for (int64_t i = 0; i < n * k; i++) q[i] = (int8_t)(wf[i] * 127);
					for (int64_t i = 0; i < n * (k / 32 + 1); i++) sc[i] = fabsf(sc[i]) + 0.001f;
					wh = q; wb = n * k;
				}
				kern_mat wc = {kd, n, k, wh, dt >= 3 ? sc : NULL, blk};
				kern_act act = (kern_act)((mi + dt) % 5);
				float *yc = malloc(m * n * 4);
				T_EQ_INT(kern_linear(C, x, m, &wc, mi % 2 ? b : NULL, act, yc), 0);
				void *dx = up(x, m * k * 4), *dw = up(wh, wb), *db = up(b, n * 4);
				void *ds = up(sc, n * (k / 32 + 1) * 4), *dy = poisoned(m * n * 4);
				kern_mat wg = {kd, n, k, dw, dt >= 3 ? ds : NULL, blk};
				T_EQ_INT(kern_linear(G, dx, m, &wg, mi % 2 ? db : NULL, act, dy), 0);
				float *yg = down(dy, m * n * 4);
				/* m > 8 with F16/BF16 weights, m > 32 with int8, go through cuBLAS with
				 * activations rounded (int8: to BF16, like the dequantized weights) */
				double rt = (m > 8 && (dt == 1 || dt == 2)) ? (dt == 2 ? 2e-2 : 4e-3)
					    : (m > 32 && dt >= 3) ? 2e-2 : 1e-4;
				char what[128];
				snprintf(what, sizeof what, "linear dt %d m %lld n %lld k %lld", dt,
					 (long long)m, (long long)n, (long long)k);
				T_CHECK(close_f(yg, yc, m * n, rt * sqrt((double)k) * 0.3, rt, what));
				kern_free(G, dx); kern_free(G, dw); kern_free(G, db); kern_free(G, ds);
				kern_free(G, dy);
				free(yg); free(yc); free(x); free(b); free(sc);
				if (wh != wf) free(wh);
				free(wf);
			}
}

static void test_cuda_elementwise(void)
{
	if (!open_devs())
		T_SKIP("no GPU");
	int64_t sizes[][2] = {{1, 64}, {5, 2048}, {3, 1000}};
	for (size_t si = 0; si < 3; si++) {
		int64_t m = sizes[si][0], n = sizes[si][1];
		float *x = rnd(m * n, 3), *x2 = rnd(m * n, 3), *w = rnd(n, 1), *yc = malloc(m * n * 4);
		void *dx = up(x, m * n * 4), *dx2 = up(x2, m * n * 4), *dw = up(w, n * 4), *dy;
		float *yg;
		/* rmsnorm */
		kern_rmsnorm(C, x, w, m, n, 1e-5f, yc);
		dy = poisoned(m * n * 4);
		T_EQ_INT(kern_rmsnorm(G, dx, dw, m, n, 1e-5f, dy), 0);
		yg = down(dy, m * n * 4);
		T_CHECK(close_f(yg, yc, m * n, 1e-5, 1e-5, "rmsnorm"));
		free(yg); kern_free(G, dy);
		/* silu_mul */
		kern_silu_mul(C, x, x2, m * n, yc);
		dy = poisoned(m * n * 4);
		T_EQ_INT(kern_silu_mul(G, dx, dx2, m * n, dy), 0);
		yg = down(dy, m * n * 4);
		T_CHECK(close_f(yg, yc, m * n, 1e-6, 1e-5, "silu_mul"));
		free(yg); kern_free(G, dy);
		/* bias_act, every activation */
		for (int a = 0; a <= KERN_ACT_SILU; a++) {
			memcpy(yc, x, m * n * 4);
			kern_bias_act(C, yc, w, m, n, (kern_act)a);
			dy = up(x, m * n * 4);
			T_EQ_INT(kern_bias_act(G, dy, dw, m, n, (kern_act)a), 0);
			yg = down(dy, m * n * 4);
			T_CHECK(close_f(yg, yc, m * n, 1e-6, 1e-5, "bias_act"));
			free(yg); kern_free(G, dy);
		}
		/* add */
		memcpy(yc, x, m * n * 4);
		kern_add(C, yc, x2, m * n);
		dy = up(x, m * n * 4);
		kern_add(G, dy, dx2, m * n);
		yg = down(dy, m * n * 4);
		T_CHECK(same_f(yg, yc, m * n, "add"));
		free(yg); kern_free(G, dy);
		/* softmax */
		memcpy(yc, x, m * n * 4);
		kern_softmax(C, yc, m, n);
		dy = up(x, m * n * 4);
		T_EQ_INT(kern_softmax(G, dy, m, n), 0);
		yg = down(dy, m * n * 4);
		T_CHECK(close_f(yg, yc, m * n, 1e-8, 1e-5, "softmax"));
		free(yg); kern_free(G, dy);
		/* cast from F16 / BF16 / F32 */
		for (int dt = 0; dt < 3; dt++) {
			uint16_t *h = malloc(m * n * 2);
			for (int64_t i = 0; i < m * n; i++)
				h[i] = dt == 1 ? kern_f32_to_f16(x[i]) : kern_f32_to_bf16(x[i]);
			kern_dtype kd = dt == 0 ? KERN_F32 : dt == 1 ? KERN_F16 : KERN_BF16;
			const void *src = dt == 0 ? (void *)x : (void *)h;
			kern_cast_f32(C, kd, src, yc, m * n);
			void *ds = up(src, m * n * (dt ? 2 : 4));
			dy = poisoned(m * n * 4);
			T_EQ_INT(kern_cast_f32(G, kd, ds, dy, m * n), 0);
			yg = down(dy, m * n * 4);
			T_CHECK(same_f(yg, yc, m * n, "cast"));
			free(yg); free(h); kern_free(G, dy); kern_free(G, ds);
		}
		/* argmax (+ logprob) and sampling */
		int32_t tc[5], *tg;
		float lc[5], *lg;
		kern_argmax(C, x, m, n, tc, lc);
		void *dt_ = poisoned(m * 4), *dl = poisoned(m * 4);
		T_EQ_INT(kern_argmax(G, dx, m, n, dt_, dl), 0);
		tg = (int32_t *)down(dt_, m * 4);
		lg = down(dl, m * 4);
		for (int64_t i = 0; i < m; i++) T_EQ_INT(tg[i], tc[i]);
		T_CHECK(close_f(lg, lc, m, 1e-5, 1e-4, "argmax logprob"));
		free(tg); free(lg);
		float us[5] = {0.1f, 0.5f, 0.93f, 0.0f, 0.77f};
		void *du = up(us, 5 * 4);
		int tks[] = {0, 1, 40}, mism = 0;
		float tps[] = {1.0f, 0.9f, 0.5f};
		for (int a = 0; a < 3; a++) {
			kern_sample(C, x, m, n, 0.7f, tks[a], tps[a], us, tc, lc);
			T_EQ_INT(kern_sample(G, dx, m, n, 0.7f, tks[a], tps[a], du, dt_, dl), 0);
			tg = (int32_t *)down(dt_, m * 4);
			lg = down(dl, m * 4);
			for (int64_t i = 0; i < m; i++) mism += tg[i] != tc[i];
			T_CHECK(close_f(lg, lc, m, 1e-4, 1e-4, "sample logprob"));
			free(tg); free(lg);
		}
		T_EQ_INT(mism, 0);
		kern_free(G, du); kern_free(G, dt_); kern_free(G, dl);
		kern_free(G, dx); kern_free(G, dx2); kern_free(G, dw);
		free(x); free(x2); free(w); free(yc);
	}
}

static void test_cuda_embed_rope_attention(void)
{
	if (!open_devs())
		T_SKIP("no GPU");
	int cfg[][4] = {{4, 2, 16, 7}, {8, 1, 64, 1}, {32, 4, 64, 33}, {4, 4, 128, 5}, {2, 2, 256, 3}};
	for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
		int64_t H = cfg[c][0], KVH = cfg[c][1], hd = cfg[c][2], m = cfg[c][3], cap = 300;
		int64_t kvd = KVH * hd, p0 = m == 1 ? 250 : 0;   /* decode deep into the cache */
		int32_t pos[64];
		for (int64_t i = 0; i < m; i++) pos[i] = (int32_t)(p0 + i);
		/* embedding: BF16 table */
		int64_t V = 100, D = H * hd;
		float *tf = rnd(V * D, 1);
		uint16_t *tb = malloc(V * D * 2);
		for (int64_t i = 0; i < V * D; i++) tb[i] = kern_f32_to_bf16(tf[i]);
		int32_t tok[64];
		for (int64_t i = 0; i < m; i++) tok[i] = (int32_t)((i * 37) % V);
		float *ec = malloc(m * D * 4);
		kern_embed(C, KERN_BF16, tb, V, D, tok, m, ec);
		void *dtb = up(tb, V * D * 2), *dtok = up(tok, m * 4), *de = poisoned(m * D * 4);
		T_EQ_INT(kern_embed(G, KERN_BF16, dtb, V, D, dtok, m, de), 0);
		float *eg = down(de, m * D * 4);
		T_CHECK(same_f(eg, ec, m * D, "embed"));
		free(eg); free(ec); free(tf); free(tb);
		kern_free(G, dtb); kern_free(G, dtok); kern_free(G, de);
		/* rope on q */
		float *q = rnd(m * H * hd, 1), *qc = malloc(m * H * hd * 4);
		memcpy(qc, q, m * H * hd * 4);
		kern_rope(C, qc, pos, m, H, hd, 10000.0f);
		void *dq = up(q, m * H * hd * 4), *dpos = up(pos, m * 4);
		T_EQ_INT(kern_rope(G, dq, dpos, m, H, hd, 10000.0f), 0);
		float *qg = down(dq, m * H * hd * 4);
		T_CHECK(close_f(qg, qc, m * H * hd, 2e-4, 1e-4, "rope"));
		free(qg);
		/* caches pre-filled with history, then the new rows stored at pos */
		float *kc = rnd(cap * kvd, 1), *vc = rnd(cap * kvd, 1), *kn = rnd(m * kvd, 1),
		      *vn = rnd(m * kvd, 1);
		void *dkc = up(kc, cap * kvd * 4), *dvc = up(vc, cap * kvd * 4);
		void *dkn = up(kn, m * kvd * 4), *dvn = up(vn, m * kvd * 4);
		kern_kv_store(C, kn, vn, pos, m, kvd, kc, vc, cap);
		T_EQ_INT(kern_kv_store(G, dkn, dvn, dpos, m, kvd, dkc, dvc, cap), 0);
		float *kg = down(dkc, cap * kvd * 4);
		T_CHECK(!memcmp(kg, kc, cap * kvd * 4));
		free(kg);
		float *oc = malloc(m * H * hd * 4);
		float sc = 1.0f / sqrtf((float)hd);
		kern_attention(C, qc, kc, vc, pos, m, H, KVH, hd, cap, sc, oc);
		void *dout = poisoned(m * H * hd * 4);
		T_EQ_INT(kern_attention(G, dq, dkc, dvc, dpos, m, H, KVH, hd, cap, sc, dout), 0);
		float *og = down(dout, m * H * hd * 4);
		char what[128];
		snprintf(what, sizeof what, "attention H%lld KVH%lld hd%lld m%lld", (long long)H,
			 (long long)KVH, (long long)hd, (long long)m);
		T_CHECK(close_f(og, oc, m * H * hd, 1e-5, 1e-4, what));
		free(og); free(oc); free(q); free(qc); free(kc); free(vc); free(kn); free(vn);
		kern_free(G, dq); kern_free(G, dpos); kern_free(G, dkc); kern_free(G, dvc);
		kern_free(G, dkn); kern_free(G, dvn); kern_free(G, dout);
	}
}

/* a captured graph reads its position from device memory: replay at two positions */
static void test_cuda_graph_replay(void)
{
	if (!open_devs())
		T_SKIP("no GPU");
	int64_t H = 4, hd = 64;
	float *q = rnd(H * hd, 1);
	void *dq = up(q, H * hd * 4), *dpos = kern_alloc(G, 4), *dq2 = kern_alloc(G, H * hd * 4);
	T_EQ_INT(kern_graph_begin(G), 0);
	kern_copy_d2d(G, dq2, dq, H * hd * 4);
	kern_rope(G, dq2, dpos, 1, H, hd, 10000.0f);
	kern_graph *g = NULL;
	T_EQ_INT(kern_graph_end(G, &g), 0);
	for (int32_t p = 3; p < 200; p += 150) {
		kern_copy_h2d(G, dpos, &p, 4);
		T_EQ_INT(kern_graph_launch(G, g), 0);
		float *r = down(dq2, H * hd * 4), *c = malloc(H * hd * 4);
		memcpy(c, q, H * hd * 4);
		kern_rope(C, c, &p, 1, H, hd, 10000.0f);
		T_CHECK(close_f(r, c, H * hd, 2e-4, 1e-4, "graph rope"));
		free(r); free(c);
	}
	kern_graph_free(G, g);
	kern_free(G, dq); kern_free(G, dpos); kern_free(G, dq2);
	free(q);
}

/* kern_argmax_feed on the GPU against the CPU's, at sizes from one block to 64 (ties across
 * blocks, a maximum in the last element), into host memory the kernel writes (kern_alloc_host,
 * read after a mark), direct and replayed in a graph that advances the position itself. */
static void test_cuda_argmax_feed(void)
{
	if (!open_devs())
		T_SKIP("no GPU");
	const int64_t ns[] = {1, 31, 1000, 1025, 32000, 128256, 200000};
	int64_t cap = 64;
	int32_t *hist = kern_alloc_host(G, cap * 4);
	float *lph = kern_alloc_host(G, cap * 4);
	T_CHECK(hist && lph);
	if (!hist || !lph)
		return;
	for (size_t t = 0; t < sizeof ns / sizeof ns[0]; t++) {
		int64_t n = ns[t];
		float *x = rnd(n, 4);
		if (t == 4) {   /* a tie in two blocks: the lower index wins */
			x[31000] = 9.0f;
			x[1500] = 9.0f;
		}
		if (t == 5)
			x[n - 1] = 7.5f;
		void *dx = up(x, n * 4);
		int32_t st[2] = {0, (int32_t)t}, want, *dst = up(st, 8);
		float wlp;
		kern_argmax(C, x, 1, n, &want, &wlp);
		T_EQ_INT(kern_argmax_feed(G, dx, n, dst, hist, lph, cap), 0);
		T_EQ_INT(kern_mark(G, 1), 0);
		T_EQ_INT(kern_wait_mark(G, 1), 0);
		int32_t *gs = (int32_t *)down(dst, 8);
		T_EQ_INT(((volatile int32_t *)hist)[t + 1], want);
		T_CHECK(close_f((const float *)&lph[t + 1], &wlp, 1, 1e-5, 1e-4, "feed logprob"));
		T_EQ_INT(gs[0], want);
		T_EQ_INT(gs[1], (int32_t)t + 1);
		free(gs);
		kern_free(G, dst);
		kern_free(G, dx);
		free(x);
	}
	/* a graph replayed 20 times: the position and history advance on the device */
	int64_t n = 32000;
	float *x = rnd(n, 4);
	void *dx = up(x, n * 4);
	int32_t st[2] = {0, 9}, *dst = up(st, 8);
	T_EQ_INT(kern_graph_begin(G), 0);
	kern_argmax_feed(G, dx, n, dst, hist, lph, cap);
	kern_graph *g = NULL;
	T_EQ_INT(kern_graph_end(G, &g), 0);
	for (int i = 0; i < 20; i++)
		T_EQ_INT(kern_graph_launch(G, g), 0);
	T_EQ_INT(kern_mark(G, 2), 0);
	T_EQ_INT(kern_wait_mark(G, 2), 0);
	int32_t want;
	kern_argmax(C, x, 1, n, &want, NULL);
	int ok = 1;
	for (int i = 10; i <= 29; i++)
		ok &= ((volatile int32_t *)hist)[i] == want;
	T_CHECK(ok);
	int32_t *gs = (int32_t *)down(dst, 8);
	T_EQ_INT(gs[1], 29);
	free(gs);
	kern_graph_free(G, g);
	kern_free(G, dst);
	kern_free(G, dx);
	free(x);
	kern_free_host(G, hist);
	kern_free_host(G, lph);
}

/* fused decoder ops: linear_add, linear_multi (q, k, v), swiglu, rope_kv vs the CPU's */
static void test_cuda_fused(void)
{
	if (!open_devs())
		T_SKIP("no GPU");
	/* 40: int8 on the tensor-core kernel (kc_i8_mma.cu); the last one on dequantized BF16
	 * through cuBLAS in chunks of 24 weight rows, on a second handle of the GPU opened with
	 * that tuning (every buffer of the round on it) */
	int64_t ms[] = {1, 1, 5, 8, 20, 20, 40, 40};
	kern_tuning t24 = KERN_TUNING_DEFAULT;
	t24.i8_gemm_rows = 24;
	t24.i8_mma_rows = 0;   /* 40 rows to cuBLAS, not the tensor-core kernel */
	kern_dev *G0 = G, *G24 = NULL;
	T_EQ_INT(kern_dev_open_tuned("cuda:0", 0, &t24, &G24), 0);
	for (int dt = 0; dt < 5; dt++)
		for (int mi = 0; mi < 8; mi++) {
			int64_t m = ms[mi], k = 256, ns[3] = {256, 64, 64};
			G = mi == 7 && G24 ? G24 : G0;
			int blk = dt == 4 ? 32 : 0;
			kern_dtype kd = dt == 0 ? KERN_F32 : dt == 1 ? KERN_F16 : dt == 2 ? KERN_BF16 : KERN_I8;
			kern_mat wc[3], wg[3];
			void *hw[3], *dw[3], *ds[3];
			float *hs[3];
			for (int i = 0; i < 3; i++) {
				size_t cnt = (size_t)(ns[i] * k), es = kern_dtype_size(kd);
				float *f = rnd(cnt, 1);
				hw[i] = malloc(cnt * es);
				for (size_t j = 0; j < cnt; j++) {
					if (kd == KERN_F32) ((float *)hw[i])[j] = f[j];
					else if (kd == KERN_F16) ((uint16_t *)hw[i])[j] = kern_f32_to_f16(f[j]);
					else if (kd == KERN_BF16) ((uint16_t *)hw[i])[j] = kern_f32_to_bf16(f[j]);
					else ((int8_t *)hw[i])[j] = (int8_t)(f[j] * 127);
				}
				hs[i] = rnd((size_t)ns[i] * (k / 32), 0.01f);
				for (int64_t j = 0; j < ns[i] * (k / 32); j++) hs[i][j] = fabsf(hs[i][j]) + 1e-3f;
				dw[i] = up(hw[i], cnt * es);
				ds[i] = up(hs[i], (size_t)ns[i] * (k / 32) * 4);
				wc[i] = (kern_mat){kd, ns[i], k, hw[i], kd == KERN_I8 ? hs[i] : NULL, blk};
				wg[i] = (kern_mat){kd, ns[i], k, dw[i], kd == KERN_I8 ? ds[i] : NULL, blk};
				free(f);
			}
			double rt = (m > 8 && (dt == 1 || dt == 2)) || (m > 32 && dt >= 3) ? 2e-2 : 1e-4,
			       at = rt * 5;
			float *x = rnd((size_t)(m * k), 1);
			void *dx = up(x, (size_t)(m * k) * 4);
			/* linear_multi */
			float *yc[3], *yg[3];
			void *dy[3];
			for (int i = 0; i < 3; i++) {
				yc[i] = malloc((size_t)(m * ns[i]) * 4);
				dy[i] = poisoned((size_t)(m * ns[i]) * 4);
			}
			/* with an RMSNorm of x fused in on odd m index, plain otherwise */
			float *nwh = rnd((size_t)k, 1);
			void *nwd = up(nwh, (size_t)k * 4);
			kern_norm nc = {nwh, 1e-5f}, ng = {nwd, 1e-5f};
			const kern_norm *pc = mi % 2 ? &nc : NULL, *pg = mi % 2 ? &ng : NULL;
			T_EQ_INT(kern_linear_multi(C, x, m, 3, wc, yc, pc), 0);
			T_EQ_INT(kern_linear_multi(G, dx, m, 3, wg, (float *const *)dy, pg), 0);
			for (int i = 0; i < 3; i++) {
				yg[i] = down(dy[i], (size_t)(m * ns[i]) * 4);
				T_CHECK(close_f(yg[i], yc[i], (size_t)(m * ns[i]), at, rt, "linear_multi"));
			}
			/* linear_add into yc[1] / dy[1] (64 outputs from 256 inputs: wc[1]) */
			float *base = rnd((size_t)(m * ns[1]), 1);
			memcpy(yc[1], base, (size_t)(m * ns[1]) * 4);
			kern_copy_h2d(G, dy[1], base, (size_t)(m * ns[1]) * 4);
			T_EQ_INT(kern_linear_add(C, x, m, &wc[1], yc[1]), 0);
			T_EQ_INT(kern_linear_add(G, dx, m, &wg[1], dy[1]), 0);
			free(yg[1]);
			yg[1] = down(dy[1], (size_t)(m * ns[1]) * 4);
			T_CHECK(close_f(yg[1], yc[1], (size_t)(m * ns[1]), at, rt, "linear_add"));
			/* swiglu with wc[1], wc[2] (same shape) */
			float *sc_ = malloc((size_t)(m * 64) * 4);
			void *dsg = poisoned((size_t)(m * 64) * 4);
			T_EQ_INT(kern_swiglu(C, x, m, &wc[1], &wc[2], sc_, pc), 0);
			T_EQ_INT(kern_swiglu(G, dx, m, &wg[1], &wg[2], dsg, pg), 0);
			float *sg = down(dsg, (size_t)(m * 64) * 4);
			char sw[64];
			snprintf(sw, sizeof sw, "swiglu dt %d m %lld%s", dt, (long long)m,
				 pc ? " norm" : "");
			/* on rounded products silu(g) * u can lose the rounding error of the larger
			 * of g and u to cancellation: bound by the outputs' scale instead */
			double big = 0;
			for (int64_t i = 0; i < m * 64; i++)
				big = fabs(sc_[i]) > big ? fabs(sc_[i]) : big;
			double sat = rt >= 2e-2 && rt * big > at ? rt * big : at;
			T_CHECK(close_f(sg, sc_, (size_t)(m * 64), sat, rt * 2, sw));
			free(sc_); free(sg); kern_free(G, dsg); free(base); free(nwh); kern_free(G, nwd);
			for (int i = 0; i < 3; i++) {
				free(yc[i]); free(yg[i]); kern_free(G, dy[i]); kern_free(G, dw[i]);
				kern_free(G, ds[i]); free(hw[i]); free(hs[i]);
			}
			kern_free(G, dx);
			free(x);
		}
	G = G0;
	kern_dev_close(G24);
	/* rope_kv vs rope + rope + kv_store on the CPU */
	int64_t m = 3, H = 8, KVH = 2, hd = 64, cap = 40, kvd = KVH * hd;
	int32_t pos[3] = {17, 18, 19};
	float *q = rnd(m * H * hd, 1), *k = rnd(m * kvd, 1), *v = rnd(m * kvd, 1);
	float *kc = rnd(cap * kvd, 1), *vc = rnd(cap * kvd, 1);
	void *dq = up(q, m * H * hd * 4), *dk = up(k, m * kvd * 4), *dv = up(v, m * kvd * 4),
	     *dkc = up(kc, cap * kvd * 4), *dvc = up(vc, cap * kvd * 4), *dp = up(pos, 12);
	kern_rope(C, q, pos, m, H, hd, 5e5f);
	kern_rope(C, k, pos, m, KVH, hd, 5e5f);
	kern_kv_store(C, k, v, pos, m, kvd, kc, vc, cap);
	T_EQ_INT(kern_rope_kv(G, dq, dk, dv, dp, m, H, KVH, hd, 5e5f, dkc, dvc, cap), 0);
	float *gq = down(dq, m * H * hd * 4), *gkc = down(dkc, cap * kvd * 4),
	      *gvc = down(dvc, cap * kvd * 4);
	T_CHECK(close_f(gq, q, m * H * hd, 2e-4, 1e-4, "rope_kv q"));
	T_CHECK(close_f(gkc, kc, cap * kvd, 2e-4, 1e-4, "rope_kv kcache"));
	T_CHECK(same_f(gvc, vc, cap * kvd, "rope_kv vcache"));
	free(gq); free(gkc); free(gvc); free(q); free(k); free(v); free(kc); free(vc);
	kern_free(G, dq); kern_free(G, dk); kern_free(G, dv); kern_free(G, dkc); kern_free(G, dvc);
	kern_free(G, dp);
}

/* int8 rows long enough that the decode GEMV prefetches 8 or 12 vectors a lane or streams the
 * rest in a loop (k = 2560, 6016, 7168), m = 1 and 3, per-row and 32-block scales, with bias */
static void test_cuda_i8_long(void)
{
	if (!open_devs())
		T_SKIP("no GPU");
	int64_t nk[][2] = {{37, 2560}, {70, 6016}, {21, 7168}}, ms[] = {1, 3};
	for (size_t a = 0; a < 3; a++)
		for (int blk = 0; blk <= 32; blk += 32)
			for (int mi = 0; mi < 2; mi++) {
				int64_t m = ms[mi], n = nk[a][0], k = nk[a][1];
				int64_t ns = blk ? n * (k / 32) : n;
				float *x = rnd((size_t)(m * k), 1), *wf = rnd((size_t)(n * k), 1);
				float *b = rnd((size_t)n, 1), *sc = rnd((size_t)ns, 0.01f);
				int8_t *q = malloc((size_t)(n * k));
				for (int64_t i = 0; i < n * k; i++) q[i] = (int8_t)(wf[i] * 127);
				for (int64_t i = 0; i < ns; i++) sc[i] = fabsf(sc[i]) + 0.001f;
				kern_mat wc = {KERN_I8, n, k, q, sc, blk};
				float *yc = malloc((size_t)(m * n) * 4);
				T_EQ_INT(kern_linear(C, x, m, &wc, b, KERN_ACT_NONE, yc), 0);
				void *dx = up(x, (size_t)(m * k) * 4), *dw = up(q, (size_t)(n * k));
				void *db = up(b, (size_t)n * 4), *ds = up(sc, (size_t)ns * 4);
				void *dy = poisoned((size_t)(m * n) * 4);
				kern_mat wg = {KERN_I8, n, k, dw, ds, blk};
				T_EQ_INT(kern_linear(G, dx, m, &wg, db, KERN_ACT_NONE, dy), 0);
				float *yg = down(dy, (size_t)(m * n) * 4);
				T_CHECK(close_f(yg, yc, (size_t)(m * n), 1e-4 * sqrt((double)k) * 0.3, 1e-4,
						"i8 long linear"));
				kern_free(G, dx); kern_free(G, dw); kern_free(G, db); kern_free(G, ds);
				kern_free(G, dy);
				free(yg); free(yc); free(x); free(wf); free(b); free(sc); free(q);
			}
}

/* int8 products of decode batches, m = 2 .. 64 rows, against the CPU: up to 8 rows one GEMV
 * pass, up to 32 the GEMV in passes of 8 rows, past that the tensor-core kernel that reads the
 * weights once (kc_i8_mma.cu: k split over blocks, the splits summed) or, with
 * kern_tuning.i8_mma_rows = 0 or a k it does not take (not a multiple of 64), the weights
 * dequantized for cuBLAS; kern_linear with bias + activation and kern_linear_add (residual),
 * per-row and 32-block scales, feature counts that are not a multiple of the kernel's 128 */
static void test_cuda_i8_batch(void)
{
	if (!open_devs())
		T_SKIP("no GPU");
	kern_tuning t0 = KERN_TUNING_DEFAULT;
	t0.i8_mma_rows = 0;
	kern_dev *G0 = G, *Goff = NULL;
	T_EQ_INT(kern_dev_open_tuned("cuda:0", 0, &t0, &Goff), 0);
	int64_t nk[][2] = {{300, 256}, {2048, 2048}, {77, 4160}, {130, 96}};
	for (size_t a = 0; a < sizeof nk / sizeof nk[0]; a++)
		for (int blk = 0; blk <= 32; blk += 32)
			for (int64_t m = 2; m <= 64; m += a == 0 ? 1 : 7) {
				int64_t n = nk[a][0], k = nk[a][1], ns = blk ? n * (k / 32) : n;
				/* the product without the tensor-core kernel, on a device opened so */
				G = m >= 33 && m % 2 == 0 && a == 0 && Goff ? Goff : G0;
				float *x = rnd((size_t)(m * k), 1), *wf = rnd((size_t)(n * k), 1);
				float *b = rnd((size_t)n, 1), *sc = rnd((size_t)ns, 0.01f);
				float *base = rnd((size_t)(m * n), 1);
				int8_t *q = malloc((size_t)(n * k));
				for (int64_t i = 0; i < n * k; i++) q[i] = (int8_t)(wf[i] * 127);
				for (int64_t i = 0; i < ns; i++) sc[i] = fabsf(sc[i]) + 0.001f;
				kern_mat wc = {KERN_I8, n, k, q, sc, blk};
				kern_act act = (kern_act)(m % 5);
				float *yc = malloc((size_t)(m * n) * 4), *yc2 = malloc((size_t)(m * n) * 4);
				memcpy(yc2, base, (size_t)(m * n) * 4);
				T_EQ_INT(kern_linear(C, x, m, &wc, b, act, yc), 0);
				T_EQ_INT(kern_linear_add(C, x, m, &wc, yc2), 0);
				void *dx = up(x, (size_t)(m * k) * 4), *dw = up(q, (size_t)(n * k));
				void *db = up(b, (size_t)n * 4), *ds = up(sc, (size_t)ns * 4);
				void *dy = poisoned((size_t)(m * n) * 4), *dy2 = up(base, (size_t)(m * n) * 4);
				kern_mat wg = {KERN_I8, n, k, dw, ds, blk};
				T_EQ_INT(kern_linear(G, dx, m, &wg, db, act, dy), 0);
				T_EQ_INT(kern_linear_add(G, dx, m, &wg, dy2), 0);
				float *yg = down(dy, (size_t)(m * n) * 4), *yg2 = down(dy2, (size_t)(m * n) * 4);
				/* past 32 rows the activations are rounded to BF16 (and 32-block weights
				 * dequantized to BF16) */
				double rt = m > 32 ? 2e-2 : 1e-4;
				char what[128];
				snprintf(what, sizeof what, "i8 batch linear m %lld n %lld k %lld blk %d%s",
					 (long long)m, (long long)n, (long long)k, blk, G == Goff ? " (mma off)" : "");
				T_CHECK(close_f(yg, yc, (size_t)(m * n), rt * sqrt((double)k) * 0.3, rt, what));
				snprintf(what, sizeof what, "i8 batch linear_add m %lld n %lld k %lld blk %d%s",
					 (long long)m, (long long)n, (long long)k, blk, G == Goff ? " (mma off)" : "");
				T_CHECK(close_f(yg2, yc2, (size_t)(m * n), rt * sqrt((double)k) * 0.3, rt, what));
				kern_free(G, dx); kern_free(G, dw); kern_free(G, db); kern_free(G, ds);
				kern_free(G, dy); kern_free(G, dy2);
				free(yg); free(yg2); free(yc); free(yc2); free(x); free(wf); free(b); free(sc);
				free(q); free(base);
			}
	G = G0;
	if (Goff)
		kern_dev_close(Goff);
}

/* int8 products of one input row with many output rows (the decode GEMV whose warps loop over
 * several rows each): linear_multi with an RMSNorm and swiglu, per-row and 32-block scales */
static void test_cuda_i8_tall(void)
{
	if (!open_devs())
		T_SKIP("no GPU");
	int64_t n = 9000, k = 128;
	for (int blk = 0; blk <= 32; blk += 32) {
		int64_t ns = blk ? n * (k / 32) : n;
		kern_mat wc[3], wg[3];
		int8_t *hq[3];
		float *hs[3];
		void *dq[3], *ds[3];
		for (int i = 0; i < 3; i++) {
			float *f = rnd((size_t)(n * k), 1);
			hq[i] = malloc((size_t)(n * k));
			for (int64_t j = 0; j < n * k; j++) hq[i][j] = (int8_t)(f[j] * 127);
			hs[i] = rnd((size_t)ns, 0.01f);
			for (int64_t j = 0; j < ns; j++) hs[i][j] = fabsf(hs[i][j]) + 1e-3f;
			dq[i] = up(hq[i], (size_t)(n * k));
			ds[i] = up(hs[i], (size_t)ns * 4);
			wc[i] = (kern_mat){KERN_I8, n, k, hq[i], hs[i], blk};
			wg[i] = (kern_mat){KERN_I8, n, k, dq[i], ds[i], blk};
			free(f);
		}
		float *x = rnd((size_t)k, 1), *nwh = rnd((size_t)k, 1);
		void *dx = up(x, (size_t)k * 4), *nwd = up(nwh, (size_t)k * 4);
		kern_norm nc = {nwh, 1e-5f}, ng = {nwd, 1e-5f};
		float *yc[3];
		void *dy[3];
		for (int i = 0; i < 3; i++) {
			yc[i] = malloc((size_t)n * 4);
			dy[i] = poisoned((size_t)n * 4);
		}
		T_EQ_INT(kern_linear_multi(C, x, 1, 3, wc, yc, &nc), 0);
		T_EQ_INT(kern_linear_multi(G, dx, 1, 3, wg, (float *const *)dy, &ng), 0);
		for (int i = 0; i < 3; i++) {
			float *yg = down(dy[i], (size_t)n * 4);
			T_CHECK(close_f(yg, yc[i], (size_t)n, 5e-4, 1e-4, "i8 tall linear_multi"));
			free(yg);
		}
		T_EQ_INT(kern_swiglu(C, x, 1, &wc[0], &wc[1], yc[2], &nc), 0);
		T_EQ_INT(kern_swiglu(G, dx, 1, &wg[0], &wg[1], dy[2], &ng), 0);
		float *yg = down(dy[2], (size_t)n * 4);
		T_CHECK(close_f(yg, yc[2], (size_t)n, 1e-3, 2e-4, "i8 tall swiglu"));
		free(yg);
		for (int i = 0; i < 3; i++) {
			free(yc[i]); kern_free(G, dy[i]); free(hq[i]); free(hs[i]);
			kern_free(G, dq[i]); kern_free(G, ds[i]);
		}
		free(x); free(nwh); kern_free(G, dx); kern_free(G, nwd);
	}
}

/* a weight matrix in F16/BF16 on both devices */
typedef struct xt_w {
	kern_mat c, g;
	uint16_t *h;
	void *d;
} xt_w;

static void xt_w_make(xt_w *w, kern_dtype dt, int64_t n, int64_t k)
{
	float *f = rnd((size_t)(n * k), 1);
	w->h = malloc((size_t)(n * k) * 2);
	for (int64_t i = 0; i < n * k; i++)
		w->h[i] = dt == KERN_F16 ? kern_f32_to_f16(f[i]) : kern_f32_to_bf16(f[i]);
	w->d = up(w->h, (size_t)(n * k) * 2);
	w->c = (kern_mat){dt, n, k, w->h, NULL, 0};
	w->g = (kern_mat){dt, n, k, w->d, NULL, 0};
	free(f);
}

static void xt_w_free(xt_w *w)
{
	free(w->h);
	kern_free(G, w->d);
}

/* the GPU's [n] floats at dy against want: relative tolerance rt, absolute rt times want's RMS
 * (products of rounded activations: the error scales with the terms, not with the sum) */
static int xt_close(const void *dy, const float *want, size_t n, double rt, const char *what)
{
	double ss = 0;
	for (size_t i = 0; i < n; i++)
		ss += (double)want[i] * want[i];
	float *got = down(dy, n * 4);
	int ok = close_f(got, want, n, rt * sqrt(ss / (double)n) + 1e-6, rt, what);
	free(got);
	return ok;
}

/* two device buffers of n floats hold the same bits */
static int xt_same(const void *a, const void *b, size_t n, const char *what)
{
	float *x = down(a, n * 4), *y = down(b, n * 4);
	int ok = same_f(x, y, n, what);
	free(x);
	free(y);
	return ok;
}

/* The chained ops kern_rope_attention_proj and kern_swiglu_proj (in a prefill the producer
 * writes its output also rounded for the cuBLAS product that follows inside the op) give
 * bit for bit what the separate calls give on the GPU (the product rounds the same F32 values
 * itself there), and match the CPU's (kern.c composes them there), at decode (1 row, GEMV) and
 * prefill (20 rows, cuBLAS) sizes, BF16 and F16 weights; the swiglu form also with y == x. */
static void test_cuda_chained(void)
{
	if (!open_devs())
		T_SKIP("no GPU");
	const int64_t H = 4, KVH = 2, hd = 64, D = H * hd, kvd = KVH * hd, I = 96, M = 20;
	const float sc = 0.125f, th = 1e4f;
	int32_t pos[20];
	for (int i = 0; i < M; i++)
		pos[i] = i;
	float *q = rnd((size_t)(M * D), 1), *k = rnd((size_t)(M * kvd), 1);
	float *v = rnd((size_t)(M * kvd), 1), *x = rnd((size_t)(M * D), 1);
	float *nw = rnd((size_t)D, 1), *base = rnd((size_t)(M * D), 1);
	void *dpos = up(pos, (size_t)M * 4), *dv = up(v, (size_t)(M * kvd) * 4);
	void *dnw = up(nw, (size_t)D * 4);
	kern_norm nc = {nw, 1e-5f}, ng = {dnw, 1e-5f};
	for (int di = 0; di < 2; di++)
		for (int mi = 0; mi < 2; mi++) {
			int64_t m = mi ? M : 1;
			size_t nD = (size_t)(m * D), nI = (size_t)(m * I), nK = (size_t)(m * kvd);
			kern_dtype dt = di ? KERN_F16 : KERN_BF16;
			xt_w wo, wg, wu, wd;
			xt_w_make(&wo, dt, D, D);
			xt_w_make(&wg, dt, I, D);
			xt_w_make(&wu, dt, I, D);
			xt_w_make(&wd, dt, D, I);
			void *dy[2], *datt[2], *dg[2];
			/* GPU: [0] chained, [1] separate calls, each from fresh q, k and caches */
			for (int sep = 0; sep < 2; sep++) {
				void *dq = up(q, nD * 4), *dk = up(k, nK * 4);
				void *dkc = poisoned(nK * 4), *dvc = poisoned(nK * 4);
				dy[sep] = up(base, nD * 4);
				datt[sep] = poisoned(nD * 4);
				dg[sep] = poisoned(nI * 4);
				void *dx = up(x, nD * 4);
				if (sep) {
					T_EQ_INT(kern_rope_attention(G, dq, dk, dv, dpos, m, H, KVH, hd, th, dkc,
								     dvc, m, sc, datt[1]), 0);
					T_EQ_INT(kern_linear_add(G, datt[1], m, &wo.g, dy[1]), 0);
					T_EQ_INT(kern_swiglu(G, dx, m, &wg.g, &wu.g, dg[1], &ng), 0);
					T_EQ_INT(kern_linear_add(G, dg[1], m, &wd.g, dy[1]), 0);
				} else {
					T_EQ_INT(kern_rope_attention_proj(G, dq, dk, dv, dpos, m, H, KVH, hd, th,
									  dkc, dvc, m, sc, datt[0], &wo.g,
									  dy[0]), 0);
					T_EQ_INT(kern_swiglu_proj(G, dx, m, &wg.g, &wu.g, &ng, dg[0], &wd.g,
								  dy[0]), 0);
				}
				kern_free(G, dq); kern_free(G, dk); kern_free(G, dkc); kern_free(G, dvc);
				kern_free(G, dx);
			}
			char what[96];
			snprintf(what, sizeof what, "chained vs separate, %s, m %lld", kern_dtype_name(dt),
				 (long long)m);
			T_CHECK(xt_same(datt[0], datt[1], nD, what));
			T_CHECK(xt_same(dg[0], dg[1], nI, what));
			T_CHECK(xt_same(dy[0], dy[1], nD, what));
			/* the CPU's chained ops (composed by kern.c) */
			float *cq = malloc(nD * 4), *ck = malloc(nK * 4), *ckc = calloc(nK, 4);
			float *cvc = calloc(nK, 4), *cy = malloc(nD * 4), *catt = malloc(nD * 4);
			float *cg = malloc(nI * 4);
			memcpy(cq, q, nD * 4);
			memcpy(ck, k, nK * 4);
			memcpy(cy, base, nD * 4);
			T_EQ_INT(kern_rope_attention_proj(C, cq, ck, v, pos, m, H, KVH, hd, th, ckc, cvc, m,
							  sc, catt, &wo.c, cy), 0);
			T_EQ_INT(kern_swiglu_proj(C, x, m, &wg.c, &wu.c, &nc, cg, &wd.c, cy), 0);
			snprintf(what, sizeof what, "chained GPU vs CPU, %s, m %lld", kern_dtype_name(dt),
				 (long long)m);
			T_CHECK(xt_close(datt[0], catt, nD, 1e-4, what));
			T_CHECK(xt_close(dg[0], cg, nI, 4e-2, what));
			T_CHECK(xt_close(dy[0], cy, nD, 4e-2, what));
			/* y == x: the MLP added into its own input (the residual stream) */
			void *dx = up(x, nD * 4), *dg2 = poisoned(nI * 4);
			T_EQ_INT(kern_swiglu_proj(G, dx, m, &wg.g, &wu.g, &ng, dg2, &wd.g, dx), 0);
			memcpy(cy, x, nD * 4);
			T_EQ_INT(kern_swiglu_proj(C, cy, m, &wg.c, &wu.c, &nc, cg, &wd.c, cy), 0);
			T_CHECK(xt_close(dx, cy, nD, 4e-2, "swiglu_proj with y == x"));
			kern_free(G, dx); kern_free(G, dg2);
			free(cq); free(ck); free(ckc); free(cvc); free(cy); free(catt); free(cg);
			for (int i = 0; i < 2; i++) {
				kern_free(G, dy[i]); kern_free(G, datt[i]); kern_free(G, dg[i]);
			}
			xt_w_free(&wo); xt_w_free(&wg); xt_w_free(&wu); xt_w_free(&wd);
		}
	kern_free(G, dpos); kern_free(G, dv); kern_free(G, dnw);
	free(q); free(k); free(v); free(x); free(nw); free(base);
}

static void test_cuda_close(void)
{
	if (G) kern_dev_close(G);
	if (C) kern_dev_close(C);
	G = C = NULL;
}

/* a device on compute resources the caller holds (kern_dev_open_compute): its products match
 * the CPU's, closing it leaves them to the caller, who can open another device on them */
static void test_cuda_borrowed_compute(void)
{
	if (!open_devs())
		T_SKIP("no GPU");
	pool_compute *pc = NULL;
	T_EQ_INT(pool_compute_open(0, &pc), 0);
	if (!pc)
		return;
	kern_dev *b = NULL;
	T_EQ_INT(kern_dev_open_compute("cpu", NULL, pc, &b), -EINVAL);
	for (int round = 0; round < 2; round++) {
		T_EQ_INT(kern_dev_open_compute("cuda:0", NULL, pc, &b), 0);
		if (!b)
			break;
		const int64_t m = 20, n = 48, k = 64;   /* 20 rows of F32: cuBLAS */
		float *x = rnd((size_t)(m * k), 1), *w = rnd((size_t)(n * k), 1);
		float *yc = malloc((size_t)(m * n) * 4), *yg = malloc((size_t)(m * n) * 4);
		void *dx = kern_alloc(b, (size_t)(m * k) * 4), *dw = kern_alloc(b, (size_t)(n * k) * 4);
		void *dy = kern_alloc(b, (size_t)(m * n) * 4);
		kern_copy_h2d(b, dx, x, (size_t)(m * k) * 4);
		kern_copy_h2d(b, dw, w, (size_t)(n * k) * 4);
		kern_mat wc = {KERN_F32, n, k, w, NULL, 0}, wg = {KERN_F32, n, k, dw, NULL, 0};
		T_EQ_INT(kern_linear(C, x, m, &wc, NULL, KERN_ACT_NONE, yc), 0);
		T_EQ_INT(kern_linear(b, dx, m, &wg, NULL, KERN_ACT_NONE, dy), 0);
		T_EQ_INT(kern_copy_d2h(b, yg, dy, (size_t)(m * n) * 4), 0);
		T_CHECK(close_f(yg, yc, (size_t)(m * n), 1e-3, 1e-3, "linear on borrowed compute"));
		kern_free(b, dx); kern_free(b, dw); kern_free(b, dy);
		free(x); free(w); free(yc); free(yg);
		kern_dev_close(b);
		void *p = NULL;   /* still the caller's */
		T_EQ_INT(pool_compute_scratch(pc, 1, 4096, &p), 0);
	}
	pool_compute_close(pc);
}

void t_main(void)
{
	T_RUN(test_cuda_linear);
	T_RUN(test_cuda_elementwise);
	T_RUN(test_cuda_embed_rope_attention);
	T_RUN(test_cuda_graph_replay);
	T_RUN(test_cuda_argmax_feed);
	T_RUN(test_cuda_fused);
	T_RUN(test_cuda_i8_long);
	T_RUN(test_cuda_i8_tall);
	T_RUN(test_cuda_i8_batch);
	T_RUN(test_cuda_chained);
	T_RUN(test_cuda_borrowed_compute);
	T_RUN(test_cuda_close);
}

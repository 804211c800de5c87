/* bench_llama.c — compute benchmark helper for bench_compute.sh: runs the `llama` kind on a
 * model directory (HF safetensors + config.json, e.g. saved by bench/hf_llama.py, so thaw and
 * HF run the very same weights) or on a random small config, and prints one line per figure.
 *
 *   bench_llama --model DIR | --random HIDDEN,LAYERS,HEADS,KVHEADS,INTER,VOCAB
 *               [--device cpu|cuda:N] [--prompt N | --prompt-file F.json] [--new N]
 *               [--reps R] [--variants bf16,nograph,int8,int8:32] [--hf-greedy F.json]
 *               [--gemm] [--bw] [--profile] [--text-file F.json] [--batch N,N,...]
 *
 * A variant may carry A/B suffixes, each a field of the device's kern_tuning (kernels/kern.h;
 * every variant runs on a device opened with its own tuning): "-nofuse" (e.g. bf16-nofuse)
 * fused_attention = 0 (RoPE + KV append and attention as two launches instead of
 * kc_rope_attention.cu's one); "-nofeed" feed_depth = 0 (each greedy token through the host
 * before the next step is queued, instead of fed on the device: fn_llama.c); "-nopdl" pdl = 0
 * (no programmatic dependent launch); the variant "nograph" is bf16 with graphs = 0.
 * Decode tokens/s = decode steps / decode time (prefill excluded); e2e = new tokens / whole
 * generate. Roofline = the bandwidth (spec 3.35 TB/s for an H100 SXM, and the measured
 * device-to-device copy rate with --bw) divided by the weight bytes one decode step reads.
 * int8 variants report teacher-forced greedy top-1 agreement with the first variant's tokens.
 * --text-file (a JSON array of token ids of real text, e.g. held-out text of a trained model)
 * adds a second agreement figure: windows of P + NEW tokens, each variant's argmax after every
 * forced text token against the first variant's, and each variant's next-token accuracy.
 * --gemm times the prefill matrix products (kern_linear, BF16 weights, F32 activations
 * rounded for cuBLAS) against cublasGemmEx alone (BF16 in, BF16 out) on the same shapes: each
 * shape alone, a layer's products, and the products one by one as the kind issues them (o_proj
 * and down_proj fed by their real producers in the chained ops, against the same products
 * issued as separate calls: bench_products).
 * --batch N,...: after each variant's batch-1 figures, N concurrent greedy calls (distinct
 * prompts of P tokens, windows of --text-file when given; NEW new tokens each) added at once
 * and stepped together through the kind's sequence operations (seq_add / seq_step, a KV cache
 * sized for all of them): output tokens/s over the whole run and over the steps where every
 * sequence decodes, and how many of up to 8 of the calls give the same tokens alone. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <jansson.h>
#include "functions/fn.h"
#include "functions/fn_llama.h"
#include "functions/fn_quant.h"
#include "kernels/kern.h"
#include "snapshot/snap_st.h"
#ifdef THAW_CUDA
#include <cuda_runtime_api.h>
#include <cublas_v2.h>
#endif

/* ab_tuning: the kern_tuning of a variant name's A/B suffixes (see the top of the file); the
 * name is cut at the first suffix. */
static kern_tuning ab_tuning(char *v)
{
	static const struct { const char *sfx; int field; } ab[] = {
		{"-nofuse", 0}, {"-nofeed", 1}, {"-nopdl", 2},
	};
	kern_tuning t = KERN_TUNING_DEFAULT;
	char *cut = NULL;
	for (size_t i = 0; i < sizeof ab / sizeof ab[0]; i++) {
		char *p = strstr(v, ab[i].sfx);
		if (!p)
			continue;
		if (ab[i].field == 0)
			t.fused_attention = 0;
		else if (ab[i].field == 1)
			t.feed_depth = 0;
		else
			t.pdl = 0;
		cut = !cut || p < cut ? p : cut;
	}
	if (cut)
		*cut = 0;
	if (!strcmp(v, "nograph"))
		t.graphs = 0;
	return t;
}

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

typedef struct host_t {
	char *name;
	const char *dtype;
	int ndim;
	int64_t shape[8];
	const void *data;
	size_t nbytes;
	void *own;
} host_t;

typedef struct model {
	host_t *t;
	size_t n;
	json_t *config;
} model;

static uint64_t rs = 88172645463325252ull;
static float nrand(void)   /* ~N(0,1) from 4 uniforms (Irwin-Hall), fast enough */
{
	float s = 0;
	for (int i = 0; i < 4; i++) {
		rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17;
		s += (float)((rs >> 40) * (1.0 / 16777216.0));
	}
	return (s - 2.0f) * 1.7320508f;
}

static void add_t(model *m, const char *name, int ndim, const int64_t *shape, float std, int ones)
{
	host_t *t = &m->t[m->n++];
	size_t cnt = 1;
	t->name = strdup(name);
	t->dtype = "BF16";
	t->ndim = ndim;
	for (int i = 0; i < ndim; i++) {
		t->shape[i] = shape[i];
		cnt *= (size_t)shape[i];
	}
	uint16_t *d = malloc(cnt * 2);
	for (size_t i = 0; i < cnt; i++)
		d[i] = kern_f32_to_bf16(ones ? 1.0f : nrand() * std);
	t->data = t->own = d;
	t->nbytes = cnt * 2;
}

static int random_model(model *m, const char *spec)
{
	long D, L, H, KVH, F, V;
	if (sscanf(spec, "%ld,%ld,%ld,%ld,%ld,%ld", &D, &L, &H, &KVH, &F, &V) != 6)
		return -EINVAL;
	m->t = calloc((size_t)(L * 9 + 3), sizeof *m->t);
	m->config = json_pack("{s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:f,s:f,s:b}", "hidden_size", D,
			      "intermediate_size", F, "num_hidden_layers", L, "num_attention_heads", H,
			      "num_key_value_heads", KVH, "vocab_size", V, "max_position_embeddings",
			      2048, "rms_norm_eps", 1e-5, "rope_theta", 10000.0,
			      "tie_word_embeddings", 0);
	long hd = D / H;
	char nm[256];
	int64_t s2[2], s1[1] = {D};
	s2[0] = V; s2[1] = D;
	add_t(m, "model.embed_tokens.weight", 2, s2, 0.02f, 0);
	add_t(m, "lm_head.weight", 2, s2, 0.02f, 0);
	add_t(m, "model.norm.weight", 1, s1, 0, 1);
	for (long l = 0; l < L; l++) {
		struct { const char *n; long a, b; } mats[] = {
			{"self_attn.q_proj", H * hd, D}, {"self_attn.k_proj", KVH * hd, D},
			{"self_attn.v_proj", KVH * hd, D}, {"self_attn.o_proj", D, H * hd},
			{"mlp.gate_proj", F, D}, {"mlp.up_proj", F, D}, {"mlp.down_proj", D, F}};
		for (int j = 0; j < 7; j++) {
			snprintf(nm, sizeof nm, "model.layers.%ld.%s.weight", l, mats[j].n);
			s2[0] = mats[j].a; s2[1] = mats[j].b;
			add_t(m, nm, 2, s2, 0.02f, 0);
		}
		snprintf(nm, sizeof nm, "model.layers.%ld.input_layernorm.weight", l);
		add_t(m, nm, 1, s1, 0, 1);
		snprintf(nm, sizeof nm, "model.layers.%ld.post_attention_layernorm.weight", l);
		add_t(m, nm, 1, s1, 0, 1);
	}
	return 0;
}

static int dir_model(model *m, const char *dir, snap_st **st)
{
	char err[512];
	if (snap_st_open(st, dir, err, sizeof err) < 0 || !(*st)->config) {
		fprintf(stderr, "bench_llama: %s: %s\n", dir, err);
		return -EINVAL;
	}
	m->config = json_loads((*st)->config, 0, NULL);
	m->t = calloc((*st)->n, sizeof *m->t);
	for (size_t i = 0; i < (*st)->n; i++) {
		host_t *t = &m->t[m->n++];
		const snap_st_tensor *s = &(*st)->t[i];
		t->name = strdup(s->name);
		t->dtype = snap_dtype_name(s->dtype);
		t->ndim = (int)s->ndim;
		for (uint32_t d = 0; d < s->ndim; d++)
			t->shape[d] = (int64_t)s->shape[d];
		t->data = snap_st_data(*st, i);
		t->nbytes = s->end - s->begin;
	}
	return 0;
}

/* ---- a device copy of the weights, optionally int8-quantized (tensors in parallel) ---- */
typedef struct qjob {
	model *m;
	int block, next_i;
	pthread_mutex_t mu;
	int8_t **q;
	float **sc;
} qjob;

static void *qthread(void *arg)
{
	qjob *j = arg;
	for (;;) {
		pthread_mutex_lock(&j->mu);
		int i = j->next_i++;
		pthread_mutex_unlock(&j->mu);
		if (i >= (int)j->m->n)
			return NULL;
		host_t *t = &j->m->t[i];
		if (!fn_quant_eligible(t->name, t->dtype, t->ndim, t->shape, j->block))
			continue;
		int64_t n = t->shape[0], k = t->shape[1];
		j->q[i] = malloc((size_t)(n * k));
		j->sc[i] = malloc((size_t)fn_quant_scale_count(n, k, j->block) * 4);
		fn_quant_int8(t->dtype, t->data, n, k, j->block, j->q[i], j->sc[i]);
	}
}

typedef struct devw {
	fn_weight *w;
	size_t n;
	char **names;
	double weight_bytes;       /* bytes a decode step reads: every matrix but the embedding */
} devw;

static int upload(kern_dev *d, model *m, int quant, int block, devw *out)
{
	int8_t **q = calloc(m->n, sizeof *q);
	float **sc = calloc(m->n, sizeof *sc);
	if (quant) {
		qjob j = {m, block, 0, PTHREAD_MUTEX_INITIALIZER, q, sc};
		pthread_t th[32];
		int nt = 16;
		for (int i = 0; i < nt; i++)
			pthread_create(&th[i], NULL, qthread, &j);
		for (int i = 0; i < nt; i++)
			pthread_join(th[i], NULL);
	}
	out->w = calloc(m->n * 2, sizeof *out->w);
	out->names = calloc(m->n * 2, sizeof *out->names);
	out->n = 0;
	out->weight_bytes = 0;
	for (size_t i = 0; i < m->n; i++) {
		host_t *t = &m->t[i];
		fn_weight *w = &out->w[out->n];
		w->name = out->names[out->n] = strdup(t->name);
		w->ndim = t->ndim;
		memcpy(w->shape, t->shape, sizeof w->shape);
		const void *src = t->data;
		w->dtype = t->dtype;
		w->nbytes = t->nbytes;
		if (q[i]) {
			src = q[i];
			w->dtype = "I8";
			w->nbytes = (size_t)(t->shape[0] * t->shape[1]);
		}
		void *p = kern_alloc(d, w->nbytes);
		if (!p || kern_copy_h2d(d, p, src, w->nbytes) < 0)
			return -ENOMEM;
		w->data = p;
		if (t->ndim == 2 && !strstr(t->name, "embed_tokens"))
			out->weight_bytes += (double)w->nbytes;
		out->n++;
		if (q[i]) {
			fn_weight *s = &out->w[out->n];
			char nm[512];
			snprintf(nm, sizeof nm, "%s%s", t->name, FN_QUANT_SCALE_SUFFIX);
			s->name = out->names[out->n] = strdup(nm);
			s->dtype = "F32";
			int64_t ns = fn_quant_scale_count(t->shape[0], t->shape[1], block);
			s->ndim = 2;
			s->shape[0] = t->shape[0];
			s->shape[1] = ns / t->shape[0];
			s->nbytes = (size_t)ns * 4;
			p = kern_alloc(d, s->nbytes);
			kern_copy_h2d(d, p, sc[i], s->nbytes);
			s->data = p;
			out->weight_bytes += (double)s->nbytes;
			out->n++;
			free(q[i]);
			free(sc[i]);
		}
	}
	free(q);
	free(sc);
	return 0;
}

static void unload(kern_dev *d, devw *w)
{
	for (size_t i = 0; i < w->n; i++) {
		kern_free(d, (void *)w->w[i].data);
		free(w->names[i]);
	}
	free(w->w);
	free(w->names);
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double measured_bw;

#ifdef THAW_CUDA
static void bench_bw(void)
{
	size_t n = 2ull << 30;
	void *a, *b;
	if (cudaMalloc(&a, n) != cudaSuccess || cudaMalloc(&b, n) != cudaSuccess)
		return;
	cudaMemcpy(b, a, n, cudaMemcpyDeviceToDevice);
	cudaDeviceSynchronize();
	double t0 = now_s();
	for (int i = 0; i < 5; i++)
		cudaMemcpy(b, a, n, cudaMemcpyDeviceToDevice);
	cudaDeviceSynchronize();
	double t = (now_s() - t0) / 5;
	measured_bw = 2.0 * n / t;
	printf("device_copy_bandwidth GB_s=%.0f (cudaMemcpy D2D, read+write)\n", measured_bw / 1e9);
	cudaFree(a);
	cudaFree(b);
}

/* One layer's matrix products as the llama kind issues them in a prefill: q/k/v of one input
 * (kern_linear_multi: the input rounded to BF16 once, with the RMSNorm fused into that rounding
 * when norm is given), o, gate/up of one input (kern_linear_multi, same), down — against the
 * 7 cublasGemmEx calls alone on BF16 inputs (plus, in the "with norms" row, the two RMSNorm
 * launches that a cuBLAS-based layer needs as well). Medians of 5 x 50 layers. */
static void bench_layer_gemms(kern_dev *d, cublasHandle_t h, int M)
{
	const int H = 2048, KV = 256, I = 5632;
	int nn[7] = {H, KV, KV, H, I, I, H}, kk[7] = {H, H, H, H, H, H, I};
	void *W[7], *Y[7], *YB[7];
	for (int i = 0; i < 7; i++) {
		size_t wn = (size_t)nn[i] * kk[i];
		uint16_t *wh = malloc(wn * 2);
		for (size_t j = 0; j < wn; j++)
			wh[j] = kern_f32_to_bf16(nrand() * 0.02f);
		W[i] = kern_alloc(d, wn * 2);
		kern_copy_h2d(d, W[i], wh, wn * 2);
		free(wh);
		Y[i] = kern_alloc(d, (size_t)M * nn[i] * 4);
		YB[i] = kern_alloc(d, (size_t)M * nn[i] * 2);
	}
	size_t xn = (size_t)M * I;
	float *xh = malloc(xn * 4), *nwh = malloc(I * 4);
	uint16_t *xb = malloc(xn * 2);
	for (size_t j = 0; j < xn; j++) {
		xh[j] = nrand();
		xb[j] = kern_f32_to_bf16(xh[j]);
	}
	for (int j = 0; j < I; j++)
		nwh[j] = 1.0f + 0.1f * nrand();
	void *X = kern_alloc(d, xn * 4), *XB = kern_alloc(d, xn * 2), *NW = kern_alloc(d, I * 4),
	     *XN = kern_alloc(d, xn * 4);
	kern_copy_h2d(d, X, xh, xn * 4);
	kern_copy_h2d(d, XB, xb, xn * 2);
	kern_copy_h2d(d, NW, nwh, I * 4);
	kern_mat w[7];
	for (int i = 0; i < 7; i++)
		w[i] = (kern_mat){KERN_BF16, nn[i], kk[i], W[i], NULL, 0};
	kern_norm norm = {NW, 1e-5f};
	int R = 50;
	for (int with_norm = 0; with_norm < 2; with_norm++) {
		double tk[5], tc[5];
		for (int rep = 0; rep < 5; rep++) {
			for (int pass = 0; pass < 2; pass++) {   /* pass 0 warms up */
				kern_dev_sync(d);
				double t0 = now_s();
				for (int r = 0; r < R; r++) {
					float *yq[3] = {Y[0], Y[1], Y[2]}, *yg[2] = {Y[4], Y[5]};
					kern_linear_multi(d, X, M, 3, &w[0], yq, with_norm ? &norm : NULL);
					kern_linear(d, X, M, &w[3], NULL, KERN_ACT_NONE, Y[3]);
					kern_linear_multi(d, X, M, 2, &w[4], yg, with_norm ? &norm : NULL);
					kern_linear(d, X, M, &w[6], NULL, KERN_ACT_NONE, Y[6]);
				}
				kern_dev_sync(d);
				tk[rep] = (now_s() - t0) / R;
			}
			for (int pass = 0; pass < 2; pass++) {
				cudaDeviceSynchronize();
				double t0 = now_s();
				float one = 1, zero = 0;
				for (int r = 0; r < R; r++) {
					if (with_norm) {
						kern_rmsnorm(d, X, NW, M, H, 1e-5f, XN);
						kern_rmsnorm(d, X, NW, M, H, 1e-5f, XN);
					}
					for (int i = 0; i < 7; i++)
						cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, nn[i], M, kk[i], &one,
							     W[i], CUDA_R_16BF, kk[i], XB, CUDA_R_16BF, kk[i],
							     &zero, YB[i], CUDA_R_16BF, nn[i],
							     CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
				}
				kern_dev_sync(d);
				cudaDeviceSynchronize();
				tc[rep] = (now_s() - t0) / R;
			}
		}
		qsort(tk, 5, sizeof tk[0], cmp_d);
		qsort(tc, 5, sizeof tc[0], cmp_d);
		printf("prefill_layer M=%d %s: thaw_us=%.1f cublas_us=%.1f thaw_vs_cublas=%.2f\n", M,
		       with_norm ? "with the 2 RMSNorms (fused into the rounding; baseline: kern_rmsnorm + cuBLAS)"
				 : "7 products as the kind issues them (4 roundings)",
		       tk[2] * 1e6, tc[2] * 1e6, tc[2] / tk[2]);
	}
	for (int i = 0; i < 7; i++) {
		kern_free(d, W[i]);
		kern_free(d, Y[i]);
		kern_free(d, YB[i]);
	}
	kern_free(d, X); kern_free(d, XB); kern_free(d, NW); kern_free(d, XN);
	free(xh); free(xb); free(nwh);
}

/* Prefill products one by one as the llama kind issues them, each against cublasGemmEx alone on
 * its shapes (BF16 in and out, F32 compute): q/k/v (kern_linear_multi: the input rounded once,
 * the RMSNorm fused into that rounding; baseline kern_rmsnorm + 3 GEMMs), o_proj + residual
 * with its input produced by attention as in a layer (kern_rope_attention_proj, minus
 * kern_rope_attention alone), gate/up (as q/k/v), down_proj + residual with its input produced
 * by the SwiGLU (kern_swiglu_proj, minus kern_swiglu alone). In the chained ops the producer
 * leaves its output rounded for the product (kernels/cuda/kc_int.h), so o_proj and down_proj
 * skip their rounding launch; the "separate" figures issue the producer and kern_linear_add as
 * two calls (the product rounds its own input), same run. The q/k/v and gate/up products are
 * also timed without the norm (rounding launch + GEMMs vs GEMMs). Medians of 5 x 50 calls. */
enum { PP_QKV, PP_QKV_NN, PP_ATT, PP_ATT_O, PP_GU, PP_GU_NN, PP_SWI, PP_SWI_DOWN, PP_NORM,
       PP_C_QKV, PP_C_O, PP_C_GU, PP_C_DOWN, PP_N };

typedef struct pp {
	cublasHandle_t h;
	int M, H, I, heads, kvheads, hd;
	int separate;              /* producer and product as two calls instead of a chained op */
	int nn[7], kk[7];
	kern_mat w[7];
	void *W[7], *Y[7], *YB[7], *X, *XB, *NW, *XN, *Q, *K, *V, *KC, *VC, *POS, *ATT, *G, *R;
} pp;

static void pp_issue(pp *p, kern_dev *d, int what)
{
	const float one = 1, zero = 0;
	kern_norm n = {p->NW, 1e-5f};
	float *yq[3] = {p->Y[0], p->Y[1], p->Y[2]}, *yg[2] = {p->Y[4], p->Y[5]};
	int g0 = 0, g1 = 0;   /* cuBLAS products g0..g1-1 */
	switch (what) {
	case PP_QKV: case PP_QKV_NN:
		kern_linear_multi(d, p->X, p->M, 3, &p->w[0], yq, what == PP_QKV ? &n : NULL);
		return;
	case PP_ATT: case PP_ATT_O:
		if (what == PP_ATT_O && !p->separate) {
			kern_rope_attention_proj(d, p->Q, p->K, p->V, p->POS, p->M, p->heads, p->kvheads,
						 p->hd, 1e4f, p->KC, p->VC, p->M, 0.125f, p->ATT, &p->w[3],
						 p->R);
			return;
		}
		kern_rope_attention(d, p->Q, p->K, p->V, p->POS, p->M, p->heads, p->kvheads, p->hd,
				    1e4f, p->KC, p->VC, p->M, 0.125f, p->ATT);
		if (what == PP_ATT_O)
			kern_linear_add(d, p->ATT, p->M, &p->w[3], p->R);
		return;
	case PP_GU: case PP_GU_NN:
		kern_linear_multi(d, p->X, p->M, 2, &p->w[4], yg, what == PP_GU ? &n : NULL);
		return;
	case PP_SWI: case PP_SWI_DOWN:
		if (what == PP_SWI_DOWN && !p->separate) {
			kern_swiglu_proj(d, p->X, p->M, &p->w[4], &p->w[5], &n, p->G, &p->w[6], p->R);
			return;
		}
		kern_swiglu(d, p->X, p->M, &p->w[4], &p->w[5], p->G, &n);
		if (what == PP_SWI_DOWN)
			kern_linear_add(d, p->G, p->M, &p->w[6], p->R);
		return;
	case PP_NORM:
		kern_rmsnorm(d, p->X, p->NW, p->M, p->H, 1e-5f, p->XN);
		return;
	case PP_C_QKV: g0 = 0, g1 = 3; break;
	case PP_C_O: g0 = 3, g1 = 4; break;
	case PP_C_GU: g0 = 4, g1 = 6; break;
	case PP_C_DOWN: g0 = 6, g1 = 7; break;
	}
	for (int i = g0; i < g1; i++)
		cublasGemmEx(p->h, CUBLAS_OP_T, CUBLAS_OP_N, p->nn[i], p->M, p->kk[i], &one, p->W[i],
			     CUDA_R_16BF, p->kk[i], p->XB, CUDA_R_16BF, p->kk[i], &zero, p->YB[i],
			     CUDA_R_16BF, p->nn[i], CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
}

static double pp_time(pp *p, kern_dev *d, int what)
{
	double t[5];
	const int R = 50;
	for (int rep = 0; rep < 5; rep++)
		for (int pass = 0; pass < 2; pass++) {   /* pass 0 warms up */
			kern_dev_sync(d);
			cudaDeviceSynchronize();
			double t0 = now_s();
			for (int r = 0; r < R; r++)
				pp_issue(p, d, what);
			kern_dev_sync(d);
			cudaDeviceSynchronize();
			t[rep] = (now_s() - t0) / R;
		}
	qsort(t, 5, sizeof t[0], cmp_d);
	return t[2];
}

static void *pp_rand(kern_dev *d, size_t n, int bf16, float scale)
{
	size_t es = bf16 ? 2 : 4;
	void *h = malloc(n * es), *p = kern_alloc(d, n * es);
	for (size_t i = 0; i < n; i++) {
		float v = nrand() * scale;
		if (bf16)
			((uint16_t *)h)[i] = kern_f32_to_bf16(v);
		else
			((float *)h)[i] = v;
	}
	kern_copy_h2d(d, p, h, n * es);
	free(h);
	return p;
}

static void bench_products(kern_dev *d, cublasHandle_t h, int M)
{
	pp p;
	memset(&p, 0, sizeof p);
	p.h = h;
	p.M = M;
	p.H = 2048;
	p.I = 5632;
	p.heads = 32;
	p.kvheads = 4;
	p.hd = 64;
	int nn[7] = {p.H, 256, 256, p.H, p.I, p.I, p.H}, kk[7] = {p.H, p.H, p.H, p.H, p.H, p.H, p.I};
	for (int i = 0; i < 7; i++) {
		p.nn[i] = nn[i];
		p.kk[i] = kk[i];
		p.W[i] = pp_rand(d, (size_t)nn[i] * kk[i], 1, 0.02f);
		p.w[i] = (kern_mat){KERN_BF16, nn[i], kk[i], p.W[i], NULL, 0};
		p.Y[i] = kern_alloc(d, (size_t)M * nn[i] * 4);
		p.YB[i] = kern_alloc(d, (size_t)M * nn[i] * 2);
	}
	size_t kvn = (size_t)M * p.kvheads * p.hd;
	p.X = pp_rand(d, (size_t)M * p.H, 0, 1);
	p.XB = pp_rand(d, (size_t)M * p.I, 1, 1);
	p.NW = pp_rand(d, (size_t)p.H, 0, 0.1f);
	p.XN = kern_alloc(d, (size_t)M * p.H * 4);
	p.Q = pp_rand(d, (size_t)M * p.H, 0, 1);
	p.K = pp_rand(d, kvn, 0, 1);
	p.V = pp_rand(d, kvn, 0, 1);
	p.KC = pp_rand(d, kvn, 0, 1);
	p.VC = pp_rand(d, kvn, 0, 1);
	p.ATT = kern_alloc(d, (size_t)M * p.H * 4);
	p.G = kern_alloc(d, (size_t)M * p.I * 4);
	p.R = kern_alloc(d, (size_t)M * p.H * 4);
	int32_t *pos = malloc((size_t)M * 4);
	for (int i = 0; i < M; i++)
		pos[i] = i;
	p.POS = kern_alloc(d, (size_t)M * 4);
	kern_copy_h2d(d, p.POS, pos, (size_t)M * 4);
	free(pos);
	kern_dev_sync(d);
	double tc[PP_N] = {0}, tk[2][PP_N] = {{0}};
	for (int what = PP_NORM; what < PP_N; what++)
		tc[what] = pp_time(&p, d, what);
	for (int v = 0; v < 2; v++) {
		p.separate = v;
		for (int what = 0; what < PP_NORM; what++)
			tk[v][what] = pp_time(&p, d, what);
	}
	/* per product: thaw (chained, separate) and cuBLAS times */
	double o[2], dn[2];
	for (int v = 0; v < 2; v++) {
		o[v] = tk[v][PP_ATT_O] - tk[v][PP_ATT];
		dn[v] = tk[v][PP_SWI_DOWN] - tk[v][PP_SWI];
	}
	struct { const char *name; double t0, t1, c; } row[] = {
		{"q/k/v (RMSNorm fused into the rounding; cuBLAS: kern_rmsnorm + 3 GEMMs)",
		 tk[0][PP_QKV], tk[1][PP_QKV], tc[PP_NORM] + tc[PP_C_QKV]},
		{"q/k/v without norm (rounding + 3 GEMMs; cuBLAS: 3 GEMMs)", tk[0][PP_QKV_NN],
		 tk[1][PP_QKV_NN], tc[PP_C_QKV]},
		{"o_proj+residual, input from attention", o[0], o[1], tc[PP_C_O]},
		{"gate/up (RMSNorm fused into the rounding; cuBLAS: kern_rmsnorm + 2 GEMMs)",
		 tk[0][PP_GU], tk[1][PP_GU], tc[PP_NORM] + tc[PP_C_GU]},
		{"gate/up without norm (rounding + 2 GEMMs; cuBLAS: 2 GEMMs)", tk[0][PP_GU_NN],
		 tk[1][PP_GU_NN], tc[PP_C_GU]},
		{"down_proj+residual, input from the SwiGLU", dn[0], dn[1], tc[PP_C_DOWN]},
	};
	for (size_t i = 0; i < sizeof row / sizeof row[0]; i++)
		printf("prefill_product M=%d %s: thaw_us=%.1f cublas_us=%.1f thaw_vs_cublas=%.2f "
		       "(separate: thaw_us=%.1f thaw_vs_cublas=%.2f)\n", M, row[i].name, row[i].t0 * 1e6,
		       row[i].c * 1e6, row[i].c / row[i].t0, row[i].t1 * 1e6,
		       row[i].t1 > 0 ? row[i].c / row[i].t1 : 0);
	printf("prefill_product M=%d producers: attention_us=%.1f (separate %.1f) attention+o_proj_us=%.1f "
	       "(separate %.1f) swiglu_us=%.1f (separate %.1f) swiglu+down_us=%.1f (separate %.1f)\n", M,
	       tk[0][PP_ATT] * 1e6, tk[1][PP_ATT] * 1e6, tk[0][PP_ATT_O] * 1e6,
	       tk[1][PP_ATT_O] * 1e6, tk[0][PP_SWI] * 1e6, tk[1][PP_SWI] * 1e6,
	       tk[0][PP_SWI_DOWN] * 1e6, tk[1][PP_SWI_DOWN] * 1e6);
	/* per layer: the 7 products (+ the 2 norms on both sides, or no norm on either) */
	for (int norms = 1; norms >= 0; norms--) {
		double c = tc[PP_C_QKV] + tc[PP_C_O] + tc[PP_C_GU] + tc[PP_C_DOWN] +
			   (norms ? 2 * tc[PP_NORM] : 0), t[2];
		for (int v = 0; v < 2; v++)
			t[v] = (norms ? tk[v][PP_QKV] + tk[v][PP_GU] : tk[v][PP_QKV_NN] + tk[v][PP_GU_NN]) +
			       o[v] + dn[v];
		printf("prefill_layer M=%d products one by one as the kind issues them%s: thaw_us=%.1f "
		       "cublas_us=%.1f thaw_vs_cublas=%.2f (separate: thaw_us=%.1f thaw_vs_cublas=%.2f)\n",
		       M, norms ? ", with the 2 RMSNorms" : ", no norms", t[0] * 1e6, c * 1e6, c / t[0],
		       t[1] * 1e6, t[1] > 0 ? c / t[1] : 0);
	}
	for (int i = 0; i < 7; i++) {
		kern_free(d, p.W[i]);
		kern_free(d, p.Y[i]);
		kern_free(d, p.YB[i]);
	}
	void *bufs[] = {p.X, p.XB, p.NW, p.XN, p.Q, p.K, p.V, p.KC, p.VC, p.ATT, p.G, p.R, p.POS};
	for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
		kern_free(d, bufs[i]);
}

static void bench_gemm(kern_dev *d, int M)
{
	int shapes[][2] = {{2048, 2048}, {256, 2048}, {5632, 2048}, {2048, 5632}, {32000, 2048}};
	cublasHandle_t h;
	cublasCreate(&h);
	double tk_all = 0, tc_all = 0;
	for (int s = 0; s < 5; s++) {
		int N = shapes[s][0], K = shapes[s][1];
		size_t wn = (size_t)N * K;
		uint16_t *wh = malloc(wn * 2);
		for (size_t i = 0; i < wn; i++)
			wh[i] = kern_f32_to_bf16(nrand() * 0.02f);
		float *xh = malloc((size_t)M * K * 4);
		uint16_t *xb = malloc((size_t)M * K * 2);
		for (size_t i = 0; i < (size_t)M * K; i++) {
			xh[i] = nrand();
			xb[i] = kern_f32_to_bf16(xh[i]);
		}
		void *W = kern_alloc(d, wn * 2), *X = kern_alloc(d, (size_t)M * K * 4),
		     *Y = kern_alloc(d, (size_t)M * N * 4), *XB = kern_alloc(d, (size_t)M * K * 2),
		     *YB = kern_alloc(d, (size_t)M * N * 2);
		kern_copy_h2d(d, W, wh, wn * 2);
		kern_copy_h2d(d, X, xh, (size_t)M * K * 4);
		kern_copy_h2d(d, XB, xb, (size_t)M * K * 2);
		kern_mat w = {KERN_BF16, N, K, W, NULL, 0};
		int R = 50;
		double tk[5], tc[5];
		for (int rep = 0; rep < 5; rep++) {
			kern_linear(d, X, M, &w, NULL, KERN_ACT_NONE, Y);
			kern_dev_sync(d);
			double t0 = now_s();
			for (int i = 0; i < R; i++)
				kern_linear(d, X, M, &w, NULL, KERN_ACT_NONE, Y);
			kern_dev_sync(d);
			tk[rep] = (now_s() - t0) / R;
			float one = 1, zero = 0;
			cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &one, W, CUDA_R_16BF, K, XB,
				     CUDA_R_16BF, K, &zero, YB, CUDA_R_16BF, N, CUBLAS_COMPUTE_32F,
				     CUBLAS_GEMM_DEFAULT);
			cudaDeviceSynchronize();
			t0 = now_s();
			for (int i = 0; i < R; i++)
				cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &one, W, CUDA_R_16BF, K,
					     XB, CUDA_R_16BF, K, &zero, YB, CUDA_R_16BF, N,
					     CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
			cudaDeviceSynchronize();
			tc[rep] = (now_s() - t0) / R;
		}
		qsort(tk, 5, sizeof tk[0], cmp_d);
		qsort(tc, 5, sizeof tc[0], cmp_d);
		double fl = 2.0 * M * N * K;
		printf("prefill_gemm M=%d N=%d K=%d thaw_us=%.1f (%.0f TFLOP/s) cublas_alone_us=%.1f "
		       "(%.0f TFLOP/s) thaw_vs_cublas=%.2f\n", M, N, K, tk[2] * 1e6, fl / tk[2] / 1e12,
		       tc[2] * 1e6, fl / tc[2] / 1e12, tc[2] / tk[2]);
		int mult = s == 4 ? 0 : s == 1 ? 2 : s == 2 ? 2 : 1;   /* per layer: q,o; k,v; gate,up; down */
		if (s == 0)
			mult = 2;
		tk_all += mult * tk[2];
		tc_all += mult * tc[2];
		kern_free(d, W); kern_free(d, X); kern_free(d, Y); kern_free(d, XB); kern_free(d, YB);
		free(wh); free(xh); free(xb);
	}
	printf("prefill_gemm per-layer mix (q,k,v,o,gate,up,down) thaw_vs_cublas=%.2f\n",
	       tc_all / tk_all);
	bench_layer_gemms(d, h, M);
	bench_products(d, h, M);
	cublasDestroy(h);
}
#endif

/* --profile: each decode-step op alone at the bench config's shapes (back-to-back calls, one
 * sync at the end: per-call time includes the launch gap, as in a non-graph decode step). */
static double time_op(kern_dev *d, int reps, int (*fn)(kern_dev *, void *), void *ctx)
{
	fn(d, ctx);
	kern_dev_sync(d);
	double t0 = now_s();
	for (int i = 0; i < reps; i++)
		fn(d, ctx);
	kern_dev_sync(d);
	return (now_s() - t0) / reps;
}

typedef struct prof {
	float *x, *h, *q, *k, *v, *att, *g, *kc, *vc, *nw, *logits;
	int32_t *pos, *tok, *out;
	kern_mat qkv[3], o, gate, up, down, lm;
	int64_t D, H, KVH, hd, F, V, cap;
} prof;

static int p_rms(kern_dev *d, void *c) { prof *p = c; return kern_rmsnorm(d, p->x, p->nw, 1, p->D, 1e-5f, p->h); }
static int p_qkv(kern_dev *d, void *c) { prof *p = c; float *y[3] = {p->q, p->k, p->v}; kern_norm n = {p->nw, 1e-5f}; return kern_linear_multi(d, p->x, 1, 3, p->qkv, y, &n); }
static int p_rope(kern_dev *d, void *c) { prof *p = c; return kern_rope_kv(d, p->q, p->k, p->v, p->pos, 1, p->H, p->KVH, p->hd, 1e4f, p->kc, p->vc, p->cap); }
static int p_att(kern_dev *d, void *c) { prof *p = c; return kern_attention(d, p->q, p->kc, p->vc, p->pos, 1, p->H, p->KVH, p->hd, p->cap, 0.125f, p->att); }
static int p_ra(kern_dev *d, void *c) { prof *p = c; return kern_rope_attention(d, p->q, p->k, p->v, p->pos, 1, p->H, p->KVH, p->hd, 1e4f, p->kc, p->vc, p->cap, 0.125f, p->att); }
static int p_o(kern_dev *d, void *c) { prof *p = c; return kern_linear_add(d, p->att, 1, &p->o, p->x); }
static int p_swi(kern_dev *d, void *c) { prof *p = c; kern_norm n = {p->nw, 1e-5f}; return kern_swiglu(d, p->x, 1, &p->gate, &p->up, p->g, &n); }
static int p_down(kern_dev *d, void *c) { prof *p = c; return kern_linear_add(d, p->g, 1, &p->down, p->x); }
static int p_lm(kern_dev *d, void *c) { prof *p = c; return kern_linear(d, p->h, 1, &p->lm, NULL, KERN_ACT_NONE, p->logits); }
static int p_am(kern_dev *d, void *c) { prof *p = c; return kern_argmax(d, p->logits, 1, p->V, p->out, NULL); }

static void profile(kern_dev *d, const fn_weight *w, size_t nw, const json_t *cfg, int pos)
{
	prof p;
	memset(&p, 0, sizeof p);
	p.D = json_integer_value(json_object_get(cfg, "hidden_size"));
	p.H = json_integer_value(json_object_get(cfg, "num_attention_heads"));
	p.KVH = json_integer_value(json_object_get(cfg, "num_key_value_heads"));
	p.F = json_integer_value(json_object_get(cfg, "intermediate_size"));
	p.V = json_integer_value(json_object_get(cfg, "vocab_size"));
	p.hd = p.D / p.H;
	p.cap = 2048;
	size_t kvd = (size_t)(p.KVH * p.hd);
	p.x = kern_alloc(d, p.D * 4); p.h = kern_alloc(d, p.D * 4); p.q = kern_alloc(d, p.D * 4);
	p.k = kern_alloc(d, kvd * 4); p.v = kern_alloc(d, kvd * 4); p.att = kern_alloc(d, p.D * 4);
	p.g = kern_alloc(d, p.F * 4); p.kc = kern_alloc(d, p.cap * kvd * 4);
	p.vc = kern_alloc(d, p.cap * kvd * 4); p.nw = kern_alloc(d, p.D * 4);
	p.logits = kern_alloc(d, p.V * 4); p.pos = kern_alloc(d, 4); p.tok = kern_alloc(d, 4);
	p.out = kern_alloc(d, 4);
	kern_copy_h2d(d, p.pos, &pos, 4);
	const char *names[] = {"model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight",
		"model.layers.0.self_attn.v_proj.weight", "model.layers.0.self_attn.o_proj.weight",
		"model.layers.0.mlp.gate_proj.weight", "model.layers.0.mlp.up_proj.weight",
		"model.layers.0.mlp.down_proj.weight", "lm_head.weight"};
	kern_mat *ms[] = {&p.qkv[0], &p.qkv[1], &p.qkv[2], &p.o, &p.gate, &p.up, &p.down, &p.lm};
	for (int i = 0; i < 8; i++) {
		const fn_weight *t = fn_weight_find(w, nw, names[i]);
		char sn[300];
		snprintf(sn, sizeof sn, "%s_scale", names[i]);
		const fn_weight *sc = fn_weight_find(w, nw, sn);
		kern_dtype dt;
		kern_dtype_parse(t->dtype, &dt);
		*ms[i] = (kern_mat){dt, t->shape[0], t->shape[1], t->data, sc ? sc->data : NULL,
				    sc && sc->ndim == 2 && sc->shape[1] > 1 ? 32 : 0};
	}
	struct { const char *n; int (*f)(kern_dev *, void *); double bytes; } ops[] = {
		{"rmsnorm(unused)", p_rms, 0}, {"norm+qkv", p_qkv, 0}, {"rope_kv", p_rope, 0},
		{"attention", p_att, 0}, {"o_proj+add", p_o, 0}, {"rope+attention(fused)", p_ra, 0},
		{"norm+swiglu", p_swi, 0}, {"down+add", p_down, 0}, {"lm_head", p_lm, 0}, {"argmax", p_am, 0}};
	double layer = 0, tt[10];
	for (int i = 0; i < 10; i++) {
		double t = time_op(d, 200, ops[i].f, &p);
		tt[i] = t;
		double by = 0;
		kern_mat *mm = i == 1 ? &p.qkv[0] : i == 4 ? &p.o : i == 6 ? &p.gate : i == 7 ? &p.down :
			       i == 8 ? &p.lm : NULL;
		if (mm) {
			by = (double)mm->n * mm->k * kern_dtype_size(mm->dt);
			if (i == 1)
				by += 2.0 * p.qkv[1].n * p.qkv[1].k * kern_dtype_size(mm->dt);
			if (i == 6)
				by *= 2;
		}
		if (i < 8 && i != 0 && i != 5)
			layer += t;
		printf("profile op=%s pos=%d us=%.1f", ops[i].n, pos, t * 1e6);
		if (by > 0)
			printf(" weight_MB=%.1f GB_s=%.0f", by / 1e6, by / t / 1e9);
		printf("\n");
	}
	printf("profile layer_sum_us=%.1f x layers -> step estimate (no graph) %.2f ms\n",
	       layer * 1e6, layer * 1e3 *
	       (double)json_integer_value(json_object_get(cfg, "num_hidden_layers")));
	printf("profile layer_sum_fused_us=%.1f (rope_kv + attention %.1f us -> fused %.1f us)\n",
	       (layer - tt[2] - tt[3] + tt[5]) * 1e6, (tt[2] + tt[3]) * 1e6, tt[5] * 1e6);
	void *bufs[] = {p.x, p.h, p.q, p.k, p.v, p.att, p.g, p.kc, p.vc, p.nw, p.logits, p.pos,
			p.tok, p.out};
	for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
		kern_free(d, bufs[i]);
}

/* bench_batch runs n greedy calls of P-token prompts at once through the sequence operations
 * of a fresh state and prints aggregate output tokens/s; then up to 8 of the calls alone on
 * the same state, and how many gave the batch's tokens. Prompts: windows of the text tokens
 * (tj, a JSON array; shifted per call) when given, else ids shifted per call. */
static void bench_batch(const fn_kind *k, kern_dev *vd, const fn_weight *w, size_t nw,
			const json_t *config, const char *dev, const char *vname, int n, int P,
			int NEW, long long V, const json_t *tj)
{
	long long L = json_integer_value(json_object_get(config, "num_hidden_layers"));
	long long H = json_integer_value(json_object_get(config, "num_attention_heads"));
	long long KVH = json_integer_value(json_object_get(config, "num_key_value_heads"));
	long long D = json_integer_value(json_object_get(config, "hidden_size"));
	long long hd = json_integer_value(json_object_get(config, "head_dim"));
	if (KVH <= 0)
		KVH = H;
	if (hd <= 0 && H > 0)
		hd = D / H;
	double block_bytes = (double)L * 2 * 16 * KVH * hd * 2;
	double kvb = ((double)n * ((P + NEW + 15) / 16) + 8) * block_bytes;
	json_t *meta = json_pack("{s:s,s:O,s:i,s:f}", "kind", "llama", "config", (json_t *)config,
				 "max_sequences", n, "kv_cache_bytes", kvb);
	fn_load_args la = {vd, w, nw, meta};
	void *s = NULL;
	fn_error err;
	if (k->load(&la, &s, &err) < 0) {
		printf("batch %d: load failed: %s\n", n, err.msg);
		json_decref(meta);
		return;
	}
	fn_call *calls = calloc((size_t)n, sizeof *calls), **done = calloc((size_t)n, sizeof *done);
	size_t tn = json_array_size(tj);
	for (int i = 0; i < n; i++) {
		json_t *t = json_array();
		size_t off = tn > (size_t)P ? ((size_t)i * 997) % (tn - (size_t)P) : 0;
		for (int j = 0; j < P; j++)
			json_array_append_new(t, tn > (size_t)P ? json_incref(json_array_get(tj, off + j))
				: json_integer(3 + (j * 7919 + i * 104729) % (V - 3)));
		calls[i].in = json_pack("{s:o,s:i,s:[]}", "tokens", t, "max_tokens", NEW, "stop");
	}
	double t0 = now_s(), dec_s = 0;
	int left = 0, steps = 0, preempted = 0;
	long long dec_tok = 0;
	for (int i = 0; i < n; i++)
		left += k->seq_add(s, &calls[i]) == 0;
	while (left > 0) {
		fn_step st = {.done = done};
		double ts = now_s();
		if (k->seq_step(s, &st) < 0) {
			printf("batch %d: step failed\n", n);
			break;
		}
		double te = now_s();
		steps++;
		preempted += st.preempted;
		if (st.prefill_tokens == 0 && st.decode_rows == n) {
			dec_s += te - ts;
			dec_tok += st.decode_rows;
		}
		left -= (int)st.n_done;
	}
	double wall = now_s() - t0;
	long long out_tok = 0;
	for (int i = 0; i < n; i++)
		out_tok += (long long)json_array_size(json_object_get(calls[i].out, "tokens"));
	int same = 0, checked = 0, first = -1;
	for (int i = 0; i < n && checked < 8; i += n > 8 ? n / 8 : 1, checked++) {
		json_t *one = fn_invoke_one(k, s, calls[i].in, &err);
		json_t *a = json_object_get(calls[i].out, "tokens"), *b = json_object_get(one, "tokens");
		same += a && b && json_equal(a, b);
		for (size_t j = 0; a && b && j < json_array_size(a) && first < 0; j++)
			if (!json_equal(json_array_get(a, j), json_array_get(b, j)))
				first = (int)j;
		json_decref(one);
	}
	printf("thaw_llama_batch device=%s variant=%s batch=%d prompt=%d new=%d out_tok_s=%.1f "
	       "decode_tok_s=%.1f steps=%d preempted=%d wall_s=%.3f same_as_alone=%d/%d "
	       "first_difference=%d\n", dev, vname, n, P, NEW, out_tok / wall,
	       dec_s > 0 ? dec_tok / dec_s : 0.0, steps, preempted, wall, same, checked, first);
	for (int i = 0; i < n; i++) {
		json_decref(calls[i].out);
		json_decref((json_t *)calls[i].in);
	}
	free(calls);
	free(done);
	k->release(s);
	json_decref(meta);
}

int main(int argc, char **argv)
{
	const char *dir = NULL, *rnd = NULL, *dev = "cuda:0", *pfile = NULL, *hfg = NULL;
	const char *variants = "bf16,nograph,int8,int8:32";
	int P = 128, NEW = 256, R = 3, gemm = 0, bw = 0, prof_on = 0;
	const char *tfile = NULL, *batches = NULL;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *n = i + 1 < argc ? argv[i + 1] : "";
		if (!strcmp(a, "--model")) dir = n, i++;
		else if (!strcmp(a, "--random")) rnd = n, i++;
		else if (!strcmp(a, "--device")) dev = n, i++;
		else if (!strcmp(a, "--prompt")) P = atoi(n), i++;
		else if (!strcmp(a, "--prompt-file")) pfile = n, i++;
		else if (!strcmp(a, "--new")) NEW = atoi(n), i++;
		else if (!strcmp(a, "--reps")) R = atoi(n), i++;
		else if (!strcmp(a, "--variants")) variants = n, i++;
		else if (!strcmp(a, "--hf-greedy")) hfg = n, i++;
		else if (!strcmp(a, "--text-file")) tfile = n, i++;
		else if (!strcmp(a, "--batch")) batches = n, i++;
		else if (!strcmp(a, "--gemm")) gemm = 1;
		else if (!strcmp(a, "--bw")) bw = 1;
		else if (!strcmp(a, "--profile")) prof_on = 1;
		else { fprintf(stderr, "bench_llama: unknown option %s\n", a); return 2; }
	}
	kern_dev *d;
	if (kern_dev_open(dev, 0, &d) < 0) {
		printf("bench_llama: device %s unavailable: skipped\n", dev);
		return 0;
	}
	(void)bw;
	(void)gemm;
#ifdef THAW_CUDA
	if (bw && kern_dev_is_cuda(d))
		bench_bw();
	if (gemm && kern_dev_is_cuda(d)) {
		bench_gemm(d, P);
		bench_gemm(d, 512);
	}
#endif
	model m = {0};
	snap_st *st = NULL;
	double t0 = now_s();
	if ((dir ? dir_model(&m, dir, &st) : rnd ? random_model(&m, rnd) : -EINVAL) < 0) {
		fprintf(stderr, "bench_llama: need --model DIR or --random SPEC\n");
		return 2;
	}
	printf("model %s: %zu tensors (%.1f s to open)\n", dir ? dir : rnd, m.n, now_s() - t0);
	json_t *pj = pfile ? json_load_file(pfile, 0, NULL) : NULL;
	if (pj)
		P = (int)json_array_size(pj);
	int32_t *prompt = malloc((size_t)P * 4);
	long long V = json_integer_value(json_object_get(m.config, "vocab_size"));
	for (int i = 0; i < P; i++)
		prompt[i] = pj ? (int32_t)json_integer_value(json_array_get(pj, (size_t)i))
			       : (int32_t)(3 + (i * 7919) % (V - 3));
	json_t *toks = json_array();
	for (int i = 0; i < P; i++)
		json_array_append_new(toks, json_integer(prompt[i]));
	json_t *req = json_pack("{s:O,s:i,s:[]}", "tokens", toks, "max_tokens", NEW, "stop");
	json_t *meta = json_pack("{s:s,s:O}", "kind", "llama", "config", m.config);
	const fn_kind *k = fn_kind_find("llama");
	int32_t *ref = NULL;
	/* --text-file: up to 8 windows of P prompt + NEW forced tokens of real text */
	json_t *tj = tfile ? json_load_file(tfile, 0, NULL) : NULL;
	int nwin = tj ? (int)(json_array_size(tj) / (size_t)(P + NEW)) : 0;
	if (tfile && nwin < 1)
		fprintf(stderr, "bench_llama: %s: not a JSON array of at least %d token ids\n", tfile,
			P + NEW);
	nwin = nwin > 8 ? 8 : nwin;
	int32_t *text = nwin ? malloc((size_t)nwin * (P + NEW) * 4) : NULL, *tref = NULL;
	for (int i = 0; i < nwin * (P + NEW); i++)
		text[i] = (int32_t)json_integer_value(json_array_get(tj, (size_t)i));
	char vbuf[256];
	snprintf(vbuf, sizeof vbuf, "%s", variants);
	for (char *save, *v = strtok_r(vbuf, ",", &save); v; v = strtok_r(NULL, ",", &save)) {
		char vname[64];
		snprintf(vname, sizeof vname, "%s", v);
		kern_tuning tune = ab_tuning(v);
		int quant = !strncmp(v, "int8", 4), block = !strcmp(v, "int8:32") ? 32 : 0;
		kern_dev *vd;
		if (kern_dev_open_tuned(dev, 0, &tune, &vd) < 0) {
			printf("variant %s: device %s unavailable\n", v, dev);
			continue;
		}
		devw w;
		t0 = now_s();
		if (upload(vd, &m, quant, block, &w) < 0) {
			printf("variant %s: out of memory\n", v);
			kern_dev_close(vd);
			continue;
		}
		double t_up = now_s() - t0;
		if (prof_on && kern_dev_is_cuda(vd)) {
			printf("variant %s:\n", v);
			profile(vd, w.w, w.n, m.config, P + NEW / 2);
		}
		fn_load_args la = {vd, w.w, w.n, meta};
		void *s = NULL;
		fn_error err;
		if (k->load(&la, &s, &err) < 0) {
			printf("variant %s: load failed: %s\n", v, err.msg);
			unload(vd, &w);
			kern_dev_close(vd);
			continue;
		}
		json_t *out = fn_invoke_one(k, s, req, &err);   /* warm-up (captures the graph) */
		double dec[16], pre[16], e2e[16];
		int steps = 0, graph = 0;
		for (int r = 0; r < R && r < 16; r++) {
			json_decref(out);
			t0 = now_s();
			out = fn_invoke_one(k, s, req, &err);
			e2e[r] = now_s() - t0;
			fn_llama_stats(s, &pre[r], &dec[r], &steps, &graph);
		}
		qsort(dec, (size_t)R, sizeof dec[0], cmp_d);
		qsort(pre, (size_t)R, sizeof pre[0], cmp_d);
		qsort(e2e, (size_t)R, sizeof e2e[0], cmp_d);
		double tps = steps / dec[R / 2], roof = 3.35e12 / w.weight_bytes;
		printf("thaw_llama device=%s variant=%s graph=%d prompt=%d new=%d prefill_ms=%.1f "
		       "decode_tok_s=%.1f e2e_tok_s=%.1f weight_GB_per_token=%.3f roofline_3.35TBs_tok_s=%.0f "
		       "pct_of_roofline=%.1f", dev, vname, graph, P, NEW, pre[R / 2] * 1e3, tps,
		       NEW / e2e[R / 2], w.weight_bytes / 1e9, roof, 100 * tps / roof);
		if (measured_bw > 0)
			printf(" pct_of_measured_copy_bw=%.1f", 100 * tps / (measured_bw / w.weight_bytes));
		printf(" (upload+quantize %.1f s, median of %d)\n", t_up, R);
		json_t *gt = json_object_get(out, "tokens");
		int ng = (int)json_array_size(gt);
		if (!ref && ng == NEW) {
			ref = malloc((size_t)NEW * 4);
			for (int i = 0; i < NEW; i++)
				ref[i] = (int32_t)json_integer_value(json_array_get(gt, (size_t)i));
			if (hfg) {
				json_t *h = json_load_file(hfg, 0, NULL);
				int same = 0, first = -1;
				for (int i = 0; i < NEW && i < (int)json_array_size(h); i++) {
					int eq = json_integer_value(json_array_get(h, (size_t)i)) == ref[i];
					same += eq;
					if (!eq && first < 0)
						first = i;
				}
				printf("greedy vs HF generate (%s): %d/%d tokens equal, first difference at %d\n",
				       v, same, NEW, first);
				json_decref(h);
			}
		} else if (ref && quant) {
			int32_t *am = malloc((size_t)NEW * 4);
			if (fn_llama_forced(s, prompt, P, ref, NEW, am) == 0) {
				int agree = 0;
				for (int i = 0; i < NEW; i++)
					agree += am[i] == ref[i];
				printf("int8_agreement variant=%s teacher-forced greedy top-1 vs first variant: "
				       "%d/%d (%.1f%%)\n", vname, agree, NEW, 100.0 * agree / NEW);
			}
			free(am);
		} else if (ref && ng == NEW) {   /* same dtype, other kernels: greedy tokens should match */
			int same = 0, first = -1;
			for (int i = 0; i < NEW; i++) {
				int eq = json_integer_value(json_array_get(gt, (size_t)i)) == ref[i];
				same += eq;
				if (!eq && first < 0)
					first = i;
			}
			printf("greedy variant=%s vs first variant: %d/%d tokens equal, first difference at "
			       "%d\n", vname, same, NEW, first);
		}
		if (nwin) {
			int32_t *am = malloc((size_t)nwin * NEW * 4);
			int rc = 0, agree = 0, hit = 0, n = nwin * NEW;
			for (int wi = 0; wi < nwin && rc == 0; wi++)
				rc = fn_llama_forced(s, text + wi * (P + NEW), P, text + wi * (P + NEW) + P,
						     NEW, am + wi * NEW);
			for (int i = 0; rc == 0 && i < n; i++) {
				hit += am[i] == text[(i / NEW) * (P + NEW) + P + i % NEW];
				agree += tref ? am[i] == tref[i] : 1;
			}
			if (rc == 0)
				printf("text_agreement variant=%s windows=%d top-1 vs first variant on real "
				       "text: %d/%d (%.2f%%) next_token_accuracy=%.2f%%\n", vname, nwin, agree, n,
				       100.0 * agree / n, 100.0 * hit / n);
			if (rc == 0 && !tref)
				tref = am;
			else
				free(am);
		}
		json_decref(out);
		k->release(s);
		if (batches) {
			char bbuf[128];
			snprintf(bbuf, sizeof bbuf, "%s", batches);
			for (char *bs, *b = strtok_r(bbuf, ",", &bs); b; b = strtok_r(NULL, ",", &bs))
				if (atoi(b) > 0)
					bench_batch(k, vd, w.w, w.n, m.config, dev, vname, atoi(b), P, NEW, V,
						    tj);
		}
		unload(vd, &w);
		kern_dev_close(vd);
	}
	free(text);
	free(tref);
	json_decref(tj);
	json_decref(req);
	json_decref(meta);
	json_decref(pj);
	kern_dev_close(d);
	return 0;
}

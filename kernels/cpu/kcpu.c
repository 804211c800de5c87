/* kcpu.c — the CPU reference backend: device state, memory (plain host memory), the
 * parallel-for helper, and the elementwise / row ops. Plain, correct C; products accumulate in
 * F32 like the GPU kernels. Matrix products are in kcpu_linear.c, attention in kcpu_attn.c,
 * token selection in kcpu_sample.c, the paged KV cache ops in kcpu_paged.c,
 * the training ops in kcpu_train.c and the backward ops of a decoder in kcpu_bwd.c. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "kernels/cpu/kcpu_int.h"

static int cpu_open(int index, int threads, const kern_tuning *t, struct pool_compute *compute,
		    void **out)
{
	kcpu *c = calloc(1, sizeof *c);
	if (!c)
		return -ENOMEM;
	if (threads <= 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		threads = n > 0 ? (int)n : 1;
	}
	c->threads = threads > 64 ? 64 : threads;
	*out = c;
	return 0;
}

static void cpu_close(void *b) { free(b); }
static void *cpu_alloc(void *b, size_t n) { return calloc(1, n); }
static void cpu_free(void *b, void *p) { free(p); }
static int cpu_copy(void *b, void *dst, const void *src, size_t n)
{
	memmove(dst, src, n);
	return 0;
}
static int cpu_sync(void *b) { return 0; }

typedef struct par_job {
	int (*fn)(void *, int64_t, int64_t);
	void *ctx;
	int64_t lo, hi;
	int rc;
} par_job;

static void *par_thread(void *arg)
{
	par_job *j = arg;
	j->rc = j->fn(j->ctx, j->lo, j->hi);
	return NULL;
}

int kcpu_par(kcpu *c, int64_t n, double work, int (*fn)(void *ctx, int64_t lo, int64_t hi),
	     void *ctx)
{
	int nt = c->threads;
	if (work < 2e5 || nt <= 1 || n <= 1)
		return fn(ctx, 0, n);
	if (nt > n)
		nt = (int)n;
	if ((double)nt > work / 1e5)
		nt = (int)(work / 1e5) > 1 ? (int)(work / 1e5) : 1;
	if (nt <= 1)
		return fn(ctx, 0, n);
	par_job jobs[64];
	pthread_t th[64];
	int started[64] = {0}, rc = 0;
	for (int i = 0; i < nt; i++) {
		jobs[i] = (par_job){fn, ctx, n * i / nt, n * (i + 1) / nt, 0};
		if (i > 0)
			started[i] = pthread_create(&th[i], NULL, par_thread, &jobs[i]) == 0;
	}
	par_thread(&jobs[0]);
	for (int i = 1; i < nt; i++) {
		if (started[i])
			pthread_join(th[i], NULL);
		else
			par_thread(&jobs[i]);   /* could not start a thread: do it here */
	}
	for (int i = 0; i < nt; i++)
		if (jobs[i].rc < 0 && rc == 0)
			rc = jobs[i].rc;
	return rc;
}

float kcpu_act(float v, kern_act act)
{
	switch (act) {
	case KERN_ACT_RELU: return v > 0 ? v : 0;
	case KERN_ACT_GELU: return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
	case KERN_ACT_TANH: return tanhf(v);
	case KERN_ACT_SILU: return v / (1.0f + expf(-v));
	case KERN_ACT_NONE: break;
	}
	return v;
}

static void to_f32(kern_dtype dt, const void *src, float *dst, int64_t n)
{
	if (dt == KERN_F32) {
		memmove(dst, src, (size_t)n * 4);
	} else if (dt == KERN_BF16) {
		const uint16_t *s = src;
		for (int64_t i = 0; i < n; i++)
			dst[i] = kern_bf16_to_f32(s[i]);
	} else if (dt == KERN_F16) {
		const uint16_t *s = src;
		for (int64_t i = 0; i < n; i++)
			dst[i] = kern_f16_to_f32(s[i]);
	}
}

static int cpu_cast_f32(void *b, kern_dtype dt, const void *src, float *dst, int64_t n)
{
	to_f32(dt, src, dst, n);
	return 0;
}

static int cpu_embed(void *b, kern_dtype dt, const void *table, int64_t vocab, int64_t dim,
		     const int32_t *tokens, int64_t m, float *y)
{
	size_t es = kern_dtype_size(dt);
	for (int64_t i = 0; i < m; i++) {
		if (tokens[i] < 0 || tokens[i] >= vocab)
			memset(y + i * dim, 0, (size_t)dim * 4);
		else
			to_f32(dt, (const char *)table + (size_t)tokens[i] * dim * es, y + i * dim, dim);
	}
	return 0;
}

static int cpu_rmsnorm(void *b, const float *x, const float *w, int64_t m, int64_t dim, float eps,
		       float *y)
{
	for (int64_t i = 0; i < m; i++) {
		const float *r = x + i * dim;
		float ss = 0;
		for (int64_t j = 0; j < dim; j++)
			ss += r[j] * r[j];
		float inv = 1.0f / sqrtf(ss / (float)dim + eps);
		for (int64_t j = 0; j < dim; j++)
			y[i * dim + j] = r[j] * inv * w[j];
	}
	return 0;
}

int kcpu_rope(void *b, float *x, const int32_t *pos, int64_t m, int64_t heads, int64_t hd,
	      float theta)
{
	int64_t half = hd / 2;
	for (int64_t i = 0; i < m; i++)
		for (int64_t j = 0; j < half; j++) {
			/* HF: inv_freq = 1 / theta^(2j/hd) in F32, angle = pos * inv_freq in F32 */
			float inv = 1.0f / powf(theta, (float)(2 * j) / (float)hd);
			float ang = (float)pos[i] * inv, c = cosf(ang), s = sinf(ang);
			for (int64_t h = 0; h < heads; h++) {
				float *r = x + (i * heads + h) * hd;
				float a = r[j], bb = r[j + half];
				r[j] = a * c - bb * s;
				r[j + half] = bb * c + a * s;
			}
		}
	return 0;
}

static int cpu_kv_store(void *b, const float *k, const float *v, const int32_t *pos, int64_t m,
			int64_t kvdim, float *kc, float *vc, int64_t cap)
{
	for (int64_t i = 0; i < m; i++) {
		if (pos[i] < 0 || pos[i] >= cap)
			return -EINVAL;
		memcpy(kc + (int64_t)pos[i] * kvdim, k + i * kvdim, (size_t)kvdim * 4);
		memcpy(vc + (int64_t)pos[i] * kvdim, v + i * kvdim, (size_t)kvdim * 4);
	}
	return 0;
}

static int cpu_silu_mul(void *b, const float *gate, const float *up, int64_t n, float *out)
{
	for (int64_t i = 0; i < n; i++) {
		float g = gate[i];
		out[i] = g / (1.0f + expf(-g)) * up[i];
	}
	return 0;
}

static int cpu_bias_act(void *b, float *x, const float *bias, int64_t m, int64_t n, kern_act act)
{
	for (int64_t i = 0; i < m; i++)
		for (int64_t j = 0; j < n; j++)
			x[i * n + j] = kcpu_act(x[i * n + j] + (bias ? bias[j] : 0.0f), act);
	return 0;
}

static int cpu_add(void *b, float *y, const float *x, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		y[i] += x[i];
	return 0;
}

static int cpu_softmax(void *b, float *x, int64_t m, int64_t n)
{
	for (int64_t i = 0; i < m; i++) {
		float *r = x + i * n, mx = r[0], s = 0;
		for (int64_t j = 1; j < n; j++)
			mx = r[j] > mx ? r[j] : mx;
		for (int64_t j = 0; j < n; j++) {
			r[j] = expf(r[j] - mx);
			s += r[j];
		}
		for (int64_t j = 0; j < n; j++)
			r[j] /= s;
	}
	return 0;
}

/* CPU ops are done when they return: marks have nothing to wait for. */
static int cpu_mark(void *b, int slot)
{
	(void)b;
	(void)slot;
	return 0;
}

const kern_backend kern_cpu_backend = {
	.name = "cpu",
	.open = cpu_open,
	.close = cpu_close,
	.alloc = cpu_alloc,
	.free = cpu_free,
	.h2d = cpu_copy,
	.d2h = cpu_copy,
	.d2d = cpu_copy,
	.sync = cpu_sync,
	.cast_f32 = cpu_cast_f32,
	.linear = kcpu_linear,
	.linear_add = kcpu_linear_add,
	.embed = cpu_embed,
	.rmsnorm = cpu_rmsnorm,
	.rope = kcpu_rope,
	.kv_store = cpu_kv_store,
	.attention = kcpu_attention,
	.silu_mul = cpu_silu_mul,
	.bias_act = cpu_bias_act,
	.add = cpu_add,
	.softmax = cpu_softmax,
	.argmax = kcpu_argmax,
	.sample = kcpu_sample,
	.gemm = kcpu_gemm,
	.act_grad = kcpu_act_grad,
	.xent_grad = kcpu_xent_grad,
	.mse_grad = kcpu_mse_grad,
	.col_sum = kcpu_col_sum,
	.adam = kcpu_adam,
	.argmax_feed = kcpu_argmax_feed,
	.alloc_host = cpu_alloc,   /* device memory is host memory */
	.free_host = cpu_free,
	.mark = cpu_mark,
	.wait_mark = cpu_mark,
	.paged_rope_attention = kcpu_paged_rope_attention,
	.gather_rows = kcpu_gather_rows,
	.sample_rows = kcpu_sample_rows,
	.rmsnorm_bwd = kcpu_rmsnorm_bwd,
	.rope_bwd = kcpu_rope_bwd,
	.causal_attention = kcpu_causal_attention,
	.causal_attention_bwd = kcpu_causal_attention_bwd,
	.silu_mul_bwd = kcpu_silu_mul_bwd,
	.linear_bwd = kcpu_linear_bwd,
	.xent_lm = kcpu_xent_lm,
};

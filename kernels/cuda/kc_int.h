/* kc_int.h — inside the CUDA backend: per-device state, checking macros (every CUDA and cuBLAS
 * call goes through KC_CHECK / KC_BLAS), and small device helpers shared by the op files
 * (one op per .cu file). */
#ifndef THAW_KC_INT_H
#define THAW_KC_INT_H
#ifndef THAW_CUDA
#define THAW_CUDA 1   /* nvcc builds do not get the C flags */
#endif
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cublas_v2.h>
#include "kernels/kern_int.h"
#include "pool/pool_cuda.h"

typedef struct kc {
	int dev;
	cudaStream_t s;
	cublasHandle_t blas;
	void *blas_ws;             /* cuBLAS workspace, set once (graph-capture safe) */
	size_t blas_ws_size;
	void *xbuf;                /* activations rounded to F16/BF16 for cuBLAS */
	size_t xbuf_size;
	float *tbuf;               /* F32 scratch for composed fused ops (prefill only) */
	size_t tbuf_size;
	float *nbuf;               /* F32 scratch: normed input of composed fused ops */
	size_t nbuf_size;
	void *wbuf;                /* int8 weights dequantized to BF16 for cuBLAS (a chunk of rows) */
	size_t wbuf_size;
	float *att_part;           /* kc_rope_attention: per-(head, split) partials (made at open) */
	int *att_cnt;              /* kc_rope_attention: per-head arrival counters (kept zero) */
	struct kc_am_part *am_part;   /* kc_argmax_feed: per-block partials (made at open) */
	int *am_cnt;               /* kc_argmax_feed: arrival counter (kept zero) */
	cudaEvent_t marks[KERN_MARKS];   /* kern_mark slots */
	int capturing;
	int pdl;                   /* launch decode-path kernels with programmatic dependent launch */
	/* ---- xtag: a producer's output already rounded in xbuf (see the xtag block below) ---- */
	unsigned long long ops;    /* backend entries so far (kc_enter, kc_alloc, kc_free) */
	unsigned long long xtag_op;   /* xbuf holds xtag_x [xtag_m, xtag_k] rounded to xtag_dt, */
	const float *xtag_x;          /* written by backend entry number xtag_op (0: no tag) */
	int64_t xtag_m, xtag_k;
	kern_dtype xtag_dt;
	kern_dtype xdt;            /* dtype of the last rounding for cuBLAS: producers round to it */
	int xtag_off;              /* THAW_NO_XTAG=1: producers write no rounded copy (A/B runs) */
	unsigned long long xtag_hits; /* roundings skipped thanks to a tag (tests read it) */
	/* ---- end xtag ---- */
} kc;

/* kc_env: the integer value of environment variable name, or def when unset. The backend's
 * A/B switches (THAW_NO_PDL, THAW_ATT_TILED, ...) are read through it; those read per call
 * let a benchmark change them between variants on one open device. */
static inline long kc_env(const char *name, long def)
{
	const char *v = getenv(name);
	return v ? atol(v) : def;
}

/* KC_CHECK returns -EIO from the calling function when a CUDA call fails (POOL_CUDA_CHECK). */
#define KC_CHECK(call) POOL_CUDA_CHECK(call)
/* KC_BLAS returns -EIO when a cuBLAS call fails, naming the call, file and line. */
#define KC_BLAS(call) do { cublasStatus_t kc_s_ = (call); if (kc_s_ != CUBLAS_STATUS_SUCCESS) { \
	fprintf(stderr, "cublas: %s failed: status %d (%s:%d)\n", #call, (int)kc_s_, __FILE__, \
		__LINE__); return -EIO; } } while (0)
/* KC_LAUNCHED checks the launch just issued. */
#define KC_LAUNCHED() KC_CHECK(cudaGetLastError())

static inline int kc_enter(kc *c)
{
	c->ops++;   /* voids any xtag of the previous entry (xtag block below) */
	KC_CHECK(cudaSetDevice(c->dev));
	return 0;
}
#define KC_ENTER(c) do { int kc_rc_ = kc_enter(c); if (kc_rc_) return kc_rc_; } while (0)

/* Programmatic dependent launch (Hopper): kernels launched with kc_launch may start while
 * their predecessor finishes; each such kernel calls kc_pdl_trigger() first (let its own
 * successor launch early) and kc_pdl_wait() before it reads anything a predecessor wrote, so
 * only independent work (e.g. streaming weights into registers) overlaps. No-ops before sm_90. */
__device__ __forceinline__ void kc_pdl_wait(void)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
	asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void kc_pdl_trigger(void)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
	asm volatile("griddepcontrol.launch_dependents;");
#endif
}

/* kc_launch_smem: kc_launch with `smem` bytes of dynamic shared memory (at most 48 KiB). */
template <typename... Exp, typename... Act>
static inline cudaError_t kc_launch_smem(kc *c, void (*k)(Exp...), dim3 g, dim3 b, size_t smem,
					 Act... args)
{
	cudaLaunchConfig_t cfg = {};
	cudaLaunchAttribute at[1];
	cfg.gridDim = g;
	cfg.blockDim = b;
	cfg.dynamicSmemBytes = smem;
	cfg.stream = c->s;
	at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
	at[0].val.programmaticStreamSerializationAllowed = 1;
	cfg.attrs = at;
	cfg.numAttrs = c->pdl ? 1 : 0;
	return cudaLaunchKernelEx(&cfg, k, ((Exp)args)...);
}

template <typename... Exp, typename... Act>
static inline cudaError_t kc_launch(kc *c, void (*k)(Exp...), dim3 g, dim3 b, Act... args)
{
	return kc_launch_smem(c, k, g, b, 0, args...);
}
#define KC_LAUNCH(c, k, g, b, ...) KC_CHECK(kc_launch(c, k, g, b, __VA_ARGS__))

static inline unsigned kc_blocks(int64_t n, int per) { return (unsigned)((n + per - 1) / per); }

__device__ __forceinline__ float kc_tof(float v) { return v; }
__device__ __forceinline__ float kc_tof(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float kc_tof(__half v) { return __half2float(v); }

__device__ __forceinline__ float kc_act(float v, int act)
{
	switch (act) {
	case KERN_ACT_RELU: return v > 0.f ? v : 0.f;
	case KERN_ACT_GELU: return 0.5f * v * (1.f + erff(v * 0.70710678118654752f));
	case KERN_ACT_TANH: return tanhf(v);
	case KERN_ACT_SILU: return v / (1.f + expf(-v));
	default: return v;
	}
}

__device__ __forceinline__ float kc_warp_sum(float v)
{
	for (int o = 16; o > 0; o >>= 1)
		v += __shfl_xor_sync(0xffffffffu, v, o);
	return v;
}

__device__ __forceinline__ float kc_warp_max(float v)
{
	for (int o = 16; o > 0; o >>= 1)
		v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
	return v;
}

/* kc_from_f converts an F32 value to T (F32, BF16 or F16, round to nearest). */
template <typename T> __device__ __forceinline__ T kc_from_f(float v);
template <> __device__ __forceinline__ float kc_from_f(float v) { return v; }
template <> __device__ __forceinline__ __nv_bfloat16 kc_from_f(float v) { return __float2bfloat16(v); }
template <> __device__ __forceinline__ __half kc_from_f(float v) { return __float2half(v); }

/* kc_block_sum: sum over the block (blockDim.x a multiple of 32, <= 1024); every thread gets
 * the result. sh: 32 floats of shared memory. */
__device__ __forceinline__ float kc_block_sum(float v, float *sh)
{
	int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
	v = kc_warp_sum(v);
	__syncthreads();
	if (lane == 0)
		sh[w] = v;
	__syncthreads();
	v = lane < nw ? sh[lane] : 0.f;
	return kc_warp_sum(v);
}

__device__ __forceinline__ float kc_block_max(float v, float *sh)
{
	int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
	v = kc_warp_max(v);
	__syncthreads();
	if (lane == 0)
		sh[w] = v;
	__syncthreads();
	v = lane < nw ? sh[lane] : -INFINITY;
	return kc_warp_max(v);
}

/* kc_rmsnorm_k: RMSNorm of each row (one block per row, F32 sum of squares), the output written
 * as T: F32 for kern_rmsnorm, BF16/F16 for the rounded input of cuBLAS products. */
template <typename T>
__global__ void kc_rmsnorm_k(const float *__restrict__ x, const float *__restrict__ w, int64_t dim,
			     float eps, T *__restrict__ y)
{
	__shared__ float sh[32];
	const float *r = x + (int64_t)blockIdx.x * dim;
	T *o = y + (int64_t)blockIdx.x * dim;
	float ss = 0.f;
	kc_pdl_trigger();
	kc_pdl_wait();
	for (int64_t j = threadIdx.x; j < dim; j += blockDim.x)
		ss += r[j] * r[j];
	ss = kc_block_sum(ss, sh);
	float inv = rsqrtf(ss / (float)dim + eps);
	for (int64_t j = threadIdx.x; j < dim; j += blockDim.x)
		o[j] = kc_from_f<T>(r[j] * inv * w[j]);
}

/* Op entry points (one per .cu file), filled into kern_cuda_backend by kc_dev.cu. */
extern "C" {
int kc_cast_f32(void *b, kern_dtype dt, const void *src, float *dst, int64_t n);
int kc_linear(void *b, const float *x, int64_t m, const kern_mat *w, const float *bias,
	      kern_act act, float *y);
int kc_gemv(kc *c, const float *x, int64_t m, const kern_mat *w, const float *bias, kern_act act,
	    float *y);
int kc_gemv_ex(kc *c, const float *x, int64_t m, int nw, const kern_mat *w, float *const *y,
	       const float *bias, kern_act act, int acc, int swiglu, const kern_norm *norm);
int kc_gemv_fuses_i8_norm(int64_t m);
int kc_gemm(kc *c, const float *x, int64_t m, const kern_mat *w, float *y, float beta);
int kc_gemm_ex(kc *c, const float *x, int64_t m, const kern_mat *w, float *y, float beta,
	       int rounded);
int kc_round_x(kc *c, const float *x, int64_t m, const kern_mat *w);
int kc_norm_round_x(kc *c, const float *x, int64_t m, const kern_norm *norm, const kern_mat *w);
int kc_scratch(kc *c, size_t bytes, float **out);
int kc_linear_add(void *b, const float *x, int64_t m, const kern_mat *w, float *y);
int kc_linear_multi(void *b, const float *x, int64_t m, int nw, const kern_mat *w,
		    float *const *y, const kern_norm *norm);
int kc_swiglu(void *b, const float *x, int64_t m, const kern_mat *wg, const kern_mat *wu,
	      float *out, const kern_norm *norm);
int kc_normed(kc *c, const float *x, int64_t m, int64_t k, const kern_norm *norm,
	      const float **out);
int kc_rope_kv(void *b, float *q, float *k, const float *v, const int32_t *pos, int64_t m,
	       int64_t heads, int64_t kvheads, int64_t hd, float theta, float *kc_, float *vc,
	       int64_t cap);
int kc_embed(void *b, kern_dtype dt, const void *table, int64_t vocab, int64_t dim,
	     const int32_t *tokens, int64_t m, float *y);
int kc_rmsnorm(void *b, const float *x, const float *w, int64_t m, int64_t dim, float eps,
	       float *y);
int kc_rope(void *b, float *x, const int32_t *pos, int64_t m, int64_t heads, int64_t hd,
	    float theta);
int kc_kv_store(void *b, const float *k, const float *v, const int32_t *pos, int64_t m,
		int64_t kvdim, float *kc_, float *vc, int64_t cap);
int kc_attention(void *b, const float *q, const float *kc_, const float *vc, const int32_t *pos,
		 int64_t m, int64_t heads, int64_t kvheads, int64_t hd, int64_t cap, float scale,
		 float *out);
int kc_rope_attention(void *b, float *q, float *k, const float *v, const int32_t *pos, int64_t m,
		      int64_t heads, int64_t kvheads, int64_t hd, float theta, float *kc_, float *vc,
		      int64_t cap, float scale, float *out);
/* kc_rope_attention_scratch makes kc_rope_attention's partials and counters (at open). */
int kc_rope_attention_scratch(kc *c);
int kc_silu_mul(void *b, const float *gate, const float *up, int64_t n, float *out);
int kc_bias_act(void *b, float *x, const float *bias, int64_t m, int64_t n, kern_act act);
int kc_add(void *b, float *y, const float *x, int64_t n);
int kc_softmax(void *b, float *x, int64_t m, int64_t n);
int kc_argmax(void *b, const float *x, int64_t m, int64_t n, int32_t *out, float *lp);
int kc_argmax_feed(void *b, const float *x, int64_t n, int32_t *step, int32_t *hist,
		   float *lphist, int64_t cap);
/* kc_argmax_feed's per-block partial: block max, its index, sum of exp(x - max) */
struct kc_am_part { float m, s; int i, pad; };
#define KC_AM_MAX_BLOCKS 64
int kc_sample(void *b, const float *x, int64_t m, int64_t n, float temp, int top_k, float top_p,
	      const float *u, int32_t *out, float *lp);
/* training ops */
int kc_gemm_t(void *b, int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
	      const float *a, const float *bm, float beta, float *c);
int kc_act_grad(void *b, float *g, const float *z, int64_t n, kern_act act);
int kc_xent_grad(void *b, const float *x, const float *lab, int64_t m, int64_t n, float scale,
		 float *grad, float *loss, float *correct);
int kc_mse_grad(void *b, const float *x, const float *t, int64_t m, int64_t n, float scale,
		float *grad, float *loss);
int kc_col_sum(void *b, const float *x, int64_t m, int64_t n, float alpha, float beta,
	       float *out);
int kc_adam(void *b, float *p, float *mo, float *v, const float *g, int64_t n, float lr,
	    float b1, float b2, float eps);
}

/* ---- xtag: prefill products that skip their input rounding -----------------------------------
 * cuBLAS products with F16/BF16 weights (kc_linear / kc_linear_add, m > KC_GEMV_MAX_M) take a rounded
 * copy of their F32 input in xbuf; kc_round_x makes it with its own launch. A producer op whose
 * F32 output feeds such a product (kc_attention; kc_swiglu's SiLU*mul) writes that copy as well,
 * in the same kernel, rounded to c->xdt (the dtype of the device's last rounding for cuBLAS: in a
 * decoder layer, that of the q/k/v or gate/up products, so of o_proj and down_proj too), and
 * tags it: input pointer, rows, columns, dtype, and the number of the backend entry that wrote
 * it. The consumer uses the copy only when the tag names exactly its input and dtype and was
 * written by the entry just before its own: every backend entry (kc_enter, kc_alloc, kc_free)
 * counts in c->ops, so any op in between -- even one that leaves the input alone -- voids the
 * tag and the consumer rounds as before. A guessed dtype that proves wrong costs only the unused
 * copy. Contract: between the two ops, callers change device memory only through this device's
 * kern ops (as kern.h asks); a write by another handle or a raw CUDA copy would not be seen.
 * The F32 outputs are written as before. No tags while capturing a CUDA graph. */
#define KC_GEMV_MAX_M 8    /* products of up to this many rows run on the GEMV kernels */
#define KC_XTAG_MIN_M (KC_GEMV_MAX_M + 1)   /* ... and producers round for the rows cuBLAS takes */

/* Products of many rows with int8 weights: the GEMV kernels re-read the weights for every 8
 * rows, so above KC_I8_GEMV_MAX_M rows the weights are dequantized to BF16 (a chunk of rows at a
 * time, kc_linear.cu) and multiplied by cuBLAS like BF16 weights (activations rounded to BF16). */
#define KC_I8_GEMV_MAX_M 32

/* kc_gemv_takes: whether m rows of w go to the GEMV kernels (else cuBLAS).
 * THAW_I8_GEMV_MAX_M moves the int8 limit (A/B runs). */
static inline bool kc_gemv_takes(int64_t m, const kern_mat *w)
{
	return m <= KC_GEMV_MAX_M ||
	       (w->dt == KERN_I8 && m <= kc_env("THAW_I8_GEMV_MAX_M", KC_I8_GEMV_MAX_M));
}

/* kc_gemm_dt: the dtype cuBLAS multiplies w in (and x is rounded to): BF16 for int8. */
static inline kern_dtype kc_gemm_dt(const kern_mat *w)
{
	return w->dt == KERN_I8 ? KERN_BF16 : w->dt;
}

/* kc_xtag_want: the dtype a producer of m rows should round its output to, or KERN_F32 for no
 * copy (few rows, graph capture, THAW_NO_XTAG, or no F16/BF16 rounding seen yet). */
static inline kern_dtype kc_xtag_want(const kc *c, int64_t m)
{
	if (c->xtag_off || c->capturing || m < KC_XTAG_MIN_M)
		return KERN_F32;
	return c->xdt == KERN_BF16 || c->xdt == KERN_F16 ? c->xdt : KERN_F32;
}

/* kc_xtag_set: call last in a producer entry, once xbuf holds x [m, k] rounded to dt (queued). */
static inline void kc_xtag_set(kc *c, const float *x, int64_t m, int64_t k, kern_dtype dt)
{
	c->xtag_x = x;
	c->xtag_m = m;
	c->xtag_k = k;
	c->xtag_dt = dt;
	c->xtag_op = c->ops;
}

/* kc_xtag_take: call first in a consumer entry (after KC_ENTER, before any nested entry):
 * 1 when xbuf holds x [m, k] rounded to dt, written by the entry just before this one. The tag
 * is used up either way. */
static inline int kc_xtag_take(kc *c, const float *x, int64_t m, int64_t k, kern_dtype dt)
{
	int hit = c->xtag_op != 0 && c->xtag_op + 1 == c->ops && c->xtag_x == x &&
		  c->xtag_m == m && c->xtag_k == k && c->xtag_dt == dt;
	c->xtag_op = 0;
	c->xtag_hits += (unsigned long long)hit;
	return hit;
}

extern "C" {
/* kc_xbuf: xbuf of at least `bytes` (grown outside graph capture); voids the tag. 0 or -errno. */
int kc_xbuf(kc *c, size_t bytes);
/* kc_silu_mul_ex: kc_silu_mul inside an entry (no kc_enter), also writing the result rounded to
 * rd into xbuf when rd is KERN_BF16 / KERN_F16 (the caller tags it). */
int kc_silu_mul_ex(kc *c, const float *gate, const float *up, int64_t n, float *out,
		   kern_dtype rd);
}
/* ---- end xtag ---- */
#endif

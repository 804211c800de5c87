/* kc_int.h — inside the CUDA backend: per-device state, checking macros (every CUDA and cuBLAS
 * call goes through KC_CHECK / KC_BLAS), and small device helpers shared by the op files
 * (one op per .cu file). */
#ifndef THAW_KC_INT_H
#define THAW_KC_INT_H
#ifndef THAW_CUDA
#define THAW_CUDA 1   /* nvcc builds do not get the C flags */
#endif
#include <errno.h>
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cublas_v2.h>
#include "kernels/kern_int.h"
#include "pool/pool_cuda.h"

/* Scratch buffers of the device's pool_compute (pool/pool_compute.h), by use */
enum kc_scratch_slot {
	KC_SCRATCH_X = 0,          /* activations rounded to F16/BF16 for cuBLAS */
	KC_SCRATCH_T,              /* F32 scratch for composed fused ops (prefill only) */
	KC_SCRATCH_N,              /* F32 scratch: normed input of composed fused ops */
	KC_SCRATCH_W,              /* int8 weights dequantized to BF16 for cuBLAS (a chunk of rows) */
	KC_SCRATCH_P,              /* paged attention: per-(row, head, partition) partials */
	KC_SCRATCH_K,              /* int8 tensor-core products: per-split partial sums */
};

typedef struct kc {
	int dev;
	pool_compute *pc;          /* stream, cuBLAS handle and scratch, from pool/ */
	int pc_borrowed;           /* pc belongs to the caller (kern_dev_open_compute) */
	cudaStream_t s;            /* pc's stream and handle */
	cublasHandle_t blas;
	void *xbuf;                /* KC_SCRATCH_X as last grown (kc_xbuf) */
	float *att_part;           /* kc_rope_attention: per-(head, split) partials (made at open) */
	int *att_cnt;              /* kc_rope_attention: per-head arrival counters (kept zero) */
	struct kc_am_part *am_part;   /* kc_argmax_feed: per-block partials (made at open) */
	int *am_cnt;               /* kc_argmax_feed: arrival counter (kept zero) */
	cudaEvent_t marks[KERN_MARKS];   /* kern_mark slots */
	int capturing;
	int pdl;                   /* launch decode-path kernels with programmatic dependent launch */
	int fused_attn;            /* kern_tuning.fused_attention */
	int64_t i8_gemm_rows;      /* kern_tuning.i8_gemm_rows */
	int nsm;                   /* multiprocessors of the device */
	int i8_mma_rows;           /* kern_tuning.i8_mma_rows */
} kc;

/* KC_CHECK / KC_BLAS return -EIO from the calling function when a CUDA / cuBLAS call fails,
 * logged through pool_log (POOL_CUDA_CHECK, POOL_BLAS_CHECK); KC_LOG logs and goes on. */
#define KC_CHECK(call) POOL_CUDA_CHECK(call)
#define KC_BLAS(call) POOL_BLAS_CHECK(call)
#define KC_LOG(call) POOL_CUDA_LOG(call)
/* KC_LAUNCHED checks the launch just issued. */
#define KC_LAUNCHED() KC_CHECK(cudaGetLastError())

static inline int kc_enter(kc *c)
{
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
/* paged KV cache and batched decoding */
int kc_paged_rope_attention(void *b, float *q, float *k, const float *v, const int32_t *pos,
			    const int32_t *seq, int64_t m, int64_t heads, int64_t kvheads, int64_t hd,
			    float theta, const kern_kv_pages *kv, float scale, float *out);
int kc_paged_rope_attention_proj(void *b, float *q, float *k, const float *v, const int32_t *pos,
				 const int32_t *seq, int64_t m, int64_t heads, int64_t kvheads,
				 int64_t hd, float theta, const kern_kv_pages *kv, float scale,
				 float *att, const kern_mat *wo, float *y);
int kc_gather_rows(void *b, const float *x, int64_t dim, const int32_t *rows, int64_t n,
		   float *y);
int kc_sample_rows(void *b, const float *x, int64_t m, int64_t n, const float *temp,
		   const int32_t *top_k, const float *top_p, const float *u, int32_t *out,
		   float *lp);
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
/* backward ops of a decoder */
int kc_rmsnorm_bwd(void *b, const float *x, const float *w, const float *dy, int64_t m,
		   int64_t dim, float eps, float *dx, float *dw);
int kc_rope_bwd(void *b, float *g, const int32_t *pos, int64_t m, int64_t heads, int64_t hd,
		float theta);
int kc_causal_attention(void *b, const float *q, const float *k, const float *v, int64_t nseq,
			int64_t T, int64_t heads, int64_t kvheads, int64_t hd, float scale,
			float *out, float *lse);
int kc_causal_attention_bwd(void *b, const float *q, const float *k, const float *v,
			    const float *out, const float *lse, const float *dout, int64_t nseq,
			    int64_t T, int64_t heads, int64_t kvheads, int64_t hd, float scale,
			    float *dq, float *dk, float *dv);
int kc_silu_mul_bwd(void *b, const float *gate, const float *up, const float *dout, int64_t n,
		    float *dgate, float *dup);
int kc_linear_bwd(void *b, const float *dy, int64_t m, const kern_mat *w, int accumulate,
		  float *dx);
int kc_xent_lm(void *b, const float *x, const int32_t *tgt, int64_t m, int64_t n, float scale,
	       float *grad, float *loss);
}

/* ---- prefill products whose input arrives rounded ------------------------------------------
 * cuBLAS products with F16/BF16 weights (and int8 weights dequantized to BF16) multiply a copy
 * of their F32 input rounded to that dtype in KC_SCRATCH_X; kc_round_x makes it with a launch of
 * its own. In the chained ops (kc_rope_attention_proj, kc_swiglu_proj) the producer of the
 * input -- attention, or swiglu's SiLU*mul -- writes that copy in the same kernel as its F32
 * output, and the product that follows inside the same op takes it (rounded = 1). The copy
 * never outlives the op that made it. */
#define KC_GEMV_MAX_M 8    /* products of up to this many rows run on the GEMV kernels */

/* Products of many rows with int8 weights: the GEMV kernels re-read the weights for every 8
 * rows, so above KC_I8_GEMV_MAX_M rows the weights are dequantized to BF16 (a chunk of rows at a
 * time, kc_linear.cu) and multiplied by cuBLAS like BF16 weights (activations rounded to BF16). */
#define KC_I8_GEMV_MAX_M 32

/* kc_i8_mma (kc_i8_mma.cu): y = x . W^T (+ y when acc) for int8 W and m <= i8_mma_rows rows on
 * tensor cores, the weights read once; x is F32, or BF16 (xbf16: e.g. the workspace copy of a
 * chained op). -EAGAIN when it does not take the shape (k not a multiple of 64, unaligned
 * operands, more rows): the caller uses cuBLAS. */
extern "C" int kc_i8_mma_takes(const kc *c, int64_t m, const kern_mat *w);
extern "C" int kc_i8_mma(kc *c, const void *x, int xbf16, int64_t m, const kern_mat *w, float *y,
			 int acc);

/* kc_gemv_takes: whether m rows of w go to the GEMV kernels (else cuBLAS). */
static inline bool kc_gemv_takes(int64_t m, const kern_mat *w)
{
	return m <= KC_GEMV_MAX_M || (w->dt == KERN_I8 && m <= KC_I8_GEMV_MAX_M);
}

/* kc_gemm_dt: the dtype cuBLAS multiplies w in (and x is rounded to): BF16 for int8. */
static inline kern_dtype kc_gemm_dt(const kern_mat *w)
{
	return w->dt == KERN_I8 ? KERN_BF16 : w->dt;
}

/* kc_round_for: the dtype the producer of w's input (m rows) should also write it in, so that
 * the product needs no rounding launch: kc_gemm_dt(w) when the product runs on cuBLAS with a
 * rounded input, else KERN_F32 (no copy). */
static inline kern_dtype kc_round_for(int64_t m, const kern_mat *w)
{
	return kc_gemv_takes(m, w) || w->dt == KERN_F32 ? KERN_F32 : kc_gemm_dt(w);
}

extern "C" {
/* kc_xbuf: c->xbuf = KC_SCRATCH_X of at least `bytes` (grown outside graph capture). */
int kc_xbuf(kc *c, size_t bytes);
/* Forms used inside an entry (no kc_enter). rd: KERN_BF16 / KERN_F16 to also write the F32
 * result rounded to rd into xbuf (for the product that follows), KERN_F32 for no copy;
 * *rounded (where present) says whether the copy was written. */
int kc_silu_mul_ex(kc *c, const float *gate, const float *up, int64_t n, float *out,
		   kern_dtype rd);
int kc_attention_ex(kc *c, const float *q, const float *kc_, const float *vc, const int32_t *pos,
		    int64_t m, int64_t heads, int64_t kvheads, int64_t hd, int64_t cap, float scale,
		    float *out, kern_dtype rd);
int kc_rope_attention_ex(kc *c, float *q, float *k, const float *v, const int32_t *pos,
			 int64_t m, int64_t heads, int64_t kvheads, int64_t hd, float theta,
			 float *kc_, float *vc, int64_t cap, float scale, float *out, kern_dtype rd,
			 int *rounded);
int kc_swiglu_ex(kc *c, const float *x, int64_t m, const kern_mat *wg, const kern_mat *wu,
		 float *out, const kern_norm *norm, kern_dtype rd, int *rounded);
/* kc_linear_add_ex: y += x . W^T; rounded: xbuf already holds x rounded to kc_gemm_dt(w). */
int kc_linear_add_ex(kc *c, const float *x, int64_t m, const kern_mat *w, float *y, int rounded);
/* the chained ops (kern.h: kern_rope_attention_proj, kern_swiglu_proj) */
int kc_rope_attention_proj(void *b, float *q, float *k, const float *v, const int32_t *pos,
			   int64_t m, int64_t heads, int64_t kvheads, int64_t hd, float theta,
			   float *kc_, float *vc, int64_t cap, float scale, float *att,
			   const kern_mat *wo, float *y);
int kc_swiglu_proj(void *b, const float *x, int64_t m, const kern_mat *wg, const kern_mat *wu,
		   const kern_norm *norm, float *g, const kern_mat *wd, float *y);
}

#endif

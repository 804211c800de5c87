/* kc_linear.cu — ops kern_linear and kern_linear_add on the GPU. m <= 8 rows (decode) and every
 * int8 product go to the GEMV kernels (kc_gemv.cu: weights streamed once, dequantized in
 * registers, bias/activation or the residual add fused); larger F32 / F16 / BF16 products go to
 * cuBLAS (the activations are first rounded to the weight dtype in the device's workspace;
 * F32 accumulation and F32 output; beta = 1 for the residual form), then bias + activation. */
#include "kernels/cuda/kc_int.h"

template <typename T> __device__ T from_f(float v);
template <> __device__ __nv_bfloat16 from_f(float v) { return __float2bfloat16(v); }
template <> __device__ __half from_f(float v) { return __float2half(v); }

template <typename T>
__global__ void round_k(const float *__restrict__ x, T *__restrict__ o, int64_t n)
{
	int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i < n)
		o[i] = from_f<T>(x[i]);
}

#define GEMV_MAX_M 8

static int grow(kc *c, void **buf, size_t *size, size_t bytes)
{
	if (bytes <= *size)
		return 0;
	if (c->capturing)
		return -ENOSPC;   /* cannot allocate inside a graph capture */
	KC_CHECK(cudaStreamSynchronize(c->s));
	KC_CHECK(cudaFree(*buf));
	*buf = NULL;
	*size = 0;
	KC_CHECK(cudaMalloc(buf, bytes));
	*size = bytes;
	return 0;
}

extern "C" int kc_scratch(kc *c, size_t bytes, float **out)
{
	int rc = grow(c, (void **)&c->tbuf, &c->tbuf_size, bytes);
	*out = c->tbuf;
	return rc;
}

/* kc_normed: *out = x, or norm(x) in the device's norm scratch when norm is given. */
extern "C" int kc_normed(kc *c, const float *x, int64_t m, int64_t k, const kern_norm *norm,
			 const float **out)
{
	*out = x;
	if (!norm)
		return 0;
	int rc = grow(c, (void **)&c->nbuf, &c->nbuf_size, (size_t)(m * k) * 4);
	if (rc == 0)
		rc = kc_rmsnorm(c, x, norm->w, m, k, norm->eps, c->nbuf);
	*out = c->nbuf;
	return rc;
}

/* kc_round_x rounds x [m, k] to w's dtype into the device's workspace (F16/BF16 weights). */
extern "C" int kc_round_x(kc *c, const float *x, int64_t m, const kern_mat *w)
{
	int64_t K = w->k;
	int rc = grow(c, &c->xbuf, &c->xbuf_size, (size_t)(m * K) * 2);
	if (rc)
		return rc;
	if (w->dt == KERN_BF16)
		round_k<<<kc_blocks(m * K, 256), 256, 0, c->s>>>(x, (__nv_bfloat16 *)c->xbuf, m * K);
	else
		round_k<<<kc_blocks(m * K, 256), 256, 0, c->s>>>(x, (__half *)c->xbuf, m * K);
	KC_LAUNCHED();
	return 0;
}

/* kc_gemm: y = x . W^T + beta * y through cuBLAS (F32/F16/BF16 weights). rounded: for F16/BF16,
 * x was already rounded into the workspace by kc_round_x (several products of one input). */
extern "C" int kc_gemm_ex(kc *c, const float *x, int64_t m, const kern_mat *w, float *y,
			  float beta, int rounded)
{
	if (m > INT32_MAX || w->n > INT32_MAX || w->k > INT32_MAX || w->dt == KERN_I8)
		return -ENOTSUP;
	int M = (int)m, N = (int)w->n, K = (int)w->k;
	const float one = 1.f;
	if (w->dt == KERN_F32) {
		KC_BLAS(cublasSgemm(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &one,
				    (const float *)w->data, K, x, K, &beta, y, N));
		return 0;
	}
	if (!rounded) {
		int rc = kc_round_x(c, x, m, w);
		if (rc)
			return rc;
	}
	cudaDataType dt = w->dt == KERN_BF16 ? CUDA_R_16BF : CUDA_R_16F;
	KC_BLAS(cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &one, w->data, dt, K,
			     c->xbuf, dt, K, &beta, y, CUDA_R_32F, N, CUBLAS_COMPUTE_32F,
			     CUBLAS_GEMM_DEFAULT));
	return 0;
}

extern "C" int kc_gemm(kc *c, const float *x, int64_t m, const kern_mat *w, float *y, float beta)
{
	return kc_gemm_ex(c, x, m, w, y, beta, 0);
}

extern "C" int kc_linear(void *b, const float *x, int64_t m, const kern_mat *w, const float *bias,
			 kern_act act, float *y)
{
	kc *c = (kc *)b;
	KC_ENTER(c);
	if (m <= GEMV_MAX_M || w->dt == KERN_I8)
		return kc_gemv(c, x, m, w, bias, act, y);
	int rc = kc_gemm(c, x, m, w, y, 0.f);
	if (rc == 0 && (bias || act != KERN_ACT_NONE))
		rc = kc_bias_act(b, y, bias, m, w->n, act);
	return rc;
}

extern "C" int kc_linear_add(void *b, const float *x, int64_t m, const kern_mat *w, float *y)
{
	kc *c = (kc *)b;
	KC_ENTER(c);
	if (m <= GEMV_MAX_M || w->dt == KERN_I8) {
		float *ys[1] = {y};
		int rc = kc_gemv_ex(c, x, m, 1, w, ys, NULL, KERN_ACT_NONE, 1, 0, NULL);
		if (rc != -EAGAIN)
			return rc;
		float *t;   /* unaligned operands: product into scratch, then add */
		rc = kc_scratch(c, (size_t)(m * w->n) * 4, &t);
		if (rc == 0)
			rc = kc_gemv(c, x, m, w, NULL, KERN_ACT_NONE, t);
		return rc ? rc : kc_add(b, y, t, m * w->n);
	}
	return kc_gemm(c, x, m, w, y, 1.f);
}

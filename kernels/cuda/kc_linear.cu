/* kc_linear.cu — op kern_linear on the GPU. m <= 8 rows (decode) and every int8 product go to
 * the GEMV kernels (kc_gemv.cu: weights streamed once, dequantized in registers); larger F32 /
 * F16 / BF16 products go to cuBLAS (the activations are first rounded to the weight dtype in
 * the device's workspace; F32 accumulation and F32 output), then bias + activation. */
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

static int ensure_xbuf(kc *c, size_t bytes)
{
	if (bytes <= c->xbuf_size)
		return 0;
	if (c->capturing)
		return -ENOSPC;   /* cannot allocate inside a graph capture */
	KC_CHECK(cudaStreamSynchronize(c->s));
	KC_CHECK(cudaFree(c->xbuf));
	c->xbuf = NULL;
	c->xbuf_size = 0;
	KC_CHECK(cudaMalloc(&c->xbuf, bytes));
	c->xbuf_size = bytes;
	return 0;
}

extern "C" int kc_linear(void *b, const float *x, int64_t m, const kern_mat *w, const float *bias,
			 kern_act act, float *y)
{
	kc *c = (kc *)b;
	KC_ENTER(c);
	if (m <= GEMV_MAX_M || w->dt == KERN_I8)
		return kc_gemv(c, x, m, w, bias, act, y);
	if (m > INT32_MAX || w->n > INT32_MAX || w->k > INT32_MAX)
		return -ENOTSUP;
	int M = (int)m, N = (int)w->n, K = (int)w->k;
	const float one = 1.f, zero = 0.f;
	if (w->dt == KERN_F32) {
		KC_BLAS(cublasSgemm(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &one,
				    (const float *)w->data, K, x, K, &zero, y, N));
	} else {
		int rc = ensure_xbuf(c, (size_t)m * K * 2);
		if (rc)
			return rc;
		cudaDataType dt = w->dt == KERN_BF16 ? CUDA_R_16BF : CUDA_R_16F;
		if (w->dt == KERN_BF16)
			round_k<<<kc_blocks(m * K, 256), 256, 0, c->s>>>(x, (__nv_bfloat16 *)c->xbuf,
									  m * K);
		else
			round_k<<<kc_blocks(m * K, 256), 256, 0, c->s>>>(x, (__half *)c->xbuf, m * K);
		KC_LAUNCHED();
		KC_BLAS(cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &one, w->data, dt, K,
				     c->xbuf, dt, K, &zero, y, CUDA_R_32F, N, CUBLAS_COMPUTE_32F,
				     CUBLAS_GEMM_DEFAULT));
	}
	if (bias || act != KERN_ACT_NONE)
		return kc_bias_act(b, y, bias, m, w->n, act);
	return 0;
}

/* kc_linear.cu — ops kern_linear and kern_linear_add on the GPU. m <= 8 rows (decode), and int8
 * products of up to 32 rows, go to the GEMV kernels (kc_gemv.cu: weights streamed once,
 * dequantized in registers, bias/activation or the residual add fused); larger products go to
 * cuBLAS (the activations are first rounded to the weight dtype -- BF16 for int8 weights, which
 * are dequantized to BF16 a chunk of rows at a time -- in the device's workspace, unless a
 * chained op's producer wrote them rounded there, see kc_int.h; F32 accumulation and F32
 * output; beta = 1 for the residual form), then bias + activation. */
#include "kernels/cuda/kc_int.h"

/* 4 elements per thread (n4 = n / 4 float4 loads), then the tail */
template <typename T>
__global__ void round_k(const float *__restrict__ x, T *__restrict__ o, int64_t n, int vec)
{
	int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x, n4 = vec ? n / 4 : 0;
	if (i < n4) {
		float4 v = ((const float4 *)x)[i];
		o[4 * i] = kc_from_f<T>(v.x);
		o[4 * i + 1] = kc_from_f<T>(v.y);
		o[4 * i + 2] = kc_from_f<T>(v.z);
		o[4 * i + 3] = kc_from_f<T>(v.w);
	} else if (i - n4 < n - 4 * n4) {
		int64_t j = 4 * n4 + (i - n4);
		o[j] = kc_from_f<T>(x[j]);
	}
}


extern "C" int kc_scratch(kc *c, size_t bytes, float **out)
{
	return pool_compute_scratch(c->pc, KC_SCRATCH_T, bytes, (void **)out);
}

extern "C" int kc_xbuf(kc *c, size_t bytes)
{
	return pool_compute_scratch(c->pc, KC_SCRATCH_X, bytes, &c->xbuf);
}

/* kc_normed: *out = x, or norm(x) in the device's norm scratch when norm is given. */
extern "C" int kc_normed(kc *c, const float *x, int64_t m, int64_t k, const kern_norm *norm,
			 const float **out)
{
	float *nbuf;
	*out = x;
	if (!norm)
		return 0;
	int rc = pool_compute_scratch(c->pc, KC_SCRATCH_N, (size_t)(m * k) * 4, (void **)&nbuf);
	if (rc == 0)
		rc = kc_rmsnorm(c, x, norm->w, m, k, norm->eps, nbuf);
	*out = nbuf;
	return rc;
}

/* kc_round_x rounds x [m, k] to w's cuBLAS dtype (kc_gemm_dt) into the device's workspace
 * (F16/BF16/int8 weights). */
extern "C" int kc_round_x(kc *c, const float *x, int64_t m, const kern_mat *w)
{
	int64_t K = w->k;
	int rc = kc_xbuf(c, (size_t)(m * K) * 2);
	if (rc)
		return rc;
	kern_dtype xdt = kc_gemm_dt(w);
	int64_t n = m * K;
	int vec = (uintptr_t)x % 16 == 0;   /* float4 loads when x is 16-byte aligned */
	int64_t threads = vec ? n / 4 + n % 4 : n;
	if (xdt == KERN_BF16)
		round_k<<<kc_blocks(threads, 256), 256, 0, c->s>>>(x, (__nv_bfloat16 *)c->xbuf, n, vec);
	else
		round_k<<<kc_blocks(threads, 256), 256, 0, c->s>>>(x, (__half *)c->xbuf, n, vec);
	KC_LAUNCHED();
	return 0;
}

/* kc_norm_round_x: the workspace gets norm(x) (or x when norm is NULL) rounded to w's dtype
 * (F16/BF16 weights), for products that then pass rounded = 1 to kc_gemm_ex. */
extern "C" int kc_norm_round_x(kc *c, const float *x, int64_t m, const kern_norm *norm,
			       const kern_mat *w)
{
	if (!norm)
		return kc_round_x(c, x, m, w);
	int64_t K = w->k;
	int rc = kc_xbuf(c, (size_t)(m * K) * 2);
	if (rc)
		return rc;
	dim3 b(K >= 1024 ? 1024 : 256);
	if (kc_gemm_dt(w) == KERN_BF16)
		KC_LAUNCH(c, kc_rmsnorm_k<__nv_bfloat16>, dim3((unsigned)m), b, x, norm->w, K, norm->eps,
			  (__nv_bfloat16 *)c->xbuf);
	else
		KC_LAUNCH(c, kc_rmsnorm_k<__half>, dim3((unsigned)m), b, x, norm->w, K, norm->eps,
			  (__half *)c->xbuf);
	return 0;
}

/* dequant_i8_k: o[rows, k] (BF16) = q * scale, scales per row (qblock 0) or per qblock
 * elements of a row; rows over grid.y, columns over grid.x. */
__global__ void dequant_i8_k(const int8_t *__restrict__ q, const float *__restrict__ s, int qblock,
			     int64_t rows, int k, __nv_bfloat16 *__restrict__ o)
{
	for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
		const int8_t *qr = q + r * k;
		const float *sr = s + (qblock ? r * (k / qblock) : r);
		__nv_bfloat16 *orow = o + r * k;
		for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < k; c += gridDim.x * blockDim.x)
			orow[c] = __float2bfloat16((float)qr[c] * sr[qblock ? c / qblock : 0]);
	}
}

/* kc_i8_gemm: y = x . W^T + beta * y for int8 W: decode batches (kern_tuning.i8_mma_rows) on
 * the tensor-core kernel of kc_i8_mma.cu; otherwise each chunk of W's rows (about 32 MiB as
 * BF16, or kern_tuning.i8_gemm_rows) dequantized into the device's weight scratch, then one
 * cuBLAS product of x (rounded to BF16 in the workspace unless `rounded`) into y's columns. */
static int kc_i8_gemm(kc *c, const float *x, int64_t m, const kern_mat *w, float *y, float beta,
		      int rounded)
{
	if (beta == 0.f || beta == 1.f) {   /* decode batches: tensor cores, weights read once */
		int rc = kc_i8_mma(c, rounded ? c->xbuf : (const void *)x, rounded, m, w, y, beta != 0.f);
		if (rc != -EAGAIN)
			return rc;
	}
	int64_t N = w->n, K = w->k, rows = ((int64_t)32 << 20) / (2 * K);
	void *wbuf;
	rows = c->i8_gemm_rows > 0 ? c->i8_gemm_rows : rows < 64 ? 64 : rows;
	rows = rows > N ? N : rows;
	int rc = pool_compute_scratch(c->pc, KC_SCRATCH_W, (size_t)(rows * K) * 2, &wbuf);
	if (rc == 0 && !rounded)
		rc = kc_round_x(c, x, m, w);
	if (rc)
		return rc;
	const float one = 1.f;
	for (int64_t n0 = 0; n0 < N; n0 += rows) {
		int64_t nc = N - n0 < rows ? N - n0 : rows;
		int64_t sc0 = w->qblock ? n0 * (K / w->qblock) : n0;
		dim3 g(kc_blocks(K, 256) < 16 ? kc_blocks(K, 256) : 16,
		       (unsigned)(nc < 65535 ? nc : 65535));
		dequant_i8_k<<<g, 256, 0, c->s>>>((const int8_t *)w->data + n0 * K, w->scales + sc0,
						  w->qblock, nc, (int)K, (__nv_bfloat16 *)wbuf);
		KC_LAUNCHED();
		KC_BLAS(cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)nc, (int)m, (int)K, &one,
				     wbuf, CUDA_R_16BF, (int)K, c->xbuf, CUDA_R_16BF, (int)K, &beta,
				     y + n0, CUDA_R_32F, (int)N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
	}
	return 0;
}

/* kc_gemm: y = x . W^T + beta * y through cuBLAS (F32/F16/BF16 weights; int8 dequantized to
 * BF16). rounded: for F16/BF16/int8, x was already rounded (to kc_gemm_dt) into the workspace
 * (by kc_round_x / kc_norm_round_x for several products of one input, or by the producer of x
 * in a chained op). */
extern "C" int kc_gemm_ex(kc *c, const float *x, int64_t m, const kern_mat *w, float *y,
			  float beta, int rounded)
{
	if (m > INT32_MAX || w->n > INT32_MAX || w->k > INT32_MAX)
		return -ENOTSUP;
	if (w->dt == KERN_I8)
		return kc_i8_gemm(c, x, m, w, y, beta, rounded);
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
	if (kc_gemv_takes(m, w))
		return kc_gemv(c, x, m, w, bias, act, y);
	int rc = kc_gemm_ex(c, x, m, w, y, 0.f, 0);
	if (rc == 0 && (bias || act != KERN_ACT_NONE))
		rc = kc_bias_act(b, y, bias, m, w->n, act);
	return rc;
}

extern "C" int kc_linear_add_ex(kc *c, const float *x, int64_t m, const kern_mat *w, float *y,
				int rounded)
{
	if (kc_gemv_takes(m, w)) {
		float *ys[1] = {y};
		int rc = kc_gemv_ex(c, x, m, 1, w, ys, NULL, KERN_ACT_NONE, 1, 0, NULL);
		if (rc != -EAGAIN)
			return rc;
		float *t;   /* unaligned operands: product into scratch, then add */
		rc = kc_scratch(c, (size_t)(m * w->n) * 4, &t);
		if (rc == 0)
			rc = kc_gemv(c, x, m, w, NULL, KERN_ACT_NONE, t);
		return rc ? rc : kc_add(c, y, t, m * w->n);
	}
	return kc_gemm_ex(c, x, m, w, y, 1.f, rounded && w->dt != KERN_F32);
}

extern "C" int kc_linear_add(void *b, const float *x, int64_t m, const kern_mat *w, float *y)
{
	kc *c = (kc *)b;
	KC_ENTER(c);
	return kc_linear_add_ex(c, x, m, w, y, 0);
}

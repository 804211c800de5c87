/* kc_gemm_t.cu — op kern_gemm on the GPU: c = alpha * op(a) . op(b) + beta * c, F32 row-major,
 * through cuBLAS SGEMM (default math: full F32, no TF32). Row-major C[m, n] is column-major
 * C^T[n, m] = op(b)^T . op(a)^T, so the operands go in swapped, each transposed when the
 * row-major one is not. */
#include "kernels/cuda/kc_int.h"

extern "C" int kc_gemm_t(void *b, int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
			 const float *a, const float *bm, float beta, float *c)
{
	kc *x = (kc *)b;
	KC_ENTER(x);
	if (k == 0) {   /* an empty sum: c = beta * c (cuBLAS wants k >= 1 for its lda checks) */
		if (beta == 0.f) {
			KC_CHECK(cudaMemsetAsync(c, 0, (size_t)(m * n) * 4, x->s));
			return 0;
		}
		KC_BLAS(cublasSscal(x->blas, (int)(m * n), &beta, c, 1));
		return 0;
	}
	/* column-major views: b as op(b)^T [n, k], a as op(a)^T [k, m] */
	cublasOperation_t ob = tb ? CUBLAS_OP_T : CUBLAS_OP_N, oa = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
	int ldb = tb ? (int)k : (int)n, lda = ta ? (int)m : (int)k;
	KC_BLAS(cublasSgemm(x->blas, ob, oa, (int)n, (int)m, (int)k, &alpha, bm, ldb, a, lda, &beta, c,
			    (int)n));
	return 0;
}

/* kc_linear_bwd.cu — op kern_linear_bwd: dx (+)= dy . W through cuBLAS. Row-major dx[m, k] is
 * column-major dx^T[k, m] = W^T . dy^T, and row-major W[n, k] read column-major is already
 * W^T [k, n], so both operands go in untransposed. F32 weights: SGEMM (no TF32); F16/BF16
 * weights: dy rounded to the weight dtype (as kern_linear rounds activations), F32 accumulation
 * and output (cublasGemmEx). */
#include "kernels/cuda/kc_int.h"

extern "C" int kc_linear_bwd(void *b, const float *dy, int64_t m, const kern_mat *w,
			     int accumulate, float *dx)
{
	kc *c = (kc *)b;
	KC_ENTER(c);
	float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
	int K = (int)w->k, N = (int)w->n, M = (int)m;
	if (w->dt == KERN_F32) {
		KC_BLAS(cublasSgemm(c->blas, CUBLAS_OP_N, CUBLAS_OP_N, K, M, N, &one,
				    (const float *)w->data, K, dy, N, &beta, dx, K));
		return 0;
	}
	kern_mat t = *w;   /* kc_round_x rounds rows of t.k elements: dy's rows have n */
	t.k = w->n;
	int rc = kc_round_x(c, dy, m, &t);
	if (rc)
		return rc;
	cudaDataType dt = w->dt == KERN_BF16 ? CUDA_R_16BF : CUDA_R_16F;
	KC_BLAS(cublasGemmEx(c->blas, CUBLAS_OP_N, CUBLAS_OP_N, K, M, N, &one, w->data, dt, K,
			     c->xbuf, dt, N, &beta, dx, CUDA_R_32F, K, CUBLAS_COMPUTE_32F,
			     CUBLAS_GEMM_DEFAULT));
	return 0;
}

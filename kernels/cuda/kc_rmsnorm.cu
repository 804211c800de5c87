/* kc_rmsnorm.cu — op kern_rmsnorm: one block per row, F32 sum of squares. */
#include "kernels/cuda/kc_int.h"

__global__ void rmsnorm_k(const float *__restrict__ x, const float *__restrict__ w, int64_t dim,
			  float eps, float *y)
{
	__shared__ float sh[32];
	const float *r = x + (int64_t)blockIdx.x * dim;
	float *o = y + (int64_t)blockIdx.x * dim;
	float ss = 0.f;
	kc_pdl_trigger();
	kc_pdl_wait();
	for (int64_t j = threadIdx.x; j < dim; j += blockDim.x)
		ss += r[j] * r[j];
	ss = kc_block_sum(ss, sh);
	float inv = rsqrtf(ss / (float)dim + eps);
	for (int64_t j = threadIdx.x; j < dim; j += blockDim.x)
		o[j] = r[j] * inv * w[j];
}

extern "C" int kc_rmsnorm(void *b, const float *x, const float *w, int64_t m, int64_t dim,
			  float eps, float *y)
{
	kc *c = (kc *)b;
	KC_ENTER(c);
	KC_LAUNCH(c, rmsnorm_k, dim3((unsigned)m), dim3(dim >= 1024 ? 1024 : 256), x, w, dim, eps, y);
	return 0;
}

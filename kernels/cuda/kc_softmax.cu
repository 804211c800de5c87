/* kc_softmax.cu — op kern_softmax: row-wise, one block per row, max-subtracted. */
#include "kernels/cuda/kc_int.h"

__global__ void softmax_k(float *x, int64_t n)
{
	__shared__ float sh[32];
	float *r = x + (int64_t)blockIdx.x * n;
	float mx = -INFINITY;
	for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
		mx = fmaxf(mx, r[j]);
	mx = kc_block_max(mx, sh);
	float s = 0.f;
	for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
		s += expf(r[j] - mx);
	s = kc_block_sum(s, sh);
	for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
		r[j] = expf(r[j] - mx) / s;
}

extern "C" int kc_softmax(void *b, float *x, int64_t m, int64_t n)
{
	kc *c = (kc *)b;
	KC_ENTER(c);
	softmax_k<<<(unsigned)m, 256, 0, c->s>>>(x, n);
	KC_LAUNCHED();
	return 0;
}

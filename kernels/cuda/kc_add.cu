/* kc_add.cu — op kern_add: y += x (residual connections). */
#include "kernels/cuda/kc_int.h"

__global__ void add_k(float *y, const float *x, int64_t n)
{
	int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i < n)
		y[i] += x[i];
}

extern "C" int kc_add(void *b, float *y, const float *x, int64_t n)
{
	kc *c = (kc *)b;
	KC_ENTER(c);
	add_k<<<kc_blocks(n, 256), 256, 0, c->s>>>(y, x, n);
	KC_LAUNCHED();
	return 0;
}

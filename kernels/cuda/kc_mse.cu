/* kc_mse.cu — op kern_mse_grad: mean squared error per row and its gradient, one warp per row
 * (the row sum in double like the CPU op). */
#include "kernels/cuda/kc_int.h"

#define ROWS_PER_BLOCK 4

__global__ void mse_k(const float *__restrict__ x, const float *__restrict__ t, int64_t m,
		      int64_t n, float scale, float *grad, float *loss)
{
	int64_t row = (int64_t)blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5);
	int lane = threadIdx.x & 31;
	if (row >= m)
		return;
	double s = 0;
	for (int64_t j = lane; j < n; j += 32) {
		float e = x[row * n + j] - t[row * n + j];
		s += (double)e * e;
		if (grad)
			grad[row * n + j] = 2.f * e / (float)n * scale;
	}
	for (int o = 16; o > 0; o >>= 1)
		s += __shfl_xor_sync(0xffffffffu, s, o);
	if (lane == 0 && loss)
		loss[row] = (float)(s / (double)n);
}

extern "C" int kc_mse_grad(void *b, const float *x, const float *t, int64_t m, int64_t n,
			   float scale, float *grad, float *loss)
{
	kc *c = (kc *)b;
	KC_ENTER(c);
	mse_k<<<kc_blocks(m, ROWS_PER_BLOCK), 32 * ROWS_PER_BLOCK, 0, c->s>>>(x, t, m, n, scale, grad,
									       loss);
	KC_LAUNCHED();
	return 0;
}

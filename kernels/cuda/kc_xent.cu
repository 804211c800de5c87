/* kc_xent.cu — op kern_xent_grad: softmax cross-entropy loss, argmax hit and gradient, one
 * warp per row (max, argmax with the lowest index on ties, sum of exponentials by warp
 * shuffles; the loss in double like the CPU op). */
#include "kernels/cuda/kc_int.h"

#define ROWS_PER_BLOCK 4

__global__ void xent_k(const float *__restrict__ x, const float *__restrict__ lab, int64_t m,
		       int64_t n, float scale, float *grad, float *loss, float *correct)
{
	int64_t row = (int64_t)blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5);
	int lane = threadIdx.x & 31;
	if (row >= m)
		return;
	const float *r = x + row * n;
	float best = -INFINITY;
	int64_t bi = n;
	for (int64_t j = lane; j < n; j += 32)
		if (r[j] > best || bi == n) {
			best = r[j];
			bi = j;
		}
	for (int o = 16; o > 0; o >>= 1) {
		float ob = __shfl_xor_sync(0xffffffffu, best, o);
		int64_t oi = __shfl_xor_sync(0xffffffffu, bi, o);
		if (ob > best || (ob == best && oi < bi) || bi == n) { best = ob; bi = oi; }
	}
	double s = 0;
	for (int64_t j = lane; j < n; j += 32)
		s += exp((double)r[j] - best);
	for (int o = 16; o > 0; o >>= 1)
		s += __shfl_xor_sync(0xffffffffu, s, o);
	float l = lab[row];
	int ok = l == floorf(l) && l >= 0.f && l < (float)n;
	int64_t li = ok ? (int64_t)l : -1;
	if (lane == 0) {
		if (loss)
			loss[row] = ok ? (float)(-((double)r[li] - best - log(s))) : __int_as_float(0x7fc00000);
		if (correct)
			correct[row] = ok && bi == li ? 1.f : 0.f;
	}
	if (grad)
		for (int64_t j = lane; j < n; j += 32)
			grad[row * n + j] = ((float)(exp((double)r[j] - best) / s) - (j == li ? 1.f : 0.f)) * scale;
}

extern "C" int kc_xent_grad(void *b, const float *x, const float *lab, int64_t m, int64_t n,
			    float scale, float *grad, float *loss, float *correct)
{
	kc *c = (kc *)b;
	KC_ENTER(c);
	xent_k<<<kc_blocks(m, ROWS_PER_BLOCK), 32 * ROWS_PER_BLOCK, 0, c->s>>>(x, lab, m, n, scale,
										grad, loss, correct);
	KC_LAUNCHED();
	return 0;
}

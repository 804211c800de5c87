/* kc_adam.cu — op kern_adam: one Adam update of n parameters, elementwise (no fused
 * multiply-add contraction, so that it rounds like the CPU op). */
#include "kernels/cuda/kc_int.h"

__global__ void adam_k(float *p, float *mo, float *v, const float *__restrict__ g, int64_t n,
		       float lr, float b1, float b2, float eps)
{
	int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i >= n)
		return;
	float gi = g[i];
	float mi = __fadd_rn(__fmul_rn(b1, mo[i]), __fmul_rn(1.f - b1, gi));
	float vi = __fadd_rn(__fmul_rn(b2, v[i]), __fmul_rn(__fmul_rn(1.f - b2, gi), gi));
	mo[i] = mi;
	v[i] = vi;
	p[i] = __fsub_rn(p[i], __fdiv_rn(__fmul_rn(lr, mi), __fadd_rn(__fsqrt_rn(vi), eps)));
}

extern "C" int kc_adam(void *b, float *p, float *mo, float *v, const float *g, int64_t n, float lr,
		       float b1, float b2, float eps)
{
	kc *c = (kc *)b;
	KC_ENTER(c);
	adam_k<<<kc_blocks(n, 256), 256, 0, c->s>>>(p, mo, v, g, n, lr, b1, b2, eps);
	KC_LAUNCHED();
	return 0;
}

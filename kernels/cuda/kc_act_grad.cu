/* kc_act_grad.cu — op kern_act_grad: g *= act'(z), elementwise (same formulas as the CPU op). */
#include "kernels/cuda/kc_int.h"

__device__ __forceinline__ float act_deriv(float z, int act)
{
	switch (act) {
	case KERN_ACT_RELU: return z > 0.f ? 1.f : 0.f;
	case KERN_ACT_TANH: { float t = tanhf(z); return 1.f - t * t; }
	case KERN_ACT_GELU:
		return 0.5f * (1.f + erff(z * 0.70710678118654752f)) +
		       z * 0.39894228040143268f * expf(-0.5f * z * z);
	case KERN_ACT_SILU: { float s = 1.f / (1.f + expf(-z)); return s * (1.f + z * (1.f - s)); }
	default: return 1.f;
	}
}

__global__ void act_grad_k(float *g, const float *__restrict__ z, int64_t n, int act)
{
	int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i < n)
		g[i] *= act_deriv(z[i], act);
}

extern "C" int kc_act_grad(void *b, float *g, const float *z, int64_t n, kern_act act)
{
	kc *c = (kc *)b;
	KC_ENTER(c);
	act_grad_k<<<kc_blocks(n, 256), 256, 0, c->s>>>(g, z, n, (int)act);
	KC_LAUNCHED();
	return 0;
}

/* kc_silu_mul_bwd.cu — op kern_silu_mul_bwd: elementwise gradients of silu(gate) * up. */
#include "kernels/cuda/kc_int.h"

__global__ void silu_mul_bwd_k(const float *__restrict__ gate, const float *__restrict__ up,
			       const float *__restrict__ dout, int64_t n, float *__restrict__ dg,
			       float *__restrict__ du)
{
	int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i >= n)
		return;
	float g = gate[i], s = 1.0f / (1.0f + expf(-g)), d = dout[i];
	dg[i] = d * up[i] * s * (1.0f + g * (1.0f - s));
	du[i] = d * g * s;
}

extern "C" int kc_silu_mul_bwd(void *b, const float *gate, const float *up, const float *dout,
			       int64_t n, float *dgate, float *dup)
{
	kc *c = (kc *)b;
	KC_ENTER(c);
	silu_mul_bwd_k<<<kc_blocks(n, 256), 256, 0, c->s>>>(gate, up, dout, n, dgate, dup);
	KC_LAUNCHED();
	return 0;
}

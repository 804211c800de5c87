/* kc_silu_mul.cu — op kern_silu_mul: out = silu(gate) * up (the SiLU-gated MLP's middle). */
#include "kernels/cuda/kc_int.h"

__global__ void silu_mul_k(const float *gate, const float *__restrict__ up, int64_t n, float *out)
{
	int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i < n) {
		float g = gate[i];
		out[i] = g / (1.f + expf(-g)) * up[i];
	}
}

extern "C" int kc_silu_mul(void *b, const float *gate, const float *up, int64_t n, float *out)
{
	kc *c = (kc *)b;
	KC_ENTER(c);
	silu_mul_k<<<kc_blocks(n, 256), 256, 0, c->s>>>(gate, up, n, out);
	KC_LAUNCHED();
	return 0;
}

/* kc_bias_act.cu — op kern_bias_act: x += bias (per column), then ReLU/GELU/tanh/SiLU. */
#include "kernels/cuda/kc_int.h"

__global__ void bias_act_k(float *x, const float *__restrict__ bias, int64_t m, int64_t n, int act)
{
	int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i < m * n)
		x[i] = kc_act(x[i] + (bias ? bias[i % n] : 0.f), act);
}

extern "C" int kc_bias_act(void *b, float *x, const float *bias, int64_t m, int64_t n,
			   kern_act act)
{
	kc *c = (kc *)b;
	KC_ENTER(c);
	bias_act_k<<<kc_blocks(m * n, 256), 256, 0, c->s>>>(x, bias, m, n, (int)act);
	KC_LAUNCHED();
	return 0;
}

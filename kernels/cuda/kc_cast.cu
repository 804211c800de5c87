/* kc_cast.cu — op kern_cast_f32: F16/BF16/F32 -> F32 on the GPU (loaders widen norms, biases). */
#include "kernels/cuda/kc_int.h"

template <typename T>
__global__ void cast_k(const T *__restrict__ s, float *__restrict__ d, int64_t n)
{
	int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i < n)
		d[i] = kc_tof(s[i]);
}

extern "C" int kc_cast_f32(void *b, kern_dtype dt, const void *src, float *dst, int64_t n)
{
	kc *c = (kc *)b;
	KC_ENTER(c);
	unsigned g = kc_blocks(n, 256);
	if (dt == KERN_F32)
		cast_k<<<g, 256, 0, c->s>>>((const float *)src, dst, n);
	else if (dt == KERN_BF16)
		cast_k<<<g, 256, 0, c->s>>>((const __nv_bfloat16 *)src, dst, n);
	else
		cast_k<<<g, 256, 0, c->s>>>((const __half *)src, dst, n);
	KC_LAUNCHED();
	return 0;
}

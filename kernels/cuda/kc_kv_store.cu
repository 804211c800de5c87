/* kc_kv_store.cu — op kern_kv_store: append K and V rows to the caches at their positions. */
#include "kernels/cuda/kc_int.h"

__global__ void kv_store_k(const float *__restrict__ k, const float *__restrict__ v,
			   const int32_t *__restrict__ pos, int64_t m, int64_t kvdim, float *kc_,
			   float *vc, int64_t cap)
{
	int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i >= m * kvdim)
		return;
	int64_t r = i / kvdim, j = i % kvdim;
	int32_t p = pos[r];
	if (p < 0 || p >= cap)
		return;
	kc_[(int64_t)p * kvdim + j] = k[i];
	vc[(int64_t)p * kvdim + j] = v[i];
}

extern "C" int kc_kv_store(void *b, const float *k, const float *v, const int32_t *pos,
			   int64_t m, int64_t kvdim, float *kc_, float *vc, int64_t cap)
{
	kc *c = (kc *)b;
	KC_ENTER(c);
	kv_store_k<<<kc_blocks(m * kvdim, 256), 256, 0, c->s>>>(k, v, pos, m, kvdim, kc_, vc, cap);
	KC_LAUNCHED();
	return 0;
}

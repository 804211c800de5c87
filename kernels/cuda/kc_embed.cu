/* kc_embed.cu — op kern_embed: gather embedding rows (token ids read from device memory). */
#include "kernels/cuda/kc_int.h"

template <typename T>
__global__ void embed_k(const T *__restrict__ tab, int64_t vocab, int64_t dim,
			const int32_t *__restrict__ tok, int64_t m, float *__restrict__ y)
{
	int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
	kc_pdl_trigger();
	kc_pdl_wait();
	if (i >= m * dim)
		return;
	int64_t r = i / dim, j = i % dim;
	int32_t t = tok[r];
	y[i] = (t >= 0 && t < vocab) ? kc_tof(tab[(int64_t)t * dim + j]) : 0.f;
}

extern "C" int kc_embed(void *b, kern_dtype dt, const void *table, int64_t vocab, int64_t dim,
			const int32_t *tokens, int64_t m, float *y)
{
	kc *c = (kc *)b;
	KC_ENTER(c);
	unsigned g = kc_blocks(m * dim, 256);
	if (dt == KERN_F32)
		KC_LAUNCH(c, embed_k<float>, dim3(g), dim3(256), (const float *)table, vocab, dim, tokens, m, y);
	else if (dt == KERN_BF16)
		KC_LAUNCH(c, embed_k<__nv_bfloat16>, dim3(g), dim3(256), (const __nv_bfloat16 *)table, vocab,
			  dim, tokens, m, y);
	else
		KC_LAUNCH(c, embed_k<__half>, dim3(g), dim3(256), (const __half *)table, vocab, dim, tokens,
			  m, y);
	KC_LAUNCHED();
	return 0;
}

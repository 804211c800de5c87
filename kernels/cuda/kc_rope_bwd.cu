/* kc_rope_bwd.cu — op kern_rope_bwd: the inverse of kc_rope's rotation (the same F32 angle),
 * in place on the gradient, one thread per (row, head, pair). */
#include "kernels/cuda/kc_int.h"

__global__ void rope_bwd_k(float *g, const int32_t *__restrict__ pos, int64_t m, int64_t heads,
			   int64_t hd, float theta)
{
	int64_t half = hd / 2;
	int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i >= m * heads * half)
		return;
	int64_t j = i % half, h = (i / half) % heads, r = i / (half * heads);
	float inv = 1.0f / powf(theta, (float)(2 * j) / (float)hd);
	float ang = (float)pos[r] * inv, s, c;
	sincosf(ang, &s, &c);
	float *p = g + (r * heads + h) * hd;
	float a = p[j], bb = p[j + half];
	p[j] = a * c + bb * s;
	p[j + half] = bb * c - a * s;
}

extern "C" int kc_rope_bwd(void *b, float *g, const int32_t *pos, int64_t m, int64_t heads,
			   int64_t hd, float theta)
{
	kc *c = (kc *)b;
	KC_ENTER(c);
	rope_bwd_k<<<kc_blocks(m * heads * (hd / 2), 256), 256, 0, c->s>>>(g, pos, m, heads, hd,
									  theta);
	KC_LAUNCHED();
	return 0;
}

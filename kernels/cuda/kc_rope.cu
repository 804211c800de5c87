/* kc_rope.cu — op kern_rope: HF LLaMA rotary embedding (rotate_half pairs j, j + hd/2), in
 * place; positions read from device memory so a captured decode step stays valid. */
#include "kernels/cuda/kc_int.h"

__global__ void rope_k(float *x, const int32_t *__restrict__ pos, int64_t m, int64_t heads,
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
	float *p = x + (r * heads + h) * hd;
	float a = p[j], bb = p[j + half];
	p[j] = a * c - bb * s;
	p[j + half] = bb * c + a * s;
}

extern "C" int kc_rope(void *b, float *x, const int32_t *pos, int64_t m, int64_t heads,
		       int64_t hd, float theta)
{
	kc *c = (kc *)b;
	KC_ENTER(c);
	rope_k<<<kc_blocks(m * heads * (hd / 2), 256), 256, 0, c->s>>>(x, pos, m, heads, hd, theta);
	KC_LAUNCHED();
	return 0;
}

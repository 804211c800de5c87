/* kc_rope.cu — ops kern_rope and kern_rope_bwd: HF LLaMA rotary embedding (rotate_half pairs
 * j, j + hd/2), in place; the backward is the inverse rotation (the same F32 angle) on the
 * gradient. Positions are read from device memory so a captured decode step stays valid. One
 * thread per (row, head, pair). */
#include "kernels/cuda/kc_int.h"

/* dir: 1 rotates by the angle (forward), -1 back (backward) */
__global__ void rope_k(float *x, const int32_t *__restrict__ pos, int64_t m, int64_t heads,
		       int64_t hd, float theta, float dir)
{
	int64_t half = hd / 2;
	int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i >= m * heads * half)
		return;
	int64_t j = i % half, h = (i / half) % heads, r = i / (half * heads);
	float inv = 1.0f / powf(theta, (float)(2 * j) / (float)hd);
	float ang = (float)pos[r] * inv, s, c;
	sincosf(ang, &s, &c);
	s *= dir;
	float *p = x + (r * heads + h) * hd;
	float a = p[j], bb = p[j + half];
	p[j] = a * c - bb * s;
	p[j + half] = bb * c + a * s;
}

static int rope_launch(void *b, float *x, const int32_t *pos, int64_t m, int64_t heads,
		       int64_t hd, float theta, float dir)
{
	kc *c = (kc *)b;
	KC_ENTER(c);
	rope_k<<<kc_blocks(m * heads * (hd / 2), 256), 256, 0, c->s>>>(x, pos, m, heads, hd, theta,
								       dir);
	KC_LAUNCHED();
	return 0;
}

extern "C" int kc_rope(void *b, float *x, const int32_t *pos, int64_t m, int64_t heads,
		       int64_t hd, float theta)
{
	return rope_launch(b, x, pos, m, heads, hd, theta, 1.0f);
}

extern "C" int kc_rope_bwd(void *b, float *g, const int32_t *pos, int64_t m, int64_t heads,
			   int64_t hd, float theta)
{
	return rope_launch(b, g, pos, m, heads, hd, theta, -1.0f);
}

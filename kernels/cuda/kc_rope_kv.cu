/* kc_rope_kv.cu — op kern_rope_kv: RoPE on q and k (HF rotate_half convention) and the KV-cache
 * append of k and v, in one launch: a thread per (row, head, pair j / j + hd/2). */
#include "kernels/cuda/kc_int.h"

__global__ void rope_kv_k(float *q, float *k, const float *__restrict__ v,
			  const int32_t *__restrict__ pos, int64_t m, int H, int KVH, int hd,
			  float theta, float *kc_, float *vc, int64_t cap)
{
	int half = hd / 2;
	int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
	kc_pdl_trigger();
	kc_pdl_wait();
	if (i >= m * (H + KVH) * half)
		return;
	int j = (int)(i % half), h = (int)((i / half) % (H + KVH));
	int64_t r = i / ((int64_t)half * (H + KVH));
	int32_t p = pos[r];
	float inv = 1.0f / powf(theta, (float)(2 * j) / (float)hd);
	float s, c;
	sincosf((float)p * inv, &s, &c);
	float *x = h < H ? q + (r * H + h) * hd : k + (r * KVH + (h - H)) * hd;
	float a = x[j], bb = x[j + half];
	float o0 = a * c - bb * s, o1 = bb * c + a * s;
	x[j] = o0;
	x[j + half] = o1;
	if (h >= H && p >= 0 && p < cap) {
		int64_t kvd = (int64_t)KVH * hd, off = (int64_t)p * kvd + (int64_t)(h - H) * hd;
		const float *vr = v + r * kvd + (int64_t)(h - H) * hd;
		kc_[off + j] = o0;
		kc_[off + j + half] = o1;
		vc[off + j] = vr[j];
		vc[off + j + half] = vr[j + half];
	}
}

extern "C" int kc_rope_kv(void *b, float *q, float *k, const float *v, const int32_t *pos,
			  int64_t m, int64_t heads, int64_t kvheads, int64_t hd, float theta,
			  float *kc_, float *vc, int64_t cap)
{
	kc *c = (kc *)b;
	KC_ENTER(c);
	int64_t n = m * (heads + kvheads) * (hd / 2);
	KC_LAUNCH(c, rope_kv_k, dim3(kc_blocks(n, 256)), dim3(256), q, k, v, pos, m, (int)heads,
		  (int)kvheads, (int)hd, theta, kc_, vc, cap);
	return 0;
}

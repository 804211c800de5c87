/* kc_causal_attention.cu — op kern_causal_attention: training-time causal attention over
 * sequences of T tokens, one warp per (token, query head), an online softmax over the keys
 * 0..t of the token's sequence; the head dimension is spread over the lanes (KC_CA_SLOTS
 * values each, so hd <= 32 * KC_CA_SLOTS). Also writes the log-sum-exp for the backward. */
#include "kernels/cuda/kc_int.h"
#include "kernels/cuda/kc_causal.h"

__global__ void causal_attention_k(const float *__restrict__ q, const float *__restrict__ k,
				   const float *__restrict__ v, int64_t nseq, int64_t T,
				   int64_t H, int64_t KV, int64_t hd, float scale,
				   float *__restrict__ out, float *__restrict__ lse)
{
	int64_t wid = (int64_t)blockIdx.x * KC_CA_WARPS + (threadIdx.x >> 5);
	int lane = threadIdx.x & 31;
	if (wid >= nseq * T * H)
		return;
	int64_t row = wid / H, h = wid % H, s = row / T, i = row % T, kvh = h / (H / KV);
	const float *qr = q + (row * H + h) * hd;
	float qv[KC_CA_SLOTS], acc[KC_CA_SLOTS];
	for (int t = 0; t < KC_CA_SLOTS; t++) {
		int64_t e = lane + 32 * t;
		qv[t] = e < hd ? qr[e] : 0.f;
		acc[t] = 0.f;
	}
	float mx = -INFINITY, l = 0.f;
	for (int64_t j = 0; j <= i; j++) {
		int64_t ko = ((s * T + j) * KV + kvh) * hd;
		float d = 0.f;
		for (int t = 0; t < KC_CA_SLOTS; t++) {
			int64_t e = lane + 32 * t;
			if (e < hd)
				d += qv[t] * k[ko + e];
		}
		float sc = kc_warp_sum(d) * scale;
		float mn = fmaxf(mx, sc), corr = expf(mx - mn), p = expf(sc - mn);
		l = l * corr + p;
		for (int t = 0; t < KC_CA_SLOTS; t++) {
			int64_t e = lane + 32 * t;
			acc[t] = acc[t] * corr + (e < hd ? p * v[ko + e] : 0.f);
		}
		mx = mn;
	}
	float *o = out + (row * H + h) * hd;
	for (int t = 0; t < KC_CA_SLOTS; t++) {
		int64_t e = lane + 32 * t;
		if (e < hd)
			o[e] = acc[t] / l;
	}
	if (lane == 0)
		lse[row * H + h] = mx + logf(l);
}

extern "C" int kc_causal_attention(void *b, const float *q, const float *k, const float *v,
				   int64_t nseq, int64_t T, int64_t heads, int64_t kvheads,
				   int64_t hd, float scale, float *out, float *lse)
{
	kc *c = (kc *)b;
	KC_ENTER(c);
	if (hd > 32 * KC_CA_SLOTS)
		return kc_causal_hd_notsup("causal_attention", hd);
	causal_attention_k<<<kc_blocks(nseq * T * heads, KC_CA_WARPS), 32 * KC_CA_WARPS, 0, c->s>>>(
		q, k, v, nseq, T, heads, kvheads, hd, scale, out, lse);
	KC_LAUNCHED();
	return 0;
}

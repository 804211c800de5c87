/* kc_causal_attention_bwd.cu — op kern_causal_attention_bwd, in two launches: one warp per
 * (token, query head) forms D = dout . out (kept in scratch) and dq from the probabilities
 * rebuilt from lse; then one warp per (token, KV head) sums, over the query heads of its group
 * and the later tokens of its sequence, dk and dv of that key. Every output element has one
 * writer (no atomics). */
#include "kernels/cuda/kc_int.h"
#include "kernels/cuda/kc_causal.h"

#define LANE_E(t) ((int64_t)lane + 32 * (t))

__global__ void causal_dq_k(const float *__restrict__ q, const float *__restrict__ k,
			    const float *__restrict__ v, const float *__restrict__ out,
			    const float *__restrict__ lse, const float *__restrict__ dout,
			    int64_t nseq, int64_t T, int64_t H, int64_t KV, int64_t hd, float scale,
			    float *__restrict__ dq, float *__restrict__ Dbuf)
{
	int64_t wid = (int64_t)blockIdx.x * KC_CA_WARPS + (threadIdx.x >> 5);
	int lane = threadIdx.x & 31;
	if (wid >= nseq * T * H)
		return;
	int64_t row = wid / H, h = wid % H, s = row / T, i = row % T, kvh = h / (H / KV);
	int64_t qo = (row * H + h) * hd;
	float qv[KC_CA_SLOTS], gv[KC_CA_SLOTS], acc[KC_CA_SLOTS], D = 0.f;
	for (int t = 0; t < KC_CA_SLOTS; t++) {
		int64_t e = LANE_E(t);
		qv[t] = e < hd ? q[qo + e] : 0.f;
		gv[t] = e < hd ? dout[qo + e] : 0.f;
		D += e < hd ? gv[t] * out[qo + e] : 0.f;
		acc[t] = 0.f;
	}
	D = kc_warp_sum(D);
	float L = lse[row * H + h];
	for (int64_t j = 0; j <= i; j++) {
		int64_t ko = ((s * T + j) * KV + kvh) * hd;
		float sd = 0.f, pd = 0.f;
		for (int t = 0; t < KC_CA_SLOTS; t++) {
			int64_t e = LANE_E(t);
			if (e < hd) {
				sd += qv[t] * k[ko + e];
				pd += gv[t] * v[ko + e];
			}
		}
		float p = expf(kc_warp_sum(sd) * scale - L);
		float ds = p * (kc_warp_sum(pd) - D) * scale;
		for (int t = 0; t < KC_CA_SLOTS; t++) {
			int64_t e = LANE_E(t);
			if (e < hd)
				acc[t] += ds * k[ko + e];
		}
	}
	for (int t = 0; t < KC_CA_SLOTS; t++) {
		int64_t e = LANE_E(t);
		if (e < hd)
			dq[qo + e] = acc[t];
	}
	if (lane == 0)
		Dbuf[row * H + h] = D;
}

__global__ void causal_dkv_k(const float *__restrict__ q, const float *__restrict__ k,
			     const float *__restrict__ v, const float *__restrict__ lse,
			     const float *__restrict__ dout, const float *__restrict__ Dbuf,
			     int64_t nseq, int64_t T, int64_t H, int64_t KV, int64_t hd, float scale,
			     float *__restrict__ dk, float *__restrict__ dv)
{
	int64_t wid = (int64_t)blockIdx.x * KC_CA_WARPS + (threadIdx.x >> 5);
	int lane = threadIdx.x & 31;
	if (wid >= nseq * T * KV)
		return;
	int64_t krow = wid / KV, kvh = wid % KV, s = krow / T, j = krow % T, g = H / KV;
	int64_t ko = (krow * KV + kvh) * hd;
	float kv_[KC_CA_SLOTS], vv[KC_CA_SLOTS], ak[KC_CA_SLOTS], av[KC_CA_SLOTS];
	for (int t = 0; t < KC_CA_SLOTS; t++) {
		int64_t e = LANE_E(t);
		kv_[t] = e < hd ? k[ko + e] : 0.f;
		vv[t] = e < hd ? v[ko + e] : 0.f;
		ak[t] = av[t] = 0.f;
	}
	for (int64_t h = kvh * g; h < (kvh + 1) * g; h++)
		for (int64_t i = j; i < T; i++) {
			int64_t row = s * T + i, qo = (row * H + h) * hd;
			float sd = 0.f, pd = 0.f;
			for (int t = 0; t < KC_CA_SLOTS; t++) {
				int64_t e = LANE_E(t);
				if (e < hd) {
					sd += q[qo + e] * kv_[t];
					pd += dout[qo + e] * vv[t];
				}
			}
			float p = expf(kc_warp_sum(sd) * scale - lse[row * H + h]);
			float ds = p * (kc_warp_sum(pd) - Dbuf[row * H + h]) * scale;
			for (int t = 0; t < KC_CA_SLOTS; t++) {
				int64_t e = LANE_E(t);
				if (e < hd) {
					ak[t] += ds * q[qo + e];
					av[t] += p * dout[qo + e];
				}
			}
		}
	for (int t = 0; t < KC_CA_SLOTS; t++) {
		int64_t e = LANE_E(t);
		if (e < hd) {
			dk[ko + e] = ak[t];
			dv[ko + e] = av[t];
		}
	}
}

extern "C" int kc_causal_attention_bwd(void *b, const float *q, const float *k, const float *v,
				       const float *out, const float *lse, const float *dout,
				       int64_t nseq, int64_t T, int64_t heads, int64_t kvheads,
				       int64_t hd, float scale, float *dq, float *dk, float *dv)
{
	kc *c = (kc *)b;
	float *Dbuf;
	KC_ENTER(c);
	if (hd > 32 * KC_CA_SLOTS)
		return kc_causal_hd_notsup("causal_attention_bwd", hd);
	int rc = kc_scratch(c, (size_t)(nseq * T * heads) * 4, &Dbuf);
	if (rc)
		return rc;
	causal_dq_k<<<kc_blocks(nseq * T * heads, KC_CA_WARPS), 32 * KC_CA_WARPS, 0, c->s>>>(
		q, k, v, out, lse, dout, nseq, T, heads, kvheads, hd, scale, dq, Dbuf);
	KC_LAUNCHED();
	causal_dkv_k<<<kc_blocks(nseq * T * kvheads, KC_CA_WARPS), 32 * KC_CA_WARPS, 0, c->s>>>(
		q, k, v, lse, dout, Dbuf, nseq, T, heads, kvheads, hd, scale, dk, dv);
	KC_LAUNCHED();
	return 0;
}

/* kc_attention.cu — op kern_attention: causal attention over the KV cache for prefill and
 * decode, grouped-query heads. One block of 16 warps per (row, head); a key is handled by a
 * group of hd/8 lanes (8 head dims per lane), so a warp works on 32/(hd/8) keys at once; each
 * group keeps an online softmax (running max, sum, 8 accumulators) and the groups are merged
 * through shared memory at the end. The key count (pos + 1) is read from device memory, so a
 * decode step captured in a CUDA graph stays valid as the sequence grows. In a prefill (m > 8)
 * after F16/BF16 products, the output is also written rounded into the device's workspace for
 * the o_proj product that follows, which then skips its own rounding launch (kc_int.h, xtag). */
#include "kernels/cuda/kc_int.h"

#define ATT_WARPS 16

/* xr: NULL, or [m, heads * hd] that gets out rounded to R (prefill: the o_proj input, xtag) */
template <typename R>
__global__ void attention_k(const float *__restrict__ q, const float *__restrict__ kc_,
			    const float *__restrict__ vc, const int32_t *__restrict__ pos,
			    int heads, int kvheads, int hd, int64_t cap, float scale, float *out,
			    R *__restrict__ xr)
{
	__shared__ float sm[ATT_WARPS * 32 / 1 * 10];   /* groups * (hd/8 lanes * 8 + 2) max */
	int h = blockIdx.x, row = blockIdx.y;
	int L = hd / 8;                      /* lanes per key */
	int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
	int gw = lane / L, gl = lane % L;    /* group within warp, lane within group */
	int gpw = 32 / L;                    /* groups per warp */
	int ngroups = ATT_WARPS * gpw, g = warp * gpw + gw;
	int kvh = h / (heads / kvheads);
	int64_t kvdim = (int64_t)kvheads * hd;
	kc_pdl_trigger();
	kc_pdl_wait();
	int64_t T = (int64_t)pos[row] + 1;
	if (T > cap)
		T = cap;
	const float *qp = q + ((int64_t)row * heads + h) * hd + gl * 8;
	float qv[8], acc[8];
	for (int d = 0; d < 8; d++) {
		qv[d] = qp[d] * scale;
		acc[d] = 0.f;
	}
	float m = -INFINITY, l = 0.f;
	bool active = gw < gpw;
#pragma unroll 2
	for (int64_t jb = (int64_t)warp * gpw; jb < T; jb += ngroups) {   /* warp-uniform */
		int64_t j = jb + gw;
		bool have = active && j < T;
		float s = 0.f;
		const float *kp = kc_ + (have ? j : 0) * kvdim + kvh * hd + gl * 8;
		if (have) {
			float4 k0 = *(const float4 *)kp, k1 = *(const float4 *)(kp + 4);
			s = qv[0] * k0.x + qv[1] * k0.y + qv[2] * k0.z + qv[3] * k0.w +
			    qv[4] * k1.x + qv[5] * k1.y + qv[6] * k1.z + qv[7] * k1.w;
		}
		for (int o = L / 2; o > 0; o >>= 1)
			s += __shfl_xor_sync(0xffffffffu, s, o);
		if (have) {
			float mn = fmaxf(m, s), corr = expf(m - mn), p = expf(s - mn);
			const float *vp = vc + j * kvdim + kvh * hd + gl * 8;
			float4 v0 = *(const float4 *)vp, v1 = *(const float4 *)(vp + 4);
			float vv[8] = {v0.x, v0.y, v0.z, v0.w, v1.x, v1.y, v1.z, v1.w};
			for (int d = 0; d < 8; d++)
				acc[d] = acc[d] * corr + p * vv[d];
			l = l * corr + p;
			m = mn;
		}
	}
	/* merge groups: each writes (m, l, acc[hd]) to shared memory */
	int stride = hd + 2;
	if (active) {
		float *gs = sm + g * stride;
		if (gl == 0) {
			gs[0] = m;
			gs[1] = l;
		}
		for (int d = 0; d < 8; d++)
			gs[2 + gl * 8 + d] = acc[d];
	}
	__syncthreads();
	for (int d = threadIdx.x; d < hd; d += blockDim.x) {
		float M = -INFINITY;
		for (int t = 0; t < ngroups; t++)
			M = fmaxf(M, sm[t * stride]);
		float num = 0.f, den = 0.f;
		for (int t = 0; t < ngroups; t++) {
			float mt = sm[t * stride];
			if (mt == -INFINITY)
				continue;
			float f = expf(mt - M);
			num += sm[t * stride + 2 + d] * f;
			den += sm[t * stride + 1] * f;
		}
		float o = num / den;
		int64_t i = ((int64_t)row * heads + h) * hd + d;
		out[i] = o;
		if (xr)
			xr[i] = kc_from_f<R>(o);
	}
}

extern "C" int kc_attention(void *b, const float *q, const float *kc_, const float *vc,
			    const int32_t *pos, int64_t m, int64_t heads, int64_t kvheads,
			    int64_t hd, int64_t cap, float scale, float *out)
{
	kc *c = (kc *)b;
	if (hd % 8 || hd / 8 > 32 || ((hd / 8) & (hd / 8 - 1)) || m > 65535)
		return -ENOTSUP;
	KC_ENTER(c);
	dim3 grid((unsigned)heads, (unsigned)m);
	kern_dtype rd = kc_xtag_want(c, m);   /* prefill: also round out for o_proj */
	if (rd != KERN_F32) {
		int rc = kc_xbuf(c, (size_t)(m * heads * hd) * 2);
		if (rc)
			return rc;
	}
	if (rd == KERN_F16)
		KC_LAUNCH(c, attention_k<__half>, grid, dim3(ATT_WARPS * 32), q, kc_, vc, pos,
			  (int)heads, (int)kvheads, (int)hd, cap, scale, out, (__half *)c->xbuf);
	else
		KC_LAUNCH(c, attention_k<__nv_bfloat16>, grid, dim3(ATT_WARPS * 32), q, kc_, vc, pos,
			  (int)heads, (int)kvheads, (int)hd, cap, scale, out,
			  rd == KERN_BF16 ? (__nv_bfloat16 *)c->xbuf : (__nv_bfloat16 *)NULL);
	if (rd != KERN_F32)
		kc_xtag_set(c, out, m, heads * hd, rd);
	return 0;
}

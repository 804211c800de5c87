/* kc_attention.cu — op kern_attention: causal attention over the KV cache for prefill and
 * decode, grouped-query heads. One block of 16 warps per (row, head); a key is handled by a
 * group of hd/8 lanes (8 head dims per lane), so a warp works on 32/(hd/8) keys at once; each
 * group keeps an online softmax (running max, sum, 8 accumulators) and the groups are merged
 * through shared memory at the end. The key count (pos + 1) is read from device memory, so a
 * decode step captured in a CUDA graph stays valid as the sequence grows. Inside the chained op
 * kc_rope_attention_proj (prefill) the output is also written rounded into the device's
 * workspace for the o_proj product that follows, which then skips its own rounding launch
 * (kc_int.h). */
#include "kernels/cuda/kc_int.h"

#define ATT_WARPS 16

/* xr: NULL, or [m, heads * hd] that gets out rounded to R (the o_proj input of a chained op) */
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

/* ---- prefill (many rows): key tiles shared through shared memory ----
 * The kernel above gives each (row, head) its own block that streams every key and value of
 * the cache from L2: at 512 rows that is 16k blocks and ~2 GB of L2 reads a layer. Here a
 * block takes one KV head and AT_QT consecutive rows (all G = heads / kvheads query heads of
 * that KV head: AT_QT * G <= 32 (row, head) pairs, AT_PAIRS a warp), loads AT_KT keys and
 * values at a time into shared memory (keys padded to HD + 1 floats a row: lane j reads key j
 * conflict-free) and every pair uses them: lane j scores key j (q read as broadcast float4s),
 * the warp keeps an online softmax, and each lane accumulates HD / 32 output dims. Causal
 * per row: keys past pos[row] (and past cap) score -inf; a block stops at the largest
 * pos + 1 of its rows. HD a multiple of 32, at most 128 (the tiles fit 48 KiB). */
#define AT_WARPS 8
#define AT_KT 32
#define AT_PAIRS 4

template <typename R, int HD>
__global__ void __launch_bounds__(AT_WARPS * 32)
attention_tiled_k(const float *__restrict__ q, const float *__restrict__ kc_,
		  const float *__restrict__ vc, const int32_t *__restrict__ pos, int64_t m,
		  int heads, int kvheads, int64_t cap, float scale, int qt, float *out,
		  R *__restrict__ xr)
{
	__shared__ float Ks[AT_KT * (HD + 1)];
	__shared__ __align__(16) float Vs[AT_KT * HD];
	__shared__ int32_t spos[32];
	__shared__ int64_t tmax;
	constexpr int D = HD / 32;
	const int G = heads / kvheads, kvh = blockIdx.x, lane = threadIdx.x & 31,
		  warp = threadIdx.x >> 5;
	const int64_t r0 = (int64_t)blockIdx.y * qt, kvdim = (int64_t)kvheads * HD;
	kc_pdl_trigger();
	kc_pdl_wait();
	if (threadIdx.x < 32)
		spos[threadIdx.x] = threadIdx.x < qt && r0 + threadIdx.x < m ? pos[r0 + threadIdx.x] : -1;
	__syncthreads();
	if (threadIdx.x == 0) {
		int64_t t = 0;
		for (int i = 0; i < qt; i++)
			t = spos[i] + 1 > t ? spos[i] + 1 : t;
		tmax = t < cap ? t : cap;
	}
	__syncthreads();
	const int64_t T = tmax;
	float mrun[AT_PAIRS], lrun[AT_PAIRS], acc[AT_PAIRS][D];
#pragma unroll
	for (int s = 0; s < AT_PAIRS; s++) {
		mrun[s] = -INFINITY;
		lrun[s] = 0.f;
#pragma unroll
		for (int d = 0; d < D; d++)
			acc[s][d] = 0.f;
	}
	for (int64_t t0 = 0; t0 < T; t0 += AT_KT) {
		__syncthreads();   /* the previous tile is used up */
		for (int e = threadIdx.x; e < AT_KT * HD / 4; e += blockDim.x) {
			int j = e / (HD / 4), d4 = (e % (HD / 4)) * 4;
			int64_t key = t0 + j;
			float4 kv = make_float4(0.f, 0.f, 0.f, 0.f), vv = kv;
			if (key < T) {
				kv = __ldg((const float4 *)(kc_ + key * kvdim + (int64_t)kvh * HD + d4));
				vv = __ldg((const float4 *)(vc + key * kvdim + (int64_t)kvh * HD + d4));
			}
			float *kr = Ks + j * (HD + 1) + d4;
			kr[0] = kv.x;
			kr[1] = kv.y;
			kr[2] = kv.z;
			kr[3] = kv.w;
			*(float4 *)(Vs + j * HD + d4) = vv;
		}
		__syncthreads();
#pragma unroll
		for (int s = 0; s < AT_PAIRS; s++) {
			int p = warp + AT_WARPS * s, i = p / G;
			if (i >= qt || spos[i] < 0)   /* warp-uniform */
				continue;
			int64_t row = r0 + i, h = (int64_t)kvh * G + p % G;
			const float4 *qp = (const float4 *)(q + (row * heads + h) * HD);
			const float *kr = Ks + lane * (HD + 1);
			float sc = 0.f;
#pragma unroll
			for (int d4 = 0; d4 < HD / 4; d4++) {
				float4 qv = __ldg(qp + d4);
				sc += qv.x * kr[4 * d4] + qv.y * kr[4 * d4 + 1] + qv.z * kr[4 * d4 + 2] +
				      qv.w * kr[4 * d4 + 3];
			}
			int64_t key = t0 + lane;
			sc = key <= spos[i] && key < T ? sc * scale : -INFINITY;
			float mx = kc_warp_max(sc);
			if (mx == -INFINITY)   /* no key of this tile is visible to this row */
				continue;
			float mn = fmaxf(mrun[s], mx), corr = expf(mrun[s] - mn), pr = expf(sc - mn);
			lrun[s] = lrun[s] * corr + kc_warp_sum(pr);
#pragma unroll
			for (int d = 0; d < D; d++)
				acc[s][d] *= corr;
#pragma unroll 8
			for (int j = 0; j < AT_KT; j++) {
				float pj = __shfl_sync(0xffffffffu, pr, j);
#pragma unroll
				for (int d = 0; d < D; d++)
					acc[s][d] += pj * Vs[j * HD + lane + 32 * d];
			}
			mrun[s] = mn;
		}
	}
#pragma unroll
	for (int s = 0; s < AT_PAIRS; s++) {
		int p = warp + AT_WARPS * s, i = p / G;
		if (i >= qt || spos[i] < 0)
			continue;
		int64_t row = r0 + i, h = (int64_t)kvh * G + p % G;
		float inv = lrun[s] > 0.f ? 1.f / lrun[s] : 0.f;
#pragma unroll
		for (int d = 0; d < D; d++) {
			int64_t o = (row * heads + h) * HD + lane + 32 * d;
			float v = acc[s][d] * inv;
			out[o] = v;
			if (xr)
				xr[o] = kc_from_f<R>(v);
		}
	}
}

template <typename R>
static cudaError_t attention_tiled(kc *c, const float *q, const float *kc_, const float *vc,
				   const int32_t *pos, int64_t m, int heads, int kvheads, int hd,
				   int64_t cap, float scale, float *out, R *xr)
{
	int G = heads / kvheads, qt = 32 / G;
	dim3 grid((unsigned)kvheads, (unsigned)((m + qt - 1) / qt)), blk(AT_WARPS * 32);
	switch (hd) {
	case 32: return kc_launch(c, attention_tiled_k<R, 32>, grid, blk, q, kc_, vc, pos, m, heads, kvheads, cap, scale, qt, out, xr);
	case 64: return kc_launch(c, attention_tiled_k<R, 64>, grid, blk, q, kc_, vc, pos, m, heads, kvheads, cap, scale, qt, out, xr);
	default: return kc_launch(c, attention_tiled_k<R, 128>, grid, blk, q, kc_, vc, pos, m, heads, kvheads, cap, scale, qt, out, xr);
	}
}

/* attention_tiles: whether the tiled kernel takes this shape */
static bool attention_tiles(int64_t m, int64_t heads, int64_t kvheads, int64_t hd)
{
	return m >= 16 && hd % 32 == 0 && hd <= 128 && heads % kvheads == 0 &&
	       heads / kvheads <= 32 && (m + 31) / (32 / (heads / kvheads)) <= 65535;
}

extern "C" int kc_attention_ex(kc *c, const float *q, const float *kc_, const float *vc,
			       const int32_t *pos, int64_t m, int64_t heads, int64_t kvheads,
			       int64_t hd, int64_t cap, float scale, float *out, kern_dtype rd)
{
	if (hd % 8 || hd / 8 > 32 || ((hd / 8) & (hd / 8 - 1)) || m > 65535)
		return -ENOTSUP;
	dim3 grid((unsigned)heads, (unsigned)m);
	if (rd != KERN_F32) {
		int rc = kc_xbuf(c, (size_t)(m * heads * hd) * 2);
		if (rc)
			return rc;
	}
	if (attention_tiles(m, heads, kvheads, hd)) {
		if (rd == KERN_F16)
			KC_CHECK(attention_tiled<__half>(c, q, kc_, vc, pos, m, (int)heads, (int)kvheads,
							 (int)hd, cap, scale, out, (__half *)c->xbuf));
		else
			KC_CHECK(attention_tiled<__nv_bfloat16>(c, q, kc_, vc, pos, m, (int)heads,
					(int)kvheads, (int)hd, cap, scale, out,
					rd == KERN_BF16 ? (__nv_bfloat16 *)c->xbuf : (__nv_bfloat16 *)NULL));
	} else if (rd == KERN_F16)
		KC_LAUNCH(c, attention_k<__half>, grid, dim3(ATT_WARPS * 32), q, kc_, vc, pos,
			  (int)heads, (int)kvheads, (int)hd, cap, scale, out, (__half *)c->xbuf);
	else
		KC_LAUNCH(c, attention_k<__nv_bfloat16>, grid, dim3(ATT_WARPS * 32), q, kc_, vc, pos,
			  (int)heads, (int)kvheads, (int)hd, cap, scale, out,
			  rd == KERN_BF16 ? (__nv_bfloat16 *)c->xbuf : (__nv_bfloat16 *)NULL);
	return 0;
}

extern "C" int kc_attention(void *b, const float *q, const float *kc_, const float *vc,
			    const int32_t *pos, int64_t m, int64_t heads, int64_t kvheads,
			    int64_t hd, int64_t cap, float scale, float *out)
{
	kc *c = (kc *)b;
	KC_ENTER(c);
	return kc_attention_ex(c, q, kc_, vc, pos, m, heads, kvheads, hd, cap, scale, out, KERN_F32);
}

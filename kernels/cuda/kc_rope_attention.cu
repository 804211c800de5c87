/* kc_rope_attention.cu — op kern_rope_attention: RoPE on q and k, the KV-cache append of k and
 * v, and causal attention, for one decode row in one launch (more rows: kc_rope_kv then
 * kc_attention).
 *
 * Why: at batch 1 the attention of a decode step moves little data (the cache of a few hundred
 * positions), so it is bound by latency when one block per head walks the keys serially after
 * a separate RoPE/append launch. Here the keys are split over S blocks per head (enough for one
 * pass of 32 keys each at hd 64, up to 16), so every SM has work; each block rotates q (and,
 * where it owns the newest position, k) itself, keeps an online softmax per group of hd/8 lanes, merges its groups
 * through warp shuffles and shared memory, and writes a partial (max, sum, hd accumulators) to
 * the device scratch. The last block of a head to finish (an atomic counter, reset by that block
 * for the next launch, so a captured graph stays valid) merges the S partials into the output.
 * The newest key and value never round-trip through the cache: the block that owns position p
 * uses them from shared memory, and the first query head of each KV group writes them to the
 * cache for later steps. The position is read from device memory (graph replays) and, with the
 * block's first cached keys, before the programmatic-dependent-launch wait. */
#include <stdlib.h>
#include "kernels/cuda/kc_int.h"

#define RA_WARPS 8
#define RA_MAX_SPLITS 16
#define RA_MAX_HEADS 256
#define RA_MAX_HD 256

__global__ void __launch_bounds__(RA_WARPS * 32)
rope_attn_dec_k(const float *__restrict__ q, const float *__restrict__ k,
		const float *__restrict__ v, const int32_t *__restrict__ pos, int heads, int kvheads,
		int hd, float theta, float *kc_, float *vc, int64_t cap, float scale,
		float *__restrict__ part, int *__restrict__ cnt, float *__restrict__ out)
{
	__shared__ __align__(16) float qs[RA_MAX_HD], ks[RA_MAX_HD], vs[RA_MAX_HD];
	__shared__ float wp[RA_WARPS][RA_MAX_HD + 2];
	__shared__ int last;
	const int sidx = blockIdx.x, h = blockIdx.y;
	const int L = hd / 8, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
	const int gw = lane / L, gl = lane % L, gpw = 32 / L, half = hd / 2;
	const int G = heads / kvheads, kvh = h / G;
	const int64_t kvdim = (int64_t)kvheads * hd;
	kc_pdl_trigger();
	/* before the wait (the op's contract): the position and the cache rows before it were
	 * written by earlier ops, so this block's first keys are fetched while the kernel before
	 * (the q/k/v product) still runs */
	const int32_t p = pos[0];
	int64_t T = (int64_t)p + 1;
	if (T > cap)
		T = cap;
	/* as many of the gridDim.x blocks as give each one pass over its keys at least (a pass =
	 * RA_WARPS warps x 32 / (hd / 8) keys); the others have nothing to do */
	const int kpp = RA_WARPS * gpw;
	const int64_t want = (T + kpp - 1) / kpp;
	const int S = want < 1 ? 1 : want < (int64_t)gridDim.x ? (int)want : (int)gridDim.x;
	if (sidx >= S)
		return;
	const int64_t chunk = (T + S - 1) / S, beg = sidx * chunk;
	const int64_t end = beg + chunk < T ? beg + chunk : T;
	const bool own = p >= 0 && p < cap && beg <= p && p < end;   /* the newest key is here */
	const int64_t hoff = (int64_t)kvh * hd + gl * 8, j0 = beg + (int64_t)warp * gpw + gw;
	float4 pk0 = make_float4(0.f, 0.f, 0.f, 0.f), pk1 = pk0, pv0 = pk0, pv1 = pk0;
	if (j0 < end && j0 != p) {
		const float *kp = kc_ + j0 * kvdim + hoff, *vp = vc + j0 * kvdim + hoff;
		pk0 = *(const float4 *)kp;
		pk1 = *(const float4 *)(kp + 4);
		pv0 = *(const float4 *)vp;
		pv1 = *(const float4 *)(vp + 4);
	}
	/* the rotation angles (thread j < hd/2: pair j, j + hd/2), as kc_rope_kv computes them */
	const int j = threadIdx.x;
	float sn = 0.f, cs = 1.f;
	if (j < half) {
		float inv = 1.0f / powf(theta, (float)(2 * j) / (float)hd);
		sincosf((float)p * inv, &sn, &cs);
	}
	kc_pdl_wait();
	/* rotate q (and k for the owner), HF rotate_half convention */
	if (j < half) {
		const float *qr = q + (int64_t)h * hd;
		float a = qr[j], b = qr[j + half];
		qs[j] = (a * cs - b * sn) * scale;
		qs[j + half] = (b * cs + a * sn) * scale;
		if (own) {
			const float *kr = k + (int64_t)kvh * hd, *vr = v + (int64_t)kvh * hd;
			float ka = kr[j], kb = kr[j + half];
			float k0 = ka * cs - kb * sn, k1 = kb * cs + ka * sn;
			ks[j] = k0;
			ks[j + half] = k1;
			vs[j] = vr[j];
			vs[j + half] = vr[j + half];
			if (h % G == 0) {
				int64_t off = (int64_t)p * kvdim + (int64_t)kvh * hd;
				kc_[off + j] = k0;
				kc_[off + j + half] = k1;
				vc[off + j] = vr[j];
				vc[off + j + half] = vr[j + half];
			}
		}
	}
	__syncthreads();
	float qv[8], acc[8];
	for (int d = 0; d < 8; d++) {
		qv[d] = qs[gl * 8 + d];
		acc[d] = 0.f;
	}
	float m = -INFINITY, l = 0.f;
	bool first = true;
#pragma unroll 2
	for (int64_t jb = beg + (int64_t)warp * gpw; jb < end; jb += RA_WARPS * gpw) {   /* warp-uniform */
		int64_t j = jb + gw;
		bool have = j < end;
		float4 k0 = pk0, k1 = pk1, v0 = pv0, v1 = pv1;   /* the first keys: prefetched */
		if (have && (j == p || !first)) {
			const float *kp = j == p ? ks + gl * 8 : kc_ + j * kvdim + hoff;
			const float *vp = j == p ? vs + gl * 8 : vc + j * kvdim + hoff;
			k0 = *(const float4 *)kp;
			k1 = *(const float4 *)(kp + 4);
			v0 = *(const float4 *)vp;
			v1 = *(const float4 *)(vp + 4);
		}
		first = false;
		float s = qv[0] * k0.x + qv[1] * k0.y + qv[2] * k0.z + qv[3] * k0.w + qv[4] * k1.x +
			  qv[5] * k1.y + qv[6] * k1.z + qv[7] * k1.w;
		for (int o = L / 2; o > 0; o >>= 1)
			s += __shfl_xor_sync(0xffffffffu, s, o);
		if (have) {
			float mn = fmaxf(m, s), corr = expf(m - mn), pr = expf(s - mn);
			float vv[8] = {v0.x, v0.y, v0.z, v0.w, v1.x, v1.y, v1.z, v1.w};
			for (int d = 0; d < 8; d++)
				acc[d] = acc[d] * corr + pr * vv[d];
			l = l * corr + pr;
			m = mn;
		}
	}
	/* merge the groups of a warp (lanes gl, gl + L, ...) through shuffles */
	for (int o = L; o < 32; o <<= 1) {
		float m2 = __shfl_xor_sync(0xffffffffu, m, o), l2 = __shfl_xor_sync(0xffffffffu, l, o);
		float a2[8];
		for (int d = 0; d < 8; d++)
			a2[d] = __shfl_xor_sync(0xffffffffu, acc[d], o);
		float mn = fmaxf(m, m2);
		if (mn != -INFINITY) {
			float f1 = expf(m - mn), f2 = expf(m2 - mn);
			for (int d = 0; d < 8; d++)
				acc[d] = acc[d] * f1 + a2[d] * f2;
			l = l * f1 + l2 * f2;
			m = mn;
		}
	}
	if (lane < L) {
		if (lane == 0) {
			wp[warp][0] = m;
			wp[warp][1] = l;
		}
		for (int d = 0; d < 8; d++)
			wp[warp][2 + gl * 8 + d] = acc[d];
	}
	__syncthreads();
	/* the block's partial over its warps */
	float M = -INFINITY;
	for (int w = 0; w < RA_WARPS; w++)
		M = fmaxf(M, wp[w][0]);
	float *pp = part + ((int64_t)h * S + sidx) * (hd + 2);
	for (int d = threadIdx.x; d < hd; d += blockDim.x) {
		float num = 0.f, den = 0.f;
		if (M != -INFINITY)
			for (int w = 0; w < RA_WARPS; w++) {
				float f = expf(wp[w][0] - M);
				num += wp[w][2 + d] * f;
				den += wp[w][1] * f;
			}
		if (S == 1) {
			out[(int64_t)h * hd + d] = num / den;
		} else {
			pp[2 + d] = num;
			if (d == 0) {
				pp[0] = M;
				pp[1] = den;
			}
		}
	}
	if (S == 1)
		return;
	/* the barrier orders the block's partial before thread 0's device-scope fence (fences are
	 * cumulative), which orders it before the arrival count */
	__syncthreads();
	if (threadIdx.x == 0) {
		__threadfence();
		last = atomicAdd(&cnt[h], 1) == S - 1;
	}
	__syncthreads();
	if (!last)
		return;
	__threadfence();
	/* the last block: all S partials into shared memory at once (one L2 round trip, not S
	 * dependent ones), then merged */
	float *ps = &wp[0][0];   /* S * (hd + 2) <= RA_WARPS * (RA_MAX_HD + 2) floats */
	const float *hp = part + (int64_t)h * S * (hd + 2);
	for (int i = threadIdx.x; i < S * (hd + 2); i += blockDim.x)
		ps[i] = __ldcg(hp + i);
	__syncthreads();
	float MM = -INFINITY;
	for (int t = 0; t < S; t++)
		MM = fmaxf(MM, ps[t * (hd + 2)]);
	for (int d = threadIdx.x; d < hd; d += blockDim.x) {
		float num = 0.f, den = 0.f;
		for (int t = 0; t < S; t++) {
			float mt = ps[t * (hd + 2)];
			float f = mt == -INFINITY ? 0.f : expf(mt - MM);
			num += ps[t * (hd + 2) + 2 + d] * f;
			den += ps[t * (hd + 2) + 1] * f;
		}
		out[(int64_t)h * hd + d] = num / den;
	}
	if (threadIdx.x == 0)
		cnt[h] = 0;   /* ready for the next launch (graph replays) */
}

/* kc_rope_attention_splits: the most blocks that may share a head's keys (the launch is fixed
 * when a graph is captured, the key count is not: the kernel uses as many as the count needs):
 * one pass each over a full cache, at most 16, and their partials must fit the last block's
 * shared buffer. */
static int kc_rope_attention_splits(int64_t cap, int64_t hd)
{
	int64_t kpp = RA_WARPS * (32 / (hd / 8)), s = (cap + kpp - 1) / kpp;
	int64_t fit = (int64_t)RA_WARPS * (RA_MAX_HD + 2) / (hd + 2);
	if (s > RA_MAX_SPLITS)
		s = RA_MAX_SPLITS;
	if (s > fit)
		s = fit;
	return s < 1 ? 1 : (int)s;
}

/* kc_rope_attention_scratch: the partials and per-head counters (zeroed), made when the device
 * opens (kc_dev.cu). */
extern "C" int kc_rope_attention_scratch(kc *c)
{
	size_t np = (size_t)RA_MAX_HEADS * RA_MAX_SPLITS * (RA_MAX_HD + 2) * sizeof(float);
	KC_CHECK(cudaMalloc(&c->att_part, np));
	KC_CHECK(cudaMalloc(&c->att_cnt, RA_MAX_HEADS * sizeof(int)));
	KC_CHECK(cudaMemsetAsync(c->att_cnt, 0, RA_MAX_HEADS * sizeof(int), c->s));
	return 0;
}

extern "C" int kc_rope_attention_ex(kc *c, float *q, float *k, const float *v,
				    const int32_t *pos, int64_t m, int64_t heads, int64_t kvheads,
				    int64_t hd, float theta, float *kc_, float *vc, int64_t cap,
				    float scale, float *out, kern_dtype rd, int *rounded)
{
	*rounded = 0;
	bool fits = c->fused_attn && m == 1 && hd % 8 == 0 && hd <= RA_MAX_HD &&
		    ((hd / 8) & (hd / 8 - 1)) == 0 && heads <= RA_MAX_HEADS;
	if (!fits) {   /* composed: rotate + append, then attention */
		int rc = kc_rope_kv(c, q, k, v, pos, m, heads, kvheads, hd, theta, kc_, vc, cap);
		if (rc == 0)
			rc = kc_attention_ex(c, q, kc_, vc, pos, m, heads, kvheads, hd, cap, scale, out, rd);
		*rounded = rc == 0 && rd != KERN_F32;
		return rc;
	}
	int S = kc_rope_attention_splits(cap, hd);
	KC_LAUNCH(c, rope_attn_dec_k, dim3((unsigned)S, (unsigned)heads), dim3(RA_WARPS * 32), q, k,
		  v, pos, (int)heads, (int)kvheads, (int)hd, theta, kc_, vc, cap, scale, c->att_part,
		  c->att_cnt, out);
	return 0;
}

extern "C" int kc_rope_attention(void *b, float *q, float *k, const float *v, const int32_t *pos,
				 int64_t m, int64_t heads, int64_t kvheads, int64_t hd, float theta,
				 float *kc_, float *vc, int64_t cap, float scale, float *out)
{
	kc *c = (kc *)b;
	int rounded;
	KC_ENTER(c);
	return kc_rope_attention_ex(c, q, k, v, pos, m, heads, kvheads, hd, theta, kc_, vc, cap,
				    scale, out, KERN_F32, &rounded);
}

extern "C" int kc_rope_attention_proj(void *b, float *q, float *k, const float *v,
				      const int32_t *pos, int64_t m, int64_t heads, int64_t kvheads,
				      int64_t hd, float theta, float *kc_, float *vc, int64_t cap,
				      float scale, float *att, const kern_mat *wo, float *y)
{
	kc *c = (kc *)b;
	int rounded;
	KC_ENTER(c);
	int rc = kc_rope_attention_ex(c, q, k, v, pos, m, heads, kvheads, hd, theta, kc_, vc, cap,
				      scale, att, kc_round_for(m, wo), &rounded);
	return rc ? rc : kc_linear_add_ex(c, att, m, wo, y, rounded);
}

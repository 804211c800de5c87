/* kc_paged_attention.cu — ops kern_paged_rope_attention and kern_paged_rope_attention_proj:
 * attention of a batch of rows from many sequences over a paged KV cache (kern.h,
 * kern_kv_pages), decode rows and prefill-chunk rows of any lengths mixed in one call.
 *
 * Three launches, all reading positions, sequences and the block table from device memory (a
 * step captured in a CUDA graph stays valid as they change; nothing is allocated or synced
 * inside, the partials live in the device's scratch, grown outside a capture):
 *  1. paged_store_k: a thread per (row, head, pair j / j + hd/2) rotates q in place and k
 *     (HF rotate_half, angles as kc_rope) and writes k and v, rounded to the cache's dtype, at
 *     the row's position in its sequence's block. Every row is stored before any attends, so
 *     the rows of one prefill chunk see each other.
 *  2. paged_attn_k: one block of PA_WARPS warps per (row, KV head, chunk of up to 4 of its
 *     query heads, partition of P positions). The partition's block-table entries are staged in
 *     shared memory; a key is handled by a group of hd/8 lanes (8 dims a lane, one 16-byte load
 *     for BF16), which scores it for every query head of the chunk (K and V read once for the
 *     group) and keeps an online softmax per head; the groups of a warp merge through shuffles,
 *     the warps through shared memory. A row whose keys fit one partition writes its output
 *     directly; longer rows write a partial (max, sum, hd accumulators) per partition.
 *  3. paged_reduce_k (only when some row may span partitions): merges a row's partials.
 * P is chosen at launch from the table's capacity (max_blocks * block) so that short batches
 * still fill the GPU; blocks past a row's length return at once. Rows with a negative
 * sequence or a position outside the table give zeros; keys in a block id outside the pool
 * are skipped (the caller guarantees neither happens). The _proj form also writes the output
 * rounded for the cuBLAS o_proj product that follows (kc_int.h) and then adds the product. */
#include "kernels/cuda/kc_int.h"

#define PA_WARPS 4
#define PA_MAX_PART 1024   /* positions a partition covers, at most (the table slice in smem) */
#define PA_MIN_PART 128

__device__ __forceinline__ void pa_load8(const float *p, float *f)
{
	float4 a = *(const float4 *)p, b = *(const float4 *)(p + 4);
	f[0] = a.x; f[1] = a.y; f[2] = a.z; f[3] = a.w;
	f[4] = b.x; f[5] = b.y; f[6] = b.z; f[7] = b.w;
}

__device__ __forceinline__ void pa_load8(const __nv_bfloat16 *p, float *f)
{
	uint4 r = *(const uint4 *)p;
	unsigned u[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
	for (int i = 0; i < 4; i++) {
		f[2 * i] = __uint_as_float(u[i] << 16);
		f[2 * i + 1] = __uint_as_float(u[i] & 0xffff0000u);
	}
}

/* pa_put: out[i] = v, and the rounded copy for the product that follows (rd: KERN_BF16 or
 * KERN_F16 into xr; KERN_F32: none) */
__device__ __forceinline__ void pa_put(float *out, void *xr, int rd, int64_t i, float v)
{
	out[i] = v;
	if (rd == KERN_BF16)
		((__nv_bfloat16 *)xr)[i] = __float2bfloat16(v);
	else if (rd == KERN_F16)
		((__half *)xr)[i] = __float2half(v);
}

template <typename KV>
__global__ void paged_store_k(float *q, const float *__restrict__ k, const float *__restrict__ v,
			      const int32_t *__restrict__ pos, const int32_t *__restrict__ seq,
			      const int32_t *__restrict__ table, int64_t nblocks, int64_t block,
			      int64_t max_blocks, int64_t m, int H, int KVH, int hd, float theta,
			      KV *kc_, KV *vc)
{
	const int half = hd / 2;
	const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
	kc_pdl_trigger();
	kc_pdl_wait();
	if (i >= m * (H + KVH) * half)
		return;
	const int j = (int)(i % half), h = (int)((i / half) % (H + KVH));
	const int64_t r = i / ((int64_t)half * (H + KVH));
	const int32_t p = pos[r];
	float inv = 1.0f / powf(theta, (float)(2 * j) / (float)hd);
	float s, c;
	sincosf((float)p * inv, &s, &c);
	if (h < H) {
		float *x = q + (r * H + h) * hd;
		float a = x[j], b = x[j + half];
		x[j] = a * c - b * s;
		x[j + half] = b * c + a * s;
		return;
	}
	const int kh = h - H;
	const int32_t sq = seq[r];
	if (sq < 0 || p < 0 || p >= max_blocks * block)
		return;
	const int32_t blk = table[(int64_t)sq * max_blocks + p / block];
	if (blk < 0 || blk >= nblocks)
		return;
	const int64_t kvd = (int64_t)KVH * hd;
	const int64_t off = ((int64_t)blk * block + p % block) * kvd + (int64_t)kh * hd;
	const float *x = k + r * kvd + (int64_t)kh * hd, *vr = v + r * kvd + (int64_t)kh * hd;
	float a = x[j], b = x[j + half];
	kc_[off + j] = kc_from_f<KV>(a * c - b * s);
	kc_[off + j + half] = kc_from_f<KV>(b * c + a * s);
	vc[off + j] = kc_from_f<KV>(vr[j]);
	vc[off + j + half] = kc_from_f<KV>(vr[j + half]);
}

template <typename KV, int GC>
__global__ void __launch_bounds__(PA_WARPS * 32)
paged_attn_k(const float *__restrict__ q, const KV *__restrict__ kc_, const KV *__restrict__ vc,
	     const int32_t *__restrict__ pos, const int32_t *__restrict__ seq,
	     const int32_t *__restrict__ table, int64_t nblocks, int block, int max_blocks,
	     int heads, int kvheads, int hd, int nchunk, int P, float scale,
	     float *__restrict__ part, int nparts, float *__restrict__ out, void *xr, int rd)
{
	extern __shared__ float pa_sm[];   /* [PA_WARPS][GC][hd + 2] partials, then the table slice */
	const int row = blockIdx.x, kvh = blockIdx.y / nchunk, ch = blockIdx.y % nchunk;
	const int z = blockIdx.z;
	const int G = heads / kvheads, h0 = kvh * G + ch * GC;
	const int gc = G - ch * GC < GC ? G - ch * GC : GC;
	const int L = hd / 8, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
	const int gw = lane / L, gl = lane % L, gpw = 32 / L, stride = hd + 2;
	float *wp = pa_sm;
	int *tb = (int *)(pa_sm + PA_WARPS * GC * stride);
	kc_pdl_trigger();
	kc_pdl_wait();
	const int32_t p = pos[row], s = seq[row];
	if (s < 0 || p < 0 || (int64_t)p >= (int64_t)max_blocks * block) {
		if (z == 0)
			for (int e = threadIdx.x; e < gc * hd; e += blockDim.x)
				pa_put(out, xr, rd, ((int64_t)row * heads + h0 + e / hd) * hd + e % hd, 0.f);
		return;
	}
	const int64_t T = (int64_t)p + 1, beg = (int64_t)z * P;
	if (beg >= T)
		return;
	const int64_t end = beg + P < T ? beg + P : T;
	const int nused = (int)((T + P - 1) / P);
	const int64_t b0 = beg / block, nb = (end - 1) / block - b0 + 1;
	const int32_t *trow = table + (int64_t)s * max_blocks;
	for (int64_t e = threadIdx.x; e < nb; e += blockDim.x)
		tb[e] = trow[b0 + e];
	__syncthreads();
	float qv[GC][8], acc[GC][8], mrun[GC], lrun[GC];
#pragma unroll
	for (int hh = 0; hh < GC; hh++) {
		const float *qp = q + ((int64_t)row * heads + h0 + (hh < gc ? hh : 0)) * hd + gl * 8;
#pragma unroll
		for (int d = 0; d < 8; d++) {
			qv[hh][d] = qp[d] * scale;
			acc[hh][d] = 0.f;
		}
		mrun[hh] = -INFINITY;
		lrun[hh] = 0.f;
	}
	const int64_t kvdim = (int64_t)kvheads * hd, hoff = (int64_t)kvh * hd + gl * 8;
	for (int64_t jb = beg + (int64_t)warp * gpw; jb < end; jb += PA_WARPS * gpw) {   /* warp-uniform */
		const int64_t j = jb + gw;
		bool have = j < end;
		int64_t r = 0;
		if (have) {
			int32_t blk = tb[j / block - b0];
			have = blk >= 0 && blk < nblocks;
			r = ((int64_t)blk * block + j % block) * kvdim + hoff;
		}
		float kf[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f}, sc[GC];
		if (have)
			pa_load8(kc_ + r, kf);
#pragma unroll
		for (int hh = 0; hh < GC; hh++) {
			float t = 0.f;
#pragma unroll
			for (int d = 0; d < 8; d++)
				t += qv[hh][d] * kf[d];
			for (int o = L / 2; o > 0; o >>= 1)
				t += __shfl_xor_sync(0xffffffffu, t, o);
			sc[hh] = t;
		}
		if (have) {
			float vf[8];
			pa_load8(vc + r, vf);
#pragma unroll
			for (int hh = 0; hh < GC; hh++) {
				float mn = fmaxf(mrun[hh], sc[hh]), corr = expf(mrun[hh] - mn);
				float pr = expf(sc[hh] - mn);
#pragma unroll
				for (int d = 0; d < 8; d++)
					acc[hh][d] = acc[hh][d] * corr + pr * vf[d];
				lrun[hh] = lrun[hh] * corr + pr;
				mrun[hh] = mn;
			}
		}
	}
	/* merge the groups of a warp (lanes gl, gl + L, ...) through shuffles */
	for (int o = L; o < 32; o <<= 1) {
#pragma unroll
		for (int hh = 0; hh < GC; hh++) {
			float m2 = __shfl_xor_sync(0xffffffffu, mrun[hh], o);
			float l2 = __shfl_xor_sync(0xffffffffu, lrun[hh], o);
			float a2[8];
#pragma unroll
			for (int d = 0; d < 8; d++)
				a2[d] = __shfl_xor_sync(0xffffffffu, acc[hh][d], o);
			float mn = fmaxf(mrun[hh], m2);
			if (mn != -INFINITY) {
				float f1 = expf(mrun[hh] - mn), f2 = expf(m2 - mn);
#pragma unroll
				for (int d = 0; d < 8; d++)
					acc[hh][d] = acc[hh][d] * f1 + a2[d] * f2;
				lrun[hh] = lrun[hh] * f1 + l2 * f2;
				mrun[hh] = mn;
			}
		}
	}
	if (gw == 0) {
#pragma unroll
		for (int hh = 0; hh < GC; hh++) {
			float *w = wp + (warp * GC + hh) * stride;
			if (gl == 0) {
				w[0] = mrun[hh];
				w[1] = lrun[hh];
			}
#pragma unroll
			for (int d = 0; d < 8; d++)
				w[2 + gl * 8 + d] = acc[hh][d];
		}
	}
	__syncthreads();
	/* the block's result over its warps: the output, or this partition's partial */
	for (int e = threadIdx.x; e < gc * hd; e += blockDim.x) {
		const int hh = e / hd, d = e % hd;
		float M = -INFINITY, num = 0.f, den = 0.f;
		for (int w = 0; w < PA_WARPS; w++)
			M = fmaxf(M, wp[(w * GC + hh) * stride]);
		if (M != -INFINITY)
			for (int w = 0; w < PA_WARPS; w++) {
				const float *ws = wp + (w * GC + hh) * stride;
				if (ws[0] == -INFINITY)
					continue;
				float f = expf(ws[0] - M);
				num += ws[2 + d] * f;
				den += ws[1] * f;
			}
		const int64_t oh = (int64_t)row * heads + h0 + hh;
		if (nused == 1) {
			pa_put(out, xr, rd, oh * hd + d, den > 0.f ? num / den : 0.f);
		} else {
			float *pp = part + (oh * nparts + z) * stride;
			pp[2 + d] = num;
			if (d == 0) {
				pp[0] = M;
				pp[1] = den;
			}
		}
	}
}

/* one block per (row, head): the partials of a row that spans partitions, merged */
__global__ void paged_reduce_k(const float *__restrict__ part, const int32_t *__restrict__ pos,
			       const int32_t *__restrict__ seq, int64_t cap, int heads, int hd,
			       int P, int nparts, float *__restrict__ out, void *xr, int rd)
{
	const int row = blockIdx.x, h = blockIdx.y, stride = hd + 2;
	kc_pdl_trigger();
	kc_pdl_wait();
	const int32_t p = pos[row], s = seq[row];
	if (s < 0 || p < 0 || (int64_t)p >= cap)
		return;
	const int nused = (int)(((int64_t)p + P) / P);
	if (nused <= 1)
		return;   /* written by paged_attn_k */
	const int64_t oh = (int64_t)row * heads + h;
	const float *pp = part + oh * nparts * stride;
	float M = -INFINITY;
	for (int t = 0; t < nused; t++)
		M = fmaxf(M, __ldcg(pp + t * stride));
	for (int d = threadIdx.x; d < hd; d += blockDim.x) {
		float num = 0.f, den = 0.f;
		for (int t = 0; t < nused && M != -INFINITY; t++) {
			float mt = __ldcg(pp + t * stride);
			if (mt == -INFINITY)
				continue;
			float f = expf(mt - M);
			num += __ldcg(pp + t * stride + 2 + d) * f;
			den += __ldcg(pp + t * stride + 1) * f;
		}
		pa_put(out, xr, rd, oh * hd + d, den > 0.f ? num / den : 0.f);
	}
}

template <typename KV, int GC>
static cudaError_t pa_attn(kc *c, dim3 grid, size_t smem, const float *q, const kern_kv_pages *kv,
			   const int32_t *pos, const int32_t *seq, int heads, int kvheads, int hd,
			   int nchunk, int P, float scale, float *part, int nparts, float *out,
			   void *xr, int rd)
{
	return kc_launch_smem(c, paged_attn_k<KV, GC>, grid, dim3(PA_WARPS * 32), smem, q,
			      (const KV *)kv->k, (const KV *)kv->v, pos, seq, kv->table, kv->nblocks,
			      (int)kv->block, (int)kv->max_blocks, heads, kvheads, hd, nchunk, P, scale,
			      part, nparts, out, xr, rd);
}

template <typename KV>
static cudaError_t pa_attn_gc(kc *c, int GC, dim3 grid, size_t smem, const float *q,
			      const kern_kv_pages *kv, const int32_t *pos, const int32_t *seq,
			      int heads, int kvheads, int hd, int nchunk, int P, float scale,
			      float *part, int nparts, float *out, void *xr, int rd)
{
	switch (GC) {
	case 1: return pa_attn<KV, 1>(c, grid, smem, q, kv, pos, seq, heads, kvheads, hd, nchunk, P, scale, part, nparts, out, xr, rd);
	case 2: return pa_attn<KV, 2>(c, grid, smem, q, kv, pos, seq, heads, kvheads, hd, nchunk, P, scale, part, nparts, out, xr, rd);
	default: return pa_attn<KV, 4>(c, grid, smem, q, kv, pos, seq, heads, kvheads, hd, nchunk, P, scale, part, nparts, out, xr, rd);
	}
}

/* kc_paged_ex: the op into out [m, heads * hd]; rd: KERN_BF16 / KERN_F16 to also write out
 * rounded into the device's workspace (xbuf) for the product that follows, KERN_F32 for no
 * copy. -ENOTSUP for shapes the kernels do not take (hd not 8 * a power of two up to 256,
 * caches not 16-byte aligned, grids past CUDA's limits). */
static int kc_paged_ex(kc *c, float *q, float *k, const float *v, const int32_t *pos,
		       const int32_t *seq, int64_t m, int64_t heads, int64_t kvheads, int64_t hd,
		       float theta, const kern_kv_pages *kv, float scale, float *out, kern_dtype rd)
{
	const int64_t G = heads / kvheads, cap = kv->max_blocks * kv->block;
	if (hd % 8 || hd > 256 || ((hd / 8) & (hd / 8 - 1)) || (uintptr_t)kv->k % 16 ||
	    (uintptr_t)kv->v % 16)
		return -ENOTSUP;
	const int GC = G >= 4 ? 4 : G >= 2 ? 2 : 1;   /* 8 would need ~230 registers a thread */
	const int64_t nchunk = (G + GC - 1) / GC;
	if (kvheads * nchunk > 65535 || heads > 65535 || cap > (int64_t)65535 * PA_MAX_PART)
		return -ENOTSUP;
	/* partitions: as long as possible while the grid (counted over the table's capacity)
	 * still gives every SM a few blocks */
	int64_t base = m * kvheads * nchunk, P = PA_MAX_PART;
	while (P > PA_MIN_PART && base * ((cap + P - 1) / P) < 4 * (int64_t)c->nsm)
		P /= 2;
	const int64_t nparts = (cap + P - 1) / P;
	float *part = NULL;
	int rc;
	if (nparts > 1) {
		rc = pool_compute_scratch(c->pc, KC_SCRATCH_P,
					  (size_t)(m * heads * nparts * (hd + 2)) * 4, (void **)&part);
		if (rc)
			return rc;
	}
	void *xr = NULL;
	if (rd != KERN_F32) {
		rc = kc_xbuf(c, (size_t)(m * heads * hd) * 2);
		if (rc)
			return rc;
		xr = c->xbuf;
	}
	const int64_t n = m * (heads + kvheads) * (hd / 2);
	if (kv->dt == KERN_BF16)
		KC_LAUNCH(c, paged_store_k<__nv_bfloat16>, dim3(kc_blocks(n, 256)), dim3(256), q,
			  (const float *)k, v, pos, seq, kv->table, kv->nblocks, kv->block,
			  kv->max_blocks, m, (int)heads, (int)kvheads, (int)hd, theta,
			  (__nv_bfloat16 *)kv->k, (__nv_bfloat16 *)kv->v);
	else
		KC_LAUNCH(c, paged_store_k<float>, dim3(kc_blocks(n, 256)), dim3(256), q,
			  (const float *)k, v, pos, seq, kv->table, kv->nblocks, kv->block,
			  kv->max_blocks, m, (int)heads, (int)kvheads, (int)hd, theta, (float *)kv->k,
			  (float *)kv->v);
	dim3 grid((unsigned)m, (unsigned)(kvheads * nchunk), (unsigned)nparts);
	size_t smem = (size_t)(PA_WARPS * GC * (hd + 2)) * 4 + (size_t)(P / kv->block + 2) * 4;
	if (kv->dt == KERN_BF16)
		KC_CHECK(pa_attn_gc<__nv_bfloat16>(c, GC, grid, smem, q, kv, pos, seq, (int)heads,
						   (int)kvheads, (int)hd, (int)nchunk, (int)P, scale,
						   part, (int)nparts, out, xr, (int)rd));
	else
		KC_CHECK(pa_attn_gc<float>(c, GC, grid, smem, q, kv, pos, seq, (int)heads,
					   (int)kvheads, (int)hd, (int)nchunk, (int)P, scale, part,
					   (int)nparts, out, xr, (int)rd));
	if (nparts > 1)
		KC_LAUNCH(c, paged_reduce_k, dim3((unsigned)m, (unsigned)heads), dim3(128), part, pos,
			  seq, cap, (int)heads, (int)hd, (int)P, (int)nparts, out, xr, (int)rd);
	return 0;
}

extern "C" int kc_paged_rope_attention(void *b, float *q, float *k, const float *v,
				       const int32_t *pos, const int32_t *seq, int64_t m,
				       int64_t heads, int64_t kvheads, int64_t hd, float theta,
				       const kern_kv_pages *kv, float scale, float *out)
{
	kc *c = (kc *)b;
	KC_ENTER(c);
	return kc_paged_ex(c, q, k, v, pos, seq, m, heads, kvheads, hd, theta, kv, scale, out,
			   KERN_F32);
}

extern "C" int kc_paged_rope_attention_proj(void *b, float *q, float *k, const float *v,
					    const int32_t *pos, const int32_t *seq, int64_t m,
					    int64_t heads, int64_t kvheads, int64_t hd, float theta,
					    const kern_kv_pages *kv, float scale, float *att,
					    const kern_mat *wo, float *y)
{
	kc *c = (kc *)b;
	KC_ENTER(c);
	kern_dtype rd = kc_round_for(m, wo);
	int rc = kc_paged_ex(c, q, k, v, pos, seq, m, heads, kvheads, hd, theta, kv, scale, att, rd);
	return rc ? rc : kc_linear_add_ex(c, att, m, wo, y, rd != KERN_F32);
}

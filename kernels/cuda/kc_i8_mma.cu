/* kc_i8_mma.cu — int8 weight products of decode batches (the part of kern_linear past the GEMV
 * kernels' rows, up to kern_tuning.i8_mma_rows <= 64 rows): y = x . W^T (+ y) reading the int8
 * weights once for all rows, on tensor cores (WMMA 16x16x16, BF16 in, F32 accumulation).
 *
 * Why: the GEMV kernels re-read the weights for every 8 rows, and the cuBLAS path first writes
 * the whole matrix dequantized to BF16 and reads it back (5 bytes moved per weight against 2
 * for BF16 weights). Here a block of 4 warps owns 128 output features (a weight row a thread)
 * and a range of k: per step of 64 k it widens its 128 x 64 int8 tile to BF16 in shared memory
 * (times the 32-element block scales; per-row scales are applied to the finished sums, so
 * those weights enter the product exactly), with the rows of x (F32 rounded to BF16, or the
 * BF16 copy a chained op's producer already wrote, kc_int.h) beside it; each warp multiplies
 * its 32 features by every 16-row tile of x. The weight loads of the next two steps are in
 * flight while a step multiplies (registers), the first ones before the programmatic-
 * dependent-launch wait (weights never depend on the previous kernel). k is split over enough
 * blocks to fill the GPU; each split writes F32 partials into the device's scratch and a
 * second launch adds them in a fixed order (deterministic), plus y for the residual form. */
#include <string.h>
#include <mma.h>
#include "kernels/cuda/kc_int.h"

using namespace nvcuda;

#define IM_BN 128     /* output features per block: a weight row per thread, 32 per warp */
#define IM_BK 64      /* k per step */
#define IM_LD 72      /* shared row stride in BF16 elements (144 bytes: tiles stay 32-byte aligned) */
#define IM_THREADS 128
#define IM_MAX_M 64

struct im_args {
	const void *x;       /* [m, k]: F32, or BF16 (XB) */
	const int8_t *w;     /* [n, k] */
	const float *s;      /* n scales (qblock 0) or n * k / 32 */
	int m, n, k, qblock;
	int steps;           /* k steps per split */
	float *y;            /* [m, n], written directly when there is one split */
	float *part;         /* [splits, m, n] otherwise */
	int acc;             /* one split: y += x . W^T */
};

/* 32 int8 weights (two uint4) times sc as 32 BF16 into dst (16-byte aligned) */
__device__ __forceinline__ void im_widen(uint4 a, uint4 b, float sc, __nv_bfloat16 *dst)
{
	unsigned u[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
	unsigned o[16];
#pragma unroll
	for (int i = 0; i < 8; i++) {
		float f[4];
#pragma unroll
		for (int e = 0; e < 4; e++)
			f[e] = (float)(int8_t)((u[i] >> (8 * e)) & 0xffu) * sc;
		__nv_bfloat162 lo = __floats2bfloat162_rn(f[0], f[1]), hi = __floats2bfloat162_rn(f[2], f[3]);
		o[2 * i] = *reinterpret_cast<unsigned *>(&lo);
		o[2 * i + 1] = *reinterpret_cast<unsigned *>(&hi);
	}
	uint4 *d = (uint4 *)dst;
#pragma unroll
	for (int i = 0; i < 4; i++)
		d[i] = make_uint4(o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]);
}

template <int MT, bool XB>
__global__ void __launch_bounds__(IM_THREADS)
i8_mma_k(const im_args a)
{
	__shared__ __align__(32) __nv_bfloat16 Ws[IM_BN * IM_LD];
	__shared__ __align__(32) __nv_bfloat16 Xs[MT * 16 * IM_LD];
	/* x vectors a thread loads per step: F32 float4s, or BF16 uint4s */
	constexpr int XV = XB ? MT : 2 * MT;
	const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
	const int n0 = blockIdx.x * IM_BN, kst = a.k / IM_BK;
	const int ks = blockIdx.y * a.steps, ke = ks + a.steps < kst ? ks + a.steps : kst;
	const bool blk = a.qblock > 0;
	const int wr = n0 + tid;
	const bool wok = wr < a.n;
	const int8_t *wrow = a.w + (size_t)(wok ? wr : 0) * a.k;
	const float *srow = a.s + (blk ? (size_t)(wok ? wr : 0) * (a.k / 32) : 0);
	kc_pdl_trigger();
	uint4 w0[4], w1[4];
	float4 xf[XB ? 1 : XV];
	uint4 xb[XB ? XV : 1];
	auto wload = [&](int s, uint4 *wv) {
		const uint4 *p = (const uint4 *)(wrow + (size_t)s * IM_BK);
#pragma unroll
		for (int u = 0; u < 4; u++)
			wv[u] = wok ? __ldcs(p + u) : make_uint4(0, 0, 0, 0);
	};
	auto xload = [&](int s) {
#pragma unroll
		for (int u = 0; u < XV; u++) {
			int f = tid + IM_THREADS * u;
			if (XB) {   /* 8 BF16 a vector, 8 vectors a row */
				int row = f >> 3, c8 = f & 7;
				const __nv_bfloat16 *xp = (const __nv_bfloat16 *)a.x;
				xb[XB ? u : 0] = row < a.m ? *(const uint4 *)(xp + (size_t)row * a.k +
									  (size_t)s * IM_BK + c8 * 8)
							  : make_uint4(0, 0, 0, 0);
			} else {    /* 4 floats a vector, 16 vectors a row */
				int row = f >> 4, c4 = f & 15;
				const float *xp = (const float *)a.x;
				xf[XB ? 0 : u] = row < a.m ? __ldg((const float4 *)(xp + (size_t)row * a.k +
									   (size_t)s * IM_BK + c4 * 4))
							   : make_float4(0.f, 0.f, 0.f, 0.f);
			}
		}
	};
	auto store = [&](int s, const uint4 *wv) {
		float s0 = 1.f, s1 = 1.f;
		if (blk && wok) {
			s0 = srow[s * 2];
			s1 = srow[s * 2 + 1];
		}
		im_widen(wv[0], wv[1], s0, Ws + tid * IM_LD);
		im_widen(wv[2], wv[3], s1, Ws + tid * IM_LD + 32);
#pragma unroll
		for (int u = 0; u < XV; u++) {
			int f = tid + IM_THREADS * u;
			if (XB) {
				int row = f >> 3, c8 = f & 7;
				*(uint4 *)(Xs + row * IM_LD + c8 * 8) = xb[XB ? u : 0];
			} else {
				int row = f >> 4, c4 = f & 15;
				float4 v = xf[XB ? 0 : u];
				__nv_bfloat162 lo = __floats2bfloat162_rn(v.x, v.y), hi = __floats2bfloat162_rn(v.z, v.w);
				uint2 pk = make_uint2(*reinterpret_cast<unsigned *>(&lo), *reinterpret_cast<unsigned *>(&hi));
				*(uint2 *)(Xs + row * IM_LD + c4 * 4) = pk;
			}
		}
	};
	wmma::fragment<wmma::accumulator, 16, 16, 16, float> cf[MT][2];
#pragma unroll
	for (int mt = 0; mt < MT; mt++) {
		wmma::fill_fragment(cf[mt][0], 0.f);
		wmma::fill_fragment(cf[mt][1], 0.f);
	}
	auto mma = [&]() {
#pragma unroll
		for (int kk = 0; kk < IM_BK / 16; kk++) {
			wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> bf[2];
#pragma unroll
			for (int j = 0; j < 2; j++)
				wmma::load_matrix_sync(bf[j], Ws + (warp * 32 + j * 16) * IM_LD + kk * 16, IM_LD);
#pragma unroll
			for (int mt = 0; mt < MT; mt++) {
				wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> af;
				wmma::load_matrix_sync(af, Xs + mt * 16 * IM_LD + kk * 16, IM_LD);
				wmma::mma_sync(cf[mt][0], af, bf[0], cf[mt][0]);
				wmma::mma_sync(cf[mt][1], af, bf[1], cf[mt][1]);
			}
		}
	};
	/* steps in pairs: stage w0 for even, w1 for odd; the load two steps ahead goes into the
	 * stage just stored */
	if (ks < ke)
		wload(ks, w0);
	if (ks + 1 < ke)
		wload(ks + 1, w1);
	kc_pdl_wait();
	if (ks < ke)
		xload(ks);
	for (int s = ks; s < ke; s += 2) {
		__syncthreads();   /* the previous step's tiles are used up */
		store(s, w0);
		__syncthreads();
		if (s + 2 < ke)
			wload(s + 2, w0);
		if (s + 1 < ke)
			xload(s + 1);
		mma();
		if (s + 1 >= ke)
			break;
		__syncthreads();
		store(s + 1, w1);
		__syncthreads();
		if (s + 3 < ke)
			wload(s + 3, w1);
		if (s + 2 < ke)
			xload(s + 2);
		mma();
	}
	/* out: each warp's 16 x 16 tiles through its own 1 KiB of (now free) shared memory */
	__syncthreads();
	float *scr = (float *)Ws + warp * 256;
#pragma unroll
	for (int mt = 0; mt < MT; mt++)
#pragma unroll
		for (int j = 0; j < 2; j++) {
			wmma::store_matrix_sync(scr, cf[mt][j], 16, wmma::mem_row_major);
			__syncwarp();
#pragma unroll
			for (int t = 0; t < 8; t++) {
				int e = lane * 8 + t, i = mt * 16 + e / 16, col = n0 + warp * 32 + j * 16 + e % 16;
				if (i < a.m && col < a.n) {
					float v = scr[e] * (blk ? 1.f : a.s[col]);
					size_t o = (size_t)i * a.n + col;
					if (a.part)
						a.part[(size_t)blockIdx.y * a.m * a.n + o] = v;
					else
						a.y[o] = a.acc ? a.y[o] + v : v;
				}
			}
			__syncwarp();
		}
}

/* y[i] = (acc ? y[i] : 0) + sum over the splits of part[s][i], in split order */
__global__ void i8_mma_sum_k(const float *__restrict__ part, int splits, int64_t mn, int acc,
			     float *y)
{
	int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
	kc_pdl_trigger();
	kc_pdl_wait();
	if (i >= mn)
		return;
	float v = acc ? y[i] : 0.f;
	for (int s = 0; s < splits; s++)
		v += __ldcg(part + (int64_t)s * mn + i);
	y[i] = v;
}

extern "C" int kc_i8_mma_takes(const kc *c, int64_t m, const kern_mat *w)
{
	return w->dt == KERN_I8 && m >= 1 && m <= c->i8_mma_rows && m <= IM_MAX_M &&
	       w->k % IM_BK == 0 && w->k <= INT32_MAX && w->n <= INT32_MAX &&
	       (w->qblock == 0 || w->qblock == 32) && (uintptr_t)w->data % 16 == 0;
}

template <int MT>
static cudaError_t im_launch(kc *c, dim3 g, bool xb, const im_args &a)
{
	if (xb)
		return kc_launch(c, i8_mma_k<MT, true>, g, dim3(IM_THREADS), a);
	return kc_launch(c, i8_mma_k<MT, false>, g, dim3(IM_THREADS), a);
}

extern "C" int kc_i8_mma(kc *c, const void *x, int xbf16, int64_t m, const kern_mat *w, float *y,
			 int acc)
{
	if (!kc_i8_mma_takes(c, m, w) || (uintptr_t)x % 16)
		return -EAGAIN;
	im_args a;
	memset(&a, 0, sizeof a);
	a.x = x;
	a.w = (const int8_t *)w->data;
	a.s = w->scales;
	a.m = (int)m;
	a.n = (int)w->n;
	a.k = (int)w->k;
	a.qblock = w->qblock;
	a.y = y;
	a.acc = acc;
	/* split k until about three blocks an SM, at least two steps a split */
	int64_t nt = (w->n + IM_BN - 1) / IM_BN, kst = w->k / IM_BK;
	int64_t S = (3 * (int64_t)c->nsm + nt - 1) / nt, smax = kst / 2 > 1 ? kst / 2 : 1;
	S = S < 1 ? 1 : S > smax ? smax : S;
	int64_t steps = (kst + S - 1) / S;
	S = (kst + steps - 1) / steps;
	if (nt > INT32_MAX || S > 65535)
		return -EAGAIN;
	a.steps = (int)steps;
	if (S > 1) {
		int rc = pool_compute_scratch(c->pc, KC_SCRATCH_K, (size_t)(S * m * w->n) * 4,
					      (void **)&a.part);
		if (rc)
			return rc;
	}
	dim3 g((unsigned)nt, (unsigned)S);
	int mt = (int)((m + 15) / 16);
	cudaError_t e = mt == 1 ? im_launch<1>(c, g, xbf16, a)
			: mt == 2 ? im_launch<2>(c, g, xbf16, a)
			: mt == 3 ? im_launch<3>(c, g, xbf16, a)
				  : im_launch<4>(c, g, xbf16, a);
	KC_CHECK(e);
	if (S > 1)
		KC_LAUNCH(c, i8_mma_sum_k, dim3(kc_blocks(m * w->n, 256)), dim3(256), a.part, (int)S,
			  m * w->n, acc, y);
	return 0;
}

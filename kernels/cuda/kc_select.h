/* kc_select.h — inside the CUDA backend: the token selection rules as device functions, shared
 * by the kernels of kc_argmax.cu, kc_sample.cu and kc_sample_rows.cu so that every op picks a
 * token the same way: argmax with the lowest index on ties (and log_softmax of the winner), and
 * the seeded temperature / top-k / top-p rule of kernels/cpu/kcpu_sample.c (thresholds by
 * bisection over float bit patterns, which for non-negative floats order like integers; the
 * token is the first kept index whose running mass exceeds u * kept mass). */
#ifndef THAW_KC_SELECT_H
#define THAW_KC_SELECT_H
#include <limits.h>
#include "kernels/cuda/kc_int.h"

/* am_better: (v, i) beats (bv, bi): larger, or equal and a lower index. */
__device__ __forceinline__ bool am_better(float v, int i, float bv, int bi)
{
	return v > bv || (v == bv && i < bi);
}

__device__ __forceinline__ void am_warp(float &bv, int &bi)
{
	for (int o = 16; o > 0; o >>= 1) {
		float ov = __shfl_xor_sync(0xffffffffu, bv, o);
		int oi = __shfl_xor_sync(0xffffffffu, bi, o);
		if (am_better(ov, oi, bv, bi)) {
			bv = ov;
			bi = oi;
		}
	}
}

/* am_block: the block's best (value, index) from each thread's; every thread gets it.
 * shv / shi: 32 entries of shared memory each. */
__device__ __forceinline__ void am_block(float &bv, int &bi, float *shv, int *shi)
{
	int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
	am_warp(bv, bi);
	if (lane == 0) {
		shv[w] = bv;
		shi[w] = bi;
	}
	__syncthreads();
	if (w == 0) {
		bv = lane < nw ? shv[lane] : -INFINITY;
		bi = lane < nw ? shi[lane] : INT_MAX;
		am_warp(bv, bi);
		if (lane == 0) {
			shv[0] = bv;
			shi[0] = bi;
		}
	}
	__syncthreads();
	bv = shv[0];
	bi = shi[0];
}

/* am_scan: best (value, lowest index) over x[lo, hi), strided so that the first maximum a
 * thread sees is its lowest index. */
__device__ __forceinline__ void am_scan(const float *__restrict__ x, int64_t lo, int64_t hi,
					float &bv, int &bi)
{
	bv = -INFINITY;
	bi = INT_MAX;
	for (int64_t j = lo + threadIdx.x; j < hi; j += blockDim.x)
		if (x[j] > bv) {
			bv = x[j];
			bi = (int)j;
		}
}

/* kc_argmax_row: the whole block picks the argmax of r[n] into *out (thread 0 writes) and,
 * when lp is not NULL, its log-probability log_softmax(r)[argmax] into *lp. */
__device__ __forceinline__ void kc_argmax_row(const float *__restrict__ r, int64_t n,
					      int32_t *out, float *lp)
{
	__shared__ float shv[32];
	__shared__ int shi[32];
	__shared__ float sh[32];
	float mx;
	int best;
	am_scan(r, 0, n, mx, best);
	am_block(mx, best, shv, shi);
	if (lp) {
		float s = 0.f;
		for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
			s += expf(r[j] - mx);
		s = kc_block_sum(s, sh);
		if (threadIdx.x == 0)
			*lp = -logf(s);
	}
	if (threadIdx.x == 0)
		*out = best == INT_MAX ? 0 : best;
}

#define KC_SAMPLE_THREADS 1024

__device__ __forceinline__ float kc_bits_f(unsigned u) { return __uint_as_float(u); }

/* kc_sample_row: the whole block (KC_SAMPLE_THREADS threads) draws one token of r[n] with u
 * (kern_sample's rule) into *out (thread 0 writes), and log_softmax(r / temp)[token] into *lp
 * when lp is not NULL. temp > 0. */
__device__ __forceinline__ void kc_sample_row(const float *__restrict__ r, int64_t n, float temp,
					      int top_k, float top_p, float u, int32_t *out,
					      float *lp)
{
	__shared__ float sh[32];
	__shared__ float pre[KC_SAMPLE_THREADS];
	__shared__ int found;
	__shared__ float total;
	__shared__ int lastkept;
	float mx = -INFINITY;
	for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
		mx = fmaxf(mx, r[j]);
	mx = kc_block_max(mx, sh);
#define P(j) expf((r[j] - mx) / temp)
	float z = 0.f;
	for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
		z += P(j);
	z = kc_block_sum(z, sh);
	float tk = 0.f;
	if (top_k > 0 && top_k < n) {
		unsigned lo = 0, hi = 0x3f800001u;
		while (hi - lo > 1) {
			unsigned mid = lo + (hi - lo) / 2;
			float t = kc_bits_f(mid), cnt = 0.f;
			for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
				cnt += P(j) >= t ? 1.f : 0.f;
			cnt = kc_block_sum(cnt, sh);
			if (cnt >= (float)top_k)
				lo = mid;
			else
				hi = mid;
		}
		tk = kc_bits_f(lo);
	}
	float th = tk;
	if (top_p < 1.0f) {
		float s = 0.f;
		for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
			float p = P(j);
			s += p >= tk ? p : 0.f;
		}
		s = kc_block_sum(s, sh);
		float target = top_p * s;
		unsigned lo = __float_as_uint(tk), hi = 0x3f800001u;
		while (hi - lo > 1) {
			unsigned mid = lo + (hi - lo) / 2;
			float t = kc_bits_f(mid), ms = 0.f;
			for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
				float p = P(j);
				ms += p >= t ? p : 0.f;
			}
			ms = kc_block_sum(ms, sh);
			if (ms >= target)
				lo = mid;
			else
				hi = mid;
		}
		th = kc_bits_f(lo);
	}
	/* contiguous chunk per thread, exclusive prefix over chunk sums, then one thread scans */
	int64_t chunk = (n + blockDim.x - 1) / blockDim.x;
	int64_t a = threadIdx.x * chunk, e = a + chunk < n ? a + chunk : n;
	float cs = 0.f;
	int last = -1;
	for (int64_t j = a; j < e; j++) {
		float p = P(j);
		if (p >= th) {
			cs += p;
			last = (int)j;
		}
	}
	pre[threadIdx.x] = cs;
	if (threadIdx.x == 0)
		found = -1;
	__syncthreads();
	if (threadIdx.x == 0) {
		float c = 0.f;
		for (int t = 0; t < (int)blockDim.x; t++) {
			float v = pre[t];
			pre[t] = c;
			c += v;
		}
		total = c;
		lastkept = 0;
	}
	__syncthreads();
	if (last >= 0)
		atomicMax(&lastkept, last);
	float target = u * total;
	if (cs > 0.f && pre[threadIdx.x] <= target && pre[threadIdx.x] + cs > target) {
		float c = pre[threadIdx.x];
		for (int64_t j = a; j < e; j++) {
			float p = P(j);
			if (p >= th) {
				c += p;
				if (c > target) {
					atomicCAS(&found, -1, (int)j);
					break;
				}
			}
		}
	}
	__syncthreads();
	if (threadIdx.x == 0) {
		int tok = found >= 0 ? found : lastkept;
		*out = tok;
		if (lp)
			*lp = (r[tok] - mx) / temp - logf(z);
	}
#undef P
}
#endif

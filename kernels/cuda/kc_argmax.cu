/* kc_argmax.cu — ops kern_argmax (one block per row; lowest index wins ties; optional
 * log-probability of the winner, log_softmax) and kern_argmax_feed (one row split over up to
 * KC_AM_MAX_BLOCKS blocks, the last block to finish merging the partials and feeding the
 * winner to the next decode step). */
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

__global__ void argmax_k(const float *__restrict__ x, int64_t n, int32_t *out, float *lp)
{
	__shared__ float shv[32];
	__shared__ int shi[32];
	__shared__ float sh[32];
	const float *r = x + (int64_t)blockIdx.x * n;
	kc_pdl_trigger();
	kc_pdl_wait();
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
			lp[blockIdx.x] = -logf(s);
	}
	if (threadIdx.x == 0)
		out[blockIdx.x] = best == INT_MAX ? 0 : best;
}

#define AM_THREADS 256

__global__ void argmax_feed_k(const float *__restrict__ x, int64_t n, int64_t chunk,
			      int32_t *step, int32_t *hist, float *lphist, int64_t cap,
			      kc_am_part *part, int *cnt)
{
	__shared__ float shv[32];
	__shared__ int shi[32];
	__shared__ float sh[32];
	__shared__ bool last;
	kc_pdl_trigger();
	kc_pdl_wait();
	int64_t lo = (int64_t)blockIdx.x * chunk, hi = lo + chunk < n ? lo + chunk : n;
	float mx;
	int best;
	am_scan(x, lo, hi, mx, best);
	am_block(mx, best, shv, shi);
	float s = 0.f;
	if (mx > -INFINITY)
		for (int64_t j = lo + threadIdx.x; j < hi; j += blockDim.x)
			s += expf(x[j] - mx);
	s = kc_block_sum(s, sh);
	if (threadIdx.x == 0) {
		part[blockIdx.x].m = mx;
		part[blockIdx.x].s = s;
		part[blockIdx.x].i = best;
		__threadfence();   /* the partial before the arrival */
		last = atomicAdd(cnt, 1) == (int)gridDim.x - 1;
	}
	__syncthreads();
	if (!last || threadIdx.x >= 32)
		return;
	__threadfence();
	float bv = -INFINITY;
	int bi = INT_MAX;
	for (unsigned b = threadIdx.x; b < gridDim.x; b += 32) {
		float v = __ldcg(&part[b].m);
		int i = __ldcg(&part[b].i);
		if (am_better(v, i, bv, bi)) {
			bv = v;
			bi = i;
		}
	}
	am_warp(bv, bi);
	float S = 0.f;
	for (unsigned b = threadIdx.x; b < gridDim.x; b += 32) {
		float v = __ldcg(&part[b].m), ps = __ldcg(&part[b].s);
		if (ps > 0.f)
			S += ps * expf(v - bv);
	}
	S = kc_warp_sum(S);
	if (threadIdx.x == 0) {
		int tok = bi == INT_MAX ? 0 : bi;
		int64_t p = (int64_t)step[1] + 1;
		step[0] = tok;
		step[1] = (int32_t)p;
		if (p >= 0 && p < cap) {
			hist[p] = tok;
			if (lphist)
				lphist[p] = -logf(S);
		}
		*cnt = 0;
		__threadfence_system();   /* hist may be mapped host memory */
	}
}

extern "C" int kc_argmax(void *b, const float *x, int64_t m, int64_t n, int32_t *out, float *lp)
{
	kc *c = (kc *)b;
	KC_ENTER(c);
	KC_LAUNCH(c, argmax_k, dim3((unsigned)m), dim3(1024), x, n, out, lp);
	return 0;
}

extern "C" int kc_argmax_feed(void *b, const float *x, int64_t n, int32_t *step, int32_t *hist,
			      float *lphist, int64_t cap)
{
	kc *c = (kc *)b;
	KC_ENTER(c);
	/* ~1024 elements a block (4 per thread), at most KC_AM_MAX_BLOCKS blocks */
	int64_t nb = (n + 1023) / 1024;
	if (nb > KC_AM_MAX_BLOCKS)
		nb = KC_AM_MAX_BLOCKS;
	int64_t chunk = (n + nb - 1) / nb;
	nb = (n + chunk - 1) / chunk;
	KC_LAUNCH(c, argmax_feed_k, dim3((unsigned)nb), dim3(AM_THREADS), x, n, chunk, step, hist,
		  lphist, cap, c->am_part, c->am_cnt);
	return 0;
}

/* kc_argmax.cu — ops kern_argmax (one block per row; lowest index wins ties; optional
 * log-probability of the winner, log_softmax) and kern_argmax_feed (one row split over up to
 * KC_AM_MAX_BLOCKS blocks, the last block to finish merging the partials and feeding the
 * winner to the next decode step). */
#include "kernels/cuda/kc_select.h"

__global__ void argmax_k(const float *__restrict__ x, int64_t n, int32_t *out, float *lp)
{
	kc_pdl_trigger();
	kc_pdl_wait();
	kc_argmax_row(x + (int64_t)blockIdx.x * n, n, out + blockIdx.x, lp ? lp + blockIdx.x : NULL);
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

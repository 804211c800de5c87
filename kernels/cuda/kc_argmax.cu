/* kc_argmax.cu — op kern_argmax: one block per row; lowest index wins ties; optional
 * log-probability of the winner (log_softmax). */
#include "kernels/cuda/kc_int.h"

__global__ void argmax_k(const float *__restrict__ x, int64_t n, int32_t *out, float *lp)
{
	__shared__ float shv[32];
	__shared__ int shi[32];
	__shared__ float sh[32];
	const float *r = x + (int64_t)blockIdx.x * n;
	kc_pdl_trigger();
	kc_pdl_wait();
	float bv = -INFINITY;
	int bi = 0x7fffffff;
	for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
		if (r[j] > bv) {   /* strided ascending: the first max seen is the lowest index */
			bv = r[j];
			bi = (int)j;
		}
	for (int o = 16; o > 0; o >>= 1) {
		float ov = __shfl_xor_sync(0xffffffffu, bv, o);
		int oi = __shfl_xor_sync(0xffffffffu, bi, o);
		if (ov > bv || (ov == bv && oi < bi)) {
			bv = ov;
			bi = oi;
		}
	}
	int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
	if (lane == 0) {
		shv[w] = bv;
		shi[w] = bi;
	}
	__syncthreads();
	if (w == 0) {
		bv = lane < nw ? shv[lane] : -INFINITY;
		bi = lane < nw ? shi[lane] : 0x7fffffff;
		for (int o = 16; o > 0; o >>= 1) {
			float ov = __shfl_xor_sync(0xffffffffu, bv, o);
			int oi = __shfl_xor_sync(0xffffffffu, bi, o);
			if (ov > bv || (ov == bv && oi < bi)) {
				bv = ov;
				bi = oi;
			}
		}
		if (lane == 0) {
			shv[0] = bv;
			shi[0] = bi == 0x7fffffff ? 0 : bi;
		}
	}
	__syncthreads();
	float mx = shv[0];
	int best = shi[0];
	if (lp) {
		float s = 0.f;
		for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
			s += expf(r[j] - mx);
		s = kc_block_sum(s, sh);
		if (threadIdx.x == 0)
			lp[blockIdx.x] = -logf(s);
	}
	if (threadIdx.x == 0)
		out[blockIdx.x] = best;
}

extern "C" int kc_argmax(void *b, const float *x, int64_t m, int64_t n, int32_t *out, float *lp)
{
	kc *c = (kc *)b;
	KC_ENTER(c);
	KC_LAUNCH(c, argmax_k, dim3((unsigned)m), dim3(1024), x, n, out, lp);
	return 0;
}

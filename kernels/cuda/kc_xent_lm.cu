/* kc_xent_lm.cu — op kern_xent_lm in three launches: one block counts the rows that are not
 * ignored and flags targets out of range; one warp per row writes its gradient (scaled by
 * scale / count, read from device memory) and its loss in double into scratch; one block sums
 * the row losses into the mean. A target out of range makes the loss and its row's gradient
 * NaN (the host never sees targets here). */
#include "kernels/cuda/kc_int.h"

#define XLM_ROWS 4   /* rows (warps) per block */

__global__ void xlm_count_k(const int32_t *__restrict__ tgt, int64_t m, int64_t n, int *cnt)
{
	__shared__ int sc, sb;
	if (threadIdx.x == 0)
		sc = sb = 0;
	__syncthreads();
	int c = 0, bad = 0;
	for (int64_t i = threadIdx.x; i < m; i += blockDim.x) {
		int32_t t = tgt[i];
		if (t == KERN_IGNORE_INDEX)
			continue;
		if (t < 0 || t >= n)
			bad = 1;
		else
			c++;
	}
	atomicAdd(&sc, c);
	if (bad)
		atomicOr(&sb, 1);
	__syncthreads();
	if (threadIdx.x == 0) {
		cnt[0] = sc;
		cnt[1] = sb;
	}
}

__global__ void xlm_rows_k(const float *__restrict__ x, const int32_t *__restrict__ tgt,
			   int64_t m, int64_t n, float scale, const int *__restrict__ cnt,
			   float *grad, double *rl)
{
	int64_t row = (int64_t)blockIdx.x * XLM_ROWS + (threadIdx.x >> 5);
	int lane = threadIdx.x & 31;
	if (row >= m)
		return;
	const float *r = x + row * n;
	int32_t t = tgt[row];
	float *g = grad ? grad + row * n : NULL;
	if (t == KERN_IGNORE_INDEX || t < 0 || t >= n) {
		float f = t == KERN_IGNORE_INDEX ? 0.f : __int_as_float(0x7fc00000);
		if (g)
			for (int64_t j = lane; j < n; j += 32)
				g[j] = f;
		if (lane == 0)
			rl[row] = f;
		return;
	}
	float mx = -INFINITY;
	for (int64_t j = lane; j < n; j += 32)
		mx = fmaxf(mx, r[j]);
	mx = kc_warp_max(mx);
	double s = 0;
	for (int64_t j = lane; j < n; j += 32)
		s += exp((double)r[j] - mx);
	for (int o = 16; o > 0; o >>= 1)
		s += __shfl_xor_sync(0xffffffffu, s, o);
	double ls = log(s);
	float gs = scale / (float)cnt[0];   /* cnt[0] >= 1: this row counts */
	if (g)
		for (int64_t j = lane; j < n; j += 32)
			g[j] = ((float)exp((double)r[j] - mx - ls) - (j == t ? 1.f : 0.f)) * gs;
	if (lane == 0)
		rl[row] = -((double)r[t] - mx - ls);
}

__global__ void xlm_sum_k(const double *__restrict__ rl, int64_t m, const int *__restrict__ cnt,
			  float *loss)
{
	__shared__ double sh[256];
	double s = 0;
	for (int64_t i = threadIdx.x; i < m; i += blockDim.x)
		s += rl[i];
	sh[threadIdx.x] = s;
	__syncthreads();
	for (int w = 128; w > 0; w >>= 1) {
		if ((int)threadIdx.x < w)
			sh[threadIdx.x] += sh[threadIdx.x + w];
		__syncthreads();
	}
	if (threadIdx.x == 0)
		loss[0] = cnt[1] || cnt[0] == 0 ? __int_as_float(0x7fc00000)
						: (float)(sh[0] / (double)cnt[0]);
}

extern "C" int kc_xent_lm(void *b, const float *x, const int32_t *tgt, int64_t m, int64_t n,
			  float scale, float *grad, float *loss)
{
	kc *c = (kc *)b;
	float *scr;
	KC_ENTER(c);
	int rc = kc_scratch(c, (size_t)m * 8 + 16, &scr);
	if (rc)
		return rc;
	double *rl = (double *)scr;
	int *cnt = (int *)(rl + m);
	xlm_count_k<<<1, 256, 0, c->s>>>(tgt, m, n, cnt);
	KC_LAUNCHED();
	xlm_rows_k<<<kc_blocks(m, XLM_ROWS), 32 * XLM_ROWS, 0, c->s>>>(x, tgt, m, n, scale, cnt, grad,
									rl);
	KC_LAUNCHED();
	if (loss) {
		xlm_sum_k<<<1, 256, 0, c->s>>>(rl, m, cnt, loss);
		KC_LAUNCHED();
	}
	return 0;
}

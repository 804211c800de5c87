/* kc_col_sum.cu — op kern_col_sum: out[j] = alpha * sum_i x[i, j] + beta * out[j]. A block of
 * 32 x 8 threads takes 32 adjacent columns (coalesced reads); its 8 rows of threads stride
 * over the rows and are summed through shared memory. */
#include "kernels/cuda/kc_int.h"

__global__ void col_sum_k(const float *__restrict__ x, int64_t m, int64_t n, float alpha,
			  float beta, float *out)
{
	__shared__ float sh[8][33];
	int64_t j = (int64_t)blockIdx.x * 32 + threadIdx.x;
	float s = 0.f;
	if (j < n)
		for (int64_t i = threadIdx.y; i < m; i += 8)
			s += x[i * n + j];
	sh[threadIdx.y][threadIdx.x] = s;
	__syncthreads();
	if (threadIdx.y == 0 && j < n) {
		float t = 0.f;
		for (int r = 0; r < 8; r++)
			t += sh[r][threadIdx.x];
		out[j] = beta == 0.f ? alpha * t : alpha * t + beta * out[j];
	}
}

extern "C" int kc_col_sum(void *b, const float *x, int64_t m, int64_t n, float alpha, float beta,
			  float *out)
{
	kc *c = (kc *)b;
	KC_ENTER(c);
	col_sum_k<<<kc_blocks(n, 32), dim3(32, 8), 0, c->s>>>(x, m, n, alpha, beta, out);
	KC_LAUNCHED();
	return 0;
}

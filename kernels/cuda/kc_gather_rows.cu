/* kc_gather_rows.cu — op kern_gather_rows: y[i, :] = x[rows[i], :] (row ids read from device
 * memory, so a captured step stays valid as they change); float4 copies when dim and both
 * pointers allow, else one element a thread. A negative row id gives a row of zeros. */
#include "kernels/cuda/kc_int.h"

template <typename V>
__global__ void gather_rows_k(const V *__restrict__ x, int64_t dim, const int32_t *__restrict__ rows,
			      int64_t n, V *__restrict__ y)
{
	int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
	kc_pdl_trigger();
	kc_pdl_wait();
	if (e >= n * dim)
		return;
	int64_t i = e / dim, j = e % dim;
	int32_t r = rows[i];
	y[e] = r >= 0 ? x[(int64_t)r * dim + j] : V{};
}

extern "C" int kc_gather_rows(void *b, const float *x, int64_t dim, const int32_t *rows,
			      int64_t n, float *y)
{
	kc *c = (kc *)b;
	KC_ENTER(c);
	if (dim % 4 == 0 && (uintptr_t)x % 16 == 0 && (uintptr_t)y % 16 == 0)
		KC_LAUNCH(c, gather_rows_k<float4>, dim3(kc_blocks(n * (dim / 4), 256)), dim3(256),
			  (const float4 *)x, dim / 4, rows, n, (float4 *)y);
	else
		KC_LAUNCH(c, gather_rows_k<float>, dim3(kc_blocks(n * dim, 256)), dim3(256), x, dim,
			  rows, n, y);
	return 0;
}

/* kc_rmsnorm_bwd.cu — op kern_rmsnorm_bwd: one block per row for dx (block sums of x^2 and of
 * dy * w * x), which also leaves the row's 1/rms in scratch; then one thread per column sums
 * dy * x * r over the rows for dw (coalesced across the threads of a block). */
#include "kernels/cuda/kc_int.h"

__global__ void rmsnorm_bwd_rows_k(const float *__restrict__ x, const float *__restrict__ w,
				   const float *__restrict__ dy, int64_t dim, float eps,
				   float *__restrict__ dx, float *__restrict__ rr)
{
	__shared__ float sh[32];
	int64_t row = blockIdx.x;
	const float *xr = x + row * dim, *gr = dy + row * dim;
	float ss = 0.f, gx = 0.f;
	for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) {
		ss += xr[j] * xr[j];
		gx += gr[j] * w[j] * xr[j];
	}
	ss = kc_block_sum(ss, sh);
	gx = kc_block_sum(gx, sh);
	float r = 1.0f / sqrtf(ss / (float)dim + eps);
	float k = r * r * r * gx / (float)dim;
	for (int64_t j = threadIdx.x; j < dim; j += blockDim.x)
		dx[row * dim + j] = r * gr[j] * w[j] - k * xr[j];
	if (threadIdx.x == 0)
		rr[row] = r;
}

__global__ void rmsnorm_bwd_cols_k(const float *__restrict__ x, const float *__restrict__ dy,
				   const float *__restrict__ rr, int64_t m, int64_t dim,
				   float *__restrict__ dw)
{
	int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (j >= dim)
		return;
	float s = 0.f;
	for (int64_t i = 0; i < m; i++)
		s += dy[i * dim + j] * x[i * dim + j] * rr[i];
	dw[j] = s;
}

extern "C" int kc_rmsnorm_bwd(void *b, const float *x, const float *w, const float *dy,
			      int64_t m, int64_t dim, float eps, float *dx, float *dw)
{
	kc *c = (kc *)b;
	float *rr;
	KC_ENTER(c);
	int rc = kc_scratch(c, (size_t)m * 4, &rr);
	if (rc)
		return rc;
	rmsnorm_bwd_rows_k<<<(unsigned)m, dim >= 1024 ? 1024 : 256, 0, c->s>>>(x, w, dy, dim, eps,
										dx, rr);
	KC_LAUNCHED();
	if (dw) {
		rmsnorm_bwd_cols_k<<<kc_blocks(dim, 256), 256, 0, c->s>>>(x, dy, rr, m, dim, dw);
		KC_LAUNCHED();
	}
	return 0;
}

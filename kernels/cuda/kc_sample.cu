/* kc_sample.cu — op kern_sample: seeded temperature / top-k / top-p sampling, one block of
 * 1024 threads per row. Same rule as kernels/cpu/kcpu_sample.c: p = exp((x - max) / temp);
 * the top-k and top-p thresholds are found exactly by bisection over float bit patterns
 * (non-negative floats order like their bits); the token is the first kept index whose
 * running mass exceeds u * (kept mass). The rule itself is kc_sample_row (kc_select.h). */
#include "kernels/cuda/kc_select.h"

__global__ void sample_k(const float *__restrict__ x, int64_t n, float temp, int top_k,
			 float top_p, const float *__restrict__ u, int32_t *out, float *lp)
{
	kc_sample_row(x + (int64_t)blockIdx.x * n, n, temp, top_k, top_p, u[blockIdx.x],
		      out + blockIdx.x, lp ? lp + blockIdx.x : NULL);
}

extern "C" int kc_sample(void *b, const float *x, int64_t m, int64_t n, float temp, int top_k,
			 float top_p, const float *u, int32_t *out, float *lp)
{
	kc *c = (kc *)b;
	KC_ENTER(c);
	sample_k<<<(unsigned)m, KC_SAMPLE_THREADS, 0, c->s>>>(x, n, temp, top_k, top_p, u, out, lp);
	KC_LAUNCHED();
	return 0;
}

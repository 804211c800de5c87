/* kc_sample_rows.cu — op kern_sample_rows: one token per row of logits with the row's own
 * parameters (device arrays, so a captured step stays valid as they change), one block of
 * KC_SAMPLE_THREADS threads per row: a greedy row (temp 0) takes kern_argmax's rule and a
 * sampled row kern_sample's, through the same device functions as those ops (kc_select.h), so
 * tokens equal theirs row by row. Parameters the host cannot see here are read as the CPU
 * backend would reject them only where a token must still come out: temp < 0 or NaN is
 * greedy, top_k < 0 is no limit, top_p outside (0, 1] is no limit. */
#include "kernels/cuda/kc_select.h"

__global__ void __launch_bounds__(KC_SAMPLE_THREADS)
sample_rows_k(const float *__restrict__ x, int64_t n, const float *__restrict__ temp,
	      const int32_t *__restrict__ top_k, const float *__restrict__ top_p,
	      const float *__restrict__ u, int32_t *out, float *lp)
{
	const int64_t i = blockIdx.x;
	kc_pdl_trigger();
	kc_pdl_wait();
	const float t = temp[i];
	const float *r = x + i * n;
	float *l = lp ? lp + i : NULL;
	if (!(t > 0.f)) {   /* block-uniform */
		kc_argmax_row(r, n, out + i, l);
		return;
	}
	int k = top_k[i];
	float p = top_p[i];
	kc_sample_row(r, n, t, k < 0 ? 0 : k, p > 0.f && p <= 1.f ? p : 1.f, u[i], out + i, l);
}

extern "C" int kc_sample_rows(void *b, const float *x, int64_t m, int64_t n, const float *temp,
			      const int32_t *top_k, const float *top_p, const float *u,
			      int32_t *out, float *lp)
{
	kc *c = (kc *)b;
	KC_ENTER(c);
	KC_LAUNCH(c, sample_rows_k, dim3((unsigned)m), dim3(KC_SAMPLE_THREADS), x, n, temp, top_k,
		  top_p, u, out, lp);
	return 0;
}

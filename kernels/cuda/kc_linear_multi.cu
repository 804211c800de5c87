/* kc_linear_multi.cu — op kern_linear_multi: up to three products of one input (q, k, v) in one
 * GEMV launch for small m (rows numbered across the matrices; an RMSNorm of the input
 * fused in); cuBLAS one by one otherwise (x normed and rounded to F16/BF16 once for all of
 * them; BF16 for int8 weights, dequantized by kc_gemm_ex). */
#include "kernels/cuda/kc_int.h"

extern "C" int kc_linear_multi(void *b, const float *x, int64_t m, int nw, const kern_mat *w,
			       float *const *y, const kern_norm *norm)
{
	kc *c = (kc *)b;
	KC_ENTER(c);
	bool gemv = kc_gemv_takes(m, &w[0]);
	if (norm && gemv && w[0].dt == KERN_I8 && !kc_gemv_fuses_i8_norm(m)) {
		/* the one-warp-per-row int8 GEMV (m > 1) is bound by its L1 traffic for x: a fused
		 * norm's extra loads cost more than a separate RMSNorm launch, so
		 * normalize into scratch first; the staged m == 1 kernel fuses it for free */
		int rc = kc_normed(c, x, m, w[0].k, norm, &x);
		if (rc)
			return rc;
		norm = NULL;
	}
	if (gemv) {
		int rc = kc_gemv_ex(c, x, m, nw, w, y, NULL, KERN_ACT_NONE, 0, 0, norm);
		if (rc != -EAGAIN)
			return rc;
	}
	int rounded = 0;
	if (!gemv && w[0].dt != KERN_F32) {
		/* norm (if any) and rounding in one launch, once for all the products */
		int rc = kc_norm_round_x(c, x, m, norm, &w[0]);
		if (rc)
			return rc;
		rounded = 1;
	} else {
		int nrc = kc_normed(c, x, m, w[0].k, norm, &x);   /* composed: norm once into scratch */
		if (nrc)
			return nrc;
	}
	for (int i = 0; i < nw; i++) {
		int rc = !gemv ? kc_gemm_ex(c, x, m, &w[i], y[i], 0.f, rounded)
			       : kc_linear(b, x, m, &w[i], NULL, KERN_ACT_NONE, y[i]);
		if (rc)
			return rc;
	}
	return 0;
}

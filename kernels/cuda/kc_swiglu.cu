/* kc_swiglu.cu — op kern_swiglu: silu(x . Wg^T) * (x . Wu^T). Small m: one GEMV launch in which
 * each warp streams a gate row and the matching up row and writes silu(g) * u (an RMSNorm of
 * the input fused in); larger m: two cuBLAS products (up into the device scratch; int8 weights
 * dequantized to BF16) and the SiLU*mul, which inside the chained op kc_swiglu_proj also writes
 * its result rounded into the workspace for the down_proj product that follows (kc_int.h). */
#include "kernels/cuda/kc_int.h"

extern "C" int kc_swiglu_ex(kc *c, const float *x, int64_t m, const kern_mat *wg,
			    const kern_mat *wu, float *out, const kern_norm *norm, kern_dtype rd,
			    int *rounded)
{
	*rounded = 0;
	bool gemv = kc_gemv_takes(m, wg);
	if (norm && gemv && wg->dt == KERN_I8 && !kc_gemv_fuses_i8_norm(m)) {   /* see kc_linear_multi.cu */
		int rc = kc_normed(c, x, m, wg->k, norm, &x);
		if (rc)
			return rc;
		norm = NULL;
	}
	if (gemv) {
		kern_mat w[2] = {*wg, *wu};
		float *ys[2] = {out, out};
		int rc = kc_gemv_ex(c, x, m, 2, w, ys, NULL, KERN_ACT_NONE, 0, 1, norm);
		if (rc != -EAGAIN)
			return rc;
	}
	float *t;
	/* cuBLAS products for F16/BF16 weights, and for int8 (dequantized to BF16) past the GEMV's
	 * rows; the GEMV that could not take the pointers leaves int8 to kc_linear */
	bool cublas = wg->dt != KERN_I8 || !gemv;
	int xr = cublas && wg->dt != KERN_F32;
	/* cuBLAS with F16/BF16 weights: norm and rounding in one launch, once for both products */
	int rc = xr ? kc_norm_round_x(c, x, m, norm, wg) : kc_normed(c, x, m, wg->k, norm, &x);
	if (rc == 0)
		rc = kc_scratch(c, (size_t)(m * wu->n) * 4, &t);
	if (rc == 0 && cublas) {   /* cuBLAS products of the rounded input */
		if (rc == 0)
			rc = kc_gemm_ex(c, x, m, wg, out, 0.f, xr);
		if (rc == 0)
			rc = kc_gemm_ex(c, x, m, wu, t, 0.f, xr);
	} else if (rc == 0) {
		rc = kc_linear(c, x, m, wg, NULL, KERN_ACT_NONE, out);
		if (rc == 0)
			rc = kc_linear(c, x, m, wu, NULL, KERN_ACT_NONE, t);
	}
	if (rc == 0)
		rc = kc_silu_mul_ex(c, out, t, m * wu->n, out, rd);
	*rounded = rc == 0 && rd != KERN_F32;
	return rc;
}

extern "C" int kc_swiglu(void *b, const float *x, int64_t m, const kern_mat *wg,
			 const kern_mat *wu, float *out, const kern_norm *norm)
{
	kc *c = (kc *)b;
	int rounded;
	KC_ENTER(c);
	return kc_swiglu_ex(c, x, m, wg, wu, out, norm, KERN_F32, &rounded);
}

extern "C" int kc_swiglu_proj(void *b, const float *x, int64_t m, const kern_mat *wg,
			      const kern_mat *wu, const kern_norm *norm, float *g,
			      const kern_mat *wd, float *y)
{
	kc *c = (kc *)b;
	int rounded;
	KC_ENTER(c);
	int rc = kc_swiglu_ex(c, x, m, wg, wu, g, norm, kc_round_for(m, wd), &rounded);
	return rc ? rc : kc_linear_add_ex(c, g, m, wd, y, rounded);
}

/* kc_rmsnorm.cu — op kern_rmsnorm: one block per row, F32 sum of squares (kc_rmsnorm_k in
 * kc_int.h, shared with the norm fused into the rounding of cuBLAS inputs). */
#include "kernels/cuda/kc_int.h"

extern "C" int kc_rmsnorm(void *b, const float *x, const float *w, int64_t m, int64_t dim,
			  float eps, float *y)
{
	kc *c = (kc *)b;
	KC_ENTER(c);
	KC_LAUNCH(c, kc_rmsnorm_k<float>, dim3((unsigned)m), dim3(dim >= 1024 ? 1024 : 256), x, w, dim,
		  eps, y);
	return 0;
}

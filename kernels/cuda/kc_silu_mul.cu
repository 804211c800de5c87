/* kc_silu_mul.cu — op kern_silu_mul: out = silu(gate) * up (the SiLU-gated MLP's middle). Inside
 * the chained op kc_swiglu_proj (kc_silu_mul_ex) the same kernel also writes the result rounded
 * for the down_proj product that follows (kc_int.h). */
#include "kernels/cuda/kc_int.h"

/* r: NULL, or n elements that get the result rounded to T */
template <typename T>
__global__ void silu_mul_k(const float *gate, const float *__restrict__ up, int64_t n, float *out,
			   T *__restrict__ r)
{
	int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i < n) {
		float g = gate[i];
		float v = g / (1.f + expf(-g)) * up[i];
		out[i] = v;
		if (r)
			r[i] = kc_from_f<T>(v);
	}
}

extern "C" int kc_silu_mul_ex(kc *c, const float *gate, const float *up, int64_t n, float *out,
			      kern_dtype rd)
{
	if (rd == KERN_BF16 || rd == KERN_F16) {
		int rc = kc_xbuf(c, (size_t)n * 2);
		if (rc)
			return rc;
	}
	unsigned g = kc_blocks(n, 256);
	if (rd == KERN_F16)
		silu_mul_k<<<g, 256, 0, c->s>>>(gate, up, n, out, (__half *)c->xbuf);
	else
		silu_mul_k<<<g, 256, 0, c->s>>>(gate, up, n, out,
						rd == KERN_BF16 ? (__nv_bfloat16 *)c->xbuf : NULL);
	KC_LAUNCHED();
	return 0;
}

extern "C" int kc_silu_mul(void *b, const float *gate, const float *up, int64_t n, float *out)
{
	kc *c = (kc *)b;
	KC_ENTER(c);
	return kc_silu_mul_ex(c, gate, up, n, out, KERN_F32);
}

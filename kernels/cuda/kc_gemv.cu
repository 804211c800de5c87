/* kc_gemv.cu — the small-batch half of op kern_linear: y[m, n] = x[m, k] . W[n, k]^T for m <= 8
 * rows, F32/F16/BF16/I8 weights, F32 activations and accumulation, bias + activation fused.
 * One warp per output row; each lane streams 16-byte vectors of the weight row (read once for
 * all m rows), widens them in registers (int8: times the row's or block's scale) and the warp
 * reduces. This is what a batch-1 decode step spends its time in: it is bound by weight bytes,
 * hence int8 weight-only halves the traffic of BF16. */
#include "kernels/cuda/kc_int.h"

#define GEMV_WARPS 4

__device__ __forceinline__ float kc_tof(int8_t v) { return (float)v; }

template <typename T> struct vec;   /* 16 bytes of weights -> V floats */
template <> struct vec<float> {
	static const int V = 4;
	__device__ static void get(uint4 r, float *f)
	{
		f[0] = __uint_as_float(r.x); f[1] = __uint_as_float(r.y);
		f[2] = __uint_as_float(r.z); f[3] = __uint_as_float(r.w);
	}
};
template <> struct vec<__nv_bfloat16> {
	static const int V = 8;
	__device__ static void get(uint4 r, float *f)
	{
		unsigned u[4] = {r.x, r.y, r.z, r.w};
		for (int i = 0; i < 4; i++) {
			f[2 * i] = __uint_as_float(u[i] << 16);
			f[2 * i + 1] = __uint_as_float(u[i] & 0xffff0000u);
		}
	}
};
template <> struct vec<__half> {
	static const int V = 8;
	__device__ static void get(uint4 r, float *f)
	{
		unsigned u[4] = {r.x, r.y, r.z, r.w};
		for (int i = 0; i < 4; i++) {
			__half2 h = *reinterpret_cast<__half2 *>(&u[i]);
			float2 t = __half22float2(h);
			f[2 * i] = t.x;
			f[2 * i + 1] = t.y;
		}
	}
};
template <> struct vec<int8_t> {
	static const int V = 16;
	__device__ static void get(uint4 r, float *f)
	{
		unsigned u[4] = {r.x, r.y, r.z, r.w};
		for (int i = 0; i < 4; i++)
			for (int b = 0; b < 4; b++)
				f[4 * i + b] = (float)(int8_t)((u[i] >> (8 * b)) & 0xff);
	}
};

__device__ __forceinline__ uint4 ld_stream(const void *p)
{
	uint4 r;
	asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
		     : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p));
	return r;
}

template <typename T, int M>
__global__ void __launch_bounds__(GEMV_WARPS * 32)
gemv_k(const T *__restrict__ W, const float *__restrict__ x, int n, int k,
       const float *__restrict__ scales, int qblock, const float *__restrict__ bias, int act,
       float *__restrict__ y)
{
	const int V = vec<T>::V;
	int row = blockIdx.x * GEMV_WARPS + (threadIdx.x >> 5), lane = threadIdx.x & 31;
	if (row >= n)
		return;
	const T *w = W + (size_t)row * k;
	float acc[M];
	for (int i = 0; i < M; i++)
		acc[i] = 0.f;
	const bool blk = qblock > 0;
	const float *bs = blk ? scales + (size_t)row * (k / qblock) : NULL;
#pragma unroll 4
	for (int j = lane * V; j < k; j += 32 * V) {
		float f[V];
		vec<T>::get(ld_stream(w + j), f);
		float sc = blk ? bs[j / qblock] : 1.f;
		for (int i = 0; i < M; i++) {
			const float4 *xp = (const float4 *)(x + (size_t)i * k + j);
			float s = 0.f;
			for (int v = 0; v < V / 4; v++) {
				float4 xv = __ldg(xp + v);
				s += f[4 * v] * xv.x + f[4 * v + 1] * xv.y + f[4 * v + 2] * xv.z +
				     f[4 * v + 3] * xv.w;
			}
			acc[i] += blk ? s * sc : s;
		}
	}
	float rs = (scales && !blk) ? scales[row] : 1.f;
	for (int i = 0; i < M; i++) {
		float s = kc_warp_sum(acc[i]);
		if (lane == 0)
			y[(size_t)i * n + row] = kc_act(s * rs + (bias ? bias[row] : 0.f), act);
	}
}

/* Fallback for shapes the vector path cannot take (k not a multiple of the vector width). */
template <typename T>
__global__ void gemv_scalar_k(const T *__restrict__ W, const float *__restrict__ x, int m, int n,
			      int k, const float *__restrict__ scales, int qblock,
			      const float *__restrict__ bias, int act, float *__restrict__ y)
{
	int row = blockIdx.x * GEMV_WARPS + (threadIdx.x >> 5), lane = threadIdx.x & 31;
	if (row >= n)
		return;
	for (int i = 0; i < m; i++) {
		float s = 0.f;
		for (int j = lane; j < k; j += 32) {
			float wv = (float)kc_tof(W[(size_t)row * k + j]);
			if (scales)
				wv *= qblock ? scales[(size_t)row * (k / qblock) + j / qblock] : scales[row];
			s += wv * x[(size_t)i * k + j];
		}
		s = kc_warp_sum(s);
		if (lane == 0)
			y[(size_t)i * n + row] = kc_act(s + (bias ? bias[row] : 0.f), act);
	}
}

template <typename T>
static int launch(kc *c, const float *x, int m, const kern_mat *w, const float *bias, int act,
		  float *y)
{
	const int V = vec<T>::V;
	int n = (int)w->n, k = (int)w->k;
	unsigned g = kc_blocks(n, GEMV_WARPS);
	const T *W = (const T *)w->data;
	const float *sc = w->dt == KERN_I8 ? w->scales : NULL;
	bool vecok = k % V == 0 && ((uintptr_t)W % 16) == 0 && ((uintptr_t)x % 16) == 0;
	if (!vecok) {
		gemv_scalar_k<T><<<g, GEMV_WARPS * 32, 0, c->s>>>(W, x, m, n, k, sc, w->qblock, bias,
								  act, y);
		KC_LAUNCHED();
		return 0;
	}
#define GV(MM) case MM: gemv_k<T, MM><<<g, GEMV_WARPS * 32, 0, c->s>>>(W, x, n, k, sc, w->qblock, \
		bias, act, y); break
	switch (m) {
	GV(1); GV(2); GV(3); GV(4); GV(5); GV(6); GV(7); GV(8);
	default: return -EINVAL;
	}
#undef GV
	KC_LAUNCHED();
	return 0;
}

extern "C" int kc_gemv(kc *c, const float *x, int64_t m, const kern_mat *w, const float *bias,
		       kern_act act, float *y)
{
	if (w->n > INT32_MAX || w->k > INT32_MAX)
		return -ENOTSUP;
	for (int64_t i = 0; i < m; i += 8) {   /* row chunks of 8: each re-reads W */
		int mm = (int)(m - i < 8 ? m - i : 8);
		const float *xi = x + i * w->k;
		float *yi = y + i * w->n;
		int rc;
		switch (w->dt) {
		case KERN_F32: rc = launch<float>(c, xi, mm, w, bias, act, yi); break;
		case KERN_BF16: rc = launch<__nv_bfloat16>(c, xi, mm, w, bias, act, yi); break;
		case KERN_F16: rc = launch<__half>(c, xi, mm, w, bias, act, yi); break;
		case KERN_I8: rc = launch<int8_t>(c, xi, mm, w, bias, act, yi); break;
		default: rc = -EINVAL;
		}
		if (rc)
			return rc;
	}
	return 0;
}

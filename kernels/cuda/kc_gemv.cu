/* kc_gemv.cu — the small-batch half of op kern_linear: y[m, n] = x[m, k] . W[n, k]^T for m <= 8
 * rows, F32/F16/BF16/I8 weights, F32 activations and accumulation, bias + activation fused.
 * One warp per output row (blocks of 8 warps for one input row, else 4); each lane streams
 * 16-byte vectors of the weight row (read once for all m rows), widens them in registers
 * (int8: times the row's or block's scale) and the warp reduces. This is what a batch-1 decode step spends its time in: it is bound by weight bytes,
 * hence int8 weight-only halves the traffic of BF16. int8 with one input row (batch-1 decode)
 * has its own kernel, gemv_i8s_k below (x staged in shared memory). */
#include <stdlib.h>
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
	/* (float)(int8_t) compiles to I2F with a byte selector: one instruction per element */
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

/* Up to three matrices of one input in one launch (q, k, v: rows are numbered across them),
 * or (SWIGLU) two matrices of equal shape whose products meet in silu(g) * u. */
struct gemv_args {
	const void *W[3];
	const float *S[3];
	float *Y[3];
	int rows[3];
	int nm, k, qblock, act, acc;
	const float *bias;
	const float *norm;         /* RMSNorm weights applied to x first (NULL: none) */
	float eps;
};

template <typename T, int M, bool SWIGLU, int WARPS = GEMV_WARPS>
__global__ void __launch_bounds__(WARPS * 32)
gemv_k(const float *__restrict__ x, const gemv_args a)
{
	const int V = vec<T>::V;
	int row = blockIdx.x * WARPS + (threadIdx.x >> 5), lane = threadIdx.x & 31;
	kc_pdl_trigger();
	int mi = 0, r = row;
	if (!SWIGLU)
		while (mi < a.nm - 1 && r >= (mi == 0 ? a.rows[0] : a.rows[1])) {
			r -= mi == 0 ? a.rows[0] : a.rows[1];
			mi++;
		}
	/* select without indexing the parameter arrays dynamically (that costs a stack copy) */
	const int n = mi == 0 ? a.rows[0] : mi == 1 ? a.rows[1] : a.rows[2];
	const void *Wm = mi == 0 ? a.W[0] : mi == 1 ? a.W[1] : a.W[2];
	const float *Sm = mi == 0 ? a.S[0] : mi == 1 ? a.S[1] : a.S[2];
	float *Ym = mi == 0 ? a.Y[0] : mi == 1 ? a.Y[1] : a.Y[2];
	const bool valid = r < n;   /* invalid warps still join the block's norm reduction */
	if (!valid && !a.norm)
		return;
	if (!valid)
		r = 0;
	const int k = a.k;
	const T *w = (const T *)Wm + (size_t)r * k;
	const T *w2 = SWIGLU ? (const T *)a.W[1] + (size_t)r * k : w;
	float acc[M], acc2[M];
	for (int i = 0; i < M; i++)
		acc[i] = acc2[i] = 0.f;
	const bool blk = a.qblock > 0;
	const float *bs = blk ? Sm + (size_t)r * (k / a.qblock) : NULL;
	const float *bs2 = (blk && SWIGLU) ? a.S[1] + (size_t)r * (k / a.qblock) : NULL;
	/* weights never depend on the previous kernel: start streaming them before the wait */
	const int PRE = V <= 8 ? 8 : 4;   /* a whole 2048-wide row in flight at once */
	uint4 pw[PRE], pw2[PRE];
#pragma unroll
	for (int u = 0; u < PRE; u++) {
		int j = lane * V + u * 32 * V;
		if (j < k) {
			pw[u] = ld_stream(w + j);
			if (SWIGLU)
				pw2[u] = ld_stream(w2 + j);
		}
	}
	kc_pdl_wait();
	/* fused RMSNorm: every block reduces the sum of squares of its input rows itself */
	float inv[M];
	if (a.norm) {
		__shared__ float red[WARPS][M];
		for (int i = 0; i < M; i++) {
			float ss = 0.f;
			for (int j = threadIdx.x * 4; j < k; j += blockDim.x * 4) {
				float4 xv = __ldg((const float4 *)(x + (size_t)i * k + j));
				ss += xv.x * xv.x + xv.y * xv.y + xv.z * xv.z + xv.w * xv.w;
			}
			ss = kc_warp_sum(ss);
			if (lane == 0)
				red[threadIdx.x >> 5][i] = ss;
		}
		__syncthreads();
		for (int i = 0; i < M; i++) {
			float t = 0.f;
			for (int wi = 0; wi < WARPS; wi++)
				t += red[wi][i];
			inv[i] = rsqrtf(t / (float)k + a.eps);
		}
		if (!valid)
			return;
	}
	auto step = [&](int j, uint4 raw, uint4 raw2) {
		float f[V], f2[V];
		vec<T>::get(raw, f);
		if (SWIGLU)
			vec<T>::get(raw2, f2);
		float sc = blk ? bs[j / a.qblock] : 1.f, sc2 = (blk && SWIGLU) ? bs2[j / a.qblock] : 1.f;
		for (int i = 0; i < M; i++) {
			const float4 *xp = (const float4 *)(x + (size_t)i * k + j);
			float s = 0.f, s2 = 0.f;
			for (int v = 0; v < V / 4; v++) {
				float4 xv = __ldg(xp + v);
				if (a.norm) {
					float4 nv = __ldg((const float4 *)(a.norm + j) + v);
					xv.x *= inv[i] * nv.x;
					xv.y *= inv[i] * nv.y;
					xv.z *= inv[i] * nv.z;
					xv.w *= inv[i] * nv.w;
				}
				s += f[4 * v] * xv.x + f[4 * v + 1] * xv.y + f[4 * v + 2] * xv.z +
				     f[4 * v + 3] * xv.w;
				if (SWIGLU)
					s2 += f2[4 * v] * xv.x + f2[4 * v + 1] * xv.y + f2[4 * v + 2] * xv.z +
					      f2[4 * v + 3] * xv.w;
			}
			acc[i] += blk ? s * sc : s;
			if (SWIGLU)
				acc2[i] += blk ? s2 * sc2 : s2;
		}
	};
#pragma unroll
	for (int u = 0; u < PRE; u++) {
		int j = lane * V + u * 32 * V;
		if (j < k)
			step(j, pw[u], SWIGLU ? pw2[u] : pw[u]);
	}
#pragma unroll 8
	for (int j = lane * V + PRE * 32 * V; j < k; j += 32 * V)
		step(j, ld_stream(w + j), SWIGLU ? ld_stream(w2 + j) : make_uint4(0, 0, 0, 0));
	float rs = (Sm && !blk) ? Sm[r] : 1.f;
	float rs2 = (SWIGLU && a.S[1] && !blk) ? a.S[1][r] : 1.f;
	for (int i = 0; i < M; i++) {
		float s = kc_warp_sum(acc[i]) * rs;
		float s2 = SWIGLU ? kc_warp_sum(acc2[i]) * rs2 : 0.f;
		if (lane == 0) {
			float *yp = Ym + (size_t)i * n + r;
			if (SWIGLU)
				*yp = s / (1.f + expf(-s)) * s2;
			else if (a.acc)
				*yp += s;
			else
				*yp = kc_act(s + (a.bias ? a.bias[r] : 0.f), a.act);
		}
	}
}

/* ---- int8, one input row (batch-1 decode): the input staged in shared memory ----
 * The one-warp-per-row kernel above re-reads x from L1 for every weight vector with each lane's
 * 64 bytes of x 64 bytes apart from the next lane's: 16 L1 wavefronts per 512 bytes of int8
 * weights, well below the HBM rate. Here each block first copies x into shared memory (loads
 * issued four at a time per thread, times the RMSNorm weights when a norm is fused; the 1 / rms
 * factor is applied to the finished dot products), laid out so that the four float4 a lane
 * needs for its 16-element weight vector t sit at slots ((t/32)*4 + q)*32 + t%32, q < 4: a
 * warp's reads are then 512 contiguous bytes (conflict-free). Weights are widened with a
 * byte-permute into a float's mantissa (2^23 + 128 + w) and one subtraction instead of the
 * quarter-rate I2F. Weight rows are prefetched into registers before the programmatic-
 * dependent-launch wait; rows of k <= 2048 run as one wave of blocks whose warps loop over
 * rows with the next row's weights already in flight (LOOP). Blocks hold 8..16 warps (more for
 * taller matrices, so fewer blocks copy x). Measurements: docs/benchmarks.md, "Compute". */
#define I8S_MAX_WARPS 16

__device__ __forceinline__ void i8_widen(uint4 r, float *f)
{
	unsigned u[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
	for (int i = 0; i < 4; i++) {
		unsigned v = u[i] ^ 0x80808080u;   /* signed -> offset binary */
#pragma unroll
		for (int b = 0; b < 4; b++)
			f[4 * i + b] = __uint_as_float(__byte_perm(v, 0x4B000000u, 0x7540u | b)) -
				       8388736.f;
	}
}

__device__ __forceinline__ int i8s_slot(int t, int q) { return (((t >> 5) * 4 + q) << 5) + (t & 31); }

template <bool SWIGLU, int PRE, bool LOOP>
__global__ void __launch_bounds__(I8S_MAX_WARPS * 32)
gemv_i8s_k(const float *__restrict__ x, const gemv_args a)
{
	extern __shared__ float4 xs[];   /* k / 4 float4, slots as i8s_slot */
	const int nwarp = blockDim.x >> 5, lane = threadIdx.x & 31;
	const int total = a.rows[0] + (SWIGLU ? 0 : a.rows[1] + a.rows[2]);
	const int stride = gridDim.x * nwarp;
	int row = blockIdx.x * nwarp + (threadIdx.x >> 5);
	kc_pdl_trigger();
	const int k = a.k, nv = k >> 4, k4 = k >> 2;
	/* global row -> (matrix mi, row r); selects without indexing the parameter arrays
	 * dynamically (that costs a stack copy) */
	auto wrow = [&](int g, int &mi, int &r) {
		mi = 0;
		r = g;
		if (!SWIGLU)
			while (mi < a.nm - 1 && r >= (mi == 0 ? a.rows[0] : a.rows[1])) {
				r -= mi == 0 ? a.rows[0] : a.rows[1];
				mi++;
			}
		const void *Wm = mi == 0 ? a.W[0] : mi == 1 ? a.W[1] : a.W[2];
		return (const int8_t *)Wm + (size_t)r * k;
	};
	auto fetch = [&](int g, uint4 *p, uint4 *p2) {
		if (g >= total)
			return;
		int mi, r;
		const int8_t *w = wrow(g, mi, r);
		const int8_t *w2 = SWIGLU ? (const int8_t *)a.W[1] + (size_t)r * k : w;
#pragma unroll
		for (int u = 0; u < PRE; u++) {
			int t = lane + 32 * u;
			if (t < nv) {
				p[u] = ld_stream(w + 16 * t);
				if (SWIGLU)
					p2[u] = ld_stream(w2 + 16 * t);
			}
		}
	};
	/* weights never depend on the previous kernel: start streaming them before the wait */
	uint4 pw[PRE], pw2[PRE];
	fetch(row, pw, pw2);
	kc_pdl_wait();
	/* stage x into shared memory: x * norm weights when an RMSNorm is fused (the 1 / rms factor
	 * is applied to the finished dot products), loads issued 4 at a time per thread */
	float ss = 0.f, inv = 1.f;
	for (int f0 = threadIdx.x; f0 < k4; f0 += 4 * blockDim.x) {
		float4 v[4], nw[4];
#pragma unroll
		for (int u = 0; u < 4; u++) {
			int f = f0 + u * blockDim.x;
			if (f < k4) {
				v[u] = __ldg((const float4 *)x + f);
				if (a.norm)
					nw[u] = __ldg((const float4 *)a.norm + f);
			}
		}
#pragma unroll
		for (int u = 0; u < 4; u++) {
			int f = f0 + u * blockDim.x;
			if (f < k4) {
				float4 t = v[u];
				ss += t.x * t.x + t.y * t.y + t.z * t.z + t.w * t.w;
				if (a.norm) {
					t.x *= nw[u].x;
					t.y *= nw[u].y;
					t.z *= nw[u].z;
					t.w *= nw[u].w;
				}
				xs[i8s_slot(f >> 2, f & 3)] = t;
			}
		}
	}
	if (a.norm) {
		__shared__ float red[I8S_MAX_WARPS];
		ss = kc_warp_sum(ss);
		if (lane == 0)
			red[threadIdx.x >> 5] = ss;
		__syncthreads();
		float t = 0.f;
		for (int wi = 0; wi < nwarp; wi++)
			t += red[wi];
		inv = rsqrtf(t / (float)k + a.eps);
	}
	__syncthreads();
	/* LOOP: each warp takes rows row, row + stride, ... (whole rows fit in PRE vectors) and
	 * fetches the next row's weights before it works on the current one */
	for (; row < total; row += stride) {
		uint4 nx[PRE], nx2[PRE];
		if (LOOP)
			fetch(row + stride, nx, nx2);
		int mi, r;
		const int8_t *w = wrow(row, mi, r);
		const int8_t *w2 = SWIGLU ? (const int8_t *)a.W[1] + (size_t)r * k : w;
		const int n = mi == 0 ? a.rows[0] : mi == 1 ? a.rows[1] : a.rows[2];
		const float *Sm = mi == 0 ? a.S[0] : mi == 1 ? a.S[1] : a.S[2];
		float *Ym = mi == 0 ? a.Y[0] : mi == 1 ? a.Y[1] : a.Y[2];
		(void)n;
		const bool blk = a.qblock > 0;   /* 32-element blocks: vector t uses scale t / 2 */
		const float *bs = blk ? Sm + (size_t)r * (k >> 5) : NULL;
		const float *bs2 = (blk && SWIGLU) ? a.S[1] + (size_t)r * (k >> 5) : NULL;
		float acc = 0.f, acc2 = 0.f;
		auto step = [&](int t, uint4 raw, uint4 raw2) {
			float f[16], f2[16];
			i8_widen(raw, f);
			if (SWIGLU)
				i8_widen(raw2, f2);
			const float4 *xp = xs + i8s_slot(t, 0);
			float s = 0.f, s2 = 0.f;
#pragma unroll
			for (int q = 0; q < 4; q++) {
				float4 xv = xp[32 * q];
				s += f[4 * q] * xv.x + f[4 * q + 1] * xv.y + f[4 * q + 2] * xv.z +
				     f[4 * q + 3] * xv.w;
				if (SWIGLU)
					s2 += f2[4 * q] * xv.x + f2[4 * q + 1] * xv.y + f2[4 * q + 2] * xv.z +
					      f2[4 * q + 3] * xv.w;
			}
			acc += blk ? s * bs[t >> 1] : s;
			if (SWIGLU)
				acc2 += blk ? s2 * bs2[t >> 1] : s2;
		};
#pragma unroll
		for (int u = 0; u < PRE; u++) {
			int t = lane + 32 * u;
			if (t < nv)
				step(t, pw[u], SWIGLU ? pw2[u] : pw[u]);
		}
		if (!LOOP) {
#pragma unroll 4
			for (int t = lane + 32 * PRE; t < nv; t += 32)
				step(t, ld_stream(w + 16 * t),
				     SWIGLU ? ld_stream(w2 + 16 * t) : make_uint4(0, 0, 0, 0));
		}
		float rs = ((Sm && !blk) ? Sm[r] : 1.f) * inv;
		float rs2 = ((SWIGLU && a.S[1] && !blk) ? a.S[1][r] : 1.f) * inv;
		float sv = kc_warp_sum(acc) * rs;
		float sv2 = SWIGLU ? kc_warp_sum(acc2) * rs2 : 0.f;
		if (lane == 0) {
			float *yp = Ym + r;
			if (SWIGLU)
				*yp = sv / (1.f + expf(-sv)) * sv2;
			else if (a.acc)
				*yp += sv;
			else
				*yp = kc_act(sv + (a.bias ? a.bias[r] : 0.f), a.act);
		}
		if (LOOP) {
#pragma unroll
			for (int u = 0; u < PRE; u++) {
				pw[u] = nx[u];
				if (SWIGLU)
					pw2[u] = nx2[u];
			}
		} else {
			break;
		}
	}
}

/* kc_gemv_fuses_i8_norm: whether the int8 GEMV of m rows applies a fused RMSNorm itself at
 * no extra cost (the staged kernel, m == 1); otherwise callers normalize into scratch first. */
extern "C" int kc_gemv_fuses_i8_norm(int64_t m)
{
	return m == 1;
}

static int i8s_nsm(int dev)
{
	static int cache[64];
	if (dev < 0 || dev >= 64)
		return 132;
	if (!cache[dev]) {
		int v = 0;
		if (cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || v <= 0)
			v = 132;
		cache[dev] = v;
	}
	return cache[dev];
}

/* i8s_go launches one gemv_i8s_k instance; with LOOP, at most one wave of blocks (each warp
 * loops over rows with the next row's weights in flight). */
template <bool SWIGLU, int PRE, bool LOOP>
static cudaError_t i8s_go(kc *c, const float *x, const gemv_args &a, int total, int warps,
			  size_t smem)
{
	void (*kern)(const float *, gemv_args) = gemv_i8s_k<SWIGLU, PRE, LOOP>;
	unsigned g = kc_blocks(total, warps);
	if (LOOP) {
		int nb = 0;
		cudaError_t e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&nb, kern, warps * 32, smem);
		if (e != cudaSuccess)
			return e;
		unsigned cap = (unsigned)(nb > 0 ? nb : 1) * (unsigned)i8s_nsm(c->dev);
		if (g > cap)
			g = cap;
	}
	return kc_launch_smem(c, kern, dim3(g), dim3(warps * 32), smem, x, a);
}

/* launch_i8s: the staged-x int8 kernel for m == 1, or -EAGAIN when it cannot take the call
 * (then the one-warp-per-row kernel runs): k a multiple of 16 and at most 12288 (the staged x
 * fits 48 KiB), 16-byte aligned operands, per-row or 32-element block scales. */
template <bool SWIGLU>
static int launch_i8s(kc *c, const float *x, int m, const gemv_args &a, int total)
{
	int nv = a.k / 16;
	size_t smem = (size_t)(nv + 31) / 32 * 2048;   /* whole 32-vector chunks of slots */
	if (m != 1 || a.k % 16 || smem > 48 * 1024 || (a.qblock && a.qblock != 32) ||
	    ((uintptr_t)x % 16) || (a.norm && ((uintptr_t)a.norm % 16)))
		return -EAGAIN;
	for (int i = 0; i < (SWIGLU ? 2 : a.nm); i++)
		if ((uintptr_t)a.W[i] % 16)
			return -EAGAIN;
	/* at least 8 warps a block, up to 16 for tall matrices (fewer blocks staging x) */
	int warps = 8, nsm = i8s_nsm(c->dev);
	while (warps < I8S_MAX_WARPS && total / (warps * 2) >= 4 * nsm)
		warps *= 2;
	cudaError_t e;
	if (nv <= 4 * 32)
		e = i8s_go<SWIGLU, 4, true>(c, x, a, total, warps, smem);
	else if (nv <= 8 * 32 || SWIGLU)
		e = i8s_go<SWIGLU, 8, false>(c, x, a, total, warps, smem);
	else
		e = i8s_go<SWIGLU, SWIGLU ? 8 : 12, false>(c, x, a, total, warps, smem);
	KC_CHECK(e);
	return 0;
}

/* Fallback for shapes the vector path cannot take (k not a multiple of the vector width). */
template <typename T>
__global__ void gemv_scalar_k(const T *__restrict__ W, const float *__restrict__ x, int m, int n,
			      int k, const float *__restrict__ scales, int qblock,
			      const float *__restrict__ bias, int act, float *__restrict__ y)
{
	int row = blockIdx.x * GEMV_WARPS + (threadIdx.x >> 5), lane = threadIdx.x & 31;
	kc_pdl_trigger();
	kc_pdl_wait();
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

template <typename T, bool SWIGLU>
static int launch(kc *c, const float *x, int m, const gemv_args &a, const kern_mat *w0)
{
	const int V = vec<T>::V;
	int total = a.rows[0] + (SWIGLU ? 0 : (a.nm > 1 ? a.rows[1] : 0) + (a.nm > 2 ? a.rows[2] : 0));
	if (w0->dt == KERN_I8) {
		int rc = launch_i8s<SWIGLU>(c, x, m, a, total);
		if (rc != -EAGAIN)
			return rc;
	}
	unsigned g = kc_blocks(total, GEMV_WARPS);
	bool vecok = a.k % V == 0 && ((uintptr_t)x % 16) == 0;
	for (int i = 0; i < (SWIGLU ? 2 : a.nm); i++)
		vecok = vecok && ((uintptr_t)a.W[i] % 16) == 0;
	vecok = vecok && (!a.norm || ((uintptr_t)a.norm % 16) == 0);
	if (!vecok) {
		if (SWIGLU || a.nm > 1 || a.acc || a.norm)
			return -EAGAIN;   /* the caller composes it from single products */
		const float *sc = w0->dt == KERN_I8 ? w0->scales : NULL;
		KC_LAUNCH(c, gemv_scalar_k<T>, dim3(g), dim3(GEMV_WARPS * 32), (const T *)a.W[0], x, m,
			  a.rows[0], a.k, sc, a.qblock, a.bias, a.act, a.Y[0]);
		return 0;
	}
	cudaError_t e;
	/* one input row (batch-1 decode): blocks of 8 warps (half as many blocks each reducing the
	 * fused RMSNorm over x as with 4) */
	if (m == 1) {
		e = kc_launch(c, gemv_k<T, 1, SWIGLU, 8>, dim3(kc_blocks(total, 8)), dim3(256), x, a);
		KC_CHECK(e);
		return 0;
	}
#define GV(MM) case MM: e = kc_launch(c, gemv_k<T, MM, SWIGLU>, dim3(g), dim3(GEMV_WARPS * 32), x, a); break
	switch (m) {
	GV(2); GV(3); GV(4); GV(5); GV(6); GV(7); GV(8);
	default: return -EINVAL;
	}
#undef GV
	KC_CHECK(e);
	return 0;
}

template <bool SWIGLU>
static int dispatch(kc *c, const float *x, int m, const gemv_args &a, const kern_mat *w0)
{
	switch (w0->dt) {
	case KERN_F32: return launch<float, SWIGLU>(c, x, m, a, w0);
	case KERN_BF16: return launch<__nv_bfloat16, SWIGLU>(c, x, m, a, w0);
	case KERN_F16: return launch<__half, SWIGLU>(c, x, m, a, w0);
	case KERN_I8: return launch<int8_t, SWIGLU>(c, x, m, a, w0);
	default: return -EINVAL;
	}
}

/* kc_gemv_ex: y[i] (+)= x . W[i]^T for nw matrices (or swiglu into y[0]); m rows in chunks of
 * 8 (each chunk re-reads the weights). acc: add into y instead of storing (nw == 1). Returns
 * -EAGAIN when the fused form cannot take these pointers (caller composes). */
extern "C" int kc_gemv_ex(kc *c, const float *x, int64_t m, int nw, const kern_mat *w,
			  float *const *y, const float *bias, kern_act act, int acc, int swiglu,
			  const kern_norm *norm)
{
	for (int i = 0; i < nw; i++)
		if (w[i].n > INT32_MAX || w[i].k > INT32_MAX)
			return -ENOTSUP;
	for (int64_t i0 = 0; i0 < m; i0 += 8) {
		int mm = (int)(m - i0 < 8 ? m - i0 : 8);
		gemv_args a;
		memset(&a, 0, sizeof a);
		a.nm = nw;
		a.k = (int)w[0].k;
		a.qblock = w[0].qblock;
		a.act = (int)act;
		a.acc = acc;
		a.bias = bias;
		a.norm = norm ? norm->w : NULL;
		a.eps = norm ? norm->eps : 0.f;
		for (int i = 0; i < nw; i++) {
			a.W[i] = w[i].data;
			a.S[i] = w[i].dt == KERN_I8 ? w[i].scales : NULL;
			a.Y[i] = y[i] + i0 * w[i].n;
			a.rows[i] = (int)w[i].n;
		}
		int rc = swiglu ? dispatch<true>(c, x + i0 * w[0].k, mm, a, &w[0])
				: dispatch<false>(c, x + i0 * w[0].k, mm, a, &w[0]);
		if (rc)
			return rc;
	}
	return 0;
}

extern "C" int kc_gemv(kc *c, const float *x, int64_t m, const kern_mat *w, const float *bias,
		       kern_act act, float *y)
{
	float *ys[1] = {y};
	return kc_gemv_ex(c, x, m, 1, w, ys, bias, act, 0, 0, NULL);
}

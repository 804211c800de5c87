/* kc_sample.cu — op kern_sample: seeded temperature / top-k / top-p sampling, one block of
 * 1024 threads per row. Same rule as kernels/cpu/kcpu_sample.c: p = exp((x - max) / temp);
 * the top-k and top-p thresholds are found exactly by bisection over float bit patterns
 * (non-negative floats order like their bits); the token is the first kept index whose
 * running mass exceeds u * (kept mass). */
#include "kernels/cuda/kc_int.h"

#define SAMPLE_THREADS 1024

__device__ __forceinline__ float bits_f(unsigned u) { return __uint_as_float(u); }

__global__ void sample_k(const float *__restrict__ x, int64_t n, float temp, int top_k,
			 float top_p, const float *__restrict__ u, int32_t *out, float *lp)
{
	__shared__ float sh[32];
	__shared__ float pre[SAMPLE_THREADS];
	__shared__ int found;
	const float *r = x + (int64_t)blockIdx.x * n;
	float mx = -INFINITY;
	for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
		mx = fmaxf(mx, r[j]);
	mx = kc_block_max(mx, sh);
#define P(j) expf((r[j] - mx) / temp)
	float z = 0.f;
	for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
		z += P(j);
	z = kc_block_sum(z, sh);
	float tk = 0.f;
	if (top_k > 0 && top_k < n) {
		unsigned lo = 0, hi = 0x3f800001u;
		while (hi - lo > 1) {
			unsigned mid = lo + (hi - lo) / 2;
			float t = bits_f(mid), cnt = 0.f;
			for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
				cnt += P(j) >= t ? 1.f : 0.f;
			cnt = kc_block_sum(cnt, sh);
			if (cnt >= (float)top_k)
				lo = mid;
			else
				hi = mid;
		}
		tk = bits_f(lo);
	}
	float th = tk;
	if (top_p < 1.0f) {
		float s = 0.f;
		for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
			float p = P(j);
			s += p >= tk ? p : 0.f;
		}
		s = kc_block_sum(s, sh);
		float target = top_p * s;
		unsigned lo = __float_as_uint(tk), hi = 0x3f800001u;
		while (hi - lo > 1) {
			unsigned mid = lo + (hi - lo) / 2;
			float t = bits_f(mid), ms = 0.f;
			for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
				float p = P(j);
				ms += p >= t ? p : 0.f;
			}
			ms = kc_block_sum(ms, sh);
			if (ms >= target)
				lo = mid;
			else
				hi = mid;
		}
		th = bits_f(lo);
	}
	/* contiguous chunk per thread, exclusive prefix over chunk sums, then one thread scans */
	int64_t chunk = (n + blockDim.x - 1) / blockDim.x;
	int64_t a = threadIdx.x * chunk, e = a + chunk < n ? a + chunk : n;
	float cs = 0.f;
	int last = -1;
	for (int64_t j = a; j < e; j++) {
		float p = P(j);
		if (p >= th) {
			cs += p;
			last = (int)j;
		}
	}
	pre[threadIdx.x] = cs;
	if (threadIdx.x == 0)
		found = -1;
	__syncthreads();
	__shared__ float total;
	__shared__ int lastkept;
	if (threadIdx.x == 0) {
		float c = 0.f;
		for (int t = 0; t < (int)blockDim.x; t++) {
			float v = pre[t];
			pre[t] = c;
			c += v;
		}
		total = c;
		lastkept = 0;
	}
	__syncthreads();
	if (last >= 0)
		atomicMax(&lastkept, last);
	float target = u[blockIdx.x] * total;
	if (cs > 0.f && pre[threadIdx.x] <= target && pre[threadIdx.x] + cs > target) {
		float c = pre[threadIdx.x];
		for (int64_t j = a; j < e; j++) {
			float p = P(j);
			if (p >= th) {
				c += p;
				if (c > target) {
					atomicCAS(&found, -1, (int)j);
					break;
				}
			}
		}
	}
	__syncthreads();
	if (threadIdx.x == 0) {
		int tok = found >= 0 ? found : lastkept;
		out[blockIdx.x] = tok;
		if (lp)
			lp[blockIdx.x] = (r[tok] - mx) / temp - logf(z);
	}
#undef P
}

extern "C" int kc_sample(void *b, const float *x, int64_t m, int64_t n, float temp, int top_k,
			 float top_p, const float *u, int32_t *out, float *lp)
{
	kc *c = (kc *)b;
	KC_ENTER(c);
	sample_k<<<(unsigned)m, SAMPLE_THREADS, 0, c->s>>>(x, n, temp, top_k, top_p, u, out, lp);
	KC_LAUNCHED();
	return 0;
}

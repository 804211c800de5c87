/* kcpu_sample.c — CPU token selection: argmax (+ log-probability) and seeded top-k / top-p
 * sampling. The sampling rule is defined in kern.h and implemented the same way here and in
 * kernels/cuda/kc_sample.cu (thresholds found by bisection over float bit patterns, which for
 * non-negative floats order like integers), so one u gives one token on both backends. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "kernels/cpu/kcpu_int.h"

int kcpu_argmax(void *b, const float *x, int64_t m, int64_t n, int32_t *out, float *lp)
{
	for (int64_t i = 0; i < m; i++) {
		const float *r = x + i * n;
		int64_t best = 0;
		for (int64_t j = 1; j < n; j++)
			if (r[j] > r[best])
				best = j;
		out[i] = (int32_t)best;
		if (lp) {
			double s = 0;
			for (int64_t j = 0; j < n; j++)
				s += exp((double)r[j] - r[best]);
			lp[i] = (float)(-log(s));
		}
	}
	return 0;
}

int kcpu_argmax_feed(void *b, const float *x, int64_t n, int32_t *step, int32_t *hist,
		     float *lphist, int64_t cap)
{
	int32_t tok;
	float lp;
	kcpu_argmax(b, x, 1, n, &tok, &lp);
	int64_t p = (int64_t)step[1] + 1;
	step[0] = tok;
	step[1] = (int32_t)p;
	if (p >= 0 && p < cap) {
		hist[p] = tok;
		if (lphist)
			lphist[p] = lp;
	}
	return 0;
}

static float bits_f(uint32_t u)
{
	float f;
	memcpy(&f, &u, 4);
	return f;
}

int kcpu_sample(void *b, const float *x, int64_t m, int64_t n, float temp, int top_k,
		float top_p, const float *u, int32_t *out, float *lp)
{
	float *p = malloc((size_t)n * 4);
	if (!p)
		return -ENOMEM;
	for (int64_t i = 0; i < m; i++) {
		const float *r = x + i * n;
		float mx = r[0];
		for (int64_t j = 1; j < n; j++)
			mx = r[j] > mx ? r[j] : mx;
		float z = 0;
		for (int64_t j = 0; j < n; j++) {
			p[j] = expf((r[j] - mx) / temp);
			z += p[j];
		}
		float tk = 0;
		if (top_k > 0 && top_k < n) {   /* tk = the top_k-th largest p, exactly */
			uint32_t lo = 0, hi = 0x3f800001u;
			while (hi - lo > 1) {
				uint32_t mid = lo + (hi - lo) / 2;
				float t = bits_f(mid);
				int64_t cnt = 0;
				for (int64_t j = 0; j < n; j++)
					cnt += p[j] >= t;
				if (cnt >= top_k)
					lo = mid;
				else
					hi = mid;
			}
			tk = bits_f(lo);
		}
		float s = 0;
		for (int64_t j = 0; j < n; j++)
			s += p[j] >= tk ? p[j] : 0.0f;
		float th = tk;
		if (top_p < 1.0f) {   /* largest t whose kept mass reaches top_p * s */
			float target = top_p * s;
			uint32_t lo, hi = 0x3f800001u;
			memcpy(&lo, &tk, 4);
			while (hi - lo > 1) {
				uint32_t mid = lo + (hi - lo) / 2;
				float t = bits_f(mid), ms = 0;
				for (int64_t j = 0; j < n; j++)
					ms += p[j] >= t ? p[j] : 0.0f;
				if (ms >= target)
					lo = mid;
				else
					hi = mid;
			}
			th = bits_f(lo);
		}
		float s2 = 0;
		int64_t last = 0;
		for (int64_t j = 0; j < n; j++)
			if (p[j] >= th) {
				s2 += p[j];
				last = j;
			}
		float target = u[i] * s2, c = 0;
		int64_t tok = last;
		for (int64_t j = 0; j < n; j++)
			if (p[j] >= th) {
				c += p[j];
				if (c > target) {
					tok = j;
					break;
				}
			}
		out[i] = (int32_t)tok;
		if (lp)
			lp[i] = (r[tok] - mx) / temp - logf(z);
	}
	free(p);
	return 0;
}

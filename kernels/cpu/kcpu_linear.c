/* kcpu_linear.c — CPU matrix product y = x . W^T (+ bias, act) for F32/F16/BF16/I8 weights:
 * each thread takes a range of output features, widens one weight row at a time to F32 (int8
 * rows dequantized with their scales) and dots it with every input row, four rows at a time,
 * so a batch of rows costs one pass over the weights. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "kernels/cpu/kcpu_int.h"

/* x86-64: an AVX2 clone besides the baseline one, picked at load time (the same sums in the
 * same order: ISO C mode contracts nothing into FMAs, so both give the same bits) */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("avx2", "default")))
#endif
float kcpu_dot(const float *a, const float *b, int64_t n)
{
	float s[8] = {0};
	int64_t i = 0;
	for (; i + 8 <= n; i += 8)
		for (int j = 0; j < 8; j++)
			s[j] += a[i + j] * b[i + j];
	float t = ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
	for (; i < n; i++)
		t += a[i] * b[i];
	return t;
}

/* dot4: kcpu_dot of four rows a, a + lda, a + 2 lda, a + 3 lda with b, into t[0..3]: the
 * same partial sums in the same order as kcpu_dot (the same bits), each load of b used four
 * times */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("avx2", "default")))
#endif
static void dot4(const float *a, int64_t lda, const float *b, int64_t n, float *t)
{
	float s0[8] = {0}, s1[8] = {0}, s2[8] = {0}, s3[8] = {0};
	const float *a0 = a, *a1 = a + lda, *a2 = a + 2 * lda, *a3 = a + 3 * lda;
	int64_t i = 0;
	for (; i + 8 <= n; i += 8)
		for (int j = 0; j < 8; j++) {
			float w = b[i + j];
			s0[j] += a0[i + j] * w;
			s1[j] += a1[i + j] * w;
			s2[j] += a2[i + j] * w;
			s3[j] += a3[i + j] * w;
		}
	float *s[4] = {s0, s1, s2, s3};
	const float *r[4] = {a0, a1, a2, a3};
	for (int q = 0; q < 4; q++) {
		const float *v = s[q];
		float u = ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
		for (int64_t l = i; l < n; l++)
			u += r[q][l] * b[l];
		t[q] = u;
	}
}

void kcpu_row_f32(const kern_mat *w, int64_t row, float *out)
{
	int64_t k = w->k;
	switch (w->dt) {
	case KERN_F32:
		memcpy(out, (const float *)w->data + row * k, (size_t)k * 4);
		break;
	case KERN_BF16: {   /* kern_bf16_to_f32, inlined so that the loop vectorizes */
		const uint16_t *s = (const uint16_t *)w->data + row * k;
		for (int64_t j = 0; j < k; j++) {
			uint32_t u = (uint32_t)s[j] << 16;
			memcpy(out + j, &u, 4);
		}
		break;
	}
	case KERN_F16: {
		const uint16_t *s = (const uint16_t *)w->data + row * k;
		for (int64_t j = 0; j < k; j++)
			out[j] = kern_f16_to_f32(s[j]);
		break;
	}
	case KERN_I8: {
		const int8_t *s = (const int8_t *)w->data + row * k;
		if (w->qblock == 0) {
			float sc = w->scales[row];
			for (int64_t j = 0; j < k; j++)
				out[j] = (float)s[j] * sc;
		} else {
			const float *sc = w->scales + row * (k / w->qblock);
			for (int64_t b = 0; b < k; b += w->qblock)
				for (int64_t j = b; j < b + w->qblock; j++)
					out[j] = (float)s[j] * sc[b / w->qblock];
		}
		break;
	}
	default:
		memset(out, 0, (size_t)k * 4);
	}
}

typedef struct lin_ctx {
	const float *x;
	int64_t m;
	const kern_mat *w;
	const float *bias;
	kern_act act;
	float *y;
	int acc;
} lin_ctx;

static int lin_range(void *arg, int64_t lo, int64_t hi)
{
	lin_ctx *c = arg;
	int64_t k = c->w->k, n = c->w->n;
	float *row = malloc((size_t)k * 4);
	if (!row)
		return -ENOMEM;
	for (int64_t r = lo; r < hi; r++) {
		kcpu_row_f32(c->w, r, row);
		float bb = c->bias ? c->bias[r] : 0.0f;
		for (int64_t i = 0; i < c->m; i += 4) {
			float t[4];
			int nr = c->m - i < 4 ? (int)(c->m - i) : 4;
			if (nr == 4)
				dot4(c->x + i * k, k, row, k, t);
			else
				for (int q = 0; q < nr; q++)
					t[q] = kcpu_dot(c->x + (i + q) * k, row, k);
			for (int q = 0; q < nr; q++) {
				float v = kcpu_act(t[q] + bb, c->act);
				float *o = &c->y[(i + q) * n + r];
				*o = c->acc ? *o + v : v;
			}
		}
	}
	free(row);
	return 0;
}

int kcpu_linear(void *b, const float *x, int64_t m, const kern_mat *w, const float *bias,
		kern_act act, float *y)
{
	lin_ctx c = {x, m, w, bias, act, y, 0};
	return kcpu_par(b, w->n, (double)m * (double)w->n * (double)w->k, lin_range, &c);
}

int kcpu_linear_add(void *b, const float *x, int64_t m, const kern_mat *w, float *y)
{
	lin_ctx c = {x, m, w, NULL, KERN_ACT_NONE, y, 1};
	return kcpu_par(b, w->n, (double)m * (double)w->n * (double)w->k, lin_range, &c);
}

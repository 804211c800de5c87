/* kcpu_linear.c — CPU matrix product y = x . W^T (+ bias, act) for F32/F16/BF16/I8 weights:
 * each thread takes a range of output features, widens one weight row at a time to F32 (int8
 * rows dequantized with their scales) and dots it with every input row, so a batch of rows
 * costs one pass over the weights. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "kernels/cpu/kcpu_int.h"

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
		for (int64_t i = 0; i < c->m; i++) {
			float v = kcpu_act(kcpu_dot(c->x + i * k, row, k) + bb, c->act);
			c->y[i * n + r] = c->acc ? c->y[i * n + r] + v : v;
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

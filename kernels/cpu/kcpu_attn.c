/* kcpu_attn.c — CPU causal attention over a KV cache (prefill and decode, grouped-query
 * heads): one task per (row, head), scores in F32, max-subtracted softmax. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "kernels/cpu/kcpu_int.h"

typedef struct attn_ctx {
	const float *q, *kc, *vc;
	const int32_t *pos;
	int64_t heads, kvheads, hd, cap;
	float scale;
	float *out;
} attn_ctx;

static int attn_range(void *arg, int64_t lo, int64_t hi)
{
	attn_ctx *c = arg;
	int64_t kvdim = c->kvheads * c->hd, group = c->heads / c->kvheads;
	float *sc = malloc((size_t)c->cap * 4);
	if (!sc)
		return -ENOMEM;
	for (int64_t t = lo; t < hi; t++) {
		int64_t i = t / c->heads, h = t % c->heads, kvh = h / group;
		int64_t T = (int64_t)c->pos[i] + 1;
		const float *q = c->q + (i * c->heads + h) * c->hd;
		float *o = c->out + (i * c->heads + h) * c->hd;
		if (T < 1 || T > c->cap) {
			free(sc);
			return -EINVAL;
		}
		float mx = -INFINITY, s = 0;
		for (int64_t j = 0; j < T; j++) {
			sc[j] = kcpu_dot(q, c->kc + j * kvdim + kvh * c->hd, c->hd) * c->scale;
			mx = sc[j] > mx ? sc[j] : mx;
		}
		for (int64_t j = 0; j < T; j++) {
			sc[j] = expf(sc[j] - mx);
			s += sc[j];
		}
		memset(o, 0, (size_t)c->hd * 4);
		for (int64_t j = 0; j < T; j++) {
			const float *v = c->vc + j * kvdim + kvh * c->hd;
			float p = sc[j] / s;
			for (int64_t d = 0; d < c->hd; d++)
				o[d] += p * v[d];
		}
	}
	free(sc);
	return 0;
}

int kcpu_attention(void *b, const float *q, const float *kc, const float *vc, const int32_t *pos,
		   int64_t m, int64_t heads, int64_t kvheads, int64_t hd, int64_t cap, float scale,
		   float *out)
{
	attn_ctx c = {q, kc, vc, pos, heads, kvheads, hd, cap, scale, out};
	double work = (double)m * heads * hd * 2.0 * (double)(pos[m - 1] + 1);
	return kcpu_par(b, m * heads, work, attn_range, &c);
}

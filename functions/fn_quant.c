/* fn_quant.c — int8 weight-only quantization: symmetric absmax per row or per 32-block. */
#include <errno.h>
#include <math.h>
#include <string.h>
#include "functions/fn_quant.h"
#include "kernels/kern.h"

static int ends_with(const char *s, const char *suf)
{
	size_t a = strlen(s), b = strlen(suf);
	return a >= b && strcmp(s + a - b, suf) == 0;
}

int fn_quant_eligible(const char *name, const char *dtype, int ndim, const int64_t *shape,
		      int block)
{
	if (ndim != 2 || !ends_with(name, ".weight") || strstr(name, "embed") || strstr(name, "norm") ||
	    strstr(name, "wte") || strstr(name, "wpe"))
		return 0;
	if (strcmp(dtype, "F32") && strcmp(dtype, "F16") && strcmp(dtype, "BF16"))
		return 0;
	if (shape[0] < 1 || shape[1] < 1 || (block == 32 && shape[1] % 32))
		return 0;
	return block == 0 || block == 32;
}

int64_t fn_quant_scale_count(int64_t n, int64_t k, int block)
{
	return block ? n * (k / block) : n;
}

static float elem(int dt, const void *src, int64_t i)
{
	if (dt == 0)
		return ((const float *)src)[i];
	if (dt == 1)
		return kern_f16_to_f32(((const uint16_t *)src)[i]);
	return kern_bf16_to_f32(((const uint16_t *)src)[i]);
}

int fn_quant_int8(const char *dtype, const void *src, int64_t n, int64_t k, int block, int8_t *q,
		  float *scales)
{
	int dt = strcmp(dtype, "F32") == 0 ? 0 : strcmp(dtype, "F16") == 0 ? 1 :
		 strcmp(dtype, "BF16") == 0 ? 2 : -1;
	if (dt < 0 || n < 1 || k < 1 || (block != 0 && block != 32) || (block && k % block))
		return -EINVAL;
	int64_t bs = block ? block : k;
	for (int64_t r = 0; r < n; r++)
		for (int64_t b0 = 0; b0 < k; b0 += bs) {
			float amax = 0;
			for (int64_t j = b0; j < b0 + bs; j++) {
				float v = fabsf(elem(dt, src, r * k + j));
				amax = v > amax ? v : amax;
			}
			float sc = amax / 127.0f, inv = amax > 0 ? 127.0f / amax : 0;
			for (int64_t j = b0; j < b0 + bs; j++) {
				float v = rintf(elem(dt, src, r * k + j) * inv);
				q[r * k + j] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
			}
			scales[block ? r * (k / block) + b0 / block : r] = sc;
		}
	return 0;
}

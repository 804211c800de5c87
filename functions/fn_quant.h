/* fn_quant.h — int8 weight-only quantization (the math behind `thaw snapshot pack --quantize
 * int8`): symmetric absmax scales per output row (block 0) or per 32-element block of a row.
 * W[i][j] ~= q[i][j] * scale, q in [-127, 127]. A quantized tensor NAME becomes I8 NAME plus
 * F32 NAME_scale of shape [n] or [n, k/32]; the kinds (functions/) read that pair. */
#ifndef THAW_FN_QUANT_H
#define THAW_FN_QUANT_H
#include <stddef.h>
#include <stdint.h>

#define FN_QUANT_SCALE_SUFFIX "_scale"

/* fn_quant_eligible says whether a tensor should be quantized: a 2-D float matrix named
 * *.weight that is not an embedding or a norm (those, and biases, keep their dtype), with
 * k % block == 0 when block is 32. */
int fn_quant_eligible(const char *name, const char *dtype, int ndim, const int64_t *shape,
		      int block);
/* fn_quant_scale_count is how many scales an [n, k] matrix gets (n, or n * k / 32). */
int64_t fn_quant_scale_count(int64_t n, int64_t k, int block);
/* fn_quant_int8 quantizes src [n, k] of dtype "F32", "F16" or "BF16" into q (n*k bytes) and
 * scales (fn_quant_scale_count floats). block is 0 or 32. Returns 0 or -EINVAL. An all-zero
 * row/block gets scale 0 (and q = 0). */
int fn_quant_int8(const char *dtype, const void *src, int64_t n, int64_t k, int block, int8_t *q,
		  float *scales);
#endif

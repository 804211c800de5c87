/* rt_quant.h — `thaw snapshot pack --quantize int8[:32]`: the pack transform hook that turns
 * each eligible weight matrix into NAME (I8) + NAME_scale (F32) with functions/fn_quant.c's
 * math, and records {"quantization": {...}} in the snapshot metadata. */
#ifndef THAW_RT_QUANT_H
#define THAW_RT_QUANT_H
#include <stddef.h>
#include "snapshot/snap_pack.h"

typedef struct rt_quant {
	int block;                 /* 0: one scale per output row; 32: per 32-element block */
	int n_quantized;
	int meta_set;
} rt_quant;

/* rt_quant_parse reads "int8" (per-row scales) or "int8:32" (32-element blocks). 0 or -EINVAL. */
int rt_quant_parse(const char *spec, rt_quant *q);
/* rt_quant_hook is a snap_pack_transform_fn; user is an rt_quant. */
int rt_quant_hook(void *user, const snap_src_tensor *in, snap_pack_ctx *out, char *err,
		  size_t errlen);
#endif

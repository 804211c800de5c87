/* fn_kinds.h — inside functions/: the built-in kinds that fn_registry.c lists, and helpers
 * the kinds share (weight tables -> kern matrices, JSON readers). */
#ifndef THAW_FN_KINDS_H
#define THAW_FN_KINDS_H
#include "functions/fn.h"
#include "pool/pool_base.h"

extern const fn_kind fn_echo_kind;
extern const fn_kind fn_mlp_kind;
extern const fn_kind fn_llama_kind;

/* fn_mat_from_weight fills m from weight `name` (2-D, F32/F16/BF16, or I8 with a sibling
 * "<name>_scale" F32 tensor of shape [n] / [n, 1] (per row) or [n, k/32] (32-blocks)). If
 * scale tensors are not F32 they are widened into *owned (device memory, caller frees with
 * kern_free; NULL when nothing was allocated). Returns 0 or fills err (422). */
int fn_mat_from_weight(kern_dev *dev, const fn_weight *w, size_t nw, const char *name,
		       kern_mat *m, void **owned, fn_error *err);
/* fn_vec_f32 returns a new F32 device copy of a 1-D weight of length n (any float dtype),
 * or NULL with err filled. Free with kern_free. */
float *fn_vec_f32(kern_dev *dev, const fn_weight *w, size_t nw, const char *name, int64_t n,
		  fn_error *err);
/* fn_errf(err, errlen, rc, fmt, ...) formats a message into err (when err and errlen are set)
 * and returns rc: the errno-style return with a message of the job kinds (finetune, quantize).
 * It is the one formatter every part shares, pool_errf (pool/pool_base.h). */
#define fn_errf pool_errf
/* fn_meta_config returns meta.config when it is an object, else meta itself. */
const json_t *fn_meta_config(const json_t *meta);
/* fn_json_int reads an integer member (default def when absent); -1 on wrong type. */
int fn_json_int(const json_t *o, const char *key, long long def, long long *out);
#endif

/* fn_qjob.h — the `quantize` job kind: a float model (fn_weight table on the host) -> int8
 * weight-only (fn_quant.h's format: NAME as I8 + NAME_scale as F32), in small units a job runner
 * calls one at a time, then a quality report against the source computed by running both
 * models through their kind on a private CPU device:
 *   mlp    with evaluation data: "accuracy" of the quantized model, "source_accuracy", and
 *          "agreement" (share of rows whose top-1 label is the same);
 *   llama  on fixed prompts: "agreement" (greedy top-1 agreement: the quantized model, fed the
 *          source's 16-token greedy continuation, picks the same token at each position) and
 *          "kl" (mean KL divergence source || quantized of the next-token distribution after
 *          each prompt);
 * plus "quantized_tensors", "source_bytes", "result_bytes" for every kind. A llama over 100 M
 * parameters is not evaluated (one prompt would hold the lane for seconds on the CPU device):
 * "eval": "skipped: ..." instead.
 * Deterministic; not thread-safe (one thread at a time). */
#ifndef THAW_FN_QJOB_H
#define THAW_FN_QJOB_H
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "functions/fn.h"
#include "functions/fn_finetune.h"

typedef struct fn_qjob fn_qjob;

/* fn_qjob_new plans the quantization of w[0..n) (host memory, borrowed until fn_qjob_free;
 * meta: the snapshot metadata, borrowed) with block 0 (per row) or 32. eval (borrowed, may be
 * NULL) is the evaluation data for an mlp. 0, or -EINVAL with a message (nothing eligible). */
int fn_qjob_new(const fn_weight *w, size_t n, const json_t *meta, int block,
		const fn_ft_data *eval, fn_qjob **out, char *err, size_t errlen);
void fn_qjob_free(fn_qjob *q);

/* fn_qjob_unit does one unit: quantize up to 16 Ki elements, or evaluate one chunk of rows or
 * one prompt. *done once everything is finished. 0, or a negative errno with a message (a
 * model that fails to load for the evaluation). */
int fn_qjob_unit(fn_qjob *q, int *done, char *err, size_t errlen);
double fn_qjob_progress(const fn_qjob *q);
int64_t fn_qjob_steps(const fn_qjob *q);
/* fn_qjob_metrics: new object with the figures known so far (see the file comment). */
json_t *fn_qjob_metrics(const fn_qjob *q);
/* fn_qjob_result gives the quantized table (valid until fn_qjob_free) after done. */
const fn_weight *fn_qjob_result(const fn_qjob *q, size_t *n);
/* fn_qjob_meta_json is the "quantization" metadata value, e.g. {"method":"int8","block":0,...}
 * (malloc'd text). */
char *fn_qjob_meta_json(const fn_qjob *q);

#endif

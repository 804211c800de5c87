/* fn_llama.h — inside functions/: hooks into the `llama` kind for tests and benchmarks (the
 * runtime uses only the fn_kind table). */
#ifndef THAW_FN_LLAMA_H
#define THAW_FN_LLAMA_H
#include "functions/fn.h"

/* fn_llama_prefill_logits runs tokens[0..n) from position 0 and copies the last position's
 * logits (vocab floats) to host memory `logits`. Returns 0 or a negative errno (-EBUSY while
 * the state holds sequences: these hooks run on the paged cache outside the scheduler). */
int fn_llama_prefill_logits(void *state, const int32_t *tokens, int n, float *logits);
/* fn_llama_last_logits copies the logits behind the last token the latest invoke produced. */
int fn_llama_last_logits(void *state, float *logits);
/* fn_llama_forced runs the prompt, then feeds forced[0..nf-1) one decode step at a time
 * (teacher forcing) and writes the greedy choice at each of the nf positions to argmax:
 * argmax[0] follows the prompt, argmax[i] follows forced[i-1]. For agreement measurements. */
int fn_llama_forced(void *state, const int32_t *prompt, int np, const int32_t *forced, int nf,
		    int32_t *argmax);
/* fn_llama_vocab returns the vocabulary size. */
int fn_llama_vocab(void *state);
/* Timings of the call that finished last: prefill (added -> first token) and decode (the
 * rest), in seconds, and the number of decode steps; graph: whether a decode step of it
 * replayed a CUDA graph. */
void fn_llama_stats(void *state, double *prefill_s, double *decode_s, int *steps, int *graph);
#endif

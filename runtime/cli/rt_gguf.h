/* rt_gguf.h — `thaw snapshot pack model.gguf`: a llama.cpp GGUF file (general.architecture
 * "llama") as the Hugging Face LlamaForCausalLM layout the llama kind reads: llama.cpp tensor
 * names to HF names (token_embd -> model.embed_tokens, blk.N.attn_q -> model.layers.N.self_attn.
 * q_proj, ...), the inverse of the Q/K row permutation llama.cpp's converter applies, the
 * llama.* metadata as config.json, and the embedded tokenizer as tokenizer.json +
 * tokenizer_config.json (runtime/tok/rt_tok_gguf.h).
 *
 * Conversions: F32/F16/BF16 are kept as they are; Q8_0 matrices become thaw's int8 with
 * 32-element block scales (the same blocks, the same quantized values, the F16 scale widened
 * to F32: exact); Q4_0/Q4_K/Q5_K/Q6_K are decoded and rounded to BF16, or with int8 set
 * decoded to F32 and requantized to int8 with 32-element blocks (absmax, as --quantize
 * int8:32). Embeddings and norms always stay float (a quantized one is decoded to BF16 / F32);
 * a layer with an int8 gate and a float up (the llama kind runs them as one product) gets BF16
 * for both. A file lacking a tensor of the layout, or holding one the layout has no place for,
 * is refused. Conversion runs on several threads, split by rows. */
#ifndef THAW_RT_GGUF_H
#define THAW_RT_GGUF_H
#include <stddef.h>
#include <stdint.h>
#include "snapshot/snap_pack.h"

typedef struct rt_gguf_opts {
	int int8;                  /* every eligible matrix int8 with 32-element blocks */
	int threads;               /* conversion threads; 0 = online CPUs (at most 64) */
} rt_gguf_opts;

typedef struct rt_gguf rt_gguf;
struct json_t;

/* rt_gguf_import opens and converts path. On success *out owns the converted tensors (and the
 * file's mapping, which unconverted tensors point into) until rt_gguf_free. -EBADMSG /
 * -ENOTSUP / -ENOMEM / open errors with a message naming the key or tensor. */
int rt_gguf_import(const char *path, const rt_gguf_opts *o, rt_gguf **out, char *err,
		   size_t errlen);
void rt_gguf_free(rt_gguf *g);
/* rt_gguf_source is what snap_pack_from packs (valid until rt_gguf_free). */
const snap_pack_source *rt_gguf_source(const rt_gguf *g);
/* rt_gguf_vocab is the model's vocabulary: rows of its embedding (and lm_head when smaller). */
int64_t rt_gguf_vocab(const rt_gguf *g);
/* rt_gguf_config is the config.json object (borrowed). */
struct json_t *rt_gguf_config(const rt_gguf *g);
/* rt_gguf_tokenizer gives the converted tokenizer objects (borrowed) and returns 0, or returns
 * the conversion's error (-ENOENT: the file has none; -ENOTSUP: a type thaw does not convert)
 * with *why saying so. */
int rt_gguf_tokenizer(const rt_gguf *g, struct json_t **tok, struct json_t **cfg,
		      const char **why);
/* rt_gguf_quantization is the JSON text of the snapshot's "quantization" metadata when some
 * matrix became int8, else NULL. */
const char *rt_gguf_quantization(const rt_gguf *g);
/* rt_gguf_convert_s is the time the conversion took (seconds, wall). */
double rt_gguf_convert_s(const rt_gguf *g);
#endif

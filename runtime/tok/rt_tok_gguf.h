/* rt_tok_gguf.h — the tokenizer embedded in a GGUF file (tokenizer.ggml.* metadata) as the
 * Hugging Face tokenizer.json + tokenizer_config.json objects that runtime/tok loads, so a
 * snapshot imported from GGUF carries its tokenizer like one packed from a HF directory.
 *
 * Converted models: "llama" (SentencePiece BPE: tokens, scores, token types; merges derived from
 * the scores as transformers' SentencePieceExtractor does, byte fallback, the "▁" normalizer
 * and decoder of HF's LlamaConverter) and "gpt2" (byte-level BPE: tokens and merges, the split
 * pattern named by tokenizer.ggml.pre). Control and unknown tokens become special added
 * tokens, user-defined ones plain added tokens; bos/eos/unk/pad ids, add_bos/add_eos and
 * tokenizer.chat_template go to tokenizer_config.json. */
#ifndef THAW_RT_TOK_GGUF_H
#define THAW_RT_TOK_GGUF_H
#include <stddef.h>
#include "snapshot/snap_gguf.h"

struct json_t;
/* rt_tok_gguf_convert builds *tok and *cfg (new jansson objects, the caller's) from g's
 * metadata. Returns 0; -ENOENT when g has no tokenizer.ggml.model; -ENOTSUP when its model
 * or pre-tokenizer is not one thaw converts; -EBADMSG when the metadata is inconsistent
 * (array lengths, ids out of range, duplicate or non-UTF-8 tokens); -ENOMEM. err says which. */
int rt_tok_gguf_convert(const snap_gguf *g, struct json_t **tok, struct json_t **cfg, char *err,
			size_t errlen);
#endif

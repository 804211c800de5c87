/* tok_tokenizer.h — tokenizers for the `llama` kind and the OpenAI-style endpoints: loads a Hugging
 * Face `tokenizer.json` (model type BPE: byte-level BPE as in GPT-2 / LLaMA-3, and the
 * SentencePiece-style BPE with byte fallback of LLaMA-2 / Mistral / TinyLlama), encodes and
 * decodes like the `tokenizers` Python package, decodes incrementally for streaming, and renders
 * chat prompts with tokenizer_config.json's own chat_template (a Jinja2 template, interpreted by
 * tok_jinja.h as transformers' apply_chat_template renders it). A loaded tokenizer is immutable:
 * every const function may be called from several threads at once. */
#ifndef THAW_TOK_H
#define THAW_TOK_H
#include <stddef.h>
#include <stdint.h>

typedef struct tok_tokenizer tok_tokenizer;

/* tok_load parses a HF tokenizer.json (tok_json, tok_len bytes, not NUL-terminated
 * necessarily) and optionally tokenizer_config.json (cfg_json may be NULL). On success *out owns
 * the tokenizer (free with tok_free). Returns 0, -EINVAL for malformed JSON or fields (err
 * names what is wrong), -ENOTSUP for a model/normalizer/pre-tokenizer type it does not handle,
 * -ENOMEM. err may be NULL. */
int tok_load(tok_tokenizer **out, const char *tok_json, size_t tok_len, const char *cfg_json,
		size_t cfg_len, char *err, size_t errlen);
/* tok_load_json is tok_load from already-parsed jansson objects (cfg may be NULL); the
 * objects stay the caller's. Same results and errors. */
struct json_t;
int tok_load_json(tok_tokenizer **out, struct json_t *tok, struct json_t *cfg, char *err,
		     size_t errlen);
/* tok_free releases a tokenizer (NULL is fine). */
void tok_free(tok_tokenizer *t);

/* tok_encode encodes UTF-8 text like HF tokenizers' encode(text, add_special_tokens=
 * add_special): added/special tokens in the text are matched first; add_special applies the
 * post-processor (e.g. bos). On success *ids is malloc'd (caller frees; may be NULL when *n is
 * 0). Returns 0, -EINVAL for invalid UTF-8, -ENOMEM. */
int tok_encode(const tok_tokenizer *t, const char *text, size_t len, int add_special, int32_t **ids,
		  size_t *n);
/* tok_decode decodes ids like HF decode(ids, skip_special_tokens=skip_special). *text is
 * malloc'd and NUL-terminated (caller frees); *len excludes the NUL (len may be NULL). Returns
 * 0, -EINVAL for an id outside the vocabulary, -ENOMEM. Bytes that do not form valid UTF-8 come
 * out as U+FFFD as in HF; the text may contain NUL bytes (byte tokens), so use *len. */
int tok_decode(const tok_tokenizer *t, const int32_t *ids, size_t n, int skip_special, char **text,
		  size_t *len);

/* Incremental decode for streaming: each push returns only the newly complete text (never a
 * split UTF-8 sequence); the concatenation of all pushes plus finish equals tok_decode of all
 * ids. *text is malloc'd, NUL-terminated, possibly empty (caller frees). The tokenizer must
 * outlive the stream. Returns 0, -EINVAL for a bad id, -ENOMEM. */
typedef struct tok_stream tok_stream;
int tok_stream_new(const tok_tokenizer *t, int skip_special, tok_stream **out);
int tok_stream_push(tok_stream *s, int32_t id, char **text, size_t *len);
int tok_stream_finish(tok_stream *s, char **text, size_t *len);
void tok_stream_free(tok_stream *s);

/* Special ids: bos/eos come from tokenizer_config.json (bos_token/eos_token as strings or
 * {content: ...} objects), else from the post-processor / well-known names; -1 when none. */
int32_t tok_bos(const tok_tokenizer *t);
int32_t tok_eos(const tok_tokenizer *t);
/* tok_vocab_size is one more than the largest id (model vocab and added tokens). */
size_t tok_vocab_size(const tok_tokenizer *t);
/* tok_id returns the id of a token string (vocab or added token), or -1. */
int32_t tok_id(const tok_tokenizer *t, const char *token);

/* tok_chat_render renders a conversation with the tokenizer's chat template, as transformers'
 * apply_chat_template(messages, tools=tools, add_generation_prompt=...) does: the template sees
 * messages (a JSON array of objects: role, content and whatever else the template reads, such as
 * tool_calls, tool_call_id or name), tools (a JSON array, or NULL: none), add_generation_prompt,
 * the special tokens tokenizer_config.json sets (bos_token, eos_token, unk_token, pad_token, ...,
 * additional_special_tokens), and the variables of vars (a JSON object or NULL, e.g.
 * {"enable_thinking": false}). With the list form of chat_template, "default" renders, and
 * "tool_use" when tools are given and it exists. The JSON stays the caller's. The prompt
 * includes the bos text where the template does (encode it with add_special = 0). *prompt is
 * malloc'd (caller frees). Returns 0; -ENOTSUP when there is no usable template (none, or one
 * that does not parse: err says why); -EINVAL when the template refuses the conversation
 * (raise_exception: err is "chat template line N: raise_exception: <message>") or fails on it
 * (err names the error and line), or for no messages; -E2BIG when rendering passes a limit of
 * tok_jinja.h; -ENOMEM. err may be NULL. */
int tok_chat_render(const tok_tokenizer *t, const struct json_t *messages, const struct json_t *tools,
		    const struct json_t *vars, int add_generation_prompt, char **prompt, char *err,
		    size_t errlen);
/* tok_chat is tok_chat_render of role/content messages, no tools, add_generation_prompt on.
 * role and content must be UTF-8 (else -EINVAL); which roles work is the template's choice. */
typedef struct {
	const char *role;
	const char *content;
} tok_msg;
int tok_chat(const tok_tokenizer *t, const tok_msg *m, size_t n, char **prompt, char *err,
		size_t errlen);
/* tok_stop_ids writes the ids that end a chat turn (eos plus those of <|eot_id|>, <|im_end|>,
 * <|end_of_text|>, <|endoftext|>, <|eom_id|>, <|eot|>, <|end|>, <end_of_turn>,
 * <|END_OF_TURN_TOKEN|>, <|end_of_turn|>, </s> the tokenizer has as added tokens), without
 * duplicates, up to cap; returns the count written. */
size_t tok_stop_ids(const tok_tokenizer *t, int32_t *ids, size_t cap);
#endif

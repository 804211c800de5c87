/* rt_tok.h — a snapshot carries its tokenizer: `thaw snapshot pack` stores tokenizer.json and
 * tokenizer_config.json as {"tokenizer", "tokenizer_config"} in the snapshot's attachment (format
 * 1.1, out of the metadata that every open parses), and the runtime loads them back into a
 * runtime/tok/tok.h tokenizer (older snapshots: from the metadata keys of the same names). */
#ifndef THAW_RT_TOK_H
#define THAW_RT_TOK_H
#include <stddef.h>
#include "runtime/tok/tok.h"
#include "snapshot/snap.h"

/* rt_tok_from_snapshot opens the snapshot at snap_path and loads the tokenizer it carries.
 * On success *out owns it (tok_free). Returns 0; -ENOENT when the snapshot carries no
 * tokenizer; the snapshot's own errors (file, checksum); or tok_load's (-EINVAL, -ENOTSUP)
 * with err naming the problem. */
int rt_tok_from_snapshot(const char *snap_path, tok_tokenizer **out, char *err, size_t errlen);
/* rt_tok_from_file does it for a snapshot already open: the attachment (format 1.1), else the
 * metadata of a snapshot packed before attachments (meta: that metadata already parsed, or NULL
 * to parse it). Same returns. */
struct json_t;
int rt_tok_from_file(const snap_file *f, struct json_t *meta, tok_tokenizer **out, char *err,
		     size_t errlen);
/* rt_tok_from_meta does the same from a snapshot's metadata JSON text (snap_metadata_json):
 * callers that already opened the snapshot save a second open. */
int rt_tok_from_meta(const char *meta_json, tok_tokenizer **out, char *err, size_t errlen);
/* rt_tok_from_meta_obj does it from metadata already parsed with jansson (stays the caller's):
 * no JSON parse at all besides the tokenizer's own tables. */
int rt_tok_from_meta_obj(struct json_t *meta, tok_tokenizer **out, char *err, size_t errlen);

/* rt_tok_find names the tokenizer files for a pack: spec is a directory (DIR/tokenizer.json,
 * required, and DIR/tokenizer_config.json when present) or a tokenizer.json file (with the
 * tokenizer_config.json beside it when present). With required = 0 (auto-detection) only a
 * directory is looked at, and one without tokenizer.json is not an error: *tok_path stays NULL. Paths are malloc'd (caller frees).
 * Returns 0 or -ENOENT / -ENOMEM with err filled. */
int rt_tok_find(const char *spec, int required, char **tok_path, char **cfg_path, char *err,
		size_t errlen);
/* rt_tok_pack_metadata prepares a pack's tokenizer: *attach (malloc'd, *attach_len bytes) is
 * {"tokenizer": <tok_path>, "tokenizer_config": <cfg_path>}, for the snapshot's attachment, and
 * *out (malloc'd) is the JSON object text user_meta (NULL = {}) with a short "tokenizer" note
 * ({"carried": "attachment", "model", "vocab", "config"}). A chat_template.jinja (or
 * chat_template.json) beside tok_path becomes the config's "chat_template", as transformers
 * loads it (the config is made when there is none). The files must be JSON objects;
 * "tokenizer"/"tokenizer_config" in user_meta are an error (-EEXIST). When thaw's tokenizer
 * cannot load them, *warn (if not NULL) gets the reason and the files are still carried.
 * Output is deterministic (key order as in the files). 0 or a negative errno. */
int rt_tok_pack_metadata(const char *user_meta, const char *tok_path, const char *cfg_path,
			 char **out, char **attach, size_t *attach_len, char *warn, size_t warnlen,
			 char *err, size_t errlen);
/* rt_tok_pack_metadata_obj is rt_tok_pack_metadata from tokenizer.json / tokenizer_config.json
 * objects already in memory (cfg may be NULL; both stay the caller's). */
int rt_tok_pack_metadata_obj(const char *user_meta, struct json_t *tok, struct json_t *cfg,
			     char **out, char **attach, size_t *attach_len, char *warn,
			     size_t warnlen, char *err, size_t errlen);
/* rt_tok_check_model refuses a tokenizer that can produce ids the model of src (the pack's
 * source: a model directory or .safetensors file) has no rows for. The model's vocabulary is
 * the rows of lm_head.weight / model.embed_tokens.weight (the smaller when both), else
 * config.json's vocab_size; the tokenizer's size is one more than its largest id (model.vocab
 * and added_tokens of tok_path), and the special token ids of cfg_path (NULL: none), its
 * added_tokens_decoder (bos, eos, pad, ... among them), must be below the model's vocabulary
 * too. Returns 0 (also when src has neither those tensors nor vocab_size, or cannot be opened:
 * the pack itself reports that); -ERANGE with err saying both sizes and what to do; load
 * errors of the tokenizer files (-EINVAL, -ENOMEM, ...). */
int rt_tok_check_model(const char *src, const char *tok_path, const char *cfg_path, char *err,
		       size_t errlen);
/* rt_tok_check_vocab is that check against a model vocabulary of mv rows (what: where that
 * figure came from) for tokenizer objects in memory (tok, cfg: tokenizer.json and
 * tokenizer_config.json, cfg may be NULL), plus model_cfg's (the model's config.json, may be
 * NULL) bos/eos/pad_token_id; tok_name and cfg_name name them in messages. 0 or -ERANGE. */
int rt_tok_check_vocab(int64_t mv, const char *what, struct json_t *tok, struct json_t *cfg,
		       struct json_t *model_cfg, const char *tok_name, const char *cfg_name,
		       char *err, size_t errlen);
/* rt_tok_meta_summary returns a copy of the metadata JSON text with the carried tokenizer
 * objects replaced by short descriptions (for `thaw snapshot inspect`); NULL on error. */
char *rt_tok_meta_summary(const char *meta_json);
#endif

/* rt_tok.h — a snapshot carries its tokenizer: `thaw snapshot pack` stores tokenizer.json and
 * tokenizer_config.json as the metadata keys "tokenizer" and "tokenizer_config" (JSON objects),
 * and the runtime loads them back into a functions/fn_tok.h tokenizer. */
#ifndef THAW_RT_TOK_H
#define THAW_RT_TOK_H
#include <stddef.h>
#include "functions/fn_tok.h"

/* rt_tok_from_snapshot opens the snapshot at snap_path and loads the tokenizer it carries.
 * On success *out owns it (fn_tok_free). Returns 0; -ENOENT when the snapshot carries no
 * tokenizer; the snapshot's own errors (file, checksum); or fn_tok_load's (-EINVAL, -ENOTSUP)
 * with err naming the problem. */
int rt_tok_from_snapshot(const char *snap_path, fn_tok **out, char *err, size_t errlen);
/* rt_tok_from_meta does the same from a snapshot's metadata JSON text (snap_metadata_json):
 * callers that already opened the snapshot save a second open. */
int rt_tok_from_meta(const char *meta_json, fn_tok **out, char *err, size_t errlen);
/* rt_tok_from_meta_obj does it from metadata already parsed with jansson (stays the caller's):
 * no JSON parse at all besides the tokenizer's own tables. */
struct json_t;
int rt_tok_from_meta_obj(struct json_t *meta, fn_tok **out, char *err, size_t errlen);

/* rt_tok_find names the tokenizer files for a pack: spec is a directory (DIR/tokenizer.json,
 * required, and DIR/tokenizer_config.json when present) or a tokenizer.json file (with the
 * tokenizer_config.json beside it when present). With required = 0 (auto-detection) only a
 * directory is looked at, and one without tokenizer.json is not an error: *tok_path stays NULL. Paths are malloc'd (caller frees).
 * Returns 0 or -ENOENT / -ENOMEM with err filled. */
int rt_tok_find(const char *spec, int required, char **tok_path, char **cfg_path, char *err,
		size_t errlen);
/* rt_tok_pack_metadata merges {"tokenizer": <tok_path>, "tokenizer_config": <cfg_path>} into
 * the JSON object text user_meta (NULL = {}) and returns the result in *out (malloc'd). The
 * files must be JSON objects; keys present in user_meta are an error (-EEXIST). When thaw's
 * tokenizer cannot load them, *warn (if not NULL) gets the reason and the files are still
 * carried. Output is deterministic (key order as in the files). 0 or a negative errno. */
int rt_tok_pack_metadata(const char *user_meta, const char *tok_path, const char *cfg_path,
			 char **out, char *warn, size_t warnlen, char *err, size_t errlen);
/* rt_tok_meta_summary returns a copy of the metadata JSON text with the carried tokenizer
 * objects replaced by short descriptions (for `thaw snapshot inspect`); NULL on error. */
char *rt_tok_meta_summary(const char *meta_json);
#endif

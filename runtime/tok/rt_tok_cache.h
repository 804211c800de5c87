/* rt_tok_cache.h — what the text routes need from a snapshot (its tokenizer, context length,
 * vocabulary and end-of-sequence ids), read once and kept for the RT_TOK_CACHE snapshots used
 * last, keyed by path and the file's identity (device, inode, size, mtime), so a snapshot
 * replaced in place is read again. Reference counted; any thread (a mutex guards the cache). */
#ifndef THAW_RT_TOK_CACHE_H
#define THAW_RT_TOK_CACHE_H
#include <stdint.h>
#include <sys/stat.h>
#include <limits.h>
#include "runtime/tok/tok.h"

#define RT_TOK_CACHE 8            /* snapshots whose tokenizer is kept loaded */
#define RT_TOK_DEFAULT_CTX 4096   /* as the llama kind: metadata max_context default */

typedef struct rt_tok_model {
	char path[PATH_MAX];
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
	tok_tokenizer *tok;                 /* NULL when the snapshot has none (err says why) */
	int err_rc;
	char err[300];
	int64_t ctx, vocab;          /* context positions and vocabulary of the model */
	int32_t eos[8];              /* config eos_token_id(s) */
	int n_eos;
	int refs;                    /* the cache holds one; each generation one */
	uint64_t used;
} rt_tok_model;

/* rt_tok_model_read reads path (st: its stat now) into a new model with one reference: on
 * failure the model carries err_rc and err (tok NULL); NULL only when memory runs out. */
rt_tok_model *rt_tok_model_read(const char *path, const struct stat *st);

/* rt_tok_model_find returns a new reference to the cached model of path as st describes the
 * file now, or NULL when it is not cached. */
rt_tok_model *rt_tok_model_find(const char *path, const struct stat *st);

/* rt_tok_model_insert puts m (rt_tok_model_read's; its reference is taken over) into the cache,
 * dropping the least recently used entry, and returns the caller's reference to the cached
 * model (an equal one cached meanwhile wins; m is then released). */
rt_tok_model *rt_tok_model_insert(rt_tok_model *m);

/* rt_tok_model_unref drops a reference; the last one frees the model. NULL is ignored. */
void rt_tok_model_unref(rt_tok_model *m);

#endif

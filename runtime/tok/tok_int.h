/* tok_int.h — what the tokenizer's files share (not for callers: they use tok.h): limits, the
 * tokenizer struct, growable buffers, UTF-8 and Unicode helpers, the vocabulary and merge hash
 * maps and the byte-level (GPT-2 bytes_to_unicode) tables. The files, by concern:
 *   tok_util.c    buffers, UTF-8, Unicode categories, hash maps, byte-level tables
 *   tok_load.c    tokenizer.json / tokenizer_config.json -> tok_tokenizer, accessors
 *   tok_encode.c  added tokens -> normalizer -> pre-tokenizer -> BPE -> post-processor
 *   tok_decode.c  decoder chain, incremental (streaming) decode
 *   tok_chat.c    chat prompts from the chat template (tok_jinja.h), stop ids */
#ifndef THAW_TOK_INT_H
#define THAW_TOK_INT_H
#include <stddef.h>
#include <stdint.h>
#include "runtime/base/rt_log.h"
#include "runtime/tok/tok.h"
#include "runtime/tok/tok_jinja.h"

#define TOK_MAX_ID (1 << 24)
#define TOK_MAX_STR 4096 /* longest token / added token / replace pattern accepted */

/* tok_err(err, errlen, fmt, ...) formats a message into err when err and errlen are set
 * (the shared formatter, rt_errf). */
#define tok_err(err, errlen, ...) ((void)rt_errf(err, errlen, 0, __VA_ARGS__))

/* ---- growable buffers, hash maps (tok_util.c) */

typedef struct {
	char *p;
	size_t n, cap;
} tok_buf;

typedef struct {
	int32_t *p;
	size_t n, cap;
} tok_ids;

typedef struct {
	const char *s;
	uint32_t len;
	int32_t id;
} tok_ent;

typedef struct {
	tok_ent *e;
	size_t n;
	uint32_t mask;
	int32_t *slot; /* index into e, -1 empty */
} tok_smap;

typedef struct {
	uint64_t key; /* (a << 32) | b; UINT64_MAX empty */
	int32_t rank, id;
} tok_merge;

typedef struct {
	tok_merge *slot;
	uint32_t mask;
} tok_mmap;

/* pieces: byte ranges into a buffer */
typedef struct {
	size_t off, len;
} tok_piece;

typedef struct {
	tok_piece *p;
	size_t n, cap;
} tok_pieces;

/* ---- the tokenizer */

enum { NORM_PREPEND, NORM_REPLACE };
typedef struct {
	int type;
	char *a, *b;
	size_t alen, blen;
} tok_norm;

enum { PRE_BYTELEVEL, PRE_SPLIT_GPT2, PRE_SPLIT_LLAMA3, PRE_METASPACE };
enum { PREPEND_NEVER, PREPEND_FIRST, PREPEND_ALWAYS };
typedef struct {
	int type;
	int add_prefix_space, use_regex; /* ByteLevel */
	char repl[8];                    /* Metaspace replacement (UTF-8) */
	size_t repl_len;
	int prepend, split; /* Metaspace */
} tok_pre;

enum { DEC_BYTELEVEL, DEC_REPLACE, DEC_BYTEFALLBACK, DEC_FUSE, DEC_STRIP, DEC_METASPACE };
typedef struct {
	int type;
	char *a, *b; /* Replace: a -> b; Strip/Metaspace: a = the character */
	size_t alen, blen;
	int start, stop, prepend;
} tok_dec;

typedef struct {
	char *s;
	size_t len;
	int32_t id;
	uint8_t special, lstrip, rstrip;
} tok_added;

struct tok_tokenizer {
	size_t n_ids;     /* one more than the largest id */
	char **id_s;      /* token text by id (added token content wins), NULL for holes */
	uint32_t *id_len;
	uint8_t *id_special;
	int16_t *id_byte; /* 0..255 for <0xNN> byte-fallback tokens, else -1 */

	tok_ent *vocab; /* model vocab; strings owned here */
	tok_smap vmap;
	tok_mmap merges;
	int byte_fallback, ignore_merges, fuse_unk;
	int32_t unk_id;
	int32_t byte_tok[256]; /* id of <0xNN>, -1 when absent */

	tok_added *added;
	size_t n_added;
	uint32_t *added_order; /* indexes into added, grouped by first byte, longest first */
	uint32_t added_start[257];

	tok_norm *norm;
	size_t n_norm;
	tok_pre *pre;
	size_t n_pre;
	int byte_level; /* a ByteLevel pre-tokenizer maps bytes to chars before the model */
	tok_dec *dec;
	size_t n_dec;
	int has_decoder;

	int32_t *post_pre, *post_post; /* ids the post-processor adds around the sequence */
	size_t n_post_pre, n_post_post;

	int32_t bos, eos;
	char *bos_text, *eos_text;
	/* tokenizer_config.json "chat_template": the template (the list form's "default"), the one
	 * for requests with tools (the list form's "tool_use"; NULL: chat_tpl serves them too) */
	tok_jinja *chat_tpl, *chat_tpl_tools;
	char *chat_why;      /* why there is no chat_tpl when a template failed to parse */
	int chat_named;      /* the list form without "default": only tools requests render */
	/* special tokens the template sees as variables (bos_token, eos_token, unk_token, ...:
	 * those tokenizer_config.json sets), and additional_special_tokens */
	char *var_k[8], *var_v[8];
	size_t n_vars;
	char **extra_special;
	size_t n_extra_special;
};


/* ---- helpers (tok_util.c). Appends return 0 or -ENOMEM. */
int tok_buf_reserve(tok_buf *b, size_t extra);
int tok_buf_puts(tok_buf *b, const char *s);
int tok_buf_putcp(tok_buf *b, uint32_t cp);
int tok_buf_put(tok_buf *b, const void *s, size_t n);
int tok_ids_push(tok_ids *v, int32_t id);
const tok_merge *tok_mmap_get(const tok_mmap *m, int32_t a, int32_t b);
/* a later duplicate pair overwrites an earlier one, as the Rust HashMap collect does */
void tok_mmap_put(tok_mmap *m, int32_t a, int32_t b, int32_t rank, int32_t id);
int tok_mmap_init(tok_mmap *m, size_t n);
int32_t tok_smap_get(const tok_smap *m, const char *s, size_t len);
/* Builds the index over m->e[0..n). Returns 0, -ENOMEM, or -EEXIST (*dup = entry index) for a
 * key present twice. */
int tok_smap_build(tok_smap *m, size_t *dup);
/* Unicode White_Space (what \s means in the split patterns and char::is_whitespace). */
int tok_uni_is_space(uint32_t cp);
int tok_uni_is_number(uint32_t cp);
int tok_uni_is_letter(uint32_t cp);
int tok_utf8_valid(const char *s, size_t n);
/* Length of the valid UTF-8 sequence at s (n bytes left), or 0 when invalid/incomplete. */
size_t tok_utf8_len(const unsigned char *s, size_t n, uint32_t *cp);
/* Appends s as Rust's String::from_utf8_lossy would: each maximal invalid subpart becomes
 * U+FFFD. */
int tok_utf8_put_lossy(tok_buf *b, const char *s, size_t n);
/* Python's str.isspace (used by strip() / Jinja's trim in chat templates). */
int tok_py_is_space(uint32_t cp);
/* decode one code point of valid UTF-8 */
size_t tok_cp_at(const char *s, size_t n, size_t i, uint32_t *cp);
void tok_bl_init(void);
char *tok_strndup(const char *s, size_t n);
int tok_pieces_push(tok_pieces *v, size_t off, size_t len);

/* GPT-2's bytes_to_unicode and its inverse, filled by tok_bl_init (once, thread-safe) */
extern uint16_t tok_bl_byte_char[256];
extern int16_t tok_bl_char_byte[324];

#endif

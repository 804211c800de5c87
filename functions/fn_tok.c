/* fn_tok.c — Hugging Face tokenizer.json (model type BPE) in C: load with jansson, encode
 * (added tokens -> normalizer -> pre-tokenizer -> BPE -> post-processor), decode (decoder
 * chain), incremental decode for streaming and chat prompt rendering for three template
 * families. It follows the `tokenizers` Rust crate's semantics for the pieces it supports:
 *   normalizers:     Sequence, Prepend, Replace (String pattern)
 *   pre-tokenizers:  Sequence, ByteLevel (GPT-2 split pattern), Split (the GPT-2 and the
 *                    LLaMA-3 / cl100k patterns, behavior Isolated), Metaspace
 *   model:           BPE (merges old "a b" and new ["a","b"] formats, byte_fallback, unk +
 *                    fuse_unk, ignore_merges)
 *   post-processors: TemplateProcessing (single), ByteLevel (no-op for ids), Sequence
 *   decoders:        ByteLevel, Sequence, Replace, ByteFallback, Fuse, Strip, Metaspace
 * Anything else is refused at load with -ENOTSUP naming it. The split regexes are implemented
 * by hand over Unicode categories (functions/fn_tok_unicode.h, generated) instead of a regex
 * engine. Added tokens are matched leftmost-longest on the raw text (lstrip/rstrip honoured). */
#include "functions/fn_tok.h"
#include "functions/fn_tok_unicode.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define TOK_MAX_ID (1 << 24)
#define TOK_MAX_STR 4096 /* longest token / added token / replace pattern accepted */

/* ---------------------------------------------------------------- small helpers */

static void tok_err(char *err, size_t errlen, const char *fmt, ...)
{
	if (!err || !errlen)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

typedef struct {
	char *p;
	size_t n, cap;
} tbuf;

static int tbuf_reserve(tbuf *b, size_t extra)
{
	if (b->n + extra + 1 <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : 64;
	while (cap < b->n + extra + 1)
		cap *= 2;
	char *p = realloc(b->p, cap);
	if (!p)
		return -ENOMEM;
	b->p = p;
	b->cap = cap;
	return 0;
}

static int tbuf_put(tbuf *b, const void *s, size_t n)
{
	if (tbuf_reserve(b, n))
		return -ENOMEM;
	if (n)
		memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = 0;
	return 0;
}

static int tbuf_puts(tbuf *b, const char *s) { return tbuf_put(b, s, strlen(s)); }

static int tbuf_putcp(tbuf *b, uint32_t cp)
{
	char u[4];
	size_t n;
	if (cp < 0x80) {
		u[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		u[0] = (char)(0xC0 | (cp >> 6));
		u[1] = (char)(0x80 | (cp & 0x3F));
		n = 2;
	} else if (cp < 0x10000) {
		u[0] = (char)(0xE0 | (cp >> 12));
		u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		u[2] = (char)(0x80 | (cp & 0x3F));
		n = 3;
	} else {
		u[0] = (char)(0xF0 | (cp >> 18));
		u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
		u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
		u[3] = (char)(0x80 | (cp & 0x3F));
		n = 4;
	}
	return tbuf_put(b, u, n);
}

typedef struct {
	int32_t *p;
	size_t n, cap;
} tids;

static int tids_push(tids *v, int32_t id)
{
	if (v->n == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 64;
		int32_t *p = realloc(v->p, cap * sizeof *p);
		if (!p)
			return -ENOMEM;
		v->p = p;
		v->cap = cap;
	}
	v->p[v->n++] = id;
	return 0;
}

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0 when invalid/incomplete. */
static size_t utf8_len(const unsigned char *s, size_t n, uint32_t *cp)
{
	unsigned c = s[0];
	if (c < 0x80) {
		if (cp)
			*cp = c;
		return 1;
	}
	size_t len;
	uint32_t v;
	unsigned lo = 0x80, hi = 0xBF;
	if (c >= 0xC2 && c <= 0xDF) {
		len = 2;
		v = c & 0x1F;
	} else if (c >= 0xE0 && c <= 0xEF) {
		len = 3;
		v = c & 0x0F;
		if (c == 0xE0)
			lo = 0xA0;
		else if (c == 0xED)
			hi = 0x9F;
	} else if (c >= 0xF0 && c <= 0xF4) {
		len = 4;
		v = c & 0x07;
		if (c == 0xF0)
			lo = 0x90;
		else if (c == 0xF4)
			hi = 0x8F;
	} else {
		return 0;
	}
	for (size_t i = 1; i < len; i++) {
		if (i >= n)
			return 0;
		unsigned d = s[i];
		if (d < (i == 1 ? lo : 0x80) || d > (i == 1 ? hi : 0xBF))
			return 0;
		v = (v << 6) | (d & 0x3F);
	}
	if (cp)
		*cp = v;
	return len;
}

static int utf8_valid(const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	for (size_t i = 0; i < n;) {
		if (u[i] < 0x80) {
			i++;
			continue;
		}
		size_t l = utf8_len(u + i, n - i, NULL);
		if (!l)
			return 0;
		i += l;
	}
	return 1;
}

/* Appends s as Rust's String::from_utf8_lossy would: each maximal invalid subpart becomes
 * U+FFFD. */
static int utf8_put_lossy(tbuf *b, const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, run = 0;
	while (i < n) {
		size_t l = utf8_len(u + i, n - i, NULL);
		if (l) {
			i += l;
			continue;
		}
		if (tbuf_put(b, s + run, i - run) || tbuf_putcp(b, 0xFFFD))
			return -ENOMEM;
		/* skip the maximal prefix of a valid sequence (at least one byte) */
		unsigned c = u[i];
		size_t want = 0;
		unsigned lo = 0x80, hi = 0xBF;
		if (c >= 0xC2 && c <= 0xDF)
			want = 2;
		else if (c >= 0xE0 && c <= 0xEF) {
			want = 3;
			lo = c == 0xE0 ? 0xA0 : 0x80;
			hi = c == 0xED ? 0x9F : 0xBF;
		} else if (c >= 0xF0 && c <= 0xF4) {
			want = 4;
			lo = c == 0xF0 ? 0x90 : 0x80;
			hi = c == 0xF4 ? 0x8F : 0xBF;
		}
		size_t k = 1;
		while (want && k < want && i + k < n) {
			unsigned d = u[i + k];
			if (d < (k == 1 ? lo : 0x80) || d > (k == 1 ? hi : 0xBF))
				break;
			k++;
		}
		i += k;
		run = i;
	}
	return tbuf_put(b, s + run, n - run);
}

static int uni_in(const uint32_t (*r)[2], size_t n, uint32_t cp)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (cp < r[mid][0])
			hi = mid;
		else if (cp > r[mid][1])
			lo = mid + 1;
		else
			return 1;
	}
	return 0;
}

static int uni_is_letter(uint32_t cp)
{
	if (cp < 0x80)
		return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z';
	return uni_in(fn_tok_uni_letter, sizeof fn_tok_uni_letter / sizeof fn_tok_uni_letter[0], cp);
}

static int uni_is_number(uint32_t cp)
{
	if (cp < 0x80)
		return cp >= '0' && cp <= '9';
	return uni_in(fn_tok_uni_number, sizeof fn_tok_uni_number / sizeof fn_tok_uni_number[0], cp);
}

/* Unicode White_Space (what \s means in the split patterns and char::is_whitespace). */
static int uni_is_space(uint32_t cp)
{
	if (cp < 0x80)
		return (cp >= 9 && cp <= 13) || cp == ' ';
	return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
	       cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

/* Python's str.isspace (used by strip() / Jinja's trim in chat templates). */
static int py_is_space(uint32_t cp)
{
	return uni_is_space(cp) || (cp >= 0x1C && cp <= 0x1F);
}

/* decode one code point of valid UTF-8 */
static size_t cp_at(const char *s, size_t n, size_t i, uint32_t *cp)
{
	size_t l = utf8_len((const unsigned char *)s + i, n - i, cp);
	if (!l) { /* not reached for validated input; treat as one opaque byte */
		*cp = 0xFFFD;
		return 1;
	}
	return l;
}

/* ---------------------------------------------------------------- hash maps */

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

static uint64_t tok_hash(const char *s, size_t n) { return XXH3_64bits(s, n); }

/* Builds the index over m->e[0..n). Returns 0, -ENOMEM, or -EEXIST (*dup = entry index) for a
 * key present twice. */
static int smap_build(tok_smap *m, size_t *dup)
{
	size_t cap = 16;
	while (cap < m->n * 2)
		cap *= 2;
	m->slot = malloc(cap * sizeof *m->slot);
	if (!m->slot)
		return -ENOMEM;
	memset(m->slot, 0xff, cap * sizeof *m->slot);
	m->mask = (uint32_t)(cap - 1);
	for (size_t i = 0; i < m->n; i++) {
		uint32_t h = (uint32_t)tok_hash(m->e[i].s, m->e[i].len) & m->mask;
		while (m->slot[h] >= 0) {
			tok_ent *o = &m->e[m->slot[h]];
			if (o->len == m->e[i].len && !memcmp(o->s, m->e[i].s, o->len)) {
				*dup = i;
				return -EEXIST;
			}
			h = (h + 1) & m->mask;
		}
		m->slot[h] = (int32_t)i;
	}
	return 0;
}

static int32_t smap_get(const tok_smap *m, const char *s, size_t len)
{
	if (!m->slot)
		return -1;
	uint32_t h = (uint32_t)tok_hash(s, len) & m->mask;
	while (m->slot[h] >= 0) {
		const tok_ent *o = &m->e[m->slot[h]];
		if (o->len == len && !memcmp(o->s, s, len))
			return o->id;
		h = (h + 1) & m->mask;
	}
	return -1;
}

typedef struct {
	uint64_t key; /* (a << 32) | b; UINT64_MAX empty */
	int32_t rank, id;
} tok_merge;

typedef struct {
	tok_merge *slot;
	uint32_t mask;
} tok_mmap;

static uint32_t mmap_hash(uint64_t k)
{
	k ^= k >> 33;
	k *= 0xff51afd7ed558ccdULL;
	k ^= k >> 33;
	k *= 0xc4ceb9fe1a85ec53ULL;
	k ^= k >> 33;
	return (uint32_t)k;
}

static int mmap_init(tok_mmap *m, size_t n)
{
	size_t cap = 16;
	while (cap < n * 2)
		cap *= 2;
	m->slot = malloc(cap * sizeof *m->slot);
	if (!m->slot)
		return -ENOMEM;
	for (size_t i = 0; i < cap; i++)
		m->slot[i].key = UINT64_MAX;
	m->mask = (uint32_t)(cap - 1);
	return 0;
}

/* a later duplicate pair overwrites an earlier one, as the Rust HashMap collect does */
static void mmap_put(tok_mmap *m, int32_t a, int32_t b, int32_t rank, int32_t id)
{
	uint64_t k = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
	uint32_t h = mmap_hash(k) & m->mask;
	while (m->slot[h].key != UINT64_MAX && m->slot[h].key != k)
		h = (h + 1) & m->mask;
	m->slot[h].key = k;
	m->slot[h].rank = rank;
	m->slot[h].id = id;
}

static const tok_merge *mmap_get(const tok_mmap *m, int32_t a, int32_t b)
{
	uint64_t k = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
	uint32_t h = mmap_hash(k) & m->mask;
	while (m->slot[h].key != UINT64_MAX) {
		if (m->slot[h].key == k)
			return &m->slot[h];
		h = (h + 1) & m->mask;
	}
	return NULL;
}

/* ---------------------------------------------------------------- the tokenizer */

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

enum { CHAT_NONE, CHAT_UNKNOWN, CHAT_LLAMA2, CHAT_LLAMA3, CHAT_CHATML };

struct fn_tok {
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
	int chat;
	const char *chat_why; /* for CHAT_UNKNOWN: what was not recognised */
};

static uint16_t bl_byte_char[256];
static int16_t bl_char_byte[324];

static void bl_init_once(void)
{
	/* GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the rest to
	 * 256 + n in byte order. */
	int n = 0;
	for (int b = 0; b < 256; b++) {
		int keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
		bl_byte_char[b] = (uint16_t)(keep ? b : 256 + n++);
	}
	for (int c = 0; c < 324; c++)
		bl_char_byte[c] = -1;
	for (int b = 0; b < 256; b++)
		bl_char_byte[bl_byte_char[b]] = (int16_t)b;
}

static void bl_init(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, bl_init_once);
}

void fn_tok_free(fn_tok *t)
{
	if (!t)
		return;
	if (t->id_s) {
		/* model vocab strings are owned by t->vocab, added ones by t->added */
		free(t->id_s);
	}
	free(t->id_len);
	free(t->id_special);
	free(t->id_byte);
	for (size_t i = 0; i < t->vmap.n; i++)
		free((char *)t->vocab[i].s);
	free(t->vocab);
	free(t->vmap.slot);
	free(t->merges.slot);
	for (size_t i = 0; i < t->n_added; i++)
		free(t->added[i].s);
	free(t->added);
	free(t->added_order);
	for (size_t i = 0; i < t->n_norm; i++) {
		free(t->norm[i].a);
		free(t->norm[i].b);
	}
	free(t->norm);
	free(t->pre);
	for (size_t i = 0; i < t->n_dec; i++) {
		free(t->dec[i].a);
		free(t->dec[i].b);
	}
	free(t->dec);
	free(t->post_pre);
	free(t->post_post);
	free(t->bos_text);
	free(t->eos_text);
	free(t);
}

static char *xstrndup(const char *s, size_t n)
{
	char *p = malloc(n + 1);
	if (!p)
		return NULL;
	memcpy(p, s, n);
	p[n] = 0;
	return p;
}

/* Pattern {"String": s} -> s; Regex patterns are not supported. */
static int get_pattern(json_t *pat, const char *what, const char **s, size_t *len, char *err,
		       size_t errlen)
{
	json_t *str = json_is_object(pat) ? json_object_get(pat, "String") : NULL;
	if (json_is_string(str)) {
		*s = json_string_value(str);
		*len = json_string_length(str);
		if (*len == 0 || *len > TOK_MAX_STR) {
			tok_err(err, errlen, "tokenizer.json: %s: pattern must be 1..%d bytes", what,
				TOK_MAX_STR);
			return -EINVAL;
		}
		return 0;
	}
	if (json_is_object(pat) && json_object_get(pat, "Regex")) {
		tok_err(err, errlen, "tokenizer.json: %s: Regex patterns are not supported", what);
		return -ENOTSUP;
	}
	tok_err(err, errlen, "tokenizer.json: %s: pattern must be {\"String\": ...}", what);
	return -EINVAL;
}

static const char *type_of(json_t *o)
{
	json_t *ty = json_is_object(o) ? json_object_get(o, "type") : NULL;
	return json_is_string(ty) ? json_string_value(ty) : NULL;
}

/* ---- normalizer */
static int load_norm(fn_tok *t, json_t *n, int depth, char *err, size_t errlen)
{
	if (json_is_null(n))
		return 0;
	const char *ty = type_of(n);
	if (!ty || depth > 8) {
		tok_err(err, errlen, "tokenizer.json: normalizer: missing \"type\"");
		return -EINVAL;
	}
	if (!strcmp(ty, "Sequence")) {
		json_t *arr = json_object_get(n, "normalizers"), *it;
		size_t i;
		if (!json_is_array(arr)) {
			tok_err(err, errlen, "tokenizer.json: normalizer Sequence: \"normalizers\" must be an array");
			return -EINVAL;
		}
		json_array_foreach(arr, i, it) {
			int rc = load_norm(t, it, depth + 1, err, errlen);
			if (rc)
				return rc;
		}
		return 0;
	}
	tok_norm nm = {0};
	if (!strcmp(ty, "Prepend")) {
		json_t *p = json_object_get(n, "prepend");
		if (!json_is_string(p) || json_string_length(p) > TOK_MAX_STR) {
			tok_err(err, errlen, "tokenizer.json: normalizer Prepend: \"prepend\" must be a string");
			return -EINVAL;
		}
		nm.type = NORM_PREPEND;
		nm.alen = json_string_length(p);
		nm.a = xstrndup(json_string_value(p), nm.alen);
		if (!nm.a)
			return -ENOMEM;
	} else if (!strcmp(ty, "Replace")) {
		const char *s;
		size_t len;
		int rc = get_pattern(json_object_get(n, "pattern"), "normalizer Replace", &s, &len, err,
				     errlen);
		if (rc)
			return rc;
		json_t *c = json_object_get(n, "content");
		if (!json_is_string(c) || json_string_length(c) > TOK_MAX_STR) {
			tok_err(err, errlen, "tokenizer.json: normalizer Replace: \"content\" must be a string");
			return -EINVAL;
		}
		nm.type = NORM_REPLACE;
		nm.a = xstrndup(s, len);
		nm.alen = len;
		nm.blen = json_string_length(c);
		nm.b = xstrndup(json_string_value(c), nm.blen);
		if (!nm.a || !nm.b) {
			free(nm.a);
			free(nm.b);
			return -ENOMEM;
		}
	} else {
		tok_err(err, errlen, "tokenizer.json: normalizer type \"%s\" is not supported", ty);
		return -ENOTSUP;
	}
	tok_norm *p = realloc(t->norm, (t->n_norm + 1) * sizeof *p);
	if (!p) {
		free(nm.a);
		free(nm.b);
		return -ENOMEM;
	}
	t->norm = p;
	t->norm[t->n_norm++] = nm;
	return 0;
}

static const char PAT_GPT2[] =
	"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char PAT_LLAMA3[] =
	"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static int parse_prepend_scheme(json_t *o, int *out, char *err, size_t errlen)
{
	json_t *ps = json_object_get(o, "prepend_scheme");
	if (json_is_string(ps)) {
		const char *s = json_string_value(ps);
		if (!strcmp(s, "always"))
			*out = PREPEND_ALWAYS;
		else if (!strcmp(s, "first"))
			*out = PREPEND_FIRST;
		else if (!strcmp(s, "never"))
			*out = PREPEND_NEVER;
		else {
			tok_err(err, errlen, "tokenizer.json: Metaspace: unknown prepend_scheme \"%s\"", s);
			return -EINVAL;
		}
		return 0;
	}
	json_t *aps = json_object_get(o, "add_prefix_space");
	*out = (!aps || json_is_true(aps)) ? PREPEND_ALWAYS : PREPEND_NEVER;
	return 0;
}

static int get_char(json_t *o, const char *key, const char *what, char *out, size_t *len,
		    char *err, size_t errlen)
{
	json_t *r = json_object_get(o, key);
	const char *s = json_is_string(r) ? json_string_value(r) : NULL;
	size_t n = s ? json_string_length(r) : 0;
	uint32_t cp;
	if (!s || n == 0 || n > 4 || utf8_len((const unsigned char *)s, n, &cp) != n) {
		tok_err(err, errlen, "tokenizer.json: %s: \"%s\" must be one character", what, key);
		return -EINVAL;
	}
	memcpy(out, s, n);
	out[n] = 0;
	*len = n;
	return 0;
}

static int push_pre(fn_tok *t, tok_pre *p)
{
	tok_pre *np = realloc(t->pre, (t->n_pre + 1) * sizeof *np);
	if (!np)
		return -ENOMEM;
	t->pre = np;
	t->pre[t->n_pre++] = *p;
	return 0;
}

static int load_pre(fn_tok *t, json_t *n, int depth, char *err, size_t errlen)
{
	if (json_is_null(n))
		return 0;
	const char *ty = type_of(n);
	if (!ty || depth > 8) {
		tok_err(err, errlen, "tokenizer.json: pre_tokenizer: missing \"type\"");
		return -EINVAL;
	}
	tok_pre p = {0};
	if (!strcmp(ty, "Sequence")) {
		json_t *arr = json_object_get(n, "pretokenizers"), *it;
		size_t i;
		if (!json_is_array(arr)) {
			tok_err(err, errlen, "tokenizer.json: pre_tokenizer Sequence: \"pretokenizers\" must be an array");
			return -EINVAL;
		}
		json_array_foreach(arr, i, it) {
			int rc = load_pre(t, it, depth + 1, err, errlen);
			if (rc)
				return rc;
		}
		return 0;
	} else if (!strcmp(ty, "ByteLevel")) {
		json_t *aps = json_object_get(n, "add_prefix_space"), *ur = json_object_get(n, "use_regex");
		p.type = PRE_BYTELEVEL;
		p.add_prefix_space = json_is_true(aps);
		p.use_regex = !ur || json_is_true(ur);
		t->byte_level = 1;
	} else if (!strcmp(ty, "Split")) {
		json_t *pat = json_object_get(n, "pattern"), *beh = json_object_get(n, "behavior");
		json_t *inv = json_object_get(n, "invert");
		json_t *re = json_is_object(pat) ? json_object_get(pat, "Regex") : NULL;
		if (!json_is_string(re)) {
			tok_err(err, errlen, "tokenizer.json: pre_tokenizer Split: only {\"Regex\": ...} patterns are supported");
			return json_is_object(pat) && json_object_get(pat, "String") ? -ENOTSUP : -EINVAL;
		}
		const char *rs = json_string_value(re);
		if (!strcmp(rs, PAT_LLAMA3))
			p.type = PRE_SPLIT_LLAMA3;
		else if (!strcmp(rs, PAT_GPT2))
			p.type = PRE_SPLIT_GPT2;
		else {
			tok_err(err, errlen, "tokenizer.json: pre_tokenizer Split: regex \"%.80s\" is not one of the supported split patterns (GPT-2, LLaMA-3/cl100k)", rs);
			return -ENOTSUP;
		}
		if (!json_is_string(beh) || strcmp(json_string_value(beh), "Isolated") || json_is_true(inv)) {
			tok_err(err, errlen, "tokenizer.json: pre_tokenizer Split: only behavior \"Isolated\" without invert is supported");
			return -ENOTSUP;
		}
	} else if (!strcmp(ty, "Metaspace")) {
		int rc = get_char(n, "replacement", "pre_tokenizer Metaspace", p.repl, &p.repl_len, err, errlen);
		if (rc)
			return rc;
		if ((rc = parse_prepend_scheme(n, &p.prepend, err, errlen)))
			return rc;
		json_t *sp = json_object_get(n, "split");
		p.type = PRE_METASPACE;
		p.split = !sp || json_is_true(sp);
	} else {
		tok_err(err, errlen, "tokenizer.json: pre_tokenizer type \"%s\" is not supported", ty);
		return -ENOTSUP;
	}
	return push_pre(t, &p);
}

static int push_dec(fn_tok *t, tok_dec *d)
{
	tok_dec *nd = realloc(t->dec, (t->n_dec + 1) * sizeof *nd);
	if (!nd) {
		free(d->a);
		free(d->b);
		return -ENOMEM;
	}
	t->dec = nd;
	t->dec[t->n_dec++] = *d;
	return 0;
}

static int load_dec(fn_tok *t, json_t *n, int depth, char *err, size_t errlen)
{
	if (json_is_null(n))
		return 0;
	const char *ty = type_of(n);
	if (!ty || depth > 8) {
		tok_err(err, errlen, "tokenizer.json: decoder: missing \"type\"");
		return -EINVAL;
	}
	t->has_decoder = 1;
	tok_dec d = {0};
	if (!strcmp(ty, "Sequence")) {
		json_t *arr = json_object_get(n, "decoders"), *it;
		size_t i;
		if (!json_is_array(arr)) {
			tok_err(err, errlen, "tokenizer.json: decoder Sequence: \"decoders\" must be an array");
			return -EINVAL;
		}
		json_array_foreach(arr, i, it) {
			int rc = load_dec(t, it, depth + 1, err, errlen);
			if (rc)
				return rc;
		}
		return 0;
	} else if (!strcmp(ty, "ByteLevel")) {
		d.type = DEC_BYTELEVEL;
	} else if (!strcmp(ty, "ByteFallback")) {
		d.type = DEC_BYTEFALLBACK;
	} else if (!strcmp(ty, "Fuse")) {
		d.type = DEC_FUSE;
	} else if (!strcmp(ty, "Replace")) {
		const char *s;
		size_t len;
		int rc = get_pattern(json_object_get(n, "pattern"), "decoder Replace", &s, &len, err, errlen);
		if (rc)
			return rc;
		json_t *c = json_object_get(n, "content");
		if (!json_is_string(c) || json_string_length(c) > TOK_MAX_STR) {
			tok_err(err, errlen, "tokenizer.json: decoder Replace: \"content\" must be a string");
			return -EINVAL;
		}
		d.type = DEC_REPLACE;
		d.alen = len;
		d.a = xstrndup(s, len);
		d.blen = json_string_length(c);
		d.b = xstrndup(json_string_value(c), d.blen);
		if (!d.a || !d.b) {
			free(d.a);
			free(d.b);
			return -ENOMEM;
		}
	} else if (!strcmp(ty, "Strip")) {
		char c[8];
		size_t cl;
		int rc = get_char(n, "content", "decoder Strip", c, &cl, err, errlen);
		if (rc)
			return rc;
		json_t *st = json_object_get(n, "start"), *sp = json_object_get(n, "stop");
		if (!json_is_integer(st) || !json_is_integer(sp) || json_integer_value(st) < 0 ||
		    json_integer_value(sp) < 0 || json_integer_value(st) > 1 << 20 ||
		    json_integer_value(sp) > 1 << 20) {
			tok_err(err, errlen, "tokenizer.json: decoder Strip: \"start\"/\"stop\" must be small non-negative integers");
			return -EINVAL;
		}
		d.type = DEC_STRIP;
		d.a = xstrndup(c, cl);
		d.alen = cl;
		d.start = (int)json_integer_value(st);
		d.stop = (int)json_integer_value(sp);
		if (!d.a)
			return -ENOMEM;
	} else if (!strcmp(ty, "Metaspace")) {
		char c[8];
		size_t cl;
		int rc = get_char(n, "replacement", "decoder Metaspace", c, &cl, err, errlen);
		if (rc)
			return rc;
		if ((rc = parse_prepend_scheme(n, &d.prepend, err, errlen)))
			return rc;
		d.type = DEC_METASPACE;
		d.a = xstrndup(c, cl);
		d.alen = cl;
		if (!d.a)
			return -ENOMEM;
	} else {
		tok_err(err, errlen, "tokenizer.json: decoder type \"%s\" is not supported", ty);
		return -ENOTSUP;
	}
	return push_dec(t, &d);
}

/* id of a token string: added tokens first, then the model vocab */
int32_t fn_tok_id(const fn_tok *t, const char *token)
{
	if (!t || !token)
		return -1;
	size_t len = strlen(token);
	for (size_t i = 0; i < t->n_added; i++)
		if (t->added[i].len == len && !memcmp(t->added[i].s, token, len))
			return t->added[i].id;
	return smap_get(&t->vmap, token, len);
}

static int append_ids(int32_t **arr, size_t *n, const int32_t *ids, size_t k)
{
	int32_t *p = realloc(*arr, (*n + k + 1) * sizeof *p);
	if (!p)
		return -ENOMEM;
	memcpy(p + *n, ids, k * sizeof *p);
	*arr = p;
	*n += k;
	return 0;
}

static int load_post(fn_tok *t, json_t *n, int depth, char *err, size_t errlen)
{
	if (json_is_null(n))
		return 0;
	const char *ty = type_of(n);
	if (!ty || depth > 8) {
		tok_err(err, errlen, "tokenizer.json: post_processor: missing \"type\"");
		return -EINVAL;
	}
	if (!strcmp(ty, "ByteLevel"))
		return 0; /* offsets only */
	if (!strcmp(ty, "Sequence")) {
		json_t *arr = json_object_get(n, "processors"), *it;
		size_t i;
		if (!json_is_array(arr)) {
			tok_err(err, errlen, "tokenizer.json: post_processor Sequence: \"processors\" must be an array");
			return -EINVAL;
		}
		json_array_foreach(arr, i, it) {
			int rc = load_post(t, it, depth + 1, err, errlen);
			if (rc)
				return rc;
		}
		return 0;
	}
	if (strcmp(ty, "TemplateProcessing")) {
		tok_err(err, errlen, "tokenizer.json: post_processor type \"%s\" is not supported", ty);
		return -ENOTSUP;
	}
	json_t *single = json_object_get(n, "single"), *sp = json_object_get(n, "special_tokens"), *it;
	size_t i;
	int seen_a = 0;
	if (!json_is_array(single) || (sp && !json_is_object(sp))) {
		tok_err(err, errlen, "tokenizer.json: post_processor TemplateProcessing: \"single\" must be an array");
		return -EINVAL;
	}
	json_array_foreach(single, i, it) {
		json_t *seq = json_object_get(it, "Sequence"), *spt = json_object_get(it, "SpecialToken");
		if (json_is_object(seq)) {
			if (seen_a) {
				tok_err(err, errlen, "tokenizer.json: post_processor TemplateProcessing: \"single\" has two sequences");
				return -EINVAL;
			}
			seen_a = 1;
			continue;
		}
		json_t *name = json_is_object(spt) ? json_object_get(spt, "id") : NULL;
		json_t *ent = json_is_string(name) && sp ? json_object_get(sp, json_string_value(name)) : NULL;
		json_t *ids = json_is_object(ent) ? json_object_get(ent, "ids") : NULL, *idv;
		size_t j;
		if (!json_is_array(ids)) {
			tok_err(err, errlen, "tokenizer.json: post_processor TemplateProcessing: special token %s has no ids in \"special_tokens\"",
				json_is_string(name) ? json_string_value(name) : "(unnamed)");
			return -EINVAL;
		}
		json_array_foreach(ids, j, idv) {
			json_int_t v = json_is_integer(idv) ? json_integer_value(idv) : -1;
			if (v < 0 || v >= TOK_MAX_ID) {
				tok_err(err, errlen, "tokenizer.json: post_processor TemplateProcessing: bad id for %s", json_string_value(name));
				return -EINVAL;
			}
			int32_t id = (int32_t)v;
			int rc = seen_a ? append_ids(&t->post_post, &t->n_post_post, &id, 1)
					: append_ids(&t->post_pre, &t->n_post_pre, &id, 1);
			if (rc)
				return rc;
		}
	}
	if (!seen_a) {
		tok_err(err, errlen, "tokenizer.json: post_processor TemplateProcessing: \"single\" has no $A sequence");
		return -EINVAL;
	}
	return 0;
}

static int load_model(fn_tok *t, json_t *m, char *err, size_t errlen)
{
	const char *ty = type_of(m);
	json_t *vocab = json_object_get(m, "vocab"), *merges = json_object_get(m, "merges");
	if (!json_is_object(m)) {
		tok_err(err, errlen, "tokenizer.json: missing \"model\" object");
		return -EINVAL;
	}
	if (ty && strcmp(ty, "BPE")) {
		tok_err(err, errlen, "tokenizer.json: model type \"%s\" is not supported (only BPE)", ty);
		return -ENOTSUP;
	}
	if (!json_is_object(vocab) || !json_is_array(merges)) {
		tok_err(err, errlen, "tokenizer.json: model: \"vocab\" must be an object and \"merges\" an array%s",
			ty ? "" : " (and \"type\" is missing)");
		return -EINVAL;
	}
	json_t *pfx = json_object_get(m, "continuing_subword_prefix");
	json_t *sfx = json_object_get(m, "end_of_word_suffix");
	json_t *dropout = json_object_get(m, "dropout");
	if ((pfx && !json_is_null(pfx) && !(json_is_string(pfx) && !json_string_length(pfx))) ||
	    (sfx && !json_is_null(sfx) && !(json_is_string(sfx) && !json_string_length(sfx)))) {
		tok_err(err, errlen, "tokenizer.json: model: continuing_subword_prefix / end_of_word_suffix are not supported");
		return -ENOTSUP;
	}
	if (dropout && !json_is_null(dropout) && !(json_is_number(dropout) && json_number_value(dropout) == 0)) {
		tok_err(err, errlen, "tokenizer.json: model: BPE dropout is not supported");
		return -ENOTSUP;
	}
	t->byte_fallback = json_is_true(json_object_get(m, "byte_fallback"));
	t->ignore_merges = json_is_true(json_object_get(m, "ignore_merges"));
	t->fuse_unk = json_is_true(json_object_get(m, "fuse_unk"));

	size_t nv = json_object_size(vocab);
	t->vocab = calloc(nv ? nv : 1, sizeof *t->vocab);
	if (!t->vocab)
		return -ENOMEM;
	const char *key;
	size_t klen;
	json_t *val;
	size_t i = 0;
	json_object_keylen_foreach(vocab, key, klen, val) {
		json_int_t id = json_is_integer(val) ? json_integer_value(val) : -1;
		if (id < 0 || id >= TOK_MAX_ID) {
			tok_err(err, errlen, "tokenizer.json: model.vocab: \"%.60s\" has no valid id (0..%d)", key, TOK_MAX_ID - 1);
			return -EINVAL;
		}
		if (klen == 0 || klen > TOK_MAX_STR || !utf8_valid(key, klen) || memchr(key, 0, klen)) {
			tok_err(err, errlen, "tokenizer.json: model.vocab: token with id %lld is empty, too long or not UTF-8", (long long)id);
			return -EINVAL;
		}
		char *s = xstrndup(key, klen);
		if (!s)
			return -ENOMEM;
		t->vocab[i].s = s;
		t->vocab[i].len = (uint32_t)klen;
		t->vocab[i].id = (int32_t)id;
		t->vmap.n = ++i;
		if ((size_t)id + 1 > t->n_ids)
			t->n_ids = (size_t)id + 1;
	}
	t->vmap.e = t->vocab;
	size_t dup;
	int rc = smap_build(&t->vmap, &dup);
	if (rc == -EEXIST) {
		tok_err(err, errlen, "tokenizer.json: model.vocab: token \"%.60s\" appears twice", t->vocab[dup].s);
		return -EINVAL;
	}
	if (rc)
		return rc;

	json_t *unk = json_object_get(m, "unk_token");
	t->unk_id = -1;
	if (json_is_string(unk)) {
		t->unk_id = smap_get(&t->vmap, json_string_value(unk), json_string_length(unk));
		if (t->unk_id < 0) {
			tok_err(err, errlen, "tokenizer.json: model: unk_token \"%.60s\" is not in the vocabulary", json_string_value(unk));
			return -EINVAL;
		}
	}
	for (int b = 0; b < 256; b++) {
		char name[8];
		snprintf(name, sizeof name, "<0x%02X>", b);
		t->byte_tok[b] = smap_get(&t->vmap, name, 6);
	}

	size_t nm = json_array_size(merges);
	if ((rc = mmap_init(&t->merges, nm)))
		return rc;
	json_t *mg;
	json_array_foreach(merges, i, mg) {
		const char *a = NULL, *b = NULL;
		size_t al = 0, bl = 0;
		if (json_is_string(mg)) {
			const char *s = json_string_value(mg);
			size_t n = json_string_length(mg);
			const char *sp = memchr(s, ' ', n);
			if (sp && !memchr(sp + 1, ' ', n - (size_t)(sp + 1 - s))) {
				a = s;
				al = (size_t)(sp - s);
				b = sp + 1;
				bl = n - al - 1;
			}
		} else if (json_is_array(mg) && json_array_size(mg) == 2 &&
			   json_is_string(json_array_get(mg, 0)) && json_is_string(json_array_get(mg, 1))) {
			a = json_string_value(json_array_get(mg, 0));
			al = json_string_length(json_array_get(mg, 0));
			b = json_string_value(json_array_get(mg, 1));
			bl = json_string_length(json_array_get(mg, 1));
		}
		if (!a) {
			tok_err(err, errlen, "tokenizer.json: model.merges[%zu]: must be \"a b\" or [\"a\", \"b\"]", i);
			return -EINVAL;
		}
		int32_t ia = smap_get(&t->vmap, a, al), ib = smap_get(&t->vmap, b, bl), ic = -1;
		if (ia >= 0 && ib >= 0 && al + bl <= TOK_MAX_STR) {
			char tmp[TOK_MAX_STR];
			memcpy(tmp, a, al);
			memcpy(tmp + al, b, bl);
			ic = smap_get(&t->vmap, tmp, al + bl);
		}
		if (ic < 0) {
			tok_err(err, errlen, "tokenizer.json: model.merges[%zu]: \"%.40s\" + \"%.40s\": %s not in the vocabulary",
				i, a, b, ia < 0 ? "first part" : ib < 0 ? "second part" : "merged token");
			return -EINVAL;
		}
		mmap_put(&t->merges, ia, ib, (int32_t)i, ic);
	}
	return 0;
}

static int u64_cmp(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
	return a < b ? -1 : a > b;
}

static int load_added(fn_tok *t, json_t *arr, char *err, size_t errlen)
{
	if (!arr || json_is_null(arr))
		return 0;
	if (!json_is_array(arr)) {
		tok_err(err, errlen, "tokenizer.json: \"added_tokens\" must be an array");
		return -EINVAL;
	}
	size_t n = json_array_size(arr), i;
	json_t *it;
	t->added = calloc(n ? n : 1, sizeof *t->added);
	if (!t->added)
		return -ENOMEM;
	json_array_foreach(arr, i, it) {
		json_t *id = json_object_get(it, "id"), *c = json_object_get(it, "content");
		if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= TOK_MAX_ID ||
		    !json_is_string(c) || !json_string_length(c) || json_string_length(c) > TOK_MAX_STR ||
		    memchr(json_string_value(c), 0, json_string_length(c))) {
			tok_err(err, errlen, "tokenizer.json: added_tokens[%zu]: needs an integer \"id\" and a non-empty \"content\"", i);
			return -EINVAL;
		}
		if (json_is_true(json_object_get(it, "single_word"))) {
			tok_err(err, errlen, "tokenizer.json: added_tokens[%zu]: single_word is not supported", i);
			return -ENOTSUP;
		}
		tok_added *a = &t->added[t->n_added];
		a->len = json_string_length(c);
		a->s = xstrndup(json_string_value(c), a->len);
		if (!a->s)
			return -ENOMEM;
		t->n_added++;
		a->id = (int32_t)json_integer_value(id);
		a->special = json_is_true(json_object_get(it, "special"));
		a->lstrip = json_is_true(json_object_get(it, "lstrip"));
		a->rstrip = json_is_true(json_object_get(it, "rstrip"));
		if ((size_t)a->id + 1 > t->n_ids)
			t->n_ids = (size_t)a->id + 1;
	}
	/* order: first byte, then longest first, then index (keys pack all three) */
	uint64_t *keys = malloc((t->n_added ? t->n_added : 1) * sizeof *keys);
	t->added_order = malloc((t->n_added ? t->n_added : 1) * sizeof *t->added_order);
	if (!keys || !t->added_order) {
		free(keys);
		return -ENOMEM;
	}
	for (i = 0; i < t->n_added; i++)
		keys[i] = ((uint64_t)(unsigned char)t->added[i].s[0] << 56) |
			  ((uint64_t)(TOK_MAX_STR - t->added[i].len) << 40) | i;
	qsort(keys, t->n_added, sizeof *keys, u64_cmp);
	for (i = 0; i < t->n_added; i++)
		t->added_order[i] = (uint32_t)(keys[i] & 0xFFFFFFFFFFULL);
	free(keys);
	size_t k = 0;
	for (int b = 0; b < 256; b++) {
		t->added_start[b] = (uint32_t)k;
		while (k < t->n_added && (unsigned char)t->added[t->added_order[k]].s[0] == b)
			k++;
	}
	t->added_start[256] = (uint32_t)k;
	return 0;
}

static int build_ids(fn_tok *t, char *err, size_t errlen)
{
	size_t n = t->n_ids;
	t->id_s = calloc(n ? n : 1, sizeof *t->id_s);
	t->id_len = calloc(n ? n : 1, sizeof *t->id_len);
	t->id_special = calloc(n ? n : 1, 1);
	t->id_byte = malloc((n ? n : 1) * sizeof *t->id_byte);
	if (!t->id_s || !t->id_len || !t->id_special || !t->id_byte)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		t->id_byte[i] = -1;
	for (size_t i = 0; i < t->vmap.n; i++) {
		int32_t id = t->vocab[i].id;
		if (t->id_s[id]) {
			tok_err(err, errlen, "tokenizer.json: model.vocab: id %d is used by two tokens", id);
			return -EINVAL;
		}
		t->id_s[id] = (char *)t->vocab[i].s;
		t->id_len[id] = t->vocab[i].len;
	}
	for (size_t i = 0; i < t->n_added; i++) {
		tok_added *a = &t->added[i];
		t->id_s[a->id] = a->s;
		t->id_len[a->id] = (uint32_t)a->len;
		t->id_special[a->id] = a->special;
	}
	for (int b = 0; b < 256; b++)
		if (t->byte_tok[b] >= 0)
			t->id_byte[t->byte_tok[b]] = (int16_t)b;
	for (size_t i = 0; i < t->n_post_pre; i++)
		if ((size_t)t->post_pre[i] >= n || !t->id_s[t->post_pre[i]])
			goto bad_post;
	for (size_t i = 0; i < t->n_post_post; i++)
		if ((size_t)t->post_post[i] >= n || !t->id_s[t->post_post[i]])
			goto bad_post;
	return 0;
bad_post:
	tok_err(err, errlen, "tokenizer.json: post_processor uses an id that is not in the vocabulary");
	return -EINVAL;
}

/* bos_token / eos_token in tokenizer_config.json: a string or {"content": ...} */
static int cfg_token(fn_tok *t, json_t *cfg, const char *key, char **text, int32_t *id, char *err,
		     size_t errlen)
{
	json_t *v = json_object_get(cfg, key);
	if (json_is_object(v))
		v = json_object_get(v, "content");
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v)) {
		tok_err(err, errlen, "tokenizer_config.json: \"%s\" must be a string or {\"content\": ...}", key);
		return -EINVAL;
	}
	*text = xstrndup(json_string_value(v), json_string_length(v));
	if (!*text)
		return -ENOMEM;
	*id = fn_tok_id(t, *text);
	if (*id < 0) {
		tok_err(err, errlen, "tokenizer_config.json: %s \"%.60s\" is not a token of tokenizer.json", key, *text);
		return -EINVAL;
	}
	return 0;
}

static int load_cfg(fn_tok *t, json_t *cfg, char *err, size_t errlen)
{
	int rc = 0;
	if (!json_is_object(cfg)) {
		tok_err(err, errlen, "tokenizer_config.json: not a JSON object");
		return -EINVAL;
	}
	if ((rc = cfg_token(t, cfg, "bos_token", &t->bos_text, &t->bos, err, errlen)) ||
	    (rc = cfg_token(t, cfg, "eos_token", &t->eos_text, &t->eos, err, errlen)))
		goto out;
	json_t *ct = json_object_get(cfg, "chat_template");
	const char *tpl = NULL;
	if (json_is_array(ct)) { /* [{name, template}, ...]: the "default" one */
		size_t i;
		json_t *it;
		json_array_foreach(ct, i, it) {
			json_t *nm = json_object_get(it, "name"), *tx = json_object_get(it, "template");
			if (json_is_string(nm) && !strcmp(json_string_value(nm), "default") && json_is_string(tx))
				tpl = json_string_value(tx);
		}
	} else if (json_is_string(ct)) {
		tpl = json_string_value(ct);
	} else if (ct && !json_is_null(ct)) {
		tok_err(err, errlen, "tokenizer_config.json: \"chat_template\" must be a string or a list of {name, template}");
		rc = -EINVAL;
		goto out;
	}
	if (!tpl) {
		t->chat = CHAT_NONE;
	} else if (strstr(tpl, "<|start_header_id|>")) {
		t->chat = CHAT_LLAMA3;
		if (strstr(tpl, "Cutting Knowledge") || strstr(tpl, "tools")) {
			t->chat = CHAT_UNKNOWN;
			t->chat_why = "a llama-3 template with a built-in system preamble or tools (llama-3.1 style) is not supported";
		}
	} else if (strstr(tpl, "<|im_start|>")) {
		t->chat = CHAT_CHATML;
		if (strstr(tpl, "<|im_start|>system") || strstr(tpl, "tools")) {
			t->chat = CHAT_UNKNOWN;
			t->chat_why = "a ChatML template with a built-in default system prompt or tools is not supported";
		}
	} else if (strstr(tpl, "[INST]") && strstr(tpl, "<<SYS>>")) {
		t->chat = CHAT_LLAMA2;
	} else {
		t->chat = CHAT_UNKNOWN;
		t->chat_why = "chat_template is not one of the supported families (llama-2 [INST]/<<SYS>>, llama-3 header tokens, ChatML <|im_start|>)";
	}
out:
	return rc;
}

int fn_tok_load(fn_tok **out, const char *tok_json, size_t tok_len, const char *cfg_json,
		size_t cfg_len, char *err, size_t errlen)
{
	if (err && errlen)
		err[0] = 0;
	if (!out || !tok_json) {
		tok_err(err, errlen, "no tokenizer.json given");
		return -EINVAL;
	}
	*out = NULL;
	json_error_t je;
	json_t *root = json_loadb(tok_json, tok_len, 0, &je), *cfg = NULL;
	if (!root) {
		tok_err(err, errlen, "tokenizer.json: %s (line %d, column %d)", je.text, je.line, je.column);
		return -EINVAL;
	}
	if (cfg_json) {
		cfg = json_loadb(cfg_json, cfg_len, JSON_DECODE_INT_AS_REAL, &je);
		if (!cfg) {
			tok_err(err, errlen, "tokenizer_config.json: %s (line %d)", je.text, je.line);
			json_decref(root);
			return -EINVAL;
		}
	}
	int rc = fn_tok_load_json(out, root, cfg, err, errlen);
	json_decref(root);
	json_decref(cfg);
	return rc;
}

int fn_tok_load_json(fn_tok **out, struct json_t *root, struct json_t *cfg, char *err, size_t errlen)
{
	char dummy[8];
	if (!err || !errlen) {
		err = dummy;
		errlen = sizeof dummy;
	}
	err[0] = 0;
	if (!out || !root) {
		tok_err(err, errlen, "no tokenizer.json given");
		return -EINVAL;
	}
	*out = NULL;
	bl_init();
	int rc = -ENOMEM;
	fn_tok *t = calloc(1, sizeof *t);
	if (!t)
		goto fail;
	t->bos = t->eos = -1;
	t->unk_id = -1;
	if (!json_is_object(root)) {
		tok_err(err, errlen, "tokenizer.json: not a JSON object");
		rc = -EINVAL;
		goto fail;
	}
	json_t *model = json_object_get(root, "model");
	if (!model) {
		tok_err(err, errlen, "tokenizer.json: missing \"model\"");
		rc = -EINVAL;
		goto fail;
	}
	if ((rc = load_model(t, model, err, errlen)) ||
	    (rc = load_added(t, json_object_get(root, "added_tokens"), err, errlen)) ||
	    (rc = load_norm(t, json_object_get(root, "normalizer") ? json_object_get(root, "normalizer") : json_null(), 0, err, errlen)) ||
	    (rc = load_pre(t, json_object_get(root, "pre_tokenizer") ? json_object_get(root, "pre_tokenizer") : json_null(), 0, err, errlen)) ||
	    (rc = load_post(t, json_object_get(root, "post_processor") ? json_object_get(root, "post_processor") : json_null(), 0, err, errlen)) ||
	    (rc = load_dec(t, json_object_get(root, "decoder") ? json_object_get(root, "decoder") : json_null(), 0, err, errlen)) ||
	    (rc = build_ids(t, err, errlen)))
		goto fail;
	if (t->n_ids == 0) {
		tok_err(err, errlen, "tokenizer.json: empty vocabulary");
		rc = -EINVAL;
		goto fail;
	}
	if (cfg && (rc = load_cfg(t, cfg, err, errlen)))
		goto fail;
	if (t->bos < 0 && t->n_post_pre)
		t->bos = t->post_pre[0];
	static const char *bos_names[] = {"<s>", "<|begin_of_text|>", NULL};
	static const char *eos_names[] = {"</s>", "<|end_of_text|>", "<|endoftext|>", NULL};
	for (int i = 0; t->bos < 0 && bos_names[i]; i++)
		t->bos = fn_tok_id(t, bos_names[i]);
	for (int i = 0; t->eos < 0 && eos_names[i]; i++)
		t->eos = fn_tok_id(t, eos_names[i]);
	*out = t;
	return 0;
fail:
	if (rc == -ENOMEM && !err[0])
		tok_err(err, errlen, "out of memory loading the tokenizer");
	fn_tok_free(t);
	return rc;
}

int32_t fn_tok_bos(const fn_tok *t) { return t ? t->bos : -1; }
int32_t fn_tok_eos(const fn_tok *t) { return t ? t->eos : -1; }
size_t fn_tok_vocab_size(const fn_tok *t) { return t ? t->n_ids : 0; }

/* ---------------------------------------------------------------- encode */

/* pieces: byte ranges into a buffer */
typedef struct {
	size_t off, len;
} tpiece;

typedef struct {
	tpiece *p;
	size_t n, cap;
} tpieces;

static int pieces_push(tpieces *v, size_t off, size_t len)
{
	if (!len)
		return 0;
	if (v->n == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 64;
		tpiece *p = realloc(v->p, cap * sizeof *p);
		if (!p)
			return -ENOMEM;
		v->p = p;
		v->cap = cap;
	}
	v->p[v->n].off = off;
	v->p[v->n].len = len;
	v->n++;
	return 0;
}

typedef struct {
	int32_t id, prev, next;
	uint32_t len;
} tsym;

typedef struct {
	int32_t rank, pos, id;
} theap_ent;

/* per-call scratch */
typedef struct {
	tbuf a, b, w;
	tpieces pa, pb;
	tsym *sym;
	size_t sym_cap;
	theap_ent *heap;
	size_t heap_cap;
} tscratch;

static void scratch_free(tscratch *s)
{
	free(s->a.p);
	free(s->b.p);
	free(s->w.p);
	free(s->pa.p);
	free(s->pb.p);
	free(s->sym);
	free(s->heap);
}

static int heap_less(const theap_ent *x, const theap_ent *y)
{
	return x->rank != y->rank ? x->rank < y->rank : x->pos < y->pos;
}

static void heap_push(theap_ent *h, size_t *n, theap_ent e)
{
	size_t i = (*n)++;
	while (i) {
		size_t p = (i - 1) / 2;
		if (!heap_less(&e, &h[p]))
			break;
		h[i] = h[p];
		i = p;
	}
	h[i] = e;
}

static theap_ent heap_pop(theap_ent *h, size_t *n)
{
	theap_ent top = h[0], last = h[--(*n)];
	size_t i = 0;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= *n)
			break;
		if (c + 1 < *n && heap_less(&h[c + 1], &h[c]))
			c++;
		if (!heap_less(&h[c], &last))
			break;
		h[i] = h[c];
		i = c;
	}
	if (*n)
		h[i] = last;
	return top;
}

static int sym_add(tscratch *s, size_t *n, int32_t id, uint32_t len)
{
	if (*n == s->sym_cap) {
		size_t cap = s->sym_cap ? s->sym_cap * 2 : 64;
		tsym *p = realloc(s->sym, cap * sizeof *p);
		if (!p)
			return -ENOMEM;
		s->sym = p;
		s->sym_cap = cap;
	}
	s->sym[*n].id = id;
	s->sym[*n].len = len;
	s->sym[*n].prev = (int32_t)*n - 1;
	s->sym[*n].next = (int32_t)*n + 1;
	(*n)++;
	return 0;
}

/* BPE on one word (already in the model's alphabet) */
static int bpe_word(const fn_tok *t, const char *w, size_t n, tids *out, tscratch *s)
{
	if (!n)
		return 0;
	if (t->ignore_merges) {
		int32_t id = smap_get(&t->vmap, w, n);
		if (id >= 0)
			return tids_push(out, id);
	}
	size_t ns = 0;
	int32_t unk_len = -1;
	for (size_t i = 0; i < n;) {
		uint32_t cp;
		size_t cl = cp_at(w, n, i, &cp);
		int32_t id = smap_get(&t->vmap, w + i, cl);
		if (id >= 0) {
			if (unk_len >= 0 && sym_add(s, &ns, t->unk_id, (uint32_t)unk_len))
				return -ENOMEM;
			unk_len = -1;
			if (sym_add(s, &ns, id, (uint32_t)cl))
				return -ENOMEM;
		} else {
			int have_bytes = t->byte_fallback;
			for (size_t k = 0; have_bytes && k < cl; k++)
				have_bytes = t->byte_tok[(unsigned char)w[i + k]] >= 0;
			if (have_bytes) {
				/* an unk pending stays pending, as in the Rust crate */
				for (size_t k = 0; k < cl; k++)
					if (sym_add(s, &ns, t->byte_tok[(unsigned char)w[i + k]], 1))
						return -ENOMEM;
			} else if (t->unk_id >= 0) {
				if (unk_len >= 0 && t->fuse_unk) {
					unk_len += (int32_t)cl;
				} else {
					if (unk_len >= 0 && sym_add(s, &ns, t->unk_id, (uint32_t)unk_len))
						return -ENOMEM;
					unk_len = (int32_t)cl;
				}
			} /* else: the character is dropped, as in the Rust crate */
		}
		i += cl;
	}
	if (unk_len >= 0 && sym_add(s, &ns, t->unk_id, (uint32_t)unk_len))
		return -ENOMEM;
	if (!ns)
		return 0;
	s->sym[ns - 1].next = -1;
	if (ns > 1) {
		if (s->heap_cap < ns * 2) {
			theap_ent *h = realloc(s->heap, ns * 2 * sizeof *h);
			if (!h)
				return -ENOMEM;
			s->heap = h;
			s->heap_cap = ns * 2;
		}
		size_t hn = 0;
		for (size_t i = 0; i + 1 < ns; i++) {
			const tok_merge *m = mmap_get(&t->merges, s->sym[i].id, s->sym[i + 1].id);
			if (m)
				heap_push(s->heap, &hn, (theap_ent){m->rank, (int32_t)i, m->id});
		}
		while (hn) {
			theap_ent top = heap_pop(s->heap, &hn);
			tsym *a = &s->sym[top.pos];
			if (!a->len || a->next < 0)
				continue;
			tsym *b = &s->sym[a->next];
			const tok_merge *m = mmap_get(&t->merges, a->id, b->id);
			if (!m || m->id != top.id)
				continue;
			a->id = top.id;
			a->len += b->len;
			b->len = 0;
			a->next = b->next;
			if (a->next >= 0)
				s->sym[a->next].prev = top.pos;
			/* the heap holds at most one entry per live pair plus stale ones; grow if needed */
			if (hn + 2 > s->heap_cap) {
				theap_ent *h = realloc(s->heap, s->heap_cap * 2 * sizeof *h);
				if (!h)
					return -ENOMEM;
				s->heap = h;
				s->heap_cap *= 2;
			}
			if (a->prev >= 0) {
				const tok_merge *pm = mmap_get(&t->merges, s->sym[a->prev].id, a->id);
				if (pm)
					heap_push(s->heap, &hn, (theap_ent){pm->rank, a->prev, pm->id});
			}
			if (a->next >= 0) {
				const tok_merge *nm = mmap_get(&t->merges, a->id, s->sym[a->next].id);
				if (nm)
					heap_push(s->heap, &hn, (theap_ent){nm->rank, top.pos, nm->id});
			}
		}
	}
	for (int32_t i = 0; i >= 0; i = s->sym[i].next)
		if (tids_push(out, s->sym[i].id))
			return -ENOMEM;
	return 0;
}

/* ---- the hand-written split patterns. Each returns the end of the match starting at i
 * (every position matches some alternative, so the result is > i). */

static int is_other(uint32_t c) { return !uni_is_space(c) && !uni_is_letter(c) && !uni_is_number(c); }

static size_t ws_run_end(const char *s, size_t n, size_t i, size_t *last_start)
{
	uint32_t c;
	size_t j = i;
	*last_start = i;
	while (j < n) {
		size_t l = cp_at(s, n, j, &c);
		if (!uni_is_space(c))
			break;
		*last_start = j;
		j += l;
	}
	return j;
}

static size_t contraction(const char *s, size_t n, size_t i, int icase)
{
	if (s[i] != '\'' || i + 1 >= n)
		return 0;
	char c1 = s[i + 1], c2 = i + 2 < n ? s[i + 2] : 0;
	if (icase) {
		if (c1 >= 'A' && c1 <= 'Z')
			c1 = (char)(c1 + 32);
		if (c2 >= 'A' && c2 <= 'Z')
			c2 = (char)(c2 + 32);
	}
	if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd')
		return i + 2;
	if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l'))
		return i + 3;
	return 0;
}

/* \s+(?!\S) | \s+ at i (s[i] is whitespace) */
static size_t ws_tail(const char *s, size_t n, size_t i)
{
	size_t last;
	size_t end = ws_run_end(s, n, i, &last);
	if (end == n)
		return end;
	if (last > i) /* at least two whitespace chars: leave the last for the next word */
		return last;
	return end;
}

static size_t split_gpt2(const char *s, size_t n, size_t i)
{
	size_t e = contraction(s, n, i, 0);
	if (e)
		return e;
	uint32_t c0, c1 = 0;
	size_t l0 = cp_at(s, n, i, &c0), j = i;
	if (i + l0 < n)
		cp_at(s, n, i + l0, &c1);
	int sp = c0 == ' ' && i + l0 < n;
	uint32_t c = sp ? c1 : c0;
	if (sp)
		j = i + 1;
	int (*cls)(uint32_t) = NULL;
	if (uni_is_letter(c))
		cls = uni_is_letter;
	else if (uni_is_number(c))
		cls = uni_is_number;
	else if (is_other(c))
		cls = is_other;
	if (cls && (sp || c == c0)) {
		while (j < n) {
			uint32_t d;
			size_t l = cp_at(s, n, j, &d);
			if (!cls(d))
				break;
			j += l;
		}
		return j;
	}
	return ws_tail(s, n, i);
}

static size_t split_llama3(const char *s, size_t n, size_t i)
{
	size_t e = contraction(s, n, i, 1);
	if (e)
		return e;
	uint32_t c0, c1 = 0;
	size_t l0 = cp_at(s, n, i, &c0), j;
	int has1 = i + l0 < n;
	if (has1)
		cp_at(s, n, i + l0, &c1);
	/* [^\r\n\p{L}\p{N}]?\p{L}+ */
	if (uni_is_letter(c0) || (has1 && c0 != '\r' && c0 != '\n' && !uni_is_number(c0) && uni_is_letter(c1))) {
		j = uni_is_letter(c0) ? i : i + l0;
		while (j < n) {
			uint32_t d;
			size_t l = cp_at(s, n, j, &d);
			if (!uni_is_letter(d))
				break;
			j += l;
		}
		return j;
	}
	/* \p{N}{1,3} */
	if (uni_is_number(c0)) {
		j = i;
		for (int k = 0; k < 3 && j < n; k++) {
			uint32_t d;
			size_t l = cp_at(s, n, j, &d);
			if (!uni_is_number(d))
				break;
			j += l;
		}
		return j;
	}
	/* ' ?[^\s\p{L}\p{N}]+[\r\n]*' */
	if (is_other(c0) || (c0 == ' ' && has1 && is_other(c1))) {
		j = c0 == ' ' ? i + 1 : i;
		while (j < n) {
			uint32_t d;
			size_t l = cp_at(s, n, j, &d);
			if (!is_other(d))
				break;
			j += l;
		}
		while (j < n && (s[j] == '\r' || s[j] == '\n'))
			j++;
		return j;
	}
	/* \s*[\r\n]+ : whitespace up to and including the run's last CR/LF */
	size_t last;
	size_t end = ws_run_end(s, n, i, &last);
	for (size_t k = end; k > i; k--)
		if (s[k - 1] == '\r' || s[k - 1] == '\n')
			return k;
	(void)last;
	return ws_tail(s, n, i);
}

/* Applies the pre-tokenizer chain to the normalized segment in s->a (pieces in s->pa). */
static int pre_tokenize(const fn_tok *t, tscratch *s, int first)
{
	for (size_t k = 0; k < t->n_pre; k++) {
		const tok_pre *p = &t->pre[k];
		s->pb.n = 0;
		s->b.n = 0;
		for (size_t q = 0; q < s->pa.n; q++) {
			size_t off = s->pa.p[q].off, len = s->pa.p[q].len;
			size_t base = s->b.n;
			const char *src = s->a.p + off;
			if (p->type == PRE_METASPACE) {
				int pre = p->prepend == PREPEND_ALWAYS || (p->prepend == PREPEND_FIRST && first && q == 0);
				/* the check comes after ' ' -> replacement, as in the Rust crate */
				if (pre && !(len && src[0] == ' ') &&
				    !(len >= p->repl_len && !memcmp(src, p->repl, p->repl_len)) &&
				    tbuf_put(&s->b, p->repl, p->repl_len))
					return -ENOMEM;
				for (size_t i = 0; i < len; i++) {
					if (src[i] == ' ' ? tbuf_put(&s->b, p->repl, p->repl_len)
							  : tbuf_put(&s->b, src + i, 1))
						return -ENOMEM;
				}
				size_t end = s->b.n, start = base;
				if (p->split) { /* MergedWithNext: each replacement starts a new piece */
					for (size_t i = base + 1; i + p->repl_len <= end; i++) {
						if (!memcmp(s->b.p + i, p->repl, p->repl_len)) {
							if (pieces_push(&s->pb, start, i - start))
								return -ENOMEM;
							start = i;
						}
					}
				}
				if (pieces_push(&s->pb, start, end - start))
					return -ENOMEM;
				continue;
			}
			if (p->type == PRE_BYTELEVEL && p->add_prefix_space && !(len && src[0] == ' ') &&
			    tbuf_put(&s->b, " ", 1))
				return -ENOMEM;
			if (tbuf_put(&s->b, src, len))
				return -ENOMEM;
			size_t end = s->b.n;
			const char *b = s->b.p + base;
			size_t bl = end - base;
			if (p->type == PRE_BYTELEVEL && !p->use_regex) {
				if (pieces_push(&s->pb, base, bl))
					return -ENOMEM;
				continue;
			}
			for (size_t i = 0; i < bl;) {
				size_t e = p->type == PRE_SPLIT_LLAMA3 ? split_llama3(b, bl, i) : split_gpt2(b, bl, i);
				if (pieces_push(&s->pb, base + i, e - i))
					return -ENOMEM;
				i = e;
			}
		}
		tbuf tb = s->a;
		s->a = s->b;
		s->b = tb;
		tpieces tp = s->pa;
		s->pa = s->pb;
		s->pb = tp;
	}
	return 0;
}

static int encode_segment(const fn_tok *t, const char *text, size_t len, int first, tids *out,
			  tscratch *s)
{
	if (!len)
		return 0;
	s->a.n = 0;
	s->pa.n = 0;
	if (tbuf_put(&s->a, text, len))
		return -ENOMEM;
	for (size_t k = 0; k < t->n_norm; k++) {
		const tok_norm *nm = &t->norm[k];
		s->b.n = 0;
		if (nm->type == NORM_PREPEND) {
			if (s->a.n && (tbuf_put(&s->b, nm->a, nm->alen) || tbuf_put(&s->b, s->a.p, s->a.n)))
				return -ENOMEM;
			if (!s->a.n)
				continue;
		} else {
			size_t i = 0, run = 0;
			while (i + nm->alen <= s->a.n) {
				if (!memcmp(s->a.p + i, nm->a, nm->alen)) {
					if (tbuf_put(&s->b, s->a.p + run, i - run) || tbuf_put(&s->b, nm->b, nm->blen))
						return -ENOMEM;
					i += nm->alen;
					run = i;
				} else {
					i++;
				}
			}
			if (tbuf_put(&s->b, s->a.p + run, s->a.n - run))
				return -ENOMEM;
		}
		tbuf tb = s->a;
		s->a = s->b;
		s->b = tb;
	}
	if (pieces_push(&s->pa, 0, s->a.n))
		return -ENOMEM;
	if (pre_tokenize(t, s, first))
		return -ENOMEM;
	for (size_t q = 0; q < s->pa.n; q++) {
		const char *w = s->a.p + s->pa.p[q].off;
		size_t wl = s->pa.p[q].len;
		if (t->byte_level) {
			s->w.n = 0;
			for (size_t i = 0; i < wl; i++)
				if (tbuf_putcp(&s->w, bl_byte_char[(unsigned char)w[i]]))
					return -ENOMEM;
			w = s->w.p;
			wl = s->w.n;
		}
		int rc = bpe_word(t, w, wl, out, s);
		if (rc)
			return rc;
	}
	return 0;
}

/* longest added token at text[i], or NULL */
static const tok_added *match_added(const fn_tok *t, const char *text, size_t len, size_t i)
{
	unsigned c = (unsigned char)text[i];
	for (uint32_t k = t->added_start[c]; k < t->added_start[c + 1]; k++) {
		const tok_added *a = &t->added[t->added_order[k]];
		if (a->len <= len - i && !memcmp(text + i, a->s, a->len))
			return a;
	}
	return NULL;
}

int fn_tok_encode(const fn_tok *t, const char *text, size_t len, int add_special, int32_t **ids,
		  size_t *n)
{
	if (!t || !ids || !n || (!text && len))
		return -EINVAL;
	*ids = NULL;
	*n = 0;
	if (len && !utf8_valid(text, len))
		return -EINVAL;
	tids out = {0};
	tscratch s = {0};
	int rc = 0;
	if (add_special)
		for (size_t i = 0; i < t->n_post_pre; i++)
			if ((rc = tids_push(&out, t->post_pre[i])))
				goto fail;
	size_t seg = 0, i = 0;
	while (i < len) {
		const tok_added *a = t->n_added ? match_added(t, text, len, i) : NULL;
		if (!a) {
			i++;
			continue;
		}
		size_t seg_end = i, next = i + a->len;
		if (a->lstrip) { /* whitespace before the token belongs to it */
			while (seg_end > seg) {
				size_t k = seg_end - 1;
				while (k > seg && ((unsigned char)text[k] & 0xC0) == 0x80)
					k--;
				uint32_t cp;
				cp_at(text, len, k, &cp);
				if (!uni_is_space(cp))
					break;
				seg_end = k;
			}
		}
		if (a->rstrip) {
			while (next < len) {
				uint32_t cp;
				size_t l = cp_at(text, len, next, &cp);
				if (!uni_is_space(cp))
					break;
				next += l;
			}
		}
		if ((rc = encode_segment(t, text + seg, seg_end - seg, seg == 0, &out, &s)) ||
		    (rc = tids_push(&out, a->id)))
			goto fail;
		i = seg = next;
	}
	if ((rc = encode_segment(t, text + seg, len - seg, seg == 0, &out, &s)))
		goto fail;
	if (add_special)
		for (size_t k = 0; k < t->n_post_post; k++)
			if ((rc = tids_push(&out, t->post_post[k])))
				goto fail;
	scratch_free(&s);
	*ids = out.p;
	*n = out.n;
	return 0;
fail:
	scratch_free(&s);
	free(out.p);
	return rc;
}

/* ---------------------------------------------------------------- decode */

/* token list: strings in one buffer */
typedef struct {
	tbuf buf;
	tpieces pc;
} tstrs;

static int strs_add(tstrs *v, const char *s, size_t n)
{
	size_t off = v->buf.n;
	if (tbuf_put(&v->buf, s, n))
		return -ENOMEM;
	if (!n) { /* keep empty tokens as pieces too */
		if (v->pc.n == v->pc.cap) {
			size_t cap = v->pc.cap ? v->pc.cap * 2 : 64;
			tpiece *p = realloc(v->pc.p, cap * sizeof *p);
			if (!p)
				return -ENOMEM;
			v->pc.p = p;
			v->pc.cap = cap;
		}
		v->pc.p[v->pc.n].off = off;
		v->pc.p[v->pc.n++].len = 0;
		return 0;
	}
	return pieces_push(&v->pc, off, n);
}

static void strs_free(tstrs *v)
{
	free(v->buf.p);
	free(v->pc.p);
}

static int flush_bytes(tstrs *o, tbuf *bytes)
{
	int rc = 0;
	if (!bytes->n)
		return 0;
	if (utf8_valid(bytes->p, bytes->n)) {
		rc = strs_add(o, bytes->p, bytes->n);
	} else {
		tbuf r = {0};
		for (size_t i = 0; i < bytes->n && !rc; i++)
			rc = tbuf_putcp(&r, 0xFFFD);
		if (!rc)
			rc = strs_add(o, r.p, r.n);
		free(r.p);
	}
	bytes->n = 0;
	return rc;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
		return (c | 0x20) - 'a' + 10;
	return -1;
}

static int dec_step(const tok_dec *d, tstrs *in, tstrs *o)
{
	int rc = 0;
	if (d->type == DEC_BYTELEVEL || d->type == DEC_FUSE) {
		tbuf all = {0};
		for (size_t i = 0; i < in->pc.n && !rc; i++) {
			const char *s = in->buf.p + in->pc.p[i].off;
			size_t n = in->pc.p[i].len;
			if (d->type == DEC_FUSE) {
				rc = tbuf_put(&all, s, n);
				continue;
			}
			size_t mark = all.n;
			for (size_t j = 0; j < n && !rc;) {
				uint32_t cp;
				size_t l = cp_at(s, n, j, &cp);
				if (cp >= 324 || bl_char_byte[cp] < 0) { /* not byte-level: raw bytes */
					all.n = mark;
					rc = tbuf_put(&all, s, n);
					break;
				}
				char byte = (char)bl_char_byte[cp];
				rc = tbuf_put(&all, &byte, 1);
				j += l;
			}
		}
		if (!rc) {
			if (d->type == DEC_FUSE) {
				rc = strs_add(o, all.p ? all.p : "", all.n);
			} else {
				tbuf txt = {0};
				rc = utf8_put_lossy(&txt, all.p ? all.p : "", all.n);
				if (!rc)
					rc = strs_add(o, txt.p ? txt.p : "", txt.n);
				free(txt.p);
			}
		}
		free(all.p);
		return rc;
	}
	if (d->type == DEC_BYTEFALLBACK) {
		tbuf bytes = {0};
		for (size_t i = 0; i < in->pc.n && !rc; i++) {
			const char *s = in->buf.p + in->pc.p[i].off;
			size_t n = in->pc.p[i].len;
			if (n == 6 && !memcmp(s, "<0x", 3) && s[5] == '>' && hexval(s[3]) >= 0 &&
			    hexval(s[4]) >= 0) {
				char byte = (char)(hexval(s[3]) * 16 + hexval(s[4]));
				rc = tbuf_put(&bytes, &byte, 1);
				continue;
			}
			if (!(rc = flush_bytes(o, &bytes)))
				rc = strs_add(o, s, n);
		}
		if (!rc)
			rc = flush_bytes(o, &bytes);
		free(bytes.p);
		return rc;
	}
	for (size_t i = 0; i < in->pc.n && !rc; i++) {
		const char *s = in->buf.p + in->pc.p[i].off;
		size_t n = in->pc.p[i].len;
		tbuf r = {0};
		if (d->type == DEC_REPLACE || d->type == DEC_METASPACE) {
			/* Metaspace: the replacement becomes ' ', except in the first token, where the
			 * Rust crate drops every one of them unless prepend_scheme is "never" */
			int drop = d->type == DEC_METASPACE && i == 0 && d->prepend != PREPEND_NEVER;
			const char *to = d->type == DEC_REPLACE ? d->b : " ";
			size_t tol = d->type == DEC_REPLACE ? d->blen : drop ? 0 : 1;
			size_t j = 0, run = 0;
			while (j + d->alen <= n && !rc) {
				if (!memcmp(s + j, d->a, d->alen)) {
					rc = tbuf_put(&r, s + run, j - run);
					if (!rc)
						rc = tbuf_put(&r, to, tol);
					j += d->alen;
					run = j;
				} else {
					j++;
				}
			}
			if (!rc)
				rc = tbuf_put(&r, s + run, n - run);
			if (!rc)
				rc = strs_add(o, r.p ? r.p : "", r.n);
		} else { /* DEC_STRIP */
			size_t a = 0, b = n;
			for (int k = 0; k < d->start && a + d->alen <= b && !memcmp(s + a, d->a, d->alen); k++)
				a += d->alen;
			for (int k = 0; k < d->stop && b >= a + d->alen && !memcmp(s + b - d->alen, d->a, d->alen); k++)
				b -= d->alen;
			rc = strs_add(o, s + a, b - a);
		}
		free(r.p);
	}
	return rc;
}

int fn_tok_decode(const fn_tok *t, const int32_t *ids, size_t n, int skip_special, char **text,
		  size_t *len)
{
	if (!t || !text || (!ids && n))
		return -EINVAL;
	*text = NULL;
	if (len)
		*len = 0;
	tstrs a = {0}, b = {0};
	tbuf r = {0};
	int rc = 0;
	for (size_t i = 0; i < n; i++) {
		int32_t id = ids[i];
		if (id < 0 || (size_t)id >= t->n_ids || !t->id_s[id]) {
			rc = -EINVAL;
			goto out;
		}
		if (skip_special && t->id_special[id])
			continue;
		if ((rc = strs_add(&a, t->id_s[id], t->id_len[id])))
			goto out;
	}
	if (t->has_decoder) {
		for (size_t k = 0; k < t->n_dec; k++) {
			b.buf.n = 0;
			b.pc.n = 0;
			if ((rc = dec_step(&t->dec[k], &a, &b)))
				goto out;
			tstrs tmp = a;
			a = b;
			b = tmp;
		}
	}
	for (size_t i = 0; i < a.pc.n; i++) {
		if (!t->has_decoder && i && (rc = tbuf_put(&r, " ", 1)))
			goto out;
		if ((rc = tbuf_put(&r, a.buf.p + a.pc.p[i].off, a.pc.p[i].len)))
			goto out;
	}
	if ((rc = tbuf_reserve(&r, 0)))
		goto out;
	r.p[r.n] = 0;
	*text = r.p;
	if (len)
		*len = r.n;
	r.p = NULL;
out:
	free(r.p);
	strs_free(&a);
	strs_free(&b);
	return rc;
}

/* ---------------------------------------------------------------- streaming decode */

struct fn_tok_stream {
	const fn_tok *t;
	int skip;
	tids win;     /* ids since the window start */
	char *prefix; /* decode(win) already emitted */
	size_t plen;
};

int fn_tok_stream_new(const fn_tok *t, int skip_special, fn_tok_stream **out)
{
	if (!t || !out)
		return -EINVAL;
	fn_tok_stream *s = calloc(1, sizeof *s);
	if (!s)
		return -ENOMEM;
	s->t = t;
	s->skip = skip_special;
	*out = s;
	return 0;
}

void fn_tok_stream_free(fn_tok_stream *s)
{
	if (!s)
		return;
	free(s->win.p);
	free(s->prefix);
	free(s);
}

static int empty_text(char **text, size_t *len)
{
	*text = calloc(1, 1);
	if (len)
		*len = 0;
	return *text ? 0 : -ENOMEM;
}

static int ends_with_fffd(const char *s, size_t n)
{
	return n >= 3 && (unsigned char)s[n - 3] == 0xEF && (unsigned char)s[n - 2] == 0xBF &&
	       (unsigned char)s[n - 1] == 0xBD;
}

int fn_tok_stream_push(fn_tok_stream *s, int32_t id, char **text, size_t *len)
{
	if (!s || !text)
		return -EINVAL;
	*text = NULL;
	const fn_tok *t = s->t;
	if (id < 0 || (size_t)id >= t->n_ids || !t->id_s[id])
		return -EINVAL;
	if ((s->skip && t->id_special[id]))
		return empty_text(text, len);
	if (tids_push(&s->win, id))
		return -ENOMEM;
	/* a byte-fallback token may be continued by the next one: wait */
	if (t->id_byte[id] >= 0)
		return empty_text(text, len);
	char *d;
	size_t dl;
	int rc = fn_tok_decode(t, s->win.p, s->win.n, s->skip, &d, &dl);
	if (rc)
		return rc;
	if (dl <= s->plen || memcmp(d, s->prefix ? s->prefix : "", s->plen)) {
		free(d);
		return empty_text(text, len);
	}
	if (ends_with_fffd(d, dl)) {
		/* only the last character can still change (an unfinished UTF-8 sequence completed
		 * by the next token): emit up to it, keep the window */
		if (dl - 3 <= s->plen) {
			free(d);
			return empty_text(text, len);
		}
		char *emit = xstrndup(d + s->plen, dl - 3 - s->plen);
		if (!emit) {
			free(d);
			return -ENOMEM;
		}
		if (len)
			*len = dl - 3 - s->plen;
		d[dl - 3] = 0;
		free(s->prefix);
		s->prefix = d;
		s->plen = dl - 3;
		*text = emit;
		return 0;
	}
	size_t elen = dl - s->plen;
	char *emit = xstrndup(d + s->plen, elen);
	free(d);
	if (!emit)
		return -ENOMEM;
	/* restart the window at this token so the cost per push stays bounded */
	char *pd;
	size_t pl;
	if ((rc = fn_tok_decode(t, &id, 1, s->skip, &pd, &pl))) {
		free(emit);
		return rc;
	}
	free(s->prefix);
	s->prefix = pd;
	s->plen = pl;
	s->win.p[0] = id;
	s->win.n = 1;
	*text = emit;
	if (len)
		*len = elen;
	return 0;
}

int fn_tok_stream_finish(fn_tok_stream *s, char **text, size_t *len)
{
	if (!s || !text)
		return -EINVAL;
	*text = NULL;
	char *d;
	size_t dl;
	int rc = fn_tok_decode(s->t, s->win.p, s->win.n, s->skip, &d, &dl);
	if (rc)
		return rc;
	size_t skip = (dl >= s->plen && !memcmp(d, s->prefix ? s->prefix : "", s->plen)) ? s->plen : 0;
	char *emit = xstrndup(d + skip, dl - skip);
	free(d);
	if (!emit)
		return -ENOMEM;
	free(s->prefix);
	s->prefix = NULL;
	s->plen = 0;
	s->win.n = 0;
	*text = emit;
	if (len)
		*len = dl - skip;
	return 0;
}

/* ---------------------------------------------------------------- chat */

/* Python str.strip() */
static void py_strip(const char *s, size_t *a, size_t *b)
{
	size_t n = *b;
	size_t i = *a;
	while (i < n) {
		uint32_t cp;
		size_t l = cp_at(s, n, i, &cp);
		if (!py_is_space(cp))
			break;
		i += l;
	}
	size_t j = n;
	while (j > i) {
		size_t k = j - 1;
		while (k > i && ((unsigned char)s[k] & 0xC0) == 0x80)
			k--;
		uint32_t cp;
		cp_at(s, n, k, &cp);
		if (!py_is_space(cp))
			break;
		j = k;
	}
	*a = i;
	*b = j;
}

static int put_stripped(tbuf *b, const char *s)
{
	size_t a = 0, e = strlen(s);
	py_strip(s, &a, &e);
	return tbuf_put(b, s + a, e - a);
}

int fn_tok_chat(const fn_tok *t, const fn_tok_msg *m, size_t n, char **prompt, char *err,
		size_t errlen)
{
	if (!t || !prompt || (!m && n))
		return -EINVAL;
	*prompt = NULL;
	if (t->chat == CHAT_NONE) {
		tok_err(err, errlen, "the tokenizer has no chat template (tokenizer_config.json \"chat_template\")");
		return -ENOTSUP;
	}
	if (t->chat == CHAT_UNKNOWN) {
		tok_err(err, errlen, "%s", t->chat_why);
		return -ENOTSUP;
	}
	for (size_t i = 0; i < n; i++) {
		const char *r = m[i].role;
		if (!r || !m[i].content || !utf8_valid(m[i].content, strlen(m[i].content)) ||
		    (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant"))) {
			tok_err(err, errlen, "messages[%zu]: %s", i, !r || !m[i].content ? "needs a role and content" :
				!utf8_valid(m[i].content, strlen(m[i].content)) ? "content is not UTF-8" :
				"role must be system, user or assistant");
			return -EINVAL;
		}
	}
	if (!n) {
		tok_err(err, errlen, "no messages");
		return -EINVAL;
	}
	tbuf b = {0};
	int rc = 0;
	const char *bos = t->bos_text ? t->bos_text : t->bos >= 0 ? t->id_s[t->bos] : NULL;
	const char *eos = t->eos_text ? t->eos_text : t->eos >= 0 ? t->id_s[t->eos] : NULL;
	if (t->chat == CHAT_LLAMA3) {
		if (!bos) {
			tok_err(err, errlen, "llama-3 chat template needs a bos_token");
			return -ENOTSUP;
		}
		for (size_t i = 0; i < n && !rc; i++) {
			if (i == 0)
				rc = tbuf_puts(&b, bos);
			if (!rc)
				rc = tbuf_puts(&b, "<|start_header_id|>");
			if (!rc)
				rc = tbuf_puts(&b, m[i].role);
			if (!rc)
				rc = tbuf_puts(&b, "<|end_header_id|>\n\n");
			if (!rc)
				rc = put_stripped(&b, m[i].content);
			if (!rc)
				rc = tbuf_puts(&b, "<|eot_id|>");
		}
		if (!rc)
			rc = tbuf_puts(&b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
	} else if (t->chat == CHAT_CHATML) {
		for (size_t i = 0; i < n && !rc; i++) {
			rc = tbuf_puts(&b, "<|im_start|>");
			if (!rc)
				rc = tbuf_puts(&b, m[i].role);
			if (!rc)
				rc = tbuf_puts(&b, "\n");
			if (!rc)
				rc = tbuf_puts(&b, m[i].content);
			if (!rc)
				rc = tbuf_puts(&b, "<|im_end|>\n");
		}
		if (!rc)
			rc = tbuf_puts(&b, "<|im_start|>assistant\n");
	} else { /* CHAT_LLAMA2 */
		if (!bos || !eos) {
			tok_err(err, errlen, "llama-2 chat template needs bos_token and eos_token");
			return -ENOTSUP;
		}
		size_t start = 0;
		const char *sys = NULL;
		if (!strcmp(m[0].role, "system")) {
			sys = m[0].content;
			start = 1;
		}
		for (size_t i = start; i < n && !rc; i++) {
			int want_user = (i - start) % 2 == 0;
			if ((strcmp(m[i].role, "user") == 0) != want_user) {
				free(b.p);
				tok_err(err, errlen, "messages[%zu]: conversation roles must alternate user/assistant/user/assistant/... (after an optional system message)", i);
				return -EINVAL;
			}
			tbuf c = {0};
			if (i == start && sys) {
				rc = tbuf_puts(&c, "<<SYS>>\n");
				if (!rc)
					rc = tbuf_puts(&c, sys);
				if (!rc)
					rc = tbuf_puts(&c, "\n<</SYS>>\n\n");
			}
			if (!rc)
				rc = tbuf_puts(&c, m[i].content);
			if (!rc) {
				if (want_user) {
					rc = tbuf_puts(&b, bos);
					if (!rc)
						rc = tbuf_puts(&b, "[INST] ");
					if (!rc)
						rc = put_stripped(&b, c.p ? c.p : "");
					if (!rc)
						rc = tbuf_puts(&b, " [/INST]");
				} else {
					rc = tbuf_puts(&b, " ");
					if (!rc)
						rc = put_stripped(&b, c.p ? c.p : "");
					if (!rc)
						rc = tbuf_puts(&b, " ");
					if (!rc)
						rc = tbuf_puts(&b, eos);
				}
			}
			free(c.p);
		}
		if (!rc)
			rc = tbuf_reserve(&b, 0);
	}
	if (rc) {
		free(b.p);
		tok_err(err, errlen, "out of memory");
		return rc;
	}
	if (!b.p && (rc = tbuf_reserve(&b, 0)))
		return rc;
	b.p[b.n] = 0;
	*prompt = b.p;
	return 0;
}

size_t fn_tok_stop_ids(const fn_tok *t, int32_t *ids, size_t cap)
{
	if (!t || !ids)
		return 0;
	static const char *names[] = {"<|eot_id|>", "<|im_end|>", "<|end_of_text|>", "<|endoftext|>",
				      "<|eom_id|>", "</s>", NULL};
	size_t n = 0;
	int32_t cand[8];
	size_t nc = 0;
	if (t->eos >= 0)
		cand[nc++] = t->eos;
	for (int i = 0; names[i]; i++) {
		int32_t id = -1;
		size_t len = strlen(names[i]);
		for (size_t k = 0; k < t->n_added; k++)
			if (t->added[k].len == len && !memcmp(t->added[k].s, names[i], len))
				id = t->added[k].id;
		if (id >= 0)
			cand[nc++] = id;
	}
	for (size_t i = 0; i < nc && n < cap; i++) {
		int dup = 0;
		for (size_t k = 0; k < n; k++)
			dup |= ids[k] == cand[i];
		if (!dup)
			ids[n++] = cand[i];
	}
	return n;
}

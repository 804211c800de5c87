/* tok_util.c — what the other tokenizer files share: buffers, UTF-8, Unicode categories
 * (\p{L}, \p{N}, White_Space; tables in tok_unicode.h), the vocabulary and merge hash maps and
 * the byte-level tables. See tok_int.h. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>
#include "runtime/tok/tok_int.h"
#include "runtime/tok/tok_unicode.h"

int tok_buf_reserve(tok_buf *b, size_t extra)
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

int tok_buf_put(tok_buf *b, const void *s, size_t n)
{
	if (tok_buf_reserve(b, n))
		return -ENOMEM;
	if (n)
		memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = 0;
	return 0;
}

int tok_buf_puts(tok_buf *b, const char *s)
{
	return tok_buf_put(b, s, strlen(s));
}

int tok_buf_putcp(tok_buf *b, uint32_t cp)
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
	return tok_buf_put(b, u, n);
}

int tok_ids_push(tok_ids *v, int32_t id)
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
size_t tok_utf8_len(const unsigned char *s, size_t n, uint32_t *cp)
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

int tok_utf8_valid(const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	for (size_t i = 0; i < n;) {
		if (u[i] < 0x80) {
			i++;
			continue;
		}
		size_t l = tok_utf8_len(u + i, n - i, NULL);
		if (!l)
			return 0;
		i += l;
	}
	return 1;
}

/* Appends s as Rust's String::from_utf8_lossy would: each maximal invalid subpart becomes
 * U+FFFD. */
int tok_utf8_put_lossy(tok_buf *b, const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, run = 0;
	while (i < n) {
		size_t l = tok_utf8_len(u + i, n - i, NULL);
		if (l) {
			i += l;
			continue;
		}
		if (tok_buf_put(b, s + run, i - run) || tok_buf_putcp(b, 0xFFFD))
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
	return tok_buf_put(b, s + run, n - run);
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

int tok_uni_is_letter(uint32_t cp)
{
	if (cp < 0x80)
		return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z';
	return uni_in(tok_uni_letter, sizeof tok_uni_letter / sizeof tok_uni_letter[0], cp);
}

int tok_uni_is_number(uint32_t cp)
{
	if (cp < 0x80)
		return cp >= '0' && cp <= '9';
	return uni_in(tok_uni_number, sizeof tok_uni_number / sizeof tok_uni_number[0], cp);
}

/* Unicode White_Space (what \s means in the split patterns and char::is_whitespace). */
int tok_uni_is_space(uint32_t cp)
{
	if (cp < 0x80)
		return (cp >= 9 && cp <= 13) || cp == ' ';
	return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
	       cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

/* Python's str.isspace (used by strip() / Jinja's trim in chat templates). */
int tok_py_is_space(uint32_t cp)
{
	return tok_uni_is_space(cp) || (cp >= 0x1C && cp <= 0x1F);
}

/* decode one code point of valid UTF-8 */
size_t tok_cp_at(const char *s, size_t n, size_t i, uint32_t *cp)
{
	size_t l = tok_utf8_len((const unsigned char *)s + i, n - i, cp);
	if (!l) { /* not reached for validated input; treat as one opaque byte */
		*cp = 0xFFFD;
		return 1;
	}
	return l;
}

/* ---------------------------------------------------------------- hash maps */

static uint64_t tok_hash(const char *s, size_t n) { return XXH3_64bits(s, n); }

/* Builds the index over m->e[0..n). Returns 0, -ENOMEM, or -EEXIST (*dup = entry index) for a
 * key present twice. */
int tok_smap_build(tok_smap *m, size_t *dup)
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

int32_t tok_smap_get(const tok_smap *m, const char *s, size_t len)
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

static uint32_t mmap_hash(uint64_t k)
{
	k ^= k >> 33;
	k *= 0xff51afd7ed558ccdULL;
	k ^= k >> 33;
	k *= 0xc4ceb9fe1a85ec53ULL;
	k ^= k >> 33;
	return (uint32_t)k;
}

int tok_mmap_init(tok_mmap *m, size_t n)
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
void tok_mmap_put(tok_mmap *m, int32_t a, int32_t b, int32_t rank, int32_t id)
{
	uint64_t k = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
	uint32_t h = mmap_hash(k) & m->mask;
	while (m->slot[h].key != UINT64_MAX && m->slot[h].key != k)
		h = (h + 1) & m->mask;
	m->slot[h].key = k;
	m->slot[h].rank = rank;
	m->slot[h].id = id;
}

const tok_merge *tok_mmap_get(const tok_mmap *m, int32_t a, int32_t b)
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


int tok_pieces_push(tok_pieces *v, size_t off, size_t len)
{
	if (!len)
		return 0;
	if (v->n == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 64;
		tok_piece *p = realloc(v->p, cap * sizeof *p);
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

char *tok_strndup(const char *s, size_t n)
{
	char *p = malloc(n + 1);
	if (!p)
		return NULL;
	memcpy(p, s, n);
	p[n] = 0;
	return p;
}

uint16_t tok_bl_byte_char[256];
int16_t tok_bl_char_byte[324];

static void bl_init_once(void)
{
	/* GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the rest to
	 * 256 + n in byte order. */
	int n = 0;
	for (int b = 0; b < 256; b++) {
		int keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
		tok_bl_byte_char[b] = (uint16_t)(keep ? b : 256 + n++);
	}
	for (int c = 0; c < 324; c++)
		tok_bl_char_byte[c] = -1;
	for (int b = 0; b < 256; b++)
		tok_bl_char_byte[tok_bl_byte_char[b]] = (int16_t)b;
}

void tok_bl_init(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, bl_init_once);
}


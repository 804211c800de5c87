/* tok_decode.c — decoding through the decoder chain (ByteLevel, Replace, ByteFallback, Fuse, Strip,
 * Metaspace), and incremental decode for streaming that never splits a UTF-8 sequence. See tok.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "runtime/tok/tok_int.h"

/* token list: strings in one buffer */
typedef struct {
	tok_buf buf;
	tok_pieces pc;
} tstrs;

static int strs_add(tstrs *v, const char *s, size_t n)
{
	size_t off = v->buf.n;
	if (tok_buf_put(&v->buf, s, n))
		return -ENOMEM;
	if (!n) { /* keep empty tokens as pieces too */
		if (v->pc.n == v->pc.cap) {
			size_t cap = v->pc.cap ? v->pc.cap * 2 : 64;
			tok_piece *p = realloc(v->pc.p, cap * sizeof *p);
			if (!p)
				return -ENOMEM;
			v->pc.p = p;
			v->pc.cap = cap;
		}
		v->pc.p[v->pc.n].off = off;
		v->pc.p[v->pc.n++].len = 0;
		return 0;
	}
	return tok_pieces_push(&v->pc, off, n);
}

static void strs_free(tstrs *v)
{
	free(v->buf.p);
	free(v->pc.p);
}

static int flush_bytes(tstrs *o, tok_buf *bytes)
{
	int rc = 0;
	if (!bytes->n)
		return 0;
	if (tok_utf8_valid(bytes->p, bytes->n)) {
		rc = strs_add(o, bytes->p, bytes->n);
	} else {
		tok_buf r = {0};
		for (size_t i = 0; i < bytes->n && !rc; i++)
			rc = tok_buf_putcp(&r, 0xFFFD);
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
		tok_buf all = {0};
		for (size_t i = 0; i < in->pc.n && !rc; i++) {
			const char *s = in->buf.p + in->pc.p[i].off;
			size_t n = in->pc.p[i].len;
			if (d->type == DEC_FUSE) {
				rc = tok_buf_put(&all, s, n);
				continue;
			}
			size_t mark = all.n;
			for (size_t j = 0; j < n && !rc;) {
				uint32_t cp;
				size_t l = tok_cp_at(s, n, j, &cp);
				if (cp >= 324 || tok_bl_char_byte[cp] < 0) { /* not byte-level: raw bytes */
					all.n = mark;
					rc = tok_buf_put(&all, s, n);
					break;
				}
				char byte = (char)tok_bl_char_byte[cp];
				rc = tok_buf_put(&all, &byte, 1);
				j += l;
			}
		}
		if (!rc) {
			if (d->type == DEC_FUSE) {
				rc = strs_add(o, all.p ? all.p : "", all.n);
			} else {
				tok_buf txt = {0};
				rc = tok_utf8_put_lossy(&txt, all.p ? all.p : "", all.n);
				if (!rc)
					rc = strs_add(o, txt.p ? txt.p : "", txt.n);
				free(txt.p);
			}
		}
		free(all.p);
		return rc;
	}
	if (d->type == DEC_BYTEFALLBACK) {
		tok_buf bytes = {0};
		for (size_t i = 0; i < in->pc.n && !rc; i++) {
			const char *s = in->buf.p + in->pc.p[i].off;
			size_t n = in->pc.p[i].len;
			if (n == 6 && !memcmp(s, "<0x", 3) && s[5] == '>' && hexval(s[3]) >= 0 &&
			    hexval(s[4]) >= 0) {
				char byte = (char)(hexval(s[3]) * 16 + hexval(s[4]));
				rc = tok_buf_put(&bytes, &byte, 1);
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
		tok_buf r = {0};
		if (d->type == DEC_REPLACE || d->type == DEC_METASPACE) {
			/* Metaspace: the replacement becomes ' ', except in the first token, where the
			 * Rust crate drops every one of them unless prepend_scheme is "never" */
			int drop = d->type == DEC_METASPACE && i == 0 && d->prepend != PREPEND_NEVER;
			const char *to = d->type == DEC_REPLACE ? d->b : " ";
			size_t tol = d->type == DEC_REPLACE ? d->blen : drop ? 0 : 1;
			size_t j = 0, run = 0;
			while (j + d->alen <= n && !rc) {
				if (!memcmp(s + j, d->a, d->alen)) {
					rc = tok_buf_put(&r, s + run, j - run);
					if (!rc)
						rc = tok_buf_put(&r, to, tol);
					j += d->alen;
					run = j;
				} else {
					j++;
				}
			}
			if (!rc)
				rc = tok_buf_put(&r, s + run, n - run);
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

int tok_decode(const tok_tokenizer *t, const int32_t *ids, size_t n, int skip_special, char **text,
		  size_t *len)
{
	if (!t || !text || (!ids && n))
		return -EINVAL;
	*text = NULL;
	if (len)
		*len = 0;
	tstrs a = {0}, b = {0};
	tok_buf r = {0};
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
		if (!t->has_decoder && i && (rc = tok_buf_put(&r, " ", 1)))
			goto out;
		if ((rc = tok_buf_put(&r, a.buf.p + a.pc.p[i].off, a.pc.p[i].len)))
			goto out;
	}
	if ((rc = tok_buf_reserve(&r, 0)))
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

struct tok_stream {
	const tok_tokenizer *t;
	int skip;
	tok_ids win;     /* ids since the window start */
	char *prefix; /* decode(win) already emitted */
	size_t plen;
};

int tok_stream_new(const tok_tokenizer *t, int skip_special, tok_stream **out)
{
	if (!t || !out)
		return -EINVAL;
	tok_stream *s = calloc(1, sizeof *s);
	if (!s)
		return -ENOMEM;
	s->t = t;
	s->skip = skip_special;
	*out = s;
	return 0;
}

void tok_stream_free(tok_stream *s)
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

int tok_stream_push(tok_stream *s, int32_t id, char **text, size_t *len)
{
	if (!s || !text)
		return -EINVAL;
	*text = NULL;
	const tok_tokenizer *t = s->t;
	if (id < 0 || (size_t)id >= t->n_ids || !t->id_s[id])
		return -EINVAL;
	if ((s->skip && t->id_special[id]))
		return empty_text(text, len);
	if (tok_ids_push(&s->win, id))
		return -ENOMEM;
	/* a byte-fallback token may be continued by the next one: wait */
	if (t->id_byte[id] >= 0)
		return empty_text(text, len);
	char *d;
	size_t dl;
	int rc = tok_decode(t, s->win.p, s->win.n, s->skip, &d, &dl);
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
		char *emit = tok_strndup(d + s->plen, dl - 3 - s->plen);
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
	char *emit = tok_strndup(d + s->plen, elen);
	free(d);
	if (!emit)
		return -ENOMEM;
	/* restart the window at this token so the cost per push stays bounded */
	char *pd;
	size_t pl;
	if ((rc = tok_decode(t, &id, 1, s->skip, &pd, &pl))) {
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

int tok_stream_finish(tok_stream *s, char **text, size_t *len)
{
	if (!s || !text)
		return -EINVAL;
	*text = NULL;
	char *d;
	size_t dl;
	int rc = tok_decode(s->t, s->win.p, s->win.n, s->skip, &d, &dl);
	if (rc)
		return rc;
	size_t skip = (dl >= s->plen && !memcmp(d, s->prefix ? s->prefix : "", s->plen)) ? s->plen : 0;
	char *emit = tok_strndup(d + skip, dl - skip);
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


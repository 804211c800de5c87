/* tok_encode.c — encoding: added tokens matched leftmost-longest on the raw text, then normalizer ->
 * pre-tokenizer (the GPT-2 and LLaMA-3 split patterns written by hand over Unicode categories,
 * no regex engine) -> BPE (merge ranks through a heap) -> post-processor. See tok.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "runtime/tok/tok_int.h"

typedef struct {
	int32_t id, prev, next;
	uint32_t len;
} tsym;

typedef struct {
	int32_t rank, pos, id;
} theap_ent;

/* per-call scratch */
typedef struct {
	tok_buf a, b, w;
	tok_pieces pa, pb;
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
static int bpe_word(const tok_tokenizer *t, const char *w, size_t n, tok_ids *out, tscratch *s)
{
	if (!n)
		return 0;
	if (t->ignore_merges) {
		int32_t id = tok_smap_get(&t->vmap, w, n);
		if (id >= 0)
			return tok_ids_push(out, id);
	}
	size_t ns = 0;
	int32_t unk_len = -1;
	for (size_t i = 0; i < n;) {
		uint32_t cp;
		size_t cl = tok_cp_at(w, n, i, &cp);
		int32_t id = tok_smap_get(&t->vmap, w + i, cl);
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
			const tok_merge *m = tok_mmap_get(&t->merges, s->sym[i].id, s->sym[i + 1].id);
			if (m)
				heap_push(s->heap, &hn, (theap_ent){m->rank, (int32_t)i, m->id});
		}
		while (hn) {
			theap_ent top = heap_pop(s->heap, &hn);
			tsym *a = &s->sym[top.pos];
			if (!a->len || a->next < 0)
				continue;
			tsym *b = &s->sym[a->next];
			const tok_merge *m = tok_mmap_get(&t->merges, a->id, b->id);
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
				const tok_merge *pm = tok_mmap_get(&t->merges, s->sym[a->prev].id, a->id);
				if (pm)
					heap_push(s->heap, &hn, (theap_ent){pm->rank, a->prev, pm->id});
			}
			if (a->next >= 0) {
				const tok_merge *nm = tok_mmap_get(&t->merges, a->id, s->sym[a->next].id);
				if (nm)
					heap_push(s->heap, &hn, (theap_ent){nm->rank, top.pos, nm->id});
			}
		}
	}
	for (int32_t i = 0; i >= 0; i = s->sym[i].next)
		if (tok_ids_push(out, s->sym[i].id))
			return -ENOMEM;
	return 0;
}

/* ---- the hand-written split patterns. Each returns the end of the match starting at i
 * (every position matches some alternative, so the result is > i). */

static int is_other(uint32_t c) { return !tok_uni_is_space(c) && !tok_uni_is_letter(c) && !tok_uni_is_number(c); }

static size_t ws_run_end(const char *s, size_t n, size_t i, size_t *last_start)
{
	uint32_t c;
	size_t j = i;
	*last_start = i;
	while (j < n) {
		size_t l = tok_cp_at(s, n, j, &c);
		if (!tok_uni_is_space(c))
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
	size_t l0 = tok_cp_at(s, n, i, &c0), j = i;
	if (i + l0 < n)
		tok_cp_at(s, n, i + l0, &c1);
	int sp = c0 == ' ' && i + l0 < n;
	uint32_t c = sp ? c1 : c0;
	if (sp)
		j = i + 1;
	int (*cls)(uint32_t) = NULL;
	if (tok_uni_is_letter(c))
		cls = tok_uni_is_letter;
	else if (tok_uni_is_number(c))
		cls = tok_uni_is_number;
	else if (is_other(c))
		cls = is_other;
	if (cls && (sp || c == c0)) {
		while (j < n) {
			uint32_t d;
			size_t l = tok_cp_at(s, n, j, &d);
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
	size_t l0 = tok_cp_at(s, n, i, &c0), j;
	int has1 = i + l0 < n;
	if (has1)
		tok_cp_at(s, n, i + l0, &c1);
	/* [^\r\n\p{L}\p{N}]?\p{L}+ */
	if (tok_uni_is_letter(c0) || (has1 && c0 != '\r' && c0 != '\n' && !tok_uni_is_number(c0) && tok_uni_is_letter(c1))) {
		j = tok_uni_is_letter(c0) ? i : i + l0;
		while (j < n) {
			uint32_t d;
			size_t l = tok_cp_at(s, n, j, &d);
			if (!tok_uni_is_letter(d))
				break;
			j += l;
		}
		return j;
	}
	/* \p{N}{1,3} */
	if (tok_uni_is_number(c0)) {
		j = i;
		for (int k = 0; k < 3 && j < n; k++) {
			uint32_t d;
			size_t l = tok_cp_at(s, n, j, &d);
			if (!tok_uni_is_number(d))
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
			size_t l = tok_cp_at(s, n, j, &d);
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
static int pre_tokenize(const tok_tokenizer *t, tscratch *s, int first)
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
				    tok_buf_put(&s->b, p->repl, p->repl_len))
					return -ENOMEM;
				for (size_t i = 0; i < len; i++) {
					if (src[i] == ' ' ? tok_buf_put(&s->b, p->repl, p->repl_len)
							  : tok_buf_put(&s->b, src + i, 1))
						return -ENOMEM;
				}
				size_t end = s->b.n, start = base;
				if (p->split) { /* MergedWithNext: each replacement starts a new piece */
					for (size_t i = base + 1; i + p->repl_len <= end; i++) {
						if (!memcmp(s->b.p + i, p->repl, p->repl_len)) {
							if (tok_pieces_push(&s->pb, start, i - start))
								return -ENOMEM;
							start = i;
						}
					}
				}
				if (tok_pieces_push(&s->pb, start, end - start))
					return -ENOMEM;
				continue;
			}
			if (p->type == PRE_BYTELEVEL && p->add_prefix_space && !(len && src[0] == ' ') &&
			    tok_buf_put(&s->b, " ", 1))
				return -ENOMEM;
			if (tok_buf_put(&s->b, src, len))
				return -ENOMEM;
			size_t end = s->b.n;
			const char *b = s->b.p + base;
			size_t bl = end - base;
			if (p->type == PRE_BYTELEVEL && !p->use_regex) {
				if (tok_pieces_push(&s->pb, base, bl))
					return -ENOMEM;
				continue;
			}
			for (size_t i = 0; i < bl;) {
				size_t e = p->type == PRE_SPLIT_LLAMA3 ? split_llama3(b, bl, i) : split_gpt2(b, bl, i);
				if (tok_pieces_push(&s->pb, base + i, e - i))
					return -ENOMEM;
				i = e;
			}
		}
		tok_buf tb = s->a;
		s->a = s->b;
		s->b = tb;
		tok_pieces tp = s->pa;
		s->pa = s->pb;
		s->pb = tp;
	}
	return 0;
}

static int encode_segment(const tok_tokenizer *t, const char *text, size_t len, int first, tok_ids *out,
			  tscratch *s)
{
	if (!len)
		return 0;
	s->a.n = 0;
	s->pa.n = 0;
	if (tok_buf_put(&s->a, text, len))
		return -ENOMEM;
	for (size_t k = 0; k < t->n_norm; k++) {
		const tok_norm *nm = &t->norm[k];
		s->b.n = 0;
		if (nm->type == NORM_PREPEND) {
			if (s->a.n && (tok_buf_put(&s->b, nm->a, nm->alen) || tok_buf_put(&s->b, s->a.p, s->a.n)))
				return -ENOMEM;
			if (!s->a.n)
				continue;
		} else {
			size_t i = 0, run = 0;
			while (i + nm->alen <= s->a.n) {
				if (!memcmp(s->a.p + i, nm->a, nm->alen)) {
					if (tok_buf_put(&s->b, s->a.p + run, i - run) || tok_buf_put(&s->b, nm->b, nm->blen))
						return -ENOMEM;
					i += nm->alen;
					run = i;
				} else {
					i++;
				}
			}
			if (tok_buf_put(&s->b, s->a.p + run, s->a.n - run))
				return -ENOMEM;
		}
		tok_buf tb = s->a;
		s->a = s->b;
		s->b = tb;
	}
	if (tok_pieces_push(&s->pa, 0, s->a.n))
		return -ENOMEM;
	if (pre_tokenize(t, s, first))
		return -ENOMEM;
	for (size_t q = 0; q < s->pa.n; q++) {
		const char *w = s->a.p + s->pa.p[q].off;
		size_t wl = s->pa.p[q].len;
		if (t->byte_level) {
			s->w.n = 0;
			for (size_t i = 0; i < wl; i++)
				if (tok_buf_putcp(&s->w, tok_bl_byte_char[(unsigned char)w[i]]))
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
static const tok_added *match_added(const tok_tokenizer *t, const char *text, size_t len, size_t i)
{
	unsigned c = (unsigned char)text[i];
	for (uint32_t k = t->added_start[c]; k < t->added_start[c + 1]; k++) {
		const tok_added *a = &t->added[t->added_order[k]];
		if (a->len <= len - i && !memcmp(text + i, a->s, a->len))
			return a;
	}
	return NULL;
}

int tok_encode(const tok_tokenizer *t, const char *text, size_t len, int add_special, int32_t **ids,
		  size_t *n)
{
	if (!t || !ids || !n || (!text && len))
		return -EINVAL;
	*ids = NULL;
	*n = 0;
	if (len && !tok_utf8_valid(text, len))
		return -EINVAL;
	tok_ids out = {0};
	tscratch s = {0};
	int rc = 0;
	if (add_special)
		for (size_t i = 0; i < t->n_post_pre; i++)
			if ((rc = tok_ids_push(&out, t->post_pre[i])))
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
				tok_cp_at(text, len, k, &cp);
				if (!tok_uni_is_space(cp))
					break;
				seg_end = k;
			}
		}
		if (a->rstrip) {
			while (next < len) {
				uint32_t cp;
				size_t l = tok_cp_at(text, len, next, &cp);
				if (!tok_uni_is_space(cp))
					break;
				next += l;
			}
		}
		if ((rc = encode_segment(t, text + seg, seg_end - seg, seg == 0, &out, &s)) ||
		    (rc = tok_ids_push(&out, a->id)))
			goto fail;
		i = seg = next;
	}
	if ((rc = encode_segment(t, text + seg, len - seg, seg == 0, &out, &s)))
		goto fail;
	if (add_special)
		for (size_t k = 0; k < t->n_post_post; k++)
			if ((rc = tok_ids_push(&out, t->post_post[k])))
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


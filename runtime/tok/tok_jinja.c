/* tok_jinja.c — the Jinja2 lexer and parser: template source -> syntax tree (tok_jinja_int.h).
 * The lexer applies Jinja's source handling as transformers configures it: \r\n and \r become
 * \n, one trailing newline is dropped, whitespace control ({%- -%} {{- -}} {#- -#}),
 * lstrip_blocks (spaces and tabs before a block or comment tag at the start of a line go) and
 * trim_blocks (the first newline after a block or comment tag goes); {% raw %} bodies stay text.
 * The parser follows Jinja's grammar and operator precedence (jinja2/parser.py). See
 * tok_jinja.h. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "runtime/tok/tok_jinja_int.h"

/* ---- arena */

struct jj_blk {
	jj_blk *next;
	size_t used, cap;
	_Alignas(16) unsigned char mem[];
};

void *jj_alloc(jj_arena *a, size_t n)
{
	if (n > a->budget || (n = (n + 15) & ~(size_t)15) > a->budget || a->used > a->budget - n) {
		a->over = 1;
		return NULL;
	}
	jj_blk *b = a->head;
	if (!b || b->cap - b->used < n) {
		size_t cap = n > 65536 ? n : 65536;
		b = malloc(sizeof *b + cap);
		if (!b)
			return NULL;
		b->cap = cap;
		b->used = 0;
		b->next = a->head;
		a->head = b;
	}
	void *p = b->mem + b->used;
	b->used += n;
	a->used += n;
	memset(p, 0, n);
	return p;
}

int jj_arena_oom(const jj_arena *a)
{
	return a->over ? -E2BIG : -ENOMEM;
}

void jj_arena_free(jj_arena *a)
{
	for (jj_blk *b = a->head, *nx; b; b = nx) {
		nx = b->next;
		free(b);
	}
	a->head = NULL;
	a->used = 0;
}

/* ---- tokens */

enum { TK_TEXT, TK_BB, TK_BE, TK_VB, TK_VE, TK_NAME, TK_STR, TK_INT, TK_FLOAT, TK_OP, TK_EOF };

typedef struct {
	int type, line;
	const char *s; /* text, name, decoded string, operator */
	size_t n;
	int64_t i;
	double f;
} jj_tok;

typedef struct {
	jj_arena *ar;
	const char *src;
	size_t len;
	jj_tok *t;
	size_t nt, cap, pos;
	int depth; /* recursion of the parser, bounded like the tree it builds */
	char *err;
	size_t errlen;
	int rc;
} jj_p;

static int perr(jj_p *p, int line, int rc, const char *fmt, ...)
{
	if (p->rc)
		return p->rc;
	p->rc = rc;
	if (p->err && p->errlen) {
		char m[200];
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(m, sizeof m, fmt, ap);
		va_end(ap);
		snprintf(p->err, p->errlen, "chat template line %d: %s", line, m);
	}
	return rc;
}

static int push(jj_p *p, int type, int line, const char *s, size_t n)
{
	if (p->nt == p->cap) {
		size_t nc = p->cap ? p->cap * 2 : 256;
		jj_tok *t = realloc(p->t, nc * sizeof *t);
		if (!t)
			return perr(p, line, -ENOMEM, "out of memory");
		p->t = t;
		p->cap = nc;
	}
	p->t[p->nt++] = (jj_tok){.type = type, .line = line, .s = s, .n = n};
	return 0;
}

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
static int is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static int is_digit(char c) { return c >= '0' && c <= '9'; }
static int hexv(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static size_t put_utf8(char *o, uint32_t cp)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xC0 | cp >> 6);
		o[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (char)(0xE0 | cp >> 12);
		o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		o[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	o[0] = (char)(0xF0 | cp >> 18);
	o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
	o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
	o[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

/* a string literal at s[i] (the quote): decoded as Python's unicode-escape decodes it */
static int lex_string(jj_p *p, size_t *i, int line, int *lines)
{
	const char *s = p->src;
	char q = s[*i];
	size_t j = *i + 1;
	while (j < p->len && s[j] != q) {
		if (s[j] == '\\' && j + 1 < p->len)
			j++;
		j++;
	}
	if (j >= p->len)
		return perr(p, line, -EINVAL, "unterminated string literal");
	char *o = jj_alloc(p->ar, j - *i + 1);
	if (!o)
		return perr(p, line, -ENOMEM, "out of memory");
	size_t n = 0;
	for (size_t k = *i + 1; k < j; k++) {
		char c = s[k];
		if (c == '\n')
			(*lines)++;
		if (c != '\\') {
			o[n++] = c;
			continue;
		}
		char e = s[++k];
		uint32_t cp;
		int nd;
		switch (e) {
		case '\\': o[n++] = '\\'; break;
		case '\'': o[n++] = '\''; break;
		case '"': o[n++] = '"'; break;
		case 'a': o[n++] = 7; break;
		case 'b': o[n++] = 8; break;
		case 'f': o[n++] = 12; break;
		case 'n': o[n++] = 10; break;
		case 'r': o[n++] = 13; break;
		case 't': o[n++] = 9; break;
		case 'v': o[n++] = 11; break;
		case '\n': (*lines)++; break;
		case 'x': case 'u': case 'U':
			nd = e == 'x' ? 2 : e == 'u' ? 4 : 8;
			cp = 0;
			for (int d = 0; d < nd; d++) {
				int h = k + 1 < j ? hexv(s[k + 1]) : -1;
				if (h < 0)
					return perr(p, line, -EINVAL, "truncated \\%c escape in a string literal", e);
				cp = cp << 4 | (uint32_t)h;
				k++;
			}
			if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
				return perr(p, line, -EINVAL, "escape \\%c in a string literal is not a character", e);
			n += put_utf8(o + n, cp);
			break;
		default:
			if (e >= '0' && e <= '7') {
				cp = (uint32_t)(e - '0');
				for (int d = 0; d < 2 && k + 1 < j && s[k + 1] >= '0' && s[k + 1] <= '7'; d++)
					cp = cp * 8 + (uint32_t)(s[++k] - '0');
				n += put_utf8(o + n, cp);
			} else if (e == 'N') {
				return perr(p, line, -EINVAL, "\\N{...} escapes are not supported");
			} else { /* unknown escapes stay as written */
				o[n++] = '\\';
				o[n++] = e;
			}
		}
	}
	o[n] = 0;
	*i = j + 1;
	int rc = push(p, TK_STR, line, o, n);
	return rc;
}

/* expression tokens of one tag, up to and including its end; *i is past the opening */
static int lex_tag(jj_p *p, size_t *i, int *line, int var, int *strip_after)
{
	const char *s = p->src;
	int depth = 0;
	for (;;) {
		while (*i < p->len && is_ws(s[*i])) {
			if (s[*i] == '\n')
				(*line)++;
			(*i)++;
		}
		if (*i >= p->len)
			return perr(p, *line, -EINVAL, "unclosed %s tag", var ? "{{" : "{%");
		size_t k = *i;
		char end = var ? '}' : '%';
		if (depth == 0) {
			int minus = s[k] == '-' && k + 2 < p->len && s[k + 1] == end && s[k + 2] == '}';
			if (minus || (s[k] == end && k + 1 < p->len && s[k + 1] == '}')) {
				*strip_after = minus;
				*i = k + (minus ? 3 : 2);
				return push(p, var ? TK_VE : TK_BE, *line, NULL, 0);
			}
		}
		char c = s[k];
		if (is_alpha(c)) {
			size_t j = k;
			while (j < p->len && (is_alpha(s[j]) || is_digit(s[j])))
				j++;
			char *nm = jj_alloc(p->ar, j - k + 1);
			if (!nm)
				return perr(p, *line, -ENOMEM, "out of memory");
			memcpy(nm, s + k, j - k);
			if (push(p, TK_NAME, *line, nm, j - k))
				return p->rc;
			*i = j;
		} else if (is_digit(c)) {
			size_t j = k;
			int flt = 0;
			while (j < p->len && (is_digit(s[j]) || s[j] == '_'))
				j++;
			if (j + 1 < p->len && s[j] == '.' && is_digit(s[j + 1]) &&
			    !(k > 0 && s[k - 1] == '.')) {
				flt = 1;
				j++;
				while (j < p->len && (is_digit(s[j]) || s[j] == '_'))
					j++;
			}
			if (j < p->len && (s[j] == 'e' || s[j] == 'E')) {
				size_t m = j + 1;
				if (m < p->len && (s[m] == '+' || s[m] == '-'))
					m++;
				if (m < p->len && is_digit(s[m])) {
					flt = 1;
					j = m;
					while (j < p->len && is_digit(s[j]))
						j++;
				}
			}
			char buf[64];
			size_t bn = 0;
			for (size_t m = k; m < j && bn < sizeof buf - 1; m++)
				if (s[m] != '_')
					buf[bn++] = s[m];
			buf[bn] = 0;
			if (j - k >= sizeof buf - 1)
				return perr(p, *line, -EINVAL, "number literal too long");
			if (push(p, flt ? TK_FLOAT : TK_INT, *line, NULL, 0))
				return p->rc;
			if (flt) {
				p->t[p->nt - 1].f = strtod(buf, NULL);
			} else {
				errno = 0;
				long long v = strtoll(buf, NULL, 10);
				if (errno)
					return perr(p, *line, -EINVAL, "integer literal %s is too large", buf);
				p->t[p->nt - 1].i = v;
			}
			*i = j;
		} else if (c == '\'' || c == '"') {
			int l0 = *line;
			if (lex_string(p, i, l0, line))
				return p->rc;
		} else {
			static const char *two[] = {"//", "**", "==", "!=", "<=", ">=", NULL};
			size_t n = 0;
			for (int t = 0; two[t]; t++)
				if (k + 1 < p->len && s[k] == two[t][0] && s[k + 1] == two[t][1])
					n = 2;
			if (!n) {
				if (!strchr("+-*/%~<>=()[]{},.:|", c) || !c)
					return perr(p, *line, -EINVAL, "unexpected character '%c'", c);
				n = 1;
				if (c == '(' || c == '[' || c == '{')
					depth++;
				if ((c == ')' || c == ']' || c == '}') && depth > 0)
					depth--;
			}
			if (push(p, TK_OP, *line, s + k, n))
				return p->rc;
			*i = k + n;
		}
	}
}

static int lex(jj_p *p)
{
	const char *s = p->src;
	size_t i = 0;
	int line = 1, line_start = 1, strip_next = 0;
	while (i < p->len) {
		size_t a = i;
		const char *q = s + i;
		size_t tag = p->len;
		while ((q = memchr(q, '{', (size_t)(s + p->len - q)))) {
			if (q + 1 < s + p->len && (q[1] == '{' || q[1] == '%' || q[1] == '#')) {
				tag = (size_t)(q - s);
				break;
			}
			q++;
		}
		size_t e = tag;
		if (strip_next)
			while (a < e && is_ws(s[a]))
				a++;
		strip_next = 0;
		char kind = tag < p->len ? s[tag + 1] : 0;
		char mod = tag + 2 < p->len ? s[tag + 2] : 0;
		if (kind && mod == '-') {
			while (e > a && is_ws(s[e - 1]))
				e--;
		} else if ((kind == '%' || kind == '#') && mod != '+') { /* lstrip_blocks */
			size_t l = tag, k;
			while (l > i && s[l - 1] != '\n')
				l--;
			for (k = l; k < tag && (s[k] == ' ' || s[k] == '\t'); k++)
				;
			if ((l > i || line_start) && k == tag && l < e)
				e = l > a ? l : a;
		}
		int tline = line;
		for (size_t k = i; k < tag; k++)
			tline += s[k] == '\n';
		if (e > a && push(p, TK_TEXT, line, s + a, e - a))
			return p->rc;
		line = tline;
		if (tag >= p->len)
			break;
		i = tag + 2 + (mod == '-' || mod == '+');
		int strip_after = 0, trim = 0;
		if (kind == '#') {
			const char *c = NULL;
			for (size_t k = i; k + 1 < p->len; k++)
				if (s[k] == '#' && s[k + 1] == '}') {
					c = s + k;
					break;
				}
			if (!c)
				return perr(p, line, -EINVAL, "unclosed comment");
			for (const char *k = s + i; k < c; k++)
				line += *k == '\n';
			strip_after = c > s + i && c[-1] == '-';
			i = (size_t)(c - s) + 2;
			trim = 1;
		} else {
			int var = kind == '{';
			size_t first = p->nt;
			if (push(p, var ? TK_VB : TK_BB, line, NULL, 0) || lex_tag(p, &i, &line, var, &strip_after))
				return p->rc;
			trim = !var;
			/* {% raw %}: everything up to {% endraw %} is text */
			if (!var && p->nt == first + 3 && p->t[first + 1].type == TK_NAME &&
			    !strcmp(p->t[first + 1].s, "raw")) {
				p->nt = first;
				size_t k = i, rs = i, re = 0, after = 0;
				if (!strip_after && trim && k < p->len && s[k] == '\n') {
					k++;
					line++;
					rs = k;
				} else if (strip_after) {
					while (rs < p->len && is_ws(s[rs]))
						rs++;
				}
				for (k = rs; k + 1 < p->len; k++) {
					if (s[k] != '{' || s[k + 1] != '%')
						continue;
					size_t m = k + 2, body_end = k;
					int lm = m < p->len && s[m] == '-';
					m += lm || (m < p->len && s[m] == '+');
					while (m < p->len && is_ws(s[m]))
						m++;
					if (m + 6 > p->len || memcmp(s + m, "endraw", 6))
						continue;
					m += 6;
					while (m < p->len && is_ws(s[m]))
						m++;
					int rm = m < p->len && s[m] == '-';
					m += rm;
					if (m + 1 >= p->len || s[m] != '%' || s[m + 1] != '}')
						continue;
					if (lm)
						while (body_end > rs && is_ws(s[body_end - 1]))
							body_end--;
					re = body_end;
					after = m + 2;
					strip_after = rm;
					break;
				}
				if (!after)
					return perr(p, line, -EINVAL, "{%% raw %%} without {%% endraw %%}");
				if (re > rs && push(p, TK_TEXT, line, s + rs, re - rs))
					return p->rc;
				for (size_t m = i; m < after; m++)
					line += s[m] == '\n';
				i = after;
			}
		}
		if (strip_after) {
			strip_next = 1;
			line_start = 0;
		} else if (trim && i < p->len && s[i] == '\n') {
			i++;
			line++;
			line_start = 1;
		} else {
			line_start = 0;
		}
	}
	return push(p, TK_EOF, line, NULL, 0);
}

/* ---- parser */

static jj_tok *cur(jj_p *p) { return &p->t[p->pos]; }
static jj_tok *peek(jj_p *p, size_t k) { return &p->t[p->pos + k < p->nt ? p->pos + k : p->nt - 1]; }
static int is_op(const jj_tok *t, const char *op) { return t->type == TK_OP && t->n == strlen(op) && !memcmp(t->s, op, t->n); }
static int is_name(const jj_tok *t, const char *nm) { return t->type == TK_NAME && !strcmp(t->s, nm); }
static int accept_op(jj_p *p, const char *op)
{
	if (!is_op(cur(p), op))
		return 0;
	p->pos++;
	return 1;
}
static int accept_name(jj_p *p, const char *nm)
{
	if (!is_name(cur(p), nm))
		return 0;
	p->pos++;
	return 1;
}

static const char *tok_desc(const jj_tok *t, char *b, size_t n)
{
	switch (t->type) {
	case TK_NAME: snprintf(b, n, "'%.40s'", t->s); break;
	case TK_OP: snprintf(b, n, "'%.*s'", (int)t->n, t->s); break;
	case TK_STR: snprintf(b, n, "a string"); break;
	case TK_INT: case TK_FLOAT: snprintf(b, n, "a number"); break;
	case TK_BE: snprintf(b, n, "the end of the tag"); break;
	case TK_VE: snprintf(b, n, "the end of the {{ }}"); break;
	case TK_EOF: snprintf(b, n, "the end of the template"); break;
	default: snprintf(b, n, "text");
	}
	return b;
}

static int expect_op(jj_p *p, const char *op)
{
	if (accept_op(p, op))
		return 0;
	char b[64];
	return perr(p, cur(p)->line, -EINVAL, "expected '%s', found %s", op, tok_desc(cur(p), b, sizeof b));
}

static int expect_end(jj_p *p, int type)
{
	if (cur(p)->type == type) {
		p->pos++;
		return 0;
	}
	char b[64];
	return perr(p, cur(p)->line, -EINVAL, "expected the end of the %s, found %s",
		    type == TK_BE ? "tag" : "{{ }}", tok_desc(cur(p), b, sizeof b));
}

static jj_node *node(jj_p *p, int kind, int line)
{
	jj_node *n = jj_alloc(p->ar, sizeof *n);
	if (!n) {
		perr(p, line, -ENOMEM, "out of memory");
		return NULL;
	}
	n->kind = (uint8_t)kind;
	n->line = line;
	n->depth = 1;
	return n;
}

/* sets n->depth from its children; fails past the nesting limit */
static jj_node *seal(jj_p *p, jj_node *n)
{
	if (!n)
		return NULL;
	int d = 0;
	jj_node *ch[5] = {n->a, n->b, n->c, n->d, n->e};
	for (int k = 0; k < 5; k++)
		if (ch[k] && ch[k]->depth > d)
			d = ch[k]->depth;
	for (size_t k = 0; k < n->n; k++)
		if (n->kids[k] && n->kids[k]->depth > d)
			d = n->kids[k]->depth;
	n->depth = d + 1;
	if (n->depth > TOK_JINJA_MAX_DEPTH) {
		perr(p, n->line, -E2BIG, "expressions and statements nest more than %d deep", TOK_JINJA_MAX_DEPTH);
		return NULL;
	}
	return n;
}

typedef struct {
	jj_node **v;
	const char **kw;
	size_t n, cap;
} kidv;

static int kid_push(jj_p *p, kidv *k, jj_node *n, const char *kw)
{
	if (!n)
		return p->rc ? p->rc : -ENOMEM;
	if (k->n == k->cap) {
		size_t nc = k->cap ? k->cap * 2 : 8;
		jj_node **v = jj_alloc(p->ar, nc * sizeof *v);
		const char **w = jj_alloc(p->ar, nc * sizeof *w);
		if (!v || !w)
			return perr(p, n->line, -ENOMEM, "out of memory");
		if (k->n) {
			memcpy(v, k->v, k->n * sizeof *v);
			memcpy(w, k->kw, k->n * sizeof *w);
		}
		k->v = v;
		k->kw = w;
		k->cap = nc;
	}
	k->v[k->n] = n;
	k->kw[k->n++] = kw;
	return 0;
}

static void kid_set(jj_node *n, kidv *k)
{
	n->kids = k->v;
	n->kw = k->kw;
	n->n = k->n;
}

static jj_node *parse_expr(jj_p *p, int with_cond);
static jj_node *parse_unary(jj_p *p, int with_filter);

/* enter / leave one level of parser recursion (the C stack is bounded with the tree) */
static int enter(jj_p *p)
{
	if (++p->depth <= TOK_JINJA_MAX_DEPTH)
		return 0;
	perr(p, cur(p)->line, -E2BIG, "expressions and statements nest more than %d deep", TOK_JINJA_MAX_DEPTH);
	return -1;
}
static jj_node *leave(jj_p *p, jj_node *n)
{
	p->depth--;
	return n;
}

/* (args) after a callee, a filter or a test; *p->pos is at '(' */
static int parse_args(jj_p *p, jj_node *n)
{
	kidv k = {0};
	if (expect_op(p, "("))
		return p->rc;
	while (!is_op(cur(p), ")")) {
		if (k.n && expect_op(p, ","))
			return p->rc;
		if (is_op(cur(p), ")"))
			break;
		if (is_op(cur(p), "*") || is_op(cur(p), "**"))
			return perr(p, cur(p)->line, -EINVAL, "*args and **kwargs in calls are not supported");
		const char *kw = NULL;
		if (cur(p)->type == TK_NAME && is_op(peek(p, 1), "=")) {
			kw = cur(p)->s;
			p->pos += 2;
		} else if (k.n && k.kw[k.n - 1]) {
			return perr(p, cur(p)->line, -EINVAL, "a positional argument follows a keyword argument");
		}
		if (kid_push(p, &k, parse_expr(p, 1), kw))
			return p->rc;
	}
	p->pos++;
	kid_set(n, &k);
	return 0;
}

static jj_node *parse_primary(jj_p *p)
{
	jj_tok *t = cur(p);
	jj_node *n;
	char b[64];
	switch (t->type) {
	case TK_NAME:
		p->pos++;
		if (!strcmp(t->s, "true") || !strcmp(t->s, "True") || !strcmp(t->s, "false") || !strcmp(t->s, "False")) {
			if ((n = node(p, JN_BOOL, t->line)))
				n->i = t->s[0] == 't' || t->s[0] == 'T';
			return n;
		}
		if (!strcmp(t->s, "none") || !strcmp(t->s, "None"))
			return node(p, JN_NONE, t->line);
		if ((n = node(p, JN_NAME, t->line))) {
			n->s = t->s;
			n->slen = t->n;
		}
		return n;
	case TK_STR: {
		size_t total = 0, k = p->pos;
		while (p->t[k].type == TK_STR)
			total += p->t[k++].n;
		if (!(n = node(p, JN_STR, t->line)))
			return NULL;
		if (k == p->pos + 1) {
			n->s = t->s;
			n->slen = t->n;
			p->pos++;
			return n;
		}
		char *s = jj_alloc(p->ar, total + 1);
		if (!s) {
			perr(p, t->line, -ENOMEM, "out of memory");
			return NULL;
		}
		size_t o = 0;
		for (; p->pos < k; p->pos++) {
			memcpy(s + o, p->t[p->pos].s, p->t[p->pos].n);
			o += p->t[p->pos].n;
		}
		n->s = s;
		n->slen = total;
		return n;
	}
	case TK_INT:
		p->pos++;
		if ((n = node(p, JN_INT, t->line)))
			n->i = t->i;
		return n;
	case TK_FLOAT:
		p->pos++;
		if ((n = node(p, JN_FLOAT, t->line)))
			n->f = t->f;
		return n;
	case TK_OP:
		if (accept_op(p, "(")) {
			if (accept_op(p, ")"))
				return node(p, JN_TUPLE, t->line);
			jj_node *e = parse_expr(p, 1);
			if (!e)
				return NULL;
			if (!is_op(cur(p), ",")) {
				if (expect_op(p, ")"))
					return NULL;
				return e;
			}
			kidv k = {0};
			if (kid_push(p, &k, e, NULL))
				return NULL;
			while (accept_op(p, ",") && !is_op(cur(p), ")"))
				if (kid_push(p, &k, parse_expr(p, 1), NULL))
					return NULL;
			if (expect_op(p, ")") || !(n = node(p, JN_TUPLE, t->line)))
				return NULL;
			kid_set(n, &k);
			return seal(p, n);
		}
		if (accept_op(p, "[")) {
			kidv k = {0};
			while (!is_op(cur(p), "]")) {
				if (k.n && expect_op(p, ","))
					return NULL;
				if (is_op(cur(p), "]"))
					break;
				if (kid_push(p, &k, parse_expr(p, 1), NULL))
					return NULL;
			}
			p->pos++;
			if (!(n = node(p, JN_LIST, t->line)))
				return NULL;
			kid_set(n, &k);
			return seal(p, n);
		}
		if (accept_op(p, "{")) {
			kidv k = {0};
			while (!is_op(cur(p), "}")) {
				if (k.n && expect_op(p, ","))
					return NULL;
				if (is_op(cur(p), "}"))
					break;
				if (kid_push(p, &k, parse_expr(p, 1), NULL) || expect_op(p, ":") ||
				    kid_push(p, &k, parse_expr(p, 1), NULL))
					return NULL;
			}
			p->pos++;
			if (!(n = node(p, JN_DICT, t->line)))
				return NULL;
			kid_set(n, &k);
			return seal(p, n);
		}
		/* fall through */
	default:
		perr(p, t->line, -EINVAL, "unexpected %s", tok_desc(t, b, sizeof b));
		return NULL;
	}
}

static jj_node *parse_postfix(jj_p *p, jj_node *n)
{
	while (n) {
		jj_tok *t = cur(p);
		if (is_op(t, ".")) {
			p->pos++;
			jj_tok *a = cur(p);
			jj_node *m;
			if (a->type == TK_NAME) {
				if (!(m = node(p, JN_ATTR, a->line)))
					return NULL;
				m->s = a->s;
				m->slen = a->n;
				m->a = n;
			} else if (a->type == TK_INT) {
				jj_node *ix = node(p, JN_INT, a->line);
				if (!ix || !(m = node(p, JN_ITEM, a->line)))
					return NULL;
				ix->i = a->i;
				m->a = n;
				m->b = ix;
			} else {
				perr(p, a->line, -EINVAL, "expected an attribute name after '.'");
				return NULL;
			}
			p->pos++;
			n = seal(p, m);
		} else if (is_op(t, "[")) {
			p->pos++;
			jj_node *m = node(p, JN_ITEM, t->line), *lo = NULL, *hi = NULL, *st = NULL;
			if (!m)
				return NULL;
			m->a = n;
			if (!is_op(cur(p), ":") && !(lo = parse_expr(p, 1)))
				return NULL;
			if (accept_op(p, ":")) {
				m->kind = JN_SLICE;
				if (!is_op(cur(p), ":") && !is_op(cur(p), "]") && !(hi = parse_expr(p, 1)))
					return NULL;
				if (accept_op(p, ":") && !is_op(cur(p), "]") && !(st = parse_expr(p, 1)))
					return NULL;
				m->b = lo;
				m->c = hi;
				m->d = st;
			} else {
				m->b = lo;
			}
			if (expect_op(p, "]"))
				return NULL;
			n = seal(p, m);
		} else if (is_op(t, "(")) {
			jj_node *m = node(p, JN_CALL, t->line);
			if (!m)
				return NULL;
			m->a = n;
			if (parse_args(p, m))
				return NULL;
			n = seal(p, m);
		} else {
			break;
		}
	}
	return n;
}

/* |filter and "is" tests after an operand (operand NULL: a filter block's chain) */
static jj_node *parse_filters(jj_p *p, jj_node *n, int tests)
{
	for (;;) {
		jj_tok *t = cur(p);
		if (is_op(t, "|")) {
			p->pos++;
			jj_tok *nm = cur(p);
			if (nm->type != TK_NAME) {
				perr(p, nm->line, -EINVAL, "expected a filter name after '|'");
				return NULL;
			}
			p->pos++;
			jj_node *m = node(p, JN_FILTER, nm->line);
			if (!m)
				return NULL;
			m->s = nm->s;
			m->a = n;
			if (is_op(cur(p), "(") && parse_args(p, m))
				return NULL;
			if (!(n = seal(p, m)))
				return NULL;
		} else if (tests && is_name(t, "is")) {
			p->pos++;
			jj_node *m = node(p, JN_TEST, t->line);
			if (!m)
				return NULL;
			m->op = (uint8_t)accept_name(p, "not");
			jj_tok *nm = cur(p);
			if (nm->type != TK_NAME && !(nm->type == TK_OP && (is_op(nm, "==") || is_op(nm, "!=") ||
					is_op(nm, "<") || is_op(nm, ">") || is_op(nm, "<=") || is_op(nm, ">=")))) {
				perr(p, nm->line, -EINVAL, "expected a test name after 'is'");
				return NULL;
			}
			if (nm->type == TK_NAME) {
				m->s = nm->s;
			} else {
				char *s = jj_alloc(p->ar, 3);
				if (!s) {
					perr(p, nm->line, -ENOMEM, "out of memory");
					return NULL;
				}
				memcpy(s, nm->s, nm->n);
				m->s = s;
			}
			p->pos++;
			m->a = n;
			jj_tok *x = cur(p);
			if (is_op(x, "(")) {
				if (parse_args(p, m))
					return NULL;
			} else if ((x->type == TK_STR || x->type == TK_INT || x->type == TK_FLOAT ||
				    (x->type == TK_NAME && !is_name(x, "else") && !is_name(x, "or") &&
				     !is_name(x, "and") && !is_name(x, "if") && !is_name(x, "is") &&
				     !is_name(x, "in") && !is_name(x, "not")) ||
				    is_op(x, "[") || is_op(x, "{"))) {
				kidv k = {0};
				if (kid_push(p, &k, parse_postfix(p, parse_primary(p)), NULL))
					return NULL;
				kid_set(m, &k);
			}
			if (!(n = seal(p, m)))
				return NULL;
		} else {
			return n;
		}
	}
}

static jj_node *parse_unary_in(jj_p *p, int with_filter);
static jj_node *parse_unary(jj_p *p, int with_filter)
{
	if (enter(p))
		return leave(p, NULL);
	return leave(p, parse_unary_in(p, with_filter));
}

static jj_node *parse_unary_in(jj_p *p, int with_filter)
{
	jj_tok *t = cur(p);
	jj_node *n;
	if (is_op(t, "-") || is_op(t, "+")) {
		p->pos++;
		if (!(n = node(p, is_op(t, "-") ? JN_NEG : JN_POS, t->line)))
			return NULL;
		n->a = parse_unary(p, 0);
		if (!n->a || !(n = seal(p, n)))
			return NULL;
	} else {
		n = parse_primary(p);
	}
	n = parse_postfix(p, n);
	if (n && with_filter)
		n = parse_filters(p, n, 1);
	return n;
}

static jj_node *binop(jj_p *p, int kind, int op, jj_node *a, jj_node *b, int line)
{
	if (!a || !b)
		return NULL;
	jj_node *n = node(p, kind, line);
	if (!n)
		return NULL;
	n->op = (uint8_t)op;
	n->a = a;
	n->b = b;
	return seal(p, n);
}

static jj_node *parse_pow(jj_p *p)
{
	jj_node *n = parse_unary(p, 1);
	while (n && is_op(cur(p), "**")) {
		int l = cur(p)->line;
		p->pos++;
		n = binop(p, JN_BIN, JO_POW, n, parse_unary(p, 1), l);
	}
	return n;
}

static jj_node *parse_math2(jj_p *p)
{
	jj_node *n = parse_pow(p);
	for (;;) {
		jj_tok *t = cur(p);
		int op = is_op(t, "*") ? JO_MUL : is_op(t, "/") ? JO_DIV : is_op(t, "//") ? JO_FLOORDIV :
			 is_op(t, "%") ? JO_MOD : -1;
		if (!n || op < 0)
			return n;
		p->pos++;
		n = binop(p, JN_BIN, op, n, parse_pow(p), t->line);
	}
}

static jj_node *parse_concat(jj_p *p)
{
	jj_node *n = parse_math2(p);
	while (n && is_op(cur(p), "~")) {
		int l = cur(p)->line;
		p->pos++;
		n = binop(p, JN_BIN, JO_CONCAT, n, parse_math2(p), l);
	}
	return n;
}

static jj_node *parse_math1(jj_p *p)
{
	jj_node *n = parse_concat(p);
	for (;;) {
		jj_tok *t = cur(p);
		int op = is_op(t, "+") ? JO_ADD : is_op(t, "-") ? JO_SUB : -1;
		if (!n || op < 0)
			return n;
		p->pos++;
		n = binop(p, JN_BIN, op, n, parse_concat(p), t->line);
	}
}

static jj_node *parse_compare(jj_p *p)
{
	jj_node *prev = parse_math1(p), *res = prev;
	int chained = 0;
	for (;;) {
		jj_tok *t = cur(p);
		int op = is_op(t, "==") ? JO_EQ : is_op(t, "!=") ? JO_NE : is_op(t, "<") ? JO_LT :
			 is_op(t, "<=") ? JO_LE : is_op(t, ">") ? JO_GT : is_op(t, ">=") ? JO_GE :
			 is_name(t, "in") ? JO_IN : (is_name(t, "not") && is_name(peek(p, 1), "in")) ? JO_NOTIN : -1;
		if (!res || op < 0)
			return res;
		p->pos += op == JO_NOTIN ? 2 : 1;
		jj_node *rhs = parse_math1(p);
		jj_node *c = binop(p, JN_CMP, op, prev, rhs, t->line);
		res = chained ? binop(p, JN_AND, 0, res, c, t->line) : c;
		chained = 1;
		prev = rhs;
	}
}

static jj_node *parse_not(jj_p *p)
{
	jj_tok *t = cur(p);
	if (is_name(t, "not") && !is_name(peek(p, 1), "in")) {
		p->pos++;
		jj_node *n = node(p, JN_NOT, t->line);
		if (!n || enter(p))
			return leave(p, NULL);
		if (!(n->a = leave(p, parse_not(p))))
			return NULL;
		return seal(p, n);
	}
	return parse_compare(p);
}

static jj_node *parse_and(jj_p *p)
{
	jj_node *n = parse_not(p);
	while (n && is_name(cur(p), "and")) {
		int l = cur(p)->line;
		p->pos++;
		n = binop(p, JN_AND, 0, n, parse_not(p), l);
	}
	return n;
}

static jj_node *parse_or(jj_p *p)
{
	jj_node *n = parse_and(p);
	while (n && is_name(cur(p), "or")) {
		int l = cur(p)->line;
		p->pos++;
		n = binop(p, JN_OR, 0, n, parse_and(p), l);
	}
	return n;
}

static jj_node *parse_expr_in(jj_p *p, int with_cond);
static jj_node *parse_expr(jj_p *p, int with_cond)
{
	if (enter(p))
		return leave(p, NULL);
	return leave(p, parse_expr_in(p, with_cond));
}

static jj_node *parse_expr_in(jj_p *p, int with_cond)
{
	jj_node *n = parse_or(p);
	while (n && with_cond && is_name(cur(p), "if")) {
		jj_node *c = node(p, JN_COND, cur(p)->line);
		p->pos++;
		if (!c)
			return NULL;
		c->a = n;
		if (!(c->b = parse_or(p)))
			return NULL;
		if (accept_name(p, "else") && !(c->c = parse_expr(p, 1)))
			return NULL;
		n = seal(p, c);
	}
	return n;
}

/* an expression, or a bare tuple a, b (for set / for targets and values) */
static jj_node *parse_tuple(jj_p *p, int with_cond)
{
	int line = cur(p)->line;
	jj_node *e = parse_expr(p, with_cond);
	if (!e || !is_op(cur(p), ","))
		return e;
	kidv k = {0};
	if (kid_push(p, &k, e, NULL))
		return NULL;
	while (accept_op(p, ",")) {
		if (cur(p)->type == TK_BE || is_name(cur(p), "in"))
			break;
		if (kid_push(p, &k, parse_expr(p, with_cond), NULL))
			return NULL;
	}
	jj_node *t = node(p, JN_TUPLE, line);
	if (!t)
		return NULL;
	kid_set(t, &k);
	return seal(p, t);
}

/* a set / for target: name, name.attr (set only), or names separated by commas */
static jj_node *parse_target(jj_p *p, int allow_attr)
{
	kidv k = {0};
	int line = cur(p)->line, paren = accept_op(p, "(");
	do {
		jj_tok *t = cur(p);
		if (t->type != TK_NAME) {
			perr(p, t->line, -EINVAL, "expected a variable name to assign to");
			return NULL;
		}
		p->pos++;
		jj_node *n = node(p, JN_NAME, t->line);
		if (!n)
			return NULL;
		n->s = t->s;
		n->slen = t->n;
		if (allow_attr && !k.n && accept_op(p, ".")) {
			jj_tok *a = cur(p);
			if (a->type != TK_NAME) {
				perr(p, a->line, -EINVAL, "expected an attribute name after '.'");
				return NULL;
			}
			p->pos++;
			jj_node *m = node(p, JN_ATTR, a->line);
			if (!m)
				return NULL;
			m->a = n;
			m->s = a->s;
			m->slen = a->n;
			return seal(p, m);
		}
		if (kid_push(p, &k, n, NULL))
			return NULL;
	} while (accept_op(p, ","));
	if (paren && expect_op(p, ")"))
		return NULL;
	if (k.n == 1)
		return k.v[0];
	jj_node *t = node(p, JN_TUPLE, line);
	if (!t)
		return NULL;
	kid_set(t, &k);
	return seal(p, t);
}

static jj_node *parse_body(jj_p *p, const char *const *ends, const char **which);

/* {% if %} ... after "if" */
static jj_node *parse_if(jj_p *p, int line)
{
	jj_node *n = node(p, JS_IF, line);
	static const char *const ends[] = {"elif", "else", "endif", NULL};
	const char *w = NULL;
	if (!n || !(n->a = parse_expr(p, 1)) || expect_end(p, TK_BE) || !(n->b = parse_body(p, ends, &w)))
		return NULL;
	if (!strcmp(w, "elif")) {
		jj_node *blk = node(p, JS_BLOCK, line);
		kidv k = {0};
		if (!blk || enter(p))
			return leave(p, NULL);
		if (kid_push(p, &k, leave(p, parse_if(p, cur(p)->line)), NULL))
			return NULL;
		kid_set(blk, &k);
		if (!(n->c = seal(p, blk)))
			return NULL;
		return seal(p, n);
	}
	if (!strcmp(w, "else")) {
		static const char *const ends2[] = {"endif", NULL};
		if (expect_end(p, TK_BE) || !(n->c = parse_body(p, ends2, &w)))
			return NULL;
	}
	if (expect_end(p, TK_BE))
		return NULL;
	return seal(p, n);
}

static int parse_params(jj_p *p, kidv *k)
{
	if (expect_op(p, "("))
		return p->rc;
	while (!is_op(cur(p), ")")) {
		if (k->n && expect_op(p, ","))
			return p->rc;
		jj_tok *t = cur(p);
		if (t->type != TK_NAME)
			return perr(p, t->line, -EINVAL, "expected a parameter name");
		p->pos++;
		jj_node *n = node(p, JN_NAME, t->line);
		if (!n)
			return p->rc;
		n->s = t->s;
		n->slen = t->n;
		if (accept_op(p, "=") && !(n->a = parse_expr(p, 1)))
			return p->rc;
		if (kid_push(p, k, seal(p, n), NULL))
			return p->rc;
	}
	p->pos++;
	return 0;
}

static jj_node *parse_stmt_in(jj_p *p);
static jj_node *parse_stmt(jj_p *p)
{
	if (enter(p))
		return leave(p, NULL);
	return leave(p, parse_stmt_in(p));
}

static jj_node *parse_stmt_in(jj_p *p)
{
	jj_tok *t = cur(p);
	int line = t->line;
	if (t->type != TK_NAME) {
		perr(p, line, -EINVAL, "expected a tag name after {%%");
		return NULL;
	}
	p->pos++;
	const char *w = NULL;
	jj_node *n;
	if (!strcmp(t->s, "if"))
		return parse_if(p, line);
	if (!strcmp(t->s, "for")) {
		static const char *const ends[] = {"else", "endfor", NULL}, *const ends2[] = {"endfor", NULL};
		if (!(n = node(p, JS_FOR, line)) || !(n->a = parse_target(p, 0)))
			return NULL;
		if (!accept_name(p, "in")) {
			perr(p, cur(p)->line, -EINVAL, "expected 'in' in the for tag");
			return NULL;
		}
		if (!(n->b = parse_tuple(p, 0)))
			return NULL;
		if (accept_name(p, "if") && !(n->e = parse_expr(p, 1)))
			return NULL;
		if (is_name(cur(p), "recursive")) {
			perr(p, line, -EINVAL, "recursive for loops are not supported");
			return NULL;
		}
		if (expect_end(p, TK_BE) || !(n->c = parse_body(p, ends, &w)))
			return NULL;
		if (!strcmp(w, "else") && (expect_end(p, TK_BE) || !(n->d = parse_body(p, ends2, &w))))
			return NULL;
		if (expect_end(p, TK_BE))
			return NULL;
		return seal(p, n);
	}
	if (!strcmp(t->s, "set")) {
		static const char *const ends[] = {"endset", NULL};
		if (!(n = node(p, JS_SET, line)) || !(n->a = parse_target(p, 1)))
			return NULL;
		if (accept_op(p, "=")) {
			if (!(n->b = parse_tuple(p, 1)) || expect_end(p, TK_BE))
				return NULL;
		} else {
			if (n->a->kind != JN_NAME) {
				perr(p, line, -EINVAL, "a {%% set %%} block assigns one name");
				return NULL;
			}
			if (is_op(cur(p), "|") && !(n->d = parse_filters(p, NULL, 0)))
				return NULL;
			if (expect_end(p, TK_BE) || !(n->c = parse_body(p, ends, &w)) || expect_end(p, TK_BE))
				return NULL;
		}
		return seal(p, n);
	}
	if (!strcmp(t->s, "macro")) {
		static const char *const ends[] = {"endmacro", NULL};
		jj_tok *nm = cur(p);
		kidv k = {0};
		if (nm->type != TK_NAME) {
			perr(p, nm->line, -EINVAL, "expected a macro name");
			return NULL;
		}
		p->pos++;
		if (!(n = node(p, JS_MACRO, line)))
			return NULL;
		n->s = nm->s;
		if (parse_params(p, &k) || expect_end(p, TK_BE))
			return NULL;
		kid_set(n, &k);
		if (!(n->c = parse_body(p, ends, &w)))
			return NULL;
		if (cur(p)->type == TK_NAME)
			p->pos++; /* {% endmacro name %} */
		if (expect_end(p, TK_BE))
			return NULL;
		return seal(p, n);
	}
	if (!strcmp(t->s, "call")) {
		static const char *const ends[] = {"endcall", NULL};
		kidv k = {0};
		if (!(n = node(p, JS_CALLBLOCK, line)))
			return NULL;
		if (is_op(cur(p), "(") && parse_params(p, &k))
			return NULL;
		kid_set(n, &k);
		if (!(n->a = parse_expr(p, 1)))
			return NULL;
		if (n->a->kind != JN_CALL) {
			perr(p, line, -EINVAL, "{%% call %%} needs a macro call");
			return NULL;
		}
		if (expect_end(p, TK_BE) || !(n->c = parse_body(p, ends, &w)) || expect_end(p, TK_BE))
			return NULL;
		return seal(p, n);
	}
	if (!strcmp(t->s, "filter")) {
		static const char *const ends[] = {"endfilter", NULL};
		if (!(n = node(p, JS_FILTERBLOCK, line)))
			return NULL;
		/* parse_filters reads "| name ...": the tag's own name token becomes the '|' */
		p->pos--;
		p->t[p->pos] = (jj_tok){.type = TK_OP, .line = line, .s = "|", .n = 1};
		n->a = parse_filters(p, NULL, 0);
		if (!n->a || expect_end(p, TK_BE) || !(n->c = parse_body(p, ends, &w)) || expect_end(p, TK_BE))
			return NULL;
		return seal(p, n);
	}
	if (!strcmp(t->s, "generation")) { /* transformers' assistant-mask marker: renders its body */
		static const char *const ends[] = {"endgeneration", NULL};
		if (expect_end(p, TK_BE) || !(n = parse_body(p, ends, &w)) || expect_end(p, TK_BE))
			return NULL;
		return n;
	}
	if (!strcmp(t->s, "break") || !strcmp(t->s, "continue")) {
		if (!(n = node(p, t->s[0] == 'b' ? JS_BREAK : JS_CONTINUE, line)) || expect_end(p, TK_BE))
			return NULL;
		return n;
	}
	static const char *const unsupported[] = {"include", "import", "from", "extends", "block", "with", "do",
						   "autoescape", "trans", NULL};
	for (int k = 0; unsupported[k]; k++)
		if (!strcmp(t->s, unsupported[k])) {
			perr(p, line, -EINVAL, "the {%% %s %%} tag is not supported in chat templates", t->s);
			return NULL;
		}
	perr(p, line, -EINVAL, "unknown tag '%.40s'", t->s);
	return NULL;
}

/* statements up to {% end %} where end is one of ends (NULL ends: the end of the template).
 * On return at an end tag, p->pos is past its name (the caller reads the rest of the tag) and
 * *which is the name. */
static jj_node *parse_body(jj_p *p, const char *const *ends, const char **which)
{
	jj_node *blk = node(p, JS_BLOCK, cur(p)->line);
	kidv k = {0};
	if (!blk)
		return NULL;
	for (;;) {
		jj_tok *t = cur(p);
		if (t->type == TK_EOF) {
			if (ends) {
				size_t last = 0;
				while (ends[last + 1])
					last++;
				perr(p, t->line, -EINVAL, "missing {%% %s %%}", ends[last]);
				return NULL;
			}
			break;
		}
		if (t->type == TK_TEXT) {
			jj_node *n = node(p, JS_TEXT, t->line);
			if (!n)
				return NULL;
			n->s = t->s;
			n->slen = t->n;
			p->pos++;
			if (kid_push(p, &k, n, NULL))
				return NULL;
		} else if (t->type == TK_VB) {
			p->pos++;
			jj_node *n = node(p, JS_OUT, t->line);
			if (!n || !(n->a = parse_expr(p, 1)) || expect_end(p, TK_VE) || kid_push(p, &k, seal(p, n), NULL))
				return NULL;
		} else if (t->type == TK_BB) {
			jj_tok *nm = peek(p, 1);
			int hit = 0;
			for (size_t e = 0; ends && ends[e]; e++)
				if (is_name(nm, ends[e])) {
					*which = ends[e];
					hit = 1;
				}
			if (hit) {
				p->pos += 2;
				break;
			}
			if (nm->type == TK_NAME && (!strncmp(nm->s, "end", 3) || !strcmp(nm->s, "else") || !strcmp(nm->s, "elif"))) {
				perr(p, nm->line, -EINVAL, "unexpected {%% %s %%}%s%s%s", nm->s, ends ? " (expected {% " : "",
				     ends ? ends[0] : "", ends ? " %})" : "");
				return NULL;
			}
			p->pos++;
			if (kid_push(p, &k, parse_stmt(p), NULL))
				return NULL;
		} else {
			char b[64];
			perr(p, t->line, -EINVAL, "unexpected %s", tok_desc(t, b, sizeof b));
			return NULL;
		}
	}
	kid_set(blk, &k);
	return seal(p, blk);
}

int tok_jinja_parse(tok_jinja **out, const char *src, size_t len, char *err, size_t errlen)
{
	if (!out || (!src && len))
		return -EINVAL;
	*out = NULL;
	if (err && errlen)
		err[0] = 0;
	if (len > TOK_JINJA_MAX_SRC) {
		if (err && errlen)
			snprintf(err, errlen, "chat template: %zu bytes, more than the %u accepted", len, TOK_JINJA_MAX_SRC);
		return -E2BIG;
	}
	tok_jinja *t = calloc(1, sizeof *t);
	if (!t)
		return -ENOMEM;
	t->arena.budget = (size_t)TOK_JINJA_MAX_SRC * 64;
	jj_p p = {.ar = &t->arena, .err = err, .errlen = errlen};
	/* newlines: \r\n and \r become \n; one trailing newline goes (keep_trailing_newline off) */
	char *s = jj_alloc(&t->arena, len + 1);
	if (!s) {
		tok_jinja_free(t);
		return -ENOMEM;
	}
	size_t n = 0;
	for (size_t i = 0; i < len; i++) {
		if (src[i] == '\r') {
			s[n++] = '\n';
			if (i + 1 < len && src[i + 1] == '\n')
				i++;
		} else {
			s[n++] = src[i];
		}
	}
	if (n && s[n - 1] == '\n')
		n--;
	s[n] = 0;
	p.src = s;
	p.len = n;
	int rc = lex(&p);
	if (!rc) {
		t->root = parse_body(&p, NULL, NULL);
		rc = t->root ? 0 : p.rc ? p.rc : -ENOMEM;
	}
	free(p.t);
	if (rc) {
		tok_jinja_free(t);
		return rc;
	}
	*out = t;
	return 0;
}

void tok_jinja_free(tok_jinja *t)
{
	if (!t)
		return;
	jj_arena_free(&t->arena);
	free(t);
}

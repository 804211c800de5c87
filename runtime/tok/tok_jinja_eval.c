/* tok_jinja_eval.c — renders a parsed Jinja template (tok_jinja_int.h) against a JSON context
 * with Python semantics where chat templates see them: truthiness, str() and repr() of None,
 * booleans, floats, lists and dicts, integer and float arithmetic, string methods (strip, split,
 * startswith, ...), dict methods (get, items, keys, values), Jinja's undefined values, filters,
 * tests, loops with the loop variable, namespaces, macros and call blocks. All values of one
 * render live in one arena whose budget bounds its memory; steps, loop iterations, macro depth
 * and output are bounded too. Strings are UTF-8; lengths, indexes and slices count code points
 * as Python does. Case mapping covers ASCII, Latin-1, Latin Extended-A, Greek and Cyrillic.
 * See tok_jinja.h. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <jansson.h>
#include "runtime/tok/tok_jinja_int.h"

enum { V_UNDEF, V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_LIST, V_DICT, V_FUNC, V_LOOP };

typedef struct jlist jlist;
typedef struct jdict jdict;
typedef struct jfn jfn;
typedef struct jloop jloop;
typedef struct frame frame;

typedef struct {
	uint8_t t;
	uint8_t tuple; /* V_LIST: 1 a tuple, 2/3/4 dict.items()/keys()/values(); V_DICT: a namespace */
	union {
		int64_t i;
		double f;
		struct {
			const char *p;
			size_t n;
		} s; /* V_STR; V_UNDEF: the name that was looked up */
		jlist *l;
		jdict *d;
		jfn *fn;
		jloop *lp;
	} u;
} jv;

struct jlist {
	size_t n;
	jv *v;
};

struct jdict {
	size_t n, cap;
	jv *k, *v;
};

enum { FN_MACRO, FN_RANGE, FN_NAMESPACE, FN_DICT, FN_RAISE, FN_STRFTIME, FN_CYCLE };

struct jfn {
	int kind;
	const jj_node *m;     /* FN_MACRO: JS_MACRO or JS_CALLBLOCK node */
	frame *closure;       /* FN_MACRO: where it was defined */
	jloop *lp;            /* FN_CYCLE */
};

struct jloop {
	size_t i, n;
	jv *items;
};

struct frame {
	frame *up;
	int captured; /* a macro defined here keeps it as its closure */
	size_t n, cap;
	const char **k;
	jv *v;
};

typedef struct {
	char *p;
	size_t n, cap;
} sbuf;

typedef struct {
	jj_arena ar;
	char *err;
	size_t errlen;
	int rc;
	uint64_t steps, iters, max_steps;
	int calls;
	size_t max_out;
	const tok_jinja_opts *o;
	frame *root;
	jfn *caller; /* the call block a macro call made now hands to the macro */
} R;

#define BRK 1
#define CONT 2
#define TRY(x)                      \
	do {                        \
		int rc_ = (x);      \
		if (rc_)            \
			return rc_; \
	} while (0)

static const jv UNDEF = {.t = V_UNDEF};
static const jv NONE = {.t = V_NONE};

static int rerr(R *r, const jj_node *n, int rc, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int rerr(R *r, const jj_node *n, int rc, const char *fmt, ...)
{
	if (r->rc)
		return r->rc;
	r->rc = rc;
	if (r->err && r->errlen) {
		char m[300];
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(m, sizeof m, fmt, ap);
		va_end(ap);
		if (n)
			snprintf(r->err, r->errlen, "chat template line %d: %s", n->line, m);
		else
			snprintf(r->err, r->errlen, "chat template: %s", m);
	}
	return rc;
}

static void *ralloc(R *r, const jj_node *n, size_t sz)
{
	void *p = jj_alloc(&r->ar, sz ? sz : 1);
	if (!p) {
		if (jj_arena_oom(&r->ar) == -E2BIG)
			rerr(r, n, -E2BIG, "rendering needs more than %u MiB of memory", TOK_JINJA_MAX_MEM >> 20);
		else
			rerr(r, n, -ENOMEM, "out of memory");
	}
	return p;
}

/* sizes of arrays: n elements of sz bytes, refused when n * sz overflows the budget */
static void *ralloc_n(R *r, const jj_node *n, size_t cnt, size_t sz)
{
	if (cnt && sz > (size_t)TOK_JINJA_MAX_MEM / cnt) {
		rerr(r, n, -E2BIG, "rendering needs more than %u MiB of memory", TOK_JINJA_MAX_MEM >> 20);
		return NULL;
	}
	return ralloc(r, n, cnt * sz);
}

/* ---- strings and buffers */

static int sb_put(R *r, const jj_node *at, sbuf *b, const char *s, size_t n)
{
	if (!n)
		return 0;
	if (b->n + n > r->max_out)
		return rerr(r, at, -E2BIG, "the rendered text is longer than %zu bytes", r->max_out);
	if (b->n + n > b->cap) {
		size_t nc = b->cap ? b->cap * 2 : 256;
		while (nc < b->n + n)
			nc *= 2;
		char *p = ralloc(r, at, nc);
		if (!p)
			return r->rc;
		if (b->n)
			memcpy(p, b->p, b->n);
		b->p = p;
		b->cap = nc;
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
	return 0;
}

static int sb_puts(R *r, const jj_node *at, sbuf *b, const char *s) { return sb_put(r, at, b, s, strlen(s)); }

static jv mkstr(const char *p, size_t n)
{
	jv v = {.t = V_STR};
	v.u.s.p = p;
	v.u.s.n = n;
	return v;
}

static jv mkint(int64_t i)
{
	jv v = {.t = V_INT};
	v.u.i = i;
	return v;
}

static jv mkbool(int b)
{
	jv v = {.t = V_BOOL};
	v.u.i = !!b;
	return v;
}

static jv mkfloat(double f)
{
	jv v = {.t = V_FLOAT};
	v.u.f = f;
	return v;
}

static jv sb_str(sbuf *b) { return mkstr(b->p ? b->p : "", b->n); }

static int mklist(R *r, const jj_node *at, size_t n, jv *out)
{
	jlist *l = ralloc(r, at, sizeof *l);
	if (!l || !(l->v = ralloc_n(r, at, n, sizeof(jv))))
		return r->rc;
	l->n = n;
	*out = (jv){.t = V_LIST};
	out->u.l = l;
	return 0;
}

static int mkdict(R *r, const jj_node *at, size_t cap, jv *out)
{
	jdict *d = ralloc(r, at, sizeof *d);
	if (!d)
		return r->rc;
	if (cap && (!(d->k = ralloc_n(r, at, cap, sizeof(jv))) || !(d->v = ralloc_n(r, at, cap, sizeof(jv)))))
		return r->rc;
	d->cap = cap;
	*out = (jv){.t = V_DICT};
	out->u.d = d;
	return 0;
}

size_t jj_cp(const char *s, size_t n, size_t i, uint32_t *cp)
{
	unsigned char c = (unsigned char)s[i];
	size_t l = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
	if (!l || i + l > n) {
		*cp = c;
		return 1;
	}
	uint32_t v = l == 1 ? c : l == 2 ? c & 0x1F : l == 3 ? c & 0x0F : c & 0x07;
	for (size_t k = 1; k < l; k++) {
		if (((unsigned char)s[i + k] & 0xC0) != 0x80) {
			*cp = c;
			return 1;
		}
		v = v << 6 | ((unsigned char)s[i + k] & 0x3F);
	}
	*cp = v;
	return l;
}

static size_t cp_count(const char *s, size_t n)
{
	size_t c = 0;
	for (size_t i = 0; i < n; c++) {
		uint32_t cp;
		i += jj_cp(s, n, i, &cp);
	}
	return c;
}

/* byte offset of code point k (k <= count) */
static size_t cp_off(const char *s, size_t n, size_t k)
{
	size_t i = 0;
	while (k-- && i < n) {
		uint32_t cp;
		i += jj_cp(s, n, i, &cp);
	}
	return i;
}

/* Python's str.isspace for one code point */
static int py_space(uint32_t c)
{
	return (c >= 9 && c <= 13) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
	       (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f ||
	       c == 0x3000;
}

static int in_chars(uint32_t c, const jv *chars)
{
	if (!chars)
		return py_space(c);
	const char *s = chars->u.s.p;
	size_t n = chars->u.s.n;
	for (size_t i = 0; i < n;) {
		uint32_t d;
		i += jj_cp(s, n, i, &d);
		if (d == c)
			return 1;
	}
	return 0;
}

/* Python str.strip / lstrip / rstrip (chars NULL: whitespace) */
static jv py_strip(jv s, const jv *chars, int left, int right)
{
	const char *p = s.u.s.p;
	size_t a = 0, b = s.u.s.n;
	while (left && a < b) {
		uint32_t c;
		size_t l = jj_cp(p, b, a, &c);
		if (!in_chars(c, chars))
			break;
		a += l;
	}
	while (right && b > a) {
		size_t k = b - 1;
		while (k > a && ((unsigned char)p[k] & 0xC0) == 0x80)
			k--;
		uint32_t c;
		jj_cp(p, b, k, &c);
		if (!in_chars(c, chars))
			break;
		b = k;
	}
	return mkstr(p + a, b - a);
}

/* ---- str() and repr() */

static void float_repr(double f, char *o, size_t on)
{
	if (isnan(f)) {
		snprintf(o, on, "nan");
		return;
	}
	if (isinf(f)) {
		snprintf(o, on, f < 0 ? "-inf" : "inf");
		return;
	}
	char e[40];
	int prec;
	for (prec = 1; prec <= 17; prec++) {
		snprintf(e, sizeof e, "%.*e", prec - 1, f);
		if (strtod(e, NULL) == f)
			break;
	}
	/* e: [-]d[.ddd]e[+-]XX */
	char dig[24];
	size_t nd = 0;
	const char *q = e;
	int neg = *q == '-';
	q += neg;
	for (; *q && *q != 'e'; q++)
		if (*q != '.')
			dig[nd++] = *q;
	int ex = atoi(q + 1);
	while (nd > 1 && dig[nd - 1] == '0')
		nd--;
	char *w = o;
	size_t left = on;
#define OUT(...)                                                 \
	do {                                                     \
		int k_ = snprintf(w, left, __VA_ARGS__);         \
		if (k_ > 0 && (size_t)k_ < left) {               \
			w += k_;                                 \
			left -= (size_t)k_;                      \
		}                                                \
	} while (0)
	if (neg)
		OUT("-");
	if (ex >= -4 && ex < 16) {
		if (ex >= 0) {
			for (int k = 0; k <= ex; k++)
				OUT("%c", (size_t)k < nd ? dig[k] : '0');
			OUT(".");
			if ((size_t)ex + 1 < nd)
				for (size_t k = (size_t)ex + 1; k < nd; k++)
					OUT("%c", dig[k]);
			else
				OUT("0");
		} else {
			OUT("0.");
			for (int k = 0; k < -ex - 1; k++)
				OUT("0");
			for (size_t k = 0; k < nd; k++)
				OUT("%c", dig[k]);
		}
	} else {
		OUT("%c", dig[0]);
		if (nd > 1) {
			OUT(".");
			for (size_t k = 1; k < nd; k++)
				OUT("%c", dig[k]);
		}
		OUT("e%c%02d", ex < 0 ? '-' : '+', ex < 0 ? -ex : ex);
	}
#undef OUT
}

static int put_str_d(R *r, const jj_node *at, sbuf *b, const jv *v, int depth);

/* values nest only as deep as the tree; deeper ones (built in loops, or a namespace holding
 * itself) are refused by whatever walks them */
static int too_deep(R *r, const jj_node *at)
{
	return rerr(r, at, -E2BIG, "a value nests more than %d deep (or holds itself)", TOK_JINJA_MAX_DEPTH);
}

static int put_repr_str(R *r, const jj_node *at, sbuf *b, const char *s, size_t n)
{
	int sq = memchr(s, '\'', n) != NULL, dq = memchr(s, '"', n) != NULL;
	char q = sq && !dq ? '"' : '\'';
	TRY(sb_put(r, at, b, &q, 1));
	for (size_t i = 0; i < n;) {
		uint32_t c;
		size_t l = jj_cp(s, n, i, &c);
		char e[12];
		if (c == '\\' || c == (uint32_t)q) {
			e[0] = '\\';
			e[1] = (char)c;
			TRY(sb_put(r, at, b, e, 2));
		} else if (c == '\n') {
			TRY(sb_puts(r, at, b, "\\n"));
		} else if (c == '\r') {
			TRY(sb_puts(r, at, b, "\\r"));
		} else if (c == '\t') {
			TRY(sb_puts(r, at, b, "\\t"));
		} else if (c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0)) {
			snprintf(e, sizeof e, "\\x%02x", c);
			TRY(sb_puts(r, at, b, e));
		} else {
			TRY(sb_put(r, at, b, s + i, l));
		}
		i += l;
	}
	return sb_put(r, at, b, &q, 1);
}

static int put_repr_d(R *r, const jj_node *at, sbuf *b, const jv *v, int depth)
{
	if (v->t == V_UNDEF)
		return sb_puts(r, at, b, "Undefined");
	if (v->t == V_STR)
		return put_repr_str(r, at, b, v->u.s.p, v->u.s.n);
	return put_str_d(r, at, b, v, depth);
}

static int put_repr(R *r, const jj_node *at, sbuf *b, const jv *v) { return put_repr_d(r, at, b, v, 0); }

/* Python str(v); undefined prints nothing */
static int put_str(R *r, const jj_node *at, sbuf *b, const jv *v) { return put_str_d(r, at, b, v, 0); }

static int put_str_d(R *r, const jj_node *at, sbuf *b, const jv *v, int depth)
{
	char tmp[48];
	if (depth > TOK_JINJA_MAX_DEPTH)
		return too_deep(r, at);
	switch (v->t) {
	case V_UNDEF: return 0;
	case V_NONE: return sb_puts(r, at, b, "None");
	case V_BOOL: return sb_puts(r, at, b, v->u.i ? "True" : "False");
	case V_INT: snprintf(tmp, sizeof tmp, "%lld", (long long)v->u.i); return sb_puts(r, at, b, tmp);
	case V_FLOAT: float_repr(v->u.f, tmp, sizeof tmp); return sb_puts(r, at, b, tmp);
	case V_STR: return sb_put(r, at, b, v->u.s.p, v->u.s.n);
	case V_LIST:
		if (v->tuple >= 2) { /* Python's repr of a dict view */
			static const char *view[] = {"dict_items(", "dict_keys(", "dict_values("};
			jv l = *v;
			l.tuple = 0;
			TRY(sb_puts(r, at, b, view[v->tuple - 2]));
			TRY(put_str_d(r, at, b, &l, depth));
			return sb_puts(r, at, b, ")");
		}
		TRY(sb_puts(r, at, b, v->tuple ? "(" : "["));
		for (size_t i = 0; i < v->u.l->n; i++) {
			if (i)
				TRY(sb_puts(r, at, b, ", "));
			TRY(put_repr_d(r, at, b, &v->u.l->v[i], depth + 1));
		}
		if (v->tuple && v->u.l->n == 1)
			TRY(sb_puts(r, at, b, ","));
		return sb_puts(r, at, b, v->tuple ? ")" : "]");
	case V_DICT:
		TRY(sb_puts(r, at, b, v->tuple ? "<Namespace {" : "{"));
		for (size_t i = 0; i < v->u.d->n; i++) {
			if (i)
				TRY(sb_puts(r, at, b, ", "));
			TRY(put_repr_d(r, at, b, &v->u.d->k[i], depth + 1));
			TRY(sb_puts(r, at, b, ": "));
			TRY(put_repr_d(r, at, b, &v->u.d->v[i], depth + 1));
		}
		return sb_puts(r, at, b, v->tuple ? "}>" : "}");
	case V_FUNC: return sb_puts(r, at, b, "<function>");
	default: return sb_puts(r, at, b, "<LoopContext>");
	}
}

static int to_str(R *r, const jj_node *at, const jv *v, jv *out)
{
	if (v->t == V_STR) {
		*out = *v;
		return 0;
	}
	sbuf b = {0};
	TRY(put_str(r, at, &b, v));
	*out = sb_str(&b);
	return 0;
}

static const char *tname(const jv *v)
{
	static const char *n[] = {"Undefined", "NoneType", "bool", "int", "float", "str", "list", "dict", "function", "LoopContext"};
	if (v->t == V_LIST && v->tuple)
		return v->tuple == 1 ? "tuple" : v->tuple == 2 ? "dict_items" : v->tuple == 3 ? "dict_keys" : "dict_values";
	if (v->t == V_DICT && v->tuple)
		return "Namespace";
	return n[v->t];
}

static int undef_err(R *r, const jj_node *at, const jv *v)
{
	if (v->u.s.p)
		return rerr(r, at, -EINVAL, "'%.*s' is undefined", (int)(v->u.s.n > 60 ? 60 : v->u.s.n), v->u.s.p);
	return rerr(r, at, -EINVAL, "a value is undefined");
}

/* ---- tojson: Python json.dumps */

typedef struct {
	int ascii, sort;
	const char *indent; /* NULL: none */
	size_t indent_n;
	const char *item_sep, *key_sep;
	size_t item_n, key_n;
} jopts;

static int json_str(R *r, const jj_node *at, sbuf *b, const char *s, size_t n, int ascii)
{
	TRY(sb_put(r, at, b, "\"", 1));
	for (size_t i = 0; i < n;) {
		uint32_t c;
		size_t l = jj_cp(s, n, i, &c);
		char e[16];
		switch (c) {
		case '"': TRY(sb_puts(r, at, b, "\\\"")); break;
		case '\\': TRY(sb_puts(r, at, b, "\\\\")); break;
		case '\n': TRY(sb_puts(r, at, b, "\\n")); break;
		case '\r': TRY(sb_puts(r, at, b, "\\r")); break;
		case '\t': TRY(sb_puts(r, at, b, "\\t")); break;
		case '\b': TRY(sb_puts(r, at, b, "\\b")); break;
		case '\f': TRY(sb_puts(r, at, b, "\\f")); break;
		default:
			if (c < 0x20 || (ascii && c >= 0x7f)) {
				if (c >= 0x10000) {
					uint32_t v = c - 0x10000;
					snprintf(e, sizeof e, "\\u%04x\\u%04x", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF));
				} else {
					snprintf(e, sizeof e, "\\u%04x", c);
				}
				TRY(sb_puts(r, at, b, e));
			} else {
				TRY(sb_put(r, at, b, s + i, l));
			}
		}
		i += l;
	}
	return sb_put(r, at, b, "\"", 1);
}

static int cmp_vals(R *r, const jj_node *at, const jv *a, const jv *b, int *res);

static int json_nl(R *r, const jj_node *at, sbuf *b, const jopts *o, int level)
{
	TRY(sb_put(r, at, b, "\n", 1));
	for (int k = 0; k < level; k++)
		TRY(sb_put(r, at, b, o->indent, o->indent_n));
	return 0;
}

static int json_val(R *r, const jj_node *at, sbuf *b, const jv *v, const jopts *o, int level)
{
	char tmp[48];
	if (level > TOK_JINJA_MAX_DEPTH)
		return rerr(r, at, -E2BIG, "tojson: a value nests more than %d deep", TOK_JINJA_MAX_DEPTH);
	switch (v->t) {
	case V_NONE: return sb_puts(r, at, b, "null");
	case V_BOOL: return sb_puts(r, at, b, v->u.i ? "true" : "false");
	case V_INT: snprintf(tmp, sizeof tmp, "%lld", (long long)v->u.i); return sb_puts(r, at, b, tmp);
	case V_FLOAT:
		if (isnan(v->u.f))
			return sb_puts(r, at, b, "NaN");
		if (isinf(v->u.f))
			return sb_puts(r, at, b, v->u.f < 0 ? "-Infinity" : "Infinity");
		float_repr(v->u.f, tmp, sizeof tmp);
		return sb_puts(r, at, b, tmp);
	case V_STR: return json_str(r, at, b, v->u.s.p, v->u.s.n, o->ascii);
	case V_LIST:
		if (v->tuple >= 2)
			return rerr(r, at, -EINVAL, "tojson: object of type %s is not JSON serializable", tname(v));
		if (!v->u.l->n)
			return sb_puts(r, at, b, "[]");
		TRY(sb_puts(r, at, b, "["));
		for (size_t i = 0; i < v->u.l->n; i++) {
			if (i)
				TRY(sb_put(r, at, b, o->item_sep, o->item_n));
			if (o->indent)
				TRY(json_nl(r, at, b, o, level + 1));
			TRY(json_val(r, at, b, &v->u.l->v[i], o, level + 1));
		}
		if (o->indent)
			TRY(json_nl(r, at, b, o, level));
		return sb_puts(r, at, b, "]");
	case V_DICT: {
		jdict *d = v->u.d;
		if (!d->n)
			return sb_puts(r, at, b, "{}");
		size_t *ord = ralloc_n(r, at, d->n, sizeof *ord);
		if (!ord)
			return r->rc;
		for (size_t i = 0; i < d->n; i++)
			ord[i] = i;
		if (o->sort) /* insertion sort: stable, and dicts here are small */
			for (size_t i = 1; i < d->n; i++)
				for (size_t j = i; j > 0; j--) {
					int c;
					TRY(cmp_vals(r, at, &d->k[ord[j - 1]], &d->k[ord[j]], &c));
					if (c <= 0)
						break;
					size_t t = ord[j];
					ord[j] = ord[j - 1];
					ord[j - 1] = t;
				}
		TRY(sb_puts(r, at, b, "{"));
		for (size_t i = 0; i < d->n; i++) {
			const jv *k = &d->k[ord[i]];
			if (i)
				TRY(sb_put(r, at, b, o->item_sep, o->item_n));
			if (o->indent)
				TRY(json_nl(r, at, b, o, level + 1));
			if (k->t == V_STR) {
				TRY(json_str(r, at, b, k->u.s.p, k->u.s.n, o->ascii));
			} else if (k->t == V_INT || k->t == V_FLOAT || k->t == V_BOOL || k->t == V_NONE) {
				sbuf kb = {0};
				TRY(json_val(r, at, &kb, k, o, level + 1));
				TRY(json_str(r, at, b, kb.p, kb.n, o->ascii));
			} else {
				return rerr(r, at, -EINVAL, "tojson: keys must be str, int, float, bool or None, not %s", tname(k));
			}
			TRY(sb_put(r, at, b, o->key_sep, o->key_n));
			TRY(json_val(r, at, b, &d->v[ord[i]], o, level + 1));
		}
		if (o->indent)
			TRY(json_nl(r, at, b, o, level));
		return sb_puts(r, at, b, "}");
	}
	default:
		return rerr(r, at, -EINVAL, "tojson: object of type %s is not JSON serializable", tname(v));
	}
}

/* ---- truthiness, equality, ordering */

static int truthy(const jv *v)
{
	switch (v->t) {
	case V_UNDEF: case V_NONE: return 0;
	case V_BOOL: case V_INT: return v->u.i != 0;
	case V_FLOAT: return v->u.f != 0;
	case V_STR: return v->u.s.n != 0;
	case V_LIST: return v->u.l->n != 0;
	case V_DICT: return v->u.d->n != 0;
	default: return 1;
	}
}

static int is_num(const jv *v) { return v->t == V_INT || v->t == V_FLOAT || v->t == V_BOOL; }
static double num(const jv *v) { return v->t == V_FLOAT ? v->u.f : (double)v->u.i; }

static int eq_d(const jv *a, const jv *b, int depth);
/* Python ==; values nested past the limit compare unequal */
static int eq(const jv *a, const jv *b) { return eq_d(a, b, 0); }

static int eq_d(const jv *a, const jv *b, int depth)
{
	if (depth > TOK_JINJA_MAX_DEPTH)
		return 0;
	if (is_num(a) && is_num(b)) {
		if (a->t != V_FLOAT && b->t != V_FLOAT)
			return a->u.i == b->u.i;
		return num(a) == num(b);
	}
	if (a->t != b->t)
		return 0;
	switch (a->t) {
	case V_UNDEF: case V_NONE: return 1;
	case V_STR: return a->u.s.n == b->u.s.n && !memcmp(a->u.s.p, b->u.s.p, a->u.s.n);
	case V_LIST:
		if (a->tuple != b->tuple || a->u.l->n != b->u.l->n)
			return 0;
		if (a->u.l == b->u.l) /* the same object, as Python's identity shortcut */
			return 1;
		for (size_t i = 0; i < a->u.l->n; i++)
			if (!eq_d(&a->u.l->v[i], &b->u.l->v[i], depth + 1))
				return 0;
		return 1;
	case V_DICT:
		if (a->u.d == b->u.d)
			return 1;
		if (a->tuple || b->tuple || a->u.d->n != b->u.d->n) /* namespaces: identity only */
			return 0;
		for (size_t i = 0; i < a->u.d->n; i++) {
			size_t j;
			for (j = 0; j < b->u.d->n; j++)
				if (eq_d(&a->u.d->k[i], &b->u.d->k[j], depth + 1))
					break;
			if (j == b->u.d->n || !eq_d(&a->u.d->v[i], &b->u.d->v[j], depth + 1))
				return 0;
		}
		return 1;
	case V_FUNC: return a->u.fn == b->u.fn;
	default: return a->u.lp == b->u.lp;
	}
}

static int cmp_vals_d(R *r, const jj_node *at, const jv *a, const jv *b, int *res, int depth);
static int cmp_vals(R *r, const jj_node *at, const jv *a, const jv *b, int *res)
{
	return cmp_vals_d(r, at, a, b, res, 0);
}

static int cmp_vals_d(R *r, const jj_node *at, const jv *a, const jv *b, int *res, int depth)
{
	if (depth > TOK_JINJA_MAX_DEPTH)
		return too_deep(r, at);
	if (is_num(a) && is_num(b)) {
		if (a->t != V_FLOAT && b->t != V_FLOAT)
			*res = a->u.i < b->u.i ? -1 : a->u.i > b->u.i;
		else
			*res = num(a) < num(b) ? -1 : num(a) > num(b);
		return 0;
	}
	if (a->t == V_STR && b->t == V_STR) {
		size_t m = a->u.s.n < b->u.s.n ? a->u.s.n : b->u.s.n;
		int c = memcmp(a->u.s.p, b->u.s.p, m);
		*res = c ? (c < 0 ? -1 : 1) : a->u.s.n < b->u.s.n ? -1 : a->u.s.n > b->u.s.n;
		return 0;
	}
	if (a->t == V_LIST && b->t == V_LIST && a->tuple == b->tuple && a->tuple < 2) {
		size_t m = a->u.l->n < b->u.l->n ? a->u.l->n : b->u.l->n;
		for (size_t i = 0; i < m; i++) {
			if (eq(&a->u.l->v[i], &b->u.l->v[i]))
				continue;
			return cmp_vals_d(r, at, &a->u.l->v[i], &b->u.l->v[i], res, depth + 1);
		}
		*res = a->u.l->n < b->u.l->n ? -1 : a->u.l->n > b->u.l->n;
		return 0;
	}
	if (a->t == V_UNDEF)
		return undef_err(r, at, a);
	if (b->t == V_UNDEF)
		return undef_err(r, at, b);
	return rerr(r, at, -EINVAL, "'<' not supported between instances of '%s' and '%s'", tname(a), tname(b));
}

/* ---- iteration: the items of a list, tuple, dict (its keys), string (its characters) */

static int items_of(R *r, const jj_node *at, const jv *v, jv **items, size_t *n)
{
	switch (v->t) {
	case V_UNDEF:
		*items = NULL;
		*n = 0;
		return 0;
	case V_LIST:
		*items = v->u.l->v;
		*n = v->u.l->n;
		return 0;
	case V_DICT:
		*items = v->u.d->k;
		*n = v->u.d->n;
		return 0;
	case V_STR: {
		size_t c = cp_count(v->u.s.p, v->u.s.n), k = 0;
		jv *o = ralloc_n(r, at, c, sizeof *o);
		if (!o)
			return r->rc;
		for (size_t i = 0; i < v->u.s.n; k++) {
			uint32_t cp;
			size_t l = jj_cp(v->u.s.p, v->u.s.n, i, &cp);
			o[k] = mkstr(v->u.s.p + i, l);
			i += l;
		}
		*items = o;
		*n = c;
		return 0;
	}
	default:
		return rerr(r, at, -EINVAL, "'%s' object is not iterable", tname(v));
	}
}

/* ---- frames */

static int fset(R *r, const jj_node *at, frame *f, const char *k, jv v)
{
	for (size_t i = 0; i < f->n; i++)
		if (!strcmp(f->k[i], k)) {
			f->v[i] = v;
			return 0;
		}
	if (f->n == f->cap) {
		size_t nc = f->cap ? f->cap * 2 : 8;
		const char **nk = ralloc_n(r, at, nc, sizeof *nk);
		jv *nv = ralloc_n(r, at, nc, sizeof *nv);
		if (!nk || !nv)
			return r->rc;
		if (f->n) {
			memcpy(nk, f->k, f->n * sizeof *nk);
			memcpy(nv, f->v, f->n * sizeof *nv);
		}
		f->k = nk;
		f->v = nv;
		f->cap = nc;
	}
	f->k[f->n] = k;
	f->v[f->n++] = v;
	return 0;
}

static const jv *fget(const frame *f, const char *k)
{
	for (; f; f = f->up)
		for (size_t i = f->n; i-- > 0;)
			if (!strcmp(f->k[i], k))
				return &f->v[i];
	return NULL;
}

static frame *fnew(R *r, const jj_node *at, frame *up)
{
	frame *f = ralloc(r, at, sizeof *f);
	if (f)
		f->up = up;
	return f;
}

static int dict_get(const jdict *d, const char *k, size_t kn, jv *out)
{
	for (size_t i = 0; i < d->n; i++)
		if (d->k[i].t == V_STR && d->k[i].u.s.n == kn && !memcmp(d->k[i].u.s.p, k, kn)) {
			*out = d->v[i];
			return 1;
		}
	return 0;
}

static int dict_set(R *r, const jj_node *at, jdict *d, jv k, jv v)
{
	for (size_t i = 0; i < d->n; i++)
		if (eq(&d->k[i], &k)) {
			d->v[i] = v;
			return 0;
		}
	if (d->n == d->cap) {
		size_t nc = d->cap ? d->cap * 2 : 4;
		jv *nk = ralloc_n(r, at, nc, sizeof *nk), *nv = ralloc_n(r, at, nc, sizeof *nv);
		if (!nk || !nv)
			return r->rc;
		if (d->n) {
			memcpy(nk, d->k, d->n * sizeof *nk);
			memcpy(nv, d->v, d->n * sizeof *nv);
		}
		d->k = nk;
		d->v = nv;
		d->cap = nc;
	}
	d->k[d->n] = k;
	d->v[d->n++] = v;
	return 0;
}

/* ---- attribute and item access */

static jv undef_named(const char *s, size_t n)
{
	jv u = UNDEF;
	u.u.s.p = s;
	u.u.s.n = n;
	return u;
}

static int loop_attr(R *r, const jj_node *at, jloop *lp, const char *k, jv *out)
{
	if (!strcmp(k, "index"))
		*out = mkint((int64_t)lp->i + 1);
	else if (!strcmp(k, "index0"))
		*out = mkint((int64_t)lp->i);
	else if (!strcmp(k, "revindex"))
		*out = mkint((int64_t)(lp->n - lp->i));
	else if (!strcmp(k, "revindex0"))
		*out = mkint((int64_t)(lp->n - lp->i - 1));
	else if (!strcmp(k, "first"))
		*out = mkbool(lp->i == 0);
	else if (!strcmp(k, "last"))
		*out = mkbool(lp->i + 1 == lp->n);
	else if (!strcmp(k, "length"))
		*out = mkint((int64_t)lp->n);
	else if (!strcmp(k, "depth"))
		*out = mkint(1);
	else if (!strcmp(k, "depth0"))
		*out = mkint(0);
	else if (!strcmp(k, "previtem"))
		*out = lp->i ? lp->items[lp->i - 1] : undef_named("previtem", 8);
	else if (!strcmp(k, "nextitem"))
		*out = lp->i + 1 < lp->n ? lp->items[lp->i + 1] : undef_named("nextitem", 8);
	else if (!strcmp(k, "cycle")) {
		jfn *fn = ralloc(r, at, sizeof *fn);
		if (!fn)
			return r->rc;
		fn->kind = FN_CYCLE;
		fn->lp = lp;
		*out = (jv){.t = V_FUNC};
		out->u.fn = fn;
	} else
		*out = undef_named(k, strlen(k));
	return 0;
}

static int get_attr(R *r, const jj_node *at, const jv *o, const char *k, size_t kn, jv *out)
{
	if (o->t == V_UNDEF)
		return undef_err(r, at, o);
	if (o->t == V_DICT) {
		if (!dict_get(o->u.d, k, kn, out))
			*out = undef_named(k, kn);
		return 0;
	}
	if (o->t == V_LOOP)
		return loop_attr(r, at, o->u.lp, k, out);
	*out = undef_named(k, kn);
	return 0;
}

static int get_item(R *r, const jj_node *at, const jv *o, const jv *key, jv *out)
{
	if (o->t == V_UNDEF)
		return undef_err(r, at, o);
	if (o->t == V_DICT) {
		for (size_t i = 0; i < o->u.d->n; i++)
			if (eq(&o->u.d->k[i], key)) {
				*out = o->u.d->v[i];
				return 0;
			}
		*out = key->t == V_STR ? undef_named(key->u.s.p, key->u.s.n) : UNDEF;
		return 0;
	}
	if (o->t == V_LOOP && key->t == V_STR)
		return loop_attr(r, at, o->u.lp, key->u.s.p, out);
	if ((o->t == V_LIST || o->t == V_STR) && (key->t == V_INT || key->t == V_BOOL)) {
		int64_t i = key->u.i;
		size_t n = o->t == V_LIST ? o->u.l->n : cp_count(o->u.s.p, o->u.s.n);
		if (i < 0)
			i += (int64_t)n;
		if (i < 0 || (uint64_t)i >= n) {
			*out = UNDEF;
			return 0;
		}
		if (o->t == V_LIST) {
			*out = o->u.l->v[i];
		} else {
			size_t a = cp_off(o->u.s.p, o->u.s.n, (size_t)i);
			uint32_t cp;
			*out = mkstr(o->u.s.p + a, jj_cp(o->u.s.p, o->u.s.n, a, &cp));
		}
		return 0;
	}
	*out = key->t == V_STR ? undef_named(key->u.s.p, key->u.s.n) : UNDEF;
	return 0;
}

/* Python slice indices for a sequence of n */
static int slice_idx(R *r, const jj_node *at, const jv *lo, const jv *hi, const jv *st, size_t n,
		     int64_t *a, int64_t *b, int64_t *step)
{
	const jv *p[3] = {lo, hi, st};
	for (int k = 0; k < 3; k++)
		if (p[k] && p[k]->t != V_NONE && p[k]->t != V_INT && p[k]->t != V_BOOL)
			return rerr(r, at, -EINVAL, "slice indices must be integers or None");
	*step = st && st->t != V_NONE ? st->u.i : 1;
	if (*step == 0)
		return rerr(r, at, -EINVAL, "slice step cannot be zero");
	int64_t N = (int64_t)n;
	if (*step > 0) {
		*a = lo && lo->t != V_NONE ? lo->u.i : 0;
		*b = hi && hi->t != V_NONE ? hi->u.i : N;
		if (*a < 0)
			*a = *a + N < 0 ? 0 : *a + N;
		if (*a > N)
			*a = N;
		if (*b < 0)
			*b = *b + N < 0 ? 0 : *b + N;
		if (*b > N)
			*b = N;
	} else {
		*a = lo && lo->t != V_NONE ? lo->u.i : N - 1;
		*b = hi && hi->t != V_NONE ? hi->u.i : -1 - N;
		if (*a < 0)
			*a = *a + N < 0 ? -1 : *a + N;
		if (*a >= N)
			*a = N - 1;
		if (*b < 0)
			*b = *b + N < 0 ? -1 : *b + N;
		if (*b >= N)
			*b = N - 1;
	}
	return 0;
}

static int do_slice(R *r, const jj_node *at, const jv *o, const jv *lo, const jv *hi, const jv *st, jv *out)
{
	if (o->t == V_UNDEF)
		return undef_err(r, at, o);
	if (o->t != V_LIST && o->t != V_STR)
		return rerr(r, at, -EINVAL, "'%s' object is not subscriptable", tname(o));
	jv *items = NULL;
	size_t n;
	TRY(items_of(r, at, o, &items, &n));
	int64_t a = 0, b = 0, s = 1;
	TRY(slice_idx(r, at, lo, hi, st, n, &a, &b, &s));
	size_t cnt = 0; /* a and b lie in [-1, n]: no overflow whatever the step */
	if (s > 0 && b > a)
		cnt = (size_t)((b - a - 1) / s) + 1;
	else if (s < 0 && a > b)
		cnt = (size_t)((a - b - 1) / (s == INT64_MIN ? INT64_MAX : -s)) + 1;
	if (o->t == V_LIST) {
		TRY(mklist(r, at, cnt, out));
		out->tuple = o->tuple;
		for (size_t k = 0; k < cnt; k++)
			out->u.l->v[k] = items[a + (int64_t)k * s];
		return 0;
	}
	sbuf sb = {0};
	for (size_t k = 0; k < cnt; k++) {
		const jv *c = &items[a + (int64_t)k * s];
		TRY(sb_put(r, at, &sb, c->u.s.p, c->u.s.n));
	}
	*out = sb_str(&sb);
	return 0;
}

/* ---- evaluation */

static int ev(R *r, const jj_node *n, frame *f, jv *out);
static int ex(R *r, const jj_node *n, frame *f, sbuf *o);

static int step(R *r, const jj_node *n)
{
	if (++r->steps > r->max_steps)
		return rerr(r, n, -E2BIG, "rendering takes more than %llu steps", (unsigned long long)r->max_steps);
	return 0;
}

typedef struct {
	jv pos[16];
	size_t npos;
	const char *kwn[16];
	jv kwv[16];
	size_t nkw;
} args_t;

static int eval_args(R *r, const jj_node *n, frame *f, args_t *a)
{
	a->npos = a->nkw = 0;
	for (size_t i = 0; i < n->n; i++) {
		jv v;
		TRY(ev(r, n->kids[i], f, &v));
		if (n->kw[i]) {
			if (a->nkw == 16)
				return rerr(r, n, -EINVAL, "more than 16 keyword arguments");
			a->kwn[a->nkw] = n->kw[i];
			a->kwv[a->nkw++] = v;
		} else {
			if (a->npos == 16)
				return rerr(r, n, -EINVAL, "more than 16 arguments");
			a->pos[a->npos++] = v;
		}
	}
	return 0;
}

/* argument i or keyword name, else NULL */
static const jv *arg(const args_t *a, size_t i, const char *name)
{
	if (i < a->npos)
		return &a->pos[i];
	for (size_t k = 0; name && k < a->nkw; k++)
		if (!strcmp(a->kwn[k], name))
			return &a->kwv[k];
	return NULL;
}

static int need_str(R *r, const jj_node *at, const jv *v, const char *what)
{
	if (v && v->t == V_STR)
		return 0;
	if (v && v->t == V_UNDEF)
		return undef_err(r, at, v);
	return rerr(r, at, -EINVAL, "%s needs a string, not %s", what, v ? tname(v) : "nothing");
}

static int need_int(R *r, const jj_node *at, const jv *v, const char *what)
{
	if (v && (v->t == V_INT || v->t == V_BOOL))
		return 0;
	return rerr(r, at, -EINVAL, "%s needs an integer, not %s", what, v ? tname(v) : "nothing");
}

/* case mapping of ASCII, Latin-1, Latin Extended-A, Greek and Cyrillic (the one-to-one
 * mappings of Python's str.upper / lower; ß, İ and other mappings that change length stay) */
static uint32_t cp_upper(uint32_t c)
{
	if (c >= 'a' && c <= 'z')
		return c - 32;
	if (c < 0x80)
		return c;
	if ((c >= 0xE0 && c <= 0xFE && c != 0xF7) || (c >= 0x3B1 && c <= 0x3C9 && c != 0x3C2) ||
	    (c >= 0x430 && c <= 0x44F))
		return c - 0x20;
	if (c == 0xFF)
		return 0x178;
	if (c == 0x3C2)
		return 0x3A3;
	if (c >= 0x450 && c <= 0x45F)
		return c - 0x50;
	if (((c >= 0x100 && c <= 0x137) || (c >= 0x14A && c <= 0x177)) && (c & 1))
		return c - 1;
	if (((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) && !(c & 1))
		return c - 1;
	return c;
}

static uint32_t cp_lower(uint32_t c)
{
	if (c >= 'A' && c <= 'Z')
		return c + 32;
	if (c < 0x80)
		return c;
	if ((c >= 0xC0 && c <= 0xDE && c != 0xD7) || (c >= 0x391 && c <= 0x3A9 && c != 0x3A2) ||
	    (c >= 0x410 && c <= 0x42F))
		return c + 0x20;
	if (c == 0x178)
		return 0xFF;
	if (c >= 0x400 && c <= 0x40F)
		return c + 0x50;
	if (((c >= 0x100 && c <= 0x137) || (c >= 0x14A && c <= 0x177)) && !(c & 1))
		return c + 1;
	if (((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) && (c & 1))
		return c + 1;
	return c;
}

/* a cased letter: one with a case mapping here (what str.title looks at) */
static int cp_cased(uint32_t c) { return cp_upper(c) != c || cp_lower(c) != c || c == 0xDF; }

/* mode: 0 lower, 1 upper, 2 str.title, 3 capitalize, 4 Jinja's title filter */
static int casemap(R *r, const jj_node *at, const jv *s, int mode, jv *out)
{
	const char *q = s->u.s.p;
	size_t n = s->u.s.n;
	char *p = ralloc(r, at, n + 1);
	if (!p)
		return r->rc;
	int prev_cased = 0, word_start = 1, first = 1;
	for (size_t i = 0; i < n;) {
		uint32_t c, m;
		size_t l = jj_cp(q, n, i, &c);
		switch (mode) {
		case 0: m = cp_lower(c); break;
		case 1: m = cp_upper(c); break;
		case 2:
			m = prev_cased ? cp_lower(c) : cp_upper(c);
			prev_cased = cp_cased(c);
			break;
		case 3: m = first ? cp_upper(c) : cp_lower(c); break;
		default: {
			int sep = c == '-' || c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' ||
				  c == '\v' || c == '(' || c == '{' || c == '[' || c == '<';
			m = sep ? c : word_start ? cp_upper(c) : cp_lower(c);
			word_start = sep;
		}
		}
		first = 0;
		/* every mapping keeps the UTF-8 length; an invalid byte stays as it is */
		if (m == c || (l == 1 && c >= 0x80)) {
			memcpy(p + i, q + i, l);
		} else if (l == 1) {
			p[i] = (char)m;
		} else {
			p[i] = (char)(0xC0 | m >> 6);
			p[i + 1] = (char)(0x80 | (m & 0x3F));
		}
		i += l;
	}
	*out = mkstr(p, n);
	return 0;
}

static int str_find(const jv *s, const char *sub, size_t sn, size_t from)
{
	if (sn == 0)
		return (int)from;
	for (size_t i = from; i + sn <= s->u.s.n; i++)
		if (!memcmp(s->u.s.p + i, sub, sn))
			return (int)i;
	return -1;
}

static int str_replace(R *r, const jj_node *at, const jv *s, const jv *old, const jv *nw, int64_t count, jv *out)
{
	sbuf b = {0};
	size_t i = 0;
	int64_t done = 0;
	if (!old->u.s.n) { /* Python inserts new between every character */
		for (size_t k = 0; k <= s->u.s.n;) {
			if (count < 0 || done < count) {
				TRY(sb_put(r, at, &b, nw->u.s.p, nw->u.s.n));
				done++;
			}
			if (k == s->u.s.n)
				break;
			uint32_t cp;
			size_t l = jj_cp(s->u.s.p, s->u.s.n, k, &cp);
			TRY(sb_put(r, at, &b, s->u.s.p + k, l));
			k += l;
		}
		*out = sb_str(&b);
		return 0;
	}
	while (i <= s->u.s.n) {
		int k = (count >= 0 && done >= count) ? -1 : str_find(s, old->u.s.p, old->u.s.n, i);
		if (k < 0) {
			TRY(sb_put(r, at, &b, s->u.s.p + i, s->u.s.n - i));
			break;
		}
		TRY(sb_put(r, at, &b, s->u.s.p + i, (size_t)k - i));
		TRY(sb_put(r, at, &b, nw->u.s.p, nw->u.s.n));
		i = (size_t)k + old->u.s.n;
		done++;
	}
	*out = sb_str(&b);
	return 0;
}

static int list_push(R *r, const jj_node *at, jv *l, size_t *cap, jv v)
{
	if (l->u.l->n == *cap) {
		size_t nc = *cap ? *cap * 2 : 8;
		jv *nv = ralloc_n(r, at, nc, sizeof *nv);
		if (!nv)
			return r->rc;
		if (l->u.l->n)
			memcpy(nv, l->u.l->v, l->u.l->n * sizeof *nv);
		l->u.l->v = nv;
		*cap = nc;
	}
	l->u.l->v[l->u.l->n++] = v;
	return 0;
}

/* Python str.split(sep, maxsplit) (sep NULL: runs of whitespace) */
static int str_split(R *r, const jj_node *at, const jv *s, const jv *sep, int64_t maxsplit, jv *out)
{
	size_t cap = 0;
	TRY(mklist(r, at, 0, out));
	const char *p = s->u.s.p;
	size_t n = s->u.s.n, i = 0;
	int64_t splits = 0;
	if (!sep) {
		for (;;) {
			while (i < n) {
				uint32_t c;
				size_t l = jj_cp(p, n, i, &c);
				if (!py_space(c))
					break;
				i += l;
			}
			if (i >= n)
				break;
			if (maxsplit >= 0 && splits >= maxsplit) {
				jv rest = py_strip(mkstr(p + i, n - i), NULL, 0, 1);
				TRY(list_push(r, at, out, &cap, rest));
				break;
			}
			size_t j = i;
			while (j < n) {
				uint32_t c;
				size_t l = jj_cp(p, n, j, &c);
				if (py_space(c))
					break;
				j += l;
			}
			TRY(list_push(r, at, out, &cap, mkstr(p + i, j - i)));
			splits++;
			i = j;
		}
		return 0;
	}
	if (!sep->u.s.n)
		return rerr(r, at, -EINVAL, "split: empty separator");
	for (;;) {
		int k = (maxsplit >= 0 && splits >= maxsplit) ? -1 : str_find(s, sep->u.s.p, sep->u.s.n, i);
		if (k < 0) {
			TRY(list_push(r, at, out, &cap, mkstr(p + i, n - i)));
			return 0;
		}
		TRY(list_push(r, at, out, &cap, mkstr(p + i, (size_t)k - i)));
		i = (size_t)k + sep->u.s.n;
		splits++;
	}
}

static int call_fn(R *r, const jj_node *at, jv fnv, args_t *a, jv *out);
static int apply_filter(R *r, const jj_node *at, const char *name, jv v, args_t *a, frame *f, jv *out);
static int apply_test(R *r, const jj_node *at, const char *name, const jv *v, args_t *a, int *res);

/* str / dict / list methods; *found = 0 when o has no method of that name */
static int call_method(R *r, const jj_node *at, const jv *o, const char *m, args_t *a, jv *out, int *found)
{
	*found = 1;
	if (o->t == V_STR) {
		const jv *x = arg(a, 0, NULL);
		if (!strcmp(m, "strip") || !strcmp(m, "lstrip") || !strcmp(m, "rstrip")) {
			if (x && x->t != V_NONE)
				TRY(need_str(r, at, x, m));
			*out = py_strip(*o, x && x->t != V_NONE ? x : NULL, m[0] != 'r', m[0] != 'l');
			return 0;
		}
		if (!strcmp(m, "upper") || !strcmp(m, "lower") || !strcmp(m, "title") || !strcmp(m, "capitalize"))
			return casemap(r, at, o, m[0] == 'l' ? 0 : m[0] == 'u' ? 1 : m[0] == 't' ? 2 : 3, out);
		if (!strcmp(m, "startswith") || !strcmp(m, "endswith")) {
			if (!x)
				return rerr(r, at, -EINVAL, "%s needs an argument", m);
			const jv *cand = x;
			size_t nc = 1;
			if (x->t == V_LIST) {
				cand = x->u.l->v;
				nc = x->u.l->n;
			}
			int hit = 0;
			for (size_t k = 0; k < nc; k++) {
				TRY(need_str(r, at, &cand[k], m));
				size_t l = cand[k].u.s.n;
				if (l <= o->u.s.n && !memcmp(o->u.s.p + (m[0] == 's' ? 0 : o->u.s.n - l), cand[k].u.s.p, l))
					hit = 1;
			}
			*out = mkbool(hit);
			return 0;
		}
		if (!strcmp(m, "split") || !strcmp(m, "rsplit")) {
			const jv *sep = arg(a, 0, "sep"), *mx = arg(a, 1, "maxsplit");
			if (sep && sep->t != V_NONE)
				TRY(need_str(r, at, sep, "split"));
			if (mx)
				TRY(need_int(r, at, mx, "split"));
			if (m[0] == 'r' && mx && mx->u.i >= 0)
				return rerr(r, at, -EINVAL, "rsplit with maxsplit is not supported");
			return str_split(r, at, o, sep && sep->t != V_NONE ? sep : NULL, mx ? mx->u.i : -1, out);
		}
		if (!strcmp(m, "replace")) {
			const jv *b = arg(a, 1, NULL), *c = arg(a, 2, "count");
			TRY(need_str(r, at, x, "replace"));
			TRY(need_str(r, at, b, "replace"));
			if (c)
				TRY(need_int(r, at, c, "replace"));
			return str_replace(r, at, o, x, b, c ? c->u.i : -1, out);
		}
		if (!strcmp(m, "find") || !strcmp(m, "count")) {
			TRY(need_str(r, at, x, m));
			if (m[0] == 'f') {
				int k = str_find(o, x->u.s.p, x->u.s.n, 0);
				*out = mkint(k < 0 ? -1 : (int64_t)cp_count(o->u.s.p, (size_t)k));
			} else {
				int64_t c = 0;
				size_t i = 0;
				int k;
				if (!x->u.s.n)
					c = (int64_t)cp_count(o->u.s.p, o->u.s.n) + 1;
				else
					while ((k = str_find(o, x->u.s.p, x->u.s.n, i)) >= 0) {
						c++;
						i = (size_t)k + x->u.s.n;
					}
				*out = mkint(c);
			}
			return 0;
		}
		if (!strcmp(m, "join")) {
			jv *it;
			size_t n;
			sbuf b = {0};
			if (!x)
				return rerr(r, at, -EINVAL, "join needs an argument");
			TRY(items_of(r, at, x, &it, &n));
			for (size_t k = 0; k < n; k++) {
				if (k)
					TRY(sb_put(r, at, &b, o->u.s.p, o->u.s.n));
				TRY(need_str(r, at, &it[k], "str.join"));
				TRY(sb_put(r, at, &b, it[k].u.s.p, it[k].u.s.n));
			}
			*out = sb_str(&b);
			return 0;
		}
		if (!strcmp(m, "isdigit") || !strcmp(m, "isspace") || !strcmp(m, "isalpha") || !strcmp(m, "isalnum") ||
		    !strcmp(m, "islower") || !strcmp(m, "isupper")) {
			int ok = o->u.s.n > 0, cased = 0;
			for (size_t i = 0; i < o->u.s.n; i++) {
				char c = o->u.s.p[i];
				int d = c >= '0' && c <= '9', al = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
				if (!strcmp(m, "isdigit"))
					ok &= d;
				else if (!strcmp(m, "isspace"))
					ok &= c == ' ' || (c >= 9 && c <= 13);
				else if (!strcmp(m, "isalpha"))
					ok &= al;
				else if (!strcmp(m, "isalnum"))
					ok &= al || d;
				else if (!strcmp(m, "islower")) {
					ok &= !(c >= 'A' && c <= 'Z');
					cased |= c >= 'a' && c <= 'z';
				} else {
					ok &= !(c >= 'a' && c <= 'z');
					cased |= c >= 'A' && c <= 'Z';
				}
			}
			if (m[2] == 'l' || m[2] == 'u')
				ok = ok && cased;
			*out = mkbool(ok);
			return 0;
		}
		if (!strcmp(m, "splitlines")) {
			jv nl = mkstr("\n", 1);
			jv s = *o;
			if (s.u.s.n && s.u.s.p[s.u.s.n - 1] == '\n')
				s.u.s.n--;
			if (!o->u.s.n)
				return mklist(r, at, 0, out);
			return str_split(r, at, &s, &nl, -1, out);
		}
	} else if (o->t == V_DICT && !o->tuple) {
		jdict *d = o->u.d;
		if (!strcmp(m, "get")) {
			const jv *k = arg(a, 0, NULL), *dflt = arg(a, 1, "default");
			if (!k)
				return rerr(r, at, -EINVAL, "get needs a key");
			for (size_t i = 0; i < d->n; i++)
				if (eq(&d->k[i], k)) {
					*out = d->v[i];
					return 0;
				}
			*out = dflt ? *dflt : NONE;
			return 0;
		}
		if (!strcmp(m, "items") || !strcmp(m, "keys") || !strcmp(m, "values")) {
			TRY(mklist(r, at, d->n, out));
			out->tuple = m[0] == 'i' ? 2 : m[0] == 'k' ? 3 : 4;
			for (size_t i = 0; i < d->n; i++) {
				if (m[0] == 'k') {
					out->u.l->v[i] = d->k[i];
				} else if (m[0] == 'v') {
					out->u.l->v[i] = d->v[i];
				} else {
					jv t;
					TRY(mklist(r, at, 2, &t));
					t.tuple = 1;
					t.u.l->v[0] = d->k[i];
					t.u.l->v[1] = d->v[i];
					out->u.l->v[i] = t;
				}
			}
			return 0;
		}
	} else if (o->t == V_LIST) {
		if (!strcmp(m, "index") || !strcmp(m, "count")) {
			const jv *x = arg(a, 0, NULL);
			if (!x)
				return rerr(r, at, -EINVAL, "%s needs an argument", m);
			int64_t c = 0;
			for (size_t i = 0; i < o->u.l->n; i++)
				if (eq(&o->u.l->v[i], x)) {
					if (m[0] == 'i') {
						*out = mkint((int64_t)i);
						return 0;
					}
					c++;
				}
			if (m[0] == 'i')
				return rerr(r, at, -EINVAL, "list.index(x): x not in list");
			*out = mkint(c);
			return 0;
		}
		if (!strcmp(m, "append") || !strcmp(m, "pop") || !strcmp(m, "insert") || !strcmp(m, "extend"))
			return rerr(r, at, -EINVAL, "lists are immutable in chat templates (list.%s)", m);
	}
	*found = 0;
	return 0;
}

/* what Python can hash: not lists, dicts or dict views, nor tuples holding them */
static int hashable_d(const jv *v, int depth)
{
	if (depth > TOK_JINJA_MAX_DEPTH || v->t == V_DICT || (v->t == V_LIST && v->tuple != 1))
		return 0;
	for (size_t i = 0; v->t == V_LIST && i < v->u.l->n; i++)
		if (!hashable_d(&v->u.l->v[i], depth + 1))
			return 0;
	return 1;
}

static int hashable(const jv *v) { return hashable_d(v, 0); }

static int eval_cmp(R *r, const jj_node *n, int op, const jv *a, const jv *b, int *res)
{
	int c;
	switch (op) {
	case JO_EQ: *res = eq(a, b); return 0;
	case JO_NE: *res = !eq(a, b); return 0;
	case JO_IN: case JO_NOTIN: {
		int hit = 0;
		if (b->t == V_STR) {
			if (a->t != V_STR)
				return rerr(r, n, -EINVAL, "'in <string>' requires string as left operand, not %s", tname(a));
			hit = str_find(b, a->u.s.p, a->u.s.n, 0) >= 0;
		} else if (b->t == V_LIST) {
			for (size_t i = 0; i < b->u.l->n && !hit; i++)
				hit = eq(a, &b->u.l->v[i]);
		} else if (b->t == V_DICT) {
			if (!hashable(a))
				return rerr(r, n, -EINVAL, "unhashable type: '%s'", tname(a));
			for (size_t i = 0; i < b->u.d->n && !hit; i++)
				hit = eq(a, &b->u.d->k[i]);
		} else if (b->t != V_UNDEF) {
			return rerr(r, n, -EINVAL, "argument of type '%s' is not iterable", tname(b));
		}
		*res = op == JO_IN ? hit : !hit;
		return 0;
	}
	default:
		TRY(cmp_vals(r, n, a, b, &c));
		*res = op == JO_LT ? c < 0 : op == JO_LE ? c <= 0 : op == JO_GT ? c > 0 : c >= 0;
		return 0;
	}
}

static const char *opname(int op)
{
	static const char *s[] = {"+", "-", "*", "/", "//", "%", "**", "~"};
	return op <= JO_CONCAT ? s[op] : "?";
}

/* Python's printf-style str % args for %s %r %d %i %f %% (no flags, width or precision) */
static int str_format(R *r, const jj_node *n, const jv *f, const jv *args, jv *out)
{
	const jv *av = args;
	size_t na = 1, used = 0;
	if (args->t == V_LIST && args->tuple) {
		av = args->u.l->v;
		na = args->u.l->n;
	}
	sbuf b = {0};
	const char *p = f->u.s.p, *e = p + f->u.s.n;
	while (p < e) {
		const char *q = memchr(p, '%', (size_t)(e - p));
		if (!q) {
			TRY(sb_put(r, n, &b, p, (size_t)(e - p)));
			break;
		}
		TRY(sb_put(r, n, &b, p, (size_t)(q - p)));
		char c = q + 1 < e ? q[1] : 0;
		p = q + 2;
		if (c == '%') {
			TRY(sb_put(r, n, &b, "%", 1));
			continue;
		}
		if (c != 's' && c != 'r' && c != 'd' && c != 'i' && c != 'f')
			return rerr(r, n, -EINVAL, "string formatting: only %%s %%r %%d %%i %%f are supported");
		if (used >= na)
			return rerr(r, n, -EINVAL, "not enough arguments for format string");
		const jv *v = &av[used++];
		char tmp[64];
		if (c == 's') {
			TRY(put_str(r, n, &b, v));
		} else if (c == 'r') {
			TRY(put_repr(r, n, &b, v));
		} else if (!is_num(v)) {
			return rerr(r, n, -EINVAL, "%%%c format: a number is required, not %s", c, tname(v));
		} else if (c == 'f') {
			snprintf(tmp, sizeof tmp, "%.6f", num(v));
			TRY(sb_puts(r, n, &b, tmp));
		} else {
			double d = num(v);
			if (v->t == V_FLOAT && !(d > -9.2e18 && d < 9.2e18))
				return rerr(r, n, -EINVAL, "%%%c format: the number is out of range", c);
			snprintf(tmp, sizeof tmp, "%lld", v->t == V_FLOAT ? (long long)d : (long long)v->u.i);
			TRY(sb_puts(r, n, &b, tmp));
		}
	}
	/* Python: an argument with items that is not a tuple (a list, a dict) may go unused */
	if (used < na && !(args->t == V_DICT || args->t == V_UNDEF || (args->t == V_LIST && args->tuple != 1)))
		return rerr(r, n, -EINVAL, "not all arguments converted during string formatting");
	*out = sb_str(&b);
	return 0;
}

static int arith(R *r, const jj_node *n, int op, const jv *a, const jv *b, jv *out)
{
	if (op == JO_CONCAT) {
		sbuf sb = {0};
		TRY(put_str(r, n, &sb, a));
		TRY(put_str(r, n, &sb, b));
		*out = sb_str(&sb);
		return 0;
	}
	if (op == JO_MOD && a->t == V_STR)
		return str_format(r, n, a, b, out);
	if (a->t == V_UNDEF)
		return undef_err(r, n, a);
	if (b->t == V_UNDEF)
		return undef_err(r, n, b);
	if (is_num(a) && is_num(b)) {
		int fl = a->t == V_FLOAT || b->t == V_FLOAT;
		int64_t x = a->u.i, y = b->u.i, z;
		double p = num(a), q = num(b);
		switch (op) {
		case JO_ADD:
			if (fl)
				*out = mkfloat(p + q);
			else if (__builtin_add_overflow(x, y, &z))
				return rerr(r, n, -EINVAL, "integer overflow in +");
			else
				*out = mkint(z);
			return 0;
		case JO_SUB:
			if (fl)
				*out = mkfloat(p - q);
			else if (__builtin_sub_overflow(x, y, &z))
				return rerr(r, n, -EINVAL, "integer overflow in -");
			else
				*out = mkint(z);
			return 0;
		case JO_MUL:
			if (fl)
				*out = mkfloat(p * q);
			else if (__builtin_mul_overflow(x, y, &z))
				return rerr(r, n, -EINVAL, "integer overflow in *");
			else
				*out = mkint(z);
			return 0;
		case JO_DIV:
			if (q == 0)
				return rerr(r, n, -EINVAL, "division by zero");
			*out = mkfloat(p / q);
			return 0;
		case JO_FLOORDIV: case JO_MOD:
			if (q == 0)
				return rerr(r, n, -EINVAL, "integer division or modulo by zero");
			if (fl) { /* Python: the remainder takes the divisor's sign */
				double m = fmod(p, q);
				if (m != 0 && ((m < 0) != (q < 0)))
					m += q;
				*out = mkfloat(op == JO_MOD ? m : floor(p / q));
			} else {
				if (x == INT64_MIN && y == -1)
					return rerr(r, n, -EINVAL, "integer overflow in %s", opname(op));
				int64_t qq = x / y, m = x % y;
				if (m != 0 && ((m < 0) != (y < 0))) {
					m += y;
					qq--;
				}
				*out = mkint(op == JO_MOD ? m : qq);
			}
			return 0;
		case JO_POW:
			if (fl || y < 0) {
				*out = mkfloat(pow(p, q));
			} else {
				int64_t acc = 1, base = x;
				for (int64_t e = y; e > 0; e >>= 1) {
					if ((e & 1) && __builtin_mul_overflow(acc, base, &acc))
						return rerr(r, n, -EINVAL, "integer overflow in **");
					if (e > 1 && __builtin_mul_overflow(base, base, &base))
						return rerr(r, n, -EINVAL, "integer overflow in **");
				}
				*out = mkint(acc);
			}
			return 0;
		}
	}
	if (op == JO_ADD && a->t == V_STR && b->t == V_STR) {
		char *p = ralloc(r, n, a->u.s.n + b->u.s.n + 1);
		if (!p)
			return r->rc;
		memcpy(p, a->u.s.p, a->u.s.n);
		memcpy(p + a->u.s.n, b->u.s.p, b->u.s.n);
		*out = mkstr(p, a->u.s.n + b->u.s.n);
		return 0;
	}
	if ((a->t == V_LIST && a->tuple >= 2) || (b->t == V_LIST && b->tuple >= 2)) /* dict views */
		return rerr(r, n, -EINVAL, "unsupported operand type(s) for %s: '%s' and '%s'", opname(op), tname(a), tname(b));
	if (op == JO_ADD && a->t == V_LIST && b->t == V_LIST && a->tuple == b->tuple) {
		TRY(mklist(r, n, a->u.l->n + b->u.l->n, out));
		out->tuple = a->tuple;
		if (a->u.l->n)
			memcpy(out->u.l->v, a->u.l->v, a->u.l->n * sizeof(jv));
		if (b->u.l->n)
			memcpy(out->u.l->v + a->u.l->n, b->u.l->v, b->u.l->n * sizeof(jv));
		return 0;
	}
	if (op == JO_MUL && ((a->t == V_STR || a->t == V_LIST) && (b->t == V_INT || b->t == V_BOOL))) {
		int64_t k = b->u.i < 0 ? 0 : b->u.i;
		size_t unit = a->t == V_STR ? a->u.s.n : a->u.l->n * sizeof(jv);
		if (unit && (uint64_t)k > (uint64_t)TOK_JINJA_MAX_MEM / unit)
			return rerr(r, n, -E2BIG, "rendering needs more than %u MiB of memory", TOK_JINJA_MAX_MEM >> 20);
		if (a->t == V_STR) {
			char *p = ralloc(r, n, a->u.s.n * (size_t)k + 1);
			if (!p)
				return r->rc;
			for (int64_t i = 0; i < k; i++)
				memcpy(p + (size_t)i * a->u.s.n, a->u.s.p, a->u.s.n);
			*out = mkstr(p, a->u.s.n * (size_t)k);
		} else {
			TRY(mklist(r, n, a->u.l->n * (size_t)k, out));
			out->tuple = a->tuple;
			for (int64_t i = 0; i < k; i++)
				memcpy(out->u.l->v + (size_t)i * a->u.l->n, a->u.l->v, a->u.l->n * sizeof(jv));
		}
		return 0;
	}
	if (op == JO_MUL && (b->t == V_STR || b->t == V_LIST) && (a->t == V_INT || a->t == V_BOOL))
		return arith(r, n, op, b, a, out);
	return rerr(r, n, -EINVAL, "unsupported operand type(s) for %s: '%s' and '%s'", opname(op), tname(a), tname(b));
}

static int ev_name(R *r, const jj_node *n, frame *f, jv *out)
{
	const jv *v = fget(f, n->s);
	if (v) {
		*out = *v;
		return 0;
	}
	static const struct {
		const char *name;
		int kind;
	} g[] = {{"range", FN_RANGE}, {"namespace", FN_NAMESPACE}, {"dict", FN_DICT},
		 {"raise_exception", FN_RAISE}, {"strftime_now", FN_STRFTIME}};
	for (size_t k = 0; k < sizeof g / sizeof g[0]; k++)
		if (!strcmp(n->s, g[k].name)) {
			jfn *fn = ralloc(r, n, sizeof *fn);
			if (!fn)
				return r->rc;
			fn->kind = g[k].kind;
			*out = (jv){.t = V_FUNC};
			out->u.fn = fn;
			return 0;
		}
	*out = undef_named(n->s, n->slen);
	return 0;
}

static int ev(R *r, const jj_node *n, frame *f, jv *out)
{
	TRY(step(r, n));
	jv a, b;
	int res;
	switch (n->kind) {
	case JN_STR: *out = mkstr(n->s, n->slen); return 0;
	case JN_INT: *out = mkint(n->i); return 0;
	case JN_FLOAT: *out = mkfloat(n->f); return 0;
	case JN_BOOL: *out = mkbool((int)n->i); return 0;
	case JN_NONE: *out = NONE; return 0;
	case JN_NAME: return ev_name(r, n, f, out);
	case JN_LIST: case JN_TUPLE:
		TRY(mklist(r, n, n->n, out));
		out->tuple = n->kind == JN_TUPLE;
		for (size_t i = 0; i < n->n; i++)
			TRY(ev(r, n->kids[i], f, &out->u.l->v[i]));
		return 0;
	case JN_DICT:
		TRY(mkdict(r, n, n->n / 2, out));
		for (size_t i = 0; i + 1 < n->n; i += 2) {
			TRY(ev(r, n->kids[i], f, &a));
			TRY(ev(r, n->kids[i + 1], f, &b));
			TRY(dict_set(r, n, out->u.d, a, b));
		}
		return 0;
	case JN_ATTR:
		TRY(ev(r, n->a, f, &a));
		return get_attr(r, n, &a, n->s, n->slen, out);
	case JN_ITEM:
		TRY(ev(r, n->a, f, &a));
		TRY(ev(r, n->b, f, &b));
		return get_item(r, n, &a, &b, out);
	case JN_SLICE: {
		jv lo, hi, st;
		TRY(ev(r, n->a, f, &a));
		if (n->b)
			TRY(ev(r, n->b, f, &lo));
		if (n->c)
			TRY(ev(r, n->c, f, &hi));
		if (n->d)
			TRY(ev(r, n->d, f, &st));
		return do_slice(r, n, &a, n->b ? &lo : NULL, n->c ? &hi : NULL, n->d ? &st : NULL, out);
	}
	case JN_CALL: {
		args_t *args = ralloc(r, n, sizeof *args);
		if (!args)
			return r->rc;
		if (n->a->kind == JN_ATTR) {
			int found;
			TRY(ev(r, n->a->a, f, &a));
			if (a.t == V_UNDEF)
				return undef_err(r, n, &a);
			TRY(eval_args(r, n, f, args));
			TRY(call_method(r, n, &a, n->a->s, args, out, &found));
			if (found)
				return 0;
			TRY(get_attr(r, n, &a, n->a->s, n->a->slen, &b));
			if (b.t == V_UNDEF)
				return rerr(r, n, -EINVAL, "'%s' object has no method '%s'", tname(&a), n->a->s);
		} else {
			TRY(ev(r, n->a, f, &b));
			TRY(eval_args(r, n, f, args));
		}
		return call_fn(r, n, b, args, out);
	}
	case JN_FILTER: {
		args_t *args = ralloc(r, n, sizeof *args);
		if (!args)
			return r->rc;
		TRY(ev(r, n->a, f, &a));
		TRY(eval_args(r, n, f, args));
		return apply_filter(r, n, n->s, a, args, f, out);
	}
	case JN_TEST: {
		args_t *args = ralloc(r, n, sizeof *args);
		if (!args)
			return r->rc;
		TRY(ev(r, n->a, f, &a));
		TRY(eval_args(r, n, f, args));
		TRY(apply_test(r, n, n->s, &a, args, &res));
		*out = mkbool(n->op ? !res : res);
		return 0;
	}
	case JN_NEG: case JN_POS:
		TRY(ev(r, n->a, f, &a));
		if (a.t == V_INT || a.t == V_BOOL) {
			if (n->kind == JN_NEG && a.u.i == INT64_MIN)
				return rerr(r, n, -EINVAL, "integer overflow in -");
			*out = mkint(n->kind == JN_NEG ? -a.u.i : a.u.i);
		} else if (a.t == V_FLOAT) {
			*out = mkfloat(n->kind == JN_NEG ? -a.u.f : a.u.f);
		} else if (a.t == V_UNDEF) {
			return undef_err(r, n, &a);
		} else {
			return rerr(r, n, -EINVAL, "bad operand type for unary %c: '%s'", n->kind == JN_NEG ? '-' : '+', tname(&a));
		}
		return 0;
	case JN_NOT:
		TRY(ev(r, n->a, f, &a));
		*out = mkbool(!truthy(&a));
		return 0;
	case JN_AND: case JN_OR:
		TRY(ev(r, n->a, f, &a));
		if ((n->kind == JN_AND) != truthy(&a)) {
			*out = a;
			return 0;
		}
		return ev(r, n->b, f, out);
	case JN_BIN:
		TRY(ev(r, n->a, f, &a));
		TRY(ev(r, n->b, f, &b));
		return arith(r, n, n->op, &a, &b, out);
	case JN_CMP:
		TRY(ev(r, n->a, f, &a));
		TRY(ev(r, n->b, f, &b));
		TRY(eval_cmp(r, n, n->op, &a, &b, &res));
		*out = mkbool(res);
		return 0;
	case JN_COND:
		TRY(ev(r, n->b, f, &a));
		if (truthy(&a))
			return ev(r, n->a, f, out);
		if (n->c)
			return ev(r, n->c, f, out);
		*out = UNDEF;
		return 0;
	default:
		return rerr(r, n, -EINVAL, "not an expression");
	}
}

/* ---- calls */

static int call_macro(R *r, const jj_node *at, jfn *fn, args_t *a, jfn *caller, jv *out)
{
	const jj_node *m = fn->m;
	if (r->calls >= TOK_JINJA_MAX_CALLS)
		return rerr(r, at, -E2BIG, "macro calls nest more than %d deep", TOK_JINJA_MAX_CALLS);
	if (a->npos > m->n)
		return rerr(r, at, -EINVAL, "macro '%s' takes no more than %zu arguments", m->s ? m->s : "caller", m->n);
	frame *mf = fnew(r, at, fn->closure);
	if (!mf)
		return r->rc;
	for (size_t k = 0; k < a->nkw; k++) {
		size_t i;
		for (i = 0; i < m->n; i++)
			if (!strcmp(m->kids[i]->s, a->kwn[k]))
				break;
		if (i == m->n)
			return rerr(r, at, -EINVAL, "macro '%s' has no parameter '%s'", m->s ? m->s : "caller", a->kwn[k]);
	}
	for (size_t i = 0; i < m->n; i++) {
		const jj_node *p = m->kids[i];
		const jv *v = i < a->npos ? &a->pos[i] : NULL;
		for (size_t k = 0; !v && k < a->nkw; k++)
			if (!strcmp(a->kwn[k], p->s))
				v = &a->kwv[k];
		jv d = undef_named(p->s, p->slen);
		if (!v && p->a)
			TRY(ev(r, p->a, mf, &d));
		TRY(fset(r, at, mf, p->s, v ? *v : d));
	}
	if (caller) {
		jv cv = {.t = V_FUNC};
		cv.u.fn = caller;
		TRY(fset(r, at, mf, "caller", cv));
	}
	sbuf b = {0};
	r->calls++;
	int rc = ex(r, m->c, mf, &b);
	r->calls--;
	if (rc < 0)
		return rc;
	*out = sb_str(&b);
	return 0;
}

static int call_fn(R *r, const jj_node *at, jv fv, args_t *a, jv *out)
{
	jfn *caller = r->caller;
	r->caller = NULL;
	if (fv.t == V_UNDEF)
		return fv.u.s.p ? rerr(r, at, -EINVAL, "'%.*s' is undefined (called as a function)",
				       (int)(fv.u.s.n > 60 ? 60 : fv.u.s.n), fv.u.s.p)
				: rerr(r, at, -EINVAL, "an undefined value was called");
	if (fv.t != V_FUNC)
		return rerr(r, at, -EINVAL, "'%s' object is not callable", tname(&fv));
	jfn *fn = fv.u.fn;
	switch (fn->kind) {
	case FN_MACRO: return call_macro(r, at, fn, a, caller, out);
	case FN_RAISE: {
		jv m = a->npos ? a->pos[0] : mkstr("", 0);
		TRY(to_str(r, at, &m, &m));
		return rerr(r, at, -EINVAL, "raise_exception: %.*s", (int)(m.u.s.n > 240 ? 240 : m.u.s.n), m.u.s.p);
	}
	case FN_STRFTIME: {
		const jv *fmt = arg(a, 0, NULL);
		TRY(need_str(r, at, fmt, "strftime_now"));
		time_t now = r->o && r->o->fixed_now ? (time_t)r->o->now : time(NULL);
		struct tm tm;
		if (!localtime_r(&now, &tm))
			return rerr(r, at, -EINVAL, "strftime_now: the time is out of range");
		char fs[128], *buf = ralloc(r, at, 512);
		if (!buf)
			return r->rc;
		if (fmt->u.s.n >= sizeof fs || memchr(fmt->u.s.p, 0, fmt->u.s.n))
			return rerr(r, at, -EINVAL, "strftime_now: the format is too long");
		memcpy(fs, fmt->u.s.p, fmt->u.s.n);
		fs[fmt->u.s.n] = 0;
		size_t l = strftime(buf, 512, fs, &tm);
		*out = mkstr(buf, l);
		return 0;
	}
	case FN_RANGE: {
		int64_t lo = 0, hi, st = 1;
		for (size_t k = 0; k < a->npos; k++)
			TRY(need_int(r, at, &a->pos[k], "range"));
		if (a->npos == 1) {
			hi = a->pos[0].u.i;
		} else if (a->npos == 2 || a->npos == 3) {
			lo = a->pos[0].u.i;
			hi = a->pos[1].u.i;
			if (a->npos == 3)
				st = a->pos[2].u.i;
		} else {
			return rerr(r, at, -EINVAL, "range takes 1 to 3 integers");
		}
		if (st == 0)
			return rerr(r, at, -EINVAL, "range() arg 3 must not be zero");
		double cnt = st > 0 ? ceil(((double)hi - (double)lo) / (double)st) : ceil(((double)lo - (double)hi) / (double)-st);
		if (cnt < 0)
			cnt = 0;
		if (cnt > TOK_JINJA_MAX_ITERS)
			return rerr(r, at, -E2BIG, "range() of more than %u items", TOK_JINJA_MAX_ITERS);
		TRY(mklist(r, at, (size_t)cnt, out));
		for (size_t k = 0; k < (size_t)cnt; k++) { /* every value lies in [lo, hi) */
			out->u.l->v[k] = mkint(lo);
			if (k + 1 < (size_t)cnt)
				lo += st;
		}
		return 0;
	}
	case FN_NAMESPACE: case FN_DICT:
		TRY(mkdict(r, at, a->nkw, out));
		out->tuple = fn->kind == FN_NAMESPACE;
		for (size_t k = 0; k < a->npos; k++) {
			if (a->pos[k].t != V_DICT)
				return rerr(r, at, -EINVAL, "%s() takes keyword arguments or a dict", fn->kind == FN_DICT ? "dict" : "namespace");
			for (size_t i = 0; i < a->pos[k].u.d->n; i++)
				TRY(dict_set(r, at, out->u.d, a->pos[k].u.d->k[i], a->pos[k].u.d->v[i]));
		}
		for (size_t k = 0; k < a->nkw; k++)
			TRY(dict_set(r, at, out->u.d, mkstr(a->kwn[k], strlen(a->kwn[k])), a->kwv[k]));
		return 0;
	case FN_CYCLE:
		if (!a->npos)
			return rerr(r, at, -EINVAL, "loop.cycle needs at least one value");
		*out = a->pos[fn->lp->i % a->npos];
		return 0;
	}
	return rerr(r, at, -EINVAL, "not callable");
}

/* ---- filters */

static int attr_path(R *r, const jj_node *at, const jv *v, const jv *path, jv *out)
{
	TRY(need_str(r, at, path, "attribute"));
	*out = *v;
	const char *p = path->u.s.p, *e = p + path->u.s.n;
	while (p <= e) {
		const char *d = memchr(p, '.', (size_t)(e - p));
		if (!d)
			d = e;
		char *end;
		long long ix = strtoll(p, &end, 10);
		if (out->t == V_UNDEF) /* Jinja's attribute getter fails on an undefined value */
			return undef_err(r, at, out);
		if (end == d && d > p) {
			jv k = mkint(ix);
			TRY(get_item(r, at, out, &k, out));
		} else {
			jv k = mkstr(p, (size_t)(d - p));
			TRY(get_item(r, at, out, &k, out));
		}
		p = d + 1;
	}
	return 0;
}

static int sort_items(R *r, const jj_node *at, jv *it, size_t n, int rev, int cs, const jv *attr)
{
	jv *keys = ralloc_n(r, at, n, sizeof *keys);
	if (!keys)
		return r->rc;
	for (size_t i = 0; i < n; i++) {
		keys[i] = it[i];
		if (attr)
			TRY(attr_path(r, at, &it[i], attr, &keys[i]));
		if (!cs && keys[i].t == V_STR)
			TRY(casemap(r, at, &keys[i], 0, &keys[i]));
	}
	for (size_t i = 1; i < n; i++) /* stable insertion sort */
		for (size_t j = i; j > 0; j--) {
			int c;
			TRY(cmp_vals(r, at, &keys[j - 1], &keys[j], &c));
			if (rev ? c >= 0 : c <= 0)
				break;
			jv t = keys[j];
			keys[j] = keys[j - 1];
			keys[j - 1] = t;
			t = it[j];
			it[j] = it[j - 1];
			it[j - 1] = t;
		}
	return 0;
}

static int copy_items(R *r, const jj_node *at, const jv *v, jv *out)
{
	jv *it;
	size_t n;
	TRY(items_of(r, at, v, &it, &n));
	TRY(mklist(r, at, n, out));
	if (n)
		memcpy(out->u.l->v, it, n * sizeof *it);
	return 0;
}

static int apply_filter(R *r, const jj_node *at, const char *name, jv v, args_t *a, frame *f, jv *out)
{
	const jv *x = arg(a, 0, NULL);
	if (!strcmp(name, "default") || !strcmp(name, "d")) {
		const jv *dv = arg(a, 0, "default_value"), *bo = arg(a, 1, "boolean");
		int use = v.t == V_UNDEF || (bo && truthy(bo) && !truthy(&v));
		*out = use ? (dv ? *dv : mkstr("", 0)) : v;
		return 0;
	}
	if (!strcmp(name, "length") || !strcmp(name, "count")) {
		if (v.t == V_STR)
			*out = mkint((int64_t)cp_count(v.u.s.p, v.u.s.n));
		else if (v.t == V_LIST)
			*out = mkint((int64_t)v.u.l->n);
		else if (v.t == V_DICT)
			*out = mkint((int64_t)v.u.d->n);
		else if (v.t == V_UNDEF)
			*out = mkint(0);
		else if (v.t == V_LOOP)
			*out = mkint((int64_t)v.u.lp->n);
		else
			return rerr(r, at, -EINVAL, "object of type '%s' has no len()", tname(&v));
		return 0;
	}
	if (!strcmp(name, "string")) {
		if (v.t == V_UNDEF) {
			*out = mkstr("", 0);
			return 0;
		}
		return to_str(r, at, &v, out);
	}
	if (!strcmp(name, "safe") || !strcmp(name, "e") || !strcmp(name, "escape")) {
		if (name[0] == 's') {
			*out = v;
			return 0;
		}
		jv s;
		sbuf b = {0};
		TRY(to_str(r, at, &v, &s));
		for (size_t i = 0; i < s.u.s.n; i++) {
			char c = s.u.s.p[i];
			const char *e = c == '&' ? "&amp;" : c == '<' ? "&lt;" : c == '>' ? "&gt;" : c == '"' ? "&#34;" : c == '\'' ? "&#39;" : NULL;
			TRY(e ? sb_puts(r, at, &b, e) : sb_put(r, at, &b, &c, 1));
		}
		*out = sb_str(&b);
		return 0;
	}
	if (!strcmp(name, "tojson")) {
		const jv *ea = arg(a, 0, "ensure_ascii"), *ind = arg(a, 1, "indent"), *sep = arg(a, 2, "separators"),
			 *sk = arg(a, 3, "sort_keys");
		jopts o = {.ascii = ea && truthy(ea), .sort = sk && truthy(sk), .item_sep = ", ", .item_n = 2, .key_sep = ": ", .key_n = 2};
		char spaces[65];
		if (ind && ind->t != V_NONE) {
			if (ind->t == V_INT) {
				int64_t k = ind->u.i < 0 ? 0 : ind->u.i > 64 ? 64 : ind->u.i;
				memset(spaces, ' ', (size_t)k);
				spaces[k] = 0;
				o.indent = spaces;
				o.indent_n = (size_t)k;
			} else if (ind->t == V_STR) {
				o.indent = ind->u.s.p;
				o.indent_n = ind->u.s.n;
			} else {
				return rerr(r, at, -EINVAL, "tojson: indent must be an integer or a string");
			}
			o.item_sep = ",";
			o.item_n = 1;
		}
		if (sep && sep->t != V_NONE) {
			if (sep->t != V_LIST || sep->u.l->n != 2 || sep->u.l->v[0].t != V_STR || sep->u.l->v[1].t != V_STR)
				return rerr(r, at, -EINVAL, "tojson: separators must be two strings");
			o.item_sep = sep->u.l->v[0].u.s.p;
			o.item_n = sep->u.l->v[0].u.s.n;
			o.key_sep = sep->u.l->v[1].u.s.p;
			o.key_n = sep->u.l->v[1].u.s.n;
		}
		sbuf b = {0};
		TRY(json_val(r, at, &b, &v, &o, 0));
		*out = sb_str(&b);
		return 0;
	}
	/* Jinja's select/reject/selectattr/rejectattr/map yield nothing for a false value (None) */
	if (!truthy(&v) && (!strcmp(name, "selectattr") || !strcmp(name, "rejectattr") || !strcmp(name, "select") ||
			    !strcmp(name, "reject") || !strcmp(name, "map")))
		return mklist(r, at, 0, out);
	if (v.t == V_UNDEF && (!strcmp(name, "items") || !strcmp(name, "list") || !strcmp(name, "join") ||
			       !strcmp(name, "selectattr") || !strcmp(name, "rejectattr") || !strcmp(name, "map") ||
			       !strcmp(name, "select") || !strcmp(name, "reject") || !strcmp(name, "unique") ||
			       !strcmp(name, "reverse") || !strcmp(name, "sort"))) {
		if (!strcmp(name, "join")) {
			*out = mkstr("", 0);
			return 0;
		}
		return mklist(r, at, 0, out);
	}
	if (!strcmp(name, "trim") || !strcmp(name, "upper") || !strcmp(name, "lower") || !strcmp(name, "title") ||
	    !strcmp(name, "capitalize") || !strcmp(name, "replace") || !strcmp(name, "indent") ||
	    !strcmp(name, "wordcount")) {
		jv s;
		if (v.t == V_UNDEF && !strcmp(name, "indent")) /* Jinja's indent adds "\n" to its input */
			return undef_err(r, at, &v);
		if (v.t != V_STR && !strcmp(name, "indent"))
			return rerr(r, at, -EINVAL, "indent needs a string, not %s", tname(&v));
		if (v.t == V_UNDEF) /* the others take str() of it: "" */
			s = mkstr("", 0);
		else
			TRY(to_str(r, at, &v, &s));
		if (!strcmp(name, "trim")) {
			const jv *ch = arg(a, 0, "chars");
			if (ch && ch->t != V_NONE)
				TRY(need_str(r, at, ch, "trim"));
			*out = py_strip(s, ch && ch->t != V_NONE ? ch : NULL, 1, 1);
			return 0;
		}
		if (!strcmp(name, "replace")) {
			const jv *old = arg(a, 0, "old"), *nw = arg(a, 1, "new"), *c = arg(a, 2, "count");
			TRY(need_str(r, at, old, "replace"));
			TRY(need_str(r, at, nw, "replace"));
			if (c && c->t != V_NONE)
				TRY(need_int(r, at, c, "replace"));
			return str_replace(r, at, &s, old, nw, c && c->t != V_NONE ? c->u.i : -1, out);
		}
		if (!strcmp(name, "indent")) {
			const jv *w = arg(a, 0, "width"), *first = arg(a, 1, "first"), *blank = arg(a, 2, "blank");
			char sp[65];
			jv ind;
			if (w && w->t == V_STR) {
				ind = *w;
			} else {
				int64_t k = 4;
				if (w)
					TRY(need_int(r, at, w, "indent"));
				if (w)
					k = w->u.i < 0 ? 0 : w->u.i > 64 ? 64 : w->u.i;
				memset(sp, ' ', (size_t)k);
				ind = mkstr(sp, (size_t)k);
			}
			sbuf b = {0};
			if (first && truthy(first))
				TRY(sb_put(r, at, &b, ind.u.s.p, ind.u.s.n));
			const char *p = s.u.s.p, *e = p + s.u.s.n;
			int line0 = 1;
			while (p < e || line0) {
				const char *nl = memchr(p, '\n', (size_t)(e - p));
				const char *le = nl ? nl : e;
				if (!line0) {
					TRY(sb_puts(r, at, &b, "\n"));
					if (le > p || (blank && truthy(blank)))
						TRY(sb_put(r, at, &b, ind.u.s.p, ind.u.s.n));
				}
				TRY(sb_put(r, at, &b, p, (size_t)(le - p)));
				line0 = 0;
				if (!nl)
					break;
				p = nl + 1;
				if (p >= e)
					break;
			}
			*out = sb_str(&b);
			if (out->u.s.n == 0)
				*out = mkstr("", 0);
			return 0;
		}
		if (!strcmp(name, "wordcount")) {
			int64_t c = 0;
			int in = 0;
			for (size_t i = 0; i < s.u.s.n; i++) {
				char ch = s.u.s.p[i];
				int w = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
					ch == '_' || (unsigned char)ch >= 0x80;
				c += w && !in;
				in = w;
			}
			*out = mkint(c);
			return 0;
		}
		return casemap(r, at, &s, name[0] == 'l' ? 0 : name[0] == 'u' ? 1 : name[0] == 't' ? 4 : 3, out);
	}
	if (!strcmp(name, "first") || !strcmp(name, "last")) {
		jv *it;
		size_t n;
		TRY(items_of(r, at, &v, &it, &n));
		*out = n ? it[name[0] == 'f' ? 0 : n - 1] : UNDEF;
		return 0;
	}
	if (!strcmp(name, "join")) {
		const jv *sep = arg(a, 0, "d"), *at2 = arg(a, 1, "attribute");
		jv *it;
		size_t n;
		sbuf b = {0};
		if (sep)
			TRY(need_str(r, at, sep, "join"));
		TRY(items_of(r, at, &v, &it, &n));
		for (size_t k = 0; k < n; k++) {
			jv e = it[k];
			if (k && sep)
				TRY(sb_put(r, at, &b, sep->u.s.p, sep->u.s.n));
			if (at2)
				TRY(attr_path(r, at, &it[k], at2, &e));
			TRY(put_str(r, at, &b, &e));
		}
		*out = sb_str(&b);
		return 0;
	}
	if (!strcmp(name, "items") || !strcmp(name, "keys") || !strcmp(name, "values")) {
		int found;
		if (v.t != V_DICT)
			return rerr(r, at, -EINVAL, "the %s filter needs a mapping, not %s", name, tname(&v));
		jv plain = v;
		plain.tuple = 0;
		TRY(call_method(r, at, &plain, name, a, out, &found));
		out->tuple = 0;
		return 0;
	}
	if (!strcmp(name, "list"))
		return copy_items(r, at, &v, out);
	if (!strcmp(name, "dictsort")) { /* (key, value) pairs sorted by key or value */
		const jv *cs = arg(a, 0, "case_sensitive"), *by = arg(a, 1, "by"), *rev = arg(a, 2, "reverse");
		int found;
		if (v.t != V_DICT)
			return rerr(r, at, -EINVAL, "dictsort needs a mapping, not %s", tname(&v));
		if (by)
			TRY(need_str(r, at, by, "dictsort"));
		int byval = by && by->u.s.n == 5 && !memcmp(by->u.s.p, "value", 5);
		if (by && !byval && !(by->u.s.n == 3 && !memcmp(by->u.s.p, "key", 3)))
			return rerr(r, at, -EINVAL, "dictsort: by must be 'key' or 'value'");
		jv plain = v;
		plain.tuple = 0;
		args_t *none = ralloc(r, at, sizeof *none);
		if (!none)
			return r->rc;
		TRY(call_method(r, at, &plain, "items", none, out, &found));
		out->tuple = 0;
		jv idx = mkstr(byval ? "1" : "0", 1);
		return sort_items(r, at, out->u.l->v, out->u.l->n, rev && truthy(rev), cs && truthy(cs), &idx);
	}
	if (!strcmp(name, "format")) {
		jv s, t;
		TRY(to_str(r, at, &v, &s));
		TRY(mklist(r, at, a->npos, &t));
		t.tuple = 1;
		if (a->npos)
			memcpy(t.u.l->v, a->pos, a->npos * sizeof(jv));
		return str_format(r, at, &s, &t, out);
	}
	if (!strcmp(name, "reverse")) {
		if (v.t == V_STR) {
			jv m1 = mkint(-1);
			return do_slice(r, at, &v, NULL, NULL, &m1, out);
		}
		TRY(copy_items(r, at, &v, out));
		for (size_t i = 0, n = out->u.l->n; i < n / 2; i++) {
			jv t = out->u.l->v[i];
			out->u.l->v[i] = out->u.l->v[n - 1 - i];
			out->u.l->v[n - 1 - i] = t;
		}
		return 0;
	}
	if (!strcmp(name, "sort")) {
		const jv *rev = arg(a, 0, "reverse"), *cs = arg(a, 1, "case_sensitive"), *at2 = arg(a, 2, "attribute");
		TRY(copy_items(r, at, &v, out));
		return sort_items(r, at, out->u.l->v, out->u.l->n, rev && truthy(rev), cs && truthy(cs), at2);
	}
	if (!strcmp(name, "unique")) {
		const jv *cs = arg(a, 0, "case_sensitive"), *at2 = arg(a, 1, "attribute");
		jv *it, *seen;
		size_t n, ns = 0, cap = 0;
		TRY(items_of(r, at, &v, &it, &n));
		TRY(mklist(r, at, 0, out));
		if (!(seen = ralloc_n(r, at, n, sizeof *seen)))
			return r->rc;
		for (size_t k = 0; k < n; k++) {
			jv key = it[k];
			if (at2)
				TRY(attr_path(r, at, &it[k], at2, &key));
			if (!(cs && truthy(cs)) && key.t == V_STR)
				TRY(casemap(r, at, &key, 0, &key));
			if (!hashable(&key))
				return rerr(r, at, -EINVAL, "unique: unhashable type: '%s'", tname(&key));
			size_t j;
			for (j = 0; j < ns && !eq(&seen[j], &key); j++)
				;
			if (j < ns)
				continue;
			seen[ns++] = key;
			TRY(list_push(r, at, out, &cap, it[k]));
		}
		return 0;
	}
	if (!strcmp(name, "selectattr") || !strcmp(name, "rejectattr") || !strcmp(name, "select") || !strcmp(name, "reject")) {
		int byattr = !strcmp(name, "selectattr") || !strcmp(name, "rejectattr"), want = name[0] == 's';
		size_t first = byattr ? 1 : 0, cap = 0;
		jv *it;
		size_t n;
		if (byattr && !x)
			return rerr(r, at, -EINVAL, "%s needs an attribute name", name);
		const jv *test = arg(a, first, NULL);
		if (test)
			TRY(need_str(r, at, test, name));
		args_t *ta = ralloc(r, at, sizeof *ta);
		if (!ta)
			return r->rc;
		for (size_t k = first + 1; k < a->npos; k++)
			ta->pos[ta->npos++] = a->pos[k];
		TRY(items_of(r, at, &v, &it, &n));
		TRY(mklist(r, at, 0, out));
		for (size_t k = 0; k < n; k++) {
			jv e = it[k];
			int res;
			if (byattr)
				TRY(attr_path(r, at, &it[k], x, &e));
			if (test) {
				char tn[32];
				snprintf(tn, sizeof tn, "%.*s", (int)test->u.s.n, test->u.s.p);
				TRY(apply_test(r, at, tn, &e, ta, &res));
			} else {
				res = truthy(&e);
			}
			if (res == want)
				TRY(list_push(r, at, out, &cap, it[k]));
		}
		return 0;
	}
	if (!strcmp(name, "map")) {
		const jv *an = arg(a, SIZE_MAX, "attribute"), *dflt = arg(a, SIZE_MAX, "default");
		jv *it;
		size_t n;
		TRY(items_of(r, at, &v, &it, &n));
		TRY(mklist(r, at, n, out));
		if (an) {
			for (size_t k = 0; k < n; k++) {
				TRY(attr_path(r, at, &it[k], an, &out->u.l->v[k]));
				if (out->u.l->v[k].t == V_UNDEF && dflt)
					out->u.l->v[k] = *dflt;
			}
			return 0;
		}
		if (!x)
			return rerr(r, at, -EINVAL, "map needs a filter name or attribute=");
		TRY(need_str(r, at, x, "map"));
		char fname[32];
		snprintf(fname, sizeof fname, "%.*s", (int)x->u.s.n, x->u.s.p);
		args_t *fa = ralloc(r, at, sizeof *fa);
		if (!fa)
			return r->rc;
		for (size_t k = 1; k < a->npos; k++)
			fa->pos[fa->npos++] = a->pos[k];
		for (size_t k = 0; k < a->nkw; k++) {
			fa->kwn[fa->nkw] = a->kwn[k];
			fa->kwv[fa->nkw++] = a->kwv[k];
		}
		for (size_t k = 0; k < n; k++)
			TRY(apply_filter(r, at, fname, it[k], fa, f, &out->u.l->v[k]));
		return 0;
	}
	if (!strcmp(name, "int") || !strcmp(name, "float")) {
		int isint = name[0] == 'i';
		if (v.t == V_UNDEF)
			return undef_err(r, at, &v);
		const jv *dv = arg(a, 0, "default");
		jv d = dv ? *dv : isint ? mkint(0) : mkfloat(0);
		if (v.t == V_INT || v.t == V_BOOL) {
			*out = isint ? mkint(v.u.i) : mkfloat((double)v.u.i);
		} else if (v.t == V_FLOAT) {
			if (isint && !(v.u.f > -9.2e18 && v.u.f < 9.2e18))
				*out = d;
			else
				*out = isint ? mkint((int64_t)v.u.f) : v;
		} else if (v.t == V_STR) {
			char buf[64];
			jv s = py_strip(v, NULL, 1, 1);
			if (s.u.s.n == 0 || s.u.s.n >= sizeof buf) {
				*out = d;
				return 0;
			}
			memcpy(buf, s.u.s.p, s.u.s.n);
			buf[s.u.s.n] = 0;
			char *end;
			errno = 0;
			long long iv = strtoll(buf, &end, 10);
			if (!*end && !errno) {
				*out = isint ? mkint(iv) : mkfloat((double)iv);
				return 0;
			}
			double fv = strtod(buf, &end);
			if (*end)
				*out = d;
			else if (isint)
				*out = fv > -9.2e18 && fv < 9.2e18 ? mkint((int64_t)fv) : d;
			else
				*out = mkfloat(fv);
		} else {
			*out = d;
		}
		return 0;
	}
	if (!strcmp(name, "abs")) {
		if (v.t == V_INT || v.t == V_BOOL) {
			if (v.u.i == INT64_MIN)
				return rerr(r, at, -EINVAL, "integer overflow in abs");
			*out = mkint(v.u.i < 0 ? -v.u.i : v.u.i);
		} else if (v.t == V_FLOAT) {
			*out = mkfloat(fabs(v.u.f));
		} else {
			return rerr(r, at, -EINVAL, "bad operand type for abs(): '%s'", tname(&v));
		}
		return 0;
	}
	if (!strcmp(name, "round")) {
		const jv *pr = arg(a, 0, "precision"), *me = arg(a, 1, "method");
		if (!is_num(&v))
			return rerr(r, at, -EINVAL, "round needs a number, not %s", tname(&v));
		int64_t p = pr && is_num(pr) ? (int64_t)num(pr) : 0;
		if (p > 15 || p < -15)
			p = p > 0 ? 15 : -15;
		double m = pow(10, (double)p), x2 = num(&v) * m;
		const char *mt = me && me->t == V_STR ? me->u.s.p : "common";
		int common = strncmp(mt, "ceil", 4) && strncmp(mt, "floor", 5);
		if (common && v.t != V_FLOAT && p >= 0) { /* Python's round() of an int is that int */
			*out = mkint(v.u.i);
			return 0;
		}
		if (common && p >= 0) { /* Python's round(): the exact binary value, halves to even */
			char buf[400];
			snprintf(buf, sizeof buf, "%.*f", (int)p, num(&v));
			*out = mkfloat(strtod(buf, NULL));
			return 0;
		}
		double rv = !common ? (mt[0] == 'c' ? ceil(x2) : floor(x2)) : nearbyint(x2);
		*out = mkfloat(rv / m);
		return 0;
	}
	if (!strcmp(name, "min") || !strcmp(name, "max") || !strcmp(name, "sum")) {
		jv *it;
		size_t n;
		TRY(items_of(r, at, &v, &it, &n));
		if (name[1] == 'u') {
			const jv *at2 = arg(a, 0, "attribute"), *st = arg(a, 1, "start");
			jv acc = st ? *st : mkint(0);
			for (size_t k = 0; k < n; k++) {
				jv e = it[k];
				if (at2)
					TRY(attr_path(r, at, &it[k], at2, &e));
				TRY(arith(r, at, JO_ADD, &acc, &e, &acc));
			}
			*out = acc;
			return 0;
		}
		if (!n) {
			*out = UNDEF;
			return 0;
		}
		/* Jinja's min/max: case-insensitive unless asked, optionally by an attribute */
		const jv *cs = arg(a, 0, "case_sensitive"), *at2 = arg(a, 1, "attribute");
		jv best = UNDEF;
		for (size_t k = 0; k < n; k++) {
			jv key = it[k];
			int c = 0;
			if (at2)
				TRY(attr_path(r, at, &it[k], at2, &key));
			if (!(cs && truthy(cs)) && key.t == V_STR)
				TRY(casemap(r, at, &key, 0, &key));
			if (k)
				TRY(cmp_vals(r, at, &key, &best, &c));
			if (!k || (name[1] == 'i' ? c < 0 : c > 0)) {
				best = key;
				*out = it[k];
			}
		}
		return 0;
	}
	return rerr(r, at, -EINVAL, "unknown filter '%s'", name);
}

static int apply_test(R *r, const jj_node *at, const char *name, const jv *v, args_t *a, int *res)
{
	const jv *x = arg(a, 0, NULL);
	if (!strcmp(name, "defined"))
		*res = v->t != V_UNDEF;
	else if (!strcmp(name, "undefined"))
		*res = v->t == V_UNDEF;
	else if (!strcmp(name, "none"))
		*res = v->t == V_NONE;
	else if (!strcmp(name, "string"))
		*res = v->t == V_STR;
	else if (!strcmp(name, "mapping"))
		*res = v->t == V_DICT;
	else if (!strcmp(name, "iterable"))
		*res = v->t == V_STR || v->t == V_LIST || v->t == V_DICT || v->t == V_UNDEF;
	else if (!strcmp(name, "sequence")) /* has len() and [] (dict views have no []) */
		*res = v->t == V_STR || (v->t == V_LIST && v->tuple < 2) || v->t == V_DICT || v->t == V_UNDEF;
	else if (!strcmp(name, "number"))
		*res = is_num(v);
	else if (!strcmp(name, "integer"))
		*res = v->t == V_INT;
	else if (!strcmp(name, "float"))
		*res = v->t == V_FLOAT;
	else if (!strcmp(name, "boolean"))
		*res = v->t == V_BOOL;
	else if (!strcmp(name, "true"))
		*res = v->t == V_BOOL && v->u.i;
	else if (!strcmp(name, "false"))
		*res = v->t == V_BOOL && !v->u.i;
	else if (!strcmp(name, "callable"))
		*res = v->t == V_FUNC;
	else if (!strcmp(name, "even") || !strcmp(name, "odd") || !strcmp(name, "divisibleby")) {
		/* value % n == 0 (even, divisibleby) or == 1 (odd), with Python's modulo */
		jv two = mkint(2), m;
		const jv *d = name[0] == 'd' ? x : &two;
		if (!d)
			return rerr(r, at, -EINVAL, "divisibleby needs a number");
		if (!is_num(v) || !is_num(d))
			return rerr(r, at, -EINVAL, "the %s test needs numbers, not %s", name, tname(is_num(v) ? d : v));
		TRY(arith(r, at, JO_MOD, v, d, &m));
		*res = name[0] == 'o' ? num(&m) == 1 : num(&m) == 0;
	} else if (!strcmp(name, "lower") || !strcmp(name, "upper")) {
		int found;
		jv o;
		if (v->t != V_STR) {
			*res = 0;
			return 0;
		}
		TRY(call_method(r, at, v, name[0] == 'l' ? "islower" : "isupper", a, &o, &found));
		*res = (int)o.u.i;
	} else if (!strcmp(name, "in")) {
		if (!x)
			return rerr(r, at, -EINVAL, "the in test needs a value");
		TRY(eval_cmp(r, at, JO_IN, v, x, res));
	} else if (!strcmp(name, "sameas")) {
		if (!x)
			return rerr(r, at, -EINVAL, "the sameas test needs a value");
		*res = v->t == x->t && (v->t == V_NONE || v->t == V_UNDEF || ((v->t == V_BOOL || v->t == V_INT) && v->u.i == x->u.i) ||
					(v->t == V_LIST && v->u.l == x->u.l) || (v->t == V_DICT && v->u.d == x->u.d));
	} else {
		static const struct {
			const char *n;
			int op;
		} cmp[] = {{"eq", JO_EQ}, {"equalto", JO_EQ}, {"==", JO_EQ}, {"ne", JO_NE}, {"!=", JO_NE},
			   {"lt", JO_LT}, {"lessthan", JO_LT}, {"<", JO_LT}, {"le", JO_LE}, {"<=", JO_LE},
			   {"gt", JO_GT}, {"greaterthan", JO_GT}, {">", JO_GT}, {"ge", JO_GE}, {">=", JO_GE}};
		for (size_t k = 0; k < sizeof cmp / sizeof cmp[0]; k++)
			if (!strcmp(name, cmp[k].n)) {
				if (!x)
					return rerr(r, at, -EINVAL, "the %s test needs a value", name);
				return eval_cmp(r, at, cmp[k].op, v, x, res);
			}
		return rerr(r, at, -EINVAL, "unknown test '%s'", name);
	}
	return 0;
}

/* ---- statements */

static int assign(R *r, const jj_node *t, frame *f, jv v)
{
	if (t->kind == JN_NAME)
		return fset(r, t, f, t->s, v);
	if (t->kind == JN_TUPLE) {
		jv *it;
		size_t n;
		if (v.t != V_LIST && v.t != V_STR && v.t != V_DICT)
			return rerr(r, t, -EINVAL, "cannot unpack a %s into %zu names", tname(&v), t->n);
		TRY(items_of(r, t, &v, &it, &n));
		if (n != t->n)
			return rerr(r, t, -EINVAL, "cannot unpack %zu values into %zu names", n, t->n);
		for (size_t k = 0; k < n; k++)
			TRY(assign(r, t->kids[k], f, it[k]));
		return 0;
	}
	/* ns.attr */
	const jv *ns = fget(f, t->a->s);
	if (!ns || ns->t != V_DICT || !ns->tuple)
		return rerr(r, t, -EINVAL, "cannot assign attribute '%s' on '%s': not a namespace()", t->s, t->a->s);
	return dict_set(r, t, ns->u.d, mkstr(t->s, t->slen), v);
}

static int apply_chain(R *r, const jj_node *chain, frame *f, jv v, jv *out)
{
	if (!chain) {
		*out = v;
		return 0;
	}
	jv in;
	TRY(apply_chain(r, chain->a, f, v, &in));
	args_t *args = ralloc(r, chain, sizeof *args);
	if (!args)
		return r->rc;
	TRY(eval_args(r, chain, f, args));
	return apply_filter(r, chain, chain->s, in, args, f, out);
}

static int ex_for(R *r, const jj_node *n, frame *f, sbuf *o)
{
	jv seq;
	TRY(ev(r, n->b, f, &seq));
	if (seq.t != V_UNDEF && seq.t != V_LIST && seq.t != V_DICT && seq.t != V_STR)
		return rerr(r, n, -EINVAL, "'%s' object is not iterable", tname(&seq));
	jv *it;
	size_t cnt;
	TRY(items_of(r, n, &seq, &it, &cnt));
	frame *lf = fnew(r, n, f);
	if (!lf)
		return r->rc;
	if (n->e) { /* {% for x in xs if cond %}: filter first, loop.length counts what is kept */
		jv *kept = ralloc_n(r, n, cnt, sizeof *kept);
		size_t nk = 0;
		if (!kept)
			return r->rc;
		for (size_t i = 0; i < cnt; i++) {
			jv c;
			if (++r->iters > TOK_JINJA_MAX_ITERS)
				return rerr(r, n, -E2BIG, "loops run more than %u iterations", TOK_JINJA_MAX_ITERS);
			TRY(assign(r, n->a, lf, it[i]));
			TRY(ev(r, n->e, lf, &c));
			if (truthy(&c))
				kept[nk++] = it[i];
		}
		it = kept;
		cnt = nk;
	}
	jloop *lp = ralloc(r, n, sizeof *lp);
	if (!lp)
		return r->rc;
	lp->n = cnt;
	lp->items = it;
	jv lv = {.t = V_LOOP};
	lv.u.lp = lp;
	for (size_t i = 0; i < cnt; i++) {
		if (++r->iters > TOK_JINJA_MAX_ITERS)
			return rerr(r, n, -E2BIG, "loops run more than %u iterations", TOK_JINJA_MAX_ITERS);
		lp->i = i;
		/* each iteration starts from the enclosing scope: the frame is emptied, or replaced
		 * when a macro defined in it keeps it */
		if (i && lf->captured && !(lf = fnew(r, n, f)))
			return r->rc;
		lf->n = 0;
		TRY(assign(r, n->a, lf, it[i]));
		TRY(fset(r, n, lf, "loop", lv));
		int rc = ex(r, n->c, lf, o);
		if (rc == BRK)
			break;
		if (rc < 0)
			return rc;
	}
	if (!cnt && n->d) {
		int rc = ex(r, n->d, f, o);
		if (rc)
			return rc;
	}
	return 0;
}

static int ex(R *r, const jj_node *n, frame *f, sbuf *o)
{
	TRY(step(r, n));
	jv v;
	switch (n->kind) {
	case JS_BLOCK:
		for (size_t i = 0; i < n->n; i++) {
			int rc = ex(r, n->kids[i], f, o);
			if (rc)
				return rc;
		}
		return 0;
	case JS_TEXT: return sb_put(r, n, o, n->s, n->slen);
	case JS_OUT:
		TRY(ev(r, n->a, f, &v));
		return put_str(r, n, o, &v);
	case JS_IF:
		TRY(ev(r, n->a, f, &v));
		if (truthy(&v))
			return ex(r, n->b, f, o);
		return n->c ? ex(r, n->c, f, o) : 0;
	case JS_FOR: return ex_for(r, n, f, o);
	case JS_SET:
		if (n->b) {
			TRY(ev(r, n->b, f, &v));
		} else {
			sbuf b = {0};
			int rc = ex(r, n->c, f, &b);
			if (rc)
				return rc < 0 ? rc : rerr(r, n, -EINVAL, "break or continue outside a loop");
			TRY(apply_chain(r, n->d, f, sb_str(&b), &v));
		}
		return assign(r, n->a, f, v);
	case JS_MACRO: {
		jfn *fn = ralloc(r, n, sizeof *fn);
		if (!fn)
			return r->rc;
		fn->kind = FN_MACRO;
		fn->m = n;
		fn->closure = f;
		f->captured = 1;
		v = (jv){.t = V_FUNC};
		v.u.fn = fn;
		return fset(r, n, f, n->s, v);
	}
	case JS_CALLBLOCK: {
		jfn *fn = ralloc(r, n, sizeof *fn);
		if (!fn)
			return r->rc;
		fn->kind = FN_MACRO;
		fn->m = n;
		fn->closure = f;
		f->captured = 1;
		const jj_node *c = n->a;
		args_t *args = ralloc(r, n, sizeof *args);
		jv callee;
		if (!args)
			return r->rc;
		TRY(ev(r, c->a, f, &callee));
		TRY(eval_args(r, c, f, args));
		r->caller = fn;
		TRY(call_fn(r, c, callee, args, &v));
		return put_str(r, n, o, &v);
	}
	case JS_FILTERBLOCK: {
		sbuf b = {0};
		int rc = ex(r, n->c, f, &b);
		if (rc)
			return rc < 0 ? rc : rerr(r, n, -EINVAL, "break or continue outside a loop");
		TRY(apply_chain(r, n->a, f, sb_str(&b), &v));
		return put_str(r, n, o, &v);
	}
	case JS_BREAK: return BRK;
	case JS_CONTINUE: return CONT;
	default: return rerr(r, n, -EINVAL, "not a statement");
	}
}

/* ---- JSON context -> values */

static int from_json(R *r, const json_t *j, jv *out, int depth)
{
	if (depth > 64)
		return rerr(r, NULL, -E2BIG, "the context nests more than 64 deep");
	switch (json_typeof(j)) {
	case JSON_NULL: *out = NONE; return 0;
	case JSON_TRUE: *out = mkbool(1); return 0;
	case JSON_FALSE: *out = mkbool(0); return 0;
	case JSON_INTEGER: *out = mkint((int64_t)json_integer_value(j)); return 0;
	case JSON_REAL: *out = mkfloat(json_real_value(j)); return 0;
	case JSON_STRING: *out = mkstr(json_string_value(j), json_string_length(j)); return 0;
	case JSON_ARRAY: {
		size_t n = json_array_size(j);
		TRY(mklist(r, NULL, n, out));
		for (size_t i = 0; i < n; i++)
			TRY(from_json(r, json_array_get(j, i), &out->u.l->v[i], depth + 1));
		return 0;
	}
	case JSON_OBJECT: {
		const char *k;
		json_t *v;
		TRY(mkdict(r, NULL, json_object_size(j), out));
		json_object_foreach((json_t *)j, k, v) {
			jdict *d = out->u.d;
			d->k[d->n] = mkstr(k, strlen(k));
			TRY(from_json(r, v, &d->v[d->n], depth + 1));
			d->n++;
		}
		return 0;
	}
	}
	return 0;
}

int tok_jinja_render(const tok_jinja *t, const json_t *ctx, const tok_jinja_opts *o, char **out,
		     size_t *len, char *err, size_t errlen)
{
	if (!t || !out || (ctx && !json_is_object(ctx)))
		return -EINVAL;
	*out = NULL;
	if (err && errlen)
		err[0] = 0;
	R r = {.err = err, .errlen = errlen, .o = o};
	r.ar.budget = TOK_JINJA_MAX_MEM;
	r.max_out = o && o->max_out ? o->max_out : TOK_JINJA_MAX_OUT;
	r.max_steps = o && o->max_steps ? o->max_steps : TOK_JINJA_MAX_STEPS;
	int rc = 0;
	sbuf b = {0};
	if (!(r.root = fnew(&r, NULL, NULL))) {
		rc = r.rc;
		goto done;
	}
	if (ctx) {
		const char *k;
		json_t *v;
		json_object_foreach((json_t *)ctx, k, v) {
			jv x;
			if ((rc = from_json(&r, v, &x, 0)) || (rc = fset(&r, NULL, r.root, k, x)))
				goto done;
		}
	}
	rc = ex(&r, t->root, r.root, &b);
	if (rc > 0)
		rc = rerr(&r, NULL, -EINVAL, "break or continue outside a loop");
	if (rc)
		goto done;
	*out = malloc(b.n + 1);
	if (!*out) {
		rc = -ENOMEM;
		goto done;
	}
	if (b.n)
		memcpy(*out, b.p, b.n);
	(*out)[b.n] = 0;
	if (len)
		*len = b.n;
done:
	jj_arena_free(&r.ar);
	return rc;
}

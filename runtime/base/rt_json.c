/* rt_json.c — bounded JSON for request bodies: the scan that prices a text before jansson
 * parses it, the split of big numeric arrays out of it, their compact reader, and number
 * output as json_dumps writes it. See rt_json.h. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/random.h>
#include "runtime/base/rt_json.h"

/* bytes of a jansson tree, measured on jansson 2.14 (glibc malloc): every value takes a slot
 * of its container (8 bytes, up to 16 as arrays grow by doubling), a number 32 more, a string
 * ~80 + its bytes, an empty array ~136, an empty object ~240, an object member's key ~80 + its
 * bytes (counted as a string); true/false/null are shared. 131072 small integers cost 6.3 MB
 * by these figures (jansson: 5.2), 8192 chat messages 5.4 MB (jansson: 4.5). */
#define COST_SLOT 16
#define COST_NUMBER 32
#define COST_STRING 80
#define COST_ARRAY 136
#define COST_OBJECT 240

#define SCAN_FRAMES 64

/* the scan's view of the syntax: what a container (or the root) may see next */
enum { S_OPEN, S_KEY, S_COLON, S_VALUE, S_AFTER };
#define SPAN_MAX_DEPTH 8
#define SPAN_MARKER_LEN 27         /* "~span~" + 16 hex + "~" + 2 digits, quoted */

typedef struct frame {
	char type;                 /* '[' or '{' */
	char on;                   /* the container lies on the path */
	char state;                /* what may come next (S_*) */
	unsigned char match;       /* path entries matched to reach it */
	char key_esc;              /* the last key holds an escape (it matches no path entry) */
	const char *key;           /* object: the last key's raw text */
	size_t keylen;
	const char *name;          /* the member this container is the value of (an array's */
	size_t namelen;            /*  elements inherit it); NULL at the top */
	size_t count, cap;         /* members or elements so far; an array's limit (0: none) */
} frame;

static int is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* the end of a number token at b[i] that jansson accepts and converts without error (an
 * integer of at most 18 digits, a real of at most 40 mantissa digits and a 1-2 digit
 * exponent, so always finite); 0 when it is not such a token */
static size_t span_number(const char *b, size_t len, size_t i)
{
	size_t j = i, digits = 0, exp_digits = 0;
	int real = 0;
	if (j < len && b[j] == '-')
		j++;
	if (j < len && b[j] == '0') {
		j++;
		digits = 1;
	} else {
		while (j < len && is_digit(b[j])) {
			j++;
			digits++;
		}
	}
	if (!digits)
		return 0;
	if (j < len && b[j] == '.') {
		size_t f = 0;
		j++;
		while (j < len && is_digit(b[j])) {
			j++;
			f++;
		}
		if (!f)
			return 0;
		digits += f;
		real = 1;
	}
	if (j < len && (b[j] == 'e' || b[j] == 'E')) {
		j++;
		if (j < len && (b[j] == '+' || b[j] == '-'))
			j++;
		while (j < len && is_digit(b[j])) {
			j++;
			exp_digits++;
		}
		if (!exp_digits || exp_digits > 2)
			return 0;
		real = 1;
	}
	if (real ? digits > 40 : digits > 18)
		return 0;
	return j;
}

/* tries b[i] == '[' as a span: an array of numbers, booleans and such arrays, at most
 * SPAN_MAX_DEPTH deep, valid JSON, with a run of SPAN_MARKER_LEN characters without a line
 * break (for the marker). 1 with *end (one past its ']'), *count and *depth; else 0. */
static int scan_numeric(const char *b, size_t len, size_t i, size_t *end, size_t *count,
			int *depth)
{
	enum { OPEN, AFTER_VALUE, AFTER_COMMA } state = OPEN;
	int d = 0, maxd = 0;
	size_t n = 0, run = 0, best_run = 0, line_start = i;
	while (i < len) {
		char c = b[i];
		if (c == '\n' || c == '\r') {
			run = i - line_start;
			if (run > best_run)
				best_run = run;
			line_start = i + 1;
			i++;
			continue;
		}
		if (is_ws(c)) {
			i++;
			continue;
		}
		if (c == '[') {
			if (state == AFTER_VALUE)
				return 0;
			if (++d > SPAN_MAX_DEPTH)
				return 0;
			if (d > maxd)
				maxd = d;
			state = OPEN;
			i++;
		} else if (c == ']') {
			if (state == AFTER_COMMA)
				return 0;
			d--;
			i++;
			state = AFTER_VALUE;
			if (d == 0)
				break;
		} else if (c == ',') {
			if (state != AFTER_VALUE)
				return 0;
			state = AFTER_COMMA;
			i++;
		} else {
			if (state == AFTER_VALUE)
				return 0;
			size_t j;
			if (c == 't' && len - i >= 4 && !memcmp(b + i, "true", 4))
				j = i + 4;
			else if (c == 'f' && len - i >= 5 && !memcmp(b + i, "false", 5))
				j = i + 5;
			else if ((j = span_number(b, len, i)) == 0)
				return 0;
			n++;
			i = j;
			state = AFTER_VALUE;
		}
	}
	if (d != 0)
		return 0;
	run = i - line_start;
	if (run > best_run)
		best_run = run;
	if (best_run < SPAN_MARKER_LEN + 2)
		return 0;
	*end = i;
	*count = n;
	*depth = maxd;
	return 1;
}

/* whether a value whose container is f (NULL: the root) lies on the path; *match gets the
 * entries matched to reach it */
static int value_on_path(const frame *f, const char *const *path, int np, unsigned char *match)
{
	if (!path)
		return 0;
	if (!f) {
		*match = 0;
		return 1;
	}
	if (!f->on || f->match >= np)
		return 0;
	const char *want = path[f->match];
	if (f->type == '[') {
		if (strcmp(want, "*") != 0)
			return 0;
	} else if (f->key_esc || !f->key || strlen(want) != f->keylen || memcmp(want, f->key, f->keylen) != 0) {
		return 0;
	}
	*match = (unsigned char)(f->match + 1);
	return 1;
}

/* a number literal jansson refuses: an integer outside int64, a real that overflows */
static int number_out_of_range(const char *s, size_t l)
{
	char buf[512];
	if (l >= sizeof buf)
		return 0;   /* malformed: jansson's to judge */
	int real = memchr(s, '.', l) || memchr(s, 'e', l) || memchr(s, 'E', l);
	if (!real && l < 19)
		return 0;
	memcpy(buf, s, l);
	buf[l] = 0;
	errno = 0;
	if (!real) {
		(void)strtoll(buf, NULL, 10);
		return errno == ERANGE;
	}
	return isinf(strtod(buf, NULL));
}

/* the limit on elements of an array that is the value of member name (0: none) */
static size_t array_cap(const rt_json_rules *r, const char *name, size_t nl)
{
	for (int i = 0; name && i < r->ncaps; i++)
		if (nl == strlen(r->caps[i].key) && !memcmp(name, r->caps[i].key, nl))
			return r->caps[i].max;
	return r->max_elements;
}

/* records the first failure: "'field': text" (the field's part left out at the top level) */
static int fail(rt_json_fail *f, int status, const char *code, const char *field, size_t fl,
		const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static int fail(rt_json_fail *f, int status, const char *code, const char *field, size_t fl,
		const char *fmt, ...)
{
	if (f) {
		char text[256];
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(text, sizeof text, fmt, ap);
		va_end(ap);
		f->status = status;
		f->code = code;
		snprintf(f->field, sizeof f->field, "%.*s", field ? (int)(fl < 60 ? fl : 60) : 0,
			 field ? field : "");
		if (f->field[0])
			snprintf(f->msg, sizeof f->msg, "'%s': %s", f->field, text);
		else
			snprintf(f->msg, sizeof f->msg, "%s", text);
	}
	return status == 413 ? -E2BIG : -EINVAL;
}

int rt_json_check(const char *b, size_t len, const char *const *path, size_t min_count,
		  const rt_json_rules *r, rt_json_stats *st, rt_json_fail *f)
{
	frame fr[SCAN_FRAMES];
	int depth = 0, np = 0;
	/* spans are taken only while the text so far is well formed as far as the scan sees
	 * (jansson then reaches them, and fails, if at all, at the same place in the split copy);
	 * root is the state of the top level */
	int bad = 0;
	char root = S_VALUE;
	size_t budget = r && r->budget ? rt_json_budget(len) : 0;
	memset(st, 0, sizeof *st);
	if (r && r->root_key && r->root_cap)
		r->root_val[0] = 0;
	while (path && path[np] && np < 8)
		np++;
	size_t i = 0;
	while (i < len) {
		char c = b[i];
		frame *top = depth > 0 && depth <= SCAN_FRAMES ? &fr[depth - 1] : NULL;
		char *state = depth == 0 ? &root : top ? &top->state : NULL;
		if (!state)
			bad = 1;
		if (is_ws(c)) {
			i++;
			continue;
		}
		if (c == ':') {
			if (!state || *state != S_COLON || top->type != '{')
				bad = 1;
			else
				*state = S_VALUE;
			i++;
			continue;
		}
		if (c == ',') {
			if (!top || top->state != S_AFTER)
				bad = 1;
			else
				top->state = top->type == '{' ? S_KEY : S_VALUE;
			i++;
			continue;
		}
		if (c == '}' || c == ']') {
			if (!top || top->type != (c == '}' ? '{' : '[') ||
			    (top->state != S_AFTER && top->state != S_OPEN))
				bad = 1;
			if (depth > 0)
				depth--;
			if (depth == 0)
				root = S_AFTER;
			i++;
			continue;
		}
		int is_key = top && top->type == '{' && (top->state == S_OPEN || top->state == S_KEY);
		/* a value: where one may stand (a key, in an object), else the text is malformed */
		if (!is_key) {
			if (!state || (*state != S_VALUE && !(top && top->type == '[' && *state == S_OPEN)))
				bad = 1;
			else
				*state = S_AFTER;
		}
		/* the member this value belongs to, for the rules' limits and messages */
		const char *name = !top ? NULL : top->type == '{' ? top->key : top->name;
		size_t nl = !top ? 0 : top->type == '{' ? top->keylen : top->namelen;
		st->cost += COST_SLOT;
		if (r && top && top->type == '{' && is_key && ++top->count > r->max_members &&
		    r->max_members)
			return fail(f, 400, "too_many_members", top->name, top->namelen,
				    "an object holds more than %zu members", r->max_members);
		if (r && top && top->type == '[' && ++top->count > top->cap && top->cap)
			return fail(f, top->cap == r->max_elements ? 413 : 400, "array_too_long", name,
				    nl, "an array holds more than %zu elements", top->cap);
		if (c == '"') {
			size_t s = ++i;
			int esc = 0;
			while (i < len && b[i] != '"') {
				if (b[i] == '\\') {
					esc = 1;
					i++;
				}
				i++;
			}
			size_t n = (i < len ? i : len) - s;
			i++;
			st->strings++;
			st->string_bytes += n;
			st->cost += COST_STRING + n;
			if (is_key) {
				top->state = S_COLON;
				top->key = b + s;
				top->keylen = n;
				top->key_esc = (char)esc;
			} else if (depth == 1 && top && top->type == '{' && r && r->root_key &&
				   !top->key_esc && nl == strlen(r->root_key) &&
				   !memcmp(name, r->root_key, nl) && !esc && n < r->root_cap) {
				memcpy(r->root_val, b + s, n);
				r->root_val[n] = 0;
			}
		} else {
			if (is_key)
				bad = 1;   /* jansson wants a string here */
			unsigned char match = 0;
			int on = !bad && value_on_path(depth ? top : NULL, path, np, &match);
			if (c == '[' || c == '{') {
				if (c == '[' && on && match == np && st->nspans < RT_JSON_MAX_SPANS) {
					size_t end, count;
					int d;
					if (scan_numeric(b, len, i, &end, &count, &d) && count >= min_count) {
						st->cost -= COST_SLOT;
						st->spans[st->nspans++] = (rt_json_span){i, end - i, count, d};
						i = end;
						continue;
					}
				}
				if (r && r->max_depth && depth >= r->max_depth)
					return fail(f, 400, "too_deep", name, nl, "the JSON body nests deeper "
						    "than %d levels", r->max_depth);
				if (c == '[')
					st->arrays++;
				else
					st->objects++;
				st->cost += c == '[' ? COST_ARRAY : COST_OBJECT;
				depth++;
				if (depth > st->max_depth)
					st->max_depth = depth;
				if (depth <= SCAN_FRAMES)
					fr[depth - 1] = (frame){c, (char)on, S_OPEN, match, 0, NULL, 0, name, nl,
								0, c == '[' && r ? array_cap(r, name, nl) : 0};
				i++;
			} else if (c == '-' || is_digit(c)) {
				size_t s = i;
				st->numbers++;
				st->cost += COST_NUMBER;
				while (i < len && (is_digit(b[i]) || b[i] == '-' || b[i] == '+' ||
						   b[i] == '.' || b[i] == 'e' || b[i] == 'E'))
					i++;
				if (r && r->check_numbers && number_out_of_range(b + s, i - s)) {
					int ll = i - s > 40 ? 40 : (int)(i - s);
					return fail(f, 400, "number_out_of_range", name, nl, "the number %.*s%s "
						    "is out of range", ll, b + s, i - s > 40 ? "..." : "");
				}
			} else if (c >= 'a' && c <= 'z') {
				st->literals++;
				while (i < len && b[i] >= 'a' && b[i] <= 'z')
					i++;
			} else {
				st->cost -= COST_SLOT;
				i++;   /* not JSON: jansson reports it */
			}
		}
		if (budget && st->cost > budget)
			return fail(f, 413, "body_too_complex", name, nl, "the JSON body would take more "
				    "than %zu bytes to parse (at most %d times its size or %zu bytes): send "
				    "fewer or smaller values", budget, RT_JSON_AMP, RT_JSON_FLOOR);
	}
	return 0;
}

void rt_json_scan(const char *b, size_t len, const char *const *path, size_t min_count,
		  rt_json_stats *st)
{
	(void)rt_json_check(b, len, path, min_count, NULL, st, NULL);
}

size_t rt_json_budget(size_t n)
{
	size_t b = n > SIZE_MAX / RT_JSON_AMP ? SIZE_MAX : n * RT_JSON_AMP;
	return b > RT_JSON_FLOOR ? b : RT_JSON_FLOOR;
}

json_t *rt_json_load(const char *buf, size_t len, size_t flags, size_t budget, int *status,
		     char *err, size_t errlen)
{
	if (len == 0) {
		*status = 400;
		snprintf(err, errlen, "invalid JSON: empty body");
		return NULL;
	}
	rt_json_stats st;
	rt_json_scan(buf, len, NULL, 0, &st);
	if (st.cost > budget) {
		*status = 413;
		snprintf(err, errlen, "request body: its JSON (%zu values in %zu bytes) would take "
			 "about %zu MiB to parse, more than the %zu MiB a body of this size may use; "
			 "send big tensors through the Open Inference Protocol route "
			 "(/v2/models/{name}/infer), whose data arrays are read compactly",
			 st.numbers + st.strings + st.literals + st.arrays + st.objects, len,
			 (st.cost + (1u << 20) - 1) >> 20, budget >> 20);
		return NULL;
	}
	json_error_t je;
	json_t *v = json_loadb(buf, len, flags, &je);
	if (!v) {
		*status = 400;
		snprintf(err, errlen, "invalid JSON at line %d column %d: %s", je.line, je.column, je.text);
	}
	return v;
}

static void marker(char *out, uint64_t nonce, int idx)
{
	char tmp[64];   /* idx < RT_JSON_MAX_SPANS: two digits */
	snprintf(tmp, sizeof tmp, "\"~span~%016llx~%02d\"", (unsigned long long)nonce, idx % 100);
	memcpy(out, tmp, SPAN_MARKER_LEN);
}

static uint64_t random_nonce(void)
{
	uint64_t v = 0;
	if (getrandom(&v, sizeof v, 0) != (ssize_t)sizeof v) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		v = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ull ^ (uint64_t)ts.tv_sec ^ (uint64_t)getpid();
	}
	return v;
}

char *rt_json_split(const char *buf, size_t len, const rt_json_stats *st, uint64_t *nonce)
{
	char *c = malloc(len + 1);
	if (!c)
		return NULL;
	memcpy(c, buf, len);
	c[len] = 0;
	*nonce = random_nonce();
	for (int k = 0; k < st->nspans; k++) {
		const rt_json_span *sp = &st->spans[k];
		char *p = c + sp->off;
		size_t run = 0, at = 0;
		int placed = 0;
		for (size_t j = 0; j < sp->len; j++) {
			if (p[j] == '\n' || p[j] == '\r') {
				run = 0;
				continue;
			}
			p[j] = ' ';
			if (!placed && ++run == SPAN_MARKER_LEN) {
				at = j + 1 - SPAN_MARKER_LEN;
				placed = 1;
			}
		}
		marker(p + at, *nonce, k);   /* scan_numeric made sure such a run exists */
	}
	return c;
}

int rt_json_span_of(const json_t *v, uint64_t nonce, int nspans)
{
	if (!json_is_string(v) || json_string_length(v) != SPAN_MARKER_LEN - 2)
		return -1;
	char want[SPAN_MARKER_LEN + 1];
	const char *s = json_string_value(v);
	marker(want, nonce, 0);
	if (memcmp(s, want + 1, SPAN_MARKER_LEN - 4) != 0 || !is_digit(s[23]) || !is_digit(s[24]))
		return -1;
	int idx = (s[23] - '0') * 10 + (s[24] - '0');
	return idx < nspans ? idx : -1;
}

void rt_json_iter_init(rt_json_iter *it, const char *buf, const rt_json_span *sp)
{
	it->p = buf + sp->off;
	it->end = buf + sp->off + sp->len;
}

int rt_json_iter_next(rt_json_iter *it, double *v, int *is_int)
{
	const char *p = it->p, *e = it->end;
	while (p < e && (*p == '[' || *p == ']' || *p == ',' || is_ws(*p)))
		p++;
	if (p >= e) {
		it->p = p;
		return 0;
	}
	if (*p == 't' || *p == 'f') {
		*v = *p == 't';
		*is_int = 1;
		it->p = p + (*p == 't' ? 4 : 5);
		return 1;
	}
	const char *q = p;
	int neg = *q == '-';
	if (neg)
		q++;
	int64_t acc = 0;
	/* an integer has at most 18 digits (span_number); a real's mantissa may have up to 40,
	 * read again by strtod below, so the sum stops growing before it could overflow */
	for (; q < e && is_digit(*q); q++)
		if (acc < INT64_MAX / 10 - 9)
			acc = acc * 10 + (*q - '0');
	if (q < e && (*q == '.' || *q == 'e' || *q == 'E')) {
		char tmp[64];
		const char *r = q;
		while (r < e && (is_digit(*r) || *r == '.' || *r == 'e' || *r == 'E' || *r == '+' ||
				 *r == '-'))
			r++;
		size_t n = (size_t)(r - p);
		if (n >= sizeof tmp)
			n = sizeof tmp - 1;   /* cannot happen: span_number bounds the token */
		memcpy(tmp, p, n);
		tmp[n] = 0;
		*v = strtod(tmp, NULL);
		*is_int = 0;
		it->p = r;
		return 1;
	}
	*v = (double)(neg ? -acc : acc);
	*is_int = 1;
	it->p = q;
	return 1;
}

void rt_json_buf_add(rt_json_buf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t nc = b->cap ? b->cap : 4096;
		while (nc < b->len + n + 1)
			nc *= 2;
		char *np = realloc(b->p, nc);
		if (!np) {
			b->oom = 1;
			return;
		}
		b->p = np;
		b->cap = nc;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = 0;
}

const char *rt_json_fmt_real(double v, char *buf, size_t cap)
{
	char s[40];
	if (!isfinite(v)) {   /* json_real refuses these; JSON has no spelling for them */
		snprintf(buf, cap, "null");
		return buf;
	}
	/* at least the integer digits, so that 10 is "10.0" and not "1e+01" */
	int min = fabs(v) >= 1 && fabs(v) < 1e17 ? (int)floor(log10(fabs(v))) + 1 : 1, n = 0;
	for (int prec = min; prec <= 17; prec++) {
		n = snprintf(s, sizeof s - 3, "%.*g", prec, v);
		if (strtod(s, NULL) == v)
			break;
	}
	char *e = strchr(s, 'e');
	if (e) {   /* "1e+20" -> "1e20", "1e-05" -> "1e-5", as jansson writes them */
		char *start = e + 1, *end = e + 2;
		if (*start == '-')
			start++;
		while (*end == '0' && end[1])
			end++;
		if (end != start) {
			memmove(start, end, (size_t)(s + n - end) + 1);
			n -= (int)(end - start);
		}
	} else if (!strchr(s, '.')) {   /* a real looks like one: "2" -> "2.0" */
		s[n++] = '.';
		s[n++] = '0';
		s[n] = 0;
	}
	snprintf(buf, cap, "%s", s);
	return buf;
}

void rt_json_put_real(rt_json_buf *b, double v)
{
	char s[40];
	rt_json_fmt_real(v, s, sizeof s);
	rt_json_buf_add(b, s, strlen(s));
}

void rt_json_put_int(rt_json_buf *b, int64_t v)
{
	char s[32];
	int n = snprintf(s, sizeof s, "%lld", (long long)v);
	rt_json_buf_add(b, s, (size_t)n);
}

void rt_json_buf_free(rt_json_buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

/* ---- serializing a tree ---- */

static void put_indent(rt_json_buf *b, int indent, int depth)
{
	if (indent <= 0)
		return;
	rt_json_buf_add(b, "\n", 1);
	for (int i = 0; i < indent * depth && !b->oom; i++)
		rt_json_buf_add(b, " ", 1);
}

/* put_string writes s (n bytes) as a JSON string: printable ASCII as it is, anything else
 * through jansson (its escapes, its UTF-8 check: invalid text fails the dump as in json_dumps) */
static int put_string(rt_json_buf *b, const char *s, size_t n)
{
	size_t i = 0;
	while (i < n && (unsigned char)s[i] >= 0x20 && (unsigned char)s[i] < 0x80 && s[i] != '"' &&
	       s[i] != '\\')
		i++;
	if (i == n) {
		rt_json_buf_add(b, "\"", 1);
		rt_json_buf_add(b, s, n);
		rt_json_buf_add(b, "\"", 1);
		return 0;
	}
	json_t *j = json_stringn_nocheck(s, n);
	char *text = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
	json_decref(j);
	if (!text)
		return -EINVAL;
	rt_json_buf_add(b, text, strlen(text));
	free(text);
	return 0;
}

static int put_value(rt_json_buf *b, const json_t *v, int indent, int depth)
{
	char num[40];
	size_t i;
	const char *k;
	json_t *e;
	int first = 1;
	if (depth > 2048)   /* jansson's own dump limit guards its recursion the same way */
		return -ELOOP;
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		if (json_object_size(v) == 0) {
			rt_json_buf_add(b, "{}", 2);
			return 0;
		}
		rt_json_buf_add(b, "{", 1);
		json_object_foreach((json_t *)v, k, e) {
			if (!first)
				rt_json_buf_add(b, ",", 1);
			first = 0;
			put_indent(b, indent, depth + 1);
			if (put_string(b, k, strlen(k)) < 0)
				return -EINVAL;
			rt_json_buf_add(b, indent > 0 ? ": " : ":", indent > 0 ? 2 : 1);
			if (put_value(b, e, indent, depth + 1) < 0)
				return -EINVAL;
		}
		put_indent(b, indent, depth);
		rt_json_buf_add(b, "}", 1);
		return 0;
	case JSON_ARRAY:
		if (json_array_size(v) == 0) {
			rt_json_buf_add(b, "[]", 2);
			return 0;
		}
		rt_json_buf_add(b, "[", 1);
		json_array_foreach((json_t *)v, i, e) {
			if (i > 0)
				rt_json_buf_add(b, ",", 1);
			put_indent(b, indent, depth + 1);
			if (put_value(b, e, indent, depth + 1) < 0)
				return -EINVAL;
		}
		put_indent(b, indent, depth);
		rt_json_buf_add(b, "]", 1);
		return 0;
	case JSON_STRING:
		return put_string(b, json_string_value(v), json_string_length(v));
	case JSON_INTEGER:
		rt_json_put_int(b, (int64_t)json_integer_value(v));
		return 0;
	case JSON_REAL:
		rt_json_fmt_real(json_real_value(v), num, sizeof num);
		rt_json_buf_add(b, num, strlen(num));
		return 0;
	case JSON_TRUE:
		rt_json_buf_add(b, "true", 4);
		return 0;
	case JSON_FALSE:
		rt_json_buf_add(b, "false", 5);
		return 0;
	default:
		rt_json_buf_add(b, "null", 4);
		return 0;
	}
}

char *rt_json_dumps(const json_t *v, int indent)
{
	rt_json_buf b = {0};
	if (!v || put_value(&b, v, indent, 0) < 0 || b.oom) {
		rt_json_buf_free(&b);
		return NULL;
	}
	if (!b.p)
		rt_json_buf_add(&b, "", 0);
	return b.oom ? (rt_json_buf_free(&b), NULL) : b.p;
}

/* rt_json.h — bounded JSON for request bodies: what a body costs before jansson builds a tree
 * of it, and a compact path for the big numeric arrays (tensor data) that jansson cannot hold
 * within any sane multiple of their text ("1," is 2 bytes of text and ~40 bytes as a json_t).
 *
 *   rt_json_scan      one pass over the text, no allocation: counts of values by type, nesting
 *                     depth, and the estimated bytes a jansson tree of it needs; optionally the
 *                     spans of big arrays of numbers at a given path (e.g. inputs[*].data)
 *   rt_json_check     the same pass enforcing rules as it goes (nesting, members, elements per
 *                     member, numbers jansson refuses, the budget), the first limit hit named
 *                     by field; it can also lift one top-level string (the OpenAI "model")
 *   rt_json_budget    the tree bytes a request of decoded size n may cost (RT_JSON_AMP x n,
 *                     at least RT_JSON_FLOOR): the one rule for every JSON route
 *   rt_json_load      json_loadb behind that budget: 413 when the tree would cost more, 400
 *                     "invalid JSON at line L column C: ..." as before otherwise
 *   rt_json_split     a copy of the text with the scanned spans replaced by marker strings of
 *                     the same length (so jansson's line/column positions stay those of the
 *                     body), to parse the rest with jansson and the spans compactly
 *   rt_json_span_of   the span a value of the parsed copy stands for (or -1)
 *   rt_json_iter_*    reads a span's numbers in order (booleans as 0/1), as doubles equal to
 *                     what json_number_value gives for them
 *   rt_json_buf_*     a growable text buffer; rt_json_put_real / _int write numbers (reals
 *                     in their shortest form that reads back as the same double)
 *   rt_json_dumps     json_dumps(JSON_COMPACT) with reals in that shortest form ("0.003", not
 *                     jansson's 17 digits "0.0030000000000000001"): the daemon's answers
 * Thread-safe: no global state (callers run these on worker threads). */
#ifndef THAW_RT_JSON_H
#define THAW_RT_JSON_H
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

/* A tree may cost RT_JSON_AMP x the text it came from, but always RT_JSON_FLOOR: the rest of
 * a large request's path (a kind's copy of its input, the serialized answer, the body itself)
 * must fit in 8x the body's decoded size; the floor admits what small bodies legitimately
 * amplify to (a 128k-token prompt of ids, 8192 chat messages: 6.3 and 5.4 MB by the scan). */
#define RT_JSON_AMP 3
#define RT_JSON_FLOOR ((size_t)8 << 20)
#define RT_JSON_MAX_SPANS 16

typedef struct rt_json_span {
	size_t off, len;           /* the array's text: buf[off] == '[', buf[off + len - 1] == ']' */
	size_t count;              /* numbers and booleans in it, at any nesting */
	int depth;                 /* nesting depth inside it (1 for a flat array) */
} rt_json_span;

typedef struct rt_json_stats {
	size_t numbers, strings, string_bytes, literals, arrays, objects;
	int max_depth;
	size_t cost;               /* estimated bytes of the jansson tree (spans excluded) */
	rt_json_span spans[RT_JSON_MAX_SPANS];
	int nspans;
} rt_json_stats;

/* rt_json_scan counts what buf[0..len) holds into *st. It does not validate the text (jansson
 * does); a malformed text gets counts that are still an upper bound of what jansson would
 * allocate before failing. When path is not NULL (keys from the root; "*" is any element of an
 * array; NULL-terminated, at most 8 entries), arrays found exactly there that hold only
 * numbers, booleans and such arrays, at least min_count of them, are reported as spans (the
 * first RT_JSON_MAX_SPANS) and left out of the counts and the cost, provided their text is
 * valid JSON that jansson would parse without error (else they count as ordinary values). */
void rt_json_scan(const char *buf, size_t len, const char *const *path, size_t min_count,
		  rt_json_stats *st);

/* Limits rt_json_check enforces; a zero field is no limit. */
typedef struct rt_json_cap {
	const char *key;           /* arrays that are this member's value, or nested in one */
	size_t max;                /* their elements: more is 400 array_too_long */
} rt_json_cap;

typedef struct rt_json_rules {
	int max_depth;             /* nesting: deeper is 400 too_deep (at most 64) */
	size_t max_members;        /* members of one object: more is 400 too_many_members */
	size_t max_elements;       /* elements of an array no cap names: more is 413 array_too_long */
	const rt_json_cap *caps;
	int ncaps;
	int check_numbers;         /* an integer outside int64 or a real that overflows a double:
				    * 400 number_out_of_range (jansson refuses it without a name) */
	int budget;                /* the tree's cost over rt_json_budget(len): 413 body_too_complex */
	const char *root_key;      /* the top-level member whose string value is copied to root_val */
	char *root_val;            /* (root_cap bytes; "" when absent, escaped or too long) */
	size_t root_cap;
} rt_json_rules;

typedef struct rt_json_fail {
	int status;                /* 400 or 413 */
	const char *code;          /* too_deep, too_many_members, array_too_long,
				    * number_out_of_range, body_too_complex */
	char field[64];            /* the member the limit was hit in ("" at the top level) */
	char msg[336];             /* "'field': what was over which limit" */
} rt_json_fail;

/* rt_json_check is rt_json_scan that also enforces rules (NULL: none) while it walks, stopping
 * at the first limit hit: returns 0, or -EINVAL (400) / -E2BIG (413) with *f (may be NULL)
 * filled. A malformed text is not an error here (jansson says where); the counts in *st are
 * complete only when it returns 0. */
int rt_json_check(const char *buf, size_t len, const char *const *path, size_t min_count,
		  const rt_json_rules *rules, rt_json_stats *st, rt_json_fail *f);

/* rt_json_budget returns the tree bytes a body of decoded size n may cost. */
size_t rt_json_budget(size_t n);

/* rt_json_load parses buf like json_loadb(buf, len, flags) when its estimated tree fits budget.
 * Returns a new reference, or NULL with *status (400 invalid JSON (message as the daemon has
 * always written it: "invalid JSON at line L column C: text", or "invalid JSON: empty body"),
 * 413 over the budget) and a message in err. */
json_t *rt_json_load(const char *buf, size_t len, size_t flags, size_t budget, int *status,
		     char *err, size_t errlen);

/* rt_json_split returns a malloc'd copy of buf[0..len) (NUL-terminated) in which each of the
 * st->nspans spans is a string marker padded with blanks (newlines kept), so jansson parses the
 * copy into a small tree whose positions are the body's. The markers hold a per-call random
 * nonce (written into *nonce) that no client can guess. NULL when out of memory. */
char *rt_json_split(const char *buf, size_t len, const rt_json_stats *st, uint64_t *nonce);

/* rt_json_span_of: the index of the span that v (a value of the tree parsed from the split
 * copy) stands for, or -1 when v is not one of the markers with this nonce. */
int rt_json_span_of(const json_t *v, uint64_t nonce, int nspans);

typedef struct rt_json_iter {
	const char *p, *end;
} rt_json_iter;

/* rt_json_iter_init starts reading span sp of buf (the original text, not the split copy). */
void rt_json_iter_init(rt_json_iter *it, const char *buf, const rt_json_span *sp);
/* rt_json_iter_next stores the next number (true 1, false 0) in *v and returns 1, or returns 0
 * at the end; *is_int is set when the number was written as a JSON integer. */
int rt_json_iter_next(rt_json_iter *it, double *v, int *is_int);

typedef struct rt_json_buf {
	char *p;
	size_t len, cap;
	int oom;                   /* an append failed: the buffer is incomplete */
} rt_json_buf;

/* Appending to b (grown by doubling; on failure b->oom is set and later appends do nothing).
 * rt_json_buf_free releases b->p. */
void rt_json_buf_add(rt_json_buf *b, const char *s, size_t n);
void rt_json_put_real(rt_json_buf *b, double v);   /* rt_json_fmt_real's form */
void rt_json_put_int(rt_json_buf *b, int64_t v);
void rt_json_buf_free(rt_json_buf *b);

/* rt_json_fmt_real writes the shortest decimal form of v that reads back as the same double
 * ("0.003", "0.30000000000000004"), looking like a real ("2.0", "1e20", "1e-7"); non-finite
 * values (which JSON cannot spell) as "null". Returns buf (cap >= 32 holds every value). */
const char *rt_json_fmt_real(double v, char *buf, size_t cap);

/* rt_json_dumps serializes v as json_dumps(v, JSON_COMPACT) does (keys in stored order, the
 * same string escapes), except that reals are in rt_json_fmt_real's form; indent > 0 puts
 * each member and element on its own line, indented by that many spaces per level ("key":
 * value). Returns malloc'd text (caller frees), or NULL when out of memory, when a string is
 * not valid UTF-8, or past 2048 levels of nesting. */
char *rt_json_dumps(const json_t *v, int indent);

#endif

/* tok_jinja_int.h — what the Jinja interpreter's two files share (callers use tok_jinja.h):
 * the syntax tree tok_jinja.c builds and tok_jinja_eval.c walks, and the parse arena. */
#ifndef THAW_TOK_JINJA_INT_H
#define THAW_TOK_JINJA_INT_H
#include <stddef.h>
#include <stdint.h>
#include "runtime/tok/tok_jinja.h"

enum jj_kind {
	/* expressions */
	JN_STR, JN_INT, JN_FLOAT, JN_BOOL, JN_NONE,
	JN_NAME,   /* s */
	JN_LIST,   /* kids */
	JN_TUPLE,  /* kids */
	JN_DICT,   /* kids: key, value, key, value ... */
	JN_ATTR,   /* a.s */
	JN_ITEM,   /* a[b] */
	JN_SLICE,  /* a[b:c:d], any of b c d may be NULL */
	JN_CALL,   /* a(kids), kw[i] names keyword arguments (NULL: positional) */
	JN_FILTER, /* a | s(kids); a NULL in a filter block */
	JN_TEST,   /* a is [not] s(kids); op = 1 for "is not" */
	JN_NEG, JN_POS, JN_NOT,
	JN_BIN,    /* a op b, op one of the JO_ */
	JN_AND, JN_OR,
	JN_CMP,    /* a op b (chains nest: a < b < c is (a < b) and (b < c)) */
	JN_COND,   /* a if b else c (c NULL: undefined) */
	/* statements */
	JS_BLOCK,  /* kids: statements */
	JS_TEXT,   /* s */
	JS_OUT,    /* {{ a }} */
	JS_IF,     /* if a: b else c (c NULL or a block) */
	JS_FOR,    /* for a in b [if e]: c else d */
	JS_SET,    /* a = b, or a = output of block c */
	JS_MACRO,  /* macro s(kids: JN_NAME with a = default or NULL): c */
	JS_CALLBLOCK, /* call(kids params) a: c */
	JS_FILTERBLOCK, /* filter a (a JN_FILTER chain whose innermost a is NULL): c */
	JS_BREAK, JS_CONTINUE,
};

enum jj_op {
	JO_ADD, JO_SUB, JO_MUL, JO_DIV, JO_FLOORDIV, JO_MOD, JO_POW, JO_CONCAT,
	JO_EQ, JO_NE, JO_LT, JO_LE, JO_GT, JO_GE, JO_IN, JO_NOTIN,
};

typedef struct jj_node jj_node;
struct jj_node {
	uint8_t kind, op;
	int line, depth; /* depth: of the subtree, bounded by TOK_JINJA_MAX_DEPTH */
	jj_node *a, *b, *c, *d, *e;
	jj_node **kids;
	const char **kw;
	size_t n;
	const char *s; /* NUL-terminated; slen bytes (strings may hold NUL) */
	size_t slen;
	int64_t i;
	double f;
};

/* a bump allocator: blocks from malloc, freed together; a budget bounds the total */
typedef struct jj_blk jj_blk;
typedef struct {
	jj_blk *head;
	size_t used, budget;
	int over; /* an allocation failed on the budget */
} jj_arena;
/* jj_alloc returns zeroed memory of n bytes (8-aligned) or NULL past the budget / out of
 * memory; jj_arena_oom says which. */
void *jj_alloc(jj_arena *a, size_t n);
int jj_arena_oom(const jj_arena *a);
void jj_arena_free(jj_arena *a);

struct tok_jinja {
	jj_arena arena;
	jj_node *root;
};

/* tok_jinja_eval.c: the UTF-8 code point at s[i] (n bytes): its length (1 for an invalid byte,
 * taken as that byte). */
size_t jj_cp(const char *s, size_t n, size_t i, uint32_t *cp);
#endif

/* test_json.c — runtime/base/rt_json.c against jansson itself: the scan's counts and cost bound,
 * which arrays become spans (valid numeric JSON only, at the given path), the split copy
 * (same length, same line/column of errors, markers found only with the nonce), the span
 * reader's values against json_number_value, rt_json_put_real/_int (shortest reals that read
 * back exactly), and rt_json_dumps against json_dumps. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <malloc.h>
#include <jansson.h>
#include "tests/t.h"
#include "runtime/base/rt_json.h"

static const char *const data_path[] = {"inputs", "*", "data", NULL};

static void test_scan_counts(void)
{
	const char *s = "{\"a\": [1, -2.5e3, true, null, \"x\\\"y\"], \"b\": {\"c\": {}}}";
	rt_json_stats st;
	rt_json_scan(s, strlen(s), NULL, 0, &st);
	T_EQ_INT(st.numbers, 2);
	T_EQ_INT(st.literals, 2);
	T_EQ_INT(st.strings, 4);   /* keys a, b, c and "x\"y" */
	T_EQ_INT(st.arrays, 1);
	T_EQ_INT(st.objects, 3);
	T_EQ_INT(st.max_depth, 3);
	T_EQ_INT(st.nspans, 0);
}

static size_t heap_used(void)
{
	struct mallinfo2 m = mallinfo2();
	return m.uordblks + m.hblkhd;
}

/* the estimate is at least what jansson allocates, and not wildly above it */
static void test_cost_bounds_jansson(void)
{
	if (T_UNDER_ASAN)
		T_SKIP("ASan's allocator does not report through mallinfo2");
	static const char *const items[] = {"1", "0.25", "\"abc\"", "[]", "{}", "{\"k\":1}", "[1,2,3]",
					    "true", "{\"a\":[1,{\"b\":\"cc\"}],\"d\":null}"};
	for (size_t i = 0; i < sizeof items / sizeof items[0]; i++) {
		size_t n = 20000, il = strlen(items[i]), l = 0;
		char *b = malloc(n * (il + 1) + 2);
		b[l++] = '[';
		for (size_t k = 0; k < n; k++) {
			memcpy(b + l, items[i], il);
			l += il;
			b[l++] = k + 1 < n ? ',' : ']';
		}
		rt_json_stats st;
		rt_json_scan(b, l, NULL, 0, &st);
		size_t u0 = heap_used();
		json_t *v = json_loadb(b, l, 0, NULL);
		size_t used = heap_used() - u0;
		T_CHECK(v != NULL);
		T_CHECK(st.cost >= used);
		T_CHECK(st.cost <= used * 2 + 4096);
		if (st.cost < used || st.cost > used * 2 + 4096)
			fprintf(stderr, "  %s: estimate %zu, jansson %zu\n", items[i], st.cost, used);
		json_decref(v);
		free(b);
	}
}

static void test_load_budget(void)
{
	char err[512];
	int status = 0;
	size_t n = 1 << 20;
	char *b = malloc(2 * n + 2);
	b[0] = '[';
	for (size_t k = 0; k < n; k++)
		memcpy(b + 1 + 2 * k, k + 1 < n ? "1," : "1]", 2);
	T_CHECK(rt_json_load(b, 2 * n + 1, 0, rt_json_budget(2 * n + 1), &status, err, sizeof err) == NULL);
	T_EQ_INT(status, 413);
	T_CHECK(strstr(err, "MiB") != NULL);
	json_t *v = rt_json_load(b, 2 * n + 1, 0, (size_t)1 << 30, &status, err, sizeof err);
	T_EQ_INT((long)json_array_size(v), (long)n);
	json_decref(v);
	T_CHECK(rt_json_load("[1,", 3, 0, rt_json_budget(3), &status, err, sizeof err) == NULL);
	T_EQ_INT(status, 400);
	T_CHECK(strncmp(err, "invalid JSON at line 1 column", 29) == 0);
	T_CHECK(rt_json_load("", 0, 0, rt_json_budget(0), &status, err, sizeof err) == NULL);
	T_EQ_STR(err, "invalid JSON: empty body");
	T_EQ_INT(rt_json_budget(0), RT_JSON_FLOOR);
	T_EQ_INT(rt_json_budget(100 << 20), (size_t)RT_JSON_AMP * (100 << 20));
	free(b);
}

/* a V2-like document whose inputs[0].data is text data */
static char *doc(const char *data, const char *tail)
{
	size_t cap = 2 * strlen(data) + strlen(tail) + 128;
	char *b = malloc(cap);
	snprintf(b, cap, "{\"inputs\": [{\"name\": \"x\", \"data\": %s}],\n \"outputs\": [{\"data\": %s}]%s}",
		 data, data, tail);
	return b;
}

static char *many(size_t n, const char *item, const char *sep)
{
	size_t il = strlen(item), sl = strlen(sep), l = 0;
	char *b = malloc(n * (il + sl) + 3);
	b[l++] = '[';
	for (size_t k = 0; k < n; k++) {
		if (k) {
			memcpy(b + l, sep, sl);
			l += sl;
		}
		memcpy(b + l, item, il);
		l += il;
	}
	b[l++] = ']';
	b[l] = 0;
	return b;
}

static void test_spans(void)
{
	/* found at inputs[*].data only (not outputs[0].data), with its count */
	char *d = many(300, "1.5", ", "), *s = doc(d, "");
	rt_json_stats st;
	rt_json_scan(s, strlen(s), data_path, 256, &st);
	T_EQ_INT(st.nspans, 1);
	T_EQ_INT(st.spans[0].count, 300);
	T_EQ_INT(st.spans[0].depth, 1);
	T_CHECK(s[st.spans[0].off] == '[' && s[st.spans[0].off + st.spans[0].len - 1] == ']');
	T_EQ_INT(st.numbers, 300);   /* the outputs' copy counts as ordinary values */
	free(s);
	/* below min_count, or not valid numeric JSON: no span */
	static const char *const bad[] = {"01", "1.", ".5", "-", "1e", "1e999", "\"x\"", "null",
					  "12345678901234567890", "1.5x", "+1", "{}", "tru"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		free(d);
		d = many(300, "2", ",");
		size_t l = strlen(d);
		char *x = malloc(l + 64);
		snprintf(x, l + 64, "[%s,%s", bad[i], d + 1);   /* the bad value first */
		s = doc(x, "");
		rt_json_scan(s, strlen(s), data_path, 256, &st);
		T_EQ_INT(st.nspans, 0);
		if (st.nspans)
			fprintf(stderr, "  '%s' made a span\n", bad[i]);
		free(x);
		free(s);
	}
	free(d);
	/* a big array where the text is already malformed (no value may stand there): jansson
	 * must see the array itself, to fail as it always did */
	static const char *const malformed[] = {
		"{\"inputs\":[{\"data\":1,  %s}]}", "{\"inputs\":[{\"data\" %s}]}",
		"{\"inputs\":[{\"data\":1 %s}]}", "{\"inputs\":[1 %s]}", "%s", "{\"inputs\":[{%s}]}",
		"{\"inputs\":[{\"data\"::%s}]}", "{\"inputs\":[{\"data\":,%s}]}",
	};
	d = many(300, "2", ",");
	for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++) {
		char *x = malloc(strlen(d) + 64);
		sprintf(x, malformed[i], d);
		rt_json_scan(x, strlen(x), data_path, 256, &st);
		T_EQ_INT(st.nspans, 0);
		free(x);
	}
	free(d);
	d = many(100, "1", ",");
	s = doc(d, "");
	rt_json_scan(s, strlen(s), data_path, 256, &st);
	T_EQ_INT(st.nspans, 0);
	free(s);
	free(d);
	/* nesting, booleans, a trailing comma (not a span), a line break every 10 values */
	d = many(100, "[true,false,3]", ",");
	s = doc(d, "");
	rt_json_scan(s, strlen(s), data_path, 256, &st);
	T_EQ_INT(st.nspans, 1);
	T_EQ_INT(st.spans[0].count, 300);
	T_EQ_INT(st.spans[0].depth, 2);
	free(s);
	free(d);
	d = many(300, "1", ",");
	d[strlen(d) - 1] = ',';
	char *x = malloc(strlen(d) + 3);
	sprintf(x, "%s]", d);
	s = doc(x, "");
	rt_json_scan(s, strlen(s), data_path, 256, &st);
	T_EQ_INT(st.nspans, 0);
	free(s);
	free(x);
	free(d);
}

/* the split copy parses to the same tree but for the markers, and a syntax error after a
 * span is reported at the same line and column as in the original */
static void test_split(void)
{
	/* a line break after every 10th value */
	char *d = malloc(16 * 1000 + 8);
	size_t l = 0;
	d[l++] = '[';
	for (int k = 0; k < 1000; k++)
		l += (size_t)sprintf(d + l, "%s0.%d", k == 0 ? "" : k % 10 ? ", " : ",\n   ", k);
	d[l++] = ']';
	d[l] = 0;
	char *s = doc(d, ", \"p\": 1");
	rt_json_stats st;
	rt_json_scan(s, strlen(s), data_path, 256, &st);
	T_EQ_INT(st.nspans, 1);
	uint64_t nonce;
	char *c = rt_json_split(s, strlen(s), &st, &nonce);
	T_EQ_INT(strlen(c), strlen(s));
	json_t *a = json_loads(s, 0, NULL), *b = json_loads(c, 0, NULL);
	T_CHECK(a && b);
	json_t *mk = json_object_get(json_array_get(json_object_get(b, "inputs"), 0), "data");
	T_EQ_INT(rt_json_span_of(mk, nonce, st.nspans), 0);
	T_EQ_INT(rt_json_span_of(mk, nonce ^ 1, st.nspans), -1);
	T_EQ_INT(rt_json_span_of(json_object_get(b, "p"), nonce, st.nspans), -1);
	/* the rest equal */
	json_object_del(json_array_get(json_object_get(a, "inputs"), 0), "data");
	json_object_del(json_array_get(json_object_get(b, "inputs"), 0), "data");
	T_CHECK(json_equal(a, b));
	/* the span's values equal jansson's */
	rt_json_iter it;
	double v;
	int is_int;
	size_t k = 0, bad = 0;
	rt_json_iter_init(&it, s, &st.spans[0]);
	json_t *ref = json_loads(d, 0, NULL);
	while (rt_json_iter_next(&it, &v, &is_int))
		bad += v != json_number_value(json_array_get(ref, k++));
	T_EQ_INT(k, 1000);
	T_EQ_INT(bad, 0);
	json_decref(ref);
	json_decref(a);
	json_decref(b);
	free(c);
	free(s);
	/* error positions */
	s = doc(d, ",\n \"q\": [1,]");
	json_error_t e1, e2;
	rt_json_scan(s, strlen(s), data_path, 256, &st);
	T_EQ_INT(st.nspans, 1);
	c = rt_json_split(s, strlen(s), &st, &nonce);
	T_CHECK(json_loads(s, 0, &e1) == NULL && json_loads(c, 0, &e2) == NULL);
	T_EQ_INT(e1.line, e2.line);
	T_EQ_INT(e1.column, e2.column);
	T_EQ_STR(e1.text, e2.text);
	free(c);
	free(s);
	free(d);
}

static void test_iter_values(void)
{
	const char *t = "[[0,-0,1,-17,true,false],[123456789012345678,-123456789012345678,0.5,"
			"1e-5,-2.5E+3,3.14159265358979323846,1e99,7E2,4.9e-99,0.1]]";
	rt_json_stats st;
	char *s = malloc(strlen(t) + 64);
	sprintf(s, "{\"inputs\":[{\"data\":%s}]}", t);
	rt_json_scan(s, strlen(s), data_path, 1, &st);
	T_EQ_INT(st.nspans, 1);
	json_t *ref = json_loads(t, 0, NULL);
	double want[32];
	size_t n = 0;
	for (size_t r = 0; r < 2; r++) {
		json_t *row = json_array_get(ref, r);
		for (size_t k = 0; k < json_array_size(row); k++) {
			json_t *x = json_array_get(row, k);
			want[n++] = json_is_boolean(x) ? json_is_true(x) : json_number_value(x);
		}
	}
	rt_json_iter it;
	double v;
	int is_int;
	size_t k = 0;
	rt_json_iter_init(&it, s, &st.spans[0]);
	while (rt_json_iter_next(&it, &v, &is_int)) {
		T_CHECK(k < n && memcmp(&v, &want[k], sizeof v) == 0);   /* -0 too */
		k++;
	}
	T_EQ_INT(k, n);
	json_decref(ref);
	free(s);
}

static void test_put_numbers(void)
{
	rt_json_buf b = {0};
	srand(7);
	size_t bad = 0;
	for (int i = 0; i < 20000; i++) {
		double v;
		switch (i % 5) {
		case 0: v = (double)rand() / RAND_MAX; break;
		case 1: v = ldexp((double)rand(), rand() % 600 - 300); break;
		case 2: v = (double)(rand() % 1000); break;
		case 3: v = -(double)rand() * 1e-7; break;
		default: v = (float)((double)rand() / 3.0); break;
		}
		b.len = 0;
		rt_json_put_real(&b, v);
		/* jansson reads it back as the same real, and it is never longer than jansson's */
		json_t *r = json_real(v), *back = json_loads(b.p, JSON_DECODE_ANY, NULL);
		char *jt = json_dumps(r, JSON_ENCODE_ANY | JSON_COMPACT);
		int ok = back && json_is_real(back) && json_real_value(back) == v && strlen(b.p) <= strlen(jt);
		bad += !ok;
		if (!ok && bad < 5)
			fprintf(stderr, "  %.17g: %s vs jansson %s\n", v, b.p, jt);
		free(jt);
		json_decref(r);
		json_decref(back);
	}
	T_EQ_INT(bad, 0);
	/* the shortest form, written as jansson spells exponents */
	static const struct { double v; const char *want; } special[] = {
		{0.0, "0.0"}, {-0.0, "-0.0"}, {1.0, "1.0"}, {1e20, "1e20"}, {1e21, "1e21"}, {1e-5, "1e-5"},
		{1e-7, "1e-7"}, {123456789012345678.0, "1.2345678901234568e17"}, {1e308, "1e308"},
		{4.9e-324, "5e-324"}, {-2.5e-300, "-2.5e-300"}, {0.003, "0.003"}, {0.1, "0.1"},
		{0.1 + 0.2, "0.30000000000000004"}, {10, "10.0"}, {2500.5, "2500.5"},
		{1.0 / 3, "0.3333333333333333"}, {-0.0625, "-0.0625"},
		{1.7976931348623157e308, "1.7976931348623157e308"}, {INFINITY, "null"},
	};
	for (size_t i = 0; i < sizeof special / sizeof special[0]; i++) {
		char fb[40];
		b.len = 0;
		rt_json_put_real(&b, special[i].v);
		T_EQ_STR(b.p, special[i].want);
		T_EQ_STR(rt_json_fmt_real(special[i].v, fb, sizeof fb), special[i].want);
	}
	b.len = 0;
	rt_json_put_int(&b, INT64_MIN);
	T_EQ_STR(b.p, "-9223372036854775808");
	b.len = 0;
	rt_json_put_real(&b, NAN);
	T_EQ_STR(b.p, "null");
	rt_json_buf_free(&b);
}

/* rt_json_check: each rule refuses just past its limit, names the field and stops; below every
 * limit it gives rt_json_scan's counts and cost */
static void test_check_rules(void)
{
	static const rt_json_cap caps[] = {{"messages", 3}, {"stop", 2}};
	char model[8];
	const rt_json_rules r = {4, 3, 5, caps, 2, 1, 1, "model", model, sizeof model};
	static const struct {
		const char *text;
		int rc, status;
		const char *code, *field;
	} cases[] = {
		{"{\"model\":\"m\",\"messages\":[{\"a\":1},{},{}],\"stop\":[\"x\",\"y\"]}", 0, 0, NULL, NULL},
		{"{\"messages\":[1,2,3,4]}", -EINVAL, 400, "array_too_long", "messages"},
		/* nested arrays inherit the member's cap; other members get max_elements, 413 */
		{"{\"messages\":[[1,2,3,4]]}", -EINVAL, 400, "array_too_long", "messages"},
		{"{\"prompt\":[1,2,3,4,5]}", 0, 0, NULL, NULL},
		{"{\"prompt\":[1,2,3,4,5,6]}", -E2BIG, 413, "array_too_long", "prompt"},
		{"[1,2,3,4,5,6]", -E2BIG, 413, "array_too_long", ""},
		/* members are counted once each (key and value are one member) */
		{"{\"o\":{\"a\":1,\"b\":2,\"c\":3}}", 0, 0, NULL, NULL},
		{"{\"o\":{\"a\":1,\"b\":2,\"c\":3,\"d\":4}}", -EINVAL, 400, "too_many_members", "o"},
		{"{\"a\":[[[1]]]}", 0, 0, NULL, NULL},
		{"{\"a\":[[[[1]]]]}", -EINVAL, 400, "too_deep", "a"},
		{"{\"seed\":9223372036854775807}", 0, 0, NULL, NULL},
		{"{\"seed\":9223372036854775808}", -EINVAL, 400, "number_out_of_range", "seed"},
		{"{\"t\":[1e308,-1e309]}", -EINVAL, 400, "number_out_of_range", "t"},
		/* malformed text is jansson's to report */
		{"}}]]{\"a\":", 0, 0, NULL, NULL},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		rt_json_stats st, plain;
		rt_json_fail f;
		memset(&f, 0, sizeof f);
		int rc = rt_json_check(cases[i].text, strlen(cases[i].text), NULL, 0, &r, &st, &f);
		T_EQ_INT(rc, cases[i].rc);
		if (rc != cases[i].rc)
			fprintf(stderr, "  case %zu: %s -> %d %s\n", i, cases[i].text, rc, f.msg);
		if (rc == 0) {
			rt_json_scan(cases[i].text, strlen(cases[i].text), NULL, 0, &plain);
			T_EQ_INT(st.cost, plain.cost);
			T_EQ_INT(st.numbers + st.strings + st.arrays + st.objects,
				 plain.numbers + plain.strings + plain.arrays + plain.objects);
			continue;
		}
		T_EQ_INT(f.status, cases[i].status);
		T_EQ_STR(f.code, cases[i].code);
		T_EQ_STR(f.field, cases[i].field);
		if (cases[i].field[0]) {   /* the message starts with the field */
			char want[80];
			snprintf(want, sizeof want, "'%s': ", cases[i].field);
			T_CHECK(strncmp(f.msg, want, strlen(want)) == 0);
		}
	}
	/* the top-level string member only, plain and fitting */
	static const struct { const char *text, *want; } roots[] = {
		{"{\"model\":\"abc\"}", "abc"}, {"{\"x\":{\"model\":\"abc\"}}", ""},
		{"{\"model\":\"a\\u0062c\"}", ""}, {"{\"model\":\"abcdefgh\"}", ""},
		{"{\"model\":1}", ""}, {"[\"model\",\"abc\"]", ""}};
	for (size_t i = 0; i < sizeof roots / sizeof roots[0]; i++) {
		rt_json_stats st;
		strcpy(model, "junk");
		T_EQ_INT(rt_json_check(roots[i].text, strlen(roots[i].text), NULL, 0, &r, &st, NULL), 0);
		T_EQ_STR(model, roots[i].want);
	}
}

/* the one budget: a tree over max(RT_JSON_AMP x the body, RT_JSON_FLOOR) is 413
 * body_too_complex, found as the walk passes it, whatever the other rules */
static void test_check_budget(void)
{
	const rt_json_rules r = {.budget = 1};
	rt_json_stats st;
	rt_json_fail f;
	size_t per = 16 + 136;   /* an empty array in an array (its slot), by the cost model */
	size_t n = RT_JSON_FLOOR / per + 16;
	char *b = many(n, "[]", ",");
	T_EQ_INT(rt_json_check(b, strlen(b), NULL, 0, &r, &st, &f), -E2BIG);
	T_EQ_INT(f.status, 413);
	T_EQ_STR(f.code, "body_too_complex");
	T_CHECK(strstr(f.msg, "at most 3 times its size") != NULL);
	free(b);
	b = many(RT_JSON_FLOOR / per / 2, "[]", ",");
	T_EQ_INT(rt_json_check(b, strlen(b), NULL, 0, &r, &st, &f), 0);
	T_CHECK(st.cost <= rt_json_budget(strlen(b)));
	free(b);
	/* 128k small token ids (an OpenAI prompt at a 128k context) fit the floor */
	b = many(131072, "31999", ",");
	T_EQ_INT(rt_json_check(b, strlen(b), NULL, 0, &r, &st, &f), 0);
	free(b);
}

/* rt_json_dumps writes what json_dumps(JSON_COMPACT) writes, but reals in their shortest form */
static void test_dumps(void)
{
	const char *in = "{\"s\":\"plain\",\"e\":\"q\\\"b\\\\s\\/\\n\\t\\u0001\\u001f\\u007f\\u00e9\\u2028\\ud83d\\ude00\\u0000z\","
		"\"n\":-7,\"big\":9223372036854775807,\"t\":true,\"f\":false,\"z\":null,"
		"\"a\":[1,[],{},[[{\"k\":\"v\"}]]],\"\\u00fc\\\"key\":{}}";
	json_t *v = json_loads(in, JSON_ALLOW_NUL, NULL);
	T_CHECK(v != NULL);
	if (!v)
		return;
	char *mine = rt_json_dumps(v, 0), *theirs = json_dumps(v, JSON_COMPACT);
	T_CHECK(mine && theirs);
	if (mine && theirs)
		T_EQ_STR(mine, theirs);
	free(mine);
	free(theirs);
	json_decref(v);
	/* reals: the shortest form, also nested; the text reads back equal */
	v = json_pack("{s:f,s:[f,f,i],s:{s:f}}", "lr", 0.003, "a", 0.1 + 0.2, 2.0, 3, "o", "x", 1e-7);
	mine = rt_json_dumps(v, 0);
	T_EQ_STR(mine, "{\"lr\":0.003,\"a\":[0.30000000000000004,2.0,3],\"o\":{\"x\":1e-7}}");
	json_t *back = mine ? json_loads(mine, 0, NULL) : NULL;
	T_CHECK(back && json_equal(back, v));
	json_decref(back);
	free(mine);
	/* indented */
	mine = rt_json_dumps(v, 2);
	const char *pre = "{\n  \"lr\": 0.003,\n  \"a\": [\n    0.30000000000000004,";
	T_CHECK(mine && strncmp(mine, pre, strlen(pre)) == 0);
	free(mine);
	json_decref(v);
	/* a string that is not UTF-8 (only the unchecked constructors make one): NULL, as jansson */
	v = json_object();
	json_object_set_new_nocheck(v, "k", json_stringn_nocheck("\xff\xfe", 2));
	T_CHECK(rt_json_dumps(v, 0) == NULL);
	json_decref(v);
	v = json_integer(5);
	mine = rt_json_dumps(v, 0);
	T_EQ_STR(mine, "5");
	free(mine);
	json_decref(v);
}

void t_main(void)
{
	T_RUN(test_scan_counts);
	T_RUN(test_cost_bounds_jansson);
	T_RUN(test_load_budget);
	T_RUN(test_spans);
	T_RUN(test_split);
	T_RUN(test_iter_values);
	T_RUN(test_put_numbers);
	T_RUN(test_dumps);
	T_RUN(test_check_rules);
	T_RUN(test_check_budget);
}

/* fuzz_json.c — libFuzzer target for runtime/base/rt_json.c, differential against jansson: for any
 * text, the split copy (big numeric arrays at inputs[*].data replaced by markers) must parse
 * exactly when the text does, fail with the same line, column and message when it does not,
 * and give the same tree once each marker is read back as its span's numbers (same count, same
 * values bit for bit). Under rules (rt_json_check), a text that passes counts exactly what the
 * plain scan counts, and a refusal carries a status, a code and a message. A difference is an
 * abort. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "runtime/base/rt_json.h"

static const char *const path[] = {"inputs", "*", "data", NULL};

/* appends the numbers of a (nested arrays of numbers and booleans) to *v; -1 if other */
static int flat(const json_t *a, double **v, size_t *n, size_t *cap)
{
	if (json_is_array(a)) {
		size_t i;
		const json_t *x;
		json_array_foreach(a, i, x)
			if (flat(x, v, n, cap) < 0)
				return -1;
		return 0;
	}
	if (!json_is_number(a) && !json_is_boolean(a))
		return -1;
	if (*n == *cap) {
		*cap = *cap ? *cap * 2 : 64;
		*v = realloc(*v, *cap * sizeof **v);
		if (!*v)
			abort();
	}
	(*v)[(*n)++] = json_is_boolean(a) ? json_is_true(a) : json_number_value(a);
	return 0;
}

/* a (from the text) and b (from the split copy) agree, markers read from buf */
static int same(const json_t *a, const json_t *b, const char *buf, const rt_json_stats *st,
		uint64_t nonce)
{
	int sp = rt_json_span_of(b, nonce, st->nspans);
	if (sp >= 0) {
		double *va = NULL, v;
		size_t na = 0, cap = 0, k = 0;
		int is_int, ok = json_is_array(a) && flat(a, &va, &na, &cap) == 0 &&
				 na == st->spans[sp].count;
		rt_json_iter it;
		rt_json_iter_init(&it, buf, &st->spans[sp]);
		while (ok && rt_json_iter_next(&it, &v, &is_int))
			ok = k < na && memcmp(&v, &va[k++], sizeof v) == 0;
		free(va);
		return ok && k == na;
	}
	if (json_typeof(a) != json_typeof(b))
		return 0;
	if (json_is_array(a)) {
		if (json_array_size(a) != json_array_size(b))
			return 0;
		for (size_t i = 0; i < json_array_size(a); i++)
			if (!same(json_array_get(a, i), json_array_get(b, i), buf, st, nonce))
				return 0;
		return 1;
	}
	if (json_is_object(a)) {
		const char *k;
		const json_t *x;
		if (json_object_size(a) != json_object_size(b))
			return 0;
		json_object_foreach((json_t *)a, k, x) {
			const json_t *y = json_object_get(b, k);
			if (!y || !same(x, y, buf, st, nonce))
				return 0;
		}
		return 1;
	}
	return json_equal(a, b);
}

/* rt_json_check under rules: passing, it counts what rt_json_scan counts; refusing, it says
 * which limit with a fitting status; the lifted root string is within its buffer */
static void check_rules(const char *text, size_t size, const rt_json_stats *plain)
{
	static const rt_json_cap caps[] = {{"messages", 4}, {"stop", 2}};
	char model[8];
	const rt_json_rules r = {6, 8, 64, caps, 2, 1, 1, "model", model, sizeof model};
	rt_json_stats st;
	rt_json_fail f;
	memset(&f, 0, sizeof f);
	int rc = rt_json_check(text, size, path, 2, &r, &st, &f);
	if (strlen(model) >= sizeof model)
		abort();
	if (rc == 0) {
		if (st.cost != plain->cost || st.numbers != plain->numbers ||
		    st.strings != plain->strings || st.arrays != plain->arrays ||
		    st.objects != plain->objects || st.nspans != plain->nspans)
			abort();
		return;
	}
	if ((rc != -EINVAL && rc != -E2BIG) || (f.status != 400 && f.status != 413) || !f.code ||
	    !f.msg[0] || (rc == -E2BIG) != (f.status == 413))
		abort();
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	const char *text = (const char *)data;
	rt_json_stats st;
	rt_json_scan(text, size, path, 2, &st);
	check_rules(text, size, &st);
	if (!st.nspans)
		return 0;
	json_error_t e1, e2;
	uint64_t nonce;
	char *copy = rt_json_split(text, size, &st, &nonce);
	if (!copy)
		return 0;
	json_t *a = json_loadb(text, size, JSON_REJECT_DUPLICATES, &e1);
	json_t *b = json_loadb(copy, size, JSON_REJECT_DUPLICATES, &e2);
	if (!a != !b)
		abort();
	if (!a && (e1.line != e2.line || e1.column != e2.column || strcmp(e1.text, e2.text) != 0))
		abort();
	if (a && !same(a, b, text, &st, nonce))
		abort();
	json_decref(a);
	json_decref(b);
	free(copy);
	return 0;
}

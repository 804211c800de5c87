/* test_jinja_diff.c — the chat template interpreter (runtime/tok/tok_jinja.h) against Python's
 * Jinja2 on random templates: jinja_diff.py generates seeded random expressions (literals,
 * context values, arithmetic, comparisons, filters, methods, tests, conditionals), loops and
 * namespace updates, and renders them with Jinja2 configured as transformers configures it;
 * every one must render to the same text here, or be refused here too. Skips when python3 with
 * jinja2 (Debian's python3-jinja2, from scripts/install-deps.sh) is not installed. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "runtime/tok/tok_jinja.h"
#include "tests/t.h"

static void test_jinja_random_vs_python(void)
{
	if (t_sh(NULL, 0, "python3 -c 'import jinja2' >/dev/null 2>&1") != 0)
		T_SKIP("python3 with jinja2 is not installed");
	static const int seeds[] = {1, 2, 3};
	int total = 0, same_ok = 0, same_err = 0, bad = 0;
	for (size_t s = 0; s < sizeof seeds / sizeof seeds[0]; s++) {
		char path[600];
		snprintf(path, sizeof path, "%s/diff%d.json", t_tmpdir(), seeds[s]);
		T_EQ_INT(t_sh(NULL, 0, "python3 '%s/tests/runtime/tok/jinja_diff.py' %d 2000 '%s'", t_src(), seeds[s], path), 0);
		json_error_t je;
		json_t *doc = json_load_file(path, 0, &je);
		T_CHECK(doc != NULL);
		if (!doc)
			continue;
		json_t *ctx = json_object_get(doc, "ctx"), *c;
		size_t i;
		json_array_foreach(json_object_get(doc, "cases"), i, c) {
			json_t *src = json_object_get(c, "template");
			int pok = json_is_true(json_object_get(c, "ok"));
			const char *pout = json_string_value(json_object_get(c, pok ? "out" : "err"));
			tok_jinja *t = NULL;
			char err[300] = "", *out = NULL;
			size_t len = 0;
			int rc = tok_jinja_parse(&t, json_string_value(src), json_string_length(src), err, sizeof err);
			if (!rc)
				rc = tok_jinja_render(t, ctx, NULL, &out, &len, err, sizeof err);
			tok_jinja_free(t);
			total++;
			if (!rc && pok && len == json_string_length(json_object_get(c, "out")) && !memcmp(out, pout, len)) {
				same_ok++;
			} else if (rc && !pok) {
				same_err++;
			} else {
				if (++bad <= 10)
					fprintf(stderr, "  %s\n    python %s: %.200s\n    thaw   %s: %.200s\n", json_string_value(src),
						pok ? "ok" : "error", pout, rc ? "error" : "ok", rc ? err : out);
			}
			free(out);
		}
		json_decref(doc);
	}
	fprintf(stderr, "  %d random templates: %d rendered as Python renders them, %d refused as Python refuses them, %d differ\n",
		total, same_ok, same_err, bad);
	T_EQ_INT(total, 6000);
	T_EQ_INT(bad, 0);
	T_CHECK(same_ok > total / 2);
}

void t_main(void)
{
	T_RUN(test_jinja_random_vs_python);
}

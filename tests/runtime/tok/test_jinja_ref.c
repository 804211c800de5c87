/* test_jinja_ref.c — the chat template interpreter (runtime/tok/tok_jinja.h) against an
 * independent implementation: every real template in tests/data/tok/templates/ (index.json: 97
 * models' shipped chat templates) over every conversation of conversations.json (system,
 * multi-turn, generation prompt on and off, whitespace and Unicode, tools, tool calls and tool
 * results in both argument forms, content as text parts, reasoning content, template variables
 * such as enable_thinking and date_string), rendered by thaw and by node with @huggingface/jinja (the
 * implementation transformers.js uses for apply_chat_template; installed by
 * scripts/install-npm-test-deps.sh). Outputs must be equal byte for byte, and a conversation a
 * template refuses (raise_exception) must be refused by both.
 *
 * Where @huggingface/jinja itself differs from Python's Jinja2 (the renderer transformers uses),
 * python_cases.json holds the case with the output Python Jinja2 gives, checked by hand against
 * Jinja2's documented semantics; those cases are compared with that text instead (see
 * tests/data/README.md for the list and why). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <jansson.h>
#include "runtime/tok/tok_jinja.h"
#include "tests/t.h"

#define NOW 1721952000LL /* 2024-07-26 00:00:00 UTC */

static json_t *load(const char *rel)
{
	char p[1024];
	json_error_t e;
	snprintf(p, sizeof p, "%s/%s", t_src(), rel);
	json_t *j = json_load_file(p, 0, &e);
	if (!j)
		fprintf(stderr, "  %s: %s (line %d)\n", p, e.text, e.line);
	return j;
}

static char *read_rel(const char *rel, size_t *n)
{
	char p[1024];
	snprintf(p, sizeof p, "%s/%s", t_src(), rel);
	return t_read_file(p, n);
}

/* thaw's rendering of one case: 0 and *out, or the error */
static int render(const char *src, size_t n, json_t *ctx, char **out, char *err, size_t errlen)
{
	tok_jinja *t = NULL;
	int rc = tok_jinja_parse(&t, src, n, err, errlen);
	if (rc)
		return rc;
	tok_jinja_opts o = {.fixed_now = 1, .now = NOW};
	rc = tok_jinja_render(t, ctx, &o, out, NULL, err, errlen);
	tok_jinja_free(t);
	return rc;
}

static json_t *context(json_t *tpl_info, json_t *conv)
{
	json_t *ctx = json_object(), *vars = json_object_get(conv, "vars");
	if (vars) /* extra template variables, as apply_chat_template's keyword arguments */
		json_object_update(ctx, vars);
	json_object_set(ctx, "messages", json_object_get(conv, "messages"));
	json_object_set(ctx, "add_generation_prompt", json_object_get(conv, "add_generation_prompt"));
	if (json_object_get(conv, "tools"))
		json_object_set(ctx, "tools", json_object_get(conv, "tools"));
	json_t *b = json_object_get(tpl_info, "bos_token"), *e = json_object_get(tpl_info, "eos_token");
	if (json_is_string(b)) /* transformers passes only the special tokens that are set */
		json_object_set(ctx, "bos_token", b);
	if (json_is_string(e))
		json_object_set(ctx, "eos_token", e);
	return ctx;
}

/* thaw refuses for the reason Python did: the template's raise_exception with the same
 * message (Jinja2's TemplateError), else an error of the template on the data (an undefined
 * value, a type error), not a raise */
static int same_refusal(const char *mine, const char *py)
{
	static const char te[] = "TemplateError: ";
	const char *r = strstr(mine, "raise_exception: ");
	if (!strncmp(py, te, sizeof te - 1))
		return r && !strcmp(r + 17, py + sizeof te - 1);
	return !r;
}

static void show_diff(const char *what, const char *a, const char *b)
{
	size_t i = 0;
	while (a[i] && a[i] == b[i])
		i++;
	size_t from = i > 60 ? i - 60 : 0;
	fprintf(stderr, "  %s: differ at byte %zu\n    thaw: \"%.120s\"\n    ref:  \"%.120s\"\n", what, i, a + from, b + from);
}

static void test_jinja_real_templates_vs_hf_jinja(void)
{
	char nm[1024], probe[1100];
	snprintf(nm, sizeof nm, "%s/build/node/node_modules", t_src());
	snprintf(probe, sizeof probe, "%s/@huggingface/jinja/package.json", nm);
	FILE *pf = fopen(probe, "r");
	if (!pf)
		T_SKIP("@huggingface/jinja is not installed in build/node (scripts/install-npm-test-deps.sh)");
	fclose(pf);
	if (t_sh(NULL, 0, "node --version >/dev/null 2>&1") != 0)
		T_SKIP("node is not installed");
	setenv("TZ", "UTC", 1);
	tzset();
	json_t *index = load("tests/data/tok/templates/index.json");
	json_t *convs = load("tests/data/tok/templates/conversations.json");
	json_t *pyc = load("tests/data/tok/templates/python_cases.json");
	T_CHECK(index && convs && pyc);
	if (!index || !convs || !pyc)
		goto out;
	T_CHECK(json_array_size(index) >= 90);
	T_CHECK(json_array_size(convs) >= 12);
	size_t nt = json_array_size(index), nc = json_array_size(convs);
	json_t *cases = json_array(), *mine = json_array();
	size_t i, k;
	json_t *ti, *cv;
	json_array_foreach(index, i, ti) {
		char rel[512];
		size_t n;
		snprintf(rel, sizeof rel, "tests/data/tok/templates/%s.jinja", json_string_value(json_object_get(ti, "name")));
		char *src = read_rel(rel, &n);
		T_CHECK(src != NULL);
		json_array_foreach(convs, k, cv) {
			json_t *ctx = context(ti, cv);
			json_array_append_new(cases, json_pack("{s:s%,s:O}", "template", src ? src : "", src ? n : 0, "ctx", ctx));
			char *out = NULL, err[512] = "";
			int rc = src ? render(src, n, ctx, &out, err, sizeof err) : -EINVAL;
			if (rc == 0)
				json_array_append_new(mine, json_pack("{s:b,s:s}", "ok", 1, "out", out));
			else
				json_array_append_new(mine, json_pack("{s:b,s:s,s:i}", "ok", 0, "err", err, "rc", rc));
			free(out);
			json_decref(ctx);
		}
		free(src);
	}
	char cpath[512], rpath[512];
	snprintf(cpath, sizeof cpath, "%s/cases.json", t_tmpdir());
	snprintf(rpath, sizeof rpath, "%s/results.json", t_tmpdir());
	json_t *doc = json_pack("{s:I,s:O}", "now", (json_int_t)NOW, "cases", cases);
	T_EQ_INT(json_dump_file(doc, cpath, 0), 0);
	json_decref(doc);
	T_EQ_INT(t_sh(NULL, 0, "TZ=UTC node '%s/tests/runtime/tok/jinja_ref.js' '%s' '%s' > '%s'", t_src(), nm, cpath, rpath), 0);
	json_error_t je;
	json_t *ref = json_load_file(rpath, 0, &je);
	T_CHECK(ref && json_array_size(ref) == nt * nc);
	if (!ref || json_array_size(ref) != nt * nc)
		goto done;
	json_t *pcs = json_object_get(pyc, "cases");
	T_EQ_INT(json_array_size(pcs), nt * nc);
	if (json_array_size(pcs) != nt * nc)
		goto done;
	int ok_py = 0, err_py = 0, same_node = 0, node_differs = 0, bad = 0;
	for (size_t t = 0; t < nt; t++) {
		const char *tname = json_string_value(json_object_get(json_array_get(index, t), "name"));
		for (size_t c = 0; c < nc; c++) {
			const char *cname = json_string_value(json_object_get(json_array_get(convs, c), "name"));
			json_t *m = json_array_get(mine, t * nc + c), *r = json_array_get(ref, t * nc + c),
			       *pc = json_array_get(pcs, t * nc + c);
			char what[256];
			snprintf(what, sizeof what, "%s / %s", tname, cname);
			T_CHECK(!strcmp(json_string_value(json_object_get(pc, "template")), tname) &&
				!strcmp(json_string_value(json_object_get(pc, "conversation")), cname));
			int mok = json_is_true(json_object_get(m, "ok")), rok = json_is_true(json_object_get(r, "ok"));
			const char *mout = json_string_value(json_object_get(m, mok ? "out" : "err"));
			const char *rout = json_string_value(json_object_get(r, rok ? "out" : "err"));
			const char *pout = json_string_value(json_object_get(pc, "python_output"));
			const char *perr = json_string_value(json_object_get(pc, "python_error"));
			/* thaw against Python's Jinja2 */
			if (pout && mok && !strcmp(mout, pout)) {
				ok_py++;
			} else if (!pout && !mok && same_refusal(mout, perr)) {
				err_py++;
			} else {
				bad++;
				if (pout && mok)
					show_diff(what, mout, pout);
				else
					fprintf(stderr, "  %s: thaw %s: %.200s\n    python %s: %.200s\n", what, mok ? "ok" : "error",
						mok ? "(rendered)" : mout, pout ? "ok" : "error", pout ? "(rendered)" : perr);
			}
			/* thaw against @huggingface/jinja, where that agrees with Python */
			int node_py = pout ? rok && !strcmp(rout, pout) : !rok;
			if (!node_py) {
				node_differs++;
				continue;
			}
			if (mok == rok && (!mok || !strcmp(mout, rout))) {
				same_node++;
			} else {
				bad++;
				fprintf(stderr, "  %s: thaw and @huggingface/jinja differ\n", what);
			}
		}
	}
	fprintf(stderr, "  %zu templates x %zu conversations: %d rendered as Python's Jinja2 renders them, %d refused as "
		"Python refuses them, %d equal to @huggingface/jinja, %d where @huggingface/jinja differs from Python, %d wrong\n",
		nt, nc, ok_py, err_py, same_node, node_differs, bad);
	T_EQ_INT(bad, 0);
	T_CHECK(ok_py >= (int)(nt * nc * 3 / 4));
	T_CHECK(same_node >= (int)(nt * nc * 3 / 4));
done:
	json_decref(ref);
	json_decref(cases);
	json_decref(mine);
out:
	json_decref(index);
	json_decref(convs);
	json_decref(pyc);
}

void t_main(void)
{
	T_RUN(test_jinja_real_templates_vs_hf_jinja);
}

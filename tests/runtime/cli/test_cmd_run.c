/* test_cmd_run.c — `thaw run` and `thaw snapshot pack --quantize` end to end through the real
 * binary ($THAW_BIN): pack the HF llama fixture as is and int8-quantized, run the greedy
 * continuation and compare with HF transformers' tokens; the digits MLP; echo without a
 * snapshot; bad input -> exit 1 with {"error": ...}; bad usage -> exit 2. --prompt / --chat
 * on a random llama packed with tests/data/tok/small: the printed text is fn_tok_decode of
 * the tokens `thaw run --input` generates for fn_tok_encode of the text (or of fn_tok_chat's
 * rendering), whole UTF-8 characters even where one is split across tokens, also through a
 * terminal. */
#include <stdarg.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <string.h>
#include <jansson.h>
#include "functions/fn_tok.h"
#include "tests/e2e/e2e.h"
#include "tests/t.h"

static char out[8192];



static const char *hf0 = "\"tokens\":[55,230,203,138,82,237,0,111,13,120,26,221,243,207,79,232]";

static void test_run_llama_plain_and_int8(void)
{
	const char *d = t_tmpdir();
	const char *q[] = {"", "--quantize int8", "--quantize int8:32"};
	for (int i = 0; i < 3; i++) {
		T_EQ_INT(t_sh(out, sizeof out, "%s snapshot pack %s/tests/data/llama_tiny -o %s/l%d.thaw -q %s 2>&1", t_bin(),
			    t_src(), d, i, q[i]), 0);
		T_EQ_INT(t_sh(out, sizeof out, "%s run %s/l%d.thaw --device cpu --input "
			    "'{\"tokens\":[1,17,42,99,3,200,5],\"max_tokens\":16,\"stop\":[]}'", t_bin(), d,
			    i), 0);
		/* the fixture's first prompt: int8 happens to keep all 16 greedy tokens too */
		T_CHECK(strstr(out, hf0) != NULL);
		T_CHECK(strstr(out, "\"finish_reason\":\"length\"") != NULL);
	}
	T_EQ_INT(t_sh(out, sizeof out, "%s snapshot inspect %s/l1.thaw", t_bin(), d), 0);
	T_CHECK(strstr(out, "I8") && strstr(out, "q_proj.weight_scale"));
	T_EQ_INT(t_sh(out, sizeof out, "%s snapshot inspect %s/l1.thaw --json", t_bin(), d), 0);
	T_CHECK(strstr(out, "\"quantization\"") != NULL);
	/* bad input: a 400 from the kind -> exit 1, {"error"} on stdout */
	T_EQ_INT(t_sh(out, sizeof out, "%s run %s/l0.thaw --device cpu --input '{\"tokens\":[1,999]}' 2>/dev/null", t_bin(),
		    d), 1);
	T_CHECK(strstr(out, "{\"error\":") == out);
	T_EQ_INT(t_sh(out, sizeof out, "%s run %s/l0.thaw --device cpu --input '{bad json' 2>/dev/null", t_bin(), d), 2);
	T_EQ_INT(t_sh(out, sizeof out, "%s run %s/l0.thaw --device tpu:0 --input '{}' 2>/dev/null", t_bin(), d), 2);
	T_EQ_INT(t_sh(out, sizeof out, "%s run --input '{}' 2>/dev/null", t_bin()), 2);
	T_EQ_INT(t_sh(out, sizeof out, "%s snapshot pack %s/tests/data/llama_tiny -o %s/x.thaw --quantize int4 2>/dev/null",
		    t_bin(), t_src(), d), 2);
	T_EQ_INT(t_sh(out, sizeof out, "%s run %s/missing.thaw --device cpu --input '{}' 2>/dev/null", t_bin(), d), 1);
}

/* --stream: the llama kind's per-token chunks, one line each, then the result whose tokens
 * they make up (the fixture's HF greedy continuation) */
static void test_run_stream(void)
{
	const char *d = t_tmpdir();
	T_EQ_INT(t_sh(out, sizeof out, "%s snapshot pack %s/tests/data/llama_tiny -o %s/s.thaw -q 2>&1", t_bin(), t_src(), d), 0);
	T_EQ_INT(t_sh(out, sizeof out, "%s run %s/s.thaw --device cpu --stream --input "
		    "'{\"tokens\":[1,17,42,99,3,200,5],\"max_tokens\":4,\"stop\":[]}'", t_bin(), d), 0);
	const char *lines = "{\"token\":55}\n{\"token\":230}\n{\"token\":203}\n{\"token\":138}\n{";
	T_CHECK(strncmp(out, lines, strlen(lines)) == 0);
	T_CHECK(strstr(out, "\"tokens\":[55,230,203,138]") != NULL);
	/* a kind that does not stream: only the result */
	T_EQ_INT(t_sh(out, sizeof out, "%s run --kind echo --stream --input '{\"a\":1}'", t_bin()), 0);
	T_EQ_STR(out, "{\"a\":1}\n");
}

static void test_run_mlp_and_echo(void)
{
	const char *d = t_tmpdir();
	T_EQ_INT(t_sh(out, sizeof out, "%s snapshot pack %s/tests/data/mlp_digits -o %s/m.thaw -q --kind mlp "
		    "--metadata '{\"activation\":\"relu\"}' 2>&1", t_bin(), t_src(), d), 0);
	FILE *f = fopen("/dev/null", "r");
	fclose(f);
	char in[1200];
	snprintf(in, sizeof in, "%s/in.json", d);
	f = fopen(in, "w");
	/* digits row 0 (a zero), pixels / 16 */
	fprintf(f, "{\"inputs\": [[0,0,0.3125,0.8125,0.5625,0.0625,0,0,0,0,0.8125,0.9375,0.625,"
		"0.9375,0.3125,0,0,0.1875,0.9375,0.125,0,0.6875,0.5,0,0,0.25,0.75,0,0,0.5,0.5,0,0,"
		"0.3125,0.5,0,0,0.5625,0.5,0,0,0.25,0.6875,0,0.0625,0.75,0.4375,0,0,0.125,0.875,"
		"0.3125,0.625,0.75,0,0,0,0,0.375,0.8125,0.625,0,0,0]]}");
	fclose(f);
	T_EQ_INT(t_sh(out, sizeof out, "%s run %s/m.thaw --device cpu --input @%s", t_bin(), d, in), 0);
	T_CHECK(strstr(out, "\"labels\":[0]") != NULL);
	T_EQ_INT(t_sh(out, sizeof out, "%s run --kind echo --input '{\"a\":[1,\"b\"]}'", t_bin()), 0);
	T_EQ_STR(out, "{\"a\":[1,\"b\"]}\n");
}

/* the tokens `thaw run --input` generates for ids, decoded (skip_special) */
static char *reference(fn_tok *tok, const char *snap, const int32_t *ids, size_t n,
		       const int32_t *stop, size_t nstop, int max_tokens, size_t *len, int *split)
{
	json_t *in = json_pack("{s:[],s:i,s:[],s:i}", "tokens", "max_tokens", max_tokens, "stop",
			       "temperature", 0);
	for (size_t i = 0; i < n; i++)
		json_array_append_new(json_object_get(in, "tokens"), json_integer(ids[i]));
	for (size_t i = 0; i < nstop; i++)
		json_array_append_new(json_object_get(in, "stop"), json_integer(stop[i]));
	char *js = json_dumps(in, JSON_COMPACT), *text = NULL;
	json_decref(in);
	int rc = t_sh(out, sizeof out, "%s run %s --device cpu --input '%s'", t_bin(), snap, js);
	free(js);
	T_EQ_INT(rc, 0);
	json_t *o = json_loads(out, 0, NULL), *toks = json_object_get(o, "tokens");
	size_t k = json_array_size(toks);
	int32_t *g = calloc(k + 1, sizeof *g);
	for (size_t i = 0; i < k; i++)
		g[i] = (int32_t)json_integer_value(json_array_get(toks, i));
	T_EQ_INT(fn_tok_decode(tok, g, k, 1, &text, len), 0);
	/* split: decoding token by token differs from the whole (a character across tokens) */
	size_t cat = 0;
	char *naive = malloc(k * 64 + 1);
	for (size_t i = 0; naive && i < k; i++) {
		char *one = NULL;
		size_t ol = 0;
		if (fn_tok_decode(tok, g + i, 1, 1, &one, &ol) == 0 && cat + ol <= k * 64) {
			memcpy(naive + cat, one, ol);
			cat += ol;
		}
		free(one);
	}
	*split = text && naive && (cat != *len || memcmp(naive, text, cat) != 0);
	free(naive);
	free(g);
	json_decref(o);
	return text;
}

static void test_run_text(void)
{
	const char *d = t_tmpdir();
	char tp[600], cp[600], dir[600], snap[700];
	snprintf(tp, sizeof tp, "%s/tests/data/tok/small/tokenizer.json", t_src());
	snprintf(cp, sizeof cp, "%s/tests/data/tok/small/tokenizer_config.json", t_src());
	size_t tl = 0, cl = 0;
	char *tj = t_read_file(tp, &tl), *cj = t_read_file(cp, &cl);
	fn_tok *tok = NULL;
	T_CHECK(tj && cj && fn_tok_load(&tok, tj, tl, cj, cl, NULL, 0) == 0);
	free(tj);
	free(cj);
	if (!tok)
		return;
	int32_t eos = fn_tok_eos(tok);
	snprintf(dir, sizeof dir, "%s/tl", d);
	snprintf(snap, sizeof snap, "%s/tl.thaw", d);
	T_EQ_INT(t_sh(NULL, 0, "mkdir -p %s && cp %s %s %s/", dir, tp, cp, dir), 0);
	T_EQ_INT(e2e_llama_write(dir, fn_tok_vocab_size(tok), eos), 0);
	T_EQ_INT(t_sh(out, sizeof out, "%s snapshot pack %s -o %s --quiet 2>&1", t_bin(), dir, snap), 0);

	/* --prompt: encode with bos/post-processing, stop at eos */
	const char *prompt = "Caf\xc3\xa9 na\xc3\xafve: the runtime";
	int32_t *ids = NULL;
	size_t n = 0, wl = 0;
	int split = 0, any_split = 0;
	T_EQ_INT(fn_tok_encode(tok, prompt, strlen(prompt), 1, &ids, &n), 0);
	char *want = reference(tok, snap, ids, n, &eos, 1, 40, &wl, &split);
	any_split |= split;
	free(ids);
	T_EQ_INT(t_sh(out, sizeof out, "%s run %s --device cpu --prompt '%s' --max-tokens 40", t_bin(),
		      snap, prompt), 0);
	T_CHECK(want && strlen(out) == wl + 1 && memcmp(out, want, wl) == 0 && out[wl] == '\n');
	/* a terminal gets the same text, flushed token by token */
	if (t_sh(NULL, 0, "command -v script >/dev/null") == 0) {
		T_EQ_INT(t_sh(out, sizeof out, "script -qec \"%s run %s --device cpu --prompt '%s' "
			      "--max-tokens 40\" /dev/null | tr -d '\\r'", t_bin(), snap, prompt), 0);
		T_CHECK(strlen(out) == wl + 1 && memcmp(out, want, wl) == 0);
	}
	free(want);

	/* --chat: the ChatML template, the turn's stop ids */
	const char *user = "Wie gro\xc3\x9f ist ein Eisb\xc3\xa4r? \xe2\x82\xac";
	fn_tok_msg m[2] = {{"system", "Be brief."}, {"user", user}};
	char *rendered = NULL;
	T_EQ_INT(fn_tok_chat(tok, m, 2, &rendered, NULL, 0), 0);
	T_EQ_INT(fn_tok_encode(tok, rendered, strlen(rendered), 0, &ids, &n), 0);
	int32_t stop[8];
	size_t ns = 0;
	stop[ns++] = eos;
	int32_t more[8];
	size_t nm = fn_tok_stop_ids(tok, more, 8);
	for (size_t i = 0; i < nm; i++)
		if (more[i] != eos)
			stop[ns++] = more[i];
	want = reference(tok, snap, ids, n, stop, ns, 48, &wl, &split);
	any_split |= split;
	free(ids);
	free(rendered);
	T_EQ_INT(t_sh(out, sizeof out, "%s run %s --device cpu --chat '%s' --system 'Be brief.' "
		      "--max-tokens 48", t_bin(), snap, user), 0);
	T_CHECK(want && strlen(out) == wl + 1 && memcmp(out, want, wl) == 0);
	free(want);
	/* the generations above do split a character across tokens (else they test less) */
	T_CHECK(any_split);

	/* refusals: no tokenizer 1; usage 2 */
	T_EQ_INT(t_sh(out, sizeof out, "%s snapshot pack %s -o %s/plain.thaw --no-tokenizer --quiet", t_bin(), dir, d), 0);
	T_EQ_INT(t_sh(out, sizeof out, "%s run %s/plain.thaw --device cpu --prompt hi 2>&1", t_bin(), d), 1);
	T_CHECK(strstr(out, "carries no tokenizer") && strstr(out, "--tokenizer"));
	T_EQ_INT(t_sh(out, sizeof out, "%s run %s --prompt hi --chat hi 2>/dev/null", t_bin(), snap), 2);
	T_EQ_INT(t_sh(out, sizeof out, "%s run %s --prompt hi --input '{}' 2>/dev/null", t_bin(), snap), 2);
	T_EQ_INT(t_sh(out, sizeof out, "%s run %s --prompt hi --max-tokens 0 2>/dev/null", t_bin(), snap), 2);
	T_EQ_INT(t_sh(out, sizeof out, "%s run %s --system x --input '{}' 2>/dev/null", t_bin(), snap), 2);
	T_EQ_INT(t_sh(out, sizeof out, "%s run %s --device cpu --prompt \"$(printf 'a\\377b')\" 2>&1", t_bin(), snap), 2);
	T_CHECK(strstr(out, "not valid UTF-8") != NULL);
	fn_tok_free(tok);
}

void t_main(void)
{
	T_RUN(test_run_llama_plain_and_int8);
	T_RUN(test_run_mlp_and_echo);
	T_RUN(test_run_stream);
	T_RUN(test_run_text);
}

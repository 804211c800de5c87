/* test_tok.c — the tokenizer (runtime/tok/tok.h) against the Hugging Face `tokenizers`
 * package (0.23.2): for three real tokenizer files (tests/data/tok/: LLaMA-3 byte-level BPE, Mistral-7B SentencePiece
 * BPE with byte fallback, and a small byte-level BPE trained with the GPT-2 split pattern) every
 * fixture string must encode to exactly the ids `tokenizers` produced (with and without special
 * tokens), decode back to its text (skip_special_tokens false and true), random id sequences
 * must decode the same (invalid UTF-8 included), streaming decode must concatenate to the full
 * decode in whole UTF-8 characters, and chat prompts must equal transformers'
 * apply_chat_template. Malformed and unsupported tokenizer files must fail with clear errors. */
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/tok/tok.h"
#include "tests/t.h"

static const char *src_dir(void)
{
	const char *s = getenv("THAW_SRC");
	return s && *s ? s : ".";
}

static char *read_cmd(const char *cmd, size_t *len)
{
	FILE *p = popen(cmd, "r");
	if (!p)
		return NULL;
	size_t n = 0, cap = 1 << 20;
	char *b = malloc(cap);
	while (b) {
		if (n + 65536 + 1 > cap) {
			char *nb = realloc(b, cap *= 2);
			if (!nb) {
				free(b);
				b = NULL;
				break;
			}
			b = nb;
		}
		size_t r = fread(b + n, 1, cap - n - 1, p);
		n += r;
		if (!r)
			break;
	}
	if (pclose(p) != 0 || !b || !n) {
		free(b);
		return NULL;
	}
	b[n] = 0;
	*len = n;
	return b;
}

/* tests/data/tok/NAME/FILE, gunzipped when FILE.gz is what exists */
static char *read_fixture(const char *name, const char *file, size_t *len)
{
	char path[1024], cmd[1200];
	snprintf(path, sizeof path, "%s/tests/data/tok/%s/%s", src_dir(), name, file);
	FILE *f = fopen(path, "rb");
	if (!f) {
		snprintf(cmd, sizeof cmd, "gzip -dc '%s.gz'", path);
		return read_cmd(cmd, len);
	}
	fclose(f);
	snprintf(cmd, sizeof cmd, "cat '%s'", path);
	return read_cmd(cmd, len);
}

static tok_tokenizer *load_fixture(const char *name)
{
	size_t tl, cl;
	char *tj = read_fixture(name, "tokenizer.json", &tl), *cj = read_fixture(name, "tokenizer_config.json", &cl);
	char err[512];
	tok_tokenizer *t = NULL;
	T_CHECK(tj && cj);
	if (tj && cj) {
		int rc = tok_load(&t, tj, tl, cj, cl, err, sizeof err);
		if (rc)
			fprintf(stderr, "  load %s: %d %s\n", name, rc, err);
		T_EQ_INT(rc, 0);
	}
	free(tj);
	free(cj);
	return t;
}

static json_t *load_expected(const char *name)
{
	size_t n;
	char *s = read_fixture(name, "expected.json", &n);
	json_error_t je;
	json_t *j = s ? json_loadb(s, n, JSON_ALLOW_NUL, &je) : NULL;
	free(s);
	T_CHECK(json_is_object(j));
	return j;
}

static int ids_equal(const int32_t *ids, size_t n, json_t *want)
{
	if (json_array_size(want) != n)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (json_integer_value(json_array_get(want, i)) != ids[i])
			return 0;
	return 1;
}

static int32_t *json_ids(json_t *a, size_t *n)
{
	*n = json_array_size(a);
	int32_t *ids = malloc((*n + 1) * sizeof *ids);
	for (size_t i = 0; ids && i < *n; i++)
		ids[i] = (int32_t)json_integer_value(json_array_get(a, i));
	return ids;
}

static int utf8_ok(const char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		unsigned char c = (unsigned char)s[i];
		size_t l = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
		if (!l || i + l > n)
			return 0;
		for (size_t k = 1; k < l; k++)
			if (((unsigned char)s[i + k] & 0xC0) != 0x80)
				return 0;
		i += l;
	}
	return 1;
}

/* decode ids and compare with want (a JSON string, NULs allowed) */
static int check_decode(const tok_tokenizer *t, const int32_t *ids, size_t n, int skip, json_t *want,
			const char *what)
{
	char *txt = NULL;
	size_t len = 0;
	int rc = tok_decode(t, ids, n, skip, &txt, &len);
	int ok = rc == 0 && json_is_string(want) && len == json_string_length(want) &&
		 !memcmp(txt, json_string_value(want), len);
	if (!ok)
		fprintf(stderr, "  decode mismatch (%s, skip=%d): rc=%d got \"%.120s\" want \"%.120s\"\n", what,
			skip, rc, txt ? txt : "", json_string_value(want) ? json_string_value(want) : "");
	free(txt);
	return ok;
}

/* streaming decode: every piece whole UTF-8, all pieces == want */
static int check_stream(const tok_tokenizer *t, const int32_t *ids, size_t n, int skip, json_t *want,
			const char *what)
{
	tok_stream *s;
	if (tok_stream_new(t, skip, &s))
		return 0;
	char *all = calloc(1, 1);
	size_t alen = 0;
	int ok = 1;
	for (size_t i = 0; i <= n && ok; i++) {
		char *piece;
		size_t pl;
		int rc = i < n ? tok_stream_push(s, ids[i], &piece, &pl) : tok_stream_finish(s, &piece, &pl);
		if (rc || !utf8_ok(piece, pl)) {
			ok = 0;
		} else {
			char *na = realloc(all, alen + pl + 1);
			if (!na) {
				ok = 0;
			} else {
				all = na;
				memcpy(all + alen, piece, pl);
				alen += pl;
				all[alen] = 0;
			}
		}
		free(piece);
	}
	tok_stream_free(s);
	if (ok)
		ok = json_is_string(want) && alen == json_string_length(want) && !memcmp(all, json_string_value(want), alen);
	if (!ok) {
		size_t d = 0, wl = json_string_length(want);
		const char *w = json_string_value(want);
		while (all && w && d < alen && d < wl && all[d] == w[d])
			d++;
		fprintf(stderr, "  stream mismatch (%s, skip=%d): lengths %zu vs %zu, first difference at byte %zu: got \"%.40s\" want \"%.40s\"\n",
			what, skip, alen, wl, d, all && d < alen ? all + d : "", w && d < wl ? w + d : "");
	}
	free(all);
	return ok;
}

static void run_fixture(const char *name)
{
	tok_tokenizer *t = load_fixture(name);
	json_t *ex = load_expected(name);
	if (!t || !ex) {
		tok_free(t);
		json_decref(ex);
		return;
	}
	T_EQ_INT(tok_vocab_size(t), json_integer_value(json_object_get(ex, "vocab_size")));
	json_t *cases = json_object_get(ex, "cases"), *c;
	size_t i;
	int bad_enc = 0, bad_dec = 0, bad_stream = 0, n_cases = 0;
	json_array_foreach(cases, i, c) {
		json_t *text = json_object_get(c, "text");
		const char *s = json_string_value(text);
		size_t sl = json_string_length(text);
		n_cases++;
		for (int sp = 0; sp < 2; sp++) {
			json_t *want = json_object_get(c, sp ? "ids_special" : "ids");
			int32_t *ids = NULL;
			size_t n = 0;
			int rc = tok_encode(t, s, sl, sp, &ids, &n);
			if (rc || !ids_equal(ids, n, want)) {
				bad_enc++;
				fprintf(stderr, "  %s: encode mismatch for case %zu \"%.60s\" (add_special=%d): got", name, i, s, sp);
				for (size_t k = 0; k < n && k < 24; k++)
					fprintf(stderr, " %d", ids[k]);
				fprintf(stderr, " want");
				for (size_t k = 0; k < json_array_size(want) && k < 24; k++)
					fprintf(stderr, " %lld", (long long)json_integer_value(json_array_get(want, k)));
				fprintf(stderr, "\n");
			}
			free(ids);
		}
		size_t n;
		int32_t *ids = json_ids(json_object_get(c, "ids"), &n);
		bad_dec += !check_decode(t, ids, n, 0, json_object_get(c, "decoded"), name);
		free(ids);
		ids = json_ids(json_object_get(c, "ids_special"), &n);
		bad_dec += !check_decode(t, ids, n, 0, json_object_get(c, "decoded_special"), name);
		bad_dec += !check_decode(t, ids, n, 1, json_object_get(c, "decoded_skip"), name);
		bad_stream += !check_stream(t, ids, n, 0, json_object_get(c, "decoded_special"), name);
		bad_stream += !check_stream(t, ids, n, 1, json_object_get(c, "decoded_skip"), name);
		free(ids);
	}
	T_CHECK(n_cases >= 40);
	json_t *rd = json_object_get(ex, "random_decodes");
	T_CHECK(json_array_size(rd) >= 6);
	json_array_foreach(rd, i, c) {
		size_t n;
		int32_t *ids = json_ids(json_object_get(c, "ids"), &n);
		bad_dec += !check_decode(t, ids, n, 0, json_object_get(c, "decoded"), name);
		bad_dec += !check_decode(t, ids, n, 1, json_object_get(c, "decoded_skip"), name);
		bad_stream += !check_stream(t, ids, n, 0, json_object_get(c, "decoded"), name);
		bad_stream += !check_stream(t, ids, n, 1, json_object_get(c, "decoded_skip"), name);
		free(ids);
	}
	T_EQ_INT(bad_enc, 0);
	T_EQ_INT(bad_dec, 0);
	T_EQ_INT(bad_stream, 0);

	/* chat: the same conversations through tok_chat */
	json_t *chat = json_object_get(ex, "chat"), *convs = json_object_get(ex, "convs");
	const char *cname;
	json_t *conv;
	int n_conv = 0;
	json_object_foreach(convs, cname, conv) {
		json_t *want = json_object_get(chat, cname);
		T_CHECK(json_is_string(want));
		tok_msg m[8];
		size_t nm = json_array_size(conv);
		T_CHECK(nm <= 8);
		for (size_t k = 0; k < nm && k < 8; k++) {
			m[k].role = json_string_value(json_object_get(json_array_get(conv, k), "role"));
			m[k].content = json_string_value(json_object_get(json_array_get(conv, k), "content"));
		}
		char *p = NULL, err[256] = "";
		int rc = tok_chat(t, m, nm, &p, err, sizeof err);
		T_EQ_INT(rc, 0);
		if (rc)
			fprintf(stderr, "  chat %s: %s\n", cname, err);
		T_EQ_STR(p, json_string_value(want));
		char key[64];
		snprintf(key, sizeof key, "%s_ids", cname);
		int32_t *ids = NULL;
		size_t n = 0;
		T_EQ_INT(tok_encode(t, p ? p : "", p ? strlen(p) : 0, 0, &ids, &n), 0);
		T_CHECK(ids_equal(ids, n, json_object_get(chat, key)));
		free(ids);
		free(p);
		n_conv++;
	}
	T_EQ_INT(n_conv, 2);
	tok_free(t);
	json_decref(ex);
}

static void test_tok_small_gpt2_split(void) { run_fixture("small"); }
static void test_tok_llama3(void) { run_fixture("llama3"); }
static void test_tok_mistral_byte_fallback(void) { run_fixture("mistral"); }

static void test_tok_special_ids(void)
{
	tok_tokenizer *l3 = load_fixture("llama3"), *mi = load_fixture("mistral"), *sm = load_fixture("small");
	if (!l3 || !mi || !sm)
		goto out;
	T_EQ_INT(tok_bos(l3), 128000);
	T_EQ_INT(tok_eos(l3), 128001);
	T_EQ_INT(tok_vocab_size(l3), 128256);
	int32_t stop[8];
	size_t n = tok_stop_ids(l3, stop, 8);
	T_EQ_INT(n, 2);
	T_EQ_INT(stop[0], 128001);
	T_EQ_INT(stop[1], 128009); /* <|eot_id|> */
	T_EQ_INT(tok_bos(mi), 1);
	T_EQ_INT(tok_eos(mi), 2);
	n = tok_stop_ids(mi, stop, 8);
	T_EQ_INT(n, 1);
	T_EQ_INT(stop[0], 2);
	/* small: eos_token given as {"content": "<|im_end|>"}, no bos */
	T_EQ_INT(tok_eos(sm), tok_id(sm, "<|im_end|>"));
	T_CHECK(tok_eos(sm) >= 0);
	T_EQ_INT(tok_bos(sm), -1);
	n = tok_stop_ids(sm, stop, 1);
	T_EQ_INT(n, 1);
	n = tok_stop_ids(sm, stop, 8);
	T_EQ_INT(n, 2);
	T_EQ_INT(stop[1], tok_id(sm, "<|endoftext|>"));
	/* the turn ends of other families: Gemma's <end_of_turn>, Phi-3's <|end|> */
	tok_tokenizer *g = NULL;
	const char *gj = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[]},"
			 "\"added_tokens\":[{\"id\":2,\"content\":\"<end_of_turn>\",\"special\":true},"
			 "{\"id\":3,\"content\":\"<|end|>\",\"special\":true}]}";
	T_EQ_INT(tok_load(&g, gj, strlen(gj), NULL, 0, NULL, 0), 0);
	n = tok_stop_ids(g, stop, 8);
	T_EQ_INT(n, 2);
	T_CHECK(n == 2 && ((stop[0] == 3 && stop[1] == 2) || (stop[0] == 2 && stop[1] == 3)));
	tok_free(g);
	T_EQ_INT(tok_id(l3, "Hello"), 9906);
	T_EQ_INT(tok_id(l3, "no such token here"), -1);
out:
	tok_free(l3);
	tok_free(mi);
	tok_free(sm);
}

/* the old merges format ("a b" strings) gives the same encodings as the new one */
static void test_tok_old_merges_format(void)
{
	size_t tl;
	char *tj = read_fixture("small", "tokenizer.json", &tl);
	json_t *j = tj ? json_loadb(tj, tl, 0, NULL) : NULL;
	T_CHECK(j);
	if (!j) {
		free(tj);
		return;
	}
	json_t *merges = json_object_get(json_object_get(j, "model"), "merges"), *m;
	size_t i;
	T_CHECK(json_array_size(merges) > 100);
	T_CHECK(json_is_array(json_array_get(merges, 0))); /* the fixture uses the new format */
	json_t *old = json_array();
	json_array_foreach(merges, i, m) {
		char buf[256];
		snprintf(buf, sizeof buf, "%s %s", json_string_value(json_array_get(m, 0)),
			 json_string_value(json_array_get(m, 1)));
		json_array_append_new(old, json_string(buf));
	}
	json_object_set_new(json_object_get(j, "model"), "merges", old);
	char *oj = json_dumps(j, JSON_COMPACT);
	tok_tokenizer *a = NULL, *b = NULL;
	char err[256];
	T_EQ_INT(tok_load(&a, tj, tl, NULL, 0, err, sizeof err), 0);
	T_EQ_INT(tok_load(&b, oj, strlen(oj), NULL, 0, err, sizeof err), 0);
	const char *text = "Snapshots restore in milliseconds; thaw's scheduler evicts the LRU model.";
	int32_t *ia = NULL, *ib = NULL;
	size_t na = 0, nb = 0;
	if (a && b) {
		T_EQ_INT(tok_encode(a, text, strlen(text), 0, &ia, &na), 0);
		T_EQ_INT(tok_encode(b, text, strlen(text), 0, &ib, &nb), 0);
		T_EQ_INT(na, nb);
		T_CHECK(na > 5 && na < strlen(text)); /* merges applied */
		T_CHECK(na == nb && !memcmp(ia, ib, na * sizeof *ia));
	}
	free(ia);
	free(ib);
	tok_free(a);
	tok_free(b);
	free(oj);
	json_decref(j);
	free(tj);
}

static int load_err(const char *json, const char *cfg, char *err, size_t errlen)
{
	tok_tokenizer *t = NULL;
	int rc = tok_load(&t, json, strlen(json), cfg, cfg ? strlen(cfg) : 0, err, errlen);
	if (rc == 0)
		tok_free(t);
	T_CHECK(rc != 0 || t != NULL);
	return rc;
}

#define MINI_MODEL "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},\"merges\":[\"a b\"]}"

static void test_tok_malformed(void)
{
	char err[256];
	T_EQ_INT(load_err("{\"model\": ", NULL, err, sizeof err), -EINVAL);
	T_CHECK(strstr(err, "tokenizer.json") != NULL);
	T_EQ_INT(load_err("[1,2]", NULL, err, sizeof err), -EINVAL);
	T_EQ_INT(load_err("{\"version\":\"1.0\"}", NULL, err, sizeof err), -EINVAL);
	T_CHECK(strstr(err, "model") != NULL);
	T_EQ_INT(load_err("{\"model\":{\"type\":\"WordPiece\",\"vocab\":{}}}", NULL, err, sizeof err), -ENOTSUP);
	T_CHECK(strstr(err, "WordPiece") != NULL);
	T_EQ_INT(load_err("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a b\"]}}", NULL, err, sizeof err), -EINVAL);
	T_CHECK(strstr(err, "merges[0]") != NULL);
	T_EQ_INT(load_err("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"a b\"]}}", NULL, err, sizeof err), -EINVAL);
	T_CHECK(strstr(err, "merged token") != NULL);
	T_EQ_INT(load_err("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},\"merges\":[\"a b c\"]}}", NULL, err, sizeof err), -EINVAL);
	T_EQ_INT(load_err("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},\"merges\":[[\"a\"]]}}", NULL, err, sizeof err), -EINVAL);
	T_EQ_INT(load_err("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":\"x\"},\"merges\":[]}}", NULL, err, sizeof err), -EINVAL);
	T_CHECK(strstr(err, "vocab") != NULL);
	T_EQ_INT(load_err("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":0},\"merges\":[]}}", NULL, err, sizeof err), -EINVAL);
	T_EQ_INT(load_err("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-1},\"merges\":[]}}", NULL, err, sizeof err), -EINVAL);
	T_EQ_INT(load_err("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":{}}}", NULL, err, sizeof err), -EINVAL);
	T_EQ_INT(load_err("{" MINI_MODEL ",\"normalizer\":{\"type\":\"NFKC\"}}", NULL, err, sizeof err), -ENOTSUP);
	T_CHECK(strstr(err, "NFKC") != NULL);
	T_EQ_INT(load_err("{" MINI_MODEL ",\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"\\\\d+\"},\"behavior\":\"Isolated\",\"invert\":false}}", NULL, err, sizeof err), -ENOTSUP);
	T_CHECK(strstr(err, "Split") != NULL);
	T_EQ_INT(load_err("{" MINI_MODEL ",\"decoder\":{\"type\":\"WordPiece\"}}", NULL, err, sizeof err), -ENOTSUP);
	T_EQ_INT(load_err("{" MINI_MODEL ",\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}}]}}", NULL, err, sizeof err), -EINVAL);
	T_EQ_INT(load_err("{" MINI_MODEL ",\"added_tokens\":[{\"id\":5}]}", NULL, err, sizeof err), -EINVAL);
	T_CHECK(strstr(err, "added_tokens[0]") != NULL);
	T_EQ_INT(load_err("{" MINI_MODEL "}", "{\"bos_token\": 5}", err, sizeof err), -EINVAL);
	T_CHECK(strstr(err, "tokenizer_config.json") != NULL);
	T_EQ_INT(load_err("{" MINI_MODEL "}", "{\"eos_token\": \"</s>\"}", err, sizeof err), -EINVAL);
	T_EQ_INT(load_err("{" MINI_MODEL "}", "not json", err, sizeof err), -EINVAL);

	/* a minimal valid one: encode, decode errors, chat without a template */
	tok_tokenizer *t = NULL;
	const char *mini = "{" MINI_MODEL "}";
	T_EQ_INT(tok_load(&t, mini, strlen(mini), "{\"chat_template\": \"{{ messages }}\"}", 35, err, sizeof err), 0);
	if (!t)
		return;
	int32_t *ids = NULL;
	size_t n = 0;
	T_EQ_INT(tok_encode(t, "abab", 4, 1, &ids, &n), 0);
	T_EQ_INT(n, 2);
	T_CHECK(n == 2 && ids[0] == 2 && ids[1] == 2);
	free(ids);
	T_EQ_INT(tok_encode(t, "a\xff", 2, 0, &ids, &n), -EINVAL); /* invalid UTF-8 */
	char *txt = NULL;
	int32_t bad[2] = {0, 7};
	T_EQ_INT(tok_decode(t, bad, 2, 0, &txt, NULL), -EINVAL);
	T_CHECK(txt == NULL);
	tok_stream *s;
	T_EQ_INT(tok_stream_new(t, 0, &s), 0);
	T_EQ_INT(tok_stream_push(s, -3, &txt, NULL), -EINVAL);
	tok_stream_free(s);
	tok_msg m[1] = {{"user", "hi"}};
	char *p = NULL;
	T_EQ_INT(tok_chat(t, m, 1, &p, err, sizeof err), 0); /* any template renders: Python's str() of the list */
	T_EQ_STR(p, "[{'role': 'user', 'content': 'hi'}]");
	free(p);
	p = NULL;
	tok_free(t);
	/* a template that does not parse: the tokenizer loads, chat says why it is refused */
	const char *broken = "{\"chat_template\": \"{% for %}\"}";
	T_EQ_INT(tok_load(&t, mini, strlen(mini), broken, strlen(broken), err, sizeof err), 0);
	T_EQ_INT(tok_chat(t, m, 1, &p, err, sizeof err), -ENOTSUP);
	T_CHECK(strstr(err, "chat template line 1") != NULL);
	tok_free(t);
	/* the list form: "default", and "tool_use" for requests with tools */
	const char *named = "{\"bos_token\": \"a\", \"chat_template\": [{\"name\": \"tool_use\", \"template\": "
			    "\"T{{ tools | length }}{{ bos_token }}\"}, {\"name\": \"default\", \"template\": \"D{{ messages[0].content }}\"}]}";
	T_EQ_INT(tok_load(&t, mini, strlen(mini), named, strlen(named), err, sizeof err), 0);
	T_EQ_INT(tok_chat(t, m, 1, &p, err, sizeof err), 0);
	T_EQ_STR(p, "Dhi");
	free(p);
	json_t *msgs = json_pack("[{s:s,s:s}]", "role", "user", "content", "hi"), *tools = json_pack("[{s:s}]", "type", "function");
	T_EQ_INT(tok_chat_render(t, msgs, tools, NULL, 1, &p, err, sizeof err), 0);
	T_EQ_STR(p, "T1a");
	free(p);
	json_decref(msgs);
	json_decref(tools);
	tok_free(t);
	const char *only_tools = "{\"chat_template\": [{\"name\": \"tool_use\", \"template\": \"x\"}]}";
	T_EQ_INT(tok_load(&t, mini, strlen(mini), only_tools, strlen(only_tools), err, sizeof err), 0);
	T_EQ_INT(tok_chat(t, m, 1, &p, err, sizeof err), -ENOTSUP);
	T_CHECK(strstr(err, "\"default\"") != NULL);
	tok_free(t);
	T_EQ_INT(tok_load(&t, mini, strlen(mini), NULL, 0, err, sizeof err), 0);
	T_EQ_INT(tok_chat(t, m, 1, &p, err, sizeof err), -ENOTSUP);
	T_CHECK(strstr(err, "no chat template") != NULL);
	T_EQ_INT(tok_bos(t), -1);
	tok_free(t);
}

static void test_tok_chat_errors(void)
{
	tok_tokenizer *mi = load_fixture("mistral"), *sm = load_fixture("small");
	char err[256], *p = NULL;
	if (!mi || !sm)
		goto out;
	tok_msg bad_utf8[1] = {{"user", "x\xff"}};
	T_EQ_INT(tok_chat(sm, bad_utf8, 1, &p, err, sizeof err), -EINVAL);
	T_CHECK(strstr(err, "UTF-8") != NULL);
	tok_msg no_content[1] = {{"user", NULL}};
	T_EQ_INT(tok_chat(sm, no_content, 1, &p, err, sizeof err), -EINVAL);
	tok_msg tool_role[1] = {{"tool", "x"}}; /* roles are the template's business */
	T_EQ_INT(tok_chat(sm, tool_role, 1, &p, err, sizeof err), 0);
	T_EQ_STR(p, "<|im_start|>tool\nx<|im_end|>\n<|im_start|>assistant\n");
	free(p);
	tok_msg two_users[2] = {{"user", "a"}, {"user", "b"}};
	T_EQ_INT(tok_chat(mi, two_users, 2, &p, err, sizeof err), -EINVAL);
	T_CHECK(strstr(err, "alternate") != NULL);
	T_EQ_INT(tok_chat(sm, two_users, 2, &p, err, sizeof err), 0); /* ChatML does not care */
	T_EQ_STR(p, "<|im_start|>user\na<|im_end|>\n<|im_start|>user\nb<|im_end|>\n<|im_start|>assistant\n");
	free(p);
	T_EQ_INT(tok_chat(sm, two_users, 0, &p, err, sizeof err), -EINVAL);
out:
	tok_free(mi);
	tok_free(sm);
}

/* streaming is incremental: ASCII comes out with each token; a character split over byte-level
 * tokens comes out whole with its last token; garbage bytes do not hold back earlier text */
static void test_tok_stream_incremental(void)
{
	tok_tokenizer *t = load_fixture("llama3");
	if (!t)
		return;
	const char *text = "Hello world, streaming 𝔘𝔫!";
	int32_t *ids = NULL;
	size_t n = 0;
	T_EQ_INT(tok_encode(t, text, strlen(text), 0, &ids, &n), 0);
	tok_stream *s;
	T_EQ_INT(tok_stream_new(t, 0, &s), 0);
	char got[256] = "";
	int empty = 0, nonempty = 0;
	for (size_t i = 0; i < n; i++) {
		char *p;
		size_t pl;
		T_EQ_INT(tok_stream_push(s, ids[i], &p, &pl), 0);
		if (i < 4) /* "Hello", " world", ",", " streaming": each out at once */
			T_CHECK(pl > 0);
		T_CHECK(utf8_ok(p, pl));
		if (pl)
			nonempty++;
		else
			empty++;
		strncat(got, p, sizeof got - strlen(got) - 1);
		free(p);
	}
	char *p;
	size_t pl;
	T_EQ_INT(tok_stream_finish(s, &p, &pl), 0);
	T_EQ_INT(pl, 0); /* nothing left over: the letters completed before "!" */
	free(p);
	T_EQ_STR(got, text);
	T_CHECK(n == 11 && empty >= 2 && empty + nonempty == (int)n); /* each fraktur letter spans 3 tokens */
	tok_stream_free(s);
	free(ids);
	/* lone lead bytes (U+00E4 'ä' is byte 0xE4 in GPT-2's byte map) never complete: text before
	 * them still streams, each finished U+FFFD comes out with the next token */
	int32_t e4 = tok_id(t, "\xc3\xa4"), a = tok_id(t, "a");
	T_CHECK(e4 >= 0 && a >= 0);
	T_EQ_INT(tok_stream_new(t, 0, &s), 0);
	int32_t seq[5] = {a, e4, e4, e4, a};
	const char *want[5] = {"a", "", "\xef\xbf\xbd", "\xef\xbf\xbd", "\xef\xbf\xbd" "a"};
	for (int i = 0; i < 5; i++) {
		T_EQ_INT(tok_stream_push(s, seq[i], &p, &pl), 0);
		T_EQ_STR(p, want[i]);
		free(p);
	}
	tok_stream_free(s);
	tok_free(t);
}

/* added tokens with lstrip / rstrip take the whitespace beside them (RoBERTa's <mask> style) */
static void test_tok_added_strip(void)
{
	size_t tl;
	char *tj = read_fixture("small", "tokenizer.json", &tl);
	json_t *j = tj ? json_loadb(tj, tl, 0, NULL) : NULL;
	free(tj);
	T_CHECK(j);
	if (!j)
		return;
	json_t *added = json_object_get(j, "added_tokens");
	json_array_append_new(added, json_pack("{s:i,s:s,s:b,s:b,s:b,s:b,s:b}", "id", 512, "content", "<mask>",
					       "single_word", 0, "lstrip", 1, "rstrip", 0, "normalized", 0, "special", 1));
	json_array_append_new(added, json_pack("{s:i,s:s,s:b,s:b,s:b,s:b,s:b}", "id", 513, "content", "[R]",
					       "single_word", 0, "lstrip", 0, "rstrip", 1, "normalized", 0, "special", 0));
	char *text = json_dumps(j, JSON_COMPACT), err[256];
	json_decref(j);
	tok_tokenizer *t = NULL;
	T_EQ_INT(tok_load(&t, text, strlen(text), NULL, 0, err, sizeof err), 0);
	free(text);
	if (!t)
		return;
	T_EQ_INT(tok_vocab_size(t), 514);
	int32_t *a = NULL, *b = NULL, *c = NULL;
	size_t na = 0, nb = 0, nc = 0;
	T_EQ_INT(tok_encode(t, "snapshot \t <mask> restore", strlen("snapshot \t <mask> restore"), 0, &a, &na), 0);
	T_EQ_INT(tok_encode(t, "snapshot", strlen("snapshot"), 0, &b, &nb), 0);
	T_EQ_INT(tok_encode(t, " restore", strlen(" restore"), 0, &c, &nc), 0);
	T_EQ_INT(na, nb + 1 + nc);
	if (na == nb + 1 + nc) {
		T_CHECK(!memcmp(a, b, nb * sizeof *a));
		T_EQ_INT(a[nb], 512);
		T_CHECK(!memcmp(a + nb + 1, c, nc * sizeof *a));
	}
	free(a);
	free(b);
	free(c);
	T_EQ_INT(tok_encode(t, "snapshot [R] \n restore", strlen("snapshot [R] \n restore"), 0, &a, &na), 0);
	T_EQ_INT(tok_encode(t, "snapshot ", strlen("snapshot "), 0, &b, &nb), 0);
	T_EQ_INT(tok_encode(t, "restore", strlen("restore"), 0, &c, &nc), 0);
	T_EQ_INT(na, nb + 1 + nc);
	if (na == nb + 1 + nc) {
		T_CHECK(!memcmp(a, b, nb * sizeof *a));
		T_EQ_INT(a[nb], 513);
		T_CHECK(!memcmp(a + nb + 1, c, nc * sizeof *a));
	}
	/* decode: skip_special drops <mask> but keeps the non-special [R] */
	int32_t ids[3] = {512, 513, 512};
	char *d = NULL;
	T_EQ_INT(tok_decode(t, ids, 3, 1, &d, NULL), 0);
	T_EQ_STR(d, "[R]");
	free(d);
	free(a);
	free(b);
	free(c);
	tok_free(t);
}

typedef struct {
	const tok_tokenizer *t;
	json_t *cases;
	int bad;
} mt_arg;

static void *mt_encode(void *p)
{
	mt_arg *a = p;
	json_t *c;
	size_t i;
	for (int rep = 0; rep < 3; rep++)
		json_array_foreach(a->cases, i, c) {
			json_t *text = json_object_get(c, "text");
			int32_t *ids = NULL;
			size_t n = 0;
			if (tok_encode(a->t, json_string_value(text), json_string_length(text), 1, &ids, &n) ||
			    !ids_equal(ids, n, json_object_get(c, "ids_special")))
				a->bad++;
			free(ids);
		}
	return NULL;
}

/* one loaded tokenizer serves several threads at once */
static void test_tok_threads(void)
{
	tok_tokenizer *t = load_fixture("mistral");
	json_t *ex = load_expected("mistral");
	if (t && ex) {
		pthread_t th[4];
		mt_arg a[4];
		for (int i = 0; i < 4; i++) {
			a[i] = (mt_arg){t, json_object_get(ex, "cases"), 0};
			T_EQ_INT(pthread_create(&th[i], NULL, mt_encode, &a[i]), 0);
		}
		for (int i = 0; i < 4; i++) {
			pthread_join(th[i], NULL);
			T_EQ_INT(a[i].bad, 0);
		}
	}
	tok_free(t);
	json_decref(ex);
}

/* Metaspace pre-tokenizer and decoder: cases from the Rust crate's own unit tests
 * (pre_tokenizers/metaspace.rs). With ignore_merges every piece that is a vocabulary entry
 * becomes one id, so the ids show the pieces. */
static void test_tok_metaspace(void)
{
	const char *json =
		"{\"added_tokens\":[{\"id\":2,\"content\":\"<s>\",\"special\":true}],"
		"\"pre_tokenizer\":{\"type\":\"Metaspace\",\"replacement\":\"\u2581\",\"prepend_scheme\":\"first\",\"split\":false},"
		"\"decoder\":{\"type\":\"Metaspace\",\"replacement\":\"\u2581\",\"prepend_scheme\":\"always\",\"split\":true},"
		"\"model\":{\"type\":\"BPE\",\"ignore_merges\":true,\"merges\":[],\"vocab\":{\"\u2581Hey\u2581\":0,\"how\":1,"
		"\"<s>\":2,\"are\u2581\":3,\"\u2581you\":4,\"how\u2581\":5,\"\u2581Hey\":6,\"\u2581friend!\":7}}}";
	tok_tokenizer *t = NULL;
	char err[256];
	T_EQ_INT(tok_load(&t, json, strlen(json), NULL, 0, err, sizeof err), 0);
	if (!t)
		return;
	/* prepend_scheme first, split false: " Hey <s>how" -> "▁Hey▁" <s> "how" */
	int32_t *ids = NULL;
	size_t n = 0;
	const char *s1 = " Hey <s>how";
	T_EQ_INT(tok_encode(t, s1, strlen(s1), 0, &ids, &n), 0);
	int32_t w1[3] = {0, 2, 1};
	T_CHECK(n == 3 && !memcmp(ids, w1, sizeof w1));
	free(ids);
	const char *s2 = " Hey <s>how <s>are <s> you";
	T_EQ_INT(tok_encode(t, s2, strlen(s2), 0, &ids, &n), 0);
	int32_t w2[7] = {0, 2, 5, 2, 3, 2, 4};
	T_CHECK(n == 7 && !memcmp(ids, w2, sizeof w2));
	free(ids);
	/* decoder, prepend_scheme always: ["▁Hey", "▁friend!"] -> "Hey friend!" */
	int32_t d1[2] = {6, 7};
	char *txt = NULL;
	T_EQ_INT(tok_decode(t, d1, 2, 0, &txt, NULL), 0);
	T_EQ_STR(txt, "Hey friend!");
	free(txt);
	int32_t d2[2] = {0, 7}; /* every replacement of the first token goes */
	T_EQ_INT(tok_decode(t, d2, 2, 0, &txt, NULL), 0);
	T_EQ_STR(txt, "Hey friend!");
	free(txt);
	tok_free(t);
	/* prepend_scheme never in the decoder: " Hey friend!" */
	const char *json2 =
		"{\"decoder\":{\"type\":\"Metaspace\",\"replacement\":\"\u2581\",\"prepend_scheme\":\"never\",\"split\":true},"
		"\"model\":{\"type\":\"BPE\",\"merges\":[],\"vocab\":{\"\u2581Hey\":0,\"\u2581friend!\":1}}}";
	T_EQ_INT(tok_load(&t, json2, strlen(json2), NULL, 0, err, sizeof err), 0);
	int32_t d3[2] = {0, 1};
	if (t) {
		T_EQ_INT(tok_decode(t, d3, 2, 0, &txt, NULL), 0);
		T_EQ_STR(txt, " Hey friend!");
		free(txt);
	}
	tok_free(t);
}

void t_main(void)
{
	T_RUN(test_tok_small_gpt2_split);
	T_RUN(test_tok_llama3);
	T_RUN(test_tok_mistral_byte_fallback);
	T_RUN(test_tok_special_ids);
	T_RUN(test_tok_stream_incremental);
	T_RUN(test_tok_old_merges_format);
	T_RUN(test_tok_added_strip);
	T_RUN(test_tok_metaspace);
	T_RUN(test_tok_threads);
	T_RUN(test_tok_malformed);
	T_RUN(test_tok_chat_errors);
}

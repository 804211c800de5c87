/* tok_load.c — loads a Hugging Face tokenizer.json (model type BPE) and tokenizer_config.json with
 * jansson into a tok_tokenizer: normalizers, pre-tokenizers, the model (vocab, merges, byte
 * fallback), added tokens, post-processor, decoders, bos/eos, the special tokens and the parsed chat template(s).
 * It follows the `tokenizers` Rust crate's semantics for the pieces it supports:
 *   normalizers:     Sequence, Prepend, Replace (String pattern)
 *   pre-tokenizers:  Sequence, ByteLevel (GPT-2 split pattern), Split (the GPT-2 and the
 *                    LLaMA-3 / cl100k patterns, behavior Isolated), Metaspace
 *   model:           BPE (merges old "a b" and new ["a","b"] formats, byte_fallback, unk +
 *                    fuse_unk, ignore_merges)
 *   post-processors: TemplateProcessing (single), ByteLevel (no-op for ids), Sequence
 *   decoders:        ByteLevel, Sequence, Replace, ByteFallback, Fuse, Strip, Metaspace
 * Anything else is refused with -ENOTSUP naming it. See tok.h. */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include "runtime/tok/tok_int.h"

void tok_free(tok_tokenizer *t)
{
	if (!t)
		return;
	if (t->id_s) {
		/* model vocab strings are owned by t->vocab, added ones by t->added */
		free(t->id_s);
	}
	free(t->id_len);
	free(t->id_special);
	free(t->id_byte);
	for (size_t i = 0; i < t->vmap.n; i++)
		free((char *)t->vocab[i].s);
	free(t->vocab);
	free(t->vmap.slot);
	free(t->merges.slot);
	for (size_t i = 0; i < t->n_added; i++)
		free(t->added[i].s);
	free(t->added);
	free(t->added_order);
	for (size_t i = 0; i < t->n_norm; i++) {
		free(t->norm[i].a);
		free(t->norm[i].b);
	}
	free(t->norm);
	free(t->pre);
	for (size_t i = 0; i < t->n_dec; i++) {
		free(t->dec[i].a);
		free(t->dec[i].b);
	}
	free(t->dec);
	free(t->post_pre);
	free(t->post_post);
	free(t->bos_text);
	free(t->eos_text);
	tok_jinja_free(t->chat_tpl);
	tok_jinja_free(t->chat_tpl_tools);
	free(t->chat_why);
	for (size_t i = 0; i < t->n_vars; i++) {
		free(t->var_k[i]);
		free(t->var_v[i]);
	}
	for (size_t i = 0; i < t->n_extra_special; i++)
		free(t->extra_special[i]);
	free(t->extra_special);
	free(t);
}

/* Pattern {"String": s} -> s; Regex patterns are not supported. */
static int get_pattern(json_t *pat, const char *what, const char **s, size_t *len, char *err,
		       size_t errlen)
{
	json_t *str = json_is_object(pat) ? json_object_get(pat, "String") : NULL;
	if (json_is_string(str)) {
		*s = json_string_value(str);
		*len = json_string_length(str);
		if (*len == 0 || *len > TOK_MAX_STR) {
			tok_err(err, errlen, "tokenizer.json: %s: pattern must be 1..%d bytes", what,
				TOK_MAX_STR);
			return -EINVAL;
		}
		return 0;
	}
	if (json_is_object(pat) && json_object_get(pat, "Regex")) {
		tok_err(err, errlen, "tokenizer.json: %s: Regex patterns are not supported", what);
		return -ENOTSUP;
	}
	tok_err(err, errlen, "tokenizer.json: %s: pattern must be {\"String\": ...}", what);
	return -EINVAL;
}

static const char *type_of(json_t *o)
{
	json_t *ty = json_is_object(o) ? json_object_get(o, "type") : NULL;
	return json_is_string(ty) ? json_string_value(ty) : NULL;
}

/* ---- normalizer */
static int load_norm(tok_tokenizer *t, json_t *n, int depth, char *err, size_t errlen)
{
	if (json_is_null(n))
		return 0;
	const char *ty = type_of(n);
	if (!ty || depth > 8) {
		tok_err(err, errlen, "tokenizer.json: normalizer: missing \"type\"");
		return -EINVAL;
	}
	if (!strcmp(ty, "Sequence")) {
		json_t *arr = json_object_get(n, "normalizers"), *it;
		size_t i;
		if (!json_is_array(arr)) {
			tok_err(err, errlen, "tokenizer.json: normalizer Sequence: \"normalizers\" must be an array");
			return -EINVAL;
		}
		json_array_foreach(arr, i, it) {
			int rc = load_norm(t, it, depth + 1, err, errlen);
			if (rc)
				return rc;
		}
		return 0;
	}
	tok_norm nm = {0};
	if (!strcmp(ty, "Prepend")) {
		json_t *p = json_object_get(n, "prepend");
		if (!json_is_string(p) || json_string_length(p) > TOK_MAX_STR) {
			tok_err(err, errlen, "tokenizer.json: normalizer Prepend: \"prepend\" must be a string");
			return -EINVAL;
		}
		nm.type = NORM_PREPEND;
		nm.alen = json_string_length(p);
		nm.a = tok_strndup(json_string_value(p), nm.alen);
		if (!nm.a)
			return -ENOMEM;
	} else if (!strcmp(ty, "Replace")) {
		const char *s;
		size_t len;
		int rc = get_pattern(json_object_get(n, "pattern"), "normalizer Replace", &s, &len, err,
				     errlen);
		if (rc)
			return rc;
		json_t *c = json_object_get(n, "content");
		if (!json_is_string(c) || json_string_length(c) > TOK_MAX_STR) {
			tok_err(err, errlen, "tokenizer.json: normalizer Replace: \"content\" must be a string");
			return -EINVAL;
		}
		nm.type = NORM_REPLACE;
		nm.a = tok_strndup(s, len);
		nm.alen = len;
		nm.blen = json_string_length(c);
		nm.b = tok_strndup(json_string_value(c), nm.blen);
		if (!nm.a || !nm.b) {
			free(nm.a);
			free(nm.b);
			return -ENOMEM;
		}
	} else {
		tok_err(err, errlen, "tokenizer.json: normalizer type \"%s\" is not supported", ty);
		return -ENOTSUP;
	}
	tok_norm *p = realloc(t->norm, (t->n_norm + 1) * sizeof *p);
	if (!p) {
		free(nm.a);
		free(nm.b);
		return -ENOMEM;
	}
	t->norm = p;
	t->norm[t->n_norm++] = nm;
	return 0;
}

static const char PAT_GPT2[] =
	"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char PAT_LLAMA3[] =
	"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static int parse_prepend_scheme(json_t *o, int *out, char *err, size_t errlen)
{
	json_t *ps = json_object_get(o, "prepend_scheme");
	if (json_is_string(ps)) {
		const char *s = json_string_value(ps);
		if (!strcmp(s, "always"))
			*out = PREPEND_ALWAYS;
		else if (!strcmp(s, "first"))
			*out = PREPEND_FIRST;
		else if (!strcmp(s, "never"))
			*out = PREPEND_NEVER;
		else {
			tok_err(err, errlen, "tokenizer.json: Metaspace: unknown prepend_scheme \"%s\"", s);
			return -EINVAL;
		}
		return 0;
	}
	json_t *aps = json_object_get(o, "add_prefix_space");
	*out = (!aps || json_is_true(aps)) ? PREPEND_ALWAYS : PREPEND_NEVER;
	return 0;
}

static int get_char(json_t *o, const char *key, const char *what, char *out, size_t *len,
		    char *err, size_t errlen)
{
	json_t *r = json_object_get(o, key);
	const char *s = json_is_string(r) ? json_string_value(r) : NULL;
	size_t n = s ? json_string_length(r) : 0;
	uint32_t cp;
	if (!s || n == 0 || n > 4 || tok_utf8_len((const unsigned char *)s, n, &cp) != n) {
		tok_err(err, errlen, "tokenizer.json: %s: \"%s\" must be one character", what, key);
		return -EINVAL;
	}
	memcpy(out, s, n);
	out[n] = 0;
	*len = n;
	return 0;
}

static int push_pre(tok_tokenizer *t, tok_pre *p)
{
	tok_pre *np = realloc(t->pre, (t->n_pre + 1) * sizeof *np);
	if (!np)
		return -ENOMEM;
	t->pre = np;
	t->pre[t->n_pre++] = *p;
	return 0;
}

static int load_pre(tok_tokenizer *t, json_t *n, int depth, char *err, size_t errlen)
{
	if (json_is_null(n))
		return 0;
	const char *ty = type_of(n);
	if (!ty || depth > 8) {
		tok_err(err, errlen, "tokenizer.json: pre_tokenizer: missing \"type\"");
		return -EINVAL;
	}
	tok_pre p = {0};
	if (!strcmp(ty, "Sequence")) {
		json_t *arr = json_object_get(n, "pretokenizers"), *it;
		size_t i;
		if (!json_is_array(arr)) {
			tok_err(err, errlen, "tokenizer.json: pre_tokenizer Sequence: \"pretokenizers\" must be an array");
			return -EINVAL;
		}
		json_array_foreach(arr, i, it) {
			int rc = load_pre(t, it, depth + 1, err, errlen);
			if (rc)
				return rc;
		}
		return 0;
	} else if (!strcmp(ty, "ByteLevel")) {
		json_t *aps = json_object_get(n, "add_prefix_space"), *ur = json_object_get(n, "use_regex");
		p.type = PRE_BYTELEVEL;
		p.add_prefix_space = json_is_true(aps);
		p.use_regex = !ur || json_is_true(ur);
		t->byte_level = 1;
	} else if (!strcmp(ty, "Split")) {
		json_t *pat = json_object_get(n, "pattern"), *beh = json_object_get(n, "behavior");
		json_t *inv = json_object_get(n, "invert");
		json_t *re = json_is_object(pat) ? json_object_get(pat, "Regex") : NULL;
		if (!json_is_string(re)) {
			tok_err(err, errlen, "tokenizer.json: pre_tokenizer Split: only {\"Regex\": ...} patterns are supported");
			return json_is_object(pat) && json_object_get(pat, "String") ? -ENOTSUP : -EINVAL;
		}
		const char *rs = json_string_value(re);
		if (!strcmp(rs, PAT_LLAMA3))
			p.type = PRE_SPLIT_LLAMA3;
		else if (!strcmp(rs, PAT_GPT2))
			p.type = PRE_SPLIT_GPT2;
		else {
			tok_err(err, errlen, "tokenizer.json: pre_tokenizer Split: regex \"%.80s\" is not one of the supported split patterns (GPT-2, LLaMA-3/cl100k)", rs);
			return -ENOTSUP;
		}
		if (!json_is_string(beh) || strcmp(json_string_value(beh), "Isolated") || json_is_true(inv)) {
			tok_err(err, errlen, "tokenizer.json: pre_tokenizer Split: only behavior \"Isolated\" without invert is supported");
			return -ENOTSUP;
		}
	} else if (!strcmp(ty, "Metaspace")) {
		int rc = get_char(n, "replacement", "pre_tokenizer Metaspace", p.repl, &p.repl_len, err, errlen);
		if (rc)
			return rc;
		if ((rc = parse_prepend_scheme(n, &p.prepend, err, errlen)))
			return rc;
		json_t *sp = json_object_get(n, "split");
		p.type = PRE_METASPACE;
		p.split = !sp || json_is_true(sp);
	} else {
		tok_err(err, errlen, "tokenizer.json: pre_tokenizer type \"%s\" is not supported", ty);
		return -ENOTSUP;
	}
	return push_pre(t, &p);
}

static int push_dec(tok_tokenizer *t, tok_dec *d)
{
	tok_dec *nd = realloc(t->dec, (t->n_dec + 1) * sizeof *nd);
	if (!nd) {
		free(d->a);
		free(d->b);
		return -ENOMEM;
	}
	t->dec = nd;
	t->dec[t->n_dec++] = *d;
	return 0;
}

static int load_dec(tok_tokenizer *t, json_t *n, int depth, char *err, size_t errlen)
{
	if (json_is_null(n))
		return 0;
	const char *ty = type_of(n);
	if (!ty || depth > 8) {
		tok_err(err, errlen, "tokenizer.json: decoder: missing \"type\"");
		return -EINVAL;
	}
	t->has_decoder = 1;
	tok_dec d = {0};
	if (!strcmp(ty, "Sequence")) {
		json_t *arr = json_object_get(n, "decoders"), *it;
		size_t i;
		if (!json_is_array(arr)) {
			tok_err(err, errlen, "tokenizer.json: decoder Sequence: \"decoders\" must be an array");
			return -EINVAL;
		}
		json_array_foreach(arr, i, it) {
			int rc = load_dec(t, it, depth + 1, err, errlen);
			if (rc)
				return rc;
		}
		return 0;
	} else if (!strcmp(ty, "ByteLevel")) {
		d.type = DEC_BYTELEVEL;
	} else if (!strcmp(ty, "ByteFallback")) {
		d.type = DEC_BYTEFALLBACK;
	} else if (!strcmp(ty, "Fuse")) {
		d.type = DEC_FUSE;
	} else if (!strcmp(ty, "Replace")) {
		const char *s;
		size_t len;
		int rc = get_pattern(json_object_get(n, "pattern"), "decoder Replace", &s, &len, err, errlen);
		if (rc)
			return rc;
		json_t *c = json_object_get(n, "content");
		if (!json_is_string(c) || json_string_length(c) > TOK_MAX_STR) {
			tok_err(err, errlen, "tokenizer.json: decoder Replace: \"content\" must be a string");
			return -EINVAL;
		}
		d.type = DEC_REPLACE;
		d.alen = len;
		d.a = tok_strndup(s, len);
		d.blen = json_string_length(c);
		d.b = tok_strndup(json_string_value(c), d.blen);
		if (!d.a || !d.b) {
			free(d.a);
			free(d.b);
			return -ENOMEM;
		}
	} else if (!strcmp(ty, "Strip")) {
		char c[8];
		size_t cl;
		int rc = get_char(n, "content", "decoder Strip", c, &cl, err, errlen);
		if (rc)
			return rc;
		json_t *st = json_object_get(n, "start"), *sp = json_object_get(n, "stop");
		if (!json_is_integer(st) || !json_is_integer(sp) || json_integer_value(st) < 0 ||
		    json_integer_value(sp) < 0 || json_integer_value(st) > 1 << 20 ||
		    json_integer_value(sp) > 1 << 20) {
			tok_err(err, errlen, "tokenizer.json: decoder Strip: \"start\"/\"stop\" must be small non-negative integers");
			return -EINVAL;
		}
		d.type = DEC_STRIP;
		d.a = tok_strndup(c, cl);
		d.alen = cl;
		d.start = (int)json_integer_value(st);
		d.stop = (int)json_integer_value(sp);
		if (!d.a)
			return -ENOMEM;
	} else if (!strcmp(ty, "Metaspace")) {
		char c[8];
		size_t cl;
		int rc = get_char(n, "replacement", "decoder Metaspace", c, &cl, err, errlen);
		if (rc)
			return rc;
		if ((rc = parse_prepend_scheme(n, &d.prepend, err, errlen)))
			return rc;
		d.type = DEC_METASPACE;
		d.a = tok_strndup(c, cl);
		d.alen = cl;
		if (!d.a)
			return -ENOMEM;
	} else {
		tok_err(err, errlen, "tokenizer.json: decoder type \"%s\" is not supported", ty);
		return -ENOTSUP;
	}
	return push_dec(t, &d);
}

/* id of a token string: added tokens first, then the model vocab */
int32_t tok_id(const tok_tokenizer *t, const char *token)
{
	if (!t || !token)
		return -1;
	size_t len = strlen(token);
	for (size_t i = 0; i < t->n_added; i++)
		if (t->added[i].len == len && !memcmp(t->added[i].s, token, len))
			return t->added[i].id;
	return tok_smap_get(&t->vmap, token, len);
}

static int append_ids(int32_t **arr, size_t *n, const int32_t *ids, size_t k)
{
	int32_t *p = realloc(*arr, (*n + k + 1) * sizeof *p);
	if (!p)
		return -ENOMEM;
	memcpy(p + *n, ids, k * sizeof *p);
	*arr = p;
	*n += k;
	return 0;
}

static int load_post(tok_tokenizer *t, json_t *n, int depth, char *err, size_t errlen)
{
	if (json_is_null(n))
		return 0;
	const char *ty = type_of(n);
	if (!ty || depth > 8) {
		tok_err(err, errlen, "tokenizer.json: post_processor: missing \"type\"");
		return -EINVAL;
	}
	if (!strcmp(ty, "ByteLevel"))
		return 0; /* offsets only */
	if (!strcmp(ty, "Sequence")) {
		json_t *arr = json_object_get(n, "processors"), *it;
		size_t i;
		if (!json_is_array(arr)) {
			tok_err(err, errlen, "tokenizer.json: post_processor Sequence: \"processors\" must be an array");
			return -EINVAL;
		}
		json_array_foreach(arr, i, it) {
			int rc = load_post(t, it, depth + 1, err, errlen);
			if (rc)
				return rc;
		}
		return 0;
	}
	if (strcmp(ty, "TemplateProcessing")) {
		tok_err(err, errlen, "tokenizer.json: post_processor type \"%s\" is not supported", ty);
		return -ENOTSUP;
	}
	json_t *single = json_object_get(n, "single"), *sp = json_object_get(n, "special_tokens"), *it;
	size_t i;
	int seen_a = 0;
	if (!json_is_array(single) || (sp && !json_is_object(sp))) {
		tok_err(err, errlen, "tokenizer.json: post_processor TemplateProcessing: \"single\" must be an array");
		return -EINVAL;
	}
	json_array_foreach(single, i, it) {
		json_t *seq = json_object_get(it, "Sequence"), *spt = json_object_get(it, "SpecialToken");
		if (json_is_object(seq)) {
			if (seen_a) {
				tok_err(err, errlen, "tokenizer.json: post_processor TemplateProcessing: \"single\" has two sequences");
				return -EINVAL;
			}
			seen_a = 1;
			continue;
		}
		json_t *name = json_is_object(spt) ? json_object_get(spt, "id") : NULL;
		json_t *ent = json_is_string(name) && sp ? json_object_get(sp, json_string_value(name)) : NULL;
		json_t *ids = json_is_object(ent) ? json_object_get(ent, "ids") : NULL, *idv;
		size_t j;
		if (!json_is_array(ids)) {
			tok_err(err, errlen, "tokenizer.json: post_processor TemplateProcessing: special token %s has no ids in \"special_tokens\"",
				json_is_string(name) ? json_string_value(name) : "(unnamed)");
			return -EINVAL;
		}
		json_array_foreach(ids, j, idv) {
			json_int_t v = json_is_integer(idv) ? json_integer_value(idv) : -1;
			if (v < 0 || v >= TOK_MAX_ID) {
				tok_err(err, errlen, "tokenizer.json: post_processor TemplateProcessing: bad id for %s", json_string_value(name));
				return -EINVAL;
			}
			int32_t id = (int32_t)v;
			int rc = seen_a ? append_ids(&t->post_post, &t->n_post_post, &id, 1)
					: append_ids(&t->post_pre, &t->n_post_pre, &id, 1);
			if (rc)
				return rc;
		}
	}
	if (!seen_a) {
		tok_err(err, errlen, "tokenizer.json: post_processor TemplateProcessing: \"single\" has no $A sequence");
		return -EINVAL;
	}
	return 0;
}

static int load_model(tok_tokenizer *t, json_t *m, char *err, size_t errlen)
{
	const char *ty = type_of(m);
	json_t *vocab = json_object_get(m, "vocab"), *merges = json_object_get(m, "merges");
	if (!json_is_object(m)) {
		tok_err(err, errlen, "tokenizer.json: missing \"model\" object");
		return -EINVAL;
	}
	if (ty && strcmp(ty, "BPE")) {
		tok_err(err, errlen, "tokenizer.json: model type \"%s\" is not supported (only BPE)", ty);
		return -ENOTSUP;
	}
	if (!json_is_object(vocab) || !json_is_array(merges)) {
		tok_err(err, errlen, "tokenizer.json: model: \"vocab\" must be an object and \"merges\" an array%s",
			ty ? "" : " (and \"type\" is missing)");
		return -EINVAL;
	}
	json_t *pfx = json_object_get(m, "continuing_subword_prefix");
	json_t *sfx = json_object_get(m, "end_of_word_suffix");
	json_t *dropout = json_object_get(m, "dropout");
	if ((pfx && !json_is_null(pfx) && !(json_is_string(pfx) && !json_string_length(pfx))) ||
	    (sfx && !json_is_null(sfx) && !(json_is_string(sfx) && !json_string_length(sfx)))) {
		tok_err(err, errlen, "tokenizer.json: model: continuing_subword_prefix / end_of_word_suffix are not supported");
		return -ENOTSUP;
	}
	if (dropout && !json_is_null(dropout) && !(json_is_number(dropout) && json_number_value(dropout) == 0)) {
		tok_err(err, errlen, "tokenizer.json: model: BPE dropout is not supported");
		return -ENOTSUP;
	}
	t->byte_fallback = json_is_true(json_object_get(m, "byte_fallback"));
	t->ignore_merges = json_is_true(json_object_get(m, "ignore_merges"));
	t->fuse_unk = json_is_true(json_object_get(m, "fuse_unk"));

	size_t nv = json_object_size(vocab);
	t->vocab = calloc(nv ? nv : 1, sizeof *t->vocab);
	if (!t->vocab)
		return -ENOMEM;
	const char *key;
	size_t klen;
	json_t *val;
	size_t i = 0;
	json_object_keylen_foreach(vocab, key, klen, val) {
		json_int_t id = json_is_integer(val) ? json_integer_value(val) : -1;
		if (id < 0 || id >= TOK_MAX_ID) {
			tok_err(err, errlen, "tokenizer.json: model.vocab: \"%.60s\" has no valid id (0..%d)", key, TOK_MAX_ID - 1);
			return -EINVAL;
		}
		if (klen == 0 || klen > TOK_MAX_STR || !tok_utf8_valid(key, klen) || memchr(key, 0, klen)) {
			tok_err(err, errlen, "tokenizer.json: model.vocab: token with id %lld is empty, too long or not UTF-8", (long long)id);
			return -EINVAL;
		}
		char *s = tok_strndup(key, klen);
		if (!s)
			return -ENOMEM;
		t->vocab[i].s = s;
		t->vocab[i].len = (uint32_t)klen;
		t->vocab[i].id = (int32_t)id;
		t->vmap.n = ++i;
		if ((size_t)id + 1 > t->n_ids)
			t->n_ids = (size_t)id + 1;
	}
	t->vmap.e = t->vocab;
	size_t dup;
	int rc = tok_smap_build(&t->vmap, &dup);
	if (rc == -EEXIST) {
		tok_err(err, errlen, "tokenizer.json: model.vocab: token \"%.60s\" appears twice", t->vocab[dup].s);
		return -EINVAL;
	}
	if (rc)
		return rc;

	json_t *unk = json_object_get(m, "unk_token");
	t->unk_id = -1;
	if (json_is_string(unk)) {
		t->unk_id = tok_smap_get(&t->vmap, json_string_value(unk), json_string_length(unk));
		if (t->unk_id < 0) {
			tok_err(err, errlen, "tokenizer.json: model: unk_token \"%.60s\" is not in the vocabulary", json_string_value(unk));
			return -EINVAL;
		}
	}
	for (int b = 0; b < 256; b++) {
		char name[8];
		snprintf(name, sizeof name, "<0x%02X>", b);
		t->byte_tok[b] = tok_smap_get(&t->vmap, name, 6);
	}

	size_t nm = json_array_size(merges);
	if ((rc = tok_mmap_init(&t->merges, nm)))
		return rc;
	json_t *mg;
	json_array_foreach(merges, i, mg) {
		const char *a = NULL, *b = NULL;
		size_t al = 0, bl = 0;
		if (json_is_string(mg)) {
			const char *s = json_string_value(mg);
			size_t n = json_string_length(mg);
			const char *sp = memchr(s, ' ', n);
			if (sp && !memchr(sp + 1, ' ', n - (size_t)(sp + 1 - s))) {
				a = s;
				al = (size_t)(sp - s);
				b = sp + 1;
				bl = n - al - 1;
			}
		} else if (json_is_array(mg) && json_array_size(mg) == 2 &&
			   json_is_string(json_array_get(mg, 0)) && json_is_string(json_array_get(mg, 1))) {
			a = json_string_value(json_array_get(mg, 0));
			al = json_string_length(json_array_get(mg, 0));
			b = json_string_value(json_array_get(mg, 1));
			bl = json_string_length(json_array_get(mg, 1));
		}
		if (!a) {
			tok_err(err, errlen, "tokenizer.json: model.merges[%zu]: must be \"a b\" or [\"a\", \"b\"]", i);
			return -EINVAL;
		}
		int32_t ia = tok_smap_get(&t->vmap, a, al), ib = tok_smap_get(&t->vmap, b, bl), ic = -1;
		if (ia >= 0 && ib >= 0 && al + bl <= TOK_MAX_STR) {
			char tmp[TOK_MAX_STR];
			memcpy(tmp, a, al);
			memcpy(tmp + al, b, bl);
			ic = tok_smap_get(&t->vmap, tmp, al + bl);
		}
		if (ic < 0) {
			tok_err(err, errlen, "tokenizer.json: model.merges[%zu]: \"%.40s\" + \"%.40s\": %s not in the vocabulary",
				i, a, b, ia < 0 ? "first part" : ib < 0 ? "second part" : "merged token");
			return -EINVAL;
		}
		tok_mmap_put(&t->merges, ia, ib, (int32_t)i, ic);
	}
	return 0;
}

static int u64_cmp(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
	return a < b ? -1 : a > b;
}

static int load_added(tok_tokenizer *t, json_t *arr, char *err, size_t errlen)
{
	if (!arr || json_is_null(arr))
		return 0;
	if (!json_is_array(arr)) {
		tok_err(err, errlen, "tokenizer.json: \"added_tokens\" must be an array");
		return -EINVAL;
	}
	size_t n = json_array_size(arr), i;
	json_t *it;
	t->added = calloc(n ? n : 1, sizeof *t->added);
	if (!t->added)
		return -ENOMEM;
	json_array_foreach(arr, i, it) {
		json_t *id = json_object_get(it, "id"), *c = json_object_get(it, "content");
		if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= TOK_MAX_ID ||
		    !json_is_string(c) || !json_string_length(c) || json_string_length(c) > TOK_MAX_STR ||
		    memchr(json_string_value(c), 0, json_string_length(c))) {
			tok_err(err, errlen, "tokenizer.json: added_tokens[%zu]: needs an integer \"id\" and a non-empty \"content\"", i);
			return -EINVAL;
		}
		if (json_is_true(json_object_get(it, "single_word"))) {
			tok_err(err, errlen, "tokenizer.json: added_tokens[%zu]: single_word is not supported", i);
			return -ENOTSUP;
		}
		tok_added *a = &t->added[t->n_added];
		a->len = json_string_length(c);
		a->s = tok_strndup(json_string_value(c), a->len);
		if (!a->s)
			return -ENOMEM;
		t->n_added++;
		a->id = (int32_t)json_integer_value(id);
		a->special = json_is_true(json_object_get(it, "special"));
		a->lstrip = json_is_true(json_object_get(it, "lstrip"));
		a->rstrip = json_is_true(json_object_get(it, "rstrip"));
		if ((size_t)a->id + 1 > t->n_ids)
			t->n_ids = (size_t)a->id + 1;
	}
	/* order: first byte, then longest first, then index (keys pack all three) */
	uint64_t *keys = malloc((t->n_added ? t->n_added : 1) * sizeof *keys);
	t->added_order = malloc((t->n_added ? t->n_added : 1) * sizeof *t->added_order);
	if (!keys || !t->added_order) {
		free(keys);
		return -ENOMEM;
	}
	for (i = 0; i < t->n_added; i++)
		keys[i] = ((uint64_t)(unsigned char)t->added[i].s[0] << 56) |
			  ((uint64_t)(TOK_MAX_STR - t->added[i].len) << 40) | i;
	qsort(keys, t->n_added, sizeof *keys, u64_cmp);
	for (i = 0; i < t->n_added; i++)
		t->added_order[i] = (uint32_t)(keys[i] & 0xFFFFFFFFFFULL);
	free(keys);
	size_t k = 0;
	for (int b = 0; b < 256; b++) {
		t->added_start[b] = (uint32_t)k;
		while (k < t->n_added && (unsigned char)t->added[t->added_order[k]].s[0] == b)
			k++;
	}
	t->added_start[256] = (uint32_t)k;
	return 0;
}

static int build_ids(tok_tokenizer *t, char *err, size_t errlen)
{
	size_t n = t->n_ids;
	t->id_s = calloc(n ? n : 1, sizeof *t->id_s);
	t->id_len = calloc(n ? n : 1, sizeof *t->id_len);
	t->id_special = calloc(n ? n : 1, 1);
	t->id_byte = malloc((n ? n : 1) * sizeof *t->id_byte);
	if (!t->id_s || !t->id_len || !t->id_special || !t->id_byte)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		t->id_byte[i] = -1;
	for (size_t i = 0; i < t->vmap.n; i++) {
		int32_t id = t->vocab[i].id;
		if (t->id_s[id]) {
			tok_err(err, errlen, "tokenizer.json: model.vocab: id %d is used by two tokens", id);
			return -EINVAL;
		}
		t->id_s[id] = (char *)t->vocab[i].s;
		t->id_len[id] = t->vocab[i].len;
	}
	for (size_t i = 0; i < t->n_added; i++) {
		tok_added *a = &t->added[i];
		t->id_s[a->id] = a->s;
		t->id_len[a->id] = (uint32_t)a->len;
		t->id_special[a->id] = a->special;
	}
	for (int b = 0; b < 256; b++)
		if (t->byte_tok[b] >= 0)
			t->id_byte[t->byte_tok[b]] = (int16_t)b;
	for (size_t i = 0; i < t->n_post_pre; i++)
		if ((size_t)t->post_pre[i] >= n || !t->id_s[t->post_pre[i]])
			goto bad_post;
	for (size_t i = 0; i < t->n_post_post; i++)
		if ((size_t)t->post_post[i] >= n || !t->id_s[t->post_post[i]])
			goto bad_post;
	return 0;
bad_post:
	tok_err(err, errlen, "tokenizer.json: post_processor uses an id that is not in the vocabulary");
	return -EINVAL;
}

/* bos_token / eos_token in tokenizer_config.json: a string or {"content": ...} */
static int cfg_token(tok_tokenizer *t, json_t *cfg, const char *key, char **text, int32_t *id, char *err,
		     size_t errlen)
{
	json_t *v = json_object_get(cfg, key);
	if (json_is_object(v))
		v = json_object_get(v, "content");
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v)) {
		tok_err(err, errlen, "tokenizer_config.json: \"%s\" must be a string or {\"content\": ...}", key);
		return -EINVAL;
	}
	*text = tok_strndup(json_string_value(v), json_string_length(v));
	if (!*text)
		return -ENOMEM;
	*id = tok_id(t, *text);
	if (*id < 0) {
		tok_err(err, errlen, "tokenizer_config.json: %s \"%.60s\" is not a token of tokenizer.json", key, *text);
		return -EINVAL;
	}
	return 0;
}

/* the special tokens set in tokenizer_config.json, as the chat template's variables */
static int load_vars(tok_tokenizer *t, json_t *cfg, char *err, size_t errlen)
{
	static const char *names[] = {"bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token",
				      "mask_token", NULL};
	for (int i = 0; names[i]; i++) {
		json_t *v = json_object_get(cfg, names[i]);
		if (json_is_object(v))
			v = json_object_get(v, "content");
		if (!json_is_string(v))
			continue;
		t->var_k[t->n_vars] = tok_strndup(names[i], strlen(names[i]));
		t->var_v[t->n_vars] = tok_strndup(json_string_value(v), json_string_length(v));
		t->n_vars++;
		if (!t->var_k[t->n_vars - 1] || !t->var_v[t->n_vars - 1])
			return -ENOMEM;
	}
	json_t *ex = json_object_get(cfg, "additional_special_tokens");
	if (!json_is_array(ex) || !json_array_size(ex))
		return 0;
	if (json_array_size(ex) > TOK_MAX_ID) {
		tok_err(err, errlen, "tokenizer_config.json: too many additional_special_tokens");
		return -EINVAL;
	}
	t->extra_special = calloc(json_array_size(ex), sizeof *t->extra_special);
	if (!t->extra_special)
		return -ENOMEM;
	size_t i;
	json_t *it;
	json_array_foreach(ex, i, it) {
		json_t *v = json_is_object(it) ? json_object_get(it, "content") : it;
		if (!json_is_string(v)) {
			tok_err(err, errlen, "tokenizer_config.json: additional_special_tokens[%zu] must be a string or {\"content\": ...}", i);
			return -EINVAL;
		}
		if (!(t->extra_special[t->n_extra_special] = tok_strndup(json_string_value(v), json_string_length(v))))
			return -ENOMEM;
		t->n_extra_special++;
	}
	return 0;
}

static int load_cfg(tok_tokenizer *t, json_t *cfg, char *err, size_t errlen)
{
	int rc = 0;
	if (!json_is_object(cfg)) {
		tok_err(err, errlen, "tokenizer_config.json: not a JSON object");
		return -EINVAL;
	}
	if ((rc = cfg_token(t, cfg, "bos_token", &t->bos_text, &t->bos, err, errlen)) ||
	    (rc = cfg_token(t, cfg, "eos_token", &t->eos_text, &t->eos, err, errlen)))
		goto out;
	if ((rc = load_vars(t, cfg, err, errlen)))
		goto out;
	json_t *ct = json_object_get(cfg, "chat_template");
	const char *tpl = NULL, *tools_tpl = NULL;
	size_t tpl_n = 0, tools_n = 0;
	if (json_is_array(ct)) { /* [{name, template}, ...]: "default", and "tool_use" for tools */
		size_t i;
		json_t *it;
		json_array_foreach(ct, i, it) {
			json_t *nm = json_object_get(it, "name"), *tx = json_object_get(it, "template");
			if (!json_is_string(nm) || !json_is_string(tx)) {
				tok_err(err, errlen, "tokenizer_config.json: chat_template[%zu] must be {\"name\": ..., \"template\": ...}", i);
				rc = -EINVAL;
				goto out;
			}
			if (!strcmp(json_string_value(nm), "default")) {
				tpl = json_string_value(tx);
				tpl_n = json_string_length(tx);
			} else if (!strcmp(json_string_value(nm), "tool_use")) {
				tools_tpl = json_string_value(tx);
				tools_n = json_string_length(tx);
			}
		}
		t->chat_named = !tpl && json_array_size(ct) > 0;
	} else if (json_is_string(ct)) {
		tpl = json_string_value(ct);
		tpl_n = json_string_length(ct);
	} else if (ct && !json_is_null(ct)) {
		tok_err(err, errlen, "tokenizer_config.json: \"chat_template\" must be a string or a list of {name, template}");
		rc = -EINVAL;
		goto out;
	}
	/* a template that does not parse leaves the tokenizer usable; chat says why it is refused */
	char why[300] = "";
	int prc = 0;
	if (tpl)
		prc = tok_jinja_parse(&t->chat_tpl, tpl, tpl_n, why, sizeof why);
	if (!prc && tools_tpl)
		prc = tok_jinja_parse(&t->chat_tpl_tools, tools_tpl, tools_n, why, sizeof why);
	if (prc == -ENOMEM) {
		rc = -ENOMEM;
		goto out;
	}
	if (prc) {
		tok_jinja_free(t->chat_tpl);
		tok_jinja_free(t->chat_tpl_tools);
		t->chat_tpl = t->chat_tpl_tools = NULL;
		if (!(t->chat_why = tok_strndup(why, strlen(why)))) {
			rc = -ENOMEM;
			goto out;
		}
	}
out:
	return rc;
}

int tok_load(tok_tokenizer **out, const char *tok_json, size_t tok_len, const char *cfg_json,
		size_t cfg_len, char *err, size_t errlen)
{
	if (err && errlen)
		err[0] = 0;
	if (!out || !tok_json) {
		tok_err(err, errlen, "no tokenizer.json given");
		return -EINVAL;
	}
	*out = NULL;
	json_error_t je;
	json_t *root = json_loadb(tok_json, tok_len, 0, &je), *cfg = NULL;
	if (!root) {
		tok_err(err, errlen, "tokenizer.json: %s (line %d, column %d)", je.text, je.line, je.column);
		return -EINVAL;
	}
	if (cfg_json) {
		cfg = json_loadb(cfg_json, cfg_len, JSON_DECODE_INT_AS_REAL, &je);
		if (!cfg) {
			tok_err(err, errlen, "tokenizer_config.json: %s (line %d)", je.text, je.line);
			json_decref(root);
			return -EINVAL;
		}
	}
	int rc = tok_load_json(out, root, cfg, err, errlen);
	json_decref(root);
	json_decref(cfg);
	return rc;
}

int tok_load_json(tok_tokenizer **out, struct json_t *root, struct json_t *cfg, char *err, size_t errlen)
{
	char dummy[8];
	if (!err || !errlen) {
		err = dummy;
		errlen = sizeof dummy;
	}
	err[0] = 0;
	if (!out || !root) {
		tok_err(err, errlen, "no tokenizer.json given");
		return -EINVAL;
	}
	*out = NULL;
	tok_bl_init();
	int rc = -ENOMEM;
	tok_tokenizer *t = calloc(1, sizeof *t);
	if (!t)
		goto fail;
	t->bos = t->eos = -1;
	t->unk_id = -1;
	if (!json_is_object(root)) {
		tok_err(err, errlen, "tokenizer.json: not a JSON object");
		rc = -EINVAL;
		goto fail;
	}
	json_t *model = json_object_get(root, "model");
	if (!model) {
		tok_err(err, errlen, "tokenizer.json: missing \"model\"");
		rc = -EINVAL;
		goto fail;
	}
	if ((rc = load_model(t, model, err, errlen)) ||
	    (rc = load_added(t, json_object_get(root, "added_tokens"), err, errlen)) ||
	    (rc = load_norm(t, json_object_get(root, "normalizer") ? json_object_get(root, "normalizer") : json_null(), 0, err, errlen)) ||
	    (rc = load_pre(t, json_object_get(root, "pre_tokenizer") ? json_object_get(root, "pre_tokenizer") : json_null(), 0, err, errlen)) ||
	    (rc = load_post(t, json_object_get(root, "post_processor") ? json_object_get(root, "post_processor") : json_null(), 0, err, errlen)) ||
	    (rc = load_dec(t, json_object_get(root, "decoder") ? json_object_get(root, "decoder") : json_null(), 0, err, errlen)) ||
	    (rc = build_ids(t, err, errlen)))
		goto fail;
	if (t->n_ids == 0) {
		tok_err(err, errlen, "tokenizer.json: empty vocabulary");
		rc = -EINVAL;
		goto fail;
	}
	if (cfg && (rc = load_cfg(t, cfg, err, errlen)))
		goto fail;
	if (t->bos < 0 && t->n_post_pre)
		t->bos = t->post_pre[0];
	static const char *bos_names[] = {"<s>", "<|begin_of_text|>", NULL};
	static const char *eos_names[] = {"</s>", "<|end_of_text|>", "<|endoftext|>", NULL};
	for (int i = 0; t->bos < 0 && bos_names[i]; i++)
		t->bos = tok_id(t, bos_names[i]);
	for (int i = 0; t->eos < 0 && eos_names[i]; i++)
		t->eos = tok_id(t, eos_names[i]);
	*out = t;
	return 0;
fail:
	if (rc == -ENOMEM && !err[0])
		tok_err(err, errlen, "out of memory loading the tokenizer");
	tok_free(t);
	return rc;
}

int32_t tok_bos(const tok_tokenizer *t) { return t ? t->bos : -1; }
int32_t tok_eos(const tok_tokenizer *t) { return t ? t->eos : -1; }
size_t tok_vocab_size(const tok_tokenizer *t) { return t ? t->n_ids : 0; }


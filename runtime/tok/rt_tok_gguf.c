/* rt_tok_gguf.c — GGUF tokenizer metadata -> tokenizer.json / tokenizer_config.json objects
 * (see rt_tok_gguf.h). */
#include "runtime/tok/rt_tok_gguf.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/base/rt_log.h"

/* split patterns of tokenizer.ggml.pre values, as the HF tokenizers of those models spell them */
static const char PAT_LLAMA3[] =
	"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char PAT_QWEN2[] =
	"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER = 4, TT_UNUSED = 5, TT_BYTE = 6 };

typedef struct merge {
	int32_t l, r;
	float score;
	uint32_t seq;              /* insertion order: the sort is stable */
} merge;

static int merge_cmp(const void *a, const void *b)
{
	const merge *x = a, *y = b;
	if (x->score != y->score)
		return x->score > y->score ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int lr_cmp(const void *a, const void *b)
{
	const merge *x = a, *y = b;
	if (x->l != y->l)
		return x->l < y->l ? -1 : 1;
	return x->r < y->r ? -1 : x->r > y->r;
}

static const snap_gguf_kv *arr(const snap_gguf *g, const char *key, snap_gguf_vtype want, int any_int)
{
	const snap_gguf_kv *kv = snap_gguf_find(g, key);
	if (!kv || kv->type != SNAP_GGUF_ARRAY)
		return NULL;
	if (any_int) {
		snap_gguf_vtype t = kv->arr_type;
		if (t == SNAP_GGUF_STRING || t == SNAP_GGUF_BOOL || t == SNAP_GGUF_F32 || t == SNAP_GGUF_F64)
			return NULL;
		return kv;
	}
	return kv->arr_type == want ? kv : NULL;
}

static int get_bool(const snap_gguf *g, const char *key, int def)
{
	const snap_gguf_kv *kv = snap_gguf_find(g, key);
	return kv && kv->type == SNAP_GGUF_BOOL ? (int)kv->u : def;
}

static json_t *added_entry(const char *s, size_t len, int64_t id, int special)
{
	return json_pack("{s:I,s:s%,s:b,s:b,s:b,s:b,s:b}", "id", (json_int_t)id, "content", s, len,
			 "single_word", 0, "lstrip", 0, "rstrip", 0, "normalized", !special, "special",
			 special);
}

/* SentencePiece merges: for every piece, each split into two pieces of the vocabulary (at a
 * character boundary), ordered within the piece by the ids of the halves; then all merges by
 * the merged piece's score, highest first, ties in that order (transformers'
 * SentencePieceExtractor). */
static int spm_merges(const snap_gguf_kv *tokens, const snap_gguf_kv *scores, json_t *vocab,
		      json_t *out, char *err, size_t errlen)
{
	size_t cap = 1024, n = 0, lcap = 64;
	merge *m = malloc(cap * sizeof *m), *local = malloc(lcap * sizeof *local);
	if (!m || !local) {
		free(m);
		free(local);
		return rt_errf(err, errlen, -ENOMEM, "out of memory");
	}
	for (uint64_t id = 0; id < tokens->arr_n; id++) {
		const snap_gguf_str *p = &tokens->arr_str[id];
		size_t nl = 0;
		float sc = (float)snap_gguf_arr_num(scores, id);
		if (p->len > lcap) {   /* at most len - 1 splits */
			merge *nlp = realloc(local, (size_t)p->len * sizeof *local);
			if (!nlp) {
				free(m);
				free(local);
				return rt_errf(err, errlen, -ENOMEM, "out of memory");
			}
			local = nlp;
			lcap = (size_t)p->len;
		}
		for (uint64_t i = 1; i < p->len; i++) {
			if (((unsigned char)p->s[i] & 0xC0) == 0x80)
				continue;   /* inside a UTF-8 sequence */
			json_t *l = json_object_getn(vocab, p->s, i), *r = json_object_getn(vocab, p->s + i, p->len - i);
			if (l && r)
				local[nl++] = (merge){(int32_t)json_integer_value(l), (int32_t)json_integer_value(r), sc, 0};
		}
		qsort(local, nl, sizeof *local, lr_cmp);
		if (n + nl > cap) {
			while (n + nl > cap)
				cap *= 2;
			merge *nm = realloc(m, cap * sizeof *m);
			if (!nm) {
				free(m);
				free(local);
				return rt_errf(err, errlen, -ENOMEM, "out of memory");
			}
			m = nm;
		}
		for (size_t j = 0; j < nl; j++) {
			local[j].seq = (uint32_t)n;
			m[n++] = local[j];
		}
	}
	free(local);
	qsort(m, n, sizeof *m, merge_cmp);
	int rc = 0;
	for (size_t i = 0; i < n && !rc; i++) {
		const snap_gguf_str *a = &tokens->arr_str[m[i].l], *b = &tokens->arr_str[m[i].r];
		json_t *pair = json_pack("[s%,s%]", a->s, (size_t)a->len, b->s, (size_t)b->len);
		if (!pair || json_array_append_new(out, pair))
			rc = rt_errf(err, errlen, -ENOMEM, "out of memory");
	}
	free(m);
	return rc;
}

int rt_tok_gguf_convert(const snap_gguf *g, json_t **tok_out, json_t **cfg_out, char *err, size_t errlen)
{
	*tok_out = *cfg_out = NULL;
	snap_gguf_str model, pre = {NULL, 0}, tpl;
	if (snap_gguf_get_str(g, "tokenizer.ggml.model", &model))
		return rt_errf(err, errlen, -ENOENT, "the GGUF file has no tokenizer (tokenizer.ggml.model)");
	int spm;
	if (model.len == 5 && !memcmp(model.s, "llama", 5))
		spm = 1;
	else if (model.len == 4 && !memcmp(model.s, "gpt2", 4))
		spm = 0;
	else
		return rt_errf(err, errlen, -ENOTSUP, "GGUF tokenizer model \"%.*s\" is not supported (only llama "
			       "SentencePiece and gpt2 byte-level BPE)", (int)(model.len > 40 ? 40 : model.len), model.s);
	const snap_gguf_kv *tokens = arr(g, "tokenizer.ggml.tokens", SNAP_GGUF_STRING, 0);
	const snap_gguf_kv *scores = arr(g, "tokenizer.ggml.scores", SNAP_GGUF_F32, 0);
	const snap_gguf_kv *types = arr(g, "tokenizer.ggml.token_type", 0, 1);
	const snap_gguf_kv *merges = arr(g, "tokenizer.ggml.merges", SNAP_GGUF_STRING, 0);
	if (!tokens || tokens->arr_n == 0 || tokens->arr_n > (1u << 24))
		return rt_errf(err, errlen, -EBADMSG, "GGUF tokenizer.ggml.tokens: need an array of 1..2^24 strings");
	uint64_t n = tokens->arr_n;
	if (spm && (!scores || scores->arr_n != n))
		return rt_errf(err, errlen, -EBADMSG, "GGUF tokenizer.ggml.scores: need one float32 score per token (%llu)",
			       (unsigned long long)n);
	if (types && types->arr_n != n)
		return rt_errf(err, errlen, -EBADMSG, "GGUF tokenizer.ggml.token_type: %llu entries for %llu tokens",
			       (unsigned long long)types->arr_n, (unsigned long long)n);
	if (!spm && !merges)
		return rt_errf(err, errlen, -EBADMSG, "GGUF tokenizer.ggml.merges: a gpt2 tokenizer needs its merges");
	const char *pat = NULL;
	int use_regex = 0, ignore_merges = 0;
	if (!spm) {
		snap_gguf_get_str(g, "tokenizer.ggml.pre", &pre);
		if (!pre.s || (pre.len == 7 && !memcmp(pre.s, "default", 7)) || (pre.len == 4 && !memcmp(pre.s, "gpt2", 4))) {
			use_regex = 1;
		} else if ((pre.len == 9 && !memcmp(pre.s, "llama-bpe", 9)) || (pre.len == 6 && !memcmp(pre.s, "llama3", 6))) {
			pat = PAT_LLAMA3;
			ignore_merges = 1;
		} else if (pre.len == 5 && !memcmp(pre.s, "qwen2", 5)) {
			pat = PAT_QWEN2;
		} else {
			return rt_errf(err, errlen, -ENOTSUP, "GGUF tokenizer.ggml.pre \"%.*s\": its split pattern is not one thaw knows "
				       "(default, gpt2, llama-bpe, qwen2)", (int)(pre.len > 40 ? 40 : pre.len), pre.s);
		}
	}
	static const char *const id_keys[] = {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
		"tokenizer.ggml.unknown_token_id", "tokenizer.ggml.padding_token_id"};
	int64_t ids[4] = {-1, -1, -1, -1};
	for (int k = 0; k < 4; k++) {
		uint64_t v;
		int r = snap_gguf_get_uint(g, id_keys[k], &v);
		if (r == -EINVAL || (r == 0 && v >= n))
			return rt_errf(err, errlen, -EBADMSG, "GGUF %s: not a token id below %llu", id_keys[k],
				       (unsigned long long)n);
		if (r == 0)
			ids[k] = (int64_t)v;
	}

	int rc = -ENOMEM;
	json_t *tok = json_object(), *cfg = json_object(), *vocab = json_object(), *added = json_array();
	json_t *jm = json_array(), *atd = json_object();
	if (!tok || !cfg || !vocab || !added || !jm || !atd)
		goto nomem;
	for (uint64_t i = 0; i < n; i++) {
		const snap_gguf_str *s = &tokens->arr_str[i];
		int64_t ty = types ? snap_gguf_arr_int(types, i) : TT_NORMAL;
		json_t *id = json_integer((json_int_t)i);
		if (s->len == 0 || memchr(s->s, 0, s->len) || !id) {
			json_decref(id);
			rc = rt_errf(err, errlen, -EBADMSG, "GGUF token %llu is empty or holds a NUL byte", (unsigned long long)i);
			goto fail;
		}
		if (json_object_getn(vocab, s->s, s->len)) {
			json_decref(id);
			rc = rt_errf(err, errlen, -EBADMSG, "GGUF token %llu \"%.*s\" appears twice in tokenizer.ggml.tokens",
				     (unsigned long long)i, (int)(s->len > 40 ? 40 : s->len), s->s);
			goto fail;
		}
		if (json_object_setn_new(vocab, s->s, s->len, id)) {
			rc = rt_errf(err, errlen, -EBADMSG, "GGUF token %llu is not valid UTF-8", (unsigned long long)i);
			goto fail;
		}
		if (ty == TT_CONTROL || ty == TT_UNKNOWN || ty == TT_USER) {
			int special = ty != TT_USER;
			json_t *e = added_entry(s->s, s->len, (int64_t)i, special), *d;
			char key[24];
			if (!e || json_array_append_new(added, e))
				goto nomem;
			d = json_deep_copy(e);
			if (!d)
				goto nomem;
			json_object_del(d, "id");
			snprintf(key, sizeof key, "%llu", (unsigned long long)i);
			if (json_object_set_new(atd, key, d))
				goto nomem;
		}
	}
	if (spm) {
		if ((rc = spm_merges(tokens, scores, vocab, jm, err, errlen)))
			goto fail;
	} else {
		for (uint64_t i = 0; i < merges->arr_n; i++) {
			const snap_gguf_str *s = &merges->arr_str[i];
			json_t *e = json_stringn(s->s, s->len);
			if (!e) {
				rc = rt_errf(err, errlen, -EBADMSG, "GGUF merge %llu is not valid UTF-8", (unsigned long long)i);
				goto fail;
			}
			if (json_array_append_new(jm, e))
				goto nomem;
		}
	}
	const char *tokstr[4] = {NULL, NULL, NULL, NULL};
	size_t toklen[4] = {0};
	for (int k = 0; k < 4; k++)
		if (ids[k] >= 0) {
			tokstr[k] = tokens->arr_str[ids[k]].s;
			toklen[k] = tokens->arr_str[ids[k]].len;
		}

	/* model */
	json_t *jmodel = json_pack("{s:s,s:n,s:n,s:n,s:b,s:b,s:b}", "type", "BPE", "dropout",
				   "continuing_subword_prefix", "end_of_word_suffix", "fuse_unk", spm,
				   "byte_fallback", spm, "ignore_merges", ignore_merges);
	if (!jmodel || json_object_set_new(tok, "version", json_string("1.0")) ||
	    json_object_set_new(tok, "truncation", json_null()) || json_object_set_new(tok, "padding", json_null()) ||
	    json_object_set(tok, "added_tokens", added)) {
		json_decref(jmodel);
		goto nomem;
	}
	if (spm && tokstr[2])
		json_object_set_new(jmodel, "unk_token", json_stringn(tokstr[2], toklen[2]));
	else
		json_object_set_new(jmodel, "unk_token", json_null());
	json_object_set(jmodel, "vocab", vocab);
	json_object_set(jmodel, "merges", jm);

	/* normalizer, pre-tokenizer, decoder: HF's LlamaConverter (legacy) / GPT-2 byte level */
	int add_bos = get_bool(g, "tokenizer.ggml.add_bos_token", spm), add_eos = get_bool(g, "tokenizer.ggml.add_eos_token", 0);
	if (spm) {
		int prefix = get_bool(g, "tokenizer.ggml.add_space_prefix", 1);
		json_t *norms = json_array();
		if (prefix)
			json_array_append_new(norms, json_pack("{s:s,s:s}", "type", "Prepend", "prepend", "\xe2\x96\x81"));
		json_array_append_new(norms, json_pack("{s:s,s:{s:s},s:s}", "type", "Replace", "pattern", "String", " ",
						       "content", "\xe2\x96\x81"));
		json_object_set_new(tok, "normalizer", json_pack("{s:s,s:o}", "type", "Sequence", "normalizers", norms));
		json_object_set_new(tok, "pre_tokenizer", json_null());
	} else {
		json_object_set_new(tok, "normalizer", json_null());
		json_t *bl = json_pack("{s:s,s:b,s:b,s:b}", "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 1,
				       "use_regex", use_regex);
		if (pat)
			json_object_set_new(tok, "pre_tokenizer", json_pack("{s:s,s:[{s:s,s:{s:s},s:s,s:b},o]}", "type", "Sequence",
				"pretokenizers", "type", "Split", "pattern", "Regex", pat, "behavior", "Isolated", "invert", 0, bl));
		else
			json_object_set_new(tok, "pre_tokenizer", bl);
	}
	/* the post-processor adds bos / eos as the GGUF says */
	json_t *single = json_array(), *sp = json_object();
	if (add_bos && tokstr[0]) {
		json_array_append_new(single, json_pack("{s:{s:s%,s:i}}", "SpecialToken", "id", tokstr[0], toklen[0], "type_id", 0));
		json_object_setn_new(sp, tokstr[0], toklen[0], json_pack("{s:s%,s:[I],s:[s%]}", "id", tokstr[0], toklen[0],
			"ids", (json_int_t)ids[0], "tokens", tokstr[0], toklen[0]));
	}
	json_array_append_new(single, json_pack("{s:{s:s,s:i}}", "Sequence", "id", "A", "type_id", 0));
	if (add_eos && tokstr[1]) {
		json_array_append_new(single, json_pack("{s:{s:s%,s:i}}", "SpecialToken", "id", tokstr[1], toklen[1], "type_id", 0));
		json_object_setn_new(sp, tokstr[1], toklen[1], json_pack("{s:s%,s:[I],s:[s%]}", "id", tokstr[1], toklen[1],
			"ids", (json_int_t)ids[1], "tokens", tokstr[1], toklen[1]));
	}
	if (json_array_size(single) > 1)
		json_object_set_new(tok, "post_processor", json_pack("{s:s,s:o,s:o}", "type", "TemplateProcessing",
								     "single", single, "special_tokens", sp));
	else {
		json_decref(single);
		json_decref(sp);
		json_object_set_new(tok, "post_processor", json_null());
	}
	if (spm)
		json_object_set_new(tok, "decoder", json_pack("{s:s,s:[{s:s,s:{s:s},s:s},{s:s},{s:s},{s:s,s:s,s:i,s:i}]}",
			"type", "Sequence", "decoders", "type", "Replace", "pattern", "String", "\xe2\x96\x81", "content", " ",
			"type", "ByteFallback", "type", "Fuse", "type", "Strip", "content", " ", "start", 1, "stop", 0));
	else
		json_object_set_new(tok, "decoder", json_pack("{s:s,s:b,s:b,s:b}", "type", "ByteLevel", "add_prefix_space", 1,
							      "trim_offsets", 1, "use_regex", 1));
	if (json_object_set_new(tok, "model", jmodel))
		goto nomem;

	/* tokenizer_config.json */
	static const char *const cfg_keys[] = {"bos_token", "eos_token", "unk_token", "pad_token"};
	json_object_set_new(cfg, "add_bos_token", json_boolean(add_bos));
	json_object_set_new(cfg, "add_eos_token", json_boolean(add_eos));
	json_object_set(cfg, "added_tokens_decoder", atd);
	for (int k = 0; k < 4; k++)
		json_object_set_new(cfg, cfg_keys[k], tokstr[k] ? json_stringn(tokstr[k], toklen[k]) : json_null());
	if (snap_gguf_get_str(g, "tokenizer.chat_template", &tpl) == 0) {
		json_t *t = json_stringn(tpl.s, tpl.len);
		if (!t) {
			rc = rt_errf(err, errlen, -EBADMSG, "GGUF tokenizer.chat_template is not valid UTF-8");
			goto fail;
		}
		json_object_set_new(cfg, "chat_template", t);
	}
	json_object_set_new(cfg, "clean_up_tokenization_spaces", json_false());
	if (spm)
		json_object_set_new(cfg, "legacy", json_true());
	json_object_set_new(cfg, "tokenizer_class", json_string(spm ? "LlamaTokenizerFast" : "PreTrainedTokenizerFast"));
	json_decref(vocab);
	json_decref(added);
	json_decref(jm);
	json_decref(atd);
	*tok_out = tok;
	*cfg_out = cfg;
	return 0;
nomem:
	rc = rt_errf(err, errlen, -ENOMEM, "out of memory converting the GGUF tokenizer");
fail:
	json_decref(tok);
	json_decref(cfg);
	json_decref(vocab);
	json_decref(added);
	json_decref(jm);
	json_decref(atd);
	return rc;
}

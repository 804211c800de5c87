/* rt_tok.c — tokenizers carried in snapshots (see rt_tok.h and
 * docs/snapshot-format.md, "Tokenizer"). */
#include "runtime/tok/rt_tok.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/base/rt_log.h"
#include "runtime/tok/tok_jinja.h"
#include "snapshot/snap.h"
#include "snapshot/snap_st.h"

int rt_tok_from_meta_obj(json_t *m, tok_tokenizer **out, char *err, size_t errlen)
{
	if (!out)
		return rt_errf(err, errlen, -EINVAL, "no output");
	*out = NULL;
	if (!json_is_object(m))
		return rt_errf(err, errlen, -EINVAL, "snapshot metadata is not a JSON object");
	json_t *tok = json_object_get(m, "tokenizer"), *cfg = json_object_get(m, "tokenizer_config");
	if (!tok || json_is_null(tok))
		return rt_errf(err, errlen, -ENOENT, "the snapshot carries no tokenizer");
	if (json_is_object(tok) && json_is_string(json_object_get(tok, "carried")))
		return rt_errf(err, errlen, -EBADMSG, "the snapshot's tokenizer attachment is missing");
	if (!json_is_object(tok) || (cfg && !json_is_null(cfg) && !json_is_object(cfg)))
		return rt_errf(err, errlen, -EINVAL, "snapshot metadata: \"tokenizer\" and \"tokenizer_config\" must be JSON objects");
	return tok_load_json(out, tok, json_is_object(cfg) ? cfg : NULL, err, errlen);
}

int rt_tok_from_meta(const char *meta_json, tok_tokenizer **out, char *err, size_t errlen)
{
	if (!meta_json || !out)
		return rt_errf(err, errlen, -EINVAL, "no metadata");
	*out = NULL;
	json_t *m = json_loads(meta_json, 0, NULL);
	int rc = rt_tok_from_meta_obj(m, out, err, errlen);
	json_decref(m);
	return rc;
}

int rt_tok_from_file(const snap_file *f, json_t *meta, tok_tokenizer **out, char *err, size_t errlen)
{
	void *buf;
	size_t len;
	*out = NULL;
	int rc = snap_attachment_read(f, &buf, &len, err, errlen);
	if (rc == -ENOENT) {   /* none: a snapshot packed before attachments kept it in the metadata */
		if (meta)
			return rt_tok_from_meta_obj(meta, out, err, errlen);
		return rt_tok_from_meta(snap_metadata_json(f), out, err, errlen);
	}
	if (rc)
		return rc;
	json_error_t je;
	json_t *a = json_loadb(buf, len, 0, &je);
	free(buf);
	if (!json_is_object(a)) {
		json_decref(a);
		return rt_errf(err, errlen, -EINVAL, "snapshot attachment: not the tokenizer's JSON object");
	}
	rc = rt_tok_from_meta_obj(a, out, err, errlen);
	json_decref(a);
	return rc;
}

int rt_tok_from_snapshot(const char *snap_path, tok_tokenizer **out, char *err, size_t errlen)
{
	if (!snap_path || !out)
		return rt_errf(err, errlen, -EINVAL, "no snapshot path");
	*out = NULL;
	snap_file *f;
	int rc = snap_open(&f, snap_path, err, errlen);
	if (rc)
		return rc;
	rc = rt_tok_from_file(f, NULL, out, err, errlen);
	snap_close(f);
	return rc;
}

static char *path_join(const char *dir, const char *name)
{
	size_t n = strlen(dir) + strlen(name) + 2;
	char *p = malloc(n);
	if (p)
		snprintf(p, n, "%s/%s", dir, name);
	return p;
}

static int is_file(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

int rt_tok_find(const char *spec, int required, char **tok_path, char **cfg_path, char *err,
		size_t errlen)
{
	*tok_path = *cfg_path = NULL;
	struct stat st;
	if (!spec || stat(spec, &st))
		return rt_errf(err, errlen, -ENOENT, "tokenizer: %s: no such file or directory", spec ? spec : "(none)");
	char *dir;
	if (!required && !S_ISDIR(st.st_mode))
		return 0; /* a .safetensors source: nothing to look for */
	if (S_ISDIR(st.st_mode)) {
		dir = strdup(spec);
		*tok_path = path_join(spec, "tokenizer.json");
		if (!dir || !*tok_path)
			goto nomem;
		if (!is_file(*tok_path)) {
			free(*tok_path);
			*tok_path = NULL;
			free(dir);
			return required ? rt_errf(err, errlen, -ENOENT, "tokenizer: %s has no tokenizer.json", spec) : 0;
		}
	} else {
		*tok_path = strdup(spec);
		const char *slash = strrchr(spec, '/');
		dir = slash ? strndup(spec, (size_t)(slash - spec) + (slash == spec)) : strdup(".");
		if (!dir || !*tok_path)
			goto nomem;
	}
	*cfg_path = path_join(dir, "tokenizer_config.json");
	free(dir);
	if (!*cfg_path)
		goto nomem2;
	if (!is_file(*cfg_path)) {
		free(*cfg_path);
		*cfg_path = NULL;
	}
	return 0;
nomem:
	free(dir);
nomem2:
	free(*tok_path);
	*tok_path = NULL;
	return rt_errf(err, errlen, -ENOMEM, "out of memory");
}

/* reads a JSON object file; big integers (model_max_length) become reals only when needed */
static int load_obj(const char *path, json_t **out, char **text, size_t *len, char *err,
		    size_t errlen)
{
	*out = NULL;
	int fd = snap_open_regular(path, 0);   /* a FIFO must not block the open */
	if (fd < 0)
		return rt_errf(err, errlen, fd, "%s: %s", path,
			       fd == -EINVAL ? "not a regular file" : strerror(-fd));
	FILE *f = fdopen(fd, "rb");
	if (!f) {
		close(fd);
		return rt_errf(err, errlen, -ENOMEM, "%s: out of memory", path);
	}
	char *buf = NULL;
	size_t n = 0, cap = 0;
	for (;;) {
		if (n + 65536 > cap) {
			cap = cap ? cap * 2 : 1 << 20;
			char *nb = realloc(buf, cap);
			if (!nb) {
				free(buf);
				fclose(f);
				return rt_errf(err, errlen, -ENOMEM, "out of memory reading %s", path);
			}
			buf = nb;
		}
		size_t r = fread(buf + n, 1, cap - n, f);
		n += r;
		if (r == 0)
			break;
	}
	fclose(f);
	json_error_t je;
	json_t *j = json_loadb(buf, n, 0, &je);
	if (!j)
		j = json_loadb(buf, n, JSON_DECODE_INT_AS_REAL, &je);
	if (!json_is_object(j)) {
		free(buf);
		json_decref(j);
		return rt_errf(err, errlen, -EINVAL, "%s: %s (line %d)", path, j ? "not a JSON object" : je.text, je.line);
	}
	*out = j;
	*text = buf;
	*len = n;
	return 0;
}

/* Hugging Face repositories saved by newer transformers keep the chat template in
 * chat_template.jinja beside tokenizer.json (processors: chat_template.json, {"chat_template":
 * ...}); transformers' loader lets that file's template win over tokenizer_config.json's. Merges
 * it into *cfg (made when there is none) as "chat_template". */
static int merge_chat_file(const char *tok_path, json_t **cfg, char *err, size_t errlen)
{
	const char *slash = strrchr(tok_path, '/');
	size_t dl = slash ? (size_t)(slash - tok_path) + 1 : 0;
	static const char *names[] = {"chat_template.jinja", "chat_template.json", NULL};
	for (int i = 0; names[i]; i++) {
		char path[4096];
		if (dl + strlen(names[i]) >= sizeof path)
			return 0;
		memcpy(path, tok_path, dl);
		strcpy(path + dl, names[i]);
		if (!is_file(path))
			continue;
		json_t *tpl = NULL;
		if (i == 1) {
			json_t *o = NULL;
			char *text = NULL;
			size_t n;
			int rc = load_obj(path, &o, &text, &n, err, errlen);
			free(text);
			if (rc)
				return rc;
			tpl = json_incref(json_object_get(o, "chat_template"));
			json_decref(o);
			if (!json_is_string(tpl)) {
				json_decref(tpl);
				return rt_errf(err, errlen, -EINVAL, "%s: \"chat_template\" must be a string", path);
			}
		} else {
			int fd = snap_open_regular(path, 0);
			if (fd < 0)
				return rt_errf(err, errlen, fd, "%s: %s", path, fd == -EINVAL ? "not a regular file" : strerror(-fd));
			size_t cap = TOK_JINJA_MAX_SRC + 1, n = 0;
			char *buf = malloc(cap);
			ssize_t r = 1;
			while (buf && n < cap && (r = read(fd, buf + n, cap - n)) > 0)
				n += (size_t)r;
			close(fd);
			if (!buf)
				return rt_errf(err, errlen, -ENOMEM, "out of memory");
			if (r < 0 || n >= cap) {
				free(buf);
				return rt_errf(err, errlen, r < 0 ? -EIO : -E2BIG, "%s: %s", path,
					       r < 0 ? "read error" : "larger than a chat template may be (512 KiB)");
			}
			tpl = json_stringn(buf, n);
			free(buf);
			if (!tpl)
				return rt_errf(err, errlen, -EINVAL, "%s: not UTF-8 text", path);
		}
		if (!*cfg && !(*cfg = json_object())) {
			json_decref(tpl);
			return rt_errf(err, errlen, -ENOMEM, "out of memory");
		}
		if (json_object_set_new(*cfg, "chat_template", tpl))
			return rt_errf(err, errlen, -ENOMEM, "out of memory");
		return 0;
	}
	return 0;
}

int rt_tok_pack_metadata(const char *user_meta, const char *tok_path, const char *cfg_path,
			 char **out, char **attach, size_t *attach_len, char *warn, size_t warnlen,
			 char *err, size_t errlen)
{
	json_t *tok = NULL, *cfg = NULL;
	char *tt = NULL, *ct = NULL;
	size_t tl = 0, cl = 0;
	int rc;
	*out = NULL;
	*attach = NULL;
	*attach_len = 0;
	if ((rc = load_obj(tok_path, &tok, &tt, &tl, err, errlen)) ||
	    (cfg_path && (rc = load_obj(cfg_path, &cfg, &ct, &cl, err, errlen))) ||
	    (rc = merge_chat_file(tok_path, &cfg, err, errlen)))
		goto out;
	rc = rt_tok_pack_metadata_obj(user_meta, tok, cfg, out, attach, attach_len, warn, warnlen, err, errlen);
out:
	free(tt);
	free(ct);
	json_decref(tok);
	json_decref(cfg);
	return rc;
}

int rt_tok_pack_metadata_obj(const char *user_meta, json_t *tok, json_t *cfg, char **out,
			     char **attach, size_t *attach_len, char *warn, size_t warnlen,
			     char *err, size_t errlen)
{
	*out = NULL;
	*attach = NULL;
	*attach_len = 0;
	if (warn && warnlen)
		warn[0] = 0;
	json_t *m = NULL;
	int rc;
	if (user_meta) {
		json_error_t je;
		m = json_loads(user_meta, 0, &je);
		if (!json_is_object(m)) {
			rc = rt_errf(err, errlen, -EINVAL, "--metadata is not a JSON object");
			goto out;
		}
	} else if (!(m = json_object())) {
		rc = rt_errf(err, errlen, -ENOMEM, "out of memory");
		goto out;
	}
	if (json_object_get(m, "tokenizer") || json_object_get(m, "tokenizer_config")) {
		rc = rt_errf(err, errlen, -EEXIST, "--metadata already has \"tokenizer\"/\"tokenizer_config\" while a tokenizer is packed too");
		goto out;
	}
	tok_tokenizer *t;
	char why[512];
	int lrc = tok_load_json(&t, tok, cfg, why, sizeof why);
	if (lrc == 0)
		tok_free(t);
	else if (warn && warnlen)
		snprintf(warn, warnlen, "%s", why);
	/* the tokenizer goes into the snapshot's attachment, a short note into the metadata: opening
	 * a snapshot (every cold start) parses the metadata, not the tokenizer */
	json_t *a = json_object(), *model = json_object_get(tok, "model");
	json_t *ty = json_is_object(model) ? json_object_get(model, "type") : NULL;
	json_t *vocab = json_is_object(model) ? json_object_get(model, "vocab") : NULL;
	if (!a || json_object_set(a, "tokenizer", tok) || (cfg && json_object_set(a, "tokenizer_config", cfg)) ||
	    json_object_set_new(m, "tokenizer", json_pack("{s:s,s:s,s:I,s:b}", "carried", "attachment",
							  "model", json_is_string(ty) ? json_string_value(ty) : "?",
							  "vocab", (json_int_t)json_object_size(vocab),
							  "config", cfg != NULL)) ||
	    !(*attach = json_dumps(a, JSON_COMPACT)) || !(*out = json_dumps(m, JSON_COMPACT))) {
		json_decref(a);
		free(*attach);
		*attach = NULL;
		rc = rt_errf(err, errlen, -ENOMEM, "out of memory");
		goto out;
	}
	json_decref(a);
	*attach_len = strlen(*attach);
	rc = 0;
out:
	json_decref(m);
	return rc;
}

/* the model's vocabulary: rows of its output / embedding matrices, else config.json's
 * vocab_size; *what names where it came from; 0 when unknown */
static int64_t model_vocab(const char *src, const char **what)
{
	snap_st *s;
	char e[256];
	int64_t v = 0;
	*what = "";
	if (snap_st_open(&s, src, e, sizeof e) < 0)
		return 0;
	static const char *const names[] = {"lm_head.weight", "model.embed_tokens.weight"};
	for (size_t i = 0; i < s->n; i++)
		for (int k = 0; k < 2; k++)
			if (!strcmp(s->t[i].name, names[k]) && s->t[i].ndim == 2 && s->t[i].shape[0] > 0 &&
			    (v == 0 || (int64_t)s->t[i].shape[0] < v)) {
				v = (int64_t)s->t[i].shape[0];
				*what = names[k];
			}
	if (v == 0 && s->config) {
		json_t *c = json_loads(s->config, JSON_DECODE_INT_AS_REAL, NULL);
		json_t *tc = json_object_get(c, "text_config");   /* multimodal configs nest it */
		json_t *vs = json_object_get(c, "vocab_size");
		if (!json_is_number(vs))
			vs = json_object_get(tc, "vocab_size");
		if (json_is_number(vs) && json_number_value(vs) >= 1 && json_number_value(vs) < 1e12) {
			v = (int64_t)json_number_value(vs);
			*what = "config.json vocab_size";
		}
		json_decref(c);
	}
	snap_st_close(s);
	return v;
}

int rt_tok_check_model(const char *src, const char *tok_path, const char *cfg_path, char *err,
		       size_t errlen)
{
	const char *what;
	int64_t mv = model_vocab(src, &what);
	if (mv <= 0)
		return 0;
	json_t *tok = NULL, *cfg = NULL, *conf = NULL;
	char *tt = NULL, *ct = NULL;
	size_t tl, cl;
	int rc = load_obj(tok_path, &tok, &tt, &tl, err, errlen);
	if (rc == 0 && cfg_path)
		rc = load_obj(cfg_path, &cfg, &ct, &cl, err, errlen);
	free(tt);
	free(ct);
	if (rc == 0) {
		/* config.json beside the weights: its special ids must fit too */
		struct stat st;
		char *cp = stat(src, &st) == 0 && S_ISDIR(st.st_mode) ? path_join(src, "config.json") : NULL;
		if (cp && is_file(cp)) {
			char *xt = NULL;
			size_t xl;
			char e2[256];
			if (load_obj(cp, &conf, &xt, &xl, e2, sizeof e2))
				conf = NULL;
			free(xt);
		}
		free(cp);
		rc = rt_tok_check_vocab(mv, what, tok, cfg, conf, tok_path, cfg_path ? cfg_path : "tokenizer_config.json",
					err, errlen);
	}
	json_decref(tok);
	json_decref(cfg);
	json_decref(conf);
	return rc;
}

/* the largest of an integer or an array of integers (config.json eos_token_id may be either);
 * -1 when none, -2 when negative or not integers */
static long long max_id(json_t *v)
{
	long long top = -1;
	size_t i;
	json_t *e;
	if (!v || json_is_null(v))
		return -1;
	if (json_is_integer(v))
		return json_integer_value(v) < 0 ? -2 : json_integer_value(v);
	if (!json_is_array(v))
		return -2;
	json_array_foreach(v, i, e) {
		if (!json_is_integer(e) || json_integer_value(e) < 0)
			return -2;
		if (json_integer_value(e) > top)
			top = json_integer_value(e);
	}
	return top;
}

int rt_tok_check_vocab(int64_t mv, const char *what, json_t *tok, json_t *cfg, json_t *model_cfg,
		       const char *tok_name, const char *cfg_name, char *err, size_t errlen)
{
	if (mv <= 0)
		return 0;
	/* the tokenizer's size: one more than its largest id */
	int64_t top = -1;
	size_t nvocab = 0, nadded = 0, i;
	json_t *vocab = json_object_get(json_object_get(tok, "model"), "vocab"), *v;
	const char *k;
	if (json_is_object(vocab)) {
		nvocab = json_object_size(vocab);
		json_object_foreach(vocab, k, v)
			if (json_is_integer(v) && json_integer_value(v) > top)
				top = json_integer_value(v);
	} else if (json_is_array(vocab)) {   /* Unigram: [piece, score] by id */
		nvocab = json_array_size(vocab);
		top = (int64_t)nvocab - 1;
	}
	json_array_foreach(json_object_get(tok, "added_tokens"), i, v) {
		json_t *id = json_object_get(v, "id");
		nadded++;
		if (json_is_integer(id) && json_integer_value(id) > top)
			top = json_integer_value(id);
	}
	if (top >= mv)
		return rt_errf(err, errlen, -ERANGE, "tokenizer %s does not fit the model: its ids go up to %lld "
			       "(%zu vocabulary entries, %zu added tokens) but the model's "
			       "vocabulary is %lld (%s), so every prompt or reply with an id >= %lld would fail; "
			       "pack the model's own tokenizer (--tokenizer DIR) or none (--no-tokenizer)",
			       tok_name, (long long)top, nvocab, nadded, (long long)mv,
			       what, (long long)mv);
	/* the config's special tokens (bos, eos, pad, ... are among them) by id */
	json_object_foreach(json_object_get(cfg, "added_tokens_decoder"), k, v) {
		char *end;
		long long id = strtoll(k, &end, 10);
		if (*end || end == k || id < 0 || id >= mv)
			return rt_errf(err, errlen, -ERANGE, "%s: added_tokens_decoder id \"%.40s\" is not an id "
				       "below the model's vocabulary of %lld (%s); pack the model's own tokenizer "
				       "(--tokenizer DIR) or none (--no-tokenizer)", cfg_name, k, (long long)mv, what);
	}
	/* the model's own special ids (config.json bos/eos/pad_token_id): the kinds stop on them */
	static const char *const ids[] = {"bos_token_id", "eos_token_id", "pad_token_id"};
	for (int j = 0; j < 3 && json_is_object(model_cfg); j++) {
		long long id = max_id(json_object_get(model_cfg, ids[j]));
		if (id == -2 || id >= mv)
			return rt_errf(err, errlen, -ERANGE, "config.json %s is %s the model's vocabulary of %lld (%s)",
				       ids[j], id == -2 ? "not a non-negative integer id below" : "not below",
				       (long long)mv, what);
	}
	return 0;
}

char *rt_tok_meta_summary(const char *meta_json)
{
	json_t *m = meta_json ? json_loads(meta_json, 0, NULL) : NULL;
	if (!json_is_object(m)) {
		json_decref(m);
		return NULL;
	}
	json_t *tok = json_object_get(m, "tokenizer");
	if (json_is_object(tok) && json_is_string(json_object_get(tok, "carried"))) {
		/* the note of a tokenizer in the attachment */
		char s[200];
		const char *ty = json_string_value(json_object_get(tok, "model"));
		snprintf(s, sizeof s, "(tokenizer.json carried: model %s, %lld vocab entries, in the attachment)",
			 ty ? ty : "?", (long long)json_integer_value(json_object_get(tok, "vocab")));
		int has_cfg = json_is_true(json_object_get(tok, "config"));
		json_object_set_new(m, "tokenizer", json_string(s));
		if (has_cfg)
			json_object_set_new(m, "tokenizer_config", json_string("(tokenizer_config.json carried)"));
	} else if (json_is_object(tok)) {   /* older snapshots: the tokenizer in the metadata */
		json_t *model = json_object_get(tok, "model");
		json_t *vocab = json_is_object(model) ? json_object_get(model, "vocab") : NULL;
		json_t *ty = json_is_object(model) ? json_object_get(model, "type") : NULL;
		char s[160];
		snprintf(s, sizeof s, "(tokenizer.json carried: model %s, %zu vocab entries, %zu added tokens)",
			 json_is_string(ty) ? json_string_value(ty) : "?", json_object_size(vocab),
			 json_array_size(json_object_get(tok, "added_tokens")));
		json_object_set_new(m, "tokenizer", json_string(s));
	}
	if (json_is_object(json_object_get(m, "tokenizer_config")))
		json_object_set_new(m, "tokenizer_config", json_string("(tokenizer_config.json carried)"));
	char *r = json_dumps(m, JSON_COMPACT);
	json_decref(m);
	return r;
}

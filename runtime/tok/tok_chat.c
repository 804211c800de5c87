/* tok_chat.c — chat prompts for three template families (llama-2 [INST]/<<SYS>>, llama-3 header
 * tokens, ChatML) and the ids that end a chat turn. See tok.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "runtime/tok/tok_int.h"

/* Python str.strip() */
static void py_strip(const char *s, size_t *a, size_t *b)
{
	size_t n = *b;
	size_t i = *a;
	while (i < n) {
		uint32_t cp;
		size_t l = tok_cp_at(s, n, i, &cp);
		if (!tok_py_is_space(cp))
			break;
		i += l;
	}
	size_t j = n;
	while (j > i) {
		size_t k = j - 1;
		while (k > i && ((unsigned char)s[k] & 0xC0) == 0x80)
			k--;
		uint32_t cp;
		tok_cp_at(s, n, k, &cp);
		if (!tok_py_is_space(cp))
			break;
		j = k;
	}
	*a = i;
	*b = j;
}

static int put_stripped(tok_buf *b, const char *s)
{
	size_t a = 0, e = strlen(s);
	py_strip(s, &a, &e);
	return tok_buf_put(b, s + a, e - a);
}

int tok_chat(const tok_tokenizer *t, const tok_msg *m, size_t n, char **prompt, char *err,
		size_t errlen)
{
	if (!t || !prompt || (!m && n))
		return -EINVAL;
	*prompt = NULL;
	if (t->chat == CHAT_NONE) {
		tok_err(err, errlen, "the tokenizer has no chat template (tokenizer_config.json \"chat_template\")");
		return -ENOTSUP;
	}
	if (t->chat == CHAT_UNKNOWN) {
		tok_err(err, errlen, "%s", t->chat_why);
		return -ENOTSUP;
	}
	for (size_t i = 0; i < n; i++) {
		const char *r = m[i].role;
		if (!r || !m[i].content || !tok_utf8_valid(m[i].content, strlen(m[i].content)) ||
		    (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant"))) {
			tok_err(err, errlen, "messages[%zu]: %s", i, !r || !m[i].content ? "needs a role and content" :
				!tok_utf8_valid(m[i].content, strlen(m[i].content)) ? "content is not UTF-8" :
				"role must be system, user or assistant");
			return -EINVAL;
		}
	}
	if (!n) {
		tok_err(err, errlen, "no messages");
		return -EINVAL;
	}
	tok_buf b = {0};
	int rc = 0;
	const char *bos = t->bos_text ? t->bos_text : t->bos >= 0 ? t->id_s[t->bos] : NULL;
	const char *eos = t->eos_text ? t->eos_text : t->eos >= 0 ? t->id_s[t->eos] : NULL;
	if (t->chat == CHAT_LLAMA3) {
		if (!bos) {
			tok_err(err, errlen, "llama-3 chat template needs a bos_token");
			return -ENOTSUP;
		}
		for (size_t i = 0; i < n && !rc; i++) {
			if (i == 0)
				rc = tok_buf_puts(&b, bos);
			if (!rc)
				rc = tok_buf_puts(&b, "<|start_header_id|>");
			if (!rc)
				rc = tok_buf_puts(&b, m[i].role);
			if (!rc)
				rc = tok_buf_puts(&b, "<|end_header_id|>\n\n");
			if (!rc)
				rc = put_stripped(&b, m[i].content);
			if (!rc)
				rc = tok_buf_puts(&b, "<|eot_id|>");
		}
		if (!rc)
			rc = tok_buf_puts(&b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
	} else if (t->chat == CHAT_CHATML) {
		for (size_t i = 0; i < n && !rc; i++) {
			rc = tok_buf_puts(&b, "<|im_start|>");
			if (!rc)
				rc = tok_buf_puts(&b, m[i].role);
			if (!rc)
				rc = tok_buf_puts(&b, "\n");
			if (!rc)
				rc = tok_buf_puts(&b, m[i].content);
			if (!rc)
				rc = tok_buf_puts(&b, "<|im_end|>\n");
		}
		if (!rc)
			rc = tok_buf_puts(&b, "<|im_start|>assistant\n");
	} else { /* CHAT_LLAMA2 */
		if (!bos || !eos) {
			tok_err(err, errlen, "llama-2 chat template needs bos_token and eos_token");
			return -ENOTSUP;
		}
		size_t start = 0;
		const char *sys = NULL;
		if (!strcmp(m[0].role, "system")) {
			sys = m[0].content;
			start = 1;
		}
		for (size_t i = start; i < n && !rc; i++) {
			int want_user = (i - start) % 2 == 0;
			if ((strcmp(m[i].role, "user") == 0) != want_user) {
				free(b.p);
				tok_err(err, errlen, "messages[%zu]: conversation roles must alternate user/assistant/user/assistant/... (after an optional system message)", i);
				return -EINVAL;
			}
			tok_buf c = {0};
			if (i == start && sys) {
				rc = tok_buf_puts(&c, "<<SYS>>\n");
				if (!rc)
					rc = tok_buf_puts(&c, sys);
				if (!rc)
					rc = tok_buf_puts(&c, "\n<</SYS>>\n\n");
			}
			if (!rc)
				rc = tok_buf_puts(&c, m[i].content);
			if (!rc) {
				if (want_user) {
					rc = tok_buf_puts(&b, bos);
					if (!rc)
						rc = tok_buf_puts(&b, "[INST] ");
					if (!rc)
						rc = put_stripped(&b, c.p ? c.p : "");
					if (!rc)
						rc = tok_buf_puts(&b, " [/INST]");
				} else {
					rc = tok_buf_puts(&b, " ");
					if (!rc)
						rc = put_stripped(&b, c.p ? c.p : "");
					if (!rc)
						rc = tok_buf_puts(&b, " ");
					if (!rc)
						rc = tok_buf_puts(&b, eos);
				}
			}
			free(c.p);
		}
		if (!rc)
			rc = tok_buf_reserve(&b, 0);
	}
	if (rc) {
		free(b.p);
		tok_err(err, errlen, "out of memory");
		return rc;
	}
	if (!b.p && (rc = tok_buf_reserve(&b, 0)))
		return rc;
	b.p[b.n] = 0;
	*prompt = b.p;
	return 0;
}

size_t tok_stop_ids(const tok_tokenizer *t, int32_t *ids, size_t cap)
{
	if (!t || !ids)
		return 0;
	static const char *names[] = {"<|eot_id|>", "<|im_end|>", "<|end_of_text|>", "<|endoftext|>",
				      "<|eom_id|>", "</s>", NULL};
	size_t n = 0;
	int32_t cand[8];
	size_t nc = 0;
	if (t->eos >= 0)
		cand[nc++] = t->eos;
	for (int i = 0; names[i]; i++) {
		int32_t id = -1;
		size_t len = strlen(names[i]);
		for (size_t k = 0; k < t->n_added; k++)
			if (t->added[k].len == len && !memcmp(t->added[k].s, names[i], len))
				id = t->added[k].id;
		if (id >= 0)
			cand[nc++] = id;
	}
	for (size_t i = 0; i < nc && n < cap; i++) {
		int dup = 0;
		for (size_t k = 0; k < n; k++)
			dup |= ids[k] == cand[i];
		if (!dup)
			ids[n++] = cand[i];
	}
	return n;
}


/* tok_chat.c — chat prompts: a conversation rendered with the tokenizer's own chat template
 * (tokenizer_config.json "chat_template", interpreted by tok_jinja.h as transformers'
 * apply_chat_template renders it), and the ids that end a chat turn. See tok.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "runtime/tok/tok_int.h"

int tok_chat_render(const tok_tokenizer *t, const struct json_t *messages, const struct json_t *tools,
		    const struct json_t *vars, int add_generation_prompt, char **prompt, char *err, size_t errlen)
{
	if (!t || !prompt || !json_is_array(messages) || (tools && !json_is_array(tools)) ||
	    (vars && !json_is_object(vars)))
		return -EINVAL;
	*prompt = NULL;
	if (err && errlen)
		err[0] = 0;
	int with_tools = tools && json_array_size(tools) > 0;
	const tok_jinja *tpl = with_tools && t->chat_tpl_tools ? t->chat_tpl_tools : t->chat_tpl;
	if (!tpl) {
		if (t->chat_why)
			tok_err(err, errlen, "the tokenizer's chat template cannot be used: %s", t->chat_why);
		else if (t->chat_named)
			tok_err(err, errlen, "the tokenizer has named chat templates but none called \"default\"%s",
				with_tools ? " or \"tool_use\"" : "");
		else
			tok_err(err, errlen, "the tokenizer has no chat template (tokenizer_config.json \"chat_template\")");
		return -ENOTSUP;
	}
	if (!json_array_size(messages)) {
		tok_err(err, errlen, "no messages");
		return -EINVAL;
	}
	int rc = -ENOMEM;
	json_t *ctx = json_object();
	if (!ctx)
		goto done;
	/* the variables apply_chat_template passes: the caller's extras, the special tokens that
	 * are set, then messages, tools and add_generation_prompt */
	if (vars && json_object_update((json_t *)ctx, (json_t *)vars))
		goto done;
	for (size_t i = 0; i < t->n_vars; i++)
		if (json_object_set_new(ctx, t->var_k[i], json_string(t->var_v[i])))
			goto done;
	if (t->n_extra_special) {
		json_t *ex = json_array();
		if (!ex || json_object_set_new(ctx, "additional_special_tokens", ex))
			goto done;
		for (size_t i = 0; i < t->n_extra_special; i++)
			if (json_array_append_new(ex, json_string(t->extra_special[i])))
				goto done;
	}
	if (json_object_set(ctx, "messages", (json_t *)messages) ||
	    (with_tools && json_object_set(ctx, "tools", (json_t *)tools)) ||
	    json_object_set_new(ctx, "add_generation_prompt", json_boolean(add_generation_prompt)))
		goto done;
	rc = tok_jinja_render(tpl, ctx, NULL, prompt, NULL, err, errlen);
done:
	if (rc == -ENOMEM && err && errlen && !err[0])
		tok_err(err, errlen, "out of memory");
	json_decref(ctx);
	return rc;
}

int tok_chat(const tok_tokenizer *t, const tok_msg *m, size_t n, char **prompt, char *err,
		size_t errlen)
{
	if (!t || !prompt || (!m && n))
		return -EINVAL;
	*prompt = NULL;
	for (size_t i = 0; i < n; i++) {
		const char *bad = !m[i].role || !m[i].content ? "needs a role and content"
				  : !tok_utf8_valid(m[i].role, strlen(m[i].role)) ? "role is not UTF-8"
				  : !tok_utf8_valid(m[i].content, strlen(m[i].content)) ? "content is not UTF-8" : NULL;
		if (bad) {
			tok_err(err, errlen, "messages[%zu]: %s", i, bad);
			return -EINVAL;
		}
	}
	json_t *msgs = json_array();
	int rc = msgs ? 0 : -ENOMEM;
	for (size_t i = 0; i < n && !rc; i++)
		if (json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", m[i].role, "content", m[i].content)))
			rc = -ENOMEM;
	if (!rc)
		rc = tok_chat_render(t, msgs, NULL, NULL, 1, prompt, err, errlen);
	else
		tok_err(err, errlen, "out of memory");
	json_decref(msgs);
	return rc;
}

size_t tok_stop_ids(const tok_tokenizer *t, int32_t *ids, size_t cap)
{
	if (!t || !ids)
		return 0;
	/* the turn ends of the families whose templates render: Llama 3 / 4, ChatML (Qwen, ...),
	 * Phi-3 / 4-mini, Gemma, Command-R / Aya, OpenChat, SentencePiece eos */
	static const char *names[] = {"<|eot_id|>", "<|im_end|>", "<|end_of_text|>", "<|endoftext|>",
				      "<|eom_id|>", "<|eot|>", "<|end|>", "<end_of_turn>",
				      "<|END_OF_TURN_TOKEN|>", "<|end_of_turn|>", "</s>", NULL};
	size_t n = 0;
	int32_t cand[16];
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


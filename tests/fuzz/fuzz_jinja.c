/* fuzz_jinja.c — libFuzzer target for the chat template interpreter (runtime/tok/tok_jinja.h):
 * the input is a template's source, rendered against a fixed conversation (system, user,
 * assistant with a tool call, tool result; tools; special tokens; add_generation_prompt) with a
 * small step and output budget. A refusal, at parse or render time, must say why (err
 * non-empty) and leave no output; a render must stay within the output limit and be
 * NUL-terminated at its length. The seed corpus holds real models' chat templates. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "runtime/tok/tok_jinja.h"

static const char ctx_json[] =
	"{\"bos_token\": \"<s>\", \"eos_token\": \"</s>\", \"add_generation_prompt\": true,"
	" \"messages\": ["
	"  {\"role\": \"system\", \"content\": \"Be brief.\"},"
	"  {\"role\": \"user\", \"content\": \"What is 3 + 4? caf\\u00e9 \\ud83d\\ude00\"},"
	"  {\"role\": \"assistant\", \"content\": \"\", \"tool_calls\": [{\"id\": \"c1\", \"type\": \"function\","
	"    \"function\": {\"name\": \"add\", \"arguments\": {\"a\": 3, \"b\": 4}}}]},"
	"  {\"role\": \"tool\", \"tool_call_id\": \"c1\", \"name\": \"add\", \"content\": \"7\"},"
	"  {\"role\": \"assistant\", \"content\": \"<think>sum</think>7\"},"
	"  {\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"thanks\"}]}],"
	" \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"add\", \"description\": \"Add.\","
	"   \"parameters\": {\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"integer\"}, \"b\": {\"type\": \"number\"}},"
	"   \"required\": [\"a\", \"b\"]}}}]}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static json_t *ctx;
	if (!ctx && !(ctx = json_loads(ctx_json, 0, NULL)))
		abort();
	char err[300] = "";
	tok_jinja *t = NULL;
	int rc = tok_jinja_parse(&t, (const char *)data, size, err, sizeof err);
	if (rc) {
		if (t || (!err[0] && rc != -ENOMEM))
			abort(); /* every refusal says why */
		return 0;
	}
	char *out = (char *)1;
	size_t len = 0;
	tok_jinja_opts o = {.max_out = 1 << 20, .max_steps = 200000, .fixed_now = 1, .now = 1721952000};
	err[0] = 0;
	rc = tok_jinja_render(t, ctx, &o, &out, &len, err, sizeof err);
	if (rc) {
		if (out || (!err[0] && rc != -ENOMEM))
			abort();
	} else {
		if (!out || len > o.max_out || out[len] != 0)
			abort();
		free(out);
	}
	tok_jinja_free(t);
	return 0;
}

/* rt_api_openai.c — OpenAI-compatible serving for `llama` functions:
 * GET /v1/models, GET /v1/models/{model}, POST /v1/completions and
 * POST /v1/chat/completions, with `stream: true` as server-sent events; `n` choices of one
 * prompt are n calls of the kind sharing the prompt's tokens (oa_grp). docs/api.md is the
 * reference.
 *
 * model = function name. The snapshot of the revision the traffic split picks must carry a
 * tokenizer (thaw snapshot pack takes tokenizer.json / tokenizer_config.json): the prompt (or
 * the chat messages, through the tokenizer's chat template) is encoded here, the llama kind
 * runs on token ids through the scheduler (rt_sched_submit), and every generated token
 * comes back on the loop thread (the kind emits {"token": id} on its lane; a uv_async_t hands
 * the ids over) to be decoded incrementally (tok_stream). Stop strings are matched on the
 * decoded text; the text is cut before the first match and the generation is stopped early
 * (the emit callback tells the kind the receiver is done). A streamed response holds back the
 * last (longest stop string - 1) bytes until it is sure they do not begin a stop string.
 *
 * Errors are OpenAI error objects {"error": {"message", "type", "param", "code"}}: 400
 * invalid_request_error (bad JSON, fields, prompt too long for the context, token ids outside
 * the vocabulary, no tokenizer), 401/403/429 from the access gate (rendered in this shape by
 * rt_api_openai_refuse), 404 model_not_found, 503/504 server_error. The access gate, once per
 * request at the end of its headers, lets any key with an invoke scope reach the completion
 * handlers; once the body names the model the handler asks it to finish its decision with the
 * key's scopes it kept (rt_access_check_fn: invoke:<model>, the model's rate limit). A
 * snapshot's tokenizer is loaded once, on the libuv thread pool (the request waits, the loop
 * does not), and kept in a small cache keyed by the file's identity.
 * Bodies are bounded before they are parsed (oa_scan: depth, element counts, the tree's
 * estimated size) and every number is range-checked (docs/api.md, "Limits"); a large body is
 * measured, parsed and tokenized on the thread pool so the loop keeps answering probes.
 * Loop thread only, except oa_emit (the lane's thread) and scan_step / parse_step /
 * prep_step (the thread pool, or the loop for small bodies). */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <jansson.h>
#include "runtime/base/rt_clock.h"
#include "runtime/tok/tok.h"
#include "runtime/access/rt_access.h"
#include "runtime/api/rt_api.h"
#include "runtime/base/rt_json.h"
#include "runtime/base/rt_log.h"
#include "runtime/store/rt_manifest.h"
#include "runtime/store/rt_registry.h"
#include "runtime/sched/rt_sched.h"
#include "runtime/tok/rt_tok.h"
#include "runtime/tok/rt_tok_cache.h"
#include "snapshot/snap.h"

#define OA_MAX_STOP 4            /* stop strings (OpenAI's limit) */
#define OA_STOP_MAX_BYTES 256    /* bytes of one stop string */
#define OA_MAX_STOP_IDS 24       /* token ids that end a generation */
#define OA_MAX_N 16              /* choices of one request (`n`; also at most the function's
                                  * concurrency) */

/* ---- OpenAI error objects ---- */

static const char *status_type(int status)
{
	switch (status) {
	case 401: return "authentication_error";
	case 403: return "permission_error";
	case 404: return "invalid_request_error";
	case 429: return "rate_limit_error";
	default: return status < 500 ? "invalid_request_error" : "server_error";
	}
}

static json_t *error_obj(int status, const char *param, const char *code, const char *msg)
{
	return json_pack("{s:{s:s,s:s,s:o,s:o}}", "error", "message", msg, "type",
			 status_type(status), "param", param ? json_string(param) : json_null(),
			 "code", code ? json_string(code) : json_null());
}

static void oa_error(rt_req *req, int status, const char *param, const char *code,
		     const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void oa_error(rt_req *req, int status, const char *param, const char *code,
		     const char *fmt, ...)
{
	char msg[600];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (req->route && !strncmp(req->route, "/v2/", 4)) {   /* generate: Triton's {"error": msg} */
		rt_req_reply_error(req, status, "%s", msg);
		return;
	}
	json_t *o = error_obj(status, param, code, msg);
	if (!o) {   /* a message that is not valid UTF-8 cannot happen with our texts */
		rt_req_reply_error(req, 500, "out of memory");
		return;
	}
	rt_api_reply_json(req, status, o);
}

int rt_api_openai_route(const char *route)
{
	return strcmp(route, "/v1/completions") == 0 || strcmp(route, "/v1/chat/completions") == 0 ||
	       strcmp(route, "/v1/models") == 0 || strcmp(route, "/v1/models/{model}") == 0;
}

void rt_api_openai_refuse(rt_req *req, const rt_access_refusal *why)
{
	oa_error(req, why->status, NULL, why->code, "%s", why->msg);
}

/* ---- refusals prepared off the loop: status, param, code and message, replied later ---- */

typedef struct oa_fail {
	int status;                  /* 0: none */
	char param[64];              /* "": null */
	const char *code;            /* a literal, or NULL */
	char msg[600];
} oa_fail;

static void fail_set(oa_fail *f, int status, const char *param, const char *code,
		     const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void fail_set(oa_fail *f, int status, const char *param, const char *code,
		     const char *fmt, ...)
{
	va_list ap;
	f->status = status;
	snprintf(f->param, sizeof f->param, "%s", param ? param : "");
	f->code = code;
	va_start(ap, fmt);
	vsnprintf(f->msg, sizeof f->msg, fmt, ap);
	va_end(ap);
}

/* ---- bounded parsing: a body is measured before jansson builds it ----
 * oa_scan is rt_json_check with the OpenAI rules: more than OA_MAX_DEPTH levels, arrays longer
 * than their member's cap, objects of more than OA_MAX_MEMBERS members, numbers jansson
 * refuses, and a tree over rt_json_budget (the one budget of every JSON route) are refused,
 * naming the field. */

#define OA_MAX_DEPTH 16              /* OpenAI bodies nest 4 deep */
#define OA_MAX_ARRAY 131072          /* one array's elements: prompt token ids (a 128k context) */
#define OA_MAX_MESSAGES 8192         /* chat messages */
#define OA_MAX_PARTS 1024            /* content parts of one message */
#define OA_MAX_MEMBERS 64            /* members of one object */
#define OA_INLINE_BYTES (16u << 10)  /* bodies up to this are parsed on the loop thread */
#define OA_PROMPT_BYTES_PER_TOKEN 16 /* a text of more bytes per context position cannot fit */

/* 0, or -EINVAL (400) / -E2BIG (413) with *f naming the limit and the member it was hit in.
 * model (mcap bytes) gets the top-level "model" string when it is plain (no escapes) and
 * fits, else "" */
static int oa_scan(const char *b, size_t n, oa_fail *f, char *model, size_t mcap)
{
	static const rt_json_cap caps[] = {{"stop", OA_MAX_STOP}, {"stop_words", OA_MAX_STOP},
					   {"messages", OA_MAX_MESSAGES}, {"content", OA_MAX_PARTS}};
	const rt_json_rules rules = {OA_MAX_DEPTH, OA_MAX_MEMBERS, OA_MAX_ARRAY, caps,
				     (int)(sizeof caps / sizeof caps[0]), 1, 1, "model", model, mcap};
	rt_json_stats st;
	rt_json_fail jf;
	int rc = rt_json_check(b, n, NULL, 0, &rules, &st, &jf);
	if (rc < 0)
		fail_set(f, jf.status, jf.field[0] ? jf.field : NULL, jf.code, "%s", jf.msg);
	return rc;
}

/* ---- request fields ---- */

typedef struct oa_params {
	int chat;
	char model[RT_MANIFEST_NAME_MAX + 1];
	long long max_tokens;        /* -1: not given */
	double temperature, top_p;
	long long seed;
	int has_seed;
	char stop[OA_MAX_STOP][OA_STOP_MAX_BYTES + 1];
	size_t stop_len[OA_MAX_STOP];
	int n_stop;
	int n;                       /* choices (`n`, 1 .. OA_MAX_N) */
	int stream, include_usage;
	int gen;                     /* Triton's generate extension (/v2/models/{m}/generate) */
	const json_t *prompt;        /* borrowed from the body */
	const json_t *messages;
} oa_params;

/* fields accepted only at their neutral value */
static int neutral(const char *k, const json_t *v)
{
	if (json_is_null(v))
		return 1;
	if (!strcmp(k, "frequency_penalty") || !strcmp(k, "presence_penalty"))
		return json_is_number(v) && json_number_value(v) == 0;
	if (!strcmp(k, "echo") || !strcmp(k, "logprobs"))
		return json_is_false(v);
	if (!strcmp(k, "logit_bias"))
		return json_is_object(v) && json_object_size(v) == 0;
	if (!strcmp(k, "suffix"))
		return json_is_string(v) && json_string_length(v) == 0;
	return 0;
}

static int num_field(const json_t *body, const char *k, double lo, double hi, int lo_open,
		     double def, double *out, char *err, size_t errlen)
{
	const json_t *v = json_object_get(body, k);
	if (!v || json_is_null(v)) {
		*out = def;
		return 0;
	}
	double x = json_is_number(v) ? json_number_value(v) : NAN;
	if (!(lo_open ? x > lo : x >= lo) || !(x <= hi)) {
		snprintf(err, errlen, "'%s' must be a number %s %g and <= %g", k, lo_open ? ">" : ">=",
			 lo, hi);
		return -EINVAL;
	}
	*out = x;
	return 0;
}

/* validates the body of a completion (chat = 0) or chat completion; 0 or -EINVAL with the
 * offending field in *param and a message in err */
static int parse_params(const json_t *body, int chat, oa_params *p, const char **param,
			char *err, size_t errlen)
{
	static const char *const common[] = {"model", "max_tokens", "temperature", "top_p", "seed",
		"stop", "n", "stream", "stream_options", "user", "frequency_penalty",
		"presence_penalty", "logit_bias", "logprobs", NULL};
	static const char *const comp_only[] = {"prompt", "echo", "best_of", "suffix", NULL};
	static const char *const chat_only[] = {"messages", "max_completion_tokens", NULL};
	memset(p, 0, sizeof *p);
	p->chat = chat;
	*param = NULL;
	if (!json_is_object(body)) {
		snprintf(err, errlen, "the request body must be a JSON object");
		return -EINVAL;
	}
	const char *k;
	const json_t *v;
	json_object_foreach((json_t *)body, k, v) {
		int known = 0;
		for (int i = 0; common[i] && !known; i++)
			known = !strcmp(common[i], k);
		for (int i = 0; !known && (chat ? chat_only : comp_only)[i]; i++)
			known = !strcmp((chat ? chat_only : comp_only)[i], k);
		if (!known) {
			*param = k;
			snprintf(err, errlen, "Unrecognized request argument supplied: %s", k);
			return -EINVAL;
		}
		static const char *const fixed[] = {"frequency_penalty", "presence_penalty",
			"logit_bias", "logprobs", "echo", "suffix", NULL};
		for (int i = 0; fixed[i]; i++)
			if (!strcmp(fixed[i], k) && !neutral(k, v)) {
				*param = k;
				snprintf(err, errlen, "'%s' is not supported: only its default (%s) is", k,
					 !strcmp(k, "logprobs") || !strcmp(k, "echo") ? "false or null" :
					 !strcmp(k, "logit_bias") ? "{} or null" :
					 !strcmp(k, "suffix") ? "\"\" or null" : "0");
				return -EINVAL;
			}
	}
	v = json_object_get(body, "model");
	*param = "model";
	if (!json_is_string(v) || json_string_length(v) == 0) {
		snprintf(err, errlen, "you must provide a model parameter (a function name)");
		return -EINVAL;
	}
	snprintf(p->model, sizeof p->model, "%s", json_string_value(v));
	if (json_string_length(v) > RT_MANIFEST_NAME_MAX)
		p->model[0] = 0;   /* cannot exist: 404 */
	p->max_tokens = -1;
	static const char *const mt_keys[] = {"max_tokens", "max_completion_tokens"};
	for (int i = 0; i < (chat ? 2 : 1); i++) {
		v = json_object_get(body, mt_keys[i]);
		if (!v || json_is_null(v))
			continue;
		*param = mt_keys[i];
		if (!json_is_integer(v) || json_integer_value(v) < 1 ||
		    json_integer_value(v) > 1 << 30) {
			snprintf(err, errlen, "'%s' must be an integer >= 1", mt_keys[i]);
			return -EINVAL;
		}
		p->max_tokens = json_integer_value(v);
	}
	if (!chat && p->max_tokens < 0)
		p->max_tokens = 16;
	*param = "temperature";
	if (num_field(body, "temperature", 0, 2, 0, 1, &p->temperature, err, errlen) < 0)
		return -EINVAL;
	*param = "top_p";
	if (num_field(body, "top_p", 0, 1, 1, 1, &p->top_p, err, errlen) < 0)
		return -EINVAL;
	v = json_object_get(body, "seed");
	*param = "seed";
	if (v && !json_is_null(v)) {
		if (!json_is_integer(v)) {
			snprintf(err, errlen, "'seed' must be an integer");
			return -EINVAL;
		}
		p->seed = json_integer_value(v);
		p->has_seed = 1;
	}
	v = json_object_get(body, "n");
	*param = "n";
	p->n = 1;
	if (v && !json_is_null(v)) {
		if (!json_is_integer(v) || json_integer_value(v) < 1 ||
		    json_integer_value(v) > OA_MAX_N) {
			snprintf(err, errlen, "'n' must be an integer from 1 to %d", OA_MAX_N);
			return -EINVAL;
		}
		p->n = (int)json_integer_value(v);
	}
	/* best_of: only its neutral value, which is n (every choice generated is returned) */
	v = json_object_get(body, "best_of");
	*param = "best_of";
	if (v && !json_is_null(v) && (!json_is_integer(v) || json_integer_value(v) != p->n)) {
		snprintf(err, errlen, "'best_of' is not supported: only its default, n (%d), is",
			 p->n);
		return -EINVAL;
	}
	v = json_object_get(body, "stop");
	*param = "stop";
	if (json_is_string(v) || json_is_array(v)) {
		size_t n = json_is_string(v) ? 1 : json_array_size(v);
		if (n > OA_MAX_STOP) {
			snprintf(err, errlen, "'stop' takes at most %d strings", OA_MAX_STOP);
			return -EINVAL;
		}
		for (size_t i = 0; i < n; i++) {
			const json_t *s = json_is_string(v) ? v : json_array_get(v, i);
			if (!json_is_string(s) || json_string_length(s) == 0 ||
			    json_string_length(s) > OA_STOP_MAX_BYTES) {
				snprintf(err, errlen, "'stop' must be a string or an array of strings, each "
					 "1 to %d bytes", OA_STOP_MAX_BYTES);
				return -EINVAL;
			}
			memcpy(p->stop[p->n_stop], json_string_value(s), json_string_length(s));
			p->stop[p->n_stop][json_string_length(s)] = 0;
			p->stop_len[p->n_stop++] = json_string_length(s);
		}
	} else if (v && !json_is_null(v)) {
		snprintf(err, errlen, "'stop' must be a string or an array of strings");
		return -EINVAL;
	}
	v = json_object_get(body, "stream");
	*param = "stream";
	if (v && !json_is_boolean(v) && !json_is_null(v)) {
		snprintf(err, errlen, "'stream' must be true or false");
		return -EINVAL;
	}
	p->stream = json_is_true(v);
	v = json_object_get(body, "stream_options");
	*param = "stream_options";
	if (v && !json_is_null(v)) {
		const json_t *iu = json_object_get(v, "include_usage");
		if (!json_is_object(v) || json_object_size(v) != (iu ? 1u : 0u) ||
		    (iu && !json_is_boolean(iu))) {
			snprintf(err, errlen, "'stream_options' must be {\"include_usage\": true|false}");
			return -EINVAL;
		}
		if (!p->stream) {
			snprintf(err, errlen, "'stream_options' is only allowed when 'stream' is true");
			return -EINVAL;
		}
		p->include_usage = json_is_true(iu);
	}
	v = json_object_get(body, "user");
	*param = "user";
	if (v && !json_is_string(v) && !json_is_null(v)) {
		snprintf(err, errlen, "'user' must be a string");
		return -EINVAL;
	}
	if (chat) {
		p->messages = json_object_get(body, "messages");
		*param = "messages";
		if (!json_is_array(p->messages) || json_array_size(p->messages) == 0) {
			snprintf(err, errlen, "'messages' must be a non-empty array of messages");
			return -EINVAL;
		}
	} else {
		p->prompt = json_object_get(body, "prompt");
		*param = "prompt";
		if (!p->prompt || json_is_null(p->prompt)) {
			snprintf(err, errlen, "you must provide a prompt");
			return -EINVAL;
		}
	}
	*param = NULL;
	return 0;
}

/* ---- prompt -> token ids ---- */

typedef struct oa_ids {
	int32_t *v;
	size_t n;
} oa_ids;

/* an array of integers: token ids as given (checked against the vocabulary later); more
 * than max_ids of them: -E2BIG */
static int ids_from_array(const json_t *a, size_t max_ids, oa_ids *ids, char *err,
			  size_t errlen)
{
	size_t n = json_array_size(a);
	if (n > max_ids) {
		snprintf(err, errlen, "you requested %zu tokens in the prompt alone. Please reduce the "
			 "length of the prompt.", n);
		return -E2BIG;
	}
	ids->v = malloc((n ? n : 1) * sizeof *ids->v);
	if (!ids->v)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const json_t *e = json_array_get(a, i);
		if (!json_is_integer(e) || json_integer_value(e) < 0 ||
		    json_integer_value(e) > INT32_MAX) {
			snprintf(err, errlen, "prompt[%zu]: a token id must be a non-negative integer", i);
			return -EINVAL;
		}
		ids->v[i] = (int32_t)json_integer_value(e);
	}
	ids->n = n;
	return 0;
}

/* encodes text; one of more than max_bytes: -E2BIG (it cannot fit the context) */
static int encode_text(const tok_tokenizer *t, const char *s, size_t len, size_t max_bytes,
		       int add_special, oa_ids *ids, char *err, size_t errlen)
{
	if (len > max_bytes) {
		snprintf(err, errlen, "your prompt is %zu bytes, more than %d for each position of the "
			 "context. Please reduce the length of the prompt.", len,
			 OA_PROMPT_BYTES_PER_TOKEN);
		return -E2BIG;
	}
	int rc = tok_encode(t, s, len, add_special, &ids->v, &ids->n);
	if (rc == -EINVAL)
		snprintf(err, errlen, "the prompt is not valid UTF-8");
	else if (rc < 0)
		snprintf(err, errlen, "tokenizer: %s", strerror(-rc));
	return rc;
}

/* completions: "text", ["text"], [ids...] or [[ids...]]; a text of more than max_bytes or more
 * than max_ids ids: -E2BIG */
static int prompt_ids(const tok_tokenizer *t, const json_t *pr, size_t max_bytes, size_t max_ids,
		      oa_ids *ids, char *err, size_t errlen)
{
	if (json_is_string(pr))
		return encode_text(t, json_string_value(pr), json_string_length(pr), max_bytes, 1, ids,
				   err, errlen);
	if (json_is_array(pr) && json_array_size(pr) >= 1) {
		const json_t *e0 = json_array_get(pr, 0);
		if (json_array_size(pr) == 1 && json_is_string(e0))
			return encode_text(t, json_string_value(e0), json_string_length(e0), max_bytes, 1,
					   ids, err, errlen);
		if (json_array_size(pr) == 1 && json_is_array(e0))
			return ids_from_array(e0, max_ids, ids, err, errlen);
		if (json_is_integer(e0))
			return ids_from_array(pr, max_ids, ids, err, errlen);
		if (json_is_string(e0) || json_is_array(e0)) {
			snprintf(err, errlen, "only one prompt per request is supported (no batches; `n` "
				 "asks for several choices of one)");
			return -EINVAL;
		}
	}
	snprintf(err, errlen, "'prompt' must be a string, an array of one string, or an array of "
		 "token ids");
	return -EINVAL;
}

/* chat: messages -> template text -> ids */
static int chat_ids(const tok_tokenizer *t, const json_t *msgs, size_t max_bytes, oa_ids *ids,
		    char *param, size_t plen, char *err, size_t errlen)
{
	size_t n = json_array_size(msgs);
	tok_msg *m = calloc(n, sizeof *m);
	char **owned = calloc(n, sizeof *owned);
	char *prompt = NULL;
	int rc = -EINVAL;
	size_t bytes = 0;   /* of all contents */
	snprintf(param, plen, "messages");
	if (!m || !owned) {
		rc = -ENOMEM;
		goto done;
	}
	for (size_t i = 0; i < n; i++) {
		const json_t *o = json_array_get(msgs, i), *role = json_object_get(o, "role"),
			     *content = json_object_get(o, "content");
		snprintf(param, plen, "messages[%zu]", i);
		if (!json_is_object(o) || !json_is_string(role)) {
			snprintf(err, errlen, "messages[%zu]: must be an object with a string 'role'", i);
			goto done;
		}
		const char *k;
		const json_t *v;
		json_object_foreach((json_t *)o, k, v)
			if (strcmp(k, "role") && strcmp(k, "content") && strcmp(k, "name")) {
				snprintf(err, errlen, "messages[%zu]: field '%s' is not supported", i, k);
				goto done;
			}
		const char *r = json_string_value(role);
		if (!strcmp(r, "developer"))
			r = "system";
		if (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant")) {
			snprintf(err, errlen, "messages[%zu]: role '%s' is not supported (system, user, "
				 "assistant)", i, json_string_value(role));
			goto done;
		}
		m[i].role = r;
		bytes += json_string_length(content);   /* 0 when it is not a string */
		if (json_is_string(content) && bytes > max_bytes)
			goto too_long;
		if (json_is_string(content)) {
			m[i].content = json_string_value(content);
			continue;
		}
		if (!json_is_array(content)) {
			snprintf(err, errlen, "messages[%zu]: 'content' must be a string or an array of "
				 "text parts", i);
			goto done;
		}
		size_t total = 1;
		for (size_t j = 0; j < json_array_size(content); j++) {
			const json_t *part = json_array_get(content, j);
			const char *ty = json_string_value(json_object_get(part, "type"));
			const json_t *tx = json_object_get(part, "text");
			if (!ty || strcmp(ty, "text") != 0 || !json_is_string(tx)) {
				snprintf(err, errlen, "messages[%zu].content[%zu]: only {\"type\": \"text\", "
					 "\"text\": \"...\"} parts are supported", i, j);
				goto done;
			}
			total += json_string_length(tx);
		}
		bytes += total - 1;
		if (bytes > max_bytes)
			goto too_long;
		owned[i] = malloc(total);
		if (!owned[i]) {
			rc = -ENOMEM;
			goto done;
		}
		size_t off = 0;
		for (size_t j = 0; j < json_array_size(content); j++) {
			const json_t *tx = json_object_get(json_array_get(content, j), "text");
			memcpy(owned[i] + off, json_string_value(tx), json_string_length(tx));
			off += json_string_length(tx);
		}
		owned[i][off] = 0;
		m[i].content = owned[i];
	}
	snprintf(param, plen, "messages");
	rc = tok_chat(t, m, n, &prompt, err, errlen);
	if (rc == -ENOTSUP) {
		snprintf(err, errlen, "this model's tokenizer has no chat template thaw can render "
			 "(llama-2, llama-3 or ChatML): use /v1/completions");
		snprintf(param, plen, "model");
	} else if (rc == -ENOMEM) {
		snprintf(err, errlen, "out of memory");
	} else if (rc == 0) {   /* the template adds a bounded number of bytes a message */
		rc = encode_text(t, prompt, strlen(prompt), SIZE_MAX, 0, ids, err, errlen);
	}
	goto done;
too_long:
	snprintf(param, plen, "messages");
	snprintf(err, errlen, "your messages hold more than %zu bytes of content, more than %d for "
		 "each position of the context. Please reduce the length of the messages.", max_bytes,
		 OA_PROMPT_BYTES_PER_TOKEN);
	rc = -E2BIG;
done:
	for (size_t i = 0; owned && i < n; i++)
		free(owned[i]);
	free(owned);
	free(m);
	free(prompt);
	return rc;
}

/* ---- a running generation ----
 * One request is an oa_grp of n choices (OpenAI's `n`); each choice is one call of the kind
 * (an oa_gen) with the same prompt tokens and its own seed, so the kind computes the shared
 * prompt's KV blocks once. Each choice decodes its own text and matches its own stop strings;
 * the group answers once: the first failure (its error, the other calls cancelled), else all
 * choices in one response. Streamed, every choice's chunks go out as they come, each with its
 * index, then the usage chunk and one [DONE] after the last choice ends. */

struct oa_grp;

typedef struct oa_gen {
	struct oa_grp *grp;
	int idx;                     /* the choice's index */
	tok_stream *ts;
	char *text;                  /* decoded text so far (cut at a stop string) */
	size_t len, cap, sent, scan_from;
	size_t ntok;                 /* tokens received from the kind */
	int done;                    /* a stop string matched: finish_reason "stop" */
	int failed;                  /* decoding failed (500) */
	int ended;                   /* the call's result came */
	int ok;                      /* ... and it succeeded */
	const char *finish;          /* its finish_reason when ok */
	int err_status;              /* when not ok: the kind's or the scheduler's status, */
	char err_msg[sizeof(((fn_error *)0)->msg)];   /* and its message */
	rt_call_cancel_fn cancel;    /* the scheduler's cancel hook while the call is queued */
	void *cancel_arg;
	/* handed over from the lane (oa_emit) under mu */
	pthread_mutex_t mu;
	uv_async_t async;
	int32_t *pend;
	size_t npend, cappend;
	int refuse;                  /* tell the kind to stop */
	int lost;                    /* a token could not be queued (out of memory) */
} oa_gen;

typedef struct oa_grp {
	rt_api *api;
	rt_req *req;                 /* NULL once answered */
	rt_tok_model *model;
	oa_params p;
	char id[48];
	int64_t created;
	uint32_t rev;
	size_t prompt_tokens;
	int32_t stop_ids[OA_MAX_STOP_IDS];
	int n_stop_ids;
	size_t max_stop;             /* longest stop string */
	int n;                       /* choices */
	int left;                    /* choices whose result has not come */
	int open;                    /* choices whose async handle is not closed */
	int fail_idx;                /* the first choice that failed, -1: none */
	int over;                    /* answered (or the stream ended) */
	int gone;                    /* the client went away */
	int streaming;               /* stream head sent */
	int retry_after;             /* a Retry-After header was added */
	oa_gen ch[];
} oa_grp;

/* releases G once every choice's handle is closed (the answer, made before the last one
 * closes, reads every choice's text) */
static void grp_free(oa_grp *G)
{
	for (int i = 0; i < G->n; i++) {
		oa_gen *g = &G->ch[i];
		tok_stream_free(g->ts);
		pthread_mutex_destroy(&g->mu);
		free(g->pend);
		free(g->text);
	}
	rt_tok_model_unref(G->model);
	free(G);
}

static void gen_closed(uv_handle_t *h)
{
	oa_gen *g = h->data;
	oa_grp *G = g->grp;
	if (--G->open == 0)
		grp_free(G);
}

/* oa_emit: the kind's per-token chunk {"token": id}, on the lane thread */
static int oa_emit(void *ctx, json_t *chunk)
{
	oa_gen *g = ctx;
	const json_t *t = json_object_get(chunk, "token");
	if (!json_is_integer(t))
		return 0;
	pthread_mutex_lock(&g->mu);
	int rc = g->refuse;
	if (!rc && g->npend == g->cappend) {
		size_t cap = g->cappend ? g->cappend * 2 : 64;
		int32_t *n = realloc(g->pend, cap * sizeof *n);
		if (n) {
			g->pend = n;
			g->cappend = cap;
		}
	}
	if (!rc && g->npend < g->cappend)
		g->pend[g->npend++] = (int32_t)json_integer_value(t);
	else if (!rc)
		rc = g->lost = 1;   /* the text would miss a token: stop, the result is a 500 */
	pthread_mutex_unlock(&g->mu);
	if (!rc)
		uv_async_send(&g->async);
	return rc;
}

static int sse_send(oa_grp *G, json_t *obj)
{
	char *s = obj ? rt_json_dumps(obj, 0) : NULL;
	json_decref(obj);
	if (!s)
		return -ENOMEM;
	size_t l = strlen(s);
	char *buf = malloc(l + 9);
	if (!buf) {
		free(s);
		return -ENOMEM;
	}
	memcpy(buf, "data: ", 6);
	memcpy(buf + 6, s, l);
	memcpy(buf + 6 + l, "\n\n", 2);
	int rc = rt_req_stream_write(G->req, buf, l + 8);
	free(buf);
	free(s);
	if (rc == -EPIPE)
		G->gone = 1;
	return rc;
}

/* one streamed chunk of choice idx: delta text (NULL for the role or final chunk),
 * finish_reason or NULL */
static json_t *chunk_obj(oa_grp *G, int idx, const char *text, size_t len, const char *finish,
			 int role)
{
	json_t *choice;
	if (G->p.gen) {   /* a generate_stream response: the new text (the last one: its reason) */
		char v[16];
		snprintf(v, sizeof v, "%u", G->rev);
		json_t *o = json_pack("{s:s,s:s,s:o}", "model_name", G->p.model, "model_version", v,
				      "text_output", json_stringn(text ? text : "", len));
		if (o && finish)
			json_object_set_new(o, "finish_reason", json_string(finish));
		return o;
	}
	if (G->p.chat) {
		json_t *delta = json_object();
		if (role)
			json_object_set_new(delta, "role", json_string("assistant"));
		if (role || text)
			json_object_set_new(delta, "content", json_stringn(text ? text : "", len));
		choice = json_pack("{s:i,s:o,s:n,s:o}", "index", idx, "delta", delta, "logprobs",
				   "finish_reason", finish ? json_string(finish) : json_null());
	} else {
		choice = json_pack("{s:o,s:i,s:n,s:o}", "text", json_stringn(text ? text : "", len),
				   "index", idx, "logprobs", "finish_reason",
				   finish ? json_string(finish) : json_null());
	}
	json_t *o = json_pack("{s:s,s:s,s:I,s:s,s:[o]}", "id", G->id, "object",
			      G->p.chat ? "chat.completion.chunk" : "text_completion", "created",
			      (json_int_t)G->created, "model", G->p.model, "choices", choice);
	if (o && G->p.include_usage)
		json_object_set_new(o, "usage", json_null());
	return o;
}

/* sends the stream head once (and, for chat, every choice's role chunk); -EPIPE when the
 * client is gone */
static int stream_start(oa_grp *G)
{
	if (G->streaming)
		return G->gone ? -EPIPE : 0;
	G->streaming = 1;
	char r[16];
	snprintf(r, sizeof r, "%u", G->rev);
	rt_req_add_header(G->req, "Thaw-Revision", r);
	rt_req_add_header(G->req, "X-Accel-Buffering", "no");
	if (rt_req_stream_begin(G->req, 200, "text/event-stream") < 0) {
		G->gone = 1;
		return -EPIPE;
	}
	for (int i = 0; G->p.chat && i < G->n && !G->gone; i++)
		sse_send(G, chunk_obj(G, i, NULL, 0, NULL, 1));
	return G->gone ? -EPIPE : 0;
}

/* sends text[sent, upto) as a delta (streaming) */
static void flush_text(oa_gen *g, size_t upto)
{
	oa_grp *G = g->grp;
	if (!G->p.stream || G->over || G->gone || upto <= g->sent)
		return;
	if (stream_start(G) < 0)
		return;
	sse_send(G, chunk_obj(G, g->idx, g->text + g->sent, upto - g->sent, NULL, 0));
	g->sent = upto;
}

/* looks for stop strings in the new text; sends what can no longer be part of one */
static void scan(oa_gen *g, int final)
{
	const oa_params *p = &g->grp->p;
	size_t max_stop = g->grp->max_stop;
	size_t best = (size_t)-1;
	for (int i = 0; i < p->n_stop; i++) {
		size_t sl = p->stop_len[i];
		if (g->len < sl)
			continue;
		const char *m = memmem(g->text + g->scan_from, g->len - g->scan_from, p->stop[i], sl);
		if (m && (size_t)(m - g->text) < best)
			best = (size_t)(m - g->text);
	}
	if (best != (size_t)-1) {
		g->len = best;
		g->done = 1;
		flush_text(g, g->len);
		return;
	}
	size_t hold = final || max_stop == 0 ? 0 : max_stop - 1;
	size_t safe = g->len > hold ? g->len - hold : 0;
	while (safe > g->sent && safe < g->len && ((unsigned char)g->text[safe] & 0xC0) == 0x80)
		safe--;   /* never split a UTF-8 sequence */
	g->scan_from = max_stop && g->len >= max_stop ? g->len - (max_stop - 1) : 0;
	flush_text(g, safe);
}

static int append(oa_gen *g, const char *s, size_t l)
{
	if (g->len + l + 1 > g->cap) {
		size_t cap = (g->len + l + 1) * 2;
		char *n = realloc(g->text, cap);
		if (!n)
			return -ENOMEM;
		g->text = n;
		g->cap = cap;
	}
	memcpy(g->text + g->len, s, l);
	g->len += l;
	g->text[g->len] = 0;
	return 0;
}

static void gen_token(oa_gen *g, int32_t id)
{
	if (g->done || g->failed)
		return;
	g->ntok++;
	for (int i = 0; i < g->grp->n_stop_ids; i++)
		if (g->grp->stop_ids[i] == id)
			return;   /* ends the turn; its text is not part of the answer */
	char *t = NULL;
	size_t l = 0;
	if (tok_stream_push(g->ts, id, &t, &l) < 0 || append(g, t, l) < 0) {
		free(t);
		g->failed = 1;
		return;
	}
	free(t);
	if (l)
		scan(g, 0);
}

/* moves the tokens the lane handed over into the text (loop thread) */
static void drain(oa_gen *g)
{
	pthread_mutex_lock(&g->mu);
	if (g->lost)
		g->failed = 1;
	pthread_mutex_unlock(&g->mu);
	for (;;) {
		int32_t buf[64];
		size_t n;
		pthread_mutex_lock(&g->mu);
		n = g->npend < 64 ? g->npend : 64;
		if (n) {   /* pend is NULL until the first token */
			memcpy(buf, g->pend, n * sizeof *buf);
			memmove(g->pend, g->pend + n, (g->npend - n) * sizeof *buf);
			g->npend -= n;
		}
		pthread_mutex_unlock(&g->mu);
		if (n == 0)
			break;
		for (size_t i = 0; i < n; i++)
			gen_token(g, buf[i]);
	}
	if (g->done || g->grp->gone || g->grp->over || g->failed) {
		pthread_mutex_lock(&g->mu);
		g->refuse = 1;   /* the next emit tells the kind to stop */
		pthread_mutex_unlock(&g->mu);
	}
}

/* cancels every call of G still queued or running (each answers 499 through gen_result,
 * possibly from inside this call) and tells running kinds to stop */
static void grp_cancel(oa_grp *G)
{
	for (int i = 0; i < G->n; i++) {
		oa_gen *g = &G->ch[i];
		pthread_mutex_lock(&g->mu);
		g->refuse = 1;
		pthread_mutex_unlock(&g->mu);
		rt_call_cancel_fn fn = g->cancel;
		void *arg = g->cancel_arg;
		g->cancel = NULL;
		if (fn && !g->ended)
			fn(arg);
	}
}

static void grp_progress(oa_grp *G);

static void on_async(uv_async_t *a)
{
	oa_gen *g = a->data;
	drain(g);
	if (g->grp->gone && !g->grp->over)
		grp_progress(g->grp);   /* a write failed: end the stream, cancel the calls */
}

/* the client closed its connection: every call is cancelled (loop thread) */
static void grp_on_gone(void *ud)
{
	oa_grp *G = ud;
	G->gone = 1;
	grp_cancel(G);
}

/* the cancel hook of a choice's call (rt_call_watch_fn) */
static int grp_watch(void *ctx, rt_call_cancel_fn cancel, void *arg)
{
	oa_gen *g = ctx;
	oa_grp *G = g->grp;
	int given_up = G->over || G->gone || !G->req || rt_req_gone(G->req);
	if (!cancel) {
		g->cancel = NULL;
		g->cancel_arg = NULL;
		return given_up;
	}
	if (!given_up) {
		g->cancel = cancel;
		g->cancel_arg = arg;
	}
	return given_up;
}

static json_t *usage_obj(oa_grp *G)
{
	size_t ntok = 0;
	for (int i = 0; i < G->n; i++)
		ntok += G->ch[i].ntok;
	return json_pack("{s:I,s:I,s:I}", "prompt_tokens", (json_int_t)G->prompt_tokens,
			 "completion_tokens", (json_int_t)ntok, "total_tokens",
			 (json_int_t)(G->prompt_tokens + ntok));
}

/* the status a kind's or the scheduler's error gets here */
static int fail_status(int st)
{
	if (st == 404 || st == 429 || st == 503 || st == 504)
		return st;
	return st >= 400 && st < 500 ? 400 : 500;
}

/* ends the request: the stream's last chunks or the whole response */
static void grp_answer(oa_grp *G)
{
	rt_req *req = G->req;
	char r[16];
	snprintf(r, sizeof r, "%u", G->rev);
	const oa_gen *bad = G->fail_idx >= 0 ? &G->ch[G->fail_idx] : NULL;
	G->over = 1;
	rt_req_on_gone(req, NULL, NULL);
	if (G->p.stream && (G->streaming || (!bad && !G->gone))) {
		if (!G->gone && stream_start(G) == 0) {
			if (!bad) {
				if (G->p.include_usage && !G->p.gen) {
					json_t *o = json_pack("{s:s,s:s,s:I,s:s,s:[],s:o}", "id", G->id, "object",
							      G->p.chat ? "chat.completion.chunk" :
							      "text_completion", "created",
							      (json_int_t)G->created, "model", G->p.model,
							      "choices", "usage", usage_obj(G));
					sse_send(G, o);
				}
			} else {
				int st = bad->failed ? 500 : fail_status(bad->err_status);
				const char *em = bad->failed ? "decoding the output failed" : bad->err_msg;
				sse_send(G, G->p.gen ? json_pack("{s:s}", "error", em)
						     : error_obj(st, NULL, NULL, em));
			}
			if (!G->gone && !G->p.gen)   /* Triton's stream has no [DONE] sentinel */
				rt_req_stream_write(req, "data: [DONE]\n\n", 14);
		}
		rt_req_stream_end(req);
	} else if (bad || G->gone) {
		rt_req_add_header(req, "Thaw-Revision", r);
		int st = bad ? bad->err_status : 499;
		if (bad && bad->failed)
			oa_error(req, 500, NULL, NULL, "decoding the output failed");
		else if (st == 499 || G->gone)   /* nobody reads it; the log says why */
			oa_error(req, 499, NULL, "client_closed_request", "the client went away");
		else if (st == 404)
			oa_error(req, 404, "model", "model_not_found", "%s", bad->err_msg);
		else if (st == 413)
			oa_error(req, 400, NULL, "context_length_exceeded", "%s", bad->err_msg);
		else
			oa_error(req, fail_status(st), NULL, NULL, "%s", bad->err_msg);
	} else if (G->p.gen) {
		const oa_gen *g = &G->ch[0];
		rt_req_add_header(req, "Thaw-Revision", r);
		json_t *o = json_pack("{s:s,s:s,s:o,s:s}", "model_name", G->p.model, "model_version", r,
				      "text_output", json_stringn(g->text ? g->text : "", g->len),
				      "finish_reason", g->finish);
		if (o)
			rt_api_reply_json(req, 200, o);
		else
			rt_req_reply_error(req, 500, "the output is not valid UTF-8");
	} else {
		rt_req_add_header(req, "Thaw-Revision", r);
		json_t *choices = json_array();
		for (int i = 0; i < G->n; i++) {
			const oa_gen *g = &G->ch[i];
			json_t *text = json_stringn(g->text ? g->text : "", g->len), *choice;
			if (G->p.chat)
				choice = json_pack("{s:i,s:{s:s,s:o},s:n,s:s}", "index", i, "message", "role",
						   "assistant", "content", text, "logprobs",
						   "finish_reason", g->finish);
			else
				choice = json_pack("{s:o,s:i,s:n,s:s}", "text", text, "index", i,
						   "logprobs", "finish_reason", g->finish);
			if (!choice || json_array_append_new(choices, choice) < 0) {
				json_decref(choices);
				choices = NULL;
				break;
			}
		}
		json_t *o = choices ? json_pack("{s:s,s:s,s:I,s:s,s:o,s:o}", "id", G->id, "object",
						G->p.chat ? "chat.completion" : "text_completion",
						"created", (json_int_t)G->created, "model",
						G->p.model, "choices", choices, "usage", usage_obj(G))
				    : NULL;
		if (o)
			rt_api_reply_json(req, 200, o);
		else
			oa_error(req, 500, NULL, NULL, "the output is not valid UTF-8");
	}
	G->req = NULL;
}

/* answers once the first choice failed, the client went away, or every choice ended; then
 * cancels the calls still going. Reentrant: a cancel answers its call through gen_result. */
static void grp_progress(oa_grp *G)
{
	if (G->over)
		return;
	if (G->fail_idx < 0 && !G->gone && G->left > 0)
		return;
	grp_answer(G);
	grp_cancel(G);
}

/* the end of one choice's call: the kind's result (or error); the group answers when it can,
 * and the choice's handle is closed (the group is freed with its last one) */
static void gen_result(const rt_call_result *res, void *ud)
{
	oa_gen *g = ud;
	oa_grp *G = g->grp;
	const json_t *out = res->out;
	if (G->req && !G->over && res->retry_after_s > 0 && !G->retry_after) {
		G->retry_after = 1;
		rt_api_result_headers(G->req, res);
	}
	if (res->rev)
		G->rev = res->rev;
	drain(g);
	g->ended = 1;
	g->finish = "length";
	int ok = out != NULL || g->done;
	if (out && !g->done && !g->failed) {
		/* tokens the kind did not emit (a kind without streaming) */
		json_t *toks = json_object_get(out, "tokens");
		for (size_t i = g->ntok; i < json_array_size(toks) && !g->done && !g->failed; i++)
			gen_token(g, (int32_t)json_integer_value(json_array_get(toks, i)));
		if (!g->done && !g->failed) {
			char *t = NULL;
			size_t l = 0;
			if (tok_stream_finish(g->ts, &t, &l) < 0 || append(g, t, l) < 0)
				g->failed = 1;
			free(t);
			if (!g->failed)
				scan(g, 1);
		}
		const char *fr = json_string_value(json_object_get(out, "finish_reason"));
		if (fr && !strcmp(fr, "stop"))
			g->finish = "stop";
	}
	if (g->done)
		g->finish = "stop";
	g->ok = ok && !g->failed;
	if (!g->ok) {
		g->err_status = res->err ? res->err->status : 500;
		snprintf(g->err_msg, sizeof g->err_msg, "%s", res->err ? res->err->msg : "");
		if (G->fail_idx < 0 && !G->over)
			G->fail_idx = g->idx;
	} else if (G->p.stream && !G->over && !G->gone && stream_start(G) == 0) {
		flush_text(g, g->len);
		if (!G->gone)
			sse_send(G, chunk_obj(G, g->idx, NULL, 0, g->finish, 0));
	}
	G->left--;
	grp_progress(G);
	uv_close((uv_handle_t *)&g->async, gen_closed);
}

/* ---- handlers ---- */

static void random_id(char *buf, size_t cap, const char *prefix)
{
	unsigned char b[12];
	if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b) {
		uint64_t x = rt_clock_mono_ns();
		memcpy(b, &x, 8);
		memset(b + 8, 0x5a, 4);
	}
	size_t o = (size_t)snprintf(buf, cap, "%s", prefix);
	for (size_t i = 0; i < sizeof b && o + 2 < cap; i++, o += 2)
		snprintf(buf + o, cap - o, "%02x", b[i]);
}

/* looks model up: its latest revision into *info; replies 404 (model_not_found) or, for a
 * function of another kind, 400 (listing: 404) and returns -1 otherwise */
static int find_llama(rt_req *req, rt_api *api, const char *name, rt_revision_info *info,
		      int listing)
{
	char err[256];
	if (!name[0] || rt_manifest_name_valid(name, err, sizeof err) < 0 ||
	    rt_registry_get(api->reg, name, info) < 0) {
		oa_error(req, 404, "model", "model_not_found",
			 "The model '%s' does not exist (no function of that name is deployed)", name);
		return -1;
	}
	if (strcmp(info->manifest.kind, "llama") != 0) {
		oa_error(req, listing ? 404 : 400, "model", "model_not_supported",
			 "The model '%s' is a '%s' function; completions are served for llama "
			 "functions only", name, info->manifest.kind);
		return -1;
	}
	return 0;
}

/* ---- a completion request between its arrival and its call ----
 * Three steps: (1) the body is measured (oa_scan), the key's scope checked for the model the
 * scan found (on the loop), the body parsed and validated; (2) on the loop: the scope when the
 * scan could not name the model, the registry, the revision; (3) the snapshot's tokenizer loaded if
 * it is not cached (a LLaMA-3 tokenizer.json takes most of a second), the prompt encoded and
 * checked against the model's context and vocabulary. Steps 1 and 3 run on the libuv thread
 * pool unless the body is small (OA_INLINE_BYTES) and, for step 3, the tokenizer cached, so a
 * large body never holds the loop. Each step leaves its refusal in pd->fail; the loop replies. */
typedef struct oa_pending {
	rt_api *api;
	rt_req *req;
	int chat, gen, gen_stream;
	uint32_t pin;
	char gen_model[RT_HTTP_PARAM_BYTES];   /* the generate route's model */
	char scan_model[RT_MANIFEST_NAME_MAX + 1];   /* the body's "model" as the scan saw it */
	int scope_done;              /* rt_access_check_fn passed for scan_model */
	json_t *body;                /* owns what p.prompt / p.messages point into */
	oa_params p;
	uint32_t rev;
	char path[RT_MANIFEST_PATH_MAX];
	struct stat st;
	rt_tok_model *model;             /* cached (a reference) */
	rt_tok_model *loaded;            /* read by step 3, not yet in the cache */
	oa_ids ids;
	oa_fail fail;
	uv_work_t work;
} oa_pending;

static void pending_free(oa_pending *pd)
{
	rt_tok_model_unref(pd->model);
	rt_tok_model_unref(pd->loaded);
	json_decref(pd->body);
	free(pd->ids.v);
	free(pd);
}

/* replies pd->fail and releases pd */
static void pending_refuse(oa_pending *pd)
{
	const oa_fail *f = &pd->fail;
	oa_error(pd->req, f->status, f->param[0] ? f->param : NULL, f->code, "%s", f->msg);
	pending_free(pd);
}

/* Triton's generate extension: POST /v2/models/{m}[/versions/{v}]/generate[_stream] with
 * {"text_input": "...", and the sampling settings at the top level or under "parameters":
 * max_tokens, temperature, top_p, seed / random_seed, stop / stop_words, stream}, answered
 * {"model_name", "model_version", "text_output", "finish_reason"}, streamed as server-sent
 * events of the same shape (text_output the new text). gen_body translates such a request
 * (in, kept the caller's) into a completion body (a new reference), or returns NULL with *f
 * filled. Any thread. */
static json_t *gen_body(const json_t *in, int stream, const char *model, oa_fail *f)
{
	static const char *const keys[][2] = {{"max_tokens", "max_tokens"},
		{"temperature", "temperature"}, {"top_p", "top_p"}, {"seed", "seed"},
		{"random_seed", "seed"}, {"stop", "stop"}, {"stop_words", "stop"}, {"stream", NULL}};
	if (!json_is_object(in)) {
		fail_set(f, 400, NULL, NULL, "the request body must be a JSON object");
		return NULL;
	}
	const json_t *params = json_object_get(in, "parameters");
	if (params && !json_is_object(params)) {
		fail_set(f, 400, "parameters", NULL, "'parameters' must be an object");
		return NULL;
	}
	if (!json_is_string(json_object_get(in, "text_input"))) {
		fail_set(f, 400, "text_input", NULL, "'text_input' (a string) is required");
		return NULL;
	}
	json_t *body = json_object();
	if (!body) {
		fail_set(f, 503, NULL, NULL, "out of memory");
		return NULL;
	}
	/* every field known, each setting given once (top level or parameters) */
	for (int pass = 0; pass < 2; pass++) {
		const json_t *src = pass ? params : in;
		const char *k;
		json_t *val;
		if (!src)
			continue;
		json_object_foreach((json_t *)src, k, val) {
			if (!pass && (!strcmp(k, "text_input") || !strcmp(k, "parameters") ||
				      !strcmp(k, "id")))
				continue;
			size_t i = 0;
			while (i < sizeof keys / sizeof keys[0] && strcmp(keys[i][0], k))
				i++;
			if (i == sizeof keys / sizeof keys[0]) {
				fail_set(f, 400, k, NULL, "unknown %s '%s' (known: text_input, max_tokens, "
					 "temperature, top_p, seed, random_seed, stop, stop_words, stream, "
					 "parameters, id)", pass ? "parameter" : "input", k);
				goto fail;
			}
			if (!keys[i][1]) {   /* stream: the route decides; a contrary value is an error */
				if (!json_is_boolean(val) || (json_is_true(val) && !stream)) {
					fail_set(f, 400, "stream", NULL, "%s", json_is_boolean(val)
						 ? "'stream': true needs the generate_stream endpoint"
						 : "'stream' must be true or false");
					goto fail;
				}
				continue;
			}
			if (json_object_get(body, keys[i][1])) {
				fail_set(f, 400, keys[i][1], NULL, "'%s' is given twice", keys[i][1]);
				goto fail;
			}
			json_object_set(body, keys[i][1], val);
		}
	}
	json_object_set_new(body, "model", json_string(model));
	json_object_set(body, "prompt", json_object_get(in, "text_input"));
	json_object_set_new(body, "stream", json_boolean(stream));
	return body;
fail:
	json_decref(body);
	return NULL;
}

/* step 1a (any thread): the body measured (and its model name found) */
static void scan_step(oa_pending *pd)
{
	const rt_req *req = pd->req;
	if (req->body_len == 0) {
		fail_set(&pd->fail, 400, NULL, "invalid_json", "We could not parse the JSON body of "
			 "your request: the body is empty");
		return;
	}
	oa_scan(req->body, req->body_len, &pd->fail, pd->scan_model, sizeof pd->scan_model);
}

/* step 1b (any thread): the body parsed and validated into pd->body / pd->p */
static void parse_step(oa_pending *pd)
{
	const rt_req *req = pd->req;
	oa_fail *f = &pd->fail;
	json_error_t je;
	json_t *in = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &je);
	if (!in) {
		fail_set(f, 400, NULL, "invalid_json", "We could not parse the JSON body of your "
			 "request: line %d column %d: %s", je.line, je.column, je.text);
		return;
	}
	if (pd->gen) {
		pd->body = gen_body(in, pd->gen_stream, pd->gen_model, f);
		json_decref(in);
		if (!pd->body)
			return;
	} else {
		pd->body = in;
	}
	const char *param = NULL;
	char err[512] = "";
	if (parse_params(pd->body, pd->chat, &pd->p, &param, err, sizeof err) < 0) {
		fail_set(f, 400, param, NULL, "%s", err);
		return;
	}
	pd->p.gen = pd->gen;
}

/* step 3 (any thread): the model read when it is not cached, the prompt encoded into pd->ids
 * and checked against the context and vocabulary */
static void prep_step(oa_pending *pd)
{
	oa_fail *f = &pd->fail;
	oa_params *pp = &pd->p;
	const char *what = pd->chat ? "messages" : "prompt";
	rt_tok_model *model = pd->model;
	if (!model) {
		model = pd->loaded = rt_tok_model_read(pd->path, &pd->st);
		if (!model) {
			fail_set(f, 503, NULL, NULL, "model '%s': out of memory", pp->model);
			return;
		}
	}
	if (!model->tok) {
		if (model->err_rc == -ENOENT)
			fail_set(f, 400, "model", "tokenizer_missing", "The model '%s' (revision %u) has "
				 "no tokenizer: its snapshot carries no tokenizer.json (pack it with `thaw "
				 "snapshot pack --tokenizer DIR`)", pp->model, pd->rev);
		else
			fail_set(f, 400, "model", "tokenizer_invalid", "The model '%s' (revision %u): its "
				 "tokenizer cannot be used: %s", pp->model, pd->rev, model->err);
		return;
	}
	/* a text longer than this cannot fit the context: refused before the tokenizer's work */
	size_t max_bytes = (size_t)model->ctx * OA_PROMPT_BYTES_PER_TOKEN;
	char err[512] = "", param[64] = "";
	int rc = pd->chat ? chat_ids(model->tok, pp->messages, max_bytes, &pd->ids, param,
				     sizeof param, err, sizeof err)
			  : prompt_ids(model->tok, pp->prompt, max_bytes, (size_t)model->ctx, &pd->ids,
				       err, sizeof err);
	if (rc == -ENOMEM) {
		fail_set(f, 503, NULL, NULL, "out of memory");
		return;
	}
	if (rc == -E2BIG) {
		fail_set(f, 400, what, "context_length_exceeded", "This model's maximum context length "
			 "is %lld tokens. However, %s", (long long)model->ctx, err);
		return;
	}
	if (rc < 0) {
		fail_set(f, 400, pd->chat ? param : "prompt", NULL, "%s", err);
		return;
	}
	oa_ids *ids = &pd->ids;
	if (ids->n == 0) {
		fail_set(f, 400, what, NULL, "the prompt is empty (0 tokens)");
		return;
	}
	int64_t vocab = model->vocab ? model->vocab : (int64_t)tok_vocab_size(model->tok);
	for (size_t i = 0; i < ids->n; i++)
		if (ids->v[i] < 0 || ids->v[i] >= vocab) {
			fail_set(f, 400, what, "invalid_token", "prompt token %zu (id %d) is outside the "
				 "model's vocabulary of %lld tokens", i, (int)ids->v[i], (long long)vocab);
			return;
		}
	/* max_tokens <= 2^30 (parse_params) and n <= body bytes: no sum can overflow, but the
	 * check is written as a difference anyway */
	int64_t n = (int64_t)ids->n, room = model->ctx - n;
	if (pp->max_tokens < 0)
		pp->max_tokens = room;
	if (pp->max_tokens < 1 || pp->max_tokens > room) {
		long long mt = pp->max_tokens > 0 ? pp->max_tokens : 0;
		fail_set(f, 400, what, "context_length_exceeded", "This model's maximum context length "
			 "is %lld tokens. However, you requested %lld tokens (%lld in the %s, %lld in "
			 "the completion). Please reduce the length of the %s or the completion.",
			 (long long)model->ctx, (long long)n + mt, (long long)n, what, mt, what);
		return;
	}
}

/* a seed for a choice of a request without one */
static long long random_seed(int i)
{
	uint64_t x;
	if (getrandom(&x, sizeof x, 0) != (ssize_t)sizeof x)
		x = rt_clock_mono_ns() ^ ((uint64_t)rand() << 20) ^ ((uint64_t)i << 56);
	return (long long)(x >> 1);
}

/* the calls themselves, once pd->ids hold the prompt: n choices sharing the prompt's tokens,
 * choice i seeded seed + i (or at random without a seed). Releases pd. */
static void call_start(oa_pending *pd)
{
	rt_req *req = pd->req;
	rt_api *api = pd->api;
	int chat = pd->chat;
	oa_params *pp = &pd->p;
	rt_tok_model *model = pd->model;
	oa_ids *ids = &pd->ids;
	int64_t vocab = model->vocab ? model->vocab : (int64_t)tok_vocab_size(model->tok);
	int n = pp->n >= 1 && pp->n <= OA_MAX_N ? pp->n : 1;
	oa_grp *G = calloc(1, sizeof *G + (size_t)n * sizeof(oa_gen));
	int ts_ok = G != NULL;
	for (int i = 0; ts_ok && i < n; i++)
		ts_ok = tok_stream_new(model->tok, 1, &G->ch[i].ts) == 0;
	json_t *toks = json_array(), *stop = json_array();
	for (size_t i = 0; toks && i < ids->n; i++)
		if (json_array_append_new(toks, json_integer(ids->v[i])) < 0) {
			json_decref(toks);
			toks = NULL;
		}
	if (!ts_ok || !toks || !stop) {
		for (int i = 0; G && i < n; i++)
			tok_stream_free(G->ch[i].ts);
		free(G);
		json_decref(toks);
		json_decref(stop);
		oa_error(req, 503, NULL, NULL, "out of memory");
		pending_free(pd);
		return;
	}
	G->api = api;
	G->req = req;
	G->model = model;
	pd->model = NULL;
	G->p = *pp;
	G->p.n = n;
	G->n = G->left = G->open = n;
	G->fail_idx = -1;
	G->created = (int64_t)time(NULL);
	G->rev = pd->rev;
	G->prompt_tokens = ids->n;
	random_id(G->id, sizeof G->id, chat ? "chatcmpl-" : "cmpl-");
	for (int i = 0; i < pp->n_stop; i++)
		if (pp->stop_len[i] > G->max_stop)
			G->max_stop = pp->stop_len[i];
	/* ids that end the generation: the config's eos, the tokenizer's, and for chat the turn
	 * enders of the template family */
	int32_t cand[OA_MAX_STOP_IDS];
	size_t nc = 0;
	for (int i = 0; i < model->n_eos; i++)
		cand[nc++] = model->eos[i];
	if (tok_eos(model->tok) >= 0)
		cand[nc++] = tok_eos(model->tok);
	if (chat)
		nc += tok_stop_ids(model->tok, cand + nc, OA_MAX_STOP_IDS - nc);
	for (size_t i = 0; i < nc; i++) {
		int dup = 0;
		for (int j = 0; j < G->n_stop_ids; j++)
			dup |= G->stop_ids[j] == cand[i];
		if (dup || cand[i] < 0 || cand[i] >= vocab)
			continue;
		G->stop_ids[G->n_stop_ids++] = cand[i];
		json_array_append_new(stop, json_integer(cand[i]));
	}
	for (int i = 0; i < n; i++) {
		oa_gen *g = &G->ch[i];
		g->grp = G;
		g->idx = i;
		pthread_mutex_init(&g->mu, NULL);
		uv_async_init(api->loop, &g->async, on_async);
		g->async.data = g;
	}
	/* p.prompt / p.messages point into pd->body, released below: not used after this */
	G->p.prompt = G->p.messages = NULL;
	uint32_t rev = pd->rev;
	int has_seed = pp->has_seed;
	long long seed = pp->seed;
	pending_free(pd);
	rt_req_on_gone(req, grp_on_gone, G);
	fn_header hdrs[RT_HTTP_MAX_HEADERS];
	/* a call may be answered inside rt_sched_submit (refused, or cancelled by an earlier
	 * choice's failure): the choices after the answer are not submitted */
	for (int i = 0; i < n; i++) {
		oa_gen *g = &G->ch[i];
		if (G->over) {
			g->ended = 1;
			G->left--;
			uv_close((uv_handle_t *)&g->async, gen_closed);
			continue;
		}
		long long s = has_seed ? (long long)((unsigned long long)seed + (unsigned)i)
				       : random_seed(i);
		/* the token and stop arrays are shared by the calls (read-only) */
		json_t *in = json_pack("{s:O,s:I,s:f,s:f,s:I,s:O}", "tokens", toks, "max_tokens",
				       (json_int_t)G->p.max_tokens, "temperature", G->p.temperature,
				       "top_p", G->p.top_p, "seed", (json_int_t)s, "stop", stop);
		rt_call c = {.function = G->p.model, .rev = rev, .in = in, .emit = oa_emit,
			     .emit_ctx = g, .done = gen_result, .ud = g};
		rt_api_call_from_req(&c, req, hdrs);
		c.watch = grp_watch;
		c.watch_ctx = g;
		if (!in) {   /* answered as the kind's 503 */
			fn_error e = {.status = 503};
			snprintf(e.msg, sizeof e.msg, "out of memory");
			rt_call_result r = {.function = G->p.model, .rev = rev, .err = &e};
			gen_result(&r, g);
			continue;
		}
		rt_sched_submit(api->sched, &c);
	}
	json_decref(toks);
	json_decref(stop);
}

static void prep_work(uv_work_t *w)
{
	prep_step(w->data);
}

static void prep_done(uv_work_t *w, int status)
{
	oa_pending *pd = w->data;
	if (pd->loaded) {
		pd->model = rt_tok_model_insert(pd->loaded);   /* takes the reference over */
		pd->loaded = NULL;
	}
	if (status < 0 && !pd->fail.status)
		fail_set(&pd->fail, 503, NULL, NULL, "model '%s': preparing the prompt was cancelled",
			 pd->p.model);
	if (pd->fail.status) {
		pending_refuse(pd);
		return;
	}
	call_start(pd);
}

/* step 2 (loop): scope, model, revision; then step 3 here or on the thread pool */
static void parsed(oa_pending *pd)
{
	rt_req *req = pd->req;
	rt_api *api = pd->api;
	if (pd->fail.status) {
		pending_refuse(pd);
		return;
	}
	rt_revision_info *info = malloc(sizeof *info);
	if (!info) {
		oa_error(req, 500, NULL, NULL, "out of memory");
		goto fail;
	}
	/* the scope first: a key without invoke:<model> learns nothing about that function (the
	 * generate routes name the model: checked at dispatch already; usually checked after the
	 * scan already, before the parse) */
	rt_access_refusal why;
	if (!pd->gen && !(pd->scope_done && !strcmp(pd->scan_model, pd->p.model)) &&
	    rt_access_check_fn(api->access, req, pd->p.model, &why)) {
		rt_api_openai_refuse(req, &why);
		goto fail;
	}
	if (find_llama(req, api, pd->p.model, info, 0) < 0)
		goto fail;
	if (pd->pin)
		pd->rev = pd->pin;
	if ((!pd->pin && rt_registry_pick_revision(api->reg, pd->p.model,
						   (uint64_t)rand() ^ rt_clock_mono_ns(), &pd->rev) < 0) ||
	    rt_registry_get_revision(api->reg, pd->p.model, pd->rev, info) < 0) {
		if (pd->pin)
			oa_error(req, 404, "model", "model_not_found", "model '%s' has no version %u",
				 pd->p.model, pd->pin);
		else
			oa_error(req, 404, "model", "model_not_found", "The model '%s' does not exist",
				 pd->p.model);
		goto fail;
	}
	if (pd->p.n > info->manifest.concurrency) {
		oa_error(req, 400, "n", NULL, "'n' must be at most %d for the model '%s' (its "
			 "concurrency: the choices of a request run together)",
			 info->manifest.concurrency, pd->p.model);
		goto fail;
	}
	snprintf(pd->path, sizeof pd->path, "%s", info->snapshot_path);
	free(info);
	info = NULL;
	if (stat(pd->path, &pd->st) < 0) {
		oa_error(req, 503, NULL, NULL, "model '%s': snapshot %.300s: %s", pd->p.model, pd->path,
			 strerror(errno));
		goto fail;
	}
	pd->model = rt_tok_model_find(pd->path, &pd->st);
	pd->work.data = pd;
	if (pd->model && req->body_len <= OA_INLINE_BYTES) {
		prep_step(pd);
		prep_done(&pd->work, 0);
		return;
	}
	if (uv_queue_work(api->loop, &pd->work, prep_work, prep_done) < 0) {
		oa_error(req, 503, NULL, NULL, "cannot queue the tokenizer's work");
		goto fail;
	}
	return;
fail:
	free(info);
	pending_free(pd);
}

static void parse_work(uv_work_t *w)
{
	parse_step(w->data);
}

static void parse_done(uv_work_t *w, int status)
{
	oa_pending *pd = w->data;
	if (status < 0 && !pd->fail.status)
		fail_set(&pd->fail, 503, NULL, NULL, "parsing the request was cancelled");
	parsed(pd);
}

static void scanned_here(rt_req *req, void *ud, int answered);

/* step 1 between the scan and the parse (loop): the key's scope for the model the scan found,
 * so a key that may not invoke it gets its 403 before the body is parsed; then the node it
 * runs on (rt_api_route) */
static void scanned(oa_pending *pd)
{
	/* also when the scan refused the body after its "model": the 403 comes first */
	if (!pd->gen && pd->scan_model[0]) {
		rt_access_refusal why;
		if (rt_access_check_fn(pd->api->access, pd->req, pd->scan_model, &why)) {
			rt_api_openai_refuse(pd->req, &why);
			pending_free(pd);
			return;
		}
		pd->scope_done = 1;
	}
	if (pd->fail.status) {
		pending_refuse(pd);
		return;
	}
	const char *model = pd->gen ? pd->gen_model : pd->scan_model;
	int where = model[0] ? rt_api_route(pd->api, pd->req, model, scanned_here, pd) : 0;
	if (where < 0)
		pending_free(pd);
	if (where == 0)
		scanned_here(pd->req, pd, 0);
}

/* step 1 continued: the call runs on this node (answered: a peer answered it) */
static void scanned_here(rt_req *req, void *ud, int answered)
{
	oa_pending *pd = ud;
	if (answered) {
		pending_free(pd);
		return;
	}
	if (req->body_len <= OA_INLINE_BYTES) {
		parse_step(pd);
		parsed(pd);
		return;
	}
	pd->work.data = pd;
	if (uv_queue_work(pd->api->loop, &pd->work, parse_work, parse_done) < 0) {
		oa_error(pd->req, 503, NULL, NULL, "cannot queue the request's parse");
		pending_free(pd);
	}
}

static void scan_work(uv_work_t *w)
{
	scan_step(w->data);
}

static void scan_done(uv_work_t *w, int status)
{
	oa_pending *pd = w->data;
	if (status < 0 && !pd->fail.status)
		fail_set(&pd->fail, 503, NULL, NULL, "reading the request was cancelled");
	scanned(pd);
}

/* the common part of a completion, a chat completion and a Triton generate (gen: the body is
 * the generate extension's, answered in its shape; model: its route's; pin: a revision the
 * route names, 0: the traffic split picks) */
static void completion_run(rt_req *req, rt_api *api, int chat, int gen, int gen_stream,
			   const char *model, uint32_t pin)
{
	oa_pending *pd = calloc(1, sizeof *pd);
	if (!pd) {
		oa_error(req, 503, NULL, NULL, "out of memory");
		return;
	}
	pd->api = api;
	pd->req = req;
	pd->chat = chat;
	pd->gen = gen;
	pd->gen_stream = gen_stream;
	pd->pin = pin;
	snprintf(pd->gen_model, sizeof pd->gen_model, "%s", model ? model : "");
	if (req->body_len <= OA_INLINE_BYTES) {
		scan_step(pd);
		scanned(pd);
		return;
	}
	pd->work.data = pd;
	if (uv_queue_work(api->loop, &pd->work, scan_work, scan_done) < 0) {
		oa_error(req, 503, NULL, NULL, "cannot queue the request's scan");
		pending_free(pd);
	}
}

static void h_completion(rt_req *req, rt_api *api, int chat)
{
	completion_run(req, api, chat, 0, 0, NULL, 0);
}

static void h_generate(rt_req *req, rt_api *api, int stream)
{
	const char *m = rt_req_param(req, "m"), *v = rt_req_param(req, "v");
	uint32_t pin = 0;
	if (v && rt_api_version(v, &pin) < 0) {
		oa_error(req, 400, NULL, NULL, "version '%s' is not a revision number", v);
		return;
	}
	completion_run(req, api, 0, 1, stream, m, pin);
}

static void h_generate_once(rt_req *req, void *ud)
{
	h_generate(req, ud, 0);
}

static void h_generate_stream(rt_req *req, void *ud)
{
	h_generate(req, ud, 1);
}

static void h_completions(rt_req *req, void *ud)
{
	h_completion(req, ud, 0);
}

static void h_chat(rt_req *req, void *ud)
{
	h_completion(req, ud, 1);
}

/* ---- the models a client can send text to: llama functions whose snapshot carries a
 * tokenizer (a llama without one answers token ids only: /v1/functions/{name}/invoke) ---- */

typedef struct oa_listed {
	char name[RT_MANIFEST_NAME_MAX + 1];
	int64_t ms;
	char path[RT_MANIFEST_PATH_MAX];
	int text;                    /* from the revision's descriptor, */
	int known;                   /* or, when it has none, set on the thread pool */
} oa_listed;

typedef struct oa_list {
	rt_req *req;
	int one;                     /* GET /v1/models/{model}: the one entry, or a 404 */
	size_t n;
	oa_listed *e;
	uv_work_t work;
} oa_list;

/* whether the snapshot at path carries a tokenizer thaw can use: the cached model says so
 * when it was loaded, else the snapshot's metadata (its tokenizer note, or the tokenizer
 * itself in snapshots packed before attachments). Disk reads: thread pool only. */
static int snapshot_has_text(const char *path)
{
	struct stat st;
	if (!path[0] || stat(path, &st) < 0)
		return 0;
	rt_tok_model *m = rt_tok_model_find(path, &st);
	if (m) {
		int ok = m->tok != NULL;
		rt_tok_model_unref(m);
		return ok;
	}
	snap_file *f;
	char err[256];
	if (snap_open(&f, path, err, sizeof err) < 0)
		return 0;
	json_t *meta = json_loads(snap_metadata_json(f), 0, NULL);
	int ok = json_is_object(json_object_get(meta, "tokenizer"));
	json_decref(meta);
	snap_close(f);
	return ok;
}

static void list_work(uv_work_t *w)
{
	oa_list *l = w->data;
	for (size_t i = 0; i < l->n; i++)
		if (!l->e[i].known)
			l->e[i].text = snapshot_has_text(l->e[i].path);
}

static json_t *model_obj(const char *name, int64_t ms)
{
	return json_pack("{s:s,s:s,s:I,s:s}", "id", name, "object", "model", "created",
			 (json_int_t)(ms / 1000), "owned_by", "thaw");
}

static void list_done(uv_work_t *w, int status)
{
	oa_list *l = w->data;
	if (status < 0) {
		oa_error(l->req, 503, NULL, NULL, "listing the models was cancelled");
	} else if (l->one) {
		if (l->e[0].text)
			rt_api_reply_json(l->req, 200, model_obj(l->e[0].name, l->e[0].ms));
		else
			oa_error(l->req, 404, "model", "model_not_found", "The model '%s' is a llama "
				 "function without a tokenizer: it serves token ids "
				 "(/v1/functions/%s/invoke), not text (pack its snapshot with `thaw snapshot "
				 "pack --tokenizer DIR`)", l->e[0].name, l->e[0].name);
	} else {
		json_t *data = json_array();
		for (size_t i = 0; i < l->n; i++)
			if (l->e[i].text)
				json_array_append_new(data, model_obj(l->e[i].name, l->e[i].ms));
		rt_api_reply_json(l->req, 200, json_pack("{s:s,s:o}", "object", "list", "data", data));
	}
	free(l->e);
	free(l);
}

/* answers, after checking on the thread pool the snapshots of entries without a descriptor;
 * takes l */
static void list_run(rt_api *api, oa_list *l)
{
	l->work.data = l;
	size_t unknown = 0;
	for (size_t i = 0; i < l->n; i++)
		unknown += !l->e[i].known;
	if (!unknown) {
		list_done(&l->work, 0);
		return;
	}
	if (uv_queue_work(api->loop, &l->work, list_work, list_done) < 0) {
		oa_error(l->req, 503, NULL, NULL, "cannot queue the listing's work");
		free(l->e);
		free(l);
	}
}

static void h_models(rt_req *req, void *ud)
{
	rt_api *api = ud;
	rt_registry_entry *e = NULL;
	size_t n = 0;
	if (rt_registry_list(api->reg, &e, &n) < 0) {
		oa_error(req, 503, NULL, NULL, "the registry is unavailable");
		return;
	}
	oa_list *l = calloc(1, sizeof *l);
	rt_revision_info *info = malloc(sizeof *info);
	if (l)
		l->e = calloc(n ? n : 1, sizeof *l->e);
	if (!l || !l->e || !info) {
		oa_error(req, 503, NULL, NULL, "out of memory");
		free(e);
		free(info);
		if (l)
			free(l->e);
		free(l);
		return;
	}
	l->req = req;
	for (size_t i = 0; i < n; i++)
		if (strcmp(e[i].kind, "llama") == 0 && rt_registry_get(api->reg, e[i].name, info) == 0) {
			oa_listed *x = &l->e[l->n++];
			snprintf(x->name, sizeof x->name, "%s", e[i].name);
			snprintf(x->path, sizeof x->path, "%s", info->snapshot_path);
			x->ms = e[i].updated_ms;
			x->known = info->desc.known;
			x->text = info->desc.text;
		}
	free(e);
	free(info);
	list_run(api, l);
}

static void h_model(rt_req *req, void *ud)
{
	rt_api *api = ud;
	const char *name = rt_req_param(req, "model");
	rt_revision_info *info = malloc(sizeof *info);
	oa_list *l = calloc(1, sizeof *l);
	if (l)
		l->e = calloc(1, sizeof *l->e);
	if (!info || !l || !l->e) {
		oa_error(req, 500, NULL, NULL, "out of memory");
		goto fail;
	}
	if (find_llama(req, api, name, info, 1) < 0)
		goto fail;
	l->req = req;
	l->one = 1;
	l->n = 1;
	snprintf(l->e[0].name, sizeof l->e[0].name, "%s", name);
	snprintf(l->e[0].path, sizeof l->e[0].path, "%s", info->snapshot_path);
	l->e[0].ms = info->created_ms;
	l->e[0].known = info->desc.known;
	l->e[0].text = info->desc.text;
	free(info);
	list_run(api, l);
	return;
fail:
	free(info);
	if (l)
		free(l->e);
	free(l);
}

int rt_api_openai_register(rt_api *api)
{
	static const rt_route_def routes[] = {
		{"GET", "/v1/models", h_models},
		{"GET", "/v1/models/{model}", h_model},
		{"POST", "/v1/completions", h_completions},
		{"POST", "/v1/chat/completions", h_chat},
		{"POST", "/v2/models/{m}/generate", h_generate_once},
		{"POST", "/v2/models/{m}/generate_stream", h_generate_stream},
		{"POST", "/v2/models/{m}/versions/{v}/generate", h_generate_once},
		{"POST", "/v2/models/{m}/versions/{v}/generate_stream", h_generate_stream},
	};
	return rt_router_add_all(api->router, routes, sizeof routes / sizeof routes[0], api);
}

/* fuzz_tok.c — libFuzzer target for the tokenizer (runtime/tok/tok.h): the input is a
 * tokenizer.json, optionally followed by "\n--text--\n" and a text to encode (else a fixed text with special tokens).
 * A refused file must say why (err non-empty); an accepted one must encode the text to ids
 * inside the vocabulary (or refuse invalid UTF-8 with -EINVAL), decode them to valid UTF-8,
 * stream-decode them in whole UTF-8 pieces, and render a chat prompt or refuse it cleanly. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "runtime/tok/tok.h"

/* strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing above U+10FFFF */
static int utf8_ok(const char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		unsigned char c = (unsigned char)s[i];
		size_t l = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
		if (!l || i + l > n)
			return 0;
		uint32_t cp = l == 1 ? c : l == 2 ? c & 0x1F : l == 3 ? c & 0x0F : c & 0x07;
		for (size_t k = 1; k < l; k++) {
			if (((unsigned char)s[i + k] & 0xC0) != 0x80)
				return 0;
			cp = cp << 6 | ((unsigned char)s[i + k] & 0x3F);
		}
		static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
		if (cp < min[l] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return 0;
		i += l;
	}
	return 1;
}

static const char sample[] = "Hello  world!\n\tIt's 12345 <s>[INST] caf\xc3\xa9 \xe4\xbd\xa0\xe5\xa5\xbd "
			     "<|im_start|>user\nhi<|im_end|> \xf0\x9f\x98\x80 ";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char sep[] = "\n--text--\n";
	const char *json = (const char *)data, *text = sample;
	size_t jl = size, tl = sizeof sample - 1;
	const char *cut = memmem(data, size, sep, sizeof sep - 1);
	if (cut) {
		jl = (size_t)(cut - json);
		text = cut + sizeof sep - 1;
		tl = size - jl - (sizeof sep - 1);
	}
	char err[256] = "";
	tok_tokenizer *t;
	const char *cfg = "{\"bos_token\":\"<s>\",\"eos_token\":{\"content\":\"</s>\"},"
			  "\"chat_template\":\"<|im_start|>\"}";
	int rc = tok_load(&t, json, jl, (size & 1) ? cfg : NULL, (size & 1) ? strlen(cfg) : 0, err, sizeof err);
	if (rc == -EINVAL && (size & 1) && strstr(err, "tokenizer_config.json"))
		rc = tok_load(&t, json, jl, NULL, 0, err, sizeof err);
	if (rc) {
		if (!err[0])
			abort(); /* every refusal says why */
		return 0;
	}
	int32_t *ids = NULL;
	size_t n = 0;
	for (int sp = 0; sp < 2; sp++) {
		free(ids);
		ids = NULL;
		rc = tok_encode(t, text, tl, sp, &ids, &n);
		if (rc == -EINVAL && !utf8_ok(text, tl))
			break;
		if (rc)
			abort();
		for (size_t i = 0; i < n; i++)
			if (ids[i] < 0 || (size_t)ids[i] >= tok_vocab_size(t))
				abort();
		for (int skip = 0; skip < 2; skip++) {
			char *out = NULL;
			size_t ol = 0;
			if (tok_decode(t, ids, n, skip, &out, &ol) || !utf8_ok(out, ol))
				abort();
			free(out);
			tok_stream *s;
			if (tok_stream_new(t, skip, &s))
				abort();
			for (size_t i = 0; i <= n; i++) {
				char *piece;
				size_t pl;
				if ((i < n ? tok_stream_push(s, ids[i], &piece, &pl) : tok_stream_finish(s, &piece, &pl)) ||
				    !utf8_ok(piece, pl))
					abort();
				free(piece);
			}
			tok_stream_free(s);
		}
	}
	free(ids);
	tok_msg m[2] = {{"system", "Be brief. "}, {"user", " hi\n"}};
	char *p = NULL;
	rc = tok_chat(t, m, 2, &p, err, sizeof err);
	if (rc == 0) {
		if (tok_encode(t, p, strlen(p), 0, &ids, &n))
			abort();
		free(ids);
		free(p);
	} else if (rc != -ENOTSUP && rc != -EINVAL) {
		abort();
	}
	int32_t stop[8];
	if (tok_stop_ids(t, stop, 8) > 8)
		abort();
	tok_free(t);
	return 0;
}

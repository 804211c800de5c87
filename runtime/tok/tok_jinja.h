/* tok_jinja.h — a Jinja2 interpreter for the subset Hugging Face chat templates use
 * (tokenizer_config.json "chat_template", GGUF tokenizer.chat_template), rendered the way
 * transformers' apply_chat_template renders them: trim_blocks and lstrip_blocks on, no trailing
 * newline kept, loop controls (break/continue), tojson as json.dumps with ensure_ascii off,
 * raise_exception() and strftime_now() as globals.
 *
 * A template is parsed once into an immutable tree (tok_jinja_parse) and rendered any number of
 * times, from several threads at once, against a JSON context (tok_jinja_render). Every render
 * is bounded: output bytes, memory, loop iterations, evaluation steps and call depth, so a
 * hostile template fails with a clear error instead of hanging or exhausting memory. */
#ifndef THAW_TOK_JINJA_H
#define THAW_TOK_JINJA_H
#include <stddef.h>
#include <stdint.h>

struct json_t;
typedef struct tok_jinja tok_jinja;

#define TOK_JINJA_MAX_SRC (512u << 10)   /* template source bytes */
#define TOK_JINJA_MAX_DEPTH 100          /* nesting of statements and expressions */
#define TOK_JINJA_MAX_OUT (16u << 20)    /* rendered bytes */
#define TOK_JINJA_MAX_MEM (64u << 20)    /* bytes of values one render may allocate */
#define TOK_JINJA_MAX_ITERS 1000000u     /* loop iterations (and range() lengths) per render */
#define TOK_JINJA_MAX_STEPS 50000000u    /* evaluated nodes per render */
#define TOK_JINJA_MAX_CALLS 64           /* nested macro calls */

/* tok_jinja_parse compiles template source (len bytes, need not be NUL-terminated). On success
 * *out owns the template (free with tok_jinja_free). Returns 0, -EINVAL for a syntax error or a
 * construct outside the supported subset (err says which, with the line), -E2BIG for a source
 * over TOK_JINJA_MAX_SRC or nesting over TOK_JINJA_MAX_DEPTH, -ENOMEM. err may be NULL. */
int tok_jinja_parse(tok_jinja **out, const char *src, size_t len, char *err, size_t errlen);

/* Render options; a zeroed struct means the defaults. */
typedef struct {
	size_t max_out;  /* output limit in bytes; 0: TOK_JINJA_MAX_OUT */
	uint64_t max_steps; /* evaluated nodes; 0: TOK_JINJA_MAX_STEPS */
	int fixed_now;   /* strftime_now() formats `now` instead of the current time */
	long long now;   /* seconds since the epoch, in local time as Python's datetime.now() */
} tok_jinja_opts;

/* tok_jinja_render renders t with the variables of the JSON object ctx (messages, tools,
 * add_generation_prompt, bos_token, ...; NULL: none). ctx stays the caller's and is only read.
 * On success *out is malloc'd and NUL-terminated (caller frees), its length in *len (len may be
 * NULL). Returns 0; -EINVAL when the template fails on this context (raise_exception(msg):
 * err is "chat template line N: raise_exception: msg"; an undefined name called, a type error,
 * ...: err names it with the template line); -E2BIG when a limit is passed (err names the limit); -ENOMEM. */
int tok_jinja_render(const tok_jinja *t, const struct json_t *ctx, const tok_jinja_opts *o,
		     char **out, size_t *len, char *err, size_t errlen);

/* tok_jinja_free releases a parsed template (NULL is fine). */
void tok_jinja_free(tok_jinja *t);
#endif

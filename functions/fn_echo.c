/* fn_echo.c — the `echo` kind: no weights; invoke returns its input unchanged (a deep copy).
 * It is the runtime's smoke test: the whole request path without any model. An object input
 * with "echo_headers": true also gets "headers": the HTTP request headers the call carried
 * ({name: value}, an array of values for a repeated name), to check they arrive untouched. */
#include <errno.h>
#include <stdlib.h>
#include "functions/fn_kinds.h"

static int echo_load(const fn_load_args *a, void **state, fn_error *err)
{
	*state = NULL;
	return 0;
}

/* echo_headers builds {"name": value, ...} from the call's headers; a repeated name gets an
 * array of its values in the order received. */
static json_t *echo_headers(const fn_call *c)
{
	json_t *h = json_object();
	for (size_t i = 0; h && i < c->n_headers; i++) {
		json_t *v = json_string(c->headers[i].value), *prev = json_object_get(h, c->headers[i].name);
		if (!v)
			continue;   /* not UTF-8: JSON cannot carry it as a string */
		if (!prev) {
			json_object_set_new(h, c->headers[i].name, v);
		} else if (json_is_array(prev)) {
			json_array_append_new(prev, v);
		} else {
			json_t *arr = json_pack("[O,o]", prev, v);
			json_object_set_new(h, c->headers[i].name, arr);
		}
	}
	return h;
}

static int echo_invoke(void *state, fn_call *calls, size_t n)
{
	(void)state;
	for (size_t i = 0; i < n; i++) {
		fn_call *c = &calls[i];
		c->err.status = 0;
		c->err.msg[0] = 0;
		c->out = c->in ? json_deep_copy(c->in) : NULL;
		if (!c->out) {
			fn_err(&c->err, 400, "input must be a JSON value");
			continue;
		}
		if (json_is_object(c->in) && json_is_true(json_object_get(c->in, "echo_headers")))
			json_object_set_new(c->out, "headers", echo_headers(c));
	}
	return 0;
}

static void echo_release(void *state) { (void)state; }

const fn_kind fn_echo_kind = {
	.abi = FN_ABI_VERSION,
	.name = "echo",
	.summary = "returns its JSON input unchanged (no weights)",
	.load = echo_load,
	.invoke = echo_invoke,
	.release = echo_release,
};

/* fn_echo.c — the `echo` kind: no weights; invoke returns its input unchanged (a deep copy).
 * It is the runtime's smoke test: the whole request path without any model. */
#include <errno.h>
#include <stdlib.h>
#include "functions/fn_kinds.h"

static int echo_load(const fn_load_args *a, void **state, fn_error *err)
{
	*state = NULL;
	return 0;
}

static int echo_invoke(void *state, json_t *const *in, json_t **out, fn_error *errs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		errs[i].status = 0;
		errs[i].msg[0] = 0;
		out[i] = json_deep_copy(in[i]);
		if (!out[i])
			fn_err(&errs[i], 400, "input must be a JSON value");
	}
	return 0;
}

static void echo_release(void *state) { (void)state; }

const fn_kind fn_echo_kind = {
	FN_ABI_VERSION, "echo", "returns its JSON input unchanged (no weights)",
	echo_load, echo_invoke, echo_release,
};

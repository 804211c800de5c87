/* rt_call.h — one call of a function as the scheduler sees it: no transport. The API layer
 * (runtime/api) turns a request into an rt_call: the function and its revision pin, the input,
 * the headers a kind may see (already filtered: no credentials for thaw itself), a deadline, a
 * sink for streamed partial results, the completion callback and a cancel hook; it maps the
 * result back to its protocol (status, Retry-After, error shape). The scheduler, the lanes and
 * the kinds never see the request behind it. */
#ifndef THAW_RT_CALL_H
#define THAW_RT_CALL_H
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "functions/fn.h"

/* The end of a call, passed to rt_call.done on the loop thread. */
typedef struct rt_call_result {
	const char *function;      /* the function called */
	uint32_t rev;              /* the revision that served it (0: none was found) */
	json_t *out;               /* the kind's output (borrowed: incref to keep), NULL on error */
	const fn_error *err;       /* why it failed (status >= 400), NULL on success: the kind's
	                            * own error, or the scheduler's 404 (unknown function or
	                            * revision), 499 (cancelled), 500, 503 (queue full, device
	                            * gone, load failed, shutting down), 504 (past the deadline) */
	int retry_after_s;         /* > 0: the scheduler refused for now (503); a retry after this
	                            * many seconds may succeed */
} rt_call_result;

typedef void (*rt_call_done_fn)(const rt_call_result *r, void *ud);

/* The cancel hook. The scheduler calls watch(watch_ctx, cancel, arg) when it takes the call
 * into a queue: from then until it is cleared, the caller calls cancel(arg) once, on the loop
 * thread, when it no longer wants the answer (its client went away); the scheduler then
 * answers the call with 499 at once, drops it from its queue, and a running kind's next emit
 * is told to stop. watch(watch_ctx, NULL, NULL) clears the registration (the scheduler does so
 * before it calls done) and returns 1 when the caller has already given up, else 0; the
 * scheduler asks that way before it queues a call and refuses it with 499 then. A registering
 * call returns 1 (registering nothing) when the caller has already given up. */
typedef void (*rt_call_cancel_fn)(void *arg);
typedef int (*rt_call_watch_fn)(void *watch_ctx, rt_call_cancel_fn cancel, void *arg);

typedef struct rt_call {
	const char *function;      /* function name (copied by rt_sched_submit) */
	uint32_t rev;              /* revision pin; 0: the traffic split picks */
	json_t *in;                /* the kind's input (fn_call.in); the reference is stolen */
	const fn_header *headers;  /* what the kind sees as fn_call.headers (copied) */
	size_t n_headers;
	double timeout_s;          /* deadline from submission: 0 (or more than the function's
	                            * timeout_s) means the function's timeout_s; past it: 504 */
	fn_emit_fn emit;           /* streamed partial results, or NULL: see rt_sched_submit */
	void *emit_ctx;
	rt_call_done_fn done;      /* required: called exactly once */
	void *ud;
	rt_call_watch_fn watch;    /* cancel hook, or NULL: the call is never cancelled */
	void *watch_ctx;
} rt_call;

#endif

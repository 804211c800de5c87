/* fn.h — the one public header a function kind is written against (built in, or later a shared
 * object loaded at run time). A kind is a table of three operations:
 *   load     prepare a restored snapshot's weights on a device (kernels/kern.h) -> state
 *   invoke   run a batch of calls (fn_call: JSON in -> JSON out (jansson), a per-call error,
 *            the HTTP request headers, an optional stream of partial results)
 *   release  free the state
 * The runtime restores a snapshot, builds the weight table (names, dtypes, shapes, pointers on
 * the kind's device) and the metadata JSON, and calls these; kinds never see snapshot or
 * runtime code. docs/functions.md describes the built-in kinds and how to add one.
 *
 * Threading: one state is used by one device lane at a time (no two operations overlap for a
 * state). Batching: invoke takes n requests at once, so a lane can hand a kind all requests
 * that queued up while it was busy; a kind may run them together (mlp stacks their rows into
 * one matrix product).
 *
 * Generative kinds (llama) add two sequence operations and are then scheduled at the iteration
 * level: the runtime hands them calls one at a time as they arrive (seq_add) and, while the
 * kind holds any, runs steps (seq_step). One step advances every held sequence by one token in
 * one batch (admitting waiting prompts, possibly in chunks, within the step's token budget)
 * and returns the calls that finished. The lane interleaves the steps of every resident
 * function of its device with other work (calls of other kinds, loads), so no generation
 * blocks another function's calls. invoke still runs calls to completion (CLI, tests).
 */
#ifndef THAW_FN_H
#define THAW_FN_H
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "kernels/kern.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ABI history: 1 = invoke(state, in[], out[], errs[], n); 2 = invoke(state, fn_call[], n) with
 * request headers and streaming; 3 = the optional v2_sig operation and hf_model_types; 4 = the
 * optional sequence operations (seq_add, seq_step). The registry loads kinds of ABI 4 and 3
 * (an ABI 3 kind has no sequence operations) and refuses any other version (a v1 plugin gets
 * "built for ABI 1, this thaw loads ABI 4: rebuild against functions/fn.h"). */
#define FN_ABI_VERSION 4
#define FN_ABI_OLDEST 3
#define FN_MAX_DIMS 8
#define FN_V2_TENSORS_MAX 8        /* inputs, and outputs, of a V2 signature */
#define FN_V2_NAME_MAX 63

/* One tensor of the model, as the kind receives it. data points into memory on the kind's
 * device (host memory for "cpu"); it is owned by the caller and stays valid and unchanged
 * until release, so a kind may use weights in place. */
typedef struct fn_weight {
	const char *name;          /* e.g. "model.layers.0.self_attn.q_proj.weight" */
	const char *dtype;         /* safetensors spelling: "F32", "F16", "BF16", "I8", ... */
	int ndim;
	int64_t shape[FN_MAX_DIMS];
	const void *data;
	size_t nbytes;
} fn_weight;

/* A request-level failure: status is an HTTP-like code (400 bad input, 413 too large,
 * 422 valid JSON but impossible, 500 internal, 503 device failure), msg a one-line reason. */
typedef struct fn_error {
	int status;
	char msg[256];
} fn_error;

/* One HTTP request header as the client sent it (name in its original case, value with the
 * surrounding blanks removed), NUL-terminated. Credentials (Authorization,
 * Proxy-Authorization) are never passed on; docs/functions.md lists what is withheld. */
typedef struct fn_header {
	const char *name;
	const char *value;
} fn_header;

/* fn_emit_fn receives one partial result of a call (a streaming chunk; the llama kind emits
 * {"token": id} per generated token). chunk is borrowed: the receiver copies or increfs what it
 * keeps. Called on the invoking thread, in order, before invoke returns (or, for a call held
 * by a generative kind, before the step that returns it). A non-zero return means nobody waits
 * for the call any more (client disconnected, call timed out): the kind should stop that call
 * early and fail it with fn_err(&call->err, 499, ...). chunk NULL emits nothing and only asks
 * that question (a generative kind asks it each step for calls still waiting for their
 * prompt to run). */
typedef int (*fn_emit_fn)(void *ctx, json_t *chunk);

/* One call of a batch. The caller sets in, headers/n_headers (may be 0/NULL), emit/emit_ctx
 * (may be NULL; the daemon sets it on every call, so that its non-zero return can cancel a long
 * call even when nobody streams) and zeroes out and err; the kind sets out (a new reference)
 * when err.status == 0, or err (status >= 400, out NULL). in and headers are borrowed and stay
 * valid until invoke returns. */
typedef struct fn_call {
	const json_t *in;
	json_t *out;
	fn_error err;
	const fn_header *headers;
	size_t n_headers;
	fn_emit_fn emit;
	void *emit_ctx;
} fn_call;

/* What load gets besides the weights. meta is the snapshot's metadata object: "kind",
 * "config" (the model's config.json object, or null), optional "quantization"
 * ({"method": "int8", "block": 0|32}) and any kind-specific keys (mlp: "activation"). For a
 * generative kind the runtime adds "kv_cache_bytes" (device memory its KV blocks may take,
 * from the device's budget), "max_sequences" (the most calls it will hold at once) and
 * "prefix_caching" (boolean); a kind uses its defaults where they are absent (CLI, tests). */
typedef struct fn_load_args {
	kern_dev *dev;
	const fn_weight *weights;
	size_t n_weights;
	const json_t *meta;
} fn_load_args;

/* One tensor of a kind's Open Inference Protocol (KServe V2) signature: its name, V2 datatype
 * ("FP32", "INT64", "BYTES", ...) and shape, -1 for a dimension of any size. */
typedef struct fn_v2_tensor {
	char name[FN_V2_NAME_MAX + 1];
	char datatype[16];
	int ndim;
	int64_t shape[FN_MAX_DIMS];
} fn_v2_tensor;

/* What a kind takes and gives over V2 (GET /v2/models/{m}, POST .../infer). A kind without a
 * packed form of its own receives a V2 request as {"<input name>": nested array, ...} (rows of
 * the declared shape) and answers {"<output name>": nested array, ...}; the runtime checks
 * datatypes and shapes against this signature on both sides. */
typedef struct fn_v2_sig {
	int n_inputs, n_outputs;
	fn_v2_tensor inputs[FN_V2_TENSORS_MAX];
	fn_v2_tensor outputs[FN_V2_TENSORS_MAX];
} fn_v2_sig;

/* One iteration of a generative kind (fn_kind.seq_step). The runtime sets the inputs and the
 * room for finished calls; the kind fills the rest. Counts are of this step alone except
 * held and the KV block figures, which are the state after it. */
typedef struct fn_step {
	/* in */
	int64_t token_budget;      /* most rows (prompt tokens + decode rows) the step may run;
				    * 0 = the kind's default */
	int max_seqs;              /* most sequences the step may advance (the manifest's
				    * max_batch); 0 = every held one */
	fn_call **done;            /* room for every call the kind holds */
	/* out */
	size_t n_done;             /* calls finished in this step (out or err set), in done[] */
	size_t held;               /* calls the kind holds after the step */
	int seqs;                  /* sequences that ran in this step (decode rows and prompt
				    * chunks) */
	int decode_rows;           /* of those, the ones that advanced by one generated token */
	int prefill_tokens;        /* prompt tokens run (chunked prefill) */
	int preempted;             /* sequences whose KV blocks were taken back to be recomputed */
	int64_t kv_blocks_used, kv_blocks_total;
	uint64_t kv_bytes;         /* device memory the kind's KV cache takes (0: not known) */
	int64_t prefix_lookup_tokens;  /* prompt tokens of sequences admitted in this step ... */
	int64_t prefix_hit_tokens;     /* ... and of those, the ones found in the prefix cache */
} fn_step;

typedef struct fn_kind {
	int abi;                   /* FN_ABI_VERSION */
	const char *name;          /* metadata "kind" that selects it */
	const char *summary;
	/* load prepares a state for args->dev; returns 0 and *state, or a negative errno with
	 * err filled (status 422 for weights/config the kind cannot use). */
	int (*load)(const fn_load_args *args, void **state, fn_error *err);
	/* invoke runs n calls: calls[i].in -> calls[i].out (new reference, set when
	 * calls[i].err.status == 0) or calls[i].err (status >= 400, out NULL), emitting partial
	 * results through calls[i].emit when it is set and the kind streams. Returns 0, or a
	 * negative errno when the device failed (then every call without an output has an
	 * error). */
	int (*invoke)(void *state, fn_call *calls, size_t n);
	void (*release)(void *state);
	/* v2_sig (optional, NULL: no V2 inputs/outputs) declares the V2 signature of a snapshot:
	 * args as for load, but dev is NULL and every weight's data is NULL (names, dtypes and
	 * shapes only). Called once at deploy; 0, or a negative errno with err filled (status
	 * 422: the kind cannot use this snapshot). */
	int (*v2_sig)(const fn_load_args *args, fn_v2_sig *sig, fn_error *err);
	/* hf_model_types (optional): the config.json "model_type" values of the models this kind
	 * serves, NULL-terminated; `thaw snapshot pack` without --kind records this kind for them. */
	const char *const *hf_model_types;
	/* Sequence operations of a generative kind (ABI 4, optional: both or neither).
	 * seq_add takes one call (in, headers, emit set, out/err zeroed; the runtime keeps it valid
	 * and unchanged until a step returns it): 0 = the kind holds it; or a negative errno with
	 * call->err set (status >= 400, e.g. 400 bad input, 413 too long): the call is finished
	 * now. It does no device work: prompts run in later steps. The runtime bounds how many
	 * calls a state holds (the manifest's concurrency); the kind admits them to its KV cache as
	 * memory allows, the others wait inside it, and it preempts (frees and later recomputes) a
	 * sequence rather than fail when blocks run out.
	 * seq_step runs one iteration (fn_step); 0, or a negative errno when the device failed
	 * (then every held call is returned in st->done with err set, and held is 0). A step
	 * while the kind holds nothing does no device work and only reports (the runtime runs
	 * one right after load to learn kv_bytes and returns the rest of kv_cache_bytes to the
	 * device's budget). */
	int (*seq_add)(void *state, fn_call *call);
	int (*seq_step)(void *state, fn_step *st);
} fn_kind;

/* fn_v2_tensor_set fills t (name cut to FN_V2_NAME_MAX, ndim <= FN_MAX_DIMS dims from shape). */
void fn_v2_tensor_set(fn_v2_tensor *t, const char *name, const char *datatype, int ndim,
		      const int64_t *shape);

/* fn_kind_find returns the registered kind called name, or NULL. */
const fn_kind *fn_kind_find(const char *name);
/* fn_kind_for_model_type returns the registered kind that lists model_type in its
 * hf_model_types (the first registered), or NULL. */
const fn_kind *fn_kind_for_model_type(const char *model_type);
/* fn_kind_count / fn_kind_at list the registered kinds (built-ins first). */
size_t fn_kind_count(void);
const fn_kind *fn_kind_at(size_t i);
/* fn_kind_register adds a kind at run time (e.g. from a plugin); -EEXIST if the name is taken,
 * -EPROTO for an abi outside FN_ABI_OLDEST .. FN_ABI_VERSION (an ABI 3 kind is copied: its
 * table ends at hf_model_types), -EINVAL for a kind missing a name or an operation or with
 * only one of the sequence operations, -ENOSPC when the table is full, -ENOMEM. k must outlive
 * the process. */
int fn_kind_register(const fn_kind *k);
/* fn_kind_load_so dlopen()s a shared object exporting `const fn_kind *thaw_fn_kind(void)` and
 * registers what it returns under the name it reports. Loading the same path again returns the
 * kind already registered from it. *out (may be NULL) gets the kind. Returns 0, or a negative
 * errno with a one-line message in err: -ENOENT/-ENOEXEC (dlopen failed: missing file, not a
 * shared object, unresolved symbol), -ENOSYS (no thaw_fn_kind symbol or it returned NULL),
 * -EPROTO (wrong ABI version), -EINVAL (incomplete kind), -EEXIST (name taken by another
 * kind), -ENOSPC (table full). */
int fn_kind_load_so(const char *path, const fn_kind **out, char *err, size_t errlen);

/* Helpers for kinds. fn_weight_find looks a tensor up by name (NULL if absent).
 * fn_err sets err->status and a printf-style message and returns -EINVAL. */
const fn_weight *fn_weight_find(const fn_weight *w, size_t n, const char *name);
int fn_err(fn_error *err, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* fn_error_json builds {"error": msg} (new reference). */
json_t *fn_error_json(const fn_error *e);

/* fn_invoke_one runs a single request through k (no headers, no streaming): returns the output
 * (new reference) or NULL with err filled. */
json_t *fn_invoke_one(const fn_kind *k, void *state, const json_t *in, fn_error *err);
/* fn_call_run runs one prepared call through k (in, headers and emit set by the caller) and
 * normalizes the result: returns 0 with call->out set, or -1 with call->err filled (a device
 * failure becomes 503, a missing output 500). */
int fn_call_run(const fn_kind *k, void *state, fn_call *call);

#ifdef __cplusplus
}
#endif
#endif

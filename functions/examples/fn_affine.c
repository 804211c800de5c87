/* fn_affine.c — an example function kind built outside thaw as a shared object: `affine`,
 * y = act(W x + b) for a batch of rows, computed on the function's device (CPU or GPU) through
 * the same backend interface as the built-in kinds (kernels/kern.h: kern_linear).
 *
 * Written against functions/fn.h and kernels/kern.h only; thaw provides every symbol it calls
 * (fn_weight_find, fn_err, kern_*, json_*) when it dlopen()s the object. Build:
 *   cc -std=c11 -O2 -fPIC -shared -I<thaw source dir> fn_affine.c -o libthaw_affine.so
 * Weights (a snapshot packed from safetensors with --kind affine):
 *   "weight"  [n, k]  F32, F16, BF16, or I8 with "weight_scale" (thaw snapshot pack --quantize)
 *   "bias"    [n]     optional, any float dtype
 * Metadata: optional "activation": "none" (default) | "relu" | "gelu" | "tanh" | "silu".
 * Request {"x": [[k numbers], ...]} (1..4096 rows) -> {"y": [[n numbers], ...]}. With
 * "echo_header": "Name" in the request, the answer also carries "header": the value of that
 * HTTP request header (or null), to show fn_call.headers.
 * See functions/examples/README.md. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "functions/fn.h"

#define AFFINE_MAX_ROWS 4096

typedef struct affine {
	kern_dev *dev;
	kern_mat w;
	float *bias;           /* F32 copy on the device, or NULL */
	kern_act act;
	float *x, *y;          /* device buffers for AFFINE_MAX_ROWS rows */
} affine;

static void affine_release(void *state)
{
	affine *s = state;
	if (!s)
		return;
	kern_free(s->dev, s->bias);
	kern_free(s->dev, (void *)s->w.scales);
	kern_free(s->dev, s->x);
	kern_free(s->dev, s->y);
	free(s);
}

static int64_t elems(const fn_weight *t)
{
	int64_t c = 1;
	for (int i = 0; i < t->ndim; i++)
		c *= t->shape[i];
	return c;
}

/* an F32 device copy of a float tensor of cnt elements, or NULL with err filled */
static float *to_f32(kern_dev *dev, const fn_weight *t, int64_t cnt, fn_error *err)
{
	kern_dtype dt;
	if (kern_dtype_parse(t->dtype, &dt) < 0 || dt == KERN_I8 || dt == KERN_I32 ||
	    elems(t) != cnt || (size_t)cnt * kern_dtype_size(dt) != t->nbytes) {
		fn_err(err, 422, "%s: need %lld floats, got %s with %lld elements", t->name,
		       (long long)cnt, t->dtype, (long long)elems(t));
		return NULL;
	}
	float *f = kern_alloc(dev, (size_t)cnt * 4);
	if (!f) {
		fn_err(err, 503, "out of device memory");
		return NULL;
	}
	if (kern_cast_f32(dev, dt, t->data, f, cnt) < 0) {
		kern_free(dev, f);
		fn_err(err, 503, "device failure converting %s", t->name);
		return NULL;
	}
	return f;
}

static int affine_load(const fn_load_args *a, void **state, fn_error *err)
{
	const fn_weight *w = fn_weight_find(a->weights, a->n_weights, "weight");
	const fn_weight *b = fn_weight_find(a->weights, a->n_weights, "bias");
	const fn_weight *sc = fn_weight_find(a->weights, a->n_weights, "weight_scale");
	const json_t *act = json_object_get(a->meta, "activation");
	kern_dtype dt;
	*state = NULL;
	if (!w || w->ndim != 2 || kern_dtype_parse(w->dtype, &dt) < 0 || dt == KERN_I32)
		return fn_err(err, 422, "affine needs a 2-D float or int8 tensor \"weight\" [n, k]");
	affine *s = calloc(1, sizeof *s);
	if (!s)
		return fn_err(err, 503, "out of memory");
	s->dev = a->dev;
	s->w.dt = dt;
	s->w.n = w->shape[0];
	s->w.k = w->shape[1];
	s->w.data = w->data;
	if (s->w.n < 1 || s->w.k < 1 || (size_t)(s->w.n * s->w.k) * kern_dtype_size(dt) != w->nbytes) {
		fn_err(err, 422, "weight: %zu bytes for shape [%lld, %lld]", w->nbytes,
		       (long long)s->w.n, (long long)s->w.k);
		goto fail;
	}
	if (dt == KERN_I8) {
		if (!sc || elems(sc) != s->w.n) {
			fn_err(err, 422, "int8 weight needs \"weight_scale\" with one scale per row");
			goto fail;
		}
		if (!(s->w.scales = to_f32(a->dev, sc, s->w.n, err)))
			goto fail;
	}
	if (b && !(s->bias = to_f32(a->dev, b, s->w.n, err)))
		goto fail;
	s->act = KERN_ACT_NONE;
	if (act && (!json_is_string(act) || kern_act_parse(json_string_value(act), &s->act) < 0)) {
		fn_err(err, 422, "metadata \"activation\": none, relu, gelu, tanh or silu");
		goto fail;
	}
	s->x = kern_alloc(a->dev, (size_t)AFFINE_MAX_ROWS * s->w.k * 4);
	s->y = kern_alloc(a->dev, (size_t)AFFINE_MAX_ROWS * s->w.n * 4);
	if (!s->x || !s->y) {
		fn_err(err, 503, "out of device memory");
		goto fail;
	}
	*state = s;
	return 0;
fail:
	affine_release(s);
	return -EINVAL;
}

/* one call: parse rows into host memory, one kern_linear, rows back to JSON */
static int affine_one(affine *s, fn_call *c, float *hx, float *hy)
{
	const json_t *x = json_object_get(c->in, "x");
	size_t m = json_array_size(x);
	if (!json_is_array(x) || m == 0)
		return fn_err(&c->err, 400, "need \"x\": a non-empty array of rows of %lld numbers",
			      (long long)s->w.k), 0;
	if (m > AFFINE_MAX_ROWS)
		return fn_err(&c->err, 413, "at most %d rows per request", AFFINE_MAX_ROWS), 0;
	for (size_t r = 0; r < m; r++) {
		const json_t *row = json_array_get(x, r);
		if (!json_is_array(row) || (int64_t)json_array_size(row) != s->w.k)
			return fn_err(&c->err, 400, "x[%zu]: need %lld numbers", r, (long long)s->w.k), 0;
		for (int64_t j = 0; j < s->w.k; j++) {
			const json_t *v = json_array_get(row, (size_t)j);
			double d = json_number_value(v);
			if (!json_is_number(v) || !isfinite(d) || fabs(d) > 3.4e38)
				return fn_err(&c->err, 400, "x[%zu][%lld]: need a finite number", r,
					      (long long)j), 0;
			hx[r * s->w.k + j] = (float)d;
		}
	}
	int rc = kern_copy_h2d(s->dev, s->x, hx, m * (size_t)s->w.k * 4);
	if (rc == 0)
		rc = kern_linear(s->dev, s->x, (int64_t)m, &s->w, s->bias, s->act, s->y);
	if (rc == 0)
		rc = kern_copy_d2h(s->dev, hy, s->y, m * (size_t)s->w.n * 4);
	if (rc < 0) {
		fn_err(&c->err, 503, "affine: device failure (%s)", strerror(-rc));
		return rc;
	}
	json_t *ys = json_array();
	for (size_t r = 0; r < m; r++) {
		json_t *row = json_array();
		for (int64_t j = 0; j < s->w.n; j++)
			json_array_append_new(row, json_real(hy[r * s->w.n + j]));
		json_array_append_new(ys, row);
	}
	c->out = json_pack("{s:o}", "y", ys);
	const json_t *want = json_object_get(c->in, "echo_header");
	if (c->out && json_is_string(want)) {
		const char *val = NULL;
		for (size_t i = 0; i < c->n_headers && !val; i++)
			if (strcasecmp(c->headers[i].name, json_string_value(want)) == 0)
				val = c->headers[i].value;
		json_object_set_new(c->out, "header", val ? json_string(val) : json_null());
	}
	if (!c->out)
		fn_err(&c->err, 503, "out of memory");
	return 0;
}

static int affine_invoke(void *state, fn_call *calls, size_t n)
{
	affine *s = state;
	float *hx = malloc((size_t)AFFINE_MAX_ROWS * s->w.k * 4);
	float *hy = malloc((size_t)AFFINE_MAX_ROWS * s->w.n * 4);
	int rc = hx && hy ? 0 : -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		calls[i].out = NULL;
		calls[i].err.status = 0;
		calls[i].err.msg[0] = 0;
		if (rc < 0)
			fn_err(&calls[i].err, 503, "affine: %s", strerror(-rc));
		else if (!json_is_object(calls[i].in))
			fn_err(&calls[i].err, 400, "input must be an object {\"x\": [[...], ...]}");
		else
			rc = affine_one(s, &calls[i], hx, hy);
	}
	free(hx);
	free(hy);
	return rc;
}

/* V2: x FP32 [rows, k] -> y FP32 [rows, n], from weight [n, k] */
static int affine_v2_sig(const fn_load_args *a, fn_v2_sig *sig, fn_error *err)
{
	const fn_weight *w = fn_weight_find(a->weights, a->n_weights, "weight");
	if (!w || w->ndim != 2)
		return fn_err(err, 422, "affine: needs a 2-D tensor 'weight'");
	memset(sig, 0, sizeof *sig);
	sig->n_inputs = sig->n_outputs = 1;
	fn_v2_tensor_set(&sig->inputs[0], "x", "FP32", 2, (int64_t[]){-1, w->shape[1]});
	fn_v2_tensor_set(&sig->outputs[0], "y", "FP32", 2, (int64_t[]){-1, w->shape[0]});
	return 0;
}

static const fn_kind affine_kind = {
	.abi = FN_ABI_VERSION,
	.name = "affine",
	.summary = "example plugin: y = act(W x + b) on the backend (kern_linear)",
	.load = affine_load,
	.invoke = affine_invoke,
	.release = affine_release,
	.v2_sig = affine_v2_sig,
};

/* The one symbol thaw looks up in a plugin. */
const fn_kind *thaw_fn_kind(void)
{
	return &affine_kind;
}

/* fn_mlp.c — the `mlp` kind: a stack of dense layers `layers.N.weight` [out, in] (PyTorch
 * nn.Linear layout; N need not be consecutive, so nn.Sequential numbering works) with optional
 * `layers.N.bias`, the hidden activation from the metadata ("activation": relu (default),
 * gelu, tanh, silu, none), none after the last layer. Weights F32/F16/BF16 or int8
 * weight-only. Invoke {"inputs": [[...], ...]} -> {"outputs": [[...], ...], "labels": [...]}
 * (labels = argmax per row, for classifiers). A batch of requests runs as one stacked matrix
 * product per layer. The packed input {"inputs_f32": S, "shape": [rows, features]}, S a string
 * of rows x features float32 values in host byte order (4 bytes each instead of a JSON tree of
 * ~40), is how the runtime hands over tensors it has read compactly (the V2 route); its answer
 * is packed the same way: {"outputs_f32": S, "shape": [rows, classes], "labels": [...]}. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "functions/fn_kinds.h"

#define MLP_MAX_LAYERS 64
#define MLP_MAX_ROWS 65536

typedef struct mlp_layer {
	kern_mat w;
	float *bias;               /* F32 device copy or NULL */
	void *owned;               /* widened scales, if any */
} mlp_layer;

typedef struct mlp {
	kern_dev *dev;
	int n;
	mlp_layer l[MLP_MAX_LAYERS];
	kern_act act;
	int64_t in_dim, out_dim, max_dim;
	float *buf[2];             /* ping-pong activations, cap_rows x max_dim */
	int64_t cap_rows;
} mlp;

static void mlp_release(void *state)
{
	mlp *s = state;
	if (!s)
		return;
	for (int i = 0; i < s->n; i++) {
		kern_free(s->dev, s->l[i].bias);
		kern_free(s->dev, s->l[i].owned);
	}
	kern_free(s->dev, s->buf[0]);
	kern_free(s->dev, s->buf[1]);
	free(s);
}

static int cmp_int(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
}

static const char *meta_str(const json_t *meta, const char *key)
{
	const json_t *v = json_object_get(meta, key);
	if (!json_is_string(v))
		v = json_object_get(fn_meta_config(meta), key);
	if (!json_is_string(v)) {
		const json_t *st = json_object_get(meta, "safetensors_metadata");
		v = json_object_get(st, key);
	}
	return json_is_string(v) ? json_string_value(v) : NULL;
}

static int mlp_load(const fn_load_args *a, void **state, fn_error *err)
{
	int idx[MLP_MAX_LAYERS], n = 0, rc;
	*state = NULL;
	for (size_t i = 0; i < a->n_weights; i++) {
		const char *nm = a->weights[i].name;
		int v, len = 0;
		if (sscanf(nm, "layers.%d.weight%n", &v, &len) == 1 && nm[len] == 0 && v >= 0) {
			if (n == MLP_MAX_LAYERS)
				return fn_err(err, 422, "more than %d layers", MLP_MAX_LAYERS);
			idx[n++] = v;
		}
	}
	if (n == 0)
		return fn_err(err, 422, "no layers.N.weight tensors");
	qsort(idx, n, sizeof idx[0], cmp_int);
	mlp *s = calloc(1, sizeof *s);
	if (!s)
		return fn_err(err, 503, "out of memory");
	s->dev = a->dev;
	s->act = KERN_ACT_RELU;
	const char *act = meta_str(a->meta, "activation");
	if (!act)
		act = meta_str(a->meta, "hidden_act");
	if (act && kern_act_parse(act, &s->act) < 0) {
		rc = fn_err(err, 422, "unknown activation \"%s\"", act);
		goto fail;
	}
	for (int i = 0; i < n; i++) {
		char nm[64];
		snprintf(nm, sizeof nm, "layers.%d.weight", idx[i]);
		mlp_layer *L = &s->l[i];
		rc = fn_mat_from_weight(a->dev, a->weights, a->n_weights, nm, &L->w, &L->owned, err);
		s->n = i + 1;
		if (rc < 0)
			goto fail;
		if (i > 0 && L->w.k != s->l[i - 1].w.n) {
			rc = fn_err(err, 422, "%s takes %lld inputs but the layer before gives %lld", nm,
				    (long long)L->w.k, (long long)s->l[i - 1].w.n);
			goto fail;
		}
		snprintf(nm, sizeof nm, "layers.%d.bias", idx[i]);
		if (fn_weight_find(a->weights, a->n_weights, nm)) {
			L->bias = fn_vec_f32(a->dev, a->weights, a->n_weights, nm, L->w.n, err);
			if (!L->bias) {
				rc = -EINVAL;
				goto fail;
			}
		}
		if (L->w.n > s->max_dim)
			s->max_dim = L->w.n;
		if (L->w.k > s->max_dim)
			s->max_dim = L->w.k;
	}
	s->in_dim = s->l[0].w.k;
	s->out_dim = s->l[n - 1].w.n;
	*state = s;
	return 0;
fail:
	mlp_release(s);
	return rc < 0 ? rc : -EINVAL;
}

/* rows_of validates one request and returns its row count (or -1 with err). */
static long packed_rows_of(const mlp *s, const json_t *in, fn_error *err)
{
	const json_t *x = json_object_get(in, "inputs_f32"), *sh = json_object_get(in, "shape");
	const json_t *r = json_array_get(sh, 0), *c = json_array_get(sh, 1);
	if (!json_is_string(x) || json_array_size(sh) != 2 || !json_is_integer(r) || !json_is_integer(c)) {
		fn_err(err, 400, "expected {\"inputs_f32\": float32 bytes, \"shape\": [rows, features]}");
		return -1;
	}
	json_int_t rows = json_integer_value(r);
	if (rows <= 0 || rows > MLP_MAX_ROWS) {
		fn_err(err, rows > 0 ? 413 : 400, "inputs: need 1..%d rows, got %lld", MLP_MAX_ROWS,
		       (long long)rows);
		return -1;
	}
	if (json_integer_value(c) != s->in_dim) {
		fn_err(err, 400, "inputs[0]: need an array of %lld numbers", (long long)s->in_dim);
		return -1;
	}
	if (json_string_length(x) != (size_t)rows * (size_t)s->in_dim * sizeof(float)) {
		fn_err(err, 400, "inputs_f32: need %lld bytes for shape [%lld, %lld]",
		       (long long)(rows * s->in_dim * 4), (long long)rows, (long long)s->in_dim);
		return -1;
	}
	const char *b = json_string_value(x);
	for (size_t k = 0; k < (size_t)rows * (size_t)s->in_dim; k++) {
		float f;
		memcpy(&f, b + k * sizeof f, sizeof f);
		if (!isfinite(f)) {
			fn_err(err, 400, "inputs[%zu][%zu]: not a finite number", k / (size_t)s->in_dim,
			       k % (size_t)s->in_dim);
			return -1;
		}
	}
	return (long)rows;
}

static long rows_of(const mlp *s, const json_t *in, fn_error *err)
{
	if (json_is_object(in) && json_object_get(in, "inputs_f32"))
		return packed_rows_of(s, in, err);
	const json_t *x = json_object_get(in, "inputs");
	if (!json_is_object(in) || !json_is_array(x)) {
		fn_err(err, 400, "expected {\"inputs\": [[numbers], ...]}");
		return -1;
	}
	size_t rows = json_array_size(x);
	if (rows == 0 || rows > MLP_MAX_ROWS) {
		fn_err(err, rows ? 413 : 400, "inputs: need 1..%d rows, got %zu", MLP_MAX_ROWS, rows);
		return -1;
	}
	for (size_t r = 0; r < rows; r++) {
		const json_t *row = json_array_get(x, r);
		if (!json_is_array(row) || (int64_t)json_array_size(row) != s->in_dim) {
			fn_err(err, 400, "inputs[%zu]: need an array of %lld numbers", r,
			       (long long)s->in_dim);
			return -1;
		}
		for (size_t j = 0; j < json_array_size(row); j++) {
			const json_t *v = json_array_get(row, j);
			/* finite as the float32 it becomes (1e308 is not) */
			if (!json_is_number(v) || !isfinite((float)json_number_value(v))) {
				fn_err(err, 400, "inputs[%zu][%zu]: not a finite number", r, j);
				return -1;
			}
		}
	}
	return (long)rows;
}

static int ensure_rows(mlp *s, int64_t rows)
{
	if (rows <= s->cap_rows)
		return 0;
	for (int i = 0; i < 2; i++) {
		kern_free(s->dev, s->buf[i]);
		s->buf[i] = kern_alloc(s->dev, (size_t)rows * s->max_dim * 4);
		if (!s->buf[i]) {
			s->cap_rows = 0;
			return -ENOMEM;
		}
	}
	s->cap_rows = rows;
	return 0;
}

static int mlp_invoke(void *state, fn_call *calls, size_t n)
{
	mlp *s = state;
	long *rows = calloc(n ? n : 1, sizeof *rows);
	float *x = NULL;
	int64_t total = 0;
	int rc = 0;
	if (!rows)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		calls[i].out = NULL;
		calls[i].err.status = 0;
		calls[i].err.msg[0] = 0;
		rows[i] = rows_of(s, calls[i].in, &calls[i].err);
		if (rows[i] > 0)
			total += rows[i];
	}
	if (total == 0)
		goto done;
	size_t w = (size_t)(s->in_dim > s->out_dim ? s->in_dim : s->out_dim);
	x = malloc((size_t)total * w * 4);
	if (!x || ensure_rows(s, total) < 0) {
		rc = -ENOMEM;
		goto done;
	}
	int64_t r0 = 0;
	for (size_t i = 0; i < n; i++) {
		const json_t *packed = json_object_get(calls[i].in, "inputs_f32");
		if (packed && rows[i] > 0) {
			memcpy(x + r0 * s->in_dim, json_string_value(packed),
			       (size_t)rows[i] * (size_t)s->in_dim * sizeof(float));
			r0 += rows[i];
			continue;
		}
		const json_t *xi = json_object_get(calls[i].in, "inputs");
		for (long r = 0; r < (rows[i] > 0 ? rows[i] : 0); r++, r0++) {
			const json_t *row = json_array_get(xi, r);
			for (int64_t j = 0; j < s->in_dim; j++)
				x[r0 * s->in_dim + j] = (float)json_number_value(json_array_get(row, j));
		}
	}
	rc = kern_copy_h2d(s->dev, s->buf[0], x, (size_t)total * s->in_dim * 4);
	int cur = 0;
	for (int l = 0; l < s->n && rc == 0; l++, cur ^= 1)
		rc = kern_linear(s->dev, s->buf[cur], total, &s->l[l].w, s->l[l].bias,
				 l == s->n - 1 ? KERN_ACT_NONE : s->act, s->buf[cur ^ 1]);
	if (rc == 0)
		rc = kern_copy_d2h(s->dev, x, s->buf[cur], (size_t)total * s->out_dim * 4);
	if (rc < 0)
		goto done;
	r0 = 0;
	for (size_t i = 0; i < n; i++) {
		if (rows[i] <= 0)
			continue;
		json_t *outs = json_array(), *labels = json_array();
		if (json_object_get(calls[i].in, "inputs_f32")) {   /* packed in, packed out */
			const float *y0 = x + r0 * s->out_dim;
			for (long r = 0; r < rows[i]; r++, r0++) {
				const float *y = x + r0 * s->out_dim;
				int64_t best = 0;
				for (int64_t j = 0; j < s->out_dim; j++)
					if (y[j] > y[best])
						best = j;
				json_array_append_new(labels, json_integer(best));
			}
			json_decref(outs);
			outs = json_stringn_nocheck((const char *)y0,
						    (size_t)rows[i] * (size_t)s->out_dim * sizeof(float));
			calls[i].out = json_pack("{s:o,s:[I,I],s:o}", "outputs_f32", outs, "shape",
						 (json_int_t)rows[i], (json_int_t)s->out_dim, "labels", labels);
			continue;
		}
		for (long r = 0; r < rows[i]; r++, r0++) {
			json_t *row = json_array();
			const float *y = x + r0 * s->out_dim;
			int64_t best = 0;
			for (int64_t j = 0; j < s->out_dim; j++) {
				json_array_append_new(row, json_real(y[j]));
				if (y[j] > y[best])
					best = j;
			}
			json_array_append_new(outs, row);
			json_array_append_new(labels, json_integer(best));
		}
		calls[i].out = json_pack("{s:o,s:o}", "outputs", outs, "labels", labels);
	}
done:
	if (rc < 0)
		for (size_t i = 0; i < n; i++)
			if (!calls[i].err.status && !calls[i].out)
				fn_err(&calls[i].err, rc == -ENOMEM ? 503 : 500, "mlp: %s", strerror(-rc));
	free(x);
	free(rows);
	return rc;
}

/* V2: INPUT0 FP32 [batch, features] -> OUTPUT0 FP32 [batch, classes], LABEL INT64 [batch];
 * features: the input dimension of the lowest-numbered layer, classes: the output dimension
 * of the highest */
static int mlp_v2_sig(const fn_load_args *a, fn_v2_sig *sig, fn_error *err)
{
	int64_t in = -1, classes = -1;
	long lo = -1, hi = -1;
	for (size_t i = 0; i < a->n_weights; i++) {
		const fn_weight *w = &a->weights[i];
		long n;
		int used = 0;
		if (sscanf(w->name, "layers.%ld.weight%n", &n, &used) != 1 || w->name[used] ||
		    w->ndim != 2)
			continue;
		if (lo < 0 || n < lo) {
			lo = n;
			in = w->shape[1];
		}
		if (hi < 0 || n > hi) {
			hi = n;
			classes = w->shape[0];
		}
	}
	if (in < 1 || classes < 1)
		return fn_err(err, 422, "mlp: no layers.N.weight [out, in] tensors");
	memset(sig, 0, sizeof *sig);
	sig->n_inputs = 1;
	fn_v2_tensor_set(&sig->inputs[0], "INPUT0", "FP32", 2, (int64_t[]){-1, in});
	sig->n_outputs = 2;
	fn_v2_tensor_set(&sig->outputs[0], "OUTPUT0", "FP32", 2, (int64_t[]){-1, classes});
	fn_v2_tensor_set(&sig->outputs[1], "LABEL", "INT64", 1, (int64_t[]){-1});
	return 0;
}

const fn_kind fn_mlp_kind = {
	.abi = FN_ABI_VERSION,
	.name = "mlp",
	.summary = "dense layers layers.N.weight/bias; inputs -> outputs + argmax labels",
	.load = mlp_load,
	.invoke = mlp_invoke,
	.release = mlp_release,
	.v2_sig = mlp_v2_sig,
};

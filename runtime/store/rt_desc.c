/* rt_desc.c — revision descriptors: computed from a snapshot and its kind, coded as JSON.
 * See rt_desc.h. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>
#include "runtime/base/rt_log.h"
#include "runtime/store/rt_desc.h"
#include "runtime/store/rt_manifest.h"
#include "snapshot/snap.h"

/* the kind of field kind, loading a plugin's object when needed; NULL with err */
static const fn_kind *kind_of(const char *kind, char *err, size_t errlen)
{
	const char *plugin = rt_manifest_plugin_path(kind);
	const fn_kind *k = NULL;
	if (plugin) {
		char e[256];
		if (fn_kind_load_so(plugin, &k, e, sizeof e) < 0) {
			rt_errf(err, errlen, -ENOENT, "plugin: %s", e);
			return NULL;
		}
		return k;
	}
	k = kind ? fn_kind_find(kind) : NULL;
	if (!k)
		rt_errf(err, errlen, -ENOENT, "unknown function kind '%.100s'", kind ? kind : "");
	return k;
}

/* does the signature name only V2 numeric datatypes and shapes of -1 or more? */
static int sig_valid(const fn_v2_sig *sig)
{
	static const char *const types[] = {"BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8",
					    "INT16", "INT32", "INT64", "FP16", "BF16", "FP32", "FP64"};
	if (sig->n_inputs < 0 || sig->n_inputs > FN_V2_TENSORS_MAX || sig->n_outputs < 0 ||
	    sig->n_outputs > FN_V2_TENSORS_MAX)
		return 0;
	for (int i = 0; i < sig->n_inputs + sig->n_outputs; i++) {
		const fn_v2_tensor *t = i < sig->n_inputs ? &sig->inputs[i] : &sig->outputs[i - sig->n_inputs];
		int known = 0;
		for (size_t k = 0; k < sizeof types / sizeof types[0]; k++)
			known |= strcmp(t->datatype, types[k]) == 0;
		if (!known || !t->name[0] || memchr(t->name, 0, sizeof t->name) == NULL ||
		    t->ndim < 0 || t->ndim > FN_MAX_DIMS)
			return 0;
		for (int d = 0; d < t->ndim; d++)
			if (t->shape[d] < -1)
				return 0;
	}
	return 1;
}

int rt_desc_compute(snap_file *f, const char *kind, rt_desc *d, char *err, size_t errlen)
{
	memset(d, 0, sizeof *d);
	const fn_kind *k = kind_of(kind && kind[0] ? kind : f ? snap_kind(f) : NULL, err, errlen);
	if (!k)
		return -ENOENT;
	snprintf(d->kind, sizeof d->kind, "%s", k->name);
	size_t n = f ? snap_tensor_count(f) : 0;
	fn_weight *w = calloc(n ? n : 1, sizeof *w);
	json_t *meta = f ? json_loads(snap_metadata_json(f), 0, NULL) : NULL;
	int rc = 0;
	if (!w)
		return rt_errf(err, errlen, -ENOMEM, "out of memory");
	if (f) {
		XXH3_state_t *xs = XXH3_createState();
		if (!xs) {
			rc = rt_errf(err, errlen, -ENOMEM, "out of memory");
			goto out;
		}
		XXH3_64bits_reset(xs);
		for (size_t i = 0; i < n; i++) {
			const snap_tensor *t = snap_tensor_at(f, i);
			uint64_t fields[2 + SNAP_MAX_DIMS + 2] = {t->dtype, t->ndim};
			for (uint32_t j = 0; j < t->ndim && j < SNAP_MAX_DIMS; j++)
				fields[2 + j] = t->shape[j];
			fields[2 + SNAP_MAX_DIMS] = t->offset;
			fields[3 + SNAP_MAX_DIMS] = t->nbytes;
			XXH3_64bits_update(xs, t->name, strlen(t->name) + 1);
			XXH3_64bits_update(xs, fields, sizeof fields);
			w[i].name = t->name;
			w[i].dtype = t->dtype_name;
			w[i].ndim = (int)(t->ndim < FN_MAX_DIMS ? t->ndim : FN_MAX_DIMS);
			for (int j = 0; j < w[i].ndim; j++)
				w[i].shape[j] = (int64_t)t->shape[j];
			w[i].nbytes = (size_t)t->nbytes;
		}
		snprintf(d->digest, sizeof d->digest, "%016" PRIx64, (uint64_t)XXH3_64bits_digest(xs));
		XXH3_freeState(xs);
		d->image_bytes = snap_image_size(f);
		d->text = json_is_object(json_object_get(meta, "tokenizer"));
	}
	if (k->v2_sig) {
		fn_load_args a = {.dev = NULL, .weights = w, .n_weights = n, .meta = meta};
		fn_error fe = {0};
		/* a snapshot the kind cannot describe deploys as before (its load will say why);
		 * it has no V2 inputs or outputs */
		if (k->v2_sig(&a, &d->v2, &fe) < 0)
			rt_logf(RT_LOG_WARN, "kind '%s' declares no V2 signature for %s: %s", k->name,
				f ? snap_path(f) : "(no snapshot)", fe.msg[0] ? fe.msg : "refused");
		else if (!sig_valid(&d->v2))
			rt_logf(RT_LOG_WARN, "kind '%s': V2 signature ignored: at most %d inputs and %d "
				"outputs, named, of numeric V2 datatypes, dimensions -1 or more", k->name,
				FN_V2_TENSORS_MAX, FN_V2_TENSORS_MAX);
		else
			d->has_v2 = 1;
		if (!d->has_v2)
			memset(&d->v2, 0, sizeof d->v2);
	}
	d->known = 1;
out:
	json_decref(meta);
	free(w);
	if (rc < 0)
		memset(d, 0, sizeof *d);
	return rc;
}

int rt_desc_compute_path(const char *path, const char *kind, rt_desc *d, char *err,
			 size_t errlen)
{
	snap_file *f = NULL;
	if (path && path[0]) {
		int rc = snap_open(&f, path, err, errlen);
		if (rc < 0) {
			snap_close(f);
			memset(d, 0, sizeof *d);
			return rc;
		}
	}
	int rc = rt_desc_compute(f, kind, d, err, errlen);
	snap_close(f);
	return rc;
}

static json_t *tensors_json(const fn_v2_tensor *t, int n)
{
	json_t *a = json_array();
	for (int i = 0; a && i < n; i++) {
		json_t *sh = json_array();
		for (int j = 0; j < t[i].ndim; j++)
			json_array_append_new(sh, json_integer(t[i].shape[j]));
		json_array_append_new(a, json_pack("{s:s,s:s,s:o}", "name", t[i].name, "datatype",
						   t[i].datatype, "shape", sh));
	}
	return a;
}

json_t *rt_desc_v2_json(const rt_desc *d, int outputs)
{
	if (!d->has_v2)
		return json_array();
	return outputs ? tensors_json(d->v2.outputs, d->v2.n_outputs)
		       : tensors_json(d->v2.inputs, d->v2.n_inputs);
}

json_t *rt_desc_to_json(const rt_desc *d)
{
	json_t *v2 = d->has_v2 ? json_pack("{s:o,s:o}", "inputs", rt_desc_v2_json(d, 0), "outputs",
					    rt_desc_v2_json(d, 1))
			       : json_null();
	return json_pack("{s:i,s:I,s:s,s:s,s:b,s:o}", "version", RT_DESC_VERSION, "image_bytes",
			 (json_int_t)d->image_bytes, "digest", d->digest, "kind", d->kind, "text",
			 d->text, "v2", v2);
}

static int tensors_from_json(const json_t *a, fn_v2_tensor *t, int *n)
{
	if (!json_is_array(a) || json_array_size(a) > FN_V2_TENSORS_MAX)
		return -EINVAL;
	*n = (int)json_array_size(a);
	for (int i = 0; i < *n; i++) {
		const json_t *o = json_array_get(a, (size_t)i), *sh = json_object_get(o, "shape");
		const char *name = json_string_value(json_object_get(o, "name"));
		const char *dt = json_string_value(json_object_get(o, "datatype"));
		if (!name || !dt || !json_is_array(sh) || json_array_size(sh) > FN_MAX_DIMS)
			return -EINVAL;
		int64_t shape[FN_MAX_DIMS];
		for (size_t j = 0; j < json_array_size(sh); j++) {
			if (!json_is_integer(json_array_get(sh, j)))
				return -EINVAL;
			shape[j] = json_integer_value(json_array_get(sh, j));
		}
		fn_v2_tensor_set(&t[i], name, dt, (int)json_array_size(sh), shape);
	}
	return 0;
}

int rt_desc_from_json(const json_t *o, rt_desc *d)
{
	memset(d, 0, sizeof *d);
	const json_t *ib = json_object_get(o, "image_bytes"), *v2 = json_object_get(o, "v2");
	const char *dg = json_string_value(json_object_get(o, "digest"));
	const char *k = json_string_value(json_object_get(o, "kind"));
	if (!json_is_object(o) || json_integer_value(json_object_get(o, "version")) != RT_DESC_VERSION ||
	    !json_is_integer(ib) || json_integer_value(ib) < 0 || !dg || strlen(dg) >= sizeof d->digest ||
	    !k || strlen(k) >= sizeof d->kind)
		return -EINVAL;
	d->image_bytes = (uint64_t)json_integer_value(ib);
	snprintf(d->digest, sizeof d->digest, "%s", dg);
	snprintf(d->kind, sizeof d->kind, "%s", k);
	d->text = json_is_true(json_object_get(o, "text"));
	if (json_is_object(v2)) {
		if (tensors_from_json(json_object_get(v2, "inputs"), d->v2.inputs, &d->v2.n_inputs) < 0 ||
		    tensors_from_json(json_object_get(v2, "outputs"), d->v2.outputs, &d->v2.n_outputs) < 0) {
			memset(d, 0, sizeof *d);
			return -EINVAL;
		}
		d->has_v2 = 1;
	} else if (!json_is_null(v2)) {
		memset(d, 0, sizeof *d);
		return -EINVAL;
	}
	d->known = 1;
	return 0;
}

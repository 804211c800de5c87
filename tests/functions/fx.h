/* fx.h — test helper (header only, static): load a model directory (model.safetensors +
 * config.json) from tests/data into an fn_weight table, convert its float tensors to another
 * dtype, quantize them to int8 the way the packer does, and copy the table to a device. An
 * independent little safetensors reader, so the kind tests do not depend on snapshot/. */
#ifndef THAW_TEST_FX_H
#define THAW_TEST_FX_H
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "functions/fn.h"
#include "functions/fn_quant.h"
#include "tests/t.h"

typedef struct fx_model {
	fn_weight w[512];
	void *data[512];           /* owned host (or device, after fx_to_dev) buffers */
	char *names[512];
	size_t n;
	json_t *meta;
	int on_dev;
} fx_model;



static void fx_free(kern_dev *d, fx_model *m)
{
	for (size_t i = 0; i < m->n; i++) {
		if (m->on_dev)
			kern_free(d, m->data[i]);
		else
			free(m->data[i]);
		free(m->names[i]);
	}
	json_decref(m->meta);
	memset(m, 0, sizeof *m);
}

static int fx_add(fx_model *m, const char *name, const char *dtype, int ndim, const int64_t *shape,
		  void *data, size_t nbytes)
{
	if (m->n == 512)
		return -ENOSPC;
	fn_weight *w = &m->w[m->n];
	m->names[m->n] = strdup(name);
	m->data[m->n] = data;
	w->name = m->names[m->n];
	w->dtype = dtype;
	w->ndim = ndim;
	for (int i = 0; i < ndim; i++)
		w->shape[i] = shape[i];
	w->data = data;
	w->nbytes = nbytes;
	m->n++;
	return 0;
}

/* fx_load reads tests/data/<dir>/model.safetensors (+ config.json when present); meta =
 * {"kind": kind, "config": config, extra keys from the safetensors __metadata__}. */
static int fx_load(const char *dir, const char *kind, fx_model *m)
{
	char path[1024];
	size_t len;
	memset(m, 0, sizeof *m);
	snprintf(path, sizeof path, "%s/tests/data/%s/model.safetensors", t_src(), dir);
	char *buf = t_read_file(path, &len);
	if (!buf || len < 8)
		return -ENOENT;
	uint64_t hl;
	memcpy(&hl, buf, 8);
	json_error_t je;
	json_t *h = json_loadb(buf + 8, (size_t)hl, 0, &je);
	if (!h) {
		free(buf);
		return -EBADMSG;
	}
	m->meta = json_pack("{s:s}", "kind", kind);
	const char *key;
	json_t *v;
	json_object_foreach(h, key, v) {
		if (strcmp(key, "__metadata__") == 0) {
			json_object_update(m->meta, v);
			continue;
		}
		const char *dt = json_string_value(json_object_get(v, "dtype"));
		json_t *sh = json_object_get(v, "shape"), *off = json_object_get(v, "data_offsets");
		int64_t shape[8];
		int nd = (int)json_array_size(sh);
		for (int i = 0; i < nd && i < 8; i++)
			shape[i] = json_integer_value(json_array_get(sh, i));
		size_t a = (size_t)json_integer_value(json_array_get(off, 0));
		size_t b = (size_t)json_integer_value(json_array_get(off, 1));
		void *d = malloc(b - a + 1);
		memcpy(d, buf + 8 + hl + a, b - a);
		static const char *const dts[] = {"F32", "F16", "BF16", "I8", "I32"};
		const char *dts_static = "?";
		for (int i = 0; i < 5; i++)
			if (dt && strcmp(dt, dts[i]) == 0)
				dts_static = dts[i];
		fx_add(m, key, dts_static, nd, shape, d, b - a);
	}
	json_decref(h);
	free(buf);
	snprintf(path, sizeof path, "%s/tests/data/%s/config.json", t_src(), dir);
	json_t *cfg = json_load_file(path, 0, &je);
	json_object_set_new(m->meta, "config", cfg ? cfg : json_null());
	return 0;
}

static void fx_get_f32(const fn_weight *w, float *out, size_t cnt)
{
	for (size_t i = 0; i < cnt; i++) {
		if (!strcmp(w->dtype, "F32"))
			out[i] = ((const float *)w->data)[i];
		else if (!strcmp(w->dtype, "BF16"))
			out[i] = kern_bf16_to_f32(((const uint16_t *)w->data)[i]);
		else
			out[i] = kern_f16_to_f32(((const uint16_t *)w->data)[i]);
	}
}

/* fx_convert converts every float tensor to dtype ("F32", "F16" or "BF16"). */
static void fx_convert(fx_model *m, const char *dtype)
{
	static const char *const names[] = {"F32", "F16", "BF16"};
	const char *dts = !strcmp(dtype, "F32") ? names[0] : !strcmp(dtype, "F16") ? names[1] : names[2];
	for (size_t i = 0; i < m->n; i++) {
		fn_weight *w = &m->w[i];
		if (strcmp(w->dtype, "F32") && strcmp(w->dtype, "F16") && strcmp(w->dtype, "BF16"))
			continue;
		size_t es = strcmp(w->dtype, "F32") ? 2 : 4, cnt = w->nbytes / es;
		float *f = malloc(cnt * 4 + 1);
		fx_get_f32(w, f, cnt);
		void *o = f;
		if (dts != names[0]) {
			uint16_t *h = malloc(cnt * 2 + 1);
			for (size_t j = 0; j < cnt; j++)
				h[j] = dts == names[1] ? kern_f32_to_f16(f[j]) : kern_f32_to_bf16(f[j]);
			free(f);
			o = h;
		}
		free(m->data[i]);
		m->data[i] = o;
		w->data = o;
		w->dtype = dts;
		w->nbytes = cnt * (dts == names[0] ? 4 : 2);
	}
}

/* fx_quantize turns every eligible matrix into I8 + NAME_scale (F32), as the packer does;
 * returns how many were quantized. */
static int fx_quantize(fx_model *m, int block)
{
	int cnt = 0;
	size_t n0 = m->n;
	for (size_t i = 0; i < n0; i++) {
		fn_weight *w = &m->w[i];
		if (!fn_quant_eligible(w->name, w->dtype, w->ndim, w->shape, block))
			continue;
		int64_t n = w->shape[0], k = w->shape[1], ns = fn_quant_scale_count(n, k, block);
		int8_t *q = malloc((size_t)(n * k));
		float *sc = malloc((size_t)ns * 4);
		if (fn_quant_int8(w->dtype, w->data, n, k, block, q, sc) < 0)
			return -1;
		free(m->data[i]);
		m->data[i] = q;
		w->data = q;
		w->dtype = "I8";
		w->nbytes = (size_t)(n * k);
		char nm[512];
		snprintf(nm, sizeof nm, "%s%s", w->name, FN_QUANT_SCALE_SUFFIX);
		int64_t shp[2] = {n, block ? k / block : 1};
		fx_add(m, nm, "F32", block ? 2 : 1, shp, sc, (size_t)ns * 4);
		w = &m->w[i];
		cnt++;
	}
	return cnt;
}

/* fx_to_dev copies every tensor to device d (no-op semantics for "cpu" but still copies). */
static int fx_to_dev(kern_dev *d, fx_model *m)
{
	for (size_t i = 0; i < m->n; i++) {
		void *p = kern_alloc(d, m->w[i].nbytes);
		if (!p || kern_copy_h2d(d, p, m->data[i], m->w[i].nbytes) < 0)
			return -ENOMEM;
		free(m->data[i]);
		m->data[i] = p;
		m->w[i].data = p;
	}
	m->on_dev = 1;
	return 0;
}
/* fx_invoke runs a batch through k the v1 way (in[] -> out[] / errs[]) over fn_call. */
static int fx_invoke(const fn_kind *k, void *st, json_t *const *in, json_t **out, fn_error *errs,
		     size_t n)
{
	fn_call *c = calloc(n, sizeof *c);
	if (!c)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		c[i].in = in[i];
	int rc = k->invoke(st, c, n);
	for (size_t i = 0; i < n; i++) {
		out[i] = c[i].out;
		errs[i] = c[i].err;
	}
	free(c);
	return rc;
}
#endif

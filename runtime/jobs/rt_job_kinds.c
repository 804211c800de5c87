/* rt_job_kinds.c — the job kinds the runner drives (rt_jobs_int.h): finetune
 * (functions/fn_finetune.c) and quantize (functions/fn_qjob.c). Each reads its source snapshot
 * into host memory (rt_image), runs in units on the lane, and writes its result with the
 * snapshot writer: same tensor names as the source, the source's metadata plus {"job": {"id",
 * "type", "source", "metrics"}} (and "quantization" for quantize). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "functions/fn_finetune.h"
#include "functions/fn_qjob.h"
#include "kernels/kern.h"
#include "runtime/jobs/rt_jobs_int.h"
#include "runtime/base/rt_log.h"
#include "runtime/sched/rt_model.h"
#include "snapshot/snap_pack.h"

/* ---- parameters ---- */

/* reads params[key] as a number in [min, max] (integer when integral), default def */
static int num_param(const json_t *p, const char *key, double def, double min, double max,
		     int integral, double *out, char *err, size_t errlen)
{
	const json_t *v = json_object_get(p, key);
	*out = def;
	if (!v)
		return 0;
	if (!json_is_number(v) || (integral && !json_is_integer(v)))
		return rt_errf(err, errlen, -EINVAL, "params.%s: must be %s", key,
			       integral ? "an integer" : "a number");
	double x = json_number_value(v);
	if (!isfinite(x) || x < min || x > max)
		return rt_errf(err, errlen, -EINVAL, "params.%s: must be in %g..%g", key, min, max);
	*out = x;
	return 0;
}

static int known_keys(const json_t *p, const char *const *keys, char *err, size_t errlen)
{
	const char *k;
	const json_t *v;
	json_object_foreach((json_t *)p, k, v) {
		int ok = 0;
		for (int i = 0; keys[i]; i++)
			ok |= strcmp(keys[i], k) == 0;
		if (!ok)
			return rt_errf(err, errlen, -EINVAL, "params.%s: unknown parameter", k);
	}
	return 0;
}

static int common_checks(const json_t *p, int need_data, char *err, size_t errlen)
{
	const json_t *d = json_object_get(p, "data");
	double x;
	if (need_data && !d)
		return rt_errf(err, errlen, -EINVAL, "params.data: required (a CSV file: features..., label)");
	if (d && (!json_is_string(d) || !json_string_length(d)))
		return rt_errf(err, errlen, -EINVAL, "params.data: must be a file path");
	const json_t *pr = json_object_get(p, "promote");
	if (pr && !json_is_boolean(pr))
		return rt_errf(err, errlen, -EINVAL, "params.promote: must be true or false");
	return num_param(p, "feature_scale", 1, 1e-12, 1e12, 0, &x, err, errlen);
}

typedef struct ft_opts {
	fn_ft_params p;
	int task;                  /* -1 from the output size, 1 classify, 0 regress */
	double feature_scale;
} ft_opts;

static int ft_read(const json_t *p, ft_opts *o, char *err, size_t errlen)
{
	static const char *const keys[] = {"data", "epochs", "learning_rate", "batch_size", "seed",
					   "validation_split", "task", "feature_scale", "promote", NULL};
	double v;
	int rc;
	memset(o, 0, sizeof *o);
	if ((rc = known_keys(p, keys, err, errlen)) < 0 || (rc = common_checks(p, 1, err, errlen)) < 0)
		return rc;
	if ((rc = num_param(p, "epochs", 10, 1, 100000, 1, &v, err, errlen)) < 0)
		return rc;
	o->p.epochs = (int)v;
	if ((rc = num_param(p, "learning_rate", 1e-3, 1e-9, 10, 0, &v, err, errlen)) < 0)
		return rc;
	o->p.learning_rate = v;
	if ((rc = num_param(p, "batch_size", 32, 1, 65536, 1, &v, err, errlen)) < 0)
		return rc;
	o->p.batch_size = (int)v;
	if ((rc = num_param(p, "seed", 0, 0, 9007199254740991.0, 1, &v, err, errlen)) < 0)
		return rc;
	o->p.seed = (uint64_t)v;
	if ((rc = num_param(p, "validation_split", 0.2, 0, 0.9, 0, &v, err, errlen)) < 0)
		return rc;
	o->p.validation_split = v;
	if ((rc = num_param(p, "feature_scale", 1, 1e-12, 1e12, 0, &v, err, errlen)) < 0)
		return rc;
	o->feature_scale = v;
	o->task = -1;
	const json_t *t = json_object_get(p, "task");
	if (t) {
		const char *ts = json_string_value(t);
		if (!ts || (strcmp(ts, "classify") && strcmp(ts, "regress")))
			return rt_errf(err, errlen, -EINVAL, "params.task: must be \"classify\" or \"regress\"");
		o->task = strcmp(ts, "classify") == 0;
	}
	return 0;
}

static int ft_check(const json_t *params, const char *kind, char *err, size_t errlen)
{
	ft_opts o;
	if (kind && strcmp(kind, "mlp") != 0)
		return rt_errf(err, errlen, -EINVAL, "function: finetune needs an mlp, this one is a %s", kind);
	return ft_read(params, &o, err, errlen);
}

static int q_block(const json_t *p, int *block, char *err, size_t errlen)
{
	const json_t *m = json_object_get(p, "method");
	const char *s = m ? json_string_value(m) : "int8";
	if (!s || (strcmp(s, "int8") && strcmp(s, "int8:32")))
		return rt_errf(err, errlen, -EINVAL, "params.method: must be \"int8\" or \"int8:32\"");
	*block = strcmp(s, "int8:32") == 0 ? 32 : 0;
	return 0;
}

static int q_check(const json_t *params, const char *kind, char *err, size_t errlen)
{
	static const char *const keys[] = {"method", "data", "feature_scale", "promote", NULL};
	int block, rc;
	if ((rc = known_keys(params, keys, err, errlen)) < 0 ||
	    (rc = common_checks(params, 0, err, errlen)) < 0)
		return rc;
	if (kind && json_object_get(params, "data") && strcmp(kind, "mlp") != 0)
		return rt_errf(err, errlen, -EINVAL, "params.data: evaluation data is for mlp functions "
			       "(this one is a %s)", kind);
	return q_block(params, &block, err, errlen);
}

/* ---- the source: a host image, its metadata, F32 copies of the mlp layers ---- */

typedef struct src_model {
	rt_image *img;
	json_t *meta;
} src_model;

static void src_free(src_model *s)
{
	rt_image_free(s->img);
	json_decref(s->meta);
	memset(s, 0, sizeof *s);
}

static int src_open(const char *path, src_model *s, char *err, size_t errlen)
{
	memset(s, 0, sizeof *s);
	int rc = rt_image_restore(path, NULL, 0, 1, &s->img, err, errlen);
	if (rc < 0)
		return rc;
	json_error_t je;
	s->meta = json_loads(s->img->table->metadata_json, 0, &je);
	if (!json_is_object(s->meta)) {
		src_free(s);
		return rt_errf(err, errlen, -EINVAL, "snapshot %s: metadata is not a JSON object", path);
	}
	return 0;
}

/* F32 copy of a float table entry (malloc'd) */
static float *to_f32(const snap_table_entry *e, int64_t cnt)
{
	float *o = malloc((size_t)cnt * 4);
	if (!o)
		return NULL;
	const uint16_t *h = e->data;
	for (int64_t i = 0; i < cnt; i++)
		switch (e->dtype_id) {
		case SNAP_DTYPE_F32: memcpy(&o[i], (const char *)e->data + i * 4, 4); break;
		case SNAP_DTYPE_F16: o[i] = kern_f16_to_f32(h[i]); break;
		default: o[i] = kern_bf16_to_f32(h[i]); break;
		}
	return o;
}

static int cmp_int(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
}

static const char *meta_act(const json_t *meta)
{
	const json_t *cfg = json_object_get(meta, "config");
	const json_t *st = json_object_get(meta, "safetensors_metadata");
	const json_t *c[] = {json_object_get(meta, "activation"), json_object_get(cfg, "activation"),
			     json_object_get(cfg, "hidden_act"), json_object_get(st, "activation")};
	for (int i = 0; i < 4; i++)
		if (json_is_string(c[i]))
			return json_string_value(c[i]);
	return "relu";
}

/* writes the result: tensors w[0..n), metadata = source meta + extra keys (stolen) */
static int write_result(const rt_job_env *env, const fn_weight *w, size_t n, const json_t *src_meta,
			json_t *extra, char *err, size_t errlen)
{
	snap_writer *sw = NULL;
	snap_writer_opts o = {.threads = 2, .progress = 0};   /* thread pool: leave cores to calls */
	json_t *meta = json_deep_copy(src_meta);
	char *text = NULL, *dsum = NULL;
	int rc = snap_writer_open(&sw, env->result_path, &o, err, errlen);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		uint64_t shape[FN_MAX_DIMS];
		for (int d = 0; d < w[i].ndim; d++)
			shape[d] = (uint64_t)w[i].shape[d];
		rc = snap_writer_add(sw, w[i].name, snap_dtype_from_name(w[i].dtype), (uint32_t)w[i].ndim,
				     shape, w[i].data, w[i].nbytes, 0, err, errlen);
	}
	if (rc == 0) {
		dsum = snap_writer_dtype_summary(sw);
		json_object_set_new(meta, "dtypes", dsum ? json_loads(dsum, 0, NULL) : json_object());
		json_object_update(meta, extra);
		text = json_dumps(meta, JSON_COMPACT | JSON_SORT_KEYS);
		if (!text)
			rc = rt_errf(err, errlen, -ENOMEM, "out of memory");
	}
	if (rc == 0) {
		rc = snap_writer_finish(sw, text, NULL, err, errlen);
		sw = NULL;
	}
	if (sw)
		snap_writer_abort(sw);
	free(text);
	free(dsum);
	json_decref(meta);
	json_decref(extra);
	return rc;
}

static json_t *job_meta(const rt_job_env *env, json_t *metrics)
{
	json_t *src = json_pack("{s:s}", "snapshot", env->src_path);
	if (env->function) {
		json_object_set_new(src, "function", json_string(env->function));
		json_object_set_new(src, "revision", json_integer(env->revision));
	}
	return json_pack("{s:{s:I,s:s,s:o,s:O,s:o}}", "job", "id", (json_int_t)env->id, "type", env->type,
			 "source", src, "params", env->params, "metrics", metrics);
}

/* ---- finetune ---- */

typedef struct ft_job {
	src_model src;
	fn_ft_data data;
	fn_ft *ft;
	int nl, idx[64];
	int64_t n[64], k[64];
	fn_weight out[128];
	char names[128][48];
	double unit_us;
	int dev_failed;            /* moving to the device failed: stay on the host */
} ft_job;

static void ft_free(void *st)
{
	ft_job *j = st;
	if (!j)
		return;
	fn_ft_free(j->ft);
	fn_ft_data_free(&j->data);
	src_free(&j->src);
	free(j);
}

static int ft_prepare(const rt_job_env *env, const void *ckpt, size_t ckpt_len, void **st,
		      char *err, size_t errlen)
{
	ft_opts o;
	float *w[64] = {0}, *b[64] = {0};
	int64_t n[64], k[64];
	int rc = ft_read(env->params, &o, err, errlen);
	if (rc < 0)
		return rc;
	ft_job *j = calloc(1, sizeof *j);
	if (!j)
		return rt_errf(err, errlen, -ENOMEM, "out of memory");
	if ((rc = src_open(env->src_path, &j->src, err, errlen)) < 0)
		goto fail;
	const snap_table *t = j->src.img->table;
	if (!t->kind || strcmp(t->kind, "mlp") != 0) {
		rc = rt_errf(err, errlen, -EINVAL, "finetune needs an mlp snapshot, %s is a %s",
			     env->src_path, t->kind ? t->kind : "snapshot of unknown kind");
		goto fail;
	}
	for (size_t i = 0; i < t->n; i++) {
		int v, len = 0;
		if (sscanf(t->t[i].name, "layers.%d.weight%n", &v, &len) == 1 && t->t[i].name[len] == 0 &&
		    v >= 0 && j->nl < 16)
			j->idx[j->nl++] = v;
	}
	if (j->nl == 0) {
		rc = rt_errf(err, errlen, -EINVAL, "%s: no layers.N.weight tensors", env->src_path);
		goto fail;
	}
	qsort(j->idx, (size_t)j->nl, sizeof j->idx[0], cmp_int);
	for (int l = 0; l < j->nl; l++) {
		char nm[48];
		snprintf(nm, sizeof nm, "layers.%d.weight", j->idx[l]);
		const snap_table_entry *e = snap_table_find(t, nm);
		if (e->ndim != 2 || (e->dtype_id != SNAP_DTYPE_F32 && e->dtype_id != SNAP_DTYPE_F16 &&
				     e->dtype_id != SNAP_DTYPE_BF16)) {
			rc = rt_errf(err, errlen, -EINVAL, "%s: %s must be a 2-D F32/F16/BF16 matrix (int8 "
				     "models cannot be fine-tuned)", env->src_path, nm);
			goto fail;
		}
		n[l] = j->n[l] = e->shape[0];
		k[l] = j->k[l] = e->shape[1];
		w[l] = to_f32(e, n[l] * k[l]);
		snprintf(nm, sizeof nm, "layers.%d.bias", j->idx[l]);
		const snap_table_entry *be = snap_table_find(t, nm);
		if (be)
			b[l] = to_f32(be, n[l]);
		if (!w[l] || (be && !b[l])) {
			rc = rt_errf(err, errlen, -ENOMEM, "out of memory");
			goto fail;
		}
	}
	o.p.classify = o.task >= 0 ? o.task : n[j->nl - 1] >= 2;
	if (kern_act_parse(meta_act(j->src.meta), &o.p.act) < 0) {
		rc = rt_errf(err, errlen, -EINVAL, "%s: unknown activation", env->src_path);
		goto fail;
	}
	rc = fn_ft_data_load(env->data_path, o.p.classify ? 1 : (int)n[j->nl - 1], o.feature_scale,
			     &j->data, err, errlen);
	if (rc < 0)
		goto fail;
	rc = fn_ft_new(&o.p, j->nl, n, k, (const float *const *)w, (const float *const *)b, &j->data,
		       &j->ft, err, errlen);
	if (rc == 0 && ckpt)
		rc = fn_ft_restore(j->ft, ckpt, ckpt_len, err, errlen);
	if (rc < 0)
		goto fail;
	j->unit_us = env->unit_us;
	/* the image is no longer needed, only its metadata */
	rt_image_free(j->src.img);
	j->src.img = NULL;
	for (int l = 0; l < j->nl; l++) {
		free(w[l]);
		free(b[l]);
	}
	*st = j;
	return 0;
fail:
	for (int l = 0; l < 64; l++) {
		free(w[l]);
		free(b[l]);
	}
	ft_free(j);
	return rc;
}

static int ft_unit(void *st, kern_dev *dev, int *done, char *err, size_t errlen)
{
	ft_job *j = st;
	int rc;
	if (dev && !j->dev_failed && !fn_ft_on_device(j->ft)) {
		/* -EAGAIN: a host minibatch is half done; it finishes on the host first */
		rc = fn_ft_to_device(j->ft, dev, j->unit_us);
		if (rc < 0 && rc != -EAGAIN) {
			j->dev_failed = 1;
			rt_logf(RT_LOG_WARN, "finetune: cannot keep the job state on %s (%s); it runs from "
				"host memory", kern_dev_name(dev), strerror(-rc));
		}
	} else if (!dev && fn_ft_on_device(j->ft) && (rc = fn_ft_to_host(j->ft)) < 0) {
		return rt_errf(err, errlen, rc, "finetune: moving the state to host memory failed: %s",
			       strerror(-rc));
	}
	rc = fn_ft_unit(j->ft, done);
	if (rc < 0)
		rt_errf(err, errlen, rc, "finetune%s: %s", fn_ft_on_device(j->ft) ? " (device step)" : "",
			strerror(-rc));
	return rc;
}

static uint64_t ft_dev_bytes(void *st) { return fn_ft_dev_bytes(((ft_job *)st)->ft); }
static int ft_on_device(void *st) { return fn_ft_on_device(((ft_job *)st)->ft); }

static int ft_spill(void *st, char *err, size_t errlen)
{
	int rc = fn_ft_to_host(((ft_job *)st)->ft);
	if (rc < 0)
		rt_errf(err, errlen, rc, "finetune: moving the state to host memory failed: %s",
			strerror(-rc));
	return rc;
}

static double ft_progress(void *st) { return fn_ft_progress(((ft_job *)st)->ft); }
static int64_t ft_steps(void *st) { return fn_ft_steps(((ft_job *)st)->ft); }
static json_t *ft_metrics(void *st) { return fn_ft_metrics(((ft_job *)st)->ft); }
static int ft_save(void *st, void **buf, size_t *len) { return fn_ft_save(((ft_job *)st)->ft, buf, len); }

static int ft_finish(void *st, const rt_job_env *env, char *err, size_t errlen)
{
	ft_job *j = st;
	size_t n = 0;
	for (int l = 0; l < j->nl; l++) {
		const float *w, *b;
		fn_ft_weights(j->ft, l, &w, &b);
		for (int pass = 0; pass < 2; pass++) {
			fn_weight *o = &j->out[n];
			snprintf(j->names[n], sizeof j->names[n], "layers.%d.%s", j->idx[l], pass ? "bias" : "weight");
			o->name = j->names[n];
			o->dtype = "F32";
			o->ndim = pass ? 1 : 2;
			o->shape[0] = j->n[l];
			o->shape[1] = pass ? 0 : j->k[l];
			o->data = pass ? (const void *)b : (const void *)w;
			o->nbytes = (size_t)(pass ? j->n[l] : j->n[l] * j->k[l]) * 4;
			n++;
		}
	}
	return write_result(env, j->out, n, j->src.meta, job_meta(env, fn_ft_metrics(j->ft)), err, errlen);
}

const rt_job_kind rt_job_kind_finetune = {
	"finetune", ft_check, ft_prepare, ft_unit, ft_dev_bytes, ft_spill, ft_on_device, ft_progress,
	ft_steps, ft_metrics, ft_save, ft_finish, ft_free,
};

/* ---- quantize ---- */

typedef struct q_job {
	src_model src;
	fn_ft_data data;
	int have_data;
	fn_weight *w;
	size_t n;
	fn_qjob *q;
} q_job;

static void q_free(void *st)
{
	q_job *j = st;
	if (!j)
		return;
	fn_qjob_free(j->q);
	free(j->w);
	fn_ft_data_free(&j->data);
	src_free(&j->src);
	free(j);
}

static int q_prepare(const rt_job_env *env, const void *ckpt, size_t ckpt_len, void **st,
		     char *err, size_t errlen)
{
	int block, rc;
	double scale;
	(void)ckpt;
	(void)ckpt_len;   /* quantize keeps no checkpoint: it starts over (it is short) */
	if ((rc = q_block(env->params, &block, err, errlen)) < 0 ||
	    (rc = num_param(env->params, "feature_scale", 1, 1e-12, 1e12, 0, &scale, err, errlen)) < 0)
		return rc;
	q_job *j = calloc(1, sizeof *j);
	if (!j)
		return rt_errf(err, errlen, -ENOMEM, "out of memory");
	if ((rc = src_open(env->src_path, &j->src, err, errlen)) < 0)
		goto fail;
	const snap_table *t = j->src.img->table;
	j->w = calloc(t->n + 1, sizeof *j->w);
	if (!j->w) {
		rc = rt_errf(err, errlen, -ENOMEM, "out of memory");
		goto fail;
	}
	for (size_t i = 0; i < t->n; i++) {
		fn_weight *w = &j->w[i];
		w->name = t->t[i].name;
		w->dtype = t->t[i].dtype;
		w->ndim = (int)t->t[i].ndim;
		for (uint32_t d = 0; d < t->t[i].ndim && d < FN_MAX_DIMS; d++)
			w->shape[d] = t->t[i].shape[d];
		w->data = t->t[i].data;
		w->nbytes = t->t[i].nbytes;
	}
	j->n = t->n;
	if (env->data_path[0] && t->kind && !strcmp(t->kind, "mlp")) {
		rc = fn_ft_data_load(env->data_path, 1, scale, &j->data, err, errlen);
		if (rc < 0)
			goto fail;
		j->have_data = 1;
	}
	rc = fn_qjob_new(j->w, j->n, j->src.meta, block, j->have_data ? &j->data : NULL, &j->q, err, errlen);
	if (rc < 0)
		goto fail;
	*st = j;
	return 0;
fail:
	q_free(j);
	return rc;
}

static int q_unit(void *st, kern_dev *dev, int *done, char *err, size_t errlen)
{
	(void)dev;   /* host memory only (docs/architecture.md, "GPU job steps": why) */
	return fn_qjob_unit(((q_job *)st)->q, done, err, errlen);
}

static double q_progress(void *st) { return fn_qjob_progress(((q_job *)st)->q); }
static int64_t q_steps(void *st) { return fn_qjob_steps(((q_job *)st)->q); }
static json_t *q_metrics(void *st) { return fn_qjob_metrics(((q_job *)st)->q); }

static int q_finish(void *st, const rt_job_env *env, char *err, size_t errlen)
{
	q_job *j = st;
	size_t n;
	const fn_weight *w = fn_qjob_result(j->q, &n);
	char *qm = fn_qjob_meta_json(j->q);
	json_t *extra = job_meta(env, fn_qjob_metrics(j->q));
	json_object_set_new(extra, "quantization", qm ? json_loads(qm, 0, NULL) : json_object());
	free(qm);
	return write_result(env, w, n, j->src.meta, extra, err, errlen);
}

const rt_job_kind rt_job_kind_quantize = {
	"quantize", q_check, q_prepare, q_unit, NULL, NULL, NULL, q_progress, q_steps, q_metrics, NULL,
	q_finish, q_free,
};

const rt_job_kind *rt_job_kind_find(const char *name)
{
	if (!name)
		return NULL;
	if (!strcmp(name, "finetune"))
		return &rt_job_kind_finetune;
	if (!strcmp(name, "quantize"))
		return &rt_job_kind_quantize;
	return NULL;
}

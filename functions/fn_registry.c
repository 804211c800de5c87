/* fn_registry.c — the one table of function kinds (built-ins and run-time registrations,
 * including shared objects), and the small helpers fn.h offers kinds. Kinds of ABI
 * FN_ABI_OLDEST .. FN_ABI_VERSION load: an ABI 3 table ends at hf_model_types, so it is copied
 * into a full fn_kind (no sequence operations) and the copy is registered. */
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>
#include <pthread.h>
#include "functions/fn_kinds.h"

#define FN_MAX_KINDS 64

static const fn_kind *kinds[FN_MAX_KINDS] = {&fn_echo_kind, &fn_mlp_kind, &fn_llama_kind};
static size_t n_kinds = 3;
static pthread_mutex_t kinds_mu = PTHREAD_MUTEX_INITIALIZER;

const fn_kind *fn_kind_find(const char *name)
{
	const fn_kind *k = NULL;
	if (!name)
		return NULL;
	pthread_mutex_lock(&kinds_mu);
	for (size_t i = 0; i < n_kinds && !k; i++)
		if (strcmp(kinds[i]->name, name) == 0)
			k = kinds[i];
	pthread_mutex_unlock(&kinds_mu);
	return k;
}

const fn_kind *fn_kind_for_model_type(const char *model_type)
{
	const fn_kind *k = NULL;
	if (!model_type)
		return NULL;
	pthread_mutex_lock(&kinds_mu);
	for (size_t i = 0; i < n_kinds && !k; i++)
		for (const char *const *t = kinds[i]->hf_model_types; t && *t && !k; t++)
			if (strcmp(*t, model_type) == 0)
				k = kinds[i];
	pthread_mutex_unlock(&kinds_mu);
	return k;
}

size_t fn_kind_count(void)
{
	pthread_mutex_lock(&kinds_mu);
	size_t n = n_kinds;
	pthread_mutex_unlock(&kinds_mu);
	return n;
}

const fn_kind *fn_kind_at(size_t i)
{
	pthread_mutex_lock(&kinds_mu);
	const fn_kind *k = i < n_kinds ? kinds[i] : NULL;
	pthread_mutex_unlock(&kinds_mu);
	return k;
}

/* abi_ok: a table version this registry loads */
static int abi_ok(int abi)
{
	return abi >= FN_ABI_OLDEST && abi <= FN_ABI_VERSION;
}

/* adds k (complete, current layout) to the table */
static int add_kind(const fn_kind *k)
{
	if (!k->name || !k->name[0] || !k->load || !k->invoke || !k->release ||
	    !k->seq_add != !k->seq_step)
		return -EINVAL;
	pthread_mutex_lock(&kinds_mu);
	int rc = 0;
	for (size_t i = 0; i < n_kinds && !rc; i++)
		if (strcmp(kinds[i]->name, k->name) == 0)
			rc = -EEXIST;
	if (!rc && n_kinds == FN_MAX_KINDS)
		rc = -ENOSPC;
	if (!rc)
		kinds[n_kinds++] = k;
	pthread_mutex_unlock(&kinds_mu);
	return rc;
}

/* registers k, copying a table of an older ABI into the current layout; *reg (may be NULL)
 * gets the registered table */
static int register_kind(const fn_kind *k, const fn_kind **reg)
{
	if (!k)
		return -EINVAL;
	if (!abi_ok(k->abi))
		return -EPROTO;
	if (k->abi == FN_ABI_VERSION) {
		int rc = add_kind(k);
		if (rc == 0 && reg)
			*reg = k;
		return rc;
	}
	/* ABI 3: the table ends before the sequence operations; read only that much */
	fn_kind *copy = calloc(1, sizeof *copy);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, k, offsetof(fn_kind, seq_add));
	int rc = add_kind(copy);
	if (rc < 0) {
		free(copy);
		return rc;
	}
	if (reg)
		*reg = copy;
	return 0;   /* registered for the life of the process */
}

int fn_kind_register(const fn_kind *k)
{
	return register_kind(k, NULL);
}

/* shared objects loaded so far: path as given -> the kind it registered */
static struct { char *path; const fn_kind *k; } sos[FN_MAX_KINDS];
static size_t n_sos;

int fn_kind_load_so(const char *path, const fn_kind **out, char *err, size_t errlen)
{
	const fn_kind *k = NULL;
	int rc = 0;
	if (out)
		*out = NULL;
	pthread_mutex_lock(&kinds_mu);
	for (size_t i = 0; i < n_sos; i++)
		if (strcmp(sos[i].path, path) == 0)
			k = sos[i].k;
	pthread_mutex_unlock(&kinds_mu);
	if (k) {
		if (out)
			*out = k;
		return 0;
	}
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		const char *why = dlerror();
		return fn_errf(err, errlen, access(path, R_OK) < 0 ? -ENOENT : -ENOEXEC,
			       "cannot load plugin: %s", why ? why : path);
	}
	const fn_kind *(*get)(void);
	*(void **)&get = dlsym(h, "thaw_fn_kind");
	if (!get) {
		rc = fn_errf(err, errlen, -ENOSYS, "%s: no thaw_fn_kind symbol (a kind exports "
			     "const fn_kind *thaw_fn_kind(void), see functions/fn.h)", path);
		goto fail;
	}
	k = get();
	if (!k) {
		rc = fn_errf(err, errlen, -ENOSYS, "%s: thaw_fn_kind() returned NULL", path);
		goto fail;
	}
	if (!abi_ok(k->abi)) {
		rc = fn_errf(err, errlen, -EPROTO, "%s: kind built for ABI %d, this thaw loads ABI %d "
			     "(rebuild it against functions/fn.h)", path, k->abi, FN_ABI_VERSION);
		goto fail;
	}
	char *dup = strdup(path);
	if (!dup) {
		rc = fn_errf(err, errlen, -ENOMEM, "out of memory");
		goto fail;
	}
	rc = register_kind(k, &k);
	if (rc < 0) {
		free(dup);
		fn_errf(err, errlen, rc, "%s: %s", path,
			rc == -EEXIST ? "its kind name is already registered by another kind" :
			rc == -EINVAL ? "incomplete kind (name, load, invoke and release are required; "
					"seq_add and seq_step come together)" :
			rc == -ENOMEM ? "out of memory" : "kind table full");
		goto fail;
	}
	pthread_mutex_lock(&kinds_mu);
	if (n_sos < FN_MAX_KINDS) {
		sos[n_sos].path = dup;
		sos[n_sos++].k = k;
		dup = NULL;
	}
	pthread_mutex_unlock(&kinds_mu);
	free(dup);
	if (out)
		*out = k;
	return 0;   /* the object stays loaded for the process lifetime */
fail:
	dlclose(h);
	return rc;
}

const fn_weight *fn_weight_find(const fn_weight *w, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(w[i].name, name) == 0)
			return &w[i];
	return NULL;
}

void fn_v2_tensor_set(fn_v2_tensor *t, const char *name, const char *datatype, int ndim,
		      const int64_t *shape)
{
	memset(t, 0, sizeof *t);
	snprintf(t->name, sizeof t->name, "%s", name);
	snprintf(t->datatype, sizeof t->datatype, "%s", datatype);
	t->ndim = ndim < 0 ? 0 : ndim > FN_MAX_DIMS ? FN_MAX_DIMS : ndim;
	for (int i = 0; i < t->ndim; i++)
		t->shape[i] = shape[i];
}

int fn_err(fn_error *err, int status, const char *fmt, ...)
{
	if (err) {
		va_list ap;
		va_start(ap, fmt);
		err->status = status;
		vsnprintf(err->msg, sizeof err->msg, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

json_t *fn_error_json(const fn_error *e)
{
	return json_pack("{s:s}", "error", e->msg);
}

int fn_call_run(const fn_kind *k, void *state, fn_call *call)
{
	call->out = NULL;
	call->err.status = 0;
	call->err.msg[0] = 0;
	int rc = k->invoke(state, call, 1);
	if (rc < 0 && !call->err.status && !call->out)
		fn_err(&call->err, 503, "device failure (%s)", strerror(-rc));
	if (!call->err.status && !call->out)
		fn_err(&call->err, 500, "kind '%s' returned no output", k->name);
	if (call->err.status) {
		json_decref(call->out);
		call->out = NULL;
		return -1;
	}
	return 0;
}

json_t *fn_invoke_one(const fn_kind *k, void *state, const json_t *in, fn_error *err)
{
	fn_call c = {.in = in};
	if (fn_call_run(k, state, &c) < 0) {
		*err = c.err;
		return NULL;
	}
	err->status = 0;
	err->msg[0] = 0;
	return c.out;
}

const json_t *fn_meta_config(const json_t *meta)
{
	const json_t *c = json_object_get(meta, "config");
	return json_is_object(c) ? c : meta;
}

int fn_json_int(const json_t *o, const char *key, long long def, long long *out)
{
	const json_t *v = json_object_get(o, key);
	if (!v || json_is_null(v)) {
		*out = def;
		return 0;
	}
	if (!json_is_integer(v))
		return -1;
	*out = json_integer_value(v);
	return 0;
}

int fn_mat_from_weight(kern_dev *dev, const fn_weight *w, size_t nw, const char *name,
		       kern_mat *m, void **owned, fn_error *err)
{
	const fn_weight *t = fn_weight_find(w, nw, name);
	kern_dtype dt;
	*owned = NULL;
	if (!t)
		return fn_err(err, 422, "missing weight %s", name);
	if (t->ndim != 2 || kern_dtype_parse(t->dtype, &dt) < 0 || dt == KERN_I32)
		return fn_err(err, 422, "weight %s: need a 2-D F32/F16/BF16/I8 matrix, got %s %d-D",
			      name, t->dtype, t->ndim);
	memset(m, 0, sizeof *m);
	m->dt = dt;
	m->n = t->shape[0];
	m->k = t->shape[1];
	m->data = t->data;
	if ((size_t)(m->n * m->k) * kern_dtype_size(dt) != t->nbytes)
		return fn_err(err, 422, "weight %s: %zu bytes for shape [%lld, %lld]", name,
			      t->nbytes, (long long)m->n, (long long)m->k);
	if (dt != KERN_I8)
		return 0;
	char sname[512];
	snprintf(sname, sizeof sname, "%s_scale", name);
	const fn_weight *s = fn_weight_find(w, nw, sname);
	kern_dtype sdt;
	if (!s || kern_dtype_parse(s->dtype, &sdt) < 0 || sdt == KERN_I8 || sdt == KERN_I32)
		return fn_err(err, 422, "int8 weight %s needs a float tensor %s", name, sname);
	int64_t cnt = 1;
	for (int i = 0; i < s->ndim; i++)
		cnt *= s->shape[i];
	if (s->ndim < 1 || s->shape[0] != m->n)
		return fn_err(err, 422, "%s: shape does not match %s", sname, name);
	if (cnt == m->n)
		m->qblock = 0;
	else if (m->k % 32 == 0 && cnt == m->n * (m->k / 32))
		m->qblock = 32;
	else
		return fn_err(err, 422, "%s: %lld scales fit neither per-row nor 32-blocks", sname,
			      (long long)cnt);
	if (sdt == KERN_F32) {
		m->scales = s->data;
		return 0;
	}
	float *f = kern_alloc(dev, (size_t)cnt * 4);
	if (!f)
		return fn_err(err, 503, "out of device memory");
	if (kern_cast_f32(dev, sdt, s->data, f, cnt) < 0) {
		kern_free(dev, f);
		return fn_err(err, 503, "device failure widening %s", sname);
	}
	m->scales = f;
	*owned = f;
	return 0;
}

float *fn_vec_f32(kern_dev *dev, const fn_weight *w, size_t nw, const char *name, int64_t n,
		  fn_error *err)
{
	const fn_weight *t = fn_weight_find(w, nw, name);
	kern_dtype dt;
	if (!t) {
		fn_err(err, 422, "missing weight %s", name);
		return NULL;
	}
	int64_t cnt = 1;
	for (int i = 0; i < t->ndim; i++)
		cnt *= t->shape[i];
	if (kern_dtype_parse(t->dtype, &dt) < 0 || dt == KERN_I8 || dt == KERN_I32 || cnt != n ||
	    (size_t)cnt * kern_dtype_size(dt) != t->nbytes) {
		fn_err(err, 422, "weight %s: need %lld floats, got %s with %lld elements", name,
		       (long long)n, t->dtype, (long long)cnt);
		return NULL;
	}
	float *f = kern_alloc(dev, (size_t)n * 4);
	if (!f) {
		fn_err(err, 503, "out of device memory");
		return NULL;
	}
	if (kern_cast_f32(dev, dt, t->data, f, n) < 0) {
		kern_free(dev, f);
		fn_err(err, 503, "device failure widening %s", name);
		return NULL;
	}
	return f;
}

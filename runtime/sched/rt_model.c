/* rt_model.c — see rt_model.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "pool/pool_host.h"
#include "runtime/store/rt_manifest.h"
#include "runtime/sched/rt_model.h"

/* rt_image_free: device memory goes back to the pool it came from, host memory to pool_host */
void rt_image_free(rt_image *img)
{
	if (!img)
		return;
	if (img->gpu)
		pool_gpu_free(img->gpu, img->data);
	else
		pool_host_free(&img->host);
	snap_table_free(img->table);
	free(img);
}

/* image_alloc_gpu gives img (img->bytes set) its memory on gpu; -errno with err set. */
static int image_alloc_gpu(rt_image *img, pool_gpu *gpu, char *err, size_t errlen)
{
	int rc = pool_gpu_alloc(gpu, img->bytes ? img->bytes : 1, &img->data);
	if (rc < 0) {
		snprintf(err, errlen, "cannot allocate %llu bytes on cuda:%d",
			 (unsigned long long)img->bytes, pool_gpu_device(gpu));
		return rc;
	}
	img->gpu = gpu;
	img->device = pool_gpu_device(gpu);
	return 0;
}

int rt_image_restore(const char *path, pool_gpu *gpu, int pin, int threads, rt_image **out,
		     char *err, size_t errlen)
{
	int rc;
	snap_file *f = NULL;
	rt_image *img = calloc(1, sizeof *img);
	*out = NULL;
	if (!img)
		return -ENOMEM;
	img->device = -1;
	rc = snap_open(&f, path, err, errlen);
	if (rc < 0)
		goto fail;
	img->bytes = snap_image_size(f);
	snap_restore_opts o = {.threads = threads};
	if (gpu) {
		rc = image_alloc_gpu(img, gpu, err, errlen);
		if (rc < 0)
			goto fail;
		rc = snap_restore_gpu(f, gpu, img->data, &o, &img->stats, err, errlen);
	} else {
		rc = pool_host_alloc(&img->host, img->bytes, pin);
		if (rc < 0) {
			snprintf(err, errlen, "cannot allocate %llu bytes of host memory",
				 (unsigned long long)img->bytes);
			goto fail;
		}
		img->data = img->host.data;
		rc = snap_restore_host(f, img->data, img->bytes, &o, &img->stats, err, errlen);
	}
	if (rc < 0)
		goto fail;
	rc = snap_table_make(f, img->data, img->device, &img->table);
	if (rc < 0)
		goto fail;
	snap_close(f);
	snprintf(img->path, sizeof img->path, "%s", path);
	*out = img;
	return 0;
fail:
	snap_close(f);
	rt_image_free(img);
	return rc;
}

int rt_image_copy(const rt_image *src, pool_gpu *gpu, rt_image **out, char *err, size_t errlen)
{
	int rc;
	rt_image *img = calloc(1, sizeof *img);
	*out = NULL;
	if (!img)
		return -ENOMEM;
	img->device = -1;
	img->bytes = src->bytes;
	if (gpu) {
		if (src->gpu) {
			rc = -EINVAL;
			snprintf(err, errlen, "image copy: source is already in GPU memory");
			goto fail;
		}
		rc = image_alloc_gpu(img, gpu, err, errlen);
		if (rc < 0)
			goto fail;
		rc = pool_gpu_copy_htod(gpu, img->data, src->data, img->bytes);
		if (rc < 0)
			goto fail;
	} else {
		if (!src->gpu) {
			rc = -EINVAL;
			snprintf(err, errlen, "image copy: source is already in host memory");
			goto fail;
		}
		rc = pool_host_alloc(&img->host, img->bytes, 1);
		if (rc < 0) {
			snprintf(err, errlen, "cannot allocate %llu bytes of host memory",
				 (unsigned long long)img->bytes);
			goto fail;
		}
		img->data = img->host.data;
		rc = pool_gpu_copy_dtoh(src->gpu, img->data, src->data, img->bytes);
		if (rc < 0)
			goto fail;
	}
	/* the same tensor table over the new base (no second read of the snapshot) */
	rc = snap_table_rebase(src->table, img->data, img->device, &img->table);
	if (rc < 0)
		goto fail;
	snprintf(img->path, sizeof img->path, "%s", src->path);
	*out = img;
	return 0;
fail:
	if (rc == -EIO)
		snprintf(err, errlen, "copying the image between host and GPU failed");
	else if (rc == -ENODEV)
		snprintf(err, errlen, "image copy between host and GPU: built without CUDA");
	rt_image_free(img);
	return rc;
}

int rt_model_kind(const rt_image *img, const char *kind_name, const fn_kind **out, fn_error *err)
{
	const char *name = kind_name && kind_name[0] ? kind_name
			   : (img && img->table ? img->table->kind : NULL);
	const char *plugin = rt_manifest_plugin_path(name);
	*out = NULL;
	if (plugin) {
		/* "plugin:/path.so": loaded once per process (validated against the plugin roots
		 * when the function was deployed) */
		char e[sizeof err->msg - 16];
		int rc = fn_kind_load_so(plugin, out, e, sizeof e);
		if (rc < 0) {
			fn_err(err, 500, "plugin: %s", e);
			return rc;
		}
		return 0;
	}
	*out = name ? fn_kind_find(name) : NULL;
	if (!*out) {
		fn_err(err, 404, "unknown function kind '%s'", name ? name : "(none)");
		return -ENOENT;
	}
	return 0;
}

int rt_model_is_generative(const fn_kind *k)
{
	return k && k->seq_add && k->seq_step;
}

/* adds the runtime's keys for a generative kind to meta (an object) */
static int add_seq_keys(json_t *meta, const rt_model_seq *seq)
{
	int bad = 0;
	if (seq->kv_cache_bytes)
		bad |= json_object_set_new(meta, "kv_cache_bytes", json_integer((json_int_t)seq->kv_cache_bytes));
	if (seq->max_sequences > 0)
		bad |= json_object_set_new(meta, "max_sequences", json_integer(seq->max_sequences));
	if (seq->prefix_caching)
		bad |= json_object_set_new(meta, "prefix_caching", json_boolean(seq->prefix_caching > 0));
	return bad ? -ENOMEM : 0;
}

int rt_model_load(kern_dev *dev, const rt_image *img, const char *kind_name,
		  const rt_model_seq *seq, rt_model **out, fn_error *err)
{
	int rc;
	json_error_t jerr;
	rt_model *m = calloc(1, sizeof *m);
	*out = NULL;
	if (!m)
		return fn_err(err, 500, "out of memory"), -ENOMEM;
	rc = rt_model_kind(img, kind_name, &m->kind, err);
	if (rc < 0)
		goto fail;
	if (img && img->table) {
		m->meta = json_loads(img->table->metadata_json, 0, &jerr);
		m->n_weights = img->table->n;
		m->weights = calloc(m->n_weights ? m->n_weights : 1, sizeof *m->weights);
		if (!m->meta || !m->weights) {
			fn_err(err, 500, "snapshot metadata unreadable or out of memory");
			rc = -ENOMEM;
			goto fail;
		}
		for (size_t i = 0; i < m->n_weights; i++) {
			const snap_table_entry *e = &img->table->t[i];
			fn_weight *w = &m->weights[i];
			w->name = e->name;
			w->dtype = e->dtype;
			w->ndim = (int)e->ndim;
			for (uint32_t d = 0; d < e->ndim && d < FN_MAX_DIMS; d++)
				w->shape[d] = e->shape[d];
			w->data = e->data;
			w->nbytes = e->nbytes;
		}
	} else {
		m->meta = json_pack("{s:s}", "kind", m->kind->name);
		if (!m->meta) {
			rc = -ENOMEM;
			fn_err(err, 500, "out of memory");
			goto fail;
		}
	}
	if (seq && rt_model_is_generative(m->kind) && add_seq_keys(m->meta, seq) < 0) {
		fn_err(err, 500, "out of memory");
		rc = -ENOMEM;
		goto fail;
	}
	fn_load_args args = {.dev = dev, .weights = m->weights, .n_weights = m->n_weights, .meta = m->meta};
	memset(err, 0, sizeof *err);
	rc = m->kind->load(&args, &m->state, err);
	if (rc < 0) {
		if (!err->status)
			fn_err(err, 500, "loading kind '%s' failed (%s)", m->kind->name, strerror(-rc));
		goto fail;
	}
	*out = m;
	return 0;
fail:
	json_decref(m->meta);
	free(m->weights);
	free(m);
	return rc;
}

int rt_model_invoke(rt_model *m, fn_call *calls, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		calls[i].out = NULL;
		calls[i].err.status = 0;
		calls[i].err.msg[0] = 0;
	}
	return m->kind->invoke(m->state, calls, n);
}

void rt_model_release(rt_model *m)
{
	if (!m)
		return;
	m->kind->release(m->state);
	json_decref(m->meta);
	free(m->weights);
	free(m);
}

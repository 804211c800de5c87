/* rt_model.c — see rt_model.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "pool/pool_cuda.h"
#include "runtime/rt_model.h"

static int host_alloc(size_t bytes, int pin, void **out, int *pinned)
{
	*pinned = 0;
#ifdef THAW_CUDA
	if (pin && pool_gpu_count() > 0) {
		if (cudaMallocHost(out, bytes ? bytes : 1) == cudaSuccess) {
			*pinned = 1;
			return 0;
		}
		cudaGetLastError();   /* fall back to pageable memory */
	}
#else
	(void)pin;
#endif
	*out = malloc(bytes ? bytes : 1);
	return *out ? 0 : -ENOMEM;
}

static void host_free(void *p, int pinned)
{
#ifdef THAW_CUDA
	if (pinned) {
		cudaFreeHost(p);
		return;
	}
#else
	(void)pinned;
#endif
	free(p);
}

void rt_image_free(rt_image *img)
{
	if (!img)
		return;
	if (img->device >= 0) {
#ifdef THAW_CUDA
		cudaSetDevice(img->device);
		cudaFree(img->data);
#endif
	} else {
		host_free(img->data, img->pinned);
	}
	snap_table_free(img->table);
	free(img);
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
		rc = pool_gpu_alloc(gpu, img->bytes ? img->bytes : 1, &img->data);
		if (rc < 0) {
			snprintf(err, errlen, "cannot allocate %llu bytes on cuda:%d",
				 (unsigned long long)img->bytes, pool_gpu_device(gpu));
			goto fail;
		}
		img->device = pool_gpu_device(gpu);
		rc = snap_restore_gpu(f, gpu, img->data, &o, &img->stats, err, errlen);
	} else {
		rc = host_alloc(img->bytes, pin, &img->data, &img->pinned);
		if (rc < 0) {
			snprintf(err, errlen, "cannot allocate %llu bytes of host memory",
				 (unsigned long long)img->bytes);
			goto fail;
		}
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
#ifdef THAW_CUDA
	if (gpu) {
		rc = pool_gpu_alloc(gpu, img->bytes ? img->bytes : 1, &img->data);
		if (rc < 0) {
			snprintf(err, errlen, "cannot allocate %llu bytes on cuda:%d",
				 (unsigned long long)img->bytes, pool_gpu_device(gpu));
			goto fail;
		}
		img->device = pool_gpu_device(gpu);
		POOL_CUDA_TRY(cudaMemcpy(img->data, src->data, img->bytes, cudaMemcpyHostToDevice));
	} else {
		if (src->device < 0) {
			rc = -EINVAL;
			snprintf(err, errlen, "image copy: source is already in host memory");
			goto fail;
		}
		rc = host_alloc(img->bytes, 1, &img->data, &img->pinned);
		if (rc < 0) {
			snprintf(err, errlen, "cannot allocate %llu bytes of host memory",
				 (unsigned long long)img->bytes);
			goto fail;
		}
		POOL_CUDA_TRY(cudaSetDevice(src->device));
		POOL_CUDA_TRY(cudaMemcpy(img->data, src->data, img->bytes, cudaMemcpyDeviceToHost));
	}
#else
	(void)gpu;
	rc = -ENODEV;
	snprintf(err, errlen, "image copy between host and GPU: built without CUDA");
	goto fail;
#endif
	/* the tensor table over the new base: re-read from the snapshot's index */
	snap_file *f = NULL;
	rc = snap_open(&f, src->path, err, errlen);
	if (rc == 0)
		rc = snap_table_make(f, img->data, img->device, &img->table);
	snap_close(f);
	if (rc < 0)
		goto fail;
	snprintf(img->path, sizeof img->path, "%s", src->path);
	*out = img;
	return 0;
fail:
	if (rc == -EIO)
		snprintf(err, errlen, "copying the image between host and GPU failed");
	rt_image_free(img);
	return rc;
}

int rt_model_load(kern_dev *dev, const rt_image *img, const char *kind_name, rt_model **out,
		  fn_error *err)
{
	int rc;
	json_error_t jerr;
	rt_model *m = calloc(1, sizeof *m);
	*out = NULL;
	if (!m)
		return fn_err(err, 500, "out of memory"), -ENOMEM;
	const char *name = kind_name ? kind_name : (img && img->table ? img->table->kind : NULL);
	m->kind = name ? fn_kind_find(name) : NULL;
	if (!m->kind) {
		fn_err(err, 404, "unknown function kind '%s'", name ? name : "(none)");
		rc = -ENOENT;
		goto fail;
	}
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

int rt_model_invoke(rt_model *m, json_t *const *in, json_t **out, fn_error *errs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		out[i] = NULL;
		errs[i].status = 0;
		errs[i].msg[0] = 0;
	}
	return m->kind->invoke(m->state, in, out, errs, n);
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

/* rt_model.c — see rt_model.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/mman.h>
#include "pool/pool_cuda.h"
#include "runtime/store/rt_manifest.h"
#include "runtime/sched/rt_model.h"

/* Host image buffers: mmap'd with MAP_POPULATE (one kernel pass instead of a page fault per
 * page: twice as fast on the machines measured), and kept after use in a small cache, bounded
 * by rt_model_host_cache_set, so that the next cold start writes into memory that is already
 * mapped — what the device arena does for GPU memory. */
#define CACHE_SLOTS 16
static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;
static struct { void *p; size_t n; } cache[CACHE_SLOTS];
static size_t cache_bytes, cache_cap;

static size_t map_size(size_t bytes)
{
	return (bytes + 4095) / 4096 * 4096 + 4096;
}

void rt_model_host_cache_set(size_t cap)
{
	pthread_mutex_lock(&cache_mu);
	cache_cap = cap;
	for (int i = 0; i < CACHE_SLOTS && cache_bytes > cache_cap; i++)
		if (cache[i].p) {
			munmap(cache[i].p, cache[i].n);
			cache_bytes -= cache[i].n;
			cache[i].p = NULL;
		}
	pthread_mutex_unlock(&cache_mu);
}

static void *map_alloc(size_t bytes, size_t *mapped)
{
	size_t want = map_size(bytes);
	int best = -1;
	pthread_mutex_lock(&cache_mu);
	for (int i = 0; i < CACHE_SLOTS; i++)
		if (cache[i].p && cache[i].n >= want && cache[i].n <= 2 * want &&
		    (best < 0 || cache[i].n < cache[best].n))
			best = i;
	if (best >= 0) {
		void *p = cache[best].p;
		*mapped = cache[best].n;
		cache_bytes -= cache[best].n;
		cache[best].p = NULL;
		pthread_mutex_unlock(&cache_mu);
		return p;
	}
	pthread_mutex_unlock(&cache_mu);
	void *p = mmap(NULL, want, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	*mapped = want;
	return p;
}

static void map_free(void *p, size_t mapped)
{
	if (!p)
		return;
	pthread_mutex_lock(&cache_mu);
	if (cache_bytes + mapped <= cache_cap)
		for (int i = 0; i < CACHE_SLOTS; i++)
			if (!cache[i].p) {
				cache[i].p = p;
				cache[i].n = mapped;
				cache_bytes += mapped;
				pthread_mutex_unlock(&cache_mu);
				return;
			}
	pthread_mutex_unlock(&cache_mu);
	munmap(p, mapped);
}

static int host_alloc(size_t bytes, int pin, void **out, int *pinned, size_t *mapped)
{
	*pinned = 0;
	*mapped = 0;
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
	*out = map_alloc(bytes, mapped);
	return *out ? 0 : -ENOMEM;
}

static void host_free(void *p, int pinned, size_t mapped)
{
#ifdef THAW_CUDA
	if (pinned) {
		cudaFreeHost(p);
		return;
	}
#else
	(void)pinned;
#endif
	map_free(p, mapped);
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
		host_free(img->data, img->pinned, img->mapped);
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
		rc = host_alloc(img->bytes, pin, &img->data, &img->pinned, &img->mapped);
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
		rc = host_alloc(img->bytes, 1, &img->data, &img->pinned, &img->mapped);
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
	const char *plugin = rt_manifest_plugin_path(name);
	if (plugin) {
		/* "plugin:/path.so": loaded once per process (validated against the plugin roots
		 * when the function was deployed) */
		char e[sizeof err->msg - 16];
		rc = fn_kind_load_so(plugin, &m->kind, e, sizeof e);
		if (rc < 0) {
			fn_err(err, 500, "plugin: %s", e);
			goto fail;
		}
	}
	m->kind = m->kind ? m->kind : name ? fn_kind_find(name) : NULL;
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

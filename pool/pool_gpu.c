/* pool_gpu.c — per-device restore resources (see pool_gpu.h). CUDA code is under THAW_CUDA;
 * the CPU build keeps the same API and reports "no GPU". */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "pool/pool_base.h"
#include "pool/pool_gpu.h"

uint64_t pool_kv_budget(int gpu, uint64_t left)
{
	if (gpu)
		return (uint64_t)((double)left * POOL_KV_GPU_SHARE);
	return left / 4 < POOL_KV_HOST_MAX ? left / 4 : POOL_KV_HOST_MAX;
}

#ifdef THAW_CUDA
#include <cuda_runtime_api.h>
#include "pool/pool_cuda.h"

enum { SLOT_FREE, SLOT_HELD, SLOT_COPYING };

typedef struct slot {
	int state;
	unsigned long seq;         /* copy order, to wait for the oldest */
	cudaEvent_t start, end;
} slot;

struct pool_gpu {
	int device;
	char name[256];
	double open_s;
	cudaStream_t stream;
	unsigned char *pinned;
	size_t slot_bytes;
	int n_slots;
	slot *slots;
	unsigned long seq;
	double copy_s;
	pthread_mutex_t mu, copy_mu;
	pthread_cond_t cv;
};

int pool_gpu_count(void)
{
	int n = 0;
	if (cudaGetDeviceCount(&n) != cudaSuccess) {
		cudaGetLastError();
		return 0;
	}
	return n;
}

int pool_gpu_open(pool_gpu **out, const pool_gpu_opts *o, char *err, size_t errlen)
{
	pool_gpu_opts d = {0};
	int rc = 0, n = pool_gpu_count();
	double t0 = pool_clock_mono_s();
	pool_gpu *g;
	struct cudaDeviceProp prop;

	*out = NULL;
	if (!o)
		o = &d;
	if (o->device < 0 || o->device >= n) {
		snprintf(err, errlen, "no CUDA device %d (%d present)", o->device, n);
		return -ENODEV;
	}
	if (!(g = calloc(1, sizeof *g))) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	g->device = o->device;
	g->slot_bytes = o->slot_bytes ? o->slot_bytes : (4u << 20);
	g->n_slots = o->n_slots > 0 ? o->n_slots : 32;
	pthread_mutex_init(&g->mu, NULL);
	pthread_mutex_init(&g->copy_mu, NULL);
	pthread_cond_init(&g->cv, NULL);
	if (!(g->slots = calloc((size_t)g->n_slots, sizeof *g->slots))) {
		rc = -ENOMEM;
		goto fail;
	}
	POOL_CUDA_TRY(cudaSetDevice(g->device));
	POOL_CUDA_TRY(cudaFree(0));   /* create the context now, not on the first restore */
	POOL_CUDA_TRY(cudaGetDeviceProperties(&prop, g->device));
	snprintf(g->name, sizeof g->name, "%s", prop.name);
	POOL_CUDA_TRY(cudaStreamCreateWithFlags(&g->stream, cudaStreamNonBlocking));
	POOL_CUDA_TRY(cudaHostAlloc((void **)&g->pinned, g->slot_bytes * (size_t)g->n_slots, cudaHostAllocDefault));
	for (int i = 0; i < g->n_slots; i++) {
		POOL_CUDA_TRY(cudaEventCreate(&g->slots[i].start));
		POOL_CUDA_TRY(cudaEventCreate(&g->slots[i].end));
	}
	g->open_s = pool_clock_mono_s() - t0;
	*out = g;
	return 0;
fail:
	snprintf(err, errlen, "CUDA device %d: initialisation failed (see the cuda: line above)", o->device);
	pool_gpu_close(g);
	return rc ? rc : -EIO;
}

void pool_gpu_close(pool_gpu *g)
{
	if (!g)
		return;
	POOL_CUDA_LOG(cudaSetDevice(g->device));
	if (g->stream)
		POOL_CUDA_LOG(cudaStreamSynchronize(g->stream));
	for (int i = 0; g->slots && i < g->n_slots; i++) {
		if (g->slots[i].start)
			POOL_CUDA_LOG(cudaEventDestroy(g->slots[i].start));
		if (g->slots[i].end)
			POOL_CUDA_LOG(cudaEventDestroy(g->slots[i].end));
	}
	if (g->pinned)
		POOL_CUDA_LOG(cudaFreeHost(g->pinned));
	if (g->stream)
		POOL_CUDA_LOG(cudaStreamDestroy(g->stream));
	free(g->slots);
	pthread_mutex_destroy(&g->mu);
	pthread_mutex_destroy(&g->copy_mu);
	pthread_cond_destroy(&g->cv);
	free(g);
}

int pool_gpu_device(const pool_gpu *g) { return g->device; }
const char *pool_gpu_name(const pool_gpu *g) { return g->name; }
double pool_gpu_open_s(const pool_gpu *g) { return g->open_s; }
size_t pool_gpu_slot_bytes(const pool_gpu *g) { return g->slot_bytes; }
int pool_gpu_slot_count(const pool_gpu *g) { return g->n_slots; }

int pool_gpu_alloc(pool_gpu *g, size_t bytes, void **dptr)
{
	POOL_CUDA_CHECK(cudaSetDevice(g->device));
	if (cudaMalloc(dptr, bytes ? bytes : 1) != cudaSuccess) {
		cudaGetLastError();
		*dptr = NULL;
		return -ENOMEM;
	}
	return 0;
}

void pool_gpu_free(pool_gpu *g, void *dptr)
{
	if (dptr) {
		POOL_CUDA_LOG(cudaSetDevice(g->device));
		POOL_CUDA_LOG(cudaFree(dptr));
	}
}

int pool_gpu_memcpy_dtoh(pool_gpu *g, void *host, const void *dev, size_t len)
{
	POOL_CUDA_CHECK(cudaSetDevice(g->device));
	POOL_CUDA_CHECK(cudaMemcpy(host, dev, len, cudaMemcpyDeviceToHost));
	return 0;
}

int pool_gpu_memset(pool_gpu *g, void *dev, int value, size_t len)
{
	POOL_CUDA_CHECK(cudaSetDevice(g->device));
	POOL_CUDA_CHECK(cudaMemset(dev, value, len));
	POOL_CUDA_CHECK(cudaDeviceSynchronize());
	return 0;
}

/* reap_locked adds the time of a finished copy in slot i (mu held). */
static void reap_locked(pool_gpu *g, int i)
{
	float ms = 0;
	if (cudaEventElapsedTime(&ms, g->slots[i].start, g->slots[i].end) == cudaSuccess)
		g->copy_s += ms / 1e3;
	else
		cudaGetLastError();
}

int pool_gpu_staging_acquire(pool_gpu *g, void **host, int *slot_out)
{
	int pick = -1, wait_copy = 0;
	pthread_mutex_lock(&g->mu);
	for (;;) {
		unsigned long oldest = (unsigned long)-1;
		pick = -1;
		for (int i = 0; i < g->n_slots; i++) {
			if (g->slots[i].state == SLOT_FREE) {
				pick = i;
				wait_copy = 0;
				break;
			}
			if (g->slots[i].state == SLOT_COPYING && g->slots[i].seq < oldest) {
				oldest = g->slots[i].seq;
				pick = i;
				wait_copy = 1;
			}
		}
		if (pick >= 0)
			break;
		pthread_cond_wait(&g->cv, &g->mu);   /* every slot is being filled */
	}
	g->slots[pick].state = SLOT_HELD;
	pthread_mutex_unlock(&g->mu);
	if (wait_copy) {
		cudaError_t e = cudaEventSynchronize(g->slots[pick].end);
		pthread_mutex_lock(&g->mu);
		if (e == cudaSuccess)
			reap_locked(g, pick);
		pthread_mutex_unlock(&g->mu);
		if (e != cudaSuccess) {
			pool_logf("cuda: cudaEventSynchronize failed: %s (%s:%d)", cudaGetErrorString(e),
				  __FILE__, __LINE__);
			pool_gpu_staging_release(g, pick);
			return -EIO;
		}
	}
	*host = g->pinned + (size_t)pick * g->slot_bytes;
	*slot_out = pick;
	return 0;
}

int pool_gpu_staging_copy(pool_gpu *g, int i, void *dev_dst, size_t len)
{
	int rc = 0;
	if (len > g->slot_bytes)
		return -ERANGE;
	pthread_mutex_lock(&g->copy_mu);   /* start, copy, end stay together on the stream */
	POOL_CUDA_TRY(cudaSetDevice(g->device));
	POOL_CUDA_TRY(cudaEventRecord(g->slots[i].start, g->stream));
	POOL_CUDA_TRY(cudaMemcpyAsync(dev_dst, g->pinned + (size_t)i * g->slot_bytes, len,
				      cudaMemcpyHostToDevice, g->stream));
	POOL_CUDA_TRY(cudaEventRecord(g->slots[i].end, g->stream));
	pthread_mutex_lock(&g->mu);
	g->slots[i].state = SLOT_COPYING;
	g->slots[i].seq = g->seq++;
	pthread_cond_signal(&g->cv);
	pthread_mutex_unlock(&g->mu);
	pthread_mutex_unlock(&g->copy_mu);
	return 0;
fail:
	pthread_mutex_unlock(&g->copy_mu);
	pool_gpu_staging_release(g, i);
	return rc;
}

void pool_gpu_staging_release(pool_gpu *g, int i)
{
	pthread_mutex_lock(&g->mu);
	g->slots[i].state = SLOT_FREE;
	pthread_cond_signal(&g->cv);
	pthread_mutex_unlock(&g->mu);
}

int pool_gpu_staging_drain(pool_gpu *g, double *copy_s)
{
	POOL_CUDA_CHECK(cudaSetDevice(g->device));
	POOL_CUDA_CHECK(cudaStreamSynchronize(g->stream));
	pthread_mutex_lock(&g->mu);
	for (int i = 0; i < g->n_slots; i++)
		if (g->slots[i].state == SLOT_COPYING) {
			reap_locked(g, i);
			g->slots[i].state = SLOT_FREE;
		}
	if (copy_s)
		*copy_s = g->copy_s;
	g->copy_s = 0;
	pthread_cond_broadcast(&g->cv);
	pthread_mutex_unlock(&g->mu);
	return 0;
}

/* ---- host tier and weight budget ---- */

/* copies on the copy stream and waits for that copy only (an event after it), with the
 * enqueue under copy_mu so that it never lands between a staging copy's timing events */
static int copy_sync(pool_gpu *g, void *dst, const void *src, size_t len, enum cudaMemcpyKind kind)
{
	int rc = 0, locked = 0;
	cudaEvent_t done = NULL;
	if (!len)
		return 0;
	POOL_CUDA_CHECK(cudaSetDevice(g->device));
	POOL_CUDA_CHECK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
	pthread_mutex_lock(&g->copy_mu);
	locked = 1;
	POOL_CUDA_TRY(cudaMemcpyAsync(dst, src, len, kind, g->stream));
	POOL_CUDA_TRY(cudaEventRecord(done, g->stream));
	pthread_mutex_unlock(&g->copy_mu);
	locked = 0;
	POOL_CUDA_TRY(cudaEventSynchronize(done));
fail:
	if (locked)
		pthread_mutex_unlock(&g->copy_mu);
	cudaEventDestroy(done);
	return rc;
}

int pool_gpu_copy_htod(pool_gpu *g, void *dev, const void *host, size_t len)
{
	return copy_sync(g, dev, host, len, cudaMemcpyHostToDevice);
}

int pool_gpu_copy_dtoh(pool_gpu *g, void *host, const void *dev, size_t len)
{
	return copy_sync(g, host, dev, len, cudaMemcpyDeviceToHost);
}

int pool_gpu_mem_info(pool_gpu *g, size_t *free_bytes, size_t *total_bytes)
{
	size_t fr = 0, tot = 0;
	if (!g)
		return -ENODEV;
	POOL_CUDA_CHECK(cudaSetDevice(g->device));
	POOL_CUDA_CHECK(cudaMemGetInfo(&fr, &tot));
	if (free_bytes)
		*free_bytes = fr;
	if (total_bytes)
		*total_bytes = tot;
	return 0;
}

int pool_gpu_weight_budget(pool_gpu *g, double share, uint64_t *out)
{
	size_t fr = 0;
	*out = 0;
	int rc = pool_gpu_mem_info(g, &fr, NULL);
	if (rc < 0)
		return rc;
	*out = (uint64_t)((double)fr * share);
	return 0;
}

#else /* no CUDA */

struct pool_gpu { int unused; };

int pool_gpu_count(void) { return 0; }
int pool_gpu_open(pool_gpu **out, const pool_gpu_opts *o, char *err, size_t errlen)
{
	*out = NULL;
	snprintf(err, errlen, "no GPU: this thaw was built without CUDA (build with make CUDA=1)");
	return -ENODEV;
}
void pool_gpu_close(pool_gpu *g) { (void)g; }
int pool_gpu_device(const pool_gpu *g) { return -1; }
const char *pool_gpu_name(const pool_gpu *g) { return "none"; }
double pool_gpu_open_s(const pool_gpu *g) { return 0; }
int pool_gpu_alloc(pool_gpu *g, size_t bytes, void **dptr) { *dptr = NULL; return -ENODEV; }
void pool_gpu_free(pool_gpu *g, void *dptr) { (void)dptr; }
int pool_gpu_memcpy_dtoh(pool_gpu *g, void *host, const void *dev, size_t len) { return -ENODEV; }
int pool_gpu_memset(pool_gpu *g, void *dev, int value, size_t len) { return -ENODEV; }
size_t pool_gpu_slot_bytes(const pool_gpu *g) { return 0; }
int pool_gpu_slot_count(const pool_gpu *g) { return 0; }
int pool_gpu_staging_acquire(pool_gpu *g, void **host, int *slot) { return -ENODEV; }
int pool_gpu_staging_copy(pool_gpu *g, int slot, void *dev_dst, size_t len) { return -ENODEV; }
void pool_gpu_staging_release(pool_gpu *g, int slot) { (void)slot; }
int pool_gpu_staging_drain(pool_gpu *g, double *copy_s) { if (copy_s) *copy_s = 0; return -ENODEV; }

/* ---- host tier and weight budget ---- */
int pool_gpu_copy_htod(pool_gpu *g, void *dev, const void *host, size_t len) { return -ENODEV; }
int pool_gpu_copy_dtoh(pool_gpu *g, void *host, const void *dev, size_t len) { return -ENODEV; }
int pool_gpu_mem_info(pool_gpu *g, size_t *free_bytes, size_t *total_bytes) { return -ENODEV; }
int pool_gpu_weight_budget(pool_gpu *g, double share, uint64_t *out) { *out = 0; return -ENODEV; }

#endif

/* pool_host.c — host-tier buffers (see pool_host.h). Pinned memory only in CUDA builds. */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include "pool/pool_gpu.h"
#include "pool/pool_host.h"
#ifdef THAW_CUDA
#include "pool/pool_cuda.h"
#endif

#define CACHE_SLOTS 16
static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;
static struct { void *p; size_t n; } cache[CACHE_SLOTS];
static size_t cache_bytes, cache_cap;

/* page-rounded, plus one guard page's worth so that a buffer of exactly a page is reusable */
static size_t map_size(size_t bytes)
{
	return (bytes + 4095) / 4096 * 4096 + 4096;
}

void pool_host_cache_set(size_t cap)
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

size_t pool_host_cache_bytes(void)
{
	pthread_mutex_lock(&cache_mu);
	size_t n = cache_bytes;
	pthread_mutex_unlock(&cache_mu);
	return n;
}

/* a cached mapping of at least want bytes and at most twice that (the smallest such), or a
 * new one; NULL when mmap fails */
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

#ifdef THAW_CUDA
/* page-locked memory, or -EIO (logged) when the driver refuses: the caller falls back */
static int pin_alloc(size_t bytes, void **out)
{
	POOL_CUDA_CHECK(cudaMallocHost(out, bytes ? bytes : 1));
	return 0;
}

#endif

int pool_host_alloc(pool_host_buf *b, size_t bytes, int pin)
{
	memset(b, 0, sizeof *b);
#ifdef THAW_CUDA
	if (pin && pool_gpu_count() > 0) {
		if (pin_alloc(bytes, &b->data) == 0) {
			b->pinned = 1;
			return 0;
		}
		cudaGetLastError();   /* the failure is logged; pageable memory serves instead */
		b->data = NULL;
	}
#else
	(void)pin;
#endif
	b->data = map_alloc(bytes, &b->mapped);
	if (!b->data) {
		b->mapped = 0;
		return -ENOMEM;
	}
	return 0;
}

void pool_host_free(pool_host_buf *b)
{
	if (!b->data)
		return;
#ifdef THAW_CUDA
	if (b->pinned) {
		POOL_CUDA_LOG(cudaFreeHost(b->data));   /* a failure is logged; nothing else to undo */
		memset(b, 0, sizeof *b);
		return;
	}
#endif
	map_free(b->data, b->mapped);
	memset(b, 0, sizeof *b);
}

/* pool_host.h — host-tier buffers: the host memory a decoded snapshot image lives in while its
 * function is evicted from the GPU but kept in RAM. A buffer is page-locked (cudaMallocHost)
 * when the caller asks for it and a GPU is present, so the copy back to a device runs at full
 * bus speed (see pool_gpu_copy_htod); otherwise, or when the driver refuses, it is pageable
 * memory mapped with MAP_POPULATE (one kernel pass instead of a page fault per page), and freed
 * pageable buffers are kept in a small cache, bounded by pool_host_cache_set, so that the next
 * restore writes into memory that is already mapped — what the device arena does for GPU
 * memory. All functions are thread-safe. */
#ifndef THAW_POOL_HOST_H
#define THAW_POOL_HOST_H
#include <stddef.h>

typedef struct pool_host_buf {
	void *data;                /* at least the requested bytes (one byte for a 0-byte request) */
	int pinned;                /* page-locked memory from the CUDA driver */
	size_t mapped;             /* pageable memory: the length of its mapping */
} pool_host_buf;

/* pool_host_alloc allocates bytes of host memory into *b: pinned when pin is set and a GPU is
 * present and the driver grants it, else pageable (reusing a cached mapping when one fits).
 * Returns 0, or -ENOMEM with *b zeroed. */
int pool_host_alloc(pool_host_buf *b, size_t bytes, int pin);

/* pool_host_free releases b's memory (a pageable buffer goes to the cache when it fits under
 * the cap) and zeroes *b. A zeroed buffer is a no-op. */
void pool_host_free(pool_host_buf *b);

/* pool_host_cache_set bounds the bytes of freed pageable buffers kept mapped for reuse (default
 * 0: none kept); lowering it unmaps the surplus. */
void pool_host_cache_set(size_t cap);

/* pool_host_cache_bytes is the number of bytes the cache holds now (tests, metrics). */
size_t pool_host_cache_bytes(void);

#endif

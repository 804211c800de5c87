/* pool_gpu.h — the GPU-side resources a restore needs, created once per device and reused:
 * the CUDA context (made current on open), a copy stream, a ring of pinned host staging slots
 * (allocated once: pinning host memory is slow, see docs/benchmarks.md), and device
 * memory for destination arenas. The snapshot restore decodes chunks straight into staging
 * slots and copies them on the copy stream while later chunks are read and decoded.
 *
 * In a build without CUDA every function reports "no GPU": pool_gpu_count() is 0 and
 * pool_gpu_open() fails with -ENODEV and a message. All functions are thread-safe; the staging
 * ring serves one restore at a time (drain waits for every copy on the stream and resets the
 * copy-time counter), so a caller runs a device's restores one after another. */
#ifndef THAW_POOL_GPU_H
#define THAW_POOL_GPU_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pool_gpu pool_gpu;

typedef struct pool_gpu_opts {
	int device;                /* CUDA device ordinal */
	size_t slot_bytes;         /* staging slot size; 0 = 4 MiB (must be >= a snapshot's chunk size) */
	int n_slots;               /* 0 = 32 */
} pool_gpu_opts;

/* pool_gpu_count is the number of CUDA devices (0 without CUDA, a driver or a GPU). */
int pool_gpu_count(void);
/* pool_gpu_open initialises device o->device: context, copy stream, pinned staging ring.
 * -ENODEV (no CUDA build / no such device) or -EIO / -ENOMEM, with a message in err. */
int pool_gpu_open(pool_gpu **out, const pool_gpu_opts *o, char *err, size_t errlen);
void pool_gpu_close(pool_gpu *g);
int pool_gpu_device(const pool_gpu *g);
/* pool_gpu_name is the device's name ("NVIDIA H100 80GB HBM3"). */
const char *pool_gpu_name(const pool_gpu *g);
/* pool_gpu_open_s is how long pool_gpu_open took (context + pinned allocation). */
double pool_gpu_open_s(const pool_gpu *g);

/* Device memory (cudaMalloc on the pool's device). pool_gpu_free(NULL) is a no-op. */
int pool_gpu_alloc(pool_gpu *g, size_t bytes, void **dptr);
void pool_gpu_free(pool_gpu *g, void *dptr);
/* pool_gpu_memcpy_dtoh copies device bytes to host memory synchronously (tests, checks). */
int pool_gpu_memcpy_dtoh(pool_gpu *g, void *host, const void *dev, size_t len);
/* pool_gpu_memset sets device bytes synchronously (tests poison arenas with it). */
int pool_gpu_memset(pool_gpu *g, void *dev, int value, size_t len);

/* Staging ring. acquire gives a free pinned slot (waiting for the oldest copy in flight when
 * none is free); copy queues slot -> dev_dst on the copy stream and returns the slot to the
 * ring once that copy completes; release returns a slot unused; drain waits for every copy
 * and returns (in *copy_s, if not NULL) the summed copy time since the last drain. */
size_t pool_gpu_slot_bytes(const pool_gpu *g);
int pool_gpu_slot_count(const pool_gpu *g);
int pool_gpu_staging_acquire(pool_gpu *g, void **host, int *slot);
int pool_gpu_staging_copy(pool_gpu *g, int slot, void *dev_dst, size_t len);
void pool_gpu_staging_release(pool_gpu *g, int slot);
int pool_gpu_staging_drain(pool_gpu *g, double *copy_s);

/* ---- host tier and weight budget ---- */

/* pool_gpu_copy_htod copies len bytes from host memory (a pool_host buffer, pinned or pageable)
 * to device memory on g's copy stream and waits for that copy. Thread-safe; a copy queued
 * while a restore uses the stream runs after the restore's copies queued before it.
 * 0, or -EIO with the failed call logged. */
int pool_gpu_copy_htod(pool_gpu *g, void *dev, const void *host, size_t len);
/* pool_gpu_copy_dtoh is the other direction, on the same stream, also waiting. */
int pool_gpu_copy_dtoh(pool_gpu *g, void *host, const void *dev, size_t len);
/* pool_gpu_mem_info reads the device's free and total memory in bytes (either may be NULL).
 * 0, or -EIO (logged); -ENODEV without CUDA or with g NULL. */
int pool_gpu_mem_info(pool_gpu *g, size_t *free_bytes, size_t *total_bytes);
/* pool_gpu_weight_budget is the device memory model weights may use: share (0..1] of the
 * memory free now (after the pool's own staging, context and the kernels' workspaces).
 * 0, or a negative errno from pool_gpu_mem_info with *out set to 0. */
int pool_gpu_weight_budget(pool_gpu *g, double share, uint64_t *out);

/* pool_kv_budget is the memory the KV cache of a generative function may take on a device
 * whose budget has `left` bytes free once the function's weights are placed: on a GPU
 * POOL_KV_GPU_SHARE of it (the rest stays for other functions' weights and the kinds'
 * buffers); in host memory (the CPU lane, and CPU lanes standing in for GPUs in tests) a
 * quarter of it, at most POOL_KV_HOST_MAX. The caller counts what it hands out in the device's
 * budget. Pure function, both builds. */
#define POOL_KV_GPU_SHARE 0.9
#define POOL_KV_HOST_MAX (512ull << 20)
uint64_t pool_kv_budget(int gpu, uint64_t left);

#ifdef __cplusplus
}
#endif
#endif

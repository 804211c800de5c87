/* pool_compute.h — the compute resources of one executor on one GPU: a compute stream, a
 * cuBLAS handle bound to it with its workspace (set once, so products can be captured in CUDA
 * graphs), and numbered scratch buffers in device memory that grow on demand. The CUDA backend
 * of kernels/ takes one when a device opens (kern_dev_open) and keeps it for the device's life:
 * stream, handle and workspaces are created here, once, never per call. The CUDA handles are in
 * pool_cuda.h. One thread uses a pool_compute at a time (its lane).
 *
 * In a build without CUDA, pool_compute_open fails with -ENODEV. */
#ifndef THAW_POOL_COMPUTE_H
#define THAW_POOL_COMPUTE_H
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pool_compute pool_compute;

#define POOL_COMPUTE_SLOTS 8   /* scratch buffers 0 .. POOL_COMPUTE_SLOTS - 1 */

/* pool_compute_open makes device's current context, stream, cuBLAS handle and workspace.
 * 0, or -ENODEV (no such device / no CUDA build), -EIO (logged through pool_log), -ENOMEM. */
int pool_compute_open(int device, pool_compute **out);
/* pool_compute_close waits for the stream's work and frees everything; NULL is a no-op. */
void pool_compute_close(pool_compute *pc);
int pool_compute_device(const pool_compute *pc);
/* pool_compute_scratch: *out = scratch buffer `slot`, of at least `bytes` (contents are
 * scratch: nothing is kept from one op to the next). Growing hands out a new buffer of at
 * least twice the size; the outgrown one stays allocated until pool_compute_close, so a CUDA
 * graph captured earlier by any kind on this device still runs on memory that exists (the
 * retired buffers add up to less than the current one). -ENOSPC when it would have to grow
 * while the stream is being captured into a graph, -EINVAL for a bad slot, -ENOMEM, -EIO. */
int pool_compute_scratch(pool_compute *pc, int slot, size_t bytes, void **out);

#ifdef __cplusplus
}
#endif
#endif

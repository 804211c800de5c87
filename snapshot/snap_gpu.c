/* snap_gpu.c — restoring onto a GPU: a sink over the pool's pinned staging ring. Each decode
 * thread decodes its chunk straight into a pinned slot (no extra host copy), then queues the
 * slot's copy to dev_dst + offset on the pool's copy stream; reads, decodes and copies
 * overlap. The pool (context, stream, pinned ring) is made once and reused by every restore. */
#include <errno.h>
#include <stdio.h>
#include "pool/pool_gpu.h"
#include "snapshot/snap_int.h"

typedef struct gpu_sink { pool_gpu *g; uint8_t *dev; } gpu_sink;

static int gpu_acquire(void *ctx, uint64_t off, size_t len, void **dst, int *slot)
{
	gpu_sink *s = ctx;
	return pool_gpu_staging_acquire(s->g, dst, slot);
}

static int gpu_commit(void *ctx, uint64_t off, size_t len, void *dst, int slot)
{
	gpu_sink *s = ctx;
	return pool_gpu_staging_copy(s->g, slot, s->dev + off, len);
}

static void gpu_release(void *ctx, int slot)
{
	gpu_sink *s = ctx;
	pool_gpu_staging_release(s->g, slot);
}

static int gpu_finish(void *ctx, int ok, double *copy_s)
{
	gpu_sink *s = ctx;
	return pool_gpu_staging_drain(s->g, copy_s);
}

int snap_restore_gpu(snap_file *f, struct pool_gpu *gpu, void *dev_dst,
		     const snap_restore_opts *o, snap_restore_stats *stats, char *err, size_t errlen)
{
	if (!gpu || (!dev_dst && f->image_size))
		return snap_errf(err, errlen, -EINVAL, "restore to GPU: no device pool or destination");
	if (pool_gpu_slot_bytes(gpu) < f->chunk_size)
		return snap_errf(err, errlen, -ERANGE,
				 "%s: chunk size %u is larger than the GPU staging slots (%zu bytes)",
				 f->path, f->chunk_size, pool_gpu_slot_bytes(gpu));
	gpu_sink gs = {gpu, dev_dst};
	snap_sink s = {.ctx = &gs, .acquire = gpu_acquire, .commit = gpu_commit,
		       .release = gpu_release, .finish = gpu_finish};
	snap_restore_opts oo = {0};
	if (o)
		oo = *o;
	/* more decoders than slots would only queue on the ring */
	if (oo.threads <= 0)
		oo.threads = snap_default_threads();
	if (oo.threads > pool_gpu_slot_count(gpu) - 1)
		oo.threads = pool_gpu_slot_count(gpu) > 1 ? pool_gpu_slot_count(gpu) - 1 : 1;
	return snap_restore(f, &s, &oo, stats, err, errlen);
}

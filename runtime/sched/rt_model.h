/* rt_model.h — runtime glue between a snapshot on disk, a device and a function kind:
 *   rt_image   a restored snapshot image (host memory, pinned when asked, or GPU memory) plus
 *              its tensor table and metadata;
 *   rt_model   a kind's loaded state over an image.
 * Used by the scheduler (cold start, host tier, eviction) and by `thaw run`.
 * Threading: restores may run on any thread; rt_model_load/invoke/release run on the lane
 * thread that owns the kern_dev. */
#ifndef THAW_RT_MODEL_H
#define THAW_RT_MODEL_H
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "functions/fn.h"
#include "pool/pool_gpu.h"
#include "snapshot/snap.h"

typedef struct rt_image {
	void *data;                /* image base: host memory, or device memory when device >= 0 */
	uint64_t bytes;
	int device;                /* -1: host; else CUDA ordinal */
	int pinned;                /* host memory from cudaMallocHost */
	size_t mapped;             /* host memory from mmap: its length */
	snap_table *table;         /* tensors at data, metadata JSON, kind */
	snap_restore_stats stats;  /* of the restore that produced it (zeros for copies) */
	char path[4096];           /* the snapshot it came from */
} rt_image;

/* rt_image_restore reads snapshot path into a new image: into host memory (gpu NULL; pinned
 * when pin is set and CUDA is available) or onto gpu's device through its staging ring.
 * threads: decode threads (0 = all cores). Returns 0 or a negative errno with err filled. */
int rt_image_restore(const char *path, pool_gpu *gpu, int pin, int threads, rt_image **out,
		     char *err, size_t errlen);

/* rt_image_copy makes a copy of src on gpu's device (gpu non-NULL: host tier -> GPU) or in
 * pinned host memory (gpu NULL, src on a GPU: GPU -> host tier). 0 or negative errno. */
int rt_image_copy(const rt_image *src, pool_gpu *gpu, rt_image **out, char *err, size_t errlen);

/* rt_model_host_cache_set bounds the bytes of freed host image buffers kept mapped for reuse by
 * later restores (default 0: none kept); lowering it unmaps the surplus. Thread-safe. */
void rt_model_host_cache_set(size_t cap);

/* rt_image_free releases the memory and the table. NULL is a no-op. */
void rt_image_free(rt_image *img);

typedef struct rt_model {
	const fn_kind *kind;
	void *state;
	fn_weight *weights;
	size_t n_weights;
	json_t *meta;
} rt_model;

/* rt_model_load loads kind_name (or, when NULL, the image's metadata kind) over img (NULL for
 * kinds without weights, e.g. echo) on dev. img must outlive the model. Returns 0, or a negative
 * errno with err (status 404 unknown kind, 422 unusable weights, 500/503 otherwise). */
int rt_model_load(kern_dev *dev, const rt_image *img, const char *kind_name, rt_model **out,
		  fn_error *err);

/* rt_model_invoke runs n calls (see fn_kind.invoke): clears each call's out and err first;
 * in, headers and emit are the caller's. */
int rt_model_invoke(rt_model *m, fn_call *calls, size_t n);

/* rt_model_release frees the kind's state (not the image). NULL is a no-op. */
void rt_model_release(rt_model *m);

#endif

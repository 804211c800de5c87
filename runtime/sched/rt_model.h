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
#include "pool/pool_host.h"
#include "snapshot/snap.h"

typedef struct rt_image {
	void *data;                /* image base: host memory, or device memory when gpu is set */
	uint64_t bytes;
	int device;                /* -1: host; else the GPU's ordinal */
	pool_gpu *gpu;             /* the pool that owns the device memory; NULL: host */
	pool_host_buf host;        /* the host memory (gpu NULL) */
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
 * host memory, pinned when the driver grants it (gpu NULL, src on a GPU: GPU -> host tier).
 * Copies run on the pool's copy stream. 0 or negative errno with err filled. */
int rt_image_copy(const rt_image *src, pool_gpu *gpu, rt_image **out, char *err, size_t errlen);

/* rt_image_free releases the memory (to the pool it came from) and the table. NULL is a no-op.
 * A GPU image must be freed before its pool is closed. */
void rt_image_free(rt_image *img);

typedef struct rt_model {
	const fn_kind *kind;
	void *state;
	fn_weight *weights;
	size_t n_weights;
	json_t *meta;
} rt_model;

/* What the runtime tells a generative kind at load (fn_load_args.meta keys, functions/fn.h);
 * ignored for other kinds. A zero field is left out (the kind's default). */
typedef struct rt_model_seq {
	uint64_t kv_cache_bytes;   /* "kv_cache_bytes": device memory its KV blocks may take */
	int max_sequences;         /* "max_sequences": the most calls it will hold at once */
	int prefix_caching;        /* "prefix_caching": 1 true, -1 false, 0 left out */
} rt_model_seq;

/* rt_model_kind finds the kind kind_name names (a registered name, or "plugin:/path.so", loaded
 * once per process), or when kind_name is NULL or "" the kind img's metadata records. Returns 0
 * with *out, or -ENOENT (unknown kind: err status 404) or the plugin loader's errno (500). */
int rt_model_kind(const rt_image *img, const char *kind_name, const fn_kind **out, fn_error *err);

/* rt_model_is_generative reports whether k has the sequence operations (seq_add, seq_step):
 * such a kind's calls are scheduled at the iteration level. */
int rt_model_is_generative(const fn_kind *k);

/* rt_model_load loads kind_name (or, when NULL, the image's metadata kind) over img (NULL for
 * kinds without weights, e.g. echo) on dev. img must outlive the model. seq (may be NULL) adds
 * its keys to the metadata of a generative kind. Returns 0, or a negative errno with err
 * (status 404 unknown kind, 422 unusable weights, 500/503 otherwise). */
int rt_model_load(kern_dev *dev, const rt_image *img, const char *kind_name,
		  const rt_model_seq *seq, rt_model **out, fn_error *err);

/* rt_model_invoke runs n calls (see fn_kind.invoke): clears each call's out and err first;
 * in, headers and emit are the caller's. */
int rt_model_invoke(rt_model *m, fn_call *calls, size_t n);

/* rt_model_release frees the kind's state (not the image). NULL is a no-op. */
void rt_model_release(rt_model *m);

#endif

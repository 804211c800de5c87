/* snap_pack.h — writing .thaw snapshots.
 *
 * snap_pack() is `thaw snapshot pack`: safetensors (file, directory, or sharded index) plus
 * config.json -> .thaw, with an optional per-tensor transform hook (e.g. int8 quantization
 * replaces a BF16 weight by an I8 tensor and an F32 scale tensor) and extra metadata keys.
 *
 * snap_writer is the layer under it, for any producer of tensors (a job that writes a new
 * revision): add tensors in image order, then finish with the metadata JSON.
 *
 * Output is deterministic: the same tensors, metadata and options give the same bytes
 * whatever the thread count. Files are written to OUT.tmp.XXXXXX, fsync'ed, then renamed, so
 * an interrupted write never leaves a file at OUT. */
#ifndef THAW_SNAP_PACK_H
#define THAW_SNAP_PACK_H
#include <stddef.h>
#include <stdint.h>
#include "snapshot/snap.h"

typedef struct snap_pack_stats {
	uint64_t raw_bytes;        /* image bytes */
	uint64_t file_bytes;       /* size of the .thaw */
	uint64_t src_bytes;        /* tensor bytes in the source (before any transform) */
	size_t n_tensors, n_chunks;
	size_t codec_chunks[SNAP_CODEC_COUNT];
	uint64_t codec_raw[SNAP_CODEC_COUNT];     /* raw bytes stored with each codec */
	double wall_s;
} snap_pack_stats;

typedef struct snap_writer_opts {
	int threads;               /* compression threads; 0 = online CPUs */
	uint32_t chunk_size;       /* raw bytes per chunk; 0 = 2 MiB; multiple of 4096, <= 64 MiB */
	int zstd_level;            /* for integer / mixed chunks; 0 = 3 */
	/* NULL or called on the thread that calls finish, in phase "compressing", with the
	 * image bytes compressed and written so far (chunks are compressed on the threads and
	 * written in order) */
	snap_progress_fn progress;
	void *progress_user;
	const void *attachment;    /* NULL or bytes stored after the metadata (format 1.1), e.g. a */
	size_t attachment_len;     /* tokenizer; its XXH3 goes into metadata "attachment" */
} snap_writer_opts;

typedef struct snap_writer snap_writer;

/* snap_writer_open starts a snapshot at path (nothing is created until finish). */
int snap_writer_open(snap_writer **w, const char *path, const snap_writer_opts *o,
		     char *err, size_t errlen);
/* snap_writer_add appends a tensor. data (nbytes = product(shape) * dtype size) must stay
 * valid until finish unless copy is set (then the writer keeps its own copy). Names must be
 * unique. -EINVAL with a message on a bad name, dtype, shape or size. */
int snap_writer_add(snap_writer *w, const char *name, snap_dtype dt, uint32_t ndim,
		    const uint64_t *shape, const void *data, uint64_t nbytes, int copy,
		    char *err, size_t errlen);
size_t snap_writer_count(const snap_writer *w);
/* snap_writer_dtype_summary returns a malloc'd JSON object {"BF16": {"tensors": n, "bytes": b}}
 * of what was added so far. */
char *snap_writer_dtype_summary(const snap_writer *w);
/* snap_writer_finish lays out the image, compresses chunks on the threads, writes the file
 * and renames it into place; meta_json must be a JSON object. Frees w in every case. */
int snap_writer_finish(snap_writer *w, const char *meta_json, snap_pack_stats *st,
		       char *err, size_t errlen);
/* snap_writer_abort frees w without writing anything. */
void snap_writer_abort(snap_writer *w);

/* ---- pack from safetensors ---- */

/* A source tensor as the transform hook sees it. data points into the mapped source file and
 * may be unaligned (safetensors aligns nothing): memcpy elements out, don't cast. */
typedef struct snap_src_tensor {
	const char *name;
	snap_dtype dtype;
	uint32_t ndim;
	const uint64_t *shape;
	const void *data;
	uint64_t nbytes;
} snap_src_tensor;

typedef struct snap_pack_ctx snap_pack_ctx;

/* A transform hook, called once per source tensor, in source order, on the calling thread.
 * Return 1 to pack the tensor unchanged; 0 when the hook has emitted whatever should replace
 * it (zero or more snap_pack_emit calls: e.g. NAME as I8 plus NAME_scale as F32); or a
 * negative errno with a message in err to stop the pack. */
typedef int (*snap_pack_transform_fn)(void *user, const snap_src_tensor *in, snap_pack_ctx *out,
				      char *err, size_t errlen);

/* snap_pack_emit adds a tensor from inside a transform hook; the data is copied. */
int snap_pack_emit(snap_pack_ctx *out, const char *name, snap_dtype dt, uint32_t ndim,
		   const uint64_t *shape, const void *data, uint64_t nbytes, char *err, size_t errlen);
/* snap_pack_config_json is the source's config.json text (NULL if none), for hooks. */
const char *snap_pack_config_json(const snap_pack_ctx *ctx);
/* snap_pack_set_metadata sets top-level metadata key to a JSON value (text), from a hook or
 * before the pack ends, e.g. ("quantization", "{\"method\":\"int8-rowwise\"}"). Keys "kind",
 * "format", "config", "provenance" and "dtypes" are the packer's own: -EINVAL. */
int snap_pack_set_metadata(snap_pack_ctx *ctx, const char *key, const char *json_value);

typedef struct snap_pack_opts {
	snap_writer_opts w;
	const char *kind;          /* the metadata's "kind"; NULL: kind_of's answer, else "unknown" */
	/* kind_of (optional) names the kind of a source packed without one, from its config.json
	 * text (NULL when it has none): the packer knows no models, its caller does. */
	const char *(*kind_of)(const char *config_json, void *user);
	void *kind_user;
	snap_pack_transform_fn transform;  /* NULL: none */
	void *transform_user;
	const char *transform_phase;       /* with a transform, w.progress is told this phase
	                                      (NULL: "transforming") with the source bytes handed
	                                      to the hook so far, before the "compressing" phase */
	const char *extra_metadata;        /* NULL or a JSON object merged into the metadata */
} snap_pack_opts;

/* snap_pack packs src (see snap_st_open) into out_path. */
int snap_pack(const char *src, const char *out_path, const snap_pack_opts *o,
	      snap_pack_stats *st, char *err, size_t errlen);

/* A source that is not a safetensors model (an imported GGUF): its tensors already in the
 * layout to pack, with the text of the config.json it amounts to. */
typedef struct snap_pack_source {
	size_t n;
	const snap_src_tensor *t;  /* in pack order; each data valid until snap_pack_from returns */
	const char *config;        /* config.json text, or NULL */
	const char *sources_json;  /* provenance "sources": a JSON array ([{file, bytes, xxh3}]) */
	const char *provenance_json;   /* NULL or a JSON object of more provenance keys */
	size_t n_src;              /* provenance source_tensors (0: n) */
	uint64_t src_bytes;        /* provenance source_bytes (0: the bytes of t) */
} snap_pack_source;

/* snap_pack_from packs src into out_path like snap_pack (the same options, metadata and
 * transform hook). -EINVAL when sources_json / provenance_json are not JSON of their kind. */
int snap_pack_from(const snap_pack_source *src, const char *out_path, const snap_pack_opts *o,
		   snap_pack_stats *st, char *err, size_t errlen);

#endif

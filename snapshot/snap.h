/* snap.h — the .thaw compressed weight snapshot: open and validate a snapshot, read its tensor
 * index and model metadata, and restore its image (every tensor, at its byte offset) into host
 * memory or onto a GPU through a sink. docs/snapshot-format.md specifies the file; the packer
 * (safetensors -> .thaw) is in snap_pack.h.
 *
 * Errors: every function that can fail returns 0 or a negative errno and, where it takes
 * (err, errlen), writes a one-line human-readable message there naming what is wrong (the file,
 * the section, the chunk and the tensor it holds). err may be NULL.
 *
 * Typical use (the runtime's):
 *     snap_file *f; snap_open(&f, path, err, sizeof err);
 *     void *dev; pool_gpu_alloc(gpu, snap_image_size(f), &dev);
 *     snap_restore_gpu(f, gpu, dev, NULL, &stats, err, sizeof err);
 *     snap_table *t; snap_table_make(f, dev, pool_gpu_device(gpu), &t);  // name, dtype, shape, ptr
 *     snap_close(f);   // t stays valid; snap_table_free(t) later
 */
#ifndef THAW_SNAP_H
#define THAW_SNAP_H
#include <stddef.h>
#include <stdint.h>

#define SNAP_MAX_DIMS 8

/* Element types. The numeric values are the on-disk codes: never renumber. */
typedef enum snap_dtype {
	SNAP_DTYPE_INVALID = 0,
	SNAP_DTYPE_F32 = 1,
	SNAP_DTYPE_F16 = 2,
	SNAP_DTYPE_BF16 = 3,
	SNAP_DTYPE_I8 = 4,
	SNAP_DTYPE_U8 = 5,
	SNAP_DTYPE_I32 = 6,
	SNAP_DTYPE_I64 = 7,
	SNAP_DTYPE_F64 = 8,
	SNAP_DTYPE_I16 = 9,
	SNAP_DTYPE_U16 = 10,
	SNAP_DTYPE_U32 = 11,
	SNAP_DTYPE_U64 = 12,
	SNAP_DTYPE_BOOL = 13,
	SNAP_DTYPE_F8_E4M3 = 14,
	SNAP_DTYPE_F8_E5M2 = 15,
	SNAP_DTYPE_COUNT
} snap_dtype;

/* snap_dtype_name gives the safetensors spelling ("F32", "BF16", ...), or "?" if invalid. */
const char *snap_dtype_name(snap_dtype dt);
/* snap_dtype_size gives the element size in bytes, 0 if invalid. */
size_t snap_dtype_size(snap_dtype dt);
/* snap_dtype_is_float reports whether dt is a floating-point type (F8, F16, BF16, F32, F64). */
int snap_dtype_is_float(snap_dtype dt);
/* snap_dtype_from_name parses a safetensors dtype name (exact, case-sensitive);
 * SNAP_DTYPE_INVALID if unknown. */
snap_dtype snap_dtype_from_name(const char *name);

/* One tensor of a snapshot: its bytes are image[offset, offset + nbytes), row-major,
 * little-endian, as in safetensors. Owned by the snap_file; valid until snap_close. */
typedef struct snap_tensor {
	const char *name;          /* NUL-terminated, unique in the snapshot */
	snap_dtype dtype;
	const char *dtype_name;    /* snap_dtype_name(dtype) */
	uint32_t ndim;             /* 0 for a scalar */
	uint64_t shape[SNAP_MAX_DIMS];
	uint64_t offset;           /* byte offset in the restored image (aligned to snap_image_align) */
	uint64_t nbytes;           /* product(shape) * element size */
} snap_tensor;

/* Codecs a chunk may be stored with (on-disk codes). */
typedef enum snap_codec {
	SNAP_CODEC_RAW = 0,
	SNAP_CODEC_ZSTD = 1,
	SNAP_CODEC_PLANES = 2,     /* zstd over byte planes, see docs/snapshot-format.md */
	SNAP_CODEC_HPLANES = 3,    /* byte planes, compressed planes in thaw's Huffman code */
	SNAP_CODEC_COUNT
} snap_codec;
const char *snap_codec_name(snap_codec c);

/* One chunk of the image as stored in the file. */
typedef struct snap_chunk {
	uint64_t file_offset;      /* 4096-aligned */
	uint64_t raw_offset;       /* in the image */
	uint32_t stored_size;
	uint32_t raw_size;
	uint64_t xxh3;             /* XXH3-64 of the raw bytes */
	uint8_t codec;             /* snap_codec */
	uint8_t width;             /* (H)PLANES: bytes per element (2 or 4) */
	uint8_t plane_mask;        /* (H)PLANES: bit p set = plane p is compressed, else raw */
	uint8_t flags;             /* (H)PLANES: SNAP_CHUNK_ROTATE */
} snap_chunk;
#define SNAP_CHUNK_ROTATE 1   /* elements were rotated left by one bit before the split */

typedef struct snap_file snap_file;

/* snap_open_regular opens path for reading (O_RDONLY | O_CLOEXEC | extra_flags, e.g. O_DIRECT)
 * only if it is a regular file: the open itself is non-blocking, so a FIFO or a device named
 * where a file belongs cannot hang the caller; the descriptor's type is checked with fstat
 * (no window between a check and the open), then O_NONBLOCK is cleared. Symbolic links are
 * followed (model caches use them). Returns the descriptor, -EINVAL when path is not a
 * regular file, or a negative errno from open. */
int snap_open_regular(const char *path, int extra_flags);

/* snap_open opens and validates a snapshot: header, section checksums, tensor index, chunk
 * table, metadata. Chunk payloads are checked at restore/verify. *out is owned by the caller
 * (snap_close). -EINVAL/-EBADMSG/-ENOEXEC... with a message on any inconsistency. */
int snap_open(snap_file **out, const char *path, char *err, size_t errlen);
/* snap_open_mem validates a whole snapshot held in memory (the fuzz target's entry point);
 * buf must stay valid until snap_close. */
int snap_open_mem(snap_file **out, const void *buf, size_t len, char *err, size_t errlen);
void snap_close(snap_file *f);

const char *snap_path(const snap_file *f);           /* "(memory)" for snap_open_mem */
uint64_t snap_file_size(const snap_file *f);
uint64_t snap_image_size(const snap_file *f);        /* bytes the restore delivers */
uint32_t snap_image_align(const snap_file *f);       /* tensor alignment in the image */
uint32_t snap_chunk_size(const snap_file *f);        /* largest raw chunk */
size_t snap_tensor_count(const snap_file *f);
const snap_tensor *snap_tensor_at(const snap_file *f, size_t i);   /* in image order */
/* snap_tensor_find looks a tensor up by name (binary search); NULL if absent. */
const snap_tensor *snap_tensor_find(const snap_file *f, const char *name);
size_t snap_chunk_count(const snap_file *f);
const snap_chunk *snap_chunk_at(const snap_file *f, size_t i);
/* snap_chunk_tensor names the first tensor whose bytes lie in chunk i ("(padding)" if none). */
const char *snap_chunk_tensor(const snap_file *f, size_t i);
/* snap_metadata_json is the model metadata: a NUL-terminated JSON object with "kind",
 * "config" (the source's config.json or null), "provenance", "dtypes" and any extra keys. */
const char *snap_metadata_json(const snap_file *f);
/* snap_attachment_read reads the snapshot's attachment (format 1.1: one opaque blob after the
 * metadata, e.g. the carried tokenizer; checked against its XXH3 in the metadata) into *buf
 * (malloc'd, NUL-terminated; caller frees). -ENOENT when there is none, -EBADMSG when corrupt,
 * -EIO/-ENOMEM. Kept out of the metadata so that opening a snapshot stays cheap. */
int snap_attachment_read(const snap_file *f, void **buf, size_t *len, char *err, size_t errlen);
/* snap_kind is metadata.kind ("llama", "unknown", ...). */
const char *snap_kind(const snap_file *f);

/* ---- restore ---------------------------------------------------------------------------- */

/* How chunk bytes are read. AUTO picks io_uring + O_DIRECT unless the file is mostly in the
 * page cache (then the decoders read the page cache through a mapping, no copy), and falls
 * back at run time when io_uring, O_DIRECT or mmap is refused. A mode other than AUTO in
 * snap_restore_opts.io forces that path (tests force the fallbacks with it). */
typedef enum snap_io_mode {
	SNAP_IO_AUTO = 0,
	SNAP_IO_DIRECT,            /* io_uring, O_DIRECT */
	SNAP_IO_URING,             /* io_uring, buffered */
	SNAP_IO_PREAD,             /* pread(2) from the decode threads, buffered */
	SNAP_IO_MMAP,              /* decode threads read a read-only mapping (page cache) */
} snap_io_mode;
const char *snap_io_mode_name(snap_io_mode m);

/* A progress hook: done of total bytes of the step named phase ("restoring", "verifying",
 * "compressing", ...) are complete. done never decreases within a phase, and the last call of
 * a phase that succeeds has done == total. Calls never overlap; the thread that makes them is
 * said where the hook is accepted. A hook must be quick (it runs inside the pipeline). */
typedef void (*snap_progress_fn)(void *user, const char *phase, uint64_t done, uint64_t total);

typedef struct snap_restore_opts {
	int threads;               /* decode threads; 0 = online CPUs (at most 64) */
	snap_io_mode io;           /* default AUTO */
	int queue_depth;           /* chunk reads in flight; 0 = 32 */
	int no_verify;             /* skip XXH3 (never in the runtime; for measuring only) */
	/* NULL or called with the image bytes decoded, verified and handed to the sink so far:
	 * from a decode thread about every 1/128 of the image, and once with done == total from
	 * the calling thread after the sink finished; never after the restore returns */
	snap_progress_fn progress;
	void *progress_user;
	const char *progress_phase;   /* the phase progress is told; NULL: "restoring" (snap_verify:
	                                 "verifying", snap_unpack: "unpacking") */
} snap_restore_opts;

typedef struct snap_restore_stats {
	double wall_s;             /* whole restore */
	double read_s;             /* time the reader waited on storage (io_uring) or in pread
	                              summed over threads / threads */
	double decode_s;           /* decode + verify busy time, summed over threads / threads */
	double copy_s;             /* host->device copy time (GPU sinks), 0 on host */
	uint64_t raw_bytes;        /* image bytes delivered */
	uint64_t stored_bytes;     /* chunk bytes read */
	int threads;
	snap_io_mode io;           /* the mode actually used */
	char io_note[160];         /* why (e.g. "O_DIRECT refused by filesystem: buffered") */
} snap_restore_stats;

/* A sink receives decoded chunks. The pipeline calls, from several decode threads at once:
 *   acquire(ctx, raw_offset, len, &dst, &slot): a host buffer of len bytes where the chunk
 *     [raw_offset, raw_offset+len) of the image is decoded (may block until one is free);
 *   commit(ctx, raw_offset, len, dst, slot): the bytes at dst are decoded and verified;
 *   release(ctx, slot): give dst back unused (after an error);
 * and, once, from the calling thread:
 *   finish(ctx, ok, &copy_s): all chunks committed (ok=1) or the restore failed (ok=0); wait
 *     for outstanding work, report device copy time. Each returns 0 or a negative errno. */
typedef struct snap_sink {
	void *ctx;
	int (*acquire)(void *ctx, uint64_t raw_offset, size_t len, void **dst, int *slot);
	int (*commit)(void *ctx, uint64_t raw_offset, size_t len, void *dst, int slot);
	void (*release)(void *ctx, int slot);
	int (*finish)(void *ctx, int ok, double *copy_s);
	char err[160];             /* a sink's own failure message, if any */
} snap_sink;

/* snap_restore runs the pipeline (reads -> decode + verify -> sink). Returns 0 when every
 * byte of the image was delivered and verified; else a negative errno with a message naming
 * the chunk and tensor. stats may be NULL. */
int snap_restore(snap_file *f, snap_sink *sink, const snap_restore_opts *o,
		 snap_restore_stats *stats, char *err, size_t errlen);
/* snap_restore_host restores the image into dst (dst_size >= snap_image_size). Padding
 * between tensors is delivered as zeros. */
int snap_restore_host(snap_file *f, void *dst, size_t dst_size, const snap_restore_opts *o,
		      snap_restore_stats *stats, char *err, size_t errlen);
/* snap_verify decodes and checks every chunk without keeping the bytes. On failure *bad_chunk
 * (if not NULL) is the first bad chunk's index (or -1 for a non-chunk failure). */
int snap_verify(snap_file *f, const snap_restore_opts *o, snap_restore_stats *stats,
		long *bad_chunk, char *err, size_t errlen);

struct pool_gpu;
/* snap_restore_gpu restores the image to device memory dev_dst (>= snap_image_size bytes on
 * the pool's device) through the pool's pinned staging ring and copy stream: chunks are
 * decoded straight into pinned slots and copied while later chunks are read and decoded.
 * -ENODEV in a build without CUDA. */
int snap_restore_gpu(snap_file *f, struct pool_gpu *gpu, void *dev_dst,
		     const snap_restore_opts *o, snap_restore_stats *stats, char *err, size_t errlen);

/* ---- the table a function kind receives ------------------------------------------------- */

typedef struct snap_table_entry {
	const char *name;
	const char *dtype;         /* "BF16", "F32", ... */
	snap_dtype dtype_id;
	uint32_t ndim;
	int64_t shape[SNAP_MAX_DIMS];
	void *data;                /* base + offset: host or device pointer */
	uint64_t nbytes;
} snap_table_entry;

typedef struct snap_table {
	size_t n;
	snap_table_entry *t;       /* in image order */
	char *metadata_json;
	const char *kind;          /* metadata.kind */
	int device;                /* -1 host, else the CUDA device of base */
	void *base;
	uint64_t image_size;
} snap_table;

/* snap_table_make builds a table of every tensor at base (a restored image) that does not
 * depend on f (deep copy). base is not owned. -ENOMEM. */
int snap_table_make(const snap_file *f, void *base, int device, snap_table **out);
/* snap_table_rebase makes a copy of t whose tensors point into base on device instead (the same
 * image copied elsewhere: host tier <-> GPU), without reading the snapshot again. -ENOMEM. */
int snap_table_rebase(const snap_table *t, void *base, int device, snap_table **out);
const snap_table_entry *snap_table_find(const snap_table *t, const char *name);
void snap_table_free(snap_table *t);

#endif

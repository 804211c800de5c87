/* snap_int.h — what the snapshot modules share and callers need not see: the on-disk layout
 * constants (docs/snapshot-format.md), little-endian helpers, the chunk codec, the open
 * snapshot's fields, and error formatting. */
#ifndef THAW_SNAP_INT_H
#define THAW_SNAP_INT_H
#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>
#include "pool/pool_base.h"
#include "snapshot/snap.h"

#define SNAP_MAGIC "THAWSNAP"
#define SNAP_VERSION_MAJOR 1
#define SNAP_VERSION_MINOR 0
#define SNAP_VERSION_STR "1.0"
#define SNAP_HEADER_SIZE 160          /* bytes of header fields at offset 0 */
#define SNAP_PAGE 4096                /* chunks start at multiples of this */
#define SNAP_DATA_OFFSET SNAP_PAGE    /* first chunk */
#define SNAP_CHUNK_REC 40             /* bytes per chunk table record */
#define SNAP_TENSOR_REC_MIN 24        /* tensor record before shape and name */
#define SNAP_DEFAULT_CHUNK (2u << 20)
#define SNAP_MIN_CHUNK SNAP_PAGE
#define SNAP_MAX_CHUNK (64u << 20)
#define SNAP_DEFAULT_ALIGN 256
#define SNAP_MAX_TENSORS (1u << 20)
#define SNAP_MAX_CHUNKS (1u << 24)
#define SNAP_MAX_NAME 4096
#define SNAP_MAX_META (64u << 20)
#define SNAP_MAX_ATTACHMENT (1ull << 30)
#define SNAP_MAX_INDEX (1ull << 30)

static inline uint16_t snap_rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t snap_rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t snap_rd64(const uint8_t *p)
{
	return (uint64_t)snap_rd32(p) | (uint64_t)snap_rd32(p + 4) << 32;
}
static inline void snap_wr16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void snap_wr32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static inline void snap_wr64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint64_t snap_round_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

struct snap_file {
	char *path;
	int fd;                       /* -1 for snap_open_mem */
	const uint8_t *mem;           /* snap_open_mem's buffer */
	uint64_t file_size, image_size;
	uint32_t chunk_size, align;
	uint64_t data_offset, data_size;
	uint64_t index_offset, index_size, chunktab_offset, chunktab_size, meta_offset, meta_size;
	size_t n_tensors, n_chunks;
	snap_tensor *tensors;         /* image order */
	size_t *by_name;              /* tensor indices sorted by name */
	char *names;                  /* all names, NUL-terminated, owned */
	snap_chunk *chunks;
	size_t *chunk_tensor;         /* first tensor overlapping each chunk, or SIZE_MAX */
	char *meta;                   /* NUL-terminated JSON */
	uint64_t att_offset, att_size; /* the attachment (format 1.1), 0/0 when none */
	uint64_t att_xxh3;            /* from metadata "attachment": {"xxh3": hex} */
	char kind[64];
	uint32_t max_stored;          /* largest stored_size */
	long last_bad_chunk;          /* set by snap_restore: the failing chunk, or -1 */
};

/* snap_new_file_mode is the mode for a new file at path (a packed or unpacked snapshot):
 * 0666 less the process umask (read from /proc, never by changing it), and less the group and
 * other bits when that class cannot enter path's directory, so a file written into a private
 * directory (a 0700 data directory) is 0600 whatever the umask. */
mode_t snap_new_file_mode(const char *path);
/* snap_errf(err, errlen, rc, fmt, ...) formats a message into err (if not NULL) and returns rc.
 * It is the one formatter every part shares, pool_errf (pool/pool_base.h). */
#define snap_errf pool_errf

/* snap_chunk_where formats "chunk I (tensor NAME, image bytes A..B)" for messages. */
void snap_chunk_where(const snap_file *f, size_t i, char *buf, size_t len);

/* ---- codec (snap_codec.c) ---- */
typedef struct snap_codec_ctx snap_codec_ctx;   /* per-thread zstd contexts + scratch */
/* snap_codec_ctx_new makes a context for chunks of up to max_raw bytes; level is the zstd
 * level for the ZSTD codec (plane streams always use the literal-only setting). */
snap_codec_ctx *snap_codec_ctx_new(size_t max_raw, int level);
void snap_codec_ctx_free(snap_codec_ctx *c);

/* snap_codec_encode picks the encoding of one chunk: raw bytes src[0..raw) whose dominant
 * element type is dt. Writes the payload to dst (capacity snap_codec_bound(raw)) and fills
 * ch->stored_size, codec, width, plane_mask, flags (not offsets or the hash). */
size_t snap_codec_bound(size_t raw);
int snap_codec_encode(snap_codec_ctx *c, const uint8_t *src, size_t raw, snap_dtype dt,
		      uint8_t *dst, snap_chunk *ch);
/* snap_codec_decode decodes payload src (ch->stored_size bytes) into dst (ch->raw_size bytes).
 * Never trusts the payload: returns -EBADMSG with a message ("zstd: ...", "plane 1 size ...")
 * on any inconsistency. If hash is not NULL it receives the XXH3-64 of the decoded bytes,
 * computed block by block as they are written (the caller compares it with ch->xxh3). */
int snap_codec_decode(snap_codec_ctx *c, const snap_chunk *ch, const uint8_t *src, uint8_t *dst,
		      uint64_t *hash, char *err, size_t errlen);

/* ---- parsing (snap_format.c) ---- */
/* snap_parse validates header + sections. rd(ctx, off, len, buf) reads file bytes. */
typedef int (*snap_read_fn)(void *ctx, uint64_t off, size_t len, void *buf);
int snap_parse(snap_file *f, snap_read_fn rd, void *rdctx, char *err, size_t errlen);

/* ---- misc (snap_dtype.c) ---- */
/* snap_now() is CLOCK_MONOTONIC in seconds: the shared pool_clock_mono_s (pool/pool_base.h). */
#define snap_now pool_clock_mono_s
/* snap_default_threads is the number of online CPUs, at most 64. */
int snap_default_threads(void);
/* snap_pread_full reads exactly len bytes at off: 0, -errno, or -ENODATA at end of file. */
int snap_pread_full(int fd, void *buf, size_t len, uint64_t off);
/* snap_pwrite_full writes exactly len bytes at off: 0 or -errno (-EIO on a zero write). */
int snap_pwrite_full(int fd, const void *buf, size_t len, uint64_t off);

#endif

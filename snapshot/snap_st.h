/* snap_st.h — safetensors, the source format of `thaw snapshot pack` and the output of
 * `unpack`: parse and validate a header, open a file / a model directory (single file or a
 * sharded index) with its config.json, and write a safetensors file. */
#ifndef THAW_SNAP_ST_H
#define THAW_SNAP_ST_H
#include <stddef.h>
#include <stdint.h>
#include "snapshot/snap.h"

#define SNAP_ST_MAX_HEADER (100u << 20)   /* the safetensors library's own limit */

typedef struct snap_st_tensor {
	char *name;
	snap_dtype dtype;
	uint32_t ndim;
	uint64_t shape[SNAP_MAX_DIMS];
	uint64_t begin, end;       /* byte range in the file's data section */
	size_t file;               /* index into snap_st.files */
} snap_st_tensor;

typedef struct snap_st_file {
	char *path, *base;         /* base: file name alone (provenance) */
	int fd;
	const uint8_t *map;        /* whole file, read-only */
	uint64_t size, data_off;   /* data_off: 8 + header length */
} snap_st_file;

typedef struct snap_st {
	size_t n_files;
	snap_st_file *files;
	size_t n;
	snap_st_tensor *t;         /* in pack order: by file, then by data offset */
	char *st_metadata;         /* JSON object text of the first file's "__metadata__", or NULL */
	char *config;              /* config.json's text when present, else NULL */
} snap_st;

/* snap_st_parse_header validates a safetensors header (the JSON text, len bytes, not
 * NUL-terminated) against a data section of data_size bytes and appends its tensors (file
 * index `file`) to *t / *n. *meta, if not NULL and the header has "__metadata__", receives
 * its JSON text (malloc'd). Checks: JSON object, known dtypes, shapes, offsets inside the
 * data section, sizes matching shape x dtype, no overlaps. -EBADMSG with a message. */
int snap_st_parse_header(const char *json, size_t len, uint64_t data_size, size_t file,
			 snap_st_tensor **t, size_t *n, char **meta, char *err, size_t errlen);
/* snap_st_parse_mem parses a whole safetensors file held in memory (fuzz target). */
int snap_st_parse_mem(const uint8_t *buf, size_t len, snap_st_tensor **t, size_t *n,
		      char *err, size_t errlen);
void snap_st_tensors_free(snap_st_tensor *t, size_t n);

/* snap_st_open opens SRC: a .safetensors file, or a directory holding model.safetensors or
 * model.safetensors.index.json (shards), plus config.json when present beside it. Files are
 * mapped read-only. Tensor names must be unique across shards. */
int snap_st_open(snap_st **out, const char *src, char *err, size_t errlen);
void snap_st_close(snap_st *s);
/* snap_st_data points at tensor i's bytes in its mapped file. */
const void *snap_st_data(const snap_st *s, size_t i);

/* Writing: snap_st_header builds the header of a safetensors file with these tensors laid out
 * contiguously in the given order (data offsets computed), plus "__metadata__" from meta (a
 * JSON object text, or NULL). Returns the malloc'd bytes (8-byte length + JSON padded with
 * spaces to a multiple of 8) and *data_off[i] = each tensor's offset in the data section. */
uint8_t *snap_st_header(const snap_tensor *t, size_t n, const char *meta, size_t *len,
			uint64_t *data_off, char *err, size_t errlen);

#endif

/* snap_fmt.h — encoding the .thaw header and sections (snap_format.c), for the writer. */
#ifndef THAW_SNAP_FMT_H
#define THAW_SNAP_FMT_H
#include "snapshot/snap_int.h"

typedef struct snap_fmt_hdr {
	uint64_t file_size, image_size;
	uint32_t n_tensors, n_chunks, chunk_size, align;
	uint64_t data_offset, data_size;
	uint64_t index_offset, index_size, chunktab_offset, chunktab_size, meta_offset, meta_size;
	uint64_t index_xxh3, chunktab_xxh3, meta_xxh3;
	uint64_t att_offset, att_size;   /* format 1.1 attachment; 0/0: none (written as 1.0) */
} snap_fmt_hdr;

/* snap_fmt_header writes the SNAP_HEADER_SIZE header bytes (with their checksum). */
void snap_fmt_header(const snap_fmt_hdr *h, uint8_t out[SNAP_HEADER_SIZE]);
/* snap_fmt_index / snap_fmt_chunktab return malloc'd section bytes (NULL: out of memory). */
uint8_t *snap_fmt_index(const snap_tensor *t, size_t n, size_t *len);
uint8_t *snap_fmt_chunktab(const snap_chunk *c, size_t n, size_t *len);
size_t snap_fmt_tensor_rec_size(uint32_t ndim, size_t name_len);
#endif

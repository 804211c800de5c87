/* snap_huf.h — the Huffman coder of the "hplanes" codec (docs/snapshot-format.md): one byte
 * plane -> a canonical Huffman code (lengths <= 11 bits) in 4 interleaved LSB-first streams,
 * decoded with a table that yields up to 4 symbols per lookup. Built for the exponent plane of
 * float weights (entropy ~2.6 bits), where it decodes several times faster than zstd's Huffman. */
#ifndef THAW_SNAP_HUF_H
#define THAW_SNAP_HUF_H
#include <stddef.h>
#include <stdint.h>

#define SNAP_HUF_MAXLEN 11
#define SNAP_HUF_STREAMS 4
#define SNAP_HUF_HEADER (128 + 4 * SNAP_HUF_STREAMS)

/* snap_huf_bound is the most bytes snap_huf_encode may write for n symbols. */
size_t snap_huf_bound(size_t n);
/* snap_huf_encode codes src[0..n) into dst (capacity snap_huf_bound(n)); returns the size. */
size_t snap_huf_encode(const uint8_t *src, size_t n, uint8_t *dst);
/* snap_huf_decode decodes exactly n symbols from src[0..len) into dst. Never reads or writes
 * out of bounds on any input; returns 0, or -EBADMSG for a malformed header (a corrupt stream
 * decodes to wrong bytes, which the chunk's XXH3 catches). */
int snap_huf_decode(const uint8_t *src, size_t len, uint8_t *dst, size_t n);
#endif

/* fuzz_snapshot.c — libFuzzer target for the .thaw parser and chunk decoders: any bytes given
 * to snap_open_mem must be rejected with a message or parse into a consistent index whose
 * chunks then decode (or fail) without crashing. Seeds: tests/fuzz/corpus/snapshot/. */
#include <stdint.h>
#include <stdlib.h>
#include <xxhash.h>
#include "snapshot/snap_huf.h"
#include "snapshot/snap_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[512];
	snap_file *f;
	/* the Huffman plane decoder on raw bytes: any input, in bounds */
	if (size >= SNAP_HUF_HEADER) {
		size_t n = size * 3 < (1u << 16) ? size * 3 : (1u << 16);
		uint8_t *out = malloc(n);
		if (out)
			snap_huf_decode(data, size, out, n);
		free(out);
	}
	if (snap_open_mem(&f, data, size, err, sizeof err))
		return 0;
	/* walk the index like a caller would */
	for (size_t i = 0; i < snap_tensor_count(f); i++) {
		const snap_tensor *t = snap_tensor_at(f, i);
		if (snap_tensor_find(f, t->name) != t)
			abort();
		if (t->offset + t->nbytes > snap_image_size(f))
			abort();
	}
	snap_codec_ctx *cc = snap_codec_ctx_new(snap_chunk_size(f), INT32_MIN);
	uint8_t *dst = malloc(snap_chunk_size(f));
	for (size_t i = 0; cc && dst && i < snap_chunk_count(f) && i < 64; i++) {
		const snap_chunk *c = snap_chunk_at(f, i);
		if (c->file_offset + c->stored_size > size)
			abort();   /* snap_open promised the chunk is inside the file */
		uint64_t h;
		if (snap_codec_decode(cc, c, data + c->file_offset, dst, &h, err, sizeof err) == 0 &&
		    h != XXH3_64bits(dst, c->raw_size))
			abort();   /* the fused hash must equal the one-shot hash */
	}
	free(dst);
	snap_codec_ctx_free(cc);
	/* the attachment (1.1): read and checked, or refused with a reason */
	void *att = NULL;
	size_t att_len = 0;
	err[0] = 0;
	int arc = snap_attachment_read(f, &att, &att_len, err, sizeof err);
	if ((arc == 0) != (att != NULL) || (arc < 0 && !err[0]))
		abort();
	free(att);
	snap_close(f);
	return 0;
}

/* fuzz_gguf.c — libFuzzer target for the GGUF reader behind `thaw snapshot pack model.gguf`:
 * any file must be rejected with a message, or give tensors whose bytes lie inside the file,
 * match their shape and type and do not overlap; small tensors of decodable types are decoded,
 * and the embedded tokenizer is converted (or refused with a message). Seeds:
 * tests/fuzz/corpus/gguf/. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include "runtime/tok/rt_tok_gguf.h"
#include "snapshot/snap_gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[512];
	snap_gguf *g = NULL;
	if (snap_gguf_parse_mem(data, size, &g, err, sizeof err) != 0) {
		if (!err[0])
			abort();
		return 0;
	}
	for (size_t i = 0; i < g->n_tensors; i++) {
		const snap_gguf_tensor *t = &g->t[i];
		uint32_t blk, bytes;
		if (!snap_gguf_type_block(t->type, &blk, &bytes) || t->nbytes != t->nelem / blk * bytes ||
		    g->data_off + t->offset + t->nbytes > size)
			abort();
		if (snap_gguf_can_decode(t->type) && t->nelem <= (1u << 16)) {
			float *y = malloc(t->nelem * sizeof *y);
			if (y && snap_gguf_to_f32(t->type, snap_gguf_data(g, i), t->nelem, y))
				abort();
			free(y);
		}
	}
	json_t *tok = NULL, *cfg = NULL;
	int rc = rt_tok_gguf_convert(g, &tok, &cfg, err, sizeof err);
	if (rc == 0 && (!json_is_object(tok) || !json_is_object(cfg)))
		abort();
	json_decref(tok);
	json_decref(cfg);
	snap_gguf_close(g);
	return 0;
}

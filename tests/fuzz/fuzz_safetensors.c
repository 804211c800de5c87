/* fuzz_safetensors.c — libFuzzer target for the safetensors header parser used by `pack`:
 * any file must be rejected with a message or give tensors whose byte ranges lie inside the
 * data section and match their shape and dtype. Seeds: tests/fuzz/corpus/safetensors/. */
#include <stdint.h>
#include <stdlib.h>
#include "snapshot/snap_int.h"
#include "snapshot/snap_st.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[512];
	snap_st_tensor *t = NULL;
	size_t n = 0;
	if (snap_st_parse_mem(data, size, &t, &n, err, sizeof err) == 0) {
		uint64_t hl = snap_rd64(data);
		for (size_t i = 0; i < n; i++) {
			uint64_t numel = 1;
			for (uint32_t d = 0; d < t[i].ndim; d++)
				numel *= t[i].shape[d];
			if (t[i].end > size - 8 - hl || t[i].end - t[i].begin != numel * snap_dtype_size(t[i].dtype))
				abort();
		}
	}
	snap_st_tensors_free(t, n);
	return 0;
}

/* snap_sinks.h — restoring through a ring of scratch buffers (bounded memory): each decoded,
 * verified chunk is handed to a callback and its buffer reused. `verify` uses no callback;
 * `unpack` writes each chunk's tensor bytes to a safetensors file. */
#ifndef THAW_SNAP_SINKS_H
#define THAW_SNAP_SINKS_H
#include "snapshot/snap.h"

/* A scratch callback gets the image bytes [raw_offset, raw_offset + len) at data, from several
 * threads at once; returns 0 or a negative errno (which stops the restore). */
typedef int (*snap_scratch_fn)(void *user, uint64_t raw_offset, const void *data, size_t len);

/* snap_restore_scratch runs the pipeline with (threads + 1) chunk-sized scratch buffers. */
int snap_restore_scratch(snap_file *f, snap_scratch_fn fn, void *user, const snap_restore_opts *o,
			 snap_restore_stats *stats, char *err, size_t errlen);

/* snap_unpack writes a safetensors file with f's tensors (same names, dtypes, shapes, bytes;
 * image order) and the source's safetensors metadata when the snapshot recorded it. Written
 * to a temporary file and renamed. */
int snap_unpack(snap_file *f, const char *out_path, const snap_restore_opts *o,
		snap_restore_stats *stats, char *err, size_t errlen);
#endif

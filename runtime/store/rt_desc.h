/* rt_desc.h — a revision's descriptor: the facts about its snapshot and kind that the runtime
 * needs without opening the snapshot again. Computed once when the revision is created (the
 * deploy's own open of the snapshot; a job's result), stored with the revision as JSON
 * (revisions.descriptor), and read from the registry's view afterwards:
 *   image_bytes   what a restore delivers (the placement's memory need at a cold start)
 *   digest        XXH3-64 of the tensor table (name, dtype, shape, offset of each tensor)
 *   kind          the kind's own name (a plugin's, not its path)
 *   text          the snapshot carries a tokenizer ("tokenizer" in its metadata)
 *   v2            the V2 signature the kind declared (fn.h, v2_sig), when it declares one
 * A revision stored before descriptors existed gets one computed on its first read. */
#ifndef THAW_RT_DESC_H
#define THAW_RT_DESC_H
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "functions/fn.h"

struct snap_file;

#define RT_DESC_VERSION 1

typedef struct rt_desc {
	int known;                 /* 0: not computed yet */
	uint64_t image_bytes;
	char digest[17];           /* 16 hex digits; "" without a snapshot */
	char kind[64];
	int text;
	int has_v2;
	fn_v2_sig v2;
} rt_desc;

/* rt_desc_compute fills d for a revision of kind field kind ("mlp", or "plugin:/path.so":
 * loaded when it is not yet) whose snapshot is f (borrowed, may be NULL for a kind without
 * weights). -ENOENT for an unknown kind, -ENOMEM. A kind that refuses to describe this
 * snapshot (v2_sig fails) gives a descriptor without V2 signature (logged). */
int rt_desc_compute(struct snap_file *f, const char *kind, rt_desc *d, char *err, size_t errlen);

/* rt_desc_compute_path is rt_desc_compute over the snapshot at path ("" or NULL: none), opened
 * and closed here. -errno of the open with a message in err. */
int rt_desc_compute_path(const char *path, const char *kind, rt_desc *d, char *err,
			 size_t errlen);

/* rt_desc_to_json encodes d ({"version", "image_bytes", "digest", "kind", "text", "v2":
 * {"inputs": [{"name", "datatype", "shape"}], "outputs": [...]} or null}); new reference. */
json_t *rt_desc_to_json(const rt_desc *d);

/* rt_desc_from_json decodes what rt_desc_to_json wrote: 0, or -EINVAL for a malformed or
 * newer object (d->known stays 0). */
int rt_desc_from_json(const json_t *o, rt_desc *d);

/* rt_desc_v2_json gives the V2 metadata arrays of d's inputs (outputs = 0) or outputs
 * (outputs = 1): [{"name", "datatype", "shape"}, ...], empty without a signature. */
json_t *rt_desc_v2_json(const rt_desc *d, int outputs);

#endif

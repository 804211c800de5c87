/* rt_quant.c — the int8 weight-only pack hook (see rt_quant.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "functions/fn_quant.h"
#include "runtime/jobs/rt_quant.h"

int rt_quant_parse(const char *spec, rt_quant *q)
{
	memset(q, 0, sizeof *q);
	if (!spec)
		return -EINVAL;
	if (!strcmp(spec, "int8"))
		return 0;
	if (!strcmp(spec, "int8:32")) {
		q->block = 32;
		return 0;
	}
	return -EINVAL;
}

int rt_quant_hook(void *user, const snap_src_tensor *in, snap_pack_ctx *out, char *err,
		  size_t errlen)
{
	rt_quant *q = user;
	int64_t shape[2] = {0, 0};
	if (in->ndim == 2) {
		shape[0] = (int64_t)in->shape[0];
		shape[1] = (int64_t)in->shape[1];
	}
	if (!fn_quant_eligible(in->name, snap_dtype_name(in->dtype), (int)in->ndim, shape, q->block))
		return 1;
	int64_t n = shape[0], k = shape[1], ns = fn_quant_scale_count(n, k, q->block);
	void *src = malloc(in->nbytes ? in->nbytes : 1);   /* the mapped source may be unaligned */
	int8_t *qd = malloc((size_t)(n * k));
	float *sc = malloc((size_t)ns * 4);
	int rc = -ENOMEM;
	if (!src || !qd || !sc) {
		snprintf(err, errlen, "%s: out of memory quantizing", in->name);
		goto done;
	}
	memcpy(src, in->data, in->nbytes);
	rc = fn_quant_int8(snap_dtype_name(in->dtype), src, n, k, q->block, qd, sc);
	if (rc < 0) {
		snprintf(err, errlen, "%s: cannot quantize", in->name);
		goto done;
	}
	uint64_t qs[2] = {(uint64_t)n, (uint64_t)k}, ss[2] = {(uint64_t)n, (uint64_t)(ns / n)};
	char sname[1024];
	snprintf(sname, sizeof sname, "%s%s", in->name, FN_QUANT_SCALE_SUFFIX);
	rc = snap_pack_emit(out, in->name, SNAP_DTYPE_I8, 2, qs, qd, (uint64_t)(n * k), err, errlen);
	if (rc == 0)
		rc = snap_pack_emit(out, sname, SNAP_DTYPE_F32, q->block ? 2 : 1, ss, sc,
				    (uint64_t)ns * 4, err, errlen);
	if (rc == 0 && !q->meta_set) {
		char m[160];
		snprintf(m, sizeof m, "{\"method\": \"int8\", \"block\": %d, \"scale_suffix\": \"%s\"}",
			 q->block, FN_QUANT_SCALE_SUFFIX);
		rc = snap_pack_set_metadata(out, "quantization", m);
		if (rc < 0)
			snprintf(err, errlen, "cannot set quantization metadata");
		q->meta_set = 1;
	}
	if (rc == 0)
		q->n_quantized++;
done:
	free(src);
	free(qd);
	free(sc);
	return rc;
}

/* snap_unpack.c — `thaw snapshot unpack`: a .thaw back to a safetensors file with the same
 * tensors (names, dtypes, shapes, bytes), streamed through the restore pipeline with bounded
 * memory: each verified chunk's tensor bytes are written at their place in the output. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <jansson.h>
#include "snapshot/snap_int.h"
#include "snapshot/snap_sinks.h"
#include "snapshot/snap_st.h"

typedef struct unpack_ctx {
	const snap_file *f;
	int fd;
	uint64_t data_start;
	const uint64_t *data_off;
} unpack_ctx;

static int unpack_chunk(void *user, uint64_t off, const void *data, size_t len)
{
	unpack_ctx *u = user;
	const snap_file *f = u->f;
	uint64_t end = off + len;
	size_t lo = 0, hi = f->n_tensors;
	while (lo < hi) {   /* first tensor ending after off */
		size_t mid = (lo + hi) / 2;
		if (f->tensors[mid].offset + f->tensors[mid].nbytes <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (size_t i = lo; i < f->n_tensors && f->tensors[i].offset < end; i++) {
		const snap_tensor *t = &f->tensors[i];
		uint64_t a = t->offset > off ? t->offset : off;
		uint64_t b = t->offset + t->nbytes < end ? t->offset + t->nbytes : end;
		if (b <= a)
			continue;
		const char *src = (const char *)data + (a - off);
		uint64_t dst = u->data_start + u->data_off[i] + (a - t->offset);
		int rc = snap_pwrite_full(u->fd, src, (size_t)(b - a), dst);
		if (rc)
			return rc;
	}
	return 0;
}

int snap_unpack(snap_file *f, const char *out_path, const snap_restore_opts *o,
		snap_restore_stats *stats, char *err, size_t errlen)
{
	char tmp[4200], *stmeta = NULL;
	uint64_t *data_off = calloc(f->n_tensors ? f->n_tensors : 1, sizeof *data_off);
	uint8_t *hdr = NULL;
	size_t hlen = 0;
	int fd = -1, rc;
	json_t *m = json_loads(f->meta, 0, NULL);
	json_t *sm = json_object_get(json_object_get(m, "provenance"), "safetensors_metadata");

	if (json_is_object(sm))
		stmeta = json_dumps(sm, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(m);
	if (!data_off) {
		rc = snap_errf(err, errlen, -ENOMEM, "out of memory");
		goto out;
	}
	if (!(hdr = snap_st_header(f->tensors, f->n_tensors, stmeta, &hlen, data_off, err, errlen))) {
		rc = -ENOMEM;
		goto out;
	}
	snprintf(tmp, sizeof tmp, "%s.tmp.XXXXXX", out_path);
	if ((fd = mkstemp(tmp)) < 0) {
		rc = snap_errf(err, errlen, -errno, "%s: %s", tmp, strerror(errno));
		goto out;
	}
	fchmod(fd, snap_new_file_mode(out_path));
	uint64_t total = hlen;
	for (size_t i = 0; i < f->n_tensors; i++)
		total += f->tensors[i].nbytes;
	if (pwrite(fd, hdr, hlen, 0) != (ssize_t)hlen || ftruncate(fd, (off_t)total) < 0) {
		rc = snap_errf(err, errlen, -errno, "%s: write: %s", tmp, strerror(errno));
		goto out;
	}
	unpack_ctx u = {f, fd, hlen, data_off};
	snap_restore_opts oo = {0};
	if (o)
		oo = *o;
	if (!oo.progress_phase)
		oo.progress_phase = "unpacking";
	if ((rc = snap_restore_scratch(f, unpack_chunk, &u, &oo, stats, err, errlen)))
		goto out;
	if (fsync(fd) < 0 || close(fd) < 0) {
		fd = -1;
		rc = snap_errf(err, errlen, -errno, "%s: %s", tmp, strerror(errno));
		goto out;
	}
	fd = -1;
	if (rename(tmp, out_path) < 0) {
		rc = snap_errf(err, errlen, -errno, "rename %s -> %s: %s", tmp, out_path, strerror(errno));
		unlink(tmp);
	}
out:
	if (fd >= 0) {
		close(fd);
		unlink(tmp);
	}
	free(stmeta);
	free(hdr);
	free(data_off);
	return rc;
}

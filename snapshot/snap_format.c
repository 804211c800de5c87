/* snap_format.c — the .thaw file layout: encode the header, tensor index and chunk table (for
 * the writer) and parse + validate them (snap_open). docs/snapshot-format.md is the spec; every
 * rule checked here is listed there. Nothing read from the file is trusted: each count, size
 * and offset is bounded before use, and each failure names the section, chunk or tensor. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <jansson.h>
#include <xxhash.h>
#include "snapshot/snap_int.h"
#include "snapshot/snap_fmt.h"

/* ---- encode ---- */

size_t snap_fmt_tensor_rec_size(uint32_t ndim, size_t name_len)
{
	return SNAP_TENSOR_REC_MIN + 8 * (size_t)ndim + snap_round_up(name_len, 8);
}

uint8_t *snap_fmt_index(const snap_tensor *t, size_t n, size_t *len)
{
	size_t total = 0;
	for (size_t i = 0; i < n; i++)
		total += snap_fmt_tensor_rec_size(t[i].ndim, strlen(t[i].name));
	uint8_t *buf = calloc(1, total ? total : 1), *p = buf;
	if (!buf)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		size_t nl = strlen(t[i].name);
		snap_wr64(p, t[i].offset);
		snap_wr64(p + 8, t[i].nbytes);
		snap_wr32(p + 16, (uint32_t)nl);
		p[20] = (uint8_t)t[i].dtype;
		p[21] = (uint8_t)t[i].ndim;
		p += SNAP_TENSOR_REC_MIN;
		for (uint32_t d = 0; d < t[i].ndim; d++, p += 8)
			snap_wr64(p, t[i].shape[d]);
		memcpy(p, t[i].name, nl);
		p += snap_round_up(nl, 8);
	}
	*len = total;
	return buf;
}

uint8_t *snap_fmt_chunktab(const snap_chunk *c, size_t n, size_t *len)
{
	uint8_t *buf = calloc(1, n ? n * SNAP_CHUNK_REC : 1), *p = buf;
	if (!buf)
		return NULL;
	for (size_t i = 0; i < n; i++, p += SNAP_CHUNK_REC) {
		snap_wr64(p, c[i].file_offset);
		snap_wr64(p + 8, c[i].raw_offset);
		snap_wr32(p + 16, c[i].stored_size);
		snap_wr32(p + 20, c[i].raw_size);
		snap_wr64(p + 24, c[i].xxh3);
		p[32] = c[i].codec;
		p[33] = c[i].width;
		p[34] = c[i].plane_mask;
		p[35] = c[i].flags;
	}
	*len = n * SNAP_CHUNK_REC;
	return buf;
}

void snap_fmt_header(const snap_fmt_hdr *h, uint8_t out[SNAP_HEADER_SIZE])
{
	memset(out, 0, SNAP_HEADER_SIZE);
	memcpy(out, SNAP_MAGIC, 8);
	snap_wr16(out + 8, SNAP_VERSION_MAJOR);
	snap_wr16(out + 10, h->att_size ? 1 : SNAP_VERSION_MINOR);   /* 1.0 readers keep reading 1.0 files */
	snap_wr32(out + 12, SNAP_HEADER_SIZE);
	snap_wr64(out + 16, h->file_size);
	snap_wr64(out + 24, h->image_size);
	snap_wr32(out + 32, h->n_tensors);
	snap_wr32(out + 36, h->n_chunks);
	snap_wr32(out + 40, h->chunk_size);
	snap_wr32(out + 44, h->align);
	snap_wr64(out + 48, h->data_offset);
	snap_wr64(out + 56, h->data_size);
	snap_wr64(out + 64, h->index_offset);
	snap_wr64(out + 72, h->index_size);
	snap_wr64(out + 80, h->chunktab_offset);
	snap_wr64(out + 88, h->chunktab_size);
	snap_wr64(out + 96, h->meta_offset);
	snap_wr64(out + 104, h->meta_size);
	snap_wr64(out + 112, h->index_xxh3);
	snap_wr64(out + 120, h->chunktab_xxh3);
	snap_wr64(out + 128, h->meta_xxh3);
	snap_wr64(out + 136, h->att_offset);
	snap_wr64(out + 144, h->att_size);
	snap_wr64(out + 152, XXH3_64bits(out, 152));
}

/* ---- parse ---- */

static int in_file(uint64_t off, uint64_t len, uint64_t file_size)
{
	return off <= file_size && len <= file_size - off;
}

static int cmp_name(const void *a, const void *b, void *ctx)
{
	const snap_tensor *t = ctx;
	return strcmp(t[*(const size_t *)a].name, t[*(const size_t *)b].name);
}

static int parse_index(snap_file *f, const uint8_t *buf, char *err, size_t errlen)
{
	size_t n = f->n_tensors, names_len = 0;
	const uint8_t *p = buf, *end = buf + f->index_size;
	uint64_t prev_end = 0, need = 0;

	f->tensors = calloc(n ? n : 1, sizeof *f->tensors);
	f->by_name = calloc(n ? n : 1, sizeof *f->by_name);
	if (!f->tensors || !f->by_name)
		return snap_errf(err, errlen, -ENOMEM, "out of memory for %zu tensors", n);
	/* first pass: sizes, so names can live in one allocation */
	for (size_t i = 0; i < n; i++) {
		if ((size_t)(end - p) < SNAP_TENSOR_REC_MIN)
			return snap_errf(err, errlen, -EBADMSG, "tensor index: record %zu truncated", i);
		uint32_t nl = snap_rd32(p + 16);
		uint8_t ndim = p[21];
		if (ndim > SNAP_MAX_DIMS)
			return snap_errf(err, errlen, -EBADMSG, "tensor index: record %zu has %u dimensions (max %d)",
					 i, ndim, SNAP_MAX_DIMS);
		if (nl == 0 || nl > SNAP_MAX_NAME)
			return snap_errf(err, errlen, -EBADMSG, "tensor index: record %zu has a name of %u bytes", i, nl);
		size_t rec = snap_fmt_tensor_rec_size(ndim, nl);
		if ((size_t)(end - p) < rec)
			return snap_errf(err, errlen, -EBADMSG, "tensor index: record %zu truncated", i);
		names_len += nl + 1;
		p += rec;
	}
	if (p != end)
		return snap_errf(err, errlen, -EBADMSG, "tensor index: %zu bytes left after %zu records",
				 (size_t)(end - p), n);
	f->names = malloc(names_len ? names_len : 1);
	if (!f->names)
		return snap_errf(err, errlen, -ENOMEM, "out of memory for tensor names");
	char *np = f->names;
	p = buf;
	for (size_t i = 0; i < n; i++) {
		snap_tensor *t = &f->tensors[i];
		uint32_t nl = snap_rd32(p + 16);
		t->offset = snap_rd64(p);
		t->nbytes = snap_rd64(p + 8);
		t->dtype = p[20];
		t->ndim = p[21];
		t->dtype_name = snap_dtype_name(t->dtype);
		const uint8_t *sp = p + SNAP_TENSOR_REC_MIN;
		memcpy(np, sp + 8 * t->ndim, nl);
		np[nl] = 0;
		t->name = np;
		np += nl + 1;
		if (memchr(t->name, 0, nl))
			return snap_errf(err, errlen, -EBADMSG, "tensor index: record %zu: name holds a NUL byte", i);
		if (snap_dtype_size(t->dtype) == 0)
			return snap_errf(err, errlen, -EBADMSG, "tensor %s: unknown dtype code %u", t->name, p[20]);
		if (snap_rd16(p + 22))
			return snap_errf(err, errlen, -EBADMSG, "tensor %s: reserved field not zero", t->name);
		uint64_t numel = 1;
		for (uint32_t d = 0; d < t->ndim; d++) {
			t->shape[d] = snap_rd64(sp + 8 * d);
			if (t->shape[d] && numel > UINT64_MAX / t->shape[d])
				return snap_errf(err, errlen, -EBADMSG, "tensor %s: shape overflows", t->name);
			numel *= t->shape[d];
		}
		size_t es = snap_dtype_size(t->dtype);
		if (numel > UINT64_MAX / es || numel * es != t->nbytes)
			return snap_errf(err, errlen, -EBADMSG,
					 "tensor %s: %" PRIu64 " bytes do not match its shape and dtype %s",
					 t->name, t->nbytes, t->dtype_name);
		if (t->offset % f->align)
			return snap_errf(err, errlen, -EBADMSG, "tensor %s: offset %" PRIu64 " not %u-aligned",
					 t->name, t->offset, f->align);
		if (t->offset < prev_end)
			return snap_errf(err, errlen, -EBADMSG, "tensor %s: overlaps the tensor before it", t->name);
		if (t->offset > f->image_size || t->nbytes > f->image_size - t->offset)
			return snap_errf(err, errlen, -EBADMSG,
					 "tensor %s: bytes %" PRIu64 "..%" PRIu64 " outside the %" PRIu64 "-byte image",
					 t->name, t->offset, t->offset + t->nbytes, f->image_size);
		prev_end = t->offset + t->nbytes;
		need += snap_round_up(t->nbytes, f->align);   /* <= image_size: no overflow */
		f->by_name[i] = i;
		p += snap_fmt_tensor_rec_size(t->ndim, nl);
	}
	/* the image holds the tensors and the padding that aligns each: a header declaring more
	 * would make a restore allocate (and a host tier keep) bytes no tensor uses */
	if (f->image_size > need)
		return snap_errf(err, errlen, -EBADMSG,
				 "header: image of %" PRIu64 " bytes, but its %zu tensors with %u-byte "
				 "alignment need at most %" PRIu64 " (padding refused)", f->image_size, n,
				 f->align, need);
	qsort_r(f->by_name, n, sizeof *f->by_name, cmp_name, f->tensors);
	for (size_t i = 1; i < n; i++)
		if (strcmp(f->tensors[f->by_name[i]].name, f->tensors[f->by_name[i - 1]].name) == 0)
			return snap_errf(err, errlen, -EBADMSG, "tensor index: name %s appears twice",
					 f->tensors[f->by_name[i]].name);
	return 0;
}

static int parse_chunks(snap_file *f, const uint8_t *buf, char *err, size_t errlen)
{
	size_t n = f->n_chunks;
	uint64_t raw_next = 0, file_next = f->data_offset;
	uint64_t data_end = f->data_offset + f->data_size;

	f->chunks = calloc(n ? n : 1, sizeof *f->chunks);
	f->chunk_tensor = calloc(n ? n : 1, sizeof *f->chunk_tensor);
	if (!f->chunks || !f->chunk_tensor)
		return snap_errf(err, errlen, -ENOMEM, "out of memory for %zu chunks", n);
	size_t ti = 0;
	for (size_t i = 0; i < n; i++) {
		const uint8_t *p = buf + i * SNAP_CHUNK_REC;
		snap_chunk *c = &f->chunks[i];
		c->file_offset = snap_rd64(p);
		c->raw_offset = snap_rd64(p + 8);
		c->stored_size = snap_rd32(p + 16);
		c->raw_size = snap_rd32(p + 20);
		c->xxh3 = snap_rd64(p + 24);
		c->codec = p[32];
		c->width = p[33];
		c->plane_mask = p[34];
		c->flags = p[35];
		if (snap_rd32(p + 36))
			return snap_errf(err, errlen, -EBADMSG, "chunk %zu: reserved field not zero", i);
		if (c->codec >= SNAP_CODEC_COUNT)
			return snap_errf(err, errlen, -EBADMSG, "chunk %zu: unknown codec %u", i, c->codec);
		if (c->raw_size == 0 || c->raw_size > f->chunk_size)
			return snap_errf(err, errlen, -EBADMSG, "chunk %zu: raw size %u (chunk size %u)", i,
					 c->raw_size, f->chunk_size);
		if (c->raw_offset != raw_next)
			return snap_errf(err, errlen, -EBADMSG,
					 "chunk %zu: image offset %" PRIu64 ", expected %" PRIu64, i, c->raw_offset, raw_next);
		if (c->file_offset % SNAP_PAGE || c->file_offset < file_next || c->file_offset > data_end ||
		    c->stored_size > data_end - c->file_offset)
			return snap_errf(err, errlen, -EBADMSG,
					 "chunk %zu: stored bytes %" PRIu64 "+%u outside the data section or out of order",
					 i, c->file_offset, c->stored_size);
		if (c->stored_size == 0 || c->stored_size > snap_codec_bound(c->raw_size))
			return snap_errf(err, errlen, -EBADMSG, "chunk %zu: stored size %u for %u raw bytes",
					 i, c->stored_size, c->raw_size);
		switch (c->codec) {
		case SNAP_CODEC_RAW:
		case SNAP_CODEC_ZSTD:
			if (c->width || c->plane_mask || c->flags)
				return snap_errf(err, errlen, -EBADMSG, "chunk %zu: plane fields set on a %s chunk",
						 i, snap_codec_name(c->codec));
			if (c->codec == SNAP_CODEC_RAW && c->stored_size != c->raw_size)
				return snap_errf(err, errlen, -EBADMSG, "chunk %zu: raw chunk of %u bytes stores %u",
						 i, c->raw_size, c->stored_size);
			break;
		case SNAP_CODEC_PLANES:
		case SNAP_CODEC_HPLANES:
			if ((c->width != 2 && c->width != 4) || c->plane_mask >> c->width ||
			    c->flags & ~SNAP_CHUNK_ROTATE)
				return snap_errf(err, errlen, -EBADMSG, "chunk %zu: bad plane parameters (width %u mask %#x flags %#x)",
						 i, c->width, c->plane_mask, c->flags);
			break;
		}
		if (c->stored_size > f->max_stored)
			f->max_stored = c->stored_size;
		raw_next += c->raw_size;
		file_next = c->file_offset + c->stored_size;
		while (ti < f->n_tensors && (f->tensors[ti].nbytes == 0 ||
			f->tensors[ti].offset + f->tensors[ti].nbytes <= c->raw_offset))
			ti++;
		f->chunk_tensor[i] = ti < f->n_tensors && f->tensors[ti].offset < raw_next ? ti : SIZE_MAX;
	}
	if (raw_next != f->image_size)
		return snap_errf(err, errlen, -EBADMSG, "chunk table covers %" PRIu64 " bytes of a %" PRIu64 "-byte image",
				 raw_next, f->image_size);
	return 0;
}

static int parse_meta(snap_file *f, const uint8_t *buf, char *err, size_t errlen)
{
	json_error_t je;
	f->meta = malloc(f->meta_size + 1);
	if (!f->meta)
		return snap_errf(err, errlen, -ENOMEM, "out of memory for metadata");
	memcpy(f->meta, buf, f->meta_size);
	f->meta[f->meta_size] = 0;
	json_t *j = json_loadb(f->meta, f->meta_size, JSON_REJECT_DUPLICATES, &je);
	if (!j || !json_is_object(j)) {
		json_decref(j);
		return snap_errf(err, errlen, -EBADMSG, "metadata: not a JSON object (%s)", j ? "" : je.text);
	}
	const char *kind = json_string_value(json_object_get(j, "kind"));
	snprintf(f->kind, sizeof f->kind, "%s", kind ? kind : "unknown");
	if (f->att_size) {
		/* the attachment's checksum lives in the metadata (the header has no room left) */
		const char *hx = json_string_value(json_object_get(json_object_get(j, "attachment"), "xxh3"));
		char *end = NULL;
		f->att_xxh3 = hx && strlen(hx) == 16 ? strtoull(hx, &end, 16) : 0;
		if (!hx || strlen(hx) != 16 || !end || *end) {
			json_decref(j);
			return snap_errf(err, errlen, -EBADMSG,
					 "metadata: \"attachment\": {\"xxh3\": 16 hex digits} missing or malformed");
		}
	}
	json_decref(j);
	return 0;
}

static int read_section(snap_file *f, snap_read_fn rd, void *ctx, uint64_t off, uint64_t len,
			uint64_t want_hash, const char *what, uint8_t **out, char *err, size_t errlen)
{
	uint8_t *buf = malloc(len ? len : 1);
	if (!buf)
		return snap_errf(err, errlen, -ENOMEM, "out of memory for the %s (%" PRIu64 " bytes)", what, len);
	int rc = rd(ctx, off, len, buf);
	if (rc) {
		free(buf);
		return snap_errf(err, errlen, rc, "reading the %s: %s", what, strerror(-rc));
	}
	if (XXH3_64bits(buf, len) != want_hash) {
		free(buf);
		return snap_errf(err, errlen, -EBADMSG, "%s corrupt (checksum mismatch)", what);
	}
	*out = buf;
	return 0;
}

int snap_parse(snap_file *f, snap_read_fn rd, void *ctx, char *err, size_t errlen)
{
	uint8_t h[SNAP_HEADER_SIZE];
	uint8_t *sec = NULL;
	int rc;

	if (f->file_size < SNAP_HEADER_SIZE)
		return snap_errf(err, errlen, -EBADMSG, "not a thaw snapshot: %" PRIu64 " bytes is smaller than a header",
				 f->file_size);
	if ((rc = rd(ctx, 0, SNAP_HEADER_SIZE, h)))
		return snap_errf(err, errlen, rc, "reading the header: %s", strerror(-rc));
	if (memcmp(h, SNAP_MAGIC, 8) != 0)
		return snap_errf(err, errlen, -EBADMSG, "not a thaw snapshot (bad magic)");
	if (snap_rd16(h + 8) != SNAP_VERSION_MAJOR)
		return snap_errf(err, errlen, -ENOTSUP, "unsupported snapshot version %u.%u (this thaw reads %d.x)",
				 snap_rd16(h + 8), snap_rd16(h + 10), SNAP_VERSION_MAJOR);
	if (snap_rd64(h + 152) != XXH3_64bits(h, 152))
		return snap_errf(err, errlen, -EBADMSG, "header corrupt (checksum mismatch)");
	uint64_t fsz = snap_rd64(h + 16);
	if (snap_rd32(h + 12) != SNAP_HEADER_SIZE)
		return snap_errf(err, errlen, -EBADMSG, "header size %u, expected %d", snap_rd32(h + 12), SNAP_HEADER_SIZE);
	if (fsz > f->file_size)
		return snap_errf(err, errlen, -EBADMSG, "file truncated: header says %" PRIu64 " bytes, file has %" PRIu64,
				 fsz, f->file_size);
	if (fsz < f->file_size)
		return snap_errf(err, errlen, -EBADMSG, "file has %" PRIu64 " bytes, header says %" PRIu64 " (trailing data)",
				 f->file_size, fsz);
	f->image_size = snap_rd64(h + 24);
	f->n_tensors = snap_rd32(h + 32);
	f->n_chunks = snap_rd32(h + 36);
	f->chunk_size = snap_rd32(h + 40);
	f->align = snap_rd32(h + 44);
	f->data_offset = snap_rd64(h + 48);
	f->data_size = snap_rd64(h + 56);
	f->index_offset = snap_rd64(h + 64);
	f->index_size = snap_rd64(h + 72);
	f->chunktab_offset = snap_rd64(h + 80);
	f->chunktab_size = snap_rd64(h + 88);
	f->meta_offset = snap_rd64(h + 96);
	f->meta_size = snap_rd64(h + 104);
	uint64_t meta_end = f->file_size;   /* without an attachment the metadata ends the file */
	if (snap_rd16(h + 10) == 0) {
		if (snap_rd64(h + 136) || snap_rd64(h + 144))
			return snap_errf(err, errlen, -EBADMSG, "header: reserved fields not zero");
	} else {
		/* 1.1: an attachment after the metadata (offset, size; 0/0 when none) */
		f->att_offset = snap_rd64(h + 136);
		f->att_size = snap_rd64(h + 144);
		if (f->att_size == 0 ? f->att_offset != 0
				     : f->att_size > SNAP_MAX_ATTACHMENT || f->att_offset < f->meta_offset ||
				       !in_file(f->att_offset, f->att_size, f->file_size) ||
				       f->att_offset + f->att_size != f->file_size ||
				       f->att_offset != snap_round_up(f->meta_offset + f->meta_size, 8))
			return snap_errf(err, errlen, -EBADMSG, "header: attachment outside the file");
		if (f->att_size)
			meta_end = f->meta_offset + f->meta_size;   /* bounded by in_file below */
	}
	if (f->n_tensors > SNAP_MAX_TENSORS || f->n_chunks > SNAP_MAX_CHUNKS)
		return snap_errf(err, errlen, -EBADMSG, "header: absurd counts (%zu tensors, %zu chunks)",
				 f->n_tensors, f->n_chunks);
	if (f->chunk_size < SNAP_MIN_CHUNK || f->chunk_size > SNAP_MAX_CHUNK || f->chunk_size % SNAP_PAGE)
		return snap_errf(err, errlen, -EBADMSG, "header: chunk size %u out of range", f->chunk_size);
	if (f->align < 8 || f->align > SNAP_PAGE || (f->align & (f->align - 1)))
		return snap_errf(err, errlen, -EBADMSG, "header: tensor alignment %u", f->align);
	if (f->image_size > (uint64_t)f->n_chunks * f->chunk_size)
		return snap_errf(err, errlen, -EBADMSG, "header: image of %" PRIu64 " bytes cannot fit %zu chunks",
				 f->image_size, f->n_chunks);
	if (f->data_offset != SNAP_DATA_OFFSET || !in_file(f->data_offset, f->data_size, f->file_size))
		return snap_errf(err, errlen, -EBADMSG, "header: data section outside the file");
	if (f->index_offset != snap_round_up(f->data_offset + f->data_size, 8) ||
	    !in_file(f->index_offset, f->index_size, f->file_size) || f->index_size > SNAP_MAX_INDEX)
		return snap_errf(err, errlen, -EBADMSG, "header: tensor index outside the file");
	if (f->chunktab_offset != snap_round_up(f->index_offset + f->index_size, 8) ||
	    !in_file(f->chunktab_offset, f->chunktab_size, f->file_size) ||
	    f->chunktab_size != (uint64_t)f->n_chunks * SNAP_CHUNK_REC)
		return snap_errf(err, errlen, -EBADMSG, "header: chunk table outside the file or of the wrong size");
	if (f->meta_offset != snap_round_up(f->chunktab_offset + f->chunktab_size, 8) ||
	    !in_file(f->meta_offset, f->meta_size, f->file_size) || f->meta_size > SNAP_MAX_META ||
	    f->meta_offset + f->meta_size != meta_end)
		return snap_errf(err, errlen, -EBADMSG, "header: metadata outside the file");
	if (f->index_size < (uint64_t)f->n_tensors * SNAP_TENSOR_REC_MIN)
		return snap_errf(err, errlen, -EBADMSG, "header: tensor index too small for %zu tensors", f->n_tensors);

	if ((rc = read_section(f, rd, ctx, f->index_offset, f->index_size, snap_rd64(h + 112),
			       "tensor index", &sec, err, errlen)))
		return rc;
	rc = parse_index(f, sec, err, errlen);
	free(sec);
	if (rc)
		return rc;
	if ((rc = read_section(f, rd, ctx, f->chunktab_offset, f->chunktab_size, snap_rd64(h + 120),
			       "chunk table", &sec, err, errlen)))
		return rc;
	rc = parse_chunks(f, sec, err, errlen);
	free(sec);
	if (rc)
		return rc;
	if ((rc = read_section(f, rd, ctx, f->meta_offset, f->meta_size, snap_rd64(h + 128),
			       "metadata", &sec, err, errlen)))
		return rc;
	rc = parse_meta(f, sec, err, errlen);
	free(sec);
	return rc;
}

/* ---- open / close / accessors ---- */

static int rd_fd(void *ctx, uint64_t off, size_t len, void *buf)
{
	int rc = snap_pread_full(*(int *)ctx, buf, len, off);
	return rc == -ENODATA ? -EIO : rc;
}

static int rd_mem(void *ctx, uint64_t off, size_t len, void *buf)
{
	snap_file *f = ctx;
	if (!in_file(off, len, f->file_size))
		return -EIO;
	memcpy(buf, f->mem + off, len);
	return 0;
}

int snap_open_regular(const char *path, int extra_flags)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | extra_flags);
	if (fd < 0)
		return -errno;
	int rc, fl;
	if (fstat(fd, &st) < 0)
		rc = -errno;
	else if (!S_ISREG(st.st_mode))
		rc = -EINVAL;
	else if ((fl = fcntl(fd, F_GETFL)) < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0)
		rc = -errno;
	else
		return fd;
	close(fd);
	return rc;
}

int snap_open(snap_file **out, const char *path, char *err, size_t errlen)
{
	char msg[512];
	struct stat st;
	int rc;
	snap_file *f = calloc(1, sizeof *f);

	*out = NULL;
	if (!f)
		return snap_errf(err, errlen, -ENOMEM, "out of memory");
	f->fd = snap_open_regular(path, 0);
	if (f->fd < 0) {
		rc = f->fd;
		free(f);
		if (rc == -EINVAL)
			return snap_errf(err, errlen, rc, "%s: not a regular file", path);
		return snap_errf(err, errlen, rc, "%s: %s", path, strerror(-rc));
	}
	f->path = strdup(path);
	if (fstat(f->fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		rc = snap_errf(err, errlen, -EINVAL, "%s: not a regular file", path);
		goto fail;
	}
	f->file_size = (uint64_t)st.st_size;
	if ((rc = snap_parse(f, rd_fd, &f->fd, msg, sizeof msg))) {
		snap_errf(err, errlen, rc, "%s: %s", path, msg);
		goto fail;
	}
	*out = f;
	return 0;
fail:
	snap_close(f);
	return rc;
}

int snap_open_mem(snap_file **out, const void *buf, size_t len, char *err, size_t errlen)
{
	snap_file *f = calloc(1, sizeof *f);
	*out = NULL;
	if (!f)
		return snap_errf(err, errlen, -ENOMEM, "out of memory");
	f->fd = -1;
	f->mem = buf;
	f->file_size = len;
	f->path = strdup("(memory)");
	int rc = snap_parse(f, rd_mem, f, err, errlen);
	if (rc) {
		snap_close(f);
		return rc;
	}
	*out = f;
	return 0;
}

void snap_close(snap_file *f)
{
	if (!f)
		return;
	if (f->fd >= 0)
		close(f->fd);
	free(f->path);
	free(f->tensors);
	free(f->by_name);
	free(f->names);
	free(f->chunks);
	free(f->chunk_tensor);
	free(f->meta);
	free(f);
}

const char *snap_path(const snap_file *f) { return f->path; }
uint64_t snap_file_size(const snap_file *f) { return f->file_size; }
uint64_t snap_image_size(const snap_file *f) { return f->image_size; }
uint32_t snap_image_align(const snap_file *f) { return f->align; }
uint32_t snap_chunk_size(const snap_file *f) { return f->chunk_size; }
size_t snap_tensor_count(const snap_file *f) { return f->n_tensors; }
size_t snap_chunk_count(const snap_file *f) { return f->n_chunks; }
const char *snap_metadata_json(const snap_file *f) { return f->meta; }

int snap_attachment_read(const snap_file *f, void **buf, size_t *len, char *err, size_t errlen)
{
	*buf = NULL;
	*len = 0;
	if (!f->att_size)
		return snap_errf(err, errlen, -ENOENT, "the snapshot has no attachment");
	uint8_t *b = malloc(f->att_size + 1);
	if (!b)
		return snap_errf(err, errlen, -ENOMEM, "out of memory for the attachment (%" PRIu64 " bytes)",
				 f->att_size);
	int rc = f->fd >= 0 ? snap_pread_full(f->fd, b, f->att_size, f->att_offset)
			    : (memcpy(b, f->mem + f->att_offset, f->att_size), 0);
	if (rc) {
		free(b);
		return snap_errf(err, errlen, rc == -ENODATA ? -EIO : rc, "%s: reading the attachment: %s",
				 f->path, strerror(rc == -ENODATA ? EIO : -rc));
	}
	if (XXH3_64bits(b, f->att_size) != f->att_xxh3) {
		free(b);
		return snap_errf(err, errlen, -EBADMSG, "%s: attachment corrupt (checksum mismatch)", f->path);
	}
	b[f->att_size] = 0;
	*buf = b;
	*len = f->att_size;
	return 0;
}
const char *snap_kind(const snap_file *f) { return f->kind; }

const snap_tensor *snap_tensor_at(const snap_file *f, size_t i)
{
	return i < f->n_tensors ? &f->tensors[i] : NULL;
}

const snap_chunk *snap_chunk_at(const snap_file *f, size_t i)
{
	return i < f->n_chunks ? &f->chunks[i] : NULL;
}

const snap_tensor *snap_tensor_find(const snap_file *f, const char *name)
{
	size_t lo = 0, hi = f->n_tensors;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(f->tensors[f->by_name[mid]].name, name);
		if (c == 0)
			return &f->tensors[f->by_name[mid]];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

const char *snap_chunk_tensor(const snap_file *f, size_t i)
{
	if (i >= f->n_chunks || f->chunk_tensor[i] == SIZE_MAX)
		return "(padding)";
	return f->tensors[f->chunk_tensor[i]].name;
}

void snap_chunk_where(const snap_file *f, size_t i, char *buf, size_t len)
{
	const snap_chunk *c = &f->chunks[i];
	snprintf(buf, len, "chunk %zu (tensor %s, image bytes %" PRIu64 "..%" PRIu64 ", file offset %" PRIu64 ")",
		 i, snap_chunk_tensor(f, i), c->raw_offset, c->raw_offset + c->raw_size, c->file_offset);
}

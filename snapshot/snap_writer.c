/* snap_writer.c — writes a .thaw: lays tensors out in the image (each aligned to 256 bytes),
 * cuts the image into fixed-size chunks, encodes chunks on N threads (snap_codec.c) and
 * writes them in order at 4 KiB-aligned offsets, then the tensor index, chunk table and
 * metadata, and last the header; all into a temporary file that is fsync'ed and renamed.
 * Chunk bytes depend only on the image, so the output does not depend on the thread count. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <jansson.h>
#include <xxhash.h>
#include "snapshot/snap_int.h"
#include "snapshot/snap_fmt.h"
#include "snapshot/snap_pack.h"

typedef struct wtensor {
	snap_tensor t;             /* name owned */
	const uint8_t *data;
	uint8_t *owned;            /* copy, if the caller asked for one */
} wtensor;

struct snap_writer {
	char *path;
	snap_writer_opts o;
	wtensor *t;
	size_t n, cap;
	uint64_t image_size;
	uint32_t *names;           /* open-addressed set of added names: index + 1, 0 = empty */
	size_t names_cap;          /* a power of two, at least twice n */
};

typedef struct wslot {
	uint8_t *buf;              /* encoded payload */
	snap_chunk ch;
	int state;                 /* 0 free, 1 encoding, 2 ready */
	int rc;
	char err[200];
} wslot;

typedef struct wjob {
	snap_writer *w;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	size_t n_chunks, next_claim, next_write;
	wslot *slots;
	size_t n_slots;
	int failed;
	uint64_t done_raw;
} wjob;

static int lvl(const snap_writer *w) { return w->o.zstd_level ? w->o.zstd_level : 3; }

int snap_writer_open(snap_writer **out, const char *path, const snap_writer_opts *o,
		     char *err, size_t errlen)
{
	snap_writer *w = calloc(1, sizeof *w);
	*out = NULL;
	if (!w || !(w->path = strdup(path))) {
		free(w);
		return snap_errf(err, errlen, -ENOMEM, "out of memory");
	}
	if (o)
		w->o = *o;
	if (!w->o.chunk_size)
		w->o.chunk_size = SNAP_DEFAULT_CHUNK;
	if (w->o.chunk_size < SNAP_MIN_CHUNK || w->o.chunk_size > SNAP_MAX_CHUNK || w->o.chunk_size % SNAP_PAGE) {
		snap_errf(err, errlen, -EINVAL, "chunk size %u: must be a multiple of 4096 between 4 KiB and 64 MiB",
			  w->o.chunk_size);
		snap_writer_abort(w);
		return -EINVAL;
	}
	if (w->o.threads <= 0)
		w->o.threads = snap_default_threads();
	*out = w;
	return 0;
}

size_t snap_writer_count(const snap_writer *w) { return w->n; }

/* the process umask, read without changing it (umask(2) would change it for every thread
 * for a moment); 077 when /proc cannot tell */
static mode_t current_umask(void)
{
	unsigned um = 077;
	char line[128];
	FILE *f = fopen("/proc/self/status", "r");
	if (!f)
		return um;
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "Umask: %o", &um) == 1)
			break;
	fclose(f);
	return (mode_t)(um & 0777);
}

mode_t snap_new_file_mode(const char *path)
{
	char dir[4096];
	struct stat st;
	mode_t mode = 0666 & ~current_umask();
	snprintf(dir, sizeof dir, "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash == dir)
		dir[1] = 0;
	else if (slash)
		*slash = 0;
	else
		snprintf(dir, sizeof dir, ".");
	if (stat(dir, &st) == 0) {
		if (!(st.st_mode & S_IXGRP))
			mode &= ~(mode_t)0070;
		if (!(st.st_mode & S_IXOTH))
			mode &= ~(mode_t)0007;
	}
	return mode;
}

/* the slot of name in w's name set: where it is, or the empty slot where it would go */
static size_t name_slot(const snap_writer *w, const char *name, size_t len)
{
	size_t mask = w->names_cap - 1, i = (size_t)XXH3_64bits(name, len) & mask;
	while (w->names[i] && strcmp(w->t[w->names[i] - 1].t.name, name) != 0)
		i = (i + 1) & mask;
	return i;
}

/* keeps the name set under half full for one more name; -ENOMEM */
static int names_reserve(snap_writer *w)
{
	if (w->names_cap >= 2 * (w->n + 1))
		return 0;
	size_t nc = w->names_cap ? w->names_cap * 2 : 128;
	uint32_t *old = w->names;
	size_t old_cap = w->names_cap;
	if (!(w->names = calloc(nc, sizeof *w->names))) {
		w->names = old;
		return -ENOMEM;
	}
	w->names_cap = nc;
	for (size_t i = 0; i < old_cap; i++)
		if (old[i]) {
			const char *nm = w->t[old[i] - 1].t.name;
			w->names[name_slot(w, nm, strlen(nm))] = old[i];
		}
	free(old);
	return 0;
}

int snap_writer_add(snap_writer *w, const char *name, snap_dtype dt, uint32_t ndim,
		    const uint64_t *shape, const void *data, uint64_t nbytes, int copy,
		    char *err, size_t errlen)
{
	size_t nl = name ? strlen(name) : 0;
	if (nl == 0 || nl > SNAP_MAX_NAME)
		return snap_errf(err, errlen, -EINVAL, "tensor name of %zu bytes (1..%d)", nl, SNAP_MAX_NAME);
	if (strcmp(name, "__metadata__") == 0)   /* safetensors' reserved key: unpack could not write it */
		return snap_errf(err, errlen, -EINVAL, "tensor name __metadata__ is reserved");
	if (snap_dtype_size(dt) == 0)
		return snap_errf(err, errlen, -EINVAL, "tensor %s: invalid dtype", name);
	if (ndim > SNAP_MAX_DIMS)
		return snap_errf(err, errlen, -EINVAL, "tensor %s: %u dimensions (max %d)", name, ndim, SNAP_MAX_DIMS);
	uint64_t numel = 1;
	for (uint32_t d = 0; d < ndim; d++) {
		if (shape[d] && numel > UINT64_MAX / 16 / shape[d])
			return snap_errf(err, errlen, -EINVAL, "tensor %s: shape overflows", name);
		numel *= shape[d];
	}
	if (numel * snap_dtype_size(dt) != nbytes)
		return snap_errf(err, errlen, -EINVAL, "tensor %s: %" PRIu64 " bytes do not match shape x %s",
				 name, nbytes, snap_dtype_name(dt));
	if (nbytes && !data)
		return snap_errf(err, errlen, -EINVAL, "tensor %s: no data", name);
	if (w->n >= SNAP_MAX_TENSORS)
		return snap_errf(err, errlen, -E2BIG, "more than %u tensors", SNAP_MAX_TENSORS);
	if (names_reserve(w) < 0)
		return snap_errf(err, errlen, -ENOMEM, "out of memory");
	size_t slot = name_slot(w, name, nl);
	if (w->names[slot])
		return snap_errf(err, errlen, -EINVAL, "tensor %s added twice", name);
	if (w->n == w->cap) {
		size_t nc = w->cap ? w->cap * 2 : 64;
		wtensor *nt = realloc(w->t, nc * sizeof *nt);
		if (!nt)
			return snap_errf(err, errlen, -ENOMEM, "out of memory");
		w->t = nt;
		w->cap = nc;
	}
	wtensor *x = &w->t[w->n];
	memset(x, 0, sizeof *x);
	if (!(x->t.name = strdup(name)))
		return snap_errf(err, errlen, -ENOMEM, "out of memory");
	if (copy && nbytes) {
		if (!(x->owned = malloc(nbytes))) {
			free((char *)x->t.name);
			return snap_errf(err, errlen, -ENOMEM, "out of memory for tensor %s", name);
		}
		memcpy(x->owned, data, nbytes);
		data = x->owned;
	}
	x->data = data;
	x->t.dtype = dt;
	x->t.dtype_name = snap_dtype_name(dt);
	x->t.ndim = ndim;
	for (uint32_t d = 0; d < ndim; d++)
		x->t.shape[d] = shape[d];
	x->t.nbytes = nbytes;
	w->image_size = snap_round_up(w->image_size, SNAP_DEFAULT_ALIGN);
	x->t.offset = w->image_size;
	w->image_size += nbytes;
	w->names[slot] = (uint32_t)(++w->n);
	return 0;
}

char *snap_writer_dtype_summary(const snap_writer *w)
{
	json_t *j = json_object();
	for (size_t i = 0; j && i < w->n; i++) {
		json_t *e = json_object_get(j, w->t[i].t.dtype_name);
		if (!e) {
			e = json_pack("{s:I,s:I}", "tensors", (json_int_t)0, "bytes", (json_int_t)0);
			json_object_set_new(j, w->t[i].t.dtype_name, e);
		}
		json_object_set_new(e, "tensors", json_integer(json_integer_value(json_object_get(e, "tensors")) + 1));
		json_object_set_new(e, "bytes", json_integer(json_integer_value(json_object_get(e, "bytes")) +
							    (json_int_t)w->t[i].t.nbytes));
	}
	char *s = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(j);
	return s;
}

void snap_writer_abort(snap_writer *w)
{
	if (!w)
		return;
	for (size_t i = 0; i < w->n; i++) {
		free((char *)w->t[i].t.name);
		free(w->t[i].owned);
	}
	free(w->t);
	free(w->names);
	free(w->path);
	free(w);
}

/* gather copies image bytes [off, off+len) into buf (zeros in padding) and returns the
 * dtype holding most of those bytes. */
static snap_dtype gather(const snap_writer *w, uint64_t off, size_t len, uint8_t *buf)
{
	uint64_t per[SNAP_DTYPE_COUNT] = {0};
	uint64_t end = off + len;
	memset(buf, 0, len);
	/* first tensor ending after off */
	size_t lo = 0, hi = w->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (w->t[mid].t.offset + w->t[mid].t.nbytes <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (size_t i = lo; i < w->n && w->t[i].t.offset < end; i++) {
		const snap_tensor *t = &w->t[i].t;
		uint64_t a = t->offset > off ? t->offset : off;
		uint64_t b = t->offset + t->nbytes < end ? t->offset + t->nbytes : end;
		if (b <= a)
			continue;
		memcpy(buf + (a - off), w->t[i].data + (a - t->offset), b - a);
		per[t->dtype] += b - a;
	}
	snap_dtype best = SNAP_DTYPE_U8;
	for (int d = 1; d < SNAP_DTYPE_COUNT; d++)
		if (per[d] > per[best])
			best = (snap_dtype)d;
	return best;
}

static void *encode_worker(void *arg)
{
	wjob *j = arg;
	snap_writer *w = j->w;
	uint8_t *raw = malloc(w->o.chunk_size);
	snap_codec_ctx *cc = snap_codec_ctx_new(w->o.chunk_size, lvl(w));

	pthread_mutex_lock(&j->mu);
	if (!raw || !cc) {
		j->failed = -ENOMEM;
		pthread_cond_broadcast(&j->cv);
	}
	while (!j->failed && j->next_claim < j->n_chunks) {
		size_t i = j->next_claim;
		wslot *s = &j->slots[i % j->n_slots];
		if (s->state != 0 || i >= j->next_write + j->n_slots) {
			pthread_cond_wait(&j->cv, &j->mu);
			continue;
		}
		j->next_claim++;
		s->state = 1;
		pthread_mutex_unlock(&j->mu);

		uint64_t off = (uint64_t)i * w->o.chunk_size;
		size_t len = (size_t)(w->image_size - off < w->o.chunk_size ? w->image_size - off : w->o.chunk_size);
		snap_dtype dt = gather(w, off, len, raw);
		memset(&s->ch, 0, sizeof s->ch);
		s->rc = snap_codec_encode(cc, raw, len, dt, s->buf, &s->ch);
		s->ch.raw_offset = off;
		s->ch.xxh3 = XXH3_64bits(raw, len);
		if (s->rc)
			snprintf(s->err, sizeof s->err, "encoding chunk %zu failed", i);

		pthread_mutex_lock(&j->mu);
		s->state = 2;
		pthread_cond_broadcast(&j->cv);
	}
	pthread_mutex_unlock(&j->mu);
	free(raw);
	snap_codec_ctx_free(cc);
	return NULL;
}

int snap_writer_finish(snap_writer *w, const char *meta_json, snap_pack_stats *st,
		       char *err, size_t errlen)
{
	char tmp[4200];
	int fd = -1, rc = 0;
	wjob j;
	pthread_t *th = NULL;
	int n_th = 0;
	snap_chunk *chunks = NULL;
	uint8_t *index = NULL, *ctab = NULL;
	size_t index_len = 0, ctab_len = 0, meta_len;
	double t0 = snap_now();
	json_error_t je;
	json_t *mj;
	char *meta_owned = NULL;   /* the metadata with "attachment" added */

	memset(&j, 0, sizeof j);
	if (st)
		memset(st, 0, sizeof *st);
	if (!meta_json || !(mj = json_loads(meta_json, 0, &je)) || !json_is_object(mj)) {
		if (meta_json)
			json_decref(mj);
		snap_writer_abort(w);
		return snap_errf(err, errlen, -EINVAL, "snapshot metadata must be a JSON object");
	}
	if (w->o.attachment_len) {
		char hx[17];
		snprintf(hx, sizeof hx, "%016llx",
			 (unsigned long long)XXH3_64bits(w->o.attachment, w->o.attachment_len));
		if (w->o.attachment_len > SNAP_MAX_ATTACHMENT ||
		    json_object_set_new(mj, "attachment", json_pack("{s:s,s:I}", "xxh3", hx, "bytes",
								   (json_int_t)w->o.attachment_len)) ||
		    !(meta_owned = json_dumps(mj, JSON_COMPACT))) {
			json_decref(mj);
			snap_writer_abort(w);
			return snap_errf(err, errlen, w->o.attachment_len > SNAP_MAX_ATTACHMENT ? -E2BIG : -ENOMEM,
					 "attachment of %zu bytes: too large or out of memory",
					 w->o.attachment_len);
		}
		meta_json = meta_owned;
	}
	json_decref(mj);
	meta_len = strlen(meta_json);
	if (meta_len > SNAP_MAX_META) {
		free(meta_owned);
		snap_writer_abort(w);
		return snap_errf(err, errlen, -E2BIG, "metadata of %zu bytes (max %u)", meta_len, SNAP_MAX_META);
	}
	j.w = w;
	j.n_chunks = (size_t)((w->image_size + w->o.chunk_size - 1) / w->o.chunk_size);
	if (j.n_chunks > SNAP_MAX_CHUNKS) {
		rc = snap_errf(err, errlen, -E2BIG, "image of %" PRIu64 " bytes needs %zu chunks (max %u): use larger chunks",
			       w->image_size, j.n_chunks, SNAP_MAX_CHUNKS);
		goto out;
	}
	pthread_mutex_init(&j.mu, NULL);
	pthread_cond_init(&j.cv, NULL);
	n_th = w->o.threads < (int)j.n_chunks ? w->o.threads : (int)j.n_chunks;
	j.n_slots = (size_t)n_th * 2 + 2;
	j.slots = calloc(j.n_slots, sizeof *j.slots);
	chunks = calloc(j.n_chunks ? j.n_chunks : 1, sizeof *chunks);
	th = calloc(n_th ? (size_t)n_th : 1, sizeof *th);
	if (!j.slots || !chunks || !th) {
		rc = snap_errf(err, errlen, -ENOMEM, "out of memory");
		goto out_sync;
	}
	for (size_t s = 0; s < j.n_slots; s++)
		if (!(j.slots[s].buf = malloc(snap_codec_bound(w->o.chunk_size)))) {
			rc = snap_errf(err, errlen, -ENOMEM, "out of memory for chunk buffers");
			goto out_sync;
		}

	snprintf(tmp, sizeof tmp, "%s.tmp.XXXXXX", w->path);
	fd = mkstemp(tmp);
	if (fd < 0) {
		rc = snap_errf(err, errlen, -errno, "%s: %s", tmp, strerror(errno));
		goto out_sync;
	}
	fchmod(fd, snap_new_file_mode(w->path));
	for (int i = 0; i < n_th; i++) {
		if (pthread_create(&th[i], NULL, encode_worker, &j)) {
			pthread_mutex_lock(&j.mu);
			j.failed = -EAGAIN;
			pthread_cond_broadcast(&j.cv);
			pthread_mutex_unlock(&j.mu);
			n_th = i;
			rc = snap_errf(err, errlen, -EAGAIN, "cannot start compression threads");
			break;
		}
	}

	/* write chunks in order as they become ready */
	uint64_t foff = SNAP_DATA_OFFSET, data_end = SNAP_DATA_OFFSET;
	pthread_mutex_lock(&j.mu);
	while (!rc && j.next_write < j.n_chunks) {
		wslot *s = &j.slots[j.next_write % j.n_slots];
		if (j.failed) {
			rc = snap_errf(err, errlen, j.failed, "compression failed: %s", strerror(-j.failed));
			break;
		}
		if (s->state != 2) {
			pthread_cond_wait(&j.cv, &j.mu);
			continue;
		}
		pthread_mutex_unlock(&j.mu);
		if (s->rc) {
			rc = snap_errf(err, errlen, s->rc, "%s", s->err);
		} else {
			snap_chunk *c = &chunks[j.next_write];
			*c = s->ch;
			c->file_offset = foff;
			if ((rc = snap_pwrite_full(fd, s->buf, c->stored_size, foff)))
				snap_errf(err, errlen, rc, "%s: write: %s", tmp, strerror(-rc));
			data_end = foff + c->stored_size;
			foff = snap_round_up(data_end, SNAP_PAGE);
			if (st) {
				st->codec_chunks[c->codec]++;
				st->codec_raw[c->codec] += c->raw_size;
			}
			j.done_raw += c->raw_size;
		}
		if (!rc && w->o.progress)
			w->o.progress(w->o.progress_user, "compressing", j.done_raw, w->image_size);
		pthread_mutex_lock(&j.mu);
		s->state = 0;
		j.next_write++;
		if (rc)
			j.failed = rc;
		pthread_cond_broadcast(&j.cv);
	}
	if (rc && !j.failed)
		j.failed = rc;
	pthread_cond_broadcast(&j.cv);
	pthread_mutex_unlock(&j.mu);
	for (int i = 0; i < n_th; i++)
		pthread_join(th[i], NULL);
	if (rc)
		goto out_sync;
	if (!j.n_chunks && w->o.progress)
		w->o.progress(w->o.progress_user, "compressing", 0, 0);

	/* sections and header */
	snap_tensor *ts = malloc((w->n ? w->n : 1) * sizeof *ts);
	if (!ts) {
		rc = snap_errf(err, errlen, -ENOMEM, "out of memory");
		goto out_sync;
	}
	for (size_t i = 0; i < w->n; i++)
		ts[i] = w->t[i].t;
	index = snap_fmt_index(ts, w->n, &index_len);
	free(ts);
	ctab = snap_fmt_chunktab(chunks, j.n_chunks, &ctab_len);
	if (!index || !ctab) {
		rc = snap_errf(err, errlen, -ENOMEM, "out of memory");
		goto out_sync;
	}
	snap_fmt_hdr h = {
		.image_size = w->image_size, .n_tensors = (uint32_t)w->n, .n_chunks = (uint32_t)j.n_chunks,
		.chunk_size = w->o.chunk_size, .align = SNAP_DEFAULT_ALIGN,
		.data_offset = SNAP_DATA_OFFSET, .data_size = data_end - SNAP_DATA_OFFSET,
	};
	h.index_offset = snap_round_up(data_end, 8);
	h.index_size = index_len;
	h.chunktab_offset = snap_round_up(h.index_offset + index_len, 8);
	h.chunktab_size = ctab_len;
	h.meta_offset = snap_round_up(h.chunktab_offset + ctab_len, 8);
	h.meta_size = meta_len;
	h.file_size = h.meta_offset + meta_len;
	if (w->o.attachment_len) {
		h.att_offset = snap_round_up(h.file_size, 8);
		h.att_size = w->o.attachment_len;
		h.file_size = h.att_offset + h.att_size;
	}
	h.index_xxh3 = XXH3_64bits(index, index_len);
	h.chunktab_xxh3 = XXH3_64bits(ctab, ctab_len);
	h.meta_xxh3 = XXH3_64bits(meta_json, meta_len);
	uint8_t hb[SNAP_HEADER_SIZE];
	snap_fmt_header(&h, hb);
	static const uint8_t zeros[8];
	if ((rc = snap_pwrite_full(fd, zeros, h.index_offset - data_end, data_end)) ||
	    (rc = snap_pwrite_full(fd, index, index_len, h.index_offset)) ||
	    (rc = snap_pwrite_full(fd, zeros, h.chunktab_offset - h.index_offset - index_len, h.index_offset + index_len)) ||
	    (rc = snap_pwrite_full(fd, ctab, ctab_len, h.chunktab_offset)) ||
	    (rc = snap_pwrite_full(fd, zeros, h.meta_offset - h.chunktab_offset - ctab_len, h.chunktab_offset + ctab_len)) ||
	    (rc = snap_pwrite_full(fd, meta_json, meta_len, h.meta_offset)) ||
	    (h.att_size && (rc = snap_pwrite_full(fd, zeros, h.att_offset - h.meta_offset - meta_len,
						  h.meta_offset + meta_len))) ||
	    (h.att_size && (rc = snap_pwrite_full(fd, w->o.attachment, h.att_size, h.att_offset))) ||
	    (rc = ftruncate(fd, (off_t)h.file_size) ? -errno : 0) ||
	    (rc = fsync(fd) ? -errno : 0) ||
	    (rc = snap_pwrite_full(fd, hb, sizeof hb, 0)) ||
	    (rc = fsync(fd) ? -errno : 0)) {
		snap_errf(err, errlen, rc, "%s: write: %s", tmp, strerror(-rc));
		goto out_sync;
	}
	if (close(fd) < 0) {
		fd = -1;
		rc = snap_errf(err, errlen, -errno, "%s: close: %s", tmp, strerror(errno));
		goto out_sync;
	}
	fd = -1;
	if (rename(tmp, w->path) < 0) {
		rc = snap_errf(err, errlen, -errno, "rename %s -> %s: %s", tmp, w->path, strerror(errno));
		goto out_sync;
	}
	{	/* make the rename durable */
		char *d = strdup(w->path), *slash = d ? strrchr(d, '/') : NULL;
		if (d) {
			if (slash)
				*(slash == d ? slash + 1 : slash) = 0;
			int dfd = open(slash ? d : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			if (dfd >= 0) {
				fsync(dfd);
				close(dfd);
			}
			free(d);
		}
	}
	if (st) {
		st->raw_bytes = w->image_size;
		st->file_bytes = h.file_size;
		st->n_tensors = w->n;
		st->n_chunks = j.n_chunks;
		st->wall_s = snap_now() - t0;
	}
out_sync:
	if (fd >= 0) {
		close(fd);
		unlink(tmp);
	}
	pthread_mutex_destroy(&j.mu);
	pthread_cond_destroy(&j.cv);
out:
	for (size_t s = 0; j.slots && s < j.n_slots; s++)
		free(j.slots[s].buf);
	free(j.slots);
	free(th);
	free(chunks);
	free(index);
	free(ctab);
	free(meta_owned);
	snap_writer_abort(w);
	return rc;
}

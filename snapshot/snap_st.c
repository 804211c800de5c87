/* snap_st.c — safetensors reading (header validation, model directories, shards) and header
 * writing for `unpack`. Format: u64 little-endian header length N, N bytes of JSON
 * {"__metadata__": {str: str}, NAME: {"dtype": "BF16", "shape": [..], "data_offsets": [b, e]}},
 * then the data section; offsets are relative to the data section. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <jansson.h>
#include "snapshot/snap_int.h"
#include "snapshot/snap_st.h"

void snap_st_tensors_free(snap_st_tensor *t, size_t n)
{
	for (size_t i = 0; t && i < n; i++)
		free(t[i].name);
	free(t);
}

static int get_u64(json_t *v, uint64_t *out)
{
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return -1;
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

static int cmp_begin(const void *a, const void *b)
{
	const snap_st_tensor *x = *(snap_st_tensor *const *)a, *y = *(snap_st_tensor *const *)b;
	if (x->begin != y->begin)
		return x->begin < y->begin ? -1 : 1;
	return x->end < y->end ? -1 : x->end > y->end;
}

int snap_st_parse_header(const char *text, size_t len, uint64_t data_size, size_t file,
			 snap_st_tensor **tp, size_t *np, char **meta, char *err, size_t errlen)
{
	json_error_t je;
	int rc = 0;
	size_t first = *np, cnt = 0;
	snap_st_tensor **sorted = NULL;
	json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);

	if (!j)
		return snap_errf(err, errlen, -EBADMSG, "safetensors header: invalid JSON at byte %d: %s",
				 je.position, je.text);
	if (!json_is_object(j)) {
		rc = snap_errf(err, errlen, -EBADMSG, "safetensors header: not a JSON object");
		goto out;
	}
	size_t total = json_object_size(j);
	if (total > SNAP_MAX_TENSORS) {
		rc = snap_errf(err, errlen, -EBADMSG, "safetensors header: %zu entries", total);
		goto out;
	}
	snap_st_tensor *t = realloc(*tp, (first + total + 1) * sizeof *t);
	if (!t) {
		rc = snap_errf(err, errlen, -ENOMEM, "out of memory");
		goto out;
	}
	*tp = t;
	const char *key;
	json_t *v;
	json_object_foreach(j, key, v) {
		if (strcmp(key, "__metadata__") == 0) {
			if (!json_is_object(v)) {
				rc = snap_errf(err, errlen, -EBADMSG, "safetensors header: __metadata__ is not an object");
				goto out;
			}
			if (meta && !*meta && !(*meta = json_dumps(v, JSON_COMPACT | JSON_ENSURE_ASCII))) {
				rc = snap_errf(err, errlen, -ENOMEM, "out of memory");
				goto out;
			}
			continue;
		}
		snap_st_tensor *x = &t[first + cnt];
		memset(x, 0, sizeof *x);
		x->file = file;
		size_t kl = strlen(key);
		if (kl == 0 || kl > SNAP_MAX_NAME) {
			rc = snap_errf(err, errlen, -EBADMSG, "safetensors header: tensor name of %zu bytes", kl);
			goto out;
		}
		if (!json_is_object(v)) {
			rc = snap_errf(err, errlen, -EBADMSG, "safetensors: tensor %s: not an object", key);
			goto out;
		}
		const char *dt = json_string_value(json_object_get(v, "dtype"));
		json_t *shape = json_object_get(v, "shape"), *offs = json_object_get(v, "data_offsets");
		x->dtype = snap_dtype_from_name(dt);
		if (x->dtype == SNAP_DTYPE_INVALID) {
			rc = snap_errf(err, errlen, -EBADMSG, "safetensors: tensor %s: unsupported dtype %s", key,
				       dt ? dt : "(missing)");
			goto out;
		}
		if (!json_is_array(shape) || json_array_size(shape) > SNAP_MAX_DIMS) {
			rc = snap_errf(err, errlen, -EBADMSG, "safetensors: tensor %s: shape missing or over %d dimensions",
				       key, SNAP_MAX_DIMS);
			goto out;
		}
		uint64_t numel = 1;
		x->ndim = (uint32_t)json_array_size(shape);
		for (uint32_t d = 0; d < x->ndim; d++) {
			if (get_u64(json_array_get(shape, d), &x->shape[d])) {
				rc = snap_errf(err, errlen, -EBADMSG, "safetensors: tensor %s: bad shape", key);
				goto out;
			}
			if (x->shape[d] && numel > UINT64_MAX / x->shape[d] / 16) {
				rc = snap_errf(err, errlen, -EBADMSG, "safetensors: tensor %s: shape overflows", key);
				goto out;
			}
			numel *= x->shape[d];
		}
		if (!json_is_array(offs) || json_array_size(offs) != 2 ||
		    get_u64(json_array_get(offs, 0), &x->begin) || get_u64(json_array_get(offs, 1), &x->end) ||
		    x->begin > x->end) {
			rc = snap_errf(err, errlen, -EBADMSG, "safetensors: tensor %s: bad data_offsets", key);
			goto out;
		}
		if (x->end > data_size) {
			rc = snap_errf(err, errlen, -EBADMSG,
				       "safetensors: tensor %s: data_offsets [%" PRIu64 ", %" PRIu64 "] past the data section (%" PRIu64 " bytes)",
				       key, x->begin, x->end, data_size);
			goto out;
		}
		if (x->end - x->begin != numel * snap_dtype_size(x->dtype)) {
			rc = snap_errf(err, errlen, -EBADMSG,
				       "safetensors: tensor %s: %" PRIu64 " bytes, but shape and dtype %s need %" PRIu64,
				       key, x->end - x->begin, dt, numel * snap_dtype_size(x->dtype));
			goto out;
		}
		if (!(x->name = strdup(key))) {
			rc = snap_errf(err, errlen, -ENOMEM, "out of memory");
			goto out;
		}
		cnt++;
	}
	/* no two tensors may share bytes */
	sorted = malloc((cnt ? cnt : 1) * sizeof *sorted);
	if (!sorted) {
		rc = snap_errf(err, errlen, -ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < cnt; i++)
		sorted[i] = &t[first + i];
	qsort(sorted, cnt, sizeof *sorted, cmp_begin);
	for (size_t i = 1; i < cnt; i++)
		if (sorted[i]->begin < sorted[i - 1]->end) {
			rc = snap_errf(err, errlen, -EBADMSG, "safetensors: tensors %s and %s overlap",
				       sorted[i - 1]->name, sorted[i]->name);
			goto out;
		}
	/* pack order: by data offset */
	snap_st_tensor *tmp = malloc((cnt ? cnt : 1) * sizeof *tmp);
	if (!tmp) {
		rc = snap_errf(err, errlen, -ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < cnt; i++)
		tmp[i] = *sorted[i];
	memcpy(&t[first], tmp, cnt * sizeof *tmp);
	free(tmp);
out:
	if (rc) {
		for (size_t i = 0; i < cnt; i++)
			free((*tp)[first + i].name);
		cnt = 0;
	}
	*np = first + cnt;
	free(sorted);
	json_decref(j);
	return rc;
}

/* the first n bytes of buf as C-escaped text, for "this is not a safetensors file" errors */
static const char *show_bytes(const uint8_t *buf, size_t n, char *out, size_t cap)
{
	size_t o = 0;
	out[0] = 0;
	for (size_t i = 0; i < n && o + 5 < cap; i++) {
		if (buf[i] >= 0x20 && buf[i] < 0x7f && buf[i] != '"' && buf[i] != '\\')
			out[o++] = (char)buf[i];
		else
			o += (size_t)snprintf(out + o, cap - o, "\\x%02x", buf[i]);
	}
	out[o] = 0;
	return out;
}

/* check_prefix validates the 8-byte length against the file size and that the header is a
 * JSON object; anything else is "not a safetensors file", with its first bytes shown. */
static int check_prefix(const uint8_t *buf, uint64_t size, uint64_t *hlen, char *err, size_t errlen)
{
	char shown[48];
	if (size < 8)
		return snap_errf(err, errlen, -EBADMSG, "not a safetensors file: %" PRIu64 " bytes, "
				 "shorter than the 8-byte header length", size);
	*hlen = snap_rd64(buf);
	if (*hlen < 2 || *hlen > size - 8 || buf[8] != '{')
		return snap_errf(err, errlen, -EBADMSG,
				 "not a safetensors file (it starts with \"%s\"; read as a safetensors "
				 "header length, its first 8 bytes give %" PRIu64 " for a %" PRIu64
				 "-byte file%s)", show_bytes(buf, size < 12 ? size : 12, shown, sizeof shown),
				 *hlen, size, *hlen >= 2 && *hlen <= size - 8 ? ", and its header is not a JSON object" : "");
	if (*hlen > SNAP_ST_MAX_HEADER)
		return snap_errf(err, errlen, -EBADMSG, "safetensors header of %" PRIu64 " bytes is over "
				 "the %u-byte limit", *hlen, SNAP_ST_MAX_HEADER);
	return 0;
}

int snap_st_parse_mem(const uint8_t *buf, size_t len, snap_st_tensor **t, size_t *n,
		      char *err, size_t errlen)
{
	uint64_t hlen;
	*t = NULL;
	*n = 0;
	int rc = check_prefix(buf, len, &hlen, err, errlen);
	if (rc)
		return rc;
	return snap_st_parse_header((const char *)buf + 8, hlen, len - 8 - hlen, 0, t, n, NULL, err, errlen);
}

/* read_text reads a regular file of at most max bytes into a NUL-terminated malloc'd buffer;
 * NULL with *rc: -EINVAL (not a regular file), -EIO (unreadable or too large) or -errno. */
static char *read_text(const char *path, size_t max, int *rc)
{
	char *buf = NULL;
	int fd = snap_open_regular(path, 0);
	FILE *fp = fd >= 0 ? fdopen(fd, "rb") : NULL;
	*rc = 0;
	if (!fp) {
		*rc = fd < 0 ? fd : -errno;
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	if (fseek(fp, 0, SEEK_END) == 0) {
		long sz = ftell(fp);
		if (sz >= 0 && (size_t)sz <= max && fseek(fp, 0, SEEK_SET) == 0 && (buf = malloc((size_t)sz + 1))) {
			if (fread(buf, 1, (size_t)sz, fp) == (size_t)sz) {
				buf[sz] = 0;
			} else {
				free(buf);
				buf = NULL;
			}
		}
	}
	if (!buf)
		*rc = -EIO;
	fclose(fp);
	return buf;
}

static int open_one(snap_st *s, const char *path, char *err, size_t errlen)
{
	struct stat st;
	char msg[400];
	uint64_t hlen;
	snap_st_file *f = &s->files[s->n_files];
	memset(f, 0, sizeof *f);
	f->fd = snap_open_regular(path, 0);
	if (f->fd < 0) {
		int rc = f->fd;
		f->fd = -1;
		return snap_errf(err, errlen, rc, "%s: %s", path,
				 rc == -EINVAL ? "not a regular file" : strerror(-rc));
	}
	s->n_files++;
	f->path = strdup(path);
	char *dup = strdup(path);
	f->base = dup ? strdup(basename(dup)) : NULL;
	free(dup);
	if (!f->path || !f->base)
		return snap_errf(err, errlen, -ENOMEM, "out of memory");
	if (fstat(f->fd, &st) < 0 || !S_ISREG(st.st_mode))
		return snap_errf(err, errlen, -EINVAL, "%s: not a regular file", path);
	f->size = (uint64_t)st.st_size;
	if (f->size) {
		void *m = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, f->fd, 0);
		if (m == MAP_FAILED)
			return snap_errf(err, errlen, -errno, "%s: mmap: %s", path, strerror(errno));
		f->map = m;
	}
	int rc = check_prefix(f->map, f->size, &hlen, msg, sizeof msg);
	if (!rc)
		rc = snap_st_parse_header((const char *)f->map + 8, hlen, f->size - 8 - hlen, s->n_files - 1,
					  &s->t, &s->n, &s->st_metadata, msg, sizeof msg);
	if (rc)
		return snap_errf(err, errlen, rc, "%s: %s", path, msg);
	f->data_off = 8 + hlen;
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_tname(const void *a, const void *b, void *ctx)
{
	const snap_st_tensor *t = ctx;
	return strcmp(t[*(const size_t *)a].name, t[*(const size_t *)b].name);
}

/* open_index opens the shards named by a model.safetensors.index.json, in name order. */
static int open_index(snap_st *s, const char *dir, const char *index, char *err, size_t errlen)
{
	json_error_t je;
	int rc;
	char **names = NULL;
	size_t nn = 0;
	char *text = read_text(index, 64u << 20, &rc);
	if (!text)
		return snap_errf(err, errlen, rc, "%s: %s", index, rc == -EINVAL ? "not a regular file" :
				 rc == -EIO ? "unreadable or over 64 MiB" : strerror(-rc));
	json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, &je);
	free(text);
	if (!j)
		return snap_errf(err, errlen, -EBADMSG, "%s: invalid JSON at line %d: %s", index, je.line, je.text);
	json_t *wm = json_object_get(j, "weight_map");
	if (!json_is_object(wm) || json_object_size(wm) == 0) {
		rc = snap_errf(err, errlen, -EBADMSG, "%s: no weight_map object", index);
		goto out;
	}
	names = calloc(json_object_size(wm), sizeof *names);
	if (!names) {
		rc = snap_errf(err, errlen, -ENOMEM, "out of memory");
		goto out;
	}
	const char *key;
	json_t *v;
	json_object_foreach(wm, key, v) {
		const char *fn = json_string_value(v);
		if (!fn || !*fn || strchr(fn, '/') || strcmp(fn, "..") == 0) {
			rc = snap_errf(err, errlen, -EBADMSG, "%s: tensor %s: bad shard file name", index, key);
			goto out;
		}
		size_t k;
		for (k = 0; k < nn && strcmp(names[k], fn); k++)
			;
		if (k == nn)
			names[nn++] = (char *)fn;
	}
	qsort(names, nn, sizeof *names, cmp_str);
	s->files = calloc(nn, sizeof *s->files);
	if (!s->files) {
		rc = snap_errf(err, errlen, -ENOMEM, "out of memory");
		goto out;
	}
	for (size_t k = 0; k < nn; k++) {
		char path[4096];
		if (snprintf(path, sizeof path, "%s/%s", dir, names[k]) >= (int)sizeof path) {
			rc = snap_errf(err, errlen, -ENAMETOOLONG, "%s: shard path too long", index);
			goto out;
		}
		if ((rc = open_one(s, path, err, errlen)))
			goto out;
	}
	/* every weight_map entry must be in the shard it names, and nothing else may be */
	if (json_object_size(wm) != s->n) {
		rc = snap_errf(err, errlen, -EBADMSG, "%s: weight_map lists %zu tensors, the shards hold %zu",
			       index, json_object_size(wm), s->n);
		goto out;
	}
	for (size_t i = 0; i < s->n; i++) {
		const char *fn = json_string_value(json_object_get(wm, s->t[i].name));
		if (!fn || strcmp(fn, s->files[s->t[i].file].base) != 0) {
			rc = snap_errf(err, errlen, -EBADMSG, "%s: tensor %s is in %s, weight_map says %s", index,
				       s->t[i].name, s->files[s->t[i].file].base, fn ? fn : "(nothing)");
			goto out;
		}
	}
	rc = 0;
out:
	free(names);
	json_decref(j);
	return rc;
}

int snap_st_open(snap_st **out, const char *src, char *err, size_t errlen)
{
	struct stat st;
	char path[4096], dir[4096];
	int rc;
	snap_st *s = calloc(1, sizeof *s);
	size_t *idx = NULL;

	*out = NULL;
	if (!s)
		return snap_errf(err, errlen, -ENOMEM, "out of memory");
	if (stat(src, &st) < 0) {
		rc = snap_errf(err, errlen, -errno, "%s: %s", src, strerror(errno));
		goto fail;
	}
	if (S_ISDIR(st.st_mode)) {
		snprintf(dir, sizeof dir, "%s", src);
		snprintf(path, sizeof path, "%s/model.safetensors", src);
		if (access(path, F_OK) == 0) {
			s->files = calloc(1, sizeof *s->files);
			rc = s->files ? open_one(s, path, err, errlen) : -ENOMEM;
		} else {
			snprintf(path, sizeof path, "%s/model.safetensors.index.json", src);
			if (access(path, F_OK) != 0) {
				rc = snap_errf(err, errlen, -ENOENT,
					       "%s: no model.safetensors or model.safetensors.index.json", src);
				goto fail;
			}
			rc = open_index(s, dir, path, err, errlen);
		}
	} else {
		char *d = strdup(src);
		snprintf(dir, sizeof dir, "%s", d ? dirname(d) : ".");
		free(d);
		s->files = calloc(1, sizeof *s->files);
		rc = s->files ? open_one(s, src, err, errlen) : -ENOMEM;
	}
	if (rc)
		goto fail;
	/* names unique across shards */
	idx = malloc((s->n ? s->n : 1) * sizeof *idx);
	if (!idx) {
		rc = snap_errf(err, errlen, -ENOMEM, "out of memory");
		goto fail;
	}
	for (size_t i = 0; i < s->n; i++)
		idx[i] = i;
	qsort_r(idx, s->n, sizeof *idx, cmp_tname, s->t);
	for (size_t i = 1; i < s->n; i++)
		if (strcmp(s->t[idx[i]].name, s->t[idx[i - 1]].name) == 0) {
			rc = snap_errf(err, errlen, -EBADMSG, "%s: tensor %s appears in two shards", src,
				       s->t[idx[i]].name);
			goto fail;
		}
	free(idx);
	idx = NULL;
	if (snprintf(path, sizeof path, "%s/config.json", dir) < (int)sizeof path && access(path, F_OK) == 0) {
		json_error_t je;
		json_t *cj;
		s->config = read_text(path, 16u << 20, &rc);
		if (!s->config) {
			rc = snap_errf(err, errlen, rc ? rc : -EIO, "%s: %s", path,
				       rc == -EINVAL ? "not a regular file" : "unreadable or over 16 MiB");
			goto fail;
		}
		if (!(cj = json_loads(s->config, 0, &je)) || !json_is_object(cj)) {
			json_decref(cj);
			rc = snap_errf(err, errlen, -EBADMSG, "%s: not a JSON object (line %d: %s)", path, je.line, je.text);
			goto fail;
		}
		json_decref(cj);
	}
	*out = s;
	return 0;
fail:
	free(idx);
	snap_st_close(s);
	return rc;
}

void snap_st_close(snap_st *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n_files; i++) {
		if (s->files[i].map)
			munmap((void *)s->files[i].map, s->files[i].size);
		if (s->files[i].fd >= 0)
			close(s->files[i].fd);
		free(s->files[i].path);
		free(s->files[i].base);
	}
	free(s->files);
	snap_st_tensors_free(s->t, s->n);
	free(s->st_metadata);
	free(s->config);
	free(s);
}

const void *snap_st_data(const snap_st *s, size_t i)
{
	const snap_st_file *f = &s->files[s->t[i].file];
	return f->map ? f->map + f->data_off + s->t[i].begin : NULL;
}

uint8_t *snap_st_header(const snap_tensor *t, size_t n, const char *meta, size_t *len,
			uint64_t *data_off, char *err, size_t errlen)
{
	json_t *j = json_object(), *m = NULL;
	uint8_t *out = NULL;
	char *text = NULL;
	uint64_t off = 0;

	if (!j)
		goto oom;
	if (meta) {
		json_error_t je;
		m = json_loads(meta, 0, &je);
		if (!json_is_object(m)) {
			json_decref(m);
			json_decref(j);
			snap_errf(err, errlen, -EBADMSG, "safetensors metadata is not a JSON object");
			return NULL;
		}
		json_object_set_new(j, "__metadata__", m);
	}
	for (size_t i = 0; i < n; i++) {
		json_t *shape = json_array(), *e = json_object();
		if (!shape || !e)
			goto oom;
		for (uint32_t d = 0; d < t[i].ndim; d++)
			json_array_append_new(shape, json_integer((json_int_t)t[i].shape[d]));
		json_object_set_new(e, "dtype", json_string(t[i].dtype_name));
		json_object_set_new(e, "shape", shape);
		json_t *o = json_array();
		json_array_append_new(o, json_integer((json_int_t)off));
		json_array_append_new(o, json_integer((json_int_t)(off + t[i].nbytes)));
		json_object_set_new(e, "data_offsets", o);
		if (json_object_set_new(j, t[i].name, e))
			goto oom;
		data_off[i] = off;
		off += t[i].nbytes;
	}
	if (!(text = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER)))
		goto oom;
	size_t tl = strlen(text), hl = snap_round_up(tl, 8);
	if (!(out = malloc(8 + hl)))
		goto oom;
	snap_wr64(out, hl);
	memcpy(out + 8, text, tl);
	memset(out + 8 + tl, ' ', hl - tl);
	*len = 8 + hl;
	free(text);
	json_decref(j);
	return out;
oom:
	free(text);
	json_decref(j);
	snap_errf(err, errlen, -ENOMEM, "out of memory");
	return NULL;
}

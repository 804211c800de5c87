/* rt_api_upload.c — getting snapshots and job data onto a server over HTTP (admin scope):
 * PUT|GET|DELETE /v1/snapshots/{snapshot}, GET /v1/snapshots, and the same under /v1/data for
 * job data files. A PUT body streams (rt_req_body_sink) through a bounded buffer into a
 * temporary NAME.tmp.XXXXXX file beside its target, written and hashed (SHA-256) on the
 * threadpool, the client paused while the disk is behind; at the end it is fsync'd, verified
 * (a snapshot: header, tables and every chunk, snap_verify) and renamed over the name, then
 * the directory fsync'd. A failed, refused or interrupted upload removes its temporary file;
 * one left by a crash is swept at the next start (rt_server.c). A replaced snapshot that a
 * running instance has open keeps its old bytes (rename replaces the name, not the inode). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <sodium.h>
#include "runtime/api/rt_api.h"
#include "runtime/base/rt_json.h"
#include "runtime/base/rt_log.h"
#include "snapshot/snap.h"

#define UP_WRITE_AT ((size_t)1 << 20)   /* buffered bytes that start a disk write */
#define UP_HIGH ((size_t)4 << 20)       /* buffered bytes past which the client is paused */
#define UP_NAME_MAX 200

typedef enum up_kind { UP_SNAPSHOT, UP_DATA } up_kind;

static int up_active;   /* uploads under way (loop thread) */

typedef struct upload {
	rt_api *api;
	rt_req *req;
	up_kind kind;
	char name[UP_NAME_MAX + 1];
	char tmp[PATH_MAX + 2 * UP_NAME_MAX], final[PATH_MAX + 2 * UP_NAME_MAX];
	int fd;
	int existed;              /* the name existed at the head: 200, else 201 */
	int force;
	char *fill, *wbuf;        /* bytes waiting; bytes a worker writes */
	size_t fill_len, fill_cap, wlen, wcap;
	uint64_t off;             /* bytes written */
	int writing, paused, aborted, ended;
	int werr;                 /* negative errno of a failed write, fsync or verify */
	int status;               /* the error status to answer */
	char msg[1024];
	char kind_name[64];
	unsigned char digest[crypto_hash_sha256_BYTES];
	crypto_hash_sha256_state sha;
	uv_work_t w;
} upload;

static const char *up_dir_name(up_kind k)
{
	return k == UP_SNAPSHOT ? "snapshots" : "data";
}

/* a stored name: 1..UP_NAME_MAX of [A-Za-z0-9._-], not starting with '.', never a
 * temporary file's NAME.tmp.XXXXXX. 0 or -EINVAL with a message. */
static int up_name_valid(const char *n, char *err, size_t errlen)
{
	size_t len = strlen(n);
	if (len == 0 || len > UP_NAME_MAX)
		return rt_errf(err, errlen, -EINVAL, "name must be 1 to %d characters", UP_NAME_MAX);
	if (n[0] == '.')
		return rt_errf(err, errlen, -EINVAL, "name '%.64s' must not start with '.'", n);
	for (size_t i = 0; i < len; i++) {
		char c = n[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return rt_errf(err, errlen, -EINVAL, "name '%.64s': only letters, digits, '.', '_' "
				       "and '-' are allowed (no '/', '%%' or spaces)", n);
	}
	if (strstr(n, ".tmp."))
		return rt_errf(err, errlen, -EINVAL, "name '%.64s' must not contain '.tmp.' (reserved "
			       "for uploads under way)", n);
	return 0;
}

static up_kind route_kind(const rt_req *req)
{
	return strncmp(req->route, "/v1/snapshots", 13) == 0 ? UP_SNAPSHOT : UP_DATA;
}

static const char *route_name(const rt_req *req)
{
	const char *n = rt_req_param(req, "snapshot");
	return n ? n : rt_req_param(req, "file");
}

static int query_force(const char *q)
{
	for (const char *p = q; p && *p;) {
		size_t n = strcspn(p, "&");
		if ((n == 7 && !strncmp(p, "force=1", 7)) || (n == 10 && !strncmp(p, "force=true", 10)))
			return 1;
		p += n;
		if (*p)
			p++;
	}
	return 0;
}

/* every revision's snapshot: {"<resolved path>": [{"function", "revision"}, ...]} (loop
 * thread: the registry); NULL on ENOMEM */
static json_t *all_users(rt_api *api)
{
	rt_registry_entry *e = NULL;
	size_t n = 0;
	json_t *m = json_object();
	rt_revision_info *ri = malloc(sizeof *ri);
	if (m && ri && rt_registry_list(api->reg, &e, &n) == 0)
		for (size_t i = 0; i < n; i++)
			for (uint32_t r = 1; r <= e[i].latest_rev; r++) {
				if (rt_registry_get_revision(api->reg, e[i].name, r, ri) < 0 ||
				    !ri->snapshot_path[0])
					continue;
				json_t *a = json_object_get(m, ri->snapshot_path);
				if (!a) {
					a = json_array();
					json_object_set_new(m, ri->snapshot_path, a);
				}
				json_array_append_new(a, json_pack("{s:s,s:i}", "function", e[i].name,
								   "revision", (int)r));
			}
	free(e);
	free(ri);
	return m;
}

/* the users of DATA/snapshots/name in map (from all_users): a new array, empty when none */
static json_t *users_in(rt_api *api, json_t *map, const char *name)
{
	char path[PATH_MAX + UP_NAME_MAX + 16], real[PATH_MAX];
	snprintf(path, sizeof path, "%s/snapshots/%s", api->data_dir, name);
	json_t *a = realpath(path, real) ? json_object_get(map, real) : NULL;
	return a ? json_deep_copy(a) : json_array();
}

/* users of DATA/snapshots/name (an empty array when none or when it does not exist) */
static json_t *users_of(rt_api *api, const char *name)
{
	json_t *map = all_users(api);
	json_t *users = users_in(api, map, name);
	json_decref(map);
	return users;
}

/* ---- PUT: the body sink ---- */

static void up_free(upload *u)
{
	if (u->fd >= 0)
		close(u->fd);
	if (u->tmp[0])
		unlink(u->tmp);
	free(u->fill);
	free(u->wbuf);
	free(u);
	up_active--;
}

/* answers u's failure (status, message) and frees u; the temporary file is gone before the
 * answer leaves, so a client that sees the error finds no trace of the upload */
static void up_answer_failure(upload *u)
{
	rt_req *req = u->req;
	int status = u->status;
	char msg[sizeof u->msg];
	memcpy(msg, u->msg, sizeof msg);
	up_free(u);
	rt_req_reply_error(req, status, "%s", msg);
}

static void up_write_start(upload *u);

static void up_write_work(uv_work_t *w)
{
	upload *u = w->data;
	size_t done = 0;
	while (done < u->wlen) {
		ssize_t k = pwrite(u->fd, u->wbuf + done, u->wlen - done, (off_t)(u->off + done));
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			u->werr = k < 0 ? -errno : -EIO;
			return;
		}
		done += (size_t)k;
	}
	crypto_hash_sha256_update(&u->sha, (const unsigned char *)u->wbuf, u->wlen);
	u->off += u->wlen;
	u->wlen = 0;
}

static void up_finish(upload *u);

static void up_fail_status(upload *u, int rc, const char *what)
{
	u->werr = rc;
	u->status = (rc == -ENOSPC || rc == -EDQUOT) ? 507 : 500;
	snprintf(u->msg, sizeof u->msg, "%s %s: %s%s", what, u->name, strerror(-rc),
		 u->status == 507 ? " (the server's disk is full)" : "");
}

static void up_write_after(uv_work_t *w, int status)
{
	upload *u = w->data;
	(void)status;
	u->writing = 0;
	if (u->aborted) {
		up_free(u);
		return;
	}
	if (u->werr) {
		up_fail_status(u, u->werr, "writing");
		if (u->ended) {
			up_answer_failure(u);
		} else {
			rt_req_body_fail(u->req, u->status, u->msg);   /* calls up_abort: freed */
		}
		return;
	}
	if (u->fill_len >= UP_WRITE_AT || (u->ended && u->fill_len))
		up_write_start(u);
	if (u->paused && u->fill_len < UP_HIGH) {
		u->paused = 0;
		rt_req_body_resume(u->req);
	}
	if (u->ended && !u->writing)
		up_finish(u);
}

static void up_write_start(upload *u)
{
	char *t = u->wbuf;
	size_t tc = u->wcap;
	u->wbuf = u->fill, u->wcap = u->fill_cap, u->wlen = u->fill_len;
	u->fill = t, u->fill_cap = tc, u->fill_len = 0;
	u->writing = 1;
	u->w.data = u;
	if (uv_queue_work(u->api->loop, &u->w, up_write_work, up_write_after) < 0) {
		up_write_work(&u->w);
		up_write_after(&u->w, 0);
	}
}

static int up_data(void *ud, const char *bytes, size_t len)
{
	upload *u = ud;
	if (u->werr)
		return 0;
	if (u->fill_len + len > u->fill_cap) {
		size_t cap = u->fill_cap ? u->fill_cap : UP_WRITE_AT;
		while (cap < u->fill_len + len)
			cap *= 2;
		char *n = realloc(u->fill, cap);
		if (!n) {
			u->werr = -ENOMEM;
			return 0;
		}
		u->fill = n, u->fill_cap = cap;
	}
	memcpy(u->fill + u->fill_len, bytes, len);
	u->fill_len += len;
	if (!u->writing && u->fill_len >= UP_WRITE_AT)
		up_write_start(u);
	if (u->fill_len >= UP_HIGH) {
		u->paused = 1;
		return 1;
	}
	return 0;
}

static void up_abort(void *ud)
{
	upload *u = ud;
	u->aborted = 1;
	if (!u->writing)
		up_free(u);
}

static const rt_body_sink up_sink = {.data = up_data, .abort = up_abort};

/* fsync, verify (snapshots), in a worker */
static void up_finish_work(uv_work_t *w)
{
	upload *u = w->data;
	if (fsync(u->fd) < 0) {
		up_fail_status(u, -errno, "storing");
		return;
	}
	if (u->kind != UP_SNAPSHOT)
		return;
	snap_file *f = NULL;
	char err[400];
	snap_restore_opts o = {.threads = 2, .io = SNAP_IO_PREAD};
	long bad = -1;
	if (snap_open(&f, u->tmp, err, sizeof err) < 0 ||
	    snap_verify(f, &o, NULL, &bad, err, sizeof err) < 0) {
		u->werr = -EBADMSG;
		u->status = 400;
		size_t tl = strlen(u->tmp);   /* name the upload, not its temporary file */
		const char *why = strncmp(err, u->tmp, tl) == 0 && err[tl] == ':' ? err + tl + 1 : err;
		while (*why == ' ')
			why++;
		snprintf(u->msg, sizeof u->msg, "%s is not a valid snapshot: %s", u->name, why);
	} else {
		snprintf(u->kind_name, sizeof u->kind_name, "%s", snap_kind(f));
	}
	snap_close(f);
}

static int fsync_dir(const char *file)
{
	char dir[PATH_MAX];
	snprintf(dir, sizeof dir, "%s", file);
	char *s = strrchr(dir, '/');
	if (s)
		*s = 0;
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = fsync(fd) < 0 ? -errno : 0;
	close(fd);
	return rc;
}

/* the rename and the directory's fsync, in a worker once the in-use check passed */
static void up_rename_work(uv_work_t *w)
{
	upload *u = w->data;
	if (rename(u->tmp, u->final) < 0) {
		up_fail_status(u, -errno, "storing");
		return;
	}
	u->tmp[0] = 0;
	int rc = fsync_dir(u->final);
	if (rc < 0)
		rt_logf(RT_LOG_WARN, "upload %s: fsync of its directory: %s", u->final, strerror(-rc));
}

/* a step on the thread pool failed: answer its status and message, free u; 1 then, else 0 */
static int up_failed(upload *u)
{
	if (!u->werr)
		return 0;
	up_answer_failure(u);
	return 1;
}

static void up_rename_after(uv_work_t *w, int status)
{
	upload *u = w->data;
	(void)status;
	if (up_failed(u))
		return;
	char hex[2 * crypto_hash_sha256_BYTES + 1], digest[8 + sizeof hex];
	sodium_bin2hex(hex, sizeof hex, u->digest, sizeof u->digest);
	snprintf(digest, sizeof digest, "sha256:%s", hex);
	json_t *o = json_pack("{s:s,s:I,s:s}", "name", u->name, "bytes", (json_int_t)u->off,
			      "digest", digest);
	if (o && u->kind == UP_SNAPSHOT)
		json_object_set_new(o, "kind", json_string(u->kind_name));
	rt_logf(RT_LOG_INFO, "upload: stored %s (%llu bytes, %s)", u->final,
		(unsigned long long)u->off, digest);
	rt_api_reply_json(u->req, u->existed ? 200 : 201, o);
	up_free(u);
}

static void up_finish_after(uv_work_t *w, int status)
{
	upload *u = w->data;
	(void)status;
	if (up_failed(u))
		return;
	crypto_hash_sha256_final(&u->sha, u->digest);
	if (u->kind == UP_SNAPSHOT && !u->force) {   /* deployed since the head? */
		json_t *users = users_of(u->api, u->name);
		size_t n = json_array_size(users);
		json_decref(users);
		if (n) {
			u->status = 409;
			snprintf(u->msg, sizeof u->msg, "snapshot %s is used by %zu function revision(s); "
				 "replace it with ?force=1 or push under a new name", u->name, n);
			up_answer_failure(u);
			return;
		}
	}
	if (uv_queue_work(u->api->loop, &u->w, up_rename_work, up_rename_after) < 0) {
		up_rename_work(&u->w);
		up_rename_after(&u->w, 0);
	}
}

static void up_finish(upload *u)
{
	u->w.data = u;
	if (uv_queue_work(u->api->loop, &u->w, up_finish_work, up_finish_after) < 0) {
		up_finish_work(&u->w);
		up_finish_after(&u->w, 0);
	}
}

int rt_api_upload_head(rt_api *api, rt_req *req)
{
	if (strcmp(req->method, "PUT") != 0 || (strcmp(req->route, "/v1/snapshots/{snapshot}") != 0 &&
						strcmp(req->route, "/v1/data/{file}") != 0))
		return 0;
	up_kind kind = route_kind(req);
	const char *name = route_name(req);
	char err[300], dir[PATH_MAX];
	if (up_name_valid(name, err, sizeof err) < 0) {
		rt_req_reply_error(req, 400, "%s", err);
		return 1;
	}
	if (up_active >= RT_UPLOAD_MAX_ACTIVE) {
		rt_req_add_header(req, "Retry-After", "5");
		rt_req_reply_error(req, 503, "too many uploads under way (%d); retry", RT_UPLOAD_MAX_ACTIVE);
		return 1;
	}
	const char *cl = rt_req_header(req, "Content-Length");
	unsigned long long announced = cl ? strtoull(cl, NULL, 10) : 0;
	if (announced > api->max_upload_bytes) {
		rt_req_reply_error(req, 413, "upload of %llu bytes is over the limit of %llu bytes "
				   "(thaw serve --max-upload)", announced,
				   (unsigned long long)api->max_upload_bytes);
		return 1;
	}
	snprintf(dir, sizeof dir, "%s/%s", api->data_dir, up_dir_name(kind));
	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		rt_req_reply_error(req, 500, "cannot create %s: %s", dir, strerror(errno));
		return 1;
	}
	struct statvfs vfs;
	if (announced && statvfs(dir, &vfs) == 0 &&
	    (unsigned long long)vfs.f_bavail * vfs.f_frsize < announced) {
		rt_req_reply_error(req, 507, "not enough disk space for %llu bytes (%llu free)", announced,
				   (unsigned long long)vfs.f_bavail * vfs.f_frsize);
		return 1;
	}
	int force = query_force(req->query);
	if (kind == UP_SNAPSHOT && !force) {
		json_t *users = users_of(api, name);
		size_t n = json_array_size(users);
		json_decref(users);
		if (n) {
			rt_req_reply_error(req, 409, "snapshot %s is used by %zu function revision(s); "
					   "replace it with ?force=1 or push under a new name", name, n);
			return 1;
		}
	}
	upload *u = calloc(1, sizeof *u);
	if (!u) {
		rt_req_reply_error(req, 503, "out of memory");
		return 1;
	}
	up_active++;
	u->api = api;
	u->req = req;
	u->kind = kind;
	u->force = force;
	u->fd = -1;
	snprintf(u->name, sizeof u->name, "%s", name);
	snprintf(u->final, sizeof u->final, "%s/%s", dir, name);
	struct stat st;
	u->existed = lstat(u->final, &st) == 0;
	if (u->existed && !S_ISREG(st.st_mode)) {
		up_free(u);
		rt_req_reply_error(req, 409, "%s exists and is not a regular file", name);
		return 1;
	}
	snprintf(u->tmp, sizeof u->tmp, "%s/%s.tmp.XXXXXX", dir, name);
	u->fd = mkostemp(u->tmp, O_CLOEXEC);
	if (u->fd < 0) {
		int e = errno;
		u->tmp[0] = 0;
		up_free(u);
		rt_req_reply_error(req, e == ENOSPC ? 507 : 500, "cannot create a file in %s: %s", dir,
				   strerror(e));
		return 1;
	}
	crypto_hash_sha256_init(&u->sha);
	int rc = rt_req_body_sink(req, &up_sink, u, api->max_upload_bytes);
	if (rc < 0) {
		up_free(u);
		rt_req_reply_error(req, rc == -EFBIG ? 413 : 500, "upload refused: %s", strerror(-rc));
		return 1;
	}
	return 0;
}

/* end of the body: the writes drain, then up_finish */
static void h_put(rt_req *req, void *ud)
{
	upload *u = req->sink_ud;
	(void)ud;
	if (!u) {   /* only the head installs it */
		rt_req_reply_error(req, 500, "upload state missing");
		return;
	}
	u->ended = 1;
	if (u->werr) {
		if (!u->status)
			up_fail_status(u, u->werr, "writing");
		if (u->writing) {
			return;   /* up_write_after answers */
		}
		up_answer_failure(u);
		return;
	}
	if (u->writing)
		return;
	if (u->fill_len)
		up_write_start(u);
	else
		up_finish(u);
}

/* ---- GET / DELETE ---- */

typedef struct list_job {
	rt_api *api;
	rt_req *req;
	up_kind kind;
	const char *one;   /* one name (GET /v1/x/{name}), else NULL: the list */
	json_t *items;
	int status;
	char err[300];
} list_job;

static json_t *entry_json(up_kind kind, const char *dir, const char *name, int with_meta)
{
	char path[PATH_MAX];
	struct stat st;
	snprintf(path, sizeof path, "%s/%s", dir, name);
	if (lstat(path, &st) < 0 || !S_ISREG(st.st_mode))
		return NULL;
	char when[40];
	struct tm tm;
	gmtime_r(&st.st_mtime, &tm);
	strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
	json_t *o = json_pack("{s:s,s:I,s:s}", "name", name, "bytes", (json_int_t)st.st_size,
			      "modified", when);
	if (o && kind == UP_SNAPSHOT) {
		snap_file *f = NULL;
		char err[300];
		if (snap_open(&f, path, err, sizeof err) == 0) {
			json_object_set_new(o, "kind", json_string(snap_kind(f)));
			if (with_meta) {
				json_object_set_new(o, "tensors", json_integer((json_int_t)snap_tensor_count(f)));
				json_object_set_new(o, "image_bytes", json_integer((json_int_t)snap_image_size(f)));
				json_t *m = json_loads(snap_metadata_json(f), 0, NULL);
				json_t *cfg = m ? json_object_get(m, "config") : NULL;
				if (cfg)
					json_object_set(o, "config", cfg);
				json_t *prov = m ? json_object_get(m, "provenance") : NULL;
				if (prov)
					json_object_set(o, "provenance", prov);
				json_decref(m);
			}
			snap_close(f);
		} else {
			json_object_set_new(o, "kind", json_null());
			json_object_set_new(o, "invalid", json_string(err));
		}
	}
	return o;
}

static void list_work(void *arg)
{
	list_job *j = arg;
	char dir[PATH_MAX];
	snprintf(dir, sizeof dir, "%s/%s", j->api->data_dir, up_dir_name(j->kind));
	if (j->one) {
		j->items = entry_json(j->kind, dir, j->one, 1);
		if (!j->items) {
			j->status = 404;
			snprintf(j->err, sizeof j->err, "no %s named %s", j->kind == UP_SNAPSHOT ?
				 "snapshot" : "data file", j->one);
		}
		return;
	}
	j->items = json_array();
	DIR *d = opendir(dir);
	if (!d)
		return;   /* none yet */
	struct dirent *e;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.' && !strstr(e->d_name, ".tmp.")) {
			json_t *o = entry_json(j->kind, dir, e->d_name, 0);
			if (o)
				json_array_append_new(j->items, o);
		}
	closedir(d);
}

static void list_done(void *arg, int gone)
{
	list_job *j = arg;
	rt_api *api = j->api;
	if (gone) {
		rt_req_reply_error(j->req, 499, "the client closed the request");
	} else if (j->status) {
		rt_req_reply_error(j->req, j->status, "%s", j->err);
	} else if (!j->items) {
		rt_req_reply_error(j->req, 500, "out of memory");
	} else if (j->one) {
		if (j->kind == UP_SNAPSHOT)
			json_object_set_new(j->items, "used_by", users_of(api, j->one));
		rt_api_reply_json(j->req, 200, j->items);
		j->items = NULL;
	} else {
		size_t i;
		json_t *o, *map = j->kind == UP_SNAPSHOT ? all_users(api) : NULL;
		if (map)
			json_array_foreach(j->items, i, o)
				json_object_set_new(o, "used_by", users_in(api, map,
						    json_string_value(json_object_get(o, "name"))));
		json_decref(map);
		rt_api_reply_json(j->req, 200, json_pack("{s:o}", j->kind == UP_SNAPSHOT ? "snapshots" :
							 "data", j->items));
		j->items = NULL;
	}
	json_decref(j->items);
	free(j);
}

static void h_list_or_get(rt_req *req, void *ud)
{
	rt_api *api = ud;
	const char *name = route_name(req);
	char err[300];
	if (name && up_name_valid(name, err, sizeof err) < 0) {
		rt_req_reply_error(req, 400, "%s", err);
		return;
	}
	list_job *j = calloc(1, sizeof *j);
	if (!j) {
		rt_req_reply_error(req, 503, "out of memory");
		return;
	}
	j->api = api;
	j->req = req;
	j->kind = route_kind(req);
	j->one = name;
	rt_api_offload(api, req, 1, list_work, list_done, j);   /* headers read from disk */
}

static void h_delete(rt_req *req, void *ud)
{
	rt_api *api = ud;
	up_kind kind = route_kind(req);
	const char *name = route_name(req);
	char err[300], path[PATH_MAX];
	if (up_name_valid(name, err, sizeof err) < 0) {
		rt_req_reply_error(req, 400, "%s", err);
		return;
	}
	snprintf(path, sizeof path, "%s/%s/%s", api->data_dir, up_dir_name(kind), name);
	struct stat st;
	if (lstat(path, &st) < 0 || !S_ISREG(st.st_mode)) {
		rt_req_reply_error(req, 404, "no %s named %s", kind == UP_SNAPSHOT ? "snapshot" : "data file",
				   name);
		return;
	}
	if (kind == UP_SNAPSHOT) {
		json_t *users = users_of(api, name);
		if (json_array_size(users)) {
			char *list = rt_json_dumps(users, 0);
			rt_req_reply_error(req, 409, "snapshot %s is used by function revisions %s; delete "
					   "or redeploy those first", name, list ? list : "");
			free(list);
			json_decref(users);
			return;
		}
		json_decref(users);
	}
	if (unlink(path) < 0) {
		rt_req_reply_error(req, 500, "cannot delete %s: %s", name, strerror(errno));
		return;
	}
	rt_api_reply_json(req, 200, json_pack("{s:s}", "deleted", name));
}

int rt_api_upload_register(rt_api *api)
{
	static const rt_route_def routes[] = {
		{"GET", "/v1/snapshots", h_list_or_get},
		{"GET", "/v1/snapshots/{snapshot}", h_list_or_get},
		{"PUT", "/v1/snapshots/{snapshot}", h_put},
		{"DELETE", "/v1/snapshots/{snapshot}", h_delete},
		{"GET", "/v1/data", h_list_or_get},
		{"GET", "/v1/data/{file}", h_list_or_get},
		{"PUT", "/v1/data/{file}", h_put},
		{"DELETE", "/v1/data/{file}", h_delete},
	};
	return rt_router_add_all(api->router, routes, sizeof routes / sizeof routes[0], api);
}

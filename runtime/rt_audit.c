/* rt_audit.c — append-only JSON-lines audit log with size rotation and age pruning.
 * See rt_audit.h. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <jansson.h>
#include "runtime/rt_audit.h"
#include "runtime/rt_log.h"
#include "runtime/rt_registry.h"

struct rt_audit {
	char dir[4096];
	char path[4200];
	int fd;
	uint64_t size, max_bytes;
	int keep_days;
	time_t last_prune;
	unsigned seq;
};

static int is_rotated(const char *name)
{
	size_t l = strlen(name);
	return strncmp(name, "audit-", 6) == 0 && l > 10 && strcmp(name + l - 4, ".log") == 0;
}

int rt_audit_prune(const char *dir, int keep_days, time_t now)
{
	if (keep_days <= 0)
		return 0;
	DIR *d = opendir(dir);
	if (!d)
		return -errno;
	int removed = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (!is_rotated(e->d_name))
			continue;
		char p[4400];
		struct stat st;
		snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
		if (stat(p, &st) == 0 && st.st_mtime < now - (time_t)keep_days * 86400 && unlink(p) == 0)
			removed++;
	}
	closedir(d);
	return removed;
}

static int open_log(rt_audit *a)
{
	a->fd = open(a->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (a->fd < 0)
		return -errno;
	struct stat st;
	a->size = fstat(a->fd, &st) == 0 ? (uint64_t)st.st_size : 0;
	return 0;
}

int rt_audit_open(const char *data_dir, uint64_t max_bytes, int keep_days, rt_audit **out,
		  char *err, size_t errlen)
{
	*out = NULL;
	rt_audit *a = calloc(1, sizeof *a);
	if (!a)
		return rt_errf(err, errlen, -ENOMEM, "audit: out of memory");
	a->fd = -1;
	a->max_bytes = max_bytes ? max_bytes : RT_AUDIT_DEFAULT_MAX_BYTES;
	a->keep_days = keep_days;
	if ((size_t)snprintf(a->dir, sizeof a->dir, "%s/audit", data_dir) >= sizeof a->dir) {
		free(a);
		return rt_errf(err, errlen, -ENAMETOOLONG, "audit: data directory path too long");
	}
	snprintf(a->path, sizeof a->path, "%s/audit.log", a->dir);
	if (mkdir(a->dir, 0750) < 0 && errno != EEXIST) {
		int rc = -errno;
		free(a);
		return rt_errf(err, errlen, rc, "audit: cannot create %s: %s", a->dir, strerror(-rc));
	}
	int rc = open_log(a);
	if (rc < 0) {
		rt_errf(err, errlen, rc, "audit: cannot open %s: %s", a->path, strerror(-rc));
		free(a);
		return rc;
	}
	a->last_prune = time(NULL);
	rt_audit_prune(a->dir, a->keep_days, a->last_prune);
	*out = a;
	return 0;
}

void rt_audit_close(rt_audit *a)
{
	if (!a)
		return;
	if (a->fd >= 0)
		close(a->fd);
	free(a);
}

static void rotate(rt_audit *a)
{
	char name[4400], stamp[32];
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
	/* another process may have rotated already: only rotate the file we still have open */
	struct stat a_st, p_st;
	if (fstat(a->fd, &a_st) == 0 && stat(a->path, &p_st) == 0 && a_st.st_ino == p_st.st_ino) {
		for (;;) {
			snprintf(name, sizeof name, "%s/audit-%s-%06u.log", a->dir, stamp, a->seq++);
			if (access(name, F_OK) < 0)
				break;
		}
		if (rename(a->path, name) < 0)
			rt_logf(RT_LOG_WARN, "audit: cannot rotate %s: %s", a->path, strerror(errno));
	}
	fsync(a->fd);
	close(a->fd);
	if (open_log(a) < 0)
		rt_logf(RT_LOG_ERROR, "audit: cannot reopen %s: %s", a->path, strerror(errno));
	a->last_prune = now;
	rt_audit_prune(a->dir, a->keep_days, now);
}

int rt_audit_write(rt_audit *a, const rt_audit_rec *r, int sync)
{
	struct timespec ts;
	char t[40];
	clock_gettime(CLOCK_REALTIME, &ts);
	rt_registry_format_time((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, t, sizeof t);
	json_t *o = json_pack("{s:s, s:o, s:s, s:s, s:o, s:o}", "time", t,
			      "key_id", r->key_id && *r->key_id ? json_string(r->key_id) : json_null(),
			      "client", r->client ? r->client : "", "action", r->action ? r->action : "",
			      "function", r->function ? json_string(r->function) : json_null(),
			      "revision", r->revision > 0 ? json_integer(r->revision) : json_null());
	if (!o)
		return -ENOMEM;
	if (r->method)
		json_object_set_new(o, "method", json_string(r->method));
	if (r->path)
		json_object_set_new(o, "path", json_string(r->path));
	if (r->status)
		json_object_set_new(o, "status", json_integer(r->status));
	else
		json_object_set_new(o, "result", json_string(r->error ? r->error : "ok"));
	json_object_set_new(o, "latency_ms", json_real((double)(int64_t)(r->latency_s * 1e6) / 1e3));
	json_object_set_new(o, "bytes_in", json_integer((json_int_t)r->bytes_in));
	json_object_set_new(o, "bytes_out", json_integer((json_int_t)r->bytes_out));
	if (r->request_id && *r->request_id)
		json_object_set_new(o, "request_id", json_string(r->request_id));
	char *line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
	json_decref(o);
	if (!line)
		return -ENOMEM;
	size_t len = strlen(line);
	line[len] = '\n';   /* json_dumps' NUL becomes the newline; written as len + 1 bytes */
	if (a->fd < 0 && open_log(a) < 0) {
		free(line);
		return -EIO;
	}
	if (a->size && a->size + len + 1 > a->max_bytes)
		rotate(a);
	else if (a->keep_days > 0 && ts.tv_sec - a->last_prune > 3600) {
		a->last_prune = ts.tv_sec;
		rt_audit_prune(a->dir, a->keep_days, ts.tv_sec);
	}
	ssize_t n = write(a->fd, line, len + 1);
	free(line);
	if (n != (ssize_t)(len + 1))
		return n < 0 ? -errno : -EIO;
	a->size += len + 1;
	if (sync && fdatasync(a->fd) < 0)
		return -errno;
	return 0;
}

static int cmp_str(const void *x, const void *y)
{
	return strcmp(*(char *const *)x, *(char *const *)y);
}

int rt_audit_files(const char *dir, char ***out, size_t *n)
{
	*out = NULL;
	*n = 0;
	DIR *d = opendir(dir);
	if (!d)
		return -errno;
	char **v = NULL;
	size_t cnt = 0, cap = 0;
	struct dirent *e;
	int rc = 0;
	while ((e = readdir(d))) {
		if (!is_rotated(e->d_name))
			continue;
		if (cnt == cap) {
			cap = cap ? cap * 2 : 16;
			char **nv = realloc(v, cap * sizeof *v);
			if (!nv) { rc = -ENOMEM; break; }
			v = nv;
		}
		if (asprintf(&v[cnt], "%s/%s", dir, e->d_name) < 0) { rc = -ENOMEM; break; }
		cnt++;
	}
	closedir(d);
	if (rc == 0) {
		if (cnt)
			qsort(v, cnt, sizeof *v, cmp_str);
		char **nv = realloc(v, (cnt + 1) * sizeof *v);
		if (!nv || asprintf(&nv[cnt], "%s/audit.log", dir) < 0) {
			rc = -ENOMEM;
			if (nv)
				v = nv;
		} else {
			v = nv;
			cnt++;
		}
	}
	if (rc < 0) {
		rt_audit_files_free(v, cnt);
		return rc;
	}
	*out = v;
	*n = cnt;
	return 0;
}

void rt_audit_files_free(char **files, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(files[i]);
	free(files);
}

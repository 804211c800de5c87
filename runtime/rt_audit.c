/* rt_audit.c — append-only JSON-lines audit log with size rotation and age pruning. Lines
 * are formatted by hand (no JSON tree per call) into a buffer that rt_audit_flush writes with
 * one write(2); admin actions flush and fdatasync at once. See rt_audit.h. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sodium.h>
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
	char *buf;           /* invocation lines not yet written (rt_audit_flush) */
	size_t blen, bcap;
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
	int rc = rt_audit_flush(a);
	if (rc < 0)
		rt_logf(RT_LOG_ERROR, "audit: lines lost at close: %s", strerror(-rc));
	if (a->fd >= 0) {
		fdatasync(a->fd);
		close(a->fd);
	}
	free(a->buf);
	free(a);
}

int rt_audit_flush(rt_audit *a)
{
	if (!a || !a->blen)
		return 0;
	if (a->fd < 0 && open_log(a) < 0) {
		a->blen = 0;
		return -EIO;
	}
	size_t off = 0;
	int rc = 0;
	while (off < a->blen) {
		ssize_t n = write(a->fd, a->buf + off, a->blen - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = n < 0 ? -errno : -EIO;
			break;
		}
		off += (size_t)n;
	}
	a->size += off;
	a->blen = 0;
	return rc;
}

size_t rt_audit_pending(const rt_audit *a)
{
	return a ? a->blen : 0;
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

/* appends to a->buf, growing it; 0 or -ENOMEM */
static int buf_put(rt_audit *a, const char *p, size_t n)
{
	if (a->blen + n > a->bcap) {
		size_t cap = a->bcap ? a->bcap : 4096;
		while (cap < a->blen + n)
			cap *= 2;
		char *nb = realloc(a->buf, cap);
		if (!nb)
			return -ENOMEM;
		a->buf = nb;
		a->bcap = cap;
	}
	memcpy(a->buf + a->blen, p, n);
	a->blen += n;
	return 0;
}

/* length of the valid UTF-8 sequence at s (at most n bytes), 0 when invalid */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	unsigned c = s[0];
	size_t l;
	unsigned min;
	if (c < 0x80)
		return 1;
	if ((c & 0xe0) == 0xc0) { l = 2; min = 0x80; c &= 0x1f; }
	else if ((c & 0xf0) == 0xe0) { l = 3; min = 0x800; c &= 0x0f; }
	else if ((c & 0xf8) == 0xf0) { l = 4; min = 0x10000; c &= 0x07; }
	else return 0;
	if (l > n)
		return 0;
	for (size_t i = 1; i < l; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (s[i] & 0x3f);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	return l;
}

/* appends s[0..n) as a JSON string (quotes included); invalid UTF-8 bytes become U+FFFD */
static int put_json_str(rt_audit *a, const char *s, size_t n)
{
	char tmp[512];
	size_t t = 0;
	int rc = 0;
	tmp[t++] = '"';
	for (size_t i = 0; i < n && rc == 0;) {
		if (t > sizeof tmp - 16) {
			rc = buf_put(a, tmp, t);
			t = 0;
		}
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\') {
			tmp[t++] = '\\';
			tmp[t++] = (char)c;
			i++;
		} else if (c < 0x20 || c == 0x7f) {
			t += (size_t)snprintf(tmp + t, 8, "\\u%04x", c);
			i++;
		} else if (c < 0x80) {
			tmp[t++] = (char)c;
			i++;
		} else {
			size_t l = utf8_len((const unsigned char *)s + i, n - i);
			if (l == 0) {
				memcpy(tmp + t, "\\ufffd", 6);
				t += 6;
				i++;
			} else {
				memcpy(tmp + t, s + i, l);
				t += l;
				i += l;
			}
		}
	}
	tmp[t++] = '"';
	return rc ? rc : buf_put(a, tmp, t);
}

static int put_str(rt_audit *a, const char *s)
{
	return put_json_str(a, s, strlen(s));
}

static int put_opt_str(rt_audit *a, const char *s)
{
	return s && *s ? put_str(a, s) : buf_put(a, "null", 4);
}

static int put_lit(rt_audit *a, const char *s)
{
	return buf_put(a, s, strlen(s));
}

/* is s[0..n) valid UTF-8 without NUL (then logged as a JSON string, else base64)? */
static int text_ok(const char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		size_t l = s[i] ? utf8_len((const unsigned char *)s + i, n - i) : 0;
		if (!l)
			return 0;
		i += l;
	}
	return 1;
}

/* "name":"text" or "name_base64":"..." of at most cap bytes of p (cut at a UTF-8 boundary) */
static int put_payload(rt_audit *a, const char *name, const char *p, size_t n, size_t cap, int *cut)
{
	size_t k = n;
	if (k > cap) {
		k = cap;
		*cut = 1;
		/* do not split a UTF-8 sequence: back off over continuation bytes */
		size_t b = k;
		while (b > 0 && b > k - 4 && ((unsigned char)p[b] & 0xc0) == 0x80)
			b--;
		if (text_ok(p, b))
			k = b;
	}
	char key[64];
	int rc;
	if (text_ok(p, k)) {
		snprintf(key, sizeof key, ",\"%s\":", name);
		if ((rc = put_lit(a, key)) < 0)
			return rc;
		return put_json_str(a, p, k);
	}
	snprintf(key, sizeof key, ",\"%s_base64\":\"", name);
	if ((rc = put_lit(a, key)) < 0)
		return rc;
	size_t need = sodium_base64_encoded_len(k, sodium_base64_VARIANT_ORIGINAL);
	char *enc = malloc(need);
	if (!enc)
		return -ENOMEM;
	sodium_bin2base64(enc, need, (const unsigned char *)p, k, sodium_base64_VARIANT_ORIGINAL);
	rc = buf_put(a, enc, strlen(enc));
	free(enc);
	return rc ? rc : buf_put(a, "\"", 1);
}

/* formats r as one line at the end of a->buf; 0 or -ENOMEM (then a->buf is as before) */
static int format_line(rt_audit *a, const rt_audit_rec *r, int64_t ms)
{
	size_t start = a->blen;
	char t[40], num[160];
	int rc = 0;
	rt_registry_format_time(ms, t, sizeof t);
	rc |= put_lit(a, "{\"time\":\"");
	rc |= put_lit(a, t);
	rc |= put_lit(a, "\",\"key_id\":");
	rc |= put_opt_str(a, r->key_id);
	rc |= put_lit(a, ",\"client\":");
	rc |= put_str(a, r->client ? r->client : "");
	rc |= put_lit(a, ",\"action\":");
	rc |= put_str(a, r->action ? r->action : "");
	rc |= put_lit(a, ",\"function\":");
	rc |= put_opt_str(a, r->function);
	if (r->revision > 0) {
		snprintf(num, sizeof num, ",\"revision\":%ld", r->revision);
		rc |= put_lit(a, num);
	} else {
		rc |= put_lit(a, ",\"revision\":null");
	}
	if (r->method) {
		rc |= put_lit(a, ",\"method\":");
		rc |= put_str(a, r->method);
	}
	if (r->path) {
		rc |= put_lit(a, ",\"path\":");
		rc |= put_str(a, r->path);
	}
	if (r->status) {
		snprintf(num, sizeof num, ",\"status\":%d", r->status);
		rc |= put_lit(a, num);
	} else {
		rc |= put_lit(a, ",\"result\":");
		rc |= put_str(a, r->error ? r->error : "ok");
	}
	double lat = r->latency_s > 0 && r->latency_s < 1e9 ? r->latency_s * 1e3 : 0;
	snprintf(num, sizeof num, ",\"latency_ms\":%.3f,\"bytes_in\":%llu,\"bytes_out\":%llu", lat,
		 (unsigned long long)r->bytes_in, (unsigned long long)r->bytes_out);
	rc |= put_lit(a, num);
	if (r->request_id && *r->request_id) {
		rc |= put_lit(a, ",\"request_id\":");
		rc |= put_str(a, r->request_id);
	}
	if (r->payload_max) {
		int cut = 0;
		if (r->payload_in)
			rc |= put_payload(a, "payload_in", r->payload_in, r->payload_in_len, r->payload_max, &cut);
		if (r->payload_out)
			rc |= put_payload(a, "payload_out", r->payload_out, r->payload_out_len,
					  r->payload_max, &cut);
		if (cut)
			rc |= put_lit(a, ",\"payload_truncated\":true");
	}
	rc |= put_lit(a, "}\n");
	if (rc) {
		a->blen = start;
		return -ENOMEM;
	}
	return 0;
}

int rt_audit_write(rt_audit *a, const rt_audit_rec *r, int sync)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	size_t start = a->blen;
	int rc = format_line(a, r, (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
	if (rc < 0)
		return rc;
	size_t len = a->blen - start;
	if (a->fd < 0 && open_log(a) < 0) {
		a->blen = start;
		return -EIO;
	}
	/* rotation happens between lines: write what came before to the old file first */
	if (a->size + start && a->size + a->blen > a->max_bytes) {
		a->blen = start;
		rc = rt_audit_flush(a);
		rotate(a);
		format_line(a, r, (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
		if (rc < 0)
			rt_logf(RT_LOG_ERROR, "audit: lines lost before rotation: %s", strerror(-rc));
		if (a->blen != len)
			return -ENOMEM;
	} else if (a->keep_days > 0 && ts.tv_sec - a->last_prune > 3600) {
		a->last_prune = ts.tv_sec;
		rt_audit_prune(a->dir, a->keep_days, ts.tv_sec);
	}
	if (!sync && a->blen < RT_AUDIT_FLUSH_BYTES)
		return 0;
	rc = rt_audit_flush(a);
	if (rc < 0)
		return rc;
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

/* rt_audit.c — append-only JSON-lines audit log with size rotation, pruning by age and by
 * total size, and sampled refusal lines. Lines are formatted by hand (no JSON tree per call)
 * into a buffer that rt_audit_flush writes with one write(2); admin actions flush and
 * fdatasync at once. See rt_audit.h. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sodium.h>
#include "runtime/base/rt_clock.h"
#include "runtime/access/rt_audit.h"
#include "runtime/base/rt_log.h"
#include "runtime/store/rt_registry.h"

/* the refusals of one client (and key, when one was accepted) in its one-second window */
typedef struct refusal {
	char client[64];
	char key_id[16];         /* "" when refused before a key was accepted */
	int64_t window_ms;       /* CLOCK_MONOTONIC start of the window */
	int64_t since_ms;        /* wall clock of the first suppressed refusal */
	unsigned lines;          /* lines written in the window */
	uint64_t suppressed, n401, n403, n429, nother;
	int used;
} refusal;

#define REF_SLOTS RT_AUDIT_REFUSED_CLIENTS    /* + 1: the shared entry when full */
#define REF_INDEX (2 * RT_AUDIT_REFUSED_CLIENTS) /* open addressing, a power of two */

struct rt_audit {
	char dir[4096];
	char path[4200];
	int fd;
	uint64_t size, max_bytes, max_total;
	int keep_days;
	time_t last_prune;
	unsigned seq;
	char *buf;           /* invocation lines not yet written (rt_audit_flush) */
	size_t blen, bcap;
	int cut;             /* the line being formatted had a field cut (format_line) */
	refusal *ref;        /* REF_SLOTS + 1 entries, made at the first refusal */
	int ref_index[REF_INDEX];   /* slot + 1, 0 = empty */
	int ref_free[REF_SLOTS], ref_nfree, ref_used;
	int64_t all_window_ms;      /* the window of all clients together */
	unsigned all_lines;
	void (*mirror)(void *ud, const char *line, size_t len);   /* sync lines, also */
	void *mirror_ud;
};

void rt_audit_set_mirror(rt_audit *a, void (*fn)(void *ud, const char *line, size_t len),
			 void *ud)
{
	a->mirror = fn;
	a->mirror_ud = ud;
}

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

/* a write or sync failed: drop the descriptor, so the next line reopens the file */
static void drop_fd(rt_audit *a)
{
	if (a->fd >= 0)
		close(a->fd);
	a->fd = -1;
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

/* removes the oldest rotated files while they and a full current file pass max_total */
static void prune_total(rt_audit *a)
{
	char **files;
	size_t n;
	if (!a->max_total || rt_audit_files(a->dir, &files, &n) < 0)
		return;
	uint64_t budget = a->max_total > a->max_bytes ? a->max_total - a->max_bytes : 0, total = 0;
	uint64_t *sz = calloc(n ? n : 1, sizeof *sz);
	if (!sz) {
		rt_audit_files_free(files, n);
		return;
	}
	for (size_t i = 0; i + 1 < n; i++) {   /* the last one is audit.log */
		struct stat st;
		sz[i] = stat(files[i], &st) == 0 ? (uint64_t)st.st_size : 0;
		total += sz[i];
	}
	int removed = 0;
	for (size_t i = 0; i + 1 < n && total > budget; i++) {
		if (unlink(files[i]) == 0)
			removed++;
		total -= sz[i];
	}
	if (removed)
		rt_logf(RT_LOG_WARN, "audit: removed the %d oldest rotated file(s) of %s: all audit files "
			"together stay under %llu bytes (--audit-max-total)", removed, a->dir,
			(unsigned long long)a->max_total);
	free(sz);
	rt_audit_files_free(files, n);
}

void rt_audit_set_max_total(rt_audit *a, uint64_t max_total)
{
	a->max_total = max_total;
	prune_total(a);
}



static int ref_sweep(rt_audit *a, int64_t now_ms);

void rt_audit_close(rt_audit *a)
{
	if (!a)
		return;
	if (a->ref)   /* every window ends: the counts of suppressed refusals are written */
		ref_sweep(a, INT64_MAX / 2);
	int rc = rt_audit_flush(a);
	if (rc < 0)
		rt_logf(RT_LOG_ERROR, "audit: lines lost at close: %s", strerror(-rc));
	if (a->fd >= 0) {
		fdatasync(a->fd);
		close(a->fd);
	}
	free(a->buf);
	free(a->ref);
	free(a);
}

int rt_audit_flush(rt_audit *a)
{
	if (!a || !a->blen)
		return 0;
	int fresh = a->fd < 0;
	int orc = fresh ? open_log(a) : 0;
	if (orc < 0) {
		a->blen = 0;
		return orc;
	}
	size_t off = 0;
	int rc = 0;
	while (off < a->blen) {
		ssize_t n = write(a->fd, a->buf + off, a->blen - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = n < 0 ? -errno : -EIO;
			/* a descriptor opened before may be stale (the file replaced since): one more
			 * try on the file now at the path, unless part of the lines went out */
			if (!fresh && off == 0) {
				fresh = 1;
				drop_fd(a);
				if (open_log(a) == 0) {
					rc = 0;
					continue;
				}
			}
			break;
		}
		off += (size_t)n;
	}
	a->size += off;
	a->blen = 0;
	if (rc < 0)
		drop_fd(a);
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
	prune_total(a);
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

/* an untrusted string: at most RT_AUDIT_FIELD_MAX bytes (not splitting a UTF-8 sequence);
 * a cut sets a->cut, which marks the line "truncated" */
static int put_str(rt_audit *a, const char *s)
{
	size_t n = strlen(s);
	if (n > RT_AUDIT_FIELD_MAX) {
		n = RT_AUDIT_FIELD_MAX;
		for (size_t b = n; b > RT_AUDIT_FIELD_MAX - 4; b--)
			if (((unsigned char)s[b] & 0xc0) != 0x80) {
				n = b;
				break;
			}
		a->cut = 1;
	}
	return put_json_str(a, s, n);
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
	a->cut = 0;
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
	if (r->phase) {
		rc |= put_lit(a, ",\"phase\":");
		rc |= put_str(a, r->phase);
	} else if (r->status) {
		snprintf(num, sizeof num, ",\"status\":%d", r->status);
		rc |= put_lit(a, num);
	} else {
		rc |= put_lit(a, ",\"result\":");
		rc |= put_str(a, r->error ? r->error : "ok");
	}
	double lat = r->latency_s > 0 && r->latency_s < 1e9 ? r->latency_s * 1e3 : 0;
	snprintf(num, sizeof num, ",\"latency_ms\":%.3f,\"bytes_in\":%llu,\"bytes_out\":%llu", lat,
		 (unsigned long long)r->bytes_in, (unsigned long long)r->bytes_out);
	if (!r->phase)
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
	if (a->cut)
		rc |= put_lit(a, ",\"truncated\":true");
	rc |= put_lit(a, "}\n");
	if (rc) {
		a->blen = start;
		return -ENOMEM;
	}
	return 0;
}

/* formats one line at the end of a->buf: format_line or format_summary */
typedef int (*line_fn)(rt_audit *a, const void *arg, int64_t ms);

static int fmt_rec(rt_audit *a, const void *arg, int64_t ms)
{
	return format_line(a, arg, ms);
}

/* appends the line fmt makes, rotating first when it would not fit, and writes the buffer
 * when it is full or sync is set (then with fdatasync) */
static int emit(rt_audit *a, line_fn fmt, const void *arg, int sync)
{
	int64_t ms = rt_clock_wall_ms();
	size_t start = a->blen;
	int rc = fmt(a, arg, ms);
	if (rc < 0)
		return rc;
	size_t len = a->blen - start;
	if (a->fd < 0 && (rc = open_log(a)) < 0) {
		a->blen = start;
		return rc;
	}
	/* rotation happens between lines: write what came before to the old file first */
	if (a->size + start && a->size + a->blen > a->max_bytes) {
		a->blen = start;
		rc = rt_audit_flush(a);
		if (a->fd >= 0)
			rotate(a);
		fmt(a, arg, ms);
		if (rc < 0)
			rt_logf(RT_LOG_ERROR, "audit: lines lost before rotation: %s", strerror(-rc));
		if (a->blen != len)
			return -ENOMEM;
	} else if (a->keep_days > 0 && ms / 1000 - a->last_prune > 3600) {
		a->last_prune = ms / 1000;
		rt_audit_prune(a->dir, a->keep_days, ms / 1000);
	}
	if (!sync && a->blen < RT_AUDIT_FLUSH_BYTES)
		return 0;
	if (sync && a->mirror && len > 1)
		a->mirror(a->mirror_ud, a->buf + a->blen - len, len - 1);   /* less its newline */
	rc = rt_audit_flush(a);
	if (rc < 0)
		return rc;
	if (sync && a->fd < 0)
		return -EIO;
	if (sync && fdatasync(a->fd) < 0) {
		rc = -errno;
		drop_fd(a);
		return rc;
	}
	return 0;
}

int rt_audit_write(rt_audit *a, const rt_audit_rec *r, int sync)
{
	return emit(a, fmt_rec, r, sync);
}

/* ---- refusals: a few lines a second per client, the rest counted ---- */

static int format_summary(rt_audit *a, const void *arg, int64_t ms)
{
	const refusal *e = arg;
	size_t start = a->blen;
	char t[40], since[40], num[256];
	int rc = 0;
	a->cut = 0;
	rt_registry_format_time(ms, t, sizeof t);
	rt_registry_format_time(e->since_ms, since, sizeof since);
	rc |= put_lit(a, "{\"time\":\"");
	rc |= put_lit(a, t);
	rc |= put_lit(a, "\",\"key_id\":");
	rc |= put_opt_str(a, e->key_id);
	rc |= put_lit(a, ",\"client\":");
	rc |= put_str(a, e->client);
	snprintf(num, sizeof num, ",\"action\":\"refused.suppressed\",\"function\":null,"
		 "\"revision\":null,\"suppressed\":%llu,\"statuses\":{\"401\":%llu,\"403\":%llu,"
		 "\"429\":%llu,\"other\":%llu},\"since\":\"%s\"}\n",
		 (unsigned long long)e->suppressed, (unsigned long long)e->n401,
		 (unsigned long long)e->n403, (unsigned long long)e->n429,
		 (unsigned long long)e->nother, since);
	rc |= put_lit(a, num);
	if (rc) {
		a->blen = start;
		return -ENOMEM;
	}
	return 0;
}

static uint32_t hash_str(uint32_t h, const char *s)
{
	for (; *s; s++)   /* FNV-1a */
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

/* the index position holding client + key, or the empty one where it would go */
static int ref_pos(const rt_audit *a, const char *client, const char *kid)
{
	uint32_t i = hash_str(hash_str(2166136261u, client) * 31u + 7u, kid) & (REF_INDEX - 1);
	while (a->ref_index[i]) {
		const refusal *e = &a->ref[a->ref_index[i] - 1];
		if (strcmp(e->client, client) == 0 && strcmp(e->key_id, kid) == 0)
			break;
		i = (i + 1) & (REF_INDEX - 1);
	}
	return (int)i;
}

/* writes the summary of e if it suppressed something; then e starts afresh */
static int ref_summary(rt_audit *a, refusal *e)
{
	int rc = 0;
	if (e->suppressed)
		rc = emit(a, format_summary, e, 0);
	e->suppressed = e->n401 = e->n403 = e->n429 = e->nother = 0;
	e->lines = 0;
	return rc;
}

/* ends the windows over at now (summaries written), frees their entries, rebuilds the index */
static int ref_sweep(rt_audit *a, int64_t now_ms)
{
	int rc = 0, freed = 0;
	for (int i = 0; i <= REF_SLOTS; i++) {
		refusal *e = &a->ref[i];
		if (!e->used || now_ms - e->window_ms < 1000)
			continue;
		int r = ref_summary(a, e);
		rc = rc ? rc : r;
		if (i < REF_SLOTS) {
			e->used = 0;
			a->ref_free[a->ref_nfree++] = i;
			a->ref_used--;
			freed = 1;
		} else {
			e->used = 0;
		}
	}
	if (freed) {
		memset(a->ref_index, 0, sizeof a->ref_index);
		for (int i = 0; i < REF_SLOTS; i++)
			if (a->ref[i].used)
				a->ref_index[ref_pos(a, a->ref[i].client, a->ref[i].key_id)] = i + 1;
	}
	return rc;
}

/* the entry of client + key id (made when new; the shared one when the table is full); NULL:
 * ENOMEM */
static refusal *ref_get(rt_audit *a, const char *client, const char *key_id, int64_t now_ms)
{
	if (!a->ref) {
		a->ref = calloc(REF_SLOTS + 1, sizeof *a->ref);
		if (!a->ref)
			return NULL;
		for (int i = 0; i < REF_SLOTS; i++)
			a->ref_free[i] = REF_SLOTS - 1 - i;
		a->ref_nfree = REF_SLOTS;
		snprintf(a->ref[REF_SLOTS].client, sizeof a->ref[REF_SLOTS].client, "*");
	}
	char c[64], k[16];
	snprintf(c, sizeof c, "%s", client && *client ? client : "unknown");
	snprintf(k, sizeof k, "%s", key_id ? key_id : "");
	int pos = ref_pos(a, c, k);
	if (a->ref_index[pos])
		return &a->ref[a->ref_index[pos] - 1];
	if (!a->ref_nfree) {
		ref_sweep(a, now_ms);
		pos = ref_pos(a, c, k);
	}
	refusal *e;
	if (a->ref_nfree) {
		int slot = a->ref_free[--a->ref_nfree];
		e = &a->ref[slot];
		memset(e, 0, sizeof *e);
		memcpy(e->client, c, sizeof c);
		memcpy(e->key_id, k, sizeof k);
		a->ref_index[pos] = slot + 1;
		a->ref_used++;
	} else {
		e = &a->ref[REF_SLOTS];   /* every other client shares "*" */
		if (e->used)
			return e;
	}
	e->used = 1;
	e->window_ms = now_ms;
	return e;
}

int rt_audit_refusal(rt_audit *a, const rt_audit_rec *r, int64_t now_ms)
{
	refusal *e = ref_get(a, r->client, r->key_id, now_ms);
	if (!e)
		return rt_audit_write(a, r, 0);
	int rc = 0;
	if (now_ms - e->window_ms >= 1000) {
		rc = ref_summary(a, e);
		e->window_ms = now_ms;
	}
	if (now_ms - a->all_window_ms >= 1000) {
		a->all_window_ms = now_ms;
		a->all_lines = 0;
	}
	if (e->lines < RT_AUDIT_REFUSED_PER_S && a->all_lines < RT_AUDIT_REFUSED_ALL_PER_S) {
		e->lines++;
		a->all_lines++;
		int w = rt_audit_write(a, r, 0);
		return rc ? rc : w;
	}
	if (!e->suppressed)
		e->since_ms = rt_clock_wall_ms();
	e->suppressed++;
	if (r->status == 401)
		e->n401++;
	else if (r->status == 403)
		e->n403++;
	else if (r->status == 429)
		e->n429++;
	else
		e->nother++;
	return rc;
}

int rt_audit_tick(rt_audit *a, int64_t now_ms)
{
	if (!a || !a->ref || (!a->ref_used && !a->ref[REF_SLOTS].used))
		return 0;
	return ref_sweep(a, now_ms);
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

/* rt_audit.h — the append-only audit log (issue 7, "Audit"): DATA/audit/audit.log, one JSON
 * object per line for every invocation, every admin action and every refused request (401,
 * 403, 429): time, key id (never the key), client address, action, function, revision,
 * status, latency, bytes in and out, request id. No payloads. Each line is one write(2) on an
 * O_APPEND descriptor, so the daemon and `thaw keys` can both append. Rotated by size
 * (audit.log -> audit-YYYYMMDDTHHMMSSZ-N.log); rotated files older than keep_days are removed
 * (at open, at each rotation and hourly). Admin actions are fsync'd before the call returns. */
#ifndef THAW_RT_AUDIT_H
#define THAW_RT_AUDIT_H
#include <stddef.h>
#include <stdint.h>
#include <time.h>

typedef struct rt_audit rt_audit;

#define RT_AUDIT_DEFAULT_MAX_BYTES (64ull << 20)
#define RT_AUDIT_DEFAULT_DAYS 90

typedef struct rt_audit_rec {
	const char *key_id;      /* NULL: no key (dev mode, or refused before one was known) */
	const char *client;      /* client address */
	const char *action;      /* "invoke", "deploy", "key.create", ... */
	const char *function;    /* NULL when none */
	long revision;           /* 0 when unknown */
	const char *method, *path; /* NULL for CLI actions */
	int status;              /* HTTP status, or 0 for CLI actions (then ok/err by error) */
	double latency_s;
	uint64_t bytes_in, bytes_out;
	const char *request_id;  /* may be NULL */
	const char *error;       /* CLI actions: NULL = success */
} rt_audit_rec;

/* rt_audit_open opens (creating DATA/audit/) the log for appending. max_bytes: rotate when the
 * file would grow past it (0: default); keep_days: remove rotated files older than this (0:
 * keep forever). Caller closes. Returns 0 or a negative errno (message in err). */
int rt_audit_open(const char *data_dir, uint64_t max_bytes, int keep_days, rt_audit **out,
		  char *err, size_t errlen);
void rt_audit_close(rt_audit *a);

/* rt_audit_write appends one line; sync = 1 fsyncs it (admin actions). 0 or a negative errno
 * (the line is then lost; the caller logs it). */
int rt_audit_write(rt_audit *a, const rt_audit_rec *r, int sync);

/* rt_audit_prune removes rotated files in dir (DATA/audit) whose mtime is older than
 * keep_days before now. Returns the number removed, or a negative errno. */
int rt_audit_prune(const char *dir, int keep_days, time_t now);

/* rt_audit_files lists the log files of dir oldest first (rotated ones by name, then
 * audit.log) as a malloc'd array of malloc'd full paths; free with rt_audit_files_free. */
int rt_audit_files(const char *dir, char ***out, size_t *n);
void rt_audit_files_free(char **files, size_t n);

#endif

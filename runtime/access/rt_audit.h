/* rt_audit.h — the append-only audit log: DATA/audit/audit.log, one JSON
 * object per line for every invocation, every admin action and every refused request (401,
 * 403, 429): time, key id (never the key), client address, action, function, revision,
 * status, latency, bytes in and out, request id. No payloads, unless the caller passes them
 * (functions whose manifest opts in with "audit": {"payloads": true}), capped at payload_max
 * bytes each and marked "payload_truncated" when cut.
 * Buffering: lines written with sync = 0 (invocations, refusals) collect in memory and go out
 * in one write(2) on the O_APPEND descriptor when RT_AUDIT_FLUSH_BYTES have collected, at
 * rt_audit_flush (the daemon calls it every RT_AUDIT_FLUSH_MS), before a rotation and at
 * close. A sync = 1 line (admin actions) first writes what is buffered, then itself, then
 * fdatasyncs, so file order is call order. A kill -9 loses at most the buffered lines.
 * A write that fails closes the descriptor; the next line reopens the file (a full disk that
 * gets room again, a replaced file). Untrusted strings (client, path, function, request id,
 * ...) are cut to RT_AUDIT_FIELD_MAX bytes each and the line then carries "truncated": true.
 * Refused requests go through rt_audit_refusal, which writes at most RT_AUDIT_REFUSED_PER_S
 * lines a second per client and key (RT_AUDIT_REFUSED_ALL_PER_S for all together) and counts
 * the rest into one "refused.suppressed" line per client, key and window.
 * Rotated by size (audit.log -> audit-YYYYMMDDTHHMMSSZ-N.log); rotated files older than
 * keep_days are removed (at open, at each rotation and hourly), and the oldest rotated files
 * go while all files together would pass max_total (rt_audit_set_max_total; at open and at
 * each rotation). One rt_audit per thread. */
#ifndef THAW_RT_AUDIT_H
#define THAW_RT_AUDIT_H
#include <stddef.h>
#include <stdint.h>
#include <time.h>

typedef struct rt_audit rt_audit;

#define RT_AUDIT_DEFAULT_MAX_BYTES (64ull << 20)
#define RT_AUDIT_DEFAULT_DAYS 90
#define RT_AUDIT_FLUSH_BYTES (64u << 10)  /* buffered invocation lines: write past this */
#define RT_AUDIT_FLUSH_MS 100               /* ... and at least this often (the daemon's timer) */
#define RT_AUDIT_DEFAULT_MAX_TOTAL (1ull << 30) /* all audit files together */
#define RT_AUDIT_FIELD_MAX 256              /* bytes of one untrusted string in a line */
#define RT_AUDIT_REFUSED_PER_S 5            /* refusal lines a second, per client ... */
#define RT_AUDIT_REFUSED_ALL_PER_S 100      /* ... and for all clients together */
#define RT_AUDIT_REFUSED_CLIENTS 1024       /* clients tracked; past it they share one entry */

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
	const char *phase;       /* "intent": written before an admin action runs (no status, no
	                          * result); NULL: the line of a finished request or action */
	/* payloads (opt-in per function): logged when payload_max > 0, each cut to payload_max
	 * bytes; valid UTF-8 as "payload_in"/"payload_out", other bytes as "..._base64" */
	const char *payload_in, *payload_out;
	size_t payload_in_len, payload_out_len, payload_max;
} rt_audit_rec;

/* rt_audit_open opens (creating DATA/audit/) the log for appending. max_bytes: rotate when the
 * file would grow past it (0: default); keep_days: remove rotated files older than this (0:
 * keep forever). Caller closes. Returns 0 or a negative errno (message in err). */
int rt_audit_open(const char *data_dir, uint64_t max_bytes, int keep_days, rt_audit **out,
		  char *err, size_t errlen);
/* rt_audit_close flushes, fdatasyncs and closes; NULL is a no-op. */
void rt_audit_close(rt_audit *a);

/* rt_audit_write appends one line: sync = 0 buffers it (see above), sync = 1 writes it with
 * everything buffered before it and fdatasyncs (admin actions). 0 or a negative errno (lines
 * not written are then lost; the caller logs it). */
int rt_audit_write(rt_audit *a, const rt_audit_rec *r, int sync);

/* rt_audit_set_mirror hands every sync = 1 line (admin actions) to fn as well, when it is
 * written (line without its newline, len bytes, not NUL-terminated; borrowed for the call):
 * the daemon of a shared registry copies them into the registry's audit table, so the admin
 * trail of a cluster is in one place. fn NULL: none. */
void rt_audit_set_mirror(rt_audit *a, void (*fn)(void *ud, const char *line, size_t len),
			 void *ud);

/* rt_audit_set_max_total bounds all files of the log together (rotated + current) to about
 * max_total bytes: at each rotation (and now) the oldest rotated files are removed until the
 * rotated ones and a full current file fit. 0: no bound. */
void rt_audit_set_max_total(rt_audit *a, uint64_t max_total);

/* rt_audit_refusal logs a refused request (401, 403, 429; r->client names the client,
 * r->key_id the key when one was accepted): as a buffered line while the budget of that
 * client and key for this one-second window lasts, else it only counts it. When a window with
 * suppressed refusals ends, one line {"action": "refused.suppressed", "key_id", "client",
 * "suppressed": N, "statuses": {"401": n, "403": n, "429": n, "other": n}, "since"} is written
 * (at the next refusal or at rt_audit_tick). Past RT_AUDIT_REFUSED_CLIENTS entries in one
 * window, the others share the entry of client "*". now_ms: CLOCK_MONOTONIC milliseconds.
 * 0 or a negative errno. */
int rt_audit_refusal(rt_audit *a, const rt_audit_rec *r, int64_t now_ms);

/* rt_audit_tick writes the summary lines of windows that have ended (the daemon calls it with
 * its flush timer) and forgets idle clients. 0 or a negative errno. NULL a: 0. */
int rt_audit_tick(rt_audit *a, int64_t now_ms);

/* rt_audit_flush writes the buffered lines (no fsync). 0, or a negative errno when the write
 * failed (those lines are dropped, the buffer is empty either way). NULL a: 0. */
int rt_audit_flush(rt_audit *a);

/* rt_audit_pending returns the number of buffered bytes not yet written. */
size_t rt_audit_pending(const rt_audit *a);

/* rt_audit_prune removes rotated files in dir (DATA/audit) whose mtime is older than
 * keep_days before now. Returns the number removed, or a negative errno. */
int rt_audit_prune(const char *dir, int keep_days, time_t now);

/* rt_audit_files lists the log files of dir oldest first (rotated ones by name, then
 * audit.log) as a malloc'd array of malloc'd full paths; free with rt_audit_files_free. */
int rt_audit_files(const char *dir, char ***out, size_t *n);
void rt_audit_files_free(char **files, size_t n);

#endif

/* test_audit.c — rt_audit: one JSON object per line with the documented fields (key id, no
 * payload), rotation by size with every line kept exactly once across the files, pruning of
 * rotated files by age (mtime set back), the file listing order; buffering (invocation lines
 * wait for rt_audit_flush or close, a sync line writes the buffer first, order kept); opt-in
 * payloads (text, base64, truncation, escaping of control bytes and invalid UTF-8); untrusted
 * strings cut and the line marked "truncated"; refusals sampled per client with a summary line
 * counting the rest; the total-size bound on all files; intent lines; a failed write refused
 * (a log that is /dev/full) and the file reopened afterwards. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <utime.h>
#include <jansson.h>
#include "runtime/access/rt_audit.h"
#include "tests/t.h"

static const char *fresh_dir(void)
{
	static char d[1024];
	static int n;
	snprintf(d, sizeof d, "%s/audit-%d", t_tmpdir(), ++n);
	mkdir(d, 0755);
	return d;
}

static void test_line_fields(void)
{
	const char *d = fresh_dir();
	rt_audit *a;
	char err[256], p[1200];
	T_EQ_INT(rt_audit_open(d, 0, 90, &a, err, sizeof err), 0);
	rt_audit_rec r = {.key_id = "0123456789ab", .client = "10.0.0.7", .action = "invoke",
			  .function = "echo", .revision = 3, .method = "POST",
			  .path = "/v1/functions/echo/invoke", .status = 200, .latency_s = 0.0125,
			  .bytes_in = 17, .bytes_out = 99, .request_id = "rid-1"};
	T_EQ_INT(rt_audit_write(a, &r, 1), 0);
	rt_audit_rec c = {.key_id = "0123456789ab", .client = "cli", .action = "key.revoke"};
	T_EQ_INT(rt_audit_write(a, &c, 1), 0);
	rt_audit_close(a);
	snprintf(p, sizeof p, "%s/audit/audit.log", d);
	FILE *f = fopen(p, "r");
	T_CHECK(f != NULL);
	if (!f)
		return;
	char line[2048];
	T_CHECK(fgets(line, sizeof line, f) != NULL);
	json_error_t je;
	json_t *o = json_loads(line, 0, &je);
	T_CHECK(o != NULL);
	T_EQ_STR(json_string_value(json_object_get(o, "key_id")), "0123456789ab");
	T_EQ_STR(json_string_value(json_object_get(o, "client")), "10.0.0.7");
	T_EQ_STR(json_string_value(json_object_get(o, "action")), "invoke");
	T_EQ_STR(json_string_value(json_object_get(o, "function")), "echo");
	T_EQ_INT(json_integer_value(json_object_get(o, "revision")), 3);
	T_EQ_INT(json_integer_value(json_object_get(o, "status")), 200);
	T_EQ_INT(json_integer_value(json_object_get(o, "bytes_in")), 17);
	T_EQ_INT(json_integer_value(json_object_get(o, "bytes_out")), 99);
	T_CHECK(json_real_value(json_object_get(o, "latency_ms")) == 12.5);
	T_CHECK(strlen(json_string_value(json_object_get(o, "time"))) == 24);
	json_decref(o);
	T_CHECK(fgets(line, sizeof line, f) != NULL);
	o = json_loads(line, 0, &je);
	T_EQ_STR(json_string_value(json_object_get(o, "result")), "ok");
	T_CHECK(json_is_null(json_object_get(o, "function")));
	json_decref(o);
	T_CHECK(fgets(line, sizeof line, f) == NULL);
	fclose(f);
}

static void test_rotate_and_prune(void)
{
	const char *d = fresh_dir();
	rt_audit *a;
	char err[256], dir[1200];
	snprintf(dir, sizeof dir, "%s/audit", d);
	/* ~250-byte lines, 4 KiB files: 200 lines make several rotations */
	T_EQ_INT(rt_audit_open(d, 4096, 30, &a, err, sizeof err), 0);
	for (int i = 0; i < 200; i++) {
		char rid[32];
		snprintf(rid, sizeof rid, "seq-%d", i);
		rt_audit_rec r = {.key_id = "aaaaaaaaaaaa", .client = "127.0.0.1", .action = "invoke",
				  .function = "f", .method = "POST", .path = "/v1/functions/f/invoke",
				  .status = 200, .request_id = rid};
		T_EQ_INT(rt_audit_write(a, &r, 0), 0);
	}
	rt_audit_close(a);
	char **files;
	size_t n;
	T_EQ_INT(rt_audit_files(dir, &files, &n), 0);
	T_CHECK(n >= 10);
	/* each file within the bound, every line present once and in order */
	int next = 0, bad = 0;
	for (size_t i = 0; i < n; i++) {
		struct stat st;
		T_CHECK(stat(files[i], &st) == 0 && st.st_size <= 4096);
		FILE *f = fopen(files[i], "r");
		char line[1024];
		while (f && fgets(line, sizeof line, f)) {
			char want[32];
			snprintf(want, sizeof want, "\"seq-%d\"", next);
			bad += strstr(line, want) == NULL;
			next++;
		}
		if (f)
			fclose(f);
	}
	T_EQ_INT(next, 200);
	T_EQ_INT(bad, 0);
	T_CHECK(strstr(files[n - 1], "/audit.log") != NULL);
	/* age two rotated files past 30 days: prune removes exactly those (never audit.log) */
	time_t now = time(NULL);
	struct utimbuf old = {now - 31 * 86400, now - 31 * 86400};
	T_EQ_INT(utime(files[0], &old), 0);
	T_EQ_INT(utime(files[1], &old), 0);
	T_EQ_INT(utime(files[n - 1], &old), 0);
	T_EQ_INT(rt_audit_prune(dir, 30, now), 2);
	T_EQ_INT(rt_audit_prune(dir, 30, now), 0);
	T_EQ_INT(rt_audit_prune(dir, 0, now), 0);
	struct stat st;
	T_CHECK(stat(files[0], &st) < 0 && stat(files[2], &st) == 0 && stat(files[n - 1], &st) == 0);
	rt_audit_files_free(files, n);
	/* reopening prunes too */
	T_EQ_INT(rt_audit_files(dir, &files, &n), 0);
	T_EQ_INT(utime(files[0], &old), 0);
	rt_audit_files_free(files, n);
	size_t before = n;
	T_EQ_INT(rt_audit_open(d, 4096, 30, &a, err, sizeof err), 0);
	rt_audit_close(a);
	T_EQ_INT(rt_audit_files(dir, &files, &n), 0);
	T_EQ_INT(n, before - 1);
	rt_audit_files_free(files, n);
}

static long file_size(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 ? (long)st.st_size : -1;
}

/* every line of path parsed; returns the number of lines, -1 on a line that is not JSON */
static int read_lines(const char *path, json_t **v, int cap)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	static char line[1 << 18];
	int n = 0;
	while (fgets(line, sizeof line, f)) {
		json_error_t je;
		json_t *o = json_loads(line, 0, &je);
		if (!o || n >= cap) {
			json_decref(o);
			n = -1;
			break;
		}
		v[n++] = o;
	}
	fclose(f);
	return n;
}

static void test_buffered(void)
{
	const char *d = fresh_dir();
	rt_audit *a;
	char err[256], p[1200];
	snprintf(p, sizeof p, "%s/audit/audit.log", d);
	T_EQ_INT(rt_audit_open(d, 0, 90, &a, err, sizeof err), 0);
	for (int i = 0; i < 3; i++) {
		char rid[16];
		snprintf(rid, sizeof rid, "b-%d", i);
		rt_audit_rec r = {.client = "127.0.0.1", .action = "invoke", .function = "f",
				  .status = 200, .request_id = rid};
		T_EQ_INT(rt_audit_write(a, &r, 0), 0);
	}
	/* invocation lines wait in memory */
	T_EQ_INT(file_size(p), 0);
	T_CHECK(rt_audit_pending(a) > 0);
	T_EQ_INT(rt_audit_flush(a), 0);
	T_EQ_INT(rt_audit_pending(a), 0);
	long after3 = file_size(p);
	T_CHECK(after3 > 0);
	/* a buffered line, then an admin line: both on disk at once, in call order */
	rt_audit_rec r = {.client = "127.0.0.1", .action = "invoke", .function = "f", .status = 200,
			  .request_id = "b-3"};
	T_EQ_INT(rt_audit_write(a, &r, 0), 0);
	T_EQ_INT(file_size(p), after3);
	rt_audit_rec adm = {.client = "127.0.0.1", .action = "deploy", .function = "f", .status = 201,
			    .request_id = "b-4"};
	T_EQ_INT(rt_audit_write(a, &adm, 1), 0);
	T_EQ_INT(rt_audit_pending(a), 0);
	/* the size threshold flushes without a timer */
	int many = 0;
	while (rt_audit_pending(a) < RT_AUDIT_FLUSH_BYTES / 2 && many < 100000) {
		char rid[16];
		snprintf(rid, sizeof rid, "b-%d", 5 + many);
		rt_audit_rec x = {.client = "127.0.0.1", .action = "invoke", .function = "f",
				  .status = 200, .request_id = rid};
		T_EQ_INT(rt_audit_write(a, &x, 0), 0);
		many++;
	}
	long before_more = file_size(p);
	for (int i = 0; i < many * 2; i++) {
		char rid[16];
		snprintf(rid, sizeof rid, "b-%d", 5 + many + i);
		rt_audit_rec x = {.client = "127.0.0.1", .action = "invoke", .function = "f",
				  .status = 200, .request_id = rid};
		T_EQ_INT(rt_audit_write(a, &x, 0), 0);
	}
	T_CHECK(file_size(p) > before_more);
	T_CHECK(rt_audit_pending(a) < RT_AUDIT_FLUSH_BYTES);
	/* close writes the rest */
	rt_audit_close(a);
	int total = 5 + 3 * many;
	json_t **v = calloc((size_t)total + 1, sizeof *v);
	int n = read_lines(p, v, total + 1);
	T_EQ_INT(n, total);
	int bad = 0;
	for (int i = 0; i < n; i++) {
		char rid[16];
		snprintf(rid, sizeof rid, "b-%d", i);
		bad += strcmp(json_string_value(json_object_get(v[i], "request_id")) ?: "", rid) != 0;
		json_decref(v[i]);
	}
	T_EQ_INT(bad, 0);
	free(v);
}

static void test_payloads(void)
{
	const char *d = fresh_dir();
	rt_audit *a;
	char err[256], p[1200];
	snprintf(p, sizeof p, "%s/audit/audit.log", d);
	T_EQ_INT(rt_audit_open(d, 0, 90, &a, err, sizeof err), 0);
	/* no payload_max: bodies given are still not logged */
	rt_audit_rec r0 = {.client = "c", .action = "invoke", .function = "f", .status = 200,
			   .payload_in = "{\"secret\":1}", .payload_in_len = 12,
			   .payload_out = "{}", .payload_out_len = 2};
	T_EQ_INT(rt_audit_write(a, &r0, 0), 0);
	/* text payloads with a quote, a newline, a control byte and an invalid UTF-8 byte in the
	 * path; UTF-8 kept */
	const char in1[] = "{\"x\":\"a\nb\u00e9\"}\x01";
	rt_audit_rec r1 = {.client = "c", .action = "invoke", .function = "f", .status = 200,
			   .path = "/v1/functions/f/invoke\xff", .payload_max = 4096,
			   .payload_in = in1, .payload_in_len = sizeof in1 - 1,
			   .payload_out = "{\"y\":2}", .payload_out_len = 7};
	T_EQ_INT(rt_audit_write(a, &r1, 0), 0);
	/* truncated: 10 bytes of 26, cut before the 2-byte é at 9..10 -> 9 bytes */
	const char in2[] = "abcdefghi\xc3\xa9klmnopqrstuvwxyz";
	rt_audit_rec r2 = {.client = "c", .action = "invoke", .function = "f", .status = 200,
			   .payload_max = 10, .payload_in = in2, .payload_in_len = sizeof in2 - 1,
			   .payload_out = "", .payload_out_len = 0};
	T_EQ_INT(rt_audit_write(a, &r2, 0), 0);
	/* binary: base64 */
	const unsigned char bin[] = {0, 1, 2, 0xff, 0xfe};
	rt_audit_rec r3 = {.client = "c", .action = "invoke", .function = "f", .status = 200,
			   .payload_max = 4096, .payload_in = (const char *)bin, .payload_in_len = 5,
			   .payload_out = "ok", .payload_out_len = 2};
	T_EQ_INT(rt_audit_write(a, &r3, 0), 0);
	rt_audit_close(a);
	json_t *v[8];
	T_EQ_INT(read_lines(p, v, 8), 4);
	T_CHECK(json_object_get(v[0], "payload_in") == NULL && json_object_get(v[0], "payload_out") == NULL);
	T_EQ_STR(json_string_value(json_object_get(v[1], "payload_in")), "{\"x\":\"a\nb\u00e9\"}\x01");
	T_EQ_STR(json_string_value(json_object_get(v[1], "payload_out")), "{\"y\":2}");
	T_EQ_STR(json_string_value(json_object_get(v[1], "path")), "/v1/functions/f/invoke\xef\xbf\xbd");
	T_CHECK(json_object_get(v[1], "payload_truncated") == NULL);
	T_EQ_STR(json_string_value(json_object_get(v[2], "payload_in")), "abcdefghi");
	T_EQ_STR(json_string_value(json_object_get(v[2], "payload_out")), "");
	T_CHECK(json_is_true(json_object_get(v[2], "payload_truncated")));
	T_EQ_STR(json_string_value(json_object_get(v[3], "payload_in_base64")), "AAEC//4=");
	T_EQ_STR(json_string_value(json_object_get(v[3], "payload_out")), "ok");
	for (int i = 0; i < 4; i++)
		json_decref(v[i]);
}

static void test_truncated_fields(void)
{
	const char *d = fresh_dir();
	rt_audit *a;
	char err[256], p[1200];
	snprintf(p, sizeof p, "%s/audit/audit.log", d);
	T_EQ_INT(rt_audit_open(d, 0, 90, &a, err, sizeof err), 0);
	/* a 4000-byte path ending in 2-byte characters, a 1000-byte function name */
	static char path[4001], fn[1001];
	memset(path, 'p', 4000);
	for (int i = RT_AUDIT_FIELD_MAX - 3; i + 1 < 4000; i += 2) {
		path[i] = (char)0xc3;
		path[i + 1] = (char)0xa9;
	}
	memset(fn, 'f', 1000);
	rt_audit_rec r = {.client = "10.0.0.1", .action = "invoke", .function = fn, .method = "POST",
			  .path = path, .status = 401, .request_id = "rid-t"};
	T_EQ_INT(rt_audit_write(a, &r, 1), 0);
	rt_audit_rec ok = {.client = "10.0.0.1", .action = "invoke", .function = "f", .status = 200};
	T_EQ_INT(rt_audit_write(a, &ok, 1), 0);
	rt_audit_close(a);
	T_CHECK(file_size(p) < 2 * RT_AUDIT_FIELD_MAX + 800);   /* two lines, one with 4 KB of input */
	json_t *v[4];
	T_EQ_INT(read_lines(p, v, 4), 2);
	const char *lp = json_string_value(json_object_get(v[0], "path"));
	const char *lf = json_string_value(json_object_get(v[0], "function"));
	T_CHECK(lp && strlen(lp) <= RT_AUDIT_FIELD_MAX && strlen(lp) >= RT_AUDIT_FIELD_MAX - 3);
	T_CHECK(lp && strncmp(lp, path, strlen(lp)) == 0);   /* cut at a character boundary */
	T_CHECK(lf && strlen(lf) == RT_AUDIT_FIELD_MAX);
	T_CHECK(json_is_true(json_object_get(v[0], "truncated")));
	T_EQ_STR(json_string_value(json_object_get(v[0], "request_id")), "rid-t");
	T_CHECK(json_object_get(v[1], "truncated") == NULL);
	json_decref(v[0]);
	json_decref(v[1]);
}

static void test_refusals_sampled(void)
{
	const char *d = fresh_dir();
	rt_audit *a;
	char err[256], p[1200];
	snprintf(p, sizeof p, "%s/audit/audit.log", d);
	T_EQ_INT(rt_audit_open(d, 0, 90, &a, err, sizeof err), 0);
	/* client A: 1000 refusals in one window, then 3 more a second later; client B: 2 */
	int64_t t0 = 5000;
	for (int i = 0; i < 1000; i++) {
		rt_audit_rec r = {.client = "10.0.0.1", .action = "invoke", .function = "f",
				  .status = i % 10 == 0 ? 429 : 401};
		T_EQ_INT(rt_audit_refusal(a, &r, t0 + i % 900), 0);
	}
	for (int i = 0; i < 2; i++) {
		rt_audit_rec r = {.client = "10.0.0.2", .action = "deploy", .status = 403};
		T_EQ_INT(rt_audit_refusal(a, &r, t0 + 10), 0);
	}
	T_EQ_INT(rt_audit_tick(a, t0 + 950), 0);   /* no window over yet: nothing summarized */
	T_EQ_INT(rt_audit_flush(a), 0);
	json_t *v[64];
	int n = read_lines(p, v, 64);
	T_EQ_INT(n, RT_AUDIT_REFUSED_PER_S + 2);
	for (int i = 0; i < n; i++)
		json_decref(v[i]);
	/* the next refusal of A after its window: the summary of the window first */
	rt_audit_rec r = {.client = "10.0.0.1", .action = "invoke", .function = "f", .status = 401};
	T_EQ_INT(rt_audit_refusal(a, &r, t0 + 1000), 0);
	/* B's window ended without suppressions: no summary at tick; A's new one has none yet */
	T_EQ_INT(rt_audit_tick(a, t0 + 1500), 0);
	for (int i = 0; i < 50; i++)
		T_EQ_INT(rt_audit_refusal(a, &r, t0 + 1600), 0);
	rt_audit_close(a);   /* ends every window: A's second summary */
	n = read_lines(p, v, 64);
	T_EQ_INT(n, RT_AUDIT_REFUSED_PER_S + 2 + 1 + RT_AUDIT_REFUSED_PER_S + 1);
	int summaries = 0;
	long long suppressed = 0;
	for (int i = 0; i < n; i++) {
		const char *act = json_string_value(json_object_get(v[i], "action"));
		if (act && strcmp(act, "refused.suppressed") == 0) {
			summaries++;
			suppressed += json_integer_value(json_object_get(v[i], "suppressed"));
			T_EQ_STR(json_string_value(json_object_get(v[i], "client")), "10.0.0.1");
			T_CHECK(json_string_value(json_object_get(v[i], "since")) != NULL);
			if (summaries == 1) {
				json_t *st = json_object_get(v[i], "statuses");
				T_EQ_INT(json_integer_value(json_object_get(v[i], "suppressed")),
					 1000 - RT_AUDIT_REFUSED_PER_S);
				T_EQ_INT(json_integer_value(json_object_get(st, "429")), 99);
				T_EQ_INT(json_integer_value(json_object_get(st, "401")),
					 900 - RT_AUDIT_REFUSED_PER_S + 1);
			}
		}
		json_decref(v[i]);
	}
	T_EQ_INT(summaries, 2);
	T_EQ_INT(suppressed, 1000 - RT_AUDIT_REFUSED_PER_S + 51 - RT_AUDIT_REFUSED_PER_S);
	/* many clients: the table fills, the rest share "*"; all clients together stay bounded */
	d = fresh_dir();
	snprintf(p, sizeof p, "%s/audit/audit.log", d);
	T_EQ_INT(rt_audit_open(d, 0, 90, &a, err, sizeof err), 0);
	for (int i = 0; i < 3 * RT_AUDIT_REFUSED_CLIENTS; i++) {
		char c[32];
		snprintf(c, sizeof c, "10.1.%d.%d", i / 256, i % 256);
		rt_audit_rec x = {.client = c, .action = "invoke", .status = 401};
		T_EQ_INT(rt_audit_refusal(a, &x, t0 + i % 500), 0);
	}
	rt_audit_close(a);
	static json_t *w[4096];
	n = read_lines(p, w, 4096);
	int lines = 0;
	summaries = 0;
	suppressed = 0;
	for (int i = 0; i < n; i++) {
		const char *act = json_string_value(json_object_get(w[i], "action"));
		if (act && strcmp(act, "refused.suppressed") == 0) {
			summaries++;
			suppressed += json_integer_value(json_object_get(w[i], "suppressed"));
		} else {
			lines++;
		}
		json_decref(w[i]);
	}
	T_EQ_INT(lines, RT_AUDIT_REFUSED_ALL_PER_S);
	T_EQ_INT(lines + suppressed, 3 * RT_AUDIT_REFUSED_CLIENTS);
	T_CHECK(summaries <= RT_AUDIT_REFUSED_CLIENTS + 1);
}

static void test_max_total(void)
{
	const char *d = fresh_dir();
	rt_audit *a;
	char err[256], dir[1200];
	snprintf(dir, sizeof dir, "%s/audit", d);
	T_EQ_INT(rt_audit_open(d, 4096, 0, &a, err, sizeof err), 0);
	rt_audit_set_max_total(a, 5 * 4096);
	for (int i = 0; i < 1000; i++) {
		char rid[32];
		snprintf(rid, sizeof rid, "tot-%d", i);
		rt_audit_rec r = {.client = "127.0.0.1", .action = "invoke", .function = "f",
				  .status = 200, .request_id = rid};
		T_EQ_INT(rt_audit_write(a, &r, 0), 0);
	}
	rt_audit_close(a);
	char **files;
	size_t n;
	T_EQ_INT(rt_audit_files(dir, &files, &n), 0);
	long total = 0;
	for (size_t i = 0; i < n; i++)
		total += file_size(files[i]);
	T_CHECK(n >= 2 && n <= 5);
	T_CHECK(total <= 5 * 4096);
	/* the newest lines are the ones kept */
	char *last = t_read_file(files[n - 1], NULL);
	T_CHECK(last && strstr(last, "\"tot-999\""));
	free(last);
	rt_audit_files_free(files, n);
	/* setting a smaller bound prunes at once (opening without one never prunes by size) */
	T_EQ_INT(rt_audit_open(d, 4096, 0, &a, err, sizeof err), 0);
	T_EQ_INT(rt_audit_files(dir, &files, &n), 0);
	size_t before = n;
	rt_audit_files_free(files, n);
	rt_audit_set_max_total(a, 4096);
	rt_audit_close(a);
	T_EQ_INT(rt_audit_files(dir, &files, &n), 0);
	T_CHECK(before >= 2);
	T_EQ_INT(n, 1);   /* audit.log only */
	rt_audit_files_free(files, n);
}

static void test_intent_and_failure(void)
{
	const char *d = fresh_dir();
	rt_audit *a;
	char err[256], p[1300], dir[1200];
	snprintf(dir, sizeof dir, "%s/audit", d);
	snprintf(p, sizeof p, "%s/audit.log", dir);
	T_EQ_INT(mkdir(dir, 0750), 0);
	/* the log is /dev/full: every write fails, a sync write reports it */
	T_EQ_INT(symlink("/dev/full", p), 0);
	T_EQ_INT(rt_audit_open(d, 0, 0, &a, err, sizeof err), 0);
	rt_audit_rec in = {.key_id = "0123456789ab", .client = "c", .action = "deploy",
			   .function = "f", .method = "PUT", .path = "/v1/functions/f",
			   .request_id = "rid-i", .phase = "intent"};
	T_CHECK(rt_audit_write(a, &in, 1) < 0);
	T_CHECK(rt_audit_write(a, &in, 1) < 0);   /* reopened: still full */
	/* room again (the file replaced): the next line reopens it and succeeds */
	T_EQ_INT(unlink(p), 0);
	T_EQ_INT(rt_audit_write(a, &in, 1), 0);
	rt_audit_rec out = {.key_id = "0123456789ab", .client = "c", .action = "deploy",
			    .function = "f", .method = "PUT", .path = "/v1/functions/f",
			    .status = 201, .request_id = "rid-i"};
	T_EQ_INT(rt_audit_write(a, &out, 1), 0);
	rt_audit_close(a);
	json_t *v[4];
	T_EQ_INT(read_lines(p, v, 4), 2);
	T_EQ_STR(json_string_value(json_object_get(v[0], "phase")), "intent");
	T_CHECK(json_object_get(v[0], "status") == NULL && json_object_get(v[0], "result") == NULL);
	T_EQ_STR(json_string_value(json_object_get(v[0], "action")), "deploy");
	T_EQ_STR(json_string_value(json_object_get(v[0], "request_id")), "rid-i");
	T_CHECK(json_object_get(v[1], "phase") == NULL);
	T_EQ_INT(json_integer_value(json_object_get(v[1], "status")), 201);
	json_decref(v[0]);
	json_decref(v[1]);
}

void t_main(void)
{
	T_RUN(test_truncated_fields);
	T_RUN(test_refusals_sampled);
	T_RUN(test_max_total);
	T_RUN(test_intent_and_failure);
	T_RUN(test_buffered);
	T_RUN(test_payloads);
	T_RUN(test_line_fields);
	T_RUN(test_rotate_and_prune);
}

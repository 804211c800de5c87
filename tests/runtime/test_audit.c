/* test_audit.c — rt_audit: one JSON object per line with the documented fields (key id, no
 * payload), rotation by size with every line kept exactly once across the files, pruning of
 * rotated files by age (mtime set back), the file listing order. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <utime.h>
#include <jansson.h>
#include "runtime/rt_audit.h"
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

void t_main(void)
{
	T_RUN(test_line_fields);
	T_RUN(test_rotate_and_prune);
}

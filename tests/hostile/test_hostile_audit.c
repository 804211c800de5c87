/* test_hostile_audit.c — the audit log under attack, over real HTTP:
 *  - refusal flood: one client sends thousands of 401s with 1000-character paths; the audit
 *    directory grows by a bounded amount (a few lines a second plus one summary line counting
 *    the rest), the lines it has are cut and marked "truncated", and every refusal is either a
 *    line or counted in a summary;
 *  - fail closed: with the audit log unwritable (DATA/audit/audit.log is /dev/full) deploy,
 *    delete and key creation (HTTP and `thaw keys`) are refused with 503 naming the audit log
 *    and not applied; invocations still run; once the log is writable again admin actions
 *    work and leave an intent and an outcome line;
 *  - interleaved calls: slow invocations (a test plugin that sleeps) answered while fast
 *    requests for other functions are routed on other connections; every audit line names
 *    its own function, and the payloads of the function that did not opt in never appear. */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <dirent.h>
#include <jansson.h>
#include "runtime/access/rt_audit.h"
#include "tests/e2e/e2e.h"
#include "tests/t.h"

static const char *bin(void)
{
	const char *b = getenv("THAW_BIN");
	return b ? b : "build/thaw";
}

/* bytes of all files in dir */
static long dir_bytes(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return -1;
	long total = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		char p[1200];
		struct stat st;
		snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
		if (e->d_name[0] != '.' && stat(p, &st) == 0 && S_ISREG(st.st_mode))
			total += (long)st.st_size;
	}
	closedir(d);
	return total;
}

/* runs `thaw ARGS --data DATA`; exit status; the last stdout line in last (cap bytes) */
static int cli(const char *data, const char *args, char *last, size_t cap)
{
	char cmd[2000], line[4096];
	snprintf(cmd, sizeof cmd, "%s %s --data %s 2>&1", bin(), args, data);
	FILE *p = popen(cmd, "r");
	if (!p)
		return -1;
	if (last && cap)
		last[0] = 0;
	while (fgets(line, sizeof line, p))
		if (last && cap) {
			line[strcspn(line, "\n")] = 0;
			snprintf(last, cap, "%s", line);
		}
	int st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int call(const e2e_server *s, const char *method, const char *path, const char *key,
		const char *body, e2e_resp *out)
{
	char h[256] = "";
	if (key)
		snprintf(h, sizeof h, "Authorization: Bearer %s\r\n", key);
	return e2e_call(s, method, path, h, body, out);
}

/* every line of the audit log of data, parsed (a JSON array, new reference) */
static json_t *audit_lines(const char *data)
{
	char p[800];
	snprintf(p, sizeof p, "%s/audit/audit.log", data);
	size_t len;
	char *t = t_read_file(p, &len);
	json_t *arr = json_array();
	for (char *l = t; l && *l;) {
		char *e = strchr(l, '\n');
		if (!e)
			break;
		json_t *o = json_loadb(l, (size_t)(e - l), 0, NULL);
		json_array_append_new(arr, o ? o : json_string("NOT JSON"));
		l = e + 1;
	}
	free(t);
	return arr;
}

static void test_refusal_flood(void)
{
	const char *args[] = {"--auth", "--no-access-log", NULL};
	e2e_server s;
	T_EQ_INT(e2e_start(&s, args, NULL), 0);
	if (!s.pid)
		return;
	char dir[700];
	snprintf(dir, sizeof dir, "%s/audit", s.data_dir);
	long before = dir_bytes(dir);
	enum { N = 3000, BATCH = 50, NAME = 1000 };
	static char raw[BATCH * (NAME + 128)];
	char name[NAME + 1];
	memset(name, 'a', NAME);
	name[NAME] = 0;
	int fd = e2e_connect(&s), n401 = 0;
	double t0 = e2e_now_s();
	T_CHECK(fd >= 0);
	for (int done = 0; fd >= 0 && done < N; done += BATCH) {
		size_t o = 0;
		for (int i = 0; i < BATCH; i++)
			o += (size_t)snprintf(raw + o, sizeof raw - o, "GET /v1/functions/%s HTTP/1.1\r\n"
					      "Host: t\r\nX-Request-Id: flood-%d\r\n\r\n", name, done + i);
		if (e2e_send(fd, raw, o) < 0)
			break;
		for (int i = 0; i < BATCH; i++) {
			e2e_resp r;
			if (e2e_read_resp(fd, &r) < 0)
				break;
			n401 += r.status == 401;
			e2e_resp_free(&r);
		}
	}
	double secs = e2e_now_s() - t0;
	if (fd >= 0)
		close(fd);
	T_EQ_INT(n401, N);
	T_EQ_INT(e2e_stop(&s, SIGTERM, 15), 0);   /* the last window's summary is written at exit */
	long grown = dir_bytes(dir) - before;
	/* unsampled, each line held the whole path: N * > NAME bytes */
	fprintf(stderr, "  %d refusals (1000-character paths) in %.2f s: audit grew %ld bytes "
		"(%.0f bytes per 1000 refusals)\n", N, secs, grown, grown * 1000.0 / N);
	/* a few lines a second, one summary a second, each well under 1 KiB */
	T_CHECK(grown > 0 && grown <= (long)((secs + 2) * (RT_AUDIT_REFUSED_PER_S + 1) * 1024));
	T_CHECK(grown < (long)N * NAME / 20);
	json_t *lines = audit_lines(s.data_dir);
	size_t i;
	json_t *o;
	long written = 0, suppressed = 0, untruncated = 0, summaries = 0;
	json_array_foreach(lines, i, o) {
		const char *act = json_string_value(json_object_get(o, "action"));
		if (act && strcmp(act, "refused.suppressed") == 0) {
			summaries++;
			suppressed += (long)json_integer_value(json_object_get(o, "suppressed"));
			T_EQ_INT(json_integer_value(json_object_get(json_object_get(o, "statuses"), "401")),
				 json_integer_value(json_object_get(o, "suppressed")));
		} else if (json_integer_value(json_object_get(o, "status")) == 401) {
			written++;
			const char *p = json_string_value(json_object_get(o, "path"));
			untruncated += !p || strlen(p) > 300 || !json_is_true(json_object_get(o, "truncated"));
		}
	}
	json_decref(lines);
	T_CHECK(summaries >= 1);
	T_EQ_INT(untruncated, 0);
	T_EQ_INT(written + suppressed, N);
}

static void test_fail_closed(void)
{
	char data[700], last[4096], admin[200], p[800];
	snprintf(data, sizeof data, "%s/closed-data", t_tmpdir());
	T_EQ_INT(cli(data, "keys create --scope admin", admin, sizeof admin), 0);
	T_CHECK(strncmp(admin, "thaw_", 5) == 0);
	const char *args[] = {"--auth", "--no-access-log", NULL};
	e2e_server s;
	T_EQ_INT(e2e_start_in(&s, data, args, NULL), 0);
	if (!s.pid)
		return;
	T_EQ_INT(call(&s, "PUT", "/v1/functions/keep", admin, "{\"kind\":\"echo\"}", NULL), 201);
	e2e_resp r;
	T_EQ_INT(call(&s, "GET", "/v1/keys", admin, NULL, &r), 200);
	json_t *keys0 = json_loadb(r.body, r.body_len, 0, NULL);
	size_t nkeys = json_array_size(json_object_get(keys0, "keys"));
	json_decref(keys0);
	e2e_resp_free(&r);
	T_EQ_INT(e2e_stop(&s, SIGTERM, 15), 0);
	/* the audit log cannot take a byte (as on a full disk) */
	snprintf(p, sizeof p, "%s/audit/audit.log", data);
	T_EQ_INT(unlink(p), 0);
	T_EQ_INT(symlink("/dev/full", p), 0);
	T_EQ_INT(e2e_start_in(&s, data, args, NULL), 0);
	if (!s.pid)
		return;
	T_EQ_INT(call(&s, "PUT", "/v1/functions/new", admin, "{\"kind\":\"echo\"}", &r), 503);
	T_CHECK(r.body && strstr(r.body, "audit log"));
	e2e_resp_free(&r);
	T_EQ_INT(call(&s, "GET", "/v1/functions/new", admin, NULL, NULL), 404);
	T_EQ_INT(call(&s, "DELETE", "/v1/functions/keep", admin, NULL, &r), 503);
	T_CHECK(r.body && strstr(r.body, "audit log"));
	e2e_resp_free(&r);
	T_EQ_INT(call(&s, "GET", "/v1/functions/keep", admin, NULL, NULL), 200);
	T_EQ_INT(call(&s, "POST", "/v1/keys", admin, "{\"scopes\":[\"admin\"]}", &r), 503);
	T_CHECK(r.body && strstr(r.body, "audit log") && !strstr(r.body, "thaw_"));
	e2e_resp_free(&r);
	T_EQ_INT(cli(data, "keys create --scope metrics", last, sizeof last), 1);
	T_CHECK(strstr(last, "audit") && strstr(last, "no key was created"));
	T_EQ_INT(call(&s, "GET", "/v1/keys", admin, NULL, &r), 200);
	json_t *keys1 = json_loadb(r.body, r.body_len, 0, NULL);
	T_EQ_INT(json_array_size(json_object_get(keys1, "keys")), nkeys);
	json_decref(keys1);
	e2e_resp_free(&r);
	/* invocations are not admin actions: they still run */
	T_EQ_INT(call(&s, "POST", "/v1/functions/keep/invoke", admin, "{\"v\":1}", NULL), 200);
	T_CHECK(e2e_wait_log(&s, "cannot write", 10000));
	/* writable again: the next admin action reopens the log and is recorded twice */
	T_EQ_INT(unlink(p), 0);
	T_EQ_INT(call(&s, "PUT", "/v1/functions/new", admin, "{\"kind\":\"echo\"}", NULL), 201);
	T_EQ_INT(call(&s, "GET", "/v1/functions/new", admin, NULL, NULL), 200);
	json_t *lines = audit_lines(data);
	size_t i;
	json_t *o;
	int intent = 0, outcome = 0;
	json_array_foreach(lines, i, o) {
		const char *act = json_string_value(json_object_get(o, "action"));
		const char *ph = json_string_value(json_object_get(o, "phase"));
		if (!act || strcmp(act, "deploy") != 0)
			continue;
		if (ph && strcmp(ph, "intent") == 0 && !outcome)
			intent++;
		else if (json_integer_value(json_object_get(o, "status")) == 201)
			outcome++;
	}
	json_decref(lines);
	T_EQ_INT(intent, 1);
	T_EQ_INT(outcome, 1);
	T_EQ_INT(e2e_stop(&s, SIGTERM, 15), 0);
}

/* a kind whose invoke sleeps in["sleep_ms"] milliseconds, then echoes its input */
static const char *SLEEPY_SRC =
	"#include <time.h>\n"
	"#include \"functions/fn.h\"\n"
	"static int l(const fn_load_args *a, void **st, fn_error *e) { (void)a; (void)e; *st = 0; return 0; }\n"
	"static int inv(void *st, fn_call *c, size_t n) {\n"
	"  (void)st;\n"
	"  for (size_t i = 0; i < n; i++) {\n"
	"    long ms = (long)json_integer_value(json_object_get(c[i].in, \"sleep_ms\"));\n"
	"    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};\n"
	"    nanosleep(&ts, 0);\n"
	"    c[i].err.status = 0;\n"
	"    c[i].out = json_deep_copy(c[i].in);\n"
	"  }\n"
	"  return 0;\n"
	"}\n"
	"static void rel(void *st) { (void)st; }\n"
	"static const fn_kind k = {FN_ABI_VERSION, \"sleepy\", \"sleeps, then echoes\", l, inv, rel};\n"
	"const fn_kind *thaw_fn_kind(void) { return &k; }\n";

/* a safetensors file with one F32 tensor [1] */
static int write_tiny_safetensors(const char *path)
{
	char hdr[64];
	int n = snprintf(hdr, sizeof hdr, "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}");
	while (n % 8)
		hdr[n++] = ' ';
	FILE *f = fopen(path, "wb");
	if (!f)
		return -1;
	uint64_t len = (uint64_t)n;
	float w = 1.0f;
	fwrite(&len, 8, 1, f);
	fwrite(hdr, 1, (size_t)n, f);
	fwrite(&w, 4, 1, f);
	return fclose(f);
}

static void test_interleaved_calls(void)
{
	const char *top = getenv("THAW_SRC") ? getenv("THAW_SRC") : ".";
	char pdir[700], src[800], so[800], st[800], snap[800], cmd[4096];
	snprintf(pdir, sizeof pdir, "%s/sleepy", t_tmpdir());
	snprintf(src, sizeof src, "%s/sleepy.c", pdir);
	snprintf(so, sizeof so, "%s/libthaw_sleepy.so", pdir);
	snprintf(st, sizeof st, "%s/w.safetensors", pdir);
	snprintf(snap, sizeof snap, "%s/w.thaw", pdir);
	mkdir(pdir, 0755);
	FILE *f = fopen(src, "w");
	T_CHECK(f != NULL);
	if (!f)
		return;
	fputs(SLEEPY_SRC, f);
	fclose(f);
	snprintf(cmd, sizeof cmd, "${CC:-cc} -shared -fPIC -I%s -o %s %s 2>&1", top, so, src);
	if (system(cmd) != 0)
		T_SKIP("no C compiler for the test plugin");
	T_EQ_INT(write_tiny_safetensors(st), 0);
	snprintf(cmd, sizeof cmd, "%s snapshot pack %s -o %s --kind sleepy --quiet", bin(), st, snap);
	T_EQ_INT(system(cmd), 0);
	const char *args[] = {"--allow-root", pdir, "--plugin-root", pdir, "--no-access-log", NULL};
	e2e_server s;
	T_EQ_INT(e2e_start(&s, args, NULL), 0);
	if (!s.pid)
		return;
	char body[2400];
	snprintf(body, sizeof body, "{\"kind\":\"plugin:%s\",\"snapshot\":\"%s\"}", so, snap);
	T_EQ_INT(call(&s, "PUT", "/v1/functions/slow", NULL, body, NULL), 201);
	T_EQ_INT(call(&s, "PUT", "/v1/functions/pay", NULL,
		      "{\"kind\":\"echo\",\"audit\":{\"payloads\":true}}", NULL), 201);
	T_EQ_INT(call(&s, "PUT", "/v1/functions/other", NULL, "{\"kind\":\"echo\"}", NULL), 201);
	T_EQ_INT(call(&s, "POST", "/v1/functions/slow/invoke", NULL, "{\"sleep_ms\":0}", NULL), 200);
	enum { ROUNDS = 6 };
	int a = e2e_connect(&s), b = e2e_connect(&s), c = e2e_connect(&s), ok = 0;
	T_CHECK(a >= 0 && b >= 0 && c >= 0);
	for (int i = 0; a >= 0 && b >= 0 && c >= 0 && i < ROUNDS; i++) {
		char raw[1024], sb[128];
		/* a slow call of "slow" (not opted in) ... */
		int bl = snprintf(sb, sizeof sb, "{\"sleep_ms\":400,\"secret\":\"slow-secret-%d\"}", i);
		int n = snprintf(raw, sizeof raw, "POST /v1/functions/slow/invoke HTTP/1.1\r\nHost: t\r\n"
				 "X-Request-Id: slow-%d\r\nContent-Length: %d\r\n\r\n%s", i, bl, sb);
		e2e_send(a, raw, (size_t)n);
		usleep(50000);
		/* ... while requests for other functions are routed and answered, the last one for
		 * "pay", whose payloads are audited */
		n = snprintf(raw, sizeof raw, "GET /v2/models/other HTTP/1.1\r\nHost: t\r\n"
			     "X-Request-Id: get-other-%d\r\n\r\n", i);
		e2e_send(c, raw, (size_t)n);
		usleep(10000);
		n = snprintf(raw, sizeof raw, "GET /v1/functions/pay HTTP/1.1\r\nHost: t\r\n"
			     "X-Request-Id: get-pay-%d\r\n\r\n"
			     "POST /v1/functions/pay/invoke HTTP/1.1\r\nHost: t\r\n"
			     "X-Request-Id: inv-pay-%d\r\nContent-Length: 9\r\n\r\n{\"p\":1%02d}", i, i, i);
		e2e_send(b, raw, (size_t)n);
		e2e_resp r1, r2, r3, r4;
		int got = (e2e_read_resp(c, &r3) == 0) + (e2e_read_resp(b, &r1) == 0) * 2 +
			  (e2e_read_resp(b, &r2) == 0) * 4 + (e2e_read_resp(a, &r4) == 0) * 8;
		int good = got == 15 && r1.status == 200 && r2.status == 200 && r3.status == 200 &&
			   r4.status == 200 && strstr(r4.body, "slow-secret") != NULL;
		ok += good;
		if (!good)
			fprintf(stderr, "  round %d: answers %#x, statuses %d %d %d %d: %.200s\n", i, got,
				got & 2 ? r1.status : 0, got & 4 ? r2.status : 0, got & 1 ? r3.status : 0,
				got & 8 ? r4.status : 0, got & 8 ? r4.body : "");
		if (got & 1)
			e2e_resp_free(&r3);
		if (got & 2)
			e2e_resp_free(&r1);
		if (got & 4)
			e2e_resp_free(&r2);
		if (got & 8)
			e2e_resp_free(&r4);
	}
	if (a >= 0)
		close(a);
	if (b >= 0)
		close(b);
	if (c >= 0)
		close(c);
	T_EQ_INT(ok, ROUNDS);
	T_EQ_INT(e2e_stop(&s, SIGTERM, 15), 0);   /* every buffered line written */
	json_t *lines = audit_lines(s.data_dir);
	size_t i;
	json_t *o;
	int slow_ok = 0, wrong = 0, pay_payloads = 0;
	json_array_foreach(lines, i, o) {
		const char *rid = json_string_value(json_object_get(o, "request_id"));
		const char *fn = json_string_value(json_object_get(o, "function"));
		if (!rid)
			continue;
		char *dump = json_dumps(o, 0);
		if (dump && strstr(dump, "slow-secret"))
			wrong++, fprintf(stderr, "  payload of 'slow' in the log: %s\n", dump);
		free(dump);
		const char *want = !strncmp(rid, "slow-", 5) ? "slow" :
				   !strncmp(rid, "inv-pay-", 8) ? "pay" : NULL;
		if (!want)
			continue;
		if (!fn || strcmp(fn, want) != 0) {
			wrong++;
			fprintf(stderr, "  %s named function %s\n", rid, fn ? fn : "null");
		} else if (!strcmp(want, "slow")) {
			slow_ok++;
			wrong += json_object_get(o, "payload_in") != NULL;
		} else {
			pay_payloads += json_object_get(o, "payload_in") != NULL;
		}
	}
	json_decref(lines);
	T_EQ_INT(slow_ok, ROUNDS);
	T_EQ_INT(pay_payloads, ROUNDS);
	T_EQ_INT(wrong, 0);
}

void t_main(void)
{
	T_RUN(test_refusal_flood);
	T_RUN(test_fail_closed);
	T_RUN(test_interleaved_calls);
}

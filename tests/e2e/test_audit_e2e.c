/* test_audit_e2e.c — the audit log over real HTTP: payloads only for a function whose
 * manifest opts in ("audit": {"payloads": true, "max_bytes": N}, cut and marked truncated),
 * never for others; a bad "audit" field is a 400 naming it; admin lines are on disk when the
 * response arrives (written and fsync'd synchronously); invocation lines are buffered and show
 * up within the flush interval (polled, bounded); SIGTERM right after a burst of invocations
 * loses no line and keeps their order. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <jansson.h>
#include "tests/e2e/e2e.h"
#include "tests/t.h"

static e2e_server srv;

static int req(const char *method, const char *path, const char *body, const char *rid, e2e_resp *out)
{
	char ridh[128] = "";
	if (rid)
		snprintf(ridh, sizeof ridh, "X-Request-Id: %s\r\n", rid);
	return e2e_call(&srv, method, path, ridh, body, out);
}

/* the audit file's text (malloc'd) */
static char *audit_text(void)
{
	char p[700];
	snprintf(p, sizeof p, "%s/audit/audit.log", srv.data_dir);
	return t_read_file(p, NULL);
}

/* the line holding needle, parsed (NULL when absent); waits up to 20 s for a flush (every
 * 100 ms, but ASan on a loaded machine is slow) */
static json_t *wait_line(const char *needle)
{
	for (int i = 0; i < 400; i++) {
		char *t = audit_text();
		char *p = t ? strstr(t, needle) : NULL;
		if (p) {
			while (p > t && p[-1] != '\n')
				p--;
			char *e = strchr(p, '\n');
			json_error_t je;
			json_t *o = e ? json_loadb(p, (size_t)(e - p), 0, &je) : NULL;
			free(t);
			return o;
		}
		free(t);
		usleep(50000);
	}
	return NULL;
}

static void test_payload_opt_in(void)
{
	T_EQ_INT(e2e_start(&srv, NULL, NULL), 0);
	T_EQ_INT(req("PUT", "/v1/functions/pay", "{\"kind\":\"echo\",\"audit\":{\"payloads\":true,\"max_bytes\":16}}",
		     "dep-pay", NULL), 201);
	/* admin lines are written before the response: no waiting */
	char *t = audit_text();
	T_CHECK(t && strstr(t, "\"request_id\":\"dep-pay\"") && strstr(t, "\"action\":\"deploy\""));
	free(t);
	T_EQ_INT(req("PUT", "/v1/functions/quiet", "{\"kind\":\"echo\"}", NULL, NULL), 201);
	e2e_resp r;
	T_EQ_INT(req("PUT", "/v1/functions/bad", "{\"kind\":\"echo\",\"audit\":{\"payloads\":\"yes\"}}",
		     NULL, &r), 400);
	T_CHECK(r.body && strstr(r.body, "audit.payloads"));
	e2e_resp_free(&r);
	T_EQ_INT(req("POST", "/v1/functions/pay/invoke", "{\"msg\":\"hello-payload-12345\"}", "inv-pay", NULL), 200);
	T_EQ_INT(req("POST", "/v1/functions/quiet/invoke", "{\"secret\":\"quiet-zz\"}", "inv-quiet", NULL), 200);
	json_t *p = wait_line("\"request_id\":\"inv-pay\"");
	json_t *q = wait_line("\"request_id\":\"inv-quiet\"");
	T_CHECK(p != NULL && q != NULL);
	if (p) {
		T_EQ_STR(json_string_value(json_object_get(p, "payload_in")), "{\"msg\":\"hello-pa");
		T_CHECK(json_string_value(json_object_get(p, "payload_out")) != NULL);
		T_CHECK(json_is_true(json_object_get(p, "payload_truncated")));
		T_EQ_INT(json_integer_value(json_object_get(p, "status")), 200);
	}
	if (q) {
		T_CHECK(json_object_get(q, "payload_in") == NULL && json_object_get(q, "payload_out") == NULL);
		T_EQ_STR(json_string_value(json_object_get(q, "function")), "quiet");
	}
	json_decref(p);
	json_decref(q);
	t = audit_text();
	T_CHECK(t && !strstr(t, "quiet-zz"));
	free(t);
	T_EQ_INT(e2e_stop(&srv, SIGTERM, 10), 0);
}

/* a burst on one keep-alive connection, SIGTERM at once: every line is in the file, in order */
static void test_sigterm_flushes(void)
{
	T_EQ_INT(e2e_start(&srv, NULL, NULL), 0);
	int fd = e2e_connect(&srv);
	T_CHECK(fd >= 0);
	if (fd < 0)
		return;
	enum { N = 300 };
	int ok = 0;
	for (int i = 0; i < N; i++) {
		char raw[512];
		int n = snprintf(raw, sizeof raw, "POST /v1/functions/echo/invoke HTTP/1.1\r\nHost: t\r\n"
				 "X-Request-Id: burst-%d\r\nContent-Length: 2\r\n\r\n{}", i);
		e2e_resp r;
		if (e2e_send(fd, raw, (size_t)n) == 0 && e2e_read_resp(fd, &r) == 0) {
			ok += r.status == 200;
			e2e_resp_free(&r);
		}
	}
	close(fd);
	T_EQ_INT(ok, N);
	T_EQ_INT(e2e_stop(&srv, SIGTERM, 10), 0);
	char *t = audit_text();
	T_CHECK(t != NULL);
	if (!t)
		return;
	int found = 0, in_order = 1;
	const char *prev = t;
	for (int i = 0; i < N; i++) {
		char want[64];
		snprintf(want, sizeof want, "\"request_id\":\"burst-%d\"", i);
		const char *at = strstr(t, want);
		found += at != NULL;
		if (at && at < prev)
			in_order = 0;
		if (at)
			prev = at;
	}
	T_EQ_INT(found, N);
	T_CHECK(in_order);
	free(t);
}

void t_main(void)
{
	T_RUN(test_payload_opt_in);
	T_RUN(test_sigterm_flushes);
}

/* test_cors.c — runtime/http/rt_cors.c: which origins `--cors-origin` accepts, and a keyed daemon
 * started with two origins (and one with "*", one with none) answering browsers: preflights
 * at the head without a key, the allow headers on every answer to an allowed origin (errors
 * too, so a page can read them), nothing for other origins, never credentials. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include "tests/t.h"
#include "tests/e2e/e2e.h"
#include "runtime/http/rt_cors.h"

static void test_valid_origins(void)
{
	static const char *const good[] = {"*", "https://ui.example.com", "http://localhost:3000",
					   "http://[::1]:8080", "HTTPS://UI.Example.com", "http://a"};
	static const char *const bad[] = {"", "null", "ui.example.com", "https://ui.example.com/",
					  "https://ui.example.com/app", "ftp://x", "https://",
					  "http://x:0", "http://x:65536", "http://x:", "http://[zz]",
					  "http://a b", "http://x:80x", "https://ex.com?q=1"};
	char err[160];
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
		T_EQ_INT(rt_cors_valid_origin(good[i], err, sizeof err), 0);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		err[0] = 0;
		T_EQ_INT(rt_cors_valid_origin(bad[i], err, sizeof err), -EINVAL);
		T_CHECK(err[0] != 0);
	}
	char longo[300] = "https://";
	memset(longo + 8, 'a', 250);
	longo[258] = 0;
	T_EQ_INT(rt_cors_valid_origin(longo, err, sizeof err), -EINVAL);
}

static int has(const e2e_resp *r, const char *name, const char *want)
{
	char *v = e2e_header(r, name);
	int ok = want ? v && !strcmp(v, want) : v == NULL;
	if (!ok)
		fprintf(stderr, "  %s: %s (want %s)\n", name, v ? v : "(none)", want ? want : "(none)");
	free(v);
	return ok;
}

#define PRE(origin, method) "Origin: " origin "\r\nAccess-Control-Request-Method: " method \
	"\r\nAccess-Control-Request-Headers: authorization, content-type\r\n"

static void test_keyed_server(void)
{
	e2e_server s;
	const char *args[] = {"--auth", "--cors-origin", "https://ui.example.com", "--cors-origin",
			      "http://localhost:3000", NULL};
	T_EQ_INT(e2e_start(&s, args, NULL), 0);
	e2e_resp r;
	/* a preflight from an allowed origin: answered without a key */
	T_EQ_INT(e2e_call(&s, "OPTIONS", "/v1/functions/echo/invoke", PRE("https://ui.example.com", "POST"),
		      NULL, &r), 200);
	T_CHECK(has(&r, "Access-Control-Allow-Origin", "https://ui.example.com"));
	T_CHECK(has(&r, "Vary", "Origin"));
	char *m = e2e_header(&r, "Access-Control-Allow-Methods");
	T_CHECK(m && strstr(m, "POST"));
	free(m);
	char *h = e2e_header(&r, "Access-Control-Allow-Headers");
	T_CHECK(h && strstr(h, "Authorization") && strstr(h, "Content-Type"));
	free(h);
	T_CHECK(has(&r, "Access-Control-Max-Age", "600"));
	T_CHECK(has(&r, "Access-Control-Allow-Credentials", NULL));
	e2e_resp_free(&r);
	/* origins compare exactly (scheme, host and port; case aside) */
	T_EQ_INT(e2e_call(&s, "OPTIONS", "/v1/functions/echo/invoke", PRE("HTTPS://UI.EXAMPLE.COM", "POST"),
		      NULL, &r), 200);
	e2e_resp_free(&r);
	static const char *const others[] = {"https://evil.example.com", "http://ui.example.com",
					     "https://ui.example.com:8443", "null",
					     "https://ui.example.com.evil.com"};
	for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
		char hd[256];
		snprintf(hd, sizeof hd, "Origin: %s\r\nAccess-Control-Request-Method: POST\r\n", others[i]);
		T_EQ_INT(e2e_call(&s, "OPTIONS", "/v1/functions/echo/invoke", hd, NULL, &r), 403);
		T_CHECK(has(&r, "Access-Control-Allow-Origin", NULL));
		T_CHECK(strstr(r.body, "not allowed") != NULL);
		e2e_resp_free(&r);
		/* an actual request from it: served as for any client, no CORS grant */
		snprintf(hd, sizeof hd, "Origin: %s\r\n", others[i]);
		T_EQ_INT(e2e_call(&s, "GET", "/healthz", hd, NULL, &r), 200);
		T_CHECK(has(&r, "Access-Control-Allow-Origin", NULL));
		T_CHECK(has(&r, "Vary", "Origin"));
		e2e_resp_free(&r);
	}
	/* a preflight for a path with no route: 404 */
	T_EQ_INT(e2e_call(&s, "OPTIONS", "/nope", PRE("http://localhost:3000", "GET"), NULL, &r), 404);
	e2e_resp_free(&r);
	/* the actual call without a key: 401 the page can read (allow + exposed headers) */
	T_EQ_INT(e2e_call(&s, "POST", "/v1/functions/echo/invoke", "Origin: http://localhost:3000\r\n",
		      "{\"a\":1}", &r), 401);
	T_CHECK(has(&r, "Access-Control-Allow-Origin", "http://localhost:3000"));
	char *ex = e2e_header(&r, "Access-Control-Expose-Headers");
	T_CHECK(ex && strstr(ex, "X-Request-Id") && strstr(ex, "Retry-After"));
	free(ex);
	T_CHECK(has(&r, "Access-Control-Allow-Credentials", NULL));
	e2e_resp_free(&r);
	/* no Origin (curl, SDKs, same-origin): no CORS headers; OPTIONS without a preflight's
	 * request method is an ordinary request (405) */
	T_EQ_INT(e2e_call(&s, "GET", "/healthz", NULL, NULL, &r), 200);
	T_CHECK(has(&r, "Access-Control-Allow-Origin", NULL));
	T_CHECK(has(&r, "Vary", NULL));
	e2e_resp_free(&r);
	T_EQ_INT(e2e_call(&s, "OPTIONS", "/healthz", "Origin: http://localhost:3000\r\n", NULL, &r), 405);
	e2e_resp_free(&r);
	T_EQ_INT(e2e_stop(&s, 15, 20), 0);
}

static void test_any_and_none(void)
{
	e2e_server s;
	e2e_resp r;
	const char *any[] = {"--dev", "--cors-origin", "*", NULL};
	T_EQ_INT(e2e_start(&s, any, NULL), 0);
	/* "*" answers "*", never the caller's origin reflected */
	T_EQ_INT(e2e_call(&s, "POST", "/v1/functions/echo/invoke", "Origin: https://a.example\r\n",
		      "{\"a\":1}", &r), 200);
	T_CHECK(has(&r, "Access-Control-Allow-Origin", "*"));
	T_CHECK(has(&r, "Access-Control-Allow-Credentials", NULL));
	e2e_resp_free(&r);
	T_EQ_INT(e2e_stop(&s, 15, 20), 0);
	const char *none[] = {"--dev", NULL};
	T_EQ_INT(e2e_start(&s, none, NULL), 0);
	T_EQ_INT(e2e_call(&s, "OPTIONS", "/v1/functions/echo/invoke", PRE("https://a.example", "POST"),
		      NULL, &r), 405);
	T_CHECK(has(&r, "Access-Control-Allow-Origin", NULL));
	e2e_resp_free(&r);
	T_EQ_INT(e2e_stop(&s, 15, 20), 0);
	/* a bad origin stops the daemon at start with exit status 2 */
	char cmd[1024];
	const char *b = getenv("THAW_BIN");
	snprintf(cmd, sizeof cmd, "%s serve --dev --port 0 --cors-origin https://x/app 2>/dev/null",
		 b ? b : "build/thaw");
	int st = system(cmd);
	T_EQ_INT(WIFEXITED(st) ? WEXITSTATUS(st) : -1, 2);
}

void t_main(void)
{
	T_RUN(test_valid_origins);
	T_RUN(test_keyed_server);
	T_RUN(test_any_and_none);
}

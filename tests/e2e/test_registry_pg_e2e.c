/* test_registry_pg_e2e.c — two daemons on one PostgreSQL registry (`thaw serve --registry
 * postgresql://...`, a real server started by tests/pg.h), over real HTTP: a key made with
 * `thaw keys create --registry` works on both (one shared hash secret), a deploy and a
 * traffic change on one node hold on the other within a second, a key made through one node's
 * API works on the other, and with PostgreSQL stopped warm calls answer 200 while deploys,
 * deletes and key changes answer 503 {"error": "registry unavailable: postgresql: ..."} with
 * Retry-After: 1; once it is back, deploys work again without a restart. The admin trail of
 * both nodes and the CLI is read back with `thaw audit tail --registry`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "tests/e2e/e2e.h"
#include "tests/pg.h"
#include "tests/t.h"

static char uri[512];

/* runs `thaw ARGS` (the URI appended as --registry), last stdout line in last, the whole
 * output in all; the exit status */
static int cli(const char *args, char *last, size_t cap, char *all, size_t allcap)
{
	char cmd[2000], line[4096];
	snprintf(cmd, sizeof cmd, "%s %s --registry '%s' 2>&1", t_bin(), args, uri);
	FILE *p = popen(cmd, "r");
	if (!p)
		return -1;
	size_t used = 0;
	if (last)
		last[0] = 0;
	if (all)
		all[0] = 0;
	while (fgets(line, sizeof line, p)) {
		line[strcspn(line, "\n")] = 0;
		if (last && cap) {
			size_t l = strlen(line) < cap ? strlen(line) : cap - 1;
			memcpy(last, line, l);
			last[l] = 0;
		}
		if (all && used + strlen(line) + 2 < allcap)
			used += (size_t)sprintf(all + used, "%s\n", line);
	}
	int st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int call(const e2e_server *s, const char *method, const char *path, const char *key,
		const char *body, e2e_resp *out)
{
	char auth[320];
	snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", key);
	return e2e_call(s, method, path, auth, body, out);
}

/* polls GET /v1/functions/NAME on s until its "revision" is rev (up to ms) */
static int wait_revision(const e2e_server *s, const char *key, const char *name, int rev, int ms)
{
	char path[128], auth[320];
	snprintf(path, sizeof path, "/v1/functions/%s", name);
	snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", key);
	double end = e2e_now_s() + ms / 1e3;
	do {
		json_t *o = NULL;
		int st = e2e_call_json(s, "GET", path, auth, NULL, &o);
		int got = st == 200 ? (int)json_integer_value(json_object_get(o, "revision")) : -1;
		json_decref(o);
		if (got == rev)
			return 1;
		usleep(10000);
	} while (e2e_now_s() < end);
	return 0;
}

static void test_two_nodes(void)
{
	t_pg *pg = t_pg_server();
	if (!pg || t_pg_new_db(pg, uri, sizeof uri) < 0)
		return;
	/* a password the server does not need (trust): it must show up nowhere */
	strncat(uri, "&password=hunter2", sizeof uri - strlen(uri) - 1);
	char admin[256], out[8192];
	T_EQ_INT(cli("keys create --scope admin", admin, sizeof admin, NULL, 0), 0);
	T_CHECK(strncmp(admin, "thaw_", 5) == 0);
	const char *args_a[] = {"--registry", uri, "--node-id", "node-a", NULL};
	const char *args_b[] = {"--registry", uri, "--node-id", "node-b", NULL};
	e2e_server a, b;
	int a_ok = e2e_start(&a, args_a, NULL) == 0;
	int b_ok = a_ok && e2e_start(&b, args_b, NULL) == 0;
	T_CHECK(a_ok && b_ok);
	if (!a_ok || !b_ok) {
		if (a_ok)
			e2e_stop(&a, 9, 5);
		return;
	}
	T_CHECK(e2e_log_contains(&a, "\"registry\":\"postgresql\""));
	T_CHECK(!e2e_log_contains(&a, "hunter2"));

	/* a deploy on a is callable on b */
	T_EQ_INT(call(&a, "PUT", "/v1/functions/fx", admin, "{\"kind\":\"echo\"}", NULL), 201);
	T_CHECK(wait_revision(&b, admin, "fx", 1, 1000));
	e2e_resp r;
	T_EQ_INT(call(&b, "POST", "/v1/functions/fx/invoke", admin, "{\"x\":7}", &r), 200);
	T_CHECK(r.body && strstr(r.body, "7"));
	e2e_resp_free(&r);
	T_EQ_INT(call(&b, "PUT", "/v1/functions/fx", admin, "{\"kind\":\"echo\",\"concurrency\":2}",
		      NULL), 200);
	T_CHECK(wait_revision(&a, admin, "fx", 2, 1000));
	/* a key made through a's API works on b */
	json_t *k = NULL;
	char auth[300];
	snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", admin);
	T_EQ_INT(e2e_call_json(&a, "POST", "/v1/keys", auth, "{\"scopes\":[\"invoke:fx\"]}", &k), 201);
	char inv[256] = "";
	snprintf(inv, sizeof inv, "%s", json_string_value(json_object_get(k, "key")) ?
		 json_string_value(json_object_get(k, "key")) : "");
	json_decref(k);
	double end = e2e_now_s() + 1;
	int st;
	while ((st = call(&b, "POST", "/v1/functions/fx/invoke", inv, "{}", NULL)) != 200 &&
	       e2e_now_s() < end)
		usleep(10000);
	T_EQ_INT(st, 200);
	T_EQ_INT(call(&a, "POST", "/v1/functions/fx/invoke", inv, "{}", NULL), 200);

	/* a function with weights on a, for a job */
	char cmd[2400];
	snprintf(cmd, sizeof cmd, "mkdir -p %s/snapshots && %s snapshot pack "
		 "%s/tests/data/mlp_digits/model.safetensors -o %s/snapshots/digits.thaw --kind mlp "
		 ">/dev/null", a.data_dir, t_bin(), t_src(), a.data_dir);
	T_EQ_INT(system(cmd), 0);
	T_EQ_INT(call(&a, "PUT", "/v1/functions/digits", admin, "{\"kind\":\"mlp\",\"snapshot\":"
		      "\"digits.thaw\"}", NULL), 201);

	/* both views hold fx as it is now (a change heard after a load drops it again, so let the
	 * notifications settle first) */
	usleep(150000);
	T_EQ_INT(call(&a, "POST", "/v1/functions/fx/invoke", inv, "{}", NULL), 200);
	T_EQ_INT(call(&b, "POST", "/v1/functions/fx/invoke", inv, "{}", NULL), 200);

	/* PostgreSQL goes away: warm calls keep answering, writes get 503 */
	T_EQ_INT(t_pg_stop(pg), 0);
	usleep(100000);
	for (int i = 0; i < 5; i++) {
		T_EQ_INT(call(&a, "POST", "/v1/functions/fx/invoke", inv, "{\"i\":1}", NULL), 200);
		T_EQ_INT(call(&b, "POST", "/v1/functions/fx/invoke", inv, "{\"i\":2}", NULL), 200);
	}
	T_EQ_INT(call(&a, "PUT", "/v1/functions/fx", admin, "{\"kind\":\"echo\"}", &r), 503);
	T_CHECK(r.body && strstr(r.body, "\"registry unavailable: postgresql: "));
	char *ra = e2e_header(&r, "Retry-After");
	T_CHECK(ra && strcmp(ra, "1") == 0);
	free(ra);
	e2e_resp_free(&r);
	T_EQ_INT(call(&b, "DELETE", "/v1/functions/fx", admin, NULL, NULL), 503);
	/* a function b never loaded cannot be looked up meanwhile: 503 too, not 404 */
	T_EQ_INT(call(&b, "POST", "/v1/functions/digits/invoke", admin, "{}", &r), 503);
	ra = e2e_header(&r, "Retry-After");
	T_CHECK(ra && strcmp(ra, "1") == 0);
	free(ra);
	e2e_resp_free(&r);
	T_EQ_INT(call(&b, "PUT", "/v1/functions/fx", admin, "{\"traffic\":{\"1\":100}}", NULL), 503);
	T_EQ_INT(call(&a, "POST", "/v1/keys", admin, "{\"scopes\":[\"metrics\"]}", NULL), 503);
	T_EQ_INT(call(&a, "POST", "/v1/jobs", admin, "{\"type\":\"quantize\",\"function\":"
		      "\"digits\"}", &r), 503);
	if (r.status != 503)
		fprintf(stderr, "  jobs: %s\n", r.body ? r.body : "");
	e2e_resp_free(&r);
	T_EQ_INT(call(&a, "POST", "/v1/functions/fx/invoke", inv, "{}", &r), 200);
	if (r.status != 200) {
		fprintf(stderr, "  answer: %s\n", r.body ? r.body : "");
		char cmd[700];
		snprintf(cmd, sizeof cmd, "tail -n 30 %s >&2", a.log_path);
		if (system(cmd)) {}
	}
	e2e_resp_free(&r);

	/* back: deploys work again without a restart, and the nodes agree */
	T_EQ_INT(t_pg_start(pg), 0);
	end = e2e_now_s() + 5;
	while ((st = call(&a, "PUT", "/v1/functions/fx", admin, "{\"kind\":\"echo\"}", NULL)) != 200 &&
	       e2e_now_s() < end)
		usleep(50000);
	T_EQ_INT(st, 200);
	T_CHECK(wait_revision(&b, admin, "fx", 3, 2000));
	T_EQ_INT(call(&b, "POST", "/v1/functions/fx/invoke", inv, "{}", NULL), 200);

	/* the cluster's admin trail: the CLI's key and both nodes' deploys */
	T_EQ_INT(cli("audit tail -n 100", NULL, 0, out, sizeof out), 0);
	T_CHECK(strstr(out, "\"key.create\"") != NULL);
	T_CHECK(strstr(out, "\"client\":\"cli\"") != NULL);
	T_EQ_INT(cli("audit grep deploy", NULL, 0, out, sizeof out), 0);
	T_CHECK(strstr(out, "fx") != NULL);
	T_CHECK(strstr(out, "{\"node\":\"node-a\",") != NULL);
	T_CHECK(strstr(out, "{\"node\":\"node-b\",") != NULL);
	T_EQ_INT(cli("keys list", NULL, 0, out, sizeof out), 0);
	T_CHECK(strstr(out, "invoke:fx") != NULL);
	T_EQ_INT(e2e_stop(&a, 15, 10), 0);
	T_EQ_INT(e2e_stop(&b, 15, 10), 0);
	/* the logs named the database (the outage) and never the password */
	T_CHECK(e2e_log_contains(&a, "connection lost"));
	T_CHECK(e2e_log_contains(&a, "password=***"));
	T_CHECK(!e2e_log_contains(&a, "hunter2") && !e2e_log_contains(&b, "hunter2"));
}

/* bad --registry values are refused at start with a clear message */
static void test_bad_registry(void)
{
	char cmd[1200], out[4096] = "";
	snprintf(cmd, sizeof cmd, "%s serve --port 0 --data %s/bad --registry 'mysql://u:topsecret@h/x'"
		 " 2>&1", t_bin(), t_tmpdir());
	FILE *p = popen(cmd, "r");
	size_t n = p ? fread(out, 1, sizeof out - 1, p) : 0;
	out[n] = 0;
	int st = p ? pclose(p) : -1;
	T_CHECK(WIFEXITED(st) && WEXITSTATUS(st) != 0);
	T_CHECK(strstr(out, "unknown scheme") != NULL);
	T_CHECK(strstr(out, "topsecret") == NULL);
}

void t_main(void)
{
	T_RUN(test_bad_registry);
	T_RUN(test_two_nodes);
}

/* test_cli_e2e.c — the `thaw` CLI against a real `thaw serve`, as a new user meets it:
 * deploy without --kind (the snapshot's kind, over the CLI and over HTTP), --rate-limit,
 * --json outputs that parse as JSON (deploy, jobs submit, jobs list, status), a traffic-only
 * deploy that says it moved traffic, `thaw status` showing the revisions that serve, reals in
 * shortest form (0.003, not 0.0030000000000000001), sizes in binary units, and the server found
 * from $PORT when $THAW_URL is unset. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "tests/e2e/e2e.h"
#include "tests/t.h"

static e2e_server srv;
static int srv_ok;
static char url[64];
static char out[65536];

#define NEED() do { if (!srv_ok) { T_CHECK(!"server did not start"); return; } } while (0)

/* thaw runs `THAW_BIN args` (a shell fragment) with THAW_URL set to the server; stdout in out,
 * stderr appended to out after a "--stderr--" line. Returns the exit status. */
static int thaw(const char *args)
{
	return t_sh(out, sizeof out, "THAW_URL=%s %s %s 2>%s/err.txt; rc=$?; echo '--stderr--'; "
		    "cat %s/err.txt; exit $rc", url, t_bin(), args, t_tmpdir(), t_tmpdir());
}

/* stdout_json parses what thaw() printed before its stderr marker as JSON (a new reference) */
static json_t *stdout_json(void)
{
	char *m = strstr(out, "--stderr--");
	size_t n = m ? (size_t)(m - out) : strlen(out);
	json_error_t je;
	json_t *j = json_loadb(out, n, 0, &je);
	if (!j)
		fprintf(stderr, "  not JSON (%s): %.*s\n", je.text, (int)n, out);
	return j;
}

static void setup(void)
{
	srv_ok = e2e_start(&srv, (const char *[]){"--no-access-log", NULL}, NULL) == 0;
	if (!srv_ok)
		return;
	snprintf(url, sizeof url, "http://127.0.0.1:%d", srv.port);
	const char *in = "tests/data/mlp_digits/model.safetensors";
	/* one snapshot that records kind mlp, one that records none ("unknown") */
	if (t_sh(NULL, 0, "mkdir -p %s/snapshots %s/data && cd %s && %s snapshot pack %s -o "
		 "%s/snapshots/digits.thaw --kind mlp -q && %s snapshot pack %s -o %s/snapshots/nokind.thaw "
		 "-q && cp tests/data/digits.csv.gz %s/data/", srv.data_dir, srv.data_dir, t_src(),
		 t_bin(), in, srv.data_dir, t_bin(), in, srv.data_dir, srv.data_dir) != 0)
		srv_ok = 0;
}

static void test_deploy_kind_from_snapshot_http(void)
{
	NEED();
	json_t *o = NULL;
	T_EQ_INT(e2e_call_json(&srv, "PUT", "/v1/functions/h1", NULL, "{\"snapshot\":\"digits.thaw\"}",
			       &o), 201);
	T_EQ_STR(json_string_value(json_object_get(o, "kind")), "mlp");
	json_decref(o);
	/* it runs as an mlp */
	T_EQ_INT(e2e_call_json(&srv, "POST", "/v1/functions/h1/invoke", NULL,
			       "{\"inputs\":[[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,"
			       "0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]]}", &o), 200);
	T_CHECK(json_is_array(json_object_get(o, "outputs")));
	json_decref(o);
	/* a snapshot that records no kind: 400 naming the field and what the snapshot says */
	T_EQ_INT(e2e_call_json(&srv, "PUT", "/v1/functions/h2", NULL, "{\"snapshot\":\"nokind.thaw\"}",
			       &o), 400);
	const char *e = json_string_value(json_object_get(o, "error"));
	T_CHECK(e && strstr(e, "field 'kind'") && strstr(e, "unknown") && strstr(e, "nokind.thaw"));
	json_decref(o);
	T_EQ_INT(e2e_call_json(&srv, "GET", "/v1/functions/h2", NULL, NULL, NULL), 404);
	/* an explicit kind still wins */
	T_EQ_INT(e2e_call_json(&srv, "PUT", "/v1/functions/h3", NULL,
			       "{\"kind\":\"mlp\",\"snapshot\":\"nokind.thaw\"}", NULL), 201);
	/* neither: 400 */
	T_EQ_INT(e2e_call_json(&srv, "PUT", "/v1/functions/h4", NULL, "{}", &o), 400);
	e = json_string_value(json_object_get(o, "error"));
	T_CHECK(e && strstr(e, "field 'kind': required"));
	json_decref(o);
}

static void test_deploy_cli(void)
{
	NEED();
	T_EQ_INT(thaw("deploy c1 --snapshot digits.thaw"), 0);
	T_CHECK(strncmp(out, "deployed c1 revision 1 (kind mlp)\n", 34) == 0);
	/* --json: the function as JSON; --rate-limit stored as given, in shortest form */
	T_EQ_INT(thaw("deploy c1 --snapshot digits.thaw --rate-limit 0.1/s,5 --json"), 0);
	json_t *j = stdout_json();
	T_EQ_INT(json_integer_value(json_object_get(j, "revision")), 2);
	T_EQ_STR(json_string_value(json_object_get(j, "kind")), "mlp");
	T_EQ_STR(json_string_value(json_object_get(json_object_get(j, "settings"), "rate_limit")),
		 "0.1/s,5");
	json_decref(j);
	T_EQ_INT(thaw("deploy c1 --snapshot digits.thaw --rate-limit fast"), 2);
	T_CHECK(strstr(out, "--rate-limit") != NULL);
	/* nothing to deploy */
	T_EQ_INT(thaw("deploy c1"), 2);
	T_CHECK(strstr(out, "--snapshot or --kind is required") != NULL);
	/* a traffic-only deploy says what it did */
	T_EQ_INT(thaw("deploy c1 --traffic 1=50,2=50"), 0);
	T_CHECK(strstr(out, "traffic of c1: 1=50%,2=50% (no new revision)") != NULL);
	T_CHECK(strstr(out, "deployed") == NULL);
	/* status: latest revision and the split that serves */
	T_EQ_INT(thaw("status"), 0);
	char *line = strstr(out, "\nc1 ");
	T_CHECK(line != NULL);
	if (line) {
		char name[64], kind[64], traffic[64];
		int latest = 0;
		T_EQ_INT(sscanf(line + 1, "%63s %63s %d %63s", name, kind, &latest, traffic), 4);
		T_EQ_STR(kind, "mlp");
		T_EQ_INT(latest, 2);
		T_EQ_STR(traffic, "1=50%,2=50%");
	}
	T_CHECK(strstr(out, "LATEST") && strstr(out, "TRAFFIC"));
	T_EQ_INT(thaw("deploy c1 --traffic latest=100"), 0);
	T_CHECK(strstr(out, "traffic of c1: 2=100%") != NULL);
	/* status --json parses and carries the split */
	T_EQ_INT(thaw("status --json"), 0);
	j = stdout_json();
	json_t *f = NULL, *it;
	size_t i;
	json_array_foreach(json_object_get(j, "functions"), i, it)
		if (!strcmp(json_string_value(json_object_get(it, "name")), "c1"))
			f = it;
	T_CHECK(f && json_integer_value(json_object_get(json_object_get(f, "traffic"), "latest")) == 100);
	json_decref(j);
}

static void test_jobs_json(void)
{
	NEED();
	T_EQ_INT(thaw("deploy jd --snapshot digits.thaw"), 0);
	T_EQ_INT(thaw("jobs submit finetune --function jd --param data=digits.csv.gz --param epochs=1 "
		      "--param learning_rate=0.003 --param feature_scale=0.0625 --json"), 0);
	json_t *j = stdout_json();
	long long id = json_integer_value(json_object_get(j, "id"));
	T_CHECK(id > 0);
	T_EQ_STR(json_string_value(json_object_get(j, "function")), "jd");
	json_decref(j);
	/* the printed reals read as they were given */
	T_CHECK(strstr(out, "0.003") && !strstr(out, "0.0030000000000000001"));
	T_CHECK(strstr(out, "0.0625") != NULL);
	T_EQ_INT(thaw("jobs list --json"), 0);
	j = stdout_json();
	T_CHECK(json_is_array(json_object_get(j, "jobs")) && json_array_size(json_object_get(j, "jobs")) >= 1);
	json_decref(j);
	char args[64];
	snprintf(args, sizeof args, "jobs show %lld", id);
	T_EQ_INT(thaw(args), 0);
	j = stdout_json();
	T_CHECK(json_real_value(json_object_get(json_object_get(j, "params"), "learning_rate")) == 0.003);
	json_decref(j);
	T_CHECK(strstr(out, "\"learning_rate\": 0.003") != NULL);
	/* the table stays the default */
	T_EQ_INT(thaw("jobs list"), 0);
	T_CHECK(strncmp(out, "ID ", 3) == 0);
}

static void test_sizes_human(void)
{
	NEED();
	/* the digits snapshot: a 9984-byte image in a 13135-byte file */
	char cmd[1200];
	snprintf(cmd, sizeof cmd, "snapshot restore %s/snapshots/digits.thaw", srv.data_dir);
	T_EQ_INT(thaw(cmd), 0);
	T_CHECK(strstr(out, ": 9.75 KiB raw in ") != NULL);
	T_CHECK(strstr(out, " GB raw") == NULL);
	snprintf(cmd, sizeof cmd, "snapshot pack %s/tests/data/mlp_digits/model.safetensors -o %s/p.thaw "
		 "--kind mlp --progress", t_src(), t_tmpdir());
	T_EQ_INT(thaw(cmd), 0);
	T_CHECK(strstr(out, "packed 4 tensors: 9.75 KiB image -> 12.8 KiB ") != NULL);
	/* the progress bar on stderr (forced on by --progress) says what it counts */
	T_CHECK(strstr(out, "--stderr--\nthaw snapshot pack: ") != NULL);
	T_CHECK(strstr(out, "\rcompressing [####################] 100%") != NULL);
}

static void test_url_from_port(void)
{
	NEED();
	/* no THAW_URL: PORT (and HOST 0.0.0.0 meaning loopback) find the server */
	T_EQ_INT(t_sh(out, sizeof out, "env -u THAW_URL PORT=%d HOST=0.0.0.0 %s status", srv.port,
		      t_bin()), 0);
	T_CHECK(strstr(out, "c1") != NULL);
	T_EQ_INT(t_sh(out, sizeof out, "env -u THAW_URL -u HOST PORT=%d %s functions get c1", srv.port,
		      t_bin()), 0);
	T_CHECK(strstr(out, "\"name\":\"c1\"") != NULL);
}

void t_main(void)
{
	signal(SIGPIPE, SIG_IGN);
	setup();
	T_RUN(test_deploy_kind_from_snapshot_http);
	T_RUN(test_deploy_cli);
	T_RUN(test_jobs_json);
	T_RUN(test_sizes_human);
	T_RUN(test_url_from_port);
	if (srv_ok)
		e2e_stop(&srv, SIGTERM, 10);
}

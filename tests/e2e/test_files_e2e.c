/* test_files_e2e.c — files the daemon opens for a request, over real HTTP: a FIFO put where a
 * deployed function's snapshot was makes its cold starts fail promptly with 503 naming it
 * (more of them than the thread pool has workers, which a blocking open() would have held
 * forever), while other functions keep cold-starting and the probes answer; a FIFO as a job's
 * data file is refused at submit (400) and, when it appears only after submit, fails the job
 * with a message (the runner checks the path before the job's reader opens it; the reader
 * itself opens non-blocking and checks again); the data directory's files and directories are private (0600 / 0700); a keyed server
 * without a key says how to create the first. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <jansson.h>
#include "tests/e2e/e2e.h"
#include "tests/t.h"

static e2e_server srv;
static int srv_ok;
static char rows_body[4096];

static void setup(void)
{
	const char *args[] = {"--no-access-log", "--job-idle", "2", NULL};
	srv_ok = e2e_start(&srv, args, NULL) == 0;
	if (!srv_ok)
		return;
	srv_ok = t_sh(NULL, 0, "umask 077 && mkdir -p %s/snapshots %s/data && %s snapshot pack "
		      "%s/tests/data/mlp_digits/model.safetensors -o %s/snapshots/digits.thaw --kind mlp "
		      ">/dev/null && cp %s/snapshots/digits.thaw %s/snapshots/gone.thaw", srv.data_dir,
		      srv.data_dir, t_bin(), t_src(), srv.data_dir, srv.data_dir, srv.data_dir) == 0;
	srv_ok = srv_ok &&
		 e2e_call(&srv, "PUT", "/v1/functions/digits", NULL,
			  "{\"kind\": \"mlp\", \"snapshot\": \"digits.thaw\", \"idle_timeout_s\": 0.1}",
			  NULL) == 201 &&
		 e2e_call(&srv, "PUT", "/v1/functions/gone", NULL,
			  "{\"kind\": \"mlp\", \"snapshot\": \"gone.thaw\"}", NULL) == 201;
	/* one digits row of 64 zeros is a valid input */
	size_t o = (size_t)snprintf(rows_body, sizeof rows_body, "{\"inputs\": [[");
	for (int k = 0; k < 64; k++)
		o += (size_t)snprintf(rows_body + o, sizeof rows_body - o, "%s0", k ? "," : "");
	snprintf(rows_body + o, sizeof rows_body - o, "]]}");
}

static void teardown(void)
{
	if (srv_ok)
		e2e_stop(&srv, 15, 30);
}

static void test_fifo_snapshot_cold_start(void)
{
	if (!srv_ok)
		T_SKIP("server did not start");
	char snap[700];
	snprintf(snap, sizeof snap, "%s/snapshots/gone.thaw", srv.data_dir);
	T_EQ_INT(unlink(snap), 0);
	T_EQ_INT(mkfifo(snap, 0600), 0);
	/* six cold starts, each on a thread pool worker: more than libuv's default four */
	for (int i = 0; i < 6; i++) {
		e2e_resp r;
		memset(&r, 0, sizeof r);
		double t0 = e2e_now_s();
		int st = e2e_call(&srv, "POST", "/v1/functions/gone/invoke", NULL, rows_body, &r);
		double dt = e2e_now_s() - t0;
		if (st != 503 || !strstr(r.body ? r.body : "", "not a regular file"))
			fprintf(stderr, "  call %d: %d after %.1f s: %s\n", i, st, dt, r.body ? r.body : "");
		T_EQ_INT(st, 503);
		T_CHECK(r.body && strstr(r.body, "gone.thaw: not a regular file"));
		T_CHECK(dt < 20);   /* a band for a loaded machine; a blocked open never returns */
		e2e_resp_free(&r);
	}
	T_EQ_INT(e2e_call(&srv, "GET", "/healthz", NULL, NULL, NULL), 200);
	/* deploying onto the FIFO is refused before anything opens it */
	json_t *o = NULL;
	T_EQ_INT(e2e_call_json(&srv, "PUT", "/v1/functions/fifo", NULL,
			       "{\"kind\": \"mlp\", \"snapshot\": \"gone.thaw\"}", &o), 400);
	T_CHECK(o && strstr(json_string_value(json_object_get(o, "error")) ?: "", "gone.thaw"));
	json_decref(o);
	/* another function still cold-starts (restore on the same thread pool), twice */
	for (int i = 0; i < 2; i++) {
		T_EQ_INT(e2e_call(&srv, "POST", "/v1/functions/digits/invoke", NULL, rows_body, NULL), 200);
		T_CHECK(e2e_wait_state(&srv, "digits", "host", 20000) ||
			e2e_wait_state(&srv, "digits", "cold", 1));
	}
	/* the real file back: the function recovers */
	unlink(snap);
	T_EQ_INT(t_sh(NULL, 0, "cp %s/snapshots/digits.thaw %s", srv.data_dir, snap), 0);
	T_EQ_INT(e2e_call(&srv, "POST", "/v1/functions/gone/invoke", NULL, rows_body, NULL), 200);
}

static const char *job_error(long long id, char *state, size_t cap)
{
	static char err[512];
	char p[64];
	json_t *o = NULL;
	snprintf(p, sizeof p, "/v1/jobs/%lld", id);
	e2e_call_json(&srv, "GET", p, NULL, NULL, &o);
	snprintf(state, cap, "%s", o ? json_string_value(json_object_get(o, "state")) ?: "?" : "?");
	snprintf(err, sizeof err, "%s", o ? json_string_value(json_object_get(o, "error")) ?: "" : "");
	json_decref(o);
	return err;
}

static void test_fifo_job_data(void)
{
	if (!srv_ok)
		T_SKIP("server did not start");
	char fifo[700];
	snprintf(fifo, sizeof fifo, "%s/data/fifo.csv", srv.data_dir);
	T_EQ_INT(mkfifo(fifo, 0600), 0);
	json_t *o = NULL;
	T_EQ_INT(e2e_call_json(&srv, "POST", "/v1/jobs", NULL,
			       "{\"type\": \"finetune\", \"function\": \"digits\", \"params\": "
			       "{\"data\": \"fifo.csv\", \"feature_scale\": 0.0625}}", &o), 400);
	T_CHECK(o && strstr(json_string_value(json_object_get(o, "error")) ?: "", "not a regular file"));
	json_decref(o);
	/* a FIFO that appears after submit: the job waits for 2 s of idle lanes, then its reader
	 * refuses it */
	T_EQ_INT(e2e_call(&srv, "POST", "/v1/functions/digits/invoke", NULL, rows_body, NULL), 200);
	o = NULL;
	T_EQ_INT(e2e_call_json(&srv, "POST", "/v1/jobs", NULL,
			       "{\"type\": \"finetune\", \"function\": \"digits\", \"schedule\": \"idle\", "
			       "\"params\": {\"data\": \"late.csv\", \"feature_scale\": 0.0625}}", &o), 202);
	long long id = o ? (long long)json_integer_value(json_object_get(o, "id")) : 0;
	json_decref(o);
	snprintf(fifo, sizeof fifo, "%s/data/late.csv", srv.data_dir);
	T_EQ_INT(mkfifo(fifo, 0600), 0);
	char state[32] = "";
	const char *err = "";
	double end = e2e_now_s() + 60;
	while (e2e_now_s() < end) {
		err = job_error(id, state, sizeof state);
		if (!strcmp(state, "failed") || !strcmp(state, "succeeded"))
			break;
		usleep(50000);
	}
	int named = strstr(err, "late.csv") && strstr(err, "not a regular file");
	if (strcmp(state, "failed") != 0 || !named)
		fprintf(stderr, "  job %lld: %s: %s\n", id, state, err);
	T_EQ_STR(state, "failed");
	T_CHECK(named);
	T_EQ_INT(e2e_call(&srv, "GET", "/healthz", NULL, NULL, NULL), 200);
}

/* every file and directory the daemon made in its data directory is for its user alone */
static void check_tree(const char *dir, int *bad)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		char p[1200];
		struct stat st;
		snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
		if (lstat(p, &st) < 0 || S_ISFIFO(st.st_mode))
			continue;   /* the tests' own FIFOs */
		if (st.st_mode & 077) {
			fprintf(stderr, "  %s: mode %o\n", p, (unsigned)(st.st_mode & 0777));
			(*bad)++;
		}
		if (S_ISDIR(st.st_mode))
			check_tree(p, bad);
	}
	closedir(d);
}

static void test_data_dir_private(void)
{
	if (!srv_ok)
		T_SKIP("server did not start");
	/* files of every part exist by now: registry (and its WAL), snapshots, jobs, audit */
	int bad = 0;
	struct stat st;
	T_EQ_INT(stat(srv.data_dir, &st), 0);
	check_tree(srv.data_dir, &bad);
	T_EQ_INT(bad, 0);
	/* a key made by the CLI is private too */
	T_EQ_INT(t_sh(NULL, 0, "%s keys create --scope admin --data %s >/dev/null", t_bin(),
		      srv.data_dir), 0);
	check_tree(srv.data_dir, &bad);
	T_EQ_INT(bad, 0);
}

/* a keyed server with no live key says how to make the first one; once one exists it does not */
static void test_first_key_hint(void)
{
	e2e_server a;
	const char *args[] = {"--auth", "--no-access-log", NULL};
	T_EQ_INT(e2e_start(&a, args, NULL), 0);
	T_CHECK(e2e_wait_log(&a, "no API key exists yet", 10000));
	T_CHECK(e2e_log_contains(&a, "thaw keys create --scope admin --data "));
	e2e_stop(&a, 15, 30);
	T_EQ_INT(t_sh(NULL, 0, "%s keys create --scope admin --data %s >/dev/null", t_bin(),
		      a.data_dir), 0);
	e2e_server b;
	T_EQ_INT(e2e_start_in(&b, a.data_dir, args, NULL), 0);
	T_CHECK(!e2e_log_contains(&b, "no API key exists yet"));
	e2e_stop(&b, 15, 30);
}

void t_main(void)
{
	T_RUN(test_first_key_hint);
	setup();
	T_RUN(test_fifo_snapshot_cold_start);
	T_RUN(test_fifo_job_data);
	T_RUN(test_data_dir_private);
	teardown();
}

/* test_run_demo.c — `make run` (scripts/run-demo.sh) starts a server without API keys, so it must
 * listen on loopback only unless HOST asks for more: run the script on a free port, wait for the
 * demo function, and read the address from the server's `listening` line and the start-up text;
 * with HOST=0.0.0.0 it listens on every address and warns. The fine-tune example of docs/api.md
 * runs as printed against the demo (its data set is in place), and Ctrl-C (SIGINT) ends the
 * script with status 0 once the server has drained. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <jansson.h>
#include "tests/e2e/e2e.h"
#include "tests/t.h"

/* starts the demo with env (e.g. "HOST=0.0.0.0"), waits up to 60 s for its start-up text, and
 * returns the script's stderr (malloc'd) after stopping it */
/* polls the demo's log (up to 60 s) until it says it is serving; its text (malloc'd, may be
 * NULL), which the caller checks and frees */
static char *wait_serving(const char *log)
{
	double end = e2e_now_s() + 60;
	char *text = NULL;
	while (e2e_now_s() < end) {
		free(text);
		text = t_read_file(log, NULL);
		if (text && strstr(text, "thaw: serving on"))
			break;
		usleep(50000);
	}
	return text;
}

static char *run_demo(const char *env)
{
	char data[600], log[600], pidf[600];
	static int n;
	snprintf(data, sizeof data, "%s/data%d", t_tmpdir(), n);
	snprintf(log, sizeof log, "%s/demo%d.log", t_tmpdir(), n);
	snprintf(pidf, sizeof pidf, "%s/demo%d.pid", t_tmpdir(), n++);
	int port = t_free_port();
	if (port < 0)
		return NULL;
	char bin[1024];
	if (!realpath(t_bin(), bin))
		return NULL;
	if (t_sh(NULL, 0, "cd '%s' && (%s THAW_DATA='%s' PORT=%d setsid scripts/run-demo.sh '%s' "
		 "</dev/null >/dev/null 2>'%s' & echo $! > '%s')", t_src(), env, data, port, bin, log,
		 pidf) != 0)
		return NULL;
	char *text = wait_serving(log);
	/* the script's session: the script and the server it started */
	char *pid = t_read_file(pidf, NULL);
	if (pid && atoi(pid) > 0) {
		kill(-atoi(pid), SIGTERM);
		for (int i = 0; i < 200 && kill(-atoi(pid), 0) == 0; i++)
			usleep(50000);
		kill(-atoi(pid), SIGKILL);
	}
	free(pid);
	free(text);
	return t_read_file(log, NULL);
}

static void test_demo_binds_loopback(void)
{
	if (t_sh(NULL, 0, "command -v curl >/dev/null && command -v setsid >/dev/null") != 0)
		T_SKIP("curl or setsid missing");
	char *t = run_demo("");
	T_CHECK(t != NULL);
	if (!t)
		return;
	if (!strstr(t, "\"host\":\"127.0.0.1\""))
		fprintf(stderr, "  demo output:\n%s\n", t);
	T_CHECK(strstr(t, "\"msg\":\"listening\",\"host\":\"127.0.0.1\"") != NULL);
	T_CHECK(strstr(t, "thaw: serving on 127.0.0.1:") != NULL);
	T_CHECK(strstr(t, "HOST=0.0.0.0 make run") != NULL);
	T_CHECK(strstr(t, "WARNING") == NULL);
	free(t);
	t = run_demo("HOST=0.0.0.0");
	T_CHECK(t && strstr(t, "\"msg\":\"listening\",\"host\":\"0.0.0.0\""));
	T_CHECK(t && strstr(t, "WARNING: HOST=0.0.0.0"));
	free(t);
}

/* doc_job_body returns the JSON body of the docs' first `curl ... /v1/jobs -d '...'` example
 * (malloc'd), or NULL */
static char *doc_job_body(void)
{
	char path[600];
	snprintf(path, sizeof path, "%s/docs/api.md", t_src());
	char *doc = t_read_file(path, NULL);
	const char *needle = "curl -s -X POST localhost:8080/v1/jobs -d '";
	char *at = doc ? strstr(doc, needle) : NULL, *end = at ? strchr(at + strlen(needle), '\'') : NULL;
	char *body = end ? strndup(at + strlen(needle), (size_t)(end - at - strlen(needle))) : NULL;
	free(doc);
	return body;
}

static void test_demo_doc_job_and_sigint(void)
{
	if (t_sh(NULL, 0, "command -v curl >/dev/null") != 0)
		T_SKIP("curl missing");
	char data[600], log[600], bin[1024], port_s[16];
	snprintf(data, sizeof data, "%s/data-sigint", t_tmpdir());
	snprintf(log, sizeof log, "%s/demo-sigint.log", t_tmpdir());
	int port = t_free_port();
	T_CHECK(port > 0 && realpath(t_bin(), bin) != NULL);
	snprintf(port_s, sizeof port_s, "%d", port);
	pid_t pid = fork();
	if (pid == 0) {
		/* as `make run` in a terminal: own process group, SIGINT at its default */
		setpgid(0, 0);
		signal(SIGINT, SIG_DFL);
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644), nul = open("/dev/null", O_RDWR);
		dup2(nul, 0);
		dup2(nul, 1);
		dup2(fd, 2);
		if (chdir(t_src()) < 0)
			_exit(126);
		setenv("THAW_DATA", data, 1);
		setenv("PORT", port_s, 1);
		unsetenv("HOST");
		execl("/bin/bash", "bash", "scripts/run-demo.sh", bin, (char *)NULL);
		_exit(127);
	}
	T_CHECK(pid > 0);
	if (pid <= 0)
		return;
	char *text = wait_serving(log);
	T_CHECK(text && strstr(text, "thaw: serving on"));
	free(text);
	/* the docs' fine-tune example, as printed, on the demo's port */
	e2e_server s = {.pid = pid, .port = port};
	char *body = doc_job_body();
	T_CHECK(body && strstr(body, "\"data\": \"digits.csv.gz\""));
	json_t *j = NULL;
	int st = body ? e2e_call_json(&s, "POST", "/v1/jobs", NULL, body, &j) : -1;
	if (st != 202)
		fprintf(stderr, "  POST /v1/jobs -> %d %s\n", st,
			json_string_value(json_object_get(j, "error")) ? json_string_value(json_object_get(j, "error")) : "");
	T_EQ_INT(st, 202);
	long long id = json_integer_value(json_object_get(j, "id"));
	json_decref(j);
	free(body);
	char path[64], state[32] = "";
	snprintf(path, sizeof path, "/v1/jobs/%lld", id);
	for (double until = e2e_now_s() + 120; id > 0 && e2e_now_s() < until; usleep(100000)) {
		j = NULL;
		e2e_call_json(&s, "GET", path, NULL, NULL, &j);
		snprintf(state, sizeof state, "%s", json_string_value(json_object_get(j, "state")) ?
			 json_string_value(json_object_get(j, "state")) : "");
		if (!strcmp(state, "failed"))
			fprintf(stderr, "  job failed: %s\n", json_string_value(json_object_get(j, "error")));
		json_decref(j);
		if (!strcmp(state, "succeeded") || !strcmp(state, "failed") || !strcmp(state, "cancelled"))
			break;
	}
	T_EQ_STR(state, "succeeded");
	/* Ctrl-C: the server drains, the script exits 0 */
	kill(-pid, SIGINT);
	int ws = 0;
	pid_t w = 0;
	for (int i = 0; i < 400 && (w = waitpid(pid, &ws, WNOHANG)) == 0; i++)
		usleep(50000);
	if (w == 0) {
		kill(-pid, SIGKILL);
		waitpid(pid, &ws, 0);
	}
	T_CHECK(w == pid);
	T_CHECK(WIFEXITED(ws));
	T_EQ_INT(WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws), 0);
}

void t_main(void)
{
	T_RUN(test_demo_binds_loopback);
	T_RUN(test_demo_doc_job_and_sigint);
}

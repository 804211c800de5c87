/* test_run_demo.c — `make run` (scripts/run-demo.sh) starts a server without API keys, so it must
 * listen on loopback only unless HOST asks for more: run the script on a free port, wait for the
 * demo function, and read the address from the server's `listening` line and the start-up text;
 * with HOST=0.0.0.0 it listens on every address and warns. */
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "tests/e2e/e2e.h"
#include "tests/t.h"

/* starts the demo with env (e.g. "HOST=0.0.0.0"), waits up to 60 s for its start-up text, and
 * returns the script's stderr (malloc'd) after stopping it */
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
	double end = e2e_now_s() + 60;
	char *text = NULL;
	while (e2e_now_s() < end) {
		free(text);
		text = t_read_file(log, NULL);
		if (text && strstr(text, "thaw: serving on"))
			break;
		usleep(50000);
	}
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

void t_main(void)
{
	T_RUN(test_demo_binds_loopback);
}

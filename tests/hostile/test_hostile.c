/* test_hostile.c — runs tests/hostile/hostile.py (garbage, truncated and slowloris requests,
 * idle connections, huge headers and bodies, bad JSON, bad tensors; /healthz and a deployed mlp
 * function checked throughout) against `thaw serve --dev` with function "digits" deployed, under
 * a time bound, and checks the script's exit status. THAW_HOSTILE_LONG=1 selects the long mode
 * (10000 idle connections, a 60 s slowloris). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include "tests/t.h"
#include "tests/e2e/e2e.h"

static void test_hostile_client(void)
{
	const char *bin = getenv("THAW_BIN"), *src = getenv("THAW_SRC");
	int long_mode = getenv("THAW_HOSTILE_LONG") && strcmp(getenv("THAW_HOSTILE_LONG"), "1") == 0;
	if (!bin)
		bin = "build/thaw";
	if (!src)
		src = ".";
	if (system("python3 -c 'import sys' >/dev/null 2>&1") != 0)
		T_SKIP("no python3");
	/* the idle-connection attack needs the descriptors on both sides (the child inherits) */
	struct rlimit rl;
	int need = long_mode ? 11000 : 3000;   /* per process: the script or the server */
	getrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)need)
		T_SKIP("RLIMIT_NOFILE too low for the idle connections");
	const char *args[] = {"--max-connections", long_mode ? "10500" : "2500", "--read-timeout", "2",
			      "--max-body", "1048576", "--no-access-log", NULL};
	e2e_server s;
	T_EQ_INT(e2e_start(&s, args, NULL), 0);
	if (!s.pid)
		return;
	char cmd[4096];
	snprintf(cmd, sizeof cmd, "mkdir -p %s/snapshots && %s snapshot pack %s/tests/data/mlp_digits/model.safetensors "
		 "-o %s/snapshots/digits.thaw --kind mlp >/dev/null", s.data_dir, bin, src, s.data_dir);
	T_EQ_INT(system(cmd), 0);
	const char *body = "{\"kind\":\"mlp\",\"snapshot\":\"digits.thaw\",\"device\":\"cpu\"}";
	snprintf(cmd, sizeof cmd, "PUT /v1/functions/digits HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
		 "Content-Length: %zu\r\n\r\n%s", strlen(body), body);
	e2e_resp r;
	T_EQ_INT(e2e_request(&s, cmd, &r), 0);
	T_EQ_INT(r.status, 201);
	e2e_resp_free(&r);
	snprintf(cmd, sizeof cmd, "timeout -s KILL %d python3 %s/tests/hostile/hostile.py --port %d --src %s%s",
		 long_mode ? 900 : 90, src, s.port, src, long_mode ? " --long" : "");
	int st = system(cmd);
	T_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0))
		fprintf(stderr, "  hostile.py: status %d; server log %s\n", st, s.log_path);
	T_EQ_INT(e2e_stop(&s, SIGTERM, 15), 0);
}

void t_main(void)
{
	T_RUN(test_hostile_client);
}

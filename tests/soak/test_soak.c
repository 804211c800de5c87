/* test_soak.c — the short soak for `make test`: bench/soak.sh for THAW_SOAK_SECONDS (default 20)
 * on a free loopback port: echo and digits invokes, V2 infer, deploys, V2 unload/load and a
 * quantize job at saturation; the script fails on a 5xx other than 503, a wrk transport error,
 * an fd count above the one before the load, a failed job, a wrong digits result at the end or
 * a non-zero exit after SIGTERM. RSS flatness needs a longer run than this (SOAK_RSS_CHECK=0
 * here; the 10-minute run is in docs/reliability.md). Skipped when wrk or python3 is missing. */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include "tests/t.h"

static void test_short_soak(void)
{
	const char *bin = getenv("THAW_BIN"), *src = getenv("THAW_SRC");
	const char *secs = getenv("THAW_SOAK_SECONDS");
	if (!bin)
		bin = "build/thaw";
	if (!src)
		src = ".";
	if (system("command -v wrk >/dev/null 2>&1 && command -v python3 >/dev/null 2>&1 && "
		   "command -v curl >/dev/null 2>&1") != 0)
		T_SKIP("wrk, python3 or curl not installed (scripts/install-deps.sh installs them)");
	int port = t_free_port();
	T_CHECK(port > 0);
	char cmd[4096];
	snprintf(cmd, sizeof cmd, "THAW_BIN=%s THAW_SRC=%s SOAK_PORT=%d SOAK_SECONDS=%s SOAK_WARMUP=5 "
		 "SOAK_SAMPLE=2 SOAK_RSS_CHECK=0 SOAK_ADMIN_MS=50 timeout -s KILL 300 sh %s/bench/soak.sh 2>&1",
		 bin, src, port, secs ? secs : "20", src);
	FILE *p = popen(cmd, "r");
	T_CHECK(p != NULL);
	if (!p)
		return;
	char line[1024];
	int pass = 0, counts = 0;
	while (fgets(line, sizeof line, p)) {
		/* keep the summary lines in the test output */
		if (strstr(line, "FAIL") || strstr(line, "soak-status") || strstr(line, "fds before") ||
		    strstr(line, "requests in") || strstr(line, "jobs:"))
			fputs(line, stderr);
		pass |= strstr(line, "soak: PASS") != NULL;
		counts += strstr(line, "soak-status") != NULL;
	}
	int st = pclose(p);
	T_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	T_CHECK(pass);
	T_CHECK(counts >= 4);
}

void t_main(void)
{
	T_RUN(test_short_soak);
}

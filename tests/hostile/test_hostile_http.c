/* test_hostile_http.c — runs the HTTP-layer attacks of tests/hostile/hostile_http.py, one case
 * per test, each against a fresh keyed `thaw serve` (an admin + invoke:* key made with `thaw keys
 * create` first): a 20,000-request mixed pipeline, unauthenticated large bodies, keep-alive body
 * buffers, a client that pipelines without reading, the per-address connection cap, a flood of
 * silent and trickling connections over the connection limit and the probe reserve. The script
 * checks statuses, order and the server's RSS (from /proc/PID/status); this test checks its exit
 * status under a time bound and that the server then stops cleanly. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include "tests/t.h"
#include "tests/e2e/e2e.h"

static const char *bin(void)
{
	const char *b = getenv("THAW_BIN");
	return b ? b : "build/thaw";
}

static const char *src(void)
{
	const char *s = getenv("THAW_SRC");
	return s ? s : ".";
}

/* a key made on data (the last line `thaw keys create` prints) into key; 0 or -1 */
static int make_key(const char *data, char *key, size_t cap)
{
	char cmd[1200];
	snprintf(cmd, sizeof cmd, "%s keys create --scope admin --scope 'invoke:*' --data %s 2>/dev/null",
		 bin(), data);
	FILE *p = popen(cmd, "r");
	if (!p)
		return -1;
	char line[512];
	key[0] = 0;
	while (fgets(line, sizeof line, p)) {
		line[strcspn(line, "\n")] = 0;
		if (strncmp(line, "thaw_", 5) == 0)
			snprintf(key, cap, "%s", line);
	}
	int st = pclose(p);
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 && key[0] ? 0 : -1;
}

static void run_case2(const char *name, const char *const *extra);

static void run_case(const char *name, const char *extra_arg, const char *extra_val)
{
	const char *extra[] = {extra_arg, extra_val, NULL};
	run_case2(name, extra);
}

static void run_case2(const char *name, const char *const *extra)
{
	static int n;
	if (system("python3 -c 'import sys' >/dev/null 2>&1") != 0)
		T_SKIP("no python3");
	char data[512], key[512];
	snprintf(data, sizeof data, "%s/hostile-http-%d", t_tmpdir(), ++n);
	T_EQ_INT(make_key(data, key, sizeof key), 0);
	const char *args[16] = {"--auth", "--no-access-log", "--no-audit"};
	for (int i = 0; extra[i] && i < 12; i++)
		args[3 + i] = extra[i];
	/* under ASan freed memory waits in a quarantine (RSS that a plain build gives back): the
	 * server's quarantine is turned off so that the RSS bounds mean the same in both builds */
	static char asan[1024];
	const char *prev = getenv("ASAN_OPTIONS");
	snprintf(asan, sizeof asan, "ASAN_OPTIONS=%s%squarantine_size_mb=0:thread_local_quarantine_size_kb=0",
		 prev ? prev : "", prev && *prev ? ":" : "");
	const char *env[] = {asan, NULL};
	e2e_server s;
	T_EQ_INT(e2e_start_in(&s, data, args, env), 0);
	if (!s.pid)
		return;
	char cmd[3072];
	snprintf(cmd, sizeof cmd, "timeout -s KILL 240 python3 %s/tests/hostile/hostile_http.py --case %s "
		 "--port %d --pid %d --key %s", src(), name, s.port, (int)s.pid, key);
	int st = system(cmd);
	T_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0))
		fprintf(stderr, "  hostile_http.py --case %s: status %d; server log %s\n", name, st, s.log_path);
	T_EQ_INT(e2e_stop(&s, SIGTERM, 20), 0);
}

static void test_pipeline_20000_mixed(void) { run_case("pipeline", NULL, NULL); }
static void test_unauthenticated_bodies(void) { run_case("unauth", NULL, NULL); }
static void test_keepalive_body_buffers(void) { run_case("shrink", NULL, NULL); }
static void test_never_reading_client(void) { run_case("never_read", NULL, NULL); }
static void test_per_address_cap(void) { run_case("per_addr", "--max-connections-per-address", "10"); }
static void test_connection_flood(void)
{
	const char *extra[] = {"--max-connections", "40", "--probe-reserve", "8", NULL};
	run_case2("flood", extra);
}

void t_main(void)
{
	T_RUN(test_pipeline_20000_mixed);
	T_RUN(test_unauthenticated_bodies);
	T_RUN(test_keepalive_body_buffers);
	T_RUN(test_never_reading_client);
	T_RUN(test_per_address_cap);
	T_RUN(test_connection_flood);
}

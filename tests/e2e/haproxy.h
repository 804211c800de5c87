/* haproxy.h — starts haproxy (the Debian package; scripts/install-deps.sh installs it) in front
 * of daemons on loopback, as the stand-in for Knative's router in the cluster tests: HTTP mode,
 * round-robin per request over the given ports, active health checks, short timeouts, listening
 * on a free loopback port, its config, log and admin socket in a fresh directory under the
 * test's temporary one. A test that needs haproxy and does not find it fails: the start says so
 * on stderr and returns -1; nothing is skipped. */
#ifndef THAW_TESTS_HAPROXY_H
#define THAW_TESTS_HAPROXY_H
#include <sys/types.h>

#define E2E_HAPROXY_MAX_SERVERS 16

typedef struct e2e_haproxy {
	pid_t pid;
	int port;                /* where clients connect (127.0.0.1) */
	int nservers;
	char dir[512];           /* haproxy.cfg, haproxy.log, admin.sock */
	char cfg_path[600];
	char log_path[600];
	char sock_path[600];
} e2e_haproxy;

/* e2e_haproxy_bin returns the haproxy executable ($THAW_HAPROXY, else haproxy on $PATH, else
 * /usr/sbin/haproxy) or NULL when there is none. */
const char *e2e_haproxy_bin(void);

/* e2e_haproxy_start writes the config and starts haproxy in the foreground: servers s0..sN-1 at
 * 127.0.0.1:ports[i], each checked with GET health_path (NULL: /healthz) every 100 ms (down
 * after 2 failures, up after 1 success; haproxy counts a server up from the start, so a test
 * that needs its servers ready waits with e2e_haproxy_wait_up after they answer their checks),
 * connect timeout 500 ms, client and server timeouts 30 s, 2 retries with redispatch on
 * connection failures. extra: lines added to the backend section (may be NULL). Waits up to 10 s
 * for the listener. Returns 0, or -1 with the reason on stderr (haproxy missing, config refused:
 * its log is printed, did not start). */
int e2e_haproxy_start(e2e_haproxy *h, const int *ports, int nports, const char *health_path,
		      const char *extra);

/* e2e_haproxy_up returns how many servers haproxy counts as up now (admin socket, "show
 * stat"), or -1 when it cannot be asked. */
int e2e_haproxy_up(const e2e_haproxy *h);

/* e2e_haproxy_wait_up polls every 20 ms until exactly n servers are up; 1 when they were within
 * ms milliseconds, else 0. */
int e2e_haproxy_wait_up(const e2e_haproxy *h, int n, int ms);

/* e2e_haproxy_stop ends haproxy (SIGTERM, SIGKILL after 5 s) and reaps it. Returns its exit
 * status, or -1 when it had to be killed or was not running. */
int e2e_haproxy_stop(e2e_haproxy *h);

#endif

/* haproxy.c — see haproxy.h. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "tests/e2e/haproxy.h"
#include "tests/t.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

const char *e2e_haproxy_bin(void)
{
	static char found[1024];
	const char *env = getenv("THAW_HAPROXY");
	if (env && *env)
		return access(env, X_OK) == 0 ? env : NULL;
	const char *path = getenv("PATH");
	char dirs[4096];
	snprintf(dirs, sizeof dirs, "%s:/usr/sbin:/sbin", path ? path : "/usr/bin:/bin");
	for (char *save = NULL, *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
		snprintf(found, sizeof found, "%s/haproxy", d);
		if (access(found, X_OK) == 0)
			return found;
	}
	return NULL;
}

static void print_log(const e2e_haproxy *h)
{
	char *log = t_read_file(h->log_path, NULL);
	fprintf(stderr, "haproxy log (%s):\n%s\n", h->log_path, log ? log : "(none)");
	free(log);
}

static int port_accepts(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return 0;
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
	close(fd);
	return ok;
}

int e2e_haproxy_start(e2e_haproxy *h, const int *ports, int nports, const char *health_path,
		      const char *extra)
{
	static int n;
	memset(h, 0, sizeof *h);
	h->pid = -1;
	const char *bin = e2e_haproxy_bin();
	if (!bin) {
		fprintf(stderr, "haproxy not found (set THAW_HAPROXY or install the Debian package "
			"haproxy: scripts/install-deps.sh)\n");
		return -1;
	}
	if (nports < 1 || nports > E2E_HAPROXY_MAX_SERVERS) {
		fprintf(stderr, "e2e_haproxy_start: %d servers (1 to %d)\n", nports,
			E2E_HAPROXY_MAX_SERVERS);
		return -1;
	}
	snprintf(h->dir, sizeof h->dir, "%s/haproxy-%d", t_tmpdir(), ++n);
	if (mkdir(h->dir, 0700) < 0 && errno != EEXIST) {
		fprintf(stderr, "haproxy: mkdir %s: %s\n", h->dir, strerror(errno));
		return -1;
	}
	snprintf(h->cfg_path, sizeof h->cfg_path, "%s/haproxy.cfg", h->dir);
	snprintf(h->log_path, sizeof h->log_path, "%s/haproxy.log", h->dir);
	snprintf(h->sock_path, sizeof h->sock_path, "%s/admin.sock", h->dir);
	if (strlen(h->sock_path) >= sizeof ((struct sockaddr_un *)0)->sun_path) {
		fprintf(stderr, "haproxy: admin socket path %s too long for a Unix socket (set a "
			"shorter TMPDIR)\n", h->sock_path);
		return -1;
	}
	h->port = t_free_port();
	h->nservers = nports;
	FILE *f = fopen(h->cfg_path, "w");
	if (!f || h->port < 0) {
		fprintf(stderr, "haproxy: cannot write %s or find a port\n", h->cfg_path);
		if (f)
			fclose(f);
		return -1;
	}
	fprintf(f,
		"global\n"
		"    maxconn 2048\n"
		"    stats socket %s mode 600 level admin\n"
		"defaults\n"
		"    mode http\n"
		"    timeout connect 500ms\n"
		"    timeout client 30s\n"
		"    timeout server 30s\n"
		"    timeout http-request 10s\n"
		"    timeout http-keep-alive 5s\n"
		"    timeout check 500ms\n"
		"    retries 2\n"
		"    option redispatch\n"
		"frontend fe\n"
		"    bind 127.0.0.1:%d\n"
		"    default_backend be\n"
		"backend be\n"
		"    balance roundrobin\n"
		"    option httpchk\n"
		"    http-check send meth GET uri %s\n"
		"    default-server inter 100ms fastinter 100ms downinter 100ms fall 2 rise 1\n",
		h->sock_path, h->port, health_path ? health_path : "/healthz");
	for (int i = 0; i < nports; i++)
		fprintf(f, "    server s%d 127.0.0.1:%d check\n", i, ports[i]);
	if (extra)
		fprintf(f, "%s\n", extra);
	fclose(f);
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int fd = open(h->log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execl(bin, bin, "-db", "-f", h->cfg_path, (char *)NULL);
		_exit(127);
	}
	h->pid = pid;
	double deadline = now_s() + 10;
	while (now_s() < deadline) {
		int st;
		if (waitpid(pid, &st, WNOHANG) == pid) {
			h->pid = -1;
			fprintf(stderr, "haproxy exited at start (status %d)\n",
				WIFEXITED(st) ? WEXITSTATUS(st) : -1);
			print_log(h);
			return -1;
		}
		if (port_accepts(h->port))
			return 0;
		usleep(20000);
	}
	fprintf(stderr, "haproxy did not listen on %d within 10 s\n", h->port);
	print_log(h);
	e2e_haproxy_stop(h);
	return -1;
}

int e2e_haproxy_up(const e2e_haproxy *h)
{
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0)
		return -1;
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	size_t sl = strlen(h->sock_path);
	if (sl >= sizeof a.sun_path) {
		close(fd);
		return -1;
	}
	memcpy(a.sun_path, h->sock_path, sl + 1);
	struct timeval tv = {.tv_sec = 2};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0 || write(fd, "show stat\n", 10) != 10) {
		close(fd);
		return -1;
	}
	char buf[65536];
	size_t len = 0;
	ssize_t r;
	while (len < sizeof buf - 1 && (r = read(fd, buf + len, sizeof buf - 1 - len)) > 0)
		len += (size_t)r;
	close(fd);
	buf[len] = 0;
	/* CSV: pxname,svname,...; the 18th field is the status ("UP", "UP 1/2", "DOWN", ...) */
	int up = 0;
	for (char *save = NULL, *line = strtok_r(buf, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, "be,", 3) != 0 || !strncmp(line, "be,BACKEND,", 11))
			continue;
		const char *p = line;
		for (int i = 0; i < 17 && p; i++) {
			p = strchr(p, ',');
			if (p)
				p++;
		}
		if (p && !strncmp(p, "UP", 2))
			up++;
	}
	return up;
}

int e2e_haproxy_wait_up(const e2e_haproxy *h, int n, int ms)
{
	double deadline = now_s() + ms / 1000.0;
	int up = -1;
	do {
		up = e2e_haproxy_up(h);
		if (up == n)
			return 1;
		usleep(20000);
	} while (now_s() < deadline);
	fprintf(stderr, "haproxy: %d servers up, not %d, after %d ms\n", up, n, ms);
	return 0;
}

int e2e_haproxy_stop(e2e_haproxy *h)
{
	if (h->pid <= 0)
		return -1;
	kill(h->pid, SIGTERM);
	double deadline = now_s() + 5;
	int st = 0;
	while (now_s() < deadline) {
		if (waitpid(h->pid, &st, WNOHANG) == h->pid) {
			h->pid = -1;
			return WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : -1;
		}
		usleep(10000);
	}
	kill(h->pid, SIGKILL);
	waitpid(h->pid, &st, 0);
	h->pid = -1;
	return -1;
}

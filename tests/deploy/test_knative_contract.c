/* test_knative_contract.c — thaw started the way deploy/knative/service.yaml starts it (its
 * container args, no --port, $PORT and the K_* variables set as Knative sets them, stdin a pipe)
 * keeps Knative's runtime contract: listens on $PORT, carries K_SERVICE/K_REVISION/
 * K_CONFIGURATION in its log lines and in thaw_build_info, never reads stdin (fd 0 is /dev/null),
 * passes traceparent and X-Request-Id back, hands request headers to the function untouched
 * (less Authorization; checked through echo's "echo_headers"), and on SIGTERM finishes the in-flight call, refuses
 * new connections and exits 0 within the manifest's --drain-timeout. (test_http_e2e covers the
 * drain in more detail with e2e_start's options.) */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <jansson.h>
#include "tests/e2e/e2e.h"
#include "tests/t.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* manifest_args reads the Knative container's serve options (without --data) into words;
 * returns their count or -1 (no python3-yaml: -2) */
static int manifest_args(const char *src, char words[][128], int max)
{
	char cmd[1024];
	snprintf(cmd, sizeof cmd, "python3 -c 'import yaml' 2>/dev/null || exit 2; cd '%s' && "
		 "python3 tests/deploy/check_deploy.py args deploy/knative/service.yaml", src);
	FILE *p = popen(cmd, "r");
	if (!p)
		return -1;
	int n = 0;
	while (n < max && fgets(words[n], 128, p)) {
		words[n][strcspn(words[n], "\n")] = 0;
		n++;
	}
	int st = pclose(p);
	if (WIFEXITED(st) && WEXITSTATUS(st) == 2)
		return -2;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? n : -1;
}

static double drain_of(char words[][128], int n)
{
	for (int i = 0; i + 1 < n; i++)
		if (strcmp(words[i], "--drain-timeout") == 0)
			return atof(words[i + 1]);
	return 30;
}

static int wait_listening(e2e_server *s, double timeout)
{
	double end = now_s() + timeout;
	while (now_s() < end) {
		if (e2e_log_contains(s, "\"msg\":\"listening\""))
			return 0;
		if (waitpid(s->pid, NULL, WNOHANG) == s->pid) {
			s->pid = 0;
			return -1;
		}
		usleep(10000);
	}
	return -1;
}

static void test_contract(void)
{
	const char *bin = getenv("THAW_BIN"), *src = getenv("THAW_SRC");
	if (!bin)
		bin = "build/thaw";
	if (!src)
		src = ".";
	static char words[40][128];
	int n = manifest_args(src, words, 32);
	if (n == -2)
		T_SKIP("python3-yaml not installed (scripts/install-deps.sh)");
	T_CHECK(n >= 2);
	if (n < 0)
		return;
	for (int i = 0; i < n; i++)
		T_CHECK(strcmp(words[i], "--port") != 0);
	double drain = drain_of(words, n);

	e2e_server s;
	int in[2] = {-1, -1}, started = 0;
	/* $PORT is a port picked free just before the start; should another process take it in
	 * between (the server exits at once), try again with a new one */
	for (int attempt = 0; attempt < 3 && !started; attempt++) {
		if (in[1] >= 0)
			close(in[1]);
		memset(&s, 0, sizeof s);
		s.port = t_free_port();
		T_CHECK(s.port > 0);
		snprintf(s.log_path, sizeof s.log_path, "%s/serve.log", t_tmpdir());
		snprintf(s.data_dir, sizeof s.data_dir, "%s/data", t_tmpdir());
		T_EQ_INT(pipe(in), 0);
		pid_t pid = fork();
		if (pid == 0) {
			const char *argv[48];
			int a = 0;
			argv[a++] = bin;
			argv[a++] = "serve";
			for (int i = 0; i < n && a < 40; i++)
				argv[a++] = words[i];
			argv[a++] = "--data";
			argv[a++] = s.data_dir;
			argv[a++] = "--host";
			argv[a++] = "127.0.0.1";
			argv[a++] = "--dev";
			argv[a] = NULL;
			char port[32];
			snprintf(port, sizeof port, "%d", s.port);
			setenv("PORT", port, 1);
			setenv("K_SERVICE", "thaw", 1);
			setenv("K_REVISION", "thaw-00001", 1);
			setenv("K_CONFIGURATION", "thaw", 1);
			dup2(in[0], 0);
			close(in[0]);
			close(in[1]);
			int fd = open(s.log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
			if (fd >= 0) {
				dup2(fd, 1);
				dup2(fd, 2);
			}
			execv(bin, (char *const *)argv);
			_exit(127);
		}
		close(in[0]);
		s.pid = pid;
		started = wait_listening(&s, 30) == 0;
		if (!started && s.pid > 0)
			break;   /* still running but not listening: no point in another port */
	}
	if (!started) {
		T_CHECK(!"thaw serve did not start with the manifest's options and $PORT");
		close(in[1]);
		if (s.pid > 0) {
			kill(s.pid, SIGKILL);
			waitpid(s.pid, NULL, 0);
		}
		return;
	}
	/* $PORT was used */
	char needle[64];
	snprintf(needle, sizeof needle, "\"port\":%d", s.port);
	T_CHECK(e2e_log_contains(&s, needle));
	/* K_* in every log line (checked on the start-up line) */
	T_CHECK(e2e_log_contains(&s, "\"k_service\":\"thaw\""));
	T_CHECK(e2e_log_contains(&s, "\"k_revision\":\"thaw-00001\""));
	T_CHECK(e2e_log_contains(&s, "\"k_configuration\":\"thaw\""));
	/* stdin: fd 0 is /dev/null, so nothing holds our pipe's read end any more (EPIPE) */
	ssize_t w = write(in[1], "{\"x\":1}\n", 8);
	T_CHECK(w == -1 && errno == EPIPE);
	char link[64], target[256] = "";
	snprintf(link, sizeof link, "/proc/%d/fd/0", (int)s.pid);
	ssize_t tl = readlink(link, target, sizeof target - 1);
	if (tl > 0)
		target[tl] = 0;
	T_EQ_STR(target, "/dev/null");

	e2e_resp r;
	T_EQ_INT(e2e_request(&s, "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n", &r), 0);
	T_CHECK(r.body && strstr(r.body, "thaw_build_info{") &&
		strstr(r.body, "k_service=\"thaw\",k_revision=\"thaw-00001\",k_configuration=\"thaw\""));
	e2e_resp_free(&r);
	T_EQ_INT(e2e_request(&s, "PUT /v1/functions/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 15\r\n\r\n"
			     "{\"kind\":\"echo\"}", &r), 0);
	T_EQ_INT(r.status, 201);
	e2e_resp_free(&r);
	/* traceparent and the request id come back unchanged */
	const char *tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
	char req[512];
	snprintf(req, sizeof req, "POST /v1/functions/echo/invoke HTTP/1.1\r\nHost: t\r\n"
		 "traceparent: %s\r\nX-Request-Id: knative-req-1\r\nContent-Length: 7\r\n\r\n{\"a\":1}", tp);
	T_EQ_INT(e2e_request(&s, req, &r), 0);
	T_EQ_INT(r.status, 200);
	char *tpo = e2e_header(&r, "traceparent"), *rid = e2e_header(&r, "X-Request-Id");
	T_EQ_STR(tpo, tp);
	T_EQ_STR(rid, "knative-req-1");
	free(tpo);
	free(rid);
	e2e_resp_free(&r);

	/* request headers reach the function untouched (echo returns what it was handed): names
	 * in their case, values byte for byte (inner blanks, commas, quotes, UTF-8), repeats in
	 * order; Authorization is withheld. The comparison is exact: a header altered, dropped or
	 * added fails it. */
	static const char *const hk[][2] = {
		{"Host", "t"},
		{"K-Proxy-Request", "activator"},
		{"X-Forwarded-For", "10.0.0.7, 10.0.0.8"},
		{"Forwarded", "for=10.0.0.7;proto=https"},
		{"ce-id", "a1 b2\tc3"},
		{"X-Weird-Case", "Mixed \"quoted\" value; q=0.5"},
		{"X-Multi", "one"},
		{"X-Unicode", "gr\xc3\xbc\xc3\x9f dich"},
		{"X-Multi", "two"},
		{"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		{"Content-Type", "application/json"},
		{"Content-Length", "21"},
	};
	char hreq[2048];
	size_t hl = (size_t)snprintf(hreq, sizeof hreq, "POST /v1/functions/echo/invoke HTTP/1.1\r\n");
	for (size_t i = 0; i < sizeof hk / sizeof hk[0]; i++) {
		hl += (size_t)snprintf(hreq + hl, sizeof hreq - hl, "%s: %s\r\n", hk[i][0], hk[i][1]);
		if (i == 4)   /* a credential for thaw: never handed to the function */
			hl += (size_t)snprintf(hreq + hl, sizeof hreq - hl, "Authorization: Bearer secret\r\n");
	}
	snprintf(hreq + hl, sizeof hreq - hl, "\r\n{\"echo_headers\":true}");
	T_EQ_INT(e2e_request(&s, hreq, &r), 0);
	T_EQ_INT(r.status, 200);
	json_t *got = json_loadb(r.body ? r.body : "", r.body_len, 0, NULL);
	json_t *want = json_object();
	for (size_t i = 0; i < sizeof hk / sizeof hk[0]; i++) {
		json_t *prev = json_object_get(want, hk[i][0]);
		if (!prev)
			json_object_set_new(want, hk[i][0], json_string(hk[i][1]));
		else
			json_object_set_new(want, hk[i][0], json_pack("[O,s]", prev, hk[i][1]));
	}
	json_t *gh = json_object_get(got, "headers");
	T_CHECK(gh && json_equal(gh, want));
	T_CHECK(json_object_get(gh, "Authorization") == NULL);
	if (!gh || !json_equal(gh, want)) {
		char *a = json_dumps(gh, JSON_COMPACT), *b = json_dumps(want, JSON_COMPACT);
		fprintf(stderr, "  headers seen by the function: %s\n  sent: %s\n", a ? a : "(none)", b);
		free(a);
		free(b);
	}
	json_decref(got);
	json_decref(want);
	e2e_resp_free(&r);

	/* SIGTERM with a call in flight: it completes, new connections are refused, exit 0 */
	int slow = e2e_connect(&s);
	const char *h = "POST /v1/functions/echo/invoke HTTP/1.1\r\nHost: t\r\nContent-Length: 7\r\n\r\n{\"a\"";
	T_EQ_INT(e2e_send(slow, h, strlen(h)), 0);
	usleep(100000);
	double t0 = now_s();
	kill(s.pid, SIGTERM);
	/* once the drain has begun (logged just before the listener closes) */
	T_CHECK(e2e_wait_log(&s, "draining", 20000));
	T_CHECK(e2e_wait_refused(&s, 10000));
	T_EQ_INT(e2e_send(slow, ":2}", 3), 0);
	T_EQ_INT(e2e_read_resp(slow, &r), 0);
	T_EQ_INT(r.status, 200);
	T_EQ_STR(r.body, "{\"a\":2}");
	e2e_resp_free(&r);
	close(slow);
	T_EQ_INT(e2e_stop(&s, 0, drain + 2), 0);
	T_CHECK(now_s() - t0 < drain + 2);
	T_CHECK(e2e_log_contains(&s, "draining"));
	close(in[1]);
}

void t_main(void)
{
	signal(SIGPIPE, SIG_IGN);
	T_RUN(test_contract);
}

/* fuzz_srv.h — the in-process server that the request-path fuzz targets (fuzz_v2, fuzz_openai)
 * drive: a data directory under /tmp (removed at exit) with functions registered before the
 * server starts, the daemon's real rt_server on 127.0.0.1:<ephemeral>, and one request per input
 * sent over loopback TCP while the event loop is driven until the server closes the connection
 * (bounded). Header-only: each fuzz target is built from its one .c file (make fuzz, replay.c). */
#ifndef THAW_FUZZ_SRV_H
#define THAW_FUZZ_SRV_H
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "runtime/base/rt_log.h"
#include "runtime/store/rt_manifest.h"
#include "runtime/store/rt_registry.h"
#include "runtime/rt_server.h"

static uv_loop_t fsrv_loop;
static rt_server fsrv;
static char fsrv_dir[256];   /* the data directory */

static int fsrv_rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb; (void)flag; (void)ftw;
	return remove(p);
}

static void fsrv_cleanup(void)
{
	if (fsrv_dir[0])
		nftw(fsrv_dir, fsrv_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* fsrv_dirs makes /tmp/thaw-fuzz-NAME-PID and its snapshots/ (removed at exit); 0 or -1 */
static int fsrv_dirs(const char *name)
{
	char snaps[320];
	snprintf(fsrv_dir, sizeof fsrv_dir, "/tmp/thaw-fuzz-%s-%d", name, (int)getpid());
	snprintf(snaps, sizeof snaps, "%s/snapshots", fsrv_dir);
	fsrv_cleanup();
	atexit(fsrv_cleanup);
	return mkdir(fsrv_dir, 0700) < 0 || mkdir(snaps, 0700) < 0 ? -1 : 0;
}

/* fsrv_put registers function name with manifest (JSON text) in reg; 0 or -1 (said why) */
static int fsrv_put(rt_registry *reg, const char *name, const char *manifest)
{
	rt_manifest m;
	char err[256], path[RT_MANIFEST_PATH_MAX] = "";
	if (rt_manifest_parse(manifest, strlen(manifest), NULL, NULL, &m, err, sizeof err) < 0)
		goto fail;
	if (m.snapshot[0] && rt_manifest_resolve_snapshot(fsrv_dir, NULL, 0, m.snapshot, path,
							  sizeof path, err, sizeof err) < 0)
		goto fail;
	if (rt_registry_put(reg, name, &m, path, NULL, err, sizeof err) < 0)
		goto fail;
	return 0;
fail:
	fprintf(stderr, "fuzz: function %s: %s\n", name, err);
	return -1;
}

/* fsrv_start starts the server on fsrv_dir: dev mode (no keys), no audit or access log, 1 MiB
 * bodies, 200 ms read timeout, one CPU backend thread; SIGPIPE ignored as thaw serve does */
static int fsrv_start(void)
{
	rt_server_config cfg;
	memset(&cfg, 0, sizeof cfg);
	rt_http_config_defaults(&cfg.http);
	rt_sched_config_defaults(&cfg.sched);
	rt_jobs_config_defaults(&cfg.jobs);
	cfg.sched.cpu_threads = 1;
	cfg.http.host = "127.0.0.1";
	cfg.http.port = 0;
	cfg.http.max_body_bytes = 1 << 20;
	cfg.http.access_log = 0;
	cfg.http.read_timeout_ms = 200;
	cfg.data_dir = fsrv_dir;
	cfg.access.dev = 1;
	cfg.access.no_audit = 1;
	cfg.drain_timeout_s = 1;
	rt_log_init(RT_LOG_ERROR);
	signal(SIGPIPE, SIG_IGN);
	uv_loop_init(&fsrv_loop);
	return rt_server_init(&fsrv, &fsrv_loop, &cfg);
}

static double fsrv_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* fsrv_exchange sends req (total bytes) on a new connection and drives the loop until the
 * server closes it (10 s at most); with hangup, goes away once the first answer bytes came.
 * Then lets the server finish what it still runs for that connection (drain_iters x 100 us).
 * THAW_FUZZ_VERBOSE prints the answer. */
static void fsrv_exchange(const uint8_t *req, size_t total, int hangup, int drain_iters)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return;
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons((uint16_t)rt_http_port(fsrv.http))};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	connect(fd, (struct sockaddr *)&a, sizeof a);
	size_t sent = 0, got = 0;
	char buf[65536];
	static int verbose = -1;
	if (verbose < 0)
		verbose = getenv("THAW_FUZZ_VERBOSE") != NULL;
	double deadline = fsrv_now() + 10;   /* a cold start of a test model is milliseconds */
	while (fsrv_now() < deadline) {
		if (sent < total) {
			ssize_t n = send(fd, req + sent, total - sent, MSG_NOSIGNAL);
			if (n > 0)
				sent += (size_t)n;
		}
		uv_run(&fsrv_loop, UV_RUN_NOWAIT);
		if (hangup && sent == total && got > 0)
			break;   /* the first bytes of the answer came: go away */
		ssize_t r = recv(fd, buf, sizeof buf, 0);
		if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINPROGRESS && errno != ENOTCONN))
			break;
		if (r < 0)
			usleep(20);
		else if (verbose)
			fprintf(stderr, "%s%.*s", got ? "" : "--- ", (int)r, buf);
		if (r > 0)
			got += (size_t)r;
	}
	if (verbose)
		fprintf(stderr, "\n(%zu bytes)\n", got);
	close(fd);
	for (int i = 0; i < drain_iters && rt_http_open_connections(fsrv.http) > 0; i++) {
		uv_run(&fsrv_loop, UV_RUN_NOWAIT);
		usleep(100);
	}
}

/* fsrv_request: fsrv_exchange of an HTTP head (hn bytes) followed by a fuzzed body */
static void fsrv_request(const char *head, int hn, const uint8_t *body, size_t body_len,
			 int hangup, int drain_iters)
{
	if (hn < 0)
		return;
	size_t total = (size_t)hn + body_len;
	uint8_t *req = malloc(total);
	if (!req)
		return;
	memcpy(req, head, (size_t)hn);
	memcpy(req + hn, body, body_len);
	fsrv_exchange(req, total, hangup, drain_iters);
	free(req);
}

#endif

/* fuzz_openai.c — libFuzzer target for the OpenAI-compatible request path (rt_api_openai.c):
 * an in-process rt_server (the daemon's real router and handlers) over a data directory under
 * /tmp in which setup() packs tests/data/llama_tiny twice — "tl" with the test tokenizer
 * (tests/data/tok/small/tokenizer.json and tokenizer_config.json) in its attachment, "plain" without —
 * and registers both plus an echo function ("ec"). Each input is one request over loopback TCP:
 *   byte 0   bits 0-1 pick the route (0 /v1/completions, 1 /v1/chat/completions, 2 GET
 *            /v1/models, 3 GET /v1/models/tl); bit 2 closes the connection right after the
 *            request was sent (a client gone mid-stream);
 *   bytes 1- the body.
 * The event loop is driven until the server closes the connection (bounded). Crashes and
 * sanitizer reports are the findings. THAW_SRC (set by tests/run.sh) locates the repository. */
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
#include <jansson.h>
#include "runtime/rt_log.h"
#include "runtime/rt_manifest.h"
#include "runtime/rt_registry.h"
#include "runtime/rt_server.h"
#include "runtime/rt_tok.h"
#include "snapshot/snap_pack.h"

static uv_loop_t loop;
static rt_server srv;
static int ready;
static char data_dir[256];

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb; (void)flag; (void)ftw;
	return remove(p);
}

static void cleanup(void)
{
	if (data_dir[0])
		nftw(data_dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static int put_fn(rt_registry *reg, const char *name, const char *manifest)
{
	rt_manifest m;
	char err[256], path[RT_MANIFEST_PATH_MAX] = "";
	if (rt_manifest_parse(manifest, strlen(manifest), NULL, NULL, &m, err, sizeof err) < 0)
		goto fail;
	if (m.snapshot[0] && rt_manifest_resolve_snapshot(data_dir, NULL, 0, m.snapshot, path,
							  sizeof path, err, sizeof err) < 0)
		goto fail;
	if (rt_registry_put(reg, name, &m, path, NULL, err, sizeof err) < 0)
		goto fail;
	return 0;
fail:
	fprintf(stderr, "fuzz_openai: function %s: %s\n", name, err);
	return -1;
}

static int pack(const char *src, const char *out, const char *extra, const char *attach)
{
	snap_pack_opts po;
	snap_pack_stats ps;
	char err[256];
	memset(&po, 0, sizeof po);
	po.kind = "llama";
	po.w.threads = 1;
	po.extra_metadata = extra;
	po.w.attachment = attach;
	po.w.attachment_len = attach ? strlen(attach) : 0;
	if (snap_pack(src, out, &po, &ps, err, sizeof err) < 0) {
		fprintf(stderr, "fuzz_openai: pack %s: %s\n", src, err);
		return -1;
	}
	return 0;
}

static int setup(void)
{
	const char *src = getenv("THAW_SRC");
	char st[512], snaps[320], out[384], tj[512], cj[512];
	if (!src)
		src = ".";
	snprintf(data_dir, sizeof data_dir, "/tmp/thaw-fuzz-openai-%d", (int)getpid());
	snprintf(snaps, sizeof snaps, "%s/snapshots", data_dir);
	snprintf(st, sizeof st, "%s/tests/data/llama_tiny", src);
	snprintf(tj, sizeof tj, "%s/tests/data/tok/small/tokenizer.json", src);
	snprintf(cj, sizeof cj, "%s/tests/data/tok/small/tokenizer_config.json", src);
	cleanup();
	atexit(cleanup);
	if (mkdir(data_dir, 0700) < 0 || mkdir(snaps, 0700) < 0)
		return -1;
	/* "tl" carries the tokenizer the way `thaw snapshot pack` does (the snapshot's attachment) */
	char *extra = NULL, *attach = NULL, warn[256], perr[256];
	size_t alen = 0;
	if (rt_tok_pack_metadata(NULL, tj, cj, &extra, &attach, &alen, warn, sizeof warn, perr,
				 sizeof perr) < 0) {
		fprintf(stderr, "fuzz_openai: %s: %s\n", tj, perr);
		return -1;
	}
	snprintf(out, sizeof out, "%s/tl.thaw", snaps);
	int rc = pack(st, out, extra, attach);
	free(extra);
	free(attach);
	snprintf(out, sizeof out, "%s/plain.thaw", snaps);
	if (rc == 0)
		rc = pack(st, out, NULL, NULL);
	if (rc < 0)
		return -1;
	rt_registry *reg;
	char err[256];
	if (rt_registry_open(data_dir, &reg, err, sizeof err) < 0)
		return -1;
	rc = put_fn(reg, "tl", "{\"kind\":\"llama\",\"snapshot\":\"tl.thaw\",\"device\":\"cpu\"}");
	if (rc == 0)
		rc = put_fn(reg, "plain", "{\"kind\":\"llama\",\"snapshot\":\"plain.thaw\",\"device\":\"cpu\"}");
	if (rc == 0)
		rc = put_fn(reg, "ec", "{\"kind\":\"echo\"}");
	rt_registry_close(reg);
	if (rc < 0)
		return -1;

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
	cfg.data_dir = data_dir;
	cfg.dev = 1;               /* no API keys */
	cfg.no_audit = 1;
	cfg.drain_timeout_s = 1;
	rt_log_init(RT_LOG_ERROR);
	signal(SIGPIPE, SIG_IGN);   /* as thaw serve does: a gone client is a write error, not a kill */
	uv_loop_init(&loop);
	return rt_server_init(&srv, &loop, &cfg);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!ready) {
		if (setup() < 0)
			abort();
		ready = 1;
	}
	if (size < 1)
		return 0;
	static const char *const routes[4][2] = {
		{"POST", "/v1/completions"}, {"POST", "/v1/chat/completions"},
		{"GET", "/v1/models"}, {"GET", "/v1/models/tl"},
	};
	int route = data[0] & 3, hangup = (data[0] >> 2) & 1;
	size_t body_len = size - 1;
	char head[512];
	int hn = snprintf(head, sizeof head, "%s %s HTTP/1.1\r\nHost: f\r\nConnection: close\r\n"
			  "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
			  routes[route][0], routes[route][1], body_len);
	size_t total = (size_t)hn + body_len;
	uint8_t *req = malloc(total);
	if (!req)
		return 0;
	memcpy(req, head, (size_t)hn);
	memcpy(req + hn, data + 1, body_len);

	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)rt_http_port(srv.http))};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0) {
		free(req);
		return 0;
	}
	connect(fd, (struct sockaddr *)&a, sizeof a);
	size_t sent = 0, got = 0;
	char buf[65536];
	static int verbose = -1;
	if (verbose < 0)
		verbose = getenv("THAW_FUZZ_VERBOSE") != NULL;
	double deadline = now_s() + 10;   /* a cold start of the tiny llama is milliseconds */
	while (now_s() < deadline) {
		if (sent < total) {
			ssize_t n = send(fd, req + sent, total - sent, MSG_NOSIGNAL);
			if (n > 0)
				sent += (size_t)n;
		}
		uv_run(&loop, UV_RUN_NOWAIT);
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
	free(req);
	/* let the server finish the call (a generation still running after a hang-up) */
	for (int i = 0; i < 20000 && rt_http_open_connections(srv.http) > 0; i++) {
		uv_run(&loop, UV_RUN_NOWAIT);
		usleep(100);
	}
	return 0;
}

/* fuzz_v2.c — libFuzzer target for the Open Inference Protocol request path: an in-process
 * rt_server (the daemon's real router and handlers) over a data directory under /tmp in which
 * setup() packs tests/data/mlp_digits/model.safetensors into DATA/snapshots/digits.thaw and
 * registers two functions in the registry before the server starts: "digits" (kind mlp, cpu)
 * and "echo" (kind echo). Each input is one request, sent over loopback TCP:
 *   bytes 0-1   little-endian u16: bit 15 picks the model (0 digits, 1 echo), bit 14 omits the
 *               Inference-Header-Content-Length header, bits 0-13 are its value (the length of
 *               the JSON part; it may exceed the body: the server must refuse it);
 *   bytes 2-    the body (JSON header followed by binary tensor data). A body that starts with
 *               the gzip magic (1f 8b) goes out with Content-Encoding: gzip, one that starts
 *               with a zlib header byte (0x78) with Content-Encoding: deflate (tritonclient's
 *               compressed requests; the server inflates them first).
 * It goes out as POST /v2/models/{digits|echo}/infer with Connection: close, and the event loop
 * is driven until the server closes the connection (bounded). Crashes and sanitizer reports are
 * the findings. THAW_SRC (set by tests/run.sh) locates the repository; default ".". */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "runtime/rt_log.h"
#include "runtime/rt_manifest.h"
#include "runtime/rt_registry.h"
#include "runtime/rt_server.h"
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
	fprintf(stderr, "fuzz_v2: function %s: %s\n", name, err);
	return -1;
}

static int setup(void)
{
	const char *src = getenv("THAW_SRC");
	char st[512], snaps[320], out[384], err[256];
	snprintf(data_dir, sizeof data_dir, "/tmp/thaw-fuzz-v2-%d", (int)getpid());
	snprintf(snaps, sizeof snaps, "%s/snapshots", data_dir);
	snprintf(out, sizeof out, "%s/digits.thaw", snaps);
	snprintf(st, sizeof st, "%s/tests/data/mlp_digits/model.safetensors", src ? src : ".");
	cleanup();
	atexit(cleanup);
	if (mkdir(data_dir, 0700) < 0 || mkdir(snaps, 0700) < 0)
		return -1;
	snap_pack_opts po;
	memset(&po, 0, sizeof po);
	po.kind = "mlp";
	po.w.threads = 1;
	po.w.progress = 0;
	snap_pack_stats ps;
	if (snap_pack(st, out, &po, &ps, err, sizeof err) < 0) {
		fprintf(stderr, "fuzz_v2: pack %s: %s\n", st, err);
		return -1;
	}
	rt_registry *reg;
	if (rt_registry_open(data_dir, &reg, err, sizeof err) < 0)
		return -1;
	int rc = put_fn(reg, "digits", "{\"kind\":\"mlp\",\"snapshot\":\"digits.thaw\",\"device\":\"cpu\"}");
	if (rc == 0)
		rc = put_fn(reg, "echo", "{\"kind\":\"echo\"}");
	rt_registry_close(reg);
	if (rc < 0)
		return -1;

	rt_server_config cfg;
	memset(&cfg, 0, sizeof cfg);
	rt_http_config_defaults(&cfg.http);
	rt_sched_config_defaults(&cfg.sched);
	rt_jobs_config_defaults(&cfg.jobs);
	cfg.http.host = "127.0.0.1";
	cfg.http.port = 0;
	cfg.http.max_body_bytes = 1 << 20;
	cfg.http.access_log = 0;
	cfg.http.read_timeout_ms = 200;
	cfg.data_dir = data_dir;
	cfg.dev = 1;               /* no API keys */
	cfg.drain_timeout_s = 1;
	rt_log_init(RT_LOG_ERROR);
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
	if (size < 2)
		return 0;
	unsigned ctl = data[0] | (unsigned)data[1] << 8;
	const char *model = (ctl & 0x8000) ? "echo" : "digits";
	size_t body_len = size - 2;
	const char *enc = body_len >= 2 && data[2] == 0x1f && data[3] == 0x8b ? "Content-Encoding: gzip\r\n" :
			  body_len >= 1 && data[2] == 0x78 ? "Content-Encoding: deflate\r\n" : "";
	char head[512];
	int hn;
	if (ctl & 0x4000)
		hn = snprintf(head, sizeof head, "POST /v2/models/%s/infer HTTP/1.1\r\nHost: f\r\n"
			      "Connection: close\r\nContent-Type: application/json\r\n%s"
			      "Content-Length: %zu\r\n\r\n", model, enc, body_len);
	else
		hn = snprintf(head, sizeof head, "POST /v2/models/%s/infer HTTP/1.1\r\nHost: f\r\n"
			      "Connection: close\r\nContent-Type: application/octet-stream\r\n%s"
			      "Inference-Header-Content-Length: %u\r\nContent-Length: %zu\r\n\r\n",
			      model, enc, ctl & 0x3fff, body_len);
	size_t total = (size_t)hn + body_len;
	uint8_t *req = malloc(total);
	if (!req)
		return 0;
	memcpy(req, head, (size_t)hn);
	memcpy(req + hn, data + 2, body_len);

	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)rt_http_port(srv.http))};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0) {
		free(req);
		return 0;
	}
	connect(fd, (struct sockaddr *)&a, sizeof a);
	size_t sent = 0;
	char buf[65536];
	size_t got = 0;
	static int verbose = -1;
	if (verbose < 0)
		verbose = getenv("THAW_FUZZ_VERBOSE") != NULL;
	double deadline = now_s() + 10;   /* a cold start of the mlp is milliseconds */
	while (now_s() < deadline) {
		if (sent < total) {
			ssize_t n = send(fd, req + sent, total - sent, MSG_NOSIGNAL);
			if (n > 0)
				sent += (size_t)n;
		}
		uv_run(&loop, UV_RUN_NOWAIT);
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
	for (int i = 0; i < 50 && rt_http_open_connections(srv.http) > 0; i++) {
		uv_run(&loop, UV_RUN_NOWAIT);
		usleep(100);
	}
	return 0;
}

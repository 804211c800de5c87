/* fuzz_http.c — libFuzzer target for the HTTP server: each input is a whole request stream sent
 * over one loopback TCP connection to an in-process server with the daemon's real router, head
 * hook, gate and handlers (tight limits so that 413/431/503 paths are reached), uploads
 * included: PUT /v1/snapshots|data/{name} streams into the server's data directory (a
 * temporary one, removed at exit), at most 16 KiB.
 *
 * Input: byte 0 holds flags, byte 1 seeds the split points, the rest is the stream.
 *   bit 0   never read the responses (a 4 KiB receive buffer, no recv: write backpressure)
 *   bit 1   the keyed server (no key exists: every route but the probes is refused at the head)
 *           instead of the --dev one (requests reach the handlers, e.g. the built-in echo)
 *   bits 2-3  the stream is sent 1, 4, 16 or 64 times back to back (a deep pipeline from a
 *           small input)
 * The stream goes out in pieces of pseudo-random sizes (from byte 1) with loop turns between
 * them. Crashes, sanitizer reports, and a connection the server never lets go are the findings. */
#include <errno.h>
#include <fcntl.h>
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
#include <unistd.h>
#include "runtime/base/rt_log.h"
#include "runtime/rt_server.h"

static uv_loop_t loop_storage, *loop = &loop_storage;
static rt_server dev, keyed;
static char top[256];
static int ready;

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb; (void)flag; (void)ftw;
	return remove(p);
}

static void cleanup(void)
{
	if (top[0])
		nftw(top, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* a server on 127.0.0.1:<ephemeral> with data under top/name: tight limits, no logs */
static int start(rt_server *srv, const char *name, int is_dev)
{
	rt_server_config cfg;
	static char dirs[2][320];
	char *dir = dirs[is_dev];
	memset(&cfg, 0, sizeof cfg);
	rt_http_config_defaults(&cfg.http);
	rt_sched_config_defaults(&cfg.sched);
	rt_jobs_config_defaults(&cfg.jobs);
	cfg.sched.cpu_threads = 1;
	cfg.http.host = "127.0.0.1";
	cfg.http.port = 0;
	cfg.http.max_body_bytes = 2048;
	cfg.http.max_header_bytes = 1024;
	cfg.http.max_body_inflight = 4096;
	cfg.http.max_write_queue = 4096;
	cfg.max_upload_bytes = 16384;   /* PUT /v1/snapshots|data: oversize bodies from small inputs */
	cfg.http.access_log = 0;
	cfg.http.read_timeout_ms = 50;
	cfg.access.dev = is_dev;
	cfg.cors_origins[0] = "http://a.example";   /* preflights and allow headers fuzzed too */
	cfg.cors_origins[1] = is_dev ? "*" : "https://b.example:8443";
	cfg.n_cors_origins = 2;
	cfg.access.no_audit = 1;
	cfg.drain_timeout_s = 1;
	snprintf(dir, sizeof dirs[0], "%s/%s", top, name);
	cfg.data_dir = dir;
	return rt_server_init(srv, loop, &cfg);
}

static int setup(void)
{
	snprintf(top, sizeof top, "/tmp/thaw-fuzz-http-%d", (int)getpid());
	cleanup();
	atexit(cleanup);
	rt_log_init(RT_LOG_ERROR);
	signal(SIGPIPE, SIG_IGN);
	uv_loop_init(loop);
	return start(&dev, "dev", 1) < 0 || start(&keyed, "keyed", 0) < 0 ? -1 : 0;
}

static uint32_t next_rand(uint32_t *s)
{
	*s = *s * 1103515245u + 12345u;
	return *s >> 8;
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
	int never_read = data[0] & 1;
	rt_server *srv = (data[0] & 2) ? &keyed : &dev;
	size_t reps = (size_t)1 << (2 * ((data[0] >> 2) & 3));
	uint32_t seed = data[1] | 0x100u;
	const uint8_t *body = data + 2;
	size_t blen = size - 2, total = blen * reps;
	uint8_t *stream = malloc(total ? total : 1);
	if (!stream)
		return 0;
	for (size_t i = 0; i < reps; i++)
		memcpy(stream + i * blen, body, blen);

	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		free(stream);
		return 0;
	}
	if (never_read) {
		int rcv = 4096;
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
	}
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)rt_http_port(srv->http))};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	connect(fd, (struct sockaddr *)&a, sizeof a);
	size_t sent = 0, got = 0;
	int quiet = 0, closed = 0, stalled = 0;
	char buf[65536];
	for (int iter = 0; iter < 20000 && !closed; iter++) {
		if (sent < total) {
			size_t piece = 1 + next_rand(&seed) % (total / 4 + 64);
			if (piece > total - sent)
				piece = total - sent;
			ssize_t n = send(fd, stream + sent, piece, MSG_NOSIGNAL);
			if (n > 0) {
				sent += (size_t)n;
				stalled = 0;
			} else if (n < 0 && errno != EAGAIN && errno != EINPROGRESS && errno != ENOTCONN) {
				break;   /* the server closed */
			} else if (++stalled > 300) {
				break;   /* the server stopped reading (backpressure): give up */
			}
			if (sent == total)
				shutdown(fd, SHUT_WR);
		} else if (total == 0 && iter == 0) {
			shutdown(fd, SHUT_WR);
		}
		uv_run(loop, UV_RUN_NOWAIT);
		if (never_read) {
			if (sent == total && ++quiet > 200)
				break;
			if (stalled || sent == total)
				usleep(50);
			continue;
		}
		ssize_t r = recv(fd, buf, sizeof buf, 0);
		if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINPROGRESS && errno != ENOTCONN))
			closed = 1;
		else if (r < 0 && sent == total && ++quiet > 200)
			break;
		else if (r > 0) {
			quiet = 0;
			got += (size_t)r;
		}
		if (r < 0 && sent == total)
			usleep(50);
	}
	if (getenv("THAW_FUZZ_VERBOSE"))
		fprintf(stderr, "fuzz_http: %zu of %zu bytes sent, %zu received%s\n", sent, total, got,
			never_read ? " (never read)" : "");
	close(fd);
	free(stream);
	/* let the server notice the close and free the connection */
	for (int i = 0; i < 10000 && (rt_http_open_connections(dev.http) > 0 ||
				     rt_http_open_connections(keyed.http) > 0); i++) {
		uv_run(loop, UV_RUN_NOWAIT);
		usleep(100);
	}
	if (rt_http_open_connections(dev.http) > 0 || rt_http_open_connections(keyed.http) > 0) {
		fprintf(stderr, "fuzz_http: a connection is still open 1 s after the client closed\n");
		abort();
	}
	return 0;
}

/* fuzz_proxy.c — libFuzzer target for the forwarder's answer path: an in-process rt_http
 * "front" forwards one request per input through rt_proxy to a fake peer (a loopback socket
 * this target drives) that answers with the input's bytes, in pieces, while a client reads
 * what the front relays. Each forward has a 150 ms deadline, so a peer that stops mid-answer
 * ends too.
 *
 * Input: byte 0 holds flags, byte 1 seeds the split points, the rest is the peer's answer.
 *   bit 0   the client's request is HEAD (the answer has no body) instead of POST
 *   bit 1   the peer keeps its connection open after the bytes (else it closes it)
 *   bit 2   fallback_on_503 is set
 *   bit 3   the client never reads (a 4 KiB receive buffer: backpressure)
 * Findings: crashes, sanitizer reports, a forward whose done is not called exactly once, a
 * forward still in flight or a connection still open after the client and the peer left. */
#include <errno.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "runtime/base/rt_clock.h"
#include "runtime/base/rt_log.h"
#include "runtime/http/rt_http.h"
#include "runtime/http/rt_proxy.h"

static uv_loop_t loop_storage, *loop = &loop_storage;
static rt_http *front;
static rt_proxy *px;
static int peer_lfd = -1;
static char peer_url[64];
static int ready, ndone, fallback;

static void on_done(void *ud, const rt_proxy_result *res)
{
	ndone++;
	if (getenv("THAW_FUZZ_VERBOSE"))
		fprintf(stderr, "fuzz_proxy: err %d answered %d status %d (%s)\n", res->err,
			res->answered, res->status, res->what);
	if (!res->answered)
		rt_req_reply_error(ud, 502, "peer failed: %s", res->what);
}

static void dispatch(rt_req *req, void *ud)
{
	(void)ud;
	rt_proxy_opts o = { .deadline_ms = rt_clock_mono_ns() / 1000000 + 150,
			    .fallback_on_503 = fallback };
	if (rt_proxy_forward(px, req, peer_url, &o, on_done, req) < 0) {
		ndone++;
		rt_req_reply_error(req, 500, "not forwarded");
	}
}

static int setup(void)
{
	rt_log_init(RT_LOG_ERROR);
	signal(SIGPIPE, SIG_IGN);
	uv_loop_init(loop);
	rt_http_config cfg;
	rt_http_config_defaults(&cfg);
	cfg.host = "127.0.0.1";
	cfg.port = 0;
	cfg.access_log = 0;
	cfg.max_write_queue = 8192;
	if (rt_http_open(loop, &cfg, dispatch, NULL, &front) < 0)
		return -1;
	rt_proxy_config pc;
	rt_proxy_config_defaults(&pc);
	pc.max_header_bytes = 1024;      /* oversize heads from small inputs */
	pc.max_client_queue = 16384;
	if (rt_proxy_new(loop, &pc, &px) < 0)
		return -1;
	peer_lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	struct sockaddr_in a = {.sin_family = AF_INET};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t l = sizeof a;
	if (peer_lfd < 0 || bind(peer_lfd, (struct sockaddr *)&a, sizeof a) < 0 ||
	    listen(peer_lfd, 16) < 0 || getsockname(peer_lfd, (struct sockaddr *)&a, &l) < 0)
		return -1;
	snprintf(peer_url, sizeof peer_url, "http://127.0.0.1:%d", ntohs(a.sin_port));
	return 0;
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
	int head = data[0] & 1, keep_open = data[0] & 2, never_read = data[0] & 8;
	fallback = (data[0] & 4) != 0;
	uint32_t seed = data[1] | 0x100u;
	const uint8_t *ans = data + 2;
	size_t alen = size - 2;
	ndone = 0;

	int cfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (cfd < 0)
		return 0;
	if (never_read) {
		int rcv = 4096;
		setsockopt(cfd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
	}
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)rt_http_port(front))};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	connect(cfd, (struct sockaddr *)&a, sizeof a);
	const char *q = head ? "HEAD /x HTTP/1.1\r\nHost: f\r\n\r\n"
			     : "POST /x HTTP/1.1\r\nHost: f\r\nContent-Length: 4\r\n\r\nbody";
	size_t qlen = strlen(q), qsent = 0;
	int pfds[8], npfds = 0;   /* peer-side connections accepted */
	size_t sent = 0;
	char buf[65536];
	double t0 = rt_clock_mono_s();
	while (rt_clock_mono_s() - t0 < 2.0) {
		if (qsent < qlen) {
			ssize_t n = send(cfd, q + qsent, qlen - qsent, MSG_NOSIGNAL);
			if (n > 0)
				qsent += (size_t)n;
		}
		uv_run(loop, UV_RUN_NOWAIT);
		int fd = accept(peer_lfd, NULL, NULL);
		if (fd >= 0 && npfds < 8)
			pfds[npfds++] = fd;
		else if (fd >= 0)
			close(fd);
		/* the peer: drains what it is sent, answers on its first connection */
		for (int i = 0; i < npfds; i++)
			while (recv(pfds[i], buf, sizeof buf, MSG_DONTWAIT) > 0)
				;
		if (npfds > 0 && sent < alen) {
			size_t piece = 1 + next_rand(&seed) % (alen / 3 + 16);
			if (piece > alen - sent)
				piece = alen - sent;
			ssize_t n = send(pfds[0], ans + sent, piece, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (n > 0)
				sent += (size_t)n;
			else if (n < 0 && errno != EAGAIN)
				sent = alen;
			if (sent == alen && !keep_open)
				shutdown(pfds[0], SHUT_WR);
		} else if (npfds > 0 && alen == 0 && !keep_open) {
			shutdown(pfds[0], SHUT_WR);
		}
		if (!never_read)
			while (recv(cfd, buf, sizeof buf, MSG_DONTWAIT) > 0)
				;
		if (ndone)
			break;
		usleep(100);
	}
	if (ndone != 1) {
		fprintf(stderr, "fuzz_proxy: done called %d times in 2 s\n", ndone);
		abort();
	}
	close(cfd);
	for (int i = 0; i < npfds; i++)
		close(pfds[i]);
	/* both sides gone: every connection of the front and of the proxy closes */
	for (int i = 0; i < 20000 && (rt_http_open_connections(front) > 0 ||
				     rt_proxy_idle_count(px, NULL) > 0 || rt_proxy_inflight(px) > 0); i++) {
		uv_run(loop, UV_RUN_NOWAIT);
		int fd = accept(peer_lfd, NULL, NULL);
		if (fd >= 0)
			close(fd);
		usleep(50);
	}
	if (rt_http_open_connections(front) > 0 || rt_proxy_idle_count(px, NULL) > 0 ||
	    rt_proxy_inflight(px) > 0) {
		fprintf(stderr, "fuzz_proxy: a connection or forward is still open 1 s after both left\n");
		abort();
	}
	return 0;
}

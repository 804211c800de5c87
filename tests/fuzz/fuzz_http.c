/* fuzz_http.c — libFuzzer target for the HTTP server: each input is sent as raw bytes over a
 * loopback TCP connection to an in-process rt_http with the daemon's real router and handlers
 * (tight limits so that 413/431 paths are reached); the response is read until the server
 * closes or goes quiet. Crashes and sanitizer reports are the findings. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "runtime/rt_log.h"
#include "runtime/rt_server.h"

static uv_loop_t loop;
static rt_server srv;
static int ready;

static int setup(void)
{
	rt_server_config cfg;
	memset(&cfg, 0, sizeof cfg);
	rt_http_config_defaults(&cfg.http);
	cfg.http.host = "127.0.0.1";
	cfg.http.port = 0;
	cfg.http.max_body_bytes = 2048;
	cfg.http.max_header_bytes = 1024;
	cfg.http.access_log = 0;
	cfg.http.read_timeout_ms = 50;
	cfg.data_dir = "/tmp/thaw-fuzz-http";
	cfg.drain_timeout_s = 1;
	rt_log_init(RT_LOG_ERROR);
	uv_loop_init(&loop);
	return rt_server_init(&srv, &loop, &cfg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!ready) {
		if (setup() < 0)
			abort();
		ready = 1;
	}
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)rt_http_port(srv.http))};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0)
		return 0;
	connect(fd, (struct sockaddr *)&a, sizeof a);
	size_t sent = 0;
	int quiet = 0, closed = 0;
	char buf[65536];
	for (int iter = 0; iter < 2000 && !closed; iter++) {
		if (sent < size) {
			ssize_t n = send(fd, data + sent, size - sent, MSG_NOSIGNAL);
			if (n > 0)
				sent += (size_t)n;
			if (sent == size)
				shutdown(fd, SHUT_WR);
		} else if (size == 0 && iter == 0) {
			shutdown(fd, SHUT_WR);
		}
		uv_run(&loop, UV_RUN_NOWAIT);
		ssize_t r = recv(fd, buf, sizeof buf, 0);
		if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINPROGRESS && errno != ENOTCONN))
			closed = 1;
		else if (r < 0 && sent == size && ++quiet > 200)
			break;
		else if (r > 0)
			quiet = 0;
		if (r < 0 && sent == size)
			usleep(50);
	}
	close(fd);
	/* let the server notice the close and free the connection */
	for (int i = 0; i < 20 && rt_http_open_connections(srv.http) > 0; i++) {
		uv_run(&loop, UV_RUN_NOWAIT);
		usleep(100);
	}
	return 0;
}

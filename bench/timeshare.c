/* timeshare.c — client for bench/bench_timeshare.sh: N sequential POST invocations of one
 * function over one keep-alive HTTP/1.1 connection, a fixed pause between them, and the
 * round-trip latency distribution.
 *   timeshare PORT PATH BODY_FILE N PAUSE_US
 * prints "n p50_us p99_us max_us mean_us errors" on stdout. Needs only libc (the script builds
 * it with plain cc when make did not). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* strcasestr */
#endif
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* reads one response (Content-Length framed); returns the status or -1 */
static int read_resp(int fd, char *buf, size_t cap)
{
	size_t got = 0;
	for (;;) {
		ssize_t n = read(fd, buf + got, cap - 1 - got);
		if (n <= 0)
			return -1;
		got += (size_t)n;
		buf[got] = 0;
		char *end = strstr(buf, "\r\n\r\n");
		if (!end)
			continue;
		char *cl = strcasestr(buf, "Content-Length:");
		size_t need = (size_t)(end + 4 - buf) + (cl ? strtoul(cl + 15, NULL, 10) : 0);
		if (need >= cap)
			return -1;
		while (got < need) {
			n = read(fd, buf + got, need - got);
			if (n <= 0)
				return -1;
			got += (size_t)n;
		}
		return atoi(buf + 9);
	}
}

int main(int argc, char **argv)
{
	if (argc != 6) {
		fprintf(stderr, "usage: timeshare PORT PATH BODY_FILE N PAUSE_US\n");
		return 2;
	}
	int port = atoi(argv[1]), n = atoi(argv[4]), pause_us = atoi(argv[5]);
	FILE *f = fopen(argv[3], "rb");
	if (!f) {
		perror(argv[3]);
		return 1;
	}
	static char body[1 << 16], req[1 << 17], resp[1 << 20];
	size_t bl = fread(body, 1, sizeof body - 1, f);
	fclose(f);
	int rl = snprintf(req, sizeof req, "POST %s HTTP/1.1\r\nHost: bench\r\nContent-Type: "
			  "application/json\r\nContent-Length: %zu\r\n\r\n%.*s", argv[2], bl, (int)bl, body);
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
		perror("connect");
		return 1;
	}
	double *lat = malloc((size_t)n * sizeof *lat), sum = 0;
	int errors = 0, k = 0;
	for (int i = 0; i < n; i++) {
		double t0 = now_us();
		if (write(fd, req, (size_t)rl) != rl)
			return 1;
		int st = read_resp(fd, resp, sizeof resp);
		double dt = now_us() - t0;
		if (st < 0)
			return 1;
		if (st != 200)
			errors++;
		else {
			lat[k++] = dt;
			sum += dt;
		}
		if (pause_us > 0)
			usleep((useconds_t)pause_us);
	}
	close(fd);
	qsort(lat, (size_t)k, sizeof *lat, cmp);
	if (k == 0) {
		printf("0 nan nan nan nan %d\n", errors);
		return 1;
	}
	printf("%d %.1f %.1f %.1f %.1f %d\n", k, lat[(k - 1) / 2], lat[(int)((k - 1) * 0.99)], lat[k - 1],
	       sum / k, errors);
	free(lat);
	return 0;
}

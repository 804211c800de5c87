/* t.c — runner for tests/t.h: runs t_main(), prints per-test results and the closing line. */

#include "t.h"
#include <stdarg.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
#include <ftw.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>

int t_cur_failed, t_cur_skipped;
static int n_pass, n_fail, n_skip;
static char tmpdir[256];

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb; (void)flag; (void)ftw;
	return remove(p);
}

static void cleanup(void)
{
	if (tmpdir[0])
		nftw(tmpdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

const char *t_tmpdir(void)
{
	if (!tmpdir[0]) {
		const char *base = getenv("TMPDIR");
		snprintf(tmpdir, sizeof tmpdir, "%s/thaw-test-XXXXXX", base && *base ? base : "/tmp");
		if (!mkdtemp(tmpdir)) {
			perror("mkdtemp");
			abort();
		}
	}
	return tmpdir;
}

char *t_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	char *b = NULL;
	long n = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
	if (n >= 0 && fseek(f, 0, SEEK_SET) == 0 && (b = malloc((size_t)n + 1)) &&
	    fread(b, 1, (size_t)n, f) != (size_t)n) {
		free(b);
		b = NULL;
	}
	fclose(f);
	if (b) {
		b[n] = 0;
		if (len)
			*len = (size_t)n;
	}
	return b;
}

int t_copy_file(const char *from, const char *to)
{
	size_t n;
	char *b = t_read_file(from, &n);
	if (!b)
		return -1;
	FILE *f = fopen(to, "wb");
	int ok = f && fwrite(b, 1, n, f) == n;
	if (f && fclose(f) != 0)
		ok = 0;
	free(b);
	return ok ? 0 : -1;
}

int t_sh(char *out, size_t cap, const char *fmt, ...)
{
	char cmd[8192];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof cmd, fmt, ap);
	va_end(ap);
	int st;
	if (out && cap) {
		out[0] = 0;
		FILE *p = popen(cmd, "r");
		if (!p)
			return -1;
		size_t n = fread(out, 1, cap - 1, p);
		out[n] = 0;
		char sink[4096];   /* the rest unread would block the command */
		while (fread(sink, 1, sizeof sink, p) > 0)
			;
		st = pclose(p);
	} else {
		st = system(cmd);
	}
	return st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

const char *t_bin(void)
{
	const char *b = getenv("THAW_BIN");
	return b && *b ? b : "build/thaw";
}

const char *t_src(void)
{
	const char *s = getenv("THAW_SRC");
	return s && *s ? s : ".";
}

void t_run(const char *name, void (*fn)(void))
{
	struct timespec a, b;
	t_cur_failed = 0;
	t_cur_skipped = 0;
	clock_gettime(CLOCK_MONOTONIC, &a);
	fn();
	clock_gettime(CLOCK_MONOTONIC, &b);
	double ms = (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6;
	if (t_cur_failed) {
		n_fail++;
		printf("FAIL %s (%.1f ms)\n", name, ms);
	} else if (t_cur_skipped) {
		n_skip++;
		printf("skip %s\n", name);
	} else {
		n_pass++;
		printf("ok   %s (%.1f ms)\n", name, ms);
	}
	fflush(stdout);
}

int main(void)
{
	atexit(cleanup);
	t_main();
	printf("%d passed, %d failed, %d skipped\n", n_pass, n_fail, n_skip);
	return n_fail ? 1 : 0;
}

int t_free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t l = sizeof a;
	int port = -1;
	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &l) == 0)
		port = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

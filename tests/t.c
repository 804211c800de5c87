/* t.c — runner for tests/t.h: runs t_main(), prints per-test results and the closing line. */

#include "t.h"
#include <stdlib.h>
#include <unistd.h>
#include <ftw.h>
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

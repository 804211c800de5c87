/* test_ft_data.c — the fine-tune data loader (fn_ft_data_load) refuses a FIFO, plain or named
 * .gz, with "not a regular file" instead of blocking in open() (or in zcat) forever; a gzip
 * file still loads through zcat reading it on its stdin. Each load runs in a child with an
 * alarm, so a hang fails the test instead of stalling the suite. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "functions/fn_finetune.h"
#include "tests/t.h"

/* loads path in a child (20 s alarm); returns the child's exit: 0 loaded (rows > 0), 1 refused
 * with want in the message, 2 other failure, -1 killed (a hang) */
static int load_in_child(const char *path, const char *want)
{
	pid_t p = fork();
	if (p == 0) {
		alarm(20);
		fn_ft_data d;
		char err[512] = "";
		int rc = fn_ft_data_load(path, 1, 1.0, &d, err, sizeof err);
		if (rc == 0) {
			int ok = d.rows > 0;
			fn_ft_data_free(&d);
			_exit(ok ? 0 : 2);
		}
		fprintf(stderr, "  %s: %d %s\n", path, rc, err);
		_exit(want && strstr(err, want) && rc == -EINVAL ? 1 : 2);
	}
	int st = 0;
	if (p < 0 || waitpid(p, &st, 0) != p || !WIFEXITED(st))
		return -1;
	return WEXITSTATUS(st);
}

static void test_fifo_refused(void)
{
	static const char *const names[] = {"data.csv", "data.csv.gz"};
	for (int i = 0; i < 2; i++) {
		char path[600];
		snprintf(path, sizeof path, "%s/%s", t_tmpdir(), names[i]);
		T_EQ_INT(mkfifo(path, 0600), 0);
		T_EQ_INT(load_in_child(path, "not a regular file"), 1);
		unlink(path);
	}
	char dir[600];
	snprintf(dir, sizeof dir, "%s/adir.csv", t_tmpdir());
	T_EQ_INT(mkdir(dir, 0700), 0);
	T_EQ_INT(load_in_child(dir, "not a regular file"), 1);
}

static void test_gzip_still_loads(void)
{
	char path[900];
	snprintf(path, sizeof path, "%s/tests/data/digits.csv.gz", t_src());
	T_EQ_INT(load_in_child(path, NULL), 0);
}

void t_main(void)
{
	T_RUN(test_fifo_refused);
	T_RUN(test_gzip_still_loads);
}

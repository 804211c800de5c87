/* test_ft_data.c — the fine-tune data loader (fn_ft_data_load) refuses a FIFO, plain or named
 * .gz, with "not a regular file" instead of blocking in open() forever; a gzip'ed CSV loads
 * (through zlib) with the same rows as the plain one; corrupt, truncated and non-gzip .gz files
 * are refused with a message saying so. Each load runs in a child with an alarm, so a hang
 * fails the test instead of stalling the suite. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>
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

static void put(const char *path, const void *p, size_t n)
{
	FILE *f = fopen(path, "wb");
	T_CHECK(f && fwrite(p, 1, n, f) == n);
	if (f)
		fclose(f);
}

/* a CSV with a header and rows, in plain text and gzip'ed; corrupt and truncated copies */
static void test_gzip_csv(void)
{
	char plain[700], gz[700], bad[700], cut[700], fake[700];
	char csv[4096];
	size_t n = (size_t)snprintf(csv, sizeof csv, "x1,x2,y\n");
	for (int i = 0; i < 100; i++)
		n += (size_t)snprintf(csv + n, sizeof csv - n, "%d,%d.5,%d\n", i, i * 3, i % 2);
	snprintf(plain, sizeof plain, "%s/rows.csv", t_tmpdir());
	snprintf(gz, sizeof gz, "%s/rows.csv.gz", t_tmpdir());
	snprintf(bad, sizeof bad, "%s/bad.csv.gz", t_tmpdir());
	snprintf(cut, sizeof cut, "%s/cut.csv.gz", t_tmpdir());
	snprintf(fake, sizeof fake, "%s/fake.csv.gz", t_tmpdir());
	put(plain, csv, n);
	put(fake, csv, n);   /* named .gz, but plain text */
	gzFile g = gzopen(gz, "wb9");
	T_CHECK(g != NULL);
	if (!g)
		return;
	T_EQ_INT(gzwrite(g, csv, (unsigned)n), n);
	T_EQ_INT(gzclose(g), Z_OK);
	size_t zn = 0;
	unsigned char *z = (unsigned char *)t_read_file(gz, &zn);
	T_CHECK(z && zn > 40);
	if (!z)
		return;

	fn_ft_data a, b;
	char err[512] = "";
	T_EQ_INT(fn_ft_data_load(plain, 1, 1.0, &a, err, sizeof err), 0);
	T_EQ_INT(fn_ft_data_load(gz, 1, 1.0, &b, err, sizeof err), 0);
	T_EQ_INT(a.rows, 100);
	T_EQ_INT(b.rows, 100);
	T_EQ_INT(b.cols, 2);
	T_CHECK(a.rows == b.rows && memcmp(a.x, b.x, (size_t)(a.rows * a.cols) * sizeof *a.x) == 0 &&
		memcmp(a.y, b.y, (size_t)a.rows * sizeof *a.y) == 0);
	fn_ft_data_free(&a);
	fn_ft_data_free(&b);

	/* flipped bytes inside the deflate stream: a corrupt-data error, never rows */
	for (size_t i = 12; i < zn - 8; i += 3)
		z[i] ^= 0x5A;
	put(bad, z, zn);
	memset(err, 0, sizeof err);
	T_EQ_INT(fn_ft_data_load(bad, 1, 1.0, &a, err, sizeof err), -EINVAL);
	T_CHECK(strstr(err, "bad.csv.gz") != NULL);
	T_CHECK(a.x == NULL && a.rows == 0);
	/* the first half of the gzip file: truncated */
	free(z);
	z = (unsigned char *)t_read_file(gz, &zn);
	put(cut, z, zn / 2);
	memset(err, 0, sizeof err);
	T_EQ_INT(fn_ft_data_load(cut, 1, 1.0, &a, err, sizeof err), -EINVAL);
	T_CHECK(strstr(err, "truncated") != NULL);
	/* plain text named .gz */
	memset(err, 0, sizeof err);
	T_EQ_INT(fn_ft_data_load(fake, 1, 1.0, &a, err, sizeof err), -EINVAL);
	T_CHECK(strstr(err, "not gzip data") != NULL);
	free(z);
}

void t_main(void)
{
	T_RUN(test_fifo_refused);
	T_RUN(test_gzip_still_loads);
	T_RUN(test_gzip_csv);
}

/* test_bench_report.c — `make bench-report` (bench/report.sh): the recorded figures in
 * bench/results/NAME.tsv render into four SVG charts; a small made-up set of rows renders with the
 * ratios and the roofline the test computes itself, the last row per case winning; malformed
 * files (wrong header, missing field, a word where a number belongs, no rows for the GPU
 * machine) fail with FILE:LINE and nothing half-written is reported as done. bench_record
 * (bench/record.sh) appends rows that the report reads back. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include "tests/t.h"



/* runs report.sh with results dir res into out; returns the exit status, stderr in *err */
static int report(const char *res, const char *out, char **err)
{
	char cmd[4096], ep[1024];
	snprintf(ep, sizeof ep, "%s/report.err", t_tmpdir());
	snprintf(cmd, sizeof cmd, "cd %s && BENCH_RESULTS=%s sh bench/report.sh %s > /dev/null 2> %s",
		 t_src(), res, out, ep);
	int st = system(cmd);
	if (err)
		*err = t_read_file(ep, NULL);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void put(const char *dir, const char *name, const char *text)
{
	char p[1200];
	snprintf(p, sizeof p, "%.1000s/%.100s.tsv", dir, name);
	FILE *f = fopen(p, "w");
	if (f) {
		fputs(text, f);
		fclose(f);
	}
}

static int has_gnuplot(void)
{
	return system("command -v gnuplot > /dev/null 2>&1") == 0;
}

static int file_has(const char *path, const char *needle)
{
	char *t = t_read_file(path, NULL);
	int ok = t && strstr(t, needle) != NULL;
	if (!ok)
		fprintf(stderr, "  %s lacks '%s'\n", path, needle);
	free(t);
	return ok;
}

/* the repository's own records render (what make bench-report does, into a scratch dir) */
static void test_repo_results(void)
{
	if (!has_gnuplot())
		T_SKIP("gnuplot not installed (scripts/install-deps.sh installs gnuplot-nox)");
	char res[1024], out[1024], p[1100], *err = NULL;
	snprintf(res, sizeof res, "%s/bench/results", t_src());
	snprintf(out, sizeof out, "%s/img", t_tmpdir());
	T_EQ_INT(report(res, out, &err), 0);
	if (err && *err)
		fprintf(stderr, "  %s", err);
	free(err);
	const char *charts[] = {"restore", "coldstart", "decode", "preemption"};
	for (int i = 0; i < 4; i++) {
		snprintf(p, sizeof p, "%s/%s.svg", out, charts[i]);
		T_CHECK(file_has(p, "<svg") && file_has(p, "</svg>"));
	}
	snprintf(p, sizeof p, "%s/restore.svg", out);
	T_CHECK(file_has(p, "safetensors"));
	snprintf(p, sizeof p, "%s/decode.svg", out);
	T_CHECK(file_has(p, "roofline"));
}

/* made-up rows: the ratios, the roofline and "last row per case wins" come out as computed */
static void test_known_rows(void)
{
	if (!has_gnuplot())
		T_SKIP("gnuplot not installed");
	char res[1024], out[1024], p[1100], cmd[2048];
	snprintf(res, sizeof res, "%s/known", t_tmpdir());
	snprintf(out, sizeof out, "%s/known-img", t_tmpdir());
	mkdir(res, 0755);
	put(res, "restore", "date\tmachine\tcase\tbaseline\tbaseline_gbps\tthaw_gbps\n"
	    "2026-01-01\tTest H100\tcase one\tbase-a\t2\t5\n"
	    "2026-01-01\tTest H100\tcase two\tbase-b\t4\t6\n"
	    "2026-01-02\tTest H100\tcase two\tbase-b\t4\t14\n"
	    "2026-01-02\tsome CPU\tcase three\tbase-c\t1\t99\n");
	put(res, "coldstart", "date\tmachine\trun\tbare_restore_ms\trestore_ms\tload_ms\trun_ms\tfirst_token_ms\thost_tier_ms\n"
	    "2026-01-01\tTest H100\tfirst run\t100\t110\t1\t2\t113\t40\n"
	    "2026-01-01\tTest H100\tsecond run\t100\t105\t1\t2\t108\t-\n");
	put(res, "decode", "date\tmachine\tvariant\tdecode_tok_s\thf_batch1_tok_s\troofline_tok_s\n"
	    "2026-01-01\tTest H100\tbf16\t500\t20\t1000\n"
	    "2026-01-01\tTest H100\tint8\t700\t-\t2000\n");
	put(res, "preemption", "date\tmachine\trun\tp50_ms\tp99_ms\tmax_ms\n"
	    "2026-01-01\tsome CPU\tquiet run\t0.02\t0.1\t-\n");
	/* bench_record appends a row the report then reads (a third preemption case) */
	snprintf(cmd, sizeof cmd, "cd %s && BENCH_RESULTS=%s sh -c '. bench/record.sh && "
		 "bench_record preemption \"recorded run\" 0.05 0.5 2' > /dev/null", t_src(), res);
	T_EQ_INT(system(cmd), 0);
	char *err = NULL;
	T_EQ_INT(report(res, out, &err), 0);
	free(err);
	snprintf(p, sizeof p, "%s/restore.svg", out);
	T_CHECK(file_has(p, "2.5x"));          /* 5 / 2 */
	T_CHECK(file_has(p, "3.5x"));          /* the later row of case two: 14 / 4 */
	char *t = t_read_file(p, NULL);
	T_CHECK(t && !strstr(t, "1.5x") && !strstr(t, "case three"));   /* older row, other machine */
	free(t);
	snprintf(p, sizeof p, "%s/decode.svg", out);
	T_CHECK(file_has(p, "BF16 roofline 1000 tok/s"));
	T_CHECK(file_has(p, "HF transformers"));
	snprintf(p, sizeof p, "%s/coldstart.svg", out);
	T_CHECK(file_has(p, "second run"));
	snprintf(p, sizeof p, "%s/preemption.svg", out);
	T_CHECK(file_has(p, "recorded run") && file_has(p, "quiet run"));
}

/* malformed records: exit 1 naming the file and line */
static void test_malformed(void)
{
	if (!has_gnuplot())
		T_SKIP("gnuplot not installed");
	char res[1024], out[1024], good[1024], cmd[4096], *err = NULL;
	snprintf(good, sizeof good, "%s/bench/results", t_src());
	snprintf(res, sizeof res, "%s/bad", t_tmpdir());
	snprintf(out, sizeof out, "%s/bad-img", t_tmpdir());
	snprintf(cmd, sizeof cmd, "mkdir -p %s && cp %s/*.tsv %s/", res, good, res);
	T_EQ_INT(system(cmd), 0);
	static const struct { const char *file, *text, *want; } cases[] = {
		{"restore", "date\tmachine\tcase\tbaseline\tbaseline_gbps\n2026-01-01\tH100\tc\tb\t1\n",
		 "restore.tsv:1: header"},
		{"restore", "date\tmachine\tcase\tbaseline\tbaseline_gbps\tthaw_gbps\n"
			    "2026-01-01\tH100\tc\tb\t1\t2\n2026-01-01\tH100\tc\tb\t1\n", "restore.tsv:3: 5 fields"},
		{"decode", "date\tmachine\tvariant\tdecode_tok_s\thf_batch1_tok_s\troofline_tok_s\n"
			   "2026-01-01\tH100\tbf16\tfast\t-\t1\n", "decode.tsv:2: field 4 (\"fast\")"},
		{"coldstart", "date\tmachine\trun\tbare_restore_ms\trestore_ms\tload_ms\trun_ms\tfirst_token_ms\thost_tier_ms\n"
			      "yesterday\tH100\tr\t1\t1\t1\t1\t1\t1\n", "coldstart.tsv:2: date"},
		{"preemption", "date\tmachine\trun\tp50_ms\tp99_ms\tmax_ms\n", "preemption.tsv: no rows"},
		{"decode", "date\tmachine\tvariant\tdecode_tok_s\thf_batch1_tok_s\troofline_tok_s\n"
			   "2026-01-01\tsome CPU\tbf16\t5\t-\t-\n", "decode.tsv: no rows for a machine matching 'H100'"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		snprintf(cmd, sizeof cmd, "cp %s/*.tsv %s/", good, res);
		T_EQ_INT(system(cmd), 0);
		put(res, cases[i].file, cases[i].text);
		T_EQ_INT(report(res, out, &err), 1);
		T_CHECK(err && strstr(err, cases[i].want));
		if (!err || !strstr(err, cases[i].want))
			fprintf(stderr, "  case %zu: stderr '%s', wanted '%s'\n", i, err ? err : "", cases[i].want);
		free(err);
		err = NULL;
	}
	/* a missing file */
	snprintf(cmd, sizeof cmd, "cp %s/*.tsv %s/ && rm %s/decode.tsv", good, res, res);
	T_EQ_INT(system(cmd), 0);
	T_EQ_INT(report(res, out, &err), 1);
	T_CHECK(err && strstr(err, "decode.tsv: missing"));
	free(err);
}

void t_main(void)
{
	T_RUN(test_repo_results);
	T_RUN(test_known_rows);
	T_RUN(test_malformed);
}

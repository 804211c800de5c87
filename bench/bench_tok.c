/* bench_tok.c — encode/decode throughput of the tokenizer (runtime/tok/tok.h) on a text file, single thread.
 *   bench_tok TOKENIZER_JSON TEXT_FILE [REPS]
 * Prints load time, the median encode MB/s over REPS whole-text encodes (UTF-8 bytes of input
 * per second), the token count, and the median decode MB/s (output bytes per second). */
#include "runtime/tok/tok.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static char *slurp(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long sz = ftell(f);
	rewind(f);
	char *b = sz >= 0 ? malloc((size_t)sz + 1) : NULL;
	if (b && fread(b, 1, (size_t)sz, f) != (size_t)sz) {
		free(b);
		b = NULL;
	}
	fclose(f);
	if (b) {
		b[sz] = 0;
		*n = (size_t)sz;
	}
	return b;
}

static int dcmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: bench_tok TOKENIZER_JSON TEXT_FILE [REPS]\n");
		return 2;
	}
	int reps = argc > 3 ? atoi(argv[3]) : 5;
	if (reps < 1 || reps > 100)
		reps = 5;
	size_t tn, xn;
	char *tj = slurp(argv[1], &tn), *text = slurp(argv[2], &xn);
	if (!tj || !text) {
		fprintf(stderr, "bench_tok: cannot read %s\n", !tj ? argv[1] : argv[2]);
		return 1;
	}
	char err[256];
	tok_tokenizer *t;
	double t0 = now();
	int rc = tok_load(&t, tj, tn, NULL, 0, err, sizeof err);
	double load = now() - t0;
	if (rc) {
		fprintf(stderr, "bench_tok: %s\n", err);
		return 1;
	}
	double enc[100], dec[100];
	size_t ntok = 0, nout = 0;
	for (int r = 0; r < reps; r++) {
		int32_t *ids;
		size_t n;
		t0 = now();
		if (tok_encode(t, text, xn, 0, &ids, &n)) {
			fprintf(stderr, "bench_tok: encode failed\n");
			return 1;
		}
		enc[r] = now() - t0;
		ntok = n;
		char *out;
		t0 = now();
		if (tok_decode(t, ids, n, 0, &out, &nout)) {
			fprintf(stderr, "bench_tok: decode failed\n");
			return 1;
		}
		dec[r] = now() - t0;
		free(out);
		free(ids);
	}
	qsort(enc, (size_t)reps, sizeof enc[0], dcmp);
	qsort(dec, (size_t)reps, sizeof dec[0], dcmp);
	double mb = xn / 1e6;
	printf("load %.3f s; encode median %.4f s = %.2f MB/s (%zu tokens, %.3f MB, %d reps); "
	       "decode median %.4f s = %.2f MB/s%s\n",
	       load, enc[reps / 2], mb / enc[reps / 2], ntok, mb, reps, dec[reps / 2],
	       nout / 1e6 / dec[reps / 2], nout == xn ? "" : " (decoded length differs from input)");
	tok_free(t);
	free(tj);
	free(text);
	return 0;
}

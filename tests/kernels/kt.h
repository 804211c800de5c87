/* kt.h — helpers of the kernel tests that compare a CUDA op with the CPU op: seeded random
 * inputs, a relative/absolute closeness check, and the two devices with copies to and from the
 * GPU (outputs poisoned with 0xFF bytes = NaN first, so unwritten elements show). Define
 * KT_SEED before including it. Header-only: each test file is its own binary. */
#ifndef THAW_TESTS_KT_H
#define THAW_TESTS_KT_H
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "kernels/kern.h"

static uint32_t rng = KT_SEED;

/* uniform in [-1, 1) */
static float frand(void)
{
	rng = rng * 1664525u + 1013904223u;
	return (float)((rng >> 8) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

/* n floats uniform in [-s, s) (malloc'd, one spare element) */
static float *rnd(size_t n, float s)
{
	float *p = malloc(n * 4 + 4);
	for (size_t i = 0; i < n; i++)
		p[i] = frand() * s;
	return p;
}

/* max |a-b| / (atol + rtol*|b|) <= 1 over n; NaN fails; reports the worst element */
static int close_f(const float *a, const float *b, size_t n, double atol, double rtol,
		   const char *what)
{
	double worst = 0;
	size_t wi = 0;
	for (size_t i = 0; i < n; i++) {
		double e = fabs((double)a[i] - b[i]) / (atol + rtol * fabs(b[i]));
		if (!(e <= worst)) {
			worst = isnan(e) ? INFINITY : e;
			wi = i;
		}
	}
	if (worst > 1) {
		fprintf(stderr, "  %s: element %zu: got %.9g want %.9g\n", what, wi, a[wi], b[wi]);
		return 0;
	}
	return 1;
}

static kern_dev *G, *C;   /* cuda:0 and the CPU reference */

/* opens both devices once; 0 when there is no GPU */
static int open_devs(void)
{
	if (kern_cuda_count() < 1)
		return 0;
	if (!G && kern_dev_open("cuda:0", 0, &G) < 0)
		return 0;
	if (!C)
		kern_dev_open("cpu", 2, &C);
	return 1;
}

static void *up(const void *h, size_t n)
{
	void *p = kern_alloc(G, n);
	kern_copy_h2d(G, p, h, n);
	return p;
}

static void *poisoned(size_t n)
{
	void *p = kern_alloc(G, n), *h = malloc(n);
	memset(h, 0xff, n);
	kern_copy_h2d(G, p, h, n);
	free(h);
	return p;
}

static float *down(const void *d, size_t n)
{
	float *h = malloc(n + 4);
	kern_copy_d2h(G, h, d, n);
	return h;
}
#endif

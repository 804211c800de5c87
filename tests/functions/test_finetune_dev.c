/* test_finetune_dev.c — the finetune job's device path (fn_ft_to_device: steps as kern ops)
 * against the host path with the same seed, on the "cpu" kern device here and on cuda:0 when a
 * GPU is present (skips otherwise): the digits MLP fine-tuned for 20 epochs reaches >= 95%
 * held-out accuracy on the device, and ends with the host run's figures and weights within the
 * stated float tolerance (summation orders differ): after 1 epoch every weight within
 * 2e-4 * max|w| (cpu device) / 1e-3 * max|w| (cuda), after 20 epochs held-out accuracy within
 * 0.01 and the mean training loss within 5%. A run spilled to the host in the middle
 * (fn_ft_to_host), continued there, restored to the device and checkpointed from the device
 * (fn_ft_save, fn_ft_restore into a fresh device run) ends like the uninterrupted device
 * run (the same tolerances); the unit size adapts (minibatches per unit) and the
 * bad cases get their errors (-EAGAIN in the middle of a host minibatch, -EBUSY on another
 * device). Also MSE regression on the device. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <time.h>
#include "tests/t.h"
#pragma GCC diagnostic ignored "-Wunused-function"
#include "tests/functions/fx.h"
#include "functions/fn_finetune.h"
#include "tests/functions/ft_digits.h"

static int run_all(fn_ft *f)
{
	int done = 0;
	long units = 0;
	while (!done && units < 1000000) {
		int rc = fn_ft_unit(f, &done);
		if (rc < 0)
			return rc;
		units++;
	}
	return done ? 0 : -ETIMEDOUT;
}

static double metric(fn_ft *f, const char *key)
{
	json_t *m = fn_ft_metrics(f);
	double v = json_number_value(json_object_get(m, key));
	json_decref(m);
	return v;
}

/* max |a - b| over every weight and bias, relative to the largest |b| */
static double weight_diff(const fn_ft *a, const fn_ft *b, int nl, const int64_t *n,
			  const int64_t *k)
{
	double worst = 0, big = 1e-30;
	for (int l = 0; l < nl; l++) {
		const float *wa, *ba, *wb, *bb;
		fn_ft_weights(a, l, &wa, &ba);
		fn_ft_weights(b, l, &wb, &bb);
		for (int64_t i = 0; i < n[l] * k[l] + n[l]; i++) {
			float x = i < n[l] * k[l] ? wa[i] : ba[i - n[l] * k[l]];
			float y = i < n[l] * k[l] ? wb[i] : bb[i - n[l] * k[l]];
			double d = fabs((double)x - y);
			if (!(d <= worst))
				worst = isnan(d) ? INFINITY : d;
			if (fabs(y) > big)
				big = fabs(y);
		}
	}
	return worst / big;
}

static void compare_device(const char *spec, double wtol)
{
	digits_run r;
	kern_dev *d = NULL;
	if (digits_setup(&r) < 0) {
		T_CHECK(0);
		return;
	}
	T_EQ_INT(kern_dev_open(spec, 2, &d), 0);
	/* one epoch: weights close */
	fn_ft *h = digits_ft(&r, 1), *g = digits_ft(&r, 1);
	T_CHECK(h && g);
	if (!h || !g || !d)
		goto out;
	T_EQ_INT(fn_ft_to_device(g, d, 300), 0);
	T_CHECK(fn_ft_on_device(g));
	T_CHECK(fn_ft_dev_bytes(g) > (size_t)r.d.rows * 65 * 4);
	T_EQ_INT(run_all(h), 0);
	T_EQ_INT(run_all(g), 0);
	T_EQ_INT(fn_ft_steps(g), fn_ft_steps(h));
	double wd = weight_diff(g, h, 2, r.n, r.k);
	fprintf(stderr, "  %s: 1 epoch: max weight difference %.3g of max|w|, accuracy %.4f vs %.4f, "
		"%d minibatches per unit\n", spec, wd, metric(g, "accuracy"), metric(h, "accuracy"),
		fn_ft_dev_micro(g));
	T_CHECK(wd <= wtol);
	T_CHECK(fn_ft_dev_micro(g) >= 1);
	fn_ft_free(h);
	fn_ft_free(g);
	/* 20 epochs: the accuracy bar, and the host's figures */
	h = digits_ft(&r, 20);
	g = digits_ft(&r, 20);
	T_EQ_INT(fn_ft_to_device(g, d, 0), 0);
	T_EQ_INT(run_all(h), 0);
	/* the device run unit by unit, timed: a unit is sized to about 500 us */
	int done = 0;
	long units = 0;
	double tsum = 0, tmax = 0;
	while (!done && units < 1000000) {
		struct timespec t0, t1;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		if (fn_ft_unit(g, &done) < 0)
			break;
		clock_gettime(CLOCK_MONOTONIC, &t1);
		double us = (double)(t1.tv_sec - t0.tv_sec) * 1e6 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e3;
		tsum += us;
		tmax = us > tmax ? us : tmax;
		units++;
	}
	T_CHECK(done);
	fprintf(stderr, "  %s: %ld device units (%lld Adam steps): mean %.0f us, max %.0f us; %d "
		"minibatches per unit at the end\n", spec, units, (long long)fn_ft_steps(g),
		tsum / (double)(units ? units : 1), tmax, fn_ft_dev_micro(g));
	double ag = metric(g, "accuracy"), ah = metric(h, "accuracy");
	double lg = metric(g, "loss"), lh = metric(h, "loss");
	fprintf(stderr, "  %s: 20 epochs: accuracy %.4f (host %.4f), loss %.5f (host %.5f), max weight "
		"difference %.3g of max|w|\n", spec, ag, ah, lg, lh, weight_diff(g, h, 2, r.n, r.k));
	T_CHECK(ag >= 0.95);
	T_CHECK(fabs(ag - ah) <= 0.01);
	T_CHECK(fabs(lg - lh) <= 0.05 * lh);
	T_CHECK(fn_ft_progress(g) == 1.0);
	fn_ft_free(h);
	fn_ft_free(g);
out:
	kern_dev_close(d);
	digits_free(&r);
}

static void test_cpu_device_matches_host(void)
{
	compare_device("cpu", 2e-4);
}

static void test_cuda_device_matches_host(void)
{
	if (kern_cuda_count() < 1)
		T_SKIP("no GPU");
	compare_device("cuda:0", 1e-3);
}

/* spill and restore in the middle, then a checkpoint taken on the device */
static void spill_restore(const char *spec)
{
	digits_run r;
	kern_dev *d = NULL;
	if (digits_setup(&r) < 0) {
		T_CHECK(0);
		return;
	}
	T_EQ_INT(kern_dev_open(spec, 2, &d), 0);
	fn_ft *a = digits_ft(&r, 3), *b = digits_ft(&r, 3), *c = NULL;
	T_CHECK(a && b && d);
	if (!a || !b || !d)
		goto out;
	T_EQ_INT(fn_ft_to_device(a, d, 200), 0);
	T_EQ_INT(run_all(a), 0);
	/* b: device, spill, host units (through a minibatch boundary), back to the device */
	T_EQ_INT(fn_ft_to_device(b, d, 200), 0);
	int done = 0;
	for (int i = 0; i < 5; i++)
		T_EQ_INT(fn_ft_unit(b, &done), 0);
	T_EQ_INT(fn_ft_to_host(b), 0);
	T_CHECK(!fn_ft_on_device(b));
	T_EQ_INT(fn_ft_to_host(b), 0);   /* already there: nothing to do */
	T_EQ_INT(fn_ft_unit(b, &done), 0);   /* 8 rows of a 32-row minibatch on the host */
	T_EQ_INT(fn_ft_to_device(b, d, 200), -EAGAIN);
	{
		/* a checkpoint taken here, restored into a run on the device: it leaves the device
		 * to finish that minibatch on the host, and ends like the others */
		void *mb = NULL;
		size_t ml = 0;
		char e2[256];
		T_EQ_INT(fn_ft_save(b, &mb, &ml), 0);
		fn_ft *m = digits_ft(&r, 3);
		T_EQ_INT(fn_ft_to_device(m, d, 200), 0);
		T_EQ_INT(fn_ft_restore(m, mb, ml, e2, sizeof e2), 0);
		T_CHECK(!fn_ft_on_device(m));
		T_EQ_INT(run_all(m), 0);
		T_CHECK(fabs(metric(m, "accuracy") - metric(a, "accuracy")) <= 0.01);
		T_CHECK(weight_diff(m, a, 2, r.n, r.k) <= 1e-3);
		fn_ft_free(m);
		free(mb);
	}
	for (int i = 0; i < 3; i++)
		T_EQ_INT(fn_ft_unit(b, &done), 0);
	T_EQ_INT(fn_ft_to_device(b, d, 200), 0);
	for (int i = 0; i < 7; i++)
		T_EQ_INT(fn_ft_unit(b, &done), 0);
	/* a checkpoint of the device state, resumed in a fresh run on the device */
	void *buf = NULL;
	size_t len = 0;
	char err[256];
	T_EQ_INT(fn_ft_save(b, &buf, &len), 0);
	fn_ft_free(b);
	c = digits_ft(&r, 3);
	T_EQ_INT(fn_ft_to_device(c, d, 200), 0);
	T_EQ_INT(fn_ft_restore(c, buf, len, err, sizeof err), 0);
	free(buf);
	T_EQ_INT(run_all(c), 0);
	T_EQ_INT(fn_ft_steps(c), fn_ft_steps(a));
	double wd = weight_diff(c, a, 2, r.n, r.k);
	fprintf(stderr, "  %s: spilled, restored and resumed from a device checkpoint: accuracy %.4f "
		"vs %.4f uninterrupted, max weight difference %.3g of max|w|\n", spec,
		metric(c, "accuracy"), metric(a, "accuracy"), wd);
	T_CHECK(wd <= 1e-3);
	T_CHECK(fabs(metric(c, "accuracy") - metric(a, "accuracy")) <= 0.01);
	fn_ft_free(c);
	fn_ft_free(a);
out:
	kern_dev_close(d);
	digits_free(&r);
}

static void test_cpu_spill_restore(void)
{
	spill_restore("cpu");
}

static void test_cuda_spill_restore(void)
{
	if (kern_cuda_count() < 1)
		T_SKIP("no GPU");
	spill_restore("cuda:0");
}

static void test_device_busy_and_regression(void)
{
	kern_dev *d1 = NULL, *d2 = NULL;
	T_EQ_INT(kern_dev_open("cpu", 1, &d1), 0);
	T_EQ_INT(kern_dev_open("cpu", 1, &d2), 0);
	/* y = 2a - b + 0.5, z = 0.25 b: a linear regressor learns it on the device */
	fn_ft_data d = {.rows = 300, .cols = 2, .nt = 2};
	d.x = malloc(300 * 2 * 4);
	d.y = malloc(300 * 2 * 4);
	uint64_t s = 5;
	for (int i = 0; i < 300; i++) {
		s = s * 6364136223846793005ull + 1442695040888963407ull;
		float a = (float)((double)(s >> 11) / 9007199254740992.0 * 2 - 1);
		s = s * 6364136223846793005ull + 1442695040888963407ull;
		float b = (float)((double)(s >> 11) / 9007199254740992.0 * 2 - 1);
		d.x[2 * i] = a;
		d.x[2 * i + 1] = b;
		d.y[2 * i] = 2 * a - b + 0.5f;
		d.y[2 * i + 1] = 0.25f * b;
	}
	int64_t n[1] = {2}, k[1] = {2};
	float w0[4] = {0}, b0[2] = {0};
	const float *w[1] = {w0}, *b[1] = {b0};
	fn_ft_params p = {.epochs = 60, .learning_rate = 0.05, .batch_size = 16, .seed = 3,
			  .validation_split = 0.25, .classify = 0, .act = KERN_ACT_NONE};
	fn_ft *f = NULL;
	char err[256];
	T_EQ_INT(fn_ft_new(&p, 1, n, k, w, b, &d, &f, err, sizeof err), 0);
	if (f) {
		T_EQ_INT(fn_ft_to_device(f, d1, 0), 0);
		T_EQ_INT(fn_ft_to_device(f, d1, 0), 0);
		T_EQ_INT(fn_ft_to_device(f, d2, 0), -EBUSY);
		T_EQ_INT(run_all(f), 0);
		const float *rw, *rb;
		fn_ft_weights(f, 0, &rw, &rb);
		T_CHECK(fabsf(rw[0] - 2) < 0.05f && fabsf(rw[1] + 1) < 0.05f && fabsf(rb[0] - 0.5f) < 0.05f);
		T_CHECK(fabsf(rw[2]) < 0.05f && fabsf(rw[3] - 0.25f) < 0.05f && fabsf(rb[1]) < 0.05f);
		T_CHECK(metric(f, "val_loss") < 1e-3);
	}
	fn_ft_free(f);
	fn_ft_data_free(&d);
	kern_dev_close(d1);
	kern_dev_close(d2);
}

void t_main(void)
{
	T_RUN(test_cpu_device_matches_host);
	T_RUN(test_cpu_spill_restore);
	T_RUN(test_device_busy_and_regression);
	T_RUN(test_cuda_device_matches_host);
	T_RUN(test_cuda_spill_restore);
}

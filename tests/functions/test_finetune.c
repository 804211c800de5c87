/* test_finetune.c — the finetune job kind's math (functions/fn_finetune.c): gradients against
 * central finite differences in double precision (cross-entropy and MSE, every activation);
 * fine-tuning the PyTorch-trained digits MLP (tests/data/mlp_digits) on digits.csv.gz reaches
 * >= 95% held-out accuracy; a run saved and restored midway ends with bit-identical weights;
 * CSV errors name the file and line. */
#include <math.h>
#include <stdlib.h>
#include "tests/t.h"
#pragma GCC diagnostic ignored "-Wunused-function"   /* fx.h helpers this file does not use */
#include "tests/functions/fx.h"
#include "functions/fn_finetune.h"
#include "tests/functions/ft_digits.h"

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	fputs(text, f);
	fclose(f);
}

/* a random net on random data; checks every parameter's gradient of a few layers */
static void grad_check(int classify, kern_act act)
{
	uint64_t s = 12345 + (uint64_t)act * 7 + (uint64_t)classify;
#define RND() ((double)((s = s * 6364136223846793005ull + 1442695040888963407ull) >> 11) / 9007199254740992.0 - 0.5)
	int64_t n[3] = {5, 4, classify ? 3 : 2}, k[3] = {6, 5, 4};
	float *w[3], *b[3], *gw[3], *gb[3];
	for (int i = 0; i < 3; i++) {
		w[i] = malloc((size_t)(n[i] * k[i]) * 4);
		b[i] = malloc((size_t)n[i] * 4);
		gw[i] = malloc((size_t)(n[i] * k[i]) * 4);
		gb[i] = malloc((size_t)n[i] * 4);
		for (int64_t j = 0; j < n[i] * k[i]; j++)
			w[i][j] = (float)RND();
		for (int64_t j = 0; j < n[i]; j++)
			b[i][j] = (float)RND() * 0.2f;
	}
	fn_ft_data d = {.rows = 7, .cols = 6, .nt = classify ? 1 : 2};
	d.x = malloc(7 * 6 * 4);
	d.y = malloc(7 * 2 * 4);
	for (int i = 0; i < 42; i++)
		d.x[i] = (float)RND() * 2;
	for (int i = 0; i < 7; i++) {
		if (classify) {
			d.y[i] = (float)(i % 3);
		} else {
			d.y[2 * i] = (float)RND();
			d.y[2 * i + 1] = (float)RND();
		}
	}
	fn_ft_params p = {.epochs = 1, .learning_rate = 1e-3, .batch_size = 7, .seed = 1,
			  .validation_split = 0, .classify = classify, .act = act};
	fn_ft *f = NULL;
	char err[256];
	T_EQ_INT(fn_ft_new(&p, 3, n, k, (const float *const *)w, (const float *const *)b, &d, &f, err,
			   sizeof err), 0);
	if (!f)
		return;
	int64_t idx[7] = {0, 1, 2, 3, 4, 5, 6};
	fn_ft_loss_grad(f, idx, 7, gw, gb);
	/* perturb the fine-tune's own weights (fn_ft_weights gives them; cast away const for the
	 * check) and compare (L(w+h) - L(w-h)) / 2h with the analytic gradient */
	int bad = 0, checked = 0;
	double worst = 0;
	for (int l = 0; l < 3; l++) {
		const float *cw, *cb;
		fn_ft_weights(f, l, &cw, &cb);
		for (int pass = 0; pass < 2; pass++) {
			float *pp = (float *)(pass ? cb : cw);
			const float *g = pass ? gb[l] : gw[l];
			int64_t cnt = pass ? n[l] : n[l] * k[l];
			for (int64_t j = 0; j < cnt; j++) {
				float keep = pp[j], h = act == KERN_ACT_RELU ? 1e-3f : 1e-2f;
				pp[j] = keep + h;
				double lp = fn_ft_loss_grad(f, idx, 7, NULL, NULL);
				pp[j] = keep - h;
				double lm = fn_ft_loss_grad(f, idx, 7, NULL, NULL);
				pp[j] = keep;
				double num = (lp - lm) / (2.0 * h);
				double diff = fabs(num - g[j]), tol = 2e-3 + 2e-2 * fabs(num);
				if (act == KERN_ACT_RELU)
					tol += 5e-3;   /* kinks within h */
				if (diff > worst)
					worst = diff;
				bad += diff > tol;
				checked++;
			}
		}
	}
	if (bad)
		fprintf(stderr, "  act %d classify %d: %d of %d gradients off (worst %g)\n", act, classify,
			bad, checked, worst);
	T_EQ_INT(bad, 0);
	T_CHECK(checked == 5 * 6 + 5 + 4 * 5 + 4 + (int)n[2] * 4 + (int)n[2]);
	fn_ft_free(f);
	for (int i = 0; i < 3; i++) {
		free(w[i]); free(b[i]); free(gw[i]); free(gb[i]);
	}
	fn_ft_data_free(&d);
#undef RND
}

static void test_gradients_vs_finite_differences(void)
{
	kern_act acts[] = {KERN_ACT_TANH, KERN_ACT_GELU, KERN_ACT_SILU, KERN_ACT_NONE, KERN_ACT_RELU};
	for (int c = 0; c < 2; c++)
		for (size_t a = 0; a < sizeof acts / sizeof acts[0]; a++)
			grad_check(c, acts[a]);
}

static void test_digits_accuracy(void)
{
	digits_run r;
	if (digits_setup(&r) < 0) {
		T_CHECK(0);
		return;
	}
	T_EQ_INT(r.d.rows, 1797);
	T_EQ_INT(r.d.cols, 64);
	fn_ft *f = digits_ft(&r, 20);
	T_CHECK(f != NULL);
	int done = 0;
	long units = 0;
	while (f && !done && units < 100000) {
		T_EQ_INT(fn_ft_unit(f, &done), 0);
		units++;
	}
	T_CHECK(done);
	json_t *m = f ? fn_ft_metrics(f) : NULL;
	double acc = json_real_value(json_object_get(m, "accuracy"));
	double loss = json_real_value(json_object_get(m, "loss"));
	fprintf(stderr, "  digits: %ld units, %lld steps, loss %.4f, held-out accuracy %.4f (%lld rows)\n",
		units, f ? (long long)fn_ft_steps(f) : 0, loss, acc,
		(long long)json_integer_value(json_object_get(m, "val_rows")));
	T_CHECK(acc >= 0.95);
	T_CHECK(loss > 0 && loss < 0.2);
	T_EQ_INT(json_integer_value(json_object_get(m, "val_rows")), 359);
	T_CHECK(f && fn_ft_progress(f) == 1.0);
	json_decref(m);
	fn_ft_free(f);
	digits_free(&r);
}

static void test_resume_is_bit_identical(void)
{
	digits_run r;
	if (digits_setup(&r) < 0) {
		T_CHECK(0);
		return;
	}
	fn_ft *a = digits_ft(&r, 3), *b = digits_ft(&r, 3);
	int done = 0;
	while (a && !done)
		fn_ft_unit(a, &done);
	/* b: run 40 units, save, throw away, restore into a fresh one, finish */
	done = 0;
	for (int i = 0; i < 40 && b; i++)
		fn_ft_unit(b, &done);
	void *buf = NULL;
	size_t len = 0;
	T_EQ_INT(fn_ft_save(b, &buf, &len), 0);
	for (int i = 0; i < 7 && b; i++)   /* progress that the restore must discard */
		fn_ft_unit(b, &done);
	fn_ft_free(b);
	b = digits_ft(&r, 3);
	char err[256];
	T_EQ_INT(fn_ft_restore(b, buf, len, err, sizeof err), 0);
	done = 0;
	while (b && !done)
		fn_ft_unit(b, &done);
	int same = 1;
	for (int l = 0; l < 2 && a && b; l++) {
		const float *wa, *ba, *wb, *bb;
		fn_ft_weights(a, l, &wa, &ba);
		fn_ft_weights(b, l, &wb, &bb);
		same &= memcmp(wa, wb, (size_t)(r.n[l] * r.k[l]) * 4) == 0;
		same &= memcmp(ba, bb, (size_t)r.n[l] * 4) == 0;
	}
	T_CHECK(same);
	T_EQ_INT(fn_ft_steps(a), fn_ft_steps(b));
	/* a checkpoint of another configuration is refused */
	fn_ft *c = NULL;
	fn_ft_params p = {.epochs = 4, .learning_rate = 3e-3, .batch_size = 32, .seed = 7,
			  .validation_split = 0.2, .classify = 1, .act = KERN_ACT_RELU};
	fn_ft_new(&p, 2, r.n, r.k, r.w, r.b, &r.d, &c, err, sizeof err);
	T_CHECK(fn_ft_restore(c, buf, len, err, sizeof err) == -EINVAL);
	fn_ft_free(c);
	free(buf);
	fn_ft_free(a);
	fn_ft_free(b);
	digits_free(&r);
}

/* a regressor: y = 2 x0 - x1 + 0.5 (and a second target 0.25 x1) learned by a linear layer
 * with MSE from CSV rows; the weights come out close to the truth */
static void test_regression_mse(void)
{
	char path[600], err[256];
	snprintf(path, sizeof path, "%s/reg.csv", t_tmpdir());
	FILE *f = fopen(path, "w");
	uint64_t s = 99;
	for (int i = 0; i < 400; i++) {
		s = s * 6364136223846793005ull + 1442695040888963407ull;
		double a = (double)(s >> 11) / 9007199254740992.0 * 2 - 1;
		s = s * 6364136223846793005ull + 1442695040888963407ull;
		double b = (double)(s >> 11) / 9007199254740992.0 * 2 - 1;
		fprintf(f, "%.6f,%.6f,%.6f,%.6f\n", a, b, 2 * a - b + 0.5, 0.25 * b);
	}
	fclose(f);
	fn_ft_data d;
	T_EQ_INT(fn_ft_data_load(path, 2, 1.0, &d, err, sizeof err), 0);
	T_EQ_INT(d.cols, 2);
	int64_t n[1] = {2}, k[1] = {2};
	float w0[4] = {0, 0, 0, 0}, b0[2] = {0, 0};
	const float *w[1] = {w0}, *b[1] = {b0};
	fn_ft_params p = {.epochs = 60, .learning_rate = 0.05, .batch_size = 16, .seed = 3,
			  .validation_split = 0.25, .classify = 0, .act = KERN_ACT_NONE};
	fn_ft *ft = NULL;
	T_EQ_INT(fn_ft_new(&p, 1, n, k, w, b, &d, &ft, err, sizeof err), 0);
	int done = 0;
	while (ft && !done)
		fn_ft_unit(ft, &done);
	const float *rw, *rb;
	fn_ft_weights(ft, 0, &rw, &rb);
	fprintf(stderr, "  regression: w [%.3f %.3f; %.3f %.3f] b [%.3f %.3f]\n", rw[0], rw[1], rw[2], rw[3],
		rb[0], rb[1]);
	T_CHECK(fabsf(rw[0] - 2) < 0.05f && fabsf(rw[1] + 1) < 0.05f && fabsf(rb[0] - 0.5f) < 0.05f);
	T_CHECK(fabsf(rw[2]) < 0.05f && fabsf(rw[3] - 0.25f) < 0.05f && fabsf(rb[1]) < 0.05f);
	json_t *m = fn_ft_metrics(ft);
	T_CHECK(json_real_value(json_object_get(m, "val_loss")) < 1e-3);
	T_CHECK(json_object_get(m, "accuracy") == NULL);
	json_decref(m);
	fn_ft_free(ft);
	fn_ft_data_free(&d);
}

static void test_csv_errors(void)
{
	char path[600], err[512];
	fn_ft_data d;
	snprintf(path, sizeof path, "%s/ok.csv", t_tmpdir());
	write_file(path, "a,b,label\n1,2,0\n3, 4 ,1\n\n");
	T_EQ_INT(fn_ft_data_load(path, 1, 2.0, &d, err, sizeof err), 0);
	T_EQ_INT(d.rows, 2);
	T_EQ_INT(d.cols, 2);
	T_CHECK(d.x && d.x[2] == 6.0f && d.y[1] == 1.0f);
	fn_ft_data_free(&d);
	snprintf(path, sizeof path, "%s/bad.csv", t_tmpdir());
	write_file(path, "1,2,0\n3,x,1\n");
	T_EQ_INT(fn_ft_data_load(path, 1, 1.0, &d, err, sizeof err), -EINVAL);
	T_CHECK(strstr(err, "line 2") != NULL);
	write_file(path, "1,2,0\n3,1\n");
	T_EQ_INT(fn_ft_data_load(path, 1, 1.0, &d, err, sizeof err), -EINVAL);
	T_CHECK(strstr(err, "wrong number of columns") != NULL);
	snprintf(path, sizeof path, "%s/missing.csv", t_tmpdir());
	T_EQ_INT(fn_ft_data_load(path, 1, 1.0, &d, err, sizeof err), -ENOENT);
	snprintf(path, sizeof path, "%s/notgz.csv.gz", t_tmpdir());
	write_file(path, "1,2,0\n");
	T_EQ_INT(fn_ft_data_load(path, 1, 1.0, &d, err, sizeof err), -EINVAL);
}

void t_main(void)
{
	T_RUN(test_gradients_vs_finite_differences);
	T_RUN(test_digits_accuracy);
	T_RUN(test_resume_is_bit_identical);
	T_RUN(test_regression_mse);
	T_RUN(test_csv_errors);
}

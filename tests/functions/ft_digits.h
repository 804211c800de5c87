/* ft_digits.h — test helper (header only, static) of the fine-tune tests (test_finetune.c,
 * test_finetune_dev.c): the trained digits mlp (tests/data/mlp_digits) and the digits data set
 * loaded for fn_ft, and a fine-tune of it with the tests' settings. */
#ifndef THAW_TESTS_FT_DIGITS_H
#define THAW_TESTS_FT_DIGITS_H
#include "functions/fn_finetune.h"
#include "tests/functions/fx.h"

typedef struct digits_run {
	fx_model m;
	fn_ft_data d;
	int64_t n[2], k[2];
	const float *w[2], *b[2];
} digits_run;

static int digits_setup(digits_run *r)
{
	char path[1200], err[256];
	memset(r, 0, sizeof *r);
	if (fx_load("mlp_digits", "mlp", &r->m) < 0)
		return -1;
	for (int l = 0; l < 2; l++) {
		char nm[64];
		snprintf(nm, sizeof nm, "layers.%d.weight", l);
		const fn_weight *w = fn_weight_find(r->m.w, r->m.n, nm);
		snprintf(nm, sizeof nm, "layers.%d.bias", l);
		const fn_weight *b = fn_weight_find(r->m.w, r->m.n, nm);
		if (!w || !b || strcmp(w->dtype, "F32")) {
			fprintf(stderr, "  mlp_digits: layers.%d.weight/bias not found\n", l);
			return -1;
		}
		r->n[l] = w->shape[0];
		r->k[l] = w->shape[1];
		r->w[l] = w->data;
		r->b[l] = b->data;
	}
	snprintf(path, sizeof path, "%s/tests/data/digits.csv.gz", t_src());
	if (fn_ft_data_load(path, 1, 1.0 / 16, &r->d, err, sizeof err) < 0) {
		fprintf(stderr, "  %s\n", err);
		return -1;
	}
	return 0;
}

static void digits_free(digits_run *r)
{
	fn_ft_data_free(&r->d);
	fx_free(NULL, &r->m);
}

static fn_ft *digits_ft(digits_run *r, int epochs)
{
	fn_ft_params p = {.epochs = epochs, .learning_rate = 3e-3, .batch_size = 32, .seed = 7,
			  .validation_split = 0.2, .classify = 1, .act = KERN_ACT_RELU};
	fn_ft *f = NULL;
	char err[256];
	if (fn_ft_new(&p, 2, r->n, r->k, r->w, r->b, &r->d, &f, err, sizeof err) < 0)
		fprintf(stderr, "  %s\n", err);
	return f;
}
#endif

/* test_qjob.c — the quantize job kind (functions/fn_qjob.c): the digits mlp quantized in units
 * gives I8 + F32 scale tensors whose dequantized values lie within half a step of the source,
 * keeps its accuracy on digits (both accuracies computed independently here from the labels
 * the kinds return) and agrees with the source on nearly every row; the tiny llama fixture
 * keeps greedy top-1 agreement high and the KL divergence small; already-quantized sources
 * are refused. */
#include <math.h>
#include <stdlib.h>
#include "tests/t.h"
#pragma GCC diagnostic ignored "-Wunused-function"   /* fx.h helpers this file does not use */
#include "tests/functions/fx.h"
#include "functions/fn_qjob.h"

static fn_qjob *run_all(fx_model *m, const fn_ft_data *d, int block, int *units)
{
	fn_qjob *q = NULL;
	char err[256];
	if (fn_qjob_new(m->w, m->n, m->meta, block, d, &q, err, sizeof err) < 0) {
		fprintf(stderr, "  %s\n", err);
		return NULL;
	}
	int done = 0;
	*units = 0;
	while (!done && *units < 100000) {
		if (fn_qjob_unit(q, &done, err, sizeof err) < 0) {
			fprintf(stderr, "  unit: %s\n", err);
			break;
		}
		(*units)++;
	}
	return done ? q : (fn_qjob_free(q), NULL);
}

static void test_mlp_quantize_and_accuracy(void)
{
	fx_model m;
	fn_ft_data d;
	char path[1200], err[256];
	T_EQ_INT(fx_load("mlp_digits", "mlp", &m), 0);
	snprintf(path, sizeof path, "%s/tests/data/digits.csv.gz", t_src());
	T_EQ_INT(fn_ft_data_load(path, 1, 1.0 / 16, &d, err, sizeof err), 0);
	for (int block = 0; block <= 32; block += 32) {
		int units = 0;
		fn_qjob *q = run_all(&m, &d, block, &units);
		T_CHECK(q != NULL);
		if (!q)
			continue;
		T_CHECK(units > 2);
		T_CHECK(fn_qjob_progress(q) == 1.0);
		size_t n;
		const fn_weight *w = fn_qjob_result(q, &n);
		T_EQ_INT(n, m.n + 2);
		int checked = 0, bad = 0;
		for (size_t i = 0; i < n; i++) {
			if (strcmp(w[i].dtype, "I8"))
				continue;
			char sn[128];
			snprintf(sn, sizeof sn, "%s_scale", w[i].name);
			const fn_weight *s = fn_weight_find(w, n, sn), *src = fn_weight_find(m.w, m.n, w[i].name);
			T_CHECK(s && src && !strcmp(s->dtype, "F32"));
			if (!s || !src)
				continue;
			int64_t rows = w[i].shape[0], k = w[i].shape[1], spr = block ? k / 32 : 1;
			const int8_t *qd = w[i].data;
			const float *sc = s->data, *sw = src->data;
			for (int64_t r = 0; r < rows; r++)
				for (int64_t j = 0; j < k; j++) {
					float scale = sc[r * spr + (block ? j / 32 : 0)];
					bad += fabsf(qd[r * k + j] * scale - sw[r * k + j]) > scale * 0.5f + 1e-6f;
					checked++;
				}
		}
		T_CHECK(checked == 64 * 32 + 32 * 10);
		T_EQ_INT(bad, 0);
		json_t *mt = fn_qjob_metrics(q);
		double acc = json_real_value(json_object_get(mt, "accuracy"));
		double sacc = json_real_value(json_object_get(mt, "source_accuracy"));
		double agree = json_real_value(json_object_get(mt, "agreement"));
		fprintf(stderr, "  block %d: accuracy %.4f (source %.4f), agreement %.4f, %d units\n", block,
			acc, sacc, agree, units);
		T_EQ_INT(json_integer_value(json_object_get(mt, "eval_rows")), 1797);
		T_EQ_INT(json_integer_value(json_object_get(mt, "quantized_tensors")), 2);
		T_CHECK(sacc > 0.9 && acc > sacc - 0.02 && agree > 0.97);
		json_decref(mt);
		fn_qjob_free(q);
	}
	fn_ft_data_free(&d);
	fx_free(NULL, &m);
}

static void test_llama_agreement(void)
{
	fx_model m;
	T_EQ_INT(fx_load("llama_tiny", "llama", &m), 0);
	int units = 0;
	fn_qjob *q = run_all(&m, NULL, 0, &units);
	T_CHECK(q != NULL);
	if (q) {
		json_t *mt = fn_qjob_metrics(q);
		double agree = json_real_value(json_object_get(mt, "agreement"));
		double kl = json_real_value(json_object_get(mt, "kl"));
		fprintf(stderr, "  llama_tiny int8: agreement %.4f, KL %.6f, %lld tensors\n", agree, kl,
			(long long)json_integer_value(json_object_get(mt, "quantized_tensors")));
		T_EQ_INT(json_integer_value(json_object_get(mt, "prompts")), 4);
		T_CHECK(agree >= 0.8 && agree <= 1.0);
		T_CHECK(kl >= 0 && kl < 0.05);
		json_decref(mt);
		/* a quantized table cannot be quantized again */
		size_t n;
		const fn_weight *w = fn_qjob_result(q, &n);
		fn_qjob *q2 = NULL;
		char err[256] = "";
		T_CHECK(fn_qjob_new(w, n, m.meta, 0, NULL, &q2, err, sizeof err) < 0);
		T_CHECK(strstr(err, "already quantized") != NULL);
		fn_qjob_free(q);
	}
	fx_free(NULL, &m);
}

void t_main(void)
{
	T_RUN(test_mlp_quantize_and_accuracy);
	T_RUN(test_llama_agreement);
}

/* test_mlp.c — the `mlp` kind: the digits classifier trained with PyTorch
 * (tests/data/mlp_digits) against PyTorch's logits and labels; a random 3-layer MLP against an
 * independent double-precision computation in this file for each activation; int8 against its
 * dequantized F32 twin (and top-1 agreement with the unquantized model); request errors; the
 * same on CUDA when a GPU is present. */
#include <math.h>
#include <stdlib.h>
#include "tests/t.h"
#include "tests/functions/fx.h"
#include "functions/fn_kinds.h"

/* digits rows (pixels / 16) and labels from tests/data/digits.csv.gz, read without zlib:
 * through `zcat` (gzip is everywhere the tests run). */
static int load_digits(float **x, int **y)
{
	char cmd[1200];
	snprintf(cmd, sizeof cmd, "zcat '%s/tests/data/digits.csv.gz'", t_src());
	FILE *f = popen(cmd, "r");
	if (!f)
		return 0;
	*x = malloc(2000 * 64 * sizeof **x);
	*y = malloc(2000 * sizeof **y);
	int n = 0;
	while (n < 2000) {
		int v[65], ok = 1;
		for (int j = 0; j < 65 && ok; j++)
			ok = fscanf(f, j ? ",%d" : "%d", &v[j]) == 1;
		if (!ok)
			break;
		for (int j = 0; j < 64; j++)
			(*x)[n * 64 + j] = v[j] / 16.0f;
		(*y)[n] = v[64];
		n++;
	}
	pclose(f);
	return n;
}

static json_t *rows_json(const float *x, int r0, int n, int k)
{
	json_t *a = json_array();
	for (int i = r0; i < r0 + n; i++) {
		json_t *row = json_array();
		for (int j = 0; j < k; j++)
			json_array_append_new(row, json_real(x[i * k + j]));
		json_array_append_new(a, row);
	}
	return json_pack("{s:o}", "inputs", a);
}

typedef struct loaded {
	kern_dev *d;
	fx_model m;
	void *st;
} loaded;

static int load(loaded *l, const char *dev, const char *dtype, int qblock)
{
	fn_error err = {0};
	if (kern_dev_open(dev, 2, &l->d) < 0 || fx_load("mlp_digits", "mlp", &l->m) < 0)
		return -1;
	if (dtype)
		fx_convert(&l->m, dtype);
	if (qblock >= 0)
		fx_quantize(&l->m, qblock);
	fx_to_dev(l->d, &l->m);
	fn_load_args a = {l->d, l->m.w, l->m.n, l->m.meta};
	int rc = fn_mlp_kind.load(&a, &l->st, &err);
	if (rc)
		fprintf(stderr, "  load: %s\n", err.msg);
	return rc;
}

static void unload(loaded *l)
{
	if (l->st)
		fn_mlp_kind.release(l->st);
	fx_free(l->d, &l->m);
	kern_dev_close(l->d);
}

/* all rows through the kind as 3 batched requests; returns labels, fills logits */
static int *classify(loaded *l, const float *x, int n, float *logits)
{
	json_t *in[3], *out[3];
	fn_error errs[3];
	int cut[4] = {0, n / 3, 2 * n / 3, n};
	for (int i = 0; i < 3; i++)
		in[i] = rows_json(x, cut[i], cut[i + 1] - cut[i], 64);
	int *lab = calloc((size_t)n, sizeof *lab);
	T_EQ_INT(fx_invoke(&fn_mlp_kind, l->st, in, out, errs, 3), 0);
	for (int i = 0; i < 3; i++) {
		T_CHECK(out[i] != NULL);
		json_t *ls = json_object_get(out[i], "labels"), *os = json_object_get(out[i], "outputs");
		T_EQ_INT(json_array_size(ls), cut[i + 1] - cut[i]);
		for (int r = cut[i]; r < cut[i + 1] && out[i]; r++) {
			lab[r] = (int)json_integer_value(json_array_get(ls, (size_t)(r - cut[i])));
			json_t *row = json_array_get(os, (size_t)(r - cut[i]));
			for (int j = 0; j < 10 && logits; j++)
				logits[r * 10 + j] = (float)json_real_value(json_array_get(row, (size_t)j));
		}
		json_decref(in[i]);
		json_decref(out[i]);
	}
	return lab;
}

static void check_digits(const char *dev)
{
	char path[1024];
	snprintf(path, sizeof path, "%s/tests/data/mlp_digits/expected.json", t_src());
	json_t *ex = json_load_file(path, 0, NULL);
	float *x = NULL;
	int *y = NULL, n = load_digits(&x, &y);
	T_EQ_INT(n, 1797);
	loaded l = {0};
	T_EQ_INT(load(&l, dev, NULL, -1), 0);
	float *lg = malloc((size_t)n * 10 * 4);
	int *lab = classify(&l, x, n, lg);
	json_t *fl = json_object_get(ex, "first_logits"), *el = json_object_get(ex, "labels");
	double md = 0;
	for (int r = 0; r < 16; r++)
		for (int j = 0; j < 10; j++) {
			double dd = fabs(lg[r * 10 + j] - json_real_value(json_array_get(
				json_array_get(fl, (size_t)r), (size_t)j)));
			md = dd > md ? dd : md;
		}
	T_CHECK(md < 1e-3);
	int same = 0, correct = 0;
	for (int r = 0; r < n; r++) {
		same += lab[r] == json_integer_value(json_array_get(el, (size_t)r));
		correct += r >= 1000 && lab[r] == y[r];
	}
	T_EQ_INT(same, n);
	double acc = correct / 797.0;
	T_CHECK(fabs(acc - json_real_value(json_object_get(ex, "heldout_accuracy"))) < 1e-6);
	printf("  %s: logits max diff vs PyTorch %.2g, labels %d/%d equal, held-out accuracy %.4f\n",
	       dev, md, same, n, acc);
	/* int8: vs its dequantized F32 twin (same math without the int8 kernel), and top-1 */
	for (int blk = 0; blk <= 32; blk += 32) {
		loaded q = {0}, dq = {0};
		T_EQ_INT(load(&q, dev, NULL, blk), 0);
		T_EQ_INT(load(&dq, dev, NULL, -1), 0);
		/* dequantized twin: replace dq's weights with q * scale in F32 */
		for (size_t i = 0; i < q.m.n; i++) {
			fn_weight *w = &q.m.w[i];
			if (strcmp(w->dtype, "I8"))
				continue;
			const fn_weight *s = NULL;
			char nm[300];
			snprintf(nm, sizeof nm, "%s_scale", w->name);
			s = fn_weight_find(q.m.w, q.m.n, nm);
			int64_t nn = w->shape[0], kk = w->shape[1];
			int8_t *qh = malloc((size_t)(nn * kk));
			float *sh = malloc((size_t)s->nbytes), *f = malloc((size_t)(nn * kk) * 4);
			kern_copy_d2h(q.d, qh, w->data, (size_t)(nn * kk));
			kern_copy_d2h(q.d, sh, s->data, s->nbytes);
			for (int64_t r = 0; r < nn; r++)
				for (int64_t j = 0; j < kk; j++)
					f[r * kk + j] = qh[r * kk + j] * (blk ? sh[r * (kk / 32) + j / 32] : sh[r]);
			const fn_weight *t = fn_weight_find(dq.m.w, dq.m.n, w->name);
			kern_copy_h2d(dq.d, (void *)t->data, f, (size_t)(nn * kk) * 4);
			free(qh);
			free(sh);
			free(f);
		}
		fn_mlp_kind.release(dq.st);
		fn_load_args a = {dq.d, dq.m.w, dq.m.n, dq.m.meta};
		fn_error err;
		T_EQ_INT(fn_mlp_kind.load(&a, &dq.st, &err), 0);
		float *lq = malloc((size_t)n * 40), *ld = malloc((size_t)n * 40);
		int *labq = classify(&q, x, n, lq), *labd = classify(&dq, x, n, ld);
		double m2 = 0, big = 0;
		int agree = 0, qcorrect = 0;
		for (int r = 0; r < n; r++) {
			for (int j = 0; j < 10; j++) {
				double dd = fabs(lq[r * 10 + j] - ld[r * 10 + j]);
				m2 = dd > m2 ? dd : m2;
				big = fabs(ld[r * 10 + j]) > big ? fabs(ld[r * 10 + j]) : big;
			}
			agree += labq[r] == lab[r];
			qcorrect += r >= 1000 && labq[r] == y[r];
		}
		/* the CPU dequantizes in registers (F32); on a GPU batches of more than 32 rows are
		 * multiplied on weights dequantized to BF16 with BF16-rounded inputs (as BF16 weights
		 * are): within 2% of the largest logit */
		T_CHECK(m2 < (strcmp(dev, "cpu") ? 2e-2 * big : 1e-3));
		T_CHECK(agree >= n * 98 / 100);
		printf("  %s int8 block %d: vs dequantized F32 max diff %.2g (largest logit %.3g); "
		       "top-1 agreement with F32 "
		       "%d/%d (%.2f%%); held-out accuracy %.4f\n", dev, blk, m2, big, agree, n,
		       100.0 * agree / n, qcorrect / 797.0);
		free(lq);
		free(ld);
		free(labq);
		free(labd);
		unload(&q);
		unload(&dq);
	}
	free(lab);
	free(lg);
	free(x);
	free(y);
	unload(&l);
	json_decref(ex);
}

static void test_mlp_digits_cpu(void) { check_digits("cpu"); }

static void test_mlp_digits_cuda(void)
{
	if (kern_cuda_count() < 1)
		T_SKIP("no GPU");
	check_digits("cuda:0");
}

static uint32_t rng = 12345;
static float frand(void)
{
	rng = rng * 1664525u + 1013904223u;
	return (float)((rng >> 8) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

static double act_d(double v, const char *a)
{
	if (!strcmp(a, "relu")) return v > 0 ? v : 0;
	if (!strcmp(a, "tanh")) return tanh(v);
	if (!strcmp(a, "gelu")) return 0.5 * v * (1 + erf(v / sqrt(2.0)));
	return v;
}

/* a random 3-layer MLP (17 -> 40 -> 33 -> 5, layers 0, 2, 4 as nn.Sequential numbers them,
 * the last without bias) vs a double-precision loop here */
static void random_mlp(const char *dev, const char *act, const char *dtype)
{
	int dims[4] = {17, 40, 33, 5}, idx[3] = {0, 2, 4};
	fx_model m;
	memset(&m, 0, sizeof m);
	m.meta = json_pack("{s:s,s:s}", "kind", "mlp", "activation", act);
	for (int l = 0; l < 3; l++) {
		char nm[64];
		int64_t sh[2] = {dims[l + 1], dims[l]};
		float *w = malloc((size_t)(sh[0] * sh[1]) * 4);
		for (int64_t i = 0; i < sh[0] * sh[1]; i++)
			w[i] = frand() * 0.5f;
		snprintf(nm, sizeof nm, "layers.%d.weight", idx[l]);
		fx_add(&m, nm, "F32", 2, sh, w, (size_t)(sh[0] * sh[1]) * 4);
		if (l < 2) {
			float *b = malloc((size_t)sh[0] * 4);
			for (int64_t i = 0; i < sh[0]; i++)
				b[i] = frand() * 0.3f;
			snprintf(nm, sizeof nm, "layers.%d.bias", idx[l]);
			fx_add(&m, nm, "F32", 1, sh, b, (size_t)sh[0] * 4);
		}
	}
	if (dtype)
		fx_convert(&m, dtype);
	/* reference from the (possibly rounded) weights, in double */
	int rows = 11;
	float x[11 * 17];
	for (int i = 0; i < rows * 17; i++)
		x[i] = frand() * 2;
	double ref[11][5];
	for (int r = 0; r < rows; r++) {
		double a[64], b[64];
		for (int j = 0; j < 17; j++)
			a[j] = x[r * 17 + j];
		for (int l = 0; l < 3; l++) {
			char nm[64];
			snprintf(nm, sizeof nm, "layers.%d.weight", idx[l]);
			const fn_weight *w = fn_weight_find(m.w, m.n, nm);
			snprintf(nm, sizeof nm, "layers.%d.bias", idx[l]);
			const fn_weight *bb = fn_weight_find(m.w, m.n, nm);
			float *wf = malloc((size_t)(dims[l + 1] * dims[l]) * 4), bf[64] = {0};
			fx_get_f32(w, wf, (size_t)(dims[l + 1] * dims[l]));
			if (bb)
				fx_get_f32(bb, bf, (size_t)dims[l + 1]);
			for (int o = 0; o < dims[l + 1]; o++) {
				double s = bf[o];
				for (int i = 0; i < dims[l]; i++)
					s += (double)wf[o * dims[l] + i] * a[i];
				b[o] = l < 2 ? act_d(s, act) : s;
			}
			free(wf);
			memcpy(a, b, sizeof a);
		}
		for (int o = 0; o < 5; o++)
			ref[r][o] = a[o];
	}
	kern_dev *d;
	T_EQ_INT(kern_dev_open(dev, 2, &d), 0);
	fx_to_dev(d, &m);
	fn_load_args la = {d, m.w, m.n, m.meta};
	void *st = NULL;
	fn_error err;
	T_EQ_INT(fn_mlp_kind.load(&la, &st, &err), 0);
	json_t *in = rows_json(x, 0, rows, 17);
	json_t *out = st ? fn_invoke_one(&fn_mlp_kind, st, in, &err) : NULL;
	T_CHECK(out != NULL);
	double md = 0;
	for (int r = 0; r < rows && out; r++) {
		json_t *row = json_array_get(json_object_get(out, "outputs"), (size_t)r);
		int best = 0;
		for (int o = 0; o < 5; o++) {
			double dd = fabs(json_real_value(json_array_get(row, (size_t)o)) - ref[r][o]);
			md = dd > md ? dd : md;
			if (ref[r][o] > ref[r][best])
				best = o;
		}
		T_EQ_INT(json_integer_value(json_array_get(json_object_get(out, "labels"), (size_t)r)),
			 best);
	}
	/* on a GPU, 11 rows with F16/BF16 weights go through cuBLAS with the activations rounded
	 * to the weight dtype (kernels/cuda/kc_linear.cu): F16 keeps ~11 bits */
	double tol = strcmp(dev, "cpu") && dtype ? 1e-2 : 1e-4;
	if (md > tol)
		fprintf(stderr, "  %s %s %s: max diff %g\n", dev, act, dtype ? dtype : "F32", md);
	T_CHECK(md < tol);
	json_decref(in);
	json_decref(out);
	if (st)
		fn_mlp_kind.release(st);
	fx_free(d, &m);
	kern_dev_close(d);
}

static void test_mlp_random_vs_reference(void)
{
	const char *acts[] = {"relu", "gelu", "tanh", "none"};
	for (int i = 0; i < 4; i++) {
		random_mlp("cpu", acts[i], NULL);
		random_mlp("cpu", acts[i], "BF16");
	}
	random_mlp("cpu", "relu", "F16");
	if (kern_cuda_count() > 0)
		for (int i = 0; i < 4; i++) {
			random_mlp("cuda:0", acts[i], NULL);
			random_mlp("cuda:0", acts[i], "F16");
		}
}

static void test_mlp_bad_input(void)
{
	loaded l = {0};
	T_EQ_INT(load(&l, "cpu", NULL, -1), 0);
	const char *bad[] = {"{}", "{\"inputs\": []}", "{\"inputs\": [[1, 2]]}", "{\"inputs\": 3}",
			     "[1]", "{\"inputs\": [\"x\"]}"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		fn_error err;
		json_t *in = json_loads(bad[i], 0, NULL);
		json_t *out = fn_invoke_one(&fn_mlp_kind, l.st, in, &err);
		T_CHECK(out == NULL);
		T_EQ_INT(err.status, 400);
		json_decref(in);
	}
	/* mixed batch: one bad request does not spoil the others */
	float x[64] = {0};
	json_t *in[2] = {json_loads("{\"inputs\": [[1]]}", 0, NULL), rows_json(x, 0, 1, 64)};
	json_t *out[2];
	fn_error errs[2];
	T_EQ_INT(fx_invoke(&fn_mlp_kind, l.st, in, out, errs, 2), 0);
	T_CHECK(out[0] == NULL && errs[0].status == 400 && out[1] != NULL && errs[1].status == 0);
	json_decref(in[0]);
	json_decref(in[1]);
	json_decref(out[1]);
	unload(&l);
	/* bad models */
	fx_model m;
	memset(&m, 0, sizeof m);
	m.meta = json_pack("{s:s}", "activation", "swish2");
	kern_dev *d;
	kern_dev_open("cpu", 1, &d);
	int64_t sh[2] = {3, 4};
	fx_add(&m, "layers.0.weight", "F32", 2, sh, calloc(12, 4), 48);
	fn_load_args a = {d, m.w, m.n, m.meta};
	void *st = NULL;
	fn_error err;
	T_CHECK(fn_mlp_kind.load(&a, &st, &err) < 0 && err.status == 422);
	json_object_set_new(m.meta, "activation", json_string("gelu"));
	int64_t sh2[2] = {2, 5};
	fx_add(&m, "layers.1.weight", "F32", 2, sh2, calloc(10, 4), 40);
	a.n_weights = m.n;
	T_CHECK(fn_mlp_kind.load(&a, &st, &err) < 0 && err.status == 422);
	fx_free(d, &m);
	kern_dev_close(d);
}

void t_main(void)
{
	T_RUN(test_mlp_digits_cpu);
	T_RUN(test_mlp_random_vs_reference);
	T_RUN(test_mlp_bad_input);
	T_RUN(test_mlp_digits_cuda);
}

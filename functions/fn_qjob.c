/* fn_qjob.c — the quantize job kind (see fn_qjob.h). */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "functions/fn_kinds.h"
#include "functions/fn_llama.h"
#include "functions/fn_qjob.h"
#include "functions/fn_quant.h"

#define QJ_UNIT_ELEMS 16384
#define QJ_EVAL_ROWS 32
#define QJ_PROMPTS 4
#define QJ_PROMPT_LEN 8
#define QJ_GEN 16
/* The evaluation runs on a private one-thread CPU device inside the job's units; a llama
 * larger than this would make one unit (a prompt) take seconds, so it is not evaluated. */
#define QJ_LLAMA_EVAL_MAX_PARAMS 100000000LL

enum { QJ_QUANT, QJ_EVAL_SETUP, QJ_EVAL, QJ_DONE };

struct fn_qjob {
	const fn_weight *src;
	size_t n;
	const json_t *meta;
	int block;
	const fn_ft_data *eval;
	fn_weight *out;
	size_t nout;
	int *src_of;               /* out index -> src index, -1 for a scale tensor */
	void **owned;              /* per out entry: malloc'd data or NULL (borrowed from src) */
	char **names;
	int phase;
	size_t cur;                /* out entry being quantized */
	int64_t row;               /* next row of it */
	int64_t units, total_units;
	int n_quant;
	uint64_t src_bytes, out_bytes;
	/* evaluation */
	const fn_kind *kind;
	kern_dev *dev;
	void *st_src, *st_q;
	int64_t eval_pos;
	int64_t right_src, right_q, agree, seen;
	double kl_sum;
	int64_t gen_agree, gen_total, prompts_done;
	int64_t n_params;
	int eval_skipped;
};


void fn_qjob_free(fn_qjob *q)
{
	if (!q)
		return;
	if (q->kind) {
		if (q->st_src)
			q->kind->release(q->st_src);
		if (q->st_q)
			q->kind->release(q->st_q);
	}
	if (q->dev)
		kern_dev_close(q->dev);
	for (size_t i = 0; i < q->nout; i++) {
		free(q->owned[i]);
		free(q->names[i]);
	}
	free(q->owned);
	free(q->names);
	free(q->out);
	free(q->src_of);
	free(q);
}

static const char *meta_kind(const json_t *meta)
{
	const char *k = json_string_value(json_object_get(meta, "kind"));
	return k ? k : "unknown";
}

int fn_qjob_new(const fn_weight *w, size_t n, const json_t *meta, int block,
		const fn_ft_data *eval, fn_qjob **out, char *err, size_t errlen)
{
	*out = NULL;
	if (block != 0 && block != 32)
		return fn_errf(err, errlen, -EINVAL, "quantize: block must be 0 or 32");
	fn_qjob *q = calloc(1, sizeof *q);
	if (!q)
		return fn_errf(err, errlen, -ENOMEM, "quantize: out of memory");
	q->src = w;
	q->n = n;
	q->meta = meta;
	q->block = block;
	q->eval = eval;
	q->out = calloc(2 * n + 1, sizeof *q->out);
	q->src_of = calloc(2 * n + 1, sizeof *q->src_of);
	q->owned = calloc(2 * n + 1, sizeof *q->owned);
	q->names = calloc(2 * n + 1, sizeof *q->names);
	if (!q->out || !q->src_of || !q->owned || !q->names)
		goto nomem;
	for (size_t i = 0; i < n; i++) {
		const fn_weight *s = &w[i];
		q->src_bytes += s->nbytes;
		int64_t cnt = 1;
		for (int d = 0; d < s->ndim; d++)
			cnt *= s->shape[d];
		q->n_params += cnt;
		if (strstr(s->name, FN_QUANT_SCALE_SUFFIX) || !strcmp(s->dtype, "I8")) {
			fn_qjob_free(q);
			return fn_errf(err, errlen, -EINVAL, "quantize: the source is already quantized "
				      "(tensor %s)", s->name);
		}
		fn_weight *o = &q->out[q->nout];
		*o = *s;
		q->src_of[q->nout] = (int)i;
		if (!fn_quant_eligible(s->name, s->dtype, s->ndim, s->shape, block)) {
			q->nout++;
			continue;
		}
		int64_t rows = s->shape[0], k = s->shape[1], ns = fn_quant_scale_count(rows, k, block);
		q->owned[q->nout] = malloc((size_t)(rows * k));
		o->dtype = "I8";
		o->data = q->owned[q->nout];
		o->nbytes = (size_t)(rows * k);
		fn_weight *sc = &q->out[q->nout + 1];
		q->src_of[q->nout + 1] = -1;
		size_t nl = strlen(s->name) + sizeof FN_QUANT_SCALE_SUFFIX;
		q->names[q->nout + 1] = malloc(nl);
		q->owned[q->nout + 1] = malloc((size_t)ns * 4);
		if (!q->owned[q->nout] || !q->names[q->nout + 1] || !q->owned[q->nout + 1])
			goto nomem;
		snprintf(q->names[q->nout + 1], nl, "%s%s", s->name, FN_QUANT_SCALE_SUFFIX);
		sc->name = q->names[q->nout + 1];
		sc->dtype = "F32";
		sc->ndim = block ? 2 : 1;
		sc->shape[0] = rows;
		sc->shape[1] = ns / rows;
		sc->data = q->owned[q->nout + 1];
		sc->nbytes = (size_t)ns * 4;
		q->total_units += (rows * k + QJ_UNIT_ELEMS - 1) / QJ_UNIT_ELEMS;
		q->n_quant++;
		q->nout += 2;
	}
	if (q->n_quant == 0) {
		fn_qjob_free(q);
		return fn_errf(err, errlen, -EINVAL, "quantize: no weight matrix to quantize (F32/F16/BF16 "
			      "*.weight, 2-D)");
	}
	for (size_t i = 0; i < q->nout; i++)
		q->out_bytes += q->out[i].nbytes;
	const char *kind = meta_kind(meta);
	if (!strcmp(kind, "mlp") && eval)
		q->total_units += 1 + (eval->rows + QJ_EVAL_ROWS - 1) / QJ_EVAL_ROWS;
	else if (!strcmp(kind, "llama") && q->n_params <= QJ_LLAMA_EVAL_MAX_PARAMS)
		q->total_units += 1 + QJ_PROMPTS;
	else if (!strcmp(kind, "llama"))
		q->eval_skipped = 1;
	*out = q;
	return 0;
nomem:
	fn_qjob_free(q);
	return fn_errf(err, errlen, -ENOMEM, "quantize: out of memory");
}

/* quantizes up to QJ_UNIT_ELEMS elements of the current eligible tensor */
static void quant_unit(fn_qjob *q)
{
	while (q->cur < q->nout && (q->src_of[q->cur] < 0 || !q->owned[q->cur]))
		q->cur++;
	if (q->cur >= q->nout) {
		q->phase = QJ_EVAL_SETUP;
		return;
	}
	const fn_weight *s = &q->src[q->src_of[q->cur]];
	int64_t rows = s->shape[0], k = s->shape[1];
	int64_t nr = QJ_UNIT_ELEMS / k;
	if (nr < 1)
		nr = 1;
	if (nr > rows - q->row)
		nr = rows - q->row;
	size_t esz = kern_dtype_size(!strcmp(s->dtype, "F32") ? KERN_F32 : KERN_F16);
	int64_t spr = fn_quant_scale_count(1, k, q->block);   /* scales per row */
	fn_quant_int8(s->dtype, (const char *)s->data + (size_t)(q->row * k) * esz, nr, k, q->block,
		      (int8_t *)q->owned[q->cur] + q->row * k, (float *)q->owned[q->cur + 1] + q->row * spr);
	q->row += nr;
	if (q->row >= rows) {
		q->row = 0;
		q->cur += 2;
	}
}

static int eval_setup(fn_qjob *q, char *err, size_t errlen)
{
	const char *kind = meta_kind(q->meta);
	int is_mlp = !strcmp(kind, "mlp") && q->eval, is_llama = !strcmp(kind, "llama") && !q->eval_skipped;
	if (!is_mlp && !is_llama) {
		q->phase = QJ_DONE;
		return 0;
	}
	q->kind = fn_kind_find(kind);
	if (!q->kind)
		return fn_errf(err, errlen, -ENOENT, "quantize: no kind '%s' to evaluate with", kind);
	int rc = kern_dev_open("cpu", 1, &q->dev);
	if (rc < 0)
		return fn_errf(err, errlen, rc, "quantize: cannot open a CPU device for the evaluation");
	fn_error fe = {0};
	fn_load_args a = {q->dev, q->src, q->n, q->meta};
	rc = q->kind->load(&a, &q->st_src, &fe);
	if (rc == 0) {
		fn_load_args b = {q->dev, q->out, q->nout, q->meta};
		rc = q->kind->load(&b, &q->st_q, &fe);
	}
	if (rc < 0)
		return fn_errf(err, errlen, rc, "quantize: evaluation: %s", fe.msg);
	q->phase = QJ_EVAL;
	return 0;
}

static json_t *labels_of(const fn_qjob *q, void *st, json_t *in, fn_error *fe)
{
	json_t *o = fn_invoke_one(q->kind, st, in, fe);
	json_t *l = json_incref(json_object_get(o, "labels"));
	json_decref(o);
	return l;
}

static int eval_mlp(fn_qjob *q, char *err, size_t errlen)
{
	const fn_ft_data *d = q->eval;
	int64_t m = d->rows - q->eval_pos;
	if (m > QJ_EVAL_ROWS)
		m = QJ_EVAL_ROWS;
	json_t *rows = json_array();
	for (int64_t r = q->eval_pos; r < q->eval_pos + m; r++) {
		json_t *row = json_array();
		for (int64_t j = 0; j < d->cols; j++)
			json_array_append_new(row, json_real(d->x[r * d->cols + j]));
		json_array_append_new(rows, row);
	}
	json_t *in = json_pack("{s:o}", "inputs", rows);
	fn_error fe = {0};
	json_t *ls = labels_of(q, q->st_src, in, &fe), *lq = ls ? labels_of(q, q->st_q, in, &fe) : NULL;
	json_decref(in);
	if (!ls || !lq) {
		json_decref(ls);
		return fn_errf(err, errlen, -EINVAL, "quantize: evaluation data: %s", fe.msg);
	}
	for (int64_t i = 0; i < m; i++) {
		json_int_t a = json_integer_value(json_array_get(ls, (size_t)i));
		json_int_t b = json_integer_value(json_array_get(lq, (size_t)i));
		json_int_t t = (json_int_t)d->y[(q->eval_pos + i) * d->nt];
		q->right_src += a == t;
		q->right_q += b == t;
		q->agree += a == b;
	}
	json_decref(ls);
	json_decref(lq);
	q->seen += m;
	q->eval_pos += m;
	if (q->eval_pos >= d->rows)
		q->phase = QJ_DONE;
	return 0;
}

static int eval_llama(fn_qjob *q, char *err, size_t errlen)
{
	int V = fn_llama_vocab(q->st_src);
	int32_t prompt[QJ_PROMPT_LEN], am[QJ_GEN];
	int64_t p = q->prompts_done;
	for (int i = 0; i < QJ_PROMPT_LEN; i++)
		prompt[i] = (int32_t)((p * 37 + i * 11 + 1) % V);
	float *ls = malloc((size_t)V * 4), *lq = malloc((size_t)V * 4);
	int rc = ls && lq ? 0 : -ENOMEM;
	if (rc == 0)
		rc = fn_llama_prefill_logits(q->st_src, prompt, QJ_PROMPT_LEN, ls);
	if (rc == 0)
		rc = fn_llama_prefill_logits(q->st_q, prompt, QJ_PROMPT_LEN, lq);
	if (rc == 0) {
		/* KL(P || Q) of the softmaxes */
		double ms = ls[0], mq = lq[0], zs = 0, zq = 0, kl = 0;
		for (int i = 1; i < V; i++) {
			if (ls[i] > ms) ms = ls[i];
			if (lq[i] > mq) mq = lq[i];
		}
		for (int i = 0; i < V; i++) {
			zs += exp(ls[i] - ms);
			zq += exp(lq[i] - mq);
		}
		for (int i = 0; i < V; i++) {
			double lps = ls[i] - ms - log(zs), lpq = lq[i] - mq - log(zq);
			kl += exp(lps) * (lps - lpq);
		}
		q->kl_sum += kl;
	}
	free(ls);
	free(lq);
	if (rc < 0)
		return fn_errf(err, errlen, rc, "quantize: llama evaluation failed (%s)", strerror(-rc));
	/* the source's greedy continuation, then the quantized model teacher-forced over it */
	json_t *toks = json_array();
	for (int i = 0; i < QJ_PROMPT_LEN; i++)
		json_array_append_new(toks, json_integer(prompt[i]));
	json_t *in = json_pack("{s:o,s:i}", "tokens", toks, "max_tokens", QJ_GEN);
	fn_error fe = {0};
	json_t *o = fn_invoke_one(q->kind, q->st_src, in, &fe);
	json_decref(in);
	json_t *g = json_object_get(o, "tokens");
	int ng = (int)json_array_size(g);
	int32_t gen[QJ_GEN];
	for (int i = 0; i < ng && i < QJ_GEN; i++)
		gen[i] = (int32_t)json_integer_value(json_array_get(g, (size_t)i));
	json_decref(o);
	if (!o)
		return fn_errf(err, errlen, -EINVAL, "quantize: llama evaluation: %s", fe.msg);
	if (ng > QJ_GEN)
		ng = QJ_GEN;
	if (ng > 0) {
		rc = fn_llama_forced(q->st_q, prompt, QJ_PROMPT_LEN, gen, ng, am);
		if (rc < 0)
			return fn_errf(err, errlen, rc, "quantize: llama evaluation failed (%s)", strerror(-rc));
		for (int i = 0; i < ng; i++)
			q->gen_agree += am[i] == gen[i];
		q->gen_total += ng;
	}
	if (++q->prompts_done >= QJ_PROMPTS)
		q->phase = QJ_DONE;
	return 0;
}

int fn_qjob_unit(fn_qjob *q, int *done, char *err, size_t errlen)
{
	int rc = 0;
	switch (q->phase) {
	case QJ_QUANT:
		quant_unit(q);
		break;
	case QJ_EVAL_SETUP:
		rc = eval_setup(q, err, errlen);
		break;
	case QJ_EVAL:
		rc = !strcmp(meta_kind(q->meta), "llama") ? eval_llama(q, err, errlen) : eval_mlp(q, err, errlen);
		break;
	default:
		break;
	}
	if (q->phase != QJ_DONE || rc == 0)
		q->units++;
	*done = q->phase == QJ_DONE;
	return rc;
}

double fn_qjob_progress(const fn_qjob *q)
{
	if (q->phase == QJ_DONE)
		return 1.0;
	double p = q->total_units ? (double)q->units / (double)q->total_units : 0;
	return p > 0.999 ? 0.999 : p;
}

int64_t fn_qjob_steps(const fn_qjob *q)
{
	return q->units;
}

json_t *fn_qjob_metrics(const fn_qjob *q)
{
	json_t *o = json_object();
	json_object_set_new(o, "quantized_tensors", json_integer(q->n_quant));
	json_object_set_new(o, "source_bytes", json_integer((json_int_t)q->src_bytes));
	json_object_set_new(o, "result_bytes", json_integer((json_int_t)q->out_bytes));
	if (q->seen > 0) {
		json_object_set_new(o, "accuracy", json_real((double)q->right_q / (double)q->seen));
		json_object_set_new(o, "source_accuracy", json_real((double)q->right_src / (double)q->seen));
		json_object_set_new(o, "agreement", json_real((double)q->agree / (double)q->seen));
		json_object_set_new(o, "eval_rows", json_integer(q->seen));
	}
	if (q->gen_total > 0) {
		json_object_set_new(o, "agreement", json_real((double)q->gen_agree / (double)q->gen_total));
		json_object_set_new(o, "kl", json_real(q->kl_sum / (double)q->prompts_done));
		json_object_set_new(o, "prompts", json_integer(q->prompts_done));
	}
	if (q->eval_skipped)
		json_object_set_new(o, "eval", json_string("skipped: the llama is too large for the CPU "
							   "evaluation inside job units"));
	return o;
}

const fn_weight *fn_qjob_result(const fn_qjob *q, size_t *n)
{
	*n = q->nout;
	return q->out;
}

char *fn_qjob_meta_json(const fn_qjob *q)
{
	char *s = malloc(128);
	if (s)
		snprintf(s, 128, "{\"method\": \"int8\", \"block\": %d, \"scale_suffix\": \"%s\"}", q->block,
			 FN_QUANT_SCALE_SUFFIX);
	return s;
}

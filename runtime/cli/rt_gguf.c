/* rt_gguf.c — GGUF import for `thaw snapshot pack` (see rt_gguf.h): name and metadata mapping,
 * the conversion plan (one output per GGUF tensor, plus a scale tensor for int8), and the
 * threaded row-range conversion. */
#include "runtime/cli/rt_gguf.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "functions/fn_quant.h"
#include "runtime/base/rt_log.h"
#include "runtime/tok/rt_tok_gguf.h"
#include "snapshot/snap_gguf.h"

#define JOB_BYTES (4u << 20)       /* output bytes per conversion job */
#define MAX_THREADS 64

typedef enum cv_kind {
	CV_KEEP,                   /* the bytes as they are (F32/F16/BF16), rows maybe permuted */
	CV_F32,                    /* decoded to F32 (norms of another type) */
	CV_BF16,                   /* decoded, rounded to BF16 */
	CV_Q8,                     /* Q8_0 -> I8 + F32 block scales, exact */
	CV_REQ8,                   /* decoded to F32, requantized to I8 with 32-element blocks */
} cv_kind;

typedef struct out_t {
	char name[128], sname[140];
	size_t src;                /* index of the GGUF tensor */
	const uint8_t *sdata;
	cv_kind kind;
	uint32_t heads;            /* 0, or undo the Q/K permutation with this many heads */
	uint32_t ndim;
	uint64_t shape[2];         /* HF shape: [rows, k] or [k] */
	uint64_t rows, k, src_row_bytes;
	snap_dtype dt;
	uint8_t *buf;              /* converted bytes (owned), NULL when KEEP without permutation */
	uint64_t nbytes;
	float *scales;             /* CV_Q8 / CV_REQ8: rows * k / 32 */
	uint64_t scale_shape[2];
} out_t;

typedef struct job {
	size_t out;
	uint64_t r0, r1;
} job;

struct rt_gguf {
	snap_gguf *g;
	out_t *o;
	size_t n_o;
	snap_src_tensor *st;
	snap_pack_source src;
	json_t *config;
	char *config_text, *sources_text, *prov_text, *quant_text;
	json_t *tok, *tok_cfg;
	int tok_rc;
	char tok_why[300];
	int64_t vocab;
	long rope_freqs;           /* index of a rope_freqs.weight that is not all ones, or -1 */
	double convert_s;
	/* conversion */
	job *jobs;
	size_t n_jobs;
	atomic_size_t next;
	atomic_int failed;
	uint64_t file_xxh3;
};

void rt_gguf_free(rt_gguf *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n_o; i++) {
		free(r->o[i].buf);
		free(r->o[i].scales);
	}
	free(r->o);
	free(r->st);
	free(r->jobs);
	json_decref(r->config);
	json_decref(r->tok);
	json_decref(r->tok_cfg);
	free(r->config_text);
	free(r->sources_text);
	free(r->prov_text);
	free(r->quant_text);
	snap_gguf_close(r->g);
	free(r);
}

const snap_pack_source *rt_gguf_source(const rt_gguf *r) { return &r->src; }
int64_t rt_gguf_vocab(const rt_gguf *r) { return r->vocab; }
json_t *rt_gguf_config(const rt_gguf *r) { return r->config; }
const char *rt_gguf_quantization(const rt_gguf *r) { return r->quant_text; }
double rt_gguf_convert_s(const rt_gguf *r) { return r->convert_s; }

int rt_gguf_tokenizer(const rt_gguf *r, json_t **tok, json_t **cfg, const char **why)
{
	*tok = r->tok;
	*cfg = r->tok_cfg;
	*why = r->tok_why;
	return r->tok_rc;
}

/* ---- conversion */

/* row r of the HF matrix is row src_row(r) of the GGUF one: llama.cpp's converter reshapes the
 * rows of q_proj / k_proj as [heads, 2, hd/2] and swaps the last two axes, so HF row
 * h*hd + half*(hd/2) + i is GGUF row h*hd + 2*i + half */
static uint64_t src_row(const out_t *o, uint64_t r)
{
	if (!o->heads)
		return r;
	uint64_t hd = o->rows / o->heads, h = r / hd, j = r % hd, half = j / (hd / 2), i = j % (hd / 2);
	return h * hd + 2 * i + half;
}

static int convert_rows(rt_gguf *R, const job *jb, float *tmp)
{
	out_t *o = &R->o[jb->out];
	const snap_gguf_tensor *t = &R->g->t[o->src];
	size_t es = snap_dtype_size(o->dt);
	for (uint64_t r = jb->r0; r < jb->r1; r++) {
		const uint8_t *s = o->sdata + src_row(o, r) * o->src_row_bytes;
		switch (o->kind) {
		case CV_KEEP:
			memcpy(o->buf + r * o->k * es, s, o->k * es);
			break;
		case CV_F32:
			if (snap_gguf_to_f32(t->type, s, o->k, (float *)(o->buf + r * o->k * 4)))
				return -EINVAL;
			break;
		case CV_BF16: {
			uint16_t *d = (uint16_t *)(o->buf + r * o->k * 2);
			if (snap_gguf_to_f32(t->type, s, o->k, tmp))
				return -EINVAL;
			for (uint64_t j = 0; j < o->k; j++)
				d[j] = snap_f32_to_bf16(tmp[j]);
			break;
		}
		case CV_Q8: {
			int8_t *q = (int8_t *)o->buf + r * o->k;
			float *sc = o->scales + r * (o->k / 32);
			for (uint64_t b = 0; b < o->k / 32; b++) {
				const uint8_t *blk = s + b * 34;
				sc[b] = snap_f16_to_f32((uint16_t)(blk[0] | blk[1] << 8));
				memcpy(q + b * 32, blk + 2, 32);
			}
			break;
		}
		case CV_REQ8:
			if (snap_gguf_to_f32(t->type, s, o->k, tmp) ||
			    fn_quant_int8("F32", tmp, 1, (int64_t)o->k, 32, (int8_t *)o->buf + r * o->k,
					  o->scales + r * (o->k / 32)))
				return -EINVAL;
			break;
		}
	}
	return 0;
}

typedef struct worker {
	rt_gguf *R;
	uint64_t kmax;
} worker;

static void *work(void *arg)
{
	worker *w = arg;
	rt_gguf *R = w->R;
	float *tmp = malloc((w->kmax ? w->kmax : 1) * sizeof *tmp);
	if (!tmp) {
		atomic_store(&R->failed, -ENOMEM);
		return NULL;
	}
	for (;;) {
		size_t i = atomic_fetch_add(&R->next, 1);
		if (i >= R->n_jobs || atomic_load(&R->failed))
			break;
		int rc = convert_rows(R, &R->jobs[i], tmp);
		if (rc)
			atomic_store(&R->failed, rc);
	}
	free(tmp);
	return NULL;
}

static void *hash_file(void *arg)
{
	rt_gguf *R = arg;
	R->file_xxh3 = XXH3_64bits(R->g->buf, R->g->size);
	return NULL;
}

/* ---- mapping */

static const struct {
	const char *gguf, *hf;
	int matrix;                /* 1: a projection (int8-eligible); 0: a vector; 2: the embedding */
} names[] = {
	{"attn_q", "self_attn.q_proj", 1}, {"attn_k", "self_attn.k_proj", 1},
	{"attn_v", "self_attn.v_proj", 1}, {"attn_output", "self_attn.o_proj", 1},
	{"ffn_gate", "mlp.gate_proj", 1},  {"ffn_up", "mlp.up_proj", 1},
	{"ffn_down", "mlp.down_proj", 1},  {"attn_norm", "input_layernorm", 0},
	{"ffn_norm", "post_attention_layernorm", 0},
};

static int meta_uint(const snap_gguf *g, const char *key, int required, uint64_t def, uint64_t *v,
		     char *err, size_t errlen)
{
	int rc = snap_gguf_get_uint(g, key, v);
	if (rc == -ENOENT && !required) {
		*v = def;
		return 0;
	}
	if (rc || *v == 0 || *v > (1ull << 32))
		return rt_errf(err, errlen, -EBADMSG, "GGUF %s: %s", key,
			       rc == -ENOENT ? "missing (the llama mapping needs it)" : "not a positive integer");
	return 0;
}

/* a rope_freqs tensor of ones changes nothing (others: llama3_scaling) */
static int rope_freqs_ok(const snap_gguf *g, size_t i)
{
	const snap_gguf_tensor *t = &g->t[i];
	if (t->type != SNAP_GGML_F32)
		return 0;
	const uint8_t *d = snap_gguf_data(g, i);
	for (uint64_t j = 0; j < t->nelem; j++) {
		float f;
		memcpy(&f, d + 4 * j, 4);
		if (f != 1.0f)
			return 0;
	}
	return 1;
}

/* llama.cpp's converter stores Llama 3.x's rope_scaling (rope_type llama3) only as the
 * per-frequency divisors of rope_freqs.weight, computed from factor, low_freq_factor,
 * high_freq_factor and original_max_position_embeddings; *sc gets the parameters that give
 * back exactly these divisors (factor: the largest; the others: Llama 3.x's 1, 4 and 8192, or
 * the file's llama.rope.scaling.original_context_length), NULL when none do. */
static json_t *llama3_scaling(const snap_gguf *g, size_t idx, double theta, uint64_t hd)
{
	const snap_gguf_tensor *t = &g->t[idx];
	if (t->type != SNAP_GGML_F32 || t->nelem != hd / 2 || hd < 2)
		return NULL;
	const uint8_t *d = snap_gguf_data(g, idx);
	float *fac = malloc(t->nelem * sizeof *fac), factor = 0;
	if (!fac)
		return NULL;
	for (uint64_t j = 0; j < t->nelem; j++) {
		memcpy(&fac[j], d + 4 * j, 4);
		factor = fac[j] > factor ? fac[j] : factor;
	}
	uint64_t origs[2] = {8192, 0};
	snap_gguf_get_uint(g, "llama.rope.scaling.original_context_length", &origs[1]);
	json_t *out = NULL;
	for (int c = 0; c < 2 && !out; c++) {
		double orig = (double)origs[c], lo = 1.0, hi = 4.0;
		if (orig <= 0 || !(factor >= 1))
			continue;
		int ok = 1;
		for (uint64_t j = 0; j < t->nelem && ok; j++) {
			float freq = (float)(1.0 / pow(theta, (double)(2 * j) / (double)hd));
			double wl = 2 * M_PI / freq, want;
			if (wl < orig / hi)
				want = 1;
			else if (wl > orig / lo)
				want = factor;
			else {
				double sm = (orig / wl - lo) / (hi - lo);
				want = 1 / ((1 - sm) / factor + sm);
			}
			ok = fabs(want - fac[j]) <= 1e-4 * want;
		}
		if (ok)
			out = json_pack("{s:s,s:f,s:f,s:f,s:I}", "rope_type", "llama3", "factor", (double)factor,
					"low_freq_factor", lo, "high_freq_factor", hi, "original_max_position_embeddings",
					(json_int_t)orig);
	}
	free(fac);
	return out;
}

static int plan(rt_gguf *R, const rt_gguf_opts *op, uint64_t L, uint64_t H, uint64_t KVH, char *err,
		size_t errlen)
{
	snap_gguf *g = R->g;
	R->o = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *R->o);
	if (!R->o)
		return rt_errf(err, errlen, -ENOMEM, "out of memory");
	for (size_t i = 0; i < g->n_tensors; i++) {
		const snap_gguf_tensor *t = &g->t[i];
		out_t *o = &R->o[R->n_o];
		int matrix = -1;
		unsigned long long layer;
		char part[64], tail[16];
		int used = 0;
		if (!strcmp(t->name, "token_embd.weight")) {
			snprintf(o->name, sizeof o->name, "model.embed_tokens.weight");
			matrix = 2;
		} else if (!strcmp(t->name, "output.weight")) {
			snprintf(o->name, sizeof o->name, "lm_head.weight");
			matrix = 1;
		} else if (!strcmp(t->name, "output_norm.weight")) {
			snprintf(o->name, sizeof o->name, "model.norm.weight");
			matrix = 0;
		} else if (!strcmp(t->name, "rope_freqs.weight")) {
			if (!rope_freqs_ok(g, i))
				R->rope_freqs = (long)i;
			continue;
		} else if (sscanf(t->name, "blk.%llu.%63[a-z_].%15[a-z]%n", &layer, part, tail, &used) == 3 &&
			   !t->name[used] && !strcmp(tail, "weight")) {
			for (size_t k = 0; k < sizeof names / sizeof *names; k++)
				if (!strcmp(part, names[k].gguf)) {
					if (layer >= L)
						return rt_errf(err, errlen, -EBADMSG, "GGUF tensor %s: layer %llu, but llama.block_count is %llu",
							       t->name, layer, (unsigned long long)L);
					snprintf(o->name, sizeof o->name, "model.layers.%llu.%s.weight", layer, names[k].hf);
					matrix = names[k].matrix;
					if (!strcmp(part, "attn_q"))
						o->heads = (uint32_t)H;
					else if (!strcmp(part, "attn_k"))
						o->heads = (uint32_t)KVH;
				}
		}
		if (matrix < 0)
			return rt_errf(err, errlen, -ENOTSUP, "GGUF tensor %s has no counterpart in the HF llama layout "
				       "(biases, experts and other architectures' tensors are not mapped)", t->name);
		if ((matrix == 0 && t->ndim != 1) || (matrix && (t->ndim != 2)))
			return rt_errf(err, errlen, -EBADMSG, "GGUF tensor %s: %u dimensions, the llama layout needs %d",
				       t->name, t->ndim, matrix ? 2 : 1);
		o->src = i;
		o->sdata = snap_gguf_data(g, i);
		o->k = t->ne[0];
		o->rows = t->ndim == 2 ? t->ne[1] : 1;
		o->ndim = t->ndim;
		if (t->ndim == 2) {
			o->shape[0] = o->rows;
			o->shape[1] = o->k;
		} else {
			o->shape[0] = o->k;
		}
		uint32_t blk, bytes;
		snap_gguf_type_block(t->type, &blk, &bytes);
		o->src_row_bytes = o->k / blk * bytes;
		if (o->heads && (o->rows % o->heads || (o->rows / o->heads) % 2))
			return rt_errf(err, errlen, -EBADMSG, "GGUF tensor %s: %llu rows do not split into %u heads of an even size",
				       t->name, (unsigned long long)o->rows, o->heads);
		int is_float = t->type == SNAP_GGML_F32 || t->type == SNAP_GGML_F16 || t->type == SNAP_GGML_BF16;
		if (!snap_gguf_can_decode(t->type))
			return rt_errf(err, errlen, -ENOTSUP, "GGUF tensor %s has type %s, which thaw does not convert "
				       "(F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K)", t->name, snap_gguf_type_name(t->type));
		if (matrix == 1 && (op->int8 || t->type == SNAP_GGML_Q8_0))
			o->kind = t->type == SNAP_GGML_Q8_0 ? CV_Q8 : CV_REQ8;
		else if (is_float)
			o->kind = CV_KEEP;
		else
			o->kind = matrix == 0 ? CV_F32 : CV_BF16;
		o->dt = o->kind == CV_KEEP ? (t->type == SNAP_GGML_F32 ? SNAP_DTYPE_F32 : t->type == SNAP_GGML_F16 ?
					      SNAP_DTYPE_F16 : SNAP_DTYPE_BF16) :
			o->kind == CV_F32 ? SNAP_DTYPE_F32 : o->kind == CV_BF16 ? SNAP_DTYPE_BF16 : SNAP_DTYPE_I8;
		o->nbytes = o->rows * o->k * snap_dtype_size(o->dt);
		if (o->kind == CV_Q8 || o->kind == CV_REQ8) {
			if (o->k % 32)
				return rt_errf(err, errlen, -EBADMSG, "GGUF tensor %s: rows of %llu are not 32-element blocks",
					       t->name, (unsigned long long)o->k);
			snprintf(o->sname, sizeof o->sname, "%s%s", o->name, FN_QUANT_SCALE_SUFFIX);
			o->scale_shape[0] = o->rows;
			o->scale_shape[1] = o->k / 32;
		}
		R->n_o++;
	}
	/* the llama kind runs gate and up as one product: an int8 gate with a float up (a file
	 * that mixes Q8_0 with other types) takes the float form for both */
	for (size_t i = 0; i < R->n_o; i++) {
		out_t *a = &R->o[i];
		const char *p = strstr(a->name, ".mlp.gate_proj.weight");
		if (!p)
			continue;
		for (size_t j = 0; j < R->n_o; j++) {
			out_t *b = &R->o[j];
			const char *q = strstr(b->name, ".mlp.up_proj.weight");
			if (!q || q - b->name != p - a->name || strncmp(a->name, b->name, (size_t)(p - a->name)))
				continue;
			if (a->dt == b->dt)
				break;
			out_t *fix[2] = {a, b};
			for (int k = 0; k < 2; k++)
				if (fix[k]->dt == SNAP_DTYPE_I8) {
					fix[k]->kind = CV_BF16;
					fix[k]->dt = SNAP_DTYPE_BF16;
					fix[k]->nbytes = fix[k]->rows * fix[k]->k * 2;
					fix[k]->sname[0] = 0;
					fix[k]->scale_shape[0] = fix[k]->scale_shape[1] = 0;
				}
			break;
		}
	}
	return 0;
}

static int run_conversion(rt_gguf *R, int threads, char *err, size_t errlen)
{
	uint64_t kmax = 0;
	size_t nj = 0;
	for (size_t i = 0; i < R->n_o; i++) {
		out_t *o = &R->o[i];
		if (o->kind == CV_KEEP && !o->heads)
			continue;   /* packed straight from the file */
		uint64_t row_bytes = o->nbytes / o->rows;
		uint64_t per = JOB_BYTES / (row_bytes ? row_bytes : 1);
		nj += (size_t)((o->rows + (per ? per : 1) - 1) / (per ? per : 1));
		if (o->k > kmax)
			kmax = o->k;
	}
	R->jobs = calloc(nj ? nj : 1, sizeof *R->jobs);
	if (!R->jobs)
		return rt_errf(err, errlen, -ENOMEM, "out of memory");
	for (size_t i = 0; i < R->n_o; i++) {
		out_t *o = &R->o[i];
		if (o->kind == CV_KEEP && !o->heads)
			continue;
		o->buf = malloc(o->nbytes ? o->nbytes : 1);
		if (o->scale_shape[0])
			o->scales = malloc(o->scale_shape[0] * o->scale_shape[1] * sizeof *o->scales);
		if (!o->buf || (o->scale_shape[0] && !o->scales))
			return rt_errf(err, errlen, -ENOMEM, "out of memory for %s (%llu bytes)", o->name,
				       (unsigned long long)o->nbytes);
		uint64_t row_bytes = o->nbytes / o->rows, per = JOB_BYTES / (row_bytes ? row_bytes : 1);
		if (!per)
			per = 1;
		for (uint64_t r = 0; r < o->rows; r += per)
			R->jobs[R->n_jobs++] = (job){i, r, r + per < o->rows ? r + per : o->rows};
	}
	if (threads <= 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		threads = n > 0 ? (int)n : 1;
	}
	if (threads > MAX_THREADS)
		threads = MAX_THREADS;
	pthread_t th[MAX_THREADS + 1];
	worker w = {R, kmax};
	int started = 0, hashing = pthread_create(&th[MAX_THREADS], NULL, hash_file, R) == 0;
	for (int i = 0; i < threads && (size_t)i < (R->n_jobs ? R->n_jobs : 0); i++)
		if (pthread_create(&th[started], NULL, work, &w) == 0)
			started++;
	if (R->n_jobs && !started)
		work(&w);
	for (int i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	if (hashing)
		pthread_join(th[MAX_THREADS], NULL);
	else
		hash_file(R);
	int rc = atomic_load(&R->failed);
	if (rc)
		return rt_errf(err, errlen, rc, "GGUF conversion failed: %s", strerror(-rc));
	return 0;
}

static const char *base_name(const char *p)
{
	const char *s = strrchr(p, '/');
	return s ? s + 1 : p;
}

int rt_gguf_import(const char *path, const rt_gguf_opts *op, rt_gguf **out, char *err, size_t errlen)
{
	rt_gguf_opts def = {0};
	struct timespec t0, t1;
	int rc;
	char hx[17];
	if (!op)
		op = &def;
	*out = NULL;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	rt_gguf *R = calloc(1, sizeof *R);
	if (!R)
		return rt_errf(err, errlen, -ENOMEM, "out of memory");
	R->rope_freqs = -1;
	if ((rc = snap_gguf_open(path, &R->g, err, errlen)))
		goto fail;
	snap_gguf *g = R->g;
	snap_gguf_str arch;
	if (snap_gguf_get_str(g, "general.architecture", &arch)) {
		rc = rt_errf(err, errlen, -EBADMSG, "%s: GGUF general.architecture is missing", path);
		goto fail;
	}
	if (arch.len != 5 || memcmp(arch.s, "llama", 5)) {
		rc = rt_errf(err, errlen, -ENOTSUP, "%s: GGUF architecture \"%.*s\" is not mapped (only llama)", path,
			     (int)(arch.len > 40 ? 40 : arch.len), arch.s);
		goto fail;
	}
	uint64_t D, F, L, H, KVH, ctx, hd, rope_dim;
	double eps, theta = 10000.0;
	if ((rc = meta_uint(g, "llama.embedding_length", 1, 0, &D, err, errlen)) ||
	    (rc = meta_uint(g, "llama.feed_forward_length", 1, 0, &F, err, errlen)) ||
	    (rc = meta_uint(g, "llama.block_count", 1, 0, &L, err, errlen)) ||
	    (rc = meta_uint(g, "llama.attention.head_count", 1, 0, &H, err, errlen)) ||
	    (rc = meta_uint(g, "llama.attention.head_count_kv", 0, H, &KVH, err, errlen)) ||
	    (rc = meta_uint(g, "llama.context_length", 0, 2048, &ctx, err, errlen)) ||
	    (rc = meta_uint(g, "llama.attention.key_length", 0, D / H ? D / H : 1, &hd, err, errlen)) ||
	    (rc = meta_uint(g, "llama.rope.dimension_count", 0, hd, &rope_dim, err, errlen)))
		goto fail;
	if (rope_dim != hd) {
		rc = rt_errf(err, errlen, -ENOTSUP, "GGUF llama.rope.dimension_count %llu differs from the head size %llu "
			     "(partial rotary embeddings are not part of the llama layout)",
			     (unsigned long long)rope_dim, (unsigned long long)hd);
		goto fail;
	}
	if (snap_gguf_get_float(g, "llama.attention.layer_norm_rms_epsilon", &eps) || !(eps > 0)) {
		rc = rt_errf(err, errlen, -EBADMSG, "GGUF llama.attention.layer_norm_rms_epsilon: missing or not positive");
		goto fail;
	}
	rc = snap_gguf_get_float(g, "llama.rope.freq_base", &theta);
	if ((rc && rc != -ENOENT) || !(theta > 0)) {
		rc = rt_errf(err, errlen, -EBADMSG, "GGUF llama.rope.freq_base is not a positive number");
		goto fail;
	}
	if ((rc = plan(R, op, L, H, KVH, err, errlen)))
		goto fail;
	/* every tensor the llama layout needs is there (else the kind would refuse it at load) */
	for (uint64_t l = 0; l <= L; l++) {
		static const char *const per_layer[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
			"self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj", "input_layernorm",
			"post_attention_layernorm"};
		for (size_t k = 0; k < (l < L ? 9u : 1u); k++) {
			char want[128];
			if (l < L)
				snprintf(want, sizeof want, "model.layers.%llu.%s.weight", (unsigned long long)l, per_layer[k]);
			else
				snprintf(want, sizeof want, "model.norm.weight");
			size_t j = 0;
			while (j < R->n_o && strcmp(R->o[j].name, want))
				j++;
			if (j == R->n_o) {
				rc = rt_errf(err, errlen, -EBADMSG, "%s: the GGUF file has no tensor for %s (llama.block_count is %llu)",
					     path, want, (unsigned long long)L);
				goto fail;
			}
		}
	}
	const out_t *emb = NULL, *lm = NULL;
	for (size_t i = 0; i < R->n_o; i++) {
		if (!strcmp(R->o[i].name, "model.embed_tokens.weight"))
			emb = &R->o[i];
		if (!strcmp(R->o[i].name, "lm_head.weight"))
			lm = &R->o[i];
	}
	if (!emb || emb->k != D) {
		rc = rt_errf(err, errlen, -EBADMSG, "GGUF token_embd.weight: %s", emb ? "its rows are not embedding_length long" : "missing");
		goto fail;
	}
	R->vocab = (int64_t)emb->rows;
	if (lm && (int64_t)lm->rows < R->vocab)
		R->vocab = (int64_t)lm->rows;

	/* config.json */
	json_t *c = json_object();
	R->config = c;
	if (!c) {
		rc = rt_errf(err, errlen, -ENOMEM, "out of memory");
		goto fail;
	}
	json_object_set_new(c, "architectures", json_pack("[s]", "LlamaForCausalLM"));
	json_object_set_new(c, "model_type", json_string("llama"));
	json_object_set_new(c, "hidden_size", json_integer((json_int_t)D));
	json_object_set_new(c, "intermediate_size", json_integer((json_int_t)F));
	json_object_set_new(c, "num_hidden_layers", json_integer((json_int_t)L));
	json_object_set_new(c, "num_attention_heads", json_integer((json_int_t)H));
	json_object_set_new(c, "num_key_value_heads", json_integer((json_int_t)KVH));
	json_object_set_new(c, "head_dim", json_integer((json_int_t)hd));
	json_object_set_new(c, "max_position_embeddings", json_integer((json_int_t)ctx));
	json_object_set_new(c, "rms_norm_eps", json_real((double)(float)eps));
	json_object_set_new(c, "rope_theta", json_real((double)(float)theta));
	json_object_set_new(c, "vocab_size", json_integer((json_int_t)emb->rows));
	json_object_set_new(c, "tie_word_embeddings", json_boolean(lm == NULL));
	json_object_set_new(c, "hidden_act", json_string("silu"));
	json_object_set_new(c, "attention_bias", json_false());
	json_object_set_new(c, "mlp_bias", json_false());
	static const char *const idk[][2] = {{"tokenizer.ggml.bos_token_id", "bos_token_id"},
		{"tokenizer.ggml.eos_token_id", "eos_token_id"}, {"tokenizer.ggml.padding_token_id", "pad_token_id"}};
	for (int k = 0; k < 3; k++) {
		uint64_t v;
		if (snap_gguf_get_uint(g, idk[k][0], &v) == 0)
			json_object_set_new(c, idk[k][1], json_integer((json_int_t)v));
	}
	snap_gguf_str rs;
	if (R->rope_freqs >= 0) {
		json_t *sc = llama3_scaling(g, (size_t)R->rope_freqs, theta, hd);
		if (!sc) {
			rc = rt_errf(err, errlen, -ENOTSUP, "GGUF tensor rope_freqs.weight: RoPE frequency factors that "
				     "are not llama3-style rope scaling (factor, low/high_freq_factor 1/4, original "
				     "context 8192) have no config.json equivalent");
			goto fail;
		}
		json_object_set_new(c, "rope_scaling", sc);
	} else if (snap_gguf_get_str(g, "llama.rope.scaling.type", &rs) == 0 && !(rs.len == 4 && !memcmp(rs.s, "none", 4))) {
		double f = 1;
		uint64_t orig = 0;
		snap_gguf_get_float(g, "llama.rope.scaling.factor", &f);
		json_t *sc = json_pack("{s:s%,s:f}", "rope_type", rs.s, (size_t)rs.len, "factor", f);
		if (sc && snap_gguf_get_uint(g, "llama.rope.scaling.original_context_length", &orig) == 0)
			json_object_set_new(sc, "original_max_position_embeddings", json_integer((json_int_t)orig));
		if (!sc) {
			rc = rt_errf(err, errlen, -EBADMSG, "GGUF llama.rope.scaling.type is not valid UTF-8");
			goto fail;
		}
		json_object_set_new(c, "rope_scaling", sc);
	}
	R->config_text = json_dumps(c, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));

	/* tokenizer (its absence or an unsupported type is not an error here) */
	R->tok_rc = rt_tok_gguf_convert(g, &R->tok, &R->tok_cfg, R->tok_why, sizeof R->tok_why);
	if (R->tok_rc == -ENOMEM) {
		rc = rt_errf(err, errlen, -ENOMEM, "%s", R->tok_why);
		goto fail;
	}

	if ((rc = run_conversion(R, op->threads, err, errlen)))
		goto fail;

	/* the source for the packer */
	size_t nst = 0, nq = 0, counts[5] = {0};
	R->st = calloc(2 * R->n_o + 1, sizeof *R->st);
	if (!R->st) {
		rc = rt_errf(err, errlen, -ENOMEM, "out of memory");
		goto fail;
	}
	uint64_t src_bytes = 0;
	for (size_t i = 0; i < R->n_o; i++) {
		out_t *o = &R->o[i];
		src_bytes += g->t[o->src].nbytes;
		counts[o->kind]++;
		R->st[nst++] = (snap_src_tensor){o->name, o->dt, o->ndim, o->shape, o->buf ? o->buf : o->sdata, o->nbytes};
		if (o->scales) {
			R->st[nst++] = (snap_src_tensor){o->sname, SNAP_DTYPE_F32, 2, o->scale_shape, o->scales,
							 o->scale_shape[0] * o->scale_shape[1] * 4};
			nq++;
		}
	}
	json_t *types = json_object();
	for (size_t i = 0; i < g->n_tensors; i++) {
		const char *tn = snap_gguf_type_name(g->t[i].type);
		json_t *v = json_object_get(types, tn);
		json_object_set_new(types, tn, json_integer(v ? json_integer_value(v) + 1 : 1));
	}
	snap_gguf_str gname = {"", 0};
	snap_gguf_get_str(g, "general.name", &gname);
	json_t *prov = json_pack("{s:{s:i,s:s%,s:o,s:{s:I,s:I,s:I,s:I,s:I}}}", "gguf", "version", (int)g->version,
				 "name", gname.s ? gname.s : "", (size_t)gname.len, "tensor_types", types,
				 "converted", "kept", (json_int_t)counts[CV_KEEP], "f32", (json_int_t)counts[CV_F32],
				 "bf16", (json_int_t)counts[CV_BF16], "int8_from_q8_0", (json_int_t)counts[CV_Q8],
				 "int8_requantized", (json_int_t)counts[CV_REQ8]);
	if (!prov)
		prov = json_pack("{s:{s:i}}", "gguf", "version", (int)g->version);   /* a name that is not UTF-8 */
	json_t *srcs = json_pack("[{s:s,s:I,s:s}]", "file", base_name(path), "bytes", (json_int_t)g->size, "xxh3",
				 (snprintf(hx, sizeof hx, "%016" PRIx64, R->file_xxh3), hx));
	R->prov_text = prov ? json_dumps(prov, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	R->sources_text = srcs ? json_dumps(srcs, JSON_COMPACT) : NULL;
	json_decref(prov);
	json_decref(srcs);
	if (nq) {
		char q[200];
		snprintf(q, sizeof q, "{\"method\": \"int8\", \"block\": 32, \"scale_suffix\": \"%s\", \"source\": \"gguf\"}",
			 FN_QUANT_SCALE_SUFFIX);
		R->quant_text = strdup(q);
	}
	if (!R->config_text || !R->prov_text || !R->sources_text || (nq && !R->quant_text)) {
		rc = rt_errf(err, errlen, -ENOMEM, "out of memory");
		goto fail;
	}
	R->src = (snap_pack_source){.n = nst, .t = R->st, .config = R->config_text, .sources_json = R->sources_text,
				    .provenance_json = R->prov_text, .n_src = g->n_tensors, .src_bytes = src_bytes};
	clock_gettime(CLOCK_MONOTONIC, &t1);
	R->convert_s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
	*out = R;
	return 0;
fail:
	rt_gguf_free(R);
	return rc;
}

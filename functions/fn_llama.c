/* fn_llama.c — the `llama` kind: the LLaMA decoder as HF transformers' LlamaForCausalLM
 * computes it (RMSNorm, rotary embeddings with rope_theta, grouped-query causal attention
 * with a KV cache, SiLU-gated MLP, untied or tied lm_head), read from HF weight names and
 * config.json. Weights F32/F16/BF16, or int8 weight-only for the projections (embeddings and
 * norms stay in their source dtype). Activations and the KV cache are F32.
 *
 * Invoke {"tokens": [...], "max_tokens": N, "temperature": 0, "top_p": 1, "top_k": 0,
 * "seed": S, "stop": [ids], "logprobs": false} -> {"tokens": [generated], "finish_reason":
 * "length"|"stop", "logprobs": [...] (when asked), "usage": {...}}. temperature 0 (or below
 * 1e-5) = greedy; prompt + max_tokens must fit the context (413 otherwise).
 * Requests of a batch run one after another. On a GPU the decode step (one token through
 * every layer up to the logits) is captured once in a CUDA graph and replayed; the token and
 * position it reads live in device memory. Greedy decoding is fed on the device: the step's
 * last op (kern_argmax_feed) writes its token where the next step reads it and into host
 * memory (hist), so the next step is queued before the host has seen this one's token — the
 * host checks stops and streams one token behind (a step run past a stop is discarded). */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "pool/pool_base.h"
#include "functions/fn_kinds.h"
#include "functions/fn_llama.h"

#define LLAMA_MAX_LAYERS 256
#define LLAMA_MAX_STOP 64
#define LLAMA_DEFAULT_CTX_CAP 4096
#define LLAMA_MAX_CTX (1 << 30)   /* positions are int32 on every backend */
#define LLAMA_MAX_TEMP 100.0
#define LLAMA_MIN_TEMP 1e-5       /* below: greedy (vLLM's sampling epsilon) */
#define LLAMA_MAX_TOP_K (1 << 30)

typedef struct llama_layer {
	float *ln1, *ln2;
	kern_mat q, k, v, o, gate, up, down;
	void *owned[7];
} llama_layer;

typedef struct llama {
	kern_dev *dev;
	int64_t D, F, L, H, KVH, hd, V, cap;
	float eps, theta;
	int tied;
	int eos[8], n_eos;
	kern_dtype emb_dt;
	const void *emb;
	kern_mat lm_head;
	void *lm_owned;
	float *norm;
	llama_layer *lay;
	float *kvcache;            /* L x 2 x cap x kvdim */
	/* activations for up to cap_m rows */
	int64_t cap_m;
	float *x, *h, *q, *k, *v, *att, *g;
	int32_t *tok, *pos;
	float *logits, *lp, *urand;
	int32_t *out;
	int32_t *step;             /* [token, position] the decode step reads */
	int32_t *hist;             /* host memory (kern_alloc_host): token fed at each position */
	float *lphist;             /* ... and its log-probability */
	int feed_depth;            /* fed decode steps queued ahead of the host (0: not fed) */
	kern_graph *graph, *graph_feed;
	double prefill_s, decode_s;
	int steps, used_graph;
} llama;

static void free_acts(llama *s)
{
	float **f[] = {&s->x, &s->h, &s->q, &s->k, &s->v, &s->att, &s->g};
	for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
		kern_free(s->dev, *f[i]);
		*f[i] = NULL;
	}
	kern_free(s->dev, s->tok);
	kern_free(s->dev, s->pos);
	s->tok = s->pos = NULL;
	s->cap_m = 0;
	kern_graph_free(s->dev, s->graph);
	kern_graph_free(s->dev, s->graph_feed);
	s->graph = s->graph_feed = NULL;
}

static void llama_release(void *state)
{
	llama *s = state;
	if (!s)
		return;
	free_acts(s);
	if (s->lay)
		for (int64_t i = 0; i < s->L; i++) {
			kern_free(s->dev, s->lay[i].ln1);
			kern_free(s->dev, s->lay[i].ln2);
			for (int j = 0; j < 7; j++)
				kern_free(s->dev, s->lay[i].owned[j]);
		}
	free(s->lay);
	kern_free(s->dev, s->lm_owned);
	kern_free(s->dev, s->norm);
	kern_free(s->dev, s->kvcache);
	kern_free(s->dev, s->logits);
	kern_free(s->dev, s->lp);
	kern_free(s->dev, s->urand);
	kern_free(s->dev, s->out);
	kern_free(s->dev, s->step);
	kern_free_host(s->dev, s->hist);
	kern_free_host(s->dev, s->lphist);
	free(s);
}

static int ensure_m(llama *s, int64_t m)
{
	if (m <= s->cap_m)
		return 0;
	free_acts(s);
	int64_t qd = s->H * s->hd, kvd = s->KVH * s->hd;
	size_t r = (size_t)m * 4;
	s->x = kern_alloc(s->dev, r * s->D);
	s->h = kern_alloc(s->dev, r * s->D);
	s->q = kern_alloc(s->dev, r * qd);
	s->k = kern_alloc(s->dev, r * kvd);
	s->v = kern_alloc(s->dev, r * kvd);
	s->att = kern_alloc(s->dev, r * qd);
	s->g = kern_alloc(s->dev, r * s->F);
	s->tok = kern_alloc(s->dev, r);
	s->pos = kern_alloc(s->dev, r);
	if (!s->x || !s->h || !s->q || !s->k || !s->v || !s->att || !s->g || !s->tok ||
	    !s->pos) {
		free_acts(s);
		return -ENOMEM;
	}
	s->cap_m = m;
	return 0;
}

static int cfg_num(const json_t *c, const char *key, double def, double *out)
{
	const json_t *v = json_object_get(c, key);
	if (!v || json_is_null(v)) {
		*out = def;
		return def == def ? 0 : -1;   /* NaN default = required */
	}
	if (!json_is_number(v))
		return -1;
	*out = json_number_value(v);
	return 0;
}

static int load_mat(llama *s, const fn_load_args *a, const char *name, int64_t n, int64_t k,
		    kern_mat *m, void **owned, fn_error *err)
{
	int rc = fn_mat_from_weight(a->dev, a->weights, a->n_weights, name, m, owned, err);
	if (rc < 0)
		return rc;
	if (m->n != n || m->k != k)
		return fn_err(err, 422, "weight %s: shape [%lld, %lld], config says [%lld, %lld]", name,
			      (long long)m->n, (long long)m->k, (long long)n, (long long)k);
	return 0;
}

static int llama_load(const fn_load_args *a, void **state, fn_error *err)
{
	const json_t *c = fn_meta_config(a->meta);
	double D, F, L, H, KVH, hd, V, eps, theta, maxpos, cap;
	char nm[256];
	int rc;
	*state = NULL;
	if (cfg_num(c, "hidden_size", NAN, &D) || cfg_num(c, "intermediate_size", NAN, &F) ||
	    cfg_num(c, "num_hidden_layers", NAN, &L) || cfg_num(c, "num_attention_heads", NAN, &H) ||
	    cfg_num(c, "vocab_size", NAN, &V))
		return fn_err(err, 422, "config needs hidden_size, intermediate_size, "
			      "num_hidden_layers, num_attention_heads and vocab_size");
	if (cfg_num(c, "num_key_value_heads", H, &KVH) || cfg_num(c, "head_dim", D / H, &hd) ||
	    cfg_num(c, "rms_norm_eps", 1e-6, &eps) || cfg_num(c, "max_position_embeddings", 2048, &maxpos))
		return fn_err(err, 422, "config: a number is not a number");
	const json_t *rp = json_object_get(c, "rope_parameters");
	if (!json_is_object(rp))
		rp = json_object_get(c, "rope_scaling");
	if (cfg_num(c, "rope_theta", 10000.0, &theta) ||
	    (json_is_object(rp) && cfg_num(rp, "rope_theta", theta, &theta)))
		return fn_err(err, 422, "config: rope_theta is not a number");
	if (json_is_object(rp)) {
		const json_t *t = json_object_get(rp, "rope_type");
		if (!t)
			t = json_object_get(rp, "type");
		if (json_is_string(t) && strcmp(json_string_value(t), "default") != 0)
			return fn_err(err, 422, "rope type \"%s\" is not supported (only default)",
				      json_string_value(t));
	}
	if (json_is_true(json_object_get(c, "attention_bias")) ||
	    json_is_true(json_object_get(c, "mlp_bias")))
		return fn_err(err, 422, "attention_bias / mlp_bias are not supported");
	const json_t *act = json_object_get(c, "hidden_act");
	if (act && !(json_is_string(act) && strcmp(json_string_value(act), "silu") == 0))
		return fn_err(err, 422, "hidden_act must be silu");
	if (D < 1 || F < 1 || L < 1 || L > LLAMA_MAX_LAYERS || H < 1 || KVH < 1 || V < 2 ||
	    hd < 2 || (int64_t)hd % 2 || (int64_t)H % (int64_t)KVH || eps <= 0 || theta <= 0 ||
	    D != floor(D) || H != floor(H) || KVH != floor(KVH) || hd != floor(hd) || V > 1e8 ||
	    D > 1e6 || F > 1e7)
		return fn_err(err, 422, "config: inconsistent llama shape");
	cap = LLAMA_DEFAULT_CTX_CAP;
	if (cfg_num(a->meta, "max_context", cap, &cap) || !(cap >= 1))
		return fn_err(err, 422, "metadata max_context must be a positive number");
	if (maxpos >= 1 && maxpos < cap)
		cap = maxpos;
	if (cap > LLAMA_MAX_CTX)
		cap = LLAMA_MAX_CTX;
	cap = floor(cap);

	llama *s = calloc(1, sizeof *s);
	if (!s)
		return fn_err(err, 503, "out of memory");
	s->dev = a->dev;
	s->D = (int64_t)D; s->F = (int64_t)F; s->L = (int64_t)L; s->H = (int64_t)H;
	s->KVH = (int64_t)KVH; s->hd = (int64_t)hd; s->V = (int64_t)V; s->cap = (int64_t)cap;
	s->eps = (float)eps;
	s->theta = (float)theta;
	s->tied = json_is_true(json_object_get(c, "tie_word_embeddings"));
	const json_t *eos = json_object_get(c, "eos_token_id");
	if (json_is_integer(eos)) {
		s->eos[s->n_eos++] = (int)json_integer_value(eos);
	} else if (json_is_array(eos)) {
		for (size_t i = 0; i < json_array_size(eos) && s->n_eos < 8; i++)
			if (json_is_integer(json_array_get(eos, i)))
				s->eos[s->n_eos++] = (int)json_integer_value(json_array_get(eos, i));
	}
	int64_t qd = s->H * s->hd, kvd = s->KVH * s->hd;

	const fn_weight *emb = fn_weight_find(a->weights, a->n_weights, "model.embed_tokens.weight");
	if (!emb || emb->ndim != 2 || emb->shape[0] != s->V || emb->shape[1] != s->D ||
	    kern_dtype_parse(emb->dtype, &s->emb_dt) < 0 || s->emb_dt == KERN_I8 ||
	    s->emb_dt == KERN_I32) {
		rc = fn_err(err, 422, "model.embed_tokens.weight: need a [vocab_size, hidden_size] "
			    "F32/F16/BF16 matrix");
		goto fail;
	}
	s->emb = emb->data;
	s->norm = fn_vec_f32(a->dev, a->weights, a->n_weights, "model.norm.weight", s->D, err);
	if (!s->norm) {
		rc = -EINVAL;
		goto fail;
	}
	if (s->tied || !fn_weight_find(a->weights, a->n_weights, "lm_head.weight")) {
		s->lm_head = (kern_mat){s->emb_dt, s->V, s->D, s->emb, NULL, 0};
	} else {
		rc = load_mat(s, a, "lm_head.weight", s->V, s->D, &s->lm_head, &s->lm_owned, err);
		if (rc < 0)
			goto fail;
	}
	s->lay = calloc((size_t)s->L, sizeof *s->lay);
	if (!s->lay) {
		rc = fn_err(err, 503, "out of memory");
		goto fail;
	}
	for (int64_t i = 0; i < s->L; i++) {
		llama_layer *y = &s->lay[i];
		static const char *const names[7] = {"self_attn.q_proj", "self_attn.k_proj",
			"self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj",
			"mlp.down_proj"};
		kern_mat *mats[7] = {&y->q, &y->k, &y->v, &y->o, &y->gate, &y->up, &y->down};
		int64_t ns[7] = {qd, kvd, kvd, s->D, s->F, s->F, s->D};
		int64_t ks[7] = {s->D, s->D, s->D, qd, s->D, s->D, s->F};
		for (int j = 0; j < 7; j++) {
			snprintf(nm, sizeof nm, "model.layers.%lld.%s.weight", (long long)i, names[j]);
			rc = load_mat(s, a, nm, ns[j], ks[j], mats[j], &y->owned[j], err);
			if (rc < 0)
				goto fail;
		}
		snprintf(nm, sizeof nm, "model.layers.%lld.input_layernorm.weight", (long long)i);
		y->ln1 = fn_vec_f32(a->dev, a->weights, a->n_weights, nm, s->D, err);
		snprintf(nm, sizeof nm, "model.layers.%lld.post_attention_layernorm.weight",
			 (long long)i);
		y->ln2 = y->ln1 ? fn_vec_f32(a->dev, a->weights, a->n_weights, nm, s->D, err) : NULL;
		if (!y->ln1 || !y->ln2) {
			rc = -EINVAL;
			goto fail;
		}
	}
	s->kvcache = kern_alloc(s->dev, (size_t)s->L * 2 * s->cap * kvd * 4);
	s->logits = kern_alloc(s->dev, (size_t)s->V * 4);
	s->lp = kern_alloc(s->dev, 4);
	s->urand = kern_alloc(s->dev, 4);
	s->out = kern_alloc(s->dev, 4);
	s->step = kern_alloc(s->dev, 8);
	if (!s->kvcache || !s->logits || !s->lp || !s->urand || !s->out || !s->step) {
		rc = fn_err(err, 503, "out of device memory for a %lld-position KV cache",
			    (long long)s->cap);
		goto fail;
	}
	/* fed greedy decoding: steps queued ahead of the host (kern_tuning.feed_depth: 2 on a GPU,
	 * 1 on the CPU, where a step run past a stop would cost its full time; 0 = not fed) */
	s->feed_depth = kern_dev_tuning(s->dev)->feed_depth;
	s->hist = kern_alloc_host(s->dev, (size_t)s->cap * 4);
	s->lphist = kern_alloc_host(s->dev, (size_t)s->cap * 4);
	if (!s->hist || !s->lphist)
		s->feed_depth = 0;   /* no memory the device can write: decode with copies */
	*state = s;
	return 0;
fail:
	llama_release(s);
	return rc < 0 ? rc : -EINVAL;
}

#define TRY(call) do { int rc_ = (call); if (rc_ < 0) return rc_; } while (0)

/* forward runs m rows (tokens `tok`, positions `pos`, device arrays) through the model and
 * leaves the last row's logits in s->logits. */
static int forward(llama *s, int64_t m, const int32_t *tok, const int32_t *pos)
{
	kern_dev *d = s->dev;
	int64_t D = s->D, qd = s->H * s->hd, kvd = s->KVH * s->hd;
	float scale = 1.0f / sqrtf((float)s->hd);
	TRY(kern_embed(d, s->emb_dt, s->emb, s->V, D, tok, m, s->x));
	for (int64_t l = 0; l < s->L; l++) {
		llama_layer *y = &s->lay[l];
		float *kc = s->kvcache + (size_t)l * 2 * s->cap * kvd, *vc = kc + (size_t)s->cap * kvd;
		kern_mat qkv[3] = {y->q, y->k, y->v};
		float *outs[3] = {s->q, s->k, s->v};
		kern_norm n1 = {y->ln1, s->eps}, n2 = {y->ln2, s->eps};
		TRY(kern_linear_multi(d, s->x, m, 3, qkv, outs, &n1));   /* RMSNorm fused */
		TRY(kern_rope_attention_proj(d, s->q, s->k, s->v, pos, m, s->H, s->KVH, s->hd,
					     s->theta, kc, vc, s->cap, scale, s->att, &y->o, s->x));
		TRY(kern_swiglu_proj(d, s->x, m, &y->gate, &y->up, &n2, s->g, &y->down, s->x));
	}
	TRY(kern_rmsnorm(d, s->x + (m - 1) * D, s->norm, 1, D, s->eps, s->h));
	TRY(kern_linear(d, s->h, 1, &s->lm_head, NULL, KERN_ACT_NONE, s->logits));
	(void)qd;
	(void)kvd;
	return 0;
}

/* prefill writes the prompt into the cache and leaves the last logits. */
static int prefill(llama *s, const int32_t *toks, int64_t n)
{
	TRY(ensure_m(s, n));
	int32_t *p = malloc((size_t)n * 4);
	if (!p)
		return -ENOMEM;
	for (int64_t i = 0; i < n; i++)
		p[i] = (int32_t)i;
	int rc = kern_copy_h2d(s->dev, s->pos, p, (size_t)n * 4);
	free(p);
	TRY(rc);
	TRY(kern_copy_h2d(s->dev, s->tok, toks, (size_t)n * 4));
	return forward(s, n, s->tok, s->pos);
}

/* decode_step runs token step[0] at position step[1] (device memory) to s->logits and their
 * argmax, through the captured graph when the device supports it: fed (kern_argmax_feed:
 * step advanced on the device, token in s->hist / s->lphist) or not (argmax in s->out / s->lp,
 * step left for the host to write). */
static int step_ops(llama *s, int fed)
{
	TRY(forward(s, 1, s->step, s->step + 1));
	if (fed)
		return kern_argmax_feed(s->dev, s->logits, s->V, s->step, s->hist, s->lphist, s->cap);
	return kern_argmax(s->dev, s->logits, 1, s->V, s->out, s->lp);
}

static int decode_step(llama *s, int fed)
{
	kern_graph **gp = fed ? &s->graph_feed : &s->graph;
	if (kern_dev_is_cuda(s->dev) && kern_dev_tuning(s->dev)->graphs) {
		if (!*gp) {
			TRY(kern_graph_begin(s->dev));
			int rc = step_ops(s, fed);
			kern_graph *g = NULL;
			int rc2 = kern_graph_end(s->dev, &g);
			if (rc < 0 || rc2 < 0) {
				kern_graph_free(s->dev, g);
				return rc < 0 ? rc : rc2;
			}
			*gp = g;
		}
		s->used_graph = 1;
		return kern_graph_launch(s->dev, *gp);
	}
	return step_ops(s, fed);
}

static uint64_t splitmix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

typedef struct gen_req {
	int32_t *tokens;
	int64_t n, max_tokens;
	double temperature, top_p;
	long long top_k, seed;
	int stop[LLAMA_MAX_STOP], n_stop;
	int logprobs;
} gen_req;

/* reads an integer member into *out (def when absent or null) and checks lo <= *out <= hi;
 * -1 when it is not an integer or out of range */
static int int_in(const json_t *in, const char *key, long long def, long long lo, long long hi,
		  long long *out)
{
	return fn_json_int(in, key, def, out) < 0 || *out < lo || *out > hi ? -1 : 0;
}

/* reads a number member into *out (def when absent or null); -1 when it is not a number or
 * outside [lo, hi] (lo excluded when lo_open) */
static int num_in(const json_t *in, const char *key, double def, double lo, int lo_open,
		  double hi, double *out)
{
	const json_t *v = json_object_get(in, key);
	*out = def;
	if (!v || json_is_null(v))
		return 0;
	*out = json_is_number(v) ? json_number_value(v) : NAN;
	return (lo_open ? *out > lo : *out >= lo) && *out <= hi ? 0 : -1;
}

/* parse_req validates one request against the loaded model: every number within its range,
 * the context check without overflow (n <= cap and max_tokens <= cap - n). Temperatures below
 * LLAMA_MIN_TEMP decode greedily (their float would be 0 or denormal); a top_p below FLT_MIN
 * keeps the most likely token only, as it would at any tiny value. */
static int parse_req(const llama *s, const json_t *in, gen_req *r, fn_error *err)
{
	memset(r, 0, sizeof *r);
	if (!json_is_object(in))
		return fn_err(err, 400, "expected a JSON object with \"tokens\"");
	const json_t *t = json_object_get(in, "tokens");
	if (!json_is_array(t) || json_array_size(t) == 0)
		return fn_err(err, 400, "tokens: need a non-empty array of token ids");
	if (json_array_size(t) > (size_t)s->cap)
		return fn_err(err, 413, "prompt (%zu tokens) exceeds the context of %lld positions",
			      json_array_size(t), (long long)s->cap);
	r->n = (int64_t)json_array_size(t);
	long long mt;
	if (int_in(in, "max_tokens", 16, 0, INT64_MAX, &mt) < 0)
		return fn_err(err, 400, "max_tokens: need an integer >= 0");
	r->max_tokens = mt;
	if (r->max_tokens > s->cap - r->n)
		return fn_err(err, 413, "prompt (%lld) + max_tokens (%lld) exceeds the context of "
			      "%lld positions", (long long)r->n, (long long)r->max_tokens,
			      (long long)s->cap);
	if (num_in(in, "temperature", 0, 0, 0, LLAMA_MAX_TEMP, &r->temperature) < 0)
		return fn_err(err, 400, "temperature: need a number in [0, %g]", LLAMA_MAX_TEMP);
	if (r->temperature < LLAMA_MIN_TEMP)
		r->temperature = 0;
	if (num_in(in, "top_p", 1, 0, 1, 1, &r->top_p) < 0)
		return fn_err(err, 400, "top_p: need a number in (0, 1]");
	if (r->top_p < FLT_MIN)
		r->top_p = FLT_MIN;
	if (int_in(in, "top_k", 0, 0, LLAMA_MAX_TOP_K, &r->top_k) < 0)
		return fn_err(err, 400, "top_k: need an integer in [0, %d]", LLAMA_MAX_TOP_K);
	if (fn_json_int(in, "seed", 0, &r->seed) < 0)
		return fn_err(err, 400, "seed: need an integer");
	const json_t *v = json_object_get(in, "logprobs");
	if (v && !json_is_boolean(v) && !json_is_null(v))
		return fn_err(err, 400, "logprobs: need true or false");
	r->logprobs = json_is_true(v);
	v = json_object_get(in, "stop");
	if (v && !json_is_null(v)) {
		if (!json_is_array(v) || json_array_size(v) > LLAMA_MAX_STOP)
			return fn_err(err, 400, "stop: need an array of at most %d token ids",
				      LLAMA_MAX_STOP);
		for (size_t i = 0; i < json_array_size(v); i++) {
			const json_t *e = json_array_get(v, i);
			if (!json_is_integer(e) || json_integer_value(e) < 0 ||
			    json_integer_value(e) >= s->V)
				return fn_err(err, 400, "stop[%zu]: need a token id in [0, %lld)", i,
					      (long long)s->V);
			r->stop[r->n_stop++] = (int)json_integer_value(e);
		}
	} else {
		for (int i = 0; i < s->n_eos; i++)
			r->stop[r->n_stop++] = s->eos[i];
	}
	r->tokens = malloc((size_t)r->n * 4);
	if (!r->tokens)
		return fn_err(err, 503, "out of memory");
	for (int64_t i = 0; i < r->n; i++) {
		const json_t *e = json_array_get(t, (size_t)i);
		if (!json_is_integer(e) || json_integer_value(e) < 0 ||
		    json_integer_value(e) >= s->V) {
			free(r->tokens);
			r->tokens = NULL;
			return fn_err(err, 400, "tokens[%lld]: need an integer in [0, %lld)",
				      (long long)i, (long long)s->V);
		}
		r->tokens[i] = (int32_t)json_integer_value(e);
	}
	return 0;
}

/* pick chooses the next token from s->logits (greedy or sampled) into host *tok / *lp;
 * argmax_done: the decode step already left the argmax in s->out / s->lp. */
static int pick(llama *s, const gen_req *r, int64_t step, int argmax_done, int32_t *tok,
		float *lp)
{
	if (r->temperature == 0) {
		if (!argmax_done)
			TRY(kern_argmax(s->dev, s->logits, 1, s->V, s->out, s->lp));
	} else {
		uint64_t z = splitmix((uint64_t)r->seed ^ splitmix((uint64_t)step + 0x5851f42dull));
		float u = (float)(z >> 40) * (1.0f / 16777216.0f);
		TRY(kern_copy_h2d(s->dev, s->urand, &u, 4));
		TRY(kern_sample(s->dev, s->logits, 1, s->V, (float)r->temperature, (int)r->top_k,
				(float)r->top_p, s->urand, s->out, r->logprobs ? s->lp : NULL));
	}
	TRY(kern_copy_d2h(s->dev, tok, s->out, 4));
	if (r->logprobs)
		TRY(kern_copy_d2h(s->dev, lp, s->lp, 4));
	return 0;
}

/* gen_out collects a request's tokens and answers its stream. */
typedef struct gen_out {
	json_t *toks, *lps;
	fn_emit_fn emit;
	void *emit_ctx;
	const char *finish;
} gen_out;

/* take records generated token tok (log-probability lp) and emits it as {"token": id} (plus
 * "logprob" when asked): 0 to go on, 1 when the receiver of the stream went away, 2 when tok
 * is a stop token (finish "stop"). */
static int take(gen_out *o, const gen_req *r, int32_t tok, float lp)
{
	json_array_append_new(o->toks, json_integer(tok));
	if (o->lps)
		json_array_append_new(o->lps, json_real(lp));
	if (o->emit) {
		json_t *chunk = json_pack("{s:i}", "token", (int)tok);
		if (chunk && o->lps)
			json_object_set_new(chunk, "logprob", json_real(lp));
		int gone = !chunk || o->emit(o->emit_ctx, chunk) != 0;
		json_decref(chunk);
		if (gone)
			return 1;
	}
	for (int j = 0; j < r->n_stop; j++)
		if (r->stop[j] == tok) {
			o->finish = "stop";
			return 2;
		}
	return 0;
}

/* run_fed: greedy decoding fed on the device (see the top of the file). The prompt's argmax
 * feeds position n; step j (1 .. max_tokens - 1) runs the token at position n + j - 1 and
 * leaves the next in hist[n + j]. Up to feed_depth steps are queued before the host reads a
 * token (mark slot j % KERN_MARKS); steps queued past a stop are waited for and discarded. */
static int run_fed(llama *s, const gen_req *r, gen_out *o, double t0)
{
	int64_t n = r->n, last = r->max_tokens - 1, queued = 0;
	int32_t st[2] = {r->tokens[n - 1], (int32_t)(n - 1)};
	int rc = kern_copy_h2d(s->dev, s->step, st, 8);
	if (rc == 0)
		rc = prefill(s, r->tokens, n);
	if (rc == 0)
		rc = kern_argmax_feed(s->dev, s->logits, s->V, s->step, s->hist, s->lphist, s->cap);
	if (rc == 0)
		rc = kern_mark(s->dev, 0);
	double t1 = 0;
	int64_t j = 0;
	for (; rc == 0; j++) {
		while (rc == 0 && queued < last && queued < j + s->feed_depth - 1) {
			rc = decode_step(s, 1);
			if (rc == 0)
				rc = kern_mark(s->dev, (int)(++queued % KERN_MARKS));
		}
		if (rc == 0)
			rc = kern_wait_mark(s->dev, (int)(j % KERN_MARKS));
		if (rc < 0)
			break;
		if (j == 0) {
			t1 = pool_clock_mono_s();
			s->prefill_s = t1 - t0;
		}
		int32_t tok = ((volatile int32_t *)s->hist)[n + j];
		float lp = ((volatile float *)s->lphist)[n + j];
		int k = take(o, r, tok, lp);
		if (k == 1)
			rc = 1;
		if (k || j == last)
			break;
	}
	if (queued > j) {   /* steps run past a stop or a gone receiver */
		int rc2 = kern_dev_sync(s->dev);
		rc = rc < 0 ? rc : rc2 < 0 ? rc2 : rc;
	}
	s->steps = (int)queued;
	s->decode_s = t1 > 0 ? pool_clock_mono_s() - t1 : 0;
	return rc;
}

/* run_host: decoding with the token through the host at every step (sampling, or devices
 * without host-writable memory). */
static int run_host(llama *s, const gen_req *r, gen_out *o, double t0)
{
	int32_t tok;
	float lp = 0;
	int rc = prefill(s, r->tokens, r->n);
	if (rc == 0)
		rc = pick(s, r, 0, 0, &tok, &lp);
	s->prefill_s = pool_clock_mono_s() - t0;
	double t1 = pool_clock_mono_s();
	for (int64_t i = 0; rc == 0; i++) {
		int k = take(o, r, tok, lp);
		if (k == 1)
			rc = 1;
		if (k || i + 1 >= r->max_tokens)
			break;
		int32_t st[2] = {tok, (int32_t)(r->n + i)};
		rc = kern_copy_h2d(s->dev, s->step, st, 8);
		if (rc == 0)
			rc = decode_step(s, 0);
		if (rc == 0)
			rc = pick(s, r, i + 1, 1, &tok, &lp);
		s->steps++;
	}
	s->decode_s = pool_clock_mono_s() - t1;
	return rc;
}

/* generate runs one request, emitting each token as it is known when emit is set. Returns 0,
 * a negative errno (device failure), or 1 when the receiver of the stream went away (*out
 * unset). */
static int generate(llama *s, const gen_req *r, fn_emit_fn emit, void *emit_ctx, json_t **out)
{
	gen_out o = {json_array(), r->logprobs ? json_array() : NULL, emit, emit_ctx, "length"};
	int rc = 0;
	double t0 = pool_clock_mono_s();
	s->steps = 0;
	s->used_graph = 0;
	s->prefill_s = s->decode_s = 0;
	if (!o.toks || (r->logprobs && !o.lps))
		rc = -ENOMEM;
	else if (r->max_tokens > 0)
		rc = r->temperature == 0 && s->feed_depth > 0 ? run_fed(s, r, &o, t0)
							       : run_host(s, r, &o, t0);
	if (rc != 0) {
		json_decref(o.toks);
		json_decref(o.lps);
		return rc;
	}
	size_t ng = json_array_size(o.toks);
	*out = json_pack("{s:o,s:s,s:{s:I,s:I}}", "tokens", o.toks, "finish_reason", o.finish,
			 "usage", "prompt_tokens", (json_int_t)r->n, "completion_tokens",
			 (json_int_t)ng);
	if (o.lps)
		json_object_set_new(*out, "logprobs", o.lps);
	return 0;
}

static int llama_invoke(void *state, fn_call *calls, size_t n)
{
	llama *s = state;
	int rc = 0;
	for (size_t i = 0; i < n; i++) {
		fn_call *c = &calls[i];
		gen_req r;
		c->out = NULL;
		c->err.status = 0;
		c->err.msg[0] = 0;
		if (rc < 0) {
			fn_err(&c->err, 503, "device failure");
			continue;
		}
		if (parse_req(s, c->in, &r, &c->err) < 0)
			continue;
		int g = generate(s, &r, c->emit, c->emit_ctx, &c->out);
		free(r.tokens);
		if (g == 1)
			fn_err(&c->err, 499, "llama: stopped: the call was answered without it (client gone, timeout)");
		else if (g < 0)
			fn_err(&c->err, g == -ENOMEM ? 503 : 500, "llama: %s", strerror(-(rc = g)));
	}
	return rc;
}

int fn_llama_prefill_logits(void *state, const int32_t *tokens, int n, float *logits)
{
	llama *s = state;
	if (n < 1 || n > s->cap)
		return -EINVAL;
	TRY(prefill(s, tokens, n));
	return kern_copy_d2h(s->dev, logits, s->logits, (size_t)s->V * 4);
}

int fn_llama_forced(void *state, const int32_t *prompt, int np, const int32_t *forced, int nf,
		    int32_t *argmax)
{
	llama *s = state;
	if (np < 1 || nf < 1 || np > s->cap || nf > s->cap - np)
		return -EINVAL;
	TRY(prefill(s, prompt, np));
	for (int i = 0; i < nf; i++) {
		if (i > 0) {
			int32_t st[2] = {forced[i - 1], np + i - 1};
			TRY(kern_copy_h2d(s->dev, s->step, st, 8));
			TRY(decode_step(s, 0));
		} else {
			TRY(kern_argmax(s->dev, s->logits, 1, s->V, s->out, NULL));
		}
		TRY(kern_copy_d2h(s->dev, &argmax[i], s->out, 4));
	}
	return 0;
}

int fn_llama_last_logits(void *state, float *logits)
{
	llama *s = state;
	return kern_copy_d2h(s->dev, logits, s->logits, (size_t)s->V * 4);
}

int fn_llama_vocab(void *state) { return (int)((llama *)state)->V; }

void fn_llama_stats(void *state, double *prefill_s, double *decode_s, int *steps, int *graph)
{
	llama *s = state;
	*prefill_s = s->prefill_s;
	*decode_s = s->decode_s;
	*steps = s->steps;
	*graph = s->used_graph;
}

/* V2: input_ids INT64 [1, n] -> output_ids INT64 [1, m] (one sequence a request) */
static int llama_v2_sig(const fn_load_args *a, fn_v2_sig *sig, fn_error *err)
{
	(void)a;
	(void)err;
	memset(sig, 0, sizeof *sig);
	sig->n_inputs = sig->n_outputs = 1;
	fn_v2_tensor_set(&sig->inputs[0], "input_ids", "INT64", 2, (int64_t[]){1, -1});
	fn_v2_tensor_set(&sig->outputs[0], "output_ids", "INT64", 2, (int64_t[]){1, -1});
	return 0;
}

static const char *const llama_model_types[] = {"llama", NULL};

const fn_kind fn_llama_kind = {
	.abi = FN_ABI_VERSION,
	.name = "llama",
	.summary = "LLaMA decoder (HF LlamaForCausalLM weights): tokens -> tokens",
	.load = llama_load,
	.invoke = llama_invoke,
	.release = llama_release,
	.v2_sig = llama_v2_sig,
	.hf_model_types = llama_model_types,
};

/* fn_llama.c — the `llama` kind: the LLaMA decoder as HF transformers' LlamaForCausalLM
 * computes it (RMSNorm, rotary embeddings with rope_theta, grouped-query causal attention
 * with a KV cache, SiLU-gated MLP, untied or tied lm_head), read from HF weight names and
 * config.json. Weights F32/F16/BF16, or int8 weight-only for the projections (embeddings and
 * norms stay in their source dtype). Activations are F32; the KV cache is paged, BF16.
 *
 * Invoke {"tokens": [...], "max_tokens": N, "temperature": 0, "top_p": 1, "top_k": 0,
 * "seed": S, "stop": [ids], "logprobs": false} -> {"tokens": [generated], "finish_reason":
 * "length"|"stop", "logprobs": [...] (when asked), "usage": {...}}. temperature 0 (or below
 * 1e-5) = greedy; prompt + max_tokens must fit the context (413 otherwise).
 *
 * The kind is generative (fn.h sequence operations): calls are held as sequences and advanced
 * together, one token each per step, by the engine in fn_llama_step.c; invoke runs its calls
 * through the same engine. This file loads the weights and config, parses requests and holds
 * the kind table. Load metadata besides the config: "max_context" (positions, default 4096,
 * at most max_position_embeddings), "kv_cache_bytes", "max_sequences", "prefix_caching" and
 * "kv_cache_dtype" ("BF16" default, "F32" for comparisons), see fn_llama_run.c. */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "pool/pool_base.h"
#include "functions/fn_kinds.h"
#include "functions/fn_llama.h"
#include "functions/fn_llama_int.h"

#define LLAMA_MAX_LAYERS 256
#define LLAMA_DEFAULT_CTX_CAP 4096
#define LLAMA_MAX_CTX (1 << 30)   /* positions are int32 on every backend */
#define LLAMA_MAX_TEMP 100.0
#define LLAMA_MIN_TEMP 1e-5       /* below: greedy (vLLM's sampling epsilon) */
#define LLAMA_MAX_TOP_K (1 << 30)

static void llama_release(void *state)
{
	llama *s = state;
	if (!s)
		return;
	llama_engine_free(s);
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
	free(s);
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
	rc = llama_engine_init(s, a->meta, err);
	if (rc < 0)
		goto fail;
	*state = s;
	return 0;
fail:
	llama_release(s);
	return rc < 0 ? rc : -EINVAL;
}

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
int llama_parse_req(const llama *s, const json_t *in, gen_req *r, fn_error *err)
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

int fn_llama_prefill_logits(void *state, const int32_t *tokens, int n, float *logits)
{
	llama *s = state;
	if (n < 1 || n > s->cap)
		return -EINVAL;
	return llama_helper_prefill(s, tokens, n, logits);
}

int fn_llama_forced(void *state, const int32_t *prompt, int np, const int32_t *forced, int nf,
		    int32_t *argmax)
{
	llama *s = state;
	if (np < 1 || nf < 1 || np > s->cap || nf > s->cap - np)
		return -EINVAL;
	return llama_helper_forced(s, prompt, np, forced, nf, argmax);
}

int fn_llama_last_logits(void *state, float *logits)
{
	llama *s = state;
	memcpy(logits, s->last_lg, (size_t)s->V * 4);
	return 0;
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
	.seq_add = llama_seq_add,
	.seq_step = llama_seq_step,
};

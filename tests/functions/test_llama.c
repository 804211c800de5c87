/* test_llama.c — the `llama` kind against HF transformers (tests/data/llama_tiny, made by
 * tests/data/make_fixtures.py): last-position logits and greedy continuations on the CPU
 * backend (BF16 as stored, F32, F16, int8; KV cache in F32 for these comparisons) and, when a
 * GPU is present, on CUDA. Plus request
 * validation, stop tokens, seeded sampling and logprobs. */
#include <math.h>
#include <stdlib.h>
#include "tests/t.h"
#include "tests/functions/fx.h"
#include "functions/fn_llama.h"
#include "functions/fn_kinds.h"

static json_t *expected(void)
{
	char path[1024];
	snprintf(path, sizeof path, "%s/tests/data/llama_tiny/expected.json", t_src());
	return json_load_file(path, 0, NULL);
}

static double max_diff(const float *a, const json_t *ref, int n)
{
	double m = 0;
	for (int i = 0; i < n; i++) {
		double d = fabs(a[i] - json_number_value(json_array_get(ref, (size_t)i)));
		m = d > m ? d : m;
	}
	return m;
}

/* run_fixture checks a loaded model against the fixture: logits within tol, greedy exact. */
static void run_fixture(const char *devspec, const char *dtype, int qblock, double tol,
			int want_exact_greedy, int *agree_out, int *total_out)
{
	kern_dev *d;
	fx_model m;
	json_t *ex = expected();
	T_CHECK(ex != NULL);
	if (!ex)
		return;
	T_EQ_INT(kern_dev_open(devspec, 2, &d), 0);
	T_EQ_INT(fx_load("llama_tiny", "llama", &m), 0);
	if (dtype)
		fx_convert(&m, dtype);
	if (qblock >= 0)
		T_CHECK(fx_quantize(&m, qblock) == 2 * 7 + 1);
	/* an F32 KV cache: the comparison is against HF's F32 computation */
	json_object_set_new(m.meta, "kv_cache_dtype", json_string("F32"));
	T_EQ_INT(fx_to_dev(d, &m), 0);
	const fn_kind *k = fn_kind_find("llama");
	fn_load_args a = {d, m.w, m.n, m.meta};
	void *st = NULL;
	fn_error err = {0};
	int rc = k->load(&a, &st, &err);
	if (rc)
		fprintf(stderr, "  load: %s\n", err.msg);
	T_EQ_INT(rc, 0);
	int V = st ? fn_llama_vocab(st) : 0;
	T_EQ_INT(V, 256);
	float *lg = calloc(256, 4);
	json_t *prompts = json_object_get(ex, "prompts");
	int agree = 0, total = 0;
	for (size_t p = 0; st && p < json_array_size(prompts); p++) {
		json_t *pr = json_array_get(prompts, p);
		int32_t toks[64];
		int n = (int)json_array_size(pr);
		for (int i = 0; i < n; i++)
			toks[i] = (int32_t)json_integer_value(json_array_get(pr, (size_t)i));
		T_EQ_INT(fn_llama_prefill_logits(st, toks, n, lg), 0);
		double dl = max_diff(lg, json_array_get(json_object_get(ex, "last_logits"), p), 256);
		if (dl > tol)
			fprintf(stderr, "  %s %s q%d prompt %zu: last logits max diff %g > %g\n", devspec,
				dtype ? dtype : "BF16", qblock, p, dl, tol);
		T_CHECK(dl <= tol);
		json_t *in = json_pack("{s:O,s:i,s:[]}", "tokens", pr, "max_tokens", 16, "stop");
		json_t *out = fn_invoke_one(k, st, in, &err);
		T_CHECK(out != NULL);
		json_t *got = json_object_get(out, "tokens"), *want = json_array_get(
			json_object_get(ex, "greedy"), p);
		T_EQ_INT(json_array_size(got), 16);
		for (size_t i = 0; i < 16; i++) {
			int g = (int)json_integer_value(json_array_get(got, i));
			int w = (int)json_integer_value(json_array_get(want, i));
			total++;
			agree += g == w;
			if (want_exact_greedy && g != w) {
				fprintf(stderr, "  %s prompt %zu token %zu: %d, HF %d\n", devspec, p, i, g, w);
				T_CHECK(g == w);
				break;
			}
		}
		T_EQ_STR(json_string_value(json_object_get(out, "finish_reason")), "length");
		if (want_exact_greedy) {
			T_EQ_INT(fn_llama_last_logits(st, lg), 0);
			double df = max_diff(lg, json_array_get(json_object_get(ex, "final_logits"), p),
					     256);
			if (df > tol)
				fprintf(stderr, "  prompt %zu: decode-path logits max diff %g\n", p, df);
			T_CHECK(df <= tol);
		}
		json_decref(in);
		json_decref(out);
	}
	if (agree_out) {
		*agree_out = agree;
		*total_out = total;
	}
	free(lg);
	if (st)
		k->release(st);
	fx_free(d, &m);
	kern_dev_close(d);
	json_decref(ex);
}

static void test_llama_cpu_bf16_matches_hf(void) { run_fixture("cpu", NULL, -1, 2e-4, 1, 0, 0); }
static void test_llama_cpu_f32_matches_hf(void) { run_fixture("cpu", "F32", -1, 2e-4, 1, 0, 0); }
static void test_llama_cpu_f16_matches_hf(void) { run_fixture("cpu", "F16", -1, 2e-2, 1, 0, 0); }

static void test_llama_cpu_int8_agreement(void)
{
	int a = 0, t = 0;
	run_fixture("cpu", NULL, 32, 1.0, 0, &a, &t);
	printf("  int8 (32-blocks) greedy tokens equal to HF BF16: %d/%d\n", a, t);
	T_CHECK(t == 48 && a >= 8);   /* first tokens at least; full agreement is not promised */
	run_fixture("cpu", NULL, 0, 1.5, 0, &a, &t);
	printf("  int8 (per-row) greedy tokens equal to HF BF16: %d/%d\n", a, t);
}

static void test_llama_cuda_matches_hf(void)
{
	if (kern_cuda_count() < 1)
		T_SKIP("no GPU");
	run_fixture("cuda:0", "F32", -1, 1e-3, 1, 0, 0);
	run_fixture("cuda:0", NULL, -1, 6e-2, 1, 0, 0);   /* BF16: cuBLAS rounds activations */
	run_fixture("cuda:0", "F16", -1, 3e-2, 1, 0, 0);
}

/* the int8 model on CUDA gives the CPU int8 model's tokens */
static void test_llama_cuda_int8_matches_cpu(void)
{
	if (kern_cuda_count() < 1)
		T_SKIP("no GPU");
	for (int blk = 0; blk <= 32; blk += 32) {
		json_t *res[2] = {0};
		for (int di = 0; di < 2; di++) {
			kern_dev *d;
			fx_model m;
			T_EQ_INT(kern_dev_open(di ? "cuda:0" : "cpu", 2, &d), 0);
			fx_load("llama_tiny", "llama", &m);
			fx_quantize(&m, blk);
			fx_to_dev(d, &m);
			const fn_kind *k = fn_kind_find("llama");
			fn_load_args a = {d, m.w, m.n, m.meta};
			void *st = NULL;
			fn_error err;
			T_EQ_INT(k->load(&a, &st, &err), 0);
			json_t *in = json_pack("{s:[iiiii],s:i,s:[]}", "tokens", 1, 5, 9, 77, 3,
					       "max_tokens", 20, "stop");
			res[di] = st ? fn_invoke_one(k, st, in, &err) : NULL;
			json_decref(in);
			if (st)
				k->release(st);
			fx_free(d, &m);
			kern_dev_close(d);
		}
		T_CHECK(res[0] && res[1] && json_equal(json_object_get(res[0], "tokens"),
						      json_object_get(res[1], "tokens")));
		json_decref(res[0]);
		json_decref(res[1]);
	}
}

static void *load_cpu(kern_dev **d, fx_model *m)
{
	kern_dev_open("cpu", 2, d);
	fx_load("llama_tiny", "llama", m);
	fx_to_dev(*d, m);
	fn_load_args a = {*d, m->w, m->n, m->meta};
	void *st = NULL;
	fn_error err;
	fn_llama_kind.load(&a, &st, &err);
	return st;
}

static int status_of(void *st, const char *json)
{
	fn_error err;
	json_t *in = json_loads(json, 0, NULL);
	json_t *out = fn_invoke_one(&fn_llama_kind, st, in, &err);
	json_decref(in);
	json_decref(out);
	return out ? 200 : err.status;
}

static void test_llama_bad_requests(void)
{
	kern_dev *d;
	fx_model m;
	void *st = load_cpu(&d, &m);
	T_CHECK(st != NULL);
	T_EQ_INT(status_of(st, "{\"tokens\": [1, 2], \"max_tokens\": 2}"), 200);
	T_EQ_INT(status_of(st, "{}"), 400);
	T_EQ_INT(status_of(st, "[1, 2]"), 400);
	T_EQ_INT(status_of(st, "{\"tokens\": []}"), 400);
	T_EQ_INT(status_of(st, "{\"tokens\": [1, 256]}"), 400);
	T_EQ_INT(status_of(st, "{\"tokens\": [1, -1]}"), 400);
	T_EQ_INT(status_of(st, "{\"tokens\": [1, 2.5]}"), 400);
	T_EQ_INT(status_of(st, "{\"tokens\": [1], \"max_tokens\": -1}"), 400);
	T_EQ_INT(status_of(st, "{\"tokens\": [1], \"max_tokens\": 500}"), 413);
	T_EQ_INT(status_of(st, "{\"tokens\": [1], \"temperature\": -1}"), 400);
	T_EQ_INT(status_of(st, "{\"tokens\": [1], \"top_p\": 0}"), 400);
	T_EQ_INT(status_of(st, "{\"tokens\": [1], \"stop\": [\"x\"]}"), 400);
	T_EQ_INT(status_of(st, "{\"tokens\": [1], \"max_tokens\": 0}"), 200);
	/* a batch: the bad request fails alone */
	json_t *in[3] = {json_loads("{\"tokens\": [1, 2], \"max_tokens\": 3}", 0, NULL),
			 json_loads("{\"tokens\": \"x\"}", 0, NULL),
			 json_loads("{\"tokens\": [3], \"max_tokens\": 2}", 0, NULL)};
	json_t *out[3];
	fn_error errs[3];
	T_EQ_INT(fx_invoke(&fn_llama_kind, st, in, out, errs, 3), 0);
	T_CHECK(out[0] && !out[1] && out[2]);
	T_EQ_INT(errs[1].status, 400);
	T_EQ_INT(json_array_size(json_object_get(out[2], "tokens")), 2);
	for (int i = 0; i < 3; i++) {
		json_decref(in[i]);
		json_decref(out[i]);
	}
	fn_llama_kind.release(st);
	fx_free(d, &m);
	kern_dev_close(d);
}

static json_t *gen(void *st, const char *json)
{
	fn_error err;
	json_t *in = json_loads(json, 0, NULL);
	json_t *out = fn_invoke_one(&fn_llama_kind, st, in, &err);
	json_decref(in);
	return out;
}

static void test_llama_stop_sampling_logprobs(void)
{
	kern_dev *d;
	fx_model m;
	void *st = load_cpu(&d, &m);
	/* HF greedy for prompt 0 is 55 230 203 138 ...: stop at 138 */
	json_t *o = gen(st, "{\"tokens\": [1, 17, 42, 99, 3, 200, 5], \"max_tokens\": 10, "
			"\"stop\": [138]}");
	T_EQ_INT(json_array_size(json_object_get(o, "tokens")), 4);
	T_EQ_STR(json_string_value(json_object_get(o, "finish_reason")), "stop");
	json_decref(o);
	/* default stop = eos (2): prompt 2's greedy continuation hits token 2 at index 3 */
	o = gen(st, "{\"tokens\": [1], \"max_tokens\": 10}");
	T_EQ_INT(json_array_size(json_object_get(o, "tokens")), 4);
	T_EQ_STR(json_string_value(json_object_get(o, "finish_reason")), "stop");
	json_decref(o);
	const char *s7 = "{\"tokens\": [1, 9], \"max_tokens\": 12, \"temperature\": 0.9, "
			 "\"top_p\": 0.9, \"seed\": 7, \"stop\": [], \"logprobs\": true}";
	json_t *a = gen(st, s7), *b = gen(st, s7);
	json_t *c = gen(st, "{\"tokens\": [1, 9], \"max_tokens\": 12, \"temperature\": 0.9, "
			"\"top_p\": 0.9, \"seed\": 8, \"stop\": []}");
	T_CHECK(a && b && c);
	T_CHECK(json_equal(json_object_get(a, "tokens"), json_object_get(b, "tokens")));
	T_CHECK(!json_equal(json_object_get(a, "tokens"), json_object_get(c, "tokens")));
	json_t *lp = json_object_get(a, "logprobs");
	T_EQ_INT(json_array_size(lp), 12);
	for (size_t i = 0; i < json_array_size(lp); i++)
		T_CHECK(json_real_value(json_array_get(lp, i)) <= 0.0);
	T_CHECK(json_object_get(c, "logprobs") == NULL);
	json_decref(a);
	json_decref(b);
	json_decref(c);
	/* top_k 1 sampling is greedy */
	a = gen(st, "{\"tokens\": [1, 17, 42, 99, 3, 200, 5], \"max_tokens\": 6, \"temperature\": 1.5,"
		" \"top_k\": 1, \"seed\": 3, \"stop\": []}");
	b = gen(st, "{\"tokens\": [1, 17, 42, 99, 3, 200, 5], \"max_tokens\": 6, \"stop\": []}");
	T_CHECK(a && b && json_equal(json_object_get(a, "tokens"), json_object_get(b, "tokens")));
	json_decref(a);
	json_decref(b);
	fn_llama_kind.release(st);
	fx_free(d, &m);
	kern_dev_close(d);
}

/* boundary numbers in every field of the kind's body: the context check holds near INT64_MAX
 * (prompt + max_tokens without overflow), ranges are refused with 400/413, a tiny temperature
 * decodes greedily and a tiny top_p keeps the top token (both: the greedy tokens, not a 500).
 * The fixture's context is 128 positions. */
static void test_llama_boundary_numbers(void)
{
	kern_dev *d;
	fx_model m;
	void *st = load_cpu(&d, &m);
	T_CHECK(st != NULL);
	if (!st)
		return;
	static const struct { const char *body; int status; } cases[] = {
		{"{\"tokens\": [1], \"max_tokens\": 9223372036854775807, \"stop\": []}", 413},
		{"{\"tokens\": [1], \"max_tokens\": 9223372036854775806, \"stop\": []}", 413},
		{"{\"tokens\": [1, 2], \"max_tokens\": 9223372036854775807}", 413},
		{"{\"tokens\": [1], \"max_tokens\": 4611686018427387904}", 413},
		{"{\"tokens\": [1], \"max_tokens\": 4294967297}", 413},
		{"{\"tokens\": [1], \"max_tokens\": -9223372036854775808}", 400},
		{"{\"tokens\": [1], \"max_tokens\": -1}", 400},
		{"{\"tokens\": [1], \"max_tokens\": 1e3}", 400},
		{"{\"tokens\": [1], \"max_tokens\": 128}", 413},
		{"{\"tokens\": [1], \"max_tokens\": 127, \"stop\": []}", 200},
		{"{\"tokens\": [1, 2, 3], \"max_tokens\": 126}", 413},
		{"{\"tokens\": [1, 2, 3], \"max_tokens\": 125, \"stop\": []}", 200},
		{"{\"tokens\": [1], \"max_tokens\": 0}", 200},
		{"{\"tokens\": [1], \"temperature\": 1e308}", 400},
		{"{\"tokens\": [1], \"temperature\": 100.000001}", 400},
		{"{\"tokens\": [1], \"temperature\": -1e-308}", 400},
		{"{\"tokens\": [1], \"temperature\": 100, \"max_tokens\": 2}", 200},
		{"{\"tokens\": [1], \"top_p\": 1.0000001}", 400},
		{"{\"tokens\": [1], \"top_p\": -1e-308}", 400},
		{"{\"tokens\": [1], \"top_k\": 9223372036854775807}", 400},
		{"{\"tokens\": [1], \"top_k\": -1}", 400},
		{"{\"tokens\": [1], \"top_k\": 1073741824, \"temperature\": 1, \"max_tokens\": 2}", 200},
		{"{\"tokens\": [1], \"seed\": -9223372036854775808, \"temperature\": 1, \"max_tokens\": 2}", 200},
		{"{\"tokens\": [1], \"seed\": 9223372036854775807, \"temperature\": 1, \"max_tokens\": 2}", 200},
		{"{\"tokens\": [1], \"seed\": 1.5}", 400},
		{"{\"tokens\": [1], \"stop\": [1099511627778]}", 400},
		{"{\"tokens\": [1], \"stop\": [-1]}", 400},
		{"{\"tokens\": [1], \"stop\": [256]}", 400},
		{"{\"tokens\": [1, 4294967297]}", 400},
		{"{\"tokens\": [1, -9223372036854775808]}", 400},
		{"{\"tokens\": [1], \"logprobs\": 1}", 400},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		int got = status_of(st, cases[i].body);
		if (got != cases[i].status)
			fprintf(stderr, "  %s -> %d, want %d\n", cases[i].body, got, cases[i].status);
		T_EQ_INT(got, cases[i].status);
	}
	/* a prompt longer than the context, with max_tokens 0: 413, not a read past the cache */
	char big[1024];
	size_t o = (size_t)snprintf(big, sizeof big, "{\"max_tokens\": 0, \"tokens\": [1");
	for (int i = 0; i < 128; i++)
		o += (size_t)snprintf(big + o, sizeof big - o, ",%d", i % 200);
	snprintf(big + o, sizeof big - o, "]}");
	T_EQ_INT(status_of(st, big), 413);
	/* tiny temperatures and top_p: the greedy continuation */
	const char *p = "\"tokens\": [1, 17, 42, 99, 3, 200, 5], \"max_tokens\": 8, \"stop\": []";
	char body[512];
	snprintf(body, sizeof body, "{%s}", p);
	json_t *ref = gen(st, body);
	T_CHECK(ref && json_array_size(json_object_get(ref, "tokens")) == 8);
	static const char *const greedy_alike[] = {"\"temperature\": 1e-308",
		"\"temperature\": 5e-324", "\"temperature\": 9e-6, \"seed\": 3",
		"\"temperature\": 1, \"top_p\": 1e-308, \"seed\": 5",
		"\"temperature\": 1.5, \"top_p\": 1e-40, \"seed\": 6"};
	for (size_t i = 0; i < sizeof greedy_alike / sizeof greedy_alike[0]; i++) {
		snprintf(body, sizeof body, "{%s, %s}", p, greedy_alike[i]);
		json_t *o2 = gen(st, body);
		if (!o2 || !json_equal(json_object_get(o2, "tokens"), json_object_get(ref, "tokens")))
			fprintf(stderr, "  %s: not the greedy tokens\n", greedy_alike[i]);
		T_CHECK(o2 && json_equal(json_object_get(o2, "tokens"), json_object_get(ref, "tokens")));
		json_decref(o2);
	}
	json_decref(ref);
	fn_llama_kind.release(st);
	fx_free(d, &m);
	kern_dev_close(d);
}

/* streaming: collects emitted chunks; stops after `limit` of them when limit > 0 */
typedef struct sink {
	json_t *toks, *lps;
	int limit, calls;
} sink;

static int sink_emit(void *ctx, json_t *chunk)
{
	sink *k = ctx;
	if (!chunk)   /* a poll: is anybody still waiting? */
		return k->limit > 0 && k->calls >= k->limit ? -1 : 0;
	k->calls++;
	json_array_append(k->toks, json_object_get(chunk, "token"));
	if (json_object_get(chunk, "logprob"))
		json_array_append(k->lps, json_object_get(chunk, "logprob"));
	return k->limit > 0 && k->calls >= k->limit ? -1 : 0;
}

static json_t *gen_stream(void *st, const char *json, sink *k, fn_error *err)
{
	k->toks = json_array();
	k->lps = json_array();
	k->calls = 0;
	fn_call c = {.in = json_loads(json, 0, NULL), .emit = sink_emit, .emit_ctx = k};
	fn_call_run(&fn_llama_kind, st, &c);
	json_decref((json_t *)c.in);
	*err = c.err;
	return c.out;
}

static void test_llama_stream(void)
{
	kern_dev *d;
	fx_model m;
	fn_error err;
	sink k = {0};
	void *st = load_cpu(&d, &m);
	T_CHECK(st != NULL);
	if (!st)
		return;
	/* greedy to a stop token: HF's continuation of prompt 0 is 55 230 203 138 */
	json_t *o = gen_stream(st, "{\"tokens\": [1, 17, 42, 99, 3, 200, 5], \"max_tokens\": 10, "
			       "\"stop\": [138]}", &k, &err);
	T_CHECK(o != NULL);
	json_t *hf = json_pack("[i,i,i,i]", 55, 230, 203, 138);
	T_CHECK(json_equal(k.toks, json_object_get(o, "tokens")));
	T_CHECK(json_equal(k.toks, hf));
	T_EQ_INT(k.calls, 4);
	json_decref(hf);
	json_decref(o);
	json_decref(k.toks);
	json_decref(k.lps);
	/* sampled with logprobs: same tokens and log-probabilities as the final result, and as a
	 * call that does not stream */
	const char *s7 = "{\"tokens\": [1, 9], \"max_tokens\": 12, \"temperature\": 0.9, "
			 "\"top_p\": 0.9, \"seed\": 7, \"stop\": [], \"logprobs\": true}";
	o = gen_stream(st, s7, &k, &err);
	json_t *plain = gen(st, s7);
	T_CHECK(o && plain);
	T_EQ_INT(json_array_size(k.toks), 12);
	T_CHECK(json_equal(k.toks, json_object_get(o, "tokens")));
	T_CHECK(json_equal(k.lps, json_object_get(o, "logprobs")));
	T_CHECK(json_equal(o, plain));
	json_decref(o);
	json_decref(plain);
	json_decref(k.toks);
	json_decref(k.lps);
	/* the receiver goes away after 3 tokens: generation stops there, the call fails (499) */
	k.limit = 3;
	o = gen_stream(st, "{\"tokens\": [1, 9], \"max_tokens\": 12, \"stop\": []}", &k, &err);
	T_CHECK(o == NULL);
	T_EQ_INT(err.status, 499);
	T_EQ_INT(k.calls, 3);
	json_decref(k.toks);
	json_decref(k.lps);
	fn_llama_kind.release(st);
	fx_free(d, &m);
	kern_dev_close(d);
}

/* fed_run loads the fixture on devspec opened with kern_tuning.feed_depth = depth (-1: the
 * device's default, 0: every step through the host) and
 * answers a fixed set of requests: greedy to a length, with logprobs, to a stop token (steps
 * queued past it are discarded), a request after that stop (the discarded steps must not
 * disturb it), max_tokens 1, and a stream whose receiver leaves after 3 tokens. Returns an
 * array of the answers ({"status": N} for a failed call, {"stream": [...]} added for streams). */
static json_t *fed_run(const char *devspec, int depth)
{
	static const char *reqs[] = {
		"{\"tokens\": [1, 9], \"max_tokens\": 24, \"stop\": [], \"logprobs\": true}",
		"{\"tokens\": [1, 17, 42, 99, 3, 200, 5], \"max_tokens\": 10, \"stop\": [138]}",
		"{\"tokens\": [1, 17, 42, 99, 3, 200, 5], \"max_tokens\": 12, \"stop\": []}",
		"{\"tokens\": [4], \"max_tokens\": 1, \"logprobs\": true}",
		"{\"tokens\": [1], \"max_tokens\": 10}",
	};
	kern_tuning t = KERN_TUNING_DEFAULT;
	t.feed_depth = depth;
	kern_dev *d;
	fx_model m;
	json_t *res = json_array();
	T_EQ_INT(kern_dev_open_tuned(devspec, 2, &t, &d), 0);
	T_EQ_INT(fx_load("llama_tiny", "llama", &m), 0);
	T_EQ_INT(fx_to_dev(d, &m), 0);
	fn_load_args a = {d, m.w, m.n, m.meta};
	void *st = NULL;
	fn_error err;
	T_EQ_INT(fn_llama_kind.load(&a, &st, &err), 0);
	for (size_t i = 0; st && i < sizeof reqs / sizeof reqs[0]; i++) {
		json_t *o = gen(st, reqs[i]);
		json_array_append_new(res, o ? o : json_pack("{s:i}", "status", 0));
	}
	sink k = {.limit = 3};
	json_t *o = st ? gen_stream(st, "{\"tokens\": [1, 9], \"max_tokens\": 12, \"stop\": []}",
				    &k, &err) : NULL;
	json_array_append_new(res, json_pack("{s:i,s:o}", "status", o ? 200 : err.status,
					     "stream", k.toks ? k.toks : json_array()));
	json_decref(o);
	json_decref(k.lps);
	if (st)
		fn_llama_kind.release(st);
	fx_free(d, &m);
	kern_dev_close(d);
	return res;
}

/* same_answers: equal tokens, finish reasons and statuses; logprobs within tol */
static int same_answers(const json_t *a, const json_t *b, double tol)
{
	if (json_array_size(a) != json_array_size(b) || json_array_size(a) == 0)
		return 0;
	for (size_t i = 0; i < json_array_size(a); i++) {
		const json_t *x = json_array_get(a, i), *y = json_array_get(b, i);
		const char *keys[] = {"tokens", "finish_reason", "status", "stream", "usage"};
		for (size_t j = 0; j < sizeof keys / sizeof keys[0]; j++) {
			const json_t *u = json_object_get(x, keys[j]), *v = json_object_get(y, keys[j]);
			if ((u || v) && !(u && v && json_equal(u, v))) {
				fprintf(stderr, "  answer %zu differs in %s\n", i, keys[j]);
				return 0;
			}
		}
		const json_t *la = json_object_get(x, "logprobs"), *lb = json_object_get(y, "logprobs");
		if (json_array_size(la) != json_array_size(lb))
			return 0;
		for (size_t j = 0; j < json_array_size(la); j++)
			if (!(fabs(json_number_value(json_array_get(la, j)) -
				   json_number_value(json_array_get(lb, j))) <= tol))
				return 0;
	}
	return 1;
}

/* Greedy decoding fed on the device (kern_argmax_feed, steps queued ahead of the host) gives
 * the answers of decoding through the host, at every queue depth: stops, a request after
 * steps discarded past a stop, max_tokens 1, logprobs, a stream cut short. */
static void test_llama_fed_decode(void)
{
	json_t *host = fed_run("cpu", 0);
	json_t *a0 = json_array_get(host, 0), *a1 = json_array_get(host, 1);
	T_EQ_INT(json_array_size(json_object_get(a0, "tokens")), 24);
	T_EQ_INT(json_array_size(json_object_get(a0, "logprobs")), 24);
	T_EQ_STR(json_string_value(json_object_get(a1, "finish_reason")), "stop");
	T_EQ_INT(json_array_size(json_object_get(a1, "tokens")), 4);
	json_t *a5 = json_array_get(host, 5);
	T_EQ_INT(json_integer_value(json_object_get(a5, "status")), 499);
	T_EQ_INT(json_array_size(json_object_get(a5, "stream")), 3);
	for (int depth = 1; depth <= 3; depth++) {
		json_t *fed = fed_run("cpu", depth);
		if (!same_answers(host, fed, 0))
			fprintf(stderr, "  cpu, depth %d: fed answers differ\n", depth);
		T_CHECK(same_answers(host, fed, 0));
		json_decref(fed);
	}
	if (kern_cuda_count() >= 1) {   /* CUDA: fed vs through the host, and vs the CPU */
		json_t *ch = fed_run("cuda:0", 0);
		json_t *cf = fed_run("cuda:0", -1), *c3 = fed_run("cuda:0", 3);
		T_CHECK(same_answers(ch, cf, 1e-4));
		T_CHECK(same_answers(ch, c3, 1e-4));
		T_CHECK(same_answers(host, cf, 1e-2));
		json_decref(ch);
		json_decref(cf);
		json_decref(c3);
	}
	json_decref(host);
}

static void test_llama_bad_configs(void)
{
	kern_dev *d;
	fx_model m;
	fn_error err;
	void *st = NULL;
	kern_dev_open("cpu", 1, &d);
	fx_load("llama_tiny", "llama", &m);
	json_t *cfg = json_object_get(m.meta, "config");
	json_object_set_new(cfg, "hidden_size", json_integer(65));
	fn_load_args a = {d, m.w, m.n, m.meta};
	T_CHECK(fn_llama_kind.load(&a, &st, &err) < 0);
	T_EQ_INT(err.status, 422);
	json_object_set_new(cfg, "hidden_size", json_integer(64));
	json_object_set_new(cfg, "num_key_value_heads", json_integer(3));
	T_CHECK(fn_llama_kind.load(&a, &st, &err) < 0);
	json_object_set_new(cfg, "num_key_value_heads", json_integer(2));
	m.w[0].name = "renamed";   /* lm_head.weight or whichever came first: now missing */
	T_CHECK(fn_llama_kind.load(&a, &st, &err) < 0 || (fn_llama_kind.release(st), 1));
	fx_free(d, &m);
	kern_dev_close(d);
}

void t_main(void)
{
	T_RUN(test_llama_cpu_bf16_matches_hf);
	T_RUN(test_llama_cpu_f32_matches_hf);
	T_RUN(test_llama_cpu_f16_matches_hf);
	T_RUN(test_llama_cpu_int8_agreement);
	T_RUN(test_llama_bad_requests);
	T_RUN(test_llama_stop_sampling_logprobs);
	T_RUN(test_llama_boundary_numbers);
	T_RUN(test_llama_stream);
	T_RUN(test_llama_fed_decode);
	T_RUN(test_llama_bad_configs);
	T_RUN(test_llama_cuda_matches_hf);
	T_RUN(test_llama_cuda_int8_matches_cpu);
}

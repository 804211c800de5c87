/* test_gguf_pack.c — `thaw snapshot pack model.gguf` (runtime/cli/rt_gguf.c): GGUF files written
 * by the test (tests/snapshot/gguf_test_util.h: the format from its spec, llama.cpp's Q/K row
 * permutation applied as convert_hf_to_gguf.py's LlamaModel.permute does) from the llama_tiny
 * HF fixture pack to the same tensors as the fixture's safetensors, and the llama kind's greedy
 * output from both snapshots is identical (F32, F16 and BF16 files); Q8_0 becomes int8 blocks
 * with exactly the file's values, Q4_0/Q4_K/Q5_K/Q6_K become the BF16 of the test's reference
 * dequantization; tied embeddings; the embedded tokenizers (SentencePiece: merges derived from
 * the scores equal Mistral's shipped tokenizer.json merges, and the encodings match HF's; byte
 * level with the GPT-2 pattern, and Meta Llama 3's with llama-bpe) load and encode as HF does; the CLI carries a tokenizer that fits and refuses
 * one that does not; unmapped tensors, unconvertible types and missing metadata fail clearly. */
#include <errno.h>
#include <jansson.h>
#include "functions/fn.h"
#include "functions/fn_kinds.h"
#include "kernels/kern.h"
#include "runtime/cli/rt_gguf.h"
#include "runtime/tok/rt_tok.h"
#include "runtime/tok/rt_tok_gguf.h"
#include "runtime/tok/tok.h"
#include "snapshot/snap.h"
#include "snapshot/snap_gguf.h"
#include "snapshot/snap_pack.h"
#include "snapshot/snap_st.h"
#include "tests/snapshot/gguf_test_util.h"
#include "tests/t.h"

extern const fn_kind fn_llama_kind;

/* ---- a model in HF layout, as floats */
typedef struct hft {
	char name[96];
	int ndim;
	uint64_t shape[2];
	float *v;
} hft;

typedef struct hfm {
	hft t[64];
	int n;
	int D, F, L, H, KVH, V, ctx;
	float eps, theta;
} hfm;

static float bf16f(uint16_t h)
{
	uint32_t u = (uint32_t)h << 16;
	float f;
	memcpy(&f, &u, 4);
	return f;
}
static uint16_t f2bf(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	return (uint16_t)((u + 0x7FFF + ((u >> 16) & 1)) >> 16);
}

static void hfm_free(hfm *m)
{
	for (int i = 0; i < m->n; i++)
		free(m->t[i].v);
	memset(m, 0, sizeof *m);
}

/* llama_tiny's safetensors and config */
static int load_tiny(hfm *m)
{
	char dir[600], err[300];
	snprintf(dir, sizeof dir, "%s/tests/data/llama_tiny", t_src());
	snap_st *s;
	memset(m, 0, sizeof *m);
	if (snap_st_open(&s, dir, err, sizeof err)) {
		fprintf(stderr, "  %s\n", err);
		return -1;
	}
	for (size_t i = 0; i < s->n; i++) {
		hft *t = &m->t[m->n++];
		snprintf(t->name, sizeof t->name, "%s", s->t[i].name);
		t->ndim = (int)s->t[i].ndim;
		uint64_t cnt = 1;
		for (int d = 0; d < t->ndim; d++)
			cnt *= (t->shape[d] = s->t[i].shape[d]);
		t->v = malloc(cnt * 4);
		const uint8_t *p = snap_st_data(s, i);
		for (uint64_t j = 0; j < cnt; j++)
			t->v[j] = bf16f((uint16_t)(p[2 * j] | p[2 * j + 1] << 8));
	}
	json_t *c = json_loads(s->config, 0, NULL);
	m->D = (int)json_integer_value(json_object_get(c, "hidden_size"));
	m->F = (int)json_integer_value(json_object_get(c, "intermediate_size"));
	m->L = (int)json_integer_value(json_object_get(c, "num_hidden_layers"));
	m->H = (int)json_integer_value(json_object_get(c, "num_attention_heads"));
	m->KVH = (int)json_integer_value(json_object_get(c, "num_key_value_heads"));
	m->V = (int)json_integer_value(json_object_get(c, "vocab_size"));
	m->ctx = (int)json_integer_value(json_object_get(c, "max_position_embeddings"));
	m->eps = (float)json_number_value(json_object_get(c, "rms_norm_eps"));
	m->theta = (float)json_number_value(json_object_get(json_object_get(c, "rope_parameters"), "rope_theta"));
	json_decref(c);
	snap_st_close(s);
	return 0;
}

/* a random llama of width 256 (K-quant rows) */
static void make_wide(hfm *m)
{
	static uint32_t r = 99;
	memset(m, 0, sizeof *m);
	m->D = 256, m->F = 256, m->L = 1, m->H = 4, m->KVH = 2, m->V = 64, m->ctx = 64, m->eps = 1e-5f, m->theta = 10000;
	const char *names[] = {"model.embed_tokens.weight", "lm_head.weight", "model.norm.weight",
		"model.layers.0.input_layernorm.weight", "model.layers.0.post_attention_layernorm.weight",
		"model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight",
		"model.layers.0.self_attn.v_proj.weight", "model.layers.0.self_attn.o_proj.weight",
		"model.layers.0.mlp.gate_proj.weight", "model.layers.0.mlp.up_proj.weight",
		"model.layers.0.mlp.down_proj.weight"};
	uint64_t rows[] = {64, 64, 256, 256, 256, 256, 128, 128, 256, 256, 256, 256};
	for (int i = 0; i < 12; i++) {
		hft *t = &m->t[m->n++];
		snprintf(t->name, sizeof t->name, "%s", names[i]);
		int vec = strstr(names[i], "norm") != NULL;
		t->ndim = vec ? 1 : 2;
		t->shape[0] = rows[i];
		t->shape[1] = vec ? 0 : 256;
		uint64_t cnt = vec ? rows[i] : rows[i] * 256;
		t->v = malloc(cnt * 4);
		for (uint64_t j = 0; j < cnt; j++) {
			r = r * 1664525u + 1013904223u;
			float u = ((float)(r >> 8) / 16777216.0f - 0.5f);
			t->v[j] = vec ? 1.0f + 0.2f * u : 0.2f * u;
		}
	}
}

/* GGUF name of an HF name; sets *heads for q/k (0 otherwise) */
static int gguf_name(const hfm *m, const char *hf, char *out, size_t len, int *heads)
{
	int l;
	char part[64];
	*heads = 0;
	if (!strcmp(hf, "model.embed_tokens.weight"))
		return snprintf(out, len, "token_embd.weight"), 0;
	if (!strcmp(hf, "lm_head.weight"))
		return snprintf(out, len, "output.weight"), 0;
	if (!strcmp(hf, "model.norm.weight"))
		return snprintf(out, len, "output_norm.weight"), 0;
	if (sscanf(hf, "model.layers.%d.%63[a-z_.]", &l, part) != 2)
		return -1;
	static const char *const map[][2] = {{"self_attn.q_proj.weight", "attn_q"}, {"self_attn.k_proj.weight", "attn_k"},
		{"self_attn.v_proj.weight", "attn_v"}, {"self_attn.o_proj.weight", "attn_output"},
		{"mlp.gate_proj.weight", "ffn_gate"}, {"mlp.up_proj.weight", "ffn_up"}, {"mlp.down_proj.weight", "ffn_down"},
		{"input_layernorm.weight", "attn_norm"}, {"post_attention_layernorm.weight", "ffn_norm"}};
	for (size_t i = 0; i < sizeof map / sizeof *map; i++)
		if (!strcmp(part, map[i][0])) {
			if (i == 0)
				*heads = m->H;
			if (i == 1)
				*heads = m->KVH;
			return snprintf(out, len, "blk.%d.%s.weight", l, map[i][1]), 0;
		}
	return -1;
}

/* convert_hf_to_gguf.py: w.reshape(n_head, 2, rows/n_head/2, k).swapaxes(1, 2).reshape(w.shape):
 * GGUF row (h, i, half) <- HF row (h, half, i) */
static void permute_fwd(const float *in, float *out, uint64_t rows, uint64_t k, int heads)
{
	uint64_t hd = rows / (uint64_t)heads;
	for (int h = 0; h < heads; h++)
		for (uint64_t half = 0; half < 2; half++)
			for (uint64_t i = 0; i < hd / 2; i++)
				memcpy(out + (h * hd + 2 * i + half) * k, in + (h * hd + half * (hd / 2) + i) * k, k * 4);
}

/* the ggml type of each tensor for a variant */
typedef uint32_t (*type_fn)(const char *hf_name, int ndim);
static uint32_t ty_f32(const char *n, int d) { (void)n; (void)d; return 0; }
static uint32_t ty_f16(const char *n, int d) { (void)n; return d == 2 ? 1 : 0; }
static uint32_t ty_bf16(const char *n, int d) { (void)n; return d == 2 ? 30 : 0; }
static uint32_t ty_q8(const char *n, int d) { return d == 2 && !strstr(n, "embed") ? 8 : d == 2 ? 1 : 0; }
static uint32_t ty_mix(const char *n, int d)
{
	if (d == 1)
		return 0;
	if (strstr(n, "embed"))
		return 2;        /* Q4_0: decoded to BF16 (embeddings stay float) */
	if (strstr(n, "q_proj"))
		return 12;
	if (strstr(n, "k_proj"))
		return 13;
	if (strstr(n, "v_proj") || strstr(n, "down") || strstr(n, "lm_head"))
		return 14;
	if (strstr(n, "o_proj"))
		return 2;
	if (strstr(n, "gate"))
		return 8;
	return 12;
}

typedef struct tokspec {
	int n;                     /* tokens (0: no tokenizer) */
	const char *model;         /* "llama" */
} tokspec;

static const float *extra_vals;   /* the values of write_gguf's extra tensor (NULL: 8 zeros) */
static uint64_t extra_n;

/* write m as a GGUF at path; skip_output drops output.weight (tied embeddings) */
static int write_gguf(const hfm *m, type_fn ty, const char *path, int skip_output, const tokspec *tk,
		      const char *extra_name)
{
	gmeta md = {0};
	gm_str(&md, "general.architecture", "llama");
	gm_str(&md, "general.name", "test");
	gm_u32(&md, "llama.context_length", (uint32_t)m->ctx);
	gm_u32(&md, "llama.embedding_length", (uint32_t)m->D);
	gm_u32(&md, "llama.block_count", (uint32_t)m->L);
	gm_u32(&md, "llama.feed_forward_length", (uint32_t)m->F);
	gm_u32(&md, "llama.rope.dimension_count", (uint32_t)(m->D / m->H));
	gm_u32(&md, "llama.attention.head_count", (uint32_t)m->H);
	gm_u32(&md, "llama.attention.head_count_kv", (uint32_t)m->KVH);
	gm_f32(&md, "llama.attention.layer_norm_rms_epsilon", m->eps);
	gm_f32(&md, "llama.rope.freq_base", m->theta);
	gm_u32(&md, "general.alignment", 32);
	char *toks[512];
	float scores[512];
	int32_t types[512];
	if (tk && tk->n) {
		for (int i = 0; i < tk->n; i++) {
			toks[i] = malloc(16);
			types[i] = 1;
			scores[i] = (float)-i;
			if (i == 0)
				snprintf(toks[i], 16, "<unk>"), types[i] = 2, scores[i] = 0;
			else if (i == 1)
				snprintf(toks[i], 16, "<s>"), types[i] = 3, scores[i] = 0;
			else if (i == 2)
				snprintf(toks[i], 16, "</s>"), types[i] = 3, scores[i] = 0;
			else if (i < 3 + 128)
				snprintf(toks[i], 16, "<0x%02X>", i - 3), types[i] = 6, scores[i] = 0;
			else if (i < 3 + 128 + 26)
				snprintf(toks[i], 16, "\xe2\x96\x81%c", 'a' + (i - 131));
			else if (i < 3 + 128 + 52)
				snprintf(toks[i], 16, "%c", 'a' + (i - 157));
			else if (i == 183)
				snprintf(toks[i], 16, "\xe2\x96\x81");
			else
				snprintf(toks[i], 16, "x%d", i);
		}
		gm_str(&md, "tokenizer.ggml.model", tk->model);
		gm_arr_str(&md, "tokenizer.ggml.tokens", (size_t)tk->n, toks);
		gm_arr_f32(&md, "tokenizer.ggml.scores", (size_t)tk->n, scores);
		gm_arr_i32(&md, "tokenizer.ggml.token_type", (size_t)tk->n, types);
		gm_u32(&md, "tokenizer.ggml.bos_token_id", 1);
		gm_u32(&md, "tokenizer.ggml.eos_token_id", 2);
		gm_u32(&md, "tokenizer.ggml.unknown_token_id", 0);
		gm_bool(&md, "tokenizer.ggml.add_bos_token", 1);
		gm_str(&md, "tokenizer.chat_template", "{% for m in messages %}[INST] <<SYS>>{{ m['content'] }}{% endfor %}");
		for (int i = 0; i < tk->n; i++)
			free(toks[i]);
	}
	gtensor gt[70] = {0};
	size_t nt = 0;
	for (int i = 0; i < m->n; i++) {
		const hft *t = &m->t[i];
		int heads;
		gtensor *g = &gt[nt];
		if (skip_output && !strcmp(t->name, "lm_head.weight"))
			continue;
		if (gguf_name(m, t->name, g->name, sizeof g->name, &heads))
			return -1;
		uint64_t rows = t->ndim == 2 ? t->shape[0] : 1, k = t->ndim == 2 ? t->shape[1] : t->shape[0];
		g->ndim = (uint32_t)t->ndim;
		g->ne[0] = k;
		g->ne[1] = rows;
		g->type = ty(t->name, t->ndim);
		float *x = malloc(rows * k * 4);
		if (heads)
			permute_fwd(t->v, x, rows, k, heads);
		else
			memcpy(x, t->v, rows * k * 4);
		uint64_t cnt = rows * k;
		if (g->type == 0) {
			g->nbytes = cnt * 4;
			g->data = x;
			x = NULL;
		} else if (g->type == 1 || g->type == 30) {
			g->nbytes = cnt * 2;
			uint16_t *h = malloc(g->nbytes);
			for (uint64_t j = 0; j < cnt; j++)
				h[j] = g->type == 1 ? tq_f32_to_f16(x[j]) : f2bf(x[j]);
			g->data = h;
		} else {
			g->nbytes = cnt / (uint64_t)tq_block_elems((int)g->type) * tq_block_bytes((int)g->type);
			g->data = malloc(g->nbytes);
			tq_quant((int)g->type, x, cnt, g->data);
		}
		free(x);
		nt++;
	}
	if (extra_name) {   /* a tensor with no HF counterpart, or rope_freqs (extra_vals) */
		gtensor *g = &gt[nt++];
		snprintf(g->name, sizeof g->name, "%s", extra_name);
		uint64_t n = extra_vals ? extra_n : 8;
		g->ndim = 1, g->ne[0] = n, g->type = 0, g->nbytes = n * 4, g->data = calloc(n, 4);
		if (extra_vals)
			memcpy(g->data, extra_vals, n * 4);
	}
	size_t len;
	uint8_t *b = gguf_write(&md, gt, nt, 32, &len);
	for (size_t i = 0; i < nt; i++)
		free(gt[i].data);
	free(md.b.b);
	FILE *f = fopen(path, "wb");
	int rc = f && fwrite(b, 1, len, f) == len ? 0 : -1;
	if (f)
		fclose(f);
	free(b);
	return rc;
}

/* ---- reading snapshots back */

typedef struct loaded {
	snap_table *tab;
	void *img;
	json_t *meta;
	fn_weight w[128];
	size_t n;
} loaded;

static int load_snap(const char *path, loaded *L)
{
	snap_file *f;
	char err[400];
	memset(L, 0, sizeof *L);
	if (snap_open(&f, path, err, sizeof err)) {
		fprintf(stderr, "  %s\n", err);
		return -1;
	}
	size_t sz = snap_image_size(f);
	L->img = aligned_alloc(4096, (sz + 4095) / 4096 * 4096 + 4096);
	int rc = snap_restore_host(f, L->img, sz, NULL, NULL, err, sizeof err);
	if (!rc)
		rc = snap_table_make(f, L->img, -1, &L->tab);
	L->meta = json_loads(snap_metadata_json(f), 0, NULL);
	snap_close(f);
	if (rc) {
		fprintf(stderr, "  %s\n", err);
		return -1;
	}
	for (size_t i = 0; i < L->tab->n && i < 128; i++) {
		const snap_table_entry *e = &L->tab->t[i];
		fn_weight *w = &L->w[L->n++];
		w->name = e->name;
		w->dtype = e->dtype;
		w->ndim = (int)e->ndim;
		for (uint32_t d = 0; d < e->ndim; d++)
			w->shape[d] = e->shape[d];
		w->data = e->data;
		w->nbytes = e->nbytes;
	}
	return 0;
}

static void unload(loaded *L)
{
	snap_table_free(L->tab);
	free(L->img);
	json_decref(L->meta);
	memset(L, 0, sizeof *L);
}

/* element j of a snapshot tensor as a float (I8 times its scale) */
static float elem(const loaded *L, const snap_table_entry *e, uint64_t j)
{
	const uint8_t *p = e->data;
	if (e->dtype_id == SNAP_DTYPE_F32) {
		float f;
		memcpy(&f, p + 4 * j, 4);
		return f;
	}
	if (e->dtype_id == SNAP_DTYPE_F16)
		return tq_f16_to_f32((uint16_t)(p[2 * j] | p[2 * j + 1] << 8));
	if (e->dtype_id == SNAP_DTYPE_BF16)
		return bf16f((uint16_t)(p[2 * j] | p[2 * j + 1] << 8));
	char sn[200];
	snprintf(sn, sizeof sn, "%s_scale", e->name);
	const snap_table_entry *s = snap_table_find(L->tab, sn);
	uint64_t k = (uint64_t)e->shape[1];
	float sc;
	memcpy(&sc, (const uint8_t *)s->data + 4 * ((j / k) * (k / 32) + (j % k) / 32), 4);
	return (float)(int8_t)p[j] * sc;
}

/* greedy tokens of the llama kind from a snapshot */
static json_t *greedy(const char *path)
{
	loaded L;
	kern_dev *d;
	if (load_snap(path, &L))
		return NULL;
	kern_dev_open("cpu", 2, &d);
	fn_load_args a = {d, L.w, L.n, L.meta};
	void *st = NULL;
	fn_error err;
	json_t *out = NULL;
	if (fn_llama_kind.load(&a, &st, &err) < 0) {
		fprintf(stderr, "  load: %s\n", err.msg);
	} else {
		json_t *in = json_pack("{s:[iiiii],s:i,s:[]}", "tokens", 1, 17, 42, 5, 99 % 64, "max_tokens", 12, "stop");
		json_t *r = fn_invoke_one(&fn_llama_kind, st, in, &err);
		json_decref(in);
		if (r)
			out = json_incref(json_object_get(r, "tokens"));
		else
			fprintf(stderr, "  invoke: %s\n", err.msg);
		json_decref(r);
		fn_llama_kind.release(st);
	}
	kern_dev_close(d);
	unload(&L);
	return out;
}

static int pack_gguf_lib(const char *gguf, const char *out, int int8, char *err, size_t errlen)
{
	rt_gguf *g;
	rt_gguf_opts o = {.int8 = int8, .threads = 2};
	int rc = rt_gguf_import(gguf, &o, &g, err, errlen);
	if (rc)
		return rc;
	snap_pack_opts po = {0};
	po.kind = "llama";
	if (rt_gguf_quantization(g)) {
		static char meta[300];
		snprintf(meta, sizeof meta, "{\"quantization\": %s}", rt_gguf_quantization(g));
		po.extra_metadata = meta;
	}
	snap_pack_stats st;
	rc = snap_pack_from(rt_gguf_source(g), out, &po, &st, err, errlen);
	rt_gguf_free(g);
	return rc;
}

/* ---- tests */

static void test_tiny_float(void)
{
	hfm m;
	if (load_tiny(&m))
		{ T_CHECK(0); return; }
	char ref[600], dir[600], gg[600], sn[600], err[600];
	snprintf(dir, sizeof dir, "%s/tests/data/llama_tiny", t_src());
	snprintf(ref, sizeof ref, "%s/ref.thaw", t_tmpdir());
	snap_pack_opts po = {0};
	po.kind = "llama";
	snap_pack_stats st;
	T_EQ_INT(snap_pack(dir, ref, &po, &st, err, sizeof err), 0);
	json_t *want = greedy(ref);
	T_CHECK(want && json_array_size(want) == 12);
	loaded R;
	T_EQ_INT(load_snap(ref, &R), 0);
	type_fn tys[3] = {ty_f32, ty_f16, ty_bf16};
	const char *names[3] = {"f32", "f16", "bf16"};
	for (int v = 0; v < 3; v++) {
		snprintf(gg, sizeof gg, "%s/tiny-%s.gguf", t_tmpdir(), names[v]);
		snprintf(sn, sizeof sn, "%s/tiny-%s.thaw", t_tmpdir(), names[v]);
		T_EQ_INT(write_gguf(&m, tys[v], gg, 0, NULL, NULL), 0);
		int rc = pack_gguf_lib(gg, sn, 0, err, sizeof err);
		if (rc)
			fprintf(stderr, "  %s: %s\n", names[v], err);
		T_EQ_INT(rc, 0);
		loaded G;
		if (load_snap(sn, &G))
			continue;
		/* the same tensors: names, shapes, values */
		T_EQ_INT(G.tab->n, R.tab->n);
		size_t bad = 0;
		for (size_t i = 0; i < R.tab->n; i++) {
			const snap_table_entry *a = &R.tab->t[i], *b = snap_table_find(G.tab, a->name);
			if (!b || b->ndim != a->ndim || b->shape[0] != a->shape[0] || (a->ndim > 1 && b->shape[1] != a->shape[1])) {
				fprintf(stderr, "  %s: %s missing or of another shape\n", names[v], a->name);
				bad++;
				continue;
			}
			uint64_t cnt = a->ndim > 1 ? (uint64_t)(a->shape[0] * a->shape[1]) : (uint64_t)a->shape[0];
			for (uint64_t j = 0; j < cnt; j++) {
				float x = elem(&R, a, j), y = elem(&G, b, j);
				if (v == 1 && a->ndim == 2)   /* the F16 file holds x rounded to half */
					x = tq_f16_to_f32(tq_f32_to_f16(x));
				if (x != y && bad++ < 3)
					fprintf(stderr, "  %s: %s[%llu] %g vs %g\n", names[v], a->name, (unsigned long long)j, x, y);
			}
		}
		T_EQ_INT(bad, 0);
		json_t *cfg = json_object_get(G.meta, "config");
		T_EQ_STR(json_string_value(json_object_get(cfg, "model_type")), "llama");
		T_CHECK(json_is_false(json_object_get(cfg, "tie_word_embeddings")));
		T_EQ_INT(json_integer_value(json_object_get(cfg, "num_key_value_heads")), 2);
		T_CHECK(json_object_get(json_object_get(G.meta, "provenance"), "gguf") != NULL);
		unload(&G);
		json_t *got = greedy(sn);
		T_CHECK(got && want && json_equal(got, want));
		json_decref(got);
	}
	/* tied embeddings: no output.weight */
	snprintf(gg, sizeof gg, "%s/tied.gguf", t_tmpdir());
	snprintf(sn, sizeof sn, "%s/tied.thaw", t_tmpdir());
	T_EQ_INT(write_gguf(&m, ty_f32, gg, 1, NULL, NULL), 0);
	T_EQ_INT(pack_gguf_lib(gg, sn, 0, err, sizeof err), 0);
	loaded G;
	if (load_snap(sn, &G) == 0) {
		T_CHECK(snap_table_find(G.tab, "lm_head.weight") == NULL);
		T_CHECK(json_is_true(json_object_get(json_object_get(G.meta, "config"), "tie_word_embeddings")));
		unload(&G);
		json_t *got = greedy(sn);
		T_CHECK(got && json_array_size(got) == 12);
		json_decref(got);
	}
	unload(&R);
	json_decref(want);
	hfm_free(&m);
}

/* check every snapshot tensor against the reference dequantization of the GGUF file's data */
static size_t check_quant(const char *gguf_path, const char *snap_path, int int8, int gate_float)
{
	snap_gguf *g;
	char err[400];
	loaded S;
	size_t bad = 0;
	if (snap_gguf_open(gguf_path, &g, err, sizeof err) || load_snap(snap_path, &S))
		return 1;
	for (size_t i = 0; i < g->n_tensors; i++) {
		const snap_gguf_tensor *t = &g->t[i];
		hfm dummy = {.H = 4, .KVH = 2};
		char hf[128] = "";
		/* the HF name back from the GGUF one */
		static const char *const top[][2] = {{"token_embd.weight", "model.embed_tokens.weight"},
			{"output.weight", "lm_head.weight"}, {"output_norm.weight", "model.norm.weight"}};
		static const char *const per[][2] = {{"attn_q", "self_attn.q_proj"}, {"attn_k", "self_attn.k_proj"},
			{"attn_v", "self_attn.v_proj"}, {"attn_output", "self_attn.o_proj"}, {"ffn_gate", "mlp.gate_proj"},
			{"ffn_up", "mlp.up_proj"}, {"ffn_down", "mlp.down_proj"}, {"attn_norm", "input_layernorm"},
			{"ffn_norm", "post_attention_layernorm"}};
		int layer;
		char part[64];
		for (size_t q = 0; q < 3; q++)
			if (!strcmp(t->name, top[q][0]))
				snprintf(hf, sizeof hf, "%s", top[q][1]);
		if (sscanf(t->name, "blk.%d.%63[a-z_]", &layer, part) == 2)
			for (size_t q = 0; q < sizeof per / sizeof *per; q++)
				if (!strcmp(part, per[q][0]))
					snprintf(hf, sizeof hf, "model.layers.%d.%s.weight", layer, per[q][1]);
		int heads = strstr(hf, "q_proj") ? dummy.H : strstr(hf, "k_proj") ? dummy.KVH : 0;
		const snap_table_entry *e = snap_table_find(S.tab, hf);
		if (!e) {
			fprintf(stderr, "  %s: no %s in the snapshot\n", t->name, hf);
			bad++;
			continue;
		}
		uint64_t k = t->ne[0], rows = t->ndim == 2 ? t->ne[1] : 1, hd = heads ? rows / (uint64_t)heads : 0;
		const uint8_t *data = snap_gguf_data(g, i);
		int quant = t->type != 0 && t->type != 1 && t->type != 30;
		/* in the mixed file gate is Q8_0 and up Q4_K: both become BF16 unless int8 is asked */
		int want_i8 = t->ndim == 2 && !strstr(hf, "embed") && (t->type == 8 || int8) &&
			      (int8 || !gate_float || !strstr(hf, "gate_proj"));
		if ((want_i8 && e->dtype_id != SNAP_DTYPE_I8) ||
		    (!want_i8 && quant && e->dtype_id != SNAP_DTYPE_BF16)) {
			fprintf(stderr, "  %s: dtype %s\n", hf, e->dtype);
			bad++;
			continue;
		}
		for (uint64_t r = 0; r < rows; r++) {
			/* HF row r is GGUF row h*hd + 2i + half */
			uint64_t sr = r;
			if (heads) {
				uint64_t h = r / hd, j = r % hd, half = j / (hd / 2), ii = j % (hd / 2);
				sr = h * hd + 2 * ii + half;
			}
			for (uint64_t c = 0; c < k; c++) {
				float ref = quant ? tq_deq((int)t->type, data, sr * k + c) : 0;
				if (!quant && t->type == 1)
					ref = tq_f16_to_f32((uint16_t)(data[2 * (sr * k + c)] | data[2 * (sr * k + c) + 1] << 8));
				else if (!quant)
					memcpy(&ref, data + 4 * (sr * k + c), 4);
				float got = elem(&S, e, r * k + c);
				float want = e->dtype_id == SNAP_DTYPE_BF16 ? bf16f(f2bf(ref)) : ref;
				if (want_i8 && t->type != 8)
					want = got;   /* requantized: checked by its error below */
				if (want_i8 && t->type != 8 && fabsf(got - ref) > 0.01f * 2)
					want = -12345;
				if (memcmp(&got, &want, 4) && bad++ < 4)
					fprintf(stderr, "  %s[%llu,%llu]: %g, reference %g\n", hf, (unsigned long long)r,
						(unsigned long long)c, got, want);
			}
		}
	}
	unload(&S);
	snap_gguf_close(g);
	return bad;
}

static void test_quantized(void)
{
	char gg[600], sn[600], err[600];
	/* Q8_0 llama_tiny: exact int8 blocks; the model runs */
	hfm m;
	if (load_tiny(&m))
		{ T_CHECK(0); return; }
	snprintf(gg, sizeof gg, "%s/tiny-q8.gguf", t_tmpdir());
	snprintf(sn, sizeof sn, "%s/tiny-q8.thaw", t_tmpdir());
	T_EQ_INT(write_gguf(&m, ty_q8, gg, 0, NULL, NULL), 0);
	m.H = 4;
	T_EQ_INT(pack_gguf_lib(gg, sn, 0, err, sizeof err), 0);
	T_EQ_INT(check_quant(gg, sn, 0, 0), 0);   /* Q8_0 rows, permuted q / k among them */
	json_t *got = greedy(sn);
	T_CHECK(got && json_array_size(got) == 12);
	json_decref(got);
	hfm_free(&m);
	/* a 256-wide model with Q4_0, Q4_K, Q5_K, Q6_K and Q8_0 tensors */
	make_wide(&m);
	snprintf(gg, sizeof gg, "%s/wide.gguf", t_tmpdir());
	snprintf(sn, sizeof sn, "%s/wide.thaw", t_tmpdir());
	T_EQ_INT(write_gguf(&m, ty_mix, gg, 0, NULL, NULL), 0);
	int rc = pack_gguf_lib(gg, sn, 0, err, sizeof err);
	if (rc)
		fprintf(stderr, "  %s\n", err);
	T_EQ_INT(rc, 0);
	T_EQ_INT(check_quant(gg, sn, 0, 1), 0);
	got = greedy(sn);
	T_CHECK(got && json_array_size(got) == 12);
	json_decref(got);
	/* --int8: every projection int8 with 32-blocks */
	snprintf(sn, sizeof sn, "%s/wide-int8.thaw", t_tmpdir());
	T_EQ_INT(pack_gguf_lib(gg, sn, 1, err, sizeof err), 0);
	T_EQ_INT(check_quant(gg, sn, 1, 1), 0);
	got = greedy(sn);
	T_CHECK(got && json_array_size(got) == 12);
	json_decref(got);
	hfm_free(&m);
}

static void test_import_errors(void)
{
	hfm m;
	char gg[600], err[600];
	rt_gguf *g;
	make_wide(&m);
	snprintf(gg, sizeof gg, "%s/extra.gguf", t_tmpdir());
	T_EQ_INT(write_gguf(&m, ty_f32, gg, 0, NULL, "blk.0.attn_q.bias"), 0);
	T_EQ_INT(rt_gguf_import(gg, NULL, &g, err, sizeof err), -ENOTSUP);
	T_CHECK(strstr(err, "blk.0.attn_q.bias has no counterpart") != NULL);
	T_EQ_INT(write_gguf(&m, ty_f32, gg, 0, NULL, "blk.7.attn_q.weight"), 0);
	T_EQ_INT(rt_gguf_import(gg, NULL, &g, err, sizeof err), -EBADMSG);
	T_CHECK(strstr(err, "layer 7") != NULL);
	/* Llama 3.2's rope scaling as convert_hf_to_gguf.py writes it: rope_freqs.weight */
	float fr[32], one[32];
	double theta = 10000.0, factor = 32, lo = 1, hi = 4, orig = 8192;
	for (int j = 0; j < 32; j++) {
		float freq = (float)(1.0 / pow(theta, (double)(2 * j) / 64.0));
		double wl = 2 * M_PI / freq;
		fr[j] = wl < orig / hi ? 1.0f : wl > orig / lo ? (float)factor :
			(float)(1 / ((1 - (orig / wl - lo) / (hi - lo)) / factor + (orig / wl - lo) / (hi - lo)));
		one[j] = 1;
	}
	extra_vals = fr, extra_n = 32;
	T_EQ_INT(write_gguf(&m, ty_f32, gg, 0, NULL, "rope_freqs.weight"), 0);
	int rc = rt_gguf_import(gg, NULL, &g, err, sizeof err);
	T_EQ_INT(rc, 0);
	if (rc == 0) {
		json_t *rs = json_object_get(rt_gguf_config(g), "rope_scaling");
		T_EQ_STR(json_string_value(json_object_get(rs, "rope_type")), "llama3");
		T_CHECK(json_number_value(json_object_get(rs, "factor")) == 32.0);
		T_EQ_INT(json_integer_value(json_object_get(rs, "original_max_position_embeddings")), 8192);
		rt_gguf_free(g);
	}
	fr[3] *= 1.5f;   /* factors of no known scheme */
	T_EQ_INT(write_gguf(&m, ty_f32, gg, 0, NULL, "rope_freqs.weight"), 0);
	T_EQ_INT(rt_gguf_import(gg, NULL, &g, err, sizeof err), -ENOTSUP);
	T_CHECK(strstr(err, "rope_freqs") != NULL);
	extra_vals = one;   /* all ones: dropped */
	T_EQ_INT(write_gguf(&m, ty_f32, gg, 0, NULL, "rope_freqs.weight"), 0);
	T_EQ_INT(rt_gguf_import(gg, NULL, &g, err, sizeof err), 0);
	if (g) {
		T_CHECK(json_object_get(rt_gguf_config(g), "rope_scaling") == NULL);
		T_EQ_INT(rt_gguf_source(g)->n, 12);
		rt_gguf_free(g);
	}
	extra_vals = NULL;
	hfm_free(&m);
	/* a Q2_K tensor; no architecture */
	gmeta md = {0};
	gm_str(&md, "general.architecture", "llama");
	gm_u32(&md, "llama.embedding_length", 256);
	gm_u32(&md, "llama.feed_forward_length", 256);
	gm_u32(&md, "llama.block_count", 1);
	gm_u32(&md, "llama.attention.head_count", 4);
	gm_f32(&md, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
	gtensor t = {.name = "blk.0.ffn_up.weight", .type = 10, .ndim = 2, .ne = {256, 2}, .nbytes = 168};
	t.data = calloc(1, 168);
	size_t len;
	uint8_t *b = gguf_write(&md, &t, 1, 32, &len);
	FILE *f = fopen(gg, "wb");
	fwrite(b, 1, len, f);
	fclose(f);
	T_EQ_INT(rt_gguf_import(gg, NULL, &g, err, sizeof err), -ENOTSUP);
	T_CHECK(strstr(err, "type Q2_K") != NULL);
	free(b);
	free(t.data);
	/* only an embedding: the layers are missing */
	gtensor te = {.name = "token_embd.weight", .type = 0, .ndim = 2, .ne = {256, 4}, .nbytes = 4096};
	te.data = calloc(1, 4096);
	b = gguf_write(&md, &te, 1, 32, &len);
	f = fopen(gg, "wb");
	fwrite(b, 1, len, f);
	fclose(f);
	T_EQ_INT(rt_gguf_import(gg, NULL, &g, err, sizeof err), -EBADMSG);
	T_CHECK(strstr(err, "no tensor for model.layers.0.self_attn.q_proj.weight") != NULL);
	free(b);
	free(te.data);
	free(md.b.b);
	memset(&md, 0, sizeof md);
	gm_str(&md, "general.architecture", "gemma");
	b = gguf_write(&md, NULL, 0, 32, &len);
	f = fopen(gg, "wb");
	fwrite(b, 1, len, f);
	fclose(f);
	T_EQ_INT(rt_gguf_import(gg, NULL, &g, err, sizeof err), -ENOTSUP);
	T_CHECK(strstr(err, "\"gemma\" is not mapped") != NULL);
	free(b);
	free(md.b.b);
	memset(&md, 0, sizeof md);
	gm_str(&md, "general.architecture", "llama");
	b = gguf_write(&md, NULL, 0, 32, &len);
	f = fopen(gg, "wb");
	fwrite(b, 1, len, f);
	fclose(f);
	T_EQ_INT(rt_gguf_import(gg, NULL, &g, err, sizeof err), -EBADMSG);
	T_CHECK(strstr(err, "llama.embedding_length: missing") != NULL);
	free(b);
	free(md.b.b);
}

/* the tokenizer fixture NAME as a GGUF tokenizer: tokens in id order (added tokens included),
 * SentencePiece scores as the SPM model has them (-id, whitespace runs last, bytes and
 * controls 0), or the byte-level merges */
static uint8_t *tok_gguf(const char *path, int spm, const char *pre, size_t *len)
{
	json_t *j = json_load_file(path, 0, NULL), *vocab = json_object_get(json_object_get(j, "model"), "vocab");
	size_t n = json_object_size(vocab);
	json_t *v, *it;
	const char *k;
	size_t i;
	json_array_foreach(json_object_get(j, "added_tokens"), i, it)
		if ((size_t)json_integer_value(json_object_get(it, "id")) + 1 > n)
			n = (size_t)json_integer_value(json_object_get(it, "id")) + 1;
	char **toks = calloc(n, sizeof *toks);
	float *sc = calloc(n, sizeof *sc);
	int32_t *ty = calloc(n, sizeof *ty);
	json_object_foreach(vocab, k, v) {
		size_t id = (size_t)json_integer_value(v);
		toks[id] = strdup(k);
		ty[id] = !strncmp(k, "<0x", 3) && strlen(k) == 6 ? 6 : 1;
		int ws = strlen(k) % 3 == 0;
		for (size_t c = 0; ws && c < strlen(k); c += 3)
			ws = !strncmp(k + c, "\xe2\x96\x81", 3);
		sc[id] = ty[id] == 6 ? 0 : ws && strlen(k) > 3 ? -1e9f : -(float)id;
	}
	json_array_foreach(json_object_get(j, "added_tokens"), i, it) {
		size_t id = (size_t)json_integer_value(json_object_get(it, "id"));
		if (!toks[id])
			toks[id] = strdup(json_string_value(json_object_get(it, "content")));
		ty[id] = json_is_true(json_object_get(it, "special")) ? 3 : 4;
		sc[id] = 0;
	}
	gmeta md = {0};
	gm_str(&md, "general.architecture", "llama");
	gm_str(&md, "tokenizer.ggml.model", spm ? "llama" : "gpt2");
	gm_arr_str(&md, "tokenizer.ggml.tokens", n, toks);
	gm_arr_i32(&md, "tokenizer.ggml.token_type", n, ty);
	if (spm) {
		ty[0] = 2;
		gm_arr_f32(&md, "tokenizer.ggml.scores", n, sc);
		gm_u32(&md, "tokenizer.ggml.unknown_token_id", 0);
		gm_u32(&md, "tokenizer.ggml.bos_token_id", 1);
		gm_u32(&md, "tokenizer.ggml.eos_token_id", 2);
		gm_bool(&md, "tokenizer.ggml.add_bos_token", 1);
	} else {
		json_t *mg = json_object_get(json_object_get(j, "model"), "merges");
		size_t nm = json_array_size(mg);
		char **ms = calloc(nm, sizeof *ms);
		json_array_foreach(mg, i, it) {
			if (json_is_string(it)) {   /* the older "a b" form */
				ms[i] = strdup(json_string_value(it));
				continue;
			}
			const char *a = json_string_value(json_array_get(it, 0)), *b = json_string_value(json_array_get(it, 1));
			ms[i] = malloc(strlen(a) + strlen(b) + 2);
			sprintf(ms[i], "%s %s", a, b);
		}
		gm_str(&md, "tokenizer.ggml.pre", pre);
		gm_arr_str(&md, "tokenizer.ggml.merges", nm, ms);
		gm_u32(&md, "tokenizer.ggml.eos_token_id", 0);
		gm_bool(&md, "tokenizer.ggml.add_bos_token", 0);
		for (i = 0; i < nm; i++)
			free(ms[i]);
		free(ms);
	}
	uint8_t *b = gguf_write(&md, NULL, 0, 32, len);
	for (i = 0; i < n; i++)
		free(toks[i]);
	free(toks);
	free(sc);
	free(ty);
	free(md.b.b);
	json_decref(j);
	return b;
}

static void check_encodings(const char *name, tok_tokenizer *t)
{
	char p[600];
	snprintf(p, sizeof p, "%s/tests/data/tok/%s/expected.json", t_src(), name);
	json_t *e = json_load_file(p, JSON_ALLOW_NUL, NULL), *c;
	size_t i, bad = 0, n = 0;
	json_array_foreach(json_object_get(e, "cases"), i, c) {
		const char *text = json_string_value(json_object_get(c, "text"));
		size_t tlen = json_string_length(json_object_get(c, "text"));
		for (int sp = 0; sp < 2; sp++) {
			int32_t *ids;
			size_t nid;
			json_t *want = json_object_get(c, sp ? "ids_special" : "ids");
			if (tok_encode(t, text, tlen, sp, &ids, &nid)) {
				bad++;
				continue;
			}
			int same = nid == json_array_size(want);
			for (size_t k = 0; same && k < nid; k++)
				same = ids[k] == json_integer_value(json_array_get(want, k));
			if (!same && bad++ < 3)
				fprintf(stderr, "  %s: \"%.40s\" (special %d) encodes otherwise\n", name, text, sp);
			n++;
			free(ids);
		}
	}
	T_CHECK(n >= 40);
	T_EQ_INT(bad, 0);
	json_decref(e);
}

static void test_tokenizers(void)
{
	size_t len;
	char err[400];
	snap_gguf *g;
	json_t *tok, *cfg;
	tok_tokenizer *t;
	/* SentencePiece (Mistral's vocabulary): the derived merges are the shipped ones */
	char p[600];
	snprintf(p, sizeof p, "%s/tests/data/tok/mistral/tokenizer.json", t_src());
	uint8_t *b = tok_gguf(p, 1, NULL, &len);
	T_EQ_INT(snap_gguf_parse_mem(b, len, &g, err, sizeof err), 0);
	T_EQ_INT(rt_tok_gguf_convert(g, &tok, &cfg, err, sizeof err), 0);
	json_t *ship = json_load_file(p, 0, NULL);
	json_t *sm = json_object_get(json_object_get(ship, "model"), "merges"), *mm = json_object_get(json_object_get(tok, "model"), "merges");
	T_EQ_INT(json_array_size(mm), json_array_size(sm));
	size_t bad = 0;
	for (size_t i = 0; i < json_array_size(sm) && i < json_array_size(mm); i++) {
		char m2[300];
		json_t *x = json_array_get(mm, i), *s = json_array_get(sm, i);
		snprintf(m2, sizeof m2, "%s %s", json_string_value(json_array_get(x, 0)), json_string_value(json_array_get(x, 1)));
		const char *want = json_is_string(s) ? json_string_value(s) : NULL;
		char w2[300];
		if (!want) {
			snprintf(w2, sizeof w2, "%s %s", json_string_value(json_array_get(s, 0)), json_string_value(json_array_get(s, 1)));
			want = w2;
		}
		if (strcmp(m2, want) && bad++ < 3)
			fprintf(stderr, "  merge %zu: %s, shipped %s\n", i, m2, want);
	}
	T_EQ_INT(bad, 0);
	T_CHECK(json_equal(json_object_get(json_object_get(tok, "model"), "vocab"),
			   json_object_get(json_object_get(ship, "model"), "vocab")));
	T_EQ_INT(tok_load_json(&t, tok, cfg, err, sizeof err), 0);
	if (t) {
		T_EQ_INT(tok_bos(t), 1);
		T_EQ_INT(tok_eos(t), 2);
		check_encodings("mistral", t);
		tok_free(t);
	}
	/* the vocabulary check: a 32000-token tokenizer does not fit a 256-row model */
	T_EQ_INT(rt_tok_check_vocab(256, "test", tok, cfg, NULL, "tok", "cfg", err, sizeof err), -ERANGE);
	T_CHECK(strstr(err, "does not fit") != NULL);
	T_EQ_INT(rt_tok_check_vocab(32000, "test", tok, cfg, NULL, "tok", "cfg", err, sizeof err), 0);
	json_t *mc = json_pack("{s:i}", "eos_token_id", 40000);
	T_EQ_INT(rt_tok_check_vocab(32000, "test", tok, cfg, mc, "tok", "cfg", err, sizeof err), -ERANGE);
	T_CHECK(strstr(err, "eos_token_id") != NULL);
	json_decref(mc);
	json_decref(ship);
	json_decref(tok);
	json_decref(cfg);
	snap_gguf_close(g);
	free(b);
	/* byte-level BPE (GPT-2 split pattern) */
	snprintf(p, sizeof p, "%s/tests/data/tok/small/tokenizer.json", t_src());
	b = tok_gguf(p, 0, "gpt2", &len);
	T_EQ_INT(snap_gguf_parse_mem(b, len, &g, err, sizeof err), 0);
	T_EQ_INT(rt_tok_gguf_convert(g, &tok, &cfg, err, sizeof err), 0);
	T_EQ_INT(tok_load_json(&t, tok, cfg, err, sizeof err), 0);
	if (t) {
		check_encodings("small", t);
		tok_free(t);
	}
	json_decref(tok);
	json_decref(cfg);
	snap_gguf_close(g);
	free(b);
	/* Meta Llama 3's byte-level BPE as llama.cpp stores it (tokenizer.ggml.pre llama-bpe) */
	snprintf(p, sizeof p, "%s/llama3.json", t_tmpdir());
	T_EQ_INT(t_sh(NULL, 0, "gzip -dc %s/tests/data/tok/llama3/tokenizer.json.gz > %s", t_src(), p), 0);
	b = tok_gguf(p, 0, "llama-bpe", &len);
	T_EQ_INT(snap_gguf_parse_mem(b, len, &g, err, sizeof err), 0);
	T_EQ_INT(rt_tok_gguf_convert(g, &tok, &cfg, err, sizeof err), 0);
	T_EQ_INT(tok_load_json(&t, tok, cfg, err, sizeof err), 0);
	if (t) {
		T_EQ_INT(tok_vocab_size(t), 128256);
		check_encodings("llama3", t);
		tok_free(t);
	}
	json_decref(tok);
	json_decref(cfg);
	snap_gguf_close(g);
	free(b);
	/* an unsupported tokenizer model; inconsistent metadata */
	gmeta md = {0};
	gm_str(&md, "tokenizer.ggml.model", "bert");
	b = gguf_write(&md, NULL, 0, 32, &len);
	T_EQ_INT(snap_gguf_parse_mem(b, len, &g, err, sizeof err), 0);
	T_EQ_INT(rt_tok_gguf_convert(g, &tok, &cfg, err, sizeof err), -ENOTSUP);
	T_CHECK(strstr(err, "\"bert\" is not supported") != NULL);
	snap_gguf_close(g);
	free(b);
	free(md.b.b);
	memset(&md, 0, sizeof md);
	char *toks[] = {"a", "b", "a"};
	float sc[] = {0, 0, 0};
	gm_str(&md, "tokenizer.ggml.model", "llama");
	gm_arr_str(&md, "tokenizer.ggml.tokens", 3, toks);
	gm_arr_f32(&md, "tokenizer.ggml.scores", 3, sc);
	b = gguf_write(&md, NULL, 0, 32, &len);
	T_EQ_INT(snap_gguf_parse_mem(b, len, &g, err, sizeof err), 0);
	T_EQ_INT(rt_tok_gguf_convert(g, &tok, &cfg, err, sizeof err), -EBADMSG);
	T_CHECK(strstr(err, "appears twice") != NULL);
	snap_gguf_close(g);
	free(b);
	free(md.b.b);
	memset(&md, 0, sizeof md);
	gm_str(&md, "tokenizer.ggml.model", "llama");
	gm_arr_str(&md, "tokenizer.ggml.tokens", 2, toks);
	gm_arr_f32(&md, "tokenizer.ggml.scores", 2, sc);
	gm_u32(&md, "tokenizer.ggml.eos_token_id", 7);
	b = gguf_write(&md, NULL, 0, 32, &len);
	T_EQ_INT(snap_gguf_parse_mem(b, len, &g, err, sizeof err), 0);
	T_EQ_INT(rt_tok_gguf_convert(g, &tok, &cfg, err, sizeof err), -EBADMSG);
	T_CHECK(strstr(err, "eos_token_id") != NULL);
	snap_gguf_close(g);
	free(b);
	free(md.b.b);
}

/* the CLI: a GGUF with a tokenizer that fits packs with it; one that does not is refused */
static void test_cli(void)
{
	hfm m;
	if (load_tiny(&m))
		{ T_CHECK(0); return; }
	char gg[600], sn[600], out[4096];
	snprintf(gg, sizeof gg, "%s/tok.gguf", t_tmpdir());
	snprintf(sn, sizeof sn, "%s/tok.thaw", t_tmpdir());
	tokspec tk = {256, "llama"};
	T_EQ_INT(write_gguf(&m, ty_f16, gg, 0, &tk, NULL), 0);
	int rc = t_sh(out, sizeof out, "%s snapshot pack %s -o %s --quiet 2>&1", t_bin(), gg, sn);
	if (rc)
		fprintf(stderr, "  %s\n", out);
	T_EQ_INT(rc, 0);
	tok_tokenizer *t = NULL;
	char err[400];
	T_EQ_INT(rt_tok_from_snapshot(sn, &t, err, sizeof err), 0);
	if (t) {
		T_EQ_INT(tok_vocab_size(t), 256);
		T_EQ_INT(tok_bos(t), 1);
		int32_t *ids;
		size_t n;
		T_EQ_INT(tok_encode(t, "ab", 2, 1, &ids, &n), 0);
		/* <s> "▁a" (merged from "▁" and "a") "b" */
		T_CHECK(n == 3 && ids[0] == 1 && ids[1] == 131 && ids[2] == 158);
		free(ids);
		/* the GGUF's tokenizer.chat_template renders */
		tok_msg msg[1] = {{"user", "hi"}};
		char *prompt = NULL;
		T_EQ_INT(tok_chat(t, msg, 1, &prompt, err, sizeof err), 0);
		T_EQ_STR(prompt, "[INST] <<SYS>>hi");
		free(prompt);
		tok_free(t);
	}
	T_EQ_INT(t_sh(out, sizeof out, "%s snapshot inspect %s --json", t_bin(), sn), 0);
	T_CHECK(strstr(out, "\"kind\": \"llama\"") != NULL);
	/* int8 from the CLI */
	T_EQ_INT(t_sh(out, sizeof out, "%s snapshot pack %s -o %s.i8 --int8 --quiet 2>&1", t_bin(), gg, sn), 0);
	T_EQ_INT(t_sh(out, sizeof out, "%s snapshot inspect %s.i8 --json", t_bin(), sn), 0);
	T_CHECK(strstr(out, "self_attn.q_proj.weight_scale") != NULL);
	T_EQ_INT(t_sh(out, sizeof out, "%s snapshot pack %s -o %s.x --quantize int8 2>&1", t_bin(), gg, sn), 2);
	T_CHECK(strstr(out, "32-element blocks") != NULL);
	/* 300 tokens for 256 rows */
	tk.n = 300;
	T_EQ_INT(write_gguf(&m, ty_f16, gg, 0, &tk, NULL), 0);
	T_EQ_INT(t_sh(out, sizeof out, "%s snapshot pack %s -o %s.bad --quiet 2>&1", t_bin(), gg, sn), 1);
	T_CHECK(strstr(out, "does not fit the model") != NULL && strstr(out, "token_embd") != NULL);
	T_EQ_INT(t_sh(out, sizeof out, "%s snapshot pack %s -o %s.bad --no-tokenizer --quiet 2>&1", t_bin(), gg, sn), 0);
	/* --tokenizer DIR instead of the file's own: checked the same way (512 ids, 256 rows) */
	T_EQ_INT(t_sh(out, sizeof out, "%s snapshot pack %s -o %s.t2 --tokenizer %s/tests/data/tok/small --quiet 2>&1",
		      t_bin(), gg, sn, t_src()), 1);
	T_CHECK(strstr(out, "does not fit the model") != NULL && strstr(out, "tok/small/tokenizer.json") != NULL);
	/* an unsupported tokenizer: packed without one, and said so */
	tk.model = "bert";
	T_EQ_INT(write_gguf(&m, ty_f16, gg, 0, &tk, NULL), 0);
	T_EQ_INT(t_sh(out, sizeof out, "%s snapshot pack %s -o %s.nt --quiet 2>&1", t_bin(), gg, sn), 0);
	T_CHECK(strstr(out, "packed without a tokenizer") != NULL);
	/* a hostile file */
	FILE *f = fopen(gg, "wb");
	fwrite("GGUF\3\0\0\0\xff\xff\xff\xff\xff\xff\xff\x7f\0\0\0\0\0\0\0\0", 1, 24, f);
	fwrite("0123456789abcdef", 1, 16, f);
	fclose(f);
	T_EQ_INT(t_sh(out, sizeof out, "%s snapshot pack %s -o %s.h 2>&1", t_bin(), gg, sn), 1);
	T_CHECK(strstr(out, "tensors, more than") != NULL);
	hfm_free(&m);
}

/* the pack-time check for a safetensors directory: config.json's eos_token_id must be a row */
static void test_st_special_ids(void)
{
	char dir[600], out[4096];
	snprintf(dir, sizeof dir, "%s/st", t_tmpdir());
	T_EQ_INT(t_sh(NULL, 0, "mkdir -p %s && cp %s/tests/data/llama_tiny/model.safetensors %s/", dir, t_src(), dir), 0);
	FILE *f;
	char p[700];
	snprintf(p, sizeof p, "%s/tokenizer.json", dir);
	f = fopen(p, "w");
	fputs("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": []}}", f);
	fclose(f);
	snprintf(p, sizeof p, "%s/config.json", dir);
	T_EQ_INT(t_sh(NULL, 0, "sed 's/\"eos_token_id\": 2/\"eos_token_id\": 999/' %s/tests/data/llama_tiny/config.json > %s",
		      t_src(), p), 0);
	T_EQ_INT(t_sh(out, sizeof out, "%s snapshot pack %s -o %s/st.thaw --quiet 2>&1", t_bin(), dir, dir), 1);
	T_CHECK(strstr(out, "eos_token_id") != NULL && strstr(out, "256") != NULL);
	T_EQ_INT(t_sh(NULL, 0, "cp %s/tests/data/llama_tiny/config.json %s", t_src(), p), 0);
	T_EQ_INT(t_sh(out, sizeof out, "%s snapshot pack %s -o %s/st.thaw --quiet 2>&1", t_bin(), dir, dir), 0);
}

void t_main(void)
{
	T_RUN(test_tiny_float);
	T_RUN(test_quantized);
	T_RUN(test_import_errors);
	T_RUN(test_tokenizers);
	T_RUN(test_cli);
	T_RUN(test_st_special_ids);
}

/* snap_genmodel.c — writes a synthetic Llama-shaped BF16 model for the benchmarks:
 * DIR/model.safetensors (weights ~ N(0, 0.02), norms = 1.0, as a freshly initialised model)
 * and DIR/config.json (model_type llama). Shapes follow TinyLlama-1.1B (hidden 2048,
 * intermediate 5632, 32 heads, 4 KV heads, vocab 32000); LAYERS sets the size (22 layers =
 * 1.1 B parameters = 2.2 GB). Deterministic for a given seed.
 * --shape HIDDEN,INTER,HEADS,KVHEADS,VOCAB picks other shapes (bench_serve's CPU model);
 * --no-eos writes eos_token_id 2 (bos 1, 2048 positions) into config.json and zeroes row 2
 * of lm_head.weight, so greedy decoding never picks eos (its logit is 0 while the largest of
 * the others is positive) and every request runs to its max_tokens.
 * --gguf f16|bf16|q8_0 also writes DIR/model.gguf, the same weights as llama.cpp lays them out
 * (GGUF v3, llama.cpp tensor names, q_proj / k_proj rows permuted as its converter does, the
 * matrices in that type, norms F32), for the GGUF import benchmark.
 * usage: snap_genmodel DIR [LAYERS] [SEED] [--shape H,I,HEADS,KVHEADS,VOCAB] [--no-eos]
 *        [--gguf TYPE] */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static uint64_t H = 2048, I = 5632, V = 32000, NH = 32, NKV = 4, KV = 256;
static int no_eos;
static int gguf_type = -1;   /* ggml type code: 1 F16, 30 BF16, 8 Q8_0 */
#define EOS_ID 2

typedef struct gt { char name[96]; uint64_t rows, cols; int is_norm; uint64_t off; } gt;

static int is_lm_head(const gt *t) { return !strcmp(t->name, "lm_head.weight"); }

static uint16_t bf16(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	u += 0x7fff + ((u >> 16) & 1);
	return (uint16_t)(u >> 16);
}

typedef struct job { gt *t; size_t n; uint16_t *base; uint64_t seed; size_t next; pthread_mutex_t mu; } job;

static void *fill(void *arg)
{
	job *j = arg;
	for (;;) {
		pthread_mutex_lock(&j->mu);
		size_t i = j->next++;
		pthread_mutex_unlock(&j->mu);
		if (i >= j->n)
			return NULL;
		gt *t = &j->t[i];
		uint16_t *p = j->base + t->off / 2;
		uint64_t cnt = t->rows * t->cols, s = j->seed * 0x9E3779B97F4A7C15ull + i * 0xD1B54A32D192ED03ull + 1;
		if (t->is_norm) {
			for (uint64_t k = 0; k < cnt; k++)
				p[k] = bf16(1.0f);
			continue;
		}
		for (uint64_t k = 0; k < cnt; k += 2) {
			double u1, u2;
			s ^= s << 13; s ^= s >> 7; s ^= s << 17;
			u1 = ((s >> 11) + 1) * (1.0 / 9007199254740993.0);
			s ^= s << 13; s ^= s >> 7; s ^= s << 17;
			u2 = (s >> 11) * (1.0 / 9007199254740992.0);
			double r = sqrt(-2 * log(u1)) * 0.02;
			p[k] = bf16((float)(r * cos(6.283185307179586 * u2)));
			if (k + 1 < cnt)
				p[k + 1] = bf16((float)(r * sin(6.283185307179586 * u2)));
		}
		if (no_eos && is_lm_head(t) && t->rows > EOS_ID)
			memset(p + EOS_ID * t->cols, 0, t->cols * sizeof *p);
	}
}

/* ---- GGUF ---- */

static float bf16_f32(uint16_t h)
{
	uint32_t u = (uint32_t)h << 16;
	float f;
	memcpy(&f, &u, 4);
	return f;
}

static uint16_t f32_f16(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	uint32_t sign = (u >> 16) & 0x8000, mant = u & 0x7FFFFF;
	int32_t e = (int32_t)((u >> 23) & 0xFF) - 127 + 15;
	if (e >= 31)
		return (uint16_t)(sign | 0x7C00);
	if (e <= 0) {
		if (e < -10)
			return (uint16_t)sign;
		mant |= 0x800000;
		uint32_t sh = (uint32_t)(14 - e), h = mant >> sh, rem = mant & ((1u << sh) - 1), half = 1u << (sh - 1);
		return (uint16_t)(sign | (h + (rem > half || (rem == half && (h & 1)))));
	}
	uint32_t h = (uint32_t)e << 10 | mant >> 13, rem = mant & 0x1FFF;
	return (uint16_t)(sign | (h + (rem > 0x1000 || (rem == 0x1000 && (h & 1)))));
}

static int put(FILE *f, const void *p, size_t n) { return fwrite(p, 1, n, f) == n ? 0 : -1; }
static int put32(FILE *f, uint32_t v) { return put(f, &v, 4); }   /* little-endian hosts */
static int put64(FILE *f, uint64_t v) { return put(f, &v, 8); }
static int putstr(FILE *f, const char *s) { return put64(f, strlen(s)) || put(f, s, strlen(s)); }
static int kv_u32(FILE *f, const char *k, uint32_t v) { return putstr(f, k) || put32(f, 4) || put32(f, v); }
static int kv_f32(FILE *f, const char *k, float v) { uint32_t u; memcpy(&u, &v, 4); return putstr(f, k) || put32(f, 6) || put32(f, u); }

/* the GGUF name of an HF tensor name; *heads: the permutation's head count for q / k */
static void gguf_name(const char *hf, char *out, size_t len, uint64_t *heads)
{
	int l;
	char part[64];
	*heads = 0;
	if (!strcmp(hf, "model.embed_tokens.weight"))
		snprintf(out, len, "token_embd.weight");
	else if (!strcmp(hf, "lm_head.weight"))
		snprintf(out, len, "output.weight");
	else if (!strcmp(hf, "model.norm.weight"))
		snprintf(out, len, "output_norm.weight");
	else if (sscanf(hf, "model.layers.%d.%63s", &l, part) == 2) {
		static const char *const m[][2] = {{"self_attn.q_proj.weight", "attn_q"}, {"self_attn.k_proj.weight", "attn_k"},
			{"self_attn.v_proj.weight", "attn_v"}, {"self_attn.o_proj.weight", "attn_output"},
			{"mlp.gate_proj.weight", "ffn_gate"}, {"mlp.up_proj.weight", "ffn_up"},
			{"mlp.down_proj.weight", "ffn_down"}, {"input_layernorm.weight", "attn_norm"},
			{"post_attention_layernorm.weight", "ffn_norm"}};
		for (size_t i = 0; i < sizeof m / sizeof *m; i++)
			if (!strcmp(part, m[i][0])) {
				snprintf(out, len, "blk.%d.%s.weight", l, m[i][1]);
				*heads = i == 0 ? NH : i == 1 ? NKV : 0;
			}
	}
}

static uint64_t gguf_bytes(const gt *t, int type)
{
	uint64_t cnt = t->rows * t->cols;
	return t->is_norm ? cnt * 4 : type == 8 ? cnt / 32 * 34 : cnt * 2;
}

static int write_gguf(const char *dir, const gt *t, size_t n, const uint16_t *data, int layers)
{
	char path[4096], name[128];
	snprintf(path, sizeof path, "%s/model.gguf", dir);
	FILE *f = fopen(path, "wb");
	uint64_t heads, off = 0;
	if (!f)
		return -1;
	int bad = put(f, "GGUF", 4) || put32(f, 3) || put64(f, n) || put64(f, 11);
	bad |= putstr(f, "general.architecture") || put32(f, 8) || putstr(f, "llama");
	bad |= kv_u32(f, "general.alignment", 32) || kv_u32(f, "llama.context_length", 2048) ||
	       kv_u32(f, "llama.embedding_length", (uint32_t)H) || kv_u32(f, "llama.block_count", (uint32_t)layers) ||
	       kv_u32(f, "llama.feed_forward_length", (uint32_t)I) || kv_u32(f, "llama.attention.head_count", (uint32_t)NH) ||
	       kv_u32(f, "llama.attention.head_count_kv", (uint32_t)NKV) ||
	       kv_u32(f, "llama.rope.dimension_count", (uint32_t)(H / NH)) ||
	       kv_f32(f, "llama.attention.layer_norm_rms_epsilon", 1e-5f) || kv_f32(f, "llama.rope.freq_base", 10000.0f);
	for (size_t i = 0; i < n; i++) {
		gguf_name(t[i].name, name, sizeof name, &heads);
		int type = t[i].is_norm ? 0 : gguf_type;
		bad |= putstr(f, name) || put32(f, t[i].is_norm ? 1 : 2) || put64(f, t[i].cols);
		if (!t[i].is_norm)
			bad |= put64(f, t[i].rows);
		bad |= put32(f, (uint32_t)type) || put64(f, off);
		off += (gguf_bytes(&t[i], gguf_type) + 31) / 32 * 32;
	}
	static const uint8_t zero[32];
	long pos = ftell(f);
	bad |= put(f, zero, (size_t)((32 - pos % 32) % 32));
	uint8_t *row = malloc(t[0].cols * 4 + I * 4 + H * 4);
	for (size_t i = 0; i < n && !bad; i++) {
		gguf_name(t[i].name, name, sizeof name, &heads);
		const uint16_t *p = data + t[i].off / 2;
		uint64_t k = t[i].cols, hd = heads ? t[i].rows / heads : 0;
		for (uint64_t r = 0; r < t[i].rows && !bad; r++) {
			/* GGUF row (h, i, half) holds HF row (h, half, i) */
			uint64_t src = r;
			if (heads) {
				uint64_t h = r / hd, j = r % hd, ii = j / 2, half = j % 2;
				src = h * hd + half * (hd / 2) + ii;
			}
			const uint16_t *x = p + src * k;
			size_t nb;
			if (t[i].is_norm) {
				for (uint64_t c = 0; c < k; c++) {
					float v = bf16_f32(x[c]);
					memcpy(row + 4 * c, &v, 4);
				}
				nb = k * 4;
			} else if (gguf_type == 30) {
				memcpy(row, x, k * 2);
				nb = k * 2;
			} else if (gguf_type == 1) {
				for (uint64_t c = 0; c < k; c++) {
					uint16_t h = f32_f16(bf16_f32(x[c]));
					memcpy(row + 2 * c, &h, 2);
				}
				nb = k * 2;
			} else {
				for (uint64_t b = 0; b < k / 32; b++) {
					float amax = 0;
					for (int c = 0; c < 32; c++)
						amax = fmaxf(amax, fabsf(bf16_f32(x[b * 32 + c])));
					uint16_t dh = f32_f16(amax / 127.0f);
					float id = amax > 0 ? 127.0f / amax : 0;
					memcpy(row + b * 34, &dh, 2);
					for (int c = 0; c < 32; c++)
						row[b * 34 + 2 + c] = (uint8_t)(int8_t)lrintf(bf16_f32(x[b * 32 + c]) * id);
				}
				nb = k / 32 * 34;
			}
			bad |= put(f, row, nb);
		}
		uint64_t tb = gguf_bytes(&t[i], gguf_type);
		bad |= put(f, zero, (size_t)((32 - tb % 32) % 32));
	}
	free(row);
	if (fclose(f) || bad) {
		fprintf(stderr, "%s: write failed\n", path);
		return -1;
	}
	printf("%s: GGUF %s, %.3f GB\n", path, gguf_type == 1 ? "F16" : gguf_type == 30 ? "BF16" : "Q8_0", off / 1e9);
	return 0;
}

int main(int argc, char **argv)
{
	int layers = 22, npos = 0;
	uint64_t seed = 1;
	const char *dir = NULL;
	for (int a = 1; a < argc; a++) {
		if (!strcmp(argv[a], "--no-eos")) {
			no_eos = 1;
		} else if (!strcmp(argv[a], "--shape") && a + 1 < argc) {
			unsigned long long h, in, nh, nkv, v;
			char tail;
			if (sscanf(argv[++a], "%llu,%llu,%llu,%llu,%llu%c", &h, &in, &nh, &nkv, &v, &tail) != 5 ||
			    !h || !in || !nh || !nkv || v <= EOS_ID || h % nh || nh % nkv || h > 65536 ||
			    in > 262144 || v > 1048576) {
				fprintf(stderr, "%s: --shape takes HIDDEN,INTER,HEADS,KVHEADS,VOCAB (HEADS divides "
					"HIDDEN, KVHEADS divides HEADS), not '%s'\n", argv[0], argv[a]);
				return 2;
			}
			H = h, I = in, NH = nh, NKV = nkv, V = v, KV = nkv * (h / nh);
		} else if (!strcmp(argv[a], "--gguf") && a + 1 < argc) {
			a++;
			gguf_type = !strcmp(argv[a], "f16") ? 1 : !strcmp(argv[a], "bf16") ? 30 : !strcmp(argv[a], "q8_0") ? 8 : -2;
			if (gguf_type == -2) {
				fprintf(stderr, "%s: --gguf takes f16, bf16 or q8_0\n", argv[0]);
				return 2;
			}
		} else if (argv[a][0] == '-') {
			dir = NULL;
			break;
		} else if (npos == 0) {
			dir = argv[a], npos++;
		} else if (npos == 1) {
			layers = atoi(argv[a]), npos++;
		} else if (npos == 2) {
			seed = strtoull(argv[a], NULL, 10), npos++;
		} else {
			dir = NULL;
			break;
		}
	}
	if (!dir || layers < 1 || layers > 1024) {
		fprintf(stderr, "usage: %s DIR [LAYERS] [SEED] [--shape H,I,HEADS,KVHEADS,VOCAB] [--no-eos]\n", argv[0]);
		return 2;
	}
	size_t cap = 3 + (size_t)layers * 9, n = 0;
	gt *t = calloc(cap, sizeof *t);
#define ADD(nm, r, c, norm) do { snprintf(t[n].name, sizeof t[n].name, "%s", nm); t[n].rows = r; t[n].cols = c; t[n].is_norm = norm; n++; } while (0)
	ADD("model.embed_tokens.weight", V, H, 0);
	for (int l = 0; l < layers; l++) {
		char b[96];
#define L(suffix, r, c, norm) do { snprintf(b, sizeof b, "model.layers.%d.%s", l, suffix); ADD(b, r, c, norm); } while (0)
		L("input_layernorm.weight", 1, H, 1);
		L("self_attn.q_proj.weight", H, H, 0);
		L("self_attn.k_proj.weight", KV, H, 0);
		L("self_attn.v_proj.weight", KV, H, 0);
		L("self_attn.o_proj.weight", H, H, 0);
		L("post_attention_layernorm.weight", 1, H, 1);
		L("mlp.gate_proj.weight", I, H, 0);
		L("mlp.up_proj.weight", I, H, 0);
		L("mlp.down_proj.weight", H, I, 0);
	}
	ADD("model.norm.weight", 1, H, 1);
	ADD("lm_head.weight", V, H, 0);
	/* header */
	size_t hcap = n * 200 + 256, hl = 0;
	char *hdr = malloc(hcap);
	uint64_t off = 0;
	hl += (size_t)snprintf(hdr + hl, hcap - hl, "{\"__metadata__\":{\"format\":\"pt\"}");
	for (size_t i = 0; i < n; i++) {
		t[i].off = off;
		uint64_t nb = t[i].rows * t[i].cols * 2;
		if (t[i].rows == 1)
			hl += (size_t)snprintf(hdr + hl, hcap - hl, ",\"%s\":{\"dtype\":\"BF16\",\"shape\":[%llu],\"data_offsets\":[%llu,%llu]}",
					       t[i].name, (unsigned long long)t[i].cols, (unsigned long long)off, (unsigned long long)(off + nb));
		else
			hl += (size_t)snprintf(hdr + hl, hcap - hl, ",\"%s\":{\"dtype\":\"BF16\",\"shape\":[%llu,%llu],\"data_offsets\":[%llu,%llu]}",
					       t[i].name, (unsigned long long)t[i].rows, (unsigned long long)t[i].cols,
					       (unsigned long long)off, (unsigned long long)(off + nb));
		off += nb;
	}
	hl += (size_t)snprintf(hdr + hl, hcap - hl, "}");
	while (hl % 8)
		hdr[hl++] = ' ';
	uint16_t *data = malloc(off);
	if (!data) {
		fprintf(stderr, "out of memory for %llu bytes\n", (unsigned long long)off);
		return 1;
	}
	job j = {t, n, data, seed, 0, PTHREAD_MUTEX_INITIALIZER};
	long nt = sysconf(_SC_NPROCESSORS_ONLN);
	pthread_t th[64];
	if (nt < 1) nt = 1;
	if (nt > 64) nt = 64;
	for (long i = 0; i < nt; i++)
		pthread_create(&th[i], NULL, fill, &j);
	for (long i = 0; i < nt; i++)
		pthread_join(th[i], NULL);
	mkdir(dir, 0755);
	char path[4096];
	snprintf(path, sizeof path, "%s/model.safetensors", dir);
	FILE *f = fopen(path, "wb");
	uint64_t hl64 = hl;
	uint8_t le[8];
	for (int k = 0; k < 8; k++)
		le[k] = (uint8_t)(hl64 >> (8 * k));
	if (!f || fwrite(le, 1, 8, f) != 8 || fwrite(hdr, 1, hl, f) != hl || fwrite(data, 1, off, f) != off || fclose(f)) {
		fprintf(stderr, "%s: write failed: %s\n", path, strerror(errno));
		return 1;
	}
	snprintf(path, sizeof path, "%s/config.json", dir);
	f = fopen(path, "w");
	fprintf(f, "{\"architectures\":[\"LlamaForCausalLM\"],\"model_type\":\"llama\",\"hidden_size\":%llu,"
		   "\"intermediate_size\":%llu,\"num_hidden_layers\":%d,\"num_attention_heads\":%llu,"
		   "\"num_key_value_heads\":%llu,\"vocab_size\":%llu,\"rms_norm_eps\":1e-05,\"torch_dtype\":\"bfloat16\","
		   "\"tie_word_embeddings\":false%s}\n", (unsigned long long)H, (unsigned long long)I, layers,
		   (unsigned long long)NH, (unsigned long long)NKV, (unsigned long long)V,
		   no_eos ? ",\"bos_token_id\":1,\"eos_token_id\":2,\"max_position_embeddings\":2048" : "");
	fclose(f);
	printf("%s: %zu tensors, %.3f GB of BF16 weights\n", dir, n, off / 1e9);
	if (gguf_type >= 0 && write_gguf(dir, t, n, data, layers))
		return 1;
	free(data);
	free(hdr);
	free(t);
	return 0;
}

/* snap_genmodel.c — writes a synthetic Llama-shaped BF16 model for the benchmarks:
 * DIR/model.safetensors (weights ~ N(0, 0.02), norms = 1.0, as a freshly initialised model)
 * and DIR/config.json (model_type llama). Shapes follow TinyLlama-1.1B (hidden 2048,
 * intermediate 5632, 32 heads, 4 KV heads, vocab 32000); LAYERS sets the size (22 layers =
 * 1.1 B parameters = 2.2 GB). Deterministic for a given seed.
 * --shape HIDDEN,INTER,HEADS,KVHEADS,VOCAB picks other shapes (bench_serve's CPU model);
 * --no-eos writes eos_token_id 2 (bos 1, 2048 positions) into config.json and zeroes row 2
 * of lm_head.weight, so greedy decoding never picks eos (its logit is 0 while the largest of
 * the others is positive) and every request runs to its max_tokens.
 * usage: snap_genmodel DIR [LAYERS] [SEED] [--shape H,I,HEADS,KVHEADS,VOCAB] [--no-eos] */
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
	free(data);
	free(hdr);
	free(t);
	return 0;
}

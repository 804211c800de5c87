/* snap_genmodel.c — writes a synthetic Llama-shaped BF16 model for the snapshot benchmarks:
 * DIR/model.safetensors (weights ~ N(0, 0.02), norms = 1.0, as a freshly initialised model)
 * and DIR/config.json (model_type llama). Shapes follow TinyLlama-1.1B (hidden 2048,
 * intermediate 5632, 32 heads, 4 KV heads, vocab 32000); LAYERS sets the size (22 layers =
 * 1.1 B parameters = 2.2 GB). Deterministic for a given seed.
 * usage: snap_genmodel DIR [LAYERS] [SEED] */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define H 2048
#define I 5632
#define V 32000
#define KV 256

typedef struct gt { char name[96]; uint64_t rows, cols; int is_norm; uint64_t off; } gt;

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
	}
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s DIR [LAYERS] [SEED]\n", argv[0]);
		return 2;
	}
	int layers = argc > 2 ? atoi(argv[2]) : 22;
	uint64_t seed = argc > 3 ? strtoull(argv[3], NULL, 10) : 1;
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
	mkdir(argv[1], 0755);
	char path[4096];
	snprintf(path, sizeof path, "%s/model.safetensors", argv[1]);
	FILE *f = fopen(path, "wb");
	uint64_t hl64 = hl;
	uint8_t le[8];
	for (int k = 0; k < 8; k++)
		le[k] = (uint8_t)(hl64 >> (8 * k));
	if (!f || fwrite(le, 1, 8, f) != 8 || fwrite(hdr, 1, hl, f) != hl || fwrite(data, 1, off, f) != off || fclose(f)) {
		fprintf(stderr, "%s: write failed: %s\n", path, strerror(errno));
		return 1;
	}
	snprintf(path, sizeof path, "%s/config.json", argv[1]);
	f = fopen(path, "w");
	fprintf(f, "{\"architectures\":[\"LlamaForCausalLM\"],\"model_type\":\"llama\",\"hidden_size\":%d,"
		   "\"intermediate_size\":%d,\"num_hidden_layers\":%d,\"num_attention_heads\":32,"
		   "\"num_key_value_heads\":4,\"vocab_size\":%d,\"rms_norm_eps\":1e-05,\"torch_dtype\":\"bfloat16\","
		   "\"tie_word_embeddings\":false}\n", H, I, layers, V);
	fclose(f);
	printf("%s: %zu tensors, %.3f GB of BF16 weights\n", argv[1], n, off / 1e9);
	free(data);
	free(hdr);
	free(t);
	return 0;
}

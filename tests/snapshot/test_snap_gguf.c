/* test_snap_gguf.c — the GGUF reader (snapshot/snap_gguf.c): a file written by the test's own
 * writer (tests/snapshot/gguf_test_util.h) parses back to the same metadata and tensors; the
 * decoders of Q8_0, Q4_0, Q4_K, Q5_K and Q6_K give exactly the test's per-element reference
 * dequantization of blocks made by the test's reference quantizers (and come close to the
 * quantized floats); hostile files (every truncation, bad magic and version, huge counts and
 * lengths, nested arrays, bad bools, unknown types, misaligned, overlapping, out-of-file and
 * duplicate tensors) fail with a clear message. */
#include <errno.h>
#include "snapshot/snap_gguf.h"
#include "tests/snapshot/gguf_test_util.h"
#include "tests/t.h"

static uint32_t rng = 12345;
static float frand(void)
{
	rng = rng * 1664525u + 1013904223u;
	return ((float)(rng >> 8) / 16777216.0f - 0.5f) * 2.0f;
}

/* a small valid file: every scalar type, string and number arrays, two tensors */
static uint8_t *sample(size_t *len)
{
	gmeta m = {0};
	gm_str(&m, "general.architecture", "llama");
	gm_u32(&m, "general.alignment", 64);
	gm_u64(&m, "test.u64", 1ull << 40);
	gm_f32(&m, "test.f32", 0.5f);
	gm_bool(&m, "test.bool", 1);
	gm_key(&m, "test.i8", 1);
	gb_u8(&m.b, 0xFE);
	gm_key(&m, "test.f64", 12);
	double dv = -2.25;
	gb_put(&m.b, &dv, 8);
	char *strs[] = {"a", "bc", ""};
	gm_arr_str(&m, "test.strs", 3, strs);
	float fs[] = {1, 2, 3};
	gm_arr_f32(&m, "test.fs", 3, fs);
	gtensor t[2] = {0};
	snprintf(t[0].name, sizeof t[0].name, "a.weight");
	t[0].type = 0, t[0].ndim = 2, t[0].ne[0] = 4, t[0].ne[1] = 3, t[0].nbytes = 48;
	t[0].data = calloc(1, 48);
	for (int i = 0; i < 12; i++)
		((float *)t[0].data)[i] = (float)i;
	snprintf(t[1].name, sizeof t[1].name, "b.weight");
	t[1].type = 8, t[1].ndim = 1, t[1].ne[0] = 64, t[1].nbytes = 68;
	t[1].data = calloc(1, 68);
	float x[64];
	for (int i = 0; i < 64; i++)
		x[i] = frand();
	tq_quant(8, x, 64, t[1].data);
	uint8_t *b = gguf_write(&m, t, 2, 64, len);
	free(t[0].data);
	free(t[1].data);
	free(m.b.b);
	return b;
}

static void test_parse(void)
{
	size_t len;
	uint8_t *b = sample(&len);
	snap_gguf *g;
	char err[300] = "";
	T_EQ_INT(snap_gguf_parse_mem(b, len, &g, err, sizeof err), 0);
	if (!g) {
		fprintf(stderr, "  %s\n", err);
		free(b);
		return;
	}
	T_EQ_INT(g->version, 3);
	T_EQ_INT(g->alignment, 64);
	T_EQ_INT(g->n_kv, 9);
	T_EQ_INT(g->n_tensors, 2);
	T_EQ_INT(g->data_off % 64, 0);
	snap_gguf_str s;
	uint64_t u;
	double f;
	T_EQ_INT(snap_gguf_get_str(g, "general.architecture", &s), 0);
	T_CHECK(s.len == 5 && !memcmp(s.s, "llama", 5));
	T_EQ_INT(snap_gguf_get_uint(g, "test.u64", &u), 0);
	T_CHECK(u == 1ull << 40);
	T_EQ_INT(snap_gguf_get_float(g, "test.f32", &f), 0);
	T_CHECK(f == 0.5);
	T_EQ_INT(snap_gguf_get_float(g, "test.f64", &f), 0);
	T_CHECK(f == -2.25);
	T_EQ_INT(snap_gguf_get_uint(g, "test.i8", &u), -EINVAL);   /* -2 */
	T_EQ_INT(snap_gguf_get_uint(g, "test.none", &u), -ENOENT);
	T_EQ_INT(snap_gguf_get_str(g, "test.u64", &s), -EINVAL);
	const snap_gguf_kv *kv = snap_gguf_find(g, "test.strs");
	T_CHECK(kv && kv->type == SNAP_GGUF_ARRAY && kv->arr_n == 3 && kv->arr_str[1].len == 2 &&
		!memcmp(kv->arr_str[1].s, "bc", 2) && kv->arr_str[2].len == 0);
	kv = snap_gguf_find(g, "test.fs");
	T_CHECK(kv && kv->arr_n == 3 && snap_gguf_arr_num(kv, 2) == 3.0);
	T_EQ_STR(g->t[0].name, "a.weight");
	T_CHECK(g->t[0].ne[0] == 4 && g->t[0].ne[1] == 3 && g->t[0].nbytes == 48 && g->t[0].ndim == 2);
	T_CHECK(g->t[1].type == SNAP_GGML_Q8_0 && g->t[1].nbytes == 68 && g->t[1].offset == 64);
	const float *a = snap_gguf_data(g, 0);
	float v;
	memcpy(&v, (const uint8_t *)a + 4 * 7, 4);
	T_CHECK(v == 7.0f);
	snap_gguf_close(g);
	free(b);
}

/* decoders against the reference, for every supported quantized type */
static void test_decode(void)
{
	static const int types[] = {8, 2, 12, 13, 14};
	const size_t n = 2048;
	float *x = malloc(n * 4), *y = malloc(n * 4);
	for (size_t i = 0; i < n; i++)
		x[i] = frand() * (i % 97 == 0 ? 3.0f : 1.0f);
	for (size_t k = 0; k < sizeof types / sizeof *types; k++) {
		int ty = types[k];
		size_t nb = n / (size_t)tq_block_elems(ty) * tq_block_bytes(ty);
		uint8_t *q = malloc(nb + 1);
		tq_quant(ty, x, n, q + 1);   /* odd address: the decoders take any alignment */
		T_EQ_INT(snap_gguf_to_f32((uint32_t)ty, q + 1, n, y), 0);
		size_t bad = 0;
		double err2 = 0, sig2 = 0;
		for (size_t i = 0; i < n; i++) {
			float r = tq_deq(ty, q + 1, i);
			if (memcmp(&r, &y[i], 4))
				bad++;
			err2 += (double)(y[i] - x[i]) * (y[i] - x[i]);
			sig2 += (double)x[i] * x[i];
		}
		if (bad)
			fprintf(stderr, "  type %s: %zu of %zu values differ from the reference\n",
				snap_gguf_type_name((uint32_t)ty), bad, n);
		T_EQ_INT(bad, 0);
		/* the quantizers are crude, but every format must reconstruct the signal */
		T_CHECK(err2 / sig2 < (ty == 2 ? 0.05 : 0.02));
		free(q);
	}
	/* halves, bfloat16 */
	uint16_t h[4] = {0x3C00, 0xC000, 0x0001, 0x7BFF};
	float hf[4];
	T_EQ_INT(snap_gguf_to_f32(SNAP_GGML_F16, h, 4, hf), 0);
	T_CHECK(hf[0] == 1.0f && hf[1] == -2.0f && hf[2] == ldexpf(1, -24) && hf[3] == 65504.0f);
	T_CHECK(snap_f32_to_bf16(1.0f) == 0x3F80 && snap_bf16_to_f32(0x4040) == 3.0f);
	T_CHECK(snap_f32_to_bf16(1.00390625f) == 0x3F80);   /* a tie rounds to even */
	T_EQ_INT(snap_gguf_to_f32(SNAP_GGML_Q2_K, x, 256, y), -ENOTSUP);
	T_EQ_INT(snap_gguf_to_f32(SNAP_GGML_Q8_0, x, 31, y), -EINVAL);
	free(x);
	free(y);
}

static int parse_fails(const uint8_t *b, size_t len, int want_rc, const char *want_msg)
{
	snap_gguf *g = NULL;
	char err[400] = "";
	int rc = snap_gguf_parse_mem(b, len, &g, err, sizeof err);
	if (rc == 0) {
		snap_gguf_close(g);
		fprintf(stderr, "  parsed a file that should fail (%s)\n", want_msg);
		return 0;
	}
	if ((want_rc && rc != want_rc) || !strstr(err, want_msg)) {
		fprintf(stderr, "  rc %d, message \"%s\", wanted \"%s\"\n", rc, err, want_msg);
		return 0;
	}
	return 1;
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* a header with these counts followed by pad bytes */
static size_t header(uint8_t *b, uint32_t version, uint64_t nt, uint64_t nkv, size_t pad)
{
	memcpy(b, "GGUF", 4);
	b[4] = (uint8_t)version, b[5] = (uint8_t)(version >> 8), b[6] = (uint8_t)(version >> 16), b[7] = (uint8_t)(version >> 24);
	put64(b + 8, nt);
	put64(b + 16, nkv);
	memset(b + 24, 0, pad);
	return 24 + pad;
}

/* a one-tensor file with the given tensor info fields */
static uint8_t *one_tensor(const char *name, uint32_t ndim, const uint64_t *ne, uint32_t type, uint64_t off,
			   size_t data, size_t *len)
{
	gbuf g = {0};
	gb_put(&g, "GGUF", 4);
	gb_u32(&g, 3);
	gb_u64(&g, 1);
	gb_u64(&g, 0);
	gb_str(&g, name, strlen(name));
	gb_u32(&g, ndim);
	for (uint32_t d = 0; d < ndim; d++)
		gb_u64(&g, ne[d]);
	gb_u32(&g, type);
	gb_u64(&g, off);
	while (g.n % 32)
		gb_u8(&g, 0);
	for (size_t i = 0; i < data; i++)
		gb_u8(&g, 0);
	*len = g.n;
	return g.b;
}

static void test_hostile(void)
{
	size_t len;
	uint8_t *b = sample(&len), hb[256];
	/* every truncation of a valid file before its last tensor's last byte fails */
	snap_gguf *full;
	char ferr[300];
	size_t end = len;
	if (snap_gguf_parse_mem(b, len, &full, ferr, sizeof ferr) == 0) {
		end = full->data_off + full->t[1].offset + full->t[1].nbytes;
		snap_gguf_close(full);
	}
	T_CHECK(end < len);   /* the writer pads the last tensor */
	size_t ok_trunc = 0;
	for (size_t n = 0; n < end; n++) {
		snap_gguf *g = NULL;
		char err[300];
		uint8_t *cp = malloc(n ? n : 1);
		memcpy(cp, b, n);
		if (snap_gguf_parse_mem(cp, n, &g, err, sizeof err) == 0) {
			ok_trunc++;
			snap_gguf_close(g);
		}
		free(cp);
	}
	T_EQ_INT(ok_trunc, 0);
	uint8_t *cp = malloc(len);
	memcpy(cp, b, len);
	cp[0] = 'X';
	T_CHECK(parse_fails(cp, len, -EBADMSG, "not a GGUF file"));
	memcpy(cp, b, len);
	cp[4] = 1;
	T_CHECK(parse_fails(cp, len, -ENOTSUP, "version 1 is not supported"));
	memcpy(cp, b, len);
	cp[4] = 0, cp[7] = 3;
	T_CHECK(parse_fails(cp, len, -ENOTSUP, "big-endian"));
	free(cp);
	free(b);

	/* a 40-byte file claiming 2^63 tensors or metadata keys fails at once */
	size_t n = header(hb, 3, 1ull << 63, 0, 16);
	T_CHECK(parse_fails(hb, n, -EBADMSG, "claims 9223372036854775808 tensors"));
	n = header(hb, 3, 0, UINT64_MAX, 16);
	T_CHECK(parse_fails(hb, n, -EBADMSG, "metadata keys"));
	/* a string length past the end */
	n = header(hb, 3, 0, 1, 0);
	put64(hb + n, 1ull << 62), n += 8;
	memset(hb + n, 0, 16), n += 16;
	T_CHECK(parse_fails(hb, n, -EBADMSG, "truncated"));
	/* an array claiming 2^60 elements */
	gmeta m = {0};
	gm_key(&m, "x.arr", 9);
	gb_u32(&m.b, 4);
	gb_u64(&m.b, 1ull << 60);
	uint8_t *f = gguf_write(&m, NULL, 0, 32, &len);
	T_CHECK(parse_fails(f, len, -EBADMSG, "cannot fit"));
	free(f);
	free(m.b.b);
	/* a nested array, a bad bool, an unknown value type, a duplicate key, a bad alignment */
	memset(&m, 0, sizeof m);
	gm_key(&m, "x.nest", 9);
	gb_u32(&m.b, 9);
	gb_u64(&m.b, 1);
	f = gguf_write(&m, NULL, 0, 32, &len);
	T_CHECK(parse_fails(f, len, -ENOTSUP, "nested arrays"));
	free(f);
	free(m.b.b);
	memset(&m, 0, sizeof m);
	gm_bool(&m, "x.b", 2);
	f = gguf_write(&m, NULL, 0, 32, &len);
	T_CHECK(parse_fails(f, len, -EBADMSG, "bool"));
	free(f);
	free(m.b.b);
	memset(&m, 0, sizeof m);
	gm_key(&m, "x.t", 13);
	gb_u64(&m.b, 0);
	f = gguf_write(&m, NULL, 0, 32, &len);
	T_CHECK(parse_fails(f, len, -EBADMSG, "unknown value type 13"));
	free(f);
	free(m.b.b);
	memset(&m, 0, sizeof m);
	gm_u32(&m, "x.k", 1);
	gm_u32(&m, "x.k", 2);
	f = gguf_write(&m, NULL, 0, 32, &len);
	T_CHECK(parse_fails(f, len, -EBADMSG, "appears twice"));
	free(f);
	free(m.b.b);
	memset(&m, 0, sizeof m);
	gm_u32(&m, "general.alignment", 48);
	f = gguf_write(&m, NULL, 0, 32, &len);
	T_CHECK(parse_fails(f, len, -EBADMSG, "power of two"));
	free(f);
	free(m.b.b);

	/* tensor infos */
	uint64_t ne[5] = {32, 2, 1, 1, 1};
	f = one_tensor("t", 2, ne, 0, 0, 100, &len);   /* 256 bytes needed, 100 there */
	T_CHECK(parse_fails(f, len, -EBADMSG, "past the end"));
	free(f);
	f = one_tensor("t", 2, ne, 0, 8, 300, &len);
	T_CHECK(parse_fails(f, len, -EBADMSG, "not a multiple of the alignment"));
	free(f);
	f = one_tensor("t", 2, ne, 16, 0, 300, &len);
	T_CHECK(parse_fails(f, len, -ENOTSUP, "IQ2_XXS"));
	free(f);
	f = one_tensor("t", 2, ne, 99, 0, 300, &len);
	T_CHECK(parse_fails(f, len, -ENOTSUP, "type 99 (unknown)"));
	free(f);
	f = one_tensor("t", 5, ne, 0, 0, 300, &len);
	T_CHECK(parse_fails(f, len, -EBADMSG, "5 dimensions"));
	free(f);
	uint64_t ne_big[2] = {1ull << 40, 1ull << 40};
	f = one_tensor("t", 2, ne_big, 0, 0, 300, &len);
	T_CHECK(parse_fails(f, len, -EBADMSG, "too large"));
	free(f);
	uint64_t ne_blk[1] = {33};
	f = one_tensor("t", 1, ne_blk, 8, 0, 300, &len);
	T_CHECK(parse_fails(f, len, -EBADMSG, "whole number of Q8_0 blocks"));
	free(f);
	char longname[80];
	memset(longname, 'n', 70);
	longname[70] = 0;
	f = one_tensor(longname, 2, ne, 0, 0, 300, &len);
	T_CHECK(parse_fails(f, len, -EBADMSG, "name length 70"));
	free(f);
	/* overlapping and duplicate tensors */
	gtensor t[2] = {0};
	for (int i = 0; i < 2; i++) {
		snprintf(t[i].name, sizeof t[i].name, "t%d", i);
		t[i].type = 0, t[i].ndim = 1, t[i].ne[0] = 16, t[i].nbytes = 64;
		t[i].data = calloc(1, 64);
	}
	memset(&m, 0, sizeof m);
	f = gguf_write(&m, t, 2, 32, &len);
	/* the second info's offset (64) -> 32: it overlaps the first */
	uint8_t *p = memmem(f, len, "t1", 2);
	T_CHECK(p != NULL);
	if (p) {
		put64(p + 2 + 4 + 8 + 4, 32);
		T_CHECK(parse_fails(f, len, -EBADMSG, "overlap"));
		p[1] = '0';
		put64(p + 2 + 4 + 8 + 4, 64);
		T_CHECK(parse_fails(f, len, -EBADMSG, "tensor name t0 appears twice"));
	}
	free(f);
	free(t[0].data);
	free(t[1].data);
	/* a file that is not there, and one that is a directory */
	snap_gguf *g;
	char err[300];
	T_CHECK(snap_gguf_open("/nonexistent/x.gguf", &g, err, sizeof err) < 0 && strstr(err, "x.gguf"));
	T_CHECK(snap_gguf_open(t_tmpdir(), &g, err, sizeof err) == -EINVAL);
	T_CHECK(!snap_gguf_is_gguf(t_tmpdir()));
}

void t_main(void)
{
	T_RUN(test_parse);
	T_RUN(test_decode);
	T_RUN(test_hostile);
}

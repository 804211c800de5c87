/* test_snapshot.c — the .thaw format end to end: pack from safetensors (single, sharded),
 * verify, unpack, restore (every I/O mode), determinism, transform hook + metadata, tensor
 * table, progress hooks, and rejection of corrupt, truncated and malformed input with the right
 * message. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>
#include <jansson.h>
#include "tests/t.h"
#include "tests/snapshot/snap_test_util.h"
#include "snapshot/snap.h"
#include "snapshot/snap_pack.h"
#include "snapshot/snap_sinks.h"
#include "snapshot/snap_st.h"

/* every dtype, odd sizes, empty and scalar tensors, one tensor over several chunks */
static tt model[] = {
	{"emb.weight", "BF16", 2, {300, 33}, 2, NULL, 0},          /* 19800 bytes: spans chunks of 8192 */
	{"norm.weight", "BF16", 1, {7}, 2, NULL, 0},               /* odd element count */
	{"f32.odd", "F32", 2, {3, 5}, 4, NULL, 0},
	{"f16.w", "F16", 1, {1001}, 2, NULL, 0},
	{"i8.q", "I8", 2, {17, 3}, 1, NULL, 0},
	{"u8.bytes", "U8", 1, {4099}, 1, NULL, 0},
	{"i32.ids", "I32", 1, {2049}, 4, NULL, 0},
	{"i64.pos", "I64", 1, {9}, 8, NULL, 0},
	{"f64.x", "F64", 1, {5}, 8, NULL, 0},
	{"empty", "F32", 2, {0, 5}, 4, NULL, 0},
	{"scalar", "F32", 0, {0}, 4, NULL, 0},
	{"mask", "BOOL", 1, {13}, 1, NULL, 0},
	{"i16.v", "I16", 1, {3}, 2, NULL, 0},
	{"f8.v", "F8_E4M3", 1, {31}, 1, NULL, 0},
};
#define NMODEL (sizeof model / sizeof model[0])

static char dir[512], src[600], thaw[600];

static void setup(void)
{
	static int done;
	if (done)
		return;
	done = 1;
	snprintf(dir, sizeof dir, "%s/m", t_tmpdir());
	mkdir(dir, 0755);
	tt_fill(model, NMODEL);
	tt_path(src, sizeof src, dir, "model.safetensors");
	tt_write(src, model, NMODEL, "{\"format\":\"pt\"}");
	char cfg[600];
	tt_path(cfg, sizeof cfg, dir, "config.json");
	tt_write_file(cfg, "{\"model_type\":\"llama\",\"hidden_size\":33}", 40);
	tt_path(thaw, sizeof thaw, t_tmpdir(), "m.thaw");
}

static int pack(const char *from, const char *to, int threads, uint32_t chunk)
{
	char err[512];
	snap_pack_opts o = {0};
	o.w.threads = threads;
	o.w.chunk_size = chunk;
	int rc = snap_pack(from, to, &o, NULL, err, sizeof err);
	if (rc)
		fprintf(stderr, "  pack: %s\n", err);
	return rc;
}

static const tt *find_model(const char *name)
{
	for (size_t i = 0; i < NMODEL; i++)
		if (!strcmp(model[i].name, name))
			return &model[i];
	return NULL;
}

/* check_image: every tensor of f in img equals the source bytes; padding is zero. */
static void check_image(snap_file *f, const uint8_t *img)
{
	uint64_t pos = 0;
	T_EQ_INT(snap_tensor_count(f), NMODEL);
	for (size_t i = 0; i < snap_tensor_count(f); i++) {
		const snap_tensor *t = snap_tensor_at(f, i);
		const tt *m = find_model(t->name);
		T_CHECK(m != NULL);
		if (!m)
			continue;
		T_EQ_STR(t->dtype_name, m->dtype);
		T_EQ_INT(t->ndim, m->ndim);
		for (int d = 0; d < m->ndim; d++)
			T_EQ_INT(t->shape[d], m->shape[d]);
		T_EQ_INT(t->nbytes, m->nbytes);
		T_CHECK(memcmp(img + t->offset, m->data, m->nbytes) == 0);
		for (uint64_t k = pos; k < t->offset; k++)
			if (img[k]) {
				T_CHECK(!"padding not zero");
				break;
			}
		pos = t->offset + t->nbytes;
	}
}

static void test_roundtrip(void)
{
	char err[512], out[600];
	snap_file *f;
	setup();
	T_EQ_INT(pack(src, thaw, 2, 8192), 0);
	T_EQ_INT(snap_open(&f, thaw, err, sizeof err), 0);
	if (!f)
		return;
	T_EQ_STR(snap_kind(f), "unknown");   /* no kind given, no kind_of: test_pack_kind */
	T_CHECK(strstr(snap_metadata_json(f), "\"hidden_size\":33") != NULL);
	T_CHECK(strstr(snap_metadata_json(f), "\"file\":\"model.safetensors\"") != NULL);
	T_CHECK(snap_chunk_count(f) > 3);
	long bad = 7;
	T_EQ_INT(snap_verify(f, NULL, NULL, &bad, err, sizeof err), 0);
	T_EQ_INT(bad, -1);

	/* host restore: poison the buffer first so unwritten bytes show */
	uint8_t *img = malloc(snap_image_size(f));
	memset(img, 0xA5, snap_image_size(f));
	snap_restore_stats st;
	T_EQ_INT(snap_restore_host(f, img, snap_image_size(f), NULL, &st, err, sizeof err), 0);
	T_EQ_INT(st.raw_bytes, snap_image_size(f));
	check_image(f, img);
	T_EQ_INT(snap_restore_host(f, img, snap_image_size(f) - 1, NULL, NULL, err, sizeof err), -ERANGE);

	/* unpack and read it back with the safetensors reader */
	tt_path(out, sizeof out, t_tmpdir(), "back.safetensors");
	T_EQ_INT(snap_unpack(f, out, NULL, NULL, err, sizeof err), 0);
	snap_st *s;
	T_EQ_INT(snap_st_open(&s, out, err, sizeof err), 0);
	if (s) {
		T_EQ_INT(s->n, NMODEL);
		for (size_t i = 0; i < s->n; i++) {
			const tt *m = find_model(s->t[i].name);
			T_CHECK(m && s->t[i].end - s->t[i].begin == m->nbytes);
			if (m && m->nbytes)
				T_CHECK(memcmp(snap_st_data(s, i), m->data, m->nbytes) == 0);
			T_CHECK(m && !strcmp(snap_dtype_name(s->t[i].dtype), m->dtype));
		}
		T_EQ_STR(s->st_metadata, "{\"format\":\"pt\"}");
		snap_st_close(s);
	}
	free(img);
	snap_close(f);
}

static void test_codecs_used(void)
{
	char err[512];
	snap_file *f;
	setup();
	T_EQ_INT(snap_open(&f, thaw, err, sizeof err), 0);
	if (!f)
		return;
	int seen[SNAP_CODEC_COUNT] = {0};
	for (size_t i = 0; i < snap_chunk_count(f); i++) {
		const snap_chunk *c = snap_chunk_at(f, i);
		seen[c->codec]++;
		T_EQ_INT(c->file_offset % 4096, 0);
	}
	T_CHECK(seen[SNAP_CODEC_HPLANES] > 0);   /* the BF16 chunks */
	T_CHECK(seen[SNAP_CODEC_RAW] + seen[SNAP_CODEC_ZSTD] > 0);
	snap_close(f);

	/* small integers: zstd planes (or plain zstd), restored exactly */
	char p[600];
	snap_writer *w;
	snap_writer_opts wo = {.chunk_size = 16384, .threads = 2};
	tt_path(p, sizeof p, t_tmpdir(), "ints.thaw");
	T_EQ_INT(snap_writer_open(&w, p, &wo, err, sizeof err), 0);
	static int32_t iv[20000];
	static uint16_t hv[20000];
	for (int i = 0; i < 20000; i++) {
		iv[i] = (int32_t)(tt_next() % 300) - 150;
		hv[i] = (uint16_t)(tt_next() % 7);
	}
	uint64_t shape[1] = {20000};
	T_EQ_INT(snap_writer_add(w, "i32", SNAP_DTYPE_I32, 1, shape, iv, sizeof iv, 0, err, sizeof err), 0);
	T_EQ_INT(snap_writer_add(w, "u16", SNAP_DTYPE_U16, 1, shape, hv, sizeof hv, 0, err, sizeof err), 0);
	T_EQ_INT(snap_writer_finish(w, "{}", NULL, err, sizeof err), 0);
	T_EQ_INT(snap_open(&f, p, err, sizeof err), 0);
	if (!f)
		return;
	memset(seen, 0, sizeof seen);
	for (size_t i = 0; i < snap_chunk_count(f); i++)
		seen[snap_chunk_at(f, i)->codec]++;
	T_CHECK(seen[SNAP_CODEC_PLANES] + seen[SNAP_CODEC_ZSTD] == (int)snap_chunk_count(f));
	T_CHECK(seen[SNAP_CODEC_PLANES] > 0);
	uint8_t *img = malloc(snap_image_size(f));
	T_EQ_INT(snap_restore_host(f, img, snap_image_size(f), NULL, NULL, err, sizeof err), 0);
	T_CHECK(memcmp(img + snap_tensor_find(f, "i32")->offset, iv, sizeof iv) == 0);
	T_CHECK(memcmp(img + snap_tensor_find(f, "u16")->offset, hv, sizeof hv) == 0);
	free(img);
	snap_close(f);
}

static void test_io_modes(void)
{
	char err[512];
	snap_file *f;
	setup();
	T_EQ_INT(snap_open(&f, thaw, err, sizeof err), 0);
	if (!f)
		return;
	uint8_t *img = malloc(snap_image_size(f));
	snap_io_mode modes[] = {SNAP_IO_DIRECT, SNAP_IO_URING, SNAP_IO_PREAD, SNAP_IO_MMAP, SNAP_IO_AUTO};
	for (size_t k = 0; k < 5; k++) {
		snap_restore_opts o = {.threads = 3, .io = modes[k], .queue_depth = 2};
		snap_restore_stats st;
		memset(img, 0x5A, snap_image_size(f));
		T_EQ_INT(snap_restore_host(f, img, snap_image_size(f), &o, &st, err, sizeof err), 0);
		check_image(f, img);
		if (modes[k] == SNAP_IO_PREAD || modes[k] == SNAP_IO_MMAP)
			T_EQ_INT(st.io, modes[k]);
		if (modes[k] == SNAP_IO_URING)   /* unless io_uring is refused here: then pread, said so */
			T_CHECK(st.io == SNAP_IO_URING || (st.io == SNAP_IO_PREAD && strstr(st.io_note, "io_uring")));
		if (modes[k] == SNAP_IO_DIRECT)  /* O_DIRECT or a reported fallback */
			T_CHECK(st.io == SNAP_IO_DIRECT || st.io_note[0]);
	}
	free(img);
	snap_close(f);
}

/* a file truncated after snap_open: every read mode reports it, none crashes (mmap: SIGBUS) */
static void test_truncated_while_open(void)
{
	char p[600], err[512];
	size_t len;
	setup();
	uint8_t *orig = tt_read_file(thaw, &len);
	snap_io_mode modes[] = {SNAP_IO_MMAP, SNAP_IO_PREAD, SNAP_IO_URING, SNAP_IO_DIRECT};
	for (size_t k = 0; k < 4; k++) {
		tt_path(p, sizeof p, t_tmpdir(), "shrink.thaw");
		tt_write_file(p, orig, len);
		snap_file *f;
		T_EQ_INT(snap_open(&f, p, err, sizeof err), 0);
		if (!f)
			continue;
		T_EQ_INT(truncate(p, 4096 + 100), 0);
		uint8_t *img = malloc(snap_image_size(f));
		snap_restore_opts o = {.threads = 2, .io = modes[k]};
		int rc = snap_restore_host(f, img, snap_image_size(f), &o, NULL, err, sizeof err);
		T_CHECK(rc < 0);
		T_CHECK(strstr(err, "chunk ") != NULL);
		if (modes[k] == SNAP_IO_MMAP && !strstr(err, "SIGBUS"))
			fprintf(stderr, "  mmap: %s\n", err);
		free(img);
		snap_close(f);
	}
	free(orig);
}

static void test_deterministic(void)
{
	char a[600], b[600];
	size_t la = 0, lb = 0;
	setup();
	tt_path(a, sizeof a, t_tmpdir(), "d1.thaw");
	tt_path(b, sizeof b, t_tmpdir(), "d2.thaw");
	T_EQ_INT(pack(src, a, 1, 8192), 0);
	T_EQ_INT(pack(src, b, 4, 8192), 0);
	uint8_t *x = tt_read_file(a, &la), *y = tt_read_file(b, &lb);
	T_CHECK(x && y && la == lb && memcmp(x, y, la) == 0);
	free(x);
	free(y);
	/* no temporary files left behind */
	char cmd[800];
	snprintf(cmd, sizeof cmd, "ls %s | grep -q tmp", t_tmpdir());
	T_CHECK(system(cmd) != 0);
}

static void test_sharded(void)
{
	char sd[600], p[700], err[512], out[600];
	setup();
	snprintf(sd, sizeof sd, "%s/sharded", t_tmpdir());
	mkdir(sd, 0755);
	snprintf(p, sizeof p, "%s/model-00001-of-00002.safetensors", sd);
	tt_write(p, model, 5, NULL);
	snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", sd);
	tt_write(p, model + 5, NMODEL - 5, NULL);
	char idx[8192];
	size_t l = (size_t)snprintf(idx, sizeof idx, "{\"metadata\":{},\"weight_map\":{");
	for (size_t i = 0; i < NMODEL; i++)
		l += (size_t)snprintf(idx + l, sizeof idx - l, "%s\"%s\":\"model-0000%d-of-00002.safetensors\"",
				      i ? "," : "", model[i].name, i < 5 ? 1 : 2);
	snprintf(idx + l, sizeof idx - l, "}}");
	snprintf(p, sizeof p, "%s/model.safetensors.index.json", sd);
	tt_write_file(p, idx, strlen(idx));
	tt_path(out, sizeof out, t_tmpdir(), "sharded.thaw");
	T_EQ_INT(pack(sd, out, 2, 4096), 0);
	snap_file *f;
	T_EQ_INT(snap_open(&f, out, err, sizeof err), 0);
	if (!f)
		return;
	T_EQ_STR(snap_kind(f), "unknown");   /* no config.json */
	T_CHECK(strstr(snap_metadata_json(f), "model-00002-of-00002.safetensors") != NULL);
	uint8_t *img = malloc(snap_image_size(f));
	T_EQ_INT(snap_restore_host(f, img, snap_image_size(f), NULL, NULL, err, sizeof err), 0);
	check_image(f, img);
	free(img);
	snap_close(f);
	/* a weight_map that lies about a shard is rejected by name */
	char *bad = strstr(idx, "\"emb.weight\":\"model-00001");
	if (bad) {
		bad[strlen("\"emb.weight\":\"model-0000")] = '2';
		tt_write_file(p, idx, strlen(idx));
		T_CHECK(pack(sd, out, 1, 4096) != 0);
	}
}

/* the int8 transform issue 4 will add: a 2-D weight -> I8 + F32 scale per row */
static int quant_hook(void *user, const snap_src_tensor *in, snap_pack_ctx *out, char *err, size_t errlen)
{
	int *calls = user;
	(*calls)++;
	if (strcmp(in->name, "f32.odd") != 0)
		return 1;
	uint64_t rows = in->shape[0], cols = in->shape[1];
	int8_t q[15];
	float scale[3];
	float x[15];   /* source data may be unaligned (safetensors has no alignment) */
	memcpy(x, in->data, sizeof x);
	for (uint64_t r = 0; r < rows; r++) {
		float mx = 0;
		for (uint64_t c = 0; c < cols; c++)
			mx = fabsf(x[r * cols + c]) > mx ? fabsf(x[r * cols + c]) : mx;
		scale[r] = mx / 127;
		for (uint64_t c = 0; c < cols; c++)
			q[r * cols + c] = (int8_t)lrintf(x[r * cols + c] / scale[r]);
	}
	uint64_t sshape[1] = {rows};
	int rc = snap_pack_emit(out, in->name, SNAP_DTYPE_I8, 2, in->shape, q, rows * cols, err, errlen);
	if (!rc)
		rc = snap_pack_emit(out, "f32.odd.scale", SNAP_DTYPE_F32, 1, sshape, scale, sizeof scale, err, errlen);
	if (!rc)
		rc = snap_pack_set_metadata(out, "quantization", "{\"method\":\"int8-rowwise\"}");
	if (!rc && snap_pack_set_metadata(out, "kind", "\"x\"") != -EINVAL)
		rc = -EINVAL;
	return rc;
}

static void test_transform(void)
{
	char out[600], err[512];
	int calls = 0;
	setup();
	snap_pack_opts o = {0};
	o.kind = "mlp";
	o.transform = quant_hook;
	o.transform_user = &calls;
	o.extra_metadata = "{\"owner\":\"tests\"}";
	o.w.progress = 0;
	tt_path(out, sizeof out, t_tmpdir(), "q.thaw");
	T_EQ_INT(snap_pack(src, out, &o, NULL, err, sizeof err), 0);
	T_EQ_INT(calls, NMODEL);
	snap_file *f;
	T_EQ_INT(snap_open(&f, out, err, sizeof err), 0);
	if (!f)
		return;
	T_EQ_STR(snap_kind(f), "mlp");
	T_EQ_INT(snap_tensor_count(f), NMODEL + 1);
	const snap_tensor *q = snap_tensor_find(f, "f32.odd"), *s = snap_tensor_find(f, "f32.odd.scale");
	T_CHECK(q && q->dtype == SNAP_DTYPE_I8 && q->nbytes == 15);
	T_CHECK(s && s->dtype == SNAP_DTYPE_F32 && s->ndim == 1 && s->shape[0] == 3);
	T_CHECK(strstr(snap_metadata_json(f), "\"quantization\":{\"method\":\"int8-rowwise\"}") != NULL);
	T_CHECK(strstr(snap_metadata_json(f), "\"owner\":\"tests\"") != NULL);
	T_CHECK(strstr(snap_metadata_json(f), "\"I8\":{\"bytes\":66,\"tensors\":2}") != NULL);

	/* the table a function kind gets: names, dtype strings, shapes, pointers */
	uint8_t *img = malloc(snap_image_size(f));
	T_EQ_INT(snap_restore_host(f, img, snap_image_size(f), NULL, NULL, err, sizeof err), 0);
	snap_table *t;
	T_EQ_INT(snap_table_make(f, img, -1, &t), 0);
	snap_close(f);   /* the table outlives the file */
	const snap_table_entry *e = snap_table_find(t, "f32.odd.scale");
	T_CHECK(e && !strcmp(e->dtype, "F32") && e->shape[0] == 3 && t->device == -1);
	if (e) {
		float sc[3];
		memcpy(sc, e->data, sizeof sc);
		float x[5], mx = 0;
		memcpy(x, find_model("f32.odd")->data, sizeof x);
		for (int c = 0; c < 5; c++)
			mx = fabsf(x[c]) > mx ? fabsf(x[c]) : mx;
		T_CHECK(sc[0] == mx / 127);
	}
	e = snap_table_find(t, "emb.weight");
	T_CHECK(e && memcmp(e->data, model[0].data, model[0].nbytes) == 0);
	T_EQ_STR(t->kind, "mlp");
	T_CHECK(strstr(t->metadata_json, "int8-rowwise") != NULL);
	T_CHECK(snap_table_find(t, "nope") == NULL);
	/* rebase: the image copied elsewhere (host tier <-> GPU) gets the same table over the copy */
	uint8_t *img2 = malloc(t->image_size);
	memcpy(img2, img, t->image_size);
	snap_table *t2;
	T_EQ_INT(snap_table_rebase(t, img2, 3, &t2), 0);
	T_EQ_INT(t2->n, t->n);
	T_EQ_INT(t2->device, 3);
	T_CHECK(t2->base == img2);
	T_EQ_STR(t2->kind, "mlp");
	T_EQ_STR(t2->metadata_json, t->metadata_json);
	for (size_t i = 0; i < t->n; i++) {
		T_EQ_STR(t2->t[i].name, t->t[i].name);
		T_CHECK(t2->t[i].name != t->t[i].name);   /* its own strings, not the original's */
		T_EQ_STR(t2->t[i].dtype, t->t[i].dtype);
		T_EQ_INT(t2->t[i].nbytes, t->t[i].nbytes);
		T_CHECK((uint8_t *)t2->t[i].data - img2 == (uint8_t *)t->t[i].data - img);
		T_CHECK(memcmp(t2->t[i].data, t->t[i].data, t->t[i].nbytes) == 0);
	}
	snap_table_free(t);   /* the rebased copy stands alone */
	e = snap_table_find(t2, "emb.weight");
	T_CHECK(e && (uint8_t *)e->data >= img2 && memcmp(e->data, model[0].data, model[0].nbytes) == 0);
	snap_table_free(t2);
	free(img2);
	free(img);

	/* a failing hook stops the pack with its message, and leaves no file */
	o.extra_metadata = "{\"kind\":1}";
	T_CHECK(snap_pack(src, out, &o, NULL, err, sizeof err) != 0);
	T_CHECK(strstr(err, "kind") != NULL);
}

/* ---- corruption ---- */

static int open_and_verify(const char *path, char *err, size_t errlen)
{
	snap_file *f;
	int rc = snap_open(&f, path, err, errlen);
	if (rc)
		return rc;
	rc = snap_verify(f, NULL, NULL, NULL, err, errlen);
	if (!rc) {   /* the restore path must reject it too */
		uint8_t *img = malloc(snap_image_size(f) + 1);
		rc = snap_restore_host(f, img, snap_image_size(f), NULL, NULL, err, errlen);
		free(img);
	}
	snap_close(f);
	return rc;
}

static void flip_check(const uint8_t *orig, size_t len, size_t at, const char *want)
{
	char p[600], err[1024] = "";
	uint8_t *b = malloc(len);
	memcpy(b, orig, len);
	b[at] ^= 0x10;
	tt_path(p, sizeof p, t_tmpdir(), "flip.thaw");
	tt_write_file(p, b, len);
	free(b);
	int rc = open_and_verify(p, err, sizeof err);
	T_CHECK(rc < 0);
	if (want && !strstr(err, want)) {
		fprintf(stderr, "  flip at %zu: message \"%s\" lacks \"%s\"\n", at, err, want);
		T_CHECK(!"message");
	}
}

static void test_corruption(void)
{
	char err[512];
	size_t len = 0;
	snap_file *f;
	setup();
	T_EQ_INT(snap_open(&f, thaw, err, sizeof err), 0);
	if (!f)
		return;
	uint8_t *orig = tt_read_file(thaw, &len);
	const snap_chunk *c0 = snap_chunk_at(f, 0), *c1 = snap_chunk_at(f, 1);
	uint64_t idx = 0, ctab = 0, meta = 0;
	idx = snap_rd64_test(orig + 64);
	ctab = snap_rd64_test(orig + 80);
	meta = snap_rd64_test(orig + 96);

	flip_check(orig, len, 0, "bad magic");
	flip_check(orig, len, 8, "version");
	flip_check(orig, len, 20, "header corrupt");
	flip_check(orig, len, 100, "header corrupt");
	flip_check(orig, len, idx + 3, "tensor index corrupt");
	flip_check(orig, len, ctab + 5, "chunk table corrupt");
	flip_check(orig, len, meta + 2, "metadata corrupt");
	/* a flipped byte in chunk data is named by chunk and tensor */
	flip_check(orig, len, c0->file_offset + c0->stored_size / 2, "chunk 0 (tensor emb.weight");
	flip_check(orig, len, c1->file_offset + c1->stored_size - 1, "chunk 1 (tensor emb.weight");
	for (size_t i = 2; i < snap_chunk_count(f); i++) {
		const snap_chunk *c = snap_chunk_at(f, i);
		char want[64];
		snprintf(want, sizeof want, "chunk %zu (tensor ", i);
		flip_check(orig, len, c->file_offset + (c->stored_size * 7) / 11, want);
	}
	/* verify names the bad chunk index too */
	{
		char p[600];
		uint8_t *b = malloc(len);
		memcpy(b, orig, len);
		b[c1->file_offset + 10] ^= 1;
		tt_path(p, sizeof p, t_tmpdir(), "bad1.thaw");
		tt_write_file(p, b, len);
		free(b);
		snap_file *g;
		long bad = -5;
		T_EQ_INT(snap_open(&g, p, err, sizeof err), 0);
		if (g) {
			T_CHECK(snap_verify(g, NULL, NULL, &bad, err, sizeof err) < 0);
			T_EQ_INT(bad, 1);
			snap_close(g);
		}
	}
	/* truncation anywhere is caught at open */
	for (size_t cut = 0; cut < len; cut += len / 61 + 1) {
		char p[600];
		tt_path(p, sizeof p, t_tmpdir(), "trunc.thaw");
		tt_write_file(p, orig, cut);
		snap_file *g;
		int rc = snap_open(&g, p, err, sizeof err);
		T_CHECK(rc < 0);
		if (rc == 0)
			snap_close(g);
		else if (cut >= 160 && !strstr(err, "truncated"))
			T_CHECK(!"truncation message");
	}
	/* trailing bytes, an empty file, a directory, a missing file */
	{
		char p[600];
		uint8_t *b = malloc(len + 1);
		memcpy(b, orig, len);
		b[len] = 0;
		tt_path(p, sizeof p, t_tmpdir(), "long.thaw");
		tt_write_file(p, b, len + 1);
		free(b);
		snap_file *g;
		T_CHECK(snap_open(&g, p, err, sizeof err) < 0 && strstr(err, "trailing"));
		T_CHECK(snap_open(&g, t_tmpdir(), err, sizeof err) < 0);
		T_CHECK(snap_open(&g, "/nonexistent/x.thaw", err, sizeof err) == -ENOENT);
		T_CHECK(snap_open(&g, src, err, sizeof err) < 0 && strstr(err, "magic"));
	}
	free(orig);
	snap_close(f);
}

/* absurd values behind a valid checksum: rebuild the header checksum after editing */
static void test_absurd_header(void)
{
	char err[512], p[600];
	size_t len = 0;
	setup();
	uint8_t *orig = tt_read_file(thaw, &len);
	struct { size_t at; uint64_t v; int width; const char *want; } cases[] = {
		{32, 0xFFFFFFFF, 4, "absurd counts"},          /* n_tensors */
		{36, 0xFFFFFFF, 4, "absurd counts"},           /* n_chunks */
		{40, 3, 4, "chunk size"},
		{24, 1ull << 62, 8, "image"},                  /* image size */
		{64, 1ull << 60, 8, "tensor index outside"},   /* index offset */
		{72, 1ull << 40, 8, "tensor index outside"},
		{88, 8, 8, "chunk table"},
		{104, 1ull << 33, 8, "metadata outside"},
		{56, 1ull << 50, 8, "data section"},
	};
	for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
		uint8_t *b = malloc(len);
		memcpy(b, orig, len);
		for (int i = 0; i < cases[k].width; i++)
			b[cases[k].at + i] = (uint8_t)(cases[k].v >> (8 * i));
		snap_test_rehash(b);
		tt_path(p, sizeof p, t_tmpdir(), "absurd.thaw");
		tt_write_file(p, b, len);
		free(b);
		snap_file *g;
		int rc = snap_open(&g, p, err, sizeof err);
		T_CHECK(rc < 0);
		if (rc == 0)
			snap_close(g);
		else if (!strstr(err, cases[k].want)) {
			fprintf(stderr, "  case %zu: \"%s\" lacks \"%s\"\n", k, err, cases[k].want);
			T_CHECK(!"message");
		}
	}
	free(orig);
}

static void test_bad_sources(void)
{
	char p[600], err[512], out[600];
	setup();
	tt_path(out, sizeof out, t_tmpdir(), "never.thaw");
	T_CHECK(pack("/nonexistent/model", out, 1, 0) == -ENOENT);
	T_CHECK(pack(t_tmpdir(), out, 1, 0) == -ENOENT);   /* a directory without a model */
	struct { const char *hdr; const char *want; } bad[] = {
		{"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", "need"},
		{"{\"a\":{\"dtype\":\"Q4\",\"shape\":[1],\"data_offsets\":[0,1]}}", "unsupported dtype"},
		{"{\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]}}", "past the data section"},
		{"{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[1,3]}}", "overlap"},
		{"[1,2]", "not a JSON object"},
		{"{\"a\":", "invalid JSON"},
		{"{\"a\":{\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,1]}}", "bad shape"},
	};
	for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
		size_t hl = strlen(bad[k].hdr);
		uint8_t *b = calloc(1, 8 + hl + 4);
		b[0] = (uint8_t)hl;
		memcpy(b + 8, bad[k].hdr, hl);
		tt_path(p, sizeof p, t_tmpdir(), "bad.safetensors");
		tt_write_file(p, b, 8 + hl + 4);
		free(b);
		snap_pack_opts o = {0};
		int rc = snap_pack(p, out, &o, NULL, err, sizeof err);
		T_CHECK(rc < 0);
		if (!strstr(err, bad[k].want)) {
			fprintf(stderr, "  case %zu: \"%s\" lacks \"%s\"\n", k, err, bad[k].want);
			T_CHECK(!"message");
		}
	}
	T_CHECK(access(out, F_OK) != 0);
	/* a header length past the end of the file */
	uint8_t b[16] = {0xff, 0xff, 0, 0, 0, 0, 0, 0};
	tt_path(p, sizeof p, t_tmpdir(), "bad2.safetensors");
	tt_write_file(p, b, sizeof b);
	T_CHECK(pack(p, out, 1, 0) < 0);
}

static void test_writer_api(void)
{
	char err[512], p[600];
	snap_writer *w;
	tt_path(p, sizeof p, t_tmpdir(), "w.thaw");
	T_EQ_INT(snap_writer_open(&w, p, NULL, err, sizeof err), 0);
	uint64_t shape[2] = {2, 3};
	float x[6] = {1, 2, 3, 4, 5, 6};
	T_EQ_INT(snap_writer_add(w, "x", SNAP_DTYPE_F32, 2, shape, x, sizeof x, 1, err, sizeof err), 0);
	T_EQ_INT(snap_writer_add(w, "x", SNAP_DTYPE_F32, 2, shape, x, sizeof x, 1, err, sizeof err), -EINVAL);
	T_EQ_INT(snap_writer_add(w, "y", SNAP_DTYPE_F32, 2, shape, x, 20, 1, err, sizeof err), -EINVAL);
	T_EQ_INT(snap_writer_add(w, "", SNAP_DTYPE_F32, 2, shape, x, 24, 1, err, sizeof err), -EINVAL);
	T_EQ_INT(snap_writer_add(w, "__metadata__", SNAP_DTYPE_F32, 2, shape, x, 24, 1, err, sizeof err), -EINVAL);
	T_EQ_INT(snap_writer_add(w, "z", SNAP_DTYPE_INVALID, 2, shape, x, 24, 1, err, sizeof err), -EINVAL);
	memset(x, 0, sizeof x);   /* copied: must not matter */
	T_EQ_INT(snap_writer_finish(w, "{\"kind\":\"mlp\"}", NULL, err, sizeof err), 0);
	snap_file *f;
	T_EQ_INT(snap_open(&f, p, err, sizeof err), 0);
	if (f) {
		float y[6];
		T_EQ_INT(snap_restore_host(f, y, sizeof y, NULL, NULL, err, sizeof err), 0);
		T_CHECK(y[0] == 1 && y[5] == 6);
		T_EQ_STR(snap_kind(f), "mlp");
		snap_close(f);
	}
	/* metadata must be an object; an empty snapshot is valid */
	T_EQ_INT(snap_writer_open(&w, p, NULL, err, sizeof err), 0);
	T_EQ_INT(snap_writer_finish(w, "[]", NULL, err, sizeof err), -EINVAL);
	T_EQ_INT(snap_writer_open(&w, p, NULL, err, sizeof err), 0);
	T_EQ_INT(snap_writer_finish(w, "{}", NULL, err, sizeof err), 0);
	T_EQ_INT(snap_open(&f, p, err, sizeof err), 0);
	if (f) {
		T_EQ_INT(snap_image_size(f), 0);
		T_EQ_INT(snap_verify(f, NULL, NULL, NULL, err, sizeof err), 0);
		snap_close(f);
	}
	snap_writer_opts bado = {.chunk_size = 5000};
	T_EQ_INT(snap_writer_open(&w, p, &bado, err, sizeof err), -EINVAL);
}

static void test_dtypes(void)
{
	T_EQ_STR(snap_dtype_name(SNAP_DTYPE_BF16), "BF16");
	T_EQ_INT(snap_dtype_size(SNAP_DTYPE_I64), 8);
	T_EQ_INT(snap_dtype_from_name("I8"), SNAP_DTYPE_I8);
	T_EQ_INT(snap_dtype_from_name("bf16"), SNAP_DTYPE_INVALID);
	T_EQ_STR(snap_dtype_name((snap_dtype)99), "?");
	for (int d = 1; d < SNAP_DTYPE_COUNT; d++)
		T_EQ_INT(snap_dtype_from_name(snap_dtype_name(d)), d);
}

/* ---- progress hooks ---- */

typedef struct prog_log {
	pthread_mutex_t mu;
	int inside;                /* a call in progress: calls must never overlap */
	int overlapped, calls, backwards, after_return;
	int closed;                /* set once the call under test returned */
	uint64_t last, total;
	char phase[32];
	int phase_changed;
	uint64_t prev_last, prev_total;   /* where the phase before this one ended */
	int prev_calls;
	char prev_phase[32];
} prog_log;

static void prog_hook(void *user, const char *phase, uint64_t done, uint64_t total)
{
	prog_log *l = user;
	pthread_mutex_lock(&l->mu);
	if (l->inside)
		l->overlapped++;
	l->inside = 1;
	pthread_mutex_unlock(&l->mu);
	usleep(200);   /* widen the window in which a second, overlapping call would be seen */
	pthread_mutex_lock(&l->mu);
	if (l->closed)
		l->after_return++;
	if (l->calls && done < l->last)
		l->backwards++;
	if (l->calls && strcmp(l->phase, phase)) {
		l->phase_changed++;
		l->prev_last = l->last;
		l->prev_total = l->total;
		l->prev_calls = l->calls;
		memcpy(l->prev_phase, l->phase, sizeof l->phase);
	}
	snprintf(l->phase, sizeof l->phase, "%s", phase);
	l->last = done;
	l->total = total;
	l->calls++;
	l->inside = 0;
	pthread_mutex_unlock(&l->mu);
}

static void prog_reset(prog_log *l)
{
	memset(l, 0, sizeof *l);
	pthread_mutex_init(&l->mu, NULL);
}

/* restore to host memory with a hook: called several times with increasing byte counts, never
 * overlapping, the last with done == total == the image size, and never after the return */
static void test_progress_restore(void)
{
	char err[512], path[700];
	snap_file *f;
	setup();
	snprintf(path, sizeof path, "%s/prog.thaw", t_tmpdir());
	T_EQ_INT(pack(src, path, 2, 4096), 0);
	T_EQ_INT(snap_open(&f, path, err, sizeof err), 0);
	if (!f)
		return;
	uint64_t img = snap_image_size(f);
	T_CHECK(snap_chunk_count(f) >= 8);
	uint8_t *buf = malloc(img);
	snap_io_mode modes[] = {SNAP_IO_URING, SNAP_IO_PREAD, SNAP_IO_MMAP};
	for (size_t k = 0; k < 3; k++) {
		prog_log l;
		prog_reset(&l);
		snap_restore_opts o = {.threads = 4, .io = modes[k], .progress = prog_hook, .progress_user = &l};
		T_EQ_INT(snap_restore_host(f, buf, img, &o, NULL, err, sizeof err), 0);
		pthread_mutex_lock(&l.mu);
		l.closed = 1;
		pthread_mutex_unlock(&l.mu);
		check_image(f, buf);
		T_CHECK(l.calls >= 2);
		T_CHECK(l.calls <= 130);   /* about every 1/128 of the image, not every chunk */
		T_EQ_INT(l.overlapped, 0);
		T_EQ_INT(l.backwards, 0);
		T_EQ_INT(l.phase_changed, 0);
		T_EQ_STR(l.phase, "restoring");
		T_EQ_INT(l.last, img);
		T_EQ_INT(l.total, img);
		usleep(2000);
		T_EQ_INT(l.after_return, 0);
		pthread_mutex_destroy(&l.mu);
	}
	/* verify names its phase; a caller's phase is kept */
	prog_log l;
	prog_reset(&l);
	snap_restore_opts o = {.threads = 2, .progress = prog_hook, .progress_user = &l};
	T_EQ_INT(snap_verify(f, &o, NULL, NULL, err, sizeof err), 0);
	T_EQ_STR(l.phase, "verifying");
	T_EQ_INT(l.last, img);
	o.progress_phase = "checking";
	T_EQ_INT(snap_verify(f, &o, NULL, NULL, err, sizeof err), 0);
	T_EQ_STR(l.phase, "checking");
	pthread_mutex_destroy(&l.mu);
	free(buf);
	snap_close(f);

	/* a corrupt chunk: the restore fails and the hook is never told the image is complete */
	struct stat sb;
	T_EQ_INT(stat(path, &sb), 0);
	FILE *fp = fopen(path, "r+b");
	T_CHECK(fp != NULL);
	if (!fp)
		return;
	fseek(fp, 4096 * 3 + 17, SEEK_SET);   /* inside an early chunk's payload */
	int c = fgetc(fp);
	fseek(fp, 4096 * 3 + 17, SEEK_SET);
	fputc(c ^ 0xFF, fp);
	fclose(fp);
	T_EQ_INT(snap_open(&f, path, err, sizeof err), 0);
	if (!f)
		return;
	prog_reset(&l);
	buf = malloc(snap_image_size(f));
	snap_restore_opts ob = {.threads = 2, .io = SNAP_IO_PREAD, .progress = prog_hook, .progress_user = &l};
	T_CHECK(snap_restore_host(f, buf, snap_image_size(f), &ob, NULL, err, sizeof err) < 0);
	T_CHECK(l.calls == 0 || l.last < snap_image_size(f));
	pthread_mutex_destroy(&l.mu);
	free(buf);
	snap_close(f);
}

/* the packer's hook: "compressing" with increasing written bytes up to the image size; with
 * a transform, the transform's phase first, over the source bytes */
static int keep_all(void *user, const snap_src_tensor *in, snap_pack_ctx *out, char *err, size_t errlen)
{
	return 1;
}

static void test_progress_pack(void)
{
	char err[512], path[700];
	setup();
	snprintf(path, sizeof path, "%s/progp.thaw", t_tmpdir());
	prog_log l;
	prog_reset(&l);
	snap_pack_opts o = {0};
	o.w.threads = 3;
	o.w.chunk_size = 4096;
	o.w.progress = prog_hook;
	o.w.progress_user = &l;
	T_EQ_INT(snap_pack(src, path, &o, NULL, err, sizeof err), 0);
	snap_file *f;
	T_EQ_INT(snap_open(&f, path, err, sizeof err), 0);
	if (!f)
		return;
	T_EQ_INT(l.overlapped, 0);
	T_EQ_INT(l.backwards, 0);
	T_EQ_INT(l.phase_changed, 0);
	T_EQ_STR(l.phase, "compressing");
	T_EQ_INT(l.calls, snap_chunk_count(f));
	T_EQ_INT(l.last, snap_image_size(f));
	T_EQ_INT(l.total, snap_image_size(f));
	snap_close(f);

	uint64_t src_total = 0;
	for (size_t i = 0; i < NMODEL; i++)
		src_total += model[i].nbytes;
	prog_reset(&l);
	o.transform = keep_all;
	o.transform_phase = "converting";
	T_EQ_INT(snap_pack(src, path, &o, NULL, err, sizeof err), 0);
	T_EQ_INT(l.phase_changed, 1);   /* converting, then compressing */
	T_EQ_STR(l.phase, "compressing");
	T_EQ_INT(l.backwards, 1);       /* the new phase starts again from its first chunk */
	T_EQ_STR(l.prev_phase, "converting");
	T_EQ_INT(l.prev_calls, NMODEL + 1);   /* once at 0, then after each source tensor */
	T_EQ_INT(l.prev_last, src_total);
	T_EQ_INT(l.prev_total, src_total);
	T_EQ_INT(l.last, l.total);
	pthread_mutex_destroy(&l.mu);
}

/* kind_of_config answers "from-config" when it is handed the source's config.json text. */
static const char *kind_of_config(const char *config_json, void *user)
{
	*(int *)user += 1;
	return config_json && strstr(config_json, "\"model_type\":\"llama\"") ? "from-config" : NULL;
}

/* The packer knows no models: without a kind it records "unknown", or what its caller's
 * kind_of names from config.json. */
static void test_pack_kind(void)
{
	setup();
	char path[600], err[512];
	tt_path(path, sizeof path, t_tmpdir(), "kind.thaw");
	const char *want[] = {"unknown", "from-config", "given"};
	for (int i = 0; i < 3; i++) {
		int calls = 0;
		snap_pack_opts o = {.w = {.threads = 1}, .kind = i == 2 ? "given" : NULL,
				    .kind_of = i ? kind_of_config : NULL, .kind_user = &calls};
		T_EQ_INT(snap_pack(dir, path, &o, NULL, err, sizeof err), 0);
		T_EQ_INT(calls, i == 1);
		snap_file *f = NULL;
		T_EQ_INT(snap_open(&f, path, err, sizeof err), 0);
		if (!f)
			continue;
		json_t *m = json_loads(snap_metadata_json(f), 0, NULL);
		T_EQ_STR(json_string_value(json_object_get(m, "kind")), want[i]);
		json_decref(m);
		snap_close(f);
	}
}

void t_main(void)
{
	T_RUN(test_dtypes);
	T_RUN(test_pack_kind);
	T_RUN(test_roundtrip);
	T_RUN(test_codecs_used);
	T_RUN(test_io_modes);
	T_RUN(test_truncated_while_open);
	T_RUN(test_deterministic);
	T_RUN(test_sharded);
	T_RUN(test_transform);
	T_RUN(test_corruption);
	T_RUN(test_absurd_header);
	T_RUN(test_bad_sources);
	T_RUN(test_writer_api);
	T_RUN(test_progress_restore);
	T_RUN(test_progress_pack);
	tt_free(model, NMODEL);
}

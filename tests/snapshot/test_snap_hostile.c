/* test_snap_hostile.c — snapshot inputs an attacker (or an accident) can name: FIFOs where a
 * shard, config, index, tokenizer or snapshot belongs get a prompt "not a regular file" from
 * every `thaw snapshot` command instead of an open() that never returns; a file that is not
 * safetensors is called that; a snapshot whose header declares an image larger than its
 * tensors need is refused; 100k tensors pack in linear time with duplicates still caught; a
 * pack into a private directory is 0600. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>
#include "snapshot/snap.h"
#include "snapshot/snap_pack.h"
#include "tests/snapshot/snap_test_util.h"
#include "tests/t.h"

/* runs `thaw snapshot ARGS` under a 60 s guard (a hang shows as 124); stderr into err */
static int thaw_snapshot(char *err, size_t cap, const char *args)
{
	char path[600];
	snprintf(path, sizeof path, "%s/stderr.txt", t_tmpdir());
	int rc = t_sh(NULL, 0, "timeout 60 %s snapshot %s >/dev/null 2>%s", t_bin(), args, path);
	char *e = t_read_file(path, NULL);
	snprintf(err, cap, "%s", e ? e : "");
	free(e);
	return rc;
}

static void mkfifo_at(char *out, size_t cap, const char *name)
{
	snprintf(out, cap, "%s/%s", t_tmpdir(), name);
	unlink(out);
	T_EQ_INT(mkfifo(out, 0600), 0);
}

/* a small valid model directory: model.safetensors (one F32 tensor) */
static void model_dir(char *dir, size_t cap, const char *name)
{
	snprintf(dir, cap, "%s/%s", t_tmpdir(), name);
	mkdir(dir, 0755);
	tt t = {"w", "F32", 1, {4}, 4, NULL, 0};
	tt_fill(&t, 1);
	char st[700];
	snprintf(st, sizeof st, "%s/model.safetensors", dir);
	T_EQ_INT(tt_write(st, &t, 1, NULL), 0);
	tt_free(&t, 1);
}

static void test_fifo_inputs(void)
{
	char fifo[800], dir[600], args[2400], err[2048];
	/* a FIFO as the shard itself */
	mkfifo_at(fifo, sizeof fifo, "shard.safetensors");
	snprintf(args, sizeof args, "pack %s -o %s/o1.thaw", fifo, t_tmpdir());
	T_EQ_INT(thaw_snapshot(err, sizeof err, args), 1);
	T_CHECK(strstr(err, "shard.safetensors: not a regular file") != NULL);
	/* as config.json beside a real shard */
	model_dir(dir, sizeof dir, "withcfg");
	snprintf(fifo, sizeof fifo, "%s/config.json", dir);
	T_EQ_INT(mkfifo(fifo, 0600), 0);
	snprintf(args, sizeof args, "pack %s -o %s/o2.thaw", dir, t_tmpdir());
	T_EQ_INT(thaw_snapshot(err, sizeof err, args), 1);
	T_CHECK(strstr(err, "config.json: not a regular file") != NULL);
	/* as a sharded index */
	snprintf(dir, sizeof dir, "%s/indexed", t_tmpdir());
	mkdir(dir, 0755);
	snprintf(fifo, sizeof fifo, "%s/model.safetensors.index.json", dir);
	T_EQ_INT(mkfifo(fifo, 0600), 0);
	snprintf(args, sizeof args, "pack %s -o %s/o3.thaw", dir, t_tmpdir());
	T_EQ_INT(thaw_snapshot(err, sizeof err, args), 1);
	T_CHECK(strstr(err, "index.json: not a regular file") != NULL);
	/* as the tokenizer carried in the snapshot */
	model_dir(dir, sizeof dir, "withtok");
	mkfifo_at(fifo, sizeof fifo, "tokenizer.json");
	snprintf(args, sizeof args, "pack %s -o %s/o4.thaw --tokenizer %s", dir, t_tmpdir(), fifo);
	T_EQ_INT(thaw_snapshot(err, sizeof err, args), 1);
	T_CHECK(strstr(err, "tokenizer.json: not a regular file") != NULL);
	/* as the snapshot every reading command opens */
	mkfifo_at(fifo, sizeof fifo, "fifo.thaw");
	static const char *const cmds[] = {"inspect", "verify", "restore", "unpack"};
	for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
		if (strcmp(cmds[i], "unpack") == 0)
			snprintf(args, sizeof args, "unpack %s -o %s/u.safetensors", fifo, t_tmpdir());
		else
			snprintf(args, sizeof args, "%s %s", cmds[i], fifo);
		int rc = thaw_snapshot(err, sizeof err, args);
		if (rc != 1 || !strstr(err, "fifo.thaw: not a regular file"))
			fprintf(stderr, "  %s: rc %d: %s\n", cmds[i], rc, err);
		T_EQ_INT(rc, 1);
		T_CHECK(strstr(err, "fifo.thaw: not a regular file") != NULL);
	}
	/* the library call under them, for callers other than the CLI (the daemon's cold start) */
	snap_file *f = NULL;
	char e[512];
	T_EQ_INT(snap_open(&f, fifo, e, sizeof e), -EINVAL);
	T_CHECK(strstr(e, "not a regular file") != NULL);
	T_EQ_INT(snap_open_regular(fifo, 0), -EINVAL);
	T_EQ_INT(snap_open_regular(t_tmpdir(), 0), -EINVAL);   /* a directory */
}

static void test_not_safetensors(void)
{
	char path[600], args[1400], err[2048];
	snprintf(path, sizeof path, "%s/readme.safetensors", t_tmpdir());
	const char text[] = "# A README\n\nThis is text, not tensors.\n";
	T_EQ_INT(tt_write_file(path, text, sizeof text - 1), 0);
	snprintf(args, sizeof args, "pack %s -o %s/o5.thaw", path, t_tmpdir());
	T_EQ_INT(thaw_snapshot(err, sizeof err, args), 1);
	T_CHECK(strstr(err, "not a safetensors file (it starts with \"# A README\\x0a\\x0a") != NULL);
	/* a plausible length followed by something other than a JSON object */
	uint8_t junk[64] = {16, 0, 0, 0, 0, 0, 0, 0, 'x'};
	T_EQ_INT(tt_write_file(path, junk, sizeof junk), 0);
	T_EQ_INT(thaw_snapshot(err, sizeof err, args), 1);
	T_CHECK(strstr(err, "not a safetensors file") && strstr(err, "header is not a JSON object"));
	/* a file too short for the length */
	T_EQ_INT(tt_write_file(path, "abc", 3), 0);
	T_EQ_INT(thaw_snapshot(err, sizeof err, args), 1);
	T_CHECK(strstr(err, "not a safetensors file: 3 bytes") != NULL);
}

static void wr64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* A snapshot whose one tensor is re-declared to 16 bytes while its image (and chunks) stay 4
 * MiB of zero padding: a few KB of file holding the daemon to a 4 MiB image; the same trick
 * reaches any size the chunk table can cover. */
static uint8_t *padded_snapshot(size_t *len)
{
	char path[600], err[512];
	snprintf(path, sizeof path, "%s/padded.thaw", t_tmpdir());
	snap_writer *w;
	snap_writer_opts o = {.threads = 1, .chunk_size = 1u << 20};
	if (snap_writer_open(&w, path, &o, err, sizeof err))
		return NULL;
	size_t n = 4u << 20;
	uint8_t *zeros = calloc(1, n);
	uint64_t shape[1] = {n};
	if (!zeros || snap_writer_add(w, "w", SNAP_DTYPE_U8, 1, shape, zeros, n, 1, err, sizeof err)) {
		free(zeros);
		snap_writer_abort(w);
		return NULL;
	}
	free(zeros);
	if (snap_writer_finish(w, "{\"kind\":\"echo\"}", NULL, err, sizeof err))
		return NULL;
	uint8_t *buf = tt_read_file(path, len);
	if (!buf)
		return NULL;
	uint64_t index_off = snap_rd64_test(buf + 64), index_size = snap_rd64_test(buf + 72);
	uint8_t *rec = buf + index_off;
	wr64(rec + 8, 16);    /* nbytes */
	wr64(rec + 24, 16);   /* shape[0] */
	wr64(buf + 112, XXH3_64bits(rec, index_size));
	snap_test_rehash(buf);
	return buf;
}

static void test_image_bounded_by_tensors(void)
{
	size_t len = 0;
	uint8_t *buf = padded_snapshot(&len);
	T_CHECK(buf != NULL);
	if (!buf)
		return;
	snap_file *f = NULL;
	char err[512];
	int rc = snap_open_mem(&f, buf, len, err, sizeof err);
	if (rc == 0)
		fprintf(stderr, "  accepted: %zu-byte file, %llu-byte image\n", len,
			(unsigned long long)snap_image_size(f));
	T_EQ_INT(rc, -EBADMSG);
	T_CHECK(strstr(err, "image of 4194304 bytes") && strstr(err, "need at most 256") &&
		strstr(err, "padding refused"));
	snap_close(f);
	/* the same file through the CLI names it */
	char path[600], args[700], e2[2048];
	snprintf(path, sizeof path, "%s/padded.thaw", t_tmpdir());
	T_EQ_INT(tt_write_file(path, buf, len), 0);
	snprintf(args, sizeof args, "inspect %s", path);
	T_EQ_INT(thaw_snapshot(e2, sizeof e2, args), 1);
	T_CHECK(strstr(e2, "padded.thaw: header: image of 4194304 bytes") != NULL);
	/* the seed kept in the fuzz corpus is this file */
	char seed[700];
	snprintf(seed, sizeof seed, "%s/tests/fuzz/corpus/snapshot/padded-image.thaw", t_src());
	size_t slen = 0;
	uint8_t *s = tt_read_file(seed, &slen);
	T_CHECK(s != NULL);
	if (s) {
		T_EQ_INT(snap_open_mem(&f, s, slen, err, sizeof err), -EBADMSG);
		T_CHECK(strstr(err, "padding refused") != NULL);
	}
	free(s);
	free(buf);
}

/* 100k tensors: every one added (quadratic duplicate checks made this 12 s), a duplicate still
 * refused wherever it comes, and the snapshot reads back with every name */
static void test_many_tensors(void)
{
	enum { N = 100000 };
	char path[600], err[512], name[32];
	snprintf(path, sizeof path, "%s/many.thaw", t_tmpdir());
	snap_writer *w;
	snap_writer_opts o = {.threads = 1};
	T_EQ_INT(snap_writer_open(&w, path, &o, err, sizeof err), 0);
	float *data = malloc(sizeof(float) * N);
	T_CHECK(data != NULL);
	if (!data) {
		snap_writer_abort(w);
		return;
	}
	uint64_t shape[1] = {1};
	int bad = 0;
	for (int i = 0; i < N; i++) {
		data[i] = (float)i;
		snprintf(name, sizeof name, "layer.%d.w", i);
		if (snap_writer_add(w, name, SNAP_DTYPE_F32, 1, shape, &data[i], 4, 0, err, sizeof err))
			bad++;
	}
	T_EQ_INT(bad, 0);
	T_EQ_INT(snap_writer_add(w, "layer.0.w", SNAP_DTYPE_F32, 1, shape, data, 4, 0, err, sizeof err),
		 -EINVAL);
	T_CHECK(strstr(err, "layer.0.w added twice") != NULL);
	T_EQ_INT(snap_writer_add(w, "layer.77777.w", SNAP_DTYPE_F32, 1, shape, data, 4, 0, err,
				 sizeof err), -EINVAL);
	T_EQ_INT(snap_writer_count(w), N);
	T_EQ_INT(snap_writer_finish(w, "{\"kind\":\"echo\"}", NULL, err, sizeof err), 0);
	snap_file *f = NULL;
	T_EQ_INT(snap_open(&f, path, err, sizeof err), 0);
	if (f) {
		T_EQ_INT(snap_tensor_count(f), N);
		int missing = 0;
		for (int i = 0; i < N; i += 997) {
			snprintf(name, sizeof name, "layer.%d.w", i);
			const snap_tensor *t = snap_tensor_find(f, name);
			if (!t || t->nbytes != 4)
				missing++;
		}
		T_EQ_INT(missing, 0);
		float *img = malloc(snap_image_size(f));
		snap_restore_opts ro = {0};
		T_CHECK(img && snap_restore_host(f, img, snap_image_size(f), &ro, NULL, err, sizeof err) == 0);
		const snap_tensor *t = snap_tensor_find(f, "layer.99999.w");
		T_CHECK(img && t && img[t->offset / 4] == 99999.0f);
		free(img);
	}
	snap_close(f);
	free(data);
}

/* pack -o into a private directory gives a private file; into an open one, the umask decides */
static void test_pack_mode(void)
{
	char dir[600], priv[700], pub[700], args[2200], err[2048];
	model_dir(dir, sizeof dir, "modesrc");
	snprintf(priv, sizeof priv, "%s/private", t_tmpdir());
	snprintf(pub, sizeof pub, "%s/public", t_tmpdir());
	T_EQ_INT(mkdir(priv, 0700), 0);
	T_EQ_INT(mkdir(pub, 0755), 0);
	chmod(priv, 0700);
	chmod(pub, 0755);
	mode_t old = umask(022);
	snprintf(args, sizeof args, "pack %s -o %s/m.thaw", dir, priv);
	T_EQ_INT(thaw_snapshot(err, sizeof err, args), 0);
	snprintf(args, sizeof args, "pack %s -o %s/m.thaw", dir, pub);
	T_EQ_INT(thaw_snapshot(err, sizeof err, args), 0);
	umask(old);
	struct stat st;
	char p[800];
	snprintf(p, sizeof p, "%s/m.thaw", priv);
	T_EQ_INT(stat(p, &st), 0);
	T_EQ_INT(st.st_mode & 0777, 0600);
	snprintf(p, sizeof p, "%s/m.thaw", pub);
	T_EQ_INT(stat(p, &st), 0);
	T_EQ_INT(st.st_mode & 0777, 0644);
}

void t_main(void)
{
	T_RUN(test_fifo_inputs);
	T_RUN(test_not_safetensors);
	T_RUN(test_image_bounded_by_tensors);
	T_RUN(test_many_tensors);
	T_RUN(test_pack_mode);
}

/* test_attachment.c — format 1.1 attachments (docs/snapshot-format.md, "Attachment"): a
 * tokenizer packed with a model travels after the metadata, so that opening the snapshot (every
 * cold start) does not parse it. Packs a random llama of 512 ids (e2e_llama_write) with tests/data/tok/small, then:
 * the metadata stays small and names the attachment, the attachment reads back byte-exact and
 * loads as the same tokenizer, a snapshot without one says -ENOENT and is written as 1.0, a
 * flipped attachment byte is caught by its checksum (the model still opens), and truncated or
 * misplaced attachments are refused at open. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <jansson.h>
#include "runtime/tok/rt_tok.h"
#include "snapshot/snap.h"
#include "tests/e2e/e2e.h"
#include "tests/t.h"




/* reads/writes 8 little-endian bytes at off in path */
static uint64_t rd64(const char *path, long off)
{
	uint8_t b[8] = {0};
	FILE *f = fopen(path, "rb");
	if (f) {
		fseek(f, off, SEEK_SET);
		if (fread(b, 1, 8, f) != 8)
			memset(b, 0, 8);
		fclose(f);
	}
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | b[i];
	return v;
}

static void flip(const char *path, long off)
{
	int fd = open(path, O_RDWR);
	uint8_t c = 0;
	if (fd >= 0 && pread(fd, &c, 1, off) == 1) {
		c ^= 0x40;
		if (pwrite(fd, &c, 1, off) != 1)
			T_CHECK(!"pwrite");
	}
	if (fd >= 0)
		close(fd);
}

static void test_attachment(void)
{
	char d[400], cmd[4096], path[700], copy[700], err[512];
	snprintf(d, sizeof d, "%s", t_tmpdir());
	snprintf(cmd, sizeof cmd, "mkdir -p %s/m && cp %s/tests/data/tok/small/tokenizer*.json %s/m/", d, t_src(), d);
	T_EQ_INT(t_sh(NULL, 0, "%s", cmd), 0);
	snprintf(path, sizeof path, "%s/m", d);
	T_EQ_INT(e2e_llama_write(path, 512, 2), 0);   /* the tokenizer's 512 ids */
	snprintf(cmd, sizeof cmd, "%s snapshot pack %s/m -o %s/a.thaw --quiet && %s snapshot pack %s/m -o %s/b.thaw --no-tokenizer --quiet",
		 t_bin(), d, d, t_bin(), d, d);
	T_EQ_INT(t_sh(NULL, 0, "%s", cmd), 0);
	snprintf(path, sizeof path, "%s/a.thaw", d);
	snap_file *f = NULL;
	T_EQ_INT(snap_open(&f, path, err, sizeof err), 0);
	if (!f)
		return;
	/* the metadata names the attachment but does not hold the vocabulary */
	const char *meta = snap_metadata_json(f);
	T_CHECK(strlen(meta) < 4096);
	T_CHECK(strstr(meta, "\"attachment\"") && strstr(meta, "\"carried\":\"attachment\""));
	T_EQ_INT(rd64(path, 8) >> 16 & 0xffff, 1);    /* minor version 1 */
	uint64_t att_off = rd64(path, 136), att_len = rd64(path, 144);
	T_CHECK(att_len > 1000 && att_off % 8 == 0);
	void *buf = NULL;
	size_t len = 0;
	T_EQ_INT(snap_attachment_read(f, &buf, &len, err, sizeof err), 0);
	T_EQ_INT((long long)len, (long long)att_len);
	json_t *a = buf ? json_loadb(buf, len, 0, NULL) : NULL;
	snprintf(cmd, sizeof cmd, "%s/tests/data/tok/small/tokenizer.json", t_src());
	json_t *want = json_load_file(cmd, 0, NULL);
	T_CHECK(a && want && json_equal(json_object_get(a, "tokenizer"), want));
	T_CHECK(json_is_object(json_object_get(a, "tokenizer_config")));
	json_decref(a);
	json_decref(want);
	free(buf);
	/* the same tokenizer as loading the files directly */
	fn_tok *t = NULL;
	T_EQ_INT(rt_tok_from_file(f, NULL, &t, err, sizeof err), 0);
	int32_t *ids = NULL;
	size_t n = 0;
	T_EQ_INT(t ? fn_tok_encode(t, "thaw restores snapshots", 23, 0, &ids, &n) : -1, 0);
	T_CHECK(n > 1 && n < 23);
	free(ids);
	fn_tok_free(t);
	snap_close(f);

	/* without a tokenizer: no attachment, still a 1.0 file */
	snprintf(path, sizeof path, "%s/b.thaw", d);
	T_EQ_INT(snap_open(&f, path, err, sizeof err), 0);
	T_EQ_INT(rd64(path, 8) >> 16 & 0xffff, 0);
	T_EQ_INT(f ? snap_attachment_read(f, &buf, &len, err, sizeof err) : 0, -ENOENT);
	snap_close(f);

	/* a flipped byte in the attachment: the model opens, the tokenizer is refused */
	snprintf(path, sizeof path, "%s/a.thaw", d);
	snprintf(copy, sizeof copy, "%s/c.thaw", d);
	snprintf(cmd, sizeof cmd, "cp %s %s", path, copy);
	T_EQ_INT(t_sh(NULL, 0, "%s", cmd), 0);
	flip(copy, (long)(att_off + att_len / 2));
	T_EQ_INT(snap_open(&f, copy, err, sizeof err), 0);
	T_EQ_INT(f ? snap_attachment_read(f, &buf, &len, err, sizeof err) : 0, -EBADMSG);
	T_CHECK(strstr(err, "attachment corrupt") != NULL);
	T_EQ_INT(f ? rt_tok_from_file(f, NULL, &t, err, sizeof err) : 0, -EBADMSG);
	snap_close(f);
	snprintf(cmd, sizeof cmd, "%s snapshot verify %s >/dev/null 2>&1", t_bin(), copy);
	T_EQ_INT(t_sh(NULL, 0, "%s", cmd), 0);   /* the tensors are intact */

	/* truncated: the header's file size no longer matches */
	snprintf(cmd, sizeof cmd, "cp %s %s && truncate -s -1 %s", path, copy, copy);
	T_EQ_INT(t_sh(NULL, 0, "%s", cmd), 0);
	T_CHECK(snap_open(&f, copy, err, sizeof err) < 0 && strstr(err, "truncated"));
}

void t_main(void)
{
	T_RUN(test_attachment);
}

/* test_pool_gpu.c — GPU restore: a packed snapshot restored onto the device through the pool's
 * pinned staging ring must equal the host restore byte for byte (device memory poisoned first),
 * repeatedly with the same pool (the ring is reused, not reallocated); compute scratch that
 * grows keeps its outgrown buffers usable. Skipped without a GPU. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "tests/t.h"
#include "tests/snapshot/snap_test_util.h"
#include "pool/pool_compute.h"
#include "pool/pool_gpu.h"
#include "snapshot/snap.h"
#include "snapshot/snap_pack.h"

static void test_gpu_restore(void)
{
	char err[512], dir[600], src[700], thaw[700];
	if (pool_gpu_count() == 0)
		T_SKIP("no GPU");
	snprintf(dir, sizeof dir, "%s/m", t_tmpdir());
	mkdir(dir, 0755);
	tt t[] = {
		{"w", "BF16", 2, {1000, 3001}, 2, NULL, 0},    /* ~6 MB: many chunks */
		{"b", "F32", 1, {777}, 4, NULL, 0},
		{"q", "I8", 1, {12345}, 1, NULL, 0},
	};
	tt_fill(t, 3);
	snprintf(src, sizeof src, "%s/model.safetensors", dir);
	tt_write(src, t, 3, NULL);
	snprintf(thaw, sizeof thaw, "%s/m.thaw", t_tmpdir());
	snap_pack_opts o = {0};
	o.w.chunk_size = 256 << 10;
	o.w.progress = 0;
	T_EQ_INT(snap_pack(src, thaw, &o, NULL, err, sizeof err), 0);
	snap_file *f;
	T_EQ_INT(snap_open(&f, thaw, err, sizeof err), 0);
	if (!f)
		return;
	size_t n = snap_image_size(f);
	uint8_t *host = malloc(n), *back = malloc(n);
	T_EQ_INT(snap_restore_host(f, host, n, NULL, NULL, err, sizeof err), 0);

	pool_gpu *g;
	pool_gpu_opts po = {.device = 0, .slot_bytes = 256 << 10, .n_slots = 4};
	T_EQ_INT(pool_gpu_open(&g, &po, err, sizeof err), 0);
	if (!g)
		goto out;
	void *dev;
	T_EQ_INT(pool_gpu_alloc(g, n, &dev), 0);
	for (int rep = 0; rep < 3; rep++) {
		snap_restore_opts ro = {.threads = rep + 1, .io = rep == 2 ? SNAP_IO_PREAD : SNAP_IO_AUTO};
		snap_restore_stats st;
		T_EQ_INT(pool_gpu_memset(g, dev, 0xA5, n), 0);
		T_EQ_INT(snap_restore_gpu(f, g, dev, &ro, &st, err, sizeof err), 0);
		memset(back, 0, n);
		T_EQ_INT(pool_gpu_memcpy_dtoh(g, back, dev, n), 0);
		T_CHECK(memcmp(host, back, n) == 0);
		for (int k = 0; k < 3; k++)   /* and each tensor equals its source bytes */
			T_CHECK(memcmp(back + snap_tensor_find(f, t[k].name)->offset, t[k].data, t[k].nbytes) == 0);
		T_CHECK(st.copy_s > 0);
	}
	/* the table points into device memory */
	snap_table *tab;
	T_EQ_INT(snap_table_make(f, dev, pool_gpu_device(g), &tab), 0);
	const snap_table_entry *e = snap_table_find(tab, "b");
	T_CHECK(e && e->data == (uint8_t *)dev + snap_tensor_find(f, "b")->offset && tab->device == 0);
	snap_table_free(tab);
	/* chunks larger than the staging slots are refused with a message */
	pool_gpu *small;
	pool_gpu_opts ps = {.device = 0, .slot_bytes = 64 << 10, .n_slots = 2};
	T_EQ_INT(pool_gpu_open(&small, &ps, err, sizeof err), 0);
	if (small) {
		T_CHECK(snap_restore_gpu(f, small, dev, NULL, NULL, err, sizeof err) < 0);
		T_CHECK(strstr(err, "staging") != NULL);
		pool_gpu_close(small);
	}
	pool_gpu_free(g, dev);
	pool_gpu_close(g);
out:
	free(host);
	free(back);
	snap_close(f);
	tt_free(t, 3);
}

static void test_no_gpu_message(void)
{
	char err[256] = "";
	pool_gpu *g;
	pool_gpu_opts po = {.device = 1000};
	T_CHECK(pool_gpu_open(&g, &po, err, sizeof err) < 0);
	T_CHECK(g == NULL && err[0]);
}

/* a graph captured before a scratch slot grew still points at the outgrown buffer: it must stay
 * device memory that copies reach, until the compute resources close */
static void test_scratch_outgrown_stays(void)
{
	char err[256] = "";
	if (pool_gpu_count() == 0)
		T_SKIP("no GPU");
	pool_compute *pc = NULL;
	pool_gpu *g = NULL;
	pool_gpu_opts po = {.device = 0};
	T_EQ_INT(pool_compute_open(0, &pc), 0);
	T_EQ_INT(pool_gpu_open(&g, &po, err, sizeof err), 0);
	void *a = NULL, *b = NULL, *c = NULL;
	T_EQ_INT(pool_compute_scratch(pc, 0, 1 << 20, &a), 0);
	T_EQ_INT(pool_compute_scratch(pc, 0, 1 << 19, &b), 0);
	T_CHECK(a == b);                                   /* fits: the same buffer */
	T_EQ_INT(pool_compute_scratch(pc, 0, (1 << 20) + 1, &b), 0);
	T_CHECK(b != a);
	T_EQ_INT(pool_compute_scratch(pc, 0, (2 << 20) - 1, &c), 0);
	T_CHECK(c == b);                                   /* grown at least twofold */
	size_t n = 1 << 20;
	unsigned char *h = malloc(n), *back = malloc(n);
	for (size_t i = 0; i < n; i++)
		h[i] = (unsigned char)(i * 7 + 3);
	T_EQ_INT(pool_gpu_copy_htod(g, a, h, n), 0);       /* the outgrown buffer */
	T_EQ_INT(pool_gpu_copy_dtoh(g, back, a, n), 0);
	T_CHECK(memcmp(h, back, n) == 0);
	T_EQ_INT(pool_compute_scratch(pc, POOL_COMPUTE_SLOTS, 16, &c), -EINVAL);
	free(h);
	free(back);
	pool_gpu_close(g);
	pool_compute_close(pc);
}

void t_main(void)
{
	T_RUN(test_scratch_outgrown_stays);
	T_RUN(test_gpu_restore);
	T_RUN(test_no_gpu_message);
}

/* test_pool_host.c — host-tier buffers: pageable buffers come from and go back to the bounded
 * reuse cache; a pinned request without a GPU falls back to pageable memory; on a GPU, pinned
 * buffers copy to the device and back on the pool's copy stream byte for byte, from pinned and
 * from pageable memory, and the weight budget is a share of the device's free memory. */
#include <errno.h>
#include <stdlib.h>
#include "tests/t.h"
#include "pool/pool_gpu.h"
#include "pool/pool_host.h"

static void test_cache(void)
{
	pool_host_buf a, b, c;
	pool_host_cache_set(0);
	T_EQ_INT(pool_host_alloc(&a, 100000, 0), 0);
	T_CHECK(a.data && !a.pinned && a.mapped >= 100000);
	memset(a.data, 7, 100000);
	pool_host_free(&a);   /* cap 0: unmapped, nothing kept */
	T_CHECK(a.data == NULL);
	T_EQ_INT(pool_host_cache_bytes(), 0);
	pool_host_cache_set(1 << 20);
	T_EQ_INT(pool_host_alloc(&a, 100000, 0), 0);
	void *first = a.data;
	size_t mapped = a.mapped;
	pool_host_free(&a);   /* kept for reuse */
	T_EQ_INT(pool_host_cache_bytes(), mapped);
	T_EQ_INT(pool_host_alloc(&b, 90000, 0), 0);   /* fits: the same mapping again */
	T_CHECK(b.data == first && b.mapped == mapped);
	T_EQ_INT(pool_host_cache_bytes(), 0);
	T_EQ_INT(pool_host_alloc(&c, 10, 0), 0);      /* far smaller: a new mapping */
	T_CHECK(c.data && c.data != b.data);
	pool_host_free(&b);
	pool_host_free(&c);
	T_CHECK(pool_host_cache_bytes() > 0 && pool_host_cache_bytes() <= (1 << 20));
	pool_host_cache_set(0);   /* lowering the cap unmaps the surplus */
	T_EQ_INT(pool_host_cache_bytes(), 0);
	pool_host_free(&c);       /* a zeroed buffer is a no-op */
	T_EQ_INT(pool_host_alloc(&a, 0, 0), 0);       /* 0 bytes: still a valid buffer */
	T_CHECK(a.data != NULL);
	pool_host_free(&a);
	T_CHECK(pool_host_alloc(&a, (size_t)1 << 62, 0) == -ENOMEM && a.data == NULL);
}

static void test_pinned_fallback(void)
{
	pool_host_buf b;
	if (pool_gpu_count() > 0)
		T_SKIP("a GPU is present: test_gpu_copy covers pinned buffers");
	T_EQ_INT(pool_host_alloc(&b, 4096, 1), 0);
	T_CHECK(b.data && !b.pinned && b.mapped > 0);
	pool_host_free(&b);
	/* the device API answers "no device" rather than crashing */
	uint64_t budget = 1;
	T_EQ_INT(pool_gpu_weight_budget(NULL, 0.5, &budget), -ENODEV);
	T_EQ_INT(budget, 0);
}

static void test_gpu_copy(void)
{
	char err[256];
	pool_gpu *g = NULL;
	if (pool_gpu_count() == 0)
		T_SKIP("no GPU");
	pool_gpu_opts o = {.device = 0, .slot_bytes = 1 << 20, .n_slots = 2};
	T_EQ_INT(pool_gpu_open(&g, &o, err, sizeof err), 0);
	if (!g)
		return;
	size_t n = (24u << 20) + 123;   /* larger than the staging ring, not a multiple of a page */
	pool_host_buf src, back, page;
	void *dev = NULL;
	T_EQ_INT(pool_host_alloc(&src, n, 1), 0);
	T_EQ_INT(pool_host_alloc(&back, n, 1), 0);
	T_EQ_INT(pool_host_alloc(&page, n, 0), 0);
	T_CHECK(src.pinned && back.pinned && !page.pinned);
	for (size_t i = 0; i < n; i++)
		((unsigned char *)src.data)[i] = (unsigned char)(i * 2654435761u >> 13);
	T_EQ_INT(pool_gpu_alloc(g, n, &dev), 0);
	T_EQ_INT(pool_gpu_memset(g, dev, 0xA5, n), 0);
	T_EQ_INT(pool_gpu_copy_htod(g, dev, src.data, n), 0);
	memset(back.data, 0, n);
	T_EQ_INT(pool_gpu_copy_dtoh(g, back.data, dev, n), 0);
	T_CHECK(memcmp(src.data, back.data, n) == 0);
	/* pageable memory on both sides */
	T_EQ_INT(pool_gpu_memset(g, dev, 0, n), 0);
	memcpy(page.data, src.data, n);
	T_EQ_INT(pool_gpu_copy_htod(g, dev, page.data, n), 0);
	memset(page.data, 0, n);
	T_EQ_INT(pool_gpu_copy_dtoh(g, page.data, dev, n), 0);
	T_CHECK(memcmp(src.data, page.data, n) == 0);
	T_EQ_INT(pool_gpu_copy_htod(g, dev, src.data, 0), 0);   /* nothing to copy */
	/* free and total memory; the budget is the share of what is free */
	size_t fr = 0, tot = 0;
	uint64_t budget = 0;
	T_EQ_INT(pool_gpu_mem_info(g, &fr, &tot), 0);
	T_CHECK(fr > 0 && tot >= fr);
	T_EQ_INT(pool_gpu_weight_budget(g, 0.5, &budget), 0);
	T_CHECK(budget > 0 && budget <= tot / 2 + 1);
	pool_gpu_free(g, dev);
	pool_host_free(&src);
	pool_host_free(&back);
	pool_host_free(&page);
	pool_gpu_close(g);
}

void t_main(void)
{
	T_RUN(test_cache);
	T_RUN(test_pinned_fallback);
	T_RUN(test_gpu_copy);
}

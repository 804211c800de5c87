/* rt_mem.c — periodic malloc_trim; see rt_mem.h. */
#include <malloc.h>
#include "runtime/base/rt_mem.h"

static void on_trim(uv_timer_t *t)
{
	(void)t;
	malloc_trim(0);
}

void rt_mem_tune(void)
{
	mallopt(M_ARENA_MAX, RT_MEM_ARENAS);
	mallopt(M_MMAP_THRESHOLD, RT_MEM_MMAP_BYTES);
	mallopt(M_TRIM_THRESHOLD, RT_MEM_TRIM_BYTES);
}

void rt_mem_trim_start(uv_loop_t *loop, uv_timer_t *t)
{
	uv_timer_init(loop, t);
	uv_timer_start(t, on_trim, RT_MEM_TRIM_MS, RT_MEM_TRIM_MS);
	uv_unref((uv_handle_t *)t);
}

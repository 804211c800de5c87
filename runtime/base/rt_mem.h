/* rt_mem.h — keeps the daemon's resident memory close to what it uses. glibc keeps freed
 * chunks in per-thread arenas, so a mix of threads that allocate large buffers for a moment
 * (jobs, restores, deploys) grows the resident set while the live heap stays small. So: at most
 * RT_MEM_ARENAS arenas, allocations from RT_MEM_MMAP_BYTES (1 MiB: the jobs' big transient
 * buffers, not per-call buffers of a few hundred KiB) up in their own mappings (returned on
 * free), a small trim threshold, and malloc_trim(0) every RT_MEM_TRIM_MS on the loop (cheap
 * at the daemon's heap size). bench/soak.sh measures the effect (docs/benchmarks.md). */
#ifndef THAW_RT_MEM_H
#define THAW_RT_MEM_H
#include <uv.h>

#define RT_MEM_TRIM_MS 2000
#define RT_MEM_ARENAS 2
#define RT_MEM_MMAP_BYTES (1 << 20)
#define RT_MEM_TRIM_BYTES (128 << 10)

/* rt_mem_tune sets the allocator options above; call it once, early (before threads start). */
void rt_mem_tune(void);

/* rt_mem_trim_start starts the trim timer t (unreferenced) on loop; close t with the loop's
 * other handles. */
void rt_mem_trim_start(uv_loop_t *loop, uv_timer_t *t);

#endif

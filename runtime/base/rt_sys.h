/* rt_sys.h — what the machine gives this process: RAM size and CPU cores, bounded by the cgroup
 * v2 limits of the process when it runs in a container (a Knative pod), so that default memory
 * budgets and thread counts follow the container, not the node. */
#ifndef THAW_RT_SYS_H
#define THAW_RT_SYS_H
#include <stdint.h>

typedef struct rt_sys_limits {
	uint64_t ram_bytes;   /* physical RAM, or the cgroup's memory.max when smaller (8 GiB when
	                       * the RAM size cannot be read) */
	int cores;            /* online cores, or the cgroup's cpu.max when smaller (at least 1) */
	int cpu_limited;      /* 1 when cores comes from a cgroup cpu.max below the online cores */
} rt_sys_limits;

/* rt_sys_limits_read fills *out for this process (cgroup v2 at /sys/fs/cgroup). Never fails. */
void rt_sys_limits_read(rt_sys_limits *out);

/* rt_sys_cgroup_limits reads memory.max and cpu.max under root (a cgroup v2 directory):
 * *mem bytes (0 = no limit or unreadable) and *cpus (quota / period rounded up; 0 = no limit
 * or unreadable). */
void rt_sys_cgroup_limits(const char *root, uint64_t *mem, int *cpus);

#endif

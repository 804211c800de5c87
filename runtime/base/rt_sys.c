/* rt_sys.c — RAM, cores and cgroup v2 limits (see rt_sys.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "runtime/base/rt_sys.h"

/* reads the first line of a small file under the cgroup v2 root; 0 or -1 */
static int read_cg(const char *root, const char *name, char *buf, size_t cap)
{
	char path[512];
	snprintf(path, sizeof path, "%s/%s", root, name);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	int ok = fgets(buf, (int)cap, f) != NULL;
	fclose(f);
	return ok ? 0 : -1;
}

void rt_sys_cgroup_limits(const char *root, uint64_t *mem, int *cpus)
{
	char b[128];
	*mem = 0;
	*cpus = 0;
	if (read_cg(root, "memory.max", b, sizeof b) == 0 && strncmp(b, "max", 3) != 0) {
		unsigned long long v = strtoull(b, NULL, 10);
		if (v > 0)
			*mem = v;
	}
	if (read_cg(root, "cpu.max", b, sizeof b) == 0 && strncmp(b, "max", 3) != 0) {
		unsigned long long quota = 0, period = 0;
		if (sscanf(b, "%llu %llu", &quota, &period) == 2 && quota > 0 && period > 0)
			*cpus = (int)((quota + period - 1) / period);
	}
}

void rt_sys_limits_read(rt_sys_limits *out)
{
	long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
	long online = sysconf(_SC_NPROCESSORS_ONLN);
	uint64_t cg_mem;
	int cg_cpus;
	memset(out, 0, sizeof *out);
	out->ram_bytes = pages > 0 && psz > 0 ? (uint64_t)pages * (uint64_t)psz : (8ull << 30);
	out->cores = online > 0 ? (int)online : 1;
	rt_sys_cgroup_limits("/sys/fs/cgroup", &cg_mem, &cg_cpus);
	if (cg_mem && cg_mem < out->ram_bytes)
		out->ram_bytes = cg_mem;
	if (cg_cpus && (online <= 0 || cg_cpus < online)) {
		out->cores = cg_cpus;
		out->cpu_limited = 1;
	}
}

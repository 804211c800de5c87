/* test_sys.c — rt_sys: cgroup v2 memory.max / cpu.max parsing, so that the default memory
 * budgets and thread counts follow a container's limits, and the limits this process reads. */
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
#include "tests/t.h"
#include "runtime/base/rt_sys.h"

static void put(const char *dir, const char *name, const char *text)
{
	char p[600];
	snprintf(p, sizeof p, "%s/%s", dir, name);
	FILE *f = fopen(p, "w");
	fputs(text, f);
	fclose(f);
}

static void test_cgroup_limits(void)
{
	char dir[512];
	uint64_t mem;
	int cpus;
	snprintf(dir, sizeof dir, "%s/cg", t_tmpdir());
	mkdir(dir, 0755);
	rt_sys_cgroup_limits(dir, &mem, &cpus);   /* no files: no limits */
	T_EQ_INT(mem, 0);
	T_EQ_INT(cpus, 0);
	put(dir, "memory.max", "8589934592\n");
	put(dir, "cpu.max", "250000 100000\n");
	rt_sys_cgroup_limits(dir, &mem, &cpus);
	T_EQ_INT(mem, 8589934592ull);
	T_EQ_INT(cpus, 3);   /* 2.5 CPUs round up */
	put(dir, "memory.max", "max\n");
	put(dir, "cpu.max", "max 100000\n");
	rt_sys_cgroup_limits(dir, &mem, &cpus);
	T_EQ_INT(mem, 0);
	T_EQ_INT(cpus, 0);
	put(dir, "cpu.max", "garbage\n");
	put(dir, "memory.max", "\n");
	rt_sys_cgroup_limits(dir, &mem, &cpus);
	T_EQ_INT(mem, 0);
	T_EQ_INT(cpus, 0);
}

static void test_limits_read(void)
{
	/* never more than the machine has, never nothing */
	rt_sys_limits l;
	rt_sys_limits_read(&l);
	long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
	long online = sysconf(_SC_NPROCESSORS_ONLN);
	T_CHECK(l.ram_bytes > 0);
	if (pages > 0 && psz > 0)
		T_CHECK(l.ram_bytes <= (uint64_t)pages * (uint64_t)psz);
	T_CHECK(l.cores >= 1);
	if (online > 0)
		T_CHECK(l.cores <= online);
	T_CHECK(l.cpu_limited == 0 || l.cores < online);
}

void t_main(void)
{
	T_RUN(test_cgroup_limits);
	T_RUN(test_limits_read);
}

/* test_sched_limits.c — rt_sched_cgroup_limits: cgroup v2 memory.max / cpu.max parsing, so that
 * the default memory budgets and thread counts follow a container's limits. */
#include <stdio.h>
#include <sys/stat.h>
#include "tests/t.h"
#include "runtime/sched/rt_sched.h"

static void put(const char *dir, const char *name, const char *text)
{
	char p[600];
	snprintf(p, sizeof p, "%s/%s", dir, name);
	FILE *f = fopen(p, "w");
	fputs(text, f);
	fclose(f);
}

static void test_limits(void)
{
	char dir[512];
	uint64_t mem;
	int cpus;
	snprintf(dir, sizeof dir, "%s/cg", t_tmpdir());
	mkdir(dir, 0755);
	rt_sched_cgroup_limits(dir, &mem, &cpus);   /* no files: no limits */
	T_EQ_INT(mem, 0);
	T_EQ_INT(cpus, 0);
	put(dir, "memory.max", "8589934592\n");
	put(dir, "cpu.max", "250000 100000\n");
	rt_sched_cgroup_limits(dir, &mem, &cpus);
	T_EQ_INT(mem, 8589934592ull);
	T_EQ_INT(cpus, 3);   /* 2.5 CPUs round up */
	put(dir, "memory.max", "max\n");
	put(dir, "cpu.max", "max 100000\n");
	rt_sched_cgroup_limits(dir, &mem, &cpus);
	T_EQ_INT(mem, 0);
	T_EQ_INT(cpus, 0);
	put(dir, "cpu.max", "garbage\n");
	rt_sched_cgroup_limits(dir, &mem, &cpus);
	T_EQ_INT(cpus, 0);
	/* the defaults never exceed what the machine has */
	rt_sched_config c;
	rt_sched_config_defaults(&c);
	T_CHECK(c.host_budget_bytes > 0 && c.cpu_budget_bytes >= c.host_budget_bytes);
}

void t_main(void)
{
	T_RUN(test_limits);
}

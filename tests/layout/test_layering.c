/* test_layering.c — the one-way arrows of docs/architecture.md, held against the source tree
 * ($THAW_SRC): which part may include which (the top-level parts, and runtime/'s wings), no
 * CUDA or cuBLAS call in runtime/ (pool/ owns the devices), no THAW_ environment switch below
 * runtime/ (tuning is a struct, test hooks are test-only), and every SQL statement in
 * runtime/store/. Each break is printed with its file and line. scripts/include-graph.sh draws
 * the same arrows. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "tests/t.h"

/* The parts a part may include besides itself. A part is a top-level folder, or a wing of
 * runtime/ ("runtime/sched"); "runtime" is the daemon's wiring at runtime/'s top, which may
 * include every wing. Lower parts first: every arrow runs down this table. */
static const struct rule {
	const char *part;
	const char *may[10];
} rules[] = {
	{ "pool",           { NULL } },
	{ "kernels",        { "pool" } },
	{ "snapshot",       { "pool" } },
	{ "functions",      { "kernels", "pool" } },
	{ "runtime/base",   { "pool" } },   /* pool/pool_base.h: errors and clocks of every part */
	{ "runtime/http",   { "runtime/base" } },
	{ "runtime/store",  { "runtime/base", "functions", "kernels", "snapshot" } },
	{ "runtime/tok",    { "runtime/base", "snapshot" } },
	{ "runtime/access", { "runtime/base", "runtime/http", "runtime/store", "functions" } },
	{ "runtime/sched",  { "runtime/base", "runtime/store", "functions", "kernels", "snapshot",
			      "pool" } },
	{ "runtime/jobs",   { "runtime/base", "runtime/store", "runtime/sched", "functions",
			      "kernels", "snapshot", "pool" } },
	{ "runtime/api",    { "runtime/base", "runtime/http", "runtime/access", "runtime/store",
			      "runtime/sched", "runtime/jobs", "runtime/tok", "functions",
			      "snapshot" } },
	{ "runtime/cli",    { "runtime/base", "runtime/store", "runtime/access", "runtime/sched",
			      "runtime/jobs", "runtime/tok", "functions", "kernels", "snapshot",
			      "pool" } },
};

static const char *const roots[] = { "runtime", "snapshot", "pool", "kernels", "functions" };

typedef struct src {
	char path[512];   /* relative to the source root */
	char *text;       /* whole file */
	char *code;       /* text with comments and string literals blanked (same length) */
} src;

static src *srcs;
static int nsrcs;

static int is_source(const char *name)
{
	const char *dot = strrchr(name, '.');
	return dot && (!strcmp(dot, ".c") || !strcmp(dot, ".h") || !strcmp(dot, ".cu"));
}

/* blank keeps newlines (so line numbers hold) and blanks comments, strings and characters. */
static char *blank(const char *t)
{
	size_t n = strlen(t);
	char *c = malloc(n + 1);
	if (!c)
		return NULL;
	memcpy(c, t, n + 1);
	for (size_t i = 0; i < n; i++) {
		if (c[i] == '/' && c[i + 1] == '*') {
			size_t j = i;
			while (j < n && !(c[j] == '*' && c[j + 1] == '/'))
				j++;
			for (size_t k = i; k < n && k < j + 2; k++)
				if (c[k] != '\n')
					c[k] = ' ';
			i = j + 1;
		} else if (c[i] == '/' && c[i + 1] == '/') {
			while (i < n && c[i] != '\n')
				c[i++] = ' ';
		} else if (c[i] == '"' || c[i] == '\'') {
			char q = c[i];
			size_t j = i + 1;
			while (j < n && c[j] != q && c[j] != '\n')
				j += c[j] == '\\' ? 2 : 1;
			for (size_t k = i + 1; k < j && k < n; k++)
				c[k] = ' ';
			i = j;
		}
	}
	return c;
}

static void scan_dir(const char *root, const char *rel)
{
	char dir[1024];
	snprintf(dir, sizeof dir, "%s/%s", root, rel);
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char sub[512], full[1024];
		snprintf(sub, sizeof sub, "%s/%s", rel, e->d_name);
		snprintf(full, sizeof full, "%s/%s", root, sub);
		struct stat st;
		if (stat(full, &st) < 0)
			continue;
		if (S_ISDIR(st.st_mode)) {
			scan_dir(root, sub);
		} else if (S_ISREG(st.st_mode) && is_source(e->d_name)) {
			src *grown = realloc(srcs, (size_t)(nsrcs + 1) * sizeof *srcs);
			if (!grown)
				break;
			srcs = grown;
			src *s = &srcs[nsrcs];
			snprintf(s->path, sizeof s->path, "%s", sub);
			s->text = t_read_file(full, NULL);
			s->code = s->text ? blank(s->text) : NULL;
			if (s->code)
				nsrcs++;
			else
				free(s->text);
		}
	}
	closedir(d);
}

static void load(void)
{
	if (srcs)
		return;
	for (size_t i = 0; i < sizeof roots / sizeof roots[0]; i++)
		scan_dir(t_src(), roots[i]);
}

/* part_of writes the part of path ("runtime/sched", "runtime", "kernels", ...) into out. */
static void part_of(const char *path, char *out, size_t cap)
{
	const char *a = strchr(path, '/');
	const char *b = a ? strchr(a + 1, '/') : NULL;
	size_t n = a ? (size_t)(a - path) : strlen(path);
	if (a && b && !strncmp(path, "runtime/", 8))
		n = (size_t)(b - path);
	if (n >= cap)
		n = cap - 1;
	memcpy(out, path, n);
	out[n] = 0;
}

static const struct rule *rule_of(const char *part)
{
	for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++)
		if (!strcmp(rules[i].part, part))
			return &rules[i];
	return NULL;
}

static int may_include(const char *from, const char *to)
{
	if (!strcmp(from, to))
		return 1;
	if (!strcmp(from, "runtime"))
		return 1;   /* the wiring at runtime/'s top sees every wing and part */
	const struct rule *r = rule_of(from);
	if (!r)
		return 0;
	for (int i = 0; i < 10 && r->may[i]; i++)
		if (!strcmp(r->may[i], to))
			return 1;
	return 0;
}

/* snip: how many bytes of p to print: up to the end of its line, at most 40. */
static int snip(const char *p)
{
	int n = 0;
	while (n < 40 && p[n] && p[n] != '\n')
		n++;
	return n;
}

static int line_at(const char *text, const char *p)
{
	int line = 1;
	for (const char *q = text; q < p; q++)
		line += *q == '\n';
	return line;
}

/* Every include of a project header follows the table, and every part has a rule. */
static void test_includes(void)
{
	load();
	T_CHECK(nsrcs > 100);
	int bad = 0;
	for (int i = 0; i < nsrcs; i++) {
		char from[64];
		part_of(srcs[i].path, from, sizeof from);
		if (strcmp(from, "runtime") && !rule_of(from)) {
			fprintf(stderr, "  %s: part %s has no rule in this test\n", srcs[i].path, from);
			bad++;
		}
		for (const char *p = srcs[i].text; (p = strstr(p, "#include \"")); p++) {
			const char *q = p + 10, *end = strchr(q, '"');
			if (!end || end - q >= 400)
				continue;
			char inc[400], to[64];
			memcpy(inc, q, (size_t)(end - q));
			inc[end - q] = 0;
			if (!strchr(inc, '/'))
				continue;   /* a sibling header of the same folder */
			part_of(inc, to, sizeof to);
			int known = 0;
			for (size_t r = 0; r < sizeof roots / sizeof roots[0]; r++)
				known |= !strncmp(inc, roots[r], strlen(roots[r]));
			if (!known || may_include(from, to))
				continue;
			fprintf(stderr, "  %s:%d: %s includes %s (%s -> %s runs against the arrows)\n",
				srcs[i].path, line_at(srcs[i].text, p), from, inc, from, to);
			bad++;
		}
	}
	T_EQ_INT(bad, 0);
}

/* call_at: whether code[p..] starts an identifier beginning with prefix + an upper-case letter
 * (cudaMalloc, cublasSgemm), not inside a longer identifier, followed by '(' — a call. */
static int call_at(const char *code, const char *p, const char *prefix)
{
	size_t n = strlen(prefix);
	if (p > code && (p[-1] == '_' || (p[-1] >= 'a' && p[-1] <= 'z') ||
			 (p[-1] >= 'A' && p[-1] <= 'Z') || (p[-1] >= '0' && p[-1] <= '9')))
		return 0;
	if (strncmp(p, prefix, n) || !(p[n] >= 'A' && p[n] <= 'Z'))
		return 0;
	const char *q = p + n;
	while (*q == '_' || (*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') ||
	       (*q >= '0' && *q <= '9'))
		q++;
	while (*q == ' ' || *q == '\t' || *q == '\n')
		q++;
	return *q == '(';
}

/* runtime/ makes no CUDA or cuBLAS call and includes no CUDA header: pool/ owns the devices. */
static void test_no_cuda_in_runtime(void)
{
	load();
	int bad = 0;
	for (int i = 0; i < nsrcs; i++) {
		if (strncmp(srcs[i].path, "runtime/", 8))
			continue;
		const char *c = srcs[i].code;
		for (const char *p = c; *p; p++) {
			int hit = (*p == 'c') && (call_at(c, p, "cuda") || call_at(c, p, "cublas"));
			if (!hit && *p == '#' && (!strncmp(p, "#include <cuda", 14) ||
						  !strncmp(p, "#include <cublas", 16)))
				hit = 1;
			if (hit) {
				fprintf(stderr, "  %s:%d: CUDA in runtime/: %.*s\n", srcs[i].path,
					line_at(c, p), snip(srcs[i].text + (p - c)),
					srcs[i].text + (p - c));
				bad++;
			}
		}
	}
	T_EQ_INT(bad, 0);
}

/* Below runtime/ no code reads a THAW_ environment variable: tuning is a struct set through
 * an API, test hooks compile only into test builds. */
static void test_no_env_switches_below_runtime(void)
{
	load();
	int bad = 0;
	for (int i = 0; i < nsrcs; i++) {
		if (!strncmp(srcs[i].path, "runtime/", 8))
			continue;
		for (const char *p = srcs[i].text; (p = strstr(p, "\"THAW_")); p++) {
			const char *c = srcs[i].code + (p - srcs[i].text);
			if (*c != '"')
				continue;   /* inside a comment */
			fprintf(stderr, "  %s:%d: environment switch below runtime/: %.*s\n",
				srcs[i].path, line_at(srcs[i].text, p), snip(p), p);
			bad++;
		}
	}
	T_EQ_INT(bad, 0);
}

/* Every SQL statement of the daemon runs in runtime/store/ (the registry's implementations):
 * no other file calls SQLite or libpq. */
static void test_sql_only_in_store(void)
{
	load();
	int bad = 0;
	for (int i = 0; i < nsrcs; i++) {
		if (!strncmp(srcs[i].path, "runtime/store/", 14))
			continue;
		const char *c = srcs[i].code;
		for (const char *p = c; (p = strstr(p, "sqlite3_")); p++) {
			if (p > c && (p[-1] == '_' || (p[-1] >= 'a' && p[-1] <= 'z')))
				continue;
			fprintf(stderr, "  %s:%d: SQLite outside runtime/store/: %.*s\n",
				srcs[i].path, line_at(c, p), snip(srcs[i].text + (p - c)),
				srcs[i].text + (p - c));
			bad++;
		}
		for (const char *p = c; (p = strstr(p, "libpq-fe.h")); p++) {
			fprintf(stderr, "  %s:%d: libpq outside runtime/store/\n", srcs[i].path,
				line_at(c, p));
			bad++;
		}
	}
	T_EQ_INT(bad, 0);
}

/* The checker itself: a planted break of each rule is found (so the rules cannot pass by
 * reading nothing). */
static void test_checker_finds_breaks(void)
{
	T_CHECK(!may_include("runtime/sched", "runtime/http"));
	T_CHECK(!may_include("kernels", "runtime/base"));
	T_CHECK(!may_include("functions", "snapshot"));
	T_CHECK(may_include("runtime/api", "runtime/sched"));
	T_CHECK(may_include("runtime", "runtime/cli"));
	char part[64];
	part_of("runtime/sched/rt_sched.c", part, sizeof part);
	T_EQ_STR(part, "runtime/sched");
	part_of("runtime/main.c", part, sizeof part);
	T_EQ_STR(part, "runtime");
	part_of("kernels/cuda/kc_gemv.cu", part, sizeof part);
	T_EQ_STR(part, "kernels");
	const char *code = "x = cudaMalloc (&p, 4); y = mycudaFree(p); /* cudaFree(p) */";
	char *b = blank(code);
	T_CHECK(b != NULL);
	if (!b)
		return;
	T_CHECK(call_at(b, strstr(b, "cudaMalloc"), "cuda"));
	T_CHECK(!call_at(b, strstr(b, "cudaFree"), "cuda"));   /* part of mycudaFree */
	T_CHECK(strstr(b, "/*") == NULL);                      /* the comment is blanked */
	free(b);
}

static void cleanup(void)
{
	for (int i = 0; i < nsrcs; i++) {
		free(srcs[i].text);
		free(srcs[i].code);
	}
	free(srcs);
	srcs = NULL;
}

void t_main(void)
{
	T_RUN(test_checker_finds_breaks);
	T_RUN(test_includes);
	T_RUN(test_no_cuda_in_runtime);
	T_RUN(test_no_env_switches_below_runtime);
	T_RUN(test_sql_only_in_store);
	cleanup();
}

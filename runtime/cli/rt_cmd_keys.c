/* rt_cmd_keys.c — `thaw keys create|list|revoke` and `thaw audit tail|grep`: they work on the
 * data directory directly (SQLite WAL, append-only audit files), also while the daemon runs;
 * every write announces itself to the daemon's registry view, so changes count at the next
 * request (docs/operations.md, "Security"). With --registry postgresql://... they work on the
 * registry a cluster shares instead: keys there, and the admin audit trail in its audit table.
 * Exit status: 0 success, 1 failure at run time, 2 bad usage. */
#include <errno.h>
#include <getopt.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <jansson.h>
#include <sodium.h>
#include "runtime/access/rt_audit.h"
#include "runtime/access/rt_auth.h"
#include "runtime/base/rt_clock.h"
#include "runtime/cli/rt_cli.h"
#include "runtime/store/rt_registry.h"

#define MAX_SCOPES 32

static void keys_usage(FILE *f)
{
	fprintf(f,
		"usage: thaw keys create --scope S [--scope S2 ...] [--data DIR] [--registry URL]\n"
		"       thaw keys list [--json] [--data DIR] [--registry URL]\n"
		"       thaw keys revoke ID [--data DIR] [--registry URL]\n\n"
		"API keys for `thaw serve` (sent as Authorization: Bearer KEY). Only a keyed hash is\n"
		"stored; create prints the key once, as the last line of its output. Scopes: admin\n"
		"(deploy, delete, load/unload, jobs; implies all others), invoke:FUNCTION, invoke:*,\n"
		"metrics. Works on the data directory (default $THAW_DATA or ./thaw-data) while the\n"
		"daemon runs: new and revoked keys count at the next request.\n"
		"--registry URL (default $THAW_REGISTRY): the registry `thaw serve --registry` uses;\n"
		"with postgresql://... the key is made in the registry the cluster shares and verifies\n"
		"on every node, and the audit lines go to that registry's audit table.\n");
}

static void audit_usage(FILE *f)
{
	fprintf(f,
		"usage: thaw audit tail [-n N] [--data DIR | --registry URL]\n"
		"       thaw audit grep PATTERN [--data DIR | --registry URL]\n\n"
		"Reads the audit log (DATA/audit/audit.log and its rotated files, oldest first): one JSON\n"
		"line per invocation, admin action and refused request. tail prints the last N lines\n"
		"(default 20); grep prints the lines matching PATTERN (a POSIX extended regex).\n"
		"--registry postgresql://... reads the cluster's admin trail instead: the admin-action\n"
		"lines of every node and of `thaw keys --registry`, kept in the shared registry\n"
		"(invocation lines stay in each node's DATA/audit).\n");
}

static const char *default_data(void)
{
	const char *d = getenv("THAW_DATA");
	return d && *d ? d : "./thaw-data";
}

static const char *default_registry(void)
{
	const char *r = getenv("THAW_REGISTRY");
	return r && *r ? r : NULL;
}

/* the audit line of a CLI action kept in a shared registry (the fields of rt_audit's lines) */
static int audit_shared(rt_registry *reg, const char *action, const char *id, const char *phase,
			const char *error)
{
	char t[40];
	rt_registry_format_time(rt_clock_wall_ms(), t, sizeof t);
	json_t *o = json_pack("{s:s, s:s?, s:s, s:s, s:n, s:n}", "time", t, "key_id", id, "client",
			      "cli", "action", action, "function", "revision");
	if (o && phase)
		json_object_set_new(o, "phase", json_string(phase));
	else if (o)
		json_object_set_new(o, "result", json_string(error ? error : "ok"));
	char *line = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	json_decref(o);
	if (!line)
		return -ENOMEM;
	int rc = rt_registry_audit_add(reg, line, strlen(line));
	free(line);
	return rc;
}

/* writes one `thaw keys` audit line (client "cli") and fdatasyncs it; 0 or a negative errno */
static int audit_cli(rt_audit *a, rt_registry *shared, const char *action, const char *id,
		     const char *phase, const char *error)
{
	if (shared)
		return audit_shared(shared, action, id, phase, error);
	rt_audit_rec r = {.key_id = id, .client = "cli", .action = action, .phase = phase,
			  .error = error};
	return rt_audit_write(a, &r, 1);
}

int rt_keys_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"scope", required_argument, 0, 's'},
		{"data", required_argument, 0, 'd'},
		{"registry", required_argument, 0, 'r'},
		{"json", no_argument, 0, 'j'},
		{"help", no_argument, 0, 'h'},
		{0, 0, 0, 0},
	};
	const char *scopes[MAX_SCOPES];
	size_t nscopes = 0;
	const char *data = default_data(), *url = default_registry();
	int json = 0, c;
	if (argc < 2 || rt_cli_is_help(argv[1])) {
		keys_usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	const char *sub = argv[1];
	optind = 1;
	while ((c = getopt_long(argc - 1, argv + 1, "h", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			if (nscopes == MAX_SCOPES) {
				fprintf(stderr, "thaw keys: at most %d scopes\n", MAX_SCOPES);
				return 2;
			}
			scopes[nscopes++] = optarg;
			break;
		case 'd': data = optarg; break;
		case 'r': url = optarg; break;
		case 'j': json = 1; break;
		case 'h': keys_usage(stdout); return 0;
		default: keys_usage(stderr); return 2;
		}
	}
	int nargs = argc - 1 - optind;
	char **args = argv + 1 + optind;
	int is_create = strcmp(sub, "create") == 0, is_list = strcmp(sub, "list") == 0,
	    is_revoke = strcmp(sub, "revoke") == 0;
	if ((!is_create && !is_list && !is_revoke) || (is_revoke ? nargs != 1 : nargs != 0) ||
	    (is_create && nscopes == 0)) {
		if (is_create && nscopes == 0)
			fprintf(stderr, "thaw keys create: needs at least one --scope\n");
		keys_usage(stderr);
		return 2;
	}
	for (size_t i = 0; i < nscopes; i++) {
		char why[400];
		if (rt_auth_scope_check(scopes[i], why, sizeof why) < 0) {
			fprintf(stderr, "thaw keys: %s\n", why);
			return 2;
		}
	}
	int local = !url || !strncmp(url, "sqlite:", 7);
	if (is_create && local && mkdir(data, 0755) < 0 && errno != EEXIST) {
		fprintf(stderr, "thaw keys: cannot create %s: %s\n", data, strerror(errno));
		return 1;
	}
	rt_registry *reg = NULL;
	rt_auth *auth = NULL;
	rt_audit *audit = NULL;
	char err[512];
	int code = 1;
	if (rt_registry_open_url(url, data, &reg, err, sizeof err) < 0 ||
	    rt_auth_open(reg, data, &auth, err, sizeof err) < 0) {
		fprintf(stderr, "thaw keys: %s\n", err);
		goto out;
	}
	rt_registry *shared = rt_registry_shared(reg) ? reg : NULL;
	/* a change that cannot be audited is not made: the intent line is stored first */
	if (is_create || is_revoke) {
		const char *action = is_create ? "key.create" : "key.revoke";
		int rc = shared ? 0 : rt_audit_open(data, 0, 0, &audit, err, sizeof err);
		if (rc == 0)
			rc = audit_cli(audit, shared, action, is_revoke ? args[0] : NULL, "intent", NULL);
		if (rc < 0 && shared) {
			fprintf(stderr, "thaw keys: cannot write the audit line to the %s registry (%s): "
				"no key was %s\n", rt_registry_backend(reg), strerror(-rc),
				is_create ? "created" : "revoked");
			goto out;
		}
		if (rc < 0) {
			fprintf(stderr, "thaw keys: cannot write the audit log (%s/audit/audit.log: %s): "
				"no key was %s\n", data, strerror(-rc), is_create ? "created" : "revoked");
			goto out;
		}
	}
	if (is_create) {
		char key[RT_AUTH_KEY_MAX], id[RT_AUTH_ID_LEN + 1];
		if (rt_auth_key_create(auth, scopes, nscopes, key, id, err, sizeof err) < 0) {
			fprintf(stderr, "thaw keys: %s\n", err);
			audit_cli(audit, shared, "key.create", NULL, NULL, err);
			goto out;
		}
		if (audit_cli(audit, shared, "key.create", id, NULL, NULL) < 0)
			fprintf(stderr, "thaw keys: warning: cannot write the audit line of the result\n");
		printf("created key %s with scope(s):", id);
		for (size_t i = 0; i < nscopes; i++)
			printf(" %s", scopes[i]);
		printf("\nthe key is shown only now; store it (clients send Authorization: Bearer KEY):\n%s\n", key);
		sodium_memzero(key, sizeof key);
		code = 0;
	} else if (is_revoke) {
		int rc = rt_auth_key_revoke(auth, args[0]);
		if (rc < 0) {
			const char *why = rc == -ENOENT ? "no such key (or already revoked)" :
					  rt_registry_available(reg) ? "database error" :
					  "registry unavailable";
			fprintf(stderr, "thaw keys: %s\n", why);
			audit_cli(audit, shared, "key.revoke", args[0], NULL, why);
			goto out;
		}
		if (audit_cli(audit, shared, "key.revoke", args[0], NULL, NULL) < 0)
			fprintf(stderr, "thaw keys: warning: cannot write the audit line of the result\n");
		printf("revoked key %s\n", args[0]);
		code = 0;
	} else {
		json_t *list;
		if (rt_auth_key_list(auth, &list) < 0) {
			fprintf(stderr, "thaw keys: database error\n");
			goto out;
		}
		if (json) {
			char *s = json_dumps(list, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
			if (s)
				printf("%s\n", s);
			free(s);
		} else {
			printf("%-14s %-26s %-26s %s\n", "ID", "CREATED", "REVOKED", "SCOPES");
			size_t i;
			json_t *k;
			json_array_foreach(json_object_get(list, "keys"), i, k) {
				json_t *rv = json_object_get(k, "revoked"), *sc;
				size_t j;
				printf("%-14s %-26s %-26s", json_string_value(json_object_get(k, "id")),
				       json_string_value(json_object_get(k, "created")),
				       json_is_string(rv) ? json_string_value(rv) : "-");
				json_array_foreach(json_object_get(k, "scopes"), j, sc)
					printf(" %s", json_string_value(sc));
				printf("\n");
			}
		}
		json_decref(list);
		code = 0;
	}
out:
	rt_audit_close(audit);
	rt_auth_close(auth);
	rt_registry_close(reg);
	return code;
}

/* calls fn(line, ud) for every line of the audit files, oldest first */
static int each_line(const char *data, void (*fn)(const char *line, void *ud), void *ud)
{
	char dir[4200];
	char **files;
	size_t n;
	snprintf(dir, sizeof dir, "%s/audit", data);
	int rc = rt_audit_files(dir, &files, &n);
	if (rc < 0) {
		fprintf(stderr, "thaw audit: cannot read %s: %s\n", dir, strerror(-rc));
		return rc;
	}
	char *line = NULL;
	size_t cap = 0;
	for (size_t i = 0; i < n; i++) {
		FILE *f = fopen(files[i], "r");
		if (!f)
			continue;
		while (getline(&line, &cap, f) > 0)
			fn(line, ud);
		fclose(f);
	}
	free(line);
	rt_audit_files_free(files, n);
	return 0;
}

typedef struct tail_ring {
	char **lines;
	size_t n, next, count;
} tail_ring;

static void tail_add(const char *line, void *ud)
{
	tail_ring *r = ud;
	if (!r->n)
		return;
	free(r->lines[r->next]);
	r->lines[r->next] = strdup(line);
	r->next = (r->next + 1) % r->n;
	if (r->count < r->n)
		r->count++;
}

static void grep_line(const char *line, void *ud)
{
	if (regexec(ud, line, 0, NULL, 0) == 0)
		fputs(line, stdout);
}

static void print_line(void *ud, const char *line)
{
	regex_t *re = ud;
	if (!re || regexec(re, line, 0, NULL, 0) == 0)
		printf("%s\n", line);
}

/* thaw audit tail|grep --registry URL: the shared registry's admin trail */
static int audit_registry(const char *url, const char *sub, int nargs, char **args, long nlines)
{
	int is_tail = strcmp(sub, "tail") == 0 && nargs == 0;
	int is_grep = strcmp(sub, "grep") == 0 && nargs == 1;
	regex_t re;
	if (!is_tail && !is_grep) {
		audit_usage(stderr);
		return 2;
	}
	if (is_grep && regcomp(&re, args[0], REG_EXTENDED | REG_NOSUB) != 0) {
		fprintf(stderr, "thaw audit: bad pattern '%s'\n", args[0]);
		return 2;
	}
	if (is_tail && nlines == 0)
		return 0;
	rt_registry *reg = NULL;
	char err[512];
	int code = 1;
	if (rt_registry_open_url(url, NULL, &reg, err, sizeof err) < 0) {
		fprintf(stderr, "thaw audit: %s\n", err);
	} else {
		int rc = rt_registry_audit_read(reg, is_tail ? (size_t)nlines : 0, print_line,
						is_grep ? &re : NULL);
		if (rc < 0)
			fprintf(stderr, "thaw audit: reading the %s registry's audit table: %s\n",
				rt_registry_backend(reg), strerror(-rc));
		code = rc < 0 ? 1 : 0;
	}
	rt_registry_close(reg);
	if (is_grep)
		regfree(&re);
	return code;
}

int rt_audit_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"data", required_argument, 0, 'd'},
		{"registry", required_argument, 0, 'r'},
		{"lines", required_argument, 0, 'n'},
		{"help", no_argument, 0, 'h'},
		{0, 0, 0, 0},
	};
	const char *data = default_data(), *url = default_registry();
	long nlines = 20;
	int c;
	if (argc < 2 || rt_cli_is_help(argv[1])) {
		audit_usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	const char *sub = argv[1];
	optind = 1;
	while ((c = getopt_long(argc - 1, argv + 1, "hn:", opts, NULL)) != -1) {
		switch (c) {
		case 'd': data = optarg; break;
		case 'r': url = optarg; break;
		case 'n': {
			char *end;
			nlines = strtol(optarg, &end, 10);
			if (*end || nlines < 0 || nlines > 10000000) {
				fprintf(stderr, "thaw audit: bad -n '%s'\n", optarg);
				return 2;
			}
			break;
		}
		case 'h': audit_usage(stdout); return 0;
		default: audit_usage(stderr); return 2;
		}
	}
	int nargs = argc - 1 - optind;
	char **args = argv + 1 + optind;
	if (url && strncmp(url, "sqlite:", 7) != 0)
		return audit_registry(url, sub, nargs, args, nlines);
	if (strcmp(sub, "tail") == 0 && nargs == 0) {
		tail_ring r = {.n = (size_t)nlines};
		r.lines = calloc(r.n ? r.n : 1, sizeof *r.lines);
		if (!r.lines)
			return 1;
		int rc = each_line(data, tail_add, &r);
		size_t start = r.count < r.n ? 0 : r.next;
		for (size_t i = 0; i < r.count; i++)
			if (r.lines[(start + i) % r.n])
				fputs(r.lines[(start + i) % r.n], stdout);
		for (size_t i = 0; i < r.n; i++)
			free(r.lines[i]);
		free(r.lines);
		return rc < 0 ? 1 : 0;
	}
	if (strcmp(sub, "grep") == 0 && nargs == 1) {
		regex_t re;
		if (regcomp(&re, args[0], REG_EXTENDED | REG_NOSUB) != 0) {
			fprintf(stderr, "thaw audit: bad pattern '%s'\n", args[0]);
			return 2;
		}
		int rc = each_line(data, grep_line, &re);
		regfree(&re);
		return rc < 0 ? 1 : 0;
	}
	audit_usage(stderr);
	return 2;
}

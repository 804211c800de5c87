/* rt_cmd_upload.c — putting snapshots and job data on a running daemon over HTTP:
 * `thaw snapshot push|list|rm` (reached through `thaw snapshot`), `thaw data push|list|rm`,
 * and rt_cli_push, which `thaw deploy --snapshot FILE` uses for a local file. The file is
 * streamed (rt_client_put_file), a snapshot verified locally first; a progress bar is drawn
 * on stderr when it is a terminal. Exit status: 0 done, 1 failure, 2 bad usage. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <jansson.h>
#include "runtime/base/rt_clock.h"
#include "runtime/cli/rt_cli.h"
#include "runtime/cli/rt_client.h"
#include "snapshot/snap.h"

static const char data_usage[] =
	"usage: thaw data COMMAND ...   (job data files in the server's DATA/data)\n\n"
	"  push FILE [--name N] [--url U] [--quiet]\n"
	"      upload FILE (streamed; the name defaults to FILE's base name); a job then names it\n"
	"      in params.data, e.g. thaw jobs submit finetune --params '{\"data\": \"N\"}'\n"
	"  list [--url U] [--json]     the server's data files\n"
	"  rm NAME [--url U]           delete one\n"
	"The server is --url, else $THAW_URL, else http://127.0.0.1:8080; $THAW_API_KEY is sent\n"
	"(admin scope needed).\n";

/* the upload's bar: a labelled line; the server verifies a snapshot after the last byte */
static void upload_bar(void *pud, uint64_t sent, uint64_t total)
{
	rt_cli_bar *b = pud;
	rt_cli_bar_update(b, "uploading", sent, total);
	if (b->on && sent >= total) {
		fputs("waiting for the server to store it...\n", stderr);
		fflush(stderr);
	}
}

static const char *base_name(const char *path)
{
	const char *s = strrchr(path, '/');
	return s ? s + 1 : path;
}

int rt_cli_push(const char *cmd, const char *url, int snapshot, const char *file,
		const char *name, int force, int quiet, char *stored, size_t stored_cap)
{
	char err[1024];
	if (!name)
		name = base_name(file);
	if (!*name) {
		fprintf(stderr, "thaw %s: no name for %s (use --name)\n", cmd, file);
		return 2;
	}
	int fd = open(file, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		fprintf(stderr, "thaw %s: %s: %s\n", cmd, file, fd < 0 ? strerror(errno) : "not a regular file");
		if (fd >= 0)
			close(fd);
		return 1;
	}
	if (snapshot) {   /* a corrupt file is refused here, before it crosses the network */
		snap_file *f = NULL;
		snap_restore_opts o = {0};
		rt_cli_bar vb;
		long bad = -1;
		rt_cli_bar_init(&vb, !quiet && isatty(2), NULL);
		o.progress = rt_cli_bar_update;
		o.progress_user = &vb;
		int vrc = snap_open(&f, file, err, sizeof err);
		if (!vrc)
			vrc = snap_verify(f, &o, NULL, &bad, err, sizeof err);
		rt_cli_bar_end(&vb);
		if (vrc < 0) {
			fprintf(stderr, "thaw %s: %s\n", cmd, err);
			snap_close(f);
			close(fd);
			return 1;
		}
		snap_close(f);
	}
	rt_client_url u;
	if (rt_client_url_parse(rt_client_pick_url(url), &u, err, sizeof err) < 0) {
		fprintf(stderr, "thaw %s: %s\n", cmd, err);
		close(fd);
		return 2;
	}
	char path[512];
	snprintf(path, sizeof path, "/v1/%s/%s%s", snapshot ? "snapshots" : "data", name,
		 force ? "?force=1" : "");
	rt_cli_bar b;
	rt_cli_bar_init(&b, !quiet && isatty(2), NULL);
	rt_client_resp r;
	int rc = rt_client_put_file(&u, path, fd, (uint64_t)st.st_size, upload_bar, &b, 3600, &r, err,
				    sizeof err);
	close(fd);
	rt_cli_bar_end(&b);
	if (rc < 0) {
		fprintf(stderr, "thaw %s: %s\n", cmd, err);
		return 1;
	}
	if (r.status != 200 && r.status != 201) {
		char msg[1024];
		rt_client_error_text(&r, msg, sizeof msg);
		fprintf(stderr, "thaw %s: HTTP %d: %s\n", cmd, r.status, msg);
		rt_client_resp_free(&r);
		return 1;
	}
	json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
	if (!quiet)
		printf("%s %s: %s bytes, %s\n", r.status == 201 ? "stored" : "replaced",
		       json_string_value(json_object_get(j, "name")),
		       json_is_integer(json_object_get(j, "bytes")) ?
		       (snprintf(err, sizeof err, "%lld", (long long)json_integer_value(json_object_get(j, "bytes"))), err) : "?",
		       json_string_value(json_object_get(j, "digest")) ? json_string_value(json_object_get(j, "digest")) : "");
	if (stored)
		snprintf(stored, stored_cap, "%s", name);
	json_decref(j);
	rt_client_resp_free(&r);
	return 0;
}

static int simple(const char *cmd, const char *url, const char *method, const char *path,
		  int as_json, int snapshot)
{
	char err[1024];
	rt_client_url u;
	if (rt_client_url_parse(rt_client_pick_url(url), &u, err, sizeof err) < 0) {
		fprintf(stderr, "thaw %s: %s\n", cmd, err);
		return 2;
	}
	rt_client_resp r;
	if (rt_client_request(&u, method, path, NULL, 0, NULL, 60, &r, err, sizeof err) < 0) {
		fprintf(stderr, "thaw %s: %s\n", cmd, err);
		return 1;
	}
	int rc = 0;
	if (r.status != 200) {
		char msg[1024];
		rt_client_error_text(&r, msg, sizeof msg);
		fprintf(stderr, "thaw %s: HTTP %d: %s\n", cmd, r.status, msg);
		rc = 1;
	} else if (as_json || strcmp(method, "GET") != 0) {
		fwrite(r.body, 1, r.body_len, stdout);
		fputc('\n', stdout);
	} else {
		json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
		json_t *arr = json_object_get(j, snapshot ? "snapshots" : "data"), *o;
		size_t i;
		printf(snapshot ? "%-32s %14s  %-20s  %-10s %s\n" : "%-32s %14s  %-20s\n", "NAME", "BYTES",
		       "MODIFIED", "KIND", "USED BY");
		json_array_foreach(arr, i, o) {
			printf("%-32s %14lld  %-20s", json_string_value(json_object_get(o, "name")),
			       (long long)json_integer_value(json_object_get(o, "bytes")),
			       json_string_value(json_object_get(o, "modified")));
			if (snapshot) {
				const char *k = json_string_value(json_object_get(o, "kind"));
				printf("  %-10s ", k ? k : "(invalid)");
				json_t *us = json_object_get(o, "used_by"), *x;
				size_t ui;
				json_array_foreach(us, ui, x)
					printf("%s%s@%lld", ui ? "," : "",
					       json_string_value(json_object_get(x, "function")),
					       (long long)json_integer_value(json_object_get(x, "revision")));
				if (!json_array_size(us))
					printf("-");
			}
			printf("\n");
		}
		json_decref(j);
	}
	rt_client_resp_free(&r);
	return rc;
}

int rt_cli_store_main(const char *cmd, int snapshot, int argc, char **argv)
{
	const char *verb = argv[0], *url = NULL, *name = NULL, *arg = NULL;
	int as_json = 0, quiet = 0, force = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *n = i + 1 < argc ? argv[i + 1] : NULL;
		if (rt_cli_is_help(a)) {
			if (!snapshot)
				fputs(data_usage, stdout);
			return -1;
		} else if (!strcmp(a, "--url") && n) {
			url = n, i++;
		} else if (!strcmp(a, "--name") && n) {
			name = n, i++;
		} else if (!strcmp(a, "--json")) {
			as_json = 1;
		} else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
			quiet = 1;
		} else if (!strcmp(a, "--force")) {
			force = 1;
		} else if (a[0] == '-' || arg) {
			fprintf(stderr, "thaw %s %s: unexpected argument %s\n", cmd, verb, a);
			return 2;
		} else {
			arg = a;
		}
	}
	const char *coll = snapshot ? "snapshots" : "data";
	char path[512];
	if (!strcmp(verb, "push")) {
		if (!arg) {
			fprintf(stderr, "thaw %s push: a FILE is needed\n", cmd);
			return 2;
		}
		return rt_cli_push(cmd, url, snapshot, arg, name, force, quiet, NULL, 0);
	}
	if (!strcmp(verb, "list")) {
		snprintf(path, sizeof path, "/v1/%s", coll);
		return simple(cmd, url, "GET", path, as_json, snapshot);
	}
	if (!strcmp(verb, "rm")) {
		if (!arg || strlen(arg) > 400) {
			fprintf(stderr, "thaw %s rm: a NAME is needed\n", cmd);
			return 2;
		}
		snprintf(path, sizeof path, "/v1/%s/%s", coll, arg);
		return simple(cmd, url, "DELETE", path, 1, snapshot);
	}
	fprintf(stderr, "thaw %s: unknown command '%s'\n\n%s", cmd, verb, snapshot ? "" : data_usage);
	return 2;
}

int rt_data_main(int argc, char **argv)
{
	if (argc < 2 || rt_cli_is_help(argv[1])) {
		fputs(data_usage, argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	int rc = rt_cli_store_main("data", 0, argc - 1, argv + 1);
	return rc < 0 ? 0 : rc;
}

/* packs model (a directory, .safetensors or .gguf file) into a temporary .thaw as `thaw snapshot pack`
 * does (tokenizer carried); 0 with the file's path in out, else an exit status */
static int pack_temp(const char *model, const char *kind, char *out, size_t cap)
{
	const char *tmpdir = getenv("TMPDIR");
	snprintf(out, cap, "%s/thaw-deploy-XXXXXX.thaw", tmpdir && *tmpdir ? tmpdir : "/tmp");
	int fd = mkstemps(out, 5);
	if (fd < 0) {
		fprintf(stderr, "thaw deploy: cannot create a temporary file %s: %s\n", out, strerror(errno));
		return 1;
	}
	close(fd);
	char *argv[] = {"snapshot", "pack", (char *)model, "-o", out, "--kind", (char *)kind,
			isatty(2) ? "--progress" : "--quiet", NULL};
	int rc = rt_snapshot_main(8, argv);
	if (rc) {
		unlink(out);
		return rc;
	}
	return 0;
}

int rt_cli_deploy_upload(json_t *man, const char *fn, const char *model, const char *url)
{
	const char *snap = json_string_value(json_object_get(man, "snapshot"));
	char stored[256];
	struct stat st;
	if (model) {
		if (snap) {
			fprintf(stderr, "thaw deploy: --model and --snapshot exclude each other\n");
			return 2;
		}
		char tmp[4096], name[256];
		int rc = pack_temp(model, json_string_value(json_object_get(man, "kind")), tmp, sizeof tmp);
		if (rc)
			return rc;
		time_t t = time(NULL);
		struct tm tm;
		gmtime_r(&t, &tm);
		char when[32];
		strftime(when, sizeof when, "%Y%m%d%H%M%S", &tm);
		snprintf(name, sizeof name, "%s-%s.thaw", fn, when);
		rc = rt_cli_push("deploy", url, 1, tmp, name, 0, 0, stored, sizeof stored);
		unlink(tmp);
		if (rc)
			return rc;
		json_object_set_new(man, "snapshot", json_string(stored));
		return 0;
	}
	/* a relative path to a local file; absolute paths name files on the server */
	if (!snap || snap[0] == '/' || stat(snap, &st) < 0 || !S_ISREG(st.st_mode))
		return 0;
	int rc = rt_cli_push("deploy", url, 1, snap, NULL, 0, 0, stored, sizeof stored);
	if (rc)
		return rc;
	json_object_set_new(man, "snapshot", json_string(stored));
	return 0;
}

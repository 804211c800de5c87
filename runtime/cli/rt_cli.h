/* rt_cli.h — the `thaw` command table: each subcommand is a main-like entry point.
 * Subcommands parse their own options, print `--help` text to stdout, and return a process
 * exit status: 0 success, 1 failure at run time, 2 bad usage. */
#ifndef THAW_RT_CLI_H
#define THAW_RT_CLI_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <jansson.h>

typedef struct rt_cmd {
	const char *name;
	int (*main)(int argc, char **argv);   /* argv[0] is the subcommand's name */
	const char *summary;
} rt_cmd;

/* rt_serve_main runs the daemon (runtime/rt_serve.c). */
int rt_serve_main(int argc, char **argv);
/* rt_run_main is `thaw run SNAPSHOT --input JSON` (rt_cmd_run.c). */
int rt_run_main(int argc, char **argv);
/* rt_snapshot_main is `thaw snapshot pack|inspect|verify|unpack|restore` (rt_cmd_snapshot.c). */
int rt_snapshot_main(int argc, char **argv);
/* deploy, invoke, status, functions get|rm: clients of a running daemon (rt_cmd_fn.c). */
int rt_deploy_main(int argc, char **argv);
int rt_invoke_main(int argc, char **argv);
int rt_status_main(int argc, char **argv);
int rt_functions_main(int argc, char **argv);
/* rt_jobs_main is `thaw jobs submit|list|show|cancel` (rt_cmd_jobs.c). */
int rt_jobs_main(int argc, char **argv);
/* rt_keys_main is `thaw keys create|list|revoke`, rt_audit_main `thaw audit tail|grep`
 * (rt_cmd_keys.c). */
int rt_keys_main(int argc, char **argv);
int rt_audit_main(int argc, char **argv);

/* Pushing files to a running daemon (rt_cmd_upload.c). rt_data_main is `thaw data
 * push|list|rm`; rt_cli_store_main runs verb argv[0] (push, list, rm) of `thaw snapshot`
 * (snapshot = 1) or `thaw data`, returning an exit status, or -1 after --help (the caller
 * prints its usage). rt_cli_push uploads file (verified first when snapshot) as name (NULL:
 * its base name; force: replace a snapshot that revisions use) to the server at url (NULL:
 * $THAW_URL or the default), copying the stored name into stored; quiet: no output on
 * success, no progress bar. Returns 0, 1 (failure, printed), 2 (bad usage). */
int rt_data_main(int argc, char **argv);
int rt_cli_store_main(const char *cmd, int snapshot, int argc, char **argv);
int rt_cli_push(const char *cmd, const char *url, int snapshot, const char *file,
		const char *name, int force, int quiet, char *stored, size_t stored_cap);
/* rt_cli_deploy_upload prepares `thaw deploy fn` manifest man (a json_t object): with model
 * (a local directory or .safetensors) it packs it into a temporary snapshot, pushes it as
 * fn-TIME.thaw and sets man.snapshot; else a man.snapshot that is a relative path to a local
 * regular file is pushed and replaced by its stored name. 0 or an exit status (printed). */
struct json_t;
int rt_cli_deploy_upload(struct json_t *man, const char *fn, const char *model, const char *url);

/* rt_cli_is_help reports whether arg is -h or --help. */
int rt_cli_is_help(const char *arg);

/* rt_cli_fmt_bytes writes a byte count in binary units for people: "512 B", "9.75 KiB",
 * "12.8 MiB", "128 GiB" (three significant digits from KiB up; B, KiB, MiB, GiB, TiB, PiB).
 * Negative or non-finite counts print as "-". Returns buf. */
const char *rt_cli_fmt_bytes(double bytes, char *buf, size_t cap);

/* rt_cli_json_print writes v as JSON to f followed by a newline: compact (indent 0) or with
 * objects and arrays indented by indent spaces; reals in their shortest round-trip form
 * (rt_json_dumps), keys in their stored order. Returns 0, or -EIO when writing fails. */
int rt_cli_json_print(FILE *f, const json_t *v, int indent);

/* A progress bar on stderr, one labelled line per phase:
 *     compressing [##########..........]  50%  13.5 MiB / 27.0 MiB  160 MB/s  ETA 1 s
 * drawn at most ten times a second, and ended with the phase's time once done reaches total
 * (or the phase changes). Only where on is set: callers set it when stderr is a terminal and
 * the output is not --json. */
typedef struct rt_cli_bar {
	int on;
	const char *label;         /* NULL: the phase the hook is told */
	char phase[48];            /* the phase of the open line */
	int open;                  /* a line is drawn and not ended */
	double t0, last;
} rt_cli_bar;

/* rt_cli_bar_init readies b (on: draw at all; label: see rt_cli_bar). */
void rt_cli_bar_init(rt_cli_bar *b, int on, const char *label);
/* rt_cli_bar_update draws done of total bytes of phase; bar is an rt_cli_bar. Its signature is
 * snap_progress_fn's, so it serves as the snapshot library's progress hook; calls must not
 * overlap (the library's do not). */
void rt_cli_bar_update(void *bar, const char *phase, uint64_t done, uint64_t total);
/* rt_cli_bar_end ends a line left open (the step failed before its end); no-op otherwise. */
void rt_cli_bar_end(rt_cli_bar *b);

#endif

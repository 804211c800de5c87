/* main.c — the `thaw` binary: dispatches to subcommands (design.md, "External contracts"). */
#include <stdio.h>
#include <string.h>
#include "runtime/cli/rt_cli.h"
#include "runtime/base/rt_version.h"

static const rt_cmd cmds[] = {
	{"serve", rt_serve_main, "run the daemon: HTTP API, functions, scale to zero"},
	{"run", rt_run_main, "restore a snapshot, invoke its function once, print the JSON result"},
	{"snapshot", rt_snapshot_main, "pack, inspect, verify, unpack, restore .thaw weight snapshots"},
	{"deploy", rt_deploy_main, "create a function or a new revision of it (PUT /v1/functions/NAME)"},
	{"invoke", rt_invoke_main, "call a function and print its JSON answer"},
	{"status", rt_status_main, "list functions: kind, revision, state, device, memory, last call"},
	{"functions", rt_functions_main, "get or rm one function"},
	{"keys", rt_keys_main, "create, list or revoke API keys (on the data directory)"},
	{"audit", rt_audit_main, "tail or grep the audit log"},
	{"data", rt_data_main, "push, list or rm job data files on a server (PUT /v1/data/NAME)"},
	{"jobs", rt_jobs_main, "submit, list, show (--follow) or cancel batch jobs (quantize, finetune)"},
};

static void usage(FILE *f)
{
	fprintf(f, "thaw %s — scale-to-zero GPU function runtime\n\n"
		"usage: thaw COMMAND [OPTIONS]\n\ncommands:\n", THAW_VERSION);
	for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
		fprintf(f, "  %-10s %s\n", cmds[i].name, cmds[i].summary);
	fprintf(f, "\n`thaw COMMAND --help` documents each command.\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (rt_cli_is_help(argv[1])) {
		usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
		printf("thaw %s\n", THAW_VERSION);
		return 0;
	}
	for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
		if (strcmp(argv[1], cmds[i].name) == 0)
			return cmds[i].main(argc - 1, argv + 1);
	fprintf(stderr, "thaw: unknown command '%s'\n\n", argv[1]);
	usage(stderr);
	return 2;
}

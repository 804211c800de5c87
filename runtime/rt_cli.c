/* rt_cli.c — small helpers shared by the `thaw` subcommands. */
#include <string.h>
#include "runtime/rt_cli.h"

int rt_cli_is_help(const char *arg)
{
	return arg && (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0);
}

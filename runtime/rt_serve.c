/* rt_serve.c — `thaw serve`: work in progress (issue 2). */
#include <stdio.h>
#include "runtime/rt_cli.h"

int rt_serve_main(int argc, char **argv)
{
	(void)argc; (void)argv;
	fprintf(stderr, "thaw serve: not built yet\n");
	return 1;
}

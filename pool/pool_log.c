/* pool_log.c — the device error log hook (see pool_log.h). */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include "pool/pool_log.h"

static _Atomic(pool_log_fn) hook;

void pool_log_set(pool_log_fn fn)
{
	atomic_store(&hook, fn);
}

void pool_logf(const char *fmt, ...)
{
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	pool_log_fn fn = atomic_load(&hook);
	if (fn)
		fn(line);
	else
		fprintf(stderr, "%s\n", line);
}

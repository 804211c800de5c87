/* rt_rate.c — parsing "R/s,B" rate limits (rt_rate.h). */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "runtime/base/rt_rate.h"

int rt_rate_parse(const char *s, rt_rate *out)
{
	char *end;
	out->rate = out->burst = 0;
	if (strcmp(s, "off") == 0)
		return 0;
	double r = strtod(s, &end);
	if (end == s || !isfinite(r) || r < 0)
		return -EINVAL;
	if (strncmp(end, "/s", 2) == 0)
		end += 2;
	double b = r < 1 ? 1 : r;
	if (*end == ',') {
		const char *p = end + 1;
		b = strtod(p, &end);
		if (end == p || !isfinite(b) || b < 1)
			return -EINVAL;
	}
	if (*end)
		return -EINVAL;
	out->rate = r;
	out->burst = r > 0 ? b : 0;
	return 0;
}

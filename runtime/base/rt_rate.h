/* rt_rate.h — a rate limit as users write it ("R/s,B": R tokens per second, bursts of B),
 * shared by the server's flags (--rate-limit-key, --rate-limit-ip), the manifests'
 * "rate_limit" and the token buckets that enforce it (runtime/access/rt_limit.h). */
#ifndef THAW_RT_RATE_H
#define THAW_RT_RATE_H

/* One limit: rate tokens per second, burst tokens at most; rate <= 0 means no limit. */
typedef struct rt_rate {
	double rate, burst;
} rt_rate;

/* rt_rate_parse reads "R/s,B", "R,B", "R/s" or "R" (burst = max(R, 1)) into *out;
 * "0" or "off" disables. -EINVAL for anything else. */
int rt_rate_parse(const char *s, rt_rate *out);

#endif

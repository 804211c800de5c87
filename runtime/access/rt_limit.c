/* rt_limit.c — token buckets in a chained hash table. See rt_limit.h. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>
#include "runtime/access/rt_limit.h"

#define NSLOTS 4096

typedef struct bucket {
	struct bucket *next;
	double tokens;
	uint64_t last_ns;
	double rate, burst;     /* limit last applied (for the idle sweep) */
	char key[];
} bucket;

struct rt_limiter {
	bucket *slots[NSLOTS];
	size_t n, max;
};

rt_limiter *rt_limiter_new(size_t max_buckets)
{
	rt_limiter *l = calloc(1, sizeof *l);
	if (l)
		l->max = max_buckets ? max_buckets : 1;
	return l;
}

void rt_limiter_free(rt_limiter *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < NSLOTS; i++)
		for (bucket *b = l->slots[i], *n; b; b = n) {
			n = b->next;
			free(b);
		}
	free(l);
}

size_t rt_limiter_count(const rt_limiter *l)
{
	return l->n;
}

static void refill(bucket *b, uint64_t now_ns)
{
	if (now_ns > b->last_ns) {
		b->tokens += (double)(now_ns - b->last_ns) / 1e9 * b->rate;
		if (b->tokens > b->burst)
			b->tokens = b->burst;
	}
	b->last_ns = now_ns;
}

/* drop buckets that are full again: forgetting them changes nothing */
static void sweep(rt_limiter *l, uint64_t now_ns)
{
	for (size_t i = 0; i < NSLOTS; i++) {
		bucket **pp = &l->slots[i];
		while (*pp) {
			bucket *b = *pp;
			refill(b, now_ns);
			if (b->tokens >= b->burst) {
				*pp = b->next;
				free(b);
				l->n--;
			} else {
				pp = &b->next;
			}
		}
	}
}

int rt_limiter_take(rt_limiter *l, const char *key, const rt_rate *lim, uint64_t now_ns,
		    double *retry_after_s)
{
	if (retry_after_s)
		*retry_after_s = 0;
	if (!lim || lim->rate <= 0)
		return 0;
	size_t klen = strlen(key);
	size_t slot = (size_t)(XXH3_64bits(key, klen) % NSLOTS);
	bucket *b;
	for (b = l->slots[slot]; b; b = b->next)
		if (strcmp(b->key, key) == 0)
			break;
	if (!b) {
		if (l->n >= l->max)
			sweep(l, now_ns);
		if (l->n >= l->max)
			return 0;
		b = malloc(sizeof *b + klen + 1);
		if (!b)
			return 0;
		memcpy(b->key, key, klen + 1);
		b->tokens = lim->burst;
		b->last_ns = now_ns;
		b->next = l->slots[slot];
		l->slots[slot] = b;
		l->n++;
	}
	b->rate = lim->rate;
	b->burst = lim->burst;
	refill(b, now_ns);
	if (b->tokens >= 1) {
		b->tokens -= 1;
		return 0;
	}
	if (retry_after_s)
		*retry_after_s = (1 - b->tokens) / lim->rate;
	return -EAGAIN;
}

/* rt_metrics.c — see rt_metrics.h. Series are kept per family in a chained hash keyed by the
 * rendered label string, doubled when it averages two series a slot. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "runtime/base/rt_log.h"
#include "runtime/base/rt_metrics.h"

const double rt_metrics_latency_buckets[] = {
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
	5, 10, 30, 60,
};
const int rt_metrics_latency_nbuckets =
	(int)(sizeof rt_metrics_latency_buckets / sizeof rt_metrics_latency_buckets[0]);

typedef struct series {
	struct series *next;
	char *labels;            /* rendered: a="x",b="y" (may be empty) */
	double value;            /* counter/gauge value, histogram sum */
	unsigned long long count;
	unsigned long long *buckets;  /* histogram: per-bucket (non-cumulative) counts */
} series;

#define NSLOTS0 16

struct rt_metric_family {
	struct rt_metric_family *next;
	rt_metrics *owner;
	char *name, *help;
	rt_metric_type type;
	double *bounds;
	int nbounds;
	series **slots;
	unsigned nslots;
	int nseries;             /* including the overflow series */
	series *overflow;        /* the overflow series, once the cap was reached */
	int overflow_logged;
};

struct rt_metrics {
	pthread_mutex_t mu;
	rt_metric_family *head, *tail;
	int max_series;
	rt_metric_family *m_overflow;   /* thaw_metrics_overflow_total{family}, exempt from the cap */
};

static const char overflow_labels[] = "overflow=\"true\"";

rt_metrics *rt_metrics_new(void)
{
	rt_metrics *m = calloc(1, sizeof *m);
	if (!m)
		return NULL;
	pthread_mutex_init(&m->mu, NULL);
	m->max_series = RT_METRICS_MAX_SERIES;
	m->m_overflow = rt_metrics_family(m, "thaw_metrics_overflow_total", RT_METRIC_COUNTER,
					  "Samples with a new label set past the family's series cap "
					  "(folded into its overflow series, or dropped for gauges).",
					  NULL, 0);
	if (!m->m_overflow) {
		rt_metrics_free(m);
		return NULL;
	}
	return m;
}

void rt_metrics_set_max_series(rt_metrics *m, int n)
{
	pthread_mutex_lock(&m->mu);
	m->max_series = n < 1 ? 1 : n;
	pthread_mutex_unlock(&m->mu);
}

void rt_metrics_free(rt_metrics *m)
{
	if (!m)
		return;
	for (rt_metric_family *f = m->head, *fn; f; f = fn) {
		fn = f->next;
		for (unsigned i = 0; i < f->nslots; i++)
			for (series *s = f->slots[i], *sn; s; s = sn) {
				sn = s->next;
				free(s->labels);
				free(s->buckets);
				free(s);
			}
		free(f->slots);
		free(f->name);
		free(f->help);
		free(f->bounds);
		free(f);
	}
	pthread_mutex_destroy(&m->mu);
	free(m);
}

rt_metric_family *rt_metrics_family(rt_metrics *m, const char *name, rt_metric_type type,
				    const char *help, const double *buckets, int nbuckets)
{
	rt_metric_family *f;
	pthread_mutex_lock(&m->mu);
	for (f = m->head; f; f = f->next)
		if (strcmp(f->name, name) == 0) {
			pthread_mutex_unlock(&m->mu);
			return f->type == type ? f : NULL;
		}
	f = calloc(1, sizeof *f);
	if (!f)
		goto out;
	f->owner = m;
	f->name = strdup(name);
	f->help = strdup(help ? help : "");
	f->type = type;
	f->nslots = NSLOTS0;
	f->slots = calloc(f->nslots, sizeof *f->slots);
	if (type == RT_METRIC_HISTOGRAM && nbuckets > 0) {
		f->bounds = malloc(sizeof(double) * (size_t)nbuckets);
		if (f->bounds)
			memcpy(f->bounds, buckets, sizeof(double) * (size_t)nbuckets);
		f->nbounds = nbuckets;
	}
	if (!f->name || !f->help || !f->slots || (type == RT_METRIC_HISTOGRAM && nbuckets > 0 && !f->bounds)) {
		free(f->slots);
		free(f->name);
		free(f->help);
		free(f->bounds);
		free(f);
		f = NULL;
		goto out;
	}
	if (m->tail)
		m->tail->next = f;
	else
		m->head = f;
	m->tail = f;
out:
	pthread_mutex_unlock(&m->mu);
	return f;
}

/* Renders labels into buf; returns length or -1 when too long. */
static int render_labels(char *buf, size_t cap, int n, const char *const *kv)
{
	size_t o = 0;
	buf[0] = 0;
	for (int i = 0; i < n; i++) {
		const char *k = kv[2 * i], *v = kv[2 * i + 1] ? kv[2 * i + 1] : "";
		int w = snprintf(buf + o, cap - o, "%s%s=\"", i ? "," : "", k);
		if (w < 0 || (size_t)w >= cap - o)
			return -1;
		o += (size_t)w;
		for (; *v; v++) {
			const char *e = NULL;
			char one[2] = {*v, 0};
			if (*v == '\\') e = "\\\\";
			else if (*v == '"') e = "\\\"";
			else if (*v == '\n') e = "\\n";
			else e = one;
			size_t l = strlen(e);
			if (o + l + 2 >= cap)
				return -1;
			memcpy(buf + o, e, l);
			o += l;
		}
		buf[o++] = '"';
		buf[o] = 0;
	}
	return (int)o;
}

static unsigned hash_str(const char *s)
{
	unsigned h = 2166136261u;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

/* doubles f's slots (best effort: on allocation failure the chains just grow longer) */
static void grow_slots(rt_metric_family *f)
{
	unsigned n = f->nslots * 2;
	series **ns = calloc(n, sizeof *ns);
	if (!ns)
		return;
	for (unsigned i = 0; i < f->nslots; i++)
		for (series *s = f->slots[i], *sn; s; s = sn) {
			sn = s->next;
			unsigned slot = hash_str(s->labels) % n;
			s->next = ns[slot];
			ns[slot] = s;
		}
	free(f->slots);
	f->slots = ns;
	f->nslots = n;
}

static series *series_new(rt_metric_family *f, const char *labels)
{
	if ((unsigned)f->nseries >= 2 * f->nslots && f->nslots < (1u << 24))
		grow_slots(f);
	series *s = calloc(1, sizeof *s);
	if (!s)
		return NULL;
	s->labels = strdup(labels);
	if (f->type == RT_METRIC_HISTOGRAM)
		s->buckets = calloc((size_t)f->nbounds + 1, sizeof *s->buckets);
	if (!s->labels || (f->type == RT_METRIC_HISTOGRAM && !s->buckets)) {
		free(s->labels);
		free(s->buckets);
		free(s);
		return NULL;
	}
	unsigned slot = hash_str(labels) % f->nslots;
	s->next = f->slots[slot];
	f->slots[slot] = s;
	f->nseries++;
	return s;
}

static series *find_series(rt_metric_family *f, const char *labels)
{
	for (series *s = f->slots[hash_str(labels) % f->nslots]; s; s = s->next)
		if (strcmp(s->labels, labels) == 0)
			return s;
	return NULL;
}

/* a new label set past the cap: the overflow series (NULL for gauges), counted and logged */
static series *overflow_series(rt_metric_family *f)
{
	rt_metrics *m = f->owner;
	const char *kv[] = {"family", f->name};
	char lb[1024];
	if (render_labels(lb, sizeof lb, 1, kv) >= 0) {
		series *c = find_series(m->m_overflow, lb);
		if (!c)
			c = series_new(m->m_overflow, lb);
		if (c)
			c->value += 1;
	}
	if (!f->overflow_logged) {
		f->overflow_logged = 1;
		rt_logf(RT_LOG_WARN, "metrics: family %s reached its cap of %d series; samples with new "
			"label sets are %s (thaw_metrics_overflow_total counts them)", f->name,
			m->max_series, f->type == RT_METRIC_GAUGE ? "dropped (a gauge)" :
			"added to its series overflow=\"true\"");
	}
	if (f->type == RT_METRIC_GAUGE)
		return NULL;
	if (!f->overflow)
		f->overflow = series_new(f, overflow_labels);
	return f->overflow;
}

/* Returns the series for kv, creating it (or the overflow series past the cap); caller holds
 * the lock. */
static series *get_series(rt_metric_family *f, int n, const char *const *kv)
{
	char lb[1024];
	if (render_labels(lb, sizeof lb, n, kv) < 0)
		return NULL;
	series *s = find_series(f, lb);
	if (s)
		return s;
	int live = f->nseries - (f->overflow ? 1 : 0);
	if (f != f->owner->m_overflow && live >= f->owner->max_series)
		return overflow_series(f);
	return series_new(f, lb);
}

/* Reports whether rendered labels hold the segment want (key="escaped value") as one of their
 * comma-separated pairs; values are scanned with their escapes, so a quote inside one never
 * ends it. */
static int labels_have(const char *labels, const char *want, size_t wlen)
{
	const char *p = labels;
	while (*p) {
		const char *start = p;
		while (*p && *p != '=')
			p++;
		if (*p != '=' || p[1] != '"')
			return 0;
		p += 2;
		while (*p && *p != '"')
			p += (*p == '\\' && p[1]) ? 2 : 1;
		if (*p != '"')
			return 0;
		p++;
		if ((size_t)(p - start) == wlen && memcmp(start, want, wlen) == 0)
			return 1;
		if (*p == ',')
			p++;
	}
	return 0;
}

int rt_metrics_drop_label(rt_metrics *m, const char *key, const char *value)
{
	char want[1024];
	const char *kv[] = {key, value};
	int wl = render_labels(want, sizeof want, 1, kv);
	if (wl < 0)
		return 0;
	int removed = 0;
	pthread_mutex_lock(&m->mu);
	for (rt_metric_family *f = m->head; f; f = f->next)
		for (unsigned i = 0; i < f->nslots; i++)
			for (series **pp = &f->slots[i]; *pp;) {
				series *s = *pp;
				if (s == f->overflow || !labels_have(s->labels, want, (size_t)wl)) {
					pp = &s->next;
					continue;
				}
				*pp = s->next;
				free(s->labels);
				free(s->buckets);
				free(s);
				f->nseries--;
				removed++;
			}
	pthread_mutex_unlock(&m->mu);
	return removed;
}

void rt_metric_add(rt_metric_family *f, double v, int n, const char *const *kv)
{
	if (!f)
		return;
	pthread_mutex_lock(&f->owner->mu);
	series *s = get_series(f, n, kv);
	if (s)
		s->value += v;
	pthread_mutex_unlock(&f->owner->mu);
}

void rt_metric_touch(rt_metric_family *f, int n, const char *const *kv)
{
	if (!f)
		return;
	pthread_mutex_lock(&f->owner->mu);
	(void)get_series(f, n, kv);
	pthread_mutex_unlock(&f->owner->mu);
}

void rt_metric_set(rt_metric_family *f, double v, int n, const char *const *kv)
{
	if (!f)
		return;
	pthread_mutex_lock(&f->owner->mu);
	series *s = get_series(f, n, kv);
	if (s)
		s->value = v;
	pthread_mutex_unlock(&f->owner->mu);
}

void rt_metric_observe(rt_metric_family *f, double v, int n, const char *const *kv)
{
	if (!f || f->type != RT_METRIC_HISTOGRAM)
		return;
	pthread_mutex_lock(&f->owner->mu);
	series *s = get_series(f, n, kv);
	if (s) {
		int b = 0;
		while (b < f->nbounds && v > f->bounds[b])
			b++;
		s->buckets[b]++;
		s->count++;
		s->value += v;
	}
	pthread_mutex_unlock(&f->owner->mu);
}

typedef struct sbuf {
	char *p;
	size_t len, cap;
	int oom;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
	va_list ap;
	if (b->oom)
		return;
	for (;;) {
		va_start(ap, fmt);
		int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->oom = 1;
			return;
		}
		if ((size_t)n < b->cap - b->len) {
			b->len += (size_t)n;
			return;
		}
		size_t cap = b->cap * 2 + (size_t)n;
		char *np = realloc(b->p, cap);
		if (!np) {
			b->oom = 1;
			return;
		}
		b->p = np;
		b->cap = cap;
	}
}

static void fmt_double(char *out, size_t cap, double v)
{
	if (isinf(v))
		snprintf(out, cap, v > 0 ? "+Inf" : "-Inf");
	else if (v == (double)(long long)v && fabs(v) < 1e15)
		snprintf(out, cap, "%lld", (long long)v);
	else
		for (int prec = 6; prec <= 17; prec++) {  /* shortest text that reads back exactly */
			snprintf(out, cap, "%.*g", prec, v);
			if (strtod(out, NULL) == v)
				break;
		}
}

static int cmp_series(const void *a, const void *b)
{
	return strcmp((*(series *const *)a)->labels, (*(series *const *)b)->labels);
}

int rt_metrics_render(rt_metrics *m, char **out, size_t *len)
{
	sbuf b = {malloc(8192), 0, 8192, 0};
	if (!b.p)
		return -ENOMEM;
	b.p[0] = 0;
	pthread_mutex_lock(&m->mu);
	for (rt_metric_family *f = m->head; f; f = f->next) {
		static const char *tn[] = {"counter", "gauge", "histogram"};
		if (f->nseries == 0)
			continue;
		sb_printf(&b, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name, tn[f->type]);
		series **all = malloc(sizeof(series *) * (size_t)f->nseries);
		if (!all) {
			b.oom = 1;
			break;
		}
		int k = 0;
		for (unsigned i = 0; i < f->nslots; i++)
			for (series *s = f->slots[i]; s; s = s->next)
				all[k++] = s;
		qsort(all, (size_t)k, sizeof *all, cmp_series);
		for (int i = 0; i < k; i++) {
			series *s = all[i];
			char v[64];
			const char *sep = s->labels[0] ? "," : "";
			if (f->type != RT_METRIC_HISTOGRAM) {
				fmt_double(v, sizeof v, s->value);
				if (s->labels[0])
					sb_printf(&b, "%s{%s} %s\n", f->name, s->labels, v);
				else
					sb_printf(&b, "%s %s\n", f->name, v);
				continue;
			}
			unsigned long long cum = 0;
			for (int j = 0; j <= f->nbounds; j++) {
				char le[64];
				cum += s->buckets[j];
				if (j < f->nbounds)
					snprintf(le, sizeof le, "%.6g", f->bounds[j]);
				else
					snprintf(le, sizeof le, "+Inf");
				sb_printf(&b, "%s_bucket{%s%sle=\"%s\"} %llu\n", f->name, s->labels, sep, le, cum);
			}
			fmt_double(v, sizeof v, s->value);
			if (s->labels[0]) {
				sb_printf(&b, "%s_sum{%s} %s\n", f->name, s->labels, v);
				sb_printf(&b, "%s_count{%s} %llu\n", f->name, s->labels, s->count);
			} else {
				sb_printf(&b, "%s_sum %s\n", f->name, v);
				sb_printf(&b, "%s_count %llu\n", f->name, s->count);
			}
		}
		free(all);
	}
	pthread_mutex_unlock(&m->mu);
	if (b.oom) {
		free(b.p);
		return -ENOMEM;
	}
	*out = b.p;
	*len = b.len;
	return 0;
}

/* rt_metrics.h — a small Prometheus registry: counter, gauge and histogram families with label
 * sets, rendered in the text exposition format (version 0.0.4) for GET /metrics.
 * Thread-safe (one mutex): lanes and the loop thread may update concurrently. */
#ifndef THAW_RT_METRICS_H
#define THAW_RT_METRICS_H
#include <stddef.h>

typedef struct rt_metrics rt_metrics;
typedef struct rt_metric_family rt_metric_family;

typedef enum rt_metric_type {
	RT_METRIC_COUNTER,
	RT_METRIC_GAUGE,
	RT_METRIC_HISTOGRAM,
} rt_metric_type;

/* rt_metrics_new returns an empty registry or NULL. */
rt_metrics *rt_metrics_new(void);
void rt_metrics_free(rt_metrics *m);

/* rt_metrics_family registers (or returns the existing) family. buckets (ascending upper bounds,
 * +Inf implied) only for histograms; copied. Returns NULL on allocation failure or when name is
 * already registered with another type. */
rt_metric_family *rt_metrics_family(rt_metrics *m, const char *name, rt_metric_type type,
				    const char *help, const double *buckets, int nbuckets);

/* Label sets are given as alternating key/value strings, nlabels pairs; values are escaped here.
 * All updates silently drop the sample on allocation failure (metrics never fail a request). */
void rt_metric_add(rt_metric_family *f, double v, int nlabels, const char *const *kv);
void rt_metric_set(rt_metric_family *f, double v, int nlabels, const char *const *kv);
void rt_metric_observe(rt_metric_family *f, double v, int nlabels, const char *const *kv);
/* rt_metric_touch creates the series of kv at zero when it does not exist yet (a counter or
 * gauge at 0, a histogram with no observation) and leaves an existing one as it is: a series a
 * dashboard reads is then exported from the start, not only after its first event. */
void rt_metric_touch(rt_metric_family *f, int nlabels, const char *const *kv);

/* Label cardinality: a family holds at most max_series label sets (rt_metrics_new sets
 * RT_METRICS_MAX_SERIES). Past it, a sample with a new label set of a counter or histogram is
 * folded into the family's one overflow series, labelled overflow="true" (so the family's
 * totals stay right); a gauge's is dropped. Either way thaw_metrics_overflow_total{family}
 * counts it and the first overflow of each family is logged once (warn). */
#define RT_METRICS_MAX_SERIES 10000
/* rt_metrics_set_max_series changes the cap (n >= 1) for every family of m. */
void rt_metrics_set_max_series(rt_metrics *m, int n);

/* rt_metrics_drop_label removes, from every family of m, each series whose label key has the
 * value value (e.g. "function", a deleted function's name); the overflow series stay. Returns
 * the number of series removed. */
int rt_metrics_drop_label(rt_metrics *m, const char *key, const char *value);

/* rt_metrics_render writes the exposition text into a malloc'd buffer (*out, *len); the caller
 * frees it. Returns 0 or -ENOMEM. */
int rt_metrics_render(rt_metrics *m, char **out, size_t *len);

/* Default latency buckets in seconds (100 µs .. 60 s). */
extern const double rt_metrics_latency_buckets[];
extern const int rt_metrics_latency_nbuckets;

#endif

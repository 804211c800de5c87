/* rt_manifest.h — function manifests: the JSON body of `PUT /v1/functions/{name}`.
 * Parses and validates a manifest into an rt_manifest (defaults filled in), serializes it back to
 * JSON, validates function names (DNS-label-like, as Knative service names) and resolves the
 * snapshot a manifest names to a real path under DATA/snapshots or an allowed root.
 * Errors are negative errnos with a message naming the field, e.g.
 * "field 'concurrency': must be an integer 1..1024". docs/api.md ("Functions API: manifest")
 * documents the fields, defaults and limits. Pure functions: no I/O except the resolver. */
#ifndef THAW_RT_MANIFEST_H
#define THAW_RT_MANIFEST_H
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#define RT_MANIFEST_NAME_MAX 63        /* function names: 1..63 characters */
#define RT_MANIFEST_KIND_NAME_MAX 63   /* kind names: 1..63 characters of [a-z0-9_-] */
#define RT_MANIFEST_PLUGIN_PREFIX "plugin:" /* or "plugin:/abs/path/libx.so" (a shared object) */
#define RT_MANIFEST_KIND_MAX (7 + 4095)  /* the kind field: a name or "plugin:" + a path */
#define RT_MANIFEST_PATH_MAX 4096      /* snapshot string, resolved paths (with the NUL) */
#define RT_MANIFEST_TRAFFIC_MAX 32     /* most entries in a traffic split */
#define RT_MANIFEST_AUDIT_PAYLOAD_DEFAULT 4096  /* "audit": {"max_bytes"} default */
#define RT_MANIFEST_AUDIT_PAYLOAD_MAX 65536
#define RT_MANIFEST_REV_MAX 1000000000u /* largest revision number */
#define RT_MANIFEST_REV_LATEST 0u      /* traffic key "latest": whatever revision is newest */

/* Limits (inclusive) and defaults of the numeric fields. */
#define RT_MANIFEST_CONCURRENCY_MAX 1024
#define RT_MANIFEST_MAX_QUEUE_MAX 65536
#define RT_MANIFEST_MAX_BATCH_MAX 1024
#define RT_MANIFEST_BATCH_DELAY_MAX 1000000 /* µs */
#define RT_MANIFEST_IDLE_MIN 0.1        /* s */
#define RT_MANIFEST_IDLE_MAX 604800.0   /* s, a week */
#define RT_MANIFEST_TIMEOUT_MIN 0.1     /* s */
#define RT_MANIFEST_TIMEOUT_MAX 3600.0  /* s */
#define RT_MANIFEST_CUDA_MAX 63         /* cuda:0 .. cuda:63 */

typedef enum rt_device_kind {
	RT_DEVICE_AUTO = 0,   /* the scheduler picks (a GPU when one is free, else the CPU) */
	RT_DEVICE_CPU,
	RT_DEVICE_CUDA,       /* rt_manifest.device_index names the GPU */
} rt_device_kind;

typedef struct rt_traffic_entry {
	uint32_t rev;         /* 1..RT_MANIFEST_REV_MAX, or RT_MANIFEST_REV_LATEST */
	int percent;          /* 0..100 */
} rt_traffic_entry;

/* A traffic split: entries sorted by rev (RT_MANIFEST_REV_LATEST first), percents sum to 100. */
typedef struct rt_traffic {
	int n;
	rt_traffic_entry e[RT_MANIFEST_TRAFFIC_MAX];
} rt_traffic;

typedef struct rt_manifest {
	char kind[RT_MANIFEST_KIND_MAX + 1];  /* "" after parsing: the snapshot's kind */
	char snapshot[RT_MANIFEST_PATH_MAX];  /* as given ("" when absent: only for echo) */
	int min_scale;                        /* 0 or 1; default 0 */
	double idle_timeout_s;                /* default 30 */
	int concurrency;                      /* 1..1024; default 8 */
	int max_queue;                        /* 0..65536; default 64 */
	double timeout_s;                     /* default 60 */
	rt_device_kind device;                /* default auto */
	int device_index;                     /* N of cuda:N; -1 otherwise */
	int max_batch;                        /* 1..1024; default 8 */
	int max_batch_delay_us;               /* 0..1000000; default 500 */
	int prefix_caching;                   /* generative kinds: share the KV blocks of common
					       * prompt prefixes; default 1 (true) */
	rt_traffic traffic;                   /* traffic.n == 0: not given */
	double rate_limit_rps;                /* per-caller invocation limit ("rate_limit": */
	double rate_limit_burst;              /*  "R/s,B"); 0: none (default) */
	int audit_payloads;                   /* "audit": {"payloads": true}: request and response */
	int audit_payload_max;                /*  bodies in the audit log, each cut to "max_bytes"
					       *  (1..65536, default 4096); 0/unused when off */
} rt_manifest;

/* kind_known: caller-supplied check of a kind name against the function-kind table; returns
 * non-zero when the kind exists. */
typedef int (*rt_manifest_kind_fn)(const char *kind, void *ud);

/* rt_manifest_defaults fills m with the defaults (kind and snapshot empty, no traffic). */
void rt_manifest_defaults(rt_manifest *m);

/* rt_manifest_from_json validates the JSON object obj (borrowed) into *m with defaults for absent
 * fields. kind_known may be NULL (any well-formed kind accepted). A manifest without "kind" but
 * with "snapshot" is valid with m->kind "": the caller takes the kind from the snapshot's
 * metadata (snap_kind) and checks it. Returns 0, or -EINVAL with a message in err naming the
 * field (unknown fields, wrong types, out-of-range values, neither kind nor snapshot, a missing
 * snapshot for a kind other than echo, a bad traffic split). */
int rt_manifest_from_json(const json_t *obj, rt_manifest_kind_fn kind_known, void *ud,
			  rt_manifest *m, char *err, size_t errlen);

/* rt_manifest_parse is rt_manifest_from_json on raw bytes: also refuses invalid JSON (naming
 * line and column), duplicate keys, and anything but an object at the top. 0 or -EINVAL. */
int rt_manifest_parse(const char *buf, size_t len, rt_manifest_kind_fn kind_known, void *ud,
		      rt_manifest *m, char *err, size_t errlen);

/* rt_manifest_to_json returns a new JSON object holding every field of m (defaults spelled out;
 * "kind" and "snapshot" omitted when empty; "rate_limit" omitted when none; "audit" omitted when payloads are off; "traffic" only when with_traffic and m->traffic.n > 0), which
 * rt_manifest_from_json accepts back unchanged. The caller owns the reference; NULL on ENOMEM. */
json_t *rt_manifest_to_json(const rt_manifest *m, int with_traffic);

/* rt_traffic_from_json validates a traffic object ({"<rev>"|"latest": percent, ...}) into *t,
 * sorted by revision. Messages start with "field 'traffic'". 0 or -EINVAL. */
int rt_traffic_from_json(const json_t *obj, rt_traffic *t, char *err, size_t errlen);

/* rt_traffic_to_json returns a new JSON object {"<rev>"|"latest": percent, ...}; NULL on ENOMEM. */
json_t *rt_traffic_to_json(const rt_traffic *t);

/* rt_manifest_name_valid checks a function name: 1..63 characters of [a-z0-9-], starting and
 * ending with a letter or digit (a DNS label, as Knative service names). 0 or -EINVAL. */
int rt_manifest_name_valid(const char *name, char *err, size_t errlen);

/* rt_manifest_resolve_snapshot resolves the snapshot string of a manifest to a real path in
 * resolved (cap bytes):
 *   - a bare file name ("m.thaw") is looked up in DATA/snapshots/;
 *   - an absolute path must lie, after realpath (so ".." and symlinks cannot escape), under
 *     DATA/snapshots or one of the n allowed_roots;
 *   - anything else (relative paths with '/', ".", "..") is refused.
 * The result must be a regular file. Returns 0; -EACCES outside the allowed places or a
 * relative path; -ENOENT when the file does not exist; -EINVAL for an empty string or a
 * non-regular file; -ENAMETOOLONG when resolved does not fit. err gets a message. */
int rt_manifest_resolve_snapshot(const char *data_dir, const char *const *allowed_roots, size_t n,
				 const char *snapshot, char *resolved, size_t cap,
				 char *err, size_t errlen);

/* rt_manifest_plugin_path returns the path of a "plugin:/path.so" kind, or NULL for a kind
 * name. */
const char *rt_manifest_plugin_path(const char *kind);

/* rt_manifest_resolve_plugin resolves the path of a plugin kind: it must be absolute, name a
 * regular file ending in ".so", and lie, after realpath, under one of the n plugin roots
 * (thaw serve --plugin-root). Returns 0 with the real path in resolved; -EACCES when no root
 * is set (plugins disabled) or the path is outside them (the message does not tell whether
 * such a file exists); -EINVAL for a relative path or a name not ending in ".so"; -ENOENT
 * when it does not exist; -ENAMETOOLONG. err gets a message. */
int rt_manifest_resolve_plugin(const char *const *roots, size_t n, const char *path,
			       char *resolved, size_t cap, char *err, size_t errlen);

/* rt_device_format writes "auto", "cpu" or "cuda:N" into buf. */
void rt_device_format(const rt_manifest *m, char *buf, size_t cap);

#endif

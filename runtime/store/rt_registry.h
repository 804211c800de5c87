/* rt_registry.h — the function registry: SQLite database DATA/registry.db holding functions,
 * their revisions (1, 2, 3, ...: the manifest, the resolved snapshot path, the creation time)
 * and each function's traffic split between revisions. Survives restarts and crashes: WAL
 * journal, every multi-statement change in one transaction. The schema is versioned with
 * PRAGMA user_version and upgraded by numbered migrations at open (migration 2: the jobs
 * table, owned by runtime/jobs/rt_jobs.c; migration 3: api_keys, owned by runtime/access/rt_auth.c).
 * Not thread-safe: all calls come from the event-loop thread. Each is a few prepared
 * (cached) statements, microseconds to a millisecond (synchronous=NORMAL: a commit does not
 * wait for fsync; a power loss can lose the last commits, never corrupt the file).
 * Functions return 0 or a negative errno; where an err buffer is taken it gets a message. */
#ifndef THAW_RT_REGISTRY_H
#define THAW_RT_REGISTRY_H
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "runtime/store/rt_manifest.h"

typedef struct rt_registry rt_registry;

/* The schema version this build creates and understands. */
#define RT_REGISTRY_SCHEMA_VERSION 3

/* One revision of a function. */
typedef struct rt_revision_info {
	char name[RT_MANIFEST_NAME_MAX + 1];
	uint32_t rev;
	rt_manifest manifest;                      /* settings of this revision (traffic.n == 0) */
	char snapshot_path[RT_MANIFEST_PATH_MAX];  /* resolved path; "" when none (echo) */
	int64_t created_ms;                        /* Unix time, milliseconds */
} rt_revision_info;

/* One row of rt_registry_list. */
typedef struct rt_registry_entry {
	char name[RT_MANIFEST_NAME_MAX + 1];
	char kind[RT_MANIFEST_KIND_MAX + 1];
	uint32_t latest_rev;
	int64_t updated_ms;                        /* creation time of the latest revision */
} rt_registry_entry;

/* rt_registry_open opens (creating when missing) DATA/registry.db under data_dir, which must
 * exist, and brings its schema up to date. -EPROTO when the file's schema is newer than this
 * build; -EIO for other SQLite failures (message in err). Caller closes with rt_registry_close. */
int rt_registry_open(const char *data_dir, rt_registry **out, char *err, size_t errlen);

/* rt_registry_db gives the open SQLite connection, for modules that keep their own tables in
 * the same file (the job store, rt_jobs.c). Loop thread only, like every registry call. */
struct sqlite3 *rt_registry_db(rt_registry *reg);

/* rt_registry_close finalizes the statements and closes the database; NULL is fine. */
void rt_registry_close(rt_registry *reg);

/* rt_registry_put stores manifest m (validated by rt_manifest_*; borrowed) as a new revision of
 * function name (creating the function at revision 1), with snapshot_path the resolved snapshot
 * ("" or NULL when none). The traffic split becomes m->traffic when given (its revisions must
 * exist, the new one included: else -ENOENT naming the revision, and nothing is stored),
 * otherwise all traffic goes to the new revision. *rev_out (may be NULL) gets the number. */
int rt_registry_put(rt_registry *reg, const char *name, const rt_manifest *m,
		    const char *snapshot_path, uint32_t *rev_out, char *err, size_t errlen);

/* rt_registry_set_traffic replaces the traffic split of an existing function without a new
 * revision (rollback = point at an older one). -ENOENT for an unknown function or revision
 * (message names it); -EINVAL for a split that is not valid (see rt_traffic_from_json). */
int rt_registry_set_traffic(rt_registry *reg, const char *name, const rt_traffic *t,
			    char *err, size_t errlen);

/* rt_registry_get fills *out with the latest revision of name. -ENOENT when unknown. */
int rt_registry_get(rt_registry *reg, const char *name, rt_revision_info *out);

/* rt_registry_get_revision fills *out with revision rev of name (RT_MANIFEST_REV_LATEST = the
 * latest). -ENOENT when the function or revision is unknown. */
int rt_registry_get_revision(rt_registry *reg, const char *name, uint32_t rev,
			     rt_revision_info *out);

/* rt_registry_get_traffic fills *t with the split as stored ("latest" kept symbolic). -ENOENT. */
int rt_registry_get_traffic(rt_registry *reg, const char *name, rt_traffic *t);

/* rt_registry_get_json builds the body of GET /v1/functions/{name}:
 *   {"name", "kind", "revision": latest, "created": RFC3339 (first revision),
 *    "updated": RFC3339 (latest revision), "settings": {manifest of the latest revision},
 *    "snapshot_path": resolved or null,
 *    "revisions": [{"revision", "created", "snapshot_path", "settings"}, ...] (ascending; the
 *    newest RT_REGISTRY_LIST_REVS and any other taking traffic), "revisions_total": count,
 *    "traffic": {"<rev>"|"latest": percent, ...}}
 * *out is a new reference the caller owns. -ENOENT when unknown; -ENOMEM; -EIO. */
int rt_registry_get_json(rt_registry *reg, const char *name, json_t **out);
#define RT_REGISTRY_LIST_REVS 20

/* rt_registry_list returns every function, sorted by name, in a malloc'd array (*out, free()
 * it; NULL when *n == 0). */
int rt_registry_list(rt_registry *reg, rt_registry_entry **out, size_t *n);

/* rt_registry_list_json builds {"functions": [{"name", "kind", "revision", "updated"}, ...]}
 * sorted by name (new reference, caller owns) — the base of GET /v1/functions, to which the
 * server adds live state. */
int rt_registry_list_json(rt_registry *reg, json_t **out);

/* rt_registry_delete removes a function with all its revisions and traffic. -ENOENT when
 * unknown. */
int rt_registry_delete(rt_registry *reg, const char *name);

/* rt_registry_pick_revision chooses the revision for one call by the traffic split:
 * random_draw % 100 falls into the entries' cumulative percents in ascending revision order
 * ("latest" resolves to the latest revision). -ENOENT when unknown. */
int rt_registry_pick_revision(rt_registry *reg, const char *name, uint64_t random_draw,
			      uint32_t *rev);

/* rt_registry_format_time writes ms (Unix time) as RFC 3339 UTC with milliseconds,
 * "2026-01-02T03:04:05.678Z". */
void rt_registry_format_time(int64_t ms, char *buf, size_t cap);

/* Test hook: when set, rt_registry_put calls it at named points inside its transaction
 * ("after-insert-revision", "after-traffic"), so a test can crash the process mid-change. */
extern void (*rt_registry_test_hook)(const char *point);

#endif

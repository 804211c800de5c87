/* rt_registry.h — the function registry: functions, their revisions (1, 2, 3, ...: the
 * manifest, the resolved snapshot path, the creation time), each function's traffic split
 * between revisions, and the API keys' rows. Survives restarts and crashes: the rows live in a
 * store (rt_store.h; rt_store_sqlite.c keeps them in DATA/registry.db, WAL journal, every
 * multi-statement change in one transaction, schema upgraded by numbered migrations at open;
 * the jobs table, owned by runtime/jobs/rt_jobs.c, lives in the same file; rt_store_pg.c keeps
 * the same rows in a PostgreSQL database that the nodes of a cluster share, see
 * rt_registry_open_url).
 *
 * The registry keeps an in-memory view of what the hot path reads: per function the latest
 * revision, the traffic split and the revisions asked for (manifest, snapshot path), and the
 * key rows. rt_registry_pick_revision, rt_registry_get, rt_registry_get_revision,
 * rt_registry_get_traffic and rt_registry_key_find answer from it and run no statement once
 * an entry is loaded; every write through the registry drops the entries it touches, and a
 * change committed elsewhere (another process, another node) drops the whole view before the
 * next read (the store's generation count, or rt_registry_invalidate; a shared store's
 * notifications, consumed by rt_registry_tick). While a shared store cannot reach its database
 * the view stays as it is and answers what it holds. Listings and the JSON views read the
 * store. Not thread-safe: all calls come from the event-loop thread.
 * Functions return 0 or a negative errno; where an err buffer is taken it gets a message. */
#ifndef THAW_RT_REGISTRY_H
#define THAW_RT_REGISTRY_H
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "runtime/store/rt_desc.h"
#include "runtime/store/rt_manifest.h"

typedef struct rt_registry rt_registry;

/* The schema version this build creates and understands. */
#define RT_REGISTRY_SCHEMA_VERSION 6

/* API key rows (runtime/access/rt_auth.c makes and checks keys; the registry stores them) */
#define RT_REGISTRY_KEY_ID_MAX 32      /* characters of a key id */
#define RT_REGISTRY_KEY_HASH_LEN 32    /* bytes of a key's keyed hash */
#define RT_REGISTRY_KEY_SCOPES_MAX 512 /* space-separated scopes, with the NUL */

/* One revision of a function. */
typedef struct rt_revision_info {
	char name[RT_MANIFEST_NAME_MAX + 1];
	uint32_t rev;
	rt_manifest manifest;                      /* settings of this revision (traffic.n == 0) */
	char snapshot_path[RT_MANIFEST_PATH_MAX];  /* resolved path; "" when none (echo) */
	int64_t created_ms;                        /* Unix time, milliseconds */
	rt_desc desc;                              /* desc.known == 0 when it cannot be computed
						    * (snapshot gone, kind unknown) */
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

/* rt_registry_open_url opens the registry a URL names (thaw serve --registry, thaw keys
 * --registry): NULL, "" or "sqlite:" = DATA/registry.db under data_dir (rt_registry_open);
 * "sqlite:PATH" = the SQLite file PATH (its directory must exist); "postgresql://..." or
 * "postgres://..." = a PostgreSQL database shared by the nodes of a cluster (a libpq URI;
 * credentials from the URI, the PG* environment or ~/.pgpass / PGPASSFILE; never logged:
 * messages name the URL with its password cut). The PostgreSQL schema is brought up to date by
 * forward-only migrations at open, one transaction each. -EINVAL for a URL of no known scheme,
 * -ENOTCONN when the database cannot be reached, -EPROTO for a schema newer than this build,
 * -EIO for other failures (message in err). */
int rt_registry_open_url(const char *url, const char *data_dir, rt_registry **out, char *err,
			 size_t errlen);

/* rt_registry_backend names the store: "sqlite" or "postgresql". rt_registry_shared is 1 for a
 * store that several nodes share (postgresql; it has a notification channel, a nodes table
 * and job leases), 0 for the embedded one. */
const char *rt_registry_backend(rt_registry *reg);
int rt_registry_shared(rt_registry *reg);

/* rt_registry_tick does the store's background work; the daemon calls it every
 * RT_REGISTRY_TICK_MS on the loop thread and it never blocks longer than one statement:
 * consumes change notifications (dropping the view entries they name; the keys, dropped by a
 * key change, are read again at once), and while the
 * database is unreachable tries to reconnect (at most every RT_REGISTRY_RETRY_MS). A
 * no-op for the embedded store. */
#define RT_REGISTRY_TICK_MS 20
#define RT_REGISTRY_RETRY_MS 500
void rt_registry_tick(rt_registry *reg);

/* rt_registry_available is 0 while a shared store cannot reach its database (the last
 * statement or connection attempt failed for the connection's sake), 1 otherwise. Writes made
 * meanwhile fail with -ENOTCONN, which the API answers with 503 naming the database; reads
 * the view has answer from memory. */
int rt_registry_available(rt_registry *reg);

/* rt_registry_unavailable_msg writes the message of a write refused while the database is
 * unreachable, "registry unavailable: postgresql: <reason>" (no credentials), to buf. */
void rt_registry_unavailable_msg(rt_registry *reg, char *buf, size_t cap);

/* rt_registry_secret gives the API keys' hash secret of a shared store: stores proposed (len
 * bytes, at most 64) when the store has none yet and copies the stored one to out, so every
 * node hashes with the first writer's. -ENOSYS for the embedded store (the secret is a file
 * of the data directory), -ENOTCONN while the database is unreachable. */
int rt_registry_secret(rt_registry *reg, const unsigned char *proposed, size_t len,
		       unsigned char *out);

/* rt_registry_audit_add appends one audit line (JSON, len bytes, no newline) to the shared
 * registry's audit table, where the admin actions of every node meet; rt_registry_audit_read
 * calls fn with each stored line (NUL-terminated, borrowed), oldest first: the last tail
 * lines, or all when tail is 0. -ENOSYS for the embedded store (its audit log is the files of
 * the data directory), -EINVAL for an empty or oversize (> RT_REGISTRY_AUDIT_LINE_MAX) line. */
#define RT_REGISTRY_AUDIT_LINE_MAX (64u << 10)
int rt_registry_audit_add(rt_registry *reg, const char *line, size_t len);
int rt_registry_audit_read(rt_registry *reg, size_t tail, void (*fn)(void *ud, const char *line),
			   void *ud);

/* ---- cluster membership (shared stores; the embedded store keeps the same rows for the one
 * node, so a single daemon behaves the same) ---- */
#define RT_NODE_ID_MAX 63            /* characters of a node id: [A-Za-z0-9._-] */
#define RT_NODE_URL_MAX 256          /* bytes of an advertised URL, with the NUL */

typedef struct rt_node_row {
	char id[RT_NODE_ID_MAX + 1];
	char advertise[RT_NODE_URL_MAX]; /* "http://10.0.0.5:8080"; "" when it takes no calls */
	int64_t started_ms;              /* first beat of this run of the node */
	int64_t beat_ms;                 /* last beat, by the store's clock */
	int64_t lease_left_ms;           /* lease time left at the read (> 0: alive) */
	char *state;                     /* JSON text the node published (malloc'd; NULL: none) */
} rt_node_row;

/* rt_registry_node_beat upserts node id's lease row: advertised URL, state (JSON text,
 * borrowed, at most RT_NODE_STATE_MAX bytes) and a lease of lease_ms from now by the store's
 * clock; started_ms is set when fresh is 1 (the node's first beat since it started). With
 * notify set, the other nodes hear of it at once (a residency change); plain beats are read
 * at their next rt_registry_node_list. -EINVAL for a bad id or an oversize state. */
#define RT_NODE_STATE_MAX (256u << 10)
int rt_registry_node_beat(rt_registry *reg, const char *id, const char *advertise,
			  const char *state, int64_t lease_ms, int fresh, int notify);

/* rt_registry_node_list returns the nodes whose lease has not expired by the store's clock,
 * sorted by id, in a malloc'd array (free with rt_registry_node_rows_free; NULL when *n == 0). */
int rt_registry_node_list(rt_registry *reg, rt_node_row **out, size_t *n);
void rt_registry_node_rows_free(rt_node_row *rows, size_t n);

/* rt_registry_node_leave drops node id's row (a clean stop); -ENOENT when it has none. */
int rt_registry_node_leave(rt_registry *reg, const char *id);

/* rt_registry_nodes_generation counts the membership notifications heard (notify beats and
 * leaves of any node); a node's membership view re-reads rt_registry_node_list when it moved. */
uint64_t rt_registry_nodes_generation(rt_registry *reg);

/* rt_registry_statements counts the statements the store has run since open (each execution
 * of a prepared statement, transaction statements included; the jobs' rows too, rt_jobstore.h). A test reads it around a call to see that the call ran none. */
uint64_t rt_registry_statements(rt_registry *reg);

/* rt_registry_invalidate drops the view's entry of function name (NULL: the whole view, keys
 * included), so that the next read loads it from the store. For a store that hears of changes
 * made elsewhere (a notification); writes through the registry do it themselves. */
void rt_registry_invalidate(rt_registry *reg, const char *name);

/* rt_registry_close finalizes the statements and closes the database; NULL is fine. */
void rt_registry_close(rt_registry *reg);

/* rt_registry_put stores manifest m (validated by rt_manifest_*; borrowed) as a new revision of
 * function name (creating the function at revision 1), with snapshot_path the resolved snapshot
 * ("" or NULL when none). The traffic split becomes m->traffic when given (its revisions must
 * exist, the new one included: else -ENOENT naming the revision, and nothing is stored),
 * otherwise all traffic goes to the new revision. *rev_out (may be NULL) gets the number. */
int rt_registry_put(rt_registry *reg, const char *name, const rt_manifest *m,
		    const char *snapshot_path, uint32_t *rev_out, char *err, size_t errlen);

/* rt_registry_put_desc is rt_registry_put with the revision's descriptor (rt_desc.h) given
 * (desc borrowed; NULL: computed here from the snapshot, and left to the first read when that
 * fails). rt_registry_put opens the snapshot to compute it; a deploy that has the snapshot
 * open already computes it from there and passes it. */
int rt_registry_put_desc(rt_registry *reg, const char *name, const rt_manifest *m,
			 const char *snapshot_path, const rt_desc *desc, uint32_t *rev_out,
			 char *err, size_t errlen);

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

/* API keys. rt_registry_key_insert stores a new row: id (1..RT_REGISTRY_KEY_ID_MAX
 * characters), hash (RT_REGISTRY_KEY_HASH_LEN bytes), scopes (space-separated, shorter than
 * RT_REGISTRY_KEY_SCOPES_MAX); -EEXIST when the id is taken, -EINVAL for a bad argument. */
int rt_registry_key_insert(rt_registry *reg, const char *id, const unsigned char *hash,
			   const char *scopes);

/* rt_registry_key_revoke marks key id revoked now (the row stays for the audit trail).
 * -ENOENT when unknown or already revoked. The view forgets it at once. */
int rt_registry_key_revoke(rt_registry *reg, const char *id);

/* rt_registry_key_find looks a live (not revoked) key up by id in the view: 0 with its hash
 * (RT_REGISTRY_KEY_HASH_LEN bytes) and scopes (RT_REGISTRY_KEY_SCOPES_MAX) copied out,
 * -ENOENT when there is none, -EIO when the store cannot load the keys. */
int rt_registry_key_find(rt_registry *reg, const char *id, unsigned char *hash, char *scopes);

/* rt_registry_key_list builds {"keys": [{"id", "scopes": [..], "created", "revoked"}, ...]}
 * in creation order (new reference, caller owns); no hash is listed. */
int rt_registry_key_list(rt_registry *reg, json_t **out);

/* rt_registry_format_time writes ms (Unix time) as RFC 3339 UTC with milliseconds,
 * "2026-01-02T03:04:05.678Z". */
void rt_registry_format_time(int64_t ms, char *buf, size_t cap);

/* rt_registry_time_json is ms as an rt_registry_format_time JSON string (new reference; NULL
 * when out of memory). */
json_t *rt_registry_time_json(int64_t ms);

/* Test hook: when set, rt_registry_put calls it at named points inside its transaction
 * ("after-insert-revision", "after-traffic"), so a test can crash the process mid-change. */
extern void (*rt_registry_test_hook)(const char *point);

#endif

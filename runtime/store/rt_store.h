/* rt_store.h — the interface a registry store implements: the durable rows behind
 * rt_registry (functions, revisions, traffic splits, API keys). One store per process, opened
 * by rt_registry_open or rt_registry_open_url; callers never see it: they use rt_registry.h,
 * whose in-memory view
 * serves the hot path (traffic picks, revision lookups, key checks) and calls the store only
 * to fill the view and to write.
 *
 * A store is an ops table (designated initializers, one per backend file) and an opaque
 * state. rt_store_sqlite.c is the embedded one (DATA/registry.db, or a file named by
 * sqlite:PATH); rt_store_pg.c is the one the nodes of a cluster share (a PostgreSQL database,
 * postgresql://...). Every SQL statement of the daemon lives in the store files; what the
 * stores do alike with their rows (write checks and texts, rows to structs, the function JSON
 * body) is rt_store_rows.h.
 *
 * Change detection: a store counts the changes committed through any process or node
 * (generation); the registry compares it before each view read and drops the view when it
 * moved, so a key revoked by `thaw keys` in another process counts at the next request. A
 * store that learns of changes asynchronously (a notification channel) reports them from its
 * tick op instead, naming the function changed (the registry drops that entry), and moves
 * its generation only for its own commits and for a reconnect (which drops the whole view).
 *
 * All calls come from one thread (the registry's). Functions return 0 or a negative errno:
 * -ENOENT for a missing row, -EIO (or -EBUSY, -ENOSPC, -EACCES) for a failing store,
 * -ENOTCONN while a shared store cannot reach its database. An op a store does not implement
 * is NULL (the registry answers -ENOSYS). */
#ifndef THAW_RT_STORE_H
#define THAW_RT_STORE_H
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "runtime/store/rt_jobstore.h"
#include "runtime/store/rt_registry.h"

typedef struct rt_store rt_store;

/* One row of api_keys as the view keeps it. */
typedef struct rt_store_key {
	char id[RT_REGISTRY_KEY_ID_MAX + 1];
	unsigned char hash[RT_REGISTRY_KEY_HASH_LEN];
	char scopes[RT_REGISTRY_KEY_SCOPES_MAX];
	int64_t created_ms;
	int64_t revoked_ms;        /* 0 while live */
} rt_store_key;

typedef struct rt_store_ops {
	const char *name;          /* "sqlite", "postgresql" */
	int shared;                /* 1: several nodes share it (rt_registry_shared) */
	void (*close)(rt_store *st);
	/* statements run since open (each prepared-statement execution and each exec, the
	 * transaction statements included): the registry's statement counter */
	uint64_t (*statements)(rt_store *st);
	/* changes committed by anyone (this process included); only ever grows */
	uint64_t (*generation)(rt_store *st);

	/* functions and revisions (the contracts of the rt_registry_* call of the same name) */
	int (*put)(rt_store *st, const char *name, const rt_manifest *m, const char *snapshot_path,
		   const rt_desc *desc, uint32_t *rev_out, char *err, size_t errlen);
	/* records the descriptor of an existing revision (one stored without) */
	int (*set_desc)(rt_store *st, const char *name, uint32_t rev, const rt_desc *desc);
	int (*set_traffic)(rt_store *st, const char *name, const rt_traffic *t, char *err,
			   size_t errlen);
	int (*get_revision)(rt_store *st, const char *name, uint32_t rev, rt_revision_info *out);
	/* the latest revision number and the stored split of name */
	int (*get_head)(rt_store *st, const char *name, uint32_t *latest, rt_traffic *t);
	int (*get_json)(rt_store *st, const char *name, json_t **out);
	int (*list)(rt_store *st, rt_registry_entry **out, size_t *n);
	int (*delete_fn)(rt_store *st, const char *name);

	/* API keys: insert a new row (-EEXIST when the id is taken); revoke a live one (-ENOENT
	 * when unknown or revoked already); every row (revoked ones included) in creation order,
	 * malloc'd (*out, free() it; NULL when *n == 0) */
	int (*key_insert)(rt_store *st, const rt_store_key *k);
	int (*key_revoke)(rt_store *st, const char *id, int64_t ms);
	int (*key_all)(rt_store *st, rt_store_key **out, size_t *n);

	/* jobs (the contracts of the rt_jobstore_* call of the same name) */
	int (*job_insert)(rt_store *st, const rt_job_row *r, int64_t *id);
	int (*job_get)(rt_store *st, int64_t id, rt_job_row *r);
	int (*job_save)(rt_store *st, const rt_job_row *r);
	int (*job_ids)(rt_store *st, int state, int64_t **ids, size_t *n);
	int (*job_candidates)(rt_store *st, int64_t *ids, size_t cap, size_t *n);
	int (*job_counts)(rt_store *st, int64_t *counts);
	int (*job_recover)(rt_store *st, const char *node, int *n);
	/* job leases (the contracts of rt_jobstore_claim, _renew, _save_owned) */
	int (*job_claim)(rt_store *st, int64_t id, const char *node, int64_t lease_ms);
	int (*job_renew)(rt_store *st, const char *node, int64_t lease_ms, int *n);
	int (*job_save_owned)(rt_store *st, const rt_job_row *r, const char *node);

	/* cluster membership (the contracts of rt_registry_node_*; arguments checked by the
	 * registry); nodes_generation counts the membership notifications heard */
	int (*node_beat)(rt_store *st, const char *id, const char *advertise, const char *state,
			 int64_t lease_ms, int fresh, int notify);
	int (*node_list)(rt_store *st, rt_node_row **out, size_t *n);
	int (*node_leave)(rt_store *st, const char *id);
	uint64_t (*nodes_generation)(rt_store *st);

	/* the keyed-hash secret of API keys (rt_registry_secret): stores proposed (len bytes)
	 * when no secret is stored yet and copies the stored one to out (first writer wins).
	 * NULL for a store whose secret stays a file of the data directory. */
	int (*secret)(rt_store *st, const unsigned char *proposed, size_t len, unsigned char *out);

	/* the cluster's admin audit trail (rt_registry_audit_add, _read); NULL: none */
	int (*audit_add)(rt_store *st, const char *line, size_t len);
	int (*audit_read)(rt_store *st, size_t tail, void (*fn)(void *ud, const char *line),
			  void *ud);

	/* background work from rt_registry_tick: consumes change notifications without
	 * blocking, calling changed(ud, name) for each function another node changed (name NULL:
	 * everything, keys included), and reconnects when the database was lost. NULL: none. */
	void (*tick)(rt_store *st, void (*changed)(void *ud, const char *name), void *ud);
	/* 0 while the database cannot be reached, with the reason (no credentials) in why;
	 * NULL: always available */
	int (*available)(rt_store *st, char *why, size_t cap);
} rt_store_ops;

/* rt_store_sqlite_open opens (creating when missing) DATA/registry.db under data_dir and
 * brings its schema up to date; *ops gets its table. -EPROTO for a schema newer than this
 * build, -EIO for other failures (message in err). */
int rt_store_sqlite_open(const char *data_dir, const rt_store_ops **ops, rt_store **out,
			 char *err, size_t errlen);

/* rt_store_sqlite_open_file is rt_store_sqlite_open on the database file path (its directory
 * must exist); changes are announced through path less a ".db" suffix plus ".gen". */
int rt_store_sqlite_open_file(const char *path, const rt_store_ops **ops, rt_store **out,
			      char *err, size_t errlen);

/* rt_store_pg_open connects to the PostgreSQL database of libpq URI url (connect timeout and
 * TCP keepalives added unless the URI sets them), listens on channels thaw_registry and
 * thaw_nodes, and brings the schema up to date (forward-only migrations, one transaction
 * each, serialized between nodes by an advisory lock). -EINVAL for a URI libpq cannot parse,
 * -ENOTCONN when the database cannot be reached, -EPROTO for a newer schema, -EIO otherwise;
 * messages name the URL with its password cut (rt_store_pg_redact). */
int rt_store_pg_open(const char *url, const rt_store_ops **ops, rt_store **out, char *err,
		     size_t errlen);

/* rt_store_pg_redact copies url to out with the password of its user-info part and any
 * password= parameter replaced by "***" (truncated to cap). */
void rt_store_pg_redact(const char *url, char *out, size_t cap);

#endif

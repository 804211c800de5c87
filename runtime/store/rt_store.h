/* rt_store.h — the interface a registry store implements: the durable rows behind
 * rt_registry (functions, revisions, traffic splits, API keys). One store per process, opened
 * by rt_registry_open; callers never see it: they use rt_registry.h, whose in-memory view
 * serves the hot path (traffic picks, revision lookups, key checks) and calls the store only
 * to fill the view and to write.
 *
 * A store is an ops table (designated initializers, one per backend file) and an opaque
 * state. rt_store_sqlite.c is the embedded one (DATA/registry.db); a store shared by several
 * nodes is another file with its own table, opened by rt_registry_open from its target. Every
 * SQL statement of the daemon lives in the store files.
 *
 * Change detection: a store counts the changes committed through any process or node
 * (generation); the registry compares it before each view read and drops the view when it
 * moved, so a key revoked by `thaw keys` in another process counts at the next request. A
 * store that learns of changes asynchronously (a notification channel) may instead call
 * rt_registry_invalidate from the loop thread.
 *
 * All calls come from one thread (the registry's). Functions return 0 or a negative errno:
 * -ENOENT for a missing row, -EIO (or -EBUSY, -ENOSPC, -EACCES) for a failing store. */
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
	const char *name;          /* "sqlite" */
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
	/* job leases (rt_jobstore_claim, rt_jobstore_renew, rt_jobstore_save_owned) */
	int (*job_claim)(rt_store *st, int64_t id, const char *node, int64_t lease_ms);
	int (*job_renew)(rt_store *st, const char *node, int64_t lease_ms, int *n);
	int (*job_save_owned)(rt_store *st, const rt_job_row *r, const char *node);
} rt_store_ops;

/* rt_store_sqlite_open opens (creating when missing) DATA/registry.db under data_dir and
 * brings its schema up to date; *ops gets its table. -EPROTO for a schema newer than this
 * build, -EIO for other failures (message in err). */
int rt_store_sqlite_open(const char *data_dir, const rt_store_ops **ops, rt_store **out,
			 char *err, size_t errlen);

#endif

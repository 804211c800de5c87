/* rt_store_rows.h — what the registry stores (rt_store_sqlite.c, rt_store_pg.c) do with their
 * rows that does not depend on the database: the checks and JSON texts of what a write stores
 * (a split given as a struct, a revision's manifest and descriptor, a job's JSON columns), the
 * conversion of a result row into the structs of rt_registry.h, rt_store.h and rt_jobstore.h,
 * and the body of GET /v1/functions/{name} built from the function's rows.
 *
 * A store hands its result rows over as an rt_store_row: its own column access behind four
 * calls. The SQL statements, the binding of parameters and the transactions stay in the store
 * files; the column order each conversion reads is that of the store's SELECT lists, named at
 * each function. Functions return 0 or a negative errno. */
#ifndef THAW_RT_STORE_ROWS_H
#define THAW_RT_STORE_ROWS_H
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "runtime/store/rt_store.h"

typedef struct rt_store_row rt_store_row;

/* A store's column access: column c of the current row of row->res. */
typedef struct rt_store_row_ops {
	int (*is_null)(const rt_store_row *row, int c);
	const char *(*text)(const rt_store_row *row, int c);   /* NULL for SQL NULL; valid until
								 * the store moves on */
	int64_t (*i64)(const rt_store_row *row, int c);        /* 0 for SQL NULL */
	double (*f64)(const rt_store_row *row, int c);         /* 0 for SQL NULL */
} rt_store_row_ops;

/* One result row: the store's result (a statement, a result set) and, for a result that holds
 * several rows, the row's number. */
struct rt_store_row {
	const rt_store_row_ops *ops;
	void *res;
	int i;
};

/* A filler of one entry of a row array (collect_rows in the stores): 0, or -ENOMEM. */
typedef int (*rt_store_fill_fn)(const rt_store_row *row, void *entry);

/* ---- writes ---- */

/* rt_store_traffic_ok checks a split given as a struct (rt_registry_set_traffic, a manifest's
 * traffic): 1..RT_MANIFEST_TRAFFIC_MAX entries of percent 0..100 and revision at most
 * RT_MANIFEST_REV_MAX, no revision twice, percents summing to 100. -EINVAL with the message
 * in err. */
int rt_store_traffic_ok(const rt_traffic *t, char *err, size_t errlen);

/* rt_store_put_texts checks what rt_registry_put stores (the function name, m's split when it
 * has one) and gives the columns' texts: *text the manifest without its split, *dtext the
 * descriptor when desc is known (else NULL); both malloc'd, sorted keys. -EINVAL from the
 * checks, -ENOMEM ("out of memory"); the message in err, nothing to free on failure. */
int rt_store_put_texts(const char *name, const rt_manifest *m, const rt_desc *desc, char **text,
		       char **dtext, char *err, size_t errlen);

/* rt_store_put_split is the split rt_registry_put writes with manifest m: m's own, or all
 * traffic to the latest revision when m has none (borrowed from m or static). */
const rt_traffic *rt_store_put_split(const rt_manifest *m);

/* rt_store_no_revision words the refusal of a split naming revision rev of function name,
 * which has none (latest is its latest revision) into err; returns -ENOENT. */
int rt_store_no_revision(const char *name, uint32_t rev, uint32_t latest, char *err,
			 size_t errlen);

/* rt_store_desc_text gives the descriptor column's text of d (malloc'd, sorted keys); NULL
 * when out of memory. */
char *rt_store_desc_text(const rt_desc *d);

/* rt_store_job_texts gives the JSON columns of a new job row: *params of r->params (sorted
 * keys; NULL: {}) and *schedule of r->schedule (NULL: "now"), malloc'd. -ENOMEM when either
 * could not be made; free both in every case. */
int rt_store_job_texts(const rt_job_row *r, char **params, char **schedule);

/* rt_store_job_metrics checks the state of a row to save (-EINVAL when it is no RT_JOB_*; then
 * *metrics is NULL) and gives the metrics column's text: malloc'd, or NULL when r has no
 * metrics (the store writes {}). */
int rt_store_job_metrics(const rt_job_row *r, char **metrics);

/* rt_store_node_ok checks a node id as the lease columns hold it: at most RT_NODE_ID_MAX
 * characters, "" only with empty_ok. 1 when fine, 0 when not (NULL included). */
int rt_store_node_ok(const char *node, int empty_ok);

/* ---- rows to structs ---- */

/* rt_store_job_state is the RT_JOB_* of a state column's text; -1 for a name this build does
 * not know (NULL included). */
int rt_store_job_state(const char *name);

/* rt_store_rev_from_row fills *out (zeroed first) for revision row (rev, manifest,
 * snapshot_path, created_ms, descriptor) of function name. -EIO, logged, for a manifest that
 * cannot be read; a descriptor that cannot be read is logged and left unknown (computed
 * again). */
int rt_store_rev_from_row(const rt_store_row *row, const char *name, rt_revision_info *out);

/* rt_store_fill_entry fills the rt_registry_entry at entry from row (name, kind, latest_rev,
 * updated_ms). Always 0. */
int rt_store_fill_entry(const rt_store_row *row, void *entry);

/* rt_store_fill_node fills the rt_node_row at entry from row (id, advertise, started_ms,
 * beat_ms, lease time left, state); -ENOMEM when the state cannot be copied (state NULL). */
int rt_store_fill_node(const rt_store_row *row, void *entry);

/* rt_store_fill_id stores column 0 of row as the int64_t at entry. Always 0. */
int rt_store_fill_id(const rt_store_row *row, void *entry);

/* rt_store_key_from_row fills *e from key row (id, hash, scopes, created_ms, revoked_ms), with
 * hash the hash column as the store decoded it (RT_REGISTRY_KEY_HASH_LEN bytes; NULL for a
 * damaged one: the row then matches no key). A revoked_ms of 0 reads as 1 (revoked). */
void rt_store_key_from_row(const rt_store_row *row, const unsigned char *hash, rt_store_key *e);

/* rt_store_job_from_row fills the fields of *r (zeroed by the caller) from job row (id, type,
 * function, revision, snapshot, params, schedule, priority, device, state, progress, step,
 * metrics, preemptions, created_ms, started_ms, finished_ms, updated_ms, error,
 * result_snapshot, result_revision, checkpoint, owner, lease_until); JSON columns that cannot
 * be read become JSON null. The row owns its JSON values (rt_job_row_clear). */
void rt_store_job_from_row(const rt_store_row *row, rt_job_row *r);

/* ---- GET /v1/functions/{name} ----
 * A store builds the body of rt_registry_get_json inside one read transaction:
 * rt_store_fn_json_init, rt_store_fn_json_head with the function's row, the stored split read
 * into b->traffic, rt_store_fn_json_rev with each revision row in ascending order, then
 * rt_store_fn_json_done; rt_store_fn_json_clear on any failure. */
typedef struct rt_store_fn_json {
	const char *name;          /* borrowed */
	json_t *o, *revs;
	rt_revision_info *ri;      /* scratch */
	uint32_t latest;
	json_int_t total;
	rt_traffic traffic;        /* the stored split, read in by the store */
} rt_store_fn_json;

/* rt_store_fn_json_init readies b for function name (borrowed). -ENOMEM. */
int rt_store_fn_json_init(rt_store_fn_json *b, const char *name);

/* rt_store_fn_json_head starts the body from function row (id, kind, latest_rev, created_ms,
 * updated_ms): name, kind, revision, created, updated. -ENOMEM. */
int rt_store_fn_json_head(rt_store_fn_json *b, const rt_store_row *row);

/* rt_store_fn_json_rev counts revision row (rt_store_rev_from_row's columns) and lists it when
 * it is one of the newest RT_REGISTRY_LIST_REVS or takes traffic (revision, created,
 * snapshot_path, settings); the latest gives the body's settings and snapshot_path.
 * rt_store_rev_from_row's -EIO, -ENOMEM. */
int rt_store_fn_json_rev(rt_store_fn_json *b, const rt_store_row *row);

/* rt_store_fn_json_done ends the body (revisions, revisions_total, traffic) and returns it (a
 * new reference the caller owns); b is cleared. */
json_t *rt_store_fn_json_done(rt_store_fn_json *b);

/* rt_store_fn_json_clear drops what b holds; safe after rt_store_fn_json_init failed. */
void rt_store_fn_json_clear(rt_store_fn_json *b);

#endif

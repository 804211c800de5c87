/* rt_registry.c — the registry over a store (rt_store.h): the in-memory view the hot path
 * reads, the writes that keep it true, and the calls that go straight to the store. See
 * rt_registry.h.
 *
 * The view: a hash table of functions (name -> latest revision, traffic split, and up to
 * VIEW_REVS revisions as they were asked for, least recently used replaced), filled on a miss,
 * and the key rows, loaded whole on the first check. Unknown names are not remembered (a
 * stream of made-up names cannot grow it). It reflects the store's generation gen: a read that
 * finds another generation drops everything first; a write through this registry moves gen by
 * exactly its own commit and drops only what it touched. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "runtime/base/rt_clock.h"
#include "runtime/base/rt_log.h"
#include "runtime/store/rt_registry.h"
#include "runtime/store/rt_store.h"

void (*rt_registry_test_hook)(const char *point);

#define VIEW_REVS 4
#define VIEW_BUCKETS_MIN 64

typedef struct vrev {
	rt_revision_info *info;    /* NULL: free slot */
	uint64_t used;             /* the registry's tick at the last read */
} vrev;

typedef struct vfn {
	struct vfn *next;          /* hash chain */
	uint32_t hash;
	char name[RT_MANIFEST_NAME_MAX + 1];
	uint32_t latest;
	rt_traffic traffic;
	vrev revs[VIEW_REVS];
} vfn;

struct rt_registry {
	const rt_store_ops *ops;
	rt_store *st;
	uint64_t gen;              /* the store generation the view reflects */
	vfn **buckets;
	size_t nbuckets, nfn;
	rt_store_key *keys;        /* every row, revoked ones included */
	size_t nkeys;
	int keys_loaded;
	uint64_t tick;
};

void rt_registry_format_time(int64_t ms, char *buf, size_t cap)
{
	time_t s = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&s, &tm);
	snprintf(buf, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

json_t *rt_registry_time_json(int64_t ms)
{
	char b[40];
	rt_registry_format_time(ms, b, sizeof b);
	return json_string(b);
}

/* ---- the view ---- */

static uint32_t name_hash(const char *s)
{
	uint32_t h = 2166136261u;   /* FNV-1a */
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

static void vfn_free(vfn *f)
{
	for (int i = 0; i < VIEW_REVS; i++)
		free(f->revs[i].info);
	free(f);
}

static void drop_keys(rt_registry *reg)
{
	free(reg->keys);
	reg->keys = NULL;
	reg->nkeys = 0;
	reg->keys_loaded = 0;
}

static void drop_all(rt_registry *reg)
{
	for (size_t b = 0; b < reg->nbuckets; b++) {
		for (vfn *f = reg->buckets[b], *nx; f; f = nx) {
			nx = f->next;
			vfn_free(f);
		}
		reg->buckets[b] = NULL;
	}
	reg->nfn = 0;
	drop_keys(reg);
}

static void drop_fn(rt_registry *reg, const char *name)
{
	if (!reg->nbuckets)
		return;
	uint32_t h = name_hash(name);
	for (vfn **p = &reg->buckets[h & (reg->nbuckets - 1)]; *p; p = &(*p)->next) {
		if ((*p)->hash == h && strcmp((*p)->name, name) == 0) {
			vfn *f = *p;
			*p = f->next;
			vfn_free(f);
			reg->nfn--;
			return;
		}
	}
}

void rt_registry_invalidate(rt_registry *reg, const char *name)
{
	if (name)
		drop_fn(reg, name);
	else
		drop_all(reg);
}

/* sync drops the view when the store moved on without this registry knowing */
static void sync(rt_registry *reg)
{
	uint64_t g = reg->ops->generation(reg->st);
	if (g != reg->gen) {
		drop_all(reg);
		reg->gen = g;
	}
}

/* write_done follows a write that started at store generation before and returned rc: when
 * the store moved by exactly that one commit from what the view reflects, the view stays and
 * loses what the write touched (function name, or the keys); otherwise it is dropped whole. A
 * write refused because the database is unreachable changes nothing here: the view keeps
 * serving, and the reconnect drops it whole (whatever that write's fate). */
static void write_done(rt_registry *reg, uint64_t before, const char *name, int keys, int rc)
{
	uint64_t after = reg->ops->generation(reg->st);
	if (rc == -ENOTCONN && after == before)
		return;
	if (before == reg->gen && (after == before || after == before + 1)) {
		reg->gen = after;
		if (name)
			drop_fn(reg, name);
		if (keys)
			drop_keys(reg);
		return;
	}
	drop_all(reg);
	reg->gen = after;
}

static int grow(rt_registry *reg)
{
	size_t nb = reg->nbuckets ? reg->nbuckets * 2 : VIEW_BUCKETS_MIN;
	vfn **b = calloc(nb, sizeof *b);
	if (!b)
		return -ENOMEM;
	for (size_t i = 0; i < reg->nbuckets; i++) {
		for (vfn *f = reg->buckets[i], *nx; f; f = nx) {
			nx = f->next;
			f->next = b[f->hash & (nb - 1)];
			b[f->hash & (nb - 1)] = f;
		}
	}
	free(reg->buckets);
	reg->buckets = b;
	reg->nbuckets = nb;
	return 0;
}

/* find_fn gives the view's entry of name, loading its head from the store on a miss.
 * -ENOENT (not remembered), -ENOMEM, or the store's error. */
static int find_fn(rt_registry *reg, const char *name, vfn **out)
{
	sync(reg);
	uint32_t h = name_hash(name);
	if (reg->nbuckets) {
		for (vfn *f = reg->buckets[h & (reg->nbuckets - 1)]; f; f = f->next) {
			if (f->hash == h && strcmp(f->name, name) == 0) {
				*out = f;
				return 0;
			}
		}
	}
	if (strlen(name) > RT_MANIFEST_NAME_MAX)
		return -ENOENT;
	vfn *f = calloc(1, sizeof *f);
	if (!f)
		return -ENOMEM;
	int rc = reg->ops->get_head(reg->st, name, &f->latest, &f->traffic);
	if (rc < 0 || ((reg->nfn + 1 > reg->nbuckets) && grow(reg) < 0)) {
		free(f);
		return rc < 0 ? rc : -ENOMEM;
	}
	f->hash = h;
	snprintf(f->name, sizeof f->name, "%s", name);
	f->next = reg->buckets[h & (reg->nbuckets - 1)];
	reg->buckets[h & (reg->nbuckets - 1)] = f;
	reg->nfn++;
	*out = f;
	return 0;
}

/* describe computes the descriptor of a revision stored without one (once per load into the
 * view) and records it; a failure leaves ri->desc.known at 0 */
static void describe(rt_registry *reg, rt_revision_info *ri)
{
	char why[256];
	if (rt_desc_compute_path(ri->snapshot_path, ri->manifest.kind, &ri->desc, why,
				 sizeof why) < 0) {
		rt_logf(RT_LOG_WARN, "registry: function '%s' revision %u: no descriptor: %s", ri->name,
			ri->rev, why);
		return;
	}
	uint64_t before = reg->ops->generation(reg->st);
	if (reg->ops->set_desc(reg->st, ri->name, ri->rev, &ri->desc) < 0)
		return;
	if (before == reg->gen && reg->ops->generation(reg->st) == before + 1)
		reg->gen = before + 1;   /* only this record: the view stays */
}

/* find_rev gives revision rev (resolved, >= 1) of f from the view, loading it on a miss */
static int find_rev(rt_registry *reg, vfn *f, uint32_t rev, const rt_revision_info **out)
{
	int slot = 0;
	reg->tick++;
	for (int i = 0; i < VIEW_REVS; i++) {
		vrev *v = &f->revs[i];
		if (v->info && v->info->rev == rev) {
			v->used = reg->tick;
			*out = v->info;
			return 0;
		}
		if (!v->info || (f->revs[slot].info && v->used < f->revs[slot].used))
			slot = i;
	}
	rt_revision_info *ri = f->revs[slot].info ? f->revs[slot].info : malloc(sizeof *ri);
	if (!ri)
		return -ENOMEM;
	f->revs[slot].info = NULL;
	int rc = reg->ops->get_revision(reg->st, f->name, rev, ri);
	if (rc < 0) {
		free(ri);
		return rc;
	}
	if (!ri->desc.known)
		describe(reg, ri);
	f->revs[slot].info = ri;
	f->revs[slot].used = reg->tick;
	*out = ri;
	return 0;
}

static int load_keys(rt_registry *reg)
{
	sync(reg);
	if (reg->keys_loaded)
		return 0;
	int rc = reg->ops->key_all(reg->st, &reg->keys, &reg->nkeys);
	if (rc < 0)
		return rc;
	reg->keys_loaded = 1;
	return 0;
}

/* ---- open, close, counters ---- */

/* adopt wraps an opened store in a registry */
static int adopt(const rt_store_ops *ops, rt_store *st, rt_registry **out, char *err,
		 size_t errlen)
{
	rt_registry *reg = calloc(1, sizeof *reg);
	if (!reg) {
		ops->close(st);
		return rt_errf(err, errlen, -ENOMEM, "registry: out of memory");
	}
	reg->ops = ops;
	reg->st = st;
	reg->gen = ops->generation(st);
	*out = reg;
	return 0;
}

int rt_registry_open(const char *data_dir, rt_registry **out, char *err, size_t errlen)
{
	const rt_store_ops *ops;
	rt_store *st;
	*out = NULL;
	int rc = rt_store_sqlite_open(data_dir, &ops, &st, err, errlen);
	return rc < 0 ? rc : adopt(ops, st, out, err, errlen);
}

int rt_registry_open_url(const char *url, const char *data_dir, rt_registry **out, char *err,
			 size_t errlen)
{
	const rt_store_ops *ops;
	rt_store *st;
	int rc;
	*out = NULL;
	if (!url || !url[0] || !strcmp(url, "sqlite:")) {
		if (!data_dir)
			return rt_errf(err, errlen, -EINVAL, "registry: no data directory for sqlite:");
		return rt_registry_open(data_dir, out, err, errlen);
	}
	if (!strncmp(url, "sqlite:", 7)) {
		const char *path = url + 7;
		if (!strncmp(path, "//", 2))
			return rt_errf(err, errlen, -EINVAL, "registry: '%s': write sqlite:PATH (a file "
				       "path), not a URL with //", url);
		rc = rt_store_sqlite_open_file(path, &ops, &st, err, errlen);
	} else if (!strncmp(url, "postgresql://", 13) || !strncmp(url, "postgres://", 11)) {
		rc = rt_store_pg_open(url, &ops, &st, err, errlen);
	} else {
		char shown[256];
		rt_store_pg_redact(url, shown, sizeof shown);
		const char *colon = strchr(shown, ':');
		return rt_errf(err, errlen, -EINVAL, "registry: '%s': unknown %s (use sqlite:PATH or "
			       "postgresql://...)", shown, colon ? "scheme" : "registry (no scheme)");
	}
	return rc < 0 ? rc : adopt(ops, st, out, err, errlen);
}

const char *rt_registry_backend(rt_registry *reg)
{
	return reg->ops->name;
}

int rt_registry_shared(rt_registry *reg)
{
	return reg->ops->shared;
}

static void on_changed(void *ud, const char *name)
{
	rt_registry_invalidate(ud, name);
}

void rt_registry_tick(rt_registry *reg)
{
	if (!reg->ops->tick)
		return;
	reg->ops->tick(reg->st, on_changed, reg);
	/* keys dropped by a change elsewhere are read again now, not at the next request: a node
	 * keeps checking keys through an outage that begins right after */
	if (!reg->keys_loaded && rt_registry_available(reg))
		load_keys(reg);
}

int rt_registry_available(rt_registry *reg)
{
	return reg->ops->available ? reg->ops->available(reg->st, NULL, 0) : 1;
}

void rt_registry_unavailable_msg(rt_registry *reg, char *buf, size_t cap)
{
	char why[256] = "connection lost";
	if (reg->ops->available)
		reg->ops->available(reg->st, why, sizeof why);
	snprintf(buf, cap, "registry unavailable: %s: %s", reg->ops->name, why);
}

int rt_registry_secret(rt_registry *reg, const unsigned char *proposed, size_t len,
		       unsigned char *out)
{
	if (!reg->ops->secret)
		return -ENOSYS;
	return reg->ops->secret(reg->st, proposed, len, out);
}

void rt_registry_close(rt_registry *reg)
{
	if (!reg)
		return;
	drop_all(reg);
	free(reg->buckets);
	if (reg->st)
		reg->ops->close(reg->st);
	free(reg);
}


uint64_t rt_registry_statements(rt_registry *reg)
{
	return reg->ops->statements(reg->st);
}

/* ---- functions ---- */

int rt_registry_put_desc(rt_registry *reg, const char *name, const rt_manifest *m,
			 const char *snapshot_path, const rt_desc *desc, uint32_t *rev_out,
			 char *err, size_t errlen)
{
	rt_desc own;
	if (!desc) {
		char why[256];
		if (rt_desc_compute_path(snapshot_path, m->kind, &own, why, sizeof why) < 0)
			own.known = 0;   /* computed at the first read, where it can be */
		desc = &own;
	}
	sync(reg);
	uint64_t before = reg->ops->generation(reg->st);
	int rc = reg->ops->put(reg->st, name, m, snapshot_path, desc, rev_out, err, errlen);
	write_done(reg, before, name, 0, rc);
	return rc;
}

int rt_registry_put(rt_registry *reg, const char *name, const rt_manifest *m,
		    const char *snapshot_path, uint32_t *rev_out, char *err, size_t errlen)
{
	return rt_registry_put_desc(reg, name, m, snapshot_path, NULL, rev_out, err, errlen);
}

int rt_registry_set_traffic(rt_registry *reg, const char *name, const rt_traffic *t,
			    char *err, size_t errlen)
{
	sync(reg);
	uint64_t before = reg->ops->generation(reg->st);
	int rc = reg->ops->set_traffic(reg->st, name, t, err, errlen);
	write_done(reg, before, name, 0, rc);
	return rc;
}

int rt_registry_delete(rt_registry *reg, const char *name)
{
	sync(reg);
	uint64_t before = reg->ops->generation(reg->st);
	int rc = reg->ops->delete_fn(reg->st, name);
	write_done(reg, before, name, 0, rc);
	return rc;
}

int rt_registry_get_revision(rt_registry *reg, const char *name, uint32_t rev,
			     rt_revision_info *out)
{
	vfn *f;
	const rt_revision_info *ri;
	int rc = find_fn(reg, name, &f);
	if (rc < 0)
		return rc;
	if (rev == RT_MANIFEST_REV_LATEST)
		rev = f->latest;
	if (rev > f->latest)
		return -ENOENT;
	if ((rc = find_rev(reg, f, rev, &ri)) < 0)
		return rc;
	memcpy(out, ri, sizeof *out);
	return 0;
}

int rt_registry_get(rt_registry *reg, const char *name, rt_revision_info *out)
{
	return rt_registry_get_revision(reg, name, RT_MANIFEST_REV_LATEST, out);
}

int rt_registry_get_traffic(rt_registry *reg, const char *name, rt_traffic *t)
{
	vfn *f;
	int rc = find_fn(reg, name, &f);
	if (rc < 0)
		return rc;
	*t = f->traffic;
	return 0;
}

int rt_registry_pick_revision(rt_registry *reg, const char *name, uint64_t random_draw,
			      uint32_t *rev)
{
	vfn *f;
	int rc = find_fn(reg, name, &f);
	if (rc < 0)
		return rc;
	int point = (int)(random_draw % 100), acc = 0;
	for (int i = 0; i < f->traffic.n; i++) {   /* ascending revision order, "latest" first */
		acc += f->traffic.e[i].percent;
		if (point < acc) {
			uint32_t r = f->traffic.e[i].rev;
			*rev = r == RT_MANIFEST_REV_LATEST ? f->latest : r;
			return 0;
		}
	}
	*rev = f->latest;   /* no split stored (cannot happen through this API): the latest */
	return 0;
}

int rt_registry_get_json(rt_registry *reg, const char *name, json_t **out)
{
	return reg->ops->get_json(reg->st, name, out);
}

int rt_registry_list(rt_registry *reg, rt_registry_entry **out, size_t *n)
{
	return reg->ops->list(reg->st, out, n);
}

int rt_registry_list_json(rt_registry *reg, json_t **out)
{
	rt_registry_entry *v;
	size_t n;
	*out = NULL;
	int rc = rt_registry_list(reg, &v, &n);
	if (rc < 0)
		return rc;
	json_t *o = json_object(), *a = json_array();
	if (!o || !a) {
		json_decref(o);
		json_decref(a);
		free(v);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		json_t *f = json_pack("{s:s, s:s, s:I, s:o}", "name", v[i].name, "kind", v[i].kind,
				      "revision", (json_int_t)v[i].latest_rev, "updated",
				      rt_registry_time_json(v[i].updated_ms));
		if (!f) {
			rc = -ENOMEM;
			break;
		}
		json_array_append_new(a, f);
	}
	free(v);
	json_object_set_new(o, "functions", a);
	if (rc < 0) {
		json_decref(o);
		return rc;
	}
	*out = o;
	return 0;
}

/* ---- keys ---- */

int rt_registry_key_insert(rt_registry *reg, const char *id, const unsigned char *hash,
			   const char *scopes)
{
	rt_store_key k;
	memset(&k, 0, sizeof k);
	if (!id || !id[0] || strlen(id) > RT_REGISTRY_KEY_ID_MAX || !hash || !scopes ||
	    strlen(scopes) >= sizeof k.scopes)
		return -EINVAL;
	snprintf(k.id, sizeof k.id, "%s", id);
	memcpy(k.hash, hash, sizeof k.hash);
	snprintf(k.scopes, sizeof k.scopes, "%s", scopes);
	k.created_ms = rt_clock_wall_ms();
	sync(reg);
	uint64_t before = reg->ops->generation(reg->st);
	int rc = reg->ops->key_insert(reg->st, &k);
	write_done(reg, before, NULL, 1, rc);
	return rc;
}

int rt_registry_key_revoke(rt_registry *reg, const char *id)
{
	sync(reg);
	uint64_t before = reg->ops->generation(reg->st);
	int rc = reg->ops->key_revoke(reg->st, id, rt_clock_wall_ms());
	write_done(reg, before, NULL, 1, rc);
	return rc;
}

int rt_registry_key_find(rt_registry *reg, const char *id, unsigned char *hash, char *scopes)
{
	int rc = load_keys(reg);
	if (rc < 0)
		return rc == -ENOENT ? -EIO : rc;
	for (size_t i = 0; i < reg->nkeys; i++) {
		const rt_store_key *k = &reg->keys[i];
		if (k->revoked_ms == 0 && k->id[0] && strcmp(k->id, id) == 0) {
			memcpy(hash, k->hash, RT_REGISTRY_KEY_HASH_LEN);
			memcpy(scopes, k->scopes, RT_REGISTRY_KEY_SCOPES_MAX);
			return 0;
		}
	}
	return -ENOENT;
}

int rt_registry_key_list(rt_registry *reg, json_t **out)
{
	rt_store_key *v;
	size_t n;
	*out = NULL;
	int rc = reg->ops->key_all(reg->st, &v, &n);
	if (rc < 0)
		return rc;
	json_t *keys = json_array();
	for (size_t i = 0; keys && i < n; i++) {
		json_t *sc = json_array();
		char buf[RT_REGISTRY_KEY_SCOPES_MAX], *save = NULL;
		snprintf(buf, sizeof buf, "%s", v[i].scopes);
		for (char *t = strtok_r(buf, " ", &save); t; t = strtok_r(NULL, " ", &save))
			json_array_append_new(sc, json_string(t));
		json_array_append_new(keys, json_pack("{s:s, s:o, s:o, s:o}", "id", v[i].id, "scopes", sc,
						      "created", rt_registry_time_json(v[i].created_ms), "revoked",
						      v[i].revoked_ms ? rt_registry_time_json(v[i].revoked_ms)
								      : json_null()));
	}
	free(v);
	*out = keys ? json_pack("{s:o}", "keys", keys) : NULL;
	return *out ? 0 : -ENOMEM;
}

/* ---- the shared audit trail ---- */

int rt_registry_audit_add(rt_registry *reg, const char *line, size_t len)
{
	if (!reg->ops->audit_add)
		return -ENOSYS;
	if (!line || !len || len > RT_REGISTRY_AUDIT_LINE_MAX || memchr(line, 0, len))
		return -EINVAL;
	return reg->ops->audit_add(reg->st, line, len);
}

int rt_registry_audit_read(rt_registry *reg, size_t tail, void (*fn)(void *ud, const char *line),
			   void *ud)
{
	if (!reg->ops->audit_read)
		return -ENOSYS;
	return reg->ops->audit_read(reg->st, tail, fn, ud);
}

/* ---- cluster membership: straight to the store ---- */

/* node_id_ok: 1..RT_NODE_ID_MAX characters of [A-Za-z0-9._-] */
static int node_id_ok(const char *id)
{
	size_t n = id ? strlen(id) : 0;
	if (n < 1 || n > RT_NODE_ID_MAX)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = id[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return 0;
	}
	return 1;
}

int rt_registry_node_beat(rt_registry *reg, const char *id, const char *advertise,
			  const char *state, int64_t lease_ms, int fresh, int notify)
{
	if (!node_id_ok(id) || lease_ms <= 0 || (advertise && strlen(advertise) >= RT_NODE_URL_MAX) ||
	    (state && strlen(state) > RT_NODE_STATE_MAX))
		return -EINVAL;
	if (!reg->ops->node_beat)
		return -ENOSYS;
	return reg->ops->node_beat(reg->st, id, advertise ? advertise : "", state, lease_ms,
				   fresh != 0, notify != 0);
}

int rt_registry_node_list(rt_registry *reg, rt_node_row **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	if (!reg->ops->node_list)
		return -ENOSYS;
	return reg->ops->node_list(reg->st, out, n);
}

void rt_registry_node_rows_free(rt_node_row *rows, size_t n)
{
	for (size_t i = 0; rows && i < n; i++)
		free(rows[i].state);
	free(rows);
}

int rt_registry_node_leave(rt_registry *reg, const char *id)
{
	if (!node_id_ok(id))
		return -EINVAL;
	if (!reg->ops->node_leave)
		return -ENOSYS;
	return reg->ops->node_leave(reg->st, id);
}

uint64_t rt_registry_nodes_generation(rt_registry *reg)
{
	return reg->ops->nodes_generation ? reg->ops->nodes_generation(reg->st) : 0;
}

/* ---- jobs: straight to the store (not on any hot path) ---- */

const char *const rt_job_state_names[RT_JOB_STATES] = {
	[RT_JOB_QUEUED] = "queued", [RT_JOB_RUNNING] = "running", [RT_JOB_PREEMPTED] = "preempted",
	[RT_JOB_SUCCEEDED] = "succeeded", [RT_JOB_FAILED] = "failed", [RT_JOB_CANCELLED] = "cancelled",
};

void rt_job_row_clear(rt_job_row *r)
{
	json_decref(r->params);
	json_decref(r->schedule);
	json_decref(r->metrics);
	r->params = r->schedule = r->metrics = NULL;
}

int rt_jobstore_insert(rt_registry *reg, const rt_job_row *r, int64_t *id)
{
	return reg->ops->job_insert(reg->st, r, id);
}

int rt_jobstore_get(rt_registry *reg, int64_t id, rt_job_row *r)
{
	return reg->ops->job_get(reg->st, id, r);
}

int rt_jobstore_save(rt_registry *reg, const rt_job_row *r)
{
	return reg->ops->job_save(reg->st, r);
}

int rt_jobstore_ids(rt_registry *reg, int state, int64_t **ids, size_t *n)
{
	return reg->ops->job_ids(reg->st, state, ids, n);
}

int rt_jobstore_candidates(rt_registry *reg, int64_t *ids, size_t cap, size_t *n)
{
	return reg->ops->job_candidates(reg->st, ids, cap, n);
}

int rt_jobstore_counts(rt_registry *reg, int64_t *counts)
{
	return reg->ops->job_counts(reg->st, counts);
}

int rt_jobstore_recover(rt_registry *reg, const char *node, int *n)
{
	return reg->ops->job_recover(reg->st, node, n);
}

int rt_jobstore_claim(rt_registry *reg, int64_t id, const char *node, int64_t lease_ms)
{
	return reg->ops->job_claim(reg->st, id, node, lease_ms);
}

int rt_jobstore_renew(rt_registry *reg, const char *node, int64_t lease_ms, int *n)
{
	return reg->ops->job_renew(reg->st, node, lease_ms, n);
}

int rt_jobstore_save_owned(rt_registry *reg, const rt_job_row *r, const char *node)
{
	return reg->ops->job_save_owned(reg->st, r, node);
}


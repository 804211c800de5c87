/* rt_store_rows.c — the database-independent part of the registry stores: write checks and
 * column texts, result rows to structs, the GET /v1/functions/{name} body. See
 * rt_store_rows.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "runtime/base/rt_log.h"
#include "runtime/store/rt_store_rows.h"

/* ---- writes ---- */

int rt_store_traffic_ok(const rt_traffic *t, char *err, size_t errlen)
{
	if (t->n < 1 || t->n > RT_MANIFEST_TRAFFIC_MAX)
		return rt_errf(err, errlen, -EINVAL, "field 'traffic': must name 1..%d revisions",
			       RT_MANIFEST_TRAFFIC_MAX);
	int sum = 0;
	for (int i = 0; i < t->n; i++) {
		if (t->e[i].percent < 0 || t->e[i].percent > 100 || t->e[i].rev > RT_MANIFEST_REV_MAX)
			return rt_errf(err, errlen, -EINVAL, "field 'traffic': bad entry %d", i);
		for (int j = 0; j < i; j++)
			if (t->e[j].rev == t->e[i].rev)
				return rt_errf(err, errlen, -EINVAL, "field 'traffic': revision %u twice",
					       t->e[i].rev);
		sum += t->e[i].percent;
	}
	if (sum != 100)
		return rt_errf(err, errlen, -EINVAL, "field 'traffic': percents must sum to 100 (got %d)",
			       sum);
	return 0;
}

char *rt_store_desc_text(const rt_desc *d)
{
	json_t *dj = rt_desc_to_json(d);
	char *dtext = dj ? json_dumps(dj, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(dj);
	return dtext;
}

int rt_store_put_texts(const char *name, const rt_manifest *m, const rt_desc *desc, char **text,
		       char **dtext, char *err, size_t errlen)
{
	int rc;
	*text = *dtext = NULL;
	if ((rc = rt_manifest_name_valid(name, err, errlen)) < 0)
		return rc;
	if (m->traffic.n > 0 && (rc = rt_store_traffic_ok(&m->traffic, err, errlen)) < 0)
		return rc;
	json_t *mj = rt_manifest_to_json(m, 0);
	char *t = mj ? json_dumps(mj, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(mj);
	char *d = desc && desc->known ? rt_store_desc_text(desc) : NULL;
	if (!t || (desc && desc->known && !d)) {
		free(t);
		free(d);
		return rt_errf(err, errlen, -ENOMEM, "out of memory");
	}
	*text = t;
	*dtext = d;
	return 0;
}

const rt_traffic *rt_store_put_split(const rt_manifest *m)
{
	static const rt_traffic all_latest = {
		.n = 1, .e = {{.rev = RT_MANIFEST_REV_LATEST, .percent = 100}}};
	return m->traffic.n > 0 ? &m->traffic : &all_latest;
}

int rt_store_no_revision(const char *name, uint32_t rev, uint32_t latest, char *err,
			 size_t errlen)
{
	return rt_errf(err, errlen, -ENOENT, "field 'traffic': function '%s' has no revision %u "
		       "(latest is %u)", name, rev, latest);
}

int rt_store_job_texts(const rt_job_row *r, char **params, char **schedule)
{
	*params = r->params ? json_dumps(r->params, JSON_COMPACT | JSON_SORT_KEYS) : strdup("{}");
	*schedule = r->schedule ? json_dumps(r->schedule, JSON_COMPACT | JSON_ENCODE_ANY)
				: strdup("\"now\"");
	return *params && *schedule ? 0 : -ENOMEM;
}

int rt_store_job_metrics(const rt_job_row *r, char **metrics)
{
	*metrics = NULL;
	if (r->state < 0 || r->state >= RT_JOB_STATES)
		return -EINVAL;
	*metrics = r->metrics ? json_dumps(r->metrics, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
	return 0;
}

int rt_store_node_ok(const char *node, int empty_ok)
{
	return node && (node[0] || empty_ok) && strlen(node) <= RT_NODE_ID_MAX;
}

/* ---- rows to structs ---- */

/* col_text copies text column c to dst ("" for SQL NULL) */
static void col_text(const rt_store_row *row, int c, char *dst, size_t cap)
{
	const char *t = row->ops->text(row, c);
	snprintf(dst, cap, "%s", t ? t : "");
}

/* col_json decodes JSON column c (any value); JSON null for SQL NULL or a bad text */
static json_t *col_json(const rt_store_row *row, int c)
{
	const char *t = row->ops->text(row, c);
	json_t *v = t ? json_loads(t, JSON_DECODE_ANY, NULL) : NULL;
	return v ? v : json_null();
}

int rt_store_job_state(const char *name)
{
	for (int i = 0; i < RT_JOB_STATES; i++)
		if (name && !strcmp(name, rt_job_state_names[i]))
			return i;
	return -1;
}

int rt_store_rev_from_row(const rt_store_row *row, const char *name, rt_revision_info *out)
{
	char err[256];
	memset(out, 0, sizeof *out);
	snprintf(out->name, sizeof out->name, "%s", name);
	out->rev = (uint32_t)row->ops->i64(row, 0);
	const char *mtext = row->ops->text(row, 1);
	out->created_ms = row->ops->i64(row, 3);
	if (!mtext || rt_manifest_parse(mtext, strlen(mtext), NULL, NULL, &out->manifest, err,
					sizeof err) < 0) {
		rt_logf(RT_LOG_ERROR, "registry: function '%s' revision %u: stored manifest unreadable: %s",
			name, out->rev, mtext ? err : "NULL");
		return -EIO;
	}
	col_text(row, 2, out->snapshot_path, sizeof out->snapshot_path);
	const char *dtext = row->ops->text(row, 4);
	json_t *dj = dtext ? json_loads(dtext, 0, NULL) : NULL;
	if (dj && rt_desc_from_json(dj, &out->desc) < 0)
		rt_logf(RT_LOG_WARN, "registry: function '%s' revision %u: stored descriptor unreadable; "
			"computing it again", name, out->rev);
	json_decref(dj);
	return 0;
}

int rt_store_fill_entry(const rt_store_row *row, void *entry)
{
	rt_registry_entry *e = entry;
	col_text(row, 0, e->name, sizeof e->name);
	col_text(row, 1, e->kind, sizeof e->kind);
	e->latest_rev = (uint32_t)row->ops->i64(row, 2);
	e->updated_ms = row->ops->i64(row, 3);
	return 0;
}

int rt_store_fill_node(const rt_store_row *row, void *entry)
{
	rt_node_row *e = entry;
	col_text(row, 0, e->id, sizeof e->id);
	col_text(row, 1, e->advertise, sizeof e->advertise);
	e->started_ms = row->ops->i64(row, 2);
	e->beat_ms = row->ops->i64(row, 3);
	e->lease_left_ms = row->ops->i64(row, 4);
	const char *st = row->ops->text(row, 5);
	e->state = NULL;
	if (st && !(e->state = strdup(st)))
		return -ENOMEM;
	return 0;
}

int rt_store_fill_id(const rt_store_row *row, void *entry)
{
	*(int64_t *)entry = row->ops->i64(row, 0);
	return 0;
}

void rt_store_key_from_row(const rt_store_row *row, const unsigned char *hash, rt_store_key *e)
{
	col_text(row, 0, e->id, sizeof e->id);
	if (hash)
		memcpy(e->hash, hash, RT_REGISTRY_KEY_HASH_LEN);
	else
		e->id[0] = 0;   /* a damaged row matches no key */
	col_text(row, 2, e->scopes, sizeof e->scopes);
	e->created_ms = row->ops->i64(row, 3);
	int revoked = !row->ops->is_null(row, 4);
	e->revoked_ms = revoked ? row->ops->i64(row, 4) : 0;
	if (revoked && e->revoked_ms == 0)
		e->revoked_ms = 1;
}

void rt_store_job_from_row(const rt_store_row *row, rt_job_row *r)
{
	const rt_store_row_ops *o = row->ops;
	r->id = o->i64(row, 0);
	col_text(row, 1, r->type, sizeof r->type);
	col_text(row, 2, r->function, sizeof r->function);
	r->revision = (uint32_t)o->i64(row, 3);
	col_text(row, 4, r->snapshot, sizeof r->snapshot);
	r->params = col_json(row, 5);
	r->schedule = col_json(row, 6);
	r->priority = (int)o->i64(row, 7);
	col_text(row, 8, r->device, sizeof r->device);
	r->state = rt_store_job_state(o->text(row, 9));
	r->progress = o->f64(row, 10);
	r->step = o->i64(row, 11);
	r->metrics = col_json(row, 12);
	r->preemptions = o->i64(row, 13);
	r->created_ms = o->i64(row, 14);
	r->started_ms = o->i64(row, 15);
	r->finished_ms = o->i64(row, 16);
	r->updated_ms = o->i64(row, 17);
	col_text(row, 18, r->error, sizeof r->error);
	col_text(row, 19, r->result_snapshot, sizeof r->result_snapshot);
	r->result_revision = (uint32_t)o->i64(row, 20);
	col_text(row, 21, r->checkpoint, sizeof r->checkpoint);
	col_text(row, 22, r->owner, sizeof r->owner);
	r->lease_until_ms = o->i64(row, 23);
}

/* ---- GET /v1/functions/{name} ---- */

int rt_store_fn_json_init(rt_store_fn_json *b, const char *name)
{
	memset(b, 0, sizeof *b);
	b->name = name;
	b->ri = malloc(sizeof *b->ri);
	return b->ri ? 0 : -ENOMEM;
}

int rt_store_fn_json_head(rt_store_fn_json *b, const rt_store_row *row)
{
	b->latest = (uint32_t)row->ops->i64(row, 2);
	b->o = json_object();
	b->revs = json_array();
	if (!b->o || !b->revs)
		return -ENOMEM;
	json_object_set_new(b->o, "name", json_string(b->name));
	json_object_set_new(b->o, "kind", json_string(row->ops->text(row, 1)));
	json_object_set_new(b->o, "revision", json_integer(b->latest));
	json_object_set_new(b->o, "created", rt_registry_time_json(row->ops->i64(row, 3)));
	json_object_set_new(b->o, "updated", rt_registry_time_json(row->ops->i64(row, 4)));
	return 0;
}

/* snapshot_json: the resolved snapshot path, null when there is none */
static json_t *snapshot_json(const rt_revision_info *ri)
{
	return ri->snapshot_path[0] ? json_string(ri->snapshot_path) : json_null();
}

int rt_store_fn_json_rev(rt_store_fn_json *b, const rt_store_row *row)
{
	const rt_revision_info *ri = b->ri;
	int rc = rt_store_rev_from_row(row, b->name, b->ri);
	if (rc < 0)
		return rc;
	b->total++;
	/* the newest RT_REGISTRY_LIST_REVS and those taking traffic: a function deployed
	 * thousands of times keeps a small answer */
	int keep = ri->rev + RT_REGISTRY_LIST_REVS > b->latest;
	for (int k = 0; k < b->traffic.n && !keep; k++)
		keep = b->traffic.e[k].rev == ri->rev;
	if (!keep)
		return 0;
	json_t *e = json_object();
	if (!e)
		return -ENOMEM;
	json_object_set_new(e, "revision", json_integer(ri->rev));
	json_object_set_new(e, "created", rt_registry_time_json(ri->created_ms));
	json_object_set_new(e, "snapshot_path", snapshot_json(ri));
	json_object_set_new(e, "settings", rt_manifest_to_json(&ri->manifest, 0));
	json_array_append_new(b->revs, e);
	if (ri->rev == b->latest) {
		json_object_set_new(b->o, "settings", rt_manifest_to_json(&ri->manifest, 0));
		json_object_set_new(b->o, "snapshot_path", snapshot_json(ri));
	}
	return 0;
}

json_t *rt_store_fn_json_done(rt_store_fn_json *b)
{
	json_t *o = b->o;
	json_object_set_new(o, "revisions", b->revs);
	json_object_set_new(o, "revisions_total", json_integer(b->total));
	json_object_set_new(o, "traffic", rt_traffic_to_json(&b->traffic));
	b->o = b->revs = NULL;
	rt_store_fn_json_clear(b);
	return o;
}

void rt_store_fn_json_clear(rt_store_fn_json *b)
{
	json_decref(b->o);
	json_decref(b->revs);
	free(b->ri);
	b->o = b->revs = NULL;
	b->ri = NULL;
}

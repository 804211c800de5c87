/* snap_pack.c — `thaw snapshot pack`: safetensors source -> snap_writer, through the optional
 * transform hook, with the model metadata (kind, config.json, provenance, dtype summary, extra
 * keys) built here. The metadata holds no time stamps or absolute paths, so the same input
 * gives the same bytes. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <jansson.h>
#include <xxhash.h>
#include "snapshot/snap_int.h"
#include "snapshot/snap_pack.h"
#include "snapshot/snap_st.h"

struct snap_pack_ctx {
	snap_writer *w;
	const char *config;        /* the source's config.json text, or NULL */
	json_t *extra;             /* keys set by hooks or opts */
};

static const char *reserved_keys[] = {"kind", "format", "config", "provenance", "dtypes"};

int snap_pack_emit(snap_pack_ctx *ctx, const char *name, snap_dtype dt, uint32_t ndim,
		   const uint64_t *shape, const void *data, uint64_t nbytes, char *err, size_t errlen)
{
	return snap_writer_add(ctx->w, name, dt, ndim, shape, data, nbytes, 1, err, errlen);
}

const char *snap_pack_config_json(const snap_pack_ctx *ctx) { return ctx->config; }

int snap_pack_set_metadata(snap_pack_ctx *ctx, const char *key, const char *json_value)
{
	json_error_t je;
	if (!key || !*key)
		return -EINVAL;
	for (size_t i = 0; i < sizeof reserved_keys / sizeof *reserved_keys; i++)
		if (strcmp(key, reserved_keys[i]) == 0)
			return -EINVAL;
	json_t *v = json_loads(json_value, JSON_DECODE_ANY, &je);
	if (!v)
		return -EINVAL;
	return json_object_set_new(ctx->extra, key, v) ? -ENOMEM : 0;
}

static char *hex64(uint64_t v, char buf[17])
{
	snprintf(buf, 17, "%016" PRIx64, v);
	return buf;
}

/* pack_run packs the tensors of src into out_path; sources is the provenance's "sources"
 * array (stolen), prov_extra (borrowed, may be NULL) more provenance keys. */
static int pack_run(const snap_pack_source *src, json_t *sources, json_t *prov_extra,
		    const char *out_path, const snap_pack_opts *o, snap_pack_stats *st, char *err,
		    size_t errlen)
{
	snap_pack_opts def = {0};
	snap_writer *w = NULL;
	json_t *meta = NULL, *config = NULL;
	char *meta_text = NULL, *dsum = NULL;
	uint64_t src_bytes = 0;
	int rc;
	snap_pack_ctx ctx = {0};

	if (!o)
		o = &def;
	if ((rc = snap_writer_open(&w, out_path, &o->w, err, errlen)))
		goto out;
	ctx.w = w;
	ctx.config = src->config;
	ctx.extra = json_object();
	if (!ctx.extra) {
		rc = snap_errf(err, errlen, -ENOMEM, "out of memory");
		goto out;
	}
	if (o->extra_metadata) {
		json_error_t je;
		json_t *x = json_loads(o->extra_metadata, 0, &je);
		if (!json_is_object(x)) {
			json_decref(x);
			rc = snap_errf(err, errlen, -EINVAL, "extra metadata is not a JSON object");
			goto out;
		}
		const char *k;
		json_t *v;
		json_object_foreach(x, k, v) {
			char *vt = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
			rc = vt ? snap_pack_set_metadata(&ctx, k, vt) : -ENOMEM;
			free(vt);
			if (rc) {
				rc = snap_errf(err, errlen, rc, "extra metadata key %s: reserved or invalid", k);
				json_decref(x);
				goto out;
			}
		}
		json_decref(x);
	}

	/* the transform runs here on the calling thread, tensor by tensor: its own phase */
	const char *tphase = o->transform_phase ? o->transform_phase : "transforming";
	uint64_t src_total = 0;
	for (size_t i = 0; i < src->n; i++)
		src_total += src->t[i].nbytes;
	for (size_t i = 0; i < src->n; i++) {
		const snap_src_tensor *t = &src->t[i];
		src_bytes += t->nbytes;
		if (o->transform && o->w.progress && i == 0)
			o->w.progress(o->w.progress_user, tphase, 0, src_total);
		if (o->transform) {
			char msg[400] = "";
			rc = o->transform(o->transform_user, t, &ctx, msg, sizeof msg);
			if (rc < 0) {
				rc = snap_errf(err, errlen, rc, "transform of tensor %s failed: %s", t->name,
					       msg[0] ? msg : strerror(-rc));
				goto out;
			}
			if (o->w.progress)
				o->w.progress(o->w.progress_user, tphase, src_bytes, src_total);
			if (rc == 0)
				continue;
		}
		if ((rc = snap_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data, t->nbytes, 0, err, errlen)))
			goto out;
	}
	if (src->src_bytes)
		src_bytes = src->src_bytes;

	/* metadata */
	meta = json_object();
	json_t *prov = json_object();
	if (!meta || !prov || !sources) {
		json_decref(prov);
		rc = snap_errf(err, errlen, -ENOMEM, "out of memory");
		goto out;
	}
	if (src->config)
		config = json_loads(src->config, 0, NULL);
	json_object_set_new(meta, "format", json_string("thaw-snapshot"));
	const char *kind = o->kind;
	if (!kind && o->kind_of)
		kind = o->kind_of(src->config, o->kind_user);
	json_object_set_new(meta, "kind", json_string(kind ? kind : "unknown"));
	json_object_set_new(meta, "config", config ? json_incref(config) : json_null());
	if (src->config) {
		char hx[17];
		json_object_set_new(prov, "config_xxh3", json_string(hex64(XXH3_64bits(src->config, strlen(src->config)), hx)));
	}
	json_object_set_new(prov, "sources", sources);
	sources = NULL;
	json_object_set_new(prov, "source_tensors", json_integer((json_int_t)(src->n_src ? src->n_src : src->n)));
	json_object_set_new(prov, "source_bytes", json_integer((json_int_t)src_bytes));
	json_object_set_new(prov, "tool", json_pack("s++", "thaw-snapshot ", SNAP_VERSION_STR, ""));
	if (prov_extra)
		json_object_update(prov, prov_extra);
	json_object_set_new(meta, "provenance", prov);
	dsum = snap_writer_dtype_summary(w);
	json_object_set_new(meta, "dtypes", dsum ? json_loads(dsum, 0, NULL) : json_object());
	json_object_update(meta, ctx.extra);
	meta_text = json_dumps(meta, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (!meta_text) {
		rc = snap_errf(err, errlen, -ENOMEM, "out of memory");
		goto out;
	}
	rc = snap_writer_finish(w, meta_text, st, err, errlen);
	w = NULL;
	if (!rc && st)
		st->src_bytes = src_bytes;
out:
	snap_writer_abort(w);
	json_decref(sources);
	json_decref(ctx.extra);
	json_decref(meta);
	json_decref(config);
	free(meta_text);
	free(dsum);
	return rc;
}

int snap_pack_from(const snap_pack_source *src, const char *out_path, const snap_pack_opts *o,
		   snap_pack_stats *st, char *err, size_t errlen)
{
	json_error_t je;
	json_t *sources = src->sources_json ? json_loads(src->sources_json, 0, &je) : json_array();
	json_t *pe = src->provenance_json ? json_loads(src->provenance_json, 0, &je) : NULL;
	if (!json_is_array(sources) || (src->provenance_json && !json_is_object(pe))) {
		json_decref(sources);
		json_decref(pe);
		return snap_errf(err, errlen, -EINVAL, "pack source: sources must be a JSON array and provenance a JSON object");
	}
	int rc = pack_run(src, sources, pe, out_path, o, st, err, errlen);
	json_decref(pe);
	return rc;
}

int snap_pack(const char *src, const char *out_path, const snap_pack_opts *o,
	      snap_pack_stats *st, char *err, size_t errlen)
{
	snap_st *s = NULL;
	snap_src_tensor *ts = NULL;
	json_t *files = NULL, *pe = NULL;
	int rc;
	if ((rc = snap_st_open(&s, src, err, errlen)))
		return rc;
	ts = calloc(s->n ? s->n : 1, sizeof *ts);
	files = json_array();
	pe = json_object();
	if (!ts || !files || !pe) {
		rc = snap_errf(err, errlen, -ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < s->n; i++) {
		const snap_st_tensor *t = &s->t[i];
		ts[i] = (snap_src_tensor){t->name, t->dtype, t->ndim, t->shape, snap_st_data(s, i), t->end - t->begin};
	}
	for (size_t f = 0; f < s->n_files; f++) {
		char hx[17];
		uint64_t hsh = s->files[f].map ? XXH3_64bits(s->files[f].map, s->files[f].size) : XXH3_64bits("", 0);
		json_array_append_new(files, json_pack("{s:s,s:I,s:s}", "file", s->files[f].base,
						       "bytes", (json_int_t)s->files[f].size, "xxh3", hex64(hsh, hx)));
	}
	if (s->st_metadata)
		json_object_set_new(pe, "safetensors_metadata", json_loads(s->st_metadata, 0, NULL));
	snap_pack_source ps = {.n = s->n, .t = ts, .config = s->config};
	rc = pack_run(&ps, files, pe, out_path, o, st, err, errlen);
	files = NULL;
out:
	json_decref(files);
	json_decref(pe);
	free(ts);
	snap_st_close(s);
	return rc;
}

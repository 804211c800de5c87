/* rt_api_fn.c — the functions API: PUT/GET/DELETE /v1/functions/{name}, GET /v1/functions,
 * POST /v1/functions/{name}/invoke, GET /v1/devices. The registry holds what is deployed; the
 * scheduler holds the live state and runs calls. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "functions/fn.h"
#include "runtime/api/rt_api.h"
#include "runtime/base/rt_json.h"
#include "runtime/store/rt_manifest.h"
#include "runtime/store/rt_registry.h"
#include "runtime/sched/rt_sched.h"
#include "snapshot/snap.h"

static int valid_name(rt_req *req, const char *name)
{
	char err[256];
	if (rt_manifest_name_valid(name, err, sizeof err) == 0)
		return 1;
	rt_req_reply_error(req, 400, "%s", err);
	return 0;
}

static json_t *function_json(rt_api *api, const char *name)
{
	json_t *o = NULL;
	if (rt_registry_get_json(api->reg, name, &o) < 0)
		return NULL;
	json_t *st = rt_sched_state_json(api->sched, name);
	json_object_update(o, st);
	json_decref(st);
	return o;
}

static void put_parsed(rt_req *req, json_t *body, void *ud);

static void h_put(rt_req *req, void *ud)
{
	if (!valid_name(req, rt_req_param(req, "name")))
		return;
	rt_api_parse_body_then(ud, req, put_parsed, ud);
}

static void put_parsed(rt_req *req, json_t *body, void *ud)
{
	rt_api *api = ud;
	const char *name = rt_req_param(req, "name");
	char err[512] = "";
	if (!json_is_object(body)) {
		json_decref(body);
		rt_req_reply_error(req, 400, "manifest must be a JSON object");
		return;
	}
	/* a body with only "traffic" moves traffic between existing revisions */
	if (json_object_size(body) == 1 && json_object_get(body, "traffic")) {
		rt_traffic t;
		rt_revision_info cur;
		int grc = rt_registry_get(api->reg, name, &cur);
		if (grc < 0) {
			json_decref(body);
			if (!rt_api_registry_down(api, req, grc))
				rt_req_reply_error(req, 404, "function '%s' not found", name);
			return;
		}
		/* an unknown revision in the split is a bad request (400), as in a full manifest */
		int rc = rt_traffic_from_json(json_object_get(body, "traffic"), &t, err, sizeof err);
		if (rc == 0)
			rc = rt_registry_set_traffic(api->reg, name, &t, err, sizeof err);
		json_decref(body);
		if (rc < 0) {
			if (!rt_api_registry_down(api, req, rc))
				rt_req_reply_error(req, 400, "%s", err);
			return;
		}
		rt_sched_deployed(api->sched, name);
		rt_api_reply_json(req, 200, function_json(api, name));
		return;
	}
	rt_manifest m;
	int rc = rt_manifest_from_json(body, rt_api_kind_known, NULL, &m, err, sizeof err);
	json_decref(body);
	if (rc < 0) {
		rt_req_reply_error(req, 400, "%s", err);
		return;
	}
	const char *plugin = rt_manifest_plugin_path(m.kind);
	if (plugin) {
		/* "plugin:/path.so": under a plugin root, a loadable kind of this ABI; stored with
		 * its real path */
		char real[RT_MANIFEST_PATH_MAX];
		rc = rt_manifest_resolve_plugin(api->plugin_roots, api->n_plugin_roots, plugin,
						real, sizeof real, err, sizeof err);
		if (rc < 0) {
			rt_req_reply_error(req, rc == -EACCES ? 403 : 400, "field 'kind': %s", err);
			return;
		}
		rc = fn_kind_load_so(real, NULL, err, sizeof err);
		if (rc < 0) {
			rt_req_reply_error(req, rc == -EEXIST ? 409 : 400, "field 'kind': %s", err);
			return;
		}
		snprintf(m.kind, sizeof m.kind, "%s%s", RT_MANIFEST_PLUGIN_PREFIX, real);
	}
	char path[RT_MANIFEST_PATH_MAX] = "";
	snap_file *f = NULL;
	if (m.snapshot[0]) {
		rc = rt_manifest_resolve_snapshot(api->data_dir, api->allowed_roots,
						  api->n_allowed_roots, m.snapshot, path, sizeof path,
						  err, sizeof err);
		if (rc < 0) {
			rt_req_reply_error(req, rc == -EACCES ? 403 : 400, "%s", err);
			return;
		}
		/* the file must be a valid snapshot (header, index, metadata) */
		rc = snap_open(&f, path, err, sizeof err);
		if (rc < 0) {
			snap_close(f);
			rt_req_reply_error(req, 400, "field 'snapshot': %s", err);
			return;
		}
		/* no "kind": the one the snapshot records, when it is a built-in kind (a snapshot
		 * never names a shared object to load) */
		if (!m.kind[0]) {
			const char *sk = snap_kind(f);
			int ok = sk && sk[0] && strlen(sk) <= RT_MANIFEST_KIND_NAME_MAX &&
				 !rt_manifest_plugin_path(sk) && rt_api_kind_known(sk, NULL);
			if (!ok) {
				rt_req_reply_error(req, 400, "field 'kind': required: snapshot '%.256s' "
						   "records kind '%.63s', which is not a function kind of "
						   "this server", m.snapshot, sk ? sk : "");
				snap_close(f);
				return;
			}
			snprintf(m.kind, sizeof m.kind, "%s", sk);
		}
	}
	/* the revision's descriptor, from this one open of the snapshot */
	rt_desc desc;
	rc = rt_desc_compute(f, m.kind, &desc, err, sizeof err);
	snap_close(f);
	if (rc == -ENOMEM) {
		rt_req_reply_error(req, 500, "out of memory");
		return;
	}   /* else known == 0: left to the first read */
	rt_revision_info prev;
	int existed = rt_registry_get(api->reg, name, &prev) == 0;
	uint32_t rev = 0;
	rc = rt_registry_put_desc(api->reg, name, &m, path, &desc, &rev, err, sizeof err);
	if (rc < 0) {
		if (!rt_api_registry_down(api, req, rc))
			rt_req_reply_error(req, rc == -ENOENT ? 400 : 500, "%s", err);
		return;
	}
	rt_api_note_function(api, name, &m);
	rt_sched_deployed(api->sched, name);
	rt_api_reply_json(req, existed ? 200 : 201, function_json(api, name));
}

static void h_get(rt_req *req, void *ud)
{
	rt_api *api = ud;
	const char *name = rt_req_param(req, "name");
	if (!valid_name(req, name))
		return;
	json_t *o = function_json(api, name);
	if (!o) {
		if (rt_registry_available(api->reg) || !rt_api_registry_down(api, req, -ENOTCONN))
			rt_req_reply_error(req, 404, "function '%s' not found", name);
		return;
	}
	rt_api_reply_json(req, 200, o);
}

static void h_list(rt_req *req, void *ud)
{
	rt_api *api = ud;
	json_t *o = NULL;
	int lrc = rt_registry_list_json(api->reg, &o);
	if (lrc < 0) {
		if (!rt_api_registry_down(api, req, lrc))
			rt_req_reply_error(req, 500, "registry unavailable");
		return;
	}
	json_t *arr = json_object_get(o, "functions");
	size_t i;
	json_t *f;
	json_array_foreach(arr, i, f) {
		const char *fname = json_string_value(json_object_get(f, "name"));
		rt_traffic t;   /* the revisions that serve, next to the latest */
		if (fname && rt_registry_get_traffic(api->reg, fname, &t) == 0)
			json_object_set_new(f, "traffic", rt_traffic_to_json(&t));
		json_t *st = rt_sched_state_json(api->sched, fname);
		json_object_del(st, "instances");
		json_object_update(f, st);
		json_decref(st);
	}
	rt_api_reply_json(req, 200, o);
}

static void h_delete(rt_req *req, void *ud)
{
	rt_api *api = ud;
	const char *name = rt_req_param(req, "name");
	if (!valid_name(req, name))
		return;
	int rc = rt_registry_delete(api->reg, name);
	if (rc == -ENOENT) {
		rt_req_reply_error(req, 404, "function '%s' not found", name);
		return;
	}
	if (rc < 0) {
		if (!rt_api_registry_down(api, req, rc))
			rt_req_reply_error(req, 500, "registry: %s", strerror(-rc));
		return;
	}
	rt_sched_deleted(api->sched, name);
	rt_api_note_function(api, name, NULL);
	rt_api_reply_json(req, 200, json_pack("{s:s}", "deleted", name));
}

typedef struct dump_job {
	rt_req *req;
	json_t *out;
	char *text;
} dump_job;

static void dump_work(void *arg)
{
	dump_job *d = arg;
	d->text = rt_json_dumps(d->out, 0);
}

static void dump_done(void *arg, int gone)
{
	dump_job *d = arg;
	if (!gone && !d->text)
		rt_req_reply_error(d->req, 500, "out of memory");
	else if (d->text)
		rt_req_reply_take(d->req, 200, "application/json", d->text, strlen(d->text));
	else
		rt_req_reply(d->req, 200, "application/json", "", 0);
	d->text = NULL;   /* rt_req_reply_take owns it */
	json_decref(d->out);
	free(d);
}

/* a call of POST /v1/functions/{name}/invoke and its request */
typedef struct invoke_job {
	rt_api *api;
	rt_req *req;
} invoke_job;

static void invoke_result(const rt_call_result *res, void *ud)
{
	invoke_job *ij = ud;
	rt_api *api = ij->api;
	rt_req *req = ij->req;
	free(ij);
	json_t *out = res->out;
	char r[16];
	snprintf(r, sizeof r, "%u", res->rev);
	rt_api_result_headers(req, res);
	rt_req_add_header(req, "Thaw-Revision", r);
	if (api->cluster)
		rt_req_add_header(req, "Thaw-Node", rt_cluster_node_id(api->cluster));
	if (!out) {
		rt_req_reply_error(req, res->err->status, "%s", res->err->msg);
		return;
	}
	/* the answer of a large request is serialized off the loop (out is borrowed: the job
	 * holds its own reference; jansson's reference counts are atomic) */
	dump_job *d = calloc(1, sizeof *d);
	if (!d) {
		rt_req_reply_error(req, 500, "out of memory");
		return;
	}
	d->req = req;
	d->out = json_incref(out);
	rt_api_offload(api, req, req->body_len >= RT_API_INLINE_BYTES, dump_work, dump_done, d);
}

/* echo without a deployment: the built-in that measures the runtime's own overhead; the body
 * is checked to be JSON (within the bounded-JSON budget) and sent back as it came */
typedef struct echo_job {
	rt_req *req;
	int status;
	char err[512];
} echo_job;

static void echo_work(void *arg)
{
	echo_job *e = arg;
	json_t *v = rt_json_load(e->req->body, e->req->body_len, JSON_DECODE_ANY,
				 rt_json_budget(e->req->body_len), &e->status, e->err, sizeof e->err);
	if (v)
		e->status = 200;
	json_decref(v);
}

static void echo_done(void *arg, int gone)
{
	echo_job *e = arg;
	if (gone)
		rt_req_reply_error(e->req, 499, "the client closed the request");
	else if (e->status != 200)
		rt_req_reply_error(e->req, e->status, "%s", e->err);
	else
		rt_req_reply(e->req, 200, "application/json", e->req->body, e->req->body_len);
	free(e);
}

static void invoke_builtin_echo(rt_api *api, rt_req *req)
{
	echo_job *e = calloc(1, sizeof *e);
	if (!e) {
		rt_req_reply_error(req, 500, "out of memory");
		return;
	}
	e->req = req;
	rt_api_offload(api, req, req->body_len >= RT_API_INLINE_BYTES, echo_work, echo_done, e);
}

static void invoke_parsed(rt_req *req, json_t *in, void *ud);
static void invoke_here(rt_req *req, void *ud, int answered);

static void h_invoke(rt_req *req, void *ud)
{
	rt_api *api = ud;
	const char *name = rt_req_param(req, "name");
	if (strcmp(name, "echo") == 0 && !api->echo_deployed) {
		invoke_builtin_echo(api, req);
		return;
	}
	if (!valid_name(req, name))
		return;
	if (rt_api_route(api, req, name, invoke_here, api) == 0)
		invoke_here(req, api, 0);
}

/* the call runs on this node (answered: a peer answered it, nothing to do) */
static void invoke_here(rt_req *req, void *ud, int answered)
{
	if (!answered)
		rt_api_parse_body_then(ud, req, invoke_parsed, ud);
}

static void invoke_parsed(rt_req *req, json_t *in, void *ud)
{
	rt_api *api = ud;
	const char *name = rt_req_param(req, "name");
	uint32_t rev = 0;
	const char *want = rt_req_header(req, "Thaw-Revision");
	if (want && rt_api_version(want, &rev) < 0) {   /* digits only, 1..RT_MANIFEST_REV_MAX */
		json_decref(in);
		rt_req_reply_error(req, 400, "header Thaw-Revision: must be a revision number");
		return;
	}
	invoke_job *ij = malloc(sizeof *ij);
	if (!ij) {
		json_decref(in);
		rt_req_reply_error(req, 500, "out of memory");
		return;
	}
	ij->api = api;
	ij->req = req;
	fn_header hdrs[RT_HTTP_MAX_HEADERS];
	rt_call c = {.function = name, .rev = rev, .in = in, .done = invoke_result, .ud = ij};
	rt_api_call_from_req(&c, req, hdrs);
	rt_sched_submit(api->sched, &c);
}

static void h_devices(rt_req *req, void *ud)
{
	rt_api *api = ud;
	rt_api_reply_json(req, 200, json_pack("{s:o}", "devices", rt_sched_devices_json(api->sched)));
}

static void h_cluster(rt_req *req, void *ud)
{
	rt_api *api = ud;
	rt_api_reply_json(req, 200, rt_cluster_json(api->cluster));
}

int rt_api_fn_register(rt_api *api)
{
	static const rt_route_def routes[] = {
		{"GET", "/v1/functions", h_list},
		{"PUT", "/v1/functions/{name}", h_put},
		{"GET", "/v1/functions/{name}", h_get},
		{"DELETE", "/v1/functions/{name}", h_delete},
		{"POST", "/v1/functions/{name}/invoke", h_invoke},
		{"GET", "/v1/devices", h_devices},
		{"GET", "/v1/cluster", h_cluster},
	};
	return rt_router_add_all(api->router, routes, sizeof routes / sizeof routes[0], api);
}

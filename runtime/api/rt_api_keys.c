/* rt_api_keys.c — API key management over HTTP (admin scope): POST /v1/keys
 * {"scopes": [...]} -> 201 {"id", "key", "scopes"} (the key is shown only in this answer),
 * GET /v1/keys -> {"keys": [{"id", "scopes", "created", "revoked"}]}, DELETE /v1/keys/{id}
 * -> {"id", "revoked": true}. Same store as `thaw keys` (runtime/access/rt_auth.c). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <jansson.h>
#include <sodium.h>
#include "runtime/api/rt_api.h"
#include "runtime/access/rt_auth.h"

#define MAX_SCOPES 32

static void h_create(rt_req *req, void *ud)
{
	rt_api *api = ud;
	json_t *body = rt_api_parse_body(req);
	if (!body)
		return;
	json_t *sc = json_object_get(body, "scopes");
	const char *scopes[MAX_SCOPES];
	size_t n = json_is_array(sc) ? json_array_size(sc) : 0;
	int ok = json_is_object(body) && json_object_size(body) == 1 && n >= 1 && n <= MAX_SCOPES;
	char why[300];
	for (size_t i = 0; ok && i < n; i++) {
		json_t *s = json_array_get(sc, i);
		ok = json_is_string(s) && strlen(json_string_value(s)) == json_string_length(s);
		if (ok && rt_auth_scope_check(json_string_value(s), why, sizeof why) < 0) {
			json_decref(body);
			rt_req_reply_error(req, 400, "%s", why);
			return;
		}
		if (ok)
			scopes[i] = json_string_value(s);
	}
	if (!ok) {
		json_decref(body);
		rt_req_reply_error(req, 400, "body must be {\"scopes\": [1..%d of admin, metrics, invoke:*, "
				   "invoke:FUNCTION]}", MAX_SCOPES);
		return;
	}
	char key[RT_AUTH_KEY_MAX], id[RT_AUTH_ID_LEN + 1], err[256];
	int rc = rt_auth_key_create(api->access->auth, scopes, n, key, id, err, sizeof err);
	if (rc < 0) {
		json_decref(body);
		if (rc == -EINVAL || !rt_api_registry_down(api, req, rc))
			rt_req_reply_error(req, rc == -EINVAL ? 400 : 500, "%s", err);
		return;
	}
	char loc[64];
	snprintf(loc, sizeof loc, "/v1/keys/%s", id);
	rt_req_add_header(req, "Location", loc);
	rt_api_reply_json(req, 201, json_pack("{s:s, s:s, s:O}", "id", id, "key", key, "scopes", sc));
	sodium_memzero(key, sizeof key);
	json_decref(body);
}

static void h_list(rt_req *req, void *ud)
{
	rt_api *api = ud;
	json_t *list;
	int rc = rt_auth_key_list(api->access->auth, &list);
	if (rc < 0) {
		if (!rt_api_registry_down(api, req, rc))
			rt_req_reply_error(req, 500, "cannot read the key store");
		return;
	}
	rt_api_reply_json(req, 200, list);
}

static void h_revoke(rt_req *req, void *ud)
{
	rt_api *api = ud;
	const char *id = rt_req_param(req, "id");
	int rc = rt_auth_key_revoke(api->access->auth, id);
	if (rc == -ENOENT) {
		rt_req_reply_error(req, 404, "no key '%s' (or already revoked)", id);
		return;
	}
	if (rc < 0) {
		if (!rt_api_registry_down(api, req, rc))
			rt_req_reply_error(req, 500, "cannot update the key store");
		return;
	}
	rt_api_reply_json(req, 200, json_pack("{s:s, s:b}", "id", id, "revoked", 1));
}

int rt_api_keys_register(rt_api *api)
{
	static const rt_route_def routes[] = {
		{"POST", "/v1/keys", h_create},
		{"GET", "/v1/keys", h_list},
		{"DELETE", "/v1/keys/{id}", h_revoke},
	};
	return rt_router_add_all(api->router, routes, sizeof routes / sizeof routes[0], api);
}

/* rt_auth.h — API keys and scopes (docs/operations.md, "Security").
 * A key reads "thaw_<id>_<secret>": <id> is 12 hex digits, not secret, and finds the row;
 * <secret> is 32 random bytes (base64url). The registry (table api_keys, migration 3) keeps
 * only crypto_generichash(key, per-install secret) — libsodium's BLAKE2b keyed with the 32
 * bytes of DATA/auth.secret (mode 0600, made at first use) — and compares it in constant
 * time (sodium_memcmp). Keys are checked against the registry's in-memory view (no statement
 * per request); a key created or revoked here or by `thaw keys` in another process counts at
 * the next request, without a restart (the registry drops its view on every such change).
 * Scopes: "admin" (everything), "invoke:<function>", "invoke:*", "metrics".
 * Loop thread only (the registry's thread). Functions return 0 or a
 * negative errno. */
#ifndef THAW_RT_AUTH_H
#define THAW_RT_AUTH_H
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "runtime/store/rt_registry.h"
typedef struct rt_auth rt_auth;

#define RT_AUTH_ID_LEN 12          /* hex digits of a key id */
#define RT_AUTH_KEY_MAX 80         /* a whole key fits (with its NUL) */
#define RT_AUTH_SCOPES_MAX 512     /* space-separated scopes of one key */

/* What a route needs (rt_auth_route_need). */
typedef enum rt_auth_need {
	RT_AUTH_OPEN,      /* health and readiness: no key */
	RT_AUTH_ANY,       /* any valid key (listings, server metadata) */
	RT_AUTH_READ_FN,   /* admin or invoke scope for the function (its metadata) */
	RT_AUTH_INVOKE,    /* admin or invoke scope for the function */
	RT_AUTH_INVOKE_BODY, /* invoke scope for the function the body names (OpenAI endpoints):
			      * at the end of the headers (fn NULL) a key needs some invoke scope,
			      * the handler checks the function (rt_access_check_fn) */
	RT_AUTH_METRICS,   /* admin or metrics */
	RT_AUTH_ADMIN,     /* admin (deploy, delete, load/unload, jobs, keys); unknown routes too */
} rt_auth_need;

/* rt_auth_open prepares key checks against reg (borrowed; it must outlive the rt_auth) with
 * the install secret of data_dir (created when missing), or, for a registry several nodes
 * share, the secret stored in the registry (the first process to store one sets it for all;
 * data_dir is not used), so that a key made on one node verifies on every node. Caller frees
 * with rt_auth_close. -EIO/-errno with a message in err. */
int rt_auth_open(rt_registry *reg, const char *data_dir, rt_auth **out, char *err, size_t errlen);
void rt_auth_close(rt_auth *a);

/* rt_auth_scope_check: 0 when scope is well-formed and can match something ("admin",
 * "metrics", "invoke:*", or "invoke:" + a valid function name, rt_manifest_name_valid), else
 * -EINVAL with the reason in err (may be NULL). */
int rt_auth_scope_check(const char *scope, char *err, size_t errlen);
/* rt_auth_scope_valid reports whether one scope string is well-formed (rt_auth_scope_check). */
int rt_auth_scope_valid(const char *scope);

/* rt_auth_key_create makes a new key with scopes (n >= 1, each valid: else -EINVAL), stores
 * its hash and writes the key (shown once, never stored) to key (RT_AUTH_KEY_MAX) and its id
 * to id (RT_AUTH_ID_LEN + 1). */
int rt_auth_key_create(rt_auth *a, const char *const *scopes, size_t n, char *key, char *id,
		       char *err, size_t errlen);

/* rt_auth_key_revoke marks key id revoked (kept for the audit trail). -ENOENT when unknown or
 * already revoked. */
int rt_auth_key_revoke(rt_auth *a, const char *id);

/* rt_auth_key_list builds {"keys": [{"id", "scopes": [..], "created", "revoked"}, ...]}
 * (new reference, caller owns). No hash or key is ever listed. */
int rt_auth_key_list(rt_auth *a, json_t **out);

/* rt_auth_check verifies an Authorization header value ("Bearer <key>"; NULL = missing).
 * 0: valid and not revoked, with the key id in id (RT_AUTH_ID_LEN + 1) and its scopes in
 * scopes (RT_AUTH_SCOPES_MAX); -EACCES otherwise (missing, malformed, unknown, wrong, revoked:
 * all the same to the caller); -EIO when the database fails. */
int rt_auth_check(rt_auth *a, const char *authorization, char *id, char *scopes);

/* rt_auth_allows reports whether scopes (space-separated) grant need for function fn (the
 * route's {name} or {m}; may be NULL). */
int rt_auth_allows(const char *scopes, rt_auth_need need, const char *fn);

/* rt_auth_missing_scope writes to buf the scope a refused request lacked, for its 403:
 * "admin", "metrics" or "invoke:NAME" (NAME only when fn is a valid function name, else
 * "invoke:FUNCTION"). */
void rt_auth_missing_scope(rt_auth_need need, const char *fn, char *buf, size_t cap);

/* rt_auth_route_need classifies method + route pattern and names the action for the audit
 * log (*action: static string, e.g. "invoke", "deploy"). Unknown routes need admin. */
rt_auth_need rt_auth_route_need(const char *method, const char *route, const char **action);

#endif

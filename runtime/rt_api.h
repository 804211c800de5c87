/* rt_api.h — helpers shared by the HTTP API handlers (rt_api*.c) and their registration. */
#ifndef THAW_RT_API_H
#define THAW_RT_API_H
#include <jansson.h>
#include "runtime/rt_server.h"

/* rt_api_reply_json sends body (reference stolen) as compact JSON with status. */
void rt_api_reply_json(rt_req *req, int status, json_t *body);
/* rt_api_parse_body parses the request body as JSON; on failure replies 400 (naming line and
 * column) and returns NULL. The caller owns the result. */
json_t *rt_api_parse_body(rt_req *req);
/* rt_api_version parses a revision named in a route (Triton's /versions/{v}): digits only,
 * 1..RT_MANIFEST_REV_MAX, into *rev; 0 or -EINVAL. */
int rt_api_version(const char *s, uint32_t *rev);
/* rt_api_kind_known reports whether a function kind is registered (manifest validation). */
int rt_api_kind_known(const char *kind, void *ud);

/* Route registration of each API part; 0 or a negative errno. */
int rt_api_fn_register(rt_server *srv);
int rt_api_v2_register(rt_server *srv);
int rt_api_jobs_register(rt_server *srv);
int rt_api_keys_register(rt_server *srv);   /* rt_api_keys.c: /v1/keys (admin) */
int rt_api_openai_register(rt_server *srv); /* rt_api_openai.c: /v1/models, /v1/completions,
					      * /v1/chat/completions (OpenAI-compatible) */

#endif

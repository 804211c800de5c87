/* rt_cors.c — CORS for browser clients. See rt_cors.h. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include "runtime/http/rt_cors.h"

/* the request headers a page may send (beyond the CORS-safelisted ones) */
#define CORS_ALLOW_HEADERS "Authorization, Content-Type, Content-Encoding, X-Request-Id, " \
	"traceparent, Thaw-Revision, Inference-Header-Content-Length"
/* the answer headers a page may read (beyond the safelisted Content-Type and the like) */
#define CORS_EXPOSE_HEADERS "X-Request-Id, traceparent, Retry-After, Thaw-Revision, Location, " \
	"Inference-Header-Content-Length, WWW-Authenticate"
#define CORS_MAX_AGE "600"

static int host_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.';
}

int rt_cors_valid_origin(const char *o, char *err, size_t errlen)
{
	size_t len = strlen(o);
	if (!strcmp(o, "*"))
		return 0;
	if (len > RT_CORS_ORIGIN_MAX) {
		snprintf(err, errlen, "longer than %d bytes", RT_CORS_ORIGIN_MAX);
		return -EINVAL;
	}
	const char *p;
	if (!strncasecmp(o, "http://", 7))
		p = o + 7;
	else if (!strncasecmp(o, "https://", 8))
		p = o + 8;
	else {
		snprintf(err, errlen, "must be \"*\" or start with http:// or https:// (an origin "
			 "is scheme://host[:port])");
		return -EINVAL;
	}
	const char *h = p;
	if (*p == '[') {
		while (*++p && *p != ']')
			if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') ||
			      (*p >= 'A' && *p <= 'F') || *p == ':' || *p == '.'))
				break;
		if (*p != ']' || p == h + 1) {
			snprintf(err, errlen, "bad IPv6 host (want [address])");
			return -EINVAL;
		}
		p++;
	} else {
		while (host_char(*p))
			p++;
		if (p == h) {
			snprintf(err, errlen, "no host");
			return -EINVAL;
		}
	}
	if (*p == ':') {
		long port = 0;
		const char *d = ++p;
		while (*p >= '0' && *p <= '9' && port <= 65535)
			port = port * 10 + (*p++ - '0');
		if (p == d || port < 1 || port > 65535) {
			snprintf(err, errlen, "bad port (1..65535)");
			return -EINVAL;
		}
	}
	if (*p) {
		snprintf(err, errlen, "nothing may follow host[:port] (no path, no trailing '/'): "
			 "found \"%s\"", p);
		return -EINVAL;
	}
	return 0;
}

/* the configured entry that allows origin, or NULL */
static const char *allowed(const char *const *origins, size_t n, const char *origin)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(origins[i], "*") || !strcasecmp(origins[i], origin))
			return origins[i];
	return NULL;
}

int rt_cors_head(const char *const *origins, size_t n, const rt_router *router, rt_req *req)
{
	const char *origin = n ? rt_req_header(req, "Origin") : NULL;
	if (!origin)
		return 0;
	const char *entry = allowed(origins, n, origin);
	int preflight = !strcmp(req->method, "OPTIONS") &&
			rt_req_header(req, "Access-Control-Request-Method");
	/* the answer depends on Origin: caches must keep one per origin */
	rt_req_add_header(req, "Vary", "Origin");
	if (!entry) {
		if (!preflight)
			return 0;
		rt_req_reply_error(req, 403, "origin %.*s is not allowed to call this server from a "
				   "browser (thaw serve --cors-origin)", RT_CORS_ORIGIN_MAX, origin);
		return 1;
	}
	/* "*" answers "*" (never the page's origin echoed back as if it were configured) */
	rt_req_add_header(req, "Access-Control-Allow-Origin", strcmp(entry, "*") ? origin : "*");
	if (!preflight) {
		rt_req_add_header(req, "Access-Control-Expose-Headers", CORS_EXPOSE_HEADERS);
		return 0;
	}
	rt_handler_fn fn;
	void *ud;
	char allow[128] = "";
	if (rt_router_match(router, req, &fn, &ud, allow, sizeof allow) == RT_ROUTE_NOT_FOUND) {
		rt_req_reply_error(req, 404, "no route for %s", req->path);
		return 1;
	}
	rt_req_add_header(req, "Access-Control-Allow-Methods", allow[0] ? allow : req->method);
	rt_req_add_header(req, "Access-Control-Allow-Headers", CORS_ALLOW_HEADERS);
	rt_req_add_header(req, "Access-Control-Max-Age", CORS_MAX_AGE);
	rt_req_reply(req, 200, "text/plain", "", 0);
	return 1;
}

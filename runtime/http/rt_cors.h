/* rt_cors.h — cross-origin requests from browsers (the Fetch standard's CORS protocol), off
 * unless origins are configured (`thaw serve --cors-origin ORIGIN`, repeatable).
 *
 * For a request whose Origin is one of the configured origins (or any origin, for "*"), every
 * answer carries Access-Control-Allow-Origin (that origin, or "*") and the headers a script
 * may read (Access-Control-Expose-Headers); a preflight (OPTIONS with
 * Access-Control-Request-Method) is answered at the head, before the key check (browsers send
 * no credentials on a preflight), with the route's methods and the request headers thaw reads.
 * An origin not configured gets no CORS header at all (the browser then keeps the answer from
 * the page) and 403 for a preflight. Access-Control-Allow-Credentials is never sent: thaw
 * authenticates with bearer keys, not cookies, so no origin can make a browser spend a
 * user's ambient credentials. Loop thread only. */
#ifndef THAW_RT_CORS_H
#define THAW_RT_CORS_H
#include <stddef.h>
#include "runtime/http/rt_http.h"
#include "runtime/http/rt_router.h"

#define RT_CORS_MAX_ORIGINS 16
#define RT_CORS_ORIGIN_MAX 200       /* bytes of one configured origin */

/* rt_cors_valid_origin checks a configured origin: "*", or scheme://host[:port] with scheme
 * http or https, a host of letters, digits, '-', '.', or a bracketed IPv6 address, a port of
 * 1..65535, nothing after (no path, no trailing '/'), at most RT_CORS_ORIGIN_MAX bytes. 0, or
 * -EINVAL with the reason in err. */
int rt_cors_valid_origin(const char *origin, char *err, size_t errlen);

/* rt_cors_head applies the policy of the n origins to req at the end of its headers (before
 * routing and the access gate). Returns 1 when it answered (a preflight: 200, 403 for an
 * origin not allowed, 404 for a path with no route), else 0 with the CORS headers added to
 * req's answer. n == 0: nothing happens. */
int rt_cors_head(const char *const *origins, size_t n, const rt_router *router, rt_req *req);

#endif

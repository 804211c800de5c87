/* rt_client.h — a tiny blocking HTTP/1.1 client for the `thaw` CLI commands that talk to a
 * running daemon (deploy, invoke, status, functions). One request per connection
 * (Connection: close); responses framed by Content-Length, chunked transfer coding, or the
 * connection's close. Plain http:// only (TLS belongs in front of thaw, e.g. Knative's ingress).
 * The server URL comes from --url, else $THAW_URL, else $HOST/$PORT, else
 * http://127.0.0.1:8080. */
#ifndef THAW_RT_CLIENT_H
#define THAW_RT_CLIENT_H
#include <stddef.h>
#include <stdint.h>

#define RT_CLIENT_DEFAULT_URL "http://127.0.0.1:8080"
#define RT_CLIENT_MAX_BODY ((size_t)1 << 30)   /* larger responses are refused (-EFBIG) */

typedef struct rt_client_url {
	char host[256];       /* name or address; IPv6 without brackets */
	char port[8];
	char prefix[512];     /* path prefix without the trailing '/', "" for none */
	char hostport[280];   /* for the Host header */
} rt_client_url;

typedef struct rt_client_resp {
	int status;
	char *body;           /* malloc'd, NUL-terminated (body_len bytes before the NUL) */
	size_t body_len;
	char content_type[128];
} rt_client_resp;

/* rt_client_pick_url returns flag_url when given, else $THAW_URL when set and non-empty, else,
 * when $PORT or $HOST is set (as for `make run` and `thaw serve`), http://HOST:PORT with HOST
 * defaulting to 127.0.0.1 (0.0.0.0 and :: mean the loopback address) and PORT to 8080, else
 * RT_CLIENT_DEFAULT_URL. Borrowed strings (the PORT/HOST one in a static buffer that the next
 * call overwrites). */
const char *rt_client_pick_url(const char *flag_url);

/* rt_client_url_parse parses "http://host[:port][/prefix]" ("[v6]" hosts too). 0 or -EINVAL
 * with a message. */
int rt_client_url_parse(const char *url, rt_client_url *u, char *err, size_t errlen);

/* rt_client_request sends one request (path starts with '/'; body may be NULL; content_type is
 * used when body is given) and reads the whole response into *resp (free with
 * rt_client_resp_free; left empty on failure). timeout_s bounds connect and each socket wait
 * (0 = 300 s). Returns 0 for any HTTP status; -ECONNREFUSED, -EHOSTUNREACH, -ETIMEDOUT,
 * -ENOENT (host name not found), -EPROTO (malformed response), -EFBIG, ... with a message in err
 * ("cannot connect to http://...: Connection refused"). */
int rt_client_request(const rt_client_url *u, const char *method, const char *path,
		      const char *body, size_t body_len, const char *content_type, double timeout_s,
		      rt_client_resp *resp, char *err, size_t errlen);

/* rt_client_put_file is rt_client_request for a PUT whose body is the first len bytes of the
 * file open at src (application/octet-stream), read and sent 1 MiB at a time (never whole in
 * memory); progress(pud, sent, len) after each MiB when not NULL. */
typedef void (*rt_client_progress_fn)(void *pud, uint64_t sent, uint64_t total);
int rt_client_put_file(const rt_client_url *u, const char *path, int src, uint64_t len,
		       rt_client_progress_fn progress, void *pud, double timeout_s,
		       rt_client_resp *resp, char *err, size_t errlen);

/* rt_client_resp_free frees the body; resp itself is the caller's. */
void rt_client_resp_free(rt_client_resp *resp);

/* rt_client_error_text extracts the "error" string of a {"error": "..."} body into buf, or
 * copies the body (truncated) when it is not such an object. */
void rt_client_error_text(const rt_client_resp *resp, char *buf, size_t cap);

#endif

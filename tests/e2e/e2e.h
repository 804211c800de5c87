/* e2e.h — helpers for end-to-end tests: start `thaw serve` (THAW_BIN) on a free port with its
 * stderr in a log file, talk to it over raw TCP sockets, parse responses. */
#ifndef THAW_E2E_H
#define THAW_E2E_H
#include <stddef.h>
#include <sys/types.h>

typedef struct e2e_server {
	pid_t pid;
	int port;
	char log_path[512];
	char data_dir[512];
} e2e_server;

typedef struct e2e_resp {
	int status;
	char headers[8192];   /* raw header block, lower-cased names not guaranteed */
	char *body;           /* malloc'd, NUL-terminated */
	size_t body_len;
} e2e_resp;

/* e2e_start runs THAW_BIN serve --port 0 --data <tmp> extra_args... and waits for the
 * "listening" log line. env_kv: NULL-terminated "K=V" strings added to the environment.
 * Returns 0 or -1. */
int e2e_start(e2e_server *s, const char *const *extra_args, const char *const *env_kv);
/* e2e_start_in is e2e_start with a given data directory (e.g. to restart on the same data). */
int e2e_start_in(e2e_server *s, const char *data_dir, const char *const *extra_args,
		 const char *const *env_kv);
/* e2e_stop sends sig, waits up to timeout_s; returns the exit status (or -1 on timeout/kill). */
int e2e_stop(e2e_server *s, int sig, double timeout_s);
/* e2e_connect opens a TCP connection to the server (blocking, 5 s receive timeout); -1 on error. */
int e2e_connect(const e2e_server *s);
/* e2e_send writes all of buf; 0 or -1. */
int e2e_send(int fd, const char *buf, size_t len);
/* e2e_read_resp reads one HTTP/1.1 response (Content-Length framed) from fd, keeping any
 * surplus bytes for the next call on the same fd (one pending buffer per fd < 64). 0 or -1. */
int e2e_read_resp(int fd, e2e_resp *r);
void e2e_resp_free(e2e_resp *r);
/* e2e_header returns a malloc'd copy of the header value (case-insensitive name) or NULL. */
char *e2e_header(const e2e_resp *r, const char *name);
/* e2e_request: connect, send raw, read one response, close. 0 or -1. */
int e2e_request(const e2e_server *s, const char *raw, e2e_resp *r);
/* e2e_is_closed waits up to ms for the peer to close fd (read returns 0 or error). */
int e2e_is_closed(int fd, int ms);
/* e2e_log_contains reports whether the server log contains needle. */
int e2e_log_contains(const e2e_server *s, const char *needle);
#endif

/* e2e.h — helpers for end-to-end tests: start `thaw serve` (THAW_BIN) on a free port with its
 * stderr in a log file, talk to it over raw TCP sockets, parse responses. */
#ifndef THAW_E2E_H
#define THAW_E2E_H
#include <stddef.h>
#include <sys/types.h>
#include <jansson.h>

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

/* e2e_start runs THAW_BIN serve --port 0 --data <tmp> extra_args... and waits (up to 30 s: ASan
 * builds on a loaded 2-core CI machine start slowly) for the "listening" log line. env_kv: NULL-terminated "K=V" strings added to the environment.
 * Returns 0 or -1. */
int e2e_start(e2e_server *s, const char *const *extra_args, const char *const *env_kv);
/* e2e_start_in is e2e_start with a given data directory (e.g. to restart on the same data). */
int e2e_start_in(e2e_server *s, const char *data_dir, const char *const *extra_args,
		 const char *const *env_kv);
/* e2e_stop sends sig, waits up to timeout_s; returns the exit status (or -1 on timeout/kill). */
int e2e_stop(e2e_server *s, int sig, double timeout_s);
/* e2e_connect opens a TCP connection to the server (blocking, 30 s receive timeout: a guard
 * against a hung server, not a latency check); -1 on error. */
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
/* e2e_digits reads the first n (<= 1797) rows of tests/data/digits.csv.gz, scaled by 1/16 as the
 * digits mlp was trained, into rows, and (when expected is set) the PyTorch reference outputs
 * tests/data/mlp_digits/expected.json into *expected (a new reference). 0, or -1 when either
 * cannot be read. */
int e2e_digits(double (*rows)[64], int n, json_t **expected);
/* e2e_call sends one request with a JSON body (may be NULL) and extra header lines (each ending
 * in \r\n, or NULL) and reads the answer: its status, or -1 on a transport error. The response
 * goes to *out when out is set (the caller frees it with e2e_resp_free), else it is freed. */
int e2e_call(const e2e_server *s, const char *method, const char *path, const char *extra,
	     const char *body, e2e_resp *out);
/* e2e_call_json: e2e_call with the response body parsed into *out (a new reference, NULL when it
 * is not JSON or nothing came back) when out is set. */
int e2e_call_json(const e2e_server *s, const char *method, const char *path, const char *extra,
		  const char *body, json_t **out);
/* e2e_is_closed waits up to ms for the peer to close fd (read returns 0 or error). */
int e2e_is_closed(int fd, int ms);
/* e2e_log_contains reports whether the server log contains needle. */
int e2e_log_contains(const e2e_server *s, const char *needle);

/* Waiting for asynchronous effects: tests poll for them with a generous deadline instead of
 * sleeping a fixed time (CI runs the suite under ASan on 2 busy cores). */

/* e2e_wait_log polls the server log every 10 ms until it contains needle; 1 when it did within
 * ms milliseconds, else 0. */
int e2e_wait_log(const e2e_server *s, const char *needle, int ms);
/* e2e_wait_refused polls until a new connection to the server is refused (its listener closed);
 * connections that still get through meanwhile are closed again. 1 when refused within ms. */
int e2e_wait_refused(const e2e_server *s, int ms);
/* e2e_fn_state writes the "state" of GET /v1/functions/NAME (no API key) into buf, "" when the
 * call fails; returns buf. */
const char *e2e_fn_state(const e2e_server *s, const char *name, char *buf, size_t len);
/* e2e_wait_state polls the function's state every 10 ms until it is want; 1 when it was within
 * ms milliseconds, else 0 (after printing the last state seen). */
int e2e_wait_state(const e2e_server *s, const char *name, const char *want, int ms);
/* e2e_now_s: a monotonic clock in seconds. */
double e2e_now_s(void);

/* e2e_llama_write writes dir/model.safetensors (F32, random weights: hidden 256, 2 layers, 4
 * heads, 2 KV heads, MLP 512, untied lm_head; embeddings and lm_head of vocab rows) and
 * dir/config.json (model_type llama, vocab_size vocab, eos_token_id eos, 512 positions): a
 * llama whose vocabulary fits a test tokenizer. Consecutive calls write other weights (one
 * generator seeded once per process). 0, or -1 when a file cannot be written. */
#define E2E_LLAMA_CTX 512
int e2e_llama_write(const char *dir, size_t vocab, int eos);
/* e2e_snapshot_digests maps each tensor of the snapshot at path to a digest (FNV-1a) of its
 * restored bytes: two results compare equal when their objects do. An empty object when path is
 * NULL or does not open. New reference. */
json_t *e2e_snapshot_digests(const char *path);

#endif

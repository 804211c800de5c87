/* pool_log.h — where pool/ and kernels/ report what goes wrong on a device (a failed CUDA or
 * cuBLAS call, named with its file and line). By default a line on stderr; the daemon installs
 * its logger at start (pool_log_set) so these lines land in its JSON log. */
#ifndef THAW_POOL_LOG_H
#define THAW_POOL_LOG_H

#ifdef __cplusplus
extern "C" {
#endif

/* A log hook: msg is one line without a newline, valid for the call only; any thread. */
typedef void (*pool_log_fn)(const char *msg);

/* pool_log_set installs fn (NULL: back to stderr). Set it before devices are opened. */
void pool_log_set(pool_log_fn fn);
/* pool_logf formats one line (at most 512 bytes) and hands it to the hook. */
void pool_logf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#ifdef __cplusplus
}
#endif
#endif

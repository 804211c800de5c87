/* rt_log.h — structured logs: one JSON object per line on stderr (Knative: log to
 * stdout/stderr). Each line carries time, level, msg and the K_SERVICE / K_REVISION /
 * K_CONFIGURATION labels when set. Safe to call from any thread (one write(2) per line). */
#ifndef THAW_RT_LOG_H
#define THAW_RT_LOG_H
#include <stddef.h>

typedef enum rt_log_level {
	RT_LOG_DEBUG,
	RT_LOG_INFO,
	RT_LOG_WARN,
	RT_LOG_ERROR,
} rt_log_level;

/* rt_log_init reads the Knative labels from the environment and sets the minimum level. */
void rt_log_init(rt_log_level min_level);

/* rt_log writes {"time":..,"level":..,"msg":<msg>, <fields>} where fields_json is either NULL
 * or the inside of a JSON object ("\"k\":1,\"s\":\"v\"") already escaped by the caller. */
void rt_log(rt_log_level level, const char *msg, const char *fields_json);

/* rt_logf formats msg printf-style (the message is escaped). */
void rt_logf(rt_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* rt_log_access writes the per-request line: method, path, status, duration, bytes,
 * request id and traceparent (omitted when empty). */
void rt_log_access(const char *method, const char *path, int status, double seconds,
		   size_t bytes, const char *request_id, const char *traceparent);

/* rt_json_escape writes s as the inside of a JSON string into out (at most cap-1 bytes, always
 * NUL-terminated, never splitting an escape) and returns the number of bytes written. */
size_t rt_json_escape(char *out, size_t cap, const char *s);

/* rt_errf formats a message into err (when err and errlen are set) and returns rc: the
 * errno-style return with a message used across runtime/. */
int rt_errf(char *err, size_t errlen, int rc, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* rt_log_labels returns the "k_service":..,.. fragment (possibly empty) for other modules. */
const char *rt_log_labels(void);

#endif

/* rt_log.c — JSON-lines logging on stderr. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "runtime/base/rt_log.h"

static rt_log_level min_level = RT_LOG_INFO;
static char labels[512];

static const char *level_name(rt_log_level l)
{
	switch (l) {
	case RT_LOG_DEBUG: return "debug";
	case RT_LOG_INFO: return "info";
	case RT_LOG_WARN: return "warn";
	default: return "error";
	}
}

size_t rt_json_escape(char *out, size_t cap, const char *s)
{
	size_t o = 0;
	if (cap == 0)
		return 0;
	for (; s && *s; s++) {
		unsigned char ch = (unsigned char)*s;
		char tmp[8];
		const char *e = tmp;
		size_t n;
		if (ch == '"') e = "\\\"";
		else if (ch == '\\') e = "\\\\";
		else if (ch == '\n') e = "\\n";
		else if (ch == '\r') e = "\\r";
		else if (ch == '\t') e = "\\t";
		else if (ch < 0x20 || ch == 0x7f) snprintf(tmp, sizeof tmp, "\\u%04x", ch);
		else { tmp[0] = (char)ch; tmp[1] = 0; }
		n = strlen(e);
		if (o + n >= cap)
			break;
		memcpy(out + o, e, n);
		o += n;
	}
	out[o] = 0;
	return o;
}

void rt_log_init(rt_log_level lvl)
{
	static const char *keys[][2] = {
		{"K_SERVICE", "k_service"}, {"K_REVISION", "k_revision"},
		{"K_CONFIGURATION", "k_configuration"},
	};
	size_t o = 0;
	min_level = lvl;
	labels[0] = 0;
	for (size_t i = 0; i < 3; i++) {
		const char *v = getenv(keys[i][0]);
		char esc[160];
		if (!v || !*v)
			continue;
		rt_json_escape(esc, sizeof esc, v);
		int n = snprintf(labels + o, sizeof labels - o, ",\"%s\":\"%s\"", keys[i][1], esc);
		if (n < 0 || (size_t)n >= sizeof labels - o)
			break;
		o += (size_t)n;
	}
}

const char *rt_log_labels(void)
{
	return labels;
}

static void now_iso(char *buf, size_t cap)
{
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	size_t n = strftime(buf, cap, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, cap - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

static void write_line(const char *line, size_t len)
{
	while (len > 0) {
		ssize_t n = write(STDERR_FILENO, line, len);
		if (n <= 0)
			return;
		line += n;
		len -= (size_t)n;
	}
}

void rt_log(rt_log_level level, const char *msg, const char *fields_json)
{
	char line[4096], ts[40], esc[2048];
	if (level < min_level)
		return;
	now_iso(ts, sizeof ts);
	rt_json_escape(esc, sizeof esc, msg);
	int n = snprintf(line, sizeof line, "{\"time\":\"%s\",\"level\":\"%s\",\"msg\":\"%s\"%s%s%s}\n",
			 ts, level_name(level), esc, fields_json && *fields_json ? "," : "",
			 fields_json ? fields_json : "", labels);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof line) {
		n = sizeof line - 1;
		line[n - 2] = '}';
		line[n - 1] = '\n';
	}
	write_line(line, (size_t)n);
}

void rt_logf(rt_log_level level, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	if (level < min_level)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	rt_log(level, msg, NULL);
}

void rt_log_access(const char *method, const char *path, int status, double seconds,
		   size_t bytes, const char *request_id, const char *traceparent)
{
	char f[1536], p[1024], rid[160];
	rt_json_escape(p, sizeof p, path ? path : "-");
	rt_json_escape(rid, sizeof rid, request_id ? request_id : "");
	int n = snprintf(f, sizeof f,
			 "\"method\":\"%s\",\"path\":\"%s\",\"status\":%d,\"duration_ms\":%.3f,"
			 "\"bytes\":%zu,\"request_id\":\"%s\"",
			 method ? method : "-", p, status, seconds * 1e3, bytes, rid);
	if (traceparent && *traceparent && n > 0 && (size_t)n < sizeof f)
		snprintf(f + n, sizeof f - (size_t)n, ",\"traceparent\":\"%s\"", traceparent);
	rt_log(RT_LOG_INFO, "request", f);
}

int rt_errf(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	if (err && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

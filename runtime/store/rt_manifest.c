/* rt_manifest.c — function manifests: parse, validate, serialize; function names; snapshot
 * path resolution. See rt_manifest.h. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "runtime/base/rt_log.h"
#include "runtime/store/rt_manifest.h"
#include "runtime/base/rt_rate.h"


/* shown copies a user-supplied string for a message: at most 64 bytes, printable ASCII only. */
static const char *shown(const char *s, char *buf, size_t cap)
{
	size_t j = 0;
	for (size_t i = 0; s[i] && j + 4 < cap; i++) {
		if (i == 64) {
			memcpy(buf + j, "...", 3);
			j += 3;
			break;
		}
		unsigned char c = (unsigned char)s[i];
		buf[j++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
	buf[j] = 0;
	return buf;
}

void rt_manifest_defaults(rt_manifest *m)
{
	memset(m, 0, sizeof *m);
	m->min_scale = 0;
	m->idle_timeout_s = 30;
	m->concurrency = 8;
	m->max_queue = 64;
	m->timeout_s = 60;
	m->device = RT_DEVICE_AUTO;
	m->device_index = -1;
	m->max_batch = 8;
	m->max_batch_delay_us = 500;
	m->prefix_caching = 1;
}

static int get_int(const json_t *v, const char *field, long long lo, long long hi, int *out,
		   char *err, size_t errlen)
{
	if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
		return rt_errf(err, errlen, -EINVAL, "field '%s': must be an integer %lld..%lld", field, lo, hi);
	*out = (int)json_integer_value(v);
	return 0;
}

static int get_seconds(const json_t *v, const char *field, double lo, double hi, double *out,
		       char *err, size_t errlen)
{
	double d = json_is_number(v) ? json_number_value(v) : NAN;
	if (!json_is_number(v) || !isfinite(d) || d < lo || d > hi)
		return rt_errf(err, errlen, -EINVAL, "field '%s': must be a number of seconds %g..%g",
			    field, lo, hi);
	*out = d;
	return 0;
}

/* get_str: a string without NUL bytes, 1..max bytes. */
static int get_str(const json_t *v, const char *field, size_t max, const char **out,
		   char *err, size_t errlen)
{
	if (!json_is_string(v))
		return rt_errf(err, errlen, -EINVAL, "field '%s': must be a string", field);
	const char *s = json_string_value(v);
	size_t n = json_string_length(v);
	if (n == 0 || n > max || strlen(s) != n)
		return rt_errf(err, errlen, -EINVAL, "field '%s': must be a string of 1..%zu bytes without NUL",
			    field, max);
	*out = s;
	return 0;
}

static int parse_device(const char *s, rt_manifest *m)
{
	if (strcmp(s, "auto") == 0) {
		m->device = RT_DEVICE_AUTO;
		m->device_index = -1;
		return 0;
	}
	if (strcmp(s, "cpu") == 0) {
		m->device = RT_DEVICE_CPU;
		m->device_index = -1;
		return 0;
	}
	if (strncmp(s, "cuda:", 5) != 0)
		return -1;
	const char *d = s + 5;
	size_t n = strlen(d);
	if (n == 0 || n > 2 || (n == 2 && d[0] == '0'))
		return -1;
	int v = 0;
	for (size_t i = 0; i < n; i++) {
		if (d[i] < '0' || d[i] > '9')
			return -1;
		v = v * 10 + (d[i] - '0');
	}
	if (v > RT_MANIFEST_CUDA_MAX)
		return -1;
	m->device = RT_DEVICE_CUDA;
	m->device_index = v;
	return 0;
}

void rt_device_format(const rt_manifest *m, char *buf, size_t cap)
{
	switch (m->device) {
	case RT_DEVICE_CPU: snprintf(buf, cap, "cpu"); break;
	case RT_DEVICE_CUDA: snprintf(buf, cap, "cuda:%d", m->device_index); break;
	default: snprintf(buf, cap, "auto"); break;
	}
}

/* parse_rev: "latest" -> 0, or a positive decimal integer without leading zeros. -1 if bad. */
static long long parse_rev(const char *k)
{
	if (strcmp(k, "latest") == 0)
		return RT_MANIFEST_REV_LATEST;
	size_t n = strlen(k);
	if (n == 0 || n > 10 || k[0] == '0')
		return -1;
	long long v = 0;
	for (size_t i = 0; i < n; i++) {
		if (k[i] < '0' || k[i] > '9')
			return -1;
		v = v * 10 + (k[i] - '0');
	}
	return v <= RT_MANIFEST_REV_MAX ? v : -1;
}

static int cmp_entry(const void *a, const void *b)
{
	const rt_traffic_entry *x = a, *y = b;
	return (x->rev > y->rev) - (x->rev < y->rev);
}

int rt_traffic_from_json(const json_t *obj, rt_traffic *t, char *err, size_t errlen)
{
	char b[80];
	memset(t, 0, sizeof *t);
	if (!json_is_object(obj))
		return rt_errf(err, errlen, -EINVAL,
			    "field 'traffic': must be an object of revision (or \"latest\") to percent");
	if (json_object_size(obj) == 0)
		return rt_errf(err, errlen, -EINVAL, "field 'traffic': must name at least one revision");
	if (json_object_size(obj) > RT_MANIFEST_TRAFFIC_MAX)
		return rt_errf(err, errlen, -EINVAL, "field 'traffic': at most %d revisions",
			    RT_MANIFEST_TRAFFIC_MAX);
	const char *k;
	json_t *v;
	int sum = 0;
	json_object_foreach((json_t *)obj, k, v) {
		long long rev = parse_rev(k);
		if (rev < 0)
			return rt_errf(err, errlen, -EINVAL, "field 'traffic': key '%s' must be a revision "
				    "number 1..%u or \"latest\"", shown(k, b, sizeof b), RT_MANIFEST_REV_MAX);
		if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 100)
			return rt_errf(err, errlen, -EINVAL, "field 'traffic': percent for '%s' must be an "
				    "integer 0..100", k);
		t->e[t->n].rev = (uint32_t)rev;
		t->e[t->n].percent = (int)json_integer_value(v);
		sum += t->e[t->n].percent;
		t->n++;
	}
	if (sum != 100)
		return rt_errf(err, errlen, -EINVAL, "field 'traffic': percents must sum to 100 (got %d)", sum);
	qsort(t->e, (size_t)t->n, sizeof t->e[0], cmp_entry);
	return 0;
}

json_t *rt_traffic_to_json(const rt_traffic *t)
{
	json_t *o = json_object();
	if (!o)
		return NULL;
	for (int i = 0; i < t->n; i++) {
		char k[16];
		if (t->e[i].rev == RT_MANIFEST_REV_LATEST)
			snprintf(k, sizeof k, "latest");
		else
			snprintf(k, sizeof k, "%u", t->e[i].rev);
		if (json_object_set_new(o, k, json_integer(t->e[i].percent)) < 0) {
			json_decref(o);
			return NULL;
		}
	}
	return o;
}

static int kind_syntax_ok(const char *s)
{
	for (size_t i = 0; s[i]; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_' ||
		      s[i] == '-'))
			return 0;
	return 1;
}

/* "audit": {"payloads": true|false, "max_bytes": 1..65536} */
static int get_audit(const json_t *v, rt_manifest *m, char *err, size_t errlen)
{
	char b[80];
	if (!json_is_object(v))
		return rt_errf(err, errlen, -EINVAL, "field 'audit': must be an object such as "
			    "{\"payloads\": true, \"max_bytes\": 4096}");
	const char *k;
	json_t *f;
	int payloads = 0, max = RT_MANIFEST_AUDIT_PAYLOAD_DEFAULT;
	json_object_foreach((json_t *)v, k, f) {
		if (strcmp(k, "payloads") == 0) {
			if (!json_is_boolean(f))
				return rt_errf(err, errlen, -EINVAL, "field 'audit.payloads': must be true or false");
			payloads = json_is_true(f);
		} else if (strcmp(k, "max_bytes") == 0) {
			if (get_int(f, "audit.max_bytes", 1, RT_MANIFEST_AUDIT_PAYLOAD_MAX, &max, err, errlen) < 0)
				return -EINVAL;
		} else {
			return rt_errf(err, errlen, -EINVAL, "field 'audit.%s': unknown field (known: "
				    "payloads, max_bytes)", shown(k, b, sizeof b));
		}
	}
	m->audit_payloads = payloads;
	m->audit_payload_max = payloads ? max : 0;
	return 0;
}

int rt_manifest_from_json(const json_t *obj, rt_manifest_kind_fn kind_known, void *ud,
			  rt_manifest *m, char *err, size_t errlen)
{
	char b[80];
	rt_manifest_defaults(m);
	if (!json_is_object(obj))
		return rt_errf(err, errlen, -EINVAL, "manifest must be a JSON object");
	const char *k;
	json_t *v;
	int have_kind = 0, rc;
	json_object_foreach((json_t *)obj, k, v) {
		const char *s;
		if (strcmp(k, "kind") == 0) {
			if ((rc = get_str(v, k, RT_MANIFEST_KIND_MAX, &s, err, errlen)) < 0)
				return rc;
			const char *pp = rt_manifest_plugin_path(s);
			size_t pl = pp ? strlen(pp) : 0;
			if (pp && (pp[0] != '/' || pl < 4 || strcmp(pp + pl - 3, ".so") != 0))
				return rt_errf(err, errlen, -EINVAL, "field 'kind': '%s': a plugin kind is "
					    "\"plugin:/absolute/path/lib.so\" (a shared object)",
					    shown(s, b, sizeof b));
			if (!pp && (strlen(s) > RT_MANIFEST_KIND_NAME_MAX || !kind_syntax_ok(s)))
				return rt_errf(err, errlen, -EINVAL, "field 'kind': '%s' is not a kind name "
					    "(1..63 of [a-z0-9_-]) or \"plugin:/path/lib.so\"",
					    shown(s, b, sizeof b));
			snprintf(m->kind, sizeof m->kind, "%s", s);
			have_kind = 1;
		} else if (strcmp(k, "snapshot") == 0) {
			if ((rc = get_str(v, k, RT_MANIFEST_PATH_MAX - 1, &s, err, errlen)) < 0)
				return rc;
			snprintf(m->snapshot, sizeof m->snapshot, "%s", s);
		} else if (strcmp(k, "min_scale") == 0) {
			if ((rc = get_int(v, k, 0, 1, &m->min_scale, err, errlen)) < 0)
				return rc;
		} else if (strcmp(k, "idle_timeout_s") == 0) {
			if ((rc = get_seconds(v, k, RT_MANIFEST_IDLE_MIN, RT_MANIFEST_IDLE_MAX,
					      &m->idle_timeout_s, err, errlen)) < 0)
				return rc;
		} else if (strcmp(k, "concurrency") == 0) {
			if ((rc = get_int(v, k, 1, RT_MANIFEST_CONCURRENCY_MAX, &m->concurrency, err, errlen)) < 0)
				return rc;
		} else if (strcmp(k, "max_queue") == 0) {
			if ((rc = get_int(v, k, 0, RT_MANIFEST_MAX_QUEUE_MAX, &m->max_queue, err, errlen)) < 0)
				return rc;
		} else if (strcmp(k, "timeout_s") == 0) {
			if ((rc = get_seconds(v, k, RT_MANIFEST_TIMEOUT_MIN, RT_MANIFEST_TIMEOUT_MAX,
					      &m->timeout_s, err, errlen)) < 0)
				return rc;
		} else if (strcmp(k, "device") == 0) {
			if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v) ||
			    parse_device(json_string_value(v), m) < 0)
				return rt_errf(err, errlen, -EINVAL, "field 'device': must be \"auto\", \"cpu\" "
					    "or \"cuda:N\" with N 0..%d", RT_MANIFEST_CUDA_MAX);
		} else if (strcmp(k, "max_batch") == 0) {
			if ((rc = get_int(v, k, 1, RT_MANIFEST_MAX_BATCH_MAX, &m->max_batch, err, errlen)) < 0)
				return rc;
		} else if (strcmp(k, "max_batch_delay_us") == 0) {
			if ((rc = get_int(v, k, 0, RT_MANIFEST_BATCH_DELAY_MAX, &m->max_batch_delay_us,
					  err, errlen)) < 0)
				return rc;
		} else if (strcmp(k, "prefix_caching") == 0) {
			if (!json_is_boolean(v))
				return rt_errf(err, errlen, -EINVAL, "field 'prefix_caching': must be true or false");
			m->prefix_caching = json_is_true(v);
		} else if (strcmp(k, "rate_limit") == 0) {
			rt_rate lim;
			if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v) ||
			    rt_rate_parse(json_string_value(v), &lim) < 0 || lim.rate > 1e6 || lim.burst > 1e6)
				return rt_errf(err, errlen, -EINVAL, "field 'rate_limit': must be \"R/s,BURST\" "
					    "(e.g. \"10/s,20\"; R and BURST up to 1000000) or \"off\"");
			m->rate_limit_rps = lim.rate;
			m->rate_limit_burst = lim.burst;
		} else if (strcmp(k, "audit") == 0) {
			if ((rc = get_audit(v, m, err, errlen)) < 0)
				return rc;
		} else if (strcmp(k, "traffic") == 0) {
			if ((rc = rt_traffic_from_json(v, &m->traffic, err, errlen)) < 0)
				return rc;
		} else {
			return rt_errf(err, errlen, -EINVAL, "field '%s': unknown field", shown(k, b, sizeof b));
		}
	}
	if (!have_kind) {
		/* the snapshot's metadata names the kind; the caller takes it from there */
		if (m->snapshot[0])
			return 0;
		return rt_errf(err, errlen, -EINVAL, "field 'kind': required (or a snapshot whose "
			    "metadata records it)");
	}
	if (kind_known && !rt_manifest_plugin_path(m->kind) && !kind_known(m->kind, ud))
		return rt_errf(err, errlen, -EINVAL, "field 'kind': unknown kind '%s'", m->kind);
	if (!m->snapshot[0] && strcmp(m->kind, "echo") != 0)
		return rt_errf(err, errlen, -EINVAL, "field 'snapshot': required for kind '%s'", m->kind);
	return 0;
}

int rt_manifest_parse(const char *buf, size_t len, rt_manifest_kind_fn kind_known, void *ud,
		      rt_manifest *m, char *err, size_t errlen)
{
	json_error_t je;
	rt_manifest_defaults(m);
	json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
	if (!root)
		return rt_errf(err, errlen, -EINVAL, "invalid JSON at line %d column %d: %s", je.line,
			    je.column, je.text);
	int rc = rt_manifest_from_json(root, kind_known, ud, m, err, errlen);
	json_decref(root);
	return rc;
}

/* shortest writes the shortest decimal form of d that reads back as d ("0.1", not
 * "0.10000000000000001"), so the stored manifest reads as it was written */
static const char *shortest(double d, char *buf, size_t cap)
{
	/* at least the integer digits, so that 10 is "10" and not "1e+01" */
	int min = fabs(d) >= 1 && fabs(d) < 1e17 ? (int)floor(log10(fabs(d))) + 1 : 1;
	for (int prec = min; prec <= 17; prec++) {
		snprintf(buf, cap, "%.*g", prec, d);
		if (strtod(buf, NULL) == d)
			break;
	}
	return buf;
}

static json_t *seconds_json(double d)
{
	if (d == floor(d) && fabs(d) < 1e15)
		return json_integer((json_int_t)d);
	return json_real(d);
}

json_t *rt_manifest_to_json(const rt_manifest *m, int with_traffic)
{
	char dev[32];
	json_t *o = json_object();
	if (!o)
		return NULL;
	rt_device_format(m, dev, sizeof dev);
	int bad = 0;
	if (m->kind[0])   /* "": the snapshot's kind, not chosen yet */
		bad |= json_object_set_new(o, "kind", json_string(m->kind));
	if (m->snapshot[0])
		bad |= json_object_set_new(o, "snapshot", json_string(m->snapshot));
	bad |= json_object_set_new(o, "min_scale", json_integer(m->min_scale));
	bad |= json_object_set_new(o, "idle_timeout_s", seconds_json(m->idle_timeout_s));
	bad |= json_object_set_new(o, "concurrency", json_integer(m->concurrency));
	bad |= json_object_set_new(o, "max_queue", json_integer(m->max_queue));
	bad |= json_object_set_new(o, "timeout_s", seconds_json(m->timeout_s));
	bad |= json_object_set_new(o, "device", json_string(dev));
	bad |= json_object_set_new(o, "max_batch", json_integer(m->max_batch));
	bad |= json_object_set_new(o, "max_batch_delay_us", json_integer(m->max_batch_delay_us));
	bad |= json_object_set_new(o, "prefix_caching", json_boolean(m->prefix_caching));
	if (m->rate_limit_rps > 0) {
		char rl[80], r[32], b[32];
		snprintf(rl, sizeof rl, "%s/s,%s", shortest(m->rate_limit_rps, r, sizeof r),
			 shortest(m->rate_limit_burst, b, sizeof b));
		bad |= json_object_set_new(o, "rate_limit", json_string(rl));
	}
	if (m->audit_payloads)
		bad |= json_object_set_new(o, "audit", json_pack("{s:b, s:i}", "payloads", 1, "max_bytes",
								 m->audit_payload_max));
	if (with_traffic && m->traffic.n > 0)
		bad |= json_object_set_new(o, "traffic", rt_traffic_to_json(&m->traffic));
	if (bad) {
		json_decref(o);
		return NULL;
	}
	return o;
}

int rt_manifest_name_valid(const char *name, char *err, size_t errlen)
{
	char b[80];
	if (!name || !name[0])
		return rt_errf(err, errlen, -EINVAL, "function name must not be empty");
	size_t n = strlen(name);
	if (n > RT_MANIFEST_NAME_MAX)
		return rt_errf(err, errlen, -EINVAL, "function name '%s' is longer than %d characters",
			    shown(name, b, sizeof b), RT_MANIFEST_NAME_MAX);
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		int alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
		if (!alnum && !(c == '-' && i > 0 && i + 1 < n))
			return rt_errf(err, errlen, -EINVAL, "function name '%s' must be lower-case letters, "
				    "digits and '-', starting and ending with a letter or digit",
				    shown(name, b, sizeof b));
	}
	return 0;
}

/* ---- snapshot resolution ---- */

static int path_under(const char *path, const char *root)
{
	size_t n = strlen(root);
	if (n == 0)
		return 0;
	if (n == 1 && root[0] == '/')
		return path[0] == '/';
	while (n > 1 && root[n - 1] == '/')
		n--;
	return strncmp(path, root, n) == 0 && (path[n] == '/' || path[n] == 0);
}

/* normalize collapses "//", "/./" and "/../" of an absolute path lexically (no file system). */
static void normalize(const char *in, char *out, size_t cap)
{
	size_t o = 0;
	out[0] = 0;
	const char *p = in;
	while (*p) {
		while (*p == '/')
			p++;
		const char *q = p;
		while (*q && *q != '/')
			q++;
		size_t len = (size_t)(q - p);
		if (len == 0)
			break;
		if (len == 1 && p[0] == '.') {
			/* skip */
		} else if (len == 2 && p[0] == '.' && p[1] == '.') {
			while (o > 0 && out[o - 1] != '/')
				o--;
			if (o > 0)
				o--;
			out[o] = 0;
		} else if (o + 1 + len + 1 <= cap) {
			out[o++] = '/';
			memcpy(out + o, p, len);
			o += len;
			out[o] = 0;
		}
		p = q;
	}
	if (o == 0 && cap > 1) {
		out[0] = '/';
		out[1] = 0;
	}
}

/* allowed reports whether path (a realpath or a lexically normalized one) lies under
 * DATA/snapshots or one of the roots; with real set the roots are resolved with realpath, else
 * normalized lexically. */
static int allowed(const char *path, const char *snapdir, const char *const *roots, size_t n,
		   int real)
{
	char r[PATH_MAX];
	for (size_t i = 0; i <= n; i++) {
		const char *root = i == 0 ? snapdir : roots[i - 1];
		if (!root || root[0] != '/')
			continue;
		if (real) {
			if (!realpath(root, r))
				continue;
		} else {
			normalize(root, r, sizeof r);
		}
		if (path_under(path, r))
			return 1;
	}
	return 0;
}

const char *rt_manifest_plugin_path(const char *kind)
{
	size_t n = strlen(RT_MANIFEST_PLUGIN_PREFIX);
	return kind && strncmp(kind, RT_MANIFEST_PLUGIN_PREFIX, n) == 0 ? kind + n : NULL;
}

int rt_manifest_resolve_plugin(const char *const *roots, size_t n, const char *path,
			       char *resolved, size_t cap, char *err, size_t errlen)
{
	char b[80], real[PATH_MAX], norm[PATH_MAX];
	size_t len = path ? strlen(path) : 0;
	if (!path || path[0] != '/')
		return rt_errf(err, errlen, -EINVAL, "plugin '%s': needs an absolute path",
			    shown(path ? path : "", b, sizeof b));
	if (len < 4 || strcmp(path + len - 3, ".so") != 0)
		return rt_errf(err, errlen, -EINVAL, "plugin '%s': not a shared object (.so)",
			    shown(path, b, sizeof b));
	if (n == 0)
		return rt_errf(err, errlen, -EACCES, "plugin kinds are disabled on this server (start "
			    "thaw serve with --plugin-root DIR)");
	if (len >= PATH_MAX)
		return rt_errf(err, errlen, -ENAMETOOLONG, "plugin path too long");
	if (!realpath(path, real)) {
		int e = errno;
		normalize(path, norm, sizeof norm);
		if (!allowed(norm, NULL, roots, n, 0))
			return rt_errf(err, errlen, -EACCES, "plugin '%s' is outside the plugin roots "
				    "(thaw serve --plugin-root)", shown(path, b, sizeof b));
		return rt_errf(err, errlen, e == ENOENT || e == ENOTDIR ? -ENOENT : -e,
			    "plugin '%s': %s", shown(path, b, sizeof b), strerror(e));
	}
	if (!allowed(real, NULL, roots, n, 1))
		return rt_errf(err, errlen, -EACCES, "plugin '%s' is outside the plugin roots "
			    "(thaw serve --plugin-root)", shown(path, b, sizeof b));
	struct stat st;
	if (stat(real, &st) < 0 || !S_ISREG(st.st_mode))
		return rt_errf(err, errlen, -EINVAL, "plugin '%s' is not a regular file",
			    shown(path, b, sizeof b));
	len = strlen(real);
	if (len >= cap)
		return rt_errf(err, errlen, -ENAMETOOLONG, "plugin path too long");
	if (len < 4 || strcmp(real + len - 3, ".so") != 0)
		return rt_errf(err, errlen, -EINVAL, "plugin '%s': resolves to '%s', not a shared "
			    "object (.so)", shown(path, b, sizeof b), real);
	memcpy(resolved, real, len + 1);
	return 0;
}

int rt_manifest_resolve_snapshot(const char *data_dir, const char *const *allowed_roots, size_t n,
				 const char *snapshot, char *resolved, size_t cap,
				 char *err, size_t errlen)
{
	char b[80], snapdir[PATH_MAX], cand[PATH_MAX], real[PATH_MAX], absdata[PATH_MAX];
	if (!snapshot || !snapshot[0])
		return rt_errf(err, errlen, -EINVAL, "field 'snapshot': must not be empty");
	/* DATA/snapshots as an absolute path (the data directory may be given relative) */
	if (data_dir[0] == '/') {
		snprintf(absdata, sizeof absdata, "%s", data_dir);
	} else {
		char cwd[PATH_MAX];
		if (!getcwd(cwd, sizeof cwd))
			return rt_errf(err, errlen, -errno, "getcwd: %s", strerror(errno));
		if ((size_t)snprintf(absdata, sizeof absdata, "%s/%s", cwd, data_dir) >= sizeof absdata)
			return rt_errf(err, errlen, -ENAMETOOLONG, "data directory path too long");
	}
	if ((size_t)snprintf(snapdir, sizeof snapdir, "%s/snapshots", absdata) >= sizeof snapdir)
		return rt_errf(err, errlen, -ENAMETOOLONG, "data directory path too long");
	const char *slash = strchr(snapshot, '/');
	if (snapshot[0] != '/') {
		if (slash || strcmp(snapshot, ".") == 0 || strcmp(snapshot, "..") == 0)
			return rt_errf(err, errlen, -EACCES, "field 'snapshot': '%s' must be a file name in "
				    "DATA/snapshots or an absolute path under an allowed root",
				    shown(snapshot, b, sizeof b));
		if ((size_t)snprintf(cand, sizeof cand, "%s/%s", snapdir, snapshot) >= sizeof cand)
			return rt_errf(err, errlen, -ENAMETOOLONG, "field 'snapshot': path too long");
	} else {
		if (strlen(snapshot) >= sizeof cand)
			return rt_errf(err, errlen, -ENAMETOOLONG, "field 'snapshot': path too long");
		snprintf(cand, sizeof cand, "%s", snapshot);
	}
	if (!realpath(cand, real)) {
		int e = errno;
		char norm[PATH_MAX];
		normalize(cand, norm, sizeof norm);
		if (!allowed(norm, snapdir, allowed_roots, n, 0))
			return rt_errf(err, errlen, -EACCES, "field 'snapshot': '%s' is outside DATA/snapshots "
				    "and the allowed snapshot roots", shown(snapshot, b, sizeof b));
		if (e == ENOENT || e == ENOTDIR)
			return rt_errf(err, errlen, -ENOENT, "field 'snapshot': '%s' does not exist%s",
				    shown(snapshot, b, sizeof b), slash ? "" : " in DATA/snapshots");
		return rt_errf(err, errlen, -e, "field 'snapshot': '%s': %s", shown(snapshot, b, sizeof b),
			    strerror(e));
	}
	if (!allowed(real, snapdir, allowed_roots, n, 1))
		/* same words as for a missing file outside: the answer must not tell whether a file
		 * outside the roots exists */
		return rt_errf(err, errlen, -EACCES, "field 'snapshot': '%s' is outside DATA/snapshots "
			    "and the allowed snapshot roots", shown(snapshot, b, sizeof b));
	struct stat st;
	if (stat(real, &st) < 0)
		return rt_errf(err, errlen, -errno, "field 'snapshot': '%s': %s", shown(snapshot, b, sizeof b),
			    strerror(errno));
	if (!S_ISREG(st.st_mode))
		return rt_errf(err, errlen, -EINVAL, "field 'snapshot': '%s' is not a regular file",
			    shown(snapshot, b, sizeof b));
	if (strlen(real) >= cap)
		return rt_errf(err, errlen, -ENAMETOOLONG, "field 'snapshot': resolved path too long");
	snprintf(resolved, cap, "%s", real);
	return 0;
}

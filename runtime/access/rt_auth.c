/* rt_auth.c — API keys (keyed BLAKE2b hashes, rows in the registry) and scopes. See rt_auth.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <sodium.h>
#include "runtime/access/rt_auth.h"
#include "runtime/base/rt_log.h"
#include "runtime/store/rt_registry.h"

#define SECRET_BYTES 32
#define HASH_BYTES 32

_Static_assert(HASH_BYTES == RT_REGISTRY_KEY_HASH_LEN, "the registry stores whole hashes");
_Static_assert(RT_AUTH_SCOPES_MAX == RT_REGISTRY_KEY_SCOPES_MAX, "scopes fit a key row");
_Static_assert(RT_AUTH_ID_LEN <= RT_REGISTRY_KEY_ID_MAX, "ids fit a key row");

struct rt_auth {
	rt_registry *reg;
	unsigned char secret[SECRET_BYTES];
};

static int read_secret(const char *path, unsigned char *out)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = read(fd, out, SECRET_BYTES);
	int e = errno;
	close(fd);
	if (n < 0)
		return -e;
	return n == SECRET_BYTES ? 0 : -EBADMSG;
}

/* load DATA/auth.secret, or create it: written to a temporary name, then link()ed, so two
 * processes starting at once agree on one secret */
static int load_secret(const char *data_dir, unsigned char *out, char *err, size_t errlen)
{
	char path[4096], tmp[4200];
	if ((size_t)snprintf(path, sizeof path, "%s/auth.secret", data_dir) >= sizeof path)
		return rt_errf(err, errlen, -ENAMETOOLONG, "auth: data directory path too long");
	int rc = read_secret(path, out);
	if (rc == 0)
		return 0;
	if (rc != -ENOENT)
		return rt_errf(err, errlen, rc, "auth: cannot read %s: %s", path, strerror(-rc));
	snprintf(tmp, sizeof tmp, "%s.%d.tmp", path, (int)getpid());
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return rt_errf(err, errlen, -errno, "auth: cannot create %s: %s", tmp, strerror(errno));
	randombytes_buf(out, SECRET_BYTES);
	rc = write(fd, out, SECRET_BYTES) == SECRET_BYTES && fsync(fd) == 0 ? 0 : -EIO;
	close(fd);
	if (rc == 0 && link(tmp, path) < 0 && errno != EEXIST)
		rc = -errno;
	unlink(tmp);
	if (rc < 0)
		return rt_errf(err, errlen, rc, "auth: cannot write %s: %s", path, strerror(-rc));
	rc = read_secret(path, out);   /* whoever linked first wins */
	if (rc < 0)
		return rt_errf(err, errlen, rc, "auth: cannot read %s: %s", path, strerror(-rc));
	return 0;
}

int rt_auth_open(rt_registry *reg, const char *data_dir, rt_auth **out, char *err, size_t errlen)
{
	*out = NULL;
	if (sodium_init() < 0)
		return rt_errf(err, errlen, -EIO, "auth: libsodium failed to initialize");
	rt_auth *a = calloc(1, sizeof *a);
	if (!a)
		return rt_errf(err, errlen, -ENOMEM, "auth: out of memory");
	a->reg = reg;
	int rc;
	if (rt_registry_shared(reg)) {
		/* every node hashes with one secret: the first one stored in the shared registry
		 * (this process offers a fresh one) */
		unsigned char mine[SECRET_BYTES];
		randombytes_buf(mine, sizeof mine);
		rc = rt_registry_secret(reg, mine, sizeof mine, a->secret);
		sodium_memzero(mine, sizeof mine);
		if (rc < 0) {
			rt_errf(err, errlen, rc, "auth: cannot read the key secret from the %s registry: %s",
				rt_registry_backend(reg), strerror(-rc));
			goto fail;
		}
	} else if ((rc = load_secret(data_dir, a->secret, err, errlen)) < 0) {
		goto fail;
	}
	*out = a;
	return 0;
fail:
	rt_auth_close(a);
	return rc;
}

void rt_auth_close(rt_auth *a)
{
	if (!a)
		return;
	sodium_memzero(a->secret, sizeof a->secret);
	free(a);
}

int rt_auth_scope_check(const char *s, char *err, size_t errlen)
{
	if (strcmp(s, "admin") == 0 || strcmp(s, "metrics") == 0 || strcmp(s, "invoke:*") == 0)
		return 0;
	if (strncmp(s, "invoke:", 7) != 0)
		return rt_errf(err, errlen, -EINVAL, "bad scope '%.80s%s' (admin, metrics, invoke:*, "
			       "invoke:FUNCTION)", s, strlen(s) > 80 ? "..." : "");
	char why[200];
	if (rt_manifest_name_valid(s + 7, why, sizeof why) < 0)
		return rt_errf(err, errlen, -EINVAL, "bad scope '%.80s%s': it can never match a function "
			       "(%s)", s, strlen(s) > 80 ? "..." : "", why);
	return 0;
}

int rt_auth_scope_valid(const char *s)
{
	return rt_auth_scope_check(s, NULL, 0) == 0;
}

static void key_hash(const rt_auth *a, const char *key, unsigned char *out)
{
	crypto_generichash(out, HASH_BYTES, (const unsigned char *)key, strlen(key), a->secret,
			   SECRET_BYTES);
}

int rt_auth_key_create(rt_auth *a, const char *const *scopes, size_t n, char *key, char *id,
		       char *err, size_t errlen)
{
	char joined[RT_AUTH_SCOPES_MAX] = "";
	size_t len = 0;
	if (n == 0)
		return rt_errf(err, errlen, -EINVAL, "a key needs at least one --scope");
	for (size_t i = 0; i < n; i++) {
		int rc = rt_auth_scope_check(scopes[i], err, errlen);
		if (rc < 0)
			return rc;
		size_t l = strlen(scopes[i]);
		if (len + l + 2 > sizeof joined)
			return rt_errf(err, errlen, -EINVAL, "too many scopes");
		len += (size_t)snprintf(joined + len, sizeof joined - len, "%s%s", i ? " " : "", scopes[i]);
	}
	unsigned char idb[RT_AUTH_ID_LEN / 2], sec[32], h[HASH_BYTES];
	char sec64[64];
	randombytes_buf(idb, sizeof idb);
	randombytes_buf(sec, sizeof sec);
	sodium_bin2hex(id, RT_AUTH_ID_LEN + 1, idb, sizeof idb);
	sodium_bin2base64(sec64, sizeof sec64, sec, sizeof sec, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	snprintf(key, RT_AUTH_KEY_MAX, "thaw_%s_%s", id, sec64);
	sodium_memzero(sec, sizeof sec);
	sodium_memzero(sec64, sizeof sec64);
	key_hash(a, key, h);
	int rc = rt_registry_key_insert(a->reg, id, h, joined);
	if (rc < 0) {
		sodium_memzero(key, RT_AUTH_KEY_MAX);
		return rt_errf(err, errlen, rc == -EEXIST || rc == -ENOTCONN ? rc : -EIO,
			       "auth: storing the key: %s",
			       rc == -EEXIST ? "key id taken, try again" : strerror(-rc));
	}
	return 0;
}

int rt_auth_key_revoke(rt_auth *a, const char *id)
{
	int rc = rt_registry_key_revoke(a->reg, id);
	return rc == -ENOENT ? -ENOENT : rc < 0 ? -EIO : 0;
}

int rt_auth_key_list(rt_auth *a, json_t **out)
{
	int rc = rt_registry_key_list(a->reg, out);
	return rc == -ENOMEM ? rc : rc < 0 ? -EIO : 0;
}

static int is_hex_id(const char *p)
{
	for (int i = 0; i < RT_AUTH_ID_LEN; i++)
		if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f')))
			return 0;
	return 1;
}

int rt_auth_check(rt_auth *a, const char *authz, char *id, char *scopes)
{
	id[0] = scopes[0] = 0;
	if (!authz || strncasecmp(authz, "Bearer ", 7) != 0)
		return -EACCES;
	const char *key = authz + 7;
	while (*key == ' ')
		key++;
	size_t len = strlen(key);
	if (len >= RT_AUTH_KEY_MAX || len < 6 + RT_AUTH_ID_LEN || strncmp(key, "thaw_", 5) != 0 ||
	    !is_hex_id(key + 5) || key[5 + RT_AUTH_ID_LEN] != '_')
		return -EACCES;
	char kid[RT_AUTH_ID_LEN + 1];
	memcpy(kid, key + 5, RT_AUTH_ID_LEN);
	kid[RT_AUTH_ID_LEN] = 0;
	unsigned char h[HASH_BYTES], stored[HASH_BYTES];
	char found[RT_AUTH_SCOPES_MAX];
	key_hash(a, key, h);
	int rc = rt_registry_key_find(a->reg, kid, stored, found);
	if (rc == -ENOENT)
		return -EACCES;
	if (rc < 0) {
		rt_logf(RT_LOG_ERROR, "auth: key lookup: %s", strerror(-rc));
		return -EIO;
	}
	int ok = sodium_memcmp(stored, h, HASH_BYTES) == 0;
	if (ok) {
		memcpy(scopes, found, RT_AUTH_SCOPES_MAX);
		memcpy(id, kid, RT_AUTH_ID_LEN + 1);
	}
	sodium_memzero(found, sizeof found);
	return ok ? 0 : -EACCES;
}

static int has_scope(const char *scopes, const char *want)
{
	size_t wl = strlen(want);
	for (const char *p = scopes; *p;) {
		const char *e = strchr(p, ' ');
		size_t l = e ? (size_t)(e - p) : strlen(p);
		if (l == wl && memcmp(p, want, l) == 0)
			return 1;
		p += l;
		while (*p == ' ')
			p++;
	}
	return 0;
}

/* is some scope of scopes prefix...? */
static int has_scope_prefix(const char *scopes, const char *prefix)
{
	size_t pl = strlen(prefix);
	for (const char *p = scopes; *p;) {
		size_t l = strcspn(p, " ");
		if (l > pl && memcmp(p, prefix, pl) == 0)
			return 1;
		p += l;
		while (*p == ' ')
			p++;
	}
	return 0;
}

void rt_auth_missing_scope(rt_auth_need need, const char *fn, char *buf, size_t cap)
{
	int named = fn && rt_manifest_name_valid(fn, NULL, 0) == 0;
	switch (need) {
	case RT_AUTH_METRICS:
		snprintf(buf, cap, "metrics");
		break;
	case RT_AUTH_READ_FN:
	case RT_AUTH_INVOKE:
	case RT_AUTH_INVOKE_BODY:
		if (named)
			snprintf(buf, cap, "invoke:%s", fn);
		else
			snprintf(buf, cap, "invoke:FUNCTION");
		break;
	default:
		snprintf(buf, cap, "admin");
	}
}

int rt_auth_allows(const char *scopes, rt_auth_need need, const char *fn)
{
	if (need == RT_AUTH_OPEN)
		return 1;
	if (!scopes)
		return 0;
	if (has_scope(scopes, "admin"))
		return 1;
	switch (need) {
	case RT_AUTH_ANY:
		return 1;
	case RT_AUTH_METRICS:
		return has_scope(scopes, "metrics");
	case RT_AUTH_INVOKE_BODY:
		if (!fn)   /* the function is not known yet: some invoke scope is needed */
			return has_scope_prefix(scopes, "invoke:");
		/* fall through */
	case RT_AUTH_READ_FN:
	case RT_AUTH_INVOKE: {
		if (has_scope(scopes, "invoke:*"))
			return 1;
		char want[RT_MANIFEST_NAME_MAX + 16];
		if (!fn || snprintf(want, sizeof want, "invoke:%s", fn) >= (int)sizeof want)
			return 0;
		return has_scope(scopes, want);
	}
	default:
		return 0;
	}
}

rt_auth_need rt_auth_route_need(const char *method, const char *route, const char **action)
{
	static const struct {
		const char *method, *route, *action;
		rt_auth_need need;
	} tab[] = {
		{"GET", "/healthz", "health", RT_AUTH_OPEN},
		{"GET", "/readyz", "health", RT_AUTH_OPEN},
		{"GET", "/v2/health/live", "health", RT_AUTH_OPEN},
		{"GET", "/v2/health/ready", "health", RT_AUTH_OPEN},
		{"GET", "/metrics", "metrics", RT_AUTH_METRICS},
		{"GET", "/v1/functions", "functions.list", RT_AUTH_ANY},
		{"GET", "/v1/devices", "devices", RT_AUTH_ANY},
		{"GET", "/v1/cluster", "cluster", RT_AUTH_ADMIN},
		{"GET", "/v1/functions/{name}", "functions.get", RT_AUTH_READ_FN},
		{"PUT", "/v1/functions/{name}", "deploy", RT_AUTH_ADMIN},
		{"DELETE", "/v1/functions/{name}", "delete", RT_AUTH_ADMIN},
		{"POST", "/v1/functions/{name}/invoke", "invoke", RT_AUTH_INVOKE},
		{"POST", "/v1/jobs", "jobs.submit", RT_AUTH_ADMIN},
		{"GET", "/v1/snapshots", "snapshots.list", RT_AUTH_ADMIN},
		{"GET", "/v1/snapshots/{snapshot}", "snapshots.get", RT_AUTH_ADMIN},
		{"PUT", "/v1/snapshots/{snapshot}", "snapshot.push", RT_AUTH_ADMIN},
		{"DELETE", "/v1/snapshots/{snapshot}", "snapshot.delete", RT_AUTH_ADMIN},
		{"GET", "/v1/data", "data.list", RT_AUTH_ADMIN},
		{"GET", "/v1/data/{file}", "data.get", RT_AUTH_ADMIN},
		{"PUT", "/v1/data/{file}", "data.push", RT_AUTH_ADMIN},
		{"DELETE", "/v1/data/{file}", "data.delete", RT_AUTH_ADMIN},
		{"GET", "/v1/jobs", "jobs.list", RT_AUTH_ADMIN},
		{"GET", "/v1/jobs/{id}", "jobs.get", RT_AUTH_ADMIN},
		{"DELETE", "/v1/jobs/{id}", "jobs.cancel", RT_AUTH_ADMIN},
		{"GET", "/v2", "v2.server", RT_AUTH_ANY},
		{"POST", "/v2/repository/index", "v2.index", RT_AUTH_ANY},
		{"GET", "/v2/models/{m}", "v2.model", RT_AUTH_READ_FN},
		{"GET", "/v2/models/{m}/versions/{v}", "v2.model", RT_AUTH_READ_FN},
		{"GET", "/v2/models/{m}/ready", "v2.ready", RT_AUTH_READ_FN},
		{"GET", "/v2/models/{m}/versions/{v}/ready", "v2.ready", RT_AUTH_READ_FN},
		{"GET", "/v2/models/{m}/stats", "v2.stats", RT_AUTH_READ_FN},
		{"POST", "/v2/models/{m}/infer", "infer", RT_AUTH_INVOKE},
		{"POST", "/v2/models/{m}/versions/{v}/infer", "infer", RT_AUTH_INVOKE},
		{"POST", "/v1/keys", "key.create", RT_AUTH_ADMIN},
		{"GET", "/v1/keys", "keys.list", RT_AUTH_ADMIN},
		{"DELETE", "/v1/keys/{id}", "key.revoke", RT_AUTH_ADMIN},
		{"POST", "/v2/repository/models/{m}/load", "load", RT_AUTH_ADMIN},
		{"POST", "/v2/repository/models/{m}/unload", "unload", RT_AUTH_ADMIN},
		{"GET", "/v1/models", "models.list", RT_AUTH_ANY},
		{"GET", "/v1/models/{model}", "models.get", RT_AUTH_ANY},
		{"POST", "/v1/completions", "invoke", RT_AUTH_INVOKE_BODY},
		{"POST", "/v1/chat/completions", "invoke", RT_AUTH_INVOKE_BODY},
		{"POST", "/v2/models/{m}/generate", "generate", RT_AUTH_INVOKE},
		{"POST", "/v2/models/{m}/generate_stream", "generate", RT_AUTH_INVOKE},
		{"POST", "/v2/models/{m}/versions/{v}/generate", "generate", RT_AUTH_INVOKE},
		{"POST", "/v2/models/{m}/versions/{v}/generate_stream", "generate", RT_AUTH_INVOKE},
	};
	for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++) {
		if (strcmp(tab[i].route, route) == 0 &&
		    (strcmp(tab[i].method, method) == 0 ||
		     (strcmp(method, "HEAD") == 0 && strcmp(tab[i].method, "GET") == 0))) {
			*action = tab[i].action;
			return tab[i].need;
		}
	}
	*action = "admin";
	return RT_AUTH_ADMIN;
}

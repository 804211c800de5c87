/* rt_client.c — tiny blocking HTTP/1.1 client. See rt_client.h. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <jansson.h>
#include "runtime/base/rt_log.h"
#include "runtime/cli/rt_client.h"
#include "runtime/base/rt_version.h"

#define MAX_HEADER_BYTES (64 * 1024)


const char *rt_client_pick_url(const char *flag_url)
{
	static char local[320];
	if (flag_url && flag_url[0])
		return flag_url;
	const char *e = getenv("THAW_URL");
	if (e && e[0])
		return e;
	/* a server started here with PORT / HOST (`make run`, `thaw serve` reads PORT too) */
	const char *port = getenv("PORT"), *host = getenv("HOST");
	if (!(port && port[0]) && !(host && host[0]))
		return RT_CLIENT_DEFAULT_URL;
	if (!port || !port[0])
		port = "8080";
	if (!host || !host[0] || strcmp(host, "0.0.0.0") == 0)
		host = "127.0.0.1";     /* listening on every address: reach it on loopback */
	else if (strcmp(host, "::") == 0 || strcmp(host, "[::]") == 0)
		host = "::1";
	int v6 = strchr(host, ':') && host[0] != '[';
	snprintf(local, sizeof local, "http://%s%s%s:%s", v6 ? "[" : "", host, v6 ? "]" : "", port);
	return local;
}

int rt_client_url_parse(const char *url, rt_client_url *u, char *err, size_t errlen)
{
	memset(u, 0, sizeof *u);
	if (!url)
		return rt_errf(err, errlen, -EINVAL, "no server URL");
	if (strncasecmp(url, "https://", 8) == 0)
		return rt_errf(err, errlen, -EINVAL, "URL '%s': https is not supported by the thaw CLI "
			    "(use http://, with TLS terminated in front of thaw)", url);
	if (strncasecmp(url, "http://", 7) != 0)
		return rt_errf(err, errlen, -EINVAL, "URL '%s' must start with http://", url);
	const char *p = url + 7, *h, *he;
	if (strpbrk(p, "@?# \t\r\n"))
		return rt_errf(err, errlen, -EINVAL, "URL '%s': user info, query, fragment and spaces are "
			    "not supported", url);
	if (*p == '[') {
		h = p + 1;
		he = strchr(h, ']');
		if (!he)
			return rt_errf(err, errlen, -EINVAL, "URL '%s': unterminated '['", url);
		p = he + 1;
	} else {
		h = p;
		he = p + strcspn(p, ":/");
		p = he;
	}
	size_t hl = (size_t)(he - h);
	if (hl == 0 || hl >= sizeof u->host)
		return rt_errf(err, errlen, -EINVAL, "URL '%s': bad host", url);
	memcpy(u->host, h, hl);
	snprintf(u->port, sizeof u->port, "80");
	if (*p == ':') {
		p++;
		size_t pl = strcspn(p, "/");
		long v = 0;
		if (pl == 0 || pl > 5)
			return rt_errf(err, errlen, -EINVAL, "URL '%s': bad port", url);
		for (size_t i = 0; i < pl; i++) {
			if (p[i] < '0' || p[i] > '9')
				return rt_errf(err, errlen, -EINVAL, "URL '%s': bad port", url);
			v = v * 10 + (p[i] - '0');
		}
		if (v < 1 || v > 65535)
			return rt_errf(err, errlen, -EINVAL, "URL '%s': port must be 1..65535", url);
		snprintf(u->port, sizeof u->port, "%ld", v);
		p += pl;
	} else if (*p && *p != '/') {
		return rt_errf(err, errlen, -EINVAL, "URL '%s': bad host", url);
	}
	size_t pl = strlen(p);
	while (pl > 0 && p[pl - 1] == '/')
		pl--;
	if (pl >= sizeof u->prefix)
		return rt_errf(err, errlen, -EINVAL, "URL '%s': path too long", url);
	memcpy(u->prefix, p, pl);
	int v6 = strchr(u->host, ':') != NULL;
	snprintf(u->hostport, sizeof u->hostport, "%s%s%s%s%s", v6 ? "[" : "", u->host, v6 ? "]" : "",
		 strcmp(u->port, "80") ? ":" : "", strcmp(u->port, "80") ? u->port : "");
	return 0;
}

static int connect_to(const rt_client_url *u, int timeout_ms, char *err, size_t errlen)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res, *ai;
	int g = getaddrinfo(u->host, u->port, &hints, &res);
	if (g != 0)
		return rt_errf(err, errlen, g == EAI_NONAME ? -ENOENT : -EHOSTUNREACH,
			    "cannot resolve '%s': %s", u->host, gai_strerror(g));
	int last = ECONNREFUSED, fd = -1;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
		if (fd < 0) {
			last = errno;
			continue;
		}
		int rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
		if (rc < 0 && errno == EINPROGRESS) {
			struct pollfd pfd = {.fd = fd, .events = POLLOUT};
			int pr;
			do
				pr = poll(&pfd, 1, timeout_ms);
			while (pr < 0 && errno == EINTR);
			if (pr == 0) {
				errno = ETIMEDOUT;
			} else if (pr > 0) {
				int so = 0;
				socklen_t sl = sizeof so;
				getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &sl);
				errno = so;
				rc = so ? -1 : 0;
			}
		}
		if (rc == 0)
			break;
		last = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		return rt_errf(err, errlen, -last, "cannot connect to http://%s: %s", u->hostport,
			    strerror(last));
	/* back to blocking, with timeouts on each wait */
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	return fd;
}

static int send_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* A receive buffer: bytes [pos, len) are unread. */
typedef struct rd {
	int fd;
	char *buf;
	size_t pos, len, cap;
	int eof;
} rd;

/* fill reads more bytes; 1 read, 0 at EOF, <0 errno. */
static int fill(rd *r)
{
	if (r->eof)
		return 0;
	if (r->pos > 0 && r->pos == r->len)
		r->pos = r->len = 0;
	if (r->len == r->cap) {
		size_t nc = r->cap ? r->cap * 2 : 16384;
		char *nb = realloc(r->buf, nc + 1);
		if (!nb)
			return -ENOMEM;
		r->buf = nb;
		r->cap = nc;
	}
	ssize_t n;
	do
		n = recv(r->fd, r->buf + r->len, r->cap - r->len, 0);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
	if (n == 0) {
		r->eof = 1;
		return 0;
	}
	r->len += (size_t)n;
	return 1;
}

/* line returns the next CRLF- (or LF-) terminated line, NUL-terminated in place, or NULL
 * (*rc: 0 EOF, <0 error, -EPROTO over max). */
static char *line(rd *r, size_t max, int *rc)
{
	for (;;) {
		char *s = r->buf ? memchr(r->buf + r->pos, '\n', r->len - r->pos) : NULL;
		if (s) {
			char *l = r->buf + r->pos;
			r->pos = (size_t)(s - r->buf) + 1;
			*s = 0;
			if (s > l && s[-1] == '\r')
				s[-1] = 0;
			return l;
		}
		if (r->len - r->pos > max) {
			*rc = -EPROTO;
			return NULL;
		}
		/* keep unread bytes at the front so lines never straddle a reset */
		if (r->pos > 0) {
			memmove(r->buf, r->buf + r->pos, r->len - r->pos);
			r->len -= r->pos;
			r->pos = 0;
		}
		int f = fill(r);
		if (f <= 0) {
			*rc = f;
			return NULL;
		}
	}
}

/* take appends n body bytes (n == SIZE_MAX: until EOF) to out. */
static int take(rd *r, size_t n, char **out, size_t *out_len, size_t *out_cap)
{
	while (n > 0) {
		if (r->pos == r->len) {
			int f = fill(r);
			if (f < 0)
				return f;
			if (f == 0)
				return n == SIZE_MAX ? 0 : -EPROTO;
		}
		size_t avail = r->len - r->pos, k = avail < n ? avail : n;
		if (*out_len + k > RT_CLIENT_MAX_BODY)
			return -EFBIG;
		if (*out_len + k + 1 > *out_cap) {
			size_t nc = *out_cap ? *out_cap : 4096;
			while (nc < *out_len + k + 1)
				nc *= 2;
			char *nb = realloc(*out, nc);
			if (!nb)
				return -ENOMEM;
			*out = nb;
			*out_cap = nc;
		}
		memcpy(*out + *out_len, r->buf + r->pos, k);
		*out_len += k;
		r->pos += k;
		if (n != SIZE_MAX)
			n -= k;
	}
	return 0;
}

static int read_response(int fd, const char *method, rt_client_resp *resp, char *err, size_t errlen)
{
	rd r = {.fd = fd};
	char *body = NULL;
	size_t blen = 0, bcap = 0;
	int rc = 0;
	long long clen = -1;
	int chunked = 0;
	char *l;
	for (;;) {   /* skip 1xx interim responses */
		if (!(l = line(&r, MAX_HEADER_BYTES, &rc))) {
			rc = rc == 0 ? rt_errf(err, errlen, -EPROTO, "the server closed the connection without "
					    "a response") : rc;
			goto out;
		}
		int st;
		if (sscanf(l, "HTTP/1.%*1[01] %3d", &st) != 1 || st < 100 || st > 999) {
			rc = rt_errf(err, errlen, -EPROTO, "malformed status line from the server");
			goto out;
		}
		resp->status = st;
		size_t hbytes = 0;
		clen = -1;
		chunked = 0;
		while ((l = line(&r, MAX_HEADER_BYTES, &rc)) && l[0]) {
			hbytes += strlen(l);
			if (hbytes > MAX_HEADER_BYTES) {
				rc = -EPROTO;
				break;
			}
			char *c = strchr(l, ':');
			if (!c)
				continue;
			*c++ = 0;
			c += strspn(c, " \t");
			size_t vl = strlen(c);
			while (vl > 0 && (c[vl - 1] == ' ' || c[vl - 1] == '\t'))
				c[--vl] = 0;
			if (strcasecmp(l, "content-length") == 0) {
				char *e;
				errno = 0;
				long long v = strtoll(c, &e, 10);
				if (errno || *e || v < 0 || e == c || (clen >= 0 && clen != v)) {
					rc = rt_errf(err, errlen, -EPROTO, "bad Content-Length from the server");
					goto out;
				}
				clen = v;
			} else if (strcasecmp(l, "transfer-encoding") == 0) {
				const char *last = strrchr(c, ',');
				last = last ? last + 1 + strspn(last + 1, " ") : c;
				chunked = strcasecmp(last, "chunked") == 0;
			} else if (strcasecmp(l, "content-type") == 0) {
				snprintf(resp->content_type, sizeof resp->content_type, "%s", c);
			}
		}
		if (!l) {
			rc = rc == 0 ? -EPROTO : rc;
			rt_errf(err, errlen, rc, "incomplete response headers from the server");
			goto out;
		}
		if (st >= 200 || st == 101)
			break;
	}
	if (strcmp(method, "HEAD") == 0 || resp->status == 204 || resp->status == 304) {
		/* no body */
	} else if (chunked) {
		for (;;) {
			if (!(l = line(&r, 1024, &rc))) {
				rc = rc == 0 ? -EPROTO : rc;
				break;
			}
			char *e;
			errno = 0;
			unsigned long long n = strtoull(l, &e, 16);
			if (e == l || errno || (*e && *e != ';' && *e != ' ' && *e != '\t') ||
			    n > RT_CLIENT_MAX_BODY) {
				rc = n > RT_CLIENT_MAX_BODY ? -EFBIG : -EPROTO;
				break;
			}
			if (n == 0) {
				while ((l = line(&r, MAX_HEADER_BYTES, &rc)) && l[0])
					;   /* trailers */
				rc = l ? 0 : (rc == 0 ? -EPROTO : rc);
				break;
			}
			if ((rc = take(&r, (size_t)n, &body, &blen, &bcap)) < 0)
				break;
			if (!(l = line(&r, 2, &rc)) || l[0]) {
				rc = -EPROTO;
				break;
			}
		}
	} else if (clen >= 0) {
		if ((unsigned long long)clen > RT_CLIENT_MAX_BODY)
			rc = -EFBIG;
		else
			rc = take(&r, (size_t)clen, &body, &blen, &bcap);
	} else {
		rc = take(&r, SIZE_MAX, &body, &blen, &bcap);
	}
	if (rc < 0) {
		if (rc == -ETIMEDOUT)
			rt_errf(err, errlen, rc, "timed out waiting for the server's response");
		else if (rc == -EFBIG)
			rt_errf(err, errlen, rc, "response body over %zu bytes", RT_CLIENT_MAX_BODY);
		else if (rc == -EPROTO)
			rt_errf(err, errlen, rc, "malformed or truncated response body from the server");
		else
			rt_errf(err, errlen, rc, "reading the response: %s", strerror(-rc));
		goto out;
	}
	if (!body) {
		body = malloc(1);
		if (!body) {
			rc = -ENOMEM;
			goto out;
		}
	}
	body[blen] = 0;
	resp->body = body;
	resp->body_len = blen;
	body = NULL;
out:
	if (rc < 0 && rc != -ETIMEDOUT && rc != -EPROTO && rc != -EFBIG && err && !err[0])
		rt_errf(err, errlen, rc, "reading the response: %s", strerror(-rc));
	free(body);
	free(r.buf);
	return rc;
}

/* sends len bytes of file descriptor src from its offset 0 (progress after each piece) */
static int send_file(int fd, int src, uint64_t len, rt_client_progress_fn progress, void *pud)
{
	char *buf = malloc((size_t)1 << 20);
	if (!buf)
		return -ENOMEM;
	uint64_t sent = 0;
	int rc = 0;
	while (sent < len) {
		size_t want = len - sent < ((uint64_t)1 << 20) ? (size_t)(len - sent) : (size_t)1 << 20;
		ssize_t k = pread(src, buf, want, (off_t)sent);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			rc = k < 0 ? -errno : -EIO;   /* the file shrank while being sent */
			break;
		}
		rc = send_all(fd, buf, (size_t)k);
		if (rc < 0)
			break;
		sent += (uint64_t)k;
		if (progress)
			progress(pud, sent, len);
	}
	free(buf);
	return rc;
}

static int do_request(const rt_client_url *u, const char *method, const char *path,
		      const char *body, size_t body_len, const char *content_type, int src,
		      uint64_t src_len, rt_client_progress_fn progress, void *pud, double timeout_s,
		      rt_client_resp *resp, char *err, size_t errlen);

int rt_client_request(const rt_client_url *u, const char *method, const char *path,
		      const char *body, size_t body_len, const char *content_type, double timeout_s,
		      rt_client_resp *resp, char *err, size_t errlen)
{
	return do_request(u, method, path, body, body_len, content_type, -1, 0, NULL, NULL,
			  timeout_s, resp, err, errlen);
}

int rt_client_put_file(const rt_client_url *u, const char *path, int src, uint64_t len,
		       rt_client_progress_fn progress, void *pud, double timeout_s,
		       rt_client_resp *resp, char *err, size_t errlen)
{
	return do_request(u, "PUT", path, NULL, 0, NULL, src, len, progress, pud, timeout_s, resp,
			  err, errlen);
}

static int do_request(const rt_client_url *u, const char *method, const char *path,
		      const char *body, size_t body_len, const char *content_type, int src,
		      uint64_t src_len, rt_client_progress_fn progress, void *pud, double timeout_s,
		      rt_client_resp *resp, char *err, size_t errlen)
{
	memset(resp, 0, sizeof *resp);
	if (err && errlen)
		err[0] = 0;
	int timeout_ms = timeout_s > 0 ? (int)(timeout_s * 1000 < 2e9 ? timeout_s * 1000 : 2e9) : 300000;
	int fd = connect_to(u, timeout_ms, err, errlen);
	if (fd < 0)
		return fd;
	char head[2048];
	int has_body = body != NULL || strcmp(method, "PUT") == 0 || strcmp(method, "POST") == 0;
	int n = snprintf(head, sizeof head,
			 "%s %s%s HTTP/1.1\r\nHost: %s\r\nUser-Agent: thaw/%s\r\n"
			 "Accept: application/json\r\nConnection: close\r\n",
			 method, u->prefix, path, u->hostport, THAW_VERSION);
	/* API key for a daemon with auth on (docs/operations.md, "Security") */
	const char *key = getenv("THAW_API_KEY");
	if (n > 0 && (size_t)n < sizeof head && key && *key && !strpbrk(key, "\r\n"))
		n += snprintf(head + n, sizeof head - (size_t)n, "Authorization: Bearer %s\r\n", key);
	if (n > 0 && (size_t)n < sizeof head && src >= 0)
		n += snprintf(head + n, sizeof head - (size_t)n, "Content-Type: application/octet-stream"
			      "\r\nContent-Length: %llu\r\n", (unsigned long long)src_len);
	else if (n > 0 && (size_t)n < sizeof head && has_body)
		n += snprintf(head + n, sizeof head - (size_t)n, "%s%s%sContent-Length: %zu\r\n",
			      body ? "Content-Type: " : "", body ? (content_type ? content_type :
			      "application/json") : "", body ? "\r\n" : "", body ? body_len : 0);
	if (n > 0 && (size_t)n + 2 < sizeof head)
		n += snprintf(head + n, sizeof head - (size_t)n, "\r\n");
	else {
		close(fd);
		return rt_errf(err, errlen, -ENAMETOOLONG, "request line too long");
	}
	int rc = send_all(fd, head, (size_t)n);
	if (rc == 0 && body && body_len)
		rc = send_all(fd, body, body_len);
	if (rc == 0 && src >= 0)
		rc = send_file(fd, src, src_len, progress, pud);
	/* a server may answer early (e.g. 413) and close: still read what it said */
	if (rc < 0 && rc != -EPIPE && rc != -ECONNRESET) {
		close(fd);
		return rt_errf(err, errlen, rc, "sending the request to http://%s: %s", u->hostport,
			    strerror(-rc));
	}
	rc = read_response(fd, method, resp, err, errlen);
	close(fd);
	if (rc < 0)
		rt_client_resp_free(resp);
	return rc;
}

void rt_client_resp_free(rt_client_resp *resp)
{
	if (!resp)
		return;
	free(resp->body);
	resp->body = NULL;
	resp->body_len = 0;
}

void rt_client_error_text(const rt_client_resp *resp, char *buf, size_t cap)
{
	if (!cap)
		return;
	buf[0] = 0;
	if (!resp->body)
		return;
	json_t *j = json_loadb(resp->body, resp->body_len, 0, NULL);
	const char *e = j ? json_string_value(json_object_get(j, "error")) : NULL;
	if (e) {
		snprintf(buf, cap, "%s", e);
	} else {
		size_t n = resp->body_len < cap - 1 ? resp->body_len : cap - 1;
		memcpy(buf, resp->body, n);
		buf[n] = 0;
		while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
			buf[--n] = 0;
	}
	json_decref(j);
}

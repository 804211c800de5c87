/* bench_serve.c — the serving benchmark's client (bench/bench_serve.sh drives it).
 *
 * Drives many concurrent HTTP/1.1 keep-alive connections (libuv; responses parsed with llhttp)
 * against thaw's OpenAI streaming route, POST /v1/completions with "stream": true, greedy
 * decoding and the prompt as token ids, reads the server-sent events, timestamps every text
 * delta and prints one line of key=value figures per run:
 *   closed loop (--closed C): C clients, each sends its next request when its last one ended,
 *     until --requests requests were started or --duration seconds have passed;
 *   open loop (--rate R): arrivals at R per second for --duration seconds, Poisson (or evenly
 *     spaced with --uniform), each on an idle connection or a new one.
 * --invoke FN --body JSON|@FILE times plain POST /v1/functions/FN/invoke calls the same way
 * (the small-function probe run beside a load); --copy-bw measures the host's memcpy rate
 * (read + write bytes, all cores), the CPU's bandwidth for the bytes-per-step limit.
 *
 * Figures: output tokens (the usage chunk's completion_tokens, else the deltas) of the
 * requests that succeeded per second of wall time (first request start to last request end),
 * requests/s, time to first token (request start, for the open loop its scheduled arrival, to
 * the first non-empty delta), inter-token latency (gaps between successive deltas of a stream;
 * a delta carries more than one token when a UTF-8 character spans tokens), time per output
 * token ((last delta - first delta) / (tokens - 1) per request), request latency. Errors by
 * class: connect (refused, reset before a byte, no connection slot), status (an answer other
 * than 200), parse (malformed HTTP, SSE or JSON), stream (an error event, no [DONE], closed
 * early), timeout (--timeout per request). A malformed answer fails its request, never the
 * client; a keep-alive connection the server closed before answering is retried once.
 *
 * usage: bench_serve --model NAME (--closed C | --rate R) [options]   (--help lists them)
 */
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <jansson.h>
#include <llhttp.h>
#include <uv.h>

#define BS_READ_BYTES 65536
#define BS_LINE_MAX (1u << 20)      /* longest SSE line / event accepted */
#define BS_BODY_MAX (16u << 20)     /* largest non-streamed answer kept (invoke mode) */

enum { ERR_NONE, ERR_CONNECT, ERR_STATUS, ERR_PARSE, ERR_STREAM, ERR_TIMEOUT, ERR_N };
static const char *const err_name[ERR_N] = {"", "err_connect", "err_status", "err_parse",
					      "err_stream", "err_timeout"};

typedef struct dvec {
	double *v;
	size_t n, cap;
} dvec;

static int dvec_push(dvec *d, double x)
{
	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 256;
		double *n = realloc(d->v, cap * sizeof *n);
		if (!n)
			return -ENOMEM;
		d->v = n;
		d->cap = cap;
	}
	d->v[d->n++] = x;
	return 0;
}

/* ---- options ---- */

typedef struct opts {
	char host[256];
	int port;
	const char *model, *key, *label, *text, *invoke;
	char *body;                  /* invoke mode: the request body */
	size_t body_len;
	int closed;                  /* clients of the closed loop; 0: open loop */
	double rate;                 /* open loop arrivals per second */
	int uniform;
	double duration;             /* seconds; 0: no limit (closed loop with --requests) */
	long requests;               /* closed loop: requests to start; 0: until --duration */
	int prompt, prefix, new_tokens, vocab;
	uint64_t seed;
	double timeout;              /* seconds per request */
	int max_conns;
} opts;

/* ---- one request and one connection ---- */

typedef struct req {
	uint64_t idx;
	uint64_t t0, t_first, t_last;   /* ns */
	int status;
	int done;                    /* [DONE] seen */
	int bad;                     /* malformed SSE or JSON */
	int serr;                    /* an error event */
	int retried;
	long tokens;                 /* usage.completion_tokens; -1 until seen */
	long events;                 /* non-empty deltas */
	int finish;                  /* 0 none, 1 length, 2 stop, 3 other */
	size_t got;                  /* response bytes */
	dvec gaps;                   /* inter-delta gaps, ms */
} req;

typedef struct conn conn;
struct conn {
	uv_tcp_t tcp;
	uv_connect_t cr;
	uv_timer_t timer;
	llhttp_t hp;
	int handles;                 /* handles not yet closed */
	int connected, closing, reused, msg_done, keepalive;
	conn *prev, *next;           /* the idle list */
	req *rq;                     /* in flight */
	char *line;                  /* SSE: the current line */
	size_t llen, lcap;
	char *ev;                    /* SSE: the current event's data */
	size_t elen, ecap;
	char rbuf[BS_READ_BYTES];
};

/* ---- the run ---- */

static struct bs {
	opts o;
	uv_loop_t *loop;
	struct sockaddr_storage addr;
	llhttp_settings_t hs;
	char *body_head;             /* the request body up to the prompt */
	char *prefix_ids;            /* the shared prefix as ", id, id" text */
	size_t prefix_len;
	uint64_t t_start, t_end, next_arrival, arrival_end;
	uv_timer_t arrival;
	int arrivals_done, arrival_open;
	uint64_t issued;
	long active, conns;
	conn *idle;                  /* the idle list's head */
	uint64_t rng;
	/* results */
	long ok, errs[ERR_N], finish_stop, finish_other, shorter;
	long long out_tokens, deltas;
	dvec ttft, itl, tpot, lat;
} B;

static uint64_t now_ns(void)
{
	return uv_hrtime();
}

static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

/* a token id of the prompt: [3, vocab), above the usual special ids 0..2 */
static int rand_id(uint64_t *s)
{
	return 3 + (int)(splitmix(s) % (uint64_t)(B.o.vocab - 3));
}

/* ---- string builder ---- */

typedef struct sbuf {
	char *p;
	size_t n, cap;
	int oom;
} sbuf;

static void sb_add(sbuf *s, const char *d, size_t l)
{
	if (s->oom)
		return;
	if (s->n + l + 1 > s->cap) {
		size_t cap = (s->n + l + 1) * 2;
		char *n = realloc(s->p, cap);
		if (!n) {
			s->oom = 1;
			return;
		}
		s->p = n;
		s->cap = cap;
	}
	memcpy(s->p + s->n, d, l);
	s->n += l;
	s->p[s->n] = 0;
}

static void sb_printf(sbuf *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *s, const char *fmt, ...)
{
	char tmp[512];
	va_list ap;
	va_start(ap, fmt);
	int l = vsnprintf(tmp, sizeof tmp, fmt, ap);
	va_end(ap);
	if (l < 0 || (size_t)l >= sizeof tmp) {
		s->oom = 1;
		return;
	}
	sb_add(s, tmp, (size_t)l);
}

/* JSON text of a string (quoted, escaped); NULL when out of memory */
static char *json_quote(const char *s)
{
	json_t *j = json_string(s);
	char *r = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
	json_decref(j);
	return r;
}

/* the whole HTTP request of rq into a malloc'ed buffer (*len bytes); NULL when out of memory */
static char *request_bytes(const req *rq, size_t *len)
{
	sbuf body = {0}, r = {0};
	const char *path;
	if (B.o.invoke) {
		path = NULL;
		sb_add(&body, B.o.body, B.o.body_len);
	} else {
		path = "/v1/completions";
		sb_add(&body, B.body_head, strlen(B.body_head));
		if (B.o.text) {
			char *q = json_quote(B.o.text);
			if (q)
				sb_add(&body, q, strlen(q));
			else
				body.oom = 1;
			free(q);
		} else {
			uint64_t s = B.o.seed * 0xD1B54A32D192ED03ull + rq->idx * 0x9E3779B97F4A7C15ull + 7;
			sb_add(&body, "[", 1);
			if (B.prefix_len)
				sb_add(&body, B.prefix_ids + 1, B.prefix_len - 1);   /* without its comma */
			for (int i = 0; i < B.o.prompt; i++)
				sb_printf(&body, "%s%d", i || B.prefix_len ? "," : "", rand_id(&s));
			sb_add(&body, "]", 1);
		}
		sb_printf(&body, ",\"max_tokens\":%d,\"temperature\":0,\"stream\":true,"
			  "\"stream_options\":{\"include_usage\":true}}", B.o.new_tokens);
	}
	if (path)
		sb_printf(&r, "POST %s HTTP/1.1\r\n", path);
	else {
		sb_add(&r, "POST /v1/functions/", 19);
		sb_add(&r, B.o.invoke, strlen(B.o.invoke));
		sb_add(&r, "/invoke HTTP/1.1\r\n", 18);
	}
	sb_printf(&r, "Host: %s:%d\r\nContent-Type: application/json\r\n", B.o.host, B.o.port);
	if (B.o.key && B.o.key[0]) {
		sb_add(&r, "Authorization: Bearer ", 22);
		sb_add(&r, B.o.key, strlen(B.o.key));
		sb_add(&r, "\r\n", 2);
	}
	sb_printf(&r, "Content-Length: %zu\r\n\r\n", body.n);
	sb_add(&r, body.p ? body.p : "", body.n);
	free(body.p);
	if (body.oom || r.oom) {
		free(r.p);
		return NULL;
	}
	*len = r.n;
	return r.p;
}

/* ---- statistics ---- */

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* nearest-rank percentile q (0..1) of sorted d; NAN when empty */
static double pct(const dvec *d, double q)
{
	if (!d->n)
		return NAN;
	size_t i = (size_t)ceil(q * (double)d->n);
	return d->v[i ? i - 1 : 0];
}

static void req_record(req *rq, int err)
{
	if (err == ERR_STREAM && rq->bad)
		err = ERR_PARSE;   /* closed after a malformed event: the malformed part counts */
	if (!err && rq->status != 200)
		err = ERR_STATUS;
	if (!err && rq->bad)
		err = ERR_PARSE;
	if (!err && !B.o.invoke && (rq->serr || !rq->done))
		err = ERR_STREAM;
	if (err) {
		B.errs[err]++;
		return;
	}
	uint64_t t = now_ns();
	if (t > B.t_end)
		B.t_end = t;
	B.ok++;
	dvec_push(&B.lat, (double)(t - rq->t0) / 1e6);
	if (B.o.invoke)
		return;
	long tok = rq->tokens >= 0 ? rq->tokens : rq->events;
	B.out_tokens += tok;
	B.deltas += rq->events;
	if (tok < B.o.new_tokens)
		B.shorter++;
	if (rq->finish == 2)
		B.finish_stop++;
	else if (rq->finish == 3)
		B.finish_other++;
	if (rq->events) {
		dvec_push(&B.ttft, (double)(rq->t_first - rq->t0) / 1e6);
		if (tok > 1)
			dvec_push(&B.tpot, (double)(rq->t_last - rq->t_first) / 1e6 / (double)(tok - 1));
	}
	for (size_t i = 0; i < rq->gaps.n; i++)
		dvec_push(&B.itl, rq->gaps.v[i]);
}

/* ---- SSE ---- */

/* one event's data (the "data:" lines joined) */
static void sse_event(req *rq, const char *d, size_t l)
{
	if (l == 6 && !memcmp(d, "[DONE]", 6)) {
		rq->done = 1;
		return;
	}
	json_error_t je;
	json_t *o = json_loadb(d, l, 0, &je);
	if (!json_is_object(o)) {
		rq->bad = 1;
		json_decref(o);
		return;
	}
	if (json_object_get(o, "error"))
		rq->serr = 1;
	json_t *ch = json_array_get(json_object_get(o, "choices"), 0);
	if (ch) {
		json_t *t = json_object_get(ch, "text");
		if (!t)
			t = json_object_get(json_object_get(ch, "delta"), "content");
		if (t && !json_is_string(t))
			rq->bad = 1;
		else if (t && json_string_length(t) > 0) {
			uint64_t now = now_ns();
			if (!rq->events)
				rq->t_first = now;
			else
				dvec_push(&rq->gaps, (double)(now - rq->t_last) / 1e6);
			rq->t_last = now;
			rq->events++;
		}
		const char *fr = json_string_value(json_object_get(ch, "finish_reason"));
		if (fr)
			rq->finish = !strcmp(fr, "length") ? 1 : !strcmp(fr, "stop") ? 2 : 3;
	}
	json_t *u = json_object_get(o, "usage");
	if (json_is_object(u)) {
		json_t *ct = json_object_get(u, "completion_tokens");
		if (json_is_integer(ct) && json_integer_value(ct) >= 0)
			rq->tokens = (long)json_integer_value(ct);
		else
			rq->bad = 1;
	}
	json_decref(o);
}

static int grow(char **p, size_t *cap, size_t need)
{
	if (need <= *cap)
		return 0;
	if (need > BS_LINE_MAX)
		return -E2BIG;
	size_t c = *cap ? *cap : 1024;
	while (c < need)
		c *= 2;
	char *n = realloc(*p, c);
	if (!n)
		return -ENOMEM;
	*p = n;
	*cap = c;
	return 0;
}

/* one complete line (without its newline) */
static void sse_line(conn *c, char *s, size_t l)
{
	req *rq = c->rq;
	if (l && s[l - 1] == '\r')
		l--;
	if (l == 0) {   /* the end of an event */
		if (c->elen)
			sse_event(rq, c->ev, c->elen);
		c->elen = 0;
		return;
	}
	if (l < 5 || memcmp(s, "data:", 5) != 0)
		return;   /* comments, event:, id:, retry: */
	s += 5;
	l -= 5;
	if (l && *s == ' ')
		s++, l--;
	size_t sep = c->elen ? 1 : 0;
	if (grow(&c->ev, &c->ecap, c->elen + sep + l + 1) < 0) {
		rq->bad = 1;
		return;
	}
	if (sep)
		c->ev[c->elen++] = '\n';
	memcpy(c->ev + c->elen, s, l);
	c->elen += l;
}

static void sse_feed(conn *c, const char *d, size_t n)
{
	while (n) {
		const char *nl = memchr(d, '\n', n);
		size_t take = nl ? (size_t)(nl - d) : n;
		if (grow(&c->line, &c->lcap, c->llen + take + 1) < 0) {
			c->rq->bad = 1;
			c->llen = 0;
			if (!nl)
				return;
		} else {
			memcpy(c->line + c->llen, d, take);
			c->llen += take;
		}
		if (!nl)
			return;
		sse_line(c, c->line, c->llen);
		c->llen = 0;
		d += take + 1;
		n -= take + 1;
	}
}

/* ---- llhttp callbacks ---- */

static int on_headers_complete(llhttp_t *p)
{
	conn *c = p->data;
	if (c->rq)
		c->rq->status = llhttp_get_status_code(p);
	return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
	conn *c = p->data;
	if (c->rq && c->rq->status == 200 && !B.o.invoke)
		sse_feed(c, at, len);
	return 0;
}

static int on_message_complete(llhttp_t *p)
{
	conn *c = p->data;
	c->msg_done = 1;
	c->keepalive = llhttp_should_keep_alive(p);
	return HPE_PAUSED;
}

/* ---- connections ---- */

static void start_request(uint64_t t0);
static void check_done(void);
static void conn_send(conn *c);

static void conn_closed(uv_handle_t *h)
{
	conn *c = h->data;
	if (--c->handles > 0)
		return;
	free(c->line);
	free(c->ev);
	free(c);
}

static void idle_remove(conn *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else if (B.idle == c)
		B.idle = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
}

static void conn_close(conn *c)
{
	if (c->closing)
		return;
	c->closing = 1;
	idle_remove(c);
	B.conns--;
	uv_close((uv_handle_t *)&c->tcp, conn_closed);
	uv_close((uv_handle_t *)&c->timer, conn_closed);
}

static void conn_reset_parse(conn *c)
{
	llhttp_init(&c->hp, HTTP_RESPONSE, &B.hs);
	c->hp.data = c;
	c->msg_done = 0;
	c->keepalive = 0;
	c->llen = c->elen = 0;
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	conn *c = h->data;
	buf->base = c->rbuf;
	buf->len = sizeof c->rbuf;
}

static void req_free(req *rq)
{
	free(rq->gaps.v);
	free(rq);
}

/* closed loop: whether a client whose request ended sends another */
static int closed_more(void)
{
	return (B.o.requests <= 0 || B.issued < (uint64_t)B.o.requests) &&
	       (B.o.duration <= 0 || now_ns() < B.t_start + (uint64_t)(B.o.duration * 1e9));
}

/* closed loop: the client whose request ended sends its next one */
static void closed_next(void)
{
	if (B.o.closed && closed_more())
		start_request(now_ns());
}

/* the end of c's request: records it, then pools or closes c and lets the loop go on */
static void req_finish(conn *c, int err)
{
	req *rq = c->rq;
	c->rq = NULL;
	uv_timer_stop(&c->timer);
	req_record(rq, err);
	req_free(rq);
	B.active--;
	if (err || !c->keepalive) {
		conn_close(c);
	} else {
		conn_reset_parse(c);
		c->reused = 1;
		c->next = B.idle;
		if (B.idle)
			B.idle->prev = c;
		B.idle = c;
	}
	closed_next();
	check_done();
}

static conn *conn_new(void);

/* the server closed a kept-alive connection before answering: the same request on a new one */
static int req_retry(conn *c)
{
	req *rq = c->rq;
	if (!rq || !c->reused || rq->got || rq->retried)
		return -1;
	rq->retried = 1;
	c->rq = NULL;
	uv_timer_stop(&c->timer);
	conn_close(c);
	conn *n = conn_new();
	if (!n) {
		B.errs[ERR_CONNECT]++;
		req_free(rq);
		B.active--;
		closed_next();
		check_done();
		return 0;
	}
	n->rq = rq;
	return 0;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	conn *c = s->data;
	if (nread == 0)
		return;
	if (nread < 0) {
		if (!c->rq) {
			conn_close(c);
			return;
		}
		if (req_retry(c) == 0)
			return;
		if (nread == UV_EOF && !c->msg_done) {
			llhttp_errno_t e = llhttp_finish(&c->hp);
			if (e != HPE_OK && e != HPE_PAUSED && !c->msg_done) {
				req_finish(c, c->rq->got ? ERR_STREAM : ERR_CONNECT);
				return;
			}
		}
		if (c->msg_done) {
			c->keepalive = 0;
			req_finish(c, 0);
		} else {
			req_finish(c, c->rq->got ? ERR_STREAM : ERR_CONNECT);
		}
		return;
	}
	if (!c->rq) {   /* bytes nobody asked for on an idle connection */
		conn_close(c);
		return;
	}
	c->rq->got += (size_t)nread;
	llhttp_errno_t e = llhttp_execute(&c->hp, buf->base, (size_t)nread);
	if (c->msg_done) {
		req_finish(c, 0);
		return;
	}
	if (e != HPE_OK)
		req_finish(c, ERR_PARSE);
}

/* one request's bytes on their way out */
typedef struct wreq {
	uv_write_t w;
	uint64_t idx;                /* the request they belong to */
	char *bytes;
} wreq;

static void on_write(uv_write_t *w, int status)
{
	wreq *wr = (wreq *)w;
	conn *c = w->handle->data;
	uint64_t idx = wr->idx;
	free(wr->bytes);
	free(wr);
	if (status < 0 && c->rq && c->rq->idx == idx && !c->closing) {
		if (req_retry(c) == 0)
			return;
		req_finish(c, ERR_CONNECT);
	}
}

static void on_timeout(uv_timer_t *t)
{
	conn *c = t->data;
	if (c->rq)
		req_finish(c, ERR_TIMEOUT);
}

static void conn_send(conn *c)
{
	size_t len;
	char *b = request_bytes(c->rq, &len);
	if (!b) {
		fprintf(stderr, "bench_serve: out of memory building a request\n");
		req_finish(c, ERR_CONNECT);
		return;
	}
	uint64_t left_ns = c->rq->t0 + (uint64_t)(B.o.timeout * 1e9);
	uint64_t t = now_ns();
	uint64_t ms = left_ns > t ? (left_ns - t) / 1000000 + 1 : 1;
	uv_timer_start(&c->timer, on_timeout, ms, 0);
	wreq *wr = malloc(sizeof *wr);
	if (!wr) {
		free(b);
		req_finish(c, ERR_CONNECT);
		return;
	}
	wr->idx = c->rq->idx;
	wr->bytes = b;
	uv_buf_t ub = uv_buf_init(b, (unsigned)len);
	int rc = uv_write(&wr->w, (uv_stream_t *)&c->tcp, &ub, 1, on_write);
	if (rc < 0) {
		free(b);
		free(wr);
		req_finish(c, ERR_CONNECT);
	}
}

static void on_connect(uv_connect_t *cr, int status)
{
	conn *c = cr->data;
	if (c->closing)
		return;
	if (status < 0) {
		if (c->rq)
			req_finish(c, ERR_CONNECT);
		else
			conn_close(c);
		return;
	}
	c->connected = 1;
	uv_tcp_nodelay(&c->tcp, 1);
	if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, on_read) < 0) {
		if (c->rq)
			req_finish(c, ERR_CONNECT);
		return;
	}
	if (c->rq)
		conn_send(c);
}

/* a new connection (connecting; the caller sets rq); NULL at --max-conns or on failure */
static conn *conn_new(void)
{
	if (B.conns >= B.o.max_conns)
		return NULL;
	conn *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	uv_tcp_init(B.loop, &c->tcp);
	uv_timer_init(B.loop, &c->timer);
	c->tcp.data = c->timer.data = c->cr.data = c;
	c->handles = 2;
	B.conns++;
	conn_reset_parse(c);
	if (uv_tcp_connect(&c->cr, &c->tcp, (const struct sockaddr *)&B.addr, on_connect) < 0) {
		conn_close(c);
		return NULL;
	}
	return c;
}

/* starts request number B.issued, timed from t0 */
static void start_request(uint64_t t0)
{
	req *rq = calloc(1, sizeof *rq);
	if (!rq) {
		B.errs[ERR_CONNECT]++;
		return;
	}
	rq->idx = B.issued++;
	rq->t0 = t0;
	rq->tokens = -1;
	B.active++;
	conn *c = B.idle;
	if (c) {
		idle_remove(c);
		c->rq = rq;
		conn_send(c);
		return;
	}
	c = conn_new();
	if (!c) {
		B.errs[ERR_CONNECT]++;
		req_free(rq);
		B.active--;
		return;
	}
	c->rq = rq;
}

static void close_idle(void)
{
	while (B.idle)
		conn_close(B.idle);
}

static void check_done(void)
{
	if (B.active > 0)
		return;
	if (B.o.closed) {
		if (closed_more())
			return;
	} else if (!B.arrivals_done) {
		return;
	}
	close_idle();
	if (B.arrival_open) {
		B.arrival_open = 0;
		uv_close((uv_handle_t *)&B.arrival, NULL);
	}
}

/* ---- the open loop's arrivals ---- */

static void next_gap(void)
{
	double u = ((double)(splitmix(&B.rng) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
	double gap = B.o.uniform ? 1.0 / B.o.rate : -log(u) / B.o.rate;
	B.next_arrival += (uint64_t)(gap * 1e9);
}

static void on_arrival(uv_timer_t *t)
{
	uint64_t now = now_ns();
	while (B.next_arrival <= now && B.next_arrival < B.arrival_end) {
		start_request(B.next_arrival);
		next_gap();
	}
	if (B.next_arrival >= B.arrival_end) {
		B.arrivals_done = 1;
		check_done();
		return;
	}
	uint64_t ms = (B.next_arrival - now + 999999) / 1000000;
	uv_timer_start(&B.arrival, on_arrival, ms, 0);
}

/* ---- --copy-bw: host memcpy rate ---- */

typedef struct cpjob {
	char *dst, *src;
	size_t n;
	int reps;
} cpjob;

static void *cp_run(void *a)
{
	cpjob *j = a;
	for (int r = 0; r < j->reps; r++) {
		memcpy(j->dst, j->src, j->n);
		j->src[(size_t)r % j->n] ^= 1;   /* keep each pass a real copy */
	}
	return NULL;
}

static int copy_bw(size_t mib)
{
	size_t n = mib << 20;
	long nt = sysconf(_SC_NPROCESSORS_ONLN);
	if (nt < 1)
		nt = 1;
	if (nt > 64)
		nt = 64;
	char *src = malloc(n), *dst = malloc(n);
	if (!src || !dst) {
		fprintf(stderr, "bench_serve: --copy-bw: cannot allocate 2 x %zu MiB\n", mib);
		free(src);
		free(dst);
		return 1;
	}
	memset(src, 1, n);
	memset(dst, 2, n);
	pthread_t th[64];
	cpjob j[64];
	size_t per = n / (size_t)nt;
	double best = 0;
	for (int round = 0; round < 3; round++) {
		uint64_t t0 = now_ns();
		for (long i = 0; i < nt; i++) {
			j[i] = (cpjob){dst + (size_t)i * per, src + (size_t)i * per, per, 4};
			if (pthread_create(&th[i], NULL, cp_run, &j[i]) != 0) {
				nt = i;
				break;
			}
		}
		for (long i = 0; i < nt; i++)
			pthread_join(th[i], NULL);
		double s = (double)(now_ns() - t0) / 1e9, gbs = 2.0 * (double)per * (double)nt * 4 / s / 1e9;
		if (gbs > best)
			best = gbs;
	}
	printf("host_copy_bandwidth GB_s=%.1f (memcpy, read+write, %ld threads, 2 x %zu MiB, best of 3)\n",
	       best, nt, mib);
	free(src);
	free(dst);
	return 0;
}

/* ---- main ---- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: bench_serve --model NAME (--closed C | --rate R) [options]\n"
		"       bench_serve --invoke FUNCTION --body JSON|@FILE (--closed C | --rate R) [options]\n"
		"       bench_serve --copy-bw [--mib N]\n"
		"  --url http://HOST:PORT   the server (default http://127.0.0.1:8080)\n"
		"  --key KEY                API key (default $THAW_API_KEY; none: no Authorization)\n"
		"  --closed C               closed loop of C clients\n"
		"  --rate R [--uniform]     open loop: R arrivals per second, Poisson (or evenly spaced)\n"
		"  --duration S             closed: start no request after S s; open: arrivals for S s\n"
		"  --requests N             closed: start N requests in all (0: until --duration)\n"
		"  --prompt N               prompt token ids per request (default 128), random in [3, vocab)\n"
		"  --prefix N               a shared prefix of N ids before each prompt (default 0)\n"
		"  --text STR               the prompt as text instead of ids\n"
		"  --new N                  max_tokens (default 256)\n"
		"  --vocab V                the model's vocabulary (default 32000)\n"
		"  --seed S                 prompt ids' seed (default 1)\n"
		"  --timeout S              per request, from its start (default 300)\n"
		"  --max-conns N            open connections at most (default 4096)\n"
		"  --label L                printed as label=L\n"
		"prints one line: bench_serve label=.. mode=.. ok=.. errors=.. out_tok_s=.. req_s=..\n"
		"ttft_p50_ms=.. ttft_p99_ms=.. itl_p50_ms=.. itl_p99_ms=.. tpot_p50_ms=.. lat_p50_ms=..\n"
		"lat_p99_ms=.. lat_max_ms=.. ...; exit 0 when every request succeeded, 1 otherwise, 2 on\n"
		"bad usage\n");
}

static int parse_url(const char *u, opts *o)
{
	if (strncmp(u, "http://", 7) != 0)
		return -EINVAL;
	u += 7;
	const char *colon = strrchr(u, ':'), *slash = strchr(u, '/');
	size_t hl = colon ? (size_t)(colon - u) : slash ? (size_t)(slash - u) : strlen(u);
	if (hl == 0 || hl >= sizeof o->host)
		return -EINVAL;
	memcpy(o->host, u, hl);
	o->host[hl] = 0;
	o->port = 80;
	if (colon) {
		char *end;
		long p = strtol(colon + 1, &end, 10);
		if (p <= 0 || p > 65535 || (*end && *end != '/'))
			return -EINVAL;
		o->port = (int)p;
	}
	return 0;
}

static char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	sbuf s = {0};
	char tmp[65536];
	size_t n;
	while ((n = fread(tmp, 1, sizeof tmp, f)) > 0 && s.n <= BS_BODY_MAX)
		sb_add(&s, tmp, n);
	int bad = ferror(f) || s.oom || s.n > BS_BODY_MAX;
	fclose(f);
	if (bad) {
		free(s.p);
		return NULL;
	}
	*len = s.n;
	return s.p ? s.p : strdup("");
}

static int num_arg(const char *name, const char *v, double lo, double hi, double *out)
{
	char *end;
	errno = 0;
	double x = strtod(v, &end);
	if (!*v || *end || errno || !(x >= lo && x <= hi)) {
		fprintf(stderr, "bench_serve: %s takes a number in [%g, %g], not '%s'\n", name, lo, hi, v);
		return -1;
	}
	*out = x;
	return 0;
}

static int resolve(const opts *o)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
	char port[16];
	snprintf(port, sizeof port, "%d", o->port);
	int rc = getaddrinfo(o->host, port, &hints, &res);
	if (rc != 0) {
		fprintf(stderr, "bench_serve: cannot resolve %s: %s\n", o->host, gai_strerror(rc));
		return -1;
	}
	memcpy(&B.addr, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	return 0;
}

static void put(const char *k, double v)
{
	if (isnan(v))
		printf(" %s=-", k);
	else
		printf(" %s=%.*f", k, fabs(v) >= 100 ? 1 : 3, v);
}

int main(int argc, char **argv)
{
	opts *o = &B.o;
	*o = (opts){.port = 8080, .prompt = 128, .new_tokens = 256, .vocab = 32000, .seed = 1,
		    .timeout = 300, .max_conns = 4096, .label = "-"};
	snprintf(o->host, sizeof o->host, "127.0.0.1");
	o->key = getenv("THAW_API_KEY");
	const char *body_arg = NULL;
	int copy = 0;
	double mib = 512;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		double x;
#define NEED_V() do { if (!v) { fprintf(stderr, "bench_serve: %s needs a value\n", a); return 2; } i++; } while (0)
#define NUM(lo, hi) do { NEED_V(); if (num_arg(a, v, lo, hi, &x) < 0) return 2; } while (0)
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(stdout);
			return 0;
		} else if (!strcmp(a, "--url")) {
			NEED_V();
			if (parse_url(v, o) < 0) {
				fprintf(stderr, "bench_serve: --url takes http://HOST[:PORT], not '%s'\n", v);
				return 2;
			}
		} else if (!strcmp(a, "--model")) { NEED_V(); o->model = v; }
		else if (!strcmp(a, "--key")) { NEED_V(); o->key = v; }
		else if (!strcmp(a, "--label")) { NEED_V(); o->label = v; }
		else if (!strcmp(a, "--text")) { NEED_V(); o->text = v; }
		else if (!strcmp(a, "--invoke")) { NEED_V(); o->invoke = v; }
		else if (!strcmp(a, "--body")) { NEED_V(); body_arg = v; }
		else if (!strcmp(a, "--uniform")) o->uniform = 1;
		else if (!strcmp(a, "--copy-bw")) copy = 1;
		else if (!strcmp(a, "--mib")) { NUM(1, 65536); mib = x; }
		else if (!strcmp(a, "--closed")) { NUM(1, 100000); o->closed = (int)x; }
		else if (!strcmp(a, "--rate")) { NUM(1e-3, 1e6); o->rate = x; }
		else if (!strcmp(a, "--duration")) { NUM(0, 1e6); o->duration = x; }
		else if (!strcmp(a, "--requests")) { NUM(0, 1e9); o->requests = (long)x; }
		else if (!strcmp(a, "--prompt")) { NUM(0, 1 << 20); o->prompt = (int)x; }
		else if (!strcmp(a, "--prefix")) { NUM(0, 1 << 20); o->prefix = (int)x; }
		else if (!strcmp(a, "--new")) { NUM(1, 1 << 30); o->new_tokens = (int)x; }
		else if (!strcmp(a, "--vocab")) { NUM(4, 1 << 30); o->vocab = (int)x; }
		else if (!strcmp(a, "--seed")) { NUM(0, 1e18); o->seed = (uint64_t)x; }
		else if (!strcmp(a, "--timeout")) { NUM(1e-3, 1e6); o->timeout = x; }
		else if (!strcmp(a, "--max-conns")) { NUM(1, 1 << 20); o->max_conns = (int)x; }
		else {
			fprintf(stderr, "bench_serve: unknown option '%s'\n", a);
			usage(stderr);
			return 2;
		}
#undef NUM
#undef NEED_V
	}
	if (copy)
		return copy_bw((size_t)mib);
	if ((!o->model && !o->invoke) || (o->model && o->invoke) || (!o->closed) == (o->rate <= 0)) {
		fprintf(stderr, "bench_serve: need --model or --invoke, and one of --closed C / --rate R\n");
		usage(stderr);
		return 2;
	}
	if (o->rate > 0 && o->duration <= 0) {
		fprintf(stderr, "bench_serve: --rate needs --duration\n");
		return 2;
	}
	if (o->closed && o->duration <= 0 && o->requests <= 0)
		o->requests = o->closed;   /* one request per client */
	if (o->model && !o->text && o->prompt + o->prefix == 0) {
		fprintf(stderr, "bench_serve: an empty prompt (--prompt 0 without --prefix)\n");
		return 2;
	}
	if (o->invoke) {
		if (!body_arg) {
			fprintf(stderr, "bench_serve: --invoke needs --body JSON|@FILE\n");
			return 2;
		}
		if (body_arg[0] == '@') {
			o->body = read_file(body_arg + 1, &o->body_len);
			if (!o->body) {
				fprintf(stderr, "bench_serve: cannot read %s (or over %u bytes)\n", body_arg + 1,
					BS_BODY_MAX);
				return 2;
			}
		} else {
			o->body = strdup(body_arg);
			o->body_len = strlen(body_arg);
		}
	} else {
		char *q = json_quote(o->model);
		sbuf h = {0};
		sb_add(&h, "{\"model\":", 9);
		sb_add(&h, q ? q : "\"\"", q ? strlen(q) : 2);
		sb_add(&h, ",\"prompt\":", 10);
		free(q);
		B.body_head = h.p;
		sbuf p = {0};
		uint64_t s = o->seed ^ 0x5bd1e995ull;
		for (int i = 0; i < o->prefix; i++)
			sb_printf(&p, ",%d", rand_id(&s));
		B.prefix_ids = p.p;
		B.prefix_len = p.n;
		if (h.oom || p.oom || !h.p) {
			fprintf(stderr, "bench_serve: out of memory\n");
			return 1;
		}
	}
	if (resolve(o) < 0)
		return 1;
	signal(SIGPIPE, SIG_IGN);
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	B.loop = uv_default_loop();
	llhttp_settings_init(&B.hs);
	B.hs.on_headers_complete = on_headers_complete;
	B.hs.on_body = on_body;
	B.hs.on_message_complete = on_message_complete;
	B.rng = o->seed * 0x2545F4914F6CDD1Dull + 11;
	B.t_start = B.t_end = now_ns();
	if (o->closed) {
		for (int i = 0; i < o->closed; i++)
			if (o->requests <= 0 || B.issued < (uint64_t)o->requests)
				start_request(now_ns());
		check_done();
	} else {
		uv_timer_init(B.loop, &B.arrival);
		B.arrival_open = 1;
		B.next_arrival = B.t_start;
		B.arrival_end = B.t_start + (uint64_t)(o->duration * 1e9);
		on_arrival(&B.arrival);
	}
	uv_run(B.loop, UV_RUN_DEFAULT);
	double wall = (double)(B.t_end - B.t_start) / 1e9;
	long errors = 0;
	for (int e = 1; e < ERR_N; e++)
		errors += B.errs[e];
	dvec *all[] = {&B.ttft, &B.itl, &B.tpot, &B.lat};
	for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
		if (all[i]->n)
			qsort(all[i]->v, all[i]->n, sizeof(double), cmp_d);
	printf("bench_serve label=%s mode=%s", o->label, o->invoke ? "invoke" : o->closed ? "closed" : "open");
	if (o->closed)
		printf(" streams=%d", o->closed);
	else
		printf(" rate=%g arrivals=%s", o->rate, o->uniform ? "uniform" : "poisson");
	if (!o->invoke)
		printf(" prompt=%d prefix=%d new=%d", o->text ? -1 : o->prompt, o->prefix, o->new_tokens);
	printf(" requests=%llu ok=%ld errors=%ld", (unsigned long long)B.issued, B.ok, errors);
	for (int e = 1; e < ERR_N; e++)
		if (B.errs[e])
			printf(" %s=%ld", err_name[e], B.errs[e]);
	put("wall_s", wall);
	if (!o->invoke) {
		printf(" out_tok=%lld deltas=%lld", B.out_tokens, B.deltas);
		put("out_tok_s", wall > 0 ? (double)B.out_tokens / wall : NAN);
	}
	put("req_s", wall > 0 ? (double)B.ok / wall : NAN);
	if (!o->invoke) {
		put("ttft_p50_ms", pct(&B.ttft, 0.5));
		put("ttft_p99_ms", pct(&B.ttft, 0.99));
		put("ttft_max_ms", pct(&B.ttft, 1));
		put("itl_p50_ms", pct(&B.itl, 0.5));
		put("itl_p99_ms", pct(&B.itl, 0.99));
		put("tpot_p50_ms", pct(&B.tpot, 0.5));
	}
	put("lat_p50_ms", pct(&B.lat, 0.5));
	put("lat_p99_ms", pct(&B.lat, 0.99));
	put("lat_max_ms", pct(&B.lat, 1));
	if (!o->invoke)
		printf(" shorter=%ld finish_stop=%ld", B.shorter, B.finish_stop + B.finish_other);
	printf("\n");
	fflush(stdout);
	free(B.ttft.v);
	free(B.itl.v);
	free(B.tpot.v);
	free(B.lat.v);
	free(B.body_head);
	free(B.prefix_ids);
	free(o->body);
	uv_loop_close(B.loop);
	return errors || B.ok == 0 ? 1 : 0;
}

/* e2e.c — see e2e.h. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <jansson.h>
#include "snapshot/snap.h"
#include "tests/e2e/e2e.h"
#include "tests/t.h"

static char *pending[64];
static size_t pending_len[64];

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int e2e_start(e2e_server *s, const char *const *extra, const char *const *env_kv)
{
	return e2e_start_in(s, NULL, extra, env_kv);
}

int e2e_start_in(e2e_server *s, const char *data_dir, const char *const *extra,
		 const char *const *env_kv)
{
	static int n;
	const char *bin = getenv("THAW_BIN");
	if (!bin)
		bin = "build/thaw";
	char dd[512];
	if (data_dir)
		snprintf(dd, sizeof dd, "%s", data_dir);
	memset(s, 0, sizeof *s);
	snprintf(s->log_path, sizeof s->log_path, "%s/serve-%d.log", t_tmpdir(), ++n);
	if (data_dir)
		snprintf(s->data_dir, sizeof s->data_dir, "%s", dd);
	else
		snprintf(s->data_dir, sizeof s->data_dir, "%s/data-%d", t_tmpdir(), n);
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		const char *argv[64];
		int a = 0;
		argv[a++] = bin;
		argv[a++] = "serve";
		argv[a++] = "--port";
		argv[a++] = "0";
		argv[a++] = "--host";
		argv[a++] = "127.0.0.1";
		argv[a++] = "--data";
		argv[a++] = s->data_dir;
		/* tests run without API keys (--dev) unless their first extra argument is "--auth" */
		int auth = extra && extra[0] && strcmp(extra[0], "--auth") == 0;
		if (!auth)
			argv[a++] = "--dev";
		for (int i = auth; extra && extra[i] && a < 62; i++)
			argv[a++] = extra[i];
		argv[a] = NULL;
		unsetenv("PORT");
		for (int i = 0; env_kv && env_kv[i]; i++)
			putenv((char *)env_kv[i]);
		int fd = open(s->log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd >= 0) {
			dup2(fd, 2);
			dup2(fd, 1);
		}
		execv(bin, (char *const *)argv);
		_exit(127);
	}
	s->pid = pid;
	double deadline = now_s() + 30;
	while (now_s() < deadline) {
		FILE *f = fopen(s->log_path, "r");
		if (f) {
			char line[4096];
			while (fgets(line, sizeof line, f)) {
				char *p = strstr(line, "\"msg\":\"listening\"");
				char *q = p ? strstr(line, "\"port\":") : NULL;
				if (q) {
					s->port = atoi(q + 7);
					fclose(f);
					return 0;
				}
			}
			fclose(f);
		}
		int st;
		if (waitpid(pid, &st, WNOHANG) == pid) {
			fprintf(stderr, "  e2e: server exited early (status %d)\n", st);
			s->pid = 0;
			return -1;
		}
		usleep(10000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	s->pid = 0;
	return -1;
}

int e2e_stop(e2e_server *s, int sig, double timeout_s)
{
	if (!s->pid)
		return -1;
	if (sig)
		kill(s->pid, sig);
	double deadline = now_s() + timeout_s;
	int st;
	while (now_s() < deadline) {
		pid_t r = waitpid(s->pid, &st, WNOHANG);
		if (r == s->pid) {
			s->pid = 0;
			/* a sanitizer report (leak, overflow, UB) in the server fails the stop */
			if (e2e_log_contains(s, "Sanitizer") || e2e_log_contains(s, "runtime error:")) {
				char cmd[700];
				snprintf(cmd, sizeof cmd, "grep -A30 -E 'Sanitizer|runtime error:' %s | head -60 >&2",
					 s->log_path);
				if (system(cmd) < 0)
					perror("system");
				return 99;
			}
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		}
		usleep(5000);
	}
	kill(s->pid, SIGKILL);
	waitpid(s->pid, &st, 0);
	s->pid = 0;
	return -1;
}

int e2e_connect(const e2e_server *s)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s->port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0)
		return -1;
	struct timeval tv = {30, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
		close(fd);
		return -1;
	}
	if (fd < 64) {
		free(pending[fd]);
		pending[fd] = NULL;
		pending_len[fd] = 0;
	}
	return fd;
}

int e2e_send(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
		if (n <= 0)
			return -1;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

char *e2e_header(const e2e_resp *r, const char *name)
{
	size_t nl = strlen(name);
	const char *p = strstr(r->headers, "\r\n");
	while (p && p[2]) {
		p += 2;
		if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
			const char *v = p + nl + 1;
			while (*v == ' ')
				v++;
			const char *e = strstr(v, "\r\n");
			size_t l = e ? (size_t)(e - v) : strlen(v);
			char *out = malloc(l + 1);
			memcpy(out, v, l);
			out[l] = 0;
			return out;
		}
		p = strstr(p, "\r\n");
	}
	return NULL;
}

int e2e_read_resp(int fd, e2e_resp *r)
{
	char *buf = NULL;
	size_t len = 0, cap = 0;
	memset(r, 0, sizeof *r);
	if (fd < 64 && pending[fd]) {
		buf = pending[fd];
		len = cap = pending_len[fd];
		pending[fd] = NULL;
		pending_len[fd] = 0;
	}
	size_t hdr_end = 0, need = (size_t)-1;
	for (;;) {
		if (!hdr_end) {
			for (size_t i = 3; i < len; i++)
				if (memcmp(buf + i - 3, "\r\n\r\n", 4) == 0) {
					hdr_end = i + 1;
					break;
				}
			if (hdr_end) {
				size_t hl = hdr_end < sizeof r->headers ? hdr_end : sizeof r->headers - 1;
				memcpy(r->headers, buf, hl);
				r->headers[hl] = 0;
				r->status = atoi(r->headers + 9);
				char *cl = e2e_header(r, "Content-Length");
				need = hdr_end + (cl ? strtoul(cl, NULL, 10) : 0);
				free(cl);
				if (r->status == 100) {
					/* interim response: drop it and report it alone */
					need = hdr_end;
				}
			}
		}
		if (hdr_end && len >= need)
			break;
		if (len + 4096 > cap) {
			cap = cap ? cap * 2 + 4096 : 65536;
			buf = realloc(buf, cap);
		}
		ssize_t n = recv(fd, buf + len, cap - len, 0);
		if (n <= 0) {
			free(buf);
			r->body = calloc(1, 1);
			return -1;
		}
		len += (size_t)n;
	}
	r->body_len = need - hdr_end;
	r->body = malloc(r->body_len + 1);
	memcpy(r->body, buf + hdr_end, r->body_len);
	r->body[r->body_len] = 0;
	if (len > need && fd < 64) {
		pending_len[fd] = len - need;
		pending[fd] = malloc(pending_len[fd]);
		memcpy(pending[fd], buf + need, pending_len[fd]);
	}
	free(buf);
	return 0;
}

void e2e_resp_free(e2e_resp *r)
{
	free(r->body);
	r->body = NULL;
}

int e2e_request(const e2e_server *s, const char *raw, e2e_resp *r)
{
	memset(r, 0, sizeof *r);   /* e2e_resp_free is safe even when the connect fails */
	int fd = e2e_connect(s);
	if (fd < 0)
		return -1;
	int rc = e2e_send(fd, raw, strlen(raw));
	if (rc == 0)
		rc = e2e_read_resp(fd, r);
	close(fd);
	return rc;
}

int e2e_digits(double (*rows)[64], int n, json_t **expected)
{
	const char *src = getenv("THAW_SRC") && *getenv("THAW_SRC") ? getenv("THAW_SRC") : ".";
	char cmd[1200];
	if (expected) {
		snprintf(cmd, sizeof cmd, "%s/tests/data/mlp_digits/expected.json", src);
		if (!(*expected = json_load_file(cmd, 0, NULL)))
			return -1;
	}
	snprintf(cmd, sizeof cmd, "zcat %s/tests/data/digits.csv.gz", src);
	FILE *p = popen(cmd, "r");
	int r = 0;
	for (; p && r < n; r++)
		for (int k = 0; k < 65; k++) {
			int v = 0;
			if (fscanf(p, "%d,", &v) != 1)
				goto done;
			if (k < 64)
				rows[r][k] = v / 16.0;
		}
done:
	if (p)
		pclose(p);   /* zcat may end on SIGPIPE: the rows read are what count */
	if (r < n && expected) {
		json_decref(*expected);
		*expected = NULL;
	}
	return r == n ? 0 : -1;
}

int e2e_call(const e2e_server *s, const char *method, const char *path, const char *extra,
	     const char *body, e2e_resp *out)
{
	size_t bl = body ? strlen(body) : 0, cap = bl + strlen(method) + strlen(path) +
		    (extra ? strlen(extra) : 0) + 128;
	char *raw = malloc(cap);
	e2e_resp r;
	memset(&r, 0, sizeof r);
	int st = -1;
	if (raw) {
		snprintf(raw, cap, "%s %s HTTP/1.1\r\nHost: t\r\n%sContent-Type: application/json\r\n"
			 "Content-Length: %zu\r\n\r\n%s", method, path, extra ? extra : "", bl,
			 body ? body : "");
		if (e2e_request(s, raw, &r) == 0)
			st = r.status;
		free(raw);
	}
	if (out && st >= 0)
		*out = r;
	else
		e2e_resp_free(&r);   /* a failed read leaves an empty body: freed, not leaked */
	if (out && st < 0)
		memset(out, 0, sizeof *out);
	return st;
}

int e2e_call_json(const e2e_server *s, const char *method, const char *path, const char *extra,
		  const char *body, json_t **out)
{
	e2e_resp r;
	int st = e2e_call(s, method, path, extra, body, &r);
	if (out)
		*out = st >= 0 ? json_loadb(r.body, r.body_len, JSON_ALLOW_NUL, NULL) : NULL;
	e2e_resp_free(&r);
	return st;
}

int e2e_is_closed(int fd, int ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	double deadline = now_s() + ms / 1000.0;
	while (now_s() < deadline) {
		int n = poll(&p, 1, 50);
		if (n > 0) {
			char b[256];
			ssize_t r = recv(fd, b, sizeof b, MSG_DONTWAIT);
			if (r == 0 || (r < 0 && errno != EAGAIN))
				return 1;
		}
	}
	return 0;
}

int e2e_log_contains(const e2e_server *s, const char *needle)
{
	FILE *f = fopen(s->log_path, "r");
	if (!f)
		return 0;
	char line[8192];
	int found = 0;
	while (!found && fgets(line, sizeof line, f))
		found = strstr(line, needle) != NULL;
	fclose(f);
	return found;
}

int e2e_wait_log(const e2e_server *s, const char *needle, int ms)
{
	double deadline = now_s() + ms / 1000.0;
	for (;;) {
		if (e2e_log_contains(s, needle))
			return 1;
		if (now_s() >= deadline)
			return 0;
		usleep(10000);
	}
}

int e2e_wait_refused(const e2e_server *s, int ms)
{
	double deadline = now_s() + ms / 1000.0;
	for (;;) {
		int fd = e2e_connect(s);
		if (fd < 0)
			return 1;
		close(fd);
		if (now_s() >= deadline)
			return 0;
		usleep(10000);
	}
}

const char *e2e_fn_state(const e2e_server *s, const char *name, char *buf, size_t len)
{
	char raw[512];
	e2e_resp r;
	buf[0] = 0;
	snprintf(raw, sizeof raw, "GET /v1/functions/%s HTTP/1.1\r\nHost: t\r\n\r\n", name);
	if (e2e_request(s, raw, &r) == 0 && r.status == 200) {
		json_t *o = json_loadb(r.body, r.body_len, 0, NULL);
		const char *st = json_string_value(json_object_get(o, "state"));
		snprintf(buf, len, "%s", st ? st : "");
		json_decref(o);
	}
	e2e_resp_free(&r);
	return buf;
}

int e2e_wait_state(const e2e_server *s, const char *name, const char *want, int ms)
{
	char st[64];
	double deadline = now_s() + ms / 1000.0;
	for (;;) {
		if (strcmp(e2e_fn_state(s, name, st, sizeof st), want) == 0)
			return 1;
		if (now_s() >= deadline) {
			fprintf(stderr, "  e2e: function %s is %s after %d ms, wanted %s\n", name,
				st[0] ? st : "(no answer)", ms, want);
			return 0;
		}
		usleep(10000);
	}
}

double e2e_now_s(void)
{
	return now_s();
}

/* ---- e2e_llama_write: a random llama as safetensors ---- */

#define LL_D 256
#define LL_F 512
#define LL_L 2
#define LL_H 4
#define LL_KVH 2
#define LL_HD (LL_D / LL_H)
#define LL_CTX E2E_LLAMA_CTX

static uint64_t ll_rng = 0x9e3779b97f4a7c15ull;

static float ll_frand(void)
{
	ll_rng ^= ll_rng << 13;
	ll_rng ^= ll_rng >> 7;
	ll_rng ^= ll_rng << 17;
	return (float)((ll_rng >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

typedef struct ll_tdesc {
	char name[96];
	int64_t rows, cols;   /* cols 0: a vector */
	float scale, base;    /* values base + scale * U(-1, 1) */
} ll_tdesc;

int e2e_llama_write(const char *dir, size_t vocab, int eos)
{
	ll_tdesc t[64];
	int n = 0;
	t[n] = (ll_tdesc){.rows = (int64_t)vocab, .cols = LL_D, .scale = 1.0f};
	snprintf(t[n++].name, 96, "model.embed_tokens.weight");
	for (int l = 0; l < LL_L; l++) {
		static const char *const nm[7] = {"self_attn.q_proj", "self_attn.k_proj",
			"self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj",
			"mlp.down_proj"};
		int64_t rows[7] = {LL_H * LL_HD, LL_KVH * LL_HD, LL_KVH * LL_HD, LL_D, LL_F, LL_F, LL_D};
		int64_t cols[7] = {LL_D, LL_D, LL_D, LL_H * LL_HD, LL_D, LL_D, LL_F};
		for (int j = 0; j < 7; j++) {
			t[n] = (ll_tdesc){.rows = rows[j], .cols = cols[j], .scale = 1.5f / sqrtf((float)cols[j])};
			snprintf(t[n++].name, 96, "model.layers.%d.%s.weight", l, nm[j]);
		}
		t[n] = (ll_tdesc){.rows = LL_D, .scale = 0.1f, .base = 1.0f};
		snprintf(t[n++].name, 96, "model.layers.%d.input_layernorm.weight", l);
		t[n] = (ll_tdesc){.rows = LL_D, .scale = 0.1f, .base = 1.0f};
		snprintf(t[n++].name, 96, "model.layers.%d.post_attention_layernorm.weight", l);
	}
	t[n] = (ll_tdesc){.rows = LL_D, .scale = 0.1f, .base = 1.0f};
	snprintf(t[n++].name, 96, "model.norm.weight");
	t[n] = (ll_tdesc){.rows = (int64_t)vocab, .cols = LL_D, .scale = 3.0f / sqrtf(LL_D)};
	snprintf(t[n++].name, 96, "lm_head.weight");
	json_t *hdr = json_object();
	size_t off = 0;
	for (int i = 0; i < n; i++) {
		size_t cnt = (size_t)t[i].rows * (size_t)(t[i].cols ? t[i].cols : 1);
		json_t *shape = t[i].cols ? json_pack("[I,I]", (json_int_t)t[i].rows, (json_int_t)t[i].cols)
					  : json_pack("[I]", (json_int_t)t[i].rows);
		json_object_set_new(hdr, t[i].name, json_pack("{s:s,s:o,s:[I,I]}", "dtype", "F32", "shape",
							      shape, "data_offsets", (json_int_t)off,
							      (json_int_t)(off + cnt * 4)));
		off += cnt * 4;
	}
	char *h = json_dumps(hdr, JSON_COMPACT);
	json_decref(hdr);
	size_t hl = strlen(h), pad = (8 - hl % 8) % 8;
	char path[700];
	snprintf(path, sizeof path, "%s/model.safetensors", dir);
	FILE *f = fopen(path, "wb");
	if (!f) {
		free(h);
		return -1;
	}
	uint64_t total = hl + pad;
	fwrite(&total, 8, 1, f);
	fwrite(h, 1, hl, f);
	for (size_t i = 0; i < pad; i++)
		fputc(' ', f);
	free(h);
	for (int i = 0; i < n; i++) {
		size_t cnt = (size_t)t[i].rows * (size_t)(t[i].cols ? t[i].cols : 1);
		for (size_t k = 0; k < cnt; k++) {
			float v = t[i].base + t[i].scale * ll_frand();
			fwrite(&v, 4, 1, f);
		}
	}
	fclose(f);
	snprintf(path, sizeof path, "%s/config.json", dir);
	f = fopen(path, "w");
	if (!f)
		return -1;
	fprintf(f, "{\"architectures\":[\"LlamaForCausalLM\"],\"model_type\":\"llama\","
		"\"hidden_size\":%d,\"intermediate_size\":%d,\"num_hidden_layers\":%d,"
		"\"num_attention_heads\":%d,\"num_key_value_heads\":%d,\"vocab_size\":%zu,"
		"\"max_position_embeddings\":%d,\"rms_norm_eps\":1e-5,\"rope_theta\":10000.0,"
		"\"hidden_act\":\"silu\",\"tie_word_embeddings\":false,\"eos_token_id\":%d}\n",
		LL_D, LL_F, LL_L, LL_H, LL_KVH, vocab, LL_CTX, (int)eos);
	fclose(f);
	return 0;
}

json_t *e2e_snapshot_digests(const char *path)
{
	snap_file *f = NULL;
	char err[256];
	json_t *o = json_object();
	if (!path || snap_open(&f, path, err, sizeof err) < 0)
		return o;
	size_t n = snap_image_size(f);
	unsigned char *img = malloc(n);
	if (img && snap_restore_host(f, img, n, NULL, NULL, err, sizeof err) == 0)
		for (size_t i = 0; i < snap_tensor_count(f); i++) {
			const snap_tensor *t = snap_tensor_at(f, i);
			uint64_t h = 1469598103934665603ull;
			for (uint64_t b = 0; b < t->nbytes; b++)
				h = (h ^ img[t->offset + b]) * 1099511628211ull;
			json_object_set_new(o, t->name, json_integer((json_int_t)(h >> 1)));
		}
	free(img);
	snap_close(f);
	return o;
}

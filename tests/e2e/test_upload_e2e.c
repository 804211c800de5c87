/* test_upload_e2e.c — getting models and job data onto a keyed `thaw serve` over HTTP
 * (PUT|GET|DELETE /v1/snapshots/NAME and /v1/data/NAME, runtime/api/rt_api_upload.c): a snapshot
 * larger than --max-body pushed over raw HTTP (201, its SHA-256), deployed and invoked with
 * the PyTorch reference's answer; listed with the revisions using it, 409 on replacing or
 * deleting it while used, ?force=1 replaces; a corrupt snapshot refused (400 naming the
 * problem) with nothing left behind; a client closing mid-upload and a stalled one (408) leave
 * no temporary file and the daemon serving; a declared size over --max-upload refused (413)
 * before any body byte; name attacks (400/404, nothing created); keys: 401 without one, 403
 * for a non-admin key; a 20 MiB data file (several buffer turns, backpressure) stored byte for
 * byte; job data pushed, then a fine-tune job reading it by name; the CLI: `thaw snapshot push`
 * (a corrupt file refused locally), `thaw snapshot list`, `thaw data push`, `thaw deploy
 * --snapshot ./local.thaw` and `thaw deploy --model DIR` (tests/data/llama_tiny). */
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <jansson.h>
#include <sodium.h>
#include "tests/e2e/e2e.h"
#include "tests/t.h"

static e2e_server srv;
static int srv_ok;
static const char *src;
static char data[600], work[600], snap_path[700];
static char k_admin[128], k_invoke[128];

static const char *bin(void)
{
	const char *b = getenv("THAW_BIN");
	return b ? b : "build/thaw";
}

/* runs a shell command line; its exit status, its last stdout line in last */
static int sh(const char *cmd, char *last, size_t cap)
{
	char line[4096];
	FILE *p = popen(cmd, "r");
	if (!p)
		return -1;
	if (last)
		last[0] = 0;
	while (fgets(line, sizeof line, p)) {
		line[strcspn(line, "\n")] = 0;
		if (last)
			snprintf(last, cap, "%s", line);
	}
	int st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* `thaw ARGS` against the server with the admin key, from the work directory */
static int cli(const char *args, char *last, size_t cap)
{
	char cmd[3000];
	snprintf(cmd, sizeof cmd, "cd %s && THAW_URL=http://127.0.0.1:%d THAW_API_KEY=%s %s %s 2>&1",
		 work, srv.port, k_admin, bin(), args);
	return sh(cmd, last, cap);
}

static int read_file(const char *path, char **buf, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return -1;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	*buf = malloc((size_t)n + 1);
	*len = *buf && fread(*buf, 1, (size_t)n, f) == (size_t)n ? (size_t)n : 0;
	fclose(f);
	return *len == (size_t)n ? 0 : -1;
}

/* PUT path with body (len bytes) and key (may be NULL); the status, the response in *out */
static int put(const char *path, const char *key, const char *body, size_t len, e2e_resp *out)
{
	char head[1024];
	snprintf(head, sizeof head, "PUT %s HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n%s%s%s\r\n",
		 path, len, key ? "Authorization: Bearer " : "", key ? key : "", key ? "\r\n" : "");
	int fd = e2e_connect(&srv);
	if (fd < 0)
		return -1;
	e2e_resp r;
	int st = -1;
	if (e2e_send(fd, head, strlen(head)) == 0) {
		e2e_send(fd, body, len);   /* an early answer may close before all is sent */
		if (e2e_read_resp(fd, &r) == 0) {
			st = r.status;
			if (out)
				*out = r;
			else
				e2e_resp_free(&r);
		}
	}
	close(fd);
	return st;
}

static int req(const char *method, const char *path, const char *key, json_t **out)
{
	char auth[200] = "";
	if (key)
		snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", key);
	return e2e_call_json(&srv, method, path, auth, NULL, out);
}

/* entries of DATA/sub whose name contains needle */
static int count_in(const char *sub, const char *needle)
{
	char dir[800];
	snprintf(dir, sizeof dir, "%s/%s", data, sub);
	DIR *d = opendir(dir);
	int n = 0;
	struct dirent *e;
	while (d && (e = readdir(d)))
		n += e->d_name[0] != '.' && strstr(e->d_name, needle) != NULL;
	if (d)
		closedir(d);
	return n;
}

/* polls until DATA/sub holds no temporary upload file */
static int wait_no_tmp(const char *sub, int ms)
{
	for (int i = 0; i < ms / 10; i++) {
		if (count_in(sub, ".tmp.") == 0)
			return 1;
		usleep(10000);
	}
	return count_in(sub, ".tmp.") == 0;
}

static void digest_of(const char *buf, size_t len, char *out)
{
	unsigned char h[crypto_hash_sha256_BYTES];
	char hex[2 * sizeof h + 1];
	crypto_hash_sha256(h, (const unsigned char *)buf, len);
	sodium_bin2hex(hex, sizeof hex, h, sizeof h);
	sprintf(out, "sha256:%s", hex);
}

static void setup(void)
{
	src = getenv("THAW_SRC");
	if (!src)
		src = ".";
	snprintf(data, sizeof data, "%s/up-data", t_tmpdir());
	snprintf(work, sizeof work, "%s/work", t_tmpdir());
	snprintf(snap_path, sizeof snap_path, "%s/digits.thaw", work);
	char cmd[3000];
	snprintf(cmd, sizeof cmd, "mkdir -p %s && %s snapshot pack %s/tests/data/mlp_digits/model.safetensors "
		 "-o %s --kind mlp -q", work, bin(), src, snap_path);
	int ok = sh(cmd, NULL, 0) == 0;
	snprintf(cmd, sizeof cmd, "%s keys create --scope admin --data %s 2>/dev/null", bin(), data);
	ok = ok && sh(cmd, k_admin, sizeof k_admin) == 0;
	snprintf(cmd, sizeof cmd, "%s keys create --scope 'invoke:*' --data %s 2>/dev/null", bin(), data);
	ok = ok && sh(cmd, k_invoke, sizeof k_invoke) == 0;
	T_CHECK(ok && !strncmp(k_admin, "thaw_", 5));
	/* bodies over 8 KiB are only accepted where they stream: the snapshot is 13 KiB */
	const char *args[] = {"--auth", "--no-access-log", "--max-body", "8192", "--max-upload", "33554432",
			      "--read-timeout", "1.5", "--job-checkpoint", "0.05", NULL};
	srv_ok = ok && e2e_start_in(&srv, data, args, NULL) == 0;
}

#define NEED_SERVER() do { if (!srv_ok) { T_CHECK(!"server did not start"); return; } } while (0)

static const char *digits_row =
	"{\"inputs\": [[0,0,0.3125,0.8125,0.5625,0.0625,0,0,0,0,0.8125,0.9375,0.625,0.9375,0.3125,0,0,"
	"0.1875,0.9375,0.125,0,0.6875,0.5,0,0,0.25,0.75,0,0,0.5,0.5,0,0,0.3125,0.5,0,0,0.5625,0.5,0,0,"
	"0.25,0.6875,0,0.0625,0.75,0.4375,0,0,0.125,0.875,0.3125,0.625,0.75,0,0,0,0,0.375,0.8125,0.625,"
	"0,0,0]]}";

static void test_push_deploy_invoke(void)
{
	NEED_SERVER();
	char *buf;
	size_t len;
	T_EQ_INT(read_file(snap_path, &buf, &len), 0);
	T_CHECK(len > 8192);   /* over --max-body: only a streamed body gets in */
	e2e_resp r;
	T_EQ_INT(put("/v1/snapshots/digits.thaw", k_admin, buf, len, &r), 201);
	json_t *o = json_loads(r.body ? r.body : "", 0, NULL);
	char want[80];
	digest_of(buf, len, want);
	T_EQ_STR(json_string_value(json_object_get(o, "digest")), want);
	T_EQ_INT(json_integer_value(json_object_get(o, "bytes")), (long long)len);
	T_EQ_STR(json_string_value(json_object_get(o, "kind")), "mlp");
	json_decref(o);
	e2e_resp_free(&r);
	/* deploy it by name and call it: the reference's label for this row is 0 */
	char auth[200];
	snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", k_admin);
	T_EQ_INT(e2e_call(&srv, "PUT", "/v1/functions/digits", auth,
			  "{\"kind\": \"mlp\", \"snapshot\": \"digits.thaw\"}", NULL), 201);
	json_t *out = NULL;
	snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", k_invoke);
	T_EQ_INT(e2e_call_json(&srv, "POST", "/v1/functions/digits/invoke", auth, digits_row, &out), 200);
	T_EQ_INT(json_integer_value(json_array_get(json_object_get(out, "labels"), 0)), 0);
	json_decref(out);
	/* listed with its user */
	T_EQ_INT(req("GET", "/v1/snapshots", k_admin, &o), 200);
	json_t *e = json_array_get(json_object_get(o, "snapshots"), 0);
	T_EQ_STR(json_string_value(json_object_get(e, "name")), "digits.thaw");
	T_EQ_STR(json_string_value(json_object_get(e, "kind")), "mlp");
	T_EQ_STR(json_string_value(json_object_get(json_array_get(json_object_get(e, "used_by"), 0),
						   "function")), "digits");
	json_decref(o);
	T_EQ_INT(req("GET", "/v1/snapshots/digits.thaw", k_admin, &o), 200);
	T_EQ_INT(json_integer_value(json_object_get(o, "tensors")), 4);
	json_decref(o);
	T_EQ_INT(req("GET", "/v1/snapshots/ghost.thaw", k_admin, NULL), 404);
	/* in use: replacing (before its body is read) and deleting are refused; force replaces */
	T_EQ_INT(put("/v1/snapshots/digits.thaw", k_admin, buf, len, &r), 409);
	T_CHECK(r.body && strstr(r.body, "force=1"));
	e2e_resp_free(&r);
	T_EQ_INT(req("DELETE", "/v1/snapshots/digits.thaw", k_admin, &o), 409);
	T_CHECK(strstr(json_string_value(json_object_get(o, "error")), "digits") != NULL);
	json_decref(o);
	T_EQ_INT(put("/v1/snapshots/digits.thaw?force=1", k_admin, buf, len, NULL), 200);
	/* a snapshot no revision uses can be deleted */
	T_EQ_INT(put("/v1/snapshots/spare.thaw", k_admin, buf, len, NULL), 201);
	T_EQ_INT(req("DELETE", "/v1/snapshots/spare.thaw", k_admin, NULL), 200);
	T_EQ_INT(count_in("snapshots", "spare"), 0);
	T_EQ_INT(req("DELETE", "/v1/snapshots/spare.thaw", k_admin, NULL), 404);
	free(buf);
}

static void test_corrupt_refused(void)
{
	NEED_SERVER();
	char *buf;
	size_t len;
	T_EQ_INT(read_file(snap_path, &buf, &len), 0);
	e2e_resp r;
	/* truncated */
	T_EQ_INT(put("/v1/snapshots/cut.thaw", k_admin, buf, len - 100, &r), 400);
	T_CHECK(r.body && strstr(r.body, "cut.thaw is not a valid snapshot") && strstr(r.body, "truncated"));
	T_CHECK(r.body && !strstr(r.body, ".tmp."));
	e2e_resp_free(&r);
	/* one flipped byte in the last chunk's payload */
	buf[len - 200] ^= 0x55;
	T_EQ_INT(put("/v1/snapshots/flip.thaw", k_admin, buf, len, &r), 400);
	T_CHECK(r.body && strstr(r.body, "not a valid snapshot"));
	e2e_resp_free(&r);
	/* not a snapshot at all */
	T_EQ_INT(put("/v1/snapshots/text.thaw", k_admin, "hello", 5, NULL), 400);
	T_EQ_INT(count_in("snapshots", "cut"), 0);
	T_EQ_INT(count_in("snapshots", "flip"), 0);
	T_EQ_INT(count_in("snapshots", "text"), 0);
	T_CHECK(wait_no_tmp("snapshots", 2000));
	free(buf);
}

static void test_client_gone_and_stalled(void)
{
	NEED_SERVER();
	char head[512], chunk[65536];
	memset(chunk, 'x', sizeof chunk);
	/* closes after 1 MiB of 8 */
	snprintf(head, sizeof head, "PUT /v1/data/gone.bin HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n"
		 "Authorization: Bearer %s\r\n\r\n", 8 << 20, k_admin);
	int fd = e2e_connect(&srv);
	T_EQ_INT(e2e_send(fd, head, strlen(head)), 0);
	for (int i = 0; i < 16; i++)
		e2e_send(fd, chunk, sizeof chunk);
	usleep(100000);
	T_EQ_INT(count_in("data", "gone.bin.tmp."), 1);   /* it was streaming into its file */
	close(fd);
	T_CHECK(wait_no_tmp("data", 5000));
	T_EQ_INT(count_in("data", "gone"), 0);
	T_EQ_INT(e2e_call(&srv, "GET", "/healthz", NULL, NULL, NULL), 200);
	/* sends part, then nothing: 408 after --read-timeout, file gone */
	snprintf(head, sizeof head, "PUT /v1/data/stall.bin HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n"
		 "Authorization: Bearer %s\r\n\r\n", 1 << 20, k_admin);
	fd = e2e_connect(&srv);
	T_EQ_INT(e2e_send(fd, head, strlen(head)), 0);
	T_EQ_INT(e2e_send(fd, chunk, 1000), 0);
	e2e_resp r;
	double t0 = e2e_now_s();
	T_EQ_INT(e2e_read_resp(fd, &r), 0);
	T_EQ_INT(r.status, 408);
	T_CHECK(e2e_now_s() - t0 < 10);
	e2e_resp_free(&r);
	close(fd);
	T_CHECK(wait_no_tmp("data", 5000));
	T_EQ_INT(count_in("data", "stall"), 0);
	/* a slow upload whose bytes keep coming outlives --read-timeout (1.5 s) */
	snprintf(head, sizeof head, "PUT /v1/data/slow.bin HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n"
		 "Authorization: Bearer %s\r\n\r\n", 10 * 4096, k_admin);
	fd = e2e_connect(&srv);
	T_EQ_INT(e2e_send(fd, head, strlen(head)), 0);
	for (int i = 0; i < 10; i++) {
		usleep(300000);
		T_EQ_INT(e2e_send(fd, chunk, 4096), 0);
	}
	T_EQ_INT(e2e_read_resp(fd, &r), 0);
	T_EQ_INT(r.status, 201);
	e2e_resp_free(&r);
	close(fd);
	T_EQ_INT(req("DELETE", "/v1/data/slow.bin", k_admin, NULL), 200);
}

static void test_oversize_before_reading(void)
{
	NEED_SERVER();
	char head[512];
	snprintf(head, sizeof head, "PUT /v1/data/huge.bin HTTP/1.1\r\nHost: t\r\nContent-Length: %lld\r\n"
		 "Authorization: Bearer %s\r\nExpect: 100-continue\r\n\r\n", 1LL << 40, k_admin);
	int fd = e2e_connect(&srv);
	T_EQ_INT(e2e_send(fd, head, strlen(head)), 0);
	e2e_resp r;
	T_EQ_INT(e2e_read_resp(fd, &r), 0);   /* answered without a body byte sent, no 100 */
	T_EQ_INT(r.status, 413);
	T_CHECK(r.body && strstr(r.body, "--max-upload"));
	e2e_resp_free(&r);
	T_CHECK(e2e_is_closed(fd, 5000));
	close(fd);
	T_EQ_INT(count_in("data", "huge"), 0);
	/* chunked, growing past the limit: 413 and close, nothing kept */
	snprintf(head, sizeof head, "PUT /v1/data/grow.bin HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: "
		 "chunked\r\nAuthorization: Bearer %s\r\n\r\n", k_admin);
	fd = e2e_connect(&srv);
	T_EQ_INT(e2e_send(fd, head, strlen(head)), 0);
	static char chunk[(1 << 20) + 16];
	int hl = sprintf(chunk, "100000\r\n");
	memset(chunk + hl, 'y', 1 << 20);
	memcpy(chunk + hl + (1 << 20), "\r\n", 2);
	for (int i = 0; i < 40; i++)
		if (e2e_send(fd, chunk, (size_t)hl + (1 << 20) + 2) < 0)
			break;
	T_EQ_INT(e2e_read_resp(fd, &r), 0);
	T_EQ_INT(r.status, 413);
	e2e_resp_free(&r);
	close(fd);
	T_CHECK(wait_no_tmp("data", 5000));
	T_EQ_INT(count_in("data", "grow"), 0);
}

static void test_names_and_keys(void)
{
	NEED_SERVER();
	static const char *const bad[] = {"/v1/snapshots/..", "/v1/snapshots/.hidden", "/v1/data/a%2Fb",
					  "/v1/data/..%2F..%2Fregistry.db", "/v1/snapshots/a%00b",
					  "/v1/data/x.tmp.abcdef", "/v1/data/sp%20ace"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		int st = put(bad[i], k_admin, "abc", 3, NULL);
		if (st != 400)
			fprintf(stderr, "  %s: %d\n", bad[i], st);
		T_EQ_INT(st, 400);
	}
	char path[400];
	snprintf(path, sizeof path, "/v1/data/%0201d", 7);
	T_EQ_INT(put(path, k_admin, "abc", 3, NULL), 400);
	T_EQ_INT(put("/v1/data/a/b", k_admin, "abc", 3, NULL), 404);   /* no such route */
	T_EQ_INT(req("DELETE", "/v1/data/..", k_admin, NULL), 400);
	T_EQ_INT(req("GET", "/v1/snapshots/.x", k_admin, NULL), 400);
	/* keys: none 401, non-admin 403 (before any body byte is kept) */
	T_EQ_INT(put("/v1/data/k.bin", NULL, "abc", 3, NULL), 401);
	T_EQ_INT(put("/v1/data/k.bin", k_invoke, "abc", 3, NULL), 403);
	T_EQ_INT(req("GET", "/v1/snapshots", k_invoke, NULL), 403);
	T_EQ_INT(req("GET", "/v1/data", NULL, NULL), 401);
	T_EQ_INT(req("DELETE", "/v1/snapshots/digits.thaw", k_invoke, NULL), 403);
	T_EQ_INT(count_in("data", "k.bin"), 0);
	T_EQ_INT(count_in("data", "abc") + count_in("data", "registry"), 0);
}

static void test_big_data_byte_for_byte(void)
{
	NEED_SERVER();
	size_t len = 20u << 20;
	char *buf = malloc(len);
	for (size_t i = 0; i < len; i++)
		buf[i] = (char)(i * 2654435761u >> 13);
	e2e_resp r;
	T_EQ_INT(put("/v1/data/big.bin", k_admin, buf, len, &r), 201);
	char want[80];
	digest_of(buf, len, want);
	json_t *o = json_loads(r.body ? r.body : "", 0, NULL);
	T_EQ_STR(json_string_value(json_object_get(o, "digest")), want);
	json_decref(o);
	e2e_resp_free(&r);
	char path[800], *got;
	size_t glen;
	snprintf(path, sizeof path, "%s/data/big.bin", data);
	T_EQ_INT(read_file(path, &got, &glen), 0);
	T_CHECK(glen == len && memcmp(got, buf, len) == 0);
	free(got);
	free(buf);
	T_EQ_INT(req("GET", "/v1/data", k_admin, &o), 200);
	T_EQ_INT(json_integer_value(json_object_get(json_array_get(json_object_get(o, "data"), 0), "bytes")),
		 (long long)len);
	json_decref(o);
	T_EQ_INT(req("DELETE", "/v1/data/big.bin", k_admin, NULL), 200);
	T_EQ_INT(count_in("data", "big"), 0);
}

static void test_data_then_finetune(void)
{
	NEED_SERVER();
	char path[800], *buf;
	size_t len;
	snprintf(path, sizeof path, "%s/tests/data/digits.csv.gz", src);
	T_EQ_INT(read_file(path, &buf, &len), 0);
	T_EQ_INT(put("/v1/data/digits.csv.gz", k_admin, buf, len, NULL), 201);
	free(buf);
	char auth[200];
	snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", k_admin);
	json_t *o = NULL;
	T_EQ_INT(e2e_call_json(&srv, "POST", "/v1/jobs", auth,
			       "{\"type\": \"finetune\", \"function\": \"digits\", \"revision\": 1, \"params\": "
			       "{\"data\": \"digits.csv.gz\", \"epochs\": 2, \"learning_rate\": 0.003, "
			       "\"batch_size\": 16, \"feature_scale\": 0.0625, \"seed\": 5}}", &o), 202);
	long long id = json_integer_value(json_object_get(o, "id"));
	json_decref(o);
	o = NULL;
	const char *st = "";
	for (int i = 0; i < 1200; i++) {
		char p[64];
		json_decref(o);
		o = NULL;
		snprintf(p, sizeof p, "/v1/jobs/%lld", id);
		e2e_call_json(&srv, "GET", p, auth, NULL, &o);
		st = json_string_value(json_object_get(o, "state"));
		st = st ? st : "";
		if (!strcmp(st, "succeeded") || !strcmp(st, "failed") || !strcmp(st, "cancelled"))
			break;
		usleep(50000);
	}
	if (strcmp(st, "succeeded"))
		fprintf(stderr, "  job: %s %s\n", st, json_string_value(json_object_get(o, "error")));
	T_EQ_STR(st, "succeeded");
	T_CHECK(json_real_value(json_object_get(json_object_get(o, "metrics"), "accuracy")) > 0.5);
	json_decref(o);
}

static void test_cli(void)
{
	NEED_SERVER();
	char last[4096], cmd[1600];
	/* push, then list */
	T_EQ_INT(cli("snapshot push digits.thaw --name cli.thaw", last, sizeof last), 0);
	T_CHECK(strstr(last, "stored cli.thaw") && strstr(last, "sha256:"));
	T_EQ_INT(cli("snapshot list", last, sizeof last), 0);
	T_EQ_INT(cli("snapshot list --json", last, sizeof last), 0);
	T_CHECK(strstr(last, "\"cli.thaw\"") && strstr(last, "\"digits.thaw\""));
	/* a corrupt file is refused before it is sent */
	snprintf(cmd, sizeof cmd, "head -c 9000 %s > %s/short.thaw", snap_path, work);
	T_EQ_INT(sh(cmd, NULL, 0), 0);
	T_EQ_INT(cli("snapshot push short.thaw", last, sizeof last), 1);
	T_CHECK(strstr(last, "truncated") != NULL);
	T_EQ_INT(count_in("snapshots", "short"), 0);
	/* deploy a relative local path: pushed first */
	snprintf(cmd, sizeof cmd, "cp %s %s/local.thaw", snap_path, work);
	T_EQ_INT(sh(cmd, NULL, 0), 0);
	T_EQ_INT(cli("deploy digits2 --kind mlp --snapshot ./local.thaw", last, sizeof last), 0);
	T_CHECK(strstr(last, "deployed digits2 revision 1") != NULL);
	T_EQ_INT(count_in("snapshots", "local.thaw"), 1);
	json_t *out = NULL;
	char auth[200];
	snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", k_invoke);
	T_EQ_INT(e2e_call_json(&srv, "POST", "/v1/functions/digits2/invoke", auth, digits_row, &out), 200);
	T_EQ_INT(json_integer_value(json_array_get(json_object_get(out, "labels"), 0)), 0);
	json_decref(out);
	/* a Hugging Face directory: packed (tokenizer-less here), pushed, deployed */
	snprintf(cmd, sizeof cmd, "deploy tiny --kind llama --model %s/tests/data/llama_tiny", src);
	T_EQ_INT(cli(cmd, last, sizeof last), 0);
	T_CHECK(strstr(last, "deployed tiny revision 1") != NULL);
	T_EQ_INT(count_in("snapshots", "tiny-"), 1);
	json_t *o = NULL;
	T_EQ_INT(req("GET", "/v1/functions/tiny", k_admin, &o), 200);
	T_EQ_STR(json_string_value(json_object_get(o, "kind")), "llama");
	json_decref(o);
	T_EQ_INT(cli("snapshot rm local.thaw", last, sizeof last), 1);   /* digits2 uses it */
	T_CHECK(strstr(last, "409") != NULL);
	T_EQ_INT(cli("snapshot rm cli.thaw", last, sizeof last), 0);
	/* data */
	snprintf(cmd, sizeof cmd, "data push %s/tests/data/digits.csv.gz --name d2.csv.gz", src);
	T_EQ_INT(cli(cmd, last, sizeof last), 0);
	T_EQ_INT(count_in("data", "d2.csv.gz"), 1);
	T_EQ_INT(cli("data list", last, sizeof last), 0);
	T_EQ_INT(cli("data rm d2.csv.gz", last, sizeof last), 0);
	T_EQ_INT(count_in("data", "d2.csv.gz"), 0);
	T_EQ_INT(cli("data push /nonexistent/file", last, sizeof last), 1);
	T_EQ_INT(cli("data frob", last, sizeof last), 2);
}

void t_main(void)
{
	setup();
	T_RUN(test_push_deploy_invoke);
	T_RUN(test_corrupt_refused);
	T_RUN(test_client_gone_and_stalled);
	T_RUN(test_oversize_before_reading);
	T_RUN(test_names_and_keys);
	T_RUN(test_big_data_byte_for_byte);
	T_RUN(test_data_then_finetune);
	T_RUN(test_cli);
	if (srv_ok)
		T_EQ_INT(e2e_stop(&srv, SIGTERM, 20), 0);
}

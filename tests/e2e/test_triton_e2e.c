/* test_triton_e2e.c — the Open Inference Protocol as tritonclient's HTTP client speaks it.
 * tritonclient is not installable here, so the requests are rebuilt byte for byte from its
 * source (tritonclient/http/_utils.py _get_inference_request, _infer_input.py,
 * _requested_output.py, InferenceServerClient.infer): the request dict in its key order
 * ("id", "inputs", "outputs", "parameters") dumped by rapidjson without blanks, floats as
 * Python's repr, binary inputs appended after the JSON with "binary_data_size" and the
 * Inference-Header-Content-Length header, "binary_data_output": true when no outputs are
 * named, per-output {"classification": N, "binary_data": B}, and the body compressed with
 * gzip (gzip.compress) or deflate (zlib.compress) under Content-Encoding, Accept-Encoding for
 * the answer. The answers are decoded the way InferResult does (decompress per
 * Content-Encoding, JSON of Inference-Header-Content-Length bytes, binary buffers in output
 * order, BYTES as 4-byte length + bytes) and checked against the PyTorch reference logits of
 * tests/data/mlp_digits. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <jansson.h>
#include <zlib.h>
#include "tests/e2e/e2e.h"
#include "tests/t.h"

static e2e_server srv;
static int srv_ok;
static double rows[16][64];
static json_t *expected;

/* Python's repr of a float (shortest round trip, ".0" on integral values) */
static void pyrepr(double v, char *b, size_t cap)
{
	for (int p = 1; p <= 17; p++) {
		snprintf(b, cap, "%.*g", p, v);
		if (strtod(b, NULL) == v)
			break;
	}
	if (!strpbrk(b, ".eE"))
		strncat(b, ".0", cap - strlen(b) - 1);
}

/* the JSON tensor list of tritonclient for rows [first, first + n) of the digits as FP32:
 * JSON data (binary == 0) or binary_data_size (binary == 1) */
static char *input_json(int first, int n, int binary)
{
	size_t cap = 64 * 1024, l = 0;
	char *s = malloc(cap);
	l += (size_t)snprintf(s + l, cap - l, "{\"name\":\"INPUT0\",\"shape\":[%d,64],\"datatype\":\"FP32\"", n);
	if (binary) {
		l += (size_t)snprintf(s + l, cap - l, ",\"parameters\":{\"binary_data_size\":%d}}", n * 64 * 4);
		return s;
	}
	l += (size_t)snprintf(s + l, cap - l, ",\"data\":[");
	for (int r = first; r < first + n; r++)
		for (int k = 0; k < 64; k++) {
			char v[40];
			pyrepr((double)(float)rows[r][k], v, sizeof v);
			l += (size_t)snprintf(s + l, cap - l, "%s%s", (r == first && k == 0) ? "" : ",", v);
		}
	snprintf(s + l, cap - l, "]}");
	return s;
}

static void f32_bytes(int first, int n, unsigned char *out)
{
	for (int r = 0; r < n; r++)
		for (int k = 0; k < 64; k++) {
			float f = (float)rows[first + r][k];
			memcpy(out + (r * 64 + k) * 4, &f, 4);
		}
}

/* gzip (wbits 31) or zlib (15) compression of in; malloc'd */
static unsigned char *zcompress(const unsigned char *in, size_t n, int wbits, size_t *out_n)
{
	z_stream z;
	memset(&z, 0, sizeof z);
	deflateInit2(&z, 9, Z_DEFLATED, wbits, 8, Z_DEFAULT_STRATEGY);
	size_t cap = deflateBound(&z, (uLong)n);
	unsigned char *o = malloc(cap);
	z.next_in = (unsigned char *)in;
	z.avail_in = (uInt)n;
	z.next_out = o;
	z.avail_out = (uInt)cap;
	deflate(&z, Z_FINISH);
	*out_n = cap - z.avail_out;
	deflateEnd(&z);
	return o;
}

static unsigned char *zdecompress(const unsigned char *in, size_t n, int wbits, size_t *out_n)
{
	z_stream z;
	memset(&z, 0, sizeof z);
	inflateInit2(&z, wbits);
	size_t cap = 1 << 20;
	unsigned char *o = malloc(cap);
	z.next_in = (unsigned char *)in;
	z.avail_in = (uInt)n;
	z.next_out = o;
	z.avail_out = (uInt)cap;
	int zr = inflate(&z, Z_FINISH);
	*out_n = cap - z.avail_out;
	inflateEnd(&z);
	if (zr != Z_STREAM_END) {
		free(o);
		return NULL;
	}
	return o;
}

typedef struct answer {
	int status;
	json_t *head;              /* the JSON part */
	unsigned char *bin;        /* the binary part (after the JSON) */
	size_t bin_len;
	char encoding[16];         /* Content-Encoding of the answer, "" when none */
	unsigned char *raw;        /* owns the decompressed body */
} answer;

/* POSTs body to /v2/models/digits/infer with tritonclient's headers and decodes the answer as
 * InferResult does */
static void infer(const unsigned char *body, size_t n, long json_size, const char *extra_hdrs,
		  answer *a)
{
	char hdr[1024];
	int hl = snprintf(hdr, sizeof hdr, "POST /v2/models/digits/infer HTTP/1.1\r\n"
			  "Host: 127.0.0.1:%d\r\nUser-Agent: python/gevent-http-client-2.0.11\r\n"
			  "%s", srv.port, extra_hdrs ? extra_hdrs : "");
	if (json_size >= 0)
		hl += snprintf(hdr + hl, sizeof hdr - (size_t)hl, "Inference-Header-Content-Length: %ld\r\n",
			       json_size);
	hl += snprintf(hdr + hl, sizeof hdr - (size_t)hl, "Content-Length: %zu\r\n\r\n", n);
	char *raw = malloc((size_t)hl + n + 1);
	memcpy(raw, hdr, (size_t)hl);
	memcpy(raw + hl, body, n);
	raw[hl + n] = 0;
	memset(a, 0, sizeof *a);
	e2e_resp r;
	int fd = e2e_connect(&srv);
	if (fd < 0 || e2e_send(fd, raw, (size_t)hl + n) < 0 || e2e_read_resp(fd, &r) < 0) {
		a->status = -1;
		free(raw);
		return;
	}
	free(raw);
	a->status = r.status;
	char *ce = e2e_header(&r, "Content-Encoding"), *ih = e2e_header(&r, "Inference-Header-Content-Length");
	size_t len = r.body_len;
	unsigned char *b = malloc(len + 1);
	memcpy(b, r.body, len);
	if (ce) {
		snprintf(a->encoding, sizeof a->encoding, "%s", ce);
		size_t dn = 0;
		unsigned char *d = zdecompress(b, len, strcmp(ce, "gzip") == 0 ? 31 : 15, &dn);
		free(b);
		b = d;
		len = dn;
	}
	a->raw = b;
	size_t jl = ih ? strtoul(ih, NULL, 10) : len;
	if (b && jl <= len) {
		a->head = json_loadb((const char *)b, jl, 0, NULL);
		a->bin = b + jl;
		a->bin_len = len - jl;
	}
	if (a->status != 200)
		fprintf(stderr, "  -> %d %.*s\n", a->status, (int)r.body_len, r.body);
	free(ce);
	free(ih);
	e2e_resp_free(&r);
	close(fd);
}

static void answer_free(answer *a)
{
	json_decref(a->head);
	free(a->raw);
}

static json_t *output(const answer *a, const char *name)
{
	size_t i;
	json_t *o;
	json_array_foreach(json_object_get(a->head, "outputs"), i, o)
		if (!strcmp(json_string_value(json_object_get(o, "name")), name))
			return o;
	return NULL;
}

/* start of output name's bytes in the binary part (InferResult's buffer map) */
static const unsigned char *binary_of(const answer *a, const char *name, size_t *n)
{
	size_t i, off = 0;
	json_t *o;
	json_array_foreach(json_object_get(a->head, "outputs"), i, o) {
		json_t *sz = json_object_get(json_object_get(o, "parameters"), "binary_data_size");
		if (!sz)
			continue;
		if (!strcmp(json_string_value(json_object_get(o, "name")), name)) {
			*n = (size_t)json_integer_value(sz);
			return off + *n <= a->bin_len ? a->bin + off : NULL;
		}
		off += (size_t)json_integer_value(sz);
	}
	return NULL;
}

/* reference softmax probabilities of row r */
static void ref_probs(int r, double *p)
{
	json_t *lg = json_array_get(json_object_get(expected, "first_logits"), (size_t)r);
	double mx = -1e300, sum = 0;
	for (int k = 0; k < 10; k++)
		mx = fmax(mx, json_number_value(json_array_get(lg, (size_t)k)));
	for (int k = 0; k < 10; k++)
		sum += p[k] = exp(json_number_value(json_array_get(lg, (size_t)k)) - mx);
	for (int k = 0; k < 10; k++)
		p[k] /= sum;
}

static int ref_label(int r)
{
	return (int)json_integer_value(json_array_get(json_object_get(expected, "labels"), (size_t)r));
}

static void setup(void)
{
	const char *bin = t_bin(), *src = t_src();
	char cmd[3000];
	if (e2e_digits(rows, 16, &expected) < 0)
		expected = NULL;
	const char *args[] = {"--no-access-log", NULL};
	if (!expected || e2e_start(&srv, args, NULL) < 0)
		return;
	snprintf(cmd, sizeof cmd, "mkdir -p %s/snapshots && %s snapshot pack "
		 "%s/tests/data/mlp_digits/model.safetensors -o %s/snapshots/digits.thaw --kind mlp --quiet",
		 srv.data_dir, bin, src, srv.data_dir);
	if (system(cmd) != 0)
		return;
	e2e_resp r;
	const char *m = "{\"kind\":\"mlp\",\"snapshot\":\"digits.thaw\"}";
	char put[256];
	snprintf(put, sizeof put, "PUT /v1/functions/digits HTTP/1.1\r\nHost: t\r\nContent-Length: %zu"
		 "\r\n\r\n%s", strlen(m), m);
	srv_ok = e2e_request(&srv, put, &r) == 0 && r.status == 201;
	e2e_resp_free(&r);
}

#define NEED() do { if (!srv_ok) { T_CHECK(!"setup failed"); return; } } while (0)

/* InferInput.set_data_from_numpy(x, binary_data=False), InferRequestedOutput(binary_data=False)
 * for both outputs, request_id "req-7": all JSON */
static void test_json_in_json_out(void)
{
	NEED();
	char *in = input_json(0, 2, 0);
	size_t cap = strlen(in) + 512;
	char *body = malloc(cap);
	snprintf(body, cap, "{\"id\":\"req-7\",\"inputs\":[%s],\"outputs\":[{\"name\":\"OUTPUT0\","
		 "\"parameters\":{\"binary_data\":false}},{\"name\":\"LABEL\",\"parameters\":"
		 "{\"binary_data\":false}}]}", in);
	answer a;
	infer((const unsigned char *)body, strlen(body), -1, NULL, &a);
	T_EQ_INT(a.status, 200);
	T_EQ_STR(json_string_value(json_object_get(a.head, "id")), "req-7");
	T_EQ_STR(json_string_value(json_object_get(a.head, "model_name")), "digits");
	json_t *o = output(&a, "OUTPUT0"), *l = output(&a, "LABEL");
	T_EQ_STR(json_string_value(json_object_get(o, "datatype")), "FP32");
	T_EQ_INT(json_array_size(json_object_get(o, "data")), 20);
	double maxerr = 0;
	for (int r = 0; r < 2; r++) {
		double p[10];
		ref_probs(r, p);
		for (int k = 0; k < 10; k++)
			maxerr = fmax(maxerr, fabs(json_number_value(json_array_get(json_object_get(o, "data"),
							(size_t)(r * 10 + k))) - p[k]));
		T_EQ_INT(json_integer_value(json_array_get(json_object_get(l, "data"), (size_t)r)), ref_label(r));
	}
	T_CHECK(maxerr < 1e-4);
	T_EQ_INT((long)a.bin_len, 0);
	answer_free(&a);
	free(body);
	free(in);
}

/* binary input (the default binary_data=True), no outputs named: parameters
 * {"binary_data_output": true}, so every output comes back binary */
static void test_binary_in_binary_out(void)
{
	NEED();
	char *in = input_json(2, 4, 1);
	char js[1024];
	int jl = snprintf(js, sizeof js, "{\"inputs\":[%s],\"parameters\":{\"binary_data_output\":true}}", in);
	size_t n = (size_t)jl + 4 * 64 * 4;
	unsigned char *body = malloc(n);
	memcpy(body, js, (size_t)jl);
	f32_bytes(2, 4, body + jl);
	answer a;
	infer(body, n, jl, NULL, &a);
	T_EQ_INT(a.status, 200);
	size_t on = 0, ln = 0;
	const unsigned char *ob = binary_of(&a, "OUTPUT0", &on), *lb = binary_of(&a, "LABEL", &ln);
	T_CHECK(ob && lb && on == 4 * 10 * 4 && ln == 4 * 8);
	T_CHECK(json_object_get(output(&a, "OUTPUT0"), "data") == NULL);
	double maxerr = 0;
	for (int r = 0; ob && lb && r < 4; r++) {
		double p[10];
		ref_probs(2 + r, p);
		for (int k = 0; k < 10; k++) {
			float f;
			memcpy(&f, ob + (r * 10 + k) * 4, 4);
			maxerr = fmax(maxerr, fabs(f - p[k]));
		}
		int64_t lab;
		memcpy(&lab, lb + r * 8, 8);
		T_EQ_INT((int)lab, ref_label(2 + r));
	}
	T_CHECK(maxerr < 1e-4);
	answer_free(&a);
	free(body);
	free(in);
}

/* InferRequestedOutput("OUTPUT0", binary_data=True, class_count=3) and LABEL as JSON */
static void test_classification(void)
{
	NEED();
	char *in = input_json(6, 3, 1);
	char js[1024];
	int jl = snprintf(js, sizeof js, "{\"inputs\":[%s],\"outputs\":[{\"name\":\"OUTPUT0\","
			  "\"parameters\":{\"classification\":3,\"binary_data\":true}},{\"name\":\"LABEL\","
			  "\"parameters\":{\"binary_data\":false}}]}", in);
	size_t n = (size_t)jl + 3 * 64 * 4;
	unsigned char *body = malloc(n);
	memcpy(body, js, (size_t)jl);
	f32_bytes(6, 3, body + jl);
	answer a;
	infer(body, n, jl, NULL, &a);
	T_EQ_INT(a.status, 200);
	json_t *o = output(&a, "OUTPUT0");
	T_EQ_STR(json_string_value(json_object_get(o, "datatype")), "BYTES");
	T_EQ_INT(json_integer_value(json_array_get(json_object_get(o, "shape"), 0)), 3);
	T_EQ_INT(json_integer_value(json_array_get(json_object_get(o, "shape"), 1)), 3);
	size_t bn = 0;
	const unsigned char *b = binary_of(&a, "OUTPUT0", &bn);
	T_CHECK(b != NULL);
	size_t off = 0;
	for (int r = 0; b && r < 3; r++) {
		double p[10];
		ref_probs(6 + r, p);
		double prev = 2;
		for (int j = 0; j < 3; j++) {
			uint32_t l = (uint32_t)b[off] | (uint32_t)b[off + 1] << 8 | (uint32_t)b[off + 2] << 16 |
				     (uint32_t)b[off + 3] << 24;
			char s[64] = "";
			T_CHECK(l < sizeof s && off + 4 + l <= bn);
			if (l >= sizeof s || off + 4 + l > bn)
				break;
			memcpy(s, b + off + 4, l);
			off += 4 + l;
			double v;
			int idx;
			T_EQ_INT(sscanf(s, "%lf:%d", &v, &idx), 2);
			T_CHECK(idx >= 0 && idx < 10 && fabs(v - p[idx]) < 1e-4 && v <= prev);
			prev = v;
			if (j == 0)
				T_EQ_INT(idx, ref_label(6 + r));
			/* nothing left out ranks above it (beyond near-ties of tiny probabilities) */
			int above = 0;
			for (int k = 0; k < 10; k++)
				above += p[k] > p[idx] + 1e-6;
			T_CHECK(above <= j);
		}
	}
	T_EQ_INT((long)off, (long)bn);
	T_EQ_INT(json_integer_value(json_array_get(json_object_get(output(&a, "LABEL"), "data"), 0)),
		 ref_label(6));
	answer_free(&a);
	free(body);
	free(in);
}

/* request_compression_algorithm gzip / deflate (and the same for the response) */
static void test_compressed(void)
{
	NEED();
	char *in = input_json(9, 2, 1);
	char js[1024];
	int jl = snprintf(js, sizeof js, "{\"inputs\":[%s],\"outputs\":[{\"name\":\"LABEL\","
			  "\"parameters\":{\"binary_data\":true}},{\"name\":\"OUTPUT0\",\"parameters\":"
			  "{\"binary_data\":true}}]}", in);
	size_t n = (size_t)jl + 2 * 64 * 4;
	unsigned char *body = malloc(n);
	memcpy(body, js, (size_t)jl);
	f32_bytes(9, 2, body + jl);
	for (int enc = 0; enc < 2; enc++) {
		size_t zn;
		unsigned char *z = zcompress(body, n, enc == 0 ? 31 : 15, &zn);
		char h[200];
		snprintf(h, sizeof h, "Content-Encoding: %s\r\nAccept-Encoding: %s\r\n",
			 enc == 0 ? "gzip" : "deflate", enc == 0 ? "gzip" : "deflate");
		answer a;
		infer(z, zn, jl, h, &a);
		T_EQ_INT(a.status, 200);
		T_EQ_STR(a.encoding, enc == 0 ? "gzip" : "deflate");
		size_t ln = 0, on = 0;
		const unsigned char *lb = binary_of(&a, "LABEL", &ln), *ob = binary_of(&a, "OUTPUT0", &on);
		T_CHECK(lb && ob && ln == 16 && on == 80);
		for (int r = 0; lb && r < 2; r++) {
			int64_t lab;
			memcpy(&lab, lb + r * 8, 8);
			T_EQ_INT((int)lab, ref_label(9 + r));
		}
		if (ob) {
			double p[10];
			float f;
			ref_probs(10, p);
			memcpy(&f, ob + 40 + 4 * 3, 4);
			T_CHECK(fabs(f - p[3]) < 1e-4);
		}
		answer_free(&a);
		free(z);
	}
	/* an encoding thaw does not know: 415; a corrupt gzip body: 400 */
	answer a;
	infer(body, n, jl, "Content-Encoding: br\r\n", &a);
	T_EQ_INT(a.status, 415);
	T_CHECK(strstr(json_string_value(json_object_get(a.head, "error")), "gzip, deflate") != NULL);
	answer_free(&a);
	infer(body, n, jl, "Content-Encoding: gzip\r\n", &a);
	T_EQ_INT(a.status, 400);
	answer_free(&a);
	/* a truncated deflate body: 400 */
	size_t zn;
	unsigned char *z = zcompress(body, n, 15, &zn);
	infer(z, zn / 2, jl, "Content-Encoding: deflate\r\n", &a);
	T_EQ_INT(a.status, 400);
	answer_free(&a);
	free(z);
	free(body);
	free(in);
}

/* what tritonclient can ask that thaw does not do: clear 400s */
static void test_refusals(void)
{
	NEED();
	char *in = input_json(0, 1, 0);
	char body[8192];
	answer a;
	snprintf(body, sizeof body, "{\"inputs\":[%s],\"outputs\":[{\"name\":\"PROBS\",\"parameters\":"
		 "{\"binary_data\":true}}]}", in);
	infer((const unsigned char *)body, strlen(body), -1, NULL, &a);
	T_EQ_INT(a.status, 400);
	T_CHECK(strstr(json_string_value(json_object_get(a.head, "error")), "unexpected inference output 'PROBS'"));
	answer_free(&a);
	snprintf(body, sizeof body, "{\"inputs\":[%s],\"outputs\":[{\"name\":\"OUTPUT0\",\"parameters\":"
		 "{\"classification\":0,\"binary_data\":true}}]}", in);
	infer((const unsigned char *)body, strlen(body), -1, NULL, &a);
	T_EQ_INT(a.status, 400);
	answer_free(&a);
	const char *shm = "{\"inputs\":[{\"name\":\"INPUT0\",\"shape\":[1,64],\"datatype\":\"FP32\","
			  "\"parameters\":{\"shared_memory_region\":\"r0\",\"shared_memory_byte_size\":256}}]}";
	infer((const unsigned char *)shm, strlen(shm), -1, NULL, &a);
	T_EQ_INT(a.status, 400);
	T_CHECK(strstr(json_string_value(json_object_get(a.head, "error")), "shared memory"));
	answer_free(&a);
	/* the server still answers */
	snprintf(body, sizeof body, "{\"inputs\":[%s]}", in);
	infer((const unsigned char *)body, strlen(body), -1, NULL, &a);
	T_EQ_INT(a.status, 200);
	answer_free(&a);
	free(in);
}

/* GET /v2/models/{m}/ready: 200 either way for a deployed model, "ready" telling warm from
 * scaled to zero (unload); 404 for an unknown model */
static void test_model_ready(void)
{
	NEED();
	json_t *o = NULL;
	T_EQ_INT(e2e_call_json(&srv, "POST", "/v2/repository/models/digits/load", NULL, NULL, NULL), 200);
	T_CHECK(e2e_wait_state(&srv, "digits", "warm", 20000));
	T_EQ_INT(e2e_call_json(&srv, "GET", "/v2/models/digits/ready", NULL, NULL, &o), 200);
	T_CHECK(json_is_true(json_object_get(o, "ready")));
	json_decref(o);
	T_EQ_INT(e2e_call_json(&srv, "POST", "/v2/repository/models/digits/unload", NULL, NULL, NULL), 200);
	char st[32];
	for (double t0 = e2e_now_s(); e2e_now_s() - t0 < 20 &&
	     strcmp(e2e_fn_state(&srv, "digits", st, sizeof st), "warm") == 0;)
		usleep(10000);
	T_CHECK(strcmp(st, "warm") != 0);   /* host or cold: not loaded on a device */
	T_EQ_INT(e2e_call_json(&srv, "GET", "/v2/models/digits/ready", NULL, NULL, &o), 200);
	T_EQ_STR(json_string_value(json_object_get(o, "name")), "digits");
	T_CHECK(json_is_false(json_object_get(o, "ready")));
	json_decref(o);
	T_EQ_INT(e2e_call_json(&srv, "GET", "/v2/models/digits/versions/1/ready", NULL, NULL, &o), 200);
	T_CHECK(json_is_false(json_object_get(o, "ready")));
	json_decref(o);
	T_EQ_INT(e2e_call_json(&srv, "GET", "/v2/models/nope/ready", NULL, NULL, NULL), 404);
	/* scaled to zero it still serves: the next call cold-starts it */
	char *in = input_json(0, 1, 0);
	char body[8192];
	answer a;
	snprintf(body, sizeof body, "{\"inputs\":[%s]}", in);
	infer((const unsigned char *)body, strlen(body), -1, NULL, &a);
	T_EQ_INT(a.status, 200);
	answer_free(&a);
	free(in);
	T_EQ_INT(e2e_call_json(&srv, "GET", "/v2/models/digits/ready", NULL, NULL, &o), 200);
	T_CHECK(json_is_true(json_object_get(o, "ready")));
	json_decref(o);
}

void t_main(void)
{
	setup();
	T_RUN(test_json_in_json_out);
	T_RUN(test_binary_in_binary_out);
	T_RUN(test_classification);
	T_RUN(test_compressed);
	T_RUN(test_refusals);
	T_RUN(test_model_ready);
	if (srv_ok || srv.pid)
		e2e_stop(&srv, 15, 10);
	json_decref(expected);
}

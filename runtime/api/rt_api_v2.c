/* rt_api_v2.c — the Open Inference Protocol (KServe V2 / Triton REST) over thaw's functions:
 * server and model metadata, model readiness, inference with JSON tensors and the binary tensor
 * data extension (Inference-Header-Content-Length), the model repository extension (index,
 * load = scale up now, unload = scale to zero now) and model statistics.
 *
 * Tensors map to a kind's JSON interface:
 *   mlp    INPUT0 [batch, features] (any numeric type) -> {"inputs": rows};
 *          outputs OUTPUT0 FP32 [batch, classes] (softmax probabilities), LABEL INT64 [batch]
 *   llama  input_ids INT64 [1, n] (+ request parameters max_tokens, temperature, top_p, seed,
 *          stop) -> {"tokens": ids, ...}; output output_ids INT64 [1, k]
 *   echo   every input comes back as an output of the same name, shape and datatype.
 * As tritonclient's HTTP client sends them: compact JSON with binary inputs after it
 * (Inference-Header-Content-Length), request bodies compressed with Content-Encoding gzip or
 * deflate (zlib; other encodings 415), responses compressed when Accept-Encoding asks for gzip
 * or deflate, "binary_data_output" and per-output "binary_data", and per-output
 * "classification": N (the top N of each row as BYTES "value:index" strings, best first, as
 * Triton formats them). Shared-memory parameters are refused (400).
 * Errors are {"error": "..."}: 400 bad request or unsupported, 404 unknown model, 503
 * unavailable, 504 timeout, 500 internal (Triton's mapping of its error codes). */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <jansson.h>
#include <zlib.h>
#include "runtime/base/rt_clock.h"
#include "runtime/api/rt_api.h"
#include "runtime/base/rt_json.h"
#include "runtime/store/rt_manifest.h"
#include "runtime/store/rt_registry.h"
#include "runtime/sched/rt_sched.h"
#include "runtime/base/rt_version.h"
#include "snapshot/snap.h"

#define V2_MAX_ELEMS (64u * 1024 * 1024)
#define V2_MAX_TENSORS 16
/* "data" arrays of at least this many numbers are read compactly (rt_json spans), straight
 * into the tensor, instead of through a jansson tree of ~40 bytes an element */
#define V2_SPAN_MIN 256
/* a compressed body may inflate to V2_INFLATE_RATIO x its size, at least V2_INFLATE_FLOOR,
 * and never past --max-body: legitimate tensors deflate 1.1-10x, a bomb ~1000x */
#define V2_INFLATE_RATIO 64
#define V2_INFLATE_FLOOR ((size_t)4 << 20)

typedef struct v2_tensor {
	char name[128];
	char dtype[16];
	int ndim;
	int64_t shape[8];
	size_t count;
	double *v;                 /* values as doubles (all numeric types fit the kinds' needs), */
	const unsigned char *raw;  /* or, for binary data, its bytes (in the body or the inflated
	                            * copy: 1 byte an element stays 1, not 8) */
} v2_tensor;

typedef struct v2_ctx {
	rt_api *api;
	rt_req *req;
	uint32_t rev;              /* asked for (0: by the traffic split), then answered */
	int big;                   /* parse and answer off the loop (rt_api_offload) */
	char ce[64];               /* Content-Encoding, Inference-Header-Content-Length as sent */
	int has_ce, has_hcl;
	char hcl[32];
	int accept_enc;            /* 1 gzip, 2 deflate, 0 none (Accept-Encoding) */
	int status;                /* of the failed step, with err */
	char err[512];
	json_t *kin;               /* the kind's input, until handed to the scheduler */
	json_t *out;               /* the kind's output (own reference) */
	unsigned char *resp;       /* the answer: body, content type, headers */
	size_t resp_len;
	const char *resp_ctype;
	const char *resp_enc;
	char resp_hcl[32];
	char model[RT_MANIFEST_NAME_MAX + 1];
	char kind[RT_MANIFEST_KIND_MAX + 1];
	rt_desc desc;              /* the revision's descriptor: its V2 signature */
	json_t *id;                /* echoed */
	int binary_out;            /* all outputs as binary */
	json_t *want;              /* requested outputs array (borrowed from the request JSON copy) */
	json_t *req_json;
	unsigned char *inflated;   /* the decompressed body, while binary tensors point into it */
	v2_tensor in[V2_MAX_TENSORS];
	int nin;
} v2_ctx;

static void ctx_free(v2_ctx *c)
{
	if (!c)
		return;
	for (int i = 0; i < c->nin; i++)
		free(c->in[i].v);
	json_decref(c->id);
	json_decref(c->req_json);
	json_decref(c->kin);
	json_decref(c->out);
	free(c->inflated);
	free(c->resp);
	free(c);
}

static size_t dtype_size(const char *dt)
{
	static const struct { const char *n; size_t s; } t[] = {
		{"BOOL", 1}, {"UINT8", 1}, {"UINT16", 2}, {"UINT32", 4}, {"UINT64", 8}, {"INT8", 1},
		{"INT16", 2}, {"INT32", 4}, {"INT64", 8}, {"FP16", 2}, {"BF16", 2}, {"FP32", 4}, {"FP64", 8},
	};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
		if (strcmp(t[i].n, dt) == 0)
			return t[i].s;
	return 0;
}

static double half_to_double(uint16_t h, int bf16)
{
	if (bf16) {
		uint32_t u = (uint32_t)h << 16;
		float f;
		memcpy(&f, &u, 4);
		return f;
	}
	int sign = h >> 15, exp = (h >> 10) & 31, man = h & 1023;
	double v;
	if (exp == 0)
		v = ldexp(man, -24);
	else if (exp == 31)
		v = man ? NAN : INFINITY;
	else
		v = ldexp(man + 1024, exp - 25);
	return sign ? -v : v;
}

static double read_elem(const unsigned char *p, const char *dt)
{
	if (!strcmp(dt, "FP32")) { float f; memcpy(&f, p, 4); return f; }
	if (!strcmp(dt, "FP64")) { double d; memcpy(&d, p, 8); return d; }
	if (!strcmp(dt, "FP16")) { uint16_t h; memcpy(&h, p, 2); return half_to_double(h, 0); }
	if (!strcmp(dt, "BF16")) { uint16_t h; memcpy(&h, p, 2); return half_to_double(h, 1); }
	if (!strcmp(dt, "INT64")) { int64_t v; memcpy(&v, p, 8); return (double)v; }
	if (!strcmp(dt, "INT32")) { int32_t v; memcpy(&v, p, 4); return v; }
	if (!strcmp(dt, "INT16")) { int16_t v; memcpy(&v, p, 2); return v; }
	if (!strcmp(dt, "INT8")) { return (int8_t)p[0]; }
	if (!strcmp(dt, "UINT64")) { uint64_t v; memcpy(&v, p, 8); return (double)v; }
	if (!strcmp(dt, "UINT32")) { uint32_t v; memcpy(&v, p, 4); return v; }
	if (!strcmp(dt, "UINT16")) { uint16_t v; memcpy(&v, p, 2); return v; }
	return p[0];   /* UINT8, BOOL */
}

/* element k of a tensor held as doubles (v) or as binary bytes of datatype dt (raw) */
static double elem_at(const double *v, const unsigned char *raw, const char *dt, size_t k)
{
	return v ? v[k] : read_elem(raw + k * dtype_size(dt), dt);
}

/* the range [lo, hi) of an integer datatype (as doubles); 0 for floating-point ones */
static int int_range(const char *dt, double *lo, double *hi)
{
	static const struct { const char *n; double lo, hi; } t[] = {
		{"BOOL", 0, 2}, {"UINT8", 0, 256}, {"UINT16", 0, 65536}, {"UINT32", 0, 4294967296.0},
		{"UINT64", 0, 18446744073709551616.0}, {"INT8", -128, 128}, {"INT16", -32768, 32768},
		{"INT32", -2147483648.0, 2147483648.0},
		{"INT64", -9223372036854775808.0, 9223372036854775808.0},
	};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
		if (strcmp(t[i].n, dt) == 0) {
			*lo = t[i].lo;
			*hi = t[i].hi;
			return 1;
		}
	return 0;
}

/* double -> int64 / uint64 without undefined behaviour: clamped to the type's range (a
 * 64-bit input near the top rounds up to 2^63 or 2^64 as a double) */
static int64_t dbl_to_i64(double v)
{
	if (v >= 9223372036854775808.0)
		return INT64_MAX;
	if (v < -9223372036854775808.0)
		return INT64_MIN;
	return (int64_t)v;
}

static uint64_t dbl_to_u64(double v)
{
	if (v >= 18446744073709551616.0)
		return UINT64_MAX;
	if (v < 0)
		return 0;
	return (uint64_t)v;
}

static int put_elem(v2_tensor *t, double v, size_t *k, char *err, size_t errlen);

/* flattens nested JSON arrays of numbers (or booleans) into t->v */
static int flatten(const json_t *a, v2_tensor *t, size_t *k, int depth, char *err, size_t errlen)
{
	if (depth > 16) {
		snprintf(err, errlen, "input '%s': data nested too deeply", t->name);
		return -EINVAL;
	}
	if (json_is_array(a)) {
		size_t i;
		const json_t *x;
		json_array_foreach(a, i, x)
			if (flatten(x, t, k, depth + 1, err, errlen) < 0)
				return -EINVAL;
		return 0;
	}
	if (!json_is_number(a) && !json_is_boolean(a)) {
		snprintf(err, errlen, "input '%s': data must hold numbers", t->name);
		return -EINVAL;
	}
	return put_elem(t, json_is_boolean(a) ? (json_is_true(a) ? 1 : 0) : json_number_value(a), k,
			err, errlen);
}

/* reads data span sp of body into t->v, with flatten's checks (and messages) */
static int fill_span(v2_tensor *t, const char *body, const rt_json_span *sp, size_t *k,
		     char *err, size_t errlen)
{
	rt_json_iter it;
	double v;
	int is_int;
	rt_json_iter_init(&it, body, sp);
	while (rt_json_iter_next(&it, &v, &is_int))
		if (put_elem(t, v, k, err, errlen) < 0)
			return -EINVAL;
	return 0;
}

/* flatten's and fill_span's check of one element (in order) and its store */
static int put_elem(v2_tensor *t, double v, size_t *k, char *err, size_t errlen)
{
	if (*k >= t->count) {
		snprintf(err, errlen, "input '%s': more data elements than its shape holds (%zu)", t->name,
			 t->count);
		return -EINVAL;
	}
	if (strncmp(t->dtype, "FP", 2) != 0 && strcmp(t->dtype, "BF16") != 0 && v != floor(v)) {
		snprintf(err, errlen, "input '%s': %s data must be integers", t->name, t->dtype);
		return -EINVAL;
	}
	double lo, hi;
	if (int_range(t->dtype, &lo, &hi) && !(v >= lo && v < hi)) {
		snprintf(err, errlen, "input '%s': %s data out of range (%g)", t->name, t->dtype, v);
		return -EINVAL;
	}
	t->v[(*k)++] = v;
	return 0;
}

/* inflates body (gzip, or deflate as tritonclient sends it: a zlib stream; a raw deflate
 * stream is accepted too) into *out (malloc'd), at most max bytes. 0, or a negative errno with
 * *status (400 corrupt, 413 too large, 500) and err. */
static int inflate_body(const char *body, size_t len, int gzip, size_t max, unsigned char **out,
			size_t *outlen, int *status, char *err, size_t errlen)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		z_stream z;
		memset(&z, 0, sizeof z);
		int wbits = gzip ? 16 + MAX_WBITS : attempt == 0 ? MAX_WBITS : -MAX_WBITS;
		if (inflateInit2(&z, wbits) != Z_OK) {
			*status = 500;
			snprintf(err, errlen, "zlib: inflateInit failed");
			return -ENOMEM;
		}
		size_t cap = len * 4 + 1024 < max ? len * 4 + 1024 : max + 1, n = 0;
		unsigned char *buf = malloc(cap);
		int zr = Z_OK;
		z.next_in = (unsigned char *)body;
		z.avail_in = (uInt)(len < UINT32_MAX ? len : UINT32_MAX);
		while (buf && zr == Z_OK) {
			if (n == cap) {
				if (cap > max)
					break;
				size_t nc = cap * 2 < max + 1 ? cap * 2 : max + 1;
				unsigned char *nb = realloc(buf, nc);
				if (!nb) {
					free(buf);
					buf = NULL;
					break;
				}
				buf = nb;
				cap = nc;
			}
			z.next_out = buf + n;
			z.avail_out = (uInt)(cap - n < UINT32_MAX ? cap - n : UINT32_MAX);
			zr = inflate(&z, Z_NO_FLUSH);
			n = (size_t)(z.next_out - buf);
		}
		inflateEnd(&z);
		if (!buf) {
			*status = 500;
			snprintf(err, errlen, "out of memory");
			return -ENOMEM;
		}
		if (n > max) {
			free(buf);
			*status = 413;
			snprintf(err, errlen, "the decompressed request body is larger than %zu bytes (a "
				 "compressed body may inflate to %dx its size, at least %zu MiB, at most "
				 "--max-body)", max, V2_INFLATE_RATIO, V2_INFLATE_FLOOR >> 20);
			return -EFBIG;
		}
		if (zr == Z_STREAM_END && z.avail_in == 0) {
			*out = buf;
			*outlen = n;
			return 0;
		}
		free(buf);
		if (gzip || attempt == 1) {
			*status = 400;
			snprintf(err, errlen, "Content-Encoding %s: the body is not a valid %s stream%s",
				 gzip ? "gzip" : "deflate", gzip ? "gzip" : "zlib or deflate",
				 zr == Z_STREAM_END ? " (bytes after its end)" : "");
			return -EINVAL;
		}
	}
	return -EINVAL;
}

/* the request body as sent, or decompressed per Content-Encoding (into *owned, which the
 * caller frees). 0, or a negative errno with *status (415 unknown encoding) and err. */
static int request_body(const v2_ctx *c, size_t max_body, const char **body, size_t *len,
			unsigned char **owned, int *status, char *err, size_t errlen)
{
	const rt_req *req = c->req;
	const char *ce = c->has_ce ? c->ce : NULL;
	*owned = NULL;
	*body = req->body;
	*len = req->body_len;
	if (!ce || !ce[0] || !strcasecmp(ce, "identity"))
		return 0;
	int gzip = !strcasecmp(ce, "gzip") || !strcasecmp(ce, "x-gzip");
	if (!gzip && strcasecmp(ce, "deflate") != 0) {
		*status = 415;
		snprintf(err, errlen, "Content-Encoding '%.64s' is not supported (gzip, deflate or identity)",
			 ce);
		return -ENOTSUP;
	}
	size_t n = 0, max = req->body_len > V2_INFLATE_FLOOR / V2_INFLATE_RATIO ?
			   req->body_len * V2_INFLATE_RATIO : V2_INFLATE_FLOOR;
	if (max > max_body)
		max = max_body;
	int rc = inflate_body(req->body, req->body_len, gzip, max, owned, &n, status, err, errlen);
	if (rc < 0)
		return rc;
	*body = (const char *)*owned;
	*len = n;
	return 0;
}

/* parses the request: JSON header (+ binary section) into ctx->in; 0, or -EINVAL / -EFBIG
 * (413: the header's tree would cost more than the bounded-JSON budget) / -ENOMEM with err.
 * Big "data" arrays are read from the text straight into their tensors (rt_json spans); the
 * rest of the header goes through jansson, with the positions of its errors unchanged. */
static int parse_request(const char *body, size_t body_len, v2_ctx *c, char *err, size_t errlen)
{
	static const char *const data_path[] = {"inputs", "*", "data", NULL};
	size_t hlen = body_len;
	const char *hcl = c->has_hcl ? c->hcl : NULL;
	if (hcl) {
		uint64_t v = 0;
		const char *p = hcl;
		for (; *p >= '0' && *p <= '9' && v <= body_len; p++)
			v = v * 10 + (uint64_t)(*p - '0');
		if (*p || p == hcl || v > body_len) {
			snprintf(err, errlen, "header Inference-Header-Content-Length: must be a number no larger than the body (%zu)",
				 body_len);
			return -EINVAL;
		}
		hlen = (size_t)v;
	}
	rt_json_stats st;
	rt_json_scan(body, hlen, data_path, V2_SPAN_MIN, &st);
	size_t budget = rt_json_budget(body_len);
	if (st.cost > budget) {
		snprintf(err, errlen, "the inference request's JSON (%zu values besides its tensor data) "
			 "would take about %zu MiB to parse, more than the %zu MiB a body of %zu bytes "
			 "may use", st.numbers + st.strings + st.literals + st.arrays + st.objects,
			 (st.cost + (1u << 20) - 1) >> 20, budget >> 20, body_len);
		return -EFBIG;
	}
	uint64_t nonce = 0;
	json_error_t je;
	if (st.nspans) {
		char *copy = rt_json_split(body, hlen, &st, &nonce);
		if (!copy) {
			snprintf(err, errlen, "out of memory");
			return -ENOMEM;
		}
		c->req_json = json_loadb(copy, hlen, JSON_REJECT_DUPLICATES, &je);
		free(copy);
	} else {
		c->req_json = json_loadb(body, hlen, JSON_REJECT_DUPLICATES, &je);
	}
	if (!c->req_json) {
		snprintf(err, errlen, "invalid JSON at line %d column %d: %s", je.line, je.column, je.text);
		return -EINVAL;
	}
	if (!json_is_object(c->req_json)) {
		snprintf(err, errlen, "the inference request must be a JSON object");
		return -EINVAL;
	}
	json_t *id = json_object_get(c->req_json, "id");
	if (id && !json_is_string(id)) {
		snprintf(err, errlen, "field 'id': must be a string");
		return -EINVAL;
	}
	c->id = json_incref(id);
	json_t *params = json_object_get(c->req_json, "parameters");
	if (params && !json_is_object(params)) {
		snprintf(err, errlen, "field 'parameters': must be an object");
		return -EINVAL;
	}
	c->binary_out = json_is_true(json_object_get(params, "binary_data_output"));
	c->want = json_object_get(c->req_json, "outputs");
	if (c->want && !json_is_array(c->want)) {
		snprintf(err, errlen, "field 'outputs': must be an array");
		return -EINVAL;
	}
	json_t *inputs = json_object_get(c->req_json, "inputs");
	if (!json_is_array(inputs) || json_array_size(inputs) == 0) {
		snprintf(err, errlen, "field 'inputs': must be a non-empty array");
		return -EINVAL;
	}
	if (json_array_size(inputs) > V2_MAX_TENSORS) {
		snprintf(err, errlen, "field 'inputs': at most %d tensors", V2_MAX_TENSORS);
		return -EINVAL;
	}
	const unsigned char *bin = (const unsigned char *)body + hlen;
	size_t bin_left = body_len - hlen;
	size_t i;
	json_t *in;
	json_array_foreach(inputs, i, in) {
		v2_tensor *t = &c->in[c->nin];
		const char *name = json_string_value(json_object_get(in, "name"));
		const char *dt = json_string_value(json_object_get(in, "datatype"));
		json_t *shape = json_object_get(in, "shape");
		if (!json_is_object(in) || !name || !dt || !json_is_array(shape)) {
			snprintf(err, errlen, "inputs[%zu]: needs string 'name', string 'datatype' and array 'shape'", i);
			return -EINVAL;
		}
		snprintf(t->name, sizeof t->name, "%s", name);
		snprintf(t->dtype, sizeof t->dtype, "%s", dt);
		size_t es = dtype_size(dt);
		if (!es) {
			snprintf(err, errlen, "input '%s': datatype %s is not supported", t->name, dt);
			return -EINVAL;
		}
		if (json_array_size(shape) > 8) {
			snprintf(err, errlen, "input '%s': at most 8 dimensions", t->name);
			return -EINVAL;
		}
		t->count = 1;
		size_t d;
		json_t *dim;
		json_array_foreach(shape, d, dim) {
			if (!json_is_integer(dim) || json_integer_value(dim) < 0 ||
			    json_integer_value(dim) > (json_int_t)V2_MAX_ELEMS) {
				snprintf(err, errlen, "input '%s': shape must hold non-negative integers", t->name);
				return -EINVAL;
			}
			t->shape[t->ndim++] = json_integer_value(dim);
			t->count *= (size_t)json_integer_value(dim);
			if (t->count > V2_MAX_ELEMS) {
				snprintf(err, errlen, "input '%s': more than %u elements", t->name, V2_MAX_ELEMS);
				return -EINVAL;
			}
		}
		c->nin++;
		json_t *ip = json_object_get(in, "parameters");
		json_t *bsz = json_object_get(ip, "binary_data_size");
		if (json_object_get(ip, "shared_memory_region")) {
			snprintf(err, errlen, "input '%s': shared memory is not supported (send the data in "
				 "the body, as JSON or binary)", t->name);
			return -EINVAL;
		}
		if (bsz) {
			if (!json_is_integer(bsz) || json_integer_value(bsz) < 0 ||
			    (size_t)json_integer_value(bsz) != t->count * es) {
				snprintf(err, errlen, "input '%s': binary_data_size must be %zu bytes (%zu %s elements)",
					 t->name, t->count * es, t->count, dt);
				return -EINVAL;
			}
			size_t n = (size_t)json_integer_value(bsz);
			if (n > bin_left) {
				snprintf(err, errlen, "input '%s': binary data truncated (%zu of %zu bytes)", t->name,
					 bin_left, n);
				return -EINVAL;
			}
			t->raw = bin;
			bin += n;
			bin_left -= n;
		} else {
			json_t *data = json_object_get(in, "data");
			size_t k = 0;
			if (!data) {
				snprintf(err, errlen, "input '%s': no 'data' and no binary_data_size", t->name);
				return -EINVAL;
			}
			t->v = malloc((t->count ? t->count : 1) * sizeof(double));
			if (!t->v) {
				snprintf(err, errlen, "out of memory");
				return -ENOMEM;
			}
			int sp = st.nspans ? rt_json_span_of(data, nonce, st.nspans) : -1;
			if (sp >= 0 ? fill_span(t, body, &st.spans[sp], &k, err, errlen) < 0 :
				      flatten(data, t, &k, 0, err, errlen) < 0)
				return -EINVAL;
			if (k != t->count) {
				snprintf(err, errlen, "input '%s': shape holds %zu elements but data has %zu", t->name,
					 t->count, k);
				return -EINVAL;
			}
		}
		for (size_t k = 0; k < t->count; k++)
			if (!isfinite(elem_at(t->v, t->raw, t->dtype, k))) {
				snprintf(err, errlen, "input '%s': element %zu is not a finite number", t->name, k);
				return -EINVAL;
			}
	}
	if (bin_left) {
		snprintf(err, errlen, "%zu bytes of binary data not claimed by any input", bin_left);
		return -EINVAL;
	}
	return 0;
}

static v2_tensor *find_input(v2_ctx *c, const char *name)
{
	for (int i = 0; i < c->nin; i++)
		if (strcmp(c->in[i].name, name) == 0)
			return &c->in[i];
	return NULL;
}

/* does shape (ndim dims) fit the signature's tensor s (-1: any size)? */
static int shape_fits(const fn_v2_tensor *s, int ndim, const int64_t *shape)
{
	if (ndim != s->ndim)
		return 0;
	for (int d = 0; d < ndim; d++)
		if (s->shape[d] >= 0 && s->shape[d] != shape[d])
			return 0;
	return 1;
}

static void shape_str(const fn_v2_tensor *s, char *buf, size_t cap)
{
	size_t n = (size_t)snprintf(buf, cap, "[");
	for (int d = 0; d < s->ndim && n < cap; d++)
		n += (size_t)snprintf(buf + n, cap - n, "%s%lld", d ? ", " : "", (long long)s->shape[d]);
	if (n < cap)
		snprintf(buf + n, cap - n, "]");
}

/* checks the request's tensors against the declared inputs (names, shapes; datatypes too
 * when strict): 0, or -EINVAL with err */
static int check_inputs(v2_ctx *c, int strict, char *err, size_t errlen)
{
	const fn_v2_sig *sig = &c->desc.v2;
	for (int i = 0; i < sig->n_inputs; i++) {
		const fn_v2_tensor *s = &sig->inputs[i];
		v2_tensor *t = find_input(c, s->name);
		char want[160];
		shape_str(s, want, sizeof want);
		if (!t || !shape_fits(s, t->ndim, t->shape) || (strict && strcmp(t->dtype, s->datatype))) {
			snprintf(err, errlen, "model '%s' takes input '%s' %s with shape %s (-1: any size)",
				 c->model, s->name, s->datatype, want);
			return -EINVAL;
		}
	}
	if (strict) {
		for (int i = 0; i < c->nin; i++) {
			int known = 0;
			for (int j = 0; j < sig->n_inputs; j++)
				known |= strcmp(c->in[i].name, sig->inputs[j].name) == 0;
			if (!known) {
				snprintf(err, errlen, "unexpected inference input '%.100s' for model '%s'",
					 c->in[i].name, c->model);
				return -EINVAL;
			}
		}
	}
	return 0;
}

/* nested JSON arrays of t's values from element *k on, dimension d down */
static json_t *nest(const v2_tensor *t, int d, size_t *k, int integer)
{
	if (d == t->ndim) {
		double v = elem_at(t->v, t->raw, t->dtype, (*k)++);
		return integer ? json_integer((json_int_t)dbl_to_i64(v)) : json_real(v);
	}
	json_t *a = json_array();
	for (int64_t i = 0; a && i < t->shape[d]; i++)
		if (json_array_append_new(a, nest(t, d + 1, k, integer)) < 0) {
			json_decref(a);
			return NULL;
		}
	return a;
}

/* the input of a kind without a packed form: {"<input>": nested array, ...} */
static json_t *generic_input(v2_ctx *c, char *err, size_t errlen)
{
	if (check_inputs(c, 1, err, errlen) < 0)
		return NULL;
	json_t *o = json_object();
	for (int i = 0; o && i < c->desc.v2.n_inputs; i++) {
		const fn_v2_tensor *s = &c->desc.v2.inputs[i];
		v2_tensor *t = find_input(c, s->name);
		if (!strcmp(s->datatype, "BYTES")) {
			snprintf(err, errlen, "input '%s': BYTES tensors are not passed to kind '%s'",
				 s->name, c->desc.kind);
			json_decref(o);
			return NULL;
		}
		if (t->count > rt_json_budget(c->req->body_len) / 48) {
			snprintf(err, errlen, "input '%s': %zu elements are more than a body of %zu bytes "
				 "may carry", s->name, t->count, c->req->body_len);
			c->status = 413;
			json_decref(o);
			return NULL;
		}
		size_t k = 0;
		json_t *v = nest(t, 0, &k, s->datatype[0] == 'I' || s->datatype[0] == 'U');
		if (!v || json_object_set_new(o, s->name, v) < 0) {
			snprintf(err, errlen, "out of memory");
			c->status = 500;
			json_decref(o);
			return NULL;
		}
	}
	if (!o)
		snprintf(err, errlen, "out of memory");
	return o;
}

/* builds the kind's JSON input from the tensors; NULL with err on a mismatch */
static json_t *to_kind_input(v2_ctx *c, char *err, size_t errlen)
{
	if (c->desc.has_v2 && (strcmp(c->kind, "mlp") == 0 || strcmp(c->kind, "llama") == 0) &&
	    check_inputs(c, 0, err, errlen) < 0)
		return NULL;
	if (!strcmp(c->kind, "mlp")) {
		v2_tensor *t = find_input(c, "INPUT0");
		if (!t || t->ndim != 2) {
			snprintf(err, errlen, "model '%s' (mlp) takes INPUT0 with shape [batch, features]", c->model);
			return NULL;
		}
		/* the packed form of the mlp kind (functions/fn_mlp.c): the rows as float32 bytes,
		 * 4 bytes an element instead of a JSON tree of ~40; the doubles are converted in
		 * place (float k lies in bytes that double k/2 held, already read) */
		char *f = t->v ? (char *)t->v : malloc(t->count ? t->count * sizeof(float) : 1);
		if (!f) {
			snprintf(err, errlen, "out of memory");
			return NULL;
		}
		for (size_t k = 0; k < t->count; k++) {
			float x = (float)elem_at(t->v, t->raw, t->dtype, k);
			memcpy(f + k * sizeof x, &x, sizeof x);
		}
		json_t *packed = json_stringn_nocheck(f, t->count * sizeof(float));
		free(f);
		t->v = NULL;
		if (!packed) {
			snprintf(err, errlen, "out of memory");
			return NULL;
		}
		return json_pack("{s:o,s:[I,I]}", "inputs_f32", packed, "shape",
				 (json_int_t)t->shape[0], (json_int_t)t->shape[1]);
	}
	if (!strcmp(c->kind, "llama")) {
		v2_tensor *t = find_input(c, "input_ids");
		if (!t || (t->ndim == 2 && t->shape[0] != 1) || t->ndim > 2 || t->ndim == 0) {
			snprintf(err, errlen, "model '%s' (llama) takes input_ids INT64 with shape [1, n]", c->model);
			return NULL;
		}
		if (t->count > rt_json_budget(c->req->body_len) / 48) {   /* a json_integer each */
			snprintf(err, errlen, "input 'input_ids': %zu tokens are more than a body of %zu "
				 "bytes may carry (%zu)", t->count, c->req->body_len,
				 rt_json_budget(c->req->body_len) / 48);
			c->status = 413;
			return NULL;
		}
		json_t *toks = json_array();
		for (size_t k = 0; k < t->count; k++)
			json_array_append_new(toks, json_integer((json_int_t)dbl_to_i64(
				elem_at(t->v, t->raw, t->dtype, k))));
		json_t *o = json_pack("{s:o}", "tokens", toks);
		json_t *params = json_object_get(c->req_json, "parameters");
		static const char *keys[] = {"max_tokens", "temperature", "top_p", "seed", "stop", "logprobs"};
		for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
			json_t *v = json_object_get(params, keys[i]);
			if (v)
				json_object_set(o, keys[i], v);
		}
		return o;
	}
	if (!strcmp(c->kind, "echo"))
		return json_incref(json_object_get(c->req_json, "inputs"));
	if (c->desc.has_v2)
		return generic_input(c, err, errlen);
	snprintf(err, errlen, "model '%s' has kind '%.200s', which has no Open Inference Protocol "
		 "mapping", c->model, c->kind);
	return NULL;
}

typedef struct v2_out {
	const char *name, *dtype;
	int ndim;
	int64_t shape[8];
	size_t count;
	double *v;
	const unsigned char *raw;  /* binary input bytes of datatype dtype instead of v (echo) */
} v2_out;

static double oval(const v2_out *o, size_t k)
{
	return elem_at(o->v, o->raw, o->dtype, k);
}

/* the request's entry for output name: 1 when it is to be sent (binary set from
 * binary_data_output and the entry's binary_data; *classes from its "classification", 0 when
 * none), 0 when the request lists outputs and not this one */
static int wanted(v2_ctx *c, const char *name, int *binary, int64_t *classes)
{
	*binary = c->binary_out;
	*classes = 0;
	if (!c->want)
		return 1;
	size_t i;
	json_t *o;
	json_array_foreach(c->want, i, o) {
		const char *n = json_string_value(json_object_get(o, "name"));
		if (n && strcmp(n, name) == 0) {
			json_t *p = json_object_get(o, "parameters");
			json_t *b = json_object_get(p, "binary_data");
			if (b)
				*binary = json_is_true(b);
			json_t *k = json_object_get(p, "classification");
			if (k)
				*classes = json_integer_value(k);
			return 1;
		}
	}
	return 0;
}

/* checks the requested outputs against the ones the model produces (names[n]): 0, or -EINVAL
 * with err (unknown name, bad classification, shared memory) */
static int check_wanted(v2_ctx *c, const char *const *names, int n, char *err, size_t errlen)
{
	size_t i;
	json_t *o;
	json_array_foreach(c->want, i, o) {
		const char *name = json_string_value(json_object_get(o, "name"));
		json_t *p = json_object_get(o, "parameters");
		int found = 0;
		for (int j = 0; j < n && name; j++)
			found |= strcmp(names[j], name) == 0;
		if (!json_is_object(o) || !name) {
			snprintf(err, errlen, "outputs[%zu]: needs a string 'name'", i);
			return -EINVAL;
		}
		if (!found) {
			snprintf(err, errlen, "unexpected inference output '%.100s' for model '%s'", name,
				 c->model);
			return -EINVAL;
		}
		if (p && !json_is_object(p)) {
			snprintf(err, errlen, "output '%.100s': 'parameters' must be an object", name);
			return -EINVAL;
		}
		json_t *k = json_object_get(p, "classification");
		if (k && (!json_is_integer(k) || json_integer_value(k) < 1 ||
			  json_integer_value(k) > 1000000)) {
			snprintf(err, errlen, "output '%.100s': classification must be a positive integer "
				 "(the number of classes to return)", name);
			return -EINVAL;
		}
		if (json_object_get(p, "shared_memory_region")) {
			snprintf(err, errlen, "output '%.100s': shared memory is not supported", name);
			return -EINVAL;
		}
	}
	return 0;
}

/* double -> IEEE half (bf16 = 0) or bfloat16 bits, rounding to nearest even */
static uint16_t double_to_half(double d, int bf16)
{
	float f = (float)d;
	uint32_t u;
	memcpy(&u, &f, 4);
	if (bf16) {
		if ((u & 0x7fffffffu) > 0x7f800000u)
			return (uint16_t)((u >> 16) | 0x40);   /* NaN stays NaN */
		return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
	}
	uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
	float a = fabsf(f);
	if (a != a)
		return sign | 0x7e00;
	if (a >= 65520.0f)
		return sign | 0x7c00;                     /* overflow -> Inf */
	if (a < 6.103515625e-05f)                         /* subnormal: units of 2^-24 */
		return sign | (uint16_t)lrintf(a * 16777216.0f);
	int e;
	float m = frexpf(a, &e);                          /* a = m * 2^e, m in [0.5, 1) */
	long man = lrintf((m * 2.0f - 1.0f) * 1024.0f);
	int exp = e - 1 + 15;
	if (man == 1024) {
		man = 0;
		exp++;
	}
	return sign | (uint16_t)(exp << 10) | (uint16_t)man;
}

static void write_elem(unsigned char *p, const char *dt, double v)
{
	if (!strcmp(dt, "FP16") || !strcmp(dt, "BF16")) {
		uint16_t h = double_to_half(v, dt[0] == 'B');
		memcpy(p, &h, 2);
		return;
	}
	if (!strcmp(dt, "FP32")) { float f = (float)v; memcpy(p, &f, 4); }
	else if (!strcmp(dt, "FP64")) memcpy(p, &v, 8);
	else if (!strcmp(dt, "INT64")) { int64_t x = dbl_to_i64(v); memcpy(p, &x, 8); }
	else if (!strcmp(dt, "INT32")) { int32_t x = (int32_t)v; memcpy(p, &x, 4); }
	else if (!strcmp(dt, "INT16")) { int16_t x = (int16_t)v; memcpy(p, &x, 2); }
	else if (!strcmp(dt, "UINT16")) { uint16_t x = (uint16_t)v; memcpy(p, &x, 2); }
	else if (!strcmp(dt, "UINT32")) { uint32_t x = (uint32_t)v; memcpy(p, &x, 4); }
	else if (!strcmp(dt, "UINT64")) { uint64_t x = dbl_to_u64(v); memcpy(p, &x, 8); }
	else if (!strcmp(dt, "INT8")) p[0] = (unsigned char)(int8_t)(v < -128 ? -128 : v > 127 ? 127 : v);
	else p[0] = (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);   /* UINT8, BOOL */
}

typedef struct v2_idx {
	double v;
	int64_t i;
} v2_idx;

static int by_value_desc(const void *a, const void *b)
{
	const v2_idx *x = a, *y = b;
	if (x->v != y->v)
		return x->v < y->v ? 1 : -1;
	return x->i < y->i ? -1 : x->i > y->i;
}

/* Triton's classification of output o: per row (the last dimension; the whole tensor when
 * 1-D) the top k as "value:index" strings, best first; *rows is 0 for a 1-D output. A new
 * array of strings, or NULL (out of memory). */
static json_t *classify(const v2_out *o, int64_t k, int64_t *rows, int64_t *kk)
{
	int64_t nrow = o->ndim >= 2 ? o->shape[0] : 1;
	int64_t ncls = nrow > 0 ? (int64_t)o->count / nrow : 0;
	if (k > ncls)
		k = ncls;
	*rows = o->ndim >= 2 ? nrow : 0;
	*kk = k;
	json_t *arr = json_array();
	v2_idx *ix = malloc((size_t)(ncls ? ncls : 1) * sizeof *ix);
	if (!arr || !ix) {
		free(ix);
		json_decref(arr);
		return NULL;
	}
	for (int64_t r = 0; r < nrow; r++) {
		for (int64_t j = 0; j < ncls; j++)
			ix[j] = (v2_idx){oval(o, (size_t)(r * ncls + j)), j};
		qsort(ix, (size_t)ncls, sizeof *ix, by_value_desc);
		for (int64_t j = 0; j < k; j++) {
			char b[64];
			snprintf(b, sizeof b, "%f:%lld", ix[j].v, (long long)ix[j].i);
			json_array_append_new(arr, json_string(b));
		}
	}
	free(ix);
	return arr;
}

/* Accept-Encoding: 1 gzip, 2 deflate (zlib), 0 none; tokens with q=0 do not count */
static int accept_encoding(rt_req *req)
{
	const char *ae = rt_req_header(req, "Accept-Encoding");
	int best = 0;
	while (ae && *ae) {
		while (*ae == ' ' || *ae == ',')
			ae++;
		size_t n = strcspn(ae, ",;");
		int enc = n == 4 && !strncasecmp(ae, "gzip", 4) ? 1 :
			  n == 7 && !strncasecmp(ae, "deflate", 7) ? 2 : 0;
		const char *end = ae + strcspn(ae, ",");
		const char *q = memchr(ae, ';', (size_t)(end - ae));
		if (q) {
			const char *qv = strstr(q, "q=");
			if (qv && qv < end && strtod(qv + 2, NULL) <= 0)
				enc = 0;
		}
		if (enc && (!best || enc < best))
			best = enc;
		ae = end;
	}
	return best;
}

/* sets the answer to body (taken over), compressed as the client accepts (gzip or zlib
 * "deflate", level 1) when that makes it smaller */
static void set_encoded(v2_ctx *c, const char *ctype, unsigned char *body, size_t len)
{
	int enc = len >= 256 ? c->accept_enc : 0;
	c->status = 200;
	c->resp_ctype = ctype;
	c->resp = body;
	c->resp_len = len;
	if (!enc)
		return;
	z_stream z;
	memset(&z, 0, sizeof z);
	if (deflateInit2(&z, 1, Z_DEFLATED, enc == 1 ? 16 + MAX_WBITS : MAX_WBITS, 8,
			 Z_DEFAULT_STRATEGY) != Z_OK)
		return;
	size_t cap = deflateBound(&z, (uLong)len);
	unsigned char *out = malloc(cap);
	z.next_in = body;
	z.avail_in = (uInt)len;
	z.next_out = out;
	z.avail_out = (uInt)cap;
	int zr = out && len < UINT32_MAX ? deflate(&z, Z_FINISH) : Z_STREAM_ERROR;
	size_t n = cap - z.avail_out;
	deflateEnd(&z);
	if (zr == Z_STREAM_END && n < len) {
		c->resp_enc = enc == 1 ? "gzip" : "deflate";
		free(body);
		c->resp = out;
		c->resp_len = n;
		return;
	}
	free(out);
}

/* writes "[v0,v1,...]" as rt_json_dumps writes the array of json_real (FP types) or
 * json_integer (the others) values */
static void put_data(rt_json_buf *b, const v2_out *o, const char *dtype)
{
	int is_float = !strncmp(dtype, "FP", 2);
	rt_json_buf_add(b, "[", 1);
	for (size_t k = 0; k < o->count && !b->oom; k++) {
		if (k)
			rt_json_buf_add(b, ",", 1);
		if (is_float)
			rt_json_put_real(b, oval(o, k));
		else
			rt_json_put_int(b, dbl_to_i64(oval(o, k)));
	}
	rt_json_buf_add(b, "]", 1);
}

/* builds the answer with outputs (JSON data, or binary where asked; classifications as
 * BYTES) into c->resp; status 500 with err when out of memory. Tensor data is written as
 * text straight from the values (a marker in the JSON head stands for each), never as a
 * jansson tree. */
static void build_outputs(v2_ctx *c, v2_out *outs, int nout)
{
	json_t *arr = json_array();
	size_t bin_total = 0;
	unsigned char *bins[V2_MAX_TENSORS + 2] = {0};
	size_t bin_len[V2_MAX_TENSORS + 2] = {0};
	int text_of[V2_MAX_TENSORS + 2], ntext = 0;
	int oom = 0;
	char mark[V2_MAX_TENSORS + 2][48];
	unsigned long long nonce = (unsigned long long)(uintptr_t)c ^ rt_clock_mono_ns();
	for (int i = 0; i < nout; i++) {
		int binary;
		int64_t classes;
		if (!wanted(c, outs[i].name, &binary, &classes))
			continue;
		json_t *shape = json_array(), *strs = NULL;
		const char *dtype = outs[i].dtype;
		if (classes > 0) {
			int64_t rows, k;
			strs = classify(&outs[i], classes, &rows, &k);
			if (!strs) {
				oom = 1;
				json_decref(shape);
				break;
			}
			if (rows)
				json_array_append_new(shape, json_integer(rows));
			json_array_append_new(shape, json_integer(k));
			dtype = "BYTES";
		} else {
			for (int d = 0; d < outs[i].ndim; d++)
				json_array_append_new(shape, json_integer(outs[i].shape[d]));
		}
		json_t *o = json_pack("{s:s,s:s,s:o}", "name", outs[i].name, "datatype", dtype,
				      "shape", shape);
		if (binary) {
			size_t n = 0, es = dtype_size(dtype);
			if (strs) {   /* BYTES: 4-byte little-endian length, then the bytes */
				for (size_t k = 0; k < json_array_size(strs); k++)
					n += 4 + strlen(json_string_value(json_array_get(strs, k)));
			} else {
				n = outs[i].count * es;
			}
			bins[i] = malloc(n ? n : 1);
			if (!bins[i]) {
				oom = 1;
				json_decref(o);
				json_decref(strs);
				break;
			}
			size_t off = 0;
			if (strs) {
				for (size_t k = 0; k < json_array_size(strs); k++) {
					const char *sv = json_string_value(json_array_get(strs, k));
					uint32_t l = (uint32_t)strlen(sv);
					unsigned char le[4] = {l & 255, (l >> 8) & 255, (l >> 16) & 255, l >> 24};
					memcpy(bins[i] + off, le, 4);
					memcpy(bins[i] + off + 4, sv, l);
					off += 4 + l;
				}
			} else {
				for (size_t k = 0; k < outs[i].count; k++)
					write_elem(bins[i] + k * es, dtype, oval(&outs[i], k));
			}
			bin_len[i] = n;
			bin_total += n;
			json_object_set_new(o, "parameters", json_pack("{s:I}", "binary_data_size",
									(json_int_t)n));
			json_decref(strs);
		} else if (strs) {
			json_object_set_new(o, "data", strs);
		} else {
			snprintf(mark[i], sizeof mark[i], "~data~%016llx~%02d", nonce, i);
			json_object_set_new(o, "data", json_string(mark[i]));
			text_of[ntext++] = i;
		}
		json_array_append_new(arr, o);
	}
	char ver[16];
	snprintf(ver, sizeof ver, "%u", c->rev);
	json_t *resp = json_pack("{s:s,s:s,s:o}", "model_name", c->model, "model_version", ver,
				 "outputs", arr);
	if (c->id)
		json_object_set(resp, "id", c->id);
	char *head = oom ? NULL : rt_json_dumps(resp, 0);
	json_decref(resp);
	/* the head with each data marker (a quoted string) replaced by the values */
	rt_json_buf b = {0};
	if (head) {
		const char *p = head;
		for (int t = 0; t < ntext; t++) {
			const v2_out *o = &outs[text_of[t]];
			const char *m = strstr(p, mark[text_of[t]]);
			if (!m || m == head) {
				b.oom = 1;
				break;
			}
			rt_json_buf_add(&b, p, (size_t)(m - 1 - p));
			put_data(&b, o, o->dtype);
			p = m + strlen(mark[text_of[t]]) + 1;
		}
		rt_json_buf_add(&b, p, strlen(p));
	}
	free(head);
	size_t hl = b.len;
	if (!head || b.oom || (bin_total && hl > SIZE_MAX - bin_total)) {
		c->status = 500;
		snprintf(c->err, sizeof c->err, "out of memory");
	} else if (!bin_total) {
		set_encoded(c, "application/json", (unsigned char *)b.p, hl);
		b.p = NULL;
	} else {
		rt_json_buf_add(&b, "", 0);
		for (int i = 0; i < nout; i++)
			if (bins[i])
				rt_json_buf_add(&b, (const char *)bins[i], bin_len[i]);
		if (b.oom) {
			c->status = 500;
			snprintf(c->err, sizeof c->err, "out of memory");
		} else {
			snprintf(c->resp_hcl, sizeof c->resp_hcl, "%zu", hl);
			set_encoded(c, "application/octet-stream", (unsigned char *)b.p, b.len);
			b.p = NULL;
		}
	}
	rt_json_buf_free(&b);
	for (int i = 0; i < nout; i++)
		free(bins[i]);
}

static int v2_status(int st)
{
	if (st == 404 || st == 503 || st == 504 || st == 413)
		return st;
	if (st >= 400 && st < 500)
		return 400;
	return 500;
}

/* shape of nested arrays a (rectangular) into shape[*ndim]; -1 when it is not rectangular,
 * too deep, or holds something but numbers and booleans */
static int nested_shape(const json_t *a, int d, int *ndim, int64_t *shape)
{
	if (!json_is_array(a)) {
		if (!json_is_number(a) && !json_is_boolean(a))
			return -1;
		if (*ndim < 0)
			*ndim = d;
		return *ndim == d ? 0 : -1;
	}
	if (d >= FN_MAX_DIMS)
		return -1;
	if (*ndim >= 0 && (d >= *ndim || shape[d] != (int64_t)json_array_size(a)))
		return -1;
	if (*ndim < 0 && json_array_size(a) == 0) {
		*ndim = d + 1;
		shape[d] = 0;
		return 0;
	}
	shape[d] = (int64_t)json_array_size(a);
	for (size_t i = 0; i < json_array_size(a); i++)
		if (nested_shape(json_array_get(a, i), d + 1, ndim, shape) < 0)
			return -1;
	return 0;
}

static void nested_values(const json_t *a, double *v, size_t *k)
{
	if (json_is_array(a)) {
		for (size_t i = 0; i < json_array_size(a); i++)
			nested_values(json_array_get(a, i), v, k);
		return;
	}
	v[(*k)++] = json_is_boolean(a) ? (json_is_true(a) ? 1 : 0) : json_number_value(a);
}

/* the declared outputs of a kind without a packed form from its {"<output>": nested array}
 * answer: the count, or -1 with c->status and c->err */
static int generic_outputs(v2_ctx *c, const json_t *out, v2_out *outs, double **bufs)
{
	const fn_v2_sig *sig = &c->desc.v2;
	for (int i = 0; i < sig->n_outputs; i++) {
		const fn_v2_tensor *s = &sig->outputs[i];
		const json_t *a = json_object_get(out, s->name);
		int ndim = -1;
		int64_t shape[FN_MAX_DIMS] = {0};
		if (!a || nested_shape(a, 0, &ndim, shape) < 0 || ndim < 0 || !shape_fits(s, ndim, shape)) {
			char want[160];
			shape_str(s, want, sizeof want);
			c->status = 500;
			snprintf(c->err, sizeof c->err, "kind '%s' answered no output '%s' of shape %s",
				 c->desc.kind, s->name, want);
			return -1;
		}
		size_t count = 1;
		for (int d = 0; d < ndim; d++)
			count *= (size_t)shape[d];
		if (count > V2_MAX_ELEMS) {
			c->status = 500;
			snprintf(c->err, sizeof c->err, "output '%s': too many elements", s->name);
			return -1;
		}
		bufs[i] = calloc(count + 1, sizeof(double));
		size_t k = 0;
		if (bufs[i])
			nested_values(a, bufs[i], &k);
		outs[i] = (v2_out){s->name, s->datatype, ndim, {0}, count, bufs[i], NULL};
		memcpy(outs[i].shape, shape, sizeof shape);
	}
	return sig->n_outputs;
}

/* the kind's output c->out -> the answer in c->resp (or c->status and c->err); a worker's
 * job for a large request */
static void answer_work(void *arg)
{
	v2_ctx *c = arg;
	json_t *out = c->out;
	v2_out outs[V2_MAX_TENSORS + 2];
	int nout = 0;
	double *bufs[V2_MAX_TENSORS + 2] = {0};
	if (!strcmp(c->kind, "mlp")) {
		/* the packed answer to the packed input (functions/fn_mlp.c), or rows of JSON */
		json_t *rows = json_object_get(out, "outputs"), *labels = json_object_get(out, "labels");
		json_t *packed = json_object_get(out, "outputs_f32"), *sh = json_object_get(out, "shape");
		size_t nr = json_array_size(rows), nc = json_array_size(json_array_get(rows, 0));
		if (json_is_string(packed)) {
			nr = (size_t)json_integer_value(json_array_get(sh, 0));
			nc = (size_t)json_integer_value(json_array_get(sh, 1));
			if (json_string_length(packed) != nr * nc * sizeof(float) || nr > V2_MAX_ELEMS ||
			    nc > V2_MAX_ELEMS)
				nr = nc = 0;
		}
		double *p = calloc(nr * nc + 1, sizeof(double)), *l = calloc(nr + 1, sizeof(double));
		bufs[0] = p;
		bufs[1] = l;
		const char *pb = json_is_string(packed) ? json_string_value(packed) : NULL;
		for (size_t r = 0; r < nr && p; r++) {
			json_t *row = json_array_get(rows, r);
			double mx = -INFINITY, sum = 0;
			for (size_t k = 0; k < nc; k++) {
				float f;
				if (pb)
					memcpy(&f, pb + (r * nc + k) * sizeof f, sizeof f);
				p[r * nc + k] = pb ? f : json_number_value(json_array_get(row, k));
				mx = fmax(mx, p[r * nc + k]);
			}
			for (size_t k = 0; k < nc; k++)
				sum += p[r * nc + k] = exp(p[r * nc + k] - mx);
			for (size_t k = 0; k < nc; k++)
				p[r * nc + k] /= sum;
			if (l)
				l[r] = (double)json_integer_value(json_array_get(labels, r));
		}
		outs[nout++] = (v2_out){"OUTPUT0", "FP32", 2, {(int64_t)nr, (int64_t)nc}, nr * nc, p, NULL};
		outs[nout++] = (v2_out){"LABEL", "INT64", 1, {(int64_t)nr}, nr, l, NULL};
	} else if (!strcmp(c->kind, "llama")) {
		json_t *toks = json_object_get(out, "tokens");
		size_t n = json_array_size(toks);
		double *p = calloc(n + 1, sizeof(double));
		bufs[0] = p;
		for (size_t k = 0; k < n && p; k++)
			p[k] = (double)json_integer_value(json_array_get(toks, k));
		outs[nout++] = (v2_out){"output_ids", "INT64", 2, {1, (int64_t)n}, n, p, NULL};
	} else if (strcmp(c->kind, "echo") != 0 && c->desc.has_v2) {
		if ((nout = generic_outputs(c, out, outs, bufs)) < 0)
			goto done;
	} else {   /* echo: inputs back */
		for (int i = 0; i < c->nin; i++) {
			v2_tensor *t = &c->in[i];
			outs[nout] = (v2_out){t->name, t->dtype, t->ndim, {0}, t->count, t->v, t->raw};
			memcpy(outs[nout].shape, t->shape, sizeof t->shape);
			nout++;
		}
	}
	int ok = 1;
	const char *names[V2_MAX_TENSORS + 2];
	char werr[256];
	for (int i = 0; i < nout; i++) {
		if (!outs[i].v && !outs[i].raw)
			ok = 0;
		names[i] = outs[i].name;
	}
	if (!ok) {
		c->status = 500;
		snprintf(c->err, sizeof c->err, "out of memory");
	} else if (check_wanted(c, names, nout, werr, sizeof werr) < 0) {
		c->status = 400;
		snprintf(c->err, sizeof c->err, "%s", werr);
	} else {
		build_outputs(c, outs, nout);
	}
done:
	for (int i = 0; i < V2_MAX_TENSORS + 2; i++)
		free(bufs[i]);
	for (int i = 0; i < c->nin; i++) {   /* written out: not held while the answer is sent */
		free(c->in[i].v);
		c->in[i].v = NULL;
		c->in[i].raw = NULL;
	}
	free(c->inflated);
	c->inflated = NULL;
}

static void answer_done(void *arg, int gone)
{
	v2_ctx *c = arg;
	rt_req *req = c->req;
	(void)gone;   /* the answer goes nowhere then; it is made all the same */
	if (c->status != 200) {
		rt_req_reply_error(req, c->status, "%s", c->err);
	} else {
		if (c->resp_hcl[0])
			rt_req_add_header(req, "Inference-Header-Content-Length", c->resp_hcl);
		if (c->resp_enc)
			rt_req_add_header(req, "Content-Encoding", c->resp_enc);
		rt_req_reply_take(req, 200, c->resp_ctype, (char *)c->resp, c->resp_len);
		c->resp = NULL;   /* the HTTP layer frees it once written */
	}
	ctx_free(c);
}

static void infer_result(const rt_call_result *res, void *ud)
{
	v2_ctx *c = ud;
	rt_req *req = c->req;
	rt_api_result_headers(req, res);
	if (!res->out) {
		rt_req_reply_error(req, v2_status(res->err->status), "%s", res->err->msg);
		ctx_free(c);
		return;
	}
	c->rev = res->rev;
	c->out = json_incref(res->out);   /* borrowed; jansson's reference counts are atomic */
	c->accept_enc = accept_encoding(req);
	rt_api_offload(c->api, req, c->big, answer_work, answer_done, c);
}

/* looks model name up in the registry (its latest revision into *info, when not NULL);
 * replies 404 and returns 0 when it is not a deployed function */
static int find_model(rt_req *req, rt_api *api, const char *name, rt_revision_info *info)
{
	char err[256];
	rt_revision_info tmp;
	if (rt_manifest_name_valid(name, err, sizeof err) == 0 &&
	    rt_registry_get(api->reg, name, info ? info : &tmp) == 0)
		return 1;
	rt_req_reply_error(req, 404, "unknown model '%s'", name);
	return 0;
}

/* inflate, parse and convert the request into the kind's input c->kin (or c->status and
 * c->err); a worker's job for a large or compressed body */
static void parse_work(void *arg)
{
	v2_ctx *c = arg;
	const char *body;
	size_t blen;
	unsigned char *inflated = NULL;
	c->status = 400;
	if (request_body(c, c->api->max_body_bytes, &body, &blen, &inflated, &c->status,
			 c->err, sizeof c->err) < 0)
		return;
	c->inflated = inflated;   /* binary tensors may point into it */
	int prc = parse_request(body, blen, c, c->err, sizeof c->err);
	if (prc < 0) {
		c->status = prc == -EFBIG ? 413 : prc == -ENOMEM ? 500 : 400;
		return;
	}
	c->kin = to_kind_input(c, c->err, sizeof c->err);
	if (!c->kin)
		return;
	c->status = 0;
	if (strcmp(c->kind, "echo") != 0) {   /* only echo answers from the request's tensors */
		for (int i = 0; i < c->nin; i++) {
			free(c->in[i].v);
			c->in[i].v = NULL;
			c->in[i].raw = NULL;
		}
		free(c->inflated);
		c->inflated = NULL;
	}
}

static void parse_done(void *arg, int gone)
{
	v2_ctx *c = arg;
	if (gone) {
		rt_req_reply_error(c->req, 499, "the client closed the request");
		ctx_free(c);
		return;
	}
	if (c->status) {
		rt_req_reply_error(c->req, c->status, "%s", c->err);
		ctx_free(c);
		return;
	}
	json_t *kin = c->kin;
	c->kin = NULL;
	fn_header hdrs[RT_HTTP_MAX_HEADERS];
	rt_call call = {.function = c->model, .rev = c->rev, .in = kin, .done = infer_result, .ud = c};
	rt_api_call_from_req(&call, c->req, hdrs);
	rt_sched_submit(c->api->sched, &call);
}

static void infer_here(rt_req *req, void *ud, int answered);

static void h_infer(rt_req *req, void *ud)
{
	const char *name = rt_req_param(req, "m");
	if (!find_model(req, ud, name, NULL))
		return;
	if (rt_api_route(ud, req, name, infer_here, ud) == 0)
		infer_here(req, ud, 0);
}

/* the call runs on this node (answered: a peer answered it) */
static void infer_here(rt_req *req, void *ud, int answered)
{
	rt_api *api = ud;
	const char *name = rt_req_param(req, "m"), *ver = rt_req_param(req, "v");
	rt_revision_info info;
	uint32_t rev = 0;
	if (answered || !find_model(req, api, name, &info))
		return;
	if (ver) {
		rt_revision_info ri;
		if (rt_api_version(ver, &rev) < 0 ||
		    rt_registry_get_revision(api->reg, name, rev, &ri) < 0) {
			rt_req_reply_error(req, 404, "unknown version '%s' of model '%s'", ver, name);
			return;
		}
		info = ri;
	}
	v2_ctx *c = calloc(1, sizeof *c);
	if (!c) {
		rt_req_reply_error(req, 500, "out of memory");
		return;
	}
	c->api = api;
	c->req = req;
	c->rev = rev;
	snprintf(c->model, sizeof c->model, "%s", name);
	snprintf(c->kind, sizeof c->kind, "%s", info.manifest.kind);
	c->desc = info.desc;
	/* the headers the parse reads, copied on the loop thread (a longer value than the copy
	 * holds is invalid for both: an unknown encoding, a number beyond any body) */
	const char *ce = rt_req_header(req, "Content-Encoding");
	const char *hcl = rt_req_header(req, "Inference-Header-Content-Length");
	if (ce) {
		c->has_ce = 1;
		snprintf(c->ce, sizeof c->ce, "%s", ce);
	}
	if (hcl) {
		c->has_hcl = 1;
		snprintf(c->hcl, sizeof c->hcl, "%s", strlen(hcl) < sizeof c->hcl ? hcl : "x");
	}
	int encoded = ce && ce[0] && strcasecmp(ce, "identity") != 0;
	c->big = encoded || req->body_len >= RT_API_INLINE_BYTES;
	rt_api_offload(api, req, c->big, parse_work, parse_done, c);
}

static void h_server_meta(rt_req *req, void *ud)
{
	(void)ud;
	rt_api_reply_json(req, 200, json_pack("{s:s,s:s,s:[s,s,s]}", "name", "thaw", "version", THAW_VERSION,
					      "extensions", "binary_tensor_data", "model_repository",
					      "statistics"));
}

static void h_model_meta(rt_req *req, void *ud)
{
	rt_api *api = ud;
	const char *name = rt_req_param(req, "m");
	json_t *fn = NULL;
	rt_revision_info info;
	if (!find_model(req, api, name, &info))
		return;
	if (rt_registry_get_json(api->reg, name, &fn) < 0) {
		rt_req_reply_error(req, 500, "registry unavailable");
		return;
	}
	json_t *versions = json_array();
	size_t i;
	json_t *r;
	json_array_foreach(json_object_get(fn, "revisions"), i, r) {
		char v[16];
		snprintf(v, sizeof v, "%lld", (long long)json_integer_value(json_object_get(r, "revision")));
		json_array_append_new(versions, json_string(v));
	}
	json_decref(fn);
	char platform[80];
	snprintf(platform, sizeof platform, "thaw_%.60s",
		 rt_manifest_plugin_path(info.manifest.kind) ? "plugin" : info.manifest.kind);
	/* the signature the kind declared at deploy (the revision's descriptor) */
	json_t *inputs = rt_desc_v2_json(&info.desc, 0), *outputs = rt_desc_v2_json(&info.desc, 1);
	rt_api_reply_json(req, 200, json_pack("{s:s,s:o,s:s,s:o,s:o}", "name", name, "versions", versions,
					      "platform", platform, "inputs", inputs, "outputs", outputs));
}

static void h_model_ready(rt_req *req, void *ud)
{
	rt_api *api = ud;
	const char *name = rt_req_param(req, "m");
	if (!find_model(req, api, name, NULL))
		return;
	/* a deployed model answers 200 either way: scaled to zero it is not loaded ("ready":
	 * false) yet serves the next call (a cold start); a 4xx would read as broken to a health
	 * checker (docs/api.md, "Open Inference Protocol") */
	int ready = rt_sched_is_ready(api->sched, name);
	rt_api_reply_json(req, 200, json_pack("{s:s,s:b}", "name", name, "ready", ready));
}

static void h_model_stats(rt_req *req, void *ud)
{
	rt_api *api = ud;
	const char *name = rt_req_param(req, "m");
	rt_revision_info info;
	if (!find_model(req, api, name, &info))
		return;
	json_t *st = rt_sched_stats_json(api->sched, name);
	json_object_set_new(st, "name", json_string(name));
	char v[16];
	snprintf(v, sizeof v, "%u", info.rev);
	json_object_set_new(st, "version", json_string(v));
	rt_api_reply_json(req, 200, json_pack("{s:[o]}", "model_stats", st));
}

static void h_repo_index(rt_req *req, void *ud)
{
	rt_api *api = ud;
	rt_registry_entry *e = NULL;
	size_t n = 0;
	if (rt_registry_list(api->reg, &e, &n) < 0) {
		rt_req_reply_error(req, 500, "registry unavailable");
		return;
	}
	json_t *arr = json_array();
	for (size_t i = 0; i < n; i++) {
		char v[16];
		snprintf(v, sizeof v, "%u", e[i].latest_rev);
		int ready = rt_sched_is_ready(api->sched, e[i].name);
		json_array_append_new(arr, json_pack("{s:s,s:s,s:s}", "name", e[i].name, "version", v,
						     "state", ready ? "READY" : "UNAVAILABLE"));
	}
	free(e);
	rt_api_reply_json(req, 200, arr);
}

static void repo_action(rt_req *req, rt_api *api, int load)
{
	const char *name = rt_req_param(req, "m");
	if (!find_model(req, api, name, NULL))
		return;
	if ((load ? rt_sched_load(api->sched, name) : rt_sched_unload(api->sched, name)) < 0) {
		rt_req_reply_error(req, 404, "unknown model '%s'", name);
		return;
	}
	rt_api_reply_json(req, 200, json_object());
}

static void h_repo_load(rt_req *req, void *ud)
{
	repo_action(req, ud, 1);
}

static void h_repo_unload(rt_req *req, void *ud)
{
	repo_action(req, ud, 0);
}

int rt_api_v2_register(rt_api *api)
{
	static const rt_route_def routes[] = {
		{"GET", "/v2", h_server_meta},
		{"GET", "/v2/models/{m}", h_model_meta},
		{"GET", "/v2/models/{m}/versions/{v}", h_model_meta},
		{"GET", "/v2/models/{m}/ready", h_model_ready},
		{"GET", "/v2/models/{m}/versions/{v}/ready", h_model_ready},
		{"GET", "/v2/models/{m}/stats", h_model_stats},
		{"POST", "/v2/models/{m}/infer", h_infer},
		{"POST", "/v2/models/{m}/versions/{v}/infer", h_infer},
		{"POST", "/v2/repository/index", h_repo_index},
		{"POST", "/v2/repository/models/{m}/load", h_repo_load},
		{"POST", "/v2/repository/models/{m}/unload", h_repo_unload},
	};
	return rt_router_add_all(api->router, routes, sizeof routes / sizeof routes[0], api);
}

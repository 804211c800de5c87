/* snap_gguf.c — the GGUF reader and ggml type decoders (see snap_gguf.h and ggml's
 * docs/gguf.md). The parser walks the file with a cursor that never passes the end: each
 * claimed count is first compared with the bytes left (every element takes at least a known
 * number of bytes), so no allocation is larger than the file justifies. */
#include "snapshot/snap_gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "snapshot/snap.h"
#include "snapshot/snap_int.h"

#define GGUF_MAGIC "GGUF"
#define GGUF_HEADER 24               /* magic, version, tensor count, kv count */
#define GGUF_TINFO_MIN 24            /* name length, ndim, type, offset */
#define GGUF_KV_MIN 13               /* key length, value type, one byte of value */

/* ---- float helpers */

float snap_f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1F, m = h & 0x3FF, u;
	if (e == 0) {
		if (m == 0) {
			u = sign;
		} else {   /* subnormal: normalise */
			e = 127 - 15 + 1;
			while (!(m & 0x400)) {
				m <<= 1;
				e--;
			}
			m &= 0x3FF;
			u = sign | e << 23 | m << 13;
		}
	} else if (e == 31) {
		u = sign | 0x7F800000u | m << 13;
	} else {
		u = sign | (e + 127 - 15) << 23 | m << 13;
	}
	float f;
	memcpy(&f, &u, 4);
	return f;
}

float snap_bf16_to_f32(uint16_t h)
{
	uint32_t u = (uint32_t)h << 16;
	float f;
	memcpy(&f, &u, 4);
	return f;
}

uint16_t snap_f32_to_bf16(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	if ((u & 0x7FFFFFFFu) > 0x7F800000u)
		return (uint16_t)((u >> 16) | 0x40);   /* quiet NaN */
	u += 0x7FFFu + ((u >> 16) & 1);
	return (uint16_t)(u >> 16);
}

/* ---- types */

static const struct {
	const char *name;
	uint32_t blk, bytes;
} types[] = {
	[SNAP_GGML_F32] = {"F32", 1, 4},      [SNAP_GGML_F16] = {"F16", 1, 2},
	[SNAP_GGML_Q4_0] = {"Q4_0", 32, 18},  [SNAP_GGML_Q4_1] = {"Q4_1", 32, 20},
	[SNAP_GGML_Q5_0] = {"Q5_0", 32, 22},  [SNAP_GGML_Q5_1] = {"Q5_1", 32, 24},
	[SNAP_GGML_Q8_0] = {"Q8_0", 32, 34},  [SNAP_GGML_Q8_1] = {"Q8_1", 32, 36},
	[SNAP_GGML_Q2_K] = {"Q2_K", 256, 84}, [SNAP_GGML_Q3_K] = {"Q3_K", 256, 110},
	[SNAP_GGML_Q4_K] = {"Q4_K", 256, 144}, [SNAP_GGML_Q5_K] = {"Q5_K", 256, 176},
	[SNAP_GGML_Q6_K] = {"Q6_K", 256, 210}, [SNAP_GGML_Q8_K] = {"Q8_K", 256, 292},
	[SNAP_GGML_I8] = {"I8", 1, 1},        [SNAP_GGML_I16] = {"I16", 1, 2},
	[SNAP_GGML_I32] = {"I32", 1, 4},      [SNAP_GGML_I64] = {"I64", 1, 8},
	[SNAP_GGML_F64] = {"F64", 1, 8},      [SNAP_GGML_BF16] = {"BF16", 1, 2},
};
#define N_TYPES (sizeof types / sizeof *types)

/* names of the ggml types this reader does not size (IQ*, TQ*, MXFP4): for messages */
static const char *other_type_name(uint32_t t)
{
	static const char *const n[] = {[16] = "IQ2_XXS", [17] = "IQ2_XS", [18] = "IQ3_XXS",
		[19] = "IQ1_S", [20] = "IQ4_NL", [21] = "IQ3_S", [22] = "IQ2_S", [23] = "IQ4_XS",
		[29] = "IQ1_M", [34] = "TQ1_0", [35] = "TQ2_0", [39] = "MXFP4"};
	return t < sizeof n / sizeof *n && n[t] ? n[t] : NULL;
}

const char *snap_gguf_type_name(uint32_t t)
{
	if (t < N_TYPES && types[t].name)
		return types[t].name;
	const char *o = other_type_name(t);
	return o ? o : "?";
}

int snap_gguf_type_block(uint32_t t, uint32_t *blk, uint32_t *bytes)
{
	if (t >= N_TYPES || !types[t].name)
		return 0;
	*blk = types[t].blk;
	*bytes = types[t].bytes;
	return 1;
}

int snap_gguf_can_decode(uint32_t t)
{
	switch (t) {
	case SNAP_GGML_F32: case SNAP_GGML_F16: case SNAP_GGML_BF16: case SNAP_GGML_Q8_0:
	case SNAP_GGML_Q4_0: case SNAP_GGML_Q4_K: case SNAP_GGML_Q5_K: case SNAP_GGML_Q6_K:
		return 1;
	default:
		return 0;
	}
}

/* ---- decoders (ggml's reference dequantizers, same float operations in the same order) */

static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* the 6-bit scale and min of sub-block j of a Q4_K / Q5_K block's 12 scale bytes */
static inline void scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m)
{
	if (j < 4) {
		*d = q[j] & 63;
		*m = q[j + 4] & 63;
	} else {
		*d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
		*m = (uint8_t)((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
	}
}

static void dec_q8_0(const uint8_t *b, float *y)
{
	float d = snap_f16_to_f32(rd16(b));
	for (int j = 0; j < 32; j++)
		y[j] = (float)(int8_t)b[2 + j] * d;
}

static void dec_q4_0(const uint8_t *b, float *y)
{
	float d = snap_f16_to_f32(rd16(b));
	for (int j = 0; j < 16; j++) {
		int x0 = (b[2 + j] & 0x0F) - 8, x1 = (b[2 + j] >> 4) - 8;
		y[j] = (float)x0 * d;
		y[j + 16] = (float)x1 * d;
	}
}

/* Q4_K: d, dmin (f16), scales[12], qs[128] */
static void dec_q4_k(const uint8_t *b, float *y)
{
	float d = snap_f16_to_f32(rd16(b)), min = snap_f16_to_f32(rd16(b + 2));
	const uint8_t *sc = b + 4, *q = b + 16;
	uint8_t s, m;
	for (int j = 0, is = 0; j < 256; j += 64, is += 2, q += 32) {
		scale_min_k4(is, sc, &s, &m);
		float d1 = d * s, m1 = min * m;
		scale_min_k4(is + 1, sc, &s, &m);
		float d2 = d * s, m2 = min * m;
		for (int l = 0; l < 32; l++)
			*y++ = d1 * (q[l] & 0xF) - m1;
		for (int l = 0; l < 32; l++)
			*y++ = d2 * (q[l] >> 4) - m2;
	}
}

/* Q5_K: d, dmin (f16), scales[12], qh[32], qs[128] */
static void dec_q5_k(const uint8_t *b, float *y)
{
	float d = snap_f16_to_f32(rd16(b)), min = snap_f16_to_f32(rd16(b + 2));
	const uint8_t *sc = b + 4, *qh = b + 16, *ql = b + 48;
	uint8_t s, m, u1 = 1, u2 = 2;
	for (int j = 0, is = 0; j < 256; j += 64, is += 2, ql += 32) {
		scale_min_k4(is, sc, &s, &m);
		float d1 = d * s, m1 = min * m;
		scale_min_k4(is + 1, sc, &s, &m);
		float d2 = d * s, m2 = min * m;
		for (int l = 0; l < 32; l++)
			*y++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
		for (int l = 0; l < 32; l++)
			*y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
		u1 = (uint8_t)(u1 << 2);
		u2 = (uint8_t)(u2 << 2);
	}
}

/* Q6_K: ql[128], qh[64], scales[16] (int8), d (f16) */
static void dec_q6_k(const uint8_t *b, float *y)
{
	float d = snap_f16_to_f32(rd16(b + 208));
	const uint8_t *ql = b, *qh = b + 128;
	const int8_t *sc = (const int8_t *)(b + 192);
	for (int n = 0; n < 256; n += 128, y += 128, ql += 64, qh += 32, sc += 8)
		for (int l = 0; l < 32; l++) {
			int is = l / 16;
			int q1 = (int8_t)((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
			int q2 = (int8_t)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
			int q3 = (int8_t)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
			int q4 = (int8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
			y[l + 0] = d * sc[is + 0] * q1;
			y[l + 32] = d * sc[is + 2] * q2;
			y[l + 64] = d * sc[is + 4] * q3;
			y[l + 96] = d * sc[is + 6] * q4;
		}
}

int snap_gguf_to_f32(uint32_t t, const void *src, uint64_t n, float *dst)
{
	const uint8_t *s = src;
	uint32_t blk, bytes;
	if (!snap_gguf_can_decode(t) || !snap_gguf_type_block(t, &blk, &bytes))
		return -ENOTSUP;
	if (n % blk)
		return -EINVAL;
	switch (t) {
	case SNAP_GGML_F32:
		memcpy(dst, s, n * 4);
		return 0;
	case SNAP_GGML_F16:
		for (uint64_t i = 0; i < n; i++)
			dst[i] = snap_f16_to_f32(rd16(s + 2 * i));
		return 0;
	case SNAP_GGML_BF16:
		for (uint64_t i = 0; i < n; i++)
			dst[i] = snap_bf16_to_f32(rd16(s + 2 * i));
		return 0;
	default:
		break;
	}
	void (*dec)(const uint8_t *, float *) = t == SNAP_GGML_Q8_0 ? dec_q8_0 :
		t == SNAP_GGML_Q4_0 ? dec_q4_0 : t == SNAP_GGML_Q4_K ? dec_q4_k :
		t == SNAP_GGML_Q5_K ? dec_q5_k : dec_q6_k;
	for (uint64_t b = 0; b < n / blk; b++)
		dec(s + b * bytes, dst + b * blk);
	return 0;
}

/* ---- parser */

typedef struct cur {
	const uint8_t *p;
	uint64_t off, size;
	char *err;
	size_t errlen;
} cur;

static uint64_t left(const cur *c) { return c->size - c->off; }

static int need(cur *c, uint64_t n, const char *what)
{
	if (n > left(c))
		return snap_errf(c->err, c->errlen, -EBADMSG,
				 "GGUF truncated: %s needs %llu bytes at offset %llu, the file has %llu",
				 what, (unsigned long long)n, (unsigned long long)c->off,
				 (unsigned long long)c->size);
	return 0;
}

static int get_u32(cur *c, uint32_t *v, const char *what)
{
	int rc = need(c, 4, what);
	if (rc)
		return rc;
	*v = snap_rd32(c->p + c->off);
	c->off += 4;
	return 0;
}

static int get_u64(cur *c, uint64_t *v, const char *what)
{
	int rc = need(c, 8, what);
	if (rc)
		return rc;
	*v = snap_rd64(c->p + c->off);
	c->off += 8;
	return 0;
}

static int get_str(cur *c, snap_gguf_str *s, const char *what)
{
	uint64_t n;
	int rc = get_u64(c, &n, what);
	if (rc)
		return rc;
	if ((rc = need(c, n, what)))
		return rc;
	s->s = (const char *)(c->p + c->off);
	s->len = n;
	c->off += n;
	return 0;
}

static size_t vsize(uint32_t t)
{
	static const size_t sz[SNAP_GGUF_VTYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
	return t < SNAP_GGUF_VTYPE_COUNT ? sz[t] : 0;
}

static const char *vname(uint32_t t)
{
	static const char *const n[SNAP_GGUF_VTYPE_COUNT] = {"uint8", "int8", "uint16", "int16",
		"uint32", "int32", "float32", "bool", "string", "array", "uint64", "int64", "float64"};
	return t < SNAP_GGUF_VTYPE_COUNT ? n[t] : "?";
}

/* a fixed-size scalar at p into kv's u / i / f */
static int scalar(snap_gguf_kv *kv, uint32_t t, const uint8_t *p)
{
	switch (t) {
	case SNAP_GGUF_U8: kv->u = p[0]; kv->i = (int64_t)kv->u; break;
	case SNAP_GGUF_I8: kv->i = (int8_t)p[0]; break;
	case SNAP_GGUF_U16: kv->u = snap_rd16(p); kv->i = (int64_t)kv->u; break;
	case SNAP_GGUF_I16: kv->i = (int16_t)snap_rd16(p); break;
	case SNAP_GGUF_U32: kv->u = snap_rd32(p); kv->i = (int64_t)kv->u; break;
	case SNAP_GGUF_I32: kv->i = (int32_t)snap_rd32(p); break;
	case SNAP_GGUF_U64: kv->u = snap_rd64(p); kv->i = (int64_t)kv->u; break;
	case SNAP_GGUF_I64: kv->i = (int64_t)snap_rd64(p); break;
	case SNAP_GGUF_BOOL:
		if (p[0] > 1)
			return -1;
		kv->u = p[0];
		kv->i = p[0];
		break;
	case SNAP_GGUF_F32: {
		uint32_t u = snap_rd32(p);
		float f;
		memcpy(&f, &u, 4);
		kv->f = f;
		break;
	}
	case SNAP_GGUF_F64: {
		uint64_t u = snap_rd64(p);
		memcpy(&kv->f, &u, 8);
		break;
	}
	default:
		return -1;
	}
	if (t == SNAP_GGUF_I8 || t == SNAP_GGUF_I16 || t == SNAP_GGUF_I32 || t == SNAP_GGUF_I64)
		kv->u = kv->i >= 0 ? (uint64_t)kv->i : 0;
	if (t != SNAP_GGUF_F32 && t != SNAP_GGUF_F64)
		kv->f = (t == SNAP_GGUF_U64 || t == SNAP_GGUF_U32 || t == SNAP_GGUF_U16 ||
			 t == SNAP_GGUF_U8 || t == SNAP_GGUF_BOOL) ? (double)kv->u : (double)kv->i;
	return 0;
}

static int parse_kv(cur *c, snap_gguf_kv *kv, uint64_t idx)
{
	snap_gguf_str k;
	uint32_t t;
	int rc;
	char what[64];
	snprintf(what, sizeof what, "metadata key %llu", (unsigned long long)idx);
	if ((rc = get_str(c, &k, what)))
		return rc;
	if (k.len == 0 || k.len > SNAP_GGUF_MAX_KEY)
		return snap_errf(c->err, c->errlen, -EBADMSG, "GGUF %s: key length %llu is not 1..%d",
				 what, (unsigned long long)k.len, SNAP_GGUF_MAX_KEY);
	for (uint64_t i = 0; i < k.len; i++)
		if ((unsigned char)k.s[i] < 0x20 || (unsigned char)k.s[i] > 0x7E)
			return snap_errf(c->err, c->errlen, -EBADMSG, "GGUF %s: the key is not printable ASCII", what);
	if (!(kv->key = strndup(k.s, k.len)))
		return snap_errf(c->err, c->errlen, -ENOMEM, "out of memory");
	if ((rc = get_u32(c, &t, kv->key)))
		return rc;
	if (t >= SNAP_GGUF_VTYPE_COUNT)
		return snap_errf(c->err, c->errlen, -EBADMSG, "GGUF metadata %s: unknown value type %u", kv->key, t);
	kv->type = (snap_gguf_vtype)t;
	if (t == SNAP_GGUF_STRING)
		return get_str(c, &kv->s, kv->key);
	if (t != SNAP_GGUF_ARRAY) {
		if ((rc = need(c, vsize(t), kv->key)))
			return rc;
		if (scalar(kv, t, c->p + c->off))
			return snap_errf(c->err, c->errlen, -EBADMSG, "GGUF metadata %s: bool value %u is not 0 or 1",
					 kv->key, c->p[c->off]);
		c->off += vsize(t);
		return 0;
	}
	uint32_t at;
	uint64_t n;
	if ((rc = get_u32(c, &at, kv->key)) || (rc = get_u64(c, &n, kv->key)))
		return rc;
	if (at == SNAP_GGUF_ARRAY)
		return snap_errf(c->err, c->errlen, -ENOTSUP, "GGUF metadata %s: nested arrays are not supported", kv->key);
	if (at >= SNAP_GGUF_VTYPE_COUNT)
		return snap_errf(c->err, c->errlen, -EBADMSG, "GGUF metadata %s: unknown array element type %u", kv->key, at);
	kv->arr_type = (snap_gguf_vtype)at;
	kv->arr_n = n;
	kv->arr_data = c->p + c->off;
	/* every element takes at least its size (a string at least its 8-byte length) */
	uint64_t min = at == SNAP_GGUF_STRING ? 8 : vsize(at);
	if (n > left(c) / min)
		return snap_errf(c->err, c->errlen, -EBADMSG,
				 "GGUF metadata %s: %llu %s elements cannot fit in the %llu bytes left",
				 kv->key, (unsigned long long)n, vname(at), (unsigned long long)left(c));
	if (at != SNAP_GGUF_STRING) {
		if (at == SNAP_GGUF_BOOL)
			for (uint64_t i = 0; i < n; i++)
				if (c->p[c->off + i] > 1)
					return snap_errf(c->err, c->errlen, -EBADMSG, "GGUF metadata %s[%llu]: bool is not 0 or 1",
							 kv->key, (unsigned long long)i);
		c->off += n * min;
		return 0;
	}
	kv->arr_str = malloc((n ? n : 1) * sizeof *kv->arr_str);
	if (!kv->arr_str)
		return snap_errf(c->err, c->errlen, -ENOMEM, "out of memory");
	for (uint64_t i = 0; i < n; i++)
		if ((rc = get_str(c, &kv->arr_str[i], kv->key)))
			return rc;
	return 0;
}

static int off_cmp(const void *a, const void *b)
{
	const snap_gguf_tensor *x = *(snap_gguf_tensor *const *)a, *y = *(snap_gguf_tensor *const *)b;
	return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static int key_cmp(const void *a, const void *b)
{
	return strcmp((*(snap_gguf_kv *const *)a)->key, (*(snap_gguf_kv *const *)b)->key);
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp((*(snap_gguf_tensor *const *)a)->name, (*(snap_gguf_tensor *const *)b)->name);
}

static int parse_tensor(cur *c, snap_gguf_tensor *t, uint64_t idx)
{
	snap_gguf_str nm;
	char what[64];
	int rc;
	snprintf(what, sizeof what, "tensor info %llu", (unsigned long long)idx);
	if ((rc = get_str(c, &nm, what)))
		return rc;
	if (nm.len == 0 || nm.len > SNAP_GGUF_MAX_NAME || memchr(nm.s, 0, nm.len))
		return snap_errf(c->err, c->errlen, -EBADMSG, "GGUF %s: name length %llu is not 1..%d bytes (or holds a NUL)",
				 what, (unsigned long long)nm.len, SNAP_GGUF_MAX_NAME);
	if (!(t->name = strndup(nm.s, nm.len)))
		return snap_errf(c->err, c->errlen, -ENOMEM, "out of memory");
	if ((rc = get_u32(c, &t->ndim, t->name)))
		return rc;
	if (t->ndim < 1 || t->ndim > SNAP_GGUF_MAX_DIMS)
		return snap_errf(c->err, c->errlen, -EBADMSG, "GGUF tensor %s: %u dimensions (1..%d)", t->name,
				 t->ndim, SNAP_GGUF_MAX_DIMS);
	t->nelem = 1;
	for (uint32_t d = 0; d < t->ndim; d++) {
		if ((rc = get_u64(c, &t->ne[d], t->name)))
			return rc;
		if (t->ne[d] == 0 || t->ne[d] > (1ull << 56) / t->nelem)
			return snap_errf(c->err, c->errlen, -EBADMSG, "GGUF tensor %s: dimension %u is %llu (empty or too large)",
					 t->name, d, (unsigned long long)t->ne[d]);
		t->nelem *= t->ne[d];
	}
	for (uint32_t d = t->ndim; d < SNAP_GGUF_MAX_DIMS; d++)
		t->ne[d] = 1;
	if ((rc = get_u32(c, &t->type, t->name)) || (rc = get_u64(c, &t->offset, t->name)))
		return rc;
	uint32_t blk, bytes;
	if (!snap_gguf_type_block(t->type, &blk, &bytes)) {
		const char *o = other_type_name(t->type);
		return snap_errf(c->err, c->errlen, -ENOTSUP, "GGUF tensor %s: type %u%s%s%s is not supported", t->name,
				 t->type, o ? " (" : " (unknown", o ? o : "", ")");
	}
	if (t->ne[0] % blk)
		return snap_errf(c->err, c->errlen, -EBADMSG, "GGUF tensor %s: row of %llu elements is not a whole number of %s blocks of %u",
				 t->name, (unsigned long long)t->ne[0], types[t->type].name, blk);
	t->nbytes = t->nelem / blk * bytes;   /* nelem <= 2^56, bytes / blk <= 8 */
	return 0;
}

static void gguf_free(snap_gguf *g)
{
	if (!g)
		return;
	for (size_t i = 0; i < g->n_kv; i++) {
		free(g->kv[i].key);
		free(g->kv[i].arr_str);
	}
	free(g->kv);
	for (size_t i = 0; i < g->n_tensors; i++)
		free(g->t[i].name);
	free(g->t);
	if (g->map)
		munmap(g->map, g->size);
	if (g->fd >= 0)
		close(g->fd);
	free(g->path);
	free(g);
}

void snap_gguf_close(snap_gguf *g) { gguf_free(g); }

static int parse(snap_gguf *g, char *err, size_t errlen)
{
	cur c = {g->buf, 0, g->size, err, errlen};
	uint64_t nt, nkv;
	int rc;
	if (g->size < 4 || memcmp(g->buf, GGUF_MAGIC, 4))
		return snap_errf(err, errlen, -EBADMSG, "not a GGUF file (no \"GGUF\" magic at offset 0)");
	c.off = 4;
	if ((rc = get_u32(&c, &g->version, "the version")))
		return rc;
	if (g->version != 2 && g->version != 3) {
		if (g->version == 0x03000000u || g->version == 0x02000000u)
			return snap_errf(err, errlen, -ENOTSUP, "GGUF: a big-endian file; only little-endian GGUF is supported");
		return snap_errf(err, errlen, -ENOTSUP, "GGUF version %u is not supported (only 2 and 3)", g->version);
	}
	if ((rc = get_u64(&c, &nt, "the tensor count")) || (rc = get_u64(&c, &nkv, "the metadata count")))
		return rc;
	if (nkv > left(&c) / GGUF_KV_MIN)
		return snap_errf(err, errlen, -EBADMSG, "GGUF claims %llu metadata keys, more than the %llu bytes left can hold",
				 (unsigned long long)nkv, (unsigned long long)left(&c));
	if (nt > left(&c) / GGUF_TINFO_MIN)
		return snap_errf(err, errlen, -EBADMSG, "GGUF claims %llu tensors, more than the %llu bytes left can hold",
				 (unsigned long long)nt, (unsigned long long)left(&c));
	g->kv = calloc(nkv ? nkv : 1, sizeof *g->kv);
	if (!g->kv)
		return snap_errf(err, errlen, -ENOMEM, "out of memory");
	for (uint64_t i = 0; i < nkv; i++) {
		g->n_kv = i + 1;
		if ((rc = parse_kv(&c, &g->kv[i], i)))
			return rc;
	}
	/* keys are unique */
	snap_gguf_kv **ks = malloc((g->n_kv ? g->n_kv : 1) * sizeof *ks);
	if (!ks)
		return snap_errf(err, errlen, -ENOMEM, "out of memory");
	for (size_t i = 0; i < g->n_kv; i++)
		ks[i] = &g->kv[i];
	qsort(ks, g->n_kv, sizeof *ks, key_cmp);
	for (size_t i = 1; i < g->n_kv; i++)
		if (!strcmp(ks[i - 1]->key, ks[i]->key)) {
			rc = snap_errf(err, errlen, -EBADMSG, "GGUF metadata key %s appears twice", ks[i]->key);
			free(ks);
			return rc;
		}
	free(ks);
	g->alignment = SNAP_GGUF_DEFAULT_ALIGN;
	const snap_gguf_kv *al = snap_gguf_find(g, "general.alignment");
	if (al) {
		if (al->type != SNAP_GGUF_U32 || al->u == 0 || (al->u & (al->u - 1)) || al->u > (1u << 24))
			return snap_errf(err, errlen, -EBADMSG, "GGUF general.alignment must be a uint32 power of two up to 2^24");
		g->alignment = (uint32_t)al->u;
	}
	if (nt > left(&c) / GGUF_TINFO_MIN)
		return snap_errf(err, errlen, -EBADMSG, "GGUF claims %llu tensors, more than the %llu bytes left can hold",
				 (unsigned long long)nt, (unsigned long long)left(&c));
	g->t = calloc(nt ? nt : 1, sizeof *g->t);
	if (!g->t)
		return snap_errf(err, errlen, -ENOMEM, "out of memory");
	for (uint64_t i = 0; i < nt; i++) {
		g->n_tensors = i + 1;
		if ((rc = parse_tensor(&c, &g->t[i], i)))
			return rc;
	}
	g->data_off = snap_round_up(c.off, g->alignment);
	if (g->data_off > g->size && nt)
		return snap_errf(err, errlen, -EBADMSG, "GGUF truncated: the data section would start at %llu, past the end (%llu)",
				 (unsigned long long)g->data_off, (unsigned long long)g->size);
	uint64_t data_size = g->data_off <= g->size ? g->size - g->data_off : 0;
	snap_gguf_tensor **ts = malloc((nt ? nt : 1) * sizeof *ts);
	if (!ts)
		return snap_errf(err, errlen, -ENOMEM, "out of memory");
	for (size_t i = 0; i < g->n_tensors; i++)
		ts[i] = &g->t[i];
	rc = 0;
	for (size_t i = 0; i < g->n_tensors && !rc; i++) {
		const snap_gguf_tensor *t = ts[i];
		if (t->offset % g->alignment)
			rc = snap_errf(err, errlen, -EBADMSG, "GGUF tensor %s: offset %llu is not a multiple of the alignment %u",
				       t->name, (unsigned long long)t->offset, g->alignment);
		else if (t->offset > data_size || t->nbytes > data_size - t->offset)
			rc = snap_errf(err, errlen, -EBADMSG, "GGUF tensor %s: bytes [%llu, +%llu) of the data section lie past "
				       "the end of the file (data section: %llu bytes)", t->name,
				       (unsigned long long)t->offset, (unsigned long long)t->nbytes,
				       (unsigned long long)data_size);
	}
	if (!rc) {
		qsort(ts, g->n_tensors, sizeof *ts, name_cmp);
		for (size_t i = 1; i < g->n_tensors && !rc; i++)
			if (!strcmp(ts[i - 1]->name, ts[i]->name))
				rc = snap_errf(err, errlen, -EBADMSG, "GGUF tensor name %s appears twice", ts[i]->name);
	}
	if (!rc) {
		qsort(ts, g->n_tensors, sizeof *ts, off_cmp);
		for (size_t i = 1; i < g->n_tensors && !rc; i++)
			if (ts[i - 1]->offset + ts[i - 1]->nbytes > ts[i]->offset)
				rc = snap_errf(err, errlen, -EBADMSG, "GGUF tensors %s and %s overlap in the data section",
					       ts[i - 1]->name, ts[i]->name);
	}
	free(ts);
	return rc;
}

int snap_gguf_parse_mem(const uint8_t *buf, size_t len, snap_gguf **out, char *err, size_t errlen)
{
	*out = NULL;
	snap_gguf *g = calloc(1, sizeof *g);
	if (!g)
		return snap_errf(err, errlen, -ENOMEM, "out of memory");
	g->fd = -1;
	g->buf = buf;
	g->size = len;
	int rc = parse(g, err, errlen);
	if (rc) {
		gguf_free(g);
		return rc;
	}
	*out = g;
	return 0;
}

int snap_gguf_open(const char *path, snap_gguf **out, char *err, size_t errlen)
{
	*out = NULL;
	snap_gguf *g = calloc(1, sizeof *g);
	struct stat st;
	int rc;
	char msg[900];
	if (!g)
		return snap_errf(err, errlen, -ENOMEM, "out of memory");
	g->fd = snap_open_regular(path, 0);
	if (g->fd < 0) {
		rc = snap_errf(err, errlen, g->fd, "%s: %s", path, g->fd == -EINVAL ? "not a regular file" : strerror(-g->fd));
		g->fd = -1;
		goto fail;
	}
	if (fstat(g->fd, &st) < 0) {
		rc = snap_errf(err, errlen, -errno, "%s: %s", path, strerror(errno));
		goto fail;
	}
	g->size = (uint64_t)st.st_size;
	if (g->size) {
		g->map = mmap(NULL, g->size, PROT_READ, MAP_SHARED, g->fd, 0);
		if (g->map == MAP_FAILED) {
			g->map = NULL;
			rc = snap_errf(err, errlen, -errno, "%s: mmap: %s", path, strerror(errno));
			goto fail;
		}
		madvise(g->map, g->size, MADV_SEQUENTIAL);
	}
	g->buf = g->map ? g->map : (const uint8_t *)"";
	if (!(g->path = strdup(path))) {
		rc = snap_errf(err, errlen, -ENOMEM, "out of memory");
		goto fail;
	}
	if ((rc = parse(g, msg, sizeof msg))) {
		snap_errf(err, errlen, rc, "%s: %s", path, msg);
		goto fail;
	}
	*out = g;
	return 0;
fail:
	gguf_free(g);
	return rc;
}

int snap_gguf_is_gguf(const char *path)
{
	int fd = snap_open_regular(path, 0);
	if (fd < 0)
		return 0;
	char m[4];
	ssize_t n = pread(fd, m, 4, 0);
	close(fd);
	return n == 4 && !memcmp(m, GGUF_MAGIC, 4);
}

const snap_gguf_kv *snap_gguf_find(const snap_gguf *g, const char *key)
{
	for (size_t i = 0; i < g->n_kv; i++)
		if (!strcmp(g->kv[i].key, key))
			return &g->kv[i];
	return NULL;
}

static int is_int(snap_gguf_vtype t)
{
	return t == SNAP_GGUF_U8 || t == SNAP_GGUF_I8 || t == SNAP_GGUF_U16 || t == SNAP_GGUF_I16 ||
	       t == SNAP_GGUF_U32 || t == SNAP_GGUF_I32 || t == SNAP_GGUF_U64 || t == SNAP_GGUF_I64;
}

int snap_gguf_get_uint(const snap_gguf *g, const char *key, uint64_t *v)
{
	const snap_gguf_kv *kv = snap_gguf_find(g, key);
	if (!kv)
		return -ENOENT;
	if (!is_int(kv->type) || (kv->type != SNAP_GGUF_U64 && kv->i < 0))
		return -EINVAL;
	*v = kv->u;
	return 0;
}

int snap_gguf_get_float(const snap_gguf *g, const char *key, double *v)
{
	const snap_gguf_kv *kv = snap_gguf_find(g, key);
	if (!kv)
		return -ENOENT;
	if (!is_int(kv->type) && kv->type != SNAP_GGUF_F32 && kv->type != SNAP_GGUF_F64)
		return -EINVAL;
	*v = kv->f;
	return 0;
}

int snap_gguf_get_str(const snap_gguf *g, const char *key, snap_gguf_str *v)
{
	const snap_gguf_kv *kv = snap_gguf_find(g, key);
	if (!kv)
		return -ENOENT;
	if (kv->type != SNAP_GGUF_STRING)
		return -EINVAL;
	*v = kv->s;
	return 0;
}

double snap_gguf_arr_num(const snap_gguf_kv *kv, uint64_t i)
{
	snap_gguf_kv tmp = {0};
	if (kv->arr_type == SNAP_GGUF_STRING || scalar(&tmp, kv->arr_type, kv->arr_data + i * vsize(kv->arr_type)))
		return 0;
	return tmp.f;
}

int64_t snap_gguf_arr_int(const snap_gguf_kv *kv, uint64_t i)
{
	snap_gguf_kv tmp = {0};
	if (kv->arr_type == SNAP_GGUF_STRING || scalar(&tmp, kv->arr_type, kv->arr_data + i * vsize(kv->arr_type)))
		return 0;
	if (kv->arr_type == SNAP_GGUF_F32 || kv->arr_type == SNAP_GGUF_F64)
		return tmp.f > -9e18 && tmp.f < 9e18 ? (int64_t)tmp.f : 0;
	return tmp.i;
}

const void *snap_gguf_data(const snap_gguf *g, size_t i)
{
	return g->buf + g->data_off + g->t[i].offset;
}

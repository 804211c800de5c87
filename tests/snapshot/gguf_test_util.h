/* gguf_test_util.h — test helper (header only, static): a GGUF v3 writer written from ggml's
 * docs/gguf.md (metadata of every type, tensor infos, alignment padding), and reference
 * quantizers and per-element dequantizers of Q8_0, Q4_0, Q4_K, Q5_K and Q6_K written from the
 * block layouts, independent of snapshot/snap_gguf.c. */
#ifndef THAW_TEST_GGUF_UTIL_H
#define THAW_TEST_GGUF_UTIL_H
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct gbuf {
	uint8_t *b;
	size_t n, cap;
} gbuf;

static __attribute__((unused)) void gb_put(gbuf *g, const void *p, size_t n)
{
	if (n == 0)
		return;
	if (g->n + n > g->cap) {
		g->cap = (g->n + n) * 2 + 64;
		g->b = realloc(g->b, g->cap);
	}
	memcpy(g->b + g->n, p, n);
	g->n += n;
}
static __attribute__((unused)) void gb_u8(gbuf *g, uint8_t v) { gb_put(g, &v, 1); }
static __attribute__((unused)) void gb_u32(gbuf *g, uint32_t v)
{
	uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
	gb_put(g, b, 4);
}
static __attribute__((unused)) void gb_u64(gbuf *g, uint64_t v)
{
	gb_u32(g, (uint32_t)v);
	gb_u32(g, (uint32_t)(v >> 32));
}
static __attribute__((unused)) void gb_str(gbuf *g, const char *s, size_t n)
{
	gb_u64(g, n);
	gb_put(g, s, n);
}

/* the metadata section under construction: its bytes and the number of pairs */
typedef struct gmeta {
	gbuf b;
	uint64_t n;
} gmeta;

static __attribute__((unused)) void gm_key(gmeta *m, const char *k, uint32_t type)
{
	gb_str(&m->b, k, strlen(k));
	gb_u32(&m->b, type);
	m->n++;
}
static __attribute__((unused)) void gm_str(gmeta *m, const char *k, const char *v) { gm_key(m, k, 8); gb_str(&m->b, v, strlen(v)); }
static __attribute__((unused)) void gm_u32(gmeta *m, const char *k, uint32_t v) { gm_key(m, k, 4); gb_u32(&m->b, v); }
static __attribute__((unused)) void gm_u64(gmeta *m, const char *k, uint64_t v) { gm_key(m, k, 10); gb_u64(&m->b, v); }
static __attribute__((unused)) void gm_bool(gmeta *m, const char *k, int v) { gm_key(m, k, 7); gb_u8(&m->b, (uint8_t)v); }
static __attribute__((unused)) void gm_f32(gmeta *m, const char *k, float v)
{
	uint32_t u;
	memcpy(&u, &v, 4);
	gm_key(m, k, 6);
	gb_u32(&m->b, u);
}
static __attribute__((unused)) void gm_arr_str(gmeta *m, const char *k, size_t n, char *const *s)
{
	gm_key(m, k, 9);
	gb_u32(&m->b, 8);
	gb_u64(&m->b, n);
	for (size_t i = 0; i < n; i++)
		gb_str(&m->b, s[i], strlen(s[i]));
}
static __attribute__((unused)) void gm_arr_f32(gmeta *m, const char *k, size_t n, const float *v)
{
	gm_key(m, k, 9);
	gb_u32(&m->b, 6);
	gb_u64(&m->b, n);
	for (size_t i = 0; i < n; i++) {
		uint32_t u;
		memcpy(&u, &v[i], 4);
		gb_u32(&m->b, u);
	}
}
static __attribute__((unused)) void gm_arr_i32(gmeta *m, const char *k, size_t n, const int32_t *v)
{
	gm_key(m, k, 9);
	gb_u32(&m->b, 5);
	gb_u64(&m->b, n);
	for (size_t i = 0; i < n; i++)
		gb_u32(&m->b, (uint32_t)v[i]);
}

typedef struct gtensor {
	char name[96];
	uint32_t type, ndim;
	uint64_t ne[4];
	void *data;                /* owned */
	size_t nbytes;
} gtensor;

/* gguf_write assembles a version-3 file: header, metadata, tensor infos, data with each
 * tensor at a multiple of align (32 unless the metadata set general.alignment). The bytes are
 * malloc'd; *len gets their count. */
static __attribute__((unused)) uint8_t *gguf_write(const gmeta *m, const gtensor *t, size_t nt, uint32_t align, size_t *len)
{
	gbuf g = {0};
	gb_put(&g, "GGUF", 4);
	gb_u32(&g, 3);
	gb_u64(&g, nt);
	gb_u64(&g, m->n);
	gb_put(&g, m->b.b, m->b.n);
	uint64_t off = 0;
	for (size_t i = 0; i < nt; i++) {
		gb_str(&g, t[i].name, strlen(t[i].name));
		gb_u32(&g, t[i].ndim);
		for (uint32_t d = 0; d < t[i].ndim; d++)
			gb_u64(&g, t[i].ne[d]);
		gb_u32(&g, t[i].type);
		gb_u64(&g, off);
		off += (t[i].nbytes + align - 1) / align * align;
	}
	while (g.n % align)
		gb_u8(&g, 0);
	for (size_t i = 0; i < nt; i++) {
		gb_put(&g, t[i].data, t[i].nbytes);
		while (g.n % align)
			gb_u8(&g, 0);
	}
	*len = g.n;
	return g.b;
}

/* ---- halves */

static __attribute__((unused)) uint16_t tq_f32_to_f16(float f)
{
	/* exact for the values the tests use (normal range, rounded to nearest even) */
	uint32_t u;
	memcpy(&u, &f, 4);
	uint32_t sign = (u >> 16) & 0x8000;
	int32_t e = (int32_t)((u >> 23) & 0xFF) - 127 + 15;
	uint32_t mant = u & 0x7FFFFF;
	if ((u & 0x7FFFFFFF) == 0)
		return (uint16_t)sign;
	if (e <= 0) {   /* subnormal half */
		if (e < -10)
			return (uint16_t)sign;
		mant |= 0x800000;
		uint32_t shift = (uint32_t)(14 - e);
		uint32_t h = mant >> shift, rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
		if (rem > half || (rem == half && (h & 1)))
			h++;
		return (uint16_t)(sign | h);
	}
	if (e >= 31)
		return (uint16_t)(sign | 0x7C00);
	uint32_t h = (uint32_t)e << 10 | mant >> 13, rem = mant & 0x1FFF;
	if (rem > 0x1000 || (rem == 0x1000 && (h & 1)))
		h++;
	return (uint16_t)(sign | h);
}

static __attribute__((unused)) float tq_f16_to_f32(uint16_t h)
{
	/* value = (-1)^s * 2^(e-15) * (1 + m/1024), subnormal 2^-14 * m/1024 */
	int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
	double v = e == 0 ? ldexp(m / 1024.0, -14) : ldexp(1.0 + m / 1024.0, e - 15);
	return (float)(s ? -v : v);
}

static __attribute__((unused)) int tq_round(float x) { return (int)lrintf(x); }

/* ---- Q8_0: d (f16), q[32] int8; x = q * d */
static __attribute__((unused)) void tq_quant_q8_0(const float *x, size_t n, uint8_t *out)
{
	for (size_t b = 0; b < n / 32; b++, out += 34, x += 32) {
		float amax = 0;
		for (int j = 0; j < 32; j++)
			amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
		uint16_t dh = tq_f32_to_f16(amax / 127.0f);
		float d = tq_f16_to_f32(dh), id = d ? 1.0f / d : 0;
		out[0] = (uint8_t)dh;
		out[1] = (uint8_t)(dh >> 8);
		for (int j = 0; j < 32; j++) {
			int q = tq_round(x[j] * id);
			out[2 + j] = (uint8_t)(int8_t)(q > 127 ? 127 : q < -127 ? -127 : q);
		}
	}
}
static __attribute__((unused)) float tq_deq_q8_0(const uint8_t *blk, int e)
{
	return (float)(int8_t)blk[2 + e] * tq_f16_to_f32((uint16_t)(blk[0] | blk[1] << 8));
}

/* ---- Q4_0: d (f16), qs[16]: element j < 16 is the low nibble of qs[j], j >= 16 the high
 * nibble of qs[j - 16]; x = (q - 8) * d */
static __attribute__((unused)) void tq_quant_q4_0(const float *x, size_t n, uint8_t *out)
{
	for (size_t b = 0; b < n / 32; b++, out += 18, x += 32) {
		float amax = 0;
		for (int j = 0; j < 32; j++)
			amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
		uint16_t dh = tq_f32_to_f16(amax / 7.0f);
		float d = tq_f16_to_f32(dh), id = d ? 1.0f / d : 0;
		out[0] = (uint8_t)dh;
		out[1] = (uint8_t)(dh >> 8);
		memset(out + 2, 0, 16);
		for (int j = 0; j < 32; j++) {
			int q = tq_round(x[j] * id) + 8;
			q = q < 0 ? 0 : q > 15 ? 15 : q;
			out[2 + (j & 15)] |= (uint8_t)(j < 16 ? q : q << 4);
		}
	}
}
static __attribute__((unused)) float tq_deq_q4_0(const uint8_t *blk, int e)
{
	int q = e < 16 ? blk[2 + e] & 15 : blk[2 + e - 16] >> 4;
	return (float)(q - 8) * tq_f16_to_f32((uint16_t)(blk[0] | blk[1] << 8));
}

/* ---- K-quants: 256-element super-blocks */

/* the 6-bit scale / min pair of sub-block j packed in 12 bytes (Q4_K, Q5_K): bytes 0..3 hold
 * scales 0..3 (low 6 bits) and the top 2 bits of scales 4..7; bytes 4..7 the same for mins;
 * bytes 8..11 the low 4 bits of scale 4..7 (low nibble) and min 4..7 (high nibble) */
static __attribute__((unused)) void tq_pack_k4(const uint8_t sc[8], const uint8_t mn[8], uint8_t out[12])
{
	for (int j = 0; j < 4; j++) {
		out[j] = (uint8_t)((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
		out[j + 4] = (uint8_t)((mn[j] & 63) | ((mn[j + 4] >> 4) << 6));
		out[j + 8] = (uint8_t)((sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4));
	}
}
static __attribute__((unused)) void tq_unpack_k4(const uint8_t in[12], int j, int *sc, int *mn)
{
	if (j < 4) {
		*sc = in[j] & 63;
		*mn = in[j + 4] & 63;
	} else {
		*sc = (in[j + 4] & 15) | ((in[j - 4] >> 6) << 4);
		*mn = (in[j + 4] >> 4) | ((in[j] >> 6) << 4);
	}
}

/* Q4_K (144 bytes): d, dmin (f16), scales[12], qs[128]; element e: sub-block e/32, nibble of
 * qs[(e/64)*32 + e%32] (low for the first 32 of each 64, high for the second);
 * x = (d*sc) * q - (dmin*m). Q5_K (176): d, dmin, scales[12], qh[32], qs[128]: the fifth bit of
 * element e is bit 2*(e/64) + (e%64 >= 32) of qh[e%32]. levels: 15 or 31 */
static __attribute__((unused)) void tq_quant_k45(const float *x, size_t n, uint8_t *out, int five)
{
	int levels = five ? 31 : 15;
	size_t bs = five ? 176 : 144;
	for (size_t b = 0; b < n / 256; b++, out += bs, x += 256) {
		float scf[8], mnf[8], smax = 0, mmax = 0;
		for (int s = 0; s < 8; s++) {
			float lo = 0, hi = 0;
			for (int j = 0; j < 32; j++) {
				float v = x[s * 32 + j];
				lo = v < lo ? v : lo;
				hi = v > hi ? v : hi;
			}
			scf[s] = (hi - lo) / (float)levels;
			mnf[s] = -lo;
			smax = scf[s] > smax ? scf[s] : smax;
			mmax = mnf[s] > mmax ? mnf[s] : mmax;
		}
		uint16_t dh = tq_f32_to_f16(smax / 63.0f), mh = tq_f32_to_f16(mmax / 63.0f);
		float d = tq_f16_to_f32(dh), dm = tq_f16_to_f32(mh);
		uint8_t sc[8], mn[8];
		for (int s = 0; s < 8; s++) {
			int a = d ? tq_round(scf[s] / d) : 0, c = dm ? tq_round(mnf[s] / dm) : 0;
			sc[s] = (uint8_t)(a > 63 ? 63 : a < 0 ? 0 : a);
			mn[s] = (uint8_t)(c > 63 ? 63 : c < 0 ? 0 : c);
		}
		memset(out, 0, bs);
		out[0] = (uint8_t)dh, out[1] = (uint8_t)(dh >> 8), out[2] = (uint8_t)mh, out[3] = (uint8_t)(mh >> 8);
		tq_pack_k4(sc, mn, out + 4);
		uint8_t *qh = out + 16, *qs = out + (five ? 48 : 16);
		for (int e = 0; e < 256; e++) {
			int s = e / 32;
			float step = d * sc[s], off = dm * mn[s];
			int q = step ? tq_round((x[e] + off) / step) : 0;
			q = q < 0 ? 0 : q > levels ? levels : q;
			int g = e / 64, l = e % 32, hi = (e % 64) >= 32;
			qs[g * 32 + l] |= (uint8_t)(hi ? (q & 15) << 4 : (q & 15));
			if (five && (q & 16))
				qh[l] |= (uint8_t)(1u << (2 * g + hi));
		}
	}
}
static __attribute__((unused)) float tq_deq_k45(const uint8_t *blk, int e, int five)
{
	float d = tq_f16_to_f32((uint16_t)(blk[0] | blk[1] << 8)), dm = tq_f16_to_f32((uint16_t)(blk[2] | blk[3] << 8));
	int sc, mn, g = e / 64, l = e % 32, hi = (e % 64) >= 32;
	tq_unpack_k4(blk + 4, e / 32, &sc, &mn);
	const uint8_t *qs = blk + (five ? 48 : 16), *qh = blk + 16;
	int q = hi ? qs[g * 32 + l] >> 4 : qs[g * 32 + l] & 15;
	if (five && (qh[l] >> (2 * g + hi) & 1))
		q += 16;
	float a = d * (float)sc, c = dm * (float)mn;
	return a * (float)q - c;
}

/* Q6_K (210 bytes): ql[128], qh[64], scales[16] (int8), d (f16). Element e: half h = e/128,
 * w = e%128, quarter u = w/32, l = w%32: low 4 bits from ql[h*64 + (u&1)*32 + l] (low nibble
 * for u < 2, high for u >= 2), high 2 bits from qh[h*32 + l] bits 2u..2u+1, scale
 * scales[h*8 + u*2 + l/16]; x = (d * scale) * (q - 32) */
static __attribute__((unused)) void tq_quant_q6_k(const float *x, size_t n, uint8_t *out)
{
	for (size_t b = 0; b < n / 256; b++, out += 210, x += 256) {
		float sf[16], smax = 0;
		for (int s = 0; s < 16; s++) {
			float a = 0;
			for (int j = 0; j < 16; j++)
				a = fabsf(x[s * 16 + j]) > a ? fabsf(x[s * 16 + j]) : a;
			sf[s] = a / 31.0f;
			smax = sf[s] > smax ? sf[s] : smax;
		}
		uint16_t dh = tq_f32_to_f16(smax / 127.0f);
		float d = tq_f16_to_f32(dh);
		memset(out, 0, 210);
		int8_t *sc = (int8_t *)(out + 192);
		for (int s = 0; s < 16; s++) {
			int v = d ? tq_round(sf[s] / d) : 0;
			sc[s] = (int8_t)(v > 127 ? 127 : v);
		}
		out[208] = (uint8_t)dh, out[209] = (uint8_t)(dh >> 8);
		for (int e = 0; e < 256; e++) {
			int h = e / 128, w = e % 128, u = w / 32, l = w % 32;
			int si = h * 8 + u * 2 + l / 16;
			float step = d * (float)sc[si];
			int q = step ? tq_round(x[e] / step) : 0;
			q = (q < -32 ? -32 : q > 31 ? 31 : q) + 32;
			uint8_t *ql = out + h * 64 + (u & 1) * 32 + l;
			*ql |= (uint8_t)(u < 2 ? (q & 15) : (q & 15) << 4);
			out[128 + h * 32 + l] |= (uint8_t)((q >> 4) << (2 * u));
		}
	}
}
static __attribute__((unused)) float tq_deq_q6_k(const uint8_t *blk, int e)
{
	int h = e / 128, w = e % 128, u = w / 32, l = w % 32;
	int lo = blk[h * 64 + (u & 1) * 32 + l];
	lo = u < 2 ? lo & 15 : lo >> 4;
	int q = (lo | ((blk[128 + h * 32 + l] >> (2 * u)) & 3) << 4) - 32;
	float d = tq_f16_to_f32((uint16_t)(blk[208] | blk[209] << 8));
	return d * (float)(int8_t)blk[192 + h * 8 + u * 2 + l / 16] * (float)q;
}

/* tq_quant / tq_deq by ggml type code (2 Q4_0, 8 Q8_0, 12 Q4_K, 13 Q5_K, 14 Q6_K); sizes */
static __attribute__((unused)) size_t tq_block_bytes(int type)
{
	return type == 2 ? 18 : type == 8 ? 34 : type == 12 ? 144 : type == 13 ? 176 : 210;
}
static __attribute__((unused)) int tq_block_elems(int type) { return type == 2 || type == 8 ? 32 : 256; }
static __attribute__((unused)) void tq_quant(int type, const float *x, size_t n, uint8_t *out)
{
	if (type == 2)
		tq_quant_q4_0(x, n, out);
	else if (type == 8)
		tq_quant_q8_0(x, n, out);
	else if (type == 12 || type == 13)
		tq_quant_k45(x, n, out, type == 13);
	else
		tq_quant_q6_k(x, n, out);
}
static __attribute__((unused)) float tq_deq(int type, const uint8_t *data, size_t e)
{
	size_t be = (size_t)tq_block_elems(type);
	const uint8_t *blk = data + e / be * tq_block_bytes(type);
	int i = (int)(e % be);
	return type == 2 ? tq_deq_q4_0(blk, i) : type == 8 ? tq_deq_q8_0(blk, i) :
	       type == 12 || type == 13 ? tq_deq_k45(blk, i, type == 13) : tq_deq_q6_k(blk, i);
}
#endif

/* snap_codec.c — the chunk codecs of the .thaw format: raw, zstd, and byte planes.
 *
 * PLANES / HPLANES (docs/snapshot-format.md): a chunk of 2- or 4-byte elements is optionally
 * rotated left by one bit per element (floats: the sign moves to bit 0, so the top byte holds
 * the exponent alone), then split into `width` byte planes (plane p = byte p of every element).
 * Each plane is compressed when that saves >= 10%, else stored raw: with zstd (PLANES, used for
 * integer types) or with thaw's own Huffman code (HPLANES, snap_huf.c, used for floats). On
 * float weights only the exponent plane compresses (to ~0.33: its entropy is ~2.6 bits); a
 * table-driven decoder that emits up to 4 symbols per lookup decodes it several times faster
 * than zstd's Huffman, which was the restore's bottleneck (docs/benchmarks.md).
 * Payload: u32 stored size of each plane, the planes, then raw % width tail bytes (raw). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <zstd.h>
#include <xxhash.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#include "snapshot/snap_huf.h"
#include "snapshot/snap_int.h"

#define PLANE_KEEP_NUM 9      /* a zstd plane is kept when stored <= 9/10 of raw */
#define PLANE_KEEP_DEN 10
#define RAW_KEEP_NUM 97       /* a chunk is stored raw unless encoding saves >= 3% */
#define RAW_KEEP_DEN 100

struct snap_codec_ctx {
	ZSTD_CCtx *cc_std;
	ZSTD_DCtx *dc;
	size_t max_raw;
	uint8_t *scratch;         /* max_raw: decoded planes / split planes */
	uint8_t *scratch2;        /* encode: a second candidate's payload */
	XXH3_state_t *xs;         /* decode: hash of the output, computed while it is written */
};

snap_codec_ctx *snap_codec_ctx_new(size_t max_raw, int level)
{
	snap_codec_ctx *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	c->max_raw = max_raw;
	c->dc = ZSTD_createDCtx();
	c->scratch = malloc(max_raw ? max_raw : 1);
	c->xs = XXH3_createState();
	if (!c->dc || !c->scratch || !c->xs)
		goto fail;
	if (level != INT32_MIN) {   /* encoder contexts only when asked for */
		c->cc_std = ZSTD_createCCtx();
		c->scratch2 = malloc(snap_codec_bound(max_raw));
		if (!c->cc_std || !c->scratch2)
			goto fail;
		ZSTD_CCtx_setParameter(c->cc_std, ZSTD_c_compressionLevel, level);
		ZSTD_CCtx_setParameter(c->cc_std, ZSTD_c_checksumFlag, 0);
	}
	return c;
fail:
	snap_codec_ctx_free(c);
	return NULL;
}

void snap_codec_ctx_free(snap_codec_ctx *c)
{
	if (!c)
		return;
	ZSTD_freeCCtx(c->cc_std);
	ZSTD_freeDCtx(c->dc);
	free(c->scratch);
	free(c->scratch2);
	XXH3_freeState(c->xs);
	free(c);
}

size_t snap_codec_bound(size_t raw)
{
	/* planes: 4 u32 sizes + each plane's zstd or Huffman bound, or raw */
	size_t z = ZSTD_compressBound(raw) + 4 * 4 + 4 * 64, h = 4 * 4 + 4 * snap_huf_bound(raw / 2 + 1);
	return z > h ? z : h;
}

/* ---- plane split / join ---- */

static void split_planes(const uint8_t *src, size_t n, int width, int rotate, uint8_t *planes)
{
	if (width == 2) {
		uint8_t *p0 = planes, *p1 = planes + n;
		for (size_t i = 0; i < n; i++) {
			uint16_t v = (uint16_t)(src[2 * i] | src[2 * i + 1] << 8);
			if (rotate)
				v = (uint16_t)(v << 1 | v >> 15);
			p0[i] = (uint8_t)v;
			p1[i] = (uint8_t)(v >> 8);
		}
	} else {
		uint8_t *p0 = planes, *p1 = planes + n, *p2 = planes + 2 * n, *p3 = planes + 3 * n;
		for (size_t i = 0; i < n; i++) {
			uint32_t v = snap_rd32(src + 4 * i);
			if (rotate)
				v = v << 1 | v >> 31;
			p0[i] = (uint8_t)v;
			p1[i] = (uint8_t)(v >> 8);
			p2[i] = (uint8_t)(v >> 16);
			p3[i] = (uint8_t)(v >> 24);
		}
	}
}

static void join2(const uint8_t *p0, const uint8_t *p1, size_t n, int rotate, uint8_t *dst)
{
	size_t i = 0;
#ifdef __SSE2__
	for (; i + 16 <= n; i += 16) {
		__m128i a = _mm_loadu_si128((const __m128i *)(p0 + i));
		__m128i b = _mm_loadu_si128((const __m128i *)(p1 + i));
		__m128i lo = _mm_unpacklo_epi8(a, b), hi = _mm_unpackhi_epi8(a, b);
		if (rotate) {
			lo = _mm_or_si128(_mm_srli_epi16(lo, 1), _mm_slli_epi16(lo, 15));
			hi = _mm_or_si128(_mm_srli_epi16(hi, 1), _mm_slli_epi16(hi, 15));
		}
		_mm_storeu_si128((__m128i *)(dst + 2 * i), lo);
		_mm_storeu_si128((__m128i *)(dst + 2 * i + 16), hi);
	}
#endif
	for (; i < n; i++) {
		uint16_t v = (uint16_t)(p0[i] | p1[i] << 8);
		if (rotate)
			v = (uint16_t)(v >> 1 | v << 15);
		snap_wr16(dst + 2 * i, v);
	}
}

static void join4(const uint8_t *p0, const uint8_t *p1, const uint8_t *p2, const uint8_t *p3,
		  size_t n, int rotate, uint8_t *dst)
{
	size_t i = 0;
#ifdef __SSE2__
	for (; i + 16 <= n; i += 16) {
		__m128i a = _mm_loadu_si128((const __m128i *)(p0 + i));
		__m128i b = _mm_loadu_si128((const __m128i *)(p1 + i));
		__m128i c = _mm_loadu_si128((const __m128i *)(p2 + i));
		__m128i d = _mm_loadu_si128((const __m128i *)(p3 + i));
		__m128i ab0 = _mm_unpacklo_epi8(a, b), ab1 = _mm_unpackhi_epi8(a, b);
		__m128i cd0 = _mm_unpacklo_epi8(c, d), cd1 = _mm_unpackhi_epi8(c, d);
		__m128i v[4] = {_mm_unpacklo_epi16(ab0, cd0), _mm_unpackhi_epi16(ab0, cd0),
				_mm_unpacklo_epi16(ab1, cd1), _mm_unpackhi_epi16(ab1, cd1)};
		for (int k = 0; k < 4; k++) {
			if (rotate)
				v[k] = _mm_or_si128(_mm_srli_epi32(v[k], 1), _mm_slli_epi32(v[k], 31));
			_mm_storeu_si128((__m128i *)(dst + 4 * i + 16 * k), v[k]);
		}
	}
#endif
	for (; i < n; i++) {
		uint32_t v = (uint32_t)p0[i] | (uint32_t)p1[i] << 8 | (uint32_t)p2[i] << 16 |
			     (uint32_t)p3[i] << 24;
		if (rotate)
			v = v >> 1 | v << 31;
		snap_wr32(dst + 4 * i, v);
	}
}

/* ---- encode ---- */

/* encode_planes writes a PLANES payload (planes compressed with zstd context cc) or, with
 * cc NULL, an HPLANES payload (planes in snap_huf's code) to dst; returns its size or 0 on a
 * zstd failure. */
static size_t encode_planes(snap_codec_ctx *c, const uint8_t *src, size_t raw, int width,
			    int rotate, ZSTD_CCtx *cc, uint8_t *dst, uint8_t *mask)
{
	size_t n = raw / width, off = 4 * (size_t)width;
	split_planes(src, n, width, rotate, c->scratch);
	*mask = 0;
	for (int p = 0; p < width; p++) {
		const uint8_t *pl = c->scratch + (size_t)p * n;
		size_t z = !n ? 0 : cc ? ZSTD_compress2(cc, dst + off, ZSTD_compressBound(n), pl, n)
				       : snap_huf_encode(pl, n, dst + off);
		if (n && cc && ZSTD_isError(z))
			return 0;
		if (n && z * PLANE_KEEP_DEN <= n * PLANE_KEEP_NUM) {
			*mask |= (uint8_t)(1u << p);
		} else {
			memcpy(dst + off, pl, n);
			z = n;
		}
		snap_wr32(dst + 4 * p, (uint32_t)z);
		off += z;
	}
	memcpy(dst + off, src + n * width, raw - n * width);
	return off + raw - n * width;
}

int snap_codec_encode(snap_codec_ctx *c, const uint8_t *src, size_t raw, snap_dtype dt,
		      uint8_t *dst, snap_chunk *ch)
{
	size_t es = snap_dtype_size(dt);
	size_t best = raw;
	int width = (es == 2 || es == 4) ? (int)es : 0;
	int is_float = snap_dtype_is_float(dt);

	ch->codec = SNAP_CODEC_RAW;
	ch->width = 0;
	ch->plane_mask = 0;
	ch->flags = 0;
	if (raw > c->max_raw)
		return -EINVAL;
	if (width && raw >= (size_t)width) {
		/* floats: the exponent plane in thaw's Huffman code (fastest to decode); integers:
		 * zstd per plane, which also finds repeats */
		uint8_t mask;
		size_t z = encode_planes(c, src, raw, width, is_float, is_float ? NULL : c->cc_std,
					 dst, &mask);
		if (z && z < best) {
			best = z;
			ch->codec = is_float ? SNAP_CODEC_HPLANES : SNAP_CODEC_PLANES;
			ch->width = (uint8_t)width;
			ch->plane_mask = mask;
			ch->flags = is_float ? SNAP_CHUNK_ROTATE : 0;
		}
	}
	if (!is_float || !width) {
		/* integers, bytes, mixed: plain zstd too; keep the smaller */
		uint8_t *out = ch->codec == SNAP_CODEC_RAW ? dst : c->scratch2;
		size_t z = ZSTD_compress2(c->cc_std, out, ZSTD_compressBound(raw), src, raw);
		if (!ZSTD_isError(z) && z < best) {
			best = z;
			if (out != dst)
				memcpy(dst, out, z);
			ch->codec = SNAP_CODEC_ZSTD;
			ch->width = 0;
			ch->plane_mask = 0;
			ch->flags = 0;
		}
	}
	if (ch->codec != SNAP_CODEC_RAW && best * RAW_KEEP_DEN > raw * RAW_KEEP_NUM) {
		ch->codec = SNAP_CODEC_RAW;
		ch->width = ch->plane_mask = ch->flags = 0;
	}
	if (ch->codec == SNAP_CODEC_RAW) {
		memcpy(dst, src, raw);
		best = raw;
	}
	ch->stored_size = (uint32_t)best;
	ch->raw_size = (uint32_t)raw;
	return 0;
}

/* ---- decode ---- */

static int zdec(snap_codec_ctx *c, uint8_t *dst, size_t n, const uint8_t *src, size_t z,
		const char *what, char *err, size_t errlen)
{
	size_t r = ZSTD_decompressDCtx(c->dc, dst, n, src, z);
	if (ZSTD_isError(r))
		return snap_errf(err, errlen, -EBADMSG, "%s: zstd: %s", what, ZSTD_getErrorName(r));
	if (r != n)
		return snap_errf(err, errlen, -EBADMSG, "%s: zstd gave %zu bytes, expected %zu", what, r, n);
	return 0;
}

/* Output is produced and hashed in blocks of this many bytes, so the hash reads what was just
 * written from L1 instead of a second pass over the whole chunk. */
#define HASH_BLOCK (16u << 10)

int snap_codec_decode(snap_codec_ctx *c, const snap_chunk *ch, const uint8_t *src, uint8_t *dst,
		      uint64_t *hash, char *err, size_t errlen)
{
	size_t raw = ch->raw_size, stored = ch->stored_size;
	int rc;

	if (raw > c->max_raw)
		return snap_errf(err, errlen, -EBADMSG, "raw size %zu over the chunk limit", raw);
	switch (ch->codec) {
	case SNAP_CODEC_RAW:
		if (stored != raw)
			return snap_errf(err, errlen, -EBADMSG, "raw chunk stored %zu != raw %zu", stored, raw);
		if (!hash) {
			memcpy(dst, src, raw);
			return 0;
		}
		XXH3_64bits_reset(c->xs);
		for (size_t o = 0; o < raw; o += HASH_BLOCK) {
			size_t n = raw - o < HASH_BLOCK ? raw - o : HASH_BLOCK;
			memcpy(dst + o, src + o, n);
			XXH3_64bits_update(c->xs, dst + o, n);
		}
		*hash = XXH3_64bits_digest(c->xs);
		return 0;
	case SNAP_CODEC_ZSTD:
		rc = zdec(c, dst, raw, src, stored, "chunk", err, errlen);
		if (!rc && hash)
			*hash = XXH3_64bits(dst, raw);
		return rc;
	case SNAP_CODEC_PLANES:
	case SNAP_CODEC_HPLANES: {
		int w = ch->width;
		if (w != 2 && w != 4)
			return snap_errf(err, errlen, -EBADMSG, "plane width %d", w);
		size_t n = raw / w, off = 4 * (size_t)w, tail = raw - n * w;
		const uint8_t *pl[4];
		uint8_t *scr = c->scratch;
		if (stored < off)
			return snap_errf(err, errlen, -EBADMSG, "plane header truncated");
		for (int p = 0; p < w; p++) {
			size_t z = snap_rd32(src + 4 * p);
			char what[32];
			snprintf(what, sizeof what, "plane %d", p);
			if (z > stored - off)
				return snap_errf(err, errlen, -EBADMSG, "plane %d: size %zu past the chunk end", p, z);
			if (ch->plane_mask & (1u << p)) {
				int rc = ch->codec == SNAP_CODEC_HPLANES ? snap_huf_decode(src + off, z, scr, n)
									  : zdec(c, scr, n, src + off, z, what, err, errlen);
				if (rc == -EBADMSG && ch->codec == SNAP_CODEC_HPLANES)
					snap_errf(err, errlen, rc, "plane %d: bad Huffman header", p);
				if (rc)
					return rc;
				pl[p] = scr;
				scr += n;
			} else {
				if (z != n)
					return snap_errf(err, errlen, -EBADMSG, "plane %d: raw size %zu, expected %zu", p, z, n);
				pl[p] = src + off;
			}
			off += z;
		}
		if (stored - off != tail)
			return snap_errf(err, errlen, -EBADMSG, "plane payload is %zu bytes, expected %zu",
					 stored, off + tail);
		int rot = ch->flags & SNAP_CHUNK_ROTATE;
		size_t blk = HASH_BLOCK / (size_t)w;   /* elements per block */
		if (hash)
			XXH3_64bits_reset(c->xs);
		for (size_t i = 0; i < n; i += blk) {
			size_t m = n - i < blk ? n - i : blk;
			if (w == 2)
				join2(pl[0] + i, pl[1] + i, m, rot, dst + 2 * i);
			else
				join4(pl[0] + i, pl[1] + i, pl[2] + i, pl[3] + i, m, rot, dst + 4 * i);
			if (hash)
				XXH3_64bits_update(c->xs, dst + (size_t)w * i, m * (size_t)w);
		}
		memcpy(dst + n * w, src + off, tail);
		if (hash) {
			XXH3_64bits_update(c->xs, dst + n * w, tail);
			*hash = XXH3_64bits_digest(c->xs);
		}
		return 0;
	}
	default:
		return snap_errf(err, errlen, -EBADMSG, "unknown codec %d", ch->codec);
	}
}

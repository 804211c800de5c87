/* snap_huf.c — Huffman coding of one byte plane for the "hplanes" codec (snap_huf.h).
 *
 * Payload: 128 bytes of code lengths (4 bits per symbol, symbol 2k in the low nibble of byte
 * k; 0 = absent, at most 11), 4 u32 stream sizes, then the streams. Stream k codes symbols
 * [k q, min((k + 1) q, n)) with q = ceil(n / 4). Codes are canonical (assigned in order of
 * (length, symbol), as in deflate) and written bit-reversed, least significant bit first, so
 * that the low 11 bits of the decoder's bit buffer index its table directly. The decoder's
 * table gives, for any 11 bits, every whole code they hold (up to 4 symbols), so one lookup
 * emits ~3-4 exponent symbols; 4 streams decode interleaved to overlap the lookups. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "snapshot/snap_huf.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "snap_huf.c reads its streams with little-endian 64-bit loads"
#endif

#define L SNAP_HUF_MAXLEN
#define TSIZE (1u << L)

size_t snap_huf_bound(size_t n)
{
	return SNAP_HUF_HEADER + (n * L + 7) / 8 + SNAP_HUF_STREAMS * 16;
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t rd64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);   /* little-endian hosts only (x86-64, arm64) */
	return v;
}

/* ---- code lengths ---- */

static void huf_lengths(const uint64_t cnt[256], uint8_t len[256])
{
	int sym[256], m = 0, parent[512], depth[512];
	uint64_t w[512];

	memset(len, 0, 256);
	for (int s = 0; s < 256; s++)
		if (cnt[s])
			sym[m++] = s;
	if (m == 0)
		return;
	if (m == 1) {
		len[sym[0]] = 1;
		return;
	}
	/* leaves by ascending count (ties: symbol), then the two-queue Huffman construction */
	for (int i = 1; i < m; i++)
		for (int j = i; j > 0 && (cnt[sym[j]] < cnt[sym[j - 1]] ||
					  (cnt[sym[j]] == cnt[sym[j - 1]] && sym[j] < sym[j - 1])); j--) {
			int t = sym[j];
			sym[j] = sym[j - 1];
			sym[j - 1] = t;
		}
	for (int i = 0; i < m; i++)
		w[i] = cnt[sym[i]];
	int li = 0, ni = m;
	for (int k = 0; k < m - 1; k++) {
		int pick[2];
		for (int t = 0; t < 2; t++) {
			if (li < m && (ni >= m + k || w[li] <= w[ni]))
				pick[t] = li++;
			else
				pick[t] = ni++;
		}
		w[m + k] = w[pick[0]] + w[pick[1]];
		parent[pick[0]] = parent[pick[1]] = m + k;
	}
	depth[2 * m - 2] = 0;
	for (int i = 2 * m - 3; i >= 0; i--)
		depth[i] = depth[parent[i]] + 1;
	/* limit to L bits: clamp, then lengthen the rarest of the longest codes until Kraft holds */
	long kraft = 0;
	for (int i = 0; i < m; i++) {
		int d = depth[i] > L ? L : depth[i];
		len[sym[i]] = (uint8_t)d;
		kraft += 1L << (L - d);
	}
	while (kraft > (long)TSIZE) {
		int best = -1;
		for (int i = 0; i < m; i++) {   /* sym[] is rarest first */
			int l = len[sym[i]];
			if (l < L && (best < 0 || l > len[sym[best]]))
				best = i;
		}
		kraft -= 1L << (L - len[sym[best]] - 1);
		len[sym[best]]++;
	}
	/* hand spare code space back to the most frequent symbols */
	for (int i = m - 1; i >= 0; i--) {
		int l = len[sym[i]];
		while (l > 1 && kraft + (1L << (L - l)) <= (long)TSIZE) {
			kraft += 1L << (L - l);
			l--;
		}
		len[sym[i]] = (uint8_t)l;
	}
}

/* canonical codes, bit-reversed for LSB-first streams */
static void huf_codes(const uint8_t len[256], uint16_t code[256])
{
	int bl[L + 2] = {0}, next[L + 2];
	for (int s = 0; s < 256; s++)
		bl[len[s]]++;
	bl[0] = 0;
	int c = 0;
	for (int b = 1; b <= L; b++) {
		c = (c + bl[b - 1]) << 1;
		next[b] = c;
	}
	for (int s = 0; s < 256; s++) {
		int l = len[s];
		if (!l)
			continue;
		int v = next[l]++, r = 0;
		for (int b = 0; b < l; b++)
			r |= ((v >> b) & 1) << (l - 1 - b);
		code[s] = (uint16_t)r;
	}
}

size_t snap_huf_encode(const uint8_t *src, size_t n, uint8_t *dst)
{
	uint64_t cnt[256] = {0};
	uint8_t len[256];
	uint16_t code[256];
	for (size_t i = 0; i < n; i++)
		cnt[src[i]]++;
	huf_lengths(cnt, len);
	huf_codes(len, code);
	memset(dst, 0, 128);
	for (int s = 0; s < 256; s++)
		dst[s / 2] |= (uint8_t)(len[s] << (4 * (s & 1)));
	size_t q = (n + SNAP_HUF_STREAMS - 1) / SNAP_HUF_STREAMS, off = SNAP_HUF_HEADER;
	for (int k = 0; k < SNAP_HUF_STREAMS; k++) {
		size_t a = (size_t)k * q < n ? (size_t)k * q : n, b = a + q < n ? a + q : n, start = off;
		uint64_t acc = 0;
		unsigned nb = 0;
		for (size_t i = a; i < b; i++) {
			acc |= (uint64_t)code[src[i]] << nb;
			nb += len[src[i]];
			while (nb >= 8) {
				dst[off++] = (uint8_t)acc;
				acc >>= 8;
				nb -= 8;
			}
		}
		if (nb)
			dst[off++] = (uint8_t)acc;
		size_t sz = off - start;
		for (int t = 0; t < 4; t++)
			dst[128 + 4 * k + t] = (uint8_t)(sz >> (8 * t));
	}
	return off;
}

/* ---- decode ---- */

typedef struct { uint8_t sym, len; } sent;
typedef struct { uint32_t syms; uint8_t n, bits; } ment;

typedef struct bst {
	const uint8_t *p, *e;
	uint64_t buf;
	unsigned cnt;
	uint8_t *o, *oe;
} bst;

static inline void refill_slow(bst *s)
{
	while (s->cnt <= 56) {
		if (s->p >= s->e) {   /* past the end: zeros (a corrupt stream decodes to garbage) */
			s->cnt = 64;
			return;
		}
		s->buf |= (uint64_t)*s->p++ << s->cnt;
		s->cnt += 8;
	}
}

int snap_huf_decode(const uint8_t *src, size_t len, uint8_t *dst, size_t n)
{
	uint8_t ln[256];
	sent single[TSIZE];
	ment multi[TSIZE];
	long kraft = 0;
	int present = 0;

	if (len < SNAP_HUF_HEADER)
		return -EBADMSG;
	for (int s = 0; s < 256; s++) {
		ln[s] = (src[s / 2] >> (4 * (s & 1))) & 15;
		if (ln[s] > L)
			return -EBADMSG;
		if (ln[s]) {
			kraft += 1L << (L - ln[s]);
			present++;
		}
	}
	if (kraft > (long)TSIZE || (n && !present))
		return -EBADMSG;
	size_t total = SNAP_HUF_HEADER;
	for (int k = 0; k < SNAP_HUF_STREAMS; k++) {
		size_t sz = rd32(src + 128 + 4 * k);
		if (sz > len - total)
			return -EBADMSG;
		total += sz;
	}
	if (total != len)
		return -EBADMSG;

	uint16_t code[256];
	huf_codes(ln, code);
	for (unsigned i = 0; i < TSIZE; i++)
		single[i] = (sent){0, L};   /* unused code space (an incomplete code): consume bits */
	for (int s = 0; s < 256; s++)
		if (ln[s])
			for (unsigned j = code[s]; j < TSIZE; j += 1u << ln[s])
				single[j] = (sent){(uint8_t)s, ln[s]};
	for (unsigned i = 0; i < TSIZE; i++) {
		unsigned pos = 0, k = 0;
		uint32_t syms = 0;
		while (k < 4) {
			sent e = single[i >> pos];
			if (e.len > L - pos)
				break;
			syms |= (uint32_t)e.sym << (8 * k);
			k++;
			pos += e.len;
		}
		multi[i] = (ment){syms, (uint8_t)k, (uint8_t)pos};
	}

	bst s[SNAP_HUF_STREAMS];
	size_t q = (n + SNAP_HUF_STREAMS - 1) / SNAP_HUF_STREAMS;
	const uint8_t *p = src + SNAP_HUF_HEADER;
	for (int k = 0; k < SNAP_HUF_STREAMS; k++) {
		size_t a = (size_t)k * q < n ? (size_t)k * q : n, b = a + q < n ? a + q : n;
		size_t sz = rd32(src + 128 + 4 * k);
		s[k] = (bst){p, p + sz, 0, 0, dst + a, dst + b};
		p += sz;
	}
	/* fast path: after a refill each buffer holds >= 56 bits, enough for 5 lookups of <= 11
	 * bits; each lookup writes 4 bytes and advances by the symbols it holds. The four states
	 * live in locals (registers): written through uint8_t pointers, fields of s[] would have
	 * to be reloaded after every store. */
	{
		const uint8_t *p0 = s[0].p, *p1 = s[1].p, *p2 = s[2].p, *p3 = s[3].p;
		uint8_t *o0 = s[0].o, *o1 = s[1].o, *o2 = s[2].o, *o3 = s[3].o;
		uint64_t b0 = 0, b1 = 0, b2 = 0, b3 = 0;
		unsigned c0 = 0, c1 = 0, c2 = 0, c3 = 0;
#define HUF_OK(k) (p##k + 8 <= s[k].e && o##k + 20 <= s[k].oe)
#define HUF_REFILL(k) do { b##k |= rd64(p##k) << c##k; p##k += (63 - c##k) >> 3; c##k |= 56; } while (0)
#define HUF_STEP(k) do { ment e_ = multi[b##k & (TSIZE - 1)]; memcpy(o##k, &e_.syms, 4); \
		o##k += e_.n; b##k >>= e_.bits; c##k -= e_.bits; } while (0)
#define HUF_ROUND() do { HUF_STEP(0); HUF_STEP(1); HUF_STEP(2); HUF_STEP(3); } while (0)
		while (HUF_OK(0) && HUF_OK(1) && HUF_OK(2) && HUF_OK(3)) {
			HUF_REFILL(0);
			HUF_REFILL(1);
			HUF_REFILL(2);
			HUF_REFILL(3);
			HUF_ROUND();
			HUF_ROUND();
			HUF_ROUND();
			HUF_ROUND();
			HUF_ROUND();
		}
#undef HUF_OK
#undef HUF_REFILL
#undef HUF_STEP
#undef HUF_ROUND
		s[0].p = p0, s[1].p = p1, s[2].p = p2, s[3].p = p3;
		s[0].o = o0, s[1].o = o1, s[2].o = o2, s[3].o = o3;
		s[0].buf = b0, s[1].buf = b1, s[2].buf = b2, s[3].buf = b3;
		s[0].cnt = c0, s[1].cnt = c1, s[2].cnt = c2, s[3].cnt = c3;
	}
	/* each stream's rest: one stream at a time, fast while it can, then symbol by symbol */
	for (int k = 0; k < SNAP_HUF_STREAMS; k++) {
		bst *t = &s[k];
		while (t->p + 8 <= t->e && t->o + 20 <= t->oe && t->cnt < 64) {
			t->buf |= rd64(t->p) << t->cnt;
			t->p += (63 - t->cnt) >> 3;
			t->cnt |= 56;
			for (int r = 0; r < 5; r++) {
				ment e = multi[t->buf & (TSIZE - 1)];
				memcpy(t->o, &e.syms, 4);
				t->o += e.n;
				t->buf >>= e.bits;
				t->cnt -= e.bits;
			}
		}
		while (t->o < t->oe) {
			refill_slow(t);
			sent e = single[t->buf & (TSIZE - 1)];
			*t->o++ = e.sym;
			t->buf >>= e.len;
			t->cnt = t->cnt >= e.len ? t->cnt - e.len : 0;
		}
	}
	return 0;
}

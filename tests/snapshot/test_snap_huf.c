/* test_snap_huf.c — the hplanes Huffman coder (snapshot/snap_huf.c) on its own: round trips
 * over distributions that stress the code construction (one symbol, two, uniform bytes, long
 * geometric tails that need the 11-bit length limit, exponent-like planes), every small size
 * (empty streams), and malformed headers rejected without reading or writing out of bounds. */
#include <errno.h>
#include <stdlib.h>
#include "tests/t.h"
#include "tests/snapshot/snap_test_util.h"
#include "snapshot/snap_huf.h"

static int roundtrip(const uint8_t *src, size_t n, size_t *zsize)
{
	uint8_t *enc = malloc(snap_huf_bound(n)), *dec = malloc(n + 1);
	size_t z = snap_huf_encode(src, n, enc);
	int ok = z <= snap_huf_bound(n);
	dec[n] = 0x5A;   /* guard byte: the decoder must not write past n */
	memset(dec, 0xA5, n);
	ok = ok && snap_huf_decode(enc, z, dec, n) == 0 && memcmp(src, dec, n) == 0 && dec[n] == 0x5A;
	if (zsize)
		*zsize = z;
	free(enc);
	free(dec);
	return ok;
}

static void test_distributions(void)
{
	size_t n = 100003, z;
	uint8_t *b = malloc(n);
	memset(b, 7, n);   /* one symbol */
	T_CHECK(roundtrip(b, n, &z));
	T_CHECK(z < n / 6);
	for (size_t i = 0; i < n; i++)   /* two symbols */
		b[i] = (tt_next() & 1) ? 200 : 3;
	T_CHECK(roundtrip(b, n, &z));
	T_CHECK(z < n / 7);
	for (size_t i = 0; i < n; i++)   /* uniform bytes: 8 bits each */
		b[i] = (uint8_t)tt_next();
	T_CHECK(roundtrip(b, n, &z));
	T_CHECK(z > n - n / 50);
	for (size_t i = 0; i < n; i++) {   /* geometric over 40+ symbols: lengths need limiting */
		int s = 0;
		while (s < 60 && (tt_next() & 1))
			s++;
		b[i] = (uint8_t)s;
	}
	T_CHECK(roundtrip(b, n, NULL));
	for (size_t i = 0; i < n; i++) {   /* BF16 exponents of N(0, 0.02) after the rotation */
		uint16_t v = tt_bf16(tt_normal() * 0.02f);
		v = (uint16_t)(v << 1 | v >> 15);
		b[i] = (uint8_t)(v >> 8);
	}
	T_CHECK(roundtrip(b, n, &z));
	T_CHECK(z < n * 35 / 100);
	for (size_t k = 0; k < 80; k++)    /* every small size, incl. empty streams */
		T_CHECK(roundtrip(b, k, NULL));
	free(b);
}

static void test_malformed(void)
{
	size_t n = 5000, z;
	uint8_t *b = malloc(n), *enc = malloc(snap_huf_bound(n)), *dec = malloc(n);
	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)(tt_next() % 5);
	z = snap_huf_encode(b, n, enc);
	T_EQ_INT(snap_huf_decode(enc, SNAP_HUF_HEADER - 1, dec, n), -EBADMSG);
	T_EQ_INT(snap_huf_decode(enc, z - 1, dec, n), -EBADMSG);   /* sizes don't add up */
	uint8_t *bad = malloc(z);
	memcpy(bad, enc, z);
	bad[0] = 0xCC;   /* lengths 12: over the limit */
	T_EQ_INT(snap_huf_decode(bad, z, dec, n), -EBADMSG);
	memcpy(bad, enc, z);
	memset(bad, 0x11, 128);   /* 256 codes of 1 bit: Kraft sum over 1 */
	T_EQ_INT(snap_huf_decode(bad, z, dec, n), -EBADMSG);
	memcpy(bad, enc, z);
	memset(bad, 0, 128);      /* no symbols for n > 0 */
	T_EQ_INT(snap_huf_decode(bad, z, dec, n), -EBADMSG);
	/* garbage streams decode to something, in bounds (ASan watches) */
	memcpy(bad, enc, z);
	for (size_t i = SNAP_HUF_HEADER; i < z; i++)
		bad[i] = (uint8_t)tt_next();
	T_EQ_INT(snap_huf_decode(bad, z, dec, n), 0);
	/* streams shorter than their symbols need: zeros past the end, still in bounds */
	memcpy(bad, enc, z);
	uint8_t hdr[SNAP_HUF_HEADER];
	memcpy(hdr, enc, sizeof hdr);
	memset(hdr + 128, 0, 16);
	T_EQ_INT(snap_huf_decode(hdr, sizeof hdr, dec, n), 0);
	free(bad);
	free(b);
	free(enc);
	free(dec);
}

void t_main(void)
{
	T_RUN(test_distributions);
	T_RUN(test_malformed);
}

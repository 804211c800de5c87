/* snap_test_util.h — helpers for the snapshot tests: write safetensors files by hand (an
 * independent writer, not snapshot/snap_st.c), random tensor data, file utilities. Header-only
 * (static functions) so each test binary stays one .c file. */
#ifndef THAW_SNAP_TEST_UTIL_H
#define THAW_SNAP_TEST_UTIL_H
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>
#include "snapshot/snap.h"

typedef struct tt {
	const char *name;
	const char *dtype;        /* safetensors spelling */
	int ndim;
	uint64_t shape[4];
	size_t esize;
	uint8_t *data;            /* filled by tt_fill */
	size_t nbytes;
} tt;

static uint64_t tt_rng = 0x243F6A8885A308D3ull;
static inline uint64_t tt_next(void)
{
	tt_rng ^= tt_rng << 13;
	tt_rng ^= tt_rng >> 7;
	tt_rng ^= tt_rng << 17;
	return tt_rng;
}

static inline uint16_t tt_bf16(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	return (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

static inline float tt_normal(void)
{
	double u1 = ((tt_next() >> 11) + 1) * (1.0 / 9007199254740993.0);
	double u2 = (tt_next() >> 11) * (1.0 / 9007199254740992.0);
	return (float)(sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2));
}

/* tt_fill gives each tensor data: float types ~ N(0, 0.02), integers random bytes. */
static inline void tt_fill(tt *t, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t numel = 1;
		for (int d = 0; d < t[i].ndim; d++)
			numel *= t[i].shape[d];
		t[i].nbytes = numel * t[i].esize;
		t[i].data = malloc(t[i].nbytes ? t[i].nbytes : 1);
		for (uint64_t k = 0; k < numel; k++) {
			uint8_t *p = t[i].data + k * t[i].esize;
			if (!strcmp(t[i].dtype, "BF16")) {
				uint16_t v = tt_bf16(tt_normal() * 0.02f);
				memcpy(p, &v, 2);
			} else if (!strcmp(t[i].dtype, "F32")) {
				float v = tt_normal() * 0.02f;
				memcpy(p, &v, 4);
			} else if (!strcmp(t[i].dtype, "F16")) {
				uint16_t v = (uint16_t)(0x2000 + (tt_next() % 0x1000)) | (uint16_t)((tt_next() & 1) << 15);
				memcpy(p, &v, 2);
			} else {
				for (size_t b = 0; b < t[i].esize; b++)
					p[b] = (uint8_t)tt_next();
			}
		}
	}
}

static inline void tt_free(tt *t, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(t[i].data);
}

/* tt_write writes a safetensors file (tensors in the given order, optional __metadata__). */
static inline int tt_write(const char *path, const tt *t, size_t n, const char *meta)
{
	char *h = malloc(65536);
	size_t hl = 0;
	uint64_t off = 0;
	hl += (size_t)snprintf(h + hl, 65536 - hl, "{");
	if (meta)
		hl += (size_t)snprintf(h + hl, 65536 - hl, "\"__metadata__\":%s%s", meta, n ? "," : "");
	for (size_t i = 0; i < n; i++) {
		hl += (size_t)snprintf(h + hl, 65536 - hl, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[", i ? "," : "",
				       t[i].name, t[i].dtype);
		for (int d = 0; d < t[i].ndim; d++)
			hl += (size_t)snprintf(h + hl, 65536 - hl, "%s%llu", d ? "," : "", (unsigned long long)t[i].shape[d]);
		hl += (size_t)snprintf(h + hl, 65536 - hl, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
				       (unsigned long long)(off + t[i].nbytes));
		off += t[i].nbytes;
	}
	hl += (size_t)snprintf(h + hl, 65536 - hl, "}");
	FILE *f = fopen(path, "wb");
	if (!f) {
		free(h);
		return -1;
	}
	uint8_t le[8];
	for (int k = 0; k < 8; k++)
		le[k] = (uint8_t)((uint64_t)hl >> (8 * k));
	fwrite(le, 1, 8, f);
	fwrite(h, 1, hl, f);
	for (size_t i = 0; i < n; i++)
		fwrite(t[i].data, 1, t[i].nbytes, f);
	free(h);
	return fclose(f);
}

static inline uint8_t *tt_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	*len = 0;
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long sz = ftell(f);
	fseek(f, 0, SEEK_SET);
	uint8_t *b = malloc(sz > 0 ? (size_t)sz : 1);
	*len = fread(b, 1, (size_t)sz, f);
	fclose(f);
	return b;
}

static inline int tt_write_file(const char *path, const void *buf, size_t len)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		return -1;
	fwrite(buf, 1, len, f);
	return fclose(f);
}

static inline void tt_path(char *buf, size_t len, const char *dir, const char *name)
{
	snprintf(buf, len, "%s/%s", dir, name);
}
static inline uint64_t snap_rd64_test(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* snap_test_rehash recomputes a .thaw header's checksum after a test edited its fields. */
static inline void snap_test_rehash(uint8_t *h)
{
	uint64_t x = XXH3_64bits(h, 152);
	for (int i = 0; i < 8; i++)
		h[152 + i] = (uint8_t)(x >> (8 * i));
}
#endif

/* snap_gguf.h — GGUF (llama.cpp / ggml model files, versions 2 and 3): parse and validate a
 * file's header, metadata key/values, tensor infos and data section, and decode ggml tensor
 * types (F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K) to F32. The format only: mapping
 * llama.cpp names and metadata to a model layout is the caller's (runtime/cli/rt_gguf.c).
 *
 * Every count, length and offset is checked against the file size before it is used or
 * allocated for, so a short hostile file fails fast with a message naming the field. Little-
 * endian files only (a big-endian one is refused by its version field). */
#ifndef THAW_SNAP_GGUF_H
#define THAW_SNAP_GGUF_H
#include <stddef.h>
#include <stdint.h>

#define SNAP_GGUF_MAX_DIMS 4
#define SNAP_GGUF_MAX_NAME 64          /* tensor names, as the spec and ggml bound them */
#define SNAP_GGUF_MAX_KEY 65535
#define SNAP_GGUF_DEFAULT_ALIGN 32

/* Metadata value types (on-disk codes). */
typedef enum snap_gguf_vtype {
	SNAP_GGUF_U8 = 0, SNAP_GGUF_I8 = 1, SNAP_GGUF_U16 = 2, SNAP_GGUF_I16 = 3,
	SNAP_GGUF_U32 = 4, SNAP_GGUF_I32 = 5, SNAP_GGUF_F32 = 6, SNAP_GGUF_BOOL = 7,
	SNAP_GGUF_STRING = 8, SNAP_GGUF_ARRAY = 9, SNAP_GGUF_U64 = 10, SNAP_GGUF_I64 = 11,
	SNAP_GGUF_F64 = 12, SNAP_GGUF_VTYPE_COUNT
} snap_gguf_vtype;

/* ggml tensor types (on-disk codes) that this reader knows the size of. */
typedef enum snap_gguf_ttype {
	SNAP_GGML_F32 = 0, SNAP_GGML_F16 = 1, SNAP_GGML_Q4_0 = 2, SNAP_GGML_Q4_1 = 3,
	SNAP_GGML_Q5_0 = 6, SNAP_GGML_Q5_1 = 7, SNAP_GGML_Q8_0 = 8, SNAP_GGML_Q8_1 = 9,
	SNAP_GGML_Q2_K = 10, SNAP_GGML_Q3_K = 11, SNAP_GGML_Q4_K = 12, SNAP_GGML_Q5_K = 13,
	SNAP_GGML_Q6_K = 14, SNAP_GGML_Q8_K = 15, SNAP_GGML_I8 = 24, SNAP_GGML_I16 = 25,
	SNAP_GGML_I32 = 26, SNAP_GGML_I64 = 27, SNAP_GGML_F64 = 28, SNAP_GGML_BF16 = 30,
} snap_gguf_ttype;

/* A string inside the file: not NUL-terminated, points into the file's bytes. */
typedef struct snap_gguf_str {
	const char *s;
	uint64_t len;
} snap_gguf_str;

typedef struct snap_gguf_kv {
	char *key;                 /* NUL-terminated copy */
	snap_gguf_vtype type;
	/* scalars: u (unsigned and bool), i (signed), f (floats), s (string) */
	uint64_t u;
	int64_t i;
	double f;
	snap_gguf_str s;
	/* arrays: element type, count, the elements' bytes in the file (fixed-size types) or the
	 * strings (STRING arrays: arr_str[arr_n], malloc'd) */
	snap_gguf_vtype arr_type;
	uint64_t arr_n;
	const uint8_t *arr_data;
	snap_gguf_str *arr_str;
} snap_gguf_kv;

typedef struct snap_gguf_tensor {
	char *name;                /* NUL-terminated copy */
	uint32_t type;             /* snap_gguf_ttype */
	uint32_t ndim;             /* 1..4 */
	uint64_t ne[SNAP_GGUF_MAX_DIMS];   /* ggml order: ne[0] is the innermost (row length) */
	uint64_t nelem;
	uint64_t offset;           /* in the data section */
	uint64_t nbytes;
} snap_gguf_tensor;

typedef struct snap_gguf {
	const uint8_t *buf;        /* the whole file (mapped, or the caller's memory) */
	uint64_t size;
	uint32_t version;
	uint32_t alignment;
	uint64_t data_off;         /* file offset of the data section */
	size_t n_kv;
	snap_gguf_kv *kv;
	size_t n_tensors;
	snap_gguf_tensor *t;       /* in file (tensor info) order */
	int fd;                    /* -1 for memory */
	void *map;
	char *path;
} snap_gguf;

/* snap_gguf_parse_mem validates a whole GGUF file held in memory (buf must outlive *out) and
 * fills *out (free with snap_gguf_close). -EBADMSG (structure), -ENOTSUP (version, unknown
 * tensor type, nested arrays), -ENOMEM, with a message. */
int snap_gguf_parse_mem(const uint8_t *buf, size_t len, snap_gguf **out, char *err, size_t errlen);
/* snap_gguf_open maps path read-only and parses it like snap_gguf_parse_mem. */
int snap_gguf_open(const char *path, snap_gguf **out, char *err, size_t errlen);
void snap_gguf_close(snap_gguf *g);

/* snap_gguf_is_gguf reports whether path is a regular file starting with the GGUF magic. */
int snap_gguf_is_gguf(const char *path);

/* snap_gguf_find looks a key up; NULL if absent. */
const snap_gguf_kv *snap_gguf_find(const snap_gguf *g, const char *key);
/* snap_gguf_get_uint reads an unsigned or non-negative signed integer key into *v: 0, -ENOENT
 * when absent, -EINVAL when of another type or negative. */
int snap_gguf_get_uint(const snap_gguf *g, const char *key, uint64_t *v);
/* snap_gguf_get_float reads a float or integer key: 0, -ENOENT, -EINVAL. */
int snap_gguf_get_float(const snap_gguf *g, const char *key, double *v);
/* snap_gguf_get_str gives a string key's bytes: 0, -ENOENT, -EINVAL. */
int snap_gguf_get_str(const snap_gguf *g, const char *key, snap_gguf_str *v);
/* snap_gguf_arr_num reads element i of a numeric array as a double (no bounds check: i <
 * kv->arr_n). */
double snap_gguf_arr_num(const snap_gguf_kv *kv, uint64_t i);
/* snap_gguf_arr_int reads element i of an integer array as int64. */
int64_t snap_gguf_arr_int(const snap_gguf_kv *kv, uint64_t i);
/* snap_gguf_data points at tensor i's bytes (inside buf; aligned to the file's alignment
 * relative to the file start). */
const void *snap_gguf_data(const snap_gguf *g, size_t i);

/* snap_gguf_type_name names a tensor type ("Q4_K", ...), "?" when unknown. */
const char *snap_gguf_type_name(uint32_t type);
/* snap_gguf_type_block gives the elements per block and bytes per block of a known type;
 * 0 when unknown. */
int snap_gguf_type_block(uint32_t type, uint32_t *blk, uint32_t *bytes);
/* snap_gguf_can_decode reports whether snap_gguf_to_f32 handles type. */
int snap_gguf_can_decode(uint32_t type);
/* snap_gguf_to_f32 decodes n elements of type (n a multiple of its block) from src (any
 * alignment) into dst, as ggml's reference dequantizers compute them. -ENOTSUP for a type
 * it cannot decode, -EINVAL for a bad n. */
int snap_gguf_to_f32(uint32_t type, const void *src, uint64_t n, float *dst);

/* IEEE half / bfloat16 helpers (round to nearest even; NaN stays NaN). */
float snap_f16_to_f32(uint16_t h);
float snap_bf16_to_f32(uint16_t h);
uint16_t snap_f32_to_bf16(float f);
#endif

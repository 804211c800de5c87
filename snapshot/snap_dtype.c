/* snap_dtype.c — element types, codec names, and the small helpers every snapshot module uses
 * (error formatting, the clock). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "snapshot/snap_int.h"

static const struct { const char *name; size_t size; int is_float; } dtypes[SNAP_DTYPE_COUNT] = {
	[SNAP_DTYPE_F32] = {"F32", 4, 1},
	[SNAP_DTYPE_F16] = {"F16", 2, 1},
	[SNAP_DTYPE_BF16] = {"BF16", 2, 1},
	[SNAP_DTYPE_I8] = {"I8", 1, 0},
	[SNAP_DTYPE_U8] = {"U8", 1, 0},
	[SNAP_DTYPE_I32] = {"I32", 4, 0},
	[SNAP_DTYPE_I64] = {"I64", 8, 0},
	[SNAP_DTYPE_F64] = {"F64", 8, 1},
	[SNAP_DTYPE_I16] = {"I16", 2, 0},
	[SNAP_DTYPE_U16] = {"U16", 2, 0},
	[SNAP_DTYPE_U32] = {"U32", 4, 0},
	[SNAP_DTYPE_U64] = {"U64", 8, 0},
	[SNAP_DTYPE_BOOL] = {"BOOL", 1, 0},
	[SNAP_DTYPE_F8_E4M3] = {"F8_E4M3", 1, 1},
	[SNAP_DTYPE_F8_E5M2] = {"F8_E5M2", 1, 1},
};

const char *snap_dtype_name(snap_dtype dt)
{
	return dt > SNAP_DTYPE_INVALID && dt < SNAP_DTYPE_COUNT ? dtypes[dt].name : "?";
}

size_t snap_dtype_size(snap_dtype dt)
{
	return dt > SNAP_DTYPE_INVALID && dt < SNAP_DTYPE_COUNT ? dtypes[dt].size : 0;
}

int snap_dtype_is_float(snap_dtype dt)
{
	return dt > SNAP_DTYPE_INVALID && dt < SNAP_DTYPE_COUNT && dtypes[dt].is_float;
}

snap_dtype snap_dtype_from_name(const char *name)
{
	for (int i = 1; name && i < SNAP_DTYPE_COUNT; i++)
		if (strcmp(name, dtypes[i].name) == 0)
			return (snap_dtype)i;
	return SNAP_DTYPE_INVALID;
}

const char *snap_codec_name(snap_codec c)
{
	static const char *names[SNAP_CODEC_COUNT] = {"raw", "zstd", "planes", "hplanes"};
	return c < SNAP_CODEC_COUNT ? names[c] : "?";
}

const char *snap_io_mode_name(snap_io_mode m)
{
	switch (m) {
	case SNAP_IO_AUTO: return "auto";
	case SNAP_IO_DIRECT: return "io_uring+O_DIRECT";
	case SNAP_IO_URING: return "io_uring buffered";
	case SNAP_IO_PREAD: return "pread buffered";
	case SNAP_IO_MMAP: return "mmap page cache";
	}
	return "?";
}

int snap_default_threads(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (int)(n > 64 ? 64 : n) : 1;
}

int snap_pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	size_t got = 0;
	while (got < len) {
		ssize_t r = pread(fd, (char *)buf + got, len - got, (off_t)(off + got));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -ENODATA;
		got += (size_t)r;
	}
	return 0;
}

int snap_pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
	size_t done = 0;
	while (done < len) {
		ssize_t r = pwrite(fd, (const char *)buf + done, len - done, (off_t)(off + done));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -EIO;
		done += (size_t)r;
	}
	return 0;
}

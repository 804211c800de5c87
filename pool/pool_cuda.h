/* pool_cuda.h — the checking macros every CUDA and cuBLAS call goes through (only in CUDA
 * builds). A failed call is logged with the call's text, file and line, and the enclosing
 * function returns -EIO (or jumps to its fail label with POOL_CUDA_TRY). */
#ifndef THAW_POOL_CUDA_H
#define THAW_POOL_CUDA_H
#ifdef THAW_CUDA
#include <errno.h>
#include <stdio.h>
#include <cuda_runtime_api.h>

/* POOL_CUDA_CHECK returns -EIO from the calling function when `call` fails. */
#define POOL_CUDA_CHECK(call) do { cudaError_t pc_e_ = (call); if (pc_e_ != cudaSuccess) { \
	fprintf(stderr, "cuda: %s failed: %s (%s:%d)\n", #call, cudaGetErrorString(pc_e_), \
		__FILE__, __LINE__); return -EIO; } } while (0)
/* POOL_CUDA_TRY sets rc = -EIO and jumps to `fail` when `call` fails. */
#define POOL_CUDA_TRY(call) do { cudaError_t pc_e_ = (call); if (pc_e_ != cudaSuccess) { \
	fprintf(stderr, "cuda: %s failed: %s (%s:%d)\n", #call, cudaGetErrorString(pc_e_), \
		__FILE__, __LINE__); rc = -EIO; goto fail; } } while (0)
#endif
#endif

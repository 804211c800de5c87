/* pool_cuda.h — the checking macros every CUDA and cuBLAS call goes through, and the CUDA
 * handles of a pool_compute (only in CUDA builds). A failed call is logged through pool_log
 * with the call's text, file and line, and the enclosing function returns -EIO
 * (POOL_CUDA_CHECK, POOL_BLAS_CHECK), jumps to its fail label (POOL_CUDA_TRY) or, in cleanup
 * code that has nothing to return, carries on (POOL_CUDA_LOG). */
#ifndef THAW_POOL_CUDA_H
#define THAW_POOL_CUDA_H
#ifdef THAW_CUDA
#include <errno.h>
#include <cuda_runtime_api.h>
#include <cublas_v2.h>
#include "pool/pool_compute.h"
#include "pool/pool_log.h"

#define POOL_CUDA_FAILED_(call, e) pool_logf("cuda: %s failed: %s (%s:%d)", #call, \
	cudaGetErrorString(e), __FILE__, __LINE__)

/* POOL_CUDA_CHECK returns -EIO from the calling function when `call` fails. */
#define POOL_CUDA_CHECK(call) do { cudaError_t pc_e_ = (call); if (pc_e_ != cudaSuccess) { \
	POOL_CUDA_FAILED_(call, pc_e_); return -EIO; } } while (0)
/* POOL_CUDA_TRY sets rc = -EIO and jumps to `fail` when `call` fails. */
#define POOL_CUDA_TRY(call) do { cudaError_t pc_e_ = (call); if (pc_e_ != cudaSuccess) { \
	POOL_CUDA_FAILED_(call, pc_e_); rc = -EIO; goto fail; } } while (0)
/* POOL_CUDA_LOG logs a failed `call` and goes on (teardown paths). */
#define POOL_CUDA_LOG(call) do { cudaError_t pc_e_ = (call); if (pc_e_ != cudaSuccess) \
	POOL_CUDA_FAILED_(call, pc_e_); } while (0)
/* POOL_BLAS_CHECK returns -EIO when a cuBLAS call fails. */
#define POOL_BLAS_CHECK(call) do { cublasStatus_t pc_s_ = (call); \
	if (pc_s_ != CUBLAS_STATUS_SUCCESS) { pool_logf("cublas: %s failed: status %d (%s:%d)", \
		#call, (int)pc_s_, __FILE__, __LINE__); return -EIO; } } while (0)

/* POOL_BLAS_LOG logs a failed cuBLAS `call` and goes on (teardown paths). */
#define POOL_BLAS_LOG(call) do { cublasStatus_t pc_s_ = (call); \
	if (pc_s_ != CUBLAS_STATUS_SUCCESS) pool_logf("cublas: %s failed: status %d (%s:%d)", \
		#call, (int)pc_s_, __FILE__, __LINE__); } while (0)

#ifdef __cplusplus
extern "C" {
#endif
/* The compute stream and the cuBLAS handle (bound to that stream, with its workspace) of pc. */
cudaStream_t pool_compute_stream(const pool_compute *pc);
cublasHandle_t pool_compute_blas(const pool_compute *pc);
#ifdef __cplusplus
}
#endif

#endif
#endif

/* pool_compute.c — a GPU executor's stream, cuBLAS handle and scratch (see pool_compute.h).
 * CUDA code is under THAW_CUDA; the CPU build reports "no GPU". */
#include <errno.h>
#include <stdlib.h>
#include "pool/pool_compute.h"

#ifdef THAW_CUDA
#include "pool/pool_cuda.h"

#define BLAS_WS_BYTES (32u << 20)

struct pool_compute {
	int device;
	cudaStream_t s;
	cublasHandle_t blas;
	void *blas_ws;
	void *buf[POOL_COMPUTE_SLOTS];
	size_t size[POOL_COMPUTE_SLOTS];
	void **retired;            /* outgrown scratch buffers, freed at close */
	size_t n_retired, cap_retired;
};

static int compute_init(pool_compute *pc)
{
	POOL_CUDA_CHECK(cudaSetDevice(pc->device));
	POOL_CUDA_CHECK(cudaStreamCreateWithFlags(&pc->s, cudaStreamNonBlocking));
	POOL_BLAS_CHECK(cublasCreate(&pc->blas));
	POOL_BLAS_CHECK(cublasSetStream(pc->blas, pc->s));
	POOL_CUDA_CHECK(cudaMalloc(&pc->blas_ws, BLAS_WS_BYTES));
	POOL_BLAS_CHECK(cublasSetWorkspace(pc->blas, pc->blas_ws, BLAS_WS_BYTES));
	return 0;
}

int pool_compute_open(int device, pool_compute **out)
{
	int n = 0;
	*out = NULL;
	if (cudaGetDeviceCount(&n) != cudaSuccess) {
		POOL_CUDA_LOG(cudaGetLastError());   /* clears the sticky "no device" error */
		n = 0;
	}
	if (device < 0 || device >= n)
		return -ENODEV;
	pool_compute *pc = calloc(1, sizeof *pc);
	if (!pc)
		return -ENOMEM;
	pc->device = device;
	int rc = compute_init(pc);
	if (rc < 0) {
		pool_compute_close(pc);
		return rc;
	}
	*out = pc;
	return 0;
}

void pool_compute_close(pool_compute *pc)
{
	if (!pc)
		return;
	POOL_CUDA_LOG(cudaSetDevice(pc->device));
	if (pc->s)
		POOL_CUDA_LOG(cudaStreamSynchronize(pc->s));
	if (pc->blas)
		POOL_BLAS_LOG(cublasDestroy(pc->blas));
	POOL_CUDA_LOG(cudaFree(pc->blas_ws));
	for (int i = 0; i < POOL_COMPUTE_SLOTS; i++)
		POOL_CUDA_LOG(cudaFree(pc->buf[i]));
	for (size_t i = 0; i < pc->n_retired; i++)
		POOL_CUDA_LOG(cudaFree(pc->retired[i]));
	free(pc->retired);
	if (pc->s)
		POOL_CUDA_LOG(cudaStreamDestroy(pc->s));
	free(pc);
}

int pool_compute_device(const pool_compute *pc) { return pc->device; }
cudaStream_t pool_compute_stream(const pool_compute *pc) { return pc->s; }
cublasHandle_t pool_compute_blas(const pool_compute *pc) { return pc->blas; }

int pool_compute_scratch(pool_compute *pc, int slot, size_t bytes, void **out)
{
	if (slot < 0 || slot >= POOL_COMPUTE_SLOTS)
		return -EINVAL;
	*out = pc->buf[slot];
	if (bytes <= pc->size[slot])
		return 0;
	enum cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
	POOL_CUDA_CHECK(cudaStreamIsCapturing(pc->s, &st));
	if (st != cudaStreamCaptureStatusNone)
		return -ENOSPC;   /* no allocation inside a graph capture */
	if (pc->buf[slot] && pc->n_retired == pc->cap_retired) {
		size_t cap = pc->cap_retired ? pc->cap_retired * 2 : 8;
		void **r = realloc(pc->retired, cap * sizeof *r);
		if (!r)
			return -ENOMEM;
		pc->retired = r;
		pc->cap_retired = cap;
	}
	if (bytes < pc->size[slot] * 2)
		bytes = pc->size[slot] * 2;   /* doubling: the retired ones sum to less than it */
	void *p = NULL;
	POOL_CUDA_CHECK(cudaMalloc(&p, bytes));
	if (pc->buf[slot])
		pc->retired[pc->n_retired++] = pc->buf[slot];
	pc->buf[slot] = p;
	pc->size[slot] = bytes;
	*out = p;
	return 0;
}

#else /* no CUDA */

int pool_compute_open(int device, pool_compute **out)
{
	(void)device;
	*out = NULL;
	return -ENODEV;
}
void pool_compute_close(pool_compute *pc) { (void)pc; }
int pool_compute_device(const pool_compute *pc) { (void)pc; return -1; }
int pool_compute_scratch(pool_compute *pc, int slot, size_t bytes, void **out)
{
	(void)pc; (void)slot; (void)bytes;
	*out = NULL;
	return -ENODEV;
}

#endif

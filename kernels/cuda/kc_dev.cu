/* kc_dev.cu — the CUDA backend's device lifetime: the stream, cuBLAS handle and workspaces
 * taken from pool/ (pool_compute, once per kern_dev_open, never per call), the tuning read at
 * open, memory, copies, CUDA graph capture, and the kern_cuda_backend table that kern.c
 * dispatches through. */
#include <stdlib.h>
#include <string.h>
#include "kernels/cuda/kc_int.h"
#include "pool/pool_gpu.h"

extern "C" int kern_cuda_device_count(void)
{
	return pool_gpu_count();
}

static void kc_close(void *b)
{
	kc *c = (kc *)b;
	if (!c)
		return;
	KC_LOG(cudaSetDevice(c->dev));
	if (c->s)
		KC_LOG(cudaStreamSynchronize(c->s));
	KC_LOG(cudaFree(c->att_part));
	KC_LOG(cudaFree(c->att_cnt));
	KC_LOG(cudaFree(c->am_part));
	KC_LOG(cudaFree(c->am_cnt));
	for (int i = 0; i < KERN_MARKS; i++)
		if (c->marks[i])
			KC_LOG(cudaEventDestroy(c->marks[i]));
	if (!c->pc_borrowed)
		pool_compute_close(c->pc);
	free(c);
}

static int kc_open_impl(kc *c, const kern_tuning *t)
{
	int rc = c->pc ? 0 : pool_compute_open(c->dev, &c->pc);
	if (rc)
		return rc;
	c->s = pool_compute_stream(c->pc);
	c->blas = pool_compute_blas(c->pc);
	KC_CHECK(cudaSetDevice(c->dev));
	int major = 0;
	KC_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, c->dev));
	c->pdl = major >= 9 && t->pdl;
	KC_CHECK(cudaDeviceGetAttribute(&c->nsm, cudaDevAttrMultiProcessorCount, c->dev));
	c->fused_attn = t->fused_attention;
	c->i8_gemm_rows = t->i8_gemm_rows;
	c->i8_mma_rows = t->i8_mma_rows;
	rc = kc_xbuf(c, 16u << 20);
	if (rc)
		return rc;
	KC_CHECK(cudaMalloc(&c->am_part, KC_AM_MAX_BLOCKS * sizeof *c->am_part));
	KC_CHECK(cudaMalloc(&c->am_cnt, sizeof *c->am_cnt));
	KC_CHECK(cudaMemsetAsync(c->am_cnt, 0, sizeof *c->am_cnt, c->s));
	rc = kc_rope_attention_scratch(c);
	if (rc)
		return rc;
	for (int i = 0; i < KERN_MARKS; i++)
		KC_CHECK(cudaEventCreateWithFlags(&c->marks[i], cudaEventDisableTiming));
	KC_CHECK(cudaStreamSynchronize(c->s));
	return 0;
}

static int kc_open(int index, int threads, const kern_tuning *t, struct pool_compute *compute,
		   void **out)
{
	if (compute && pool_compute_device(compute) != index)
		return -EINVAL;
	kc *c = (kc *)calloc(1, sizeof *c);
	if (!c)
		return -ENOMEM;
	c->dev = index;
	c->pc = compute;
	c->pc_borrowed = compute != NULL;
	int rc = kc_open_impl(c, t);
	if (rc < 0) {
		kc_close(c);
		return rc;
	}
	*out = c;
	return 0;
}

/* kc_alloc_impl: *p = n zeroed bytes of device memory (failures logged). */
static int kc_alloc_impl(kc *c, size_t n, void **p)
{
	KC_CHECK(cudaSetDevice(c->dev));
	KC_CHECK(cudaMalloc(p, n));
	KC_CHECK(cudaMemsetAsync(*p, 0, n, c->s));
	KC_CHECK(cudaStreamSynchronize(c->s));
	return 0;
}

static void *kc_alloc(void *b, size_t n)
{
	kc *c = (kc *)b;
	void *p = NULL;
	if (kc_alloc_impl(c, n, &p) < 0) {
		if (p)
			KC_LOG(cudaFree(p));
		return NULL;
	}
	return p;
}

static void kc_free(void *b, void *p)
{
	kc *c = (kc *)b;
	KC_LOG(cudaSetDevice(c->dev));
	KC_LOG(cudaStreamSynchronize(c->s));
	KC_LOG(cudaFree(p));
}

static int kc_h2d(void *b, void *dst, const void *src, size_t n)
{
	kc *c = (kc *)b;
	KC_ENTER(c);
	/* From pageable memory, cudaMemcpyAsync returns once src has been staged, so the caller
	 * may reuse src at once without a stream sync (a decode step saves a round trip). */
	KC_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, c->s));
	return 0;
}

static int kc_d2h(void *b, void *dst, const void *src, size_t n)
{
	kc *c = (kc *)b;
	KC_ENTER(c);
	KC_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, c->s));
	KC_CHECK(cudaStreamSynchronize(c->s));
	return 0;
}

static int kc_d2d(void *b, void *dst, const void *src, size_t n)
{
	kc *c = (kc *)b;
	KC_ENTER(c);
	KC_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, c->s));
	return 0;
}

static int kc_sync(void *b)
{
	kc *c = (kc *)b;
	KC_ENTER(c);
	KC_CHECK(cudaStreamSynchronize(c->s));
	return 0;
}

static int kc_graph_begin(void *b)
{
	kc *c = (kc *)b;
	KC_ENTER(c);
	KC_CHECK(cudaStreamBeginCapture(c->s, cudaStreamCaptureModeThreadLocal));
	c->capturing = 1;
	return 0;
}

static int kc_graph_end(void *b, void **out)
{
	kc *c = (kc *)b;
	cudaGraph_t g = NULL;
	cudaGraphExec_t ex = NULL;
	*out = NULL;
	c->capturing = 0;
	KC_ENTER(c);
	KC_CHECK(cudaStreamEndCapture(c->s, &g));
	cudaError_t e = cudaGraphInstantiate(&ex, g, 0);
	KC_LOG(cudaGraphDestroy(g));
	KC_CHECK(e);
	*out = ex;
	return 0;
}

static int kc_graph_launch(void *b, void *g)
{
	kc *c = (kc *)b;
	KC_ENTER(c);
	KC_CHECK(cudaGraphLaunch((cudaGraphExec_t)g, c->s));
	return 0;
}

static void kc_graph_free(void *b, void *g)
{
	kc *c = (kc *)b;
	KC_LOG(cudaSetDevice(c->dev));
	KC_LOG(cudaStreamSynchronize(c->s));
	KC_LOG(cudaGraphExecDestroy((cudaGraphExec_t)g));
}

/* Host memory kernels write directly: pinned, mapped, and usable at the same address (unified
 * addressing), else NULL (the caller keeps to copies). */
static int kc_alloc_host_impl(kc *c, size_t n, void **p)
{
	void *dp = NULL;
	KC_CHECK(cudaSetDevice(c->dev));
	KC_CHECK(cudaHostAlloc(p, n, cudaHostAllocMapped | cudaHostAllocPortable));
	KC_CHECK(cudaHostGetDevicePointer(&dp, *p, 0));
	return dp == *p ? 0 : -ENOTSUP;   /* not at the same address: no unified addressing */
}

static void *kc_alloc_host(void *b, size_t n)
{
	kc *c = (kc *)b;
	void *p = NULL;
	if (kc_alloc_host_impl(c, n, &p) < 0) {
		if (p)
			KC_LOG(cudaFreeHost(p));
		return NULL;
	}
	memset(p, 0, n);
	return p;
}

static void kc_free_host(void *b, void *p)
{
	kc *c = (kc *)b;
	KC_LOG(cudaSetDevice(c->dev));
	KC_LOG(cudaStreamSynchronize(c->s));   /* queued kernels may still write it */
	KC_LOG(cudaFreeHost(p));
}

static int kc_mark(void *b, int slot)
{
	kc *c = (kc *)b;
	if (c->capturing)
		return -EBUSY;
	KC_CHECK(cudaSetDevice(c->dev));
	KC_CHECK(cudaEventRecord(c->marks[slot], c->s));
	return 0;
}

static int kc_wait_mark(void *b, int slot)
{
	kc *c = (kc *)b;
	KC_CHECK(cudaEventSynchronize(c->marks[slot]));
	return 0;
}

/* designated, in kern_backend's order (C++ requires it) */
extern "C" const kern_backend kern_cuda_backend = {
	.name = "cuda",
	.open = kc_open,
	.close = kc_close,
	.alloc = kc_alloc,
	.free = kc_free,
	.h2d = kc_h2d,
	.d2h = kc_d2h,
	.d2d = kc_d2d,
	.sync = kc_sync,
	.cast_f32 = kc_cast_f32,
	.linear = kc_linear,
	.linear_add = kc_linear_add,
	.linear_multi = kc_linear_multi,
	.swiglu = kc_swiglu,
	.rope_kv = kc_rope_kv,
	.embed = kc_embed,
	.rmsnorm = kc_rmsnorm,
	.rope = kc_rope,
	.kv_store = kc_kv_store,
	.attention = kc_attention,
	.silu_mul = kc_silu_mul,
	.bias_act = kc_bias_act,
	.add = kc_add,
	.softmax = kc_softmax,
	.argmax = kc_argmax,
	.sample = kc_sample,
	.graph_begin = kc_graph_begin,
	.graph_end = kc_graph_end,
	.graph_launch = kc_graph_launch,
	.graph_free = kc_graph_free,
	.gemm = kc_gemm_t,
	.act_grad = kc_act_grad,
	.xent_grad = kc_xent_grad,
	.mse_grad = kc_mse_grad,
	.col_sum = kc_col_sum,
	.adam = kc_adam,
	.rope_attention = kc_rope_attention,
	.argmax_feed = kc_argmax_feed,
	.alloc_host = kc_alloc_host,
	.free_host = kc_free_host,
	.mark = kc_mark,
	.wait_mark = kc_wait_mark,
	.rope_attention_proj = kc_rope_attention_proj,
	.swiglu_proj = kc_swiglu_proj,
	.paged_rope_attention = kc_paged_rope_attention,
	.paged_rope_attention_proj = kc_paged_rope_attention_proj,
	.gather_rows = kc_gather_rows,
	.sample_rows = kc_sample_rows,
	.rmsnorm_bwd = kc_rmsnorm_bwd,
	.rope_bwd = kc_rope_bwd,
	.causal_attention = kc_causal_attention,
	.causal_attention_bwd = kc_causal_attention_bwd,
	.silu_mul_bwd = kc_silu_mul_bwd,
	.linear_bwd = kc_linear_bwd,
	.xent_lm = kc_xent_lm,
};

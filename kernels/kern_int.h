/* kern_int.h — inside kernels/: the backend table each backend (cpu/, cuda/) fills in, and the
 * device handle that pairs a backend with its per-device state. Function kinds use kern.h. */
#ifndef THAW_KERN_INT_H
#define THAW_KERN_INT_H
#include "kernels/kern.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Each entry mirrors the kern.h function of the same name, with the backend's own device
 * state `b` in place of the kern_dev. Shapes were checked by kern.c before the call. */
typedef struct kern_backend {
	const char *name;
	/* compute: a pool_compute to borrow (GPU backends), or NULL to make one */
	int (*open)(int index, int threads, const kern_tuning *t, struct pool_compute *compute,
		    void **b);
	void (*close)(void *b);
	void *(*alloc)(void *b, size_t bytes);
	void (*free)(void *b, void *p);
	int (*h2d)(void *b, void *dst, const void *src, size_t bytes);
	int (*d2h)(void *b, void *dst, const void *src, size_t bytes);
	int (*d2d)(void *b, void *dst, const void *src, size_t bytes);
	int (*sync)(void *b);
	int (*cast_f32)(void *b, kern_dtype dt, const void *src, float *dst, int64_t n);
	int (*linear)(void *b, const float *x, int64_t m, const kern_mat *w, const float *bias,
		      kern_act act, float *y);
	/* optional fused ops (NULL: kern.c composes them) */
	int (*linear_add)(void *b, const float *x, int64_t m, const kern_mat *w, float *y);
	int (*linear_multi)(void *b, const float *x, int64_t m, int nw, const kern_mat *w,
			    float *const *y, const kern_norm *norm);
	int (*swiglu)(void *b, const float *x, int64_t m, const kern_mat *wg, const kern_mat *wu,
		      float *out, const kern_norm *norm);
	int (*rope_kv)(void *b, float *q, float *k, const float *v, const int32_t *pos, int64_t m,
		       int64_t heads, int64_t kvheads, int64_t hd, float theta, float *kc, float *vc,
		       int64_t cap);
	int (*embed)(void *b, kern_dtype dt, const void *table, int64_t vocab, int64_t dim,
		     const int32_t *tokens, int64_t m, float *y);
	int (*rmsnorm)(void *b, const float *x, const float *w, int64_t m, int64_t dim, float eps,
		       float *y);
	int (*rope)(void *b, float *x, const int32_t *pos, int64_t m, int64_t heads, int64_t hd,
		    float theta);
	int (*kv_store)(void *b, const float *k, const float *v, const int32_t *pos, int64_t m,
			int64_t kvdim, float *kc, float *vc, int64_t cap);
	int (*attention)(void *b, const float *q, const float *kc, const float *vc,
			 const int32_t *pos, int64_t m, int64_t heads, int64_t kvheads, int64_t hd,
			 int64_t cap, float scale, float *out);
	int (*silu_mul)(void *b, const float *gate, const float *up, int64_t n, float *out);
	int (*bias_act)(void *b, float *x, const float *bias, int64_t m, int64_t n, kern_act act);
	int (*add)(void *b, float *y, const float *x, int64_t n);
	int (*softmax)(void *b, float *x, int64_t m, int64_t n);
	int (*argmax)(void *b, const float *x, int64_t m, int64_t n, int32_t *out, float *lp);
	int (*sample)(void *b, const float *x, int64_t m, int64_t n, float temp, int top_k,
		      float top_p, const float *u, int32_t *out, float *lp);
	int (*graph_begin)(void *b);
	int (*graph_end)(void *b, void **g);
	int (*graph_launch)(void *b, void *g);
	void (*graph_free)(void *b, void *g);
	/* training ops */
	int (*gemm)(void *b, int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
		    const float *a, const float *bm, float beta, float *c);
	int (*act_grad)(void *b, float *g, const float *z, int64_t n, kern_act act);
	int (*xent_grad)(void *b, const float *x, const float *lab, int64_t m, int64_t n, float scale,
			 float *grad, float *loss, float *correct);
	int (*mse_grad)(void *b, const float *x, const float *t, int64_t m, int64_t n, float scale,
			float *grad, float *loss);
	int (*col_sum)(void *b, const float *x, int64_t m, int64_t n, float alpha, float beta,
		       float *out);
	int (*adam)(void *b, float *p, float *mo, float *v, const float *g, int64_t n, float lr,
		    float b1, float b2, float eps);
	/* optional fused decoder op (NULL: kern.c composes rope_kv + attention) */
	int (*rope_attention)(void *b, float *q, float *k, const float *v, const int32_t *pos,
			      int64_t m, int64_t heads, int64_t kvheads, int64_t hd, float theta,
			      float *kc, float *vc, int64_t cap, float scale, float *out);
	/* decoding without a host round trip (kern.h: kern_argmax_feed, host memory, marks) */
	int (*argmax_feed)(void *b, const float *x, int64_t n, int32_t *step, int32_t *hist,
			   float *lphist, int64_t cap);
	void *(*alloc_host)(void *b, size_t bytes);
	void (*free_host)(void *b, void *p);
	int (*mark)(void *b, int slot);
	int (*wait_mark)(void *b, int slot);
	/* optional chained decoder ops (NULL: kern.c composes them) */
	int (*rope_attention_proj)(void *b, float *q, float *k, const float *v, const int32_t *pos,
				   int64_t m, int64_t heads, int64_t kvheads, int64_t hd, float theta,
				   float *kc, float *vc, int64_t cap, float scale, float *att,
				   const kern_mat *wo, float *y);
	int (*swiglu_proj)(void *b, const float *x, int64_t m, const kern_mat *wg, const kern_mat *wu,
			   const kern_norm *norm, float *g, const kern_mat *wd, float *y);
	/* paged KV cache and batched decoding (NULL: -ENOTSUP; paged_rope_attention_proj NULL:
	 * kern.c composes paged_rope_attention and linear_add) */
	int (*paged_rope_attention)(void *b, float *q, float *k, const float *v, const int32_t *pos,
				    const int32_t *seq, int64_t m, int64_t heads, int64_t kvheads,
				    int64_t hd, float theta, const kern_kv_pages *kv, float scale,
				    float *out);
	int (*paged_rope_attention_proj)(void *b, float *q, float *k, const float *v,
					 const int32_t *pos, const int32_t *seq, int64_t m,
					 int64_t heads, int64_t kvheads, int64_t hd, float theta,
					 const kern_kv_pages *kv, float scale, float *att,
					 const kern_mat *wo, float *y);
	int (*gather_rows)(void *b, const float *x, int64_t dim, const int32_t *rows, int64_t n,
			   float *y);
	int (*sample_rows)(void *b, const float *x, int64_t m, int64_t n, const float *temp,
			   const int32_t *top_k, const float *top_p, const float *u, int32_t *out,
			   float *lp);
	/* backward ops of a decoder (NULL: -ENOTSUP; kern_lora and kern_lora_bwd are composed
	 * from gemm in kern.c) */
	int (*rmsnorm_bwd)(void *b, const float *x, const float *w, const float *dy, int64_t m,
			   int64_t dim, float eps, float *dx, float *dw);
	int (*rope_bwd)(void *b, float *g, const int32_t *pos, int64_t m, int64_t heads, int64_t hd,
			float theta);
	int (*causal_attention)(void *b, const float *q, const float *k, const float *v,
				int64_t nseq, int64_t T, int64_t heads, int64_t kvheads, int64_t hd,
				float scale, float *out, float *lse);
	int (*causal_attention_bwd)(void *b, const float *q, const float *k, const float *v,
				    const float *out, const float *lse, const float *dout,
				    int64_t nseq, int64_t T, int64_t heads, int64_t kvheads,
				    int64_t hd, float scale, float *dq, float *dk, float *dv);
	int (*silu_mul_bwd)(void *b, const float *gate, const float *up, const float *dout,
			    int64_t n, float *dgate, float *dup);
	int (*linear_bwd)(void *b, const float *dy, int64_t m, const kern_mat *w, int accumulate,
			  float *dx);
	int (*xent_lm)(void *b, const float *x, const int32_t *tgt, int64_t m, int64_t n,
		       float scale, float *grad, float *loss);
} kern_backend;

struct kern_dev {
	const kern_backend *be;
	void *b;
	kern_tuning tune;
	char name[32];
};

extern const kern_backend kern_cpu_backend;
#ifdef THAW_CUDA
extern const kern_backend kern_cuda_backend;
int kern_cuda_device_count(void);
#endif

#ifdef __cplusplus
}
#endif
#endif

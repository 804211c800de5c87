/* kcpu_int.h — inside the CPU reference backend: its device state and the parallel-for
 * helper the ops share. */
#ifndef THAW_KCPU_INT_H
#define THAW_KCPU_INT_H
#include "kernels/kern_int.h"

typedef struct kcpu {
	int threads;
} kcpu;

/* kcpu_par runs fn(ctx, lo, hi) over [0, n) split into contiguous ranges, one per thread
 * (at most c->threads threads; one when work, the caller's estimate of scalar operations,
 * is too small to pay for threads). Returns the first negative return of fn, or 0. */
int kcpu_par(kcpu *c, int64_t n, double work, int (*fn)(void *ctx, int64_t lo, int64_t hi),
	     void *ctx);

/* kcpu_row_f32 converts `k` elements of a weight row (any kern dtype; I8 with its scales for
 * row `row`) to F32 into out. */
void kcpu_row_f32(const kern_mat *w, int64_t row, float *out);
/* kcpu_dot is a dot product of two F32 vectors (8 partial sums). */
float kcpu_dot(const float *a, const float *b, int64_t n);
float kcpu_act(float v, kern_act act);

int kcpu_linear(void *b, const float *x, int64_t m, const kern_mat *w, const float *bias,
		kern_act act, float *y);
int kcpu_linear_add(void *b, const float *x, int64_t m, const kern_mat *w, float *y);
int kcpu_attention(void *b, const float *q, const float *kc, const float *vc, const int32_t *pos,
		   int64_t m, int64_t heads, int64_t kvheads, int64_t hd, int64_t cap, float scale,
		   float *out);
int kcpu_argmax(void *b, const float *x, int64_t m, int64_t n, int32_t *out, float *lp);
int kcpu_argmax_feed(void *b, const float *x, int64_t n, int32_t *step, int32_t *hist,
		     float *lphist, int64_t cap);
int kcpu_sample(void *b, const float *x, int64_t m, int64_t n, float temp, int top_k,
		float top_p, const float *u, int32_t *out, float *lp);
int kcpu_rope(void *b, float *x, const int32_t *pos, int64_t m, int64_t heads, int64_t hd,
	      float theta);
/* paged KV cache ops (kcpu_paged.c) */
int kcpu_paged_rope_attention(void *b, float *q, float *k, const float *v, const int32_t *pos,
			      const int32_t *seq, int64_t m, int64_t heads, int64_t kvheads,
			      int64_t hd, float theta, const kern_kv_pages *kv, float scale,
			      float *out);
int kcpu_gather_rows(void *b, const float *x, int64_t dim, const int32_t *rows, int64_t n,
		     float *y);
int kcpu_sample_rows(void *b, const float *x, int64_t m, int64_t n, const float *temp,
		     const int32_t *top_k, const float *top_p, const float *u, int32_t *out,
		     float *lp);
/* training ops (kcpu_train.c) */
int kcpu_gemm(void *b, int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
	      const float *a, const float *bm, float beta, float *c);
int kcpu_act_grad(void *b, float *g, const float *z, int64_t n, kern_act act);
int kcpu_xent_grad(void *b, const float *x, const float *lab, int64_t m, int64_t n, float scale,
		   float *grad, float *loss, float *correct);
int kcpu_mse_grad(void *b, const float *x, const float *t, int64_t m, int64_t n, float scale,
		  float *grad, float *loss);
int kcpu_col_sum(void *b, const float *x, int64_t m, int64_t n, float alpha, float beta,
		 float *out);
int kcpu_adam(void *b, float *p, float *mo, float *v, const float *g, int64_t n, float lr,
	      float b1, float b2, float eps);
/* backward ops of a decoder (kcpu_bwd.c) */
int kcpu_rmsnorm_bwd(void *b, const float *x, const float *w, const float *dy, int64_t m,
		     int64_t dim, float eps, float *dx, float *dw);
int kcpu_rope_bwd(void *b, float *g, const int32_t *pos, int64_t m, int64_t heads, int64_t hd,
		  float theta);
int kcpu_causal_attention(void *b, const float *q, const float *k, const float *v, int64_t nseq,
			  int64_t T, int64_t heads, int64_t kvheads, int64_t hd, float scale,
			  float *out, float *lse);
int kcpu_causal_attention_bwd(void *b, const float *q, const float *k, const float *v,
			      const float *out, const float *lse, const float *dout, int64_t nseq,
			      int64_t T, int64_t heads, int64_t kvheads, int64_t hd, float scale,
			      float *dq, float *dk, float *dv);
int kcpu_silu_mul_bwd(void *b, const float *gate, const float *up, const float *dout, int64_t n,
		      float *dgate, float *dup);
int kcpu_linear_bwd(void *b, const float *dy, int64_t m, const kern_mat *w, int accumulate,
		    float *dx);
int kcpu_xent_lm(void *b, const float *x, const int32_t *tgt, int64_t m, int64_t n, float scale,
		 float *grad, float *loss);
#endif

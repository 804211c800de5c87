/* kern.h — the compute backend interface that function kinds call (design.md, "Parts").
 *
 * One device handle (kern_dev) per device: "cpu" (the reference backend in kernels/cpu/) or
 * "cuda:N" (kernels/cuda/, CUDA builds only). Every op takes the device first and works on
 * buffers that live on that device (kern_alloc); on the CPU device those are plain host memory.
 * Ops are queued in order on the device's compute stream: a result is visible to the host after
 * kern_copy_d2h (which waits) or kern_dev_sync. Ops return 0 or a negative errno (-EINVAL for
 * bad shapes or dtypes, -EIO for a failed CUDA call, -ENOMEM, -ENOTSUP).
 *
 * Conventions: activations are F32, row-major [M, ...] (M rows = tokens or samples); weights
 * use PyTorch nn.Linear layout W[N, K] (out x in) in F32, F16, BF16 or I8 (weight-only int8 with
 * F32 scales, one per output row or one per 32-element block of a row). All products
 * accumulate in F32. Positions are int32 device arrays, so that a decode step can be captured
 * once in a CUDA graph and replayed with new positions written into device memory.
 */
#ifndef THAW_KERN_H
#define THAW_KERN_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum kern_dtype {
	KERN_F32 = 0,
	KERN_F16,
	KERN_BF16,
	KERN_I8,
	KERN_I32,
} kern_dtype;

typedef enum kern_act {
	KERN_ACT_NONE = 0,
	KERN_ACT_RELU,
	KERN_ACT_GELU,   /* exact (erf) GELU, as torch.nn.GELU() */
	KERN_ACT_TANH,
	KERN_ACT_SILU,
} kern_act;

/* A weight matrix W[n, k] on a device. For KERN_I8, scales holds F32 scales: n of them when
 * qblock == 0 (per output channel), else n * (k / qblock) (qblock must be 32 and divide k).
 * W[i][j] = data[i*k + j] * scale. Nothing is owned: the kind that built it frees it. */
typedef struct kern_mat {
	kern_dtype dt;
	int64_t n, k;
	const void *data;
	const float *scales;
	int qblock;
} kern_mat;

typedef struct kern_dev kern_dev;

/* kern_dtype_size returns bytes per element (0 for an unknown dtype). */
size_t kern_dtype_size(kern_dtype dt);
/* kern_dtype_parse maps safetensors dtype names ("F32", "F16", "BF16", "I8", "I32") to a
 * dtype; returns 0 or -EINVAL. kern_dtype_name is the inverse. */
int kern_dtype_parse(const char *s, kern_dtype *out);
const char *kern_dtype_name(kern_dtype dt);
/* kern_act_parse maps "relu", "gelu", "tanh", "silu", "none"/"identity"/"linear". */
int kern_act_parse(const char *s, kern_act *out);

/* Host-side conversions (used by loaders, tests and the CPU backend). */
float kern_bf16_to_f32(uint16_t h);
uint16_t kern_f32_to_bf16(float f);      /* round to nearest even */
float kern_f16_to_f32(uint16_t h);
uint16_t kern_f32_to_f16(float f);       /* round to nearest even */

/* kern_cuda_count returns the number of usable CUDA devices (0 in CPU-only builds or when the
 * driver finds none). */
int kern_cuda_count(void);

/* Tuning of a device, fixed when it opens (kern_dev_open_tuned; benchmarks and tests pick
 * variants through it). Start from KERN_TUNING_DEFAULT and change fields:
 *   pdl              CUDA on sm_90+: launch decode-path kernels with programmatic dependent
 *                    launch (each may start while its predecessor finishes); 0: plain launches
 *   graphs           kern_graph_begin captures; 0: it returns -ENOTSUP (callers then issue ops)
 *   fused_attention  kern_rope_attention (also inside kern_rope_attention_proj) as one launch
 *                    where the backend has one; 0: composed from kern_rope_kv and kern_attention
 *   feed_depth       decode steps a kind may queue ahead of the host (kern_argmax_feed):
 *                    -1 = the device's default (2 on a GPU, 1 on the CPU), 0 = every step
 *                    through the host, else 1 .. KERN_MARKS - 1
 *   i8_gemm_rows     int8 products on cuBLAS dequantize this many weight rows per product;
 *                    0 = about 32 MiB of BF16 (at least 64 rows)
 *   i8_mma_rows      int8 products of more rows than the GEMV kernels take and at most this
 *                    many (0 .. 64) run on tensor cores reading the int8 weights once for all
 *                    rows (activations rounded to BF16); 0 = those go to cuBLAS dequantized */
typedef struct kern_tuning {
	int pdl;
	int graphs;
	int fused_attention;
	int feed_depth;
	int64_t i8_gemm_rows;
	int i8_mma_rows;
} kern_tuning;
#define KERN_TUNING_DEFAULT \
	{ .pdl = 1, .graphs = 1, .fused_attention = 1, .feed_depth = -1, .i8_gemm_rows = 0, \
	  .i8_mma_rows = 64 }

/* kern_dev_open opens "cpu" or "cuda:N" ("cuda" means cuda:0) with KERN_TUNING_DEFAULT.
 * Device-lifetime resources (streams, cuBLAS handle and workspace from pool/, CPU threads) are
 * created here once. The CPU device uses `threads` worker threads (0 = number of online CPUs).
 * Returns 0 or -EINVAL (bad spec or tuning), -ENODEV (no such device / not built with CUDA),
 * -EIO. Free with kern_dev_close. */
int kern_dev_open(const char *spec, int threads, kern_dev **out);
/* kern_dev_open_tuned: kern_dev_open with tuning t (NULL = KERN_TUNING_DEFAULT; copied). */
int kern_dev_open_tuned(const char *spec, int threads, const kern_tuning *t, kern_dev **out);
/* kern_dev_open_compute: kern_dev_open_tuned for "cuda:N" on compute resources the caller made
 * with pool_compute_open(N) and keeps (pool/pool_compute.h: stream, cuBLAS handle, scratch):
 * the device borrows them until kern_dev_close and never frees them; one open device per
 * pool_compute at a time. -EINVAL for "cpu", a NULL pc or a pc of another device. */
struct pool_compute;
int kern_dev_open_compute(const char *spec, const kern_tuning *t, struct pool_compute *pc,
			  kern_dev **out);
/* kern_dev_tuning is the device's tuning, with feed_depth resolved (never -1). */
const kern_tuning *kern_dev_tuning(const kern_dev *d);
void kern_dev_close(kern_dev *d);
/* kern_dev_is_cuda reports whether ops run on a GPU; kern_dev_name is the spec it was opened with. */
int kern_dev_is_cuda(const kern_dev *d);
const char *kern_dev_name(const kern_dev *d);

/* Device memory. kern_alloc returns zeroed memory or NULL. Copies are ordered with the ops;
 * kern_copy_d2h waits for queued work first. */
void *kern_alloc(kern_dev *d, size_t bytes);
void kern_free(kern_dev *d, void *p);
int kern_copy_h2d(kern_dev *d, void *dst, const void *src, size_t bytes);
int kern_copy_d2h(kern_dev *d, void *dst, const void *src, size_t bytes);
int kern_copy_d2d(kern_dev *d, void *dst, const void *src, size_t bytes);
int kern_dev_sync(kern_dev *d);

/* kern_cast converts n elements of src (any dtype but I8) to F32 into dst (both on device). */
int kern_cast_f32(kern_dev *d, kern_dtype src_dt, const void *src, float *dst, int64_t n);

/* kern_linear: y[m, n] = x[m, k] . W[n, k]^T (+ bias[n], F32, may be NULL), then act.
 * x and y must not overlap. GPU: cuBLAS for larger m (activations rounded to the weight dtype
 * for F16/BF16, F32 accumulation), own GEMV kernels for small m and all int8 products. */
int kern_linear(kern_dev *d, const float *x, int64_t m, const kern_mat *w, const float *bias,
		kern_act act, float *y);
/* Fused forms of the products a decoder step makes (fewer passes and kernel launches; a
 * backend without its own version gets them composed from the ops above):
 * kern_linear_add: y[m, n] += x . W^T (a residual connection folded into the product). */
int kern_linear_add(kern_dev *d, const float *x, int64_t m, const kern_mat *w, float *y);
/* An RMSNorm to apply to the input first (norm(x) = x / sqrt(mean(x^2) + eps) * w), or NULL. */
typedef struct kern_norm {
	const float *w;
	float eps;
} kern_norm;
/* kern_linear_multi: y[i] = norm(x) . W[i]^T for i < nw (1..3), e.g. q, k and v from one input;
 * the matrices share k, dtype and int8 layout. norm may be NULL (then x is used as is). */
int kern_linear_multi(kern_dev *d, const float *x, int64_t m, int nw, const kern_mat *w,
		      float *const *y, const kern_norm *norm);
/* kern_swiglu: out[m, n] = silu(h . Wg^T) * (h . Wu^T) with h = norm(x) (or x when norm is
 * NULL), the SiLU-gated MLP's first half; wg and wu have the same shape, dtype and layout. */
int kern_swiglu(kern_dev *d, const float *x, int64_t m, const kern_mat *wg, const kern_mat *wu,
		float *out, const kern_norm *norm);
/* kern_rope_kv: kern_rope on q [m, heads, hd] and k [m, kvheads, hd] in place, then
 * kern_kv_store of k and v, in one pass. */
int kern_rope_kv(kern_dev *d, float *q, float *k, const float *v, const int32_t *pos, int64_t m,
		 int64_t heads, int64_t kvheads, int64_t hd, float theta, float *kcache,
		 float *vcache, int64_t cap);
/* kern_rope_attention: kern_rope_kv then kern_attention (out[m, heads, hd]) in one op — a
 * decode step's whole attention. q and k are scratch: afterwards they may hold the rotated
 * values or the originals. On a GPU, pos and the cache rows before pos may be read while the
 * op issued just before still runs: they must come from earlier ops (or copies). */
int kern_rope_attention(kern_dev *d, float *q, float *k, const float *v, const int32_t *pos,
			int64_t m, int64_t heads, int64_t kvheads, int64_t hd, float theta,
			float *kcache, float *vcache, int64_t cap, float scale, float *out);
/* Chained forms: a producer and the product that consumes its output in one op, so that a
 * backend may write the producer's output also in the form the product reads (on a GPU, rounded
 * for cuBLAS) and skip a pass. The intermediate is still written in F32.
 * kern_rope_attention_proj: kern_rope_attention into att [m, heads * hd], then
 * y[m, wo->n] += att . Wo^T (kern_linear_add): a decoder layer's attention, output projection
 * and residual connection. */
int kern_rope_attention_proj(kern_dev *d, float *q, float *k, const float *v, const int32_t *pos,
			     int64_t m, int64_t heads, int64_t kvheads, int64_t hd, float theta,
			     float *kcache, float *vcache, int64_t cap, float scale, float *att,
			     const kern_mat *wo, float *y);
/* kern_swiglu_proj: kern_swiglu of x into g [m, wg->n] (norm may be NULL), then
 * y[m, wd->n] += g . Wd^T: a decoder layer's MLP with its residual connection. y may be x
 * (the residual stream): x is read before y is written. */
int kern_swiglu_proj(kern_dev *d, const float *x, int64_t m, const kern_mat *wg,
		     const kern_mat *wu, const kern_norm *norm, float *g, const kern_mat *wd,
		     float *y);
/* kern_embed: y[m, dim] = table[tokens[i], :] as F32 (table F32/F16/BF16 [vocab, dim]);
 * out-of-range ids give zeros (callers validate ids first). */
int kern_embed(kern_dev *d, kern_dtype dt, const void *table, int64_t vocab, int64_t dim,
	       const int32_t *tokens, int64_t m, float *y);
/* kern_rmsnorm: y = x / sqrt(mean(x^2) + eps) * w, row by row ([m, dim]); y may equal x. */
int kern_rmsnorm(kern_dev *d, const float *x, const float *w, int64_t m, int64_t dim,
		 float eps, float *y);
/* kern_rope rotates x[m, heads, hd] in place, HF LLaMA convention (rotate_half: pairs i and
 * i + hd/2), angle pos[i] * theta^(-2j/hd). */
int kern_rope(kern_dev *d, float *x, const int32_t *pos, int64_t m, int64_t heads, int64_t hd,
	      float theta);
/* kern_kv_store writes k and v rows [m, kvh * hd] into the caches [cap, kvh * hd] at rows
 * pos[i] (< cap). */
int kern_kv_store(kern_dev *d, const float *k, const float *v, const int32_t *pos, int64_t m,
		  int64_t kvdim, float *kcache, float *vcache, int64_t cap);
/* kern_attention: causal attention of q[m, heads, hd] at positions pos[i] over cache rows
 * 0..pos[i] (grouped-query: head h reads KV head h / (heads / kvheads)); softmax(q.k * scale).
 * out[m, heads, hd]. Rows may be at most `cap` positions. */
int kern_attention(kern_dev *d, const float *q, const float *kcache, const float *vcache,
		   const int32_t *pos, int64_t m, int64_t heads, int64_t kvheads, int64_t hd,
		   int64_t cap, float scale, float *out);
/* kern_silu_mul: out = silu(gate) * up, elementwise over n; out may equal gate. */
int kern_silu_mul(kern_dev *d, const float *gate, const float *up, int64_t n, float *out);
/* kern_bias_act: x[m, n] += bias[n] (bias may be NULL), then act, in place. */
int kern_bias_act(kern_dev *d, float *x, const float *bias, int64_t m, int64_t n, kern_act act);
/* kern_add: y += x over n elements. */
int kern_add(kern_dev *d, float *y, const float *x, int64_t n);
/* kern_softmax: row-wise softmax of x[m, n] in place. */
int kern_softmax(kern_dev *d, float *x, int64_t m, int64_t n);
/* kern_argmax: out[i] = argmax of row i of x[m, n] (lowest index on ties); logprob (may be
 * NULL) gets log_softmax(row)[out[i]]. */
int kern_argmax(kern_dev *d, const float *x, int64_t m, int64_t n, int32_t *out,
		float *logprob);
/* kern_argmax_feed: decoding without a host round trip. Takes the argmax of one row x[n]
 * (lowest index on ties, as kern_argmax) and its log-probability, and feeds it to the next
 * decode step: with step = {token, position} (device memory) it sets step = {argmax,
 * position + 1} and, when 0 <= position + 1 < cap, hist[position + 1] = argmax and (lphist
 * may be NULL) lphist[position + 1] = the log-probability. hist and lphist may be memory from
 * kern_alloc_host, which the host reads after kern_wait_mark. */
int kern_argmax_feed(kern_dev *d, const float *x, int64_t n, int32_t *step, int32_t *hist,
		     float *lphist, int64_t cap);
/* kern_sample draws one token per row of logits x[m, n]: probabilities softmax(x / temp),
 * restricted to the top_k most likely (0 = no limit) and to the smallest set of most likely
 * tokens whose mass reaches top_p (1 = no limit); u[i] in [0, 1) (device array) picks the token
 * by inverse CDF over the kept tokens in index order, so a seeded u gives the same token on
 * every backend. logprob (may be NULL) gets log_softmax(x / temp)[token]. temp must be > 0. */
int kern_sample(kern_dev *d, const float *x, int64_t m, int64_t n, float temp, int top_k,
		float top_p, const float *u, int32_t *out, float *logprob);

/* ---- paged KV cache and batched decoding (iteration-level serving) ----
 * The KV cache of a generative model is a pool of fixed-size blocks. Per layer, K and V are
 * each [nblocks, block, kvdim] in dtype dt (KERN_BF16, or KERN_F32). A sequence owns a list of
 * blocks, its row of the block table: table[s * max_blocks + j] is the block that holds its
 * positions j * block .. j * block + block - 1. A batch of m rows mixes sequences: row i is the
 * token of sequence seq[i] at position pos[i] (device int32 arrays); the rows of one sequence
 * (a prefill chunk) come in increasing positions. The caller guarantees that the table entries
 * a row reaches (positions 0 .. pos[i] of its sequence) name blocks below nblocks. */
typedef struct kern_kv_pages {
	kern_dtype dt;             /* KERN_BF16 or KERN_F32 */
	void *k, *v;               /* this layer's blocks, [nblocks, block, kvdim] each */
	int64_t nblocks, block, kvdim;
	const int32_t *table;      /* device [nseq, max_blocks] block ids */
	int64_t max_blocks;
} kern_kv_pages;

/* kern_paged_rope_attention: for each row i (sequence s = seq[i], position p = pos[i]) rotate
 * q[i] ([heads, hd]) and k[i] ([kvheads, hd]) at p as kern_rope does, store k[i] and v[i]
 * (rounded to kv->dt) at position p of s's blocks, then out[i] = causal attention of q[i] over
 * positions 0 .. p of s (grouped-query as kern_attention; softmax(q.k * scale)). Every row's K
 * and V are stored before any row attends, so the rows of one prefill chunk see each other.
 * q and k are scratch afterwards. kvheads * hd == kv->kvdim. A GPU keeps per-row partials
 * for rows that span many positions in the device's scratch (see the CUDA graphs note). */
int kern_paged_rope_attention(kern_dev *d, float *q, float *k, const float *v,
			      const int32_t *pos, const int32_t *seq, int64_t m, int64_t heads,
			      int64_t kvheads, int64_t hd, float theta, const kern_kv_pages *kv,
			      float scale, float *out);
/* kern_paged_rope_attention_proj: kern_paged_rope_attention into att [m, heads * hd], then
 * y[m, wo->n] += att . Wo^T, as kern_rope_attention_proj. */
int kern_paged_rope_attention_proj(kern_dev *d, float *q, float *k, const float *v,
				   const int32_t *pos, const int32_t *seq, int64_t m,
				   int64_t heads, int64_t kvheads, int64_t hd, float theta,
				   const kern_kv_pages *kv, float scale, float *att,
				   const kern_mat *wo, float *y);
/* kern_gather_rows: y[i, :] = x[rows[i], :] for i < n (F32 rows of dim; rows a device int32
 * array; x and y must not overlap): the rows whose logits a step needs. */
int kern_gather_rows(kern_dev *d, const float *x, int64_t dim, const int32_t *rows, int64_t n,
		     float *y);
/* kern_sample_rows picks one token per row of logits x[m, n] with the row's own parameters
 * (device arrays of m): temp[i] == 0 is greedy (argmax, lowest index on ties, as kern_argmax),
 * else kern_sample's rule with temp[i], top_k[i] (0 = no limit), top_p[i] (1 = no limit) and
 * u[i]. logprob (may be NULL) gets the picked token's log-probability (of x for greedy rows,
 * of x / temp otherwise). Tokens equal kern_argmax / kern_sample row by row. Parameters that
 * kern_sample rejects give -EINVAL where the backend sees them on the host (CPU); a GPU takes
 * temp < 0 or NaN as greedy, top_k < 0 and top_p outside (0, 1] as no limit. */
int kern_sample_rows(kern_dev *d, const float *x, int64_t m, int64_t n, const float *temp,
		     const int32_t *top_k, const float *top_p, const float *u, int32_t *out,
		     float *logprob);

/* ---- training ops (the finetune job's steps on a device) ---- */

/* kern_gemm: c[m, n] = alpha * op(a) . op(b) + beta * c, all F32 row-major. op(a) is [m, k]:
 * a is stored [m, k] (ta == 0) or [k, m] (ta == 1, used transposed); op(b) is [k, n]: b is
 * stored [k, n] (tb == 0) or [n, k] (tb == 1). beta == 0: c is only written (may hold NaN).
 * With a = dZ, b = X this gives dW = dZ^T . X (ta = 1), and dX = dZ . W (both 0). GPU: cuBLAS
 * SGEMM (F32, no TF32). c must not overlap a or b. */
int kern_gemm(kern_dev *d, int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
	      const float *a, const float *b, float beta, float *c);
/* kern_act_grad: g[i] *= act'(z[i]) over n elements (the backward pass of an activation
 * applied to pre-activations z); GELU is the exact (erf) one. g and z must not overlap. */
int kern_act_grad(kern_dev *d, float *g, const float *z, int64_t n, kern_act act);
/* kern_xent_grad: softmax cross-entropy of logits x[m, n] against labels lab[m] (class indices
 * stored as F32): loss[i] = -log softmax(x_i)[lab_i], correct[i] = 1 when the row's argmax
 * (lowest index on ties) is lab_i else 0, and, when grad is not NULL, grad[m, n] =
 * (softmax(x_i) - onehot(lab_i)) * scale. A label that is not an integer in 0..n-1 gives a NaN
 * loss, correct 0 and the softmax (no one-hot) as gradient. loss and correct may be NULL. */
int kern_xent_grad(kern_dev *d, const float *x, const float *lab, int64_t m, int64_t n,
		   float scale, float *grad, float *loss, float *correct);
/* kern_mse_grad: mean squared error of x[m, n] against targets t[m, n]: loss[i] =
 * mean_j (x - t)^2 and, when grad is not NULL, grad = 2 (x - t) / n * scale. loss may be NULL. */
int kern_mse_grad(kern_dev *d, const float *x, const float *t, int64_t m, int64_t n, float scale,
		  float *grad, float *loss);
/* kern_col_sum: out[j] = alpha * sum_i x[i, j] + beta * out[j] over x[m, n] (a bias gradient);
 * beta == 0: out is only written. */
int kern_col_sum(kern_dev *d, const float *x, int64_t m, int64_t n, float alpha, float beta,
		 float *out);
/* kern_adam: one Adam update of n parameters p with gradient g and moments mo, v (all F32,
 * updated in place): mo = b1 mo + (1 - b1) g; v = b2 v + (1 - b2) g^2;
 * p -= lr * mo / (sqrt(v) + eps). lr is the step size with the bias corrections already folded
 * in by the caller. */
int kern_adam(kern_dev *d, float *p, float *mo, float *v, const float *g, int64_t n, float lr,
	      float b1, float b2, float eps);

/* ---- backward ops of a decoder (LoRA fine-tuning of llama functions) ----
 * Activations and gradients are F32 row-major; frozen base weights enter products as kern_mat
 * in F32, F16 or BF16 (not I8). "Written" outputs are only written (they may hold NaN before);
 * "accumulated" ones get += and must hold valid values. Outputs must not overlap inputs. A
 * backend without one of these ops answers -ENOTSUP (and names the op in the device log,
 * pool_log.h). GPU: own
 * kernels, cuBLAS for the products (kern_linear_bwd, kern_lora, kern_lora_bwd). */

/* kern_rmsnorm_bwd: the backward of kern_rmsnorm (y = x * r * w, r = 1 / sqrt(mean(x^2) + eps)
 * per row of x[m, dim]) for the upstream gradient dy[m, dim]: dx[m, dim] (written) and, when dw
 * is not NULL, dw[dim] = sum over rows of dy * x * r (written). */
int kern_rmsnorm_bwd(kern_dev *d, const float *x, const float *w, const float *dy, int64_t m,
		     int64_t dim, float eps, float *dx, float *dw);
/* kern_rope_bwd: the backward of kern_rope, in place on the gradient g[m, heads, hd]: the
 * inverse rotation (angle -pos[i] * theta^(-2j/hd), the same F32 angle kern_rope uses, pairs
 * i and i + hd/2). hd must be even. */
int kern_rope_bwd(kern_dev *d, float *g, const int32_t *pos, int64_t m, int64_t heads,
		  int64_t hd, float theta);
/* kern_causal_attention: training-time causal attention of nseq sequences of T tokens each:
 * q[nseq * T, heads, hd], k and v [nseq * T, kvheads, hd] (grouped-query as kern_attention:
 * head h reads KV head h / (heads / kvheads)); token t of a sequence attends to tokens 0..t
 * of the same sequence with softmax(q.k * scale). out[nseq * T, heads, hd] (written) and, for
 * the backward, lse[nseq * T, heads] = log sum_j exp(q.k_j * scale) (written). A GPU takes
 * hd <= 256 (-ENOTSUP above). */
int kern_causal_attention(kern_dev *d, const float *q, const float *k, const float *v,
			  int64_t nseq, int64_t T, int64_t heads, int64_t kvheads, int64_t hd,
			  float scale, float *out, float *lse);
/* kern_causal_attention_bwd: the backward of kern_causal_attention, given its inputs, its out
 * and lse, and dout (shaped as out): dq (shaped as q), dk and dv (shaped as k, summed over the
 * query heads of each KV head), all written. */
int kern_causal_attention_bwd(kern_dev *d, const float *q, const float *k, const float *v,
			      const float *out, const float *lse, const float *dout, int64_t nseq,
			      int64_t T, int64_t heads, int64_t kvheads, int64_t hd, float scale,
			      float *dq, float *dk, float *dv);
/* kern_silu_mul_bwd: the backward of kern_silu_mul (out = silu(gate) * up over n elements)
 * for dout: dgate = dout * up * silu'(gate) and dup = dout * silu(gate), both written. With
 * kern_linear_bwd for the gate, up and down products it is the SiLU-gated MLP's backward. */
int kern_silu_mul_bwd(kern_dev *d, const float *gate, const float *up, const float *dout,
		      int64_t n, float *dgate, float *dup);
/* kern_linear_bwd: the input gradient of y = x . W^T through a frozen weight W[n, k] (F32,
 * F16 or BF16): dx[m, k] = dy[m, n] . W (accumulate == 0: written) or dx += dy . W
 * (accumulate == 1, e.g. a residual stream's gradient). F32 products accumulate in F32. */
int kern_linear_bwd(kern_dev *d, const float *dy, int64_t m, const kern_mat *w, int accumulate,
		    float *dx);
/* kern_xent_lm: cross-entropy of logits x[m, n] against int32 targets tgt[m] (a host or
 * device array as the backend reads device memory; on the CPU plain memory), as PyTorch's
 * F.cross_entropy with ignore_index -100 and reduction "mean": rows whose target is -100 are
 * ignored; loss[0] (may be NULL) = mean over the c other rows of -log softmax(x_i)[tgt_i]
 * (NaN when c == 0), and grad[m, n] (may be NULL; written) = (softmax(x_i) - onehot(tgt_i)) *
 * scale / c, zero on ignored rows (all zero when c == 0). A target outside 0..n-1 other than
 * -100 is -EINVAL where the backend reads targets on the host (CPU); a GPU, which reads them
 * only on the device, makes the loss and that row's gradient NaN instead. */
#define KERN_IGNORE_INDEX (-100)
int kern_xent_lm(kern_dev *d, const float *x, const int32_t *tgt, int64_t m, int64_t n,
		 float scale, float *grad, float *loss);
/* kern_lora: a LoRA adapter's contribution to a product of x[m, k]: xa[m, r] = x . A^T
 * (written; kept for the backward) and y[m, n] += scale * xa . B^T, with A[r, k] and B[n, r]
 * in F32 (PEFT's lora_A / lora_B weights; scale = alpha / r). Composed from kern_gemm (cuBLAS
 * on a GPU). */
int kern_lora(kern_dev *d, const float *x, int64_t m, int64_t k, int64_t n, int64_t r,
	      const float *a, const float *b, float scale, float *xa, float *y);
/* kern_lora_bwd: the backward of kern_lora for dy[m, n], given x, A, B and the forward's xa:
 * dxa[m, r] = scale * dy . B (scratch, written), db[n, r] = scale * dy^T . xa and
 * da[r, k] = dxa^T . x (written), and dx[m, k] += dxa . A (accumulated: the frozen product's
 * gradient goes in the same buffer; dx may be NULL to skip it). */
int kern_lora_bwd(kern_dev *d, const float *x, int64_t m, int64_t k, int64_t n, int64_t r,
		  const float *a, const float *b, const float *xa, const float *dy, float scale,
		  float *dxa, float *da, float *db, float *dx);

/* CUDA graphs: ops issued between kern_graph_begin and kern_graph_end are captured (not run)
 * into a graph that kern_graph_launch replays. Buffers and shapes are baked in; values in
 * device memory (positions, tokens) may change between launches. CPU devices return -ENOTSUP
 * from kern_graph_begin (callers then just issue the ops). Scratch that ops use on a GPU
 * (activations rounded for cuBLAS, partial sums) grows only outside a capture: issue a step
 * of the same shapes once before capturing it; an op that would need more inside a capture
 * returns -ENOSPC. */
typedef struct kern_graph kern_graph;
int kern_graph_begin(kern_dev *d);
int kern_graph_end(kern_dev *d, kern_graph **out);
int kern_graph_launch(kern_dev *d, kern_graph *g);
void kern_graph_free(kern_dev *d, kern_graph *g);

/* kern_alloc_host: zeroed host memory that ops may write directly (CUDA: pinned and mapped
 * into the device's address space at the same address; CPU: plain memory); NULL when the
 * device cannot. Freed with kern_free_host. */
void *kern_alloc_host(kern_dev *d, size_t bytes);
void kern_free_host(kern_dev *d, void *p);
/* Marks let the host wait for part of the queued work: kern_mark(d, slot) notes how far the
 * queued ops reach (slot 0 .. KERN_MARKS - 1; marking a slot again replaces it; not while a
 * graph is being captured: -EBUSY); kern_wait_mark(d, slot) returns once the work queued before
 * that mark is done and its writes to kern_alloc_host memory are visible (at once for a slot
 * never marked, and on the CPU device, whose ops finish before they return). */
#define KERN_MARKS 4
int kern_mark(kern_dev *d, int slot);
int kern_wait_mark(kern_dev *d, int slot);

#ifdef __cplusplus
}
#endif
#endif

/* fn_llama_int.h — inside the `llama` kind: the state shared by its files.
 *   fn_llama.c       load/release, request parsing, the kind table, test hooks
 *   fn_llama_kv.c    the KV block pool: free list, reference counts, prefix cache (hash + LRU)
 *   fn_llama_run.c   the device side: KV memory and step buffers, the batched forward pass,
 *                    per-row sampling, decode graphs per bucket, fed greedy decoding
 *   fn_llama_step.c  the engine: sequences, admission, scheduling, preemption, streaming
 */
#ifndef THAW_FN_LLAMA_INT_H
#define THAW_FN_LLAMA_INT_H
#include <stdint.h>
#include "functions/fn.h"

#define LLAMA_MAX_STOP 64
#define LLAMA_BLOCK 16            /* positions per KV block */
#define LLAMA_NBUCKETS 9          /* decode graphs for 1, 2, 4, ... 256 rows */
#define LLAMA_MAX_BUCKET 256

/* ---- KV block pool (fn_llama_kv.c) ----
 * Block 0 is scratch (the padding rows of a captured decode step write there) and never
 * handed out. Every other block is in exactly one of: referenced by sequences (ref > 0), the
 * free list (ref 0, no key), the LRU of cached prefix blocks (ref 0, keyed: reusable by a
 * later prompt with the same prefix, evicted oldest first when a block is needed). */
typedef struct llama_kv {
	int64_t nblocks;           /* including the scratch block */
	int64_t block;             /* positions per block */
	int prefix;                /* prefix caching on */
	int32_t *ref;
	uint64_t *key, *pkey;      /* a keyed block's key and its parent's key */
	uint8_t *keyed;
	int32_t *toks;             /* [nblocks, block]: a keyed block's tokens (checked on a hit) */
	int32_t *fnext;            /* free list links */
	int32_t free_head;
	int64_t nfree;
	int32_t *lprev, *lnext;    /* LRU links */
	int32_t lru_head, lru_tail;
	int64_t nlru;
	int32_t *hnext, *bucket;   /* hash chains of keyed blocks */
	uint64_t hmask;
} llama_kv;

#define LLAMA_KV_ROOT 0x6a09e667f3bcc908ull   /* the parent key of a sequence's first block */

/* llama_kv_init sets up nblocks blocks of `block` positions, all free; 0 or -ENOMEM. */
int llama_kv_init(llama_kv *kv, int64_t nblocks, int64_t block, int prefix);
void llama_kv_free(llama_kv *kv);
/* llama_kv_avail: blocks an allocation can get (free + cached); used: the rest of the
 * usable ones (total = nblocks - 1). */
int64_t llama_kv_avail(const llama_kv *kv);
int64_t llama_kv_used(const llama_kv *kv);
/* llama_kv_alloc takes a free block (else evicts the least recently used cached one) with
 * ref 1; -1 when none is left. */
int32_t llama_kv_alloc(llama_kv *kv);
/* llama_kv_put drops one reference; at 0 the block is cached (keyed) or freed. */
void llama_kv_put(llama_kv *kv, int32_t b);
/* llama_kv_hash is the key of a full block of tokens under its parent's key. */
uint64_t llama_kv_hash(uint64_t parent, const int32_t *toks, int64_t n);
/* llama_kv_find returns the keyed block with this key, parent key and tokens, or -1. */
int32_t llama_kv_find(const llama_kv *kv, uint64_t key, uint64_t parent, const int32_t *toks);
/* llama_kv_take adds a reference to a found block (taking it off the LRU). */
void llama_kv_take(llama_kv *kv, int32_t b);
/* llama_kv_publish keys a referenced, full block so later prompts can share it (nothing when
 * prefix caching is off or the key is already present). */
void llama_kv_publish(llama_kv *kv, int32_t b, uint64_t key, uint64_t parent,
		      const int32_t *toks);

/* ---- requests and sequences ---- */
typedef struct gen_req {
	int32_t *tokens;
	int64_t n, max_tokens;
	double temperature, top_p;
	long long top_k, seed;
	int stop[LLAMA_MAX_STOP], n_stop;
	int logprobs;
} gen_req;

enum { LLAMA_SEQ_WAITING = 0, LLAMA_SEQ_RUNNING };

typedef struct llama_seq {
	fn_call *call;
	gen_req r;                 /* r.tokens: the prompt (r.n tokens) */
	int32_t *toks;             /* prompt + generated, room for r.n + r.max_tokens */
	int64_t ntok;              /* tokens known */
	int64_t computed;          /* positions whose K/V are in the cache */
	int32_t *blocks;           /* its blocks, for positions 0 .. nblk * block - 1 */
	int64_t nblk;
	int64_t nkeyed;            /* leading blocks whose prefix key is known ... */
	uint64_t chain;            /* ... and the key of the last of them */
	int slot;                  /* row of the block table while running, else -1 */
	int state;
	uint64_t order;            /* admission order (larger = admitted later) */
	json_t *otoks, *olps;
	const char *finish;
	double t_add, t_first;
	int graphed;               /* a decode step of it replayed a CUDA graph */
	struct llama_seq *prev, *next;
} llama_seq;

typedef struct llama_list {
	llama_seq *head, *tail;
	int64_t n;
} llama_list;

typedef struct llama_layer {
	float *ln1, *ln2;
	kern_mat q, k, v, o, gate, up, down;
	void *owned[7];
} llama_layer;

/* One sequence's share of a step: positions start .. start + count - 1; lrow: its row of the
 * step's logits (-1: none, a prefill chunk that does not reach the last token). */
typedef struct llama_plan {
	llama_seq *q;
	int64_t start, count, lrow;
	int decode;
} llama_plan;

typedef struct llama {
	kern_dev *dev;
	int64_t D, F, L, H, KVH, hd, V, cap;
	float eps, theta;
	int tied;
	int eos[8], n_eos;
	kern_dtype emb_dt;
	const void *emb;
	kern_mat lm_head;
	void *lm_owned;
	float *norm;
	llama_layer *lay;
	/* paged KV cache */
	kern_dtype kv_dt;
	void *kvmem;               /* L x {K, V} x [nblocks, block, kvdim] */
	size_t kv_layer_bytes;     /* one of K or V of one layer */
	llama_kv kv;
	int64_t max_blocks;        /* table columns: blocks of a full context */
	int nslots;                /* table rows for sequences; row nslots is the scratch row */
	int32_t *table, *table_h;  /* device / host [(nslots + 1), max_blocks] */
	int dirty_lo, dirty_hi;    /* host rows not yet copied (lo > hi: none) */
	int *slot_free;
	int nslot_free;
	/* step buffers: rows R, logit rows LR */
	int64_t R, LR, budget_def;
	float *x, *h, *q, *k, *v, *att, *g;
	int32_t *rin, *rin_h;      /* staged row inputs (device / host), see rows_layout */
	float *logits;             /* [LR, V] */
	int32_t *obuf, *obuf_h;    /* sampled tokens then their log-probabilities */
	kern_graph *graph[LLAMA_NBUCKETS];
	int graphs;                /* decode steps may be captured */
	int warmed;                /* the device scratch has grown to a step of R rows */
	/* fed greedy decoding of a lone sequence */
	int feed_depth;
	int32_t *step;             /* device [token, position, slot] the fed step reads */
	int32_t *hist;             /* host memory (kern_alloc_host): token fed at each position */
	float *lphist;             /* ... and its log-probability */
	kern_graph *graph_feed;
	llama_seq *fed;            /* the sequence being fed, or NULL */
	int64_t fed_issued, fed_taken;
	/* sequences */
	llama_list waiting, running, fin;   /* fin: finished, not yet returned */
	llama_plan *plan;                   /* [nslots] */
	uint64_t order;
	int in_invoke;
	float *last_lg;            /* host [V]: logits behind the latest invoke's last token */
	double prefill_s, decode_s;
	int steps, used_graph;
} llama;

/* ---- fn_llama_run.c ---- */
/* A step's staged row inputs (rows_layout): m rows, nl logit rows, in one int32 buffer. */
typedef struct llama_rows {
	int64_t m, nl;
	int32_t *tok, *pos, *seq, *lrows, *topk;
	float *temp, *topp, *u;
} llama_rows;
/* llama_engine_init reads the engine's load metadata and allocates the KV cache, the block
 * table and the step buffers (0, or a negative errno with err set: 422 bad metadata, 503 out
 * of memory; the caller releases a partly built state). llama_engine_free frees them and
 * every held sequence. */
int llama_engine_init(llama *s, const json_t *meta, fn_error *err);
void llama_engine_free(llama *s);
/* llama_bucket: the decode bucket (1, 2, 4 .. 256) that holds m rows, *index its number
 * (-1 and m itself when m is above the largest). */
int64_t llama_bucket(int64_t m, int *index);
/* llama_rows_layout points r's sections into base for m rows and nl logit rows. */
void llama_rows_layout(int32_t *base, int64_t m, int64_t nl, llama_rows *r);
/* llama_run_batch runs the rows staged in s->rin_h (layout m, nl): the forward pass, then
 * sampling of the logit rows into s->obuf_h (tokens [nl], then log-probabilities [nl]).
 * all_rows: every row is a logit row, in order (no gather); bucket >= 0: replay (capture the
 * first time) that bucket's graph (needs all_rows). *graphed: a graph ran. */
int llama_run_batch(llama *s, int64_t m, int64_t nl, int all_rows, int bucket, int *graphed);
/* Blocks of a sequence: llama_table_set writes table entry j of a slot (copied before the
 * next step); llama_grow allocates blocks until position p is covered (-1: none left);
 * llama_seq_unblock drops all its blocks and its slot; llama_seq_advance records that
 * positions < computed are in the cache and keys the blocks that became full. */
void llama_table_set(llama *s, int slot, int64_t j, int32_t b);
int llama_grow(llama *s, llama_seq *q, int64_t p);
void llama_seq_unblock(llama *s, llama_seq *q);
void llama_seq_advance(llama *s, llama_seq *q, int64_t computed);
/* Fed greedy decoding of the lone sequence q: enter writes its step state to the device;
 * next queues steps up to feed_depth ahead and returns the next token (0), 1 when nothing
 * could be queued (no block: leave and run a plain step), or a negative errno; exit waits for
 * steps queued past the last token taken. llama_fed_ops issues one fed step. */
int llama_fed_enter(llama *s, llama_seq *q);
int llama_fed_next(llama *s, int32_t *tok, float *lp);
int llama_fed_exit(llama *s);
int llama_fed_ops(llama *s);
/* ---- fn_llama_step.c ---- */
/* llama_seq_free_all frees every sequence the state holds (at release). */
void llama_seq_free_all(llama *s);
int llama_seq_add(void *state, fn_call *call);
int llama_seq_step(void *state, fn_step *st);
int llama_invoke(void *state, fn_call *calls, size_t n);
/* parse_req (fn_llama.c) validates one request against the model. */
int llama_parse_req(const llama *s, const json_t *in, gen_req *r, fn_error *err);
/* Test hooks on the engine (fn_llama.h wraps them). */
int llama_helper_prefill(llama *s, const int32_t *toks, int64_t n, float *logits);
int llama_helper_forced(llama *s, const int32_t *prompt, int64_t np, const int32_t *forced,
			int64_t nf, int32_t *argmax);
#endif

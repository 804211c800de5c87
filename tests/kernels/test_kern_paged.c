/* test_kern_paged.c — the paged KV cache ops (kern_paged_rope_attention(_proj),
 * kern_gather_rows, kern_sample_rows). On the CPU: the paged op against the contiguous path
 * (kern_rope_kv into one F32 cache per sequence, then kern_attention) for several sequences of
 * ragged lengths, fed in batches that mix decode rows and prefill chunks (rows of one sequence
 * in one call attend to each other), chunks ending exactly at block edges, shuffled block ids
 * with unused blocks between them and unset (-1) table entries past each sequence's end, block
 * sizes 1, 3 and 16, grouped-query heads; F32 KV to rounding, BF16 KV exactly against the
 * contiguous path on a cache rounded the same way and within BF16 tolerance of the unrounded
 * one; the pool's unused blocks hold NaN, so a read of a wrong block shows. The fused _proj
 * against attention + kern_linear_add; gather rows; per-row sampling against kern_argmax and
 * kern_sample row by row; bad arguments. On a GPU (skipped without one): the same schedules,
 * gather and sampling against the CPU op, and a paged step captured in a CUDA graph and
 * replayed with new positions, sequences and tables. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#define KT_SEED 1717u
#include "tests/kernels/kt.h"
#include "tests/t.h"

static kern_dev *cpu(void)
{
	if (!C)
		kern_dev_open("cpu", 2, &C);
	return C;
}

/* schedule rng (separate from the data's) */
static uint32_t srng = 7;
static uint32_t srand_u(uint32_t n)
{
	srng = srng * 1103515245u + 12345u;
	return (srng >> 8) % n;
}

#define MAXSEQ 6

typedef struct scen {
	int nseq;
	int64_t T[MAXSEQ];   /* final length of each sequence */
	int64_t H, KVH, hd, block;
	kern_dtype dt;
	int maxchunk;        /* longest prefill chunk of one call */
	int extra_blocks;    /* unused blocks shuffled among the used ones */
} scen;

/* a scenario's data (host): raw q, k, v of every position, the block table and the pool size */
typedef struct sdata {
	float *q[MAXSEQ], *k[MAXSEQ], *v[MAXSEQ];
	int32_t *table;
	int64_t max_blocks, nblocks;
	int64_t ncalls, *call_rows;   /* rows per call */
	int32_t *row_seq, *row_pos;   /* all calls' rows, in order */
	int64_t nrows;
} sdata;

static void sdata_make(const scen *sc, sdata *sd)
{
	memset(sd, 0, sizeof *sd);
	int64_t kvd = sc->KVH * sc->hd, total = 0, need = 0;
	sd->max_blocks = 0;
	for (int s = 0; s < sc->nseq; s++) {
		sd->q[s] = rnd((size_t)(sc->T[s] * sc->H * sc->hd), 1);
		sd->k[s] = rnd((size_t)(sc->T[s] * kvd), 1);
		sd->v[s] = rnd((size_t)(sc->T[s] * kvd), 1);
		int64_t nb = (sc->T[s] + sc->block - 1) / sc->block;
		sd->max_blocks = nb > sd->max_blocks ? nb : sd->max_blocks;
		need += nb;
		total += sc->T[s];
	}
	sd->max_blocks += 2;   /* entries past every sequence's end: unset */
	sd->nblocks = need + sc->extra_blocks;
	int32_t *perm = malloc((size_t)sd->nblocks * 4);
	for (int64_t i = 0; i < sd->nblocks; i++)
		perm[i] = (int32_t)i;
	for (int64_t i = sd->nblocks - 1; i > 0; i--) {
		int64_t j = srand_u((uint32_t)(i + 1));
		int32_t t = perm[i];
		perm[i] = perm[j];
		perm[j] = t;
	}
	sd->table = malloc((size_t)(sc->nseq * sd->max_blocks) * 4);
	int64_t used = 0;
	for (int s = 0; s < sc->nseq; s++)
		for (int64_t j = 0; j < sd->max_blocks; j++)
			sd->table[s * sd->max_blocks + j] =
				j * sc->block < sc->T[s] ? perm[sc->extra_blocks + used++] : -1;
	free(perm);
	/* the schedule: each call takes a chunk of some unfinished sequences (a decode row, a
	 * prefill chunk, or the chunk up to the next block edge), in shuffled sequence order */
	sd->row_seq = malloc((size_t)total * 4);
	sd->row_pos = malloc((size_t)total * 4);
	sd->call_rows = malloc((size_t)total * 8);
	int64_t done[MAXSEQ] = {0};
	while (sd->nrows < total) {
		int order[MAXSEQ], taken = 0;
		for (int s = 0; s < sc->nseq; s++)
			order[s] = s;
		for (int s = sc->nseq - 1; s > 0; s--) {
			int j = (int)srand_u((uint32_t)(s + 1)), t = order[s];
			order[s] = order[j];
			order[j] = t;
		}
		int64_t start = sd->nrows;
		for (int oi = 0; oi < sc->nseq; oi++) {
			int s = order[oi];
			if (done[s] >= sc->T[s] || (taken && srand_u(10) < 3))
				continue;
			uint32_t kind = srand_u(4);
			int64_t c = kind == 0 ? 1 : kind == 1 ? sc->block - done[s] % sc->block
				    : 1 + srand_u((uint32_t)sc->maxchunk);
			if (c > sc->T[s] - done[s])
				c = sc->T[s] - done[s];
			for (int64_t r = 0; r < c; r++) {
				sd->row_seq[sd->nrows] = s;
				sd->row_pos[sd->nrows++] = (int32_t)(done[s] + r);
			}
			done[s] += c;
			taken = 1;
		}
		sd->call_rows[sd->ncalls++] = sd->nrows - start;
	}
}

static void sdata_free(const scen *sc, sdata *sd)
{
	for (int s = 0; s < sc->nseq; s++) {
		free(sd->q[s]);
		free(sd->k[s]);
		free(sd->v[s]);
	}
	free(sd->table);
	free(sd->row_seq);
	free(sd->row_pos);
	free(sd->call_rows);
}

/* ref_contig: out[s] [T, H, hd] and the rotated caches kc[s], vc[s] [T, kvd] of each sequence
 * through the contiguous ops on the CPU; round: the caches rounded to BF16 before attention */
static void ref_contig(const scen *sc, const sdata *sd, int round, float **out, float **kc,
		       float **vc)
{
	int64_t H = sc->H, KVH = sc->KVH, hd = sc->hd, kvd = KVH * hd;
	for (int s = 0; s < sc->nseq; s++) {
		int64_t T = sc->T[s];
		float *q = malloc((size_t)(T * H * hd) * 4), *k = malloc((size_t)(T * kvd) * 4);
		int32_t *pos = malloc((size_t)T * 4);
		memcpy(q, sd->q[s], (size_t)(T * H * hd) * 4);
		memcpy(k, sd->k[s], (size_t)(T * kvd) * 4);
		for (int64_t i = 0; i < T; i++)
			pos[i] = (int32_t)i;
		kc[s] = malloc((size_t)(T * kvd) * 4);
		vc[s] = malloc((size_t)(T * kvd) * 4);
		out[s] = malloc((size_t)(T * H * hd) * 4);
		T_EQ_INT(kern_rope_kv(cpu(), q, k, sd->v[s], pos, T, H, KVH, hd, 10000.0f, kc[s], vc[s],
				      T), 0);
		if (round)
			for (int64_t i = 0; i < T * kvd; i++) {
				kc[s][i] = kern_bf16_to_f32(kern_f32_to_bf16(kc[s][i]));
				vc[s][i] = kern_bf16_to_f32(kern_f32_to_bf16(vc[s][i]));
			}
		T_EQ_INT(kern_attention(cpu(), q, kc[s], vc[s], pos, T, H, KVH, hd, T,
					1.0f / sqrtf((float)hd), out[s]), 0);
		free(q);
		free(k);
		free(pos);
	}
}

static void *dev_up(kern_dev *d, const void *h, size_t n)
{
	void *p = kern_alloc(d, n);
	if (p)
		kern_copy_h2d(d, p, h, n);
	return p;
}

/* poison_up: n bytes of 0xFF (NaN as F32 and BF16) on d */
static void *poison_up(kern_dev *d, size_t n)
{
	void *h = malloc(n), *p;
	memset(h, 0xff, n);
	p = dev_up(d, h, n);
	free(h);
	return p;
}

/* run_paged: the schedule through kern_paged_rope_attention on d; out[s] [T, H, hd] per
 * sequence and the pool's K and V blocks (host copies, malloc'd) */
static int run_paged(kern_dev *d, const scen *sc, const sdata *sd, float **out, void **kpool,
		     void **vpool)
{
	int64_t H = sc->H, KVH = sc->KVH, hd = sc->hd, kvd = KVH * hd, maxr = 0;
	for (int64_t c = 0; c < sd->ncalls; c++)
		maxr = sd->call_rows[c] > maxr ? sd->call_rows[c] : maxr;
	size_t es = kern_dtype_size(sc->dt), pool = (size_t)(sd->nblocks * sc->block * kvd) * es;
	void *dk = poison_up(d, pool), *dv = poison_up(d, pool);
	void *dt = dev_up(d, sd->table, (size_t)(sc->nseq * sd->max_blocks) * 4);
	void *dq = kern_alloc(d, (size_t)(maxr * H * hd) * 4), *dkr = kern_alloc(d, (size_t)(maxr * kvd) * 4);
	void *dvr = kern_alloc(d, (size_t)(maxr * kvd) * 4), *dout = kern_alloc(d, (size_t)(maxr * H * hd) * 4);
	void *dpos = kern_alloc(d, (size_t)maxr * 4), *dseq = kern_alloc(d, (size_t)maxr * 4);
	float *hq = malloc((size_t)(maxr * H * hd) * 4), *hk = malloc((size_t)(maxr * kvd) * 4);
	float *hv = malloc((size_t)(maxr * kvd) * 4), *ho = malloc((size_t)(maxr * H * hd) * 4);
	kern_kv_pages kv = {sc->dt, dk, dv, sd->nblocks, sc->block, kvd, dt, sd->max_blocks};
	int rc = 0;
	for (int s = 0; s < sc->nseq; s++)
		out[s] = malloc((size_t)(sc->T[s] * H * hd) * 4);
	int64_t r0 = 0;
	for (int64_t c = 0; c < sd->ncalls && rc == 0; c++) {
		int64_t m = sd->call_rows[c];
		const int32_t *seq = sd->row_seq + r0, *pos = sd->row_pos + r0;
		for (int64_t i = 0; i < m; i++) {
			memcpy(hq + i * H * hd, sd->q[seq[i]] + pos[i] * H * hd, (size_t)(H * hd) * 4);
			memcpy(hk + i * kvd, sd->k[seq[i]] + pos[i] * kvd, (size_t)kvd * 4);
			memcpy(hv + i * kvd, sd->v[seq[i]] + pos[i] * kvd, (size_t)kvd * 4);
		}
		kern_copy_h2d(d, dq, hq, (size_t)(m * H * hd) * 4);
		kern_copy_h2d(d, dkr, hk, (size_t)(m * kvd) * 4);
		kern_copy_h2d(d, dvr, hv, (size_t)(m * kvd) * 4);
		kern_copy_h2d(d, dpos, pos, (size_t)m * 4);
		kern_copy_h2d(d, dseq, seq, (size_t)m * 4);
		rc = kern_paged_rope_attention(d, dq, dkr, dvr, dpos, dseq, m, H, KVH, hd, 10000.0f, &kv,
					       1.0f / sqrtf((float)hd), dout);
		kern_copy_d2h(d, ho, dout, (size_t)(m * H * hd) * 4);
		for (int64_t i = 0; i < m; i++)
			memcpy(out[seq[i]] + pos[i] * H * hd, ho + i * H * hd, (size_t)(H * hd) * 4);
		r0 += m;
	}
	*kpool = malloc(pool);
	*vpool = malloc(pool);
	kern_copy_d2h(d, *kpool, dk, pool);
	kern_copy_d2h(d, *vpool, dv, pool);
	kern_free(d, dk); kern_free(d, dv); kern_free(d, dt); kern_free(d, dq); kern_free(d, dkr);
	kern_free(d, dvr); kern_free(d, dout); kern_free(d, dpos); kern_free(d, dseq);
	free(hq); free(hk); free(hv); free(ho);
	return rc;
}

/* pool_at: element e of the cache row of (s, p) in a host copy of a pool, as F32 */
static float pool_at(const scen *sc, const sdata *sd, const void *pool, int s, int64_t p, int64_t e)
{
	int64_t kvd = sc->KVH * sc->hd;
	int64_t slot = (int64_t)sd->table[s * sd->max_blocks + p / sc->block] * sc->block + p % sc->block;
	if (sc->dt == KERN_F32)
		return ((const float *)pool)[slot * kvd + e];
	return kern_bf16_to_f32(((const uint16_t *)pool)[slot * kvd + e]);
}

static const scen SCENS[] = {
	/* GQA 8/2, block 16, a sequence exactly two blocks long */
	{4, {37, 5, 32, 17}, 8, 2, 16, 16, KERN_F32, 9, 5},
	{4, {37, 5, 32, 17}, 8, 2, 16, 16, KERN_BF16, 9, 5},
	/* block size 1: every position its own block */
	{3, {9, 1, 14}, 4, 4, 32, 1, KERN_F32, 4, 7},
	{3, {9, 1, 14}, 4, 4, 32, 1, KERN_BF16, 4, 7},
	/* block 3, six sequences, long chunks, hd 64 */
	{6, {20, 3, 11, 1, 26, 8}, 6, 3, 64, 3, KERN_BF16, 12, 4},
	{6, {20, 3, 11, 1, 26, 8}, 6, 3, 64, 3, KERN_F32, 12, 4},
	/* multi-query (one KV head), hd 128, block 16, a long prefill */
	{2, {70, 33}, 4, 1, 128, 16, KERN_BF16, 40, 3},
	/* rows past a few hundred positions (on a GPU: split over partitions, then merged) */
	{3, {300, 141, 5}, 8, 2, 64, 16, KERN_BF16, 64, 2},
	{2, {260, 129}, 4, 4, 32, 8, KERN_F32, 100, 2},
};

static void check_scen(const scen *sc, int ci)
{
	sdata sd;
	sdata_make(sc, &sd);
	int64_t H = sc->H, hd = sc->hd, kvd = sc->KVH * hd;
	float *ref[MAXSEQ], *rkc[MAXSEQ], *rvc[MAXSEQ], *got[MAXSEQ];
	float *uref[MAXSEQ], *ukc[MAXSEQ], *uvc[MAXSEQ];
	void *kp, *vp;
	ref_contig(sc, &sd, sc->dt == KERN_BF16, ref, rkc, rvc);
	T_EQ_INT(run_paged(cpu(), sc, &sd, got, &kp, &vp), 0);
	char what[160];
	int kv_ok = 1;
	for (int s = 0; s < sc->nseq; s++) {
		snprintf(what, sizeof what, "cpu paged scen %d %s seq %d (T %lld)", ci,
			 kern_dtype_name(sc->dt), s, (long long)sc->T[s]);
		/* same F32 arithmetic as the contiguous path on the same (rounded) caches */
		T_CHECK(close_f(got[s], ref[s], (size_t)(sc->T[s] * H * hd), 1e-6, 1e-5, what));
		for (int64_t p = 0; p < sc->T[s]; p++)
			for (int64_t e = 0; e < kvd; e++) {
				kv_ok &= pool_at(sc, &sd, kp, s, p, e) == rkc[s][p * kvd + e];
				kv_ok &= pool_at(sc, &sd, vp, s, p, e) == rvc[s][p * kvd + e];
			}
	}
	T_CHECK(kv_ok);
	if (sc->dt == KERN_BF16) {   /* within BF16 tolerance of the unrounded F32 path */
		ref_contig(sc, &sd, 0, uref, ukc, uvc);
		for (int s = 0; s < sc->nseq; s++) {
			snprintf(what, sizeof what, "cpu paged bf16 vs f32 scen %d seq %d", ci, s);
			T_CHECK(close_f(got[s], uref[s], (size_t)(sc->T[s] * H * hd), 1e-2, 2e-2, what));
			free(uref[s]); free(ukc[s]); free(uvc[s]);
		}
	}
	for (int s = 0; s < sc->nseq; s++) {
		free(ref[s]); free(rkc[s]); free(rvc[s]); free(got[s]);
	}
	free(kp); free(vp);
	sdata_free(sc, &sd);
}

static void test_cpu_paged_attention(void)
{
	for (size_t i = 0; i < sizeof SCENS / sizeof SCENS[0]; i++)
		check_scen(&SCENS[i], (int)i);
}

/* the fused op equals attention into att then kern_linear_add, for F32 and BF16 weights */
static void test_cpu_paged_proj(void)
{
	kern_dev *d = cpu();
	int64_t H = 4, KVH = 2, hd = 16, kvd = KVH * hd, m = 5, block = 4, nb = 8, mb = 4, n = 24;
	int32_t table[2 * 4] = {3, 6, -1, -1, 0, 5, 2, -1};
	int32_t pos[5] = {4, 5, 6, 2, 9}, seq[5] = {0, 0, 0, 1, 1};
	for (int dt = 0; dt < 2; dt++) {
		kern_dtype kd = dt ? KERN_BF16 : KERN_F32;
		size_t pool = (size_t)(nb * block * kvd) * kern_dtype_size(kd);
		void *k1 = calloc(1, pool), *v1 = calloc(1, pool), *k2 = calloc(1, pool), *v2 = calloc(1, pool);
		float *q = rnd(m * H * hd, 1), *k = rnd(m * kvd, 1), *v = rnd(m * kvd, 1);
		float *q2 = malloc(m * H * hd * 4), *kk2 = malloc(m * kvd * 4);
		float *wf = rnd(n * H * hd, 0.2f), *y1 = rnd(m * n, 1), *y2 = malloc(m * n * 4);
		float *att1 = malloc(m * H * hd * 4), *att2 = malloc(m * H * hd * 4);
		uint16_t *wb = malloc(n * H * hd * 2);
		for (int64_t i = 0; i < n * H * hd; i++)
			wb[i] = kern_f32_to_bf16(wf[i]);
		kern_mat wo = {kd, n, H * hd, dt ? (void *)wb : (void *)wf, NULL, 0};
		memcpy(q2, q, m * H * hd * 4);
		memcpy(kk2, k, m * kvd * 4);
		memcpy(y2, y1, m * n * 4);
		/* history the rows attend to: positions 0..3 of sequence 0, 0..1 of sequence 1 */
		float *hk = rnd(6 * kvd, 1), *hv = rnd(6 * kvd, 1), *hq = rnd(6 * H * hd, 1);
		float *hq2 = malloc(6 * H * hd * 4), *hk2 = malloc(6 * kvd * 4), *ho = malloc(6 * H * hd * 4);
		int32_t hpos[6] = {0, 1, 2, 3, 0, 1}, hseq[6] = {0, 0, 0, 0, 1, 1};
		memcpy(hq2, hq, 6 * H * hd * 4);
		memcpy(hk2, hk, 6 * kvd * 4);
		kern_kv_pages kv1 = {kd, k1, v1, nb, block, kvd, table, mb};
		kern_kv_pages kv2 = {kd, k2, v2, nb, block, kvd, table, mb};
		T_EQ_INT(kern_paged_rope_attention(d, hq, hk, hv, hpos, hseq, 6, H, KVH, hd, 1e4f, &kv1,
						   0.25f, ho), 0);
		T_EQ_INT(kern_paged_rope_attention(d, hq2, hk2, hv, hpos, hseq, 6, H, KVH, hd, 1e4f, &kv2,
						   0.25f, ho), 0);
		T_EQ_INT(kern_paged_rope_attention_proj(d, q, k, v, pos, seq, m, H, KVH, hd, 1e4f, &kv1,
							0.25f, att1, &wo, y1), 0);
		T_EQ_INT(kern_paged_rope_attention(d, q2, kk2, v, pos, seq, m, H, KVH, hd, 1e4f, &kv2,
						   0.25f, att2), 0);
		T_EQ_INT(kern_linear_add(d, att2, m, &wo, y2), 0);
		T_CHECK(!memcmp(att1, att2, m * H * hd * 4));
		T_CHECK(!memcmp(y1, y2, m * n * 4));
		T_CHECK(!memcmp(k1, k2, pool) && !memcmp(v1, v2, pool));
		free(k1); free(v1); free(k2); free(v2); free(q); free(k); free(v); free(q2); free(kk2);
		free(wf); free(wb); free(y1); free(y2); free(att1); free(att2);
		free(hk); free(hv); free(hq); free(hq2); free(hk2); free(ho);
	}
}

static void test_cpu_gather_rows(void)
{
	kern_dev *d = cpu();
	int64_t dim = 37;
	float *x = rnd(10 * dim, 1), *y = malloc(6 * dim * 4);
	int32_t rows[6] = {9, 0, 3, 3, 7, 1};
	T_EQ_INT(kern_gather_rows(d, x, dim, rows, 6, y), 0);
	int ok = 1;
	for (int i = 0; i < 6; i++)
		ok &= !memcmp(y + i * dim, x + rows[i] * dim, dim * 4);
	T_CHECK(ok);
	T_EQ_INT(kern_gather_rows(d, x, dim, rows, 0, y), 0);
	free(x);
	free(y);
}

/* per-row parameters: m rows of logits with mixed greedy and sampled rows */
#define SR_M 8
static const float SR_TEMP[SR_M] = {0, 0.7f, 0, 1.3f, 0, 0.5f, 1.0f, 0};
static const int32_t SR_TOPK[SR_M] = {0, 40, 5, 0, 0, 10, 1, 3};
static const float SR_TOPP[SR_M] = {1, 0.9f, 0.3f, 0.5f, 1, 1, 1, 1};
static const float SR_U[SR_M] = {0.3f, 0.1f, 0.99f, 0.62f, 0.0f, 0.999f, 0.5f, 0.25f};

static float *sr_logits(int64_t n)
{
	float *x = rnd(SR_M * n, 4);
	x[0 * n + 17] = x[0 * n + 400] = 9.0f;   /* a tie: the lower index wins */
	x[4 * n + n - 1] = 8.0f;                 /* the maximum in the last element */
	return x;
}

static void test_cpu_sample_rows(void)
{
	kern_dev *d = cpu();
	int64_t n = 1000;
	float *x = sr_logits(n), lp[SR_M], lpw;
	int32_t tok[SR_M], want;
	T_EQ_INT(kern_sample_rows(d, x, SR_M, n, SR_TEMP, SR_TOPK, SR_TOPP, SR_U, tok, lp), 0);
	for (int i = 0; i < SR_M; i++) {
		if (SR_TEMP[i] == 0)
			T_EQ_INT(kern_argmax(d, x + i * n, 1, n, &want, &lpw), 0);
		else
			T_EQ_INT(kern_sample(d, x + i * n, 1, n, SR_TEMP[i], SR_TOPK[i], SR_TOPP[i],
					     &SR_U[i], &want, &lpw), 0);
		T_EQ_INT(tok[i], want);
		T_CHECK(lp[i] == lpw);
	}
	T_EQ_INT(tok[0], 17);
	T_EQ_INT(tok[4], n - 1);
	/* without log-probabilities */
	int32_t tok2[SR_M];
	T_EQ_INT(kern_sample_rows(d, x, SR_M, n, SR_TEMP, SR_TOPK, SR_TOPP, SR_U, tok2, NULL), 0);
	T_CHECK(!memcmp(tok, tok2, sizeof tok));
	free(x);
}

static void test_bad_args(void)
{
	kern_dev *d = cpu();
	int64_t H = 4, KVH = 2, hd = 8, kvd = KVH * hd;
	float q[4 * 8 * 2], k[2 * 8 * 2], v[2 * 8 * 2], out[4 * 8 * 2], kp[4 * 2 * 16], vp[4 * 2 * 16];
	int32_t table[2] = {1, -1}, pos[2] = {0, 1}, seq[2] = {0, 0};
	memset(q, 0, sizeof q); memset(k, 0, sizeof k); memset(v, 0, sizeof v);
	kern_kv_pages ok = {KERN_F32, kp, vp, 4, 2, kvd, table, 2}, kv;
	T_EQ_INT(kern_paged_rope_attention(d, q, k, v, pos, seq, 2, H, KVH, hd, 1e4f, &ok, 1, out), 0);
#define BAD(...) T_EQ_INT(kern_paged_rope_attention(__VA_ARGS__), -EINVAL)
	BAD(d, q, k, v, pos, seq, -1, H, KVH, hd, 1e4f, &ok, 1, out);
	BAD(d, q, k, v, pos, seq, 2, H, KVH, hd, 1e4f, NULL, 1, out);
	BAD(d, NULL, k, v, pos, seq, 2, H, KVH, hd, 1e4f, &ok, 1, out);
	BAD(d, q, k, v, NULL, seq, 2, H, KVH, hd, 1e4f, &ok, 1, out);
	BAD(d, q, k, v, pos, NULL, 2, H, KVH, hd, 1e4f, &ok, 1, out);
	BAD(d, q, k, v, pos, seq, 2, H, KVH, hd, 1e4f, &ok, 1, NULL);
	BAD(d, q, k, v, pos, seq, 2, 3, KVH, hd, 1e4f, &ok, 1, out);      /* heads % kvheads */
	BAD(d, q, k, v, pos, seq, 2, H, KVH, 7, 1e4f, &ok, 1, out);       /* odd hd */
	BAD(d, q, k, v, pos, seq, 2, H, KVH, hd, 0, &ok, 1, out);         /* theta */
	BAD(d, q, k, v, pos, seq, 2, H, KVH, hd, 1e4f, &ok, NAN, out);    /* scale */
	BAD(d, q, k, v, pos, seq, 2, H, 1, hd, 1e4f, &ok, 1, out);        /* kvheads * hd != kvdim */
	kv = ok; kv.dt = KERN_F16;
	BAD(d, q, k, v, pos, seq, 2, H, KVH, hd, 1e4f, &kv, 1, out);
	kv = ok; kv.k = NULL;
	BAD(d, q, k, v, pos, seq, 2, H, KVH, hd, 1e4f, &kv, 1, out);
	kv = ok; kv.table = NULL;
	BAD(d, q, k, v, pos, seq, 2, H, KVH, hd, 1e4f, &kv, 1, out);
	kv = ok; kv.nblocks = 0;
	BAD(d, q, k, v, pos, seq, 2, H, KVH, hd, 1e4f, &kv, 1, out);
	kv = ok; kv.block = 0;
	BAD(d, q, k, v, pos, seq, 2, H, KVH, hd, 1e4f, &kv, 1, out);
	kv = ok; kv.max_blocks = 0;
	BAD(d, q, k, v, pos, seq, 2, H, KVH, hd, 1e4f, &kv, 1, out);
	/* values the CPU backend sees: a position past the table, an unset entry reached, a
	 * negative sequence, a block id past the pool */
	int32_t p2[2] = {0, 4}, p3[2] = {0, 2}, s2[2] = {0, -1}, t2[2] = {4, -1};
	BAD(d, q, k, v, p2, seq, 2, H, KVH, hd, 1e4f, &ok, 1, out);
	BAD(d, q, k, v, p3, seq, 2, H, KVH, hd, 1e4f, &ok, 1, out);
	BAD(d, q, k, v, pos, s2, 2, H, KVH, hd, 1e4f, &ok, 1, out);
	kv = ok; kv.table = t2;
	BAD(d, q, k, v, pos, seq, 2, H, KVH, hd, 1e4f, &kv, 1, out);
#undef BAD
	/* nothing to do: 0 rows */
	T_EQ_INT(kern_paged_rope_attention(d, NULL, NULL, NULL, NULL, NULL, 0, H, KVH, hd, 1e4f, &ok,
					   1, NULL), 0);
	/* _proj: the product's shape */
	float wf[8 * 32], y[2 * 8], att[2 * 32];
	kern_mat wo = {KERN_F32, 8, 32, wf, NULL, 0}, wbad = {KERN_F32, 8, 16, wf, NULL, 0};
	T_EQ_INT(kern_paged_rope_attention_proj(d, q, k, v, pos, seq, 2, H, KVH, hd, 1e4f, &ok, 1,
						att, &wbad, y), -EINVAL);
	T_EQ_INT(kern_paged_rope_attention_proj(d, q, k, v, pos, seq, 2, H, KVH, hd, 1e4f, &ok, 1,
						att, NULL, y), -EINVAL);
	T_EQ_INT(kern_paged_rope_attention_proj(d, q, k, v, pos, seq, 2, H, KVH, hd, 1e4f, &ok, 1,
						att, &wo, NULL), -EINVAL);
	/* gather rows */
	int32_t rows[2] = {0, 1}, nrows[2] = {0, -1};
	T_EQ_INT(kern_gather_rows(d, q, 8, rows, -1, y), -EINVAL);
	T_EQ_INT(kern_gather_rows(d, q, 0, rows, 2, y), -EINVAL);
	T_EQ_INT(kern_gather_rows(d, q, 8, NULL, 2, y), -EINVAL);
	T_EQ_INT(kern_gather_rows(d, NULL, 8, rows, 2, y), -EINVAL);
	T_EQ_INT(kern_gather_rows(d, q, 8, nrows, 2, y), -EINVAL);
	/* per-row sampling */
	float x[2 * 8] = {0}, t_ok[2] = {0, 1}, t_neg[2] = {0, -1}, t_nan[2] = {NAN, 0};
	float tp[2] = {1, 1}, tp0[2] = {1, 0}, tp2[2] = {1, 1.5f}, u[2] = {0.5f, 0.5f};
	int32_t tk[2] = {0, 0}, tkn[2] = {0, -2}, tok[2];
	T_EQ_INT(kern_sample_rows(d, x, 2, 8, t_ok, tk, tp, u, tok, NULL), 0);
	T_EQ_INT(kern_sample_rows(d, x, -1, 8, t_ok, tk, tp, u, tok, NULL), -EINVAL);
	T_EQ_INT(kern_sample_rows(d, x, 2, 0, t_ok, tk, tp, u, tok, NULL), -EINVAL);
	T_EQ_INT(kern_sample_rows(d, x, 2, 8, NULL, tk, tp, u, tok, NULL), -EINVAL);
	T_EQ_INT(kern_sample_rows(d, x, 2, 8, t_ok, NULL, tp, u, tok, NULL), -EINVAL);
	T_EQ_INT(kern_sample_rows(d, x, 2, 8, t_ok, tk, NULL, u, tok, NULL), -EINVAL);
	T_EQ_INT(kern_sample_rows(d, x, 2, 8, t_ok, tk, tp, NULL, tok, NULL), -EINVAL);
	T_EQ_INT(kern_sample_rows(d, x, 2, 8, t_ok, tk, tp, u, NULL, NULL), -EINVAL);
	T_EQ_INT(kern_sample_rows(d, x, 2, 8, t_neg, tk, tp, u, tok, NULL), -EINVAL);
	T_EQ_INT(kern_sample_rows(d, x, 2, 8, t_nan, tk, tp, u, tok, NULL), -EINVAL);
	T_EQ_INT(kern_sample_rows(d, x, 2, 8, t_ok, tkn, tp, u, tok, NULL), -EINVAL);
	T_EQ_INT(kern_sample_rows(d, x, 2, 8, t_ok, tk, tp0, u, tok, NULL), -EINVAL);
	T_EQ_INT(kern_sample_rows(d, x, 2, 8, t_ok, tk, tp2, u, tok, NULL), -EINVAL);
}

/* ---- GPU against the CPU ---- */

static void test_cuda_paged_attention(void)
{
	if (!open_devs())
		T_SKIP("no GPU");
	for (size_t ci = 0; ci < sizeof SCENS / sizeof SCENS[0]; ci++) {
		const scen *sc = &SCENS[ci];
		sdata sd;
		sdata_make(sc, &sd);
		int64_t H = sc->H, hd = sc->hd, kvd = sc->KVH * hd;
		float *gc[MAXSEQ], *gg[MAXSEQ];
		void *kc, *vc, *kg, *vg;
		T_EQ_INT(run_paged(C, sc, &sd, gc, &kc, &vc), 0);
		T_EQ_INT(run_paged(G, sc, &sd, gg, &kg, &vg), 0);
		int bf = sc->dt == KERN_BF16;
		char what[160];
		for (int s = 0; s < sc->nseq; s++) {
			snprintf(what, sizeof what, "cuda paged scen %zu %s seq %d (T %lld)", ci,
				 kern_dtype_name(sc->dt), s, (long long)sc->T[s]);
			T_CHECK(close_f(gg[s], gc[s], (size_t)(sc->T[s] * H * hd), bf ? 4e-3 : 2e-4,
					bf ? 1e-2 : 1e-3, what));
			/* the stored rows: the rotated keys (to RoPE's accuracy; BF16 may round a
			 * value near a tie the other way) and the values exactly */
			float kw = 0, vw = 0;
			for (int64_t p = 0; p < sc->T[s]; p++)
				for (int64_t e = 0; e < kvd; e++) {
					float a = pool_at(sc, &sd, kg, s, p, e), b = pool_at(sc, &sd, kc, s, p, e);
					float da = fabsf(a - b) / (2e-4f + (bf ? 1e-2f : 1e-4f) * fabsf(b));
					kw = !(da <= kw) ? (isnan(da) ? INFINITY : da) : kw;
					a = pool_at(sc, &sd, vg, s, p, e);
					b = pool_at(sc, &sd, vc, s, p, e);
					vw = a == b ? vw : INFINITY;
				}
			T_CHECK(kw <= 1);
			T_CHECK(vw == 0);
			free(gc[s]);
			free(gg[s]);
		}
		free(kc); free(vc); free(kg); free(vg);
		sdata_free(sc, &sd);
	}
}

/* the fused _proj on the GPU against the CPU's, decode and prefill batch sizes */
static void test_cuda_paged_proj(void)
{
	if (!open_devs())
		T_SKIP("no GPU");
	int64_t H = 8, KVH = 2, hd = 64, kvd = KVH * hd, block = 16, nb = 16, mb = 8, n = 256;
	int64_t ms[] = {1, 3, 8, 24, 40};
	for (size_t mi = 0; mi < sizeof ms / sizeof ms[0]; mi++)
		for (int dt = 0; dt < 2; dt++) {
			int64_t m = ms[mi];
			kern_dtype kd = dt ? KERN_BF16 : KERN_F32;
			/* two sequences, rows split between them: seq 0 at 50.., seq 1 at 3.. */
			int32_t table[2 * 8], pos[40], seq[40];
			for (int i = 0; i < 16; i++)
				table[i] = (int32_t)((i * 7 + 3) % 16);
			for (int64_t i = 0; i < m; i++) {
				seq[i] = i < m / 2 ? 0 : 1;
				pos[i] = seq[i] == 0 ? (int32_t)(50 + i) : (int32_t)(3 + i - m / 2);
			}
			size_t pool = (size_t)(nb * block * kvd) * kern_dtype_size(kd);
			void *hk = malloc(pool), *hv = malloc(pool);
			float *fk = rnd(pool / kern_dtype_size(kd), 1), *fv = rnd(pool / kern_dtype_size(kd), 1);
			for (size_t i = 0; i < pool / kern_dtype_size(kd); i++) {
				if (dt) {
					((uint16_t *)hk)[i] = kern_f32_to_bf16(fk[i]);
					((uint16_t *)hv)[i] = kern_f32_to_bf16(fv[i]);
				} else {
					((float *)hk)[i] = fk[i];
					((float *)hv)[i] = fv[i];
				}
			}
			float *q = rnd(m * H * hd, 1), *k = rnd(m * kvd, 1), *v = rnd(m * kvd, 1);
			float *wf = rnd(n * H * hd, 0.05f), *y = rnd(m * n, 1);
			uint16_t *wb = malloc(n * H * hd * 2);
			for (int64_t i = 0; i < n * H * hd; i++)
				wb[i] = kern_f32_to_bf16(wf[i]);
			const void *wh = dt ? (void *)wb : (void *)wf;
			size_t wbytes = n * H * hd * (dt ? 2 : 4);
			/* CPU */
			void *ck = malloc(pool), *cv = malloc(pool);
			memcpy(ck, hk, pool);
			memcpy(cv, hv, pool);
			float *cq = malloc(m * H * hd * 4), *ckr = malloc(m * kvd * 4), *catt = malloc(m * H * hd * 4);
			float *cy = malloc(m * n * 4);
			memcpy(cq, q, m * H * hd * 4);
			memcpy(ckr, k, m * kvd * 4);
			memcpy(cy, y, m * n * 4);
			kern_kv_pages ckv = {kd, ck, cv, nb, block, kvd, table, mb};
			kern_mat cwo = {kd, n, H * hd, wh, NULL, 0};
			T_EQ_INT(kern_paged_rope_attention_proj(C, cq, ckr, v, pos, seq, m, H, KVH, hd, 1e4f,
								&ckv, 0.125f, catt, &cwo, cy), 0);
			/* GPU */
			void *gk = up(hk, pool), *gv = up(hv, pool), *gt = up(table, sizeof table);
			void *gq = up(q, m * H * hd * 4), *gkr = up(k, m * kvd * 4), *gvr = up(v, m * kvd * 4);
			void *gpos = up(pos, m * 4), *gseq = up(seq, m * 4), *gatt = poisoned(m * H * hd * 4);
			void *gy = up(y, m * n * 4), *gw = up(wh, wbytes);
			kern_kv_pages gkv = {kd, gk, gv, nb, block, kvd, gt, mb};
			kern_mat gwo = {kd, n, H * hd, gw, NULL, 0};
			T_EQ_INT(kern_paged_rope_attention_proj(G, gq, gkr, gvr, gpos, gseq, m, H, KVH, hd,
								1e4f, &gkv, 0.125f, gatt, &gwo, gy), 0);
			float *ga = down(gatt, m * H * hd * 4), *gyh = down(gy, m * n * 4);
			char what[96];
			snprintf(what, sizeof what, "cuda paged proj att m %lld %s", (long long)m,
				 kern_dtype_name(kd));
			T_CHECK(close_f(ga, catt, m * H * hd, dt ? 4e-3 : 2e-4, dt ? 1e-2 : 1e-3, what));
			snprintf(what, sizeof what, "cuda paged proj y m %lld %s", (long long)m,
				 kern_dtype_name(kd));
			T_CHECK(close_f(gyh, cy, m * n, dt ? 3e-2 : 1e-3, dt ? 2e-2 : 1e-3, what));
			free(ga); free(gyh);
			kern_free(G, gk); kern_free(G, gv); kern_free(G, gt); kern_free(G, gq);
			kern_free(G, gkr); kern_free(G, gvr); kern_free(G, gpos); kern_free(G, gseq);
			kern_free(G, gatt); kern_free(G, gy); kern_free(G, gw);
			free(ck); free(cv); free(cq); free(ckr); free(catt); free(cy);
			free(hk); free(hv); free(fk); free(fv); free(q); free(k); free(v); free(wf);
			free(wb); free(y);
		}
}

/* a decode step of 4 rows captured once and replayed with new positions, sequences and table
 * entries written to device memory between launches */
static void test_cuda_paged_graph(void)
{
	if (!open_devs())
		T_SKIP("no GPU");
	int64_t H = 8, KVH = 4, hd = 64, kvd = KVH * hd, block = 16, nb = 40, mb = 10, m = 4;
	size_t pool = (size_t)(nb * block * kvd) * 2;
	uint16_t *hk = malloc(pool), *hv = malloc(pool);
	for (size_t i = 0; i < pool / 2; i++) {
		hk[i] = kern_f32_to_bf16(frand());
		hv[i] = kern_f32_to_bf16(frand());
	}
	int32_t table[4 * 10];
	for (int i = 0; i < 40; i++)
		table[i] = (int32_t)((i * 11 + 5) % 40);
	void *gk = up(hk, pool), *gv = up(hv, pool), *gt = up(table, sizeof table);
	void *gq = kern_alloc(G, m * H * hd * 4), *gkr = kern_alloc(G, m * kvd * 4);
	void *gvr = kern_alloc(G, m * kvd * 4), *gpos = kern_alloc(G, m * 4);
	void *gseq = kern_alloc(G, m * 4), *gout = kern_alloc(G, m * H * hd * 4);
	void *gq0 = kern_alloc(G, m * H * hd * 4), *gk0 = kern_alloc(G, m * kvd * 4);
	kern_kv_pages gkv = {KERN_BF16, gk, gv, nb, block, kvd, gt, mb};
	kern_kv_pages ckv = {KERN_BF16, hk, hv, nb, block, kvd, table, mb};
	/* one run outside the capture first (scratch the op needs grows only there), on zero
	 * rows (kern_alloc zeroes), and the same on the CPU's copy of the cache */
	int32_t wpos[4] = {150, 151, 0, 1}, wseq[4] = {3, 3, 0, 0};
	float *zq = calloc(m * H * hd, 4), *zk = calloc(m * kvd, 4), *zo = malloc(m * H * hd * 4);
	kern_copy_h2d(G, gpos, wpos, sizeof wpos);
	kern_copy_h2d(G, gseq, wseq, sizeof wseq);
	T_EQ_INT(kern_paged_rope_attention(G, gq, gkr, gvr, gpos, gseq, m, H, KVH, hd, 1e4f, &gkv,
					   0.125f, gout), 0);
	T_EQ_INT(kern_paged_rope_attention(C, zq, zk, zk, wpos, wseq, m, H, KVH, hd, 1e4f, &ckv,
					   0.125f, zo), 0);
	free(zq); free(zk); free(zo);
	T_EQ_INT(kern_graph_begin(G), 0);
	kern_copy_d2d(G, gq, gq0, m * H * hd * 4);   /* q and k are scratch: fresh copies */
	kern_copy_d2d(G, gkr, gk0, m * kvd * 4);
	kern_paged_rope_attention(G, gq, gkr, gvr, gpos, gseq, m, H, KVH, hd, 1e4f, &gkv, 0.125f, gout);
	kern_graph *g = NULL;
	T_EQ_INT(kern_graph_end(G, &g), 0);
	int32_t steps[3][2][4] = {{{5, 17, 0, 130}, {0, 1, 2, 3}},
				  {{6, 159, 1, 131}, {0, 3, 2, 1}},
				  {{31, 32, 47, 2}, {2, 2, 2, 0}}};
	for (int st = 0; st < 3 && g; st++) {
		if (st == 2) {   /* the table changes too */
			table[2 * 10 + 2] = 39;
			table[2 * 10 + 1] = 38;
			kern_copy_h2d(G, gt, table, sizeof table);
		}
		float *q = rnd(m * H * hd, 1), *k = rnd(m * kvd, 1), *v = rnd(m * kvd, 1);
		float *out = malloc(m * H * hd * 4);
		kern_copy_h2d(G, gq0, q, m * H * hd * 4);
		kern_copy_h2d(G, gk0, k, m * kvd * 4);
		kern_copy_h2d(G, gvr, v, m * kvd * 4);
		kern_copy_h2d(G, gpos, steps[st][0], m * 4);
		kern_copy_h2d(G, gseq, steps[st][1], m * 4);
		T_EQ_INT(kern_graph_launch(G, g), 0);
		T_EQ_INT(kern_paged_rope_attention(C, q, k, v, steps[st][0], steps[st][1], m, H, KVH, hd,
						   1e4f, &ckv, 0.125f, out), 0);
		float *go = down(gout, m * H * hd * 4);
		char what[64];
		snprintf(what, sizeof what, "cuda paged graph step %d", st);
		T_CHECK(close_f(go, out, m * H * hd, 4e-3, 1e-2, what));
		free(go); free(q); free(k); free(v); free(out);
	}
	kern_graph_free(G, g);
	kern_free(G, gk); kern_free(G, gv); kern_free(G, gt); kern_free(G, gq); kern_free(G, gkr);
	kern_free(G, gvr); kern_free(G, gpos); kern_free(G, gseq); kern_free(G, gout);
	kern_free(G, gq0); kern_free(G, gk0);
	free(hk); free(hv);
}

static void test_cuda_gather_sample_rows(void)
{
	if (!open_devs())
		T_SKIP("no GPU");
	int64_t dim = 1003;
	float *x = rnd(12 * dim, 1), *yc = malloc(7 * dim * 4);
	int32_t rows[7] = {11, 0, 5, 5, 2, 9, 1};
	kern_gather_rows(C, x, dim, rows, 7, yc);
	void *dx = up(x, 12 * dim * 4), *dr = up(rows, sizeof rows), *dy = poisoned(7 * dim * 4);
	T_EQ_INT(kern_gather_rows(G, dx, dim, dr, 7, dy), 0);
	float *yg = down(dy, 7 * dim * 4);
	T_CHECK(!memcmp(yg, yc, 7 * dim * 4));
	free(yg); free(yc); free(x);
	kern_free(G, dx); kern_free(G, dr); kern_free(G, dy);
	int64_t ns[] = {1000, 32000, 128256};
	for (size_t t = 0; t < sizeof ns / sizeof ns[0]; t++) {
		int64_t n = ns[t];
		float *l = sr_logits(n), lpc[SR_M];
		int32_t tc[SR_M];
		T_EQ_INT(kern_sample_rows(C, l, SR_M, n, SR_TEMP, SR_TOPK, SR_TOPP, SR_U, tc, lpc), 0);
		void *dl = up(l, SR_M * n * 4), *dtemp = up(SR_TEMP, sizeof SR_TEMP);
		void *dtk = up(SR_TOPK, sizeof SR_TOPK), *dtp = up(SR_TOPP, sizeof SR_TOPP);
		void *du = up(SR_U, sizeof SR_U), *dt = poisoned(SR_M * 4), *dlp = poisoned(SR_M * 4);
		T_EQ_INT(kern_sample_rows(G, dl, SR_M, n, dtemp, dtk, dtp, du, dt, dlp), 0);
		int32_t *tg = (int32_t *)down(dt, SR_M * 4);
		float *lg = down(dlp, SR_M * 4);
		int mism = 0;
		for (int i = 0; i < SR_M; i++)
			mism += tg[i] != tc[i];
		T_EQ_INT(mism, 0);
		T_CHECK(close_f(lg, lpc, SR_M, 1e-4, 1e-4, "sample_rows logprob"));
		/* without log-probabilities */
		T_EQ_INT(kern_sample_rows(G, dl, SR_M, n, dtemp, dtk, dtp, du, dt, NULL), 0);
		free(tg);
		tg = (int32_t *)down(dt, SR_M * 4);
		T_CHECK(!memcmp(tg, tc, sizeof tc));
		free(tg); free(lg); free(l);
		kern_free(G, dl); kern_free(G, dtemp); kern_free(G, dtk); kern_free(G, dtp);
		kern_free(G, du); kern_free(G, dt); kern_free(G, dlp);
	}
}

static void test_close(void)
{
	if (G)
		kern_dev_close(G);
	if (C)
		kern_dev_close(C);
	G = C = NULL;
}

void t_main(void)
{
	T_RUN(test_cpu_paged_attention);
	T_RUN(test_cpu_paged_proj);
	T_RUN(test_cpu_gather_rows);
	T_RUN(test_cpu_sample_rows);
	T_RUN(test_bad_args);
	T_RUN(test_cuda_paged_attention);
	T_RUN(test_cuda_paged_proj);
	T_RUN(test_cuda_paged_graph);
	T_RUN(test_cuda_gather_sample_rows);
	T_RUN(test_close);
}

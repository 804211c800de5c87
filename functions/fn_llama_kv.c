/* fn_llama_kv.c — the `llama` kind's KV block pool on the host side: which block holds what.
 * Blocks are reference counted; a sequence owns one reference on each block of its list. A
 * full block may be keyed by a hash of (its parent block's key, its tokens): a later prompt
 * that starts with the same tokens finds the chain of keyed blocks and shares them (prefix
 * caching). A keyed block nobody references stays cached on an LRU list until an allocation
 * needs it; an unkeyed one goes back to the free list. The device memory itself is laid out
 * by fn_llama_step.c; block 0 is its scratch block and never handed out here. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "functions/fn_llama_int.h"

int llama_kv_init(llama_kv *kv, int64_t nblocks, int64_t block, int prefix)
{
	memset(kv, 0, sizeof *kv);
	if (nblocks < 2 || nblocks > INT32_MAX || block < 1)
		return -EINVAL;
	size_t n = (size_t)nblocks;
	uint64_t hb = 1;
	while (hb < (uint64_t)nblocks)
		hb <<= 1;
	kv->nblocks = nblocks;
	kv->block = block;
	kv->prefix = prefix;
	kv->ref = calloc(n, sizeof *kv->ref);
	kv->key = calloc(n, sizeof *kv->key);
	kv->pkey = calloc(n, sizeof *kv->pkey);
	kv->keyed = calloc(n, 1);
	kv->toks = calloc(n * (size_t)block, sizeof *kv->toks);
	kv->fnext = calloc(n, sizeof *kv->fnext);
	kv->lprev = calloc(n, sizeof *kv->lprev);
	kv->lnext = calloc(n, sizeof *kv->lnext);
	kv->hnext = calloc(n, sizeof *kv->hnext);
	kv->bucket = malloc((size_t)hb * sizeof *kv->bucket);
	if (!kv->ref || !kv->key || !kv->pkey || !kv->keyed || !kv->toks || !kv->fnext ||
	    !kv->lprev || !kv->lnext || !kv->hnext || !kv->bucket) {
		llama_kv_free(kv);
		return -ENOMEM;
	}
	kv->hmask = hb - 1;
	for (uint64_t i = 0; i < hb; i++)
		kv->bucket[i] = -1;
	kv->free_head = -1;
	for (int64_t b = nblocks - 1; b >= 1; b--) {   /* lowest ids first out */
		kv->fnext[b] = kv->free_head;
		kv->free_head = (int32_t)b;
	}
	kv->nfree = nblocks - 1;
	kv->lru_head = kv->lru_tail = -1;
	kv->ref[0] = 1;   /* scratch: never free */
	return 0;
}

void llama_kv_free(llama_kv *kv)
{
	free(kv->ref);
	free(kv->key);
	free(kv->pkey);
	free(kv->keyed);
	free(kv->toks);
	free(kv->fnext);
	free(kv->lprev);
	free(kv->lnext);
	free(kv->hnext);
	free(kv->bucket);
	memset(kv, 0, sizeof *kv);
}

int64_t llama_kv_avail(const llama_kv *kv) { return kv->nfree + kv->nlru; }

int64_t llama_kv_used(const llama_kv *kv) { return kv->nblocks - 1 - kv->nfree - kv->nlru; }

static void lru_unlink(llama_kv *kv, int32_t b)
{
	int32_t p = kv->lprev[b], n = kv->lnext[b];
	if (p >= 0)
		kv->lnext[p] = n;
	else
		kv->lru_head = n;
	if (n >= 0)
		kv->lprev[n] = p;
	else
		kv->lru_tail = p;
	kv->nlru--;
}

static void hash_unlink(llama_kv *kv, int32_t b)
{
	int32_t *pp = &kv->bucket[kv->key[b] & kv->hmask];
	while (*pp >= 0 && *pp != b)
		pp = &kv->hnext[*pp];
	if (*pp == b)
		*pp = kv->hnext[b];
	kv->keyed[b] = 0;
}

int32_t llama_kv_alloc(llama_kv *kv)
{
	int32_t b = kv->free_head;
	if (b >= 0) {
		kv->free_head = kv->fnext[b];
		kv->nfree--;
	} else if ((b = kv->lru_head) >= 0) {   /* evict the least recently used cached block */
		lru_unlink(kv, b);
		hash_unlink(kv, b);
	} else {
		return -1;
	}
	kv->ref[b] = 1;
	return b;
}

void llama_kv_put(llama_kv *kv, int32_t b)
{
	if (b <= 0 || b >= kv->nblocks || kv->ref[b] <= 0)
		return;
	if (--kv->ref[b] > 0)
		return;
	if (kv->keyed[b]) {
		kv->lprev[b] = kv->lru_tail;
		kv->lnext[b] = -1;
		if (kv->lru_tail >= 0)
			kv->lnext[kv->lru_tail] = b;
		else
			kv->lru_head = b;
		kv->lru_tail = b;
		kv->nlru++;
	} else {
		kv->fnext[b] = kv->free_head;
		kv->free_head = b;
		kv->nfree++;
	}
}

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	return x ^ (x >> 33);
}

uint64_t llama_kv_hash(uint64_t parent, const int32_t *toks, int64_t n)
{
	uint64_t h = mix(parent ^ 0x9e3779b97f4a7c15ull);
	for (int64_t i = 0; i < n; i++)
		h = mix(h ^ ((uint64_t)(uint32_t)toks[i] + 0x632be59bd9b4e019ull * (uint64_t)(i + 1)));
	return h;
}

int32_t llama_kv_find(const llama_kv *kv, uint64_t key, uint64_t parent, const int32_t *toks)
{
	if (!kv->prefix)
		return -1;
	for (int32_t b = kv->bucket[key & kv->hmask]; b >= 0; b = kv->hnext[b])
		if (kv->key[b] == key && kv->pkey[b] == parent &&
		    !memcmp(kv->toks + (size_t)b * kv->block, toks, (size_t)kv->block * 4))
			return b;
	return -1;
}

void llama_kv_take(llama_kv *kv, int32_t b)
{
	if (kv->ref[b]++ == 0)
		lru_unlink(kv, b);
}

void llama_kv_publish(llama_kv *kv, int32_t b, uint64_t key, uint64_t parent,
		      const int32_t *toks)
{
	if (!kv->prefix || b <= 0 || kv->keyed[b] || llama_kv_find(kv, key, parent, toks) >= 0)
		return;
	kv->key[b] = key;
	kv->pkey[b] = parent;
	kv->keyed[b] = 1;
	memcpy(kv->toks + (size_t)b * kv->block, toks, (size_t)kv->block * 4);
	int32_t *head = &kv->bucket[key & kv->hmask];
	kv->hnext[b] = *head;
	*head = b;
}

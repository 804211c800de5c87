/* rt_tok_cache.c — per-snapshot text facts, cached (rt_tok_cache.h). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "runtime/tok/rt_tok.h"
#include "runtime/tok/rt_tok_cache.h"
#include "snapshot/snap.h"

static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;
static rt_tok_model *cache[RT_TOK_CACHE];
static uint64_t cache_clock;

void rt_tok_model_unref(rt_tok_model *m)
{
	if (!m)
		return;
	pthread_mutex_lock(&cache_mu);
	int last = --m->refs == 0;
	pthread_mutex_unlock(&cache_mu);
	if (last) {
		tok_free(m->tok);
		free(m);
	}
}

static double cfg_num(const json_t *o, const char *k, double def)
{
	const json_t *v = json_object_get(o, k);
	return json_is_number(v) ? json_number_value(v) : def;
}

/* reads what the handlers need from a snapshot: tokenizer, context, vocabulary, eos ids */
rt_tok_model *rt_tok_model_read(const char *path, const struct stat *st)
{
	rt_tok_model *m = calloc(1, sizeof *m);
	if (!m)
		return NULL;
	snprintf(m->path, sizeof m->path, "%s", path);
	m->dev = st->st_dev;
	m->ino = st->st_ino;
	m->size = st->st_size;
	m->mtime = st->st_mtim;
	m->refs = 1;
	snap_file *f = NULL;
	char err[256];
	if (snap_open(&f, path, err, sizeof err) < 0) {
		m->err_rc = -EIO;
		snprintf(m->err, sizeof m->err, "snapshot unreadable: %s", err);
		return m;
	}
	json_t *meta = json_loads(snap_metadata_json(f), 0, NULL);
	const json_t *c = json_object_get(meta, "config");
	if (!json_is_object(c))
		c = meta;
	double maxpos = cfg_num(c, "max_position_embeddings", 2048);
	double cap = cfg_num(meta, "max_context", RT_TOK_DEFAULT_CTX);
	if (maxpos >= 1 && maxpos < cap)
		cap = maxpos;
	m->ctx = cap >= 1 && cap < 1e9 ? (int64_t)cap : RT_TOK_DEFAULT_CTX;
	double v = cfg_num(c, "vocab_size", 0);
	m->vocab = v >= 1 && v < 1e9 ? (int64_t)v : 0;
	const json_t *eos = json_object_get(c, "eos_token_id");
	if (json_is_integer(eos))
		m->eos[m->n_eos++] = (int32_t)json_integer_value(eos);
	for (size_t i = 0; json_is_array(eos) && i < json_array_size(eos) && m->n_eos < 8; i++)
		if (json_is_integer(json_array_get(eos, i)))
			m->eos[m->n_eos++] = (int32_t)json_integer_value(json_array_get(eos, i));
	int rc = rt_tok_from_file(f, meta, &m->tok, err, sizeof err);   /* attachment, else meta */
	snap_close(f);
	json_decref(meta);
	if (rc < 0) {
		m->tok = NULL;
		m->err_rc = rc;
		snprintf(m->err, sizeof m->err, "%s", err);
	}
	return m;
}

static int model_matches(const rt_tok_model *m, const char *path, const struct stat *st)
{
	return m && strcmp(m->path, path) == 0 && m->dev == st->st_dev && m->ino == st->st_ino &&
	       m->size == st->st_size && m->mtime.tv_sec == st->st_mtim.tv_sec &&
	       m->mtime.tv_nsec == st->st_mtim.tv_nsec;
}

/* the cached model of the snapshot file (path, as stat says it is now): a new reference, or
 * NULL when it is not loaded */
rt_tok_model *rt_tok_model_find(const char *path, const struct stat *st)
{
	rt_tok_model *found = NULL;
	pthread_mutex_lock(&cache_mu);
	for (int i = 0; i < RT_TOK_CACHE && !found; i++)
		if (model_matches(cache[i], path, st)) {
			found = cache[i];
			found->refs++;
			found->used = ++cache_clock;
		}
	pthread_mutex_unlock(&cache_mu);
	return found;
}

/* puts m (rt_tok_model_read's, reference taken over) into the cache, dropping the least recently
 * used entry; returns the caller's reference to the cached model (an equal one loaded by a
 * concurrent request wins, m is then released) */
rt_tok_model *rt_tok_model_insert(rt_tok_model *m)
{
	struct stat st = {.st_dev = m->dev, .st_ino = m->ino, .st_size = m->size, .st_mtim = m->mtime};
	rt_tok_model *have = rt_tok_model_find(m->path, &st);
	if (have) {
		rt_tok_model_unref(m);
		return have;
	}
	pthread_mutex_lock(&cache_mu);
	int slot = 0;
	for (int i = 0; i < RT_TOK_CACHE; i++)
		if (!cache[i] || (cache[slot] && cache[i]->used < cache[slot]->used))
			slot = i;
	rt_tok_model *old = cache[slot];
	cache[slot] = m;
	m->refs++;
	m->used = ++cache_clock;
	pthread_mutex_unlock(&cache_mu);
	rt_tok_model_unref(old);
	return m;
}


/* snap_sink.c — the host-side sinks of the restore pipeline: a caller's host buffer
 * (snap_restore_host), and a ring of scratch buffers whose commit hook either does nothing
 * (snap_verify) or writes the bytes somewhere (unpack, snap_restore_scratch). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include "snapshot/snap_int.h"
#include "snapshot/snap_sinks.h"

/* ---- host buffer ---- */

typedef struct host_sink { uint8_t *base; size_t size; } host_sink;

static int host_acquire(void *ctx, uint64_t off, size_t len, void **dst, int *slot)
{
	host_sink *h = ctx;
	if (off > h->size || len > h->size - off)
		return -ERANGE;
	*dst = h->base + off;
	*slot = 0;
	return 0;
}
static int host_commit(void *ctx, uint64_t off, size_t len, void *dst, int slot) { return 0; }
static void host_release(void *ctx, int slot) {}
static int host_finish(void *ctx, int ok, double *copy_s) { *copy_s = 0; return 0; }

int snap_restore_host(snap_file *f, void *dst, size_t dst_size, const snap_restore_opts *o,
		      snap_restore_stats *stats, char *err, size_t errlen)
{
	if (dst_size < f->image_size)
		return snap_errf(err, errlen, -ERANGE, "%s: destination of %zu bytes for a %llu-byte image",
				 f->path, dst_size, (unsigned long long)f->image_size);
	host_sink h = {dst, dst_size};
	snap_sink s = {.ctx = &h, .acquire = host_acquire, .commit = host_commit,
		       .release = host_release, .finish = host_finish};
	return snap_restore(f, &s, o, stats, err, errlen);
}

/* ---- scratch ring ---- */

typedef struct scratch_sink {
	uint8_t *mem;
	size_t slot_size;
	int n, *free_slots, n_free;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	snap_scratch_fn fn;
	void *user;
} scratch_sink;

static int scr_acquire(void *ctx, uint64_t off, size_t len, void **dst, int *slot)
{
	scratch_sink *s = ctx;
	if (len > s->slot_size)
		return -ERANGE;
	pthread_mutex_lock(&s->mu);
	while (!s->n_free)
		pthread_cond_wait(&s->cv, &s->mu);
	*slot = s->free_slots[--s->n_free];
	pthread_mutex_unlock(&s->mu);
	*dst = s->mem + (size_t)*slot * s->slot_size;
	return 0;
}

static void scr_release(void *ctx, int slot)
{
	scratch_sink *s = ctx;
	pthread_mutex_lock(&s->mu);
	s->free_slots[s->n_free++] = slot;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

static int scr_commit(void *ctx, uint64_t off, size_t len, void *dst, int slot)
{
	scratch_sink *s = ctx;
	int rc = s->fn ? s->fn(s->user, off, dst, len) : 0;
	scr_release(ctx, slot);
	return rc;
}

static int scr_finish(void *ctx, int ok, double *copy_s) { *copy_s = 0; return 0; }

int snap_restore_scratch(snap_file *f, snap_scratch_fn fn, void *user, const snap_restore_opts *o,
			 snap_restore_stats *stats, char *err, size_t errlen)
{
	scratch_sink s = {.fn = fn, .user = user};
	snap_restore_opts oo = {0};
	int rc;
	if (o)
		oo = *o;
	if (oo.threads <= 0) 
		oo.threads = snap_default_threads();
	s.n = oo.threads + 1;
	s.slot_size = f->chunk_size;
	s.mem = malloc(s.slot_size * (size_t)s.n);
	s.free_slots = malloc(sizeof(int) * (size_t)s.n);
	if (!s.mem || !s.free_slots) {
		free(s.mem);
		free(s.free_slots);
		return snap_errf(err, errlen, -ENOMEM, "out of memory for scratch buffers");
	}
	for (int i = 0; i < s.n; i++)
		s.free_slots[s.n_free++] = i;
	pthread_mutex_init(&s.mu, NULL);
	pthread_cond_init(&s.cv, NULL);
	snap_sink sk = {.ctx = &s, .acquire = scr_acquire, .commit = scr_commit,
			.release = scr_release, .finish = scr_finish};
	rc = snap_restore(f, &sk, &oo, stats, err, errlen);
	pthread_mutex_destroy(&s.mu);
	pthread_cond_destroy(&s.cv);
	free(s.mem);
	free(s.free_slots);
	return rc;
}

int snap_verify(snap_file *f, const snap_restore_opts *o, snap_restore_stats *stats,
		long *bad_chunk, char *err, size_t errlen)
{
	snap_restore_opts oo = {0};
	if (o)
		oo = *o;
	oo.no_verify = 0;
	if (!oo.progress_phase)
		oo.progress_phase = "verifying";
	int rc = snap_restore_scratch(f, NULL, NULL, &oo, stats, err, errlen);
	if (bad_chunk)
		*bad_chunk = rc ? f->last_bad_chunk : -1;
	return rc;
}

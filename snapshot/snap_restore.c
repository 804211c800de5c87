/* snap_restore.c — the restore pipeline: chunk reads -> N decode threads (zstd, plane
 * reassembly, XXH3 check) -> a sink (host buffer, GPU staging ring, file, or nothing).
 *
 * Reads: with io_uring the calling thread keeps up to queue_depth chunk reads in flight into a
 * fixed set of 4 KiB-aligned buffers (O_DIRECT when the filesystem takes it) and hands
 * completed buffers to the decoders; with pread each decode thread reads its own chunks; with
 * mmap (a file already in the page cache) the decoders read the page cache directly, saving a
 * copy, under a SIGBUS guard so that a file truncated behind our back is an error. The
 * mode is chosen at run time (see snap_io_mode) and every fallback is reported in the stats:
 * io_uring refused (ENOSYS, EPERM: seccomp, old kernels, sandboxes) -> pread; O_DIRECT refused
 * (EINVAL: tmpfs, some FUSE and overlay filesystems) -> buffered io_uring. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <liburing.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>
#include <xxhash.h>
#include "snapshot/snap_int.h"

typedef struct rpipe {
	snap_file *f;
	snap_sink *sink;
	snap_restore_opts o;
	snap_io_mode mode;
	int fd;                    /* the fd reads use (O_DIRECT or not) */
	int direct;
	/* read buffers (io_uring modes) */
	size_t buf_size;
	int n_bufs;
	uint8_t *bufs;
	int *free_bufs, n_free;
	int *ready_chunk, *ready_buf, ready_head, ready_n;   /* FIFO of read chunks */
	int reading_done;
	/* pread and mmap modes */
	size_t next_chunk;
	const uint8_t *map;        /* mmap mode: the whole file */
	pthread_mutex_t mu;
	pthread_cond_t cv_ready, cv_free;
	/* outcome */
	int rc;
	long bad_chunk;
	char err[512];
	double read_busy, decode_busy;
	uint64_t stored_bytes;
	/* progress (o.progress): bytes handed to the sink, the next figure worth a call, and the
	 * last figure told (under prog_mu, taken with trylock so that no decoder waits on it) */
	_Atomic uint64_t done_bytes, next_report;
	uint64_t reported, report_step;
	pthread_mutex_t prog_mu;
} rpipe;

/* progress_add counts len more bytes delivered and tells the hook when another step of the
 * image is done; the final done == total is left to the calling thread (snap_restore). */
static void progress_add(rpipe *p, uint64_t len)
{
	uint64_t done = atomic_fetch_add_explicit(&p->done_bytes, len, memory_order_relaxed) + len;
	if (done < atomic_load_explicit(&p->next_report, memory_order_relaxed) ||
	    pthread_mutex_trylock(&p->prog_mu))
		return;
	done = atomic_load_explicit(&p->done_bytes, memory_order_relaxed);
	if (done > p->reported && done < p->f->image_size) {
		p->reported = done;
		atomic_store_explicit(&p->next_report, done + p->report_step, memory_order_relaxed);
		p->o.progress(p->o.progress_user, p->o.progress_phase, done, p->f->image_size);
	}
	pthread_mutex_unlock(&p->prog_mu);
}

static void pipe_fail(rpipe *p, int rc, long chunk, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void pipe_fail(rpipe *p, int rc, long chunk, const char *fmt, ...)
{
	pthread_mutex_lock(&p->mu);
	if (!p->rc) {
		va_list ap;
		p->rc = rc;
		p->bad_chunk = chunk;
		va_start(ap, fmt);
		vsnprintf(p->err, sizeof p->err, fmt, ap);
		va_end(ap);
	}
	pthread_cond_broadcast(&p->cv_ready);
	pthread_cond_broadcast(&p->cv_free);
	pthread_mutex_unlock(&p->mu);
}

static int pipe_failed(rpipe *p)
{
	pthread_mutex_lock(&p->mu);
	int rc = p->rc;
	pthread_mutex_unlock(&p->mu);
	return rc;
}

typedef struct worker worker;

/* decode_one decodes chunk ci from src into the sink; on failure records the error. */
static int decode_one(rpipe *p, snap_codec_ctx *cc, size_t ci, const uint8_t *src, double *busy,
		      volatile int *held)
{
	const snap_chunk *c = &p->f->chunks[ci];
	char where[600], msg[256];
	void *dst;
	int slot, rc;

	rc = p->sink->acquire(p->sink->ctx, c->raw_offset, c->raw_size, &dst, &slot);
	if (rc) {
		snap_chunk_where(p->f, ci, where, sizeof where);
		pipe_fail(p, rc, -1, "%s: sink: %s", where, p->sink->err[0] ? p->sink->err : strerror(-rc));
		return rc;
	}
	*held = slot;
	double t0 = snap_now();
	uint64_t h = 0;
	rc = snap_codec_decode(cc, c, src, dst, p->o.no_verify ? NULL : &h, msg, sizeof msg);
	if (!rc && !p->o.no_verify && h != c->xxh3) {
		snprintf(msg, sizeof msg, "checksum mismatch (XXH3 of the decoded bytes)");
		rc = -EBADMSG;
	}
	*busy += snap_now() - t0;
	*held = -1;
	if (rc) {
		p->sink->release(p->sink->ctx, slot);
		snap_chunk_where(p->f, ci, where, sizeof where);
		pipe_fail(p, rc, (long)ci, "%s: %s", where, msg);
		return rc;
	}
	rc = p->sink->commit(p->sink->ctx, c->raw_offset, c->raw_size, dst, slot);
	if (rc) {
		snap_chunk_where(p->f, ci, where, sizeof where);
		pipe_fail(p, rc, -1, "%s: sink: %s", where, p->sink->err[0] ? p->sink->err : strerror(-rc));
	} else if (p->o.progress) {
		progress_add(p, c->raw_size);
	}
	return rc;
}

struct worker {
	rpipe *p;
	pthread_t th;
	double read_busy, decode_busy;
	uint64_t stored;
	volatile int held;         /* sink slot held while decoding, -1 if none */
};

/* claim_chunk gives the next chunk to a pread or mmap decoder; 0 when none is left or the
 * restore failed. */
static int claim_chunk(rpipe *p, size_t *ci)
{
	pthread_mutex_lock(&p->mu);
	int ok = !p->rc && p->next_chunk < p->f->n_chunks;
	if (ok)
		*ci = p->next_chunk++;
	pthread_mutex_unlock(&p->mu);
	return ok;
}

/* SIGBUS guard for mmap reads: a decoder sets bus_jmp while it reads the mapping; a SIGBUS
 * then (the file was truncated after open) jumps back and becomes an error. Other SIGBUS
 * go to the handler that was installed before ours. */
static __thread sigjmp_buf *bus_jmp;
static struct sigaction bus_old;
static pthread_once_t bus_once = PTHREAD_ONCE_INIT;

static void bus_handler(int sig, siginfo_t *si, void *uc)
{
	if (bus_jmp)
		siglongjmp(*bus_jmp, 1);
	if (bus_old.sa_flags & SA_SIGINFO)
		bus_old.sa_sigaction(sig, si, uc);
	else if (bus_old.sa_handler != SIG_IGN && bus_old.sa_handler != SIG_DFL)
		bus_old.sa_handler(sig);
	else {
		signal(SIGBUS, SIG_DFL);
		raise(SIGBUS);
	}
}

static void bus_install(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = bus_handler;
	sa.sa_flags = SA_SIGINFO | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, &bus_old);
}

/* mmap_loop: decode chunks straight from the mapped file (page cache), claiming chunk indices
 * like the pread loop. */
static void mmap_loop(worker *w, snap_codec_ctx *cc)
{
	rpipe *p = w->p;
	sigjmp_buf jb;
	volatile size_t ci = 0;

	if (sigsetjmp(jb, 0)) {
		char where[600];
		bus_jmp = NULL;
		if (w->held >= 0)
			p->sink->release(p->sink->ctx, w->held);
		snap_chunk_where(p->f, ci, where, sizeof where);
		pipe_fail(p, -EIO, (long)ci, "%s: the file changed while it was being read (SIGBUS)", where);
		return;
	}
	size_t next;
	while (claim_chunk(p, &next)) {
		ci = next;
		const snap_chunk *c = &p->f->chunks[ci];
		w->stored += c->stored_size;
		bus_jmp = &jb;
		int rc = decode_one(p, cc, ci, p->map + c->file_offset, &w->decode_busy, &w->held);
		bus_jmp = NULL;
		if (rc)
			break;
	}
}

static void *decode_worker(void *arg)
{
	worker *w = arg;
	rpipe *p = w->p;
	snap_codec_ctx *cc = snap_codec_ctx_new(p->f->chunk_size, INT32_MIN);
	uint8_t *own = NULL;

	if (!cc) {
		pipe_fail(p, -ENOMEM, -1, "out of memory for decoder state");
		return NULL;
	}
	w->held = -1;
	if (p->mode == SNAP_IO_MMAP) {
		mmap_loop(w, cc);
		goto out;
	}
	if (p->mode == SNAP_IO_PREAD) {
		own = malloc(p->f->max_stored ? p->f->max_stored : 1);
		if (!own) {
			pipe_fail(p, -ENOMEM, -1, "out of memory for a read buffer");
			goto out;
		}
		size_t ci;
		while (claim_chunk(p, &ci)) {
			const snap_chunk *c = &p->f->chunks[ci];
			double t0 = snap_now();
			int rc = snap_pread_full(p->fd, own, c->stored_size, c->file_offset);
			w->read_busy += snap_now() - t0;
			if (rc) {
				char where[600];
				snap_chunk_where(p->f, ci, where, sizeof where);
				pipe_fail(p, rc == -ENODATA ? -EBADMSG : rc, (long)ci, "%s: read: %s", where,
					  rc == -ENODATA ? "file ends before the chunk" : strerror(-rc));
				break;
			}
			w->stored += c->stored_size;
			if (decode_one(p, cc, ci, own, &w->decode_busy, &w->held))
				break;
		}
		goto out;
	}
	for (;;) {
		pthread_mutex_lock(&p->mu);
		while (!p->ready_n && !p->reading_done && !p->rc)
			pthread_cond_wait(&p->cv_ready, &p->mu);
		if (p->rc || !p->ready_n) {
			pthread_mutex_unlock(&p->mu);
			break;
		}
		int ci = p->ready_chunk[p->ready_head], bi = p->ready_buf[p->ready_head];
		p->ready_head = (p->ready_head + 1) % p->n_bufs;
		p->ready_n--;
		pthread_mutex_unlock(&p->mu);
		int rc = decode_one(p, cc, (size_t)ci, p->bufs + (size_t)bi * p->buf_size, &w->decode_busy, &w->held);
		pthread_mutex_lock(&p->mu);
		p->free_bufs[p->n_free++] = bi;
		pthread_cond_signal(&p->cv_free);
		pthread_mutex_unlock(&p->mu);
		if (rc)
			break;
	}
out:
	free(own);
	snap_codec_ctx_free(cc);
	return NULL;
}

/* ---- io_uring reader (runs on the calling thread) ---- */

typedef struct rbuf { int chunk; uint32_t got, want; } rbuf;

static void queue_read(struct io_uring *ring, rpipe *p, rbuf *rb, int bi)
{
	const snap_chunk *c = &p->f->chunks[rb[bi].chunk];
	uint64_t off = c->file_offset + rb[bi].got;
	/* O_DIRECT needs aligned lengths: read whole pages (the file continues past every chunk
	 * with the next chunk or the index, and a read past the end is only short) */
	size_t len = p->direct ? snap_round_up(c->stored_size, SNAP_PAGE) - rb[bi].got
			       : c->stored_size - rb[bi].got;
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
	io_uring_prep_read(sqe, p->fd, p->bufs + (size_t)bi * p->buf_size + rb[bi].got, (unsigned)len, off);
	io_uring_sqe_set_data64(sqe, (uint64_t)bi);
}

static int uring_reader(rpipe *p, struct io_uring *ring, snap_restore_stats *st)
{
	size_t n = p->f->n_chunks, next = 0;
	int inflight = 0, qd = p->o.queue_depth;
	rbuf *rb = calloc((size_t)p->n_bufs, sizeof *rb);
	char where[600];

	if (!rb) {
		pipe_fail(p, -ENOMEM, -1, "out of memory");
		return -ENOMEM;
	}
	while ((next < n || inflight) && !pipe_failed(p)) {
		pthread_mutex_lock(&p->mu);
		while (next < n && inflight < qd && p->n_free) {
			int bi = p->free_bufs[--p->n_free];
			rb[bi].chunk = (int)next++;
			rb[bi].got = 0;
			rb[bi].want = p->f->chunks[rb[bi].chunk].stored_size;
			queue_read(ring, p, rb, bi);
			inflight++;
		}
		if (!inflight) {   /* every buffer is with the decoders */
			while (!p->n_free && !p->rc)
				pthread_cond_wait(&p->cv_free, &p->mu);
			pthread_mutex_unlock(&p->mu);
			continue;
		}
		pthread_mutex_unlock(&p->mu);
		double t0 = snap_now();
		int r = io_uring_submit_and_wait(ring, 1);
		if (r < 0 && r != -EINTR) {
			pipe_fail(p, r, -1, "io_uring_submit: %s", strerror(-r));
			break;
		}
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;
		int resubmit = 0;
		p->read_busy += snap_now() - t0;
		io_uring_for_each_cqe(ring, head, cqe) {
			int bi = (int)io_uring_cqe_get_data64(cqe);
			int res = cqe->res;
			seen++;
			int ci = rb[bi].chunk;
			if (res == -EINVAL && p->direct) {
				/* O_DIRECT refused at read time: reopen buffered, retry this read */
				int fd = snap_open_regular(p->f->path, 0);
				if (fd < 0) {
					pipe_fail(p, fd, -1, "%s: reopen: %s", p->f->path,
						  fd == -EINVAL ? "not a regular file" : strerror(-fd));
					continue;
				}
				close(p->fd);
				p->fd = fd;
				p->direct = 0;
				p->mode = SNAP_IO_URING;
				snprintf(st->io_note, sizeof st->io_note, "O_DIRECT read refused (EINVAL): buffered io_uring");
				rb[bi].got = 0;
				queue_read(ring, p, rb, bi);
				resubmit++;
				continue;
			}
			if (res == -EAGAIN || res == -EINTR) {
				queue_read(ring, p, rb, bi);
				resubmit++;
				continue;
			}
			if (res <= 0) {
				snap_chunk_where(p->f, (size_t)ci, where, sizeof where);
				pipe_fail(p, res ? res : -EBADMSG, res ? -1 : ci, "%s: read: %s", where,
					  res ? strerror(-res) : "file ends before the chunk");
				inflight--;
				continue;
			}
			rb[bi].got += (uint32_t)res;
			if (rb[bi].got < rb[bi].want) {   /* short read: ask for the rest */
				queue_read(ring, p, rb, bi);
				resubmit++;
				continue;
			}
			inflight--;
			p->stored_bytes += rb[bi].want;
			pthread_mutex_lock(&p->mu);
			int tail = (p->ready_head + p->ready_n) % p->n_bufs;
			p->ready_chunk[tail] = ci;
			p->ready_buf[tail] = bi;
			p->ready_n++;
			pthread_cond_signal(&p->cv_ready);
			pthread_mutex_unlock(&p->mu);
		}
		io_uring_cq_advance(ring, seen);
		if (resubmit)
			io_uring_submit(ring);
	}
	/* drain what is still in flight before the buffers go away */
	while (inflight > 0) {
		struct io_uring_cqe *cqe;
		if (io_uring_wait_cqe(ring, &cqe) < 0)
			break;
		io_uring_cqe_seen(ring, cqe);
		inflight--;
	}
	free(rb);
	return 0;
}

/* page_cache_fraction estimates how much of the data section is in the page cache. */
static double page_cache_fraction(snap_file *f)
{
	if (f->fd < 0 || f->data_size == 0)
		return 0;
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	size_t len = (size_t)(f->data_offset + f->data_size);
	void *m = mmap(NULL, len, PROT_READ, MAP_SHARED, f->fd, 0);
	if (m == MAP_FAILED)
		return 0;
	size_t np = (len + pg - 1) / pg, in = 0;
	unsigned char *vec = malloc(np);
	if (vec && mincore(m, len, vec) == 0)
		for (size_t i = 0; i < np; i++)
			in += vec[i] & 1;
	free(vec);
	munmap(m, len);
	return np ? (double)in / (double)np : 0;
}

int snap_restore(snap_file *f, snap_sink *sink, const snap_restore_opts *o,
		 snap_restore_stats *stats, char *err, size_t errlen)
{
	snap_restore_stats st_local;
	snap_restore_stats *st = stats ? stats : &st_local;
	rpipe p;
	worker *ws = NULL;
	int n_started = 0, rc = 0, ring_ok = 0;
	struct io_uring ring;
	double t0 = snap_now();

	memset(st, 0, sizeof *st);
	memset(&p, 0, sizeof p);
	p.f = f;
	p.sink = sink;
	p.fd = -1;
	p.bad_chunk = -1;
	if (o)
		p.o = *o;
	if (p.o.threads <= 0) 
		p.o.threads = snap_default_threads();
	if (p.o.queue_depth <= 0)
		p.o.queue_depth = 32;
	if (p.o.threads > (int)f->n_chunks)
		p.o.threads = f->n_chunks ? (int)f->n_chunks : 1;
	if (!p.o.progress_phase)
		p.o.progress_phase = "restoring";
	p.report_step = f->image_size / 128 ? f->image_size / 128 : 1;
	atomic_init(&p.done_bytes, 0);
	atomic_init(&p.next_report, p.report_step);
	sink->err[0] = 0;
	pthread_mutex_init(&p.prog_mu, NULL);
	pthread_mutex_init(&p.mu, NULL);
	pthread_cond_init(&p.cv_ready, NULL);
	pthread_cond_init(&p.cv_free, NULL);

	/* choose how to read */
	p.mode = p.o.io;
	if (f->fd < 0) {
		rc = snap_errf(err, errlen, -EINVAL, "restore needs a snapshot opened from a file");
		goto out;
	}
	if (p.mode == SNAP_IO_AUTO) {
		double frac = page_cache_fraction(f);
		if (frac >= 0.9) {
			p.mode = SNAP_IO_MMAP;
			snprintf(st->io_note, sizeof st->io_note, "%.0f%% in page cache: decoding from the mapping",
				 frac * 100);
		} else {
			p.mode = SNAP_IO_DIRECT;
		}
	}
	if (p.mode == SNAP_IO_DIRECT) {
		p.fd = snap_open_regular(f->path, O_DIRECT);
		if (p.fd >= 0) {
			p.direct = 1;
		} else {   /* tmpfs refuses O_DIRECT with EINVAL; a non-regular file fails below */
			snprintf(st->io_note, sizeof st->io_note, "O_DIRECT refused by the filesystem (%s): buffered",
				 strerror(-p.fd));
			p.mode = SNAP_IO_URING;
		}
	}
	if (p.fd < 0)
		p.fd = snap_open_regular(f->path, 0);
	if (p.fd < 0) {
		rc = snap_errf(err, errlen, p.fd, "%s: %s", f->path,
			       p.fd == -EINVAL ? "not a regular file (replaced since it was opened?)" : strerror(-p.fd));
		goto out;
	}
	if (p.mode == SNAP_IO_MMAP) {
		void *m = f->file_size ? mmap(NULL, f->file_size, PROT_READ, MAP_SHARED, p.fd, 0) : MAP_FAILED;
		if (m == MAP_FAILED) {
			snprintf(st->io_note, sizeof st->io_note, "mmap refused (%s): pread", strerror(errno));
			p.mode = SNAP_IO_PREAD;
		} else {
			p.map = m;
			pthread_once(&bus_once, bus_install);
		}
	}
	if (p.mode != SNAP_IO_PREAD && p.mode != SNAP_IO_MMAP) {
		p.n_bufs = p.o.queue_depth + p.o.threads;
		p.buf_size = snap_round_up((size_t)f->max_stored + 1, SNAP_PAGE);
		int r = io_uring_queue_init((unsigned)p.o.queue_depth * 2, &ring, 0);
		if (r < 0) {
			snprintf(st->io_note, sizeof st->io_note, "io_uring unavailable (%s): pread", strerror(-r));
			p.mode = SNAP_IO_PREAD;
			if (p.direct) {   /* pread into unaligned buffers: no O_DIRECT */
				close(p.fd);
				p.direct = 0;
				p.fd = snap_open_regular(f->path, 0);
				if (p.fd < 0) {
					rc = snap_errf(err, errlen, p.fd, "%s: %s", f->path,
						       p.fd == -EINVAL ? "not a regular file" : strerror(-p.fd));
					goto out;
				}
			}
		} else {
			ring_ok = 1;
			/* page-aligned for O_DIRECT; populated in one go rather than faulted per page */
			p.bufs = mmap(NULL, p.buf_size * (size_t)p.n_bufs, PROT_READ | PROT_WRITE,
				      MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
			if (p.bufs == MAP_FAILED)
				p.bufs = NULL;
			p.free_bufs = malloc(sizeof(int) * (size_t)p.n_bufs);
			p.ready_chunk = malloc(sizeof(int) * (size_t)p.n_bufs);
			p.ready_buf = malloc(sizeof(int) * (size_t)p.n_bufs);
			if (!p.bufs || !p.free_bufs || !p.ready_chunk || !p.ready_buf) {
				rc = snap_errf(err, errlen, -ENOMEM, "out of memory for %d read buffers of %zu bytes",
					       p.n_bufs, p.buf_size);
				goto out;
			}
			for (int i = 0; i < p.n_bufs; i++)
				p.free_bufs[p.n_free++] = p.n_bufs - 1 - i;
		}
	}
	st->io = p.mode;
	st->threads = p.o.threads;

	ws = calloc((size_t)p.o.threads, sizeof *ws);
	if (!ws) {
		rc = snap_errf(err, errlen, -ENOMEM, "out of memory");
		goto out;
	}
	for (int i = 0; i < p.o.threads; i++) {
		ws[i].p = &p;
		if (pthread_create(&ws[i].th, NULL, decode_worker, &ws[i])) {
			pipe_fail(&p, -EAGAIN, -1, "cannot start decode threads");
			break;
		}
		n_started++;
	}
	if (ring_ok && n_started == p.o.threads)
		uring_reader(&p, &ring, st);
	pthread_mutex_lock(&p.mu);
	p.reading_done = 1;
	pthread_cond_broadcast(&p.cv_ready);
	pthread_mutex_unlock(&p.mu);
	for (int i = 0; i < n_started; i++) {
		pthread_join(ws[i].th, NULL);
		p.read_busy += ws[i].read_busy / p.o.threads;
		p.decode_busy += ws[i].decode_busy;
		p.stored_bytes += ws[i].stored;
	}
	st->io = p.mode;
	{
		double copy_s = 0;
		int frc = sink->finish(sink->ctx, p.rc == 0, &copy_s);
		if (!p.rc && frc)
			pipe_fail(&p, frc, -1, "finishing the restore: %s", sink->err[0] ? sink->err : strerror(-frc));
		st->copy_s = copy_s;
	}
	rc = p.rc;
	if (rc)
		snap_errf(err, errlen, rc, "%s: %s", f->path, p.err);
	else if (p.o.progress)   /* the decoders are joined: this is the last call */
		p.o.progress(p.o.progress_user, p.o.progress_phase, f->image_size, f->image_size);
	st->wall_s = snap_now() - t0;
	st->read_s = p.read_busy;
	st->decode_s = p.decode_busy / (n_started ? n_started : 1);
	st->raw_bytes = rc ? 0 : f->image_size;
	st->stored_bytes = p.stored_bytes;
out:
	if (ring_ok)
		io_uring_queue_exit(&ring);
	if (p.map)
		munmap((void *)p.map, f->file_size);
	if (p.fd >= 0)
		close(p.fd);
	free(ws);
	if (p.bufs)
		munmap(p.bufs, p.buf_size * (size_t)p.n_bufs);
	free(p.free_bufs);
	free(p.ready_chunk);
	free(p.ready_buf);
	pthread_mutex_destroy(&p.mu);
	pthread_mutex_destroy(&p.prog_mu);
	pthread_cond_destroy(&p.cv_ready);
	pthread_cond_destroy(&p.cv_free);
	f->last_bad_chunk = rc ? p.bad_chunk : -1;
	return rc;
}

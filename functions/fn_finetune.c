/* fn_finetune.c — MLP fine-tuning with Adam (see fn_finetune.h). Host F32, deterministic. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>
#include "pool/pool_base.h"
#include "functions/fn_kinds.h"
#include "functions/fn_finetune.h"

#define FT_MAX_LAYERS 16
#define FT_EVAL_CHUNK 32
#define FT_SUB_ROWS 8            /* rows per training unit: a minibatch is several units */
#define FT_BETA1 0.9
#define FT_BETA2 0.999
#define FT_EPS 1e-8
#define FT_DEV_EVAL_ROWS 256     /* held-out rows per device unit */
#define FT_DEV_MAX_MICRO 64      /* minibatches per device unit, at most */


/* ---- data ---- */

/* opens path read-only if it is a regular file, without ever blocking in open (a FIFO named
 * as the data file would): O_NONBLOCK, fstat, then O_NONBLOCK cleared. -1 with errno set
 * (EINVAL: not a regular file). */
static int open_regular(const char *path)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK), fl, e;
	if (fd < 0)
		return -1;
	if (fstat(fd, &st) < 0)
		e = errno;
	else if (!S_ISREG(st.st_mode))
		e = EINVAL;
	else if ((fl = fcntl(fd, F_GETFL)) < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0)
		e = errno;
	else
		return fd;
	close(fd);
	errno = e;
	return -1;
}

/* opens path (a regular file) for reading through zlib: a .gz file must be gzip data (read
 * decompressed), any other file is read as it is. NULL with errno set (EINVAL: not a regular
 * file; EILSEQ: a .gz that is not gzip data). */
static gzFile open_data(const char *path)
{
	size_t len = strlen(path);
	int gz = len >= 3 && strcmp(path + len - 3, ".gz") == 0;
	int in = open_regular(path);
	if (in < 0)
		return NULL;
	gzFile f = gzdopen(in, "rb");
	if (!f) {
		close(in);
		errno = ENOMEM;
		return NULL;
	}
	if (gz && (gzgetc(f) < 0 || gzdirect(f))) {
		int zerr = 0;
		gzerror(f, &zerr);
		gzclose(f);
		errno = zerr == Z_MEM_ERROR ? ENOMEM : EILSEQ;
		return NULL;
	}
	if (gz)
		gzrewind(f);
	return f;
}

/* reads one line (with its newline, NUL-terminated) into *line, growing it: the length, 0 at
 * the end of the data, -1 when the data cannot be read (corrupt or truncated gzip data, an I/O
 * error), -ENOMEM */
static ssize_t gz_getline(gzFile f, char **line, size_t *cap)
{
	size_t n = 0;
	for (;;) {
		if (*cap - n < 2) {
			size_t nc = *cap ? *cap * 2 : 4096;
			char *p = realloc(*line, nc);
			if (!p)
				return -ENOMEM;
			*line = p;
			*cap = nc;
		}
		if (!gzgets(f, *line + n, (int)(*cap - n > INT32_MAX ? INT32_MAX : *cap - n)))
			break;
		n += strlen(*line + n);
		if (n && (*line)[n - 1] == '\n')
			break;
	}
	int zerr = 0;
	gzerror(f, &zerr);
	if (zerr != Z_OK)
		return -1;
	if (*line)
		(*line)[n] = 0;
	return (ssize_t)n;
}

/* parses up to cap comma-separated numbers of line into v; returns the count or -1 */
static long parse_row(char *line, double *v, long cap)
{
	long n = 0;
	char *s = line;
	for (;;) {
		while (*s == ' ' || *s == '\t')
			s++;
		if (*s == 0 || *s == '\n' || *s == '\r')
			return n == 0 ? 0 : -1;   /* empty line, or a trailing comma */
		char *end;
		double x = strtod(s, &end);
		if (end == s || !isfinite(x))
			return -1;
		if (n < cap)
			v[n] = x;
		n++;
		s = end;
		while (*s == ' ' || *s == '\t' || *s == '\r')
			s++;
		if (*s == ',') {
			s++;
			continue;
		}
		if (*s == 0 || *s == '\n')
			return n;
		return -1;
	}
}

int fn_ft_data_load(const char *path, int nt, double feature_scale, fn_ft_data *d, char *err,
		    size_t errlen)
{
	memset(d, 0, sizeof *d);
	gzFile f = open_data(path);
	if (!f)
		return fn_errf(err, errlen, errno == ENOENT ? -ENOENT : errno == EINVAL ||
			      errno == EILSEQ ? -EINVAL : errno == ENOMEM ? -ENOMEM : -EIO, "data %s: %s",
			      path, errno == EINVAL ? "not a regular file" : errno == EILSEQ ?
			      "not gzip data" : strerror(errno ? errno : EIO));
	char *line = NULL;
	size_t lcap = 0;
	double *v = NULL;
	long width = 0, lineno = 0;
	int64_t cap = 0;
	int rc = 0;
	ssize_t got;
	while ((got = gz_getline(f, &line, &lcap)) > 0) {
		lineno++;
		long cnt = parse_row(line, v, width);
		if (width == 0) {
			long w = 1;
			for (char *s = line; *s; s++)
				w += *s == ',';
			free(v);
			v = malloc((size_t)w * sizeof *v);
			if (!v) {
				rc = fn_errf(err, errlen, -ENOMEM, "data %s: out of memory", path);
				goto done;
			}
			cnt = parse_row(line, v, w);
			if (cnt < 0 && lineno == 1 && d->rows == 0)
				continue;          /* a header */
			if (cnt == 0)
				continue;
			if (cnt < 0 || cnt <= nt) {
				rc = fn_errf(err, errlen, -EINVAL, "data %s line %ld: need numbers: features "
					    "then %d target%s", path, lineno, nt, nt == 1 ? "" : "s");
				goto done;
			}
			width = cnt;
		}
		if (cnt == 0)
			continue;
		if (cnt != width) {
			rc = fn_errf(err, errlen, -EINVAL, "data %s line %ld: %s (expected %ld numbers)",
				    path, lineno, cnt < 0 ? "not a comma-separated row of numbers" :
				    "wrong number of columns", width);
			goto done;
		}
		if (d->rows == cap) {
			int64_t nc = cap ? cap * 2 : 1024;
			float *nx = realloc(d->x, (size_t)(nc * (width - nt)) * sizeof *nx);
			if (nx)
				d->x = nx;
			float *ny = realloc(d->y, (size_t)(nc * nt) * sizeof *ny);
			if (ny)
				d->y = ny;
			if (!nx || !ny) {
				rc = fn_errf(err, errlen, -ENOMEM, "data %s: out of memory", path);
				goto done;
			}
			cap = nc;
		}
		int64_t c = width - nt;
		for (int64_t j = 0; j < c; j++)
			d->x[d->rows * c + j] = (float)(v[j] * feature_scale);
		for (int j = 0; j < nt; j++)
			d->y[d->rows * nt + j] = (float)v[c + j];
		d->rows++;
	}
	if (got == -ENOMEM) {
		rc = fn_errf(err, errlen, -ENOMEM, "data %s: out of memory", path);
		goto done;
	}
	if (got < 0) {
		int zerr = 0;
		const char *zmsg = gzerror(f, &zerr);
		rc = fn_errf(err, errlen, zerr == Z_ERRNO ? -EIO : -EINVAL, "data %s line %ld: %s",
			    path, lineno + 1, zerr == Z_ERRNO ? strerror(errno ? errno : EIO) :
			    zerr == Z_BUF_ERROR ? "gzip data truncated" : zmsg && *zmsg ? zmsg :
			    "corrupt gzip data");
		goto done;
	}
	if (d->rows == 0)
		rc = fn_errf(err, errlen, -EINVAL, "data %s: no rows", path);
	d->cols = width - nt;
	d->nt = nt;
done:
	free(line);
	free(v);
	gzclose(f);
	if (rc < 0)
		fn_ft_data_free(d);
	return rc;
}

void fn_ft_data_free(fn_ft_data *d)
{
	free(d->x);
	free(d->y);
	memset(d, 0, sizeof *d);
}

/* ---- model ---- */

/* Device buffers: parameters, Adam moments and gradients per layer; the data set and its row
 * permutations (int32, gathered with kern_embed); activations for `cap` rows; per-row loss and
 * hit flags for a unit. The host arrays of fn_ft stay allocated: they are where the state is
 * spilled to, and what checkpoints and the result read (fn_ft_sync_host refreshes them). */
typedef struct ft_dev {
	kern_dev *d;
	float *w[FT_MAX_LAYERS], *b[FT_MAX_LAYERS], *mw[FT_MAX_LAYERS], *vw[FT_MAX_LAYERS];
	float *mb[FT_MAX_LAYERS], *vb[FT_MAX_LAYERS], *gw[FT_MAX_LAYERS], *gb[FT_MAX_LAYERS];
	float *x, *y, *ybuf;
	int32_t *split, *order;
	int order_epoch;
	float *z[FT_MAX_LAYERS], *a[FT_MAX_LAYERS + 1], *dz, *da;
	float *loss, *hit;         /* FT_DEV_MAX_MICRO * cap rows */
	int64_t cap;
	int micro;                 /* minibatches per training unit (adapted to unit_us) */
	double unit_us;            /* target wall time of a unit (kernels and the closing copy) */
	double mb_us;              /* measured time per minibatch (moving average) */
	int host_stale;            /* the device state is newer than the host arrays */
	float *hloss, *hhit;       /* host copies of loss/hit */
} ft_dev;


struct fn_ft {
	fn_ft_params p;
	const fn_ft_data *d;
	int nl;
	int64_t n[FT_MAX_LAYERS], k[FT_MAX_LAYERS], maxd;
	float *w[FT_MAX_LAYERS], *b[FT_MAX_LAYERS];
	float *mw[FT_MAX_LAYERS], *vw[FT_MAX_LAYERS], *mb[FT_MAX_LAYERS], *vb[FT_MAX_LAYERS];
	float *gw[FT_MAX_LAYERS], *gb[FT_MAX_LAYERS];
	float *aw[FT_MAX_LAYERS], *ab[FT_MAX_LAYERS];   /* the minibatch's gradient, accumulated */
	int64_t *split;            /* row permutation: [0, ntrain) train, [ntrain, rows) held out */
	int64_t ntrain, nval;
	int64_t *order;            /* this epoch's training order */
	int order_epoch;
	struct ft_dev *dv;         /* state on a kern device (fn_ft_to_device), or NULL */
	/* scratch: z (pre-activation) and a (post) per layer, cap rows */
	float *z[FT_MAX_LAYERS], *a[FT_MAX_LAYERS + 1], *dz, *da;
	int64_t cap;
	/* the cursor and running sums: all saved by fn_ft_save */
	struct ft_cursor {
		int64_t epoch, phase, pos, t, units;
		int64_t bpos;              /* rows of the current minibatch done */
		double tr_loss, ev_loss;
		int64_t tr_n, ev_n, ev_correct;
		int64_t have_last, last_epoch;
		double last_loss, last_val_loss, last_acc;
		int64_t done;
	} c;
};

static int dev_upload(fn_ft *f);

static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static void shuffle(int64_t *a, int64_t n, uint64_t seed)
{
	uint64_t s = seed;
	for (int64_t i = n - 1; i > 0; i--) {
		int64_t j = (int64_t)(splitmix(&s) % (uint64_t)(i + 1));
		int64_t t = a[i];
		a[i] = a[j];
		a[j] = t;
	}
}

static void dev_free(fn_ft *f);

void fn_ft_free(fn_ft *f)
{
	if (!f)
		return;
	dev_free(f);
	for (int i = 0; i < FT_MAX_LAYERS; i++) {
		free(f->w[i]); free(f->b[i]); free(f->mw[i]); free(f->vw[i]);
		free(f->mb[i]); free(f->vb[i]); free(f->gw[i]); free(f->gb[i]);
		free(f->aw[i]); free(f->ab[i]);
		free(f->z[i]); free(f->a[i]);
	}
	free(f->a[FT_MAX_LAYERS]);
	free(f->dz);
	free(f->da);
	free(f->split);
	free(f->order);
	free(f);
}

static int ensure_cap(fn_ft *f, int64_t m)
{
	if (m <= f->cap)
		return 0;
	for (int i = 0; i <= f->nl; i++) {
		int64_t w = i == 0 ? f->k[0] : f->n[i - 1];
		free(f->a[i]);
		f->a[i] = malloc((size_t)(m * w) * sizeof(float));
		if (i < f->nl) {
			free(f->z[i]);
			f->z[i] = malloc((size_t)(m * f->n[i]) * sizeof(float));
			if (!f->z[i])
				return -ENOMEM;
		}
		if (!f->a[i])
			return -ENOMEM;
	}
	free(f->dz);
	free(f->da);
	f->dz = malloc((size_t)(m * f->maxd) * sizeof(float));
	f->da = malloc((size_t)(m * f->maxd) * sizeof(float));
	if (!f->dz || !f->da)
		return -ENOMEM;
	f->cap = m;
	return 0;
}

int fn_ft_new(const fn_ft_params *p, int nl, const int64_t *n, const int64_t *k,
	      const float *const *w, const float *const *b, const fn_ft_data *data, fn_ft **out,
	      char *err, size_t errlen)
{
	*out = NULL;
	if (nl < 1 || nl > FT_MAX_LAYERS)
		return fn_errf(err, errlen, -EINVAL, "finetune: need 1..%d layers, got %d", FT_MAX_LAYERS, nl);
	if (p->epochs < 1 || p->batch_size < 1 || !(p->learning_rate > 0) ||
	    !(p->validation_split >= 0 && p->validation_split <= 0.9))
		return fn_errf(err, errlen, -EINVAL, "finetune: bad parameters");
	for (int i = 0; i < nl; i++)
		if (n[i] < 1 || k[i] < 1 || (i > 0 && k[i] != n[i - 1]))
			return fn_errf(err, errlen, -EINVAL, "finetune: layer %d shape [%lld, %lld] does not "
				      "follow the layer before", i, (long long)n[i], (long long)k[i]);
	if (data->cols != k[0])
		return fn_errf(err, errlen, -EINVAL, "finetune: the data has %lld feature columns, the "
			      "model takes %lld inputs", (long long)data->cols, (long long)k[0]);
	int64_t out_dim = n[nl - 1];
	if (p->classify) {
		if (out_dim < 2)
			return fn_errf(err, errlen, -EINVAL, "finetune: a classifier needs >= 2 outputs");
		for (int64_t r = 0; r < data->rows; r++) {
			float y = data->y[r * data->nt];
			if (y != floorf(y) || y < 0 || y >= (float)out_dim)
				return fn_errf(err, errlen, -EINVAL, "finetune: data row %lld: label %g is "
					      "not a class index in 0..%lld", (long long)r + 1, (double)y,
					      (long long)out_dim - 1);
		}
	} else if (data->nt != out_dim) {
		return fn_errf(err, errlen, -EINVAL, "finetune: the data has %lld targets, the model "
			      "gives %lld outputs", (long long)data->nt, (long long)out_dim);
	}
	fn_ft *f = calloc(1, sizeof *f);
	if (!f)
		return fn_errf(err, errlen, -ENOMEM, "finetune: out of memory");
	f->p = *p;
	f->d = data;
	f->nl = nl;
	f->order_epoch = -1;
	for (int i = 0; i < nl; i++) {
		size_t nw = (size_t)(n[i] * k[i]), nb = (size_t)n[i];
		f->n[i] = n[i];
		f->k[i] = k[i];
		if (n[i] > f->maxd) f->maxd = n[i];
		if (k[i] > f->maxd) f->maxd = k[i];
		f->w[i] = malloc(nw * 4);
		f->b[i] = calloc(nb, 4);
		f->mw[i] = calloc(nw, 4);
		f->vw[i] = calloc(nw, 4);
		f->gw[i] = calloc(nw, 4);
		f->mb[i] = calloc(nb, 4);
		f->vb[i] = calloc(nb, 4);
		f->gb[i] = calloc(nb, 4);
		f->aw[i] = calloc(nw, 4);
		f->ab[i] = calloc(nb, 4);
		if (!f->w[i] || !f->b[i] || !f->mw[i] || !f->vw[i] || !f->gw[i] || !f->mb[i] ||
		    !f->vb[i] || !f->gb[i] || !f->aw[i] || !f->ab[i])
			goto nomem;
		memcpy(f->w[i], w[i], nw * 4);
		if (b && b[i])
			memcpy(f->b[i], b[i], nb * 4);
	}
	f->nval = (int64_t)floor((double)data->rows * p->validation_split);
	f->ntrain = data->rows - f->nval;
	if (f->ntrain < 1) {
		fn_ft_free(f);
		return fn_errf(err, errlen, -EINVAL, "finetune: no training rows left after the split");
	}
	f->split = malloc((size_t)data->rows * sizeof *f->split);
	f->order = malloc((size_t)f->ntrain * sizeof *f->order);
	if (!f->split || !f->order)
		goto nomem;
	for (int64_t r = 0; r < data->rows; r++)
		f->split[r] = r;
	shuffle(f->split, data->rows, p->seed ^ 0x5EEDull);
	*out = f;
	return 0;
nomem:
	fn_ft_free(f);
	return fn_errf(err, errlen, -ENOMEM, "finetune: out of memory");
}

static float act_f(kern_act a, float z)
{
	switch (a) {
	case KERN_ACT_RELU: return z > 0 ? z : 0;
	case KERN_ACT_TANH: return tanhf(z);
	case KERN_ACT_GELU: return 0.5f * z * (1.0f + erff(z * 0.70710678f));
	case KERN_ACT_SILU: return z / (1.0f + expf(-z));
	default: return z;
	}
}

static float act_d(kern_act a, float z)
{
	switch (a) {
	case KERN_ACT_RELU: return z > 0 ? 1.0f : 0.0f;
	case KERN_ACT_TANH: { float t = tanhf(z); return 1.0f - t * t; }
	case KERN_ACT_GELU:
		return 0.5f * (1.0f + erff(z * 0.70710678f)) + z * 0.39894228f * expf(-0.5f * z * z);
	case KERN_ACT_SILU: { float s = 1.0f / (1.0f + expf(-z)); return s * (1.0f + z * (1.0f - s)); }
	default: return 1.0f;
	}
}

/* forward over rows idx[0..m): fills z and a; returns 0 or -ENOMEM */
static int forward(fn_ft *f, const int64_t *idx, int64_t m)
{
	if (ensure_cap(f, m) < 0)
		return -ENOMEM;
	int64_t c = f->d->cols;
	for (int64_t r = 0; r < m; r++)
		memcpy(f->a[0] + r * c, f->d->x + idx[r] * c, (size_t)c * 4);
	for (int l = 0; l < f->nl; l++) {
		int64_t n = f->n[l], k = f->k[l];
		int last = l == f->nl - 1;
		for (int64_t r = 0; r < m; r++) {
			const float *x = f->a[l] + r * k;
			float *z = f->z[l] + r * n, *y = f->a[l + 1] + r * n;
			for (int64_t i = 0; i < n; i++) {
				const float *wr = f->w[l] + i * k;
				float s = f->b[l][i];
				for (int64_t j = 0; j < k; j++)
					s += wr[j] * x[j];
				z[i] = s;
				y[i] = last ? s : act_f(f->p.act, s);
			}
		}
	}
	return 0;
}

/* loss of row r (index into data) from the output at a[nl] row i; writes dL/dout (unscaled
 * by the batch size) into g when non-NULL; *correct set for classifiers */
static double row_loss(fn_ft *f, int64_t r, int64_t i, float *g, int *correct)
{
	int64_t o = f->n[f->nl - 1];
	const float *y = f->a[f->nl] + i * o;
	const float *t = f->d->y + r * f->d->nt;
	double loss = 0;
	if (f->p.classify) {
		int64_t lab = (int64_t)t[0], best = 0;
		double mx = y[0], s = 0;
		for (int64_t j = 1; j < o; j++) {
			if (y[j] > mx)
				mx = y[j];
			if (y[j] > y[best])
				best = j;
		}
		for (int64_t j = 0; j < o; j++)
			s += exp((double)y[j] - mx);
		loss = -((double)y[lab] - mx - log(s));
		if (g)
			for (int64_t j = 0; j < o; j++)
				g[j] = (float)(exp((double)y[j] - mx) / s) - (j == lab ? 1.0f : 0.0f);
		if (correct)
			*correct = best == lab;
	} else {
		for (int64_t j = 0; j < o; j++) {
			double e = (double)y[j] - t[j];
			loss += e * e / (double)o;
			if (g)
				g[j] = (float)(2.0 * e / (double)o);
		}
		if (correct)
			*correct = 0;
	}
	return loss;
}

double fn_ft_loss_grad(fn_ft *f, const int64_t *idx, int m, float **gw, float **gb)
{
	if (m < 1 || forward(f, idx, m) < 0)
		return NAN;
	int64_t o = f->n[f->nl - 1];
	double loss = 0;
	for (int64_t i = 0; i < m; i++)
		loss += row_loss(f, idx[i], i, f->dz + i * o, NULL);
	loss /= m;
	if (!gw)
		return loss;
	float inv = 1.0f / (float)m;
	for (int64_t i = 0; i < m * o; i++)
		f->dz[i] *= inv;
	for (int l = f->nl - 1; l >= 0; l--) {
		int64_t n = f->n[l], k = f->k[l];
		memset(gw[l], 0, (size_t)(n * k) * 4);
		memset(gb[l], 0, (size_t)n * 4);
		for (int64_t r = 0; r < m; r++) {
			const float *dz = f->dz + r * n, *x = f->a[l] + r * k;
			for (int64_t i = 0; i < n; i++) {
				float d = dz[i];
				if (d == 0)
					continue;
				float *g = gw[l] + i * k;
				for (int64_t j = 0; j < k; j++)
					g[j] += d * x[j];
				gb[l][i] += d;
			}
		}
		if (l == 0)
			break;
		/* da = dz . W, then dz_prev = da * act'(z[l-1]) */
		for (int64_t r = 0; r < m; r++) {
			const float *dz = f->dz + r * n;
			float *da = f->da + r * k;
			memset(da, 0, (size_t)k * 4);
			for (int64_t i = 0; i < n; i++) {
				float d = dz[i];
				if (d == 0)
					continue;
				const float *wr = f->w[l] + i * k;
				for (int64_t j = 0; j < k; j++)
					da[j] += d * wr[j];
			}
			const float *zp = f->z[l - 1] + r * k;
			for (int64_t j = 0; j < k; j++)
				da[j] *= act_d(f->p.act, zp[j]);
		}
		memcpy(f->dz, f->da, (size_t)(m * k) * 4);
	}
	return loss;
}

/* Adam's step size at step t with both bias corrections folded in */
static float adam_lr(const fn_ft *f, int64_t t)
{
	double b1t = 1 - pow(FT_BETA1, (double)t), b2t = 1 - pow(FT_BETA2, (double)t);
	return (float)(f->p.learning_rate * sqrt(b2t) / b1t);
}

static void adam(fn_ft *f)
{
	f->c.t++;
	float lr = adam_lr(f, f->c.t);
	for (int l = 0; l < f->nl; l++) {
		for (int pass = 0; pass < 2; pass++) {
			int64_t cnt = pass ? f->n[l] : f->n[l] * f->k[l];
			float *p = pass ? f->b[l] : f->w[l], *g = pass ? f->ab[l] : f->aw[l];
			float *m = pass ? f->mb[l] : f->mw[l], *v = pass ? f->vb[l] : f->vw[l];
			for (int64_t i = 0; i < cnt; i++) {
				/* the arithmetic of kern_adam, so that host and device steps agree */
				const float b1 = (float)FT_BETA1, b2 = (float)FT_BETA2;
				m[i] = b1 * m[i] + (1.0f - b1) * g[i];
				v[i] = b2 * v[i] + (1.0f - b2) * g[i] * g[i];
				p[i] -= lr * m[i] / (sqrtf(v[i]) + (float)FT_EPS);
			}
		}
	}
}

static int dev_unit(fn_ft *f);
static void epoch_tail(fn_ft *f);

/* this epoch's training order into f->order (a function of seed and epoch) */
static void make_order(fn_ft *f)
{
	if (f->order_epoch == (int)f->c.epoch)
		return;
	memcpy(f->order, f->split, (size_t)f->ntrain * sizeof *f->order);
	shuffle(f->order, f->ntrain, f->p.seed * 0x2545F4914F6CDD1Dull + (uint64_t)f->c.epoch + 1);
	f->order_epoch = (int)f->c.epoch;
}

int fn_ft_unit(fn_ft *f, int *done)
{
	*done = 0;
	if (f->c.done) {
		*done = 1;
		return 0;
	}
	if (f->dv) {
		int rc = dev_unit(f);
		if (rc < 0)
			return rc;
		epoch_tail(f);
		f->c.units++;
		if (f->c.done && (rc = fn_ft_sync_host(f)) < 0)   /* the result is read from the host */
			return rc;
		*done = (int)f->c.done;
		return 0;
	}
	if (f->c.phase == 0) {
		make_order(f);
		/* the minibatch [start, start + mb) is done in units of FT_SUB_ROWS rows whose
		 * gradients are summed (weighted by their share), then one Adam step */
		int64_t start = f->c.pos - f->c.bpos, mb = f->ntrain - start;
		if (mb > f->p.batch_size)
			mb = f->p.batch_size;
		int64_t m = mb - f->c.bpos;
		if (m > FT_SUB_ROWS)
			m = FT_SUB_ROWS;
		double loss = fn_ft_loss_grad(f, f->order + f->c.pos, (int)m, f->gw, f->gb);
		if (isnan(loss))
			return -ENOMEM;
		float share = (float)m / (float)mb;
		for (int l = 0; l < f->nl; l++) {
			int64_t nw = f->n[l] * f->k[l];
			for (int64_t i = 0; i < nw; i++)
				f->aw[l][i] = (f->c.bpos ? f->aw[l][i] : 0.0f) + f->gw[l][i] * share;
			for (int64_t i = 0; i < f->n[l]; i++)
				f->ab[l][i] = (f->c.bpos ? f->ab[l][i] : 0.0f) + f->gb[l][i] * share;
		}
		f->c.tr_loss += loss * (double)m;
		f->c.tr_n += m;
		f->c.pos += m;
		f->c.bpos += m;
		if (f->c.bpos >= mb) {
			adam(f);
			f->c.bpos = 0;
		}
		if (f->c.pos >= f->ntrain) {
			f->c.phase = 1;
			f->c.pos = 0;
		}
	} else if (f->c.pos < f->nval) {
		int64_t m = f->nval - f->c.pos;
		if (m > FT_EVAL_CHUNK)
			m = FT_EVAL_CHUNK;
		const int64_t *idx = f->split + f->ntrain + f->c.pos;
		if (forward(f, idx, m) < 0)
			return -ENOMEM;
		for (int64_t i = 0; i < m; i++) {
			int ok = 0;
			f->c.ev_loss += row_loss(f, idx[i], i, NULL, &ok);
			f->c.ev_correct += ok;
		}
		f->c.ev_n += m;
		f->c.pos += m;
	}
	epoch_tail(f);
	f->c.units++;
	*done = (int)f->c.done;
	return 0;
}

/* after a unit: when the epoch's evaluation is complete, record its figures, next epoch */
static void epoch_tail(fn_ft *f)
{
	if (f->c.phase == 1 && f->c.pos >= f->nval) {
		/* epoch finished: record its figures */
		f->c.have_last = 1;
		f->c.last_epoch = f->c.epoch + 1;
		f->c.last_loss = f->c.tr_n ? f->c.tr_loss / (double)f->c.tr_n : 0;
		f->c.last_val_loss = f->c.ev_n ? f->c.ev_loss / (double)f->c.ev_n : NAN;
		f->c.last_acc = f->c.ev_n ? (double)f->c.ev_correct / (double)f->c.ev_n : NAN;
		f->c.tr_loss = f->c.ev_loss = 0;
		f->c.tr_n = f->c.ev_n = f->c.ev_correct = 0;
		f->c.epoch++;
		f->c.phase = 0;
		f->c.pos = 0;
		if (f->c.epoch >= f->p.epochs)
			f->c.done = 1;
	}
}

double fn_ft_progress(const fn_ft *f)
{
	if (f->c.done)
		return 1.0;
	/* rows passed: training rows, then held-out rows, per epoch (host and device units
	 * cover different numbers of rows) */
	double per = (double)(f->ntrain + f->nval);
	double at = (double)f->c.epoch * per + (f->c.phase ? (double)f->ntrain : 0) + (double)f->c.pos;
	double p = per > 0 ? at / (per * f->p.epochs) : 0;
	return p > 1 ? 1 : p < 0 ? 0 : p;
}

int64_t fn_ft_steps(const fn_ft *f)
{
	return f->c.t;
}

json_t *fn_ft_metrics(const fn_ft *f)
{
	json_t *o = json_object();
	json_object_set_new(o, "epoch", json_integer(f->c.have_last ? f->c.last_epoch : 0));
	json_object_set_new(o, "train_rows", json_integer(f->ntrain));
	json_object_set_new(o, "val_rows", json_integer(f->nval));
	if (f->c.have_last) {
		json_object_set_new(o, "loss", json_real(f->c.last_loss));
		if (f->nval > 0) {
			json_object_set_new(o, "val_loss", json_real(f->c.last_val_loss));
			if (f->p.classify)
				json_object_set_new(o, "accuracy", json_real(f->c.last_acc));
		}
	}
	return o;
}

void fn_ft_weights(const fn_ft *f, int i, const float **w, const float **b)
{
	*w = f->w[i];
	*b = f->b[i];
}

/* ---- save / restore ---- */

#define FT_MAGIC "THAWFT02"

typedef struct ft_hdr {
	char magic[8];
	int64_t nl, rows, ntrain, epochs, batch, classify, act;
	uint64_t seed;
	double lr, split;
	int64_t n[FT_MAX_LAYERS], k[FT_MAX_LAYERS];
} ft_hdr;

static void make_hdr(const fn_ft *f, ft_hdr *h)
{
	memset(h, 0, sizeof *h);
	memcpy(h->magic, FT_MAGIC, 8);
	h->nl = f->nl;
	h->rows = f->d->rows;
	h->ntrain = f->ntrain;
	h->epochs = f->p.epochs;
	h->batch = f->p.batch_size;
	h->classify = f->p.classify;
	h->act = f->p.act;
	h->seed = f->p.seed;
	h->lr = f->p.learning_rate;
	h->split = f->p.validation_split;
	for (int i = 0; i < f->nl; i++) {
		h->n[i] = f->n[i];
		h->k[i] = f->k[i];
	}
}

static size_t params_floats(const fn_ft *f)
{
	size_t s = 0;
	for (int i = 0; i < f->nl; i++)
		s += (size_t)(f->n[i] * f->k[i] + f->n[i]);
	return s;
}

int fn_ft_save(fn_ft *f, void **buf, size_t *len)
{
	int rc = fn_ft_sync_host(f);
	if (rc < 0)
		return rc;
	size_t np = params_floats(f);
	size_t total = sizeof(ft_hdr) + sizeof f->c + 4 * np * 4;
	char *b = malloc(total), *p = b;
	if (!b)
		return -ENOMEM;
	ft_hdr h;
	make_hdr(f, &h);
	memcpy(p, &h, sizeof h);
	p += sizeof h;
	memcpy(p, &f->c, sizeof f->c);
	p += sizeof f->c;
	for (int which = 0; which < 4; which++)
		for (int i = 0; i < f->nl; i++) {
			float *const *W = which == 0 ? f->w : which == 1 ? f->mw : which == 2 ? f->vw : f->aw;
			float *const *B = which == 0 ? f->b : which == 1 ? f->mb : which == 2 ? f->vb : f->ab;
			size_t nw = (size_t)(f->n[i] * f->k[i]) * 4, nb = (size_t)f->n[i] * 4;
			memcpy(p, W[i], nw);
			p += nw;
			memcpy(p, B[i], nb);
			p += nb;
		}
	*buf = b;
	*len = total;
	return 0;
}

int fn_ft_restore(fn_ft *f, const void *buf, size_t len, char *err, size_t errlen)
{
	size_t np = params_floats(f);
	ft_hdr h, want;
	if (len != sizeof h + sizeof f->c + 4 * np * 4)
		return fn_errf(err, errlen, -EINVAL, "checkpoint: size %zu does not match this job", len);
	memcpy(&h, buf, sizeof h);
	make_hdr(f, &want);
	if (memcmp(&h, &want, sizeof h) != 0)
		return fn_errf(err, errlen, -EINVAL, "checkpoint: made for other parameters, shapes or data");
	const char *p = (const char *)buf + sizeof h;
	memcpy(&f->c, p, sizeof f->c);
	p += sizeof f->c;
	for (int which = 0; which < 4; which++)
		for (int i = 0; i < f->nl; i++) {
			float **W = which == 0 ? f->w : which == 1 ? f->mw : which == 2 ? f->vw : f->aw;
			float **B = which == 0 ? f->b : which == 1 ? f->mb : which == 2 ? f->vb : f->ab;
			size_t nw = (size_t)(f->n[i] * f->k[i]) * 4, nb = (size_t)f->n[i] * 4;
			memcpy(W[i], p, nw);
			p += nw;
			memcpy(B[i], p, nb);
			p += nb;
		}
	f->order_epoch = -1;
	if (f->dv && f->c.bpos) {
		dev_free(f);   /* saved in the middle of a host minibatch: it finishes on the host */
	} else if (f->dv) {   /* the restored state goes to the device too */
		int rc = dev_upload(f);
		if (rc < 0)
			return fn_errf(err, errlen, rc, "checkpoint: cannot copy the state to %s",
				       kern_dev_name(f->dv->d));
	}
	return 0;
}

/* ---- the state on a kern device (GPU job steps) ---- */


static int64_t dev_cap(const fn_ft *f)
{
	int64_t c = f->p.batch_size;
	return c > FT_DEV_EVAL_ROWS ? c : FT_DEV_EVAL_ROWS;
}

size_t fn_ft_dev_bytes(const fn_ft *f)
{
	size_t fl = 0;
	int64_t cap = dev_cap(f);
	for (int l = 0; l < f->nl; l++)
		fl += (size_t)(f->n[l] * f->k[l] + f->n[l]) * 4;           /* w, m, v, g (+ biases) */
	fl += (size_t)(f->d->rows * (f->d->cols + f->d->nt));            /* data */
	fl += (size_t)(f->d->rows + f->ntrain);                            /* split, order */
	fl += (size_t)(cap * f->d->nt);                                    /* gathered targets */
	for (int l = 0; l <= f->nl; l++)                                   /* z, a */
		fl += (size_t)(cap * (l == 0 ? f->k[0] : 2 * f->n[l - 1]));
	fl += (size_t)(2 * cap * f->maxd);                                 /* dz, da */
	fl += (size_t)(2 * FT_DEV_MAX_MICRO * cap);                        /* loss, hit */
	return fl * 4;
}

int fn_ft_on_device(const fn_ft *f)
{
	return f->dv != NULL;
}

static void dev_free(fn_ft *f)
{
	ft_dev *v = f->dv;
	if (!v)
		return;
	kern_dev *d = v->d;
	for (int l = 0; l < FT_MAX_LAYERS; l++) {
		kern_free(d, v->w[l]); kern_free(d, v->b[l]); kern_free(d, v->mw[l]);
		kern_free(d, v->vw[l]); kern_free(d, v->mb[l]); kern_free(d, v->vb[l]);
		kern_free(d, v->gw[l]); kern_free(d, v->gb[l]); kern_free(d, v->z[l]);
		kern_free(d, v->a[l]);
	}
	kern_free(d, v->a[FT_MAX_LAYERS]);
	kern_free(d, v->x); kern_free(d, v->y); kern_free(d, v->ybuf);
	kern_free(d, v->split); kern_free(d, v->order);
	kern_free(d, v->dz); kern_free(d, v->da); kern_free(d, v->loss); kern_free(d, v->hit);
	free(v->hloss);
	free(v->hhit);
	free(v);
	f->dv = NULL;
}

/* parameters and moments: host -> device */
static int dev_upload(fn_ft *f)
{
	ft_dev *v = f->dv;
	int rc = 0;
	for (int l = 0; l < f->nl && rc == 0; l++) {
		size_t nw = (size_t)(f->n[l] * f->k[l]) * 4, nb = (size_t)f->n[l] * 4;
		if ((rc = kern_copy_h2d(v->d, v->w[l], f->w[l], nw)) < 0 ||
		    (rc = kern_copy_h2d(v->d, v->b[l], f->b[l], nb)) < 0 ||
		    (rc = kern_copy_h2d(v->d, v->mw[l], f->mw[l], nw)) < 0 ||
		    (rc = kern_copy_h2d(v->d, v->vw[l], f->vw[l], nw)) < 0 ||
		    (rc = kern_copy_h2d(v->d, v->mb[l], f->mb[l], nb)) < 0 ||
		    (rc = kern_copy_h2d(v->d, v->vb[l], f->vb[l], nb)) < 0)
			break;
	}
	if (rc == 0)
		rc = kern_dev_sync(v->d);
	v->host_stale = 0;
	return rc;
}

int fn_ft_sync_host(fn_ft *f)
{
	ft_dev *v = f->dv;
	if (!v || !v->host_stale)
		return 0;
	for (int l = 0; l < f->nl; l++) {
		size_t nw = (size_t)(f->n[l] * f->k[l]) * 4, nb = (size_t)f->n[l] * 4;
		int rc;
		if ((rc = kern_copy_d2h(v->d, f->w[l], v->w[l], nw)) < 0 ||
		    (rc = kern_copy_d2h(v->d, f->b[l], v->b[l], nb)) < 0 ||
		    (rc = kern_copy_d2h(v->d, f->mw[l], v->mw[l], nw)) < 0 ||
		    (rc = kern_copy_d2h(v->d, f->vw[l], v->vw[l], nw)) < 0 ||
		    (rc = kern_copy_d2h(v->d, f->mb[l], v->mb[l], nb)) < 0 ||
		    (rc = kern_copy_d2h(v->d, f->vb[l], v->vb[l], nb)) < 0 ||
		    (rc = kern_copy_d2h(v->d, f->aw[l], v->gw[l], nw)) < 0 ||
		    (rc = kern_copy_d2h(v->d, f->ab[l], v->gb[l], nb)) < 0)
			return rc;
	}
	v->host_stale = 0;
	return 0;
}

int fn_ft_to_device(fn_ft *f, kern_dev *d, double unit_us)
{
	if (f->dv)
		return f->dv->d == d ? 0 : -EBUSY;
	if (f->c.bpos != 0)
		return -EAGAIN;   /* in the middle of a host minibatch: finish it on the host first */
	if (f->d->rows > INT32_MAX)
		return -EINVAL;
	ft_dev *v = calloc(1, sizeof *v);
	if (!v)
		return -ENOMEM;
	f->dv = v;
	v->d = d;
	v->order_epoch = -1;
	v->micro = 1;
	v->unit_us = unit_us > 0 ? unit_us : 500;
	int64_t cap = v->cap = dev_cap(f), rows = f->d->rows;
	int rc = -ENOMEM;
	for (int l = 0; l < f->nl; l++) {
		size_t nw = (size_t)(f->n[l] * f->k[l]) * 4, nb = (size_t)f->n[l] * 4;
		if (!(v->w[l] = kern_alloc(d, nw)) || !(v->b[l] = kern_alloc(d, nb)) ||
		    !(v->mw[l] = kern_alloc(d, nw)) || !(v->vw[l] = kern_alloc(d, nw)) ||
		    !(v->mb[l] = kern_alloc(d, nb)) || !(v->vb[l] = kern_alloc(d, nb)) ||
		    !(v->gw[l] = kern_alloc(d, nw)) || !(v->gb[l] = kern_alloc(d, nb)) ||
		    !(v->z[l] = kern_alloc(d, (size_t)(cap * f->n[l]) * 4)))
			goto fail;
	}
	for (int l = 0; l <= f->nl; l++)
		if (!(v->a[l] = kern_alloc(d, (size_t)(cap * (l == 0 ? f->k[0] : f->n[l - 1])) * 4)))
			goto fail;
	size_t xb = (size_t)(rows * f->d->cols) * 4, yb = (size_t)(rows * f->d->nt) * 4;
	if (!(v->x = kern_alloc(d, xb)) || !(v->y = kern_alloc(d, yb)) ||
	    !(v->ybuf = kern_alloc(d, (size_t)(cap * f->d->nt) * 4)) ||
	    !(v->split = kern_alloc(d, (size_t)rows * 4)) ||
	    !(v->order = kern_alloc(d, (size_t)f->ntrain * 4)) ||
	    !(v->dz = kern_alloc(d, (size_t)(cap * f->maxd) * 4)) ||
	    !(v->da = kern_alloc(d, (size_t)(cap * f->maxd) * 4)) ||
	    !(v->loss = kern_alloc(d, (size_t)(FT_DEV_MAX_MICRO * cap) * 4)) ||
	    !(v->hit = kern_alloc(d, (size_t)(FT_DEV_MAX_MICRO * cap) * 4)) ||
	    !(v->hloss = malloc((size_t)(FT_DEV_MAX_MICRO * cap) * 4)) ||
	    !(v->hhit = malloc((size_t)(FT_DEV_MAX_MICRO * cap) * 4)))
		goto fail;
	int32_t *sp = malloc((size_t)rows * 4);
	if (!sp)
		goto fail;
	for (int64_t r = 0; r < rows; r++)
		sp[r] = (int32_t)f->split[r];
	rc = kern_copy_h2d(d, v->split, sp, (size_t)rows * 4);
	free(sp);
	if (rc == 0)
		rc = kern_copy_h2d(d, v->x, f->d->x, xb);
	if (rc == 0)
		rc = kern_copy_h2d(d, v->y, f->d->y, yb);
	if (rc == 0)
		rc = dev_upload(f);
	if (rc < 0)
		goto fail;
	return 0;
fail:
	dev_free(f);
	return rc;
}

int fn_ft_to_host(fn_ft *f)
{
	if (!f->dv)
		return 0;
	int rc = fn_ft_sync_host(f);
	if (rc < 0)
		return rc;   /* the device state stays: nothing is lost */
	dev_free(f);
	return 0;
}

/* forward of m gathered rows (already in a[0]): z[l] = a[l] . W^T + b, a[l+1] = act(z[l]);
 * the output is z[nl-1] */
static int dev_forward(fn_ft *f, int64_t m)
{
	ft_dev *v = f->dv;
	int rc = 0;
	for (int l = 0; l < f->nl && rc == 0; l++) {
		int64_t n = f->n[l], k = f->k[l];
		rc = kern_gemm(v->d, 0, 1, m, n, k, 1.0f, v->a[l], v->w[l], 0.0f, v->z[l]);
		if (rc == 0)
			rc = kern_bias_act(v->d, v->z[l], v->b[l], m, n, KERN_ACT_NONE);
		if (rc == 0 && l < f->nl - 1) {
			rc = kern_copy_d2d(v->d, v->a[l + 1], v->z[l], (size_t)(m * n) * 4);
			if (rc == 0)
				rc = kern_bias_act(v->d, v->a[l + 1], NULL, m, n, f->p.act);
		}
	}
	return rc;
}

/* gathers rows idx[0..m) (device int32) of the data set into a[0] and the targets into ybuf */
static int dev_gather(fn_ft *f, const int32_t *idx, int64_t m)
{
	ft_dev *v = f->dv;
	int rc = kern_embed(v->d, KERN_F32, v->x, f->d->rows, f->d->cols, idx, m, v->a[0]);
	if (rc == 0)
		rc = kern_embed(v->d, KERN_F32, v->y, f->d->rows, f->d->nt, idx, m, v->ybuf);
	return rc;
}

/* one minibatch of m rows at order[start..]: loss rows into loss + off, then backward and Adam */
static int dev_minibatch(fn_ft *f, int64_t start, int64_t m, int64_t off)
{
	ft_dev *v = f->dv;
	kern_dev *d = v->d;
	int64_t o = f->n[f->nl - 1];
	float *out = v->z[f->nl - 1], *dz = v->dz, *da = v->da;
	int rc = dev_gather(f, v->order + start, m);
	if (rc == 0)
		rc = dev_forward(f, m);
	if (rc == 0)
		rc = f->p.classify ?
			kern_xent_grad(d, out, v->ybuf, m, o, 1.0f / (float)m, dz, v->loss + off, NULL) :
			kern_mse_grad(d, out, v->ybuf, m, o, 1.0f / (float)m, dz, v->loss + off);
	for (int l = f->nl - 1; l >= 0 && rc == 0; l--) {
		int64_t n = f->n[l], k = f->k[l];
		rc = kern_gemm(d, 1, 0, n, k, m, 1.0f, dz, v->a[l], 0.0f, v->gw[l]);   /* dZ^T . A */
		if (rc == 0)
			rc = kern_col_sum(d, dz, m, n, 1.0f, 0.0f, v->gb[l]);
		if (rc == 0 && l > 0) {
			rc = kern_gemm(d, 0, 0, m, k, n, 1.0f, dz, v->w[l], 0.0f, da);  /* dZ . W */
			if (rc == 0)
				rc = kern_act_grad(d, da, v->z[l - 1], m * k, f->p.act);
			float *t = dz;
			dz = da;
			da = t;
		}
	}
	if (rc < 0)
		return rc;
	f->c.t++;
	float lr = adam_lr(f, f->c.t);
	for (int l = 0; l < f->nl && rc == 0; l++) {
		rc = kern_adam(d, v->w[l], v->mw[l], v->vw[l], v->gw[l], f->n[l] * f->k[l], lr,
			       (float)FT_BETA1, (float)FT_BETA2, (float)FT_EPS);
		if (rc == 0)
			rc = kern_adam(d, v->b[l], v->mb[l], v->vb[l], v->gb[l], f->n[l], lr,
				       (float)FT_BETA1, (float)FT_BETA2, (float)FT_EPS);
	}
	return rc;
}

/* one device unit: `micro` whole minibatches (sized from the measured time per minibatch so
 * that a unit takes about unit_us), or one chunk of the held-out evaluation; it ends with the
 * copy of its loss rows to the host, which waits for its kernels: nothing of the job stays
 * queued on the device after a unit */
static int dev_unit(fn_ft *f)
{
	ft_dev *v = f->dv;
	int rc = 0;
	v->host_stale = 1;
	if (f->c.phase == 0) {
		if (v->order_epoch != (int)f->c.epoch) {
			make_order(f);
			int32_t *o32 = malloc((size_t)f->ntrain * 4);
			if (!o32)
				return -ENOMEM;
			for (int64_t i = 0; i < f->ntrain; i++)
				o32[i] = (int32_t)f->order[i];
			rc = kern_copy_h2d(v->d, v->order, o32, (size_t)f->ntrain * 4);
			if (rc == 0)
				rc = kern_dev_sync(v->d);   /* o32 is freed next */
			free(o32);
			if (rc < 0)
				return rc;
			v->order_epoch = (int)f->c.epoch;
		}
		double t0 = pool_clock_mono_s();
		int64_t rows = 0, nmb = 0;
		while (nmb < v->micro && f->c.pos < f->ntrain) {
			int64_t m = f->ntrain - f->c.pos;
			if (m > f->p.batch_size)
				m = f->p.batch_size;
			if ((rc = dev_minibatch(f, f->c.pos, m, rows)) < 0)
				return rc;
			rows += m;
			nmb++;
			f->c.pos += m;
		}
		if ((rc = kern_copy_d2h(v->d, v->hloss, v->loss, (size_t)rows * 4)) < 0)
			return rc;
		for (int64_t i = 0; i < rows; i++)
			f->c.tr_loss += v->hloss[i];
		f->c.tr_n += rows;
		if (f->c.pos >= f->ntrain) {
			f->c.phase = 1;
			f->c.pos = 0;
		}
		/* size the next unit from this one's time per minibatch */
		double per = (pool_clock_mono_s() - t0) * 1e6 / (double)nmb;   /* microseconds */
		v->mb_us = v->mb_us > 0 ? 0.7 * v->mb_us + 0.3 * per : per;
		int micro = (int)(v->unit_us / (v->mb_us > 1 ? v->mb_us : 1));
		v->micro = micro < 1 ? 1 : micro > FT_DEV_MAX_MICRO ? FT_DEV_MAX_MICRO : micro;
		return 0;
	}
	if (f->c.pos < f->nval) {
		int64_t m = f->nval - f->c.pos, o = f->n[f->nl - 1];
		if (m > v->cap)
			m = v->cap;
		float *out = v->z[f->nl - 1];
		rc = dev_gather(f, v->split + f->ntrain + f->c.pos, m);
		if (rc == 0)
			rc = dev_forward(f, m);
		if (rc == 0)
			rc = f->p.classify ? kern_xent_grad(v->d, out, v->ybuf, m, o, 1.0f, NULL, v->loss, v->hit) :
					     kern_mse_grad(v->d, out, v->ybuf, m, o, 1.0f, NULL, v->loss);
		if (rc == 0)
			rc = kern_copy_d2h(v->d, v->hloss, v->loss, (size_t)m * 4);
		if (rc == 0 && f->p.classify)
			rc = kern_copy_d2h(v->d, v->hhit, v->hit, (size_t)m * 4);
		if (rc < 0)
			return rc;
		for (int64_t i = 0; i < m; i++) {
			f->c.ev_loss += v->hloss[i];
			f->c.ev_correct += f->p.classify && v->hhit[i] > 0.5f;
		}
		f->c.ev_n += m;
		f->c.pos += m;
	}
	return 0;
}

int fn_ft_dev_micro(const fn_ft *f)
{
	return f->dv ? f->dv->micro : 0;
}

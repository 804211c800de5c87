/* fn_finetune.h — the `finetune` job kind's math: full fine-tuning of an `mlp` (dense layers
 * W[n, k] + b[n], a hidden activation, none after the last layer) on a CSV data set, with Adam,
 * cross-entropy (classifiers: the last CSV column is the class index) or mean squared error
 * (regressors: the last out_dim columns are the targets).
 *
 * The work is cut into units that a job runner calls one at a time (fn_ft_unit): one minibatch
 * of training, or one chunk of the held-out evaluation at the end of each epoch. A unit is tiny
 * (a batch of 32 through a 64-32-10 net is ~0.1 ms on one core), so a runner can stop between
 * any two units. Everything is host F32 and deterministic for a given seed: the held-out split
 * and each epoch's order are functions of (seed, epoch), and fn_ft_save / fn_ft_restore capture
 * the whole state (weights, Adam moments, cursor, sums), so a run interrupted at any unit and
 * resumed from a saved state ends with the same bits as an uninterrupted one.
 * Not thread-safe: one fn_ft is used by one thread at a time. */
#ifndef THAW_FN_FINETUNE_H
#define THAW_FN_FINETUNE_H
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "kernels/kern.h"

/* A data set: rows x cols features (already multiplied by the feature scale) and rows x nt
 * targets (class index as a float for classifiers). */
typedef struct fn_ft_data {
	int64_t rows, cols, nt;
	float *x, *y;
} fn_ft_data;

/* fn_ft_data_load reads a CSV file (a path ending in .gz must be gzip data, read with zlib):
 * every line has cols + nt numbers separated by commas; a first line that does not parse as numbers is
 * taken as a header and skipped. cols is learned from the first row. Features are multiplied
 * by feature_scale. Returns 0 or a negative errno with a message naming the file and line
 * (-ENOENT missing file, -EINVAL bad content: also corrupt or truncated gzip data). Free with fn_ft_data_free. */
int fn_ft_data_load(const char *path, int nt, double feature_scale, fn_ft_data *d, char *err,
		    size_t errlen);
void fn_ft_data_free(fn_ft_data *d);

typedef struct fn_ft_params {
	int epochs;                /* >= 1 */
	double learning_rate;      /* Adam step size */
	int batch_size;            /* >= 1 */
	uint64_t seed;
	double validation_split;   /* share of rows held out, [0, 0.9] */
	int classify;              /* 1: softmax cross-entropy, 0: MSE */
	kern_act act;              /* hidden activation */
} fn_ft_params;

typedef struct fn_ft fn_ft;

/* fn_ft_new starts a fine-tune of the nl layers (w[i]: n[i] x k[i] F32, b[i]: n[i] F32 or NULL
 * for zeros; copied) on data (borrowed: must outlive f). Checks the shapes chain, the data's
 * columns against k[0], and class indices against n[nl-1]. 0 or -EINVAL with a message. */
int fn_ft_new(const fn_ft_params *p, int nl, const int64_t *n, const int64_t *k,
	      const float *const *w, const float *const *b, const fn_ft_data *data, fn_ft **out,
	      char *err, size_t errlen);
void fn_ft_free(fn_ft *f);

/* fn_ft_unit runs one unit (a training minibatch or an evaluation chunk). *done is set once
 * the last epoch's evaluation finished (further calls do nothing). Returns 0 (or -ENOMEM). */
int fn_ft_unit(fn_ft *f, int *done);
/* fn_ft_progress is the share of units done, 0..1; fn_ft_steps the minibatches trained. */
double fn_ft_progress(const fn_ft *f);
int64_t fn_ft_steps(const fn_ft *f);
/* fn_ft_metrics returns a new object {"epoch", "loss" (mean training loss of the last full
 * epoch), "val_loss", "accuracy" (held-out, classifiers), "val_rows", "train_rows"}; figures
 * not yet known are absent. */
json_t *fn_ft_metrics(const fn_ft *f);
/* fn_ft_weights gives layer i's current weights and bias (borrowed, n*k and n floats). */
void fn_ft_weights(const fn_ft *f, int i, const float **w, const float **b);

/* fn_ft_save serializes the whole state into a malloc'd buffer (*buf, *len) (a state on a
 * device is copied back first: see fn_ft_sync_host). 0, -ENOMEM or -EIO.
 * fn_ft_restore loads such a buffer into an fn_ft made by fn_ft_new with the same params,
 * shapes and data; -EINVAL (message) when it does not match. On a device the restored state is
 * copied there, unless it was saved in the middle of a host minibatch: then it leaves the
 * device (fn_ft_on_device says so) and finishes that minibatch on the host. */
int fn_ft_save(fn_ft *f, void **buf, size_t *len);
int fn_ft_restore(fn_ft *f, const void *buf, size_t len, char *err, size_t errlen);

/* ---- the state on a kern device (GPU job steps) ----
 * fn_ft_to_device moves the training state onto device d (a "cuda:N" or the "cpu" kern
 * device): parameters, Adam moments, the data set and its row permutations are copied there,
 * and from then on fn_ft_unit runs as kern ops on d (kern_gemm, kern_xent_grad / kern_mse_grad,
 * kern_act_grad, kern_col_sum, kern_adam): a training unit is `micro` whole minibatches, sized
 * after each unit from its measured time so that a unit takes about unit_us (<= 0 means 500)
 * of kernels, and ends with a copy that waits for them; an evaluation unit is up to 256
 * held-out rows. The minibatch sequence, loss and Adam are those of the host path, so a run
 * ends with the host path's figures and weights up to float rounding (other summation orders;
 * see tests/functions/test_finetune_dev.c for the bounds). Must be called on the thread that
 * runs d's work (a lane). Returns 0, -EAGAIN (in the middle of a host minibatch: run host
 * units until it ends), -EBUSY (already on another device), -ENOMEM (device memory; nothing
 * stays allocated), -EIO.
 * fn_ft_to_host copies the state back into the host arrays and frees the device memory (a
 * spill); fn_ft_unit then runs on the host again. 0 or -EIO (the state then stays on d).
 * fn_ft_sync_host refreshes the host arrays from the device without leaving it (the result
 * and checkpoints read them; fn_ft_save calls it, so saving waits for d's queued work).
 * fn_ft_dev_bytes is the device memory fn_ft_to_device takes; fn_ft_on_device says where
 * the state is; fn_ft_dev_micro is the current minibatches per unit (0 on the host). */
int fn_ft_to_device(fn_ft *f, kern_dev *d, double unit_us);
int fn_ft_to_host(fn_ft *f);
int fn_ft_sync_host(fn_ft *f);
size_t fn_ft_dev_bytes(const fn_ft *f);
int fn_ft_on_device(const fn_ft *f);
int fn_ft_dev_micro(const fn_ft *f);

/* fn_ft_loss_grad computes the mean loss over rows idx[0..m) of the data with the current
 * weights, and (when gw/gb are non-NULL) its gradients into gw[i] (n*k) and gb[i] (n) — what a
 * training step uses; for finite-difference checks. Returns the loss (NaN on ENOMEM). */
double fn_ft_loss_grad(fn_ft *f, const int64_t *idx, int m, float **gw, float **gb);

#endif

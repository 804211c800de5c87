/* rt_cmd_run.c — `thaw run SNAPSHOT --input JSON|@FILE [--device cpu|cuda:N]`: restore a
 * snapshot, load its function kind on a device, invoke it once and print the JSON result —
 * how a user tries a model before deploying it. Exit status: 0 success, 1 failure (the
 * function's error is printed as {"error": ...} on stdout and explained on stderr), 2 usage. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <jansson.h>
#include "functions/fn.h"
#include "kernels/kern.h"
#include "pool/pool_gpu.h"
#include "runtime/rt_cli.h"
#include "runtime/rt_model.h"

static const char usage_text[] =
	"usage: thaw run [SNAPSHOT.thaw] --input JSON|@FILE|- [--device cpu|cuda:N] [--kind K]\n"
	"                [--threads N] [--timing] [--stream]\n\n"
	"Restores SNAPSHOT, loads its function kind (metadata \"kind\", or --kind) on the device\n"
	"(default: cuda:0 when a GPU is present, else cpu), runs one invocation with the JSON\n"
	"input (inline, @FILE, or - for stdin) and prints the JSON result. Kinds without weights\n"
	"(echo) need no snapshot: thaw run --kind echo --input '{\"x\": 1}'.\n"
	"  --threads N   CPU threads for restore and the CPU backend (default: all)\n"
	"  --timing      print restore / load / invoke times to stderr\n"
	"  --stream      print each partial result the kind emits (llama: {\"token\": id} per\n"
	"                generated token) as a JSON line as it comes, before the result\n";

/* --stream: one compact JSON line per emitted chunk, flushed at once */
static int print_chunk(void *ctx, json_t *chunk)
{
	(void)ctx;
	char *s = json_dumps(chunk, JSON_COMPACT | JSON_ENCODE_ANY);
	if (!s)
		return -1;
	int rc = printf("%s\n", s) < 0 || fflush(stdout) != 0 ? -1 : 0;
	free(s);
	return rc;
}

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

static json_t *read_input(const char *arg, char *err, size_t errlen)
{
	json_error_t je;
	json_t *j;
	if (!strcmp(arg, "-"))
		j = json_loadf(stdin, JSON_DECODE_ANY, &je);
	else if (arg[0] == '@')
		j = json_load_file(arg + 1, JSON_DECODE_ANY, &je);
	else
		j = json_loads(arg, JSON_DECODE_ANY, &je);
	if (!j)
		snprintf(err, errlen, "--input: %s (line %d, column %d)", je.text, je.line, je.column);
	return j;
}

int rt_run_main(int argc, char **argv)
{
	const char *snap = NULL, *input = NULL, *device = NULL, *kind = NULL;
	int threads = 0, timing = 0, stream = 0, rc = 1;
	char err[1024] = "";
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *n = i + 1 < argc ? argv[i + 1] : NULL;
		if (rt_cli_is_help(a)) {
			fputs(usage_text, stdout);
			return 0;
		} else if (!strcmp(a, "--input") || !strcmp(a, "-i")) {
			if (!n)
				goto usage;
			input = n, i++;
		} else if (!strcmp(a, "--device")) {
			if (!n)
				goto usage;
			device = n, i++;
		} else if (!strcmp(a, "--kind")) {
			if (!n)
				goto usage;
			kind = n, i++;
		} else if (!strcmp(a, "--threads")) {
			char *end;
			long v = n ? strtol(n, &end, 10) : 0;
			if (!n || *end || v < 1 || v > 1024)
				goto usage;
			threads = (int)v, i++;
		} else if (!strcmp(a, "--timing")) {
			timing = 1;
		} else if (!strcmp(a, "--stream")) {
			stream = 1;
		} else if (a[0] == '-' && a[1]) {
			fprintf(stderr, "thaw run: unknown option %s\n\n", a);
			fputs(usage_text, stderr);
			return 2;
		} else if (!snap) {
			snap = a;
		} else {
			goto usage;
		}
	}
	if (!input || (!snap && !kind))
		goto usage;
	if (!device)
		device = kern_cuda_count() > 0 ? "cuda:0" : "cpu";

	json_t *in = read_input(input, err, sizeof err);
	if (!in) {
		fprintf(stderr, "thaw run: %s\n", err);
		return 2;
	}
	kern_dev *dev = NULL;
	pool_gpu *gpu = NULL;
	rt_image *img = NULL;
	rt_model *model = NULL;
	json_t *out = NULL;
	fn_error ferr = {0};
	double t0 = now_s(), t_restore = 0, t_load = 0, t_invoke = 0;
	int e = kern_dev_open(device, threads, &dev);
	if (e < 0) {
		fprintf(stderr, "thaw run: --device %s: %s\n", device,
			e == -EINVAL ? "not cpu or cuda:N" : e == -ENODEV ? "no such device (or a "
			"build without CUDA)" : strerror(-e));
		json_decref(in);
		return e == -EINVAL ? 2 : 1;
	}
	if (snap) {
		if (kern_dev_is_cuda(dev)) {
			pool_gpu_opts go = {0};
			go.device = atoi(strchr(device, ':') ? strchr(device, ':') + 1 : "0");
			if (pool_gpu_open(&gpu, &go, err, sizeof err) < 0) {
				fprintf(stderr, "thaw run: %s\n", err);
				goto done;
			}
		}
		if (rt_image_restore(snap, gpu, 0, threads, &img, err, sizeof err) < 0) {
			fprintf(stderr, "thaw run: %s: %s\n", snap, err);
			goto done;
		}
	}
	t_restore = now_s() - t0;
	t0 = now_s();
	if (rt_model_load(dev, img, kind, &model, &ferr) < 0) {
		fprintf(stderr, "thaw run: load: %s\n", ferr.msg);
		goto done;
	}
	t_load = now_s() - t0;
	t0 = now_s();
	fn_call call = {.in = in, .emit = stream ? print_chunk : NULL};
	e = rt_model_invoke(model, &call, 1);
	out = call.out;
	ferr = call.err;
	t_invoke = now_s() - t0;
	if (ferr.status || !out) {
		if (!ferr.status)
			fn_err(&ferr, 503, "device failure (%s)", strerror(e < 0 ? -e : EIO));
		json_t *ej = fn_error_json(&ferr);
		char *s = json_dumps(ej, JSON_COMPACT);
		printf("%s\n", s);
		free(s);
		json_decref(ej);
		fprintf(stderr, "thaw run: invoke failed (%d): %s\n", ferr.status, ferr.msg);
		goto done;
	}
	char *s = json_dumps(out, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(9));
	printf("%s\n", s ? s : "null");
	free(s);
	rc = 0;
	if (timing)
		fprintf(stderr, "thaw run: device %s, restore %.3f s, load %.3f s, invoke %.3f s\n",
			kern_dev_name(dev), t_restore, t_load, t_invoke);
done:
	json_decref(out);
	json_decref(in);
	rt_model_release(model);
	rt_image_free(img);
	if (gpu)
		pool_gpu_close(gpu);
	kern_dev_close(dev);
	return rc;
usage:
	fputs(usage_text, stderr);
	return 2;
}

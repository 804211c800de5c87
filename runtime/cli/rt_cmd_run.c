/* rt_cmd_run.c — `thaw run SNAPSHOT --input JSON|@FILE [--device cpu|cuda:N]`: restore a
 * snapshot, load its function kind on a device, invoke it once and print the JSON result —
 * how a user tries a model before deploying it. With --prompt TEXT or --chat TEXT (llama
 * snapshots that carry a tokenizer) the text is encoded with the snapshot's tokenizer (--chat:
 * through its chat template, as POST /v1/chat/completions does) and the generated text is
 * printed, token by token as it is decoded when stdout is a terminal. Exit status: 0 success,
 * 1 failure (the function's error is printed as {"error": ...} on stdout — text modes: only
 * on stderr — and explained on stderr), 2 usage or bad input. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <jansson.h>
#include "runtime/base/rt_clock.h"
#include "functions/fn.h"
#include "kernels/kern.h"
#include "pool/pool_gpu.h"
#include "runtime/cli/rt_cli.h"
#include "runtime/sched/rt_model.h"
#include "runtime/tok/rt_tok.h"
#include <unistd.h>

static const char usage_text[] =
	"usage: thaw run [SNAPSHOT.thaw] --input JSON|@FILE|- [--device cpu|cuda:N] [--kind K]\n"
	"                [--threads N] [--timing] [--stream]\n"
	"       thaw run SNAPSHOT.thaw --prompt TEXT | --chat TEXT [--system TEXT]\n"
	"                [--max-tokens N] [--temperature T] [--seed S] [--device ...] [--timing]\n\n"
	"Restores SNAPSHOT, loads its function kind (metadata \"kind\", or --kind) on the device\n"
	"(default: cuda:0 when a GPU is present, else cpu), runs one invocation with the JSON\n"
	"input (inline, @FILE, or - for stdin) and prints the JSON result. Kinds without weights\n"
	"(echo) need no snapshot: thaw run --kind echo --input '{\"x\": 1}'.\n"
	"  --threads N   CPU threads for restore and the CPU backend (default: all)\n"
	"  --timing      print restore / load / invoke times to stderr\n"
	"  --stream      print each partial result the kind emits (llama: {\"token\": id} per\n"
	"                generated token) as a JSON line as it comes, before the result\n"
	"  --prompt TEXT encode TEXT with the snapshot's tokenizer, generate and print the text\n"
	"                (on a terminal each token's text as it is decoded), then a newline\n"
	"  --chat TEXT   the same for one user message rendered with the tokenizer's chat\n"
	"                template (as /v1/chat/completions); --system TEXT adds a system message\n"
	"  --max-tokens N  tokens to generate (default: 16 for --prompt, the rest of the\n"
	"                context for --chat, as the OpenAI routes); --temperature T (default 0:\n"
	"                greedy) and --seed S as the llama kind takes them\n";

/* the text modes: the snapshot's tokenizer turns text into the llama kind's input */
typedef struct run_text {
	tok_tokenizer *tok;
	tok_stream *st;
	int tty;                     /* flush each token's text */
	int failed;                  /* a write or decode failed */
} run_text;

/* emit: {"token": id} -> the newly complete text of the stream */
static int print_token_text(void *ctx, json_t *chunk)
{
	run_text *rt = ctx;
	json_t *id = json_object_get(chunk, "token");
	if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) > INT32_MAX)
		return 0;   /* not a token chunk */
	char *t = NULL;
	size_t n = 0;
	if (tok_stream_push(rt->st, (int32_t)json_integer_value(id), &t, &n) < 0) {
		rt->failed = 1;
		return -1;
	}
	int rc = fwrite(t, 1, n, stdout) != n || (rt->tty && fflush(stdout) != 0) ? -1 : 0;
	free(t);
	rt->failed |= rc < 0;
	return rc;
}

/* builds the llama kind's input for --prompt / --chat from the snapshot's tokenizer and
 * config (eos ids, context, vocabulary). 0; 2 (bad input or usage, err says why); 1 (the
 * snapshot: unreadable, no tokenizer). */
static int text_input(const char *snap, const char *prompt, const char *chat, const char *sys,
		      long long max_tokens, double temperature, int has_temp, long long seed,
		      int has_seed, run_text *rt, json_t **in, char *err, size_t errlen)
{
	snap_file *f = NULL;
	json_t *meta = NULL, *toks = NULL, *stop = NULL;
	int32_t *ids = NULL;
	size_t n = 0;
	char *text = NULL, terr[512];
	int rc = 1, e;
	*in = NULL;
	if ((e = snap_open(&f, snap, terr, sizeof terr)) < 0) {
		snprintf(err, errlen, "%s: %s", snap, terr);
		goto done;
	}
	meta = json_loads(snap_metadata_json(f), 0, NULL);
	if ((e = rt_tok_from_file(f, meta, &rt->tok, terr, sizeof terr)) < 0) {
		snprintf(err, errlen, "%s: %s%s", snap, terr, e == -ENOENT ? " (--prompt and --chat need "
			 "a snapshot packed with a tokenizer: thaw snapshot pack --tokenizer DIR; or give "
			 "token ids with --input)" : "");
		goto done;
	}
	const json_t *cfg = json_object_get(meta, "config");
	if (!json_is_object(cfg))
		cfg = meta;
	const json_t *vs = json_object_get(cfg, "vocab_size"), *mp = json_object_get(cfg, "max_position_embeddings");
	int64_t vocab = json_is_integer(vs) && json_integer_value(vs) > 0 ? json_integer_value(vs)
									    : (int64_t)tok_vocab_size(rt->tok);
	int64_t ctx = json_is_integer(mp) && json_integer_value(mp) > 0 ? json_integer_value(mp) : 2048;
	rc = 2;
	if (chat) {
		tok_msg m[2] = {{"system", sys}, {"user", chat}};
		e = tok_chat(rt->tok, sys ? m : m + 1, sys ? 2 : 1, &text, terr, sizeof terr);
		if (e < 0) {
			snprintf(err, errlen, "--chat: %s%s", terr, e == -ENOTSUP ? ": use --prompt" : "");
			rc = e == -ENOMEM ? 1 : 2;
			goto done;
		}
		e = tok_encode(rt->tok, text, strlen(text), 0, &ids, &n);
	} else {
		e = tok_encode(rt->tok, prompt, strlen(prompt), 1, &ids, &n);
	}
	if (e < 0) {
		snprintf(err, errlen, "%s: %s", chat ? "--chat" : "--prompt",
			 e == -EINVAL ? "not valid UTF-8" : strerror(-e));
		rc = e == -EINVAL ? 2 : 1;
		goto done;
	}
	if (max_tokens < 0)
		max_tokens = chat ? ctx - (int64_t)n : 16;
	if (max_tokens < 1) {
		snprintf(err, errlen, "the prompt's %zu tokens fill the model's context of %lld", n,
			 (long long)ctx);
		goto done;
	}
	/* ids that end the generation, as the OpenAI routes: the config's eos, the tokenizer's,
	 * and for chat the turn enders of the template family */
	int32_t cand[24];
	size_t nc = 0;
	const json_t *eos = json_object_get(cfg, "eos_token_id"), *x;
	size_t i;
	if (json_is_integer(eos))
		cand[nc++] = (int32_t)json_integer_value(eos);
	json_array_foreach(eos, i, x)
		if (json_is_integer(x) && nc < 8)
			cand[nc++] = (int32_t)json_integer_value(x);
	cand[nc++] = tok_eos(rt->tok);
	if (chat)
		nc += tok_stop_ids(rt->tok, cand + nc, sizeof cand / sizeof cand[0] - nc);
	toks = json_array();
	stop = json_array();
	for (size_t k = 0; k < nc; k++) {
		int dup = 0;
		for (size_t j = 0; j < k; j++)
			dup |= cand[j] == cand[k];
		if (!dup && cand[k] >= 0 && cand[k] < vocab)
			json_array_append_new(stop, json_integer(cand[k]));
	}
	for (size_t k = 0; k < n; k++)
		json_array_append_new(toks, json_integer(ids[k]));
	*in = json_pack("{s:O,s:I,s:O,s:f}", "tokens", toks, "max_tokens", (json_int_t)max_tokens,
			"stop", stop, "temperature", has_temp ? temperature : 0.0);
	if (*in && has_seed)
		json_object_set_new(*in, "seed", json_integer(seed));
	if (!*in || tok_stream_new(rt->tok, 1, &rt->st) < 0) {
		snprintf(err, errlen, "out of memory");
		rc = 1;
		goto done;
	}
	rt->tty = isatty(1);
	rc = 0;
done:
	if (rc) {
		json_decref(*in);
		*in = NULL;
	}
	json_decref(toks);
	json_decref(stop);
	json_decref(meta);
	free(ids);
	free(text);
	if (f)
		snap_close(f);
	return rc;
}

/* --stream: one compact JSON line per emitted chunk, flushed at once (a NULL chunk only
 * asks whether anybody still waits: yes) */
static int print_chunk(void *ctx, json_t *chunk)
{
	(void)ctx;
	if (!chunk)
		return 0;
	char *s = json_dumps(chunk, JSON_COMPACT | JSON_ENCODE_ANY);
	if (!s)
		return -1;
	int rc = printf("%s\n", s) < 0 || fflush(stdout) != 0 ? -1 : 0;
	free(s);
	return rc;
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
	const char *prompt = NULL, *chat = NULL, *sys = NULL;
	long long max_tokens = -1, seed = 0;
	double temperature = 0;
	int threads = 0, timing = 0, stream = 0, rc = 1, has_temp = 0, has_seed = 0;
	run_text rt = {0};
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
		} else if (!strcmp(a, "--prompt") || !strcmp(a, "--chat") || !strcmp(a, "--system")) {
			if (!n)
				goto usage;
			*(a[2] == 'p' ? &prompt : a[2] == 'c' ? &chat : &sys) = n, i++;
		} else if (!strcmp(a, "--max-tokens") || !strcmp(a, "--seed")) {
			char *end;
			errno = 0;
			long long v = n ? strtoll(n, &end, 10) : 0;
			if (!n || !*n || *end || errno || (a[2] == 'm' && (v < 1 || v > (1LL << 30)))) {
				fprintf(stderr, "thaw run: %s: '%s' is not %s\n", a, n ? n : "",
					a[2] == 'm' ? "a count from 1 to 2^30" : "an integer");
				return 2;
			}
			if (a[2] == 'm')
				max_tokens = v;
			else
				seed = v, has_seed = 1;
			i++;
		} else if (!strcmp(a, "--temperature")) {
			char *end;
			double v = n ? strtod(n, &end) : 0;
			if (!n || !*n || *end || !(v >= 0 && v <= 100)) {
				fprintf(stderr, "thaw run: --temperature: '%s' is not a number from 0 to 100\n",
					n ? n : "");
				return 2;
			}
			temperature = v, has_temp = 1, i++;
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
	int text = prompt || chat;
	if ((prompt && chat) || (text && (input || !snap || stream)) || (sys && !chat) ||
	    (!text && (max_tokens >= 0 || has_temp || has_seed))) {
		fprintf(stderr, "thaw run: --prompt and --chat take a SNAPSHOT and exclude each other, "
			"--input and --stream; --system goes with --chat; --max-tokens, --temperature "
			"and --seed with either\n\n");
		goto usage;
	}
	if ((!input && !text) || (!snap && !kind))
		goto usage;
	if (!device)
		device = kern_cuda_count() > 0 ? "cuda:0" : "cpu";

	json_t *in = NULL;
	if (text) {
		int trc = text_input(snap, prompt, chat, sys, max_tokens, temperature, has_temp, seed,
				     has_seed, &rt, &in, err, sizeof err);
		if (trc) {
			fprintf(stderr, "thaw run: %s\n", err);
			tok_stream_free(rt.st);
			tok_free(rt.tok);
			return trc;
		}
	} else if (!(in = read_input(input, err, sizeof err))) {
		fprintf(stderr, "thaw run: %s\n", err);
		return 2;
	}
	kern_dev *dev = NULL;
	pool_gpu *gpu = NULL;
	rt_image *img = NULL;
	rt_model *model = NULL;
	json_t *out = NULL;
	fn_error ferr = {0};
	double t0 = rt_clock_mono_s(), t_restore = 0, t_load = 0, t_invoke = 0;
	int e = kern_dev_open(device, threads, &dev);
	if (e < 0) {
		fprintf(stderr, "thaw run: --device %s: %s\n", device,
			e == -EINVAL ? "not cpu or cuda:N" : e == -ENODEV ? "no such device (or a "
			"build without CUDA)" : strerror(-e));
		json_decref(in);
		tok_stream_free(rt.st);
		tok_free(rt.tok);
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
	t_restore = rt_clock_mono_s() - t0;
	t0 = rt_clock_mono_s();
	if (rt_model_load(dev, img, kind, NULL, &model, &ferr) < 0) {
		fprintf(stderr, "thaw run: load: %s\n", ferr.msg);
		goto done;
	}
	t_load = rt_clock_mono_s() - t0;
	t0 = rt_clock_mono_s();
	fn_call call = {.in = in, .emit = text ? print_token_text : stream ? print_chunk : NULL,
			.emit_ctx = text ? &rt : NULL};
	e = rt_model_invoke(model, &call, 1);
	out = call.out;
	ferr = call.err;
	t_invoke = rt_clock_mono_s() - t0;
	if (ferr.status || !out) {
		if (!ferr.status)
			fn_err(&ferr, 503, "device failure (%s)", strerror(e < 0 ? -e : EIO));
		if (text && rt.failed)
			fn_err(&ferr, 500, "writing the text failed (%s)", strerror(errno ? errno : EIO));
		json_t *ej = text ? NULL : fn_error_json(&ferr);
		char *s = ej ? json_dumps(ej, JSON_COMPACT) : NULL;
		if (s)
			printf("%s\n", s);
		else if (text)
			printf("\n");
		free(s);
		json_decref(ej);
		fprintf(stderr, "thaw run: invoke failed (%d): %s\n", ferr.status, ferr.msg);
		goto done;
	}
	if (text) {   /* the bytes the decoder still held, then a newline */
		char *t = NULL;
		size_t tn = 0;
		if (tok_stream_finish(rt.st, &t, &tn) < 0 || fwrite(t, 1, tn, stdout) != tn ||
		    printf("\n") < 0 || fflush(stdout) != 0) {
			free(t);
			fprintf(stderr, "thaw run: writing the text failed\n");
			goto done;
		}
		free(t);
		if (timing)
			fprintf(stderr, "thaw run: %lld tokens, finish_reason %s\n",
				(long long)json_array_size(json_object_get(out, "tokens")),
				json_string_value(json_object_get(out, "finish_reason")) ?
				json_string_value(json_object_get(out, "finish_reason")) : "?");
	} else {
		char *s = json_dumps(out, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(9));
		printf("%s\n", s ? s : "null");
		free(s);
	}
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
	tok_stream_free(rt.st);
	tok_free(rt.tok);
	return rc;
usage:
	fputs(usage_text, stderr);
	return 2;
}

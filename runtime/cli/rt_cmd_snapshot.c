/* rt_cmd_snapshot.c — `thaw snapshot pack|inspect|verify|unpack|restore` (push|list|rm talk
 * to a server: rt_cmd_upload.c): the CLI over the
 * snapshot library (snapshot/snap.h, snap_pack.h). Exit status: 0 success, 1 failure (the
 * message names the file, chunk and tensor), 2 bad usage. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <jansson.h>
#include "functions/fn.h"
#include "pool/pool_gpu.h"
#include "runtime/cli/rt_cli.h"
#include "runtime/cli/rt_gguf.h"
#include "runtime/jobs/rt_quant.h"
#include "runtime/tok/rt_tok.h"
#include "snapshot/snap.h"
#include "snapshot/snap_gguf.h"
#include "snapshot/snap_pack.h"
#include "snapshot/snap_sinks.h"

static const char usage_text[] =
	"usage: thaw snapshot COMMAND ...\n\n"
	"  pack SRC -o OUT.thaw [--kind K] [--threads N] [--chunk-size SIZE] [--level L]\n"
	"       [--metadata JSON] [--quantize int8|int8:32|--int8] [--tokenizer DIR|FILE|--no-tokenizer]\n"
	"       [--progress|--quiet]\n"
	"      SRC: a .safetensors file, or a directory with model.safetensors or\n"
	"      model.safetensors.index.json (shards), plus config.json when present; or a\n"
	"      llama.cpp .gguf file (architecture llama: tensors mapped to the HF layout, F32/F16/\n"
	"      BF16 kept, Q8_0 to int8 with 32-blocks, Q4_0/Q4_K/Q5_K/Q6_K decoded to BF16, its\n"
	"      tokenizer carried; see docs/snapshot-format.md, \"GGUF import\").\n"
	"      --kind: the function kind (default: llama if config.json says so, else unknown);\n"
	"      --metadata: a JSON object merged into the snapshot's metadata.\n"
	"      --quantize: int8 weight-only matrices (per-row scales, or per 32-block with int8:32;\n"
	"      --int8 is int8:32, the only int8 form of a GGUF source);\n"
	"      embeddings, norms and biases keep their dtype.\n"
	"      --tokenizer: carry this tokenizer.json (and the tokenizer_config.json beside it) in\n"
	"      the snapshot (an attachment after the metadata, read only when needed); by default\n"
	"      a SRC directory's tokenizer.json is carried when present (--no-tokenizer: don't).\n"
	"  inspect F [--json]          tensors, dtypes, shapes, sizes, codec mix, ratio\n"
	"  verify F [--threads N] [--quiet]  check every chunk; exit 0 when all are good\n"
	"  unpack F -o OUT.safetensors [--quiet]  write the tensors back as safetensors\n"
	"  restore F [--device cpu|cuda:N] [--repeat N] [--threads N] [--io MODE]\n"
	"       [--queue-depth N] [--cold] [--no-verify] [--json] [--quiet]\n"
	"      restore the image and report GB/s of raw bytes and where the time went.\n"
	"      --io auto|direct|uring|pread|mmap; --cold drops the file from the page cache\n"
	"      before each run (posix_fadvise DONTNEED).\n"
	"  verify, unpack and restore draw a progress bar on stderr when it is a terminal (not\n"
	"  with --json or --quiet); pack too, each phase on its own line (--progress: also when\n"
	"  stderr is not a terminal).\n"
	"On a running server (--url U, else $THAW_URL, else http://127.0.0.1:8080; $THAW_API_KEY\n"
	"with admin scope):\n"
	"  push F [--name N] [--force] [--quiet]  verify F here, then upload it (streamed, with a\n"
	"      progress bar) into the server's DATA/snapshots as N (default: F's base name);\n"
	"      --force replaces a snapshot that deployed revisions use\n"
	"  list [--json]               the server's snapshots: size, kind, the revisions using each\n"
	"  rm NAME                     delete one (refused while a revision uses it)\n";

static int usage_err(const char *fmt, const char *arg)
{
	fprintf(stderr, "thaw snapshot: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\n\n%s", usage_text);
	return 2;
}

static int parse_int(const char *s, long lo, long hi, long *out)
{
	char *end;
	errno = 0;
	long v = s ? strtol(s, &end, 10) : 0;
	if (!s || errno || end == s || *end || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

/* parse_size: "4096", "64K", "2M", "2MiB". */
static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = s ? strtoull(s, &end, 10) : 0;
	if (!s || errno || end == s || *s == '-')
		return -1;
	if (*end == 'K' || *end == 'k')
		v <<= 10, end++;
	else if (*end == 'M' || *end == 'm')
		v <<= 20, end++;
	else if (*end == 'G' || *end == 'g')
		v <<= 30, end++;
	if (*end == 'i' && end[1] == 'B')
		end += 2;
	else if (*end == 'B')
		end++;
	if (*end)
		return -1;
	*out = v;
	return 0;
}

static int parse_io(const char *s, snap_io_mode *m)
{
	static const char *names[] = {"auto", "direct", "uring", "pread", "mmap"};
	for (int i = 0; i < 5; i++)
		if (s && strcmp(s, names[i]) == 0) {
			*m = (snap_io_mode)i;
			return 0;
		}
	return -1;
}

/* ---- pack ---- */

/* pack_kind_of names the kind of a model packed without --kind: the kind that serves its
 * config.json model_type (fn_kind_for_model_type), else NULL ("unknown"). */
static const char *pack_kind_of(const char *config_json, void *user)
{
	(void)user;
	json_t *c = config_json ? json_loads(config_json, 0, NULL) : NULL;
	const fn_kind *k = fn_kind_for_model_type(json_string_value(json_object_get(c, "model_type")));
	json_decref(c);
	return k ? k->name : NULL;
}

static void pack_report(const snap_pack_stats *st, const char *out, int show)
{
	char b1[32], b2[32];
	if (show != 0 || isatty(1))
		printf("packed %zu tensors: %s image -> %s %s (ratio %.3f) in %.2f s (%.0f MB/s); "
		       "chunks: %zu hplanes, %zu planes, %zu zstd, %zu raw\n",
		       st->n_tensors, rt_cli_fmt_bytes((double)st->raw_bytes, b1, sizeof b1),
		       rt_cli_fmt_bytes((double)st->file_bytes, b2, sizeof b2), out,
		       st->raw_bytes ? (double)st->file_bytes / (double)st->raw_bytes : 0.0, st->wall_s,
		       st->wall_s > 0 ? st->raw_bytes / st->wall_s / 1e6 : 0.0,
		       st->codec_chunks[SNAP_CODEC_HPLANES], st->codec_chunks[SNAP_CODEC_PLANES],
		       st->codec_chunks[SNAP_CODEC_ZSTD], st->codec_chunks[SNAP_CODEC_RAW]);
}

/* set_meta_key returns a copy of the JSON object text meta (NULL: {}) with key set to the JSON
 * value text; NULL when meta is not an object, already has key, or on error */
static char *set_meta_key(const char *meta, const char *key, const char *value)
{
	json_t *m = meta ? json_loads(meta, 0, NULL) : json_object(), *v = json_loads(value, JSON_DECODE_ANY, NULL);
	char *r = NULL;
	if (json_is_object(m) && v && !json_object_get(m, key) && !json_object_set(m, key, v))
		r = json_dumps(m, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(m);
	json_decref(v);
	return r;
}

/* pack_gguf: `thaw snapshot pack model.gguf` (runtime/cli/rt_gguf.h). The tokenizer is the
 * file's own unless --tokenizer names another or --no-tokenizer none; it must fit the model. */
static int pack_gguf(const char *src, const char *out, const snap_pack_opts *o, int int8,
		     const char *tok, int no_tok, int show)
{
	char err[1024], warn[512];
	rt_gguf *g = NULL;
	json_t *ftok = NULL, *fcfg = NULL;
	char *meta = NULL, *attach = NULL, *meta2 = NULL, *tok_path = NULL, *cfg_path = NULL;
	size_t attach_len = 0;
	int rc = 1;
	snap_pack_stats st;
	rt_cli_bar bar;
	rt_gguf_opts go = {.int8 = int8, .threads = o->w.threads};
	snap_pack_opts po = *o;
	po.transform = NULL;   /* int8 is the import's: Q8_0 blocks are kept exactly */
	po.transform_user = NULL;
	if (rt_gguf_import(src, &go, &g, err, sizeof err)) {
		fprintf(stderr, "thaw snapshot pack: %s\n", err);
		return 1;
	}
	json_t *tj = NULL, *cj = NULL;
	const char *why = "";
	const char *tname = "the GGUF tokenizer", *cname = "the GGUF tokenizer config";
	if (tok) {
		json_error_t je;
		if (rt_tok_find(tok, 1, &tok_path, &cfg_path, err, sizeof err)) {
			fprintf(stderr, "thaw snapshot pack: %s\n", err);
			goto out;
		}
		ftok = json_load_file(tok_path, 0, &je);
		if (json_is_object(ftok) && cfg_path)
			fcfg = json_load_file(cfg_path, 0, &je);
		if (!json_is_object(ftok) || (cfg_path && !json_is_object(fcfg))) {
			fprintf(stderr, "thaw snapshot pack: %s: not a JSON object: %s (line %d)\n", je.source, je.text, je.line);
			goto out;
		}
		tj = ftok, cj = fcfg, tname = tok_path, cname = cfg_path ? cfg_path : "tokenizer_config.json";
	} else if (!no_tok) {
		int trc = rt_gguf_tokenizer(g, &tj, &cj, &why);
		if (trc) {
			tj = cj = NULL;
			if (trc != -ENOENT || show != 0)
				fprintf(stderr, "thaw snapshot pack: %s: packed without a tokenizer: %s\n", src, why);
		}
	}
	if (tj) {
		if (rt_tok_check_vocab(rt_gguf_vocab(g), "rows of token_embd.weight", tj, cj, rt_gguf_config(g), tname,
				       cname, err, sizeof err) < 0 ||
		    rt_tok_pack_metadata_obj(o->extra_metadata, tj, cj, &meta, &attach, &attach_len, warn, sizeof warn,
					     err, sizeof err)) {
			fprintf(stderr, "thaw snapshot pack: %s\n", err);
			goto out;
		}
		if (warn[0])
			fprintf(stderr, "thaw snapshot pack: warning: %s is carried but thaw cannot use it: %s\n", tname, warn);
		po.extra_metadata = meta;
		po.w.attachment = attach;
		po.w.attachment_len = attach_len;
	}
	if (rt_gguf_quantization(g)) {
		if (!(meta2 = set_meta_key(po.extra_metadata, "quantization", rt_gguf_quantization(g)))) {
			fprintf(stderr, "thaw snapshot pack: --metadata: not a JSON object, or it already has \"quantization\"\n");
			goto out;
		}
		po.extra_metadata = meta2;
	}
	rt_cli_bar_init(&bar, show > 0 || (show < 0 && isatty(2)), NULL);
	if (bar.on) {
		fprintf(stderr, "thaw snapshot pack: %s -> %s (GGUF converted in %.2f s)\n", src, out, rt_gguf_convert_s(g));
		po.w.progress = rt_cli_bar_update;
		po.w.progress_user = &bar;
	}
	po.kind_of = pack_kind_of;
	int prc = snap_pack_from(rt_gguf_source(g), out, &po, &st, err, sizeof err);
	rt_cli_bar_end(&bar);
	if (prc) {
		fprintf(stderr, "thaw snapshot pack: %s\n", err);
		goto out;
	}
	pack_report(&st, out, show);
	rc = 0;
out:
	json_decref(ftok);
	json_decref(fcfg);
	free(tok_path);
	free(cfg_path);
	free(meta);
	free(meta2);
	free(attach);
	rt_gguf_free(g);
	return rc;
}

static int cmd_pack(int argc, char **argv)
{
	const char *src = NULL, *out = NULL, *tok = NULL;
	int no_tok = 0;
	snap_pack_opts o = {0};
	long v;
	uint64_t sz;
	char err[1024];
	snap_pack_stats st;
	rt_quant q;
	int show = -1;             /* the bar: -1 on a terminal, 0 off (--quiet), 1 on (--progress) */
	rt_cli_bar bar;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *n = i + 1 < argc ? argv[i + 1] : NULL;
		if (rt_cli_is_help(a)) {
			fputs(usage_text, stdout);
			return 0;
		} else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
			if (!n)
				return usage_err("%s needs a file", a);
			out = n, i++;
		} else if (!strcmp(a, "--kind")) {
			if (!n || !*n)
				return usage_err("%s needs a name", a);
			o.kind = n, i++;
		} else if (!strcmp(a, "--threads")) {
			if (parse_int(n, 1, 1024, &v))
				return usage_err("--threads: bad count '%s'", n ? n : "");
			o.w.threads = (int)v, i++;
		} else if (!strcmp(a, "--chunk-size")) {
			if (parse_size(n, &sz) || sz < 4096 || sz > (64u << 20) || sz % 4096)
				return usage_err("--chunk-size: '%s' must be a multiple of 4096 between 4K and 64M", n ? n : "");
			o.w.chunk_size = (uint32_t)sz, i++;
		} else if (!strcmp(a, "--level")) {
			if (parse_int(n, -100, 22, &v) || v == 0)
				return usage_err("--level: bad zstd level '%s'", n ? n : "");
			o.w.zstd_level = (int)v, i++;
		} else if (!strcmp(a, "--metadata")) {
			if (!n)
				return usage_err("%s needs a JSON object", a);
			o.extra_metadata = n, i++;
		} else if (!strcmp(a, "--quantize")) {   /* int8 weight-only (runtime/jobs/rt_quant.c) */
			if (rt_quant_parse(n, &q))
				return usage_err("--quantize: '%s' is not int8 or int8:32", n ? n : "");
			o.transform = rt_quant_hook, o.transform_user = &q, i++;
			o.transform_phase = "quantizing";
		} else if (!strcmp(a, "--int8")) {
			rt_quant_parse("int8:32", &q);
			o.transform = rt_quant_hook, o.transform_user = &q;
			o.transform_phase = "quantizing";
		} else if (!strcmp(a, "--tokenizer")) {
			if (!n || !*n)
				return usage_err("%s needs a directory or tokenizer.json", a);
			tok = n, i++;
		} else if (!strcmp(a, "--no-tokenizer")) {
			no_tok = 1;
		} else if (!strcmp(a, "--progress")) {
			show = 1;
		} else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
			show = 0;
		} else if (a[0] == '-') {
			return usage_err("pack: unknown option %s", a);
		} else if (!src) {
			src = a;
		} else {
			return usage_err("pack: unexpected argument %s", a);
		}
	}
	if (!src || !out)
		return usage_err("%s", "pack needs SRC and -o OUT.thaw");
	if (no_tok && tok)
		return usage_err("%s", "--tokenizer and --no-tokenizer exclude each other");
	if (snap_gguf_is_gguf(src)) {
		if (o.transform && q.block != 32)
			return usage_err("%s", "a GGUF source is quantized in 32-element blocks: use --int8 (or --quantize int8:32)");
		return pack_gguf(src, out, &o, o.transform != NULL, tok, no_tok, show);
	}
	/* the tokenizer travels in the snapshot's attachment (runtime/tok/rt_tok.c) */
	char *tok_path = NULL, *cfg_path = NULL, *meta = NULL, *attach = NULL, warn[512];
	size_t attach_len = 0;
	if (!no_tok && rt_tok_find(tok ? tok : src, tok != NULL, &tok_path, &cfg_path, err, sizeof err) && tok) {
		fprintf(stderr, "thaw snapshot pack: %s\n", err);
		return 1;
	}
	if (tok_path && rt_tok_check_model(src, tok_path, cfg_path, err, sizeof err) < 0) {
		fprintf(stderr, "thaw snapshot pack: %s\n", err);
		free(tok_path);
		free(cfg_path);
		return 1;
	}
	if (tok_path) {
		int rc = rt_tok_pack_metadata(o.extra_metadata, tok_path, cfg_path, &meta, &attach,
					      &attach_len, warn, sizeof warn, err, sizeof err);
		if (rc == 0 && warn[0])
			fprintf(stderr, "thaw snapshot pack: warning: %s is carried but thaw cannot use it: %s\n",
				tok_path, warn);
		free(tok_path);
		free(cfg_path);
		if (rc) {
			fprintf(stderr, "thaw snapshot pack: %s\n", err);
			return 1;
		}
		o.extra_metadata = meta;
		o.w.attachment = attach;   /* the tokenizer after the metadata (format 1.1) */
		o.w.attachment_len = attach_len;
	}
	/* one labelled bar line per phase: quantizing (with --quantize), compressing */
	rt_cli_bar_init(&bar, show > 0 || (show < 0 && isatty(2)), NULL);
	if (bar.on) {
		fprintf(stderr, "thaw snapshot pack: %s -> %s\n", src, out);
		o.w.progress = rt_cli_bar_update;
		o.w.progress_user = &bar;
	}
	o.kind_of = pack_kind_of;
	int prc = snap_pack(src, out, &o, &st, err, sizeof err);
	rt_cli_bar_end(&bar);
	free(meta);
	free(attach);
	if (prc) {
		fprintf(stderr, "thaw snapshot pack: %s\n", err);
		return 1;
	}
	pack_report(&st, out, show);
	return 0;
}

/* ---- inspect ---- */

static void shape_str(const snap_tensor *t, char *buf, size_t len)
{
	size_t o = 0;
	o += (size_t)snprintf(buf + o, len - o, "[");
	for (uint32_t d = 0; d < t->ndim && o < len; d++)
		o += (size_t)snprintf(buf + o, len - o, "%s%" PRIu64, d ? ", " : "", t->shape[d]);
	if (o < len)
		snprintf(buf + o, len - o, "]");
}

static int cmd_inspect(int argc, char **argv)
{
	const char *path = NULL;
	int as_json = 0;
	char err[1024];
	snap_file *f;

	for (int i = 1; i < argc; i++) {
		if (rt_cli_is_help(argv[i])) {
			fputs(usage_text, stdout);
			return 0;
		} else if (!strcmp(argv[i], "--json")) {
			as_json = 1;
		} else if (argv[i][0] == '-') {
			return usage_err("inspect: unknown option %s", argv[i]);
		} else if (!path) {
			path = argv[i];
		} else {
			return usage_err("inspect: unexpected argument %s", argv[i]);
		}
	}
	if (!path)
		return usage_err("%s", "inspect needs a snapshot file");
	if (snap_open(&f, path, err, sizeof err)) {
		fprintf(stderr, "thaw snapshot inspect: %s\n", err);
		return 1;
	}
	uint64_t craw[SNAP_CODEC_COUNT] = {0}, cstored[SNAP_CODEC_COUNT] = {0};
	size_t cn[SNAP_CODEC_COUNT] = {0};
	for (size_t i = 0; i < snap_chunk_count(f); i++) {
		const snap_chunk *c = snap_chunk_at(f, i);
		cn[c->codec]++;
		craw[c->codec] += c->raw_size;
		cstored[c->codec] += c->stored_size;
	}
	uint64_t dt_bytes[SNAP_DTYPE_COUNT] = {0};
	size_t dt_n[SNAP_DTYPE_COUNT] = {0};
	for (size_t i = 0; i < snap_tensor_count(f); i++) {
		dt_bytes[snap_tensor_at(f, i)->dtype] += snap_tensor_at(f, i)->nbytes;
		dt_n[snap_tensor_at(f, i)->dtype]++;
	}
	double ratio = snap_image_size(f) ? (double)snap_file_size(f) / (double)snap_image_size(f) : 0;
	if (as_json) {
		json_t *j = json_object(), *codecs = json_object(), *ts = json_array(), *dts = json_object();
		json_object_set_new(j, "file", json_string(path));
		json_object_set_new(j, "file_bytes", json_integer((json_int_t)snap_file_size(f)));
		json_object_set_new(j, "image_bytes", json_integer((json_int_t)snap_image_size(f)));
		json_object_set_new(j, "ratio", json_real(ratio));
		json_object_set_new(j, "kind", json_string(snap_kind(f)));
		json_object_set_new(j, "chunk_size", json_integer(snap_chunk_size(f)));
		json_object_set_new(j, "chunks", json_integer((json_int_t)snap_chunk_count(f)));
		for (int c = 0; c < SNAP_CODEC_COUNT; c++)
			json_object_set_new(codecs, snap_codec_name(c),
					    json_pack("{s:I,s:I,s:I}", "chunks", (json_int_t)cn[c], "raw_bytes",
						      (json_int_t)craw[c], "stored_bytes", (json_int_t)cstored[c]));
		json_object_set_new(j, "codecs", codecs);
		for (int d = 1; d < SNAP_DTYPE_COUNT; d++)
			if (dt_n[d])
				json_object_set_new(dts, snap_dtype_name(d), json_pack("{s:I,s:I}", "tensors",
						    (json_int_t)dt_n[d], "bytes", (json_int_t)dt_bytes[d]));
		json_object_set_new(j, "dtypes", dts);
		for (size_t i = 0; i < snap_tensor_count(f); i++) {
			const snap_tensor *t = snap_tensor_at(f, i);
			json_t *shape = json_array();
			for (uint32_t d = 0; d < t->ndim; d++)
				json_array_append_new(shape, json_integer((json_int_t)t->shape[d]));
			json_array_append_new(ts, json_pack("{s:s,s:s,s:o,s:I,s:I}", "name", t->name, "dtype",
							    t->dtype_name, "shape", shape, "offset",
							    (json_int_t)t->offset, "nbytes", (json_int_t)t->nbytes));
		}
		json_object_set_new(j, "tensors", ts);
		char *sum = rt_tok_meta_summary(snap_metadata_json(f));
		json_object_set_new(j, "metadata", json_loads(sum ? sum : snap_metadata_json(f), 0, NULL));
		free(sum);
		json_dumpf(j, stdout, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
		printf("\n");
		json_decref(j);
	} else {
		printf("%s: thaw snapshot, %zu tensors, kind %s\n", path, snap_tensor_count(f), snap_kind(f));
		printf("size: %" PRIu64 " bytes file, %" PRIu64 " bytes image, ratio %.4f\n", snap_file_size(f),
		       snap_image_size(f), ratio);
		printf("chunks: %zu of up to %u bytes;", snap_chunk_count(f), snap_chunk_size(f));
		char b1[32], b2[32];
		for (int c = 0; c < SNAP_CODEC_COUNT; c++)
			if (cn[c])
				printf(" %s %zu (%s raw -> %s, %.3f)", snap_codec_name(c), cn[c],
				       rt_cli_fmt_bytes((double)craw[c], b1, sizeof b1),
				       rt_cli_fmt_bytes((double)cstored[c], b2, sizeof b2),
				       craw[c] ? (double)cstored[c] / (double)craw[c] : 0.0);
		printf("\ndtypes:");
		for (int d = 1; d < SNAP_DTYPE_COUNT; d++)
			if (dt_n[d])
				printf(" %s %zu tensors %" PRIu64 " bytes;", snap_dtype_name(d), dt_n[d], dt_bytes[d]);
		printf("\n%-48s %-8s %-24s %14s %14s\n", "tensor", "dtype", "shape", "bytes", "offset");
		for (size_t i = 0; i < snap_tensor_count(f); i++) {
			const snap_tensor *t = snap_tensor_at(f, i);
			char sh[256];
			shape_str(t, sh, sizeof sh);
			printf("%-48s %-8s %-24s %14" PRIu64 " %14" PRIu64 "\n", t->name, t->dtype_name, sh, t->nbytes,
			       t->offset);
		}
		char *sum = rt_tok_meta_summary(snap_metadata_json(f));
		printf("metadata: %s\n", sum ? sum : snap_metadata_json(f));
		free(sum);
	}
	snap_close(f);
	return 0;
}

/* ---- verify / unpack / restore share option parsing ---- */

typedef struct ropts {
	const char *path, *out;
	snap_restore_opts o;
	int device;                /* -1 cpu */
	long repeat;
	int cold, as_json, quiet;
	rt_cli_bar bar;            /* on a terminal, without --json or --quiet */
} ropts;

static int parse_ropts(int argc, char **argv, ropts *r, int allow_out, int allow_restore)
{
	long v;
	memset(r, 0, sizeof *r);
	r->device = -1;
	r->repeat = 1;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *n = i + 1 < argc ? argv[i + 1] : NULL;
		if (rt_cli_is_help(a)) {
			fputs(usage_text, stdout);
			return 0;
		} else if (!strcmp(a, "--threads")) {
			if (parse_int(n, 1, 1024, &v))
				return usage_err("--threads: bad count '%s'", n ? n : "");
			r->o.threads = (int)v, i++;
		} else if (!strcmp(a, "--io")) {
			if (parse_io(n, &r->o.io))
				return usage_err("--io: '%s' is not auto, direct, uring, pread or mmap", n ? n : "");
			i++;
		} else if (!strcmp(a, "--queue-depth")) {
			if (parse_int(n, 1, 4096, &v))
				return usage_err("--queue-depth: bad depth '%s'", n ? n : "");
			r->o.queue_depth = (int)v, i++;
		} else if (allow_out && (!strcmp(a, "-o") || !strcmp(a, "--output"))) {
			if (!n)
				return usage_err("%s needs a file", a);
			r->out = n, i++;
		} else if (allow_restore && !strcmp(a, "--device")) {
			if (n && !strcmp(n, "cpu"))
				r->device = -1;
			else if (n && !strncmp(n, "cuda:", 5) && !parse_int(n + 5, 0, 1023, &v))
				r->device = (int)v;
			else if (n && !strcmp(n, "cuda"))
				r->device = 0;
			else
				return usage_err("--device: '%s' is not cpu or cuda:N", n ? n : "");
			i++;
		} else if (allow_restore && !strcmp(a, "--repeat")) {
			if (parse_int(n, 1, 1000, &v))
				return usage_err("--repeat: bad count '%s'", n ? n : "");
			r->repeat = v, i++;
		} else if (allow_restore && !strcmp(a, "--cold")) {
			r->cold = 1;
		} else if (allow_restore && !strcmp(a, "--no-verify")) {
			r->o.no_verify = 1;
		} else if (allow_restore && !strcmp(a, "--json")) {
			r->as_json = 1;
		} else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
			r->quiet = 1;
		} else if (a[0] == '-') {
			return usage_err("unknown option %s", a);
		} else if (!r->path) {
			r->path = a;
		} else {
			return usage_err("unexpected argument %s", a);
		}
	}
	if (!r->path)
		return usage_err("%s", "a snapshot file is needed");
	if (allow_out && !r->out)
		return usage_err("%s", "unpack needs -o OUT.safetensors");
	rt_cli_bar_init(&r->bar, !r->quiet && !r->as_json && isatty(2), NULL);
	if (r->bar.on) {
		r->o.progress = rt_cli_bar_update;
		r->o.progress_user = &r->bar;
	}
	return -1;
}

static int cmd_verify(int argc, char **argv)
{
	ropts r;
	char err[1024];
	snap_file *f;
	snap_restore_stats st;
	long bad;
	int rc = parse_ropts(argc, argv, &r, 0, 0);
	if (rc >= 0)
		return rc;
	if (snap_open(&f, r.path, err, sizeof err)) {
		fprintf(stderr, "thaw snapshot verify: %s\n", err);
		return 1;
	}
	rc = snap_verify(f, &r.o, &st, &bad, err, sizeof err);
	rt_cli_bar_end(&r.bar);
	if (rc) {
		fprintf(stderr, "thaw snapshot verify: %s\n", err);
		snap_close(f);
		return 1;
	}
	printf("%s: ok: %zu tensors, %zu chunks, %" PRIu64 " bytes verified in %.3f s (%s)\n", r.path,
	       snap_tensor_count(f), snap_chunk_count(f), snap_image_size(f), st.wall_s, snap_io_mode_name(st.io));
	snap_close(f);
	return 0;
}

static int cmd_unpack(int argc, char **argv)
{
	ropts r;
	char err[1024];
	snap_file *f;
	snap_restore_stats st;
	int rc = parse_ropts(argc, argv, &r, 1, 0);
	if (rc >= 0)
		return rc;
	if (snap_open(&f, r.path, err, sizeof err)) {
		fprintf(stderr, "thaw snapshot unpack: %s\n", err);
		return 1;
	}
	rc = snap_unpack(f, r.out, &r.o, &st, err, sizeof err);
	rt_cli_bar_end(&r.bar);
	if (rc) {
		fprintf(stderr, "thaw snapshot unpack: %s\n", err);
		snap_close(f);
		return 1;
	}
	printf("%s: wrote %zu tensors to %s\n", r.path, snap_tensor_count(f), r.out);
	snap_close(f);
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void drop_cache(const char *path)
{
	int fd = snap_open_regular(path, 0);
	if (fd >= 0) {
		fdatasync(fd);
		posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
		close(fd);
	}
}

static int cmd_restore(int argc, char **argv)
{
	ropts r;
	char err[1024];
	snap_file *f = NULL;
	pool_gpu *gpu = NULL;
	void *dst = NULL;
	double *gbs = NULL;
	int rc = parse_ropts(argc, argv, &r, 0, 1);
	if (rc >= 0)
		return rc;
	if (snap_open(&f, r.path, err, sizeof err)) {
		fprintf(stderr, "thaw snapshot restore: %s\n", err);
		return 1;
	}
	uint64_t img = snap_image_size(f);
	rc = 1;
	if (r.device >= 0) {
		pool_gpu_opts po = {.device = r.device, .slot_bytes = snap_chunk_size(f) > (4u << 20) ? snap_chunk_size(f) : (4u << 20)};
		if (pool_gpu_open(&gpu, &po, err, sizeof err)) {
			fprintf(stderr, "thaw snapshot restore: --device cuda:%d: %s\n", r.device, err);
			goto out;
		}
		if (pool_gpu_alloc(gpu, img, &dst)) {
			fprintf(stderr, "thaw snapshot restore: cannot allocate %" PRIu64 " bytes on cuda:%d\n", img, r.device);
			goto out;
		}
		if (!r.as_json)
			printf("device cuda:%d (%s): context + %d pinned staging slots of %zu bytes set up once in %.3f s\n",
			       r.device, pool_gpu_name(gpu), pool_gpu_slot_count(gpu), pool_gpu_slot_bytes(gpu),
			       pool_gpu_open_s(gpu));
	} else {
		dst = aligned_alloc(4096, ((img + 4095) / 4096 * 4096 + 4096));
		if (!dst) {
			fprintf(stderr, "thaw snapshot restore: cannot allocate %" PRIu64 " bytes of host memory\n", img);
			goto out;
		}
		memset(dst, 0, ((img + 4095) / 4096 * 4096 + 4096));   /* fault the pages in before timing */
	}
	gbs = calloc((size_t)r.repeat, sizeof *gbs);
	if (!gbs)
		goto out;
	json_t *runs = json_array();
	for (long k = 0; k < r.repeat; k++) {
		snap_restore_stats st;
		char phase[64];
		if (r.cold)
			drop_cache(r.path);
		if (r.repeat > 1) {
			snprintf(phase, sizeof phase, "restoring %ld/%ld", k + 1, r.repeat);
			r.o.progress_phase = phase;
		}
		int e = gpu ? snap_restore_gpu(f, gpu, dst, &r.o, &st, err, sizeof err)
			    : snap_restore_host(f, dst, img, &r.o, &st, err, sizeof err);
		rt_cli_bar_end(&r.bar);
		if (e) {
			fprintf(stderr, "thaw snapshot restore: %s\n", err);
			json_decref(runs);
			goto out;
		}
		gbs[k] = st.wall_s > 0 ? img / st.wall_s / 1e9 : 0;
		if (r.as_json) {
			json_array_append_new(runs, json_pack("{s:f,s:f,s:f,s:f,s:f,s:I,s:I,s:i,s:s,s:s}",
				"wall_s", st.wall_s, "gbps_raw", gbs[k], "read_s", st.read_s, "decode_s", st.decode_s,
				"copy_s", st.copy_s, "raw_bytes", (json_int_t)st.raw_bytes, "stored_bytes",
				(json_int_t)st.stored_bytes, "threads", st.threads, "io", snap_io_mode_name(st.io),
				"io_note", st.io_note));
		} else {
			char b1[32], b2[32];
			printf("restore %ld/%ld to %s: %s raw in %.3f s = %.2f GB/s raw (%s read, %.2f GB/s); "
			       "%s%s%s, %d threads; read-wait %.3f s, decode %.3f s/thread, copy %.3f s\n",
			       k + 1, r.repeat, gpu ? "GPU" : "host", rt_cli_fmt_bytes((double)img, b1, sizeof b1),
			       st.wall_s, gbs[k], rt_cli_fmt_bytes((double)st.stored_bytes, b2, sizeof b2),
			       st.wall_s > 0 ? st.stored_bytes / st.wall_s / 1e9 : 0.0, snap_io_mode_name(st.io),
			       st.io_note[0] ? ": " : "", st.io_note, st.threads, st.read_s, st.decode_s, st.copy_s);
			fflush(stdout);
		}
	}
	qsort(gbs, (size_t)r.repeat, sizeof *gbs, cmp_double);
	double med = r.repeat % 2 ? gbs[r.repeat / 2] : (gbs[r.repeat / 2 - 1] + gbs[r.repeat / 2]) / 2;
	if (r.as_json) {
		json_t *j = json_pack("{s:s,s:s,s:I,s:f,s:f,s:o}", "file", r.path, "device",
				      gpu ? pool_gpu_name(gpu) : "cpu", "image_bytes", (json_int_t)img,
				      "median_gbps_raw", med, "best_gbps_raw", gbs[r.repeat - 1], "runs", runs);
		json_dumpf(j, stdout, JSON_INDENT(1));
		printf("\n");
		json_decref(j);
	} else {
		json_decref(runs);
		if (r.repeat > 1)
			printf("median %.2f GB/s raw, best %.2f GB/s over %ld runs\n", med, gbs[r.repeat - 1], r.repeat);
	}
	rc = 0;
out:
	free(gbs);
	if (gpu) {
		pool_gpu_free(gpu, dst);
		pool_gpu_close(gpu);
	} else {
		free(dst);
	}
	snap_close(f);
	return rc;
}

int rt_snapshot_main(int argc, char **argv)
{
	if (argc < 2) {
		fputs(usage_text, stderr);
		return 2;
	}
	if (rt_cli_is_help(argv[1])) {
		fputs(usage_text, stdout);
		return 0;
	}
	const char *c = argv[1];
	if (!strcmp(c, "pack"))
		return cmd_pack(argc - 1, argv + 1);
	if (!strcmp(c, "inspect"))
		return cmd_inspect(argc - 1, argv + 1);
	if (!strcmp(c, "verify"))
		return cmd_verify(argc - 1, argv + 1);
	if (!strcmp(c, "unpack"))
		return cmd_unpack(argc - 1, argv + 1);
	if (!strcmp(c, "restore"))
		return cmd_restore(argc - 1, argv + 1);
	if (!strcmp(c, "push") || !strcmp(c, "list") || !strcmp(c, "rm")) {
		int rc = rt_cli_store_main("snapshot", 1, argc - 1, argv + 1);
		if (rc < 0)
			fputs(usage_text, stdout);
		return rc < 0 ? 0 : rc;
	}
	return usage_err("unknown command '%s'", c);
}

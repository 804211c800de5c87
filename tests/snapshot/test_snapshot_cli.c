/* test_snapshot_cli.c — `thaw snapshot ...` as a user runs it ($THAW_BIN): exit statuses and
 * messages of pack, inspect, verify, unpack, restore on the llama_tiny fixture, a corrupted
 * copy, and bad usage; a tokenizer that does not fit the model's vocabulary is refused; the
 * progress bars appear on a terminal only, one labelled line per phase. */
#include <stdlib.h>
#include <unistd.h>
#include <sys/wait.h>
#include "tests/t.h"
#include "tests/snapshot/snap_test_util.h"

static char out[8192];

/* run executes a shell command, captures stdout+stderr into out, returns the exit status. */
static int run(const char *fmt, const char *a, const char *b)
{
	char cmd[4096];
	const char *bin = getenv("THAW_BIN") ? getenv("THAW_BIN") : "build/thaw";
	char body[3000];
	snprintf(body, sizeof body, fmt, a ? a : "", b ? b : "");
	snprintf(cmd, sizeof cmd, "%s snapshot %s 2>&1", bin, body);
	FILE *p = popen(cmd, "r");
	if (!p)
		return -1;
	size_t n = fread(out, 1, sizeof out - 1, p);
	out[n] = 0;
	int st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_cli(void)
{
	char src[512], thaw[600], back[600], bad[600];
	const char *s = getenv("THAW_SRC");
	snprintf(src, sizeof src, "%s/tests/data/llama_tiny", s ? s : ".");
	tt_path(thaw, sizeof thaw, t_tmpdir(), "tiny.thaw");
	tt_path(back, sizeof back, t_tmpdir(), "tiny.safetensors");
	tt_path(bad, sizeof bad, t_tmpdir(), "bad.thaw");

	T_EQ_INT(run("pack %s -o %s --quiet", src, thaw), 0);
	T_EQ_INT(run("inspect %s --json", thaw, NULL), 0);
	T_CHECK(strstr(out, "\"kind\": \"llama\"") != NULL);
	T_CHECK(strstr(out, "\"model.layers.1.mlp.up_proj.weight\"") != NULL);
	T_EQ_INT(run("inspect %s", thaw, NULL), 0);
	T_CHECK(strstr(out, "ratio 0.") != NULL);
	T_EQ_INT(run("verify %s", thaw, NULL), 0);
	T_EQ_INT(run("unpack %s -o %s", thaw, back), 0);
	T_EQ_INT(run("restore %s --repeat 2 --threads 2", thaw, NULL), 0);
	T_CHECK(strstr(out, "GB/s raw") != NULL && strstr(out, "decode") != NULL);
	T_EQ_INT(run("restore %s --json --io pread", thaw, NULL), 0);
	T_CHECK(strstr(out, "\"io\": \"pread buffered\"") != NULL);

	/* the unpacked file holds the source's tensors byte for byte */
	char orig[600];
	snprintf(orig, sizeof orig, "%s/model.safetensors", src);
	size_t la = 0, lb = 0;
	uint8_t *a = tt_read_file(orig, &la), *b = tt_read_file(back, &lb);
	T_CHECK(a && b);
	if (a && b) {   /* same data section (tensors keep their source order) */
		uint64_t ha = snap_rd64_test(a), hb = snap_rd64_test(b);
		T_EQ_INT(la - 8 - ha, lb - 8 - hb);
		T_CHECK(la - 8 - ha == lb - 8 - hb && memcmp(a + 8 + ha, b + 8 + hb, la - 8 - ha) == 0);
	}
	free(a);
	free(b);

	/* a flipped byte in chunk data: verify fails naming the chunk and tensor */
	size_t len;
	uint8_t *x = tt_read_file(thaw, &len);
	x[4096 + 100] ^= 0x40;
	tt_write_file(bad, x, len);
	free(x);
	T_EQ_INT(run("verify %s", bad, NULL), 1);
	T_CHECK(strstr(out, "chunk 0 (tensor ") != NULL);
	T_EQ_INT(run("restore %s", bad, NULL), 1);
	T_EQ_INT(run("unpack %s -o %s", bad, back), 1);
	T_EQ_INT(run("inspect %s", "/nonexistent.thaw", NULL), 1);

	/* usage errors exit 2 */
	T_EQ_INT(run("", NULL, NULL), 2);
	T_EQ_INT(run("frobnicate", NULL, NULL), 2);
	T_EQ_INT(run("pack %s", src, NULL), 2);
	T_EQ_INT(run("restore %s --device tpu:0", thaw, NULL), 2);
	T_EQ_INT(run("restore %s --repeat 0", thaw, NULL), 2);
	T_EQ_INT(run("pack %s -o %s --chunk-size 5000", src, thaw), 2);
	T_EQ_INT(run("--help", NULL, NULL), 0);
}

static void test_cli_no_gpu(void)
{
	char src[512], thaw[600];
	const char *s = getenv("THAW_SRC");
	snprintf(src, sizeof src, "%s/tests/data/mlp_digits", s ? s : ".");
	tt_path(thaw, sizeof thaw, t_tmpdir(), "mlp.thaw");
	T_EQ_INT(run("pack %s -o %s --quiet --kind mlp", src, thaw), 0);
	int rc = run("restore %s --device cuda:63", thaw, NULL);
	T_EQ_INT(rc, 1);   /* no such device, or no CUDA at all: a message, not a crash */
	T_CHECK(strstr(out, "cuda:63") != NULL);
}

/* pack refuses a tokenizer with ids the model has no rows for: tests/data/tok/small (512 ids)
 * with llama_tiny (256 rows), a config whose added_tokens_decoder names id 300; one that fits
 * (4 ids, the config's ids below 256) is packed */
static void test_pack_tokenizer_mismatch(void)
{
	char cmd[4096], d[400], thaw[700];
	const char *s = getenv("THAW_SRC") ? getenv("THAW_SRC") : ".";
	snprintf(d, sizeof d, "%s", t_tmpdir());
	snprintf(thaw, sizeof thaw, "%s/mis.thaw", d);
	snprintf(cmd, sizeof cmd, "%s/tests/data/llama_tiny --tokenizer %s/tests/data/tok/small", s, s);
	T_EQ_INT(run("pack %s -o %s --quiet", cmd, thaw), 1);
	T_CHECK(strstr(out, "does not fit the model: its ids go up to 511") != NULL);
	T_CHECK(strstr(out, "vocabulary is 256 (lm_head.weight)") != NULL);
	T_CHECK(access(thaw, F_OK) != 0);   /* nothing written */
	/* the same found in the source directory (auto-detection) */
	snprintf(cmd, sizeof cmd, "mkdir -p %s/m %s/f && cp %s/tests/data/llama_tiny/* %s/tests/data/tok/small/tokenizer*.json %s/m/ "
		 "&& cp %s/tests/data/llama_tiny/* %s/f/", d, d, s, s, d, s, d);
	T_EQ_INT(system(cmd), 0);
	snprintf(cmd, sizeof cmd, "%s/m", d);
	T_EQ_INT(run("pack %s -o %s --quiet", cmd, thaw), 1);
	T_CHECK(strstr(out, "does not fit the model") != NULL);
	T_EQ_INT(run("pack %s -o %s --quiet --no-tokenizer", cmd, thaw), 0);
	/* a tokenizer that fits, then its config naming a special id past the model's rows */
	snprintf(cmd, sizeof cmd, "printf '{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"c\":2},"
		 "\"merges\":[]},\"added_tokens\":[{\"id\":3,\"content\":\"<e>\",\"special\":true}]}' > %s/f/tokenizer.json && "
		 "printf '{\"eos_token\":\"<e>\",\"added_tokens_decoder\":{\"3\":{\"content\":\"<e>\"}}}' > %s/f/tokenizer_config.json",
		 d, d);
	T_EQ_INT(system(cmd), 0);
	snprintf(cmd, sizeof cmd, "%s/f", d);
	T_EQ_INT(run("pack %s -o %s --quiet", cmd, thaw), 0);
	snprintf(cmd, sizeof cmd, "printf '{\"added_tokens_decoder\":{\"3\":{\"content\":\"<e>\"},\"300\":"
		 "{\"content\":\"<x>\"}}}' > %s/f/tokenizer_config.json", d);
	T_EQ_INT(system(cmd), 0);
	snprintf(cmd, sizeof cmd, "%s/f", d);
	T_EQ_INT(run("pack %s -o %s.2 --quiet", cmd, thaw), 1);
	T_CHECK(strstr(out, "added_tokens_decoder id \"300\"") != NULL);
}

/* progress bars: none when stderr is a pipe or a file; on a terminal (script(1) gives the
 * command a pseudo-terminal) one labelled line per phase, ending at 100% */
static void test_progress_bars(void)
{
	char src[512], thaw[600], cmd[2000];
	snprintf(src, sizeof src, "%s/tests/data/llama_tiny", t_src());
	tt_path(thaw, sizeof thaw, t_tmpdir(), "bars.thaw");
	T_EQ_INT(run("pack %s -o %s --chunk-size 64K", src, thaw), 0);
	T_CHECK(strchr(out, '\r') == NULL && strstr(out, "compressing [") == NULL);
	const char *piped[] = {"restore %s", "verify %s", "restore %s --repeat 2"};
	for (size_t i = 0; i < 3; i++) {
		T_EQ_INT(run(piped[i], thaw, NULL), 0);
		T_CHECK(strchr(out, '\r') == NULL && strstr(out, "ing [") == NULL);
	}
	if (t_sh(NULL, 0, "command -v script >/dev/null 2>&1") != 0)
		T_SKIP("no script(1) here to run the CLI on a pseudo-terminal");
	snprintf(cmd, sizeof cmd, "script -qec '%s snapshot restore %s' /dev/null", t_bin(), thaw);
	T_EQ_INT(t_sh(out, sizeof out, "%s", cmd), 0);
	T_CHECK(strstr(out, "\rrestoring [####################] 100%") != NULL);
	/* --json on a terminal: still no bar */
	snprintf(cmd, sizeof cmd, "script -qec '%s snapshot restore %s --json' /dev/null", t_bin(), thaw);
	T_EQ_INT(t_sh(out, sizeof out, "%s", cmd), 0);
	T_CHECK(strstr(out, "restoring [") == NULL && strstr(out, "\"median_gbps_raw\"") != NULL);
	/* pack with --quantize: two phases, each on its own labelled line, no duplicate */
	snprintf(cmd, sizeof cmd, "script -qec '%s snapshot pack %s -o %s --chunk-size 64K --quantize int8' "
		 "/dev/null", t_bin(), src, thaw);
	T_EQ_INT(t_sh(out, sizeof out, "%s", cmd), 0);
	const char *q = strstr(out, "\rquantizing [####################] 100%");
	const char *c = strstr(out, "\rcompressing [####################] 100%");
	T_CHECK(q && c && q < c);
	T_CHECK(c && !strstr(c + 2, "compressing [####################] 100%"));
	T_CHECK(q && !strstr(q + 2, "quantizing [####################] 100%"));
}

void t_main(void)
{
	T_RUN(test_pack_tokenizer_mismatch);
	T_RUN(test_cli);
	T_RUN(test_cli_no_gpu);
	T_RUN(test_progress_bars);
}

/* test_docs_examples.c — every shell example of README.md and docs/api.md runs as printed
 * (tests/e2e/docs_examples.py: each block against a fresh `make run` demo server on a fresh
 * data directory; exit statuses, HTTP statuses and the answers' key fields as the docs show
 * them; blocks marked `<!-- example: skip (REASON) -->` are counted as skipped). The llama
 * examples get a random-weight llama with the test tokenizer (tests/data/tok/small). The
 * checker itself must fail on a broken example. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "runtime/tok/tok.h"
#include "tests/e2e/e2e.h"
#include "tests/t.h"

static char out[1 << 16];
static char llama_dir[700];

static int copy_to(const char *from, const char *dir, const char *name)
{
	return t_sh(NULL, 0, "cp '%s' '%s/%s'", from, dir, name) == 0 ? 0 : -1;
}

/* the llama the examples' functions run: e2e_llama_write's model sized to the test tokenizer */
static int write_llama(void)
{
	char path[700], cfg[700], err[256] = "";
	tok_tokenizer *tok = NULL;
	snprintf(path, sizeof path, "%s/tests/data/tok/small/tokenizer.json", t_src());
	snprintf(cfg, sizeof cfg, "%s/tests/data/tok/small/tokenizer_config.json", t_src());
	size_t tl = 0, cl = 0;
	char *tj = t_read_file(path, &tl), *cj = t_read_file(cfg, &cl);
	int rc = tj && tok_load(&tok, tj, tl, cj, cl, err, sizeof err) == 0 ? 0 : -1;
	free(tj);
	free(cj);
	if (rc) {
		fprintf(stderr, "  cannot load the test tokenizer: %s\n", err);
		return -1;
	}
	snprintf(llama_dir, sizeof llama_dir, "%s/llama", t_tmpdir());
	mkdir(llama_dir, 0755);
	rc = e2e_llama_write(llama_dir, tok_vocab_size(tok), tok_eos(tok));
	tok_free(tok);
	if (!rc)
		rc = copy_to(path, llama_dir, "tokenizer.json");
	if (!rc)
		rc = copy_to(cfg, llama_dir, "tokenizer_config.json");
	return rc;
}

/* runs the checker on files (relative to the source tree, or absolute); its exit status */
static int run_checker(const char *work, const char *files)
{
	if (t_sh(NULL, 0, "mkdir -p '%s'", work) != 0)
		return -1;
	return t_sh(out, sizeof out, "cd '%s' && python3 tests/e2e/docs_examples.py --thaw '%s' --src . "
		    "--work '%s' --llama-dir '%s' %s 2>&1", t_src(), t_bin(), work, llama_dir, files);
}

static int need(void)
{
	return t_sh(NULL, 0, "command -v python3 >/dev/null && command -v curl >/dev/null && "
		    "command -v setsid >/dev/null") == 0;
}

static void test_docs_examples(void)
{
	char work[700];
	if (!need())
		T_SKIP("python3, curl or setsid missing");
	T_EQ_INT(write_llama(), 0);
	snprintf(work, sizeof work, "%s/work", t_tmpdir());
	int rc = run_checker(work, "README.md docs/api.md");
	fputs(out, stderr);
	T_EQ_INT(rc, 0);
	/* the summary: some examples ran, none failed */
	const char *s = strstr(out, "docs examples: ");
	int passed = -1, failed = -1, skipped = -1;
	T_CHECK(s && sscanf(s, "docs examples: %d passed, %d failed, %d skipped", &passed, &failed,
			    &skipped) == 3);
	T_CHECK(passed >= 8);
	T_EQ_INT(failed, 0);
}

/* a doc whose example breaks (a wrong answer, a failing command, an unknown marker) fails */
static void test_checker_fails(void)
{
	char work[700], md[700];
	if (!need())
		T_SKIP("python3, curl or setsid missing");
	snprintf(work, sizeof work, "%s/work-bad", t_tmpdir());
	snprintf(md, sizeof md, "%s/bad.md", t_tmpdir());
	static const char *const docs[] = {
		"```sh\ncurl -s -X POST localhost:8080/v1/functions/digits/invoke -d @deploy/demo/digits-input.json\n"
		"# {\"labels\": [7, 7]}\n```\n",
		"```sh\ncurl localhost:8080/v1/functions/nosuch\n```\n",
		"```sh\nbuild/thaw functions get nosuch\n```\n",
		"<!-- example: sometimes -->\n```sh\nbuild/thaw status\n```\n",
		"```sh\ncurl -s -X POST localhost:8080/v1/jobs -d '{\"type\": \"finetune\", \"function\": \"digits\", "
		"\"params\": {\"data\": \"digits.csv.gz\"}}'\n# 201 {\"id\": 1}\n```\n",
	};
	for (size_t i = 0; i < sizeof docs / sizeof *docs; i++) {
		FILE *f = fopen(md, "w");
		T_CHECK(f != NULL);
		if (!f)
			return;
		fputs(docs[i], f);
		fclose(f);
		int rc = run_checker(work, md);
		if (rc != 1)
			fprintf(stderr, "  bad doc %zu passed:\n%s\n", i, out);
		T_EQ_INT(rc, 1);
		T_CHECK(strstr(out, "FAIL ") != NULL && strstr(out, "0 passed, 1 failed") != NULL);
	}
	/* the same answer as the doc shows passes; a skipped block is counted with its reason */
	FILE *f = fopen(md, "w");
	T_CHECK(f != NULL);
	if (!f)
		return;
	fputs("```sh\ncurl -s -X POST localhost:8080/v1/functions/digits/invoke -d @deploy/demo/digits-input.json\n"
	      "# {\"labels\": [0, 1]}\n```\n<!-- example: skip (needs a GPU) -->\n```sh\nfalse\n```\n", f);
	fclose(f);
	T_EQ_INT(run_checker(work, md), 0);
	T_CHECK(strstr(out, "1 passed, 0 failed, 1 skipped") != NULL);
	T_CHECK(strstr(out, ": needs a GPU") != NULL);
}

void t_main(void)
{
	T_RUN(test_checker_fails);
	T_RUN(test_docs_examples);
}

/* test_rt_tok.c — a snapshot carries its tokenizer: `thaw snapshot pack` (the real binary,
 * $THAW_BIN) stores a source directory's tokenizer.json / tokenizer_config.json (or the ones
 * --tokenizer names) in the metadata, byte-deterministically; rt_tok_from_snapshot loads them
 * back into a tokenizer that encodes and renders chat exactly like one loaded from the files;
 * a snapshot without one gives -ENOENT; bad --tokenizer / conflicting --metadata fail. */
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "runtime/tok/rt_tok.h"
#include "tests/t.h"

static char out[16384];



/* a one-tensor safetensors model in dir */
static int write_model(const char *dir)
{
	char path[1100];
	snprintf(path, sizeof path, "%s/model.safetensors", dir);
	const char *hdr = "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}      ";
	uint64_t hl = strlen(hdr);
	float w[4] = {1, 2, 3, 4};
	FILE *f = fopen(path, "wb");
	if (!f)
		return -1;
	fwrite(&hl, 8, 1, f);
	fwrite(hdr, 1, hl, f);
	fwrite(w, 4, 4, f);
	return fclose(f);
}


static void test_pack_carries_tokenizer(void)
{
	const char *d = t_tmpdir();
	char err[512];
	T_EQ_INT(t_sh(out, sizeof out, "mkdir -p %s/m %s/bare %s/other && cp %s/tests/data/tok/small/tokenizer.json "
		    "%s/tests/data/tok/small/tokenizer_config.json %s/m/", d, d, d, t_src(), t_src(), d), 0);
	char mdir[512];
	snprintf(mdir, sizeof mdir, "%s/m", d);
	T_EQ_INT(write_model(mdir), 0);
	T_EQ_INT(t_sh(out, sizeof out, "cp %s/m/model.safetensors %s/bare/ && cp %s/m/model.safetensors %s/other/", d, d, d, d), 0);

	/* auto-detected from the source directory, twice: byte-identical snapshots */
	T_EQ_INT(t_sh(out, sizeof out, "%s snapshot pack %s/m -o %s/a.thaw --quiet 2>&1", t_bin(), d, d), 0);
	T_EQ_INT(t_sh(out, sizeof out, "%s snapshot pack %s/m -o %s/b.thaw --quiet 2>&1", t_bin(), d, d), 0);
	T_EQ_INT(t_sh(out, sizeof out, "cmp %s/a.thaw %s/b.thaw", d, d), 0);

	char path[1024];
	snprintf(path, sizeof path, "%s/a.thaw", d);
	tok_tokenizer *st = NULL, *ft = NULL;
	int rc = rt_tok_from_snapshot(path, &st, err, sizeof err);
	T_EQ_INT(rc, 0);
	if (rc)
		fprintf(stderr, "  %s\n", err);
	size_t tl, cl;
	char tp[1024], cp[1024];
	snprintf(tp, sizeof tp, "%s/tests/data/tok/small/tokenizer.json", t_src());
	snprintf(cp, sizeof cp, "%s/tests/data/tok/small/tokenizer_config.json", t_src());
	char *tj = t_read_file(tp, &tl), *cj = t_read_file(cp, &cl);
	T_CHECK(tj && cj);
	if (tj && cj)
		T_EQ_INT(tok_load(&ft, tj, tl, cj, cl, err, sizeof err), 0);
	if (st && ft) {
		const char *text = "Cold starts restore <|im_start|>snapshots in  milliseconds, 123 times.\n";
		int32_t *a = NULL, *b = NULL;
		size_t na = 0, nb = 0;
		T_EQ_INT(tok_encode(st, text, strlen(text), 1, &a, &na), 0);
		T_EQ_INT(tok_encode(ft, text, strlen(text), 1, &b, &nb), 0);
		T_EQ_INT(na, nb);
		T_CHECK(na > 10 && na == nb && !memcmp(a, b, na * sizeof *a));
		free(a);
		free(b);
		tok_msg m[2] = {{"system", "Be brief."}, {"user", "hi"}};
		char *p1 = NULL, *p2 = NULL;
		T_EQ_INT(tok_chat(st, m, 2, &p1, err, sizeof err), 0); /* config carried too */
		T_EQ_INT(tok_chat(ft, m, 2, &p2, err, sizeof err), 0);
		T_EQ_STR(p1, p2);
		T_EQ_INT(tok_eos(st), tok_eos(ft));
		free(p1);
		free(p2);
	}
	tok_free(st);
	tok_free(ft);
	free(tj);
	free(cj);

	/* a chat_template.jinja beside tokenizer.json is the template (as transformers loads it) */
	T_EQ_INT(t_sh(out, sizeof out, "mkdir -p %s/j && cp %s/m/model.safetensors %s/m/tokenizer.json %s/j/ && "
		      "printf '{%%%% for m in messages %%%%}[{{ m.role }}:{{ m.content }}]{%%%% endfor %%%%}\n' > %s/j/chat_template.jinja && "
		      "%s snapshot pack %s/j -o %s/j.thaw --quiet 2>&1", d, d, d, d, d, t_bin(), d, d), 0);
	snprintf(path, sizeof path, "%s/j.thaw", d);
	T_EQ_INT(rt_tok_from_snapshot(path, &st, err, sizeof err), 0);
	if (st) {
		tok_msg m[2] = {{"system", "Be brief."}, {"user", "hi"}};
		char *p = NULL;
		T_EQ_INT(tok_chat(st, m, 2, &p, err, sizeof err), 0);
		T_EQ_STR(p, "[system:Be brief.][user:hi]");
		free(p);
		tok_free(st);
		st = NULL;
	}

	/* inspect summarises instead of printing the whole vocabulary */
	T_EQ_INT(t_sh(out, sizeof out, "%s snapshot inspect %s/a.thaw", t_bin(), d), 0);
	T_CHECK(strstr(out, "tokenizer.json carried: model BPE") != NULL);
	T_CHECK(strstr(out, "\"merges\"") == NULL);

	/* --no-tokenizer leaves it out; with --tokenizer it is a usage error */
	T_EQ_INT(t_sh(out, sizeof out, "%s snapshot pack %s/m -o %s/n.thaw --no-tokenizer --quiet 2>&1", t_bin(), d, d), 0);
	snprintf(path, sizeof path, "%s/n.thaw", d);
	T_EQ_INT(rt_tok_from_snapshot(path, &st, err, sizeof err), -ENOENT);
	T_EQ_INT(t_sh(out, sizeof out, "%s snapshot pack %s/m -o %s/n2.thaw --no-tokenizer --tokenizer %s/m 2>&1", t_bin(), d, d, d), 2);

	/* no tokenizer -> -ENOENT */
	T_EQ_INT(t_sh(out, sizeof out, "%s snapshot pack %s/bare -o %s/c.thaw --quiet 2>&1", t_bin(), d, d), 0);
	snprintf(path, sizeof path, "%s/c.thaw", d);
	st = NULL;
	T_EQ_INT(rt_tok_from_snapshot(path, &st, err, sizeof err), -ENOENT);
	T_CHECK(st == NULL && strstr(err, "no tokenizer") != NULL);
	T_EQ_INT(rt_tok_from_snapshot("/nonexistent/x.thaw", &st, err, sizeof err) < 0, 1);

	/* --tokenizer FILE for a source without one; its config comes along from beside it */
	T_EQ_INT(t_sh(out, sizeof out, "%s snapshot pack %s/other -o %s/e.thaw --tokenizer %s/m/tokenizer.json --quiet 2>&1",
		    t_bin(), d, d, d), 0);
	snprintf(path, sizeof path, "%s/e.thaw", d);
	T_EQ_INT(rt_tok_from_snapshot(path, &st, err, sizeof err), 0);
	tok_msg m1[1] = {{"user", "x"}};
	char *p = NULL;
	if (st)
		T_EQ_INT(tok_chat(st, m1, 1, &p, err, sizeof err), 0);
	free(p);
	tok_free(st);
	/* --tokenizer DIR with user metadata merged */
	T_EQ_INT(t_sh(out, sizeof out, "%s snapshot pack %s/bare -o %s/f.thaw --tokenizer %s/m --metadata '{\"owner\":\"t\"}' --quiet 2>&1",
		    t_bin(), d, d, d), 0);
	T_EQ_INT(t_sh(out, sizeof out, "%s snapshot inspect %s/f.thaw", t_bin(), d), 0);
	T_CHECK(strstr(out, "\"owner\":\"t\"") != NULL && strstr(out, "tokenizer_config.json carried") != NULL);

	/* errors: missing tokenizer, a directory without one, conflicting metadata, broken JSON */
	T_EQ_INT(t_sh(out, sizeof out, "%s snapshot pack %s/m -o %s/g.thaw --tokenizer %s/nope 2>&1", t_bin(), d, d, d), 1);
	T_CHECK(strstr(out, "no such file") != NULL);
	T_EQ_INT(t_sh(out, sizeof out, "%s snapshot pack %s/m -o %s/g.thaw --tokenizer %s/bare 2>&1", t_bin(), d, d, d), 1);
	T_CHECK(strstr(out, "has no tokenizer.json") != NULL);
	T_EQ_INT(t_sh(out, sizeof out, "%s snapshot pack %s/m -o %s/g.thaw --metadata '{\"tokenizer\":1}' 2>&1", t_bin(), d, d), 1);
	T_CHECK(strstr(out, "already has") != NULL);
	T_EQ_INT(t_sh(out, sizeof out, "printf '{\"model\": ' > %s/other/tokenizer.json", d), 0);
	T_EQ_INT(t_sh(out, sizeof out, "%s snapshot pack %s/other -o %s/g.thaw 2>&1", t_bin(), d, d), 1);
	T_CHECK(strstr(out, "tokenizer.json") != NULL);
	/* carried although thaw cannot use it (a WordPiece model): a warning, and the runtime says why */
	T_EQ_INT(t_sh(out, sizeof out, "printf '{\"model\":{\"type\":\"WordPiece\",\"vocab\":{\"a\":0}}}' > %s/other/tokenizer.json", d), 0);
	T_EQ_INT(t_sh(out, sizeof out, "%s snapshot pack %s/other -o %s/h.thaw --quiet 2>&1", t_bin(), d, d), 0);
	T_CHECK(strstr(out, "warning") != NULL && strstr(out, "WordPiece") != NULL);
	snprintf(path, sizeof path, "%s/h.thaw", d);
	T_EQ_INT(rt_tok_from_snapshot(path, &st, err, sizeof err), -ENOTSUP);
	T_CHECK(strstr(err, "WordPiece") != NULL);
}

static void test_meta_errors(void)
{
	tok_tokenizer *t = NULL;
	char err[256];
	T_EQ_INT(rt_tok_from_meta("{\"kind\":\"llama\"}", &t, err, sizeof err), -ENOENT);
	T_EQ_INT(rt_tok_from_meta("{\"tokenizer\":\"x\"}", &t, err, sizeof err), -EINVAL);
	T_EQ_INT(rt_tok_from_meta("[]", &t, err, sizeof err), -EINVAL);
	T_EQ_INT(rt_tok_from_meta("{\"tokenizer\":{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}},"
				  "\"tokenizer_config\":7}", &t, err, sizeof err), -EINVAL);
	T_EQ_INT(rt_tok_from_meta("{\"tokenizer\":{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}}",
				  &t, err, sizeof err), 0);
	T_CHECK(t != NULL && tok_vocab_size(t) == 1);
	tok_free(t);
	json_t *m = json_loads("{\"tokenizer\":{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[]}}}", 0, NULL);
	T_EQ_INT(rt_tok_from_meta_obj(m, &t, err, sizeof err), 0);
	T_CHECK(t != NULL && tok_vocab_size(t) == 2);
	tok_free(t);
	json_decref(m);
	T_EQ_INT(rt_tok_from_meta_obj(NULL, &t, err, sizeof err), -EINVAL);
}

void t_main(void)
{
	T_RUN(test_pack_carries_tokenizer);
	T_RUN(test_meta_errors);
}

/* test_cmd_run.c — `thaw run` and `thaw snapshot pack --quantize` end to end through the real
 * binary ($THAW_BIN): pack the HF llama fixture as is and int8-quantized, run the greedy
 * continuation and compare with HF transformers' tokens; the digits MLP; echo without a
 * snapshot; bad input -> exit 1 with {"error": ...}; bad usage -> exit 2. */
#include <stdarg.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <string.h>
#include "tests/t.h"

static char out[8192];



static const char *hf0 = "\"tokens\":[55,230,203,138,82,237,0,111,13,120,26,221,243,207,79,232]";

static void test_run_llama_plain_and_int8(void)
{
	const char *d = t_tmpdir();
	const char *q[] = {"", "--quantize int8", "--quantize int8:32"};
	for (int i = 0; i < 3; i++) {
		T_EQ_INT(t_sh(out, sizeof out, "%s snapshot pack %s/tests/data/llama_tiny -o %s/l%d.thaw -q %s 2>&1", t_bin(),
			    t_src(), d, i, q[i]), 0);
		T_EQ_INT(t_sh(out, sizeof out, "%s run %s/l%d.thaw --device cpu --input "
			    "'{\"tokens\":[1,17,42,99,3,200,5],\"max_tokens\":16,\"stop\":[]}'", t_bin(), d,
			    i), 0);
		/* the fixture's first prompt: int8 happens to keep all 16 greedy tokens too */
		T_CHECK(strstr(out, hf0) != NULL);
		T_CHECK(strstr(out, "\"finish_reason\":\"length\"") != NULL);
	}
	T_EQ_INT(t_sh(out, sizeof out, "%s snapshot inspect %s/l1.thaw", t_bin(), d), 0);
	T_CHECK(strstr(out, "I8") && strstr(out, "q_proj.weight_scale"));
	T_EQ_INT(t_sh(out, sizeof out, "%s snapshot inspect %s/l1.thaw --json", t_bin(), d), 0);
	T_CHECK(strstr(out, "\"quantization\"") != NULL);
	/* bad input: a 400 from the kind -> exit 1, {"error"} on stdout */
	T_EQ_INT(t_sh(out, sizeof out, "%s run %s/l0.thaw --device cpu --input '{\"tokens\":[1,999]}' 2>/dev/null", t_bin(),
		    d), 1);
	T_CHECK(strstr(out, "{\"error\":") == out);
	T_EQ_INT(t_sh(out, sizeof out, "%s run %s/l0.thaw --device cpu --input '{bad json' 2>/dev/null", t_bin(), d), 2);
	T_EQ_INT(t_sh(out, sizeof out, "%s run %s/l0.thaw --device tpu:0 --input '{}' 2>/dev/null", t_bin(), d), 2);
	T_EQ_INT(t_sh(out, sizeof out, "%s run --input '{}' 2>/dev/null", t_bin()), 2);
	T_EQ_INT(t_sh(out, sizeof out, "%s snapshot pack %s/tests/data/llama_tiny -o %s/x.thaw --quantize int4 2>/dev/null",
		    t_bin(), t_src(), d), 2);
	T_EQ_INT(t_sh(out, sizeof out, "%s run %s/missing.thaw --device cpu --input '{}' 2>/dev/null", t_bin(), d), 1);
}

/* --stream: the llama kind's per-token chunks, one line each, then the result whose tokens
 * they make up (the fixture's HF greedy continuation) */
static void test_run_stream(void)
{
	const char *d = t_tmpdir();
	T_EQ_INT(t_sh(out, sizeof out, "%s snapshot pack %s/tests/data/llama_tiny -o %s/s.thaw -q 2>&1", t_bin(), t_src(), d), 0);
	T_EQ_INT(t_sh(out, sizeof out, "%s run %s/s.thaw --device cpu --stream --input "
		    "'{\"tokens\":[1,17,42,99,3,200,5],\"max_tokens\":4,\"stop\":[]}'", t_bin(), d), 0);
	const char *lines = "{\"token\":55}\n{\"token\":230}\n{\"token\":203}\n{\"token\":138}\n{";
	T_CHECK(strncmp(out, lines, strlen(lines)) == 0);
	T_CHECK(strstr(out, "\"tokens\":[55,230,203,138]") != NULL);
	/* a kind that does not stream: only the result */
	T_EQ_INT(t_sh(out, sizeof out, "%s run --kind echo --stream --input '{\"a\":1}'", t_bin()), 0);
	T_EQ_STR(out, "{\"a\":1}\n");
}

static void test_run_mlp_and_echo(void)
{
	const char *d = t_tmpdir();
	T_EQ_INT(t_sh(out, sizeof out, "%s snapshot pack %s/tests/data/mlp_digits -o %s/m.thaw -q --kind mlp "
		    "--metadata '{\"activation\":\"relu\"}' 2>&1", t_bin(), t_src(), d), 0);
	FILE *f = fopen("/dev/null", "r");
	fclose(f);
	char in[1200];
	snprintf(in, sizeof in, "%s/in.json", d);
	f = fopen(in, "w");
	/* digits row 0 (a zero), pixels / 16 */
	fprintf(f, "{\"inputs\": [[0,0,0.3125,0.8125,0.5625,0.0625,0,0,0,0,0.8125,0.9375,0.625,"
		"0.9375,0.3125,0,0,0.1875,0.9375,0.125,0,0.6875,0.5,0,0,0.25,0.75,0,0,0.5,0.5,0,0,"
		"0.3125,0.5,0,0,0.5625,0.5,0,0,0.25,0.6875,0,0.0625,0.75,0.4375,0,0,0.125,0.875,"
		"0.3125,0.625,0.75,0,0,0,0,0.375,0.8125,0.625,0,0,0]]}");
	fclose(f);
	T_EQ_INT(t_sh(out, sizeof out, "%s run %s/m.thaw --device cpu --input @%s", t_bin(), d, in), 0);
	T_CHECK(strstr(out, "\"labels\":[0]") != NULL);
	T_EQ_INT(t_sh(out, sizeof out, "%s run --kind echo --input '{\"a\":[1,\"b\"]}'", t_bin()), 0);
	T_EQ_STR(out, "{\"a\":[1,\"b\"]}\n");
}

void t_main(void)
{
	T_RUN(test_run_llama_plain_and_int8);
	T_RUN(test_run_mlp_and_echo);
	T_RUN(test_run_stream);
}

/* fuzz_manifest.c — libFuzzer target for function manifests (the body of
 * PUT /v1/functions/{name}): rt_manifest_parse on the raw bytes; whatever it accepts must
 * serialize (rt_manifest_to_json) to JSON that parses back to the same manifest, and the
 * traffic split must be sorted and sum to 100. The bytes are also fed to the function-name
 * validator. Crashes, sanitizer reports and abort() on a broken invariant are the findings. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "runtime/store/rt_manifest.h"

static int known(const char *kind, void *ud)
{
	(void)ud;
	return strcmp(kind, "echo") == 0 || strcmp(kind, "mlp") == 0 || strcmp(kind, "llama") == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256], name[80];
	rt_manifest m, back;
	size_t n = size < sizeof name - 1 ? size : sizeof name - 1;
	memcpy(name, data, n);
	name[n] = 0;
	rt_manifest_name_valid(name, err, sizeof err);
	if (rt_manifest_parse((const char *)data, size, known, NULL, &m, err, sizeof err) < 0) {
		if (!err[0])
			abort();   /* every refusal says why */
		return 0;
	}
	int sum = 0;
	for (int i = 0; i < m.traffic.n; i++) {
		sum += m.traffic.e[i].percent;
		if (i > 0 && m.traffic.e[i - 1].rev >= m.traffic.e[i].rev)
			abort();
	}
	if (m.traffic.n > 0 && sum != 100)
		abort();
	json_t *j = rt_manifest_to_json(&m, 1);
	char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
	if (!text || rt_manifest_parse(text, strlen(text), known, NULL, &back, err, sizeof err) < 0)
		abort();
	json_t *j2 = rt_manifest_to_json(&back, 1);
	if (!json_equal(j, j2) || memcmp(&m.traffic, &back.traffic, sizeof m.traffic) != 0 ||
	    strcmp(m.kind, back.kind) != 0 || strcmp(m.snapshot, back.snapshot) != 0 ||
	    m.idle_timeout_s != back.idle_timeout_s || m.timeout_s != back.timeout_s)
		abort();
	free(text);
	json_decref(j);
	json_decref(j2);
	return 0;
}

/* fuzz_openai.c — libFuzzer target for the OpenAI-compatible request path (rt_api_openai.c):
 * an in-process rt_server (the daemon's real router and handlers) over a data directory under
 * /tmp in which setup() packs tests/data/llama_tiny twice — "tl" with the test tokenizer
 * (tests/data/tok/small/tokenizer.json and tokenizer_config.json) in its attachment, "plain" without —
 * and registers both plus an echo function ("ec"). Each input is one request over loopback TCP:
 *   byte 0   bits 0-1 and 3 pick the route (0 /v1/completions, 1 /v1/chat/completions, 2 GET
 *            /v1/models, 3 GET /v1/models/tl; with bit 3: Triton's generate extension, 4
 *            /v2/models/tl/generate, 5 .../generate_stream, 6 .../versions/1/generate, 7 the
 *            echo function's generate); bit 2 closes the connection right after the request
 *            was sent (a client gone mid-stream);
 *   bytes 1- the body.
 * The event loop is driven until the server closes the connection (bounded). Crashes and
 * sanitizer reports are the findings. THAW_SRC (set by tests/run.sh) locates the repository. */
#include "runtime/tok/rt_tok.h"
#include "snapshot/snap_pack.h"
#include "tests/fuzz/fuzz_srv.h"

static int ready;

static int pack(const char *src, const char *out, const char *extra, const char *attach)
{
	snap_pack_opts po;
	snap_pack_stats ps;
	char err[256];
	memset(&po, 0, sizeof po);
	po.kind = "llama";
	po.w.threads = 1;
	po.extra_metadata = extra;
	po.w.attachment = attach;
	po.w.attachment_len = attach ? strlen(attach) : 0;
	if (snap_pack(src, out, &po, &ps, err, sizeof err) < 0) {
		fprintf(stderr, "fuzz_openai: pack %s: %s\n", src, err);
		return -1;
	}
	return 0;
}

static int setup(void)
{
	const char *src = getenv("THAW_SRC");
	char st[512], out[384], tj[512], cj[512];
	if (!src)
		src = ".";
	snprintf(st, sizeof st, "%s/tests/data/llama_tiny", src);
	snprintf(tj, sizeof tj, "%s/tests/data/tok/small/tokenizer.json", src);
	snprintf(cj, sizeof cj, "%s/tests/data/tok/small/tokenizer_config.json", src);
	if (fsrv_dirs("openai") < 0)
		return -1;
	/* "tl" carries the tokenizer the way `thaw snapshot pack` does (the snapshot's attachment) */
	char *extra = NULL, *attach = NULL, warn[256], perr[256];
	size_t alen = 0;
	if (rt_tok_pack_metadata(NULL, tj, cj, &extra, &attach, &alen, warn, sizeof warn, perr,
				 sizeof perr) < 0) {
		fprintf(stderr, "fuzz_openai: %s: %s\n", tj, perr);
		return -1;
	}
	snprintf(out, sizeof out, "%s/snapshots/tl.thaw", fsrv_dir);
	int rc = pack(st, out, extra, attach);
	free(extra);
	free(attach);
	snprintf(out, sizeof out, "%s/snapshots/plain.thaw", fsrv_dir);
	if (rc == 0)
		rc = pack(st, out, NULL, NULL);
	if (rc < 0)
		return -1;
	rt_registry *reg;
	char err[256];
	if (rt_registry_open(fsrv_dir, &reg, err, sizeof err) < 0)
		return -1;
	rc = fsrv_put(reg, "tl", "{\"kind\":\"llama\",\"snapshot\":\"tl.thaw\",\"device\":\"cpu\"}");
	if (rc == 0)
		rc = fsrv_put(reg, "plain", "{\"kind\":\"llama\",\"snapshot\":\"plain.thaw\",\"device\":\"cpu\"}");
	if (rc == 0)
		rc = fsrv_put(reg, "ec", "{\"kind\":\"echo\"}");
	rt_registry_close(reg);
	return rc < 0 ? -1 : fsrv_start();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!ready) {
		if (setup() < 0)
			abort();
		ready = 1;
	}
	if (size < 1)
		return 0;
	static const char *const routes[8][2] = {
		{"POST", "/v1/completions"}, {"POST", "/v1/chat/completions"},
		{"GET", "/v1/models"}, {"GET", "/v1/models/tl"},
		{"POST", "/v2/models/tl/generate"}, {"POST", "/v2/models/tl/generate_stream"},
		{"POST", "/v2/models/tl/versions/1/generate"}, {"POST", "/v2/models/ec/generate"},
	};
	int route = (data[0] & 3) | ((data[0] >> 3) & 1) << 2, hangup = (data[0] >> 2) & 1;
	size_t body_len = size - 1;
	char head[512];
	int hn = snprintf(head, sizeof head, "%s %s HTTP/1.1\r\nHost: f\r\nConnection: close\r\n"
			  "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
			  routes[route][0], routes[route][1], body_len);
	/* then let the server finish the call (a generation still running after a hang-up) */
	fsrv_request(head, hn, data + 1, body_len, hangup, 20000);
	return 0;
}

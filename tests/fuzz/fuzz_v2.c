/* fuzz_v2.c — libFuzzer target for the Open Inference Protocol request path: an in-process
 * rt_server (the daemon's real router and handlers) over a data directory under /tmp in which
 * setup() packs tests/data/mlp_digits/model.safetensors into DATA/snapshots/digits.thaw and
 * registers two functions in the registry before the server starts: "digits" (kind mlp, cpu)
 * and "echo" (kind echo). Each input is one request, sent over loopback TCP:
 *   bytes 0-1   little-endian u16: bit 15 picks the model (0 digits, 1 echo), bit 14 omits the
 *               Inference-Header-Content-Length header, bits 0-13 are its value (the length of
 *               the JSON part; it may exceed the body: the server must refuse it);
 *   bytes 2-    the body (JSON header followed by binary tensor data). A body that starts with
 *               the gzip magic (1f 8b) goes out with Content-Encoding: gzip, one that starts
 *               with a zlib header byte (0x78) with Content-Encoding: deflate (tritonclient's
 *               compressed requests; the server inflates them first).
 * It goes out as POST /v2/models/{digits|echo}/infer with Connection: close, and the event loop
 * is driven until the server closes the connection (bounded). Crashes and sanitizer reports are
 * the findings. THAW_SRC (set by tests/run.sh) locates the repository; default ".". */
#include "snapshot/snap_pack.h"
#include "tests/fuzz/fuzz_srv.h"

static int ready;

static int setup(void)
{
	const char *src = getenv("THAW_SRC");
	char st[512], out[384], err[256];
	if (fsrv_dirs("v2") < 0)
		return -1;
	snprintf(out, sizeof out, "%s/snapshots/digits.thaw", fsrv_dir);
	snprintf(st, sizeof st, "%s/tests/data/mlp_digits/model.safetensors", src ? src : ".");
	snap_pack_opts po;
	memset(&po, 0, sizeof po);
	po.kind = "mlp";
	po.w.threads = 1;
	po.w.progress = 0;
	snap_pack_stats ps;
	if (snap_pack(st, out, &po, &ps, err, sizeof err) < 0) {
		fprintf(stderr, "fuzz_v2: pack %s: %s\n", st, err);
		return -1;
	}
	rt_registry *reg;
	if (rt_registry_open(fsrv_dir, &reg, err, sizeof err) < 0)
		return -1;
	int rc = fsrv_put(reg, "digits", "{\"kind\":\"mlp\",\"snapshot\":\"digits.thaw\",\"device\":\"cpu\"}");
	if (rc == 0)
		rc = fsrv_put(reg, "echo", "{\"kind\":\"echo\"}");
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
	if (size < 2)
		return 0;
	unsigned ctl = data[0] | (unsigned)data[1] << 8;
	const char *model = (ctl & 0x8000) ? "echo" : "digits";
	size_t body_len = size - 2;
	const char *enc = body_len >= 2 && data[2] == 0x1f && data[3] == 0x8b ? "Content-Encoding: gzip\r\n" :
			  body_len >= 1 && data[2] == 0x78 ? "Content-Encoding: deflate\r\n" : "";
	char head[512];
	int hn;
	if (ctl & 0x4000)
		hn = snprintf(head, sizeof head, "POST /v2/models/%s/infer HTTP/1.1\r\nHost: f\r\n"
			      "Connection: close\r\nContent-Type: application/json\r\n%s"
			      "Content-Length: %zu\r\n\r\n", model, enc, body_len);
	else
		hn = snprintf(head, sizeof head, "POST /v2/models/%s/infer HTTP/1.1\r\nHost: f\r\n"
			      "Connection: close\r\nContent-Type: application/octet-stream\r\n%s"
			      "Inference-Header-Content-Length: %u\r\nContent-Length: %zu\r\n\r\n",
			      model, enc, ctl & 0x3fff, body_len);
	fsrv_request(head, hn, data + 2, body_len, 0, 50);
	return 0;
}

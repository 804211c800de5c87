#!/usr/bin/env python3
"""amp.py — amplification attacks on the invoke, V2 and jobs routes of a running `thaw serve`
(stdlib + tests/hostile/hclient.py), with a /healthz prober running throughout.

Usage: amp.py --port P --pid PID [--mib N] [--function digits] [--no-rss] [--deadline S]
              [--only SUBSTRING]

With function F (kind mlp, 64 features, tests/data/mlp_digits) deployed, it sends, one after
another: a dense JSON array of about N MiB ("1,1,...") to the built-in echo and to F's
/invoke; the same as V2 tensor data to F's infer; gzip bodies (a V2 tensor and plain zeros)
that inflate to about N MiB; within the bounds, a gzip tensor inflating to 3 MiB (24576 rows, served) and a dense tensor of N/4 Mi values echoed by function "e"
(kind echo, served), N/2 MiB of binary UINT8 echoed in binary (served); a binary-extension
request whose shape holds 2^40 elements.
Each must be answered with one of the statuses listed for it (or served correctly), the
daemon's peak RSS (VmHWM, reset before each case through /proc/PID/clear_refs) may grow by at
most 8x the body's decoded size (plus 24 MiB of allocator slack), and every /healthz probe
must be answered within the deadline. A V2 request within the bounds ([2048, 64] FP32 as
JSON) must still be served with 2048 rows. Prints one JSON line per case and a summary line
(RSS peak growth, /healthz p50/p99/max); exit 0 when everything held, 1 otherwise."""
import argparse, json, os, sys, time, zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hclient as hc  # noqa: E402

failures = []


def fail(msg):
    failures.append(msg)
    print("amp: FAIL " + msg, file=sys.stderr, flush=True)


def status_line(sock):
    r = hc.Reader(sock, limit=1 << 30).response()
    return r


def hwm_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def reset_hwm(pid):
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def one(args, name, path, body, decoded, allowed, headers=None, check=None):
    """sends one request, times /healthz meanwhile, checks status, RSS growth and the probes"""
    if args.only and args.only not in name:
        return None
    pid = args.pid
    rss0, t_end = hc.proc_rss_kb(pid), time.monotonic() + 5
    while time.monotonic() < t_end:   # the memory of the previous case going back
        time.sleep(0.25)
        r = hc.proc_rss_kb(pid)
        if r >= rss0 - 1024:
            break
        rss0 = r
    rss0 = hc.proc_rss_kb(pid)
    can_hwm = reset_hwm(pid)
    samp = hc.Sampler(pid, interval=0.01)
    samp.start()
    prober = hc.Prober(args.port, interval=0.01, deadline_s=args.deadline)
    prober.start()
    time.sleep(0.1)
    t0 = time.monotonic()
    st = None
    msg = ""
    try:
        s = hc.connect(args.port, timeout=120)
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        hc.send_all(s, hc.req("POST", path, body, headers=h))
        r = status_line(s)
        s.close()
        if r:
            st = r.status
            msg = r.body[:160].decode("utf-8", "replace")
            if check and st == 200:
                err = check(r)
                if err:
                    fail(f"{name}: {err}")
    except OSError as e:
        msg = repr(e)
    secs = time.monotonic() - t0
    time.sleep(0.1)
    prober.stop()
    samp.stop()
    peak = hwm_kb(pid) if can_hwm else samp.max_rss_kb
    growth_mib = max(0, peak - rss0) / 1024.0
    bound_mib = 8 * decoded / 2**20 + 24
    row = {"case": name, "status": st, "decoded_mib": round(decoded / 2**20, 1),
           "body_mib": round(len(body) / 2**20, 2), "seconds": round(secs, 2),
           "rss_before_mib": round(rss0 / 1024, 1), "rss_growth_mib": round(growth_mib, 1),
           "healthz_p50_ms": round(prober.p50(), 1), "healthz_p99_ms": round(prober.p99(), 1),
           "healthz_max_ms": round(max(prober.ms) if prober.ms else -1, 1),
           "probes": len(prober.ms), "answer": msg[:120]}
    print(json.dumps(row), flush=True)
    if st not in allowed:
        fail(f"{name}: status {st} ({msg[:120]}), expected one of {allowed}")
    if not args.no_rss and growth_mib > bound_mib:
        fail(f"{name}: RSS grew {growth_mib:.0f} MiB for {decoded / 2**20:.1f} MiB decoded "
             f"(bound {bound_mib:.0f})")
    for f in prober.failures[:3]:
        fail(f"{name}: probe {f}")
    if not hc.alive(pid):
        fail(f"{name}: daemon died")
    return row


def dense(n):
    """a JSON array of n ones ("[1,1,...,1]")"""
    return b"[" + b"1," * (n - 1) + b"1]"


def v2_body(rows, cols, dt="FP32"):
    data = dense(rows * cols)
    return (b'{"inputs":[{"name":"INPUT0","datatype":"' + dt.encode() + b'","shape":[' +
            str(rows).encode() + b"," + str(cols).encode() + b'],"data":' + data + b"}]}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--mib", type=float, default=24)
    ap.add_argument("--function", default="digits")
    ap.add_argument("--no-rss", action="store_true")
    ap.add_argument("--deadline", type=float, default=2.0)
    ap.add_argument("--only", default="", help="run only the cases whose name contains this")
    args = ap.parse_args()
    fn = args.function
    n = int(args.mib * 2**20 / 2)
    rows = []
    big = dense(n)
    rows.append(one(args, "echo-dense-array", "/v1/functions/echo/invoke", big, len(big),
                    [200, 413]))
    inv = b'{"inputs":[' + b",".join([dense(64)] * (n // 64)) + b"]}"
    rows.append(one(args, "invoke-dense-rows", f"/v1/functions/{fn}/invoke", inv, len(inv),
                    [413]))
    del inv
    v2 = v2_body(n // 64, 64)
    rows.append(one(args, "v2-dense-data", f"/v2/models/{fn}/infer", v2, len(v2), [400, 413]))
    del v2
    del big
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    v2 = v2_body(n // 64, 64)
    gz = z.compress(v2) + z.flush()
    rows.append(one(args, "v2-gzip-tensor", f"/v2/models/{fn}/infer", gz, len(v2), [400, 413],
                    headers={"Content-Encoding": "gzip"}))
    del v2
    bomb = hc.gzip_bomb(int(args.mib * 2**20))
    rows.append(one(args, "v2-gzip-zeros", f"/v2/models/{fn}/infer", bomb,
                    int(args.mib * 2**20), [400, 413], headers={"Content-Encoding": "gzip"}))
    # within the bounds: a gzip body inflating to 3 MiB (parsed off the loop), and a big
    # dense tensor echoed back (its answer serialized off the loop)
    z = zlib.compressobj(6, zlib.DEFLATED, 31)
    v2 = v2_body(3 * 2**20 // 128, 64)
    gz = z.compress(v2) + z.flush()
    rows.append(one(args, "v2-gzip-within-bounds", f"/v2/models/{fn}/infer", gz, len(v2), [200],
                    headers={"Content-Encoding": "gzip"}))
    del v2
    m = n // 2
    v2 = (b'{"inputs":[{"name":"x","datatype":"FP32","shape":[' + str(m).encode() +
          b'],"data":' + dense(m) + b"}]}")

    def echoed(r):
        if len(r.body) < 2 * m or r.body.count(b"1.0,") != m - 1:
            return f"echo answer of {len(r.body)} bytes, not {m} values 1.0"
        return None
    rows.append(one(args, "v2-echo-dense", "/v2/models/e/infer", v2, len(v2), [200],
                    check=echoed))
    del v2
    # binary UINT8 echoed back in binary: 1 byte an element stays 1 (not an 8-byte double)
    m = int(args.mib * 2**20) // 2
    head = json.dumps({"inputs": [{"name": "x", "datatype": "UINT8", "shape": [m],
                                   "parameters": {"binary_data_size": m}}],
                       "parameters": {"binary_data_output": True}}).encode()

    def echoed_bin(r):
        hl = int(r.header("Inference-Header-Content-Length", "-1"))
        if hl < 0 or r.body[hl:] != b"\1" * m:
            return "binary echo differs"
        return None
    rows.append(one(args, "v2-echo-binary-uint8", "/v2/models/e/infer", head + b"\1" * m,
                    len(head) + m, [200], check=echoed_bin,
                    headers={"Inference-Header-Content-Length": str(len(head))}))
    # binary extension: a shape of 2^40 elements, a size that disagrees, a huge header length
    head = json.dumps({"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1 << 20, 1 << 20],
                                   "parameters": {"binary_data_size": 16}}]}).encode()
    rows.append(one(args, "v2-binary-huge-shape", f"/v2/models/{fn}/infer", head + b"\0" * 16,
                    len(head) + 16, [400],
                    headers={"Inference-Header-Content-Length": str(len(head))}))

    def served(r):
        try:
            o = json.loads(r.body)
            outs = {x["name"]: x for x in o["outputs"]}
            if outs["OUTPUT0"]["shape"] != [2048, 10] or len(outs["LABEL"]["data"]) != 2048:
                return "wrong output shapes " + str(outs["OUTPUT0"]["shape"])
        except (ValueError, KeyError) as e:
            return "bad response " + repr(e)
        return None
    ok = v2_body(2048, 64)
    rows.append(one(args, "v2-within-bounds", f"/v2/models/{fn}/infer", ok, len(ok), [200],
                    check=served))
    rows = [r for r in rows if r]
    if not rows:
        return 1
    worst = max(rows, key=lambda r: r["rss_growth_mib"])
    p99 = max(r["healthz_p99_ms"] for r in rows)
    print(json.dumps({"summary": True, "worst_case": worst["case"],
                      "worst_rss_growth_mib": worst["rss_growth_mib"],
                      "worst_healthz_p99_ms": p99,
                      "healthz_max_ms": max(r["healthz_max_ms"] for r in rows),
                      "failures": len(failures)}), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

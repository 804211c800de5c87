"""Multi-GPU benchmark driver (issue 9), run by bench/bench_multigpu.sh on a node with 2+ GPUs.
Each figure is a ratio against a baseline from the same run:
  1. restore rate of one snapshot onto cuda:0 alone vs two snapshots restored at the same time
     onto cuda:0 and cuda:1 (separate processes, `thaw snapshot restore`), with all cores and
     with half the cores each (what each restore has when two share the node);
  2. the daemon: two llama functions cold-started at the same time (device "auto") land on
     different GPUs; each one's restore time from the daemon's "cold start" log line vs a
     single cold start of the same function;
  3. a finetune job (device "auto") runs on the GPU the serving function is not on; the serving
     function's warm p50 latency with the job running vs without;
  4. per-device metrics and /v1/devices after all that."""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ap = argparse.ArgumentParser()
ap.add_argument("--build", default="build")
ap.add_argument("--layers", type=int, default=22)
ap.add_argument("--repeat", type=int, default=3)
ap.add_argument("--port", type=int, default=18941)
a = ap.parse_args()
thaw = os.path.abspath(a.build + "/thaw")
gen = os.path.abspath(a.build + "/bench/snap_genmodel")
src = os.path.abspath(os.path.dirname(__file__) + "/..")
W = tempfile.mkdtemp(prefix="thaw-bench-mg.")
url = "http://127.0.0.1:%d" % a.port
med = statistics.median
ncpu = os.cpu_count() or 2


def req(method, path, body=None, timeout=600):
    data = json.dumps(body).encode() if body is not None else None
    r = urllib.request.Request(url + path, data=data, method=method)
    try:
        with urllib.request.urlopen(r, timeout=timeout) as f:
            raw = f.read()
            return f.status, (json.loads(raw) if raw[:1] in (b"{", b"[") else raw.decode())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def ngpus():
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout
        return len([l for l in out.splitlines() if l.startswith("GPU ")])
    except OSError:
        return 0


if ngpus() < 2:
    print("multigpu: skipped (fewer than 2 GPUs)")
    sys.exit(0)

print("multi-GPU benchmark: %d-layer Llama-shaped BF16 model, %d GPUs, %d cores (repeat %d)" %
      (a.layers, ngpus(), ncpu, a.repeat))
subprocess.run([gen, W + "/model", str(a.layers)], check=True, stdout=subprocess.DEVNULL)
os.makedirs(W + "/data/snapshots")
snaps = [W + "/data/snapshots/a.thaw", W + "/data/snapshots/b.thaw"]
subprocess.run([thaw, "snapshot", "pack", W + "/model", "-o", snaps[0], "--kind", "llama", "--quiet"],
               check=True)
subprocess.run(["cp", snaps[0], snaps[1]], check=True)
img = json.loads(subprocess.run([thaw, "snapshot", "restore", snaps[0], "--json", "--repeat", "1"],
                                capture_output=True, text=True, check=True).stdout)["image_bytes"]
print("image %.2f GB, snapshot %.2f GB (both files in the page cache)" % (img / 1e9, os.path.getsize(snaps[0]) / 1e9))


def restore(snap, dev, threads, n):
    out = subprocess.run([thaw, "snapshot", "restore", snap, "--device", dev, "--json", "--repeat",
                          str(n), "--threads", str(threads)], capture_output=True, text=True, check=True)
    return [r["gbps_raw"] for r in json.loads(out.stdout)["runs"]]


def concurrent(threads, n):
    res = [None, None]

    def one(i):
        res[i] = restore(snaps[i], "cuda:%d" % i, threads, n)
    ts = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return res


# 1. restore rates
restore(snaps[0], "cuda:0", ncpu, 1)   # warm-up (CUDA context, pinned pool)
restore(snaps[1], "cuda:1", ncpu, 1)
alone_all = med(restore(snaps[0], "cuda:0", ncpu, a.repeat))
alone_half = med(restore(snaps[0], "cuda:0", max(1, ncpu // 2), a.repeat))
alone1_half = med(restore(snaps[1], "cuda:1", max(1, ncpu // 2), a.repeat))
both_half = concurrent(max(1, ncpu // 2), a.repeat)
both_all = concurrent(ncpu, a.repeat)
print("%-60s %8s %8s" % ("restore, page cache warm (GB/s of image)", "cuda:0", "cuda:1"))
print("%-60s %8.1f" % ("alone, %d threads" % ncpu, alone_all))
print("%-60s %8.1f %8.1f" % ("alone, %d threads" % (ncpu // 2), alone_half, alone1_half))
print("%-60s %8.1f %8.1f   each %.2fx / %.2fx of alone (same threads)" % (
    "both at once, %d threads each" % (ncpu // 2), med(both_half[0]), med(both_half[1]),
    med(both_half[0]) / alone_half, med(both_half[1]) / alone1_half))
print("%-60s %8.1f %8.1f   each %.2fx / %.2fx of alone (%d threads); node total %.1f GB/s = %.2fx" % (
    "both at once, %d threads each" % ncpu, med(both_all[0]), med(both_all[1]),
    med(both_all[0]) / alone_all, med(both_all[1]) / alone_all, ncpu,
    med(both_all[0]) + med(both_all[1]), (med(both_all[0]) + med(both_all[1])) / alone_all))

# 2. the daemon
log = W + "/serve.log"
srv = subprocess.Popen([thaw, "serve", "--dev", "--port", str(a.port), "--data", W + "/data",
                        "--no-access-log", "--host-ttl", "3600",
                        "--allow-root", src + "/tests/data", "--job-step-ms", "1"],
                       stderr=open(log, "w"), stdout=subprocess.DEVNULL)


def cold_lines():
    return [json.loads(l) for l in open(log) if '"msg":"cold start"' in l]


def state(name):
    return req("GET", "/v1/functions/" + name)[1]


def wait_cold(name):
    for _ in range(2000):
        if state(name)["state"] == "cold":
            return
        time.sleep(0.01)
    raise SystemExit("%s never went cold" % name)


def invoke(name, tokens=(1, 2, 3, 4)):
    st, out = req("POST", "/v1/functions/%s/invoke" % name, {"tokens": list(tokens), "max_tokens": 1})
    if st != 200:
        raise SystemExit("invoke %s: %s %s" % (name, st, out))
    return out


try:
    for _ in range(600):
        try:
            if req("GET", "/readyz")[0] == 200:
                break
        except OSError:
            time.sleep(0.05)
    for n in ("a", "b"):
        st, o = req("PUT", "/v1/functions/" + n, {"kind": "llama", "snapshot": n + ".thaw", "device": "auto",
                                                  "idle_timeout_s": 600, "timeout_s": 600, "max_batch": 1})
        assert st in (200, 201), o
    invoke("a")   # first cold start of each: warm-up
    invoke("b")
    single, pair, devs_seen = [], [], []
    for r in range(a.repeat):
        for n in ("a", "b"):
            req("POST", "/v2/repository/models/%s/unload" % n, {})
            wait_cold(n)
        k = len(cold_lines())
        invoke("a")
        single.append(cold_lines()[k]["restore_ms"])
        req("POST", "/v2/repository/models/a/unload", {})
        wait_cold("a")
        k = len(cold_lines())
        ts = [threading.Thread(target=invoke, args=(n,)) for n in ("a", "b")]
        t0 = time.perf_counter()
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        both_wall = time.perf_counter() - t0
        lines = cold_lines()[k:]
        pair.append(([l["restore_ms"] for l in lines], both_wall))
        devs_seen.append(sorted(l["device"] for l in lines))
    print("daemon cold starts from disk (page cache warm), restore part from the log, ms:")
    print("  one function alone: %s (median %.1f ms = %.1f GB/s)" % (
        ["%.1f" % x for x in single], med(single), img / med(single) / 1e6))
    for (ms_, wall), d in zip(pair, devs_seen):
        print("  two at once on %s: restore %s ms, both first tokens in %.1f ms" % (
            d, ["%.1f" % x for x in ms_], wall * 1e3))
    worst = med([max(ms_) for ms_, _ in pair])
    print("  each of two at once vs alone: %.2fx the restore time (median of the slower one); "
          "spread over two GPUs every time: %s" % (worst / med(single),
                                                   all(d == ["cuda:0", "cuda:1"] for d in devs_seen)))
    # 3. a job on the idle GPU while the other serves
    req("POST", "/v2/repository/models/b/unload", {})
    wait_cold("b")
    serving = state("a")["device"]
    subprocess.run([thaw, "snapshot", "pack", src + "/tests/data/mlp_digits/model.safetensors", "-o",
                    W + "/data/snapshots/digits.thaw", "--kind", "mlp", "--quiet"], check=True)
    st, o = req("PUT", "/v1/functions/digits", {"kind": "mlp", "snapshot": "digits.thaw", "device": "cpu"})

    def lat(n):
        xs = []
        for _ in range(n):
            t = time.perf_counter()
            invoke("a")
            xs.append(time.perf_counter() - t)
        return xs
    base = lat(60)
    st, o = req("POST", "/v1/jobs", {"type": "finetune", "function": "digits", "device": "auto",
                                     "params": {"data": src + "/tests/data/digits.csv.gz", "epochs": 400,
                                                "batch_size": 32, "feature_scale": 0.0625, "seed": 1}})
    assert st == 202, o
    jid = o["id"]
    lane = None
    for _ in range(500):
        j = req("GET", "/v1/jobs/%d" % jid)[1]
        if j.get("lane"):
            lane = j["lane"]
            break
        time.sleep(0.01)
    during = lat(60)
    j = req("GET", "/v1/jobs/%d" % jid)[1]
    print("job %d (finetune, device auto) ran on %s while %s served function a; job state %s, "
          "progress %.2f" % (jid, lane, serving, j.get("state"), j.get("progress", 0)))
    print("  warm p50 of a: %.2f ms alone, %.2f ms with the job on the other GPU = %.2fx" % (
        med(base) * 1e3, med(during) * 1e3, med(during) / med(base)))
    req("DELETE", "/v1/jobs/%d" % jid)
    # 3b. from the host tier (decoded images in pinned host memory): copies only, no decode
    for n in ("a", "b"):
        st, o = req("PUT", "/v1/functions/" + n, {"kind": "llama", "snapshot": n + ".thaw", "device": "auto",
                                                  "idle_timeout_s": 0.5, "timeout_s": 600, "max_batch": 1})
        assert st in (200, 201), o

    def wait_host(name):
        for _ in range(3000):
            if state(name)["state"] == "host":
                return
            time.sleep(0.01)
        raise SystemExit("%s never reached the host tier" % name)
    h_single, h_pair = [], []
    for r in range(a.repeat):
        for n in ("a", "b"):
            invoke(n)
        for n in ("a", "b"):
            wait_host(n)
        k = len(cold_lines())
        invoke("a")
        h_single.append(cold_lines()[k]["copy_ms"])
        wait_host("a")
        k = len(cold_lines())
        ts = [threading.Thread(target=invoke, args=(n,)) for n in ("a", "b")]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        lines = cold_lines()[k:]
        h_pair.append(sorted((l["device"], l["copy_ms"]) for l in lines))
    print("host tier -> GPU (pinned host copy, no decode), copy part from the log:")
    print("  one alone: %s ms (median %.1f ms = %.1f GB/s)" % (
        ["%.1f" % x for x in h_single], med(h_single), img / med(h_single) / 1e6))
    for p in h_pair:
        print("  two at once: %s" % ", ".join("%s %.1f ms (%.1f GB/s)" % (d, c, img / c / 1e6) for d, c in p))
    hw = med([max(c for _, c in p) for p in h_pair])
    print("  each of two at once vs alone: %.2fx the rate (median of the slower one)" % (med(h_single) / hw))
    # 4. per-device view
    st, devs = req("GET", "/v1/devices")
    for d in (devs.get("devices", devs) if isinstance(devs, dict) else devs):
        print("  device %-7s %-28s used %6.2f GB of %6.2f, functions %s, busy %.2f" % (
            d["device"], d["name"][:28], d["memory_used"] / 1e9, d["memory_total"] / 1e9,
            d.get("functions"), d["busy_ratio"]))
    st, m = req("GET", "/metrics")
    for l in m.splitlines():
        if l.startswith(("thaw_device_", "thaw_lane_busy_ratio")):
            print("  " + l)
finally:
    srv.terminate()
    srv.wait(60)
    subprocess.run(["rm", "-rf", W])

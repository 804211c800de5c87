"""Cold-start benchmark driver (issue 5), run by bench/bench_coldstart.sh.
Generates a Llama-shaped BF16 model (bench/snap_genmodel), packs it, deploys it on `thaw serve`
and measures, each against a baseline from the same run:
  - first token after scale-to-zero from disk (page cache warm and, where permitted, dropped)
    and from the host tier, vs a bare `thaw snapshot restore` of the same snapshot: the
    overhead (target <= 20 ms) and the ratio (target <= 1.2x from disk);
  - the breakdown from the daemon's "cold start" log line (restore, copy, load) plus the run;
  - a warm lease of a pooled lane vs a fresh device context + first GEMM (bench/ctx_lease);
  - on a GPU (--py-baseline): a fresh Python process that imports torch, loads the safetensors
    and runs one forward.
Prints a table; medians over --repeat runs."""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ap = argparse.ArgumentParser()
ap.add_argument("--build", default="build")
ap.add_argument("--layers", type=int, default=2)
ap.add_argument("--device", default="cpu")
ap.add_argument("--repeat", type=int, default=3)
ap.add_argument("--py-baseline", action="store_true")
ap.add_argument("--port", type=int, default=18931)
ap.add_argument("--settle", type=float, default=4.0,
                help="seconds to wait after dropping the page cache before a timed cold read")
a = ap.parse_args()
thaw = os.path.abspath(a.build + "/thaw")
gen = os.path.abspath(a.build + "/bench/snap_genmodel")
lease = os.path.abspath(a.build + "/bench/ctx_lease")
W = tempfile.mkdtemp(prefix="thaw-bench-cold.")
url = "http://127.0.0.1:%d" % a.port
med = statistics.median


def req(method, path, body=None, timeout=600):
    data = json.dumps(body).encode() if body is not None else None
    r = urllib.request.Request(url + path, data=data, method=method)
    try:
        with urllib.request.urlopen(r, timeout=timeout) as f:
            return f.status, json.loads(f.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def state():
    return req("GET", "/v1/functions/m")[1]["state"]


def wait_state(want, limit=120):
    t = time.time()
    while state() != want:
        if time.time() - t > limit:
            raise SystemExit("state %s never reached (is %s)" % (want, state()))
        time.sleep(0.05)


def drop(path):
    try:
        subprocess.run(["sync"], check=True)
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        # let the storage settle after the drop before the timed read (the bare restore's
        # process start would otherwise give it ~0.3 s that the daemon's call does not get)
        time.sleep(a.settle)
        return "drop_caches"
    except OSError:
        fd = os.open(path, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
        return "fadvise"


def first_token():
    t = time.perf_counter()
    st, out = req("POST", "/v1/functions/m/invoke", {"tokens": [1, 2, 3, 4], "max_tokens": 1})
    dt = time.perf_counter() - t
    if st != 200:
        raise SystemExit("invoke failed: %s %s" % (st, out))
    return dt


def last_cold_line(log):
    lines = [json.loads(l) for l in open(log) if '"msg":"cold start"' in l]
    return lines[-1] if lines else {}


print("cold start benchmark: %d-layer Llama-shaped BF16 model on %s (repeat %d)" %
      (a.layers, a.device, a.repeat))
subprocess.run([gen, W + "/model", str(a.layers)], check=True, stdout=subprocess.DEVNULL)
os.makedirs(W + "/data/snapshots")
snap = W + "/data/snapshots/m.thaw"
subprocess.run([thaw, "snapshot", "pack", W + "/model", "-o", snap, "--kind", "llama", "--quiet"],
               check=True)
size = os.path.getsize(W + "/model/model.safetensors")
print("model: %.2f GB bf16 safetensors, snapshot %.2f GB" % (size / 1e9, os.path.getsize(snap) / 1e9))


def bare_restore(cold):
    args = [thaw, "snapshot", "restore", snap, "--device", a.device, "--json", "--repeat", "1"]
    if cold:
        args += ["--cold", "--io", "direct"]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    run = json.loads(out)["runs"][0]
    if cold:
        print("  bare cold restore: wall %.1f ms, read-wait %.1f ms, %s" % (
            run["wall_s"] * 1e3, run["read_s"] * 1e3, run["io"]))
    return run["wall_s"]


bare_warm = med([bare_restore(False) for _ in range(a.repeat)])
log = W + "/serve.log"
args = [thaw, "serve", "--dev", "--port", str(a.port), "--data", W + "/data", "--no-access-log",
        "--host-ttl", "3600"]
if a.device == "cpu":
    args.append("--no-gpu")
srv = subprocess.Popen(args, stderr=open(log, "w"), stdout=subprocess.DEVNULL)
try:
    for _ in range(200):
        try:
            if req("GET", "/readyz")[0] == 200:
                break
        except OSError:
            time.sleep(0.05)
    st, o = req("PUT", "/v1/functions/m", {"kind": "llama", "snapshot": "m.thaw", "device": a.device,
                                           "idle_timeout_s": 1.0, "timeout_s": 600, "max_batch": 1})
    assert st in (200, 201), o
    disk, host, warm, restore_ms, load_ms, copy_ms, host_copy_ms = [], [], [], [], [], [], []
    for r in range(a.repeat):
        req("POST", "/v2/repository/models/m/unload", {})
        wait_state("cold")
        disk.append(first_token())
        c = last_cold_line(log)
        restore_ms.append(c.get("restore_ms", 0))
        load_ms.append(c.get("load_ms", 0))
        warm.append(first_token())
        wait_state("host")            # idle 1 s: evicted to the host tier
        host.append(first_token())
        c = last_cold_line(log)
        host_copy_ms.append(c.get("copy_ms", 0))
        load_ms.append(c.get("load_ms", 0))
    cold_disk, bare_cold, how = [], [], ""
    for r in range(a.repeat):
        # alternate which of the two reads the file first after the drop: a storage layer
        # below the page cache (a VM host's) may favour the second reader
        if r % 2:
            drop(snap)
            bare_cold.append(bare_restore(True))
        req("POST", "/v2/repository/models/m/unload", {})
        wait_state("cold")
        how = drop(snap)
        cold_disk.append(first_token())
        c = last_cold_line(log)
        print("  cold (page cache dropped) start %d: %s" % (r + 1, {k: c.get(k) for k in (
            "total_ms", "restore_ms", "restore_io", "restore_wall_ms", "read_ms", "decode_ms",
            "gpu_copy_ms", "load_ms")}))
        if r % 2 == 0:
            drop(snap)
            bare_cold.append(bare_restore(True))
    req("POST", "/v2/repository/models/m/unload", {})
finally:
    srv.terminate()
    srv.wait(30)

ms = lambda v: v * 1e3
print("%-52s %10s" % ("", "ms"))
print("%-52s %10.1f" % ("bare restore (thaw snapshot restore, page cache warm)", ms(bare_warm)))
print("%-52s %10.1f" % ("first token after scale to zero, from disk (warm cache)", ms(med(disk))))
print("%-52s %10.1f" % ("  of which restore (daemon log)", med(restore_ms)))
print("%-52s %10.1f" % ("  of which load (kind.load)", med(load_ms)))
print("%-52s %10.1f" % ("  warm call (the run itself)", ms(med(warm))))
over = ms(med(disk)) - ms(bare_warm) - ms(med(warm))
print("%-52s %10.1f   target <= 20: %s" % ("cold-start overhead: first token - bare restore - run",
                                            over, "met" if over <= 20 else "NOT met"))
print("%-52s %10.1f" % ("first token from the host tier", ms(med(host))))
print("%-52s %10.1f" % ("  of which host -> device copy", med(host_copy_ms)))
if a.device != "cpu":
    gbps = size / (med(host_copy_ms) / 1e3) / 1e9 if med(host_copy_ms) > 0 else 0
    print("%-52s %10.1f   (%.1f GB/s; target first token <= 100 ms)" % ("", ms(med(host)), gbps))
print("%-52s %10.1f" % ("bare restore, page cache dropped (%s), O_DIRECT" % how, ms(med(bare_cold))))
print("%-52s %10.1f   ratio %.2f (target <= 1.2)" % ("first token from disk, page cache dropped",
                                                   ms(med(cold_disk)), med(cold_disk) / med(bare_cold)))

# machine-readable record (bench/results/coldstart.tsv, charted by make bench-report)
subprocess.run(["sh", "-c", '. bench/record.sh && bench_record coldstart "$@"', "sh",
                "median of %d, %d layers, %s" % (a.repeat, a.layers, a.device),
                "%.1f" % ms(bare_warm), "%.1f" % med(restore_ms), "%.1f" % med(load_ms),
                "%.1f" % ms(med(warm)), "%.1f" % ms(med(disk)), "%.1f" % ms(med(host))],
               env=dict(os.environ, GPU="0" if a.device == "cpu" else "1"), check=False)

fresh = [float(subprocess.run([lease, "fresh", a.device], check=True, capture_output=True,
                              text=True).stdout) for _ in range(a.repeat)]
pooled = [float(x) for x in subprocess.run([lease, "pooled", a.device, "20"], check=True,
                                           capture_output=True, text=True).stdout.split()]
print("%-52s %10.2f" % ("fresh device open + first 1024^3 GEMM (new process)", med(fresh)))
print("%-52s %10.2f   %.0fx faster" % ("warm lease of a pooled lane + the same GEMM", med(pooled),
                                       med(fresh) / med(pooled)))
if a.py_baseline:
    py = []
    for r in range(a.repeat):
        drop(W + "/model/model.safetensors") if r == 0 else None
        t = time.perf_counter()
        out = subprocess.run([sys.executable, os.path.dirname(__file__) + "/py_coldstart.py",
                              W + "/model", a.device], capture_output=True, text=True)
        wall = time.perf_counter() - t
        if out.returncode != 0:
            print("python baseline failed:", out.stderr[-2000:])
            break
        j = json.loads(out.stdout.strip().splitlines()[-1])
        py.append((wall, j))
        print("  python run %d: %.2f s (import %.2f, cuda init %.2f, load %.2f, forward %.2f)" %
              (r + 1, wall, j["import_s"], j["cuda_init_s"], j["load_s"], j["forward_s"]))
    if py:
        pw = med([w for w, _ in py])
        print("%-52s %10.1f" % ("python: new process to first token (median)", ms(pw)))
        print("%-52s %10.1f   thaw %.0fx faster from disk, %.0fx from host" % (
            "thaw first token from disk (warm cache)", ms(med(disk)), pw / med(disk), pw / med(host)))
subprocess.run(["rm", "-rf", W])

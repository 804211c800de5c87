"""Cluster benchmark driver, run by bench/bench_cluster.sh: three `thaw serve` nodes on one
PostgreSQL 15 registry (started here in a temporary directory, Unix socket only) behind haproxy
round-robin, each node with one fake GPU, a CPU-bound function (the digits mlp) warm on one node.
Each figure is against a baseline measured in the same run:
  1. forwarding cost: p50 and p99 of calls sent straight to the node that holds the function
     (local) vs calls sent to another node, which forwards them (forwarded), alternating one by
     one, one client and then 8 concurrent clients; the difference of the p50s (target <= 1 ms);
     and the same calls through haproxy (a third of them local);
  2. state-change propagation: a traffic change made on one node, timed until each other node's
     calls follow it (each node polled with invocations); p50/p99 over the changes (target
     p99 <= 200 ms), against the polling interval's own cost (one invocation's round trip)."""
import argparse
import http.client
import json
import os
import pwd
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ap = argparse.ArgumentParser()
ap.add_argument("--build", default="build")
ap.add_argument("--calls", type=int, default=2000)
ap.add_argument("--changes", type=int, default=60)
a = ap.parse_args()
thaw = os.path.abspath(a.build + "/thaw")
src = os.path.abspath(os.path.dirname(__file__) + "/..")
PGBIN = os.environ.get("THAW_PG_BIN", "/usr/lib/postgresql/15/bin")
W = tempfile.mkdtemp(prefix="thaw-bench-cluster.")
os.chmod(W, 0o755)
procs = []
med = statistics.median


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(p / 100.0 * len(v)))]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def as_pg(cmd):
    if os.getuid() == 0:
        return ["runuser", "-u", "postgres", "--"] + cmd
    return cmd


def cleanup():
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
    subprocess.run(as_pg([PGBIN + "/pg_ctl", "-D", W + "/pg", "stop", "-m", "fast"]),
                   capture_output=True)
    shutil.rmtree(W, ignore_errors=True)


def need(tool):
    if not shutil.which(tool) and not os.path.exists(tool):
        print("cluster: %s missing (scripts/install-deps.sh installs it)" % tool)
        sys.exit(1)


need(PGBIN + "/initdb")
need("haproxy")

# PostgreSQL in W/pg, socket in W
pgdir = W + "/pg"
os.mkdir(pgdir, 0o700)
if os.getuid() == 0:
    pw = pwd.getpwnam("postgres")
    os.chown(pgdir, pw.pw_uid, pw.pw_gid)
    os.chown(W, pw.pw_uid, pw.pw_gid)
subprocess.run(as_pg([PGBIN + "/initdb", "-D", pgdir, "-U", "postgres", "-A", "trust"]),
               check=True, capture_output=True)
subprocess.run(as_pg([PGBIN + "/pg_ctl", "-D", pgdir, "-w", "-l", pgdir + "/log", "-o",
                      "-c listen_addresses='' -c unix_socket_directories=%s" % W, "start"]),
               check=True, capture_output=True)
uri = "postgresql:///postgres?host=%s&user=postgres" % W

try:
    shared = W + "/shared"
    os.mkdir(shared, 0o755)
    secret = shared + "/cluster.secret"
    with open(secret, "w") as f:
        f.write("bench-cluster-secret-0123456789abcdef\n")
    snap = shared + "/digits.thaw"
    subprocess.run([thaw, "snapshot", "pack", src + "/tests/data/mlp_digits/model.safetensors",
                    "-o", snap, "--kind", "mlp"], check=True, capture_output=True)
    out = subprocess.run([thaw, "keys", "create", "--scope", "admin", "--registry", uri,
                          "--data", W + "/cli"], check=True, capture_output=True, text=True)
    key = [w for w in out.stdout.split() if w.startswith("thaw_")][0]
    H = {"Authorization": "Bearer " + key, "Content-Type": "application/json"}

    ports = [free_port() for _ in range(3)]
    for i, port in enumerate(ports):
        data = W + "/data%d" % i
        os.mkdir(data)
        log = open(W + "/node%d.log" % i, "w")
        procs.append(subprocess.Popen(
            [thaw, "serve", "--port", str(port), "--host", "127.0.0.1", "--data", data,
             "--registry", uri, "--node-id", "n%d" % (i + 1), "--cluster-secret-file", secret,
             "--no-gpu", "--fake-gpus", "1:0.05", "--allow-root", shared, "--shared-dir", shared,
             "--no-access-log", "--no-audit", "--cpu-threads", "1"], stderr=log, stdout=log))

    def conn(port):
        return http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def call(c, method, path, body=None):
        c.request(method, path, body=json.dumps(body) if body is not None else None, headers=H)
        r = c.getresponse()
        raw = r.read()
        return r.status, r.getheader("Thaw-Revision"), r.getheader("Thaw-Node"), raw

    for port in ports:
        for _ in range(300):
            try:
                if call(conn(port), "GET", "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.05)
    lbport = free_port()
    cfg = W + "/haproxy.cfg"
    with open(cfg, "w") as f:
        f.write("global\n  maxconn 1024\ndefaults\n  mode http\n  timeout connect 1s\n"
                "  timeout client 60s\n  timeout server 60s\n  option http-keep-alive\n"
                "frontend fe\n  bind 127.0.0.1:%d\n  default_backend be\nbackend be\n"
                "  balance roundrobin\n" % lbport)
        for i, port in enumerate(ports):
            f.write("  server n%d 127.0.0.1:%d\n" % (i + 1, port))
    procs.append(subprocess.Popen(["haproxy", "-f", cfg, "-db"], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL))
    time.sleep(0.3)

    inp = json.load(open(src + "/deploy/demo/digits-input.json"))
    c0 = conn(ports[0])
    st = call(c0, "PUT", "/v1/functions/digits",
              {"kind": "mlp", "snapshot": snap, "concurrency": 16, "max_queue": 256})[0]
    assert st in (200, 201), st
    st, _, holder, _ = call(c0, "POST", "/v1/functions/digits/invoke", inp)
    assert st == 200, st
    hi = int(holder[1:]) - 1
    other = (hi + 1) % 3
    time.sleep(0.5)

    # 1. forwarding cost, one client: alternate local / forwarded
    cl, cf = conn(ports[hi]), conn(ports[other])
    loc, fwd = [], []
    for i in range(a.calls):
        for c, acc in ((cl, loc), (cf, fwd)):
            t0 = time.perf_counter()
            st, _, node, _ = call(c, "POST", "/v1/functions/digits/invoke", inp)
            acc.append((time.perf_counter() - t0) * 1000)
            assert st == 200 and node == holder, (st, node)
    print("forwarding, 1 client, %d calls each: local p50 %.3f ms p99 %.3f; forwarded p50 "
          "%.3f ms p99 %.3f; forwarded - local p50 %+.3f ms (target <= 1 ms)"
          % (a.calls, med(loc), pct(loc, 99), med(fwd), pct(fwd, 99), med(fwd) - med(loc)))

    def load(port, n, acc):
        c = conn(port)
        for _ in range(n):
            t0 = time.perf_counter()
            st = call(c, "POST", "/v1/functions/digits/invoke", inp)[0]
            acc.append((time.perf_counter() - t0) * 1000)
            assert st == 200

    def concurrent(port, clients, n):
        accs = [[] for _ in range(clients)]
        ts = [threading.Thread(target=load, args=(port, n, accs[k])) for k in range(clients)]
        t0 = time.perf_counter()
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        wall = time.perf_counter() - t0
        allv = [x for acc in accs for x in acc]
        return med(allv), pct(allv, 99), clients * n / wall

    n8 = max(50, a.calls // 8)
    rl = concurrent(ports[hi], 8, n8)
    rf = concurrent(ports[other], 8, n8)
    rb = concurrent(lbport, 8, n8)
    print("forwarding, 8 clients: local p50 %.3f ms p99 %.3f (%.0f calls/s); forwarded p50 "
          "%.3f ms p99 %.3f (%.0f calls/s); forwarded - local p50 %+.3f ms"
          % (rl[0], rl[1], rl[2], rf[0], rf[1], rf[2], rf[0] - rl[0]))
    print("through haproxy, 8 clients: p50 %.3f ms p99 %.3f (%.0f calls/s; %.2fx the local "
          "node's rate)" % (rb[0], rb[1], rb[2], rb[2] / rl[2]))

    # 2. propagation of a traffic change made on node `hi`: revision 2 exists; flip traffic
    st = call(c0, "PUT", "/v1/functions/digits",
              {"kind": "mlp", "snapshot": snap, "concurrency": 16, "max_queue": 256})[0]
    assert st == 200, st
    for _ in range(20):
        call(conn(ports[0]), "POST", "/v1/functions/digits/invoke", inp)
    watchers = [conn(p) for p in ports]
    prop, rtt = [], []
    want = 2
    for k in range(a.changes):
        want = 1 if want == 2 else 2
        t0 = time.perf_counter()
        st = call(watchers[k % 3], "PUT", "/v1/functions/digits",
                  {"traffic": {str(want): 100}})[0]
        assert st == 200, st
        for j, c in enumerate(watchers):
            if j == k % 3:
                continue
            while True:
                t1 = time.perf_counter()
                st, rev, _, _ = call(c, "POST", "/v1/functions/digits/invoke", inp)
                rtt.append((time.perf_counter() - t1) * 1000)
                if rev == str(want):
                    break
                if time.perf_counter() - t0 > 5:
                    raise SystemExit("cluster: node %d never saw revision %d" % (j + 1, want))
            prop.append((time.perf_counter() - t0) * 1000)
    print("state changes (%d traffic flips, on each node in turn): seen by every other node "
          "p50 %.1f ms p99 %.1f ms max %.1f (target p99 <= 200 ms); one polling call %.2f ms p50"
          % (a.changes, med(prop), pct(prop, 99), max(prop), med(rtt)))
finally:
    cleanup()

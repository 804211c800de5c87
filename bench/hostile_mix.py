#!/usr/bin/env python3
"""hostile_mix.py — the hostile clients of the soak (bench/soak.sh with SOAK_HOSTILE=1).

Runs, each in its own thread and from its own loopback address (so a per-address bound hits the
attacker, not the well-behaved clients on 127.0.0.1), until --seconds pass or SIGTERM:
  pipeliner  (127.0.0.3) pipelines GET /healthz and echo invokes without ever reading, until
             the server stops taking bytes, holds the connection, resets it and starts again;
  flood      (127.0.0.2) opens up to --flood connections, half of them silent and half sending
             an unfinished request, holds them, closes them all and starts again;
  amplifier  (127.0.0.4) posts V2 infer bodies gzip-compressed to ~64 KiB that inflate to
             64 MiB, and dense JSON arrays of --dense-mib MiB to /invoke, reading each answer;
  prober     (127.0.0.5) GET /healthz every 50 ms on a fresh connection: latency p50/p99/max.
At the end it prints "hostile: ..." summary lines; the exit status is 1 when a probe failed
(no 200 within 2 s) or an attack request got a 5xx other than 503, else 0.
"""
import argparse
import gzip
import resource
import signal
import socket
import threading
import time

stop = threading.Event()
lock = threading.Lock()
stats = {
    "pipe_conns": 0, "pipe_max_bytes": 0,
    "flood_rounds": 0, "flood_max_open": 0,
    "amp_requests": 0, "amp_status": {},
    "probe_ms": [], "probe_fail": 0, "probe_fail_why": "",
}


def conn(src, port, timeout=5.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    return s


def read_status(s, deadline_s=60.0):
    """reads one response (head + Content-Length body); returns its status or None"""
    s.settimeout(deadline_s)
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d:
            return None
        buf += d
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    clen = 0
    for ln in lines[1:]:
        k, _, v = ln.partition(b":")
        if k.strip().lower() == b"content-length":
            clen = int(v.strip())
    while len(rest) < clen:
        d = s.recv(65536)
        if not d:
            break
        rest += d
    return status


def pipeliner(port, hold_s):
    reqs = (b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" +
            b"POST /v1/functions/echo/invoke HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 20\r\n\r\n{\"inputs\":[[1,2,3]]}") * 64
    while not stop.is_set():
        try:
            s = conn("127.0.0.3", port)
        except OSError:
            time.sleep(0.5)
            continue
        s.setblocking(False)
        sent, stalled = 0, None
        t_end = time.time() + hold_s
        while not stop.is_set() and time.time() < t_end:
            try:
                sent += s.send(reqs)
                stalled = None
            except BlockingIOError:
                stalled = stalled or time.time()
                time.sleep(0.05)
            except OSError:
                break
        with lock:
            stats["pipe_conns"] += 1
            stats["pipe_max_bytes"] = max(stats["pipe_max_bytes"], sent)
        try:   # reset, as a client that gives up would
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            s.close()
        except OSError:
            pass


def flood(port, n, hold_s):
    while not stop.is_set():
        socks = []
        for i in range(n):
            if stop.is_set():
                break
            try:
                s = conn("127.0.0.2", port, timeout=1.0)
                if i % 2:
                    s.send(b"POST /v1/functions/echo/invoke HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n")
                socks.append(s)
            except OSError:
                break
        with lock:
            stats["flood_rounds"] += 1
            stats["flood_max_open"] = max(stats["flood_max_open"], len(socks))
        stop.wait(hold_s)
        for s in socks:
            s.close()
        stop.wait(0.5)


def amplifier(port, dense_mib):
    # 64 MiB of a valid-looking V2 data array, gzip'd once (~64 KiB on the wire)
    inner = b'{"inputs":[{"name":"INPUT0","shape":[1,64],"datatype":"FP32","data":[' + \
        b"0," * (32 * 1024 * 1024 - 40) + b"0]}]}"
    bomb = gzip.compress(inner, 9)
    dense = b'{"inputs":[' + b"1," * (dense_mib * 1024 * 512) + b"1]}"
    bodies = [
        (b"POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
         b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(bomb), bomb),
        (b"POST /v1/functions/digits/invoke HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
         b"Content-Length: %d\r\n\r\n" % len(dense), dense),
    ]
    i = 0
    while not stop.is_set():
        head, body = bodies[i % len(bodies)]
        i += 1
        st = "error"
        try:
            s = conn("127.0.0.4", port, timeout=60.0)
            s.sendall(head + body)
            st = read_status(s)
            s.close()
        except OSError as e:
            st = "conn:" + type(e).__name__
        with lock:
            stats["amp_requests"] += 1
            stats["amp_status"][str(st)] = stats["amp_status"].get(str(st), 0) + 1
        stop.wait(0.2)


def prober(port):
    while not stop.is_set():
        t0 = time.time()
        why = ""
        try:
            s = conn("127.0.0.5", port, timeout=2.0)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            st = read_status(s, 2.0)
            s.close()
            if st != 200:
                why = "status %s" % st
        except OSError as e:
            why = type(e).__name__
        ms = (time.time() - t0) * 1000
        with lock:
            if why:
                stats["probe_fail"] += 1
                stats["probe_fail_why"] = why
            else:
                stats["probe_ms"].append(ms)
        stop.wait(0.05)


def pct(v, q):
    if not v:
        return float("nan")
    v = sorted(v)
    return v[min(len(v) - 1, int(q * len(v)))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--flood", type=int, default=1500, help="connections a flood round opens")
    ap.add_argument("--hold", type=float, default=5.0, help="seconds a flood or pipeline is held")
    ap.add_argument("--dense-mib", type=int, default=16, help="MiB of the dense JSON array")
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    ts = [threading.Thread(target=pipeliner, args=(a.port, a.hold), daemon=True),
          threading.Thread(target=flood, args=(a.port, min(a.flood, hard - 64), a.hold), daemon=True),
          threading.Thread(target=amplifier, args=(a.port, a.dense_mib), daemon=True),
          threading.Thread(target=prober, args=(a.port,), daemon=True)]
    for t in ts:
        t.start()
    stop.wait(a.seconds)
    stop.set()
    for t in ts:
        t.join(70)
    p = stats["probe_ms"]
    print("hostile: pipeliner: %d connections, at most %d bytes taken by the server on one" %
          (stats["pipe_conns"], stats["pipe_max_bytes"]))
    print("hostile: flood: %d rounds, at most %d connections open at once" %
          (stats["flood_rounds"], stats["flood_max_open"]))
    print("hostile: amplifier: %d requests, statuses %s" % (stats["amp_requests"],
          " ".join("%s:%d" % kv for kv in sorted(stats["amp_status"].items()))))
    print("hostile: /healthz probes: %d ok, %d failed%s; latency p50 %.1f ms, p99 %.1f ms, max %.1f ms" %
          (len(p), stats["probe_fail"], (" (last: %s)" % stats["probe_fail_why"]) if stats["probe_fail"] else "",
           pct(p, 0.5), pct(p, 0.99), max(p) if p else float("nan")))
    bad5 = sum(n for k, n in stats["amp_status"].items() if k.isdigit() and int(k) >= 500 and k != "503")
    if bad5:
        print("hostile: FAIL: %d attack requests answered with a 5xx other than 503" % bad5)
    if stats["probe_fail"]:
        print("hostile: FAIL: /healthz probes failed")
    return 1 if bad5 or stats["probe_fail"] else 0


if __name__ == "__main__":
    raise SystemExit(main())

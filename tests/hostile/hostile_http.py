#!/usr/bin/env python3
"""hostile_http.py — attacks on the HTTP layer of a running, keyed `thaw serve` (built-in echo
function), one case per run, using hclient.py. Prints one JSON line of figures; exit 0 when the
case held, 1 otherwise.

Usage: hostile_http.py --case CASE --port P --pid PID [--key KEY] [--n N]
Cases:
  pipeline      N (20000) pipelined requests on one connection, sent as one buffer: 2000
                health checks, then mixed kinds (health, 401s with and without a small body,
                echo invokes with bodies, 404s), each with its own X-Request-Id: every answer in
                order, with the right status and body; alive after
  unauth        8 connections announce 24 MiB bodies without a key (half with Expect:
                100-continue, half sending the body at once): 401 before the body, no 100
                Continue, the connection closed; server RSS growth under 32 MiB
  shrink        6 keep-alive connections each send one 8 MiB echo body and stay open: server
                RSS growth under 24 MiB once answered (no body buffer kept per connection)
  never_read    one client pipelines N (100000) 404s with long paths and never reads: server
                RSS growth under 32 MiB; then it reads everything, in order
  per_addr      with --max-connections-per-address 10: the 11th connection from one address
                serves probes only (503 for others)
  flood         with --max-connections 40 --probe-reserve 8: 150 connections that trickle a
                probe request and 50 silent ones fill the server and its reserve; probes still
                answer 200 (a new one displaces the oldest trickling one), other requests 503;
                descriptors back to their start once the flood is gone
Loopback only; every wait is bounded."""
import argparse, json, os, sys, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hclient as hc  # noqa: E402

failures = []


def fail(msg):
    failures.append(msg)
    print("hostile_http: FAIL " + msg, file=sys.stderr, flush=True)


def settle_rss(pid, s=1.0):
    """the server's RSS after a short settle (its memory trim timer runs meanwhile)"""
    time.sleep(s)
    return hc.proc_rss_kb(pid)


def case_pipeline(a, fig):
    n = a.n or 20000
    auth = {"Authorization": f"Bearer {a.key}", "Content-Type": "application/json"}
    reqs, want = [], []
    for i in range(n):
        rid = f"q{i}"
        k = i % 5 if i >= 2000 else 0   # first a run of health checks (the 34 KB crash)
        if k == 0:
            reqs.append(hc.req("GET", "/healthz", rid=rid)); want.append((200, None))
        elif k == 1:
            reqs.append(hc.req("GET", "/v1/functions", rid=rid)); want.append((401, None))
        elif k == 2:
            body = json.dumps({"i": i, "pad": "x" * (i % 300)}).encode()
            reqs.append(hc.req("POST", "/v1/functions/echo/invoke", body, auth, rid=rid))
            want.append((200, body))
        elif k == 3:
            reqs.append(hc.req("GET", f"/nope/{i}", rid=rid)); want.append((404, None))
        else:   # no key, a small body: 401 at the head, the body dropped, the connection kept
            reqs.append(hc.req("POST", "/v1/functions/echo/invoke", b'{"x":1}',
                               {"Content-Type": "application/json"}, rid=rid))
            want.append((401, None))
    probe = hc.Prober(a.port, interval=0.05, deadline_s=5.0)
    probe.start()
    rs, secs = hc.pipeline(a.port, reqs, timeout=120)
    probe.stop()
    got = sum(1 for r in rs if r is not None)
    bad = 0
    for i, (r, (st, body)) in enumerate(zip(rs, want)):
        if r is None:
            fail(f"pipeline: no answer from request {i} on ({got} of {n} answered)")
            break
        if r.rid != f"q{i}" or r.status != st or (body is not None and r.body != body):
            bad += 1
            if bad <= 5:
                fail(f"pipeline: answer {i}: status {r.status} rid {r.rid} (want {st} q{i})")
    if not hc.alive(a.pid):
        fail("pipeline: the daemon died")
    fig.update({"requests": n, "answered": got, "seconds": round(secs, 2),
                "health_p50_ms": round(probe.p50(), 1), "health_p99_ms": round(probe.p99(), 1)})
    failures.extend(probe.failures)


def case_unauth(a, fig):
    size = 24 << 20
    base = settle_rss(a.pid, 0.2)
    samp = hc.Sampler(a.pid)
    samp.start()
    results = [None] * 8

    def one(i):
        s = hc.connect(a.port, timeout=20)
        expect = i % 2 == 0
        head = (f"POST /v1/functions/echo/invoke HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n"
                f"Content-Length: {size}\r\n{'Expect: 100-continue' + chr(13) + chr(10) if expect else ''}\r\n").encode()
        hc.send_all(s, head)
        sent = [0]
        th = None
        if not expect:
            th = threading.Thread(target=lambda: sent.__setitem__(0, hc.send_all(s, b" " * size)), daemon=True)
            th.start()
        try:
            r = hc.Reader(s).response()
        except (OSError, ValueError) as e:
            r = None
            results[i] = f"read error {e!r}"
        closed = hc.closed_by_peer(s, 10.0)
        if th:
            th.join(timeout=20)
        s.close()
        if r is not None:
            results[i] = (r.status, r.interim, closed, sent[0])

    ths = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(8)]
    for t in ths:
        t.start()
    for t in ths:
        t.join(timeout=60)
    samp.stop()
    for i, res in enumerate(results):
        if not isinstance(res, tuple):
            fail(f"unauth {i}: {res}")
            continue
        st, interim, closed, sent = res
        if st != 401 or interim or not closed:
            fail(f"unauth {i}: status {st}, interim {interim}, closed {closed} (want 401, none, closed)")
    grow = (samp.max_rss_kb - base) / 1024
    if grow > 32:
        fail(f"unauth: server RSS grew {grow:.1f} MiB (bound 32)")
    fig.update({"connections": 8, "announced_mib": size >> 20, "rss_base_mib": round(base / 1024, 1),
                "rss_growth_mib": round(grow, 1), "body_bytes_sent": [r[3] for r in results if isinstance(r, tuple)]})


def case_shrink(a, fig):
    auth = {"Authorization": f"Bearer {a.key}", "Content-Type": "application/json"}
    body = json.dumps({"pad": "y" * (8 << 20)}).encode()
    base = settle_rss(a.pid, 0.2)
    socks = []
    for i in range(6):
        s = hc.connect(a.port, timeout=60)
        rs, _ = hc.pipeline(a.port, [hc.req("POST", "/v1/functions/echo/invoke", body, auth)], sock=s)
        if rs[0] is None or rs[0].status != 200 or len(rs[0].body) != len(body):
            fail(f"shrink: echo {i}: {rs[0]}")
        socks.append(s)
    after = settle_rss(a.pid, 1.5)
    # the connections are still open and usable
    for s in socks:
        rs, _ = hc.pipeline(a.port, [hc.req("GET", "/healthz")], sock=s)
        if rs[0] is None or rs[0].status != 200:
            fail("shrink: a keep-alive connection did not serve its next request")
        s.close()
    grow = (after - base) / 1024
    if grow > 24:
        fail(f"shrink: server RSS {grow:.1f} MiB over its start with 6 idle connections (bound 24)")
    fig.update({"connections": 6, "body_mib": 8, "rss_growth_mib_after": round(grow, 1)})


def case_never_read(a, fig):
    n = a.n or 100000
    pad = "p" * 300
    data = b"".join(hc.req("GET", f"/nope/{pad}/{i}", rid=f"w{i}") for i in range(n))
    base = settle_rss(a.pid, 0.2)
    samp = hc.Sampler(a.pid)
    samp.start()
    probe = hc.Prober(a.port, interval=0.05, deadline_s=5.0)
    probe.start()
    t0 = time.monotonic()
    nr = hc.NeverReader(a.port, data, rcvbuf=4096, stall_s=2.0, max_s=30.0)
    time.sleep(2.0)   # the server sits on a full write queue meanwhile
    sent_before = nr.sent
    held_rss = hc.proc_rss_kb(a.pid)
    th = nr.finish_send(timeout=120)
    rs = nr.drain(n, timeout=120)
    th.join(timeout=30)
    secs = time.monotonic() - t0
    samp.stop()
    probe.stop()
    nr.close()
    grow = (samp.max_rss_kb - base) / 1024
    if grow > 32:
        fail(f"never_read: server RSS grew {grow:.1f} MiB (bound 32)")
    if len(rs) != n:
        fail(f"never_read: {len(rs)} of {n} answers once the client read")
    bad = sum(1 for i, r in enumerate(rs) if r.status != 404 or r.rid != f"w{i}")
    if bad:
        fail(f"never_read: {bad} answers out of order or wrong")
    if not hc.alive(a.pid):
        fail("never_read: the daemon died")
    failures.extend(probe.failures)
    fig.update({"requests": n, "request_mib": round(len(data) / 2**20, 1),
                "sent_before_stall_mib": round(sent_before / 2**20, 1),
                "stalled": nr.stalled, "rss_base_mib": round(base / 1024, 1),
                "rss_growth_mib": round(grow, 1), "rss_while_held_mib": round(held_rss / 1024, 1),
                "answered": len(rs), "seconds": round(secs, 2),
                "health_p50_ms": round(probe.p50(), 1), "health_p99_ms": round(probe.p99(), 1)})


def case_per_addr(a, fig):
    socks = hc.flood(a.port, 10)
    time.sleep(0.2)
    extra = hc.connect(a.port)
    rs, _ = hc.pipeline(a.port, [hc.req("GET", "/v1/functions")], sock=extra)
    extra.close()
    if rs[0] is None or rs[0].status != 503:
        fail(f"per_addr: 11th connection, non-probe request: {rs[0]} (want 503)")
    p = hc.Prober(a.port)
    st = p.probe()
    if st != 200:
        fail(f"per_addr: a probe over the address cap: {st} (want 200)")
    for s in socks:
        s.close()
    fig.update({"opened": len(socks)})


def case_flood(a, fig):
    base_fd = hc.proc_fds(a.pid)
    socks = hc.flood(a.port, 150, send=b"GET /healthz HTTP/1.1\r\nHost: h\r\n")
    socks += hc.flood(a.port, 50)
    time.sleep(0.3)
    held = hc.proc_fds(a.pid)
    p = hc.Prober(a.port, deadline_s=5.0)
    sts = []
    for i in range(20):
        sts.append(p.probe())
        socks += hc.flood(a.port, 10, send=b"GET /readyz HTTP/1.1\r\n")   # keep at it
    if any(st != 200 for st in sts):
        fail(f"flood: probes while flooded: {sts}")
    q = hc.Prober(a.port, path="/v1/functions", deadline_s=5.0)
    st = q.probe()
    if st != 503:
        fail(f"flood: a non-probe request while full: {st} (want 503)")
    for s_ in socks:
        s_.close()
    t0 = time.monotonic()
    while hc.proc_fds(a.pid) > base_fd and time.monotonic() - t0 < 20:
        time.sleep(0.05)
    end_fd = hc.proc_fds(a.pid)
    if end_fd > base_fd:
        fail(f"flood: {end_fd} descriptors 20 s after the flood (start {base_fd})")
    fig.update({"flood_connections": len(socks), "server_fds_start": base_fd, "server_fds_flooded": held,
                "server_fds_end": end_fd, "probes_ok": sum(1 for x in sts if x == 200),
                "probe_p50_ms": round(p.p50(), 2), "probe_max_ms": round(max(p.ms), 2)})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--key", default="")
    ap.add_argument("--n", type=int, default=0)
    a = ap.parse_args()
    fig = {"case": a.case}
    {"pipeline": case_pipeline, "unauth": case_unauth, "shrink": case_shrink,
     "never_read": case_never_read, "per_addr": case_per_addr, "flood": case_flood}[a.case](a, fig)
    if not hc.alive(a.pid):
        fail("the daemon is gone")
    fig["failures"] = len(failures)
    print(json.dumps(fig), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

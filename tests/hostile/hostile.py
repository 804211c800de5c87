#!/usr/bin/env python3
"""hostile.py — a hostile client against a running `thaw serve` on 127.0.0.1 (stdlib only).

Usage: hostile.py --port P [--function digits] [--src REPO] [--long]
(THAW_HOSTILE_LONG=1 also selects the long mode.)

With function F (kind mlp, tests/data/mlp_digits) deployed, it sends: garbage bytes, truncated
requests, slowloris (headers one byte every ~0.5 s), many idle connections (2000; 10000 long),
huge headers and bodies, invalid UTF-8 in JSON, deeply nested JSON, NaN/Inf in binary tensors,
wrong tensor shapes and datatypes. Meanwhile a checker thread requires GET /healthz to answer
200 within 1 s, every 0.1 s. F's invoke must give the reference output (expected.json) before,
and the very same body after. Malformed requests must get a 4xx or a close, never a 5xx or a
hang. Prints one JSON line of figures; exit 0 when all held, 1 otherwise. Loopback only; every
loop is bounded."""
import argparse, gzip, json, math, os, random, socket, struct, sys, threading, time

HOST = "127.0.0.1"
failures = []
sent = [0]
lock = threading.Lock()


def fail(msg):
    with lock:
        failures.append(msg)
    print("hostile: FAIL " + msg, file=sys.stderr, flush=True)


def count(n=1):
    with lock:
        sent[0] += n


def conn(port, timeout=5.0):
    s = socket.create_connection((HOST, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_resp(s, limit=1 << 22):
    """reads one Content-Length framed response; returns (status, body bytes) or (None, b'')
    when the server closed without one."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        try:
            d = s.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            d = b""
        if not d:
            return (None, b"")
        buf += d
        if len(buf) > limit:
            return (None, b"")
    head, body = buf.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    cl = 0
    for l in lines[1:]:
        k, _, v = l.partition(b":")
        if k.strip().lower() == b"content-length":
            cl = int(v.strip())
    while len(body) < cl:
        d = s.recv(65536)
        if not d:
            break
        body += d
    return (status, body[:cl])


def request(port, raw, timeout=5.0):
    """sends raw bytes on a fresh connection, returns (status|None, body)."""
    s = conn(port, timeout)
    try:
        try:
            s.sendall(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass
        count()
        return read_resp(s)
    except socket.timeout:
        return ("timeout", b"")
    finally:
        s.close()


def http(method, path, body=b"", headers=""):
    return (f"{method} {path} HTTP/1.1\r\nHost: h\r\n{headers}Content-Length: {len(body)}\r\n"
            f"\r\n").encode() + body


def expect_4xx(port, what, raw, allow_close=True):
    st, body = request(port, raw)
    if st == "timeout":
        fail(f"{what}: no answer within 5 s")
    elif st is None:
        if not allow_close:
            fail(f"{what}: closed without a response")
    elif not (400 <= st < 500):
        fail(f"{what}: status {st} (want 4xx): {body[:200]!r}")
    return st


class Health(threading.Thread):
    def __init__(self, port):
        super().__init__(daemon=True)
        self.port, self.stop, self.n, self.max_ms = port, threading.Event(), 0, 0.0

    def run(self):
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                st, _ = request(self.port, b"GET /healthz HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
                                timeout=1.0)
            except OSError as e:
                st = repr(e)
            ms = (time.monotonic() - t0) * 1000
            self.n += 1
            self.max_ms = max(self.max_ms, ms)
            if st != 200 or ms > 1000:
                fail(f"/healthz: {st} after {ms:.0f} ms")
            self.stop.wait(0.1)


def digits_rows(src, n):
    rows = []
    with gzip.open(os.path.join(src, "tests/data/digits.csv.gz"), "rt") as f:
        for line in f:
            v = [int(x) for x in line.strip().split(",") if x != ""]
            rows.append([x / 16.0 for x in v[:64]])
            if len(rows) == n:
                break
    return rows


def invoke(port, fn, rows):
    body = json.dumps({"inputs": rows}).encode()
    st, out = request(port, http("POST", f"/v1/functions/{fn}/invoke", body,
                                 "Content-Type: application/json\r\n"), timeout=30)
    return st, out


def check_reference(out, exp, n):
    o = json.loads(out)
    for r in range(n):
        got, ref = o["outputs"][r], exp["first_logits"][r]
        if max(abs(a - b) for a, b in zip(got, ref)) > 1e-3 or o["labels"][r] != exp["labels"][r]:
            fail(f"invoke row {r}: output differs from the reference")


# ---- attacks -------------------------------------------------------------------------------

def garbage(port, rng, n):
    for i in range(n):
        raw = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 4096)))
        expect_4xx(port, f"garbage #{i}", raw)
    # garbage after a valid request line, and binary in the method
    expect_4xx(port, "garbage method", b"\x00\xffGET / HTTP/1.1\r\n\r\n")
    expect_4xx(port, "garbage header", b"GET /healthz HTTP/1.1\r\nHo\x00st: x\r\n\r\n")
    expect_4xx(port, "bad content-length", b"POST /v1/functions/x/invoke HTTP/1.1\r\nContent-Length: -5\r\n\r\n")
    expect_4xx(port, "two content-lengths",
               b"POST /v1/functions/x/invoke HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab")


def truncated(port, fn, n):
    full = http("POST", f"/v1/functions/{fn}/invoke", b'{"inputs": [[1,2,3]]}',
                "Content-Type: application/json\r\n")
    for i in range(n):
        cut = 1 + (i * 7919) % (len(full) - 1)
        s = conn(port)
        s.sendall(full[:cut])
        count()
        s.close()   # the peer vanishes mid-request


def truncated_wait(port, fn):
    """a request whose body never completes: the server's read timeout must answer or close."""
    s = conn(port, timeout=10)
    s.sendall(http("POST", f"/v1/functions/{fn}/invoke", b"x" * 100)[:-60])
    count()
    try:
        st, _ = read_resp(s)
        if st not in (None, 408, 400):
            fail(f"truncated body: status {st} (want 408 or close)")
    except socket.timeout:
        fail("truncated body: still open after 10 s")
    s.close()


def slowloris(port, nconn, seconds):
    """nconn connections each send a header a byte every ~0.5 s for up to `seconds`."""
    req = b"GET /healthz HTTP/1.1\r\nHost: h\r\nX-Slow: " + b"a" * 4096
    socks = [conn(port) for _ in range(nconn)]
    t_end = time.monotonic() + seconds
    pos, cut = 0, 0
    while time.monotonic() < t_end and socks:
        alive = []
        for s in socks:
            try:
                s.send(req[pos:pos + 1])
                alive.append(s)
            except OSError:
                cut += 1
                s.close()
        socks = alive
        pos += 1
        count()
        time.sleep(0.5)
    for s in socks:
        s.close()
    return cut


def idle(port, n, hold_s, health):
    socks = []
    for _ in range(n):
        try:
            socks.append(conn(port))
        except OSError as e:
            fail(f"idle: connection {len(socks)} refused: {e}")
            break
    # the server must still answer while they sit there
    t0 = time.monotonic()
    while time.monotonic() - t0 < hold_s:
        time.sleep(0.2)
    # how many did the server keep open?
    still = 0
    for s in socks:
        s.setblocking(False)
        try:
            d = s.recv(1)
            still += 0 if d == b"" else 1
        except BlockingIOError:
            still += 1
        except OSError:
            pass
    for s in socks:
        s.close()
    return len(socks), still


def huge(port, fn):
    big = "X-Big: " + "h" * (1 << 20) + "\r\n"
    expect_4xx(port, "huge header", http("GET", "/healthz", b"", big))
    many = "".join(f"X-H{i}: v\r\n" for i in range(5000))
    expect_4xx(port, "many headers", http("GET", "/healthz", b"", many))
    expect_4xx(port, "huge request line", b"GET /" + b"a" * (1 << 20) + b" HTTP/1.1\r\n\r\n")
    # a declared body over --max-body: 413 without reading it
    expect_4xx(port, "huge declared body",
               f"POST /v1/functions/{fn}/invoke HTTP/1.1\r\nHost: h\r\nContent-Length: {1 << 40}\r\n\r\n".encode())
    # a real body over the limit (sent as far as the server reads)
    s = conn(port, timeout=10)
    body = b"[" * (4 << 20)
    count()
    try:
        s.sendall(http("POST", f"/v1/functions/{fn}/invoke", body))
    except OSError:
        pass
    try:
        st, _ = read_resp(s)
        if st not in (None, 413):
            fail(f"huge body: status {st} (want 413)")
    except socket.timeout:
        fail("huge body: no answer")
    s.close()
    # chunked, never ending
    s = conn(port, timeout=10)
    s.sendall(f"POST /v1/functions/{fn}/invoke HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
    count()
    try:
        for _ in range(8):
            s.sendall(b"80000\r\n" + b"[" * 0x80000 + b"\r\n")
    except OSError:
        pass
    try:
        st, _ = read_resp(s)
        if st not in (None, 413, 400):
            fail(f"chunked huge body: status {st}")
    except socket.timeout:
        fail("chunked huge body: no answer")
    s.close()


def bad_json(port, fn):
    ct = "Content-Type: application/json\r\n"
    for what, body in [
        ("invalid utf-8", b'{"inputs": [[1,2]], "x": "\xff\xfe\xc3\x28"}'),
        ("invalid utf-8 key", b'{"\xed\xa0\x80": 1}'),
        ("nested arrays", b"[" * 200000 + b"]" * 200000),
        ("nested objects", b'{"a":' * 100000 + b"1" + b"}" * 100000),
        ("nested inputs", b'{"inputs": ' + b"[" * 5000 + b"1" + b"]" * 5000 + b"}"),
        ("truncated json", b'{"inputs": [[1,2'),
        ("not json", b"\x00\x01\x02"),
        ("NaN literal", b'{"inputs": [[NaN, 1]]}'),
        ("huge number", b'{"inputs": [[1e999999]]}'),
    ]:
        expect_4xx(port, f"invoke {what}", http("POST", f"/v1/functions/{fn}/invoke", body, ct), False)
        expect_4xx(port, f"v2 {what}", http("POST", f"/v2/models/{fn}/infer", body, ct), False)


def v2_bin(fn, dtype, shape, payload, claimed=None):
    hdr = json.dumps({"inputs": [{"name": "INPUT0", "shape": shape, "datatype": dtype,
                                  "parameters": {"binary_data_size": len(payload) if claimed is None else claimed}}]}).encode()
    return http("POST", f"/v2/models/{fn}/infer", hdr + payload,
                f"Content-Type: application/octet-stream\r\nInference-Header-Content-Length: {len(hdr)}\r\n")


def tensors(port, fn, rows):
    row = rows[0]
    good = struct.pack("<64f", *row)
    st, body = request(port, v2_bin(fn, "FP32", [1, 64], good))
    if st != 200:
        fail(f"v2 binary valid request: {st} {body[:200]!r}")
    for name, val in [("NaN", float("nan")), ("+Inf", float("inf")), ("-Inf", float("-inf"))]:
        for dt, fmt in [("FP32", "<64f"), ("FP64", "<64d")]:
            p = struct.pack(fmt, *(row[:10] + [val] + row[11:]))
            expect_4xx(port, f"v2 {dt} {name}", v2_bin(fn, dt, [1, 64], p), False)
    expect_4xx(port, "v2 FP16 NaN", v2_bin(fn, "FP16", [1, 64], b"\x00\x7e" * 64), False)
    expect_4xx(port, "v2 BF16 Inf", v2_bin(fn, "BF16", [1, 64], b"\x80\x7f" * 64), False)
    for what, dt, shape, payload, claimed in [
        ("shape [1,63]", "FP32", [1, 63], good[:252], None),
        ("shape [64]", "FP32", [64], good, None),
        ("shape [1,1,64]", "FP32", [1, 1, 64], good, None),
        ("shape [2,64] short data", "FP32", [2, 64], good, 512),
        ("shape [0,64]", "FP32", [0, 64], b"", None),
        ("shape huge", "FP32", [1 << 26, 64], good, None),
        ("shape overflow", "FP32", [1 << 62, 1 << 62], good, None),
        ("negative dim", "FP32", [-1, 64], good, None),
        ("size mismatch", "FP32", [1, 64], good, 100),
        ("dtype BYTES", "BYTES", [1, 64], good, None),
        ("dtype nonsense", "FP8E4", [1, 64], good, None),
        ("dtype FP64 with FP32 bytes", "FP64", [1, 64], good, None),
        ("dtype INT64 with FP32 bytes", "INT64", [1, 64], good, None),
    ]:
        st = expect_4xx(port, f"v2 {what}", v2_bin(fn, dt, shape, payload, claimed), False)
        if st == 200 and what == "shape [0,64]":
            pass
    # Inference-Header-Content-Length larger than the body, and not a number
    expect_4xx(port, "v2 header length > body",
               http("POST", f"/v2/models/{fn}/infer", b"{}", "Inference-Header-Content-Length: 99999\r\n"), False)
    expect_4xx(port, "v2 header length junk",
               http("POST", f"/v2/models/{fn}/infer", b"{}", "Inference-Header-Content-Length: 1x\r\n"), False)
    # JSON-data wrong shapes and datatypes
    for what, t in [
        ("json shape mismatch", {"name": "INPUT0", "shape": [1, 64], "datatype": "FP32", "data": row[:60]}),
        ("json strings", {"name": "INPUT0", "shape": [1, 2], "datatype": "FP32", "data": ["a", "b"]}),
        ("json INT8 fraction", {"name": "INPUT0", "shape": [1, 2], "datatype": "INT8", "data": [0.5, 1]}),
        ("json wrong name", {"name": "x", "shape": [1, 64], "datatype": "FP32", "data": row}),
        ("json shape not array", {"name": "INPUT0", "shape": 64, "datatype": "FP32", "data": row}),
    ]:
        body = json.dumps({"inputs": [t]}).encode()
        expect_4xx(port, f"v2 {what}", http("POST", f"/v2/models/{fn}/infer", body), False)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--function", default="digits")
    ap.add_argument("--src", default=os.environ.get("THAW_SRC", "."))
    ap.add_argument("--long", action="store_true")
    a = ap.parse_args()
    long_mode = a.long or os.environ.get("THAW_HOSTILE_LONG") == "1"
    port, fn = a.port, a.function
    rng = random.Random(7)
    t_start = time.monotonic()
    exp = json.load(open(os.path.join(a.src, "tests/data/mlp_digits/expected.json")))
    rows = digits_rows(a.src, 4)

    st, before = invoke(port, fn, rows)
    if st != 200:
        print(f"hostile: baseline invoke failed: {st} {before[:300]!r}", file=sys.stderr)
        return 1
    check_reference(before, exp, 4)

    health = Health(port)
    health.start()
    figures = {"mode": "long" if long_mode else "short"}

    # slowloris runs alongside the other attacks
    slow_s = 60 if long_mode else 4
    slow_n = 200 if long_mode else 20
    slow_res = {}
    slow = threading.Thread(target=lambda: slow_res.setdefault("cut", slowloris(port, slow_n, slow_s)),
                            daemon=True)
    slow.start()

    garbage(port, rng, 500 if long_mode else 60)
    truncated(port, fn, 2000 if long_mode else 200)
    truncated_wait(port, fn)
    huge(port, fn)
    bad_json(port, fn)
    tensors(port, fn, rows)
    n_idle = 10000 if long_mode else 2000
    opened, kept = idle(port, n_idle, 30 if long_mode else 3, health)
    slow.join(timeout=slow_s + 30)
    if slow.is_alive():
        fail("slowloris thread did not finish")

    # the deployed function is unaffected: same answer as before
    st, after = invoke(port, fn, rows)
    if st != 200 or after != before:
        fail(f"invoke after the attacks: {st}, same body: {after == before}")
    else:
        check_reference(after, exp, 4)
    health.stop.set()
    health.join(timeout=3)
    figures.update({
        "idle_connections_opened": opened, "idle_connections_still_open_after_hold": kept,
        "slowloris_connections": slow_n, "slowloris_seconds": slow_s,
        "slowloris_cut_by_server": slow_res.get("cut"),
        "requests_sent": sent[0], "health_checks": health.n,
        "health_max_ms": round(health.max_ms, 1), "seconds": round(time.monotonic() - t_start, 1),
        "failures": len(failures),
    })
    print(json.dumps(figures), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

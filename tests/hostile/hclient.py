#!/usr/bin/env python3
"""hclient.py — a small library of attack clients for tests against a running `thaw serve`
(stdlib only; loopback by default). Import it from a test script:

    sys.path.insert(0, os.path.join(src, "tests/hostile")); import hclient as hc

What it offers:
  connect(port)                       a TCP connection (TCP_NODELAY, timeout)
  req(method, path, body, headers)    the bytes of one HTTP/1.1 request (Content-Length framed)
  Reader(sock).response()             reads one response in order: status, headers, body
                                      (Content-Length, chunked, or up to the close; 1xx kept
                                      apart in .interim), for HEAD requests without a body
  pipeline(port, reqs)                sends a pipeline of requests (in a thread, while reading)
                                      and returns the responses in order (None past a close)
  NeverReader(port, reqs)             pipelines without ever reading (small receive buffer);
                                      .sent says how many bytes got out, .drain() then reads
  slow_read(sock, n, bps)             reads n responses at about bps bytes a second
  half_close(port, raw)               sends raw, shuts down writing, reads what comes back
  flood(port, n)                      opens n idle connections (returns those that opened)
  gzip_bomb(decoded_size)             a gzip body that inflates to decoded_size bytes
  proc_rss_kb(pid), proc_fds(pid)     the server's VmRSS (KiB) and open descriptors
  Sampler(pid)                        a thread sampling RSS and fds (max, last)
  Prober(port, path)                  a thread timing GET /healthz every interval: p50, p99,
                                      max, failures (non-200 or over the deadline)
Every wait is bounded by a socket timeout; nothing here retries forever."""
import gzip, io, os, socket, threading, time, zlib

HOST = "127.0.0.1"


def connect(port, host=HOST, timeout=10.0, rcvbuf=None, sndbuf=None):
    """a connected TCP socket with TCP_NODELAY and the given timeout; rcvbuf/sndbuf set the
    kernel buffer sizes before connecting (a small rcvbuf makes a non-reader block sooner)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    if sndbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    s.settimeout(timeout)
    s.connect((host, port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def req(method, path, body=b"", headers=None, rid=None, version="HTTP/1.1", length=True):
    """the bytes of one request: Host, the given headers (dict or list of pairs, or raw str
    lines ending in CRLF), X-Request-Id when rid is set, Content-Length when length is true
    and the method may carry a body or body is not empty."""
    if isinstance(body, str):
        body = body.encode()
    lines = [f"{method} {path} {version}", "Host: h"]
    extra = ""
    if isinstance(headers, str):
        extra = headers
    elif headers:
        items = headers.items() if isinstance(headers, dict) else headers
        lines += [f"{k}: {v}" for k, v in items]
    if rid is not None:
        lines.append(f"X-Request-Id: {rid}")
    if length and (body or method in ("POST", "PUT", "PATCH")):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode() + body


class Response:
    """one parsed response: status (int), reason, headers (list of (name, value) as sent),
    body (bytes), interim (list of 1xx statuses that came before it)."""

    def __init__(self, status, reason, headers, body, interim):
        self.status, self.reason, self.headers, self.body, self.interim = \
            status, reason, headers, body, interim

    def header(self, name, default=None):
        n = name.lower()
        for k, v in self.headers:
            if k.lower() == n:
                return v
        return default

    @property
    def rid(self):
        return self.header("X-Request-Id")

    @property
    def closes(self):
        return (self.header("Connection", "") or "").lower() == "close"

    def __repr__(self):
        return f"<Response {self.status} rid={self.rid} {len(self.body)} B>"


class Reader:
    """reads responses from sock in order, keeping surplus bytes for the next one."""

    def __init__(self, sock, limit=64 << 20):
        self.s, self.buf, self.limit, self.eof = sock, b"", limit, False
        self.nread = 0

    def _more(self):
        if self.eof:
            return False
        try:
            d = self.s.recv(1 << 18)
        except (ConnectionResetError, BrokenPipeError):
            d = b""
        if not d:
            self.eof = True
            return False
        self.nread += len(d)
        self.buf += d
        if len(self.buf) > self.limit:
            raise ValueError("response over the reader's limit")
        return True

    def _line_block(self):
        while True:
            i = self.buf.find(b"\r\n\r\n")
            if i >= 0:
                head, self.buf = self.buf[:i], self.buf[i + 4:]
                return head
            if not self._more():
                return None

    def _exact(self, n):
        while len(self.buf) < n:
            if not self._more():
                return None
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _line(self):
        while b"\r\n" not in self.buf:
            if not self._more():
                return None
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def response(self, head_request=False):
        """the next response, or None when the connection ended before a whole one came
        (socket.timeout propagates)."""
        interim = []
        while True:
            head = self._line_block()
            if head is None:
                return None
            lines = head.split(b"\r\n")
            parts = lines[0].decode("latin-1").split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/"):
                raise ValueError(f"bad status line {lines[0][:80]!r}")
            status = int(parts[1])
            reason = parts[2] if len(parts) > 2 else ""
            headers = []
            for l in lines[1:]:
                k, _, v = l.decode("latin-1").partition(":")
                headers.append((k.strip(), v.strip()))
            if 100 <= status < 200:
                interim.append(status)
                continue
            break
        r = Response(status, reason, headers, b"", interim)
        if head_request or status in (204, 304):
            return r
        te = (r.header("Transfer-Encoding") or "").lower()
        cl = r.header("Content-Length")
        if "chunked" in te:
            body = []
            while True:
                line = self._line()
                if line is None:
                    return None
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while True:   # trailers up to the empty line
                        t = self._line()
                        if t is None or t == b"":
                            break
                    break
                chunk = self._exact(size + 2)
                if chunk is None:
                    return None
                body.append(chunk[:size])
            r.body = b"".join(body)
        elif cl is not None:
            b = self._exact(int(cl))
            if b is None:
                return None
            r.body = b
        else:   # delimited by the close
            while self._more():
                pass
            r.body, self.buf = self.buf, b""
        return r


def send_all(sock, data, chunk=1 << 16):
    """sends data; returns the bytes that got out before the peer closed."""
    sent = 0
    mv = memoryview(data)
    try:
        while sent < len(data):
            n = sock.send(mv[sent:sent + chunk])
            if n <= 0:
                break
            sent += n
    except (BrokenPipeError, ConnectionResetError, socket.timeout):
        pass
    return sent


def pipeline(port, reqs, timeout=30.0, heads=None, sock=None, half_close=False):
    """sends every request of reqs (a list of bytes) on one connection from a sender thread
    while this thread reads, and returns (responses, seconds): one Response per request in
    order, None for each request after the connection ended. heads: indices of HEAD requests
    (read without a body). half_close: shut down writing after the last byte."""
    s = sock or connect(port, timeout=timeout)
    data = b"".join(reqs)
    t0 = time.monotonic()
    th = threading.Thread(target=lambda: (send_all(s, data, 1 << 20),
                                          half_close and _shut(s)), daemon=True)
    th.start()
    rd = Reader(s)
    out = []
    heads = heads or set()
    try:
        for i in range(len(reqs)):
            r = rd.response(head_request=i in heads)
            if r is None:
                break
            out.append(r)
    except socket.timeout:
        pass
    secs = time.monotonic() - t0
    th.join(timeout=5)
    if sock is None:
        s.close()
    out += [None] * (len(reqs) - len(out))
    return out, secs


def _shut(s):
    try:
        s.shutdown(socket.SHUT_WR)
    except OSError:
        pass


class NeverReader:
    """pipelines data (bytes) on a connection with a small receive buffer and never reads:
    sends until the kernel buffers are full and the server stops reading (send blocks past
    stall_s), or until all is sent. .sent: bytes that got out. .drain(n) later reads n
    responses in order (returns them)."""

    def __init__(self, port, data, rcvbuf=4096, stall_s=2.0, max_s=30.0):
        self.s = connect(port, timeout=stall_s, rcvbuf=rcvbuf)
        self.data, self.sent, self.stalled = data, 0, False
        t_end = time.monotonic() + max_s
        mv = memoryview(data)
        while self.sent < len(data) and time.monotonic() < t_end:
            try:
                n = self.s.send(mv[self.sent:self.sent + 65536])
            except socket.timeout:
                self.stalled = True   # the server stopped reading: backpressure
                break
            except (BrokenPipeError, ConnectionResetError):
                break
            self.sent += n

    def finish_send(self, timeout=60.0):
        """sends the rest from a thread (reading must go on meanwhile); returns the thread."""
        def go():
            self.s.settimeout(timeout)
            self.sent += send_all(self.s, self.data[self.sent:])
        th = threading.Thread(target=go, daemon=True)
        th.start()
        return th

    def drain(self, n, timeout=60.0):
        self.s.settimeout(timeout)
        rd = Reader(self.s)
        out = []
        try:
            for _ in range(n):
                r = rd.response()
                if r is None:
                    break
                out.append(r)
        except socket.timeout:
            pass
        return out

    def close(self):
        self.s.close()


def slow_read(sock, n, bps=4096, timeout=60.0):
    """reads n responses from sock at about bps bytes a second (small recv calls with sleeps);
    returns them in order (fewer when the connection ended)."""
    class Slow:
        def __init__(self, s):
            self.s = s

        def recv(self, _n):
            time.sleep(256 / bps)
            return self.s.recv(256)
    sock.settimeout(timeout)
    rd = Reader(Slow(sock))
    out = []
    for _ in range(n):
        r = rd.response()
        if r is None:
            break
        out.append(r)
    return out


def half_close(port, raw, n=1, timeout=10.0):
    """sends raw, shuts down the write side, reads up to n responses; returns them (a list,
    possibly shorter)."""
    s = connect(port, timeout=timeout)
    try:
        send_all(s, raw)
        _shut(s)
        rd = Reader(s)
        out = []
        for _ in range(n):
            r = rd.response()
            if r is None:
                break
            out.append(r)
        return out
    finally:
        s.close()


def flood(port, n, timeout=5.0, send=b""):
    """opens up to n connections (sending send on each, if given); returns the sockets that
    opened. Stops at the first refusal or local descriptor shortage."""
    socks = []
    for _ in range(n):
        try:
            s = connect(port, timeout=timeout)
        except OSError:
            break
        if send:
            send_all(s, send)
        socks.append(s)
    return socks


def closed_by_peer(s, wait_s=0.0):
    """1 when the peer has closed s (EOF or reset) within wait_s seconds, else 0; bytes the
    server sent first (e.g. a 503) are read and dropped."""
    s.settimeout(max(wait_s, 0.001))
    t_end = time.monotonic() + wait_s
    while True:
        try:
            d = s.recv(65536)
            if not d:
                return 1
        except socket.timeout:
            if time.monotonic() >= t_end:
                return 0
        except OSError:
            return 1


def gzip_bomb(decoded_size, byte=b"\0"):
    """a gzip member that inflates to decoded_size bytes of byte (about 1/1000 the size)."""
    bio = io.BytesIO()
    with gzip.GzipFile(fileobj=bio, mode="wb", compresslevel=9) as g:
        block = byte * (1 << 20)
        left = decoded_size
        while left > 0:
            g.write(block[:min(left, len(block))])
            left -= min(left, len(block))
    return bio.getvalue()


def gzip_json_array(n, item=b"0"):
    """a gzip body whose JSON is an array of n items: many elements from few bytes."""
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = [z.compress(b"[")]
    piece = (item + b",") * 4096
    left = n - 1
    while left > 0:
        k = min(left, 4096)
        out.append(z.compress(piece[:k * (len(item) + 1)]))
        left -= k
    out.append(z.compress(item + b"]"))
    out.append(z.flush())
    return b"".join(out)


def proc_rss_kb(pid):
    """VmRSS of pid in KiB (from /proc/PID/status), or -1 when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def proc_fds(pid):
    """open descriptors of pid (entries of /proc/PID/fd), or -1 when it is gone."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def alive(pid):
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:   # a zombie is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


class Sampler(threading.Thread):
    """samples RSS (KiB) and fds of pid every interval seconds: .max_rss_kb, .last_rss_kb,
    .max_fds, .samples. stop() ends it."""

    def __init__(self, pid, interval=0.05):
        super().__init__(daemon=True)
        self.pid, self.interval, self.ev = pid, interval, threading.Event()
        self.max_rss_kb = self.last_rss_kb = proc_rss_kb(pid)
        self.max_fds = proc_fds(pid)
        self.samples = 0

    def run(self):
        while not self.ev.is_set():
            r, f = proc_rss_kb(self.pid), proc_fds(self.pid)
            if r > 0:
                self.last_rss_kb = r
                self.max_rss_kb = max(self.max_rss_kb, r)
            self.max_fds = max(self.max_fds, f)
            self.samples += 1
            self.ev.wait(self.interval)

    def stop(self):
        self.ev.set()
        self.join(timeout=5)


def percentile(xs, p):
    if not xs:
        return float("nan")
    s = sorted(xs)
    k = min(len(s) - 1, max(0, int(round(p / 100.0 * (len(s) - 1)))))
    return s[k]


class Prober(threading.Thread):
    """every interval seconds opens a connection, sends GET path (Connection: close) and times
    the answer: .ms (latencies), .failures (list of strings: non-200 or over deadline_s), p50(),
    p99(). stop() ends it."""

    def __init__(self, port, path="/healthz", interval=0.05, deadline_s=2.0, headers=None):
        super().__init__(daemon=True)
        self.port, self.path, self.interval, self.deadline = port, path, interval, deadline_s
        self.headers = headers or {}
        self.ev, self.ms, self.failures = threading.Event(), [], []

    def probe(self):
        t0 = time.monotonic()
        try:
            s = connect(self.port, timeout=self.deadline)
            try:
                h = dict(self.headers)
                h["Connection"] = "close"
                send_all(s, req("GET", self.path, headers=h))
                r = Reader(s).response()
                st = r.status if r else None
            finally:
                s.close()
        except OSError as e:
            st = repr(e)
        ms = (time.monotonic() - t0) * 1000
        self.ms.append(ms)
        if st != 200 or ms > self.deadline * 1000:
            self.failures.append(f"{self.path}: {st} after {ms:.0f} ms")
        return st

    def run(self):
        while not self.ev.is_set():
            self.probe()
            self.ev.wait(self.interval)

    def p50(self):
        return percentile(self.ms, 50)

    def p99(self):
        return percentile(self.ms, 99)

    def stop(self):
        self.ev.set()
        self.join(timeout=self.deadline + 5)

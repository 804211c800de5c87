#!/usr/bin/env python3
"""docs_examples.py — run the shell examples of Markdown docs literally and check their output.

usage: docs_examples.py --thaw BIN --src REPO --work DIR [--llama-dir DIR] FILE.md ...

Every ```sh / ```bash block of each file is an example. Each block runs against a fresh demo
server: scripts/run-demo.sh (what `make run` starts: `thaw serve --dev` on a new data directory
with the demo function `digits` deployed and the digits data set in DATA/data), on a free port.
Its commands run one by one with bash in DIR, which holds what a reader has at hand: deploy/ and
tests/ of the repository, build/thaw (BIN), digits.thaw (the demo snapshot, packed as `make
run` packs it) and digits.csv.gz. `localhost:8080` and `HOST:8080` name the test server;
THAW_URL points the CLI at it; $KEY is set (the demo checks no keys).

Each command must exit 0; a curl command's HTTP status (curl is wrapped to print it) must be
2xx. Full-line comments after a command show its answer: a leading status (`# 202 {...}`) must
match; every "key" the comment shows must appear in the answer; every "key": value pair whose
value is a plain literal (a number, a string, true/false/null, an array of those; no `...`)
must equal the answer's value for that key somewhere in the answer.

Markers (HTML comments directly before a block) change that:
    <!-- example: skip (REASON) -->   not run; counted and reported as skipped with REASON
    <!-- example: llama NAME -->      first deploy a llama function NAME (random weights and
                                      the test tokenizer: --llama-dir) on the block's server
    <!-- example: keys -->            the comments show the answer's shape only (values of a
                                      random-weight model, time stamps): check keys and status
Exit status: 0 when every example that ran passed, 1 otherwise, 2 on bad usage. The last
line of output is "docs examples: N passed, N failed, N skipped".
"""
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

MARKER = re.compile(r"<!--\s*example:\s*(.*?)\s*-->")
FENCE = re.compile(r"^```(\w*)\s*$")


def blocks(path):
    """yields (line, markers, text) for each sh/bash block of the Markdown file path"""
    lines = open(path, encoding="utf-8").read().split("\n")
    markers = []
    i = 0
    while i < len(lines):
        line = lines[i]
        m = FENCE.match(line)
        if m:
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            if m.group(1) in ("sh", "bash"):
                yield i + 1, markers, "\n".join(lines[i + 1:j])
            markers = []
            i = j + 1
            continue
        for mm in MARKER.finditer(line):
            markers.append(mm.group(1))
        if line.strip() and not MARKER.search(line):
            markers = []   # markers apply to the block right after them only
        i += 1


def commands(text):
    """splits a block into (command, expected comment lines): a command runs over several
    lines while a quote is open or a line ends in a backslash"""
    out = []
    cur = []
    for line in text.split("\n"):
        if not cur and line.lstrip().startswith("#"):
            if out:
                out[-1][1].append(line.lstrip()[1:].strip())
            continue
        if not cur and not line.strip():
            continue
        cur.append(line)
        joined = "\n".join(cur)
        if joined.endswith("\\"):
            continue
        try:
            shlex.split(joined, comments=True)
        except ValueError:   # an open quote: the command goes on
            continue
        out.append((joined, []))
        cur = []
    if cur:
        out.append(("\n".join(cur), []))
    return out


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    """the demo server (scripts/run-demo.sh) on a fresh data directory"""

    def __init__(self, thaw, src, tmp):
        self.port = free_port()
        self.data = tempfile.mkdtemp(prefix="data-", dir=tmp)
        self.log = open(os.path.join(self.data, "..", os.path.basename(self.data) + ".log"), "w+")
        env = dict(os.environ, THAW_DATA=self.data, PORT=str(self.port), HOST="127.0.0.1")
        env.pop("THAW_URL", None)
        self.proc = subprocess.Popen(["scripts/run-demo.sh", thaw], cwd=src, env=env,
                                     stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        end = time.time() + 60
        while time.time() < end:
            self.log.seek(0)
            if "thaw: serving on" in self.log.read():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        self.log.seek(0)
        raise RuntimeError("the demo server did not start:\n" + self.log.read()[-2000:])

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait()
        self.log.close()


STATUS = "\n__thaw_example_status__ "


def prelude(thaw, port):
    return ("set -o pipefail\n"
            f"export THAW_URL=http://127.0.0.1:{port}\n"
            "export KEY=docs-example-key\n"
            "thaw() { \"$THAW_BIN\" \"$@\"; }\n"
            f"curl() {{ command curl -sS -w '{STATUS.replace(chr(10), chr(92) + 'n')}%{{http_code}}\\n' \"$@\"; }}\n")


def substitute(cmd, port):
    return cmd.replace("localhost:8080", f"localhost:{port}").replace("HOST:8080", f"127.0.0.1:{port}")


LITERAL = (r'"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|true|false|null'
           r'|\[[^\[\]{}]*\]')
PAIR = re.compile(r'"([A-Za-z_][A-Za-z0-9_]*)"\s*:\s*(' + LITERAL + r')?')


def answer_values(text):
    """every (key, value) of every JSON document in text (the whole text, or one per line,
    SSE "data:" lines included)"""
    docs = []
    try:
        docs.append(json.loads(text))
    except ValueError:
        for line in text.split("\n"):
            line = line.strip()
            if line.startswith("data:"):
                line = line[5:].strip()
            try:
                docs.append(json.loads(line))
            except ValueError:
                pass
    pairs = {}

    def walk(v):
        if isinstance(v, dict):
            for k, x in v.items():
                pairs.setdefault(k, []).append(x)
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
    for d in docs:
        walk(d)
    return pairs


def check(cmd, expect, out, keys_only):
    """problems with the answer out of cmd against the comment lines expect"""
    problems = []
    status = None
    bodies = out
    if STATUS.strip() in out:
        parts = out.split(STATUS)
        bodies = "\n".join(p.split("\n", 1)[1] if k else p for k, p in enumerate(parts))
        codes = [int(p.split("\n", 1)[0]) for p in parts[1:]]
        status = codes[-1]
        bad = [c for c in codes if not 200 <= c < 300]
        if bad:
            return [f"HTTP status {bad[0]}"]
    if not expect:
        return problems
    text = " ".join(expect)
    m = re.match(r"(\d{3})\b", text)
    if m and status is not None and int(m.group(1)) != status:
        problems.append(f"HTTP status {status}, the doc shows {m.group(1)}")
    have = answer_values(bodies)
    for pm in PAIR.finditer(text):
        key, lit = pm.group(1), pm.group(2)
        if key not in have:
            problems.append(f'no "{key}" in the answer')
            continue
        if keys_only or lit is None or "..." in lit:
            continue
        try:
            want = json.loads(lit)
        except ValueError:
            continue
        if want not in have[key]:
            problems.append(f'"{key}": {lit} in the doc, {json.dumps(have[key][:3])} in the answer')
    return problems


def main(argv):
    args = {"--thaw": None, "--src": None, "--work": None, "--llama-dir": None}
    files = []
    i = 1
    while i < len(argv):
        if argv[i] in args and i + 1 < len(argv):
            args[argv[i]] = argv[i + 1]
            i += 2
        else:
            files.append(argv[i])
            i += 1
    if not all(args[k] for k in ("--thaw", "--src", "--work")) or not files:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    thaw, src, work = (os.path.abspath(args[k]) for k in ("--thaw", "--src", "--work"))
    llama = os.path.abspath(args["--llama-dir"]) if args["--llama-dir"] else None
    os.makedirs(os.path.join(work, "build"), exist_ok=True)
    for name in ("deploy", "tests"):
        if not os.path.exists(os.path.join(work, name)):
            os.symlink(os.path.join(src, name), os.path.join(work, name))
    if not os.path.exists(os.path.join(work, "build", "thaw")):
        os.symlink(thaw, os.path.join(work, "build", "thaw"))
    shutil.copy(os.path.join(src, "tests/data/digits.csv.gz"), work)
    subprocess.run([thaw, "snapshot", "pack", "tests/data/mlp_digits/model.safetensors", "-o",
                    os.path.join(work, "digits.thaw"), "--kind", "mlp", "--quiet"], cwd=src,
                   check=True, stdout=subprocess.DEVNULL)
    env = dict(os.environ, THAW_BIN=thaw)
    for k in ("PORT", "HOST", "THAW_API_KEY"):
        env.pop(k, None)
    passed = failed = skipped = 0
    for f in files:
        rel = os.path.relpath(f, src) if os.path.isabs(f) else f
        for line, markers, text in blocks(f if os.path.isabs(f) else os.path.join(src, f)):
            where = f"{rel}:{line}"
            skip = [m for m in markers if m.startswith("skip")]
            if skip:
                skipped += 1
                print(f"skip {where}: {skip[0][4:].strip(' ()') or 'no reason given'}")
                continue
            keys_only = any(m == "keys" or m.startswith("keys ") for m in markers)
            llamas = [m.split()[1] for m in markers if m.startswith("llama ") and len(m.split()) > 1]
            unknown = [m for m in markers if not (m.startswith("llama ") or m == "keys" or m.startswith("keys "))]
            if unknown:
                failed += 1
                print(f"FAIL {where}: unknown marker {unknown[0]!r}")
                continue
            try:
                srv = Server(thaw, src, work)
            except RuntimeError as e:
                failed += 1
                print(f"FAIL {where}: {e}")
                continue
            problems = []
            try:
                pre = prelude(thaw, srv.port)
                for name in llamas:
                    if not llama:
                        problems.append(f"needs a llama model (--llama-dir) for {name}")
                        continue
                    r = subprocess.run(["bash", "-c", pre + f"thaw deploy {shlex.quote(name)} --kind llama "
                                        f"--model {shlex.quote(llama)} >/dev/null"],
                                       cwd=work, env=env, capture_output=True, text=True, timeout=120)
                    if r.returncode:
                        problems.append(f"deploying llama {name}: {r.stderr.strip()[-500:]}")
                for cmd, expect in commands(text) if not problems else []:
                    run = substitute(cmd, srv.port)
                    try:
                        r = subprocess.run(["bash", "-c", pre + run], cwd=work, env=env,
                                           capture_output=True, text=True, timeout=180)
                    except subprocess.TimeoutExpired:
                        problems.append(f"`{cmd}`: timed out")
                        break
                    first = cmd.split("\n")[0]
                    if r.returncode:
                        problems.append(f"`{first}`: exit status {r.returncode}: "
                                        f"{(r.stderr or r.stdout).strip()[-600:]}")
                        break
                    shown = r.stdout.replace(STATUS, "\nHTTP ").strip()[:400]
                    for p in check(cmd, expect, r.stdout, keys_only):
                        problems.append(f"`{first}`: {p}; answer: {shown}")
            finally:
                srv.stop()
            if problems:
                failed += 1
                print(f"FAIL {where}:")
                for p in problems:
                    print(f"    {p}")
            else:
                passed += 1
                print(f"ok   {where} ({len(commands(text))} commands)")
    print(f"docs examples: {passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

#!/bin/sh
# bench_tok.sh — tokenizer encode/decode throughput (docs/benchmarks.md, "Tokenizer").
# Text: docs/*.md, README.md and the C sources of runtime/ functions/ snapshot/ pool/ kernels/
# concatenated in sorted order (~1 MB). thaw's tok_tokenizer (bench/bench_tok.c, one thread, median of
# 5) for the three tokenizers of tests/data/tok/. When the Python `tokenizers` package is
# installed (the GPU device machine), it is timed on the same text in the same run as the
# baseline: Tokenizer.encode of the whole text (one call, median of 5) and encode_batch over the
# lines (all cores), and the ratio thaw / tokenizers is printed.
BUILD=${BUILD:-build}
B="$BUILD/bench/bench_tok"
[ -x "$B" ] || { echo "bench_tok: $B not built (make bench)"; exit 1; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cat docs/*.md README.md $(find runtime functions snapshot pool kernels -name '*.[ch]' | sort) > "$T/text"
echo "text: $(wc -c < "$T/text") bytes; machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores"
gzip -dc tests/data/tok/llama3/tokenizer.json.gz > "$T/llama3.json" || exit 1
PY=0
python3 -c "import tokenizers" 2>/dev/null && PY=1
for n in small llama3 mistral; do
  f=tests/data/tok/$n/tokenizer.json
  [ "$n" = llama3 ] && f="$T/llama3.json"
  line=$("$B" "$f" "$T/text" 5) || exit 1
  echo "thaw $n: $line"
  if [ "$PY" = 1 ]; then
    thaw_mbs=$(echo "$line" | sed -E 's/.*encode median [0-9.]+ s = ([0-9.]+) MB\/s.*/\1/')
    python3 - "$f" "$T/text" "$thaw_mbs" "$n" <<'PYEOF'
import sys, time
from tokenizers import Tokenizer
path, text_path, thaw_mbs, name = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
text = open(text_path, encoding="utf-8").read()
mb = len(text.encode()) / 1e6
tok = Tokenizer.from_file(path)
ts = []
for _ in range(5):
    t0 = time.perf_counter(); tok.encode(text, add_special_tokens=False); ts.append(time.perf_counter() - t0)
ts.sort()
lines = text.split("\n")
tb = []
for _ in range(3):
    t0 = time.perf_counter(); tok.encode_batch(lines, add_special_tokens=False); tb.append(time.perf_counter() - t0)
tb.sort()
print(f"tokenizers {name}: encode(whole text) {mb / ts[2]:.2f} MB/s, encode_batch(lines, all cores) "
      f"{mb / tb[1]:.2f} MB/s; thaw (1 thread) / encode = {thaw_mbs / (mb / ts[2]):.2f}x, "
      f"/ encode_batch = {thaw_mbs / (mb / tb[1]):.2f}x")
PYEOF
  fi
done
[ "$PY" = 1 ] || echo "bench_tok: Python tokenizers not installed here: no baseline in this run (see docs/benchmarks.md for the device figures)"

#!/bin/sh
# Soak (issue 7): `thaw serve` at saturation for SOAK_SECONDS (default 600) over a mix of
# requests, loopback only, each a wrk process running bench/soak.lua:
#   echo invoke (16 connections), digits (mlp) invoke (8), V2 infer on digits (8), and one admin
#   connection (a request every SOAK_ADMIN_MS, default 100): deploy a new revision of "soak"
#   (deleted every 40th time: see bench/soak.lua), V2 unload and load of digits, a quantize job every 100th and a one-epoch fine-tune every
#   300th admin request.
# Checks (exit 1 when one fails):
#   - no 5xx except 503 (documented: queue full while digits cold-starts after an unload), and no
#     wrk connect/read/write errors;
#   - no leaked fds: /proc/PID/fd counted before the load (after one warm-up round), after the
#     warm-up, and at the end once the load stopped and the jobs settled: end <= before + SOAK_FD_SLACK
#     (default 0);
#   - VmRSS sampled every SOAK_SAMPLE s (default 5) and printed; after warm-up (SOAK_WARMUP s,
#     default a tenth of the run, at least 10 s) the median of the last fifth of the samples
#     within 5% of the median of the first fifth (drift; min, max and the idle RSS after the
#     load are printed too) (SOAK_RSS_CHECK=0 reports without failing: ASan runs, see
#     docs/reliability.md);
#   - /healthz 200 at the end and a digits invoke equal to the PyTorch reference
#     (tests/data/mlp_digits/expected.json, 1e-3), jobs all in a final state or queued/running.
# Rotated audit files are removed while it runs (as log shipping would), so the disk stays small.
# SOAK_HOSTILE=1 adds the hostile clients of bench/hostile_mix.py beside the load (a pipeliner that
# never reads, a connection flood, a gzip and dense-JSON amplifier, each from its own loopback
# address, and a /healthz prober), started at the end of warm-up; then the RSS checks are: the
# median of the last fifth of the samples under attack within 1.5x of the first fifth's, and the
# RSS once the load stopped within 1.5x of the sample at the end of warm-up; also no failed
# probe and no attack request answered with a 5xx but 503.
# Environment: THAW_BIN (default build/thaw), THAW_SRC (default .), SOAK_PORT (default 18995),
# SOAK_SECONDS, SOAK_WARMUP, SOAK_SAMPLE, SOAK_ADMIN_MS, SOAK_FD_SLACK, SOAK_RSS_CHECK,
# SOAK_HOSTILE, SOAK_KEEP=1 keeps the work directory.
set -u
THAW_BIN=${THAW_BIN:-build/thaw}
SRC=${THAW_SRC:-.}
PORT=${SOAK_PORT:-18995}
SECS=${SOAK_SECONDS:-600}
WARM=${SOAK_WARMUP:-$((SECS / 10))}
[ "$WARM" -lt 10 ] && WARM=10
SAMPLE=${SOAK_SAMPLE:-5}
ADMIN_MS=${SOAK_ADMIN_MS:-100}
FD_SLACK=${SOAK_FD_SLACK:-0}
RSS_CHECK=${SOAK_RSS_CHECK:-1}
HOSTILE=${SOAK_HOSTILE:-0}
for tool in wrk python3 curl; do
  command -v $tool >/dev/null 2>&1 || { echo "soak: $tool not installed (make deps)"; exit 2; }
done
SRC=$(cd "$SRC" && pwd)
work=$(mktemp -d /tmp/thaw-soak.XXXXXX)
data="$work/data"
fail=0
bad() { echo "soak: FAIL: $*"; fail=1; }
cleanup() {
  for p in ${wpids:-} ${hpid:-} ${spid:-}; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  [ "${SOAK_KEEP:-0}" = 1 ] && echo "soak: kept $work" || rm -rf "$work"
}
trap cleanup EXIT INT TERM
url="http://127.0.0.1:$PORT"

mkdir -p "$data/snapshots"
"$THAW_BIN" snapshot pack "$SRC/tests/data/mlp_digits/model.safetensors" -o "$data/snapshots/digits.thaw" \
  --kind mlp >/dev/null || { echo "soak: pack failed"; exit 2; }
"$THAW_BIN" serve --dev --host 127.0.0.1 --port "$PORT" --data "$data" --no-access-log \
  --allow-root "$SRC/tests/data" --audit-max-bytes 4194304 --job-checkpoint 2 2>"$work/serve.log" &
spid=$!
i=0
until curl -sf "$url/healthz" >/dev/null 2>&1; do
  i=$((i + 1)); [ $i -gt 600 ] && { echo "soak: serve did not start within 60 s"; cat "$work/serve.log"; exit 2; }
  sleep 0.1
done
st=$(curl -s -o /dev/null -w '%{http_code}' -X PUT "$url/v1/functions/digits" \
  -d '{"kind":"mlp","snapshot":"digits.thaw","device":"cpu","max_queue":256}')
[ "$st" = 201 ] || { echo "soak: deploy digits: $st"; exit 2; }
curl -s -o /dev/null -X PUT "$url/v1/functions/soak" -d '{"kind":"echo"}'

# request bodies and the reference check
python3 - "$SRC" "$work" <<'EOF' || exit 2
import gzip, json, sys
src, work = sys.argv[1], sys.argv[2]
rows = []
with gzip.open(f"{src}/tests/data/digits.csv.gz", "rt") as f:
    for line in f:
        rows.append([int(x) / 16.0 for x in line.strip().split(",")[:64]])
        if len(rows) == 4:
            break
json.dump({"inputs": rows}, open(f"{work}/digits.json", "w"))
json.dump({"id": "soak", "inputs": [{"name": "INPUT0", "shape": [4, 64], "datatype": "FP32",
          "data": rows}]}, open(f"{work}/v2.json", "w"))
EOF
check_ref() {
  curl -s -X POST "$url/v1/functions/digits/invoke" -H 'Content-Type: application/json' \
    --data-binary @"$work/digits.json" > "$work/ref_out.json"
  python3 - "$SRC" "$work/ref_out.json" <<'EOF'
import json, sys
exp = json.load(open(f"{sys.argv[1]}/tests/data/mlp_digits/expected.json"))
try:
    o = json.load(open(sys.argv[2]))
except Exception as e:
    print(f"soak: digits invoke: not JSON: {e}"); sys.exit(1)
for r in range(4):
    got, ref = o["outputs"][r], exp["first_logits"][r]
    if max(abs(a - b) for a, b in zip(got, ref)) > 1e-3 or o["labels"][r] != exp["labels"][r]:
        print(f"soak: digits row {r} differs from the reference"); sys.exit(1)
print("soak: digits invoke matches the reference (4 rows, 1e-3)")
EOF
}
check_ref || bad "reference before the load"
# one warm-up round of every request type, then the fd baseline
for p in unload load; do curl -s -o /dev/null -X POST "$url/v2/repository/models/digits/$p"; done
curl -s -o /dev/null -X POST "$url/v2/models/digits/infer" --data-binary @"$work/v2.json"
sleep 1
fds() { ls "/proc/$spid/fd" 2>/dev/null | wc -l; }
rss() { awk '/^VmRSS/ { print $2 }' "/proc/$spid/status" 2>/dev/null; }
fd0=$(fds)

wpids=""
run_wrk() {   # name conns script-args...
  name=$1; c=$2; shift 2
  wrk -t1 -c"$c" -d"${SECS}s" --timeout 30s -s "$SRC/bench/soak.lua" "$url/" -- "$@" > "$work/wrk-$name.txt" 2>&1 &
  wpids="$wpids $!"
}
run_wrk echo 16 echo
run_wrk digits 8 digits "$work/digits.json"
run_wrk v2 8 v2 "$work/v2.json"
run_wrk admin 1 admin "" "$ADMIN_MS" "$SRC/tests/data/digits.csv.gz"
hpid=""
echo "soak: $SECS s at saturation (warm-up $WARM s), thaw pid $spid, fds before $fd0"
start=$(date +%s)
printf 'soak: %6s %10s %6s\n' t_s rss_kib fds > "$work/series.txt"
fdw=""; rssw=""
while :; do
  now=$(date +%s); t=$((now - start))
  [ $t -ge "$SECS" ] && break
  kill -0 "$spid" 2>/dev/null || { bad "thaw exited during the soak"; break; }
  r=$(rss); f=$(fds)
  printf 'soak: %6d %10s %6s\n' "$t" "$r" "$f" >> "$work/series.txt"
  if [ $t -ge "$WARM" ] && [ -z "$rssw" ]; then
    rssw=$r; fdw=$f
    if [ "$HOSTILE" = 1 ]; then   # the attack starts once the well-behaved load is warm
      python3 "$SRC/bench/hostile_mix.py" --port "$PORT" --seconds $((SECS - t)) > "$work/hostile.txt" 2>&1 &
      hpid=$!
    fi
  fi
  [ -n "$rssw" ] && echo "$r" >> "$work/rss_after_warm"
  rm -f "$data/audit/"audit-*.log
  sleep "$SAMPLE"
done
for p in $wpids; do wait "$p"; done
wpids=""
if [ -n "$hpid" ]; then
  kill -TERM "$hpid" 2>/dev/null
  wait "$hpid"; hrc=$?
  hpid=""
  sed 's/^/soak: /' "$work/hostile.txt"
  [ "$hrc" = 0 ] || bad "hostile clients: exit $hrc (see the lines above)"
fi
cat "$work/series.txt"
# settle: jobs finish or stay queued; idle keep-alive connections are gone with wrk
i=0
while [ $i -lt 180 ]; do   # up to 3 minutes (ASan on 2 busy cores)
  running=$(curl -s "$url/v1/jobs?state=running" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["jobs"]))' 2>/dev/null)
  [ "${running:-1}" = 0 ] && break
  sleep 1; i=$((i + 1))
done
sleep 1
fd1=$(fds); rss1=$(rss)
echo "soak: fds before $fd0, after warm-up ${fdw:-?}, at the end $fd1"
[ "$fd1" -le $((fd0 + FD_SLACK)) ] || bad "fds grew: $fd0 -> $fd1 (ls -l /proc/$spid/fd in $work/fds.txt)"
ls -l "/proc/$spid/fd" > "$work/fds.txt" 2>/dev/null
if [ -n "$rssw" ]; then
  # drift: median of the first fifth of the post-warm-up samples vs median of the last fifth
  # (single samples swing with the transient memory of whatever job runs at that moment)
  set -- $(awk '{ v[NR] = $1 } END {
    k = int(NR / 5); if (k < 1) k = 1
    for (i = 1; i <= k; i++) a[i] = v[i]; n = asort_a(a, k); fm = med(a, k)
    for (i = 1; i <= k; i++) b[i] = v[NR - k + i]; lm = med(b, k)
    mx = v[1]; mn = v[1]; for (i = 1; i <= NR; i++) { if (v[i] > mx) mx = v[i]; if (v[i] < mn) mn = v[i] }
    print fm, lm, mn, mx, NR }
    function asort_a(x, n,   i, j, t) { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (x[j] < x[i]) { t = x[i]; x[i] = x[j]; x[j] = t } return n }
    function med(x, n) { asort_a(x, n); return (n % 2) ? x[(n + 1) / 2] : (x[n / 2] + x[n / 2 + 1]) / 2 }' "$work/rss_after_warm")
  first=$1; last=$2; min=$3; max=$4; ns=$5
  drift=$(echo "$last $first" | awk '{ printf "%+.1f%%", ($1 / $2 - 1) * 100 }')
  echo "soak: VmRSS after warm-up ($ns samples): first fifth median $first KiB, last fifth median $last KiB ($drift); min $min, max $max; idle after the load $rss1 KiB"
  if [ "$RSS_CHECK" = 1 ] && [ "$HOSTILE" != 1 ]; then
    echo "$last $first" | awk '{ exit !($1 <= $2 * 1.05) }' || bad "VmRSS drifted past 5% after warm-up ($first -> $last KiB)"
  fi
  if [ "$HOSTILE" = 1 ]; then
    # under attack single samples swing with the bodies in flight (each bounded per request):
    # judged are the drift under attack and the RSS once the load has stopped
    echo "soak: VmRSS at the end of warm-up $rssw KiB; under attack highest $max KiB ($(echo "$max $rssw" | awk '{ printf "%.2fx", $1 / $2 }')); idle after the load $rss1 KiB ($(echo "$rss1 $rssw" | awk '{ printf "%.2fx", $1 / $2 }'))"
    if [ "$RSS_CHECK" = 1 ]; then
      echo "$last $first" | awk '{ exit !($1 <= $2 * 1.5) }' || bad "VmRSS under the hostile clients grew past 1.5x ($first -> $last KiB, medians)"
      echo "$rss1 $rssw" | awk '{ exit !($1 <= $2 * 1.5) }' || bad "VmRSS after the hostile load past 1.5x of its start ($rssw -> $rss1 KiB)"
    fi
  fi
else
  bad "no sample after warm-up (SOAK_SECONDS too short?)"
fi
# status counts
echo "soak: requests by type and status:"
total=0
for n in echo digits v2 admin; do
  grep -h '^soak-status\|^soak-errors' "$work/wrk-$n.txt" | sed 's/^/soak:   /'
  grep -q '^soak-status' "$work/wrk-$n.txt" || { bad "wrk $n printed no counts"; sed 's/^/    /' "$work/wrk-$n.txt"; }
  grep -h '^soak-errors' "$work/wrk-$n.txt" | grep -q 'connect=0 read=0 write=0 timeout=0' || bad "wrk $n saw transport errors"
  s=$(awk '/^soak-status/ { s += $4 } END { print s + 0 }' "$work/wrk-$n.txt"); total=$((total + s))
done
echo "soak: $total requests in $SECS s ($(echo "$total $SECS" | awk '{ printf "%.0f", $1 / $2 }') req/s)"
x5=$(cat "$work"/wrk-*.txt | awk '/^soak-status/ { n = split($3, a, ":"); st = a[n]; if (st + 0 >= 500 && st != "503") s += $4 } END { print s + 0 }')
[ "$x5" = 0 ] || bad "$x5 responses with a 5xx other than 503"
# final health, reference, jobs, audit
[ "$(curl -s -o /dev/null -w '%{http_code}' "$url/healthz")" = 200 ] || bad "/healthz not 200 at the end"
check_ref || bad "reference after the load"
curl -s "$url/v1/jobs" | python3 -c '
import json, sys, collections
j = json.load(sys.stdin)["jobs"]
c = collections.Counter((x["type"], x["state"]) for x in j)
print("soak: jobs:", ", ".join(f"{t} {s} {n}" for (t, s), n in sorted(c.items())) or "none")
failed = [x for x in j if x["state"] == "failed"]
for x in failed[:3]:
    print("soak: failed job", x["id"], x.get("error"))
sys.exit(1 if failed else 0)' || bad "a job failed"
grep -E '"level":"(error|fatal)"' "$work/serve.log" | head -n 5 | sed 's/^/soak: serve log: /'
kill -TERM "$spid"
wait "$spid"; rc=$?
spid=""
[ "$rc" = 0 ] || bad "thaw serve exited $rc after SIGTERM"
grep -q "ERROR: AddressSanitizer\|runtime error:" "$work/serve.log" && { bad "sanitizer report"; grep -A 20 "ERROR: AddressSanitizer\|runtime error:" "$work/serve.log" | head -n 40; }
[ $fail = 0 ] && echo "soak: PASS" || echo "soak: FAILED"
exit $fail

#!/bin/sh
# Time-sharing (issue 6): a fine-tune job saturating a device lane while warm invocations of
# the digits mlp arrive on the same lane. Same run, REPEAT times (default 3), medians:
#   - invocation round trip (keep-alive HTTP, N calls, PAUSE_US apart) with no job (baseline:
#     before and after, averaged) and while the job runs; ratio of p50s (target: within 10%);
#   - preemption latency: invocation work's wait on the lane while the job is active, from the
#     lane's own timestamps (GET /v1/jobs "preemption": p50/p99/max over the calls);
#   - job throughput: the same job alone vs under traffic: wall time, the CPU time of its steps
#     on the lane thread (runner.cpu_seconds: immune to other processes on the host) and the
#     lane's idle time between a yield and the job's next step (runner.resume_gap_seconds);
#     lost per preemption = (extra CPU time + gaps) / yields.
# CPU lane by default (--no-gpu); GPU=1 runs the function and the job on cuda:0. LOAD=K adds K
# busy-looping processes in their own session for the whole run (a host shared with other
# work: the job must then leave the CPU to them and to the daemon's loop thread).
# Needs curl and jq. Helper: bench/timeshare.c ($BUILD/bench/timeshare, built by make bench).
set -u
BUILD=${BUILD:-build}
THAW_BIN=${THAW_BIN:-$BUILD/thaw}
HELPER=${HELPER:-$BUILD/bench/timeshare}
REPEAT=${REPEAT:-3}
N=${N:-400}
PAUSE_US=${PAUSE_US:-4000}
EPOCHS=${EPOCHS:-600}
PORT=${PORT:-18995}
SRC=${THAW_SRC:-$PWD}
for tool in curl jq; do
  command -v $tool >/dev/null 2>&1 || { echo "bench_timeshare: $tool not installed"; exit 1; }
done
if [ "${GPU:-0}" = 1 ]; then DEV=cuda:0; GPUFLAG=; else DEV=cpu; GPUFLAG=--no-gpu; fi
work=$(mktemp -d /tmp/thaw-bench-ts.XXXXXX)
cleanup() { [ -n "${tpid:-}" ] && kill "$tpid" 2>/dev/null; for h in ${hogs:-}; do kill "$h" 2>/dev/null; done
  wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT INT TERM
if [ ! -x "$HELPER" ]; then   # make bench-gpu builds no bench helpers: the client needs only libc
  HELPER=$work/timeshare
  ${CC:-cc} -O2 -o "$HELPER" bench/timeshare.c || { echo "bench_timeshare: cannot build the client"; exit 1; }
fi
URL=http://127.0.0.1:$PORT
mkdir -p "$work/data/snapshots"
"$THAW_BIN" snapshot pack "$SRC/tests/data/mlp_digits/model.safetensors" -o "$work/data/snapshots/digits.thaw" \
  --kind mlp >/dev/null || exit 1
setsid "$THAW_BIN" serve --dev --host 127.0.0.1 --port "$PORT" --data "$work/data" --no-access-log $GPUFLAG \
  --allow-root "$SRC/tests/data" --job-checkpoint 3600 2>"$work/thaw.err" &
tpid=$!
for _ in $(seq 100); do curl -sf "$URL/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -sf -X PUT "$URL/v1/functions/digits" -d "{\"kind\": \"mlp\", \"snapshot\": \"digits.thaw\", \"min_scale\": 1, \"device\": \"$DEV\", \"max_batch\": 1}" >/dev/null \
  || { echo "deploy failed"; cat "$work/thaw.err"; exit 1; }
# one digits row (pixels / 16) as the request body
zcat "$SRC/tests/data/digits.csv.gz" | head -1 | awk -F, '{ printf "{\"inputs\": [["; for (i = 1; i <= 64; i++) printf "%s%g", (i > 1 ? "," : ""), $i / 16; printf "]]}" }' > "$work/body.json"
"$HELPER" "$PORT" /v1/functions/digits/invoke "$work/body.json" 50 0 >/dev/null   # warm
hogs=
i=0
while [ $i -lt "${LOAD:-0}" ]; do setsid sh -c 'while :; do :; done' & hogs="$hogs $!"; i=$((i + 1)); done

SPEC="{\"type\": \"finetune\", \"function\": \"digits\", \"revision\": 1, \"device\": \"$DEV\", \"params\": {\"data\": \"$SRC/tests/data/digits.csv.gz\", \"epochs\": $EPOCHS, \"batch_size\": 32, \"learning_rate\": 0.001, \"feature_scale\": 0.0625, \"seed\": 1}}"
submit() { curl -sf -X POST "$URL/v1/jobs" -d "$SPEC" | jq -r .id; }
jget() { curl -sf "$URL/v1/jobs/$1" | jq -r "$2"; }
wait_state() {  # id state
  while :; do s=$(jget "$1" .state); [ "$s" = "$2" ] && return 0
    case "$s" in succeeded|failed|cancelled) [ "$s" = "$2" ] || { echo "job $1 ended $s: $(jget "$1" .error)" >&2; return 1; }; return 0;; esac
    sleep 0.02; done
}
# wall seconds of a finished job
job_secs() { curl -sf "$URL/v1/jobs/$1" | jq -r '((.finished | sub("\\.[0-9]+Z$"; "Z") | fromdate) - (.started | sub("\\.[0-9]+Z$"; "Z") | fromdate)) as $s | ($s + ((.finished | capture("\\.(?<ms>[0-9]+)Z").ms | tonumber) - (.started | capture("\\.(?<ms>[0-9]+)Z").ms | tonumber)) / 1000)'; }

: > "$work/rows"
r=0
while [ $r -lt "$REPEAT" ]; do
  idle=$("$HELPER" "$PORT" /v1/functions/digits/invoke "$work/body.json" "$N" "$PAUSE_US") || exit 1
  a=$(submit); wait_state "$a" succeeded || exit 1
  ta=$(job_secs "$a"); steps=$(jget "$a" .step); la=$(jget "$a" .runner.cpu_seconds)
  s0=$(curl -sf "$URL/v1/jobs" | jq -r .preemption.samples)
  b=$(submit); wait_state "$b" running || exit 1
  busy=$("$HELPER" "$PORT" /v1/functions/digits/invoke "$work/body.json" "$N" "$PAUSE_US") || exit 1
  still=$(jget "$b" .state)
  wait_state "$b" succeeded || exit 1
  idle2=$("$HELPER" "$PORT" /v1/functions/digits/invoke "$work/body.json" "$N" "$PAUSE_US") || exit 1
  # the baseline: the mean of the no-job runs before and after (the host's load drifts)
  idle=$(echo "$idle $idle2" | awk '{ print $1, ($2 + $8) / 2, ($3 + $9) / 2 }')
  tb=$(job_secs "$b"); pre=$(jget "$b" .preemptions)
  lb=$(jget "$b" .runner.cpu_seconds); gb=$(jget "$b" .runner.resume_gap_seconds)
  lat=$(curl -sf "$URL/v1/jobs" | jq -r '.preemption | "\(.samples) \(.p50_ms) \(.p99_ms) \(.max_ms)"')
  [ "$still" = running ] || [ "$still" = preempted ] || echo "warning: the job ended before the calls did (raise EPOCHS)" >&2
  # idle_p50 idle_p99 busy_p50 busy_p99 busy_max job_alone_s job_busy_s preemptions steps lat...
  echo "$(echo "$idle" | awk '{print $2, $3}') $(echo "$busy" | awk '{print $2, $3, $4}') $ta $tb $pre $steps $lat $s0 $la $lb $gb" >> "$work/rows"
  # fresh samples per repeat: the ring keeps the latest 4096, a repeat adds N
  r=$((r + 1))
done
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
col() { awk -v k="$1" '{ print $k }' "$work/rows" | median; }
ip50=$(col 1); ip99=$(col 2); bp50=$(col 3); bp99=$(col 4); bmax=$(col 5)
ta=$(col 6); tb=$(col 7); pre=$(col 8); steps=$(col 9)
lp50=$(col 11); lp99=$(col 12); lmax=$(awk '{ print $13 }' "$work/rows" | sort -g | tail -1)
la=$(col 15); lb=$(col 16); gb=$(col 17)
lost=$(awk '{ if ($8 > 0) print (($16 - $15) + $17) / $8 * 1e6 }' "$work/rows" | median)
gap=$(awk '{ if ($8 > 0) print $17 / $8 * 1e6 }' "$work/rows" | median)
host=$(uname -n); cores=$(nproc)
echo "time-sharing on $DEV ($host, $cores cores, ${LOAD:-0} busy loops beside): finetune of the digits mlp ($EPOCHS epochs, $steps steps) + $N invocations ${PAUSE_US} us apart; $REPEAT runs, medians"
printf '%-44s %10s %10s %10s\n' "invocation round trip (us)" p50 p99 max
printf '%-44s %10s %10s %10s\n' "  no job (baseline)" "$ip50" "$ip99" "-"
printf '%-44s %10s %10s %10s\n' "  job running" "$bp50" "$bp99" "$bmax"
awk -v a="$bp50" -v b="$ip50" 'BEGIN { printf "  ratio p50 job/no job: %.3f (target <= 1.10)\n", a / b }'
printf 'preemption latency (lane wait while the job is active, ms): p50 %s  p99 %s  max %s\n' "$lp50" "$lp99" "$lmax"
awk -v ta="$ta" -v tb="$tb" -v p="$pre" -v s="$steps" -v la="$la" -v lb="$lb" -v gb="$gb" -v lost="$lost" -v gap="$gap" 'BEGIN {
  printf "job alone: %.3f s wall, %.3f s CPU (%.0f steps/s of CPU time)\n", ta, la, s / la;
  printf "job under traffic: %.3f s wall, %.3f s CPU, %.3f s resume gaps, %d preemptions\n", tb, lb, gb, p;
  printf "job time lost per preemption: %.1f us (resume gap %.1f us) = %.3f steps\n", lost, gap, lost * 1e-6 * s / la }'
# machine-readable record (bench/results/preemption.tsv, charted by make bench-report)
. bench/record.sh
bench_record preemption "$DEV lane, ${LOAD:-0} busy loops" "$lp50" "$lp99" "$lmax"

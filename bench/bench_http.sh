#!/bin/sh
# HTTP overhead: wrk against `thaw serve`'s echo and against nginx returning the same JSON body,
# on loopback, same run. Reports req/s at 64 connections, p50/p99 at 1 and 64 connections, and
# the thaw/nginx ratios. Repeats REPEAT times (default 3) and takes medians. thaw runs twice side
# by side: with --no-audit (like nginx's access_log off; the targets use it) and with the audit
# log on (one line per invocation, buffered); the runs interleave so both see the same machine.
# Targets (issue 2): req/s ratio >= 0.6 at 64 connections; p50 ratio <= 1.3 at 1 connection.
set -u
THAW_BIN=${THAW_BIN:-build/thaw}
DUR=${DUR:-5}
REPEAT=${REPEAT:-3}
TP=${THAW_PORT:-18990}
NP=${NGINX_PORT:-18991}
AP=${THAW_AUDIT_PORT:-18992}
for tool in wrk nginx; do
  command -v $tool >/dev/null 2>&1 || { echo "bench_http: $tool not installed (make deps)"; exit 1; }
done
NGINX=$(command -v nginx)
work=$(mktemp -d /tmp/thaw-bench-http.XXXXXX)
cleanup() { for p in "${tpid:-}" "${apid:-}" "${npid:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT INT TERM

sed "s/__PORT__/$NP/" bench/nginx.conf > "$work/nginx.conf"
"$NGINX" -p "$work" -c "$work/nginx.conf" 2>"$work/nginx.err" &
npid=$!
"$THAW_BIN" serve --dev --host 127.0.0.1 --port "$TP" --data "$work/data" --no-access-log --no-audit 2>"$work/thaw.err" &
tpid=$!
"$THAW_BIN" serve --dev --host 127.0.0.1 --port "$AP" --data "$work/data-audit" --no-access-log 2>"$work/thaw-audit.err" &
apid=$!
sleep 0.5
curl -sf -X POST -d '{}' "http://127.0.0.1:$TP/v1/functions/echo/invoke" >/dev/null || { echo "thaw did not start"; cat "$work/thaw.err"; exit 1; }
curl -sf -X POST -d '{}' "http://127.0.0.1:$AP/v1/functions/echo/invoke" >/dev/null || { echo "thaw (audit) did not start"; cat "$work/thaw-audit.err"; exit 1; }
curl -sf "http://127.0.0.1:$NP/" >/dev/null || { echo "nginx did not start"; cat "$work/nginx.err"; exit 1; }

# to_us "71.00us" -> 71.00
to_us() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000; else if (v ~ /s$/) print n * 1e6; else print n }'; }
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# run URL CONNS THREADS -> "rps p50_us p99_us"
run() {
  out=$(wrk -t"$3" -c"$2" -d"${DUR}s" --latency -s bench/post.lua "$1" 2>&1)
  rps=$(echo "$out" | awk '/Requests\/sec:/ { print $2 }')
  p50=$(echo "$out" | awk '$1 == "50%" { print $2 }')
  p99=$(echo "$out" | awk '$1 == "99%" { print $2 }')
  non2xx=$(echo "$out" | awk '/Non-2xx/ { print $NF }')
  [ -n "$non2xx" ] && echo "warning: $non2xx non-2xx responses from $1" >&2
  echo "$rps $(to_us "$p50") $(to_us "$p99")"
}

for c in 1 64; do
  t=1; [ "$c" -gt 1 ] && t=2
  : > "$work/t$c"; : > "$work/n$c"; : > "$work/a$c"
  i=0
  while [ $i -lt "$REPEAT" ]; do
    run "http://127.0.0.1:$TP/v1/functions/echo/invoke" $c $t >> "$work/t$c"
    run "http://127.0.0.1:$AP/v1/functions/echo/invoke" $c $t >> "$work/a$c"
    run "http://127.0.0.1:$NP/" $c $t >> "$work/n$c"
    i=$((i + 1))
  done
done

col() { awk -v k="$2" '{ print $k }' "$1" | median; }
echo "HTTP echo vs nginx (loopback, wrk, ${DUR}s x $REPEAT runs, medians; $(nproc) cores)"
printf '%-28s %12s %12s %8s\n' "" thaw nginx ratio
for c in 1 64; do
  trps=$(col "$work/t$c" 1); nrps=$(col "$work/n$c" 1)
  tp50=$(col "$work/t$c" 2); np50=$(col "$work/n$c" 2)
  tp99=$(col "$work/t$c" 3); np99=$(col "$work/n$c" 3)
  printf '%-28s %12.0f %12.0f %8.2f\n' "req/s, $c conn" "$trps" "$nrps" "$(echo "$trps $nrps" | awk '{ print $1 / $2 }')"
  printf '%-28s %12.1f %12.1f %8.2f\n' "p50 us, $c conn" "$tp50" "$np50" "$(echo "$tp50 $np50" | awk '{ print $1 / $2 }')"
  printf '%-28s %12.1f %12.1f %8.2f\n' "p99 us, $c conn" "$tp99" "$np99" "$(echo "$tp99 $np99" | awk '{ print $1 / $2 }')"
done
echo "with the audit log on (buffered lines; vs nginx and vs thaw --no-audit):"
printf '%-28s %12s %12s %8s %8s\n' "" "thaw+audit" nginx "/nginx" "/no-aud"
for c in 1 64; do
  for k in 1 2 3; do
    a=$(col "$work/a$c" $k); n=$(col "$work/n$c" $k); t=$(col "$work/t$c" $k)
    case $k in 1) l="req/s, $c conn";; 2) l="p50 us, $c conn";; 3) l="p99 us, $c conn";; esac
    printf '%-28s %12.1f %12.1f %8.2f %8.2f\n' "$l" "$a" "$n" "$(echo "$a $n" | awk '{ print $1 / $2 }')" "$(echo "$a $t" | awk '{ print $1 / $2 }')"
  done
done
lines=$(cat "$work/data-audit/audit/"*.log 2>/dev/null | wc -l)
echo "audit lines written by the audited server: $lines"
r64=$(echo "$(col "$work/t64" 1) $(col "$work/n64" 1)" | awk '{ print $1 / $2 }')
p1=$(echo "$(col "$work/t1" 2) $(col "$work/n1" 2)" | awk '{ print $1 / $2 }')
echo "target: req/s ratio at 64 conn >= 0.60: $(echo "$r64" | awk '{ print ($1 >= 0.6) ? "met" : "NOT met" }') ($r64)"
echo "target: p50 ratio at 1 conn <= 1.30: $(echo "$p1" | awk '{ print ($1 <= 1.3) ? "met" : "NOT met" }') ($p1)"

#!/bin/sh
# bench_serve.sh — serving benchmark (docs/benchmarks.md, "Serving"): a llama function
# behind `thaw serve`'s OpenAI streaming route under many concurrent streams, with its baselines
# measured in the same run. Client: bench/bench_serve.c ($BUILD/bench/bench_serve).
#   - closed loop at SERVE_STREAMS concurrent streams (each sends its next request when the last
#     one ended; SERVE_ROUNDS requests per stream): output tok/s, TTFT and inter-token p50/p99,
#     max latency; the 1-stream run is the batch-1 rate;
#   - open loop: Poisson arrivals at each of SERVE_RATES requests/s for SERVE_OPEN_DUR s;
#   - int8 weights (thaw snapshot pack --quantize int8) at SERVE_LOAD streams;
#   - SERVE_LOAD requests at once sharing a SERVE_PREFIX-token system prompt, manifest
#     "prefix_caching": true vs false (the TTFT ratio); a server whose manifest lacks the field
#     gets it skipped;
#   - a tiny mlp function (tests/data/mlp_digits) invoked at SERVE_PROBE_RATE/s on the same
#     device, alone and during a SERVE_LOAD-stream load: its latency p50/p99;
#   - baselines: HF transformers `generate` with a static cache (cache_implementation="static",
#     compiled by transformers) at the same batch sizes (above 1) and on the very same weights
#     (bench/hf_llama.py --static --save; GPU only), and the bytes-per-step limit: the weights
#     and KV cache one decode step of B sequences reads (bf16 KV at the mean context, prefix +
#     prompt + new/2) at the copy bandwidth measured in this run (torch d2d copy on the GPU,
#     memcpy on all cores on the CPU), limit tok/s = B / (bytes / bandwidth).
# Prompts are random token ids; the model's lm_head row of eos is zero (bench/hf_llama.py
# --zero-eos, bench/snap_genmodel --no-eos) because the OpenAI route ends a completion at eos
# and has no option to ignore it: greedy decoding then never picks eos and every request runs
# to max_tokens (the client reports requests that ended shorter as shorter=N).
# GPU=1: the ~1.1B config of bench/hf_llama.py on cuda:0 (prompt 128, 256 new tokens); else the
# CPU lane with a ~45 MB bf16 model (6 layers, hidden 256, vocab 32000; 64 new tokens).
# Every function is deployed with concurrency and max_batch = its stream count, a 1024-call
# queue and a 600 s timeout, warmed by one call, and unloaded after its case. Rows go to
# bench/results/serve.tsv (bench/record.sh). Env: SERVE_STREAMS, SERVE_ROUNDS, SERVE_PROMPT,
# SERVE_NEW, SERVE_DUR (closed loop: no new request after S s), SERVE_RATES, SERVE_OPEN_DUR,
# SERVE_LOAD, SERVE_PREFIX, SERVE_PROBE_RATE, SERVE_PROBE_DUR, SERVE_TIMEOUT (per request),
# SERVE_PARTS (subset of "closed open int8 prefix probe hf"), HF_BATCHES, HF_REPS,
# SERVE_MODEL_DIR, SERVE_PORT, SERVE_FLAGS (more `thaw serve` options).
set -u
BUILD=${BUILD:-build}
THAW_BIN=${THAW_BIN:-$BUILD/thaw}
SRC=${THAW_SRC:-$PWD}
B=$BUILD/bench/bench_serve
GEN=$BUILD/bench/snap_genmodel
PORT=${SERVE_PORT:-18997}
URL=http://127.0.0.1:$PORT
if [ "${GPU:-0}" = 1 ]; then
  DEV=cuda:0; GPUFLAG=
  STREAMS=${SERVE_STREAMS:-1 16 64 256}; LOAD=${SERVE_LOAD:-64}; NEW=${SERVE_NEW:-256}
  RATES=${SERVE_RATES:-20 50 100}
else
  DEV=cpu; GPUFLAG=--no-gpu
  STREAMS=${SERVE_STREAMS:-1 8}; LOAD=${SERVE_LOAD:-8}; NEW=${SERVE_NEW:-64}
  RATES=${SERVE_RATES:-0.25 0.5}
fi
PROMPT=${SERVE_PROMPT:-128}
ROUNDS=${SERVE_ROUNDS:-2}
DUR=${SERVE_DUR:-120}
OPEN_DUR=${SERVE_OPEN_DUR:-10}
PREFIX=${SERVE_PREFIX:-1000}
PROBE_RATE=${SERVE_PROBE_RATE:-50}
PROBE_DUR=${SERVE_PROBE_DUR:-5}
TIMEOUT=${SERVE_TIMEOUT:-600}
PARTS=${SERVE_PARTS:-closed open int8 prefix probe hf}
has() { case " $PARTS " in *" $1 "*) return 0 ;; esac; return 1; }
command -v curl >/dev/null 2>&1 || { echo "bench_serve: curl not installed"; exit 1; }
command -v python3 >/dev/null 2>&1 || { echo "bench_serve: python3 not installed"; exit 1; }
for x in "$B" "$GEN"; do
  [ -x "$x" ] && continue
  # make bench-gpu builds only the daemon: build the client and the model writer here
  cuda=; [ "$BUILD" = build-cuda ] && cuda=CUDA=1
  make --no-print-directory $cuda "$x" >/dev/null || { echo "bench_serve: cannot build $x (make bench)"; exit 1; }
done
[ -x "$THAW_BIN" ] || { echo "bench_serve: $THAW_BIN not built"; exit 1; }
. bench/record.sh
rc=0

work=$(mktemp -d /tmp/thaw-bench-serve.XXXXXX)
cleanup() { [ -n "${spid:-}" ] && kill "$spid" 2>/dev/null; [ -n "${lpid:-}" ] && kill "$lpid" 2>/dev/null
  wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT INT TERM
RES=$work/results   # "key value" lines of this run
: > "$RES"
put() { echo "$1 $2" >> "$RES"; }
get() { awk -v k="$1" '$1 == k { v = $2 } END { print (v == "" ? "-" : v) }' "$RES"; }
# kv KEY LINE: the value of KEY=... in a bench_serve line
kv() { printf '%s\n' "$2" | tr ' ' '\n' | sed -n "s/^$1=//p" | head -1; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b + 0 == 0) print "-"; else printf "%.2f", a / b }'; }

# ---- the model, the baselines' figures, the snapshots ----
mkdir -p "$work/data/snapshots"
if [ "${GPU:-0}" = 1 ]; then
  M=${SERVE_MODEL_DIR:-/tmp/thaw-bench-serve-1b}
  # the batch sizes above 1 (batch 1 is no target, and each size compiles for a minute or so)
  HFB=${HF_BATCHES:-$(echo $STREAMS | tr ' ' '\n' | awk '$1 > 1' | paste -sd, -)}
  has hf || HFB=none
  if [ "$HFB" = none ] && [ -f "$M/model.safetensors" ] && [ -f "$M/bench_serve_bw" ]; then
    # a run split over several calls: the weights and the bandwidth of the earlier one
    echo "== model: the ~1.1B config saved by an earlier run ($M), its copy bandwidth"
    BW=$(cat "$M/bench_serve_bw")
  else
    echo "== model: ~1.1B llama config, random weights, lm_head eos row zeroed ($M); HF static-cache baseline at batch ${HFB:-none}"
    python3 bench/hf_llama.py --save "$M" --zero-eos --bw --static --batches "${HFB:-none}" --reps "${HF_REPS:-2}" \
      --prompt "$PROMPT" --new "$NEW" > "$work/hf.log" 2>&1
    st=$?
    grep -v -i warn "$work/hf.log"
    [ -f "$M/model.safetensors" ] && grep -q '^saved' "$work/hf.log" || { echo "bench_serve: bench/hf_llama.py failed"; exit 1; }
    # a baseline that failed after the weights were saved (a compile error) leaves its figures out
    [ $st = 0 ] || { echo "bench_serve: the HF static-cache baseline failed (above): its figures are missing"; rc=1; }
    BW=$(sed -n 's/^device_copy_bandwidth GB_s=\([0-9.]*\).*/\1/p' "$work/hf.log")
    echo "$BW" > "$M/bench_serve_bw"
    sed -n 's/^hf_generate batch=\([0-9]*\) tok_per_s=\([0-9.]*\) cache=static.*/hf\1 \2/p' "$work/hf.log" >> "$RES"
  fi
else
  M=${SERVE_MODEL_DIR:-$work/model}
  echo "== model: 6 layers, hidden 256, inter 1024, 4 heads, 2 KV heads, vocab 32000, bf16, eos row zeroed ($M)"
  "$GEN" "$M" 6 1 --shape 256,1024,4,2,32000 --no-eos || exit 1
  BW=$("$B" --copy-bw --mib 256 | sed -n 's/^host_copy_bandwidth GB_s=\([0-9.]*\).*/\1/p')
  echo "HF transformers baseline: GPU only (GPU=1), skipped"
fi
echo "copy bandwidth (read+write): ${BW:--} GB/s"
pack_ok() { out=$("$THAW_BIN" snapshot pack "$M" -o "$work/data/snapshots/$1" --kind llama \
  --tokenizer "$SRC/tests/data/tok/mistral" --quiet $2 2>&1) || { echo "bench_serve: pack $1 failed: $out"; exit 1; }; }
pack_ok m.thaw ""
has int8 && pack_ok m8.thaw "--quantize int8"
"$THAW_BIN" snapshot pack "$SRC/tests/data/mlp_digits/model.safetensors" -o "$work/data/snapshots/mlp.thaw" --kind mlp \
  --quiet || exit 1

# limit B CTX INT8: tok/s at which B sequences' weights + bf16 KV at mean context CTX move at $BW
limit() {
  python3 - "$M/config.json" "$1" "$2" "$3" "${BW:-0}" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1])); b, ctx, q, bw = int(sys.argv[2]), float(sys.argv[3]), sys.argv[4] == "1", float(sys.argv[5])
h, i, l, v = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["vocab_size"]
nh, nkv = c["num_attention_heads"], c["num_key_value_heads"]; hd = h // nh
rows = l * (h + 2 * nkv * hd + h + 2 * i + h) + v   # output rows of q, k, v, o, gate, up, down; lm_head
cols = l * (h * (h + 2 * nkv * hd) + h * h + 2 * i * h + i * h) + v * h   # their weights
w = cols * 1 + rows * 4 if q else cols * 2           # int8 + F32 row scales, or bf16
kv = b * ctx * l * 2 * nkv * hd * 2
print("-" if bw <= 0 else "%.0f" % (b / ((w + kv) / (bw * 1e9))))
EOF
}

# ---- the server ----
setsid "$THAW_BIN" serve --dev --host 127.0.0.1 --port "$PORT" --data "$work/data" --no-access-log --no-audit \
  $GPUFLAG ${SERVE_FLAGS:-} 2>"$work/thaw.err" &
spid=$!
for _ in $(seq 200); do curl -sf "$URL/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -sf "$URL/readyz" >/dev/null || { echo "bench_serve: thaw did not start"; cat "$work/thaw.err"; exit 1; }

# deploy NAME SNAPSHOT STREAMS [EXTRA_FIELDS] [WARMUP_ARGS]: a llama function, warmed by one call
deploy() {
  man="{\"kind\":\"llama\",\"snapshot\":\"$2\",\"device\":\"$DEV\",\"concurrency\":$3,\"max_batch\":$3,\"max_queue\":1024,\"timeout_s\":600,\"idle_timeout_s\":600${4:+,$4}}"
  code=$(curl -s -o "$work/put.out" -w '%{http_code}' -X PUT "$URL/v1/functions/$1" -d "$man")
  case "$code" in 200|201) ;; *) echo "bench_serve: deploy $1 -> $code $(cat "$work/put.out")"; return 1 ;; esac
  # shellcheck disable=SC2086
  "$B" --url "$URL" --model "$1" --closed 1 --requests 1 --prompt 8 --new 2 --timeout "$TIMEOUT" ${5:-} > "$work/warm.out" ||
    { echo "bench_serve: warm-up call of $1 failed: $(cat "$work/warm.out")"; tail -5 "$work/thaw.err"; return 1; }
}
unload() { curl -s -o /dev/null -X POST "$URL/v2/repository/models/$1/unload" -d '{}'; }
# serve CASE_KEY LABEL ARGS...: one bench_serve run; its line is shown and kept as $line
serve() {
  k=$1 l=$2; shift 2
  line=$("$B" --url "$URL" --timeout "$TIMEOUT" --label "$(echo "$l" | tr ' ' '_')" "$@")
  st=$?
  echo "$line"
  [ $st = 0 ] || { echo "bench_serve: $l: errors (above)"; rc=1; }
  put "${k}_tps" "$(kv out_tok_s "$line")"
  put "${k}_ttft50" "$(kv ttft_p50_ms "$line")"
  put "${k}_ttft99" "$(kv ttft_p99_ms "$line")"
  put "${k}_itl50" "$(kv itl_p50_ms "$line")"
  put "${k}_itl99" "$(kv itl_p99_ms "$line")"
}
# rec CASE STREAMS RATE HF LIMIT: a bench/results/serve.tsv row from $line
rec() {
  bench_record serve "$1" "$2" "$3" "$(kv out_tok_s "$line")" "$(kv req_s "$line")" "$(kv ttft_p50_ms "$line")" \
    "$(kv ttft_p99_ms "$line")" "$(kv itl_p50_ms "$line")" "$(kv itl_p99_ms "$line")" "$(kv lat_p50_ms "$line")" \
    "$(kv lat_p99_ms "$line")" "$(kv lat_max_ms "$line")" "$(kv errors "$line")" "$4" "$5" >/dev/null
}
CTX=$(awk -v p="$PROMPT" -v n="$NEW" 'BEGIN { print p + n / 2 }')
COMMON="--prompt $PROMPT --new $NEW"

if has closed; then
  echo "== closed loop, bf16, prompt $PROMPT, $NEW new tokens, $ROUNDS requests per stream"
  for c in $STREAMS; do
    deploy "c$c" m.thaw "$c" || { rc=1; continue; }
    n=$((c * ROUNDS)); [ "$n" -lt 4 ] && n=4   # the batch-1 rate from 4 requests at least
    serve "c$c" "closed $c" --model "c$c" --closed "$c" --requests "$n" --duration "$DUR" $COMMON
    lim=$(limit "$c" "$CTX" 0); put "lim$c" "$lim"
    rec "closed bf16" "$c" - "$(get "hf$c")" "$lim"
    unload "c$c"
  done
fi
if has open; then
  cmax=$(echo $STREAMS | tr ' ' '\n' | sort -n | tail -1)
  echo "== open loop (Poisson arrivals), bf16, concurrency $cmax"
  if deploy open m.thaw "$cmax"; then
    for r in $RATES; do
      serve "open$r" "open $r/s" --model open --rate "$r" --duration "$OPEN_DUR" $COMMON
      rec "open bf16" - "$r" - -
    done
    unload open
  else rc=1; fi
fi
if has int8; then
  echo "== int8 weights (per-row scales), $LOAD streams"
  if deploy q8 m8.thaw "$LOAD"; then
    serve "q$LOAD" "closed int8 $LOAD" --model q8 --closed "$LOAD" --requests $((LOAD * ROUNDS)) --duration "$DUR" $COMMON
    lim=$(limit "$LOAD" "$CTX" 1); put "limq" "$lim"
    rec "closed int8" "$LOAD" - - "$lim"
    unload q8
  else rc=1; fi
fi
if has prefix; then
  echo "== $LOAD requests at once sharing a $PREFIX-token prefix (+ $PROMPT own tokens): prefix_caching true vs false"
  PCTX=$(awk -v p="$PROMPT" -v x="$PREFIX" -v n="$NEW" 'BEGIN { print x + p + n / 2 }')
  for pc in false true; do
    if ! deploy "pfx-$pc" m.thaw "$LOAD" "\"prefix_caching\":$pc" "--prefix $PREFIX"; then
      if grep -q prefix_caching "$work/put.out" 2>/dev/null; then
        echo "bench_serve: this server's manifest has no prefix_caching field: prefix case skipped"
      else rc=1; fi
      break
    fi
    serve "pfx$pc" "prefix $pc" --model "pfx-$pc" --closed "$LOAD" --requests "$LOAD" --prefix "$PREFIX" $COMMON
    rec "prefix_caching $pc" "$LOAD" - - "$(limit "$LOAD" "$PCTX" 0)"
    unload "pfx-$pc"
  done
fi
if has probe; then
  echo "== tiny mlp on $DEV at $PROBE_RATE calls/s: alone, then during a $LOAD-stream load"
  code=$(curl -s -o "$work/put.out" -w '%{http_code}' -X PUT "$URL/v1/functions/tiny" \
    -d "{\"kind\":\"mlp\",\"snapshot\":\"mlp.thaw\",\"device\":\"$DEV\",\"concurrency\":8,\"max_batch\":8,\"max_queue\":1024,\"timeout_s\":600,\"idle_timeout_s\":600}")
  body="@$SRC/deploy/demo/digits-input.json"
  if [ "$code" = 201 ] && "$B" --url "$URL" --invoke tiny --body "$body" --closed 1 --requests 5 >/dev/null &&
     deploy load m.thaw "$LOAD"; then
    line=$("$B" --url "$URL" --invoke tiny --body "$body" --rate "$PROBE_RATE" --uniform --duration "$PROBE_DUR" --label mlp_alone)
    echo "$line"; put probe_alone "$(kv lat_p99_ms "$line")"
    rec "mlp probe alone" - "$PROBE_RATE" - -
    "$B" --url "$URL" --timeout "$TIMEOUT" --model load --closed "$LOAD" --requests 0 --duration "$((PROBE_DUR + 2))" \
      $COMMON --label load > "$work/load.out" &
    lpid=$!
    sleep 1
    line=$("$B" --url "$URL" --invoke tiny --body "$body" --rate "$PROBE_RATE" --uniform --duration "$PROBE_DUR" --label mlp_under_load)
    echo "$line"; put probe_load "$(kv lat_p99_ms "$line")"
    rec "mlp probe, $LOAD-stream load" "$LOAD" "$PROBE_RATE" - -
    wait "$lpid"; lpid=
    cat "$work/load.out"
    unload load
  else
    echo "bench_serve: mlp probe setup failed ($code $(cat "$work/put.out"))"; rc=1
  fi
fi

# ---- summary ----
echo
echo "serving on $(bench_machine) ($DEV), prompt $PROMPT, $NEW new tokens; copy bandwidth ${BW:--} GB/s"
b1=$(get c1_tps)
printf '%-24s %10s %9s %10s %8s %10s %8s %10s\n' "" "tok/s" "vs 1x" "HF static" "thaw/HF" "limit" "/limit" "TTFT p50"
if has closed; then
  for c in $STREAMS; do
    t=$(get "c${c}_tps"); hf=$(get "hf$c"); lim=$(get "lim$c")
    printf '%-24s %10s %9s %10s %8s %10s %8s %10s\n' "closed, $c streams" "$t" "$(ratio "$t" "$b1")" "$hf" \
      "$(ratio "$t" "$hf")" "$lim" "$(ratio "$t" "$lim")" "$(get "c${c}_ttft50") ms"
  done
fi
if has open; then
  for r in $RATES; do
    printf '%-24s %10s   TTFT p50/p99 %s / %s ms, inter-token p50/p99 %s / %s ms\n' "open loop, $r/s" "$(get "open${r}_tps")" \
      "$(get "open${r}_ttft50")" "$(get "open${r}_ttft99")" "$(get "open${r}_itl50")" "$(get "open${r}_itl99")"
  done
fi
if has int8; then
  t=$(get "q${LOAD}_tps")
  printf '%-24s %10s %9s %10s %8s %10s %8s %10s\n' "int8, $LOAD streams" "$t" "$(ratio "$t" "$b1")" - - "$(get limq)" \
    "$(ratio "$t" "$(get limq)")" "$(get "q${LOAD}_ttft50") ms"
  echo "int8 / bf16 at $LOAD streams: $(ratio "$t" "$(get "c${LOAD}_tps")")"
fi
if has prefix && [ "$(get pfxtrue_ttft50)" != - ]; then
  echo "prefix caching, TTFT p50: off $(get pfxfalse_ttft50) ms, on $(get pfxtrue_ttft50) ms: off / on $(ratio "$(get pfxfalse_ttft50)" "$(get pfxtrue_ttft50)")"
fi
has probe && echo "tiny mlp p99: alone $(get probe_alone) ms, under the $LOAD-stream load $(get probe_load) ms"
met() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-") print "not measured"; else print (a + 0 >= b + 0) ? "met" : "NOT met" }'; }
if [ "${GPU:-0}" = 1 ]; then
  echo "target: 64 streams >= 20000 tok/s: $(met "$(get c64_tps)" 20000) ($(get c64_tps)); >= 1.9x HF static: $(met "$(ratio "$(get c64_tps)" "$(get hf64)")" 1.9)"
  echo "target: 256 streams >= 40000 tok/s: $(met "$(get c256_tps)" 40000) ($(get c256_tps))"
  echo "target: batch-1 >= 795 tok/s (95% of 837): $(met "$(get c1_tps)" 795) ($(get c1_tps); HTTP and prefill included)"
  le() { awk -v a="$1" -v b="$2" 'BEGIN { print (a == "-" || b == "-") ? "not measured" : (a + 0 <= b + 0 ? "met" : "NOT met") }'; }
  echo "target: 64 streams at once, TTFT p50 <= 100 ms: $(le "$(get c64_ttft50)" 100), p99 <= 300 ms: $(le "$(get c64_ttft99)" 300)"
  rmax=$(echo $RATES | tr ' ' '\n' | sort -g | tail -1)
  echo "target: inter-token p99 <= 2x p50 at $rmax arrivals/s: $(le "$(get "open${rmax}_itl99")" "$(awk -v a="$(get "open${rmax}_itl50")" 'BEGIN { print a == "-" ? "-" : 2 * a }')")"
  echo "target: int8 >= 1.3x bf16 at 64 streams: $(met "$(ratio "$(get q64_tps)" "$(get c64_tps)")" 1.3)"
  echo "target: TTFT p50 off/on prefix caching >= 3: $(met "$(ratio "$(get pfxfalse_ttft50)" "$(get pfxtrue_ttft50)")" 3)"
  echo "target: tiny mlp p99 under load <= 20 ms: $(le "$(get probe_load)" 20)"
else
  r=$(ratio "$(get "c${LOAD}_tps")" "$b1")
  echo "target (CPU): $LOAD streams >= 3x one stream: $(met "$r" 3)$([ "$r" != - ] && echo " (${r}x)")"
fi
exit $rc

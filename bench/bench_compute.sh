#!/bin/sh
# bench_compute.sh — issue 4's compute benchmarks (docs/benchmarks.md, "Compute").
# CPU part (always): tokens/s of the llama kind on a small random config, BF16 and int8.
# GPU part (GPU=1, on the H100 machine): the ~1.1B llama config in BF16 (hidden 2048, 22 layers,
# 32 heads, 4 KV heads, intermediate 5632, vocab 32000, random weights from
# bench/hf_llama.py, saved so both run the very same weights), prompt 128, 256 new tokens:
#   HF transformers generate() at batch 1 and 8 (the baseline, same run), thaw decode tokens/s
#   with and without the CUDA graph and the device-fed decode, vs the memory roofline, int8 weight-only vs BF16 (speed
#   and teacher-forced greedy top-1 agreement), prefill GEMMs vs cuBLAS alone; int8 top-1
#   agreement on held-out text of a small trained model (bench/train_tiny_llama.py).
BUILD=${BUILD:-build}
B="$BUILD/bench/bench_llama"
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
. bench/record.sh
HF1=-
# run CMD...: runs it with its output shown and kept in $LOG; exit 1 when it fails
run() { "$@" > "$LOG" 2>&1; rc=$?; grep -v -i warn "$LOG"; [ $rc = 0 ] || exit 1; }
# record_decode SUFFIX: one bench/results/decode.tsv row per thaw_llama line of $LOG (the
# variant name + SUFFIX, decode tokens/s, HF batch-1 tokens/s of this run, the roofline on GPUs)
record_decode() {
  sed -n 's/^thaw_llama device=\([^ ]*\) variant=\([^ ]*\) .* decode_tok_s=\([0-9.]*\) .* roofline_3.35TBs_tok_s=\([0-9.]*\).*/\1 \2 \3 \4/p' "$LOG" |
  while read -r dev v tps roof; do
    [ "$dev" = cpu ] && roof=-
    bench_record decode "$v$1" "$tps" "$HF1" "$roof"
  done
}
[ -x "$B" ] || { echo "bench_compute: $B not built (make bench / make CUDA=1 bench)"; exit 1; }
echo "== CPU: llama kind, random config hidden 512, 8 layers, 8 heads, 4 KV heads, inter 1408, vocab 32000"
run "$B" --random 512,8,8,4,1408,32000 --device cpu --prompt 64 --new 64 --reps 3 \
  --variants bf16,int8
record_decode " (CPU, hidden 512, 8 layers)"
if [ "${GPU:-0}" != 1 ]; then
  echo "bench_compute: GPU part skipped (GPU=1 runs it on a CUDA machine)"
  exit 0
fi
M=${THAW_BENCH_MODEL_DIR:-/tmp/thaw-bench-llama1b}
echo "== HF transformers baseline (same weights, saved to $M)"
run python3 bench/hf_llama.py --save "$M" --batches 1,8 --reps ${HF_REPS:-2}
HF1=$(sed -n 's/^hf_generate batch=1 tok_per_s=\([0-9.]*\).*/\1/p' "$LOG" | tail -1)
echo "== thaw llama kind, cuda:0"
run "$B" --model "$M" --device cuda:0 --prompt-file "$M/prompt.json" --new 256 --reps 5 \
  --hf-greedy "$M/hf_greedy.json" --variants bf16,nograph,int8,int8:32 --gemm --bw --profile
record_decode ""
echo "== the same without programmatic dependent launch (kern_tuning.pdl = 0)"
run "$B" --model "$M" --device cuda:0 --prompt-file "$M/prompt.json" --new 256 --reps 5 \
  --variants bf16-nopdl
record_decode " (no PDL)"
echo "== the same with RoPE/KV append and attention as two launches (A/B of kc_rope_attention.cu)"
run "$B" --model "$M" --device cuda:0 --prompt-file "$M/prompt.json" --new 256 --reps 5 \
  --variants bf16,bf16-nofuse,int8,int8-nofuse
record_decode " (fused attention A/B)"
echo "== A/B: each greedy token through the host (-nofeed)"
run "$B" --model "$M" --device cuda:0 --prompt-file "$M/prompt.json" --new 256 --reps 5 \
  --variants bf16,bf16-nofeed,int8,int8-nofeed,bf16,int8
record_decode " (fed decode A/B)"
T=${THAW_BENCH_TINY_DIR:-/tmp/thaw-bench-tiny-llama}
echo "== int8 agreement on a trained model: byte-level LLaMA trained on the Python stdlib ($T)"
run python3 bench/train_tiny_llama.py "$T" --seconds ${TINY_SECONDS:-75}
run "$B" --model "$T" --device cuda:0 --text-file "$T/heldout.json" --prompt 128 --new 256 \
  --reps 1 --variants bf16,int8,int8:32

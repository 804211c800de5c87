#!/bin/sh
# Runs every benchmark script bench/bench_*.sh in order (BENCH_ONLY=substr picks some).
# Each prints its figures as ratios against a baseline measured in the same run.
# GPU=1 (make bench-gpu) lets the GPU parts run; without it they report themselves skipped.
BUILD=${BUILD:-build}
export BUILD THAW_BIN="$PWD/$BUILD/thaw" THAW_SRC="$PWD"
rc=0
for b in bench/bench_*.sh; do
  case "$b" in *"${BENCH_ONLY:-}"*) ;; *) continue ;; esac
  echo "### $b"
  sh "$b" || rc=1
done
exit $rc

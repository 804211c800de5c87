#!/bin/sh
# Runs every test binary under $BUILD/tests (unit, end-to-end, fuzz-corpus replays) and closes
# with the totals line "N passed, N failed, N skipped". Exit status is non-zero on any failure.
# THAW_TEST_FILTER=substr runs only binaries whose path contains substr.
BUILD=${BUILD:-build}
export THAW_BIN="$PWD/$BUILD/thaw"
export THAW_TEST_BIN="$PWD/$BUILD/thaw-test"   # with test hooks (tests/faults)
export THAW_SRC="$PWD"
pass=0; fail=0; skip=0; broken=""
for t in $(find "$BUILD/tests" -type f -perm -u+x | sort); do
  case "$t" in *"${THAW_TEST_FILTER:-}"*) ;; *) continue ;; esac
  echo "== $t"
  out=$("$t" 2>&1); rc=$?
  printf '%s\n' "$out"
  line=$(printf '%s\n' "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -n 1)
  if [ -z "$line" ]; then
    fail=$((fail + 1)); broken="$broken $t(rc=$rc,no-summary)"; continue
  fi
  p=$(echo "$line" | sed -E 's/^([0-9]+) passed.*/\1/')
  f=$(echo "$line" | sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/')
  s=$(echo "$line" | sed -nE 's/.*, ([0-9]+) skipped.*/\1/p')
  pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + ${s:-0}))
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    fail=$((fail + 1)); broken="$broken $t(rc=$rc)"
  fi
done
[ -n "$broken" ] && echo "broken:$broken"
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]

#!/bin/sh
# Several GPUs (issue 9): concurrent restores onto different GPUs vs one alone, placement of two
# functions cold-started at once, a job on one GPU while the other serves, per-device metrics.
# Needs GPU=1 and at least two GPUs; see bench/multigpu.py. Env: MG_LAYERS (22), REPEAT (3).
set -u
BUILD=${BUILD:-build}
if [ "${GPU:-0}" != 1 ]; then
  echo "multigpu: skipped (GPU=1 not set: make bench-gpu on a node with 2+ GPUs)"
  exit 0
fi
exec python3 bench/multigpu.py --build "$BUILD" --layers "${MG_LAYERS:-22}" --repeat "${REPEAT:-3}"

#!/bin/sh
# Cold start (issue 5): first token after scale-to-zero from disk and from the host tier vs a
# bare restore of the same snapshot, pooled lane vs fresh context, and (GPU=1) a Python process
# that imports torch and loads the same weights. See bench/coldstart.py.
# Env: COLD_LAYERS (default 2 on CPU, 22 = 1.1 B parameters on a GPU), REPEAT (3).
set -u
BUILD=${BUILD:-build}
if [ "${GPU:-0}" = 1 ]; then
  exec python3 bench/coldstart.py --build "$BUILD" --device cuda:0 --layers "${COLD_LAYERS:-22}" \
    --repeat "${REPEAT:-3}" --py-baseline
fi
exec python3 bench/coldstart.py --build "$BUILD" --device cpu --layers "${COLD_LAYERS:-1}" --repeat "${REPEAT:-3}"

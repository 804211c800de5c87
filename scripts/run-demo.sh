#!/bin/bash
# `make run`: starts `thaw serve` with the embedded defaults — data directory ./thaw-data under
# the repository, port $PORT or 8080 — and, at first start, packs and deploys the demo function
# `digits` (an mlp classifier trained on the UCI digits data set, tests/data/mlp_digits), which
# runs on the CPU when no GPU is present. Ctrl-C stops it (SIGINT: drains, exits 0).
# The demo has no API keys (--dev), so it listens on 127.0.0.1 only unless HOST says otherwise
# (HOST=0.0.0.0 make run: every address, i.e. anyone who can reach the machine).
set -eu
THAW=${1:-build/thaw}
DATA=${THAW_DATA:-"$(pwd)/thaw-data"}
PORT=${PORT:-8080}
HOST=${HOST:-127.0.0.1}
export THAW_URL="http://127.0.0.1:$PORT"
mkdir -p "$DATA/snapshots"
if [ ! -f "$DATA/snapshots/digits.thaw" ]; then
  "$THAW" snapshot pack tests/data/mlp_digits/model.safetensors -o "$DATA/snapshots/digits.thaw" --kind mlp
fi
# own session: a Ctrl-C reaches the server once, through the trap below
# dev mode: no API keys (docs/operations.md, "Security"); never expose this port
echo "thaw: DEV MODE (--dev): API keys are not checked; for local use only" >&2
case "$HOST" in
  127.*|localhost|::1) ;;
  *) echo "thaw: WARNING: HOST=$HOST: this keyless server is reachable from the network" >&2 ;;
esac
setsid "$THAW" serve --dev --host "$HOST" --port "$PORT" --data "$DATA" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null' INT TERM
for _ in $(seq 100); do
  curl -sf "$THAW_URL/readyz" >/dev/null 2>&1 && break
  kill -0 $pid 2>/dev/null || { wait $pid; exit $?; }
  sleep 0.1
done
if ! "$THAW" functions get digits >/dev/null 2>&1; then
  "$THAW" deploy digits --kind mlp --snapshot digits.thaw >/dev/null
  echo "thaw: deployed the demo function 'digits'" >&2
fi
cat >&2 <<MSG
thaw: serving on $HOST:$PORT (HOST=0.0.0.0 make run to listen on every address), data in $DATA. Try:
  curl -s -X POST localhost:$PORT/v1/functions/digits/invoke -d @deploy/demo/digits-input.json
  curl -s -X POST localhost:$PORT/v1/functions/echo/invoke -d '{"hello": "thaw"}'
  build/thaw status
MSG
wait $pid

#!/bin/bash
# `make run`: starts `thaw serve` with the embedded defaults — data directory ./thaw-data under
# the repository, port $PORT or 8080 — and, at first start, packs and deploys the demo function
# `digits` (an mlp classifier trained on the UCI digits data set, tests/data/mlp_digits), which
# runs on the CPU when no GPU is present, and puts the digits data set (tests/data/digits.csv.gz)
# in DATA/data/ for the fine-tune example of docs/api.md. Ctrl-C stops it (SIGINT: the server
# drains and exits 0, and so does this script).
# Settings: THAW_DATA (data directory), PORT, HOST; the CLI finds this server from the same
# PORT / HOST (or THAW_URL) in its environment.
# The demo has no API keys (--dev), so it listens on 127.0.0.1 only unless HOST says otherwise
# (HOST=0.0.0.0 make run: every address, i.e. anyone who can reach the machine).
set -eu
THAW=${1:-build/thaw}
DATA=${THAW_DATA:-"$(pwd)/thaw-data"}
PORT=${PORT:-8080}
HOST=${HOST:-127.0.0.1}
export THAW_URL="http://127.0.0.1:$PORT"
mkdir -p "$DATA/snapshots" "$DATA/data"
if [ ! -f "$DATA/data/digits.csv.gz" ]; then
  cp tests/data/digits.csv.gz "$DATA/data/digits.csv.gz"
fi
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
# Ctrl-C or SIGTERM: ask the server to drain (SIGTERM) and exit with its status
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
  curl -s -X POST localhost:$PORT/v1/jobs -d '{"type": "finetune", "function": "digits", "params": {"data": "digits.csv.gz", "feature_scale": 0.0625}}'
  build/thaw status        (PORT=$PORT build/thaw status from another shell when PORT is not 8080)
MSG
# a trapped signal interrupts `wait` (status 128+N); wait again for the server's own status
rc=0
wait $pid || rc=$?
while [ "$rc" -gt 128 ] && kill -0 $pid 2>/dev/null; do
  rc=0
  wait $pid || rc=$?
done
exit $rc

#!/bin/sh
# `make run`: starts `thaw serve` in the foreground with the embedded defaults: data directory
# ./thaw-data under the repository, port $PORT or 8080, the built-in functions ready.
# Stop it with Ctrl-C (SIGINT: drains in-flight requests, exits 0).
set -eu
THAW=${1:-build/thaw}
DATA=${THAW_DATA:-"$(pwd)/thaw-data"}
mkdir -p "$DATA"
echo "thaw: serving on port ${PORT:-8080}, data in $DATA; try:" >&2
echo "  curl -s -X POST localhost:${PORT:-8080}/v1/functions/echo/invoke -d '{\"hello\":\"thaw\"}'" >&2
exec "$THAW" serve --data "$DATA"

#!/bin/sh
# Installs the npm packages the tests use as independent references (tests/js/package.json,
# pinned by tests/js/package-lock.json) into build/node/node_modules with `npm ci`, once: a
# second run with the same lock file does nothing. Tests that need them skip with a message
# when node, npm or the registry is not there.
set -eu
dir=build/node   # one copy for every build variant (build, build-asan, ...)
if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
  echo "install-npm-test-deps: node/npm not found: reference tests will skip" >&2
  exit 0
fi
if [ -f "$dir/package-lock.json" ] && cmp -s tests/js/package-lock.json "$dir/package-lock.json" &&
   [ -d "$dir/node_modules" ]; then
  exit 0
fi
mkdir -p "$dir"
cp tests/js/package.json tests/js/package-lock.json "$dir/"
if ! (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2); then
  echo "install-npm-test-deps: npm ci failed: reference tests will skip" >&2
  rm -f "$dir/package-lock.json"
fi
exit 0

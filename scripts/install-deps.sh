#!/bin/sh
# Installs the Debian packages thaw needs to build, test and benchmark, with apt-get, when missing.
# Quiet and fast when everything is present (one dpkg-query). Needs root (or sudo) to install.
set -eu
PKGS="build-essential libuv1-dev node-llhttp libzstd-dev zstd liburing-dev libxxhash-dev \
libsqlite3-dev postgresql libpq-dev libjansson-dev libsodium-dev zlib1g-dev libopenblas-dev curl wrk nginx-light prometheus fio clang \
libclang-rt-14-dev python3 python3-yaml python3-jinja2 gnuplot-nox haproxy"
# kubectl (tests/deploy renders and parses the manifests offline): Debian's kubernetes-client,
# unless a kubectl from another package is already installed (the two hold the same file)
command -v kubectl >/dev/null 2>&1 || PKGS="$PKGS kubernetes-client"
# node + npm: the chat template test renders with @huggingface/jinja as its reference
# (scripts/install-npm-test-deps.sh); Debian's npm, unless a nodejs that ships npm is installed
command -v node >/dev/null 2>&1 || PKGS="$PKGS nodejs"
command -v npm >/dev/null 2>&1 || PKGS="$PKGS npm"
missing=""
for p in $PKGS; do
  st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [ "$st" = "installed" ] || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "install-deps: installing:$missing" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >&2

#!/usr/bin/env bash
# Configures and builds eplb.
# Usage: scripts/build.sh [BUILD_DIR] [extra cmake args...]
#   default BUILD_DIR: build;  programs land in BUILD_DIR/bin.
#   scripts/build.sh build-asan -DEPLB_SANITIZE=ON   (ASan + UBSan)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-build}
shift || true
case "$dir" in /*) ;; *) dir="$root/$dir" ;; esac
cmake -S "$root" -B "$dir" -DCMAKE_BUILD_TYPE="${EPLB_BUILD_TYPE:-Release}" -DEPLB_WERROR=ON "$@" >/dev/null
cmake --build "$dir" -j "$(nproc)"

#!/usr/bin/env bash
# Runs bench_migrate at 8 ranks (DeepSeek-like row sets, 1-16 MiB per
# expert) and dd with fsync to the same disk, for the HDF5 write figure.
# Usage: bench/run_migrate.sh [BUILD_DIR] [ROW_MIB] [LAYERS] [SLOTS] [BUFFER_MB]
#   defaults: build, 4 MiB rows, 2 layers, 4 slots per rank, 256 MiB
# Disk use: 2 x 8 x LAYERS x SLOTS x ROW_MIB (512 MiB with the defaults),
# removed at the end.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
row=${2:-4} layers=${3:-2} slots=${4:-4} buf=${5:-256}
. "$root/scripts/env.sh"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/eplb_bench_migrate.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
timeout 600 mpirun -n 8 "$build/bench/bench_migrate" "$tmp" "$row" "$layers" "$slots" "$buf"
mb=$((row * layers * slots))
out=$(dd if=/dev/zero of="$tmp/dd.bin" bs=1M count="$mb" conv=fsync 2>&1 | tail -1)
printf '%-44s %s\n' "dd bs=1M count=$mb conv=fsync (same disk)" "${out##*, }"

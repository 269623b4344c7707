#!/usr/bin/env bash
# Runs bench_migrate at 8 ranks (DeepSeek-like row sets, 1-16 MiB per
# expert) in a fresh directory, then dd with fsync of one shard's bytes to
# the same disk (the external reference for the in-process POSIX write).
# Usage: bench/run_migrate.sh [BUILD_DIR] [ROW_MIB] [LAYERS] [SLOTS] [BUFFER_MB] [REPS] [NP]
#   defaults: build, 4 MiB rows, 8 layers, 4 slots per rank, 256 MiB, 5 runs, 8 ranks
# Disk use: about 3 x NP x LAYERS x SLOTS x ROW_MIB (3 GiB with the
# defaults), removed at the end.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
row=${2:-4} layers=${3:-8} slots=${4:-4} buf=${5:-256} reps=${6:-5} np=${7:-8}
. "$root/scripts/env.sh"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/eplb_bench_migrate.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
timeout 900 mpirun -n "$np" "$build/bench/bench_migrate" "$tmp" "$row" "$layers" "$slots" "$buf" "$reps"
mb=$((row * layers * slots))
for ((i = 1; i <= reps; i++)); do
  rm -f "$tmp/dd.bin"
  sync # as bench_migrate does before each write sample
  out=$(dd if=/dev/zero of="$tmp/dd.bin" bs=1M count="$mb" conv=fsync 2>&1 | tail -1)
  printf '# dd bs=1M count=%d conv=fsync (same disk, alone), run %d: %s\n' "$mb" "$i" "${out##*, }"
done

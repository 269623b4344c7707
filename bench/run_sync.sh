#!/usr/bin/env bash
# Runs bench_sync at 8 and 64 ranks on DeepSeek-V3-shaped synthetic
# statistics (58 MoE layers x 256 experts per rank, 288 slots on 36 GPUs).
# Usage: bench/run_sync.sh [BUILD_DIR]   (default build)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
. "$root/scripts/env.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for np in 8 64; do
  "$build/bin/eplb-synth-stats" --out "$tmp/rank_%r.json" --ranks "$np" \
    --layers 58 --experts 256 --tokens 200000 --skew 0.9 --seed 3 >/dev/null
  timeout 300 mpirun -n "$np" "$build/bench/bench_sync" --stats "$tmp/rank_%r.json" \
    --num-slots 288 --num-gpus 36 --reps 20
done

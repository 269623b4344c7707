#!/usr/bin/env bash
# The main job on sample data: installs what is missing, builds, generates
# per-rank statistics for a DeepSeek-V3-like model (58 MoE layers x 256
# experts) as RANKS ranks would have recorded them, then rebalances them into
# about 288 slots (36 per rank at 8 ranks) with eplb-sync under mpirun, which
# also moves the expert weights of per-rank HDF5 shards to the new placement.
# Usage: scripts/demo.sh [RANKS]   (RANKS 1..64, default 8)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
ranks=${1:-8}
case "$ranks" in ''|*[!0-9]*) echo "demo: RANKS must be 1..64" >&2; exit 2;; esac
if [ "$ranks" -lt 1 ] || [ "$ranks" -gt 64 ]; then echo "demo: RANKS must be 1..64" >&2; exit 2; fi
"$root/scripts/setup.sh"
. "$root/scripts/env.sh"
"$root/scripts/build.sh" build
bin="$root/build/bin"
out="$root/out/demo"
mkdir -p "$out/stats"
"$bin/eplb-synth-stats" --out "$out/stats/rank_%r.json" --ranks "$ranks" \
  --layers 58 --experts 256 --tokens 200000 --skew 0.9 --seed 7
# About 288 slots (DeepSeek-V3's 256 experts + 32 redundant), the same number
# on every rank; one rank holds each expert once.
if [ "$ranks" -eq 1 ]; then slots=256; else slots=$(( (288 + ranks - 1) / ranks * ranks )); fi
echo "demo: $ranks ranks, 58 layers x 256 experts -> $slots slots"
# Expert weights: one HDF5 shard per rank holding its slots (the contiguous
# placement a model starts with), small rows so the demo stays quick.
rm -rf "$out/shards"
"$bin/eplb-shard" create --dir "$out/shards" --ranks "$ranks" --layers 58 --experts 256 \
  --slots-per-rank $((slots / ranks)) --dataset w_up:float16:16x64 --dataset scale:float32:16
timeout 300 mpirun -n "$ranks" "$bin/eplb-sync" --stats "$out/stats/rank_%r.json" \
  --shards "$out/shards" --output "$out/expert_map.json" --summary "$out/summary.json"
# Every byte of every slot is now the expert the map puts there.
"$bin/eplb-shard" verify --dir "$out/shards" --expect-map "$out/expert_map.json"
echo "demo: expert map in $out/expert_map.json, summary in $out/summary.json, shards in $out/shards"

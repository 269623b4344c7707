#!/usr/bin/env bash
# The plan time a user sees: runs eplb-plan N times (fresh processes, cold
# caches, the planning threads started while the statistics load) on one
# statistics file at 288 slots / 36 GPUs and prints the minimum, first
# quartile and median of its printed "plan time" and "whole run", for each
# --threads value given.  Figures only; nothing is asserted.
# Usage: bench/run_plan_cli.sh [BUILD_DIR [STATS [N [THREADS...]]]]
#   defaults: build, ../shared/data/sglang_dsv3/decode_in1000out1000.json,
#   25 runs, threads 0 and 1.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
stats=${2:-$root/../shared/data/sglang_dsv3/decode_in1000out1000.json}
n=${3:-25}
shift $(( $# < 3 ? $# : 3 ))
threads=("$@")
[ ${#threads[@]} -gt 0 ] || threads=(0 1)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Interleaved, so that the machine's drift falls on every thread count alike.
for i in $(seq "$n"); do
  for t in "${threads[@]}"; do
    "$build/bin/eplb-plan" --stats "$stats" --num-slots 288 --num-gpus 36 \
      --threads "$t" --output "$tmp/map.json" |
      sed -n 's/^plan time *\([0-9.]*\) ms (whole run \([0-9.]*\) ms)/\1 \2/p' >> "$tmp/t$t"
  done
done
echo "# eplb-plan $(basename "$stats") 288/36, $n runs: plan time and whole run (ms)"
printf "%-8s %8s %8s %8s   %8s %8s\n" threads min q1 median "run min" "run med"
for t in "${threads[@]}"; do
  p=$(cut -d' ' -f1 "$tmp/t$t" | sort -n | awk '{v[NR]=$1} END {printf "%8.3f %8.3f %8.3f", v[1], v[int(NR/4)+1], v[int((NR+1)/2)]}')
  w=$(cut -d' ' -f2 "$tmp/t$t" | sort -n | awk '{v[NR]=$1} END {printf "%8.1f %8.1f", v[1], v[int((NR+1)/2)]}')
  printf "%-8s %s   %s\n" "$t" "$p" "$w"
done

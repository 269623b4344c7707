#!/usr/bin/env bash
# Prints one digest per planned map, to show that a change leaves the maps
# byte-identical: run it before and after, then diff the two outputs.
# Cases: every statistics file x shapes (288/36, 256/32, 320/64, 272/8) x
# policy (balanced, deepseek), hierarchical plans with and without --spill,
# and re-plans from a current map (the deepseek map of the same file at the
# same shape) with and without --max-moves.  Generated statistics
# (eplb-synth-stats, fixed seeds) are always added, so the script runs
# without ../shared too.
# Usage: bench/run_map_digest.sh [BUILD_DIR] [STATS...]
#   default: build, ../shared/data/sglang_dsv3/*.json when present
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build}
case "$build" in /*) ;; *) build="$root/$build" ;; esac
shift || true
bin="$build/bin"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
files=("$@")
if [ ${#files[@]} -eq 0 ]; then
  for f in "$root"/../shared/data/sglang_dsv3/*.json; do
    [ -e "$f" ] && files+=("$f")
  done
fi
for seed in 1 2; do
  "$bin/eplb-synth-stats" --out "$tmp/synth$seed.json" --layers 12 --experts 256 \
    --tokens 100000 --skew 1.$seed --seed "$seed"
  files+=("$tmp/synth$seed.json")
done
plan() { # name args...
  local name=$1; shift
  if "$bin/eplb-plan" --quiet --threads 1 --allow-duplicates --output "$tmp/map.json" "$@" 2>"$tmp/err"; then
    printf '%s %s\n' "$(sha256sum <"$tmp/map.json" | cut -c1-16)" "$name"
  else
    printf 'error %s: %s\n' "$name" "$(head -c 200 "$tmp/err")"
  fi
}
for f in "${files[@]}"; do
  b=$(basename "$f" .json)
  for shape in 288/36 256/32 320/64 272/8; do
    S=${shape%/*} G=${shape#*/}
    for pol in balanced deepseek; do
      plan "$b $shape $pol" --stats "$f" --num-slots "$S" --num-gpus "$G" --policy "$pol"
    done
    "$bin/eplb-plan" --quiet --threads 1 --stats "$f" --num-slots "$S" --num-gpus "$G" \
      --policy deepseek --allow-duplicates --output "$tmp/cur.json" 2>/dev/null || continue
    plan "$b $shape current" --stats "$f" --num-slots "$S" --num-gpus "$G" \
      --current-map "$tmp/cur.json" --keep-threshold 0
    plan "$b $shape current max-moves 4" --stats "$f" --num-slots "$S" \
      --num-gpus "$G" --current-map "$tmp/cur.json" --keep-threshold 0 --max-moves 4
  done
  for pol in balanced deepseek; do
    plan "$b 288/36 hier $pol" --stats "$f" --num-slots 288 --num-gpus 36 \
      --num-nodes 4 --num-groups 8 --policy "$pol"
  done
  plan "$b 288/36 hier spill" --stats "$f" --num-slots 288 --num-gpus 36 \
    --num-nodes 4 --num-groups 8 --spill
done

#!/usr/bin/env bash
# Compares two builds' re-plans (eplb-plan --current-map) layer by layer on
# the objective eplb_plan_from minimises: max GPU load + move_cost x mean x
# moves, in units of the mean (bench/replan_objective.c).  Cases: every
# statistics file x shapes (288/36, 256/32, 320/64, 272/8) x current map
# (DeepSeek's map of the same file with --keep-threshold 0, as
# run_map_digest.sh; balanced's and DeepSeek's maps of the previous file,
# the files taken in a ring, the generated ones in their own) x no budget and --max-moves 4.  Generated
# statistics (eplb-synth-stats, run_map_digest.sh's seeds) are always added.
# Prints per case the summed objective and moves of each build, how many
# layers got worse or better and the worst layer; then the totals.
# Usage: bench/run_replan_compare.sh OLD_BUILD NEW_BUILD [STATS...]
#   default STATS: ../shared/data/sglang_dsv3/*.json when present
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
abs() { case "$1" in /*) echo "$1" ;; *) echo "$root/$1" ;; esac; }
old=$(abs "${1:?usage: run_replan_compare.sh OLD_BUILD NEW_BUILD [STATS...]}")
new=$(abs "${2:?usage: run_replan_compare.sh OLD_BUILD NEW_BUILD [STATS...]}")
shift 2
obj="$new/bench/replan_objective"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
files=("$@")
if [ ${#files[@]} -eq 0 ]; then
  for f in "$root"/../shared/data/sglang_dsv3/*.json; do
    [ -e "$f" ] && files+=("$f")
  done
fi
nreal=${#files[@]}
for seed in 1 2; do
  "$new/bin/eplb-synth-stats" --out "$tmp/synth$seed.json" --layers 12 \
    --experts 256 --tokens 100000 --skew 1.$seed --seed "$seed"
  files+=("$tmp/synth$seed.json")
done
changed=0 cases=0
: >"$tmp/all"
for i in "${!files[@]}"; do
  # the previous file of its own ring (real, generated: same layers)
  if [ "$i" -lt "$nreal" ]; then
    p=$(((i + nreal - 1) % nreal))
  else
    p=$((nreal + (i - nreal + 1) % 2))
  fi
  f=${files[$i]} prev=${files[$p]}
  b=$(basename "$f" .json) pb=$(basename "$prev" .json)
  for shape in 288/36 256/32 320/64 272/8; do
    S=${shape%/*} G=${shape#*/}
    common=(--quiet --threads 1 --num-slots "$S" --num-gpus "$G" --allow-duplicates)
    "$new/bin/eplb-plan" "${common[@]}" --stats "$f" --policy deepseek \
      --output "$tmp/cur_same.json" 2>/dev/null || continue
    "$new/bin/eplb-plan" "${common[@]}" --stats "$prev" --policy deepseek \
      --output "$tmp/cur_prevds.json" 2>/dev/null || continue
    "$new/bin/eplb-plan" "${common[@]}" --stats "$prev" \
      --output "$tmp/cur_prevbal.json" 2>/dev/null || continue
    for cur in same prevds prevbal; do
      extra=()
      [ "$cur" = same ] && extra=(--keep-threshold 0)
      for mm in -1 4; do
        name="$b $shape cur=$cur max-moves=$mm"
        [ "$cur" != same ] && name="$b $shape cur=$cur($pb) max-moves=$mm"
        for which in old new; do
          bin=$old
          [ $which = new ] && bin=$new
          "$bin/bin/eplb-plan" "${common[@]}" --stats "$f" \
            --current-map "$tmp/cur_$cur.json" --max-moves "$mm" "${extra[@]}" \
            --output "$tmp/$which.json"
          "$obj" "$f" "$tmp/cur_$cur.json" "$tmp/$which.json" "$G" >"$tmp/$which.obj"
        done
        cases=$((cases + 1))
        cmp -s "$tmp/old.json" "$tmp/new.json" || changed=$((changed + 1))
        paste -d' ' "$tmp/old.obj" "$tmp/new.obj" |
          awk -v name="$name" '{print name "|" $0}' >>"$tmp/all"
      done
    done
  done
done
# per line: name|layer imb_o mv_o obj_o layer imb_n mv_n obj_n
awk -F'|' '
  { split($2, v, " "); c = $1
    if (!(c in seen)) { seen[c] = 1; order[++nc] = c }
    oo[c] += v[4]; on[c] += v[8]; mo[c] += v[3]; mn[c] += v[7]
    d = v[8] - v[4]
    if (d > 1e-12) worse[c]++
    if (d < -1e-12) better[c]++
    if (!(c in wd) || d > wd[c]) { wd[c] = d; wl[c] = v[1] }
    layers++ }
  END {
    printf "%-58s %9s %9s %6s %6s %5s %6s %11s\n", "case", "obj_old", "obj_new",
      "mv_old", "mv_new", "worse", "better", "worst(d,l)"
    for (i = 1; i <= nc; i++) {
      c = order[i]
      printf "%-58s %9.4f %9.4f %6d %6d %5d %6d %+.2e,%s\n", c, oo[c], on[c],
        mo[c], mn[c], worse[c] + 0, better[c] + 0, wd[c], wl[c]
      to += oo[c]; tn += on[c]; tmo += mo[c]; tmn += mn[c]
      tw += worse[c]; tb += better[c]
      if (wd[c] > gw || i == 1) { gw = wd[c]; gc = c " layer " wl[c] }
    }
    printf "TOTAL %d layers: objective %.4f -> %.4f, moves %d -> %d, layers worse %d, better %d\n",
      layers, to, tn, tmo, tmn, tw, tb
    printf "worst layer: %+.3e (%s)\n", gw, gc
  }' "$tmp/all"
echo "maps changed: $changed of $cases cases"

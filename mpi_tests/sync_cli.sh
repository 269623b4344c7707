#!/usr/bin/env bash
# sync_cli.sh - eplb-sync as a user meets it, under mpiexec.
#
# usage: sync_cli.sh GROUP NP BIN_DIR TMP_DIR MPIEXEC [PREFLAGS...]
#   match     per-rank MindSpeed-RL and SGLang files: the map eplb-sync writes
#             equals eplb-plan's on the same files summed, byte for byte
#   diverge   EPLB_FAULT=corrupt-plan:1,3: every rank exits non-zero, the
#             message names exactly ranks 1 and 3, no map written
#   malformed a malformed file on one rank: every rank exits non-zero, the
#             message names that rank and file, no map written
#   shape     another shape on one rank: the same, with both shapes named
#   usage     option errors exit 2 on every rank, printed once
#   scenario  --scenario PATTERN[@W] (and --stats as one more): the map equals
#             eplb-plan's on the same files (globs, weights, dense layers,
#             --current-map), with --shards the weights move to it, the
#             summary lists every scenario; a bad
#             scenario file on one rank fails every rank naming it
#   mtp       --mtp-layers/--mtp-from: the map equals eplb-plan's (expert-map
#             JSON and TensorRT-LLM YAML, read back by Python), a current map
#             with the MTP layer re-plans, shards with the MTP layer migrate
#             to the map (verified), shards without it are refused on every
#             rank; a plan with a duplicate for the expert-map JSON fails
#             every rank before any weight moves, --allow-duplicates writes it
# Every rank's exit status is recorded (each rank runs through a small
# wrapper that writes it), so "every rank exits non-zero" is checked, not
# assumed from mpiexec's own status.
set -u
group=$1 np=$2 bin=$3 tmp=$4 mpiexec=$5
shift 5
preflags=("$@")
dir="$tmp/sync_cli_${group}_$np"
rm -rf "$dir" && mkdir -p "$dir/st" || exit 1
cd "$dir" || exit 1
fail=0
die() { echo "FAIL ($group, $np ranks): $*" >&2; fail=1; }

# Runs eplb-sync on NP ranks; each rank's exit code goes to rc.<rank>.
# Above 16 ranks eplb-sync is launched directly (mpiexec around a shell can
# hang at 32-64 ranks here) and only mpiexec's status is known.
run_sync() {
  rm -f rc.*
  if ((np > 16)); then
    timeout -k 5 120 "$mpiexec" -n "$np" "${preflags[@]}" "$bin/eplb-sync" "$@" \
      > out.txt 2> err.txt
  else
    # A guard against a hang, not a timing target: a loaded machine running
    # the ASan build has taken more than a minute to start four ranks.
    timeout -k 5 120 "$mpiexec" -n "$np" "${preflags[@]}" bash -c \
      '"$0" "$@"; echo $? > rc.${OMPI_COMM_WORLD_RANK:-${PMIX_RANK:-0}}' \
      "$bin/eplb-sync" "$@" > out.txt 2> err.txt
  fi
  echo $? > rc.mpiexec
}

# Every rank exited with $1 (above 16 ranks: mpiexec's status, which is 0
# only when every rank exited 0).
all_ranks_exit() {
  local want=$1 r
  if ((np > 16)); then
    [[ $(cat rc.mpiexec) == "$want" ]] || die "mpiexec exited $(cat rc.mpiexec), want $want"
    return
  fi
  for ((r = 0; r < np; r++)); do
    [[ -f rc.$r ]] || {
      die "rank $r left no exit code (killed? mpiexec exited $(cat rc.mpiexec); its stderr: $(tail -c 600 err.txt))"
      continue
    }
    [[ $(cat rc.$r) == "$want" ]] || die "rank $r exited $(cat rc.$r), want $want"
  done
}

gen() { "$bin/eplb-synth-stats" --out "st/rank_%r.$2" --ranks "$np" --layers 6 \
          --experts 64 --tokens 5000 --seed 7 --format "$1" >/dev/null || die "synth"; }

files() { local r; for ((r = 0; r < np; r++)); do echo "--stats st/rank_$r.$1"; done; }

case $group in
match)
  # Above 16 ranks one format is enough (each launch costs seconds, and
  # minutes under ASan); the others are covered at 1-8 ranks.
  fmts="mindspeed sglang"
  ((np > 16)) && fmts=mindspeed
  for fmt in $fmts; do
    ext=$([[ $fmt == sglang ]] && echo sg.json || echo json)
    gen "$fmt" "$ext"
    run_sync --stats "st/rank_%r.$ext" --num-slots 80 --num-gpus 8 \
             --output "map_$fmt.json" --summary "sum_$fmt.json" --generation 6
    all_ranks_exit 0
    grep -q "generation 7 agreed by $np ranks" out.txt || die "no summary line: $(cat out.txt)"
    # shellcheck disable=SC2046
    "$bin/eplb-plan" $(files "$ext") --num-slots 80 --num-gpus 8 \
        --output "plan_$fmt.json" --quiet || die "eplb-plan failed"
    cmp -s "map_$fmt.json" "plan_$fmt.json" || die "$fmt: eplb-sync map differs from eplb-plan's"
    grep -q '"generation":[[:space:]]*7' "sum_$fmt.json" || die "summary generation"
    grep -q "\"ranks\":[[:space:]]*$np" "sum_$fmt.json" || die "summary ranks"
  done
  ((np > 16)) && { ((fail == 0)) && echo "sync_cli $group at $np ranks: ok"; exit $fail; }
  # TensorRT-LLM YAML output, chosen from the extension.
  run_sync --stats "st/rank_%r.json" --num-slots 80 --num-gpus 8 --output map.yaml --quiet
  all_ranks_exit 0
  grep -q "num_slots: 80" map.yaml || die "YAML map: $(head -5 map.yaml)"
  [[ -s out.txt ]] && die "--quiet printed: $(cat out.txt)"
  ;;
diverge)
  gen mindspeed json
  ;;
esac

# The fault groups need the variable on every rank: pass it with -x.
case $group in
match) ;;
diverge)
  export EPLB_FAULT=corrupt-plan:1,3
  preflags+=(-x EPLB_FAULT)
  run_sync --stats "st/rank_%r.json" --num-slots 80 --num-gpus 8 --output map.json
  unset EPLB_FAULT
  all_ranks_exit 1
  grep -q "diverged on ranks 1, 3 (" err.txt || die "message: $(head -3 err.txt)"
  [[ -e map.json ]] && die "a map was written"
  ;;
malformed)
  gen mindspeed json
  bad=$((np - 1))
  printf '{"0": {"1": 5, "2": }}' > "st/rank_$bad.json"
  run_sync --stats "st/rank_%r.json" --num-slots 80 --num-gpus 8 --output map.json
  all_ranks_exit 1
  grep -q "rank $bad: st/rank_$bad.json" err.txt || die "message: $(head -3 err.txt)"
  [[ -e map.json ]] && die "a map was written"
  # A negative count is refused the same way, naming the key.
  printf '{"0": {"0": -5}}' > "st/rank_$bad.json"
  run_sync --stats "st/rank_%r.json" --num-slots 80 --num-gpus 8 --output map.json
  all_ranks_exit 1
  grep -q "rank $bad: st/rank_$bad.json" err.txt || die "negative: $(head -3 err.txt)"
  ;;
shape)
  gen mindspeed json
  bad=$((np - 1))
  "$bin/eplb-synth-stats" --out "st/rank_$bad.json" --layers 6 --experts 32 >/dev/null
  run_sync --stats "st/rank_%r.json" --num-slots 80 --num-gpus 8 --output map.json
  all_ranks_exit 1
  grep -q "rank $bad: st/rank_$bad.json has 6 layers x 32 experts but rank 0's st/rank_0.json has 6 x 64" err.txt \
    || die "message: $(head -3 err.txt)"
  [[ -e map.json ]] && die "a map was written"
  ;;
usage)
  gen mindspeed json
  run_sync --stats "st/rank_%r.json" --num-slots 0 --num-gpus 8
  all_ranks_exit 2
  [[ $(grep -c "num-slots" err.txt) == 1 ]] || die "usage error not printed once: $(cat err.txt)"
  run_sync --stats st/rank_0.json --num-slots 80 --num-gpus 8
  if ((np > 1)); then
    all_ranks_exit 2
    grep -q "has no %r" err.txt || die "pattern: $(cat err.txt)"
  else
    all_ranks_exit 0
  fi
  run_sync --stats "st/rank_%r.json" --num-slots 80 --num-gpus 8 --bogus
  all_ranks_exit 2
  grep -q "unknown option '--bogus'" err.txt || die "unknown: $(cat err.txt)"
  ;;
scenario)
  # Per rank, SGLang files written by Python's json: rows 0 and 1 are dense
  # layers (all zero, dropped), rows 2..7 MoE layers; each workload has its
  # own hot experts.  "mix" is two files per rank, one scenario (a glob).
  /usr/bin/python3 - "$np" <<'PY' || die "python"
import json, random, sys
n = int(sys.argv[1])
for r in range(n):
    for name, seed in (("pre", 1), ("dec", 2), ("mix_a", 3), ("mix_b", 4)):
        rnd = random.Random(seed * 1000 + r)
        hot = [rnd.sample(range(64), 4) for _ in range(6)]
        rows = [[0] * 64, [0] * 64]
        for l in range(6):
            rows.append([rnd.randint(10, 100) * (30 if e in hot[l] else 1)
                         for e in range(64)])
        path = ("st/mix_%d_%s.json" % (r, name[4:]) if name.startswith("mix")
                else "st/%s_%d.json" % (name, r))
        with open(path, "w") as f:
            json.dump({"logical_count": rows}, f)
PY
  shape=(--num-slots 80 --num-gpus 8)
  run_sync --stats "st/pre_%r.json" --scenario "st/dec_%r.json@2" \
           --scenario "st/mix_%r_*.json" "${shape[@]}" --output map.json --summary sum.json
  all_ranks_exit 0
  grep -q "scenarios 3, balanced at once" out.txt || die "no scenario lines: $(cat out.txt)"
  "$bin/eplb-plan" --stats "st/pre_*.json" --scenario "st/dec_*.json@2" \
      --scenario "st/mix_*_*.json" "${shape[@]}" --output plan.json --quiet || die "eplb-plan"
  cmp -s map.json plan.json || die "eplb-sync --scenario map differs from eplb-plan's"
  /usr/bin/python3 - sum.json <<'PY' || die "summary: $(cat sum.json)"
import json, sys
s = json.load(open(sys.argv[1]))
sc = s["scenarios"]
assert [x["name"] for x in sc] == ["st/pre_%r.json", "st/dec_%r.json",
                                   "st/mix_%r_*.json"], sc
assert [x["weight"] for x in sc] == [1, 2, 1], sc
for x in sc:
    assert x["imbalance_after"] < x["imbalance_before"], x
w = sum(x["weight"] for x in sc)
m = sum(x["weight"] * x["imbalance_after"] for x in sc) / w
assert abs(s["scenario_mean"]["imbalance_after"] - m) < 1e-12, s["scenario_mean"]
assert s["dense_layers_skipped"] == [0, 1], s["dense_layers_skipped"]
assert s["layers"] == 6
PY
  # A re-plan of the scenarios from the map the experts are in.
  run_sync --scenario "st/pre_%r.json" --scenario "st/dec_%r.json" "${shape[@]}" \
           --current-map plan.json --output re.json --quiet
  all_ranks_exit 0
  "$bin/eplb-plan" --scenario "st/pre_*.json" --scenario "st/dec_*.json" "${shape[@]}" \
      --current-map plan.json --output re_plan.json --quiet || die "eplb-plan --current-map"
  cmp -s re.json re_plan.json || die "--current-map: eplb-sync's re-plan differs from eplb-plan's"
  # With shards: the scenarios' plan from the shards' map, the weights
  # moved to it, every byte where the map says.
  "$bin/eplb-shard" create --dir shards --ranks "$np" --layers 6 --experts 64 \
      --slots-per-rank $((80 / np)) --dataset w:float16:4x8 --quiet || die "eplb-shard create"
  run_sync --scenario "st/pre_%r.json" --scenario "st/dec_%r.json@2" --shards shards \
           --output moved.json --summary moved_sum.json --quiet
  all_ranks_exit 0
  "$bin/eplb-shard" verify --dir shards --expect-map moved.json --quiet || die "shards after a scenario run"
  grep -q '"scenario_mean"' moved_sum.json || die "shards run summary: $(cat moved_sum.json)"
  # One rank's scenario file is malformed: every rank fails, naming it.
  bad=$((np - 1))
  printf '{"logical_count": [[1, 2], [3' > "st/dec_$bad.json"
  run_sync --stats "st/pre_%r.json" --scenario "st/dec_%r.json" "${shape[@]}" --output bad.json
  all_ranks_exit 1
  grep -q "rank $bad: st/dec_$bad.json" err.txt || die "bad file: $(head -3 err.txt)"
  [[ $(grep -c "error" err.txt) == 1 ]] || die "not one error line: $(cat err.txt)"
  [[ -e bad.json ]] && die "a map was written"
  # Usage errors: exit 2 on every rank.
  run_sync --scenario "st/pre_%r.json@0" "${shape[@]}"
  all_ranks_exit 2
  grep -q "weight 0 is outside" err.txt || die "weight: $(cat err.txt)"
  run_sync --watch --scenario "st/pre_%r.json" "${shape[@]}"
  all_ranks_exit 2
  grep -q "drop --scenario" err.txt || die "--watch --scenario: $(cat err.txt)"
  run_sync --stats "st/pre_%r.json" --history 2 "${shape[@]}"
  all_ranks_exit 2
  grep -q "history needs --watch" err.txt || die "--history: $(cat err.txt)"
  if ((np > 1)); then
    run_sync --scenario st/pre_0.json "${shape[@]}"
    all_ranks_exit 2
    grep -q "has no %r" err.txt || die "pattern: $(cat err.txt)"
  fi
  ;;
mtp)
  data=$(cd "$(dirname "${BASH_SOURCE[0]}")/../tests/data" && pwd)
  gen mindspeed json
  shape=(--num-slots 80 --num-gpus 8)
  run_sync --stats "st/rank_%r.json" "${shape[@]}" --mtp-layers 1 --output map.json
  all_ranks_exit 0
  grep -q "MTP layers      1, the map's last after the MoE layers (ids 6..6)" out.txt ||
    die "no MTP settings line: $(cat out.txt)"
  grep -q "MindIE          expert-parallel size 8" out.txt || die "no MindIE settings: $(cat out.txt)"
  grep -q "6 layers x 64 experts" out.txt && grep -q "1 MTP layer appended (last)" out.txt ||
    die "summary with the MTP layer: $(cat out.txt)"
  # shellcheck disable=SC2046
  "$bin/eplb-plan" $(files json) "${shape[@]}" --mtp-layers 1 --output plan.json --quiet ||
    die "eplb-plan --mtp-layers"
  cmp -s map.json plan.json || die "eplb-sync --mtp-layers map differs from eplb-plan's"
  /usr/bin/python3 - <<'PY' || die "the MTP layer in the expert map"
import json
m = json.load(open("map.json"))
assert m["moe_layer_count"] == 7, m["moe_layer_count"]
ls = m["layer_list"]
assert [l["layer_id"] for l in ls] == list(range(7))
# --mtp-from last: the MTP layer is placed as the last MoE layer
assert ls[6]["device_list"] == ls[5]["device_list"]
for l in ls:
    assert l["device_count"] == 8 and len(l["device_list"]) == 8
    for d in l["device_list"]:
        assert len(set(d["device_expert"])) == len(d["device_expert"]) == 10
PY
  run_sync --stats "st/rank_%r.json" "${shape[@]}" --mtp-layers 2 --mtp-from trivial \
           --output map.yaml --quiet
  all_ranks_exit 0
  /usr/bin/python3 - <<'PY' || die "the MTP layers in the YAML map"
import re
text = open("map.yaml").read()
keys = [int(k) for k in re.findall(r"^\s+(\d+):", text, re.M)]
assert keys == list(range(8)), keys
PY
  # A re-plan from a current map that holds the MTP layer.
  run_sync --stats "st/rank_%r.json" "${shape[@]}" --mtp-layers 1 --current-map map.json \
           --output re.json --quiet
  all_ranks_exit 0
  # shellcheck disable=SC2046
  "$bin/eplb-plan" $(files json) "${shape[@]}" --mtp-layers 1 --current-map map.json \
      --output re_plan.json --quiet || die "eplb-plan --current-map --mtp-layers"
  cmp -s re.json re_plan.json || die "re-plan with the MTP layer differs from eplb-plan's"
  # Shards that hold the MTP layer: the weights move to the map.
  "$bin/eplb-shard" create --dir shards --ranks "$np" --layers 7 --experts 64 \
      --slots-per-rank $((80 / np)) --dataset w:float16:4x8 --quiet || die "eplb-shard create"
  run_sync --stats "st/rank_%r.json" --shards shards --mtp-layers 1 --num-gpus "$np" \
           --output moved.json --quiet
  all_ranks_exit 0
  "$bin/eplb-shard" verify --dir shards --expect-map moved.json --quiet ||
    die "shards with the MTP layer after the migration"
  # Shards without it: every rank fails, saying what is missing.
  "$bin/eplb-shard" create --dir shards6 --ranks "$np" --layers 6 --experts 64 \
      --slots-per-rank $((80 / np)) --dataset w:float16:4x8 --quiet || die "eplb-shard create"
  run_sync --stats "st/rank_%r.json" --shards shards6 --mtp-layers 1 --num-gpus "$np" --output no.json
  all_ranks_exit 1
  grep -q "hold 6 layers but the summed statistics have 6 MoE layers and --mtp-layers asks for 1 more" err.txt ||
    die "shards without the MTP layer: $(cat err.txt)"
  [[ -e no.json ]] && die "a map was written"
  # DeepSeek's plan of these counts puts an expert twice on a GPU: refused
  # for the expert-map JSON before the shards change, allowed on request.
  for ((r = 0; r < np; r++)); do cp "$data/ms_part_a.json" "st/dup_$r.json"; done
  run_sync --stats "st/dup_%r.json" --num-slots 12 --num-gpus 4 --policy deepseek --output dup.json
  all_ranks_exit 1
  grep -q "GPU 0 holds expert 0 twice" err.txt || die "duplicate: $(cat err.txt)"
  [[ -e dup.json ]] && die "a map with a duplicate was written"
  if ((np == 4)); then # shards of 4 GPUs: one rank each
    "$bin/eplb-shard" create --dir dshards --ranks 4 --layers 4 --experts 8 \
        --slots-per-rank 3 --dataset w:float16:4 --quiet || die "eplb-shard create"
    sum0=$(cat dshards/* | md5sum)
    run_sync --stats "st/dup_%r.json" --shards dshards --policy deepseek --output dup.json
    all_ranks_exit 1
    grep -q "GPU 0 holds expert 0 twice" err.txt || die "duplicate with shards: $(cat err.txt)"
    [[ -e dup.json ]] && die "a map with a duplicate was written"
    [[ "$(ls dshards | wc -l)" == 4 ]] || die "files left beside the shards: $(ls dshards)"
    [[ "$(cat dshards/* | md5sum)" == "$sum0" ]] || die "the shards changed for a map that was refused"
    run_sync --stats "st/dup_%r.json" --shards dshards --policy deepseek \
             --allow-duplicates --output dup.json --quiet
    all_ranks_exit 0
    "$bin/eplb-shard" verify --dir dshards --expect-map dup.json --quiet || die "shards with duplicates"
  fi
  # Usage: out of range, unknown rule, with --watch.
  run_sync --stats "st/rank_%r.json" "${shape[@]}" --mtp-layers 5 --output x.json
  all_ranks_exit 2
  grep -q -- "--mtp-layers" err.txt || die "--mtp-layers 5: $(cat err.txt)"
  run_sync --stats "st/rank_%r.json" "${shape[@]}" --mtp-from first --output x.json
  all_ranks_exit 2
  grep -q "use last, trivial or stats" err.txt || die "--mtp-from first: $(cat err.txt)"
  run_sync --watch --stats "st/rank_%r.json" "${shape[@]}" --mtp-layers 1 --output x.json
  all_ranks_exit 2
  grep -q "apply to one sync" err.txt || die "--watch --mtp-layers: $(cat err.txt)"
  ;;
*) die "unknown group $group" ;;
esac
((fail == 0)) && echo "sync_cli $group at $np ranks: ok"
exit $fail

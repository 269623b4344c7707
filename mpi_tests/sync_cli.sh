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
    timeout -k 5 60 "$mpiexec" -n "$np" "${preflags[@]}" bash -c \
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
    [[ -f rc.$r ]] || { die "rank $r left no exit code (killed?)"; continue; }
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
*) die "unknown group $group" ;;
esac
((fail == 0)) && echo "sync_cli $group at $np ranks: ok"
exit $fail

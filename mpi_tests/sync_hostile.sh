#!/usr/bin/env bash
# sync_hostile.sh - eplb-sync against a careless or hostile launch, on 2
# ranks: a map or summary that is one rank's statistics (after %r), a FIFO
# as one rank's statistics, and MPMD launches that mix --watch or --recover
# (or a usage error) with plain ranks.  Each must end on every rank, within
# the timeout, with the same exit status, one message naming the rank, and
# the statistics untouched.
#
# usage: sync_hostile.sh BIN_DIR TMP_DIR MPIEXEC [PREFLAGS...]
set -u
bin=$1 tmp=$2 mpiexec=$3
shift 3
preflags=("$@")
dir="$tmp/sync_hostile"
rm -rf "$dir" && mkdir -p "$dir/st" "$dir/shards" || exit 1
cd "$dir" || exit 1
fail=0
die() { echo "FAIL: $*" >&2; fail=1; }

# A wrapper records each rank's exit status in rc.<rank>.
wrap=(bash -c '"$0" "$@"; echo $? > rc.${OMPI_COMM_WORLD_RANK:-${PMIX_RANK:-0}}')

# run ARGS...: eplb-sync on 2 ranks with the same ARGS.
run() {
  rm -f rc.*
  timeout -k 5 60 "$mpiexec" -n 2 "${preflags[@]}" "${wrap[@]}" "$bin/eplb-sync" "$@" \
    > out.txt 2> err.txt
  echo $? > rc.mpiexec
}

# mpmd "ARGS0" "ARGS1": rank 0 and rank 1 with different command lines.
mpmd() {
  rm -f rc.*
  # shellcheck disable=SC2086
  timeout -k 5 60 "$mpiexec" "${preflags[@]}" -n 1 "${wrap[@]}" "$bin/eplb-sync" $1 \
    : -n 1 "${wrap[@]}" "$bin/eplb-sync" $2 > out.txt 2> err.txt
  echo $? > rc.mpiexec
}

# Both ranks exited with $1 (and mpiexec did not time out).
both_exit() {
  [[ $(cat rc.mpiexec) != 124 && $(cat rc.mpiexec) != 137 ]] || die "$2: timed out (hang)"
  local r
  for r in 0 1; do
    [[ -f rc.$r ]] || { die "$2: rank $r left no exit code"; continue; }
    [[ $(cat rc.$r) == "$1" ]] || die "$2: rank $r exited $(cat rc.$r), want $1"
  done
}

# The one error line names NEEDLE.
says() {
  grep -q -- "$1" err.txt || die "$2: message lacks '$1': $(grep error err.txt)"
  [[ $(grep -c "eplb-sync: error:" err.txt) == 1 ]] || die "$2: not one error line: $(cat err.txt)"
}

"$bin/eplb-synth-stats" --out 'st/rank_%r.json' --ranks 2 --layers 4 --experts 16 \
  --tokens 1000 --seed 3 >/dev/null || die "synth"
cp st/rank_0.json keep0 && cp st/rank_1.json keep1
untouched() {
  cmp -s st/rank_0.json keep0 && cmp -s st/rank_1.json keep1 || die "$1: statistics overwritten"
  cp keep0 st/rank_0.json && cp keep1 st/rank_1.json
}
S=(--stats 'st/rank_%r.json' --num-slots 16 --num-gpus 2 --quiet)

# ---- an output that is one rank's statistics ---------------------------
run "${S[@]}" --output st/rank_1.json
both_exit 2 "--output = rank 1's stats"
says "rank 1: --output st/rank_1.json is the same file as --stats st/rank_1.json" "--output"
untouched "--output"
run "${S[@]}" --output map.json --summary "$PWD/st/rank_0.json"
both_exit 2 "--summary = rank 0's stats"
says "rank 0: --summary" "--summary"
untouched "--summary"
[[ -e map.json ]] && die "a map was written"
run "${S[@]}" --output map.json --summary ./map.json
both_exit 2 "--output = --summary"
says "name the same file" "--output = --summary"
run "${S[@]}" --watch --max-rounds 1 --interval 0.1 --output st/rank_1.json
both_exit 2 "--watch, --output = rank 1's stats"
says "rank 1: --output st/rank_1.json is the same file as" "--watch --output"
untouched "--watch --output"
cp keep0 cur.json
run "${S[@]}" --current-map cur.json --summary cur.json
both_exit 2 "--summary = --current-map"
says "is the same file as --current-map" "--summary = --current-map"
cmp -s cur.json keep0 || die "--summary = --current-map: the map was overwritten"

# ---- a FIFO as one rank's statistics -----------------------------------------
mv st/rank_1.json st/real_1.json && mkfifo st/rank_1.json
run "${S[@]}" --output map.json
both_exit 1 "FIFO on rank 1"
says "rank 1: st/rank_1.json: is a FIFO" "FIFO"
rm -f st/rank_1.json && mv st/real_1.json st/rank_1.json

# ---- MPMD launches that mix modes ------------------------------------------------
plain="--stats st/rank_%r.json --num-slots 16 --num-gpus 2 --quiet"
mpmd "$plain" "--watch --max-rounds 1 --interval 0.1 $plain"
both_exit 2 "plain + --watch"
says "rank 1: --watch, but rank 0 runs one sync" "plain + --watch"
mpmd "--watch --max-rounds 1 --interval 0.1 $plain" "$plain"
both_exit 2 "--watch + plain"
says "rank 1: one sync, but rank 0 runs --watch" "--watch + plain"
mpmd "$plain" "--recover --shards shards"
both_exit 2 "plain + --recover"
says "rank 1: --recover" "plain + --recover"
mpmd "$plain" "$plain --num-slots 0"
both_exit 2 "plain + usage error"
says "rank 1: with a usage error" "plain + usage error"
mpmd "$plain" "$plain --policy deepseek"
both_exit 2 "other options"
says "rank 1: options differ from rank 0's" "other options"
untouched "MPMD"
# The same options on both, as an MPMD launch: it runs.
mpmd "$plain --output map.json" "$plain --output map.json"
both_exit 0 "same options"
[[ -s map.json ]] || die "same options: no map"

((fail == 0)) && echo "sync_hostile: ok"
exit $fail

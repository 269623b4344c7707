#!/usr/bin/env bash
# watch_cli.sh - `eplb-sync --watch` as a user runs it beside a trainer.
#
# usage: watch_cli.sh GROUP NP BIN_DIR TMP_DIR MPIEXEC [PREFLAGS...]
#   rounds   rounds on unchanged cumulative statistics: one rebalance, then
#            none; a half-written file skips a round, not an error
#   drift    from a balanced --current-map, a drift in layers 0 and 1
#            between rounds triggers a rebalance that moves only layer 0
#            or 1, bounded by --layers-per-round 1
#   sigterm  SIGTERM to every rank during the loop: every rank exits 0
#            after finishing its round, the summary is complete JSON
#   shards   rounds that migrate HDF5 shards while the traffic changes;
#            SIGTERM during them leaves one generation, byte-exact
#   history  --history 2: from a map balanced for the first round's
#            traffic, a round of another mix is weighed with the first as
#            two windows; the rebalance balances both
# The statistics are MindSpeed-RL cumulative counters written by this
# script the way a trainer rewrites them (temporary file + rename), and
# rounds are started with the trigger file, so the test controls what each
# round sees.
set -u
group=$1 np=$2 bin=$3 tmp=$4 mpiexec=$5
shift 5
preflags=("$@")
dir="$tmp/watch_cli_${group}_$np"
rm -rf "$dir" && mkdir -p "$dir/st" || exit 1
cd "$dir" || exit 1
fail=0
die() { echo "FAIL ($group, $np ranks): $*" >&2; fail=1; }

L=6 E=32
# write_stats STAGE: every rank's cumulative counters after stage 1, 2, ...
# Stage 2 adds traffic with another hot expert in layers 0 and 1 only; the
# other layers grow in the same proportions as before.
write_stats() {
  local stage=$1 r l e c
  for ((r = 0; r < np; r++)); do
    {
      printf '{'
      for ((l = 0; l < L; l++)); do
        ((l)) && printf ', '
        printf '"%d": {' "$l"
        for ((e = 0; e < E; e++)); do
          c=$(( 100 + (e * 37 + l * 11 + r * 5) % 97 ))
          ((e == (l * 3) % E)) && c=$((c * 12))
          if ((stage >= 2)); then
            c=$((c * 2))
            ((l < 2 && e == (l * 3 + 17) % E)) && c=$((c + 40000))
          fi
          ((e)) && printf ', '
          printf '"%d": %d' "$e" "$c"
        done
        printf '}'
      done
      printf '}\n'
    } > "st/.rank_$r.tmp" && mv "st/.rank_$r.tmp" "st/rank_$r.json"
  done
}

# Waits until the summary says `rounds` >= $1 (at most 30 s).
wait_rounds() {
  local i
  for ((i = 0; i < 300; i++)); do
    local n
    n=$(sed -n 's/^[[:space:]]*"rounds":[[:space:]]*\([0-9]*\),.*/\1/p' sum.json 2>/dev/null)
    [[ -n $n ]] && ((n >= $1)) && return 0
    sleep 0.1
  done
  die "timed out waiting for round $1: $(cat out.txt err.txt 2>/dev/null | tail -5)"
  return 1
}

shape=(--num-slots 40 --num-gpus 8)
start_watch() {
  timeout -k 5 60 "$mpiexec" -n "$np" "${preflags[@]}" bash -c \
    '"$0" "$@"; echo $? > rc.${OMPI_COMM_WORLD_RANK:-${PMIX_RANK:-0}}' \
    "$bin/eplb-sync" --watch --stats "st/rank_%r.json" "${shape[@]}" \
    --output map.json --summary sum.json "$@" > out.txt 2> err.txt &
  pid=$!
}

# SIGTERM to each rank, as Slurm's scancel does; only this test's ranks
# (other tests may run eplb-sync at the same time): those whose working
# directory is ours.
term_ranks() {
  local n=0 p
  for p in $(pgrep -x eplb-sync); do
    [[ $(readlink "/proc/$p/cwd") == "$(pwd -P)" ]] && kill -TERM "$p" && n=$((n + 1))
  done
  ((n == np)) || die "signalled $n processes, want $np"
}

all_ranks_exit() {
  local want=$1 r
  for ((r = 0; r < np; r++)); do
    [[ -f rc.$r ]] || { die "rank $r left no exit code"; continue; }
    [[ $(cat rc.$r) == "$want" ]] || die "rank $r exited $(cat rc.$r), want $want"
  done
}

# JSON field of history entry N (1-based): hist N FIELD
hist() {
  tr -d ' \t\n' < sum.json | sed 's/.*"history":\[//' | sed 's/},{/}\n{/g' |
    sed -n "$1p" | sed -n "s/.*\"$2\":\([^,}]*\).*/\1/p"
}

# Per layer, the map's device lines on one line: "layer <devices...>".
layers_of() {
  awk '/"layer_id"/ { if (l != "") print l, d; gsub(/[^0-9]/, ""); l = $0; d = "" }
       /device_expert/ { d = d $0 } END { print l, d }' "$1"
}
# The layers whose placement differs between two expert maps.
changed_layers() {
  diff <(layers_of "$1") <(layers_of "$2") | sed -n 's/^> \([0-9]*\) .*/\1/p' | sort -u | tr '\n' ' '
}

case $group in
rounds)
  write_stats 1
  start_watch --interval 1000 --trigger go --max-rounds 4 --threshold 0.05
  wait_rounds 1 || { kill $pid; exit 1; }
  touch go; wait_rounds 2 || { kill $pid; exit 1; }
  printf '{"0": {"1": ' > st/rank_0.json       # caught half-written
  touch go
  for ((i = 0; i < 300; i++)); do grep -q '"skipped_rounds":[[:space:]]*1' sum.json && break; sleep 0.1; done
  write_stats 1
  touch go
  wait $pid
  all_ranks_exit 0
  [[ $(hist 1 rebalanced) == true ]] || die "round 1 did not rebalance: $(cat out.txt)"
  [[ $(hist 1 layers_moved) == "$L" ]] || die "round 1 moved $(hist 1 layers_moved) layers"
  [[ $(hist 2 had_traffic) == false && $(hist 2 rebalanced) == false ]] || die "round 2 (unchanged) changed something"
  [[ $(hist 3 had_traffic) == false && $(hist 3 rebalanced) == false ]] || die "round 3 (unchanged after a skip) changed something"
  grep -q '"skipped_rounds":[[:space:]]*1' sum.json || die "the half-written file did not skip a round"
  grep -q "round skipped" out.txt || die "no skip line: $(cat out.txt)"
  grep -q '"rebalances":[[:space:]]*1' sum.json || die "rebalances: $(grep rebalances sum.json)"
  grep -q '"generation":[[:space:]]*1' sum.json || die "generation: $(grep generation sum.json)"
  [[ -s map.json ]] || die "no map written"
  ;;
drift)
  write_stats 1
  # Start from a balanced placement of the first traffic: nothing to do
  # until the traffic drifts.
  args=()
  for ((r = 0; r < np; r++)); do args+=(--stats "st/rank_$r.json"); done
  "$bin/eplb-plan" "${args[@]}" --num-slots 40 --num-gpus 8 --output cur.json --quiet || die "eplb-plan"
  start_watch --interval 1000 --trigger go --max-rounds 2 --layers-per-round 1 \
              --threshold 0.1 --min-gain 0.01 --current-map cur.json
  wait_rounds 1 || { kill $pid; exit 1; }
  write_stats 2
  touch go
  wait $pid
  all_ranks_exit 0
  [[ $(hist 1 had_traffic) == true && $(hist 1 rebalanced) == false ]] || die "round 1 (balanced) rebalanced: $(cat out.txt)"
  [[ $(hist 2 rebalanced) == true ]] || die "round 2 (drift) did not rebalance: $(cat out.txt)"
  [[ $(hist 2 layers_moved) == 1 ]] || die "round 2 moved $(hist 2 layers_moved) layers, want 1 (--layers-per-round 1)"
  moved=$(changed_layers cur.json map.json)
  [[ $moved == "0 " || $moved == "1 " ]] || die "layers changed: '$moved', want 0 or 1 (the drifted ones)"
  ;;
sigterm)
  write_stats 1
  start_watch --interval 0.1
  wait_rounds 2 || { kill $pid; exit 1; }
  term_ranks
  wait $pid
  all_ranks_exit 0
  grep -q "watch ended after" out.txt || die "no end line: $(tail -3 out.txt)"
  tr -d ' \t\n' < sum.json | grep -q '^{.*}$' || die "summary not complete JSON"
  ;;
shards)
  # Rounds that migrate the shards while the traffic keeps changing; SIGTERM
  # lands during one of them.  Afterwards: every rank exited 0, the shards
  # hold one generation whose every byte matches the map last written.
  write_stats 1
  "$bin/eplb-shard" create --dir shards --ranks "$np" --layers "$L" --experts "$E" \
      --slots-per-rank $((40 / np)) --dataset w:float16:128x256 --dataset b:uint8:7 \
      --quiet || die "create"
  shape=(--shards shards)
  start_watch --interval 0.05 --ema-alpha 1 --threshold 0.01 --min-gain 0.001
  ( for ((k = 0; k < 40; k++)); do write_stats $((k % 2 + 1)); sleep 0.05; done ) &
  writer=$!
  wait_rounds 3 || { kill $pid $writer; exit 1; }
  term_ranks
  wait $pid
  kill $writer 2>/dev/null; wait $writer 2>/dev/null
  all_ranks_exit 0
  grep -q "watch ended after" out.txt || die "no end line: $(tail -3 out.txt)"
  ls shards | grep -q tmp && die "temporary files left: $(ls shards)"
  [[ -e shards/eplb_journal.json ]] && die "a journal was left"
  "$bin/eplb-shard" verify --dir shards --expect-map map.json --quiet \
    || die "shards inconsistent after SIGTERM"
  g=$("$bin/eplb-shard" inspect --dir shards | sed -n "s/^generation  *\([0-9]*\).*/\1/p")
  grep -q "\"generation\":[[:space:]]*$g," sum.json || die "summary generation differs from the shards' $g"
  ((g >= 1)) || die "no migration happened (generation $g)"
  ;;
history)
  # Python's json writes, per rank, workloads A and B (other hot experts)
  # and the cumulative counters: A + B after round 1, A + B + A after
  # round 2, so the rounds' windows are A + B, then A.
  gen_history() {
    /usr/bin/python3 - "$np" "$1" <<'PY'
import json, os, random, sys
n, stage = int(sys.argv[1]), int(sys.argv[2])
for r in range(n):
    loads = {}
    for name, seed in (("a", 1), ("b", 2)):
        rnd = random.Random(seed)
        hot = [rnd.sample(range(32), 4) for _ in range(6)]
        loads[name] = [[(100 + (e * 7 + r) % 13) * (3 if e in hot[l] else 1)
                        for e in range(32)] for l in range(6)]
    mix = {1: "ab", 2: "aba"}.get(stage, "")
    for what, parts in (("st", mix), ("a", "a"), ("s", "ab")):
        rows = [[sum(loads[p][l][e] for p in parts) for e in range(32)]
                for l in range(6)]
        os.makedirs(what, exist_ok=True)
        d = {str(l): {str(e): rows[l][e] for e in range(32)} for l in range(6)}
        with open("%s/.rank_%d.tmp" % (what, r), "w") as f:
            json.dump(d, f)
        os.replace("%s/.rank_%d.tmp" % (what, r), "%s/rank_%d.json" % (what, r))
PY
  }
  gen_history 1 || die "python"
  args=()
  for ((r = 0; r < np; r++)); do args+=(--stats "st/rank_$r.json"); done
  "$bin/eplb-plan" "${args[@]}" --num-slots 40 --num-gpus 8 --output cur.json --quiet || die "eplb-plan"
  start_watch --interval 1000 --trigger go --max-rounds 2 --history 2 \
              --threshold 0.05 --min-gain 0.01 --current-map cur.json
  wait_rounds 1 || { kill $pid; exit 1; }
  gen_history 2 || die "python"
  touch go
  wait $pid
  all_ranks_exit 0
  [[ $(hist 1 had_traffic) == true && $(hist 1 rebalanced) == false ]] || die "round 1 (balanced) rebalanced: $(cat out.txt)"
  [[ $(hist 2 rebalanced) == true ]] || die "round 2 (two windows) did not rebalance: $(cat out.txt)"
  grep -q "(mean over 2 windows), rebalanced" out.txt || die "no window count in the log: $(cat out.txt)"
  grep -q '"history_windows":[[:space:]]*2' sum.json || die "summary: no history"
  # Both windows, each on its own: the new map balances them; the first
  # map balanced A + B only.
  "$bin/eplb-report" --quiet --scenario "a/rank_*.json" --scenario "s/rank_*.json" \
      --map cur.json --json before.json || die "eplb-report"
  "$bin/eplb-report" --quiet --scenario "a/rank_*.json" --scenario "s/rank_*.json" \
      --map map.json --json after.json || die "eplb-report"
  /usr/bin/python3 - before.json after.json <<'PY' || die "windows not balanced: $(cat out.txt)"
import json, sys
b, a = (json.load(open(p))["scenarios"] for p in sys.argv[1:3])
print("window imbalance, first map -> rebalanced:",
      [(x["imbalance_after"], y["imbalance_after"]) for x, y in zip(b, a)])
assert b[0]["imbalance_after"] > 0.15          # A, on the map of A + B
assert a[0]["imbalance_after"] < b[0]["imbalance_after"] / 2
assert a[1]["imbalance_after"] < 0.1           # A + B still balanced
PY
  ;;
*) die "unknown group $group" ;;
esac
((fail == 0)) && echo "watch_cli $group at $np ranks: ok"
exit $fail

#!/usr/bin/env bash
# watchdog.sh - a rank that hangs in any phase ends the whole job in time.
#
# usage: watchdog.sh PHASE NP BIN_DIR TMP_DIR MPIEXEC [PREFLAGS...]
#   EPLB_FAULT=hang:<PHASE>:<bad> makes one rank of `eplb-sync --shards
#   --timeout 2` sleep (until killed) at PHASE (read, shape, reduce, plan,
#   distribute, verify, transfer, commit, rename; the planner, rank 0, for
#   plan, else rank 1).  The job must end non-zero within 30 s (the hung
#   rank would sleep for hours: mpiexec returning proves the watchdog
#   aborted it, not the test's timeout), no map is written, a rank's error
#   line names a phase, says what did not complete within 2 s and names
#   the hung rank among those that did not answer (or, in the transfer,
#   among the peers it waited for); then `--recover` leaves one generation:
#   the old one byte for byte before the journal (every phase but rename),
#   the new one after it (rename: verified against the map the plan gives).
set -u
phase=$1 np=$2 bin=$3 tmp=$4 mpiexec=$5
shift 5
preflags=("$@")
dir="$tmp/watchdog_${phase}_$np"
rm -rf "$dir" && mkdir -p "$dir/st" || exit 1
cd "$dir" || exit 1
fail=0
die() { echo "FAIL (watchdog $phase, $np ranks): $*" >&2; fail=1; }
bad=1
[[ $phase == plan ]] && bad=0

"$bin/eplb-shard" create --dir shards --ranks "$np" --layers 3 --experts 12 \
    --slots-per-rank $((12 / np + 1)) --dataset w:float16:4x8 --quiet || die "create"
"$bin/eplb-synth-stats" --out "st/rank_%r.json" --ranks "$np" --layers 3 \
    --experts 12 --tokens 20000 --skew 1.3 --seed 7 > /dev/null || die "synth"
before=$(cat shards/shard_?????.h5 | md5sum)
start=$SECONDS
EPLB_FAULT=hang:$phase:$bad timeout -k 5 60 "$mpiexec" -n "$np" "${preflags[@]}" -x EPLB_FAULT \
    "$bin/eplb-sync" --stats "st/rank_%r.json" --shards shards --output map.json \
    --timeout 2 > out.txt 2> err.txt
rc=$? took=$((SECONDS - start))
((rc != 0)) || die "a job with a hung rank exited 0"
((rc != 124 && rc != 137)) || die "ended by the test's timeout (rc $rc): the watchdog did not fire"
((took < 30)) || die "took $took s with --timeout 2"
grep -q "rank $bad: EPLB_FAULT: hanging at $phase" err.txt || die "no injected hang: $(head -3 err.txt)"
[[ -e map.json ]] && die "a map was written"
ok=0
while IFS= read -r line; do
  if [[ $line =~ ^eplb:\ rank\ [0-9]+:\ error:\ [a-z]+:\ .*\ did\ not\ complete\ within\ 2\ s:\ ranks?\ ([0-9, ]+)\ did\ not\ answer ]]; then
    [[ ",${BASH_REMATCH[1]// /}," == *",$bad,"* ]] && ok=1
  elif [[ $line =~ transfer\ timed\ out\ after\ 2\ s\ waiting\ for\ ranks?\ ([0-9, ]+) ]]; then
    [[ ",${BASH_REMATCH[1]// /}," == *",$bad,"* ]] && ok=1
  fi
done < <(grep "error:" err.txt)
((ok)) || die "no error line naming the phase and the hung rank $bad: $(grep error: err.txt)"
grep "error:" err.txt | grep -q "recover\|recoverable" || die "the error does not say how to recover: $(grep error: err.txt)"
timeout -k 5 60 "$mpiexec" -n "$np" "${preflags[@]}" "$bin/eplb-sync" --recover --shards shards \
    > rec.txt 2>&1 || die "recover: $(cat rec.txt)"
ls shards | grep -q "tmp\|journal" && die "debris after the recovery: $(ls shards)"
gen=$("$bin/eplb-shard" inspect --dir shards | sed -n 's/^generation  *\([0-9]*\).*/\1/p')
if [[ $phase == rename ]]; then
  [[ $gen == 1 ]] || die "generation $gen after a hang in rename, want 1 (rolled forward)"
  "$bin/eplb-shard" verify --dir shards --quiet || die "the rolled forward shards do not verify"
else
  [[ $gen == 0 ]] || die "generation $gen, want 0"
  [[ $(cat shards/shard_?????.h5 | md5sum) == "$before" ]] || die "the shards changed"
fi
((fail == 0)) && echo "watchdog $phase at $np ranks: ok ($took s)"
exit $fail

#!/usr/bin/env bash
# sync_shards.sh - `eplb-sync --shards` and `--recover` as a user runs them.
#
# usage: sync_shards.sh GROUP NP BIN_DIR TMP_DIR MPIEXEC [PREFLAGS...]
#   move      mixed datasets (float16, float32, uint8; different shapes):
#             after eplb-sync every byte of every slot is the expert the
#             written map puts there (eplb-shard verify --expect-map), the
#             summary's experts_received is what the plan needs, and a
#             second run on the same traffic moves nothing and keeps the
#             generation
#   crash     EPLB_FAULT=crash:commit:1 (after writing, before the
#             agreement): the job fails, the shards stay at generation 0
#             (bytes intact); crash:rename:2 (after renaming its own
#             shard): --recover rolls every shard forward to generation 1
#   hang      EPLB_FAULT=hang:transfer:1 with --timeout 2 (rank 1 sleeps
#             until killed before posting a batch it sends in): the job
#             ends non-zero within 45 s, not by the test's timeout, a rank
#             names the layer, the timeout and rank 1; no map is written,
#             the shards are byte for byte as before, --recover removes
#             the temporary files and leaves generation 0
#   bad       one rank's shard missing: every rank fails naming it, the
#             other shards are untouched (checksums before and after)
set -u
group=$1 np=$2 bin=$3 tmp=$4 mpiexec=$5
shift 5
preflags=("$@")
dir="$tmp/sync_shards_${group}_$np"
rm -rf "$dir" && mkdir -p "$dir/st" || exit 1
cd "$dir" || exit 1
fail=0
die() { echo "FAIL ($group, $np ranks): $*" >&2; fail=1; }

mpi() { timeout -k 5 90 "$mpiexec" -n "$np" "${preflags[@]}" "$@"; }

setup() {
  "$bin/eplb-shard" create --dir shards --ranks "$np" --layers 5 --experts 24 \
      --slots-per-rank $((32 / np + 1)) --dataset w_in:float16:4x8 \
      --dataset w_out:float32:16 --dataset scale:uint8:3 --quiet || die "create"
  "$bin/eplb-synth-stats" --out "st/rank_%r.json" --ranks "$np" --layers 5 \
      --experts 24 --tokens 20000 --skew 1.2 --seed 5 >/dev/null || die "synth"
}

generation_of() { "$bin/eplb-shard" inspect --dir shards | sed -n "s/^generation  *\([0-9]*\).*/\1/p" | head -1; }

case $group in
move)
  setup
  mpi "$bin/eplb-sync" --stats "st/rank_%r.json" --shards shards --output map.json \
      --summary sum.json > out.txt 2> err.txt || die "eplb-sync failed: $(tail -3 err.txt)"
  "$bin/eplb-shard" verify --dir shards --expect-map map.json --quiet \
    || die "verify after the move failed"
  [[ $(generation_of) == 1 ]] || die "generation $(generation_of), want 1"
  recv=$(sed -n 's/.*"experts_received":[[:space:]]*\([0-9]*\).*/\1/p' sum.json)
  moved=$(sed -n 's/.*"replicas_moved":[[:space:]]*\([0-9]*\).*/\1/p' sum.json)
  [[ -n $recv && $recv -gt 0 ]] || die "experts_received '$recv'"
  # Every replica that arrives on a new GPU is received once; a rank
  # receives each expert once per layer even for several slots.
  [[ $recv -le $moved ]] || die "received $recv row sets for $moved moved replicas"
  grep -q "shards moved to generation 1" out.txt || die "no migration line: $(cat out.txt)"
  mpi "$bin/eplb-sync" --stats "st/rank_%r.json" --shards shards --summary sum2.json \
      > out2.txt 2> err2.txt || die "second run failed: $(tail -3 err2.txt)"
  grep -q "shards unchanged at generation 1" out2.txt || die "second run: $(cat out2.txt)"
  [[ $(generation_of) == 1 ]] || die "the second run changed the generation"
  "$bin/eplb-shard" verify --dir shards --expect-map map.json --quiet || die "verify 2"
  ;;
crash)
  setup
  before=$(cat shards/*.h5 | md5sum)
  EPLB_FAULT=crash:commit:1 mpi -x EPLB_FAULT "$bin/eplb-sync" --stats "st/rank_%r.json" \
      --shards shards --output map.json > out.txt 2> err.txt && die "crash:commit succeeded"
  grep -q "crashing at commit" err.txt || die "no injected crash: $(tail -3 err.txt)"
  [[ -e map.json ]] && die "a map was written after a failed commit"
  mpi "$bin/eplb-sync" --recover --shards shards > rec.txt 2>&1 || die "recover: $(cat rec.txt)"
  [[ $(generation_of) == 0 ]] || die "after a commit crash: generation $(generation_of), want 0"
  [[ $(cat shards/*.h5 | md5sum) == "$before" ]] || die "the shards changed after a commit crash"
  ls shards | grep -q tmp && die "temporary files left: $(ls shards)"
  EPLB_FAULT=crash:rename:2 mpi -x EPLB_FAULT "$bin/eplb-sync" --stats "st/rank_%r.json" \
      --shards shards > out.txt 2> err.txt && die "crash:rename succeeded"
  grep -q "crashing at rename" err.txt || die "no injected crash: $(tail -3 err.txt)"
  mpi "$bin/eplb-sync" --recover --shards shards > rec.txt 2>&1 || die "recover: $(cat rec.txt)"
  grep -q "rolled forward" rec.txt || die "recover did not roll forward: $(cat rec.txt)"
  [[ $(generation_of) == 1 ]] || die "after a rename crash: generation $(generation_of), want 1"
  "$bin/eplb-shard" verify --dir shards --quiet || die "verify after recovery"
  ;;
hang)
  setup
  before=$(cat shards/shard_?????.h5 | md5sum)
  start=$SECONDS
  EPLB_FAULT=hang:transfer:1 timeout -k 5 60 "$mpiexec" -n "$np" "${preflags[@]}" -x EPLB_FAULT \
      "$bin/eplb-sync" --stats "st/rank_%r.json" --shards shards --output map.json \
      --timeout 2 > out.txt 2> err.txt
  rc=$? took=$((SECONDS - start))
  ((rc != 0)) || die "a hung rank's job succeeded"
  ((rc != 124 && rc != 137)) || die "ended by the test's timeout (rc $rc): --timeout did not fire"
  ((took < 45)) || die "took $took s with --timeout 2"
  grep -q "rank 1: EPLB_FAULT: hanging at transfer" err.txt || die "no injected hang: $(tail -3 err.txt)"
  grep -q "^eplb: rank [0-9]*: error: layer [0-9]* batch [0-9]*: transfer timed out after 2 s waiting for rank\(s\)\? \([0-9]*, \)*1[ ,].*--recover --shards shards" err.txt ||
    die "no timeout error naming layer, rank 1 and the recovery: $(grep error err.txt)"
  [[ -e map.json ]] && die "a map was written after a failed migration"
  [[ $(cat shards/shard_?????.h5 | md5sum) == "$before" ]] || die "the shards changed"
  [[ -e shards/eplb_journal.json ]] && die "a journal was written"
  mpi "$bin/eplb-sync" --recover --shards shards > rec.txt 2>&1 || die "recover: $(cat rec.txt)"
  [[ $(generation_of) == 0 ]] || die "generation $(generation_of), want 0"
  ls shards | grep -q tmp && die "temporary files left: $(ls shards)"
  [[ $(cat shards/shard_?????.h5 | md5sum) == "$before" ]] || die "the shards changed after --recover"
  ;;
bad)
  setup
  bad=$((np - 1))
  mv "shards/$(printf 'shard_%05d.h5' "$bad")" missing.h5
  before=$(cat shards/*.h5 | md5sum)
  mpi "$bin/eplb-sync" --stats "st/rank_%r.json" --shards shards --output map.json \
      > out.txt 2> err.txt && die "a missing shard succeeded"
  grep -q "rank $bad: .*shard_0000$bad.h5" err.txt || die "message: $(head -3 err.txt)"
  [[ $(cat shards/*.h5 | md5sum) == "$before" ]] || die "the other shards changed"
  [[ -e map.json ]] && die "a map was written"
  ;;
*) die "unknown group $group" ;;
esac
((fail == 0)) && echo "sync_shards $group at $np ranks: ok"
exit $fail

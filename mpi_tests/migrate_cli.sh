#!/usr/bin/env bash
# migrate_cli.sh - moving expert weights between HDF5 shards, end to end:
# eplb-shard creates shards with provable content, test_migrate_driver
# migrates them under mpiexec, eplb-shard verify proves every byte.
#
# usage: migrate_cli.sh GROUP NP BIN_DIR DRIVER TMP_DIR MPIEXEC [PREFLAGS...]
#   move       two migrations in a row (random maps, mixed datasets: float16,
#              float32, uint8, int64, different shapes; small batches; 2
#              nodes when NP >= 4): every byte of every slot is its expert's,
#              the map is the target, generation 1 then 2, experts_received
#              is the minimum (checked by the driver), no debris left
#   crash-transfer|crash-commit|crash-rename
#              EPLB_FAULT=crash:<phase>:1: the job ends non-zero (no hang);
#              the recovery gives one generation everywhere whose content
#              matches that generation's map byte for byte (transfer,
#              commit: the old one; rename: the new one)
#   crash-ip-transfer|crash-ip-commit|crash-ip-apply|crash-ip-rename
#              the same for an in-place commit (--commit in-place: redo
#              journals): apply = halfway through applying its journal;
#              apply and rename roll forward (the journal replayed), with
#              the at-rest checksums matching
#   hang-transfer
#              EPLB_FAULT=hang:transfer:<bad>: that rank sleeps (until
#              killed) before posting a batch it sends in; with --timeout 2
#              the job must end non-zero within 45 s (the hung rank would
#              sleep for hours: mpiexec returning proves it was killed), no
#              rank reports success, the error names the rank waiting, the
#              layer, the timeout and the hung rank, says what to run, and
#              every shard is byte for byte as before; the recovery then
#              removes the temporary files and leaves generation 0
#   lost-write EPLB_FAULT=lose-write:<bad> (the first write of that rank's
#              final flush is dropped while HDF5 is told it succeeded: a
#              lost write; in place, a byte of its redo journal changes
#              after the fsync) and enospc:<bad> (it fails with ENOSPC
#              once), for a rewrite and for an in-place commit:
#              every rank fails, the error names the rank and the read-back
#              (or the failed flush), every shard is byte for byte as
#              before, no debris
#   corrupt-row
#              EPLB_FAULT=corrupt-row:<bad> (that rank flips a byte of the
#              first row set it receives, as a fault in transit would), for
#              a rewrite and for an in-place commit: every rank fails, the
#              error names rank <bad>'s file, the layer, slot, expert and
#              dataset, and the sender whose checksum the bytes miss; every
#              shard is byte for byte as before, no debris
#   disk-full  a real write failure (ulimit -f, SIGXFSZ ignored): eplb-shard
#              create exits 1 (no crash) and leaves no shard file; a
#              migration whose temporary shard outgrows the limit on every
#              rank fails with exit 1 on every rank (no SIGSEGV in
#              MPI_Finalize), the shards are untouched, no debris
#   h5py       shards written by h5py exactly as docs/shards.md shows
#              (attrs.update with str: variable-length UTF-8 strings;
#              tests/h5py_shards.py, Debian's /usr/bin/python3): inspected,
#              migrated twice, and h5py finds every slot holding its
#              expert's original bytes and the ids of the saved map
#   at-rest    shards made by create carry at-rest checksums (inspect says
#              so); a weight byte flipped behind eplb's back: verify
#              --checksums and a migration fail on every rank naming the
#              rank, layer, slot and dataset, nothing changes; `eplb-shard
#              checksum` refuses the corrupted directory (nothing written);
#              h5py shards without checksums verify --checksums as "carry
#              no", get them from `checksum` (no temporary file left, the
#              weights' bytes unchanged), then migrate with them
#   one-row    4 layers x 4 slots of 1 MiB rows per rank, one slot of one
#              rank changed (driver map "one-row"): committed in place on
#              every rank, eplb's count of bytes written to the shard
#              directory (journal + apply + metadata) and the ranks' own
#              /proc/self/io write_bytes are each at most 3 x the row's 1
#              MiB (+ 64 / 256 KiB), where a rewrite of the same change
#              (--commit rewrite) writes every shard whole; both verify
#   bad-ranks  shards of NP ranks opened (and recovered) by NP/2 ranks: every
#              rank fails, the message says to run with NP ranks
#   rollforward
#              a directory as a crash in the rename phase leaves it when
#              ranks 0..1 renamed and the others did not (built by hand
#              from a real migration): opening it is refused (journal),
#              the recovery renames the rest, generation 1 verifies
#   shard-cli  eplb-shard itself: usage errors exit 2 with one line naming
#              the option; create/inspect/verify round trip; verify finds a
#              single flipped weight byte (exit 1, rank/layer/slot named)
#   bad-missing|bad-truncated|bad-corrupt|bad-version|bad-dtype|bad-shape|
#   bad-ids|diverge
#              one bad shard (or one rank passing another plan): every rank
#              exits non-zero, rank 0's message names the bad rank, and
#              every shard is byte for byte as before
set -u
group=$1 np=$2 bin=$3 driver=$4 tmp=$5 mpiexec=$6
shift 6
preflags=("$@")
dir="$tmp/migrate_${group}_$np"
rm -rf "$dir" && mkdir -p "$dir/st" || exit 1
cd "$dir" || exit 1
fail=0
die() { echo "FAIL ($group, $np ranks): $*" >&2; fail=1; }
bad=$((np > 2 ? 2 : 1)) # the rank that misbehaves

create() {
  "$bin/eplb-shard" create --dir sh --ranks "$np" --layers 3 --experts $((np * 3)) \
    --slots-per-rank 4 --dataset w_gate:float16:8x16 --dataset w_down:float32:64 \
    --dataset scale:uint8:5 --dataset bias:int64: --quiet || die "create"
}

# Runs the driver on NP ranks; each rank writes st/rank<r>.rc.
drive() {
  rm -f st/*.rc
  timeout -k 5 90 "$mpiexec" -n "$np" "${preflags[@]}" "$driver" "$@" --status-dir st \
    > out.txt 2> err.txt
  echo $? > rc.mpiexec
}

all_failed() {
  local r
  [[ $(cat rc.mpiexec) != 0 ]] || die "mpiexec exited 0"
  for ((r = 0; r < np; r++)); do
    [[ -f st/rank$r.rc ]] || { die "rank $r left no exit code"; continue; }
    [[ $(cat st/rank$r.rc) != 0 ]] || die "rank $r exited 0"
  done
}

no_debris() {
  local left
  left=$(ls sh | grep -v '^shard_[0-9]\{5\}\.h5$')
  [[ -z $left ]] || die "left in the shard directory: $left"
}

verify() { # verify EXPECTED_MAP
  "$bin/eplb-shard" verify --dir sh --expect-map "$1" > verify.txt 2>&1 ||
    die "verify against $1: $(cat verify.txt)"
}

generation() { "$bin/eplb-shard" inspect --dir sh | awk '/^generation/ {print $2}'; }

case $group in
move)
  create
  nodes=1
  ((np >= 4)) && nodes=2
  drive migrate sh random:11 --save-map map1.json --buffer-mb 1 --nodes $nodes
  [[ $(cat rc.mpiexec) == 0 ]] || die "migration 1 failed: $(cat err.txt)"
  grep -q "experts_received" out.txt || die "no result printed: $(cat out.txt)"
  verify map1.json
  [[ $(generation) == 1 ]] || die "generation $(generation), want 1"
  drive migrate sh random:12 --save-map map2.json
  [[ $(cat rc.mpiexec) == 0 ]] || die "migration 2 failed: $(cat err.txt)"
  verify map2.json
  [[ $(generation) == 2 ]] || die "generation $(generation), want 2"
  no_debris
  ;;
crash-transfer | crash-commit | crash-rename | crash-ip-transfer | crash-ip-commit | crash-ip-apply | crash-ip-rename)
  phase=${group#crash-}
  commit=auto
  if [[ $phase == ip-* ]]; then phase=${phase#ip-} commit=in-place; fi
  create
  "$bin/eplb-shard" verify --dir sh --quiet || die "fresh shards do not verify"
  cp -r sh before
  # rank 0 saves the target map before migrating
  EPLB_FAULT=crash:$phase:$bad timeout -k 5 60 "$mpiexec" -n "$np" "${preflags[@]}" \
    -x EPLB_FAULT "$driver" migrate sh random:21 --save-map new.json --commit $commit > out.txt 2> err.txt
  rc=$?
  ((rc != 0)) || die "the crashed job exited 0"
  ((rc != 124 && rc != 137)) || die "the crashed job hung (timeout)"
  grep -q "injected\|crash" err.txt || die "no sign of the injected crash: $(head -5 err.txt)"
  drive recover sh
  [[ $(cat rc.mpiexec) == 0 ]] || die "recover failed: $(cat err.txt)"
  no_debris
  if [[ $commit == in-place && ($phase == rename || $phase == apply) ]]; then
    grep -q "recovered generation 1 forward 1 .* replayed [1-9]" out.txt ||
      die "the recovery replayed no redo journal: $(cat out.txt)"
  fi
  if [[ $phase == rename || $phase == apply ]]; then
    [[ $(generation) == 1 ]] || die "generation $(generation) after roll forward, want 1"
    verify new.json
    "$bin/eplb-shard" verify --dir sh --checksums --quiet || die "at-rest checksums after roll forward"
  else
    [[ $(generation) == 0 ]] || die "generation $(generation) after roll back, want 0"
    "$bin/eplb-shard" verify --dir sh --quiet || die "rolled back shards do not verify"
    cmp -s <(cd before && md5sum shard_*) <(cd sh && md5sum shard_*) ||
      die "rolled back shards differ from the originals"
  fi
  ;;
hang-transfer)
  create
  (cd sh && md5sum shard_?????.h5 > ../before.md5)
  rm -f st/*.rc
  start=$SECONDS
  EPLB_FAULT=hang:transfer:$bad timeout -k 5 60 "$mpiexec" -n "$np" "${preflags[@]}" \
    -x EPLB_FAULT "$driver" migrate sh random:21 --timeout 2 --status-dir st > out.txt 2> err.txt
  rc=$? took=$((SECONDS - start))
  ((rc != 0)) || die "the job with a hung rank exited 0"
  ((rc != 124 && rc != 137)) || die "the job with a hung rank was ended by the test's timeout (rc $rc): the transfer timeout did not fire"
  ((took < 45)) || die "the job took $took s with --timeout 2"
  for f in st/*.rc; do
    [[ -f $f && $(cat "$f") == 0 ]] && die "$f says that rank succeeded"
  done
  grep -q "rank $bad: EPLB_FAULT: hanging at transfer (layer [0-9]*, before posting batch" err.txt ||
    die "no sign of the injected hang: $(head -5 err.txt)"
  line=$(grep -m1 "error: layer [0-9]* batch [0-9]*: transfer timed out after 2 s waiting for rank" err.txt)
  [[ -n $line ]] || die "no timeout error naming the layer: $(head -5 err.txt)"
  [[ $line =~ ^eplb:\ rank\ [0-9]+:\ error: ]] || die "the error does not name its rank: $line"
  [[ $line =~ waiting\ for\ ranks?\ ([0-9]+,\ )*$bad[,\ ] ]] || die "the error does not name the hung rank $bad: $line"
  [[ $line == *"aborting the job"*"--recover --shards sh"* ]] || die "the error does not say what to do: $line"
  (cd sh && md5sum shard_?????.h5 > ../after.md5)
  cmp -s before.md5 after.md5 || die "a shard changed"
  # only temporary shards of generation 1 may be left (a killed rank
  # cannot remove its own); never a journal
  left=$(ls sh | grep -v '^shard_[0-9]\{5\}\.h5\(\.gen1\.tmp\)\?$')
  [[ -z $left ]] || die "left in the shard directory: $left"
  [[ -e sh/eplb_journal.json ]] && die "a journal was written"
  drive recover sh
  [[ $(cat rc.mpiexec) == 0 ]] || die "recover failed: $(cat err.txt)"
  grep -q "recovered generation 0 forward 0" out.txt || die "recovery: $(cat out.txt)"
  no_debris
  (cd sh && md5sum shard_?????.h5 > ../after.md5)
  cmp -s before.md5 after.md5 || die "a shard changed after the recovery"
  "$bin/eplb-shard" verify --dir sh --quiet || die "the shards do not verify"
  ;;
lost-write)
  create
  (cd sh && md5sum shard_* > ../before.md5)
  for fault in lose-write enospc ip-lose-write ip-enospc; do
    commit=rewrite
    [[ $fault == ip-* ]] && commit=in-place
    rm -f st/*.rc
    EPLB_FAULT=${fault#ip-}:$bad timeout -k 5 60 "$mpiexec" -n "$np" "${preflags[@]}" \
      -x EPLB_FAULT "$driver" migrate sh random:21 --commit $commit --status-dir st \
      > out.txt 2> err.txt
    echo $? > rc.mpiexec
    all_failed
    case $fault in
    # the lost write hits the first record or row, received or local: a
    # received row names its sender's checksum (the only one it carries)
    lose-write) want="rank $bad: .*shard_0000$bad.h5.gen1.tmp: layer [0-9]* slot [0-9]* (expert [0-9]*) dataset '[a-z_]*'\(, received from rank [0-9]*\)\?: the \(row\|bytes\) read back after the fsync" ;;
    enospc) want="rank $bad: .*writing the shard failed when HDF5 flushed its buffers" ;;
    ip-lose-write) want="rank $bad: .*shard_0000$bad.h5.gen1.redo: layer [0-9]* slot [0-9]* (expert [0-9]*) dataset '[a-z_]*'\(, received from rank [0-9]*\)\?: the \(row\|bytes\) read back after the fsync" ;;
    ip-enospc) want="rank $bad: .*shard_0000$bad.h5.gen1.redo: writing the redo journal failed: No space left on device" ;;
    esac
    grep -q "$want" err.txt || die "$fault: no error naming rank $bad: $(cat err.txt)"
    (cd sh && md5sum shard_* > ../after.md5)
    cmp -s before.md5 after.md5 || die "$fault: a shard changed"
    no_debris
  done
  ;;
corrupt-row)
  create
  (cd sh && md5sum shard_* > ../before.md5)
  for commit in rewrite in-place; do
    rm -f st/*.rc
    EPLB_FAULT=corrupt-row:$bad timeout -k 5 60 "$mpiexec" -n "$np" "${preflags[@]}" \
      -x EPLB_FAULT "$driver" migrate sh random:21 --commit $commit --status-dir st \
      > out.txt 2> err.txt
    echo $? > rc.mpiexec
    all_failed
    file=shard_0000$bad.h5.gen1.tmp
    [[ $commit == in-place ]] && file=shard_0000$bad.h5.gen1.redo
    want="rank $bad: .*$file: layer [0-9]* slot [0-9]* (expert [0-9]*) dataset '[a-z_]*', received from rank \([0-9]*\): the bytes read back after the fsync do not match the checksum rank \1 computed as it sent them (corrupted in transit"
    grep -q "$want" err.txt || die "$commit: no error naming rank $bad's corrupted row and its sender: $(cat err.txt)"
    grep -q "nothing was committed" err.txt || die "$commit: the error does not say nothing was committed"
    (cd sh && md5sum shard_* > ../after.md5)
    cmp -s before.md5 after.md5 || die "$commit: a shard changed"
    no_debris
  done
  "$bin/eplb-shard" verify --dir sh --checksums --quiet || die "the shards do not verify"
  ;;
disk-full)
  es="$bin/eplb-shard"
  for kb in 8 64 100; do
    rm -rf full
    (trap '' XFSZ; ulimit -f $kb
     exec "$es" create --dir full --ranks 2 --layers 4 --experts 4 --slots-per-rank 2 \
       --dataset w:float32:64x64 --quiet) > out.txt 2> err.txt
    rc=$?
    ((rc == 1)) || die "create under ulimit -f $kb exited $rc, want 1: $(cat err.txt)"
    grep -q "^eplb-shard: error: full/shard_0000[01].h5: " err.txt || die "create under ulimit -f $kb: $(cat err.txt)"
    [[ -z $(ls full) ]] || die "create under ulimit -f $kb left $(ls full)"
  done
  rm -rf full
  EPLB_FAULT=enospc:1 "$es" create --dir full --ranks 2 --layers 4 --experts 4 --slots-per-rank 2 \
    --dataset w:float32:4 --quiet > out.txt 2> err.txt
  rc=$?
  ((rc == 1)) || die "create with enospc:1 exited $rc, want 1"
  grep -q "full/shard_00001.h5: writing the shard failed" err.txt || die "create with enospc:1: $(cat err.txt)"
  [[ -e full/shard_00001.h5 ]] && die "create with enospc:1 left shard 1"
  "$es" create --dir sh --ranks "$np" --layers 4 --experts $((np * 2)) --slots-per-rank 2 \
    --dataset w:float32:64x64 --quiet || die "create"
  (cd sh && md5sum shard_* > ../before.md5)
  kb=$(($(stat -c %s sh/shard_00000.h5) / 1024 / 2))
  rm -f st/*.rc st/*.fin
  drive migrate sh random:3 --fsize-limit $kb
  all_failed
  for ((r = 0; r < np; r++)); do
    [[ $(cat st/rank$r.rc 2>/dev/null) == 1 ]] || die "rank $r did not exit 1"
  done
  # mpiexec may end the other ranks once one exits 1, but none may die of
  # a signal (HDF5 closing a file whose close failed, in MPI_Finalize)
  grep -qi "segmentation\|signal\|core dumped" err.txt && die "a rank crashed: $(cat err.txt)"
  grep -q "^test_migrate_driver: error: rank [0-9].*shard_0000[0-9].h5.gen1.tmp: .*disk full" err.txt ||
    die "no write error naming the rank and file: $(cat err.txt)"
  (cd sh && md5sum shard_* > ../after.md5)
  cmp -s before.md5 after.md5 || die "a shard changed"
  no_debris
  ;;
h5py)
  py=/usr/bin/python3 tool=$(dirname "$0")/../tests/h5py_shards.py
  mkdir -p sh
  "$py" "$tool" write sh "$np" 3 $((np * 3 - 1)) 4 || die "h5py writer"
  "$bin/eplb-shard" inspect --dir sh > inspect.txt 2>&1 || die "inspect: $(cat inspect.txt)"
  grep -q "^format            eplb-shard version 1" inspect.txt || die "inspect: $(cat inspect.txt)"
  for g in 1 2; do
    drive migrate sh random:$((50 + g)) --save-map map$g.json
    [[ $(cat rc.mpiexec) == 0 ]] || die "migration $g failed: $(cat err.txt)"
    "$py" "$tool" check sh $g map$g.json > check.txt 2>&1 || die "after migration $g: $(cat check.txt)"
  done
  no_debris
  ;;
at-rest)
  create
  "$bin/eplb-shard" inspect --dir sh | grep -q "^checksums         xxh3-64 per row and dataset ($np of $np shards)" ||
    die "inspect: $("$bin/eplb-shard" inspect --dir sh | grep checksums)"
  "$bin/eplb-shard" verify --dir sh --checksums --quiet || die "fresh shards: verify --checksums failed"
  f=$(printf 'sh/shard_%05d.h5' "$bad")
  "$driver" tamper "$f" byte || die "tamper"
  (cd sh && md5sum shard_* > ../before.md5)
  "$bin/eplb-shard" verify --dir sh --checksums > v.txt 2>&1 && die "verify --checksums passed a flipped byte"
  grep -q "rank $bad: .*layer 0 slot 1 dataset '[a-z_]*': the bytes do not match the shard's at-rest checksum" v.txt ||
    die "verify --checksums: $(cat v.txt)"
  drive migrate sh random:61
  all_failed
  grep -q "rank $bad: .*layer 0 slot 1 dataset '[a-z_]*': the bytes do not match the shard's at-rest checksum (xxh3-64)" err.txt ||
    die "the migration of a flipped byte: $(cat err.txt)"
  "$bin/eplb-shard" checksum --dir sh > c.txt 2>&1 && die "checksum passed a corrupted shard"
  (cd sh && md5sum shard_* > ../after.md5)
  cmp -s before.md5 after.md5 || die "a shard changed"
  no_debris
  rm -rf sh && mkdir sh
  py=/usr/bin/python3 tool=$(dirname "$0")/../tests/h5py_shards.py
  "$py" "$tool" write sh "$np" 3 $((np * 3 - 1)) 4 || die "h5py writer"
  "$bin/eplb-shard" verify --dir sh --checksums > v.txt 2>&1 && die "verify --checksums passed shards without"
  grep -q "$np of the $np shards in sh carry no at-rest checksums" v.txt || die "$(cat v.txt)"
  "$bin/eplb-shard" checksum --dir sh > c.txt 2>&1 || die "checksum: $(cat c.txt)"
  grep -q "added to $np, 0 had them" c.txt || die "checksum: $(cat c.txt)"
  no_debris
  "$py" "$tool" check sh 0 > check.txt 2>&1 || die "checksum changed the weights: $(cat check.txt)"
  "$bin/eplb-shard" verify --dir sh --checksums --quiet || die "verify --checksums after checksum"
  drive migrate sh random:62 --save-map m.json
  [[ $(cat rc.mpiexec) == 0 ]] || die "migration after checksum: $(cat err.txt)"
  "$py" "$tool" check sh 1 m.json > check.txt 2>&1 || die "after the migration: $(cat check.txt)"
  "$bin/eplb-shard" verify --dir sh --checksums --quiet || die "verify --checksums after the migration"
  ;;
one-row)
  row=1048576
  for commit in auto rewrite; do
    rm -rf sh
    "$bin/eplb-shard" create --dir sh --ranks "$np" --layers 4 --experts $((np * 3)) \
      --slots-per-rank 4 --dataset w:float32:512x512 --quiet || die "create"
    drive migrate sh one-row --save-map m.json --commit $commit
    [[ $(cat rc.mpiexec) == 0 ]] || die "$commit: $(cat err.txt)"
    verify m.json
    "$bin/eplb-shard" verify --dir sh --checksums --quiet || die "$commit: at-rest checksums"
    no_debris
    line=$(grep "^generation 1 " out.txt)
    written=$(sed -n 's/.* disk_written \([0-9]*\).*/\1/p' <<< "$line")
    inplace=$(sed -n 's/.* in_place \([0-9]*\) .*/\1/p' <<< "$line")
    proc=$(sed -n 's/^proc_write_bytes \(-\?[0-9]*\)/\1/p' out.txt)
    [[ -n $written && -n $proc ]] || die "$commit: no byte counts: $(cat out.txt)"
    echo "one-row, --commit $commit: disk_written $written, /proc write_bytes $proc (row $row)"
    if [[ $commit == auto ]]; then
      [[ $inplace == "$np" ]] || die "auto: $inplace of $np ranks in place"
      ((written <= 3 * row + 65536)) || die "auto: $written bytes written for one $row-byte row"
      ((proc < 0 || proc <= 3 * row + 262144)) || die "auto: /proc/self/io says $proc bytes for one $row-byte row"
    else
      [[ $inplace == 0 ]] || die "rewrite: $inplace ranks in place"
      ((written >= np * 16 * row)) || die "rewrite: only $written bytes written"
    fi
  done
  ;;
rollforward)
  create
  cp -r sh new
  drive migrate new random:41 --save-map map1.json
  [[ $(cat rc.mpiexec) == 0 ]] || die "migration failed: $(cat err.txt)"
  for ((r = 0; r < np; r++)); do
    f=$(printf 'shard_%05d.h5' "$r")
    if ((r < 2)); then cp "new/$f" "sh/$f"; else cp "new/$f" "sh/$f.gen1.tmp"; fi
  done
  printf '{"eplb_journal": 1, "state": "commit", "commit_generation": 1, "world_size": %d}\n' \
    "$np" > sh/eplb_journal.json
  drive migrate sh random:42
  all_failed
  grep -q "eplb_journal.json: an interrupted migration" err.txt ||
    die "a journal did not stop the migration: $(cat err.txt)"
  drive recover sh
  [[ $(cat rc.mpiexec) == 0 ]] || die "recover failed: $(cat err.txt)"
  grep -q "recovered generation 1 forward 1 back 0 renamed $((np - 2))" out.txt ||
    die "recovery did not rename $((np - 2)) shards: $(cat out.txt)"
  no_debris
  verify map1.json
  ;;
shard-cli)
  es="$bin/eplb-shard"
  usage() { # usage WANT_TEXT ARGS...: exit 2, one "error:" line naming WANT_TEXT
    local want=$1
    shift
    "$es" "$@" > u.out 2> u.err
    local rc=$?
    ((rc == 2)) || die "'$*' exited $rc, want 2"
    [[ $(grep -c "eplb-shard: error:" u.err) == 1 ]] || die "'$*': $(cat u.err)"
    grep -q -- "$want" u.err || die "'$*' does not name '$want': $(cat u.err)"
  }
  usage "command is required"
  usage "unknown command 'frobnicate'" frobnicate --dir x
  usage "--dir D is required" verify
  usage "--ranks 0 is outside 1..4096" create --dir x --ranks 0 --layers 1 --experts 1 --slots-per-rank 1
  usage "--layers 99999 is outside" create --dir x --ranks 1 --layers 99999 --experts 1 --slots-per-rank 1
  usage "create needs" create --dir x --ranks 2
  usage "must hold the 9 experts" create --dir x --ranks 2 --layers 1 --experts 9 --slots-per-rank 4
  usage "type 'float8'" create --dir x --ranks 1 --layers 1 --experts 1 --slots-per-rank 1 --dataset w:float8:4
  usage "dimensions must be" create --dir x --ranks 1 --layers 1 --experts 1 --slots-per-rank 1 --dataset w:int8:4x
  usage "unknown option '--bogus'" inspect --dir x --bogus
  usage "--generation '-1'" create --dir x --ranks 1 --layers 1 --experts 1 --slots-per-rank 1 --generation -1
  "$es" --help | grep -q "slots-per-rank P   slots per rank per layer, 1..65536" || die "--help lacks ranges"
  create
  "$es" inspect --dir sh > inspect.txt || die "inspect failed"
  grep -q "^dataset           w_gate float16 \[4, 8, 16\]" inspect.txt || die "inspect: $(cat inspect.txt)"
  grep -q "^generation        0" inspect.txt || die "inspect: no generation"
  "$es" verify --dir sh > v.txt || die "fresh shards do not verify: $(cat v.txt)"
  f=$(printf 'sh/shard_%05d.h5' "$bad")
  "$driver" tamper "$f" byte || die "tamper"
  "$es" verify --dir sh > v.txt 2>&1
  rc=$?
  ((rc == 1)) || die "verify of a flipped byte exited $rc, want 1"
  grep -q "rank $bad: .*layer 0 slot 1: the weights are not expert" v.txt ||
    die "verify does not name rank, layer and slot: $(cat v.txt)"
  "$es" verify --dir missing_dir > v.txt 2>&1 && die "verify of a missing directory passed"
  grep -q "rank 0: missing_dir/shard_00000.h5: cannot read" v.txt || die "$(cat v.txt)"
  ;;
bad-ranks)
  create
  (cd sh && md5sum shard_* > ../before.md5)
  half=$((np / 2))
  for cmd in "migrate sh random:5" "recover sh"; do
    rm -f st/*.rc
    timeout -k 5 60 "$mpiexec" -n "$half" "${preflags[@]}" "$driver" $cmd --status-dir st \
      > out.txt 2> err.txt && die "$cmd at $half ranks exited 0"
    for ((r = 0; r < half; r++)); do
      [[ -f st/rank$r.rc && $(cat st/rank$r.rc) != 0 ]] || die "$cmd: rank $r did not fail"
    done
    grep -q "written for $np ranks.*run .*with $np ranks" err.txt ||
      die "$cmd: no hint to run with $np ranks: $(cat err.txt)"
  done
  (cd sh && md5sum shard_* > ../after.md5)
  cmp -s before.md5 after.md5 || die "a shard changed"
  no_debris
  ;;
bad-* | diverge)
  create
  f=$(printf 'sh/shard_%05d.h5' "$bad")
  extra=()
  case $group in
  bad-missing) rm -f "$f" ;;
  bad-truncated) truncate -s $(($(stat -c %s "$f") / 2)) "$f" ;;
  bad-corrupt) printf 'XXXXXXXXXXXXXXXX' | dd of="$f" conv=notrunc bs=1 seek=0 2>/dev/null ;;
  bad-version) "$driver" tamper "$f" version || die "tamper" ;;
  bad-dtype) "$driver" tamper "$f" dtype || die "tamper" ;;
  bad-shape) "$driver" tamper "$f" shape || die "tamper" ;;
  bad-ids) "$driver" tamper "$f" ids || die "tamper" ;;
  diverge) extra=(--diverge-rank "$bad") ;;
  esac
  (cd sh && md5sum shard_* > ../before.md5 2>/dev/null)
  drive migrate sh random:31 "${extra[@]}"
  all_failed
  grep -q "rank $bad" err.txt || die "rank $bad not named: $(cat err.txt)"
  [[ $(grep -c "error:" err.txt) == 1 ]] || die "error not printed exactly once: $(cat err.txt)"
  (cd sh && md5sum shard_* > ../after.md5 2>/dev/null)
  cmp -s before.md5 after.md5 || die "a shard changed"
  no_debris
  ;;
*)
  die "unknown group"
  ;;
esac
((fail == 0)) && echo "ok: $group at $np ranks"
exit $fail

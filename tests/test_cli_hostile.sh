#!/usr/bin/env bash
# test_cli_hostile.sh - the programs against a careless or hostile user:
# an output that is an input (by another name, a glob, a symbolic link, a
# file inside a dump directory), a FIFO given as an input, standard output
# on a full device, a disk that fills while eplb-synth-stats writes, and
# --help texts whose ranges must read in order.
#
# Usage: test_cli_hostile.sh BIN_DIR DATA_DIR TMP_DIR
# Every command that could block runs under `timeout`: a hang is a failure
# (exit 124), not a stalled suite.
set -u
bin=$(cd "${1:?BIN_DIR}" && pwd) || exit 1
data=$(cd "${2:?DATA_DIR}" && pwd) || exit 1
tmp=${3:?TMP_DIR}/cli_hostile
rm -rf "$tmp" && mkdir -p "$tmp/sub" || exit 1
cd "$tmp" || exit 1
tmp=$PWD

failures=0
checks=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# expect CODE NEEDLE PROG ARGS...: PROG exits CODE (within 20 s) with one
# line on stderr that contains NEEDLE.
expect() {
  local code=$1 needle=$2 prog=$3
  shift 3
  checks=$((checks + 1))
  timeout -k 2 20 "$bin/$prog" "$@" >stdout.txt 2>stderr.txt
  local rc=$? err
  err=$(cat stderr.txt)
  [ "$rc" -eq "$code" ] || fail "$prog $*: exit $rc, want $code (stderr: $err)"
  case "$err" in
    *"$needle"*) ;;
    *) fail "$prog $*: stderr lacks '$needle': $err" ;;
  esac
  [ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ] || fail "$prog $*: not one line on stderr: $err"
}

# same FILE COPY: FILE is still byte for byte COPY (else restored, so that
# one failure does not cascade).
same() {
  checks=$((checks + 1))
  cmp -s "$1" "$2" || { fail "$1 was changed"; cp "$2" "$1"; }
}

A=$data/ms_part_a.json
cp "$A" a.json && cp "$A" a.orig
cp "$A" b.json

# ---- an output that is an input ----------------------------------------
P=(--num-slots 12 --num-gpus 4 --quiet)
expect 2 "is the same file as --stats" eplb-plan --stats "$tmp/a.json" "${P[@]}" --output ./a.json
same a.json a.orig
expect 2 "is the same file as" eplb-plan --stats "$tmp/sub/../a.json" "${P[@]}" --output a.json
expect 2 "refusing to overwrite an input" eplb-plan --stats 'b.json' --stats '[a].json' "${P[@]}" --output a.json
same a.json a.orig
ln -sf a.json link.json
expect 2 "link.json" eplb-plan --stats link.json "${P[@]}" --output a.json
same a.json a.orig
expect 2 "is the same file as" eplb-plan --stats a.json "${P[@]}" --output link.json
same a.json a.orig
# A file inside a dump directory.
mkdir -p mie/decode
printf '{"num_moe_layers": 2, "num_of_experts": 4}' > mie/model_gen_config.json
printf '1,2\n3,4\n' > mie/decode/decode_0.csv
cp mie/decode/decode_0.csv csv.orig
expect 2 "decode_0.csv" eplb-plan --stats mie --num-slots 4 --num-gpus 2 --output mie/decode/decode_0.csv
same mie/decode/decode_0.csv csv.orig
# --current-map M --output M replaces the map on purpose: still allowed.
checks=$((checks + 1))
"$bin/eplb-plan" --stats a.json "${P[@]}" --output map.json || fail "first map"
"$bin/eplb-plan" --stats b.json "${P[@]}" --current-map map.json --output map.json \
  || fail "--current-map M --output M refused"
# eplb-report: --json and --svg onto --stats or --map, or onto each other.
expect 2 "--json" eplb-report --stats a.json --json "$tmp/a.json"
same a.json a.orig
expect 2 "--svg" eplb-report --stats a.json --svg ./a.json
same a.json a.orig
cp map.json map.orig
expect 2 "--json" eplb-report --stats a.json --map map.json --json map.json
same map.json map.orig
expect 2 "name the same file" eplb-report --stats a.json --json r.out --svg ./r.out
[ -e r.out ] && fail "eplb-report wrote r.out"
# eplb-shard create --map: the map may not be one of the shards it writes.
mkdir -p shards
"$bin/eplb-shard" create --dir shards --ranks 2 --layers 1 --experts 4 \
  --slots-per-rank 2 --quiet
cp shards/shard_00001.h5 shard1.copy
expect 2 "is the same file as --map" eplb-shard create --dir shards --ranks 2 \
  --layers 1 --experts 4 --slots-per-rank 2 --map shards/shard_00001.h5
same shards/shard_00001.h5 shard1.copy
# An output that is a device or a FIFO: the rename would replace it.
mkfifo out.fifo
expect 2 "FIFO" eplb-plan --stats a.json "${P[@]}" --output out.fifo
[ -p out.fifo ] || fail "out.fifo was replaced"

# ---- a FIFO as an input ----------------------------------------------------
mkfifo in.fifo
expect 1 "in.fifo: is a FIFO" eplb-plan --stats in.fifo "${P[@]}" --output o.json
expect 1 "in.fifo: is a FIFO" eplb-plan --stats a.json "${P[@]}" --current-map in.fifo --output o.json
expect 1 "in.fifo: is a FIFO" eplb-report --stats in.fifo
expect 1 "in.fifo: is a FIFO" eplb-report --stats a.json --map in.fifo
expect 1 "is a character device" eplb-plan --stats /dev/zero "${P[@]}" --output o.json

# ---- standard output on a full device: exit 1, not 0 -------------------------
if [ -c /dev/full ]; then
  checks=$((checks + 1))
  for prog in eplb-plan eplb-report eplb-synth-stats eplb-shard; do
    timeout 20 "$bin/$prog" --help >/dev/full 2>stderr.txt
    rc=$?
    [ "$rc" -eq 1 ] || fail "$prog --help >/dev/full: exit $rc, want 1"
    grep -q "$prog: error: .*standard output" stderr.txt || fail "$prog: $(cat stderr.txt)"
  done
  timeout 20 "$bin/eplb-plan" --stats a.json --num-slots 12 --num-gpus 4 --output o.json >/dev/full 2>/dev/null
  [ $? -eq 1 ] || fail "eplb-plan >/dev/full: not exit 1"
  timeout 20 "$bin/eplb-report" --stats a.json --json - >/dev/full 2>/dev/null
  [ $? -eq 1 ] || fail "eplb-report --json - >/dev/full: not exit 1"
else
  echo "note: /dev/full is missing; standard output checks skipped"
fi

# ---- a disk that fills: eplb-synth-stats leaves nothing half-written --------
checks=$((checks + 1))
(
  trap '' XFSZ
  ulimit -f 8 # 8 KiB: the file below is larger
  exec "$bin/eplb-synth-stats" --out big.json --layers 58 --experts 256
) 2>stderr.txt
rc=$?
[ "$rc" -eq 1 ] || fail "eplb-synth-stats on a full disk: exit $rc, want 1"
[ -e big.json ] && fail "eplb-synth-stats left big.json ($(stat -c %s big.json) bytes)"
ls big.json.tmp.* >/dev/null 2>&1 && fail "eplb-synth-stats left a temporary file"
grep -q "eplb-synth-stats: error: big.json" stderr.txt || fail "synth message: $(cat stderr.txt)"

# ---- --help: ranges in the right places ---------------------------------------
checks=$((checks + 1))
help=$("$bin/eplb-plan" --help)
case "$help" in *"--num-nodes N        nodes, 1..G"*) ;; *) fail "eplb-plan --help: --num-nodes range" ;; esac
case "$help" in *"expert groups, 1..experts"*) ;; *) fail "eplb-plan --help: --num-groups range" ;; esac
case "$help" in *"0 <= A <= B <= 1000000000"*) ;; *) fail "eplb-plan --help: --iter-range range" ;; esac

# ---- eplb-report: a map that does not say G names its slots ----------------------
printf 'initial_global_assignments:\n  0: [0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3]\n  1: [0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3]\n  2: [0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3]\n  3: [0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3]\nnum_slots: 12\n' > map.yaml
expect 2 "its 12 slots" eplb-report --stats a.json --map map.yaml

echo "test_cli_hostile: $checks checks, $failures failures"
[ "$failures" -eq 0 ]

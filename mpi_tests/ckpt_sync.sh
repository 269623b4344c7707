#!/usr/bin/env bash
# ckpt_sync.sh - a checkpoint imported, migrated by `eplb-sync --shards`
# twice, verified against the checkpoint and exported back byte for byte.
#
# usage: ckpt_sync.sh NP BIN_DIR TMP_DIR CKPT_TOOL PYTHON MPIEXEC [PREFLAGS...]
#   A DeepSeek-style checkpoint (FP8 weights with F32 block scales, a dense
#   layer 0, so MoE layer ids 1..3) and a Qwen-style BF16 one are imported
#   on NP ranks; after each migration (skewed statistics, then others)
#   verify --checkpoint --expect-map proves every slot holds its expert's
#   bytes, h5py sees /layer_ids, /checkpoint and the opaque float8 /
#   bfloat16 types carried over, and export --logical gives back the
#   original expert tensors.
set -u
np=$1 bin=$2 tmp=$3 tool=$4 py=$5 mpiexec=$6
shift 6
preflags=("$@")
dir="$tmp/ckpt_sync_$np"
rm -rf "$dir" && mkdir -p "$dir" && cd "$dir" || exit 1
fail=0
die() { echo "FAIL (ckpt_sync, $np ranks): $*" >&2; fail=1; }
mpi() { timeout -k 5 90 "$mpiexec" -n "$np" "${preflags[@]}" "$@"; }

run() { # run NAME FAMILY DTYPE TAG
  local n=$1 fam=$2 dt=$3 tag=$4
  "$py" "$tool" write "$n" --family "$fam" --dtype "$dt" --layers 4 --first-moe 1 \
      --experts 12 --hidden 32 --inter 16 --files 3 || { die "writer $n"; return; }
  "$bin/eplb-shard" import --checkpoint "$n" --dir "$n.sh" --ranks "$np" \
      --slots-per-rank $((12 / np + 2)) --quiet || { die "import $n"; return; }
  for seed in 5 6; do
    mkdir -p "st$seed"
    "$bin/eplb-synth-stats" --out "st$seed/rank_%r.json" --ranks "$np" --layers 3 \
        --experts 12 --tokens 30000 --skew 1.4 --seed "$seed" > /dev/null || die "synth"
    mpi "$bin/eplb-sync" --stats "st$seed/rank_%r.json" --shards "$n.sh" --output "$n.map$seed.json" \
        > out.txt 2> err.txt || { die "$n: eplb-sync: $(tail -3 err.txt)"; return; }
    grep -q "shards moved to generation" out.txt || die "$n: nothing moved: $(cat out.txt)"
    "$bin/eplb-shard" verify --dir "$n.sh" --checkpoint "$n" --expect-map "$n.map$seed.json" \
        > v.txt 2>&1 || die "$n: verify after migration (seed $seed): $(cat v.txt)"
  done
  "$bin/eplb-shard" inspect --dir "$n.sh" | grep -q "^layer ids  *1 2 3$" || die "$n: layer ids lost"
  "$py" "$tool" check-h5 "$n.sh" "$tag" > h.txt 2>&1 || die "$n: $(cat h.txt)"
  "$bin/eplb-shard" export --dir "$n.sh" --out "$n.out" --logical --quiet || die "$n: export"
  "$py" "$tool" compare "$n" "$n.out" > c.txt 2>&1 || die "$n: $(cat c.txt)"
}
run ds deepseek fp8 float8_e4m3fn
run qw qwen bf16 bfloat16
((fail == 0)) && echo "ckpt_sync at $np ranks: ok"
exit $fail

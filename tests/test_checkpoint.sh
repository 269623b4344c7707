#!/usr/bin/env bash
# test_checkpoint.sh - eplb-shard import / export / verify --checkpoint as a
# user runs them, on checkpoints written by an independent writer
# (tests/ckpt_tool.py: numpy + json) and shards written by h5py.
#
# usage: test_checkpoint.sh GROUP BIN_DIR TMP_DIR PYTHON
#   roundtrip  DeepSeek-style FP8 with block scales (3 files, index, dense
#              layer 0, shared experts): import (contiguous, redundant
#              slots), verify --checkpoint, export --logical (split in
#              files, index) equal to the original expert tensors byte for
#              byte, per-rank export whose every slot is its expert's bytes;
#              export --logical refuses to write over the original
#              checkpoint; a flipped byte in a shard is caught by verify
#   families   Qwen2-MoE BF16 (shared_expert, one file, no index), Mixtral
#              BF16 (w1/w2/w3 -> gate/down/up), a custom naming through
#              --pattern: each imports, verifies and exports byte-exact;
#              --layers keeps a range of model layer ids
#   map        import with --map (replicas, several copies on one rank),
#              verify --checkpoint --expect-map
#   malformed  truncated file, offsets out of range, a missing tensor, a
#              tensor the index names but its file lacks, another shape for
#              one expert, a name twice in a header, twice in the index, no
#              family, expert ids far beyond the tensors (in bounded
#              memory): exit 1, one line naming the file and the tensor, no
#              shard written and earlier shards untouched; a journal or a
#              larger job's shard in the directory refuses the import
#   usage      option errors exit 2 and name the option and its range
#   h5py       shards written by h5py with the documented opaque bfloat16 /
#              float8_e4m3fn types, /layer_ids and /checkpoint: inspect,
#              verify --checkpoint and export read them
set -u
group=$1 bin=$2 tmp=$3 py=$4
tool="$(cd "$(dirname "$0")" && pwd)/ckpt_tool.py"
dir="$tmp/checkpoint_$group"
rm -rf "$dir" && mkdir -p "$dir" && cd "$dir" || exit 1
fail=0
die() { echo "FAIL ($group): $*" >&2; fail=1; }
shard() { "$bin/eplb-shard" "$@"; }
ck() { "$py" "$tool" "$@"; }
DS="model.layers.{layer}.mlp.experts.{expert}.{name}"

# expect_fail EXIT NEEDLE CMD...: the command fails with EXIT, one line of
# stderr holding NEEDLE.
expect_fail() {
  local want=$1 needle=$2
  shift 2
  "$@" > out.txt 2> err.txt
  local rc=$?
  [[ $rc == "$want" ]] || die "$*: exit $rc, want $want: $(cat err.txt)"
  [[ $(wc -l < err.txt) == 1 ]] || die "$*: not one line: $(cat err.txt)"
  grep -qF -- "$needle" err.txt || die "$*: no '$needle' in: $(cat err.txt)"
}

case $group in
roundtrip)
  ck write ck --family deepseek --dtype fp8 --layers 5 --first-moe 1 --experts 8 \
     --hidden 256 --inter 128 --files 3 || die "writer"
  shard import --checkpoint ck --dir sh --ranks 4 --slots-per-rank 3 > imp.txt \
    || die "import: $(cat imp.txt)"
  grep -q "imported deepseek/qwen checkpoint ck (3 files): 4 MoE layers (ids 1..4), 8 experts x 6 tensors" imp.txt \
    || die "import summary: $(cat imp.txt)"
  grep -q "left out: dense layers 0; shared experts in 4 layers (24 tensors)" imp.txt \
    || die "left-out line: $(cat imp.txt)"
  ls sh | grep -q tmp && die "temporary files left: $(ls sh)"
  shard inspect --dir sh > ins.txt || die "inspect"
  grep -q "^layer ids  *1 2 3 4$" ins.txt || die "layer ids: $(grep 'layer ids' ins.txt)"
  grep -q "^dataset  *gate_proj float8_e4m3fn \[3, 128, 256\]" ins.txt || die "fp8 dataset: $(grep dataset ins.txt)"
  grep -q "^dataset  *down_proj_scale_inv float32 \[3, 2, 1\]" ins.txt || die "scales: $(grep dataset ins.txt)"
  shard verify --dir sh --checkpoint ck > ver.txt || die "verify: $(cat ver.txt)"
  grep -q "verified 4 shards .* 4 layers x 12 slots, 8 experts, 288 tensors" ver.txt || die "$(cat ver.txt)"
  shard export --dir sh --out lo --logical --file-size-mb 1 > exp.txt || die "export --logical"
  [[ $(ls lo/model-*-of-*.safetensors | wc -l) -ge 2 ]] || die "not split: $(ls lo)"
  ck compare ck lo > cmp.txt || die "logical export differs: $(cat cmp.txt)"
  grep -q "compare: 192 expert tensors identical" cmp.txt || die "$(cat cmp.txt)"
  shard export --dir sh --out lo --logical --file-size-mb 1 --quiet || die "export again into lo"
  # Never over a checkpoint eplb did not write: the original stays as it was.
  sum=$(cat ck/* | md5sum)
  expect_fail 1 "--out ck holds a checkpoint eplb did not export" shard export --dir sh --out ck --logical
  [[ $(cat ck/* | md5sum) == "$sum" ]] || die "the checkpoint changed"
  shard export --dir sh --out ranks --format safetensors > exp2.txt || die "export per rank"
  [[ $(ls ranks) == "$(printf 'rank_%05d.safetensors\n' 0 1 2 3)" ]] || die "rank files: $(ls ranks)"
  ck check-ranks ck ranks "$DS" > chk.txt || die "per-rank export: $(cat chk.txt)"
  grep -q "288 slot tensors in 4 files" chk.txt || die "$(cat chk.txt)"
  ls lo ranks | grep -q tmp && die "export left temporary files"
  # A flipped byte in one slot's weights: verify names rank, layer, slot,
  # dataset and the tensor.
  "$py" - sh/shard_00002.h5 <<'EOF' || die "flip"
import sys, numpy as np, h5py
with h5py.File(sys.argv[1], "r+") as f:
    d = f["layers/1/up_proj"]
    t = d.id.get_type()
    buf = np.empty(d.shape, dtype=np.uint8)
    d.id.read(h5py.h5s.ALL, h5py.h5s.ALL, buf, mtype=t)
    buf[2, 5, 7] ^= 1
    d.id.write(h5py.h5s.ALL, h5py.h5s.ALL, buf, mtype=t)
EOF
  expect_fail 1 "rank 2: sh/shard_00002.h5: layer 1 (model layer 2) slot 2 dataset 'up_proj': byte $((5 * 256 + 7)) differs from \"model.layers.2.mlp.experts.0.up_proj.weight\"" \
    shard verify --dir sh --checkpoint ck
  ;;
families)
  ck write qw --family qwen --dtype bf16 --layers 3 --experts 6 --files 1 --no-index || die "writer qwen"
  shard import --checkpoint qw --dir sq --ranks 2 --slots-per-rank 3 > imp.txt || die "import qwen: $(cat imp.txt)"
  grep -q "shared experts in 3 layers (12 tensors)" imp.txt || die "qwen shared: $(cat imp.txt)"
  shard verify --dir sq --checkpoint qw --quiet || die "verify qwen"
  shard export --dir sq --out qo --logical --quiet && ck compare qw qo > /dev/null || die "qwen round trip"
  ck write mx --family mixtral --dtype bf16 --layers 2 --experts 4 --files 2 || die "writer mixtral"
  shard import --checkpoint mx --dir sm --ranks 2 --slots-per-rank 2 > imp.txt || die "import mixtral"
  grep -q "imported mixtral checkpoint" imp.txt || die "$(cat imp.txt)"
  [[ $(shard inspect --dir sm | grep -c '^dataset  *\(gate\|up\|down\)_proj bfloat16') == 3 ]] \
    || die "mixtral roles: $(shard inspect --dir sm | grep dataset)"
  shard verify --dir sm --checkpoint mx --quiet || die "verify mixtral"
  shard export --dir sm --out mo --logical --quiet && ck compare mx mo > /dev/null || die "mixtral round trip"
  ck write cu --family custom --dtype f32 --layers 3 --experts 4 --files 2 || die "writer custom"
  expect_fail 1 "give --pattern" shard import --checkpoint cu --dir sc --ranks 2 --slots-per-rank 2
  pat='transformer.h.{layer}.moe.expert_{expert}.mlp.{name}'
  shard import --checkpoint cu --dir sc --ranks 2 --slots-per-rank 2 --pattern "$pat" --layers 1-2 \
    > imp.txt || die "import --pattern: $(cat imp.txt)"
  grep -q "2 MoE layers (ids 1..2)" imp.txt || die "$(cat imp.txt)"
  grep -q "; MoE layers outside --layers: 0$" imp.txt || die "$(cat imp.txt)"
  shard inspect --dir sc | grep -q "^dataset  *fc1 float32" || die "custom roles"
  shard verify --dir sc --checkpoint cu --quiet || die "verify custom"
  shard export --dir sc --out co --logical --quiet || die "export custom"
  ck compare cu co > cmp.txt 2>&1 && die "a 2-layer export equals the 3-layer checkpoint"
  grep -q "does not hold exactly" cmp.txt || die "$(cat cmp.txt)"
  shard import --checkpoint cu --dir sc --ranks 2 --slots-per-rank 2 --pattern "$pat" --quiet || die "all layers"
  shard export --dir sc --out co2 --logical --quiet && ck compare cu co2 > /dev/null || die "custom round trip"
  ;;
map)
  ck write ck --family deepseek --dtype bf16 --layers 3 --experts 6 --files 2 || die "writer"
  cat > map.json <<'EOF'
{"moe_layer_count": 3, "device_count": 3, "layer_list": [
 {"layer_id": 0, "device_count": 3, "device_list": [
  {"device_id": 0, "device_expert": [5, 5, 0, 1]}, {"device_id": 1, "device_expert": [2, 3, 4, 0]},
  {"device_id": 2, "device_expert": [1, 2, 3, 4]}]},
 {"layer_id": 1, "device_count": 3, "device_list": [
  {"device_id": 0, "device_expert": [0, 1, 2, 3]}, {"device_id": 1, "device_expert": [4, 5, 0, 1]},
  {"device_id": 2, "device_expert": [2, 3, 4, 5]}]},
 {"layer_id": 2, "device_count": 3, "device_list": [
  {"device_id": 0, "device_expert": [3, 2, 1, 0]}, {"device_id": 1, "device_expert": [5, 4, 3, 2]},
  {"device_id": 2, "device_expert": [1, 0, 5, 4]}]}]}
EOF
  shard import --checkpoint ck --dir sh --ranks 3 --map map.json --quiet || die "import --map"
  shard verify --dir sh --checkpoint ck --expect-map map.json > v.txt || die "verify --expect-map: $(cat v.txt)"
  [[ $(shard inspect --dir sh | grep '^layer 0 rank 0') =~ "5 5 0 1" ]] || die "map not followed"
  shard export --dir sh --out r --quiet && ck check-ranks ck r "$DS" > /dev/null || die "per-rank export"
  expect_fail 1 "--map map.json has 3 layers x 12 slots on 3 devices" \
    shard import --checkpoint ck --dir sh2 --ranks 2 --map map.json
  ;;
malformed)
  ck write good --family deepseek --dtype bf16 --layers 3 --first-moe 1 --experts 8 || die "writer"
  shard import --checkpoint good --dir sh --ranks 2 --slots-per-rank 4 --quiet || die "good import"
  before=$(cat sh/*.h5 | md5sum)
  while IFS='|' read -r defect needle; do
    ck write "bad_$defect" --family deepseek --dtype bf16 --layers 3 --first-moe 1 \
       --experts 8 --defect "$defect" || die "writer $defect"
    expect_fail 1 "$needle" shard import --checkpoint "bad_$defect" --dir sh --ranks 2 --slots-per-rank 4
    expect_fail 1 "$needle" shard import --checkpoint "bad_$defect" --dir fresh --ranks 2 --slots-per-rank 4
    [[ -e fresh ]] && die "$defect: a directory was made for a failed import"
    [[ $(cat sh/*.h5 | md5sum) == "$before" ]] || die "$defect: the earlier shards changed"
    [[ $(ls sh) == "$(printf 'shard_%05d.h5\n' 0 1)" ]] || die "$defect: debris: $(ls sh)"
  done <<'EOF'
truncate|bad_truncate/model-00003-of-00003.safetensors: tensor "lm_head.weight": data_offsets
offsets|bad_offsets/model-00003-of-00003.safetensors: tensor "lm_head.weight": data_offsets [
missing|tensor "model.layers.1.mlp.experts.3.down_proj.weight" is missing
index-missing|names tensor "model.layers.1.mlp.experts.0.gate_proj.weight_x" in bad_index-missing/model-00001-of-00003.safetensors, but that file's header lacks it
shape|bad_shape/model-00002-of-00003.safetensors: expert tensor "model.layers.1.mlp.experts.5.up_proj.weight" is BF16 [9, 16] where "model.layers.1.mlp.experts.0.up_proj.weight" is BF16 [8, 16]
duplicate|tensor "model.layers.2.mlp.experts.0.down_proj.weight" appears twice in the header
index-duplicate|bad_index-duplicate/model.safetensors.index.json: weight_map names tensor "model.embed_tokens.weight" twice
EOF
  # Expert ids up to 65535 in 32 layers and 32 roles, one tensor each (3 KB
  # of header): refused by naming a missing tensor, in a few megabytes (a
  # table of every (layer, expert, role) took 1.5 GB to say so).
  mkdir -p sparse
  "$py" - sparse/model.safetensors <<'PY' || die "sparse writer"
import json, struct, sys
h = {f"model.layers.{i}.mlp.experts.65535.r{i}.weight":
     {"dtype": "U8", "shape": [1], "data_offsets": [i, i + 1]} for i in range(32)}
t = json.dumps(h).encode()
open(sys.argv[1], "wb").write(struct.pack("<Q", len(t)) + t + bytes(32))
PY
  peak='import resource, subprocess, sys
rc = subprocess.call(sys.argv[2:])
open(sys.argv[1], "w").write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(rc)'
  expect_fail 1 'tensor "model.layers.0.mlp.experts.0.r0.weight" is missing' \
    "$py" -c "$peak" rss.txt "$bin/eplb-shard" import --checkpoint sparse --dir x --ranks 2 --slots-per-rank 32768
  (( $(cat rss.txt) < 300000 )) || die "sparse: the refusal took $(cat rss.txt) KB"
  grep -q "truncated" <(shard import --checkpoint bad_truncate --dir x --ranks 2 --slots-per-rank 4 2>&1) \
    || die "truncation not called so"
  printf 'not json' > bad_index.json && mkdir -p bad_idx && mv bad_index.json bad_idx/model.safetensors.index.json
  expect_fail 1 "bad_idx/model.safetensors.index.json" shard import --checkpoint bad_idx --dir x --ranks 2 --slots-per-rank 4
  mkdir -p empty
  expect_fail 1 "neither model.safetensors.index.json nor a *.safetensors file" \
    shard import --checkpoint empty --dir x --ranks 2 --slots-per-rank 4
  expect_fail 2 "must hold the checkpoint's 8 experts" \
    shard import --checkpoint good --dir x --ranks 2 --slots-per-rank 3
  expect_fail 2 "no MoE layer in the --layers range 7..9 (layers with experts: 1-2)" \
    shard import --checkpoint good --dir x --ranks 2 --slots-per-rank 4 --layers 7-9
  # A larger job's shard, a migration journal: refused, nothing written.
  cp sh/shard_00001.h5 sh/shard_00002.h5
  expect_fail 1 "shard_00002.h5 belongs to a job of more than 2 ranks" \
    shard import --checkpoint good --dir sh --ranks 2 --slots-per-rank 4
  rm sh/shard_00002.h5
  echo '{}' > sh/eplb_journal.json
  expect_fail 1 "holds a migration journal" shard import --checkpoint good --dir sh --ranks 2 --slots-per-rank 4
  rm sh/eplb_journal.json
  [[ $(cat sh/*.h5 | md5sum) == "$before" ]] || die "the shards changed"
  # verify against another checkpoint: the first difference is named.
  ck write other --family deepseek --dtype bf16 --layers 3 --first-moe 1 --experts 8 --seed 9 || die "writer"
  expect_fail 1 "differs from \"model.layers.1.mlp.experts.0.down_proj.weight\" in other/" \
    shard verify --dir sh --checkpoint other
  ;;
usage)
  mkdir -p c
  expect_fail 2 "import needs --checkpoint, --dir, --ranks and either --slots-per-rank or --map" \
    shard import --dir s --ranks 2 --slots-per-rank 2
  expect_fail 2 "either --slots-per-rank or --map" shard import --checkpoint c --dir s --ranks 2
  expect_fail 2 "either --slots-per-rank or --map" \
    shard import --checkpoint c --dir s --ranks 2 --slots-per-rank 2 --map m.json
  expect_fail 2 "--ranks 0 is outside 1..4096" shard import --checkpoint c --dir s --ranks 0 --slots-per-rank 2
  expect_fail 2 "--ranks 4097 is outside 1..4096" shard import --checkpoint c --dir s --ranks 4097 --slots-per-rank 2
  expect_fail 2 "--slots-per-rank 65537 is outside 1..65536" \
    shard import --checkpoint c --dir s --ranks 1 --slots-per-rank 65537
  expect_fail 2 "--layers 3 is outside 5..4095" \
    shard import --checkpoint c --dir s --ranks 1 --slots-per-rank 1 --layers 5-3
  expect_fail 2 "--layers 4096 is outside 0..4095" \
    shard import --checkpoint c --dir s --ranks 1 --slots-per-rank 1 --layers 4096
  expect_fail 2 "--file-size-mb 0 is outside 1..1048576" shard export --dir s --out o --logical --file-size-mb 0
  expect_fail 2 "--file-size-mb 1048577 is outside 1..1048576" \
    shard export --dir s --out o --logical --file-size-mb 1048577
  expect_fail 2 "--file-size-mb is for export --logical" shard export --dir s --out o --file-size-mb 5
  expect_fail 2 "--format 'npz': only safetensors" shard export --dir s --out o --format npz
  expect_fail 2 "export needs --out DIR" shard export --dir s
  expect_fail 2 "--pattern is for import" shard export --dir s --out o --pattern x
  expect_fail 2 "pattern 'model.{layer}': it needs {layer} and {expert}" \
    shard import --checkpoint c --dir s --ranks 1 --slots-per-rank 1 --pattern 'model.{layer}'
  shard --help | grep -q -- "--file-size-mb N     export --logical: MiB per file, 1..1048576" || die "--help"
  ;;
h5py)
  ck write ck --family deepseek --dtype fp8 --layers 3 --experts 6 --files 2 || die "writer fp8"
  ck h5py-shards hs ck 2 4 > /dev/null || die "h5py writer"
  shard inspect --dir hs > ins.txt || die "inspect h5py shards: $(cat ins.txt)"
  grep -q "^dataset  *up_proj float8_e4m3fn \[4, 8, 16\]" ins.txt || die "fp8 type: $(grep dataset ins.txt)"
  shard verify --dir hs --checkpoint ck --quiet || die "verify h5py fp8 shards"
  shard export --dir hs --out o --logical --quiet && ck compare ck o > /dev/null || die "export h5py fp8"
  ck write cb --family qwen --dtype bf16 --layers 2 --experts 4 --files 1 || die "writer bf16"
  ck h5py-shards hb cb 2 2 > /dev/null || die "h5py writer bf16"
  shard inspect --dir hb | grep -q "^dataset  *gate_proj bfloat16 \[2, 8, 16\]" || die "bf16 type"
  shard verify --dir hb --checkpoint cb --quiet || die "verify h5py bf16 shards"
  shard export --dir hb --out r --quiet && ck check-ranks cb r "$DS" > /dev/null || die "per-rank export"
  # An opaque type eplb does not know is refused by name.
  "$py" - hb/shard_00001.h5 <<'EOF' || die "retag"
import sys, numpy as np, h5py
with h5py.File(sys.argv[1], "r+") as f:
    for l in ("0", "1"):
        g = f["layers/" + l]
        shape = g["up_proj"].shape
        del g["up_proj"]
        t = h5py.h5t.create(h5py.h5t.OPAQUE, 2)
        t.set_tag(b"myfloat16")
        h5py.h5d.create(g.id, b"up_proj", t, h5py.h5s.create_simple(shape))
EOF
  expect_fail 1 "hb/shard_00001.h5: /layers/0/up_proj is neither a numeric (integer or float) dataset nor one of the opaque types eplb knows" \
    shard inspect --dir hb
  ;;
*) die "unknown group $group" ;;
esac
((fail == 0)) && echo "checkpoint $group: ok"
exit $fail

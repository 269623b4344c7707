#!/usr/bin/env bash
# test_cli.sh - eplb-plan as a user meets it: exit codes, one-line error
# messages that name the option or the file, and maps that read back.
#
# Usage: test_cli.sh BIN_DIR GROUP DATA_DIR TMP_DIR
#   GROUP: usage | files | good | sum | shape | current | dumps | ema |
#          scenario | mtp
# Registered as one CTest test per group (tests/CMakeLists.txt).  Uses only
# its own data (tests/data) and writes only under TMP_DIR/cli_GROUP.
set -u
bin=${1:?BIN_DIR}/eplb-plan
group=${2:?GROUP}
data=${3:?DATA_DIR}
tmp=${4:?TMP_DIR}/cli_$group
rm -rf "$tmp" && mkdir -p "$tmp" || exit 1
[ -x "$bin" ] || { echo "FAIL: $bin is not an executable"; exit 1; }

failures=0
checks=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# run ARGS...: runs eplb-plan; sets rc, out, errout.
run() {
  "$bin" "$@" >"$tmp/stdout" 2>"$tmp/stderr"
  rc=$?
  out=$(cat "$tmp/stdout")
  errout=$(cat "$tmp/stderr")
}

# expect CODE NEEDLE ARGS...: exit code CODE, NEEDLE in stderr, stderr one
# line starting "eplb-plan: error: ", and no output map left behind.
expect() {
  local code=$1 needle=$2
  shift 2
  checks=$((checks + 1))
  rm -f "$tmp/out.json" "$tmp/out.yaml"
  run "$@"
  local what="eplb-plan $*"
  [ "$rc" -eq "$code" ] || fail "$what: exit $rc, want $code (stderr: $errout)"
  case "$errout" in
    *"$needle"*) ;;
    *) fail "$what: stderr lacks '$needle': $errout" ;;
  esac
  case "$errout" in
    "eplb-plan: error: "*) ;;
    *) fail "$what: stderr does not start with 'eplb-plan: error: ': $errout" ;;
  esac
  [ "$(printf '%s\n' "$errout" | wc -l)" -eq 1 ] || fail "$what: more than one line on stderr"
  if [ "$code" -eq 2 ]; then
    case "$errout" in
      *"(see eplb-plan --help)") ;;
      *) fail "$what: usage error without '(see eplb-plan --help)'" ;;
    esac
  fi
  [ ! -e "$tmp/out.json" ] && [ ! -e "$tmp/out.yaml" ] || fail "$what: wrote a map"
}

# ok ARGS...: exit 0 and nothing on stderr.
ok() {
  checks=$((checks + 1))
  run "$@"
  [ "$rc" -eq 0 ] || fail "eplb-plan $*: exit $rc (stderr: $errout)"
  [ -z "$errout" ] || fail "eplb-plan $*: stderr not empty: $errout"
}

# has TEXT NEEDLE LABEL: NEEDLE occurs in TEXT.
has() {
  checks=$((checks + 1))
  case "$1" in
    *"$2"*) ;;
    *) fail "$3: lacks '$2'" ;;
  esac
}

# valid_map FILE SLOTS GPUS STATS: the map reads back (eplb_placement_read checks
# every id and that every expert has a slot) as the current placement of a
# re-plan with the same shape.
valid_map() {
  ok --stats "$4" --current-map "$1" --num-slots "$2" --num-gpus "$3" \
    --max-moves 0 --output "$tmp/reread.json"
}

A=$data/ms_part_a.json
B=$data/ms_part_b.json
SUM=$data/ms_sum.json
SIX=$data/ms_six_experts.json
SG=$data/sg_dense.json
OUT=$tmp/out.json

case "$group" in
usage)
  expect 2 "--stats PATH is required"
  expect 2 "--stats PATH is required" --num-slots 12 --num-gpus 4 --output "$OUT"
  expect 2 "--num-slots S is required" --stats "$A" --num-gpus 4 --output "$OUT"
  expect 2 "--num-gpus G is required" --stats "$A" --num-slots 12 --output "$OUT"
  expect 2 "--output FILE is required" --stats "$A" --num-slots 12 --num-gpus 4
  expect 2 "unknown option '--frobnicate'" --stats "$A" --frobnicate --num-slots 12 --num-gpus 4 --output "$OUT"
  expect 2 "option '--output' needs a value" --stats "$A" --num-slots 12 --num-gpus 4 --output
  expect 2 "unexpected argument 'extra'" --stats "$A" --num-slots 12 --num-gpus 4 --output "$OUT" extra
  expect 2 "--num-slots 'abc' is not an integer; expected 1..1048576" --stats "$A" --num-slots abc --num-gpus 4 --output "$OUT"
  expect 2 "--num-slots '12x' is not an integer" --stats "$A" --num-slots 12x --num-gpus 4 --output "$OUT"
  expect 2 "--num-slots '' is not an integer" --stats "$A" --num-slots "" --num-gpus 4 --output "$OUT"
  expect 2 "--num-slots 0 is outside 1..1048576" --stats "$A" --num-slots 0 --num-gpus 4 --output "$OUT"
  expect 2 "--num-slots 99999999 is outside 1..1048576" --stats "$A" --num-slots 99999999 --num-gpus 4 --output "$OUT"
  expect 2 "--num-slots 99999999999999999999999 is outside" --stats "$A" --num-slots 99999999999999999999999 --num-gpus 4 --output "$OUT"
  expect 2 "--num-gpus -4 is outside 1..65536" --stats "$A" --num-slots 12 --num-gpus -4 --output "$OUT"
  expect 2 "--num-nodes 0 is outside" --stats "$A" --num-slots 12 --num-gpus 4 --num-nodes 0 --output "$OUT"
  expect 2 "--num-groups '1.5' is not an integer" --stats "$A" --num-slots 12 --num-gpus 4 --num-groups 1.5 --output "$OUT"
  expect 2 "--policy 'fastest' is unknown; use balanced or deepseek" --stats "$A" --num-slots 12 --num-gpus 4 --policy fastest --output "$OUT"
  expect 2 "--format 'csv' is unknown" --stats "$A" --num-slots 12 --num-gpus 4 --format csv --output "$OUT"
  expect 2 "--output-format 'xml' is unknown" --stats "$A" --num-slots 12 --num-gpus 4 --output-format xml --output "$OUT"
  expect 2 "--move-cost 2 is outside 0..1" --stats "$A" --num-slots 12 --num-gpus 4 --move-cost 2 --output "$OUT"
  expect 2 "--max-moves -2 is outside -1..1048576" --stats "$A" --num-slots 12 --num-gpus 4 --max-moves -2 --output "$OUT"
  cp "$A" "$tmp/in_out.json"
  expect 2 "refusing to overwrite an input" --stats "$tmp/in_out.json" --num-slots 12 --num-gpus 4 --output "$tmp/in_out.json"
  cmp -s "$A" "$tmp/in_out.json" || fail "the statistics were overwritten"
  expect 2 "--threads 65 is outside 0..64" --stats "$A" --num-slots 12 --num-gpus 4 --threads 65 --output "$OUT"
  expect 2 "--threads -1 is outside 0..64" --stats "$A" --num-slots 12 --num-gpus 4 --threads -1 --output "$OUT"
  # Checks that need the statistics (E = 8 experts here).
  expect 2 "--num-slots 12 is not a multiple of --num-gpus 5" --stats "$A" --num-slots 12 --num-gpus 5 --output "$OUT"
  expect 2 "--num-slots 4 is less than the 8 experts" --stats "$A" --num-slots 4 --num-gpus 2 --output "$OUT"
  expect 2 "--num-nodes 8 is outside 1..4" --stats "$A" --num-slots 12 --num-gpus 4 --num-nodes 8 --output "$OUT"
  expect 2 "--num-groups 9 is outside 1..8" --stats "$A" --num-slots 12 --num-gpus 4 --num-groups 9 --output "$OUT"
  expect 2 "--spill needs a hierarchical plan" --stats "$A" --num-slots 12 --num-gpus 4 --spill --output "$OUT"
  # --help documents every range; --version; both exit 0.
  ok --help
  for needle in "--num-slots S" "1..1048576" "--num-gpus G" "1..65536" "--num-nodes N" \
                "--num-groups K" "--policy P" "--output-format F" "-1..1048576" "--threads T" "0..64" "exit status"; do
    has "$out" "$needle" "--help"
  done
  ok --version
  has "$out" "eplb-plan " "--version"
  ;;
files)
  expect 1 "$tmp/missing.json: cannot open" --stats "$tmp/missing.json" --num-slots 12 --num-gpus 4 --output "$OUT"
  printf '{"0": {"0": 1, "1": 2},\n "1": {"0": 3 "1": 4}}\n' >"$tmp/broken.json"
  expect 1 "$tmp/broken.json: not valid JSON: the parser stopped at line 2" --stats "$tmp/broken.json" --num-slots 12 --num-gpus 4 --output "$OUT"
  printf '{"0": {"0": 1, "1": -2}}\n' >"$tmp/negative.json"
  expect 1 "$tmp/negative.json: layer \"0\", expert \"1\": count -2 is negative" --stats "$tmp/negative.json" --num-slots 2 --num-gpus 1 --output "$OUT"
  printf '{"logical_count": [[0, 0], [0, 0]]}\n' >"$tmp/idle.json"
  expect 1 "every layer's counts are zero" --stats "$tmp/idle.json" --num-slots 2 --num-gpus 1 --output "$OUT"
  expect 1 "$A: no \"logical_count\"" --stats "$A" --stats "$SG" --format sglang --num-slots 12 --num-gpus 4 --output "$OUT"
  # A directory that does not exist: runtime error naming the path.
  expect 1 "$tmp/nodir/out.json" --stats "$A" --num-slots 12 --num-gpus 4 --output "$tmp/nodir/out.json"
  ;;
good)
  ok --stats "$A" --num-slots 12 --num-gpus 4 --output "$OUT"
  for needle in "layers            4" "experts           8" "12 on 4 GPUs (3 per GPU, 4 redundant)" \
                "policy            balanced" "plan time" "imbalance before" "imbalance after" \
                "imbalance floor" "output            $OUT (expert-map)"; do
    has "$out" "$needle" "summary"
  done
  map=$(cat "$OUT")
  has "$map" '"moe_layer_count": 4' "expert map"
  has "$map" '"layer_id": 3,' "expert map"
  checks=$((checks + 1))
  [ "$(grep -c '"device_id": ' "$OUT")" -eq 16 ] || fail "expert map: want 16 device lines"
  valid_map "$OUT" 12 4 "$A"
  # SGLang with dense rows, TensorRT-LLM YAML chosen by the extension.
  ok --stats "$SG" --num-slots 12 --num-gpus 4 --output "$tmp/out.yaml" --per-layer
  has "$out" "layers            4 (2 all-zero dense layers skipped: 0, 1)" "sglang summary"
  has "$out" "(trtllm-yaml)" "sglang summary"
  has "$out" "$(printf 'layer       before      after      floor\n2 ')" "--per-layer"
  checks=$((checks + 1))
  [ "$(grep -cE '^[2-5] +[0-9.]+ +[0-9.]+ +[0-9.]+$' "$tmp/stdout")" -eq 4 ] || fail "--per-layer: want 4 rows"
  yaml=$(cat "$tmp/out.yaml")
  has "$yaml" "$(printf 'initial_global_assignments:\n  2: [')" "yaml"
  has "$yaml" "$(printf '\n  5: [')" "yaml"
  has "$yaml" "$(printf '\nnum_slots: 12\nlayer_updates_per_iter: 0')" "yaml"
  valid_map "$tmp/out.yaml" 12 4 "$SG"
  # Explicit formats, deepseek policy, hierarchical, quiet.
  ok --stats "$SG" --format sglang --num-slots 8 --num-gpus 2 --policy deepseek --output-format expert-map --output "$tmp/ds.map"
  has "$out" "deepseek" "deepseek summary"
  valid_map "$tmp/ds.map" 8 2 "$SG"
  ok --stats "$A" --num-slots 16 --num-gpus 4 --num-nodes 2 --num-groups 4 --output "$OUT"
  has "$out" "hierarchical, 2 nodes, 4 groups" "hierarchical summary"
  has "$out" "off-node tokens" "hierarchical summary"
  ok --stats "$A" --num-slots 12 --num-gpus 4 --quiet --output "$OUT"
  checks=$((checks + 1))
  [ -z "$out" ] || fail "--quiet printed: $out"
  # Layers planned on any number of threads: the same map, byte for byte.
  ok --stats "$SG" --num-slots 12 --num-gpus 4 --threads 1 --output "$tmp/t1.json"
  for t in 0 3 64; do
    ok --stats "$SG" --num-slots 12 --num-gpus 4 --threads $t --output "$tmp/tn.json"
    checks=$((checks + 1))
    cmp -s "$tmp/t1.json" "$tmp/tn.json" || fail "--threads $t: the map differs from --threads 1"
  done
  ;;
sum)
  # Two per-rank files summed = the pre-summed file: byte-identical maps.
  for fmt in expert-map trtllm-yaml; do
    ok --stats "$A" --stats "$B" --num-slots 12 --num-gpus 4 --output-format $fmt --output "$tmp/two.$fmt"
    ok --stats "$SUM" --num-slots 12 --num-gpus 4 --output-format $fmt --output "$tmp/one.$fmt"
    checks=$((checks + 1))
    cmp -s "$tmp/two.$fmt" "$tmp/one.$fmt" || fail "$fmt: summed --stats differ from the pre-summed file"
  done
  # The map of the sum differs from the map of one part (the sum matters).
  ok --stats "$A" --num-slots 12 --num-gpus 4 --output-format trtllm-yaml --output "$tmp/a.yaml"
  checks=$((checks + 1))
  ! cmp -s "$tmp/a.yaml" "$tmp/one.trtllm-yaml" || fail "the map of one part equals the map of the sum"
  ;;
shape)
  expect 1 "$A has 4 layers x 8 experts but $SIX has 4 x 6" --stats "$A" --stats "$SIX" --num-slots 12 --num-gpus 4 --output "$OUT"
  expect 1 "$A has 4 layers x 8 experts but $SG has 6 x 8" --stats "$A" --stats "$SG" --num-slots 12 --num-gpus 4 --output "$OUT"
  expect 1 "$A has 4 layers x 8 experts but $SIX" --stats "$A" --stats "$B" --stats "$SIX" --num-slots 12 --num-gpus 4 --output "$OUT"
  ;;
current)
  # DeepSeek's plan puts an expert twice on a GPU here: the expert-map JSON
  # refuses that unless allowed (a current map with duplicates re-plans).
  expect 1 "GPU 0 holds expert 0 twice" --stats "$A" --num-slots 12 --num-gpus 4 --policy deepseek --output "$OUT"
  ok --stats "$A" --num-slots 12 --num-gpus 4 --policy deepseek --allow-duplicates --output "$tmp/cur.json"
  ok --stats "$B" --num-slots 12 --num-gpus 4 --current-map "$tmp/cur.json" --output "$tmp/next.json"
  has "$out" "imbalance before  " "re-plan summary"
  has "$out" "(current map;" "re-plan summary"
  has "$out" "replicas moved" "re-plan summary"
  ok --stats "$B" --num-slots 12 --num-gpus 4 --current-map "$tmp/cur.json" --max-moves 0 --allow-duplicates --output "$tmp/kept.json"
  has "$out" "replicas moved    0 " "--max-moves 0"
  # A YAML current map is regrouped onto --num-gpus.
  ok --stats "$A" --num-slots 12 --num-gpus 4 --output "$tmp/cur.yaml"
  ok --stats "$B" --num-slots 12 --num-gpus 4 --current-map "$tmp/cur.yaml" --output "$tmp/next.yaml"
  expect 1 "--current-map $tmp/cur.json holds 4 layers x 12 slots on 4 GPUs" --stats "$B" --num-slots 16 --num-gpus 4 --current-map "$tmp/cur.json" --output "$OUT"
  expect 1 "$tmp/missing.json: cannot open" --stats "$B" --num-slots 12 --num-gpus 4 --current-map "$tmp/missing.json" --output "$OUT"
  ;;
dumps)
  # TensorRT-LLM dump directory: decoder layers 3, 4 become the YAML keys.
  TRT=$data/trtllm_small
  ok --stats "$TRT" --num-slots 6 --num-gpus 2 --output "$tmp/trt.yaml"
  has "$(cat "$tmp/trt.yaml")" "  3: [" "YAML keys from the dump"
  has "$(cat "$tmp/trt.yaml")" "  4: [" "YAML keys from the dump"
  has "$out" "layers            2" "TensorRT-LLM summary"
  # The hot expert 0 of layer 3 (100 of 109 tokens) is replicated.
  checks=$((checks + 1))
  [ "$(sed -n 's/^  3: \[\(.*\)\]/\1/p' "$tmp/trt.yaml" | tr -d ' ' | tr ',' '\n' | grep -cx 0)" -ge 2 ] ||
    fail "expert 0 of layer 3 not replicated: $(cat "$tmp/trt.yaml")"
  ok --stats "$TRT" --format trtllm --iter-range 8-8 --num-slots 6 --num-gpus 2 --output "$tmp/trt8.yaml"
  expect 2 "no iteration in 9..12; the dump holds iterations 7..8" --stats "$TRT" --iter-range 9-12 --num-slots 6 --num-gpus 2 --output "$OUT"
  expect 2 "--iter-range '8-7'" --stats "$TRT" --iter-range 8-7 --num-slots 6 --num-gpus 2 --output "$OUT"
  expect 2 "--iter-range 'x'" --stats "$TRT" --iter-range x --num-slots 6 --num-gpus 2 --output "$OUT"
  expect 2 "selects iterations" --stats "$A" --iter-range 1-2 --num-slots 12 --num-gpus 4 --output "$OUT"
  expect 2 "is a directory, but --format sglang" --stats "$TRT" --format sglang --num-slots 6 --num-gpus 2 --output "$OUT"
  expect 2 "is a file, but --format trtllm" --stats "$A" --format trtllm --num-slots 12 --num-gpus 4 --output "$OUT"
  expect 1 "neither meta_info.json" --stats "$tmp" --num-slots 6 --num-gpus 2 --output "$OUT"
  # MindIE dump directory (CSV in decode/).
  ok --stats "$data/mindie_small" --num-slots 6 --num-gpus 2 --output "$tmp/mie.json"
  has "$out" "experts           4" "MindIE summary"
  # SGLang and DeepSeek maps out, read back as --current-map.
  ok --stats "$TRT" --num-slots 6 --num-gpus 2 --output-format sglang --output "$tmp/sg.json"
  has "$(cat "$tmp/sg.json")" '"physical_to_logical_map"' "SGLang map"
  checks=$((checks + 1))
  [ "$(grep -c '^  \[' "$tmp/sg.json")" -eq 5 ] || fail "SGLang map: want rows 0..4 (hidden layers): $(cat "$tmp/sg.json")"
  ok --stats "$TRT" --num-slots 6 --num-gpus 2 --current-map "$tmp/sg.json" --max-moves 0 --output "$tmp/sg2.json"
  has "$out" "replicas moved    0 " "SGLang map as --current-map"
  ok --stats "$TRT" --num-slots 6 --num-gpus 2 --output-format deepseek --output "$tmp/ds.json"
  has "$(cat "$tmp/ds.json")" '"log2phy"' "DeepSeek map"
  ok --stats "$TRT" --num-slots 6 --num-gpus 2 --current-map "$tmp/ds.json" --max-moves 0 --output "$tmp/ds2.json"
  expect 2 "--output-format 'vllm'" --stats "$TRT" --num-slots 6 --num-gpus 2 --output-format vllm --output "$OUT"
  # Per-rank MindSpeed-RL files by glob = the pre-summed file.
  ok --stats "$data/ms_part_*.json" --num-slots 12 --num-gpus 4 --output "$tmp/glob.json"
  ok --stats "$SUM" --num-slots 12 --num-gpus 4 --output "$tmp/sum.json"
  checks=$((checks + 1))
  cmp -s "$tmp/glob.json" "$tmp/sum.json" || fail "glob of per-rank files differs from the sum"
  expect 1 "matches no file" --stats "$data/none_*.json" --num-slots 12 --num-gpus 4 --output "$OUT"
  ;;
ema)
  # --ema-alpha reads each --stats as a per-step series.  An SGLang series
  # of 3 steps: expert 0 hot in the old steps, expert 3 in the last one.
  SER=$tmp/series.json
  printf '{"logical_count": [[[90,1,1,1],[1,1,1,90]], [[90,1,1,1],[1,1,1,90]], [[1,1,1,90],[90,1,1,1]]]}\n' > "$SER"
  ok --stats "$SER" --num-slots 6 --num-gpus 2 --ema-alpha 0 --output "$tmp/e0.json"
  has "$out" "series            3 steps, EMA rate 0.00" "series summary"
  ok --stats "$SER" --num-slots 6 --num-gpus 2 --ema-alpha 0.9 --output "$tmp/e9.json"
  # Weighting the last step changes which expert gets the redundant slots.
  checks=$((checks + 1))
  cmp -s "$tmp/e0.json" "$tmp/e9.json" && fail "--ema-alpha 0.9 planned like 0: $(cat "$tmp/e9.json")"
  ok --stats "$SER" --num-slots 6 --num-gpus 2 --ema-alpha auto --output "$tmp/ea.json"
  has "$out" "(chosen by backtest)" "auto EMA rate"
  # A TensorRT-LLM dump is a series of iterations; alpha 0 is its plain sum.
  ok --stats "$data/trtllm_small" --num-slots 6 --num-gpus 2 --ema-alpha 0 --output "$tmp/t0.json"
  ok --stats "$data/trtllm_small" --num-slots 6 --num-gpus 2 --output "$tmp/ts.json"
  checks=$((checks + 1))
  cmp -s "$tmp/t0.json" "$tmp/ts.json" || fail "--ema-alpha 0 on a dump differs from its sum"
  # A MindIE dump is a series of collection blocks (cumulative: the steps
  # are their differences); alpha 0 is the last block, its plain reading.
  ok --stats "$data/mindie_small" --num-slots 6 --num-gpus 2 --ema-alpha 0 --output "$tmp/m0.json"
  has "$out" "series            2 steps" "MindIE series"
  ok --stats "$data/mindie_small" --num-slots 6 --num-gpus 2 --output "$tmp/ms.json"
  checks=$((checks + 1))
  cmp -s "$tmp/m0.json" "$tmp/ms.json" || fail "--ema-alpha 0 on a MindIE dump differs from its last block"
  expect 2 "--ema-alpha 1.5 is outside 0..0.99" --stats "$SER" --num-slots 6 --num-gpus 2 --ema-alpha 1.5 --output "$OUT"
  expect 2 "--ema-alpha 'x'" --stats "$SER" --num-slots 6 --num-gpus 2 --ema-alpha x --output "$OUT"
  ;;
mtp)
  # --mtp-layers: the MTP layers after the last MoE layer, in every
  # format, with the ids each consumer expects; read back by eplb's readers
  # and by an independent reader (Python's json) against the consumers'
  # rules as docs/guides/ state them.
  ok --stats "$SG" --num-slots 8 --num-gpus 2 --mtp-layers 1 --output "$tmp/m.json"
  has "$out" "MTP layers      1" "MTP settings line"
  has "$out" "vllm-ascend     --enable-expert-parallel" "vllm-ascend settings"
  has "$out" "redundant experts 0 (slots - experts), expert-parallel size 2" "vLLM settings"
  has "$out" "MindIE          expert-parallel size 2" "MindIE settings"
  python3 - "$tmp/m.json" <<'PY' || fail "expert map with an MTP layer"
import json, sys
m = json.load(open(sys.argv[1]))
L = m["moe_layer_count"]
assert L == len(m["layer_list"]), "moe_layer_count != layers"
assert [x["layer_id"] for x in m["layer_list"]] == list(range(L)), "positional ids"
last, mtp = m["layer_list"][-2], m["layer_list"][-1]
assert mtp["device_list"] == last["device_list"], "--mtp-from last copies the last layer"
for layer in m["layer_list"]:
    assert layer["device_count"] == len(layer["device_list"]) == 2
    for d in layer["device_list"]:
        assert len(set(d["device_expert"])) == len(d["device_expert"]), "duplicate"
PY
  # sg_dense.json: hidden layers 0, 1 dense, MoE layers 2..5: MTP is 6.
  ok --stats "$SG" --num-slots 8 --num-gpus 2 --mtp-layers 2 --mtp-from trivial --output "$tmp/m2.yaml"
  has "$out" "layer keys 2..7" "TensorRT-LLM keys: model layer ids, MTP next"
  python3 - "$tmp/m2.yaml" <<'PY' || fail "YAML with MTP layers"
import sys
lines = [l for l in open(sys.argv[1]) if l.startswith("  ")]
keys = [int(l.split(":")[0]) for l in lines]
rows = [l.split("[")[1].split("]")[0] for l in lines]
assert keys == [2, 3, 4, 5, 6, 7], keys
assert rows[-1] == rows[-2] == "0, 1, 2, 3, 4, 5, 6, 7", rows[-2:]
PY
  ok --stats "$SG" --num-slots 8 --num-gpus 2 --mtp-layers 1 --output "$tmp/m.yaml"
  ok --stats "$SG" --num-slots 8 --num-gpus 2 --mtp-layers 1 --output-format sglang --output "$tmp/sg.json"
  has "$out" "--ep-num-redundant-experts 0 --ep-size 2" "SGLang settings"
  python3 - "$tmp/sg.json" <<'PY' || fail "SGLang map with an MTP row"
import json, sys
rows = json.load(open(sys.argv[1]))["physical_to_logical_map"]
assert len(rows) == 7, len(rows)   # hidden layers 0..5 and the MTP row 6
PY
  # Re-plans read the MTP layers back (every format) and keep them.
  for f in m.json m.yaml sg.json; do
    ok --stats "$SG" --num-slots 8 --num-gpus 2 --mtp-layers 1 --current-map "$tmp/$f" --output "$tmp/re_$f"
  done
  expect 1 "with 1 MTP layer after layer 5" --stats "$SG" --num-slots 8 --num-gpus 2 --mtp-layers 1 --current-map "$tmp/m2.yaml" --output "$OUT"
  expect 2 "--mtp-layers 5 is outside 0..4" --stats "$SG" --num-slots 8 --num-gpus 2 --mtp-layers 5 --output "$OUT"
  expect 2 "--mtp-from 'first' is unknown" --stats "$SG" --num-slots 8 --num-gpus 2 --mtp-layers 1 --mtp-from first --output "$OUT"
  expect 2 "SGLang reads --init-expert-location as a file only" --stats "$SG" --num-slots 8 --num-gpus 2 --output-format sglang --output "$tmp/sg.txt"
  ;;
scenario)
  # --scenario: each SPEC one scenario, balanced at once with the others.
  # Scenario files written by an independent writer (Python's json).
  python3 - "$tmp" <<'PY'
import json, random, sys
random.seed(7)
d = sys.argv[1]
for k in range(3):
    layers = {}
    for l in range(4):
        layers[str(l)] = {str(e): int(1000 * random.random() ** (3 + k)) + 1
                          for e in range(16)}
    json.dump(layers, open(f"{d}/sc{k}.json", "w"))
json.dump({str(l): {str(e): 5 for e in range(8)} for l in range(4)},
          open(f"{d}/eight.json", "w"))
PY
  S0=$tmp/sc0.json S1=$tmp/sc1.json S2=$tmp/sc2.json
  # One scenario is the plain plan of it, byte for byte.
  ok --stats "$S0" --num-slots 24 --num-gpus 4 --output "$tmp/plain.json"
  ok --scenario "$S0" --num-slots 24 --num-gpus 4 --output "$tmp/one.json"
  checks=$((checks + 1))
  cmp -s "$tmp/plain.json" "$tmp/one.json" || fail "one --scenario differs from --stats"
  # Three: every scenario listed with its weight, the weighted mean; the
  # map reads back; the weighted mean after is below before.
  ok --scenario "$S0" --scenario "$S1@2" --stats "$S2" --num-slots 24 --num-gpus 4 --output "$OUT"
  has "$out" "scenarios         3, balanced at once" "scenario summary"
  has "$out" "sc1.json" "scenario name"
  has "$out" "w 2 " "scenario weight"
  has "$out" "weighted mean" "weighted mean"
  checks=$((checks + 1))
  mean=$(printf '%s\n' "$out" | awk '/^  weighted mean/ {print $3, $5}')
  awk -v m="$mean" 'BEGIN {split(m, v, " "); exit !(v[2] < v[1])}' \
    || fail "weighted mean did not go down: $mean"
  valid_map "$OUT" 24 4 "$S0"
  # The same with a current map: a re-plan of the scenarios.
  ok --scenario "$S0" --scenario "$S1" --num-slots 24 --num-gpus 4 --current-map "$OUT" --output "$tmp/re.json"
  has "$out" "replicas moved" "re-plan summary"
  # Globs are one scenario: both files summed.
  ok --scenario "$tmp/sc[01].json" --scenario "$S2" --num-slots 24 --num-gpus 4 --output "$tmp/glob.json"
  has "$out" "scenarios         2" "glob as one scenario"
  # --window: a series' steps, one scenario per window.
  SER=$tmp/series.json
  printf '{"logical_count": [[[90,1,1,1],[1,1,1,90]], [[90,1,1,1],[1,1,1,90]], [[1,1,1,90],[90,1,1,1]]]}\n' > "$SER"
  ok --stats "$SER" --window 1 --num-slots 6 --num-gpus 2 --output "$tmp/w1.json"
  has "$out" "series.json[2-2]" "third window"
  ok --stats "$SER" --window 2 --num-slots 6 --num-gpus 2 --output "$tmp/w2.json"
  has "$out" "series.json[0-1]" "first window of two steps"
  has "$out" "series.json[2-2]" "the last window holds what is left"
  # Errors: weight out of range, --ema-alpha with scenarios, --window out
  # of range, scenarios that count other experts.
  expect 2 "weight 0 is outside" --scenario "$S0@0" --num-slots 24 --num-gpus 4 --output "$OUT"
  expect 2 "--ema-alpha weights the steps" --scenario "$S0" --ema-alpha 0.5 --num-slots 24 --num-gpus 4 --output "$OUT"
  expect 2 "--window 0 is outside 1.." --stats "$SER" --window 0 --num-slots 6 --num-gpus 2 --output "$OUT"
  expect 1 "scenario 1 has 4 layers x 8 experts" --scenario "$S0" --scenario "$tmp/eight.json" --num-slots 24 --num-gpus 4 --output "$OUT"
  expect 2 "same file as --scenario" --scenario "$S0" --scenario "$S1" --num-slots 24 --num-gpus 4 --output "$S1"
  ;;
*)
  echo "FAIL: unknown group '$group'"
  exit 1
  ;;
esac

if [ "$checks" -eq 0 ]; then
  echo "FAIL: no checks ran"
  exit 1
fi
echo "$group: $checks checks, $failures failures"
[ "$failures" -eq 0 ]

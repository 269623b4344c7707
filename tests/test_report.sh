#!/usr/bin/env bash
# test_report.sh - eplb-report as a user meets it: --help lists every option
# with its range, usage errors exit 2 with one line, the table and the
# average row are printed, --json - is valid JSON with the table's numbers,
# --svg has one cell per layer x GPU per heat map, bad inputs exit 1 naming
# the file.
#
# Usage: test_report.sh BIN_DIR DATA_DIR TMP_DIR
# Uses only tests/data and eplb-plan from BIN_DIR; writes under TMP_DIR/report.
set -u
bin=${1:?BIN_DIR}
data=${2:?DATA_DIR}
tmp=${3:?TMP_DIR}/report
rep=$bin/eplb-report
rm -rf "$tmp" && mkdir -p "$tmp" || exit 1
[ -x "$rep" ] || { echo "FAIL: $rep is not an executable"; exit 1; }
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

run() {
  "$rep" "$@" >"$tmp/stdout" 2>"$tmp/stderr"
  rc=$?
  out=$(cat "$tmp/stdout")
  errout=$(cat "$tmp/stderr")
}

# expect CODE NEEDLE ARGS...
expect() {
  local code=$1 needle=$2
  shift 2
  run "$@"
  [ "$rc" -eq "$code" ] || fail "eplb-report $*: exit $rc, want $code ($errout)"
  case "$errout" in
    "eplb-report: error: "*"$needle"*) ;;
    *) fail "eplb-report $*: stderr lacks '$needle': $errout" ;;
  esac
  [ "$(printf '%s\n' "$errout" | wc -l)" -eq 1 ] || fail "eplb-report $*: several lines"
}

ms=$data/ms_six_experts.json

# --help: every option, with ranges.
run --help
[ "$rc" -eq 0 ] || fail "--help exit $rc"
for o in --stats --format --iter-range --map --num-gpus --svg --json --quiet --help --version; do
  case "$out" in *"$o"*) ;; *) fail "--help does not list $o" ;; esac
done
case "$out" in *"1..4096"*|*"1..65536"*|*"..1048576"*) ;; *) fail "--help gives no range for --num-gpus: $out" ;; esac

# Usage errors.
expect 2 "--stats PATH is required"
expect 2 "unknown option '--bogus'" --stats "$ms" --bogus
expect 2 "--num-gpus 0 is outside" --stats "$ms" --num-gpus 0
expect 2 "--num-gpus 'x'" --stats "$ms" --num-gpus x
expect 2 "--iter-range '5-2'" --stats "$ms" --iter-range 5-2
expect 2 "--format 'csv'" --stats "$ms" --format csv
expect 2 "does not divide" --stats "$ms" --num-gpus 4
expect 2 "selects iterations" --stats "$ms" --iter-range 1-2

# Runtime errors name the file.
expect 1 "$tmp/none.json" --stats "$tmp/none.json"
printf '{"0": {"0": -1}}' >"$tmp/neg.json"
expect 1 "$tmp/neg.json" --stats "$tmp/neg.json"

# Per-expert table: 4 layers + header + average.
run --stats "$ms"
[ "$rc" -eq 0 ] || fail "per-expert: exit $rc: $errout"
case "$out" in *"per expert"*) ;; *) fail "per-expert: not said: $out" ;; esac
[ "$(grep -c '^average' <<<"$out")" -eq 1 ] || fail "no average row: $out"
case "$out" in *"expert load CV"*"hottest expert share"*) ;; *) fail "no balance metrics" ;; esac

# Before/after with a map from eplb-plan: JSON and SVG.
"$bin/eplb-plan" --stats "$ms" --num-slots 8 --num-gpus 2 --output "$tmp/map.json" --quiet ||
  fail "eplb-plan failed"
run --stats "$ms" --map "$tmp/map.json" --svg "$tmp/r.svg" --json "$tmp/r.json"
[ "$rc" -eq 0 ] || fail "with map: exit $rc: $errout"
case "$out" in *"imb-after"*) ;; *) fail "no after columns: $out" ;; esac
cells=$(grep -o 'class="cell"' "$tmp/r.svg" | wc -l)
[ "$cells" -eq $((4 * 2 * 2)) ] || fail "svg: $cells cells, want 16"
grep -q '</svg>' "$tmp/r.svg" || fail "svg not closed"
if command -v python3 >/dev/null; then
  python3 -c "import sys,xml.dom.minidom as m; m.parse(sys.argv[1])" "$tmp/r.svg" || fail "svg is not XML"
  python3 - "$tmp/r.json" <<'EOF' || fail "json content"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["num_layers"] == 4 and r["num_experts"] == 6
assert r["after"]["average"]["imbalance_ratio"] < r["before"]["average"]["imbalance_ratio"]
assert len(r["before"]["gpu_load"]) == 4 and len(r["before"]["gpu_load"][0]) == 2
EOF
fi
run --stats "$ms" --map "$tmp/map.json" --json -
[ "$rc" -eq 0 ] || fail "--json -: exit $rc"
case "$out" in "{"*"}") ;; *) fail "--json - is not only JSON: $out" ;; esac

# A map of another model; a YAML map without --num-gpus.
"$bin/eplb-plan" --stats "$data/ms_sum.json" --num-slots 8 --num-gpus 2 --output "$tmp/other.json" --quiet ||
  fail "eplb-plan (other model) failed"
expect 1 "pass the map of this model" --stats "$ms" --map "$tmp/other.json"
"$bin/eplb-plan" --stats "$ms" --num-slots 8 --num-gpus 2 --output "$tmp/map.yaml" --quiet
expect 2 "pass --num-gpus G" --stats "$ms" --map "$tmp/map.yaml"
run --stats "$ms" --map "$tmp/map.yaml" --num-gpus 2 --quiet
[ "$rc" -eq 0 ] && [ -z "$out" ] || fail "yaml map with --num-gpus: exit $rc: $errout"

# One TensorRT-LLM dump: per iteration by default, summed on request.
run --stats "$data/trtllm_small" --num-gpus 2
[ "$rc" -eq 0 ] || fail "trtllm dump: exit $rc: $errout"
case "$out" in *"averaged over 2 iterations"*"3                 27.25"*) ;; *) fail "trtllm per iteration: $out" ;; esac
run --stats "$data/trtllm_small" --num-gpus 2 --sum-iterations
case "$out" in *"summed over the window"*"3                 54.50"*) ;; *) fail "trtllm summed: $out" ;; esac
run --stats "$data/trtllm_small" --num-gpus 2 --iter-range 8-8 --json -
case "$out" in *'"iterations": 1,'*) ;; *) fail "trtllm one iteration: $out" ;; esac

if [ "$failures" -ne 0 ]; then
  echo "$failures failure(s)"
  exit 1
fi
echo "ok"

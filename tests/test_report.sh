#!/usr/bin/env bash
# test_report.sh - eplb-report as a user meets it: --help lists every option
# with its range, usage errors exit 2 with one line, the table and the
# average row are printed, --json - is valid JSON with the table's numbers,
# --svg has one cell per layer x GPU per heat map, bad inputs exit 1 naming
# the file; with --scenario / --window each scenario is listed and drawn,
# and --cross-validate's table matches plans made by eplb-plan from the
# other scenarios, judged by eplb-report on the one left out.
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
for o in --stats --format --iter-range --map --num-gpus --svg --json --quiet --help --version \
         --scenario --window --cross-validate --num-slots; do
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

# ---- scenarios and cross-validation ----------------------------------
# Workloads written by an independent writer (Python's json): three of 4
# layers x 16 experts, each with its own hot experts.
python3 - "$tmp" <<'PY' || fail "python"
import json, random, sys
d = sys.argv[1]
for k in range(3):
    rnd = random.Random(k + 11)
    layers = {}
    for l in range(4):
        hot = rnd.sample(range(16), 3)
        layers[str(l)] = {str(e): rnd.randint(50, 150) * (6 if e in hot else 1)
                          for e in range(16)}
    json.dump(layers, open("%s/w%d.json" % (d, k), "w"))
# A series of 6 steps (SGLang's [steps][L][E]): hot expert 0, then 3.
steps = [[[90 if e == (0 if t < 3 else 3) else 10 for e in range(16)]
          for l in range(4)] for t in range(6)]
json.dump({"logical_count": steps}, open("%s/series.json" % d, "w"))
PY
W0=$tmp/w0.json W1=$tmp/w1.json W2=$tmp/w2.json
expect 2 "--cross-validate needs two scenarios" --stats "$W0" --num-gpus 4 --cross-validate
expect 2 "give --map FILE or --num-gpus G" --scenario "$W0" --scenario "$W1" --cross-validate
expect 2 "--num-slots sets the shape" --stats "$W0" --num-gpus 4 --num-slots 20
expect 2 "the map says the slots" --scenario "$W0" --scenario "$W1" --map "$tmp/map.json" \
  --num-slots 8 --cross-validate
expect 2 "weight 0 is outside" --scenario "$W0@0" --scenario "$W1" --num-gpus 4
expect 2 "the sources make 1" --scenario "$W0" --num-gpus 4 --cross-validate
expect 2 "--cross-validate: --num-slots 18" --scenario "$W0" --scenario "$W1" \
  --num-gpus 4 --num-slots 18 --cross-validate
expect 2 "same file as --scenario" --scenario "$W0" --scenario "$W1" --json "$W1"
# Scenarios under a map, with the forecast.
"$bin/eplb-plan" --scenario "$W0" --scenario "$W1" --scenario "$W2@2" --num-slots 20 \
  --num-gpus 4 --output "$tmp/smap.json" --quiet || fail "eplb-plan --scenario"
run --scenario "$W0" --scenario "$W1" --scenario "$W2@2" --map "$tmp/smap.json" \
  --cross-validate --svg "$tmp/cv.svg" --json "$tmp/cv.json"
[ "$rc" -eq 0 ] || fail "--cross-validate: exit $rc: $errout"
case "$out" in *"scenarios             3"*"w2.json"*"w 2 "*"weighted mean"*) ;; *) fail "no scenario table: $out" ;; esac
case "$out" in *"cross-validation"*"20 slots on 4 GPUs"*"what to expect on traffic not seen yet"*) ;;
  *) fail "no cross-validation table: $out" ;; esac
cells=$(grep -o 'class="scell"' "$tmp/cv.svg" | wc -l)
[ "$cells" -eq $((3 * 4 * 4)) ] || fail "svg: $cells scenario cells, want 3 x 4 layers x 4 GPUs"
python3 -c "import sys,xml.dom.minidom as m; m.parse(sys.argv[1])" "$tmp/cv.svg" || fail "svg is not XML"
# Each robust figure: the plan eplb-plan makes from the other two,
# judged by eplb-report on the one left out.
for k in 0 1 2; do
  others=()
  for j in 0 1 2; do
    [ "$j" -eq "$k" ] && continue
    w=""; [ "$j" -eq 2 ] && w="@2"
    others+=(--scenario "$tmp/w$j.json$w")
  done
  "$bin/eplb-plan" "${others[@]}" --num-slots 20 --num-gpus 4 --output "$tmp/loo$k.json" --quiet ||
    fail "eplb-plan without w$k"
  "$bin/eplb-report" --stats "$tmp/w$k.json" --map "$tmp/loo$k.json" --quiet --json "$tmp/loo$k.report.json" ||
    fail "eplb-report on w$k"
done
python3 - "$tmp" <<'PY' || fail "cross-validation JSON: $(cat "$tmp/cv.json")"
import json, sys
d = sys.argv[1]
r = json.load(open(d + "/cv.json"))
cv = r["cross_validation"]
assert cv["num_slots"] == 20 and cv["num_gpus"] == 4, cv
rows = cv["scenarios"]
assert [x["name"] for x in rows] == [d + "/w%d.json" % k for k in range(3)], rows
assert [x["weight"] for x in rows] == [1, 1, 2], rows
for k, x in enumerate(rows):
    want = json.load(open("%s/loo%d.report.json" % (d, k)))["after"]["average"]["imbalance_ratio"]
    assert abs(x["robust"] - want) < 1e-8, (k, x["robust"], want)
    assert x["balanced"] >= 0 and x["deepseek"] >= 0
w = [x["weight"] for x in rows]
for col in ("robust", "balanced", "deepseek"):
    m = sum(wi * x[col] for wi, x in zip(w, rows)) / sum(w)
    assert abs(cv["mean"][col] - m) < 1e-8, (col, cv["mean"][col], m)
sc = r["scenarios"]
assert len(sc) == 3 and all(x["imbalance_after"] < x["imbalance_before"] for x in sc), sc
m = sum(wi * x["imbalance_after"] for wi, x in zip(w, sc)) / sum(w)
assert abs(r["scenario_mean"]["imbalance_after"] - m) < 1e-8
PY
# --json - and --num-gpus / --num-slots instead of a map.
run --scenario "$W0" --scenario "$W1" --num-gpus 4 --num-slots 20 --cross-validate --json -
[ "$rc" -eq 0 ] || fail "--cross-validate --json -: exit $rc: $errout"
case "$out" in "{"*'"cross_validation": {"num_slots": 20, "num_gpus": 4'*"}") ;;
  *) fail "--json - with --cross-validate: $out" ;; esac
# --window: six steps in windows of two are three scenarios.
run --stats "$tmp/series.json" --window 2 --num-gpus 4 --cross-validate --quiet --json "$tmp/win.json"
[ "$rc" -eq 0 ] || fail "--window: exit $rc: $errout"
python3 - "$tmp/win.json" <<'PY' || fail "--window JSON"
import json, sys
r = json.load(open(sys.argv[1]))
names = [x["name"] for x in r["scenarios"]]
assert [n[-5:] for n in names] == ["[0-1]", "[2-3]", "[4-5]"], names
assert len(r["cross_validation"]["scenarios"]) == 3
assert r["after"] is None and r["scenarios"][0]["imbalance_after"] is None
PY

# A map in which a GPU holds an expert twice is flagged (its consumers drop
# the copy); a map without one is not.
run --stats "$ms" --map "$tmp/map.json"
case "$out" in *duplicates*) fail "a map without duplicates flagged" ;; esac
printf '{"moe_layer_count": 4, "layer_list": [%s]}\n' "$(for l in 0 1 2 3; do
  [ $l -gt 0 ] && printf ', '
  printf '{"layer_id": %d, "device_count": 2, "device_list": [{"device_id": 0, "device_expert": [0, 0, 1, 2]}, {"device_id": 1, "device_expert": [3, 4, 5, 1]}]}' $l
done)" > "$tmp/dup.json"
run --stats "$ms" --map "$tmp/dup.json"
[ "$rc" -eq 0 ] || fail "map with duplicates: exit $rc: $errout"
case "$out" in
  *"duplicates            4 GPUs of $tmp/dup.json hold an expert twice (first: layer 0, GPU 0, expert 0)"*) ;;
  *) fail "duplicates not flagged: $out" ;;
esac

if [ "$failures" -ne 0 ]; then
  echo "$failures failure(s)"
  exit 1
fi
echo "ok"

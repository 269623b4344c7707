#!/usr/bin/env bash
# The layering of src/ (docs/design.md), proved on the compiled objects:
#  1. no source file sits flat in src/;
#  2. hdf5.h is included under src/h5/ only, mpi.h nowhere in the core
#     (core, util, plan, formats, report);
#  3. an object uses (links to) symbols of its own folder or of folders
#     below it only: core < util < plan, formats < report < h5, mpi <
#     migrate < sync < loop < cli, and plan and formats not each other;
#  4. no two files use each other, directly or around a longer loop;
#  5. libeplb.so exports exactly the eplb_* functions that include/eplb/
#     declares.
# Usage: test_layers.sh SRC_DIR BUILD_DIR
set -euo pipefail
src=$1
build=$2
fail=0
bad() { echo "test_layers: $*" >&2; fail=1; }

# 1. Flat files.
flat=$(find "$src" -maxdepth 1 -name '*.[ch]' | sort)
[ -z "$flat" ] || bad "files flat in src/ (move each into the folder of its layer): $flat"

# 2. Headers that mark a layer.
while IFS= read -r f; do
  case "$f" in "$src"/h5/*) ;; *) bad "$f includes hdf5.h: only src/h5/ may" ;; esac
done < <(grep -rlE '#[[:space:]]*include[[:space:]]*[<"]hdf5\.h' "$src" || true)
for d in core util plan formats report; do
  while IFS= read -r f; do
    bad "$f includes mpi.h: the core ($d/) needs neither MPI nor HDF5"
  done < <(grep -rlE '#[[:space:]]*include[[:space:]]*[<"]mpi\.h' "$src/$d" || true)
done

# 3 and 4. Who uses whom, from the objects' symbol tables.
objs=$(find "$build/src/CMakeFiles/eplb_core.dir" "$build/src/CMakeFiles/eplb_engine.dir" \
            "$build/src/CMakeFiles/eplb_cli.dir" -name '*.o' | sort)
[ -n "$objs" ] || { echo "test_layers: no objects under $build/src: build first" >&2; exit 1; }
rank_of() {
  case "$1" in
    core) echo 0 ;; util) echo 1 ;; plan|formats) echo 2 ;; report) echo 3 ;;
    h5|mpi) echo 4 ;; migrate) echo 5 ;; sync) echo 6 ;; loop) echo 7 ;;
    cli) echo 8 ;; *) echo 99 ;;
  esac
}
# "file symbol" rows: what each object defines and what it needs.
defs=$(mktemp) uses=$(mktemp) edges=$(mktemp)
trap 'rm -f "$defs" "$uses" "$edges"' EXIT
for o in $objs; do
  rel=${o#*.dir/}
  rel=${rel%.o}
  nm "$o" | awk -v f="$rel" '$2 ~ /^[TDBR]$/ {print $3, f}' >> "$defs"
  nm -u "$o" | awk -v f="$rel" '{print $2, f}' >> "$uses"
done
# eplb__h5_read3 is the one port (formats/series_h5.h): libeplb's
# implementation sits in h5/, the programs' loader in formats/.
join <(sort "$uses") <(sort "$defs") | awk '$1 != "eplb__h5_read3" && $2 != $3 {print $2, $3, $1}' \
  | sort -u > "$edges"
while read -r from to sym; do
  fd=${from%%/*} td=${to%%/*}
  [ "$fd" = "$td" ] && continue
  fr=$(rank_of "$fd") tr=$(rank_of "$td")
  if [ "$tr" -ge "$fr" ]; then
    bad "$from uses $sym of $to: $fd/ may not use $td/ (docs/design.md)"
  fi
done < "$edges"
if ! awk '{print $1, $2}' "$edges" | sort -u | tsort > /dev/null 2> "$defs"; then
  bad "files use each other in a loop: $(grep -v '^tsort: -: input contains a loop' "$defs" | sed 's/^tsort: //' | tr '\n' ' ')"
fi

# 5. Exports.
lib=$build/lib/install/libeplb.so
if [ -f "$lib" ]; then
  exported=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBR]$/ {print $3}' | sort -u)
  declared=$(cat "$src"/../include/eplb/*.h | grep -oE '\beplb_[a-z0-9_]+[[:space:]]*\(' \
             | sed 's/[[:space:]]*(//' | sort -u)
  extra=$(comm -23 <(echo "$exported") <(echo "$declared") | tr '\n' ' ')
  missing=$(comm -13 <(echo "$exported") <(echo "$declared") | tr '\n' ' ')
  [ -z "$extra" ] || bad "$lib exports names no public header declares: $extra"
  [ -z "$missing" ] || bad "include/eplb/ declares names $lib does not export: $missing"
else
  bad "$lib is missing: build the install targets first"
fi

[ "$fail" = 0 ] && echo "test_layers: src/ is layered as docs/design.md says"
exit "$fail"

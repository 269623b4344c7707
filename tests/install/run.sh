#!/usr/bin/env bash
# Installs a built eplb into a temporary prefix and builds and runs a small
# consumer against the installed tree only: with CMake (find_package(eplb),
# eplb::eplb and eplb::eplb_static) and with pkg-config (shared and static).
# Usage: run.sh BUILD_DIR CONSUMER_SOURCE_DIR WORK_DIR
# Exit 0 when every step passed; else the failing step is named on stderr.
set -euo pipefail

build=$1 src=$2 work=$3
prefix=$work/prefix
T="timeout 300"

fail() { echo "test_install: error: $*" >&2; exit 1; }
step() { echo "== $*"; }

rm -rf "$work"
mkdir -p "$work"

step "cmake --install $build --prefix $prefix"
$T cmake --install "$build" --prefix "$prefix" >"$work/install.log" \
  || { cat "$work/install.log" >&2; fail "cmake --install failed (log above)"; }

step "installed files"
libdir=$prefix/lib
for f in include/eplb/eplb.h include/eplb/plan.h include/eplb/sync.h \
         lib/libeplb.a lib/cmake/eplb/eplbConfig.cmake \
         lib/cmake/eplb/eplbConfigVersion.cmake lib/cmake/eplb/eplbTargets.cmake \
         lib/pkgconfig/eplb.pc; do
  [ -f "$prefix/$f" ] || fail "$prefix/$f was not installed"
done
ls "$libdir"/libeplb.so.* >/dev/null 2>&1 || fail "no $libdir/libeplb.so.* was installed"
[ -L "$libdir/libeplb.so" ] || fail "$libdir/libeplb.so (the link-time symlink) was not installed"
# (Outputs are captured before grep: `cmd | grep -q` can fail on SIGPIPE
# under pipefail.)
syms=$(nm -D --defined-only "$libdir/libeplb.so" | awk '{print $3}')
nexp=$(grep -c '^eplb_[a-zA-Z0-9]' <<<"$syms" || true)
[ "$nexp" -gt 0 ] || fail "$libdir/libeplb.so exports no eplb_* function"
if grep -q '^eplb__' <<<"$syms"; then
  fail "$libdir/libeplb.so exports internal eplb__* names (cmake/eplb.map not applied)"
fi
nprog=0
for p in "$build"/bin/eplb-*; do
  [ -x "$p" ] || continue
  name=$(basename "$p")
  [ -x "$prefix/bin/$name" ] || fail "program $name of $build/bin was not installed in $prefix/bin"
  nprog=$((nprog + 1))
done
[ "$nprog" -ge 2 ] || fail "expected the eplb programs in $build/bin, found $nprog"
$T "$prefix/bin/eplb-plan" --version >"$work/version.txt" \
  || fail "installed eplb-plan --version failed"
echo "   $nprog programs, $(cat "$work/version.txt"), libeplb.so exports $nexp eplb_* symbols"

step "installed eplb-plan finds its HDF5 module"
[ -f "$libdir/eplb/eplb_h5series.so" ] || fail "$libdir/eplb/eplb_h5series.so was not installed"
# A file with HDF5's signature and nothing else: the module must load and
# be the one to say the file is unreadable.
printf '\211HDF\r\n\032\nnot really' >"$work/bad.h5"
if $T "$prefix/bin/eplb-plan" --stats "$work/bad.h5" --num-slots 4 --num-gpus 2 \
     --ema-alpha 0 --output "$work/bad.json" 2>"$work/bad.err"; then
  fail "installed eplb-plan accepted a broken HDF5 file"
fi
err=$(cat "$work/bad.err")
grep -q 'not a readable HDF5 file' <<<"$err" \
  || fail "installed eplb-plan did not read HDF5 through its module: $err"
echo "   $libdir/eplb/eplb_h5series.so loaded: $err"

check_run() { # check_run EXE LABEL: runs the consumer, checks its output
  local out
  out=$($T "$1") || fail "$2: the consumer exited non-zero"
  grep -q '^eplb [0-9]*\.[0-9]*\.[0-9]*$' <<<"$out" || fail "$2: no version line in: $out"
  grep -q '^plan:\( [0-9]\)\{12\}$' <<<"$out" || fail "$2: no 12-slot plan in: $out"
  echo "   $2: $(tr '\n' ' ' <<<"$out")"
}

step "CMake consumer (find_package(eplb))"
$T cmake -S "$src" -B "$work/cmake-build" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_BUILD_TYPE=Release >"$work/cmake.log" 2>&1 \
  || { cat "$work/cmake.log" >&2; fail "configuring the consumer with find_package(eplb) failed"; }
$T cmake --build "$work/cmake-build" >>"$work/cmake.log" 2>&1 \
  || { cat "$work/cmake.log" >&2; fail "building the consumer against eplb::eplb failed"; }
deps=$(ldd "$work/cmake-build/consumer_shared")
grep -qF "$libdir/libeplb.so" <<<"$deps" \
  || fail "consumer_shared does not load $libdir/libeplb.so: $(grep eplb <<<"$deps")"
deps=$(ldd "$work/cmake-build/consumer_static")
if grep -q libeplb <<<"$deps"; then
  fail "consumer_static loads a shared libeplb"
fi
check_run "$work/cmake-build/consumer_shared" "cmake eplb::eplb"
check_run "$work/cmake-build/consumer_static" "cmake eplb::eplb_static"

step "pkg-config consumer (pkg-config eplb)"
export PKG_CONFIG_PATH=$libdir/pkgconfig
pc_libdir=$(pkg-config --variable=libdir eplb) || fail "pkg-config does not find eplb in $PKG_CONFIG_PATH"
[ "$(cd "$pc_libdir" && pwd -P)" = "$(cd "$libdir" && pwd -P)" ] \
  || fail "eplb.pc's libdir $pc_libdir is not $libdir"
read -r -a cflags <<<"$(pkg-config --cflags eplb)"
read -r -a libs <<<"$(pkg-config --libs eplb)"
$T cc -std=c11 -Wall -Werror "${cflags[@]}" "$src/consumer.c" -o "$work/pc_shared" \
  "${libs[@]}" -Wl,-rpath,"$pc_libdir" >"$work/pc.log" 2>&1 \
  || { cat "$work/pc.log" >&2; fail "building the consumer with pkg-config --cflags --libs eplb failed"; }
check_run "$work/pc_shared" "pkg-config shared"
slibs=()
for f in $(pkg-config --static --libs eplb); do [ "$f" = -leplb ] || slibs+=("$f"); done
$T cc -std=c11 -Wall -Werror "${cflags[@]}" "$src/consumer.c" -o "$work/pc_static" \
  "$pc_libdir/libeplb.a" "${slibs[@]}" >"$work/pc.log" 2>&1 \
  || { cat "$work/pc.log" >&2; fail "building the consumer with libeplb.a and pkg-config --static --libs eplb failed"; }
check_run "$work/pc_static" "pkg-config static"

rm -rf "$work"
echo "test_install: ok"

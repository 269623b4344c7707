#!/usr/bin/env bash
# Runs every test of eplb twice: a normal (-Werror) build and an
# ASan+UBSan build; then each libFuzzer target (fuzz/) for a short time.
# Installs what is missing first.
# Usage: scripts/test.sh [ctest args...]   e.g. scripts/test.sh -L mpi
# EPLB_FUZZ_SECONDS: seconds per fuzz target (default 15; 0: no fuzzing).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh"
. "$root/scripts/env.sh"
# setup.sh installed Slurm (unless EPLB_WITH_SLURM=0): test_slurm must run.
export EPLB_REQUIRE_SLURM=${EPLB_REQUIRE_SLURM:-${EPLB_WITH_SLURM:-1}}
# ... and the Python packages (unless EPLB_WITH_PYTHON=0): the python tests
# must run, not skip.
export EPLB_REQUIRE_PYTHON=${EPLB_REQUIRE_PYTHON:-${EPLB_WITH_PYTHON:-1}}

echo "== normal build =="
"$root/scripts/build.sh" build
(cd "$root/build" && ctest --output-on-failure --timeout 300 -j 2 "$@")

echo "== ASan + UBSan build =="
supp="$root/scripts/lsan.supp"
export ASAN_OPTIONS="detect_leaks=1:fast_unwind_on_malloc=0:abort_on_error=1"
export LSAN_OPTIONS="suppressions=$supp:fast_unwind_on_malloc=0:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
EPLB_BUILD_TYPE=Debug "$root/scripts/build.sh" build-asan -DEPLB_SANITIZE=ON -DEPLB_BUILD_BENCH=OFF \
  "-DMPIEXEC_PREFLAGS=-x;ASAN_OPTIONS;-x;LSAN_OPTIONS;-x;UBSAN_OPTIONS"
(cd "$root/build-asan" && ctest --output-on-failure --timeout 600 -j 2 "$@")

# The fuzz targets, briefly (scripts/fuzz.sh runs them longer; setup.sh
# installed clang and libFuzzer): a finding fails the run.  A fixed seed
# makes the run repeatable; EPLB_FUZZ_SEED= (empty) explores anew.
fuzz_secs=${EPLB_FUZZ_SECONDS:-15}
if [ "$fuzz_secs" != 0 ]; then
  echo "== fuzz targets, ${fuzz_secs}s each =="
  unset ASAN_OPTIONS LSAN_OPTIONS UBSAN_OPTIONS # fuzz.sh sets its own
  EPLB_FUZZ_SEED=${EPLB_FUZZ_SEED-1} "$root/scripts/fuzz.sh" "$fuzz_secs"
fi

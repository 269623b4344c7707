#!/usr/bin/env bash
# python_install: the Python package as users install it.
#   1. cmake --install into a temporary prefix: Debian's python3, given the
#      prefix's dist-packages, imports eplb and it loads the prefix's own
#      libeplb.so (not the build's), and plans;
#   2. the prefix moved elsewhere: it still finds its own library;
#   3. pip install ./python into a virtual environment (with the system's
#      packages, offline: --no-index, with Debian's setuptools and wheel),
#      recording the build's libeplb;
#      the source tree is copied first so that pip's in-tree build leaves
#      nothing in it.
# Without numpy, venv or pip it is skipped (exit 77) unless
# EPLB_REQUIRE_PYTHON=1.
# Usage: install.sh BUILD_DIR SOURCE_DIR WORK_DIR PYTHON PY_INSTALL_DIR
set -euo pipefail
build=$1 src=$2 work=$3 py=$4 pydir=$5
T="timeout 120"

fail() { echo "python_install: error: $*" >&2; exit 1; }
skip() {
  [ "${EPLB_REQUIRE_PYTHON:-0}" = 1 ] && fail "$* (EPLB_REQUIRE_PYTHON=1)"
  echo "python_install: skipped: $*" >&2
  exit 77
}
$py -c 'import numpy' 2>/dev/null || skip "numpy is missing for $py (Debian: python3-numpy)"
$py -c 'import venv' 2>/dev/null || skip "venv is missing for $py (Debian: python3-venv)"
$py -m pip --version >/dev/null 2>&1 || skip "pip is missing for $py (Debian: python3-pip)"

rm -rf "$work"
mkdir -p "$work"

# A plan through the installed package; prints where libeplb came from.
check='
import numpy as np, eplb
w = np.arange(1, 33, dtype=float).reshape(2, 16)
phy, log2phy, cnt = eplb.rebalance_experts(w, 24, 4, 1, 8)
assert phy.shape == (2, 24) and cnt.sum() == 48
print(eplb.library_path())
'

# 1. cmake --install
$T cmake --install "$build" --prefix "$work/prefix" >/dev/null
[ -f "$work/prefix/$pydir/eplb/__init__.py" ] || fail "no package in $work/prefix/$pydir/eplb"
got=$(cd "$work" && PYTHONPATH="$work/prefix/$pydir" $T $py -c "$check") || fail "the installed package failed"
case "$got" in "$work/prefix/"*libeplb.so.0) ;; *) fail "the installed package loaded $got, not the prefix's library" ;; esac
[ -f "$got" ] || fail "$got is not there"

# 2. the prefix moved
mv "$work/prefix" "$work/moved"
got=$(cd "$work" && PYTHONPATH="$work/moved/$pydir" $T $py -c "$check") || fail "the moved package failed"
case "$got" in "$work/moved/"*) ;; *) fail "after the move it loaded $got" ;; esac

# 3. pip install ./python, offline
cp -r "$src/python" "$work/src"
# The system's pip installs into the environment (--python): the same
# build as the environment's own pip, without the seconds ensurepip takes.
$T $py -m venv --without-pip --system-site-packages "$work/venv" ||
  skip "python3 -m venv failed (Debian: python3-venv)"
EPLB_LIBRARY="$build/lib/install/libeplb.so.0" $T $py -m pip --python "$work/venv/bin/python" \
  install --no-index --disable-pip-version-check -q "$work/src" || fail "pip install failed"
got=$(cd "$work" && $T "$work/venv/bin/python" -c "$check") || fail "the pip-installed package failed"
[ "$(readlink -f "$got")" = "$(readlink -f "$build/lib/install/libeplb.so.0")" ] ||
  fail "the pip-installed package loaded $got"
loc=$(cd "$work" && "$work/venv/bin/python" -c 'import eplb; print(eplb.__file__)')
case "$loc" in "$work/venv/"*) ;; *) fail "pip installed it at $loc" ;; esac
rm -rf "$work"
echo "python_install: ok"

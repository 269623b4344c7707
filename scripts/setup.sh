#!/usr/bin/env bash
# Installs what eplb needs on Debian 12, only what is missing (idempotent).
# Usage: scripts/setup.sh            (build + test dependencies, with
#                                     slurm-wlm + munge for test_slurm and
#                                     Debian's Python packages for python/)
#        EPLB_WITH_SLURM=0 scripts/setup.sh   (without slurm-wlm + munge)
#        EPLB_WITH_PYTHON=0 scripts/setup.sh  (without numpy, pytest, mpi4py,
#                                     torch: the python tests then skip)
set -euo pipefail

pkgs=(build-essential cmake pkg-config openmpi-bin libopenmpi-dev
      libhdf5-openmpi-dev hdf5-tools libcjson-dev libcmocka-dev
      libxxhash-dev               # XXH3: row, plan and at-rest checksums
      python3-numpy python3-h5py
      clang libclang-rt-14-dev)   # clang + libFuzzer: the fuzz targets (fuzz/)
if [ "${EPLB_WITH_SLURM:-1}" = 1 ]; then
  pkgs+=(slurm-wlm munge)
fi
# The Python package's tests (python/tests): numpy and pytest, mpi4py for
# eplb.Rebalancer, torch for tensors in and out (large: opt out with
# EPLB_WITH_PYTHON=0); pip, venv, setuptools and wheel for an offline
# `pip install ./python`.
if [ "${EPLB_WITH_PYTHON:-1}" = 1 ]; then
  pkgs+=(python3 python3-numpy python3-pytest python3-mpi4py python3-torch
         python3-setuptools python3-wheel python3-venv python3-pip)
fi

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  if [ "$(id -u)" != 0 ]; then sudo_cmd=(sudo); fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all packages present"
fi

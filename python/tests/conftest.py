"""Shared by the eplb package's tests (run by CTest, label `python`:
python/tests/CMakeLists.txt).

Optional modules (torch, mpi4py, h5py) are skipped with their reason when
missing, unless EPLB_REQUIRE_PYTHON=1 (scripts/test.sh, which installs
them): then a missing one fails the test.
"""

from __future__ import annotations

import importlib
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # deepseek_ref


def need(module: str):
    """The module, or a skip (a failure under EPLB_REQUIRE_PYTHON=1)."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        why = "%s is not installed (%s); scripts/setup.sh installs it" % (module, e)
        if os.environ.get("EPLB_REQUIRE_PYTHON") == "1":
            pytest.fail(why + " (EPLB_REQUIRE_PYTHON=1)")
        pytest.skip(why)


def env_path(name: str) -> str:
    """A path CTest passes in the environment."""
    v = os.environ.get(name)
    if not v:
        pytest.fail("%s is not set: run the tests through CTest "
                    "(python/tests/CMakeLists.txt)" % name)
    return v

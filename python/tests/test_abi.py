"""The ctypes mirrors of libeplb's structures (eplb/_lib.py) against the C
headers, and the error classes against the library's codes."""

from __future__ import annotations

import ctypes
import json
import subprocess

import pytest

import eplb
from eplb import _lib, errors
from conftest import env_path


@pytest.fixture(scope="module")
def layout():
    out = subprocess.run([env_path("EPLB_TEST_ABI")], check=True,
                         capture_output=True, text=True, timeout=30)
    return json.loads(out.stdout)


def test_every_struct_matches_the_headers(layout):
    for cname, cls in _lib.STRUCTS.items():
        c = layout[cname]
        fields = [f[0] for f in cls._fields_]
        assert fields == list(c["fields"]), "%s: fields %s, C has %s" % (
            cname, fields, list(c["fields"]))
        for f in fields:
            assert getattr(cls, f).offset == c["fields"][f], "%s.%s" % (cname, f)
        assert ctypes.sizeof(cls) == c["size"], cname
    assert set(_lib.STRUCTS) == {k for k in layout if k.startswith("eplb_")}


def test_limits_match_the_headers(layout):
    assert _lib.ERROR_MSG_MAX == layout["EPLB_ERROR_MSG_MAX"]
    assert _lib.MAX_LAYERS == layout["EPLB_MAX_LAYERS"]
    assert _lib.MAX_EXPERTS == layout["EPLB_MAX_EXPERTS"]
    assert _lib.MAX_SLOTS == layout["EPLB_MAX_SLOTS"]
    assert _lib.MAX_GPUS == layout["EPLB_MAX_GPUS"]
    assert _lib.MAX_PLAN_THREADS == layout["EPLB_MAX_PLAN_THREADS"]
    assert _lib.MAX_ITER == layout["EPLB_MAX_ITER"]
    assert _lib.MAX_COUNT == layout["EPLB_MAX_COUNT"]
    assert _lib.MAX_SCENARIOS == layout["EPLB_MAX_SCENARIOS"]
    assert _lib.MIN_SCENARIO_WEIGHT == layout["EPLB_MIN_SCENARIO_WEIGHT"]
    assert _lib.MAX_SCENARIO_WEIGHT == layout["EPLB_MAX_SCENARIO_WEIGHT"]


def test_a_class_for_every_error_code():
    lib = _lib.load()
    code = -1
    while lib.eplb_strerror(code) != b"unknown error":
        cls = errors.error_class(code)
        assert cls is not errors.Error, "no class for %s" % _lib.err_name(code)
        assert cls.name == _lib.err_name(code) and cls.code == code
        code -= 1
    assert code < -10
    e = errors.make_error(code, "a code this package does not know")
    assert type(e) is eplb.Error and e.code == code


def test_the_library_is_the_packages_version():
    assert eplb.library_version().split(".")[:2] == eplb.__version__.split(".")[:2]
    assert eplb.library_path().endswith(_lib.SONAME) or "libeplb" in eplb.library_path()


def test_help_says_what_the_arguments_are():
    doc = eplb.rebalance_experts.__doc__
    for words in ("weight", "num_replicas", "E <= S <= 1048576", "num_groups",
                  "num_nodes", "num_gpus", "1 <= G <= 65536", "policy",
                  "current", "scenarios", "phy2log", "log2phy", "logcnt"):
        assert words in doc
    for f in (eplb.read_stats, eplb.write_map, eplb.imbalance, eplb.report,
              eplb.Rebalancer, eplb.Rebalancer.step, eplb.Rebalancer.observe):
        assert f.__doc__ and len(f.__doc__) > 100

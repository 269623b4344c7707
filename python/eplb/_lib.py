"""libeplb.so through ctypes: finding and loading it, the C structures this
package passes, and the prototypes of the functions it calls.

Why ctypes (docs/python.md): it is in Python's standard library, so the
package needs no compiler, no build step and no package beyond Python
itself; libeplb's API is a few flat structures and functions that return an
int and fill an eplb_error_t, which ctypes describes directly.  The
structures below mirror include/eplb/*.h field for field; the tests compare
their sizes and offsets with a C program compiled against the headers
(python/tests/test_abi.py), so a field added in C without its mirror here
fails the tests instead of corrupting memory.

The library is loaded on first use, not at import: `import eplb` and
`help(eplb)` work without it.  Where it is looked for, in order:
  1. $EPLB_LIBRARY when set (a path; it must load: a typo is an error, not
     a silent fall back to another copy);
  2. the path this copy of the package was configured with (_config.py:
     the build tree's library, or the installed one relative to the
     installed package);
  3. the loader's default search (libeplb.so.0 through LD_LIBRARY_PATH and
     ld.so's cache).
"""

from __future__ import annotations

import ctypes
import os
import re
import threading
from ctypes import (CFUNCTYPE, POINTER, Structure, c_char, c_char_p, c_double,
                    c_int, c_int32, c_int64, c_uint64, c_void_p)
from typing import List, Optional

from . import _config
from ._version import VERSION
from .errors import LibraryError, make_error

SONAME = "libeplb.so.0"
ERROR_MSG_MAX = 1024  # EPLB_ERROR_MSG_MAX

# Ranges of include/eplb/*.h, checked here before a value reaches C (ctypes
# would silently wrap an int that does not fit int32_t).
MAX_COUNT = 9007199254740992.0  # EPLB_MAX_COUNT, 2^53
MAX_LAYERS = 4096
MAX_EXPERTS = 65536
MIN_SLOTS, MAX_SLOTS = 1, 1048576
MIN_GPUS, MAX_GPUS = 1, 65536
MAX_PLAN_THREADS = 64
MAX_ITER = 1000000000
MAX_SCENARIOS = 1024  # EPLB_MAX_SCENARIOS
MIN_SCENARIO_WEIGHT, MAX_SCENARIO_WEIGHT = 1e-6, 1e6
INT32_MAX = 2**31 - 1


# ---- structures (include/eplb/*.h) -------------------------------------

class ErrorT(Structure):
    """eplb_error_t (eplb/error.h)."""
    _fields_ = [("code", c_int), ("msg", c_char * ERROR_MSG_MAX)]


class StatsT(Structure):
    """eplb_stats_t (eplb/stats.h)."""
    _fields_ = [("num_layers", c_int32), ("num_experts", c_int32),
                ("layer_ids", POINTER(c_int32)), ("load", POINTER(c_double)),
                ("dense_rows", c_int)]


class SeriesT(Structure):
    """eplb_series_t (eplb/series.h)."""
    _fields_ = [("num_steps", c_int32), ("num_layers", c_int32),
                ("num_experts", c_int32), ("layer_ids", POINTER(c_int32)),
                ("load", POINTER(c_double)), ("dense_rows", c_int)]


class PlacementT(Structure):
    """eplb_placement_t (eplb/placement.h)."""
    _fields_ = [("num_layers", c_int32), ("num_experts", c_int32),
                ("num_slots", c_int32), ("num_gpus", c_int32),
                ("layer_ids", POINTER(c_int32)), ("phy2log", POINTER(c_int32))]


class PlanOptsT(Structure):
    """eplb_plan_opts_t (eplb/plan.h)."""
    _fields_ = [("num_slots", c_int32), ("num_gpus", c_int32),
                ("num_nodes", c_int32), ("num_groups", c_int32),
                ("policy", c_int), ("max_moves", c_int32),
                ("move_cost", c_double), ("keep_threshold", c_double),
                ("spill", c_int32), ("spill_cost", c_double),
                ("threads", c_int32)]


class StatsReadOptsT(Structure):
    """eplb_stats_read_opts_t (eplb/formats.h)."""
    _fields_ = [("iter_min", c_int64), ("iter_max", c_int64)]


class MapWriteOptsT(Structure):
    _fields_ = [("allow_duplicates", c_int)]


class BalanceT(Structure):
    """eplb_balance_t (eplb/metrics.h)."""
    _fields_ = [("imbalance", c_double), ("balancedness", c_double),
                ("floor", c_double), ("max_imbalance", c_double),
                ("worst_layer", c_int32)]


class ReportTableT(Structure):
    """eplb_report_table_t (eplb/report.h)."""
    _fields_ = [("num_layers", c_int32), ("num_gpus", c_int32),
                ("gpu_load", POINTER(c_double)), ("mean", POINTER(c_double)),
                ("std", POINTER(c_double)), ("ratio", POINTER(c_double)),
                ("avg_mean", c_double), ("avg_std", c_double),
                ("avg_ratio", c_double), ("max_ratio", c_double),
                ("worst_layer", c_int32)]


class ReportT(Structure):
    """eplb_report_t (eplb/report.h)."""
    _fields_ = [("num_layers", c_int32), ("num_experts", c_int32),
                ("layer_ids", POINTER(c_int32)),
                ("before", ReportTableT), ("after", ReportTableT),
                ("has_after", c_int), ("cv", POINTER(c_double)),
                ("hot_share", POINTER(c_double)),
                ("hot_expert", POINTER(c_int32)),
                ("avg_cv", c_double), ("avg_hot_share", c_double),
                ("max_hot_share", c_double), ("max_hot_layer", c_int32),
                ("num_steps", c_int32),
                # eplb_report_scenarios_t *: not read by this package
                ("scenarios", c_void_p)]


class ScenariosT(Structure):
    """eplb_scenarios_t (eplb/plan.h)."""
    _fields_ = [("num_scenarios", c_int32), ("stats", POINTER(StatsT)),
                ("weights", POINTER(c_double))]


class OnlineOptsT(Structure):
    """eplb_online_opts_t (eplb/online.h)."""
    _fields_ = [("plan", PlanOptsT), ("ema_alpha", c_double),
                ("threshold", c_double), ("min_gain", c_double),
                ("layers_per_round", c_int32), ("history", c_int32)]


# eplb_rebalance_hook_t (eplb/rebalance.h)
HOOK = CFUNCTYPE(c_int, c_void_p, POINTER(PlacementT), POINTER(ErrorT))


class RebalancerOptsT(Structure):
    """eplb_rebalancer_opts_t (eplb/rebalance.h)."""
    _fields_ = [("online", OnlineOptsT), ("generation", c_uint64),
                ("output", c_char_p), ("output_format", c_int),
                ("shards_dir", c_char_p), ("max_buffer_mb", c_int32),
                ("timeout_s", c_int32), ("layer_ids", POINTER(c_int32)),
                ("pause", HOOK), ("resume", HOOK), ("hook_ctx", c_void_p),
                ("quiet", c_int)]


class RoundT(Structure):
    """eplb_round_t (eplb/rebalance.h)."""
    _fields_ = [("round", c_int64), ("had_traffic", c_int),
                ("rebalanced", c_int), ("generation", c_uint64),
                ("imbalance_before", c_double), ("imbalance_after", c_double),
                ("layers_changed", c_int32), ("moves", c_int64),
                ("bytes_moved", c_int64), ("seconds", c_double)]


# Every mirrored structure, by its C name (test_abi.py compares them).
STRUCTS = {
    "eplb_error_t": ErrorT, "eplb_stats_t": StatsT, "eplb_series_t": SeriesT,
    "eplb_placement_t": PlacementT, "eplb_plan_opts_t": PlanOptsT,
    "eplb_stats_read_opts_t": StatsReadOptsT, "eplb_balance_t": BalanceT,
    "eplb_report_table_t": ReportTableT, "eplb_report_t": ReportT,
    "eplb_online_opts_t": OnlineOptsT, "eplb_scenarios_t": ScenariosT,
    "eplb_rebalancer_opts_t": RebalancerOptsT, "eplb_round_t": RoundT,
}

# ---- prototypes ----------------------------------------------------------

_P = POINTER
_PROTOS = {
    # name: (restype, argtypes)
    "eplb_version": (c_char_p, []),
    "eplb_strerror": (c_char_p, [c_int]),
    "eplb_err_name": (c_char_p, [c_int]),
    "eplb_stats_cleanup": (None, [_P(StatsT)]),
    "eplb_stats_drop_zero_layers": (c_int, [_P(StatsT), _P(c_int32), _P(ErrorT)]),
    "eplb_series_cleanup": (None, [_P(SeriesT)]),
    "eplb_series_sum": (c_int, [_P(SeriesT), c_double, _P(StatsT), _P(ErrorT)]),
    "eplb_placement_init": (c_int, [_P(PlacementT), c_int32, c_int32, c_int32,
                                    c_int32, _P(ErrorT)]),
    "eplb_placement_cleanup": (None, [_P(PlacementT)]),
    "eplb_placement_check": (c_int, [_P(PlacementT), c_int, c_char_p, _P(ErrorT)]),
    "eplb_placement_contiguous": (c_int, [_P(PlacementT), _P(ErrorT)]),
    "eplb_plan_opts_default": (None, [_P(PlanOptsT)]),
    "eplb_plan_check_opts": (c_int, [_P(PlanOptsT), c_int32, _P(ErrorT)]),
    "eplb_plan_is_hierarchical": (c_int, [_P(PlanOptsT)]),
    "eplb_plan": (c_int, [_P(StatsT), _P(PlanOptsT), _P(PlacementT), _P(ErrorT)]),
    "eplb_plan_from": (c_int, [_P(StatsT), _P(PlacementT), _P(PlanOptsT),
                               _P(PlacementT), _P(ErrorT)]),
    "eplb_placement_moves": (c_int64, [_P(PlacementT), _P(PlacementT)]),
    "eplb_plan_scenarios": (c_int, [_P(ScenariosT), _P(PlanOptsT),
                                    _P(PlacementT), _P(ErrorT)]),
    "eplb_plan_scenarios_from": (c_int, [_P(ScenariosT), _P(PlacementT),
                                         _P(PlanOptsT), _P(PlacementT),
                                         _P(ErrorT)]),
    "eplb_gpu_loads": (c_int, [_P(c_double), c_int32, _P(c_int32), c_int32,
                               c_int32, _P(c_double), _P(ErrorT)]),
    "eplb_layer_imbalance": (c_double, [_P(c_double), c_int32, _P(c_int32),
                                        c_int32, c_int32]),
    "eplb_layer_floor": (c_double, [_P(c_double), c_int32, c_int32, c_int32]),
    "eplb_layer_cross_node": (c_double, [_P(c_double), c_int32, _P(c_int32),
                                         c_int32, c_int32, c_int32, c_int32]),
    "eplb_balance": (c_int, [_P(StatsT), _P(PlacementT), _P(BalanceT), _P(ErrorT)]),
    "eplb_stats_read_many": (c_int, [_P(StatsT), _P(c_char_p), c_int, c_int,
                                     _P(StatsReadOptsT), _P(ErrorT)]),
    "eplb_stats_read_trtllm_series": (c_int, [_P(SeriesT), c_char_p,
                                              _P(StatsReadOptsT), _P(ErrorT)]),
    "eplb_stats_format_from_name": (c_int, [c_char_p]),
    "eplb_placement_write": (c_int, [_P(PlacementT), c_char_p, c_int, _P(ErrorT)]),
    "eplb_placement_write_opts": (c_int, [_P(PlacementT), c_char_p, c_int,
                                          _P(MapWriteOptsT), _P(ErrorT)]),
    "eplb_placement_read": (c_int, [_P(PlacementT), c_char_p, c_int, _P(ErrorT)]),
    "eplb_placement_read_for": (c_int, [_P(PlacementT), c_char_p, _P(StatsT),
                                        c_int32, c_int32, c_char_p, _P(ErrorT)]),
    "eplb_map_format_from_name": (c_int, [c_char_p]),
    "eplb_report_compute": (c_int, [_P(ReportT), _P(StatsT), _P(PlacementT),
                                    _P(PlacementT), _P(ErrorT)]),
    "eplb_report_compute_series": (c_int, [_P(ReportT), _P(SeriesT),
                                           _P(PlacementT), _P(PlacementT),
                                           _P(ErrorT)]),
    "eplb_report_cleanup": (None, [_P(ReportT)]),
    "eplb_report_write_json": (c_int, [_P(ReportT), c_char_p, _P(ErrorT)]),
    "eplb_online_opts_default": (None, [_P(OnlineOptsT)]),
    "eplb_rebalancer_opts_default": (None, [_P(RebalancerOptsT)]),
    # eplb_rebalancer_create takes an MPI_Comm, whose C type depends on the
    # MPI library: rebalance.py sets its prototype.
    "eplb_rebalancer_destroy": (None, [c_void_p]),
    "eplb_rebalancer_observe": (c_int, [c_void_p, _P(StatsT), c_int, _P(ErrorT)]),
    "eplb_rebalancer_observe_failed": (c_int, [c_void_p, _P(ErrorT)]),
    "eplb_rebalancer_step": (c_int, [c_void_p, _P(RoundT), _P(ErrorT)]),
    "eplb_rebalancer_current": (_P(PlacementT), [c_void_p]),
    "eplb_rebalancer_generation": (c_uint64, [c_void_p]),
}


# ---- loading -----------------------------------------------------------

_lock = threading.Lock()
_lib: Optional[ctypes.CDLL] = None
_path: Optional[str] = None


def _candidates() -> List[str]:
    """Where to look, in order (see the module's docstring)."""
    out = []
    if _config.LIBRARY:
        p = _config.LIBRARY
        if not os.path.isabs(p):
            p = os.path.normpath(os.path.join(os.path.dirname(__file__), p))
        out.append(p)
    out.append(SONAME)
    return out


def _open(path: str) -> ctypes.CDLL:
    lib = ctypes.CDLL(path)
    for name, (res, args) in _PROTOS.items():
        f = getattr(lib, name)
        f.restype = res
        f.argtypes = args
    return lib


def _check_version(lib: ctypes.CDLL, path: str) -> None:
    have = lib.eplb_version().decode()
    if have.split(".")[:2] != VERSION.split(".")[:2]:
        raise LibraryError(
            "%s is libeplb %s but this eplb package is %s: the structures "
            "differ between minor versions; install the matching library or "
            "point EPLB_LIBRARY at it" % (path, have, VERSION))


def load() -> ctypes.CDLL:
    """The loaded libeplb (loading it on the first call)."""
    global _lib, _path
    if _lib is not None:
        return _lib
    with _lock:
        if _lib is not None:
            return _lib
        env = os.environ.get("EPLB_LIBRARY", "")
        if env:
            try:
                lib = _open(env)
            except (OSError, AttributeError) as e:
                raise LibraryError("EPLB_LIBRARY=%s could not be loaded: %s; "
                                   "unset it or point it at libeplb.so" %
                                   (env, e)) from None
            tried_path = env
        else:
            lib, tried_path, why = None, None, []
            for cand in _candidates():
                if os.path.isabs(cand) and not os.path.exists(cand):
                    why.append("%s: not there" % cand)
                    continue
                try:
                    lib = _open(cand)
                    tried_path = cand
                    break
                except (OSError, AttributeError) as e:
                    why.append("%s: %s" % (cand, e))
            if lib is None:
                raise LibraryError(
                    "libeplb could not be loaded (%s); build it (scripts/"
                    "build.sh) or install it (cmake --install), or set "
                    "EPLB_LIBRARY to its path" % "; ".join(why))
        _check_version(lib, tried_path)
        _path = tried_path
        _lib = lib
        return lib


def library_path() -> str:
    """The path (or name) libeplb was loaded from, loading it if needed."""
    load()
    assert _path is not None
    return _path


# ---- calling -----------------------------------------------------------

# libeplb's planner names options as its programs spell them (--num-slots);
# a Python caller passed num_replicas=... (DeepSeek's name) or num_gpus=...
_OPT_NAMES = {"num-slots": "num_replicas"}
_OPT_RE = re.compile(r"--([a-z][a-z-]*)")


def python_names(msg: str, names: Optional[dict] = None) -> str:
    """msg with --option-name turned into the Python argument's name."""
    table = dict(_OPT_NAMES)
    if names:
        table.update(names)

    def sub(m: "re.Match[str]") -> str:
        k = m.group(1)
        return table.get(k, k.replace("-", "_"))
    return _OPT_RE.sub(sub, msg)


def raise_for(rc: int, err: ErrorT, names: Optional[dict] = None) -> None:
    """Raises the exception of a non-zero rc with err's message (with
    libeplb's option names turned into Python's when `names` is given)."""
    if rc == 0:
        return
    msg = err.msg.decode("utf-8", "replace")
    if not msg:
        s = load().eplb_strerror(rc)
        msg = s.decode() if s else "error %d" % rc
    if names is not None:
        msg = python_names(msg, names)
    raise make_error(rc, msg)


def err_name(code: int) -> str:
    s = load().eplb_err_name(code)
    return s.decode() if s else ""

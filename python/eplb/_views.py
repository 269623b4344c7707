"""C structures over numpy arrays, and numpy copies of what libeplb
allocated.

A view keeps the arrays it points into alive for as long as the view
lives; libeplb only reads them (const arguments).  What libeplb allocates
(a plan, statistics it read) is copied into numpy and freed at once with
its cleanup function, so no C memory outlives a call.
"""

from __future__ import annotations

from ctypes import POINTER, byref, c_double, c_int32
from typing import Any, Optional, Tuple

import numpy as np

from . import _lib


class StatsView:
    """An eplb_stats_t over load [L, E] (float64) and layer_ids [L] (int32)."""

    def __init__(self, load: np.ndarray, layer_ids: Optional[np.ndarray] = None):
        L, E = load.shape
        self.load = np.ascontiguousarray(load, dtype=np.float64)
        self.layer_ids = (np.arange(L, dtype=np.int32) if layer_ids is None
                          else np.ascontiguousarray(layer_ids, dtype=np.int32))
        self.c = _lib.StatsT(L, E,
                             self.layer_ids.ctypes.data_as(POINTER(c_int32)),
                             self.load.ctypes.data_as(POINTER(c_double)), 0)

    def ref(self):
        return byref(self.c)


class PlacementView:
    """An eplb_placement_t over phy2log [L, S] (int32)."""

    def __init__(self, phy2log: np.ndarray, num_experts: int, num_gpus: int,
                 layer_ids: Optional[np.ndarray] = None):
        L, S = phy2log.shape
        self.phy2log = np.ascontiguousarray(phy2log, dtype=np.int32)
        self.layer_ids = (np.arange(L, dtype=np.int32) if layer_ids is None
                          else np.ascontiguousarray(layer_ids, dtype=np.int32))
        self.c = _lib.PlacementT(
            L, num_experts, S, num_gpus,
            self.layer_ids.ctypes.data_as(POINTER(c_int32)),
            self.phy2log.ctypes.data_as(POINTER(c_int32)))

    def ref(self):
        return byref(self.c)


def _copy(ptr: Any, n: int, dtype: Any) -> np.ndarray:
    if n == 0 or not ptr:
        return np.zeros(0, dtype=dtype)
    return np.ctypeslib.as_array(ptr, shape=(n,)).astype(dtype, copy=True)


def take_stats(s: "_lib.StatsT") -> Tuple[np.ndarray, np.ndarray, bool]:
    """(load [L, E] float64, layer_ids [L] int64, dense_rows) copied out of
    s, which is then freed."""
    try:
        L, E = s.num_layers, s.num_experts
        load = _copy(s.load, L * E, np.float64).reshape(L, E)
        ids = _copy(s.layer_ids, L, np.int64)
        return load, ids, bool(s.dense_rows)
    finally:
        _lib.load().eplb_stats_cleanup(byref(s))


def take_placement(p: "_lib.PlacementT") -> Tuple[np.ndarray, np.ndarray]:
    """(phy2log [L, S] int64, layer_ids [L] int64) copied out of p, which
    is then freed."""
    try:
        L, S = p.num_layers, p.num_slots
        phy = _copy(p.phy2log, L * S, np.int64).reshape(L, S)
        ids = _copy(p.layer_ids, L, np.int64)
        return phy, ids
    finally:
        _lib.load().eplb_placement_cleanup(byref(p))


def copy_placement(p: "_lib.PlacementT") -> np.ndarray:
    """phy2log [L, S] int64 copied out of a placement libeplb keeps."""
    return _copy(p.phy2log, p.num_layers * p.num_slots,
                 np.int64).reshape(p.num_layers, p.num_slots)


def log2phy_logcnt(phy2log: np.ndarray, num_experts: int
                   ) -> Tuple[np.ndarray, np.ndarray]:
    """DeepSeek's other two results from phy2log [L, S]: log2phy
    [L, E, S - E + 1] (each expert's slots, ascending, padded with -1) and
    logcnt [L, E] (its replicas), int64."""
    L, S = phy2log.shape
    E = num_experts
    X = S - E + 1
    key = (phy2log + (np.arange(L, dtype=np.int64) * E)[:, None]).ravel()
    logcnt = np.bincount(key, minlength=L * E)
    # Slots grouped by (layer, expert), ascending inside a group.  Keys
    # below 2^16 sort by radix in numpy.
    k = key.astype(np.uint16) if L * E <= 65536 else key
    order = np.argsort(k, kind="stable")
    starts = np.zeros(L * E, dtype=np.int64)
    np.cumsum(logcnt[:-1], out=starts[1:])
    ks = key[order]
    # slot order[i] is replica (i - starts[ks[i]]) of its expert ks[i]
    pos = ks * X + np.arange(L * S, dtype=np.int64) - starts[ks]
    log2phy = np.full(L * E * X, -1, dtype=np.int64)
    log2phy[pos] = order % S
    return log2phy.reshape(L, E, X), logcnt.reshape(L, E).astype(np.int64)

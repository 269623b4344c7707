"""How unbalanced a placement is (eplb/metrics.h).

A GPU's load is the sum over its slots of (expert load / replicas of that
expert): a replicated expert's tokens are taken as split evenly over its
replicas, as DeepSeek, SGLang, vLLM and TensorRT-LLM assume.  Slot s of
phy2log [L, S] is on GPU s // (S // G).  Results are floats and numpy
arrays whatever the inputs were.
"""

from __future__ import annotations

from ctypes import POINTER, byref, c_double, c_int32
from typing import Any, NamedTuple, Tuple, Union

import numpy as np

from . import _arrays, _lib, _views
from .errors import ArgError, MapError, ShapeError

__all__ = ["gpu_loads", "imbalance", "balance", "Balance", "floor",
           "cross_node", "moves"]


class Balance(NamedTuple):
    """eplb_balance_t: means over layers, and the worst layer."""
    imbalance: float     # mean over layers of max/mean - 1 over GPUs
    balancedness: float  # mean over layers of mean/max (DeepSeek, SGLang)
    floor: float         # mean over layers of the floor (see floor())
    max_imbalance: float # the worst layer's imbalance
    worst_layer: int     # its index 0..L-1


def _map_and_load(phy2log: Any, weight: Any, num_gpus: Any,
                  map_name: str = "phy2log"
                  ) -> Tuple[np.ndarray, np.ndarray, int]:
    w = _arrays.loads(weight, "weight")
    L, E = w.shape
    p = _arrays.expert_ids(phy2log, map_name, E, ("L", "S"),
                           [(L, L), (_lib.MIN_SLOTS, _lib.MAX_SLOTS)])
    G = _arrays.integer(num_gpus, "num_gpus", _lib.MIN_GPUS, _lib.MAX_GPUS)
    if p.shape[1] % G:
        raise ArgError("%s has %d slots per layer, not a multiple of "
                       "num_gpus %d" % (map_name, p.shape[1], G))
    return p, w, G


def gpu_loads(phy2log: Any, weight: Any, num_gpus: int) -> np.ndarray:
    """[L, G] float64: each GPU's load under phy2log [L, S] for the loads
    weight [L, E] (every expert id in 0..E-1; S a multiple of num_gpus)."""
    p, w, G = _map_and_load(phy2log, weight, num_gpus)
    L, E = w.shape
    S = p.shape[1]
    out = np.zeros((L, G), dtype=np.float64)
    lib = _lib.load()
    err = _lib.ErrorT()
    dp, ip, op = POINTER(c_double), POINTER(c_int32), POINTER(c_double)
    for l in range(L):
        rc = lib.eplb_gpu_loads(w[l].ctypes.data_as(dp), E,
                                p[l].ctypes.data_as(ip), S, G,
                                out[l].ctypes.data_as(op), byref(err))
        if rc:
            _lib.raise_for(rc, err)
    return out


def _balance(p: np.ndarray, w: np.ndarray, G: int) -> Balance:
    L, E = w.shape
    st = _views.StatsView(w)
    pl = _views.PlacementView(p, E, G)
    out = _lib.BalanceT()
    err = _lib.ErrorT()
    rc = _lib.load().eplb_balance(st.ref(), pl.ref(), byref(out), byref(err))
    _lib.raise_for(rc, err)
    return Balance(out.imbalance, out.balancedness, out.floor,
                   out.max_imbalance, out.worst_layer)


def balance(phy2log: Any, weight: Any, num_gpus: int) -> Balance:
    """Imbalance, balancedness and floor of phy2log [L, S] on weight
    [L, E], averaged over layers, with the worst layer (eplb_balance)."""
    return _balance(*_map_and_load(phy2log, weight, num_gpus))


def imbalance(phy2log: Any, weight: Any, num_gpus: int, *,
              per_layer: bool = False) -> Union[float, np.ndarray]:
    """max/mean - 1 of the GPUs' loads (TensorRT-LLM's imbalance ratio; 0 =
    perfect, 0 for an idle layer), averaged over layers, or per layer ([L]
    float64) with per_layer=True.  phy2log [L, S] int (expert ids in
    0..E-1, S a multiple of num_gpus), weight [L, E] loads, num_gpus
    1..65536."""
    p, w, G = _map_and_load(phy2log, weight, num_gpus)
    if not per_layer:
        return _balance(p, w, G).imbalance
    L, E = w.shape
    S = p.shape[1]
    lib = _lib.load()
    out = np.empty(L, dtype=np.float64)
    for l in range(L):
        v = lib.eplb_layer_imbalance(w[l].ctypes.data_as(POINTER(c_double)), E,
                                     p[l].ctypes.data_as(POINTER(c_int32)), S, G)
        if v < 0:
            raise MapError("layer %d: the map could not be evaluated" % l)
        out[l] = v
    return out


def floor(weight: Any, num_slots: int, num_gpus: int, *,
          per_layer: bool = False) -> Union[float, np.ndarray]:
    """A lower bound on the imbalance any placement of num_slots slots on
    num_gpus GPUs (no GPU holding an expert twice) can reach on weight
    [L, E] (eplb_layer_floor; docs/planner.md), averaged over layers or
    per layer.  num_slots E..1048576, a multiple of num_gpus."""
    w = _arrays.loads(weight, "weight")
    L, E = w.shape
    S = _arrays.integer(num_slots, "num_slots", E, _lib.MAX_SLOTS,
                        "(at least the number of experts)")
    G = _arrays.integer(num_gpus, "num_gpus", _lib.MIN_GPUS, _lib.MAX_GPUS)
    if S % G:
        raise ArgError("num_slots %d is not a multiple of num_gpus %d" % (S, G))
    lib = _lib.load()
    out = np.array([lib.eplb_layer_floor(w[l].ctypes.data_as(POINTER(c_double)),
                                         E, S, G) for l in range(L)])
    return out if per_layer else float(out.mean())


def cross_node(phy2log: Any, weight: Any, num_gpus: int, num_nodes: int,
               num_groups: int, *, per_layer: bool = False
               ) -> Union[float, np.ndarray]:
    """The fraction of each layer's tokens served away from their expert
    group's home node (the node serving most of the group's load;
    eplb_layer_cross_node), averaged over layers or per layer.  GPUs form
    num_nodes nodes (dividing num_gpus), experts num_groups groups
    (dividing E)."""
    p, w, G = _map_and_load(phy2log, weight, num_gpus)
    L, E = w.shape
    N = _arrays.integer(num_nodes, "num_nodes", 1, G, "(num_gpus)")
    K = _arrays.integer(num_groups, "num_groups", 1, E, "(the experts)")
    if G % N:
        raise ArgError("num_gpus %d is not a multiple of num_nodes %d" % (G, N))
    if E % K:
        raise ArgError("%d experts are not a multiple of num_groups %d" % (E, K))
    lib = _lib.load()
    S = p.shape[1]
    out = np.empty(L, dtype=np.float64)
    for l in range(L):
        v = lib.eplb_layer_cross_node(w[l].ctypes.data_as(POINTER(c_double)), E,
                                      p[l].ctypes.data_as(POINTER(c_int32)),
                                      S, G, N, K)
        if v < 0:
            raise MapError("layer %d: the map could not be evaluated" % l)
        out[l] = v
    return out if per_layer else float(out.mean())


def moves(from_phy2log: Any, to_phy2log: Any, num_gpus: int) -> int:
    """Replicas that must arrive on a GPU which did not hold that expert to
    go from one placement to the other (same [L, S]): what a migration
    receives (eplb_placement_moves)."""
    a = _arrays.expert_ids(from_phy2log, "from_phy2log")
    b = _arrays.expert_ids(to_phy2log, "to_phy2log")
    if a.shape != b.shape:
        raise ShapeError("from_phy2log is [%d, %d] but to_phy2log is [%d, %d]"
                         % (a.shape + b.shape))
    G = _arrays.integer(num_gpus, "num_gpus", _lib.MIN_GPUS, _lib.MAX_GPUS)
    if a.shape[1] % G:
        raise ArgError("%d slots per layer is not a multiple of num_gpus %d" %
                       (a.shape[1], G))
    E = int(max(a.max(), b.max())) + 1
    pa = _views.PlacementView(a, E, G)
    pb = _views.PlacementView(b, E, G)
    n = _lib.load().eplb_placement_moves(pa.ref(), pb.ref())
    if n < 0:
        raise ShapeError("the placements' shapes differ")
    return int(n)

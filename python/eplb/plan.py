"""eplb.rebalance_experts: DeepSeek EPLB's function, planned by libeplb.

Same arguments, same three results with the same shapes, dtypes and
conventions as DeepSeek's ``rebalance_experts`` (eplb.py of DeepSeek's EPLB
repository), so swapping one import line is enough; see docs/python.md for
the few places where the results may differ (ties, the order of replicas
inside log2phy).
"""

from __future__ import annotations

import os
from ctypes import POINTER, byref, c_double
from typing import Any, Optional, Tuple

import numpy as np

from . import _arrays, _lib, _views
from .errors import ArgError, NoMemError, ShapeError

__all__ = ["rebalance_experts", "POLICIES"]

POLICIES = ("balanced", "deepseek")
_POLICY_CODE = {"balanced": 0, "deepseek": 1}  # eplb_policy_t


def plan_opts(num_slots: int, num_gpus: int, num_nodes: int, num_groups: int,
              policy: str, threads: int, max_moves: Optional[int] = None,
              move_cost: Optional[float] = None,
              keep_threshold: Optional[float] = None,
              slots_name: str = "num_replicas") -> "_lib.PlanOptsT":
    """eplb_plan_opts_t from Python arguments, each range-checked (the
    relations between them are libeplb's check, eplb_plan_check_opts)."""
    o = _lib.PlanOptsT()
    _lib.load().eplb_plan_opts_default(byref(o))
    o.num_slots = _arrays.integer(num_slots, slots_name, _lib.MIN_SLOTS,
                                  _lib.MAX_SLOTS)
    o.num_gpus = _arrays.integer(num_gpus, "num_gpus", _lib.MIN_GPUS,
                                 _lib.MAX_GPUS)
    o.num_nodes = _arrays.integer(num_nodes, "num_nodes", 1, _lib.MAX_GPUS)
    o.num_groups = _arrays.integer(num_groups, "num_groups", 1,
                                   _lib.MAX_EXPERTS)
    o.policy = _POLICY_CODE[_arrays.choice(policy, "policy", POLICIES)]
    o.threads = _arrays.integer(threads, "threads", 0, _lib.MAX_PLAN_THREADS,
                                "(0: one per CPU)")
    if max_moves is not None:
        o.max_moves = _arrays.integer(max_moves, "max_moves", -1,
                                      _lib.MAX_SLOTS, "(-1: no limit)")
    if move_cost is not None:
        o.move_cost = _arrays.real(move_cost, "move_cost", 0, 1)
    if keep_threshold is not None:
        o.keep_threshold = _arrays.real(keep_threshold, "keep_threshold", 0, 100)
    return o


def check_opts(o: "_lib.PlanOptsT", num_experts: int,
               names: Optional[dict] = None) -> None:
    err = _lib.ErrorT()
    rc = _lib.load().eplb_plan_check_opts(byref(o), num_experts, byref(err))
    _lib.raise_for(rc, err, names or {})


# ---- scenarios: several workloads balanced at once ---------------------

def _scenario_set(scenarios: Any, L: int, E: int) -> np.ndarray:
    """scenarios (a [K, L, E] array or K arrays [L, E]) as one float64
    [K, L, E] array, checked like weight."""
    K_range = (1, _lib.MAX_SCENARIOS)
    if _arrays.is_tensor(scenarios) or isinstance(scenarios, np.ndarray):
        s = _arrays.loads(scenarios, "scenarios", ("K", "L", "E"),
                          [K_range, (L, L), (E, E)])
        return s
    if not isinstance(scenarios, (list, tuple)) or len(scenarios) == 0:
        raise ShapeError("scenarios: pass a non-empty list of [L, E] loads or "
                         "a [K, L, E] array, not %r" % type(scenarios).__name__)
    if len(scenarios) > _lib.MAX_SCENARIOS:
        raise ShapeError("scenarios: %d loads; at most %d" %
                         (len(scenarios), _lib.MAX_SCENARIOS))
    parts = [_arrays.loads(x, "scenarios[%d]" % k, ("L", "E"),
                           [(L, L), (E, E)]) for k, x in enumerate(scenarios)]
    return np.stack(parts)


def _scenario_weights(weights: Any, K: int) -> Optional[np.ndarray]:
    """weights (K numbers, each in 1e-6..1e6) as float64, or None."""
    if weights is None:
        return None
    if isinstance(weights, (str, bytes)) or not (
            _arrays.is_tensor(weights) or hasattr(weights, "__len__")):
        raise ArgError("weights: pass %d numbers (one per scenario), not %r" %
                       (K, type(weights).__name__))
    w = _arrays.as_numbers(weights, "weights")
    if w.ndim != 1 or w.shape[0] != K:
        raise ShapeError("weights: shape [%s], expected [%d] (one per "
                         "scenario)" % (", ".join(map(str, w.shape)), K))
    w = w.astype(np.float64)
    for k in range(K):
        _arrays.real(w[k], "weights[%d]" % k, _lib.MIN_SCENARIO_WEIGHT,
                     _lib.MAX_SCENARIO_WEIGHT)
    return np.ascontiguousarray(w)


def _plan_scenarios(stats: _views.StatsView, scenarios: np.ndarray,
                    weights: Optional[np.ndarray], opts: "_lib.PlanOptsT",
                    current: Optional[_views.PlacementView]
                    ) -> "_lib.PlacementT":
    """Plans for every scenario at once (eplb_plan_scenarios, or
    eplb_plan_scenarios_from from `current`; docs/planner.md
    "Scenarios").  stats gives the layer ids."""
    K = scenarios.shape[0]
    views = [_views.StatsView(scenarios[k], stats.layer_ids) for k in range(K)]
    arr = (_lib.StatsT * K)(*[v.c for v in views])
    wptr = (weights.ctypes.data_as(POINTER(c_double))
            if weights is not None else None)
    sc = _lib.ScenariosT(K, arr, wptr)
    lib = _lib.load()
    out = _lib.PlacementT()
    err = _lib.ErrorT()
    if current is None:
        rc = lib.eplb_plan_scenarios(byref(sc), byref(opts), byref(out),
                                     byref(err))
    else:
        rc = lib.eplb_plan_scenarios_from(byref(sc), current.ref(), byref(opts),
                                          byref(out), byref(err))
    if rc:
        lib.eplb_placement_cleanup(byref(out))
        _lib.raise_for(rc, err, {"current-map": "current"})
    del views, arr  # kept alive until here: libeplb read them
    return out


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def _check_memory(L: int, E: int, S: int) -> None:
    """The results must fit in this machine's memory: Linux overcommits, so
    an allocation too large would not fail but get the process killed."""
    need = L * S * 16 + L * E * (S - E + 1) * 8 + L * E * 16
    have = _physical_memory()
    if need > have:
        raise NoMemError("the results of %d layers x %d experts x %d slots "
                         "need %.1f GB (log2phy alone is [%d, %d, %d]); this "
                         "machine has %.1f GB" % (L, E, S, need / 1e9, L, E,
                                                  S - E + 1, have / 1e9))


# ---- the function --------------------------------------------------------

def rebalance_experts(weight: Any, num_replicas: int, num_groups: int,
                      num_nodes: int, num_gpus: int, *,
                      policy: str = "balanced", current: Any = None,
                      scenarios: Any = None, weights: Any = None,
                      threads: int = 1,
                      max_moves: Optional[int] = None,
                      move_cost: Optional[float] = None,
                      keep_threshold: Optional[float] = None
                      ) -> Tuple[Any, Any, Any]:
    """Plans where every expert's replicas go: DeepSeek EPLB's
    ``rebalance_experts``, computed by libeplb.

    Arguments (DeepSeek's, in DeepSeek's order):
      weight        [L, E] load of each logical expert of each MoE layer
                    (token counts, any float or integer type): a torch
                    tensor on any device, a numpy array or nested lists.
                    1 <= L <= 4096, 1 <= E <= 65536; every value finite,
                    >= 0 and <= 2^53.  An all-zero layer is planned as if
                    every expert were equally loaded.
      num_replicas  S, physical expert slots per layer over all GPUs:
                    E <= S <= 1048576, a multiple of num_gpus.
      num_groups    K, expert groups (DeepSeek-V3: 8): 1 <= K <= E.
      num_nodes     N, server nodes: 1 <= N <= num_gpus, dividing num_gpus.
                    The plan is hierarchical (groups packed onto nodes
                    first, then each node's experts replicated and packed
                    onto its GPUs) when N > 1 and K % N == 0, which then
                    needs E % K == 0; else global.
      num_gpus      G, GPUs (expert-parallel ranks): 1 <= G <= 65536.

    Keywords:
      policy        "balanced" (default): never less balanced than DeepSeek's
                    plan on the given load, never two replicas of one expert
                    on a GPU (needs S/G <= E, or <= E/N when hierarchical).
                    "deepseek": DeepSeek's algorithm, deterministic (ties by
                    lower index), the same map on every machine.
      current       the phy2log [L, S] the experts are in now: re-plan from
                    it and move only what buys balance (eplb_plan_from;
                    global plans only).  max_moves (-1..1048576, -1 = no
                    limit: replicas that may arrive on a new GPU per layer),
                    move_cost (0..1) and keep_threshold (0..100) tune it;
                    see docs/planner.md.
      scenarios     several workloads to balance at once: a [K, L, E]
                    array or a list of K [L, E] loads, 1 <= K <= 1024,
                    each checked like weight (same L and E).  The plan
                    balances each of them at once (eplb_plan_scenarios,
                    or eplb_plan_scenarios_from with current), each layer
                    of each normalised to its own total; weight then only
                    gives the shape (pass it among the scenarios to plan
                    on it too).  One scenario is the plain plan of it.
      weights       with scenarios: K numbers, each 1e-6..1e6 (default:
                    equal), what each scenario weighs in the objective.
      threads       threads that plan layers in parallel, 0..64 (0: one per
                    CPU this process may use; default 1).  The map does not
                    depend on it.

    Returns (phy2log, log2phy, logcnt), int64, the kind of `weight` (a
    tensor on weight's device, an array, or lists):
      phy2log  [L, S]: the logical expert in each physical slot; slot s is
               on GPU s // (S // G).
      log2phy  [L, E, S - E + 1]: each expert's physical slots (ascending),
               padded with -1.
      logcnt   [L, E]: each expert's number of replicas.

    Raises eplb.Error subclasses carrying libeplb's one-line message and
    code: ShapeError (dimensions), ArgError (an argument out of range, a
    type that is not a number, a weight out of range), CountError (a
    negative, non-finite or too large load), MapError (a bad `current`).
    """
    kind = _arrays.kind_of(weight)
    w = _arrays.loads(weight, "weight")
    L, E = w.shape
    opts = plan_opts(num_replicas, num_gpus, num_nodes, num_groups, policy,
                     threads, max_moves, move_cost, keep_threshold)
    check_opts(opts, E)
    _check_memory(L, E, opts.num_slots)
    stats = _views.StatsView(w)
    cur = None
    if current is not None:
        c = _arrays.expert_ids(current, "current", E, ("L", "S"),
                               [(L, L), (opts.num_slots, opts.num_slots)])
        cur = _views.PlacementView(c, E, opts.num_gpus)
    lib = _lib.load()
    out = _lib.PlacementT()
    err = _lib.ErrorT()
    if weights is not None and scenarios is None:
        raise ArgError("weights= weighs the scenarios: pass scenarios= too")
    if scenarios is not None:
        sc = _scenario_set(scenarios, L, E)
        placement = _plan_scenarios(stats, sc,
                                    _scenario_weights(weights, sc.shape[0]),
                                    opts, cur)
    else:
        if cur is None:
            rc = lib.eplb_plan(stats.ref(), byref(opts), byref(out), byref(err))
        else:
            rc = lib.eplb_plan_from(stats.ref(), cur.ref(), byref(opts),
                                    byref(out), byref(err))
        if rc:
            lib.eplb_placement_cleanup(byref(out))
            _lib.raise_for(rc, err, {"current-map": "current"})
        placement = out
    phy2log, _ = _views.take_placement(placement)
    try:
        log2phy, logcnt = _views.log2phy_logcnt(phy2log, E)
    except MemoryError:
        raise NoMemError("log2phy [%d, %d, %d] does not fit in memory" %
                         (L, E, phy2log.shape[1] - E + 1)) from None
    return (_arrays.give_back(phy2log, kind), _arrays.give_back(log2phy, kind),
            _arrays.give_back(logcnt, kind))

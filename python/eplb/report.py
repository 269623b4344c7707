"""eplb.report: what `eplb-report --json` prints, as a dict (eplb/report.h).

The same steps as the program (src/cli/eplb_report.c): read and sum the
statistics (dropping SGLang's all-zero dense rows), read the map and fit it
to the statistics' layers, build the contiguous placement the model starts
with, compute the report (per iteration for one TensorRT-LLM dump), and
write it with libeplb's own JSON writer, which is then parsed: the dict is
the program's output, key for key and digit for digit.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from ctypes import byref, memmove
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np

from . import _arrays, _lib, _views
from .errors import ArgError
from .formats import PathLike, path_bytes, read_opts, read_stats_c, stats_format

__all__ = ["report"]


def _per_iteration(stats: Any, format: str, sum_iterations: bool) -> bool:
    """One TensorRT-LLM dump directory: the table is per iteration."""
    if sum_iterations or format not in ("auto", "trtllm"):
        return False
    if isinstance(stats, (list, tuple)):
        if len(stats) != 1:
            return False
        stats = stats[0]
    if not isinstance(stats, (str, bytes, os.PathLike)):
        return False
    p = os.fsdecode(stats)
    if any(c in p for c in "*?["):
        return False
    return os.path.isdir(p) and os.path.isfile(os.path.join(p, "meta_info.json"))


def _contiguous(L: int, E: int, S: int, G: int, ids_ptr: Any,
                out: "_lib.PlacementT") -> None:
    """eplb-report's "before": the contiguous placement on G GPUs (E slots
    when G divides E, as a model starts, else the map's S)."""
    lib = _lib.load()
    err = _lib.ErrorT()
    rc = lib.eplb_placement_init(byref(out), L, E, E if E % G == 0 else S, G,
                                 byref(err))
    if rc == 0:
        rc = lib.eplb_placement_contiguous(byref(out), byref(err))
    _lib.raise_for(rc, err)
    memmove(out.layer_ids, ids_ptr, 4 * L)


def report(stats: Union[PathLike, Sequence[PathLike], Any],
           map: Any = None, *, num_gpus: Optional[int] = None,
           format: str = "auto", iter_range: Optional[Tuple[int, int]] = None,
           sum_iterations: bool = False, layer_ids: Any = None
           ) -> Dict[str, Any]:
    """How evenly the experts' load falls on the GPUs, before (the
    contiguous placement) and after `map`: the dict `eplb-report --json`
    prints (docs/eplb-report.md): per layer the mean, sample std and
    imbalance ratio of the per-GPU load, their averages, the GPU loads, the
    expert-load CV and the hottest expert's share.

    stats      what eplb.read_stats reads (a path, a glob, a dump
               directory, or a list, summed), or an [L, E] array of loads.
    map        an expert-map file (JSON or TensorRT-LLM YAML), or a phy2log
               [L, S] array (num_gpus then required), or None.
    num_gpus   1..65536: GPUs of the map (required for a YAML map or an
               array, which do not say); without a map, the GPUs of the
               contiguous placement (must divide E); neither: one column
               per expert.
    format, iter_range  as for read_stats.
    sum_iterations  one TensorRT-LLM dump is reported per iteration and
               averaged, as TensorRT-LLM's report does; True: on the load
               summed over iterations.
    layer_ids  [L] ids naming the layers of an array `stats` (default
               0..L-1).
    """
    G_arg = None if num_gpus is None else _arrays.integer(
        num_gpus, "num_gpus", _lib.MIN_GPUS, _lib.MAX_GPUS)
    lib = _lib.load()
    err = _lib.ErrorT()
    st = _lib.StatsT()
    series = _lib.SeriesT()
    before, after = _lib.PlacementT(), _lib.PlacementT()
    rep = _lib.ReportT()
    keep = []  # views whose memory the C structures point into
    owned_stats = False
    tmp = None
    try:
        is_path = isinstance(stats, (str, bytes, os.PathLike)) or (
            isinstance(stats, (list, tuple)) and stats and
            all(isinstance(s, (str, bytes, os.PathLike)) for s in stats))
        if is_path and _per_iteration(stats, format, sum_iterations):
            one = stats[0] if isinstance(stats, (list, tuple)) else stats
            stats_format(format)
            ro = read_opts(iter_range)
            rc = lib.eplb_stats_read_trtllm_series(
                byref(series), path_bytes(one, "stats"), byref(ro), byref(err))
            if rc == 0:
                owned_stats = True
                rc = lib.eplb_series_sum(byref(series), 0.0, byref(st), byref(err))
            _lib.raise_for(rc, err)
            memmove(st.layer_ids, series.layer_ids, 4 * st.num_layers)
        elif is_path:
            st = read_stats_c(stats, format, iter_range, True)
            owned_stats = True
        else:
            w = _arrays.loads(stats, "stats")
            ids = (None if layer_ids is None else
                   _arrays.layer_id_array(layer_ids, w.shape[0]))
            v = _views.StatsView(w, ids)
            keep.append(v)
            st = v.c
        L, E = st.num_layers, st.num_experts
        if map is None:
            G, S, aft = G_arg or E, E, None
            if E % G:
                raise ArgError("num_gpus %d does not divide the %d experts; the "
                               "contiguous placement needs experts %% G == 0"
                               % (G, E))
        elif isinstance(map, (str, bytes, os.PathLike)):
            rc = lib.eplb_placement_read_for(byref(after), path_bytes(map, "map"),
                                             byref(st), 0, G_arg or 0, b"map",
                                             byref(err))
            _lib.raise_for(rc, err)
            if after.num_gpus == 1 and G_arg is None and after.num_slots > 1:
                raise ArgError("map %s does not say how many GPUs share its %d "
                               "slots (TensorRT-LLM YAML); pass num_gpus" %
                               (os.fsdecode(map), after.num_slots))
            G, S, aft = after.num_gpus, after.num_slots, byref(after)
        else:
            if G_arg is None:
                raise ArgError("map: an array does not say how many GPUs share "
                               "its slots; pass num_gpus")
            p = _arrays.expert_ids(map, "map", E, ("L", "S"),
                                   [(L, L), (_lib.MIN_SLOTS, _lib.MAX_SLOTS)])
            if p.shape[1] % G_arg:
                raise ArgError("map has %d slots per layer, not a multiple of "
                               "num_gpus %d" % (p.shape[1], G_arg))
            ids = np.ctypeslib.as_array(st.layer_ids, shape=(L,)).copy()
            pv = _views.PlacementView(p, E, G_arg, ids)
            keep.append(pv)
            G, S, aft = G_arg, p.shape[1], pv.ref()
        _contiguous(L, E, S, G, st.layer_ids, before)
        if series.num_steps > 0:
            rc = lib.eplb_report_compute_series(byref(rep), byref(series),
                                                byref(before), aft, byref(err))
        else:
            rc = lib.eplb_report_compute(byref(rep), byref(st), byref(before),
                                         aft, byref(err))
        _lib.raise_for(rc, err)
        tmp = tempfile.mkdtemp(prefix="eplb-report-")
        path = os.path.join(tmp, "report.json")
        rc = lib.eplb_report_write_json(byref(rep), os.fsencode(path), byref(err))
        _lib.raise_for(rc, err)
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    finally:
        lib.eplb_report_cleanup(byref(rep))
        lib.eplb_placement_cleanup(byref(before))
        lib.eplb_placement_cleanup(byref(after))
        lib.eplb_series_cleanup(byref(series))
        if owned_stats:
            lib.eplb_stats_cleanup(byref(st))
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)

"""The files users already have (eplb/formats.h): statistics in, expert
maps in and out.  Formats: docs/formats.md.
"""

from __future__ import annotations

import os
from ctypes import byref, c_char_p
from typing import Any, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from . import _arrays, _lib, _views
from .errors import ArgError

__all__ = ["read_stats", "read_map", "write_map", "ExpertMap",
           "STATS_FORMATS", "MAP_FORMATS"]

STATS_FORMATS = ("auto", "mindspeed", "sglang", "trtllm", "mindie")
MAP_FORMATS = ("auto", "expert-map", "trtllm-yaml", "sglang", "deepseek")

PathLike = Union[str, bytes, "os.PathLike[str]"]


def path_bytes(p: Any, name: str) -> bytes:
    """A path argument as bytes for C (str, bytes or os.PathLike)."""
    if not isinstance(p, (str, bytes, os.PathLike)):
        raise ArgError("%s must be a path (str or os.PathLike), not %s" %
                       (name, type(p).__name__))
    b = os.fsencode(p)
    if not b or b"\0" in b:
        raise ArgError("%s %r is empty or holds a NUL byte" % (name, p))
    return b


def stats_format(format: str) -> int:
    _arrays.choice(format, "format", STATS_FORMATS)
    return _lib.load().eplb_stats_format_from_name(format.encode())


def map_format(format: str) -> int:
    _arrays.choice(format, "format", MAP_FORMATS)
    return _lib.load().eplb_map_format_from_name(format.encode())


def read_opts(iter_range: Optional[Tuple[int, int]]) -> "_lib.StatsReadOptsT":
    """eplb_stats_read_opts_t for an iteration range (None: all)."""
    if iter_range is None:
        return _lib.StatsReadOptsT(-1, -1)
    if not isinstance(iter_range, (tuple, list)) or len(iter_range) != 2:
        raise ArgError("iter_range must be (first, last), not %r" % (iter_range,))
    a = _arrays.integer(iter_range[0], "iter_range[0]", 0, _lib.MAX_ITER)
    b = _arrays.integer(iter_range[1], "iter_range[1]", a, _lib.MAX_ITER,
                        "(first..)")
    return _lib.StatsReadOptsT(a, b)


def path_list(paths: Any) -> list:
    if isinstance(paths, (str, bytes, os.PathLike)):
        paths = [paths]
    if not isinstance(paths, (list, tuple)) or not paths:
        raise ArgError("paths: pass a path or a non-empty list of paths")
    if len(paths) > 1 << 20:
        raise ArgError("paths: %d paths, at most %d" % (len(paths), 1 << 20))
    return [path_bytes(p, "paths[%d]" % i) for i, p in enumerate(paths)]


def read_stats_c(paths: Any, format: str, iter_range: Any,
                 drop_dense_layers: bool) -> "_lib.StatsT":
    """The statistics as libeplb's eplb_stats_t (caller cleans up)."""
    bs = path_list(paths)
    fmt = stats_format(format)
    ro = read_opts(iter_range)
    arr = (c_char_p * len(bs))(*bs)
    out = _lib.StatsT()
    err = _lib.ErrorT()
    lib = _lib.load()
    rc = lib.eplb_stats_read_many(byref(out), arr, len(bs), fmt, byref(ro),
                                  byref(err))
    if rc == 0 and drop_dense_layers and out.dense_rows:
        rc = lib.eplb_stats_drop_zero_layers(byref(out), None, byref(err))
    if rc:
        lib.eplb_stats_cleanup(byref(out))
        _lib.raise_for(rc, err)
    return out


def read_stats(paths: Union[PathLike, Sequence[PathLike]], *,
               format: str = "auto",
               iter_range: Optional[Tuple[int, int]] = None,
               drop_dense_layers: bool = True, layer_ids: bool = False
               ) -> Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]:
    """Reads expert statistics: tokens per layer per expert, [L, E] float64
    (integer counts held exactly), summed over every path given.

    paths       a file, a dump directory or a glob pattern (* ? [), or a
                list of them (per-rank dumps of one model are summed;
                shapes must agree).  Formats, detected from content with
                format="auto": MindSpeed-RL token_collects_all.json, SGLang
                {"logical_count": ...} (a [steps][L][E] recording is
                summed), TensorRT-LLM and MindIE dump directories, HDF5
                [steps][L][E] series (docs/formats.md).
    format      "auto" (default), "mindspeed", "sglang", "trtllm", "mindie".
    iter_range  (first, last): the iterations of a TensorRT-LLM dump to
                read, 0 <= first <= last <= 10^9 (default: all).
    drop_dense_layers  SGLang pads its dumps with all-zero rows for the
                dense layers: drop them (default), as eplb-plan does.
    layer_ids   also return the layer ids [L] (int64) as the source named
                them (SGLang: hidden-layer row; MindSpeed-RL: its key).

    Returns counts, or (counts, layer_ids).  Raises eplb.IoError (a file
    that cannot be read), ParseError (malformed: the message names the file
    and the key or line), CountError, ShapeError (files that disagree).
    """
    out = read_stats_c(paths, format, iter_range, drop_dense_layers)
    load, ids, _ = _views.take_stats(out)
    return (load, ids) if layer_ids else load


class ExpertMap(NamedTuple):
    """An expert map read from a file."""
    phy2log: np.ndarray  # [L, S] int64
    layer_ids: np.ndarray  # [L] int64
    num_gpus: int  # as the file says (1 when it does not: YAML, SGLang, DeepSeek)
    num_experts: int  # largest expert id + 1


def read_map(path: PathLike, *, format: str = "auto") -> ExpertMap:
    """Reads an expert map: MindSpeed-RL / vllm-ascend / MindIE expert-map
    JSON, TensorRT-LLM YAML, SGLang or DeepSeek JSON (format "auto"
    detects it).  Every expert 0..E-1 must have a slot in every layer.
    Files that do not say how many GPUs share the slots give num_gpus 1."""
    b = path_bytes(path, "path")
    fmt = map_format(format)
    out = _lib.PlacementT()
    err = _lib.ErrorT()
    lib = _lib.load()
    rc = lib.eplb_placement_read(byref(out), b, fmt, byref(err))
    if rc:
        lib.eplb_placement_cleanup(byref(out))
        _lib.raise_for(rc, err)
    G, E = out.num_gpus, out.num_experts
    phy, ids = _views.take_placement(out)
    return ExpertMap(phy, ids, G, E)


def write_map(phy2log: Any, path: PathLike, *, num_gpus: int,
              format: str = "auto", num_experts: Optional[int] = None,
              layer_ids: Any = None, allow_duplicates: bool = False) -> None:
    """Writes phy2log [L, S] (DeepSeek's convention: slot s on GPU
    s // (S // num_gpus)) as an expert map, atomically (a temporary file,
    fsync, rename: a reader never sees half a file).

    format       "auto" (TensorRT-LLM YAML for a .yaml/.yml path, else the
                 expert-map JSON of MindSpeed-RL / vllm-ascend / MindIE),
                 "expert-map", "trtllm-yaml", "sglang", "deepseek".
    num_gpus     GPUs, 1..65536, dividing S.
    num_experts  E (default: the largest id + 1); every expert 0..E-1 needs
                 a slot in every layer.
    layer_ids    [L] ids the layers are named by (default 0..L-1): the keys
                 of the YAML, the hidden-layer rows of SGLang's map.
    allow_duplicates  write an expert-map JSON in which a GPU holds an
                 expert twice (policy="deepseek" can plan one; vllm-ascend,
                 MindSpeed-RL and MindIE drop the copy).  Default False:
                 such a map raises MapError naming the layer and GPU.
    """
    E = None if num_experts is None else _arrays.integer(
        num_experts, "num_experts", 1, _lib.MAX_EXPERTS)
    p = _arrays.expert_ids(phy2log, "phy2log", E)
    L, S = p.shape
    if E is None:
        E = int(p.max()) + 1
    G = _arrays.integer(num_gpus, "num_gpus", _lib.MIN_GPUS, _lib.MAX_GPUS)
    if S % G:
        raise ArgError("phy2log has %d slots per layer, not a multiple of "
                       "num_gpus %d" % (S, G))
    ids = None if layer_ids is None else _arrays.layer_id_array(layer_ids, L)
    b = path_bytes(path, "path")
    fmt = map_format(format)
    pl = _views.PlacementView(p, E, G, ids)
    err = _lib.ErrorT()
    opts = _lib.MapWriteOptsT(1 if allow_duplicates else 0)
    rc = _lib.load().eplb_placement_write_opts(pl.ref(), b, fmt, byref(opts),
                                               byref(err))
    _lib.raise_for(rc, err)

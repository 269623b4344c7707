"""eplb: expert-parallel load balancing for Mixture-of-Experts models.

A Python face of libeplb (ctypes, no compiled extension):

  rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus)
      DeepSeek EPLB's function, planned by libeplb (policy="balanced" or
      "deepseek"); torch tensors, numpy arrays or lists in and out.
  read_stats(paths), read_map(path), write_map(phy2log, path, ...)
      the statistics and expert-map files of vLLM, SGLang, TensorRT-LLM,
      MindIE, MindSpeed-RL.
  imbalance(phy2log, weight, num_gpus), balance(...), gpu_loads(...),
  floor(...), cross_node(...), moves(...)
      how unbalanced a placement is.
  report(stats, map=None, num_gpus=None)
      what `eplb-report --json` prints, as a dict.
  Rebalancer(comm, ...)
      the in-process online loop over an mpi4py communicator.

Errors are eplb.Error subclasses carrying libeplb's one-line message and
``.code``.  See docs/python.md.
"""

from ._version import VERSION as __version__
from .errors import (ArgError, ChecksumError, CountError, DivergedError, Error,
                     HDF5Error, InternalError, IoError, LibraryError,
                     MapError, MPIError, NoMemError, ParseError, RemoteError,
                     ShapeError, StateError, UnsupportedError)
from .plan import POLICIES, rebalance_experts
from .metrics import (Balance, balance, cross_node, floor, gpu_loads,
                      imbalance, moves)
from .formats import ExpertMap, read_map, read_stats, write_map
from .report import report
from .rebalance import Rebalancer, Round


def library_path() -> str:
    """Where the libeplb this package uses was loaded from (loads it)."""
    from . import _lib
    return _lib.library_path()


def library_version() -> str:
    """The version of the loaded libeplb (loads it)."""
    from . import _lib
    return _lib.load().eplb_version().decode()


__all__ = [
    "__version__", "rebalance_experts", "POLICIES", "read_stats", "read_map",
    "write_map", "ExpertMap", "imbalance", "balance", "Balance", "gpu_loads", "floor",
    "cross_node", "moves", "report", "Rebalancer", "Round", "library_path",
    "library_version",
    "Error", "ArgError", "NoMemError", "IoError", "ParseError", "CountError",
    "ShapeError", "MapError", "MPIError", "HDF5Error", "DivergedError",
    "RemoteError", "ChecksumError", "StateError", "InternalError",
    "UnsupportedError", "LibraryError",
]

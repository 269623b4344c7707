"""eplb.Rebalancer: online rebalancing inside a training or serving job,
over an mpi4py communicator (eplb/rebalance.h; docs/online.md).

Every rank feeds the token counts of its steps (observe: local, no
communication); every N steps the ranks call step() together: the counts
are summed (one allreduce), smoothed, and rank 0 decides whether a
migration-aware re-plan pays; the decision and the new placement reach
every rank in one verified broadcast.  Around a change the on_pause and
on_resume callbacks run on every rank.  Any failure on any rank - a bad
count, a hook that raised, a plan copy that diverged - ends that step on
every rank with the same exception; no rank is left waiting.
"""

from __future__ import annotations

import ctypes
from ctypes import POINTER, byref, c_int, c_int32, c_void_p, sizeof
from typing import Any, Callable, NamedTuple, Optional, Tuple

import numpy as np

from . import _arrays, _lib, _views
from .errors import (ArgError, Error, LibraryError, MPIError, make_error)
from .formats import map_format, path_bytes
from .plan import plan_opts, check_opts

__all__ = ["Rebalancer", "Round"]

Hook = Callable[[np.ndarray], Any]


class Round(NamedTuple):
    """What one step did (eplb_round_t; the same on every rank)."""
    round: int               # 1, 2, ...
    had_traffic: bool        # False: no new counts since the last step
    rebalanced: bool         # True: the placement changed
    generation: int          # the placement's generation after the step
    imbalance_before: float  # current placement on the smoothed loads
                             # (history > 1: mean over the windows)
    imbalance_after: float   # the placement after the step, same loads
    layers_changed: int
    moves: int               # replicas that arrived on a new GPU
    bytes_moved: int         # expert bytes received over MPI (shards)
    seconds: float


# ---- MPI: the handle libeplb's MPI_Comm is ------------------------------

_comm_type: Any = None


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise LibraryError("eplb.Rebalancer needs mpi4py (Debian: "
                           "python3-mpi4py): %s" % e) from None
    return MPI


def _lib_mpi_version(lib: ctypes.CDLL) -> Optional[str]:
    """MPI_Get_library_version of the MPI libeplb is linked with (found
    through libeplb's own dependencies)."""
    try:
        f = lib.MPI_Get_library_version
    except AttributeError:
        return None
    buf = ctypes.create_string_buffer(8192)
    n = c_int(0)
    f.argtypes = [ctypes.c_char_p, POINTER(c_int)]
    f.restype = c_int
    if f(buf, byref(n)) != 0:
        return None
    return buf.value.decode("utf-8", "replace")


def _comm_handle(comm: Any) -> Any:
    """comm's MPI_Comm as the ctypes value libeplb's prototype takes,
    after checking mpi4py and libeplb use one MPI library."""
    global _comm_type
    MPI = _mpi()
    if not isinstance(comm, MPI.Comm) or comm == MPI.COMM_NULL:
        raise ArgError("comm must be an mpi4py communicator (e.g. "
                       "MPI.COMM_WORLD), not %r" % (comm,))
    if not MPI.Is_initialized() or MPI.Is_finalized():
        raise MPIError("MPI is not initialized (or already finalized): "
                       "import mpi4py.MPI first")
    lib = _lib.load()
    if _comm_type is None:
        mine = " ".join(MPI.Get_library_version().replace("\0", " ").split())
        theirs = _lib_mpi_version(lib)
        if theirs is None or " ".join(theirs.split()) != mine:
            raise LibraryError(
                "mpi4py runs on '%s' but libeplb (%s) is linked with '%s': "
                "both must use the same MPI library" %
                (mine[:80], _lib.library_path(),
                 " ".join((theirs or "no MPI found").split())[:80]))
        size = MPI._sizeof(MPI.Comm)
        if size == sizeof(c_void_p):
            t = c_void_p    # Open MPI: a pointer to the communicator
        elif size == sizeof(c_int):
            t = c_int       # MPICH and derivatives: an int
        else:
            raise LibraryError("MPI_Comm is %d bytes here; eplb knows pointer "
                               "and int handles only" % size)
        lib.eplb_rebalancer_create.argtypes = [
            t, POINTER(_lib.RebalancerOptsT), POINTER(_lib.PlacementT),
            c_int32, c_int32, POINTER(c_void_p), POINTER(_lib.ErrorT)]
        lib.eplb_rebalancer_create.restype = c_int
        _comm_type = t
    return _comm_type(MPI._handleof(comm))


def _agree(comm: Any, local: Optional[Error]) -> None:
    """Every rank learns of a failure on any rank (the rule eplb's own
    collectives follow, src/mpi/agree.h): raises on every rank, with the
    code of the lowest failing rank and every failing rank's message."""
    got = comm.allgather(None if local is None else (local.code, str(local)))
    bad = [(r, g) for r, g in enumerate(got) if g is not None]
    if not bad:
        return
    msg = "; ".join("rank %d: %s" % (r, g[1]) for r, g in bad)
    e = make_error(bad[0][1][0], msg)
    raise e from local


def _hook_code(e: BaseException) -> int:
    if isinstance(e, Error) and e.code < 0:
        return e.code
    if isinstance(e, MemoryError):
        return -2  # EPLB_ENOMEM
    if isinstance(e, OSError):
        return -3  # EPLB_EIO
    return -1      # EPLB_EARG


def _one_line(e: BaseException) -> str:
    s = str(e).strip().splitlines()
    return "%s: %s" % (type(e).__name__, s[0]) if s else type(e).__name__


class Rebalancer:
    """The in-process online loop of eplb/rebalance.h over an mpi4py
    communicator (docs/online.md).  Collective: every rank of `comm`
    creates it with the same options, calls step() the same number of
    times, and close()s it (or uses ``with``).

    comm          an mpi4py communicator (an expert-parallel group); eplb
                  works on a duplicate of it.
    num_layers    L, MoE layers, 1..4096 (None with shards_dir: the shards').
    num_experts   E, logical experts per layer, 1..65536.
    num_slots     S, physical slots per layer, E..1048576, a multiple of
                  num_gpus (None with shards_dir: the shards').
    num_gpus      G, 1..65536 (None with shards_dir: the shards').

    Keywords (None: libeplb's default, docs/online.md):
      current        the phy2log [L, S] the experts are in now (default:
                     the contiguous placement); not with shards_dir.
      layer_ids      [L] ids the layers are named by (default 0..L-1).
      policy, num_nodes, num_groups, threads, max_moves, move_cost,
      keep_threshold   the planner's options, as for rebalance_experts
                     (re-planning is global: num_nodes 1).
      ema_alpha      weight of the newest round in the smoothed loads,
                     0 < a <= 1 (default 0.5).
      threshold      rebalance only above this imbalance of the current
                     placement, 0..100 (default 0.1).
      min_gain       ... and only if a layer's imbalance drops by at least
                     this, 0..100 (default 0.02).
      layers_per_round  layers changed per round at most, 0..4096 (0 = all,
                     the default), the worst first.
      history        1..1024 (default 1: the smoothed loads): the last K
                     steps' windows are the scenarios of the decision (the
                     mean of each window's imbalance) and of the re-plan,
                     which balances each of them (docs/online.md).
      generation     the current placement's generation, 0..2^64-1.
      output, output_format  rank 0 writes the map there after each
                     rebalance, atomically (formats as for write_map).
      shards_dir     migrate the expert weights between the per-rank HDF5
                     shards there (docs/shards.md); max_buffer_mb 0..65536
                     (0: 256) and timeout_s 0..86400 (0: 600) tune it.
      on_pause(next_phy2log), on_resume(now_phy2log)
                     called on every rank around a change (next: the
                     placement about to be applied; now: the one applied).
                     An exception in on_pause cancels the change on every
                     rank; step() then raises on every rank, naming the
                     rank and the exception.
      quiet          rank 0 prints no line per round.
    """

    def __init__(self, comm: Any, num_layers: Optional[int],
                 num_experts: int, num_slots: Optional[int],
                 num_gpus: Optional[int], *, current: Any = None,
                 layer_ids: Any = None, policy: str = "balanced",
                 num_nodes: int = 1, num_groups: int = 1, threads: int = 1,
                 max_moves: Optional[int] = None,
                 move_cost: Optional[float] = None,
                 keep_threshold: Optional[float] = None,
                 ema_alpha: Optional[float] = None,
                 threshold: Optional[float] = None,
                 min_gain: Optional[float] = None,
                 layers_per_round: Optional[int] = None,
                 history: Optional[int] = None,
                 generation: int = 0, output: Any = None,
                 output_format: str = "auto", shards_dir: Any = None,
                 max_buffer_mb: int = 0, timeout_s: int = 0,
                 on_pause: Optional[Hook] = None,
                 on_resume: Optional[Hook] = None, quiet: bool = False
                 ) -> None:
        self._r = c_void_p()
        self._hook_exc: Optional[BaseException] = None
        handle = _comm_handle(comm)
        self._comm = comm
        self._lib = _lib.load()
        local: Optional[Error] = None
        try:
            o = self._options(num_layers, num_experts, num_slots, num_gpus,
                              current, layer_ids, policy, num_nodes,
                              num_groups, threads, max_moves, move_cost,
                              keep_threshold, ema_alpha, threshold, min_gain,
                              layers_per_round, history, generation, output,
                              output_format, shards_dir, max_buffer_mb,
                              timeout_s, on_pause, on_resume, quiet)
        except Error as e:
            local = e
        # Python's checks fail on some ranks only: tell every rank before
        # libeplb's collectives start.
        _agree(comm, local)
        # libeplb keeps a copy of the options, with their pointers (output,
        # shards_dir, the hooks): what they point to lives as long as self.
        self._opts = o
        err = _lib.ErrorT()
        rc = self._lib.eplb_rebalancer_create(
            handle, byref(o), self._current.ref() if self._current else None,
            self._L, self._E, byref(self._r), byref(err))
        _lib.raise_for(rc, err, {"num-slots": "num_slots"})
        cur = self._lib.eplb_rebalancer_current(self._r).contents
        self._L, self._E = cur.num_layers, cur.num_experts
        self._S, self._G = cur.num_slots, cur.num_gpus
        # Counts name their layers as the placement does.
        self._ids = np.ctypeslib.as_array(cur.layer_ids,
                                          shape=(self._L,)).copy()

    def _options(self, L: Any, E: Any, S: Any, G: Any, current: Any,
                 layer_ids: Any, policy: str, num_nodes: Any, num_groups: Any,
                 threads: Any, max_moves: Any, move_cost: Any,
                 keep_threshold: Any, ema_alpha: Any, threshold: Any,
                 min_gain: Any, layers_per_round: Any, history: Any,
                 generation: Any,
                 output: Any, output_format: str, shards_dir: Any,
                 max_buffer_mb: Any, timeout_s: Any, on_pause: Any,
                 on_resume: Any, quiet: Any) -> "_lib.RebalancerOptsT":
        """eplb_rebalancer_opts_t from the arguments, each checked."""
        shards = shards_dir is not None
        self._current: Optional[_views.PlacementView] = None
        self._L = 0 if (shards and L is None) else _arrays.integer(
            L, "num_layers", 1, _lib.MAX_LAYERS)
        self._E = _arrays.integer(E, "num_experts", 1, _lib.MAX_EXPERTS)
        S = 0 if (shards and S is None) else S
        G = 0 if (shards and G is None) else G
        o = _lib.RebalancerOptsT()
        self._lib.eplb_rebalancer_opts_default(byref(o))
        if shards and (S == 0 or G == 0):  # the shards' shape fills them in
            po = plan_opts(max(S or self._E, 1), max(G or 1, 1), num_nodes,
                           num_groups, policy, threads, max_moves, move_cost,
                           keep_threshold, "num_slots")
            po.num_slots, po.num_gpus = S, G
        else:
            po = plan_opts(S, G, num_nodes, num_groups, policy, threads,
                           max_moves, move_cost, keep_threshold, "num_slots")
            check_opts(po, self._E, {"num-slots": "num_slots"})
        if self._lib.eplb_plan_is_hierarchical(byref(po)):
            raise ArgError("num_nodes %d dividing num_groups %d makes plans "
                           "hierarchical, but online re-planning is global "
                           "only: leave num_groups at 1" %
                           (po.num_nodes, po.num_groups))
        o.online.plan = po
        if ema_alpha is not None:
            o.online.ema_alpha = _arrays.real(ema_alpha, "ema_alpha", 0, 1,
                                              lo_open=True)
        if threshold is not None:
            o.online.threshold = _arrays.real(threshold, "threshold", 0, 100)
        if min_gain is not None:
            o.online.min_gain = _arrays.real(min_gain, "min_gain", 0, 100)
        if layers_per_round is not None:
            o.online.layers_per_round = _arrays.integer(
                layers_per_round, "layers_per_round", 0, _lib.MAX_LAYERS,
                "(0: all)")
        if history is not None:
            o.online.history = _arrays.integer(history, "history", 1,
                                               _lib.MAX_SCENARIOS)
        o.generation = _arrays.integer(generation, "generation", 0, 2**64 - 1)
        if output is not None:
            o.output = path_bytes(output, "output")
        o.output_format = map_format(output_format)
        if shards:
            o.shards_dir = path_bytes(shards_dir, "shards_dir")
        o.max_buffer_mb = _arrays.integer(max_buffer_mb, "max_buffer_mb", 0,
                                          65536, "(0: 256)")
        o.timeout_s = _arrays.integer(timeout_s, "timeout_s", 0, 86400,
                                      "(0: 600)")
        o.quiet = 1 if quiet else 0
        if current is not None:
            if shards:
                raise ArgError("current: pass no current placement with "
                               "shards_dir: the shards' map is it")
            p = _arrays.expert_ids(current, "current", self._E, ("L", "S"),
                                   [(self._L, self._L), (S, S)])
            self._current = _views.PlacementView(p, self._E, G)
        if layer_ids is not None:
            if self._L == 0:
                raise ArgError("layer_ids needs num_layers")
            self._layer_ids = _arrays.layer_id_array(layer_ids, self._L)
            o.layer_ids = self._layer_ids.ctypes.data_as(POINTER(c_int32))
        for name, fn in (("on_pause", on_pause), ("on_resume", on_resume)):
            if fn is not None and not callable(fn):
                raise ArgError("%s must be callable, not %r" % (name, fn))
        # The callbacks must outlive every step: kept on self.
        self._pause = _lib.HOOK(self._hook(on_pause)) if on_pause else None
        self._resume = _lib.HOOK(self._hook(on_resume)) if on_resume else None
        if self._pause:
            o.pause = self._pause
        if self._resume:
            o.resume = self._resume
        return o

    def _hook(self, fn: Hook) -> Callable[..., int]:
        """A C hook around fn: an exception becomes an EPLB_E* code and a
        one-line message (never crosses into C), kept to chain later."""
        def cb(ctx: Any, placement: Any, err: Any) -> int:
            try:
                fn(_views.copy_placement(placement.contents))
                return 0
            except BaseException as e:  # noqa: B902 - must not reach C
                if self._hook_exc is None:
                    self._hook_exc = e
                code = _hook_code(e)
                msg = _one_line(e).encode("utf-8", "replace")
                err.contents.code = code
                err.contents.msg = msg[:_lib.ERROR_MSG_MAX - 1]
                return code
        return cb

    # ---- the loop ------------------------------------------------------

    def _live(self) -> None:
        if not self._r:
            raise ArgError("this Rebalancer is closed")

    def observe(self, counts: Any, cumulative: bool = False) -> None:
        """Adds this rank's counts [L, E] (tokens routed per layer per
        expert since the last call; any kind of array).  Local, no
        communication.  cumulative=True: counts are counters since the
        start (as MindSpeed-RL and MindIE write them): what is new since
        the previous call is added, and a counter that went down means the
        counters restarted.

        A bad argument (shape, type, a negative or non-finite count) raises
        here, on this rank, and is also kept: the next step() raises it on
        every rank, so every rank must still reach step()."""
        self._live()
        try:
            a = _arrays.loads(counts, "counts", ("L", "E"),
                              [(self._L, self._L), (self._E, self._E)])
        except Error as e:
            fail = _lib.ErrorT(e.code, str(e).encode("utf-8", "replace")
                               [:_lib.ERROR_MSG_MAX - 1])
            self._lib.eplb_rebalancer_observe_failed(self._r, byref(fail))
            raise
        v = _views.StatsView(a, self._ids)
        err = _lib.ErrorT()
        rc = self._lib.eplb_rebalancer_observe(self._r, v.ref(),
                                               1 if cumulative else 0,
                                               byref(err))
        _lib.raise_for(rc, err)

    def step(self) -> Round:
        """Collective: sums what every rank observed since the last step,
        decides, and applies a rebalance (on_pause, migration, on_resume,
        output).  Returns the Round (the same on every rank).  On failure
        every rank raises the same eplb.Error and the placement is
        unchanged."""
        self._live()
        self._hook_exc = None
        x = _lib.RoundT()
        err = _lib.ErrorT()
        rc = self._lib.eplb_rebalancer_step(self._r, byref(x), byref(err))
        exc, self._hook_exc = self._hook_exc, None
        if rc:
            if exc is not None and not isinstance(exc, Exception):
                raise exc  # KeyboardInterrupt, SystemExit: the caller's own
            try:
                _lib.raise_for(rc, err)
            except Error as e:
                raise e from exc
        if exc is not None and not isinstance(exc, Exception):
            raise exc
        return Round(int(x.round), bool(x.had_traffic), bool(x.rebalanced),
                     int(x.generation), float(x.imbalance_before),
                     float(x.imbalance_after), int(x.layers_changed),
                     int(x.moves), int(x.bytes_moved), float(x.seconds))

    @property
    def current(self) -> np.ndarray:
        """The placement in force: phy2log [L, S] int64 (a copy; the same
        on every rank)."""
        self._live()
        return _views.copy_placement(
            self._lib.eplb_rebalancer_current(self._r).contents)

    def placement(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The placement in force as rebalance_experts returns one:
        (phy2log, log2phy, logcnt), numpy int64."""
        p = self.current
        return (p,) + _views.log2phy_logcnt(p, self._E)

    @property
    def generation(self) -> int:
        """The generation of the placement in force."""
        self._live()
        return int(self._lib.eplb_rebalancer_generation(self._r))

    @property
    def layer_ids(self) -> np.ndarray:
        return self._ids.astype(np.int64)

    @property
    def shape(self) -> Tuple[int, int, int, int]:
        """(num_layers, num_experts, num_slots, num_gpus)."""
        return (self._L, self._E, self._S, self._G)

    def close(self) -> None:
        """Frees the rebalancer (collective over its communicator; every
        rank closes it).  Idempotent."""
        r, self._r = getattr(self, "_r", None), c_void_p()
        if not r:
            return
        try:
            MPI = _mpi()
            if MPI.Is_finalized():
                return  # the process is ending: nothing left to free
        except Error:
            return
        self._lib.eplb_rebalancer_destroy(r)

    def __enter__(self) -> "Rebalancer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

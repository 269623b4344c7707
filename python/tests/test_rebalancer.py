"""eplb.Rebalancer in one process (MPI.COMM_WORLD of one rank, or
COMM_SELF): rounds, hooks, failures that end a step, options checked.
The multi-rank behaviour is test_example_mpi.py's."""

from __future__ import annotations

import numpy as np
import pytest

import eplb
from conftest import need

L, E, S, G = 3, 16, 24, 4


def skewed(hot=0, weight=300.0, scale=1.0):
    c = np.full((L, E), 10.0) + np.arange(E) % 3
    for l in range(L):
        c[l, (hot + l) % E] = weight
    return c * scale


@pytest.fixture
def MPI():
    return need("mpi4py.MPI")


class Hooks:
    def __init__(self, fail=None):
        self.seen = []
        self.fail = fail

    def pause(self, nxt):
        self.seen.append(("pause", nxt.copy()))
        if self.fail is not None:
            raise self.fail

    def resume(self, now):
        self.seen.append(("resume", now.copy()))


def make(MPI, hooks=None, **kw):
    kw.setdefault("threshold", 0.05)
    kw.setdefault("ema_alpha", 1.0)
    kw.setdefault("quiet", True)
    if hooks:
        kw.update(on_pause=hooks.pause, on_resume=hooks.resume)
    return eplb.Rebalancer(MPI.COMM_WORLD, L, E, S, G, **kw)


def test_a_round_rebalances_and_hooks_run_in_pairs(MPI):
    h = Hooks()
    with make(MPI, h) as rb:
        start = rb.current
        assert start.shape == (L, S) and rb.generation == 0
        assert np.array_equal(start[0], np.arange(S) % E)  # contiguous
        rb.observe(skewed())
        r = rb.step()
        assert r.round == 1 and r.had_traffic and r.rebalanced
        assert r.generation == 1 == rb.generation
        assert r.imbalance_after < r.imbalance_before and r.moves > 0
        assert [k for k, _ in h.seen] == ["pause", "resume"]
        assert np.array_equal(h.seen[0][1], rb.current)
        assert np.array_equal(h.seen[1][1], rb.current)
        phy, log2phy, cnt = rb.placement()
        assert np.array_equal(phy, rb.current) and cnt.sum(axis=1).tolist() == [S] * L
        assert eplb.imbalance(rb.current, skewed(), G) < eplb.imbalance(start, skewed(), G)
        # nothing new: nothing changes
        r = rb.step()
        assert not r.had_traffic and not r.rebalanced and len(h.seen) == 2


def test_cumulative_counters(MPI):
    with make(MPI) as rb:
        c = skewed(0)
        rb.observe(c, cumulative=True)
        assert rb.step().rebalanced
        rb.observe(c, cumulative=True)  # the same counters: nothing new
        assert not rb.step().had_traffic
        rb.observe(skewed(7, scale=0.5), cumulative=True)  # counters restarted
        r = rb.step()
        assert r.had_traffic and r.rebalanced and rb.generation == 2


def test_refused_counts_fail_the_next_step(MPI):
    with make(MPI) as rb:
        before = rb.current
        with pytest.raises(eplb.ShapeError, match="counts"):
            rb.observe(np.ones((L, E + 1)))
        with pytest.raises(eplb.ShapeError, match=r"rank 0: counts: shape \[3, 17\]"):
            rb.step()
        rb.observe(skewed())
        assert rb.step().rebalanced  # the step after is clean
        bad = skewed()
        bad[2, 5] = -4
        with pytest.raises(eplb.CountError, match=r"counts\[2, 5\] = -4"):
            rb.observe(bad)
        rb.observe(skewed(3))  # good counts after the bad ones do not hide them
        with pytest.raises(eplb.CountError, match="rank 0"):
            rb.step()
        for junk in ("counts", None, np.ones(E), np.ones((L, E), dtype=complex)):
            with pytest.raises(eplb.Error):
                rb.observe(junk)
            with pytest.raises(eplb.Error):
                rb.step()
        assert rb.generation == 1 and not np.array_equal(rb.current, before)


def test_a_pause_hook_that_raises_cancels_the_change(MPI):
    h = Hooks(fail=ValueError("the worker could not stop"))
    with make(MPI, h) as rb:
        before = rb.current
        rb.observe(skewed())
        with pytest.raises(eplb.ArgError) as ei:
            rb.step()
        assert "pause hook: ValueError: the worker could not stop" in str(ei.value)
        assert isinstance(ei.value.__cause__, ValueError)
        assert np.array_equal(rb.current, before) and rb.generation == 0
        h.fail = eplb.IoError("disk full")
        rb.observe(skewed())
        with pytest.raises(eplb.IoError, match="disk full"):
            rb.step()
        h.fail = None
        rb.observe(skewed())
        assert rb.step().rebalanced


def test_keyboard_interrupt_in_a_hook_reaches_the_caller(MPI):
    h = Hooks(fail=KeyboardInterrupt())
    with make(MPI, h) as rb:
        rb.observe(skewed())
        with pytest.raises(KeyboardInterrupt):
            rb.step()
        assert rb.generation == 0
        h.fail = None
        rb.observe(skewed())
        assert rb.step().rebalanced


def test_current_layer_ids_output_and_torch(MPI, tmp_path):
    start = np.tile(np.arange(S) % E, (L, 1))[:, ::-1].copy()
    out = tmp_path / "map.json"
    with make(MPI, current=start, layer_ids=[4, 6, 8], output=out) as rb:
        assert np.array_equal(rb.current, start)
        assert rb.layer_ids.tolist() == [4, 6, 8]
        torch = need("torch")
        rb.observe(torch.tensor(skewed(), dtype=torch.float32))
        assert rb.step().rebalanced
        m = eplb.read_map(out)
        assert np.array_equal(m.phy2log, rb.current) and m.num_gpus == G


def test_comm_self_and_a_split_communicator(MPI):
    for comm in (MPI.COMM_SELF, MPI.COMM_WORLD.Split(0, 0)):
        rb = eplb.Rebalancer(comm, L, E, S, G, quiet=True, threshold=0.05)
        rb.observe(skewed())
        assert rb.step().rebalanced
        rb.close()
        rb.close()  # idempotent
        with pytest.raises(eplb.ArgError, match="closed"):
            rb.step()


@pytest.mark.parametrize("kw,words", [
    (dict(num_slots=23), "rank 0: num_slots 23 is not a multiple of num_gpus 4"),
    (dict(num_slots=8), "less than the 16 experts"),
    (dict(num_slots=0), "num_slots = 0 is outside"),
    (dict(num_gpus=None), "num_gpus must be an integer"),
    (dict(num_layers=0), "num_layers = 0"),
    (dict(num_experts=70000), "num_experts = 70000"),
    (dict(ema_alpha=0), "ema_alpha"),
    (dict(ema_alpha=1.5), "ema_alpha"),
    (dict(threshold=-1), "threshold"),
    (dict(min_gain=101), "min_gain"),
    (dict(layers_per_round=5000), "layers_per_round"),
    (dict(history=0), "history = 0 is outside 1..1024"),
    (dict(history=1025), "history"),
    (dict(history=2.0), "history must be an integer"),
    (dict(generation=-1), "generation"),
    (dict(max_buffer_mb=70000), "max_buffer_mb"),
    (dict(timeout_s=-5), "timeout_s"),
    (dict(output_format="pdf"), "output_format|format"),
    (dict(current=np.zeros((L, S + 1))), "current"),
    (dict(current=np.full((L, S), E)), "current"),
    (dict(layer_ids=[1, 2]), "layer_ids"),
    (dict(on_pause=3), "on_pause"),
    (dict(num_nodes=2, num_groups=4), "[Gg]lobal|hierarch|nodes"),
])
def test_bad_options(MPI, kw, words):
    args = dict(num_layers=L, num_experts=E, num_slots=S, num_gpus=G)
    args.update({k: kw.pop(k) for k in list(kw) if k in args})
    with pytest.raises(eplb.Error, match=words):
        eplb.Rebalancer(MPI.COMM_WORLD, args["num_layers"], args["num_experts"],
                        args["num_slots"], args["num_gpus"], quiet=True, **kw)


def test_history_weighs_each_window(MPI):
    # Two GPUs, four experts on the contiguous placement (0, 1 on GPU 0;
    # 2, 3 on GPU 1).  Step 1's traffic is even; step 2's is all on experts
    # 0 and 1, so all on GPU 0.  Smoothed slowly (ema_alpha 0.05) the load
    # barely moves: history 1 keeps the placement.  With history 2 step 2
    # weighs both windows (imbalance 0 and 1: mean 0.5) and pairs the
    # experts across the GPUs, balancing both.
    even = np.array([[5.0, 5, 5, 5]])
    hot = np.array([[10.0, 10, 0, 0]])
    for history in (1, 2):
        with eplb.Rebalancer(MPI.COMM_WORLD, 1, 4, 4, 2, ema_alpha=0.05,
                             threshold=0.1, history=history,
                             quiet=True) as rb:
            rb.observe(even)
            r1 = rb.step()
            assert r1.had_traffic and not r1.rebalanced
            rb.observe(hot)
            r2 = rb.step()
            if history == 1:
                assert not r2.rebalanced and r2.imbalance_before < 0.1, r2
                assert np.array_equal(rb.current[0], [0, 1, 2, 3])
            else:
                assert r2.rebalanced, r2
                assert abs(r2.imbalance_before - 0.5) < 1e-12, r2
                assert abs(r2.imbalance_after) < 1e-12, r2
                gpu0 = set(rb.current[0, :2].tolist())
                assert len(gpu0 & {0, 1}) == 1, rb.current


def test_not_a_communicator(MPI):
    with pytest.raises(eplb.ArgError, match="mpi4py communicator"):
        eplb.Rebalancer(None, L, E, S, G)
    with pytest.raises(eplb.ArgError, match="mpi4py communicator"):
        eplb.Rebalancer(MPI.COMM_NULL, L, E, S, G)

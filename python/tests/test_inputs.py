"""Odd inputs from Python never crash: each is an eplb.Error subclass with
a one-line message naming the argument, raised before libeplb sees the
data; and every kind of array comes back as the kind it came in."""

from __future__ import annotations

import math

import numpy as np
import pytest

import eplb
from conftest import need

W = np.arange(1, 33, dtype=np.float64).reshape(2, 16)


def plan(w=W, S=24, K=4, N=1, G=8, **kw):
    return eplb.rebalance_experts(w, S, K, N, G, **kw)


@pytest.mark.parametrize("weight,cls,words", [
    (np.array([[1.0, -1.0, 2.0]]), eplb.CountError, r"weight\[0, 1\] = -1"),
    (np.array([[1.0, math.nan]]), eplb.CountError, r"weight\[0, 1\] = nan"),
    (np.array([[math.inf, 1.0]]), eplb.CountError, r"weight\[0, 0\] = inf"),
    (np.array([[1e300, 1.0]]), eplb.CountError, "2\\^53"),
    ([[2**70, 1]], eplb.CountError, "2\\^53"),
    (np.zeros((0, 16)), eplb.ShapeError, "L = 0"),
    (np.zeros((2, 0)), eplb.ShapeError, "E = 0"),
    (np.zeros(16), eplb.ShapeError, "1 dimension, expected 2"),
    (np.zeros((2, 2, 16)), eplb.ShapeError, "3 dimensions"),
    (np.float64(3.0), eplb.ShapeError, "0 dimensions"),
    (np.zeros((4097, 16)), eplb.ShapeError, "L = 4097 is outside 1..4096"),
    (np.zeros((1, 65537)), eplb.ShapeError, "E = 65537"),
    ([[1, 2], [3]], eplb.ShapeError, "rectangular"),
    ([["a", "b"]], eplb.ArgError, "not a number type"),
    (np.ones((2, 16), dtype=bool), eplb.ArgError, "bool"),
    (np.ones((2, 16), dtype=complex), eplb.ArgError, "complex"),
    ("weights.json", eplb.ArgError, "not an array"),
    (None, eplb.ArgError, "not an array"),
    ({"a": 1}, eplb.ArgError, "not an array"),
    ([[1, None]], eplb.ArgError, "not a number"),
])
def test_bad_weight(weight, cls, words):
    with pytest.raises(cls, match=words) as ei:
        plan(weight)
    assert ei.value.code == cls.code < 0
    assert "\n" not in str(ei.value)


@pytest.mark.parametrize("args,cls,words", [
    (dict(S=23), eplb.ArgError, "num_replicas 23 is not a multiple of num_gpus 8"),
    (dict(S=8), eplb.ArgError, "num_replicas 8 is less than the 16 experts"),
    (dict(S=0), eplb.ArgError, "num_replicas = 0 is outside 1..1048576"),
    (dict(S=-24), eplb.ArgError, "outside"),
    (dict(S=2**40), eplb.ArgError, "outside"),
    (dict(S=10**30), eplb.ArgError, "outside"),
    (dict(S=24.0), eplb.ArgError, "num_replicas must be an integer"),
    (dict(S="24"), eplb.ArgError, "num_replicas must be an integer"),
    (dict(S=True), eplb.ArgError, "num_replicas must be an integer"),
    (dict(S=None), eplb.ArgError, "num_replicas must be an integer"),
    (dict(G=0), eplb.ArgError, "num_gpus = 0"),
    (dict(G=65537), eplb.ArgError, "num_gpus = 65537"),
    (dict(N=3), eplb.ArgError, "num_gpus 8 is not a multiple of num_nodes 3"),
    (dict(N=16), eplb.ArgError, "num_nodes 16 is outside 1..8"),
    (dict(K=0), eplb.ArgError, "num_groups = 0"),
    (dict(K=17), eplb.ArgError, "num_groups 17 is outside 1..16"),
    (dict(K=6, N=2), eplb.ArgError, "16 experts are not a multiple of num_groups 6"),
    (dict(S=160, G=8), eplb.ArgError, "20 slots per GPU exceed the 16 experts"),
    (dict(policy="greedy"), eplb.ArgError, "policy = 'greedy' is not one of"),
    (dict(policy=None), eplb.ArgError, "policy"),
    (dict(threads=-1), eplb.ArgError, "threads = -1"),
    (dict(threads=65), eplb.ArgError, "threads = 65"),
    (dict(max_moves=-2), eplb.ArgError, "max_moves"),
    (dict(move_cost=math.nan), eplb.ArgError, "move_cost"),
    (dict(move_cost=2), eplb.ArgError, "move_cost"),
    (dict(keep_threshold=-1), eplb.ArgError, "keep_threshold"),
])
def test_bad_arguments(args, cls, words):
    with pytest.raises(cls, match=words):
        plan(**args)


def test_integer_likes_are_integers():
    a = plan(S=np.int64(24), G=np.int32(8))[0]
    assert np.array_equal(a, plan()[0])


def test_huge_but_valid_layers_and_experts():
    # 4096 layers of 4 experts, and one layer of 65536 experts.
    rng = np.random.default_rng(0)
    w = rng.integers(0, 50, size=(4096, 4))
    phy, log2phy, cnt = eplb.rebalance_experts(w, 8, 1, 1, 2)
    assert phy.shape == (4096, 8) and log2phy.shape == (4096, 4, 5)
    w = rng.integers(0, 50, size=(1, 65536))
    phy = eplb.rebalance_experts(w, 65536 + 64, 1, 1, 64)[0]
    assert np.array_equal(np.unique(phy), np.arange(65536))


def test_results_larger_than_memory():
    # log2phy would be [4096, 16, 1048561]: refused before anything is
    # allocated (Linux overcommits: an allocation this large would not
    # fail, the process would be killed).
    with pytest.raises(eplb.NoMemError, match="log2phy"):
        eplb.rebalance_experts(np.ones((4096, 16)), 1048576, 1, 1, 8,
                               policy="deepseek")


def test_counts_at_the_limit():
    w = np.full((1, 4), 2.0**53)
    phy = plan(w, S=8, K=1, G=2)[0]
    assert phy.shape == (1, 8)


def test_all_zero_is_spread_evenly():
    phy, _, cnt = plan(np.zeros((2, 16)), S=32, G=8)
    assert np.all(cnt == 2)


@pytest.mark.parametrize("dtype", [np.int8, np.uint16, np.int32, np.int64,
                                   np.float16, np.float32, np.float64])
def test_numeric_dtypes_and_layouts(dtype):
    w = (W % 100).astype(dtype)
    want = plan(W % 100)[0]
    assert np.array_equal(plan(w)[0], want)
    assert np.array_equal(plan(np.asfortranarray(w))[0], want)
    wide = np.zeros((2, 32), dtype=dtype)
    wide[:, ::2] = w
    assert np.array_equal(plan(wide[:, ::2])[0], want)  # strided view


def test_lists_in_lists_out():
    phy, log2phy, cnt = plan(W.astype(int).tolist())
    assert isinstance(phy, list) and isinstance(phy[0][0], int)
    assert np.array_equal(np.array(phy), plan()[0])
    assert len(log2phy[0][0]) == 24 - 16 + 1


def test_the_input_is_not_modified():
    w = W.copy()
    plan(w)
    assert np.array_equal(w, W)


def test_torch_tensors_in_and_out():
    torch = need("torch")
    want = plan()
    for dtype in (torch.float32, torch.float64, torch.int64, torch.bfloat16,
                  torch.float16, torch.int32):
        t = torch.tensor(W % 64).to(dtype)
        got = eplb.rebalance_experts(t, 24, 4, 1, 8)
        for g, w in zip(got, plan(W % 64)):
            assert isinstance(g, torch.Tensor)
            assert g.dtype == torch.int64 and g.device == t.device
            assert np.array_equal(g.numpy(), w)
    t = torch.tensor(W, requires_grad=True)
    assert np.array_equal(eplb.rebalance_experts(t, 24, 4, 1, 8)[0].numpy(), want[0])
    t = torch.tensor(W).t().contiguous().t()  # non-contiguous
    assert np.array_equal(eplb.rebalance_experts(t, 24, 4, 1, 8)[0].numpy(), want[0])
    for bad, words in [(torch.ones(2, 16, dtype=torch.bool), "bool"),
                       (torch.ones(2, 16, dtype=torch.complex64), "complex"),
                       (torch.ones(2, 16).to_sparse(), "sparse"),
                       (torch.ones(16), "1 dimension"),
                       (torch.tensor([[1.0, float("nan")]]), "nan")]:
        with pytest.raises(eplb.Error, match=words):
            eplb.rebalance_experts(bad, 24, 4, 1, 8)
    meta = torch.empty(2, 16, device="meta")
    with pytest.raises(eplb.ArgError, match="host memory"):
        eplb.rebalance_experts(meta, 24, 4, 1, 8)


def test_errors_are_python_exceptions_too():
    with pytest.raises(ValueError):
        plan(S=23)
    with pytest.raises(eplb.Error) as ei:
        plan(np.array([[-1.0]]))
    assert ei.value.name == "EPLB_ECOUNT" and ei.value.code == -5

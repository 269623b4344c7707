"""eplb.rebalance_experts against an independent re-statement of DeepSeek's
algorithm (deepseek_ref.py, from docs/planner.md) on generated loads:
policy="deepseek" gives the identical map, policy="balanced" is never less
balanced; the three results follow DeepSeek's conventions."""

from __future__ import annotations

import numpy as np
import pytest

import eplb
import deepseek_ref as ref

# (L, E, S, K groups, N nodes, G GPUs)
SHAPES = [
    (6, 16, 24, 4, 1, 8),     # global, redundancy
    (6, 16, 16, 4, 1, 4),     # no redundant slot
    (4, 32, 48, 8, 4, 8),     # hierarchical: 8 groups on 4 nodes
    (4, 32, 40, 8, 2, 4),     # hierarchical, 10 slots per GPU
    (4, 24, 36, 3, 2, 6),     # groups % nodes != 0: global
    (3, 8, 40, 2, 1, 2),      # 20 slots per GPU > 8 experts (deepseek only)
    (5, 64, 72, 8, 1, 9),     # 8 slots per GPU
]


def loads(kind: str, L: int, E: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "uniform":
        return rng.integers(0, 10000, size=(L, E)).astype(np.float64)
    if kind == "skewed":  # a few hot experts, as MoE routing has
        w = rng.zipf(1.6, size=(L, E)).astype(np.float64)
        return np.minimum(w, 1e6) * 37
    if kind == "real":
        return rng.random((L, E)) * 1000.0
    if kind == "ties":  # many equal loads and equal loads per replica
        return rng.integers(0, 4, size=(L, E)).astype(np.float64) * 6
    if kind == "zero_layer":
        w = rng.integers(1, 100, size=(L, E)).astype(np.float64)
        w[L // 2] = 0
        return w
    raise ValueError(kind)


KINDS = ["uniform", "skewed", "real", "ties", "zero_layer"]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("kind", KINDS)
def test_deepseek_policy_is_deepseek(shape, kind):
    L, E, S, K, N, G = shape
    for seed in range(2):
        w = loads(kind, L, E, seed)
        phy, _, _ = eplb.rebalance_experts(w, S, K, N, G, policy="deepseek")
        want = ref.plan(w, S, K, N, G)
        diff = np.argwhere(phy != want)
        assert diff.size == 0, "layer %d slot %d: eplb %d, re-statement %d" % (
            diff[0][0], diff[0][1], phy[tuple(diff[0])], want[tuple(diff[0])])


def has_duplicate(row: np.ndarray, G: int) -> bool:
    per = len(row) // G
    return any(len(set(row[g * per:(g + 1) * per])) < per for g in range(G))


# Shapes where a GPU has no more slots than a node has experts (balanced
# needs it) and DeepSeek's plans often have no duplicate to compare against.
BALANCED_SHAPES = [
    (6, 16, 24, 4, 1, 8), (6, 16, 16, 4, 1, 4), (4, 48, 60, 6, 4, 12),
    (4, 24, 36, 3, 2, 6), (5, 64, 72, 8, 1, 9), (4, 64, 80, 8, 4, 16),
]


@pytest.mark.parametrize("shape", BALANCED_SHAPES,
                         ids=lambda s: "x".join(map(str, s)))
def test_balanced_never_less_balanced(shape):
    L, E, S, K, N, G = shape
    compared = total = 0
    for kind in KINDS:
        for seed in range(4):
            w = loads(kind, L, E, 100 + seed)
            bal, _, _ = eplb.rebalance_experts(w, S, K, N, G)
            ds = ref.plan(w, S, K, N, G)
            mb = ref.gpu_loads(bal, w, G).max(axis=1)
            md = ref.gpu_loads(ds, w, G).max(axis=1)
            for l in range(L):
                total += 1
                assert not has_duplicate(bal[l], G), "an expert twice on a GPU"
                # docs/planner.md: a DeepSeek plan with two copies of an
                # expert on one GPU has in effect an empty slot, which no
                # duplicate-free map can copy: not comparable.
                if has_duplicate(ds[l], G):
                    continue
                compared += 1
                assert mb[l] <= md[l] * (1 + 1e-12), (
                    "%s seed %d layer %d: balanced max GPU load %r > deepseek "
                    "%r" % (kind, seed, l, mb[l], md[l]))
    assert compared >= total // 8, "%d of %d layers comparable" % (compared, total)


def test_balanced_better_on_average():
    w = loads("skewed", 16, 64, 7)
    bal, _, _ = eplb.rebalance_experts(w, 72, 8, 1, 9)
    ds, _, _ = eplb.rebalance_experts(w, 72, 8, 1, 9, policy="deepseek")
    ib, id_ = ref.imbalance(bal, w, 9).mean(), ref.imbalance(ds, w, 9).mean()
    assert ib < id_
    assert eplb.imbalance(bal, w, 9) == pytest.approx(ib, rel=1e-12, abs=1e-15)
    assert eplb.imbalance(ds, w, 9) == pytest.approx(id_, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("policy", eplb.POLICIES)
def test_results_follow_deepseek_conventions(policy):
    L, E, S, K, N, G = 5, 16, 28, 4, 2, 4
    w = loads("skewed", L, E, 3)
    phy, log2phy, logcnt = eplb.rebalance_experts(w, S, K, N, G, policy=policy)
    X = S - E + 1
    assert phy.shape == (L, S) and phy.dtype == np.int64
    assert log2phy.shape == (L, E, X) and log2phy.dtype == np.int64
    assert logcnt.shape == (L, E) and logcnt.dtype == np.int64
    for l in range(L):
        assert np.array_equal(logcnt[l], np.bincount(phy[l], minlength=E))
        assert logcnt[l].sum() == S and logcnt[l].min() >= 1
        for e in range(E):
            c = logcnt[l, e]
            slots = log2phy[l, e, :c]
            assert np.all(phy[l, slots] == e)
            assert np.all(np.diff(slots) > 0)  # ascending
            assert np.all(log2phy[l, e, c:] == -1)


def test_deterministic_and_threads_do_not_change_the_map():
    w = loads("real", 12, 32, 5)
    a = eplb.rebalance_experts(w, 48, 4, 1, 8)[0]
    b = eplb.rebalance_experts(w, 48, 4, 1, 8, threads=2)[0]
    c = eplb.rebalance_experts(w, 48, 4, 1, 8, threads=0)[0]
    assert np.array_equal(a, b) and np.array_equal(a, c)


def test_hierarchical_keeps_groups_on_nodes():
    L, E, S, K, N, G = 4, 32, 48, 8, 4, 8
    w = loads("skewed", L, E, 11)
    for policy in eplb.POLICIES:
        phy = eplb.rebalance_experts(w, S, K, N, G, policy=policy)[0]
        node_of_slot = np.arange(S) // (S // N)
        for l in range(L):
            groups_on = [set(phy[l][node_of_slot == n] // (E // K)) for n in range(N)]
            assert sum(len(g) for g in groups_on) == K  # each group on one node


def test_current_replans_from_where_experts_are():
    L, E, S, G = 6, 32, 40, 8
    w0 = loads("skewed", L, E, 1)
    w1 = w0 * (1 + 0.05 * np.random.default_rng(2).random((L, E)))
    cur = eplb.rebalance_experts(w0, S, 1, 1, G)[0]
    fresh = eplb.rebalance_experts(w1, S, 1, 1, G)[0]
    again = eplb.rebalance_experts(w1, S, 1, 1, G, current=cur)[0]
    assert eplb.moves(cur, again, G) < eplb.moves(cur, fresh, G)
    kept = eplb.rebalance_experts(w1, S, 1, 1, G, current=cur, max_moves=0)[0]
    assert eplb.moves(cur, kept, G) == 0
    # a current map of another shape is caught before libeplb
    with pytest.raises(eplb.ShapeError, match="current"):
        eplb.rebalance_experts(w1, S, 1, 1, G, current=cur[:, :-1])
    bad = cur.copy()
    bad[0, 0] = E
    with pytest.raises(eplb.MapError, match=r"current\[0, 0\]"):
        eplb.rebalance_experts(w1, S, 1, 1, G, current=bad)
    missing = cur.copy()
    missing[0, :] = 0  # expert 1.. have no slot
    with pytest.raises(eplb.MapError):
        eplb.rebalance_experts(w1, S, 1, 1, G, current=missing)
    with pytest.raises(eplb.ArgError, match="[Gg]lobal|hierarch"):
        eplb.rebalance_experts(w1, S, 4, 2, G, current=cur)


# ---- scenarios= and weights= ---------------------------------------------

def gpu_imbalance(w: np.ndarray, phy: np.ndarray, G: int) -> np.ndarray:
    """Per layer, max/mean - 1 of the GPU loads of w under phy2log (an
    expert's load split evenly over its replicas); 0 for an idle layer."""
    L, S = phy.shape
    out = np.zeros(L)
    for l in range(L):
        cnt = np.bincount(phy[l], minlength=w.shape[1])
        per_slot = w[l][phy[l]] / cnt[phy[l]]
        gpu = per_slot.reshape(G, S // G).sum(axis=1)
        out[l] = gpu.max() / gpu.mean() - 1 if gpu.sum() > 0 else 0
    return out


def objective(sc, phy, G, weights=None):
    """The scenario objective: per layer, the weighted mean over the
    scenarios of each one's imbalance, averaged over layers."""
    w = np.ones(len(sc)) if weights is None else np.asarray(weights, float)
    per = np.array([gpu_imbalance(x, phy, G) for x in sc])  # [K, L]
    return float((w[:, None] * per).sum(axis=0).mean() / w.sum())


def valid(phy: np.ndarray, E: int, G: int) -> bool:
    return all(sorted(set(row)) == list(range(E)) and
               not has_duplicate(row, G) for row in phy)


def workloads(L, E, K, seed):
    """K workloads of one shape, each with its own hot experts."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(K):
        w = rng.integers(50, 150, size=(L, E)).astype(np.float64)
        for l in range(L):
            w[l, rng.choice(E, 3, replace=False)] *= 8
        out.append(w)
    return out


def test_one_scenario_is_the_plain_plan():
    for kind in ("uniform", "skewed", "zero_layer"):
        w = loads(kind, 6, 16, 3)
        plain = eplb.rebalance_experts(w, 24, 1, 1, 8)
        one = eplb.rebalance_experts(w, 24, 1, 1, 8, scenarios=[w])
        for a, b in zip(plain, one):
            assert np.array_equal(a, b), kind
        arr = eplb.rebalance_experts(w, 24, 1, 1, 8, scenarios=w[None],
                                     weights=[5.0])
        assert np.array_equal(plain[0], arr[0])
        cur = plain[0]
        re_plain = eplb.rebalance_experts(w * 1.5, 24, 1, 1, 8, current=cur)
        re_one = eplb.rebalance_experts(w * 1.5, 24, 1, 1, 8, current=cur,
                                        scenarios=[w * 1.5])
        assert np.array_equal(re_plain[0], re_one[0]), kind


def test_scenarios_balance_each_workload():
    L, E, S, G = 5, 32, 40, 8
    sc = workloads(L, E, 3, 11)
    phy, log2phy, logcnt = eplb.rebalance_experts(sc[0], S, 1, 1, G,
                                                  scenarios=sc)
    assert phy.shape == (L, S) and logcnt.shape == (L, E)
    assert valid(phy, E, G)
    assert np.array_equal(logcnt.sum(axis=1), np.full(L, S))
    # The plan of the per-layer normalised mean is where the scenario plan
    # starts: the objective only goes down from it.
    mean = sum(x / x.sum(axis=1, keepdims=True) for x in sc) / len(sc)
    of_mean, _, _ = eplb.rebalance_experts(mean * 1e6, S, 1, 1, G)
    assert objective(sc, phy, G) <= objective(sc, of_mean, G) + 1e-12
    assert objective(sc, phy, G) < objective(sc, of_mean, G)
    # Tensors, arrays and lists give the same plan; so do equal weights.
    stacked = np.stack(sc)
    assert np.array_equal(phy, eplb.rebalance_experts(
        sc[0], S, 1, 1, G, scenarios=stacked)[0])
    assert np.array_equal(phy, eplb.rebalance_experts(
        sc[0], S, 1, 1, G, scenarios=[x.tolist() for x in sc],
        weights=(2, 2, 2))[0])


def test_weights_steer_the_plan():
    L, E, S, G = 4, 32, 40, 8
    sc = workloads(L, E, 2, 5)
    heavy = [1e-6, 1e6]  # scenario 1 all but alone
    phy, _, _ = eplb.rebalance_experts(sc[0], S, 1, 1, G, scenarios=sc,
                                       weights=heavy)
    assert valid(phy, E, G)
    equal, _, _ = eplb.rebalance_experts(sc[0], S, 1, 1, G, scenarios=sc)
    # Weighted toward scenario 1, it is at least as balanced on it.
    assert gpu_imbalance(sc[1], phy, G).mean() <= \
        gpu_imbalance(sc[1], equal, G).mean() + 1e-12


def test_scenarios_replan_from_current():
    L, E, S, G = 4, 32, 40, 8
    sc = workloads(L, E, 3, 21)
    cur, _, _ = eplb.rebalance_experts(sc[0], S, 1, 1, G)
    phy, _, _ = eplb.rebalance_experts(sc[0], S, 1, 1, G, scenarios=sc,
                                       current=cur)
    assert valid(phy, E, G)
    assert objective(sc, phy, G) < objective(sc, cur, G)
    # Balanced enough on every scenario: every layer is kept.
    kept, _, _ = eplb.rebalance_experts(sc[0], S, 1, 1, G, scenarios=sc,
                                        current=cur, keep_threshold=100)
    assert np.array_equal(kept, cur)
    # No replica may move: the plan is the current one.
    still, _, _ = eplb.rebalance_experts(sc[0], S, 1, 1, G, scenarios=sc,
                                         current=cur, max_moves=0)
    assert np.array_equal(still, cur)
    with pytest.raises(eplb.MapError, match=r"current\[0, 0\]"):
        bad = cur.copy()
        bad[0, 0] = E
        eplb.rebalance_experts(sc[0], S, 1, 1, G, scenarios=sc, current=bad)


def test_scenarios_and_weights_are_checked():
    w = loads("uniform", 3, 16, 0)
    with pytest.raises(eplb.ShapeError, match=r"scenarios\[1\]"):
        eplb.rebalance_experts(w, 24, 4, 1, 8, scenarios=[w, w[:, :8]])
    with pytest.raises(eplb.ShapeError):
        eplb.rebalance_experts(w, 24, 4, 1, 8, scenarios=[])
    with pytest.raises(eplb.ShapeError, match="at most 1024"):
        eplb.rebalance_experts(w, 24, 4, 1, 8, scenarios=[w] * 1025)
    with pytest.raises(eplb.CountError, match=r"scenarios\[0, 1, 2\]"):
        bad = np.stack([w, w])
        bad[0, 1, 2] = -1
        eplb.rebalance_experts(w, 24, 4, 1, 8, scenarios=bad)
    for weights, err, msg in (
            ([1, 0], eplb.ArgError, r"weights\[1\] = 0.0 is outside"),
            ([1, 2e6], eplb.ArgError, r"weights\[1\]"),
            ([1, float("nan")], eplb.ArgError, r"weights\[1\]"),
            ([1, "x"], eplb.ArgError, "not a number"),
            ([1], eplb.ShapeError, r"expected \[2\]"),
            ([[1, 1]], eplb.ShapeError, r"expected \[2\]"),
            (3.0, eplb.ArgError, "pass 2 numbers")):
        with pytest.raises(err, match=msg) as ei:
            eplb.rebalance_experts(w, 24, 4, 1, 8, scenarios=[w, w],
                                   weights=weights)
        assert ei.value.code == err.code
    with pytest.raises(eplb.ArgError, match="pass scenarios= too"):
        eplb.rebalance_experts(w, 24, 4, 1, 8, weights=[1])

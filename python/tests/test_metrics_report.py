"""eplb's metrics against a plain numpy computation, and eplb.report
against the program eplb-report --json on the same inputs."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest

import eplb
import deepseek_ref as ref
from conftest import env_path


def case(seed=0, L=6, E=16, S=24, G=8):
    w = np.random.default_rng(seed).zipf(1.5, size=(L, E)).clip(max=10**6) * 10.0
    phy = eplb.rebalance_experts(w, S, 1, 1, G, policy="deepseek")[0]
    return w, phy, G


def test_gpu_loads_and_imbalance():
    w, phy, G = case()
    want = ref.gpu_loads(phy, w, G)
    assert np.allclose(eplb.gpu_loads(phy, w, G), want, rtol=1e-12)
    per = eplb.imbalance(phy, w, G, per_layer=True)
    assert np.allclose(per, ref.imbalance(phy, w, G), rtol=1e-12)
    assert eplb.imbalance(phy, w, G) == pytest.approx(per.mean(), rel=1e-12)
    b = eplb.balance(phy, w, G)
    assert b.imbalance == pytest.approx(per.mean(), rel=1e-12)
    assert b.max_imbalance == pytest.approx(per.max()) and b.worst_layer == int(per.argmax())
    g = ref.gpu_loads(phy, w, G)
    assert b.balancedness == pytest.approx((g.mean(axis=1) / g.max(axis=1)).mean())
    # the floor is a lower bound of what a duplicate-free balanced plan reaches
    bal = eplb.rebalance_experts(w, 24, 1, 1, G)[0]
    fl = eplb.floor(w, 24, G, per_layer=True)
    assert np.all(fl <= eplb.imbalance(bal, w, G, per_layer=True) + 1e-12)
    assert b.floor == pytest.approx(fl.mean())


def test_cross_node_and_moves():
    w, _, _ = case(1, L=4, E=32, S=48, G=8)
    hier = eplb.rebalance_experts(w, 48, 8, 4, 8)[0]
    assert eplb.cross_node(hier, w, 8, 4, 8) == 0  # groups stay on their node
    flat = eplb.rebalance_experts(w, 48, 1, 1, 8)[0]
    assert 0 < eplb.cross_node(flat, w, 8, 4, 8) < 1
    assert eplb.moves(flat, flat, 8) == 0
    rolled = np.roll(flat, 6, axis=1)  # every GPU gets its neighbour's slots
    n = eplb.moves(flat, rolled, 8)
    assert 0 < n <= flat.size
    with pytest.raises(eplb.ShapeError):
        eplb.moves(flat, flat[:, :40], 8)


@pytest.mark.parametrize("call", [
    lambda w, p: eplb.imbalance(p, w, 5),
    lambda w, p: eplb.imbalance(p[:2], w, 8),
    lambda w, p: eplb.imbalance(p + 100, w, 8),
    lambda w, p: eplb.imbalance(p, -w, 8),
    lambda w, p: eplb.imbalance(p.astype(float) + 0.5, w, 8),
    lambda w, p: eplb.gpu_loads(p, w, 0),
    lambda w, p: eplb.floor(w, 8, 8),
    lambda w, p: eplb.floor(w, 25, 8),
    lambda w, p: eplb.cross_node(p, w, 8, 3, 1),
    lambda w, p: eplb.cross_node(p, w, 8, 2, 5),
])
def test_metric_errors(call):
    w, phy, _ = case()
    with pytest.raises(eplb.Error):
        call(w, phy)


def run_report(*args):
    prog = os.path.join(env_path("EPLB_TEST_BIN"), "eplb-report")
    out = subprocess.run([prog, *args, "--json", "-"], check=True,
                         capture_output=True, text=True, timeout=60)
    return json.loads(out.stdout)


def test_report_is_eplb_report_json(tmp_path):
    data = env_path("EPLB_TEST_DATA")
    sg = os.path.join(data, "sg_dense.json")
    w = eplb.read_stats(sg)
    phy = eplb.rebalance_experts(w, 12, 1, 1, 4)[0]
    _, ids = eplb.read_stats(sg, layer_ids=True)
    m = tmp_path / "map.json"
    eplb.write_map(phy, m, num_gpus=4)
    y = tmp_path / "map.yaml"
    eplb.write_map(phy, y, num_gpus=4, layer_ids=ids)
    assert eplb.report(sg, m) == run_report("--stats", sg, "--map", str(m))
    assert eplb.report(sg, y, num_gpus=4) == run_report(
        "--stats", sg, "--map", str(y), "--num-gpus", "4")
    assert eplb.report(sg) == run_report("--stats", sg)
    assert eplb.report(sg, num_gpus=2) == run_report("--stats", sg, "--num-gpus", "2")
    # per iteration (one TensorRT-LLM dump), and summed
    trt = os.path.join(data, "trtllm_small")
    assert eplb.report(trt) == run_report("--stats", trt)
    assert eplb.report(trt, sum_iterations=True) == run_report(
        "--stats", trt, "--sum-iterations")
    # two files summed
    a, b = os.path.join(data, "ms_part_a.json"), os.path.join(data, "ms_part_b.json")
    assert eplb.report([a, b]) == run_report("--stats", a, "--stats", b)
    # arrays in: the same numbers as the files
    r = eplb.report(w, phy, num_gpus=4, layer_ids=ids)
    assert r == run_report("--stats", sg, "--map", str(m))
    with pytest.raises(eplb.ArgError, match="num_gpus"):
        eplb.report(sg, y)  # a YAML map does not say G
    with pytest.raises(eplb.ArgError, match="num_gpus"):
        eplb.report(w, phy)
    with pytest.raises(eplb.ArgError, match="divide"):
        eplb.report(sg, num_gpus=3)
    with pytest.raises(eplb.ShapeError):
        eplb.report(w, phy[:1], num_gpus=4)

"""eplb.read_stats / read_map / write_map on files written by an
independent writer (Python's json) and on the repository's sample dumps;
maps written by eplb are read back by Python's json."""

from __future__ import annotations

import json
import os
import random

import numpy as np
import pytest

import eplb
from conftest import env_path


def counts(L, E, seed):
    return np.random.default_rng(seed).integers(0, 5000, size=(L, E))


def write_mindspeed(path, c):
    rnd = random.Random(1)
    layers = list(range(c.shape[0]))
    rnd.shuffle(layers)  # keys in any order
    doc = {}
    for l in layers:
        experts = list(range(c.shape[1]))
        rnd.shuffle(experts)
        doc[str(l)] = {str(e): int(c[l, e]) for e in experts}
    with open(path, "w") as f:
        json.dump(doc, f)


def test_mindspeed_json(tmp_path):
    c = counts(5, 12, 0)
    p = tmp_path / "token_collects_all.json"
    write_mindspeed(p, c)
    got, ids = eplb.read_stats(p, layer_ids=True)
    assert got.dtype == np.float64 and np.array_equal(got, c)
    assert ids.tolist() == [0, 1, 2, 3, 4]
    assert np.array_equal(eplb.read_stats(str(p), format="mindspeed"), c)


def test_sglang_json_dense_rows_and_steps(tmp_path):
    c = counts(4, 8, 1).astype(float)
    rows = np.zeros((7, 8))
    rows[[1, 2, 4, 6]] = c  # rows 0, 3, 5: dense layers
    p = tmp_path / "expert_distribution.json"
    p.write_text(json.dumps({"logical_count": rows.tolist(), "other": 1}))
    got, ids = eplb.read_stats(p, layer_ids=True)
    assert np.array_equal(got, c) and ids.tolist() == [1, 2, 4, 6]
    kept = eplb.read_stats(p, drop_dense_layers=False)
    assert kept.shape == (7, 8)
    steps = tmp_path / "steps.json"
    steps.write_text(json.dumps({"logical_count": [rows.tolist(), (2 * rows).tolist()]}))
    assert np.array_equal(eplb.read_stats(steps), 3 * c)


def test_several_files_and_globs_are_summed(tmp_path):
    parts = [counts(3, 6, s) for s in range(3)]
    for r, c in enumerate(parts):
        write_mindspeed(tmp_path / ("eplb_token_collects_%d.json" % r), c)
    total = sum(parts)
    files = sorted(tmp_path.glob("*.json"))
    assert np.array_equal(eplb.read_stats(files), total)
    assert np.array_equal(eplb.read_stats(str(tmp_path / "eplb_token_collects_*.json")), total)
    assert np.array_equal(eplb.read_stats((files[0], files[1])), parts[0] + parts[1])


def test_read_errors_name_the_file(tmp_path):
    bad = tmp_path / "half.json"
    bad.write_text('{"0": {"0": 12, "1": ')
    with pytest.raises(eplb.ParseError, match="half.json") as ei:
        eplb.read_stats(bad)
    assert ei.value.code == -4 and "\n" not in str(ei.value)
    with pytest.raises(eplb.IoError, match="nowhere.json"):
        eplb.read_stats(tmp_path / "nowhere.json")
    with pytest.raises(eplb.IoError):
        eplb.read_stats(str(tmp_path / "none_*.json"))
    neg = tmp_path / "neg.json"
    neg.write_text('{"0": {"0": 12, "1": -3}}')
    with pytest.raises(eplb.CountError, match="neg.json"):
        eplb.read_stats(neg)
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    write_mindspeed(a, counts(2, 4, 0))
    write_mindspeed(b, counts(2, 5, 0))
    with pytest.raises(eplb.ShapeError, match="b.json"):
        eplb.read_stats([a, b])
    for arg, cls in [([], eplb.ArgError), (None, eplb.ArgError), (3, eplb.ArgError),
                     ("", eplb.ArgError), ("a\0b", eplb.ArgError)]:
        with pytest.raises(cls):
            eplb.read_stats(arg)
    with pytest.raises(eplb.ArgError, match="format"):
        eplb.read_stats(a, format="csv")
    with pytest.raises(eplb.ArgError, match="iter_range"):
        eplb.read_stats(a, iter_range=(5, 2))


def test_dump_directories():
    data = env_path("EPLB_TEST_DATA")
    trt = os.path.join(data, "trtllm_small")
    full, ids = eplb.read_stats(trt, layer_ids=True)
    assert full.ndim == 2 and full.sum() > 0 and len(ids) == full.shape[0]
    first = eplb.read_stats(trt, iter_range=(7, 7))  # the dump holds 7..8
    second = eplb.read_stats(trt, iter_range=(8, 8))
    assert np.array_equal(first + second, full) and 0 < first.sum() < full.sum()
    with pytest.raises(eplb.ArgError, match="iterations 7..8"):
        eplb.read_stats(trt, iter_range=(0, 0))
    mindie = eplb.read_stats(os.path.join(data, "mindie_small"))
    assert mindie.ndim == 2 and mindie.sum() > 0
    with pytest.raises(eplb.ArgError):  # MindSpeed files have no iterations
        eplb.read_stats(os.path.join(data, "ms_part_a.json"), iter_range=(0, 1))


def plan(L=3, E=8, S=12, G=4, seed=0):
    w = counts(L, E, seed)
    return eplb.rebalance_experts(w, S, 1, 1, G), w


def test_expert_map_json_round_trip(tmp_path):
    (phy, _, _), _ = plan()
    p = tmp_path / "expert_map.json"
    eplb.write_map(phy, p, num_gpus=4)
    doc = json.loads(p.read_text())  # an independent reader
    assert doc["moe_layer_count"] == 3
    for l, layer in enumerate(doc["layer_list"]):
        assert layer["device_count"] == 4
        for d in layer["device_list"]:
            g = d["device_id"]
            assert d["device_expert"] == phy[l, g * 3:(g + 1) * 3].tolist()
    m = eplb.read_map(p)
    assert np.array_equal(m.phy2log, phy) and m.num_gpus == 4 and m.num_experts == 8
    assert not [f for f in os.listdir(tmp_path) if ".tmp." in f]


def test_yaml_sglang_deepseek_round_trips(tmp_path):
    (phy, log2phy, logcnt), _ = plan()
    y = tmp_path / "moe_load_balancer.yaml"
    eplb.write_map(phy, y, num_gpus=4, layer_ids=[3, 5, 7])
    m = eplb.read_map(y)
    assert np.array_equal(m.phy2log, phy) and m.layer_ids.tolist() == [3, 5, 7]
    assert m.num_gpus == 1  # the YAML does not say
    s = tmp_path / "init_expert_location.json"
    eplb.write_map(phy, s, num_gpus=4, format="sglang", layer_ids=[1, 2, 4])
    rows = json.loads(s.read_text())["physical_to_logical_map"]
    assert len(rows) == 5 and rows[2] == phy[1].tolist()
    assert rows[0] == [e % 8 for e in range(12)]  # a dense row: contiguous
    d = tmp_path / "deepseek.json"
    eplb.write_map(phy, d, num_gpus=4, format="deepseek")
    doc = json.loads(d.read_text())
    assert doc["phy2log"] == phy.tolist() and doc["logcnt"] == logcnt.tolist()
    R = len(doc["log2phy"][0][0])
    assert np.array_equal(np.array(doc["log2phy"]), log2phy[:, :, :R])
    assert np.all(log2phy[:, :, R:] == -1)


def test_write_errors_leave_nothing(tmp_path):
    (phy, _, _), _ = plan()
    p = tmp_path / "m.json"
    with pytest.raises(eplb.ArgError, match="not a multiple of num_gpus 5"):
        eplb.write_map(phy, p, num_gpus=5)
    bad = phy.copy()
    bad[0, :] = 0  # experts 1..7 have no slot in layer 0
    with pytest.raises(eplb.MapError):
        eplb.write_map(bad, p, num_gpus=4)
    with pytest.raises(eplb.MapError, match=r"phy2log\[1, 2\] = -1"):
        neg = phy.copy()
        neg[1, 2] = -1
        eplb.write_map(neg, p, num_gpus=4)
    with pytest.raises(eplb.IoError):
        eplb.write_map(phy, tmp_path / "no" / "such" / "dir.json", num_gpus=4)
    with pytest.raises(eplb.ArgError, match="format"):
        eplb.write_map(phy, p, num_gpus=4, format="xml")
    with pytest.raises(eplb.ShapeError, match="layer_ids"):
        eplb.write_map(phy, p, num_gpus=4, layer_ids=[1, 2])
    with pytest.raises(TypeError):
        eplb.write_map(phy, p)  # num_gpus is required
    assert os.listdir(tmp_path) == []
    with pytest.raises(eplb.ParseError):
        (tmp_path / "x.json").write_text("{")
        eplb.read_map(tmp_path / "x.json")


def test_duplicates_refused_unless_allowed(tmp_path):
    # 2 GPUs of 3 slots, expert 0 twice on GPU 0: consumers of the expert
    # map drop the copy, so the writer refuses it unless asked.
    phy = np.array([[0, 0, 1, 2, 3, 1]], dtype=np.int64)
    p = tmp_path / "dup.json"
    with pytest.raises(eplb.MapError, match="GPU 0 holds expert 0 twice"):
        eplb.write_map(phy, p, num_gpus=2)
    assert not p.exists()
    eplb.write_map(phy, p, num_gpus=2, allow_duplicates=True)
    got = json.loads(p.read_text())["layer_list"][0]["device_list"]
    assert got[0]["device_expert"] == [0, 0, 1]
    eplb.write_map(phy, tmp_path / "dup.yaml", num_gpus=2)  # YAML: allowed

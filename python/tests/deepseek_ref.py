"""DeepSeek's EPLB algorithm re-stated in plain numpy from the description
in docs/planner.md ("deepseek" section, with its tie rules) - not from
DeepSeek's code nor from eplb's C - so that the tests can compare maps
with an independent implementation.  Slow and simple on purpose.
"""

from __future__ import annotations

from typing import List, Tuple

import numpy as np


def order_heaviest_first(w: np.ndarray) -> np.ndarray:
    """Indices by weight, heaviest first; equal weights by lower index."""
    return np.lexsort((np.arange(len(w)), -w))


def pack(w: np.ndarray, order: np.ndarray, bins: int, cap: int
         ) -> Tuple[np.ndarray, np.ndarray]:
    """Each item, in `order`, to the lightest bin with room (a bin's
    weight: the sum of its items in packing order; ties: lower bin).
    Returns each item's bin and its rank in the bin."""
    weight = np.zeros(bins)
    count = np.zeros(bins, dtype=np.int64)
    bin_of = np.empty(len(w), dtype=np.int64)
    rank_of = np.empty(len(w), dtype=np.int64)
    for i in order:
        room = np.flatnonzero(count < cap)
        b = room[np.argmin(weight[room])]  # first minimum: the lower bin
        bin_of[i], rank_of[i] = b, count[b]
        count[b] += 1
        weight[b] += w[i]
    return bin_of, rank_of


def replicate(load: np.ndarray, slots: int) -> np.ndarray:
    """Replica counts: one each, then every further slot to the expert with
    the highest load per replica (compared as load_a * count_b against
    load_b * count_a), fewer replicas then lower index on a tie."""
    n = len(load)
    cnt = np.ones(n, dtype=np.int64)
    for _ in range(slots - n):
        best = 0
        for e in range(1, n):
            ka = load[e] * float(cnt[best])
            kb = load[best] * float(cnt[e])
            if ka > kb or (ka == kb and cnt[e] < cnt[best]):
                best = e
        cnt[best] += 1
    return cnt


def plan_layer(load: np.ndarray, S: int, G: int, N: int, K: int) -> np.ndarray:
    """phy2log [S] of one layer."""
    load = np.asarray(load, dtype=np.float64)
    E = len(load)
    if not (N > 1 and K % N == 0):
        N = K = 1
    if not load.any():
        load = np.ones(E)
    gsize, gpn, epn, spn = E // K, K // N, E // N, S // N
    per, gpus_per_node = S // G, G // N
    # 1. groups onto nodes (a group's load: its experts summed in order).
    gload = np.cumsum(load.reshape(K, gsize), axis=1)[:, -1]
    node_of, rank_in_node = pack(gload, order_heaviest_first(gload), N, gpn)
    node_expert = np.empty(E, dtype=np.int64)  # node-major numbering -> expert
    for k in range(K):
        base = (node_of[k] * gpn + rank_in_node[k]) * gsize
        node_expert[base:base + gsize] = np.arange(k * gsize, (k + 1) * gsize)
    phy2log = np.empty(S, dtype=np.int64)
    for n in range(N):
        experts = node_expert[n * epn:(n + 1) * epn]
        mload = load[experts]
        # 2. replicate the node's experts into its slots.
        cnt = replicate(mload, spn)
        replicas: List[int] = list(range(epn))
        for j in range(epn):
            replicas += [j] * (int(cnt[j]) - 1)
        rep = np.array(replicas, dtype=np.int64)
        w = mload[rep] / cnt[rep]
        # 3. pack them onto the node's GPUs.
        gpu_of, rank_of = pack(w, order_heaviest_first(w), gpus_per_node, per)
        for q in range(spn):
            phy2log[n * spn + gpu_of[q] * per + rank_of[q]] = experts[rep[q]]
    return phy2log


def plan(weight: np.ndarray, S: int, K: int, N: int, G: int) -> np.ndarray:
    """phy2log [L, S], DeepSeek's argument order (groups, nodes, GPUs)."""
    return np.stack([plan_layer(row, S, G, N, K) for row in np.asarray(weight)])


def gpu_loads(phy2log: np.ndarray, weight: np.ndarray, G: int) -> np.ndarray:
    """[L, G]: each GPU's load, a replica carrying load / replicas."""
    L, S = phy2log.shape
    out = np.zeros((L, G))
    for l in range(L):
        cnt = np.bincount(phy2log[l], minlength=weight.shape[1])
        per_slot = weight[l][phy2log[l]] / cnt[phy2log[l]]
        out[l] = per_slot.reshape(G, S // G).sum(axis=1)
    return out


def imbalance(phy2log: np.ndarray, weight: np.ndarray, G: int) -> np.ndarray:
    """[L]: max / mean - 1 over GPUs (0 for an idle layer)."""
    g = gpu_loads(phy2log, weight, G)
    mean = g.mean(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(mean > 0, g.max(axis=1) / mean - 1, 0.0)
    return r

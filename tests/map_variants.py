"""tests/map_variants.py - maps written by Python's json, for test_formats_maps.

Usage: python3 map_variants.py OUTDIR

Writes, for a few placements (with replicas, a GPU holding an expert twice,
layer ids that are not 0..L-1, devices listed out of order), the expert map
JSON, SGLang's physical_to_logical_map and DeepSeek's phy2log/log2phy/logcnt
through json.dump with many indents, separators and key orders (keys
shuffled at every level), and next to each NAME.json a NAME.expect holding
what a reader must return: "L S G E", the L layer ids, then L lines of S
expert ids.  Deterministic (a fixed seed); an independent writer of the
files eplb's map readers (full and fast) must read identically.
"""
import json
import os
import random
import sys

rng = random.Random(15)


def placement(L, G, per, E, dup):
    """L rows of G*per slots: every expert once, the rest replicas; with
    dup, GPU 0 holds one expert twice (slots 0 and 1)."""
    S = G * per
    rows = []
    for _ in range(L):
        extra = [rng.randrange(E) for _ in range(S - E)]
        row = list(range(E)) + extra
        rng.shuffle(row)
        if dup:
            at = [s for s, x in enumerate(row) if x == extra[0]][:2]
            for to, s in enumerate(at):
                row[to], row[s] = row[s], row[to]
            assert row[0] == row[1]
        rows.append(row)
    return rows


def shuffled(d):
    """The dict with its keys in a random order."""
    keys = list(d)
    rng.shuffle(keys)
    return {k: d[k] for k in keys}


def expert_map(rows, ids, G):
    per = len(rows[0]) // G
    layers = []
    for l, row in enumerate(rows):
        devs = [shuffled({"device_id": g,
                          "device_expert": row[g * per:(g + 1) * per]})
                for g in range(G)]
        rng.shuffle(devs)
        layers.append(shuffled({"layer_id": ids[l], "device_count": G,
                                "device_list": devs}))
    return shuffled({"moe_layer_count": len(rows), "layer_list": layers})


def deepseek(rows, E):
    R = max(max(row.count(e) for e in range(E)) for row in rows)
    log2phy, logcnt = [], []
    for row in rows:
        slots = [[s for s, x in enumerate(row) if x == e] for e in range(E)]
        log2phy.append([s + [-1] * (R - len(s)) for s in slots])
        logcnt.append([len(s) for s in slots])
    return shuffled({"phy2log": rows, "log2phy": log2phy, "logcnt": logcnt})


STYLES = [
    dict(),
    dict(indent=2),
    dict(indent=4, sort_keys=True),
    dict(indent=0),
    dict(indent="\t"),
    dict(separators=(",", ":")),
    dict(separators=(" , ", " : ")),
    dict(indent=1, separators=(",", ": ")),
]


def write(outdir, name, obj, style, rows, ids, G):
    E = max(max(r) for r in rows) + 1
    with open(os.path.join(outdir, name + ".json"), "w") as f:
        json.dump(obj, f, **style)
        if style.get("indent") is not None:
            f.write("\n")
    with open(os.path.join(outdir, name + ".expect"), "w") as f:
        f.write("%d %d %d %d\n" % (len(rows), len(rows[0]), G, E))
        f.write(" ".join(map(str, ids)) + "\n")
        for r in rows:
            f.write(" ".join(map(str, r)) + "\n")


def main():
    outdir = sys.argv[1]
    os.makedirs(outdir, exist_ok=True)
    shapes = [  # L, G, per, E, duplicates, first layer id
        (1, 1, 1, 1, False, 0),
        (3, 2, 3, 5, True, 3),
        (4, 4, 5, 17, False, 0),
        (58, 36, 8, 256, False, 3),
    ]
    n = 0
    for L, G, per, E, dup, first in shapes:
        rows = placement(L, G, per, E, dup)
        ids = [first + 2 * l for l in range(L)]
        for k, style in enumerate(STYLES):
            tag = "s%d_%d" % (n, k)
            write(outdir, "em_" + tag, expert_map(rows, ids, G), style,
                  rows, ids, G)
            seq = list(range(L))
            write(outdir, "sg_" + tag,
                  {"physical_to_logical_map": rows}, style, rows, seq, 1)
            write(outdir, "ds_" + tag, deepseek(rows, E), style, rows, seq, 1)
        n += 1


if __name__ == "__main__":
    main()

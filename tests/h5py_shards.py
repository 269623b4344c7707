#!/usr/bin/python3
"""h5py_shards.py - shards written by h5py exactly as docs/shards.md shows
(f.attrs.update with Python str: variable-length UTF-8 strings), and the
check, by h5py, that after eplb migrated them every slot holds its
expert's original bytes.

  h5py_shards.py write DIR RANKS LAYERS EXPERTS SLOTS
  h5py_shards.py check DIR GENERATION [MAP.json]

Expert e of layer l has the content numpy's RandomState(l * 1000 + e)
draws, so check can recompute it without the originals."""
import json
import sys

import h5py
import numpy as np


def content(layer, expert):
    r = np.random.RandomState(layer * 1000 + expert)
    return {
        "w_gate": r.standard_normal((4, 8)).astype(np.float16),
        "w_down": r.standard_normal(16).astype(np.float32),
        "scale": r.randint(0, 255, size=3).astype(np.uint8),
    }


def write(d, world, L, E, P):
    for rank in range(world):
        ids = [[(rank * P + s) % E for s in range(P)] for _ in range(L)]
        with h5py.File(f"{d}/shard_{rank:05d}.h5", "w") as f:
            f.attrs.update(eplb_format="eplb-shard", eplb_version=1,
                           generation=np.uint64(0), rank=rank,
                           world_size=world, num_layers=L)
            for l in range(L):
                g = f.create_group(f"layers/{l}")
                g["expert_ids"] = np.asarray(ids[l], dtype=np.int32)
                for name in ("w_gate", "w_down", "scale"):
                    g[name] = np.stack([content(l, e)[name] for e in ids[l]])


def check(d, gen, map_path):
    want = json.load(open(map_path)) if map_path else None
    import glob
    files = sorted(glob.glob(f"{d}/shard_*.h5"))
    if not files:
        sys.exit(f"no shards in {d}")
    slots = 0
    for path in files:
        with h5py.File(path, "r") as f:
            fmt = f.attrs["eplb_format"]  # str as h5py wrote it, bytes as eplb does
            fmt = fmt.decode() if isinstance(fmt, bytes) else fmt
            if fmt != "eplb-shard" or int(f.attrs["generation"]) != gen:
                sys.exit(f"{path}: format {fmt!r} generation "
                         f"{int(f.attrs['generation'])}, want {gen}")
            rank, L = int(f.attrs["rank"]), int(f.attrs["num_layers"])
            for l in range(L):
                g = f[f"layers/{l}"]
                ids = g["expert_ids"][...]
                for s, e in enumerate(ids):
                    for name, v in content(l, int(e)).items():
                        if g[name][s].tobytes() != v.tobytes():
                            sys.exit(f"{path}: layer {l} slot {s} {name} is not expert {e}'s")
                    slots += 1
                if want is not None:  # the driver's map: layer_list/device_list
                    dev = want["layer_list"][l]["device_list"][rank]["device_expert"]
                    if list(dev) != [int(x) for x in ids]:
                        sys.exit(f"{path}: layer {l} ids {list(ids)} differ from the map {dev}")
    print(f"checked {len(files)} shards, {slots} slots: every byte is its expert's")


if __name__ == "__main__":
    if sys.argv[1] == "write":
        write(sys.argv[2], *map(int, sys.argv[3:7]))
    elif sys.argv[1] == "check":
        check(sys.argv[2], int(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else None)
    else:
        sys.exit("usage: h5py_shards.py write|check ...")

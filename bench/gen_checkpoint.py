#!/usr/bin/python3
"""gen_checkpoint.py - writes a DeepSeek-style FP8 checkpoint of about
GIB gibibytes for bench/run_import.sh: LAYERS MoE layers of EXPERTS experts,
each with gate/up/down_proj.weight (F8_E4M3, [inter, hidden] / [hidden,
inter]) and their F32 block scales, plus a router per layer, split into
files of about 1 GiB with model.safetensors.index.json.

Streams: one 64 MiB block of random bytes is reused (rotated) for every
tensor, so the generator holds 64 MiB whatever the size.  The content does
not matter to a throughput figure; nothing compresses it.

usage: gen_checkpoint.py DIR GIB [EXPERTS] [HIDDEN] [INTER]
"""
import json
import os
import struct
import sys

import numpy as np


def main():
    d, gib = sys.argv[1], float(sys.argv[2])
    E = int(sys.argv[3]) if len(sys.argv) > 3 else 64
    H = int(sys.argv[4]) if len(sys.argv) > 4 else 2048
    I = int(sys.argv[5]) if len(sys.argv) > 5 else 1024
    per_expert = 3 * H * I
    L = max(1, round(gib * 2**30 / (E * per_expert)))
    block = np.random.default_rng(7).integers(0, 256, 64 << 20, dtype=np.uint8).tobytes()
    tensors = []  # (name, dtype, shape, nbytes)
    for l in range(L):
        tensors.append((f"model.layers.{l}.mlp.gate.weight", "BF16", [E, H], E * H * 2))
        for e in range(E):
            for n, s in (("gate_proj", [I, H]), ("up_proj", [I, H]), ("down_proj", [H, I])):
                p = f"model.layers.{l}.mlp.experts.{e}.{n}"
                tensors.append((p + ".weight", "F8_E4M3", s, s[0] * s[1]))
                sc = [(s[0] + 127) // 128, (s[1] + 127) // 128]
                tensors.append((p + ".weight_scale_inv", "F32", sc, 4 * sc[0] * sc[1]))
    files, cur, size = [], [], 0
    for t in tensors:
        cur.append(t)
        size += t[3]
        if size >= 1 << 30:
            files.append(cur)
            cur, size = [], 0
    if cur:
        files.append(cur)
    os.makedirs(d, exist_ok=True)
    weight_map, total, pos = {}, 0, 0
    for k, part in enumerate(files):
        name = f"model-{k + 1:05d}-of-{len(files):05d}.safetensors"
        head, off = {"__metadata__": {"format": "pt"}}, 0
        for n, dt, s, nb in part:
            head[n] = {"dtype": dt, "shape": s, "data_offsets": [off, off + nb]}
            off += nb
            weight_map[n] = name
        raw = json.dumps(head).encode()
        raw += b" " * (-len(raw) % 8)
        with open(os.path.join(d, name), "wb") as f:
            f.write(struct.pack("<Q", len(raw)) + raw)
            for _, _, _, nb in part:
                while nb > 0:
                    take = min(nb, len(block) - pos)
                    f.write(block[pos:pos + take])
                    pos, nb = (pos + take) % len(block), nb - take
        total += off
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f)
    print(f"{d}: {L} MoE layers x {E} experts, {len(files)} files, {total} bytes")


if __name__ == "__main__":
    main()

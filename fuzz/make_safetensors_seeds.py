#!/usr/bin/env python3
"""Writes the seeds of fuzz_safetensors (fuzz/corpus/fuzz_safetensors/):
small safetensors files made with json, struct and numpy only (not eplb's
writer, not the safetensors package), see docs/fuzzing.md.

    /usr/bin/python3 fuzz/make_safetensors_seeds.py fuzz/corpus/fuzz_safetensors

Each header is padded with spaces (as the reference writer pads to 8 bytes,
plus 16 more) and the data section ends in 8 spare zero bytes, so that a
mutation that inserts into the JSON or shifts the data by a few bytes can
still give a file the parser accepts."""
import json
import os
import struct
import sys

import numpy as np


def safetensors(tensors, metadata=None):
    """tensors: [(name, dtype, shape, bytes)] in data order."""
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape),
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((-len(text)) % 8 + 16)
    return struct.pack("<Q", len(text)) + text + data + bytes(8)


def counts(name, values, dtype="I64"):
    np_type = {"I64": "<i8", "I32": "<i4"}[dtype]
    a = np.asarray(values, dtype=np_type)
    return (name, dtype, a.shape, a.tobytes())


def raw(name, dtype, shape, np_type):
    a = np.arange(int(np.prod(shape)), dtype=np_type).reshape(shape)
    return (name, dtype, shape, a.tobytes())


def seeds():
    # TensorRT-LLM dumps: "{iteration}_{layer}" -> [E] token counts.
    yield "trt_i64", safetensors([
        counts("10_3", [1, 2, 3]), counts("10_5", [4, 0, 0]),
        counts("11_3", [10, 0, 0]), counts("11_5", [0, 0, 7])])
    yield "trt_i32_meta", safetensors(
        [counts(f"{i}_0", [i, 1, 2, 3, 4, 5, 2**31 - 1], "I32")
         for i in range(3)], {"format": "pt"})
    # Iteration 11 lacks layer 5: sums, but no series (a count near
    # 2^52: two ranks of it sum to just under 2^53).
    yield "trt_gap", safetensors([
        counts("10_3", [1, 2]), counts("10_5", [3, 4]),
        counts("11_3", [2**52 - 8, 0])])
    # Iterations 0 and 999999 alone: the series was sized (4 GB) before
    # the gap was found.
    yield "trt_sparse", safetensors([counts("0_0", [1] * 512, "I32"),
                                     counts("999999_0", [1] * 512, "I32")])
    # A checkpoint with the names of fuzz_safetensors' fixed index (layer
    # 1's experts, the embedding), a dense layer 0, a shared expert.
    bf16 = "<u2"
    yield "ckpt_deepseek", safetensors([
        raw("model.layers.1.mlp.experts.0.gate_proj.weight", "BF16", (2, 2),
            bf16),
        raw("model.layers.1.mlp.experts.1.gate_proj.weight", "BF16", (2, 2),
            bf16),
        raw("model.layers.1.mlp.experts.0.down_proj.weight", "BF16", (2, 2),
            bf16),
        raw("model.layers.1.mlp.experts.1.down_proj.weight", "BF16", (2, 2),
            bf16),
        raw("model.embed_tokens.weight", "F32", (2,), "<f4"),
        raw("model.layers.0.mlp.gate_proj.weight", "BF16", (2,), bf16),
        raw("model.layers.1.mlp.shared_experts.gate_proj.weight", "BF16",
            (2,), bf16)], {"format": "pt"})
    # Mixtral's names, FP8 weights and their scales.
    mix = []
    for e in range(2):
        for w in ("w1", "w2", "w3"):
            p = f"model.layers.0.block_sparse_moe.experts.{e}.{w}"
            mix.append(raw(p + ".weight", "F8_E4M3", (2, 4), "<u1"))
            mix.append(raw(p + ".weight_scale_inv", "F32", (1,), "<f4"))
    yield "ckpt_mixtral", safetensors(mix)
    # Expert ids up to 65535 in 32 layers x 32 roles, one tensor each: the
    # catalogue's table of every (layer, expert, role) took 1.5 GB.
    yield "ckpt_sparse", safetensors(
        [raw(f"model.layers.{i}.mlp.experts.65535.r{i}.weight", "U8", (1,),
             "<u1") for i in range(32)])
    # Every dtype, a scalar, an empty tensor, eight dimensions.
    kinds = [("BOOL", "<u1"), ("U8", "<u1"), ("I8", "<i1"),
             ("F8_E4M3", "<u1"), ("F8_E5M2", "<u1"), ("F8_E8M0", "<u1"),
             ("U16", "<u2"), ("I16", "<i2"), ("F16", "<f2"), ("BF16", "<u2"),
             ("U32", "<u4"), ("I32", "<i4"), ("F32", "<f4"), ("U64", "<u8"),
             ("I64", "<i8"), ("F64", "<f8")]
    every = [raw(f"t_{d}", d, (2,), t) for d, t in kinds]
    every.append(raw("scalar", "F64", (), "<f8"))
    every.append(("empty", "F32", (0, 5), b""))
    every.append(raw("dims8", "U8", (1, 1, 1, 1, 1, 1, 2, 2), "<u1"))
    yield "dtypes", safetensors(every)
    yield "empty", safetensors([])


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for name, blob in seeds():
        with open(os.path.join(out, name + ".safetensors"), "wb") as f:
            f.write(blob)


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""ckpt_tool.py - an independent writer and reader of Hugging Face
safetensors checkpoints and eplb shards, for the tests of eplb-shard
import / export / verify (tests/test_checkpoint.sh, mpi_tests/ckpt_sync.sh).

Written with numpy and json only (no safetensors package, no torch), from
the format's description: an 8-byte little-endian header length, a JSON
header {name: {dtype, shape, data_offsets}}, the data.  BF16 and FP8 are
written as raw bytes (any bit pattern is a valid test weight).  h5py is
used for the shards written the way docs/shards.md documents.

  write DIR --family deepseek|qwen|mixtral|custom [options]   a checkpoint
  compare ORIG OUT        OUT's tensors (index or files) are ORIG's, byte
                          for byte, and OUT holds every expert tensor of ORIG
  check-ranks ORIG OUT PATTERN   per-rank files: each slot's tensors are the
                          bytes of the expert __metadata__ names
  h5py-shards DIR CKPT RANKS SLOTS   shards written by h5py (opaque bf16 /
                          fp8 types, /layer_ids, /checkpoint) from CKPT
  check-h5 DIR TAG...     every shard keeps /layer_ids, /checkpoint and
                          datasets of the opaque tags given
"""
import argparse
import json
import os
import re
import struct
import sys

import numpy as np

SIZES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2,
         "I16": 2, "F16": 2, "BF16": 2, "U32": 4, "I32": 4, "F32": 4,
         "U64": 8, "I64": 8, "F64": 8}


# ---- writing ---------------------------------------------------------------

def tensor_bytes(rng, dtype, shape):
    n = int(np.prod(shape, dtype=np.int64)) * SIZES[dtype]
    return rng.integers(0, 256, size=n, dtype=np.uint8).tobytes()


def write_file(path, tensors, defect=None):
    """tensors: list of (name, dtype, shape, bytes), in file order."""
    header, off, entries = {"__metadata__": {"format": "pt"}}, 0, []
    for name, dtype, shape, data in tensors:
        entries.append((name, {"dtype": dtype, "shape": list(shape),
                               "data_offsets": [off, off + len(data)]}))
        off += len(data)
    if defect == "offsets":     # the last tensor points past the data
        name, e = entries[-1]
        n = e["data_offsets"][1] - e["data_offsets"][0]
        e["data_offsets"] = [off + 64, off + 64 + n]
    text = "{" + ", ".join(json.dumps(k) + ": " + json.dumps(v) for k, v in
                           [("__metadata__", header["__metadata__"])] + entries)
    if defect == "duplicate":   # the first tensor's entry again
        text += ", " + json.dumps(entries[0][0]) + ": " + json.dumps(entries[0][1])
    text += "}"
    raw = text.encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for _, _, _, data in tensors:
            f.write(data)


def model_tensors(a, rng):
    """The tensors of a small model of family a.family, in file order."""
    wd = {"bf16": "BF16", "fp8": "F8_E4M3", "f16": "F16", "f32": "F32"}[a.dtype]
    H, I, E = a.hidden, a.inter, a.experts
    out = [("model.embed_tokens.weight", "BF16", (32, H))]

    def proj(prefix, names, shapes):
        for n, s in zip(names, shapes):
            out.append((f"{prefix}.{n}.weight", wd, s))
            if a.dtype == "fp8":
                out.append((f"{prefix}.{n}.weight_scale_inv", "F32",
                            ((s[0] + 127) // 128, (s[1] + 127) // 128)))

    std = (["gate_proj", "up_proj", "down_proj"], [(I, H), (I, H), (H, I)])
    for l in range(a.layers):
        p = f"model.layers.{l}"
        out.append((f"{p}.input_layernorm.weight", "BF16", (H,)))
        proj(f"{p}.self_attn", ["q_proj", "o_proj"], [(H, H), (H, H)])
        out.append((f"{p}.post_attention_layernorm.weight", "BF16", (H,)))
        if l < a.first_moe:
            proj(f"{p}.mlp", *std)
        elif a.family == "mixtral":
            out.append((f"{p}.block_sparse_moe.gate.weight", "BF16", (E, H)))
            for e in range(E):
                proj(f"{p}.block_sparse_moe.experts.{e}", ["w1", "w2", "w3"],
                     [(I, H), (H, I), (I, H)])
        elif a.family == "custom":
            for e in range(E):
                proj(f"transformer.h.{l}.moe.expert_{e}.mlp", ["fc1", "fc2"],
                     [(I, H), (H, I)])
        else:
            out.append((f"{p}.mlp.gate.weight", "BF16", (E, H)))
            if a.family == "deepseek":
                out.append((f"{p}.mlp.gate.e_score_correction_bias", "F32", (E,)))
                proj(f"{p}.mlp.shared_experts", *std)
            else:  # qwen2-moe: one shared expert and its gate
                proj(f"{p}.mlp.shared_expert", *std)
                out.append((f"{p}.mlp.shared_expert_gate.weight", "BF16", (1, H)))
            for e in range(E):
                proj(f"{p}.mlp.experts.{e}", *std)
    out += [("model.norm.weight", "BF16", (H,)), ("lm_head.weight", "BF16", (32, H))]
    return out


def apply_defect(a, tensors):
    """Changes the tensor list as a.defect says (before writing)."""
    first = f"model.layers.{a.first_moe}.mlp.experts."
    if a.defect == "missing":       # gone from its file and from the index
        tensors[:] = [t for t in tensors if t[0] != first + "3.down_proj.weight"]
    if a.defect == "shape":         # one expert's up_proj is another shape
        for i, (n, d, s, b) in enumerate(tensors):
            if n == first + "5.up_proj.weight":
                tensors[i] = (n, d, (s[0] + 1, s[1]), b + b[: s[1] * SIZES[d]])


def write_checkpoint(a):
    rng = np.random.default_rng(a.seed)
    os.makedirs(a.dir, exist_ok=True)
    tensors = [(n, d, s, tensor_bytes(rng, d, s)) for n, d, s in model_tensors(a, rng)]
    apply_defect(a, tensors)
    F = a.files
    names = [f"model-{k + 1:05d}-of-{F:05d}.safetensors" for k in range(F)]
    if F == 1 and a.no_index:
        names = ["model.safetensors"]
    per = (len(tensors) + F - 1) // F
    weight_map, total = {}, 0
    for k in range(F):
        part = tensors[k * per:(k + 1) * per]
        defect = a.defect if k == F - 1 and a.defect in ("offsets", "duplicate") else None
        write_file(os.path.join(a.dir, names[k]), part, defect)
        for n, _, _, b in part:
            weight_map[n] = names[k]
            total += len(b)
    if a.defect == "truncate":
        p = os.path.join(a.dir, names[-1])
        os.truncate(p, os.path.getsize(p) - 100)
    if a.defect == "index-missing":  # the index names a tensor no file has
        weight_map[f"model.layers.{a.first_moe}.mlp.experts.0.gate_proj.weight_x"] = names[0]
    if not a.no_index:
        text = json.dumps({"metadata": {"total_size": total},
                           "weight_map": weight_map}, indent=2)
        if a.defect == "index-duplicate":
            k = next(iter(weight_map))
            text = text.replace("\"weight_map\": {", "\"weight_map\": {\n    "
                                + json.dumps(k) + ": " + json.dumps(weight_map[k]) + ",", 1)
        with open(os.path.join(a.dir, "model.safetensors.index.json"), "w") as f:
            f.write(text)


# ---- reading ---------------------------------------------------------------

def read_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
    return h, 8 + n


def read_checkpoint(d):
    """{name: (dtype, shape, bytes)} of a checkpoint directory."""
    idx = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(idx):
        files = sorted(set(json.load(open(idx))["weight_map"].values()))
    else:
        files = sorted(f for f in os.listdir(d) if f.endswith(".safetensors"))
    out = {}
    for fn in files:
        h, start = read_header(os.path.join(d, fn))
        with open(os.path.join(d, fn), "rb") as f:
            for k, v in h.items():
                if k == "__metadata__":
                    continue
                b, e = v["data_offsets"]
                f.seek(start + b)
                out[k] = (v["dtype"], tuple(v["shape"]), f.read(e - b))
    return out


EXPERT = re.compile(r"(.*experts?[._])(\d+)(\..*)")


def compare(a):
    orig, out = read_checkpoint(a.orig), read_checkpoint(a.out)
    experts = {k for k in orig if EXPERT.fullmatch(k) and "shared" not in k}
    bad = [k for k in out if k not in orig or orig[k] != out[k]]
    if bad:
        sys.exit(f"compare: {len(bad)} tensors differ from {a.orig}, e.g. {bad[0]}")
    if set(out) != experts:
        miss = sorted(experts - set(out))[:1] or sorted(set(out) - experts)[:1]
        sys.exit(f"compare: {a.out} does not hold exactly the {len(experts)} expert tensors: {miss}")
    print(f"compare: {len(out)} expert tensors identical")


def pattern_re(pattern):
    p = re.escape(pattern)
    for ph, g in (("layer", r"(?P<layer>\d+)"), ("expert", r"(?P<expert>\d+)"),
                  ("name", r"(?P<name>.+)")):
        p = p.replace(re.escape("{" + ph + "}"), g)
    return re.compile(p)


def check_ranks(a):
    orig, rx = read_checkpoint(a.orig), pattern_re(a.pattern)
    files = sorted(f for f in os.listdir(a.out) if re.fullmatch(r"rank_\d{5}\.safetensors", f))
    if not files:
        sys.exit(f"check-ranks: no rank_*.safetensors in {a.out}")
    count = 0
    for fn in files:
        path = os.path.join(a.out, fn)
        h, start = read_header(path)
        meta = h.pop("__metadata__")
        first, P = int(meta["eplb_first_slot"]), int(meta["eplb_slots_per_rank"])
        if int(meta["eplb_rank"]) * P != first or fn != f"rank_{int(meta['eplb_rank']):05d}.safetensors":
            sys.exit(f"check-ranks: {fn}: metadata {meta}")
        with open(path, "rb") as f:
            for k, v in h.items():
                m = rx.fullmatch(k)
                slot = int(m["expert"]) - first
                experts = [int(x) for x in meta["eplb_experts." + m["layer"]].split(",")]
                if not 0 <= slot < P or len(experts) != P:
                    sys.exit(f"check-ranks: {fn}: {k}: slot {slot} of {P}")
                src = a.pattern.replace("{layer}", m["layer"]).replace(
                    "{expert}", str(experts[slot])).replace("{name}", m["name"])
                b, e = v["data_offsets"]
                f.seek(start + b)
                if orig[src] != (v["dtype"], tuple(v["shape"]), f.read(e - b)):
                    sys.exit(f"check-ranks: {fn}: {k} is not {src}")
                count += 1
    print(f"check-ranks: {count} slot tensors in {len(files)} files match their experts")


# ---- shards with h5py --------------------------------------------------------

TAGS = {"BF16": "bfloat16", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2"}
NUMPY = {"F16": "<f2", "F32": "<f4", "F64": "<f8", "U8": "u1", "I8": "i1",
         "I32": "<i4", "I64": "<i8"}


def h5_type(h5py, dtype):
    """The HDF5 type docs/shards.md gives a safetensors dtype."""
    if dtype in TAGS:
        t = h5py.h5t.create(h5py.h5t.OPAQUE, SIZES[dtype])
        t.set_tag(TAGS[dtype].encode())
        return t
    return h5py.h5t.py_create(np.dtype(NUMPY[dtype]))


def h5py_shards(a):
    import h5py
    ck = read_checkpoint(a.ckpt)
    rx = pattern_re("model.layers.{layer}.mlp.experts.{expert}.{name}")
    found = {}
    for k in ck:
        m = rx.fullmatch(k)
        if m and "shared" not in k:
            found.setdefault(m["name"], set()).add((int(m["layer"]), int(m["expert"])))
    layers = sorted({l for s in found.values() for l, _ in s})
    E = 1 + max(e for s in found.values() for _, e in s)
    R, P = a.ranks, a.slots
    os.makedirs(a.dir, exist_ok=True)
    for r in range(R):
        with h5py.File(os.path.join(a.dir, f"shard_{r:05d}.h5"), "w") as f:
            # a fixed-length ASCII string: the C reader of this tree reads
            # those (and h5py reads them back as bytes)
            f.attrs.update(eplb_format=np.bytes_("eplb-shard"), eplb_version=1,
                           generation=np.uint64(0), rank=r, world_size=R,
                           num_layers=len(layers))
            f["layer_ids"] = np.asarray(layers, dtype=np.int32)
            g = f.create_group("checkpoint")
            g.attrs.update(family="deepseek/qwen", num_experts=np.int32(E),
                           pattern="model.layers.{layer}.mlp.experts.{expert}.{name}")
            t = g.create_group("tensors")
            for i, l in enumerate(layers):
                lg = f.create_group(f"layers/{i}")
                ids = [(r * P + s) % E for s in range(P)]
                lg["expert_ids"] = np.asarray(ids, dtype=np.int32)
                for sfx in sorted(found):
                    name = sfx.replace(".weight_", "_").replace(".weight", "")
                    t.attrs[name] = sfx
                    dt, shape, _ = ck[f"model.layers.{l}.mlp.experts.0.{sfx}"]
                    rows = b"".join(ck[f"model.layers.{l}.mlp.experts.{e}.{sfx}"][2] for e in ids)
                    buf = np.frombuffer(rows, dtype=np.uint8).copy()
                    tid = h5_type(h5py, dt)
                    sp = h5py.h5s.create_simple((P,) + shape)
                    d = h5py.h5d.create(lg.id, name.encode(), tid, sp)
                    d.write(h5py.h5s.ALL, h5py.h5s.ALL, buf, mtype=tid)
    print(f"h5py-shards: {R} shards of {P} slots, {len(layers)} layers, {E} experts")


def check_h5(a):
    import h5py
    files = sorted(f for f in os.listdir(a.dir) if re.fullmatch(r"shard_\d{5}\.h5", f))
    for fn in files:
        with h5py.File(os.path.join(a.dir, fn), "r") as f:
            ids = list(f["layer_ids"][...])
            if ids != sorted(ids) or len(ids) != f.attrs["num_layers"]:
                sys.exit(f"check-h5: {fn}: layer_ids {ids}")
            if "{expert}" not in f["checkpoint"].attrs["pattern"]:
                sys.exit(f"check-h5: {fn}: /checkpoint pattern")
            tags = set()
            for name, d in f["layers/0"].items():
                t = d.id.get_type()
                if isinstance(t, h5py.h5t.TypeOpaqueID):
                    tags.add(t.get_tag().decode())
                    # read as raw bytes: the memory type is the file's own
                    buf = np.empty(d.shape + (t.get_size(),), dtype=np.uint8)
                    d.id.read(h5py.h5s.ALL, h5py.h5s.ALL, buf, mtype=t)
                if name != "expert_ids" and name not in f["checkpoint/tensors"].attrs:
                    sys.exit(f"check-h5: {fn}: no /checkpoint/tensors/{name}")
            if not set(a.tags) <= tags:
                sys.exit(f"check-h5: {fn}: opaque tags {sorted(tags)}, want {a.tags}")
    print(f"check-h5: {len(files)} shards keep layer_ids, /checkpoint and {sorted(a.tags)}")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write")
    w.add_argument("dir")
    w.add_argument("--family", default="deepseek",
                   choices=["deepseek", "qwen", "mixtral", "custom"])
    w.add_argument("--dtype", default="bf16", choices=["bf16", "fp8", "f16", "f32"])
    w.add_argument("--layers", type=int, default=4)
    w.add_argument("--first-moe", type=int, default=0)
    w.add_argument("--experts", type=int, default=8)
    w.add_argument("--hidden", type=int, default=16)
    w.add_argument("--inter", type=int, default=8)
    w.add_argument("--files", type=int, default=3)
    w.add_argument("--no-index", action="store_true")
    w.add_argument("--seed", type=int, default=1)
    w.add_argument("--defect", choices=["truncate", "offsets", "missing", "shape",
                                        "duplicate", "index-duplicate", "index-missing"])
    c = sub.add_parser("compare")
    c.add_argument("orig")
    c.add_argument("out")
    r = sub.add_parser("check-ranks")
    r.add_argument("orig")
    r.add_argument("out")
    r.add_argument("pattern")
    h = sub.add_parser("h5py-shards")
    h.add_argument("dir")
    h.add_argument("ckpt")
    h.add_argument("ranks", type=int)
    h.add_argument("slots", type=int)
    k = sub.add_parser("check-h5")
    k.add_argument("dir")
    k.add_argument("tags", nargs="*")
    a = ap.parse_args()
    {"write": write_checkpoint, "compare": compare, "check-ranks": check_ranks,
     "h5py-shards": h5py_shards, "check-h5": check_h5}[a.cmd](a)


if __name__ == "__main__":
    main()

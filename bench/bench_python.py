#!/usr/bin/python3
"""bench_python.py - eplb.rebalance_experts from Python, against DeepSeek's.

For each SGLang logical_count file (default: ../shared/data/sglang_dsv3/
*.json from the project root) and each shape, times one call of
eplb.rebalance_experts with a torch tensor in and out (policy "balanced",
on one thread and on every CPU, and policy "deepseek"), and of the
reference; prints the median time per call, the speed-up, the mean
imbalance (max/mean - 1 over GPUs, averaged over layers) of each plan, and
whether eplb's "deepseek" map is the reference's.

The reference is DeepSeek's published rebalance_experts when its file is
given (--deepseek PATH/eplb.py, imported from that path; needs torch).
Without it, the reference is the numpy re-statement of DeepSeek's
algorithm in python/tests/deepseek_ref.py: same maps, but a plain Python
loop, so its time says nothing about DeepSeek's speed - the table says so.

    PYTHONPATH=build/python /usr/bin/python3 bench/bench_python.py
    /usr/bin/python3 bench/bench_python.py --deepseek ~/EPLB/eplb.py --reps 50

Prints figures; asserts nothing (timing targets live in docs, not tests).
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (label, num_replicas, num_groups, num_nodes, num_gpus)
SHAPES = [("288/36", 288, 8, 1, 36), ("256/32", 256, 8, 1, 32),
          ("288/36 4 nodes", 288, 8, 4, 36)]


FASTEST = False  # --min


def median_time(fn, reps):
    """Median (--min: fastest) seconds per call of fn, after a warm call."""
    fn()  # warm: threads started, pages touched
    t = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        t.append(time.perf_counter() - t0)
    return min(t) if FASTEST else statistics.median(t)


def load_reference(path):
    if path:
        spec = importlib.util.spec_from_file_location("deepseek_eplb", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod.rebalance_experts, "DeepSeek's rebalance_experts (%s)" % path
    sys.path.insert(0, os.path.join(ROOT, "python", "tests"))
    import deepseek_ref
    import numpy as np

    def ref(weight, R, K, N, G):
        return (deepseek_ref.plan(np.asarray(weight), R, K, N, G),)
    return ref, ("python/tests/deepseek_ref.py, the numpy re-statement of "
                 "DeepSeek's algorithm (DeepSeek's file not given: --deepseek "
                 "PATH); same maps, but its time is a Python loop's, not "
                 "DeepSeek's")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="*", help="SGLang logical_count JSON files")
    ap.add_argument("--deepseek", metavar="PATH", help="DeepSeek's eplb.py")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"),
                    help="build tree whose python/ to import (default build)")
    ap.add_argument("--reps", type=int, default=20, help="timed eplb calls, 1..10000")
    ap.add_argument("--ref-reps", type=int, default=3,
                    help="timed reference calls, 1..1000")
    ap.add_argument("--min", action="store_true",
                    help="the fastest call instead of the median (steadier on "
                         "a shared machine)")
    args = ap.parse_args()
    global FASTEST
    FASTEST = args.min
    if not 1 <= args.reps <= 10000 or not 1 <= args.ref_reps <= 1000:
        ap.error("--reps 1..10000, --ref-reps 1..1000")
    sys.path.insert(0, os.path.join(args.build, "python"))
    import numpy as np
    import torch
    import eplb

    files = args.files or sorted(glob.glob(os.path.join(
        ROOT, "..", "shared", "data", "sglang_dsv3", "*.json")))
    if not files:
        ap.error("no statistics: pass SGLang logical_count files")
    ref, ref_name = load_reference(args.deepseek)
    print("eplb %s (%s), torch %s, %d CPUs; reference: %s" % (
        eplb.library_version(), eplb.library_path(), torch.__version__,
        len(os.sched_getaffinity(0)), ref_name))
    print("times: %s ms per call (torch int64 tensor in, tensors out); "
          % ("fastest" if FASTEST else "median") +
          "imbalance: mean over layers of max/mean - 1 over GPUs; load "
          "average %.1f" % os.getloadavg()[0])
    head = ("%-24s %-15s %9s %9s %9s %9s %8s | %9s %9s %9s %s" % (
        "file", "shape", "balanced", "bal/all", "deepseek", "reference",
        "speed-up", "imb bal", "imb ds", "imb ref", "same map"))
    print(head)
    print("-" * len(head))
    for path in files:
        w = eplb.read_stats(path)  # the MoE layers (dense rows dropped)
        t = torch.from_numpy(w.astype(np.int64))
        name = os.path.basename(path)[:24]
        for label, R, K, N, G in SHAPES:
            bal = median_time(lambda: eplb.rebalance_experts(t, R, K, N, G), args.reps)
            allc = median_time(lambda: eplb.rebalance_experts(t, R, K, N, G, threads=0),
                               args.reps)
            ds = median_time(lambda: eplb.rebalance_experts(t, R, K, N, G,
                                                            policy="deepseek"), args.reps)
            rt = median_time(lambda: ref(t, R, K, N, G), args.ref_reps)
            pb = eplb.rebalance_experts(t, R, K, N, G)[0].numpy()
            pd = eplb.rebalance_experts(t, R, K, N, G, policy="deepseek")[0].numpy()
            pr = np.asarray(ref(t, R, K, N, G)[0])
            ib, idd, ir = (eplb.imbalance(p, w, G) for p in (pb, pd, pr))
            print("%-24s %-15s %9.3f %9.3f %9.3f %9.1f %7.0fx | %9.5f %9.5f %9.5f %s" % (
                name, label, bal * 1e3, allc * 1e3, ds * 1e3, rt * 1e3, rt / bal,
                ib, idd, ir, "yes" if np.array_equal(pd, pr) else "no"))
    print("speed-up: reference time / eplb balanced (one thread); 'same map': "
          "eplb's policy=\"deepseek\" map equals the reference's")


if __name__ == "__main__":
    main()

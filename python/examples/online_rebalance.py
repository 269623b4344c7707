#!/usr/bin/python3
"""A training worker that rebalances its experts in-process with eplb.

    mpirun -np 4 /usr/bin/python3 python/examples/online_rebalance.py

Every rank "trains": each step it routes tokens to experts (a few hot
experts per layer, which drift half-way through), hands its counts to the
rebalancer, and every 10 steps the ranks decide together whether to move
experts.  on_pause / on_resume stand for stopping the forward pass at a
step boundary while the experts move, and reloading the expert map.

Rank 0 prints one line per round.  At the end every rank checks that it
holds the same placement as the others and that the hooks ran in pairs;
the exit status is 0 when every check passed.

Failures: a rank whose counts are refused (--bad-counts RANK: a NaN at step
15) logs it and carries on to the next step, where every rank raises the
same eplb.Error; so does a plan copy that diverges on one rank
(EPLB_FAULT=corrupt-plan:RANK, libeplb's fault injection).  Every rank then
prints one line

    online_rebalance: rank R: DivergedError (EPLB_EDIVERGED): ...

and exits 1: no rank is left waiting.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
from mpi4py import MPI

import eplb

LAYERS, EXPERTS, SLOTS = 4, 32, 40
STEPS_PER_ROUND = 10


class Worker:
    """The consumer of the expert weights."""

    def __init__(self) -> None:
        self.paused = False
        self.pauses = self.resumes = 0
        self.expert_map = None

    def on_pause(self, next_phy2log: np.ndarray) -> None:
        self.paused = True   # a real worker finishes its step and stops here
        self.pauses += 1

    def on_resume(self, phy2log: np.ndarray) -> None:
        self.paused = False  # ... and loads the new expert map here
        self.resumes += 1
        self.expert_map = phy2log


def say(line: str) -> None:
    """One line to stderr in one write, so that mpirun does not interleave
    the ranks' lines."""
    os.write(2, (line + "\n").encode())


def route_step(rank: int, step: int, steps: int) -> np.ndarray:
    """The tokens this rank routed in one step: [layers, experts]."""
    drift = step >= steps // 2
    e = np.arange(EXPERTS)
    counts = np.empty((LAYERS, EXPERTS))
    for l in range(LAYERS):
        hot = ((e + l * 5 + (11 if drift else 0)) % EXPERTS) < 3
        counts[l] = np.where(hot, 400 + rank, 20 + (e * 7 + rank) % 13)
    return counts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=60, help="steps to train (10..10000)")
    ap.add_argument("--bad-counts", type=int, default=-1, metavar="RANK",
                    help="this rank observes a NaN count at step 15")
    ap.add_argument("--torch", action="store_true", help="counts as torch tensors")
    args = ap.parse_args()
    if not 10 <= args.steps <= 10000:
        ap.error("--steps must be in 10..10000")
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    gpus = size  # one GPU per rank: rank r holds slots r*S/G .. (r+1)*S/G-1
    if SLOTS % gpus:
        if rank == 0:
            print("online_rebalance: run it on a number of ranks dividing %d"
                  % SLOTS, file=sys.stderr)
        return 2
    torch = None
    if args.torch:
        import torch
    worker = Worker()
    rounds = rebalances = 0
    try:
        with eplb.Rebalancer(comm, LAYERS, EXPERTS, SLOTS, gpus, threshold=0.05,
                             on_pause=worker.on_pause, on_resume=worker.on_resume,
                             quiet=False) as rb:
            for step in range(args.steps):
                counts = route_step(rank, step, args.steps)
                if rank == args.bad_counts and step == 15:
                    counts[1, 2] = float("nan")
                if torch is not None:
                    counts = torch.from_numpy(counts)
                try:
                    rb.observe(counts)
                except eplb.Error as e:
                    # Kept by eplb: the next rb.step() fails on every rank.
                    say("online_rebalance: rank %d: step %d: counts refused: %s"
                        % (rank, step, e))
                if step % STEPS_PER_ROUND == STEPS_PER_ROUND - 1:
                    r = rb.step()
                    rounds += 1
                    rebalances += r.rebalanced
            final = rb.current
            generation = rb.generation
    except eplb.Error as e:
        say("online_rebalance: rank %d: %s (%s): %s" %
            (rank, type(e).__name__, e.name, e))
        # eplb agreed on the error: every rank is here, and none exits (which
        # makes mpirun kill the others) before every rank has said why.
        comm.Barrier()
        return 1
    # Checks: the same placement everywhere, hooks in pairs, rebalances at
    # the start and after the drift.
    failures = []
    maps = comm.allgather(final.tobytes())
    if any(m != maps[0] for m in maps):
        failures.append("the ranks hold different placements")
    if worker.pauses != worker.resumes or worker.pauses != rebalances:
        failures.append("%d pauses, %d resumes, %d rebalances" %
                        (worker.pauses, worker.resumes, rebalances))
    if worker.expert_map is not None and not np.array_equal(worker.expert_map, final):
        failures.append("on_resume saw another placement than the final one")
    if rebalances < 2 or generation != rebalances:
        failures.append("%d rebalances, generation %d: expected one at the "
                        "start and one after the drift" % (rebalances, generation))
    for f in failures:
        say("online_rebalance: rank %d: check failed: %s" % (rank, f))
    bad = comm.allreduce(len(failures))
    if rank == 0:
        print("online_rebalance: %d ranks, %d rounds, %d rebalances, generation "
              "%d, %d failed checks" % (size, rounds, rebalances, generation, bad),
              flush=True)
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

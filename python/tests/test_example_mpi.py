"""python/examples/online_rebalance.py under `mpiexec -n 4`: it runs and
checks itself; and with a fault on one rank - a plan copy corrupted there
(EPLB_FAULT=corrupt-plan:2), or counts refused there (--bad-counts 3) -
every rank ends with the same exception, named on one line, and the job
ends (bounded by `timeout`): no rank hangs."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys


from conftest import HERE, env_path, need

EXAMPLE = os.path.join(os.path.dirname(HERE), "examples", "online_rebalance.py")
NP = 4


def launch(*args, env_extra=None, timeout=90):
    need("mpi4py")
    mpiexec = env_path("EPLB_MPIEXEC")
    pre = shlex.split(os.environ.get("EPLB_MPIEXEC_PREFLAGS", ""))
    env = dict(os.environ)
    env.update(env_extra or {})
    exports = []
    for k in ("PYTHONPATH", "EPLB_LIBRARY", "EPLB_FAULT", "LD_PRELOAD",
              "ASAN_OPTIONS", "UBSAN_OPTIONS"):
        if k in env:
            exports += ["-x", "%s=%s" % (k, env[k])]
    # mpiexec itself is not instrumented: the preload is for the ranks only.
    env.pop("LD_PRELOAD", None)
    cmd = (["timeout", "-k", "5", str(timeout), mpiexec, "-n", str(NP)] + pre +
           exports + [sys.executable, EXAMPLE] + list(args))
    p = subprocess.run(cmd, env=env, capture_output=True, text=True,
                       timeout=timeout + 15)
    assert p.returncode != 124, "the job hung:\n%s\n%s" % (p.stdout, p.stderr)
    return p


def test_the_example_runs():
    p = launch()
    assert p.returncode == 0, p.stdout + p.stderr
    assert re.search(r"online_rebalance: 4 ranks, 6 rounds, \d+ rebalances, "
                     r"generation \d+, 0 failed checks", p.stdout), p.stdout
    assert "rebalanced to generation 1" in p.stdout


def same_error_on_every_rank(p, cls, words):
    assert p.returncode != 0
    lines = re.findall(r"online_rebalance: rank (\d+): (\w+) \((EPLB_E\w+)\): (.*)",
                       p.stderr)
    ranks = sorted(int(r) for r, *_ in lines)
    assert ranks == list(range(NP)), p.stdout + p.stderr
    assert len({(c, n, m) for _, c, n, m in lines}) == 1, p.stderr
    _, c, n, m = lines[0]
    assert c == cls and words in m, p.stderr


def test_a_diverged_plan_copy_ends_every_rank():
    p = launch(env_extra={"EPLB_FAULT": "corrupt-plan:2"})
    same_error_on_every_rank(p, "DivergedError", "diverged on ranks 2")


def test_counts_refused_on_one_rank_end_every_rank():
    p = launch("--bad-counts", "3")
    same_error_on_every_rank(p, "CountError", "rank 3: counts[1, 2] = nan")
    assert "rank 3: step 15: counts refused" in p.stderr

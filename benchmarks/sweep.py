"""``python -m benchmarks.sweep``: throughput of a sweep (tasks per second) on 1 vs 2 local workers.

The sweep: 12 limit solves (two hidden layers, 32-node Gaussian-trapezoid rules, RK4,
``--steps`` steps each) over ξ × activation × dt, run by :func:`mfpde.sweep.run` into a fresh
directory each time.  Two ``LocalCluster`` s (1 and 2 worker processes, one thread and one
Numba thread each) are started and warmed (imports and the Numba cache loaded in every worker)
before timing, then timed alternately, 1, 2, 2, 1, 1, 2, … so load changes on a shared
machine hit both alike.  Throughput = tasks / (first submission → last result), the
``Report.seconds`` of the sweep (validation and collection excluded); the ratio is the median of
the per-round ratios 2-worker / 1-worker throughput (ideal: 2 on two free cores).
Standalone (not part of ``python -m benchmarks``).  Imports mfpde, dask, distributed.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

BASE = """\
name = "bench"
seed = 0
[model]
input_dim = 1
hidden = ["tanh", "tanh"]
[rules]
default = {{ kind = "gaussian_trapezoid", size = 32 }}
[init]
W_2 = 0.5
[data.train]
kind = "teacher"
d = 1
teacher = {{ kind = "single_index_tanh", direction = [1.0], scale = 2.0 }}
rule = {{ kind = "gauss_hermite", size = 32 }}
[probes]
kind = "grid"
low = -2.0
high = 2.0
size = 9
[solver]
stepper = "rk4"
dt = {dt}
t_end = {t_end}
save_every = {save}
[output]
parameters = "final"
"""


def make_sweep(steps: int):
    from mfpde import sweep

    dt = 0.001
    t_end = steps * dt
    raw = {
        "name": "bench", "mode": "cross", "task": "solve",
        "base": _toml(BASE.format(dt=dt, t_end=t_end, save=t_end / 4)),
        "axis": [{"key": "schedules.weights", "name": "xi", "values": [0.5, 1.0, 2.0]},
                 {"key": "model.hidden", "name": "activation", "values": [["tanh", "tanh"], ["relu", "relu"]]},
                 # a third axis that leaves the cost of a task unchanged
                 {"key": "data.train.teacher.scale", "values": [1.0, 2.0]}],
    }
    return sweep.from_dict(raw, source="benchmark")


def _toml(text: str) -> dict:
    import tomllib

    return tomllib.loads(text)


def _warm() -> int:
    """Import mfpde and load the solve kernels in a worker (not timed)."""
    import tomllib

    from mfpde import solvers

    from mfpde.problem import config
    from mfpde.system.system import System

    c = config.from_dict(tomllib.loads(BASE.format(dt=0.01, t_end=0.02, save=0.01)))
    system = System(c.problem)
    solvers.integrate(system, solvers.make("rk4", system, dt=0.01), 0.02)
    return os.getpid()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.sweep", description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5, help="timed sweeps per worker count (default 5)")
    p.add_argument("--steps", type=int, default=2000, help="RK4 steps per task (default 2000)")
    p.add_argument("--json", metavar="OUT.json", help="write the numbers to this file")
    args = p.parse_args(argv)

    from benchmarks import common
    from mfpde import sweep

    log = lambda msg: print(msg, file=sys.stderr, flush=True)
    sw = make_sweep(args.steps)
    n = len(sw.tasks)
    counts = (1, 2)
    rates: dict[int, list[float]] = {k: [] for k in counts}
    start = time.perf_counter()
    loadavg_start = list(os.getloadavg())
    with sweep.open_client(workers=1) as c1, sweep.open_client(workers=2) as c2:
        clients = {1: c1, 2: c2}
        for k, c in clients.items():
            c.wait_for_workers(k)
            c.run(_warm)
            log(f"warmed {k} worker(s)")
        _one(sw, c1)          # an untimed sweep on each: first-touch costs inside the workers
        _one(sw, c2)
        for r in range(args.repeats):
            for k in (counts if r % 2 == 0 else counts[::-1]):
                secs = _one(sw, clients[k])
                rates[k].append(n / secs)
                log(f"round {r}: {k} worker(s): {n} tasks in {secs:.2f} s = {n / secs:.2f} tasks/s")
    ratio = common.median_ratio(rates[2], rates[1])
    lo, hi = common.spread(rates[2], rates[1])
    result = {"tasks": n, "steps_per_task": args.steps, "repeats": args.repeats,
              "tasks_per_s": {str(k): rates[k] for k in counts},
              "median_tasks_per_s": {str(k): float(np.median(rates[k])) for k in counts},
              "ratio_2_over_1": ratio, "ratio_iqr": [lo, hi], "cpus_usable": sweep.cores(),
              "loadavg_start": loadavg_start, "loadavg_end": list(os.getloadavg()),
              "wall_s": time.perf_counter() - start}
    print(f"sweep throughput: {n} limit solves ({args.steps} RK4 steps each, 32-node rules), "
          f"median of {args.repeats} alternating rounds; {result['cpus_usable']} usable CPUs, "
          f"load average {loadavg_start[0]:.2f} at start")
    print(common.table(["workers", "tasks/s (median)", "min", "max"],
                       [[str(k), f"{np.median(rates[k]):.2f}", f"{min(rates[k]):.2f}", f"{max(rates[k]):.2f}"]
                        for k in counts]))
    print(f"throughput ratio 2 workers / 1 worker: {ratio:.2f} (interquartile range of the per-round ratios "
          f"{lo:.2f}–{hi:.2f}; ideal 2.0 on two free cores)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {args.json}")
    return 0


def _one(sw, client) -> float:
    from mfpde import sweep

    with tempfile.TemporaryDirectory(prefix="mfpde-sweep-bench-") as d:
        rep = sweep.run(sw, d, client=client, progress=False, say=lambda *a: None)
        if rep.failed or rep.done != len(sw.tasks):
            raise RuntimeError(f"benchmark sweep incomplete: {rep}")
        return rep.seconds


if __name__ == "__main__":
    sys.exit(main())

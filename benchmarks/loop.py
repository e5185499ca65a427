"""Compiled time loop against Python loops: what advancing many steps per call buys.

A small problem (d = 1 two-layer teacher, M = 32 training points, two tanh layers on
Gauss–Hermite rules with Q = 16 or 32 nodes) is advanced with RK4 three ways, interleaved:

* ``compiled``   — ``make("rk4", system, dt).advance(y, t, t + n dt, n)``: n steps in one call;
* ``py_ref``     — the same RK4 as a Python loop over ``System.rhs_reference`` (numpy);
* ``py_rhs``     — the same Python loop calling the compiled ``System.rhs`` per stage
  (preallocated stage buffers), which isolates the per-call overhead.

Reported: time per step of each loop as a ratio to the compiled loop (target: py_ref ≥ 10×).
All three are checked to give the same state after the same steps.  Imports numpy, mfpde.
"""
from __future__ import annotations

import time

import numpy as np

from benchmarks.common import interleaved, median_ratio, spread
from mfpde.problem import embedding as E
from mfpde.problem import quadrature as qd
from mfpde.problem.data import GaussianTeacherLaw, TwoLayerTeacher
from mfpde.problem.model import Embedding, Model, Problem, Schedules
from mfpde.solvers import make
from mfpde.system.system import System

M = 32
SIZES = (16, 32)
DT = 1e-3
TARGET = 10.0         # py_ref / compiled asked for


def build_system(Q: int, seed: int = 0) -> System:
    """d = 1 teacher problem: two tanh layers on Gauss–Hermite rules with Q nodes each."""
    law = GaussianTeacherLaw(1, TwoLayerTeacher(1, width=4, seed=seed))
    train = law.sample(np.random.default_rng(seed), M)
    emb = Embedding((qd.gauss_hermite(Q), qd.gauss_hermite(Q)), E.coordinate(),
                    (E.kernel(0.0, 1.0, "tanh"),), E.coordinate())
    return System(Problem(Model(1, ("tanh", "tanh")), emb, Schedules.constant(2), train, name=f"bench_loop_Q{Q}"))


def python_rk4(f, y: np.ndarray, t: float, dt: float, n: int) -> np.ndarray:
    """n classical RK4 steps in Python; f(t, y) returns the drift (a new array)."""
    for i in range(n):
        tn = t + i * dt
        k1 = f(tn, y)
        k2 = f(tn + 0.5 * dt, y + 0.5 * dt * k1)
        k3 = f(tn + 0.5 * dt, y + 0.5 * dt * k2)
        k4 = f(tn + dt, y + dt * k3)
        y = y + (dt / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
    return y


def python_rk4_inplace(rhs, y: np.ndarray, t: float, dt: float, n: int, k: np.ndarray, tmp: np.ndarray) -> None:
    """n RK4 steps in Python over an in-place rhs(t, y, dy); k is [4, N], tmp is [N]."""
    for i in range(n):
        tn = t + i * dt
        rhs(tn, y, k[0])
        np.multiply(k[0], 0.5 * dt, out=tmp)
        tmp += y
        rhs(tn + 0.5 * dt, tmp, k[1])
        np.multiply(k[1], 0.5 * dt, out=tmp)
        tmp += y
        rhs(tn + 0.5 * dt, tmp, k[2])
        np.multiply(k[2], dt, out=tmp)
        tmp += y
        rhs(tn + dt, tmp, k[3])
        k[1] += k[2]
        k[1] *= 2.0
        k[0] += k[1]
        k[0] += k[3]
        k[0] *= dt / 6.0
        y += k[0]


def measure(Q: int, repeats: int, target: float) -> dict:
    system = build_system(Q)
    stepper = make("rk4", system, dt=DT)
    y0 = system.y0
    N = y0.size
    k = np.empty((4, N))
    tmp = np.empty(N)

    # the three loops agree (same tableau, same stage times)
    n_check = 20
    ya = y0.copy()
    stepper.advance(ya, 0.0, n_check * DT, n_check)
    yb = python_rk4(system.rhs_reference, y0.copy(), 0.0, DT, n_check)
    yc = y0.copy()
    python_rk4_inplace(system.rhs, yc, 0.0, DT, n_check, k, tmp)
    scale = np.max(np.abs(ya))
    for name, other in (("py_ref", yb), ("py_rhs", yc)):
        if not np.max(np.abs(other - ya)) <= 1e-10 * scale:
            raise AssertionError(f"{name} loop disagrees with the compiled loop at Q={Q}")

    # each sample runs n steps (n calibrated per loop so a sample lasts ~target seconds)
    y_comp = y0.copy()
    y_rhs = y0.copy()

    def compiled(n):
        y_comp[:] = y0
        stepper.advance(y_comp, 0.0, n * DT, n)

    def py_ref(n):
        python_rk4(system.rhs_reference, y0, 0.0, DT, n)

    def py_rhs(n):
        y_rhs[:] = y0
        python_rk4_inplace(system.rhs, y_rhs, 0.0, DT, n, k, tmp)

    per_step = interleaved({"compiled": compiled, "py_ref": py_ref, "py_rhs": py_rhs}, repeats, target)
    return {
        "Q": Q, "M": M, "d": 1, "dt": DT, "state_size": int(N),
        "py_ref_over_compiled": median_ratio(per_step["py_ref"], per_step["compiled"]),
        "py_ref_over_compiled_iqr": list(spread(per_step["py_ref"], per_step["compiled"])),
        "py_rhs_over_compiled": median_ratio(per_step["py_rhs"], per_step["compiled"]),
        "py_rhs_over_compiled_iqr": list(spread(per_step["py_rhs"], per_step["compiled"])),
        "py_ref_over_py_rhs": median_ratio(per_step["py_ref"], per_step["py_rhs"]),
        "median_step_s": {k_: float(np.median(v)) for k_, v in per_step.items()},
        "repeats": repeats,
    }


def run(quick: bool = False, sizes=SIZES, log=print) -> list[dict]:
    repeats, target = (5, 0.02) if quick else (15, 0.1)
    rows = []
    for Q in sizes:
        t0 = time.perf_counter()
        row = measure(Q, repeats, target)
        log(f"  loop Q={Q}: python/compiled {row['py_ref_over_compiled']:.1f}x ({time.perf_counter() - t0:.0f} s)")
        rows.append(row)
    return rows


def format_rows(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    headers = ["Q per layer", "state size", "py_ref / compiled (IQR)", "target",
               "py_rhs / compiled (IQR)", "py_ref / py_rhs"]
    out = []
    for r in rows:
        a, b = r["py_ref_over_compiled_iqr"], r["py_rhs_over_compiled_iqr"]
        goal = "met" if r["py_ref_over_compiled"] >= TARGET else "MISSED"
        out.append([str(r["Q"]), str(r["state_size"]),
                    f"{r['py_ref_over_compiled']:.1f}x ({a[0]:.1f}–{a[1]:.1f})", f"≥{TARGET:.0f}x {goal}",
                    f"{r['py_rhs_over_compiled']:.1f}x ({b[0]:.1f}–{b[1]:.1f})",
                    f"{r['py_ref_over_py_rhs']:.2f}x"])
    return headers, out

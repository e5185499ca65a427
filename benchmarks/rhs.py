"""RHS throughput: ``System.rhs`` against numpy GEMM, measured in the same loop.

The system is two hidden tanh layers (d = 8 inputs, M = 256 training points from
``finite_set``, K = 1 output) on Monte-Carlo or Gauss–Hermite rules with Q nodes per layer.
One right-hand side needs these dense products (ω-scaling and φ, φ' are elementwise):

* forward  X·w_1ᵀ (2 M d Q1), S_1·W_2 (2 M Q1 Q2), S_2·v (2 M Q2 K);
* backward G_out·vᵀ (2 M Q2 K), δ_2ω·W_2ᵀ (2 M Q2 Q1);
* drifts   A_2ᵀ·G_out (2 M Q2 K), A_1ᵀ·P_2 (2 M Q1 Q2), P_1ᵀ·X (2 M Q1 d).

Its GFLOP/s (flops above / time of ``System.rhs(t, y, dy)`` with a preallocated ``dy``)
divided by the GFLOP/s of numpy's ``np.dot(S, B, out=C)`` on [M, Q]×[Q, Q] is the
*efficiency*: 1 means the RHS runs at GEMM speed.  The breakdown gives the time of
``kernels.forward``, ``kernels.output_loss`` and ``kernels.backward_drift`` (repeated inside
compiled loops, so without Python call costs) and of the call from Python itself, as
fractions of the ``System.rhs`` time; they add up to 1.  Imports numpy, mfpde.
"""
from __future__ import annotations

import time

import numpy as np

from benchmarks.common import interleaved, median_ratio, repeat
from mfpde.problem import embedding as E
from mfpde.system import kernels
from mfpde.problem import quadrature as qd
from mfpde._jit import njit
from mfpde.problem.data import TwoLayerTeacher, finite_set
from mfpde.problem.model import Embedding, Model, Problem, Schedules
from mfpde.system.system import System

D, M, K = 8, 256, 1
SIZES = (32, 256, 1024, 2048)
QUICK_SIZES = (32, 256, 1024)
TARGET = 0.7          # efficiency asked for at Q >= 1024


def build_system(Q: int, rule: str = "monte_carlo", seed: int = 0) -> System:
    """The benchmark system: two tanh layers with Q nodes each, d = 8, M = 256, K = 1."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((M, D))
    Y = TwoLayerTeacher(D, width=4, seed=seed)(X)
    if rule == "monte_carlo":
        rules = (qd.monte_carlo(Q, D, seed=seed + 1), qd.monte_carlo(Q, 1, seed=seed + 2))
        w_1 = E.affine(0.0, 1.0 / np.sqrt(D))             # w_1(c) = c/√d, c ~ N(0, I_d)
    elif rule == "gauss_hermite":
        rules = (qd.gauss_hermite(Q), qd.gauss_hermite(Q))
        u = rng.standard_normal(D) / np.sqrt(D)
        w_1 = E.python(lambda c: np.outer(c[:, 0], u))      # w_1(c) = c u on a 1-D index space
    else:
        raise ValueError(f"unknown rule {rule!r}; use monte_carlo or gauss_hermite")
    A = rng.standard_normal((1, rules[0].dim)) / np.sqrt(rules[0].dim)
    emb = Embedding(rules, w_1, (E.kernel(0.0, 1.0, "tanh", A),), E.coordinate())
    problem = Problem(Model(D, ("tanh", "tanh"), outputs=K), emb, Schedules.constant(2),
                      finite_set(X, Y), name=f"bench_rhs_Q{Q}")
    return System(problem)


def rhs_flops(Q1: int, Q2: int, d: int = D, m: int = M, k: int = K) -> int:
    """Flops of the dense products of one RHS (see the module docstring)."""
    return 2 * m * (d * Q1 + Q1 * Q2 + Q2 * k) + 2 * m * (Q2 * k + Q2 * Q1) + 2 * m * (Q2 * k + Q1 * Q2 + Q1 * d)


@njit(cache=False)
def _loop_rhs(n, t, y, dy, sysargs):
    for _ in range(n):
        kernels.rhs(t, y, dy, sysargs)


@njit(cache=False)
def _loop_forward(n, y, sysargs):
    for _ in range(n):
        kernels.forward(y, sysargs)


@njit(cache=False)
def _loop_forward_output(n, y, sysargs):
    for _ in range(n):
        kernels.forward(y, sysargs)
        kernels.output_loss(sysargs)


@njit(cache=False)
def _loop_gemm(n, S, B, C):
    for _ in range(n):
        np.dot(S, B, C)


def measure(Q: int, repeats: int, target: float, rule: str = "monte_carlo") -> dict:
    """Interleaved timings at size Q: System.rhs, numpy GEMM, and the kernels inside compiled loops.

    The breakdown runs n repetitions inside compiled code (no Python call per repetition):
    ``forward`` alone, ``forward + output_loss``, and the whole ``kernels.rhs``; differences
    give each kernel's time, and System.rhs minus the compiled kernels.rhs is the cost of
    one call from Python (argument checks and unboxing of ``sysargs``).
    """
    system = build_system(Q, rule)
    y = system.y0.copy()
    dy = np.empty_like(y)
    args = system.sysargs
    rng = np.random.default_rng(1)
    S = rng.standard_normal((M, Q))
    B = rng.standard_normal((Q, Q)) / np.sqrt(Q)
    C = np.empty((M, Q))
    t = 0.0
    fns = {
        "rhs": repeat(lambda: system.rhs(t, y, dy)),
        "gemm": repeat(lambda: np.dot(S, B, out=C)),
        "compiled_rhs": lambda n: _loop_rhs(n, t, y, dy, args),
        "forward": lambda n: _loop_forward(n, y, args),
        "forward_output": lambda n: _loop_forward_output(n, y, args),
        "gemm_numba": lambda n: _loop_gemm(n, S, B, C),
    }
    times = interleaved(fns, repeats, target)
    T = {k: np.asarray(v) for k, v in times.items()}
    flops = rhs_flops(Q, Q)
    gemm_flops = 2 * M * Q * Q
    eff = (flops / T["rhs"]) / (gemm_flops / T["gemm"])          # per round, same load
    parts = {                                                      # per round, as fractions of System.rhs
        "forward": T["forward"] / T["rhs"],
        "output_loss": (T["forward_output"] - T["forward"]) / T["rhs"],
        "backward_drift": (T["compiled_rhs"] - T["forward_output"]) / T["rhs"],
        "call_overhead": (T["rhs"] - T["compiled_rhs"]) / T["rhs"],
    }
    med = {k: float(np.median(v)) for k, v in T.items()}
    return {
        "Q": Q, "rule": rule, "M": M, "d": D, "K": K,
        "rhs_flops": flops, "gemm_flops": gemm_flops,
        "efficiency": float(np.median(eff)),
        "efficiency_iqr": [float(x) for x in np.percentile(eff, [25, 75])],
        "efficiency_compiled": float(np.median((flops / T["compiled_rhs"]) / (gemm_flops / T["gemm"]))),
        "rhs_gflops": flops / med["rhs"] / 1e9,
        "gemm_gflops": gemm_flops / med["gemm"] / 1e9,
        "gemm_numba_over_numpy_speed": median_ratio(times["gemm"], times["gemm_numba"]),
        "fractions": {k: float(np.median(v)) for k, v in parts.items()},
        "median_s": med,
        "repeats": repeats,
    }


def run(quick: bool = False, sizes=None, rule: str = "monte_carlo", log=print) -> list[dict]:
    """Measure every size; ``quick``: 5 rounds of ~20 ms samples on QUICK_SIZES, else 15 of ~100 ms on SIZES."""
    repeats, target = (5, 0.02) if quick else (15, 0.1)
    sizes = sizes or (QUICK_SIZES if quick else SIZES)
    rows = []
    for Q in sizes:
        t0 = time.perf_counter()
        row = measure(Q, repeats, target, rule)
        log(f"  rhs Q={Q}: efficiency {row['efficiency']:.2f} ({time.perf_counter() - t0:.0f} s)")
        rows.append(row)
    return rows


def format_rows(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    headers = ["Q per layer", "RHS GFLOP/s", "GEMM GFLOP/s", "efficiency (IQR)", "target",
               "forward", "output_loss", "backward_drift", "call from Python"]
    out = []
    for r in rows:
        f = r["fractions"]
        lo, hi = r["efficiency_iqr"]
        goal = f"≥{TARGET} " + ("met" if r["efficiency"] >= TARGET else "MISSED") if r["Q"] >= 1024 else "-"
        out.append([str(r["Q"]), f"{r['rhs_gflops']:.1f}", f"{r['gemm_gflops']:.1f}",
                    f"{r['efficiency']:.2f} ({lo:.2f}–{hi:.2f})", goal,
                    f"{f['forward']:.0%}", f"{f['output_loss']:.0%}", f"{f['backward_drift']:.0%}",
                    f"{f['call_overhead']:.0%}"])
    return headers, out

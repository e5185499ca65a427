"""The φ/φ' pass against the machine's streaming limit, per element.

``mfpde.problem.activations.pair_block(code, h, a, p, fns)`` writes a[i] = φ(h[i]) and
p[i] = φ'(h[i]) — the elementwise pass each hidden layer makes over its [M, Q]
pre-activations.  It is timed for every built-in activation (tanh, sigmoid, erf, softplus,
gelu, relu) on N ≈ 3.3·10⁶ doubles (26 MB per array: far beyond the caches, as in the RHS of
a large problem; 64-byte aligned, as the kernels' work buffer), against a compiled streaming
multiply–add over the same arrays, a[i] = h[i]·c + d, p[i] = h[i]·e (one read and two writes
per element, like the pass itself: the memory-bound floor), in the same interleaved loop,
single-threaded.  Reported: ns per element of each, and pair_block ÷ multiply–add as the
median of per-round ratios (issue 15's target: ≤ 2).  Each activation's output is first
checked against its numpy reference (``Activation.pair``) to 1e-12 relative.  Imports numpy,
mfpde.
"""
from __future__ import annotations

import time

import numpy as np

from benchmarks.common import interleaved, limit_threads, median_ratio, spread
from mfpde._jit import njit

N = 3_300_000
QUICK_N = 1_100_000
NAMES = ("tanh", "sigmoid", "erf", "softplus", "gelu", "relu")
TARGET = 2.0


@njit(cache=False)
def _madd(reps, h, a, p, c, d, e):
    """``reps`` streaming passes a[i] = h[i]·c + d, p[i] = h[i]·e."""
    for _ in range(reps):
        for i in range(h.shape[0]):
            x = h[i]
            a[i] = x * c + d
            p[i] = x * e


def available() -> bool:
    from mfpde.problem import activations

    return hasattr(activations, "pair_block")


def run(quick: bool = False, log=print) -> list[dict]:
    """One row per activation (plus the baseline's own ns/element); [] when this mfpde has no
    ``pair_block``.  ``quick``: 1.1·10⁶ elements, 3 rounds of ~20 ms; else 3.3·10⁶, 9 of ~0.1 s."""
    from mfpde.problem import activations

    if not available():
        return []
    n = QUICK_N if quick else N
    repeats, target = (3, 0.02) if quick else (9, 0.1)
    rng = np.random.default_rng(7)
    from mfpde.system.system import aligned_empty

    # 64-byte aligned like the kernels' work buffer (numpy aligns large arrays to 16 bytes only)
    h, a, p = aligned_empty(n), aligned_empty(n), aligned_empty(n)
    h[:] = 4.0 * rng.standard_normal(n)       # pre-activations of unit-to-large scale, both signs
    fns = activations.user_functions()
    # each activation computes what its numpy reference does (so the pass does the real work)
    k = 20_000
    for name in NAMES:
        act = activations.get(name)
        activations.pair_block(act.code, h[:k].copy(), a[:k], p[:k], fns)
        ra, rp = act.pair(h[:k])
        for what, got, ref in (("φ", a[:k], ra), ("φ'", p[:k], rp)):
            if not np.allclose(got, ref, rtol=1e-12, atol=1e-14):
                raise AssertionError(f"pair_block({name}) {what} differs from numpy by "
                                     f"{np.max(np.abs(got - ref)):.2e}")

    def block(code):
        def fn(reps: int) -> None:
            for _ in range(reps):
                activations.pair_block(code, h, a, p, fns)
        return fn

    fnsd = {name: block(activations.get(name).code) for name in NAMES}
    fnsd["madd"] = lambda reps: _madd(reps, h, a, p, 1.5, 0.25, 0.75)
    t0 = time.perf_counter()
    with limit_threads(1):
        T = interleaved(fnsd, repeats, target)
    base = np.asarray(T["madd"])
    rows = []
    for name in NAMES:
        ratio = median_ratio(T[name], T["madd"])
        rows.append({"activation": name, "n": n, "repeats": repeats,
                     "ns_per_element": 1e9 * float(np.median(T[name])) / n,
                     "madd_ns_per_element": 1e9 * float(np.median(base)) / n,
                     "over_madd": ratio, "over_madd_iqr": list(spread(T[name], T["madd"])), "target": TARGET})
    summary = ", ".join(f"{r['activation']} {r['over_madd']:.1f}x" for r in rows)
    log(f"  φ/φ' pass: {summary} ({time.perf_counter() - t0:.0f} s)")
    return rows


def format_rows(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    headers = ["activation", "pair_block ns/element", "multiply-add ns/element", "ratio (IQR)", "target"]
    out = []
    for r in rows:
        lo, hi = r["over_madd_iqr"]
        goal = f"≤{r['target']:g} " + ("met" if r["over_madd"] <= r["target"] else "MISSED")
        out.append([r["activation"], f"{r['ns_per_element']:.2f}", f"{r['madd_ns_per_element']:.2f}",
                    f"{r['over_madd']:.1f} ({lo:.1f}–{hi:.1f})", goal])
    return headers, out

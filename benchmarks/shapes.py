"""The shapes users solve: mfpde's compiled Euler loop against the same limit in PyTorch autograd.

Three problems of issue 15, each built from a configuration (``mfpde.load`` of a table, then
``mfpde.system.System``), tanh hidden layers, squared loss, a fixed training sample from a
two-layer teacher, and an i.i.d. initialization reduced by ``[iid]`` (SPEC §4):

* ``l1`` — L = 1, d = 1, M = 200 points, ``[iid]`` trapezoid rule of 128 nodes per random
  coordinate: the index space (w_1^0, v^0) is 2-D, Q = 128² = 16 384 nodes (elementwise-bound:
  the [M, Q] passes dominate, the products are skinny);
* ``l2_mixed`` — L = 2, d = 2, M = 256, trapezoid 48 per coordinate: Q_1 = 48² (w_1^0 ∈ R²),
  Q_2 = 48 (v^0), W_2 is [2304, 48];
* ``l2_small`` — the same on Gauss–Hermite 24 per coordinate: Q_1 = 576, Q_2 = 24.

mfpde: ``make("euler", system, dt=DT).advance(y, 0, n·DT, n)`` — n explicit Euler steps in
one compiled call.  PyTorch: the same discretized limit written here (:class:`TorchLimit`):
float64 tensors of the same state on the same nodes and node weights ω, forward
h_1 = X w_1ᵀ, h_l = (φ(h_{l−1}) ω_{l−1}) W_l, ŷ = (φ(h_L) ω_L) v, loss Σ_m ρ_m ½(ŷ_m − y_m)²,
``torch.autograd.grad`` of the loss, drift = −gradient ÷ node weights (ω_p for w_1 and v,
ω_p ω_q for W_l: SPEC §2–3), explicit Euler ``p += dt·drift`` in place.  Before anything is
timed, :func:`check_agreement` asserts that the PyTorch drift equals ``System.rhs`` to 1e-10
relative at the initial state, and again (states and drifts) after a few Euler steps of both,
where every block of the drift is non-zero; a mismatch raises (the row would compare different
computations).

Each thread count (1 and 2: Numba, BLAS and PyTorch limited alike, ``common.limit_threads``)
times both in the same interleaved loop (``common.interleaved``; each sample starts from the
initial state and runs n steps, n calibrated so a sample lasts ~``target`` s) and reports the
median over rounds of mfpde time ÷ PyTorch time with its IQR.  Imports numpy, mfpde, and
PyTorch if installed (``bench`` extra); without it :func:`run` returns no rows.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from benchmarks.common import interleaved, limit_threads, median_ratio, optional_torch, spread

DT = 0.01
CHECK_STEPS = 5
RTOL = 1e-10
THREADS = (1, 2)


@dataclass(frozen=True)
class Shape:
    key: str
    L: int
    d: int
    M: int
    rule: dict
    label: str
    target: float | None      # mfpde ÷ torch asked for single-threaded (issue 15), None: no target


SHAPES = (
    Shape("l1", 1, 1, 200, {"kind": "gaussian_trapezoid", "size": 128}, "L=1 d=1 M=200 trapezoid 128x128", 0.15),
    Shape("l2_mixed", 2, 2, 256, {"kind": "gaussian_trapezoid", "size": 48}, "L=2 d=2 M=256 trapezoid 48²x48", 0.3),
    Shape("l2_small", 2, 2, 256, {"kind": "gauss_hermite", "size": 24}, "L=2 d=2 M=256 Gauss-Hermite 24²x24", None),
)


def config(shape: Shape) -> dict:
    """The configuration table of a shape (what a user would write in TOML)."""
    return {
        "name": f"bench_shape_{shape.key}",
        "model": {"input_dim": shape.d, "hidden": ["tanh"] * shape.L, "loss": "squared"},
        "iid": {"rule": dict(shape.rule)},
        "data": {"train": {"kind": "teacher", "d": shape.d, "teacher": {"kind": "two_layer", "width": 4, "seed": 0},
                           "sample": shape.M, "seed": 1}},
        "solver": {"stepper": "euler", "dt": DT, "t_end": 1.0},
    }


def build(shape: Shape):
    """(System, Euler stepper) of a shape, through the public API."""
    import mfpde
    from mfpde.solvers import make
    from mfpde.system.system import System

    system = System(mfpde.load(config(shape)).problem)
    return system, make("euler", system, dt=DT)


class TorchLimit:
    """The discretized limit of a tanh network without biases, squared loss, in PyTorch autograd.

    State: float64 tensors w_1 [Q_1, d], W_l [Q_{l−1}, Q_l], v [Q_L, K], copied from the
    System's initial state (same nodes); node weights ω_l and data (X, Y, ρ) from the System.
    """

    def __init__(self, torch, system):
        m = system.problem.model
        L = m.L
        self.names = ["w_1"] + [f"W_{l}" for l in range(2, L + 1)] + ["v"]
        V = system.views(system.y0)
        if (set(V) != set(self.names) or any(a != "tanh" for a in m.activations) or m.output_activation != "identity"
                or m.loss_spec.name != "squared"):
            raise ValueError(f"TorchLimit implements tanh layers without biases, identity output, squared loss; "
                             f"got state {sorted(V)}, {m.activations}, {m.output_activation}, {m.loss_spec.name}")
        f64 = torch.float64
        self.torch = torch
        self.init = [torch.tensor(np.array(V[k]), dtype=f64) for k in self.names]
        self.params = [p.clone().requires_grad_(True) for p in self.init]
        self.w = [torch.tensor(w, dtype=f64) for w in system.weights]
        inv = [1.0 / self.w[0][:, None]]
        inv += [1.0 / (self.w[l - 2][:, None] * self.w[l - 1][None, :]) for l in range(2, L + 1)]
        inv += [1.0 / self.w[L - 1][:, None]]
        self.inv = inv
        tr = system.problem.train
        self.X = torch.tensor(tr.X, dtype=f64)
        self.Y = torch.tensor(tr.Y, dtype=f64)
        self.rho = torch.tensor(tr.weights, dtype=f64)[:, None]

    def loss(self, params):
        torch = self.torch
        w1, Ws, v = params[0], params[1:-1], params[-1]
        a = torch.tanh(self.X @ w1.T)
        for l, W in enumerate(Ws):
            a = torch.tanh((a * self.w[l]) @ W)
        yhat = (a * self.w[-1]) @ v
        return 0.5 * (self.rho * (yhat - self.Y) ** 2).sum()

    def drift(self) -> list:
        """−∇(loss) ÷ node weights at the current state, one tensor per parameter."""
        g = self.torch.autograd.grad(self.loss(self.params), self.params)
        return [-gi * inv for gi, inv in zip(g, self.inv)]

    def steps(self, n: int, dt: float) -> None:
        """n explicit Euler steps p ← p + dt·drift, in place."""
        torch = self.torch
        for _ in range(n):
            g = torch.autograd.grad(self.loss(self.params), self.params)
            with torch.no_grad():
                for p, gi, inv in zip(self.params, g, self.inv):
                    p.addcmul_(gi, inv, value=-dt)

    def reset(self) -> None:
        with self.torch.no_grad():
            for p, p0 in zip(self.params, self.init):
                p.copy_(p0)

    def state(self) -> dict[str, np.ndarray]:
        return {k: p.detach().numpy().copy() for k, p in zip(self.names, self.params)}


def _compare(what: str, mine: dict, ref: dict, need_nonzero: bool) -> float:
    """Largest relative difference over the blocks (relative to each block's max |ref|, or to the
    largest block where a block is exactly zero); raises AssertionError above RTOL."""
    overall = max(float(np.max(np.abs(r))) for r in ref.values())
    worst = 0.0
    for k, r in ref.items():
        scale = float(np.max(np.abs(r)))
        if need_nonzero and scale == 0.0:
            raise AssertionError(f"{what}: block {k} is zero, the check would not test it")
        err = float(np.max(np.abs(np.asarray(mine[k]).reshape(r.shape) - r))) / (scale if scale > 0 else overall)
        worst = max(worst, err)
        if not err <= RTOL:
            raise AssertionError(f"{what}: PyTorch and mfpde differ on {k} by {err:.2e} relative (> {RTOL:g})")
    return worst


def check_agreement(system, stepper, tl: TorchLimit) -> dict:
    """PyTorch's drift = ``System.rhs`` at the initial state; after CHECK_STEPS Euler steps of
    both, the states and the drifts agree too (every drift block non-zero there)."""
    y = system.y0.copy()
    ref0 = system.views(system.rhs(0.0, y))
    tl.reset()
    got0 = dict(zip(tl.names, (g.numpy() for g in tl.drift())))
    e0 = _compare("drift at the initial state", got0, ref0, need_nonzero=False)
    st = stepper.advance(y, 0.0, CHECK_STEPS * DT, CHECK_STEPS)
    if st.status or st.steps != CHECK_STEPS:
        raise RuntimeError(f"mfpde Euler check run stopped: {st}")
    tl.steps(CHECK_STEPS, DT)
    es = _compare(f"state after {CHECK_STEPS} Euler steps", tl.state(), system.views(y), need_nonzero=False)
    ref1 = system.views(system.rhs(CHECK_STEPS * DT, y))
    got1 = dict(zip(tl.names, (g.numpy() for g in tl.drift())))
    e1 = _compare(f"drift after {CHECK_STEPS} Euler steps", got1, ref1, need_nonzero=True)
    tl.reset()
    return {"drift0_rel": e0, "state_rel": es, "drift_rel": e1}


def measure(shape: Shape, torch, threads, repeats: int, target: float, log=print) -> list[dict]:
    system, stepper = build(shape)
    tl = TorchLimit(torch, system)
    agree = check_agreement(system, stepper, tl)
    y0 = system.y0
    y = y0.copy()

    def mfpde_steps(n: int) -> None:
        np.copyto(y, y0)
        st = stepper.advance(y, 0.0, n * DT, n)
        if st.status or st.steps != n:
            raise RuntimeError(f"mfpde Euler run of {shape.key} stopped: {st}")

    def torch_steps(n: int) -> None:
        tl.reset()
        tl.steps(n, DT)

    sizes = [len(w) for w in system.weights]
    rows = []
    for T in threads:
        t0 = time.perf_counter()
        with limit_threads(T, torch) as used:
            numbers: dict[str, int] = {}
            S = interleaved({"mfpde": mfpde_steps, "torch": torch_steps}, repeats, target, numbers)
        row = {"key": shape.key, "label": shape.label, "L": shape.L, "d": shape.d, "M": shape.M,
               "rule": shape.rule, "Q": sizes, "state_size": int(y0.size), "dt": DT, "threads": used,
               "repeats": repeats, "steps_per_sample": numbers, "agreement": agree,
               "mfpde_over_torch": median_ratio(S["mfpde"], S["torch"]),
               "mfpde_over_torch_iqr": list(spread(S["mfpde"], S["torch"])),
               "median_step_s": {k: float(np.median(v)) for k, v in S.items()},
               "target": shape.target}
        log(f"  shape {shape.key}, {used} thread(s): mfpde / torch {row['mfpde_over_torch']:.2f} "
            f"({time.perf_counter() - t0:.0f} s)")
        rows.append(row)
    return rows


def run(quick: bool = False, threads=None, log=print) -> list[dict]:
    """Every shape at each thread count (default 1 and 2); ``quick``: 3 rounds of ~0.15 s samples,
    else 9 of ~0.5 s.  Returns [] (and logs why) without PyTorch."""
    torch = optional_torch()
    if torch is None:
        return []
    repeats, target = (3, 0.15) if quick else (9, 0.5)
    rows = []
    for shape in SHAPES:
        rows += measure(shape, torch, threads or THREADS, repeats, target, log=log)
    return rows


def format_rows(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    headers = ["problem", "Q (state size)", "threads", "steps/sample", "mfpde ms/step", "torch ms/step",
               "mfpde / torch (IQR)", "target (1 thread)", "check"]
    out = []
    for r in rows:
        lo, hi = r["mfpde_over_torch_iqr"]
        ratio = r["mfpde_over_torch"]
        goal = "-"
        if r["target"] is not None and r["threads"] == 1:
            goal = f"≤{r['target']:g} " + ("met" if ratio <= r["target"] else "MISSED")
        q = "x".join(str(x) for x in r["Q"])
        n = r["steps_per_sample"]
        worst = max(r["agreement"].values())
        out.append([r["label"], f"{q} ({r['state_size']})", str(r["threads"]), f"{n['mfpde']}/{n['torch']}",
                    f"{1e3 * r['median_step_s']['mfpde']:.2f}", f"{1e3 * r['median_step_s']['torch']:.2f}",
                    f"{ratio:.2f} ({lo:.2f}–{hi:.2f})", goal, f"{worst:.0e}"])
    return headers, out

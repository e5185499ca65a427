"""SGD engine step time against the dense products one step needs, measured in the same loop.

The network: two hidden tanh layers of equal width n, d = 16 inputs, K = 1 output, squared
loss, mean-field weights ω = 1/n (``mfpde.finite.network_problem`` on Monte-Carlo index
laws, then ``mfpde.system.System``).  SGD with batch B on online data: the batches are
pre-generated (``Xb`` [S, B, d], ``Yb`` [S, B, K] from a two-layer teacher) and
``mfpde.finite.sgd_steps`` is called directly, many steps per call, so neither sampling nor
recording is timed.

One step (explicit Euler on the batch's drift) needs these dense products:

* forward  X·w_1ᵀ [B,d]×[d,n], S_1·W_2 [B,n]×[n,n], S_2·v [B,n]×[n,1];
* backward G_out·vᵀ [B,1]×[1,n], δ_2ω·W_2ᵀ [B,n]×[n,n];
* drifts   A_2ᵀ·G_out [n,B]×[B,1], A_1ᵀ·P_2 [n,B]×[B,n], P_1ᵀ·X [n,B]×[B,d].

The baseline ``dense`` runs exactly these eight products with ``np.matmul(..., out=...)`` on
preallocated arrays of the same shapes and memory layouts (transposes are views, as in the
kernels).  ``dense_blas`` runs the same products through Numba's ``np.dot`` inside a compiled
loop: the BLAS calls the kernels themselves make, without Python in between (numpy's
``matmul`` of an [n,1]×[1,n] outer product is several times slower than OpenBLAS's GEMM, so
at B = 1 ``dense`` is not the fastest way to do these products).  Reported per (n, B), as
medians of per-round ratios:

* ``engine / dense`` — the engine's time per step over the dense products' time (target
  ≤ 1.5 at B = 256), and ``engine / dense_blas``;
* the engine step split into ``kernels.rhs`` on the batch (a compiled loop over the same
  batches, without the update) and the rest: the Euler update, its norm check and the call
  from Python;
* at B = 1: the share of the rank-1 product A_1ᵀ·P_2 in the dense time, and the per-step
  overhead (engine − dense, and engine − dense_blas) over one forward-backward of the same
  network written straightforwardly in numpy (what a PyTorch-like user loop pays per step;
  target < 1 at n = 1024).  The numpy forward-backward is checked against the compiled drift first.

Against PyTorch (:func:`run_torch`, needs the ``bench`` extra): width n = 1024, full batch on
a fixed set of 256 points, one ``sgd_steps`` step against one step of the same network
written in PyTorch as a user would (:class:`TorchSGD`: float64 leaf tensors with the same
initial weights, forward with the 1/n mean-field factors, ``loss.backward()``, then
``torch.optim.SGD`` with one parameter group per layer at the mean-field learning rates
ε·n (w_1, v) and ε·n² (W_2), SPEC §1), interleaved, at 1 and 2 threads.  One step of each from
the same state is first checked to give the same update to 1e-10 relative.  Reported:
engine ÷ PyTorch per step (median of per-round ratios, IQR).

Imports numpy, mfpde (and PyTorch in :func:`run_torch`).
"""
from __future__ import annotations

import time

import numpy as np

from benchmarks.common import interleaved, limit_threads, median_ratio, optional_torch, repeat, spread
from mfpde.problem import embedding as E
from mfpde.system import kernels
from mfpde.system.system import SysArgs
from mfpde.problem import quadrature as qd
from mfpde._jit import njit
from mfpde.problem.data import TwoLayerTeacher, finite_set
from mfpde.finite.network import network_problem
from mfpde.finite.sgd import sgd_steps
from mfpde.problem.model import Embedding, Model, Problem, Schedules
from mfpde.system.system import System

D, K = 16, 1
WIDTHS = (256, 1024, 4096)
QUICK_WIDTHS = (256, 1024)
BATCHES = (1, 256)
MAX_STEPS_PER_CALL = 200      # batches pre-generated; longer samples loop over calls
LR = 1e-3
TARGET_RATIO = 1.2            # engine / dense asked for at B = 256 (issue 15)
TARGET_OVERHEAD = 1.0         # (engine − dense) / numpy forward-backward asked for at B = 1, n = 1024
OVERHEAD_WIDTH = 1024
TORCH_WIDTH, TORCH_BATCH = 1024, 256   # the PyTorch comparison: full batch on 256 fixed points
TORCH_THREADS = (1, 2)
TORCH_RTOL = 1e-10


def build_system(n: int, seed: int = 0) -> tuple[System, TwoLayerTeacher]:
    """A width-n two-tanh-layer network (d = 16, K = 1) and the teacher that labels its data."""
    rng = np.random.default_rng(seed)
    teacher = TwoLayerTeacher(D, width=4, seed=seed)
    X = rng.standard_normal((64, D))                       # placeholder training set (unused)
    rules = (qd.monte_carlo(8, D, seed=seed + 1), qd.monte_carlo(8, 1, seed=seed + 2))
    A = rng.standard_normal((1, D)) / np.sqrt(D)
    emb = Embedding(rules, E.affine(0.0, 1.0 / np.sqrt(D)), (E.kernel(0.0, 1.0, "tanh", A),), E.coordinate())
    problem = Problem(Model(D, ("tanh", "tanh"), outputs=K), emb, Schedules.constant(2),
                      finite_set(X, teacher(X)), name=f"bench_engine_n{n}")
    net = network_problem(problem, n, np.random.default_rng(seed + 3))
    return System(net), teacher


@njit(cache=False)
def _loop_rhs_batches(n, y, dy, Xb, Yb, rho, base):
    """``kernels.rhs`` on batches 0..n-1 (sgd_steps without the update and its norm check)."""
    for k in range(n):
        args = SysArgs(base.lay, base.omega, Xb[k], Yb[k], rho, base.sched, base.sched_flat, base.lossp, base.work,
                       base.fns, base.variant)
        kernels.rhs(k * 1e-3, y, dy, args)


class DenseProducts:
    """The eight products of one step, as numpy ``matmul`` into preallocated outputs."""

    def __init__(self, n: int, B: int, seed: int = 1):
        rng = np.random.default_rng(seed)
        r = lambda *shape: rng.standard_normal(shape)
        self.X, self.w1, self.W2, self.v = r(B, D), r(n, D), r(n, n) / np.sqrt(n), r(n, K)
        self.S1, self.S2, self.A1, self.A2, self.P1, self.P2, self.D2 = (r(B, n) for _ in range(7))
        self.Gout = r(B, K)
        self.H1, self.H2, self.G2, self.G1 = (np.empty((B, n)) for _ in range(4))
        self.Hout = np.empty((B, K))
        self.dv, self.dW2, self.dw1 = np.empty((n, K)), np.empty((n, n)), np.empty((n, D))

    def __call__(self) -> None:
        mm = np.matmul
        mm(self.X, self.w1.T, out=self.H1)          # forward
        mm(self.S1, self.W2, out=self.H2)
        mm(self.S2, self.v, out=self.Hout)
        mm(self.Gout, self.v.T, out=self.G2)        # backward
        mm(self.D2, self.W2.T, out=self.G1)
        mm(self.A2.T, self.Gout, out=self.dv)       # drifts
        mm(self.A1.T, self.P2, out=self.dW2)
        mm(self.P1.T, self.X, out=self.dw1)

    def rank1(self) -> None:
        """A_1ᵀ·P_2 alone (the [n,B]×[B,n] drift product; a rank-1 update at B = 1)."""
        np.matmul(self.A1.T, self.P2, out=self.dW2)

    def blas(self, reps: int) -> None:
        """The same eight products, ``reps`` times, through Numba's ``np.dot`` in compiled code."""
        _loop_dense_blas(reps, self.X, self.w1, self.W2, self.v, self.S1, self.S2, self.Gout, self.D2,
                         self.A2, self.A1, self.P2, self.P1, self.H1, self.H2, self.Hout, self.G2, self.G1,
                         self.dv, self.dW2, self.dw1)

    def rank1_blas(self, reps: int) -> None:
        _loop_rank1_blas(reps, self.A1, self.P2, self.dW2)


@njit(cache=False)
def _loop_dense_blas(reps, X, w1, W2, v, S1, S2, Gout, D2, A2, A1, P2, P1, H1, H2, Hout, G2, G1, dv, dW2, dw1):
    for _ in range(reps):
        np.dot(X, w1.T, H1)
        np.dot(S1, W2, H2)
        np.dot(S2, v, Hout)
        np.dot(Gout, v.T, G2)
        np.dot(D2, W2.T, G1)
        np.dot(A2.T, Gout, dv)
        np.dot(A1.T, P2, dW2)
        np.dot(P1.T, X, dw1)


@njit(cache=False)
def _loop_rank1_blas(reps, A1, P2, dW2):
    for _ in range(reps):
        np.dot(A1.T, P2, dW2)


def numpy_forward_backward(w1, W2, v, x, y):
    """Forward and backward of the same network in plain numpy, written as a user would.

    Returns the drifts (−gradients with the mean-field scalings) of w_1, W_2, v for the
    batch (x, y) with weights 1/B: squared loss ½(ŷ − y)², ω = 1/n in each layer.
    """
    B, n1, n2 = x.shape[0], w1.shape[0], W2.shape[1]
    a1 = np.tanh(x @ w1.T)
    a2 = np.tanh((a1 / n1) @ W2)
    out = (a2 / n2) @ v
    g = (out - y) / B
    gv = a2.T @ g
    d2 = (g @ v.T) * (1.0 - a2 ** 2)
    gW2 = a1.T @ d2
    d1 = ((d2 / n2) @ W2.T) * (1.0 - a1 ** 2)
    gw1 = d1.T @ x
    return -gw1, -gW2, -gv


def _check_numpy(system: System, y: np.ndarray, x: np.ndarray, yy: np.ndarray, rho: np.ndarray) -> None:
    """The numpy forward-backward computes the compiled drift (so both do the same work)."""
    args = system.make_args(x, yy, rho)
    dy = np.empty_like(y)
    kernels.rhs_py(0.0, y, dy, args)
    V, dV = system.views(y), system.views(dy)
    mine = numpy_forward_backward(V["w_1"], V["W_2"], V["v"], x, yy)
    for name, got in zip(("w_1", "W_2", "v"), mine):
        ref = dV[name]
        if not np.max(np.abs(got - ref)) <= 1e-10 * max(np.max(np.abs(ref)), 1e-300):
            raise AssertionError(f"numpy forward-backward disagrees with kernels.rhs on {name}")


def measure(n: int, B: int, repeats: int, target: float) -> dict:
    """Interleaved timings at width n, batch B (see the module docstring); a sample of the
    engine is one or more ``sgd_steps`` calls of at most MAX_STEPS_PER_CALL steps."""
    system, teacher = build_system(n)
    S = MAX_STEPS_PER_CALL
    rng = np.random.default_rng(5)
    Xb = rng.standard_normal((S, B, D))
    Yb = np.ascontiguousarray(teacher(Xb.reshape(S * B, D)).reshape(S, B, K))
    rho = np.full(B, 1.0 / B)
    args = system.make_args(Xb[0], Yb[0], rho)
    y = system.y0.copy()
    dy = np.empty_like(y)
    dy2 = np.empty_like(y)
    bound2 = 1e12 ** 2

    def engine(reps: int) -> None:
        done = 0
        while done < reps:
            k = min(S, reps - done)
            status, steps = sgd_steps(y, dy, 0.0, LR, k, Xb[:k], Yb[:k], rho, args, bound2)
            if status:
                raise RuntimeError(f"engine benchmark blew up at n={n}, B={B} (status {status})")
            done += k

    def rhs_only(reps: int) -> None:
        done = 0
        while done < reps:
            k = min(S, reps - done)
            _loop_rhs_batches(k, y, dy2, Xb[:k], Yb[:k], rho, args)
            done += k

    dense = DenseProducts(n, B)
    fns = {
        "engine": engine,
        "dense": repeat(dense),
        "dense_blas": dense.blas,
        "rhs": rhs_only,
    }
    if B == 1:
        V = system.views(y)
        x1, y1 = Xb[0], Yb[0]
        _check_numpy(system, y, x1, y1, rho)
        w1, W2, v = V["w_1"], V["W_2"], V["v"]
        fns["numpy_fb"] = repeat(lambda: numpy_forward_backward(w1, W2, v, x1, y1))
        fns["rank1"] = repeat(dense.rank1)
        fns["rank1_blas"] = dense.rank1_blas
    numbers: dict[str, int] = {}
    T = {k: np.asarray(v_) for k, v_ in interleaved(fns, repeats, target, numbers).items()}
    ratio = T["engine"] / T["dense"]
    row = {
        "n": n, "B": B, "d": D, "K": K, "lr": LR, "repeats": repeats,
        "state_size": int(y.size),
        "steps_per_sample": numbers["engine"],
        "steps_per_call": min(numbers["engine"], S),
        "engine_over_dense": float(np.median(ratio)),
        "engine_over_dense_iqr": [float(x) for x in np.percentile(ratio, [25, 75])],
        "engine_over_dense_blas": float(np.median(T["engine"] / T["dense_blas"])),
        "engine_over_dense_blas_iqr": [float(x) for x in np.percentile(T["engine"] / T["dense_blas"], [25, 75])],
        "dense_blas_over_dense": float(np.median(T["dense_blas"] / T["dense"])),
        "rhs_share": float(np.median(T["rhs"] / T["engine"])),
        "update_share": float(np.median((T["engine"] - T["rhs"]) / T["engine"])),
        "median_s": {k: float(np.median(v_)) for k, v_ in T.items()},
    }
    if B == 1:
        over = (T["engine"] - T["dense"]) / T["numpy_fb"]
        over_blas = (T["engine"] - T["dense_blas"]) / T["numpy_fb"]
        row["rank1_share_of_dense"] = float(np.median(T["rank1"] / T["dense"]))
        row["rank1_share_of_dense_blas"] = float(np.median(T["rank1_blas"] / T["dense_blas"]))
        row["overhead_over_numpy_fb"] = float(np.median(over))
        row["overhead_over_numpy_fb_iqr"] = [float(x) for x in np.percentile(over, [25, 75])]
        row["overhead_blas_over_numpy_fb"] = float(np.median(over_blas))
        row["overhead_blas_over_numpy_fb_iqr"] = [float(x) for x in np.percentile(over_blas, [25, 75])]
        row["engine_over_numpy_fb"] = float(np.median(T["engine"] / T["numpy_fb"]))
    return row


def run(quick: bool = False, widths=None, log=print) -> list[dict]:
    """Every (n, B); ``quick``: 5 rounds of ~20 ms samples on QUICK_WIDTHS, else 15 of ~100 ms."""
    repeats, target = (5, 0.02) if quick else (15, 0.1)
    widths = widths or (QUICK_WIDTHS if quick else WIDTHS)
    rows = []
    for n in widths:
        for B in BATCHES:
            t0 = time.perf_counter()
            row = measure(n, B, repeats, target)
            extra = (f", overhead / numpy f-b {row['overhead_over_numpy_fb']:.2f}" if B == 1 else "")
            log(f"  engine n={n} B={B}: engine / dense {row['engine_over_dense']:.2f}{extra} "
                f"({time.perf_counter() - t0:.0f} s)")
            rows.append(row)
    return rows


def format_rows(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Table 3a: every (n, B): the engine against the dense products."""
    headers = ["n", "B", "steps/call", "engine / dense (IQR)", "target", "engine / dense_blas (IQR)",
               "dense_blas / dense", "kernels.rhs", "update+check"]
    out = []
    for r in rows:
        lo, hi = r["engine_over_dense_iqr"]
        blo, bhi = r["engine_over_dense_blas_iqr"]
        goal = (f"≤{TARGET_RATIO} " + ("met" if r["engine_over_dense"] <= TARGET_RATIO else "MISSED")) if r["B"] >= 256 else "-"
        out.append([str(r["n"]), str(r["B"]), str(r["steps_per_call"]),
                    f"{r['engine_over_dense']:.2f} ({lo:.2f}–{hi:.2f})", goal,
                    f"{r['engine_over_dense_blas']:.2f} ({blo:.2f}–{bhi:.2f})", f"{r['dense_blas_over_dense']:.2f}",
                    f"{r['rhs_share']:.0%}", f"{r['update_share']:.0%}"])
    return headers, out


def format_overhead_rows(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Table 3b: B = 1 rows: the per-step overhead against a numpy forward-backward."""
    headers = ["n", "A₁ᵀP₂ / dense", "A₁ᵀP₂ / dense_blas", "(engine − dense) / numpy f-b (IQR)", "target",
               "(engine − dense_blas) / numpy f-b (IQR)", "engine / numpy f-b"]
    out = []
    for r in rows:
        if r["B"] != 1:
            continue
        a, b = r["overhead_over_numpy_fb_iqr"]
        c, e = r["overhead_blas_over_numpy_fb_iqr"]
        goal = (f"<{TARGET_OVERHEAD:g} " + ("met" if r["overhead_over_numpy_fb"] < TARGET_OVERHEAD else "MISSED")
                if r["n"] == OVERHEAD_WIDTH else "-")
        out.append([str(r["n"]), f"{r['rank1_share_of_dense']:.0%}", f"{r['rank1_share_of_dense_blas']:.0%}",
                    f"{r['overhead_over_numpy_fb']:.2f} ({a:.2f}–{b:.2f})", goal,
                    f"{r['overhead_blas_over_numpy_fb']:.2f} ({c:.2f}–{e:.2f})", f"{r['engine_over_numpy_fb']:.2f}"])
    return headers, out


class TorchSGD:
    """The same finite network trained by mean-field SGD in PyTorch (float64), as a user writes it.

    Two tanh layers without biases, identity output, squared loss averaged over the batch,
    R = (1/B) Σ_b ½‖ŷ_b − y_b‖², forward h_1 = X w_1ᵀ, h_2 = φ(h_1) W_2 / n_1,
    ŷ = φ(h_2) v / n_2; ``torch.optim.SGD`` with learning rate ε·n_1 for w_1, ε·n_1·n_2 for
    W_2 and ε·n_2 for v (SPEC §1's multipliers), so one step equals one mfpde SGD step.
    """

    def __init__(self, torch, system, X, Y, lr: float):
        V = system.views(system.y0)
        if set(V) != {"w_1", "W_2", "v"}:
            raise ValueError(f"TorchSGD implements w_1, W_2, v; the network has {sorted(V)}")
        f64 = torch.float64
        self.torch = torch
        self.n1, self.n2 = len(system.weights[0]), len(system.weights[1])
        self.w1, self.W2, self.v = (torch.tensor(np.array(V[k]), dtype=f64, requires_grad=True)
                                    for k in ("w_1", "W_2", "v"))
        self.X = torch.tensor(X, dtype=f64)
        self.Y = torch.tensor(Y, dtype=f64)
        self.opt = torch.optim.SGD([{"params": [self.w1], "lr": lr * self.n1},
                                    {"params": [self.W2], "lr": lr * self.n1 * self.n2},
                                    {"params": [self.v], "lr": lr * self.n2}], lr=lr)

    def loss(self):
        torch = self.torch
        a1 = torch.tanh(self.X @ self.w1.T)
        a2 = torch.tanh((a1 @ self.W2) / self.n1)
        yhat = (a2 @ self.v) / self.n2
        return 0.5 * ((yhat - self.Y) ** 2).sum() / self.X.shape[0]

    def steps(self, n: int) -> None:
        for _ in range(n):
            self.opt.zero_grad()
            self.loss().backward()
            self.opt.step()

    def state(self) -> dict[str, np.ndarray]:
        return {"w_1": self.w1.detach().numpy().copy(), "W_2": self.W2.detach().numpy().copy(),
                "v": self.v.detach().numpy().copy()}


def measure_torch(torch, threads, repeats: int, target: float, log=print) -> list[dict]:
    """mfpde's SGD engine against :class:`TorchSGD` at n = TORCH_WIDTH, full batch of TORCH_BATCH."""
    n, B = TORCH_WIDTH, TORCH_BATCH
    system, teacher = build_system(n)
    rng = np.random.default_rng(11)
    X = rng.standard_normal((B, D))
    Y = np.ascontiguousarray(teacher(X).reshape(B, K))
    Xb, Yb = X[None], Y[None]                 # one batch: sgd_steps uses it every step
    rho = np.full(B, 1.0 / B)
    args = system.make_args(X, Y, rho)
    bound2 = 1e12 ** 2
    y = system.y0.copy()
    dy = np.empty_like(y)

    def engine(reps: int) -> None:
        status, _ = sgd_steps(y, dy, 0.0, LR, reps, Xb, Yb, rho, args, bound2)
        if status:
            raise RuntimeError(f"engine blew up at n={n}, B={B} (status {status})")

    tsgd = TorchSGD(torch, system, X, Y, LR)
    # one step of each from the same state gives the same update
    V0 = {k: np.array(v_) for k, v_ in system.views(y).items()}
    engine(1)
    tsgd.steps(1)
    V1, T1 = system.views(y), tsgd.state()
    worst = 0.0
    for k, v0 in V0.items():
        ref = V1[k] - v0
        got = T1[k].reshape(v0.shape) - v0
        err = float(np.max(np.abs(got - ref))) / float(np.max(np.abs(ref)))
        worst = max(worst, err)
        if not err <= TORCH_RTOL:
            raise AssertionError(f"PyTorch SGD step and mfpde's engine differ on {k} by {err:.2e} relative")
    rows = []
    for T in threads:
        t0 = time.perf_counter()
        with limit_threads(T, torch) as used:
            numbers: dict[str, int] = {}
            S = interleaved({"engine": engine, "torch": tsgd.steps}, repeats, target, numbers)
        row = {"n": n, "B": B, "d": D, "K": K, "lr": LR, "threads": used, "repeats": repeats,
               "steps_per_sample": numbers, "step_check_rel": worst,
               "engine_over_torch": median_ratio(S["engine"], S["torch"]),
               "engine_over_torch_iqr": list(spread(S["engine"], S["torch"])),
               "median_step_s": {k: float(np.median(v_)) for k, v_ in S.items()}}
        log(f"  engine vs torch n={n} B={B}, {used} thread(s): {row['engine_over_torch']:.2f} "
            f"({time.perf_counter() - t0:.0f} s)")
        rows.append(row)
    return rows


def run_torch(quick: bool = False, threads=None, log=print) -> list[dict]:
    """The PyTorch comparison; [] without PyTorch.  ``quick``: 3 rounds of ~0.1 s, else 9 of ~0.3 s."""
    torch = optional_torch()
    if torch is None:
        return []
    repeats, target = (3, 0.1) if quick else (9, 0.3)
    return measure_torch(torch, threads or TORCH_THREADS, repeats, target, log=log)


def format_torch_rows(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Table 3c: the engine against the same SGD step in PyTorch."""
    headers = ["n", "B", "threads", "steps/sample", "engine ms/step", "torch ms/step", "engine / torch (IQR)",
               "one-step check"]
    out = []
    for r in rows:
        lo, hi = r["engine_over_torch_iqr"]
        s = r["steps_per_sample"]
        out.append([str(r["n"]), str(r["B"]), str(r["threads"]), f"{s['engine']}/{s['torch']}",
                    f"{1e3 * r['median_step_s']['engine']:.1f}", f"{1e3 * r['median_step_s']['torch']:.1f}",
                    f"{r['engine_over_torch']:.2f} ({lo:.2f}–{hi:.2f})", f"{r['step_check_rel']:.0e}"])
    return headers, out

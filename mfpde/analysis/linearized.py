"""The linearized (NTK) limit of a configuration (Analysis room; ``[solver] linearize``, docs/lazy_rich.md).

The first-order Taylor expansion of the discretized limit around its initial state θ_0,

    ŷ_lin(t, x) = ŷ(0, x) + J(x) Δθ(t),   dΔθ_b/dt = −ξ_b(t) (1/ω) J_bᵀ ρ ∂loss(ŷ_lin)

(SPEC §2 normalization: the drift of an entry of block b is −ξ_b ÷ its rule mass ω times the
gradient), is solved in function space.  With the per-block tangent kernels

    Θ_b(x, x') = Σ_{θ in block b} (1/ω_θ) ∂ŷ(x)/∂θ ∂ŷ(x')/∂θ

(blocks: ``w_1``, ``W_l``, ``v``, ``b_l``, ``b_out``; each has its own rate ξ_b), Δθ_b(t) =
−(1/ω) J_bᵀ c_b(t) with the cotangent integrals c_b(t) = ∫_0^t ξ_b ρ ∂loss dt, so on every point

    ŷ_lin(t, x) = ŷ(0, x) − Σ_g Θ_g(x, X) c_g(t),   dc_g/dt = f_g(t) ρ ∂loss(ŷ_lin(t, X)),

where the blocks are merged into groups g of proportional schedules ξ_b = a_b f_g (Θ_g =
Σ a_b Θ_b; every constant schedule is one group).  The state of the ODE is c [G, M, K] (M
training points, K outputs).

J is never formed beyond [rows, state size] blocks of at most :data:`CAP` numbers: row (m, k)
of −(1/ω) J is the drift of the one-point data set {x_m} with unit rates and a squared-loss
residual e_k (targets ŷ_0(x_m) − e_k), i.e. ``kernels.rhs_py`` on that data — M·K backward
passes, no kernel changes; Θ_b = D diag(ω) Dᵀ restricted to the block (ω: ``laws.block_masses``).
Larger problems accumulate Θ in blocks (the Jacobian rows are recomputed per block).

The ODE is stepped by the configured stepper's Butcher tableau (fixed step, the controller's
own grid logic: :class:`~mfpde.solvers.explicit.FixedGrid`) through :func:`mfpde.solvers.integrate`,
so save times, trackers, observables and the dataset schema are those of a mean-field solve;
the stored parameters are θ_0 + Δθ(t) and the dataset carries ``regime = "linearized"``.
Adaptive and implicit steppers are refused.  :func:`closed_form` is the squared-loss,
constant-rate solution ŷ_lin(t) = y + V e^{−tΛ} V⁻¹ (ŷ_0 − y) on the training points.

Imports numpy, scipy.special, mfpde's Problem and System rooms and the solvers.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mfpde.errors import ConfigError
from mfpde.problem import losses
from mfpde.problem.config import check_linearized_stepper
from mfpde.problem import schedules as sched_mod
from mfpde.problem.schedules import Schedule
from mfpde.solvers.base import BOUND, BOUND_OPTION, NONFINITE, STEP_OPTION, Stepper
from mfpde.solvers.explicit import TABLEAUX, FixedGrid
from mfpde.system import kernels
from mfpde.system.laws import block_masses

CAP = 1 << 23            # numbers in one block of Jacobian rows (8.4e6 doubles = 64 MiB)
MAX_KERNEL = 50_000_000  # numbers in the stored kernels Θ_b(all points, training points) (400 MB)
REGIME = "linearized"
check_stepper = check_linearized_stepper   # one home: mfpde.problem.config (the [solver] validation)


# ----------------------------------------------------------------------------- blocks and rates
def block_schedule(problem, name: str) -> Schedule:
    """ξ_b of parameter block ``name`` (``w_1``, ``W_l``, ``v``, ``b_l``, ``b_out``)."""
    s, L = problem.schedules, problem.model.L
    if name == "v":
        return s.weights[L]
    if name == "b_out":
        return s.biases[L]
    l = int(name.split("_")[1])
    return s.weights[l - 1] if name[0] in "wW" else s.biases[l - 1]


def _split(s: Schedule) -> tuple[tuple, float, Schedule]:
    """(group key, factor a, unit schedule f) with s = a·f; f constant 1 for every constant s."""
    if s.kind == "constant":
        return ("constant",), s.xi0, Schedule("constant", 1.0)
    if s.kind == "power":
        return ("power", s.tau, s.p), s.xi0, Schedule("power", 1.0, s.tau, s.p)
    return ("piecewise", s.times, s.values), 1.0, s


def _unit_args(system, X, Y):
    """Kernel arguments for data (X, Y) with unit weights ρ = 1, unit rates and the squared loss."""
    n_sched = len(system.problem.schedules.weights) + len(system.problem.schedules.biases)
    rows, flat = sched_mod.pack([Schedule("constant", 1.0)] * n_sched)
    lay = system.lay.copy()
    lay[3] = losses.SQUARED
    a = system.make_args(X, Y, np.ones(len(X)))
    return a._replace(lay=lay, sched=rows, sched_flat=flat, lossp=np.array([float(losses.SQUARED), 0.0]))


def jacobian_rows(system, y: np.ndarray, X: np.ndarray, yhat: np.ndarray) -> np.ndarray:
    """D [M·K, n] with row m·K + k = −(1/ω) ∂ŷ_k(x_m)/∂θ at state y (``yhat`` = ŷ(y, X) [M, K]):
    the unit-rate drift of the one-point data set {x_m} with squared-loss residual e_k."""
    K = system.layout.outputs
    D = np.empty((len(X) * K, system.size))
    for m in range(len(X)):
        for k in range(K):
            target = yhat[m].copy()
            target[k] -= 1.0
            kernels.rhs_py(0.0, y, D[m * K + k], _unit_args(system, X[m:m + 1], target[None]))
    return D


def cotangent_drift(system, y: np.ndarray, X: np.ndarray, yhat: np.ndarray, c: np.ndarray) -> np.ndarray:
    """−(1/ω) Jᵀ c at state y for a cotangent c [M, K] on the points X: one drift evaluation."""
    out = np.empty(system.size)
    kernels.rhs_py(0.0, y, out, _unit_args(system, X, yhat - c))
    return out


def gram(system, y: np.ndarray, X: np.ndarray, cols: int | None = None, *, cap: int = CAP) -> dict[str, np.ndarray]:
    """The per-block tangent kernels Θ_b(X, X[:cols]) at state y, each [M·K, cols·K] (row m·K + k).

    Θ_b(x, x') = Σ_{θ in b} (1/ω_θ) ∂ŷ(x)/∂θ ∂ŷ(x')/∂θ; the rate-weighted sum Σ_b ξ_b Θ_b is the
    neural tangent kernel of the limit (:func:`ntk`).  Jacobian rows are formed in blocks of at
    most ``cap`` numbers (recomputed per block when they do not all fit).
    """
    # a copy: System.evaluate caches kernel arguments by the identity of X, and predict's (zero
    # targets) must not stand in for the training data's
    X = np.array(X, dtype=float, order="C", copy=True)
    M = len(X)
    cols = M if cols is None else int(cols)
    K, n = system.layout.outputs, system.size
    yhat = system.predict(y, X)
    blocks = [(name, system.layout.offset(name), block.size, block_masses(system, name).ravel())
              for name, block in system.layout.views(y).items()]
    out = {name: np.zeros((M * K, cols * K)) for name, *_ in blocks}
    per = max(1, cap // (n * K))          # points per block of rows

    def fill(Dr, Dc, i0, j0):
        for name, off, size, w in blocks:
            r, c = Dr[:, off:off + size], Dc[:, off:off + size]
            out[name][i0 * K:i0 * K + len(Dr), j0 * K:j0 * K + len(Dc)] = (r * w) @ c.T

    if M <= per:
        D = jacobian_rows(system, y, X, yhat)
        fill(D, D[:cols * K], 0, 0)
        return out
    for j0 in range(0, cols, per):
        j1 = min(cols, j0 + per)
        Dc = jacobian_rows(system, y, X[j0:j1], yhat[j0:j1])
        for i0 in range(0, M, per):
            i1 = min(M, i0 + per)
            Dr = Dc if (i0, i1) == (j0, j1) else jacobian_rows(system, y, X[i0:i1], yhat[i0:i1])
            fill(Dr, Dc, i0, j0)
    return out


def ntk(system, y: np.ndarray, X: np.ndarray, cols: int | None = None, t: float = 0.0, *, cap: int = CAP) -> np.ndarray:
    """Θ(t)(X, X[:cols]) = Σ_b ξ_b(t) Θ_b at state y, [M·K, cols·K]: the tangent kernel of the
    gradient flow (dŷ/dt = −Θ diag(ρ) ∂loss on the training points)."""
    parts = gram(system, y, X, cols, cap=cap)
    return sum(block_schedule(system.problem, name)(t) * th for name, th in parts.items())


def alignment(theta: np.ndarray, Y: np.ndarray) -> float:
    """Centered kernel–target alignment A = ⟨K_c, Y Yᵀ⟩ / (‖K_c‖ ‖Y Yᵀ‖) (Cortes, Mohri, Rostamizadeh
    2012), K_c = H K H with H = I − 11ᵀ/M centering over the points; ``theta`` [M·K, M·K] is summed
    over output pairs k = k' (trace over outputs) and Y is [M, K] (centered too)."""
    Y = np.asarray(Y, float)
    Y = Y.reshape(len(Y), -1)
    M, K = Y.shape
    Kx = np.einsum("akbk->ab", theta.reshape(M, K, M, K))
    H = np.eye(M) - 1.0 / M
    Kc = H @ Kx @ H
    Yc = H @ Y
    T = Yc @ Yc.T
    den = np.linalg.norm(Kc) * np.linalg.norm(T)
    return float(np.sum(Kc * T) / den) if den > 0 else 0.0


# ----------------------------------------------------------------------------- loss in numpy
def loss_grad(loss, Y: np.ndarray, yhat: np.ndarray) -> np.ndarray:
    """∂loss/∂ŷ per row (the same closed forms as :func:`mfpde.problem.losses.loss_grad`)."""
    from scipy.special import expit

    r = yhat - Y
    if loss.name == "squared":
        return r
    if loss.name == "mse":
        return 2.0 * r
    if loss.name == "huber":
        return np.clip(r, -loss.param, loss.param)
    if loss.name == "logistic":
        return -Y * expit(-Y * yhat)
    lse = np.logaddexp.reduce(yhat, axis=1, keepdims=True)
    return np.exp(yhat - lse) * Y.sum(axis=1, keepdims=True) - Y


def _loss_error(loss, Y, yhat, rho) -> tuple[float, float]:
    val = float(rho @ losses.reference_loss(loss.name, loss.param, Y, yhat))
    if Y.shape[1] == 1:
        wrong = (Y[:, 0] * yhat[:, 0] <= 0.0)
    else:
        wrong = np.argmax(Y, axis=1) != np.argmax(yhat, axis=1)
    return val, float(rho @ wrong)


# ----------------------------------------------------------------------------- the function-space system
@dataclass(frozen=True)
class Group:
    """Blocks with proportional rates ξ_b = a_b f(t): their kernel Σ a_b Θ_b and the unit schedule f."""

    f: Schedule
    blocks: tuple[tuple[str, float], ...]     # (block name, a_b)
    theta: np.ndarray                         # [P·K, M·K]: all points × training points


class LinearizedSystem:
    """The linearized limit of ``system`` (a :class:`~mfpde.system.system.System`) in function space.

    Duck-types what :func:`mfpde.solvers.integrate` needs of a system (``size``, ``y0``, ``rhs``,
    ``views``, ``observe``); the state is c [G, M, K] (module docstring).  ``parameters(c)`` is
    θ_0 + Δθ; ``result()`` the object a Solution of this system carries for the Store room.
    """

    regime = REGIME

    def __init__(self, system, *, cap: int = CAP):
        self.base = system
        p = system.problem
        self.problem = p
        self.loss = system.loss
        K = system.layout.outputs
        parts = [("train", np.asarray(p.train.X, float))]
        if p.test is not None:
            parts.append(("test", np.asarray(p.test.X, float)))
        if p.probes is not None and len(p.probes):
            parts.append(("probe", np.asarray(p.probes, float).reshape(len(p.probes), -1)))
        self.slices, start = {}, 0
        for name, X in parts:
            self.slices[name] = slice(start, start + len(X))
            start += len(X)
        X = np.concatenate([X for _, X in parts])
        self.M = len(parts[0][1])
        self.K = K
        n_blocks = len(system.layout.entries)
        if len(X) * K * self.M * K * n_blocks > MAX_KERNEL:
            raise ConfigError("solver.linearize", f"the tangent kernels on {len(X)} points x {self.M} training points "
                              f"x {K}² outputs x {n_blocks} parameter blocks would hold more than {MAX_KERNEL:.0e} "
                              "numbers; use fewer training, test or probe points")
        self.Y = np.asarray(p.train.Y, float)
        self.rho = np.asarray(p.train.weights, float)
        self.X_train = np.ascontiguousarray(parts[0][1])
        self.yhat0 = system.predict(system.y0, X)                      # [P, K]
        blocks = gram(system, system.y0, X, self.M, cap=cap)
        groups: dict[tuple, list] = {}
        for name, th in blocks.items():
            key, a, f = _split(block_schedule(p, name))
            if a == 0.0 or (f.kind == "piecewise" and f.frozen):
                continue                                               # a frozen block does not move
            groups.setdefault(key, [f, [], 0.0])
            groups[key][1].append((name, a))
            groups[key][2] = groups[key][2] + a * th
        self.groups = tuple(Group(f, tuple(bl), th) for f, bl, th in groups.values())
        self.blocks = blocks
        self.G = len(self.groups)
        self.size = max(1, self.G) * self.M * K
        self.y0 = np.zeros(self.size)

    def _c(self, c: np.ndarray) -> np.ndarray:
        return c.reshape(max(1, self.G), self.M * self.K)

    def predict_all(self, c: np.ndarray, rows: slice | None = None) -> np.ndarray:
        """ŷ_lin at every point (train, test, probes) [P, K], or at the points ``rows``."""
        rows = slice(None) if rows is None else rows
        r = slice(None if rows.start is None else rows.start * self.K, None if rows.stop is None else rows.stop * self.K)
        cc = self._c(c)
        out = self.yhat0.ravel()[r].copy()
        for g, grp in enumerate(self.groups):
            out -= grp.theta[r] @ cc[g]
        return out.reshape(-1, self.K)

    def rhs(self, t: float, c: np.ndarray, dc: np.ndarray | None = None) -> np.ndarray:
        """dc_g/dt = f_g(t) ρ ∂loss(ŷ_lin) on the training points."""
        yl = self.predict_all(c, self.slices["train"])
        g = (self.rho[:, None] * loss_grad(self.loss, self.Y, yl)).ravel()
        out = np.empty(self.size) if dc is None else dc
        o = self._c(out)
        for i, grp in enumerate(self.groups):
            o[i] = grp.f(t) * g
        if not self.groups:
            out[:] = 0.0
        return out

    def views(self, c: np.ndarray) -> dict[str, np.ndarray]:
        cc = self._c(c)
        return {"c_" + "+".join(n for n, _ in grp.blocks): cc[i] for i, grp in enumerate(self.groups)} or {"c": cc[0]}

    def observe(self, c: np.ndarray) -> dict:
        """The observables of :meth:`mfpde.system.system.System.observe`, of ŷ_lin."""
        p = self.problem
        yl = self.predict_all(c)
        out: dict = {}
        out["loss_train"], out["error_train"] = _loss_error(self.loss, self.Y, yl[self.slices["train"]], self.rho)
        if "test" in self.slices:
            out["loss_test"], out["error_test"] = _loss_error(self.loss, np.asarray(p.test.Y, float),
                                                              yl[self.slices["test"]], np.asarray(p.test.weights, float))
        if "probe" in self.slices:
            out["yhat_probe"] = yl[self.slices["probe"]]
        return out

    def parameters(self, c: np.ndarray) -> np.ndarray:
        """θ_0 + Δθ, Δθ_b = −a_b (1/ω) J_bᵀ c_g: one drift evaluation per group."""
        base = self.base
        theta = base.y0.copy()
        cc = self._c(c)
        y0t = self.yhat0[self.slices["train"]]
        for i, grp in enumerate(self.groups):
            d = cotangent_drift(base, base.y0, self.X_train, y0t, cc[i].reshape(self.M, self.K))
            for name, a in grp.blocks:
                off, size = base.layout.offset(name), base.views(d)[name].size
                theta[off:off + size] += a * d[off:off + size]
        return theta

    def result(self) -> "LinearizedResult":
        return LinearizedResult(self.base)


class LinearizedResult:
    """What a Solution of the linearized limit carries as its ``system``: the System (layout, rules,
    the parameters θ_0 + Δθ) marked ``regime = "linearized"`` (attribute of the dataset)."""

    regime = REGIME

    def __init__(self, system):
        self._system = system

    def __getattr__(self, name):
        return getattr(self._system, name)


# ----------------------------------------------------------------------------- stepping
class LinearizedRK(FixedGrid, Stepper):
    """The configured explicit tableau, fixed step, on the function-space ODE (numpy stages)."""

    adaptive = False
    schema = {"dt": STEP_OPTION, "bound": BOUND_OPTION}

    def __init__(self, system: LinearizedSystem, stepper: str, dt: float, bound: float = 1e12):
        check_stepper(stepper)
        super().__init__(system)
        self.name = stepper
        self.tableau = TABLEAUX[stepper]
        self.order = self.tableau.order
        self.dt = self.check_option("dt", dt)
        self.bound2 = self.check_option("bound", bound) ** 2

    def _run(self, y, t, dt, n, n0=0):
        tb = self.tableau
        s = len(tb.b)
        k = np.empty((s, y.size))
        done, status = 0, 0
        for j in range(int(n)):
            tn = t + (n0 + j) * dt
            for i in range(s):
                yi = y + dt * (tb.a[i, :i] @ k[:i]) if i else y
                self.system.rhs(tn + tb.c[i] * dt, yi, k[i])
            new = y + dt * (tb.b @ k)
            nrm = float(new @ new) if np.all(np.isfinite(new)) else np.inf
            if not nrm <= self.bound2:
                status = NONFINITE if not np.isfinite(nrm) else BOUND
                break
            y[:] = new
            done += 1
        self.stats["steps"] += done
        self.stats["rhs_evals"] += done * s + (s if status else 0)
        return status, done

    def describe(self):
        return {"stepper": self.name, "order": self.order, "dt": self.dt, "regime": REGIME}


def finish(lin: LinearizedSystem, stepper: LinearizedRK, options, *, parameters: str = "all", trackers=(),
           progress=None):
    """Integrate ``lin`` with ``stepper`` to the save times of ``options`` (:class:`SolverOptions`); the
    :class:`~mfpde.store.solution.Solution` of ŷ_lin, with stored states θ_0 + Δθ(t)."""
    from mfpde import solvers

    sol = solvers.integrate(lin, stepper, options.t_end, times=options.save_times, save_every=options.save_every,
                            parameters=parameters, trackers=trackers, progress=progress)
    sol.states = [lin.parameters(c) for c in sol.states]
    sol.system = lin.result()
    sol.stats["ntk_groups"] = lin.G
    return sol


def solve(system, options, **kwargs):
    """The linearized limit of a :class:`~mfpde.system.system.System` with solver ``options``
    (``mfpde.solve`` with ``[solver] linearize = true`` calls the same pieces)."""
    lin = LinearizedSystem(system)
    return finish(lin, LinearizedRK(lin, options.stepper, options.dt, options.bound), options, **kwargs)


# ----------------------------------------------------------------------------- closed form
def closed_form(lin: LinearizedSystem, times) -> np.ndarray:
    """ŷ_lin(t) on the training points [len(times), M, K] for the squared (or mse) loss and constant
    rates: ŷ(t) = y + ρ^{−1/2} U e^{−s t Λ} Uᵀ ρ^{1/2} (ŷ_0 − y), U Λ Uᵀ = ρ^{1/2} Θ ρ^{1/2}
    (the eigendecomposition of Θ diag(ρ), symmetrized; s = 1 for squared, 2 for mse)."""
    if lin.loss.name not in ("squared", "mse"):
        raise ConfigError("model.loss", f"the closed form needs the squared or mse loss, got {lin.loss.name!r}")
    if any(grp.f.kind != "constant" for grp in lin.groups):
        raise ConfigError("schedules", "the closed form needs constant rates ξ")
    s = 1.0 if lin.loss.name == "squared" else 2.0
    tr = lin.slices["train"]
    n = lin.M * lin.K
    theta = sum((grp.theta[tr.start * lin.K:tr.stop * lin.K] for grp in lin.groups), np.zeros((n, n)))
    r = np.repeat(np.sqrt(lin.rho), lin.K)
    S = r[:, None] * theta * r[None, :]
    lam, U = np.linalg.eigh(0.5 * (S + S.T))
    lam = np.maximum(lam, 0.0)        # Θ is positive semidefinite: negative eigenvalues are rounding
    e0 = U.T @ (r * (lin.yhat0[tr].ravel() - lin.Y.ravel()))
    out = [lin.Y.ravel() + (U @ (np.exp(-s * float(t) * lam) * e0)) / r for t in times]
    return np.asarray(out).reshape(len(out), lin.M, lin.K)


__all__ = ["LinearizedSystem", "LinearizedRK", "LinearizedResult", "Group", "gram", "ntk", "alignment", "jacobian_rows",
           "cotangent_drift", "closed_form", "solve", "finish", "check_stepper", "block_schedule", "REGIME", "CAP"]

"""Plain-numpy reference of the symmetry-reduced limit system of SPEC §7 (L = 1, 2; the
independent check of issue 17's compiled kernels).  Imports numpy and
``mfpde.problem.activations`` (for the numpy pairs φ, φ') only; no Numba.

Setting: x ~ N(0, I_d), y = f*(Ux), first-layer law isotropic Gaussian.  A layer-1 neuron is
indexed by (a⁰ ∈ R^k, β⁰ ≥ 0) (plus v⁰ for L = 1 and b_1⁰), its weight is w_1 = Uᵀ a + β e, and a
data point enters through (z = Ux ∈ R^k, r = |P⊥x|) and, per (neuron, data point) pair, the 1-D
variable ζ = ⟨e, P⊥x⟩ / r.  Everything is given by explicit rules (:class:`ReducedRules`):

* layer-1 index nodes i with weights ω_i (summing to 1), the initial values a⁰_i, β⁰_i;
* a ζ rule (nodes ζ_j, weights ρ_j);
* a data rule (z_m, r_m) with weights π_m and targets y_m = f*(z_m);
* for L = 2, layer-2 index weights ω2_c.

State (a dict of float arrays): ``a`` [Q1, k], ``beta`` [Q1], optionally ``b_1`` [Q1];
L = 1: ``v`` [Q1]; L = 2: ``W_2`` [Q1, Q2], ``v`` [Q2].  With squared loss ½(ŷ − y)²:

    h_1(m, i, j) = ⟨a_i, z_m⟩ + β_i r_m ζ_j + b_1,i
    L = 1:  ŷ_m = φ_out( Σ_i Σ_j ω_i ρ_j v_i φ_1(h_1(m, i, j)) )
    L = 2:  h_2(m, c) = Σ_{i,j} ω_i ρ_j W_2(i, c) φ_1(h_1(m, i, j)),
            ŷ_m = φ_out( Σ_c ω2_c v_c φ_2(h_2(m, c)) )
    loss    = Σ_m π_m ½ (ŷ_m − y_m)²

The drift (:meth:`ReducedSystem.rhs`) is SPEC §7 / §2 written out by hand (backward pass δ_l, no
autodiff): every block equals −ξ_l ∂loss/∂θ divided by the node weight(s) of θ (ω_i for a, β,
b_1 and L = 1's v; ω_i ω2_c for W_2; ω2_c for L = 2's v) — SPEC §2's normalization, the gradient
flow of ``loss`` in the metric of the node weights.  Node weights may be zero (tracers): the
drift is then still the §2 expectation (it never divides by a weight).

:func:`fold_reflection` builds the d − k = 1 reduced rule from a rule symmetric under a sign
flip of one coordinate (SPEC §7's d = 2, k = 1 check).  :func:`euler` and :func:`rk4` are tiny
fixed-step integrators for tests.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from mfpde.problem import activations

State = dict  # str -> np.ndarray


def _vec(x, name: str, ndim: int) -> np.ndarray:
    a = np.asarray(x, dtype=float)
    if a.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name}: must be finite")
    return a


@dataclass(frozen=True)
class ReducedRules:
    """The explicit rules of the reduced system (see the module docstring).

    ``index_weights`` [Q1] (ω_i), ``zeta`` / ``zeta_weights`` [J] (ζ_j, ρ_j), ``z`` [M, k],
    ``r`` [M] (≥ 0), ``data_weights`` [M] (π_m), ``y`` [M] (targets), ``layer2_weights`` [Q2]
    (ω2_c, L = 2 only, else None).  Weights are used as given (not normalised)."""

    index_weights: np.ndarray
    zeta: np.ndarray
    zeta_weights: np.ndarray
    z: np.ndarray
    r: np.ndarray
    data_weights: np.ndarray
    y: np.ndarray
    layer2_weights: np.ndarray | None = None

    def __post_init__(self):
        f = lambda k, v: object.__setattr__(self, k, v)
        f("index_weights", _vec(self.index_weights, "index_weights", 1))
        f("zeta", _vec(self.zeta, "zeta", 1))
        f("zeta_weights", _vec(self.zeta_weights, "zeta_weights", 1))
        z = np.asarray(self.z, dtype=float)
        f("z", _vec(z[:, None] if z.ndim == 1 else z, "z", 2))
        f("r", _vec(self.r, "r", 1))
        f("data_weights", _vec(self.data_weights, "data_weights", 1))
        f("y", _vec(self.y, "y", 1))
        if self.layer2_weights is not None:
            f("layer2_weights", _vec(self.layer2_weights, "layer2_weights", 1))
        M = self.z.shape[0]
        for name in ("r", "data_weights", "y"):
            if getattr(self, name).shape != (M,):
                raise ValueError(f"{name}: expected {M} entries (one per data node), got {getattr(self, name).shape[0]}")
        if self.zeta.shape != self.zeta_weights.shape:
            raise ValueError(f"zeta_weights: expected {self.zeta.shape[0]} entries (one per ζ node), "
                             f"got {self.zeta_weights.shape[0]}")
        if np.any(self.r < 0):
            raise ValueError("r: radii must be ≥ 0")
        if np.any(np.abs(self.zeta) > 1):
            raise ValueError("zeta: nodes must lie in [-1, 1]")


class ReducedSystem:
    """The reduced limit system of SPEC §7 on explicit rules, L = 1 or 2, squared loss ½(ŷ − y)².

    ``hidden``: L activation names of :mod:`mfpde.problem.activations` (φ_1[, φ_2]);
    ``output_activation`` (default identity); ``xi``: constant schedules (ξ_1, …, ξ_{L+1}) for
    (w_1 = (a, β), [W_2,] v); ``xi_b1``: ξ^b_1 of the optional layer-1 bias (default ξ_1).
    """

    def __init__(self, rules: ReducedRules, hidden=("tanh",), *, output_activation: str = "identity",
                 xi=None, xi_b1: float | None = None):
        hidden = tuple(hidden)
        if len(hidden) not in (1, 2):
            raise ValueError(f"hidden: the reduced reference covers L = 1 or 2 hidden layers, got {len(hidden)}")
        self.L = len(hidden)
        if (self.L == 2) != (rules.layer2_weights is not None):
            raise ValueError("rules.layer2_weights: required for L = 2 and only then")
        self.rules = rules
        self.acts = [activations.get(h).pair for h in hidden]
        self.out = activations.get(output_activation).pair
        xi = (1.0,) * (self.L + 1) if xi is None else tuple(float(x) for x in xi)
        if len(xi) != self.L + 1 or any(not np.isfinite(x) or x < 0 for x in xi):
            raise ValueError(f"xi: expected {self.L + 1} finite numbers ≥ 0, got {xi}")
        self.xi = xi
        self.xi_b1 = xi[0] if xi_b1 is None else float(xi_b1)

    # ------------------------------------------------------------------ state
    def initial_state(self, a0, beta0, v0, *, W2_0=None, b1_0=None) -> State:
        """State at t = 0: a = a⁰ [Q1, k], β = β⁰ [Q1], v = v⁰ ([Q1] for L = 1, [Q2] for L = 2),
        W_2 = W2_0 (L = 2; a number or [Q1, Q2]), b_1 = b1_0 (optional, [Q1])."""
        Q1 = self.rules.index_weights.shape[0]
        k = self.rules.z.shape[1]
        a0 = np.asarray(a0, dtype=float)
        s = {"a": (a0[:, None] if a0.ndim == 1 else a0).copy(), "beta": np.array(beta0, dtype=float),
             "v": np.array(v0, dtype=float)}
        if s["a"].shape != (Q1, k) or s["beta"].shape != (Q1,):
            raise ValueError(f"a0, beta0: expected shapes {(Q1, k)}, {(Q1,)}, got {s['a'].shape}, {s['beta'].shape}")
        if self.L == 2:
            Q2 = self.rules.layer2_weights.shape[0]
            if W2_0 is None:
                raise ValueError("W2_0: required for L = 2")
            s["W_2"] = np.broadcast_to(np.asarray(W2_0, dtype=float), (Q1, Q2)).copy()
            if s["v"].shape != (Q2,):
                raise ValueError(f"v0: expected shape {(Q2,)}, got {s['v'].shape}")
        elif s["v"].shape != (Q1,):
            raise ValueError(f"v0: expected shape {(Q1,)}, got {s['v'].shape}")
        if b1_0 is not None:
            s["b_1"] = np.broadcast_to(np.asarray(b1_0, dtype=float), (Q1,)).copy()
        return s

    # ------------------------------------------------------------------ forward
    def _h1(self, s: State) -> np.ndarray:
        """h_1 [M, Q1, J]."""
        R = self.rules
        h = (R.z @ s["a"].T)[:, :, None] + (R.r[:, None] * s["beta"][None, :])[:, :, None] * R.zeta[None, None, :]
        if "b_1" in s:
            h = h + s["b_1"][None, :, None]
        return h

    def _forward(self, s: State):
        R = self.rules
        h1 = self._h1(s)
        p1, dp1 = self.acts[0](h1)
        wq = R.index_weights[None, :, None] * R.zeta_weights[None, None, :]      # ω_i ρ_j
        if self.L == 1:
            hout = np.einsum("miq,iq,i->m", p1, wq[0], s["v"])
            return hout, (h1, p1, dp1, wq)
        A1 = np.einsum("miq,iq->mi", p1, wq[0])                                # Σ_j ω_i ρ_j φ_1(h_1)
        h2 = A1 @ s["W_2"]                                                      # [M, Q2]
        p2, dp2 = self.acts[1](h2)
        hout = p2 @ (R.layer2_weights * s["v"])
        return hout, (h1, p1, dp1, wq, h2, p2, dp2)

    def forward(self, s: State) -> np.ndarray:
        """ŷ [M] at the data nodes."""
        return self.out(self._forward(s)[0])[0]

    def loss(self, s: State) -> float:
        """Σ_m π_m ½ (ŷ_m − y_m)²."""
        e = self.forward(s) - self.rules.y
        return float(0.5 * self.rules.data_weights @ (e * e))

    # ------------------------------------------------------------------ drift
    def rhs(self, s: State) -> State:
        """The drift dθ/dt of every block (same keys and shapes as the state)."""
        R = self.rules
        hout, c = self._forward(s)
        yhat, dout = self.out(hout)
        d_out = R.data_weights * (yhat - R.y) * dout           # π_m δ_{L+1}(m): the data weight folded in
        zeta = R.zeta[None, None, :]
        ds: State = {}
        if self.L == 1:
            h1, p1, dp1, wq = c
            # ∂_t v_i = −ξ_2 Σ_m π_m δ_out Σ_j ρ_j φ_1(h_1)
            ds["v"] = -self.xi[1] * np.einsum("m,miq,q->i", d_out, p1, R.zeta_weights)
            # δ_1(m, i, j) (times π_m) = π_m δ_out v_i φ_1'(h_1)
            d1 = d_out[:, None, None] * s["v"][None, :, None] * dp1
        else:
            h1, p1, dp1, wq, h2, p2, dp2 = c
            w2 = R.layer2_weights
            ds["v"] = -self.xi[2] * (d_out @ p2)                          # −ξ_3 Σ_m π_m δ_out φ_2(h_2)
            d2 = d_out[:, None] * s["v"][None, :] * dp2                   # π_m δ_2(m, c)
            A1z = np.einsum("miq,q->mi", p1, R.zeta_weights)              # E_ζ φ_1(h_1)  [M, Q1]
            ds["W_2"] = -self.xi[1] * (A1z.T @ d2)                        # −ξ_2 E[φ_1(h_1) δ_2]
            back = d2 @ (s["W_2"] * w2[None, :]).T                        # Σ_c ω2_c δ_2 W_2(i, c)  [M, Q1]
            d1 = back[:, :, None] * dp1                                   # π_m δ_1(m, i, j)
        d1 = d1 * R.zeta_weights[None, None, :]                           # ρ_j folded in: Σ_{m,j} is E
        ds["a"] = -self.xi[0] * np.einsum("miq,mk->ik", d1, R.z)          # −ξ_1 E[δ_1 z]
        ds["beta"] = -self.xi[0] * np.einsum("miq,m,q->i", d1, R.r, R.zeta)   # −ξ_1 E[δ_1 r ζ]
        if "b_1" in s:
            ds["b_1"] = -self.xi_b1 * d1.sum(axis=(0, 2))                 # −ξ^b_1 E[δ_1]
        return {k: ds[k] for k in s}


# ---------------------------------------------------------------------- integrators
def _axpy(s: State, h: float, d: State) -> State:
    return {k: s[k] + h * d[k] for k in s}


def _integrate(system: ReducedSystem, state: State, dt: float, steps: int, step,
               callback: Callable[[int, State], None] | None) -> State:
    s = {k: v.copy() for k, v in state.items()}
    if callback is not None:
        callback(0, s)
    for n in range(1, steps + 1):
        s = step(s)
        if callback is not None:
            callback(n, s)
    return s


def euler(system: ReducedSystem, state: State, dt: float, steps: int,
          callback: Callable[[int, State], None] | None = None) -> State:
    """``steps`` explicit Euler steps θ ← θ + dt·rhs(θ); ``callback(n, θ_n)`` after each step (and n = 0)."""
    return _integrate(system, state, dt, steps, lambda s: _axpy(s, dt, system.rhs(s)), callback)


def rk4(system: ReducedSystem, state: State, dt: float, steps: int,
        callback: Callable[[int, State], None] | None = None) -> State:
    """``steps`` classical RK4 steps; ``callback`` as for :func:`euler`."""
    def step(s):
        k1 = system.rhs(s)
        k2 = system.rhs(_axpy(s, dt / 2, k1))
        k3 = system.rhs(_axpy(s, dt / 2, k2))
        k4 = system.rhs(_axpy(s, dt, k3))
        return {k: s[k] + dt / 6 * (k1[k] + 2 * k2[k] + 2 * k3[k] + k4[k]) for k in s}

    return _integrate(system, state, dt, steps, step, callback)


# ---------------------------------------------------------------------- folding (d − k = 1)
def fold_reflection(nodes, weights, axis: int):
    """Fold a rule symmetric under x_axis ↦ −x_axis onto x_axis ≥ 0 (SPEC §7, d − k = 1).

    Returns ``(folded_nodes [P, n], folded_weights [P], index [Q], sign [Q])``: folded node p has
    coordinate ``axis`` replaced by its absolute value and weight ω(c) + ω(Rc) (a node on the
    mirror plane counts once); general node q maps to folded node ``index[q]`` with
    ``sign[q]`` = sign of its ``axis`` coordinate (+1 on the plane).  Mirror images must match
    exactly (as symmetrized Gauss rules do); a missing one raises ValueError."""
    X = np.asarray(nodes, dtype=float)
    X = X[:, None] if X.ndim == 1 else X
    w = np.asarray(weights, dtype=float)
    if w.shape != (X.shape[0],):
        raise ValueError(f"weights: expected {X.shape[0]} entries, got {w.shape}")
    if not 0 <= axis < X.shape[1]:
        raise ValueError(f"axis: must be in [0, {X.shape[1]}), got {axis}")
    key = X.copy()
    key[:, axis] = np.abs(key[:, axis])
    order = np.lexsort(key.T[::-1])
    folded, fw = [], []
    index = np.empty(X.shape[0], dtype=np.int64)
    for q in order:
        if folded and np.array_equal(key[q], folded[-1]):
            index[q] = len(folded) - 1
            fw[-1] += w[q]
        else:
            folded.append(key[q])
            fw.append(w[q])
            index[q] = len(folded) - 1
    counts = np.bincount(index, minlength=len(folded))
    on_plane = np.array([f[axis] == 0.0 for f in folded])
    bad = np.nonzero(counts != np.where(on_plane, 1, 2))[0]
    if bad.size:
        raise ValueError(f"nodes: not symmetric under x_{axis} -> -x_{axis} (folded node {folded[bad[0]].tolist()} "
                         f"has {counts[bad[0]]} preimages)")
    sign = np.where(X[:, axis] < 0, -1.0, 1.0)
    return np.array(folded), np.array(fw), index, sign

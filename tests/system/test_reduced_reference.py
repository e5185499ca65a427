"""Checks of the numpy reduced-system reference (mfpde/system/reduced_reference.py, SPEC §7, issue 17).

1. The drift is the gradient flow of the loss in the metric of the node weights: every block
   of ``rhs`` times its node weight equals −ξ ∂loss/∂θ, checked against central differences.
2. SPEC §7's measured check: at d = 2, k = 1 the reduced system on rules folded from the
   general solver's symmetric Gauss–Hermite rules reproduces ``mfpde.solve`` (Euler) at every
   saved time, to rounding.

Why the fold is exact (not an approximation).  Let R(x_1, x_2) = (x_1, −x_2).  The general
solver's data rule (a tensor of symmetric Gauss–Hermite rules) and its targets
y = tanh(s x_1) are invariant under x ↦ Rx; its layer-1 rule (tensor GH in (w_a, w_b, v⁰)) is
invariant under the index map c = (w_a, w_b, v⁰) ↦ c̄ = (w_a, −w_b, v⁰), with ω(c̄) = ω(c); and
w_1⁰(c̄) = R w_1⁰(c), v⁰(c̄) = v⁰(c).  For any state θ define (Tθ): w_1'(c) = R w_1(c̄),
v'(c) = v(c̄).  Then ŷ_{Tθ}(x) = ŷ_θ(Rx) (re-index the neuron sum by c ↦ c̄; ⟨R w, x⟩ = ⟨w, Rx⟩),
and re-indexing the data sum by x ↦ Rx shows drift(Tθ) = T drift(θ).  Tθ⁰ = θ⁰, so every
Euler iterate (and the exact flow) satisfies θ_n = Tθ_n: w_1(c̄) = R w_1(c), v(c̄) = v(c).
Write w_1(c) = (a, β e) with e = sign(w_b⁰): the pair {c, c̄} is one reduced neuron
(a⁰ = w_a, β⁰ = |w_b|) carrying weight ω(c) + ω(c̄) and directions e = ±1 with ½ each; a data
pair {x, Rx} is one reduced point (z = x_1, r = |x_2|) with the summed weight.  For e = ±1 and
x_2 = ±r, ⟨w_1, x⟩ = a z + β r ζ with ζ = e·sign(x_2) = ±1, each with weight ½ given the other:
the general sums are the reduced sums, term by term.  So the two computations agree up to
the order of floating-point additions.
"""
from __future__ import annotations

import numpy as np
import pytest

import mfpde
from mfpde.system.reduced_reference import ReducedRules, ReducedSystem, euler, fold_reflection, rk4

EPS = np.finfo(float).eps


# ============================================================================ 1. rhs = −ξ ∇loss / weights

def _small_rules(rng, L: int, k: int = 2) -> ReducedRules:
    """Random positive rules with |z_m| ≤ 1 per coordinate, 0 ≤ r ≤ 1.5, |ζ| ≤ 1 (bounds used below)."""
    Q1, J, M, Q2 = 5, 3, 7, 4
    w = lambda n: (lambda u: u / u.sum())(rng.uniform(0.5, 1.5, n))
    return ReducedRules(index_weights=w(Q1), zeta=np.cos((2 * np.arange(1, J + 1) - 1) * np.pi / (2 * J)),
                        zeta_weights=w(J), z=rng.uniform(-1, 1, (M, k)), r=rng.uniform(0, 1.5, M),
                        data_weights=w(M), y=rng.uniform(-1, 1, M), layer2_weights=w(Q2) if L == 2 else None)


def _flat(s):
    return np.concatenate([s[k].ravel() for k in sorted(s)])


def _unflat(s, x):
    out, o = {}, 0
    for k in sorted(s):
        out[k] = x[o:o + s[k].size].reshape(s[k].shape)
        o += s[k].size
    return out


def _node_weight(R: ReducedRules, s, key):
    """The node weight that divides ∂loss/∂θ in SPEC §2's normalization, broadcast to the block."""
    if key == "W_2":
        return R.index_weights[:, None] * R.layer2_weights[None, :]
    if key == "v" and R.layer2_weights is not None:
        return R.layer2_weights
    w = R.index_weights
    return w[:, None] * np.ones_like(s[key]) if s[key].ndim == 2 else w


@pytest.mark.parametrize("L, bias, act", [(1, False, "tanh"), (1, True, "tanh"), (2, False, "tanh"),
                                          (2, True, "tanh"), (2, False, "sigmoid")])
def test_rhs_is_weighted_gradient_of_loss(L, bias, act):
    """Central differences of loss(θ) in every coordinate of every block.

    Tolerance: a central difference D(h) errs by h²/6 · C3 (C3 ≥ |∂³ loss| along one coordinate)
    plus rounding ≤ 2·ulp(loss)/(2h) ≤ 4 ε |loss| / h.  Bound C3 from ``_small_rules`` (|z_k| ≤ 1,
    r|ζ| ≤ 1.5, ω_i ≤ 0.6, Σ weights = 1) and the state (|a|, β, |b|, |v|, |W_2| ≤ 1), with
    |φ^(n)| ≤ 2 (n ≤ 3; tanh, sigmoid), |ŷ| ≤ 1, |y| ≤ 1 so |ŷ − y| ≤ 2: a layer-1 coordinate θ of
    neuron i moves h_1 by ≤ G = 1.5 per unit, so L = 1: |∂ⁿŷ/∂θⁿ| ≤ ω_i·2·G³ ≤ H = 4.05 and
    C3 ≤ 3H² + 2H < 60 (v enters linearly: smaller).  L = 2: each h_2(c) has |∂ⁿh_2/∂θⁿ| ≤ H, so
    |∂ŷ| ≤ 2H, |∂²ŷ| ≤ 2H² + 2H, |∂³ŷ| ≤ 2H³ + 6H² + 2H < 240 and C3 ≤ 3·8.1·41 + 2·240 < 1.5e3
    (W_2 and v enter h_2, ŷ linearly: smaller).  We take C3 = 2e3 and h = 1e-5: tol = 3.3e-8 +
    rounding, against gradients of size 1e-3 … 1e-1.  Second, independent of that bound: at the
    larger h = 1e-2 (truncation dominant) halving h divides the error by ≈ 4 — only a correct
    gradient shows second order; a wrong one leaves a constant error.
    """
    rng = np.random.default_rng(17 + 10 * L + bias)
    R = _small_rules(rng, L)
    xi = tuple(rng.uniform(0.5, 2.0, L + 1))
    sysm = ReducedSystem(R, (act,) * L, xi=xi, xi_b1=0.7 if bias else None)
    Q1, Q2 = 5, 4
    s = sysm.initial_state(rng.uniform(-1, 1, (Q1, 2)), rng.uniform(0, 1, Q1),
                           rng.uniform(-1, 1, Q2 if L == 2 else Q1),
                           W2_0=rng.uniform(-1, 1, (Q1, Q2)) if L == 2 else None,
                           b1_0=rng.uniform(-1, 1, Q1) if bias else None)
    d = sysm.rhs(s)
    assert sorted(d) == sorted(s) and all(d[k].shape == s[k].shape for k in s)
    xi_of = {"a": xi[0], "beta": xi[0], "b_1": 0.7, "v": xi[L], "W_2": xi[1]}
    grad = _flat({k: -d[k] * _node_weight(R, s, k) / xi_of[k] for k in s})   # should be ∂loss/∂θ
    x0 = _flat(s)
    f = lambda x: sysm.loss(_unflat(s, x))
    f0 = f(x0)

    def fd(h):
        g = np.empty_like(x0)
        for p in range(x0.size):
            e = np.zeros_like(x0)
            e[p] = h
            g[p] = (f(x0 + e) - f(x0 - e)) / (2 * h)
        return g

    h = 1e-5
    rounding = lambda h: 4 * EPS * abs(f0) / h
    err = np.abs(fd(h) - grad)
    tol = h * h / 6 * 2e3 + rounding(h)
    assert err.max() <= tol, (err.max(), tol)
    H = 1e-2
    e1, e2 = np.abs(fd(H) - grad), np.abs(fd(H / 2) - grad)
    assert np.all(e2 <= e1 / 4 * 1.1 + 4 * rounding(H / 2)), np.max(e2 - e1 / 4)
    assert e1.max() > 100 * rounding(H)       # truncation dominant: the order check is not vacuous
    assert np.abs(grad).max() > 1e-3    # the gradient is not trivially zero


# ============================================================================ 2. d = 2, k = 1 fold vs mfpde.solve

def _table(L: int) -> dict:
    """General d = 2 problem: tensor Gauss–Hermite index rule (w_a, w_b[, v⁰]) and data rule (x_1, x_2),
    odd sizes in the folded coordinate so that the mirror-plane node (w_b = 0, x_2 = 0) is exercised."""
    rules = ({"layer_1": {"kind": "gauss_hermite", "size": [8, 7, 3]}} if L == 1 else
             {"layer_1": {"kind": "gauss_hermite", "size": [8, 7]}, "layer_2": {"kind": "gauss_hermite", "size": 5}})
    init = ({"w_1": {"kind": "coordinate", "start": 0}, "v": {"kind": "coordinate", "start": 2}} if L == 1 else
            {"w_1": {"kind": "coordinate", "start": 0}, "W_2": 0.5, "v": {"kind": "coordinate", "start": 0}})
    return {"name": f"fold_l{L}",
            "model": {"input_dim": 2, "hidden": ["tanh"] * L},
            "rules": rules, "init": init,
            "schedules": {"weights": [1.0, 0.8] if L == 1 else [1.0, 0.8, 1.2]},
            "data": {"train": {"kind": "teacher", "d": 2,
                               "teacher": {"kind": "single_index_tanh", "direction": [1.0, 0.0], "scale": 2.0},
                               "rule": {"kind": "gauss_hermite", "size": [10, 7]}}},
            "solver": {"stepper": "euler", "dt": 0.05, "t_end": 1.0, "save_every": 0.25},
            "output": {"parameters": "all"}, "accuracy": {"estimate": False}}


@pytest.mark.parametrize("L", [1, 2])
def test_fold_d2_equals_general_solver(L):
    """Reduced (a, β, [W_2,] v) folded from the general rules = the general solve, at every saved time.

    Tolerance 1e-12: the two computations are the same sums in a different order (module docstring),
    so they differ by rounding only: per RHS evaluation a few ulp times the sums' lengths
    (≤ 168 nodes × 70 data × 2 ζ terms of size O(1): ≲ 1e-14), amplified over 20 Euler steps of
    dt = 0.05 by at most e^{Lip·t} with Lip = O(10) on these O(1) states."""
    sol = mfpde.solve(_table(L), estimate=False)
    sy = sol.system
    nodes, weights = sy.nodes[0], sy.weights[0]
    fnodes, fw, idx, sign = fold_reflection(nodes, weights, axis=1)
    assert np.any(fnodes[:, 1] == 0.0) and np.any(sign < 0)          # the plane node and mirror pairs exist
    tr = sy.problem.train
    X, Y, rho = np.asarray(tr.X), np.asarray(tr.Y)[:, 0], np.asarray(tr.weights)
    fX, frho, didx, _ = fold_reflection(X, rho, axis=1)
    fy = np.empty(len(frho))
    fy[didx] = Y
    np.testing.assert_array_equal(fy[didx], Y)                        # the target is mirror-invariant
    R = ReducedRules(index_weights=fw, zeta=[-1.0, 1.0], zeta_weights=[0.5, 0.5], z=fX[:, 0], r=fX[:, 1],
                     data_weights=frho, y=fy, layer2_weights=sy.weights[1] if L == 2 else None)
    red = ReducedSystem(R, ("tanh",) * L, xi=(1.0, 0.8) if L == 1 else (1.0, 0.8, 1.2))
    if L == 1:
        s0 = red.initial_state(fnodes[:, 0], fnodes[:, 1], fnodes[:, 2])
    else:
        s0 = red.initial_state(fnodes[:, 0], fnodes[:, 1], sy.nodes[1][:, 0], W2_0=0.5)
    saved = {}
    dt = 0.05
    euler(red, s0, dt, 20, callback=lambda n, s: saved.__setitem__(n, s) if n % 5 == 0 else None)
    assert np.allclose(sol.state_times, [0, 0.25, 0.5, 0.75, 1.0])
    loss_gen = sol.observable("loss_train")
    for t, y, lg in zip(sol.state_times, sol.states, loss_gen):
        s = saved[int(round(t / dt))]
        V = sy.views(y)
        np.testing.assert_allclose(V["w_1"][:, 0], s["a"][idx, 0], rtol=0, atol=1e-12)
        np.testing.assert_allclose(V["w_1"][:, 1], sign * s["beta"][idx], rtol=0, atol=1e-12)
        if L == 1:
            np.testing.assert_allclose(V["v"][:, 0], s["v"][idx], rtol=0, atol=1e-12)
        else:
            np.testing.assert_allclose(V["W_2"], s["W_2"][idx], rtol=0, atol=1e-12)
            np.testing.assert_allclose(V["v"][:, 0], s["v"], rtol=0, atol=1e-12)
        assert abs(red.loss(s) - lg) <= 1e-12
    # the dynamics moved: the check compares non-trivial trajectories
    assert loss_gen[-1] < 0.9 * loss_gen[0]
    assert np.abs(saved[20]["beta"] - s0["beta"]).max() > 1e-3


# ============================================================================ small unit checks

def test_fold_reflection_rejects_asymmetric_rule_and_counts_plane_once():
    n, w, idx, sign = fold_reflection(np.array([[0.0, -1.0], [0.0, 0.0], [0.0, 1.0]]), np.array([0.25, 0.5, 0.25]), 1)
    np.testing.assert_array_equal(n, [[0.0, 0.0], [0.0, 1.0]])
    np.testing.assert_array_equal(w, [0.5, 0.5])
    np.testing.assert_array_equal(idx, [1, 0, 1])
    np.testing.assert_array_equal(sign, [-1, 1, 1])
    with pytest.raises(ValueError, match="not symmetric"):
        fold_reflection(np.array([[0.0, -1.0], [0.0, 2.0]]), np.array([0.5, 0.5]), 1)


def test_bad_input_messages():
    R = dict(index_weights=[1.0], zeta=[0.0], zeta_weights=[1.0], z=[[0.0]], r=[1.0], data_weights=[1.0], y=[0.0])
    with pytest.raises(ValueError, match="r: radii"):
        ReducedRules(**{**R, "r": [-1.0]})
    with pytest.raises(ValueError, match="zeta: nodes"):
        ReducedRules(**{**R, "zeta": [1.5]})
    with pytest.raises(ValueError, match="y: expected 1 entries"):
        ReducedRules(**{**R, "y": [0.0, 1.0]})
    with pytest.raises(ValueError, match="layer2_weights"):
        ReducedSystem(ReducedRules(**R), ("tanh", "tanh"))
    with pytest.raises(ValueError, match="hidden"):
        ReducedSystem(ReducedRules(**R), ("tanh",) * 3)


def test_rk4_is_fourth_order():
    """RK4 on the reduced system: halving dt divides the error at t = 1 by ≈ 16 (reference: dt/8)."""
    rng = np.random.default_rng(3)
    R = _small_rules(rng, 1, k=1)
    sysm = ReducedSystem(R, ("tanh",))
    s0 = sysm.initial_state(rng.normal(size=(5, 1)), rng.uniform(0, 1, 5), rng.normal(size=5))
    ref = _flat(rk4(sysm, s0, 1 / 64, 64))
    e1 = np.abs(_flat(rk4(sysm, s0, 1 / 8, 8)) - ref).max()
    e2 = np.abs(_flat(rk4(sysm, s0, 1 / 16, 16)) - ref).max()
    assert 16 / 1.6 < e1 / e2 < 16 * 1.6, e1 / e2


# ============================================================================ 3. d = 3, k = 1 (m = 2) against refinement

_Z_RULE = {"kind": "gaussian_trapezoid", "size": 12, "half_width": 6.0}   # shared rule for a⁰ and z (the U direction)
_V_RULE = {"kind": "gauss_hermite", "size": 2}                           # v⁰ = ±1


def _d3_general_loss(n: int) -> np.ndarray:
    """mfpde.solve at d = 3: tensor rules (U direction: _Z_RULE; the two perpendicular coordinates:
    Gaussian trapezoid of size n on [−7, 7]) for w_1⁰ (with v⁰) and for the data x."""
    perp = {"kind": "gaussian_trapezoid", "size": n, "half_width": 7.0}
    tab = {"name": "d3", "model": {"input_dim": 3, "hidden": ["tanh"]},
           "rules": {"layer_1": {"kind": "tensor", "rules": [_Z_RULE, perp, perp, _V_RULE]}},
           "init": {"w_1": {"kind": "coordinate", "start": 0}, "v": {"kind": "coordinate", "start": 3}},
           "data": {"train": {"kind": "teacher", "d": 3,
                              "teacher": {"kind": "single_index_tanh", "direction": [1.0, 0.0, 0.0]},
                              "rule": {"kind": "tensor", "rules": [_Z_RULE, perp, perp]}}},
           "solver": {"stepper": "euler", "dt": 0.05, "t_end": 1.0, "save_every": 0.5},
           "output": {"parameters": "none"}, "accuracy": {"estimate": False}}
    return mfpde.solve(tab, estimate=False).observable("loss_train")


def _d3_reduced_loss(n: int) -> np.ndarray:
    """The reduced system at m = d − k = 2 on the same U-direction rules: β⁰ and r on a χ_2 rule
    (Gauss–Legendre of size n on [0, 9] times the density r e^{−r²/2}, normalised; truncation
    e^{−40.5}), ζ on Gauss–Chebyshev (arcsine law) with n nodes; Euler, dt = 0.05, t = 0, 0.5, 1."""
    from numpy.polynomial.legendre import leggauss
    from mfpde.problem.quadrature import make_rule

    zr, vr = make_rule(_Z_RULE), make_rule(_V_RULE)
    xa, wa = np.asarray(zr.nodes)[:, 0], np.asarray(zr.weights)
    xv, wv = np.asarray(vr.nodes)[:, 0], np.asarray(vr.weights)
    u, wu = leggauss(n)
    rb = 4.5 * (u + 1)
    wb = wu * rb * np.exp(-rb * rb / 2)
    wb /= wb.sum()
    A, B, V = (g.ravel() for g in np.meshgrid(xa, rb, xv, indexing="ij"))
    Z, Rr = (g.ravel() for g in np.meshgrid(xa, rb, indexing="ij"))
    zeta = np.cos((2 * np.arange(1, n + 1) - 1) * np.pi / (2 * n))
    R = ReducedRules(index_weights=np.einsum("a,b,c->abc", wa, wb, wv).ravel(), zeta=zeta,
                     zeta_weights=np.full(n, 1.0 / n), z=Z, r=Rr, data_weights=np.outer(wa, wb).ravel(),
                     y=np.tanh(Z))
    red = ReducedSystem(R, ("tanh",))
    out = []
    euler(red, red.initial_state(A, B, V), 0.05, 20,
          callback=lambda k, s: out.append(red.loss(s)) if k % 10 == 0 else None)
    return np.array(out)


def test_d3_general_solver_converges_to_reduced():
    """d = 3, k = 1: neither discretization is exact, but with the U-direction rules shared both
    converge to the same limit as the perpendicular rules grow.  Measured (train loss at t = 0.5, 1):
    the reduced system is settled to ≤ 4e-6 between n = 16 and 20 (3.7e-5 between 12 and 16), while the general solver's
    perpendicular tensor rule (n² nodes) approaches it: |general − reduced| ≈ 5.6e-3 at n = 10,
    ≈ 1.7e-4 at n = 18 (≈ 3.5e-5 at n = 26 with a wider trapezoid; not run here: 16 s).  Asserted:
    the gap shrinks ≥ 10× from n = 10 to 18 and ends below 3e-4 (0.3 % of the loss), and it is
    large compared with the reduced system's own refinement change at the coarse size."""
    red16, red20 = _d3_reduced_loss(16), _d3_reduced_loss(20)
    gen10, gen18 = _d3_general_loss(10), _d3_general_loss(18)
    np.testing.assert_allclose(gen10[0], red20[0], rtol=1e-13)        # t = 0: same z rule, ŷ ≡ 0 (v⁰ = ±1)
    settle = np.abs(red20 - red16)[1:].max()
    gap_coarse, gap_fine = np.abs(gen10 - red20)[1:].max(), np.abs(gen18 - red20)[1:].max()
    assert settle < 1e-5, settle
    assert gap_fine < gap_coarse / 10 and gap_fine < 3e-4, (gap_coarse, gap_fine)
    assert gap_coarse > 100 * settle
    assert red20[-1] < 0.6 * red20[0]                                  # the dynamics moved

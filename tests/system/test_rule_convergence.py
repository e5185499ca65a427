"""Refinement in the index-space rules (SPEC §3, §6 "Discretization").

(a) With identity activations the discretized system is exact once the rules integrate
    polynomials of degree 2 exactly, so every Gauss–Hermite size ≥ 2 gives the same trajectory.
(b) On the default-like tanh problem, refining the rules (Q = 8, 16, 32, 64 per feature)
    shrinks the successive changes of the loss curve, for Gauss–Hermite and for the Gaussian
    trapezoid rule; the observed rates are recorded (docs/convergence.md has the full table).
"""
from __future__ import annotations

import copy
import math
import tomllib

import numpy as np
import pytest

from mfpde.problem import config

from mfpde.problem import data

from mfpde.problem import embedding

from mfpde.problem import quadrature
from mfpde.problem.model import Embedding, Model, Problem, Schedules
from mfpde.solvers import integrate, make
from mfpde.system.system import System


# ============================================================================ (a) identity activations

def _identity_loss_curve(n: int) -> tuple[np.ndarray, np.ndarray]:
    """L = 2, d = 1, φ_1 = φ_2 = identity, squared loss; Gauss–Hermite rules of size n on both layers."""
    law = data.GaussianTeacherLaw(1, data.SingleIndexTanh([1.0], 2.0))
    train = law.quadrature(quadrature.gauss_hermite(10), name="train")     # fixed data rule
    model = Model(1, ("identity", "identity"), 1, loss="squared")
    rules = (quadrature.gauss_hermite(n, 0.3, 1.0), quadrature.gauss_hermite(n, -0.2, 0.8))
    emb = Embedding(rules, w_1=embedding.coordinate(), W=(embedding.constant(0.5),), v=embedding.coordinate())
    system = System(Problem(model, emb, Schedules.constant(2, 1.0), train))
    sol = integrate(system, make("rk4", system, dt=0.01), 2.0, save_every=0.1, parameters="none")
    return np.asarray(sol.times), sol.observable("loss_train")


def test_identity_activation_trajectory_independent_of_gauss_hermite_size():
    # Why size 4 (indeed any size ≥ 2) is exact.  Write u_1 = w_1^0 (layer-1 index), u_2 = v^0
    # (layer-2 index).  With φ = identity and no biases the limit system of SPEC §2 reads
    #   h_1(x, u_1) = w_1(u_1) x,   h_2(x, u_2) = a(u_2) x,   a(u_2) = E_{U_1}[W_2(U_1, u_2) w_1(U_1)],
    #   ŷ(x) = β x,  β = E_{U_2}[v(U_2) a(U_2)],   δ_3 = ŷ − y,   g = E_Z[δ_3 X] = β E X² − E[XY],
    #   ∂_t v(u_2) = −g a(u_2),  ∂_t W_2(u_1, u_2) = −g w_1(u_1) v(u_2),
    #   ∂_t w_1(u_1) = −g E_{U_2}[v(U_2) W_2(u_1, U_2)].
    # At t = 0, w_1 = u_1, v = u_2 (affine) and W_2 = 0.5 (constant).  The set {w_1 affine in u_1,
    # v affine in u_2, W_2 bilinear in (1, u_1) ⊗ (1, u_2)} is invariant: the integrand of a is of
    # degree ≤ 2 in u_1 (so a is affine in u_2), that of β of degree ≤ 2 in u_2, that of ∂_t w_1 of
    # degree ≤ 2 in u_2 (affine in u_1), and ∂_t W_2 ∝ w_1 v is bilinear.  Every expectation over an
    # index is therefore of a polynomial of degree ≤ 2, which an n-point Gauss–Hermite rule
    # integrates exactly for 2n − 1 ≥ 2, i.e. n ≥ 2.  RK4 stages are linear combinations of such
    # drifts, so each RK4 step maps the (finitely many) polynomial coefficients identically for
    # every exact rule: the node values are samples of the same polynomials and the loss (a
    # function of β and the fixed data only) agrees to rounding, ~1e-16 × (number of operations).
    _, ref = _identity_loss_curve(4)
    assert ref[0] - ref[-1] > 1e-2, "the trajectory must move"
    for n in (2, 8, 16):
        _, other = _identity_loss_curve(n)
        np.testing.assert_allclose(other, ref, rtol=1e-12, atol=1e-14)
    # sanity: a 1-point rule (exact to degree 1 only) gets the degree-2 integrals wrong
    _, one = _identity_loss_curve(1)
    assert np.max(np.abs(one - ref)) > 1e-4


# ============================================================================ (b) tanh refinement

def default_like_problem(kind: str, Q: int) -> Problem:
    """mfpde's embedded default (d = 1, tanh–tanh, teacher tanh(2x), W_2 = 0.5) with both index
    rules replaced by ``kind`` of size Q; the data rule stays at its default
    (gaussian_trapezoid, 64 nodes), so only the index rules change with Q."""
    raw = tomllib.loads(config.default_text())
    raw = copy.deepcopy(raw)
    raw["data"].pop("test", None)  # observables of the training law only
    raw.pop("probes", None)
    raw["rules"] = {"layer_1": {"kind": kind, "size": Q}, "layer_2": {"kind": kind, "size": Q}}
    return config.from_dict(raw).problem


def loss_curve(kind: str, Q: int, t_end: float = 10.0, dt: float = 0.01) -> np.ndarray:
    """Training loss at t = 0, 1, …, t_end (RK4, the default dt)."""
    system = System(default_like_problem(kind, Q))
    sol = integrate(system, make("rk4", system, dt=dt), t_end, save_every=1.0, parameters="none")
    return sol.observable("loss_train")


def successive_changes(curves: dict[int, np.ndarray]) -> dict[int, float]:
    """c_Q = sup over saved times of |loss_Q(t) − loss_{2Q}(t)| (an error estimate for size Q)."""
    Qs = sorted(curves)
    return {Q: float(np.max(np.abs(curves[Q] - curves[Q2]))) for Q, Q2 in zip(Qs, Qs[1:])}


def observed_rates(changes: dict[int, float]) -> dict[int, float]:
    """log2(c_Q / c_{2Q}): the observed order per doubling (p for an algebraic Q^{-p} error)."""
    Qs = sorted(changes)
    return {Q2: math.log2(changes[Q] / changes[Q2]) for Q, Q2 in zip(Qs, Qs[1:])}


@pytest.mark.parametrize("kind", ["gauss_hermite", "gaussian_trapezoid"])
def test_tanh_rule_refinement_changes_shrink(kind: str, record_property):
    Qs = (8, 16, 32, 64)
    curves = {Q: loss_curve(kind, Q) for Q in Qs}
    for c in curves.values():
        assert np.all(np.isfinite(c)) and c[-1] < 0.5 * c[0], "the run must train"
    changes = successive_changes(curves)          # c_8, c_16, c_32
    rates = observed_rates(changes)
    record_property("successive_changes", changes)
    record_property("observed_rates", rates)
    values = [changes[Q] for Q in sorted(changes)]
    assert all(b < a for a, b in zip(values, values[1:])), f"changes do not shrink monotonically: {changes}"
    # Measured (docs/convergence.md): ≥ 1.3 per doubling for Gauss–Hermite (slow, algebraic-looking),
    # ≥ 3.4 for the trapezoid rule.  Assert the weaker common property: at least first order.
    assert all(r >= 1.0 for r in rates.values()), f"observed rates per doubling {rates}"
    # the Q = 64 curve is within its own error estimate's order of magnitude of a converged value
    assert changes[32] < 2e-3

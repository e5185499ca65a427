"""The linearized (NTK) limit ([solver] linearize; mfpde.analysis.linearized; issue 19 items 2–3).

Checks, each against something mfpde does not compute itself:

* the tangent kernels Θ_b built from backward passes equal central differences of the forward
  output along the same directions (so the rule masses ω in Θ_b = Σ (1/ω) ∂ŷ ∂ŷ are right);
* the NTK at t = 0 of a one-hidden-layer erf or relu network in the mean-field parametrization
  equals its closed form (Williams 1997; the arc-cosine kernels of Cho & Saul 2009) to the
  accuracy of the rule, with the tolerance derived from the rule's error bound;
* the time-stepped linearized solve converges to the eigendecomposition closed form at the
  stepper's order;
* the α-scaled mean-field solve (lazy scaling) approaches the linearized one like 1/α;
* the linearized ODE's initial velocity dŷ/dt(0) = −Θ ρ ∂loss equals that of the mean-field
  solve (central differences of the forward output along the drift) for every loss;
* linearize = false changes nothing; bad input is one ConfigError.
"""
from __future__ import annotations

import math
import re

import numpy as np
import pytest

import mfpde
from mfpde.analysis import linearized as lin_mod
from mfpde.errors import ConfigError
from mfpde.system.system import System

X1 = [-1.5, -0.5, 0.2, 0.9, 1.7]
Y1 = [0.8, -0.3, 0.1, 0.5, 1.1]


def shallow(**solver) -> dict:
    """L = 1, d = 1, index c = (w, v) on a Gauss–Hermite product rule (symmetric in v: ŷ_0 = 0)."""
    return {"model": {"input_dim": 1, "hidden": ["tanh"], "loss": "squared"},
            "rules": {"layer_1": {"kind": "gauss_hermite", "size": [8, 6]}},
            "init": {"w_1": {"kind": "coordinate", "start": 0}, "v": {"kind": "coordinate", "start": 1}},
            "schedules": {"weights": [0.7, 1.3]},
            "data": {"train": {"kind": "arrays", "x": X1, "y": Y1}},
            "probes": [[-1.0], [0.0], [0.6], [1.4]],
            "solver": {"stepper": "rk4", "dt": 0.01, "t_end": 1.0, "save_every": 0.1, **solver},
            "accuracy": {"estimate": False}}


def deep() -> dict:
    """L = 2, d = 2, hidden and output biases, kernel middle weights: every block kind."""
    return {"model": {"input_dim": 2, "hidden": ["tanh", "tanh"], "loss": "squared", "biases": True, "output_bias": True},
            "rules": {"layer_1": {"kind": "gauss_hermite", "size": [3, 3, 2]},
                      "layer_2": {"kind": "gauss_hermite", "size": [3, 2]}},
            "init": {"w_1": {"kind": "coordinate", "start": 0}, "b_1": {"kind": "coordinate", "start": 2},
                     "W_2": {"kind": "kernel", "m": 0.3, "s": 0.8, "psi": "tanh", "A": [[1.0, 0.5, 0.0], [0.0, 1.0, 0.3]]},
                     "v": {"kind": "coordinate", "start": 0}, "b_2": {"kind": "coordinate", "start": 1}, "b_out": 0.2},
            "schedules": {"weights": [0.7, 1.1, 1.3], "biases": [0.4, 0.5, 0.6]},
            "data": {"train": {"kind": "arrays", "x": [[0.3, -0.8], [1.1, 0.4], [-0.6, 0.9]], "y": [0.5, -0.2, 0.7]}},
            "accuracy": {"estimate": False}}


# ----------------------------------------------------------------------------- the tangent kernels
@pytest.mark.parametrize("moved", [0.0, 0.5], ids=["theta_0", "a_later_state"])
def test_block_kernels_equal_central_differences_of_the_forward_output(moved):
    """At θ_0 and at a state away from it (θ_0 + 0.5·drift: the learned kernel Θ(T) is the same
    computation at θ(T))."""
    system = System(mfpde.load(deep()).problem)
    X = np.array(system.problem.train.X, float)
    y0 = system.y0 + moved * system.rhs(0.0, system.y0)
    blocks = lin_mod.gram(system, y0, X)
    D = lin_mod.jacobian_rows(system, y0, X, system.predict(y0, X))     # rows −(1/ω) ∂ŷ(x_m)/∂θ
    h = 1e-4
    for name in system.layout.views(y0):
        off, size = system.layout.offset(name), system.views(y0)[name].size
        for m in range(len(X)):
            u = np.zeros_like(y0)
            u[off:off + size] = -D[m, off:off + size]                   # (1/ω) ∂ŷ(x_m)/∂θ on block b
            s = float(np.abs(u).max())
            u /= s                                                         # a unit direction
            fd = (system.predict(y0 + h * u, X) - system.predict(y0 - h * u, X))[:, 0] / (2 * h)
            # Θ_b(x_n, x_m)/s = ∂ŷ(x_n)/∂θ · u: central differences, error h²/6·|∂³ŷ/∂ε³| ≲ 1e-8 (a tanh
            # network with O(1) weights, |u|∞ = 1), rounding eps/h ≈ 1e-12
            np.testing.assert_allclose(blocks[name][:, m] / s, fd, rtol=0, atol=1e-8, err_msg=name)


def _polar_relu_rule(sigma_w: float, sigma_v: float, arcs: int = 8, per_arc: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Nodes (w_1, w_2, v) [Q, 3] and weights of a rule for w ~ N(0, σ_w² I_2), v = ±σ_v:
    r²/(2σ_w²) ~ Exp(1) on 2 Gauss–Laguerre nodes (exact for degree ≤ 3 in r², the relu kernels need
    degree ≤ 1), the angle on Gauss–Legendre nodes per arc of π/4 (the kinks of relu(w·x) for data at
    angles kπ/4 lie on arc ends, so each arc's integrand is a trigonometric polynomial)."""
    s, ws = np.polynomial.laguerre.laggauss(2)
    g, wg = np.polynomial.legendre.leggauss(per_arc)
    edges = np.arange(arcs + 1) * (2 * math.pi / arcs)
    phi = np.concatenate([(a + b) / 2 + (b - a) / 2 * g for a, b in zip(edges, edges[1:])])
    wphi = np.tile(wg, arcs)
    nodes, weights = [], []
    for r, wr in zip(sigma_w * np.sqrt(2 * s), ws):
        for p, wp in zip(phi, wphi):
            for v in (-sigma_v, sigma_v):
                nodes.append([r * math.cos(p), r * math.sin(p), v])
                weights.append(wr * wp * 0.5)
    w = np.asarray(weights)
    return np.asarray(nodes), w / w.sum()


POINTS = np.array([[1.0, 0.0], [0.0, 0.9], [0.6, 0.6], [-0.5, 0.5], [-1.2, 0.0], [0.8, -0.8]])   # angles kπ/4


def _one_hidden(act: str, rule: dict, sigma_w: float, sigma_v: float) -> dict:
    return {"model": {"input_dim": 2, "hidden": [act], "loss": "squared"},
            "rules": {"layer_1": rule},
            "init": {"w_1": {"kind": "affine", "std": sigma_w, "start": 0} if act == "erf" else {"kind": "coordinate"},
                     "v": {"kind": "affine", "std": sigma_v, "start": 2} if act == "erf" else {"kind": "coordinate", "start": 2}},
            "schedules": {"weights": [0.7, 1.3]},
            "data": {"train": {"kind": "arrays", "x": POINTS.tolist(), "y": [0.0] * len(POINTS)}},
            "accuracy": {"estimate": False}}


def _analytic(act: str, sigma_w: float, sigma_v: float) -> tuple[np.ndarray, np.ndarray]:
    """(E_w[φ(w·x)φ(w·x')], E[v²] E_w[φ'(w·x)φ'(w·x')] x·x') for w ~ N(0, σ_w² I), in closed form."""
    G = POINTS @ POINTS.T
    C = sigma_w ** 2 * G
    if act == "erf":   # Williams 1997: E erf(a) erf(b) = (2/π) asin(2C_ab / √((1 + 2C_aa)(1 + 2C_bb)));
        dg = np.diag(C)   # erf' = (2/√π) e^{−z²}: E e^{−a²−b²} = det(I + 2C_2x2)^{−1/2}
        k_phi = 2 / math.pi * np.arcsin(2 * C / np.sqrt(np.outer(1 + 2 * dg, 1 + 2 * dg)))
        k_dphi = 4 / math.pi / np.sqrt(np.outer(1 + 2 * dg, 1 + 2 * dg) - 4 * C ** 2)
    else:              # Cho & Saul 2009: E relu relu = σ²|x||x'| J_1(θ)/(2π), E step step = J_0(θ)/(2π)
        n = np.linalg.norm(POINTS, axis=1)
        cross = POINTS[:, 0][:, None] * POINTS[:, 1][None, :] - POINTS[:, 1][:, None] * POINTS[:, 0][None, :]
        th = np.arctan2(np.abs(cross), G)      # the angle, accurate also near 0 and π (arccos is not)
        cos = np.cos(th)
        k_phi = sigma_w ** 2 * np.outer(n, n) * (np.sin(th) + (math.pi - th) * cos) / (2 * math.pi)
        k_dphi = (math.pi - th) / (2 * math.pi)
    return k_phi, sigma_v ** 2 * k_dphi * G


@pytest.mark.parametrize("act", ["erf", "relu"])
def test_ntk_at_t0_equals_the_closed_form_of_a_one_hidden_layer_network(act):
    sw, sv = 0.8, 1.2
    if act == "erf":
        # Gaussian-weighted trapezoid, 48 nodes per coordinate on [−9, 9] (h = 18/47): the integrands
        # are entire with Gaussian decay, e.g. e^{−a²−b²}·e^{−|u|²/2} = e^{−c|u|²} with
        # c ≤ 1/2 + 2σ_w²·max|x|² = 2.34, whose trapezoid error is ≈ 2e^{−π²/(c h²)} ≈ 1.4e-12 (Trefethen & Weideman 2014, §5);
        # truncation e^{−81/2} ≈ 3e-18; rounding over 4608 nodes ≈ 1e-13. Tolerance 1e-11.
        rule = {"kind": "tensor", "rules": [{"kind": "gaussian_trapezoid", "size": 48, "dim": 2},
                                            {"kind": "gauss_hermite", "size": 2}]}
        tol = 1e-11
    else:
        # the polar rule is exact up to Gauss–Legendre's error on each arc, ≤ (π/4)^16 2^16/16! ≈ 6e-11
        # relative for the degree-2 trigonometric integrand (its 16th derivative ≤ 2^16) — a crude bound,
        # in fact far smaller; with rounding: tolerance 1e-10
        nodes, weights = _polar_relu_rule(sw, sv)
        rule = {"kind": "user", "nodes": nodes.tolist(), "weights": weights.tolist()}
        tol = 1e-10
    system = System(mfpde.load(_one_hidden(act, rule, sw, sv)).problem)
    blocks = lin_mod.gram(system, system.y0, POINTS)
    k_phi, k_w = _analytic(act, sw, sv)
    np.testing.assert_allclose(blocks["v"], k_phi, rtol=0, atol=tol)          # Θ_v = E[φ φ']
    np.testing.assert_allclose(blocks["w_1"], k_w, rtol=0, atol=tol)          # Θ_w = E[v²] E[φ'φ'] x·x'
    np.testing.assert_allclose(lin_mod.ntk(system, system.y0, POINTS), 1.3 * k_phi + 0.7 * k_w, rtol=0, atol=2 * tol)


# ----------------------------------------------------------------------------- the time-stepped solve
@pytest.mark.parametrize("stepper, order", [("euler", 1), ("rk4", 4)])
def test_time_stepped_solve_converges_to_the_closed_form_at_the_stepper_order(stepper, order):
    r = shallow(stepper=stepper, t_end=2.0, save_every=0.5, linearize=True)
    r["probes"] = [[x] for x in X1]                  # ŷ_lin on the training points is recorded
    cfg = mfpde.load(r)
    lin = lin_mod.LinearizedSystem(System(cfg.problem))
    errors = []
    for dt in (0.1, 0.05):
        sol = mfpde.solve(cfg, dt=dt, parameters="none")
        exact = lin_mod.closed_form(lin, sol.times)
        errors.append(np.max(np.abs(np.asarray(sol.observable("yhat_probe")) - exact)))
    observed = math.log2(errors[0] / errors[1])
    assert order - 0.25 <= observed <= order + 0.35, (errors, observed)


def test_solution_has_the_mean_field_schema_and_regime_attribute():
    sol = mfpde.solve(shallow(linearize=True), parameters="all")
    ds = sol.to_xarray()
    assert ds.attrs["regime"] == "linearized"
    ref = mfpde.solve(shallow(), parameters="all").to_xarray()
    assert ref.attrs["regime"] == "mean_field"
    assert set(ds.data_vars) == set(ref.data_vars)
    assert ds["w_1"].shape == ref["w_1"].shape
    # at t = 0 both are θ_0 and ŷ_0
    np.testing.assert_array_equal(ds["w_1"].values[0], ref["w_1"].values[0])
    np.testing.assert_allclose(ds["yhat_probe"].values[0], ref["yhat_probe"].values[0], rtol=0, atol=1e-15)
    assert ds["loss_train"].values[0] == pytest.approx(ref["loss_train"].values[0], rel=1e-14)


SKEWED = {"kind": "tensor", "rules": [{"kind": "gauss_hermite", "size": 8, "mean": 1.0},
                                        {"kind": "user", "nodes": [-1.0, 2.0], "weights": [2.0, 1.0]}]}


@pytest.mark.parametrize("v_rule, low, high", [(SKEWED, 0.9, 1.1), (None, 1.9, 2.1)])
def test_the_alpha_scaled_solve_approaches_the_linearized_one_like_one_over_alpha(v_rule, low, high):
    """sup_t |ŷ_α − ŷ_lin| = O(1/α) (Chizat–Bach) with lazy scaling and ŷ_0 = 0.  The 1/α term is
    α × the second-order Taylor term, Σ ω [Δv Δw φ' x + ½ v Δw² φ'' x²] (v, w independent at t = 0;
    Δv independent of v, Δw ∝ v): the first part is ∝ E[v] = 0, the second ∝ E[v³] E_w[φ''(wx)(…)],
    where (…) is even in w and tanh'' odd.  A skewed v (v ∈ {−1, 2} with weights 2/3, 1/3: E v = 0,
    E v³ = 2) and a w law not symmetric about 0 (N(1, 1)) show the rate 1; laws symmetric in v and w
    (the Gauss–Hermite rule of ``shallow``) cancel the 1/α term and show 1/α²."""
    alphas = (10.0, 100.0, 1000.0)
    gaps = []
    for a in alphas:
        r = shallow(t_end=2.0, save_every=0.25)
        if v_rule is not None:
            r["rules"]["layer_1"] = v_rule
        r["model"].update(output_scale=a, lazy_scaling=True)
        full = np.asarray(mfpde.solve(r, parameters="none").observable("yhat_probe"))
        r["solver"]["linearize"] = True
        lin = np.asarray(mfpde.solve(r, parameters="none").observable("yhat_probe"))
        gaps.append(np.max(np.abs(full - lin)))
    rate = -np.polyfit(np.log(alphas), np.log(gaps), 1)[0]
    assert low <= rate <= high, (gaps, rate)


@pytest.mark.parametrize("loss, outputs", [("squared", 1), ("mse", 1), ("huber", 1), ("logistic", 1), ("softmax_ce", 2)])
def test_initial_velocity_of_the_outputs_equals_the_mean_field_one(loss, outputs):
    r = deep()
    r["model"].update(loss=loss, outputs=outputs)
    if outputs == 2:
        r["init"]["v"] = {"kind": "coordinate", "start": 0}
        r["init"]["b_out"] = [0.2, -0.1]
        r["data"]["train"]["y"] = [[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]
    elif loss == "logistic":
        r["data"]["train"]["y"] = [1.0, -1.0, 1.0]
    r["model"]["huber_delta"] = 0.3
    system = System(mfpde.load(r).problem)
    lin = lin_mod.LinearizedSystem(system)
    X = np.array(system.problem.train.X, float)   # a copy (System.evaluate caches by the identity of X)
    # mean field: dŷ/dt(0) = ∂ŷ/∂θ · drift, by central differences of the forward pass (error ≈ h²)
    drift = system.rhs(0.0, system.y0)
    h = 1e-5
    fd = (system.predict(system.y0 + h * drift, X) - system.predict(system.y0 - h * drift, X)) / (2 * h)
    # linearized: dŷ_lin/dt = −Σ_g Θ_g dc_g/dt, from the function-space right-hand side
    dc = lin.rhs(0.0, lin.y0)
    e = 1e-3
    dy = (lin.predict_all(e * dc) - lin.predict_all(0 * dc))[lin.slices["train"]] / e   # exact: linear in c
    np.testing.assert_allclose(dy, fd, rtol=0, atol=1e-8 * max(1.0, np.abs(fd).max()))
    # and the observables at t = 0 are the mean-field ones
    for k, v in system.observe(system.y0).items():
        np.testing.assert_allclose(lin.observe(lin.y0)[k], v, rtol=1e-13, atol=1e-15, err_msg=k)


def test_stored_parameters_follow_the_linearized_flow():
    """θ_0 + Δθ(t): on the final state the linearized output ŷ_0 + J Δθ (central differences of the
    forward pass along Δθ) is the stored ŷ_lin."""
    r = shallow(linearize=True, t_end=0.5)
    sol = mfpde.solve(r, parameters="all")
    system = System(mfpde.load(r).problem)
    dtheta = sol.states[-1] - system.y0
    P = np.asarray(system.problem.probes, float)
    h = 1e-4
    jd = (system.predict(system.y0 + h * dtheta, P) - system.predict(system.y0 - h * dtheta, P)) / (2 * h)
    np.testing.assert_allclose(system.predict(system.y0, P) + jd, sol.observable("yhat_probe")[-1], rtol=0, atol=1e-8)


def test_linearize_false_changes_nothing():
    a = mfpde.solve(shallow(), parameters="final")
    b = mfpde.solve(shallow(linearize=False), parameters="final")
    np.testing.assert_array_equal(a.observable("loss_train"), b.observable("loss_train"))
    np.testing.assert_array_equal(a.y, b.y)
    assert a.to_xarray().attrs["regime"] == "mean_field"


def test_the_error_estimate_runs_linearized_companions():
    r = shallow(linearize=True, t_end=0.5)
    r["accuracy"] = {"estimate": True}
    sol = mfpde.solve(r, parameters="none")
    assert sol.estimate.status == "ok", sol.estimate.status
    assert np.all(np.isfinite(sol.estimate.loss))


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("stepper", ["dopri5", "bs32", "backward_euler", "sdirk4"])
def test_unsupported_stepper_is_one_config_error(stepper):
    with pytest.raises(ConfigError, match=re.escape("solver.stepper")) as exc:
        mfpde.load(shallow(linearize=True, stepper=stepper))
    assert "\n" not in str(exc.value) and "fixed-step explicit" in str(exc.value)


def test_linearize_must_be_a_bool_and_refuses_checkpoints(tmp_path):
    with pytest.raises(ConfigError, match=re.escape("solver.linearize")):
        mfpde.load(shallow(linearize="yes"))
    with pytest.raises(ConfigError, match="checkpoint"):
        mfpde.solve(shallow(linearize=True), checkpoint=tmp_path / "c.ck")


def test_blocked_kernels_equal_the_one_block_kernels():
    """Θ accumulated in blocks of Jacobian rows (a small cap) is the same sum of products."""
    system = System(mfpde.load(deep()).problem)
    X = np.array([[0.3, -0.8], [1.1, 0.4], [-0.6, 0.9], [0.2, 0.2], [-1.0, -0.3]])
    one = lin_mod.gram(system, system.y0, X, cols=3)
    blocked = lin_mod.gram(system, system.y0, X, cols=3, cap=2 * system.size)   # 2 points per block
    for name in one:
        np.testing.assert_allclose(blocked[name], one[name], rtol=1e-13, atol=1e-15, err_msg=name)

"""The output scale α ([model] output_scale, lazy_scaling; issue 19 item 1).

mfpde solves ŷ = φ_{L+1}(α h_{L+1} + b_{L+1}) as the canonical system with v' = α v and
ξ_{L+1} × α² (mfpde.problem.config._output_scaling).  The check here is independent of that
change of variables: a numpy model of the α-scaled one-hidden-layer network in its *original*
parameters (w, v, b), its loss differentiated by central finite differences, and the mean-field
drift −ξ ∂𝓛/∂θ ÷ ω mapped to the stored variables (w, v' = α v, b) must equal System.rhs.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

import mfpde
from mfpde.errors import ConfigError
from mfpde.system.system import System

X = np.array([-1.5, -0.5, 0.2, 0.9, 1.7])
Y = np.array([0.8, -0.3, 0.1, 0.5, 1.1])


def raw(alpha: float | None = None, lazy: bool | None = None, xi_v: float = 1.0) -> dict:
    model = {"input_dim": 1, "hidden": ["tanh"], "loss": "squared", "output_bias": True}
    if alpha is not None:
        model["output_scale"] = alpha
    if lazy is not None:
        model["lazy_scaling"] = lazy
    return {"model": model,
            "rules": {"layer_1": {"kind": "gauss_hermite", "size": [4, 3]}},
            "init": {"w_1": {"kind": "coordinate", "start": 0}, "v": {"kind": "coordinate", "start": 1}, "b_out": 0.3},
            "schedules": {"weights": [0.7, xi_v], "biases": 0.4},
            "data": {"train": {"kind": "arrays", "x": X.tolist(), "y": Y.tolist()}},
            "solver": {"stepper": "rk4", "dt": 0.01, "t_end": 0.1}}


def numpy_drift(w, v, b, omega, alpha, xi_w, xi_v, xi_b, h=1e-6):
    """Mean-field drift of the α-network ŷ(x) = α Σ_q ω_q v_q tanh(w_q x) + b, 𝓛 = mean ½(ŷ − y)²,
    by central differences of 𝓛 in the original parameters."""
    def loss(w, v, b):
        yhat = alpha * (np.tanh(np.outer(X, w)) @ (omega * v)) + b
        return np.mean(0.5 * (yhat - Y) ** 2)

    def grad(f, p):
        g = np.zeros_like(p)
        for i in range(p.size):
            e = np.zeros_like(p)
            e.flat[i] = h
            g.flat[i] = (f(p + e) - f(p - e)) / (2 * h)
        return g

    dw = -xi_w * grad(lambda p: loss(p, v, b), w) / omega
    dv = -xi_v * grad(lambda p: loss(w, p, b), v) / omega
    db = -xi_b * grad(lambda p: np.array(loss(w, v, p[0])), np.array([b]))[0]
    return dw, dv, db


@pytest.mark.parametrize("alpha, lazy", [(1.0, False), (3.0, False), (0.25, False), (5.0, True)])
def test_the_alpha_network_drift_equals_finite_differences_in_the_original_parameters(alpha, lazy):
    system = System(mfpde.load(raw(alpha, lazy)).problem)
    base = System(mfpde.load(raw()).problem)
    V = system.views(system.y0)
    V0 = base.views(base.y0)
    omega = system.weights[0]
    # the stored v is v' = α v: the initial state is α times the α = 1 one, the rest unchanged
    np.testing.assert_array_equal(V["v"], alpha * V0["v"])
    np.testing.assert_array_equal(V["w_1"], V0["w_1"])
    w, v, b = V["w_1"][:, 0], V["v"][:, 0] / alpha, float(V["b_out"][0])
    lazy_f = 1.0 / alpha ** 2 if lazy else 1.0
    dw, dv, db = numpy_drift(w, v, b, omega, alpha, 0.7 * lazy_f, 1.0 * lazy_f, 0.4 * lazy_f)
    D = system.views(system.rhs(0.0, system.y0))
    # central differences with h = 1e-6 on an O(1) smooth loss: truncation ~h²·|𝓛'''| ≈ 1e-12 (× α³ for v),
    # rounding ~eps·|𝓛|/h ≈ 1e-10 (× 1/ω for the drift, ω ≥ 0.005 here): atol 1e-7 relative to the drift scale
    scale = max(np.abs(dw).max(), alpha * np.abs(dv).max(), abs(db))
    np.testing.assert_allclose(D["w_1"][:, 0], dw, rtol=0, atol=1e-7 * scale)
    np.testing.assert_allclose(D["v"][:, 0], alpha * dv, rtol=0, atol=1e-7 * scale)     # dv'/dt = α dv/dt
    np.testing.assert_allclose(D["b_out"][0], db, rtol=0, atol=1e-7 * scale)
    # and the output is the α-network's
    yhat = alpha * (np.tanh(np.outer(X, w)) @ (omega * v)) + b
    _, _, Yhat = system.evaluate(system.y0, X[:, None], Y[:, None], np.full(len(X), 1 / len(X)))
    np.testing.assert_allclose(Yhat[:, 0], yhat, rtol=1e-13, atol=1e-14)


def test_lazy_scaling_slows_every_rate_by_alpha_squared_and_alpha_one_changes_nothing():
    a = System(mfpde.load(raw(4.0, True)).problem)
    b = System(mfpde.load(raw(4.0, False)).problem)
    np.testing.assert_allclose(a.rhs(0.0, a.y0), b.rhs(0.0, b.y0) / 16.0, rtol=1e-14, atol=0)
    c = System(mfpde.load(raw(1.0, False)).problem)
    d = System(mfpde.load(raw()).problem)
    np.testing.assert_array_equal(c.y0, d.y0)
    np.testing.assert_array_equal(c.rhs(0.0, c.y0), d.rhs(0.0, d.y0))


@pytest.mark.parametrize("value, words", [(0.0, "output_scale"), (-1.0, "output_scale"), (1e7, "must lie in [1e-6, 1e6]"),
                                          ("big", "output_scale")])
def test_bad_output_scale_is_one_config_error(value, words):
    with pytest.raises(ConfigError, match=re.escape(words)):
        mfpde.load(raw(value))


def test_lazy_scaling_must_be_a_bool():
    r = raw(2.0)
    r["model"]["lazy_scaling"] = "yes"
    with pytest.raises(ConfigError, match="lazy_scaling"):
        mfpde.load(r)

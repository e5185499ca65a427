"""Tests of the mapped / tuned Gaussian rules of mfpde.problem.quadrature (issue 16, item 3).

``gaussian_trapezoid`` with ``map = "sinh"`` (and ``scale``), ``half_width = "auto"``, and
``gauss_hermite`` with ``scale``: closed-form moments, convergence rates from the trapezoid
error theory, round trips, unchanged defaults and one-line errors for bad input.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import mfpde
from mfpde.errors import ConfigError
from mfpde.problem import quadrature as quad

EPS = np.finfo(np.float64).eps


@pytest.fixture(autouse=True)
def _raise_on_float_errors():
    with np.errstate(all="raise", under="ignore"):
        yield


def _expect(rule, f) -> float:
    return float(rule.expect(f(rule.nodes[:, 0])))


def _tail(a: float) -> float:
    """P(|Z| > a) = 2Φ(−a): the mass a truncated rule misses."""
    return math.erfc(a / math.sqrt(2.0))


def _double_factorial(k: int) -> int:
    return math.prod(range(k, 0, -2)) if k > 0 else 1


# --- sinh-mapped trapezoid -------------------------------------------------------------------

@pytest.mark.parametrize("k", range(0, 5))
def test_sinh_trapezoid_even_moments_to_rounding(k):
    # half_width 12: truncated mass of u^8 φ is ~1e-24; the s-integrand is analytic and
    # bounded in |Im s| < π/6, so the spacing error is ≲ e^{−2π(π/6)/h} = e^{−66} (h = 0.0497).
    # What remains is rounding of a 129-term sum: ≤ 129·eps relative.
    rule = quad.gaussian_trapezoid(129, map="sinh", half_width=12.0)
    exact = _double_factorial(2 * k - 1)
    assert abs(_expect(rule, lambda u: u ** (2 * k)) - exact) <= 129 * EPS * exact
    odd = _expect(rule, lambda u: u ** (2 * k + 1))       # symmetric nodes: odd moments cancel
    assert abs(odd) <= 129 * EPS * math.sqrt(_double_factorial(4 * k + 1))


def test_sinh_trapezoid_maps_to_mean_and_std():
    rule = quad.gaussian_trapezoid(129, mean=1.0, std=2.0, map="sinh", half_width=12.0)
    assert abs(_expect(rule, lambda x: x) - 1.0) <= 1e-13
    assert abs(_expect(rule, lambda x: x * x) - 5.0) <= 1e-13          # m² + s²
    assert rule.nodes.min() == pytest.approx(1.0 - 2.0 * 12.0, rel=1e-14)


def test_sinh_trapezoid_cos_converges_to_closed_form():
    # E[cos(2Z)] = e^{-2}; truncation at 9 costs ≤ 2·2Φ(−9) ~ 4e-19, spacing e^{−2π(π/6)/h}:
    # h = 2·asinh(9)/96 = 0.060 → e^{−55}.  So at 97 nodes only rounding is left.
    errs = [abs(_expect(quad.gaussian_trapezoid(n, map="sinh", half_width=9.0), lambda u: np.cos(2 * u))
                - math.exp(-2.0)) for n in (17, 33, 97)]
    assert errs[2] <= 97 * EPS
    assert errs[1] < errs[0] * 1e-3                      # exponential in n: halving h squares the error


@pytest.mark.parametrize("n", [17, 33, 65])
def test_sinh_beats_linear_on_a_near_pole(n):
    # f(u) = 1/(1 + u²/b²) has poles at u = ±ib, E f = b√(π/2) e^{b²/2} erfc(b/√2).
    # Linear trapezoid (spacing h = 18/(n−1)): error ~ 4π|Res| e^{−2πb/h}.  Sinh map
    # u = sinh(s): the pole moves to s = i·asin(b), spacing h_s = 2 asinh(6)/(n−1), so the error is
    # ≤ 4π|Res| e^{−2π asin(b)/h_s} (Res = b e^{b²/2}/(2√(2π)), the residue of f·φ) plus the
    # truncation 2·2Φ(−6)·sup f.
    b = 0.3
    f = lambda u: 1.0 / (1.0 + (u / b) ** 2)
    exact = b * math.sqrt(math.pi / 2) * math.exp(b * b / 2) * math.erfc(b / math.sqrt(2))
    res = b * math.exp(b * b / 2) / (2 * math.sqrt(2 * math.pi))
    hs = 2 * math.asinh(6.0) / (n - 1)
    bound_sinh = 4 * math.pi * res * math.exp(-2 * math.pi * math.asin(b) / hs) + 2 * _tail(6.0)
    err_sinh = abs(_expect(quad.gaussian_trapezoid(n, map="sinh"), f) - exact)
    err_linear = abs(_expect(quad.gaussian_trapezoid(n), f) - exact)
    assert err_sinh <= 1.5 * bound_sinh
    h = 18.0 / (n - 1)
    assert err_linear >= 0.1 * 4 * math.pi * res * math.exp(-2 * math.pi * b / h)   # the linear rule's rate
    assert err_sinh * 100 < err_linear


def test_sinh_scale_sets_the_core_spacing():
    # near u = 0, du/ds = scale: the central spacing is scale·h_s, h_s = 2 asinh(hw/scale)/(n−1)
    for scale in (0.5, 1.0, 3.0):
        rule = quad.gaussian_trapezoid(33, map="sinh", scale=scale, half_width=6.0)
        u = np.sort(rule.nodes[:, 0])
        hs = 2 * math.asinh(6.0 / scale) / 32
        assert u[16] == pytest.approx(0.0, abs=1e-15)
        assert u[17] - u[16] == pytest.approx(scale * math.sinh(hs), rel=1e-12)
        assert u[-1] == pytest.approx(6.0, rel=1e-12)


# --- half_width = "auto" ---------------------------------------------------------------------

@pytest.mark.parametrize("n", [16, 32, 64, 128])
def test_auto_half_width_follows_the_cube_root_law_and_bounds_the_error(n):
    rule = quad.make_rule({"kind": "gaussian_trapezoid", "size": n, "half_width": "auto"})
    a = (2 * math.pi * quad.AUTO_STRIP * (n - 1)) ** (1 / 3)
    assert rule.nodes.max() == pytest.approx(a, rel=1e-14)
    # cos(2u)φ(u) is entire: the spacing error e^{−(2π/h − 2)²/2} is < 1e-28 for h = 2a/(n−1) ≤ 0.47,
    # so the error is the truncation of normalised weights, at most 2·P(|Z| > a)·sup|cos|.
    err = abs(_expect(rule, lambda u: np.cos(2 * u)) - math.exp(-2.0))
    assert err <= 2 * _tail(a) + 64 * EPS


def test_auto_half_width_in_an_iid_config():
    raw = {"model": {"input_dim": 1, "hidden": ["tanh"], "loss": "squared"},
           "iid": {"rule": {"kind": "gaussian_trapezoid", "size": 16, "half_width": "auto"}},
           "data": {"train": {"kind": "teacher", "d": 1, "teacher": {"kind": "single_index_tanh", "direction": [1.0]},
                              "sample": 8, "seed": 0}},
           "solver": {"stepper": "euler", "dt": 0.1, "t_end": 0.1}}
    rule = mfpde.load(raw).problem.embedding.rules[0]
    a = (2 * math.pi * quad.AUTO_STRIP * 15) ** (1 / 3)
    assert rule.size == 256 and np.abs(rule.nodes).max() == pytest.approx(a, rel=1e-14)


def test_iid_rules_pass_the_map_and_scale_options_through():
    # [iid] rule = sinh-mapped trapezoid per coordinate, layer 2 a scaled Gauss–Hermite: the layers' rules
    # are exactly the tensor of the 1-D rules built directly (the options are not dropped on the way)
    raw = {"model": {"input_dim": 2, "hidden": ["tanh", "tanh"], "loss": "squared"},
           "iid": {"rule": {"kind": "gaussian_trapezoid", "size": 6, "map": "sinh", "scale": 1.5},
                   "rules": {"layer_2": {"kind": "gauss_hermite", "size": 5, "scale": 0.7}}},
           "data": {"train": {"kind": "teacher", "d": 2, "teacher": {"kind": "two_layer", "width": 2, "seed": 0},
                              "sample": 8, "seed": 0}},
           "solver": {"stepper": "euler", "dt": 0.1, "t_end": 0.1}}
    r1, r2 = mfpde.load(raw).problem.embedding.rules
    one = quad.gaussian_trapezoid(6, map="sinh", scale=1.5)
    np.testing.assert_array_equal(np.sort(np.unique(r1.nodes[:, 0])), np.sort(one.nodes[:, 0]))
    assert r1.size == 36
    np.testing.assert_allclose(np.sort(r1.weights), np.sort(np.outer(one.weights, one.weights).ravel()), rtol=1e-14)
    np.testing.assert_array_equal(r2.nodes, quad.gauss_hermite(5, scale=0.7).nodes)
    bad = dict(raw, iid={**raw["iid"], "rules": {"layer_2": {"kind": "gauss_hermite", "size": 5, "map": "sinh"}}})
    with pytest.raises(ConfigError, match="map"):
        mfpde.load(bad)


# --- Gauss-Hermite with a scale --------------------------------------------------------------

def test_gauss_hermite_scale_one_is_the_plain_rule():
    plain, scaled = quad.gauss_hermite(12), quad.gauss_hermite(12, scale=1.0)
    assert np.array_equal(plain.nodes, scaled.nodes) and np.array_equal(plain.weights, scaled.weights)


@pytest.mark.parametrize("scale", [0.7, 1.5])
def test_gauss_hermite_scale_converges_to_normal_moments(scale):
    # The reweighted rule is Gauss–Hermite for N(0, σ²) applied to f·φ/φ_σ, an entire function
    # times e^{κu²}, κ = (1/σ² − 1)/2 < 1/(2σ²): convergence is geometric in n, not exact.
    def errs(f, exact):
        return [abs(_expect(quad.gauss_hermite(n, scale=scale), f) - exact) for n in (10, 20, 40)]

    for f, exact in ((lambda u: u * u, 1.0), (lambda u: np.cos(2 * u), math.exp(-2.0))):
        e10, e20, e40 = errs(f, exact)
        assert e20 <= 1e-2 * e10 + 64 * EPS
        assert e40 <= 1e-8


def test_gauss_hermite_scale_maps_to_mean_and_std():
    rule = quad.gauss_hermite(40, mean=-1.0, std=0.5, scale=0.8)
    assert abs(_expect(rule, lambda x: x) + 1.0) <= 1e-12
    assert abs(_expect(rule, lambda x: x * x) - 1.25) <= 1e-12         # m² + s²
    assert np.abs(rule.nodes[:, 0] + 1.0).max() == pytest.approx(0.5 * 0.8 * np.polynomial.hermite_e.hermegauss(40)[0].max(),
                                                                 rel=1e-13)


# --- provenance, defaults, bad input ---------------------------------------------------------

@pytest.mark.parametrize("spec", [
    {"kind": "gaussian_trapezoid", "size": 9, "map": "sinh"},
    {"kind": "gaussian_trapezoid", "size": [9, 5], "map": "sinh", "scale": 0.5, "half_width": 7.0},
    {"kind": "gaussian_trapezoid", "size": 9, "half_width": "auto", "dim": 2},
    {"kind": "gaussian_trapezoid", "size": 9, "map": "linear"},
    {"kind": "gauss_hermite", "size": 9, "scale": 0.7, "mean": 1.0},
    {"kind": "tensor", "rules": [{"kind": "gaussian_trapezoid", "size": 7, "map": "sinh"},
                                 {"kind": "gauss_hermite", "size": 4, "scale": 1.3}]},
])
def test_round_trip(spec):
    rule = quad.make_rule(spec)
    again = quad.make_rule(quad.rule_to_dict(rule))
    assert np.array_equal(rule.nodes, again.nodes) and np.array_equal(rule.weights, again.weights)
    assert quad.rule_to_dict(again) == quad.rule_to_dict(rule)


def test_defaults_are_unchanged():
    t = quad.gaussian_trapezoid(16)
    assert t.params == {"size": 16, "mean": 0.0, "std": 1.0, "half_width": 9.0}
    assert np.array_equal(t.nodes[:, 0], np.linspace(-9.0, 9.0, 16))
    assert quad.gauss_hermite(8).params == {"size": 8, "mean": 0.0, "std": 1.0}
    sinh = quad.gaussian_trapezoid(16, map="sinh")
    assert sinh.params["half_width"] == quad.SINH_HALF_WIDTH and "scale" not in sinh.params
    assert "map=sinh" in sinh.describe()


def test_gauss_hermite_scale_overflow_is_a_config_error():
    # σ = 0.2 multiplies the weight at the largest node ξ ≈ √(4n) by e^{ξ²(1−σ²)/2} ≈ e^{1.9n}: inf for n = 2000
    with pytest.raises(ConfigError, match=r"rule\.scale.*overflows the reweighting"):
        quad.make_rule({"kind": "gauss_hermite", "size": 2000, "scale": 0.2})


@pytest.mark.parametrize("spec, key, words", [
    ({"kind": "gaussian_trapezoid", "size": 8, "map": "cosh"}, "rule.map", "linear, sinh"),
    ({"kind": "gaussian_trapezoid", "size": 8, "scale": 2.0}, "rule.scale", "only used with map"),
    ({"kind": "gaussian_trapezoid", "size": 8, "map": "sinh", "scale": 0.0}, "rule.scale", "must be in"),
    ({"kind": "gaussian_trapezoid", "size": 8, "map": "sinh", "scale": -1.0}, "rule.scale", "must be in"),
    ({"kind": "gaussian_trapezoid", "size": 8, "half_width": "wide"}, "rule.half_width", "\"auto\""),
    ({"kind": "gaussian_trapezoid", "size": 8, "map": "sinh", "half_width": "auto"}, "rule.half_width",
     "for map = \"linear\""),
    ({"kind": "gaussian_trapezoid", "size": 8, "half_width": 40.0}, "rule.half_width", "must be in"),
    ({"kind": "gauss_hermite", "size": 8, "scale": 0.1}, "rule.scale", "must be in [0.2, 5]"),
    ({"kind": "gauss_hermite", "size": 8, "scale": "wide"}, "rule.scale", ""),
    ({"kind": "gauss_legendre", "size": 8, "scale": 1.0}, "rule", "scale"),
])
def test_bad_input_is_one_line_config_error(spec, key, words):
    with pytest.raises(ConfigError) as info:
        quad.make_rule(spec)
    message = str(info.value)
    assert key in message and words in message and "\n" not in message

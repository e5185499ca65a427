"""Tests of mfpde.problem.quadrature: exactness, convergence, tracers, config validation, provenance."""
from __future__ import annotations

import itertools
import math
import tomllib
import warnings
from fractions import Fraction

import numpy as np
import pytest
from fuzzing import fuzz_settings
from hypothesis import given
from hypothesis import strategies as st

from mfpde import checks
from mfpde.problem import quadrature as quad
from mfpde.errors import ConfigError

SETTINGS = fuzz_settings(60)


@pytest.fixture(autouse=True)
def _raise_on_float_errors():
    with np.errstate(all="raise", under="ignore"):
        yield


# --- exact moments ---------------------------------------------------------------------------

def _double_factorial(k: int) -> int:
    return math.prod(range(k, 0, -2)) if k > 0 else 1


def normal_moment(p: int, mean: float, std: float) -> float:
    """E[(m + sZ)^p] = Σ_k C(p, k) m^(p-k) s^k E[Z^k], E[Z^k] = (k-1)!! for even k (exact)."""
    m, s = Fraction(mean), Fraction(std)
    return float(sum(math.comb(p, k) * m ** (p - k) * s ** k * _double_factorial(k - 1)
                     for k in range(0, p + 1, 2)))


def normal_abs_moment(p: int, mean: float, std: float) -> float:
    """E[(|m| + s|Z|)^p]: the size of the terms, used to scale tolerances."""
    abs_z = [2 ** (k / 2) * math.gamma((k + 1) / 2) / math.sqrt(math.pi) for k in range(p + 1)]
    return sum(math.comb(p, k) * abs(mean) ** (p - k) * std ** k * abs_z[k] for k in range(p + 1))


def uniform_moment(p: int, low: float, high: float) -> float:
    a, b = Fraction(low), Fraction(high)
    return float((b ** (p + 1) - a ** (p + 1)) / ((p + 1) * (b - a)))


def rel_error(approx, exact, scale) -> float:
    return abs(float(approx) - exact) / max(scale, 1e-300)


means = st.floats(-3.0, 3.0)
stds = st.floats(0.2, 3.0)


# --- Gauss rules -----------------------------------------------------------------------------

@SETTINGS
@given(data=st.data(), n=st.integers(1, 40), mean=means, std=stds)
def test_gauss_hermite_exact_to_degree_2n_minus_1(data, n, mean, std):
    p = data.draw(st.integers(0, 2 * n - 1))
    rule = quad.gauss_hermite(n, mean=mean, std=std)
    got = rule.expect(rule.nodes[:, 0] ** p)
    assert rel_error(got, normal_moment(p, mean, std), normal_abs_moment(p, mean, std)) < 1e-10


@pytest.mark.parametrize("n", [1, 2, 5, 12])
def test_gauss_hermite_not_exact_at_degree_2n(n):
    rule = quad.gauss_hermite(n)
    assert abs(rule.expect(rule.nodes[:, 0] ** (2 * n)) - normal_moment(2 * n, 0.0, 1.0)) > 0.1


@pytest.mark.parametrize("n", [301, 1000])
def test_gauss_hermite_large_n_uses_stable_nodes(n):
    rule = quad.gauss_hermite(n, mean=1.0, std=2.0)
    for p in (1, 2, 4, 8):
        got = rule.expect(rule.nodes[:, 0] ** p)
        assert rel_error(got, normal_moment(p, 1.0, 2.0), normal_abs_moment(p, 1.0, 2.0)) < 1e-10


@SETTINGS
@given(data=st.data(), n=st.integers(1, 40), low=st.floats(-3.0, 3.0), width=st.floats(0.1, 4.0))
def test_gauss_legendre_exact_to_degree_2n_minus_1(data, n, low, width):
    p = data.draw(st.integers(0, 2 * n - 1))
    high = low + width
    rule = quad.gauss_legendre(n, low=low, high=high)
    assert np.all((rule.nodes > low) & (rule.nodes < high))
    scale = max(abs(low), abs(high)) ** p
    assert rel_error(rule.expect(rule.nodes[:, 0] ** p), uniform_moment(p, low, high), scale) < 1e-10


@SETTINGS
@given(data=st.data(), n1=st.integers(1, 8), n2=st.integers(1, 8), m=st.tuples(means, means),
       s=st.tuples(stds, stds))
def test_tensor_gauss_hermite_exact_for_products_of_monomials(data, n1, n2, m, s):
    a = data.draw(st.integers(0, 2 * n1 - 1))
    b = data.draw(st.integers(0, 2 * n2 - 1))
    rule = quad.gauss_hermite([n1, n2], mean=list(m), std=list(s))
    assert rule.size == n1 * n2 and rule.dim == 2
    got = rule.expect(rule.nodes[:, 0] ** a * rule.nodes[:, 1] ** b)
    exact = normal_moment(a, m[0], s[0]) * normal_moment(b, m[1], s[1])
    scale = normal_abs_moment(a, m[0], s[0]) * normal_abs_moment(b, m[1], s[1])
    assert rel_error(got, exact, scale) < 1e-10


@SETTINGS
@given(data=st.data(), n1=st.integers(1, 8), n2=st.integers(1, 8), mean=means, std=stds,
       low=st.floats(-2.0, 2.0), width=st.floats(0.1, 3.0))
def test_tensor_of_mixed_rules_exact_for_products_of_monomials(data, n1, n2, mean, std, low, width):
    a = data.draw(st.integers(0, 2 * n1 - 1))
    b = data.draw(st.integers(0, 2 * n2 - 1))
    high = low + width
    rule = quad.tensor(quad.gauss_hermite(n1, mean, std), quad.gauss_legendre(n2, low, high))
    got = rule.expect(rule.nodes[:, 0] ** a * rule.nodes[:, 1] ** b)
    exact = normal_moment(a, mean, std) * uniform_moment(b, low, high)
    scale = normal_abs_moment(a, mean, std) * max(abs(low), abs(high)) ** b
    assert rel_error(got, exact, scale) < 1e-10


def test_tensor_first_rule_varies_slowest_and_weights_multiply():
    r1, r2 = quad.user([0.0, 1.0], [1.0, 3.0]), quad.user([10.0, 20.0, 30.0])
    rule = quad.tensor(r1, r2)
    np.testing.assert_array_equal(rule.nodes[:, 0], [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(rule.nodes[:, 1], [10, 20, 30] * 2)
    np.testing.assert_allclose(rule.weights, np.outer(r1.weights, r2.weights).ravel(), rtol=1e-15)


def test_scalar_law_with_dim_gives_tensor_rule():
    rule = quad.gauss_hermite(4, dim=3)
    assert rule.size == 64 and rule.dim == 3
    np.testing.assert_array_equal(rule.nodes, quad.gauss_hermite([4, 4, 4]).nodes)


# --- Smolyak ---------------------------------------------------------------------------------

SMOLYAK_CASES = [(dim, level, base) for dim in (2, 3, 4) for level in (1, 2, 3, 4, 5)
                 for base in quad.SMOLYAK_BASES if not (dim == 4 and level == 5)]


def _smolyak_moment(alpha, base, law):
    if base == "gauss_hermite":
        return (math.prod(normal_moment(a, law["mean"], law["std"]) for a in alpha),
                math.prod(normal_abs_moment(a, law["mean"], law["std"]) for a in alpha))
    bound = max(abs(law["low"]), abs(law["high"]))
    return (math.prod(uniform_moment(a, law["low"], law["high"]) for a in alpha),
            bound ** sum(alpha))


@pytest.mark.parametrize("dim,level,base", SMOLYAK_CASES)
def test_smolyak_exact_for_total_degree_2_level_minus_1(dim, level, base):
    law = {"mean": 0.5, "std": 1.5} if base == "gauss_hermite" else {"low": -1.0, "high": 2.0}
    rule = quad.smolyak(dim, level, base, **law)
    assert abs(rule.weights.sum() - 1.0) < 1e-12
    degree = 2 * level - 1
    for alpha in itertools.product(range(degree + 1), repeat=dim):
        if sum(alpha) > degree:
            continue
        got = rule.expect(np.prod(rule.nodes ** np.asarray(alpha), axis=1))
        exact, scale = _smolyak_moment(alpha, base, law)
        assert rel_error(got, exact, scale) < 1e-10, alpha
    # One degree higher fails (x_1^(2 level)), so the test above can fail.
    alpha = (2 * level,) + (0,) * (dim - 1)
    exact, scale = _smolyak_moment(alpha, base, law)
    assert rel_error(rule.expect(rule.nodes[:, 0] ** (2 * level)), exact, scale) > 1e-6


def test_smolyak_merges_coincident_nodes_and_has_negative_weights():
    rule = quad.smolyak(3, 4)
    unmerged = sum(math.comb(2 * 3 - 1 + s, s) for s in range(4))
    assert rule.size < unmerged
    gaps = np.abs(rule.nodes[:, None, :] - rule.nodes[None, :, :]).max(axis=2)
    np.fill_diagonal(gaps, np.inf)
    assert gaps.min() > 1e-12
    assert rule.weights.min() < 0
    assert abs(rule.weights.sum() - 1.0) < 1e-12


def test_smolyak_in_one_dimension_is_gauss_rule_with_level_nodes():
    sparse, gauss = quad.smolyak(1, 6, mean=1.0, std=2.0), quad.gauss_hermite(6, 1.0, 2.0)
    np.testing.assert_allclose(sparse.nodes, gauss.nodes, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(sparse.weights, gauss.weights, rtol=1e-13)


# --- Gaussian trapezoid ----------------------------------------------------------------------

def _trapezoid_cos_error(n: int, a: float) -> float:
    rule = quad.gaussian_trapezoid(n, half_width=9.0)
    return abs(float(rule.expect(np.cos(a * rule.nodes[:, 0]))) - math.exp(-a * a / 2))


def test_gaussian_trapezoid_cos_error_below_1e_12_at_97_nodes():
    assert _trapezoid_cos_error(97, 1.0) < 1e-12


def test_gaussian_trapezoid_converges_exponentially():
    e17, e33, e65 = (_trapezoid_cos_error(n, 4.0) for n in (17, 33, 65))
    assert e33 < 1e-3 * e17 and e65 < 1e-3 * e33


def test_gaussian_trapezoid_nodes_equally_spaced_on_scaled_interval():
    rule = quad.gaussian_trapezoid(9, mean=1.0, std=2.0, half_width=4.0)
    np.testing.assert_allclose(rule.nodes[:, 0], 1.0 + 2.0 * np.linspace(-4, 4, 9), rtol=1e-15)
    u = np.linspace(-4, 4, 9)
    np.testing.assert_allclose(rule.weights, np.exp(-u * u / 2) / np.exp(-u * u / 2).sum(), rtol=1e-14)
    assert quad.gaussian_trapezoid(1, mean=3.0).nodes[0, 0] == 3.0


# --- Sobol and Monte Carlo -------------------------------------------------------------------

@pytest.mark.parametrize("make", [quad.sobol, quad.monte_carlo])
@pytest.mark.parametrize("n", [1, 100, 1024])
def test_sampled_rules_have_equal_weights_summing_to_one(make, n):
    rule = make(n, 3)
    assert rule.size == n and rule.dim == 3
    assert np.all(rule.weights == rule.weights[0])
    assert abs(rule.weights.sum() - 1.0) < 1e-12


@pytest.mark.parametrize("seed", range(4))
def test_monte_carlo_mean_within_5_standard_errors(seed):
    n = 2000
    normal = quad.monte_carlo(n, 2, seed=seed, mean=[1.0, -2.0], std=[0.5, 3.0])
    assert np.all(np.abs(normal.expect(normal.nodes) - [1.0, -2.0]) < 5 * np.array([0.5, 3.0]) / n ** 0.5)
    uniform = quad.monte_carlo(n, 2, law="uniform", seed=seed, low=-1.0, high=3.0)
    se = 4.0 / math.sqrt(12 * n)
    assert np.all(np.abs(uniform.expect(uniform.nodes) - 1.0) < 5 * se)
    assert np.all((uniform.nodes >= -1.0) & (uniform.nodes <= 3.0))


def test_sobol_rms_error_smaller_than_monte_carlo_for_smooth_integrand():
    def error(rule):
        return float(rule.expect(np.cos(rule.nodes[:, 0]) * np.cos(rule.nodes[:, 1]))) - math.exp(-1)
    sobol = np.array([error(quad.sobol(1024, 2, seed=s)) for s in range(8)])
    mc = np.array([error(quad.monte_carlo(1024, 2, seed=s)) for s in range(8)])
    assert np.sqrt(np.mean(sobol ** 2)) < 0.2 * np.sqrt(np.mean(mc ** 2))


def test_sobol_non_power_of_two_does_not_warn_and_points_stay_finite():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rule = quad.sobol(100, 2)
        unscrambled = quad.sobol(64, 2, scramble=False)
    assert np.all(np.isfinite(rule.nodes)) and np.all(np.isfinite(unscrambled.nodes))
    uniform = quad.sobol(256, 3, law="uniform", low=2.0, high=5.0)
    assert np.all((uniform.nodes > 2.0) & (uniform.nodes < 5.0))


def test_sampled_rules_are_reproducible_by_seed():
    np.testing.assert_array_equal(quad.sobol(64, 2, seed=5).nodes, quad.sobol(64, 2, seed=5).nodes)
    assert not np.array_equal(quad.monte_carlo(8, 2, seed=1).nodes, quad.monte_carlo(8, 2, seed=2).nodes)


# --- Rule object, tracers, user rules --------------------------------------------------------

def test_rule_arrays_are_read_only_float64_c_contiguous():
    rule = quad.gauss_hermite(5)
    for array in (rule.nodes, rule.weights):
        assert array.dtype == np.float64 and array.flags.c_contiguous and not array.flags.writeable
    with pytest.raises(ValueError):
        rule.nodes[0, 0] = 1.0


ALL_RULES = {
    "gauss_hermite": lambda: quad.gauss_hermite(7, mean=0.3, std=1.7),
    "gauss_hermite_2d": lambda: quad.gauss_hermite([3, 4], mean=[0.0, 1.0], std=2.0),
    "gauss_legendre": lambda: quad.gauss_legendre(6, low=-1.0, high=2.5),
    "gaussian_trapezoid": lambda: quad.gaussian_trapezoid(33, mean=1.0, std=0.5, half_width=8.0),
    "tensor": lambda: quad.tensor(quad.gauss_hermite(3), quad.gauss_legendre(2, dim=2),
                                  quad.user([0.1, 0.7], [2.0, 1.0])),
    "smolyak": lambda: quad.smolyak(3, 3, mean=0.5, std=2.0),
    "smolyak_legendre": lambda: quad.smolyak(2, 4, "gauss_legendre", low=-1.0, high=1.0),
    "sobol": lambda: quad.sobol(100, 2, seed=3, mean=[0.0, 1.0], std=[1.0, 2.0]),
    "sobol_uniform": lambda: quad.sobol(64, 3, law="uniform", scramble=False, low=-1.0, high=1.0),
    "monte_carlo": lambda: quad.monte_carlo(50, 2, seed=7, std=3.0),
    "monte_carlo_uniform": lambda: quad.monte_carlo(50, 1, law="uniform", low=2.0, high=3.0),
    "user": lambda: quad.user([[0.1, 0.2], [0.3, 0.4], [0.5, 0.9]], [0.3, 0.3, 0.7]),
}


@pytest.mark.parametrize("name", sorted(ALL_RULES))
def test_with_tracers_leaves_expectations_unchanged(name):
    rule = ALL_RULES[name]()
    rng = np.random.default_rng(0)
    tracers = rng.normal(size=(5, rule.dim))
    traced = rule.with_tracers(tracers)
    assert traced.size == rule.size + 5 and traced.n_tracers == 5 and traced.dim == rule.dim
    assert np.all(traced.weights[-5:] == 0)
    np.testing.assert_array_equal(traced.nodes[-5:], tracers)
    for f in (lambda x: np.sin(x).sum(axis=1), lambda x: x ** 2, lambda x: np.exp(-x[:, :1])):
        np.testing.assert_array_equal(traced.expect(f(traced.nodes)), rule.expect(f(rule.nodes)))
    values = np.ones(traced.size)
    values[-5:] = np.nan
    assert traced.expect(values) == pytest.approx(1.0, abs=1e-12)
    assert traced.with_tracers(tracers[:2]).n_tracers == 7


def test_with_tracers_accepts_flat_points_in_one_dimension():
    traced = quad.gauss_hermite(3).with_tracers([0.5, 1.5])
    np.testing.assert_array_equal(traced.nodes[-2:, 0], [0.5, 1.5])
    with pytest.raises(ConfigError):
        quad.gauss_hermite([3, 3]).with_tracers([0.5, 1.5])


def test_user_normalises_weights_and_defaults_to_equal():
    rule = quad.user([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]], [1.0, 2.0, 3.0])
    np.testing.assert_allclose(rule.weights, [1 / 6, 2 / 6, 3 / 6], rtol=1e-15)
    assert rule.dim == 2 and rule.kind == "user"
    np.testing.assert_allclose(quad.user([1.0, 2.0, 4.0, 8.0]).weights, 0.25, rtol=1e-15)
    assert quad.user([1.0, 2.0]).dim == 1


def test_expect_sums_over_leading_axis():
    rule = quad.gauss_legendre(4, low=0.0, high=2.0)
    values = np.stack([np.ones(4), rule.nodes[:, 0], rule.nodes[:, 0] ** 2], axis=1)
    np.testing.assert_allclose(rule.expect(values), [1.0, 1.0, 4.0 / 3.0], rtol=1e-14)
    assert isinstance(rule.expect(values[:, 0]), np.ndarray)
    with pytest.raises(ConfigError):
        rule.expect(np.ones(5))


def test_describe_is_one_line_naming_kind_and_parameters():
    assert quad.gauss_hermite(16).describe() == "gauss_hermite(size=16, mean=0, std=1)"
    line = quad.tensor(quad.gauss_hermite(3), quad.user([0.0, 1.0])).with_tracers([[0, 0]]).describe()
    assert "\n" not in line and line.startswith("tensor(gauss_hermite(size=3") and "tracers=1" in line
    assert quad.smolyak(2, 3).describe().startswith("smolyak(dim=2, level=3")


# --- make_rule and provenance ----------------------------------------------------------------

def _same_rule(a, b):
    np.testing.assert_array_equal(a.nodes, b.nodes)
    np.testing.assert_array_equal(a.weights, b.weights)
    assert (a.kind, a.n_tracers) == (b.kind, b.n_tracers)


@pytest.mark.parametrize("tracers", [False, True])
@pytest.mark.parametrize("name", sorted(ALL_RULES))
def test_make_rule_round_trip_via_rule_to_dict_is_identical(name, tracers):
    rule = ALL_RULES[name]()
    if tracers:
        rule = rule.with_tracers(np.linspace(-1.0, 1.0, 3 * rule.dim).reshape(3, rule.dim))
    _same_rule(quad.make_rule(quad.rule_to_dict(rule)), rule)


@pytest.mark.parametrize("name", sorted(ALL_RULES))
def test_rule_to_dict_survives_toml(name):
    tomli_w = pytest.importorskip("tomli_w")
    rule = ALL_RULES[name]().with_tracers(np.full((2, ALL_RULES[name]().dim), 0.25))
    table = tomllib.loads(tomli_w.dumps({"rule": quad.rule_to_dict(rule)}))["rule"]
    _same_rule(quad.make_rule(table), rule)


def test_make_rule_builds_documented_examples():
    gh = quad.make_rule({"kind": "gauss_hermite", "size": 16, "mean": 0.0, "std": 1.0})
    _same_rule(gh, quad.gauss_hermite(16))
    _same_rule(quad.make_rule({"kind": "sobol", "size": 256, "dim": 2, "seed": 3}),
               quad.sobol(256, 2, seed=3))
    _same_rule(quad.make_rule({"kind": "user", "nodes": [[0.0], [1.0]], "weights": [1, 3]}),
               quad.user([0.0, 1.0], [1.0, 3.0]))
    tensor = quad.make_rule({"kind": "tensor", "rules": [{"kind": "gauss_hermite", "size": 3},
                                                          {"kind": "gauss_legendre", "size": 2}]})
    _same_rule(tensor, quad.tensor(quad.gauss_hermite(3), quad.gauss_legendre(2)))
    _same_rule(quad.make_rule({"kind": "smolyak", "dim": 3, "level": 4, "base": "gauss_hermite"}),
               quad.smolyak(3, 4))
    traced = quad.make_rule({"kind": "gauss_legendre", "size": 4, "tracers": [[0.5], [0.25]]})
    assert traced.n_tracers == 2 and traced.size == 6


def test_rule_kinds_lists_every_kind_in_order():
    assert quad.RULE_KINDS == ("gauss_hermite", "gauss_legendre", "gaussian_trapezoid", "chi", "sphere_marginal",
                               "tensor", "smolyak", "sobol", "monte_carlo", "user")


GH = {"kind": "gauss_hermite", "size": 4}
INVALID = [
    ([1, 2], "rule"),
    ({"size": 4}, "rule.kind"),
    ({"kind": "gauss"}, "rule.kind"),
    ({"kind": 3}, "rule.kind"),
    ({**GH, "sze": 3}, "rule.sze"),
    ({**GH, "low": 0.0}, "rule.low"),
    ({"kind": "gauss_hermite"}, "rule.size"),
    ({**GH, "size": 0}, "rule.size"),
    ({**GH, "size": True}, "rule.size"),
    ({**GH, "size": 4.0}, "rule.size"),
    ({**GH, "size": "4"}, "rule.size"),
    ({**GH, "size": [3, 0]}, "rule.size[1]"),
    ({**GH, "size": 20_000}, "rule.size"),
    ({**GH, "size": 1000, "dim": 3}, "rule"),
    ({**GH, "std": 0.0}, "rule.std"),
    ({**GH, "std": -1.0}, "rule.std"),
    ({**GH, "std": [1.0, -1.0]}, "rule.std[1]"),
    ({**GH, "mean": float("nan")}, "rule.mean"),
    ({**GH, "mean": float("inf")}, "rule.mean"),
    ({**GH, "mean": True}, "rule.mean"),
    ({**GH, "mean": [0.0, 0.0], "std": [1.0, 1.0, 1.0]}, "rule.mean"),
    ({**GH, "mean": [0.0, 0.0], "dim": 3}, "rule.mean"),
    ({**GH, "dim": 0}, "rule.dim"),
    ({"kind": "gauss_legendre", "size": 3, "low": 1.0, "high": 1.0}, "rule.high"),
    ({"kind": "gauss_legendre", "size": 3, "low": [0.0, 2.0], "high": 1.0}, "rule.high[1]"),
    ({"kind": "gaussian_trapezoid", "size": 9, "half_width": 0.0}, "rule.half_width"),
    ({"kind": "gaussian_trapezoid", "size": 9, "half_width": 100.0}, "rule.half_width"),
    ({"kind": "tensor", "rules": []}, "rule.rules"),
    ({"kind": "tensor", "rules": {"kind": "user"}}, "rule.rules"),
    ({"kind": "tensor", "rules": [GH, {**GH, "std": -1.0}]}, "rule.rules[1].std"),
    ({"kind": "tensor", "rules": [GH, {**GH, "tracers": [[0.0]]}]}, "rule.rules[1].tracers"),
    ({"kind": "tensor", "rules": [{**GH, "size": 5000}, {**GH, "size": 5000}]}, "rule"),
    ({"kind": "smolyak", "level": 3}, "rule.dim"),
    ({"kind": "smolyak", "dim": 2, "level": 0}, "rule.level"),
    ({"kind": "smolyak", "dim": 2, "level": 2, "base": "sobol"}, "rule.base"),
    ({"kind": "smolyak", "dim": 2, "level": 2, "low": 0.0}, "rule.low"),
    ({"kind": "smolyak", "dim": 2, "level": 2, "mean": [0.0, 1.0]}, "rule.mean"),
    ({"kind": "smolyak", "dim": 20, "level": 40}, "rule"),
    ({"kind": "sobol", "size": 64}, "rule.dim"),
    ({"kind": "sobol", "size": 64, "dim": 2, "law": "cauchy"}, "rule.law"),
    ({"kind": "sobol", "size": 64, "dim": 2, "seed": -1}, "rule.seed"),
    ({"kind": "sobol", "size": 64, "dim": 2, "seed": 1.5}, "rule.seed"),
    ({"kind": "sobol", "size": 64, "dim": 2, "scramble": "yes"}, "rule.scramble"),
    ({"kind": "sobol", "size": 64, "dim": 2, "law": "uniform", "std": 2.0}, "rule.std"),
    ({"kind": "sobol", "size": 10**8, "dim": 2}, "rule.size"),
    ({"kind": "sobol", "size": 64, "dim": 2, "mean": [0.0, 1.0, 2.0]}, "rule.mean"),
    ({"kind": "monte_carlo", "size": 64, "dim": 2, "law": "uniform", "low": 1.0, "high": 0.0},
     "rule.high"),
    ({"kind": "monte_carlo", "size": 64, "dim": 2, "scramble": True}, "rule.scramble"),
    ({"kind": "user"}, "rule.nodes"),
    ({"kind": "user", "nodes": [[0.0, 1.0], [2.0]]}, "rule.nodes"),
    ({"kind": "user", "nodes": [[0.0, float("nan")]]}, "rule.nodes"),
    ({"kind": "user", "nodes": ["a", "b"]}, "rule.nodes"),
    ({"kind": "user", "nodes": [True, False]}, "rule.nodes"),
    ({"kind": "user", "nodes": []}, "rule.nodes"),
    ({"kind": "user", "nodes": [0.0, 1.0], "weights": [1.0, -1.0]}, "rule.weights"),
    ({"kind": "user", "nodes": [0.0, 1.0], "weights": [0.0, 0.0]}, "rule.weights"),
    ({"kind": "user", "nodes": [0.0, 1.0], "weights": [1.0]}, "rule.weights"),
    ({"kind": "user", "nodes": [0.0, 1.0], "weights": [1.0, float("inf")]}, "rule.weights"),
    ({**GH, "tracers": [[0.0, 1.0]]}, "rule.tracers"),
    ({**GH, "tracers": [[float("nan")]]}, "rule.tracers"),
    ({"kind": "sobol", "size": checks.MAX_RULE_NODES, "dim": 1, "tracers": [[0.0]]}, "rule"),
]


@pytest.mark.parametrize("spec,key", INVALID, ids=[f"{i}-{k}" for i, (_, k) in enumerate(INVALID)])
def test_invalid_spec_raises_config_error_naming_the_key(spec, key):
    with pytest.raises(ConfigError) as info:
        quad.make_rule(spec)
    assert info.value.key == key
    assert key in str(info.value)


def test_unknown_kind_error_lists_kinds_in_order():
    with pytest.raises(ConfigError, match=", ".join(quad.RULE_KINDS)):
        quad.make_rule({"kind": "clenshaw_curtis"}, key="network.rule_1")


def test_unknown_key_error_names_key_and_allowed_keys():
    with pytest.raises(ConfigError) as info:
        quad.make_rule({"kind": "gauss_legendre", "size": 3, "mean": 0.0}, key="data")
    assert info.value.key == "data.mean"
    assert "size, low, high, dim" in str(info.value)


def test_python_constructors_validate_too():
    with pytest.raises(ConfigError, match="std"):
        quad.gauss_hermite(4, std=-1.0)
    with pytest.raises(ConfigError, match="tracers"):
        quad.tensor(quad.gauss_hermite(3).with_tracers([1.0]), quad.gauss_hermite(3))
    with pytest.raises(ConfigError, match="weights"):
        quad.Rule(np.zeros((2, 1)), np.array([0.5, 0.6]), "custom")


def test_custom_rule_round_trips_as_user():
    rule = quad.Rule(np.array([[0.0], [1.0]]), np.array([0.25, 0.75]), "custom")
    rebuilt = quad.make_rule(quad.rule_to_dict(rule))
    assert rebuilt.kind == "user"
    np.testing.assert_array_equal(rebuilt.weights, rule.weights)

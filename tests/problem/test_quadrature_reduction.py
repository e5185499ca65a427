"""Tests of the 1-D rules of the symmetry-reduced limit (SPEC §7, issue 17): ``chi`` and ``sphere_marginal``.

Exactness against closed-form moments computed in exact rational arithmetic, the special
cases m = 1 and m = 2 of the sphere marginal, ``scale``, round trips, one-line errors, and a
quadrature-only check that (z, r, ζ) rules reproduce E[cos⟨w, x⟩] = e^{−|w|²/2} for x ~ N(0, I_d).

Tolerances.  Every moment tested is a sum of n non-negative terms ω_i x_i^j (chi nodes are
positive; even powers of ζ).  If the computed nodes and weights carry relative errors δ_x and
δ_w, each term carries at most j·δ_x + δ_w + ε (the power), and so does the sum, plus n·ε of
summation.  Gauss nodes from the Jacobi matrix plus one Newton step and Christoffel weights
have δ_x, δ_w of a few ε; with δ_x, δ_w ≤ 4ε the bound is (8(j + 1) + n)·ε, the tolerance used
below.  The references are exact rationals (times √(2π) or √(2/π), 2 ulp) scaled by powers of 2.
"""
from __future__ import annotations

import functools
import math
from fractions import Fraction

import numpy as np
import pytest

from mfpde.errors import ConfigError
from mfpde.problem import quadrature as quad

EPS = np.finfo(np.float64).eps
DOFS = (1, 2, 3, 5, 10, 100, 1000, 10000)


@pytest.fixture(autouse=True)
def _raise_on_float_errors():
    with np.errstate(all="raise", under="ignore"):
        yield


def _chi_moment(m: int, j: int) -> tuple[Fraction, float]:
    """E[r^j] for r ~ χ_m as (F, c) with E = F·c exactly: E = 2^{j/2} Γ((m+j)/2)/Γ(m/2).

    j even: Π_{l<j/2} (m + 2l), an integer (c = 1).  j odd: E[r] times Π_{l<(j−1)/2} (m + 1 + 2l)
    (E[r^{j+2}] = (m + j)·E[r^j]), where with Γ(p + ½) = √π·(2p)!/(4^p p!):
    m = 2p: E[r] = √2·Γ(p + ½)/Γ(p) = √(2π)·p·C(2p, p)/4^p;
    m = 2p + 1: E[r] = √2·Γ(p + 1)/Γ(p + ½) = √(2/π)·4^p/C(2p, p).
    """
    if j % 2 == 0:
        return Fraction(math.prod(m + 2 * l for l in range(j // 2))), 1.0
    first, c = _chi_mean(m)
    return first * math.prod(m + 1 + 2 * l for l in range((j - 1) // 2)), c


@functools.lru_cache(maxsize=None)
def _chi_mean(m: int) -> tuple[Fraction, float]:
    p = m // 2
    if m % 2 == 0:
        return Fraction(p * math.comb(2 * p, p), 4 ** p), math.sqrt(2.0 * math.pi)
    return Fraction(4 ** p, math.comb(2 * p, p)), math.sqrt(2.0 / math.pi)


def _zeta_moment(m: int, j: int) -> Fraction:
    """E[ζ^j] for the marginal of S^{m−1}: 0 for odd j, Π_{i<j/2} (2i + 1)/(m + 2i) for even j.

    ζ² ~ Beta(½, (m−1)/2), so E[ζ^{2i+2}]/E[ζ^{2i}] = (½ + i)/(m/2 + i) = (2i + 1)/(m + 2i).
    """
    if j % 2:
        return Fraction(0)
    return math.prod((Fraction(2 * i + 1, m + 2 * i) for i in range(j // 2)), start=Fraction(1))


def _log(f: Fraction) -> float:
    return math.log(f.numerator) - math.log(f.denominator)


def _relative_moment_errors(x: np.ndarray, w: np.ndarray, reference, degrees) -> list:
    """(j, relative error, tolerance) per degree; x and the reference are scaled by a power of 2 near E^{1/j}."""
    out = []
    for j in degrees:
        f, c = reference(j)
        s = 1.0 if j == 0 else 2.0 ** round((_log(f) + math.log(c)) / j)
        ref = float(f / Fraction(s) ** j) * c
        got = float(np.sum(w * (x / s) ** j))
        out.append((j, abs(got / ref - 1.0), (8 * (j + 1) + len(x)) * EPS))
    return out


# --- chi ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("m", DOFS + (100000,))
@pytest.mark.parametrize("n", (1, 2, 5, 16, 64))
def test_chi_is_exact_for_every_polynomial_in_r_up_to_degree_2n_minus_1(m, n):
    rule = quad.chi(n, m)
    x, w = rule.nodes[:, 0], rule.weights
    assert rule.size == n and rule.dim == 1 and np.all(x > 0) and np.all(w >= 0)
    assert np.all(np.diff(x) > 0)
    for j, err, tol in _relative_moment_errors(x, w, lambda j: _chi_moment(m, j), range(2 * n)):
        assert err <= tol, f"m={m} n={n} E[r^{j}] relative error {err:.2e} > {tol:.2e}"


@pytest.mark.parametrize("m", (1, 3, 10))
def test_chi_is_not_exact_at_degree_2n(m):
    """Gauss with n nodes is exact to degree 2n−1 and no further: E[r^{2n}] misses by ≥ 1e-8 (n = 4)."""
    n = 4
    rule = quad.chi(n, m)
    f, c = _chi_moment(m, 2 * n)
    assert abs(float(np.sum(rule.weights * rule.nodes[:, 0] ** (2 * n))) / (float(f) * c) - 1.0) > 1e-8


def test_chi_odd_moments_beat_the_generalized_laguerre_rule():
    """The positive half of the symmetric generalized Gauss–Hermite rule (= generalized Gauss–Laguerre in
    r²/2) is exact only for even polynomials; at m = 1 its E[r] with 8 nodes is off by > 1e-4, the chi rule's by ε."""
    from scipy.special import roots_genlaguerre

    s, ws = roots_genlaguerre(8, -0.5)             # weight s^{m/2−1} e^{−s}, r = √(2s)
    laguerre = float(np.sum(ws * np.sqrt(2.0 * s)) / ws.sum())
    exact = math.sqrt(2.0 / math.pi)
    assert abs(laguerre / exact - 1.0) > 1e-4
    assert abs(float(quad.chi(8, 1).expect(quad.chi(8, 1).nodes[:, 0])) / exact - 1.0) < 10 * EPS


@pytest.mark.parametrize("m", (1, 10, 10000))
def test_chi_scale_multiplies_the_nodes(m):
    sigma = 0.375                                   # a power-of-2 fraction: σ·x is exact in floating point
    plain, scaled = quad.chi(12, m), quad.chi(12, m, scale=sigma)
    np.testing.assert_array_equal(scaled.nodes, sigma * plain.nodes)
    np.testing.assert_array_equal(scaled.weights, plain.weights)
    f, c = _chi_moment(m, 2)
    assert abs(float(scaled.expect(scaled.nodes[:, 0] ** 2)) / (sigma ** 2 * float(f) * c) - 1.0) < 30 * EPS


def test_chi_nodes_sit_near_sqrt_m_for_large_m():
    """For large m, r − √(m−1) → N(0, ½) (the law's skewness is O(m^{−1/2})), so the n-node rule tends to
    Gauss–Hermite for N(0, ½), whose nodes lie within ±√(4n + 2)/√2 (the He_n zero bound); 5 % slack at m = 10⁴."""
    m, n = 10000, 16
    x = quad.chi(n, m).nodes[:, 0] - math.sqrt(m - 1)
    assert np.all(np.abs(x) < 1.05 * math.sqrt(4 * n + 2) / math.sqrt(2))
    assert abs(x[0] + x[-1]) < 0.05 * (x[-1] - x[0])    # nearly symmetric about the mode


# --- sphere_marginal -----------------------------------------------------------------------------

@pytest.mark.parametrize("m", DOFS[1:] + (1000000,))
@pytest.mark.parametrize("n", (1, 2, 5, 16, 64, 200))
def test_sphere_marginal_is_exact_up_to_degree_2n_minus_1(m, n):
    rule = quad.sphere_marginal(n, m)
    x, w = rule.nodes[:, 0], rule.weights
    assert rule.size == n and np.all(np.abs(x) < 1) and np.all(w > 0)
    for j, err, tol in _relative_moment_errors(x, w, lambda j: (_zeta_moment(m, j), 1.0), range(0, 2 * n, 2)):
        assert err <= tol, f"m={m} n={n} E[ζ^{j}] relative error {err:.2e} > {tol:.2e}"
    for j in range(1, 2 * n, 2):                   # odd moments vanish: |Σ| ≤ n·ε·Σ ω|ζ|^j
        assert abs(float(np.sum(w * x ** j))) <= n * EPS * float(np.sum(w * np.abs(x) ** j))


def test_sphere_marginal_m1_is_the_two_atoms_for_every_size_from_2():
    for n in (2, 3, 16, 1000):
        rule = quad.sphere_marginal(n, 1)
        np.testing.assert_array_equal(rule.nodes[:, 0], [-1.0, 1.0])
        np.testing.assert_array_equal(rule.weights, [0.5, 0.5])
        assert rule.describe() == (f"sphere_marginal(size={n}, dof=1)" if n == 2 else
                                   f"sphere_marginal(size={n}, dof=1, nodes=2)")
    one = quad.sphere_marginal(1, 1)                # the 1-point Gauss rule: the mean
    assert one.nodes[0, 0] == 0.0 and one.weights[0] == 1.0
    assert quad.plan_rule({"kind": "sphere_marginal", "size": 16, "dof": 1}).size == 2


def test_sphere_marginal_m2_is_gauss_chebyshev():
    n = 7
    rule = quad.sphere_marginal(n, 2)
    expected = np.cos((2 * np.arange(n, 0, -1) - 1) * np.pi / (2 * n))
    np.testing.assert_allclose(rule.nodes[:, 0], expected, rtol=0, atol=2 * EPS)
    np.testing.assert_allclose(rule.weights, np.full(n, 1 / n), rtol=4 * EPS)
    # the arcsine law: E[ζ^{2i}] = C(2i, i)/4^i
    assert abs(float(rule.expect(rule.nodes[:, 0] ** 6)) - math.comb(6, 3) / 64) < 8 * EPS


def test_sphere_marginal_agrees_with_scipy_gauss_jacobi_at_moderate_m():
    from scipy.special import roots_jacobi

    for m, n in ((3, 10), (7, 40), (50, 64)):
        x, w = roots_jacobi(n, (m - 3) / 2, (m - 3) / 2)
        rule = quad.sphere_marginal(n, m)
        np.testing.assert_allclose(rule.nodes[:, 0], x, rtol=0, atol=1e-14)
        np.testing.assert_allclose(rule.weights, w / w.sum(), rtol=1e-11)


def test_sphere_marginal_scaled_by_sqrt_m_approaches_the_normal_law():
    """ζ√m → N(0, 1): E[(ζ√m)^4] = 3m/(m + 2) exactly, so 3 − 6/(m + 2) at m = 10⁴."""
    m = 10000
    rule = quad.sphere_marginal(8, m)
    fourth = float(rule.expect((rule.nodes[:, 0] * math.sqrt(m)) ** 4))
    assert abs(fourth - 3 * m / (m + 2)) < 50 * EPS


# --- consistency: (z, r, ζ) rules reproduce a d-dimensional Gaussian expectation --------------

@pytest.mark.parametrize("d", (2, 3, 12))
def test_reduced_rules_reproduce_gaussian_characteristic_function(d):
    """x ~ N(0, I_d), w = (a, β e) with e ⊥ e_1: E[cos⟨w, x⟩] = e^{−(a² + β²)/2}, and
    ⟨w, x⟩ = a z + β r ζ with z = x_1 ~ N(0, 1), r = |P⊥x| ~ χ_{d−1}, ζ ~ sphere marginal of S^{d−2}.

    cos(c t) is entire; an n-point Gauss rule errs by ≤ c^{2n}/(2n)!·E[t^{2n}]-sized terms,
    < 1e-30 for c ≤ 2, n = 24, so only rounding remains: ≤ (Q + 8)·ε·Σ ω|cos| ≤ (Q + 8)·ε.
    """
    m = d - 1
    z, r, zeta = quad.gauss_hermite(24), quad.chi(24, m), quad.sphere_marginal(24, m)
    grid = quad.tensor(z, r, zeta)
    zz, rr, cc = grid.nodes.T
    for a, beta in ((0.3, 1.1), (1.0, 0.0), (0.0, 1.7), (-0.8, 0.6)):
        got = float(grid.expect(np.cos(a * zz + beta * rr * cc)))
        assert abs(got - math.exp(-(a * a + beta * beta) / 2)) <= (grid.size - grid.n_tracers + 8) * EPS


# --- configuration --------------------------------------------------------------------------

def test_round_trip_rebuilds_the_same_rules():
    for spec in ({"kind": "chi", "size": 9, "dof": 99}, {"kind": "chi", "size": 3, "dof": 1, "scale": 0.5},
                 {"kind": "sphere_marginal", "size": 11, "dof": 998}, {"kind": "sphere_marginal", "size": 5, "dof": 1}):
        rule = quad.make_rule(spec)
        again = quad.make_rule(quad.rule_to_dict(rule))
        np.testing.assert_array_equal(again.nodes, rule.nodes)
        np.testing.assert_array_equal(again.weights, rule.weights)
        assert again.kind == rule.kind == spec["kind"]
        assert quad.rule_to_dict(rule) == spec
    assert quad.chi(4, 10, scale=0.5).describe() == "chi(size=4, dof=10, scale=0.5)"
    assert quad.sphere_marginal(6, 3).describe() == "sphere_marginal(size=6, dof=3)"
    traced = quad.make_rule({"kind": "chi", "size": 4, "dof": 3, "tracers": [0.5]})
    assert traced.size == 5 and traced.n_tracers == 1


def test_new_kinds_are_registered():
    assert "chi" in quad.RULE_KINDS and "sphere_marginal" in quad.RULE_KINDS
    tensor = quad.make_rule({"kind": "tensor", "rules": [{"kind": "chi", "size": 3, "dof": 2},
                                                         {"kind": "sphere_marginal", "size": 4, "dof": 2}]})
    assert tensor.size == 12 and tensor.dim == 2


BAD = [
    ({"kind": "chi", "size": 4}, "rule.dof"),
    ({"kind": "chi", "dof": 3}, "rule.size"),
    ({"kind": "chi", "size": 4, "dof": 0}, "rule.dof"),
    ({"kind": "chi", "size": 4, "dof": 2.5}, "rule.dof"),
    ({"kind": "chi", "size": 4, "dof": True}, "rule.dof"),
    ({"kind": "chi", "size": 4, "dof": quad.MAX_DOF + 1}, "rule.dof"),
    ({"kind": "chi", "size": 0, "dof": 3}, "rule.size"),
    ({"kind": "chi", "size": quad.MAX_CHI_SIZE + 1, "dof": 3}, "rule.size"),
    ({"kind": "chi", "size": 4, "dof": 3, "scale": 0.0}, "rule.scale"),
    ({"kind": "chi", "size": 4, "dof": 3, "scale": float("nan")}, "rule.scale"),
    ({"kind": "chi", "size": 4, "dof": 3, "mean": 1.0}, "rule.mean"),
    ({"kind": "sphere_marginal", "size": 4, "dof": -1}, "rule.dof"),
    ({"kind": "sphere_marginal", "size": quad.MAX_SPHERE_SIZE + 1, "dof": 3}, "rule.size"),
    ({"kind": "sphere_marginal", "size": 4, "dof": 3, "scale": 2.0}, "rule.scale"),
    ({"kind": "sphere_marginal", "size": 4, "dof": "3"}, "rule.dof"),
]


@pytest.mark.parametrize("spec,key", BAD, ids=[f"{i}-{k}" for i, (_, k) in enumerate(BAD)])
def test_bad_input_raises_one_line_config_error_naming_the_key(spec, key):
    with pytest.raises(ConfigError) as info:
        quad.make_rule(spec)
    assert info.value.key == key
    assert "\n" not in str(info.value)

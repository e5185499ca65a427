"""Tests of mfpde.system: the drift is the mean-field-scaled gradient of the network (SPEC §1, §3, §6).

Every expected value comes from an independent computation: a finite network written here in
plain numpy and differentiated by finite differences, or the hand-derived weighted network of
``tests/finite_reference.py``.  mfpde is used only to build the System and to read the flat
state layout (``System.layout.views``); ``mfpde.problem.losses.reference_loss`` gives loss values.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np
import pytest

from mfpde.problem import data

from mfpde.problem import embedding

from mfpde.problem import quadrature
from mfpde.problem.losses import reference_loss
from mfpde.problem.model import Embedding, Model, Problem, Schedules
from mfpde.problem.schedules import Schedule
from mfpde.solvers import integrate, make
from mfpde.system.system import System

import finite_reference as ref   # tests/finite_reference.py: the independent numpy network (tests/ is on pytest's path)


ACTIVATIONS = ("identity", "tanh", "relu", "sigmoid", "erf", "softplus", "gelu")
LOSSES = ("squared", "mse", "huber", "logistic", "softmax_ce")


# ============================================================================ helpers

def _schedules(L: int, xi_w, xi_b) -> Schedules:
    """Schedules from lists of numbers (constant ξ) or Schedule objects."""
    def as_s(x):
        return x if isinstance(x, Schedule) else Schedule("constant", float(x))
    return Schedules(tuple(as_s(x) for x in xi_w), tuple(as_s(x) for x in xi_b))


def _xi_by_name(sched: Schedules, L: int, t: float) -> dict:
    """ξ at time t for every parameter name of the layout (SPEC §1: one schedule per layer)."""
    xi = {"w_1": sched.weights[0](t), "v": sched.weights[L](t), "b_out": sched.biases[L](t)}
    for l in range(2, L + 1):
        xi[f"W_{l}"] = sched.weights[l - 1](t)
    for l in range(1, L + 1):
        xi[f"b_{l}"] = sched.biases[l - 1](t)
    return xi


def _zero_inits(L: int):
    return dict(w_1=embedding.constant(0.0), W=tuple(embedding.constant(0.0) for _ in range(L - 1)),
                v=embedding.constant(0.0), b=(None,) * L, b_out=None)


def _build(model: Model, rules, sched: Schedules, X, Y, rho=None, inits=None) -> System:
    emb = Embedding(tuple(rules), **(inits or _zero_inits(model.L)))
    return System(Problem(model, emb, sched, data.finite_set(X, Y, weights=rho)))


def _targets(rng, loss: str, M: int, K: int) -> np.ndarray:
    if loss == "logistic":
        return rng.choice([-1.0, 1.0], size=(M, K))
    if loss == "softmax_ce":
        return np.eye(K)[rng.integers(0, K, size=M)]
    return rng.normal(size=(M, K))


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    """‖a − b‖ / ‖b‖ (0 when both vanish)."""
    nb = np.linalg.norm(b)
    na = np.linalg.norm(a - b)
    return 0.0 if na == 0.0 else na / max(nb, 1e-300)


# ============================================================================ 1. FD gradient

def finite_network_risk(P: dict, X, Y, rho, acts, out_act, biases, output_bias, loss, delta) -> float:
    """SPEC §1 literally: widths n_l = rows of the parameter arrays, equal weights 1/n_l.

    h_1 = X w_1ᵀ + b_1, h_l = (1/n_{l−1}) φ(h_{l−1}) W_l + b_l, h_out = (1/n_L) φ(h_L) v + b_out,
    ŷ = φ_out(h_out), R = Σ_m ρ_m loss(y_m, ŷ_m).
    """
    L = len(acts)
    h = X @ P["w_1"].T
    if biases[0]:
        h = h + P["b_1"]
    for l in range(2, L + 1):
        a = ref.ACT[acts[l - 2]][0](h)
        h = a @ P[f"W_{l}"] / a.shape[1]
        if biases[l - 1]:
            h = h + P[f"b_{l}"]
    a = ref.ACT[acts[L - 1]][0](h)
    hout = a @ P["v"] / a.shape[1]
    if output_bias:
        hout = hout + P["b_out"]
    yhat = ref.ACT[out_act][0](hout)
    return float(rho @ reference_loss(loss, delta, Y, yhat))


def finite_network_preactivations(P, X, acts, biases):
    """All hidden pre-activations and h_out of the finite network (for kink margins)."""
    L = len(acts)
    hs = []
    h = X @ P["w_1"].T + (P["b_1"] if biases[0] else 0.0)
    hs.append(h)
    for l in range(2, L + 1):
        a = ref.ACT[acts[l - 2]][0](h)
        h = a @ P[f"W_{l}"] / a.shape[1] + (P[f"b_{l}"] if biases[l - 1] else 0.0)
        hs.append(h)
    hout = ref.ACT[acts[L - 1]][0](h) @ P["v"] / h.shape[1] + (P["b_out"] if "b_out" in P else 0.0)
    return hs, hout


richardson_gradient = ref.richardson_gradient
spec_multiplier = ref.spec_multiplier


@dataclass
class FDCase:
    acts: tuple
    loss: str
    K: int
    biases: tuple
    output_bias: bool
    sizes: tuple
    d: int
    xi_w: tuple
    xi_b: tuple
    out_act: str = "identity"
    t: float = 0.7
    frozen: tuple = ()            # parameter names whose ξ is 0 (their drift must vanish exactly)
    id: str = field(default="")


def _power(xi0, tau=0.5, p=1.5):
    return Schedule("power", xi0, tau, p)


FD_CASES = [
    # ---- L = 1: biases on / off; every loss family appears at some depth
    FDCase(("tanh",), "squared", 1, (True,), True, (6,), 2, (0.5, 1.3), (0.8, 1.7), id="L1-tanh-squared-bias"),
    FDCase(("relu",), "mse", 3, (False,), False, (7,), 3, (1.1, 0.6), (1.0, 1.0), id="L1-relu-mse-K3-nobias"),
    FDCase(("gelu",), "huber", 1, (True,), False, (5,), 2, (0.9, _power(1.4)), (0.7, 1.0), out_act="tanh",
           id="L1-gelu-huber-bias-tanhout-power"),
    FDCase(("sigmoid",), "logistic", 1, (False,), True, (6,), 3, (1.2, 0.4), (1.0, 0.9), id="L1-sigmoid-logistic"),
    # ---- L = 2
    FDCase(("erf", "softplus"), "softmax_ce", 3, (False, True), True, (5, 7), 2, (0.5, 1.3, 0.8), (1.0, 0.6, 1.9),
           id="L2-erf-softplus-softmax-K3"),
    FDCase(("identity", "tanh"), "squared", 3, (True, True), False, (4, 6), 3, (1.5, 0.7, 1.1), (0.3, 1.2, 1.0),
           out_act="sigmoid", id="L2-identity-tanh-squared-K3-sigmoidout"),
    FDCase(("gelu", "relu"), "huber", 3, (False, False), False, (6, 5), 2, (0.8, 0.0, 1.2), (1.0, 1.0, 1.0),
           frozen=("W_2",), id="L2-gelu-relu-huber-K3-nobias-freeze-W2"),
    FDCase(("tanh", "sigmoid"), "logistic", 3, (True, False), False, (7, 4), 3, (1.0, 1.6, 0.0), (0.5, 1.0, 1.0),
           frozen=("v",), id="L2-tanh-sigmoid-logistic-K3-freeze-v"),
    # ---- L = 3
    FDCase(("tanh", "gelu", "sigmoid"), "squared", 1, (True, True, True), True, (5, 6, 7), 2,
           (0.5, 1.3, 0.9, 1.7), (0.6, 1.1, 0.4, 2.0), id="L3-tanh-gelu-sigmoid-squared-allbias"),
    FDCase(("softplus", "erf", "tanh"), "mse", 1, (False, False, False), False, (6, 4, 5), 3,
           (0.0, 1.3, _power(0.9), 1.2), (1.0, 1.0, 1.0, 1.0), frozen=("w_1",), id="L3-softplus-erf-tanh-mse-nobias-freeze-w1"),
    FDCase(("relu", "identity", "tanh"), "huber", 1, (True, False, True), False, (7, 5, 6), 2,
           (0.0, 0.8, 1.4, 0.6), (0.0, 1.0, 0.7, 1.0), frozen=("w_1", "b_1"), id="L3-relu-identity-tanh-huber-freeze-layer1"),
    FDCase(("sigmoid", "tanh", "erf"), "softmax_ce", 3, (False, True, False), True, (4, 6, 5), 3,
           (1.2, 0.7, 1.5, 0.9), (1.0, 0.5, 1.0, 1.3), id="L3-sigmoid-tanh-erf-softmax-K3"),
]


def test_fd_cases_cover_every_activation_loss_and_depth():
    acts = {a for c in FD_CASES for a in c.acts}
    assert acts == set(ACTIVATIONS)
    assert {c.loss for c in FD_CASES} == set(LOSSES)
    for L in (1, 2, 3):
        assert any(len(c.acts) == L and all(c.biases) for c in FD_CASES)
        assert any(len(c.acts) == L and not any(c.biases) for c in FD_CASES)


def _kink_margin(P, X, Y, case: FDCase, delta: float) -> float:
    """Distance of the nearest kink (relu at 0, Huber at |r| = δ) from the current state."""
    hs, hout = finite_network_preactivations(P, X, case.acts, case.biases)
    m = np.inf
    for a, h in zip(case.acts, hs):
        if a == "relu":
            m = min(m, float(np.min(np.abs(h))))
    if case.loss == "huber":
        r = np.abs(ref.ACT[case.out_act][0](hout) - Y)
        m = min(m, float(np.min(np.abs(r - delta))))
    return m


@pytest.mark.parametrize("case", FD_CASES, ids=[c.id for c in FD_CASES])
def test_drift_equals_scaled_fd_gradient_of_finite_network(case: FDCase):
    rng = np.random.default_rng(zlib.crc32(case.id.encode()))
    L, d, K, M = len(case.acts), case.d, case.K, 9
    X = rng.normal(size=(M, d))
    Y = _targets(rng, case.loss, M, K)
    rho = rng.uniform(0.5, 1.5, size=M)
    rho /= rho.sum()
    sched = _schedules(L, case.xi_w, case.xi_b)
    # user rules (equal weights 1/n_l): the weighted network IS the finite network of width n_l
    rules = [quadrature.user(rng.normal(size=(Q, 2))) for Q in case.sizes]

    # random O(1) states; kinks (relu at 0, Huber at |r| = δ) kept ≥ 1e-3 away.  A parameter step
    # h ≤ 1e-4·max(1, |θ|) moves a pre-activation by ≤ h (|x| + 1) ≲ 6e-4 here, so FD never crosses one.
    for _ in range(500):
        delta = 1.0
        model = Model(d, case.acts, K, case.biases, case.out_act, case.output_bias, case.loss, delta)
        system = _build(model, rules, sched, X, Y, rho)
        y = rng.normal(scale=0.9, size=system.size)
        P = system.layout.views(y)
        if case.loss == "huber":
            # δ halfway across the widest gap of the sorted |r| in their middle half: both branches active
            hs, hout = finite_network_preactivations(P, X, case.acts, case.biases)
            r = np.sort(np.abs(ref.ACT[case.out_act][0](hout) - Y).ravel())
            lo, hi = len(r) // 4, 3 * len(r) // 4
            j = lo + int(np.argmax(np.diff(r[lo:hi + 1])))
            delta = 0.5 * (r[j] + r[j + 1])
            model = Model(d, case.acts, K, case.biases, case.out_act, case.output_bias, case.loss, delta)
            system = _build(model, rules, sched, X, Y, rho)
        if _kink_margin(P, X, Y, case, delta) > 1e-3:
            break
    else:  # pragma: no cover
        pytest.fail("could not draw a state away from the kinks")
    if case.loss == "huber":
        r = np.abs(ref.ACT[case.out_act][0](finite_network_preactivations(P, X, case.acts, case.biases)[1]) - Y)
        assert np.any(r < delta) and np.any(r > delta), "both Huber branches must be active"

    def risk(yy):
        return finite_network_risk(system.layout.views(yy), X, Y, rho, case.acts, case.out_act,
                                   case.biases, case.output_bias, case.loss, delta)

    grad = system.layout.views(richardson_gradient(risk, y))
    drift = system.layout.views(system.rhs(case.t, y.copy()))
    xi = _xi_by_name(sched, L, case.t)
    widths = list(case.sizes)

    expected = {}
    for name, g in grad.items():
        expected[name] = -xi[name] * spec_multiplier(name, widths) * g
        if name in case.frozen:
            assert xi[name] == 0.0
            assert np.all(drift[name] == 0.0), f"{name} is frozen (ξ = 0) but its drift is not zero"
            continue
        assert np.linalg.norm(g) > 1e-8, f"degenerate case: ∂R/∂{name} vanishes"
        err = _rel(drift[name], expected[name])
        assert err <= 1e-6, f"{name}: relative error {err:.2e} against the scaled FD gradient"
    flat_drift = np.concatenate([drift[n].ravel() for n in grad])
    flat_expected = np.concatenate([expected[n].ravel() for n in grad])
    assert _rel(flat_drift, flat_expected) <= 1e-6
    # the risk itself: System.observe's training loss is the finite network's R
    assert system.observe(y)["loss_train"] == pytest.approx(risk(y), rel=1e-13)


# ============================================================================ 2. compiled vs reference

def _python_inits(L: int, K: int, d: int, biases, output_bias: bool):
    """Smooth node-dependent initial functions (so tracer nodes get their own values)."""
    def w1(c):
        return np.column_stack([np.sin(1.3 * c[:, 0] + k) + 0.3 * c[:, -1] for k in range(d)])

    def W(cp, c):
        return 0.4 + np.tanh(np.outer(cp[:, 0], c[:, 0]) + 0.2 * cp[:, -1][:, None])

    def v(c):
        return np.column_stack([c[:, 0] * (k + 1) / K - 0.2 * k for k in range(K)])

    def b(c):
        return 0.3 * np.cos(c[:, 0])

    return dict(w_1=embedding.python(w1), W=tuple(embedding.python(W) for _ in range(L - 1)), v=embedding.python(v),
                b=tuple(embedding.python(b) if bb else None for bb in biases),
                b_out=embedding.constant([0.1 * k for k in range(K)]) if output_bias else None)


@dataclass
class RefCase:
    acts: tuple
    loss: str
    K: int
    biases: tuple
    output_bias: bool
    rules: object  # callable rng -> list of rules
    d: int
    out_act: str = "identity"
    id: str = ""


def _rules_gh_trap(rng):
    r1 = quadrature.tensor(quadrature.gauss_hermite(3), quadrature.gauss_hermite(2, 0.5, 2.0))
    r2 = quadrature.gaussian_trapezoid(7, half_width=4.0)
    return [r1.with_tracers(rng.normal(size=(3, 2))), r2.with_tracers(rng.normal(size=(2, 1)))]


def _rules_mixed3(rng):
    r1 = quadrature.gauss_legendre(5, -1.0, 2.0)
    r2 = quadrature.user(rng.normal(size=(6, 2)), rng.uniform(0.1, 1.0, size=6))
    r3 = quadrature.sobol(8, 1, seed=3)
    return [r1, r2.with_tracers(rng.normal(size=(2, 2))), r3.with_tracers(np.array([[0.3], [-1.1]]))]


def _rules_mc(rng):
    return [quadrature.monte_carlo(9, 2, seed=4).with_tracers(rng.normal(size=(4, 2)))]


def _rules_gh_tracers(rng):
    r = quadrature.tensor(quadrature.gauss_hermite(4), quadrature.gauss_hermite(3, 0.2, 1.5))
    return [r.with_tracers(rng.normal(size=(3, 2)))]


# the L = 1 cases with K = 1 run the fused pass in blocks of kernels.SHALLOW_ROWS = 4 rows: M = 11 is
# two blocks and a tail of 3 single rows, each checked against the independent network
REF_CASES = [
    RefCase(("tanh",), "mse", 1, (True,), True, _rules_gh_tracers, 1, id="L1-K1-d1-bias-gh-tracers-mse"),
    RefCase(("gelu",), "huber", 1, (False,), False, _rules_gh_tracers, 3, out_act="tanh", id="L1-K1-d3-gelu-huber"),
    RefCase(("tanh", "tanh"), "huber", 1, (True, True), True, _rules_gh_trap, 2, id="L2-gh-trapezoid-tracers-huber"),
    RefCase(("sigmoid", "gelu", "softplus"), "softmax_ce", 3, (True, False, True), True, _rules_mixed3, 3,
            id="L3-legendre-user-sobol-softmax"),
    RefCase(("relu",), "logistic", 2, (True,), False, _rules_mc, 2, out_act="identity", id="L1-mc-tracers-logistic"),
    RefCase(("erf", "identity"), "mse", 2, (False, True), False, _rules_gh_trap, 2, out_act="tanh", id="L2-erf-mse-tanhout"),
]


def _ref_setup(case: RefCase, seed: int, random_state: bool = True):
    rng = np.random.default_rng(seed)
    L, d, K, M = len(case.acts), case.d, case.K, 11
    X = rng.normal(size=(M, d))
    Y = _targets(rng, case.loss, M, K)
    rho = rng.uniform(0.5, 1.5, size=M)
    rho /= rho.sum()
    sched = _schedules(L, rng.uniform(0.3, 1.8, size=L + 1), rng.uniform(0.3, 1.8, size=L + 1))
    model = Model(d, case.acts, K, case.biases, case.out_act, case.output_bias, case.loss, 0.4)
    rules = case.rules(rng)
    system = _build(model, rules, sched, X, Y, rho, _python_inits(L, K, d, case.biases, case.output_bias))
    y = rng.normal(scale=0.8, size=system.size) if random_state else system.y0.copy()
    net = ref.Net(d, K, case.acts, [np.asarray(r.weights) for r in rules], case.biases, case.output_bias,
                  case.out_act, case.loss, 0.4)
    return system, net, sched, y, (X, Y, rho)


@pytest.mark.parametrize("case", REF_CASES, ids=[c.id for c in REF_CASES])
@pytest.mark.parametrize("random_state", [True, False], ids=["random-state", "initial-state"])
def test_compiled_rhs_matches_numpy_reference(case: RefCase, random_state: bool):
    system, net, sched, y, (X, Y, rho) = _ref_setup(case, 7, random_state)
    t = 0.3
    nonequal = any(np.ptp(w[:len(w) - r.n_tracers]) > 0 for w, r in zip(system.weights, system.rules))
    assert nonequal or case.id.startswith("L1-mc"), "every case but the Monte Carlo one has non-equal node weights"
    compiled = system.views(system.rhs(t, y.copy()))
    numpy_ref = system.views(system.rhs_reference(t, y.copy()))
    mine = net.population_drift(system.views(y), X, Y, rho, _xi_by_name(sched, net.L, t))
    assert set(compiled) == set(mine)
    for name in mine:
        assert _rel(compiled[name], mine[name]) <= 1e-12, name
        assert _rel(numpy_ref[name], mine[name]) <= 1e-12, name
    assert system.observe(y)["loss_train"] == pytest.approx(net.risk(system.views(y), X, Y, rho), rel=1e-12)


# Every compile-time variant of the kernels (mfpde.system.kernels.variant) computes the same
# drift: the parallel passes (forced from size 1 with two chunks, so they run on one thread too),
# the GEMM first layer instead of the fused one (fuse=False; for L = 1 that is the deep path
# instead of the fused one-hidden-layer pass).  Each is checked against the independent network.
VARIANTS = [(True, None), (None, False)]


@pytest.mark.parametrize("case", REF_CASES, ids=[c.id for c in REF_CASES])
@pytest.mark.parametrize("parallel,fuse", VARIANTS, ids=["parallel", "unfused"])
def test_every_kernel_variant_matches_the_independent_network(case: RefCase, parallel, fuse):
    system, net, sched, y, (X, Y, rho) = _ref_setup(case, 11, True)
    other = System(system.problem, parallel=parallel, fuse=fuse)
    assert other.variant[:4] != system.variant[:4], "the forced variant differs from the default one"
    t = 0.7
    mine = net.population_drift(system.views(y), X, Y, rho, _xi_by_name(sched, net.L, t))
    for s_ in (system, other):
        got = s_.views(s_.rhs(t, y.copy()))
        for name in mine:
            assert _rel(got[name], mine[name]) <= 1e-12, (s_.variant, name)
        assert s_.observe(y)["loss_train"] == pytest.approx(net.risk(system.views(y), X, Y, rho), rel=1e-12)


def test_an_activation_outside_the_compiled_variant_gives_nan_not_a_wrong_value():
    """The kernels compile only the activations of the model (variant flags); a layout whose code
    is not among them must come out NaN (loudly wrong), never as another activation's values."""
    from mfpde.system import kernels
    system, net, sched, y, (X, Y, rho) = _ref_setup(REF_CASES[0], 3, True)   # tanh, tanh
    lay = system.lay.copy()
    lay[kernels.HEADER + 1] = 3          # sigmoid in layer 1, not compiled for this variant
    a = system.sysargs._replace(lay=lay)
    dy = np.empty_like(y)
    loss = kernels.rhs_py(0.0, y, dy, a)
    assert np.isnan(loss) and np.isnan(dy).any()
    assert np.isfinite(kernels.rhs_py(0.0, y, dy, system.sysargs))


# ============================================================================ 3. tracers

def _tracer_pair(seed: int):
    """The same problem without and with tracer nodes on every hidden layer (L = 2)."""
    rng = np.random.default_rng(seed)
    d, K, M = 2, 1, 10
    X = rng.normal(size=(M, d))
    Y = np.tanh(X @ np.array([1.0, -0.5]))[:, None]
    model = Model(d, ("tanh", "sigmoid"), K, (True, True), "identity", True, "squared")
    sched = _schedules(2, (0.9, 1.2, 0.7), (1.1, 0.6, 1.4))
    base = [quadrature.tensor(quadrature.gauss_hermite(3), quadrature.gauss_hermite(3)), quadrature.gaussian_trapezoid(6)]
    tracers = [rng.normal(size=(4, 2)), rng.normal(size=(3, 1))]
    inits = _python_inits(2, K, d, (True, True), True)
    plain = _build(model, base, sched, X, Y, inits=inits)
    traced = _build(model, [r.with_tracers(p) for r, p in zip(base, tracers)], sched, X, Y, inits=inits)
    return plain, traced, [r.size for r in base]


def _original_block(name: str, arr: np.ndarray, sizes) -> np.ndarray:
    Q1, Q2 = sizes
    return {"w_1": lambda a: a[:Q1], "b_1": lambda a: a[:Q1], "W_2": lambda a: a[:Q1, :Q2],
            "b_2": lambda a: a[:Q2], "v": lambda a: a[:Q2], "b_out": lambda a: a}[name](arr)


def test_tracer_nodes_do_not_feed_back():
    plain, traced, sizes = _tracer_pair(3)
    Vp, Vt = plain.views(plain.y0), traced.views(traced.y0)
    for name in Vp:  # the original nodes start from the same values
        np.testing.assert_array_equal(_original_block(name, Vt[name], sizes), Vp[name])
    dp, dt_ = plain.views(plain.rhs(0.2, plain.y0.copy())), traced.views(traced.rhs(0.2, traced.y0.copy()))
    for name in dp:
        assert _rel(_original_block(name, dt_[name], sizes), dp[name]) <= 1e-13, name
    assert traced.observe(traced.y0)["loss_train"] == pytest.approx(plain.observe(plain.y0)["loss_train"], rel=1e-13)
    # the tracers themselves follow the drift: their rows/columns move
    Q1, Q2 = sizes
    assert np.linalg.norm(dt_["w_1"][Q1:]) > 1e-3 and np.linalg.norm(dt_["v"][Q2:]) > 1e-3
    assert np.linalg.norm(dt_["W_2"][Q1:, :]) > 1e-3 and np.linalg.norm(dt_["W_2"][:, Q2:]) > 1e-3

    # and along a trajectory (RK4 to t = 1): original nodes and loss unchanged, tracers moved
    sp = integrate(plain, make("rk4", plain, dt=0.05), 1.0, save_every=0.25, parameters="final")
    st = integrate(traced, make("rk4", traced, dt=0.05), 1.0, save_every=0.25, parameters="final")
    np.testing.assert_allclose(st.observable("loss_train"), sp.observable("loss_train"), rtol=1e-12, atol=0)
    Vp1, Vt1 = plain.views(sp.y), traced.views(st.y)
    for name in Vp1:
        assert _rel(_original_block(name, Vt1[name], sizes), Vp1[name]) <= 1e-12, name
    assert np.linalg.norm(Vt1["w_1"][Q1:] - Vt["w_1"][Q1:]) > 1e-3
    assert np.linalg.norm(Vt1["W_2"][Q1:, Q2:] - Vt["W_2"][Q1:, Q2:]) > 1e-3


# ============================================================================ 4. Euler = full-batch GD

@pytest.mark.parametrize("loss", ["squared", "huber"])
@pytest.mark.parametrize("L", [2, 3])
def test_euler_matches_fullbatch_gd(L: int, loss: str):
    rng = np.random.default_rng(100 * L + len(loss))
    d, K, M, eps, steps = 2, 1, 12, 0.05, 100
    X = rng.normal(size=(M, d))
    Y = np.tanh(1.5 * X @ np.array([0.8, -0.6]))[:, None] + 0.1 * rng.normal(size=(M, 1))
    rho = np.full(M, 1.0 / M)
    # Gauss–Hermite index rules: non-uniform weights (tensor in R² for layer 1)
    rules = [quadrature.gauss_hermite([3, 2])] + [quadrature.gauss_hermite(3 + l) for l in range(1, L)]
    inits = dict(w_1=embedding.coordinate(), v=embedding.affine(0.2, 1.0),
                 W=tuple(embedding.kernel(m=0.4, s=0.8, psi="tanh", A=np.ones((1, rules[l - 1].dim))) for l in range(1, L)),
                 b=tuple(embedding.python(lambda c: 0.3 * np.sin(c[:, 0] + 0.5)) for _ in range(L)),
                 b_out=embedding.constant(0.1))
    sched = _schedules(L, [0.9, *(1.2 + 0.1 * l for l in range(L - 1)), Schedule("power", 1.5, 1.0, 0.5)],
                       [0.7] * L + [1.1])
    delta = 0.3
    model = Model(d, ("tanh",) * L, K, (True,) * L, "identity", True, loss, delta)
    system = _build(model, rules, sched, X, Y, rho, inits)
    net = ref.Net(d, K, ("tanh",) * L, [np.asarray(r.weights) for r in rules], (True,) * L, True, "identity", loss, delta)
    if loss == "huber":  # both branches active at the start
        r = np.abs(net.forward(system.views(system.y0), X)[3] - Y)
        assert np.any(r < delta) and np.any(r > delta)

    P = ref.gd(net, system.views(system.y0.copy()), X, Y, rho, lambda t: _xi_by_name(sched, L, t), eps, steps)
    expected = system.layout.pack(P)
    sol = integrate(system, make("euler", system, dt=eps), steps * eps, parameters="final")
    assert sol.stats["steps"] == steps
    assert _rel(sol.y, system.y0) > 1e-2, "the state must move"
    assert _rel(sol.y, expected) <= 1e-12
    for name, a in system.views(sol.y).items():
        assert _rel(a, P[name]) <= 1e-12, name


@pytest.mark.parametrize("case", [c for c in REF_CASES if c.id.startswith(("L1-K1-d1", "L2-gh"))], ids=lambda c: c.id)
def test_the_work_buffer_and_its_scratch_chunks_start_on_cache_lines(case: RefCase):
    """The kernels' scratch region and each per-thread chunk start on 64-byte boundaries (a zmm load
    that straddles two cache lines cost the L = 1 pass 12 %): the buffer is allocated aligned and
    every offset into it is a multiple of 8 doubles, whatever M, K and Q are (here M = 11)."""
    from mfpde.system import kernels
    system, *_ = _ref_setup(case, 7)
    for s_ in (system, System(system.problem, parallel=True)):
        sa = s_.sysargs
        assert sa.work.ctypes.data % 64 == 0
        lay, M = sa.lay, sa.X.shape[0]
        shallow = s_.variant[kernels.SHALLOW] is not None
        ex = kernels._extra.py_func(sa.work, lay, M, shallow)
        assert ex.ctypes.data % 64 == 0
        Q, d, K = int(lay[kernels.HEADER]), int(lay[1]), int(lay[2])
        base = kernels._acc_base.py_func(Q, d, K)
        cs = kernels._chunk_size.py_func(Q, d, K)
        assert base % 8 == 0 and cs % 8 == 0 and base >= Q * (d + 2 * K) and cs >= Q * (d + 2 + K + 8) + 2 * K
        T = kernels._threads.py_func(sa.work, lay, M, shallow)
        assert T >= 1 and base + T * cs <= ex.size

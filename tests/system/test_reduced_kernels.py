"""The compiled reduced first layer (SPEC §7, issue 17) against independent computations.

1. ``System.rhs`` (Numba kernels) equals the hand-derived numpy oracle
   ``mfpde.system.reduced_reference.ReducedSystem.rhs`` on the same rules, every variant.
2. ``System.rhs_reference`` (the numpy transcription of SPEC §2 with the reduced layer) equals it too.
3. J = 1, ζ_1 = 0, ρ_1 = 1: the reduced layer is the plain layer on the z columns (β inert).
4. A few RK4 steps of ``mfpde.solvers`` on the reduced System equal ``reduced_reference.rk4``.

Tolerances.  The kernels, the oracle and ``rhs_reference`` compute the same finite sums
(over ≤ M·J = 9·5 data × ζ terms, then ≤ Q1 = 6 nodes) in different orders, so they differ by
rounding only: each block by ≲ (number of terms) · ε · Σ|terms| ≈ 50 · 2.2e-16 · (Σ|terms|/|sum|).
The states are O(1) with no cancellation by construction of sizes; 1e-13 relative (in the block's
2-norm) leaves a factor ≈ 10 for it.
"""
from __future__ import annotations

import numpy as np
import pytest

from mfpde.errors import ConfigError
from mfpde.problem import data, embedding, quadrature
from mfpde.problem.model import Embedding, Model, Problem, Reduction, Schedules
from mfpde.problem.schedules import Schedule
from mfpde.solvers import integrate, make
from mfpde.system import kernels
from mfpde.system.reduced_reference import ReducedRules, ReducedSystem, rk4
from mfpde.system.system import System

Q1, Q2, M = 6, 4, 9


def _rel(a, b) -> float:
    nb = np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / nb) if nb > 0 else float(np.linalg.norm(a))


def _case(seed: int, L: int, k: int, bias: bool, act: str, J: int = 5, d: int = 7, zeta=None):
    """A hand-built reduced Problem and the matching oracle (ReducedSystem, initial state).

    Layer-1 nodes are (a⁰ [k], β⁰ ≥ 0[, v⁰ for L = 1]) with random positive weights; data (z, r ≥ 0)
    with random weights; the ζ rule is sphere_marginal(J, d − k) unless ``zeta`` = (nodes, weights)."""
    rng = np.random.default_rng(seed)
    n1 = k + 1 + (L == 1)
    nodes1 = np.concatenate([rng.uniform(-1, 1, (Q1, k)), rng.uniform(0.1, 1.2, (Q1, 1)),
                             rng.uniform(-1, 1, (Q1, n1 - k - 1))], axis=1)
    rules = [quadrature.user(nodes1, rng.uniform(0.5, 1.5, Q1))]
    W2 = rng.uniform(-1, 1, (Q1, Q2))
    b1 = rng.uniform(-0.5, 0.5, Q1)
    if L == 2:
        rules.append(quadrature.user(rng.uniform(-1, 1, (Q2, 1)), rng.uniform(0.5, 1.5, Q2)))
        W, v = (embedding.python(lambda a, b: W2.copy()),), embedding.coordinate(0)
    else:
        W, v = (), embedding.coordinate(k + 1)
    emb = Embedding(tuple(rules), w_1=embedding.coordinate(0), W=W, v=v,
                    b=(embedding.python(lambda n: b1.copy()) if bias else None,) + (None,) * (L - 1))
    z, r = rng.uniform(-1.5, 1.5, (M, k)), rng.uniform(0.2, 2.5, M)
    y = np.tanh(z[:, 0]) + 0.3
    pi = rng.uniform(0.5, 1.5, M)
    pi /= pi.sum()
    xi = tuple(rng.uniform(0.5, 2.0, L + 1))
    xib = 0.7
    sched = Schedules(tuple(Schedule("constant", x) for x in xi), tuple(Schedule("constant", xib) for _ in range(L + 1)))
    if zeta is None:
        zr = quadrature.make_rule({"kind": "sphere_marginal", "size": J, "dof": d - k})
    else:
        zr = quadrature.user(np.asarray(zeta[0], dtype=float)[:, None], zeta[1])
    model = Model(input_dim=k + 1, activations=(act,) * L, biases=(bias,) + (False,) * (L - 1))
    prob = Problem(model, emb, sched, data.finite_set(np.column_stack([z, r]), y[:, None], weights=pi),
                   reduction=Reduction(d, k, zr))
    zn, zw = np.asarray(zr.nodes, dtype=float)[:, 0], np.asarray(zr.weights, dtype=float)
    R = ReducedRules(index_weights=np.asarray(rules[0].weights), zeta=zn, zeta_weights=zw, z=z, r=r, data_weights=pi,
                     y=y, layer2_weights=np.asarray(rules[1].weights) if L == 2 else None)
    ref = ReducedSystem(R, (act,) * L, xi=xi, xi_b1=xib)
    s0 = ref.initial_state(nodes1[:, :k], nodes1[:, k], np.asarray(rules[1].nodes)[:, 0] if L == 2 else nodes1[:, k + 1],
                           W2_0=W2 if L == 2 else None, b1_0=b1 if bias else None)
    return prob, ref, s0


def _as_state(system: System, views: dict) -> dict:
    """The oracle's block dict from System views (a, β = w_1's columns)."""
    k = system.reduction.k
    s = {"a": views["w_1"][:, :k], "beta": views["w_1"][:, k], "v": views["v"][:, 0]}
    for key in ("W_2", "b_1"):
        if key in views:
            s[key] = views[key]
    return s


CASES = [(L, k, bias, act) for L in (1, 2) for k in (1, 2) for bias in (False, True) for act in ("tanh",)] + \
        [(1, 2, True, "sigmoid"), (2, 1, True, "sigmoid"), (2, 2, False, "sigmoid")]


@pytest.mark.parametrize("how", ["default", "parallel", "unfused"])
@pytest.mark.parametrize("L, k, bias, act", CASES)
def test_compiled_rhs_equals_reduced_oracle(L, k, bias, act, how):
    prob, ref, s0 = _case(1000 * L + 100 * k + 10 * bias + len(act), L, k, bias, act)
    kw = {"default": {}, "parallel": {"parallel": True}, "unfused": {"fuse": False}}[how]
    sy = System(prob, **kw)
    assert sy.variant[kernels.RED] is True and sy.variant[kernels.SHALLOW] is None
    s = _as_state(sy, sy.views(sy.y0))
    for key in s0:                                    # the System's initial state is the oracle's
        np.testing.assert_array_equal(s[key], s0[key])
    # a moved state too (not only t = 0), off the initial symmetry
    y = sy.y0 + 0.3 * np.sin(np.arange(sy.size) * 1.7)
    y[sy.layout.offset("w_1"):sy.layout.offset("w_1") + Q1 * (k + 1)].reshape(Q1, k + 1)[:, k] **= 2   # β ≥ 0 kept
    dy = sy.views(sy.rhs(0.3, y.copy()))
    ds = ref.rhs(_as_state(sy, sy.views(y)))
    got = _as_state(sy, dy)
    for key in ds:
        assert _rel(got[key], ds[key]) <= 1e-13, (key, _rel(got[key], ds[key]))
        assert np.linalg.norm(ds[key]) > 1e-4, key    # every block moves: the comparison is not vacuous
    # the numpy transcription of SPEC §2 (rhs_reference) agrees as well
    dr = _as_state(sy, sy.views(sy.rhs_reference(0.3, y.copy())))
    for key in ds:
        assert _rel(dr[key], ds[key]) <= 1e-13, (key, "reference")
    # forward only (evaluate): the loss is the oracle's Σ π ½(ŷ − y)² (squared loss)
    loss, _, yhat = sy.evaluate(y, prob.train.X, prob.train.Y, prob.train.weights)
    assert abs(loss - ref.loss(_as_state(sy, sy.views(y)))) <= 1e-13 * loss
    np.testing.assert_allclose(yhat[:, 0], ref.forward(_as_state(sy, sy.views(y))), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("L", [1, 2])
def test_single_zeta_node_at_zero_is_the_plain_layer_on_z(L):
    """J = 1, ζ_1 = 0, ρ_1 = 1: h_1 = ⟨a, z⟩ + b exactly, φ̄ = φ, and β never moves (drift exactly 0).

    L = 2: the plain System on the k = 2 columns z takes the fused first layer (FUSE0), which computes
    the same sums in the same order as the reduced row passes (start from b, add z_c·a_c for c < k;
    then β r·0 = 0; δ = G·φ', Σ_m δ z_c row by row): equal to the last bit.  L = 1: the plain System
    takes the one-hidden-layer path (SHALLOW), which sums the same M = 9 terms per entry in another
    order (per-row accumulators, G_out·v per row): equal up to ≤ M·ε·max|block| (the rounding of a
    reordered sum of M terms, each ≤ the block's max in size since no cancellation is needed)."""
    k = 2
    prob, _, _ = _case(55 + L, L, k, True, "tanh", zeta=([0.0], [1.0]))
    red = System(prob)
    emb = prob.embedding
    n1 = np.asarray(emb.rules[0].nodes)
    plain_nodes = np.delete(n1, k, axis=1)            # drop β⁰: w_1 = a⁰ (and v⁰ for L = 1)
    plain_emb = Embedding((quadrature.user(plain_nodes, emb.rules[0].weights),) + tuple(emb.rules[1:]),
                          w_1=emb.w_1, W=emb.W, v=embedding.coordinate(k) if L == 1 else emb.v, b=emb.b)
    plain_model = Model(input_dim=k, activations=prob.model.activations, biases=prob.model.biases)
    tr = prob.train
    plain = System(Problem(plain_model, plain_emb, prob.schedules, data.finite_set(np.asarray(tr.X)[:, :k], tr.Y,
                                                                                      weights=tr.weights)))
    assert red.variant[kernels.RED] is True and plain.variant[kernels.RED] is None
    Vr, Vp = red.views(red.y0), plain.views(plain.y0)
    np.testing.assert_array_equal(Vr["w_1"][:, :k], Vp["w_1"])
    assert (plain.variant[kernels.SHALLOW] is True) == (L == 1)
    dr, dp = red.views(red.rhs(0.1, red.y0.copy())), plain.views(plain.rhs(0.1, plain.y0.copy()))
    np.testing.assert_array_equal(dr["w_1"][:, k], 0.0)
    for key in dp:
        got = dr[key][:, :k] if key == "w_1" else dr[key]
        if L == 2:
            np.testing.assert_array_equal(got, dp[key], err_msg=key)
        else:
            tol = M * np.finfo(float).eps * np.abs(dp[key]).max()
            np.testing.assert_allclose(got, dp[key], rtol=0, atol=tol, err_msg=key)
    assert np.linalg.norm(dp["w_1"]) > 1e-3


@pytest.mark.parametrize("L", [1, 2])
def test_rk4_steps_equal_reduced_reference_rk4(L):
    """10 RK4 steps of dt = 0.1 (mfpde.solvers on the compiled RHS) = reduced_reference.rk4 on the
    oracle's RHS.  Per step the RHS agree to ~1e-15 relative (test above); a Lipschitz constant O(1)
    on these O(1) states amplifies that by ≤ e^{Lip·t} over t = 1: 1e-12 is generous."""
    prob, ref, s0 = _case(7 + L, L, 1, True, "tanh", J=4, d=3)
    sy = System(prob)
    sol = integrate(sy, make("rk4", sy, dt=0.1), 1.0, parameters="final")
    s1 = rk4(ref, s0, 0.1, 10)
    got = _as_state(sy, sy.views(sol.y))
    for key in s1:
        np.testing.assert_allclose(got[key], s1[key], rtol=0, atol=1e-12, err_msg=key)
        assert np.abs(s1[key] - s0[key]).max() > 1e-3, key       # the dynamics moved every block


def test_reduced_system_checks_its_zeta_rule_and_radii():
    prob, _, _ = _case(3, 1, 1, False, "tanh")
    sy = System(prob)
    assert sy.layout.dims()["w_1"] == ("node_1", "reduced_input")       # (a, β), not the probes' input_dim
    bad = Problem(prob.model, prob.embedding, prob.schedules, prob.train,
                  reduction=Reduction(7, 1, quadrature.user([[0.0, 1.0]], [1.0])))
    with pytest.raises(ConfigError, match="one-dimensional"):
        System(bad)
    X = np.asarray(prob.train.X).copy()
    X[0, 1] = -0.5
    neg = Problem(prob.model, prob.embedding, prob.schedules, data.finite_set(X, prob.train.Y),
                  reduction=prob.reduction)
    with pytest.raises(ConfigError, match="radius"):
        System(neg)


def test_frozen_first_layer_moves_nothing_below_layer_2():
    """ξ_1 = ξ^b_1 = 0: no backward pass reaches layer 1 (kernels' lowest moving layer); w_1 and b_1
    drifts are exactly 0 and the others still equal the oracle's (its ξ_1 = 0 too)."""
    prob, ref, _ = _case(77, 2, 1, True, "tanh")
    zero = Schedule("constant", 0.0)
    sched = Schedules((zero,) + prob.schedules.weights[1:], (zero,) + prob.schedules.biases[1:])
    sy = System(Problem(prob.model, prob.embedding, sched, prob.train, reduction=prob.reduction))
    ref0 = ReducedSystem(ref.rules, ("tanh", "tanh"), xi=(0.0,) + ref.xi[1:], xi_b1=0.0)
    dy = sy.views(sy.rhs(0.0, sy.y0.copy()))
    np.testing.assert_array_equal(dy["w_1"], 0.0)
    np.testing.assert_array_equal(dy["b_1"], 0.0)
    ds, got = ref0.rhs(_as_state(sy, sy.views(sy.y0))), _as_state(sy, dy)
    for key in ("W_2", "v"):
        assert _rel(got[key], ds[key]) <= 1e-13 and np.linalg.norm(ds[key]) > 1e-4, key


def test_deeper_and_nonlinear_edge_networks_match_the_reference_transcription():
    """L = 3 with a tanh_product edge map on W_3 (outside the oracle's L ≤ 2): the compiled drift equals
    ``rhs_reference`` (numpy, SPEC §2 with the reduced layer 1); same sums, other order → 1e-13."""
    rng = np.random.default_rng(5)
    prob, _, _ = _case(91, 2, 1, True, "tanh")
    emb = prob.embedding
    W3 = rng.uniform(-1, 1, (Q2, 3))
    rules = emb.rules + (quadrature.user(rng.uniform(-1, 1, (3, 1)), rng.uniform(0.5, 1.5, 3)),)
    emb3 = Embedding(rules, w_1=emb.w_1, W=emb.W + (embedding.python(lambda a, b: W3.copy()),), v=emb.v, b=emb.b + (None,))
    model = Model(input_dim=2, activations=("tanh",) * 3, biases=(True, False, True), edges=("linear", "tanh_product"))
    sched = Schedules.constant(3, 0.9, 0.6)
    sy = System(Problem(model, emb3, sched, prob.train, reduction=prob.reduction))
    assert sy.variant[kernels.EDGES] is True and sy.variant[kernels.RED] is True
    y = sy.y0 + 0.2 * np.cos(np.arange(sy.size) * 0.9)
    y[sy.layout.offset("w_1"):sy.layout.offset("w_1") + 2 * Q1].reshape(Q1, 2)[:, 1] **= 2
    got, want = sy.views(sy.rhs(0.2, y.copy())), sy.views(sy.rhs_reference(0.2, y.copy()))
    for key in want:
        assert _rel(got[key], want[key]) <= 1e-13 and np.linalg.norm(want[key]) > 1e-5, key

"""Edges nonlinear in the weight (SPEC §5, Araújo–Oliveira–Yukimura; docs/edges.md).

Independent checks:

1. every edge map's partial derivatives against finite differences of the map, and the
   compiled map against closed forms written out again here;
2. the drift of a finite network with nonlinear edges (one initial weight per edge) equals
   −ξ × SPEC §1's multiplier × the finite-difference gradient of the network's risk, with the
   network written here in plain numpy — including AOY's frozen ends (ξ_1 = ξ_{L+1} = 0);
3. with the initial weight as an extra index on an R-node rule, the drift is the population
   gradient flow of the weighted network h_l = Σ_r ρ_r Σ_i ω_i σ(W[r, i, j], a_i) (FD again),
   and the compiled kernels agree with the numpy transcription of the spec;
4. finite networks with i.i.d. initial noise approach the limit *with* the noise index (their
   replica mean sits within Monte-Carlo error of it) and not the limit that ignores the noise.
"""
from __future__ import annotations

import zlib

import numpy as np
import pytest

from mfpde import finite

from mfpde.problem import config

from mfpde.problem import data

from mfpde.problem import edges

from mfpde.problem import embedding

from mfpde.problem import quadrature
from mfpde.errors import ConfigError
from mfpde.problem.losses import reference_loss
from mfpde.problem.model import Embedding, Model, Problem, Schedules
from mfpde.problem.schedules import Schedule
from mfpde.solvers import integrate, make
from mfpde.system.system import System

import finite_reference as ref   # tests/finite_reference.py: the independent numpy network (tests/ is on pytest's path)


# σ(W, a) written out again (docs/edges.md's table)
SIGMA = {
    "linear": lambda W, a: W * a,
    "tanh_weight": lambda W, a: np.tanh(W) * a,
    "tanh_product": lambda W, a: np.tanh(W * a),
    "sin_product": lambda W, a: np.sin(W * a),
}


# ============================================================================ 1. the maps

@pytest.mark.parametrize("name", edges.names())
def test_edge_map_partials_match_finite_differences(name):
    assert set(edges.names()) == set(SIGMA)
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    W = rng.normal(scale=1.5, size=200)
    a = rng.normal(scale=1.5, size=200)
    s, dW, da = edges.numpy_edge(name, W, a)
    np.testing.assert_allclose(s, SIGMA[name](W, a), rtol=1e-15, atol=1e-15)
    h = 1e-5
    # central differences: truncation h² |σ'''| / 6 ≲ 1e-10 for these O(1) maps, rounding ≈ 1e-11
    fd_W = (SIGMA[name](W + h, a) - SIGMA[name](W - h, a)) / (2 * h)
    fd_a = (SIGMA[name](W, a + h) - SIGMA[name](W, a - h)) / (2 * h)
    np.testing.assert_allclose(dW, fd_W, rtol=0, atol=1e-8)
    np.testing.assert_allclose(da, fd_a, rtol=0, atol=1e-8)
    code = edges.code(name)
    for i in range(0, 200, 17):   # the compiled map (tanh_fast inside) agrees to rounding
        c = edges.edge(code, W[i], a[i])
        np.testing.assert_allclose(c, (s[i], dW[i], da[i]), rtol=1e-13, atol=1e-15)


def test_unknown_edge_map_is_a_config_error():
    with pytest.raises(ConfigError) as e:
        Model(2, ("tanh", "tanh"), edges=("quadratic",))
    assert e.value.key == "model.edges[0]" and "tanh_product" in str(e.value)
    with pytest.raises(ConfigError) as e:
        Model(2, ("tanh", "tanh", "tanh"), edges=("linear",))
    assert e.value.key == "model.edges"


# ============================================================================ 2. finite networks: FD gradient

def network_risk(P: dict, X, Y, rho, acts, edge_names, biases, loss) -> float:
    """SPEC §1 with general edges: h_l(j) = (1/n_{l−1}) Σ_i σ_l(W_l(i, j), φ(h_{l−1}(i))) + b_l(j)."""
    L = len(acts)
    h = X @ P["w_1"].T + (P["b_1"] if biases[0] else 0.0)
    for l in range(2, L + 1):
        a = ref.ACT[acts[l - 2]][0](h)
        W = P[f"W_{l}"]
        h = SIGMA[edge_names[l - 2]](W[None, :, :], a[:, :, None]).sum(axis=1) / W.shape[0]
        if biases[l - 1]:
            h = h + P[f"b_{l}"]
    a = ref.ACT[acts[L - 1]][0](h)
    yhat = a @ P["v"] / a.shape[1]
    return float(rho @ reference_loss(loss, 1.0, Y, yhat))


FD_EDGE_CASES = [
    # acts, edges, biases, loss, sizes, xi (w_1, W_2.., v), id
    (("tanh", "tanh"), ("tanh_product",), (True, False), "squared", (5, 6), (0.7, 1.3, 0.9), "L2-tanh_product"),
    (("tanh", "sigmoid"), ("tanh_weight",), (False, True), "logistic", (6, 4), (1.1, 0.8, 1.2), "L2-tanh_weight-logistic"),
    (("erf", "tanh", "tanh"), ("sin_product", "tanh_product"), (True, True, False), "squared", (4, 5, 6),
     (0.0, 1.3, 0.6, 0.0), "L3-AOY-frozen-ends"),
    (("tanh", "gelu", "tanh"), ("linear", "tanh_weight"), (False, False, True), "huber", (5, 4, 5),
     (1.0, 0.5, 1.4, 0.8), "L3-linear-then-tanh_weight"),
    # the edge layer is the lowest that moves (no backward product below it) / is frozen itself
    (("tanh", "tanh"), ("sin_product",), (False, False), "squared", (5, 4), (0.0, 1.3, 0.9), "L2-no-backprop-below-edge"),
    (("tanh", "tanh"), ("tanh_product",), (False, False), "squared", (4, 6), (0.7, 0.0, 0.9), "L2-frozen-edge-layer"),
]


@pytest.mark.parametrize("case", FD_EDGE_CASES, ids=[c[-1] for c in FD_EDGE_CASES])
def test_drift_equals_scaled_fd_gradient_with_nonlinear_edges(case):
    acts, edge_names, biases, loss, sizes, xis, cid = case
    rng = np.random.default_rng(zlib.crc32(cid.encode()))
    L, d, M = len(acts), 2, 7
    X = rng.normal(size=(M, d))
    Y = rng.choice([-1.0, 1.0], size=(M, 1)) if loss == "logistic" else rng.normal(size=(M, 1))
    rho = rng.uniform(0.5, 1.5, size=M)
    rho /= rho.sum()
    sched = Schedules(tuple(Schedule("constant", x) for x in xis), tuple(Schedule("constant", 0.9) for _ in xis))
    rules = [quadrature.user(rng.normal(size=(Q, 2))) for Q in sizes]
    # noise_std > 0 with a one-node noise rule: a network, every weight its own initial value
    emb = Embedding(tuple(rules), embedding.constant(0.0), tuple(embedding.constant(0.0, noise_std=1.0) for _ in range(L - 1)),
                    embedding.constant(0.0), (None,) * L, None, tuple(quadrature.user([[0.0]]) for _ in range(L - 1)))
    model = Model(d, acts, 1, biases, loss=loss, edges=edge_names)
    system = System(Problem(model, emb, sched, data.finite_set(X, Y, weights=rho)))
    y = rng.normal(scale=0.9, size=system.size)
    views = system.layout.views(y)
    for l in range(2, L + 1):
        assert views[f"W_{l}"].shape == (sizes[l - 2], sizes[l - 1])

    def risk(yy):
        return network_risk(system.layout.views(yy), X, Y, rho, acts, edge_names, biases, loss)

    if loss == "huber":   # keep away from the kink |r| = 1 (FD steps move ŷ by ≲ 1e-3)
        r = np.abs(system.predict(y, X) - Y)
        assert np.min(np.abs(r - 1.0)) > 1e-3
    grad = system.layout.views(ref.richardson_gradient(risk, y))
    drift = system.layout.views(system.rhs(0.3, y.copy()))
    xi = {"w_1": xis[0], "v": xis[L]} | {f"W_{l}": xis[l - 1] for l in range(2, L + 1)} | {f"b_{l}": 0.9 for l in range(1, L + 1)}
    for name, g in grad.items():
        if xi[name] == 0.0:   # AOY's frozen features
            assert np.all(drift[name] == 0.0), f"{name} is frozen but moves"
            continue
        expected = -xi[name] * ref.spec_multiplier(name, list(sizes)) * g
        assert np.linalg.norm(g) > 1e-8
        err = np.linalg.norm(drift[name] - expected) / np.linalg.norm(expected)
        assert err <= 1e-6, f"{name}: relative error {err:.2e} against the scaled FD gradient"
    assert system.observe(y)["loss_train"] == pytest.approx(risk(y), rel=1e-13)
    np.testing.assert_allclose(system.rhs(0.3, y.copy()), system.rhs_reference(0.3, y), rtol=0, atol=1e-13)


# ============================================================================ 3. the noise index

def _noise_index_system(rng, R=5, edge_names=("tanh_product", "sin_product"), acts=("tanh", "tanh", "tanh")):
    L = len(acts)
    d, M = 2, 6
    X = rng.normal(size=(M, d))
    Y = rng.normal(size=(M, 1))
    rho = np.full(M, 1.0 / M)
    rules = [quadrature.user(rng.normal(size=(Q, 2)), rng.uniform(0.5, 1.5, size=Q)) for Q in (4, 5, 3)[:L]]
    noise = quadrature.gauss_hermite(R)
    emb = Embedding(tuple(rules), embedding.coordinate(0),
                    tuple(embedding.kernel(0.3, 0.5, "tanh", noise_std=0.8) for _ in range(L - 1)),
                    embedding.coordinate(0), (None,) * L, None, (noise,) * (L - 1))
    sched = Schedules.constant(L, 1.2)
    model = Model(d, acts, 1, (False, True, False)[:L], edges=edge_names)
    return System(Problem(model, emb, sched, data.finite_set(X, Y, weights=rho))), X, Y, rho


def weighted_risk(P, system, X, Y, rho):
    """The weighted network of SPEC §3 with R parallel edges per pair (masses ρ_r ω_i)."""
    m = system.problem.model
    w = system.weights
    h = X @ P["w_1"].T
    for l in range(2, m.L + 1):
        a = ref.ACT[m.activations[l - 2]][0](h)
        W = P[f"W_{l}"]
        s = SIGMA[m.edges[l - 2]](W[None], a[:, None, :, None])            # [M, R, Q_{l−1}, Q_l]
        h = np.einsum("r,i,mrij->mj", system.edge_weights[l - 2], w[l - 2], s)
        if m.biases[l - 1]:
            h = h + P[f"b_{l}"]
    a = ref.ACT[m.activations[-1]][0](h)
    yhat = (a * w[-1]) @ P["v"]
    return float(rho @ reference_loss("squared", 1.0, Y, yhat))


def test_noise_index_drift_is_the_weighted_gradient_flow():
    rng = np.random.default_rng(11)
    system, X, Y, rho = _noise_index_system(rng)
    V0 = system.views(system.y0)
    # W(0)[r] = W^0(c, c') + noise_std · ω_r on the Gauss–Hermite nodes ω_r
    nodes = quadrature.gauss_hermite(5).nodes[:, 0]
    np.testing.assert_allclose(V0["W_2"][3] - V0["W_2"][1], 0.8 * (nodes[3] - nodes[1]), rtol=1e-14)
    assert system.layout.dims()["W_3"] == ("omega_3", "node_2", "node_3")
    y = system.y0 + 0.3 * rng.normal(size=system.size)
    grad = system.views(ref.richardson_gradient(lambda yy: weighted_risk(system.views(yy), system, X, Y, rho), y))
    drift = system.views(system.rhs(0.0, y.copy()))
    w = system.weights
    mass = {"w_1": w[0][:, None], "v": w[-1][:, None], "b_2": w[1],
            "W_2": system.edge_weights[0][:, None, None] * np.outer(w[0], w[1])[None],
            "W_3": system.edge_weights[1][:, None, None] * np.outer(w[1], w[2])[None]}
    for name, g in grad.items():
        expected = -1.2 * g / mass[name]
        err = np.linalg.norm(drift[name] - expected) / np.linalg.norm(expected)
        assert err <= 1e-6, f"{name}: relative error {err:.2e}"
    np.testing.assert_allclose(system.rhs(0.0, y.copy()), system.rhs_reference(0.0, y), rtol=0, atol=1e-13)


def test_linear_edges_on_a_noise_index_reduce_to_the_plain_system():
    """With σ = W a the noise averages out (SPEC §4): a symmetric noise rule changes nothing."""
    rng = np.random.default_rng(5)
    sysR, X, Y, rho = _noise_index_system(rng, R=6, edge_names=("linear",), acts=("tanh", "tanh"))
    emb = sysR.problem.embedding
    plain = System(Problem(sysR.problem.model, Embedding(emb.rules, emb.w_1, emb.W, emb.v, emb.b, emb.b_out),
                           sysR.problem.schedules, sysR.problem.train))
    sol_R = integrate(sysR, make("rk4", sysR, dt=0.05), 1.0)
    sol_1 = integrate(plain, make("rk4", plain, dt=0.05), 1.0)
    np.testing.assert_allclose(sol_R.observable("loss_train"), sol_1.observable("loss_train"), rtol=1e-12, atol=0)


# ============================================================================ 4. networks → the limit

TOML = """
name = "edge_mc"
seed = 3
[model]
input_dim = 1
hidden = ["tanh", "tanh"]
biases = [true, false]
edges = ["tanh_product"]
[rules]
layer_1 = { kind = "gauss_hermite", size = 14, dim = 2 }
layer_2 = { kind = "gauss_hermite", size = 14 }
omega_2 = { kind = "gauss_hermite", size = 16 }
[init]
w_1 = { kind = "affine", mean = 0.0, std = 1.0, start = 0 }
b_1 = { kind = "affine", mean = 0.8, std = 0.5, start = 1 }
W_2 = { kind = "constant", value = 1.0, noise_std = 2.0 }
v = { kind = "affine", mean = 1.0, std = 0.5, start = 0 }
[data.train]
kind = "arrays"
x = [-1.5, -0.7, 0.0, 0.6, 1.2, 1.8]
y = [0.4, -0.3, 0.2, 0.5, -0.6, 0.1]
[probes]
kind = "grid"
low = -2.0
high = 2.0
size = 5
[solver]
stepper = "euler"
dt = 0.05
t_end = 1.0
"""


def test_networks_approach_the_limit_with_the_noise_index():
    c = config.loads(TOML)
    prob = c.problem
    lim = System(prob)
    sol = integrate(lim, make("euler", lim, dt=0.05), 1.0, times=[0.0, 1.0])
    y_lim = np.asarray(sol.observable("yhat_probe"))[:, :, 0]           # [2 times, 5 probes]
    # the limit that wrongly averages the noise out inside σ (R = 1 node at ω = 0)
    wrong_prob = Problem(prob.model, Embedding(prob.embedding.rules, prob.embedding.w_1, prob.embedding.W, prob.embedding.v,
                                               prob.embedding.b, prob.embedding.b_out, (quadrature.user([[0.0]]),)),
                         prob.schedules, prob.train, probes=prob.probes)
    wrong = System(wrong_prob)
    y_wrong = np.asarray(integrate(wrong, make("euler", wrong, dt=0.05), 1.0, times=[0.0, 1.0]).observable("yhat_probe"))[:, :, 0]
    spread = {}
    for n in (64, 256):
        reps = 12
        out = np.stack([np.asarray(finite.train(prob, n, mode="full", lr=0.05, t_end=1.0, record_times=[0.0, 1.0],
                                                replica=r, statistics=False).observables["yhat_probe"])[:, :, 0]
                        for r in range(reps)])                             # [reps, 2, 5]
        mean, sem = out.mean(axis=0), out.std(axis=0, ddof=1) / np.sqrt(reps)
        spread[n] = out.std(axis=0, ddof=1).mean()
        # replica mean = limit + O(1/n) bias + Monte-Carlo error: 4.5 sem (+ 1/n) covers it
        # (measured over seeds 3..6: ≤ 0.6 of that band; the noise-free limit: 7.8–12 bands away)
        dev = np.abs(mean - y_lim)
        assert np.all(dev <= 4.5 * sem + 1.0 / n), f"n = {n}: deviation/sem = {np.max(dev / sem):.2f}"
        # the limit without the noise index fails the same criterion by a wide margin
        band = 4.5 * sem + 1.0 / n
        if n == 256:
            assert np.max(np.abs(mean - y_wrong) / band) > 2.0
    # fluctuations shrink like n^{-1/2}: 4 times the width, half the spread (±40%)
    assert 1.4 <= spread[64] / spread[256] <= 2.8, spread


# ============================================================================ 5. configuration

def _raw(**model):
    import tomllib

    raw = tomllib.loads(TOML)
    raw["model"].update(model)
    return raw


def test_config_defaults_the_noise_rule_and_rejects_bad_edge_keys():
    raw = _raw()
    del raw["rules"]["omega_2"]
    c = config.from_dict(raw)
    (rule,) = c.problem.embedding.edge_rules
    assert rule.kind == "gauss_hermite" and rule.size == 16
    assert any("omega_2" in n for n in c.notes)
    assert System(c.problem).layout.dims()["W_2"] == ("omega_2", "node_1", "node_2")
    raw["rules"]["omega_3"] = {"kind": "gauss_hermite", "size": 4}
    with pytest.raises(ConfigError) as e:
        config.from_dict(raw)
    assert e.value.key == "rules.omega_3"
    raw = _raw()
    raw["rules"]["omega_2"] = {"kind": "gauss_hermite", "size": 4, "dim": 2}
    with pytest.raises(ConfigError) as e:
        config.from_dict(raw)
    assert e.value.key == "rules.omega_2" and "one-dimensional" in str(e.value)
    for bad, key in ((["tanh_product", "linear"], "model.edges"), (3, "model.edges"), ("cubic", "model.edges[0]")):
        with pytest.raises(ConfigError) as e:
            config.from_dict(_raw(edges=bad))
        assert e.value.key == key


def test_iid_three_layers_with_a_nonlinear_edge_keeps_the_collapse():
    """SPEC §4's degeneracy argument needs only that no middle neuron has a feature of its own:
    with σ nonlinear the noise index is added, yet h_2 stays node-independent."""
    raw = {
        "model": {"input_dim": 1, "hidden": ["tanh", "tanh", "tanh"], "edges": ["tanh_product", "linear"]},
        "iid": {"w_1": {"law": "normal", "mean": 0.0, "std": 1.0}, "v": {"law": "normal", "mean": 0.5, "std": 1.0},
                "W": [{"mean": 0.8, "std": 1.0}, {"mean": 0.5, "std": 1.0}]},
        "rules": {"omega_2": {"kind": "gauss_hermite", "size": 8}},
        "data": {"train": {"kind": "arrays", "x": [-1.0, 0.0, 0.5, 1.5], "y": [0.3, -0.2, 0.1, 0.4]}},
    }
    c = config.from_dict(raw)
    sysm = System(c.problem)
    assert sysm.layout.dims()["W_2"] == ("omega_2", "node_1", "node_2")
    sol = integrate(sysm, make("rk4", sysm, dt=0.05), 1.0, parameters="final")
    from mfpde.system.system import reference_forward

    Hs, _, _ = reference_forward(sysm, sol.y, np.linspace(-2, 2, 5)[:, None])
    assert Hs[1].shape[1] == 1 or np.ptp(Hs[1], axis=1).max() < 1e-12
    loss = np.asarray(sol.observable("loss_train"))
    assert loss[-1] < loss[0]

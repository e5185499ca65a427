"""The SPEC §7 reduction in the configuration (mfpde.problem.reduction): when it applies, what it
builds, and the one-line refusals when it is forced on a problem without the symmetry.

The reduced data sets are checked against closed forms of the Gaussian law: E[z²] = s²,
E[r²] = s²(d − k) (χ moments, exact for the Gauss rule in r), y = f*(z) at the nodes."""
from __future__ import annotations

import copy

import numpy as np
import pytest

from mfpde.errors import ConfigError
from mfpde.problem import config as C
from mfpde.problem import reduction as R

BASE = {
    "name": "red",
    "model": {"input_dim": 50, "hidden": ["tanh"], "outputs": 1},
    "iid": {"rule": {"kind": "gauss_hermite", "size": 6}, "radius_rule": {"kind": "chi", "size": 5},
            "zeta_rule": {"kind": "sphere_marginal", "size": 7}},
    "data": {"train": {"kind": "teacher", "d": 50, "teacher": {"kind": "single_index_tanh", "scale": 2.0},
                       "rule": {"kind": "gauss_hermite", "size": 8}, "radius_rule": {"kind": "chi", "size": 4}}},
    "solver": {"dt": 0.1, "t_end": 0.2},
}


def cfg(**edits):
    raw = copy.deepcopy(BASE)
    for path, value in edits.items():
        node = raw
        keys = path.split("__")
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        if value is None:
            node.pop(keys[-1], None)
        else:
            node[keys[-1]] = value
    return raw


def test_auto_reduces_and_builds_the_reduced_problem():
    c = C.from_dict(cfg())
    p = c.problem
    assert p.reduction is not None and (p.reduction.d, p.reduction.k) == (50, 1)
    assert p.model.input_dim == 2
    # layer-1 index: a⁰ (GH 6) × β⁰/σ (chi 5) × v⁰ (GH 6) for L = 1
    assert p.embedding.rules[0].size == 6 * 5 * 6
    assert p.reduction.zeta.size == 7
    X, w = p.train.X, p.train.weights
    assert X.shape == (8 * 4, 2)
    np.testing.assert_allclose(w @ X[:, 0] ** 2, 1.0, rtol=1e-13)            # E z² = 1
    np.testing.assert_allclose(w @ X[:, 1] ** 2, 49.0, rtol=1e-13)           # E r² = d − k
    np.testing.assert_allclose(p.train.Y[:, 0], np.tanh(2.0 * X[:, 0]), rtol=0, atol=1e-15)
    # w_1⁰ = σ (a⁰, β⁰/σ) with σ = 1/√d: E β² = σ² (d − k)
    nodes, om = p.embedding.rules[0].nodes, p.embedding.rules[0].weights
    W1 = p.embedding.w_1.node_values(nodes, 2, "init.w_1")
    np.testing.assert_allclose(om @ W1[:, 1] ** 2, 49.0 / 50.0, rtol=1e-13)
    np.testing.assert_allclose(om @ W1[:, 0] ** 2, 1.0 / 50.0, rtol=1e-13)
    assert any("isotropic_gaussian" in line and "d = 50" in line for line in c.info)
    # the rules used are written into the stored configuration
    assert c.raw["iid"]["zeta_rule"] == {"kind": "sphere_marginal", "size": 7}
    assert c.raw["data"]["train"]["radius_rule"] == {"kind": "chi", "size": 4}


def test_defaults_are_written_out_and_none_keeps_the_general_solver():
    raw = cfg(iid__radius_rule=None, iid__zeta_rule=None, data__train__radius_rule=None)
    c = C.from_dict(raw)
    assert c.raw["iid"]["radius_rule"] == {"kind": "chi", "size": R.RADIUS_DEFAULT}
    assert c.raw["iid"]["zeta_rule"] == {"kind": "sphere_marginal", "size": R.ZETA_DEFAULT}
    small = cfg(iid__radius_rule=None, iid__zeta_rule=None, data__train__radius_rule=None,
                model__input_dim=3, data__train__d=3, iid__reduction="none")
    small["data"]["train"]["rule"] = {"kind": "gauss_hermite", "size": 4, "dim": 3}
    c = C.from_dict(small)
    assert c.problem.reduction is None and c.problem.model.input_dim == 3 and not c.info


def test_auto_leaves_d_equal_k_plus_one_alone():
    # d − k = 1: the index space would not shrink, so auto keeps the general solver (existing
    # d = 2 single-index configurations are unchanged); forcing it is allowed
    raw = cfg(model__input_dim=2, data__train__d=2, iid__radius_rule=None, iid__zeta_rule=None,
              data__train__radius_rule=None)
    raw["data"]["train"]["rule"] = {"kind": "gauss_hermite", "size": 6, "dim": 2}
    assert C.from_dict(raw).problem.reduction is None
    raw["data"]["train"]["rule"] = {"kind": "gauss_hermite", "size": 6}
    raw["iid"]["reduction"] = "isotropic_gaussian"
    p = C.from_dict(raw).problem
    assert p.reduction is not None and p.reduction.zeta.size == 2      # ζ = ±1 (m = 1)


@pytest.mark.parametrize("edit, key", [
    ({"iid__w_1": {"law": "uniform", "low": -1.0, "high": 1.0}}, "iid.w_1"),
    ({"iid__w_1": {"law": "normal", "mean": 0.5, "std": 1.0}}, "iid.w_1"),
    ({"data__train": {"kind": "arrays", "x": [[0.0] * 50], "y": [0.0]}}, "data.train.kind"),
    ({"data__train__rule": None, "data__train__radius_rule": None, "data__train__sample": 100}, "data.train.sample"),
    ({"data__train__teacher": {"kind": "two_layer", "index_dim": 50}}, "data.train.teacher"),
    ({"data__train__rule": {"kind": "sobol", "size": 64, "dim": 50}}, "data.train.rule"),
    ({"iid__rule": {"kind": "sobol", "size": 64}}, "iid.rule"),
])
def test_forced_reduction_names_what_breaks_it(edit, key):
    raw = cfg(**edit)
    raw["iid"]["reduction"] = "isotropic_gaussian"
    with pytest.raises(ConfigError) as e:
        C.from_dict(raw)
    assert e.value.key == key
    assert "SPEC §7" in str(e.value) and "\n" not in str(e.value)


def test_bad_reduction_keys():
    with pytest.raises(ConfigError, match="iid.reduction"):
        C.from_dict(cfg(iid__reduction="yes"))
    with pytest.raises(ConfigError, match="iid.zeta_rule.kind"):
        C.from_dict(cfg(iid__zeta_rule={"kind": "gauss_hermite", "size": 4}))
    with pytest.raises(ConfigError, match="iid.radius_rule.size"):
        C.from_dict(cfg(iid__radius_rule={"kind": "chi", "size": 100}))
    # the r rule without the reduction is refused, never ignored
    raw = cfg(iid__reduction="none", iid__radius_rule=None, iid__zeta_rule=None, model__input_dim=3, data__train__d=3)
    raw["data"]["train"]["rule"] = {"kind": "gauss_hermite", "size": 4, "dim": 3}
    with pytest.raises(ConfigError, match="data.train.radius_rule"):
        C.from_dict(raw)
    raw["data"]["train"].pop("radius_rule")
    raw["sgd"] = {"sample": 100}
    with pytest.raises(ConfigError, match="sgd.sample"):
        C.from_dict(raw)
    with pytest.raises(ConfigError, match="sgd.coupling"):
        C.from_dict(cfg(sgd={"coupling": True}))


def test_a_teacher_direction_is_rotated_onto_the_reduced_coordinate():
    rng = np.random.default_rng(0)
    u = rng.standard_normal(50)
    raw = cfg(data__train__teacher={"kind": "single_index_tanh", "scale": 2.0, "direction": u.tolist()})
    raw["data"]["test"] = {"kind": "teacher", "d": 50, "teacher": raw["data"]["train"]["teacher"], "sample": 300, "seed": 4}
    raw["probes"] = [[0.0] * 49 + [1.5], (u / np.linalg.norm(u)).tolist()]
    p = C.from_dict(raw).problem
    np.testing.assert_allclose(p.train.Y[:, 0], np.tanh(2.0 * p.train.X[:, 0]), atol=1e-14)
    # the test sample, drawn in R^50 and reduced: z = <u, x>/|u|, r = |P⊥x|, y = f*(x) unchanged
    from mfpde.problem.data import make_data

    full = make_data(raw["data"]["test"], "data.test", 0)
    un = u / np.linalg.norm(u)
    z = full.X @ un
    np.testing.assert_allclose(p.test.X[:, 0], z, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(p.test.X[:, 1], np.linalg.norm(full.X - np.outer(z, un), axis=1), rtol=1e-12)
    np.testing.assert_allclose(p.test.Y, full.Y)
    np.testing.assert_allclose(p.test.X[:, 1] ** 2 + p.test.X[:, 0] ** 2, (full.X ** 2).sum(axis=1), rtol=1e-12)
    # probes stay points of R^50 (the finite networks and compare read them); their reduced form:
    assert p.probes.shape == (2, 50)
    red = p.reduction.reduce(p.probes)
    np.testing.assert_allclose(red[1], [1.0, 0.0], atol=1e-14)


def test_the_finite_twin_is_d_dimensional():
    raw = cfg(sgd={"sample": 500, "mode": "online", "batch": 32})
    raw["probes"] = {"kind": "grid", "low": -1.0, "high": 1.0, "size": 3}
    c = C.from_dict(raw)
    f = c.finite_problem
    assert f.reduction is None and f.model.input_dim == 50
    assert f.train.X.shape == (500, 50)
    np.testing.assert_array_equal(f.probes, c.problem.probes)
    assert f.config == c.raw          # run seeds and `mfpde compare` see the user's configuration
    from mfpde.finite.network import network_problem

    net = network_problem(f, 4000, np.random.default_rng(1))
    W = net.embedding.w_1.node_values(net.embedding.rules[0].nodes, 50, "init.w_1")
    # the first-layer weights are N(0, I/d) in R^50: E|w|² = 1 within sampling error (4000·50 draws)
    assert abs(np.mean(np.sum(W ** 2, axis=1)) - 1.0) < 5 * np.sqrt(2.0 / 50 / 4000)


def test_auto_says_why_it_did_not_apply_when_the_general_rule_fails():
    raw = cfg(iid__w_1={"law": "uniform", "low": -0.1, "high": 0.1}, iid__radius_rule=None, iid__zeta_rule=None,
              data__train__radius_rule=None)
    with pytest.raises(ConfigError) as e:
        C.from_dict(raw)
    msg = str(e.value)
    assert e.value.key == "iid.rule.size" and "6^51" in msg   # w_1 ∈ R^50 and v⁰ (L = 1)
    assert "does not apply: iid.w_1" in msg and "\n" not in msg


@pytest.mark.parametrize("direction", ["tanh", {"a": 1}, [[1.0, 2.0]], [1.0, "x"]])
def test_a_malformed_direction_is_a_config_error_not_a_crash(direction):
    # found by make fuzz (seed 1021984816): the reduction reads the teacher before data.py validates it
    raw = cfg(data__train__teacher={"kind": "single_index_tanh", "direction": direction})
    with pytest.raises(ConfigError) as e:
        C.from_dict(raw)
    assert "data.train.teacher.direction" in str(e.value)   # as its key, or as why the reduction did not apply


def test_a_law_of_another_dimension_is_refused_before_it_is_built():
    # found by make fuzz (seed 590930082): data.train.d = 10⁹ built a 10⁹-long teacher direction (OOM)
    with pytest.raises(ConfigError, match=r"data.train.d: must equal model.input_dim = 50"):
        C.from_dict(cfg(data__train__d=10 ** 9))
    small = cfg(data__train__d=10 ** 9, model__input_dim=1, iid__reduction="none", iid__radius_rule=None,
                iid__zeta_rule=None, data__train__radius_rule=None)
    with pytest.raises(ConfigError, match=r"data.train.d: must equal model.input_dim = 1"):
        C.from_dict(small)   # the unreduced path too

"""Tests of mfpde.problem.data: data sets, file loaders, teachers, population laws, config tables."""
from __future__ import annotations

import re
import sys
import types
from dataclasses import dataclass

import h5py
import numpy as np
import pytest
from fuzzing import fuzz_settings
from hypothesis import given
from hypothesis import strategies as st
from numpy.polynomial.hermite_e import hermegauss
from scipy.integrate import quad

from mfpde.problem.data import (
    DATA_KINDS, CallableTeacher, DataSet, GaussianClassesLaw, GaussianTeacherLaw,
    SingleIndexTanh, TwoLayerTeacher, finite_set, load, make_data, make_law, probes,
)
from mfpde.errors import ConfigError, DataError


@dataclass(frozen=True)
class TinyRule:
    """Stand-in for mfpde.problem.quadrature.Rule: nodes [Q, k] for N(0, I_k), weights [Q] summing to 1."""

    nodes: np.ndarray
    weights: np.ndarray

    def describe(self) -> str:
        return f"tiny_gauss_hermite(Q={self.weights.size})"


def gauss_hermite(n: int, d: int = 1) -> TinyRule:
    """Tensor-product probabilists' Gauss–Hermite rule with n nodes per axis."""
    x, w = hermegauss(n)
    w = w / w.sum()
    grids = np.meshgrid(*([x] * d), indexing="ij")
    weights = np.prod(np.meshgrid(*([w] * d), indexing="ij"), axis=0).ravel()
    return TinyRule(np.stack([g.ravel() for g in grids], axis=1), weights)


def arrays(M=7, d=3, K=2, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((M, d)), rng.standard_normal((M, K))


# --------------------------------------------------------------------------- DataSet / finite_set

def test_finite_set_has_equal_weights_and_readonly_contiguous_arrays():
    X, Y = arrays()
    ds = finite_set(X, Y[:, 0], name="train")
    assert (ds.M, ds.d, ds.K) == (7, 3, 1)
    np.testing.assert_array_equal(ds.weights, np.full(7, 1 / 7))
    for a in (ds.X, ds.Y, ds.weights):
        assert a.dtype == np.float64 and a.flags.c_contiguous and not a.flags.writeable
    X[0, 0] = 99.0  # the data set holds its own copy
    assert ds.X[0, 0] != 99.0


def test_finite_set_one_dimensional_inputs_mean_d_equals_one():
    ds = finite_set([0.0, 1.0, 2.0], [1.0, 2.0, 3.0])
    assert ds.X.shape == (3, 1) and ds.Y.shape == (3, 1)


def test_finite_set_normalises_given_weights():
    X, Y = arrays(M=3)
    ds = finite_set(X, Y, weights=[1.0, 1.0, 2.0])
    np.testing.assert_allclose(ds.weights, [0.25, 0.25, 0.5])
    assert ds.expect(ds.Y).shape == (2,)


@pytest.mark.parametrize("X, Y, weights, fragment", [
    (np.zeros((3, 2)), np.zeros(4), None, "same length"),
    (np.zeros((0, 2)), np.zeros(0), None, "M >= 1"),
    (np.array([[0.0, np.nan]]), np.zeros(1), None, "non-finite"),
    (np.zeros((2, 2)), np.array([0.0, np.inf]), None, "non-finite"),
    (np.zeros((2, 2, 2)), np.zeros(2), None, "shape"),
    (np.array([["a", "b"]]), np.zeros(1), None, "non-numeric"),
    (np.zeros((2, 1)), np.zeros(2), [1.0, -1.0], ">= 0"),
    (np.zeros((2, 1)), np.zeros(2), [1.0], "shape"),
])
def test_finite_set_rejects_malformed_arrays(X, Y, weights, fragment):
    with pytest.raises(DataError, match=re.escape(fragment)) as info:
        finite_set(X, Y, name="mine", weights=weights)
    assert "'mine'" in str(info.value)


def test_dataset_constructor_requires_weights_summing_to_one():
    with pytest.raises(DataError, match="sum"):
        DataSet(np.zeros((2, 1)), np.zeros((2, 1)), np.array([0.5, 0.6]), "train", "test")


def test_subset_has_equal_weights_and_the_selected_points():
    X, Y = arrays(M=10)
    ds = finite_set(X, Y, weights=np.arange(1.0, 11.0))
    sub = ds.subset([2, 5, 7])
    np.testing.assert_array_equal(sub.X, X[[2, 5, 7]])
    np.testing.assert_array_equal(sub.Y, Y[[2, 5, 7]])
    np.testing.assert_array_equal(sub.weights, np.full(3, 1 / 3))
    assert "subset" in sub.source and sub.name == ds.name
    mask = np.zeros(10, bool)
    mask[[1, 3]] = True
    assert ds.subset(mask).M == 2
    for bad in ([], [10], [0.5]):
        with pytest.raises(DataError):
            ds.subset(bad)


# --------------------------------------------------------------------------- file loaders

def write_csv(path, X, Y, header=None):
    lines = [] if header is None else [header]
    lines += [",".join(repr(float(v)) for v in row) for row in np.hstack([X, Y])]
    path.write_text("\n".join(lines) + "\n")


def test_npz_round_trip(tmp_path):
    X, Y = arrays()
    np.savez(tmp_path / "d.npz", inputs=X, targets=Y)
    ds = load(tmp_path / "d.npz", name="test", x_key="inputs", y_key="targets")
    np.testing.assert_array_equal(ds.X, X)
    np.testing.assert_array_equal(ds.Y, Y)
    assert ds.name == "test" and str(tmp_path / "d.npz") in ds.source


@pytest.mark.parametrize("header", [None, "x1,x2,x3,y1,y2", "# a, b, c, label, other"])
def test_csv_round_trip_with_and_without_header(tmp_path, header):
    X, Y = arrays()
    write_csv(tmp_path / "d.csv", X, Y, header)
    ds = load(tmp_path / "d.csv", y_columns=2)
    np.testing.assert_array_equal(ds.X, X)
    np.testing.assert_array_equal(ds.Y, Y)


@pytest.mark.parametrize("ext", [".h5", ".hdf5"])
def test_h5_round_trip(tmp_path, ext):
    X, Y = arrays()
    with h5py.File(tmp_path / f"d{ext}", "w") as f:
        f["x"] = X
        f.create_group("g")["y"] = Y[:, 0]
    ds = load(tmp_path / f"d{ext}", y_key="g/y")
    np.testing.assert_array_equal(ds.X, X)
    np.testing.assert_array_equal(ds.Y, Y[:, :1])


@fuzz_settings(25)
@given(M=st.integers(1, 6), d=st.integers(1, 3), K=st.integers(1, 2),
       values=st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=30, max_size=30))
def test_csv_round_trip_is_exact_for_any_finite_floats(tmp_path_factory, M, d, K, values):
    A = np.resize(np.array(values), (M, d + K))
    path = tmp_path_factory.mktemp("csv") / "h.csv"
    write_csv(path, A[:, :d], A[:, d:])
    ds = load(path, y_columns=K)
    np.testing.assert_array_equal(np.hstack([ds.X, ds.Y]), A)


def _truncated_h5(tmp_path):
    path = tmp_path / "trunc.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.zeros((100, 3))
        f["y"] = np.zeros(100)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 3])
    return path


def _malformed(tmp_path, case):
    X, Y = arrays()
    if case == "missing":
        return tmp_path / "nope.npz", {}
    if case == "truncated_h5":
        return _truncated_h5(tmp_path), {}
    if case == "not_h5":
        (tmp_path / "fake.h5").write_text("hello")
        return tmp_path / "fake.h5", {}
    if case == "wrong_key_npz":
        np.savez(tmp_path / "k.npz", x=X, target=Y)
        return tmp_path / "k.npz", {}
    if case == "wrong_key_h5":
        with h5py.File(tmp_path / "k.h5", "w") as f:
            f["x"], f["target"] = X, Y
        return tmp_path / "k.h5", {}
    if case == "npy_named_npz":
        np.save(tmp_path / "a.npy", X)
        (tmp_path / "a.npz").write_bytes((tmp_path / "a.npy").read_bytes())
        return tmp_path / "a.npz", {}
    if case == "corrupt_npz":
        (tmp_path / "c.npz").write_bytes(b"PK\x03\x04garbage")
        return tmp_path / "c.npz", {}
    if case == "text_in_csv":
        write_csv(tmp_path / "t.csv", X, Y)
        lines = (tmp_path / "t.csv").read_text().splitlines()
        lines[3] = "1.0,abc,2.0,3.0,4.0"
        (tmp_path / "t.csv").write_text("\n".join(lines))
        return tmp_path / "t.csv", {"y_columns": 2}
    if case == "ragged_csv":
        (tmp_path / "r.csv").write_text("1,2,3\n4,5\n")
        return tmp_path / "r.csv", {}
    if case == "one_column_csv":
        (tmp_path / "o.csv").write_text("1\n2\n")
        return tmp_path / "o.csv", {}
    if case == "empty_csv":
        (tmp_path / "e.csv").write_text("\n\n")
        return tmp_path / "e.csv", {}
    if case == "mismatched_npz":
        np.savez(tmp_path / "m.npz", x=X, y=Y[:-1])
        return tmp_path / "m.npz", {}
    if case == "mismatched_h5":
        with h5py.File(tmp_path / "m.h5", "w") as f:
            f["x"], f["y"] = X, Y[:-2]
        return tmp_path / "m.h5", {}
    if case == "string_array_npz":
        np.savez(tmp_path / "s.npz", x=np.array(["a", "b"]), y=np.zeros(2))
        return tmp_path / "s.npz", {}
    if case == "unknown_extension":
        (tmp_path / "d.parquet").write_text("")
        return tmp_path / "d.parquet", {}
    raise AssertionError(case)


@pytest.mark.parametrize("case", [
    "missing", "truncated_h5", "not_h5", "wrong_key_npz", "wrong_key_h5", "corrupt_npz", "npy_named_npz",
    "text_in_csv", "ragged_csv", "one_column_csv", "empty_csv", "mismatched_npz",
    "mismatched_h5", "string_array_npz", "unknown_extension",
])
def test_malformed_file_raises_data_error_naming_the_file(tmp_path, case):
    path, kwargs = _malformed(tmp_path, case)
    with pytest.raises(DataError) as info:
        load(path, **kwargs)
    assert str(path) in str(info.value)


def test_malformed_file_messages_say_what_was_expected(tmp_path):
    for case, fragment in [("wrong_key_npz", "no array 'y'"), ("wrong_key_h5", "no dataset 'y'"),
                           ("text_in_csv", "line 4 column 2 is 'abc'"), ("mismatched_npz", "same length"),
                           ("unknown_extension", ".npz")]:
        path, kwargs = _malformed(tmp_path, case)
        with pytest.raises(DataError, match=re.escape(fragment)):
            load(path, **kwargs)


def test_load_rejects_bad_y_columns(tmp_path):
    with pytest.raises(ConfigError, match="y_columns"):
        load(tmp_path / "x.csv", y_columns=0)


# --------------------------------------------------------------------------- teachers

def test_single_index_tanh_normalises_direction():
    t = SingleIndexTanh([3.0, 4.0], scale=2.0)
    np.testing.assert_allclose(t.direction, [0.6, 0.8])
    np.testing.assert_allclose(t(np.array([[1.0, 1.0]])), [[np.tanh(2.0 * 1.4)]])
    assert t.to_dict() == {"kind": "single_index_tanh", "direction": [0.6, 0.8], "scale": 2.0}


def test_two_layer_teacher_is_deterministic_and_order_one_for_every_width():
    X = np.random.default_rng(1).standard_normal((4000, 5))
    for width in (4, 1000):
        t = TwoLayerTeacher(5, width=width, seed=3, output_dim=2)
        Y = t(X)
        assert Y.shape == (4000, 2)
        np.testing.assert_array_equal(Y, TwoLayerTeacher(5, width=width, seed=3, output_dim=2)(X))
        assert 0.05 < Y.std() < 3.0, (width, Y.std())
    assert TwoLayerTeacher(5, width=4, seed=3, activation="relu").to_dict()["activation"] == "relu"


def test_callable_teacher_validates_outputs():
    X = np.ones((4, 2))
    assert CallableTeacher(lambda x: x.sum(axis=1), "sum")(X).shape == (4, 1)
    assert CallableTeacher(lambda x: x, "id", output_dim=2)(X).shape == (4, 2)
    for f in (lambda x: x[:2, 0], lambda x: np.full(4, np.nan), lambda x: x[None]):
        with pytest.raises(DataError, match="teacher 'bad'"):
            CallableTeacher(f, "bad")(X)


# --------------------------------------------------------------------------- population laws

@pytest.mark.parametrize("scale", [0.7, 1.5])
def test_teacher_law_quadrature_matches_one_dimensional_integral_along_direction(scale):
    law = GaussianTeacherLaw(2, SingleIndexTanh([0.6, -0.8], scale))
    ds = law.quadrature(gauss_hermite(60, 2), name="test")
    reference, _ = quad(lambda z: np.tanh(scale * z) ** 2 * np.exp(-z * z / 2) / np.sqrt(2 * np.pi),
                        -np.inf, np.inf, epsabs=1e-14, epsrel=1e-13)
    assert abs(ds.expect(ds.Y[:, 0] ** 2) - reference) < 1e-8
    assert ds.source == ("gaussian_teacher(d=2, teacher=single_index_tanh) on tiny_gauss_hermite(Q=3600)")


def test_teacher_law_quadrature_scales_nodes_by_input_std():
    rule = gauss_hermite(5, 1)
    ds = GaussianTeacherLaw(1, SingleIndexTanh([1.0]), input_std=3.0).quadrature(rule)
    np.testing.assert_allclose(ds.X, 3.0 * rule.nodes)
    np.testing.assert_array_equal(ds.weights, rule.weights)
    np.testing.assert_allclose(ds.expect(ds.X[:, 0] ** 2), 9.0, rtol=1e-13)


@pytest.mark.parametrize("law", [
    GaussianTeacherLaw(2, SingleIndexTanh([1.0, 2.0], 1.2), input_std=1.5),
    GaussianTeacherLaw(2, TwoLayerTeacher(2, width=6, seed=2)),
    GaussianClassesLaw(2, tau_pos=1.0, tau_neg=1.7, p_pos=0.3),
], ids=["single_index", "two_layer", "classes"])
def test_sample_means_agree_with_quadrature_within_five_standard_errors(law):
    n = 20000
    sample = law.sample(np.random.default_rng(0), n, name="train")
    exact = law.quadrature(gauss_hermite(40, 2))
    assert sample.M == n and np.all(sample.weights == 1 / n)
    for g in (lambda X, Y: Y[:, 0], lambda X, Y: Y[:, 0] ** 2, lambda X, Y: X[:, 0] * Y[:, 0],
              lambda X, Y: (X ** 2).sum(axis=1)):
        s = g(sample.X, sample.Y)
        se = s.std(ddof=1) / np.sqrt(n)
        assert abs(s.mean() - exact.expect(g(exact.X, exact.Y))) < 5 * se + 1e-12


@pytest.mark.parametrize("d, p, tau_pos, tau_neg", [(1, 0.5, 1.0, 2.0), (3, 0.3, 0.5, 1.5), (2, 1.0, 1.0, 3.0)])
def test_gaussian_classes_quadrature_moments_are_exact(d, p, tau_pos, tau_neg):
    law = GaussianClassesLaw(d, tau_pos=tau_pos, tau_neg=tau_neg, p_pos=p)
    ds = law.quadrature(gauss_hermite(3, d))
    assert ds.M == 2 * 3 ** d and set(np.unique(ds.Y)) <= {-1.0, 1.0}
    assert abs(ds.expect(ds.Y[:, 0]) - (2 * p - 1)) < 1e-14
    np.testing.assert_allclose(ds.expect((ds.X ** 2).sum(axis=1)),
                               d * (p * tau_pos ** 2 + (1 - p) * tau_neg ** 2), rtol=1e-13)


def test_quadrature_rejects_rule_of_wrong_dimension():
    with pytest.raises(ConfigError, match=r"\[Q, 3\]"):
        GaussianClassesLaw(3).quadrature(gauss_hermite(4, 2))


def test_law_to_dict_rebuilds_the_same_law():
    law = GaussianTeacherLaw(2, TwoLayerTeacher(2, width=3, seed=5), input_std=0.5)
    again = make_law(law.to_dict(), "data.train")
    X = np.random.default_rng(0).standard_normal((5, 2))
    np.testing.assert_array_equal(again.teacher(X), law.teacher(X))
    assert again.describe() == law.describe()
    classes = GaussianClassesLaw(2, 1.0, 2.0, 0.4)
    assert make_law(classes.to_dict(), "d").describe() == classes.describe()


# --------------------------------------------------------------------------- make_data

@pytest.fixture
def stub_quadrature(monkeypatch):
    """Install a stand-in mfpde.problem.quadrature whose make_rule builds a tensor Gauss–Hermite rule."""
    calls = []

    def make_rule(spec, key):
        calls.append(key)
        return gauss_hermite(spec["size"], spec.get("dim", 1))

    module = types.ModuleType("mfpde.problem.quadrature")
    module.make_rule = make_rule
    monkeypatch.setitem(sys.modules, "mfpde.problem.quadrature", module)
    return calls


def test_make_data_kinds_are_exported():
    assert DATA_KINDS == ("file", "arrays", "teacher", "gaussian_classes")


def test_make_data_arrays_and_file(tmp_path):
    ds = make_data({"kind": "arrays", "x": [[0.0, 1.0], [2.0, 3.0]], "y": [1.0, -1.0]}, "data.train", 0)
    assert (ds.M, ds.d, ds.K, ds.name) == (2, 2, 1, "train")
    X, Y = arrays()
    np.savez(tmp_path / "d.npz", x=X, y=Y)
    ds = make_data({"kind": "file", "path": "d.npz"}, "data.test", 0, base_dir=tmp_path)
    np.testing.assert_array_equal(ds.Y, Y)
    assert ds.name == "test"


def test_make_data_teacher_with_rule_uses_make_rule(stub_quadrature):
    spec = {"kind": "teacher", "d": 2, "input_std": 1.0,
            "teacher": {"kind": "single_index_tanh", "direction": [1, 1], "scale": 0.5},
            "rule": {"size": 6, "dim": 2}}
    ds = make_data(spec, "data.test", 0)
    assert stub_quadrature == ["data.test.rule"] and ds.M == 36 and ds.name == "test"
    bad = dict(spec, rule={"size": 6, "dim": 1})
    with pytest.raises(ConfigError) as info:
        make_data(bad, "data.test", 0)
    assert info.value.key == "data.test.rule"


def test_make_data_sampling_is_reproducible_and_differs_between_keys():
    spec = {"kind": "gaussian_classes", "d": 2, "p_pos": 0.25, "sample": 50}
    a, b = make_data(spec, "data.train", 7), make_data(spec, "data.train", 7)
    c = make_data(spec, "data.test", 7)
    np.testing.assert_array_equal(a.X, b.X)
    assert not np.array_equal(a.X, c.X)
    seeded = make_data(dict(spec, seed=3), "data.train", 7)
    np.testing.assert_array_equal(
        seeded.X, GaussianClassesLaw(2, p_pos=0.25).sample(np.random.default_rng(3), 50).X)
    two_layer = make_data({"kind": "teacher", "d": 3, "sample": 10, "seed": 1,
                           "teacher": {"kind": "two_layer", "width": 5}}, "data.train", 0)
    assert (two_layer.M, two_layer.d, two_layer.K) == (10, 3, 1)


TEACHER = {"kind": "teacher", "d": 2, "sample": 10,
           "teacher": {"kind": "single_index_tanh", "direction": [1.0, 0.0], "scale": 1.0}}


def _with(path, value, base=TEACHER):
    """A deep copy of ``base`` with ``value`` set at dotted ``path`` (None deletes)."""
    import copy

    spec = copy.deepcopy(base)
    *parents, last = path.split(".")
    t = spec
    for p in parents:
        t = t[p]
    if value is None:
        del t[last]
    else:
        t[last] = value
    return spec


@pytest.mark.parametrize("spec, key", [
    ({"kind": "parquet"}, "data.train.kind"),
    ({"path": "x.npz"}, "data.train.kind"),
    ("not a table", "data.train"),
    ({"kind": "file"}, "data.train.path"),
    ({"kind": "file", "path": "x.npz", "y_columns": True}, "data.train.y_columns"),
    ({"kind": "file", "path": "x.npz", "sheet": 1}, "data.train.sheet"),
    ({"kind": "arrays", "x": [[1.0], [2.0]], "y": [1.0]}, "data.train.y"),
    ({"kind": "arrays", "x": [[1.0], [True]], "y": [1.0, 2.0]}, "data.train.x[1][0]"),
    ({"kind": "arrays", "x": [[1.0], [float("nan")]], "y": [1.0, 2.0]}, "data.train.x[1][0]"),
    ({"kind": "arrays", "x": [[1.0], [2.0, 3.0]], "y": [1.0, 2.0]}, "data.train.x"),
    ({"kind": "arrays", "x": [], "y": []}, "data.train.x"),
    ({"kind": "arrays", "x": [1.0, 2.0], "y": [1.0, "a"]}, "data.train.y[1]"),
    ({"kind": "arrays", "x": [1.0], "y": [1.0], "weights": [-1.0]}, "data.train.weights"),
    (_with("teacher.scale", True), "data.train.teacher.scale"),
    (_with("teacher.scale", float("nan")), "data.train.teacher.scale"),
    (_with("teacher.scale", "1"), "data.train.teacher.scale"),
    (_with("teacher.direction", [1.0, 0.0, 0.0]), "data.train.teacher.direction"),
    (_with("teacher.direction", [0.0, 0.0]), "data.train.teacher.direction"),
    (_with("teacher.kind", "three_layer"), "data.train.teacher.kind"),
    (_with("teacher.width", 3), "data.train.teacher.width"),
    (_with("teacher", None), "data.train.teacher"),
    (_with("teacher", {"kind": "two_layer", "width": 0}), "data.train.teacher.width"),
    (_with("teacher", {"kind": "two_layer", "activation": "gelu"}), "data.train.teacher.activation"),
    (_with("teacher", {"kind": "two_layer", "seed": -1}), "data.train.teacher.seed"),
    (_with("d", 0), "data.train.d"),
    (_with("d", 2.0), "data.train.d"),
    (_with("d", None), "data.train.d"),
    (_with("input_std", 0.0), "data.train.input_std"),
    (_with("sample", 0), "data.train.sample"),
    (_with("sample", None), "data.train.rule"),
    (_with("rule", {"size": 3}), "data.train.rule"),
    (_with("seed", False), "data.train.seed"),
    (_with("noise", 0.1), "data.train.noise"),
    ({"kind": "gaussian_classes", "d": 1, "p_pos": 1.5, "sample": 3}, "data.train.p_pos"),
    ({"kind": "gaussian_classes", "d": 1, "tau_neg": -1.0, "sample": 3}, "data.train.tau_neg"),
    ({"kind": "gaussian_classes", "d": 1, "teacher": {}, "sample": 3}, "data.train.teacher"),
])
def test_invalid_config_tables_raise_config_error_naming_the_key(spec, key):
    with pytest.raises(ConfigError) as info:
        make_data(spec, "data.train", 0)
    assert info.value.key == key
    assert str(info.value).startswith(key)


def test_seed_with_rule_is_rejected(stub_quadrature):
    spec = {"kind": "gaussian_classes", "d": 1, "rule": {"size": 4}, "seed": 1}
    with pytest.raises(ConfigError) as info:
        make_data(spec, "data.test", 0)
    assert info.value.key == "data.test.seed"


# --------------------------------------------------------------------------- probes

def test_probes_from_lists_and_grids():
    np.testing.assert_array_equal(probes([0.0, 1.0], 1), [[0.0], [1.0]])
    np.testing.assert_array_equal(probes([[0.0, 1.0]], 2), [[0.0, 1.0]])
    P = probes({"kind": "grid", "low": -2, "high": 2, "size": 5}, 3)
    np.testing.assert_array_equal(P[:, 0], [-2, -1, 0, 1, 2])
    np.testing.assert_array_equal(P[:, 1:], 0.0)
    assert not P.flags.writeable


@pytest.mark.parametrize("spec, d, key", [
    ([0.0, 1.0], 2, "probes"),
    ([[0.0, 1.0]], 3, "probes"),
    ([[0.0], [True]], 1, "probes[1][0]"),
    ({"kind": "grid", "low": 1, "high": 0, "size": 3}, 1, "probes.high"),
    ({"kind": "grid", "low": 0, "high": 1, "size": 0}, 1, "probes.size"),
    ({"kind": "grid", "low": 0, "high": float("inf"), "size": 3}, 1, "probes.high"),
    ({"kind": "grid", "low": 0, "high": 1, "size": 3, "step": 1}, 1, "probes.step"),
    ({"kind": "random", "size": 3}, 1, "probes.kind"),
    ([], 1, "probes"),
])
def test_invalid_probes_raise_config_error_naming_the_key(spec, d, key):
    with pytest.raises(ConfigError) as info:
        probes(spec, d)
    assert info.value.key == key


# --------------------------------------------------------------------------- hostile data files (issue 13)

def _npz_declaring(path, shape, dtype="<f8", names=("x", "y")):
    """A few-hundred-byte .npz whose members declare ``shape`` (no data follows the headers)."""
    import io as _io
    import zipfile

    hdr = _io.BytesIO()
    np.lib.format.write_array_header_1_0(hdr, {"descr": dtype, "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w") as z:
        for n in names:
            z.writestr(f"{n}.npy", hdr.getvalue())
    return path


def _h5_declaring(path, shape):
    with h5py.File(path, "w") as f:
        f.create_dataset("x", shape=shape, dtype="f8", chunks=(1000,))
        f.create_dataset("y", shape=shape, dtype="f8", chunks=(1000,))
    return path


def _npy_named_npz_declaring(path, shape):
    import io as _io

    hdr = _io.BytesIO()
    np.lib.format.write_array_header_1_0(hdr, {"descr": "<f8", "fortran_order": False, "shape": shape})
    path.write_bytes(hdr.getvalue())
    return path


@pytest.mark.parametrize("make", [_npz_declaring, _h5_declaring, _npy_named_npz_declaring],
                         ids=["npz", "h5", "npy-named-npz"])
def test_file_declaring_a_huge_array_is_refused_before_reading(tmp_path, make):
    """A tiny file declaring 10^12 numbers is a DataError naming the file and the shape, not 7 TiB."""
    ext = ".h5" if make is _h5_declaring else ".npz"
    path = make(tmp_path / f"big{ext}", (10**12,))
    assert path.stat().st_size < 10_000
    with pytest.raises(DataError) as info:
        load(path)
    msg = str(info.value)
    assert str(path) in msg, msg
    if make is not _npy_named_npz_declaring:     # the archive's members: the declared shape is named
        assert "(1000000000000,)" in msg, msg


def test_file_array_just_over_the_data_limit_is_refused_and_the_limit_is_named(tmp_path):
    from mfpde.checks import MAX_DATA

    path = _npz_declaring(tmp_path / "over.npz", (MAX_DATA + 1,))
    with pytest.raises(DataError, match=f"{MAX_DATA + 1}.*at most {MAX_DATA}|at most {MAX_DATA}.*{MAX_DATA + 1}"):
        load(path)


@pytest.mark.parametrize("dtype", ["|O", "<U10", "|S1000000000", "<c16", "|V100000000"])
def test_npz_member_of_a_non_numeric_dtype_is_refused_before_reading(tmp_path, dtype):
    path = _npz_declaring(tmp_path / "odd.npz", (4,), dtype=dtype)
    with pytest.raises(DataError, match=re.escape(str(path))):
        load(path)


def test_npz_member_that_is_not_an_npy_array_is_refused_without_decompressing_it(tmp_path):
    import zipfile

    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("x.npy", b"\0" * 200_000_000)      # 200 MB of zeros, ~200 kB compressed
        z.writestr("y.npy", b"\0" * 10)
    assert path.stat().st_size < 1_000_000
    import tracemalloc

    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=re.escape(str(path))):
            load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20_000_000, f"{peak / 1e6:.0f} MB allocated to refuse a 200 kB file"


def _h5_self_link(tmp_path):
    path = tmp_path / "loop.h5"
    with h5py.File(path, "w") as f:
        f["x"] = h5py.SoftLink("/x")
        f["y"] = np.zeros(3)
    return path, {}


def _h5_dangling_external(tmp_path):
    path = tmp_path / "ext.h5"
    with h5py.File(path, "w") as f:
        f["x"] = h5py.ExternalLink(str(tmp_path / "absent.h5"), "/x")
        f["y"] = np.zeros(3)
    return path, {}


def _h5_compound(tmp_path):
    path = tmp_path / "compound.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.zeros(3, dtype=[("a", "f8"), ("b", "i4")])
        f["y"] = np.zeros(3)
    return path, {}


def _h5_key_through_a_dataset(tmp_path):
    path = tmp_path / "through.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.zeros(3)
        f["y"] = np.zeros(3)
    return path, {"x_key": "x/deeper"}


def _long_name(ext):
    def make(tmp_path):
        return tmp_path / ("a" * 300 + ext), {}
    return make


def _nul_in_path(tmp_path):
    return str(tmp_path / "a\0b.npz"), {}


@pytest.mark.parametrize("make", [
    _h5_self_link, _h5_dangling_external, _h5_compound, _h5_key_through_a_dataset,
    _long_name(".h5"), _long_name(".npz"), _long_name(".csv"), _nul_in_path,
], ids=["h5-soft-link-to-itself", "h5-dangling-external-link", "h5-compound-dtype", "h5-key-through-a-dataset",
        "long-name-h5", "long-name-npz", "long-name-csv", "nul-in-path"])
def test_any_failure_opening_or_reading_a_data_file_is_a_data_error_naming_it(tmp_path, make):
    path, kwargs = make(tmp_path)
    with pytest.raises(DataError) as info:
        load(path, **kwargs)
    assert str(path).replace("\0", "\\x00") in str(info.value) or str(path) in str(info.value), str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("text, where", [
    ("1.0,2.0O\n2.0,3.0\n", "line 1 column 2 is '2.0O'"),
    ("x,1.5\n2.0,3.0\n4.0,5.0\n", "line 1 column 1 is 'x'"),
    ("\n\n1.0,abc,2.0\n1,2,3\n", "line 3 column 2 is 'abc'"),
])
def test_csv_first_row_with_a_number_is_a_bad_row_not_a_header(tmp_path, text, where):
    """A first row is a header only if no cell of it is a number; else its bad cell is named."""
    path = tmp_path / "h.csv"
    path.write_text(text)
    with pytest.raises(DataError) as info:
        load(path)
    assert str(path) in str(info.value) and where in str(info.value), str(info.value)


def test_csv_header_of_names_only_is_still_skipped(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("x, y\n1.0,2.0\n3.0,4.0\n")
    ds = load(path)
    np.testing.assert_array_equal(ds.X, [[1.0], [3.0]])
    np.testing.assert_array_equal(ds.Y, [[2.0], [4.0]])


def test_csv_larger_than_the_file_limit_is_refused_before_reading(tmp_path):
    from mfpde import checks

    path = tmp_path / "huge.csv"
    with open(path, "wb") as fh:       # sparse: no disk used, nothing to read in a test
        fh.truncate(checks.MAX_CSV_BYTES + 1)
    with pytest.raises(DataError) as info:
        load(path)
    assert str(path) in str(info.value) and str(checks.MAX_CSV_BYTES) in str(info.value)


def test_csv_line_longer_than_the_line_limit_is_refused(tmp_path):
    from mfpde import checks

    path = tmp_path / "wide.csv"
    path.write_text("1.0,2.0\n" + "1," * (checks.MAX_CSV_LINE // 2 + 1) + "2\n")
    with pytest.raises(DataError, match=r"line 2 .*longer than"):
        load(path)


def test_csv_with_more_numbers_than_the_data_limit_is_refused(tmp_path, monkeypatch):
    import mfpde.checks

    monkeypatch.setattr(mfpde.checks, "MAX_DATA", 10)
    path = tmp_path / "many.csv"
    path.write_text("".join(f"{i},{i}\n" for i in range(11)))
    with pytest.raises(DataError, match=r"more than 10 numbers"):
        load(path)


@pytest.mark.parametrize("spec, key", [
    ({"kind": np.array(["file", "arrays"])}, "data.train.kind"),
    ({"kind": "teacher", "d": 1, "sample": 3, "teacher": {"kind": np.array(["two_layer", "x"])}},
     "data.train.teacher.kind"),
    ({"kind": "teacher", "d": 1, "sample": 3, "teacher": {"kind": "two_layer", "activation": np.array(["tanh", "relu"])}},
     "data.train.teacher.activation"),
    ({"kind": "file", "path": "x.npz", "x_key": ["x"]}, "data.train.x_key"),
])
def test_array_or_list_where_a_name_is_expected_is_a_config_error(spec, key):
    with pytest.raises(ConfigError) as info:
        make_data(spec, "data.train", 0)
    assert info.value.key == key


def test_probe_table_kind_that_is_an_array_is_a_config_error():
    with pytest.raises(ConfigError) as info:
        probes({"kind": np.array(["grid", "grid"]), "low": 0, "high": 1, "size": 2}, 1)
    assert info.value.key == "probes.kind"


@pytest.mark.parametrize("kwargs, key", [
    ({"path": ["a.npz"]}, "path"), ({"path": "a.npz", "x_key": 3}, "x_key"), ({"path": "a.npz", "y_key": None}, "y_key"),
])
def test_load_rejects_non_string_path_and_keys(tmp_path, kwargs, key):
    with pytest.raises(ConfigError) as info:
        load(**kwargs)
    assert info.value.key == key


def test_single_index_teacher_with_a_scale_near_the_float_limit_saturates_instead_of_overflowing():
    # found by make fuzz (seed 4014710239): scale·<u, x> overflows to ±inf, and tanh(±inf) = ±1 exactly
    import numpy as np

    from mfpde.problem.data import SingleIndexTanh

    with np.errstate(all="raise"):
        y = SingleIndexTanh([1.0], 4.79175919445119e307)(np.array([[0.3], [-0.2], [0.0]]))
    np.testing.assert_array_equal(y.ravel(), [1.0, -1.0, 0.0])


def test_single_index_teacher_without_a_direction_uses_the_first_axis():
    import numpy as np

    from mfpde.problem.data import make_law

    law = make_law({"kind": "teacher", "d": 5, "teacher": {"kind": "single_index_tanh", "scale": 2.0}}, "data.train")
    X = np.random.default_rng(0).standard_normal((7, 5))
    np.testing.assert_array_equal(law.teacher(X).ravel(), np.tanh(2.0 * X[:, 0]))


def test_two_layer_teacher_with_an_index_dim_depends_on_the_first_k_coordinates_only():
    import numpy as np
    import pytest

    from mfpde.errors import ConfigError
    from mfpde.problem.data import TwoLayerTeacher, make_law

    t = make_law({"kind": "teacher", "d": 6, "teacher": {"kind": "two_layer", "index_dim": 2, "seed": 3}},
                 "data.train").teacher
    X = np.random.default_rng(1).standard_normal((9, 6))
    Y = X.copy()
    Y[:, 2:] = np.random.default_rng(2).standard_normal((9, 4))          # change the other d − k coordinates
    np.testing.assert_array_equal(t(X), t(Y))
    # the k-index teacher on R^6 is the full teacher on R^2 (same draws): y = f*(Ux), U = the first 2 axes
    np.testing.assert_allclose(t(X), TwoLayerTeacher(2, seed=3)(X[:, :2]), rtol=0, atol=1e-15)
    # k = d draws what it always drew
    np.testing.assert_array_equal(TwoLayerTeacher(3, seed=5, index_dim=3).w, TwoLayerTeacher(3, seed=5).w)
    with pytest.raises(ConfigError, match="index_dim"):
        make_law({"kind": "teacher", "d": 2, "teacher": {"kind": "two_layer", "index_dim": 3}}, "data.train")

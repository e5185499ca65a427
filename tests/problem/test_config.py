"""Tests of mfpde.problem.config: the default and the examples validate; malformed configs fail with
ConfigError naming the key; random mutations of the default never escape as other errors."""
from __future__ import annotations

import copy
import math
import time
import tomllib
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from fuzzing import fuzz_settings
from hypothesis import given
from hypothesis import strategies as st

from mfpde.problem import config
from mfpde.errors import ConfigError, DataError
from mfpde.system.system import System

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.toml") if not p.name.startswith("sweep"))
DELETE = object()  # marker: remove the key


def default_raw() -> dict:
    return copy.deepcopy(config.default().raw)


def edit(raw: dict, changes: dict) -> dict:
    """Apply {"a.b.c": value | DELETE} to a deep copy of ``raw`` (tables created as needed)."""
    raw = copy.deepcopy(raw)
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        t = raw
        for p in parents:
            t = t.setdefault(p, {})
        if value is DELETE:
            del t[last]
        else:
            t[last] = value
    return raw


def load_and_build(raw: dict) -> tuple[config.Config, System]:
    """Validate a raw config and evaluate its initial functions (no kernels run, no solve)."""
    cfg = config.from_dict(raw)
    return cfg, System(cfg.problem)


# --------------------------------------------------------------------------- valid configs

def test_default_config_loads_and_builds_the_documented_problem():
    cfg, system = load_and_build(default_raw())
    p = cfg.problem
    assert p.name == "default"
    assert p.model.L == 2 and p.model.input_dim == 1 and p.model.outputs == 1
    assert [r.size for r in p.embedding.rules] == [64, 64]
    assert cfg.solver.stepper == "rk4" and cfg.solver.t_end == 10.0
    assert cfg.output.parameters == "all"
    assert system.size == 64 * 1 + 64 * 64 + 64 * 1
    assert np.all(np.isfinite(system.y0))
    # W̄_2 starts at the constant m_2 = 0.5 (SPEC §4)
    assert np.all(system.views(system.y0)["W_2"] == 0.5)


def test_default_text_is_the_packaged_default_file():
    text = config.default_text()
    assert tomllib.loads(text) == config.default().raw
    assert (ROOT / "mfpde" / "defaults" / "default.toml").read_text(encoding="utf-8") == text


def test_there_are_examples_for_every_documented_use_case():
    names = {p.stem for p in EXAMPLES}
    assert {"two_layer_teacher", "shallow_sgd_lln", "three_layer_correlated",
            "classification_logistic", "finite_dataset"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_loads_and_builds(path):
    cfg = config.load(path)
    system = System(cfg.problem)
    assert cfg.problem.name == path.stem
    assert np.all(np.isfinite(system.y0))
    assert cfg.raw == tomllib.loads(path.read_text(encoding="utf-8"))
    # every example keeps its result next to its name
    assert cfg.output.path == f"{path.stem}.nc"


def test_examples_cover_the_promised_shapes():
    cfgs = {p.stem: config.load(p) for p in EXAMPLES}
    assert cfgs["shallow_sgd_lln"].problem.model.L == 1
    deep = cfgs["three_layer_correlated"].problem
    assert deep.model.L == 3
    assert all(r.dim == 2 for r in deep.embedding.rules)
    assert all(w.kind == "kernel" for w in deep.embedding.W)
    cls = cfgs["classification_logistic"].problem
    assert cls.model.loss == "logistic"
    assert set(np.unique(cls.train.Y)) == {-1.0, 1.0}
    assert cfgs["finite_dataset"].problem.train.source.startswith("arrays")


def test_load_resolves_missing_and_unreadable_files_to_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="nope.toml"):
        config.load(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\ninput_dim = 1\n")
    with pytest.raises(ConfigError, match="bad.toml"):
        config.load(bad)
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.loads("a = = 1")


def test_name_defaults_to_the_file_stem_and_relative_data_paths_to_the_config_folder(tmp_path):
    raw = default_raw()
    del raw["name"]
    np.savez(tmp_path / "train.npz", x=np.linspace(-1, 1, 5)[:, None], y=np.linspace(0, 1, 5))
    raw["data"]["train"] = {"kind": "file", "path": "train.npz"}
    path = tmp_path / "my_run.toml"
    path.write_text(config.to_toml(raw), encoding="utf-8")
    cfg = config.load(path)
    assert cfg.problem.name == "my_run"
    assert cfg.problem.train.M == 5


def test_schedule_lists_and_per_layer_overrides_land_on_the_right_layers():
    raw = edit(default_raw(), {"schedules.weights": [1.0, 2.0, 3.0], "schedules.layer_2": 0.0,
                               "schedules.bias_3": {"kind": "power", "xi0": 2.0, "tau": 1.0, "p": 1.0}})
    s = config.from_dict(raw).problem.schedules
    assert [w(0.0) for w in s.weights] == [1.0, 0.0, 3.0]
    assert s.weights[1].frozen
    # biases follow their own layer's schedule (layer_2 = 0 freezes b_2), then bias_3 overrides
    assert s.biases[0](0.0) == 1.0 and s.biases[1].frozen and s.biases[2](1.0) == 1.0


@pytest.mark.parametrize("changes, expected", [
    ({"schedules.layer_1": 0.0}, [0.0, 1.0, 1.0]),                              # AOY: frozen features
    ({"schedules.weights": [2.0, 3.0, 4.0], "schedules.layer_1": 0.0}, [0.0, 3.0, 4.0]),
    ({"schedules.layer_1": 0.0, "schedules.biases": 5.0}, [5.0, 5.0, 5.0]),     # `biases` wins over layers
    ({"schedules.layer_1": 0.0, "schedules.bias_1": 1.5}, [1.5, 1.0, 1.0]),     # `bias_l` wins over all
    ({"schedules.layer_2": 0.0, "schedules.biases": 5.0, "schedules.bias_2": 0.5}, [5.0, 0.5, 5.0]),
])
def test_a_bias_follows_its_own_layer_schedule_unless_biases_or_bias_l_is_given(changes, expected):
    s = config.from_dict(edit(default_raw(), changes)).problem.schedules
    assert [b(0.0) for b in s.biases] == expected


def test_freezing_a_layer_with_layer_l_zero_also_freezes_its_bias_during_a_solve():
    from mfpde import solvers

    raw = edit(default_raw(), {"model.biases": True, "init.b_1": 0.2, "init.b_2": 0.3,
                               "schedules.layer_1": 0.0, "solver.t_end": 0.2})
    cfg = config.from_dict(raw)
    system = System(cfg.problem)
    sol = solvers.integrate(system, solvers.make("euler", system, dt=0.05), t_end=0.2, save_every=0.2)
    ds = sol.to_xarray()
    b1, w1, b2 = ds["b_1"].values, ds["w_1"].values, ds["b_2"].values
    np.testing.assert_array_equal(b1[-1], b1[0])                 # frozen with its layer
    np.testing.assert_array_equal(w1[-1], w1[0])
    assert np.max(np.abs(b2[-1] - b2[0])) > 1e-6                  # the other layer's bias trains


# --------------------------------------------------------------------------- malformed configs

L3 = {"model.hidden": ["tanh", "tanh", "tanh"], "rules.default": {"kind": "gauss_hermite", "size": 3},
      "rules.layer_1": DELETE, "rules.layer_2": DELETE}
NAN, INF = math.nan, math.inf

MALFORMED = [
    # unknown sections and keys, at every level
    ("unknown top-level key", {"verbose": True}, "verbose"),
    ("unknown section", {"optimizer.lr": 0.1}, "optimizer"),
    ("unknown model key", {"model.width": 100}, "model.width"),
    ("unknown rules layer", {"rules.layer_3": {"kind": "gauss_hermite", "size": 4}}, "rules.layer_3"),
    ("unknown rule key", {"rules.layer_1.sigma": 2.0}, "rules.layer_1.sigma"),
    ("unknown init parameter", {"init.W_3": 0.5}, "init.W_3"),
    ("unknown init-function key", {"init.w_1.scale": 2.0}, "init.w_1.scale"),
    ("unknown schedules key", {"schedules.layer_9": 1.0}, "schedules.layer_9"),
    ("unknown schedule-table key", {"schedules.weights": {"kind": "power", "rate": 2.0}}, "schedules.weights.rate"),
    ("unknown data set", {"data.validation": {"kind": "arrays", "x": [0.0], "y": [0.0]}}, "data.validation"),
    ("unknown data key", {"data.train.noise": 0.1}, "data.train.noise"),
    ("unknown teacher key", {"data.train.teacher.bias": 0.1}, "data.train.teacher.bias"),
    ("unknown data-rule key", {"data.train.rule.nodes_per_axis": 3}, "data.train.rule.nodes_per_axis"),
    ("unknown probes key", {"probes.step": 0.5}, "probes.step"),
    ("unknown solver key", {"solver.rtol": 1e-6}, "solver.rtol"),
    ("unknown output key", {"output.format": "hdf5"}, "output.format"),
    # wrong types
    ("bool where int", {"model.input_dim": True}, "model.input_dim"),
    ("float where int", {"model.outputs": 1.0}, "model.outputs"),
    ("bool seed", {"seed": False}, "seed"),
    ("string where number", {"solver.dt": "0.01"}, "solver.dt"),
    ("bool where number", {"solver.t_end": True}, "solver.t_end"),
    ("string where list", {"model.hidden": "tanh"}, "model.hidden"),
    ("list where table (rule)", {"rules.layer_1": [64]}, "rules.layer_1"),
    ("list where table (section)", {"model": [1, 2]}, "model"),
    ("string where table (data)", {"data.train": "train.npz"}, "data.train"),
    ("float rule size", {"rules.layer_1.size": 64.0}, "rules.layer_1.size"),
    ("string data-rule size", {"data.train.rule.size": "64"}, "data.train.rule.size"),
    ("int where bool", {"model.output_bias": 1}, "model.output_bias"),
    ("string where bool list", {"model.biases": "yes"}, "model.biases"),
    ("bool in bias list", {"model.biases": [True, 1]}, "model.biases[1]"),
    ("number where name", {"name": 5}, "name"),
    ("number where choice", {"output.parameters": 1}, "output.parameters"),
    ("string where init function", {"init.v": "coordinate"}, "init.v"),
    ("float probe count", {"probes.size": 13.0}, "probes.size"),
    ("bool schedule", {"schedules.weights": True}, "schedules.weights"),
    ("table where list (save_times)", {"solver.save_every": DELETE, "solver.save_times": {"t": 1.0}},
     "solver.save_times"),
    # negative / zero sizes and steps
    ("zero rule size", {"rules.layer_1.size": 0}, "rules.layer_1.size"),
    ("negative rule size", {"rules.layer_2.size": -5}, "rules.layer_2.size"),
    ("zero data-rule size", {"data.train.rule.size": 0}, "data.train.rule.size"),
    ("zero sample", {"data.test.sample": 0}, "data.test.sample"),
    ("zero probes", {"probes.size": 0}, "probes.size"),
    ("zero input_dim", {"model.input_dim": 0}, "model.input_dim"),
    ("zero dt", {"solver.dt": 0.0}, "solver.dt"),
    ("negative t_end", {"solver.t_end": -1.0}, "solver.t_end"),
    ("negative learning rate", {"schedules.weights": -1.0}, "schedules.weights"),
    ("negative save_every", {"solver.save_every": -1.0}, "solver.save_every"),
    ("negative seed", {"seed": -1}, "seed"),
    # unknown names
    ("unknown activation", {"model.hidden": ["tanh", "swish"]}, "model.hidden[1]"),
    ("unknown output activation", {"model.output_activation": "softmax"}, "model.output_activation"),
    ("unknown loss", {"model.loss": "hinge"}, "model.loss"),
    ("unknown stepper", {"solver.stepper": "rk45"}, "solver.stepper"),
    ("unknown rule kind", {"rules.layer_1.kind": "clenshaw_curtis"}, "rules.layer_1.kind"),
    ("unknown init kind", {"init.w_1.kind": "orthogonal"}, "init.w_1.kind"),
    ("node function used for an edge", {"init.W_2": {"kind": "coordinate"}}, "init.W_2.kind"),
    ("unknown kernel psi", {"init.W_2": {"kind": "kernel", "psi": "relu"}}, "init.W_2.psi"),
    ("unknown schedule kind", {"schedules.weights": {"kind": "cosine"}}, "schedules.weights.kind"),
    ("unknown data kind", {"data.train.kind": "mnist"}, "data.train.kind"),
    ("unknown teacher kind", {"data.train.teacher.kind": "gp"}, "data.train.teacher.kind"),
    ("unknown parameters choice", {"output.parameters": "some"}, "output.parameters"),
    # NaN / inf
    ("nan dt", {"solver.dt": NAN}, "solver.dt"),
    ("inf t_end", {"solver.t_end": INF}, "solver.t_end"),
    ("inf bound", {"solver.bound": INF}, "solver.bound"),
    ("nan huber delta", {"model.loss": "huber", "model.huber_delta": NAN}, "model.huber_delta"),
    ("nan constant init", {"init.W_2": NAN}, "init.W_2"),
    ("inf schedule", {"schedules.weights": INF}, "schedules.weights"),
    ("nan in power schedule", {"schedules.weights": {"kind": "power", "tau": NAN}}, "schedules.weights.tau"),
    ("nan teacher scale", {"data.train.teacher.scale": NAN}, "data.train.teacher.scale"),
    ("-inf probe bound", {"probes.low": -INF}, "probes.low"),
    ("nan rule std", {"rules.layer_1.std": NAN}, "rules.layer_1.std"),
    ("nan in kernel matrix", {"init.W_2": {"kind": "kernel", "A": [[NAN]]}}, "init.W_2.A"),
    ("nan in save_times", {"solver.save_every": DELETE, "solver.save_times": [0.0, NAN]}, "solver.save_times"),
    ("nan in data array", {"data.train": {"kind": "arrays", "x": [0.0, NAN], "y": [1.0, 2.0]}}, "data.train.x"),
    # mismatched lengths
    ("bias list too short", {"model.biases": [True]}, "model.biases"),
    ("weight schedules list too short", {"schedules.weights": [1.0, 1.0]}, "schedules.weights"),
    ("bias schedules list too long", {"schedules.biases": [1.0, 1.0, 1.0, 1.0]}, "schedules.biases"),
    ("piecewise values vs times", {"schedules.weights": {"kind": "piecewise", "times": [1.0], "values": [1.0]}},
     "schedules.weights.values"),
    ("piecewise times not increasing", {"schedules.layer_1": {"kind": "piecewise", "times": [2.0, 1.0],
                                                              "values": [1.0, 0.5, 0.1]}}, "schedules.layer_1.times"),
    ("teacher direction vs d", {"data.train.teacher.direction": [1.0, 0.0]}, "data.train.teacher.direction"),
    ("arrays x vs y", {"data.train": {"kind": "arrays", "x": [0.0, 1.0], "y": [1.0]}}, "data.train.y"),
    ("data dimension vs model", {"model.input_dim": 2}, "data.train"),
    ("rule size list vs dim", {"rules.layer_1": {"kind": "gauss_hermite", "size": [4, 4], "dim": 3}},
     "rules.layer_1.size"),
    ("probe rows vs input_dim", {"probes": [[0.0, 1.0]]}, "probes"),
    ("kernel matrix shape", {"init.W_2": {"kind": "kernel", "A": [[1.0, 0.0]]}}, "init.W_2.A"),
    ("coordinate beyond the index space", {"init.v": {"kind": "coordinate", "start": 1}}, "init.v"),
    ("constant list vs input_dim", {"init.w_1": [0.1, 0.2]}, "init.w_1"),
    ("empty constant list", {"init.v": []}, "init.v"),
    ("constant table list vs outputs", {"init.v": {"kind": "constant", "value": [1.0, 2.0, 3.0]}}, "init.v"),
    # model-level consistency
    ("softmax_ce with one output", {"model.loss": "softmax_ce"}, "model.loss"),
    ("save_times after t_end", {"solver.save_every": DELETE, "solver.save_times": [0.0, 5.0, 11.0]},
     "solver.save_times"),
    ("save_times before 0", {"solver.save_every": DELETE, "solver.save_times": [-0.5, 1.0]}, "solver.save_times"),
    ("save_every and save_times", {"solver.save_times": [1.0]}, "solver.save_times"),
    ("init b_1 without bias", {"init.b_1": 0.1}, "init.b_1"),
    ("init b_out without output bias", {"init.b_out": 0.0}, "init.b_out"),
    ("missing required section", {"rules": DELETE}, "rules"),
    ("missing required model key", {"model.hidden": DELETE}, "model.hidden"),
    ("missing rule for a layer", {"rules.layer_2": DELETE}, "rules.layer_2"),
    ("missing training data", {"data.train": DELETE}, "data.train"),
    ("rule and sample both given", {"data.train.sample": 100}, "data.train.rule"),
    ("too many steps", {"solver.dt": 1e-12}, "solver.dt"),
    ("too many save times", {"solver.save_every": 1e-300}, "solver.save_every"),
    ("unknown sgd key", {"sgd.momentum": 0.9}, "sgd.momentum"),
    ("unknown sgd mode", {"sgd.mode": "adam"}, "sgd.mode"),
    ("zero sgd batch", {"sgd.batch": 0}, "sgd.batch"),
    ("empty sgd widths", {"sgd.widths": []}, "sgd.widths"),
    ("negative noise_std", {"init.W_2": {"kind": "constant", "value": 0.5, "noise_std": -1.0}}, "init.W_2.noise_std"),
    ("depth-3 unknown edge init", {**L3, "init.W_4": 0.1}, "init.W_4"),
    ("depth-3 bias list", {**L3, "model.biases": [True, False]}, "model.biases"),
]

HUGE = [
    ("rule size beyond any limit", {"rules.layer_1.size": 10**12}, "rules.layer_1.size"),
    ("tensor rule with 1e9 nodes", {"rules.layer_1": {"kind": "gauss_hermite", "size": 1000, "dim": 3}},
     "rules.layer_1"),
    ("one layer above 1e6 nodes", {"rules.layer_1": {"kind": "gaussian_trapezoid", "size": 5_000_000}},
     "rules.layer_1"),
    ("state above the limit", {"rules.layer_1": {"kind": "gaussian_trapezoid", "size": 900_000},
                               "rules.layer_2": {"kind": "gaussian_trapezoid", "size": 900_000}}, "rules"),
    ("huge sample", {"data.test.sample": 10**12}, "data.test.sample"),
    ("huge probe grid", {"probes.size": 10**12}, "probes.size"),
    ("huge teacher", {"data.train.teacher": {"kind": "two_layer", "width": 10**12}}, "data.train.teacher.width"),
    ("huge input dimension", {"model.input_dim": 10**9}, "model.input_dim"),
    ("huge depth", {"model.hidden": ["tanh"] * 1000}, "model.hidden"),
]


def _cases(table):
    return [pytest.param(changes, key, id=name) for name, changes, key in table]


def test_the_malformed_table_is_large_and_its_ids_unique():
    assert len(MALFORMED) + len(HUGE) >= 40
    names = [n for n, _, _ in MALFORMED + HUGE]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("changes, key", _cases(MALFORMED))
def test_malformed_config_raises_config_error_naming_the_key(changes, key):
    raw = edit(default_raw(), changes)
    with pytest.raises(ConfigError) as info:
        load_and_build(raw)
    msg = str(info.value)
    assert key in msg, msg
    assert "\n" not in msg  # the CLI prints it as one line


@pytest.mark.parametrize("changes, key", _cases(HUGE))
def test_huge_sizes_fail_fast_without_allocating(changes, key):
    raw = edit(default_raw(), changes)
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(ConfigError) as info:
            load_and_build(raw)
        elapsed = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert key in str(info.value), str(info.value)
    # the default problem itself needs well under 1 MB; 16 MB leaves room for bookkeeping only
    assert peak < 16e6, f"allocated {peak / 1e6:.0f} MB before refusing"
    assert elapsed < 2.0


def test_config_error_carries_the_key_attribute():
    with pytest.raises(ConfigError) as info:
        config.from_dict(edit(default_raw(), {"solver.stepper": "leapfrog"}))
    assert info.value.key == "solver.stepper"
    assert "rk4" in str(info.value)  # lists what is allowed


def test_non_table_config_is_rejected():
    with pytest.raises(ConfigError):
        config.from_dict([1, 2, 3])


# --------------------------------------------------------------------------- random mutations

def _paths(t, prefix=()):
    """Every path to a value in a nested dict/list config (tables, lists and leaves)."""
    out = []
    items = t.items() if isinstance(t, dict) else enumerate(t)
    for k, v in items:
        p = prefix + (k,)
        out.append(p)
        if isinstance(v, (dict, list)):
            out.extend(_paths(v, p))
    return out


def _tables(t, prefix=()):
    out = [prefix] if isinstance(t, dict) else []
    items = t.items() if isinstance(t, dict) else enumerate(t)
    for k, v in items:
        if isinstance(v, (dict, list)):
            out.extend(_tables(v, prefix + (k,)))
    return out


BASE = default_raw()
PATHS = _paths(BASE)
TABLES = _tables(BASE)
KEYS = sorted({str(p[-1]) for p in PATHS if isinstance(p[-1], str)})

_ints = st.one_of(st.integers(-3, 300), st.sampled_from([0, -1, 2**31, 2**63 - 1, 2**63, -(2**63), 10**30]))
_floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([0.0, -0.0, 5e-324, 1e-300, 1e300, math.nan, math.inf, -math.inf]))
_scalars = st.one_of(st.booleans(), _ints, _floats, st.text(max_size=12), st.sampled_from(KEYS),
                     st.dates(), st.datetimes(), st.times())
VALUES = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.one_of(st.text(max_size=8), st.sampled_from(KEYS)), inner,
                                                 max_size=3)), max_leaves=8)


def _at(t, path):
    for k in path:
        t = t[k]
    return t


@st.composite
def mutated_defaults(draw):
    raw = copy.deepcopy(BASE)
    op = draw(st.sampled_from(["replace", "delete", "add"]))
    if op == "replace":
        path = draw(st.sampled_from(PATHS))
        value = draw(VALUES)
        _at(raw, path[:-1])[path[-1]] = value
    elif op == "delete":
        path = draw(st.sampled_from([p for p in PATHS if isinstance(_at(raw, p[:-1]), dict)]))
        del _at(raw, path[:-1])[path[-1]]
    else:
        table = draw(st.sampled_from(TABLES))
        name = draw(st.one_of(st.sampled_from(KEYS), st.text(min_size=1, max_size=10)))
        _at(raw, table)[name] = draw(VALUES)
    return op, raw


def test_teacher_direction_with_huge_entries_is_normalised_or_rejected():
    raw = edit(default_raw(), {"data.train.teacher.direction": [1e200]})
    try:
        cfg = config.from_dict(raw)
    except ConfigError as exc:
        assert "data.train.teacher.direction" in str(exc)
    else:
        train = cfg.problem.train
        np.testing.assert_allclose(train.Y[:, 0], np.tanh(2.0 * train.X[:, 0]), rtol=1e-15, atol=0)


@fuzz_settings(300, 5000)
@given(mutated_defaults())
def test_random_mutations_of_the_default_load_or_raise_config_or_data_error(case):
    """Replace a leaf (or a whole table) by a random TOML value, delete a key or add one:
    validation and the initial functions (what `mfpde solve` runs before stepping) either
    succeed or raise the project's user errors; never TypeError, ValueError, MemoryError…"""
    _, raw = case
    try:
        cfg, system = load_and_build(raw)
    except (ConfigError, DataError) as exc:
        assert str(exc)
    else:
        assert cfg.problem.model.L >= 1
        assert system.y0.shape == (system.size,)


# --------------------------------------------------------------------------- documentation

DOC = ROOT / "docs" / "config.md"


def test_the_complete_example_in_the_docs_loads_and_builds():
    text = DOC.read_text(encoding="utf-8")
    blocks = text.split("```toml\n")[1:]
    assert blocks, "docs/config.md has no ```toml block"
    for block in blocks:
        cfg, system = load_and_build(tomllib.loads(block.split("```")[0]))
        assert np.all(np.isfinite(system.y0))


def test_the_docs_name_every_key_of_every_section():
    text = DOC.read_text(encoding="utf-8")
    keys = set(config.TOP_KEYS) | set(config.MODEL_KEYS) | set(config.SOLVER_KEYS) | set(config.OUTPUT_KEYS)
    keys |= set(getattr(config, "SGD_KEYS", ()))
    keys |= {"default", "layer_1", "w_1", "W_2", "v", "b_1", "b_out", "weights", "biases", "bias_1",
             "train", "test", "kind", "size", "tracers", "x", "y", "path", "x_key", "y_key", "y_columns",
             "d", "teacher", "input_std", "rule", "sample", "tau_pos", "tau_neg", "p_pos", "direction",
             "scale", "width", "activation", "output_dim", "low", "high", "xi0", "tau", "p", "times",
             "values", "m", "s", "psi", "A", "start", "mean", "std", "law", "value", "half_width",
             "dim", "level", "base", "scramble", "nodes", "noise_std"}
    missing = sorted(k for k in keys if f"`{k}`" not in text and f"`[{k}" not in text)
    assert not missing, missing


@pytest.mark.parametrize("levels", [20, 40, 600, 5000])
@pytest.mark.parametrize("where", ["data.train.x", "model.hidden"])
def test_deeply_nested_toml_is_one_config_error_about_nesting(levels, where, tmp_path, capsys):
    """≥ 500 levels used to give a 3 000-line RecursionError, and from ~33 levels a wrong
    "must be rectangular" message: any nesting deeper than checks.MAX_DEPTH is refused as such."""
    from mfpde.cli import main

    section, key = where.rsplit(".", 1)
    text = config.default_text() + f"\n[{section}.extra_nesting]\n{key} = " + "[" * levels + "1" + "]" * levels + "\n"
    with pytest.raises(ConfigError, match="nested more than 16 levels"):
        config.loads(text)
    path = tmp_path / "deep.toml"
    path.write_text(text)
    assert main(["solve", str(path), "-o", str(tmp_path / "o.nc")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nested more than 16 levels" in err and "Traceback" not in err
    assert not (tmp_path / "o.nc").exists()


def test_a_deeply_nested_python_dict_is_a_config_error_about_nesting():
    raw = default_raw()
    deep = 1.0
    for _ in range(40):
        deep = [deep]
    raw["data"]["train"]["x"] = deep
    with pytest.raises(ConfigError, match="nested more than 16 levels"):
        config.from_dict(raw)

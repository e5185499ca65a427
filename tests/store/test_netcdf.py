"""Tests of mfpde.store.netcdf: Solution → xarray → NetCDF → xarray round trips and the output schema."""
from __future__ import annotations

import datetime
import json
import os
import tomllib

import numpy as np
import pytest

from mfpde import solvers

from mfpde.problem import config

from mfpde.store import netcdf as io
from mfpde.errors import StoreError
from mfpde.system.system import System

T_END, DT, EVERY = 0.2, 0.05, 0.1
TIMES = np.array([0.0, 0.1, 0.2])


def shallow_raw() -> dict:
    """L = 1, d = 2, K = 2; index c = (w_1^0, v^0) ∈ R^4 with one tracer node; both kinds of bias."""
    return {
        "name": "io_shallow",
        "model": {"input_dim": 2, "outputs": 2, "hidden": ["tanh"], "biases": True, "output_bias": True,
                  "loss": "mse"},
        "rules": {"layer_1": {"kind": "gauss_hermite", "size": 2, "dim": 4, "tracers": [[0.1, -0.2, 0.3, 0.4]]}},
        "init": {"w_1": {"kind": "coordinate"}, "v": {"kind": "coordinate", "start": 2}, "b_1": 0.1,
                 "b_out": [0.0, 0.5]},
        "data": {"train": {"kind": "teacher", "d": 2, "rule": {"kind": "gauss_hermite", "size": 3, "dim": 2},
                           "teacher": {"kind": "two_layer", "width": 3, "output_dim": 2}},
                 "test": {"kind": "teacher", "d": 2, "sample": 20, "seed": 4,
                          "teacher": {"kind": "two_layer", "width": 3, "output_dim": 2}}},
        "probes": [[0.0, 0.0], [1.0, -1.0], [0.5, 2.0]],
        "solver": {"stepper": "euler", "dt": DT, "t_end": T_END, "save_every": EVERY},
    }


def deep_raw() -> dict:
    """L = 3, d = 2, K = 2 on 2-D Gaussian index spaces, kernel W_2, a bias in layer 2."""
    return {
        "name": "io_deep",
        "seed": 3,
        "model": {"input_dim": 2, "outputs": 2, "hidden": ["tanh", "relu", "tanh"], "biases": [False, True, False]},
        "rules": {"default": {"kind": "gauss_hermite", "size": 2, "dim": 2},
                  "layer_2": {"kind": "gaussian_trapezoid", "size": [3, 2]}},
        "init": {"w_1": {"kind": "coordinate"}, "W_2": {"kind": "kernel", "m": 0.5, "s": 0.5, "A": [[1.0, 0.5], [0.0, 1.0]]},
                 "W_3": 0.3, "b_2": {"kind": "coordinate", "start": 1}, "v": {"kind": "coordinate"}},
        "schedules": {"weights": [1.0, 0.5, 0.5, 1.0]},
        "data": {"train": {"kind": "arrays", "x": [[0.0, 1.0], [1.0, 0.0], [-1.0, 0.5]],
                           "y": [[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]},
                 "test": {"kind": "arrays", "x": [[0.2, 1.0], [1.0, 0.3]], "y": [[1.0, 0.0], [0.0, 1.0]]}},
        "probes": {"kind": "grid", "low": -1.0, "high": 1.0, "size": 4},
        "solver": {"stepper": "rk4", "dt": DT, "t_end": T_END, "save_every": EVERY},
    }


RAWS = {1: shallow_raw, 3: deep_raw}
CASES = [(L, p) for L in (1, 3) for p in ("all", "final", "none")]


def solve(raw: dict, parameters: str):
    cfg = config.from_dict(raw)
    system = System(cfg.problem)
    stepper = solvers.make(cfg.solver.stepper, system, dt=cfg.solver.dt)
    sol = solvers.integrate(system, stepper, cfg.solver.t_end, save_every=cfg.solver.save_every,
                            parameters=parameters, progress=False)
    return cfg, system, sol


@pytest.fixture(scope="module", params=CASES, ids=[f"L{L}-{p}" for L, p in CASES])
def solved(request, tmp_path_factory):
    L, parameters = request.param
    cfg, system, sol = solve(RAWS[L](), parameters)
    ds = io.to_xarray(sol)
    path = io.write(ds, tmp_path_factory.mktemp("io") / f"L{L}_{parameters}.nc")
    return L, parameters, cfg, system, sol, ds, path


# --------------------------------------------------------------------------- round trip

def test_write_read_round_trip_is_identical(solved):
    *_, ds, path = solved
    back = io.read(path)
    assert back.identical(ds)
    for name, var in ds.variables.items():
        assert back[name].dtype == var.dtype, name


def test_read_loads_everything_into_memory(solved, tmp_path):
    *_, ds, path = solved
    copy = tmp_path / "copy.nc"
    copy.write_bytes(path.read_bytes())
    back = io.read(copy)
    copy.unlink()
    assert back.identical(ds)


# --------------------------------------------------------------------------- schema

def test_dimensions_and_coordinates_follow_the_schema(solved):
    L, parameters, cfg, system, sol, ds, _ = solved
    prob = cfg.problem
    np.testing.assert_allclose(ds["time"].values, TIMES, rtol=0, atol=1e-12)
    assert ds.sizes["input_dim"] == prob.model.input_dim == 2
    assert ds.sizes["output"] == prob.model.outputs == 2
    for l, rule in enumerate(system.rules, 1):
        assert ds.sizes[f"node_{l}"] == rule.size
        assert ds.sizes[f"index_dim_{l}"] == rule.dim
        np.testing.assert_array_equal(ds[f"node_{l}"].values, np.arange(rule.size))
        w = ds[f"node_{l}_weight"]
        assert w.dims == (f"node_{l}",)
        # rule weights are normalized: the sum is 1 up to summation rounding (size · eps)
        assert abs(float(w.sum()) - 1.0) <= 4 * rule.size * np.finfo(float).eps
        np.testing.assert_array_equal(w.values, rule.weights)
        assert ds[f"node_{l}_coord"].dims == (f"node_{l}", f"index_dim_{l}")
        np.testing.assert_array_equal(ds[f"node_{l}_coord"].values, rule.nodes)
        tracer = ds[f"node_{l}_tracer"].values
        assert tracer.dtype == np.int8 and tracer.sum() == rule.n_tracers
        assert np.all(w.values[tracer == 1] == 0.0)
    assert f"node_{L + 1}" not in ds.dims
    if L == 1:
        assert ds["node_1_tracer"].values.tolist() == [0] * 16 + [1]


def test_observables_follow_the_schema(solved):
    L, parameters, cfg, system, sol, ds, _ = solved
    for name in ("loss_train", "loss_test"):
        assert ds[name].dims == ("time",)
        assert np.all(np.isfinite(ds[name].values))
        assert ds[name].attrs["long_name"]
    assert "error_train" not in ds and "error_test" not in ds   # mse: no classification error
    assert ds["yhat_probe"].dims == ("time", "probe", "output")
    assert ds.sizes["probe"] == len(cfg.problem.probes)
    assert ds["probe_x"].dims == ("probe", "input_dim")
    np.testing.assert_array_equal(ds["probe_x"].values, cfg.problem.probes)
    y0 = system.y0
    obs = system.observe(y0)
    assert ds["loss_train"].values[0] == obs["loss_train"]
    np.testing.assert_array_equal(ds["yhat_probe"].values[0], obs["yhat_probe"])


def test_parameters_follow_the_schema_and_the_state_layout(solved):
    L, parameters, cfg, system, sol, ds, _ = solved
    layout = system.layout
    names = [n for n, *_ in layout.entries]
    expected = {"w_1": ("node_1", "input_dim"), "v": (f"node_{L}", "output")}
    expected.update({f"W_{l}": (f"node_{l - 1}", f"node_{l}") for l in range(2, L + 1)})
    expected.update({f"b_{l}": (f"node_{l}",) for l in range(1, L + 1) if cfg.problem.model.biases[l - 1]})
    if cfg.problem.model.output_bias:
        expected["b_out"] = ("output",)
    assert set(names) == set(expected)
    if parameters == "none":
        assert not set(names) & set(ds.data_vars)
        assert "state_time" not in ds.dims
        return
    tdim = "time" if parameters == "all" else "state_time"
    for name in names:
        assert ds[name].dims == (tdim, *expected[name]), name
    stored = ds["time"].values if parameters == "all" else ds["state_time"].values
    if parameters == "final":
        np.testing.assert_array_equal(stored, [T_END])
    # the stored blocks re-pack into the solver's states, and the observables are theirs
    first = layout.pack({n: ds[n].values[0] for n in names})
    last = layout.pack({n: ds[n].values[-1] for n in names})
    np.testing.assert_array_equal(last, sol.y)
    if parameters == "all":
        np.testing.assert_array_equal(first, system.y0)
        for i in range(len(stored)):
            y = layout.pack({n: ds[n].values[i] for n in names})
            assert system.observe(y)["loss_train"] == ds["loss_train"].values[i]


def test_attributes_carry_config_provenance_and_statistics(solved):
    L, parameters, cfg, system, sol, ds, path = solved
    a = io.read(path).attrs
    assert tomllib.loads(a["config"]) == cfg.raw
    assert a["depth"] == L
    assert json.loads(a["model_activations"]) == list(cfg.problem.model.activations)
    assert a["model_loss"] == cfg.problem.model.loss
    assert a["status"] == "completed"
    assert cfg.problem.name in a["title"]
    assert json.loads(a["stepper"])["stepper"] == cfg.solver.stepper
    assert len(json.loads(a["rules"])) == L
    assert a["train_data"] == cfg.problem.train.source and a["test_data"] == cfg.problem.test.source
    assert a["stats_steps"] == round(T_END / DT)
    stages = 1 if cfg.solver.stepper == "euler" else 4
    assert a["stats_rhs_evals"] == stages * a["stats_steps"]
    for key in ("mfpde_version", "numpy_version", "scipy_version", "numba_version", "xarray_version"):
        assert isinstance(a[key], str) and a[key]
    created = datetime.datetime.fromisoformat(a["created"])
    assert created.tzinfo is not None


def test_summary_and_loss_table_describe_the_dataset(solved):
    L, parameters, cfg, system, sol, ds, _ = solved
    table = io.loss_table(ds).splitlines()
    assert table[0].split() == ["time", "loss_train", "loss_test"]   # mse: no classification error
    assert len(table) == 1 + len(TIMES)
    assert float(table[-1].split()[1]) == pytest.approx(float(ds["loss_train"].values[-1]), rel=1e-6)
    text = io.summary(ds)
    assert "status: completed" in text and f"node_{L}=" in text


# --------------------------------------------------------------------------- damaged and missing files

@pytest.fixture(scope="module")
def written(tmp_path_factory):
    _, _, sol = solve(deep_raw(), "all")
    return io.write(io.to_xarray(sol), tmp_path_factory.mktemp("trunc") / "full.nc")


@pytest.mark.parametrize("fraction", [0.0, 0.001, 0.1, 0.5, 0.9, 0.999])
def test_truncated_file_raises_store_error_naming_it(written, tmp_path, fraction):
    data = written.read_bytes()
    cut = tmp_path / f"cut_{fraction}.nc"
    cut.write_bytes(data[:int(len(data) * fraction)])
    with pytest.raises(StoreError) as info:
        io.read(cut)
    assert str(cut) in str(info.value)


def test_file_cut_by_one_byte_raises_store_error(written, tmp_path):
    cut = tmp_path / "minus_one.nc"
    cut.write_bytes(written.read_bytes()[:-1])
    with pytest.raises(StoreError, match="minus_one.nc"):
        io.read(cut)


def test_missing_file_raises_store_error_naming_it(tmp_path):
    with pytest.raises(StoreError) as info:
        io.read(tmp_path / "absent.nc")
    assert str(tmp_path / "absent.nc") in str(info.value)


def test_write_replaces_atomically_and_leaves_no_temporary_files(written, tmp_path):
    ds = io.read(written)
    target = tmp_path / "deep" / "er" / "out.nc"
    io.write(ds, target)
    io.write(ds.isel(time=slice(0, 2)), target)  # overwrite
    assert io.read(target).sizes["time"] == 2
    assert sorted(os.listdir(target.parent)) == ["out.nc"]


def test_write_failure_raises_store_error_and_cleans_up(written, tmp_path):
    ds = io.read(written)
    blocker = tmp_path / "is_a_dir.nc"
    blocker.mkdir()
    with pytest.raises(StoreError, match="is_a_dir.nc"):
        io.write(ds, blocker)
    assert blocker.is_dir()
    assert sorted(os.listdir(tmp_path)) == ["is_a_dir.nc"]


def test_every_name_in_the_file_is_documented(solved):
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "output.md").read_text(encoding="utf-8")
    *_, ds, _ = solved
    names = set(ds.variables) | set(ds.attrs) | set(ds.dims)
    missing = [n for n in sorted(names)
               if f"`{n}`" not in doc and f"`{re.sub(r'(?<=_)[0-9]+', 'l', n)}`" not in doc]
    assert not missing, missing

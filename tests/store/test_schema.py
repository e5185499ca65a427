"""The output schema shared by every output kind (issue 18, item 4; docs/output.md).

Each kind is made and loaded the way a user loads it — a limit result (`netcdf.read`), a run
store (`runs.read`), a compare output (`compare.compare`, written by `netcdf.write`), a collected
sweep (`sweep.collect`, `netcdf.read`) — and checked for: `Conventions`, `units` and a sentence
long_name on every numeric variable and coordinate, the probe x coordinate, one labelled set of
quantile levels, and no classification error for a squared loss (but one for a logistic loss).
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import mfpde
from mfpde import sweep
from mfpde.analysis import compare
from mfpde.finite.ensemble import run_ensemble
from mfpde.problem import config
from mfpde.store import netcdf as io
from mfpde.store import runs
from mfpde.system.laws import QUANTILES

BASE = """
name = "schema"
seed = 0
[model]
input_dim = 1
hidden = ["tanh", "tanh"]
[rules]
default = { kind = "gaussian_trapezoid", size = 6 }
[init]
W_2 = 0.5
[data.train]
kind = "teacher"
d = 1
teacher = { kind = "single_index_tanh", direction = [1.0], scale = 2.0 }
rule = { kind = "gauss_hermite", size = 6 }
[probes]
kind = "grid"
low = -1.5
high = 1.0
size = 4
[solver]
stepper = "rk4"
dt = 0.02
t_end = 0.6
save_every = 0.2
[output]
parameters = "all"
[sgd]
widths = [4, 6]
replicas = 2
lr = 0.02
"""
PROBE_X = np.linspace(-1.5, 1.0, 4)

CLASSES = """
name = "schema logistic d = 2"
[model]
input_dim = 2
hidden = ["tanh"]
loss = "logistic"
[rules]
default = { kind = "gaussian_trapezoid", size = [3, 3] }
[data.train]
kind = "teacher"
d = 2
teacher = { kind = "single_index_tanh", direction = [1.0, -0.5] }
sample = 20
[probes]
kind = "grid"
low = -1.0
high = 1.0
size = 2
[solver]
stepper = "euler"
dt = 0.05
t_end = 0.1
"""


class _NoSubmit:
    """A stand-in client: every task's file exists already, so nothing is submitted."""

    def submit(self, *a, **k):  # pragma: no cover - reaching it is the failure
        raise AssertionError("nothing should be submitted")


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("schema")
    (d / "base.toml").write_text(BASE)
    c = config.load(d / "base.toml")
    io.write(mfpde.solve(c, progress=False).to_xarray(), d / "limit.nc")
    run_ensemble(c, d / "runs.h5", progress=False, say=lambda *a: None, estimate=False)
    limit, ens = io.read(d / "limit.nc"), runs.read(d / "runs.h5")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # two widths: no CI (said, not silent; not this test's subject)
        cmp = compare.compare(limit, ens)
    io.write(cmp, d / "cmp.nc")
    # lr 0.1 records t = 3·0.1 = 0.30000000000000004 and 6·0.1 = 0.6000000000000001, lr 0.02
    # t = 0.6: each lr's step grid is a different float for the same save time 0.6
    (d / "sweep.toml").write_text('base = "base.toml"\ntask = "sgd"\n[[axis]]\nkey = "sgd.lr"\nvalues = [0.1, 0.02]\n')
    sw = sweep.load(d / "sweep.toml")
    for task in sw.tasks.values():
        sweep.run_task(task, str(d / "sw"))
    sweep.run(sw, d / "sw", client=_NoSubmit(), progress=False, say=lambda *a: None)
    return {"limit": limit, "runs": ens, "compare": io.read(d / "cmp.nc"),
            "sweep": io.read(d / "sw" / sweep.COLLECTED), "config": c}


KINDS = ("limit", "runs", "compare", "sweep")


@pytest.mark.parametrize("kind", KINDS)
def test_conventions_units_and_long_names_on_every_variable(outputs, kind):
    ds = outputs[kind]
    assert ds.attrs["Conventions"] == "CF-1.10"
    for name, v in {**ds.coords, **ds.data_vars}.items():
        long_name = v.attrs.get("long_name", "")
        # a real name: not the variable's name with spaces for underscores, more than one word
        assert long_name and long_name != name.replace("_", " ") and " " in long_name.strip(), (name, long_name)
        if np.issubdtype(v.dtype, np.number):
            assert v.attrs.get("units") == "1", (name, v.attrs)
    assert "units of the training time" in ds["time"].attrs["long_name"] if "time" in ds.coords else True


@pytest.mark.parametrize("kind", ("limit", "runs", "sweep"))
def test_probes_carry_their_x_values(outputs, kind):
    ds = outputs[kind]
    np.testing.assert_allclose(ds["probe_x"].values[:, 0], PROBE_X, rtol=0, atol=1e-12)
    assert ds["probe_x"].dims == ("probe", "input_dim")
    np.testing.assert_allclose(ds["probe"].values, PROBE_X, rtol=0, atol=1e-12)   # d = 1: the coordinate is x
    one = ds["yhat_probe"].isel({d: 0 for d in ds["yhat_probe"].dims if d not in ("probe",)})
    assert one.dims == ("probe",) and one["probe"].values.tolist() == PROBE_X.tolist()   # what .plot() uses as x


def test_probes_in_d_2_have_a_2d_x_and_a_first_coordinate(tmp_path):
    (tmp_path / "c.toml").write_text(CLASSES)
    with np.errstate(all="ignore"):
        sol = mfpde.solve(config.load(tmp_path / "c.toml"), progress=False)
    io.write(sol.to_xarray(), tmp_path / "c.nc")
    ds = io.read(tmp_path / "c.nc")
    x = np.asarray(sol.system.problem.probes)
    assert x.shape[1] == 2
    assert ds["probe_x"].dims == ("probe", "input_dim") and ds["probe_x"].values.tolist() == x.tolist()
    assert ds["probe"].values.tolist() == list(range(len(x)))
    assert ds["probe_x1"].dims == ("probe",) and ds["probe_x1"].values.tolist() == x[:, 0].tolist()
    # a classification loss keeps its classification error, in the file and in the table
    assert "error_train" in ds and "error_train" in io.loss_table(ds).splitlines()[0].split()


@pytest.mark.parametrize("kind", ("limit", "runs", "sweep"))
def test_one_labelled_set_of_quantile_levels(outputs, kind):
    ds = outputs[kind]
    assert ds["quantile"].values.tolist() == list(QUANTILES)
    laws = [k for k in ds.data_vars if k.startswith(("law_", "quantiles_"))]
    assert laws and all("quantile" in ds[k].dims for k in laws)


def test_run_and_limit_weight_laws_share_levels(outputs):
    limit, ens = outputs["limit"], outputs["runs"]
    assert ens["quantiles_v"].sizes["quantile"] == limit["law_v"].sizes["quantile"] == len(QUANTILES)
    np.testing.assert_array_equal(ens["quantile"].values, limit["quantile"].values)


def test_network_quantiles_are_the_limit_estimator_on_the_neurons(outputs):
    """network_statistics uses parameter_laws' estimator (left-continuous inverse CDF of the
    node-weighted law): each quantile is an atom — a weight of some neuron — never an
    interpolation between two (numpy.quantile's default, used before)."""
    from mfpde.finite import initial_network_state, network_problem, network_statistics
    from mfpde.system.system import System

    c = outputs["config"]
    rng = np.random.default_rng(3)
    net = System(network_problem(c.problem, (5, 7), rng))
    y = initial_network_state(net, rng)
    stats = network_statistics(net, y)
    views = net.views(y)
    for name in ("w_1", "v", "W_2"):
        q = stats[f"quantiles_{name}"]
        assert q.shape == (len(QUANTILES),)
        atoms = np.sort(views[name].ravel())
        assert all(np.any(atoms == x) for x in q), name
        # the median of the atoms: the left-continuous inverse CDF at 1/2 is the ⌈m/2⌉-th atom
        assert q[QUANTILES.index(0.5)] == atoms[(len(atoms) + 1) // 2 - 1]


@pytest.mark.parametrize("kind", ("limit", "runs", "sweep"))
def test_no_classification_error_for_a_squared_loss(outputs, kind):
    ds = outputs[kind]
    assert "loss_train" in ds
    assert "error_train" not in ds and "error_test" not in ds
    assert "error_train" not in io.loss_table(ds)


@pytest.mark.parametrize("loss, Y, expected", [
    ("squared", [[0.3], [-1.2], [2.0]], False),                 # regression: no classification error
    ("huber", [[0.3], [1.0]], False),
    ("squared", [[1.0], [-1.0], [1.0]], True),                  # ±1 labels with a squared loss
    ("huber", [[0, 1, 0], [1, 0, 0], [0, 0, 1]], True),         # one-hot classes (the digits study)
    ("mse", [[0, 1, 0], [0.5, 0.5, 0]], False),                 # not one-hot
    ("logistic", [[0.3], [2.0]], True),                         # a classification loss always
    ("softmax_ce", [[0.2, 0.8], [1.0, 0.0]], True),
])
def test_the_classification_error_is_recorded_for_classification_losses_or_class_label_targets(loss, Y, expected):
    from types import SimpleNamespace

    problem = SimpleNamespace(model=SimpleNamespace(loss=loss), train=SimpleNamespace(Y=np.asarray(Y, float)))
    assert io.records_errors(problem) is expected


def test_a_collected_sweep_has_the_configured_save_times(outputs):
    ds = outputs["sweep"]
    np.testing.assert_array_equal(ds["time"].values, [0.0, 0.2, 0.4, 0.6])
    assert not np.isnan(ds["loss_train"].values).any()


def test_merge_and_snap_of_record_times():
    axis = sweep._merge_times([np.array([0.0, 0.3, 0.6]), np.array([0.0, 0.30000000000000004, 0.6000000000000001])])
    assert axis.tolist() == [0.0, 0.3, 0.6]
    snapped = sweep._snap(np.array([0.0, 0.30000000000000004, 0.45, 0.6000000000000001]), axis)
    assert snapped.tolist() == [0.0, 0.3, 0.45, 0.6]   # 0.45 is not a save time: kept, not moved


def test_a_task_time_that_is_no_save_time_is_kept_on_the_axis(tmp_path):
    """E.g. a task whose configuration is unreadable records its own times: they join the axis."""
    import xarray as xr

    ds = xr.Dataset({"loss_train": ("time", [1.0, 0.5])}, coords={"time": [0.0, 0.45]})
    assert sweep._save_times(ds).tolist() == [0.0, 0.45]
    axis = sweep._merge_times([np.array([0.0, 0.3, 0.6]), sweep._save_times(ds)])
    assert axis.tolist() == [0.0, 0.3, 0.45, 0.6]

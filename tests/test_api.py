"""The public face: mfpde.load / mfpde.solve / mfpde.train and the cheap ``import mfpde``."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import mfpde
from mfpde import finite
from mfpde.cli import main
from mfpde.errors import BlowUpError, ConfigError
from mfpde.finite.ensemble import record_times
from mfpde.problem import config
from mfpde.problem.data import make_law
from mfpde.store import netcdf as io

from test_cli import TINY, write_config

SGD = TINY + """
[sgd]
mode = "online"
batch = 4
lr = 0.05
statistics = false
"""


def test_import_mfpde_loads_neither_numba_nor_numpy():
    code = ("import sys, mfpde; heavy = [m for m in ('numba', 'numpy', 'xarray') if m in sys.modules]; "
            "assert not heavy, heavy; mfpde.solve; mfpde.train; mfpde.load; mfpde.errors.ConfigError; "
            "print(mfpde.__version__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == mfpde.__version__


def test_public_names_are_the_rooms_objects():
    from mfpde.problem.model import Problem
    from mfpde.store.solution import Solution
    from mfpde.system.system import System

    assert (mfpde.Problem, mfpde.System, mfpde.Solution) == (Problem, System, Solution)
    assert {"load", "solve", "train", "Problem", "System", "Solution", "errors"} <= set(dir(mfpde))
    with pytest.raises(AttributeError):
        mfpde.no_such_name


def test_solve_of_a_file_equals_the_cli_result_file_array_for_array(tmp_path):
    cfg = write_config(tmp_path)
    out = tmp_path / "cli.nc"
    assert main(["solve", str(cfg), "-o", str(out), "-q"]) == 0
    cli = io.read(out)
    ds = mfpde.solve(cfg, progress=False).to_xarray()
    assert set(ds.data_vars) == set(cli.data_vars) and set(ds.coords) == set(cli.coords)
    for name in [*ds.data_vars, *ds.coords]:
        np.testing.assert_array_equal(ds[name].values, cli[name].values, err_msg=name)
    assert ds.attrs["config"] == cli.attrs["config"]


def test_cli_overrides_equal_solve_overrides(tmp_path):
    cfg = write_config(tmp_path)
    out = tmp_path / "cli.nc"
    assert main(["solve", str(cfg), "-o", str(out), "-q", "--stepper", "heun", "--dt", "0.025", "--t-end", "0.3"]) == 0
    cli = io.read(out)
    ds = mfpde.solve(cfg, stepper="heun", dt=0.025, t_end=0.3, progress=False).to_xarray()
    np.testing.assert_array_equal(ds["loss_train"].values, cli["loss_train"].values)
    np.testing.assert_array_equal(ds["time"].values, cli["time"].values)
    assert ds.attrs["config"] == cli.attrs["config"]


def test_every_input_form_gives_the_same_solution(tmp_path):
    cfg = write_config(tmp_path)
    raw = config.load(cfg).raw
    a = mfpde.solve(cfg, progress=False)
    b = mfpde.solve(config.load(cfg), progress=False)
    c = mfpde.solve(raw, base_dir=tmp_path, progress=False)
    for s in (b, c):
        np.testing.assert_array_equal(s.observable("loss_train"), a.observable("loss_train"))
    assert mfpde.load().problem.name == config.default().problem.name   # None: the embedded default


def test_overrides_are_applied_and_recorded(tmp_path):
    cfg = write_config(tmp_path)
    sol = mfpde.solve(cfg, t_end=0.2, save_every=0.05, stepper="euler", dt=0.01, parameters="final", progress=False)
    assert sol.times == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2])
    assert sol.stepper["stepper"] == "euler" and sol.stats["steps"] == 20
    assert sol.state_times == [pytest.approx(0.2)]   # parameters = "final"
    solver = config.loads(sol.to_xarray().attrs["config"]).solver
    assert (solver.stepper, solver.dt, solver.t_end, solver.save_every) == ("euler", 0.01, 0.2, 0.05)
    # the same overrides on a built Config rebuild only its solver options
    c0 = config.load(cfg)
    c1 = mfpde.load(c0, t_end=0.2, dt=None)        # None: no override
    assert c1.problem.embedding is c0.problem.embedding and c1.solver.t_end == 0.2 and c1.solver.dt == c0.solver.dt
    assert c1.raw["solver"]["t_end"] == 0.2 and c0.raw["solver"]["t_end"] == 0.5   # the input is not changed
    assert mfpde.load(c0) is c0


def test_t_end_drops_later_save_times_and_save_every_replaces_them(tmp_path):
    cfg = write_config(tmp_path, TINY.replace("save_every = 0.1", "save_times = [0.1, 0.2, 0.4]"))
    assert mfpde.load(cfg, t_end=0.3).solver.save_times == (0.1, 0.2)
    c = mfpde.load(cfg, save_every=0.25)
    assert (c.solver.save_every, c.solver.save_times) == (0.25, None)
    assert mfpde.load(config.load(cfg), t_end=0.3).solver.save_times == (0.1, 0.2)


@pytest.mark.parametrize("call, names", [
    (lambda c: mfpde.solve(c, dtt=0.1), "dtt"),
    (lambda c: mfpde.solve(c, lr=0.1, zz=1), "lr, zz"),          # an [sgd] key has no effect on a limit solve
    (lambda c: mfpde.load(c, parameters="all"), "parameters"),
    (lambda c: mfpde.train(c, 4, widths=[4]), "widths"),          # one run: pass width
    (lambda c: mfpde.train(c, 4, t_ennd=1.0), "t_ennd"),
])
def test_unknown_overrides_are_refused_naming_them_before_any_work(tmp_path, call, names):
    cfg = write_config(tmp_path)
    with pytest.raises(ConfigError) as err:
        call(cfg)
    assert err.value.key == names and "allowed:" in str(err.value)


def test_a_bad_override_value_names_the_solver_key(tmp_path):
    cfg = write_config(tmp_path)
    with pytest.raises(ConfigError, match=r"^solver\.dt: "):
        mfpde.solve(cfg, dt=-1.0)
    with pytest.raises(ConfigError, match=r"^solver\.dt: "):   # a step longer than a save interval, refused up front
        mfpde.solve(cfg, dt=0.3, on_start=lambda *a: pytest.fail("on_start ran"))
    with pytest.raises(ConfigError, match="config"):
        mfpde.solve(42)


def test_on_start_sees_the_system_and_stepper_before_the_first_step(tmp_path):
    seen = []
    sol = mfpde.solve(write_config(tmp_path), progress=False,
                      on_start=lambda system, stepper: seen.append((system.size, stepper.stats["steps"])))
    assert seen == [(sol.system.size, 0)]


def test_a_blow_up_carries_the_partial_solution(tmp_path):
    cfg = write_config(tmp_path)
    with pytest.raises(BlowUpError) as err:
        mfpde.solve(cfg, bound=1e-3, progress=False)
    assert err.value.partial is not None and err.value.partial.status == "blow-up"


def test_train_equals_finite_train_with_the_same_arguments(tmp_path):
    cfg = write_config(tmp_path, SGD)
    c = config.load(cfg)
    run = mfpde.train(cfg, 6, replica=1)
    law = make_law(c.raw["data"]["train"], "data.train")   # online mode: fresh samples of the teacher law
    ref = finite.train(c.problem, 6, mode="online", batch=4, lr=0.05, t_end=0.5, record_times=record_times(c),
                       replica=1, law=law, statistics=False, bound=c.solver.bound)
    assert run.times == ref.times and run.seed == ref.seed and set(run.observables) == set(ref.observables)
    for k in ref.observables:
        np.testing.assert_array_equal(run.array(k), ref.array(k), err_msg=k)


def test_train_overrides_and_pass_through_options(tmp_path):
    cfg = write_config(tmp_path, SGD)
    c = config.load(cfg)
    run = mfpde.train(c, [5, 7], lr=0.1, mode="full", t_end=0.4, save_every=0.2, snapshots=True, progress=False)
    ref = finite.train(c.problem, [5, 7], mode="full", batch=4, lr=0.1, t_end=0.4, record_times=[0.0, 0.2, 0.4],
                       statistics=False, snapshots=True)
    np.testing.assert_array_equal(run.array("loss_train"), ref.array("loss_train"))
    assert len(run.states) == 3
    with pytest.raises(ConfigError, match="width"):
        mfpde.train(c)

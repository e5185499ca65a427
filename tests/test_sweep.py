"""Tests of parameter sweeps (mfpde.sweep, `mfpde sweep` / `mfpde collect`).

Validation runs without a cluster; the sweeps themselves run on one module-wide LocalCluster of
two worker processes: a worker is SIGKILLed mid-sweep and every result must still exist
exactly once, a re-run must do nothing, a blowing-up task must be retried a bounded number of
times and end up NaN in the collected dataset.
"""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("distributed")

from mfpde import sweep  # noqa: E402
from mfpde.cli import main  # noqa: E402
from mfpde.errors import ConfigError  # noqa: E402

BASE = """\
name = "tiny"
seed = 0

[model]
input_dim = 1
hidden = ["tanh", "tanh"]

[rules]
default = { kind = "gaussian_trapezoid", size = 24 }

[init]
W_2 = 0.5

[data.train]
kind = "teacher"
d = 1
teacher = { kind = "single_index_tanh", direction = [1.0], scale = 2.0 }
rule = { kind = "gauss_hermite", size = 16 }

[probes]
kind = "grid"
low = -2.0
high = 2.0
size = 5

[solver]
stepper = "rk4"
dt = 0.002
t_end = 0.6
save_every = 0.2

[output]
parameters = "final"

[sgd]
widths = [4, 8]
replicas = 2
"""

# 3 × 2 × 2 = 12 limit solves
GRID = """\
base = "base.toml"
mode = "cross"
task = "solve"

[[axis]]
key = "schedules.weights"
name = "xi"
values = [0.5, 1.0, 2.0]

[[axis]]
key = "model.hidden"
name = "activation"
values = [["tanh", "tanh"], ["relu", "relu"]]

[[axis]]
key = "solver.dt"
values = [0.002, 0.003]
"""


def write_sweep(tmp_path: Path, text: str, name: str = "sweep.toml") -> Path:
    (tmp_path / "base.toml").write_text(BASE)
    p = tmp_path / name
    p.write_text(text)
    return p


class NoSubmit:
    """A stand-in client: any submission fails the test."""

    def submit(self, *a, **k):  # pragma: no cover - reaching it is the failure
        raise AssertionError("a task was submitted")


def mtimes(directory: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in directory.iterdir()}


def temporaries(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]


def warm_jit_cache() -> None:
    """Compile (or load) the solve and SGD kernels once here, so the two workers load them from
    Numba's on-disk cache instead of both compiling them (which takes long after any source edit)."""
    import tomllib

    from mfpde import finite, solvers

    from mfpde.problem import config
    from mfpde.system.system import System

    c = config.from_dict(tomllib.loads(BASE))
    system = System(c.problem)
    solvers.integrate(system, solvers.make("rk4", system, dt=0.01), 0.02)
    finite.train(c.problem, 4, lr=0.01, t_end=0.02, statistics=False)


@pytest.fixture(scope="module")
def client():
    warm_jit_cache()
    with sweep.open_client(workers=2) as c:
        c.wait_for_workers(2)
        yield c


# ----------------------------------------------------------------------------- validation
def test_grid_has_twelve_distinct_tasks_with_positions(tmp_path):
    sw = sweep.load(write_sweep(tmp_path, GRID))
    assert sw.dims == ("xi", "activation", "solver.dt") and sw.shape == (3, 2, 2)
    assert len(sw.tasks) == 12
    positions = sorted(p for t in sw.tasks.values() for p in t.positions)
    assert positions == sorted(np.ndindex(3, 2, 2))
    t = next(iter(sw.tasks.values()))
    assert sweep.task_hash("solve", t.config) == t.hash and "path" not in t.config.get("output", {})


@pytest.mark.parametrize("text, key", [
    ('bogus = 1\n', "bogus"),
    ('[[axis]]\nkey = "schedules.weights"\nvalues = [1.0]\nstep = 2\n', "axis[0].step"),
    ('[[axis]]\nkey = "solver.stepr"\nvalues = ["rk4"]\n', "axis[0].key"),
    ('[[axis]]\nkey = "data.train.sample"\nvalues = [10]\n', "axis[0].key"),
    ('[[axis]]\nkey = "model.hidden.tanh"\nvalues = [1]\n', "axis[0].key"),
    ('[[axis]]\nkey = "schedules.weights"\nvalues = []\n', "axis[0].values"),
    ('[[axis]]\nkey = "schedules.weights"\nvalues = [1.0, 1.0]\n', "axis[0].values"),
    ('[[axis]]\nkey = "schedules.weights"\nname = "time"\nvalues = [1.0]\n', "axis[0].name"),
    ('[[axis]]\nkey = "sgd.lr"\nvalues = [0.1]\n', "axis[0].key"),
    ('mode = "zip"\n[[axis]]\nkey = "schedules.weights"\nvalues = [1.0, 2.0]\n'
     '[[axis]]\nkey = "solver.dt"\nvalues = [0.01]\n', "axis"),
    ('mode = "diagonal"\n', "mode"),
    ('[[axis]]\nkey = "solver.stepper"\nvalues = ["rk4", "nope"]\n', "solver.stepper"),
    ('[[axis]]\nkey = "model.hidden"\nvalues = [["tanh", "nope"]]\n', "model.hidden"),
])
def test_invalid_sweeps_raise_config_error_naming_the_key(tmp_path, text, key):
    (tmp_path / "base.toml").write_text(BASE)
    with pytest.raises(ConfigError) as exc:
        sweep.loads('base = "base.toml"\n' + text, source="s.toml", base_dir=tmp_path)
    assert exc.value.key == key or exc.value.key.startswith(key), str(exc.value)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("lr", [0.07, 3.0])
def test_an_sgd_sweep_point_with_an_lr_off_the_record_grid_is_refused_before_submitting(tmp_path, lr):
    """t_end = 0.6 and save_every = 0.2: lr 0.07 (not a divisor) and lr 3.0 (> t_end, trained
    nothing) are refused at the sweep point, as `mfpde sgd` refuses them (finite.check_arguments)."""
    (tmp_path / "base.toml").write_text(BASE)
    with pytest.raises(ConfigError) as exc:
        sweep.loads(f'base = "base.toml"\ntask = "sgd"\n[[axis]]\nkey = "sgd.lr"\nvalues = [0.1, {lr}]\n',
                    base_dir=tmp_path)
    assert exc.value.key == "sgd.lr" and "at the sweep point sgd.lr" in str(exc.value), str(exc.value)


def test_a_sweep_nested_deeper_than_the_toml_limit_is_one_config_error(tmp_path):
    (tmp_path / "base.toml").write_text(BASE + "\n[probes]\nx = " + "[" * 600 + "1" + "]" * 600 + "\n")
    with pytest.raises(ConfigError, match="nested more than 16 levels") as exc:
        sweep.loads('base = "base.toml"\n', base_dir=tmp_path)
    assert exc.value.key == "base"
    with pytest.raises(ConfigError, match="nested more than 16 levels"):
        sweep.loads('base = "base.toml"\nx = ' + "[" * 600 + "]" * 600 + "\n", base_dir=tmp_path)


def test_missing_base_and_defaulted_keys(tmp_path):
    with pytest.raises(ConfigError) as exc:
        sweep.loads('base = "nowhere.toml"\n', base_dir=tmp_path)
    assert exc.value.key == "base"
    (tmp_path / "base.toml").write_text(BASE.replace("[sgd]\nwidths = [4, 8]\nreplicas = 2\n", ""))
    # keys the base leaves at their defaults may still be swept
    sw = sweep.loads('base = "base.toml"\ntask = "sgd"\n[[axis]]\nkey = "sgd.lr"\nvalues = [0.1]\n'
                     '[[axis]]\nkey = "seed"\nvalues = [1, 2]\n', base_dir=tmp_path)
    assert sw.dims == ("sgd.lr", "seed", "width", "replica") and sw.coords["width"] == [64, 256, 1024]


def test_cli_returns_2_on_an_invalid_sweep_before_submitting(tmp_path, capsys, monkeypatch):
    def no_cluster(*a, **k):  # pragma: no cover - reaching it is the failure
        raise AssertionError("a cluster was started")

    monkeypatch.setattr(sweep, "open_client", no_cluster)
    bad = write_sweep(tmp_path, GRID.replace('values = [0.002, 0.003]', 'values = [0.002, -1.0]'))
    out = tmp_path / "out"
    assert main(["sweep", str(bad), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mfpde: error: solver.dt:") and err.count("\n") == 1, err
    assert not out.exists()
    assert main(["collect", str(tmp_path / "nothing")]) == 2


# ----------------------------------------------------------------------------- on the cluster
def test_local_workers_run_one_numba_thread(client):
    env = client.run(lambda: (os.environ.get("NUMBA_NUM_THREADS"), os.environ.get("OPENBLAS_NUM_THREADS")))
    assert set(env.values()) == {("1", "1")} and len(env) == 2


def test_killed_worker_loses_and_duplicates_nothing_and_rerun_does_no_work(client, tmp_path, capsys):
    path = write_sweep(tmp_path, GRID)
    sw = sweep.load(path)
    out = tmp_path / "out"
    before = set(client.run(os.getpid).values())
    killed = {}

    def kill_a_busy_worker():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if out.exists() and len(sweep.task_files(out)) >= 3:
                break
            time.sleep(0.01)
        pids = client.run(os.getpid)
        busy = [w for w, keys in client.processing().items() if keys and w in pids]
        target = busy[0] if busy else next(iter(pids))
        killed["remaining"] = len(sw.tasks) - len(sweep.task_files(out))
        killed["pid"] = pids[target]
        os.kill(pids[target], signal.SIGKILL)

    killer = threading.Thread(target=kill_a_busy_worker)
    killer.start()
    report = sweep.run(sw, out, client=client, progress=False)
    killer.join()
    assert killed.get("pid") in before and killed["remaining"] > 0, killed   # killed mid-sweep
    assert (report.total, report.done, report.failed) == (12, 12, 0)
    # every task exactly once: one file per hash, nothing else, no temporaries
    assert [p.name for p in sweep.task_files(out)] == sorted(t.file for t in sw.tasks.values())
    assert temporaries(out) == []
    index = sweep.read_index(out)
    assert {e["status"] for e in index["tasks"].values()} == {"done"} and len(index["tasks"]) == 12
    from mfpde.store import netcdf as io

    ds = io.read(out / sweep.COLLECTED)
    assert dict(ds.sizes)["xi"] == 3 and dict(ds.sizes)["activation"] == 2 and dict(ds.sizes)["solver.dt"] == 2
    assert ds["loss_train"].dims == ("xi", "activation", "solver.dt", "time")
    assert not np.isnan(ds["loss_train"].values).any() and not np.isnan(ds["yhat_probe"].values).any()
    assert (ds["status"].values == "done").all()
    assert list(ds["xi"].values) == [0.5, 1.0, 2.0]
    # the nanny restarted the killed worker
    client.wait_for_workers(2, timeout=60)
    assert killed["pid"] not in set(client.run(os.getpid).values())

    # a second invocation does no work: nothing submitted, nothing rewritten
    stamps = mtimes(out)
    capsys.readouterr()
    again = sweep.run(sweep.load(path), out, client=NoSubmit(), progress=False)
    assert again.ran == 0 and again.collected is None and mtimes(out) == stamps
    assert main(["sweep", str(path), "-o", str(out), "--workers", "1"]) == 0
    assert "0 tasks to run" in capsys.readouterr().out and mtimes(out) == stamps


def test_blowing_up_task_is_retried_then_recorded_failed_and_nan(client, tmp_path):
    text = GRID.split("[[axis]]")[0] + '[[axis]]\nkey = "schedules.weights"\nname = "xi"\nvalues = [1.0, 1e6]\n'
    sw = sweep.load(write_sweep(tmp_path, text))
    out = tmp_path / "out"
    report = sweep.run(sw, out, client=client, retries=2, progress=False, say=lambda *a: None)
    assert (report.done, report.failed) == (1, 1)
    entries = sweep.read_index(out)["tasks"]
    bad = next(e for e in entries.values() if e["values"]["xi"] == 1e6)
    good = next(e for e in entries.values() if e["values"]["xi"] == 1.0)
    assert bad["status"] == "failed" and bad["attempts"] == 3 and bad["message"].startswith("BlowUpError:")
    assert good["status"] == "done" and good["attempts"] == 1
    assert [p.name for p in sweep.task_files(out)] == [good["file"]] and temporaries(out) == []
    ds = sweep.combine(out)
    assert np.isnan(ds["loss_train"].sel(xi=1e6).values).all()
    assert not np.isnan(ds["loss_train"].sel(xi=1.0).values).any()
    assert list(ds["status"].values) == ["done", "failed"]
    # failed tasks are not run again unless asked; then with their own bounded retries
    assert sweep.run(sw, out, client=NoSubmit(), progress=False, say=lambda *a: None).ran == 0
    again = sweep.run(sw, out, client=client, retries=0, retry_failed=True, progress=False, say=lambda *a: None)
    assert again.ran == 1 and again.failed == 1
    assert sweep.read_index(out)["tasks"][bad["file"][:-3]]["attempts"] == 1


def test_zipped_sgd_sweep_collects_task_width_replica(client, tmp_path):
    text = ('base = "base.toml"\nmode = "zip"\ntask = "sgd"\n'
            '[[axis]]\nkey = "sgd.lr"\nvalues = [0.01, 0.02]\n'
            '[[axis]]\nkey = "schedules.weights"\nname = "xi"\nvalues = [1.0, 0.5]\n')
    sw = sweep.load(write_sweep(tmp_path, text))
    assert len(sw.tasks) == 2 * 2 * 2
    out = tmp_path / "out"
    report = sweep.run(sw, out, client=client, progress=False, say=lambda *a: None)
    assert (report.done, report.failed) == (8, 0)
    ds = sweep.combine(out)
    assert ds["loss_train"].dims == ("task", "width", "replica", "time")
    assert list(ds["width"].values) == [4, 8] and list(ds["sgd.lr"].values) == [0.01, 0.02]
    assert not np.isnan(ds["loss_train"].values).any()
    # replicas differ (own seeds), and a task file is the run of its width and replica
    assert not np.allclose(ds["loss_train"].isel(replica=0).values, ds["loss_train"].isel(replica=1).values)
    one = next(t for t in sw.tasks.values() if t.width == 8 and t.replica == 1)
    from mfpde.store import netcdf as io

    f = io.read(out / one.file)
    assert json.loads(f.attrs["widths"]) == [8, 8] and f.attrs["replica"] == 1

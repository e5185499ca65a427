"""Tests of the `mfpde` command line: solve / show / default-config, exit codes 0, 2 and 3."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from mfpde import config, io
from mfpde.cli import main

TINY = """\
name = "tiny"
seed = 0

[model]
input_dim = 1
hidden = ["tanh", "tanh"]

[rules]
default = { kind = "gaussian_trapezoid", size = 8 }

[init]
W_2 = 0.5

[schedules]
weights = 1.0

[data.train]
kind = "teacher"
d = 1
teacher = { kind = "single_index_tanh", direction = [1.0], scale = 2.0 }
rule = { kind = "gauss_hermite", size = 8 }

[data.test]
kind = "teacher"
d = 1
teacher = { kind = "single_index_tanh", direction = [1.0], scale = 2.0 }
sample = 50

[probes]
kind = "grid"
low = -2.0
high = 2.0
size = 5

[solver]
stepper = "rk4"
dt = 0.05
t_end = 0.5
save_every = 0.1
"""


def write_config(tmp_path, text=TINY, name="tiny.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def one_error_line(err: str) -> str:
    """The stderr of a failed command: exactly one line 'mfpde: error: …', no traceback."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("mfpde: error: ")
    assert "Traceback" not in err
    return lines[0]


# --------------------------------------------------------------------------- solve

def test_solve_writes_netcdf_and_prints_the_loss_table(tmp_path, capsys):
    cfg = write_config(tmp_path)
    out = tmp_path / "res" / "tiny.nc"
    assert main(["solve", str(cfg), "-o", str(out), "--no-progress"]) == 0
    stdout = capsys.readouterr().out
    ds = io.read(out)
    np.testing.assert_allclose(ds["time"].values, np.linspace(0.0, 0.5, 6), rtol=0, atol=1e-12)
    assert ds.attrs["status"] == "completed"
    # the printed table is the table of the stored file
    assert io.loss_table(ds) in stdout
    lines = stdout.splitlines()
    assert lines[1].startswith("stiffness:")      # the stiffness report precedes the table
    header = next(line for line in lines if line.split()[:1] == ["time"]).split()
    assert header == ["time", "loss_train", "loss_test", "error_train", "error_test"]
    assert f"wrote {out}" in stdout
    # gradient flow on the training law: the training loss does not increase
    loss = ds["loss_train"].values
    assert np.all(np.diff(loss) <= 1e-12 * loss[0])


def test_solve_overrides_apply_and_default_output_name_is_the_problem_name(tmp_path, capsys, monkeypatch):
    cfg = write_config(tmp_path)
    monkeypatch.chdir(tmp_path)
    rc = main(["solve", str(cfg), "--stepper", "heun", "--dt", "0.025", "--t-end", "0.1", "--no-progress", "-q"])
    assert rc == 0
    assert capsys.readouterr().out == ""  # -q: nothing but errors
    ds = io.read(tmp_path / "tiny.nc")
    stepper = json.loads(ds.attrs["stepper"])
    assert stepper["stepper"] == "heun" and stepper["dt"] == 0.025
    assert ds["time"].values[-1] == 0.1
    assert ds.attrs["stats_steps"] == 4


def test_solve_uses_output_path_of_the_config(tmp_path, capsys, monkeypatch):
    cfg = write_config(tmp_path, TINY + '\n[output]\npath = "from_config.nc"\nparameters = "none"\n')
    monkeypatch.chdir(tmp_path)
    assert main(["solve", str(cfg), "--t-end", "0.1", "--no-progress", "-q"]) == 0
    ds = io.read(tmp_path / "from_config.nc")
    assert "w_1" not in ds and "loss_train" in ds


@pytest.mark.parametrize("text, key", [
    pytest.param(TINY.replace('hidden = ["tanh", "tanh"]', 'hidden = ["tanh", "tanh"]\nwidth = 3'), "model.width",
                 id="unknown-key"),
    pytest.param(TINY.replace("dt = 0.05", 'dt = "0.05"'), "solver.dt", id="string-number"),
    pytest.param(TINY.replace("size = 8 }\n\n[init]", "size = -8 }\n\n[init]"), "rules.default.size",
                 id="negative-size"),
    pytest.param(TINY.replace('stepper = "rk4"', 'stepper = "leapfrog"'), "solver.stepper", id="unknown-stepper"),
    pytest.param(TINY.replace("W_2 = 0.5", "W_2 = 0.5\nb_1 = 0.1"), "init.b_1", id="bias-init-without-bias"),
    pytest.param(TINY.replace("W_2 = 0.5", 'W_2 = 0.5\n"bad\\nkey" = 1'), "init.bad", id="key-with-line-break"),
    pytest.param(TINY.replace("[model]", "[model\n"), "tiny.toml", id="not-toml"),
])
def test_bad_config_exits_2_with_one_line_naming_the_key(tmp_path, capsys, text, key):
    cfg = write_config(tmp_path, text)
    assert main(["solve", str(cfg), "-o", str(tmp_path / "x.nc")]) == 2
    captured = capsys.readouterr()
    assert key in one_error_line(captured.err)
    assert not (tmp_path / "x.nc").exists()


@pytest.mark.parametrize("args, key", [
    (["--stepper", "leapfrog"], "solver.stepper"),
    (["--dt", "-0.1"], "solver.dt"),
    (["--t-end", "nan"], "solver.t_end"),
])
def test_bad_command_line_override_exits_2_naming_the_key(tmp_path, capsys, args, key):
    cfg = write_config(tmp_path)
    assert main(["solve", str(cfg), "-o", str(tmp_path / "x.nc"), *args]) == 2
    assert key in one_error_line(capsys.readouterr().err)


def test_missing_config_file_exits_2_naming_the_file(tmp_path, capsys):
    assert main(["solve", str(tmp_path / "absent.toml")]) == 2
    assert "absent.toml" in one_error_line(capsys.readouterr().err)


def test_unstable_run_exits_3_and_leaves_a_readable_partial_file(tmp_path, capsys):
    text = TINY.replace("weights = 1.0", "weights = 1e4").replace('stepper = "rk4"', 'stepper = "euler"') \
               .replace("dt = 0.05", "dt = 0.1").replace("t_end = 0.5", "t_end = 5.0")
    cfg = write_config(tmp_path, text)
    out = tmp_path / "blow.nc"
    assert main(["solve", str(cfg), "-o", str(out), "--no-progress"]) == 3
    line = one_error_line(capsys.readouterr().err)
    assert "partial result written to" in line and str(out) in line
    ds = io.read(out)
    assert ds.attrs["status"] == "blow-up"
    t = ds["time"].values
    assert t[0] == 0.0 and t[-1] < 5.0
    assert np.all(np.diff(t) >= 0)
    loss = ds["loss_train"].values
    assert np.isfinite(loss[-1])
    assert loss[-1] > loss[0]  # it did blow up: the last good state is far from the start
    assert np.all(np.isfinite(ds["v"].values[-1]))


# --------------------------------------------------------------------------- show, default-config

def test_show_prints_the_summary(tmp_path, capsys):
    cfg = write_config(tmp_path)
    out = tmp_path / "tiny.nc"
    assert main(["solve", str(cfg), "-o", str(out), "--no-progress", "-q"]) == 0
    capsys.readouterr()
    assert main(["show", str(out)]) == 0
    shown = capsys.readouterr().out
    ds = io.read(out)
    assert shown.strip() == io.summary(ds).strip()
    assert shown.splitlines()[0] == "mfpde mean-field limit solution: tiny"
    assert "status: completed" in shown and "w_1" in shown and "loss_train" in shown


def test_show_of_missing_or_foreign_file_exits_2_naming_it(tmp_path, capsys):
    assert main(["show", str(tmp_path / "none.nc")]) == 2
    assert "none.nc" in one_error_line(capsys.readouterr().err)
    junk = tmp_path / "junk.nc"
    junk.write_bytes(b"not a netcdf file at all")
    assert main(["show", str(junk)]) == 2
    assert "junk.nc" in one_error_line(capsys.readouterr().err)
    foreign = tmp_path / "foreign.nc"
    xr.Dataset({"a": ("x", np.arange(3.0))}).to_netcdf(foreign, engine="h5netcdf")
    assert main(["show", str(foreign)]) == 2
    assert "foreign.nc" in one_error_line(capsys.readouterr().err)


def _same_problem(a, b) -> None:
    assert a.name == b.name and a.model == b.model and a.schedules == b.schedules
    ea, eb = a.embedding, b.embedding
    assert (ea.w_1, ea.W, ea.v, ea.b, ea.b_out) == (eb.w_1, eb.W, eb.v, eb.b, eb.b_out)
    for ra, rb in zip(ea.rules, eb.rules, strict=True):
        np.testing.assert_array_equal(ra.nodes, rb.nodes)
        np.testing.assert_array_equal(ra.weights, rb.weights)
    for da, db in ((a.train, b.train), (a.test, b.test)):
        for attr in ("X", "Y", "weights"):
            np.testing.assert_array_equal(getattr(da, attr), getattr(db, attr))
    np.testing.assert_array_equal(a.probes, b.probes)


def test_default_config_output_reloads_to_the_same_problem(capsys):
    assert main(["default-config"]) == 0
    text = capsys.readouterr().out
    again, default = config.loads(text, source="default"), config.default()
    assert again.raw == default.raw
    assert again.solver == default.solver and again.output == default.output
    _same_problem(again.problem, default.problem)


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "solve" in capsys.readouterr().out


def test_version_flag(capsys):
    from mfpde import __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"mfpde {__version__}"


# --------------------------------------------------------------------------- the console script

def test_console_script_solves_the_embedded_default_end_to_end(tmp_path):
    exe = Path(sys.executable).with_name("mfpde")
    if not exe.exists():
        pytest.skip(f"console script {exe} is not installed (pip install -e .)")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([str(exe), "solve", "--no-progress"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "loss_train" in proc.stdout and "wrote mfpde_default.nc" in proc.stdout
    ds = io.read(tmp_path / "mfpde_default.nc")
    np.testing.assert_allclose(ds["time"].values, np.arange(11.0), rtol=0, atol=1e-12)
    loss = ds["loss_train"].values
    # gradient flow: the training loss decreases, and the default problem is learnable
    assert np.all(np.diff(loss) <= 1e-12 * loss[0])
    assert loss[-1] < 0.01 * loss[0]
    assert ds.sizes["node_1"] == 64 and ds.sizes["node_2"] == 64 and ds["W_2"].dims == ("time", "node_1", "node_2")

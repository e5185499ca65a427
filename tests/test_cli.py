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

from mfpde.problem import config

from mfpde.store import netcdf as io
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
    # a squared loss: no classification error; the error estimate of loss_train beside it
    assert header == ["time", "loss_train", "±estimate", "loss_test"]
    np.testing.assert_array_equal(ds["loss_train_error_estimate"].shape, ds["loss_train"].shape)
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


# --------------------------------------------------------------------------- output paths (mfpde/store/paths.py)

@pytest.fixture
def no_work(monkeypatch):
    """Any work (building a System, training, reading inputs, sweeping, refining) raises: an output
    check that comes after it makes the test fail with RuntimeError instead of a clean exit 2."""
    from mfpde import sweep
    from mfpde.finite import ensemble
    from mfpde.analysis import references
    from mfpde.store import runs
    from mfpde.system import system

    def work(*a, **k):
        raise RuntimeError("work started before the output paths were checked")

    monkeypatch.setattr(system.System, "__init__", work)
    for mod, name in ((ensemble, "run_ensemble"), (io, "read"), (runs, "read"), (sweep, "load"), (sweep, "run"),
                      (sweep, "collect"), (references, "refine"), (references, "build_all")):
        monkeypatch.setattr(mod, name, work)


BAD_OUTPUTS = {   # command line → (option named, words of the error)
    "solve-under-a-file": (["solve", "tiny.toml", "-o", "afile/o.nc"], "--output", "'afile' is not a folder"),
    "solve-name-too-long": (["solve", "tiny.toml", "-o", "n" * 300 + ".nc"], "--output", "at most 255"),
    "solve-config-output-path": (["solve", "outpath.toml"], "output.path", "'afile' is not a folder"),
    "solve-checkpoint-folder": (["solve", "tiny.toml", "--checkpoint", "adir"], "--checkpoint", "is a folder"),
    "solve-checkpoint-is-output": (["solve", "tiny.toml", "-o", "o.nc", "--checkpoint", "o.nc"], "--checkpoint",
                                   "same file as --output"),
    "sgd-folder-overwrite": (["sgd", "tiny.toml", "-o", "adir", "--overwrite"], "--output", "is a folder"),
    "sgd-checkpoint-folder-is-a-file": (["sgd", "tiny.toml", "-o", "r.h5", "--checkpoint-every", "2"], "--output",
                                        "'r.h5.ckpt' is a file, not a folder"),
    "compare-under-a-file": (["compare", "l.nc", "r.h5", "-o", "afile/c.nc"], "--output", "is not a folder"),
    "compare-plot-is-a-file": (["compare", "l.nc", "r.h5", "--plot", "afile"], "--plot", "is a file, not a folder"),
    "sweep-output-is-a-file": (["sweep", "s.toml", "-o", "afile"], "--output", "is a file, not a folder"),
    "collect-under-a-file": (["collect", "adir", "-o", "afile/x.nc"], "--output", "is not a folder"),
    "collect-default-in-a-file": (["collect", "afile"], "--output", "'afile' is not a folder"),
    "refine-under-a-file": (["refine", "tiny.toml", "--rule-sizes", "8,16", "-o", "afile/r.nc"], "--output",
                            "is not a folder"),
    "reference-dir-is-a-file": (["reference", "build", "--dir", "afile"], "--dir", "is a file, not a folder"),
    "validate-out-is-a-file": (["validate", "--out", "afile"], "--out", "is a file, not a folder"),
}


@pytest.mark.parametrize("case", list(BAD_OUTPUTS))
def test_bad_output_path_exits_2_with_one_line_before_any_work(tmp_path, capsys, monkeypatch, no_work, case):
    argv, key, words = BAD_OUTPUTS[case]
    monkeypatch.chdir(tmp_path)
    write_config(tmp_path)
    write_config(tmp_path, TINY + '\n[output]\npath = "afile/x.nc"\n', name="outpath.toml")
    (tmp_path / "afile").write_text("mine")
    (tmp_path / "r.h5.ckpt").write_text("mine")
    (tmp_path / "adir").mkdir()
    before = sorted(os.listdir(tmp_path))
    assert main(argv) == 2
    captured = capsys.readouterr()
    line = one_error_line(captured.err)
    assert line.startswith(f"mfpde: error: {key}: ") and words in line, line
    assert "solving" not in captured.out
    assert sorted(os.listdir(tmp_path)) == before and os.listdir(tmp_path / "adir") == []
    assert (tmp_path / "afile").read_text() == "mine"


def _data_file_config(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((20, 1))
    np.savez(tmp_path / "train.npz", x=x, y=np.tanh(2 * x))
    text = TINY.replace('kind = "teacher"\nd = 1\nteacher = { kind = "single_index_tanh", direction = [1.0], '
                        'scale = 2.0 }\nrule = { kind = "gauss_hermite", size = 8 }', 'kind = "file"\npath = "train.npz"')
    assert 'path = "train.npz"' in text
    return write_config(tmp_path, text, name="data.toml")


INPUT_AS_OUTPUT = {   # command line → the input it names as an output
    "solve-config": (["solve", "tiny.toml", "-o", "tiny.toml", "--overwrite"], "tiny.toml"),
    "solve-hard-link-of-config": (["solve", "tiny.toml", "-o", "link.toml", "--overwrite"], "tiny.toml"),
    "solve-data-file": (["solve", "data.toml", "-o", "train.npz", "--overwrite"], "train.npz"),
    "solve-checkpoint-config": (["solve", "tiny.toml", "--checkpoint", "tiny.toml", "--overwrite"], "tiny.toml"),
    "sgd-config": (["sgd", "tiny.toml", "-o", "tiny.toml", "--overwrite"], "tiny.toml"),
    "compare-limit": (["compare", "l.nc", "r.h5", "-o", "l.nc", "--overwrite"], "l.nc"),
    "refine-config": (["refine", "tiny.toml", "--rule-sizes", "8,16", "-o", "tiny.toml", "--overwrite"], "tiny.toml"),
    "collect-index": (["collect", "sw", "-o", "sw/index.json", "--overwrite"], "sw/index.json"),
}


@pytest.mark.parametrize("case", list(INPUT_AS_OUTPUT))
def test_no_command_overwrites_its_own_input_even_with_overwrite(tmp_path, capsys, monkeypatch, no_work, case):
    argv, victim = INPUT_AS_OUTPUT[case]
    monkeypatch.chdir(tmp_path)
    write_config(tmp_path)
    os.link(tmp_path / "tiny.toml", tmp_path / "link.toml")
    _data_file_config(tmp_path)
    (tmp_path / "l.nc").write_bytes(b"limit")
    (tmp_path / "r.h5").write_bytes(b"runs")
    (tmp_path / "sw").mkdir()
    (tmp_path / "sw" / "index.json").write_text('{"format": "mfpde-sweep"}')
    before = (tmp_path / victim).read_bytes()
    assert main(argv) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "never overwritten" in line, line
    assert (tmp_path / victim).read_bytes() == before


def test_solve_refuses_to_replace_a_foreign_file_unless_overwrite(tmp_path, capsys):
    cfg = write_config(tmp_path)
    copy = tmp_path / "tiny_copy.toml"
    copy.write_text(TINY)
    assert main(["solve", str(cfg), "-o", str(copy), "--no-progress", "-q"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "exists and is not an mfpde output; pass --overwrite to replace it with a limit solution" in line
    assert copy.read_text() == TINY
    assert main(["solve", str(cfg), "-o", str(copy), "--no-progress", "-q", "--overwrite"]) == 0
    assert io.read(copy).attrs["status"] == "completed"


def test_solve_to_its_own_earlier_output_replaces_it_but_not_an_output_of_another_kind(tmp_path, capsys):
    from mfpde.store import runs

    cfg = write_config(tmp_path)
    out = tmp_path / "again.nc"
    for _ in range(2):   # re-running a solve to the same file is the normal workflow
        assert main(["solve", str(cfg), "-o", str(out), "--no-progress", "-q", "--t-end", "0.1"]) == 0
    assert io.read(out)["time"].values[-1] == 0.1
    with runs.RunStore(tmp_path / "runs.h5", "a", attrs={"config": "x"}):
        pass
    before = (tmp_path / "runs.h5").read_bytes()
    assert main(["solve", str(cfg), "-o", str(tmp_path / "runs.h5"), "--no-progress", "-q"]) == 2
    assert "is a run store (mfpde sgd), not a limit solution" in one_error_line(capsys.readouterr().err)
    assert (tmp_path / "runs.h5").read_bytes() == before


def test_sgd_refuses_to_replace_a_foreign_file_and_compare_rewrites_its_own_output(tmp_path, capsys, monkeypatch):
    from mfpde.store.paths import sniff

    monkeypatch.chdir(tmp_path)
    write_config(tmp_path)
    (tmp_path / "notes.h5").write_text("mine")
    assert main(["sgd", "tiny.toml", "-o", "notes.h5", "--widths", "4", "--replicas", "1", "-q"]) == 2
    assert "replace it with a run store" in one_error_line(capsys.readouterr().err)
    assert (tmp_path / "notes.h5").read_text() == "mine"
    assert main(["solve", "tiny.toml", "-o", "lim.nc", "-q", "--no-progress"]) == 0
    assert main(["sgd", "tiny.toml", "-o", "runs.h5", "--widths", "4,6", "--replicas", "1", "-q"]) == 0
    for _ in range(2):
        assert main(["compare", "lim.nc", "runs.h5", "-o", "cmp.nc"]) == 0
    assert sniff("cmp.nc") == "compare"
    capsys.readouterr()
    assert main(["compare", "lim.nc", "runs.h5", "-o", "runs.h5", "--overwrite"]) == 2   # an input
    assert main(["compare", "lim.nc", "runs.h5", "-o", "tiny.toml"]) == 2                 # foreign
    assert "replace it with a limit-vs-width comparison" in capsys.readouterr().err.splitlines()[-1]


# --------------------------------------------------------------------------- sgd progress

def test_sgd_progress_bar_advances_once_per_run_and_every_run_prints_a_line(tmp_path, capsys, monkeypatch):
    import tqdm

    updates = []
    real = tqdm.tqdm.update
    monkeypatch.setattr(tqdm.tqdm, "update", lambda self, n=1: (updates.append(n), real(self, n))[1])
    cfg = write_config(tmp_path)
    out = tmp_path / "runs.h5"
    assert main(["sgd", str(cfg), "-o", str(out), "--widths", "4,6", "--replicas", "2", "--progress"]) == 0
    captured = capsys.readouterr()
    assert updates == [1, 1, 1, 1]
    assert "4/4" in captured.err   # the bar on stderr reached the end
    lines = captured.out.splitlines()
    estimate = [i for i, ln in enumerate(lines) if "4 runs" in ln and "10 SGD steps" in ln and "40 steps" in ln]
    per_run = [i for i, ln in enumerate(lines) if ln.startswith("mfpde: run ")]
    assert len(estimate) == 1 and len(per_run) == 4, captured.out
    assert estimate[0] < per_run[0]
    for i, (n, r) in zip(per_run, [(4, 0), (4, 1), (6, 0), (6, 1)]):
        assert f"width {n} replica {r}: completed" in lines[i] and "final loss_train" in lines[i], lines[i]
        assert lines[i].startswith(f"mfpde: run {per_run.index(i) + 1}/4")


def test_an_error_that_carries_an_exit_status_exits_with_it(tmp_path, capsys, monkeypatch):
    from mfpde.errors import StoreError

    class Unwritable(StoreError):
        exit_status = 1

    def write(ds, path):
        raise Unwritable(f"cannot write {str(path)!r}: No space left on device")

    monkeypatch.setattr(io, "write", write)
    cfg = write_config(tmp_path)
    assert main(["solve", str(cfg), "-o", str(tmp_path / "o.nc"), "--no-progress", "-q", "--t-end", "0.1"]) == 1
    assert "No space left on device" in one_error_line(capsys.readouterr().err)


def test_sgd_refuses_record_times_off_the_step_grid_before_creating_the_store(tmp_path, capsys):
    cfg = write_config(tmp_path)   # t_end 0.5, save_every 0.1: lr = 0.25 divides t_end but not the save times
    out = tmp_path / "runs.h5"
    assert main(["sgd", str(cfg), "--lr", "0.25", "--widths", "4", "--replicas", "1", "-o", str(out), "-q"]) == 2
    assert one_error_line(capsys.readouterr().err).startswith("mfpde: error: sgd.lr: ")
    assert not out.exists()


def test_run_ensemble_refuses_a_mode_of_the_wrong_type_with_a_config_error(tmp_path):
    from mfpde.finite.ensemble import run_ensemble
    from mfpde.errors import ConfigError

    c = config.loads(TINY)
    for mode in (np.array(["full", "online"]), ["full"], {"full": 1}):
        with pytest.raises(ConfigError, match="sgd.mode"):
            run_ensemble(c, tmp_path / "r.h5", widths=(4,), replicas=1, mode=mode, say=lambda *a: None)
    assert not (tmp_path / "r.h5").exists()


def test_run_ensemble_refuses_a_folder_as_its_store_before_training(tmp_path):
    from mfpde.finite.ensemble import run_ensemble
    from mfpde.errors import ConfigError

    (tmp_path / "adir").mkdir()
    c = config.loads(TINY)
    for resume in (True, False):
        with pytest.raises(ConfigError, match="^out: .*is a folder"):
            run_ensemble(c, tmp_path / "adir", widths=(4,), replicas=1, resume=resume, say=lambda *a: None)
    assert (tmp_path / "adir").is_dir()


@pytest.mark.parametrize("junk", ["\n", "a\nb", "\r\n0"])
def test_an_argparse_error_quoting_a_line_break_is_still_one_line(junk, capsys):
    """Found by make fuzz: `mfpde solve T -o o.nc --resume '\\n'` printed the unrecognized
    argument's line break, so the error took two lines."""
    with pytest.raises(SystemExit) as exc:
        main(["solve", "x.toml", "--resume", junk])
    assert exc.value.code == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert lines[-1].startswith("mfpde: error: ") and "\\n" in lines[-1]
    assert all(ln.startswith(("usage:", "mfpde: error: ", "  ")) for ln in lines), lines


# --------------------------------------------------------------------------- start-up

def test_the_mfpde_program_skips_dask_for_solve_and_in_process_calls_leave_it(tmp_path):
    """Run as the program (argv None), solve tells Python dask is absent (xarray's dask probe
    would import dask.array and distributed); the file it writes is an ordinary result."""
    cfg = write_config(tmp_path)
    out = tmp_path / "prog.nc"
    code = ("import sys\nfrom mfpde.cli import main\n"
            f"sys.argv = ['mfpde', 'solve', {str(cfg)!r}, '-o', {str(out)!r}, '-q']\n"
            "rc = main()\nprint('rc', rc, 'dask', sys.modules.get('dask', 'absent'))\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["rc", "0", "dask", "None"]
    ds = io.read(out)
    assert ds.attrs["status"] == "completed" and ds["loss_train"].sizes["time"] == 6
    assert main(["show", str(out)]) == 0          # in-process: dask is not blocked here
    assert sys.modules.get("dask", "absent") is not None


def test_only_numpy_commands_block_dask():
    from mfpde import cli

    assert set(cli.NO_DASK_COMMANDS) == {"solve", "show"}
    assert cli._without_dask("sweep") is False and cli._without_dask("sgd") is False

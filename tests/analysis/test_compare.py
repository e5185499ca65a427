"""`mfpde compare LIMIT RUNS` checks its inputs before comparing (issue 13, 4f; issue 18, 2).

The first file must be a limit result of `mfpde solve` (a 'time' coordinate, loss_train over
time), the second a run store of `mfpde sgd`; their ŷ must be recorded at the same probe points
with the same number of outputs and the runs must lie inside the limit's time span.  Anything
else is one line `mfpde: error: …` and exit status 2, never a traceback, never a number.  Their
stored configurations must define the same problem (or --force, with a warning); interpolation
between the limit's save times and too few widths for a CI are said, never silent.
"""
from __future__ import annotations

import numpy as np
import pytest

from mfpde.analysis import compare

from mfpde.store import netcdf as io

from mfpde.store import runs
from mfpde.cli import main
from mfpde.errors import MfpdeError
from tiny import tiny_toml

TINY = tiny_toml("cmp")   # tests/tiny.py
PROBES = "[probes]\nkind = \"grid\"\nlow = -1.0\nhigh = 1.0\nsize = 3\n"


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("mfpde: error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cmp")
    variants = {
        "limit": TINY,
        "limit_5_probes": TINY.replace(PROBES, PROBES.replace("size = 3", "size = 5")),
        "limit_other_probes": TINY.replace(PROBES, PROBES.replace("low = -1.0", "low = -2.0")),
        "limit_no_probes": TINY.replace(PROBES, ""),
        "limit_short": TINY.replace("t_end = 0.5", "t_end = 0.2"),
        # the same problem, saved every 0.2: the runs' record times 0.1 and 0.3 fall between saves
        "limit_coarse_saves": TINY.replace("save_every = 0.1", "save_every = 0.2"),
        # the same problem solved with another stepper and name: not a different problem
        "limit_other_stepper": TINY.replace('stepper = "rk4"', 'stepper = "euler"').replace('"cmp"', '"other"'),
        # another problem: the teacher's direction and a hidden activation differ
        "limit_other_problem": TINY.replace("direction = [1.0]", "direction = [0.5]")
                                   .replace('hidden = ["tanh", "tanh"]', 'hidden = ["tanh", "relu"]'),
    }
    out = {}
    with np.errstate(all="ignore"):
        for name, text in variants.items():
            cfg = d / f"{name}.toml"
            cfg.write_text(text)
            out[name] = d / f"{name}.nc"
            assert main(["solve", str(cfg), "-o", str(out[name]), "-q"]) == 0
        out["runs"] = d / "runs.h5"
        assert main(["sgd", str(d / "limit.toml"), "-o", str(out["runs"]), "-q", "--widths", "4,6", "--replicas", "2"]) == 0
        out["runs3"] = d / "runs3.h5"
        assert main(["sgd", str(d / "limit.toml"), "-o", str(out["runs3"]), "-q", "--widths", "4,6,8",
                     "--replicas", "2"]) == 0
        out["comparison"] = d / "comparison.nc"
        assert main(["compare", str(out["limit"]), str(out["runs"]), "-o", str(out["comparison"])]) == 0
    return out


def test_matching_limit_and_runs_compare(files, capsys, tmp_path):
    assert main(["compare", str(files["limit"]), str(files["runs"]), "--plot", str(tmp_path / "figs")]) == 0
    out = capsys.readouterr().out
    assert "output_error: fitted rate" in out and "loss_error: fitted rate" in out
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == sorted(compare.FIGURES)
    res = io.read(files["comparison"])
    assert list(res["width"].values) == [4, 6] and np.all(np.isfinite(res["output_error"].values))


@pytest.mark.parametrize("first, second, fragment", [
    ("comparison", "runs", "is a comparison (mfpde compare), not a limit result"),
    ("runs", "runs", "is a run store (mfpde sgd), not a limit result"),
    ("limit_5_probes", "runs", "5 probe points"),
    ("limit_other_probes", "runs", "at other probe points"),
    ("limit_no_probes", "runs", "has no ŷ at probe points"),
    ("limit_short", "runs", "span t in [0, 0.5] but the limit"),
])
def test_compare_of_inputs_that_do_not_fit_exits_2_with_one_line(files, capsys, first, second, fragment):
    assert main(["compare", str(files[first]), str(files[second])]) == 2
    captured = capsys.readouterr()
    line = one_error_line(captured.err)
    assert fragment in line, line
    assert str(files[first]) in line, line     # the limit file is named
    assert captured.out == ""                  # nothing was computed or printed


def _replace(ds, name, new):
    """``ds`` with ``name`` replaced by ``new`` of other sizes (variables sharing its dims dropped)."""
    dims = set(new.dims) - {"time", "width", "replica"}
    keep = [v for v in ds.data_vars if v != name and not dims & set(ds[v].dims)]
    sub = ds[keep]
    return sub.drop_vars([c for c in sub.coords if dims & set(sub[c].dims)]).assign({name: new.variable})


def _limit(files):
    return io.read(files["limit"])


def _runs(files):
    return runs.read(files["runs"])


@pytest.mark.parametrize("edit, fragment", [
    (lambda ds: ds.drop_vars("loss_train"), "loss_train"),
    (lambda ds: ds.assign_coords(time=ds["time"].values[::-1]), "increasing"),
    (lambda ds: ds.assign_coords(time=np.where(np.arange(ds.sizes["time"]) == 2, np.nan, ds["time"].values)),
     "increasing"),
    (lambda ds: _replace(ds, "yhat_probe", ds["yhat_probe"].isel(output=[0, 0])), "2 output"),
    (lambda ds: ds.assign(yhat_probe=ds["yhat_probe"].isel(time=0)), "yhat_probe"),
    (lambda ds: ds.assign(loss_train=ds["loss_train"].expand_dims(extra=2)), "loss_train"),
    (lambda ds: ds.drop_vars("probe_x").assign_attrs(config="[probes\n"), "probe points"),
])
def test_malformed_limit_dataset_is_refused_before_comparing(files, edit, fragment):
    with pytest.raises(MfpdeError, match=fragment):
        compare.compare(edit(_limit(files)), _runs(files))


@pytest.mark.parametrize("edit, fragment", [
    (lambda ds: ds.assign_attrs(format="something"), "not a run store"),
    (lambda ds: ds.drop_vars("loss_train"), "loss_train"),
    (lambda ds: _replace(ds, "yhat_probe", ds["yhat_probe"].isel(probe=[0, 1])), "2 probe points"),
    (lambda ds: ds.drop_vars("probe_x").assign_attrs(config="not toml ["), "probe points"),
])
def test_malformed_run_store_dataset_is_refused_before_comparing(files, edit, fragment):
    with pytest.raises(MfpdeError, match=fragment):
        compare.compare(_limit(files), edit(_runs(files)))


def test_compare_needs_datasets():
    with pytest.raises(MfpdeError, match="xarray Dataset"):
        compare.compare("limit.nc", "runs.h5")


def test_plot_without_matplotlib_is_one_error_naming_the_extra(files, monkeypatch):
    import sys

    res = io.read(files["comparison"])
    monkeypatch.setitem(sys.modules, "matplotlib", None)     # import matplotlib raises ImportError
    with pytest.raises(MfpdeError, match=r"mfpde\[plot\]"):
        compare.require_plotting()
    with pytest.raises(MfpdeError, match=r"mfpde\[plot\]"):
        compare.plot(res, _limit(files), _runs(files), files["comparison"].parent / "figs")


def test_limit_of_another_problem_is_refused_naming_the_differing_keys(files, capsys):
    assert main(["compare", str(files["limit_other_problem"]), str(files["runs"])]) == 2
    captured = capsys.readouterr()
    line = one_error_line(captured.err)
    assert "define different problems (2 keys differ" in line, line
    assert "data.train.teacher.direction: [0.5] (limit) vs [1.0] (runs)" in line, line
    assert "model.hidden: ['tanh', 'relu'] (limit) vs ['tanh', 'tanh'] (runs)" in line, line
    assert "--force" in line and captured.out == ""


def test_force_compares_another_problem_with_a_warning(files, capsys):
    assert main(["compare", str(files["limit_other_problem"]), str(files["runs"]), "--force"]) == 0
    captured = capsys.readouterr()
    warnings = [ln for ln in captured.err.splitlines() if "different problems" in ln]
    assert len(warnings) == 1 and warnings[0].startswith("mfpde: warning: ") and "model.hidden" in warnings[0]
    assert "compared anyway (--force)" in warnings[0]
    assert "loss_error: fitted rate" in captured.out


def test_solver_name_and_sgd_keys_do_not_make_another_problem(files):
    import tomllib

    base = TINY + '[sgd]\nlr = 0.05\n[output]\nparameters = "final"\n'
    other = TINY.replace('stepper = "rk4"', 'stepper = "euler"').replace("t_end = 0.5", "t_end = 2.0")
    assert tomllib.loads(other)["solver"]["stepper"] == "euler"    # the edit took
    assert compare.problem_differences(base, other.replace('"cmp"', '"x"')) == []
    diff = compare.problem_differences(TINY, TINY.replace("size = 3", "size = 4"))
    assert diff == [("probes.size", 3, 4)]
    diff = compare.problem_differences(TINY, TINY.replace('name = "cmp"', 'name = "cmp"\nseed = 7'))
    assert [(k, y) for k, _, y in diff] == [("seed", 7)] and diff[0][1] is compare._UNSET


def test_same_problem_with_another_stepper_compares_without_a_config_warning(files, capsys):
    assert main(["compare", str(files["limit_other_stepper"]), str(files["runs"])]) == 0
    assert "different problems" not in capsys.readouterr().err


def test_interpolated_save_times_are_named_with_the_largest_gap(files, capsys):
    assert main(["compare", str(files["limit_coarse_saves"]), str(files["runs"])]) == 0
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "interpolated" in ln]
    assert len(lines) == 1 and lines[0].startswith("mfpde: warning: "), err
    # runs record every 0.05·2 = 0.1 on [0, 0.5]; the limit saves 0, 0.2, 0.4, 0.5: 0.1 and 0.3 are
    # interpolated, each 0.1 from its nearest save time
    assert "2 of the runs' 6 record times" in lines[0] and "t = 0.1, 0.3" in lines[0], lines[0]
    assert "up to 0.1 in t" in lines[0] and "interpolation error" in lines[0]
    notes = []
    res = compare.compare(io.read(files["limit_coarse_saves"]), _runs(files), warn=notes.append)
    assert res.attrs["max_interpolation_dt"] == pytest.approx(0.1, rel=1e-12)
    assert compare.compare(_limit(files), _runs(files), warn=notes.append).attrs["max_interpolation_dt"] == 0.0


def test_interpolated_times_tolerates_rounding_of_k_times_lr():
    lt = np.array([0.0, 0.1, 0.2, 0.30000000000000004 - 4e-17])
    off, gap = compare.interpolated_times(lt, np.array([k * 0.1 for k in range(4)]))
    assert len(off) == 0 and gap < 1e-15
    off, gap = compare.interpolated_times(lt, np.array([0.05, 0.2, 0.29]))
    assert list(off) == [0.05, 0.29] and gap == pytest.approx(0.05)


def test_two_widths_say_no_ci_is_possible(files, capsys):
    assert main(["compare", str(files["limit"]), str(files["runs"])]) == 0
    captured = capsys.readouterr()
    assert "nan" not in captured.out.split("fitted rate")[1], captured.out
    assert "no CI possible from 2 widths (needs 3)" in captured.out
    assert any(ln.startswith("mfpde: warning: 2 widths (4, 6): no confidence interval") for ln in captured.err.splitlines())


def test_three_widths_give_a_finite_ci_around_the_rate(files, capsys):
    assert main(["compare", str(files["limit"]), str(files["runs3"])]) == 0
    captured = capsys.readouterr()
    assert "confidence interval" not in captured.err and "95% CI [" in captured.out
    res = compare.compare(_limit(files), runs.read(files["runs3"]), warn=lambda m: None)
    a = res.attrs
    assert a["loss_error_rate_ci_low"] < a["loss_error_rate"] < a["loss_error_rate_ci_high"]


def test_comparison_variables_have_long_names_and_units(files):
    res = io.read(files["comparison"])
    for key in ("output_error", "loss_error"):
        for suffix, words in (("", "of each run"), ("_mean", "mean over replicas"),
                              ("_sem", "standard error"), ("_sqrt_n", "√n")):
            a = res[key + suffix].attrs
            assert words in a["long_name"] and key.split("_")[0] in a["long_name"], (key + suffix, a)
            assert a["units"] == "1"


# ----------------------------------------------------------------- a point of a collected SGD sweep

@pytest.fixture(scope="module")
def sweep_file(tmp_path_factory):
    """A collected SGD sweep of TINY over sgd.lr (2 points × widths 4, 8 × 2 replicas)."""
    d = tmp_path_factory.mktemp("cmp_sweep")
    (d / "base.toml").write_text(TINY + "[sgd]\nwidths = [4, 8]\nreplicas = 2\n")
    (d / "sweep.toml").write_text('base = "base.toml"\ntask = "sgd"\n[[axis]]\nkey = "sgd.lr"\nvalues = [0.05, 0.025]\n')
    with np.errstate(all="ignore"):
        assert main(["sweep", str(d / "sweep.toml"), "-o", str(d / "out"), "--workers", "1"]) == 0
    return d / "out" / "sweep.nc"


def test_a_sweep_of_several_points_needs_a_point_and_lists_them(files, sweep_file, capsys):
    assert main(["compare", str(files["limit"]), str(sweep_file)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "is a sweep of 2 points" in line and "sgd.lr=0.05; sgd.lr=0.025" in line and "--point" in line, line
    assert main(["compare", str(files["limit"]), str(sweep_file), "--point", "lr=0.05"]) == 2
    assert "KEY one of the sweep's axes (sgd.lr)" in one_error_line(capsys.readouterr().err)
    assert main(["compare", str(files["limit"]), str(sweep_file), "--point", "sgd.lr=0.5"]) == 2
    assert "no point matches --point sgd.lr=0.5" in one_error_line(capsys.readouterr().err)


def test_one_sweep_point_compares_like_its_runs(files, sweep_file, capsys):
    assert main(["compare", str(files["limit"]), str(sweep_file), "--point", "sgd.lr=0.025"]) == 0
    assert "loss_error: fitted rate" in capsys.readouterr().out
    sweep = io.read(sweep_file)
    res = compare.compare(_limit(files), compare.sweep_runs(sweep, ["sgd.lr=0.025"], folder=sweep_file.parent),
                          warn=lambda m: None)
    # independently: the sup over t of |loss_n − loss_∞| of every run of that point
    lim = _limit(files)["loss_train"].values
    runs_loss = sweep["loss_train"].sel({"sgd.lr": 0.025}).values             # [width, replica, time]
    np.testing.assert_allclose(res["loss_error"].values, np.max(np.abs(runs_loss - lim), axis=-1), rtol=1e-14)
    assert list(res["width"].values) == [4, 8]


def test_a_sweep_point_of_another_problem_is_refused_and_point_needs_a_sweep(files, sweep_file, capsys):
    assert main(["compare", str(files["limit_other_problem"]), str(sweep_file), "--point", "sgd.lr=0.05"]) == 2
    assert "data.train.teacher.direction: [0.5] (limit) vs [1.0] (runs)" in one_error_line(capsys.readouterr().err)
    assert main(["compare", str(files["limit"]), str(files["runs"]), "--point", "sgd.lr=0.05"]) == 2
    assert "is not one" in one_error_line(capsys.readouterr().err)

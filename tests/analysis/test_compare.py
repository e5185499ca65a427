"""`mfpde compare LIMIT RUNS` checks its inputs before comparing (issue 13, 4f).

The first file must be a limit result of `mfpde solve` (a 'time' coordinate, loss_train over
time), the second a run store of `mfpde sgd`; their ŷ must be recorded at the same probe points
with the same number of outputs and the runs must lie inside the limit's time span.  Anything
else is one line `mfpde: error: …` and exit status 2, never a traceback, never a number.
"""
from __future__ import annotations

import numpy as np
import pytest

from mfpde.analysis import compare

from mfpde.store import netcdf as io

from mfpde.store import runs
from mfpde.cli import main
from mfpde.errors import MfpdeError

TINY = """
name = "cmp"
[model]
input_dim = 1
hidden = ["tanh", "tanh"]
[rules]
default = { kind = "gaussian_trapezoid", size = 6 }
[data.train]
kind = "teacher"
d = 1
teacher = { kind = "single_index_tanh", direction = [1.0] }
rule = { kind = "gauss_hermite", size = 6 }
[probes]
kind = "grid"
low = -1.0
high = 1.0
size = 3
[solver]
stepper = "rk4"
dt = 0.05
t_end = 0.5
save_every = 0.1
"""
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
    (lambda ds: ds.assign_attrs(config="not toml ["), "probe points"),
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

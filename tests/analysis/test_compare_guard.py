"""`mfpde compare` weighs the limit's own error (issue 16, item 4, guards; docs/runs.md).

When the limit's ``error_estimate_loss`` exceeds 1/10 of the smallest width error it is compared
with (the per-width replica mean of the sup-time loss error), a warning names both numbers: the
comparison then measures the solver, not the width.  A limit without a usable estimate (an older
file, an estimate switched off or unavailable) is said once.  The comparison records the estimate
as ``limit_error_estimate_loss`` (NaN if none).

The limit and runs below are built by hand: limit loss 𝓛(t) = e^{−t}/2 on t = 0, 0.2, …, 1, run
(n, r) loss 𝓛(t) + c_n (1 + r/10) t with c_n = 0.1/√n.  Its sup-time error is c_n (1 + r/10), the
mean over replicas r = 0, 1 is 1.05 c_n, and the smallest over n = 16, 64, 256 is 1.05 · 0.1/16.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr

from mfpde.analysis import compare

WIDTHS = np.array([16, 64, 256])
TIMES = np.linspace(0.0, 1.0, 6)
SMALLEST = 1.05 * 0.1 / math.sqrt(256)     # 0.0065625, at width 256
THRESHOLD = SMALLEST / 10
CONFIG = 'name = "guard"\n[model]\ninput_dim = 1\nhidden = ["tanh"]\n'


def limit(**attrs) -> xr.Dataset:
    loss = 0.5 * np.exp(-TIMES)
    ds = xr.Dataset({"loss_train": ("time", loss), "loss_test": ("time", 2 * loss)}, coords={"time": TIMES},
                    attrs={"config": CONFIG})
    ds.attrs.update(attrs)
    return ds


def runs(with_test: bool = False) -> xr.Dataset:
    c = 0.1 / np.sqrt(WIDTHS)
    offset = c[:, None, None] * (1 + 0.1 * np.arange(2))[None, :, None] * TIMES[None, None, :]
    lim = 0.5 * np.exp(-TIMES)
    data = {"loss_train": (("width", "replica", "time"), lim + offset)}
    if with_test:   # the test loss is off by ten times more: the comparison then uses it
        data["loss_test"] = (("width", "replica", "time"), 2 * lim + 10 * offset)
    return xr.Dataset(data, coords={"width": WIDTHS, "replica": [0, 1], "time": TIMES},
                      attrs={"format": "mfpde-runs", "config": CONFIG})


def compared(lim, ens=None):
    said = []
    res = compare.compare(lim, runs() if ens is None else ens, limit_name="lim.nc", warn=said.append)
    return res, said


def test_the_hand_built_width_errors_are_what_the_guard_compares_with():
    res, said = compared(limit(error_estimate_loss=0.0, error_estimate_status="ok"))
    np.testing.assert_allclose(res["loss_error_mean"].values, 1.05 * 0.1 / np.sqrt(WIDTHS), rtol=1e-12)
    assert said == []   # same config, matching times, 3 widths, estimate 0: nothing to say


@pytest.mark.parametrize("factor", [1.01, 2.0, 100.0])
def test_an_estimate_above_a_tenth_of_the_smallest_width_error_warns_naming_both(factor):
    est = factor * THRESHOLD
    res, said = compared(limit(error_estimate_loss=est, error_estimate_status="ok"))
    assert len(said) == 1, said
    line = said[0]
    assert "the comparison then measures the solver, not the width" in line
    assert f"{est:.3g} (error_estimate_loss)" in line and f"{SMALLEST:.3g}" in line and "width 256" in line, line
    assert f"below {THRESHOLD:.2g}" in line and "--accuracy" in line and "'lim.nc'" in line, line
    assert res.attrs["limit_error_estimate_loss"] == est


@pytest.mark.parametrize("factor", [0.0, 0.5, 0.99])
def test_an_estimate_below_a_tenth_of_the_smallest_width_error_is_silent(factor):
    res, said = compared(limit(error_estimate_loss=factor * THRESHOLD, error_estimate_status="ok"))
    assert said == [] and res.attrs["limit_error_estimate_loss"] == factor * THRESHOLD


def test_a_reference_estimate_without_status_counts():
    # the stored references carry error_estimate_loss from a refinement study, without a status
    res, said = compared(limit(error_estimate_loss=np.float64(3 * THRESHOLD)))
    assert len(said) == 1 and "not the width" in said[0] and res.attrs["limit_error_estimate_loss"] == 3 * THRESHOLD


@pytest.mark.parametrize("attrs, fragment", [
    ({}, "carries no error estimate (no error_estimate_loss attribute"),
    ({"error_estimate_status": "off", "error_estimate_loss": math.nan}, "was switched off when it was solved"),
    ({"error_estimate_status": "unavailable: the companion solve diverged", "error_estimate_loss": math.nan},
     "is unavailable (the companion solve diverged)"),
    ({"error_estimate_status": "ok", "error_estimate_loss": math.nan}, "error_estimate_loss is nan, not a finite"),
    ({"error_estimate_loss": -1.0}, "error_estimate_loss is -1.0, not a finite number >= 0"),
    # an estimate with a status other than ok is not used, however small
    ({"error_estimate_status": "off", "error_estimate_loss": 0.0}, "was switched off"),
])
def test_a_missing_or_unusable_estimate_is_said_once_and_recorded_as_nan(attrs, fragment):
    res, said = compared(limit(**attrs))
    assert len(said) == 1 and fragment in said[0], said
    assert said[0].startswith("the limit 'lim.nc': ") and "cannot tell whether" in said[0]
    assert "not the width" not in said[0]
    assert math.isnan(res.attrs["limit_error_estimate_loss"])


def test_with_a_test_loss_the_widths_are_compared_on_it_and_the_warning_says_so():
    # loss_test errors are 10× the train ones: smallest 10·SMALLEST; 2·THRESHOLD is below a tenth of it
    ens = runs(with_test=True)
    res, said = compared(limit(error_estimate_loss=2 * THRESHOLD, error_estimate_status="ok"), ens)
    assert res.attrs["loss"] == "loss_test" and said == []
    est = 20 * THRESHOLD
    res, said = compared(limit(error_estimate_loss=est, error_estimate_status="ok"), ens)
    assert len(said) == 1 and f"{est:.3g}" in said[0] and f"{10 * SMALLEST:.3g}" in said[0], said
    assert "of loss_train; the widths are compared on loss_test" in said[0]


def test_the_cli_prints_the_warning_and_writes_the_attribute(tmp_path, capsys):
    from mfpde.cli import main
    from mfpde.store import netcdf as io
    from tiny import tiny_toml

    (tmp_path / "t.toml").write_text(tiny_toml("guard", widths=[4, 6, 8], replicas=2))
    with np.errstate(all="ignore"):
        assert main(["solve", str(tmp_path / "t.toml"), "-o", str(tmp_path / "lim.nc"), "-q"]) == 0
        assert main(["sgd", str(tmp_path / "t.toml"), "-o", str(tmp_path / "runs.h5"), "-q"]) == 0
    solved = io.read(tmp_path / "lim.nc")
    for k in [k for k in solved.attrs if k.startswith("error_estimate")]:
        del solved.attrs[k]   # as an older file
    io.write(solved, tmp_path / "old.nc")
    io.write(solved.assign_attrs(error_estimate_loss=1.0, error_estimate_status="ok"), tmp_path / "bad.nc")
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "old.nc"), str(tmp_path / "runs.h5"), "-o", str(tmp_path / "c1.nc")]) == 0
    err = [ln for ln in capsys.readouterr().err.splitlines() if "estimate" in ln]
    assert len(err) == 1 and err[0].startswith("mfpde: warning: the limit ") and "no error estimate" in err[0], err
    assert math.isnan(io.read(tmp_path / "c1.nc").attrs["limit_error_estimate_loss"])
    assert main(["compare", str(tmp_path / "bad.nc"), str(tmp_path / "runs.h5"), "-o", str(tmp_path / "c2.nc")]) == 0
    err = [ln for ln in capsys.readouterr().err.splitlines() if "estimate" in ln]
    c2 = io.read(tmp_path / "c2.nc")
    smallest = float(np.nanmin(c2["loss_error_mean"].values))
    assert smallest < 10.0   # a loss error of the tiny problem is far below 1/ESTIMATE_FRACTION
    assert len(err) == 1 and "1 (error_estimate_loss)" in err[0] and f"{smallest:.3g}" in err[0], err
    assert c2.attrs["limit_error_estimate_loss"] == 1.0

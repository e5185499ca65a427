"""`mfpde plot` (issue 18, item 3): each figure kind from each input kind, in png/pdf/svg;
labels from long_name; the limit drawn on top; one error line for a bad input or no matplotlib."""
from __future__ import annotations

import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from mfpde.analysis import compare, plot
from mfpde.cli import main
from mfpde.store import netcdf as io
from tiny import tiny_toml

TINY = tiny_toml("plot test", probes=5, t_end=0.3, widths=[4, 6, 8])   # tests/tiny.py
SWEEP = """
name = "plot sweep"
base = "tiny.toml"
task = "sgd"
[[axis]]
key = "sgd.widths"
values = [[4], [6]]
[[axis]]
key = "sgd.lr"
values = [0.05, 0.1]
"""
SOLVE_SWEEP = """
name = "plot solve sweep"
base = "tiny.toml"
task = "solve"
[[axis]]
key = "model.hidden"
name = "activation"
values = [["tanh", "tanh"], ["softplus", "tanh"]]
"""
SIGNATURES = {"png": b"\x89PNG", "pdf": b"%PDF", "svg": b"<?xml"}


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("mfpde: error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("plot")
    (d / "tiny.toml").write_text(TINY)
    out = {k: d / f for k, f in (("limit", "limit.nc"), ("runs", "runs.h5"), ("compare", "cmp.nc"))}
    with np.errstate(all="ignore"):
        assert main(["solve", str(d / "tiny.toml"), "-o", str(out["limit"]), "-q"]) == 0
        assert main(["sgd", str(d / "tiny.toml"), "-o", str(out["runs"]), "-q"]) == 0
        assert main(["compare", str(out["limit"]), str(out["runs"]), "-o", str(out["compare"])]) == 0
        from distributed import Client

        from mfpde import sweep

        (d / "sweep.toml").write_text(SWEEP)
        (d / "solve_sweep.toml").write_text(SOLVE_SWEEP)
        with Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=":0") as client:
            for name, sw in (("sweep", "sw"), ("solve_sweep", "ssw")):
                rep = sweep.run(sweep.load(d / f"{name}.toml"), d / sw, client=client, progress=False, say=lambda *a: None)
                assert rep.failed == 0
                assert main(["collect", str(d / sw)]) == 0
        out["collect"] = d / "sw" / "sweep.nc"
        out["collect_solve"] = d / "ssw" / "sweep.nc"
    return out


INPUTS = {   # input → the kinds it makes
    ("limit",): ("loss", "yhat", "laws"),
    ("runs",): ("loss", "yhat", "laws"),
    ("limit", "runs"): ("loss", "yhat", "laws"),
    ("collect",): ("loss", "yhat", "laws"),
    ("limit", "collect"): ("loss", "yhat", "laws"),
    ("collect_solve",): ("loss", "yhat", "laws"),
    ("compare",): ("error_width",),
}


@pytest.mark.parametrize("fmt", ["png", "pdf", "svg"])
@pytest.mark.parametrize("which", list(INPUTS), ids="+".join)
def test_each_kind_from_each_input_in_each_format(files, tmp_path, capsys, which, fmt):
    args = ["plot", *(str(files[w]) for w in which), "-o", str(tmp_path / "f"), "--format", fmt, "--dpi", "50"]
    assert main(args) == 0, capsys.readouterr().err
    made = sorted(p.name for p in (tmp_path / "f").iterdir())
    assert made == sorted(f"plot_{k}.{fmt}" for k in INPUTS[which])
    for name in made:
        assert (tmp_path / "f" / name).read_bytes()[:5].startswith(SIGNATURES[fmt]), name


def _lines(ax):
    return {ln.get_label(): ln for ln in ax.get_lines()}


def test_loss_figure_labels_from_long_name_limit_on_top_and_bands(files):
    limit, runs = plot.load(files["limit"]), plot.load(files["runs"])
    limit[0]["loss_train"].attrs.update(long_name="my loss", units="nats")
    fig = plot.figures([limit, runs], ["loss"])[0][1]
    ax = fig.axes[0]
    assert ax.get_ylabel() == "my loss [nats]"
    assert fig._suptitle.get_text().startswith("plot test")          # the problem name
    lines = _lines(ax)
    lim = lines["limit (n = ∞)"]
    assert all(lim.get_zorder() > ln.get_zorder() for k, ln in lines.items() if k.startswith("n = "))
    assert lim.get_linestyle() == "--" and lim.get_linewidth() < min(
        ln.get_linewidth() for k, ln in lines.items() if k.startswith("n = "))
    assert {k for k in lines if k.startswith("n = ")} == {f"n = {n} (2 replicas)" for n in (4, 6, 8)}
    # two bands per width (mean ± sem, min–max), the min–max one lighter and containing the mean
    assert len(ax.collections) == 6
    alphas = sorted({c.get_alpha() for c in ax.collections})
    assert alphas[0] < alphas[1]
    mean = lines["n = 4 (2 replicas)"].get_ydata()
    y = runs[0]["loss_train"].values[0]
    np.testing.assert_allclose(mean, y.mean(axis=0))                  # the replica mean
    np.testing.assert_allclose(lim.get_ydata(), limit[0]["loss_train"].values)


def test_a_collected_sweep_has_one_panel_per_point(files):
    fig = plot.figures([plot.load(files["collect"])], ["loss"])[0][1]
    assert [ax.get_title() for ax in fig.axes] == ["sgd.lr = 0.05", "sgd.lr = 0.1"]
    assert {ln.get_label() for ln in fig.axes[0].get_lines()} == {"n = 4 (2 replicas)", "n = 6 (2 replicas)"}
    fig = plot.figures([plot.load(files["collect_solve"])], ["loss"])[0][1]
    assert len(fig.axes) == 2 and all("limit (n = ∞)" in _lines(ax) for ax in fig.axes)
    assert "softplus" in fig.axes[1].get_title()


def test_error_width_figure_has_rate_ci_mathtext_and_a_tick_at_every_width(files):
    res = io.read(files["compare"])
    fig = plot.error_width_figure(res, "x")
    ax = fig.axes[0]
    fig.canvas.draw()
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks == ["4", "6", "8"]
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    r, lo, hi = (res.attrs[f"output_error_rate{s}"] for s in ("", "_ci_low", "_ci_high"))
    assert f"output error fit: rate {r:.2f}, 95% CI [{lo:.2f}, {hi:.2f}]" in labels
    assert any("$\\propto n^{-1/2}$" in t for t in labels)
    assert ax.get_xscale() == ax.get_yscale() == "log"
    # the fitted line has the fitted slope on log–log axes
    fit = next(ln for ln in ax.get_lines() if ln.get_label().startswith("output error fit: rate"))
    x, y = np.log(fit.get_xdata()), np.log(fit.get_ydata())
    assert np.polyfit(x, y, 1)[0] == pytest.approx(-r)


def test_error_width_with_two_widths_says_no_ci(files):
    res = io.read(files["compare"]).isel(width=[0, 1])
    res.attrs.update(output_error_rate=0.4, output_error_rate_ci_low=np.nan, output_error_rate_ci_high=np.nan)
    labels = [t.get_text() for t in plot.error_width_figure(res).legends[0].get_texts()]
    assert "output error fit: rate 0.40, no CI with < 3 widths" in labels


def test_yhat_figure_draws_the_target_and_the_limit_at_the_probes(files):
    limit = plot.load(files["limit"])
    fig = plot.figures([limit], ["yhat"])[0][1]
    lines = _lines(fig.axes[0])
    x = limit[0]["probe_x"].values[:, 0]
    np.testing.assert_allclose(lines["target y = f*(x)"].get_ydata(), np.tanh(x))   # single_index_tanh teacher
    np.testing.assert_allclose(lines["limit (n = ∞)"].get_ydata(), limit[0]["yhat_probe"].values[-1, :, 0])
    assert fig.axes[0].get_xlabel() == "probe input x"


def test_laws_figure_uses_the_rule_weighted_quantiles_and_the_runs_levels(files):
    limit, runs = plot.load(files["limit"]), plot.load(files["runs"])
    fig = plot.figures([limit, runs], ["laws"])[0][1]
    assert [ax.get_title() for ax in fig.axes] == ["law of w_1", "law of W_2", "law of v"]
    lim = _lines(fig.axes[0])["limit (rule-weighted)"]
    np.testing.assert_allclose(lim.get_ydata(), limit[0]["law_w_1"].values[-1])
    from mfpde.system.laws import weighted_quantiles

    w1 = limit[0]["w_1"].values[-1, :, 0]
    np.testing.assert_allclose(lim.get_ydata(), weighted_quantiles(w1, limit[0]["node_1_weight"].values,
                                                                   limit[0]["quantile"].values))


def test_compare_plot_writes_the_same_figures(files, tmp_path):
    res = io.read(files["compare"])
    out = compare.plot(res, plot.load(files["limit"])[0], plot.load(files["runs"])[0], tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(compare.FIGURES) == sorted(p.split("/")[-1] for p in out)


@pytest.mark.parametrize("args, fragment", [
    (["{cfg}"], "cannot read"),
    (["{limit}", "{compare}"], "a comparison is plotted alone"),
    (["{runs}", "{runs}"], "cannot plot a run store together with a run store"),
    (["{compare}", "--kind", "loss"], "--kind loss cannot be drawn from a comparison"),
    (["{limit}", "--dpi", "0"], "--dpi"),
    (["{missing}"], "does not exist"),
])
def test_a_bad_input_is_one_error_line(files, tmp_path, capsys, args, fragment):
    names = {k: str(v) for k, v in files.items()}
    names.update(cfg=str(files["limit"].parent / "tiny.toml"), missing=str(tmp_path / "nope.nc"))
    assert main(["plot", *(a.format(**names) for a in args), "-o", str(tmp_path / "f")]) == 2
    captured = capsys.readouterr()
    assert fragment in one_error_line(captured.err)
    assert captured.out == ""


def test_a_bare_limit_gets_the_kinds_it_has_data_for(tmp_path, capsys):
    cfg = tmp_path / "bare.toml"
    cfg.write_text(TINY.replace(TINY[TINY.index("[probes]"):TINY.index("[solver]")], "")
                   + '[output]\nparameters = "none"\n')
    with np.errstate(all="ignore"):
        assert main(["solve", str(cfg), "-o", str(tmp_path / "bare.nc"), "-q"]) == 0
    assert main(["plot", str(tmp_path / "bare.nc"), "-o", str(tmp_path / "f")]) == 0
    assert [p.name for p in (tmp_path / "f").iterdir()] == ["plot_loss.png"]
    capsys.readouterr()
    for kind, fragment in (("laws", "no weight laws"), ("yhat", "add a [probes] table")):
        assert main(["plot", str(tmp_path / "bare.nc"), "-o", str(tmp_path / "g"), "--kind", kind]) == 2
        assert fragment in one_error_line(capsys.readouterr().err)


def test_the_command_line_offers_every_kind_and_format():
    from mfpde.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command").choices["plot"]
    opts = {a.dest: a for a in sub._actions}
    assert tuple(opts["kind"].choices) == plot.KINDS and tuple(opts["format"].choices) == plot.FORMATS


def test_without_matplotlib_one_error_line_naming_the_extra(files, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)     # import matplotlib raises ImportError
    assert main(["plot", str(files["limit"]), "-o", str(tmp_path / "f")]) == 2
    assert "mfpde[plot]" in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "f").exists()


CLASSES = """
name = "plot classes"
[model]
input_dim = 2
hidden = ["tanh", "tanh"]
loss = "logistic"
[rules]
layer_1 = { kind = "gaussian_trapezoid", size = [4, 4] }
layer_2 = { kind = "gaussian_trapezoid", size = 6 }
[data.train]
kind = "gaussian_classes"
d = 2
rule = { kind = "gauss_hermite", size = 4, dim = 2 }
[probes]
kind = "grid"
low = -2.0
high = 2.0
size = 3
[solver]
stepper = "rk4"
dt = 0.05
t_end = 0.2
save_every = 0.1
"""


@pytest.fixture(scope="module")
def classes(tmp_path_factory):
    d = tmp_path_factory.mktemp("classes")
    (d / "c.toml").write_text(CLASSES)
    with np.errstate(all="ignore"):
        assert main(["solve", str(d / "c.toml"), "-o", str(d / "c.nc"), "-q"]) == 0
    return plot.load(d / "c.nc")


def test_classification_loss_adds_the_error_panel(classes, files):
    fig = plot.figures([classes], ["loss"])[0][1]
    assert [ax.get_ylabel() for ax in fig.axes] == [classes[0]["loss_train"].attrs["long_name"],
                                                    classes[0]["error_train"].attrs["long_name"]]
    assert "classification error" in fig._suptitle.get_text()
    assert len(plot.figures([plot.load(files["limit"])], ["loss"])[0][1].axes) == 1   # squared loss: no error panel


def test_yhat_in_d_2_is_drawn_against_the_first_coordinate_and_says_so(classes):
    ax = plot.figures([classes], ["yhat"])[0][1].axes[0]
    assert "first coordinate" in ax.get_xlabel() and "d = 2" in ax.get_xlabel()
    lim = _lines(ax)["limit (n = ∞)"]
    x = classes[0]["probe_x"].values
    order = np.argsort(x[:, 0], kind="stable")
    np.testing.assert_allclose(lim.get_xdata(), x[order, 0])
    np.testing.assert_allclose(lim.get_ydata(), classes[0]["yhat_probe"].values[-1, order, 0])
    assert lim.get_linestyle() == "None"           # points, not a line through unrelated probes
    assert "target y = f*(x)" not in _lines(ax)     # a class law has no teacher curve


IID = """
name = "plot iid"
[model]
input_dim = 1
hidden = ["tanh", "tanh"]
[iid]
rule = { kind = "gaussian_trapezoid", size = 8 }
w_1 = { law = "normal", mean = 0.0, std = 1.0 }
v = { law = "normal", mean = 0.0, std = 1.0 }
W = [{ mean = 0.0, std = 1.0 }]
[data.train]
kind = "teacher"
d = 1
teacher = { kind = "single_index_tanh", direction = [1.0] }
rule = { kind = "gauss_hermite", size = 6 }
[solver]
stepper = "rk4"
dt = 0.05
t_end = 0.1
save_every = 0.1
[sgd]
widths = [4]
replicas = 1
"""


def test_iid_laws_say_the_limit_draws_the_noise_free_middle_weight(tmp_path):
    (tmp_path / "iid.toml").write_text(IID)
    with np.errstate(all="ignore"):
        assert main(["solve", str(tmp_path / "iid.toml"), "-o", str(tmp_path / "l.nc"), "-q"]) == 0
        assert main(["sgd", str(tmp_path / "iid.toml"), "-o", str(tmp_path / "r.h5"), "-q"]) == 0
    fig = plot.figures([plot.load(tmp_path / "l.nc"), plot.load(tmp_path / "r.h5")], ["laws"])[0][1]
    titles = [ax.get_title().replace("\n", " ") for ax in fig.axes]
    assert titles[0] == "law of w_1" and "W̄_2 (the mean" in titles[1] and "i.i.d. noise" in titles[1]
    fig = plot.figures([plot.load(tmp_path / "l.nc")], ["laws"])[0][1]        # the limit alone: nothing to explain
    assert fig.axes[1].get_title() == "law of W_2"

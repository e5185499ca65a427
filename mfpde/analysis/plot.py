"""Figures of mfpde outputs (Analysis room): ``mfpde plot`` and ``mfpde compare --plot``.

Inputs are the datasets mfpde writes: a limit solution (``mfpde solve``), a run store
(``mfpde sgd``, via :func:`mfpde.store.runs.read`), a comparison (``mfpde compare -o``) and a
collected sweep (``mfpde collect``).  :func:`panels` turns one or two of them into *panels*
(one per sweep point; a limit drawn in every panel), and the figure functions draw them:

* :func:`loss_figure` — the loss (and, for classification losses, the classification error)
  against t: per width the replica mean, a mean ± sem band and a lighter min–max band; the limit
  dashed, thin, on top (it never hides a width line);
* :func:`error_width_figure` — a comparison's errors against n, log–log, with the fitted rate and
  its CI in the legend, an ``n^{-1/2}`` guide and a tick at every width;
* :func:`yhat_figure` — ŷ against x at the probes, with the teacher's target (d > 1: against
  the first coordinate, which the label says);
* :func:`laws_figure` — the quantile functions of w_1, W_2, v at the last time: the limit's
  rule-weighted quantiles against the networks' stored ones (mean over replicas, min–max bars).

Axis labels come from ``long_name``/``units``, the title from the problem name, colours from
the Okabe–Ito palette.  Figures are written by :func:`mfpde.analysis.compare._save` (in memory,
then atomically).  Imports numpy, matplotlib (lazily, through
:func:`~mfpde.analysis.compare.require_plotting`), mfpde.store and mfpde.problem.data.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mfpde.errors import DataError, MfpdeError, StoreError

#: figure kinds and file formats (``mfpde plot --kind``, ``--format``); file name ``plot_<kind>.<format>``
KINDS = ("loss", "error_width", "yhat", "laws")
FORMATS = ("png", "pdf", "svg")
#: Okabe & Ito (2008), without black (the limit's colour) and yellow (unreadable on white)
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442")
STYLES = ("-", "-.", ":", (0, (5, 1, 1, 1, 1, 1)))
MARKERS = ("o", "s", "^", "D", "v", "P")
LIMIT_STYLE = {"color": "black", "ls": (0, (4, 2)), "lw": 1.2, "zorder": 10}
CLASSIFICATION_LOSSES = ("logistic", "softmax_ce")
WEIGHTS = ("w_1", "W_2", "v")
MAX_PANELS = 12
_WHAT = {"limit": "a limit solution", "runs": "a run store", "compare": "a comparison", "collect": "a collected sweep"}
_RESULT_DIMS = ("width", "replica", "time", "probe", "output", "quantile", "singular_value", "input_dim")


@dataclass
class Panel:
    """What one panel shows: a limit (dims time, …) and/or runs (dims width, replica, time, …)."""
    label: str
    limit: object = None
    runs: object = None


# ----------------------------------------------------------------------------- inputs
def kind_of(ds) -> str:
    """"limit", "runs", "compare" or "collect" — or a StoreError naming what is wrong."""
    a = ds.attrs
    title = str(a.get("title", ""))
    if a.get("format") == "mfpde-runs":
        return "runs"
    if "expected_rate" in a or title.startswith("mfpde comparison"):
        return "compare"
    if title.startswith("mfpde sweep:") or "sweep_axes" in a:
        return "collect"
    if "time" in ds.coords and "loss_train" in ds.data_vars and tuple(ds["loss_train"].dims) == ("time",):
        return "limit"
    raise StoreError("not a limit solution, run store, comparison or collected sweep of mfpde "
                     "(mfpde solve, sgd, compare -o, collect)")


def load(path):
    """The dataset of an mfpde output file and its kind (:func:`kind_of`); one-line errors."""
    from pathlib import Path

    from mfpde.store import netcdf, paths, runs

    p = Path(path)
    if not p.is_file():
        raise StoreError(f"{str(path)!r} does not exist or is not a file")
    ds = runs.read(p) if paths.sniff(p) == "runs" else netcdf.read(p)
    try:
        return ds, kind_of(ds)
    except StoreError as exc:
        raise StoreError(f"{str(path)!r} is {exc}") from None


def _config(ds) -> dict:
    import tomllib

    for key in ("config", "base_config"):
        try:
            return tomllib.loads(str(ds.attrs[key]))
        except (KeyError, ValueError):
            continue
    return {}


def problem_name(*datasets) -> str:
    for ds in datasets:
        if ds is None:
            continue
        if ds.attrs.get("problem"):
            return str(ds.attrs["problem"])
        for prefix in ("mfpde mean-field limit solution: ", "mfpde sweep: "):
            if str(ds.attrs.get("title", "")).startswith(prefix):
                return str(ds.attrs["title"])[len(prefix):]
        if _config(ds).get("name"):
            return str(_config(ds)["name"])
    return ""


def _loss_name(*datasets) -> str:
    for ds in datasets:
        if ds is not None and ds.attrs.get("model_loss"):
            return str(ds.attrs["model_loss"])
        if ds is not None and _config(ds):
            return str(_config(ds).get("model", {}).get("loss", "squared"))
    return "squared"


def _points(ds):
    """A collected sweep split at its sweep dimensions: [(label, dataset of one point)]."""
    extra = [d for d in ds["loss_train"].dims if d not in _RESULT_DIMS]
    if not extra:
        return [("", ds)]
    stacked = ds.stack(_point=extra) if len(extra) > 1 else ds.rename({extra[0]: "_point"}).assign_coords(
        _point=ds[extra[0]].values if extra[0] in ds.coords else np.arange(ds.sizes[extra[0]]))
    n = stacked.sizes["_point"]
    if n > MAX_PANELS:
        raise DataError(f"the sweep has {n} points ({' × '.join(extra)}): more than {MAX_PANELS} panels; "
                        f"select some with xarray (ds.sel(...)) and plot those")
    out = []
    for i in range(n):
        one = stacked.isel(_point=i)
        vals = one["_point"].values.item() if hasattr(one["_point"].values, "item") else one["_point"].values
        vals = vals if isinstance(vals, tuple) else (vals,)
        label = ", ".join(f"{k} = {_short(v)}" for k, v in zip(extra, vals))
        out.append((label, one.drop_vars([c for c in one.coords if "_point" in one[c].dims or c in extra or c == "_point"],
                                         errors="ignore")))
    return out


def _short(v) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{float(v):g}"
    return str(v)


def panels(inputs) -> list[Panel]:
    """Panels of one or two loaded inputs [(ds, kind)]: a limit, runs, a collected sweep, or a limit
    with runs or a sweep (either order).  A comparison makes no panels (see :func:`error_width_figure`)."""
    kinds = [k for _, k in inputs]
    if len(inputs) == 2 and sorted(kinds) not in (["limit", "runs"], ["collect", "limit"]):
        raise DataError(f"cannot plot {_WHAT[kinds[0]]} together with {_WHAT[kinds[1]]}: two files are a limit "
                        f"solution and a run store or collected sweep of the same problem")
    limit = next((ds for ds, k in inputs if k == "limit"), None)
    other = next((ds for ds, k in inputs if k != "limit"), None)
    if other is None:
        return [Panel("", limit=limit)]
    if kinds.count("collect"):
        pts = _points(other)
        if "width" in other.dims:
            return [Panel(lab, limit=limit, runs=ds) for lab, ds in pts]
        if limit is not None:
            raise DataError("a collected sweep of limit solutions is plotted alone, not with a limit")
        return [Panel(lab, limit=ds) for lab, ds in pts]
    return [Panel("", limit=limit, runs=other)]


# ----------------------------------------------------------------------------- style
def label(da, fallback: str | None = None, width: int = 40) -> str:
    """An axis label from a variable's ``long_name`` and ``units`` (dimensionless "1" not shown)."""
    name = da.attrs.get("long_name") or fallback or da.name
    units = str(da.attrs.get("units", "")).strip()
    text = f"{name} [{units}]" if units and units != "1" else str(name)
    return _wrap(text, width)


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width)) if width else text


def _pyplot():
    from mfpde.analysis import compare

    compare.require_plotting()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _style(i: int) -> dict:
    return {"color": PALETTE[i % len(PALETTE)], "ls": STYLES[i % len(STYLES)], "lw": 1.6}


def _title(fig, name: str, what: str) -> None:
    text = f"{name}: {what}" if name else what
    if len(text) * 6.5 > fig.get_figwidth() * 72:      # 11 pt text: ~6.5 pt a character
        text = f"{name}\n{what}" if name else what
    fig.suptitle(text, fontsize=11)


def _grid(plt, n_rows: int, n_cols: int, w: float = 4.6, h: float = 3.4):
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(w * n_cols, h * n_rows), squeeze=False, layout="constrained")
    return fig, axes


def _legend(fig, axes) -> None:
    """One legend for the figure (below the panels) from the first panel that has entries."""
    seen = {}
    for ax in np.ravel(axes):
        for h, lab in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(lab, h)
    if seen and np.size(axes) == 1:
        np.ravel(axes)[0].legend(list(seen.values()), list(seen), fontsize=8, loc="best", framealpha=0.85)
    elif seen:
        longest = max(len(k) for k in seen)
        per_row = max(1, int(fig.get_figwidth() * 72 / (6.5 * longest + 40)))   # 9 pt text: ~6.5 pt a character
        fig.legend(list(seen.values()), list(seen), loc="outside lower center", ncol=min(len(seen), per_row),
                   fontsize=9, frameon=False)


def _widths(runs):
    return [int(n) for n in runs["width"].values]


# ----------------------------------------------------------------------------- figures
def _loss_var(ps: list[Panel]) -> str:
    have = [p.limit for p in ps if p.limit is not None] + [p.runs for p in ps if p.runs is not None]
    return "loss_test" if all("loss_test" in ds.data_vars for ds in have) else "loss_train"


def loss_figure(ps: list[Panel], name: str = ""):
    """Loss (and classification error) against t: limit and width ensembles with replica bands."""
    plt = _pyplot()
    loss = _loss_var(ps)
    datasets = [d for p in ps for d in (p.limit, p.runs) if d is not None]
    rows = [loss]
    err = loss.replace("loss", "error")
    if _loss_name(*datasets) in CLASSIFICATION_LOSSES and all(err in d.data_vars for d in datasets):
        rows.append(err)
    fig, axes = _grid(plt, len(rows), len(ps))
    for j, p in enumerate(ps):
        for i, var in enumerate(rows):
            ax = axes[i, j]
            positive = True
            if p.runs is not None:
                t = p.runs["time"].values
                for k, n in enumerate(_widths(p.runs)):
                    y = np.asarray(p.runs[var].values[k], float)      # [replica, time]
                    ok = np.isfinite(y)
                    cnt = ok.sum(axis=0)
                    with np.errstate(all="ignore"):
                        mean = np.nanmean(y, axis=0)
                        sem = np.nanstd(y, axis=0, ddof=1) / np.sqrt(cnt) if y.shape[0] > 1 else 0 * mean
                        lo, hi = np.nanmin(y, axis=0), np.nanmax(y, axis=0)
                    st = _style(k)
                    ax.fill_between(t, lo, hi, color=st["color"], alpha=0.12, lw=0)
                    ax.fill_between(t, mean - sem, mean + sem, color=st["color"], alpha=0.3, lw=0)
                    ax.plot(t, mean, label=f"n = {n}" + (f" ({y.shape[0]} replicas)" if y.shape[0] > 1 else ""), **st)
                    positive &= bool(np.all(lo[np.isfinite(lo)] > 0))
            if p.limit is not None and var in p.limit:
                y = p.limit[var].values
                ax.plot(p.limit["time"].values, y, label="limit (n = ∞)", **LIMIT_STYLE)
                positive &= bool(np.all(y[np.isfinite(y)] > 0))
            src = p.limit if p.limit is not None else p.runs
            if i == len(rows) - 1:                       # one time label, under the last row
                ax.set_xlabel(label(src["time"], "t", width=48))
            ax.set_ylabel(label(src[var]))
            if positive and var.startswith("loss"):
                ax.set_yscale("log")
            if p.label:
                ax.set_title(p.label, fontsize=10)
            ax.grid(alpha=0.3, which="both", lw=0.5)
    _legend(fig, axes)
    _title(fig, name, "loss" + (" and classification error" if len(rows) > 1 else "") + " against training time")
    return fig


def _rate_text(a, key: str) -> str:
    r, lo, hi = (a.get(f"{key}_rate", math.nan), a.get(f"{key}_rate_ci_low", math.nan), a.get(f"{key}_rate_ci_high", math.nan))
    r, lo, hi = (float(v) for v in (r, lo, hi))
    if not math.isfinite(r):
        return "rate: needs 2 widths"
    ci = f"95% CI [{lo:.2f}, {hi:.2f}]" if math.isfinite(lo) and math.isfinite(hi) else "no CI with < 3 widths"
    return f"rate {r:.2f}, {ci}"


def error_width_figure(result, name: str = ""):
    """Errors of a comparison against the width, log–log, fitted rates and the n^{-1/2} guide."""
    plt = _pyplot()
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    keys = [k for k in ("output_error", "loss_error", "coupling_error") if f"{k}_mean" in result]
    if not keys:
        raise DataError("the comparison has no *_error_mean variables to plot")
    n = result["width"].values.astype(float)
    fig, ax = plt.subplots(figsize=(5.6, 5.2), layout="constrained")
    refs = []
    for i, k in enumerate(keys):
        mean = result[f"{k}_mean"].values.astype(float)
        sem = result[f"{k}_sem"].values.astype(float) if f"{k}_sem" in result else np.zeros_like(mean)
        st = _style(i)
        lab = k.replace("_", " ")
        ax.errorbar(n, mean, yerr=np.where(np.isfinite(sem), sem, 0), marker=MARKERS[i], capsize=3, ls="none",
                    color=st["color"], label=f"{lab}: replica mean ± sem")
        r = float(result.attrs.get(f"{k}_rate", math.nan))
        ok = np.isfinite(mean) & (mean > 0)
        if math.isfinite(r) and ok.sum() >= 2:
            c = np.exp(np.mean(np.log(mean[ok]) + r * np.log(n[ok])))
            ax.plot(n, c * n ** -r, color=st["color"], ls=st["ls"], lw=1.2, label=f"{lab} fit: {_rate_text(result.attrs, k)}")
        if ok.any():
            refs.append(mean[ok][0] * np.sqrt(n[ok][0]))
    if refs:
        ax.plot(n, refs[0] / np.sqrt(n), color="0.4", ls=":", lw=1.2, label=r"$\propto n^{-1/2}$ (theory)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(FixedLocator(n))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel(label(result["width"], "width n") if result["width"].attrs.get("long_name") else "width n")
    ax.set_ylabel("sup over time of the error")
    ax.grid(alpha=0.3, which="both", lw=0.5)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=1, fontsize=8, frameon=False)
    _title(fig, name, "error against width")
    return fig


def _target(ds, x: np.ndarray):
    """The teacher's y at the probes, from the stored config (None: not a teacher law)."""
    from mfpde.problem import data

    spec = _config(ds).get("data", {}).get("train", {})
    if not isinstance(spec, dict) or spec.get("kind") != "teacher":
        return None
    try:
        return np.asarray(data.make_law(spec, "data.train").teacher(x), float)
    except (MfpdeError, ValueError, TypeError):
        return None


def yhat_figure(ps: list[Panel], name: str = ""):
    """ŷ at the probes at the last time against x (d > 1: the first coordinate), with the target."""
    from mfpde.analysis.compare import _probe_points

    plt = _pyplot()
    have = [d for p in ps for d in (p.limit, p.runs) if d is not None]
    if not all("yhat_probe" in d.data_vars for d in have):
        raise DataError("no ŷ at probe points (yhat_probe) to plot: add a [probes] table to the configuration")
    K = have[0]["yhat_probe"].shape[-1]
    fig, axes = _grid(plt, K, len(ps))
    for j, p in enumerate(ps):
        src = p.limit if p.limit is not None else p.runs
        x = _probe_points(src, "the input")
        d = x.shape[1]
        order = np.argsort(x[:, 0], kind="stable")
        x1 = x[order, 0]
        draw = (lambda ax, y, **kw: ax.plot(x1, y[order], **kw)) if d == 1 else \
            (lambda ax, y, **kw: ax.plot(x1, y[order], marker=kw.pop("marker", "o"), ms=3, **{**kw, "ls": "none"}))
        tgt = _target(src, x)
        for k in range(K):
            ax = axes[k, j]
            if tgt is not None:
                ax.plot(x1, tgt[order, k], color="0.6", lw=4, alpha=0.6, label="target y = f*(x)",
                        **({} if d == 1 else {"marker": "_", "ls": "none", "ms": 10}))
            if p.runs is not None:
                for i, n in enumerate(_widths(p.runs)):
                    y = np.asarray(p.runs["yhat_probe"].values[i, :, -1, :, k], float)   # [replica, probe]
                    st = _style(i)
                    if d > 1:
                        st.pop("ls")
                    with np.errstate(all="ignore"):
                        draw(ax, np.nanmean(y, axis=0), label=f"n = {n} (replica mean)", **st)
                        if y.shape[0] > 1 and d == 1:
                            ax.fill_between(x1, np.nanmin(y, axis=0)[order], np.nanmax(y, axis=0)[order],
                                            color=st["color"], alpha=0.12, lw=0)
            if p.limit is not None:
                st = dict(LIMIT_STYLE)
                if d > 1:
                    st = {"color": "black", "zorder": 10, "marker": "x"}
                draw(ax, p.limit["yhat_probe"].values[-1, :, k], label="limit (n = ∞)", **st)
            t = float(src["time"].values[-1])
            xl = "probe input x" if d == 1 else f"first coordinate x₁ of the probe inputs (d = {d}: the other coordinates vary too)"
            ax.set_xlabel(_wrap(xl, 48))
            yl = label(src["yhat_probe"], "network output ŷ", width=0)
            ax.set_ylabel(_wrap(f"{yl} at t = {t:g}" + (f", output {k}" if K > 1 else ""), 32))
            if p.label:
                ax.set_title(p.label, fontsize=10)
            ax.grid(alpha=0.3, lw=0.5)
    _legend(fig, axes)
    _title(fig, name, "network output at the probe points")
    return fig


#: the unlabelled levels of run stores written before the levels were shared with the limit
LEGACY_RUN_LEVELS = (0.05, 0.25, 0.5, 0.75, 0.95)


def _run_levels(runs, count: int) -> np.ndarray:
    if "quantile" in runs.coords:
        return np.asarray(runs["quantile"].values, float)
    from mfpde.system.laws import QUANTILES

    for levels in (QUANTILES, LEGACY_RUN_LEVELS):
        if len(levels) == count:
            return np.asarray(levels, float)
    raise DataError(f"the runs hold {count} unlabelled quantile levels: cannot tell which")


def _limit_levels(limit) -> np.ndarray:
    if "quantile" in limit.coords:
        return np.asarray(limit["quantile"].values, float)
    from mfpde.system.laws import QUANTILES

    return np.asarray(QUANTILES, float)


def _law(ds, w: str, runs: bool):
    for key in ((f"quantiles_{w}", f"law_{w}") if runs else (f"law_{w}", f"quantiles_{w}")):
        if key in ds.data_vars:
            return ds[key]
    return None


def laws_figure(ps: list[Panel], name: str = ""):
    """Quantile functions of w_1, W_2, v at the last time: limit (rule-weighted) against networks."""
    plt = _pyplot()
    weights = [w for w in WEIGHTS if any(_law(d, w, d is p.runs) is not None
                                         for p in ps for d in (p.limit, p.runs) if d is not None)]
    if not weights:
        raise DataError("no weight laws to plot: the limit was solved without parameters "
                        "(solve with output.parameters = \"all\" or \"final\") and there are no runs")
    fig, axes = _grid(plt, len(ps), len(weights), w=3.8, h=3.3)
    for j, p in enumerate(ps):
        for i, w in enumerate(weights):
            ax = axes[j, i]
            if p.runs is not None and (q := _law(p.runs, w, True)) is not None:
                levels = _run_levels(p.runs, q.shape[-1])
                for k, n in enumerate(_widths(p.runs)):
                    y = np.asarray(q.values[k, :, -1, :], float)       # [replica, quantile]
                    st = _style(k)
                    with np.errstate(all="ignore"):
                        m, lo, hi = np.nanmean(y, 0), np.nanmin(y, 0), np.nanmax(y, 0)
                    ax.errorbar(levels, m, yerr=[m - lo, hi - m], color=st["color"], ls=st["ls"], lw=1.2,
                                marker=MARKERS[k % len(MARKERS)], ms=4, capsize=2,
                                label=f"n = {n} (replica mean, min–max)")
            if p.limit is not None and (q := _law(p.limit, w, False)) is not None:
                tdim = q.dims[0]
                ax.plot(_limit_levels(p.limit), q.isel({tdim: -1}).values, label="limit (rule-weighted)",
                        marker="x", ms=5, **LIMIT_STYLE)
                if q.sizes[tdim] > 1:
                    ax.plot(_limit_levels(p.limit), q.isel({tdim: 0}).values, color="0.6", lw=1, ls=":",
                            label="limit at t = 0")
            src = p.runs if p.runs is not None else p.limit
            t = float(src["time"].values[-1])
            ax.set_xlabel("probability level")
            ax.set_ylabel(f"quantile of {w} at t = {t:g}")
            what = f"law of {w}"
            if w.startswith("W_") and p.limit is not None and p.runs is not None and "iid" in _config(p.limit):
                what = f"law of {w}: limit {w[0]}̄{w[1:]} (the mean, SPEC §4), networks with their i.i.d. noise"
            ax.set_title(_wrap((p.label + ": " if p.label else "") + what, 44), fontsize=10)
            ax.grid(alpha=0.3, lw=0.5)
    _legend(fig, axes)
    _title(fig, name, "laws of the weights at a random index")
    return fig


# ----------------------------------------------------------------------------- driver
def available(inputs) -> tuple[str, ...]:
    """The figure kinds the loaded inputs [(ds, kind)] have data for: ``yhat`` needs ŷ at the probes
    in every input, ``laws`` weight laws in one of them."""
    ks = [k for _, k in inputs]
    if ks == ["compare"]:
        return ("error_width",)
    dss = [ds for ds, _ in inputs]
    out = ["loss"]
    if all("yhat_probe" in ds.data_vars for ds in dss):
        out.append("yhat")
    if any(v.startswith(("law_", "quantiles_")) for ds in dss for v in ds.data_vars):
        out.append("laws")
    return tuple(out)


def figures(inputs, kinds=None) -> list[tuple[str, object]]:
    """(kind, figure) for every requested kind (default: every kind :func:`available` finds)."""
    ks = [k for _, k in inputs]
    if "compare" in ks and len(ks) > 1:
        raise DataError("a comparison is plotted alone (its errors against width)")
    possible = tuple(k for k in KINDS if (k == "error_width") == (ks == ["compare"]))
    kinds = list(kinds) if kinds else list(available(inputs))
    for k in kinds:
        if k not in possible:
            raise DataError(f"--kind {k} cannot be drawn from {' and '.join(_WHAT[x] for x in ks)} "
                            f"(possible: {', '.join(possible)})")
    name = problem_name(*(ds for ds, _ in inputs))
    if ks == ["compare"]:
        return [("error_width", error_width_figure(inputs[0][0], name))]
    ps = panels(inputs)
    make = {"loss": loss_figure, "yhat": yhat_figure, "laws": laws_figure}
    return [(k, make[k](ps, name)) for k in kinds]


def filename(kind: str, fmt: str) -> str:
    return f"plot_{kind}.{fmt}"


def write(figs, outdir, fmt: str = "png", dpi: int = 200) -> list[str]:
    """Write (kind, figure) pairs as ``OUTDIR/plot_<kind>.<fmt>`` atomically; return the paths."""
    from pathlib import Path

    from mfpde.analysis import compare

    plt = _pyplot()
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    files = []
    for kind, fig in figs:
        files.append(str(outdir / filename(kind, fmt)))
        compare._save(fig, files[-1], fmt=fmt, dpi=dpi)
        plt.close(fig)
    return files

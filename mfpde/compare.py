"""Limit versus finite width (Store room): errors per width, error × √n, fitted rate with a CI.

:func:`compare` takes a limit solution (``mfpde solve`` NetCDF, as a Dataset) and an
ensemble (``mfpde sgd`` HDF5, via :func:`mfpde.runs.read`) recorded at the same times and
returns an ``xarray.Dataset`` over ``width``: for every run the sup-over-time RMS output
error on the probes, sup_t sqrt(mean_probes Σ_k (ŷ_n − ŷ_∞)²), and the sup-over-time loss
error |𝓛_n − 𝓛_∞| (test loss when present); their replica means and standard errors;
mean × √n; and the least-squares rate r of log(error) = c − r log n with a 95 % confidence
interval (Student t).  SPEC §2: the expected rate is 1/2.  Imports numpy, scipy, xarray.
"""
from __future__ import annotations

import math

import numpy as np

from mfpde.errors import MfpdeError


def _aligned(limit, runs, name: str) -> np.ndarray:
    """The limit's variable at the runs' times (exact match within 1e-9, else linear interpolation)."""
    lt = limit["time"].values
    rt = runs["time"].values
    if rt.min() < lt.min() - 1e-9 or rt.max() > lt.max() + 1e-9:
        raise MfpdeError(f"the runs span t in [{rt.min():g}, {rt.max():g}] but the limit only [{lt.min():g}, {lt.max():g}]")
    idx = np.searchsorted(lt, rt - 1e-9)
    idx = np.clip(idx, 0, len(lt) - 1)
    if np.all(np.abs(lt[idx] - rt) <= 1e-9 * max(1.0, abs(lt[-1]))):
        return limit[name].values[idx]
    return limit[name].interp(time=rt).values


def fit_rate(n: np.ndarray, err: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Rate r in err ≈ C n^{−r} by least squares on logs, with a Student-t confidence interval."""
    from scipy import stats

    ok = np.isfinite(err) & (err > 0)
    x, y = np.log(n[ok]), np.log(err[ok])
    if len(x) < 2:
        return math.nan, math.nan, math.nan
    A = np.vstack([np.ones_like(x), x]).T
    coef, res, *_ = np.linalg.lstsq(A, y, rcond=None)
    r = -coef[1]
    if len(x) < 3:
        return r, math.nan, math.nan
    resid = y - A @ coef
    s2 = resid @ resid / (len(x) - 2)
    se = math.sqrt(s2 / np.sum((x - x.mean()) ** 2))
    q = stats.t.ppf(0.5 + level / 2, len(x) - 2)
    return r, r - q * se, r + q * se


def compare(limit, runs):
    """Errors of every run against the limit, per-width summaries and fitted rates."""
    import xarray as xr

    out = {}
    widths = runs["width"].values.astype(float)
    loss_name = "loss_test" if "loss_test" in runs and "loss_test" in limit else "loss_train"
    per_run = {}
    if "yhat_probe" in runs and "yhat_probe" in limit:
        lim = _aligned(limit, runs, "yhat_probe")                 # [T, P, K]
        diff = runs["yhat_probe"].values - lim[None, None]        # [W, R, T, P, K]
        rms = np.sqrt(np.mean(np.sum(diff**2, axis=-1), axis=-1))  # [W, R, T]
        per_run["output_error"] = np.nanmax(rms, axis=-1)
    blocks = [k for k in runs.data_vars if k.startswith("coupling_")]
    if blocks:   # per-weight coupling to the ideal particles (tracers), worst block
        per_run["coupling_error"] = np.nanmax(np.stack([runs[k].values for k in blocks]).max(axis=0), axis=-1)
    lim_loss = _aligned(limit, runs, loss_name)
    per_run["loss_error"] = np.nanmax(np.abs(runs[loss_name].values - lim_loss[None, None]), axis=-1)
    attrs = {"loss": loss_name, "expected_rate": 0.5}
    for key, e in per_run.items():
        out[key] = (("width", "replica"), e, {"long_name": f"sup over time of the {key.replace('_', ' ')} of each run"})
        cnt = np.sum(np.isfinite(e), axis=1)
        mean = np.nanmean(e, axis=1)
        sem = np.nanstd(e, axis=1, ddof=1) / np.sqrt(cnt) if e.shape[1] > 1 else np.full(len(mean), np.nan)
        out[f"{key}_mean"] = ("width", mean)
        out[f"{key}_sem"] = ("width", sem)
        out[f"{key}_sqrt_n"] = ("width", mean * np.sqrt(widths), {"long_name": "mean error × √n"})
        r, lo, hi = fit_rate(widths, mean)
        attrs[f"{key}_rate"] = r
        attrs[f"{key}_rate_ci_low"] = lo
        attrs[f"{key}_rate_ci_high"] = hi
    return xr.Dataset(out, coords={"width": runs["width"].values, "replica": runs["replica"].values}, attrs=attrs)


def table(result) -> str:
    """Terminal table of a :func:`compare` result."""
    keys = [k for k in ("output_error", "loss_error", "coupling_error") if f"{k}_mean" in result]
    head = f"{'width':>8}" + "".join(f"{k + ' mean':>20}{'± sem':>11}{'× √n':>11}" for k in keys)
    rows = [head]
    for i, n in enumerate(result["width"].values):
        row = f"{int(n):>8}"
        for k in keys:
            row += f"{result[f'{k}_mean'].values[i]:>20.4e}{result[f'{k}_sem'].values[i]:>11.2e}{result[f'{k}_sqrt_n'].values[i]:>11.3g}"
        rows.append(row)
    for k in keys:
        a = result.attrs
        rows.append(f"{k}: fitted rate {a[f'{k}_rate']:.3f}, 95% CI [{a[f'{k}_rate_ci_low']:.3f}, {a[f'{k}_rate_ci_high']:.3f}] (theory: 0.5)")
    return "\n".join(rows)


def plot(result, limit, runs, outdir) -> list[str]:
    """Figures (needs the ``plot`` extra): loss vs t across widths with the limit; error vs n."""
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    files = []
    loss = result.attrs["loss"]
    fig, ax = plt.subplots(figsize=(6, 4))
    t = runs["time"].values
    for i, n in enumerate(runs["width"].values):
        ax.plot(t, np.nanmean(runs[loss].values[i], axis=0), label=f"n = {int(n)}", alpha=0.8)
    ax.plot(limit["time"].values, limit[loss].values, "k--", lw=2, label="limit")
    ax.set_xlabel("t"), ax.set_ylabel(loss), ax.set_yscale("log"), ax.legend()
    fig.tight_layout()
    files.append(str(outdir / "loss_vs_time.png"))
    fig.savefig(files[-1], dpi=120)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 4))
    n = result["width"].values.astype(float)
    for k in ("output_error", "loss_error"):
        if f"{k}_mean" in result:
            ax.errorbar(n, result[f"{k}_mean"], yerr=result[f"{k}_sem"], marker="o", capsize=3,
                        label=f"{k} (rate {result.attrs[f'{k}_rate']:.2f})")
    ref = result["output_error_mean"].values if "output_error_mean" in result else result["loss_error_mean"].values
    ax.plot(n, ref[0] * np.sqrt(n[0] / n), "k:", label="n^{-1/2}")
    ax.set_xscale("log"), ax.set_yscale("log"), ax.set_xlabel("width n"), ax.set_ylabel("sup-time error"), ax.legend()
    fig.tight_layout()
    files.append(str(outdir / "error_vs_width.png"))
    fig.savefig(files[-1], dpi=120)
    plt.close(fig)
    return files

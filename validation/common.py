"""Shared machinery of the validation studies: limit solves, finite-width ensembles, rates,
pass/fail checks, the summary JSON and figure helpers.

A study module loads its configuration (``validation/configs/<name>.toml``, varied through
dotted overrides: :func:`load`), calls :func:`solve_limit` (NetCDF via
``mfpde.store.netcdf``) and :func:`ensemble` (HDF5 run store via ``mfpde.store.runs``), measures errors with
``mfpde.analysis.compare`` and records its pre-stated criteria with :meth:`Context.check`.  Nothing
here changes mfpde; it only calls its public API.  Imports numpy, mfpde, matplotlib (lazily).
"""
from __future__ import annotations

import copy
import json
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from mfpde.analysis import compare as cmp
from mfpde.problem import config as cfg_mod
from mfpde import checks, finite
from mfpde.store import netcdf as io
from mfpde.store import runs
from mfpde.errors import BlowUpError

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "validation" / "results"
CONFIGS = ROOT / "validation" / "configs"     # the studies' TOML, varied by load(name, overrides)
FIGURES = ROOT / "docs" / "figures"
BAND = (0.35, 0.65)        # accepted band for a rate whose theoretical value is 1/2


@dataclass
class Context:
    """Where a study writes, which sizes it uses, and the checks it has recorded."""

    name: str
    out: Path                      # the study's folder for large files (NetCDF, HDF5)
    figures: Path                  # PNG folder
    quick: bool
    say: Callable[..., None] = print
    checks: list[dict] = field(default_factory=list)
    tables: dict[str, Any] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def path(self, name: str) -> Path:
        self.out.mkdir(parents=True, exist_ok=True)
        return self.out / name

    def figure(self, name: str) -> Path:
        self.figures.mkdir(parents=True, exist_ok=True)
        p = self.figures / f"validation_{self.name}_{name}.png"
        self.files.append(str(p))
        return p

    def check(self, name: str, value: float, low: float | None, high: float | None, *, expected: str,
              ci: tuple[float, float] | None = None, slack: float = 0.0, note: str = "") -> bool:
        """Record a pre-stated criterion value ∈ [low − slack, high + slack] (slack only in quick mode)."""
        s = slack if self.quick else 0.0
        lo = -math.inf if low is None else low - s
        hi = math.inf if high is None else high + s
        ok = bool(np.isfinite(value) and lo <= value <= hi)
        self.checks.append({"name": name, "value": _f(value), "band": [_f(lo), _f(hi)], "expected": expected,
                            "ci95": None if ci is None else [_f(ci[0]), _f(ci[1])], "passed": ok, "note": note})
        ci_txt = "" if ci is None else f" (95% CI [{ci[0]:.3f}, {ci[1]:.3f}])"
        self.say(f"  [{'PASS' if ok else 'FAIL'}] {name} = {value:.4g}{ci_txt}, required in [{lo:.3g}, {hi:.3g}]; "
                 f"expected {expected}")
        return ok


def _f(x):
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else (None if math.isnan(x) else (1e308 if x > 0 else -1e308))


# ----------------------------------------------------------------------------- limit and runs
def load(name: str, overrides: Mapping[str, Any] | None = None, *, base: Path | None = None) -> cfg_mod.Config:
    """The study configuration ``validation/configs/<name>.toml`` with sweep-style dotted
    ``overrides`` applied (``{"solver.t_end": 1.0, "rules.default.size": 24}``, as the axes of
    ``mfpde sweep`` vary a base configuration), validated by :func:`mfpde.load`.  ``base``:
    folder for relative data paths (default: the configs folder)."""
    import mfpde

    path = CONFIGS / f"{name}.toml"
    raw = checks.parse_toml(cfg_mod.read_text(path), str(path))
    for key, value in (overrides or {}).items():
        override(raw, key, value)
    return mfpde.load(raw, base_dir=CONFIGS if base is None else base, source=str(path))


def override(raw: dict, key: str, value) -> None:
    """Set the dotted ``key`` of a raw configuration table to (a copy of) ``value``, in place.

    Every table on the way must exist already, so a misspelt override is a KeyError, not a new
    table; the key itself may be new (it is then the table's last key).
    """
    *path, leaf = key.split(".")
    cur = raw
    for depth, part in enumerate(path):
        if not isinstance(cur.get(part), dict):
            raise KeyError(f"override {key!r}: {'.'.join(path[:depth + 1])!r} is not a table of the study configuration")
        cur = cur[part]
    cur[leaf] = copy.deepcopy(value)


def solve_limit(c: cfg_mod.Config, out: Path, *, stepper: str, dt: float, t_end: float, save_every: float,
                parameters: str = "final"):
    """Solve the limit system (:func:`mfpde.solve` with these [solver] overrides), write it as NetCDF;
    returns (the Dataset read back, the Solution, the System)."""
    import mfpde

    sol = mfpde.solve(c, stepper=stepper, dt=dt, t_end=t_end, save_every=save_every, parameters=parameters,
                      progress=False)
    io.write(sol.to_xarray(), out)
    return io.read(out), sol, sol.system


def record_times(t_end: float, every: float) -> list[float]:
    k = int(round(t_end / every))
    return [i * every for i in range(k + 1)]


def ensemble(c: cfg_mod.Config, store: Path, widths, replicas: int, *, mode: str = "full", batch: int = 1,
             lr: float | Callable[[Any], float], t_end: float, every: float, law=None, statistics: bool = False,
             seed: Callable[[Any, int], np.random.SeedSequence] | None = None, say=print, append: bool = False,
             replica_offset: int = 0, fixed_nodes=None) -> Path:
    """Train every (width, replica) with mfpde.finite.train and write them to a fresh HDF5 run store.

    ``widths`` are ints or per-layer tuples; ``lr`` may depend on the width (ε = 1/N); ``seed``
    overrides the default per-run seed (used when the last-layer width repeats across runs);
    ``fixed_nodes`` = {layer: nodes} gives every network those features in that hidden layer
    (SS's sequential limit; :func:`mfpde.finite.network.network_problem`).
    """
    if store.exists() and not append:
        store.unlink()
    lr_desc = "per width (see the study)" if callable(lr) else float(lr)
    attrs = {"config": cfg_mod.to_toml(c.raw), "mode": mode, "batch": batch, "lr": str(lr_desc), "t_end": t_end,
             "problem": c.problem.name}
    times = record_times(t_end, every)
    t0 = time.perf_counter()
    with runs.RunStore(store, "a", attrs=attrs) as st:
        for n in widths:
            eps = lr(n) if callable(lr) else float(lr)
            for r in range(replica_offset, replica_offset + replicas):
                ss = seed(n, r) if seed is not None else None
                try:
                    run = finite.train(c.finite_problem, n, mode=mode, batch=batch, lr=eps, t_end=t_end, record_times=times,
                                       replica=r, law=law, statistics=statistics, seed=ss, fixed_nodes=fixed_nodes)
                except BlowUpError as exc:
                    run = exc.partial
                    say(f"  warning: width {n} replica {r}: {exc}")
                st.write(run)
    say(f"  ensemble {store.name}: widths {list(widths)} × {replicas} replicas, {mode}"
        f"{'' if mode == 'full' else f' B={batch}'}: {time.perf_counter() - t0:.1f} s")
    return store


# ----------------------------------------------------------------------------- rates
def rate_noise_se(n, mean, sem) -> float:
    """Standard error of the fitted log–log slope due to replica noise alone (delta method)."""
    x = np.log(np.asarray(n, float))
    rel = np.asarray(sem, float) / np.asarray(mean, float)
    dx = x - x.mean()
    return float(math.sqrt(np.sum(dx**2 * rel**2)) / np.sum(dx**2))


def rate_check(ctx: Context, name: str, n, mean, sem, *, band=BAND, expected="1/2", z: float = 2.0) -> dict:
    """Fit err ≈ C n^{−r} (mfpde.analysis.compare.fit_rate), record r ∈ band (widened in quick mode by z × replica-noise SE)."""
    n = np.asarray(n, float)
    mean = np.asarray(mean, float)
    r, lo, hi = cmp.fit_rate(n, mean)
    se = rate_noise_se(n, mean, sem)
    ok = ctx.check(name, r, band[0], band[1], expected=expected, ci=(lo, hi), slack=z * se,
                   note=f"replica-noise SE of the slope {se:.3f}")
    return {"rate": r, "ci": [lo, hi], "noise_se": se, "passed": ok}


def compare_table(res, key: str = "output_error") -> list[dict]:
    rows = []
    for i, n in enumerate(res["width"].values):
        rows.append({"width": int(n), "mean": _f(res[f"{key}_mean"].values[i]), "sem": _f(res[f"{key}_sem"].values[i]),
                     "times_sqrt_n": _f(res[f"{key}_sqrt_n"].values[i])})
    return rows


def table_text(rows: list[dict], label: str = "error") -> str:
    out = [f"{'width':>8} {label + ' mean':>16} {'± sem':>10} {'× √n':>9}"]
    for r in rows:
        out.append(f"{r['width']:>8} {r['mean']:>16.4e} {r['sem']:>10.2e} {r['times_sqrt_n']:>9.3g}")
    return "\n".join(out)


def sup_rms(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """sup over time of the RMS over probes (and outputs) of a − b; arrays [..., T, P, K]."""
    d = a - b
    return np.nanmax(np.sqrt(np.mean(np.sum(d**2, axis=-1), axis=-1)), axis=-1)


def per_width(err: np.ndarray):
    """Mean and standard error over the replica axis (last) of an array [W, R]."""
    cnt = np.sum(np.isfinite(err), axis=1)
    return np.nanmean(err, axis=1), np.nanstd(err, axis=1, ddof=1) / np.sqrt(cnt)


def rows_from(widths, mean, sem) -> list[dict]:
    return [{"width": int(n), "mean": _f(m), "sem": _f(s), "times_sqrt_n": _f(m * math.sqrt(n))}
            for n, m, s in zip(widths, mean, sem)]


# ----------------------------------------------------------------------------- figures
def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def error_panel(ax, widths, mean, sem, label: str, rate: float, marker="o"):
    widths = np.asarray(widths, float)
    ax.errorbar(widths, mean, yerr=sem, marker=marker, capsize=3, label=f"{label} (rate {rate:.2f})")


def guide(ax, widths, y0, p=0.5, label="$n^{-1/2}$"):
    widths = np.asarray(widths, float)
    ax.plot(widths, y0 * (widths[0] / widths) ** p, "k:", label=label)


def loglog(ax, xlabel="width n", ylabel="sup-time error"):
    ax.set_xscale("log"), ax.set_yscale("log"), ax.set_xlabel(xlabel), ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)


def time_panel(ax, limit, ens, var: str = "loss_train", widths=None, ylabel=None):
    t = ens["time"].values
    for i, n in enumerate(ens["width"].values):
        if widths is not None and int(n) not in widths:
            continue
        ax.plot(t, np.nanmean(ens[var].values[i], axis=0), alpha=0.8, label=f"n = {int(n)}")
    if limit is not None:
        ax.plot(limit["time"].values, limit[var].values, "k--", lw=2, label="limit")
    ax.set_xlabel("t"), ax.set_ylabel(ylabel or var), ax.legend(fontsize=7)


def save(fig, path: Path):
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot().close(fig)


# ----------------------------------------------------------------------------- summary
def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        return []


def write_summary(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=False, default=_f) + "\n")
    tmp.replace(path)

"""Limit versus finite width (Analysis room): errors per width, error × √n, fitted rate with a CI.

:func:`compare` takes a limit solution (``mfpde solve`` NetCDF, as a Dataset) and an
ensemble (``mfpde sgd`` HDF5, via :func:`mfpde.store.runs.read`) recorded at the same times and
returns an ``xarray.Dataset`` over ``width``: for every run the sup-over-time RMS output
error on the probes, sup_t sqrt(mean_probes Σ_k (ŷ_n − ŷ_∞)²), and the sup-over-time loss
error |𝓛_n − 𝓛_∞| (test loss when present); their replica means and standard errors;
mean × √n; and the least-squares rate r of log(error) = c − r log n with a 95 % confidence
interval (Student t).  SPEC §2: the expected rate is 1/2.  :func:`check_inputs` runs first and
refuses, with one :class:`~mfpde.errors.MfpdeError` line, a first input that is not a limit
result (a run store, a comparison, a file without ``time`` / ``loss_train``), a second input that
is not a run store, ŷ recorded at other probe points or with another number of outputs, and runs
outside the limit's time span.  It also refuses (unless ``force``) a limit and runs whose stored
configurations define different problems (:func:`problem_differences`: everything but ``name``,
``[solver]``, ``[sgd]`` and ``[output]``), and it says, through ``warn``, when it interpolates the
limit between its save times, when fewer than 3 widths leave the rate without a CI, and when the
limit's own estimated loss error (``error_estimate_loss``) exceeds 1/10 of the smallest width
error or is missing (:func:`limit_error_estimate`).
The runs may also be one point of a collected SGD sweep (:func:`sweep_runs`).
Imports numpy, scipy, xarray (and mfpde.problem.data for the probes).
"""
from __future__ import annotations

import math

import numpy as np

from mfpde.errors import DataError, MfpdeError, StoreError

FIGURES = ("loss_vs_time.png", "error_vs_width.png")   # what :func:`plot` writes into its folder
_ORDER = "give the limit result of `mfpde solve` first and the run store of `mfpde sgd` second"
# top-level tables/keys of a configuration that do not define the problem: the label, how the limit
# is stepped and saved ([solver]: its t_end and save times are checked on their own), how the
# networks are trained ([sgd]) and where results go ([output])
NOT_PROBLEM = ("name", "solver", "sgd", "output")
TIME_RTOL = 1e-12    # a run's record time "is" a limit save time within this × max(1, t_end)
MIN_CI_WIDTHS = 3    # a rate fitted to fewer widths has no residual degree of freedom, hence no CI
# the limit's own estimated loss error (its attribute error_estimate_loss) must stay within this
# fraction of the smallest width error, else the comparison measures the solver, not the width
ESTIMATE_FRACTION = 0.1


def _label(ds, name, default: str) -> str:
    if name is not None:
        return f"{str(name)!r}"
    src = getattr(ds, "encoding", {}).get("source")
    return f"{str(src)!r}" if src else default


def _has(ds, name: str, dims: tuple[str, ...]) -> bool:
    return name in ds.data_vars and tuple(ds[name].dims) == dims


def _times(ds, label: str) -> np.ndarray:
    t = ds["time"]
    if tuple(t.dims) != ("time",) or t.size == 0 or t.dtype.kind not in "iuf":
        raise DataError(f"{label}: its 'time' coordinate is not a non-empty list of numbers")
    v = t.values.astype(float)
    if not (np.all(np.isfinite(v)) and np.all(np.diff(v) > 0)):
        raise DataError(f"{label}: its times are not finite and strictly increasing")
    return v


def _probe_points(ds, label: str) -> np.ndarray:
    """The probe points ``[P, d]`` a result was recorded at: its ``probe_x``, else its stored config."""
    if "probe_x" in ds.coords or "probe_x" in ds.data_vars:
        return np.asarray(ds["probe_x"].values, dtype=float)
    import tomllib

    from mfpde.problem import data

    try:
        raw = tomllib.loads(ds.attrs["config"])
        d = raw.get("model", {}).get("input_dim")
        return np.asarray(data.probes(raw["probes"], d), dtype=float)
    except (KeyError, TypeError, AttributeError, ValueError, MfpdeError) as exc:   # ValueError: TOMLDecodeError
        why = f"{type(exc).__name__}: {exc}".replace("\n", " ")
        raise DataError(f"{label}: cannot tell the probe points its ŷ was recorded at "
                        f"(no probe_x and no readable [probes] in its stored config: {why})") from None


def _flat(table, prefix="") -> dict:
    """{dotted.key: value} of a TOML table (lists are values)."""
    out = {}
    for k, v in table.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "."))
        else:
            out[key] = v
    return out


def _short(v, limit: int = 40) -> str:
    text = "(not set)" if v is _UNSET else repr(v)
    return text if len(text) <= limit else text[:limit - 1] + "…"


_UNSET = object()


def problem_differences(limit_config: str, runs_config: str) -> list[tuple[str, object, object]]:
    """(dotted key, limit value, runs value) for every key in which two stored configurations
    (TOML text) differ, outside :data:`NOT_PROBLEM`; ``_UNSET`` marks a key one of them does not set.

    A key set explicitly to its default in one file and left out of the other counts as a
    difference: the stored text is compared, not the defaults it implies."""
    import tomllib

    a, b = (_flat({k: v for k, v in tomllib.loads(t).items() if k not in NOT_PROBLEM})
            for t in (limit_config, runs_config))
    return [(k, a.get(k, _UNSET), b.get(k, _UNSET)) for k in sorted(set(a) | set(b))
            if a.get(k, _UNSET) != b.get(k, _UNSET)]


def _check_same_problem(limit, runs, L: str, R: str, force: bool, warn) -> None:
    texts = [ds.attrs.get("config") for ds in (limit, runs)]
    if not all(isinstance(t, str) and t.strip() for t in texts):
        who = " and ".join(n for n, t in zip((L, R), texts) if not (isinstance(t, str) and t.strip()))
        warn(f"{who} stores no configuration: cannot check that the limit and the runs define the same problem")
        return
    try:
        diff = problem_differences(*texts)
    except ValueError as exc:   # tomllib.TOMLDecodeError
        raise DataError(f"cannot read the stored configuration of {L} or {R} "
                        f"({str(exc).splitlines()[0]}): cannot check that they define the same problem") from None
    if not diff:
        return
    shown = "; ".join(f"{k}: {_short(x)} (limit) vs {_short(y)} (runs)" for k, x, y in diff[:6])
    more = f"; and {len(diff) - 6} more" if len(diff) > 6 else ""
    what = (f"the limit {L} and the runs {R} define different problems ("
            f"{'1 key differs' if len(diff) == 1 else f'{len(diff)} keys differ'} outside [solver], [sgd] and "
            f"[output]: {shown}{more})")
    if not force:
        raise DataError(f"{what}; solve the limit from the runs' configuration, or pass --force to compare anyway")
    warn(f"{what}; compared anyway (--force)")


def interpolated_times(limit_times: np.ndarray, run_times: np.ndarray) -> tuple[np.ndarray, float]:
    """The run times that are not limit save times (within :data:`TIME_RTOL` × max(1, t_end)), and
    the largest distance of a run time to its nearest limit save time."""
    idx = np.searchsorted(limit_times, run_times)
    below = limit_times[np.clip(idx - 1, 0, len(limit_times) - 1)]
    above = limit_times[np.clip(idx, 0, len(limit_times) - 1)]
    near = np.minimum(np.abs(below - run_times), np.abs(above - run_times))
    tol = TIME_RTOL * max(1.0, abs(float(limit_times[-1])))
    return run_times[near > tol], float(near.max(initial=0.0))


def _say_interpolation(limit, runs, L: str, warn) -> float:
    off, gap = interpolated_times(_times(limit, L), runs["time"].values.astype(float))
    if len(off):
        shown = ", ".join(f"{t:g}" for t in off[:8]) + (f", … ({len(off)} in all)" if len(off) > 8 else "")
        warn(f"{len(off)} of the runs' {runs.sizes['time']} record times are not save times of the limit {L} "
             f"(t = {shown}): the limit is interpolated linearly there, up to {gap:.3g} in t from its nearest "
             f"save time, and the errors include that interpolation error; solve the limit with the runs' "
             f"save times to avoid it")
    return gap if len(off) else 0.0


def check_inputs(limit, runs, limit_name=None, runs_name=None, *, force: bool = False,
                 warn=None) -> str:
    """Refuse inputs :func:`compare` cannot compare honestly; return the loss to compare.

    ``limit_name`` / ``runs_name`` name the inputs in messages (default: the limit's file, as
    recorded by xarray, and "the run store").  Configurations that define different problems are
    refused unless ``force``; then, and for what can be checked only partly, ``warn(message)``
    is called (default: :func:`warnings.warn`)."""
    import xarray as xr

    for what, ds in (("limit", limit), ("run store", runs)):
        if not isinstance(ds, xr.Dataset):
            raise MfpdeError(f"compare needs the {what} as an xarray Dataset, got {type(ds).__name__}")
    L = _label(limit, limit_name, "the limit")
    R = _label(runs, runs_name, "the run store")
    # the first input: a limit result
    if limit.attrs.get("format") == "mfpde-runs":
        raise StoreError(f"{L} is a run store (mfpde sgd), not a limit result: {_ORDER}")
    if "width" in limit.dims or "replica" in limit.dims:
        what = "a comparison (mfpde compare)" if "expected_rate" in limit.attrs else "a result over widths"
        raise StoreError(f"{L} is {what}, not a limit result: {_ORDER}")
    if "time" not in limit.coords or not _has(limit, "loss_train", ("time",)):
        raise StoreError(f"{L} is not a limit result (it needs a 'time' coordinate and loss_train over time): {_ORDER}")
    lt = _times(limit, L)
    # the second input: a run store
    if runs.attrs.get("format") != "mfpde-runs" or "time" not in runs.coords or "width" not in runs.coords:
        raise StoreError(f"{R} is not a run store of `mfpde sgd`: {_ORDER}")
    if not _has(runs, "loss_train", ("width", "replica", "time")):
        raise StoreError(f"{R} has no loss_train over (width, replica, time): not a run store of `mfpde sgd`")
    rt = _times(runs, R)
    if rt[0] < lt[0] - 1e-9 or rt[-1] > lt[-1] + 1e-9:
        raise DataError(f"the runs of {R} span t in [{rt[0]:g}, {rt[-1]:g}] but the limit {L} only "
                        f"[{lt[0]:g}, {lt[-1]:g}]: solve the limit up to t_end = {rt[-1]:g}")
    loss = "loss_train"
    if "loss_test" in runs.data_vars and "loss_test" in limit.data_vars:
        if not _has(limit, "loss_test", ("time",)) or not _has(runs, "loss_test", ("width", "replica", "time")):
            raise DataError(f"loss_test of {L} or {R} is not over time (limit) and (width, replica, time) (runs)")
        loss = "loss_test"
    # ŷ at the probe points: both or neither, same points, same outputs
    ly, ry = "yhat_probe" in limit.data_vars, "yhat_probe" in runs.data_vars
    if ly != ry:
        has, hasnt = (L, R) if ly else (R, L)
        raise DataError(f"{has} has ŷ at probe points but {hasnt} has no ŷ at probe points: "
                        f"the limit and the runs must use the same [probes] table")
    if ly:
        if tuple(limit["yhat_probe"].dims) != ("time", "probe", "output"):
            raise DataError(f"{L}: yhat_probe has dims {tuple(limit['yhat_probe'].dims)}, expected (time, probe, output)")
        if tuple(runs["yhat_probe"].dims) != ("width", "replica", "time", "probe", "output"):
            raise DataError(f"{R}: yhat_probe has dims {tuple(runs['yhat_probe'].dims)}, "
                            f"expected (width, replica, time, probe, output)")
        (P, K), (Pr, Kr) = limit["yhat_probe"].shape[1:], runs["yhat_probe"].shape[3:]
        if (P, K) != (Pr, Kr):
            raise DataError(f"{L} has ŷ at {P} probe points × {K} output(s) but {R} at {Pr} probe points × {Kr} "
                            f"output(s): the limit and the runs must use the same [probes] and model")
        xl, xr_ = _probe_points(limit, L), _probe_points(runs, R)
        if xl.shape != (P, xl.shape[-1]) or xl.shape != xr_.shape or not np.allclose(xl, xr_, rtol=1e-12, atol=1e-12):
            raise DataError(f"{L} has ŷ at other probe points than {R} (same count, {P}, but different points): "
                            f"the limit and the runs must use the same [probes] table")
    _check_same_problem(limit, runs, L, R, force, _warner(warn))
    return loss


def _warner(warn):
    if warn is not None:
        return warn
    import warnings

    return lambda message: warnings.warn(message, stacklevel=3)


_RUN_DIMS = ("width", "replica")
_RESULT_DIMS = {"time", "probe", "output", "input_dim", "quantile", "singular_value"}


def _point_label(point: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in point.items())


def _matches(value, text: str) -> bool:
    if isinstance(value, (np.floating, float, np.integer, int)) and not isinstance(value, (bool, np.bool_)):
        try:
            return math.isclose(float(value), float(text), rel_tol=1e-12, abs_tol=0.0)
        except ValueError:
            return False
    return str(value) == text


def sweep_points(sweep) -> list[dict]:
    """The points of a collected SGD sweep (``mfpde collect``): {axis: value} per point, in order
    (``mode = "zip"``: every swept key along ``task``)."""
    axes = [d for d in sweep["status"].dims if d not in _RUN_DIMS]
    cols = {d: sweep[d].values if d in sweep.coords else np.arange(sweep.sizes[d]) for d in axes}
    if axes == ["task"]:
        cols = {k: sweep[k].values for k, c in sweep.coords.items() if c.dims == ("task",) and k != "task"} or cols
    out = []
    for idx in np.ndindex(*(sweep.sizes[d] for d in axes)):
        pos = dict(zip(axes, idx))
        out.append({k: (v[pos[k]] if k in pos else v[pos["task"]]).item() for k, v in cols.items()} | {"_pos": pos})
    return out


def sweep_runs(sweep, point=(), name=None, folder=None):
    """The runs of one point of a collected SGD sweep as a run-store Dataset for :func:`compare`.

    ``point``: ``"KEY=VALUE"`` selections (the sweep's axis names; numbers match to 1e-12
    relative); they must leave exactly one point, else MfpdeError listing the points.  Every run
    of the point must be done.  The point's configuration is read from its task file in
    ``folder`` (the sweep's output folder: task files are named by ``file``), else, when the
    sweep varies only keys outside the problem (:data:`NOT_PROBLEM`), from ``base_config``."""
    import json
    from pathlib import Path

    S = _label(sweep, name, "the sweep")
    if sweep.attrs.get("sweep_task") != "sgd" or not all(d in sweep.dims for d in _RUN_DIMS) or "status" not in sweep:
        raise StoreError(f"{S} is a collected sweep of limit solves, not of SGD runs: compare a limit with the runs "
                         f"of a sweep with task = \"sgd\" (or with a run store of `mfpde sgd`)")
    points = sweep_points(sweep)
    keys = sorted({k for p in points for k in p if k != "_pos"})
    for sel in point:
        key, eq, value = str(sel).partition("=")
        key = key.strip()
        if not eq or key not in keys:
            raise MfpdeError(f"--point {sel!r}: expected KEY=VALUE with KEY one of the sweep's axes "
                             f"({', '.join(keys) or 'none'})")
        points = [p for p in points if _matches(p[key], value.strip())]
    listed = "; ".join(_point_label({k: v for k, v in p.items() if k != "_pos"}) for p in sweep_points(sweep)[:12])
    if len(points) != 1:
        sel = f" and {'no point matches' if not points else f'{len(points)} points match'} --point {' '.join(point)}" \
            if point else ""
        raise MfpdeError(f"{S} is a sweep of {len(sweep_points(sweep))} points{sel}: choose one with "
                         f"--point KEY=VALUE (repeatable); its points: {listed}")
    pos = points[0]["_pos"]
    label = _point_label({k: v for k, v in points[0].items() if k != "_pos"})
    one = sweep.isel(pos)
    bad = [(int(n), int(r), str(one["status"].values[i, j]), str(one["message"].values[i, j]))
           for i, n in enumerate(one["width"].values) for j, r in enumerate(one["replica"].values)
           if str(one["status"].values[i, j]) != "done"]
    if bad:
        shown = "; ".join(f"width {n} replica {r}: {st}{f' ({m})' if m else ''}" for n, r, st, m in bad[:4])
        raise DataError(f"{S}, point {label}: {len(bad)} run(s) not done ({shown}): run the sweep to completion "
                        f"(mfpde sweep --retry-failed) and collect it again")
    files = [str(f) for f in np.ravel(one["file"].values) if str(f)]
    config = ""
    if folder is not None and files:
        from mfpde.store import netcdf as io

        try:
            config = io.read(Path(folder) / files[0]).attrs.get("config", "")
        except MfpdeError:
            config = ""
    if not config:
        axes = json.loads(sweep.attrs.get("sweep_axes", "[]"))
        if all(str(a.get("key", "")).split(".")[0].split("[")[0] in NOT_PROBLEM for a in axes):
            config = sweep.attrs.get("base_config", "")
    runs = one.drop_vars([v for v in ("status", "message", "file") if v in one])
    runs = runs.drop_vars([c for c in runs.coords if c not in runs.dims and not set(runs[c].dims) & _RESULT_DIMS])
    if "loss_train" in runs:   # the union time axis of all points: keep this point's record times
        runs = runs.isel(time=np.flatnonzero(np.isfinite(runs["loss_train"].values).any(axis=(0, 1))))
    return runs.assign_attrs(format="mfpde-runs", config=config, sweep_point=label)


def _aligned(limit, runs, name: str) -> np.ndarray:
    """The limit's variable at the runs' times (exact match within :data:`TIME_RTOL`, else linear
    interpolation: :func:`compare` says so)."""
    lt = limit["time"].values
    rt = runs["time"].values
    if rt.min() < lt.min() - 1e-9 or rt.max() > lt.max() + 1e-9:
        raise MfpdeError(f"the runs span t in [{rt.min():g}, {rt.max():g}] but the limit only [{lt.min():g}, {lt.max():g}]")
    tol = TIME_RTOL * max(1.0, abs(lt[-1]))
    idx = np.searchsorted(lt, rt - tol)
    idx = np.clip(idx, 0, len(lt) - 1)
    if np.all(np.abs(lt[idx] - rt) <= tol):
        return limit[name].values[idx]
    return limit[name].interp(time=rt).values


def limit_error_estimate(limit) -> tuple[float, str | None]:
    """(``error_estimate_loss``, None) of a limit result, or (NaN, why it has no usable estimate).

    Usable: a finite number >= 0, and ``error_estimate_status`` "ok" or absent (the stored
    references carry the estimate of a refinement study without a status).  Files written
    before ``mfpde solve`` estimated its error have neither attribute."""
    status = limit.attrs.get("error_estimate_status")
    value = limit.attrs.get("error_estimate_loss")
    if status is not None and str(status) != "ok":
        status = str(status)
        why = ("was switched off when it was solved" if status == "off" else
               f"is unavailable ({status.partition(':')[2].strip() or 'no reason given'})"
               if status.startswith("unavailable") else f"has status {status!r}")
        return math.nan, f"its error estimate {why}"
    if value is None:
        return math.nan, ("it carries no error estimate (no error_estimate_loss attribute: "
                          "written before `mfpde solve` estimated its own error)")
    v = np.asarray(value)
    if v.size != 1 or v.dtype.kind not in "iuf" or not (np.isfinite(v.item()) and v.item() >= 0):
        return math.nan, f"its error_estimate_loss is {value!r}, not a finite number >= 0"
    return float(v.item()), None


def _the_limit(label: str) -> str:
    return label if label.startswith("the limit") else f"the limit {label}"


def _say_estimate(estimate: float, why, loss_error_mean: np.ndarray, widths: np.ndarray, loss_name: str,
                  L: str, warn) -> None:
    """Warn when the limit's estimated loss error exceeds :data:`ESTIMATE_FRACTION` of the smallest
    width error, or when the limit has no usable estimate (once)."""
    if why is not None:
        warn(f"{_the_limit(L)}: {why}; cannot tell whether the limit's own discretization error is small "
             f"against the width errors (solve it with a current `mfpde solve`, or with --accuracy TOL)")
        return
    ok = np.isfinite(loss_error_mean)
    if not ok.any():
        return
    i = int(np.argmin(np.where(ok, loss_error_mean, np.inf)))
    smallest = float(loss_error_mean[i])
    if estimate > ESTIMATE_FRACTION * smallest:
        of = "" if loss_name == "loss_train" else " (of loss_train; the widths are compared on loss_test)"
        warn(f"{_the_limit(L)} estimates its own loss error at {estimate:.3g} (error_estimate_loss{of}), more than "
             f"1/{1 / ESTIMATE_FRACTION:g} of the smallest width error it is compared with, {smallest:.3g} (the mean sup-time loss "
             f"error at width {int(widths[i])}): the comparison then measures the solver, not the width; "
             f"solve the limit to an accuracy below {ESTIMATE_FRACTION * smallest:.2g} (mfpde solve --accuracy TOL)")


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


def compare(limit, runs, limit_name=None, runs_name=None, *, force: bool = False, warn=None):
    """Errors of every run against the limit, per-width summaries and fitted rates.

    The inputs are checked first (:func:`check_inputs`, with ``force``); ``limit_name`` and
    ``runs_name`` name them in its messages.  ``warn(message)`` (default :func:`warnings.warn`)
    hears of a forced comparison, of the run times at which the limit is interpolated, of
    too few widths for a CI, and of the limit's own error: when its ``error_estimate_loss``
    exceeds :data:`ESTIMATE_FRACTION` of the smallest per-width mean sup-time loss error
    (``loss_error_mean``), or, once, when it has no usable estimate (:func:`limit_error_estimate`).
    The estimate (NaN if none) is the result's attribute ``limit_error_estimate_loss``."""
    import xarray as xr

    warn = _warner(warn)
    loss_name = check_inputs(limit, runs, limit_name, runs_name, force=force, warn=warn)
    gap = _say_interpolation(limit, runs, _label(limit, limit_name, "the limit"), warn)
    out = {}
    widths = runs["width"].values.astype(float)
    if len(widths) < MIN_CI_WIDTHS:
        warn(f"{len(widths)} width{'s' if len(widths) != 1 else ''} ({', '.join(str(int(n)) for n in widths)}): "
             f"no confidence interval for the fitted rate is possible (it needs at least {MIN_CI_WIDTHS} widths)")
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
    estimate, why = limit_error_estimate(limit)
    attrs = {"loss": loss_name, "expected_rate": 0.5, "max_interpolation_dt": gap,
             "limit_error_estimate_loss": estimate}
    for key, e in per_run.items():
        what = f"sup over time of the {key.replace('_', ' ')}"
        out[key] = (("width", "replica"), e, {"long_name": f"{what} of each run", "units": "1"})
        cnt = np.sum(np.isfinite(e), axis=1)
        mean = np.nanmean(e, axis=1)
        sem = np.nanstd(e, axis=1, ddof=1) / np.sqrt(cnt) if e.shape[1] > 1 else np.full(len(mean), np.nan)
        out[f"{key}_mean"] = ("width", mean, {"long_name": f"{what}, mean over replicas", "units": "1"})
        out[f"{key}_sem"] = ("width", sem, {"long_name": f"{what}, standard error of the mean over replicas",
                                            "units": "1"})
        out[f"{key}_sqrt_n"] = ("width", mean * np.sqrt(widths),
                                {"long_name": f"{what}, mean over replicas × √n", "units": "1"})
        r, lo, hi = fit_rate(widths, mean)
        attrs[f"{key}_rate"] = r
        attrs[f"{key}_rate_ci_low"] = lo
        attrs[f"{key}_rate_ci_high"] = hi
    _say_estimate(estimate, why, out["loss_error_mean"][1], widths, loss_name,
                  _label(limit, limit_name, "the limit"), warn)   # the label is "'FILE'" or "the limit"
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
    n_w = result.sizes["width"]
    for k in keys:
        a = result.attrs
        ci = (f"95% CI [{a[f'{k}_rate_ci_low']:.3f}, {a[f'{k}_rate_ci_high']:.3f}]" if n_w >= MIN_CI_WIDTHS else
              f"no CI possible from {n_w} width{'s' if n_w != 1 else ''} (needs {MIN_CI_WIDTHS})")
        rows.append(f"{k}: fitted rate {a[f'{k}_rate']:.3f}, {ci} (theory: 0.5)")
    return "\n".join(rows)


def _save(fig, path, fmt: str = "png", dpi: int = 200) -> None:
    """A figure written like every other file: rendered in memory, then atomically (mfpde.store.atomic)."""
    import io as _io

    from mfpde.store import atomic

    buf = _io.BytesIO()
    fig.savefig(buf, dpi=dpi, format=fmt)
    atomic.write_bytes(path, buf.getbuffer(), what="figure ")


def require_plotting() -> None:
    """MfpdeError unless matplotlib (the ``plot`` extra) can be imported; call it before any work."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise MfpdeError(f"plotting needs matplotlib, which cannot be imported ({exc}); "
                         f"install the plot extra: pip install 'mfpde[plot]'") from None


def plot(result, limit, runs, outdir, fmt: str = "png", dpi: int = 200) -> list[str]:
    """Figures (needs the ``plot`` extra), drawn by :mod:`mfpde.analysis.plot`: loss against t across
    widths with the limit (:data:`FIGURES` [0]) and the errors against n (:data:`FIGURES` [1])."""
    from pathlib import Path

    require_plotting()
    import matplotlib.pyplot as plt

    from mfpde.analysis import plot as figs

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    name = figs.problem_name(limit, runs)
    files = []
    for fname, make in zip(FIGURES, (lambda: figs.loss_figure([figs.Panel("", limit=limit, runs=runs)], name),
                                     lambda: figs.error_width_figure(result, name))):
        fig = make()
        files.append(str(outdir / (fname if fmt == "png" else fname.replace(".png", f".{fmt}"))))
        _save(fig, files[-1], fmt=fmt, dpi=dpi)
        plt.close(fig)
    return files

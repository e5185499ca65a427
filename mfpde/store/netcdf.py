"""Labelled output (Store room): Solution → xarray.Dataset → NetCDF (h5netcdf), and back.

Schema (documented in ``docs/output.md``): dimensions ``time``, ``probe``, ``node_1`` …
``node_L``, ``input_dim``, ``output`` and ``index_dim_l``; data variables ``loss_train``,
``error_train``, ``loss_test``, ``error_test`` (time; the errors for classification losses only),
``yhat_probe`` (time, probe, output)
and the parameters ``w_1``, ``W_l``, ``b_l``, ``v``, ``b_out`` (time, …) named as in
SPEC §2; coordinates for node locations, weights and tracer flags; attributes with the full
configuration (TOML text), versions, stepper, rules, statistics and creation time; CF-1.10
``Conventions`` and ``units`` (:func:`conventions`), probe x coordinates (:func:`probe_coords`)
and the quantile levels (:func:`quantile_coord`) shared with run stores and sweeps.  A file
is built in memory (the whole HDF5 image) and written by :func:`mfpde.store.atomic.write_bytes`
(temporary file, fsync, rename; a full disk is one ``WriteError``, never a crash).  Data
arrays carry Fletcher-32 checksums; the global attributes a SHA-256 (``attrs_checksum``,
``attrs_sha256``, checked by :func:`read` and not shown in the dataset it returns).
:func:`summary` / :func:`loss_table` describe a solution or a collected sweep (extra
dimensions).  Imports numpy, xarray, h5py (lazily) and mfpde only.
"""
from __future__ import annotations

import datetime as _dt
import io as _io
import json
import warnings
from pathlib import Path

import numpy as np

from mfpde.store import atomic
from mfpde.errors import StoreError

ENGINE = "h5netcdf"
CONVENTIONS = "CF-1.10"
TIME_LABEL = "training time t = k ε (in units of the training time; SGD step k, learning rate ε)"
CLASSIFICATION_LOSSES = ("logistic", "softmax_ce")
ERRORS = ("error_train", "error_test")


def recorded(name: str, loss: str | None, labels: bool = False) -> bool:
    """Whether observable ``name`` belongs in an output of a problem with ``loss``: the
    classification error (``error_*``: sign or arg-max disagreement) only for a classification
    loss, or when the training targets are class labels (``labels``, :func:`class_labels`:
    e.g. a Huber loss on one-hot digits); for regression targets it is not a meaningful quantity."""
    return name not in ERRORS or loss is None or loss in CLASSIFICATION_LOSSES or bool(labels)


def class_labels(Y) -> bool:
    """Whether targets ``Y`` [M, K] are class labels: K = 1 with every y in {−1, 1}, or K ≥ 2
    with every row one-hot (entries 0 or 1, summing to 1)."""
    Y = np.asarray(Y, float)
    if Y.ndim != 2 or Y.size == 0:
        return False
    if Y.shape[1] == 1:
        return bool(np.all(np.abs(Y) == 1.0))
    return bool(np.all((Y == 0.0) | (Y == 1.0)) and np.all(Y.sum(axis=1) == 1.0))


def records_errors(problem) -> bool:
    """Whether a solve or run of ``problem`` stores the classification error (see :func:`recorded`)."""
    loss = getattr(getattr(problem, "model", None), "loss", None)
    train = getattr(problem, "train", None)
    return recorded("error_train", loss, class_labels(train.Y) if train is not None else False)


def probe_coords(x) -> dict:
    """Coordinates of the probe points ``x [P, d]``: ``probe_x(probe, input_dim)``; for d = 1
    the ``probe`` coordinate itself holds x (so ``ds.yhat_probe.plot()`` plots against x), for
    d > 1 ``probe`` is the index and ``probe_x1`` the first coordinate (``plot(x="probe_x1")``)."""
    x = np.asarray(x, float).reshape(len(x), -1)
    out = {"probe_x": (("probe", "input_dim"), x, {"long_name": "probe input x", "units": "1"})}
    if x.shape[1] == 1:
        out["probe"] = ("probe", x[:, 0], {"long_name": "probe input x", "units": "1"})
    else:
        out["probe"] = ("probe", np.arange(len(x)), {"long_name": "probe point index", "units": "1"})
        out["probe_x1"] = ("probe", x[:, 0], {"long_name": "first coordinate x_1 of the probe input", "units": "1"})
    return out


COORDINATES = {   # the long_names of the coordinates several output kinds share
    "time": TIME_LABEL,
    "width": "network width n (neurons per hidden layer)",
    "replica": "replica (independent initialisation and data draws)",
    "task": "task of a zipped sweep",
}


def conventions(ds):
    """``ds`` with the CF attributes every mfpde NetCDF output carries: ``Conventions``,
    ``units`` on every numeric variable and coordinate (``"1"``: every mfpde quantity is
    dimensionless, time included: it is measured in units of the training time) and the
    long_names of the shared coordinates (:data:`COORDINATES`) where a writer gave none.
    Changes ``ds``."""
    ds.attrs.setdefault("Conventions", CONVENTIONS)
    for name, v in {**ds.coords, **ds.data_vars}.items():
        if (np.issubdtype(v.dtype, np.number) or v.dtype == bool) and "units" not in v.attrs:
            v.attrs["units"] = "1"
        if name in COORDINATES and not v.attrs.get("long_name"):
            v.attrs["long_name"] = COORDINATES[name]
    return ds


def _versions() -> dict[str, str]:
    import numba
    import scipy
    import xarray as xr

    from mfpde import __version__

    return {"mfpde_version": __version__, "numpy_version": np.__version__, "scipy_version": scipy.__version__,
            "numba_version": numba.__version__, "xarray_version": xr.__version__}


def to_xarray(sol):
    """The labelled dataset of a :class:`~mfpde.store.solution.Solution`."""
    import xarray as xr

    from mfpde.checks import to_toml

    system = sol.system
    prob = system.problem
    L = prob.model.L
    regime = getattr(system, "regime", "mean_field")   # "linearized": mfpde.analysis.linearized
    times = np.asarray(sol.times, dtype=float)
    coords: dict = {"time": ("time", times, {"long_name": TIME_LABEL, "units": "1"})}
    for l in range(1, L + 1):
        rule = system.rules[l - 1]
        n_tr = getattr(rule, "n_tracers", 0)
        coords[f"node_{l}"] = (f"node_{l}", np.arange(rule.nodes.shape[0]), {"long_name": f"rule node of hidden layer {l}"})
        coords[f"node_{l}_weight"] = (f"node_{l}", np.asarray(rule.weights, float), {"long_name": f"quadrature weight ω of layer {l}"})
        coords[f"node_{l}_coord"] = ((f"node_{l}", f"index_dim_{l}"), np.asarray(rule.nodes, float),
                                     {"long_name": f"node location c_{l} in the index space"})
        tracer = np.zeros(rule.nodes.shape[0], dtype=np.int8)
        if n_tr:
            tracer[-n_tr:] = 1
        coords[f"node_{l}_tracer"] = (f"node_{l}", tracer, {"long_name": "1 for tracer nodes (weight 0)"})
        if l > 1 and system.layout.omega_sizes[l - 1] > 1:
            coords[f"omega_{l}"] = (f"omega_{l}", system.edge_nodes[l - 2],
                                    {"long_name": f"standardized initial noise ω of W_{l} (nonlinear edges: W_{l}(0) = W_{l}^0 + noise_std·ω)"})
            coords[f"omega_{l}_weight"] = (f"omega_{l}", system.edge_weights[l - 2], {"long_name": f"quadrature weight ρ of omega_{l}"})
    data_vars: dict = {}
    labels = {"loss_train": "loss on the training law", "error_train": "classification error on the training law",
              "loss_test": "loss on the test law", "error_test": "classification error on the test law"}
    for k, label in labels.items():
        if k in sol.observables and (k not in ERRORS or records_errors(prob)):
            data_vars[k] = ("time", np.asarray(sol.observables[k], float), {"long_name": label})
    if "yhat_probe" in sol.observables:
        data_vars["yhat_probe"] = (("time", "probe", "output"), np.asarray(sol.observables["yhat_probe"], float),
                                   {"long_name": "network output ŷ(t, x) at the probe points"})
        coords.update(probe_coords(prob.probes))
    est = getattr(sol, "estimate", None)
    est_attrs = est.attrs() if est is not None else {"error_estimate_status": "unavailable: not computed (a partial result, or a "
                                                                     "solve outside mfpde.solve)"}
    if est is not None and est.loss is not None and len(est.loss) == len(times):
        data_vars["loss_train_error_estimate"] = ("time", np.asarray(est.loss, float), {
            "long_name": "estimated |discretization error| of loss_train (rules + time steps, docs/accuracy.md)"})
        if est.yhat is not None and "yhat_probe" in data_vars:
            data_vars["yhat_probe_error_estimate"] = (("time", "probe", "output"), np.asarray(est.yhat, float), {
                "long_name": "estimated |discretization error| of yhat_probe (docs/accuracy.md)"})
    if sol.states:
        st = np.asarray(sol.state_times, float)
        same = len(st) == len(times) and np.array_equal(st, times)
        tdim = "time" if same else "state_time"
        if not same:
            coords["state_time"] = ("state_time", st, {"long_name": "times at which parameters were stored "
                                                                    "(in units of the training time)", "units": "1"})
        dims = system.layout.dims()
        stacked = np.stack(sol.states)
        for name, block in system.layout.views(stacked[0]).items():
            off = system.layout.offset(name)
            arr = stacked[:, off:off + block.size].reshape((len(st),) + block.shape)
            data_vars[name] = ((tdim,) + dims[name], arr, {"long_name": f"parameter {name} at the rule nodes"})
        from mfpde.system.laws import parameter_laws

        laws = [parameter_laws(system, y) for y in sol.states]
        coords["quantile"] = quantile_coord()
        for name in laws[0]:
            data_vars[f"law_{name}"] = ((tdim, "quantile"), np.stack([lw[name] for lw in laws]),
                                        {"long_name": f"quantiles of the law of {name} at a random index (rule-weighted)"})
    stats = {f"stats_{k}": (int(v) if isinstance(v, (int, np.integer)) else float(v)) for k, v in sol.stats.items()}
    attrs = {
        "Conventions": CONVENTIONS,
        "title": f"mfpde mean-field limit solution: {prob.name}",   # also the file-kind marker (store.paths): kept
                                                                      # for linearized solves, told apart by `regime`
        "regime": regime,
        "config": to_toml(prob.config) if prob.config else "",
        "stepper": json.dumps(sol.stepper),
        "rules": json.dumps([r.describe() if hasattr(r, "describe") else type(r).__name__ for r in system.rules]),
        "depth": L,
        "model_activations": json.dumps(list(prob.model.activations)),
        "model_loss": prob.model.loss,
        "model_edges": json.dumps(list(prob.model.edges)),
        "train_data": getattr(prob.train, "source", ""),
        "test_data": getattr(prob.test, "source", "") if prob.test is not None else "",
        "status": sol.status,
        "status_message": sol.message,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **_versions(),
        **stats,
        "state_size": int(system.size),
        **est_attrs,
        **(prob.reduction.to_dict() if getattr(prob, "reduction", None) is not None else {}),
    }
    return conventions(xr.Dataset(data_vars, coords=coords, attrs=attrs))


LEGACY_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)   # the unlabelled levels of SGD runs recorded before the labels


def quantile_coord(size: int | None = None, levels=None) -> tuple | None:
    """The ``quantile`` coordinate shared by limit results, run stores and sweeps: ``levels``
    when given (and of length ``size``), else :data:`mfpde.system.laws.QUANTILES`, or for
    ``size`` 5 the legacy unlabelled levels of older run stores; None when no level set has
    ``size`` entries."""
    from mfpde.system.laws import QUANTILES

    if levels is None:
        levels = {None: QUANTILES, len(QUANTILES): QUANTILES, len(LEGACY_QUANTILES): LEGACY_QUANTILES}.get(size)
    if levels is None or (size is not None and len(levels) != size):
        return None
    return ("quantile", np.asarray(levels, float),
            {"long_name": "probability level of the quantile (left-continuous inverse CDF)", "units": "1"})


def write(ds, path: str | Path) -> Path:
    """Write a dataset as NetCDF (h5netcdf) atomically: in-memory image, temp file, fsync, rename.

    The global attributes are sealed (:func:`mfpde.store.atomic.seal`); ``ds`` is not changed.
    """
    import h5py

    path = Path(path)
    ds = conventions(ds.copy(deep=False))
    ds.attrs = {atomic.MARKER: "sha256", **{k: v for k, v in ds.attrs.items() if k not in atomic.CHECKSUM_KEYS}}
    buf = _io.BytesIO()
    try:
        with _local_locks():
            ds.to_netcdf(buf, engine=ENGINE, encoding=_checksums(ds))
        with h5py.File(buf, "r+") as f:
            atomic.seal(f.attrs)
    except OSError as exc:
        raise StoreError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from None
    return atomic.write_bytes(path, buf.getbuffer())


def _local_locks():
    """On a dask worker xarray takes a *distributed* lock named after the target, which an
    in-memory target cannot name; the image is private to this call, so a local lock is right."""
    import contextlib
    import sys

    dask = sys.modules.get("dask")
    return dask.config.set(scheduler="synchronous") if dask is not None else contextlib.nullcontext()


def _checksums(ds) -> dict:
    """Fletcher-32 checksums on every non-empty numeric array, so a flipped byte reads as an error."""
    enc = {}
    for name, v in {**ds.coords, **ds.data_vars}.items():
        if v.ndim >= 1 and v.size > 0 and (np.issubdtype(v.dtype, np.number) or v.dtype == bool):
            enc[name] = {**v.encoding, "fletcher32": True}
            enc[name] = {k: x for k, x in enc[name].items() if k in _ENCODING_KEYS}
    return enc


_ENCODING_KEYS = {"fletcher32", "shuffle", "compression", "compression_opts", "dtype", "_FillValue",
                  "zlib", "complevel", "scale_factor", "add_offset", "units", "calendar"}


def read(path: str | Path):
    """Open a result file written by mfpde (loaded into memory); clear error if unreadable."""
    import xarray as xr

    import h5py

    p = Path(path)
    if not p.exists():
        raise StoreError(f"result file {str(p)!r} does not exist")
    try:
        with h5py.File(p, "r") as f:   # the global attributes as written, checked against their SHA-256
            atomic.verify({k: f.attrs[k] for k in f.attrs}, f"result file {str(p)!r}")
        with xr.open_dataset(p, engine=ENGINE) as ds:
            ds = ds.load()
    except StoreError:
        raise
    except Exception as exc:  # h5py/h5netcdf raise many types on damaged files
        raise StoreError(f"cannot read {str(p)!r} as NetCDF/HDF5 (truncated or not an mfpde file?): {exc.__class__.__name__}") from None
    for k in atomic.CHECKSUM_KEYS:
        ds.attrs.pop(k, None)
    return ds


LOSSES = ("loss_train", "loss_test", "error_train", "error_test")
ESTIMATE_VAR = "loss_train_error_estimate"


def estimate_line(ds) -> str:
    """One line on the error estimate of a solution dataset (docs/accuracy.md), or that it has none."""
    status = ds.attrs.get("error_estimate_status")
    if status is None and "error_estimate_loss" in ds.attrs:   # a stored reference: its refinement study
        return (f"  error estimate (refinement study of the reference): loss_train ± "
                f"{float(ds.attrs['error_estimate_loss']):.1e}")
    if status is None:
        return ("  error estimate: none in this file (written before mfpde had error estimates, or not by mfpde "
                "solve): run mfpde solve again, or mfpde refine")
    if status != "ok":
        return f"  error estimate: {status}"
    f = lambda k: float(ds.attrs.get(k, float("nan")))
    parts = ", ".join(f"{p} {f('error_estimate_loss_' + p):.1e}" for p in ("rule", "sampling", "time")
                      if np.isfinite(f("error_estimate_loss_" + p)))
    line = f"  error estimate (sup over t): loss_train ± {f('error_estimate_loss'):.1e} ({parts})"
    if np.isfinite(f("error_estimate_yhat")):
        line += f", ŷ ± {f('error_estimate_yhat'):.1e}"
    if not int(ds.attrs.get("error_estimate_reliable", 1)):
        line += " — UNRELIABLE: the rule differences do not shrink"
    return line


def summary(ds) -> str:
    """A human summary of a solution dataset or a collected sweep (used by ``mfpde show``)."""
    lines = [str(ds.attrs.get("title", "mfpde dataset"))]
    status = ds.data_vars.get("status")
    if status is not None and status.ndim >= 1:   # a collected sweep: one status per task
        values, counts = np.unique(np.asarray(status.values, dtype=str), return_counts=True)
        lines.append("  tasks: " + ", ".join(f"{v}={c}" for v, c in zip(values, counts)) +
                     f"  (task = {ds.attrs.get('sweep_task', '?')}, mode = {ds.attrs.get('sweep_mode', '?')})")
    else:
        lines.append(f"  status: {ds.attrs.get('status', '?')}  stepper: {ds.attrs.get('stepper', '?')}")
        lines.append(f"  rules: {ds.attrs.get('rules', '?')}")
        if ds.attrs.get("reduction"):
            lines.append(f"  reduction: {ds.attrs['reduction']} (SPEC §7): d = {ds.attrs.get('reduced_d', '?')}, "
                         f"k = {ds.attrs.get('reduced_k', '?')}, ζ rule of {ds.attrs.get('zeta_size', '?')} nodes; "
                         f"w_1 columns are (a_1..a_k, β), data columns (z_1..z_k, r)")
        if "loss_train" in ds.data_vars:
            lines.append(estimate_line(ds))
    lines.append("  dims: " + ", ".join(f"{k}={v}" for k, v in ds.sizes.items()))
    lines.append("  variables: " + ", ".join(map(str, ds.data_vars)))
    lines.append(loss_table(ds))
    return "\n".join(lines)


def loss_table(ds, max_rows: int = 21) -> str:
    """Losses and errors over time (at most ``max_rows`` times).

    Variables with dimensions besides ``time`` (a collected sweep: its axes, ``task``,
    ``width``, ``replica``) are summarized by their median over those points per time,
    followed by each point's last finite value (at most ``max_rows`` points).
    """
    if "time" not in ds.variables:
        return "(no time axis)"
    t = np.asarray(ds["time"].values)
    cols = [c for c in LOSSES if c in ds.data_vars and "time" in ds[c].dims]   # the writer decided (records_errors)
    if not cols:
        return "(no losses recorded)"
    extra = tuple(d for d in ds[cols[0]].dims if d != "time")
    cols = [c for c in cols if tuple(d for d in ds[c].dims if d != "time") == extra]
    idx = np.unique(np.linspace(0, len(t) - 1, min(len(t), max_rows)).round().astype(int)) if len(t) else []
    values = {c: np.asarray(ds[c].transpose(*extra, "time").values, dtype=float).reshape(-1, len(t)) for c in cols}
    n_points = next(iter(values.values())).shape[0]
    rows = []
    if extra:
        rows.append(f"median over {n_points} points ({', '.join(f'{d}={ds.sizes[d]}' for d in extra)}; NaN ignored):")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)   # times where every point is NaN
            series = {c: np.nanmedian(v, axis=0) if n_points else np.full(len(t), np.nan) for c, v in values.items()}
    else:
        series = {c: v[0] for c, v in values.items()}
    est = ds.data_vars.get(ESTIMATE_VAR)
    if not extra and est is not None and est.dims == ("time",) and "loss_train" in cols:   # ± next to loss_train
        k = cols.index("loss_train") + 1
        cols.insert(k, "±estimate")
        series["±estimate"] = np.asarray(est.values, dtype=float)
    rows.append(f"{'time':>10}" + "".join(f"{c:>14}" for c in cols))
    for i in idx:
        rows.append(f"{float(t[i]):>10.4g}" + "".join(f"{series[c][i]:>14.6e}" if c != "±estimate" else
                                                       f"{series[c][i]:>14.1e}" for c in cols))
    if extra:
        rows.extend(_final_values(ds, extra, values, cols, max_rows))
    return "\n".join(rows)


def _final_values(ds, extra, values, cols, max_rows):
    """One row per point: its coordinates and the last finite value of each column."""
    labels = []
    for pos in np.ndindex(*(ds.sizes[d] for d in extra)):
        parts = []
        for d, i in zip(extra, pos):
            names = [d] if d in ds.coords else []
            names += [k for k, c in ds.coords.items() if k != d and c.dims == (d,)]
            parts += [f"{k}={_label(ds[k].values[i])}" for k in names] or [f"{d}={i}"]
        labels.append(", ".join(parts))
    status = ds.data_vars.get("status")
    status = np.asarray(status.transpose(*extra).values, dtype=str).ravel() if status is not None and \
        set(status.dims) == set(extra) else None
    width = max([len(s) for s in labels] + [5])
    rows = ["final values per point:", f"{'point':<{width}}" + "".join(f"{c:>14}" for c in cols) +
            ("  status" if status is not None else "")]
    for k, label in enumerate(labels[:max_rows]):
        last = []
        for c in cols:
            finite = np.flatnonzero(np.isfinite(values[c][k]))
            last.append(values[c][k][finite[-1]] if finite.size else np.nan)
        rows.append(f"{label:<{width}}" + "".join(f"{v:>14.6e}" for v in last) +
                    (f"  {status[k]}" if status is not None else ""))
    if len(labels) > max_rows:
        rows.append(f"… {len(labels) - max_rows} more points")
    return rows


def _label(v) -> str:
    v = v.item() if hasattr(v, "item") else v
    return f"{v:g}" if isinstance(v, float) else str(v)

"""HDF5 run store for finite-width ensembles (Store room; schema in ``docs/runs.md``).

One file holds an ensemble: root attributes carry the configuration (TOML text), the SGD
settings and versions; each run is a group ``/runs/w{n}_r{replica}`` with one dataset per
recorded observable (``time``, ``loss_train``, ``yhat_probe`` …), dimension labels (HDF5
dimension scales on ``time``, plus a ``dims`` attribute) and units.  A run is written into a
temporary group and renamed when complete, so appending never rewrites other runs and an
interrupted ensemble resumes by skipping completed groups (left-over temporary groups are
deleted).  :func:`read` returns an ``xarray.Dataset`` with dims (width, replica, time, …).
Imports numpy, h5py (lazily), xarray (lazily) and mfpde.errors.
"""
from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

import numpy as np

from mfpde.errors import StoreError

FORMAT = "mfpde-runs"
SCHEMA_VERSION = 1
_DIMS = {"yhat_probe": ("time", "probe", "output")}
_LABELS = {
    "time": "training time t = k ε", "loss_train": "loss on the training law", "loss_test": "loss on the test law",
    "error_train": "classification error on the training law", "error_test": "classification error on the test law",
    "yhat_probe": "network output at the probe points",
}


def run_name(width: int, replica: int) -> str:
    return f"w{int(width)}_r{int(replica)}"


def _dims_of(name: str, arr: np.ndarray) -> tuple[str, ...]:
    if name in _DIMS:
        return _DIMS[name]
    if name.startswith("quantiles_"):
        return ("time", "quantile")
    if name.startswith("coupling_"):
        return ("time",)
    if name.startswith("singular_values_"):
        return ("time", "singular_value")
    return ("time",) + tuple(f"{name}_dim_{i}" for i in range(1, arr.ndim))


class RunStore:
    """An ensemble file: ``with RunStore(path, "a", attrs=...) as store: store.write(run)``."""

    def __init__(self, path: str | Path, mode: str = "r", attrs: dict[str, Any] | None = None):
        import h5py

        self.path = Path(path)
        try:
            self.f = h5py.File(self.path, mode)
        except (OSError, ValueError) as exc:
            raise StoreError(f"cannot open run store {str(self.path)!r}: {exc}") from None
        if mode != "r":
            if "format" not in self.f.attrs:
                self.f.attrs["format"] = FORMAT
                self.f.attrs["schema_version"] = SCHEMA_VERSION
                self.f.attrs["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
                for k, v in (attrs or {}).items():
                    self.f.attrs[k] = v
            elif attrs and "config" in attrs and self.f.attrs.get("config") != attrs["config"]:
                self.f.close()
                raise StoreError(f"{str(self.path)!r} holds runs of a different configuration; use another file or --overwrite")
            runs = self.f.require_group("runs")
            for name in list(runs):
                if name.startswith(".tmp"):
                    del runs[name]
        elif self.f.attrs.get("format") != FORMAT:
            self.f.close()
            raise StoreError(f"{str(self.path)!r} is not an mfpde run store (format attribute missing)")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.f.close()
        except Exception:  # pragma: no cover
            pass

    def completed(self) -> set[str]:
        runs = self.f.get("runs")
        if runs is None:
            return set()
        return {n for n in runs if not n.startswith(".tmp") and runs[n].attrs.get("status") in ("completed", "blow-up")}

    def write(self, run) -> None:
        """Append one FiniteRun (temporary group, then rename; flushed)."""
        runs = self.f.require_group("runs")
        name = run_name(run.width[-1], run.replica)
        tmp = f".tmp_{name}"
        if tmp in runs:
            del runs[tmp]
        g = runs.create_group(tmp)
        t = g.create_dataset("time", data=np.asarray(run.times, float))
        t.attrs["units"] = "1"
        t.attrs["long_name"] = _LABELS["time"]
        t.make_scale("time")
        for key, vals in run.observables.items():
            arr = np.asarray(vals, dtype=float)
            ds = g.create_dataset(key, data=arr, compression="gzip" if arr.size > 4096 else None)
            dims = _dims_of(key, arr)
            ds.attrs["dims"] = ",".join(dims)
            ds.attrs["units"] = "1"
            ds.attrs["long_name"] = _LABELS.get(key, key.replace("_", " "))
            ds.dims[0].attach_scale(t)
            for i, dim in enumerate(dims):
                ds.dims[i].label = dim
        g.attrs["width"] = int(run.width[-1])
        g.attrs["widths"] = np.asarray(run.width, dtype=np.int64)
        g.attrs["replica"] = int(run.replica)
        g.attrs["status"] = run.status
        g.attrs["message"] = run.message
        g.attrs["seed"] = json.dumps(run.seed)
        for k, v in run.stats.items():
            g.attrs[f"stats_{k}"] = v
        if name in runs:
            del runs[name]
        runs.move(tmp, name)
        self.f.flush()


def read(path: str | Path):
    """The ensemble as an ``xarray.Dataset`` with dims (width, replica, time, …); NaN-padded."""
    import xarray as xr

    p = Path(path)
    if not p.exists():
        raise StoreError(f"run store {str(p)!r} does not exist")
    try:
        with RunStore(p, "r") as store:
            f = store.f
            attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}
            runs = {}
            for name in store.completed():
                g = f["runs"][name]
                runs[(int(g.attrs["width"]), int(g.attrs["replica"]))] = (
                    {k: g[k][()] for k in g}, {k: g.attrs[k] for k in g.attrs})
    except StoreError:
        raise
    except Exception as exc:
        raise StoreError(f"cannot read run store {str(p)!r} (truncated or damaged?): {exc.__class__.__name__}: {exc}") from None
    if not runs:
        raise StoreError(f"run store {str(p)!r} holds no completed runs")
    widths = sorted({w for w, _ in runs})
    replicas = sorted({r for _, r in runs})
    longest = max(runs.values(), key=lambda v: len(v[0]["time"]))[0]["time"]
    T = len(longest)
    names = sorted({k for v in runs.values() for k in v[0] if k != "time"})
    data_vars = {}
    for key in names:
        sample = next(v[0][key] for v in runs.values() if key in v[0])
        shape = (len(widths), len(replicas), T) + sample.shape[1:]
        arr = np.full(shape, np.nan)
        for (w, r), (d, _) in runs.items():
            if key in d:
                arr[widths.index(w), replicas.index(r), :len(d[key])] = d[key]
        dims = ("width", "replica") + _dims_of(key, sample)
        data_vars[key] = (dims, arr, {"long_name": _LABELS.get(key, key.replace("_", " "))})
    status = np.full((len(widths), len(replicas)), "", dtype=object)
    for (w, r), (_, a) in runs.items():
        status[widths.index(w), replicas.index(r)] = str(a.get("status", ""))
    data_vars["status"] = (("width", "replica"), status.astype(str))
    coords = {"width": ("width", np.asarray(widths)), "replica": ("replica", np.asarray(replicas)),
              "time": ("time", np.asarray(longest, float))}
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)

"""HDF5 run store for finite-width ensembles (Store room; schema in ``docs/runs.md``).

One file holds an ensemble: root attributes carry the configuration (TOML text), the SGD
settings and versions; each run is a group ``/runs/w{n}_r{replica}`` with one dataset per
recorded observable (``time``, ``loss_train``, ``yhat_probe`` …), dimension labels (HDF5
dimension scales on ``time``, plus a ``dims`` attribute), units and Fletcher-32 checksums.
Appending a run is atomic: it is written into a copy of the store that is fsynced and renamed
over it (an HDF5 file held open for writing does not survive SIGKILL), so an interrupted
ensemble leaves the last complete store and resumes by skipping completed runs.
:func:`read` returns an ``xarray.Dataset`` with dims (width, replica, time, …), skipping
(with a :class:`StoreWarning`) runs whose data are damaged.
:func:`write_checkpoint` / :func:`load_checkpoint` store the checkpoint of one run in
progress (attributes + arrays in an HDF5 file, written atomically: temporary file, fsync,
rename).  Imports numpy, h5py (lazily), xarray (lazily) and mfpde.errors.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from mfpde.errors import StoreError

FORMAT = "mfpde-runs"
LIBVER = ("v110", "latest")   # checksummed superblock and object headers (HDF5 >= 1.10)
CHECKPOINT_FORMAT = "mfpde-sgd-checkpoint"
SCHEMA_VERSION = 1
_DIMS = {"yhat_probe": ("time", "probe", "output")}
_LABELS = {
    "time": "training time t = k ε", "loss_train": "loss on the training law", "loss_test": "loss on the test law",
    "error_train": "classification error on the training law", "error_test": "classification error on the test law",
    "yhat_probe": "network output at the probe points",
}


class StoreWarning(UserWarning):
    """Part of a store could not be read (the rest was)."""


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
    """An ensemble file: ``with RunStore(path, "a", attrs=...) as store: store.write(run)``.

    Mode ``"r"`` keeps the file open for reading (``store.f``).  Mode ``"a"`` never holds the
    store open while runs train: every change (creating the store, appending a run) is made
    on a copy that is fsynced and renamed over the store, so a process killed at any moment
    leaves the previous complete store (HDF5 files open for writing are not crash-safe).
    """

    def __init__(self, path: str | Path, mode: str = "r", attrs: dict[str, Any] | None = None):
        import h5py

        self.path = Path(path)
        self.mode = mode
        self.f = None
        if mode == "r":
            self.f = _open(self.path)
            if self.f.attrs.get("format") != FORMAT:
                self.f.close()
                raise StoreError(f"{str(self.path)!r} is not an mfpde run store (format attribute missing)")
            return
        if mode not in ("a", "w"):
            raise ValueError(f"RunStore mode must be 'r', 'a' or 'w', got {mode!r}")
        for left in self.path.parent.glob(f".{self.path.name}.*.tmp"):   # copies of a killed writer
            left.unlink()
        if mode == "w" and self.path.exists():
            self.path.unlink()
        if self.path.exists():
            with _open(self.path) as f:
                if f.attrs.get("format") != FORMAT:
                    raise StoreError(f"{str(self.path)!r} is not an mfpde run store (format attribute missing); "
                                     "use another file or --overwrite")
                if attrs and "config" in attrs and f.attrs.get("config") != attrs["config"]:
                    raise StoreError(f"{str(self.path)!r} holds runs of a different configuration; use another file or --overwrite")
        else:
            def create(f):
                f.attrs["format"] = FORMAT
                f.attrs["schema_version"] = SCHEMA_VERSION
                f.attrs["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
                for k, v in (attrs or {}).items():
                    f.attrs[k] = v
                f.require_group("runs")
            self._commit(create)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self.f is not None:
            try:
                self.f.close()
            except Exception:  # pragma: no cover
                pass
            self.f = None

    def completed(self) -> set[str]:
        if self.f is not None:
            return _completed(self.f)
        with _open(self.path) as f:
            return _completed(f)

    def _commit(self, change) -> None:
        """Apply ``change(h5file)`` to a copy of the store, fsync it and rename it over the store."""
        import h5py

        directory = self.path.parent if str(self.path.parent) else Path(".")
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=directory)
        os.close(fd)
        try:
            if self.path.exists():
                shutil.copyfile(self.path, tmp)
            with h5py.File(tmp, "a" if self.path.exists() else "w", libver=LIBVER) as f:
                runs = f.require_group("runs")
                for name in list(runs):
                    if name.startswith(".tmp"):   # left by stores written in place (older versions)
                        del runs[name]
                change(f)
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, self.path)
            _fsync_dir(directory)
        except OSError as exc:
            raise StoreError(f"cannot write run store {str(self.path)!r}: {exc}") from None
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def write(self, run) -> None:
        """Append one FiniteRun (atomically: see the class docstring)."""
        if self.mode == "r":
            raise StoreError(f"run store {str(self.path)!r} is open read-only")
        self._commit(lambda f: _write_run(f, run))


def _open(path: Path):
    import h5py

    if not path.is_file():
        raise StoreError(f"run store {str(path)!r} does not exist")
    try:
        return h5py.File(path, "r")
    except Exception as exc:  # h5py raises OSError, ValueError, … on damaged files
        raise StoreError(f"cannot open run store {str(path)!r} (truncated or damaged?): {exc}") from None


def _completed(f) -> set[str]:
    runs = f.get("runs")
    if runs is None:
        return set()
    return {n for n in runs if not n.startswith(".tmp") and runs[n].attrs.get("status") in ("completed", "blow-up")}


def _checksum(arr: np.ndarray) -> dict:
    """Fletcher-32 checksums on every non-empty array: a flipped byte is an error, not a wrong number."""
    return {"fletcher32": True} if arr.ndim >= 1 and arr.size > 0 else {}


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - not every platform opens folders
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_run(f, run) -> None:
    runs = f.require_group("runs")
    name = run_name(run.width[-1], run.replica)
    tmp = f".tmp_{name}"
    if tmp in runs:
        del runs[tmp]
    g = runs.create_group(tmp)
    times = np.asarray(run.times, float)
    t = g.create_dataset("time", data=times, **_checksum(times))
    t.attrs["units"] = "1"
    t.attrs["long_name"] = _LABELS["time"]
    t.make_scale("time")
    for key, vals in run.observables.items():
        arr = np.asarray(vals, dtype=float)
        ds = g.create_dataset(key, data=arr, compression="gzip" if arr.size > 4096 else None, **_checksum(arr))
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
            damaged = []
            for name in sorted(store.completed()):
                try:   # one damaged run does not hide the others
                    g = f["runs"][name]
                    runs[(int(g.attrs["width"]), int(g.attrs["replica"]))] = (
                        {k: g[k][()] for k in g}, {k: g.attrs[k] for k in g.attrs})
                except Exception as exc:  # h5py raises many types on damaged data
                    damaged.append(f"{name} ({exc.__class__.__name__})")
    except StoreError:
        raise
    except Exception as exc:
        raise StoreError(f"cannot read run store {str(p)!r} (truncated or damaged?): {exc.__class__.__name__}: {exc}") from None
    if not runs:
        why = f"; damaged: {', '.join(damaged)}" if damaged else ""
        raise StoreError(f"run store {str(p)!r} holds no readable completed runs{why}")
    if damaged:
        import warnings

        warnings.warn(f"run store {str(p)!r}: skipped damaged runs {', '.join(damaged)}", StoreWarning, stacklevel=2)
        attrs["damaged_runs"] = ", ".join(damaged)
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


# ----------------------------------------------------------------------------- checkpoints
def checkpoint_dir(store: str | Path) -> Path:
    """The folder of the per-run checkpoints of a run store: ``RUNS.h5.ckpt/``."""
    store = Path(store)
    return store.with_name(store.name + ".ckpt")


def write_checkpoint(path: str | Path, attrs: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Write a checkpoint atomically (temporary file in the same folder, fsync, rename).

    ``attrs`` are scalars or strings; ``arrays`` are stored as datasets (names with ``/``
    create groups).  A process killed at any moment leaves the previous checkpoint intact.
    """
    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for left in path.parent.glob(f".{path.name}.*.tmp"):   # a writer killed mid-write (one writer per checkpoint)
        left.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with h5py.File(tmp, "w", libver=LIBVER) as f:
            f.attrs["format"] = CHECKPOINT_FORMAT
            for k, v in attrs.items():
                f.attrs[k] = v
            for k, v in arrays.items():
                v = np.asarray(v)
                f.create_dataset(k, data=v, **_checksum(v))
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)   # the rename itself survives a crash of the machine
        finally:
            os.close(dfd)
    except OSError as exc:
        raise StoreError(f"cannot write checkpoint {str(path)!r}: {exc}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_checkpoint(path: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(attributes, arrays) of a checkpoint; StoreError naming the file if missing or damaged."""
    import h5py

    p = Path(path)
    if not p.is_file():
        raise StoreError(f"checkpoint {str(p)!r} does not exist")
    try:
        with h5py.File(p, "r") as f:
            if f.attrs.get("format") != CHECKPOINT_FORMAT:
                raise StoreError(f"{str(p)!r} is not an mfpde SGD checkpoint (format attribute missing)")
            attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}
            arrays: dict[str, np.ndarray] = {}

            def visit(name, obj):
                if isinstance(obj, h5py.Dataset):
                    arrays[name] = obj[()]
            f.visititems(visit)
    except StoreError:
        raise
    except Exception as exc:  # h5py raises many types on damaged files
        raise StoreError(f"cannot read checkpoint {str(p)!r} (truncated or damaged?): "
                         f"{exc.__class__.__name__}") from None
    return attrs, arrays

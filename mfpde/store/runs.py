"""HDF5 run store for finite-width ensembles (Store room; schema in ``docs/runs.md``).

One file holds an ensemble: root attributes carry the configuration (TOML text), the SGD
settings and versions; each run is a group ``/runs/w{n}_r{replica}`` with one dataset per
recorded observable (``time``, ``loss_train``, ``yhat_probe`` …), dimension labels (HDF5
dimension scales on ``time``, plus a ``dims`` attribute), units and Fletcher-32 checksums.
Appending a run is atomic: the store's image is changed in memory and written with
:func:`mfpde.store.atomic.write_bytes` (temporary file, fsync, rename; an HDF5 file held open for
writing does not survive SIGKILL, and one flushed onto a full disk crashed the interpreter),
so an interrupted ensemble leaves the last complete store and resumes by skipping completed
runs.  A writer holds an advisory lock on ``STORE.lock`` (``fcntl.flock``) while the store is
open for appending; a second writer is refused with a StoreError naming the first one's pid.
The root attributes and every run's attributes carry a SHA-256 (:func:`mfpde.store.atomic.seal`):
a damaged root is a StoreError, a damaged run is skipped like one whose data are damaged.
:func:`read` returns an ``xarray.Dataset`` with dims (width, replica, time, …), skipping
(with a :class:`StoreWarning` and a ``damaged_runs`` attribute) damaged runs.
:func:`write_checkpoint` / :func:`load_checkpoint` store the checkpoint of one run in
progress (attributes, sealed, + arrays in an HDF5 file, written atomically).  Imports numpy,
h5py (lazily), xarray (lazily), mfpde.errors, mfpde.checks, mfpde.store.atomic, mfpde.store.netcdf
(the shared schema pieces) and mfpde.system.laws (the quantile levels).
"""
from __future__ import annotations

import datetime as _dt
import errno
import io as _io
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from mfpde import checks

from mfpde.store import atomic, netcdf
from mfpde.errors import StoreError
from mfpde.system.laws import QUANTILES

FORMAT = "mfpde-runs"
LIBVER = ("v110", "latest")   # checksummed superblock and object headers (HDF5 >= 1.10)
CHECKPOINT_FORMAT = "mfpde-sgd-checkpoint"
SCHEMA_VERSION = 1
_DIMS = {"yhat_probe": ("time", "probe", "output")}
_LABELS = {
    "time": netcdf.TIME_LABEL,
    "loss_train": "loss on the training law", "loss_test": "loss on the test law",
    "error_train": "classification error on the training law", "error_test": "classification error on the test law",
    "yhat_probe": "network output ŷ(t, x) at the probe points",
}


def long_name(key: str) -> str:
    """The long_name of a recorded observable (a sentence, never the variable's name)."""
    if key in _LABELS:
        return _LABELS[key]
    for prefix, text in (("quantiles_", "quantiles of the law of {} over the neurons (node-weighted)"),
                         ("coupling_", "RMS coupling error of {} to its ideal particles (tracers)")):
        if key.startswith(prefix):
            return text.format(key[len(prefix):])
    for prefix, text in (("h_spread_", "spread of the pre-activations of hidden layer {0}: the mean over the probe "
                                       "points of their standard deviation across the layer's neurons"),
                         ("singular_values_", "largest singular values of the pre-activation matrix H_{0}/√n_{0} "
                                              "of hidden layer {0} on the probe points")):
        if key.startswith(prefix) and key[len(prefix):].isdigit():
            return text.format(key[len(prefix):])
    return f"recorded observable {key}"


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

    Mode ``"r"`` keeps the file open for reading (``store.f``).  Modes ``"a"`` (append) and
    ``"w"`` (start afresh: the store and its checkpoint folder are removed) take the lock
    ``STORE.lock`` until :meth:`close`, and never hold the store open while runs train:
    every change (creating the store, appending a run) is made on an in-memory image that
    is written atomically over the store, so a process killed at any moment leaves the
    previous complete store (HDF5 files open for writing are not crash-safe).
    """

    def __init__(self, path: str | Path, mode: str = "r", attrs: dict[str, Any] | None = None):
        self.path = Path(path)
        self.mode = checks.choice(mode, ("r", "a", "w"), "mode", what="run store mode")
        self.f = None
        self._lock = None
        if mode == "r":
            self.f = _open(self.path)
            if self.f.attrs.get("format") != FORMAT:
                self.f.close()
                raise StoreError(f"{str(self.path)!r} is not an mfpde run store (format attribute missing)")
            return
        self._lock = _Lock(self.path)
        try:
            self._prepare(mode, attrs)
        except BaseException:
            self.close()
            raise

    def _prepare(self, mode: str, attrs: dict[str, Any] | None) -> None:
        if mode == "w":
            if self.path.exists():
                self.path.unlink()
            ck = checkpoint_dir(self.path)
            if ck.is_dir():
                shutil.rmtree(ck)
        if self.path.exists():
            with _open(self.path) as f:
                if f.attrs.get("format") != FORMAT:
                    raise StoreError(f"{str(self.path)!r} is not an mfpde run store (format attribute missing); "
                                     "use another file or --overwrite")
                if attrs and "config" in attrs and f.attrs.get("config") != attrs["config"]:
                    raise StoreError(f"{str(self.path)!r} holds runs of a different configuration; use another file or --overwrite")
        else:
            def create(f):
                f.attrs[atomic.MARKER] = "sha256"
                f.attrs["format"] = FORMAT
                f.attrs["schema_version"] = SCHEMA_VERSION
                f.attrs["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
                for k, v in (attrs or {}).items():
                    f.attrs[k] = v
                atomic.seal(f.attrs)
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
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def completed(self) -> set[str]:
        """Names of the runs that are complete (or stopped by a blow-up) and undamaged; a
        damaged run is reported with a StoreWarning and is trained again by a resume."""
        if self.f is not None:
            return _completed(self.f, self.path)
        with _open(self.path) as f:
            return _completed(f, self.path)

    def _commit(self, change) -> None:
        """Apply ``change(h5file)`` to an in-memory image of the store and write it atomically."""
        import h5py

        if self._lock is None:
            raise StoreError(f"run store {str(self.path)!r} is not open for writing")
        try:
            image = self.path.read_bytes() if self.path.exists() else b""
        except OSError as exc:
            raise StoreError(f"cannot read run store {str(self.path)!r}: {exc.strerror or exc}") from None
        buf = _io.BytesIO(image)
        try:
            with h5py.File(buf, "r+" if image else "w", libver=LIBVER) as f:
                runs = f.require_group("runs")
                for name in list(runs):
                    if name.startswith(".tmp"):   # left by stores written in place (older versions)
                        del runs[name]
                change(f)
        except StoreError:
            raise
        except Exception as exc:  # h5py raises many types on damaged files
            raise StoreError(f"cannot update run store {str(self.path)!r} (damaged?): {exc.__class__.__name__}") from None
        atomic.write_bytes(self.path, buf.getbuffer(), what="run store ")

    def write(self, run) -> None:
        """Append one FiniteRun (atomically: see the class docstring)."""
        if self.mode == "r":
            raise StoreError(f"run store {str(self.path)!r} is open read-only")
        self._commit(lambda f: _write_run(f, run))


class _Lock:
    """An exclusive advisory lock (``fcntl.flock``) on ``STORE.lock``, which holds the pid of
    its owner and is removed on release.  A second writer is refused at once."""

    def __init__(self, store: Path):
        import fcntl

        self.path = store.with_name(store.name + ".lock")
        self.fd = None
        try:
            store.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise atomic.WriteError(f"cannot write run store {str(store)!r}: {exc.strerror or exc}") from None
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
            except OSError as exc:
                raise StoreError(f"cannot lock run store {str(store)!r}: cannot create {str(self.path)!r}: "
                                 f"{exc.strerror or exc}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    os.close(fd)   # no locks on this file system: go on unlocked, but say so
                    warnings.warn(f"cannot lock run store {str(store)!r} ({exc.strerror}); "
                                  "do not write it from two processes at once", StoreWarning, stacklevel=3)
                    return
                try:
                    owner = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
                except OSError:
                    owner = "?"
                os.close(fd)
                raise StoreError(f"run store {str(store)!r} is being written by another process (pid {owner}); "
                                 "wait for it to finish or write another file") from None
            try:   # the previous owner may have removed the file between our open and flock
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except OSError:
                same = False
            if same:
                break
            os.close(fd)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass   # e.g. a full disk: the lock holds all the same
        self.fd = fd

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            os.unlink(self.path)   # while still holding the lock (see the samestat check above)
        except OSError:
            pass
        os.close(self.fd)   # releases the lock
        self.fd = None


def _open(path: Path):
    """The store open for reading, its root attributes verified (StoreError naming the file)."""
    import h5py

    if not path.is_file():
        raise StoreError(f"run store {str(path)!r} does not exist")
    try:
        f = h5py.File(path, "r")
    except Exception as exc:  # h5py raises OSError, ValueError, … on damaged files
        raise StoreError(f"cannot open run store {str(path)!r} (truncated or damaged?): {exc}") from None
    try:
        atomic.verify(_attrs(f.attrs), f"run store {str(path)!r}")
    except StoreError:
        f.close()
        raise
    except Exception as exc:
        f.close()
        raise StoreError(f"cannot read the attributes of run store {str(path)!r} (damaged?): "
                         f"{exc.__class__.__name__}") from None
    return f


def _attrs(attrs) -> dict:
    return {k: attrs[k] for k in attrs}


def _run_attrs(g, name: str, sealed: bool) -> dict:
    """A run group's attributes, verified; StoreError if they are damaged."""
    a = _attrs(g.attrs)
    if not atomic.verify(a, f"run {name}") and sealed:
        raise StoreError(f"run {name}: the metadata checksum is missing (damaged)")
    return a


def _finished(a: dict) -> bool:
    return checks.is_one_of(a.get("status"), ("completed", "blow-up"))


def _completed(f, path: Path | None = None) -> set[str]:
    runs = f.get("runs")
    if runs is None:
        return set()
    sealed = atomic.MARKER in f.attrs
    done, damaged = set(), []
    for n in runs:
        if n.startswith(".tmp"):
            continue
        try:
            if _finished(_run_attrs(runs[n], n, sealed)):
                done.add(n)
        except Exception as exc:  # h5py raises many types on damaged data
            damaged.append(f"{n} ({_why(exc)})")
    if damaged:
        warnings.warn(f"run store {str(path or f.filename)!r}: damaged runs {', '.join(damaged)} "
                      "count as not completed", StoreWarning, stacklevel=3)
    return done


def _why(exc: Exception) -> str:
    return "metadata checksum mismatch" if isinstance(exc, StoreError) else exc.__class__.__name__


_checksum = atomic.fletcher32   # Fletcher-32 on every non-empty array


def _write_run(f, run) -> None:
    runs = f.require_group("runs")
    name = run_name(run.width[-1], run.replica)
    tmp = f".tmp_{name}"
    if tmp in runs:
        del runs[tmp]
    g = runs.create_group(tmp)
    g.attrs[atomic.MARKER] = "sha256"
    times = np.asarray(run.times, float)
    t = g.create_dataset("time", data=times, **_checksum(times))
    t.attrs["units"] = "1"
    t.attrs["long_name"] = long_name("time")
    t.make_scale("time")
    errors = netcdf.records_errors(getattr(getattr(run, "system", None), "problem", None))
    for key, vals in run.observables.items():
        if key in netcdf.ERRORS and not errors:
            continue
        arr = np.asarray(vals, dtype=float)
        ds = g.create_dataset(key, data=arr, compression="gzip" if arr.size > 4096 else None, **_checksum(arr))
        dims = _dims_of(key, arr)
        ds.attrs["dims"] = ",".join(dims)
        ds.attrs["units"] = "1"
        ds.attrs["long_name"] = long_name(key)
        ds.dims[0].attach_scale(t)
        for i, dim in enumerate(dims):
            ds.dims[i].label = dim
    if any(k.startswith("quantiles_") for k in run.observables):
        g.attrs["quantile_levels"] = np.asarray(QUANTILES, float)
    probes = _probes(run)
    if probes is not None:
        px = g.create_dataset(PROBES, data=probes, **_checksum(probes))
        px.attrs.update({"dims": "probe,input_dim", "units": "1", "long_name": "probe input x"})
    g.attrs["width"] = int(run.width[-1])
    g.attrs["widths"] = np.asarray(run.width, dtype=np.int64)
    g.attrs["replica"] = int(run.replica)
    g.attrs["status"] = run.status
    g.attrs["message"] = run.message
    g.attrs["seed"] = json.dumps(run.seed)
    for k, v in run.stats.items():
        g.attrs[f"stats_{k}"] = v
    atomic.seal(g.attrs)
    if name in runs:
        del runs[name]
    runs.move(tmp, name)


PROBES = "probe_x"   # a run group's probe points (not an observable)


def _probes(run):
    system = getattr(run, "system", None)
    x = getattr(getattr(system, "problem", None), "probes", None)
    return None if x is None or not len(x) or "yhat_probe" not in run.observables else np.asarray(x, float)


def read(path: str | Path):
    """The ensemble as an ``xarray.Dataset`` with dims (width, replica, time, …); NaN-padded.

    Follows the schema of limit results (``docs/output.md``): ``Conventions``, units and
    long_names, the probe coordinates (:func:`mfpde.store.netcdf.probe_coords`), the labelled
    ``quantile`` coordinate, and ``error_*`` only for a classification loss."""
    import xarray as xr

    p = Path(path)
    if not p.exists():
        raise StoreError(f"run store {str(p)!r} does not exist")
    try:
        with RunStore(p, "r") as store:
            f = store.f
            attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()
                     if k not in atomic.CHECKSUM_KEYS}
            sealed = atomic.MARKER in f.attrs
            runs = {}
            damaged = []
            group = f.get("runs")
            for name in sorted(n for n in (group if group is not None else ()) if not n.startswith(".tmp")):
                try:   # one damaged run does not hide the others
                    g = group[name]
                    a = _run_attrs(g, name, sealed)
                    if not _finished(a):
                        continue
                    runs[(int(a["width"]), int(a["replica"]))] = ({k: g[k][()] for k in g}, a)
                except Exception as exc:  # h5py raises many types on damaged data
                    damaged.append(f"{name} ({_why(exc)})")
    except StoreError:
        raise
    except Exception as exc:
        raise StoreError(f"cannot read run store {str(p)!r} (truncated or damaged?): {exc.__class__.__name__}: {exc}") from None
    if not runs:
        why = f"; damaged: {', '.join(damaged)}" if damaged else ""
        raise StoreError(f"run store {str(p)!r} holds no readable completed runs{why}")
    if damaged:
        warnings.warn(f"run store {str(p)!r}: skipped damaged runs {', '.join(damaged)}", StoreWarning, stacklevel=2)
        attrs["damaged_runs"] = ", ".join(damaged)
    widths = sorted({w for w, _ in runs})
    replicas = sorted({r for _, r in runs})
    longest = max(runs.values(), key=lambda v: len(v[0]["time"]))[0]["time"]
    T = len(longest)
    names = sorted({k for v in runs.values() for k in v[0] if k not in ("time", PROBES)})   # the writer decided
    data_vars = {}
    for key in names:
        sample = next(v[0][key] for v in runs.values() if key in v[0])
        shape = (len(widths), len(replicas), T) + sample.shape[1:]
        arr = np.full(shape, np.nan)
        for (w, r), (d, _) in runs.items():
            if key in d:
                arr[widths.index(w), replicas.index(r), :len(d[key])] = d[key]
        dims = ("width", "replica") + _dims_of(key, sample)
        data_vars[key] = (dims, arr, {"long_name": long_name(key), "units": "1"})
    status = np.full((len(widths), len(replicas)), "", dtype=object)
    for (w, r), (_, a) in runs.items():
        status[widths.index(w), replicas.index(r)] = str(a.get("status", ""))
    data_vars["status"] = (("width", "replica"), status.astype(str), {"long_name": "status of the run (completed, blow-up)"})
    coords = {"width": ("width", np.asarray(widths)), "replica": ("replica", np.asarray(replicas)),
              "time": ("time", np.asarray(longest, float))}
    first = [d for d, _ in runs.values()]
    probes = next((d[PROBES] for d in first if PROBES in d), None)
    if probes is not None:
        coords.update(netcdf.probe_coords(probes))
    if any(k.startswith("quantiles_") for k in names):
        levels = next((a["quantile_levels"] for _, a in runs.values() if "quantile_levels" in a), None)
        size = next(data_vars[k][1].shape[-1] for k in names if k.startswith("quantiles_"))
        coord = netcdf.quantile_coord(size, levels)
        if coord is not None:
            coords["quantile"] = coord
    return netcdf.conventions(xr.Dataset(data_vars, coords=coords, attrs=attrs))


# ----------------------------------------------------------------------------- checkpoints
def checkpoint_dir(store: str | Path) -> Path:
    """The folder of the per-run checkpoints of a run store: ``RUNS.h5.ckpt/``."""
    store = Path(store)
    return store.with_name(store.name + ".ckpt")


def write_checkpoint(path: str | Path, attrs: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Write a checkpoint atomically (:func:`mfpde.store.atomic.write_bytes` of an in-memory HDF5 image).

    ``attrs`` are scalars or strings (sealed by a SHA-256: a changed digit of the RNG state
    is an error, not another run); ``arrays`` are stored as datasets with Fletcher-32
    checksums (names with ``/`` create groups).  A process killed at any moment leaves the
    previous checkpoint intact.
    """
    import h5py

    buf = _io.BytesIO()
    with h5py.File(buf, "w", libver=LIBVER) as f:
        f.attrs[atomic.MARKER] = "sha256"
        f.attrs["format"] = CHECKPOINT_FORMAT
        for k, v in attrs.items():
            f.attrs[k] = v
        atomic.seal(f.attrs)
        for k, v in arrays.items():
            v = np.asarray(v)
            f.create_dataset(k, data=v, **_checksum(v))
    atomic.write_bytes(path, buf.getbuffer(), what="checkpoint ")


def load_checkpoint(path: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(attributes, arrays) of a checkpoint; StoreError naming the file if missing or damaged."""
    import h5py

    p = Path(path)
    if not p.is_file():
        raise StoreError(f"checkpoint {str(p)!r} does not exist")
    try:
        with h5py.File(p, "r") as f:
            raw = _attrs(f.attrs)
            atomic.verify(raw, f"checkpoint {str(p)!r}")
            if raw.get("format") != CHECKPOINT_FORMAT:
                raise StoreError(f"{str(p)!r} is not an mfpde SGD checkpoint (format attribute missing)")
            attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in raw.items()
                     if k not in atomic.CHECKSUM_KEYS}
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

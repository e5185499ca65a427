"""Checkpoints of a running solve (Stepper room; written by a tracker at save times).

A :class:`Checkpoint` tracker writes, at every ``every``-th save time, everything needed to
continue: the state, the time, the solution recorded so far, the stepper's statistics and
its internal arrays (step size, FSAL stage, … of adaptive steppers), and a fingerprint of
the problem and the solve settings.  What a stepper carries between calls is its own
business: :meth:`~mfpde.solvers.base.Stepper.state` names it (arrays go in the ``stepper``
group, the rest in the ``stepper_scalars`` attribute as JSON) and
:meth:`~mfpde.solvers.base.Stepper.restore` loads it back.  Files are HDF5 images built in
memory and written by :func:`mfpde.store.atomic.write_bytes` (temporary file, fsync,
rename), so a run killed at any moment leaves the previous checkpoint intact and a full disk
is one error, not a crash. Arrays carry Fletcher-32 checksums and the attributes a SHA-256
(:func:`mfpde.store.atomic.seal`): a changed digit of the time, statistics or step size is a
StoreError, not another result. ``integrate(..., resume=load(path))`` continues from it;
because fixed-step stage times are counted from the last save time and adaptive steppers
carry their state, the resumed run is bit-for-bit identical to an uninterrupted one.
Imports numpy, h5py (lazily), mfpde.errors and mfpde.store.atomic.
"""
from __future__ import annotations

import hashlib
import io as _io
import json
from pathlib import Path

import numpy as np

from mfpde.store import atomic
from mfpde.errors import StoreError
from mfpde.solvers.controller import Tracker

FORMAT = "mfpde-checkpoint"


def fingerprint(system, stepper, t_end: float, save_times) -> str:
    """Hash of the problem's configuration, the stepper settings and the save times."""
    from mfpde.checks import to_toml

    cfg = system.problem.config
    h = hashlib.sha256((to_toml(cfg) if cfg else repr(system.problem.name)).encode())
    h.update(json.dumps(stepper.describe(), sort_keys=True, default=str).encode())
    h.update(np.asarray(save_times, float).tobytes())
    h.update(repr(float(t_end)).encode())
    return h.hexdigest()


def _split_state(stepper) -> tuple[dict[str, np.ndarray], dict]:
    """The stepper's :meth:`state` as (arrays, JSON-ready scalars: None, bool, numbers, tuples of numbers)."""
    arrays, scalars = {}, {}
    for k, v in stepper.state().items():
        if isinstance(v, np.ndarray):
            arrays[k] = v
        elif v is None or isinstance(v, (bool, int, float)):
            scalars[k] = v
        elif isinstance(v, tuple) and all(isinstance(x, (int, float)) for x in v):
            scalars[k] = list(v)
        else:
            raise TypeError(f"stepper {stepper.name!r}: state entry {k!r} of type {type(v).__name__} cannot be saved")
    return arrays, scalars


def write(path, t: float, y: np.ndarray, sol, stepper, fp: str, index: int) -> None:
    import h5py

    buf = _io.BytesIO()
    with h5py.File(buf, "w", libver=("v110", "latest")) as f:   # checksummed object headers
        f.attrs[atomic.MARKER] = "sha256"
        f.attrs["format"] = FORMAT
        f.attrs["fingerprint"] = fp
        f.attrs["t"] = float(t)
        f.attrs["save_index"] = int(index)
        f.attrs["stats"] = json.dumps({k: v for k, v in stepper.stats.items()})
        arrays, scalars = _split_state(stepper)
        f.attrs["stepper_scalars"] = json.dumps(scalars)
        atomic.seal(f.attrs)
        _put(f, "y", y)
        _put(f, "times", np.asarray(sol.times, float))
        _put(f, "state_times", np.asarray(sol.state_times, float))
        if sol.states:
            _put(f, "states", np.stack(sol.states))
        g = f.create_group("observables")
        for k, v in sol.observables.items():
            _put(g, k, np.asarray(v, float))
        s = f.create_group("stepper")
        for k, v in arrays.items():
            _put(s, k, v)
    atomic.write_bytes(path, buf.getbuffer(), what="checkpoint ")


def _put(group, name, arr) -> None:
    """A dataset with a Fletcher-32 checksum (non-empty arrays): a flipped byte reads as an error."""
    arr = np.asarray(arr)
    group.create_dataset(name, data=arr, **atomic.fletcher32(arr))


def load(path) -> dict:
    """Read a checkpoint (StoreError naming the file if it is missing or damaged)."""
    import h5py

    p = Path(path)
    try:
        with h5py.File(p, "r") as f:
            atomic.verify({k: f.attrs[k] for k in f.attrs}, f"checkpoint {str(p)!r}")
            if f.attrs.get("format") != FORMAT:
                raise StoreError(f"{str(p)!r} is not an mfpde checkpoint")
            return {
                "fingerprint": str(f.attrs["fingerprint"]), "t": float(f.attrs["t"]),
                "save_index": int(f.attrs["save_index"]), "stats": json.loads(f.attrs["stats"]),
                "stepper_scalars": json.loads(f.attrs["stepper_scalars"]),
                "y": f["y"][()], "times": list(f["times"][()]), "state_times": list(f["state_times"][()]),
                "states": list(f["states"][()]) if "states" in f else [],
                "observables": {k: list(f["observables"][k][()]) for k in f["observables"]},
                "stepper": {k: f["stepper"][k][()] for k in f["stepper"]},
                "path": str(p),
            }
    except StoreError:
        raise
    except Exception as exc:
        raise StoreError(f"cannot read checkpoint {str(p)!r}: {exc.__class__.__name__}") from None


def restore_stepper(stepper, ck: dict) -> None:
    """Give ``stepper`` the state and statistics of checkpoint ``ck`` (StoreError if they do not fit)."""
    try:
        stepper.restore({**ck["stepper"], **ck["stepper_scalars"]})
    except ValueError as exc:
        raise StoreError(f"checkpoint {ck.get('path', '')!r}: {exc}") from None
    stepper.stats.update(ck["stats"])


class Checkpoint(Tracker):
    """Write a checkpoint at every ``every``-th save time."""

    def __init__(self, path, stepper, fp: str, every: int = 1):
        self.path, self.stepper, self.fp, self.every = Path(path), stepper, fp, max(1, int(every))
        self.index = 0

    def handle(self, t, y, solution):
        if self.index % self.every == 0:
            write(self.path, t, y, solution, self.stepper, self.fp, self.index)
        self.index += 1

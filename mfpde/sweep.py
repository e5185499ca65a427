"""Parameter sweeps on dask.distributed: a base configuration × axes → one result file per task.

A sweep description (TOML, ``docs/sweeps.md``) names a base configuration (a path or an
inline ``[base]`` table) and ``[[axis]]`` tables ``{key = "schedules.weights", values = [...]}``
combined as a Cartesian product (``mode = "cross"``) or element by element (``"zip"``).  A
task is one limit solve (``task = "solve"``) or one SGD run (``"sgd"``: one per width and
replica of the point's ``[sgd]`` section).  Every point is validated by
:func:`mfpde.problem.config.from_dict` before anything is submitted.

Each task writes ``OUTDIR/<hash>.nc`` atomically (:func:`mfpde.store.netcdf.write`), where the hash is
taken over the task's resolved configuration, so a file is complete or absent and a re-run
skips what exists.  ``OUTDIR/index.json`` (written atomically) records every task's axis
values, status, attempts and error message; :func:`collect` combines the results into one
``xarray.Dataset`` with the sweep axes as dimensions.  Tasks run on a
``distributed.LocalCluster`` (one thread and one Numba thread per worker process) or on a
running cluster.  This module drives whole pipelines, so it may import every room of mfpde;
dask and distributed are imported lazily (the ``sweep`` extra).
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import itertools
import json
import logging
import os
import re
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from mfpde import checks
from mfpde.problem import config as cfg_mod
from mfpde.errors import ConfigError, StoreError

FORMAT = "mfpde-sweep"
SCHEMA_VERSION = 1
INDEX = "index.json"
COLLECTED = "sweep.nc"
SWEEP_KEYS = ("name", "base", "mode", "task", "axis")
AXIS_KEYS = ("key", "values", "name")
MODES = ("cross", "zip")
TASKS = ("solve", "sgd")
# dimension names the results already use; an axis may not take them
RESERVED = ("task", "width", "replica", "time", "probe", "output", "input_dim", "quantile", "singular_value")
# keys a base configuration may leave out (their defaults apply) and an axis may still set
_SECTION_KEYS = {"model": cfg_mod.MODEL_KEYS, "solver": cfg_mod.SOLVER_KEYS, "sgd": cfg_mod.SGD_KEYS,
                 "output": cfg_mod.OUTPUT_KEYS}
_SCHEDULE_KEY = re.compile(r"^(weights|biases|layer_\d+|bias_\d+)$")
_TASK_FILE = re.compile(r"^[0-9a-f]{16}\.nc$")


class TaskFailed(RuntimeError):
    """A task raised on its worker; the message is ``"ErrorType: message"`` on one line."""


# ----------------------------------------------------------------------------- description
@dataclass(frozen=True)
class Axis:
    name: str            # dimension name in the collected dataset (default: the key)
    key: str             # dotted configuration key, e.g. "schedules.weights"
    values: tuple        # plain TOML values


@dataclass(frozen=True)
class Task:
    """One unit of work: a resolved configuration (plus width and replica for SGD)."""

    hash: str
    kind: str                              # "solve" | "sgd"
    config: dict                           # resolved configuration table
    values: dict                           # axis name → value (of the first point that needs it)
    positions: tuple[tuple[int, ...], ...]  # where it goes in the collected dataset
    width: int | None = None
    replica: int | None = None
    base_dir: str | None = None

    @property
    def file(self) -> str:
        return f"{self.hash}.nc"


@dataclass(frozen=True)
class Sweep:
    name: str
    mode: str
    kind: str
    axes: tuple[Axis, ...]
    base: dict
    dims: tuple[str, ...]
    coords: dict                 # dim → list of coordinate values (JSON-able)
    tasks: dict                  # hash → Task (insertion order = submission order)
    source: str = "<sweep>"

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(self.coords[d]) for d in self.dims)


def load(path: str | Path) -> Sweep:
    """Read and validate a sweep description (every point is validated; nothing runs)."""
    from mfpde.problem.config import read_text

    p = Path(path)
    return loads(read_text(p, "sweep"), source=str(p), base_dir=p.parent)


def loads(text: str, source: str = "<string>", base_dir: str | Path | None = None) -> Sweep:
    return from_dict(checks.parse_toml(text, source), source, base_dir)


def from_dict(raw: Mapping, source: str = "<dict>", base_dir: str | Path | None = None) -> Sweep:
    """Validate a sweep table, resolve every point and build the task list."""
    if not isinstance(raw, Mapping):
        raise ConfigError("", "a sweep description must be a table")
    checks.check_keys(raw, SWEEP_KEYS, "")
    mode = checks.get(raw, "mode", "", checks.string, "cross", allowed=MODES)
    kind = checks.get(raw, "task", "", checks.string, "solve", allowed=TASKS)
    base, base_dir, base_name = _base(raw, source, base_dir)
    name = checks.get(raw, "name", "", checks.string, Path(source).stem if source.endswith(".toml") else base_name)
    axes = _axes(raw.get("axis", []), base, kind, mode)
    if mode == "cross":
        n_points = int(np.prod([len(a.values) for a in axes])) if axes else 1
        if n_points > checks.MAX_TASKS:
            raise ConfigError("axis", f"the cross product has {n_points} points, more than {checks.MAX_TASKS}")
        points = list(itertools.product(*[range(len(a.values)) for a in axes]))
    else:
        points = [(k,) * len(axes) for k in range(len(axes[0].values))] if axes else [()]
    absorbed = ("sgd.widths", "sgd.replicas") if kind == "sgd" else ()
    dim_axes = [i for i, a in enumerate(axes) if a.key not in absorbed]
    try:
        cfg_mod.from_dict(base, source=f"{source} [base]", base_dir=base_dir)
    except ConfigError as exc:
        raise ConfigError(exc.key, f"{_strip(exc)} (in the base configuration of {source})") from None
    resolved = []   # (point index tuple, values, Config)
    for idx in points:
        conf = json.loads(json.dumps(base))   # deep copy of plain data
        values = {}
        for a, i in zip(axes, idx):
            _set(conf, a.key, a.values[i])
            values[a.name] = a.values[i]
        try:
            c = cfg_mod.from_dict(conf, source=source, base_dir=base_dir)
            if kind == "sgd":
                _check_sgd(c)
        except ConfigError as exc:
            where = ", ".join(f"{k} = {_label(v)}" for k, v in values.items()) or "the base"
            raise ConfigError(exc.key, f"{_strip(exc)} (at the sweep point {where})") from None
        resolved.append((idx, values, conf, c.sgd))   # keep the options, not the data
    # dimensions and coordinates of the collected dataset
    if mode == "cross":
        dims = [axes[i].name for i in dim_axes]
        coords = {axes[i].name: [_coord(v) for v in axes[i].values] for i in dim_axes}
    else:
        dims = ["task"]
        coords = {"task": list(range(len(points)))}
    if kind == "sgd":
        widths = sorted({w for *_, sgd in resolved for w in sgd.widths})
        replicas = max(sgd.replicas for *_, sgd in resolved)
        dims += ["width", "replica"]
        coords.update(width=widths, replica=list(range(replicas)))
    tasks: dict[str, Task] = {}
    n_tasks = 0
    for idx, values, conf, sgd in resolved:
        prefix = tuple(idx[i] for i in dim_axes) if mode == "cross" else (idx[0] if idx else 0,)
        conf = _canonical(conf, kind)
        runs = [(None, None)] if kind == "solve" else \
            [(w, r) for w in sgd.widths for r in range(sgd.replicas)]
        for w, r in runs:
            n_tasks += 1
            if n_tasks > checks.MAX_TASKS:
                raise ConfigError("axis", f"the sweep has more than {checks.MAX_TASKS} tasks")
            pos = prefix if w is None else prefix + (coords["width"].index(w), r)
            h = task_hash(kind, conf, w, r)
            if h in tasks:   # the same run reached twice (e.g. overlapping width lists)
                old = tasks[h]
                if pos not in old.positions:
                    tasks[h] = Task(h, kind, old.config, old.values, old.positions + (pos,), w, r, old.base_dir)
                continue
            tasks[h] = Task(h, kind, conf, values, (pos,), w, r, None if base_dir is None else str(Path(base_dir).resolve()))
    return Sweep(name, mode, kind, tuple(axes), base, tuple(dims), coords, tasks, source)


def _base(raw, source, base_dir):
    if "base" not in raw:
        raise ConfigError("base", "is required: a path to a configuration file or an inline [base] table")
    b = raw["base"]
    if isinstance(b, str):
        p = Path(b)
        if not p.is_absolute() and base_dir is not None:
            p = Path(base_dir) / p
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError("base", f"configuration file {str(p)!r} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError("base", f"cannot read {str(p)!r}: {exc}") from None
        try:
            base = checks.parse_toml(text, repr(str(p)))
        except ConfigError as exc:
            raise ConfigError("base", str(exc)) from None
        base_dir, name = p.parent, p.stem
    elif isinstance(b, Mapping):
        base, name = dict(b), str(b.get("name", "sweep"))
    else:
        raise ConfigError("base", f"expected a path or a table, got {b!r}")
    base = _jsonable(base, "base")
    base.setdefault("name", name)
    if isinstance(base.get("output"), dict):
        base["output"].pop("path", None)   # every task names its own file
    return base, base_dir, name


def _axes(raw_axes, base: dict, kind: str, mode: str) -> list[Axis]:
    if not isinstance(raw_axes, list) or not all(isinstance(a, Mapping) for a in raw_axes):
        raise ConfigError("axis", "expected [[axis]] tables, each {key = \"section.key\", values = [...]}")
    axes: list[Axis] = []
    for i, t in enumerate(raw_axes):
        where = f"axis[{i}]"
        checks.check_keys(t, AXIS_KEYS, where)
        key = checks.string(checks.required(t, "key", where, "a dotted configuration key such as \"schedules.weights\""),
                            f"{where}.key")
        _check_path(base, key, f"{where}.key")
        name = checks.get(t, "name", where, checks.string, key)
        if not name or "/" in name or checks.is_one_of(name, RESERVED):
            raise ConfigError(f"{where}.name", f"{name!r} cannot name a dimension (reserved: {', '.join(RESERVED)}; no '/')")
        if checks.is_one_of(name, [a.name for a in axes]) or checks.is_one_of(key, [a.key for a in axes]):
            raise ConfigError(f"{where}.key", f"axis {key!r} (name {name!r}) is given twice")
        if kind == "solve" and key.split(".")[0] == "sgd":
            raise ConfigError(f"{where}.key", f"{key!r} has no effect on task = \"solve\"; use task = \"sgd\"")
        values = t.get("values")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}.values", f"axis {key!r} needs a non-empty list of values")
        values = [_jsonable(v, f"{where}.values") for v in values]
        if mode == "cross":
            seen = set()
            for v in values:
                s = json.dumps(v, sort_keys=True)
                if s in seen:
                    raise ConfigError(f"{where}.values", f"axis {key!r} lists {_label(v)} twice")
                seen.add(s)
        axes.append(Axis(name, key, tuple(values)))
    if mode == "zip" and axes and len({len(a.values) for a in axes}) > 1:
        lengths = ", ".join(f"{a.key}: {len(a.values)}" for a in axes)
        raise ConfigError("axis", f"mode = \"zip\" needs axes of equal length, got {lengths}")
    return axes


def _jsonable(v, key):
    """A plain copy of a TOML value (numbers, strings, booleans, lists, tables; no dates)."""
    try:
        return json.loads(json.dumps(checks._plain(v), allow_nan=True))
    except (TypeError, ValueError):
        raise ConfigError(key, "may hold numbers, strings, booleans, lists and tables only (no dates or times)") from None


def _check_path(base: dict, key: str, where: str) -> None:
    """The dotted key must exist in the base, or be a documented key whose default applies."""
    parts = key.split(".")
    if any(not p for p in parts):
        raise ConfigError(where, f"{key!r} is not a dotted configuration key")
    cur: Any = base
    for depth, part in enumerate(parts):
        if not isinstance(cur, Mapping):
            raise ConfigError(where, f"{key!r}: {'.'.join(parts[:depth])!r} is not a table in the base configuration")
        if part not in cur:
            section, rest = parts[0], parts[1:]
            known = (len(parts) == 1 and key in cfg_mod.TOP_KEYS) or \
                (len(rest) == 1 and rest[0] in _SECTION_KEYS.get(section, ())) or \
                (len(rest) == 1 and section == "schedules" and _SCHEDULE_KEY.match(rest[0]))
            if not known:
                raise ConfigError(where, f"{key!r} is not a key of the base configuration")
            return
        cur = cur[part]


def _set(conf: dict, key: str, value) -> None:
    """A sweep point's value at its dotted key: the one dotted-override mechanism
    (:func:`mfpde.api.set_key`), with the value as plain JSON data (tuples become lists)."""
    from mfpde.api import set_key

    set_key(conf, key, json.loads(json.dumps(value)))


def _check_sgd(c: cfg_mod.Config) -> None:
    """What :func:`mfpde.finite.train` would refuse (the one check, finite.check_arguments:
    an lr off the record-time grid among them), checked before submitting."""
    from mfpde import finite
    from mfpde.finite.ensemble import record_times

    sgd = c.sgd
    law = None
    if sgd.mode == "online":
        from mfpde.problem.data import make_law

        law = make_law(c.raw["data"]["train"], "data.train")
    lr = float(sgd.lr or c.solver.dt)
    for n in sgd.widths:
        finite.check_arguments(c.finite_problem, n, mode=sgd.mode, batch=sgd.batch, lr=lr, t_end=c.solver.t_end, law=law,
                               record_times=record_times(c))


def _canonical(conf: dict, kind: str) -> dict:
    """The configuration a task runs: widths and replicas are the task's own coordinates."""
    conf = json.loads(json.dumps(conf))
    if kind == "sgd" and "sgd" in conf:
        conf["sgd"].pop("widths", None)
        conf["sgd"].pop("replicas", None)
    return conf


def task_hash(kind: str, conf: Mapping, width=None, replica=None) -> str:
    """16 hex digits of sha256 over the task's canonical JSON (the result file's name)."""
    text = json.dumps({"task": kind, "config": conf, "width": width, "replica": replica},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _strip(exc: ConfigError) -> str:
    s = str(exc)
    return s[len(exc.key) + 2:] if exc.key and s.startswith(f"{exc.key}: ") else s


def _label(v) -> str:
    return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)


def _coord(v):
    return v if isinstance(v, (int, float, str)) else json.dumps(v, ensure_ascii=False)


# ----------------------------------------------------------------------------- one task
def run_task(task: Task, outdir: str, numba_threads: int | None = 1) -> dict:
    """Run one task on a worker and write ``OUTDIR/<hash>.nc``; a file already there is kept."""
    from mfpde.store import netcdf as io

    path = Path(outdir) / task.file
    t0 = time.perf_counter()
    if path.exists():   # a re-scheduled task whose first run finished (e.g. its worker died after the rename)
        return {"hash": task.hash, "seconds": 0.0, "skipped": True, "pid": os.getpid()}
    if numba_threads:
        import numba

        numba.set_num_threads(max(1, min(int(numba_threads), numba.config.NUMBA_NUM_THREADS)))
    try:
        c = cfg_mod.from_dict(task.config, source=f"sweep task {task.hash}", base_dir=task.base_dir)
        ds = _solve(c) if task.kind == "solve" else _train(c, task.width, task.replica)
        ds.attrs.update(sweep_task=task.hash, sweep_point=json.dumps(task.values, ensure_ascii=False))
        io.write(ds, path)
    except Exception as exc:   # the worker sends back a small, picklable error (no partial results)
        msg = str(exc).replace("\r", " ").replace("\n", " ")
        raise TaskFailed(f"{type(exc).__name__}: {msg}") from None
    return {"hash": task.hash, "seconds": time.perf_counter() - t0, "skipped": False, "pid": os.getpid()}


def _solve(c: cfg_mod.Config):
    import mfpde

    return mfpde.solve(c, progress=False).to_xarray()


def _train(c: cfg_mod.Config, width: int, replica: int):
    import mfpde
    from mfpde.finite import TrainOptions

    return run_to_xarray(mfpde.train(c, width, replica=replica), c, TrainOptions.from_config(c).lr)


def run_to_xarray(run, c: cfg_mod.Config, lr: float):
    """A finite run as a small dataset: every recorded observable over ``time``."""
    import xarray as xr

    from mfpde import __version__
    from mfpde.store import netcdf
    from mfpde.store.runs import _dims_of, long_name

    errors = netcdf.records_errors(c.problem)
    data_vars = {}
    for key, vals in run.observables.items():
        if key in netcdf.ERRORS and not errors:
            continue
        arr = np.asarray(vals, dtype=float)
        data_vars[key] = (_dims_of(key, arr), arr, {"long_name": long_name(key), "units": "1"})
    coords = {"time": ("time", np.asarray(run.times, float), {"long_name": long_name("time"), "units": "1"})}
    if c.problem.probes is not None and "yhat_probe" in data_vars:
        coords["probe_x"] = (("probe", "input_dim"), np.asarray(c.problem.probes, float), {"long_name": "probe input x"})
    attrs = {"title": f"mfpde finite-width SGD run: {c.problem.name}", "config": cfg_mod.to_toml(c.raw),
             "widths": json.dumps(list(run.width)), "replica": int(run.replica), "mode": c.sgd.mode,
             "batch": int(c.sgd.batch), "lr": lr, "status": run.status, "seed": json.dumps(run.seed),
             "mfpde_version": __version__,
             **{f"stats_{k}": (int(v) if isinstance(v, (int, np.integer)) else float(v)) for k, v in run.stats.items()}}
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


# ----------------------------------------------------------------------------- index
def _write_text_atomic(path: Path, text: str) -> bool:
    """Replace ``path`` by ``text`` (:func:`mfpde.store.atomic.write_text`: temporary file, fsync,
    rename); unchanged text is not rewritten.  Returns whether the file was written."""
    from mfpde.store import atomic

    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except (OSError, UnicodeDecodeError):   # absent or damaged: (re)write it
        pass
    atomic.write_text(path, text)
    return True


def read_index(outdir: str | Path) -> dict:
    """The sweep index of ``outdir`` (StoreError if missing or damaged)."""
    p = Path(outdir) / INDEX
    if not p.exists():
        raise StoreError(f"{str(p)!r} does not exist: {str(outdir)!r} is not a sweep directory")
    try:
        idx = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StoreError(f"cannot read {str(p)!r}: {exc}") from None
    if not isinstance(idx, dict) or idx.get("format") != FORMAT:
        raise StoreError(f"{str(p)!r} is not an mfpde sweep index")
    return idx


def _index(sweep: Sweep, entries: dict) -> dict:
    return {
        "format": FORMAT, "schema_version": SCHEMA_VERSION, "name": sweep.name, "mode": sweep.mode,
        "task": sweep.kind,
        "axes": [{"name": a.name, "key": a.key, "values": list(a.values)} for a in sweep.axes],
        "dims": list(sweep.dims), "coords": sweep.coords, "base": cfg_mod.to_toml(sweep.base),
        "tasks": entries,
    }


def _write_index(outdir: Path, sweep: Sweep, entries: dict) -> bool:
    text = json.dumps(_index(sweep, entries), indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    return _write_text_atomic(outdir / INDEX, text)


def _clean_temporaries(outdir: Path) -> None:
    """Remove temporary files left by writers that were killed (workers, a client)."""
    for p in outdir.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            p.unlink()


# ----------------------------------------------------------------------------- cluster
def worker_environ(numba_threads: int = 1) -> dict[str, str]:
    """Environment of LocalCluster worker processes: one Numba, OpenMP and BLAS thread each."""
    n = str(int(numba_threads))
    return {"NUMBA_NUM_THREADS": n, "OMP_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n, "MKL_NUM_THREADS": n}


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # pragma: no cover (not Linux)
        return os.cpu_count() or 1


@contextlib.contextmanager
def open_client(scheduler: str | None = None, workers: int | None = None, threads_per_worker: int = 1,
                numba_threads: int = 1, environ: Mapping[str, str] | None = None):
    """A ``distributed.Client``: to ``scheduler`` if given, else to a new LocalCluster of ``workers``
    processes (default: the cores) with ``worker_environ(numba_threads)`` (plus ``environ``)."""
    try:
        import dask
        from distributed import Client, LocalCluster
    except ImportError:
        raise ConfigError("", "mfpde sweep needs dask and distributed: pip install 'mfpde[sweep]'") from None
    if scheduler:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise ConfigError("--scheduler", f"cannot connect to {scheduler!r}: {exc}") from None
        with client:
            yield client
        return
    env = {**dask.config.get("distributed.nanny.pre-spawn-environ", {}), **worker_environ(numba_threads),
           **dict(environ or {})}
    with dask.config.set({"distributed.nanny.pre-spawn-environ": env}):
        # task failures are reported by the sweep itself, not as worker tracebacks
        cluster = LocalCluster(n_workers=int(workers or cores()), threads_per_worker=int(threads_per_worker),
                               processes=True, dashboard_address=None, silence_logs=logging.CRITICAL)
    with cluster, Client(cluster) as client:
        yield client


# ----------------------------------------------------------------------------- the sweep
@dataclass
class Report:
    total: int
    done: int
    failed: int
    ran: int                    # tasks submitted by this invocation
    collected: Path | None      # the collected file, if this invocation wrote it
    seconds: float = 0.0        # wall time from the first submission to the last result


def run(sweep: Sweep, outdir: str | Path, *, client=None, scheduler: str | None = None, workers: int | None = None,
        threads_per_worker: int = 1, numba_threads: int = 1, retries: int = 2, retry_failed: bool = False,
        progress: bool | None = None, say: Callable[..., Any] = print, collect_to: str | Path | None = None) -> Report:
    """Run every task of ``sweep`` whose result is not in ``outdir`` yet, then collect.

    ``client`` (a ``distributed.Client``) is used as is; otherwise one is opened with
    :func:`open_client`.  A failing task is submitted again up to ``retries`` times, then
    recorded as failed; tasks that failed in an earlier invocation are run again only with
    ``retry_failed``.
    """
    retries = checks.integer(retries, "--retries", lo=0)
    outdir = Path(outdir).resolve()
    outdir.mkdir(parents=True, exist_ok=True)
    with _lock(outdir):
        _clean_temporaries(outdir)
        try:
            old = read_index(outdir).get("tasks", {})
        except StoreError:
            old = {}
        entries = {}
        for h, t in sweep.tasks.items():
            prev = old.get(h, {}) if isinstance(old, dict) else {}
            e = {"values": t.values, "positions": [list(p) for p in t.positions], "file": t.file,
                 "status": "pending", "message": "", "attempts": 0}
            if t.width is not None:
                e.update(width=t.width, replica=t.replica)
            if (outdir / t.file).exists():
                e["status"] = "done"
                if prev.get("status") == "done":   # keep what the run that wrote it recorded
                    e.update({k: prev[k] for k in ("attempts", "seconds") if k in prev})
            elif prev.get("status") == "failed" and not retry_failed:
                e.update(status="failed", message=prev.get("message", ""), attempts=prev.get("attempts", 0))
            entries[h] = e
        todo = [h for h, e in entries.items() if e["status"] == "pending"]
        n_done = sum(e["status"] == "done" for e in entries.values())
        n_failed = sum(e["status"] == "failed" for e in entries.values())
        hint = " (run with --retry-failed to try them again)" if n_failed else ""
        say(f"mfpde: sweep {sweep.name!r}: {len(entries)} tasks ({sweep.kind}, {sweep.mode} over "
            f"{len(sweep.axes)} axes); {n_done} done, {n_failed} failed earlier{hint}; {len(todo)} tasks to run")
        changed = _write_index(outdir, sweep, entries)   # e.g. the sweep lost or gained points
        seconds = 0.0
        if todo:
            if client is not None:
                seconds = _execute(client, sweep, todo, entries, outdir, retries, numba_threads, progress, say)
            else:
                with open_client(scheduler, workers, threads_per_worker, numba_threads) as c:
                    say(f"mfpde: running on {_describe(c)}")
                    seconds = _execute(c, sweep, todo, entries, outdir, retries, numba_threads, progress, say)
            _clean_temporaries(outdir)
        n_done = sum(e["status"] == "done" for e in entries.values())
        n_failed = sum(e["status"] == "failed" for e in entries.values())
        target = Path(collect_to) if collect_to else outdir / COLLECTED
        collected = None
        if todo or changed or not target.exists():
            collected = collect(outdir, target)
            rate = f" ({len(todo) / seconds:.3g} tasks/s)" if todo and seconds > 0 else ""
            say(f"mfpde: {n_done} of {len(entries)} tasks done, {n_failed} failed{rate}; collected {collected}")
    return Report(len(entries), n_done, n_failed, len(todo), collected, seconds)


def _describe(client) -> str:
    info = client.scheduler_info()
    ws = info.get("workers", {})
    threads = sum(w.get("nthreads", 0) for w in ws.values())
    return f"{info.get('address', '?')} ({len(ws)} workers, {threads} threads)"


@contextlib.contextmanager
def _lock(outdir: Path):
    """One sweep at a time per directory (an advisory lock on OUTDIR/.lock)."""
    import fcntl

    with open(outdir / ".lock", "a") as f:   # "a": taking the lock does not touch the file
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise StoreError(f"{str(outdir)!r} is in use by another mfpde sweep") from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _execute(client, sweep: Sweep, todo: list[str], entries: dict, outdir: Path, retries: int,
             numba_threads: int, progress: bool | None, say) -> float:
    """Submit, retry and record (the index at most once a second, and at the end); returns the wall time."""
    import asyncio
    import concurrent.futures

    from distributed import as_completed

    def submit(h: str, attempt: int):
        entries[h]["attempts"] = attempt
        fut = client.submit(run_task, sweep.tasks[h], str(outdir), numba_threads,
                            key=f"mfpde-sweep-{h}-{attempt}-{token}", pure=False, retries=0)
        owner[fut.key] = h
        return fut

    owner: dict[str, str] = {}
    token = uuid.uuid4().hex[:8]   # keys unique to this invocation (a shared cluster may remember old ones)
    show = sys.stderr.isatty() if progress is None else progress
    bar = None
    if show:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc="sweep", unit="task", file=sys.stderr)
    counts = {"done": 0, "failed": 0}
    start = last = time.monotonic()
    ac = as_completed([submit(h, entries[h]["attempts"] + 1) for h in todo])
    try:
        for fut in ac:
            h = owner.pop(fut.key)
            e = entries[h]
            try:
                res = fut.result()
                e.update(status="done", message="", seconds=round(float(res["seconds"]), 4))
                counts["done"] += 1
            except (Exception, asyncio.CancelledError, concurrent.futures.CancelledError) as exc:
                e["message"] = _message(exc)
                if e["attempts"] <= retries:
                    ac.add(submit(h, e["attempts"] + 1))
                    continue
                e["status"] = "failed"
                counts["failed"] += 1
                say(f"mfpde: warning: task {h} ({_point(e)}) failed after {e['attempts']} attempts: {e['message']}")
            finally:
                fut.release()
            if bar is not None:
                bar.set_postfix(completed=counts["done"], failed=counts["failed"],
                                remaining=len(todo) - counts["done"] - counts["failed"], refresh=False)
                bar.update(1)
            if time.monotonic() - last > 1.0:
                _write_index(outdir, sweep, entries)
                last = time.monotonic()
    finally:
        if bar is not None:
            bar.close()
        _write_index(outdir, sweep, entries)
    return time.monotonic() - start


def _message(exc: BaseException) -> str:
    text = str(exc) if isinstance(exc, TaskFailed) else f"{type(exc).__name__}: {exc}"
    return text.replace("\r", " ").replace("\n", " ")


def _point(e: dict) -> str:
    parts = [f"{k} = {_label(v)}" for k, v in e["values"].items()]
    if "width" in e:
        parts += [f"width = {e['width']}", f"replica = {e['replica']}"]
    return ", ".join(parts) or "the base"


# ----------------------------------------------------------------------------- collect
def combine(outdir: str | Path):
    """All results of a sweep directory as one ``xarray.Dataset`` over the sweep dimensions.

    Variables over time/probe/output (losses, errors, ŷ, SGD statistics) are stacked; per-node
    parameters stay in the task files (variable ``file`` names them).  A failed or missing
    task is NaN; ``status`` and ``message`` say why.  The time axis is the union of the tasks'
    configured save times (:func:`_save_times`): a run's record times k·ε are matched to them
    (within 1e-9 relative), so an lr's step grid never splits one save time into two.
    Classification errors are kept only for classification losses.
    """
    import xarray as xr

    from mfpde.store import netcdf as io
    from mfpde.store.runs import long_name

    outdir = Path(outdir)
    idx = read_index(outdir)
    dims = tuple(idx["dims"])
    coords = {d: idx["coords"][d] for d in dims}
    shape = tuple(len(coords[d]) for d in dims)
    status = np.full(shape, "absent", dtype=object)
    message = np.full(shape, "", dtype=object)
    files = np.full(shape, "", dtype=object)
    results = []
    for h, e in idx["tasks"].items():
        st, msg = e.get("status", "pending"), e.get("message", "")
        ds = None
        if st == "done":
            try:
                ds = io.read(outdir / e["file"])
            except StoreError as exc:
                st, msg = "unreadable", str(exc)
        for pos in e["positions"]:
            status[tuple(pos)], message[tuple(pos)] = st, msg
            files[tuple(pos)] = e["file"] if ds is not None else ""
        if ds is not None:
            results.append((e["positions"], ds))
    keep = {"time", "probe", "output", "input_dim", "quantile", "singular_value"}
    names: dict[str, tuple] = {}
    sizes: dict[str, int] = {}
    grids = []
    probe_x = []
    quantile = None
    for _, ds in results:
        grids.append(_save_times(ds))
        for k, v in ds.data_vars.items():
            if set(v.dims) <= keep and k not in names and np.issubdtype(v.dtype, np.number):
                names[k] = v.dims
        if quantile is None and "quantile" in ds.coords:
            quantile = ds["quantile"]
        for d, n in ds.sizes.items():
            sizes[d] = max(sizes.get(d, 0), n)
        if "probe_x" in ds.coords:
            probe_x.append(ds["probe_x"])
    time_axis = _merge_times(grids)
    off = [_snap(ds["time"].values, time_axis) for _, ds in results]   # times that are no save time (kept)
    off = [t[~np.isin(t, time_axis)] for t in off]
    if any(len(t) for t in off):
        time_axis = _merge_times([time_axis, *off])
    data_vars = {}
    for k, vdims in names.items():
        arr = np.full(shape + tuple(len(time_axis) if d == "time" else sizes[d] for d in vdims), np.nan)
        for positions, ds in results:
            if k not in ds:
                continue
            v = ds[k]
            if "time" in vdims:
                v = v.assign_coords(time=_snap(v["time"].values, time_axis)).reindex(time=time_axis)
            vals = np.asarray(v.transpose(*vdims).values, dtype=float)
            block = tuple(slice(0, n) for n in vals.shape)
            for pos in positions:
                arr[tuple(pos) + block] = vals
        first = next(ds for _, ds in results if k in ds)
        attrs = {kk: vv for kk, vv in first[k].attrs.items() if kk in ("long_name", "units")}
        if attrs.get("long_name", k.replace("_", " ")) == k.replace("_", " "):   # a task file of an older version
            attrs["long_name"] = long_name(k)
        data_vars[k] = (dims + tuple(vdims), arr, {"units": "1", **attrs})
    data_vars["status"] = (dims, status.astype(str), {"long_name": "task status (done, failed, pending, absent)"})
    data_vars["message"] = (dims, message.astype(str), {"long_name": "error message of a failed task"})
    data_vars["file"] = (dims, files.astype(str), {"long_name": "result file of the task (per-node parameters)"})
    ds_coords: dict = {d: (d, _coord_array(coords[d]), {"long_name": _axis_name(d)}) for d in dims}
    if idx["mode"] == "zip":
        for a in idx["axes"]:
            ds_coords[a["name"]] = ("task", _coord_array([_coord(v) for v in a["values"]]),
                                    {"long_name": f"swept configuration key {a['name']}"})
    if results:
        ds_coords["time"] = ("time", time_axis, {"long_name": io.TIME_LABEL, "units": "1"})
    if probe_x and all(p.shape == probe_x[0].shape and np.array_equal(p.values, probe_x[0].values) for p in probe_x):
        ds_coords.update(io.probe_coords(probe_x[0].values))
    if quantile is not None and "quantile" in sizes and len(quantile) == sizes["quantile"]:
        ds_coords["quantile"] = ("quantile", quantile.values, dict(quantile.attrs))
    elif "quantile" in sizes and io.quantile_coord(sizes["quantile"]) is not None:   # SGD task files: unlabelled
        ds_coords["quantile"] = io.quantile_coord(sizes["quantile"])
    from mfpde import __version__

    attrs = {"Conventions": io.CONVENTIONS, "title": f"mfpde sweep: {idx['name']}", "sweep_mode": idx["mode"], "sweep_task": idx["task"],
             "sweep_axes": json.dumps(idx["axes"], ensure_ascii=False), "base_config": idx.get("base", ""),
             "mfpde_version": __version__,
             "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    return io.conventions(xr.Dataset(data_vars, coords=ds_coords, attrs=attrs))


def _save_times(ds) -> np.ndarray:
    """The save times of a task's configuration (solver.t_end, save_every / save_times), else
    (no readable configuration) the times it recorded."""
    from mfpde.checks import parse_toml
    from mfpde.errors import MfpdeError
    from mfpde.solvers.controller import save_times

    own = np.asarray(ds["time"].values, float)
    try:
        solver = parse_toml(ds.attrs["config"], "config").get("solver", {})
        return save_times(solver["t_end"], every=solver.get("save_every"), times=solver.get("save_times"))
    except (KeyError, TypeError, AttributeError, MfpdeError):
        return own


def _merge_times(grids: list) -> np.ndarray:
    """The sorted union of the save-time grids, times within 1e-9 relative counted once."""
    ts = np.unique(np.concatenate([np.asarray(g, float) for g in grids])) if grids else np.zeros(0)
    if len(ts) < 2:
        return ts
    scale = max(1.0, float(np.max(np.abs(ts))))
    return ts[np.concatenate([[True], np.diff(ts) > 1e-9 * scale])]


def _snap(times: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """Each time replaced by the axis time within 1e-9 relative of it (a record time k·ε that
    rounding moved off its save time); times with no such neighbour are kept."""
    times = np.asarray(times, float).copy()
    if not len(axis):
        return times
    j = np.clip(np.searchsorted(axis, times), 1, max(len(axis) - 1, 1))
    lo, hi = axis[np.maximum(j - 1, 0)], axis[np.minimum(j, len(axis) - 1)]
    near = np.where(np.abs(times - lo) <= np.abs(times - hi), lo, hi)
    close = np.abs(near - times) <= 1e-9 * max(1.0, float(np.max(np.abs(axis))))
    times[close] = near[close]
    return times


def _axis_name(d: str) -> str:
    from mfpde.store.netcdf import COORDINATES

    return COORDINATES.get(d, f"swept configuration key {d}")


def _coord_array(values: list) -> np.ndarray:
    if all(isinstance(v, bool) for v in values) or all(isinstance(v, str) for v in values):
        return np.asarray(values)
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return np.asarray(values)
    return np.asarray([_label(v) for v in values])


def collect(outdir: str | Path, out: str | Path | None = None) -> Path:
    """Combine a sweep directory (:func:`combine`) and write it as NetCDF (default OUTDIR/sweep.nc)."""
    from mfpde.store import netcdf as io

    target = Path(out) if out else Path(outdir) / COLLECTED
    return io.write(combine(outdir), target)


def task_files(outdir: str | Path) -> list[Path]:
    """The result files of ``outdir`` (``<16 hex digits>.nc``)."""
    return sorted(p for p in Path(outdir).iterdir() if _TASK_FILE.match(p.name))

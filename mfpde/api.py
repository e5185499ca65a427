"""The public face of mfpde: ``load``, ``solve`` and ``train`` (above every room; the CLI, sweeps,
references and validation studies call these and repeat nothing).

* :func:`load` — a configuration (a TOML file, a raw table, a :class:`Config`, or the embedded
  default) with ``[solver]``/``[sgd]`` keys overridden, validated and built **once**, data
  included.
* :func:`solve` — the limit of a configuration: System, stepper (with the configuration's
  stepper options), save times checked against the stepper before any work, integration;
  returns the :class:`~mfpde.store.solution.Solution`.
* :func:`train` — one finite network of a configuration (:func:`mfpde.finite.train` with its
  ``[sgd]`` options and solver times, as one run of :func:`mfpde.finite.ensemble.run_ensemble`).

Overrides are plain keyword arguments named like the keys of ``[solver]`` (``stepper``,
``dt``, ``t_end``, ``save_every``, ``save_times``, ``bound``, ``rtol``, …) and, for
:func:`train`, of ``[sgd]`` (``mode``, ``batch``, ``lr``, ``statistics``, ``coupling``); an
override of ``None`` is no override.  They are written into the configuration table and
validated like the file (a bad value is a ConfigError naming ``solver.KEY``), so the result's
provenance records them.  ``t_end`` also drops the ``save_times`` past it; ``save_every`` replaces
``save_times`` and vice versa.  An unknown keyword is a ConfigError naming it.  Imports the rooms
lazily, so ``import mfpde`` stays cheap.
"""
from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from mfpde.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from mfpde.finite.sgd import FiniteRun
    from mfpde.problem.config import Config
    from mfpde.store.solution import Solution

# [sgd] keys a single run can override (widths and replicas describe an ensemble, not one run)
TRAIN_SGD_KEYS = ("mode", "batch", "lr", "statistics", "coupling")
# finite.train keywords that train() derives from the configuration (TrainOptions.from_config, the law)
_DERIVED = ("mode", "batch", "lr", "t_end", "record_times", "statistics", "bound", "coupling", "replica", "law")


def _refuse(unknown, allowed, where: str) -> None:
    if unknown:
        names = sorted(map(str, unknown))
        raise ConfigError(", ".join(names), f"{'is not an override' if len(names) == 1 else 'are not overrides'} "
                          f"of {where}; allowed: {', '.join(allowed)}")


def _apply(raw: dict, overrides: Mapping[str, Any]) -> tuple[bool, bool]:
    """Write ``overrides`` into ``raw``'s [solver] and [sgd] tables (in place); which changed."""
    from mfpde.problem.config import SGD_KEYS, SOLVER_KEYS

    changed = [False, False]
    for section, keys, i in (("solver", SOLVER_KEYS, 0), ("sgd", SGD_KEYS, 1)):
        given = {k: v for k, v in overrides.items() if k in keys and v is not None}
        if not given:
            continue
        table = raw.get(section, {})
        table = dict(table) if isinstance(table, Mapping) else {}   # a non-table: the override wins
        table.update(given)
        if section == "solver":
            if "save_every" in given and "save_times" not in given:
                table.pop("save_times", None)
            if "save_times" in given:
                table.pop("save_every", None)
            t_end, st = given.get("t_end"), table.get("save_times")
            if "save_times" not in given and isinstance(st, list) and _real(t_end):
                table["save_times"] = [x for x in st if not (_real(x) and x > t_end)]   # others: refused below
        raw[section] = table
        changed[i] = True
    return changed[0], changed[1]


def _real(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def load(config=None, /, *, base_dir: str | os.PathLike | None = None, source: str | None = None,
         **overrides) -> Config:
    """A validated :class:`~mfpde.problem.config.Config`, built once, with overrides applied.

    ``config``: a TOML file (``str`` or path), a raw configuration table (a mapping, as
    ``tomllib`` reads it; relative data paths against ``base_dir``; ``source`` names it in
    messages), a ``Config`` (only its [solver]/[sgd] options are rebuilt), or ``None`` for
    the embedded default (``mfpde default-config``).  ``overrides``: any ``[solver]`` or
    ``[sgd]`` key (``t_end=5.0``, ``stepper="dopri5"``, ``lr=0.01``, …).
    """
    from mfpde.problem import config as cfg_mod
    from mfpde import checks

    allowed = cfg_mod.SOLVER_KEYS + cfg_mod.SGD_KEYS
    _refuse([k for k in overrides if k not in allowed], allowed, "mfpde.load")
    if isinstance(config, cfg_mod.Config):
        if base_dir is not None or source is not None:
            raise ConfigError("base_dir" if base_dir is not None else "source",
                              "applies to a file or a table, not to a built Config")
        raw = copy.deepcopy(config.raw)
        solver, sgd = _apply(raw, overrides)
        if not (solver or sgd):
            return config
        new = {}
        if solver:
            new["solver"] = cfg_mod._solver(checks.table(raw["solver"], "solver"))
        if sgd:
            new["sgd"] = cfg_mod._sgd(checks.table(raw["sgd"], "sgd"))
        return replace(config, raw=raw, problem=replace(config.problem, config=copy.deepcopy(raw)), **new)
    if config is None:
        src = "default" if source is None else source
        raw = checks.parse_toml(cfg_mod.default_text(), src)
    elif isinstance(config, (str, os.PathLike)):
        p = Path(config)
        src = str(p) if source is None else source
        raw = checks.parse_toml(cfg_mod.read_text(p), src)
        base_dir = p.parent if base_dir is None else base_dir
    elif isinstance(config, Mapping):
        src = "<dict>" if source is None else source
        raw = copy.deepcopy(dict(config))
    else:
        raise ConfigError("config", f"expected a TOML file path, a configuration table, a Config or None, "
                          f"got {type(config).__name__}")
    _apply(raw, overrides)
    return cfg_mod.from_dict(raw, src, base_dir)


def _load_for(fn: str, config, keys, overrides, base_dir, source) -> Config:
    _refuse([k for k in overrides if k not in keys], keys, fn)
    return load(config, base_dir=base_dir, source=source, **overrides)


def solve(config=None, /, *, base_dir=None, source: str | None = None, parameters: str | None = None,
          progress: bool | None = None, checkpoint: str | os.PathLike | None = None, checkpoint_every: int = 1,
          resume: bool = False, trackers=(), on_start: Callable | None = None, **overrides) -> Solution:
    """Solve the limit system of a configuration; returns the :class:`~mfpde.store.solution.Solution`.

    ``config`` as for :func:`load` (a file, a table, a ``Config``, ``None`` = the default);
    ``overrides``: any ``[solver]`` key (``t_end``, ``dt``, ``stepper``, ``save_every``,
    ``save_times``, ``bound``, ``rtol``, ``atol``, …; None = not given).  Run options:
    ``parameters`` (``"all"``/``"final"``/``"none"``, default ``output.parameters``),
    ``progress`` (a tqdm bar; None: when stderr is a terminal), ``checkpoint`` (a file written
    atomically every ``checkpoint_every``-th save time; with ``resume`` an existing one is
    continued bit for bit), ``trackers`` (more :class:`mfpde.solvers.Tracker` objects) and
    ``on_start(system, stepper)``, called once the save times are checked against the
    stepper and before the first step.  A blow-up raises :class:`~mfpde.errors.BlowUpError`
    with the partial Solution in ``partial``.
    """
    from mfpde.problem.config import SOLVER_KEYS

    c = _load_for("mfpde.solve", config, SOLVER_KEYS, overrides, base_dir, source)
    from mfpde import solvers
    from mfpde.system.system import System

    s = c.solver
    system = System(c.problem)
    stepper = solvers.make(s.stepper, system, **s.stepper_options())
    stepper.check_times(solvers.save_times(s.t_end, every=s.save_every, times=s.save_times))   # before any work
    if on_start is not None:
        on_start(system, stepper)
    return solvers.integrate(system, stepper, s.t_end, times=s.save_times, save_every=s.save_every,
                             parameters=c.output.parameters if parameters is None else parameters,
                             trackers=trackers, progress=progress, checkpoint=checkpoint,
                             checkpoint_every=checkpoint_every, resume=resume)


def _train_options() -> tuple[str, ...]:
    from mfpde.finite.sgd import TRAIN_KEYWORDS

    return tuple(k for k in TRAIN_KEYWORDS if k not in _DERIVED)


def train(config=None, width=None, /, *, replica: int = 0, base_dir=None, source: str | None = None,
          **overrides) -> FiniteRun:
    """Train one finite network of ``width`` (an int, or one width per hidden layer) by mean-field SGD.

    ``config`` as for :func:`load`.  The run is :func:`mfpde.finite.train` with the
    configuration's options (:meth:`mfpde.finite.TrainOptions.from_config`: ``[sgd]`` mode,
    batch, lr (default ``solver.dt``), statistics and coupling, ``solver.t_end`` and
    ``solver.bound``, record times = the solver's save times) and for ``mode = "online"`` the
    training law; ``replica`` picks the run's seed (:func:`mfpde.finite.run_seed`).
    ``overrides``: any ``[solver]`` key and the ``[sgd]`` keys ``mode``, ``batch``, ``lr``,
    ``statistics``, ``coupling``; every other keyword of :func:`mfpde.finite.train`
    (``progress``, ``seed``, ``snapshots``, ``fixed_nodes``, ``checkpoint``,
    ``checkpoint_every``, ``resume``) is passed on.  Returns the
    :class:`~mfpde.finite.FiniteRun`; a blow-up raises BlowUpError with the partial run.
    """
    from mfpde.problem.config import SOLVER_KEYS

    if width is None:
        raise ConfigError("width", "is required: mfpde.train(config, width)")
    passed = _train_options()
    run_opts = {k: overrides.pop(k) for k in list(overrides) if k in passed}
    c = _load_for("mfpde.train", config, SOLVER_KEYS + TRAIN_SGD_KEYS + passed, overrides, base_dir, source)
    from mfpde import finite

    law = None
    if c.sgd.mode == "online":
        from mfpde.problem.data import make_law

        law = make_law(c.raw["data"]["train"], "data.train")
    return finite.train(c.problem, width, finite.TrainOptions.from_config(c), replica=replica, law=law, **run_opts)

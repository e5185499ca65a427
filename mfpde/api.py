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

Any other key is set by its dotted path (the CLI's ``--set KEY=VALUE``): ``set={"model.hidden":
["tanh", "relu"], "iid.W[0].mean": 0.7, "rules.layer_1.size": 32}`` (:func:`set_key`; ``[i]``
indexes a list; a missing table on the way is created, so a misspelt key is refused by the
validation that names it).  ``solver.KEY``/``sgd.KEY`` go the way of the keyword overrides
(``solver.t_end`` drops later save times too); keyword overrides win over ``set``.
:func:`parse_set` reads ``KEY=VALUE`` strings (VALUE a TOML value, else a bare string).
"""
from __future__ import annotations

import copy
import os
import re
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


def _apply(raw: dict, overrides: Mapping[str, Any], sets: Mapping[str, Any] | None = None) -> tuple[bool, bool, bool]:
    """Write ``sets`` (dotted keys, :func:`set_key`) and then ``overrides`` (bare [solver]/[sgd] keys)
    into ``raw`` (in place); whether [solver], [sgd] changed and whether anything else did."""
    from mfpde.problem.config import SGD_KEYS, SOLVER_KEYS

    changed = [False, False, False]
    section_sets: dict[str, dict] = {"solver": {}, "sgd": {}}
    for key, value in (sets or {}).items():
        head, _, leaf = str(key).partition(".")
        if head in section_sets and leaf in (SOLVER_KEYS if head == "solver" else SGD_KEYS):
            section_sets[head][leaf] = value
        else:
            set_key(raw, str(key), value)
            changed[2] = True
    for section, keys, i in (("solver", SOLVER_KEYS, 0), ("sgd", SGD_KEYS, 1)):
        given = {**section_sets[section], **{k: v for k, v in overrides.items() if k in keys and v is not None}}
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
    return changed[0], changed[1], changed[2]


_PART = re.compile(r"([A-Za-z0-9_-]+)((?:\[[0-9]+\])*)")


def set_key(raw: dict, key: str, value) -> None:
    """Set the dotted ``key`` of a raw configuration table to (a copy of) ``value``, in place.

    ``key``: parts separated by dots, each a bare TOML key optionally followed by list indices
    (``iid.W[0].mean``).  A missing table on the way is created (the validation of the result
    names a misspelt key); a path through a value that is not a table, or an index past a list's
    end, is a ConfigError naming ``key``.
    """
    parts = str(key).split(".")
    steps: list[str | int] = []
    for part in parts:
        m = _PART.fullmatch(part)
        if m is None:
            raise ConfigError(str(key), "is not a dotted configuration key (parts of letters, digits, _ or -, "
                              "each optionally indexed as name[i], e.g. solver.t_end or iid.W[0].mean)")
        steps.append(m.group(1))
        steps += [int(i) for i in re.findall(r"[0-9]+", m.group(2))]
    cur: Any = raw
    for depth, step in enumerate(steps[:-1]):
        where = _path(steps[:depth + 1])
        nxt = steps[depth + 1]
        if isinstance(step, int):
            if not isinstance(cur, list) or step >= len(cur):
                raise ConfigError(str(key), f"{where} does not exist (the list has {len(cur) if isinstance(cur, list) else 0} entries)")
            if not isinstance(cur[step], (dict, list)):
                raise ConfigError(str(key), f"{where} is {cur[step]!r}, not a table or list")
            cur = cur[step]
            continue
        if not isinstance(cur, dict):
            raise ConfigError(str(key), f"{_path(steps[:depth])} is not a table")
        if step not in cur:
            if isinstance(nxt, int):
                raise ConfigError(str(key), f"{where} is not in the configuration, so it cannot be indexed")
            cur[step] = {}
        elif not isinstance(cur[step], (dict, list)):
            raise ConfigError(str(key), f"{where} is {cur[step]!r}, not a table")
        cur = cur[step]
    leaf = steps[-1]
    if isinstance(leaf, int):
        if not isinstance(cur, list) or leaf >= len(cur):
            raise ConfigError(str(key), f"{_path(steps)} does not exist (the list has {len(cur) if isinstance(cur, list) else 0} entries)")
    elif not isinstance(cur, dict):
        raise ConfigError(str(key), f"{_path(steps[:-1])} is not a table")
    cur[leaf] = copy.deepcopy(value)


def _path(steps) -> str:
    return "".join(f"[{s}]" if isinstance(s, int) else (f".{s}" if i else s) for i, s in enumerate(steps))


def parse_set(items) -> dict[str, Any]:
    """``["KEY=VALUE", ...]`` (``--set``, repeatable) as ``{KEY: value}``, in order (a repeated KEY: the last).

    VALUE is read as a TOML value (``5``, ``1e-3``, ``true``, ``"relu"``, ``["tanh", "relu"]``,
    ``{ law = "normal", std = 0.5 }``); anything else is the bare string (``--set solver.stepper=dopri5``).
    """
    import tomllib

    out: dict[str, Any] = {}
    for item in items or ():
        key, eq, text = str(item).partition("=")
        key = key.strip()
        if not eq or not key:
            raise ConfigError("--set", f"expected KEY=VALUE (a dotted configuration key, e.g. solver.t_end=5), got {item!r}")
        try:
            parsed = tomllib.loads(f"v = {text.strip()}")
        except tomllib.TOMLDecodeError:
            parsed = None
        out[key] = parsed["v"] if isinstance(parsed, dict) and list(parsed) == ["v"] else text.strip()
    return out


def _real(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def load(config=None, /, *, base_dir: str | os.PathLike | None = None, source: str | None = None,
         set: Mapping[str, Any] | None = None, **overrides) -> Config:
    """A validated :class:`~mfpde.problem.config.Config`, built once, with overrides applied.

    ``config``: a TOML file (``str`` or path), a raw configuration table (a mapping, as
    ``tomllib`` reads it; relative data paths against ``base_dir``; ``source`` names it in
    messages), a ``Config`` (only its [solver]/[sgd] options are rebuilt), or ``None`` for
    the embedded default (``mfpde default-config``).  ``overrides``: any ``[solver]`` or
    ``[sgd]`` key (``t_end=5.0``, ``stepper="dopri5"``, ``lr=0.01``, …); ``set``: any key by its
    dotted path (``{"iid.W[0].mean": 0.7}``, :func:`set_key`), applied first.  The result's raw
    table (stored with every solution) holds the overrides.
    """
    from mfpde.problem import config as cfg_mod
    from mfpde import checks

    allowed = cfg_mod.SOLVER_KEYS + cfg_mod.SGD_KEYS
    _refuse([k for k in overrides if k not in allowed], allowed, "mfpde.load")
    if isinstance(config, cfg_mod.Config):
        if base_dir is not None or source is not None:
            raise ConfigError("base_dir" if base_dir is not None else "source",
                              "applies to a file or a table, not to a built Config")
        if set is not None and not isinstance(set, Mapping):
            raise ConfigError("set", f"expected a mapping of dotted keys to values, got {type(set).__name__}")
        raw = copy.deepcopy(config.raw)
        solver, sgd, other = _apply(raw, overrides, set)
        if other:   # a problem key changed: build it again (relative data paths against the same folder)
            src = Path(config.source)
            return cfg_mod.from_dict(raw, config.source, config.base_dir if config.base_dir is not None else
                                     (src.parent if src.is_file() else None))
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
    if set is not None and not isinstance(set, Mapping):
        raise ConfigError("set", f"expected a mapping of dotted keys to values, got {type(set).__name__}")
    _apply(raw, overrides, set)
    return cfg_mod.from_dict(raw, src, base_dir)


def _load_for(fn: str, config, keys, overrides, base_dir, source, sets) -> Config:
    _refuse([k for k in overrides if k not in keys], keys, fn)
    return load(config, base_dir=base_dir, source=source, set=sets, **overrides)


def solve(config=None, /, *, base_dir=None, source: str | None = None, parameters: str | None = None,
          progress: bool | None = None, checkpoint: str | os.PathLike | None = None, checkpoint_every: int = 1,
          resume: bool = False, trackers=(), on_start: Callable | None = None, set: Mapping[str, Any] | None = None,
          estimate: bool | None = None, say: Callable[[str], None] | None = None, **overrides) -> Solution:
    """Solve the limit system of a configuration; returns the :class:`~mfpde.store.solution.Solution`.

    ``config`` as for :func:`load` (a file, a table, a ``Config``, ``None`` = the default);
    ``overrides``: any ``[solver]`` key (``t_end``, ``dt``, ``stepper``, ``save_every``,
    ``save_times``, ``bound``, ``rtol``, ``atol``, …; None = not given) and ``set`` (dotted keys, as
    for :func:`load`).  Run options:
    ``parameters`` (``"all"``/``"final"``/``"none"``, default ``output.parameters``),
    ``progress`` (a tqdm bar; None: when stderr is a terminal), ``checkpoint`` (a file written
    atomically every ``checkpoint_every``-th save time; with ``resume`` an existing one is
    continued bit for bit), ``trackers`` (more :class:`mfpde.solvers.Tracker` objects) and
    ``on_start(system, stepper)``, called once the save times are checked against the
    stepper and before the first step.  With ``[solver] linearize = true`` the linearized (NTK)
    limit around the initial state is solved instead (:mod:`mfpde.analysis.linearized`; same
    observables and dataset schema, ``regime = "linearized"``; ``on_start`` receives the System
    whose linearization is solved; no checkpoints).  A blow-up raises :class:`~mfpde.errors.BlowUpError`
    with the partial Solution in ``partial``.
    """
    from mfpde.problem.config import SOLVER_KEYS

    c = _load_for("mfpde.solve", config, SOLVER_KEYS, overrides, base_dir, source, set)
    from mfpde.system.system import System

    s = c.solver
    system = System(c.problem)
    if s.linearize:
        sol = _solve_linearized(c, system, parameters, progress, checkpoint, resume, trackers, on_start)
    else:
        sol = _solve_mean_field(c, system, parameters, progress, checkpoint, checkpoint_every, resume, trackers, on_start)
    from mfpde.analysis import estimate as est_mod

    # a linearized solve's companions are linearized too (the estimate solves the same configuration)
    if c.accuracy.estimate if estimate is None else bool(estimate):
        sol.estimate = est_mod.estimate(c, sol, base_dir=c.base_dir, progress=progress, groups=c.accuracy.groups,
                                        say=say or (lambda line: None))
    else:
        sol.estimate = est_mod.off()
    return sol


def _solve_mean_field(c, system, parameters, progress, checkpoint, checkpoint_every, resume, trackers, on_start):
    from mfpde import solvers

    s = c.solver
    stepper = solvers.make(s.stepper, system, **s.stepper_options())
    stepper.check_times(solvers.save_times(s.t_end, every=s.save_every, times=s.save_times))   # before any work
    if on_start is not None:
        on_start(system, stepper)
    sol = solvers.integrate(system, stepper, s.t_end, times=s.save_times, save_every=s.save_every,
                            parameters=c.output.parameters if parameters is None else parameters,
                            trackers=trackers, progress=progress, checkpoint=checkpoint,
                            checkpoint_every=checkpoint_every, resume=resume)
    return sol


def _solve_linearized(c, system, parameters, progress, checkpoint, resume, trackers, on_start):
    """``[solver] linearize = true``: the linearized (NTK) limit around θ_0 (mfpde.analysis.linearized)."""
    from mfpde import solvers
    from mfpde.analysis import linearized

    if checkpoint is not None or resume:
        raise ConfigError("checkpoint", "is not supported with solver.linearize = true (the linearized solve is "
                          "cheap: run it again)")
    s = c.solver
    solvers.base.check_fixed_step(s.dt, solvers.save_times(s.t_end, every=s.save_every, times=s.save_times))
    lin = linearized.LinearizedSystem(system)      # the tangent kernels: M·K backward passes
    stepper = linearized.LinearizedRK(lin, s.stepper, s.dt, s.bound)
    if on_start is not None:
        on_start(system, stepper)
    return linearized.finish(lin, stepper, s, parameters=c.output.parameters if parameters is None else parameters,
                             trackers=trackers, progress=progress)


def _train_options() -> tuple[str, ...]:
    from mfpde.finite.sgd import TRAIN_KEYWORDS

    return tuple(k for k in TRAIN_KEYWORDS if k not in _DERIVED)


def train(config=None, width=None, /, *, replica: int = 0, base_dir=None, source: str | None = None,
          set: Mapping[str, Any] | None = None, **overrides) -> FiniteRun:
    """Train one finite network of ``width`` (an int, or one width per hidden layer) by mean-field SGD.

    ``config`` as for :func:`load`.  The run is :func:`mfpde.finite.train` with the
    configuration's options (:meth:`mfpde.finite.TrainOptions.from_config`: ``[sgd]`` mode,
    batch, lr (default ``solver.dt``), statistics and coupling, ``solver.t_end`` and
    ``solver.bound``, record times = the solver's save times) and for ``mode = "online"`` the
    training law; ``replica`` picks the run's seed (:func:`mfpde.finite.run_seed`).
    ``overrides``: any ``[solver]`` key and the ``[sgd]`` keys ``mode``, ``batch``, ``lr``,
    ``statistics``, ``coupling`` and ``set`` (dotted keys, as for :func:`load`); every other keyword of :func:`mfpde.finite.train`
    (``progress``, ``seed``, ``snapshots``, ``fixed_nodes``, ``checkpoint``,
    ``checkpoint_every``, ``resume``) is passed on.  Returns the
    :class:`~mfpde.finite.FiniteRun`; a blow-up raises BlowUpError with the partial run.
    """
    from mfpde.problem.config import SOLVER_KEYS

    if width is None:
        raise ConfigError("width", "is required: mfpde.train(config, width)")
    passed = _train_options()
    run_opts = {k: overrides.pop(k) for k in list(overrides) if k in passed}
    c = _load_for("mfpde.train", config, SOLVER_KEYS + TRAIN_SGD_KEYS + passed, overrides, base_dir, source, set)
    from mfpde import finite

    law = None
    if c.sgd.mode == "online":
        from mfpde.problem.data import make_law

        law = make_law(c.raw["data"]["train"], "data.train")
    return finite.train(c.finite_problem, width, finite.TrainOptions.from_config(c), replica=replica, law=law, **run_opts)

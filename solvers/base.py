"""Stepper protocol and registry (Stepper room).

Every stepper implements one method, ``advance(y, t, t_target, max_steps)``: advance the
flat state ``y`` in place from ``t`` towards ``t_target``, taking at most ``max_steps``
steps inside compiled code, and return an :class:`Advance` (status, time reached, steps).
A fixed-step method lands exactly on ``t_target`` (a shorter last step if needed); an
adaptive one chooses its own steps.  Steppers register by name (``@register``), so
``make("rk4", system, dt=0.01)`` works and an unknown name lists the registered ones.

A fixed step is never changed silently: :func:`check_fixed_step` (called by
``integrate`` through ``Stepper.check_times`` before any work, and by a fixed-step
``advance`` for each new segment) refuses a step longer than a save interval beyond
rounding (interval/dt < 1 − 1e-9), where every step would be the shorter interval
and none would be dt.  An interval that is not a whole number of steps (up to a
relative 1e-9 · steps) ends in one shorter step (docs/steppers.md).

Also here: every status code an ``advance`` (or the SGD loop) returns, with its text
(``STATUS_TEXT``); each stepper's option schema (:class:`Option`: a name's kind and range, the
one definition the constructor and ``[solver]`` in a config both check against); and the
explicit checkpoint state of a stepper (:meth:`Stepper.state` / :meth:`Stepper.restore`, the
attributes named in ``persistent``).  Imports numpy, mfpde.errors and mfpde.checks only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from mfpde import checks
from mfpde.errors import ConfigError

# Status codes of ``advance`` and of the compiled loops (also the SGD loop); 0 is success.
OK, NONFINITE, BOUND, MAX_STEPS, STEP_SIZE, NEWTON = 0, 1, 2, 3, 4, 5
STATUS_TEXT = {OK: "ok", NONFINITE: "non-finite state", BOUND: "state norm exceeded its bound", MAX_STEPS: "step budget used",
               STEP_SIZE: "step size fell below its minimum (too many rejected steps)",
               NEWTON: "Newton iteration of an implicit stage did not converge"}
SOLVE = 6   # not a result: the compiled Newton loop asks its caller for a linear solve (implicit.py)
GRID_RTOL = 1e-9     # relative tolerance (per step) of "a whole number of steps"


@dataclass(frozen=True)
class Advance:
    status: int
    t: float
    steps: int


@dataclass(frozen=True)
class Option:
    """The kind and range of one stepper option; :meth:`check` returns the value or raises a
    ConfigError naming ``solver.<name>``.  Kinds: ``number`` (float ≥ low, or > low if
    ``strict``; < high; inf and None only where allowed), ``integer`` (in [low, high]),
    ``choice`` (one of ``choices``)."""

    kind: str
    low: float = 0.0
    high: float | None = None
    strict: bool = False
    inf_ok: bool = False
    none_ok: bool = False
    choices: tuple = ()

    @classmethod
    def number(cls, low: float = 0.0, *, strict: bool = False, high: float | None = None, inf_ok: bool = False,
               none_ok: bool = False) -> "Option":
        return cls("number", low, high, strict, inf_ok, none_ok)

    @classmethod
    def integer(cls, low: int, high: int) -> "Option":
        return cls("integer", low, high)

    @classmethod
    def choice(cls, *choices) -> "Option":
        return cls("choice", choices=tuple(choices))

    def check(self, value, name: str):
        if self.kind == "number":
            return option_number(value, name, low=self.low, strict=self.strict, inf_ok=self.inf_ok,
                                 none_ok=self.none_ok, high=self.high)
        if self.kind == "integer":
            return option_int(value, name, self.low, self.high)
        return checks.choice(value, self.choices, f"solver.{name}")


# options several steppers share (same name, same meaning, same range)
STEP_OPTION = Option.number(strict=True)                               # dt of a fixed-step method
BOUND_OPTION = Option.number(strict=True, inf_ok=True)                 # blow-up guard on ‖y‖
ERROR_CONTROL_OPTIONS = {"rtol": Option.number(), "atol": Option.number(),
                         "dt0": Option.number(strict=True, none_ok=True), "dt_min": Option.number(),
                         "dt_max": Option.number(strict=True, inf_ok=True),
                         "max_rejections": Option.integer(1, 10_000)}


class Stepper:
    """Base class: subclasses set ``name``, ``order``, ``adaptive``, ``schema`` and implement ``advance``.

    ``schema`` maps each option (a keyword of the constructor) to its :class:`Option`; ``options``
    is derived from it.  ``persistent`` names the attributes that carry the stepper from one
    ``advance`` call to the next (step size, FSAL stage, Jacobian, …): :meth:`state` and
    :meth:`restore` save and reload exactly those, so a checkpoint resumes bit for bit.
    """

    name: ClassVar[str] = ""
    order: ClassVar[int] = 0
    adaptive: ClassVar[bool] = False
    schema: ClassVar[dict[str, Option]] = {}
    options: ClassVar[tuple[str, ...]] = ()
    persistent: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.options = tuple(cls.schema)

    def __init__(self, system, **options):
        self.system = system
        self.stats = {"steps": 0, "rejected": 0, "rhs_evals": 0, "jvps": 0}

    @classmethod
    def check_option(cls, name: str, value):
        """``value`` checked against this stepper's schema entry ``name`` (ConfigError naming solver.<name>)."""
        return cls.schema[name].check(value, name)

    def advance(self, y, t: float, t_target: float, max_steps: int) -> Advance:  # pragma: no cover
        raise NotImplementedError

    def check_times(self, times) -> None:
        """Refuse (ConfigError) save times this stepper cannot honour; called before any work.

        Adaptive steppers honour any; fixed-step ones refuse a step longer than an interval.
        """

    def describe(self) -> dict:
        return {"stepper": self.name, "order": self.order}

    # ------------------------------------------------------------ checkpoints
    def state(self) -> dict[str, Any]:
        """The attributes named in ``persistent`` (arrays copied; numpy scalars as Python numbers)."""
        out = {}
        for name in self.persistent:
            v = getattr(self, name)
            out[name] = v.copy() if isinstance(v, np.ndarray) else (v.item() if isinstance(v, np.generic) else v)
        return out

    def restore(self, state: dict[str, Any]) -> None:
        """Load what :meth:`state` returned (arrays in place; lists back to tuples).

        ValueError if an attribute is missing or an array has another shape; other entries are ignored.
        """
        missing = [n for n in self.persistent if n not in state]
        if missing:
            raise ValueError(f"no saved {', '.join(missing)} for stepper {self.name!r}")
        for name in self.persistent:
            v, cur = state[name], getattr(self, name)
            if isinstance(cur, np.ndarray):
                v = np.asarray(v)
                if v.shape != cur.shape:
                    raise ValueError(f"saved {name} of stepper {self.name!r} has shape {v.shape}, expected {cur.shape}")
                cur[...] = v
            else:
                setattr(self, name, tuple(v) if isinstance(v, list) else v)


STEPPERS: dict[str, type[Stepper]] = {}


def register(cls: type[Stepper]) -> type[Stepper]:
    """Class decorator: make a stepper available by its ``name``."""
    STEPPERS[cls.name] = cls
    return cls


def make(name: str, system, **options) -> Stepper:
    """Instantiate the stepper registered as ``name``."""
    cls = checks.lookup(STEPPERS, name, "solver.stepper", what="stepper")
    for key in sorted(options, key=str):
        if not checks.is_one_of(key, cls.options):
            raise ConfigError(f"solver.{key}", f"not an option of stepper {name!r}; allowed: {', '.join(cls.options) or 'none'}")
    return cls(system, **options)


# ----------------------------------------------------------------------------- step grids
def whole_steps(span: float, dt: float) -> int | None:
    """``span / dt`` if it is a whole number n of steps up to rounding (|x − n| ≤ 1e-9·max(1, n)), else None."""
    x = span / dt
    n = round(x)
    return int(n) if abs(x - n) <= GRID_RTOL * max(1.0, abs(n)) else None


def check_segment(dt: float, t0: float, t1: float, key: str = "solver.dt") -> None:
    """ConfigError naming ``key`` if a fixed step ``dt`` is longer than [t0, t1] beyond rounding.

    Every step there would be the interval itself, never dt (dt = 1e9 took 0 steps, dt = 10
    with save_every = 0.1 the same steps as dt = 0.1).
    """
    span = t1 - t0
    if span > 0 and span / dt < 1.0 - GRID_RTOL:
        name = key.rsplit(".", 1)[-1]
        raise ConfigError(key, f"{dt:.12g} is longer than the save interval [{t0:.12g}, {t1:.12g}] "
                               f"(length {span:.12g}): no step could be {dt:.12g} there; use {name} ≤ {span:.12g} "
                               f"(e.g. {span:.12g} or {span / 2:.12g}), fewer save times or a longer t_end")


def check_fixed_step(dt: float, times, key: str = "solver.dt") -> None:
    """:func:`check_segment` for every interval of the sorted save times ``times``."""
    times = [float(t) for t in times]
    for t0, t1 in zip(times[:-1], times[1:]):
        check_segment(dt, t0, t1, key)


# ----------------------------------------------------------------------------- option checks
def option_number(value, key, *, low=0.0, strict=False, inf_ok=False, none_ok=False, high=None):
    """A stepper option as float (> or ≥ low, < high); ConfigError naming ``solver.<key>`` otherwise."""
    return checks.number(value, f"solver.{key}", low=low, open_low=strict, high=high, open_high=True,
                         inf_ok=inf_ok, none_ok=none_ok)


def option_int(value, key, low, high):
    """A stepper option as int in [low, high]; ConfigError naming ``solver.<key>`` otherwise."""
    return checks.integer(value, f"solver.{key}", low, high)


def error_control(stepper, rtol, atol, dt0, dt_min, dt_max, max_rejections) -> None:
    """Validate (:data:`ERROR_CONTROL_OPTIONS`) and set the error-control options every adaptive stepper shares."""
    check = {k: o.check for k, o in ERROR_CONTROL_OPTIONS.items()}
    stepper.rtol = check["rtol"](rtol, "rtol")
    stepper.atol = check["atol"](atol, "atol")
    if stepper.rtol == 0.0 and stepper.atol == 0.0:
        raise ConfigError("solver.rtol", "rtol and atol cannot both be 0")
    stepper.dt0 = check["dt0"](dt0, "dt0")
    stepper.dt_min = check["dt_min"](dt_min, "dt_min")
    stepper.dt_max = check["dt_max"](dt_max, "dt_max")
    if stepper.dt_max <= stepper.dt_min:
        raise ConfigError("solver.dt_max", f"must be > dt_min = {stepper.dt_min:g}, got {stepper.dt_max:g}")
    stepper.max_rejections = check["max_rejections"](max_rejections, "max_rejections")

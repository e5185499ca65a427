"""Stepper protocol and registry (Stepper room).

Every stepper implements one method, ``advance(y, t, t_target, max_steps)``: advance the
flat state ``y`` in place from ``t`` towards ``t_target``, taking at most ``max_steps``
steps inside compiled code, and return an :class:`Advance` (status, time reached, steps).
A fixed-step method lands exactly on ``t_target`` (a shorter last step if needed); an
adaptive one chooses its own steps.  Steppers register by name (``@register``), so
``make("rk4", system, dt=0.01)`` works and an unknown name lists the registered ones.
Imports mfpde.errors only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from mfpde.errors import ConfigError

OK, NONFINITE, BOUND, MAX_STEPS, STEP_SIZE = 0, 1, 2, 3, 4
STATUS_TEXT = {OK: "ok", NONFINITE: "non-finite state", BOUND: "state norm exceeded its bound", MAX_STEPS: "step budget used",
               STEP_SIZE: "step size fell below its minimum (too many rejected steps)"}


@dataclass(frozen=True)
class Advance:
    status: int
    t: float
    steps: int


class Stepper:
    """Base class: subclasses set ``name``, ``order``, ``adaptive`` and implement ``advance``."""

    name: ClassVar[str] = ""
    order: ClassVar[int] = 0
    adaptive: ClassVar[bool] = False
    options: ClassVar[tuple[str, ...]] = ()

    def __init__(self, system, **options):
        self.system = system
        self.stats = {"steps": 0, "rejected": 0, "rhs_evals": 0, "jvps": 0}

    def advance(self, y, t: float, t_target: float, max_steps: int) -> Advance:  # pragma: no cover
        raise NotImplementedError

    def describe(self) -> dict:
        return {"stepper": self.name, "order": self.order}


STEPPERS: dict[str, type[Stepper]] = {}


def register(cls: type[Stepper]) -> type[Stepper]:
    """Class decorator: make a stepper available by its ``name``."""
    STEPPERS[cls.name] = cls
    return cls


def make(name: str, system, **options) -> Stepper:
    """Instantiate the stepper registered as ``name``."""
    cls = STEPPERS.get(name)
    if cls is None:
        raise ConfigError("solver.stepper", f"unknown stepper {name!r}; allowed: {', '.join(sorted(STEPPERS))}")
    unknown = set(options) - set(cls.options)
    if unknown:
        raise ConfigError(f"solver.{sorted(unknown)[0]}", f"not an option of stepper {name!r}; allowed: {', '.join(cls.options) or 'none'}")
    return cls(system, **options)


# ----------------------------------------------------------------------------- option checks
def option_number(value, key, *, low=0.0, strict=False, inf_ok=False, none_ok=False, high=None):
    """A stepper option as float (> or ≥ low, < high); ConfigError naming ``solver.<key>`` otherwise."""
    if value is None and none_ok:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok:
        value = float(value)
        ok = (value > low if strict else value >= low) and (math.isfinite(value) or (inf_ok and value == math.inf))
        if ok and high is not None:
            ok = value < high
    if not ok:
        rng = f"{'>' if strict else '≥'} {low:g}" + (f" and < {high:g}" if high is not None else "")
        raise ConfigError(f"solver.{key}", f"must be a {'' if inf_ok else 'finite '}number {rng}"
                                           f"{' or None' if none_ok else ''}, got {value!r}")
    return value


def option_int(value, key, low, high):
    if isinstance(value, bool) or not isinstance(value, int) or not (low <= value <= high):
        raise ConfigError(f"solver.{key}", f"must be an integer in [{low}, {high}], got {value!r}")
    return value


def error_control(stepper, rtol, atol, dt0, dt_min, dt_max, max_rejections) -> None:
    """Validate and set the error-control options every adaptive stepper shares."""
    stepper.rtol = option_number(rtol, "rtol")
    stepper.atol = option_number(atol, "atol")
    if stepper.rtol == 0.0 and stepper.atol == 0.0:
        raise ConfigError("solver.rtol", "rtol and atol cannot both be 0")
    stepper.dt0 = option_number(dt0, "dt0", strict=True, none_ok=True)
    stepper.dt_min = option_number(dt_min, "dt_min")
    stepper.dt_max = option_number(dt_max, "dt_max", strict=True, inf_ok=True)
    if stepper.dt_max <= stepper.dt_min:
        raise ConfigError("solver.dt_max", f"must be > dt_min = {stepper.dt_min:g}, got {stepper.dt_max:g}")
    stepper.max_rejections = option_int(max_rejections, "max_rejections", 1, 10_000)

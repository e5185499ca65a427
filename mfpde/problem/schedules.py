"""Learning-rate schedules ξ_l(t) (Problem room).

Kinds: ``constant`` ξ(t) = ξ0; ``power`` ξ(t) = ξ0 / (1 + t/τ)^p; ``piecewise``
ξ(t) = values[i] for times[i−1] ≤ t < times[i] (``len(values) == len(times) + 1``).
ξ ≡ 0 freezes a layer.  A schedule packs into one row of a float array (``pack``) that the
compiled kernels evaluate with :func:`evaluate`.  Imports numpy, mfpde._jit, mfpde.errors.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from mfpde._jit import njit
from mfpde import checks
from mfpde.errors import ConfigError

CONSTANT, POWER, PIECEWISE = 0, 1, 2
KINDS = {"constant": CONSTANT, "power": POWER, "piecewise": PIECEWISE}
ROW = 6  # kind, xi0, tau, p, offset into the piecewise array, number of breakpoints


@dataclass(frozen=True)
class Schedule:
    kind: str = "constant"
    xi0: float = 1.0
    tau: float = 1.0
    p: float = 1.0
    times: tuple[float, ...] = field(default_factory=tuple)
    values: tuple[float, ...] = field(default_factory=tuple)

    def __call__(self, t: float) -> float:
        if self.kind == "constant":
            return self.xi0
        if self.kind == "power":
            return self.xi0 / (1.0 + t / self.tau) ** self.p
        i = int(np.searchsorted(np.asarray(self.times), t, side="right"))
        return self.values[i]

    def scaled(self, factor: float) -> "Schedule":
        """ξ(t) × ``factor`` (the same kind: ξ0, or every piecewise value, scaled)."""
        f = float(factor)
        if f == 1.0:
            return self
        if self.kind == "piecewise":
            return Schedule("piecewise", times=self.times, values=tuple(v * f for v in self.values))
        return Schedule(self.kind, self.xi0 * f, self.tau, self.p)

    @property
    def frozen(self) -> bool:
        """True when ξ ≡ 0 on every t."""
        if self.kind == "piecewise":
            return all(v == 0.0 for v in self.values)
        return self.xi0 == 0.0

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "constant":
            return {"kind": "constant", "xi0": self.xi0}
        if self.kind == "power":
            return {"kind": "power", "xi0": self.xi0, "tau": self.tau, "p": self.p}
        return {"kind": "piecewise", "times": list(self.times), "values": list(self.values)}


def _rate(v, key) -> float:
    """A learning rate or breakpoint: a finite number >= 0."""
    return checks.number(v, key, nonneg=True, hint=" (0 freezes the layer)")


def make_schedule(spec: Any, key: str) -> Schedule:
    """A schedule from a number (constant ξ0) or a table ``{kind=..., ...}``; validated."""
    if checks.is_number(spec):
        return Schedule("constant", _rate(spec, key))
    if not isinstance(spec, Mapping):
        raise ConfigError(key, f"expected a number or a table with kind = {' | '.join(KINDS)}, got {spec!r}")
    kind = checks.choice(spec.get("kind", "constant"), KINDS, f"{key}.kind", what="schedule kind")
    allowed = {"constant": ("kind", "xi0"), "power": ("kind", "xi0", "tau", "p"),
               "piecewise": ("kind", "times", "values")}[kind]
    checks.check_keys(spec, allowed, key, hint=f" (a {kind} schedule)")
    if kind == "constant":
        return Schedule("constant", checks.get(spec, "xi0", key, _rate, 1.0))
    if kind == "power":
        return Schedule("power", checks.get(spec, "xi0", key, _rate, 1.0),
                        checks.get(spec, "tau", key, checks.number, 1.0, positive=True),
                        checks.get(spec, "p", key, checks.number, 1.0, nonneg=True))
    times, values = spec.get("times"), spec.get("values")
    if not isinstance(times, list) or not isinstance(values, list):
        raise ConfigError(key, "a piecewise schedule needs lists 'times' and 'values'")
    t = [checks.number(x, f"{key}.times", nonneg=True) for x in times]
    v = [_rate(x, f"{key}.values") for x in values]
    if len(v) != len(t) + 1:
        raise ConfigError(f"{key}.values", f"needs len(times) + 1 = {len(t) + 1} entries, got {len(v)}")
    if any(b <= a for a, b in zip(t, t[1:])):
        raise ConfigError(f"{key}.times", "breakpoints must be strictly increasing")
    return Schedule("piecewise", times=tuple(t), values=tuple(v))


def pack(schedules: list[Schedule]) -> tuple[np.ndarray, np.ndarray]:
    """Rows [kind, ξ0, τ, p, offset, count] and the flat piecewise array (times then values)."""
    rows = np.zeros((len(schedules), ROW))
    flat: list[float] = []
    for i, s in enumerate(schedules):
        rows[i, :4] = (KINDS[s.kind], s.xi0, s.tau, s.p)
        rows[i, 4] = len(flat)
        rows[i, 5] = len(s.times)
        flat.extend(s.times)
        flat.extend(s.values)
    return rows, np.asarray(flat + [0.0], dtype=float)


@njit
def evaluate(rows, flat, g, t):
    """ξ_g(t) for packed schedule row ``g`` (compiled twin of ``Schedule.__call__``)."""
    kind = int(rows[g, 0])
    if kind == CONSTANT:
        return rows[g, 1]
    if kind == POWER:
        return rows[g, 1] / (1.0 + t / rows[g, 2]) ** rows[g, 3]
    off = int(rows[g, 4])
    m = int(rows[g, 5])
    i = 0
    while i < m and flat[off + i] <= t:
        i += 1
    return flat[off + m + i]

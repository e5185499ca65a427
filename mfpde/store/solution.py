"""The result of a solve (Store room): saved times, observables, parameter snapshots, stats.

A :class:`Solution` is filled by the controller at save times and turned into a labelled
``xarray.Dataset`` by :func:`mfpde.store.netcdf.to_xarray` (``Solution.to_xarray``).  Imports numpy
only (io lazily).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Solution:
    system: Any
    stepper: dict
    times: list[float] = field(default_factory=list)
    observables: dict[str, list] = field(default_factory=dict)
    state_times: list[float] = field(default_factory=list)
    states: list[np.ndarray] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    status: str = "running"
    message: str = ""
    estimate: Any = None      # mfpde.analysis.estimate.Estimate (None: not computed, e.g. a partial result)

    def record(self, t: float, y: np.ndarray, keep_state: bool) -> None:
        """Store the observables (and optionally the state) of ``y`` at time ``t``."""
        self.times.append(float(t))
        for k, v in self.system.observe(y).items():
            self.observables.setdefault(k, []).append(np.array(v, dtype=float) if np.ndim(v) else float(v))
        if keep_state:
            self.state_times.append(float(t))
            self.states.append(y.copy())

    def record_last_good(self, t: float, y: np.ndarray) -> None:
        """Keep the last good state of a run that stopped (blow-up) at time ``t``.

        A state later than the last saved time is recorded at its own time; one at the last
        saved time is that saved state, so the time is not repeated and only its state is
        stored if it was not (``parameters = "final"`` or ``"none"``).  Times stay strictly
        increasing.
        """
        t = float(t)
        if not self.times or t > self.times[-1]:
            self.record(t, y, True)
        elif not self.state_times or self.state_times[-1] != t:
            self.state_times.append(t)
            self.states.append(y.copy())

    @property
    def y(self) -> np.ndarray:
        """The last stored state."""
        return self.states[-1]

    def observable(self, name: str) -> np.ndarray:
        from mfpde.checks import lookup

        return np.asarray(lookup(self.observables, name, "observable", what="observable"))

    def to_xarray(self):
        from mfpde.store.netcdf import to_xarray

        return to_xarray(self)

"""Time steppers of mfpde (Stepper room; installed as ``mfpde.solvers``).

Public API: the stepper registry (``make``, ``STEPPERS``, ``register``), the explicit
Runge–Kutta family (``TABLEAUX``), and the time loop (``integrate``, trackers).
"""
from mfpde.solvers.base import STEPPERS, Advance, Stepper, make, register
from mfpde.solvers.controller import Callback, ProgressBar, Tracker, integrate, save_times
from mfpde.solvers.explicit import TABLEAUX, ExplicitRK, Tableau
from mfpde.solvers import adaptive  # noqa: F401  (registers dopri5, bs32)
from mfpde.solvers import implicit  # noqa: F401  (registers backward_euler, implicit_midpoint, sdirk4)

__all__ = ["STEPPERS", "Advance", "Stepper", "make", "register", "Callback", "ProgressBar", "Tracker",
           "integrate", "save_times", "TABLEAUX", "ExplicitRK", "Tableau", "adaptive", "implicit"]

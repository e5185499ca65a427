"""Time steppers of mfpde (Stepper room; installed as ``mfpde.solvers``).

Public API: the stepper registry (``make``, ``STEPPERS``, ``register``), the one tableau type
(``ButcherTableau``; the explicit Runge–Kutta family is ``TABLEAUX``), and the time loop
(``integrate``, trackers).
"""
from mfpde.solvers.base import STEPPERS, Advance, Option, Stepper, make, register
from mfpde.solvers.controller import Callback, ProgressBar, Tracker, integrate, save_times
from mfpde.solvers.explicit import TABLEAUX, ExplicitRK, Tableau
from mfpde.solvers.tableaux import ButcherTableau
from mfpde.solvers import adaptive  # noqa: F401  (registers dopri5, bs32)
from mfpde.solvers import implicit  # noqa: F401  (registers backward_euler, implicit_midpoint, sdirk4)

__all__ = ["STEPPERS", "Advance", "Option", "Stepper", "make", "register", "ButcherTableau", "Callback", "ProgressBar",
           "Tracker", "integrate", "save_times", "TABLEAUX", "ExplicitRK", "Tableau", "adaptive", "implicit"]

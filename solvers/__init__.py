"""Time steppers of mfpde (Stepper room; installed as ``mfpde.solvers``).

Public API: the stepper registry (``make``, ``STEPPERS``, ``register``), the explicit
Runge–Kutta family (``TABLEAUX``), and the time loop (``integrate``, trackers).
"""
from mfpde.solvers.base import STEPPERS, Advance, Stepper, make, register
from mfpde.solvers.controller import Callback, ProgressBar, Tracker, integrate, save_times
from mfpde.solvers.explicit import TABLEAUX, ExplicitRK, Tableau

__all__ = ["STEPPERS", "Advance", "Stepper", "make", "register", "Callback", "ProgressBar", "Tracker",
           "integrate", "save_times", "TABLEAUX", "ExplicitRK", "Tableau"]

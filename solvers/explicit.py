"""Explicit Runge–Kutta steppers with a fixed step, driven by Butcher tableaux (Stepper room).

One compiled engine (:func:`rk_fixed`) advances many steps per call, calling the system's
compiled right-hand side directly, and checks the new state after every step (a non-finite
value or a norm past ``bound`` stops it at once with the last good state kept in ``y``).
Each scheme is a :class:`~mfpde.solvers.tableaux.ButcherTableau` registered by name; tests
are parametrized over the registry.  Imports numpy, mfpde._jit, mfpde.system.kernels and
solvers.base/tableaux.
"""
from __future__ import annotations

import math

import numpy as np

from mfpde.system import kernels
from mfpde._jit import njit
from mfpde.solvers import tableaux
from mfpde.solvers.base import (BOUND, BOUND_OPTION, MAX_STEPS, NONFINITE, OK, STEP_OPTION, Advance, Stepper,
                                check_fixed_step, check_segment, register)
from mfpde.solvers.tableaux import ButcherTableau

Tableau = ButcherTableau       # the name this module used to export

TABLEAUX: dict[str, ButcherTableau] = {}
tableaux.add(TABLEAUX, "euler", [[0.0]], [1.0])
tableaux.add(TABLEAUX, "heun", [[0, 0], [1, 0]], [0.5, 0.5])
tableaux.add(TABLEAUX, "midpoint", [[0, 0], [0.5, 0]], [0.0, 1.0])
tableaux.add(TABLEAUX, "rk3", [[0, 0, 0], [0.5, 0, 0], [-1, 2, 0]], [1 / 6, 2 / 3, 1 / 6])
tableaux.add(TABLEAUX, "rk4", [[0, 0, 0, 0], [0.5, 0, 0, 0], [0, 0.5, 0, 0], [0, 0, 1, 0]], [1 / 6, 1 / 3, 1 / 3, 1 / 6])


@njit
def rk_fixed(y, ynew, t, dt, nsteps, a, b, c, stages, ytmp, sysargs, bound2, n0=0):
    """``nsteps`` explicit RK steps of size dt; step n starts at t + (n0 + n)·dt; returns
    (status, steps done).  Counting steps from an anchor ``t`` keeps the stage times (and so
    time-dependent schedules) independent of how the steps are split into calls.

    On a non-finite or too-large state it stops before committing that step: ``y`` always
    holds the last good state.
    """
    s = b.shape[0]
    N = y.shape[0]
    cur = y
    nxt = ynew
    done = 0
    status = 0
    for n in range(nsteps):
        tn = t + (n0 + n) * dt
        for i in range(s):
            if i == 0:
                kernels.rhs(tn, cur, stages[0], sysargs)
            else:
                for k in range(N):
                    acc = cur[k]
                    for j in range(i):
                        acc += dt * a[i, j] * stages[j, k]
                    ytmp[k] = acc
                kernels.rhs(tn + c[i] * dt, ytmp, stages[i], sysargs)
        nrm = 0.0
        for k in range(N):
            acc = cur[k]
            for i in range(s):
                acc += dt * b[i] * stages[i, k]
            nxt[k] = acc
            nrm += acc * acc
        if not (nrm <= bound2):
            status = NONFINITE if not math.isfinite(nrm) else BOUND
            break
        tmp = cur
        cur = nxt
        nxt = tmp
        done += 1
    if done % 2 == 1:
        for k in range(N):   # a loop: an array assignment compiles Numba's shape-error formatting (seconds)
            y[k] = ynew[k]
    return status, done


def grid_steps(t: float, t_target: float, dt: float) -> tuple[int, float]:
    """Number of whole steps of size dt in [t, t_target] and the remainder (snapped to 0).

    Callers refuse t_target − t < dt first (:func:`~mfpde.solvers.base.check_segment`): the
    snapping would otherwise turn a tiny fraction of a step into 0 steps.
    """
    x = (t_target - t) / dt
    n = round(x)
    if abs(x - n) <= 1e-9 * max(1.0, abs(x)):
        return max(int(n), 0), 0.0
    n = math.floor(x)
    return max(int(n), 0), t_target - (t + n * dt)


class FixedGrid:
    """``advance`` for fixed-step steppers: steps t0 + k·dt counted from the segment start.

    The subclass provides ``dt`` and ``_run(y, t, dt, n, n0) -> (status, steps done)`` (n steps
    of size dt from t, the first being step n0 of its segment).  A call that resumes where the
    last one stopped keeps counting from the same anchor, so stage times — and results — do not
    depend on how the controller splits the steps; a final partial step lands on t_target.

    dt is never changed silently: a segment shorter than one step (beyond rounding) is refused
    with a ConfigError naming ``solver.dt`` — by :meth:`check_times` for all save intervals
    before ``integrate`` does any work, and here for a new segment of a direct call.
    """

    persistent = ("_anchor", "_t_last", "_target")
    _anchor = None      # (t0, steps since t0) of the segment being advanced
    _t_last = None
    _target = None
    dt_key = "solver.dt"

    def check_times(self, times):
        check_fixed_step(self.dt, times, self.dt_key)

    def advance(self, y, t, t_target, max_steps):
        # continue counting from the anchor when this call resumes where the last one stopped
        if self._anchor is not None and t == self._t_last and t_target == self._target:
            t0, n0 = self._anchor
        else:
            t0, n0 = t, 0
            check_segment(self.dt, t0, t_target, self.dt_key)
        n_all, rem = grid_steps(t0, t_target, self.dt)
        n = n_all - n0
        run = min(n, max_steps)
        status, done = self._run(y, t0, self.dt, run, n0)
        t_now = t0 + (n0 + done) * self.dt
        self._anchor, self._t_last, self._target = (t0, n0 + done), t_now, t_target
        if status:
            return Advance(status, t_now, done)
        if run < n:
            return Advance(MAX_STEPS, t_now, done)
        t_now = t_target if rem == 0.0 else t0 + n_all * self.dt
        self._t_last = t_now
        if rem > 0.0:
            if run >= max_steps:
                return Advance(MAX_STEPS, t_now, done)
            status, d2 = self._run(y, t_now, rem, 1)
            done += d2
            if status:
                return Advance(status, t_now, done)
            t_now = t_target
        self._anchor = None
        return Advance(OK, t_now, done)


class ExplicitRK(FixedGrid, Stepper):
    """Fixed-step explicit Runge–Kutta method given by a tableau."""

    adaptive = False
    schema = {"dt": STEP_OPTION, "bound": BOUND_OPTION}
    tableau: ButcherTableau

    def __init__(self, system, dt: float, bound: float = 1e12):
        super().__init__(system)
        self.dt = self.check_option("dt", dt)
        self.bound2 = self.check_option("bound", bound) ** 2
        N = system.size
        s = len(self.tableau.b)
        self._stages = np.empty((s, N))
        self._ytmp = np.empty(N)
        self._ynew = np.empty(N)

    def _run(self, y, t, dt, n, n0=0):
        tb = self.tableau
        status, done = rk_fixed(y, self._ynew, float(t), float(dt), int(n), tb.a, tb.b, tb.c,
                                self._stages, self._ytmp, self.system.sysargs, self.bound2, int(n0))
        self.stats["steps"] += done
        self.stats["rhs_evals"] += done * len(tb.b) + (len(tb.b) if status else 0)
        return status, done

    def describe(self):
        return {"stepper": self.name, "order": self.order, "dt": self.dt}


for _name, _tb in TABLEAUX.items():
    register(type(f"RK_{_name}", (ExplicitRK,), {"name": _name, "order": _tb.order, "tableau": _tb}))

__all__ = ["TABLEAUX", "Tableau", "ButcherTableau", "ExplicitRK", "FixedGrid", "rk_fixed", "grid_steps", "OK", "NONFINITE", "BOUND"]

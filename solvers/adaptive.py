"""Adaptive embedded Runge–Kutta steppers with error control (Stepper room).

One compiled engine (:func:`rk_embedded`) drives every explicit embedded pair given by a
:class:`~mfpde.solvers.tableaux.ButcherTableau` with ``b_hat`` (registered: ``dopri5`` =
Dormand–Prince 5(4), ``bs32`` = Bogacki–Shampine 3(2); both first-same-as-last, FSAL).  Per
call it takes as many accepted steps towards ``t_target`` as ``max_steps`` allows and lands
exactly on ``t_target`` (the last step is clipped), so save times never need dense output.
Step sizes come from the PI controller of :mod:`mfpde.solvers.stepsize` (shared with the
implicit SDIRK) on the mixed RMS error norm ``sqrt(mean((err / (atol + rtol·max(|y_old|,
|y_new|)))²))``; a step with a non-finite stage or error is rejected and retried 5× smaller.
The step size, the previous error and the FSAL stage persist between ``advance`` calls, so
chunked calls reproduce one long call bit for bit.  ``fixed_dt`` forces a constant step
through the same loop (acceptance forced) to measure a method's order.  Imports numpy,
mfpde._jit, mfpde.system.kernels and solvers.base/tableaux/stepsize.
"""
from __future__ import annotations

import math

import numpy as np

from mfpde.system import kernels
from mfpde._jit import njit
from mfpde.solvers import tableaux
from mfpde.solvers.base import (BOUND, BOUND_OPTION, ERROR_CONTROL_OPTIONS, MAX_STEPS, NONFINITE, OK, STEP_SIZE, Advance,
                                Option, Stepper, check_fixed_step, error_control, register)
from mfpde.solvers.stepsize import Controller, accept_step, initial_step, landing, retry_step
from mfpde.solvers.tableaux import ButcherTableau

EMBEDDED_TABLEAUX: dict[str, ButcherTableau] = {}


def _pair(name, c, a, b, b_hat):
    tb = tableaux.add(EMBEDDED_TABLEAUX, name, a, b, b_hat, c=c)
    if not (tb.explicit and tb.fsal):
        raise ValueError(f"embedded tableau {name!r}: the engine needs an explicit first-same-as-last pair")
    return tb


_pair("dopri5", [0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1, 1],
      [[0, 0, 0, 0, 0, 0, 0],
       [1 / 5, 0, 0, 0, 0, 0, 0],
       [3 / 40, 9 / 40, 0, 0, 0, 0, 0],
       [44 / 45, -56 / 15, 32 / 9, 0, 0, 0, 0],
       [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729, 0, 0, 0],
       [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656, 0, 0],
       [35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0]],
      [35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0],
      [5179 / 57600, 0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40])
_pair("bs32", [0, 1 / 2, 3 / 4, 1],
      [[0, 0, 0, 0],
       [1 / 2, 0, 0, 0],
       [0, 3 / 4, 0, 0],
       [2 / 9, 1 / 3, 4 / 9, 0]],
      [2 / 9, 1 / 3, 4 / 9, 0],
      [7 / 24, 1 / 4, 1 / 3, 1 / 8])

# layout of the float parameter vector ``ctrl`` and the persistent ``state`` vector
C_RTOL, C_ATOL, C_DTMIN, C_DTMAX, C_BOUND2, C_MAXREJ, C_FIXED, C_ORDER, C_DT0 = range(9)
S_DT, S_ERRPREV, S_FSAL, S_TFSAL = range(4)
N_ACC, N_REJ, N_RHS = range(3)


@njit
def rk_embedded(y, t, t_target, max_steps, a, b, e, c, stages, ytmp, ynew, ylast, sysargs, ctrl, kc, state, counts):
    """Up to ``max_steps`` accepted steps of an FSAL embedded pair from (t, y) towards t_target.

    Returns (status, t reached).  ``y`` is updated in place and only ever holds accepted,
    finite states.  ``stages[0]`` holds f(t, y) on return (the FSAL stage); ``state`` keeps
    [dt proposal, previous error, FSAL valid, time of the FSAL stage] between calls;
    ``counts`` accumulates [accepted, rejected, rhs evaluations]; ``kc`` is the
    :class:`~mfpde.solvers.stepsize.Controller` vector.
    """
    N = y.shape[0]
    s = b.shape[0]
    rtol = ctrl[C_RTOL]
    atol = ctrl[C_ATOL]
    dt_min = ctrl[C_DTMIN]
    dt_max = ctrl[C_DTMAX]
    bound2 = ctrl[C_BOUND2]
    max_rej = ctrl[C_MAXREJ]
    fixed_dt = ctrl[C_FIXED]
    fixed = fixed_dt > 0.0

    # the FSAL stage is valid only for the state and time it was computed at; a call that does
    # not continue where the last one stopped starts afresh (dt0 or the heuristic, no PI memory)
    valid = state[S_FSAL] != 0.0 and state[S_TFSAL] == t
    if valid:
        for k in range(N):
            if ylast[k] != y[k]:
                valid = False
                break
    if not valid:
        state[S_DT] = ctrl[C_DT0]
        state[S_ERRPREV] = 1.0
        kernels.rhs(t, y, stages[0], sysargs)
        counts[N_RHS] += 1
        for k in range(N):
            if not math.isfinite(stages[0, k]):
                state[S_FSAL] = 0.0
                return NONFINITE, t
        state[S_FSAL] = 1.0
        state[S_TFSAL] = t
        for k in range(N):
            ylast[k] = y[k]
    if fixed:
        dt = fixed_dt
    elif state[S_DT] > 0.0:
        dt = state[S_DT]
    else:
        dt = initial_step(t, y, stages[0], stages[1], ytmp, rtol, atol, ctrl[C_ORDER], dt_max, sysargs)
        counts[N_RHS] += 1
    err_prev = state[S_ERRPREV]

    status = OK
    accepted = 0
    rejections = 0          # consecutive
    last_rejected = False
    while accepted < max_steps and t < t_target:
        h, tnew, clipped = landing(t, t_target, dt)
        # stages 2..s−1, then y_new = y + h Σ b_i k_i, then the FSAL stage f(tnew, y_new)
        for i in range(1, s - 1):
            for k in range(N):
                acc = y[k]
                for j in range(i):
                    acc += h * a[i, j] * stages[j, k]
                ytmp[k] = acc
            kernels.rhs(t + c[i] * h, ytmp, stages[i], sysargs)
        nrm2 = 0.0
        for k in range(N):
            acc = y[k]
            for j in range(s - 1):
                acc += h * b[j] * stages[j, k]
            ynew[k] = acc
            nrm2 += acc * acc
        kernels.rhs(tnew, ynew, stages[s - 1], sysargs)
        counts[N_RHS] += s - 1
        err2 = 0.0
        for k in range(N):
            acc = 0.0
            for j in range(s):
                acc += e[j] * stages[j, k]
            q = h * acc / (atol + rtol * max(abs(y[k]), abs(ynew[k])))
            err2 += q * q
        err = math.sqrt(err2 / max(N, 1))
        finite = math.isfinite(err) and math.isfinite(nrm2)
        if finite:
            for k in range(N):
                if not math.isfinite(stages[s - 1, k]):
                    finite = False
                    break

        if finite and (fixed or err <= 1.0):
            if not (nrm2 <= bound2):
                status = BOUND
                break
            for k in range(N):
                y[k] = ynew[k]
                stages[0, k] = stages[s - 1, k]
            t = tnew
            accepted += 1
            rejections = 0
            if not fixed:
                dt, err_prev = accept_step(h, dt, err, err_prev, clipped, last_rejected, kc, dt_max)
            last_rejected = False
        elif fixed:              # a constant step cannot be retried smaller
            status = NONFINITE
            break
        else:                    # rejected: error too large, or a non-finite attempt (retried 5× smaller)
            counts[N_REJ] += 1
            rejections += 1
            last_rejected = True
            dt, give_up = retry_step(h, err if finite else math.inf, t, rejections, kc, dt_min, max_rej)
            if give_up:
                status = STEP_SIZE if finite else NONFINITE
                break

    counts[N_ACC] += accepted
    for k in range(N):
        ylast[k] = y[k]
    state[S_TFSAL] = t
    if not fixed:
        state[S_DT] = dt
    state[S_ERRPREV] = err_prev
    return status, t


class EmbeddedRK(Stepper):
    """Adaptive explicit Runge–Kutta pair with a PI step-size controller."""

    adaptive = True
    tableau: ButcherTableau
    schema = {**ERROR_CONTROL_OPTIONS, "bound": BOUND_OPTION, "fixed_dt": Option.number(strict=True, none_ok=True)}
    persistent = ("_state", "_stages", "_ylast", "_counts")

    def __init__(self, system, rtol: float = 1e-6, atol: float = 1e-9, dt0: float | None = None, dt_min: float = 0.0,
                 dt_max: float = math.inf, bound: float = 1e12, max_rejections: int = 50,
                 fixed_dt: float | None = None):
        super().__init__(system)
        error_control(self, rtol, atol, dt0, dt_min, dt_max, max_rejections)
        self.bound = self.check_option("bound", bound)
        self.fixed_dt = self.check_option("fixed_dt", fixed_dt)
        tb = self.tableau
        self.controller = Controller.pi(tb.embedded_order)
        self._kc = self.controller.vector()
        self._ctrl = np.array([self.rtol, self.atol, self.dt_min, self.dt_max, self.bound ** 2, float(max_rejections),
                               self.fixed_dt or 0.0, float(tb.order),
                               0.0 if self.dt0 is None else min(self.dt0, self.dt_max)])
        # persistent: [dt proposal (0 = not yet chosen), previous error, FSAL valid, FSAL time]
        self._state = np.array([0.0, 1.0, 0.0, 0.0])
        N = system.size
        self._stages = np.zeros((tb.stages, N))
        self._ytmp = np.empty(N)
        self._ynew = np.empty(N)
        self._ylast = np.empty(N)
        self._counts = np.zeros(3, dtype=np.int64)

    @property
    def dt(self) -> float:
        """The step size the controller proposes next (``fixed_dt`` when fixed)."""
        return self.fixed_dt if self.fixed_dt is not None else float(self._state[S_DT])

    def check_times(self, times):
        """``fixed_dt`` longer than a save interval is refused (it would never be taken there)."""
        if self.fixed_dt is not None:
            check_fixed_step(self.fixed_dt, times, "solver.fixed_dt")

    def advance(self, y, t, t_target, max_steps):
        t, t_target = float(t), float(t_target)
        if not t < t_target:
            return Advance(OK, t, 0)
        before = self._counts.copy()
        tb = self.tableau
        status, t_now = rk_embedded(y, t, t_target, int(max_steps), tb.a, tb.b, tb.e, tb.c, self._stages, self._ytmp,
                                    self._ynew, self._ylast, self.system.sysargs, self._ctrl, self._kc, self._state,
                                    self._counts)
        d = self._counts - before
        self.stats["steps"] += int(d[N_ACC])
        self.stats["rejected"] += int(d[N_REJ])
        self.stats["rhs_evals"] += int(d[N_RHS])
        if status == OK and t_now < t_target:
            status = MAX_STEPS
        return Advance(int(status), float(t_now), int(d[N_ACC]))

    def describe(self):
        tb = self.tableau
        out = {"stepper": self.name, "order": tb.order, "embedded_order": tb.embedded_order, "stages": tb.stages,
               "fsal": tb.fsal, "rtol": self.rtol, "atol": self.atol, "dt0": self.dt0, "dt_min": self.dt_min,
               "dt_max": None if math.isinf(self.dt_max) else self.dt_max,
               "bound": None if math.isinf(self.bound) else self.bound, "max_rejections": self.max_rejections,
               **self.controller.describe()}
        if self.fixed_dt is not None:
            out["fixed_dt"] = self.fixed_dt
        return out


for _name, _tb in EMBEDDED_TABLEAUX.items():
    register(type(f"ERK_{_name}", (EmbeddedRK,), {"name": _name, "order": _tb.order, "tableau": _tb}))

__all__ = ["EMBEDDED_TABLEAUX", "EmbeddedRK", "rk_embedded", "initial_step", "STEP_SIZE"]

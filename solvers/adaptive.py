"""Adaptive embedded Runge–Kutta steppers with error control (Stepper room).

One compiled engine (:func:`rk_embedded`) drives every embedded pair given by an
:class:`EmbeddedTableau` (registered: ``dopri5`` = Dormand–Prince 5(4), ``bs32`` =
Bogacki–Shampine 3(2); both first-same-as-last, FSAL).  Per call it takes as many accepted
steps towards ``t_target`` as ``max_steps`` allows and lands exactly on ``t_target`` (the
last step is clipped), so save times never need dense output.  Step sizes come from a PI
controller on the mixed RMS error norm ``sqrt(mean((err / (atol + rtol·max(|y_old|,
|y_new|)))²))``; a step with a non-finite stage or error is rejected and retried 5× smaller.
The step size, the previous error and the FSAL stage persist between ``advance`` calls, so
chunked calls reproduce one long call bit for bit.  ``fixed_dt`` forces a constant step
through the same loop (acceptance forced) to measure a method's order.  Imports numpy,
mfpde._jit, mfpde.system.kernels, mfpde.errors and solvers.base.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mfpde.system import kernels
from mfpde._jit import njit
from mfpde.solvers.base import (BOUND, MAX_STEPS, NONFINITE, OK, STEP_SIZE, Advance, Stepper, check_fixed_step,
                                error_control, option_number, register)

# Status for "the controller cannot find an acceptable finite step" (too many consecutive
# rejections or dt below its floor with a finite error).  Belongs in solvers.base next to
# the other codes; registered here so the controller's message lookup knows it.

# PI step-size controller (Gustafsson's PI.4.2 as in Hairer–Wanner II §IV.2 / diffrax's PIDController):
#   factor = SAFETY · err_n^(−β1) · err_{n−1}^(β2),  β1 = 0.7/k, β2 = 0.4/k,  k = embedded order + 1,
# clipped to [FACTOR_MIN, FACTOR_MAX]; errors are floored at ERR_FLOOR (Hairer's facold ≥ 1e−4).
SAFETY, FACTOR_MIN, FACTOR_MAX, ERR_FLOOR = 0.9, 0.2, 10.0, 1e-4
PI_BETA1, PI_BETA2 = 0.7, 0.4
NONFINITE_SHRINK = 0.2


@dataclass(frozen=True)
class EmbeddedTableau:
    """An explicit RK pair: ``b`` (order ``order``, propagated) and ``b_hat`` (order ``embedded_order``)."""

    name: str
    order: int
    embedded_order: int
    a: np.ndarray
    b: np.ndarray
    b_hat: np.ndarray
    c: np.ndarray

    @property
    def stages(self) -> int:
        return len(self.b)

    @property
    def e(self) -> np.ndarray:
        """Error weights b − b̂: the local error estimate is dt·Σ e_i k_i."""
        return self.b - self.b_hat

    @property
    def fsal(self) -> bool:
        """First same as last: the last stage is f(t + dt, y_new), reused as the next first stage."""
        return bool(self.c[-1] == 1.0 and np.array_equal(self.a[-1], self.b) and self.b[-1] == 0.0)


EMBEDDED_TABLEAUX: dict[str, EmbeddedTableau] = {}


def _pair(name, order, embedded_order, c, a, b, b_hat):
    tb = EmbeddedTableau(name, order, embedded_order, np.array(a, dtype=float), np.array(b, dtype=float),
                         np.array(b_hat, dtype=float), np.array(c, dtype=float))
    if not tb.fsal:
        raise ValueError(f"embedded tableau {name!r}: the engine needs a first-same-as-last pair")
    EMBEDDED_TABLEAUX[name] = tb
    return tb


_pair("dopri5", 5, 4, [0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1, 1],
      [[0, 0, 0, 0, 0, 0, 0],
       [1 / 5, 0, 0, 0, 0, 0, 0],
       [3 / 40, 9 / 40, 0, 0, 0, 0, 0],
       [44 / 45, -56 / 15, 32 / 9, 0, 0, 0, 0],
       [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729, 0, 0, 0],
       [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656, 0, 0],
       [35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0]],
      [35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0],
      [5179 / 57600, 0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40])
_pair("bs32", 3, 2, [0, 1 / 2, 3 / 4, 1],
      [[0, 0, 0, 0],
       [1 / 2, 0, 0, 0],
       [0, 3 / 4, 0, 0],
       [2 / 9, 1 / 3, 4 / 9, 0]],
      [2 / 9, 1 / 3, 4 / 9, 0],
      [7 / 24, 1 / 4, 1 / 3, 1 / 8])

# layout of the float parameter vector ``ctrl`` and the persistent ``state`` vector
C_RTOL, C_ATOL, C_DTMIN, C_DTMAX, C_BOUND2, C_MAXREJ, C_BETA1, C_BETA2, C_EXPO, C_FIXED, C_ORDER, C_DT0 = range(12)
S_DT, S_ERRPREV, S_FSAL, S_TFSAL = range(4)
N_ACC, N_REJ, N_RHS = range(3)


@njit
def _rms_scaled(u, y, rtol, atol, scale):
    """sqrt(mean((scale·u / (atol + rtol·|y|))²))."""
    N = u.shape[0]
    s = 0.0
    for k in range(N):
        q = scale * u[k] / (atol + rtol * abs(y[k]))
        s += q * q
    return math.sqrt(s / max(N, 1))


@njit
def initial_step(t, y, f0, f1, ytmp, rtol, atol, order, dt_max, sysargs):
    """Hairer's starting step (Hairer–Nørsett–Wanner I, §II.4): one extra right-hand side."""
    N = y.shape[0]
    d0 = _rms_scaled(y, y, rtol, atol, 1.0)
    d1 = _rms_scaled(f0, y, rtol, atol, 1.0)
    h0 = 1e-6 if (d0 < 1e-5 or d1 < 1e-5) else 0.01 * d0 / d1
    h0 = min(h0, dt_max)
    for k in range(N):
        ytmp[k] = y[k] + h0 * f0[k]
    kernels.rhs(t + h0, ytmp, f1, sysargs)
    for k in range(N):
        ytmp[k] = f1[k] - f0[k]
    d2 = _rms_scaled(ytmp, y, rtol, atol, 1.0 / h0)
    if not math.isfinite(d2):
        return h0
    dmax = max(d1, d2)
    if dmax <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / dmax) ** (1.0 / (order + 1.0))
    return min(100.0 * h0, h1, dt_max)


@njit
def rk_embedded(y, t, t_target, max_steps, a, b, e, c, stages, ytmp, ynew, ylast, sysargs, ctrl, state, counts):
    """Up to ``max_steps`` accepted steps of an FSAL embedded pair from (t, y) towards t_target.

    Returns (status, t reached).  ``y`` is updated in place and only ever holds accepted,
    finite states.  ``stages[0]`` holds f(t, y) on return (the FSAL stage); ``state`` keeps
    [dt proposal, previous error, FSAL valid, time of the FSAL stage] between calls;
    ``counts`` accumulates [accepted, rejected, rhs evaluations].
    """
    N = y.shape[0]
    s = b.shape[0]
    rtol = ctrl[C_RTOL]
    atol = ctrl[C_ATOL]
    dt_min = ctrl[C_DTMIN]
    dt_max = ctrl[C_DTMAX]
    bound2 = ctrl[C_BOUND2]
    max_rej = ctrl[C_MAXREJ]
    beta1 = ctrl[C_BETA1]
    beta2 = ctrl[C_BETA2]
    expo = ctrl[C_EXPO]
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
        remaining = t_target - t
        h = dt
        clipped = False
        if h * (1.0 + 1e-10) >= remaining:    # land exactly on t_target (absorbs rounding)
            clipped = remaining < dt
            h = remaining
            tnew = t_target
        else:
            tnew = t + h
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

        if not finite:
            if fixed:
                status = NONFINITE
                break
            counts[N_REJ] += 1
            rejections += 1
            last_rejected = True
            dt = NONFINITE_SHRINK * h
            if dt < max(dt_min, 1e-14 * abs(t)) or rejections > max_rej:
                status = NONFINITE
                break
            continue

        if fixed or err <= 1.0:
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
                errc = max(err, ERR_FLOOR)
                factor = SAFETY * errc ** (-beta1) * err_prev ** beta2
                factor = min(FACTOR_MAX, max(FACTOR_MIN, factor))
                if last_rejected:
                    factor = min(factor, 1.0)
                hn = h * factor
                if clipped:
                    # a step shortened to hit t_target says little about the step size:
                    # keep the unclipped proposal unless the controller asks for more
                    hn = max(hn, dt)
                else:
                    err_prev = errc
                dt = min(hn, dt_max)
            last_rejected = False
        else:
            counts[N_REJ] += 1
            rejections += 1
            last_rejected = True
            factor = max(FACTOR_MIN, SAFETY * err ** (-expo))
            dt = h * factor
            if dt < max(dt_min, 1e-14 * abs(t)) or rejections > max_rej:
                status = STEP_SIZE
                break

    counts[N_ACC] += accepted
    for k in range(N):
        ylast[k] = y[k]
    state[S_TFSAL] = t
    if not fixed:
        state[S_DT] = dt
    state[S_ERRPREV] = err_prev
    return status, t


_number = option_number


class EmbeddedRK(Stepper):
    """Adaptive explicit Runge–Kutta pair with a PI step-size controller."""

    adaptive = True
    options = ("rtol", "atol", "dt0", "dt_min", "dt_max", "bound", "max_rejections", "fixed_dt")
    tableau: EmbeddedTableau

    def __init__(self, system, rtol: float = 1e-6, atol: float = 1e-9, dt0: float | None = None, dt_min: float = 0.0,
                 dt_max: float = math.inf, bound: float = 1e12, max_rejections: int = 50,
                 fixed_dt: float | None = None):
        super().__init__(system)
        error_control(self, rtol, atol, dt0, dt_min, dt_max, max_rejections)
        self.bound = _number(bound, "bound", strict=True, inf_ok=True)
        self.fixed_dt = _number(fixed_dt, "fixed_dt", strict=True, none_ok=True)
        tb = self.tableau
        k = tb.embedded_order + 1
        self.beta1, self.beta2 = PI_BETA1 / k, PI_BETA2 / k
        self._ctrl = np.array([self.rtol, self.atol, self.dt_min, self.dt_max, self.bound ** 2, float(max_rejections),
                               self.beta1, self.beta2, 1.0 / k, self.fixed_dt or 0.0, float(tb.order),
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
                                    self._ynew, self._ylast, self.system.sysargs, self._ctrl, self._state, self._counts)
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
               "fsal": True, "rtol": self.rtol, "atol": self.atol, "dt0": self.dt0, "dt_min": self.dt_min,
               "dt_max": None if math.isinf(self.dt_max) else self.dt_max,
               "bound": None if math.isinf(self.bound) else self.bound, "max_rejections": self.max_rejections,
               "controller": "PI", "safety": SAFETY, "factor_min": FACTOR_MIN, "factor_max": FACTOR_MAX,
               "beta1": self.beta1, "beta2": self.beta2}
        if self.fixed_dt is not None:
            out["fixed_dt"] = self.fixed_dt
        return out


for _name, _tb in EMBEDDED_TABLEAUX.items():
    register(type(f"ERK_{_name}", (EmbeddedRK,), {"name": _name, "order": _tb.order, "tableau": _tb}))

__all__ = ["EMBEDDED_TABLEAUX", "EmbeddedTableau", "EmbeddedRK", "rk_embedded", "initial_step", "STEP_SIZE"]

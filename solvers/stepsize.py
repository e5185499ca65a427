"""Step-size control shared by the adaptive steppers (Stepper room): the starting step, the
controller formula and the accept/reject bookkeeping.

The compiled loop of the explicit pairs (:func:`mfpde.solvers.adaptive.rk_embedded`) and the
Python loop of the embedded SDIRK (:class:`mfpde.solvers.implicit.AdaptiveDIRK`) take a step
towards ``t_target`` the same way; every formula they share lives here, compiled, and is
inlined into the compiled loop (so it costs nothing there) and called as is from Python:

* :func:`landing` — the attempted step, clipped to land exactly on ``t_target``;
* :func:`accept_step` — after an accepted step, the next step from the error E_n:
  ``h · clip(SAFETY · E_n^(−β1) · E_{n−1}^(β2), FACTOR_MIN, factor_max)``, errors floored at
  ``err_floor``, no growth right after a rejection, h kept when the factor lies in
  [1, ``keep``], and a step clipped to land on t_target neither shrinks the proposal nor
  enters the PI memory E_{n−1};
* :func:`retry_step` — after a rejected attempt, ``h · max(FACTOR_MIN, SAFETY · E^(−1/k))``, or
  ``shrink · h`` for a failed one (non-finite stage, Newton failure; E = inf), and whether to
  give up (below max(dt_min, 1e-14·|t|) or more than ``max_rejections`` in a row);
* :func:`initial_step` — Hairer–Nørsett–Wanner I §II.4 (scipy's ``select_initial_step``):
  h0 = 0.01·‖y0‖/‖f0‖ in the scaled RMS norm (1e-6 if either is below 1e-5), then, with
  ``probe``, one explicit Euler probe for ‖f′‖ and h = min(100·h0, (0.01/max(d1, d2))^(1/(p+1))).

:class:`Controller` holds the constants of one controller as the float vector the compiled
functions read (:meth:`Controller.vector`): :meth:`Controller.pi` is Gustafsson's PI.4.2 of the
explicit pairs (Hairer–Wanner II §IV.2, diffrax's PIDController), :meth:`Controller.integral`
the I controller of the SDIRK (Hairer's SDIRK4 code).  Imports numpy, mfpde._jit and
mfpde.system.kernels.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mfpde._jit import njit
from mfpde.system import kernels

SAFETY, FACTOR_MIN = 0.9, 0.2
LAND_RTOL = 1e-10     # a step within this (relative) of t_target lands on it (absorbs rounding)

# layout of Controller.vector()
K_BETA1, K_BETA2, K_EXPO, K_FACTOR_MAX, K_ERR_FLOOR, K_SHRINK, K_KEEP = range(7)


@dataclass(frozen=True)
class Controller:
    """Constants of a step-size controller for a method whose error estimate has order p."""

    kind: str
    beta1: float          # exponent of the current error (1/k for an I controller, k = p + 1)
    beta2: float          # exponent of the previous error (0: no memory)
    expo: float           # exponent of the error after a rejection (1/k)
    factor_max: float     # largest growth per step
    err_floor: float      # errors are floored here before the growth factor
    shrink: float         # factor after a failed attempt (non-finite or Newton failure)
    keep: float           # factors in [1, keep] keep h (an LU of I − hγJ stays valid)

    @classmethod
    def pi(cls, embedded_order: int) -> "Controller":
        """Gustafsson's PI.4.2: β1 = 0.7/k, β2 = 0.4/k, growth ≤ 10, errors ≥ 1e-4, h/5 after a failure."""
        k = embedded_order + 1
        return cls("PI", 0.7 / k, 0.4 / k, 1.0 / k, 10.0, 1e-4, 0.2, 1.0)

    @classmethod
    def integral(cls, embedded_order: int) -> "Controller":
        """I controller E^(−1/k): growth ≤ 5, errors ≥ 1e-10, h/4 after a failure, h kept within [1, 1.2]."""
        k = embedded_order + 1
        return cls("I", 1.0 / k, 0.0, 1.0 / k, 5.0, 1e-10, 0.25, 1.2)

    def vector(self) -> np.ndarray:
        return np.array([self.beta1, self.beta2, self.expo, self.factor_max, self.err_floor, self.shrink, self.keep])

    def describe(self) -> dict:
        return {"controller": self.kind, "safety": SAFETY, "factor_min": FACTOR_MIN, "factor_max": self.factor_max,
                "beta1": self.beta1, "beta2": self.beta2}


@njit(inline="always")
def landing(t, t_target, dt):
    """(h, t + h, clipped): the next attempted step of proposal ``dt`` from t towards t_target.

    A step reaching t_target (up to LAND_RTOL) is cut to land on it exactly; ``clipped`` says
    that it is shorter than ``dt``.
    """
    remaining = t_target - t
    if dt * (1.0 + LAND_RTOL) >= remaining:
        return remaining, t_target, remaining < dt
    return dt, t + dt, False


@njit(inline="always")
def accept_step(h, dt, err, err_prev, clipped, last_rejected, kc, dt_max):
    """(next step proposal, E_{n−1} for the next step) after an accepted step h with error ``err``;
    ``dt`` is the proposal the step was taken from, ``kc`` a :meth:`Controller.vector`."""
    errc = max(err, kc[K_ERR_FLOOR])
    factor = SAFETY * errc ** (-kc[K_BETA1]) * err_prev ** kc[K_BETA2]
    factor = min(kc[K_FACTOR_MAX], max(FACTOR_MIN, factor))
    if last_rejected:
        factor = min(factor, 1.0)
    if 1.0 < factor <= kc[K_KEEP]:
        factor = 1.0
    hn = h * factor
    if clipped:
        # a step shortened to hit t_target says little about the step size:
        # keep the unclipped proposal unless the controller asks for more
        hn = max(hn, dt)
    else:
        err_prev = errc
    return min(hn, dt_max), err_prev


@njit(inline="always")
def retry_step(h, err, t, rejections, kc, dt_min, max_rejections):
    """(next step, give up?) after the ``rejections``-th consecutive rejected attempt of size h.

    ``err`` is the attempt's error (> 1), or inf for a failed attempt (non-finite, Newton).
    """
    if math.isfinite(err):
        dt = h * max(FACTOR_MIN, SAFETY * err ** (-kc[K_EXPO]))
    else:
        dt = kc[K_SHRINK] * h
    return dt, dt < max(dt_min, 1e-14 * abs(t)) or rejections > max_rejections


@njit
def rms_scaled(u, y, rtol, atol, scale):
    """sqrt(mean((scale·u / (atol + rtol·|y|))²))."""
    N = u.shape[0]
    s = 0.0
    for k in range(N):
        q = scale * u[k] / (atol + rtol * abs(y[k]))
        s += q * q
    return math.sqrt(s / max(N, 1))


@njit
def initial_step(t, y, f0, f1, ytmp, rtol, atol, order, dt_max, sysargs, probe=True):
    """Hairer's starting step (Hairer–Nørsett–Wanner I, §II.4); the probe costs one right-hand side.

    ``f0`` = f(t, y); ``f1`` and ``ytmp`` are work buffers.  Without ``probe`` it is h0 (the
    implicit stepper: the Euler probe would measure the stiff modes it need not resolve).
    """
    N = y.shape[0]
    d0 = rms_scaled(y, y, rtol, atol, 1.0)
    d1 = rms_scaled(f0, y, rtol, atol, 1.0)
    h0 = 1e-6 if (d0 < 1e-5 or d1 < 1e-5) else 0.01 * d0 / d1
    h0 = min(h0, dt_max)
    if not probe:
        return h0
    for k in range(N):
        ytmp[k] = y[k] + h0 * f0[k]
    kernels.rhs(t + h0, ytmp, f1, sysargs)
    for k in range(N):
        ytmp[k] = f1[k] - f0[k]
    d2 = rms_scaled(ytmp, y, rtol, atol, 1.0 / h0)
    if not math.isfinite(d2):
        return h0
    dmax = max(d1, d2)
    if dmax <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / dmax) ** (1.0 / (order + 1.0))
    return min(100.0 * h0, h1, dt_max)


__all__ = ["Controller", "SAFETY", "FACTOR_MIN", "landing", "accept_step", "retry_step", "initial_step", "rms_scaled"]

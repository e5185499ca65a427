"""Activation registry (Problem room): name -> (φ, φ') as Numba scalar code and numpy ufuncs.

Built-in activations have small integer codes that the compiled kernels switch on
(``identity, tanh, relu, sigmoid, erf, softplus, gelu``).  A user may register up to
``MAX_USER`` further activations as a Numba-compilable pair of scalar functions
``phi(x) -> float`` and ``dphi(x) -> float``; kernels receive them as a tuple of first-class
functions, so registering one never recompiles the system.  Imports numpy, scipy, numba,
mfpde._jit and mfpde.errors only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numba
import numpy as np
from numba import types
from numba.extending import overload
from scipy import special

from mfpde._jit import njit
from mfpde import checks
from mfpde.errors import ConfigError

SCALAR_SIG = types.float64(types.float64)
MAX_USER = 8
USER_CODE0 = 100

IDENTITY, TANH, RELU, SIGMOID, ERF, SOFTPLUS, GELU = range(7)
_SQRT2 = math.sqrt(2.0)
_INV_SQRT2PI = 1.0 / math.sqrt(2.0 * math.pi)
_TWO_OVER_SQRTPI = 2.0 / math.sqrt(math.pi)


_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.4426950408889634


@njit(inline="always")
def tanh_fast(x):
    """tanh x to ~2 ulp, branch- and call-free so that LLVM vectorizes loops over it.

    e = exp(z), z = −2 min(|x|, 20), by z = −k ln 2 + r (|r| ≤ ln2/2), expm1(r) from its
    Taylor series to r^13 (error < 1e-17), and 2^−k assembled from the bits of k by exact
    multiplications (a table lookup would block vectorization).  Then
    tanh|x| = (1 − e)/(1 + e) with 1 − e = −(2^−k expm1(r) + 2^−k − 1), free of
    cancellation for small |x|.  NaN propagates.
    """
    ax = abs(x)
    z = -2.0 * min(ax, 20.0)
    k = np.int64(0.5 - z * _INV_LN2)
    n = -np.float64(k)
    r = (z - n * _LN2_HI) - n * _LN2_LO
    p = 1.0 / 6227020800.0
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    em1 = r + r * r * p
    s = 1.0
    s *= 1.0 - 0.5 * (k & 1)
    s *= 1.0 - 0.75 * ((k >> 1) & 1)
    s *= 1.0 - 0.9375 * ((k >> 2) & 1)
    s *= 1.0 - (1.0 - 2.0**-8) * ((k >> 3) & 1)
    s *= 1.0 - (1.0 - 2.0**-16) * ((k >> 4) & 1)
    s *= 1.0 - (1.0 - 2.0**-32) * ((k >> 5) & 1)
    t = -(s * em1 + (s - 1.0)) / (s * em1 + s + 1.0)
    t = math.copysign(t, x)
    return t if x == x else x


@njit(inline="always")
def phi_dphi(code, x, fns):
    """(φ(x), φ'(x)) for activation ``code``; ``fns`` holds user pairs (φ_0, φ'_0, φ_1, ...)."""
    if code == TANH:
        t = tanh_fast(x)
        return t, 1.0 - t * t
    if code == IDENTITY:
        return x, 1.0
    if code == RELU:
        if x > 0.0:
            return x, 1.0
        return 0.0, 0.0
    if code == SIGMOID:
        if x >= 0.0:
            s = 1.0 / (1.0 + math.exp(-x))
        else:
            e = math.exp(x)
            s = e / (1.0 + e)
        return s, s * (1.0 - s)
    if code == ERF:
        return math.erf(x), _TWO_OVER_SQRTPI * math.exp(-x * x)
    if code == SOFTPLUS:
        if x >= 0.0:
            e = math.exp(-x)
            return x + math.log1p(e), 1.0 / (1.0 + e)
        e = math.exp(x)
        return math.log1p(e), e / (1.0 + e)
    if code == GELU:
        cdf = 0.5 * math.erfc(-x / _SQRT2)
        return x * cdf, cdf + x * _INV_SQRT2PI * math.exp(-0.5 * x * x)
    return user_pair(fns, code - USER_CODE0, x)


def user_pair(fns, slot, x):  # pragma: no cover - replaced by the overload below inside kernels
    """(φ, φ') of user activation ``slot`` from the function table ``fns``."""
    return fns[2 * slot](x), fns[2 * slot + 1](x)


@overload(user_pair, jit_options={"cache": True})
def _user_pair_impl(fns, slot, x):
    # No user activation registered: kernels receive an empty tuple (no first-class
    # functions to unbox on every call, which costs ~1 ms); this branch is then dead code.
    if isinstance(fns, types.BaseTuple) and len(fns) == 0:
        return lambda fns, slot, x: (math.nan, math.nan)
    return lambda fns, slot, x: (fns[2 * slot](x), fns[2 * slot + 1](x))


@numba.njit(SCALAR_SIG, cache=True)
def _zero(x):  # placeholder filling unused user slots
    return 0.0


def _np_tanh_pair(x):
    t = np.tanh(x)
    return t, 1.0 - t * t


def _np_relu_pair(x):
    return np.maximum(x, 0.0), (x > 0).astype(float)


def _np_sigmoid_pair(x):
    s = special.expit(x)
    return s, s * (1.0 - s)


def _np_softplus_pair(x):
    return np.logaddexp(0.0, x), special.expit(x)


def _np_gelu_pair(x):
    cdf = special.ndtr(x)
    return x * cdf, cdf + x * _INV_SQRT2PI * np.exp(-0.5 * x * x)


@dataclass(frozen=True)
class Activation:
    """A registered activation: its kernel ``code`` and a numpy reference ``pair(x) -> (φ, φ')``."""

    name: str
    code: int
    pair: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
    doc: str


_BUILTIN = {
    "identity": Activation("identity", IDENTITY, lambda x: (np.asarray(x, float).copy(), np.ones_like(x, dtype=float)), "φ(x) = x"),
    "tanh": Activation("tanh", TANH, _np_tanh_pair, "φ(x) = tanh x"),
    "relu": Activation("relu", RELU, _np_relu_pair, "φ(x) = max(x, 0), φ'(0) = 0"),
    "sigmoid": Activation("sigmoid", SIGMOID, _np_sigmoid_pair, "φ(x) = 1/(1+e^{-x})"),
    "erf": Activation("erf", ERF, lambda x: (special.erf(x), _TWO_OVER_SQRTPI * np.exp(-x * x)), "φ(x) = erf x"),
    "softplus": Activation("softplus", SOFTPLUS, _np_softplus_pair, "φ(x) = log(1+e^x)"),
    "gelu": Activation("gelu", GELU, _np_gelu_pair, "φ(x) = x Φ(x) (exact, not the tanh approximation)"),
}
_USER: dict[str, Activation] = {}
_USER_FNS: list = [_zero] * (2 * MAX_USER)


def names() -> list[str]:
    """Names of every registered activation, built-ins first."""
    return list(_BUILTIN) + list(_USER)


def get(name: str, key: str = "activation") -> Activation:
    """Look up an activation by name; unknown names raise ConfigError listing the allowed ones."""
    if not isinstance(name, str):
        raise ConfigError(key, f"expected an activation name (string), got {type(name).__name__}; allowed: {', '.join(names())}")
    act = _BUILTIN.get(name) or _USER.get(name)   # name is a str here: hashable
    if act is None:
        raise ConfigError(key, f"unknown activation {name!r}; allowed: {', '.join(names())}")
    return act


def register(name: str, phi: Callable[[float], float], dphi: Callable[[float], float], doc: str = "") -> Activation:
    """Register a user activation from two scalar functions Numba can compile.

    ``phi`` and ``dphi`` may be plain Python functions using ``math``; they are compiled with
    signature ``float64(float64)``.  Re-registering a name replaces it.  At most
    ``MAX_USER`` user activations exist at once.
    """
    if name in _BUILTIN:
        raise ConfigError("activation", f"{name!r} is a built-in activation and cannot be replaced")
    slot = list(_USER).index(name) if name in _USER else len(_USER)
    if slot >= MAX_USER:
        raise ConfigError("activation", f"at most {MAX_USER} user activations can be registered")
    try:
        cphi = numba.njit(SCALAR_SIG)(getattr(phi, "py_func", phi))
        cdphi = numba.njit(SCALAR_SIG)(getattr(dphi, "py_func", dphi))
    except Exception as exc:  # numba typing errors
        raise ConfigError("activation", f"{name!r}: phi/dphi must be Numba-compilable float -> float functions ({exc.__class__.__name__})") from None
    _USER_FNS[2 * slot] = cphi
    _USER_FNS[2 * slot + 1] = cdphi
    vphi = np.vectorize(cphi, otypes=[float])
    vdphi = np.vectorize(cdphi, otypes=[float])
    act = Activation(name, USER_CODE0 + slot, lambda x: (vphi(x), vdphi(x)), doc or "user-registered")
    _USER[name] = act
    return act


def user_functions() -> tuple:
    """The function table passed to the kernels: empty while no user activation is
    registered (cheap calls), else the 2·MAX_USER first-class user functions."""
    return tuple(_USER_FNS) if _USER else ()

"""Edge maps σ(W, a): how a middle weight acts on the activation it carries (Problem room).

SPEC §1 writes the middle layers as h_l(j) = (1/n_{l−1}) Σ_i W_l(i, j) φ(h_{l−1}(i)): the edge
is *linear* in the weight.  Araújo–Oliveira–Yukimura (SPEC §5) allow a general map,

    h_l(x; j) = (1/n_{l−1}) Σ_i σ_l(W_l(i, j), φ_{l−1}(h_{l−1}(x; i))) + b_l(j),

and then a middle weight's drift depends on its own value, so its initial value ω (the
i.i.d. noise of SPEC §4) can no longer be averaged out: it becomes an extra index with its
own 1-D rule (``docs/edges.md``).  Every map is registered with its two partial derivatives
∂_W σ and ∂_a σ (checked against finite differences in ``tests/system/test_edges.py``):

=================  =====================  ======================  =====================
name               σ(W, a)                ∂_W σ                   ∂_a σ
=================  =====================  ======================  =====================
``linear``         W a                    a                       W
``tanh_weight``    tanh(W) a              (1 − tanh² W) a         tanh W
``tanh_product``   tanh(W a)              (1 − tanh²(W a)) a      (1 − tanh²(W a)) W
``sin_product``    sin(W a)               cos(W a) a              cos(W a) W
=================  =====================  ======================  =====================

Imports numpy, mfpde._jit, mfpde.problem.activations (tanh_fast), mfpde.errors only.
"""
from __future__ import annotations

import math

import numpy as np

from mfpde._jit import njit
from mfpde.problem.activations import tanh_fast
from mfpde import checks
from mfpde.errors import ConfigError

LINEAR = 0
TANH_WEIGHT = 1
TANH_PRODUCT = 2
SIN_PRODUCT = 3

CODES = {"linear": LINEAR, "tanh_weight": TANH_WEIGHT, "tanh_product": TANH_PRODUCT, "sin_product": SIN_PRODUCT}


def names() -> tuple[str, ...]:
    return tuple(CODES)


def code(name: str, key: str = "model.edges") -> int:
    """The integer code of a registered edge map (ConfigError naming ``key`` otherwise)."""
    if not checks.is_one_of(name, CODES):
        raise ConfigError(key, f"unknown edge map {name!r}; allowed: {', '.join(CODES)}")
    return CODES[name]


@njit(inline="always")
def edge(code, w, a):
    """(σ(w, a), ∂_W σ, ∂_a σ) of edge map ``code``."""
    if code == TANH_WEIGHT:
        t = tanh_fast(w)
        return t * a, (1.0 - t * t) * a, t
    if code == TANH_PRODUCT:
        t = tanh_fast(w * a)
        s = 1.0 - t * t
        return t, s * a, s * w
    if code == SIN_PRODUCT:
        c = math.cos(w * a)
        return math.sin(w * a), c * a, c * w
    return w * a, a, w


def numpy_edge(name: str, W: np.ndarray, a: np.ndarray):
    """The same three arrays in numpy (broadcasting), for references and tests."""
    if name == "linear":
        return W * a, a * np.ones_like(W), W * np.ones_like(a)
    if name == "tanh_weight":
        t = np.tanh(W)
        return t * a, (1.0 - t * t) * a, t * np.ones_like(a)
    if name == "tanh_product":
        t = np.tanh(W * a)
        s = 1.0 - t * t
        return t, s * a, s * W
    if name == "sin_product":
        c = np.cos(W * a)
        return np.sin(W * a), c * a, c * W
    raise ConfigError("model.edges", f"unknown edge map {name!r}; allowed: {', '.join(CODES)}")

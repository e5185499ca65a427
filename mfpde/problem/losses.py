"""Loss registry (Problem room): name -> compiled per-sample loss and its gradient in ŷ.

Each loss acts on one sample's outputs ŷ ∈ R^K and target y ∈ R^K and returns
``loss(y, ŷ)`` while writing ``∂loss/∂ŷ`` (SPEC §2's ∂_2 loss):

============  ==========================================  =======================
name          loss(y, ŷ)                                  notes
============  ==========================================  =======================
squared       ½ Σ_k (y_k − ŷ_k)²                          the SS / MMN convention
mse           Σ_k (y_k − ŷ_k)²                            twice ``squared``
huber         Σ_k H_δ(ŷ_k − y_k), H_δ(r) = ½r² (|r| ≤ δ),  parameter δ > 0
              δ(|r| − ½δ) otherwise
logistic      Σ_k log(1 + exp(−y_k ŷ_k))                  y_k ∈ {−1, +1}
softmax_ce    −Σ_k y_k log softmax(ŷ)_k                   ŷ are logits, K ≥ 2, y one-hot
============  ==========================================  =======================

Classification error: sign disagreement for K = 1, arg-max disagreement for K ≥ 2.
Imports numpy, math, mfpde._jit, mfpde.errors only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mfpde._jit import njit
from mfpde import checks
from mfpde.errors import ConfigError

SQUARED, MSE, HUBER, LOGISTIC, SOFTMAX_CE = range(5)


@njit
def loss_grad(code, param, y, yhat, grad):
    """Per-sample loss for rows ``y``, ``yhat`` (length K); writes ∂loss/∂ŷ into ``grad``."""
    K = y.shape[0]
    val = 0.0
    if code == SQUARED or code == MSE:
        c = 1.0 if code == SQUARED else 2.0
        for k in range(K):
            r = yhat[k] - y[k]
            val += 0.5 * c * r * r
            grad[k] = c * r
    elif code == HUBER:
        for k in range(K):
            r = yhat[k] - y[k]
            if abs(r) <= param:
                val += 0.5 * r * r
                grad[k] = r
            else:
                val += param * (abs(r) - 0.5 * param)
                grad[k] = param if r > 0.0 else -param
    elif code == LOGISTIC:
        for k in range(K):
            m = y[k] * yhat[k]
            # log(1 + e^{-m}) and its m-derivative −σ(−m), stably
            if m >= 0.0:
                e = math.exp(-m)
                val += math.log1p(e)
                s = e / (1.0 + e)
            else:
                e = math.exp(m)
                val += -m + math.log1p(e)
                s = 1.0 / (1.0 + e)
            grad[k] = -y[k] * s
    else:  # SOFTMAX_CE
        mx = yhat[0]
        for k in range(1, K):
            mx = max(mx, yhat[k])
        z = 0.0
        for k in range(K):
            z += math.exp(yhat[k] - mx)
        lse = mx + math.log(z)
        ysum = 0.0
        for k in range(K):
            ysum += y[k]
            val -= y[k] * (yhat[k] - lse)
        for k in range(K):
            grad[k] = ysum * math.exp(yhat[k] - lse) - y[k]
    return val


@njit
def misclassified(y, yhat):
    """1.0 if the prediction's class differs from the target's, else 0.0."""
    K = y.shape[0]
    if K == 1:
        return 1.0 if y[0] * yhat[0] <= 0.0 else 0.0
    ky = 0
    kh = 0
    for k in range(1, K):
        if y[k] > y[ky]:
            ky = k
        if yhat[k] > yhat[kh]:
            kh = k
    return 1.0 if ky != kh else 0.0


def reference_loss(name: str, param: float, y: np.ndarray, yhat: np.ndarray) -> np.ndarray:
    """Numpy reference of the per-sample loss (rows = samples); used by tests and references."""
    r = yhat - y
    if name == "squared":
        return 0.5 * np.sum(r * r, axis=-1)
    if name == "mse":
        return np.sum(r * r, axis=-1)
    if name == "huber":
        a = np.abs(r)
        return np.sum(np.where(a <= param, 0.5 * r * r, param * (a - 0.5 * param)), axis=-1)
    if name == "logistic":
        return np.sum(np.logaddexp(0.0, -y * yhat), axis=-1)
    if name == "softmax_ce":
        lse = np.logaddexp.reduce(yhat, axis=-1, keepdims=True)
        return -np.sum(y * (yhat - lse), axis=-1)
    raise ConfigError("model.loss", f"unknown loss {name!r}")


@dataclass(frozen=True)
class Loss:
    name: str
    code: int
    param: float = 0.0


LOSSES = {"squared": SQUARED, "mse": MSE, "huber": HUBER, "logistic": LOGISTIC, "softmax_ce": SOFTMAX_CE}


def get(name: str, param: float | None = None, K: int = 1, key: str = "model.loss") -> Loss:
    """Validated loss description; ``param`` is Huber's δ (default 1.0)."""
    checks.choice(name, LOSSES, key, what="loss")
    if name == "huber":
        delta = checks.number(1.0 if param is None else param, key.rsplit(".", 1)[0] + ".huber_delta", positive=True)
        return Loss(name, HUBER, delta)
    if name == "softmax_ce" and K < 2:
        raise ConfigError(key, "softmax_ce needs at least 2 outputs (set model.outputs >= 2)")
    return Loss(name, LOSSES[name], 0.0)

"""Neuronal embeddings (Problem room): initial functions evaluated on rule nodes.

An initial function maps node arrays to initial parameter values (SPEC §2):
``w_1^0(c_1)`` → [Q1, d], ``W_l^0(c_{l−1}, c_l)`` → [Q_{l−1}, Q_l], ``v^0(c_L)`` → [QL, K],
``b_l^0(c_l)`` → [Q_l], ``b_out`` → [K].  Built-in families:

* ``constant``   — a number (or a list matching the trailing dimension);
* ``coordinate`` — the node coordinates themselves, columns ``start, start+1, …``;
* ``affine``     — ``mean + std · coordinate`` (index spaces carrying a standard normal law);
* ``quantile``   — a law's quantile map applied to coordinates in (0, 1) (``normal`` or
  ``uniform``), for index spaces carrying the uniform law;
* ``kernel``     — ``m + s · ψ(<A c, c'>)`` with bounded ψ ∈ {tanh, sin, cos, erf, sigmoid}
  (the correlated "bidirectional diversity" family, SPEC §4; for ``W_l`` only);
* ``python``     — any vectorized callable (Python API only).

Middle weights (``W_l``) may carry ``noise_std`` s: a finite network then adds i.i.d.
N(0, s²) noise to W_l^0(c, c') (the i.i.d. initialization of SPEC §4, mean m_l =
the function).  The limit ignores it: inside every expectation the noise averages out.

Imports numpy, scipy, mfpde.errors only.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

import numpy as np

from mfpde import checks
from mfpde.errors import ConfigError

def _erf(x):
    from scipy import special   # lazily: scipy.special costs 0.15 s at import

    return special.erf(x)


def _expit(x):
    from scipy import special

    return special.expit(x)


PSI = {"tanh": np.tanh, "sin": np.sin, "cos": np.cos, "erf": _erf, "sigmoid": _expit}
INIT_KINDS = ("constant", "coordinate", "affine", "quantile", "kernel")


def _cols(nodes: np.ndarray, start: int, n: int, key: str) -> np.ndarray:
    if start + n > nodes.shape[1]:
        raise ConfigError(key, f"needs node coordinates {start}..{start + n - 1} but the index space has dimension {nodes.shape[1]}")
    return nodes[:, start:start + n]


@dataclass(frozen=True)
class InitFn:
    """An initial function of one family; ``params`` is its TOML table."""

    kind: str
    params: dict = field(default_factory=dict)
    fn: Callable | None = None  # kind == "python"
    scale: float = 1.0          # values × scale (the output scale α on v, mfpde.problem.config._output_scaling)

    def scaled(self, factor: float) -> "InitFn":
        """The same initial function with its values × ``factor``."""
        return replace(self, scale=self.scale * float(factor))

    @property
    def noise_std(self) -> float:
        """Std of the i.i.d. noise finite networks add to this middle weight (0: none)."""
        return float(self.params.get("noise_std", 0.0))

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "python":
            return {"kind": "python", "name": getattr(self.fn, "__name__", "callable")}
        return {"kind": self.kind, **self.params}

    def node_values(self, nodes: np.ndarray, width: int | None, key: str) -> np.ndarray:
        """Values on one layer's nodes: shape [Q, width] (width given) or [Q] (width None)."""
        Q = nodes.shape[0]
        n = 1 if width is None else width
        p = self.params
        if self.kind == "constant":
            val = np.broadcast_to(np.asarray(p.get("value", 0.0), dtype=float), (Q, n)).copy()
        elif self.kind == "coordinate":
            val = _cols(nodes, p.get("start", 0), n, key).copy()
        elif self.kind == "affine":
            val = p.get("mean", 0.0) + p.get("std", 1.0) * _cols(nodes, p.get("start", 0), n, key)
        elif self.kind == "quantile":
            u = _cols(nodes, p.get("start", 0), n, key)
            if np.any((u <= 0) | (u >= 1)):
                raise ConfigError(key, "the quantile map needs node coordinates strictly inside (0, 1): use a uniform rule on [0, 1]")
            if p.get("law", "normal") == "normal":
                from scipy import special

                val = p.get("mean", 0.0) + p.get("std", 1.0) * special.ndtri(u)
            else:
                lo, hi = p.get("low", 0.0), p.get("high", 1.0)
                val = lo + (hi - lo) * u
        elif self.kind == "python":
            val = np.asarray(self.fn(nodes), dtype=float).reshape(Q, -1)
        else:
            raise ConfigError(key, f"initial function kind {self.kind!r} is only allowed for W_l (a function of two nodes)")
        if val.shape != (Q, n):
            raise ConfigError(key, f"initial function gave shape {val.shape}, expected {(Q, n)}")
        if self.scale != 1.0:
            val = val * self.scale
        return val if width is not None else val[:, 0]

    def edge_values(self, nodes_prev: np.ndarray, nodes: np.ndarray, key: str) -> np.ndarray:
        """Values W_l^0(c_{l−1}, c_l) on all node pairs: shape [Q_{l−1}, Q_l]."""
        shape = (nodes_prev.shape[0], nodes.shape[0])
        p = self.params
        if self.kind == "constant":
            return np.full(shape, float(p.get("value", 0.0)))
        if self.kind == "kernel":
            A = np.asarray(p.get("A", np.eye(nodes.shape[1], nodes_prev.shape[1])), dtype=float)
            if A.shape != (nodes.shape[1], nodes_prev.shape[1]):
                raise ConfigError(f"{key}.A", f"must have shape [dim of layer l, dim of layer l-1] = {[nodes.shape[1], nodes_prev.shape[1]]}, got {list(A.shape)}")
            psi = PSI[p.get("psi", "tanh")]
            return p.get("m", 0.0) + p.get("s", 1.0) * psi((nodes_prev @ A.T) @ nodes.T)
        if self.kind == "python":
            val = np.asarray(self.fn(nodes_prev, nodes), dtype=float)
            if val.shape != shape:
                raise ConfigError(key, f"initial function gave shape {val.shape}, expected {shape}")
            return val
        raise ConfigError(key, f"kind {self.kind!r} is not allowed for a middle weight W_l; allowed: constant, kernel")


def constant(value=0.0, noise_std: float = 0.0) -> InitFn:
    p: dict[str, Any] = {"value": value}
    if noise_std:
        p["noise_std"] = float(noise_std)
    return InitFn("constant", p)


def coordinate(start: int = 0) -> InitFn:
    return InitFn("coordinate", {"start": start})


def affine(mean=0.0, std=1.0, start: int = 0) -> InitFn:
    return InitFn("affine", {"mean": mean, "std": std, "start": start})


def kernel(m=0.0, s=1.0, psi: str = "tanh", A=None, noise_std: float = 0.0) -> InitFn:
    params: dict[str, Any] = {"m": m, "s": s, "psi": psi}
    if noise_std:
        params["noise_std"] = float(noise_std)
    if A is not None:
        params["A"] = np.asarray(A, dtype=float).tolist()
    return InitFn("kernel", params)


def python(fn: Callable) -> InitFn:
    return InitFn("python", {}, fn)


_ALLOWED = {
    "constant": {"kind", "value"},
    "coordinate": {"kind", "start"},
    "affine": {"kind", "mean", "std", "start"},
    "quantile": {"kind", "law", "mean", "std", "low", "high", "start"},
    "kernel": {"kind", "m", "s", "psi", "A"},
}


def make_init(spec: Any, key: str, *, edge: bool = False) -> InitFn:
    """An initial function from a number (constant) or a table ``{kind = ..., ...}``; validated."""
    if checks.is_number(spec):
        return constant(checks.number(spec, key))
    if isinstance(spec, list) and not edge:
        return constant([checks.number(x, key) for x in spec])
    if not isinstance(spec, Mapping):
        raise ConfigError(key, f"expected a number or a table with kind = {' | '.join(INIT_KINDS)}, got {spec!r}")
    allowed_kinds = ("constant", "kernel") if edge else ("constant", "coordinate", "affine", "quantile")
    kind = checks.choice(spec.get("kind"), allowed_kinds, f"{key}.kind", what="(or unsuitable here) kind")
    checks.check_keys(spec, sorted(_ALLOWED[kind] | ({"noise_std"} if edge else set())), key, hint=f" (kind {kind!r})")
    p: dict[str, Any] = {}
    for k, v in spec.items():
        if k == "kind":
            continue
        if k == "start":
            p[k] = checks.integer(v, f"{key}.start", lo=0)
        elif k == "psi":
            p[k] = checks.choice(v, PSI, f"{key}.psi", what="ψ")
        elif k == "law":
            p[k] = checks.choice(v, ("normal", "uniform"), f"{key}.law", what="law")
        elif k == "A":
            A = checks.array(v, f"{key}.A")
            if A.ndim != 2:
                raise ConfigError(f"{key}.A", "must be a matrix (list of lists of numbers)")
            p[k] = A.tolist()
        elif k == "noise_std":
            p[k] = checks.number(v, f"{key}.noise_std", nonneg=True)
        elif k == "value" and isinstance(v, list):
            p[k] = [checks.number(x, f"{key}.value") for x in v]
        else:
            p[k] = checks.number(v, f"{key}.{k}", positive=(k == "std"))
    if kind == "quantile" and p.get("law", "normal") == "uniform" and p.get("low", 0.0) >= p.get("high", 1.0):
        raise ConfigError(f"{key}.high", "must be greater than low")
    return InitFn(kind, p)

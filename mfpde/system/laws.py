"""Laws of parameters at random indices (System room): weighted quantiles on the rule.

The limit's parameter θ(t, C) at a random index C ~ P_l has the push-forward law of P_l under
θ(t, ·) (SPEC §2 observables; e.g. the law of w_1(t, C_1) is the limit of the first-layer
weight histogram).  On a rule it is the discrete law with atoms θ(t, c_q) and masses ω_q
(for a middle weight W_l(c, c'): masses ω_{l−1,i} ω_{l,j}; with an initial-noise index ω
(nonlinear edges): ρ_r ω_{l−1,i} ω_{l,j}).  Tracer nodes (ω = 0) carry no
mass.  Imports numpy only.
"""
from __future__ import annotations

import numpy as np

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


def weighted_quantiles(values: np.ndarray, weights: np.ndarray, qs=QUANTILES) -> np.ndarray:
    """Quantiles of the discrete law Σ w_i δ_{values_i} (w ≥ 0; left-continuous inverse CDF)."""
    v = np.asarray(values, float).ravel()
    w = np.asarray(weights, float).ravel()
    keep = w > 0
    v, w = v[keep], w[keep]
    order = np.argsort(v, kind="stable")
    v, cw = v[order], np.cumsum(w[order])
    cw /= cw[-1]
    idx = np.searchsorted(cw, np.asarray(qs, float) - 1e-12, side="left")
    return v[np.minimum(idx, len(v) - 1)]


def block_masses(system, name: str) -> np.ndarray:
    """Mass of every entry of parameter block ``name`` (same shape as the block)."""
    w = system.weights
    L = len(w)
    K = system.layout.outputs
    d = system.layout.input_dim
    if name == "w_1":
        return np.repeat(w[0][:, None], d, axis=1)
    if name == "v":
        return np.repeat(w[L - 1][:, None], K, axis=1)
    if name == "b_out":
        return np.ones(K)
    l = int(name.split("_")[1])
    if name.startswith("b_"):
        return w[l - 1]
    m = np.outer(w[l - 2], w[l - 1])
    if system.layout.omega_sizes[l - 1] > 1:   # W_l(ω, c, c'): masses ρ_r ω_{l−1,i} ω_{l,j}
        m = system.edge_weights[l - 2][:, None, None] * m[None]
    return m


def parameter_laws(system, y: np.ndarray, qs=QUANTILES) -> dict[str, np.ndarray]:
    """Weighted quantiles of every parameter block (entries pooled over their columns), plus
    the law of the first-layer weight norm |w_1(C_1)| when d > 1."""
    out = {}
    for name, block in system.views(y).items():
        if name == "b_out":
            continue
        out[name] = weighted_quantiles(block, block_masses(system, name), qs)
    if system.layout.input_dim > 1:
        w1 = system.views(y)["w_1"]
        out["w_1_norm"] = weighted_quantiles(np.linalg.norm(w1, axis=1), system.weights[0], qs)
    return out

"""Independent plain-numpy references for the System tests (no mfpde kernels, no mfpde.problem.activations).

Everything here is derived by hand from SPEC §1 and §3 and shares no code with
``mfpde.system.kernels`` or ``mfpde.system``:

* ``ACT``                 — φ and φ' of every built-in activation, written out again;
* ``loss_and_grad``       — per-sample loss and ∂loss/∂ŷ of every built-in loss;
* ``Net``                 — a weighted network: neurons of hidden layer l at nodes with
  weights ω_l (equal weights 1/n_l give SPEC §1's finite network of width n_l);
* ``Net.forward``         — h_1 = X w_1ᵀ + b_1, h_l = (φ(h_{l−1})·ω_{l−1}) W_l + b_l,
  h_out = (φ(h_L)·ω_L) v + b_out, ŷ = φ_out(h_out);
* ``Net.risk_gradient``   — ∂R/∂θ of R = Σ_m ρ_m loss(y_m, ŷ(x_m)) by reverse-mode chain rule
  on the forward above (written as a gradient, not as SPEC §2's δ-recursion);
* ``richardson_gradient``  — ∇f by extrapolated central differences (the FD gradient checks);
* ``spec_multiplier``     — SPEC §1's multiplier table (fan-in × fan-out width);
* ``Net.population_drift``— the population gradient flow of the weighted network: the
  gradient divided by the node weights each parameter touches (ω_{l−1,i} ω_{l,j} for W_l,
  ω_{1,j} for w_1 and b_1, …), times −ξ.  For equal weights 1/n this is SPEC §1's
  mean-field multiplier table; for zero-weight (tracer) nodes it is the limit
  ω → 0 of that quotient, evaluated in closed form (the reason the gradient is carried
  per node *before* the weight factor is applied, see ``_grads``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import special

_SQRT2PI = np.sqrt(2.0 * np.pi)


def _sigmoid(x):
    return special.expit(x)


ACT = {
    "identity": (lambda x: x.copy(), lambda x: np.ones_like(x)),
    "tanh": (np.tanh, lambda x: 1.0 / np.cosh(x) ** 2),
    "relu": (lambda x: np.where(x > 0, x, 0.0), lambda x: (x > 0).astype(float)),
    "sigmoid": (_sigmoid, lambda x: _sigmoid(x) * _sigmoid(-x)),
    "erf": (special.erf, lambda x: 2.0 / np.sqrt(np.pi) * np.exp(-x * x)),
    "softplus": (lambda x: np.logaddexp(0.0, x), _sigmoid),
    "gelu": (lambda x: x * special.ndtr(x), lambda x: special.ndtr(x) + x * np.exp(-0.5 * x * x) / _SQRT2PI),
}


def loss_and_grad(name: str, param: float, Y: np.ndarray, Yhat: np.ndarray):
    """(per-sample loss [M], ∂loss/∂ŷ [M, K]) derived by hand from the definitions in SPEC/losses."""
    r = Yhat - Y
    if name == "squared":
        return 0.5 * np.sum(r * r, axis=1), r
    if name == "mse":
        return np.sum(r * r, axis=1), 2.0 * r
    if name == "huber":
        a = np.abs(r)
        val = np.where(a <= param, 0.5 * r * r, param * (a - 0.5 * param))
        return val.sum(axis=1), np.where(a <= param, r, param * np.sign(r))
    if name == "logistic":
        m = Y * Yhat
        # d/dŷ log(1 + e^{−yŷ}) = −y e^{−yŷ}/(1 + e^{−yŷ}) = −y σ(−yŷ)
        return np.logaddexp(0.0, -m).sum(axis=1), -Y * _sigmoid(-m)
    if name == "softmax_ce":
        lse = np.logaddexp.reduce(Yhat, axis=1, keepdims=True)
        p = np.exp(Yhat - lse)
        # −Σ_k y_k (ŷ_k − lse): ∂/∂ŷ_j = −y_j + (Σ_k y_k) p_j
        return -np.sum(Y * (Yhat - lse), axis=1), p * Y.sum(axis=1, keepdims=True) - Y
    raise ValueError(name)


@dataclass
class Net:
    """A weighted network (SPEC §3) described without mfpde: shapes, activations, node weights."""

    d: int
    K: int
    acts: tuple[str, ...]
    omegas: list[np.ndarray]                 # node weights per hidden layer (1/n_l: finite network)
    biases: tuple[bool, ...]
    output_bias: bool = False
    out_act: str = "identity"
    loss: str = "squared"
    loss_param: float = 0.0
    names: list[str] = field(init=False)

    def __post_init__(self):
        L = len(self.acts)
        self.names = []
        for l in range(1, L + 1):
            self.names.append("w_1" if l == 1 else f"W_{l}")
            if self.biases[l - 1]:
                self.names.append(f"b_{l}")
        self.names.append("v")
        if self.output_bias:
            self.names.append("b_out")

    @property
    def L(self) -> int:
        return len(self.acts)

    @property
    def sizes(self) -> list[int]:
        return [len(w) for w in self.omegas]

    # ------------------------------------------------------------------ forward
    def forward(self, P: dict, X: np.ndarray):
        """Pre-activations H_l [M, Q_l], activations A_l, h_out [M, K], ŷ [M, K]."""
        Hs, As = [], []
        for l in range(1, self.L + 1):
            if l == 1:
                h = X @ P["w_1"].T
            else:
                h = (As[-1] * self.omegas[l - 2]) @ P[f"W_{l}"]
            if self.biases[l - 1]:
                h = h + P[f"b_{l}"]
            Hs.append(h)
            As.append(ACT[self.acts[l - 1]][0](h))
        hout = (As[-1] * self.omegas[-1]) @ P["v"]
        if self.output_bias:
            hout = hout + P["b_out"]
        return Hs, As, hout, ACT[self.out_act][0](hout)

    def risk(self, P: dict, X, Y, rho) -> float:
        yhat = self.forward(P, X)[3]
        return float(rho @ loss_and_grad(self.loss, self.loss_param, Y, yhat)[0])

    # ------------------------------------------------------------------ backward
    def _grads(self, P: dict, X, Y, rho) -> dict:
        """Per-node factors of ∂R/∂θ: ∂R/∂θ = (this) × (product of the node weights θ touches).

        Reverse mode on ``forward``: with E_out = ∂R/∂h_out = ρ ∂loss φ'_out,
        ∂R/∂v(j,k) = ω_L(j) Σ_m A_L(m,j) E_out(m,k); E_L = ∂R/∂h_L = ω_L · (E_out vᵀ) φ'_L, so
        E_L carries one factor ω_L(j), which we keep separate as e_L = E_L / ω_L(j):
        e_L = (E_out vᵀ) φ'_L; then ∂R/∂W_l(i,j) = ω_{l−1}(i) ω_l(j) Σ_m A_{l−1}(m,i) e_l(m,j),
        ∂R/∂b_l(j) = ω_l(j) Σ_m e_l(m,j), e_{l−1} = ((e_l · ω_l) W_lᵀ) φ'_{l−1}.
        """
        Hs, As, hout, yhat = self.forward(P, X)
        _, g = loss_and_grad(self.loss, self.loss_param, Y, yhat)
        E_out = rho[:, None] * g * ACT[self.out_act][1](hout)
        out = {"v": As[-1].T @ E_out}
        if self.output_bias:
            out["b_out"] = E_out.sum(axis=0)
        e = (E_out @ P["v"].T) * ACT[self.acts[-1]][1](Hs[-1])
        for l in range(self.L, 0, -1):
            if l == 1:
                out["w_1"] = e.T @ X
            else:
                out[f"W_{l}"] = As[l - 2].T @ e
            if self.biases[l - 1]:
                out[f"b_{l}"] = e.sum(axis=0)
            if l > 1:
                e = ((e * self.omegas[l - 1]) @ P[f"W_{l}"].T) * ACT[self.acts[l - 2]][1](Hs[l - 2])
        return out

    def _weight_factor(self, name: str) -> np.ndarray | float:
        """Product of node weights a parameter touches (shape broadcastable to the parameter)."""
        om = self.omegas
        if name == "w_1":
            return om[0][:, None]
        if name == "v":
            return om[-1][:, None]
        if name == "b_out":
            return 1.0
        if name.startswith("b_"):
            return om[int(name[2:]) - 1]
        l = int(name[2:])
        return om[l - 2][:, None] * om[l - 1][None, :]

    def risk_gradient(self, P: dict, X, Y, rho) -> dict:
        """∂R/∂θ for every parameter block (plain gradient of the weighted network's risk)."""
        return {k: v * self._weight_factor(k) for k, v in self._grads(P, X, Y, rho).items()}

    def population_drift(self, P: dict, X, Y, rho, xi: dict) -> dict:
        """−ξ_θ × ∂R/∂θ / (node weights of θ): the drift of SPEC §3's weighted network.

        ``xi`` maps parameter names to ξ values at the current time.
        """
        return {k: -xi[k] * v for k, v in self._grads(P, X, Y, rho).items()}


def gd(net: Net, P0: dict, X, Y, rho, xi_of_t, eps: float, steps: int) -> dict:
    """Full-batch mean-field GD: θ ← θ − ε ξ_θ(t_k) ∂R/∂θ / (node weights of θ), t_k = kε.

    Written as a plain gradient step on the weighted network (``risk_gradient``) followed by
    the division by the node weights — SPEC §1's update with n replaced by 1/ω.
    """
    P = {k: np.array(v, dtype=float, copy=True) for k, v in P0.items()}
    for k in range(steps):
        t = k * eps
        xi = xi_of_t(t)
        G = net.risk_gradient(P, X, Y, rho)
        for name in P:
            P[name] = P[name] - eps * xi[name] * G[name] / net._weight_factor(name)
    return P


def richardson_gradient(f, y: np.ndarray, rel_step: float = 1e-4) -> np.ndarray:
    """∇f by Richardson-extrapolated central differences: (4 D(h/2) − D(h)) / 3.

    D(h) = (f(y + h e_i) − f(y − h e_i)) / 2h has error h² f'''/6 + O(h⁴); the extrapolation
    removes the h² term, leaving O(h⁴) ≈ 1e-16 truncation at h = 1e-4 for O(1) derivatives.
    The rounding error of each entry is ≈ (5/3) u |R| / h ≈ 4e-12 |R| (u = 2.2e-16).  Entries
    of ∂R/∂W_l are O(1/(n_{l−1} n_l)) ≈ 1/40 here and can be smaller still, so relative to a
    block the error is ≲ 1e-8 (measured: ≤ 7e-9 over all cases); the 1e-6 tolerance keeps a
    margin of 100 and still catches a 1e-6 relative error in a multiplier.
    """
    g = np.empty_like(y)
    for i in range(y.size):
        h = rel_step * max(1.0, abs(y[i]))

        def D(s):
            yp = y.copy()
            ym = y.copy()
            yp[i] += s
            ym[i] -= s
            return (f(yp) - f(ym)) / (2.0 * s)

        g[i] = (4.0 * D(0.5 * h) - D(h)) / 3.0
    return g


def spec_multiplier(name: str, widths: list[int]) -> float:
    """SPEC §1's table: fan-in width × fan-out width (input and output count as width 1)."""
    L = len(widths)
    if name == "w_1":
        return widths[0]
    if name == "v":
        return widths[L - 1]
    if name == "b_out":
        return 1.0
    if name.startswith("b_"):
        return widths[int(name[2:]) - 1]
    l = int(name[2:])
    return widths[l - 2] * widths[l - 1]

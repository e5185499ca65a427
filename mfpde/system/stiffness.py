"""Stiffness indicators of the limit system (System room).

* the ratio of the largest to the smallest non-zero per-layer rate ξ_l(t) (weights and
  biases);
* the spectral radius ρ of the Jacobian ∂(drift)/∂y at a state, by power iteration on
  Jacobian–vector products (a gradient flow's Jacobian is symmetric in the rule-weighted inner
  product, so its spectrum is real and power iteration converges to the eigenvalue of largest
  modulus);
* the explicit stability bound dt ≲ r/ρ of each fixed-step method (r = 2 for Euler, 2 for
  Heun/midpoint, 2.51 for RK3, 2.79 for RK4 on the negative real axis).

The products are central finite differences of the compiled right-hand side by default
(``method="fd"``: two RHS per product, :func:`mfpde.system.jvp.fd_jvp` with the step
h = ε^(1/3)·(1 + ‖y‖) along a unit vector), so a report before an explicit solve compiles
nothing beyond the RHS the solve needs anyway; ``method="analytic"`` uses the compiled analytic
JVP (``System.jvp``), which implicit steppers compile for their Newton solves.  Accuracy of
the FD products: J·v + (h²/6)·D³F[v, v, v] + rounding ≈ ε·‖F‖_scale/h, i.e. a relative error of
order ε^(2/3)·(1 + ‖y‖)² ≈ 4e-11·(1 + ‖y‖)² times the ratio of the drift's third derivative
to its first, far below the few digits a stability bound needs.

``mfpde solve`` prints them and a suggestion when the chosen step is unstable or the system
is stiff.  Imports numpy and mfpde.errors only (and the System passed in).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IMPLICIT = ("backward_euler", "implicit_midpoint", "sdirk4")
STIFF_ADVICE = ("  the rates differ by ≥ 10³: the system is stiff and explicit steps are limited by stability; "
                "suggestion: solver.stepper = \"sdirk4\" (implicit, error-controlled; it pays on long horizons, "
                "docs/steppers.md)")
REAL_AXIS_STABILITY = {"euler": 2.0, "heun": 2.0, "midpoint": 2.0, "rk3": 2.5127, "rk4": 2.7853}


@dataclass(frozen=True)
class Stiffness:
    rate_ratio: float
    spectral_radius: float
    stable_dt: dict

    def report(self, stepper: str, dt: float | None) -> str:
        lines = [f"stiffness: per-layer rate ratio max ξ / min ξ = {self.rate_ratio:.3g}; "
                 f"Jacobian spectral radius ρ ≈ {self.spectral_radius:.3g}"]
        bound = self.stable_dt.get(stepper)
        if bound is not None and dt is not None:
            ok = dt <= bound
            lines.append(f"  {stepper}: stable for dt ≲ {bound:.3g} (dt = {dt:g}: {'ok' if ok else 'UNSTABLE — reduce dt'})")
            if self.rate_ratio >= 1e3:
                lines.append(STIFF_ADVICE)
            elif not ok:
                lines.append("  suggestion: an adaptive stepper (solver.stepper = \"dopri5\") chooses its own stable steps")
        elif self.rate_ratio >= 1e3 and stepper not in IMPLICIT:
            lines.append(STIFF_ADVICE)
        return "\n".join(lines)


def rate_ratio(system, t: float = 0.0) -> float:
    sch = list(system.problem.schedules.weights)
    m = system.problem.model
    sch += [s for s, b in zip(system.problem.schedules.biases, list(m.biases) + [m.output_bias]) if b]
    vals = [abs(s(t)) for s in sch if s(t) != 0.0]
    return max(vals) / min(vals) if vals else 1.0


METHODS = ("fd", "analytic")


def spectral_radius(system, y=None, t: float = 0.0, iters: int = 30, seed: int = 0, method: str = "fd") -> float:
    """|λ|_max of the drift's Jacobian at (t, y) by power iteration on Jacobian–vector products:
    ``method="fd"`` central differences of ``System.rhs`` (compiles no JVP kernel), ``"analytic"``
    the compiled analytic JVP (see the module docstring for the accuracy of each)."""
    if method not in METHODS:
        from mfpde.errors import ConfigError

        raise ConfigError("method", f"must be one of {', '.join(METHODS)}, got {method!r}")
    kind = "fd_central" if method == "fd" else "analytic"
    y = system.y0 if y is None else y
    rng = np.random.default_rng(seed)
    v = rng.standard_normal(y.shape)
    v /= np.linalg.norm(v)
    lam = 0.0
    for _ in range(iters):
        Jv = system.jvp(t, y, v, method=kind)
        nrm = float(np.linalg.norm(Jv))
        if not np.isfinite(nrm) or nrm == 0.0:
            return lam
        lam = nrm
        v = Jv / nrm
    return lam


def method_for(stepper: str) -> str:
    """The JVP a stiffness report before a solve with ``stepper`` uses: the analytic one for the
    implicit steppers (which compile it for Newton anyway), finite differences otherwise."""
    return "analytic" if stepper in IMPLICIT else "fd"


def assess(system, t: float = 0.0, method: str = "fd") -> Stiffness:
    """Rate ratio, spectral radius (``method`` as in :func:`spectral_radius`) and stable steps."""
    rho = spectral_radius(system, t=t, method=method)
    stable = {k: (r / rho if rho > 0 else float("inf")) for k, r in REAL_AXIS_STABILITY.items()}
    return Stiffness(rate_ratio(system, t), rho, stable)

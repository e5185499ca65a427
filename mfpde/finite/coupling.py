"""Per-weight coupling of a finite network to its ideal particles (Finite room; SPEC §4, "Tracer nodes").

The limit is solved once more with the network's own sampled features appended to every
layer's rule as zero-weight tracer nodes: they follow the limit drift without feeding back,
so tracer (i, j) is the ideal particle of the network's weight (i, j).  A weight's ideal
trajectory is its own initial value plus the tracer's displacement,
θ*(t) = θ_n(0) + (θ_tracer(t) − θ_tracer(0)) — for middle weights the i.i.d. noise
W_l^0 − m_l rides along unchanged, exactly as in SPEC §4's W_l^0(i, j) − m_l + W̄_l(t, ·).
The coupling error of a parameter block is the RMS over its entries of θ_n(t) − θ*(t).
Imports numpy and mfpde (System, solvers).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np



def tracer_problem(problem, nodes):
    """``problem`` with ``nodes[l]`` appended to layer l's rule as tracer nodes."""
    from mfpde.errors import ConfigError

    emb = problem.embedding
    if problem.model.nonlinear_edges:
        raise ConfigError("sgd.coupling", "tracer coupling is not available with nonlinear edge maps (a weight's ideal "
                          "particle would also need its own initial noise as a tracer on the noise index)")
    rules = tuple(r.with_tracers(n) for r, n in zip(emb.rules, nodes))
    return replace(problem, embedding=replace(emb, rules=rules))


def coupling_error(problem, run, dt: float, stepper: str = "euler") -> dict[str, np.ndarray]:
    """RMS coupling error per parameter block at the run's record times (needs run.states).

    The limit is stepped with ``stepper`` and step ``dt`` (default: Euler with the network's
    ε, so that the time discretization is shared and the error measures the width alone).
    """
    from mfpde.solvers import integrate, make
    from mfpde.system.system import System

    if not run.states:
        raise ValueError("coupling_error needs the run's states (train(..., snapshots=True or coupling=True))")
    tp = tracer_problem(problem, run.nodes)
    lim = System(tp)
    times = np.asarray(run.times, float)
    sol = integrate(lim, make(stepper, lim, dt=dt), float(times[-1]), times=times[1:-1] if len(times) > 2 else None)
    base = [r.size for r in problem.embedding.rules]          # tracer block starts
    widths = [len(n) for n in run.nodes]
    net_views0 = run.system.views(run.states[0])
    out: dict[str, list] = {}
    lim0 = lim.views(sol.states[0])
    for k, (t, y_net, y_lim) in enumerate(zip(times, run.states, sol.states)):
        vn, vl = run.system.views(y_net), lim.views(y_lim)
        for name in vn:
            tr = _tracer_block(name, vl[name], lim0[name], base, widths)
            ideal = net_views0[name] + tr
            diff = vn[name] - ideal
            out.setdefault(f"coupling_{name}", []).append(float(np.sqrt(np.mean(diff**2))))
    return {k: np.asarray(v) for k, v in out.items()}


def _tracer_block(name: str, now: np.ndarray, start: np.ndarray, base, widths) -> np.ndarray:
    """Displacement of the tracer entries of one parameter block since t = 0."""
    d = now - start
    if name == "w_1":
        return d[base[0]:base[0] + widths[0], :]
    if name == "v":
        return d[base[-1]:base[-1] + widths[-1], :]
    if name == "b_out":
        return d
    l = int(name.split("_")[1])
    if name.startswith("b_"):
        return d[base[l - 1]:base[l - 1] + widths[l - 1]]
    return d[base[l - 2]:base[l - 2] + widths[l - 2], base[l - 1]:base[l - 1] + widths[l - 1]]

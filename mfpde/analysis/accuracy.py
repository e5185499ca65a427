"""Solve to a stated accuracy (Analysis room; ``mfpde solve --accuracy TOL``, docs/accuracy.md).

:func:`solve_to` solves a configuration, reads its error estimate
(:mod:`mfpde.analysis.estimate`) and refines until the sup-time train-loss estimate is at most
the target ``tol``, or a cap stops it:

* **Where.**  The estimate has a rule part, a sampling part and a time part.  A part above
  ``tol / 2`` (the rule and sampling parts together) is refined; the others are kept.
* **Which rules.**  Each deterministic rule group — the rule of every hidden layer
  (``rules.layer_l``, or ``iid.rules.layer_l`` built from ``iid.rule``) and the training data's
  rule — gets its own estimate: two companions with that group alone coarsened (levels − 1 and
  − 2), extrapolated at the group's own ratio (:func:`mfpde.analysis.estimate.group_estimates`).  The solve's rule
  estimate becomes the larger of the uniform one and the sum of the groups' (groups refined
  unevenly converge at their own rates, and one common ratio can hide a slow group).  Only the
  groups with at least ``SHARE`` of the largest group estimate are refined, so a
  one-dimensional last layer is not refined with a d-dimensional first one.  With a single
  group the uniform estimate is that group's.
* **How much.**  For each refined group, the number of levels n (1 to ``MAX_LEVELS``)
  predicted by its ratio to bring its estimate below its share of ``tol / 2`` (each further
  level accelerates like the estimate's error model); its sizes grow by RATIO^(−n).  Sampled rules grow like their rate (N^−1/2).  The time step shrinks by the power
  of two (the tolerances by the power of ten) that Richardson's estimate predicts.
* **Caps.**  ``max_unknowns`` (the state size of the next solve) and ``max_seconds`` (the wall
  time so far plus the predicted next iteration) stop the loop *before* the solve that would
  break them; so does ``MAX_ITERATIONS``.  The result is then the best solve so far with its
  estimate, and :class:`Result` says the target was not met (the CLI exits with status 4).

Every iteration is one line (sizes, unknowns, estimate, seconds).  Imports numpy and mfpde.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

from mfpde import checks
from mfpde.analysis import estimate as E
from mfpde.analysis import references
from mfpde.errors import ConfigError

SHARE = 0.1            # refine the rule groups whose indicator is at least this share of the largest
MAX_LEVELS = 3         # at most RATIO^-3 ≈ 2.4× the sizes in one iteration
MAX_ITERATIONS = 8


@dataclass
class Result:
    solution: object
    config: object
    met: bool
    tol: float
    history: list[dict] = field(default_factory=list)
    reason: str = ""


# ---------------------------------------------------------------------------- rule groups
def _refinable(table) -> bool:
    found: dict = {}
    E._rescale(table, 0, 0, "", found)
    return bool(found.get("deterministic") or found.get("sampled"))


def _sized(table) -> str:
    """A short description of a rule table's resolution."""
    if not isinstance(table, Mapping):
        return "?"
    kind = table.get("kind", "gaussian_trapezoid")
    if kind == "tensor":
        return " x ".join(_sized(r) for r in table.get("rules", []))
    if kind == "smolyak":
        return f"smolyak level {table.get('level', 1)}"
    return f"{kind} {table.get('size', '?')}"


def unknowns(problem) -> int:
    """The state size of a problem's system, from its rules (nothing allocated)."""
    from mfpde.problem.config import state_size

    m, emb = problem.model, problem.embedding
    er = emb.edge_rules or (None,) * (m.L - 1)
    return state_size(m, [len(r.weights) for r in emb.rules], [1] + [1 if r is None else len(r.weights) for r in er])


# ---------------------------------------------------------------------------- the loop
def _levels_needed(e: float, target: float, rho: float) -> int:
    """Levels (RATIO steps) predicted to bring an error ``e`` with per-level ratio ρ below ``target``."""
    if not (e > target):
        return 0
    if not (0.0 < rho < E.MAX_RATIO):
        return 2
    kappa = E.RATIO ** -E.ALPHA
    r, n = rho ** kappa, 0
    while e > target and n < MAX_LEVELS:
        e *= r
        r **= kappa
        n += 1
    return max(n, 1)


def solve_to(config, tol: float, *, max_unknowns: int | None = None, max_seconds: float | None = None,
             base_dir=None, progress: bool | None = False, say: Callable[[str], None] = lambda s: None) -> Result:
    """Solve ``config`` (a built Config) to a sup-time train-loss error estimate <= ``tol``."""
    import mfpde

    tol = checks.number(tol, "--accuracy", positive=True)
    base_dir = config.base_dir if base_dir is None else base_dir
    t_start = time.perf_counter()
    raw = copy.deepcopy(dict(config.raw))
    raw.setdefault("accuracy", {})
    raw["accuracy"] = {**raw["accuracy"], "estimate": True, "groups": False}   # the groups are done here
    L = config.problem.model.L
    best, history = None, []
    for it in range(1, MAX_ITERATIONS + 1):
        c = mfpde.load(raw, source=config.source, base_dir=base_dir)
        t0 = time.perf_counter()
        sol = mfpde.solve(c, progress=progress)
        est = sol.estimate
        wall = time.perf_counter() - t0
        sizes = {name: _sized(E.get_rule(raw, path)) for name, path in E.groups(raw, L)}
        step = {k: sol.stepper[k] for k in E._time_keys(sol.stepper)}
        entry = {"iteration": it, "rules": sizes, "time": step, "state_size": int(sol.system.size),
                 "estimate": est.sup_loss if est.status == "ok" else math.nan, "seconds": wall,
                 "estimate_rule": float(np.max(est.loss_rule)) if est.loss_rule is not None else math.nan,
                 "estimate_sampling": float(np.max(est.loss_sampling)) if est.loss_sampling is not None else math.nan,
                 "estimate_time": float(np.max(est.loss_time)) if est.loss_time is not None else math.nan}
        history.append(entry)
        say(f"mfpde: accuracy: iteration {it}: " + ", ".join(f"{k} = {v}" for k, v in sizes.items())
            + ", " + ", ".join(f"{k} = {v:g}" for k, v in step.items())
            + f", {sol.system.size} unknowns: estimate {entry['estimate']:.2e} (target {tol:.2e}), {wall:.1f} s")
        if est.status != "ok":
            return Result(sol, c, False, tol, history, f"the error estimate is {est.status}")
        per_group = E.group_estimates(raw, L, sol, config.source, base_dir)
        if per_group:
            E.merge_groups(est, per_group, "solve_to")
            entry.update(estimate=est.sup_loss, estimate_rule=float(np.max(est.loss_rule)),
                         groups={n: g[0] for n, g in per_group.items()})
            say("mfpde: accuracy: per-group rule estimates (each group coarsened alone): "
                + ", ".join(f"{n} {g[0]:.1e}" for n, g in per_group.items())
                + f"; estimate {est.sup_loss:.2e}")
        if best is None or est.sup_loss < best[0].estimate.sup_loss:
            best = (sol, c)
        if est.sup_loss <= tol:
            return Result(sol, c, True, tol, history)
        # what to refine
        new = copy.deepcopy(raw)
        changes = []
        e_rule = entry["estimate_rule"] if math.isfinite(entry["estimate_rule"]) else 0.0
        e_samp = entry["estimate_sampling"] if math.isfinite(entry["estimate_sampling"]) else 0.0
        e_time = entry["estimate_time"] if math.isfinite(entry["estimate_time"]) else 0.0
        if e_rule + e_samp > tol / 2:
            cands = [(n, p) for n, p in E.groups(raw, L) if _refinable(E.get_rule(raw, p))]
            if not cands:
                return Result(best[0], best[1], False, tol, history, "no rule can be refined (user rules)")
            factors = {}
            if per_group and sum(g[0] for g in per_group.values()) >= 0.5 * e_rule:
                top = max(g[0] for g in per_group.values())
                active = [n for n, g in per_group.items() if g[0] >= SHARE * top and g[0] > 0.0]
                for n in active:   # each active group gets its share of the rule budget, at its own ratio
                    lev = _levels_needed(per_group[n][0], tol / (2 * len(active)), per_group[n][1])
                    factors[n] = E.RATIO ** -max(1, lev)
            elif e_rule > 0.0:   # one group, or groups that act together: all alike, at the common ratio
                factors = {n: E.RATIO ** -max(1, _levels_needed(e_rule, tol / 2, est.ratio)) for n, _ in cands}
            else:   # sampled rules only: error ∝ N^(-1/2)
                factors = {n: min(16.0, max(2.0, (2.0 * e_samp / tol) ** 2)) for n, _ in cands}
            for name, path in cands:
                if name in factors:
                    E.put_rule(new, path, references.scale_rule(E.get_rule(raw, path), factors[name], name, grow=True))
                    changes.append(f"{name} x {factors[name]:.3g}")
        if e_time > tol / 4:
            key = E._time_keys(sol.stepper)
            order = int(sol.stepper.get("order") or 1)
            s_new = new["solver"] = dict(new.get("solver", {}))
            if key == ("rtol", "atol"):
                f = 10.0 ** max(1, math.ceil(math.log10(4.0 * e_time / tol)))
            else:
                f = 2.0 ** max(1, math.ceil(math.log2((4.0 * e_time / tol) ** (1.0 / order))))
            for k in key:
                s_new[k] = float(sol.stepper[k]) / f
            changes.append(", ".join(f"{k} / {f:g}" for k in key))
        if not changes:   # the parts are each below their share but their sum is not: refine the larger
            return Result(best[0], best[1], False, tol, history, "no part of the estimate can be refined further")
        n_next = unknowns(mfpde.load(new, source=config.source, base_dir=base_dir).problem)
        elapsed = time.perf_counter() - t_start
        predicted = (wall * (1 + 2 * len(entry.get("groups", {})))) * (n_next / max(1, sol.system.size)) ** 1.5
        if max_unknowns is not None and n_next > max_unknowns:
            return Result(best[0], best[1], False, tol, history,
                          f"the next refinement ({'; '.join(changes)}) has {n_next} unknowns > max_unknowns = {max_unknowns}")
        if max_seconds is not None and elapsed + predicted > max_seconds:
            return Result(best[0], best[1], False, tol, history,
                          f"the next refinement ({'; '.join(changes)}) would take ~{predicted:.0f} s more: "
                          f"{elapsed:.0f} + {predicted:.0f} s > max_seconds = {max_seconds:g}")
        say(f"mfpde: accuracy: refining {'; '.join(changes)} -> {n_next} unknowns")
        raw = new
    return Result(best[0], best[1], False, tol, history, f"{MAX_ITERATIONS} iterations without meeting the target")

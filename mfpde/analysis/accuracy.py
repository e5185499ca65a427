"""Solve to a stated accuracy (Analysis room; ``mfpde solve --accuracy TOL``, docs/accuracy.md).

:func:`solve_to` solves a configuration, reads its error estimate
(:mod:`mfpde.analysis.estimate`) and refines until the sup-time train-loss estimate is at most
the target ``tol``, or a cap stops it:

* **Where.**  The estimate has a rule part, a sampling part and a time part.  A part above
  ``tol / 2`` (the rule and sampling parts together) is refined; the others are kept.
* **Which rules.**  Each rule group — the rule of every hidden layer (``rules.layer_l``, or
  ``iid.rules.layer_l`` built from ``iid.rule``) and the training data's rule — gets an
  *indicator*: the sup-time change of the train loss when that group alone is coarsened one
  level (sizes × RATIO).  Only the groups whose indicator is at least ``SHARE`` of the largest
  are refined, so a one-dimensional last layer is not refined with a d-dimensional first one.
  With a single refinable group no indicator is solved.
* **How much.**  With the observed per-level ratio ρ' of the estimate, the number of levels n
  (1 to ``MAX_LEVELS``) predicted to bring the rule part below ``tol / 2`` (each further level
  accelerates like the estimate's error model); the sizes of the chosen groups grow by
  RATIO^(−n).  Sampled rules grow like their rate (N^−1/2).  The time step shrinks by the power
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
def groups(raw: Mapping, L: int) -> list[tuple[str, tuple]]:
    """(name, path in the raw table) of each refinable rule group: one per hidden layer, and the
    training data's rule; the path of a layer names its own entry (created from ``default`` /
    ``iid.rule`` when the layer has none)."""
    out = []
    if isinstance(raw.get("iid"), Mapping):
        out += [(f"layer_{l}", ("iid", "rules", f"layer_{l}")) for l in range(1, L + 1)]
    else:
        out += [(f"layer_{l}", ("rules", f"layer_{l}")) for l in range(1, L + 1)]
    d = raw.get("data", {})
    if isinstance(d, Mapping) and isinstance(d.get("train"), Mapping) and isinstance(d["train"].get("rule"), Mapping):
        out.append(("data.train", ("data", "train", "rule")))
    return out


def _get(raw: Mapping, path: tuple):
    """The rule table at ``path``, falling back to the table a layer inherits."""
    node = raw
    for p in path:
        if not isinstance(node, Mapping) or p not in node:
            node = None
            break
        node = node[p]
    if node is not None:
        return node
    if path[0] == "iid":
        return raw["iid"].get("rule", {"kind": "gaussian_trapezoid", "size": 32})
    if path[0] == "rules":
        return raw["rules"].get("default")
    return None


def _put(raw: dict, path: tuple, table) -> None:
    node = raw
    for p in path[:-1]:
        node[p] = dict(node.get(p, {}))
        node = node[p]
    node[path[-1]] = table


def _grow(table, factor: float):
    """A copy of a rule table with its resolution × ``factor`` (> 1): sizes at least + 1, a Smolyak
    level + round(log2 factor) (at least + 1), a sampled rule's size × factor."""
    if not isinstance(table, Mapping):
        return table
    t = dict(table)
    kind = t.get("kind", "gaussian_trapezoid")
    if checks.is_one_of(kind, E.DETERMINISTIC + E.SAMPLED):
        size = t.get("size", 32 if kind == "gaussian_trapezoid" else 16)
        grow = lambda n: max(n + 1, int(math.ceil(n * factor))) if checks.is_integer(n) else n
        t["size"] = [grow(n) for n in size] if isinstance(size, list) else grow(size)
    elif checks.is_one_of(kind, ("tensor",)) and isinstance(t.get("rules"), list):
        t["rules"] = [_grow(r, factor) for r in t["rules"]]
    elif checks.is_one_of(kind, ("smolyak",)):
        t["level"] = int(t.get("level", 1)) + max(1, int(round(math.log2(factor))))
    return t


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
    raw["accuracy"] = {**raw["accuracy"], "estimate": True}
    L = config.problem.model.L
    best, history = None, []
    for it in range(1, MAX_ITERATIONS + 1):
        c = mfpde.load(raw, source=config.source, base_dir=base_dir)
        t0 = time.perf_counter()
        sol = mfpde.solve(c, progress=progress)
        est = sol.estimate
        wall = time.perf_counter() - t0
        sizes = {name: _sized(_get(raw, path)) for name, path in groups(raw, L)}
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
            cands = [(n, p) for n, p in groups(raw, L) if _refinable(_get(raw, p))]
            if not cands:
                return Result(best[0], best[1], False, tol, history, "no rule can be refined (user rules)")
            chosen = cands
            if len(cands) > 1:
                ind = {}
                for name, path in cands:
                    r = copy.deepcopy(raw)
                    r["accuracy"] = {**r["accuracy"], "estimate": False}
                    _put(r, path, E._rescale(_get(raw, path), 1, 0, name, {}))
                    r = E.companion(r)[0]
                    s = mfpde.solve(mfpde.load(r, source=config.source, base_dir=base_dir), progress=False,
                                    estimate=False, parameters="none")
                    ind[name] = float(np.max(np.abs(np.asarray(s.observable("loss_train")) -
                                                    np.asarray(sol.observable("loss_train")))))
                top = max(ind.values())
                chosen = [(n, p) for n, p in cands if top == 0.0 or ind[n] >= SHARE * top]
                entry["indicators"] = ind
                say("mfpde: accuracy: indicators (loss change with one group coarsened): "
                    + ", ".join(f"{n} {v:.1e}" for n, v in ind.items()))
            if e_rule > 0.0:
                n_lev = _levels_needed(e_rule, tol / 2, est.ratio)
                factor = E.RATIO ** -n_lev
            else:   # sampled rules only: error ∝ N^(-1/2)
                factor = min(16.0, max(2.0, (2.0 * e_samp / tol) ** 2))
            for name, path in chosen:
                _put(new, path, _grow(_get(raw, path), factor))
                changes.append(f"{name} x {factor:.3g}")
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
        predicted = (wall * (1 + len(entry.get("indicators", {})))) * (n_next / max(1, sol.system.size)) ** 1.5
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

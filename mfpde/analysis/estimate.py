"""The discretization-error estimate attached to every solve (Analysis room; docs/accuracy.md).

A solve's answer differs from the exact limit by the error of its index-space and data rules
and by the error of its time stepping.  :func:`estimate` measures both with *companion
solves* of the same configuration, each cheaper than the solve itself:

* **Rules.**  Two companions on coarser rules of the same families: every refinable rule size
  × ``RATIO`` and × ``RATIO²`` (:func:`_coarse_size`; a Smolyak level − 1 and − 2).  With the successive differences
  D₁ = sup_t |L₁ − L₂| (the two companions) and D₀ = sup_t |L₀ − L₁| (the solve and the
  first companion), the error ratio ρ = e₁/e₂ of the companions follows from q = D₀/D₁
  (:func:`ratio`; ρ ≈ q when the ratios are small) and is extrapolated one level further: the
  error of the solve is estimated as |L₀(t) − L₁(t)| · ρ'/(1 − ρ') with ρ' = ρ^κ,
  κ = (N₀^α − N₁^α)/(N₁^α − N₂^α) for the levels' largest per-coordinate sizes N_k, α = ``ALPHA``
  (RATIO^(−α) for exact geometric levels).  The exponent models an error exp(−c N^α) in the node count N: α = 0
  is algebraic convergence (κ = 1, a constant ratio per level), α = 1 exponential (κ =
  1/RATIO); ``ALPHA`` = 1/2 is Gauss–Hermite's known sub-exponential rate, the geometric
  middle of the two (docs/accuracy.md reports the factors observed on the stored references).
  When the differences do not shrink (ρ ≥ ``MAX_RATIO``) the rules are not yet in their
  convergent range: the estimate is the last difference itself and is marked unreliable.
* **Sampled rules** (Sobol', Monte Carlo) have a random error: ``SEEDS`` companions with other
  seeds at the same size; the estimate is the root-mean-square difference ÷ √2 (one standard
  deviation of a rule's error).
* **Time.**  One companion on the coarsest rule level with the step doubled (fixed-step
  steppers; dt ÷ 2 if 2 dt is refused or blows up) or a tighter tolerance
  (adaptive ones: rtol and atol ÷ ``TOL_FACTOR``; a looser companion may take the same steps where
  they are cut at save times): Richardson's estimate |L(2dt) − L(dt)| / (2^p − 1) with the stepper's
  order p (|L(dt) − L(dt/2)| · 2^p / (2^p − 1) for the halved step; |L(tol) − L(tol/10)| · 10/9,
  error ∝ tolerance, for adaptive steppers).

The estimates add: e(t) = e_rule(t) + e_sampling(t) + e_time(t), per saved time for the train
loss and per time and probe for ŷ.  Finite data sets and data samples (``sample = M``) have no
rule and no error.  Rules that cannot be refined (``user``) are kept as they are, and the
estimate says so.  :class:`Estimate` carries the per-time arrays and the attributes written
to the NetCDF file (:meth:`Estimate.attrs`, :data:`ATTRS`).  Imports numpy and mfpde.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

from mfpde import checks
from mfpde.errors import BlowUpError, ConfigError

RATIO = 0.75          # companion rule levels: sizes × RATIO and × RATIO²
ALPHA = 0.5           # error model exp(−c N^α) between the levels: ρ' = ρ^(RATIO^−α)
MAX_RATIO = 0.9       # ρ at or above this: not converging, the estimate is the difference (unreliable)
SEEDS = 2             # companions of a sampled rule at other seeds
TOL_FACTOR = 10.0     # adaptive steppers: the time companion has rtol, atol × TOL_FACTOR
MIN_SIZE = 2          # a coarsened rule keeps at least this many nodes per coordinate
DETERMINISTIC = ("gauss_hermite", "gauss_legendre", "gaussian_trapezoid", "chi", "sphere_marginal")
SAMPLED = ("sobol", "monte_carlo")
NORM = "sup over the saved times t of the estimated |error of loss_train(t)| (absolute)"
NORM_YHAT = "sup over the saved times and probe points of the estimated |error of ŷ(t, x)| (absolute)"
ATTRS = ("error_estimate_status", "error_estimate_loss", "error_estimate_yhat", "error_estimate_loss_rule",
         "error_estimate_loss_sampling", "error_estimate_loss_time", "error_estimate_reliable",
         "error_estimate_ratio", "error_estimate_method", "error_estimate_companions", "error_estimate_seconds",
         "error_estimate_norm", "error_estimate_norm_yhat")


# ---------------------------------------------------------------------------- companion configurations
REDUCED_RULES = ("radius_rule", "zeta_rule")   # [iid] rules of the SPEC §7 reduction (mfpde.problem.reduction)

def _coarse_size(n: int, k: int) -> int:
    """Size of level k (0 = as given): round(n·RATIO^k), strictly below level k − 1, at least MIN_SIZE.

    (Rounding to n's parity — symmetric rules have a centre node for odd sizes only — was tried:
    it made the levels uneven and the estimate worse, 11 instead of 15 of 18 validation points
    within a factor 3; docs/accuracy.md.)"""
    prev = n
    for j in range(1, k + 1):
        prev = max(MIN_SIZE, min(int(round(n * RATIO ** j)), prev - 1))
    return prev


def _rescale(table, k: int, seed_shift: int, key: str, found: dict):
    """A copy of a rule table at rule level ``k`` (deterministic sizes coarsened, Smolyak level − k)
    and, for sampled rules, seed + ``seed_shift``; ``found`` collects the kinds met (by category)."""
    if not isinstance(table, Mapping):
        return table
    t = dict(table)
    kind = t.get("kind", "gaussian_trapezoid")
    if checks.is_one_of(kind, DETERMINISTIC):
        found.setdefault("deterministic", []).append(key)
        size = t.get("size", 32 if kind == "gaussian_trapezoid" else 16)
        sizes = size if isinstance(size, list) else [size]
        if k and any(not checks.is_integer(s) or _coarse_size(s, k) >= _coarse_size(s, k - 1) for s in sizes):
            found.setdefault("too_small", []).append(key)
        new = [_coarse_size(s, k) if checks.is_integer(s) else s for s in sizes]
        found.setdefault("sizes", []).extend(n for n in new if checks.is_integer(n))
        if k:
            t["size"] = new if isinstance(size, list) else new[0]
    elif checks.is_one_of(kind, SAMPLED):
        found.setdefault("sampled", []).append(key)
        if seed_shift:
            t["seed"] = int(t.get("seed", 0)) + seed_shift
    elif checks.is_one_of(kind, ("tensor",)):
        rules = t.get("rules")
        if isinstance(rules, list):
            t["rules"] = [_rescale(r, k, seed_shift, f"{key}.rules[{i}]", found) for i, r in enumerate(rules)]
    elif checks.is_one_of(kind, ("smolyak",)):
        found.setdefault("deterministic", []).append(key)
        level = t.get("level", 1)
        if k:
            if not checks.is_integer(level) or level - k < 1:
                found.setdefault("too_small", []).append(key)
            else:
                t["level"] = level - k
    else:
        found.setdefault("fixed", []).append(key)   # user rules cannot be refined
    return t


def _rule_places(raw: Mapping):
    """(path, table) of every rule of a raw configuration: index spaces, edge noise, data laws."""
    out = []
    if isinstance(raw.get("iid"), Mapping):
        iid = raw["iid"]
        out.append((("iid", "rule"), iid.get("rule", {"kind": "gaussian_trapezoid", "size": 32})))
        if isinstance(iid.get("rules"), Mapping):
            out += [(("iid", "rules", name), v) for name, v in iid["rules"].items()]
        out += [(("iid", name), iid[name]) for name in REDUCED_RULES if isinstance(iid.get(name), Mapping)]
    if isinstance(raw.get("rules"), Mapping):
        out += [(("rules", name), v) for name, v in raw["rules"].items()]
    data = raw.get("data")
    if isinstance(data, Mapping):
        for part in ("train", "test"):
            if isinstance(data.get(part), Mapping) and isinstance(data[part].get("rule"), Mapping):
                out.append((("data", part, "rule"), data[part]["rule"]))
            if isinstance(data.get(part), Mapping) and isinstance(data[part].get("radius_rule"), Mapping):
                out.append((("data", part, "radius_rule"), data[part]["radius_rule"]))
    return out


def companion(raw: Mapping, level: int = 0, seed_shift: int = 0) -> tuple[dict, dict]:
    """A copy of ``raw`` at rule level ``level`` with sampled rules reseeded by ``seed_shift`` and
    without ``[data.test]`` (the estimate is of loss_train and ŷ), and the rule keys found by
    category (``deterministic``, ``sampled``, ``fixed``, ``too_small``)."""
    r = copy.deepcopy(dict(raw))
    found: dict = {}
    if isinstance(r.get("data"), Mapping) and "test" in r["data"]:   # the estimate is of loss_train and ŷ
        r["data"] = {k: v for k, v in r["data"].items() if k != "test"}
    for path, table in _rule_places(r):
        key = ".".join(path)
        new = _rescale(table, level, seed_shift, key, found)
        node = r
        for p in path[:-1]:
            node[p] = dict(node[p])
            node = node[p]
        node[path[-1]] = new
    return r, found


def _with_time(raw: Mapping, stepper: Mapping, factor: float) -> dict:
    """A copy of ``raw`` with dt × factor (fixed step) or rtol, atol × factor (adaptive), from the
    settings the solve's stepper used (``stepper``: its description, defaults included)."""
    r = copy.deepcopy(dict(raw))
    s = r["solver"] = dict(r.get("solver", {}))
    for k in _time_keys(stepper):
        s[k] = float(stepper[k]) * factor
    return r


def _time_keys(stepper: Mapping) -> tuple[str, ...]:
    """The time settings of a stepper description: ``fixed_dt`` (an adaptive method run at a fixed
    step), ``rtol``/``atol`` (adaptive) or ``dt`` (fixed step)."""
    if stepper.get("fixed_dt"):
        return ("fixed_dt",)
    return ("rtol", "atol") if "rtol" in stepper else ("dt",)


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
    if isinstance(raw.get("iid"), Mapping):   # the SPEC §7 reduction's own rules (written out when it applies)
        out += [(f"iid.{name}", ("iid", name)) for name in REDUCED_RULES if isinstance(raw["iid"].get(name), Mapping)]
    d = raw.get("data", {})
    if isinstance(d, Mapping) and isinstance(d.get("train"), Mapping) and isinstance(d["train"].get("rule"), Mapping):
        out.append(("data.train", ("data", "train", "rule")))
    if isinstance(d, Mapping) and isinstance(d.get("train"), Mapping) and isinstance(d["train"].get("radius_rule"), Mapping):
        out.append(("data.train.radius", ("data", "train", "radius_rule")))
    return out


def get_rule(raw: Mapping, path: tuple):
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


def put_rule(raw: dict, path: tuple, table) -> None:
    node = raw
    for p in path[:-1]:
        node[p] = dict(node.get(p, {}))
        node = node[p]
    node[path[-1]] = table


def group_estimates(raw: Mapping, L: int, sol, source: str, base_dir) -> dict:
    """Per-group rule estimates: for each deterministic rule group (when there are two or more),
    two companions with that group alone coarsened (levels − 1, − 2) and :func:`extrapolate`:
    {name: (sup-time estimate, ρ, per-time estimate)}.  Groups refined unevenly converge at their
    own rates; one common ratio can extrapolate a slowly converging group's error away."""
    import mfpde

    main = np.asarray(sol.observable("loss_train"), float)
    cands = []
    for name, path in groups(raw, L):
        found: dict = {}
        _rescale(get_rule(raw, path), 0, 0, name, found)
        if found.get("deterministic") and not found.get("sampled"):
            cands.append((name, path))
    if len(cands) < 2:
        return {}
    out = {}
    for name, path in cands:
        curves, sizes = [], []
        for k in (0, 1, 2):
            found: dict = {}
            table = _rescale(get_rule(raw, path), k, 0, name, found)
            sizes.append(max(found.get("sizes") or [1]))
            if k == 0:
                continue
            if "too_small" in found:
                break
            r = copy.deepcopy(dict(raw))
            r["accuracy"] = {**r.get("accuracy", {}), "estimate": False}
            put_rule(r, path, table)
            s = mfpde.solve(mfpde.load(companion(r)[0], source=f"{source} [{name} level -{k}]", base_dir=base_dir),
                            progress=False, estimate=False, parameters="none")
            curves.append(np.asarray(s.observable("loss_train"), float))
        if len(curves) < 2:
            continue
        e, rho, _ = extrapolate(main, curves[0], curves[1],
                                  tuple(sizes) if sizes[0] > sizes[1] > sizes[2] else None)
        out[name] = (float(np.max(e)), rho, e)
    return out


def merge_groups(est, per_group: dict, who: str = "groups") -> None:
    """The rule part becomes max(uniform estimate, Σ per-group estimates) per time; the loss estimate
    follows (ŷ keeps the uniform estimate)."""
    total = np.sum([g[2] for g in per_group.values()], axis=0)
    rule = total if est.loss_rule is None else np.maximum(est.loss_rule, total)
    est.loss_rule = rule
    parts = [rule] + [p for p in (est.loss_sampling, est.loss_time) if p is not None]
    est.loss = np.sum(parts, axis=0)
    est.method += (f" {who}: the rule part is the larger of that and the sum of per-group estimates (each rule "
                   "group coarsened alone, two levels, extrapolated at its own ratio); the ŷ estimate is the uniform one.")
    est.companions += [f"{n} alone, levels -1 and -2" for n in per_group]


# ---------------------------------------------------------------------------- the estimate
@dataclass
class Estimate:
    """Per-time error estimates of a solve and how they were obtained (see the module docstring).

    ``loss`` [n_times] (None when unavailable), ``yhat`` [n_times, P, K] (None without probes);
    the ``*_rule``/``*_sampling``/``*_time`` parts of the loss estimate; ``ratio`` the observed
    rule ratio ρ; ``reliable`` False when the rule differences did not shrink.
    """

    status: str = "ok"                       # "ok", "off" or "unavailable: <reason>"
    loss: np.ndarray | None = None
    yhat: np.ndarray | None = None
    loss_rule: np.ndarray | None = None
    loss_sampling: np.ndarray | None = None
    loss_time: np.ndarray | None = None
    ratio: float = math.nan
    reliable: bool = True
    companions: list[str] = field(default_factory=list)
    method: str = ""
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def sup_loss(self) -> float:
        return float(np.max(self.loss)) if self.loss is not None and self.loss.size else math.nan

    @property
    def sup_yhat(self) -> float:
        return float(np.max(self.yhat)) if self.yhat is not None and self.yhat.size else math.nan

    def attrs(self) -> dict:
        """The NetCDF attributes (:data:`ATTRS`)."""
        sup = lambda a: float(np.max(a)) if a is not None and a.size else math.nan
        return {"error_estimate_status": self.status, "error_estimate_loss": self.sup_loss,
                "error_estimate_yhat": self.sup_yhat, "error_estimate_loss_rule": sup(self.loss_rule),
                "error_estimate_loss_sampling": sup(self.loss_sampling), "error_estimate_loss_time": sup(self.loss_time),
                "error_estimate_reliable": int(bool(self.reliable)), "error_estimate_ratio": float(self.ratio),
                "error_estimate_method": self.method + "".join(f" Note: {n}" for n in self.notes),
                "error_estimate_companions": "; ".join(self.companions),
                "error_estimate_seconds": float(self.seconds),
                "error_estimate_norm": NORM, "error_estimate_norm_yhat": NORM_YHAT}

    def line(self) -> str:
        """One line for the terminal."""
        if self.status != "ok":
            return f"error estimate: {self.status}"
        parts = [f"rule {np.max(self.loss_rule):.1e}" if self.loss_rule is not None else None,
                 f"sampling {np.max(self.loss_sampling):.1e}" if self.loss_sampling is not None else None,
                 f"time {np.max(self.loss_time):.1e}" if self.loss_time is not None else None]
        text = (f"error estimate (sup over t): loss_train ± {self.sup_loss:.1e} ({', '.join(p for p in parts if p)})"
                + (f", ŷ ± {self.sup_yhat:.1e}" if self.yhat is not None else "")
                + f"; {len(self.companions)} companion solves, {self.seconds:.2f} s")
        return text + ("" if self.reliable else " — UNRELIABLE: the rule differences do not shrink (refine the rules)")


def off() -> Estimate:
    return Estimate(status="off", method="switched off ([accuracy] estimate = false or --no-estimate)")


def _sup(a) -> float:
    return float(np.max(np.abs(a))) if np.size(a) else 0.0


def exponent(sizes=None) -> float:
    """κ of ρ' = ρ^κ for levels of per-coordinate sizes N₀ > N₁ > N₂ under the error model exp(−c N^α):
    (N₀^α − N₁^α) / (N₁^α − N₂^α); RATIO^(−α) for exact geometric levels (``sizes`` None)."""
    if sizes is None:
        return RATIO ** -ALPHA
    n0, n1, n2 = (float(n) ** ALPHA for n in sizes)
    return (n0 - n1) / (n1 - n2)


def extrapolate(main, first, second, sizes=None) -> tuple[np.ndarray, float, bool]:
    """Rule-error estimate of ``main`` from two coarser levels (arrays of the same shape, e.g.
    loss per time): (|main − first| · ρ'/(1 − ρ'), ρ, reliable), ρ from q = D₀/D₁ (:func:`ratio`),
    ρ' = ρ^κ with κ = :func:`exponent` of the levels' largest per-coordinate ``sizes`` (N₀, N₁, N₂)
    (module docstring)."""
    main, first, second = (np.asarray(a, float) for a in (main, first, second))
    d0 = np.abs(main - first)
    D0, D1 = _sup(d0), _sup(first - second)
    if D0 == 0.0:
        return d0, 0.0, True
    if D1 == 0.0:
        return d0, math.inf, False
    kappa = exponent(sizes)
    rho = ratio(D0 / D1, kappa)
    if not rho < MAX_RATIO:
        return d0, rho, False
    rp = rho ** kappa
    return d0 * (rp / (1.0 - rp)), rho, True


def ratio(q: float, kappa: float) -> float:
    """The error ratio ρ = e₁/e₂ of the two companions from the observed q = D₀/D₁: with e₀ = ρ^κ e₁,
    D₀ = e₁(1 − ρ^κ) and D₁ = e₂(1 − ρ), so q = ρ(1 − ρ^κ)/(1 − ρ), increasing from 0 (ρ → 0) to κ
    (ρ → 1); solved by bisection (inf when q ≥ κ: the differences do not shrink)."""
    if not q < kappa:
        return math.inf
    f = lambda r: r * (1.0 - r ** kappa) / (1.0 - r) - q
    lo, hi = 0.0, 1.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if f(mid) < 0 else (lo, mid)
    return 0.5 * (lo + hi)


def richardson(coarse, fine, order: int, factor: float) -> np.ndarray:
    """Time-error estimate of the solve at the *smaller* of two steps with ratio ``factor`` (> 1) of
    a method of ``order``: |coarse − fine| / (factor^p − 1)."""
    return np.abs(np.asarray(coarse, float) - np.asarray(fine, float)) / (factor ** order - 1.0)


def estimate(config, solution, *, base_dir=None, progress: bool | None = False, groups: bool = False,
             say: Callable[[str], None] = lambda s: None) -> Estimate:
    """The error estimate of ``solution``, the solve of ``config`` (a built Config), by companion
    solves (module docstring).  ``groups`` adds the per-group rule estimates
    (:func:`group_estimates`, two more companions per rule group; ``[accuracy] groups``).  A
    companion that blows up or is refused makes its part unavailable (status ``"unavailable:
    …"``), never the solve."""
    import mfpde

    t0 = time.perf_counter()
    raw = config.raw
    main_loss = np.asarray(solution.observable("loss_train"), float)
    main_y = np.asarray(solution.observable("yhat_probe"), float) if "yhat_probe" in solution.observables else None
    times = np.asarray(solution.times, float)
    src = config.source

    def run(r: Mapping, label: str):
        c = mfpde.load(r, source=f"{src} [{label}]", base_dir=base_dir)
        s = mfpde.solve(c, parameters="none", progress=progress, estimate=False)
        if not np.array_equal(np.asarray(s.times, float), times):
            raise ConfigError("solver", f"the companion solve ({label}) saved at other times than the solve")
        return (np.asarray(s.observable("loss_train"), float),
                np.asarray(s.observable("yhat_probe"), float) if main_y is not None else None)

    _, found = companion(raw)
    est = Estimate()
    parts_loss, parts_y = [], []
    method = []
    levels = {0: (main_loss, main_y)}
    try:
        if "deterministic" in found:
            _, f2 = companion(raw, 2)
            if "too_small" in f2:
                est.notes.append(f"rules too small to coarsen twice ({', '.join(dict.fromkeys(f2['too_small']))}): "
                                 "no rule estimate")
                est.status = "unavailable: rules too small to coarsen (sizes >= 4 needed)"
            else:
                nmax = [max(companion(raw, k)[1].get("sizes") or [1]) for k in (0, 1, 2)]
                for k in (1, 2):
                    label = f"rules level -{k} (sizes x {RATIO ** k:g}, largest {nmax[k]})"
                    say(f"mfpde: error estimate: companion solve {label}")
                    levels[k] = run(companion(raw, k)[0], label)
                    est.companions.append(label)
                sizes = tuple(nmax) if nmax[0] > nmax[1] > nmax[2] else None
                e, rho, ok = extrapolate(main_loss, levels[1][0], levels[2][0], sizes)
                est.loss_rule, est.ratio, est.reliable = e, rho, ok
                parts_loss.append(e)
                if main_y is not None:
                    ey, _, oky = extrapolate(main_y, levels[1][1], levels[2][1], sizes)
                    parts_y.append(ey)
                    est.reliable = est.reliable and oky
                kap = exponent(sizes)
                method.append(f"rules: companions with every rule size x ~{RATIO:g} and x ~{RATIO ** 2:g} ("
                              f"largest per-coordinate sizes {nmax[0]}, {nmax[1]}, {nmax[2]}), |L - L_1| x rho'/(1 - rho'), "
                              f"rho' = rho^{kap:.4g}, rho = e_1/e_2 solved from the observed ratio of successive "
                              "sup-time differences q = D_0/D_1 = rho (1 - rho^kappa)/(1 - rho) "
                              f"(error model exp(-c N^{ALPHA:g}))")
        if "fixed" in found:
            est.notes.append(f"rules {', '.join(found['fixed'])} cannot be refined (user rules): their error is not estimated")
        if "sampled" in found:
            diffs, dys = [], []
            for j in range(1, SEEDS + 1):
                label = f"sampled rules seed +{j}"
                say(f"mfpde: error estimate: companion solve {label}")
                lj, yj = run(companion(raw, 0, j)[0], label)
                est.companions.append(label)
                diffs.append((main_loss - lj) ** 2)
                if main_y is not None:
                    dys.append((main_y - yj) ** 2)
            est.loss_sampling = np.sqrt(np.mean(diffs, axis=0) / 2.0)
            parts_loss.append(est.loss_sampling)
            if dys:
                parts_y.append(np.sqrt(np.mean(dys, axis=0) / 2.0))
            method.append(f"sampled rules ({', '.join(found['sampled'])}): RMS difference to {SEEDS} companions with "
                          "other seeds / sqrt(2) (one standard deviation)")
        # time: on the coarsest rule level solved (cheapest), a longer step (or a shorter one if refused)
        kc = max(levels)
        base_raw = companion(raw, kc)[0] if kc else copy.deepcopy(dict(raw))
        lc, yc = levels[kc]
        order = int(solution.stepper.get("order") or 1)
        where = f"rules level -{kc}" if kc else "the solve's rules"
        if _time_keys(solution.stepper) == ("rtol", "atol"):
            # a tighter companion: a looser one may take the same steps where they are cut at save times
            label = f"time: rtol, atol / {TOL_FACTOR:g} ({where})"
            say(f"mfpde: error estimate: companion solve {label}")
            lt, yt = run(_with_time(base_raw, solution.stepper, 1.0 / TOL_FACTOR), label)
            est.companions.append(label)
            scale = TOL_FACTOR / (TOL_FACTOR - 1.0)
            est.loss_time = np.abs(lc - lt) * scale
            yt_err = np.abs(yc - yt) * scale if yc is not None else None
            method.append(f"time: companion with rtol and atol / {TOL_FACTOR:g} on {where}, "
                          f"|L - L_tol/{TOL_FACTOR:g}| x {TOL_FACTOR:g}/{TOL_FACTOR - 1:g} (global error proportional "
                          "to the tolerance)")
        else:
            try:
                label = f"time: dt x 2 ({where})"
                say(f"mfpde: error estimate: companion solve {label}")
                lt, yt = run(_with_time(base_raw, solution.stepper, 2.0), label)
                est.loss_time = richardson(lt, lc, order, 2.0)
                yt_err = richardson(yt, yc, order, 2.0) if yc is not None else None
                method.append(f"time: companion with dt x 2 on {where}, |L_2dt - L| / (2^{order} - 1) (Richardson)")
            except (BlowUpError, ConfigError):
                label = f"time: dt / 2 ({where})"
                say(f"mfpde: error estimate: dt x 2 refused or blew up; companion solve {label}")
                lt, yt = run(_with_time(base_raw, solution.stepper, 0.5), label)
                scale = 2.0 ** order / (2.0 ** order - 1.0)
                est.loss_time = np.abs(lc - lt) * scale
                yt_err = np.abs(yc - yt) * scale if yc is not None else None
                method.append(f"time: companion with dt / 2 on {where}, |L - L_dt/2| x 2^{order}/(2^{order} - 1) (Richardson)")
            est.companions.append(label)
        parts_loss.append(est.loss_time)
        if yt_err is not None:
            parts_y.append(yt_err)
    except (BlowUpError, ConfigError) as exc:
        est.seconds = time.perf_counter() - t0
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return Estimate(status=f"unavailable: a companion solve failed ({reason})", companions=est.companions,
                        seconds=est.seconds, notes=est.notes, method="; ".join(method))
    est.method = "; ".join(method) + ". The parts add."
    est.seconds = time.perf_counter() - t0
    if est.status == "ok":
        est.loss = np.sum(parts_loss, axis=0)
        est.yhat = np.sum(parts_y, axis=0) if main_y is not None else None
        if groups:
            t1 = time.perf_counter()
            say("mfpde: error estimate: per-group companions (each rule group coarsened alone)")
            try:
                per = group_estimates(raw, config.problem.model.L, solution, src, base_dir)
            except (BlowUpError, ConfigError) as exc:
                est.notes.append(f"per-group estimates unavailable: {str(exc).splitlines()[0] if str(exc) else exc}")
                per = {}
            if per:
                merge_groups(est, per, "[accuracy] groups")
            est.seconds += time.perf_counter() - t1
    return est

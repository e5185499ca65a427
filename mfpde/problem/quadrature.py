"""Quadrature rules on the index spaces (Problem room).

Every index space Ω_l and the data law carry a rule {(c_q, ω_q)} (SPEC §3): a frozen
:class:`Rule` with nodes ``[Q, k]`` and weights ``[Q]`` whose non-tracer weights sum to 1, so
that E f = Σ_q ω_q f(c_q) is ``rule.expect(f(rule.nodes))``.  Offered kinds, in
:data:`RULE_KINDS` order: probabilists' Gauss–Hermite, Gauss–Legendre (uniform law), the
Gaussian-weighted trapezoid rule of SPEC §3, the two 1-D laws of the symmetry-reduced limit
(SPEC §7: ``chi``, the radius |g| of g ~ N(0, I_m) by a Gauss rule in r, and ``sphere_marginal``,
ζ = ⟨e, g⟩/|g| by Gauss–Jacobi), tensor products, Smolyak sparse grids, scrambled Sobol'
points, plain Monte Carlo and user-given nodes.  The trapezoid rule can
be sinh-mapped (``map = "sinh"``) or get a size-dependent half-width (``half_width = "auto"``),
and Gauss–Hermite a node scale (``scale``): docs/convergence.md, "Late training".  Zero-weight tracer nodes
(SPEC §4) are appended with :meth:`Rule.with_tracers`.  :func:`make_rule` validates a config
table completely before building anything and :func:`rule_to_dict` gives back the table that
rebuilds a rule exactly (provenance).  This module imports only numpy, scipy and
``mfpde.errors``; scipy.special and scipy.stats (0.3–0.5 s each) only where a rule needs them
(Sobol' points, Gauss rules of more than 300 nodes), and scipy.linalg only for ``chi`` and
``sphere_marginal``, not at start-up.
"""
from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations_with_replacement

import numpy as np
from numpy.polynomial.hermite_e import hermegauss
from numpy.polynomial.legendre import leggauss

from mfpde import checks
from mfpde.errors import ConfigError

__all__ = [
    "RULE_KINDS", "Rule", "gauss_hermite", "gauss_legendre", "gaussian_trapezoid", "chi",
    "sphere_marginal", "tensor", "smolyak", "sobol", "monte_carlo", "user", "make_rule", "rule_to_dict",
]

RULE_KINDS = ("gauss_hermite", "gauss_legendre", "gaussian_trapezoid", "chi", "sphere_marginal", "tensor",
              "smolyak", "sobol", "monte_carlo", "user")
# size limits: mfpde/checks.py (MAX_RULE_NODES, MAX_RULE_ENTRIES, MAX_GAUSS_SIZE, MAX_GRID_DIM, MAX_SOBOL_DIM)
MAX_HALF_WIDTH = 37.0           # exp(-37**2/2) ~ 1e-297 is still a normal float
TRAPEZOID_MAPS = ("linear", "sinh")
SINH_HALF_WIDTH = 6.0           # default half-width of map = "sinh" (2Φ(−6) = 2e-9 of the mass is cut)
AUTO_STRIP = 0.45               # half_width = "auto": (2π·AUTO_STRIP·(Q−1))^(1/3), see _auto_half_width
GH_SCALE_RANGE = (0.2, 5.0)     # gauss_hermite scale σ: reweighted rules outside this range lose digits
MERGE_TOL = 1e-12               # Smolyak: coincident-node tolerance (relative beyond |x| = 1)
SMOLYAK_BASES = ("gauss_hermite", "gauss_legendre")
LAWS = ("normal", "uniform")
MAX_DOF = 1_000_000             # chi / sphere_marginal degrees of freedom m (d − k up to 10⁶)
MAX_CHI_SIZE = 64               # chi nodes: beyond, the discretized Stieltjes step loses digits for small m
MAX_SPHERE_SIZE = 1_000         # sphere_marginal nodes (closed-form recurrence: stable far beyond)
_EXACT_GAUSS_MAX = 300          # numpy's Golub-Welsch rules are used up to this size
_SOBOL_BITS = 30

_LAW_KEYS = {"normal": ("mean", "std"), "uniform": ("low", "high")}
_ALLOWED = {
    "gauss_hermite": ("size", "mean", "std", "dim", "scale"),
    "gauss_legendre": ("size", "low", "high", "dim"),
    "gaussian_trapezoid": ("size", "mean", "std", "half_width", "dim", "map", "scale"),
    "tensor": ("rules",),
    "smolyak": ("dim", "level", "base", "mean", "std", "low", "high"),
    "sobol": ("size", "dim", "law", "seed", "scramble", "mean", "std", "low", "high"),
    "monte_carlo": ("size", "dim", "law", "seed", "mean", "std", "low", "high"),
    "user": ("nodes", "weights"),
    "chi": ("size", "dof", "scale"),
    "sphere_marginal": ("size", "dof"),
}


# --------------------------------------------------------------------------------------------
# The rule
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Rule:
    """A quadrature rule: read-only nodes ``[Q, k]`` and weights ``[Q]``.

    The first ``Q - n_tracers`` weights sum to 1 (they may be negative only for Smolyak
    rules); the trailing ``n_tracers`` nodes carry weight 0 and never enter an expectation.
    ``params`` is the TOML-serialisable provenance of the constructor.
    """

    nodes: np.ndarray
    weights: np.ndarray
    kind: str
    params: dict = field(default_factory=dict)
    n_tracers: int = 0

    def __post_init__(self) -> None:
        nodes = np.array(self.nodes, dtype=np.float64, order="C", copy=True)
        if nodes.ndim == 1:
            nodes = nodes.reshape(-1, 1)
        if nodes.ndim != 2 or nodes.shape[0] < 1 or nodes.shape[1] < 1:
            raise ConfigError("nodes", f"must be a non-empty [Q, k] array, got shape {nodes.shape}.")
        weights = np.array(self.weights, dtype=np.float64, order="C", copy=True)
        if weights.shape != (nodes.shape[0],):
            raise ConfigError("weights", f"must have shape ({nodes.shape[0]},) to match the nodes, "
                              f"got {weights.shape}.")
        if not isinstance(self.n_tracers, (int, np.integer)) or isinstance(self.n_tracers, bool) \
                or not 0 <= self.n_tracers < nodes.shape[0]:
            raise ConfigError("n_tracers", f"must be an integer in [0, {nodes.shape[0] - 1}], "
                              f"got {self.n_tracers!r}.")
        if not np.all(np.isfinite(nodes)) or not np.all(np.isfinite(weights)):
            raise ConfigError("nodes", "nodes and weights must be finite (no NaN or inf).")
        q0 = nodes.shape[0] - int(self.n_tracers)
        if np.any(weights[q0:] != 0.0):
            raise ConfigError("weights", "tracer nodes (the last n_tracers) must have weight 0.")
        total, scale = float(weights[:q0].sum()), float(np.abs(weights[:q0]).sum())
        if abs(total - 1.0) > 1e-9 * max(1.0, scale):
            raise ConfigError("weights", f"the non-tracer weights must sum to 1, got {total!r}.")
        nodes.setflags(write=False)
        weights.setflags(write=False)
        object.__setattr__(self, "nodes", nodes)
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "n_tracers", int(self.n_tracers))
        object.__setattr__(self, "params", copy.deepcopy(dict(self.params)))

    @property
    def size(self) -> int:
        """Q, the number of nodes (tracers included)."""
        return self.nodes.shape[0]

    @property
    def dim(self) -> int:
        """k, the dimension of the index space."""
        return self.nodes.shape[1]

    def with_tracers(self, points) -> Rule:
        """The same rule with ``points`` ``[P, k]`` (or ``[P]`` if k == 1) appended at weight 0."""
        pts = _tracer_array(points, self.dim, "tracers")
        if pts.shape[0] == 0:
            return self
        return Rule(np.vstack([self.nodes, pts]), np.concatenate([self.weights, np.zeros(len(pts))]),
                    self.kind, self.params, self.n_tracers + pts.shape[0])

    def expect(self, values) -> np.ndarray:
        """Σ_q ω_q values[q, ...] over the non-tracer nodes (tracer values are ignored)."""
        values = np.asarray(values)
        if values.ndim == 0 or values.shape[0] != self.size:
            raise ConfigError("values", f"must have leading dimension Q = {self.size} (one row per "
                              f"node), got shape {values.shape}.")
        q0 = self.size - self.n_tracers
        return np.asarray(np.tensordot(self.weights[:q0], values[:q0], axes=(0, 0)))

    def describe(self) -> str:
        """One line, e.g. ``gauss_hermite(size=16, mean=0, std=1)``."""
        q0 = self.size - self.n_tracers
        if self.kind in RULE_KINDS and self.kind != "user":
            return _describe_spec({"kind": self.kind, **self.params}, q0, self.n_tracers)
        tracers = f", tracers={self.n_tracers}" if self.n_tracers else ""
        return f"{self.kind}(size={q0}, dim={self.dim}{tracers})"

    def __repr__(self) -> str:
        return f"Rule({self.describe()})"


def rule_to_dict(rule: Rule) -> dict:
    """The config table that :func:`make_rule` turns back into ``rule`` (same nodes and weights).

    Rules of kind ``user`` (and rules built directly with a kind not in :data:`RULE_KINDS`)
    are written as ``kind = "user"`` with their nodes and weights as lists; tracer nodes as a
    ``tracers`` list.
    """
    q0 = rule.size - rule.n_tracers
    if rule.kind in RULE_KINDS and rule.kind != "user":
        spec = {"kind": rule.kind, **copy.deepcopy(rule.params)}
    else:
        spec = {"kind": "user", "nodes": rule.nodes[:q0].tolist(),
                "weights": rule.weights[:q0].tolist()}
    if rule.n_tracers:
        spec["tracers"] = rule.nodes[q0:].tolist()
    return spec


# --------------------------------------------------------------------------------------------
# Public constructors (all go through the validated config path)
# --------------------------------------------------------------------------------------------

def gauss_hermite(n, mean=0.0, std=1.0, *, dim: int | None = None, scale: float | None = None) -> Rule:
    """Probabilists' Gauss–Hermite rule for N(mean, std²), weights normalised to sum 1.

    ``n``, ``mean``, ``std`` are scalars or length-k sequences (a tensor-product rule,
    first coordinate varying slowest); ``dim`` sets k when all of them are scalars.  Exact
    for polynomials of degree ≤ 2n−1 in each coordinate.  Nodes come from
    ``numpy.polynomial.hermite_e.hermegauss`` for n ≤ 300 and from scipy's asymptotic
    ``roots_hermitenorm`` above (numpy overflows there); at most 10 000 nodes per coordinate.

    ``scale`` = σ (a scalar in [0.2, 5], default: none, the plain rule): the Gauss–Hermite
    nodes of N(0, σ²), u_i = σ·x_i, with weights reweighted to N(0, 1) by the density ratio,
    ω_i ∝ w_i·σ·exp(−u_i²/2 + u_i²/(2σ²)), normalised; then mapped to mean + std·u.  σ < 1
    packs the nodes closer to the mean, σ > 1 spreads them.  No longer polynomially exact
    for σ ≠ 1 (σ = 1 gives the plain rule exactly).
    """
    return _build("gauss_hermite", {"size": n, "mean": mean, "std": std, "dim": dim, "scale": scale})


def gauss_legendre(n, low=0.0, high=1.0, *, dim: int | None = None) -> Rule:
    """Gauss–Legendre rule for the uniform law on [low, high] (per coordinate); exact to degree 2n−1."""
    return _build("gauss_legendre", {"size": n, "low": low, "high": high, "dim": dim})


def gaussian_trapezoid(n, mean=0.0, std=1.0, half_width=None, *, dim: int | None = None,
                       map: str | None = None, scale: float | None = None) -> Rule:
    """SPEC §3's Gaussian-weighted trapezoid rule for N(mean, std²), optionally mapped.

    ``map = "linear"`` (the default): nodes u equally spaced on [−half_width, half_width]
    (endpoints included; n = 1 gives the single node u = 0), weights ∝ exp(−u²/2)
    normalised, mapped to mean + std·u; ``half_width`` defaults to 9.  For integrands
    analytic in the strip |Im u| < τ the error falls like exp(−2πτ/h) with h = 2·half_width/(n−1)
    the spacing, plus the truncation ~exp(−half_width²/2).  ``half_width = "auto"`` balances
    the two: exp(−πτ(n−1)/a) = exp(−a²/2) gives a³ = 2πτ(n−1), used with τ = 0.45 (fitted on
    the late-training problem of docs/convergence.md; 3.5 at n = 16, 5.4 at n = 64).

    ``map = "sinh"``: the trapezoid rule in s, u = scale·sinh(s), s equally spaced on
    [−asinh(half_width/scale), asinh(half_width/scale)] (so u still spans ±half_width),
    weights ∝ exp(−u²/2)·scale·cosh(s) (density × Jacobian) normalised.  Nodes are denser
    near the mean (spacing ≈ scale·h_s there) and sparser in the tails; ``scale`` (> 0,
    default 1) sets the width of the fine core, ``half_width`` defaults to 6 (mass cut
    2Φ(−6) ≈ 2e-9; 7 cuts 2.6e-12).  ``scale`` is only allowed with ``map = "sinh"``.
    """
    return _build("gaussian_trapezoid", {"size": n, "mean": mean, "std": std, "half_width": half_width,
                                         "dim": dim, "map": map, "scale": scale})


def chi(n: int, dof: int, *, scale: float | None = None) -> Rule:
    """Gauss rule in r for the χ law with ``dof`` = m degrees of freedom (r = |g|, g ~ N(0, I_m)).

    The density ∝ r^{m−1} e^{−r²/2} on [0, ∞); the ``n`` nodes and weights (sum 1) integrate
    every polynomial in r of degree ≤ 2n−1 exactly (up to rounding), odd degrees included —
    unlike a generalized Gauss–Laguerre rule in s = r²/2 (or the positive half of a symmetric
    generalized Gauss–Hermite rule, the same rule), which is exact only for polynomials in r².
    ``scale`` = σ (> 0) multiplies the nodes: the law of σ·χ_m (e.g. β⁰ = |P⊥w_1| for
    w_1 ~ N(0, σ² I)).  m = 1 is the half-normal law; for large m the nodes lie at √(m−1) ± O(1).
    1 ≤ n ≤ 64, 1 ≤ m ≤ 10⁶.  SPEC §7: the rule of β⁰ and of the data radius r.
    """
    return _build("chi", {"size": n, "dof": dof, "scale": scale})


def sphere_marginal(n: int, dof: int) -> Rule:
    """Gauss rule for ζ = ⟨e, g⟩/|g| (g ~ N(0, I_m), e a unit vector): the 1-D marginal of S^{m−1}.

    The density ∝ (1 − ζ²)^{(m−3)/2} on [−1, 1]; exact to degree 2n−1.  m = 1: the two atoms
    ±1 with weight ½ (for every n ≥ 2: the law itself; n = 1 gives the node 0, the 1-point Gauss
    rule); m = 2: the arcsine law (Gauss–Chebyshev of the first kind); m ≥ 3: Gauss–Jacobi with
    α = β = (m−3)/2 (Gegenbauer λ = (m−2)/2).  For large m, ζ√m → N(0, 1).  1 ≤ n ≤ 1000,
    1 ≤ m ≤ 10⁶.  SPEC §7: the direction variable of a layer-1 pre-activation ⟨a, z⟩ + β r ζ.
    """
    return _build("sphere_marginal", {"size": n, "dof": dof})


def tensor(*rules: Rule) -> Rule:
    """Product rule: nodes are the Cartesian product (first rule varying slowest), weights multiply.

    Factors must not carry tracers (add tracers to the product instead).
    """
    return _build("tensor", {"rules": list(rules)})


def smolyak(dim: int, level: int, base: str = "gauss_hermite", **law) -> Rule:
    """Smolyak sparse grid (combination technique) from 1-D rules of kind ``base``.

    A(q, d) = Σ_{level ≤ |i| ≤ q} (−1)^{q−|i|} C(d−1, q−|i|) U^{i_1} ⊗ … ⊗ U^{i_d} with
    q = level + d − 1, i_j ≥ 1, and U^i the 1-D Gauss rule of kind ``base`` with m(i) = i
    nodes (exact to degree 2i−1).  By Novak–Ritter the grid is exact on Σ_{|i|=q} ⊗_j
    P_{2 i_j − 1}, which contains **every polynomial of total degree ≤ 2·level − 1** (and
    not x_1^{2·level}); level = 1 is the single node at the mean.  The linear growth m(i) = i
    is the slowest one that gains two degrees per level, which keeps node counts small.
    Coincident nodes (within 1e-12, relative beyond |x| = 1) are merged.  **Weights can be
    negative**; they still sum to 1 (up to rounding that grows with C(d−1, ·)).  ``law`` is ``mean``/``std`` (base "gauss_hermite")
    or ``low``/``high`` (base "gauss_legendre"), as scalars.
    """
    return _build("smolyak", {"dim": dim, "level": level, "base": base, **law})


def sobol(n: int, dim: int, law: str = "normal", seed: int = 0, scramble: bool = True,
          mean=0.0, std=1.0, low=0.0, high=1.0) -> Rule:
    """Sobol' points (scipy.stats.qmc.Sobol, 30 bits, Owen scrambling by default), equal weights.

    Powers of two for ``n`` are best (the balance properties need them); other n are
    allowed and scipy's warning about them is suppressed.  Points are moved to the centre
    of their 2^-30 dyadic cell (so none is 0, also unscrambled), then mapped to
    N(mean, std²) by ``scipy.special.ndtri`` (law "normal") or to U[low, high]; mean/std
    are used only with law "normal", low/high only with law "uniform".
    """
    return _build("sobol", {"size": n, "dim": dim, "law": law, "seed": seed,
                            "scramble": scramble, **_law_args(law, mean, std, low, high)})


def monte_carlo(n: int, dim: int, law: str = "normal", seed: int = 0,
                mean=0.0, std=1.0, low=0.0, high=1.0) -> Rule:
    """I.i.d. samples from ``numpy.random.default_rng(seed)``, equal weights 1/n."""
    return _build("monte_carlo", {"size": n, "dim": dim, "law": law, "seed": seed,
                                  **_law_args(law, mean, std, low, high)})


def user(nodes, weights=None) -> Rule:
    """User-given nodes ``[Q]`` or ``[Q, k]`` and weights (default equal).

    Weights must be finite and ≥ 0 with a positive sum; they are divided by their sum
    unless it already equals 1 up to rounding (so rebuilding a user rule is exact).
    """
    return _build("user", {"nodes": nodes, "weights": weights})


def make_rule(spec: Mapping, key: str = "rule") -> Rule:
    """Build a rule from a config table, e.g. ``{kind = "gauss_hermite", size = 16}``.

    Kinds and their keys (``tracers = [[...], ...]`` is allowed on every outermost table):
    gauss_hermite: size, mean, std, dim, scale; gauss_legendre: size, low, high, dim;
    gaussian_trapezoid: size, mean, std, half_width (a number or "auto"), dim, map
    ("linear" or "sinh"), scale (map "sinh" only); tensor: rules (list of tables);
    chi: size, dof, scale; sphere_marginal: size, dof;
    smolyak: dim, level, base, mean/std or low/high; sobol: size, dim, law, seed, scramble,
    mean/std or low/high; monte_carlo: size, dim, law, seed, mean/std or low/high;
    user: nodes, weights.  Everything is validated before any node is computed; errors are
    :class:`ConfigError` with keys such as ``f"{key}.size"``.
    """
    plan = _plan(spec, key, outermost=True)
    return plan.build()


def plan_rule(spec: Mapping, key: str = "rule", max_nodes: int | None = None, what: str = "this rule", *,
              size_key: str | None = None) -> _Plan:
    """Validate a rule table without building it: a plan with ``.size``, ``.dim`` and ``.build()``.

    ``max_nodes`` is a tighter limit than :data:`mfpde.checks.MAX_RULE_NODES` for ``what``
    (e.g. ``checks.MAX_LAYER_NODES`` for a hidden layer's rule); ConfigError naming
    ``size_key`` (default ``key``) beyond it, before any node is computed.
    """
    plan = _plan(spec, key, outermost=True)
    if max_nodes is not None and plan.size > max_nodes:
        raise ConfigError(size_key or key, f"{plan.size} nodes is more than {max_nodes} for {what}")
    return plan


# --------------------------------------------------------------------------------------------
# Validation: a plan is a checked description that knows its size and how to build itself
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Plan:
    size: int
    dim: int
    build: Callable[[], Rule]


def _build(kind: str, spec: dict) -> Rule:
    spec = {name: value for name, value in spec.items() if value is not None}
    return _plan({"kind": kind, **spec}, kind, outermost=False).build()


def _law_args(law, mean, std, low, high) -> dict:
    return {"low": low, "high": high} if law == "uniform" else {"mean": mean, "std": std}


def _plan(spec, key: str, outermost: bool) -> _Plan:
    if not isinstance(spec, Mapping):
        raise ConfigError(key, f"must be a table such as {{kind = \"gauss_hermite\", size = 16}}, "
                          f"got {type(spec).__name__}.")
    kind = checks.choice(checks.required(spec, "kind", key, f"one of {', '.join(RULE_KINDS)}"), RULE_KINDS,
                         f"{key}.kind", what="rule kind")
    allowed = ("kind",) + _ALLOWED[kind] + (("tracers",) if outermost else ())
    checks.check_keys(spec, allowed, key, hint=f" (kind = \"{kind}\"" +
                      ("" if outermost else "; tracers belong on the outermost rule only") + ")")
    body = {name: value for name, value in spec.items() if name not in ("kind", "tracers")}
    plan = _CHECKS[kind](body, key)
    tracers = None
    if spec.get("tracers") is not None:
        tracers = _tracer_array(spec["tracers"], plan.dim, f"{key}.tracers")
    total = plan.size + (0 if tracers is None else tracers.shape[0])
    _check_total(total, plan.dim, key)
    if tracers is None or tracers.shape[0] == 0:
        return plan
    return _Plan(total, plan.dim, lambda: plan.build().with_tracers(tracers))


def _check_total(size: int, dim: int, key: str) -> None:
    if size > checks.MAX_RULE_NODES:
        raise ConfigError(key, f"the rule would have {size} nodes; at most {checks.MAX_RULE_NODES} are allowed, "
                          f"so reduce size/level or the number of tensor factors.")
    if size * dim > checks.MAX_RULE_ENTRIES:
        raise ConfigError(key, f"the rule would have {size} nodes in dimension {dim}; nodes x dim "
                          f"must stay below {checks.MAX_RULE_ENTRIES}.")




def _is_sequence(value) -> bool:
    return isinstance(value, np.ndarray) and value.ndim == 1 or \
        isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def _scalar_or_list(value, key: str, item: Callable):
    """A scalar, or a non-empty list of scalars (one per coordinate), each checked by ``item``."""
    if _is_sequence(value):
        if len(value) == 0:
            raise ConfigError(key, "must be a number or a non-empty list with one entry per coordinate.")
        return [item(v, f"{key}[{i}]") for i, v in enumerate(value)]
    return item(value, key)


def _per_coordinate(values: dict, dim, key: str) -> int:
    """The dimension k implied by scalar-or-list ``values`` and an optional ``dim``."""
    lengths = {name: len(v) for name, v in values.items() if isinstance(v, list)}
    k = dim if dim is not None else (max(lengths.values()) if lengths else 1)
    for name, n in lengths.items():
        if n != k:
            raise ConfigError(f"{key}.{name}", f"has {n} entries but the rule has dimension {k}; "
                              f"give a scalar or exactly {k} entries.")
    return k


def _entries(value, k: int) -> list:
    return value if isinstance(value, list) else [value] * k


def _check_positive(value, key: str, what: str) -> None:
    for i, v in enumerate(value if isinstance(value, list) else [value]):
        if not v > 0:
            raise ConfigError(f"{key}[{i}]" if isinstance(value, list) else key,
                              f"must be {what}, got {v}.")


def _check_interval(low, high, key: str, k: int) -> None:
    for i, (a, b) in enumerate(zip(_entries(low, k), _entries(high, k))):
        if not a < b:
            suffix = f"[{i}]" if isinstance(low, list) or isinstance(high, list) else ""
            raise ConfigError(f"{key}.high{suffix}", f"must exceed low (got low = {a}, high = {b}); "
                              f"the uniform law needs low < high.")


def _check_gauss_like(kind: str, spec: dict, key: str) -> _Plan:
    size_high = checks.MAX_RULE_NODES if kind == "gaussian_trapezoid" else checks.MAX_GAUSS_SIZE
    size = _scalar_or_list(checks.required(spec, "size", key, "the number of nodes per coordinate, e.g. 16"),
                           f"{key}.size", lambda v, k: checks.integer(v, k, 1, size_high))
    dim = None if spec.get("dim") is None else checks.integer(spec["dim"], f"{key}.dim", 1, checks.MAX_GRID_DIM)
    law_names = ("low", "high") if kind == "gauss_legendre" else ("mean", "std")
    defaults = {"low": 0.0, "high": 1.0, "mean": 0.0, "std": 1.0}
    law = {name: _scalar_or_list(spec.get(name, defaults[name]), f"{key}.{name}", checks.number)
           for name in law_names}
    params = {"size": size, **law}
    if kind == "gaussian_trapezoid":
        params.update(_trapezoid_options(spec, key))
    elif spec.get("scale") is not None:           # gauss_hermite only (_ALLOWED)
        params["scale"] = checks.number(spec["scale"], f"{key}.scale", low=GH_SCALE_RANGE[0], high=GH_SCALE_RANGE[1],
                                        hint=" (σ of the N(0, σ²) Gauss–Hermite nodes reweighted to N(0, 1))")
    k = _per_coordinate({"size": size, **law}, dim, key)
    if kind == "gauss_legendre":
        _check_interval(law["low"], law["high"], key, k)
    else:
        _check_positive(law["std"], f"{key}.std", "positive (a standard deviation)")
    if dim is not None:
        params["dim"] = dim
    sizes = _entries(size, k)
    total = math.prod(sizes)
    _check_total(total, k, key)

    def build() -> Rule:
        factors = []
        for j in range(k):
            args = [_entries(params[name], k)[j] for name in law_names]
            if kind == "gauss_hermite":
                factors.append(_gauss_hermite_1d(sizes[j], *args, params.get("scale", 1.0), f"{key}.scale"))
            elif kind == "gauss_legendre":
                factors.append(_gauss_legendre_1d(sizes[j], *args))
            else:
                factors.append(_trapezoid_1d(sizes[j], *args, params["half_width"], params.get("map", "linear"),
                                             params.get("scale", 1.0)))
        nodes, weights = _tensor_arrays([(x[:, None], w) for x, w in factors])
        return Rule(nodes, weights, kind, params)

    return _Plan(total, k, build)


def _trapezoid_options(spec: dict, key: str) -> dict:
    """half_width / map / scale of a gaussian_trapezoid table (map and scale kept only when given)."""
    out = {}
    mapping = spec.get("map")
    if mapping is not None:
        mapping = checks.choice(mapping, TRAPEZOID_MAPS, f"{key}.map", what="trapezoid map")
        out["map"] = mapping
    sinh = mapping == "sinh"
    hw = spec.get("half_width", SINH_HALF_WIDTH if sinh else 9.0)
    if isinstance(hw, str):
        if hw != "auto" or sinh:
            allowed = "a number (\"auto\" is for map = \"linear\")" if sinh else "a number or \"auto\""
            raise ConfigError(f"{key}.half_width", f"must be {allowed}, got {hw!r}.")
        out["half_width"] = "auto"
    else:
        out["half_width"] = checks.number(hw, f"{key}.half_width", low=0.0, open_low=True, high=MAX_HALF_WIDTH,
                                          hint=" (nodes beyond carry underflowing weight)")
    if spec.get("scale") is not None:
        if not sinh:
            raise ConfigError(f"{key}.scale", "is only used with map = \"sinh\" (the width of the fine core).")
        out["scale"] = checks.number(spec["scale"], f"{key}.scale", low=0.0, open_low=True, high=MAX_HALF_WIDTH,
                                     hint=" (u = scale·sinh(s))")
    return out


def _check_tensor(spec: dict, key: str) -> _Plan:
    rules = checks.required(spec, "rules", key, "a non-empty list of rule tables")
    if not _is_sequence(rules) or isinstance(rules, np.ndarray) or len(rules) == 0:
        raise ConfigError(f"{key}.rules", "must be a non-empty list of rule tables (or Rule objects).")
    plans = []
    for i, factor in enumerate(rules):
        where = f"{key}.rules[{i}]"
        if isinstance(factor, Rule):
            if factor.n_tracers:
                raise ConfigError(where, "a tensor factor must not carry tracers; add them to the "
                                  "product with with_tracers instead.")
            plans.append(_Plan(factor.size, factor.dim, lambda r=factor: r))
        else:
            plans.append(_plan(factor, where, outermost=False))
    size, dim = math.prod(p.size for p in plans), sum(p.dim for p in plans)
    _check_total(size, dim, key)

    def build() -> Rule:
        factors = [p.build() for p in plans]
        nodes, weights = _tensor_arrays([(r.nodes, r.weights) for r in factors])
        return Rule(nodes, weights, "tensor", {"rules": [rule_to_dict(r) for r in factors]})

    return _Plan(size, dim, build)


def _check_smolyak(spec: dict, key: str) -> _Plan:
    dim = checks.integer(checks.required(spec, "dim", key, "the dimension, e.g. 3"), f"{key}.dim", 1,
                         checks.MAX_GRID_DIM)
    level = checks.integer(checks.required(spec, "level", key, "the level (exact to total degree 2*level - 1)"),
                           f"{key}.level", 1, checks.MAX_GAUSS_SIZE)
    base = checks.choice(spec.get("base", "gauss_hermite"), SMOLYAK_BASES, f"{key}.base", what="Smolyak base")
    names = ("mean", "std") if base == "gauss_hermite" else ("low", "high")
    for other in ("mean", "std", "low", "high"):
        if other not in names and other in spec:
            raise ConfigError(f"{key}.{other}", f"is not allowed with base = \"{base}\"; "
                              f"use {' and '.join(names)}.")
    defaults = {"low": 0.0, "high": 1.0, "mean": 0.0, "std": 1.0}
    law = {name: checks.number(spec.get(name, defaults[name]), f"{key}.{name}") for name in names}
    if base == "gauss_hermite":
        _check_positive(law["std"], f"{key}.std", "positive (a standard deviation)")
    else:
        _check_interval(law["low"], law["high"], key, 1)
    # Nodes before merging: Σ_s [t^s] (1 - t)^(-2d) over the |j| = s = |i| - d that occur.
    total = 0
    for s in range(max(0, level - dim), level):   # stop as soon as the limit is passed
        total += math.comb(2 * dim - 1 + s, s)
        if total > checks.MAX_RULE_NODES:
            break
    _check_total(total, dim, key)
    params = {"dim": dim, "level": level, "base": base, **law}

    def build() -> Rule:
        if base == "gauss_hermite":
            def rule1d(m):
                return _gauss_hermite_1d(m, law["mean"], law["std"])
        else:
            def rule1d(m):
                return _gauss_legendre_1d(m, law["low"], law["high"])
        nodes, weights = _smolyak_arrays(dim, level, rule1d)
        return Rule(nodes, weights, "smolyak", params)

    return _Plan(total, dim, build)


def _check_sampled(kind: str, spec: dict, key: str) -> _Plan:
    size = checks.integer(checks.required(spec, "size", key, "the number of points, e.g. 1024"), f"{key}.size",
                          1, checks.MAX_RULE_NODES)
    dim_high = checks.MAX_SOBOL_DIM if kind == "sobol" else checks.MAX_RULE_ENTRIES
    dim = checks.integer(checks.required(spec, "dim", key, "the dimension, e.g. 2"), f"{key}.dim", 1, dim_high)
    law = checks.choice(spec.get("law", "normal"), LAWS, f"{key}.law", what="law")
    names = _LAW_KEYS[law]
    for other in ("mean", "std", "low", "high"):
        if other not in names and other in spec:
            raise ConfigError(f"{key}.{other}", f"is not allowed with law = \"{law}\"; "
                              f"use {' and '.join(names)}.")
    seed = checks.integer(spec.get("seed", 0), f"{key}.seed", 0, checks.MAX_SEED)
    params = {"size": size, "dim": dim, "law": law, "seed": seed}
    if kind == "sobol":
        scramble = spec.get("scramble", True)
        params["scramble"] = checks.boolean(bool(scramble) if isinstance(scramble, np.bool_) else scramble,
                                            f"{key}.scramble")
    defaults = {"low": 0.0, "high": 1.0, "mean": 0.0, "std": 1.0}
    law_values = {name: _scalar_or_list(spec.get(name, defaults[name]), f"{key}.{name}", checks.number)
                  for name in names}
    _per_coordinate(law_values, dim, key)
    if law == "normal":
        _check_positive(law_values["std"], f"{key}.std", "positive (a standard deviation)")
    else:
        _check_interval(law_values["low"], law_values["high"], key, dim)
    params.update(law_values)
    _check_total(size, dim, key)

    def build() -> Rule:
        if kind == "sobol":
            from scipy import special
            from scipy.stats import qmc   # here, not at the top: scipy.stats costs ~0.5 s of every start-up

            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="The balance properties",
                                        category=UserWarning)
                engine = qmc.Sobol(d=dim, scramble=params["scramble"], bits=_SOBOL_BITS,
                                   rng=np.random.default_rng(seed))
                u = engine.random(size)
            u = u + 2.0 ** -(_SOBOL_BITS + 1)           # centre of the dyadic cell: u in (0, 1)
            z = special.ndtri(u) if law == "normal" else u
        else:
            rng = np.random.default_rng(seed)
            z = rng.standard_normal((size, dim)) if law == "normal" else rng.random((size, dim))
        if law == "normal":
            nodes = np.asarray(params["mean"]) + np.asarray(params["std"]) * z
        else:
            low, high = np.asarray(params["low"]), np.asarray(params["high"])
            nodes = low + (high - low) * z
        return Rule(nodes, np.full(size, 1.0 / size), kind, params)

    return _Plan(size, dim, build)


def _tracer_array(points, dim: int, key: str) -> np.ndarray:
    if _is_sequence(points) and len(points) == 0:
        return np.zeros((0, dim))
    pts = checks.array(points, key, index_key=False)
    if pts.ndim == 1 and dim == 1:
        pts = pts.reshape(-1, 1)
    if pts.ndim != 2 or pts.shape[1] != dim:
        raise ConfigError(key, f"must be a [P, {dim}] list of points matching the rule's dimension"
                          f"{' (or a flat list)' if dim == 1 else ''}, got shape {pts.shape}.")
    return pts


def _check_user(spec: dict, key: str) -> _Plan:
    nodes = checks.array(checks.required(spec, "nodes", key, "a [Q, k] list of node coordinates"), f"{key}.nodes",
                         index_key=False)
    if nodes.ndim == 1:
        nodes = nodes.reshape(-1, 1)
    if nodes.ndim != 2 or nodes.shape[0] < 1 or nodes.shape[1] < 1:
        raise ConfigError(f"{key}.nodes", f"must be a non-empty [Q] or [Q, k] array, got shape "
                          f"{nodes.shape}.")
    q, k = nodes.shape
    _check_total(q, k, key)
    if spec.get("weights") is None:
        weights = np.full(q, 1.0 / q)
    else:
        weights = checks.array(spec["weights"], f"{key}.weights", index_key=False)
        if weights.shape != (q,):
            raise ConfigError(f"{key}.weights", f"must be a list of {q} weights (one per node), "
                              f"got shape {weights.shape}.")
        if np.any(weights < 0):
            raise ConfigError(f"{key}.weights", "must be >= 0 (negative weights are not allowed "
                              "for user rules).")
        total = float(weights.sum())
        if not total > 0:
            raise ConfigError(f"{key}.weights", "must have a positive sum.")
        if abs(total - 1.0) > 2.0 * (q + 1) * np.finfo(np.float64).eps:
            weights = weights / total
    return _Plan(q, k, lambda: Rule(nodes, weights, "user", {"size": q, "dim": k}))


def _check_reduction(kind: str, spec: dict, key: str) -> _Plan:
    """chi / sphere_marginal: ``size`` n, ``dof`` m (and ``scale`` for chi); one coordinate."""
    high = MAX_CHI_SIZE if kind == "chi" else MAX_SPHERE_SIZE
    size = checks.integer(checks.required(spec, "size", key, "the number of nodes, e.g. 16"), f"{key}.size", 1, high)
    dof = checks.integer(checks.required(spec, "dof", key, "the degrees of freedom m = d − k, e.g. 99"),
                         f"{key}.dof", 1, MAX_DOF)
    params = {"size": size, "dof": dof}
    if spec.get("scale") is not None:                        # chi only (_ALLOWED)
        params["scale"] = checks.number(spec["scale"], f"{key}.scale", positive=True,
                                        hint=" (σ: the nodes of σ·χ_m)")
    nodes = min(size, 2) if kind == "sphere_marginal" and dof == 1 else size

    def build() -> Rule:
        if kind == "chi":
            x, w = _chi_1d(size, dof)
            x = x * params.get("scale", 1.0)
        else:
            x, w = _sphere_marginal_1d(size, dof)
        return Rule(x[:, None], w, kind, params)

    return _Plan(nodes, 1, build)


_CHECKS: dict[str, Callable[[dict, str], _Plan]] = {
    "gauss_hermite": lambda spec, key: _check_gauss_like("gauss_hermite", spec, key),
    "gauss_legendre": lambda spec, key: _check_gauss_like("gauss_legendre", spec, key),
    "gaussian_trapezoid": lambda spec, key: _check_gauss_like("gaussian_trapezoid", spec, key),
    "tensor": _check_tensor,
    "smolyak": _check_smolyak,
    "sobol": lambda spec, key: _check_sampled("sobol", spec, key),
    "monte_carlo": lambda spec, key: _check_sampled("monte_carlo", spec, key),
    "user": _check_user,
    "chi": lambda spec, key: _check_reduction("chi", spec, key),
    "sphere_marginal": lambda spec, key: _check_reduction("sphere_marginal", spec, key),
}


# --------------------------------------------------------------------------------------------
# Numerics
# --------------------------------------------------------------------------------------------

def _gauss_hermite_1d(n: int, mean: float, std: float, scale: float = 1.0,
                      key: str = "scale") -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(under="ignore", over="ignore", invalid="ignore"):
        if n <= _EXACT_GAUSS_MAX:
            x, w = hermegauss(n)
        else:
            from scipy import special

            x, w = special.roots_hermitenorm(n)
        if scale != 1.0:                 # nodes of N(0, σ²), weights × φ(u)/φ_σ(u) (constant σ dropped)
            x = scale * x
            w = w * np.exp(0.5 * x * x * (1.0 / (scale * scale) - 1.0))
        w = w / w.sum()
    if not np.all(np.isfinite(w)):
        raise ConfigError(key, f"Gauss–Hermite scale {scale} with {n} nodes overflows the reweighting; "
                          f"use fewer nodes or a scale nearer 1.")
    return mean + std * x, w


def _gauss_legendre_1d(n: int, low: float, high: float) -> tuple[np.ndarray, np.ndarray]:
    if n <= _EXACT_GAUSS_MAX:
        x, w = leggauss(n)
    else:
        from scipy import special

        x, w = special.roots_legendre(n)
    return low + (high - low) * (x + 1.0) / 2.0, w / w.sum()


def _gauss_from_recurrence(alpha: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The n-point Gauss rule of the monic recurrence p_{k+1} = (x − α_k) p_k − β_{k+1} p_{k−1}.

    ``alpha`` [n], ``beta`` [n] (β_1 … β_{n−1} in beta[1:]; beta[0] unused).  Golub–Welsch:
    nodes are the eigenvalues of the Jacobi matrix (LAPACK, absolute error ~ eps·‖J‖), then one
    Newton step on the orthonormal q_n; weights are the Christoffel numbers 1/Σ_{k<n} q_k(x)²
    (relatively accurate also for tiny weights, unlike squared eigenvector entries), with a
    running rescaling so that q_k never overflows; normalised to sum 1.
    """
    n = len(alpha)
    if n == 1:
        return np.array([float(alpha[0])]), np.ones(1)
    from scipy.linalg import eigh_tridiagonal

    off = np.sqrt(beta[1:n])
    x = eigh_tridiagonal(alpha, off, eigvals_only=True)
    big, tiny = 1e100, 1e-100
    for newton in (True, False):
        q_prev, q = np.zeros_like(x), np.ones_like(x)
        dq_prev, dq = np.zeros_like(x), np.zeros_like(x)
        total, log_scale = np.ones_like(x), np.zeros_like(x)
        for k in range(n):
            s_next = off[k] if k < n - 1 else 1.0      # q_n is needed only up to a constant
            s_prev = off[k - 1] if k else 0.0
            q_next = ((x - alpha[k]) * q - s_prev * q_prev) / s_next
            dq_next = (q + (x - alpha[k]) * dq - s_prev * dq_prev) / s_next
            q_prev, q, dq_prev, dq = q, q_next, dq, dq_next
            if k < n - 1:
                total += q * q
            over = np.abs(q) > big
            if np.any(over):
                f = np.where(over, tiny, 1.0)
                q, q_prev, dq, dq_prev, total = q * f, q_prev * f, dq * f, dq_prev * f, total * f * f
                log_scale += np.where(over, -2.0 * math.log(tiny), 0.0)
        if newton:
            x = x - q / dq
    log_w = -np.log(total) - log_scale
    with np.errstate(under="ignore"):
        w = np.exp(log_w - log_w.max())
    return x, w / w.sum()


def _log1p_minus_x(x: np.ndarray) -> np.ndarray:
    """log(1 + x) − x without cancellation for small |x| (x > −1).

    With y = x/(2+x), log(1+x) = 2·atanh(y) and 2y − x = −x²/(2+x), so log(1+x) − x =
    −x²/(2+x) + 2·Σ_{k≥1} y^{2k+1}/(2k+1); the series is summed for |y| ≤ ½ (27 terms reach
    2^{-54}), elsewhere the direct difference has no cancellation.
    """
    y = x / (2.0 + x)
    out = np.log1p(x) - x
    small = np.abs(y) <= 0.5
    ys, xs = y[small], x[small]
    y2 = ys * ys
    term, series = ys * y2, np.zeros_like(ys)
    for k in range(1, 28):
        series += term / (2 * k + 1)
        term = term * y2
    out[small] = -xs * xs / (2.0 + xs) + 2.0 * series
    return out


def _chi_1d(n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss rule in r for the weight r^{m−1} e^{−r²/2} on [0, ∞) (the χ_m law).

    Its recurrence has no closed form (a semi-classical weight; the symmetric generalized
    Hermite recurrence β_k = k + (m−1)·[k odd] for |x|^{m−1} e^{−x²/2} — Chihara, *An
    Introduction to Orthogonal Polynomials*, V.2, rescaled x → x√2 — gives a rule exact only
    for even polynomials in r), so it is computed by Gautschi's discretized Stieltjes
    procedure (*Orthogonal Polynomials: Computation and Approximation*, 2004, §2.2.3–2.2.4):
    u = r − r_0 about the mode r_0 = √(m−1) is discretized on [max(−r_0, −h), h],
    h = 4√n + 8 (beyond every node's reach), by 24-point Gauss–Legendre panels of length
    1/(1 + √n/8); the Lanczos form v_k = √w·q_k keeps every vector of unit norm (no overflow),
    with one re-orthogonalization against v_k per step.  The log-density relative to the mode,
    (m−1)·(log1p(u/r_0) − u/r_0) + ((m−1)/r_0 − r_0)·u − u²/2, is free of the cancellation of
    (m−1)·log r − r²/2 at large m.
    """
    r0 = math.sqrt(m - 1)
    h = 4.0 * math.sqrt(n) + 8.0
    low = -min(r0, h)
    panels = max(1, math.ceil((h - low) * (1.0 + math.sqrt(n) / 8.0)))
    t, wt = leggauss(24)
    edges = np.linspace(low, h, panels + 1)
    half, mid = (edges[1:] - edges[:-1]) / 2.0, (edges[1:] + edges[:-1]) / 2.0
    u = (mid[:, None] + half[:, None] * t).ravel()
    panel_w = (half[:, None] * wt).ravel()
    if m == 1:
        log_density = -0.5 * u * u
    else:
        log_density = (m - 1) * _log1p_minus_x(u / r0) + ((m - 1) / r0 - r0) * u - 0.5 * u * u
    with np.errstate(under="ignore"):
        v = np.sqrt(panel_w) * np.exp(0.5 * (log_density - log_density.max()))
    v = v / math.sqrt(float(np.dot(v, v)))
    alpha, beta = np.zeros(n), np.zeros(n)
    v_prev, s_prev = np.zeros_like(v), 0.0
    for k in range(n):
        alpha[k] = float(np.dot(u * v, v))
        if k == n - 1:
            break
        nxt = (u - alpha[k]) * v - s_prev * v_prev
        nxt -= float(np.dot(nxt, v)) * v
        beta[k + 1] = float(np.dot(nxt, nxt))
        s_prev = math.sqrt(beta[k + 1])
        v_prev, v = v, nxt / s_prev
    x, w = _gauss_from_recurrence(alpha, beta)
    return r0 + x, w


def _sphere_marginal_1d(n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss rule for the density ∝ (1 − ζ²)^{(m−3)/2} on [−1, 1] (see :func:`sphere_marginal`).

    Monic Gegenbauer recurrence, λ = (m−2)/2 (weight (1 − x²)^{λ−½}): α_k = 0 and
    β_k = k(k + 2λ − 1) / (4(k + λ)(k + λ − 1)) (Chihara, V.2; Abramowitz–Stegun 22.7.3 made
    monic), with β_1 = 1/(2(λ + 1)) = 1/m = E[ζ²] written out.  m = 2 (λ = 0, where the
    formula is 0/0 at k = 1) is the arcsine law, built in closed form: nodes cos((2i−1)π/(2n)),
    weights 1/n.  m = 1 (λ = −½): β_1 = 1 and β_2 = 0, the law is the two atoms ±1.  Nodes and
    weights are symmetrized (ζ ↔ −ζ) exactly.
    """
    if m == 1:
        if n == 1:
            return np.zeros(1), np.ones(1)
        return np.array([-1.0, 1.0]), np.array([0.5, 0.5])
    if m == 2:                                          # Gauss–Chebyshev: cos((2i−1)π/(2n)), equal weights
        x = np.cos((2.0 * np.arange(n, 0, -1) - 1.0) * math.pi / (2.0 * n))
        x = 0.5 * (x - x[::-1])
        return x, np.full(n, 1.0 / n)
    lam = (m - 2) / 2.0
    k = np.arange(n, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        beta = k * (k + 2.0 * lam - 1.0) / (4.0 * (k + lam) * (k + lam - 1.0))
    beta[0] = 0.0
    if n > 1:
        beta[1] = 1.0 / m
    x, w = _gauss_from_recurrence(np.zeros(n), beta)
    x = 0.5 * (x - x[::-1])                             # exact symmetry ζ ↔ −ζ
    w = 0.5 * (w + w[::-1])
    return x, w


def _auto_half_width(n: int) -> float:
    """Half-width a with a³ = 2π·AUTO_STRIP·(n−1): truncation e^{−a²/2} = spacing error e^{−2πτ/h}, h = 2a/(n−1)."""
    return min(MAX_HALF_WIDTH, (2.0 * math.pi * AUTO_STRIP * max(n - 1, 1)) ** (1.0 / 3.0))


def _trapezoid_1d(n: int, mean: float, std: float, half_width, mapping: str = "linear", scale: float = 1.0):
    if half_width == "auto":
        half_width = _auto_half_width(n)
    if mapping == "sinh":
        edge = math.asinh(half_width / scale)
        s = np.zeros(1) if n == 1 else np.linspace(-edge, edge, n)
        u = scale * np.sinh(s)
        with np.errstate(under="ignore"):
            w = np.exp(-0.5 * u * u) * np.cosh(s)
    else:
        u = np.zeros(1) if n == 1 else np.linspace(-half_width, half_width, n)
        with np.errstate(under="ignore"):
            w = np.exp(-0.5 * u * u)
    return mean + std * u, w / w.sum()


def _tensor_arrays(factors: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Cartesian product of (nodes [Q_i, k_i], weights [Q_i]); the first factor varies slowest."""
    if not factors:
        return np.zeros((1, 0)), np.ones(1)
    index = np.indices([len(w) for _, w in factors]).reshape(len(factors), -1)
    nodes = np.concatenate([x[i] for (x, _), i in zip(factors, index)], axis=1)
    weights = np.ones(index.shape[1])
    for (_, w), i in zip(factors, index):
        weights = weights * w[i]
    return nodes, weights


def _smolyak_arrays(dim: int, level: int, rule1d) -> tuple[np.ndarray, np.ndarray]:
    cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def factor(m: int):
        if m not in cache:
            x, w = rule1d(m)
            cache[m] = (x[:, None], w)
        return cache[m]

    centre, _ = factor(1)                                # the 1-node rule: the mean, weight 1
    all_nodes, all_weights = [], []
    for s in range(max(0, level - dim), level):          # s = |i| - d, i_j = j_j + 1
        coefficient = (-1) ** (level - 1 - s) * math.comb(dim - 1, level - 1 - s)
        for positions in combinations_with_replacement(range(dim), s):
            active = sorted(set(positions))              # coordinates with i_j > 1
            sub_nodes, weights = _tensor_arrays([factor(positions.count(c) + 1) for c in active])
            nodes = np.full((len(weights), dim), centre[0, 0])
            nodes[:, active] = sub_nodes
            all_nodes.append(nodes)
            all_weights.append(coefficient * weights)
    return _merge_nodes(np.concatenate(all_nodes), np.concatenate(all_weights))


def _merge_nodes(nodes: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge nodes whose coordinates agree within MERGE_TOL·max(1, |x|); sum their weights."""
    labels = np.empty(nodes.shape, dtype=np.int64)
    representatives = []
    for c in range(nodes.shape[1]):
        order = np.argsort(nodes[:, c], kind="stable")
        values = nodes[order, c]
        gap = np.diff(values) > MERGE_TOL * np.maximum(1.0, np.abs(values[1:]))
        group = np.concatenate([[0], np.cumsum(gap)])
        labels[order, c] = group
        representatives.append(values[np.concatenate([[0], np.flatnonzero(gap) + 1])])
    unique, inverse = np.unique(labels, axis=0, return_inverse=True)
    merged = np.bincount(inverse.ravel(), weights=weights, minlength=len(unique))
    keep = merged != 0.0
    out = np.stack([representatives[c][unique[:, c]] for c in range(nodes.shape[1])], axis=1)
    return out[keep], merged[keep]


# --------------------------------------------------------------------------------------------
# Description
# --------------------------------------------------------------------------------------------

def _format(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "[" + ", ".join(_format(v) for v in value) + "]"
    return str(value)


def _describe_spec(spec: dict, nodes: int | None = None, tracers: int = 0) -> str:
    kind = spec["kind"]
    if kind == "user":
        points = np.asarray(spec["nodes"])
        parts = [f"size={len(points)}", f"dim={1 if points.ndim == 1 else points.shape[1]}"]
    elif kind == "tensor":
        parts = [" x ".join(_describe_spec(r) for r in spec["rules"])]
    else:
        parts = [f"{name}={_format(value)}" for name, value in spec.items()
                 if name not in ("kind", "tracers")]
    if nodes is not None and kind != "user" and spec.get("size") != nodes:
        parts.append(f"nodes={nodes}")
    if tracers:
        parts.append(f"tracers={tracers}")
    return f"{kind}({', '.join(parts)})"

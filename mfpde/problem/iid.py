"""i.i.d. initialization → the reduced embedding of SPEC §4 (Problem room).

Given per-layer initial laws of a network with i.i.d. weights, build the index spaces,
rules and initial functions the limit needs — never a grid on the middle-layer noise:

* each hidden layer's index collects its *clean features*: layer 1 — w_1^0 ∈ R^d and
  b_1^0 (if random); the last hidden layer L — v^0 ∈ R^K and b_L^0 (if random); a middle
  layer — its bias b_l^0 if random, otherwise nothing (a single node of weight 1).  For
  L = 1 the one index space holds (w_1^0, b_1^0, v^0) (the shallow Lagrangian form);
* a middle weight W_l starts at its mean m_l (the function W̄_l of SPEC §4) and carries the
  noise std s_l for finite networks (``noise_std``), which the limit averages out;
* every random coordinate is a *standard* variable — N(0, 1) for a normal law, U[0, 1] for a
  uniform law — integrated by a 1-D rule per coordinate (tensor product) or by a joint
  Sobol'/Monte-Carlo rule, and mapped to its law by an affine initial function.

For L ≥ 3 with a middle layer without a random bias the hidden layers collapse (SPEC §4):
h_l and δ_l are the same for every neuron, ΔW_2 depends on u_1 only, ΔW_l is a scalar,
ΔW_L depends on v^0 only.  With a single node per such layer this *is* the collapsed
system; :func:`iid_embedding` returns a warning that explains it, and a second one when the
limit is frozen (every m_l = 0 and φ(0) = 0 in the collapsed layers).  A middle layer with a
random bias keeps a 1-D index (its bias): the derivation is in ``docs/iid.md``.  At L = 2 with odd
activations and symmetric first- and last-layer laws the middle-weight mean m_2 has no effect on
the limit; a third warning says so (:func:`_m2_note`).
Imports numpy, mfpde.problem.quadrature, mfpde.problem.embedding, mfpde.problem.activations, mfpde.errors.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from mfpde.problem import embedding as E
from mfpde.problem import quadrature as qd
from mfpde import checks
from mfpde.errors import ConfigError

LAWS = ("normal", "uniform", "constant")
JOINT = ("sobol", "monte_carlo")
PER_COORDINATE = ("gauss_hermite", "gaussian_trapezoid", "gauss_legendre")


@dataclass(frozen=True)
class Law:
    """A 1-D initial law: normal(mean, std), uniform(low, high) or constant(value)."""

    law: str = "normal"
    mean: float = 0.0
    std: float = 1.0
    low: float = 0.0
    high: float = 1.0
    value: float = 0.0

    @property
    def random(self) -> bool:
        return self.law != "constant" and not (self.law == "normal" and self.std == 0.0)

    @property
    def family(self) -> str:
        return "uniform" if self.law == "uniform" else "normal"

    def affine(self) -> tuple[float, float]:
        """(shift, scale) mapping the standard variable to this law."""
        if self.law == "uniform":
            return self.low, self.high - self.low
        if self.law == "normal":
            return self.mean, self.std
        return self.value, 0.0

    def to_dict(self) -> dict:
        if self.law == "normal":
            return {"law": "normal", "mean": self.mean, "std": self.std}
        if self.law == "uniform":
            return {"law": "uniform", "low": self.low, "high": self.high}
        return {"law": "constant", "value": self.value}


def make_law(spec: Any, key: str, default: Law | None = None) -> Law:
    """A law from a number (constant) or a table ``{law = "normal", mean, std}`` etc."""
    if spec is None:
        return default if default is not None else Law()
    if checks.is_number(spec):
        return Law("constant", value=checks.number(spec, key))
    if not isinstance(spec, Mapping):
        raise ConfigError(key, f"expected a number or a table {{law = \"normal\" | \"uniform\" | \"constant\", ...}}, got {spec!r}")
    law = checks.choice(spec.get("law", "normal"), LAWS, f"{key}.law", what="law")
    allowed = {"normal": ("law", "mean", "std"), "uniform": ("law", "low", "high"), "constant": ("law", "value")}[law]
    checks.check_keys(spec, allowed, key, hint=f" (a {law} law)")
    if law == "normal":
        return Law("normal", mean=checks.get(spec, "mean", key, checks.number, 0.0),
                   std=checks.get(spec, "std", key, checks.number, 1.0, positive=True))
    if law == "uniform":
        lo = checks.get(spec, "low", key, checks.number, 0.0)
        hi = checks.get(spec, "high", key, checks.number, 1.0)
        if not hi > lo:
            raise ConfigError(f"{key}.high", f"must be greater than low ({lo}), got {hi}")
        return Law("uniform", low=lo, high=hi)
    return Law("constant", value=checks.get(spec, "value", key, checks.number, 0.0))


@dataclass(frozen=True)
class MiddleLaw:
    """Law of the i.i.d. middle weights W_l: mean m_l and noise std s_l."""

    mean: float = 0.0
    std: float = 1.0


def _rule_for(features: list[Law], rule_spec: Mapping, key: str, coord_rules: Mapping | None = None):
    """Rule on the standard variables of ``features`` (all random), tensor or joint; ``coord_rules``
    {i: rule table} replaces coordinate i's 1-D rule (the χ radius of the SPEC §7 reduction)."""
    rule_spec = checks.table(rule_spec, key)
    kind = checks.choice(rule_spec.get("kind", "gaussian_trapezoid"), PER_COORDINATE + JOINT, f"{key}.kind",
                         what="rule kind for an i.i.d. embedding")
    k = len(features)
    if k == 0:
        return qd.user(np.zeros((1, 1)), np.ones(1))
    if kind in JOINT:
        fams = {f.family for f in features}
        if len(fams) > 1:
            raise ConfigError(f"{key}.kind", "a joint sobol/monte_carlo rule needs every random feature of the layer "
                              "to be normal, or every one uniform; use a per-coordinate rule for mixed laws")
        extra = {n: rule_spec[n] for n in ("seed", "scramble") if n in rule_spec}
        if kind == "monte_carlo":
            extra.pop("scramble", None)
        table = {"kind": kind, "size": rule_spec.get("size", 1024), "dim": k, "law": fams.pop(), **extra}
        return qd.plan_rule(table, key, checks.MAX_LAYER_NODES, "a hidden layer's rule", size_key=f"{key}.size").build()
    options = {"gaussian_trapezoid": ("half_width", "map", "scale"), "gauss_hermite": ("scale",)}.get(kind, ())
    checks.check_keys(rule_spec, ("kind", "size") + options, key, hint=" (a per-coordinate rule)")
    size = rule_spec.get("size", 32)
    parts = []
    for f in features:
        if f.family == "uniform":
            parts.append({"kind": "gauss_legendre", "size": size, "low": 0.0, "high": 1.0})
        elif kind == "gauss_legendre":
            raise ConfigError(f"{key}.kind", "gauss_legendre integrates uniform laws; normal features need gauss_hermite or gaussian_trapezoid")
        else:
            t = {"kind": kind, "size": size, "mean": 0.0, "std": 1.0}
            t.update({name: rule_spec[name] for name in options if name in rule_spec})
            parts.append(t)
    for i, t in (coord_rules or {}).items():
        parts[i] = dict(t)
    nodes = 1
    for _ in parts if checks.is_integer(size) and size > 1 else ():
        nodes *= size
        if nodes > checks.MAX_LAYER_NODES:
            break
    if nodes > checks.MAX_LAYER_NODES:
        raise ConfigError(f"{key}.size", f"a tensor rule of {len(parts)} coordinates with {size} nodes each has "
                          f"{size}^{len(parts)} nodes, more than {checks.MAX_LAYER_NODES} for a hidden layer's rule; "
                          f"use kind = \"sobol\" for many coordinates")
    table = parts[0] if len(parts) == 1 else {"kind": "tensor", "rules": parts}
    return qd.plan_rule(table, key, checks.MAX_LAYER_NODES, "a hidden layer's rule", size_key=f"{key}.size").build()


def _feature_init(law: Law, start: int, width: int | None) -> E.InitFn:
    if not law.random:
        shift, _ = law.affine()
        return E.constant(shift)
    shift, scale = law.affine()
    return E.affine(shift, scale, start)


def iid_embedding(model, *, w_1: Law, v: Law, W: list[MiddleLaw] | tuple = (), b: list[Law | None] | tuple = (),
                  b_out: float = 0.0, rule: Mapping | None = None, rules: Mapping | None = None, key: str = "iid",
                  coord_rules: Mapping | None = None):
    """The reduced embedding of an i.i.d.-initialized network (SPEC §4); returns (Embedding, warnings).

    ``coord_rules`` {i: rule table} replaces the 1-D rule of layer 1's standard coordinate i
    (SPEC §7: coordinate k is β⁰/σ ~ χ_{d−k}, see :mod:`mfpde.problem.reduction`)."""
    from mfpde.problem.activations import get as get_act
    from mfpde.problem.model import Embedding

    L = model.L
    d, K = model.input_dim, model.outputs
    rule = dict(rule or {"kind": "gaussian_trapezoid", "size": 32})
    rules = dict(rules or {})
    W = tuple(W) if W else tuple(MiddleLaw(0.0, 1.0) for _ in range(L - 1))
    if len(W) != L - 1:
        raise ConfigError(f"{key}.W", f"needs one middle-weight law per layer l = 2..{L} ({L - 1}), got {len(W)}")
    b = list(b) if b else [None] * L
    if len(b) != L:
        raise ConfigError(f"{key}.b", f"needs one entry per hidden layer ({L}), got {len(b)}")
    bl = [(b[l] if model.biases[l] else None) for l in range(L)]
    for l in range(L):
        if b[l] is not None and not model.biases[l] and not (b[l].law == "constant" and b[l].value == 0.0):
            raise ConfigError(f"{key}.b[{l}]", f"layer {l + 1} has no bias (model.biases)")
        if bl[l] is None and model.biases[l]:
            bl[l] = Law("constant", value=0.0)
    # features per layer: (name, law, width)
    layers: list[list[tuple[str, Law, int]]] = [[] for _ in range(L)]
    layers[0].append(("w_1", w_1, d))
    if bl[0] is not None:
        layers[0].append(("b_1", bl[0], 1))
    for l in range(1, L):
        if bl[l] is not None:
            layers[l].append((f"b_{l + 1}", bl[l], 1))
    layers[L - 1].append(("v", v, K))
    rule_list, inits = [], {}
    for l in range(L):
        random_feats = [(n, f, w) for n, f, w in layers[l] if f.random]
        coords = [f for _, f, w in random_feats for _ in range(w)]
        lkey = f"{key}.rules.layer_{l + 1}" if f"layer_{l + 1}" in rules else f"{key}.rule"
        spec = rules.get(f"layer_{l + 1}", rule)
        rule_list.append(_rule_for(coords, spec, lkey, coord_rules if l == 0 else None))
        start = 0
        for n, f, w in layers[l]:
            inits[n] = _feature_init(f, start, w)
            if f.random:
                start += w
    Wfns = tuple(E.constant(m.mean, noise_std=m.std) for m in W)
    b_fns = tuple(inits.get(f"b_{l + 1}") if model.biases[l] else None for l in range(L))
    emb = Embedding(tuple(rule_list), inits["w_1"], Wfns, inits["v"], b_fns,
                    E.constant(b_out) if model.output_bias else None)
    notes = []
    collapsed = [l + 1 for l in range(1, L - 1) if not (bl[l] is not None and bl[l].random)]
    if collapsed:
        notes.append(
            f"i.i.d. initialization with L = {L}: hidden layer(s) {collapsed} have no random feature, so every "
            f"neuron of them is alike in the limit (SPEC §4 degeneracy): h_l and δ_l do not depend on the neuron, "
            f"all input dependence passes through one scalar feature per such layer, and the last hidden layer is rank one. "
            f"Use a correlated embedding (init kind = \"kernel\") or random hidden biases to avoid the collapse.")
        frozen = all(m.mean == 0.0 for m in W) and all(abs(get_act(model.activations[l - 1]).pair(np.zeros(1))[0][0]) == 0.0 for l in collapsed)
        frozen = frozen and all(not (bl[l - 1] is not None and bl[l - 1].random) and (bl[l - 1] is None or bl[l - 1].value == 0.0) for l in collapsed)
        if frozen:
            notes.append("every middle-weight mean m_l is 0 and φ(0) = 0 in the collapsed layers: the limit "
                         "never moves (the output stays at its initial value for all t).")
    note = _m2_note(model, layers, W)
    if note:
        notes.append(note)
    return emb, notes


def _symmetric(law: Law) -> bool:
    """Whether ``law`` is invariant under x ↦ −x (the law of −X is the law of X)."""
    if law.law == "normal":
        return law.mean == 0.0
    if law.law == "uniform":
        return law.low == -law.high
    return law.value == 0.0


def _odd(name: str) -> bool:
    """Whether the activation is odd, φ(−x) = −φ(x), checked exactly at sample points (user ones included)."""
    from mfpde.problem.activations import get as get_act

    x = np.linspace(0.125, 4.0, 32)
    plus, minus = get_act(name).pair(x)[0], get_act(name).pair(-x)[0]
    return bool(np.array_equal(np.asarray(minus, float), -np.asarray(plus, float)))


def _m2_note(model, layers, W) -> str | None:
    """The warning that m_2 has no effect at L = 2, or None.

    With odd φ_1, φ_2, linear edges and every clean feature of both layers (w_1, b_1; v, b_2)
    symmetric about 0, the limit is invariant under u_1 ↦ −u_1 and u_2 ↦ −u_2: w_1, b_1,
    ΔW_2 stay odd in u_1 and v, b_2, ΔW_2 odd in u_2 for all t.  Then ∫ φ_1(w_1·x + b_1) du_1 = 0
    (m_2's term of the layer-2 pre-activation) and ∫ δ_2 du_2 = 0 (m_2's term of the layer-1
    gradient), so m_2 enters nowhere: the outputs do not depend on it.
    """
    if model.L != 2 or not W or W[0].mean == 0.0 or model.nonlinear_edges:
        return None
    if not all(_symmetric(f) for layer in layers for _, f, _ in layer):
        return None
    if not all(_odd(a) for a in model.activations):
        return None
    return (f"i.i.d. initialization with L = 2, odd activations {list(model.activations)} and every first- and "
            f"last-layer law symmetric about 0 ({', '.join(n for layer in layers for n, _, _ in layer)}): the limit is "
            f"invariant under u ↦ −u in each layer, so ∫ φ(w_1·x + b_1) du_1 = 0 and ∫ δ_2 du_2 = 0 for all t and the "
            f"middle-weight mean m_2 = {W[0].mean:g} has no effect on the limit (exactly with a symmetric rule, up to "
            f"the quadrature error with sobol/monte_carlo). A nonzero mean, a nonzero constant bias or a non-odd "
            f"activation breaks the symmetry.")


def make_iid(spec: Mapping, model, key: str = "iid", *, d: int | None = None, coord_rules: Mapping | None = None):
    """(Embedding, warnings) from an ``[iid]`` config table; validated.  ``d`` is the true input
    dimension (default model.input_dim; a reduced problem's model has k + 1 inputs) and
    ``coord_rules`` goes to :func:`iid_embedding` (SPEC §7 reduction, :mod:`mfpde.problem.reduction`)."""
    checks.check_keys(spec, ("rule", "rules", "w_1", "v", "W", "b", "b_out", "reduction", "radius_rule", "zeta_rule"), key)
    d = model.input_dim if d is None else int(d)
    w_1 = make_law(spec.get("w_1"), f"{key}.w_1", Law("normal", 0.0, 1.0 / math.sqrt(d)))
    v = make_law(spec.get("v"), f"{key}.v", Law("normal", 0.0, 1.0))
    Wspec = spec.get("W", [])
    if not isinstance(Wspec, list):
        raise ConfigError(f"{key}.W", "expected a list of tables {mean = m_l, std = s_l}, one per layer l = 2..L")
    W = []
    for i, t in enumerate(Wspec):
        k2 = f"{key}.W[{i}]"
        if not isinstance(t, Mapping):
            raise ConfigError(k2, "expected a table {mean = m_l, std = s_l}")
        checks.check_keys(t, ("mean", "std"), k2)
        W.append(MiddleLaw(checks.get(t, "mean", k2, checks.number, 0.0),
                           checks.get(t, "std", k2, checks.number, 1.0, positive=True)))
    bspec = spec.get("b", [])
    if not isinstance(bspec, list):
        raise ConfigError(f"{key}.b", "expected a list with one law per hidden layer")
    b = [make_law(x, f"{key}.b[{i}]") if x is not None else None for i, x in enumerate(bspec)]
    for name in ("rule",):
        if name in spec and not isinstance(spec[name], Mapping):
            raise ConfigError(f"{key}.{name}", "expected a table {kind = ..., size = ...}")
    rules = spec.get("rules", {})
    if not isinstance(rules, Mapping):
        raise ConfigError(f"{key}.rules", "expected a table layer_l = {kind, size}")
    checks.check_keys(rules, tuple(f"layer_{l}" for l in range(1, model.L + 1)), f"{key}.rules")
    b_out = checks.get(spec, "b_out", key, checks.number, 0.0)
    return iid_embedding(model, w_1=w_1, v=v, W=W, b=b or (), b_out=b_out, rule=spec.get("rule"), rules=rules, key=key,
                         coord_rules=coord_rules)

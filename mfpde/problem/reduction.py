"""SPEC §7 in the configuration (Problem room): when the isotropic-Gaussian reduction applies,
and the reduced problem it builds.

With inputs x ~ N(0, s² I_d), a k-index target y = f*(Ux) (U ∈ R^{k×d}, orthonormal rows) and
an i.i.d. first-layer law N(0, σ² I_d), the limit is equivariant under rotations of the
complement of span(U) (SPEC §7).  The first layer's index space R^d then reduces to
(a⁰ = Uw⁰ ∈ R^k, β⁰ = |P⊥w⁰| ~ σ χ_{d−k}) (plus the neuron's other clean features), the data to
(z = Ux ∈ R^k, r = |P⊥x| ~ s χ_{d−k}), and each (neuron, data point) pair carries the 1-D
variable ζ ~ the marginal of the uniform law on S^{d−k−1}: the cost no longer grows with d.

``[iid] reduction`` chooses it: ``"auto"`` (default: applied whenever the symmetry holds and it
lowers the first layer's index dimension, d − k ≥ 2), ``"none"``, or ``"isotropic_gaussian"``
(forced: a ConfigError names what breaks the symmetry).  :func:`plan` decides (before any
work), :func:`data_set` builds a reduced data set, :func:`unreduced_raw` the configuration of
the *finite networks* of the same problem (real d-dimensional inputs and weights; they are not
symmetric, so they cannot be reduced).  Imports numpy and mfpde.problem.quadrature / data only.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from mfpde import checks
from mfpde.errors import ConfigError

CHOICES = ("auto", "none", "isotropic_gaussian")
PER_COORDINATE = ("gauss_hermite", "gaussian_trapezoid")
RADIUS_DEFAULT = 12          # chi nodes of β⁰ and of r (both concentrate as d grows)
ZETA_DEFAULT = 16            # sphere_marginal nodes of ζ
SGD_SAMPLE_DEFAULT = 4096    # d-dimensional training sample of the finite networks (docs/high_dimension.md)
KIND = "isotropic_gaussian"


@dataclass(frozen=True)
class Plan:
    """A reduction that applies: the true d, the index dimension k, U (None: the first k axes)
    and the resolved rule tables (written back into the configuration as provenance)."""

    d: int
    k: int
    U: Any
    radius_rule: dict        # iid.radius_rule: β⁰/σ ~ χ_{d−k}
    zeta_rule: dict          # iid.zeta_rule: ζ
    data_radius: dict        # data.<part>.radius_rule per reduced data table, by part
    line: str                # what is printed

    @property
    def m(self) -> int:
        return self.d - self.k


def _fail(forced: bool, key: str, why: str, reasons: list | None = None):
    if forced:
        raise ConfigError(key, f"breaks the isotropic-Gaussian reduction (SPEC §7): {why}; "
                               f"set iid.reduction = \"none\" to solve on R^d")
    if reasons is not None:
        reasons.append(f"{key}: {why}")
    return None


def _teacher_index(spec: Mapping, d: int, key: str):
    """(k, U, why-not) of a train/test teacher table: the target's index directions."""
    t = spec.get("teacher")
    if not isinstance(t, Mapping):
        return None, None, f"{key}.teacher is not a table"
    kind = t.get("kind")
    if kind == "single_index_tanh":
        if "direction" not in t:
            return 1, None, None
        u = checks.array(t["direction"], f"{key}.teacher.direction").reshape(-1)   # read before validation: checked
        if u.size != d or not np.all(np.isfinite(u)) or not np.any(u != 0):
            return None, None, f"{key}.teacher.direction is not a non-zero vector of d = {d} numbers"
        from mfpde.problem.data import SingleIndexTanh

        u = SingleIndexTanh(u).direction   # the teacher's own normalization: U is exactly its direction
        nz = np.flatnonzero(u)
        if nz.size == 1 and nz[0] == 0 and u[0] > 0:
            return 1, None, None
        return 1, u[None, :], None
    if kind == "two_layer":
        k = t.get("index_dim", d)
        if not checks.is_integer(k) or not 1 <= k <= d:
            return None, None, f"{key}.teacher.index_dim must be an integer in 1 … d"
        return int(k), None, None
    return None, None, f"{key}.teacher kind {kind!r} is not a k-index target (single_index_tanh or two_layer with index_dim)"


def _one_dim_rule(spec: Mapping, key: str) -> str | None:
    """Why a data table's ``rule`` cannot serve as the per-coordinate rule of z, or None."""
    r = spec.get("rule")
    if not isinstance(r, Mapping):
        return f"{key}.rule is not a rule table"
    if r.get("kind", "gaussian_trapezoid") not in PER_COORDINATE:
        return (f"{key}.rule is a {r.get('kind')!r} rule; the reduced data rule is one 1-D rule per coordinate of z "
                f"({' or '.join(PER_COORDINATE)}, no dim)")
    if "dim" in r and r["dim"] != 1:
        return f"{key}.rule has dim = {r['dim']}: with the reduction it is the 1-D rule of each coordinate of z = Ux (remove dim)"
    return None


def _radius_table(spec: Any, key: str, default_size: int) -> dict:
    if spec is None:
        return {"kind": "chi", "size": default_size}
    spec = checks.table(spec, key)
    checks.check_keys(spec, ("kind", "size"), key, hint=" (a chi rule: its dof is d − k, its scale the law's std)")
    checks.choice(spec.get("kind", "chi"), ("chi",), f"{key}.kind", what="radius rule kind")
    return {"kind": "chi", "size": checks.get(spec, "size", key, checks.integer, default_size, lo=1, hi=64)}


def plan(raw: Mapping, d: int, reasons: list | None = None) -> Plan | None:
    """The reduction of a configuration with ``[iid]`` and model.input_dim = ``d``, or None.

    ``auto`` returns None quietly when the symmetry does not hold; ``isotropic_gaussian`` raises
    a ConfigError naming the key that breaks it.  The checks: a normal first-layer law with mean
    0; a ``teacher`` training law integrated by a ``rule`` (a sample is a finite set, which has
    no symmetry) with a k-index target; 1-D per-coordinate rules for z and for the layer-1 index;
    a test table that is a teacher law on the same d (reduced alike), or any finite set (its
    points are reduced exactly: the limit's output depends on x only through (Ux, |P⊥x|)).
    ``reasons`` (a list) collects why ``auto`` did not apply ("key: why").
    """
    iid = raw.get("iid")
    if not isinstance(iid, Mapping):
        return None
    mode = checks.choice(iid.get("reduction", "auto"), CHOICES, "iid.reduction", what="reduction")
    if mode == "none":
        return None
    forced = mode == KIND

    def _fail_r(key, why):
        return _fail(forced, key, why, reasons)
    w1 = iid.get("w_1")
    if isinstance(w1, Mapping) and (w1.get("law", "normal") != "normal" or w1.get("mean", 0.0) != 0.0):
        return _fail_r("iid.w_1", "the first-layer law must be normal with mean 0 (isotropic)")
    if checks.is_number(w1):
        return _fail_r("iid.w_1", "a constant first-layer weight is not an isotropic Gaussian law")
    data = raw.get("data", {})
    train = data.get("train") if isinstance(data, Mapping) else None
    if not isinstance(train, Mapping) or train.get("kind") != "teacher":
        return _fail_r("data.train.kind", "the training data must be a teacher law x ~ N(0, s² I_d), y = f*(Ux) "
                                                "(a finite data set or a class mixture has no such symmetry)")
    if "rule" not in train:
        return _fail_r("data.train.sample", "a finite sample of the law is not rotation invariant; integrate the "
                                                  "law by a rule (data.train.rule)")
    k, U, why = _teacher_index(train, d, "data.train")
    if why:
        return _fail_r("data.train.teacher", why)
    if d - k < (1 if forced else 2):
        return _fail_r("data.train.teacher", f"the target has k = {k} index directions in d = {d}: "
                                                   f"nothing is left to reduce (d − k = {d - k})")
    why = _one_dim_rule(train, "data.train")
    if why:
        return _fail_r("data.train.rule", why)
    rules = iid.get("rules", {}) if isinstance(iid.get("rules", {}), Mapping) else {}
    l1key = "iid.rules.layer_1" if "layer_1" in rules else "iid.rule"
    l1 = rules.get("layer_1", iid.get("rule", {"kind": "gaussian_trapezoid", "size": 32}))
    if not isinstance(l1, Mapping) or l1.get("kind", "gaussian_trapezoid") not in PER_COORDINATE:
        return _fail_r(l1key, "the layer-1 index rule must be a per-coordinate rule "
                                    f"({' or '.join(PER_COORDINATE)}) for the reduced index (a⁰, β⁰)")
    test = data.get("test") if isinstance(data, Mapping) else None
    parts = {"train": train}
    if isinstance(test, Mapping) and test.get("kind") == "teacher" and "rule" in test:
        kt, Ut, why = _teacher_index(test, d, "data.test")
        same = kt == k and ((U is None and Ut is None) or (U is not None and Ut is not None and np.allclose(U, Ut)))
        if why or not same:
            return _fail_r("data.test.teacher", why or "the test law's target must have the training target's "
                                                             "index directions (or use a test sample)")
        why = _one_dim_rule(test, "data.test")
        if why:
            return _fail_r("data.test.rule", why)
        parts["test"] = test
    elif isinstance(test, Mapping) and test.get("kind") == "gaussian_classes" and "rule" in test:
        return _fail_r("data.test", "a gaussian_classes test law integrated by a rule has no reduced form here "
                                          "(give it as a sample)")
    size = l1.get("size", 32)
    radius = _radius_table(iid.get("radius_rule"), "iid.radius_rule", RADIUS_DEFAULT)
    zspec = iid.get("zeta_rule")
    if zspec is None:
        zeta = {"kind": "sphere_marginal", "size": ZETA_DEFAULT}
    else:
        zspec = checks.table(zspec, "iid.zeta_rule")
        checks.check_keys(zspec, ("kind", "size"), "iid.zeta_rule", hint=" (a sphere_marginal rule: its dof is d − k)")
        checks.choice(zspec.get("kind", "sphere_marginal"), ("sphere_marginal",), "iid.zeta_rule.kind", what="ζ rule kind")
        zeta = {"kind": "sphere_marginal",
                "size": checks.get(zspec, "size", "iid.zeta_rule", checks.integer, ZETA_DEFAULT, lo=1, hi=1000)}
    data_radius = {p: _radius_table(t.get("radius_rule"), f"data.{p}.radius_rule", RADIUS_DEFAULT) for p, t in parts.items()}
    where = "the first axis" if (U is None and k == 1) else (f"the first {k} axes" if U is None else "the teacher's direction")
    line = (f"reduction: isotropic_gaussian (SPEC §7): d = {d}, k = {k} ({where}); layer-1 index (a⁰ ∈ R^{k}, β⁰) on "
            f"{size if not isinstance(size, list) else size}^{k} × chi {radius['size']} nodes, data (z, r) on "
            f"{train['rule'].get('size', 32)}^{k} × chi {data_radius['train']['size']}, ζ on {zeta['size']} nodes "
            f"(dof {d - k}); the cost does not grow with d")
    del size
    return Plan(int(d), int(k), U, radius, zeta, data_radius, line)


def resolved(raw: Mapping, p: Plan) -> dict:
    """``raw`` with the reduction's rule tables written out (the stored configuration says which
    rules were used; companion solves of the error estimate coarsen them like any rule)."""
    r = copy.deepcopy(dict(raw))
    iid = r["iid"] = dict(r["iid"])
    iid["radius_rule"] = dict(p.radius_rule)
    iid["zeta_rule"] = dict(p.zeta_rule)
    r["data"] = dict(r["data"])
    for part, table in p.data_radius.items():
        r["data"][part] = dict(r["data"][part])
        r["data"][part]["radius_rule"] = dict(table)
    return r


def zeta(p: Plan):
    """The ζ rule (1-D, dof d − k)."""
    from mfpde.problem.quadrature import make_rule

    return make_rule({**p.zeta_rule, "dof": p.m}, "iid.zeta_rule")


def radius_coordinate(p: Plan) -> dict:
    """The layer-1 index rule of β⁰/σ (standard χ_{d−k}; the w_1 initial function scales by σ)."""
    return {**p.radius_rule, "dof": p.m}


def data_set(p: Plan, spec: Mapping, key: str, reduction) -> Any:
    """The reduced data set of a teacher table integrated by a rule: nodes (z, r) of the tensor
    rule (per-coordinate rule of z with std s) × (chi_{d−k} with scale s), targets f*(Uᵀz)."""
    from mfpde.problem import data as data_mod
    from mfpde.problem.quadrature import make_rule, tensor

    law = data_mod.make_law(spec, key)
    s = law.input_std
    zr = dict(spec["rule"])
    zr.pop("dim", None)
    zr.update(mean=0.0, std=s)
    part = key.rsplit(".", 1)[-1]
    zrule = make_rule(zr, f"{key}.rule")
    rrule = make_rule({**p.data_radius[part], "dof": p.m, "scale": s}, f"{key}.radius_rule")
    rule = tensor(*([zrule] * p.k + [rrule]))
    X = np.ascontiguousarray(rule.nodes, dtype=float)
    Y = np.empty((X.shape[0], law.K))
    step = max(1, 1_000_000 // p.d)
    for m0 in range(0, X.shape[0], step):
        Y[m0:m0 + step] = law.teacher(reduction.lift(X[m0:m0 + step, :p.k]))
    return data_mod.DataSet(X, Y, np.asarray(rule.weights, dtype=float), part,
                            f"{law.describe()} reduced to (z = Ux, r = |P⊥x|) (SPEC §7) on "
                            f"{zrule.describe() if hasattr(zrule, 'describe') else zr['kind']}^{p.k} × "
                            f"{rrule.describe() if hasattr(rrule, 'describe') else 'chi'}")


def reduce_set(ds, reduction):
    """A data set on R^d (a sample, a file, arrays) with its inputs reduced exactly to (z, r)."""
    from dataclasses import replace

    return replace(ds, X=reduction.reduce(ds.X), source=f"{ds.source}, reduced to (z = Ux, r = |P⊥x|) (SPEC §7)")


def unreduced_raw(raw: Mapping, sample: int | None = None) -> dict:
    """The configuration of the finite networks of a reduced problem: the same model, laws,
    schedules, probes and solver on real d-dimensional inputs.

    * the layer-1 index rule becomes ``{kind = "monte_carlo", size = 1}``: finite networks only
      draw their first-layer weights from the law (N(0, σ² I_d)), they never integrate it;
    * the training law's rule becomes ``sample = N`` (``[sgd] sample``, default 4096, capped so that
      N·d ≤ 10⁷): the full batch of ``mode = "full"``/``"minibatch"`` and the set ``loss_train``
      is recorded on (``mode = "online"`` draws fresh points from the law every step);
    * a test law integrated by a rule becomes a sample of the same size.
    """
    r = copy.deepcopy(dict(raw))
    iid = r["iid"] = dict(r["iid"])
    iid["reduction"] = "none"
    for k in ("radius_rule", "zeta_rule"):
        iid.pop(k, None)
    rules = dict(iid.get("rules", {}))
    rules["layer_1"] = {"kind": "monte_carlo", "size": 1}
    iid["rules"] = rules
    d = int(r["model"]["input_dim"])
    n = SGD_SAMPLE_DEFAULT if sample is None else int(sample)
    n = max(1, min(n, checks.MAX_DATA // max(d, 1)))
    if isinstance(r.get("sgd"), Mapping):
        r["sgd"] = {k: v for k, v in r["sgd"].items() if k != "sample"}   # used here
    r["data"] = dict(r["data"])
    for part in ("train", "test"):
        t = r["data"].get(part)
        if isinstance(t, Mapping) and "rule" in t:
            t = dict(t)
            t.pop("rule")
            t.pop("radius_rule", None)
            t["sample"] = n
            r["data"][part] = t
    return r

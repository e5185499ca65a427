"""TOML configuration → validated :class:`~mfpde.problem.Problem` and solver options (Problem room).

Sections: ``[model]``, ``[rules]``, ``[init]``, ``[schedules]``, ``[data.train]``,
``[data.test]``, ``[probes]``, ``[solver]``, ``[output]`` plus top-level ``name`` and
``seed``; every key is documented in ``docs/config.md``.  Everything is validated before any
work: an unknown key, a wrong type or an out-of-range value raises
:class:`~mfpde.errors.ConfigError` naming the key and what is allowed.  Nothing from the
file is evaluated (``tomllib`` only).  Imports the Problem-room modules, and — inside the
functions that read ``[solver]``, never at import — the stepper registry
(``mfpde.solvers.STEPPERS``: each stepper's own option schema), and inside :func:`state_size`
the state layout (``mfpde.system.layout``) that the size guard counts.  Nothing in ``mfpde.solvers``
imports this module back (the TOML writer lives in :mod:`mfpde.checks`).
"""
from __future__ import annotations

import copy
import math
import tomllib
from dataclasses import dataclass, replace
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Mapping

import numpy as np

from mfpde.problem import data as data_mod
from mfpde import checks
from mfpde.problem import embedding
from mfpde.problem import quadrature
from mfpde.errors import ConfigError
from mfpde.problem.model import Embedding, Model, Problem, Reduction, Schedules
from mfpde.problem.schedules import make_schedule

TOP_KEYS = ("name", "seed", "model", "rules", "init", "iid", "schedules", "data", "probes", "solver", "output", "sgd", "accuracy")
SGD_KEYS = ("mode", "batch", "lr", "widths", "replicas", "statistics", "coupling", "sample")
MODEL_KEYS = ("input_dim", "outputs", "hidden", "biases", "output_activation", "output_bias", "loss", "huber_delta",
              "output_scale", "lazy_scaling",
              "edges")
EDGE_RULE_DEFAULT = {"kind": "gauss_hermite", "size": 16}   # rule of the standardized initial noise ω (nonlinear edges)
SOLVER_KEYS = ("stepper", "dt", "t_end", "save_every", "save_times", "bound",
               "rtol", "atol", "dt0", "dt_min", "dt_max", "max_rejections", "fixed_dt",
               "linear_solver", "jacobian", "newton_tol", "newton_maxiter", "theta_refresh", "krylov_rtol",
               "krylov_maxiter", "dense_max", "linearize")
# the kind and range of each stepper option is the stepper's own schema (STEPPERS[name].schema)
OUTPUT_KEYS = ("path", "parameters")
ACCURACY_KEYS = ("estimate", "groups", "target", "max_unknowns", "max_seconds")


@dataclass(frozen=True)
class SolverOptions:
    stepper: str = "rk4"
    dt: float = 0.01
    t_end: float = 1.0
    save_every: float | None = None
    save_times: tuple[float, ...] | None = None
    bound: float = 1e12
    adaptive: tuple[tuple[str, float], ...] = ()   # rtol, atol, dt0, … for adaptive steppers
    linearize: bool = False   # solve the linearized (NTK) limit around θ_0 (mfpde.analysis.linearized)

    def stepper_options(self) -> dict:
        """Keyword options for ``mfpde.solvers.make`` (only those the stepper accepts)."""
        from mfpde.solvers import STEPPERS

        accepted = STEPPERS[self.stepper].options
        opts = {"dt": self.dt, "bound": self.bound, **dict(self.adaptive)}
        return {k: v for k, v in opts.items() if k in accepted}


@dataclass(frozen=True)
class OutputOptions:
    path: str | None = None
    parameters: str = "all"


@dataclass(frozen=True)
class AccuracyOptions:
    """The error estimate and solving to a target ([accuracy], docs/accuracy.md).

    ``estimate``: attach a discretization-error estimate to every solve (companion solves on
    coarser rules and a longer step, :mod:`mfpde.analysis.estimate`); ``groups``: add the per-group
    rule estimates (two companions per rule group); ``target``: solve to this
    sup-time train-loss error by refinement (``mfpde solve --accuracy``), within ``max_unknowns``
    state entries and ``max_seconds`` of wall time (None: no cap).
    """

    estimate: bool = True
    target: float | None = None
    max_unknowns: int | None = None
    max_seconds: float | None = None
    groups: bool = False


@dataclass(frozen=True)
class SgdOptions:
    """Finite-width training ([sgd]); ``lr`` is ε (default: solver.dt), time t = kε."""

    mode: str = "full"
    batch: int = 1
    lr: float | None = None
    widths: tuple[int, ...] = (64, 256, 1024)
    replicas: int = 4
    statistics: bool = True
    coupling: bool = False
    sample: int | None = None     # reduced problems: the finite networks' d-dimensional training sample (SPEC §7)


@dataclass(frozen=True)
class Config:
    problem: Problem
    solver: SolverOptions
    output: OutputOptions
    raw: dict
    source: str
    sgd: SgdOptions = SgdOptions()
    notes: tuple[str, ...] = ()   # warnings about the problem (e.g. the i.i.d. degeneracy)
    accuracy: AccuracyOptions = AccuracyOptions()
    base_dir: str | None = None   # the folder relative data paths were read against (companion solves reuse it)
    info: tuple[str, ...] = ()    # what was chosen for the user (e.g. the SPEC §7 reduction), printed before work

    @cached_property
    def finite_problem(self) -> Problem:
        """The problem finite networks train on: the problem itself, or for a reduced problem
        (SPEC §7) its unreduced twin on real d-dimensional inputs and weights
        (:func:`mfpde.problem.reduction.unreduced_raw`; ``[sgd] sample`` sets its training sample)."""
        if self.problem.reduction is None:
            return self.problem
        from mfpde.problem.reduction import unreduced_raw

        raw = unreduced_raw(self.raw, self.sgd.sample)
        return replace(from_dict(raw, self.source, self.base_dir).problem, config=copy.deepcopy(dict(self.raw)))


def _model(t: Mapping) -> Model:
    checks.check_keys(t, MODEL_KEYS, "model")
    d = checks.get(t, "input_dim", "model", checks.integer, hi=checks.MAX_INPUT_DIM)
    K = checks.get(t, "outputs", "model", checks.integer, 1, hi=checks.MAX_OUTPUTS)
    hidden = checks.required(t, "hidden", "model", "a list of activation names, one per hidden layer")
    if not isinstance(hidden, list) or not hidden or not all(isinstance(a, str) for a in hidden):
        raise ConfigError("model.hidden", "expected a non-empty list of activation names, one per hidden layer")
    if len(hidden) > checks.MAX_HIDDEN:
        raise ConfigError("model.hidden", f"at most {checks.MAX_HIDDEN} hidden layers, got {len(hidden)}")
    L = len(hidden)
    b = t.get("biases", False)
    if isinstance(b, list):
        if len(b) != L:
            raise ConfigError("model.biases", f"needs one entry per hidden layer ({L}), got {len(b)}")
        biases = tuple(checks.boolean(x, f"model.biases[{i}]") for i, x in enumerate(b))
    else:
        biases = (checks.boolean(b, "model.biases"),) * L
    loss = checks.get(t, "loss", "model", checks.string, "squared")
    delta = checks.get(t, "huber_delta", "model", checks.number, 1.0, positive=True)
    e = t.get("edges", "linear")
    if isinstance(e, list):
        if len(e) != L - 1:
            raise ConfigError("model.edges", f"needs one edge map per middle weight W_2..W_L ({L - 1}), got {len(e)}")
        edges = tuple(checks.string(x, f"model.edges[{i}]") for i, x in enumerate(e))
    else:
        edges = (checks.string(e, "model.edges"),) * (L - 1)
    alpha = checks.get(t, "output_scale", "model", checks.number, 1.0, positive=True)
    if not 1e-6 <= alpha <= 1e6:
        raise ConfigError("model.output_scale", f"must lie in [1e-6, 1e6], got {alpha:g}")
    return Model(d, tuple(hidden), K, biases, checks.get(t, "output_activation", "model", checks.string, "identity"),
                 checks.get(t, "output_bias", "model", checks.boolean, False), loss, delta, edges, alpha,
                 checks.get(t, "lazy_scaling", "model", checks.boolean, False))


def _output_scaling(model: Model, emb: Embedding, sched: Schedules) -> tuple[Embedding, Schedules]:
    """The output scale α as an exact change of variables of the one canonical system.

    ŷ = φ_{L+1}(α h_{L+1} + b_{L+1}) with h_{L+1} = E[v φ_L] equals the canonical output with
    v' = α v.  Under the gradient flow dv/dt = −ξ_{L+1} ∂𝓛/∂v, v' obeys dv'/dt = −α² ξ_{L+1} ∂𝓛/∂v',
    and every other parameter sees the same flow (the network depends on v only through αv).  So
    the canonical system with v'(0) = α v^0 and ξ_{L+1} × α² *is* the α-scaled one; the stored
    ``v`` is v' = α v.  ``lazy_scaling`` then multiplies every ξ (weights and biases, b_{L+1}
    included) by 1/α².  α = 1 without lazy scaling returns the inputs unchanged."""
    a = model.output_scale
    if a == 1.0 and not model.lazy_scaling:
        return emb, sched
    lazy = 1.0 / (a * a) if model.lazy_scaling else 1.0
    L = model.L
    weights = tuple(s.scaled(lazy * (a * a if l == L else 1.0)) for l, s in enumerate(sched.weights))
    biases = tuple(s.scaled(lazy) for s in sched.biases)
    return replace(emb, v=emb.v.scaled(a)), Schedules(weights, biases)


def _rules(t: Mapping, L: int) -> tuple:
    """Validated rule plans (sizes known, nothing allocated yet), one per hidden layer."""
    allowed = ("default",) + tuple(f"layer_{l}" for l in range(1, L + 1)) + tuple(f"omega_{l}" for l in range(2, L + 1))
    checks.check_keys(t, allowed, "rules")
    out = []
    for l in range(1, L + 1):
        key = f"layer_{l}" if f"layer_{l}" in t else "default"
        if key not in t:
            raise ConfigError(f"rules.layer_{l}", "is required (or give rules.default for every layer)")
        out.append(quadrature.plan_rule(t[key], f"rules.{key}", checks.MAX_LAYER_NODES, "a hidden layer's rule",
                                        size_key=f"rules.layer_{l}"))
    return tuple(out)


def _edge_rules(t: Mapping, model: Model, W) -> tuple[tuple, list[str]]:
    """Rules of the standardized initial noise ω of W_2..W_L (SPEC §5, nonlinear edges), and notes.

    A middle weight gets one when ``rules.omega_l`` is given, or (default Gauss–Hermite, 16
    nodes) when its edge map is nonlinear and it carries i.i.d. noise (``noise_std`` > 0).
    """
    out, notes = [], []
    for k in t:
        if str(k).startswith("omega_") and k not in tuple(f"omega_{l}" for l in range(2, model.L + 1)):
            raise ConfigError(f"rules.{k}", f"no such middle weight; allowed: omega_2..omega_{model.L}" if model.L > 1
                              else "a network with one hidden layer has no middle weight")
    for l in range(2, model.L + 1):
        key = f"rules.omega_{l}"
        spec = t.get(f"omega_{l}")
        nonlinear = model.edges[l - 2] != "linear"
        if spec is None and not (nonlinear and W[l - 2].noise_std > 0):
            out.append(None)
            continue
        if spec is None:
            spec = dict(EDGE_RULE_DEFAULT)
            notes.append(f"W_{l}: nonlinear edge map {model.edges[l - 2]!r} with i.i.d. initial noise: the noise is an "
                         f"extra index on a {spec['size']}-node Gauss–Hermite rule (set rules.omega_{l} to change it)")
        rule = quadrature.plan_rule(spec, key, checks.MAX_NOISE_NODES, "a one-dimensional noise rule").build()
        if rule.dim != 1:
            raise ConfigError(key, f"the initial-noise rule must be one-dimensional, got dimension {rule.dim}")
        out.append(rule)
    return tuple(out), notes


def _init(t: Mapping, model: Model) -> Embedding:
    L = model.L
    allowed = ("w_1",) + tuple(f"W_{l}" for l in range(2, L + 1)) + ("v",) + tuple(f"b_{l}" for l in range(1, L + 1)) + ("b_out",)
    checks.check_keys(t, allowed, "init")
    w1 = embedding.make_init(t.get("w_1", {"kind": "coordinate"}), "init.w_1")
    W = tuple(embedding.make_init(t.get(f"W_{l}", 0.0), f"init.W_{l}", edge=True) for l in range(2, L + 1))
    v = embedding.make_init(t.get("v", {"kind": "coordinate"}), "init.v")
    b = []
    for l in range(1, L + 1):
        if f"b_{l}" in t and not model.biases[l - 1]:
            raise ConfigError(f"init.b_{l}", f"layer {l} has no bias (set model.biases)")
        b.append(embedding.make_init(t[f"b_{l}"], f"init.b_{l}") if f"b_{l}" in t else None)
    if "b_out" in t and not model.output_bias:
        raise ConfigError("init.b_out", "the output has no bias (set model.output_bias = true)")
    b_out = embedding.make_init(t["b_out"], "init.b_out") if "b_out" in t else None
    widths = [(w1, model.input_dim, "init.w_1"), (v, model.outputs, "init.v"), (b_out, model.outputs, "init.b_out")]
    widths += [(fn, 1, f"init.b_{l}") for l, fn in enumerate(b, 1)]
    for fn, width, key in widths:
        value = fn.params.get("value") if fn is not None and fn.kind == "constant" else None
        if isinstance(value, list) and len(value) not in (1, width):
            raise ConfigError(key, f"a list of constants needs 1 or {width} entries, got {len(value)}")
    return Embedding(None, w1, W, v, tuple(b), b_out)  # rules filled in by the caller


def _schedule_list(v, key, L):
    if isinstance(v, list):
        if len(v) != L + 1:
            raise ConfigError(key, f"a list needs L+1 = {L + 1} entries (layers 1..{L}, then the output), got {len(v)}")
        return tuple(make_schedule(x, f"{key}[{i}]") for i, x in enumerate(v))
    s = make_schedule(v, key)
    return (s,) * (L + 1)


def _schedules(t: Mapping, L: int) -> Schedules:
    allowed = ("weights", "biases") + tuple(f"layer_{l}" for l in range(1, L + 2)) + tuple(f"bias_{l}" for l in range(1, L + 2))
    checks.check_keys(t, allowed, "schedules")
    w = list(_schedule_list(t.get("weights", 1.0), "schedules.weights", L))
    for l in range(1, L + 2):
        if f"layer_{l}" in t:
            w[l - 1] = make_schedule(t[f"layer_{l}"], f"schedules.layer_{l}")
    # a bias follows its own layer's schedule (so layer_l = 0 freezes b_l too) unless `biases`
    # or `bias_l` says otherwise
    b = list(_schedule_list(t["biases"], "schedules.biases", L)) if "biases" in t else list(w)
    for l in range(1, L + 2):
        if f"bias_{l}" in t:
            b[l - 1] = make_schedule(t[f"bias_{l}"], f"schedules.bias_{l}")
    return Schedules(tuple(w), tuple(b))


STATE_NOTE_UNKNOWNS = 1_000_000   # a limit state of more unknowns than this gets a warning note (not a refusal)
TENSOR_NOTE_NODES = 2 ** 16       # so does a hidden layer's tensor-product rule (>= 2 coordinates) of more nodes
TENSOR_KINDS = ("gauss_hermite", "gauss_legendre", "gaussian_trapezoid", "tensor")   # products of per-coordinate rules


def state_size(model: Model, sizes, omega_sizes=None) -> int:
    """Unknowns of the limit's state (``mfpde.system.layout.Layout.size``: every w_1, b_l, W_l, v, b_out
    entry) for hidden-layer rules of ``sizes`` nodes (tracers included) and initial-noise rules of
    ``omega_sizes`` nodes (1 per layer without one; layer 1 first, always 1); nothing is allocated."""
    from mfpde.system.layout import Layout

    omega = [1] * model.L if omega_sizes is None else list(omega_sizes)
    return Layout.build(model.input_dim, model.outputs, list(sizes), model.biases, model.output_bias, omega).size


def size_note(model: Model, layers, omega_sizes=None) -> str | None:
    """The warning note for a large discretization, or None (issue 16, guards; docs/config.md).

    ``layers``: (config key, rule kind, nodes, coordinates) per hidden layer.  A note when the state
    (:func:`state_size`) would exceed :data:`STATE_NOTE_UNKNOWNS` unknowns, or when a layer's rule is
    a tensor product (a kind in :data:`TENSOR_KINDS`) over >= 2 coordinates with more than
    :data:`TENSOR_NOTE_NODES` nodes (tracers included); it names the sizes and the budgets and suggests
    a Sobol' rule or ``mfpde solve --accuracy TOL``.  Computed from the sizes only, before anything
    is allocated."""
    n = state_size(model, [q for _, _, q, _ in layers], omega_sizes)
    found = []
    if n > STATE_NOTE_UNKNOWNS:
        found.append(f"the state would have {n:,} unknowns (budget {STATE_NOTE_UNKNOWNS:,})")
    for l, (key, kind, q, k) in enumerate(layers, 1):
        if kind in TENSOR_KINDS and k >= 2 and q > TENSOR_NOTE_NODES:
            found.append(f"layer {l}'s rule ({key}) is a tensor product of {q:,} nodes over {k} coordinates "
                         f"(budget {TENSOR_NOTE_NODES:,} = 2^16 nodes for a tensor-product rule)")
    if not found:
        return None
    return (f"large discretization: {'; '.join(found)}: the solve will be slow and its file large. A Sobol' "
            f"rule (kind = \"sobol\", e.g. size = 4096) has as many nodes as its size, whatever the number of "
            f"coordinates; or let `mfpde solve --accuracy TOL` choose the rule sizes")


def _count(v) -> int:
    """v if it is a positive integer, else 0 (a size estimate: the type checks come later, in mfpde.problem.data)."""
    return int(v) if checks.is_integer(v) and v > 0 else 0


def _check_data_size(t: Mapping, key: str) -> None:
    """Refuse data laws whose sample or teacher would be absurdly large, before drawing them."""
    d = _count(t.get("d", 1))
    n = _count(t.get("sample"))
    if n * d > checks.MAX_DATA:
        raise ConfigError(f"{key}.sample", f"{n} points in dimension {d} is more than {checks.MAX_DATA:.0e} numbers")
    teacher = t.get("teacher")
    if isinstance(teacher, Mapping) and checks.is_one_of(teacher.get("kind"), ("two_layer",)):
        width, k = _count(teacher.get("width", 4)), _count(teacher.get("output_dim", 1))
        if width * (d + k) > checks.MAX_DATA:
            raise ConfigError(f"{key}.teacher.width", f"a teacher of width {width} with d = {d}, {k} outputs has "
                              f"more than {checks.MAX_DATA:.0e} weights")


def check_linearized_stepper(name: str) -> None:
    """ConfigError naming ``solver.stepper`` unless ``name`` is a fixed-step explicit tableau: the
    linearized limit (``linearize = true``, mfpde.analysis.linearized) is stepped with its tableau."""
    from mfpde.solvers import TABLEAUX

    if name not in TABLEAUX:
        raise ConfigError("solver.stepper", f"linearize = true steps the function-space ODE with a fixed-step "
                          f"explicit tableau ({', '.join(TABLEAUX)}); {name!r} is not one (adaptive and implicit "
                          "steppers are not supported for the linearized limit)")


def _solver(t: Mapping) -> SolverOptions:
    checks.check_keys(t, SOLVER_KEYS, "solver")
    from mfpde.solvers import STEPPERS

    stepper = checks.string(t.get("stepper", "rk4"), "solver.stepper", sorted(STEPPERS))
    dt = checks.number(t.get("dt", 0.01), "solver.dt", positive=True)
    t_end = checks.number(t.get("t_end", 1.0), "solver.t_end", positive=True)
    if t_end / dt > 1e9:
        raise ConfigError("solver.dt", f"t_end/dt = {t_end / dt:.3g} steps is more than 1e9")
    if "save_every" in t and "save_times" in t:
        raise ConfigError("solver.save_times", "give either save_every or save_times, not both")
    every = checks.number(t["save_every"], "solver.save_every", positive=True) if "save_every" in t else None
    if every is not None and t_end / every > checks.MAX_SAVES:
        raise ConfigError("solver.save_every", f"t_end/save_every = {t_end / every:.3g} save times is more than {checks.MAX_SAVES:.0e}")
    times = None
    if "save_times" in t:
        st = t["save_times"]
        if not isinstance(st, list) or len(st) > 1_000_000:
            raise ConfigError("solver.save_times", "expected a list of times")
        times = tuple(checks.number(x, "solver.save_times") for x in st)
        if any(x < 0 or x > t_end for x in times):
            raise ConfigError("solver.save_times", f"every time must lie in [0, t_end = {t_end}]")
    bound = checks.number(t.get("bound", 1e12), "solver.bound", positive=True)
    # every other key is an option of the chosen stepper, checked against the stepper's own schema
    # (solvers.base.Option): the one definition of its kind and range, also used by the stepper itself
    cls = STEPPERS[stepper]
    adaptive = []
    linearize = checks.get(t, "linearize", "solver", checks.boolean, False)
    if linearize:
        check_linearized_stepper(stepper)
    for k in SOLVER_KEYS:
        if k in ("stepper", "dt", "t_end", "save_every", "save_times", "bound", "linearize") or k not in t:
            continue
        if k not in cls.schema:
            raise ConfigError(f"solver.{k}", f"is not an option of stepper {stepper!r}; it accepts: {', '.join(cls.options)}")
        adaptive.append((k, cls.check_option(k, t[k])))
    return SolverOptions(stepper, dt, t_end, every, times, bound, tuple(adaptive), linearize)


def _output(t: Mapping) -> OutputOptions:
    checks.check_keys(t, OUTPUT_KEYS, "output")
    path = checks.string(t["path"], "output.path") if "path" in t else None
    return OutputOptions(path, checks.get(t, "parameters", "output", checks.string, "all", allowed=("all", "final", "none")))


def _accuracy(t: Mapping) -> AccuracyOptions:
    checks.check_keys(t, ACCURACY_KEYS, "accuracy")
    target = checks.number(t["target"], "accuracy.target", positive=True) if "target" in t else None
    cap = checks.integer(t["max_unknowns"], "accuracy.max_unknowns", 1, checks.MAX_STATE) if "max_unknowns" in t else None
    secs = checks.number(t["max_seconds"], "accuracy.max_seconds", positive=True) if "max_seconds" in t else None
    return AccuracyOptions(checks.get(t, "estimate", "accuracy", checks.boolean, True), target, cap, secs,
                           checks.get(t, "groups", "accuracy", checks.boolean, False))


def _sgd(t: Mapping) -> SgdOptions:
    checks.check_keys(t, SGD_KEYS, "sgd")
    mode = checks.get(t, "mode", "sgd", checks.string, "full", allowed=("full", "online", "minibatch"))
    batch = checks.get(t, "batch", "sgd", checks.integer, 1, hi=checks.MAX_BATCH)
    lr = checks.number(t["lr"], "sgd.lr", positive=True) if "lr" in t else None
    w = t.get("widths", [64, 256, 1024])
    if not isinstance(w, list) or not w:
        raise ConfigError("sgd.widths", "expected a non-empty list of integer widths")
    widths = tuple(checks.integer(x, "sgd.widths", 1, checks.MAX_WIDTH) for x in w)
    return SgdOptions(mode, batch, lr, widths, checks.get(t, "replicas", "sgd", checks.integer, 4, hi=checks.MAX_REPLICAS),
                      checks.get(t, "statistics", "sgd", checks.boolean, True),
                      checks.get(t, "coupling", "sgd", checks.boolean, False),
                      checks.get(t, "sample", "sgd", checks.integer, None, hi=checks.MAX_DATA) if "sample" in t else None)


def from_dict(raw: Mapping, source: str = "<dict>", base_dir: str | Path | None = None) -> Config:
    """Validate a configuration table and build the Problem and options."""
    raw = checks.table(raw, "")
    checks.check_depth(raw, source)
    checks.check_keys(raw, TOP_KEYS, "")
    for req in ("model", "data"):
        if req not in raw:
            raise ConfigError(req, f"section [{req}] is required")
    if "iid" in raw:
        for other in ("rules", "init"):
            extra = raw.get(other)
            if other == "rules" and isinstance(extra, Mapping) and all(str(k).startswith("omega_") for k in extra):
                continue   # initial-noise rules of nonlinear edges go with [iid] too
            if other in raw:
                raise ConfigError(other, "give either [iid] (an i.i.d. initialization, reduced automatically) or [rules] + [init], "
                                  "not both (with [iid], [rules] may hold only omega_l rules)")
    elif "rules" not in raw:
        raise ConfigError("rules", "section [rules] is required (or [iid] for an i.i.d. initialization)")
    name = checks.get(raw, "name", "", checks.string, Path(source).stem if source else "problem")
    seed = checks.get(raw, "seed", "", checks.integer, 0, lo=0, hi=checks.MAX_SEED)
    model = _model(checks.table(raw["model"], "model"))
    notes: tuple[str, ...] = ()
    red_plan = reduction = None
    if "iid" in raw:
        from mfpde.problem import reduction as red_mod
        from mfpde.problem.iid import make_iid

        checks.table(raw["iid"], "iid")
        reasons: list[str] = []
        red_plan = red_mod.plan(raw, model.input_dim, reasons)
        if red_plan is not None:   # SPEC §7: the first layer on (a⁰, β⁰), the data on (z, r), ζ per pair
            raw = red_mod.resolved(raw, red_plan)
            d_true = model.input_dim
            model = replace(model, input_dim=red_plan.k + 1)
            reduction = Reduction(d_true, red_plan.k, red_mod.zeta(red_plan), U=red_plan.U)
            emb, note_list = make_iid(checks.table(raw["iid"], "iid"), model, d=d_true,
                                      coord_rules={red_plan.k: red_mod.radius_coordinate(red_plan)})
        else:
            try:
                emb, note_list = make_iid(checks.table(raw["iid"], "iid"), model)
            except ConfigError as exc:   # e.g. a tensor rule on R^1000: say why the reduction did not apply
                if reasons and model.input_dim >= 3:
                    raise ConfigError(exc.key, f"{str(exc).split(': ', 1)[-1]} (the isotropic-Gaussian reduction of "
                                      f"SPEC §7, which needs no rule on R^d, does not apply: {reasons[0]})") from None
                raise
        notes = tuple(note_list)
        sizes = [r.size for r in emb.rules]
    else:
        plans = _rules(checks.table(raw["rules"], "rules"), model.L)
        sizes = [p.size for p in plans]
    rules_table = checks.table(raw.get("rules", {}), "rules")
    init0 = emb if "iid" in raw else _init(checks.table(raw.get("init", {}), "init"), model)
    edge_rules, edge_notes = _edge_rules(rules_table, model, init0.W)
    notes += tuple(edge_notes)
    R = [1] + [1 if r is None else r.size for r in edge_rules]
    n_state = sizes[0] * model.input_dim + sum(a * b * r for a, b, r in zip(sizes, sizes[1:], R[1:])) + sizes[-1] * model.outputs
    if n_state > checks.MAX_STATE:
        raise ConfigError("rules", f"the state would have {n_state:.3g} entries (> {checks.MAX_STATE:.0e}); use smaller rules")
    if "iid" in raw:
        iid_rules = raw["iid"].get("rules", {}) if isinstance(raw["iid"].get("rules", {}), Mapping) else {}
        layers = [(f"iid.rules.layer_{l}" if f"layer_{l}" in iid_rules else "iid.rule", r.kind, r.size, r.dim)
                  for l, r in enumerate(emb.rules, 1)]
    else:
        rt = checks.table(raw["rules"], "rules")
        keys = [f"layer_{l}" if f"layer_{l}" in rt else "default" for l in range(1, model.L + 1)]
        layers = [(f"rules.{k}", rt[k].get("kind"), p.size, p.dim) for k, p in zip(keys, plans)]
    note = size_note(model, layers, R)
    if note:
        notes += (note,)
    if "iid" not in raw:
        rules = tuple(p.build() for p in plans)
        emb = Embedding(rules, init0.w_1, init0.W, init0.v, init0.b, init0.b_out, edge_rules)
    elif any(r is not None for r in edge_rules):
        emb = Embedding(emb.rules, emb.w_1, emb.W, emb.v, emb.b, emb.b_out, edge_rules)
    sched = _schedules(checks.table(raw.get("schedules", {}), "schedules"), model.L)
    emb, sched = _output_scaling(model, emb, sched)
    dt = checks.table(raw["data"], "data")
    checks.check_keys(dt, ("train", "test"), "data")
    if "train" not in dt:
        raise ConfigError("data.train", "is required")
    d_model = model.input_dim if reduction is None else reduction.d
    for part in ("train", "test"):
        if part in dt:
            table = checks.table(dt[part], f"data.{part}")
            d_law = table.get("d")   # a population law's d must be the model's, before anything d-long is built
            if table.get("kind") in ("teacher", "gaussian_classes") and checks.is_integer(d_law) and d_law != d_model:
                raise ConfigError(f"data.{part}.d", f"must equal model.input_dim = {d_model}, got {d_law}")
            _check_data_size(table, f"data.{part}")

    def data_part(part):
        spec = checks.table(dt[part], f"data.{part}")
        if reduction is not None and part in red_plan.data_radius:
            return red_mod.data_set(red_plan, spec, f"data.{part}", reduction)
        ds = data_mod.make_data(spec, f"data.{part}", seed, base_dir=base_dir)
        return ds if reduction is None else red_mod.reduce_set(ds, reduction)

    train = data_part("train")
    test = data_part("test") if "test" in dt else None
    d_in = model.input_dim if reduction is None else reduction.d   # probes are points of R^d
    if "probes" in raw and isinstance(raw["probes"], Mapping) and _count(raw["probes"].get("size")) * d_in > checks.MAX_DATA:
        raise ConfigError("probes.size", f"{raw['probes']['size']} probe points in dimension {d_in} is "
                          f"more than {checks.MAX_DATA:.0e} numbers")
    probes = data_mod.probes(raw["probes"], d_in, "probes") if "probes" in raw else None
    solver = _solver(checks.table(raw.get("solver", {}), "solver"))
    output = _output(checks.table(raw.get("output", {}), "output"))
    sgd = _sgd(checks.table(raw.get("sgd", {}), "sgd"))
    if sgd.sample is not None and reduction is None:
        raise ConfigError("sgd.sample", "is the d-dimensional training sample of the finite networks of a reduced problem "
                          "(SPEC §7); this configuration is not reduced: its networks train on data.train")
    if sgd.coupling and reduction is not None:
        raise ConfigError("sgd.coupling", "tracer coupling needs the networks' features as nodes of the limit's rules; a "
                          "reduced limit (SPEC §7) has no nodes on R^d: set coupling = false")
    accuracy = _accuracy(checks.table(raw.get("accuracy", {}), "accuracy"))
    problem = Problem(model, emb, sched, train, test, None if probes is None else np.asarray(probes),
                      config=copy.deepcopy(dict(raw)), name=name, reduction=reduction)

    return Config(problem, solver, output, copy.deepcopy(dict(raw)), source, sgd, notes, accuracy,
                  None if base_dir is None else str(base_dir), () if red_plan is None else (red_plan.line,))


def read_text(path: str | Path, what: str = "config") -> str:
    """The text of a user file; a missing or unreadable file is a ConfigError naming it."""
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("", f"{what} file {str(p)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("", f"cannot read {what} file {str(p)!r}: {exc}") from None


def load(path: str | Path) -> Config:
    """Read and validate a TOML configuration file."""
    p = Path(path)
    return loads(read_text(p), source=str(p), base_dir=p.parent)


def loads(text: str, source: str = "<string>", base_dir=None) -> Config:
    return from_dict(checks.parse_toml(text, source), source, base_dir)


def default_text() -> str:
    """The embedded default configuration (two hidden tanh layers, small teacher problem)."""
    return resources.files("mfpde").joinpath("defaults/default.toml").read_text(encoding="utf-8")


def default() -> Config:
    return loads(default_text(), source="default")


to_toml = checks.to_toml   # one home (mfpde/checks.py): the Stepper and Store rooms use it without importing config

"""Finite networks as discretized systems (Finite room): the problem of one network, its seeds and its state.

A finite network of widths n_1..n_L is the discretized system with equal weights 1/n_l at
nodes sampled from each index space's law (SPEC §3: "one code path serves quadrature and
Monte Carlo alike"), plus the i.i.d. noise of middle weights (``noise_std``, SPEC §4).
:func:`network_problem` builds that problem (``fixed_nodes`` gives a layer chosen features),
:func:`initial_network_state` its initial weights (each middle weight's noise drawn from its
:class:`NoiseLaw`), :func:`network_statistics` the per-layer statistics recorded during training.

Randomness: one :class:`numpy.random.SeedSequence` per run, from (config hash, width,
replica) (:func:`run_seed`), so any single run is reproducible alone, bit for bit.
Imports numpy and the Problem and System rooms.
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from mfpde import checks
from mfpde.errors import ConfigError
from mfpde.problem.model import Embedding, Problem
from mfpde.problem.quadrature import Rule, make_rule, user
from mfpde.system.system import System


# ----------------------------------------------------------------------------- index laws
def sample_index_law(rule, rng: np.random.Generator, n: int) -> np.ndarray:
    """n i.i.d. draws [n, k] from the law a rule integrates (read off its kind and params)."""
    kind, p = rule.kind, rule.params
    k = rule.dim

    def vec(name, default):
        v = p.get(name, default)
        v = default if v is None else v
        return np.broadcast_to(np.asarray(v, dtype=float), (k,))

    if kind == "tensor":
        parts = [make_rule(sub, "rules") for sub in p["rules"]]
        return np.concatenate([sample_index_law(r, rng, n) for r in parts], axis=1)
    law = p.get("law", "normal")
    if checks.is_one_of(kind, ("gauss_legendre",)) or (checks.is_one_of(kind, ("sobol", "monte_carlo")) and law == "uniform") \
            or (kind == "smolyak" and p.get("base") == "gauss_legendre"):
        lo, hi = vec("low", 0.0), vec("high", 1.0)
        return lo + (hi - lo) * rng.random((n, k))
    if checks.is_one_of(kind, ("gauss_hermite", "gaussian_trapezoid", "sobol", "monte_carlo", "smolyak")):
        return vec("mean", 0.0) + vec("std", 1.0) * rng.standard_normal((n, k))
    # user rules (and anything else): the empirical law of the nodes
    q0 = rule.size - rule.n_tracers
    w = np.asarray(rule.weights[:q0], dtype=float)
    if np.any(w < 0):
        raise ConfigError("rules", f"cannot sample from a {kind} rule with negative weights")
    idx = rng.choice(q0, size=n, p=w / w.sum())
    return np.array(rule.nodes[idx], dtype=float)


# ----------------------------------------------------------------------------- seeds
def config_entropy(problem: Problem) -> int:
    """A 128-bit integer from the sections of the configuration that define the problem.

    ``[sgd]``, ``[solver]`` and ``[output]`` are left out: adding widths or replicas, or
    saving at other times, keeps the seeds of runs already done.
    """
    from mfpde.checks import to_toml

    if problem.config:
        text = to_toml({k: v for k, v in problem.config.items() if k not in ("sgd", "solver", "output")})
    else:
        text = repr(problem.name)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:16], "little")


def run_seed(problem: Problem, width, replica: int) -> np.random.SeedSequence:
    """The SeedSequence of one run: (config hash, widths, replica).

    ``width`` is one width or the per-layer widths; equal widths (n, …, n) give the key
    (n, replica), different ones (n_1, …, n_L, replica), so that runs differing in any
    layer's width never share random streams.
    """
    w = (int(width),) if isinstance(width, (int, np.integer)) else tuple(int(n) for n in width)
    if len(set(w)) == 1:
        w = w[:1]
    return np.random.SeedSequence(config_entropy(problem), spawn_key=w + (int(replica),))


# ----------------------------------------------------------------------------- networks
@dataclass(frozen=True)
class NoiseLaw:
    """The law of the i.i.d. initial noise ω of one middle weight W_l (SPEC §4–5).

    A network draws each weight's own ω from it, W_l^0(i, j) = m_l(i, j) + noise_std · ω_ij;
    the limit integrates over the same law on ``rule``, its extra one-dimensional index
    (``rules.omega_l``).  ``rule = None`` is the standard normal law: a limit without that
    index (linear edges) only needs the noise's mean and variance.
    """

    rule: Rule | None = None

    def sample(self, rng: np.random.Generator, shape) -> np.ndarray:
        """i.i.d. draws of ω in an array of ``shape``."""
        if self.rule is None:
            return rng.standard_normal(shape)
        return sample_index_law(self.rule, rng, int(np.prod(shape))).reshape(shape)


def network_noise(problem: Problem) -> tuple[NoiseLaw, ...]:
    """The :class:`NoiseLaw` of each middle weight W_2..W_L of ``problem`` (the limit's ω rules)."""
    er = problem.embedding.edge_rules or (None,) * (problem.model.L - 1)
    return tuple(NoiseLaw(r) for r in er)


def network_problem(problem: Problem, widths, rng: np.random.Generator, *, fixed_nodes=None) -> Problem:
    """The problem whose rules are n_l i.i.d. index samples with weights 1/n_l (a finite network).

    ``fixed_nodes`` = {l: nodes} (l = 1..L, as in ``rules.layer_l``; nodes an [n_l, k_l]
    array or a rule, whose nodes are taken) gives hidden layer l exactly those features
    instead of sampled ones, e.g. the last layer of Sirignano–Spiliopoulos's sequential
    limit.  Every layer's draws are still made, so the other layers (and the weights' noise
    drawn after them) are those of the network without ``fixed_nodes`` from the same ``rng``.

    A network has one initial weight per edge: the limit's initial-noise index ω (SPEC §5)
    becomes one node at ω = 0, and :func:`initial_network_state` draws each weight's own
    noise from the :class:`NoiseLaw` of :func:`network_noise`.
    """
    L = problem.model.L
    widths = _widths(widths, L)
    fixed = _fixed_nodes(fixed_nodes, problem, widths)
    rules = []
    for l in range(L):
        nodes = sample_index_law(problem.embedding.rules[l], rng, widths[l])
        rules.append(user(fixed.get(l + 1, nodes), np.full(widths[l], 1.0 / widths[l])))
    emb = problem.embedding
    edge_rules = tuple(None if r is None else user(np.zeros((1, 1)), np.ones(1)) for r in emb.edge_rules)
    return replace(problem, embedding=Embedding(tuple(rules), emb.w_1, emb.W, emb.v, emb.b, emb.b_out, edge_rules))


def _fixed_nodes(fixed_nodes, problem: Problem, widths) -> dict[int, np.ndarray]:
    """{l: nodes [n_l, k_l]} from ``fixed_nodes`` (ConfigError naming ``fixed_nodes``)."""
    if fixed_nodes is None:
        return {}
    if not isinstance(fixed_nodes, Mapping):
        raise ConfigError("fixed_nodes", f"expected a mapping {{layer: nodes}}, got {type(fixed_nodes).__name__}")
    L = len(widths)
    out = {}
    for l, nodes in fixed_nodes.items():
        if isinstance(l, bool) or not isinstance(l, (int, np.integer)) or not 1 <= l <= L:
            raise ConfigError("fixed_nodes", f"layers are numbered 1..{L} (as rules.layer_l), got {l!r}")
        if isinstance(nodes, Rule):
            if nodes.n_tracers:
                raise ConfigError(f"fixed_nodes[{l}]", "a network's features cannot include tracer nodes")
            nodes = nodes.nodes
        x = np.asarray(nodes, dtype=float)
        x = x.reshape(-1, 1) if x.ndim == 1 else x
        k = problem.embedding.rules[l - 1].dim
        if x.shape != (widths[l - 1], k):
            raise ConfigError(f"fixed_nodes[{l}]", f"layer {l} has {widths[l - 1]} neurons with {k}-dimensional "
                              f"features, got nodes of shape {list(x.shape)}")
        out[int(l)] = x
    return out


def _widths(widths, L: int) -> tuple[int, ...]:
    if isinstance(widths, (int, np.integer)) and not isinstance(widths, bool):
        widths = (int(widths),) * L
    if isinstance(widths, (str, bytes)) or not hasattr(widths, "__iter__"):
        raise ConfigError("sgd.widths", f"need {L} positive integer widths (one per hidden layer), got {widths!r}")
    widths = tuple(widths)
    if len(widths) != L or any(isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1 for n in widths):
        raise ConfigError("sgd.widths", f"need {L} positive integer widths (one per hidden layer), got {widths!r}")
    return tuple(int(n) for n in widths)


def initial_network_state(system: System, rng: np.random.Generator, noise=None) -> np.ndarray:
    """y0 of the network: the embedding on the sampled nodes plus i.i.d. middle-weight noise.

    ``noise``: the :class:`NoiseLaw` of each W_2..W_L, :func:`network_noise` of the limit
    problem the network was built from.  Without it the noise is standard normal, which is
    the law only when the limit has no ω index; a network of a limit with one is refused.
    """
    y = system.y0.copy()
    views = system.views(y)
    emb = system.problem.embedding
    if noise is None:
        if any(r is not None for r in emb.edge_rules):
            raise ValueError("the limit of this network has an initial-noise index (rules.omega_l): pass "
                             "noise=network_noise(limit_problem) so that each weight's noise follows its law")
        noise = (NoiseLaw(),) * len(emb.W)
    if len(noise) != len(emb.W):
        raise ValueError(f"need one NoiseLaw per middle weight W_2..W_L ({len(emb.W)}), got {len(noise)}")
    for l, fn in enumerate(emb.W, start=2):
        if fn.noise_std > 0:
            W = views[f"W_{l}"]
            W += fn.noise_std * noise[l - 2].sample(rng, W.shape)
    return y


def network_statistics(system: System, y: np.ndarray, quantiles=None, n_sv: int = 3) -> dict:
    """Weight quantiles per layer; spread of pre-activations across neurons and top singular
    values of each hidden layer's pre-activation matrix on the probe points.

    The quantiles are those of the limit's weight laws (:func:`mfpde.system.laws.parameter_laws`:
    the levels :data:`~mfpde.system.laws.QUANTILES` by default, the neurons' node weights as
    masses, the same inverse CDF), so ``quantiles_<name>`` of a run and ``law_<name>`` of a
    limit result compare level by level."""
    from mfpde.system.laws import QUANTILES, parameter_laws, weighted_quantiles
    from mfpde.system.system import reference_forward

    qs = QUANTILES if quantiles is None else quantiles
    out: dict[str, np.ndarray] = {f"quantiles_{k}": v for k, v in parameter_laws(system, y, qs).items()}
    b_out = system.views(y).get("b_out")
    if b_out is not None:
        out["quantiles_b_out"] = weighted_quantiles(b_out, np.ones(b_out.size), qs)
    probes = system.problem.probes
    if probes is not None and len(probes):
        Hs, _, _ = reference_forward(system, y, np.asarray(probes, float))
        for l, H in enumerate(Hs, start=1):   # H [P, n_l]
            out[f"h_spread_{l}"] = np.asarray(np.mean(np.std(H, axis=1)))
            sv = np.linalg.svd(H / math.sqrt(H.shape[1]), compute_uv=False)
            top = np.full(n_sv, 0.0)
            top[:min(n_sv, len(sv))] = sv[:n_sv]
            out[f"singular_values_{l}"] = top
    return out

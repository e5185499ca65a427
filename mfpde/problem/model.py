"""Problem descriptions (Problem room): the model, the embedding, the schedules, the data.

A :class:`Problem` is plain data (frozen dataclasses) that says everything SPEC §1–§3 needs:
network shape and registries (:class:`Model`), index-space rules and initial functions
(:class:`Embedding`), per-layer rates (:class:`Schedules`), and the train/test data sets and
probe points.  ``mfpde.problem.config`` builds one from TOML; ``mfpde.system`` turns one into arrays
and compiled kernels.  Imports numpy and the Problem-room modules only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mfpde import checks
from mfpde.problem import activations

from mfpde.problem import losses
from mfpde.problem import edges as edge_maps
from mfpde.problem.embedding import InitFn
from mfpde.errors import ConfigError
from mfpde.problem.schedules import Schedule


@dataclass(frozen=True)
class Model:
    """Network shape: L = len(activations) hidden layers, input dimension d, K outputs."""

    input_dim: int
    activations: tuple[str, ...]
    outputs: int = 1
    biases: tuple[bool, ...] | None = None
    output_activation: str = "identity"
    output_bias: bool = False
    loss: str = "squared"
    huber_delta: float = 1.0
    edges: tuple[str, ...] | None = None      # edge maps σ_l of W_2..W_L (mfpde.problem.edges; None: all linear)
    output_scale: float = 1.0                 # α: ŷ = φ_{L+1}(α h_{L+1} + b_{L+1}) (docs/config.md, lazy–rich)
    lazy_scaling: bool = False                # every ξ × 1/α² (Chizat–Bach)

    def __post_init__(self):
        checks.integer(self.input_dim, "model.input_dim")
        checks.integer(self.outputs, "model.outputs")
        if len(self.activations) < 1:
            raise ConfigError("model.hidden", "needs at least one hidden layer (a list of activation names)")
        for i, a in enumerate(self.activations):
            activations.get(a, key=f"model.hidden[{i}]")
        activations.get(self.output_activation, key="model.output_activation")
        if self.biases is None:
            object.__setattr__(self, "biases", (False,) * len(self.activations))
        if len(self.biases) != len(self.activations):
            raise ConfigError("model.biases", f"needs one entry per hidden layer ({len(self.activations)}), got {len(self.biases)}")
        losses.get(self.loss, self.huber_delta if self.loss == "huber" else None, self.outputs)
        if self.edges is None:
            object.__setattr__(self, "edges", ("linear",) * (len(self.activations) - 1))
        if isinstance(self.edges, str) or len(self.edges) != len(self.activations) - 1:
            raise ConfigError("model.edges", f"needs one edge map per middle weight W_2..W_L ({len(self.activations) - 1}), "
                              f"got {self.edges!r}")
        for i, e in enumerate(self.edges):
            edge_maps.code(e, key=f"model.edges[{i}]")

    @property
    def nonlinear_edges(self) -> bool:
        return any(e != "linear" for e in self.edges)

    @property
    def L(self) -> int:
        return len(self.activations)

    @property
    def loss_spec(self) -> losses.Loss:
        return losses.get(self.loss, self.huber_delta if self.loss == "huber" else None, self.outputs)


@dataclass(frozen=True)
class Embedding:
    """Index-space rules (one per hidden layer) and initial functions (SPEC §2)."""

    rules: tuple[Any, ...]                     # mfpde.problem.quadrature.Rule per hidden layer
    w_1: InitFn
    W: tuple[InitFn, ...]                      # W_2..W_L
    v: InitFn
    b: tuple[InitFn | None, ...] = ()          # b_1..b_L (None: zero / no bias)
    b_out: InitFn | None = None
    edge_rules: tuple[Any, ...] = ()           # per W_2..W_L: 1-D rule of the standardized initial noise ω (or None)


@dataclass(frozen=True)
class Schedules:
    """ξ_l(t) for l = 1..L+1 (L+1 = output weights v) and ξ^b_l(t) for the biases."""

    weights: tuple[Schedule, ...]
    biases: tuple[Schedule, ...]

    @classmethod
    def constant(cls, L: int, xi: float = 1.0, xi_b: float | None = None) -> "Schedules":
        return cls((Schedule("constant", xi),) * (L + 1), (Schedule("constant", xi if xi_b is None else xi_b),) * (L + 1))


@dataclass(frozen=True)
class Reduction:
    """SPEC §7: the exact symmetry reduction of the first layer for isotropic Gaussian inputs.

    With x ~ N(0, s² I_d), y = f*(Ux) (U = the first ``k`` coordinate axes) and an isotropic
    Gaussian first-layer law, a data point enters through (z = Ux ∈ R^k, r = |P⊥x|) and a layer-1
    neuron through (a = U w_1 ∈ R^k, β = |P⊥ w_1|); each (neuron, data point) pair carries one more
    variable ζ = ⟨e, P⊥x⟩/r ~ the 1-D marginal of the uniform law on S^{d−k−1} (``zeta``, a 1-D
    rule with nodes ζ_j and weights ρ_j).  The reduced problem's ``model.input_dim`` is k + 1:
    data columns are (z_1 … z_k, r), w_1 columns are (a_1 … a_k, β), and

        h_1(x, i, j) = Σ_c a_ic z_c + β_i r ζ_j + b_1,i,   φ̄_1(x, i) = Σ_j ρ_j φ_1(h_1(x, i, j)),

    φ̄_1 takes the place of φ_1(h_1) in every later layer; the drifts of a, β are
    −ξ_1 E[δ̄ z] and −ξ_1 E[δ̄_ζ r] with δ̄ = G Σ_j ρ_j φ'_1 and δ̄_ζ = G Σ_j ρ_j ζ_j φ'_1
    (G: the back-propagated signal into neuron i at x).  Everything after layer 1 is unchanged.
    """

    d: int                  # the true input dimension
    k: int                  # index dimension (columns of U); model.input_dim = k + 1
    zeta: Any               # mfpde.problem.quadrature.Rule, 1-D, of ζ (dof d − k)
    kind: str = "isotropic_gaussian"
    U: Any = None           # [k, d] orthonormal rows spanning the target's directions (None: the first k axes)

    def reduce(self, X) -> np.ndarray:
        """Inputs x ∈ R^d [M, d] → their reduced coordinates (z = Ux, r = |P⊥x|) [M, k + 1] (exact:
        the reduced limit's output depends on x only through them)."""
        X = np.asarray(X, dtype=float)
        if X.ndim != 2 or X.shape[1] != self.d:
            raise ConfigError("probes", f"inputs must have shape [M, {self.d}], got {list(X.shape)}")
        if self.U is None:
            return np.concatenate([X[:, :self.k], np.linalg.norm(X[:, self.k:], axis=1)[:, None]], axis=1)
        U = np.asarray(self.U, dtype=float)
        out = np.empty((X.shape[0], self.k + 1))
        step = max(1, 1_000_000 // self.d)
        for m0 in range(0, X.shape[0], step):   # blocks: the projection P⊥x is [block, d]
            x = X[m0:m0 + step]
            z = x @ U.T
            out[m0:m0 + step, :self.k] = z
            out[m0:m0 + step, self.k] = np.linalg.norm(x - z @ U, axis=1)
        return out

    def lift(self, Z) -> np.ndarray:
        """Points x = Uᵀz ∈ R^d [M, d] of reduced index coordinates z [M, k] (r = 0): where a
        k-index target f*(Ux) is evaluated."""
        Z = np.asarray(Z, dtype=float).reshape(-1, self.k)
        if self.U is None:
            X = np.zeros((Z.shape[0], self.d))
            X[:, :self.k] = Z
            return X
        return Z @ np.asarray(self.U, dtype=float)

    def to_dict(self) -> dict:
        return {"reduction": self.kind, "reduced_d": self.d, "reduced_k": self.k, "zeta_size": int(self.zeta.size)}


@dataclass(frozen=True)
class Problem:
    model: Model
    embedding: Embedding
    schedules: Schedules
    train: Any                                  # mfpde.problem.data.DataSet
    test: Any = None                            # mfpde.problem.data.DataSet or None
    probes: np.ndarray | None = None            # [P, d]
    config: dict = field(default_factory=dict)  # the resolved configuration (provenance)
    name: str = "problem"
    reduction: Reduction | None = None          # SPEC §7 first-layer reduction (None: none)

    def __post_init__(self):
        L = self.model.L
        if self.reduction is not None and self.model.input_dim != self.reduction.k + 1:
            raise ConfigError("iid.reduction", f"a reduced problem has input_dim = k + 1 = {self.reduction.k + 1}, "
                              f"got {self.model.input_dim}")
        if len(self.embedding.rules) != L:
            raise ConfigError("rules", f"needs one rule per hidden layer ({L}), got {len(self.embedding.rules)}")
        if len(self.embedding.W) != L - 1:
            raise ConfigError("init", f"needs initial functions W_2..W_{L} ({L - 1} of them), got {len(self.embedding.W)}")
        if len(self.schedules.weights) != L + 1 or len(self.schedules.biases) != L + 1:
            raise ConfigError("schedules", f"needs L+1 = {L + 1} weight and bias schedules")
        for ds, key in ((self.train, "data.train"), (self.test, "data.test")):
            if ds is None:
                continue
            if ds.X.shape[1] != self.model.input_dim:
                raise ConfigError(key, f"inputs have dimension {ds.X.shape[1]} but model.input_dim = {self.model.input_dim}")
            if ds.Y.shape[1] != self.model.outputs:
                raise ConfigError(key, f"targets have {ds.Y.shape[1]} columns but model.outputs = {self.model.outputs}")
        if self.probes is not None:   # points of the true input space (R^d of a reduced problem)
            p = np.asarray(self.probes, dtype=float)
            d = self.model.input_dim if self.reduction is None else self.reduction.d
            if p.ndim != 2 or p.shape[1] != d:
                raise ConfigError("probes", f"probe points must have shape [P, {d}], got {list(p.shape)}")
        er = self.embedding.edge_rules
        if er and len(er) != L - 1:
            raise ConfigError("rules", f"needs one initial-weight rule (or none) per middle weight W_2..W_L ({L - 1}), got {len(er)}")
        for l in range(2, L + 1):
            rule = er[l - 2] if er else None
            if rule is not None and (rule.dim != 1 or rule.n_tracers):
                raise ConfigError(f"rules.omega_{l}", f"the initial-weight rule must be one-dimensional without tracers, got dimension {rule.dim}")
            if self.model.edges[l - 2] != "linear" and self.embedding.W[l - 2].noise_std > 0 and rule is None:
                raise ConfigError(f"rules.omega_{l}", f"W_{l} has a nonlinear edge map ({self.model.edges[l - 2]}) and i.i.d. "
                                  f"initial noise (noise_std = {self.embedding.W[l - 2].noise_std}): its drift depends on the "
                                  "noise, which then needs a 1-D rule of its own (SPEC §5, docs/edges.md)")

"""The discretized limit system (System room): arrays on the rules plus one compiled RHS.

``System(problem)`` evaluates the initial functions on the rule nodes, lays the parameters
out in one flat state vector (:class:`mfpde.system.layout.Layout`), and packs everything the
compiled kernels need into ``sysargs`` (a :class:`SysArgs` named tuple).  It exposes the
right-hand side twice: ``rhs`` (the Numba kernels of :mod:`mfpde.system.kernels`) and
``rhs_reference`` (a short numpy transcription of SPEC §2 — the executable spec, also the
baseline of the speed benchmark).  Observables
(train/test loss and error, ŷ on probes) are evaluated by ``observe``.  Imports numpy and
mfpde's Problem and System modules; never the solvers.
"""
from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

from mfpde.errors import ConfigError
from mfpde.problem import activations

from mfpde.system import kernels

from mfpde.problem import schedules
from mfpde.problem import edges as edge_maps
from mfpde.system.layout import Layout
from mfpde.problem.model import Problem


# a float64 array starting on a 64-byte boundary: the kernels' scratch offsets are multiples of
# 8 doubles from there (kernels._round8); kernels.aligned_empty is the one home, compiled code calls it too
aligned_empty = kernels.aligned_empty.py_func


class SysArgs(NamedTuple):
    """Everything the compiled kernels read besides the state: the one argument every kernel and
    stepper passes through (Numba types a NamedTuple like a tuple; read it by field name)."""

    lay: np.ndarray          # integer layout array (mfpde.system.kernels)
    omega: np.ndarray        # rule weights, then initial-weight rule weights
    X: np.ndarray            # data inputs [M, d]
    Y: np.ndarray            # data targets [M, K]
    rho: np.ndarray          # data weights [M]
    sched: np.ndarray        # schedule table (mfpde.problem.schedules.pack)
    sched_flat: np.ndarray
    lossp: np.ndarray        # [loss code, loss parameter]
    work: np.ndarray         # RHS work buffer (kernels.work_size)
    fns: tuple               # user activation functions (activations.user_functions)
    variant: tuple           # compile-time variant (kernels.variant): (par, edges, shallow, fuse0, acts, red)


def _readonly(a: np.ndarray) -> np.ndarray:
    v = a.view()
    v.flags.writeable = False
    return v


class System:
    """Discretized mean-field system of ``problem`` (SPEC §3): state, weights, kernels."""

    def __init__(self, problem: Problem, *, parallel: bool | None = None, fuse: bool | None = None):
        """``parallel`` / ``fuse`` force the kernels' compile-time variant (default: chosen from the
        problem's size, :func:`mfpde.system.kernels.variant`); results agree to rounding.

        A problem with ``problem.reduction`` (SPEC §7, :class:`mfpde.problem.model.Reduction`) gets the
        reduced first layer: data columns (z, r), w_1 columns (a, β), and the ζ rule summed inside φ̄_1
        (``fuse`` does not apply to it; ``rhs_reference`` transcribes it too)."""
        self.problem = problem
        m = problem.model
        emb = problem.embedding
        self.rules = emb.rules
        self.nodes = [np.ascontiguousarray(r.nodes, dtype=float) for r in emb.rules]
        self.weights = [np.ascontiguousarray(r.weights, dtype=float) for r in emb.rules]
        # initial-weight index of W_2..W_L (nonlinear edges, SPEC §5): nodes ω_r and weights ρ_r
        er = emb.edge_rules or (None,) * (m.L - 1)
        self.edge_nodes = [np.zeros(1) if r is None else np.asarray(r.nodes, dtype=float)[:, 0] for r in er]
        self.edge_weights = [np.ones(1) if r is None else np.asarray(r.weights, dtype=float) for r in er]
        self.layout = Layout.build(m.input_dim, m.outputs, [len(w) for w in self.weights], m.biases, m.output_bias,
                                   [1] + [len(w) for w in self.edge_weights], reduced=problem.reduction is not None)
        self.act_codes = [activations.get(a).code for a in m.activations]
        self.out_code = activations.get(m.output_activation).code
        self.loss = m.loss_spec
        self.edge_codes = [0] + [edge_maps.code(e) for e in m.edges]
        self.lay = self.layout.lay_array(self.act_codes, self.out_code, self.loss.code, self.edge_codes)
        self.omega = np.ascontiguousarray(np.concatenate(self.weights + [np.ones(1)] + self.edge_weights))
        # SPEC §7 reduced first layer: layer 1's edge field = kernels.RED_EDGE, its R field = J and
        # its off_ρ field point at the ζ rule, appended to ω as ρ_1..ρ_J then ζ_1..ζ_J
        self.reduction = problem.reduction
        self._probe_inputs = None   # the probes in the kernels' coordinates (observe)
        if self.reduction is not None:
            self.zeta_nodes, self.zeta_weights = _zeta_rule(self.reduction, problem)
            J = self.zeta_nodes.shape[0]
            self.lay[kernels.HEADER + 6:kernels.HEADER + 9] = (kernels.RED_EDGE, J, self.omega.shape[0])
            self.omega = np.ascontiguousarray(np.concatenate([self.omega, self.zeta_weights, self.zeta_nodes]))
        self.sched, self.sched_flat = schedules.pack(list(problem.schedules.weights) + list(problem.schedules.biases))
        self.lossp = np.array([float(self.loss.code), self.loss.param])
        self.y0 = self.initial_state()
        self._evals: dict[int, tuple] = {}
        # one variant per system (chosen on the training data), shared by every data set it evaluates
        self.variant = kernels.variant(self.lay, np.asarray(problem.train.X).shape[0], parallel=parallel, fuse=fuse)
        # chunks of the parallel reductions = the thread count the work buffer is sized for; a forced
        # parallel variant uses at least 2, so that its chunked code runs even on one thread (tests)
        self._threads = max(numba.config.NUMBA_NUM_THREADS, 2 if parallel else 1)
        self.sysargs = self.make_args(problem.train.X, problem.train.Y, problem.train.weights)

    # ------------------------------------------------------------------ construction
    def initial_state(self) -> np.ndarray:
        """The flat initial state: initial functions evaluated on the nodes."""
        m = self.problem.model
        emb = self.problem.embedding
        L = m.L
        arrays = {"w_1": emb.w_1.node_values(self.nodes[0], m.input_dim, "init.w_1")}
        for l in range(2, L + 1):
            W0 = emb.W[l - 2].edge_values(self.nodes[l - 2], self.nodes[l - 1], f"init.W_{l}")
            if self.layout.omega_sizes[l - 1] > 1:   # W^0(ω, c, c') = W^0(c, c') + noise_std · ω
                W0 = W0[None] + emb.W[l - 2].noise_std * self.edge_nodes[l - 2][:, None, None]
            elif emb.W[l - 2].noise_std > 0 and self.edge_nodes[l - 2][0] != 0.0:
                W0 = W0 + emb.W[l - 2].noise_std * self.edge_nodes[l - 2][0]
            arrays[f"W_{l}"] = W0
        for l in range(1, L + 1):
            if m.biases[l - 1]:
                fn = emb.b[l - 1] if len(emb.b) >= l else None
                arrays[f"b_{l}"] = np.zeros(len(self.nodes[l - 1])) if fn is None else fn.node_values(self.nodes[l - 1], None, f"init.b_{l}")
        arrays["v"] = emb.v.node_values(self.nodes[L - 1], m.outputs, "init.v")
        if m.output_bias:
            fn = emb.b_out
            arrays["b_out"] = np.zeros(m.outputs) if fn is None else fn.node_values(np.zeros((1, 1)), m.outputs, "init.b_out")[0]
        return self.layout.pack(arrays)

    def make_args(self, X, Y, rho) -> SysArgs:
        """The kernel arguments for data (X [M, d], Y [M, K], ρ [M])."""
        # read-only views: the kernels never write the data, and one Numba type for every data set
        # (writable and read-only arrays are different types: each would compile the kernels again)
        X, Y, rho = (_readonly(np.ascontiguousarray(a, dtype=float)) for a in (X, Y, rho))
        work = aligned_empty(kernels.work_size(self.lay, X.shape[0], self.variant, self._threads))
        return SysArgs(self.lay, self.omega, X, Y, rho, self.sched, self.sched_flat, self.lossp, work,
                       activations.user_functions(), self.variant)

    @property
    def size(self) -> int:
        return self.layout.size

    def views(self, y: np.ndarray) -> dict[str, np.ndarray]:
        return self.layout.views(y)

    # ------------------------------------------------------------------ right-hand sides
    def rhs(self, t: float, y: np.ndarray, dy: np.ndarray | None = None) -> np.ndarray:
        """Compiled drift dy/dt at (t, y) on the training data."""
        if dy is None:
            dy = np.empty_like(y)
        kernels.rhs_py(float(t), y, dy, self.sysargs)
        return dy

    def jvp(self, t: float, y: np.ndarray, u: np.ndarray, method: str = "analytic") -> np.ndarray:
        """J(t, y)·u, J = ∂(drift)/∂y: ``"analytic"`` (:mod:`mfpde.system.jvp`; finite differences where
        it does not apply, see ``mfpde.system.jvp.supported``), ``"fd"`` (forward) or ``"fd_central"``."""
        from mfpde.system import jvp as _jvp

        if method == "analytic" and _jvp.supported(self)[0]:
            if getattr(self, "_jwork", None) is None:
                self._jwork = np.empty(_jvp.work_size(self.lay, self.sysargs.X.shape[0]))
            out = np.empty_like(y)
            _jvp.jvp(float(t), y, np.ascontiguousarray(u, dtype=float), out, self.sysargs, self._jwork)
            return out
        return _jvp.fd_jvp(self, t, y, u, central=(method == "fd_central"))

    def rhs_reference(self, t: float, y: np.ndarray) -> np.ndarray:
        """Numpy transcription of SPEC §2 on the rule (the executable spec)."""
        return reference_drift(self, t, y, self.problem.train.X, self.problem.train.Y, self.problem.train.weights)

    # ------------------------------------------------------------------ observables
    def evaluate(self, y: np.ndarray, X, Y, rho) -> tuple[float, float, np.ndarray]:
        """(loss, classification error, ŷ [M, K]) of state y on weighted data."""
        # cached per data set: the same X with other targets or weights (predict on training inputs)
        # is another entry, never the cached one (which would report that set's loss as the train loss)
        key = (id(X), id(Y), id(rho))
        args = self._evals.get(key)
        if args is None or args[0] is not X or args[1] is not Y or args[2] is not rho:
            if len(self._evals) > 16:
                self._evals.clear()
            args = (X, Y, rho, self.make_args(X, Y, rho))
            self._evals[key] = args
        a = args[3]
        yhat = np.empty((a.X.shape[0], self.layout.outputs))
        loss, err = kernels.evaluate(y, a, yhat)
        return float(loss), float(err), yhat

    def predict(self, y: np.ndarray, X) -> np.ndarray:
        """ŷ(x) for the rows of X, in the kernels' input coordinates: points of R^d, or for a reduced
        problem (SPEC §7) their (z, r) form (``problem.reduction.reduce``; :meth:`observe` does it for
        the probes)."""
        X = np.ascontiguousarray(X, dtype=float)
        Y = np.zeros((X.shape[0], self.layout.outputs))
        if self.loss.name == "logistic":
            Y += 1.0
        if self.loss.name == "softmax_ce":
            Y[:, 0] = 1.0
        return self.evaluate(y, X, Y, np.full(X.shape[0], 1.0 / X.shape[0]))[2]

    def observe(self, y: np.ndarray) -> dict[str, np.ndarray | float]:
        """Every scalar/probe observable of SPEC §2 at state y."""
        p = self.problem
        out: dict[str, np.ndarray | float] = {}
        out["loss_train"], out["error_train"], _ = self.evaluate(y, p.train.X, p.train.Y, p.train.weights)
        if p.test is not None:
            out["loss_test"], out["error_test"], _ = self.evaluate(y, p.test.X, p.test.Y, p.test.weights)
        if p.probes is not None and len(p.probes):
            if self._probe_inputs is None:   # the probes are points of R^d; reduced once
                self._probe_inputs = p.probes if self.reduction is None else self.reduction.reduce(p.probes)
            out["yhat_probe"] = self.predict(y, self._probe_inputs)
        return out


def _zeta_rule(red, problem: Problem) -> tuple[np.ndarray, np.ndarray]:
    """(ζ_j [J], ρ_j [J]) of a reduction, checked: a 1-D rule on [−1, 1]; data radii r ≥ 0."""
    nodes = np.asarray(red.zeta.nodes, dtype=float)
    weights = np.asarray(red.zeta.weights, dtype=float)
    if nodes.ndim != 2 or nodes.shape[1] != 1 or weights.shape != (nodes.shape[0],) or nodes.shape[0] < 1:
        raise ConfigError("iid.reduction", f"the ζ rule must be one-dimensional, got nodes of shape {list(nodes.shape)}")
    if not (np.all(np.isfinite(nodes)) and np.all(np.abs(nodes) <= 1.0) and np.all(np.isfinite(weights))):
        raise ConfigError("iid.reduction", "the ζ rule's nodes must lie in [-1, 1] and its weights be finite")
    k = red.k
    for ds, key in ((problem.train, "data.train"), (problem.test, "data.test")):
        if ds is not None and np.any(np.asarray(ds.X)[:, k] < 0):
            raise ConfigError(key, f"a reduced problem's input column {k} is the radius r = |P⊥x|; got a negative value")
    return np.ascontiguousarray(nodes[:, 0]), np.ascontiguousarray(weights)


def _edge_terms(system: System, V: dict, l: int, a_prev: np.ndarray):
    """(W [R, Q_{l−1}, Q_l], ρ [R], σ, ∂_W σ, ∂_a σ each [M, R, Q_{l−1}, Q_l]) of middle layer l."""
    W = V[f"W_{l}"]
    if W.ndim == 2:
        W = W[None]
    rho = system.edge_weights[l - 2]
    return (W, rho) + edge_maps.numpy_edge(system.problem.model.edges[l - 2], W[None], a_prev[:, None, :, None])


def reference_forward(system: System, y: np.ndarray, X: np.ndarray):
    """Numpy forward pass: lists of pre-activations H_l and activations, and H_out (a reduced first
    layer: H_1 = h_1 [M, Q1, J] at every ζ node and A_1 = Σ_j ρ_j φ_1(h_1), SPEC §7)."""
    m = system.problem.model
    V = system.views(y)
    Hs, As = [], []
    a_prev = None
    for l in range(1, m.L + 1):
        if l == 1 and system.reduction is not None:
            # SPEC §7: h_1(x, i, j) = ⟨a_i, z⟩ + β_i r ζ_j + b_1,i [M, Q1, J]; φ̄_1 = Σ_j ρ_j φ_1(h_1)
            k = system.reduction.k
            w1 = V["w_1"]
            h = (X[:, :k] @ w1[:, :k].T)[:, :, None] + (X[:, k:] * w1[:, k])[:, :, None] * system.zeta_nodes
            if m.biases[0]:
                h = h + V["b_1"][None, :, None]
            a_prev = activations.get(m.activations[0]).pair(h)[0] @ system.zeta_weights
            Hs.append(h)
            As.append(a_prev)
            continue
        if l == 1:
            h = X @ V["w_1"].T
        elif m.edges[l - 2] != "linear" or V[f"W_{l}"].ndim == 3:
            # h_l = E_ω E_{C_{l−1}} σ_l(W_l(ω, C_{l−1}, c_l), φ(h_{l−1}(C_{l−1})))
            W, rho, sig, _, _ = _edge_terms(system, V, l, a_prev)
            h = np.einsum("r,q,mrqk->mk", rho, system.weights[l - 2], sig)
        else:
            h = (a_prev * system.weights[l - 2]) @ V[f"W_{l}"]
        if m.biases[l - 1]:
            h = h + V[f"b_{l}"]
        a_prev, _ = activations.get(m.activations[l - 1]).pair(h)
        Hs.append(h)
        As.append(a_prev)
    hout = (a_prev * system.weights[-1]) @ V["v"]
    if m.output_bias:
        hout = hout + V["b_out"]
    return Hs, As, hout


def reference_drift(system: System, t: float, y: np.ndarray, X, Y, rho) -> np.ndarray:
    """SPEC §2 line by line in numpy: forward, backward (δ_l), drift of every parameter."""
    m = system.problem.model
    L = m.L
    V = system.views(y)
    sw, sb = system.problem.schedules.weights, system.problem.schedules.biases
    Hs, As, hout = reference_forward(system, y, X)
    yhat, dphi_out = activations.get(m.output_activation).pair(hout)
    # ∂_2 loss in closed form (the FD gradient test checks these independently)
    name, delta = system.loss.name, system.loss.param
    r = yhat - Y
    if name == "squared":
        g = r
    elif name == "mse":
        g = 2 * r
    elif name == "huber":
        g = np.clip(r, -delta, delta)
    elif name == "logistic":
        g = -Y / (1.0 + np.exp(Y * yhat))
    else:
        p = np.exp(yhat - np.logaddexp.reduce(yhat, axis=1, keepdims=True))
        g = p * Y.sum(axis=1, keepdims=True) - Y
    d_out = g * dphi_out                                           # δ_{L+1}(z)
    dy = {}
    dy["v"] = -sw[L](t) * (As[L - 1].T @ (rho[:, None] * d_out))  # −ξ E_Z[δ_{L+1} φ_L(h_L)]
    if m.output_bias:
        dy["b_out"] = -sb[L](t) * (rho @ d_out)
    red = system.reduction

    def times_dphi(l, back):
        # δ_l = back · φ'_l(h_l); a reduced first layer keeps G = back (its φ' carries ζ, below)
        if l == 1 and red is not None:
            return back
        return back * activations.get(m.activations[l - 1]).pair(Hs[l - 1])[1]

    delta_l = times_dphi(L, d_out @ V["v"].T)   # δ_L
    for l in range(L, 0, -1):
        general = l > 1 and (m.edges[l - 2] != "linear" or V[f"W_{l}"].ndim == 3)
        if l == 1 and red is not None:
            # SPEC §7: δ_1(x, i, j) = G φ_1'(h_1(x, i, j)); ȧ = −ξ_1 E[δ_1 z], β̇ = −ξ_1 E[δ_1 r ζ]
            k = red.k
            d1 = delta_l[:, :, None] * activations.get(m.activations[0]).pair(Hs[0])[1]   # [M, Q1, J]
            dbar = d1 @ system.zeta_weights                                              # E_ζ δ_1
            dzeta = d1 @ (system.zeta_weights * system.zeta_nodes)                       # E_ζ δ_1 ζ
            dw = np.empty_like(V["w_1"])
            dw[:, :k] = -sw[0](t) * ((rho[:, None] * dbar).T @ X[:, :k])
            dw[:, k] = -sw[0](t) * ((rho * X[:, k]) @ dzeta)
            dy["w_1"] = dw
            delta_l = dbar   # the bias drift below: −ξ^b_1 E[δ_1]
        elif l == 1:
            dy["w_1"] = -sw[0](t) * ((rho[:, None] * delta_l).T @ X)
        elif general:
            # ∂_t W_l(ω, c, c') = −ξ_l E_Z[δ_l(Z, c') ∂_W σ_l(W_l(ω, c, c'), φ(h_{l−1}(X, c)))]
            W, rw, _, dsw, dsa = _edge_terms(system, V, l, As[l - 2])
            dW = -sw[l - 1](t) * np.einsum("m,mk,mrqk->rqk", rho, delta_l, dsw)
            dy[f"W_{l}"] = dW.reshape(V[f"W_{l}"].shape)
        else:
            dy[f"W_{l}"] = -sw[l - 1](t) * (As[l - 2].T @ (rho[:, None] * delta_l))
        if m.biases[l - 1]:
            dy[f"b_{l}"] = -sb[l - 1](t) * (rho @ delta_l)
        if general:   # δ_{l−1} = E_ω E_{C_l}[δ_l ∂_a σ_l(W_l(ω, c_{l−1}, C_l), φ_{l−1})] φ'_{l−1}
            back = np.einsum("r,k,mk,mrqk->mq", rw, system.weights[l - 1], delta_l, dsa)
            delta_l = times_dphi(l - 1, back)
        elif l > 1:   # δ_{l−1} = E_{C_l}[δ_l W_l(c_{l−1}, C_l)] φ'_{l−1}
            delta_l = times_dphi(l - 1, (delta_l * system.weights[l - 1]) @ V[f"W_{l}"].T)
    return system.layout.pack(dy)

"""Compiled forward, backward and drift of the discretized limit system (System room).

These kernels are the one implementation of SPEC §2–§3 on arrays: they serve the limit
solver (quadrature weights ω at rule nodes) and finite networks (ω = 1/n at sampled nodes)
alike.  Dense products go through BLAS (``np.dot`` with an output buffer); the elementwise
work (bias, φ, φ', weights, schedule factors, bias drifts) is fused into one pass per layer.

Flat state ``y`` (layout in :mod:`mfpde.system.layout`): w1[Q1, d], b1[Q1]?, W2[Q1, Q2], b2[Q2]?, …,
v[QL, K], b_out[K]?.  Integer layout array ``lay``: header ``[L, d, K, loss, out_act,
out_bias, off_v, off_bout]`` then per hidden layer ``[Q, act, bias, off_W, off_b, off_ω, edge,
R, off_ρ]``: ``edge`` is the edge-map code of :mod:`mfpde.problem.edges` (0 = linear) and R the size of
the initial-weight rule whose weights ρ sit at ``omega[off_ρ:off_ρ + R]`` (``docs/edges.md``);
a layer with a nonlinear edge or R > 1 takes the elementwise passes :func:`_edge_forward` and
:func:`_edge_back` instead of the BLAS products.  Layer 1's edge field ``RED_EDGE`` marks SPEC §7's
reduced first layer: its R is then the size J of the ζ rule, whose weights ρ_j sit at
``omega[off_ρ:off_ρ + J]`` and nodes ζ_j right after (:func:`_red_forward_rows`).
Work buffer per hidden layer: H, A = φ(H), P = φ'(H), S = A·ω, G (δ), each [M, Q] (none for
the fused one-hidden-layer path); then H_out, G_out, Ŷ, each [M, K]; then a scratch region
(transposes, per-thread accumulators and row buffers, :func:`work_size`), which starts on a
64-byte boundary of the aligned buffer, as each per-thread chunk does (:func:`_round8`).  After
``backward_drift`` the buffers H, P are overwritten; the fused first layer never writes its H
(its pre-activations live in a cache-sized scratch).  A reduced first layer keeps
A = Σ_j ρ_j φ(h), P = Σ_j ρ_j φ'(h) and, in its H, Σ_j ρ_j ζ_j φ'(h).

Compile-time variants.  ``sysargs`` (:class:`mfpde.system.system.SysArgs`: lay, omega, X, Y,
rho, sched, sched_flat, lossp, work, fns, variant) is the one tuple every stepper passes
through.  Its last field, ``variant`` (:func:`variant`), is part of its Numba *type*: whether
the passes may run in parallel, whether some layer has general edges, whether the fused
one-hidden-layer path applies, whether the first layer is fused, and which activations occur.
Numba compiles only the code a variant reaches (:func:`_static_switch`), so a small tanh
problem never compiles the parallel, edge or other-activation passes: the default solve
compiles in ~18 s instead of ~70 s (docs/benchmarks.md §7).  A problem of another variant
compiles once more (cached per variant).  Every variant computes the same drift to rounding
(tests/system/test_system.py).

Compile-time structure.  Each Numba library re-optimizes and re-emits the code of every
library it links, so a chain of non-inlined wrappers multiplies the compile time: the
entry points :func:`rhs` (for steppers) and the evaluation reuse one body per variant, and
the passes below are either inlined or small shared leaves (the row passes, the activation
block kernels).  Imports numpy, numba, mfpde._jit, mfpde.problem.activations,
mfpde.problem.edges, mfpde.problem.losses, mfpde.problem.schedules only.
"""
from __future__ import annotations

import numpy as np
from numba import types
from numba.extending import overload

from mfpde._jit import CACHE, FASTMATH, PARALLEL_MIN, njit, prange
from mfpde.problem import activations as act
from mfpde.problem.activations import USER_CODE0, user_pair
from mfpde.problem.edges import edge as edge_map
from mfpde.problem.losses import loss_grad, misclassified
from mfpde.problem.schedules import evaluate as schedule_at

HEADER = 8
PER = 9


@njit(inline="always")
def _layer(lay, i):
    """(Q, activation code, has bias, offset of W, offset of b, offset of ω) of hidden layer i."""
    base = HEADER + PER * i
    return lay[base], lay[base + 1], lay[base + 2], lay[base + 3], lay[base + 4], lay[base + 5]


@njit(inline="always")
def _edge(lay, i):
    """(edge-map code, R, offset of the initial-weight rule weights ρ in ω) of hidden layer i."""
    base = HEADER + PER * i
    return lay[base + 6], lay[base + 7], lay[base + 8]


@njit(inline="always")
def _general_edge(lay, i):
    """True when hidden layer i > 0 needs the elementwise edge path (nonlinear map or R > 1)."""
    base = HEADER + PER * i
    return i > 0 and (lay[base + 6] != 0 or lay[base + 7] > 1)


@njit(inline="always")
def _edge_forward_row(m, H, A, w, W, rho, code):
    R, Qp, Q = W.shape
    for k in range(Q):
        H[m, k] = 0.0
    for r in range(R):
        for q in range(Qp):
            a = A[m, q]
            c = rho[r] * w[q]
            for k in range(Q):
                s, _, _ = edge_map(code, W[r, q, k], a)
                H[m, k] += c * s


@njit
def _edge_back_both(q, P, Hd, A, W, rho, dW, G, code):
    """Column q (a node of layer l−1) of the fused drift/backward pass, one ∂σ per term:
    dW[r, q, q'] = Σ_m P[m, q'] ∂_W σ(W[r, q, q'], A[m, q]) and
    G[m, q] = Σ_r ρ_r Σ_q' Hd[m, q'] ∂_a σ(W[r, q, q'], A[m, q]).

    The three column kernels carry no run-time flags inside their loops: with a flag tested
    in the loop LLVM did not vectorize them (measured 4–20× slower)."""
    M, Q = P.shape
    for m in range(M):
        G[m, q] = 0.0
    for r in range(W.shape[0]):
        row = dW[r, q]
        wr = W[r, q]
        for k in range(Q):
            row[k] = 0.0
        for m in range(M):
            a = A[m, q]
            p = P[m]
            h = Hd[m]
            acc = 0.0
            for k in range(Q):
                _, dw, da = edge_map(code, wr[k], a)
                row[k] += p[k] * dw
                acc += h[k] * da
            G[m, q] += rho[r] * acc


@njit
def _edge_back_drift(q, P, A, W, dW, code):
    """Column q of the drift alone: dW[r, q, q'] = Σ_m P[m, q'] ∂_W σ(W[r, q, q'], A[m, q])."""
    M, Q = P.shape
    for r in range(W.shape[0]):
        row = dW[r, q]
        wr = W[r, q]
        for k in range(Q):
            row[k] = 0.0
        for m in range(M):
            a = A[m, q]
            p = P[m]
            for k in range(Q):
                _, dw, _ = edge_map(code, wr[k], a)
                row[k] += p[k] * dw


@njit
def _edge_back_only(q, Hd, A, W, rho, G, code):
    """Column q of the backward product alone: G[m, q] = Σ_r ρ_r Σ_q' Hd[m, q'] ∂_a σ(W[r, q, q'], A[m, q])."""
    M, Q = Hd.shape
    for m in range(M):
        G[m, q] = 0.0
    for r in range(W.shape[0]):
        wr = W[r, q]
        for m in range(M):
            a = A[m, q]
            h = Hd[m]
            acc = 0.0
            for k in range(Q):
                _, _, da = edge_map(code, wr[k], a)
                acc += h[k] * da
            G[m, q] += rho[r] * acc


@njit(inline="always")
def _edge_back_column(q, P, Hd, A, W, rho, dW, G, code, drift, back):
    if drift and back:
        _edge_back_both(q, P, Hd, A, W, rho, dW, G, code)
    elif drift:
        _edge_back_drift(q, P, A, W, dW, code)
    elif back:
        _edge_back_only(q, Hd, A, W, rho, G, code)


@njit(parallel=True)
def _edge_forward_parallel(H, A, w, W, rho, code):
    for m in prange(A.shape[0]):
        _edge_forward_row(m, H, A, w, W, rho, code)


@njit(parallel=True)
def _edge_back_parallel(P, Hd, A, W, rho, dW, G, code, drift, back):
    for q in prange(W.shape[1]):
        _edge_back_column(q, P, Hd, A, W, rho, dW, G, code, drift, back)


@njit
def _edge_forward(H, A, w, W, rho, code):
    """Forward pass of a general-edge layer (SPEC §5, nonlinear edges; docs/edges.md):
    H[m, q'] = Σ_r ρ_r Σ_q ω_q σ(W[r, q, q'], A[m, q]), A = φ(h_{l−1}) [M, Q_{l−1}],
    W [R, Q_{l−1}, Q_l]; rows in parallel when the pass is large."""
    if A.shape[0] * W.size >= PARALLEL_MIN:
        _edge_forward_parallel(H, A, w, W, rho, code)
    else:
        for m in range(A.shape[0]):
            _edge_forward_row(m, H, A, w, W, rho, code)


@njit
def _edge_back(P, Hd, A, W, rho, dW, G, code, drift, back):
    """Drift (P = scale·δ_l) and backward product (Hd = δ_l·ω_l) of a general-edge layer in one
    pass over the terms (see :func:`_edge_back_column`); columns in parallel when large."""
    if A.shape[0] * W.size >= PARALLEL_MIN:
        _edge_back_parallel(P, Hd, A, W, rho, dW, G, code, drift, back)
    else:
        for q in range(W.shape[1]):
            _edge_back_column(q, P, Hd, A, W, rho, dW, G, code, drift, back)


# ------------------------------------------------------------------ compile-time variants
# The kernels specialize at compile time on ``SysArgs.variant`` = (par, edges, shallow, fuse0, acts, red),
# each ``None`` (off) or ``True`` (on): Numba compiles only the code a problem's variant reaches,
# so a small problem with linear edges never compiles the parallel or general-edge passes and a
# first solve compiles in seconds (issue 15).  The flags are chosen by :func:`variant`.
PAR, EDGES, SHALLOW, FUSE0, ACTS, RED = range(6)
RED_EDGE = -1   # layer 1's edge field in ``lay``: the reduced first layer of SPEC §7 (see :func:`_red_forward_rows`)
N_BUILTIN = 7   # activation codes 0..6 (mfpde.problem.activations); flag 7 = any user activation
ROW_GROUP = 2048   # elements per call of the activation kernels (16 KB per array: L1-resident)
SHALLOW_ROWS = 4   # data rows per block of the fused L = 1 pass with K = 1 (their drift terms added in one sweep)
FUSE_D = 16   # first layers with d ≤ FUSE_D compute X·w₁ᵀ in their elementwise pass (no GEMM, no H array)


def variant(lay, M: int, parallel: bool | None = None, fuse: bool | None = None) -> tuple:
    """The compile-time variant of a system with layout ``lay`` on ``M`` data points.

    * par: ``None`` (serial kernels only) or the size from which elementwise passes run in
      parallel (prange): ``PARALLEL_MIN``, or 1 when ``parallel=True`` forces it (tests);
    * edges: some layer has a nonlinear edge map or an initial-weight rule (docs/edges.md);
    * shallow: L = 1 and d ≤ FUSE_D: the whole RHS is one fused pass over the data rows
      (:func:`_rhs_shallow`), nothing [M, Q]-sized is stored;
    * fuse0: d ≤ FUSE_D: the first hidden layer's X·w₁ᵀ, bias, φ, φ' and its drift are fused;
    * acts: one flag per built-in activation code (and one for user activations): identity and
      tanh only when the model uses no other built-in, else all of them (two sets, so that few
      variants exist; each built-in has its own vectorized block kernel);
    * red: the first layer is SPEC §7's reduced layer (layer 1's edge field is ``RED_EDGE``):
      its forward and drift are the row passes :func:`_red_forward` / :func:`_red_drift` (fused by
      construction: fuse0 and shallow are off, ``fuse`` is ignored; an L = 1 reduced system takes
      the deep path).

    ``parallel`` / ``fuse`` force the first and the last two flags (tests compare the variants).
    """
    L = int(lay[0])
    d = int(lay[1])
    qmax = max(int(lay[HEADER + PER * i]) for i in range(L))
    if parallel is None:
        par = PARALLEL_MIN if M * qmax >= PARALLEL_MIN else None
    else:
        par = 1 if parallel else None
    edges = any(int(lay[HEADER + PER * i + 6]) != 0 or int(lay[HEADER + PER * i + 7]) > 1 for i in range(1, L))
    red = int(lay[HEADER + 6]) == RED_EDGE
    # a reduced first layer has one fused row pass of its own: fuse0 (and so shallow) does not apply
    f = (d <= FUSE_D if fuse is None else bool(fuse)) and not red
    shallow = L == 1 and f
    codes = {int(lay[HEADER + PER * i + 1]) for i in range(L)} | {int(lay[4])}
    # two activation sets: identity and tanh only (the common case: the default and most
    # configurations compile just those), else every built-in (one compile serves every model)
    builtin = {c for c in codes if c < N_BUILTIN}
    common = builtin <= {act.IDENTITY, act.TANH}
    acts = tuple(True if (c in (act.IDENTITY, act.TANH) or not common) else None for c in range(N_BUILTIN)) + \
        (True if any(c >= N_BUILTIN for c in codes) else None,)
    return (par,) + tuple(True if x else None for x in (edges, shallow, f)) + (acts, True if red else None)


# the project's Numba flags (mfpde._jit.njit) for overload implementations
JIT_OPTIONS = {"cache": CACHE, "fastmath": set(FASTMATH), "error_model": "numpy", "nogil": True}


def _static_switch(on, off=None):
    """``sw(flag, *args)`` compiles to ``on(*args)`` when ``flag`` is typed ``True``, and to the
    constant ``off`` (never a call) when it is ``None``: ``on`` is then never compiled.  Callers
    branch on ``flag is not None`` too, so the ``None`` case is dead code."""
    def stub(flag, *args):  # pragma: no cover - replaced by the overload inside kernels
        raise NotImplementedError

    @overload(stub, jit_options={"cache": CACHE})
    def _impl(flag, *args):
        if isinstance(flag, types.NoneType):
            def impl(flag, *args):
                return off
            return impl

        def impl(flag, *args):
            return on(*args)
        return impl
    return stub


def _par_min(par):  # pragma: no cover - compiled only
    raise NotImplementedError


@overload(_par_min, jit_options={"cache": CACHE})
def _par_min_impl(par):
    # the size from which passes run in parallel; never for a serial variant
    if isinstance(par, types.NoneType):
        return lambda par: np.iinfo(np.int64).max
    return lambda par: par


def _variant_flag(sysargs_type, i: int) -> bool:
    """Flag ``i`` of the variant in a SysArgs Numba type (at typing time, in overloads)."""
    vt = sysargs_type.types[sysargs_type.fields.index("variant")]
    return not isinstance(vt.types[i], types.NoneType)


_edge_forward_sw = _static_switch(_edge_forward)
_edge_back_sw = _static_switch(_edge_back)


def _pack_fns(fns):  # pragma: no cover - replaced by the overload inside kernels
    raise NotImplementedError


def _unpack_fns(f):  # pragma: no cover - replaced by the overload inside kernels
    raise NotImplementedError


@overload(_pack_fns, jit_options={"cache": CACHE})
def _pack_fns_impl(fns):
    # an empty tuple cannot cross into a prange body (Numba's gufunc arguments): pass 0 instead
    if isinstance(fns, types.BaseTuple) and len(fns) == 0:
        return lambda fns: 0
    return lambda fns: fns


@overload(_unpack_fns, jit_options={"cache": CACHE})
def _unpack_fns_impl(f):
    if isinstance(f, types.Integer):
        return lambda f: ()
    return lambda f: f


# ------------------------------------------------------------------ work buffer
def work_size(lay, M: int, var: tuple, threads: int) -> int:
    """Length of the work buffer for ``M`` data points, variant ``var`` and up to ``threads`` threads."""
    L = int(lay[0])
    d = int(lay[1])
    K = int(lay[2])
    Q0 = int(lay[HEADER])
    blocks = 0 if var[SHALLOW] else sum(5 * M * int(lay[HEADER + PER * i]) for i in range(L))
    return _round8.py_func(blocks + 3 * M * K + 2 * K) + _extra_size.py_func(Q0, d, K, threads, _red_scratch.py_func(lay))


@njit(inline="always")
def _round8(n):
    """n rounded up to a multiple of 8 doubles (64 bytes: one zmm register, one cache line).  The
    scratch region and its per-thread chunks start at such offsets in a 64-byte aligned work buffer
    (System allocates it so), so their rows are aligned when Q is a multiple of 8: a misaligned
    zmm load spans two cache lines (measured: the L = 1 pass 12 % slower)."""
    return (n + 7) // 8 * 8


@njit(inline="always")
def _acc_base(Q, d, K):
    """Offset in the scratch region of the first per-thread chunk (after w₁ᵀ, (ω v)ᵀ, vᵀ)."""
    return _round8(Q * (d + 2 * K))


@njit(inline="always")
def _extra_size(Q0, d, K, T, rs):
    # transposes w₁ᵀ [d, Q0], (ω v)ᵀ and vᵀ [K, Q0]; per thread: the L = 1 pass's chunk
    # (:func:`_chunk_size`), and rs more for a reduced first layer (:func:`_red_scratch`)
    return _acc_base(Q0, d, K) + T * (_chunk_size(Q0, d, K) + rs)


@njit(inline="always")
def _red_group(Q, J):
    """ζ nodes per call of the activation kernel in the reduced first layer (≈ ROW_GROUP elements)."""
    return min(J, max(1, ROW_GROUP // Q))


@njit(inline="always")
def _red_scratch(lay):
    """Per-thread scratch of the reduced first layer's forward rows (0 if not reduced): the row's
    base Σ a z + b and β r [2, Q1], and h, φ, φ' of a group of ζ nodes [3, G·Q1]."""
    if lay[HEADER + 6] != RED_EDGE:
        return 0
    Q = lay[HEADER]
    return (3 * _red_group(Q, lay[HEADER + 7]) + 2) * Q


@njit(inline="always")
def _chunk_size(Q, d, K):
    # accumulators [d + 1 + K, Q], b + Σ x w of a row [Q], a and p of SHALLOW_ROWS rows [2 R, Q],
    # φ'_out and ∂loss [2, K]
    return _round8(Q * (d + 2 + K + 2 * SHALLOW_ROWS) + 2 * K)


@njit(inline="always")
def _blocks_size(lay, M, shallow):
    n = 0
    if not shallow:
        for i in range(lay[0]):
            n += 5 * M * lay[HEADER + PER * i]
    return n


@njit(inline="always")
def aligned_empty(n):
    """An uninitialized float64 array of n elements starting on a 64-byte boundary (a cache line):
    the kernels' row scratch, and through its ``py_func`` the work buffer (System) and the benchmark
    arrays (one home for both)."""
    buf = np.empty(n + 8)
    o = ((64 - buf.ctypes.data % 64) % 64) // 8
    return buf[o:o + n]


@njit
def _layer_offset(lay, M, i):
    """Offset of hidden layer i's block (H, A, P, S, G) in the work buffer."""
    off = 0
    for j in range(i):
        off += 5 * M * lay[HEADER + PER * j]
    return off


@njit
def _buf(work, off, M, Q):
    return work[off:off + M * Q].reshape((M, Q))


# ------------------------------------------------------------------ elementwise passes
# ------------------------------------------------------------------ activations, compiled per use
@njit
def _user_block(code, h, a, p, fns):
    for i in range(h.shape[0]):
        a[i], p[i] = user_pair(fns, code - USER_CODE0, h[i])


@njit
def _user_phi_block(code, h, a, fns):
    for i in range(h.shape[0]):
        a[i] = user_pair(fns, code - USER_CODE0, h[i])[0]




_pair_identity = _static_switch(act._identity_block)
_phi_identity = _static_switch(act._identity_phi_block)
_pair_tanh = _static_switch(act._tanh_block)
_phi_tanh = _static_switch(act._tanh_phi_block)
_pair_relu = _static_switch(act._relu_block)
_phi_relu = _static_switch(act._relu_phi_block)
_pair_sigmoid = _static_switch(act._sigmoid_block)
_phi_sigmoid = _static_switch(act._sigmoid_phi_block)
_pair_erf = _static_switch(act._erf_block)
_phi_erf = _static_switch(act._erf_phi_block)
_pair_softplus = _static_switch(act._softplus_block)
_phi_softplus = _static_switch(act._softplus_phi_block)
_pair_gelu = _static_switch(act._gelu_block)
_phi_gelu = _static_switch(act._gelu_phi_block)
_pair_user = _static_switch(_user_block)
_phi_user = _static_switch(_user_phi_block)


@njit
def _nan_fill(a):
    a[:] = np.nan   # an activation the variant was not compiled for: fail loudly


@njit
def _user_dot_row(code, x, w, c, u, a, p, fns):
    s = 0.0
    for i in range(w.shape[0]):
        t, d = user_pair(fns, code - USER_CODE0, x * w[i] + c[i])
        a[i] = t
        p[i] = d
        s += t * u[i]
    return s


_dot_identity = _static_switch(act._identity_dot_row, 0.0)
_dot_tanh = _static_switch(act._tanh_dot_row, 0.0)
_dot_relu = _static_switch(act._relu_dot_row, 0.0)
_dot_sigmoid = _static_switch(act._sigmoid_dot_row, 0.0)
_dot_erf = _static_switch(act._erf_dot_row, 0.0)
_dot_softplus = _static_switch(act._softplus_dot_row, 0.0)
_dot_gelu = _static_switch(act._gelu_dot_row, 0.0)
_dot_user = _static_switch(_user_dot_row, 0.0)


@njit(inline="always")
def pair_dot_row(acts, code, x, w, c, u, a, p, fns):
    """h = x w + c, a = φ(h), p = φ'(h) over 1-D arrays; returns Σ a u (the built-in's own dot-row
    kernel, compiled per use like :func:`pair_block`; an unset flag gives NaN)."""
    if code == 0 and acts[0] is not None:
        return _dot_identity(acts[0], x, w, c, u, a, p)
    elif code == 1 and acts[1] is not None:
        return _dot_tanh(acts[1], x, w, c, u, a, p)
    elif code == 2 and acts[2] is not None:
        return _dot_relu(acts[2], x, w, c, u, a, p)
    elif code == 3 and acts[3] is not None:
        return _dot_sigmoid(acts[3], x, w, c, u, a, p)
    elif code == 4 and acts[4] is not None:
        return _dot_erf(acts[4], x, w, c, u, a, p)
    elif code == 5 and acts[5] is not None:
        return _dot_softplus(acts[5], x, w, c, u, a, p)
    elif code == 6 and acts[6] is not None:
        return _dot_gelu(acts[6], x, w, c, u, a, p)
    elif code >= USER_CODE0 and acts[7] is not None:
        return _dot_user(acts[7], code, x, w, c, u, a, p, fns)
    _nan_fill(a)
    _nan_fill(p)
    return np.nan


@njit(inline="always")
def pair_block(acts, code, h, a, p, fns):
    """a = φ(h), p = φ'(h) over 1-D arrays for activation ``code``: the built-in's own vectorized
    block kernel (mfpde.problem.activations), compiled only when its flag in ``acts`` (the variant)
    is set; a code whose flag is unset gives NaN."""
    if code == 0 and acts[0] is not None:
        _pair_identity(acts[0], h, a, p)
    elif code == 1 and acts[1] is not None:
        _pair_tanh(acts[1], h, a, p)
    elif code == 2 and acts[2] is not None:
        _pair_relu(acts[2], h, a, p)
    elif code == 3 and acts[3] is not None:
        _pair_sigmoid(acts[3], h, a, p)
    elif code == 4 and acts[4] is not None:
        _pair_erf(acts[4], h, a, p)
    elif code == 5 and acts[5] is not None:
        _pair_softplus(acts[5], h, a, p)
    elif code == 6 and acts[6] is not None:
        _pair_gelu(acts[6], h, a, p)
    elif code >= USER_CODE0 and acts[7] is not None:
        _pair_user(acts[7], code, h, a, p, fns)
    else:
        _nan_fill(a)
        _nan_fill(p)


@njit(inline="always")
def phi_block(acts, code, h, a, fns):
    """a = φ(h) (φ only), compiled per use like :func:`pair_block`."""
    if code == 0 and acts[0] is not None:
        _phi_identity(acts[0], h, a)
    elif code == 1 and acts[1] is not None:
        _phi_tanh(acts[1], h, a)
    elif code == 2 and acts[2] is not None:
        _phi_relu(acts[2], h, a)
    elif code == 3 and acts[3] is not None:
        _phi_sigmoid(acts[3], h, a)
    elif code == 4 and acts[4] is not None:
        _phi_erf(acts[4], h, a)
    elif code == 5 and acts[5] is not None:
        _phi_softplus(acts[5], h, a)
    elif code == 6 and acts[6] is not None:
        _phi_gelu(acts[6], h, a)
    elif code >= USER_CODE0 and acts[7] is not None:
        _phi_user(acts[7], code, h, a, fns)
    else:
        _nan_fill(a)


@njit
def _s_identity(x):
    return act._identity_pair(x)


@njit
def _s_tanh(x):
    return act._tanh_pair(x)


@njit
def _s_relu(x):
    return act._relu_pair(x)


@njit
def _s_sigmoid(x):
    return act._sigmoid_pair(x)


@njit
def _s_erf(x):
    return act._erf_pair(x)


@njit
def _s_softplus(x):
    return act._softplus_pair(x)


@njit
def _s_gelu(x):
    return act._gelu_pair(x)


@njit
def _s_user(code, x, fns):
    return user_pair(fns, code - USER_CODE0, x)


_spair_identity = _static_switch(_s_identity, (np.nan, np.nan))
_spair_tanh = _static_switch(_s_tanh, (np.nan, np.nan))
_spair_relu = _static_switch(_s_relu, (np.nan, np.nan))
_spair_sigmoid = _static_switch(_s_sigmoid, (np.nan, np.nan))
_spair_erf = _static_switch(_s_erf, (np.nan, np.nan))
_spair_softplus = _static_switch(_s_softplus, (np.nan, np.nan))
_spair_gelu = _static_switch(_s_gelu, (np.nan, np.nan))
_spair_user = _static_switch(_s_user, (np.nan, np.nan))


@njit(inline="always")
def scalar_pair(acts, code, x, fns):
    """(φ(x), φ'(x)) of activation ``code``, compiled per use like :func:`pair_block` (NaN if unset)."""
    if code == 0 and acts[0] is not None:
        return _spair_identity(acts[0], x)
    elif code == 1 and acts[1] is not None:
        return _spair_tanh(acts[1], x)
    elif code == 2 and acts[2] is not None:
        return _spair_relu(acts[2], x)
    elif code == 3 and acts[3] is not None:
        return _spair_sigmoid(acts[3], x)
    elif code == 4 and acts[4] is not None:
        return _spair_erf(acts[4], x)
    elif code == 5 and acts[5] is not None:
        return _spair_softplus(acts[5], x)
    elif code == 6 and acts[6] is not None:
        return _spair_gelu(acts[6], x)
    elif code >= USER_CODE0 and acts[7] is not None:
        return _spair_user(acts[7], code, x, fns)
    return np.nan, np.nan


@njit(inline="always")
def _preact_row(h, b, x, wT, ncols):
    """h = b + Σ_{j < ncols} x_j wT[j] (b empty: no bias): the first layer's pre-activation of one data
    row x, for every node.  The one home of this loop for the fused passes (first layer, shallow,
    reduced): the same arithmetic in each, so their results agree bit for bit where they coincide."""
    Q = h.shape[0]
    if b.shape[0] > 0:
        for q in range(Q):
            h[q] = b[q]
    else:
        for q in range(Q):
            h[q] = 0.0
    for j in range(ncols):
        xj = x[j]
        wj = wT[j]
        for q in range(Q):
            h[q] += xj * wj[q]


@njit
def _activate_rows(r0, r1, H, A, P, S, b, w, code, fns, acts):
    """Rows r0..r1−1: H += b (if given); A = φ(H), P = φ'(H), S = A·ω.  Rows go to the activation
    kernel in groups of ≈ ROW_GROUP elements (one call for many short rows: a call per row of 16
    nodes cost 30 % of a small problem's RHS; long rows stay one per call, cache-resident)."""
    Q = H.shape[1]
    hf = H.reshape(H.size)
    af = A.reshape(A.size)
    pf = P.reshape(P.size)
    g = max(1, ROW_GROUP // Q)
    for m0 in range(r0, r1, g):
        m1 = min(m0 + g, r1)
        if b.shape[0] > 0:
            for m in range(m0, m1):
                h = H[m]
                for q in range(Q):
                    h[q] += b[q]
        pair_block(acts, code, hf[m0 * Q:m1 * Q], af[m0 * Q:m1 * Q], pf[m0 * Q:m1 * Q], _unpack_fns(fns))
        for m in range(m0, m1):
            a = A[m]
            s = S[m]
            for q in range(Q):
                s[q] = a[q] * w[q]


@njit
def _activate_first_rows(r0, r1, X, wT, H, A, P, S, b, w, code, fns, acts):
    """Rows r0..r1−1 of the fused first layer: h = X·w₁ᵀ (+ b) from w₁ᵀ [d, Q] into a group-sized
    scratch (H is not written: nothing reads it), then A = φ(h), P = φ'(h), S = A·ω (rows grouped
    for the activation kernel as in :func:`_activate_rows`)."""
    d, Q = wT.shape
    af = A.reshape(A.size)
    pf = P.reshape(P.size)
    g = max(1, ROW_GROUP // Q)
    hs = aligned_empty(g * Q)   # the group's pre-activations: cache-resident, never written to H (memory traffic)
    for m0 in range(r0, r1, g):
        m1 = min(m0 + g, r1)
        for m in range(m0, m1):
            _preact_row(hs[(m - m0) * Q:(m - m0 + 1) * Q], b, X[m], wT, d)
        pair_block(acts, code, hs[:(m1 - m0) * Q], af[m0 * Q:m1 * Q], pf[m0 * Q:m1 * Q], _unpack_fns(fns))
        for m in range(m0, m1):
            a = A[m]
            s = S[m]
            for q in range(Q):
                s[q] = a[q] * w[q]


@njit(parallel=True)
def _activate_parallel(T, H, A, P, S, b, w, code, fns, acts):
    M = H.shape[0]
    n = min(M, T * 4)
    f = _pack_fns(fns)
    for c in prange(n):
        _activate_rows(c * M // n, (c + 1) * M // n, H, A, P, S, b, w, code, f, acts)


@njit(parallel=True)
def _activate_first_parallel(T, X, wT, H, A, P, S, b, w, code, fns, acts):
    M = H.shape[0]
    n = min(M, T * 4)
    f = _pack_fns(fns)
    for c in prange(n):
        _activate_first_rows(c * M // n, (c + 1) * M // n, X, wT, H, A, P, S, b, w, code, f, acts)


_activate_par_sw = _static_switch(_activate_parallel)
_activate_first_par_sw = _static_switch(_activate_first_parallel)


@njit(inline="always")
def _activate(par, T, H, A, P, S, b, w, code, fns, acts):
    """Fused pass: H += b (if given); A = φ(H), P = φ'(H), S = A·ω (rows in parallel if large)."""
    if par is not None and H.size >= _par_min(par):
        _activate_par_sw(par, T, H, A, P, S, b, w, code, fns, acts)
    else:
        _activate_rows(0, H.shape[0], H, A, P, S, b, w, code, fns, acts)


@njit
def _backprop_rows(r0, r1, G, P, H, w, scale):
    Q = G.shape[1]
    for m in range(r0, r1):
        g = G[m]
        p = P[m]
        h = H[m]
        for q in range(Q):
            x = g[q] * p[q]
            h[q] = x * w[q]
            p[q] = scale * x


@njit(parallel=True)
def _backprop_parallel(T, G, P, H, w, scale):
    M = G.shape[0]
    n = min(M, T * 4)
    for c in prange(n):
        _backprop_rows(c * M // n, (c + 1) * M // n, G, P, H, w, scale)


_backprop_par_sw = _static_switch(_backprop_parallel)


@njit(inline="always")
def _backprop(par, T, G, P, H, w, scale):
    """Fused pass: δ = G·φ'; H = δ·ω (for the next backward product); P = scale·δ."""
    if par is not None and G.size >= _par_min(par):
        _backprop_par_sw(par, T, G, P, H, w, scale)
    else:
        _backprop_rows(0, G.shape[0], G, P, H, w, scale)


@njit
def _first_drift_rows(r0, r1, G, P, X, acc):
    """Rows r0..r1−1 of the fused first-layer drift: δ = G·φ'; acc[j] += δ x_j (j < d), acc[d] += δ."""
    Q = G.shape[1]
    d = X.shape[1]
    dl = aligned_empty(Q)              # δ of one row: cache-resident (G is only read: no write-back)
    for m in range(r0, r1):
        g = G[m]
        p = P[m]
        for q in range(Q):
            dl[q] = g[q] * p[q]
        for j in range(d):
            x = X[m, j]
            aj = acc[j]
            for q in range(Q):
                aj[q] += dl[q] * x
        ab = acc[d]
        for q in range(Q):
            ab[q] += dl[q]


@njit(parallel=True)
def _first_drift_parallel(G, P, X, accs):
    M = G.shape[0]
    n = accs.shape[0]
    for c in prange(n):
        accs[c, :, :] = 0.0
        _first_drift_rows(c * M // n, (c + 1) * M // n, G, P, X, accs[c])
    for c in range(1, n):
        accs[0] += accs[c]


_first_drift_par_sw = _static_switch(_first_drift_parallel)


# ------------------------------------------------------------------ reduced first layer (SPEC §7)
# Data columns (z_1..z_k, r), w₁ columns (a_1..a_k, β), ζ rule (ζ_j, ρ_j) at
# omega[off_ρ:off_ρ + J] (ρ) and omega[off_ρ + J:off_ρ + 2J] (ζ), J = layer 1's R field:
#     h(m, q, j) = Σ_c a_qc z_mc + b_q + β_q r_m ζ_j,
#     A = Σ_j ρ_j φ(h),  P = Σ_j ρ_j φ'(h),  H ← Pζ = Σ_j ρ_j ζ_j φ'(h)   (H of layer 1 is free),
# so every later layer reads A (and S = A·ω) as it reads φ(h_1) of a plain layer.  M·Q·J
# activations per pass, never an [M, Q, J] array.
@njit
def _red_forward_rows(r0, r1, X, wT, H, A, P, S, b, w, zeta, zrho, code, fns, acts, scr):
    """Rows r0..r1−1 of the reduced first layer's forward pass (see above), with the per-thread
    scratch ``scr`` (:func:`_red_scratch`): base Σ_c a z + b and β r per row, then groups of ζ
    nodes through the activation kernel (≈ ROW_GROUP elements per call)."""
    d, Q = wT.shape
    k = d - 1
    J = zeta.shape[0]
    G = _red_group(Q, J)
    base = scr[:Q]
    brz = scr[Q:2 * Q]
    hb = scr[2 * Q:(2 + G) * Q]
    ab = scr[(2 + G) * Q:(2 + 2 * G) * Q]
    pb = scr[(2 + 2 * G) * Q:(2 + 3 * G) * Q]
    f = _unpack_fns(fns)
    for m in range(r0, r1):
        # the arithmetic of _activate_first_rows on the k columns z (J = 1, ζ = 0 gives its h)
        _preact_row(base, b, X[m], wT, k)
        r = X[m, k]
        wb = wT[k]
        for q in range(Q):
            brz[q] = r * wb[q]
        am = A[m]
        pm = P[m]
        zm = H[m]
        for q in range(Q):
            am[q] = 0.0
            pm[q] = 0.0
            zm[q] = 0.0
        for j0 in range(0, J, G):
            nj = min(G, J - j0)
            for jj in range(nj):
                zj = zeta[j0 + jj]
                o = jj * Q
                for q in range(Q):
                    hb[o + q] = base[q] + brz[q] * zj
            pair_block(acts, code, hb[:nj * Q], ab[:nj * Q], pb[:nj * Q], f)
            for jj in range(nj):
                rj = zrho[j0 + jj]
                rz = rj * zeta[j0 + jj]
                o = jj * Q
                for q in range(Q):
                    am[q] += rj * ab[o + q]
                    pm[q] += rj * pb[o + q]
                    zm[q] += rz * pb[o + q]
        s = S[m]
        for q in range(Q):
            s[q] = am[q] * w[q]


@njit(parallel=True)
def _red_forward_parallel(n, X, wT, H, A, P, S, b, w, zeta, zrho, code, fns, acts, ex, cs):
    M = H.shape[0]
    f = _pack_fns(fns)
    for c in prange(n):
        _red_forward_rows(c * M // n, (c + 1) * M // n, X, wT, H, A, P, S, b, w, zeta, zrho, code, f, acts,
                          ex[c * cs:(c + 1) * cs])


_red_forward_par_sw = _static_switch(_red_forward_parallel)


@njit
def _red_forward(par, T, X, wT, H, A, P, S, b, w, zeta, zrho, code, fns, acts, ex, cs):
    """The reduced first layer's forward pass; rows in T chunks (one scratch each) when large."""
    M = H.shape[0]
    if par is not None and H.size * zeta.shape[0] >= _par_min(par) and min(T, M) > 1:
        _red_forward_par_sw(par, min(T, M), X, wT, H, A, P, S, b, w, zeta, zrho, code, fns, acts, ex, cs)
    else:
        _red_forward_rows(0, M, X, wT, H, A, P, S, b, w, zeta, zrho, code, fns, acts, ex[:cs])


@njit
def _red_drift_rows(r0, r1, G, P, Pz, X, acc):
    """Rows r0..r1−1 of the reduced first-layer drift: δ = G·P, δζ = G·Pζ (in place of G, Pζ);
    acc[c] += δ z_c (c < k), acc[k] += δζ r, acc[k + 1] += δ (the arithmetic of
    :func:`_first_drift_rows` on the z columns)."""
    Q = G.shape[1]
    d = X.shape[1]
    k = d - 1
    for m in range(r0, r1):
        g = G[m]
        p = P[m]
        pz = Pz[m]
        for q in range(Q):
            pz[q] = g[q] * pz[q]
            g[q] = g[q] * p[q]
        for c in range(k):
            x = X[m, c]
            ac = acc[c]
            for q in range(Q):
                ac[q] += g[q] * x
        r = X[m, k]
        ak = acc[k]
        for q in range(Q):
            ak[q] += pz[q] * r
        ab = acc[d]
        for q in range(Q):
            ab[q] += g[q]


@njit(parallel=True)
def _red_drift_parallel(G, P, Pz, X, accs):
    M = G.shape[0]
    n = accs.shape[0]
    for c in prange(n):
        accs[c, :, :] = 0.0
        _red_drift_rows(c * M // n, (c + 1) * M // n, G, P, Pz, X, accs[c])
    for c in range(1, n):
        accs[0] += accs[c]


_red_drift_par_sw = _static_switch(_red_drift_parallel)


@njit
def _red_drift(par, G, P, Pz, X, accs):
    """The reduced first layer's drift sums into accs[0] [d + 1, Q] (accs.shape[0] chunks)."""
    if par is not None and accs.shape[0] > 1:
        _red_drift_par_sw(par, G, P, Pz, X, accs)
    else:
        accs[0, :, :] = 0.0
        _red_drift_rows(0, G.shape[0], G, P, Pz, X, accs[0])


_red_forward_sw = _static_switch(_red_forward)
_red_drift_sw = _static_switch(_red_drift)


@njit
def _colsum(P, out):
    M, Q = P.shape
    out[:] = 0.0
    for m in range(M):
        for q in range(Q):
            out[q] += P[m, q]


@njit(inline="always")
def _threads(work, lay, M, shallow):
    """The thread count the work buffer was sized for (numba.config.NUMBA_NUM_THREADS when built):
    the number of chunks of the parallel passes (read from the buffer, never from the threading
    layer, whose function pointer would make the kernels uncacheable)."""
    d = lay[1]
    K = lay[2]
    Q0 = lay[HEADER]
    n = work.shape[0] - _round8(_blocks_size(lay, M, shallow) + 3 * M * K + 2 * K) - _acc_base(Q0, d, K)
    return max(1, n // (_chunk_size(Q0, d, K) + _red_scratch(lay)))


@njit(inline="always")
def _extra(work, lay, M, shallow):
    """The scratch region after the [M, K] output block."""
    K = lay[2]
    off = _round8(_blocks_size(lay, M, shallow) + 3 * M * K + 2 * K)
    return work[off:]


# ------------------------------------------------------------------ deep forward / backward
@njit(inline="always")
def forward(y, args):
    """Pre-activations, activations and derivatives of every layer for inputs X [M, d] (deep path)."""
    lay, omega, X, work, fns, var = args.lay, args.omega, args.X, args.work, args.fns, args.variant
    L = lay[0]
    d = lay[1]
    K = lay[2]
    M = X.shape[0]
    T = _threads(work, lay, M, False)
    off = 0
    offS = 0
    Qp = d
    for i in range(L):
        Q, code, hasb, oW, ob, oo = _layer(lay, i)
        H = _buf(work, off, M, Q)
        A = _buf(work, off + M * Q, M, Q)
        P = _buf(work, off + 2 * M * Q, M, Q)
        S = _buf(work, off + 3 * M * Q, M, Q)
        b = y[ob:ob + Q] if hasb else y[0:0]
        w = omega[oo:oo + Q]
        if i == 0 and var[RED] is not None:
            W = y[oW:oW + Q * d].reshape((Q, d))
            ex = _extra(work, lay, M, False)
            wT = ex[:d * Q].reshape((d, Q))
            for q in range(Q):
                for j in range(d):
                    wT[j, q] = W[q, j]
            ecode, J, orho = _edge(lay, 0)
            _red_forward_sw(var[RED], var[PAR], T, X, wT, H, A, P, S, b, w, omega[orho + J:orho + 2 * J],
                            omega[orho:orho + J], code, fns, var[ACTS], ex[d * Q:],
                            _chunk_size(Q, d, K) + _red_scratch(lay))
        elif i == 0 and var[FUSE0] is not None:
            W = y[oW:oW + Q * d].reshape((Q, d))
            wT = _extra(work, lay, M, False)[:d * Q].reshape((d, Q))
            for q in range(Q):
                for j in range(d):
                    wT[j, q] = W[q, j]
            if var[PAR] is not None and H.size >= _par_min(var[PAR]):
                _activate_first_par_sw(var[PAR], T, X, wT, H, A, P, S, b, w, code, fns, var[ACTS])
            else:
                _activate_first_rows(0, M, X, wT, H, A, P, S, b, w, code, fns, var[ACTS])
        else:
            if i == 0:
                W = y[oW:oW + Q * d].reshape((Q, d))
                np.dot(X, W.T, H)
            elif _general_edge(lay, i):
                ecode, R, orho = _edge(lay, i)
                W3 = y[oW:oW + R * Qp * Q].reshape((R, Qp, Q))
                if var[EDGES] is None:
                    H[:, :] = np.nan   # a general-edge layer in a system whose variant says none: fail loudly
                _edge_forward_sw(var[EDGES], H, _buf(work, offS - 2 * M * Qp, M, Qp), omega[oo - Qp:oo], W3,
                                 omega[orho:orho + R], ecode)
            else:
                W = y[oW:oW + Qp * Q].reshape((Qp, Q))
                np.dot(_buf(work, offS, M, Qp), W, H)
            _activate(var[PAR], T, H, A, P, S, b, w, code, fns, var[ACTS])
        offS = off + 3 * M * Q
        Qp = Q
        off += 5 * M * Q
    Hout = _buf(work, off, M, K)
    ov = lay[6]
    v = y[ov:ov + Qp * K].reshape((Qp, K))
    np.dot(_buf(work, offS, M, Qp), v, Hout)
    if lay[5]:
        ob = lay[7]
        for m in range(M):
            for k in range(K):
                Hout[m, k] += y[ob + k]


@njit(inline="always")
def _output_row(m, code, lcode, param, Y, rho, Hout, Gout, Yhat, dphi, grad, fns, acts):
    """Ŷ_m = φ_out(H_out,m), G_out,m = ρ_m ∂loss φ'_out; returns ρ_m loss_m (the error: evaluate)."""
    K = Hout.shape[1]
    for k in range(K):
        a, da = scalar_pair(acts, code, Hout[m, k], fns)
        Yhat[m, k] = a
        dphi[k] = da
    val = loss_grad(lcode, param, Y[m], Yhat[m], grad)
    for k in range(K):
        Gout[m, k] = rho[m] * grad[k] * dphi[k]
    return rho[m] * val


@njit(inline="always")
def output_loss(args):
    """Ŷ = φ_out(H_out), the ρ-weighted loss and G_out = ρ ∂loss φ'_out (after forward); returns the loss."""
    lay, lossp, Y, rho, work, fns = args.lay, args.lossp, args.Y, args.rho, args.work, args.fns
    K = lay[2]
    M = Y.shape[0]
    off = _blocks_size(lay, M, args.variant[SHALLOW] is not None)
    Hout = _buf(work, off, M, K)
    Gout = _buf(work, off + M * K, M, K)
    Yhat = _buf(work, off + 2 * M * K, M, K)
    dphi = work[off + 3 * M * K:off + 3 * M * K + K]   # scratch (no allocation per call)
    grad = work[off + 3 * M * K + K:off + 3 * M * K + 2 * K]
    loss = 0.0
    for m in range(M):
        loss += _output_row(m, lay[4], int(lossp[0]), lossp[1], Y, rho, Hout, Gout, Yhat, dphi, grad, fns, args.variant[ACTS])
    return loss


@njit
def _lowest_moving(lay, sched, sched_flat, t):
    """Lowest layer whose parameters move at time t (L if none): below it no backward pass is needed."""
    L = lay[0]
    for i in range(L):
        base = HEADER + PER * i
        if schedule_at(sched, sched_flat, i, t) != 0.0 or (lay[base + 2] and schedule_at(sched, sched_flat, L + 1 + i, t) != 0.0):
            return i
    return L


@njit(inline="always")
def backward_drift(t, y, dy, args):
    """SPEC §2's backward pass and the drift of every parameter into ``dy`` (after output_loss)."""
    lay, omega, X, sched, sched_flat, work, var = args.lay, args.omega, args.X, args.sched, args.sched_flat, args.work, args.variant
    L = lay[0]
    d = lay[1]
    K = lay[2]
    M = X.shape[0]
    off = _blocks_size(lay, M, False)
    QL = lay[HEADER + PER * (L - 1)]
    Gout = _buf(work, off + M * K, M, K)
    ov = lay[6]
    v = y[ov:ov + QL * K].reshape((QL, K))
    dv = dy[ov:ov + QL * K].reshape((QL, K))
    AL = _buf(work, _layer_offset(lay, M, L - 1) + M * QL, M, QL)
    xi = schedule_at(sched, sched_flat, L, t)
    if xi != 0.0:
        np.dot(AL.T, Gout, dv)
        for q in range(QL):
            for k in range(K):
                dv[q, k] *= -xi
    else:
        dv[:, :] = 0.0
    if lay[5]:
        xib = schedule_at(sched, sched_flat, 2 * L + 1, t)
        ob = lay[7]
        for k in range(K):
            s = 0.0
            for m in range(M):
                s += Gout[m, k]
            dy[ob + k] = -xib * s
    lowest = _lowest_moving(lay, sched, sched_flat, t)
    T = _threads(work, lay, M, False)
    if lowest < L:
        np.dot(Gout, v.T, _buf(work, _layer_offset(lay, M, L - 1) + 4 * M * QL, M, QL))
    for i in range(L - 1, -1, -1):
        Q, code, hasb, oW, ob, oo = _layer(lay, i)
        Qp = d if i == 0 else lay[HEADER + PER * (i - 1)]
        xi = schedule_at(sched, sched_flat, i, t)
        xib = schedule_at(sched, sched_flat, L + 1 + i, t) if hasb else 0.0
        general = _general_edge(lay, i)
        ecode, R, orho = _edge(lay, i)
        if i == 0:
            R = 1   # layer 1's R field is the ζ rule's size when reduced (w₁ is [Q, d] always)
        dW = dy[oW:oW + R * Qp * Q].reshape((R * Qp, Q))
        if i < lowest:
            dW[:, :] = 0.0
            if hasb:
                dy[ob:ob + Q] = 0.0
            continue
        oi = _layer_offset(lay, M, i)
        op = oi - 5 * M * Qp   # previous layer's block (only used for i > 0)
        H = _buf(work, oi, M, Q)
        P = _buf(work, oi + 2 * M * Q, M, Q)
        G = _buf(work, oi + 4 * M * Q, M, Q)
        if i == 0 and (var[FUSE0] is not None or var[RED] is not None):
            # fused first-layer drift: δ = G·φ', Σ_m δ x_m and Σ_m δ accumulated per thread
            # (reduced: δ = G·Σρφ', δζ = G·Σρζφ' from P and H, see _red_drift_rows)
            T0 = min(T, M) if var[PAR] is not None and G.size >= _par_min(var[PAR]) else 1
            ex = _extra(work, lay, M, False)
            accs = ex[d * Q:d * Q + T0 * (d + 1) * Q].reshape((T0, d + 1, Q))
            if var[RED] is not None:
                _red_drift_sw(var[RED], var[PAR], G, P, H, X, accs)
            elif var[PAR] is not None and T0 > 1:
                _first_drift_par_sw(var[PAR], G, P, X, accs)
            else:
                accs[0, :, :] = 0.0
                _first_drift_rows(0, M, G, P, X, accs[0])
            dW1 = dy[oW:oW + Q * d].reshape((Q, d))
            for q in range(Q):
                for j in range(d):
                    dW1[q, j] = -xi * accs[0, j, q] if xi != 0.0 else 0.0
            if hasb:
                for q in range(Q):
                    dy[ob + q] = -xib * accs[0, d, q] if xib != 0.0 else 0.0
            continue
        scale = -xi if xi != 0.0 else 1.0
        _backprop(var[PAR], T, G, P, H, omega[oo:oo + Q], scale)
        if hasb:
            # P holds scale·δ_l: the bias drift is −ξ^b Σ_m δ_l = (−ξ^b/scale) Σ_m P
            db = dy[ob:ob + Q]
            _colsum(P, db)
            c = -xib / scale
            for q in range(Q):
                db[q] *= c
        if general:
            W3 = y[oW:oW + R * Qp * Q].reshape((R, Qp, Q))
            Aprev = _buf(work, op + M * Qp, M, Qp)
            if xi == 0.0:
                dW[:, :] = 0.0
            if var[EDGES] is None:
                dW[:, :] = np.nan   # unreachable: a general-edge layer in a variant without edges
            if xi != 0.0 or i > lowest:
                _edge_back_sw(var[EDGES], P, H, Aprev, W3, omega[orho:orho + R], dy[oW:oW + R * Qp * Q].reshape((R, Qp, Q)),
                              _buf(work, op + 4 * M * Qp, M, Qp), ecode, xi != 0.0, i > lowest)
            continue
        if xi == 0.0:
            dW[:, :] = 0.0
        elif i == 0:
            np.dot(P.T, X, dy[oW:oW + Q * d].reshape((Q, d)))
        else:
            np.dot(_buf(work, op + M * Qp, M, Qp).T, P, dW)
        if i > lowest:
            W = y[oW:oW + Qp * Q].reshape((Qp, Q))
            np.dot(H, W.T, _buf(work, op + 4 * M * Qp, M, Qp))


# ------------------------------------------------------------------ shallow (L = 1) fused path
@njit(inline="always")
def _shallow_setup(y, args):
    """Transposes w₁ᵀ [d, Q], (ω v)ᵀ and vᵀ [K, Q] into the scratch region; returns the region."""
    lay, omega = args.lay, args.omega
    d = lay[1]
    K = lay[2]
    Q, code, hasb, oW, ob, oo = _layer(lay, 0)
    ex = _extra(args.work, lay, args.X.shape[0], True)
    W = y[oW:oW + Q * d].reshape((Q, d))
    ov = lay[6]
    v = y[ov:ov + Q * K].reshape((Q, K))
    wT = ex[:d * Q].reshape((d, Q))
    uT = ex[d * Q:(d + K) * Q].reshape((K, Q))
    vT = ex[(d + K) * Q:(d + 2 * K) * Q].reshape((K, Q))
    for q in range(Q):
        for j in range(d):
            wT[j, q] = W[q, j]
        for k in range(K):
            uT[k, q] = omega[oo + q] * v[q, k]
            vT[k, q] = v[q, k]
    return ex


@njit
def _shallow_back_block(m, R, X, Gout, arows, prows, vT, acc, d):
    """The drift terms of rows m..m+R−1 (R = SHALLOW_ROWS, K = 1) in one sweep over the nodes:
    acc_v += Σ_r a_r g_r, δ_r = p_r g_r v, acc_b += Σ_r δ_r, acc_w[j] += Σ_r δ_r x_rj (for d = 1 in
    the same sweep; else δ_r replaces p_r and one sweep per input coordinate follows).  Each
    accumulator is read and written once per R rows instead of once per row."""
    Q = vT.shape[1]
    g0 = Gout[m, 0]
    g1 = Gout[m + 1, 0]
    g2 = Gout[m + 2, 0]
    g3 = Gout[m + 3, 0]
    a0, a1, a2, a3 = arows[0], arows[1], arows[2], arows[3]
    p0, p1, p2, p3 = prows[0], prows[1], prows[2], prows[3]
    v0 = vT[0]
    av = acc[d + 1]
    ab = acc[d]
    if d == 1:
        x0 = X[m, 0]
        x1 = X[m + 1, 0]
        x2 = X[m + 2, 0]
        x3 = X[m + 3, 0]
        aw = acc[0]
        for q in range(Q):
            vq = v0[q]
            d0 = p0[q] * (g0 * vq)
            d1 = p1[q] * (g1 * vq)
            d2 = p2[q] * (g2 * vq)
            d3 = p3[q] * (g3 * vq)
            av[q] += (a0[q] * g0 + a1[q] * g1) + (a2[q] * g2 + a3[q] * g3)
            ab[q] += (d0 + d1) + (d2 + d3)
            aw[q] += (d0 * x0 + d1 * x1) + (d2 * x2 + d3 * x3)
        return
    for q in range(Q):
        vq = v0[q]
        d0 = p0[q] * (g0 * vq)
        d1 = p1[q] * (g1 * vq)
        d2 = p2[q] * (g2 * vq)
        d3 = p3[q] * (g3 * vq)
        p0[q] = d0
        p1[q] = d1
        p2[q] = d2
        p3[q] = d3
        av[q] += (a0[q] * g0 + a1[q] * g1) + (a2[q] * g2 + a3[q] * g3)
        ab[q] += (d0 + d1) + (d2 + d3)
    for j in range(d):
        x0 = X[m, j]
        x1 = X[m + 1, j]
        x2 = X[m + 2, j]
        x3 = X[m + 3, j]
        aw = acc[j]
        for q in range(Q):
            aw[q] += (p0[q] * x0 + p1[q] * x1) + (p2[q] * x2 + p3[q] * x3)


@njit
def _shallow_rows(r0, r1, y, lay, X, Y, rho, lossp, work, fns, ex, c, backward, acts):
    """Rows r0..r1−1 of the fused one-hidden-layer pass, chunk ``c`` of the scratch region.

    Per row m: h = w₁·x_m + b (from w₁ᵀ), a = φ(h), p = φ'(h) and ŷ_m = Σ_q a (ω v)_q + b_out in one
    loop (:func:`pair_dot_row`; the first d − 1 coordinates and b are summed before it, the last
    inside), the loss and G_out,m; with ``backward``: acc_v[k] += a G_out,mk, δ = p Σ_k G_out,mk v_k,
    acc_w[j] += δ x_mj, acc_b += δ, for K = 1 in blocks of SHALLOW_ROWS rows
    (:func:`_shallow_back_block`).  Returns Σ ρ loss of the rows."""
    fns = _unpack_fns(fns)
    d = lay[1]
    K = lay[2]
    M = X.shape[0]
    R = SHALLOW_ROWS
    Q, code, hasb, oW, ob, oo = _layer(lay, 0)
    wT = ex[:d * Q].reshape((d, Q))
    uT = ex[d * Q:(d + K) * Q].reshape((K, Q))
    vT = ex[(d + K) * Q:(d + 2 * K) * Q].reshape((K, Q))
    base = _acc_base(Q, d, K) + c * _chunk_size(Q, d, K)
    acc = ex[base:base + (d + 1 + K) * Q].reshape((d + 1 + K, Q))   # rows: w (d), b, v (K)
    r = base + (d + 1 + K) * Q
    hc = ex[r:r + Q]                                     # b + Σ_{j < d−1} x_j w_j of a row
    arows = ex[r + Q:r + (1 + R) * Q].reshape((R, Q))
    prows = ex[r + (1 + R) * Q:r + (1 + 2 * R) * Q].reshape((R, Q))
    dphi = ex[r + (1 + 2 * R) * Q:r + (1 + 2 * R) * Q + K]
    grad = ex[r + (1 + 2 * R) * Q + K:r + (1 + 2 * R) * Q + 2 * K]
    Hout = _buf(work, 0, M, K)
    Gout = _buf(work, M * K, M, K)
    Yhat = _buf(work, 2 * M * K, M, K)
    ocode = lay[4]
    lcode = int(lossp[0])
    param = lossp[1]
    obo = lay[7]
    loss = 0.0
    bias = y[ob:ob + Q] if hasb else y[0:0]
    if d == 1 and hasb:
        cq = bias
    else:
        cq = hc
        if d == 1:
            hc[:] = 0.0
    wl = wT[d - 1]
    blocked = backward and K == 1
    m = r0
    while m < r1:
        nr = R if (blocked and m + R <= r1) else 1
        for i in range(nr):
            mm = m + i
            if d > 1:
                _preact_row(hc, bias, X[mm], wT, d - 1)
            a = arows[i]
            p = prows[i]
            s0 = pair_dot_row(acts, code, X[mm, d - 1], wl, cq, uT[0], a, p, fns)
            for k in range(K):
                s = s0
                if k > 0:
                    uk = uT[k]
                    s = 0.0
                    for q in range(Q):
                        s += a[q] * uk[q]
                if lay[5]:
                    s += y[obo + k]
                Hout[mm, k] = s
            loss += _output_row(mm, ocode, lcode, param, Y, rho, Hout, Gout, Yhat, dphi, grad, fns, acts)
        if nr == R:
            _shallow_back_block(m, R, X, Gout, arows, prows, vT, acc, d)
        elif backward:
            a = arows[0]
            p = prows[0]
            if K == 1 and d == 1:
                g = Gout[m, 0]
                x = X[m, 0]
                v0 = vT[0]
                av = acc[2]
                ab = acc[1]
                aw = acc[0]
                for q in range(Q):
                    av[q] += a[q] * g
                    dl = p[q] * (g * v0[q])
                    ab[q] += dl
                    aw[q] += dl * x
            else:
                for k in range(K):
                    g = Gout[m, k]
                    av = acc[d + 1 + k]
                    for q in range(Q):
                        av[q] += a[q] * g
                if K == 1:
                    g = Gout[m, 0]
                    v0 = vT[0]
                    for q in range(Q):
                        p[q] = p[q] * (g * v0[q])
                else:
                    for q in range(Q):
                        s = 0.0
                        for k in range(K):
                            s += Gout[m, k] * vT[k, q]
                        p[q] = p[q] * s
                for j in range(d):
                    x = X[m, j]
                    aw = acc[j]
                    for q in range(Q):
                        aw[q] += p[q] * x
                ab = acc[d]
                for q in range(Q):
                    ab[q] += p[q]
        m += nr
    return loss


@njit(inline="always")
def _shallow_serial(y, args, ex, backward):
    acc = ex[_acc_base(args.lay[HEADER], args.lay[1], args.lay[2]):]
    if backward:
        acc[:(args.lay[1] + 1 + args.lay[2]) * args.lay[HEADER]] = 0.0
    return _shallow_rows(0, args.X.shape[0], y, args.lay, args.X, args.Y, args.rho, args.lossp, args.work, args.fns,
                         ex, 0, backward, args.variant[ACTS])


@njit(parallel=True)
def _shallow_parallel(y, args, ex, backward):
    lay = args.lay
    d = lay[1]
    K = lay[2]
    Q = lay[HEADER]
    M = args.X.shape[0]
    n = min(_threads(args.work, lay, M, True), M)
    base = _acc_base(Q, d, K)
    cs = _chunk_size(Q, d, K)
    parts = np.zeros(n)
    X, Y, rho, lossp, work, f = args.X, args.Y, args.rho, args.lossp, args.work, _pack_fns(args.fns)
    acts = args.variant[ACTS]
    for c in prange(n):
        if backward:
            ex[base + c * cs:base + c * cs + (d + 1 + K) * Q] = 0.0
        parts[c] = _shallow_rows(c * M // n, (c + 1) * M // n, y, lay, X, Y, rho, lossp, work, f, ex, c, backward, acts)
    if backward:
        n_acc = (d + 1 + K) * Q
        for c in range(1, n):
            for i in range(n_acc):
                ex[base + i] += ex[base + c * cs + i]
    loss = 0.0
    for c in range(n):
        loss += parts[c]
    return loss


_shallow_par_sw = _static_switch(_shallow_parallel, 0.0)


@njit(inline="always")
def _shallow_pass(y, args, backward):
    """Forward (and with ``backward`` the summed per-row drift terms) of the L = 1 path; the loss."""
    ex = _shallow_setup(y, args)
    if args.variant[PAR] is not None and args.X.shape[0] * args.lay[HEADER] >= _par_min(args.variant[PAR]) and \
            _threads(args.work, args.lay, args.X.shape[0], True) > 1:
        return _shallow_par_sw(args.variant[PAR], y, args, ex, backward)
    return _shallow_serial(y, args, ex, backward)


def _rhs_shallow(t, y, dy, args):
    """The drift of a one-hidden-layer system (d ≤ FUSE_D) in one fused pass over the data rows."""
    lay, sched, sched_flat, work = args.lay, args.sched, args.sched_flat, args.work
    d = lay[1]
    K = lay[2]
    M = args.X.shape[0]
    Q, code, hasb, oW, ob, oo = _layer(lay, 0)
    loss = _shallow_pass(y, args, dy.shape[0] > 0)
    if dy.shape[0] == 0:   # an empty dy: forward pass and loss only (evaluate)
        return loss
    ex = _extra(work, lay, M, True)
    acc = ex[_acc_base(Q, d, K):_acc_base(Q, d, K) + (d + 1 + K) * Q].reshape((d + 1 + K, Q))
    xiw = schedule_at(sched, sched_flat, 0, t)
    xiv = schedule_at(sched, sched_flat, 1, t)
    dW = dy[oW:oW + Q * d].reshape((Q, d))
    ov = lay[6]
    dv = dy[ov:ov + Q * K].reshape((Q, K))
    for q in range(Q):
        for j in range(d):
            dW[q, j] = -xiw * acc[j, q] if xiw != 0.0 else 0.0
        for k in range(K):
            dv[q, k] = -xiv * acc[d + 1 + k, q] if xiv != 0.0 else 0.0
    if hasb:
        xib = schedule_at(sched, sched_flat, 2, t)
        for q in range(Q):
            dy[ob + q] = -xib * acc[d, q] if xib != 0.0 else 0.0
    if lay[5]:
        xibo = schedule_at(sched, sched_flat, 3, t)
        Gout = _buf(work, M * K, M, K)
        ob2 = lay[7]
        for k in range(K):
            s = 0.0
            for m in range(M):
                s += Gout[m, k]
            dy[ob2 + k] = -xibo * s
    return loss


def _rhs_deep(t, y, dy, args):
    forward(y, args)
    loss = output_loss(args)
    if dy.shape[0] > 0:   # an empty dy: forward pass and loss only (evaluate)
        backward_drift(t, y, dy, args)
    return loss


def rhs(t, y, dy, args):  # pragma: no cover - compiled code only (the overload below); Python: rhs_py
    """dy = the drift of the discretized limit system at (t, y); returns the training loss at y.

    For compiled callers (steppers, the SGD engine): the overload is the body of the variant's
    RHS itself, so a stepper links one library, not a chain of wrappers (each library level
    re-optimizes and re-emits everything below it: that was most of the compile time)."""
    raise NotImplementedError


@overload(rhs, jit_options=JIT_OPTIONS)
def _rhs_overload(t, y, dy, args):
    return _rhs_shallow if _variant_flag(args, SHALLOW) else _rhs_deep


@njit
def rhs_py(t, y, dy, sysargs):
    """:func:`rhs` for Python callers (System.rhs)."""
    return rhs(t, y, dy, sysargs)


@njit
def evaluate(y, sysargs, yhat_out):
    """(loss, error) of state ``y`` on the data of ``sysargs``; writes Ŷ into ``yhat_out`` [M, K].

    The forward pass is :func:`rhs`'s own (called with an empty ``dy``) through :func:`rhs_py`,
    the compiled entry that System.rhs (the stiffness report) calls too: compiling this compiles
    that, and the RHS body is emitted once for both (not again for System.rhs)."""
    loss = rhs_py(0.0, y, y[0:0], sysargs)
    lay = sysargs.lay
    K = lay[2]
    M = sysargs.X.shape[0]
    Y = sysargs.Y
    rho = sysargs.rho
    Yhat = _buf(sysargs.work, _blocks_size(lay, M, sysargs.variant[SHALLOW] is not None) + 2 * M * K, M, K)
    err = 0.0
    for m in range(M):
        err += rho[m] * misclassified(Y[m], Yhat[m])
        for k in range(K):
            yhat_out[m, k] = Yhat[m, k]
    return loss, err

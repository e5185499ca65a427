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
:func:`_edge_back` instead of the BLAS products.
Work buffer per hidden layer: H, A = φ(H), P = φ'(H), S = A·ω, G (δ), each [M, Q]; then
H_out, G_out, Ŷ, each [M, K].  After ``backward_drift`` the buffers H, P are overwritten.

``sysargs`` = (lay, omega, X, Y, rho, sched, sched_flat, lossp, work, fns) is the one tuple
every stepper passes through; its Numba type is the same for every problem, so the kernels
and steppers compile once per machine (cached).  Imports numpy, mfpde._jit,
mfpde.problem.activations, mfpde.problem.edges, mfpde.problem.losses, mfpde.problem.schedules only.
"""
from __future__ import annotations

import numpy as np

from mfpde._jit import PARALLEL_MIN, njit, prange
from mfpde.problem.activations import TANH, phi_dphi, tanh_fast
from mfpde.problem.edges import edge as edge_map
from mfpde.problem.losses import loss_grad, misclassified
from mfpde.problem.schedules import evaluate as schedule_at

HEADER = 8
PER = 9


@njit
def work_size(lay, M):
    """Length of the work buffer for ``M`` data points."""
    L = lay[0]
    n = 0
    for i in range(L):
        n += 5 * M * lay[HEADER + PER * i]
    return n + 3 * M * lay[2] + 2 * lay[2]


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


@njit(inline="always")
def _activate_row(m, H, A, P, S, b, w, code, fns):
    Q = H.shape[1]
    if code == TANH:   # a loop of its own so that LLVM vectorizes tanh_fast
        if b.shape[0] > 0:
            for q in range(Q):
                H[m, q] += b[q]
        for q in range(Q):
            t = tanh_fast(H[m, q])
            A[m, q] = t
            P[m, q] = 1.0 - t * t
            S[m, q] = t * w[q]
    elif b.shape[0] > 0:
        for q in range(Q):
            h = H[m, q] + b[q]
            H[m, q] = h
            a, da = phi_dphi(code, h, fns)
            A[m, q] = a
            P[m, q] = da
            S[m, q] = a * w[q]
    else:
        for q in range(Q):
            a, da = phi_dphi(code, H[m, q], fns)
            A[m, q] = a
            P[m, q] = da
            S[m, q] = a * w[q]


@njit(parallel=True)
def _activate_parallel(H, A, P, S, b, w, code, fns):
    for m in prange(H.shape[0]):
        _activate_row(m, H, A, P, S, b, w, code, fns)


@njit
def _activate(H, A, P, S, b, w, code, fns):
    """Fused pass: H += b (if given); A = φ(H), P = φ'(H), S = A·ω (rows in parallel if large)."""
    if H.size >= PARALLEL_MIN:
        _activate_parallel(H, A, P, S, b, w, code, fns)
    elif code == TANH:
        # small arrays: one long vectorized loop over all entries, then the ω scaling
        M, Q = H.shape
        if b.shape[0] > 0:
            for m in range(M):
                for q in range(Q):
                    H[m, q] += b[q]
        h = H.reshape(M * Q)
        a = A.reshape(M * Q)
        p = P.reshape(M * Q)
        for i in range(M * Q):
            t = tanh_fast(h[i])
            a[i] = t
            p[i] = 1.0 - t * t
        for m in range(M):
            for q in range(Q):
                S[m, q] = A[m, q] * w[q]
    else:
        for m in range(H.shape[0]):
            _activate_row(m, H, A, P, S, b, w, code, fns)


@njit(inline="always")
def _backprop_row(m, G, P, H, w, scale):
    for q in range(G.shape[1]):
        g = G[m, q] * P[m, q]
        H[m, q] = g * w[q]
        P[m, q] = scale * g


@njit(parallel=True)
def _backprop_parallel(G, P, H, w, scale):
    for m in prange(G.shape[0]):
        _backprop_row(m, G, P, H, w, scale)


@njit
def _backprop(G, P, H, w, scale):
    """Fused pass: δ = G·φ'; H = δ·ω (for the next backward product); P = scale·δ."""
    if G.size >= PARALLEL_MIN:
        _backprop_parallel(G, P, H, w, scale)
    else:
        for m in range(G.shape[0]):
            _backprop_row(m, G, P, H, w, scale)


@njit
def _colsum(P, out):
    M, Q = P.shape
    out[:] = 0.0
    for m in range(M):
        for q in range(Q):
            out[q] += P[m, q]


@njit
def forward(y, lay, omega, X, work, fns):
    """Pre-activations, activations and derivatives of every layer for inputs X [M, d]."""
    L = lay[0]
    d = lay[1]
    K = lay[2]
    M = X.shape[0]
    off = 0
    offS = 0
    Qp = d
    for i in range(L):
        Q, code, hasb, oW, ob, oo = _layer(lay, i)
        H = _buf(work, off, M, Q)
        A = _buf(work, off + M * Q, M, Q)
        P = _buf(work, off + 2 * M * Q, M, Q)
        S = _buf(work, off + 3 * M * Q, M, Q)
        if i == 0:
            W = y[oW:oW + Q * d].reshape((Q, d))
            np.dot(X, W.T, H)
        elif _general_edge(lay, i):
            ecode, R, orho = _edge(lay, i)
            W3 = y[oW:oW + R * Qp * Q].reshape((R, Qp, Q))
            _edge_forward(H, _buf(work, offS - 2 * M * Qp, M, Qp), omega[oo - Qp:oo], W3, omega[orho:orho + R], ecode)
        else:
            W = y[oW:oW + Qp * Q].reshape((Qp, Q))
            np.dot(_buf(work, offS, M, Qp), W, H)
        _activate(H, A, P, S, y[ob:ob + Q] if hasb else y[0:0], omega[oo:oo + Q], code, fns)
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


@njit
def output_loss(lay, lossp, Y, rho, work, fns, with_error=True):
    """Ŷ = φ_out(H_out), the ρ-weighted loss and error, and G_out = ρ ∂loss φ'_out (after forward)."""
    L = lay[0]
    K = lay[2]
    M = Y.shape[0]
    off = 0
    for i in range(L):
        off += 5 * M * lay[HEADER + PER * i]
    Hout = _buf(work, off, M, K)
    Gout = _buf(work, off + M * K, M, K)
    Yhat = _buf(work, off + 2 * M * K, M, K)
    code = lay[4]
    lcode = int(lossp[0])
    param = lossp[1]
    dphi = work[off + 3 * M * K:off + 3 * M * K + K]   # scratch (no allocation per call)
    grad = work[off + 3 * M * K + K:off + 3 * M * K + 2 * K]
    loss = 0.0
    err = 0.0
    for m in range(M):
        for k in range(K):
            a, da = phi_dphi(code, Hout[m, k], fns)
            Yhat[m, k] = a
            dphi[k] = da
        val = loss_grad(lcode, param, Y[m], Yhat[m], grad)
        loss += rho[m] * val
        if with_error:
            err += rho[m] * misclassified(Y[m], Yhat[m])
        for k in range(K):
            Gout[m, k] = rho[m] * grad[k] * dphi[k]
    return loss, err


@njit
def backward_drift(t, y, dy, lay, omega, X, sched, sched_flat, work):
    """SPEC §2's backward pass and the drift of every parameter into ``dy`` (after output_loss)."""
    L = lay[0]
    d = lay[1]
    K = lay[2]
    M = X.shape[0]
    off = 0
    for i in range(L):
        off += 5 * M * lay[HEADER + PER * i]
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
    # lowest layer whose parameters move at time t: below it no backward pass is needed
    lowest = L
    for i in range(L):
        base = HEADER + PER * i
        if schedule_at(sched, sched_flat, i, t) != 0.0 or (lay[base + 2] and schedule_at(sched, sched_flat, L + 1 + i, t) != 0.0):
            lowest = i
            break
    if lowest < L:
        np.dot(Gout, v.T, _buf(work, _layer_offset(lay, M, L - 1) + 4 * M * QL, M, QL))
    for i in range(L - 1, -1, -1):
        Q, code, hasb, oW, ob, oo = _layer(lay, i)
        Qp = d if i == 0 else lay[HEADER + PER * (i - 1)]
        xi = schedule_at(sched, sched_flat, i, t)
        xib = schedule_at(sched, sched_flat, L + 1 + i, t) if hasb else 0.0
        general = _general_edge(lay, i)
        ecode, R, orho = _edge(lay, i)
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
        scale = -xi if xi != 0.0 else 1.0
        _backprop(G, P, H, omega[oo:oo + Q], scale)
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
            if xi != 0.0 or i > lowest:
                _edge_back(P, H, Aprev, W3, omega[orho:orho + R], dy[oW:oW + R * Qp * Q].reshape((R, Qp, Q)),
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


@njit
def rhs(t, y, dy, sysargs):
    """dy = the drift of the discretized limit system at (t, y); returns the training loss at y."""
    lay, omega, X, Y, rho, sched, sched_flat, lossp, work, fns = sysargs
    forward(y, lay, omega, X, work, fns)
    loss, err = output_loss(lay, lossp, Y, rho, work, fns, False)
    backward_drift(t, y, dy, lay, omega, X, sched, sched_flat, work)
    return loss


@njit
def evaluate(y, lay, omega, X, Y, rho, lossp, work, fns, yhat_out):
    """(loss, error) of state ``y`` on data (X, Y, ρ); writes Ŷ into ``yhat_out`` [M, K]."""
    forward(y, lay, omega, X, work, fns)
    loss, err = output_loss(lay, lossp, Y, rho, work, fns)
    L = lay[0]
    K = lay[2]
    M = X.shape[0]
    off = 0
    for i in range(L):
        off += 5 * M * lay[HEADER + PER * i]
    yhat_out[:, :] = _buf(work, off + 2 * M * K, M, K)
    return loss, err

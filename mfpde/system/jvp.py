"""Analytic Jacobian–vector products of the limit right-hand side (System room).

For the drift F(t, y) of :func:`mfpde.system.kernels.rhs` this module computes J·u = ∂F/∂y (t, y)·u
by forward-mode differentiation of SPEC §2 written out by hand: the tangent of the forward
pass (dH_l, dφ_l = φ'_l·dH_l), of the output loss (dG_out = ρ [∂²loss·φ'_out² + ∂loss·φ''_out]·dH_out)
and of the backward pass and drift (dδ_l = dG_l·φ'_l + G_l·φ''_l·dH_l, with G_l the back-propagated
signal before the φ' factor).  Time t only enters through the schedules ξ(t), which are held
fixed (J is the Jacobian in y).

Two steps, so that many products at one state share the base pass:

* :func:`linearize` (≈ one RHS): forward pass, loss gradient, backward signals at (t, y), all
  stored in the JVP work buffer ``jwork`` (length :func:`work_size`), never in the RHS work
  buffer, so right-hand-side calls in between do not disturb it;
* :func:`apply` (≈ two RHS: every BLAS product of the RHS appears twice): ``Ju = J·u``.

:func:`jvp` does both; :func:`jacobian` assembles the dense N × N Jacobian column by column
(one linearization, N products).  The arguments are the RHS's ``sysargs`` tuple plus ``jwork``.

Not covered (the callers fall back to a finite-difference JVP, see :func:`supported`): layers
with nonlinear edge maps or an initial-weight index (R > 1), when :mod:`mfpde.system.kernels` has
them.  User activations have no φ'' in the registry: it is taken by a central difference of
their φ' (relative accuracy ≈ 1e-10).  Imports numpy, mfpde._jit, mfpde.problem.activations,
mfpde.system.kernels (layout accessors), mfpde.problem.losses and mfpde.problem.schedules only.
"""
from __future__ import annotations

import math

import numpy as np

from mfpde.system import kernels
from mfpde._jit import njit
from mfpde.problem.activations import ERF, GELU, IDENTITY, RELU, SIGMOID, SOFTPLUS, TANH, phi_dphi
from mfpde.problem.losses import HUBER, LOGISTIC, MSE, SQUARED, loss_grad
from mfpde.problem.schedules import evaluate as schedule_at

HEADER = kernels.HEADER
PER = kernels.PER
_layer = kernels._layer

# per hidden layer: base A, P, P2, S, G, D, Dw; tangent dH, dA, dS, dG, dD, T  (each [M, Q])
NBASE, NTAN = 7, 6
_INV_SQRT2PI = 1.0 / math.sqrt(2.0 * math.pi)
_TWO_OVER_SQRTPI = 2.0 / math.sqrt(math.pi)


@njit
def work_size(lay, M):
    """Length of the JVP work buffer for ``M`` data points."""
    L = lay[0]
    K = lay[2]
    n = 0
    for i in range(L):
        n += (NBASE + NTAN) * M * lay[HEADER + PER * i]
    return n + 8 * M * K + 2 * K


@njit
def phi_3(code, x, fns):
    """(φ, φ', φ'') of activation ``code`` (user codes: φ'' by a central difference of φ')."""
    if code == TANH:
        a, da = phi_dphi(code, x, fns)
        return a, da, -2.0 * a * da
    if code == IDENTITY:
        return x, 1.0, 0.0
    if code == RELU:
        a, da = phi_dphi(code, x, fns)
        return a, da, 0.0
    if code == SIGMOID:
        a, da = phi_dphi(code, x, fns)
        return a, da, da * (1.0 - 2.0 * a)
    if code == ERF:
        a, da = phi_dphi(code, x, fns)
        return a, da, -2.0 * x * da
    if code == SOFTPLUS:
        a, da = phi_dphi(code, x, fns)     # da = σ(x)
        return a, da, da * (1.0 - da)
    if code == GELU:
        a, da = phi_dphi(code, x, fns)
        return a, da, (2.0 - x * x) * _INV_SQRT2PI * math.exp(-0.5 * x * x)
    a, da = phi_dphi(code, x, fns)
    h = 1e-5 * max(1.0, abs(x))
    _, dp = phi_dphi(code, x + h, fns)
    _, dm = phi_dphi(code, x - h, fns)
    return a, da, (dp - dm) / (2.0 * h)


@njit(inline="always")
def _blk(jwork, off, M, Q, k):
    return jwork[off + k * M * Q:off + (k + 1) * M * Q].reshape((M, Q))


@njit
def _offsets(lay, M):
    L = lay[0]
    offs = np.empty(L + 1, dtype=np.int64)
    off = 0
    for i in range(L):
        offs[i] = off
        off += (NBASE + NTAN) * M * lay[HEADER + PER * i]
    offs[L] = off
    return offs


# indices of the blocks inside one layer's region
A_, P_, P2_, S_, G_, D_, DW_, dH_, dA_, dS_, dG_, dD_, T_ = range(13)


@njit
def linearize(t, y, sysargs, jwork):
    """Base pass at (t, y) into ``jwork``: φ, φ', φ'', S = φ·ω, G_l, δ_l, δ_l·ω_l, output terms.

    Returns the training loss at y.
    """
    lay, omega, X, Y, rho, sched, sched_flat, lossp, work, fns = sysargs[:10]
    L = lay[0]
    d = lay[1]
    K = lay[2]
    M = X.shape[0]
    offs = _offsets(lay, M)
    # forward
    for i in range(L):
        Q, code, hasb, oW, ob, oo = _layer(lay, i)
        off = offs[i]
        A = _blk(jwork, off, M, Q, A_)
        P = _blk(jwork, off, M, Q, P_)
        P2 = _blk(jwork, off, M, Q, P2_)
        S = _blk(jwork, off, M, Q, S_)
        H = _blk(jwork, off, M, Q, T_)           # pre-activations (scratch)
        if i == 0:
            np.dot(X, y[oW:oW + Q * d].reshape((Q, d)).T, H)
        else:
            Qp = lay[HEADER + PER * (i - 1)]
            np.dot(_blk(jwork, offs[i - 1], M, Qp, S_), y[oW:oW + Qp * Q].reshape((Qp, Q)), H)
        for m in range(M):
            for q in range(Q):
                h = H[m, q]
                if hasb:
                    h += y[ob + q]
                a, da, dda = phi_3(code, h, fns)
                A[m, q] = a
                P[m, q] = da
                P2[m, q] = dda
                S[m, q] = a * omega[oo + q]
    QL = lay[HEADER + PER * (L - 1)]
    oo_ = offs[L]
    Hout = jwork[oo_:oo_ + M * K].reshape((M, K))
    Gout = jwork[oo_ + M * K:oo_ + 2 * M * K].reshape((M, K))
    Yhat = jwork[oo_ + 2 * M * K:oo_ + 3 * M * K].reshape((M, K))
    D1 = jwork[oo_ + 3 * M * K:oo_ + 4 * M * K].reshape((M, K))     # φ'_out
    D2 = jwork[oo_ + 4 * M * K:oo_ + 5 * M * K].reshape((M, K))     # φ''_out
    Gr = jwork[oo_ + 5 * M * K:oo_ + 6 * M * K].reshape((M, K))     # ∂loss/∂ŷ
    ov = lay[6]
    v = y[ov:ov + QL * K].reshape((QL, K))
    np.dot(_blk(jwork, offs[L - 1], M, QL, S_), v, Hout)
    ocode = lay[4]
    lcode = int(lossp[0])
    param = lossp[1]
    loss = 0.0
    for m in range(M):
        for k in range(K):
            h = Hout[m, k]
            if lay[5]:
                h += y[lay[7] + k]
                Hout[m, k] = h
            a, da, dda = phi_3(ocode, h, fns)
            Yhat[m, k] = a
            D1[m, k] = da
            D2[m, k] = dda
        loss += rho[m] * loss_grad(lcode, param, Y[m], Yhat[m], Gr[m])
        for k in range(K):
            Gout[m, k] = rho[m] * Gr[m, k] * D1[m, k]
    # backward signals: G_L = G_out vᵀ, δ_l = G_l φ'_l, G_{l−1} = (δ_l ω_l) W_lᵀ
    for i in range(L - 1, -1, -1):
        Q, code, hasb, oW, ob, oo = _layer(lay, i)
        off = offs[i]
        G = _blk(jwork, off, M, Q, G_)
        D = _blk(jwork, off, M, Q, D_)
        Dw = _blk(jwork, off, M, Q, DW_)
        P = _blk(jwork, off, M, Q, P_)
        if i == L - 1:
            np.dot(Gout, v.T, G)
        else:
            Qn, _c, _b, oWn, _ob, _oo = _layer(lay, i + 1)
            np.dot(_blk(jwork, offs[i + 1], M, Qn, DW_), y[oWn:oWn + Q * Qn].reshape((Q, Qn)).T, G)
        for m in range(M):
            for q in range(Q):
                dl = G[m, q] * P[m, q]
                D[m, q] = dl
                Dw[m, q] = dl * omega[oo + q]
    return loss


@njit
def _loss_hess(lcode, param, y, yhat, u, out):
    """out = (∂²loss/∂ŷ²)(y, ŷ)·u for one sample."""
    K = y.shape[0]
    if lcode == SQUARED or lcode == MSE:
        c = 1.0 if lcode == SQUARED else 2.0
        for k in range(K):
            out[k] = c * u[k]
    elif lcode == HUBER:
        for k in range(K):
            out[k] = u[k] if abs(yhat[k] - y[k]) <= param else 0.0
    elif lcode == LOGISTIC:
        for k in range(K):
            mm = y[k] * yhat[k]
            if mm >= 0.0:
                e = math.exp(-mm)
                s = e / (1.0 + e)
            else:
                s = 1.0 / (1.0 + math.exp(mm))
            out[k] = y[k] * y[k] * s * (1.0 - s) * u[k]
    else:   # softmax_ce: Σy (diag(p) − p pᵀ) u
        mx = yhat[0]
        for k in range(1, K):
            mx = max(mx, yhat[k])
        z = 0.0
        for k in range(K):
            z += math.exp(yhat[k] - mx)
        ysum = 0.0
        pu = 0.0
        for k in range(K):
            ysum += y[k]
            pu += math.exp(yhat[k] - mx) / z * u[k]
        for k in range(K):
            p = math.exp(yhat[k] - mx) / z
            out[k] = ysum * p * (u[k] - pu)


@njit
def apply(t, y, u, Ju, sysargs, jwork):
    """Ju = J(t, y)·u after :func:`linearize` at (t, y)."""
    lay, omega, X, Y, rho, sched, sched_flat, lossp, work, fns = sysargs[:10]
    L = lay[0]
    d = lay[1]
    K = lay[2]
    M = X.shape[0]
    offs = _offsets(lay, M)
    # tangent forward: dH_l, dA_l = φ'·dH_l, dS_l = dA_l·ω_l
    for i in range(L):
        Q, code, hasb, oW, ob, oo = _layer(lay, i)
        off = offs[i]
        dH = _blk(jwork, off, M, Q, dH_)
        dA = _blk(jwork, off, M, Q, dA_)
        dS = _blk(jwork, off, M, Q, dS_)
        T = _blk(jwork, off, M, Q, T_)
        P = _blk(jwork, off, M, Q, P_)
        if i == 0:
            np.dot(X, u[oW:oW + Q * d].reshape((Q, d)).T, dH)
        else:
            Qp = lay[HEADER + PER * (i - 1)]
            np.dot(_blk(jwork, offs[i - 1], M, Qp, dS_), y[oW:oW + Qp * Q].reshape((Qp, Q)), dH)
            np.dot(_blk(jwork, offs[i - 1], M, Qp, S_), u[oW:oW + Qp * Q].reshape((Qp, Q)), T)
            for m in range(M):
                for q in range(Q):
                    dH[m, q] += T[m, q]
        for m in range(M):
            for q in range(Q):
                h = dH[m, q]
                if hasb:
                    h += u[ob + q]
                    dH[m, q] = h
                a = P[m, q] * h
                dA[m, q] = a
                dS[m, q] = a * omega[oo + q]
    QL = lay[HEADER + PER * (L - 1)]
    oo_ = offs[L]
    Gout = jwork[oo_ + M * K:oo_ + 2 * M * K].reshape((M, K))
    Yhat = jwork[oo_ + 2 * M * K:oo_ + 3 * M * K].reshape((M, K))
    D1 = jwork[oo_ + 3 * M * K:oo_ + 4 * M * K].reshape((M, K))
    D2 = jwork[oo_ + 4 * M * K:oo_ + 5 * M * K].reshape((M, K))
    Gr = jwork[oo_ + 5 * M * K:oo_ + 6 * M * K].reshape((M, K))
    dHout = jwork[oo_ + 6 * M * K:oo_ + 7 * M * K].reshape((M, K))
    dGout = jwork[oo_ + 7 * M * K:oo_ + 8 * M * K].reshape((M, K))
    s1 = jwork[oo_ + 8 * M * K:oo_ + 8 * M * K + K]
    s2 = jwork[oo_ + 8 * M * K + K:oo_ + 8 * M * K + 2 * K]
    ov = lay[6]
    v = y[ov:ov + QL * K].reshape((QL, K))
    dv = u[ov:ov + QL * K].reshape((QL, K))
    np.dot(_blk(jwork, offs[L - 1], M, QL, dS_), v, dHout)
    np.dot(_blk(jwork, offs[L - 1], M, QL, S_), dv, dGout)    # scratch
    lcode = int(lossp[0])
    param = lossp[1]
    for m in range(M):
        for k in range(K):
            h = dHout[m, k] + dGout[m, k]
            if lay[5]:
                h += u[lay[7] + k]
            dHout[m, k] = h
            s1[k] = D1[m, k] * h           # dŷ
        _loss_hess(lcode, param, Y[m], Yhat[m], s1, s2)
        for k in range(K):
            dGout[m, k] = rho[m] * (s2[k] * D1[m, k] + Gr[m, k] * D2[m, k] * dHout[m, k])
    # tangent drift of v and b_out
    AL = _blk(jwork, offs[L - 1], M, QL, A_)
    dAL = _blk(jwork, offs[L - 1], M, QL, dA_)
    Jv = Ju[ov:ov + QL * K].reshape((QL, K))
    xi = schedule_at(sched, sched_flat, L, t)
    if xi != 0.0:
        np.dot(dAL.T, Gout, Jv)
        tmpv = np.empty((QL, K))
        np.dot(AL.T, dGout, tmpv)
        for q in range(QL):
            for k in range(K):
                Jv[q, k] = -xi * (Jv[q, k] + tmpv[q, k])
    else:
        Jv[:, :] = 0.0
    if lay[5]:
        xib = schedule_at(sched, sched_flat, 2 * L + 1, t)
        for k in range(K):
            acc = 0.0
            for m in range(M):
                acc += dGout[m, k]
            Ju[lay[7] + k] = -xib * acc
    # lowest layer whose parameters move: below it no tangent backward pass is needed
    lowest = L
    for i in range(L):
        base = HEADER + PER * i
        if schedule_at(sched, sched_flat, i, t) != 0.0 or (lay[base + 2] and schedule_at(sched, sched_flat, L + 1 + i, t) != 0.0):
            lowest = i
            break
    for i in range(L - 1, -1, -1):
        Q, code, hasb, oW, ob, oo = _layer(lay, i)
        Qp = d if i == 0 else lay[HEADER + PER * (i - 1)]
        xi = schedule_at(sched, sched_flat, i, t)
        xib = schedule_at(sched, sched_flat, L + 1 + i, t) if hasb else 0.0
        JW = Ju[oW:oW + Qp * Q].reshape((Qp, Q))
        if i < lowest:
            JW[:, :] = 0.0
            if hasb:
                Ju[ob:ob + Q] = 0.0
            continue
        off = offs[i]
        dG = _blk(jwork, off, M, Q, dG_)
        dD = _blk(jwork, off, M, Q, dD_)
        T = _blk(jwork, off, M, Q, T_)
        G = _blk(jwork, off, M, Q, G_)
        D = _blk(jwork, off, M, Q, D_)
        P = _blk(jwork, off, M, Q, P_)
        P2 = _blk(jwork, off, M, Q, P2_)
        dH = _blk(jwork, off, M, Q, dH_)
        # dG_l
        if i == L - 1:
            np.dot(dGout, v.T, dG)
            np.dot(Gout, dv.T, T)
        else:
            Qn, _c, _b, oWn, _ob, _oo = _layer(lay, i + 1)
            offn = offs[i + 1]
            Wn = y[oWn:oWn + Q * Qn].reshape((Q, Qn))
            dWn = u[oWn:oWn + Q * Qn].reshape((Q, Qn))
            # T of layer i+1 holds dδ_{i+1}·ω_{i+1} (written below when layer i+1 was done)
            np.dot(_blk(jwork, offn, M, Qn, T_), Wn.T, dG)
            np.dot(_blk(jwork, offn, M, Qn, DW_), dWn.T, T)
        for m in range(M):
            for q in range(Q):
                g = dG[m, q] + T[m, q]
                dG[m, q] = g
                dD[m, q] = g * P[m, q] + G[m, q] * P2[m, q] * dH[m, q]
        # drift tangents of W_l (w_1) and b_l
        if xi == 0.0:
            JW[:, :] = 0.0
        elif i == 0:
            Jw1 = Ju[oW:oW + Q * d].reshape((Q, d))
            np.dot(dD.T, X, Jw1)
            for q in range(Q):
                for j in range(d):
                    Jw1[q, j] *= -xi
        else:
            offp = offs[i - 1]
            np.dot(_blk(jwork, offp, M, Qp, dA_).T, D, JW)
            tmpW = np.empty((Qp, Q))
            np.dot(_blk(jwork, offp, M, Qp, A_).T, dD, tmpW)
            for q in range(Qp):
                for r in range(Q):
                    JW[q, r] = -xi * (JW[q, r] + tmpW[q, r])
        if hasb:
            for q in range(Q):
                acc = 0.0
                for m in range(M):
                    acc += dD[m, q]
                Ju[ob + q] = -xib * acc
        if i > lowest:
            # the next layer down reads dδ_l·ω_l from T
            for m in range(M):
                for q in range(Q):
                    T[m, q] = dD[m, q] * omega[oo + q]
    return 0


@njit
def jvp(t, y, u, Ju, sysargs, jwork):
    """Ju = J(t, y)·u (one linearization and one product); returns the training loss at y."""
    loss = linearize(t, y, sysargs, jwork)
    apply(t, y, u, Ju, sysargs, jwork)
    return loss


@njit
def jacobian(t, y, J, sysargs, jwork, ubuf, col):
    """Dense Jacobian J [N, N] at (t, y): one linearization, N products with unit vectors."""
    N = y.shape[0]
    linearize(t, y, sysargs, jwork)
    ubuf[:] = 0.0
    for j in range(N):
        ubuf[j] = 1.0
        apply(t, y, ubuf, col, sysargs, jwork)
        ubuf[j] = 0.0
        for k in range(N):
            J[k, j] = col[k]


def supported(system) -> tuple[bool, str]:
    """(True, "") when the analytic JVP covers ``system``; else (False, why) — use the FD JVP."""
    if getattr(system, "reduction", None) is not None:
        return False, "the reduced first layer (SPEC §7) is not in the analytic JVP (finite differences used)"
    lay = system.lay
    general = getattr(kernels, "_general_edge", None)
    if general is not None:
        for i in range(int(lay[0])):
            if general.py_func(lay, i):
                return False, (f"hidden layer {i + 1} has a nonlinear edge map or an initial-weight index; "
                               "the analytic JVP covers linear edges only (finite differences used)")
    return True, ""


def fd_jvp(system, t: float, y: np.ndarray, u: np.ndarray, f0: np.ndarray | None = None, *, central: bool = False,
           h: float | None = None) -> np.ndarray:
    """Finite-difference J·u: forward (one RHS, given f0) or central (two RHS) — the one FD formula.

    Step ``h``, unless given: sqrt(eps)·(1 + ‖y‖)/‖u‖ (forward) or eps^(1/3)·(1 + ‖y‖)/‖u‖ (central).
    """
    if h is None:
        nu = float(np.linalg.norm(u))
        if nu == 0.0:
            return np.zeros_like(y)
        ny = float(np.linalg.norm(y))
        h = (np.finfo(float).eps ** (1 / 3) if central else math.sqrt(np.finfo(float).eps)) * (1.0 + ny) / nu
    if central:
        return (system.rhs(t, y + h * u) - system.rhs(t, y - h * u)) / (2 * h)
    if f0 is None:
        f0 = system.rhs(t, y)
    return (system.rhs(t, y + h * u) - f0) / h


def fd_jacobian(system, t: float, y: np.ndarray, J: np.ndarray, f0: np.ndarray | None = None) -> np.ndarray:
    """Dense forward-difference Jacobian into ``J`` (N × N): column j is :func:`fd_jvp` along e_j
    with the per-component step sqrt(eps)·max(1, |y_j|) (N RHS, one more without ``f0``)."""
    if f0 is None:
        f0 = system.rhs(t, y)
    u = np.zeros(y.shape[0])
    for j in range(y.shape[0]):
        u[j] = 1.0
        J[:, j] = fd_jvp(system, t, y, u, f0, h=math.sqrt(np.finfo(float).eps) * max(1.0, abs(y[j])))
        u[j] = 0.0
    return J


__all__ = ["work_size", "linearize", "apply", "jvp", "jacobian", "supported", "fd_jvp", "fd_jacobian", "phi_3"]

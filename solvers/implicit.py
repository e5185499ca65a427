"""Implicit (diagonally implicit Runge–Kutta) steppers for stiff layer rates (Stepper room).

Registered: ``backward_euler`` (order 1, L-stable) and ``implicit_midpoint`` (order 2,
A-stable, symplectic) with a fixed step, and ``sdirk4`` (Hairer–Wanner's L-stable,
stiffly accurate 5-stage SDIRK of order 4 with an embedded order-3 solution, γ = 1/4) with
error control.  Every stage solves  Z − hγ f(t + c h, Z) = ψ  by a simplified Newton
iteration with the Jacobian J = ∂f/∂y frozen at a linearization point (t_J, y_J):

* ``linear_solver = "dense"``: J assembled from N analytic Jacobian–vector products
  (:mod:`mfpde.system.jvp`), LU of (I − hγJ) by LAPACK; J and the LU are kept across steps and
  refreshed only when Newton converges slowly (rate > ``theta_refresh``) or fails (modified
  Newton, as in Hairer's RADAU5/SDIRK4 codes);
* ``"gmres"``: matrix-free, each Krylov iteration one JVP at (t_J, y_J);
* ``"minres"``: the same operator made symmetric: the drift is −Ξ M⁻¹ ∇R (M = products of rule
  weights, Ξ = per-block rates), so D⁻¹J with D = Ξ M⁻¹ is the (negative) Hessian of the risk and
  D^{-1/2}(I − hγJ)D^{1/2} is symmetric; MINRES runs on it (positive rule weights required);
* ``"auto"``: dense up to ``dense_max`` unknowns, else minres (gmres where the symmetry does
  not hold: zero-weight tracer nodes or nonlinear edges).

``jacobian = "fd"`` replaces the analytic JVPs by forward differences (one RHS each, the
one FD formula :func:`mfpde.system.jvp.fd_jvp`; also the automatic fallback where
:func:`mfpde.system.jvp.supported` says no).  The stage Newton loop exists once, compiled
(:func:`dirk_stages`): dense mode solves with the LU inside it, the Krylov modes answer its
requests for a solve with SciPy's GMRES/MINRES (reverse communication).  Only the
fixed-step last resort (a damped Newton re-linearized at every iterate) is Python.  The
sdirk4 accept/reject loop is Python on the shared controller of :mod:`mfpde.solvers.stepsize`.

Statistics: steps, rejected, rhs_evals, jvps (J·u products, analytic or FD), linearizations
(base passes of the analytic JVP, ≈ 1 RHS each), jacobians (dense assemblies), lu
(factorizations), newton_iterations, linear_iterations, newton_failures, and
rhs_equivalent = rhs_evals + jvps + linearizations.  Imports numpy, scipy, mfpde._jit,
mfpde.system.kernels, mfpde.system.jvp, mfpde.errors and solvers.base/explicit/tableaux/stepsize.
"""
from __future__ import annotations

import math

import numpy as np

from mfpde.system import jvp as J_
from mfpde.system import kernels
from mfpde._jit import njit
from mfpde.errors import ConfigError
from mfpde.solvers import tableaux
from mfpde.solvers.base import (BOUND, BOUND_OPTION, ERROR_CONTROL_OPTIONS, MAX_STEPS, NEWTON, NONFINITE, OK, SOLVE,
                                STEP_OPTION, STEP_SIZE, Advance, Option, Stepper, error_control, register)
from mfpde.solvers.explicit import FixedGrid
from mfpde.solvers.stepsize import Controller, accept_step, initial_step, landing, retry_step
from mfpde.solvers.tableaux import ButcherTableau

DirkTableau = ButcherTableau     # the name this module used to export

DIRK_TABLEAUX: dict[str, ButcherTableau] = {}
tableaux.add(DIRK_TABLEAUX, "backward_euler", [[1.0]], [1.0])
tableaux.add(DIRK_TABLEAUX, "implicit_midpoint", [[0.5]], [1.0])
# Hairer & Wanner, Solving ODEs II, Table IV.6.5 (SDIRK4, L-stable, stiffly accurate)
tableaux.add(DIRK_TABLEAUX, "sdirk4",
             [[1 / 4, 0, 0, 0, 0],
              [1 / 2, 1 / 4, 0, 0, 0],
              [17 / 50, -1 / 25, 1 / 4, 0, 0],
              [371 / 1360, -137 / 2720, 15 / 544, 1 / 4, 0],
              [25 / 24, -49 / 48, 125 / 16, -85 / 12, 1 / 4]],
             [25 / 24, -49 / 48, 125 / 16, -85 / 12, 1 / 4],
             [59 / 48, -17 / 96, 225 / 32, -85 / 12, 0])


@njit
def _lu_solve(lu, piv, b):
    """Solve with LAPACK getrf factors (scipy.linalg.lu_factor: 0-based sequential row swaps) in place."""
    N = b.shape[0]
    for i in range(N):
        p = piv[i]
        if p != i:
            tmp = b[i]
            b[i] = b[p]
            b[p] = tmp
    for i in range(N):
        acc = b[i]
        for j in range(i):
            acc -= lu[i, j] * b[j]
        b[i] = acc
    for i in range(N - 1, -1, -1):
        acc = b[i]
        for j in range(i + 1, N):
            acc -= lu[i, j] * b[j]
        b[i] = acc / lu[i, i]


# memory of the stage iteration between the calls of one step (reverse communication)
M_STAGE, M_ITER, M_PREV, M_ETA, M_THETA, M_RHS, M_NIT, M_PHASE = range(8)
P_NEW_STEP, P_NEW_STAGE, P_ITERATE, P_SOLVED = 0, 1, 2, 3


@njit
def dirk_stages(y, t, h, a, c, K, fprev, Z, psi, fz, dZ, lu, piv, sc, maxiter, sysargs, mem):
    """The stages of one DIRK step by simplified Newton with J frozen: the one Newton stage loop.

    Stage i solves Z − hγ_i f(t + c_i h, Z) = ψ_i = y + h Σ_{j<i} a_ij K_j from the predictor
    ψ_i + hγ_i K_{i−1} (``fprev`` for the first stage); each iteration solves
    (I − hγ_i J) ΔZ = −(Z − ψ_i − hγ_i f(Z)) and stops when η‖ΔZ‖ ≤ 1 in the norm scaled by
    ``sc`` (η = θ/(1 − θ), θ the contraction rate, carried between stages as in Hairer's codes),
    or fails at θ ≥ 0.99 or after ``maxiter`` iterations.

    The linear solves: with ``lu`` the N × N getrf factors of (I − hγJ) (a constant diagonal γ)
    they happen here; with an empty ``lu`` (Krylov modes) the loop returns SOLVE with the
    right-hand side in ``dZ``, the caller overwrites ``dZ`` with the solution for
    hγ = h·a[i, i] (i = ``mem[M_STAGE]``) and calls again with the same arguments (reverse
    communication).  ``mem`` carries the iteration between those calls; set it to 0 except
    ``mem[M_ETA]`` = η of the last step before the first call.  Returns OK (``K`` holds the stage
    derivatives (Z − ψ)/(hγ), ``Z`` the last stage), NEWTON, NONFINITE or SOLVE; ``mem`` then
    holds the largest θ, η, the RHS evaluations and the Newton iterations of the step.
    """
    s = a.shape[0]
    N = y.shape[0]
    dense = lu.shape[0] == N
    i = int(mem[M_STAGE])
    it = int(mem[M_ITER])
    prev = mem[M_PREV]
    eta = mem[M_ETA]
    theta_max = mem[M_THETA]
    nrhs = mem[M_RHS]
    nit = mem[M_NIT]
    phase = int(mem[M_PHASE])
    if phase == P_NEW_STEP:
        eta = max(eta, 1e-16) ** 0.8
        phase = P_NEW_STAGE
    status = OK
    while i < s:
        hg = h * a[i, i]
        if phase == P_NEW_STAGE:
            for k in range(N):
                acc = y[k]
                for j in range(i):
                    acc += h * a[i, j] * K[j, k]
                psi[k] = acc
                Z[k] = acc + hg * (K[i - 1, k] if i > 0 else fprev[k])
            prev = -1.0
            it = 0
            phase = P_ITERATE
        if phase == P_ITERATE:
            if it >= maxiter:
                status = NEWTON
                break
            kernels.rhs(t + c[i] * h, Z, fz, sysargs)
            nrhs += 1
            finite = True
            for k in range(N):
                r = -(Z[k] - psi[k] - hg * fz[k])
                if not math.isfinite(r):
                    finite = False
                dZ[k] = r
            if not finite:
                status = NONFINITE
                break
            if not dense:
                phase = P_SOLVED
                status = SOLVE
                break
            _lu_solve(lu, piv, dZ)
        # dZ = (I − hγJ)⁻¹ r: update, then the convergence test
        phase = P_ITERATE
        nit += 1
        ss = 0.0
        for k in range(N):
            Z[k] += dZ[k]
            q = dZ[k] / sc[k]
            ss += q * q
        nrm = math.sqrt(ss / N)
        if not math.isfinite(nrm):
            status = NONFINITE
            break
        if prev >= 0.0:
            theta = nrm / prev if prev > 0 else 0.0
            theta_max = max(theta_max, theta)
            if theta >= 0.99:
                status = NEWTON
                break
            eta = theta / (1.0 - theta)
        if eta * nrm <= 1.0:
            for k in range(N):
                K[i, k] = (Z[k] - psi[k]) / hg
            i += 1
            phase = P_NEW_STAGE
        else:
            prev = nrm
            it += 1
    mem[M_STAGE] = i
    mem[M_ITER] = it
    mem[M_PREV] = prev
    mem[M_ETA] = eta
    mem[M_THETA] = theta_max
    mem[M_RHS] = nrhs
    mem[M_NIT] = nit
    mem[M_PHASE] = phase
    return status


LINEAR_SOLVERS = ("auto", "dense", "gmres", "minres")
JACOBIANS = ("analytic", "fd")
NEWTON_OPTIONS = {"bound": BOUND_OPTION, "linear_solver": Option.choice(*LINEAR_SOLVERS),
                  "jacobian": Option.choice(*JACOBIANS), "newton_tol": Option.number(strict=True),
                  "newton_maxiter": Option.integer(1, 100), "theta_refresh": Option.number(strict=True, high=1.0),
                  "krylov_rtol": Option.number(strict=True, high=1.0), "krylov_maxiter": Option.integer(1, 100_000),
                  "dense_max": Option.integer(1, 100_000)}


class ImplicitDIRK(Stepper):
    """Common machinery: Newton on the stages, Jacobian / LU / Krylov management, statistics."""

    tableau: ButcherTableau

    def _setup(self, system, bound, linear_solver, jacobian, newton_tol, newton_maxiter, theta_refresh,
               krylov_rtol, krylov_maxiter, dense_max):
        opt = self.check_option
        self.bound = opt("bound", bound)
        self.linear_solver = opt("linear_solver", linear_solver)
        self.jacobian = opt("jacobian", jacobian)
        self.newton_tol = opt("newton_tol", newton_tol)
        self.newton_maxiter = opt("newton_maxiter", newton_maxiter)
        self.theta_refresh = opt("theta_refresh", theta_refresh)
        self.krylov_rtol = opt("krylov_rtol", krylov_rtol)
        self.krylov_maxiter = opt("krylov_maxiter", krylov_maxiter)
        self.dense_max = opt("dense_max", dense_max)
        N = system.size
        tb = self.tableau
        # (bit for bit with the code before tableaux.py: sdirk4's row sum c_s is 1 + 2⁻⁵⁰, so
        # this is False for it and y_new is y + h Σ b_i K_i; see docs/steppers.md)
        self._stiffly_accurate = tb.stiffly_accurate
        self.notes = []
        ok, why = J_.supported(system)
        if self.jacobian == "analytic" and not ok:
            self.jacobian = "fd"
            self.notes.append(why)
        mode = self.linear_solver
        if mode == "minres" and not ok:
            mode = "gmres"
            self.notes.append("minres needs linear edges (the symmetrizing metric assumes them): gmres used")
        symmetric_ok = ok and bool(np.all(np.concatenate(system.weights) > 0))
        if mode == "auto":    # measured: dense wins at N = 168, MINRES at N = 1680 (docs/steppers.md)
            mode = "dense" if N <= self.dense_max else ("minres" if symmetric_ok else "gmres")
        self.mode = mode
        self.stats.update({"linearizations": 0, "jacobians": 0, "lu": 0, "newton_iterations": 0,
                           "linear_iterations": 0, "newton_failures": 0, "rhs_equivalent": 0})
        self._f = np.zeros(N)                 # f at the last accepted point (stage predictor)
        self._yJ = np.zeros(N)                # linearization point
        # persistent scalars: [J valid, t_J, hγ of the LU (0 = none), dt proposal, f valid, t of f]
        self._istate = np.zeros(6)
        self._K = np.zeros((tb.stages, N))
        self._fz = np.zeros(N)
        self._ynew = np.zeros(N)
        self._ylast = np.full(N, np.nan)
        self._Zbuf = np.zeros(N)
        self._psibuf = np.zeros(N)
        self._dZbuf = np.zeros(N)
        self._mem = np.zeros(8)               # the compiled stage loop's memory (dirk_stages)
        persistent = ["_f", "_yJ", "_istate", "_ylast", "_eta", "_theta", "_fresh"]
        if mode == "dense":
            if len(set(np.diag(tb.a))) != 1:
                raise ValueError(f"tableau {tb.name!r}: the dense Newton loop needs a constant diagonal")
            self._J = np.zeros((N, N))
            self._lu = np.zeros((N, N))
            self._piv = np.zeros(N, dtype=np.int32)
            persistent += ["_J", "_lu", "_piv"]
        else:                                 # no factors: dirk_stages asks for each solve
            self._lu = np.zeros((0, 0))
            self._piv = np.zeros(0, dtype=np.int32)
        if self.jacobian == "analytic":
            self._jwork = np.zeros(J_.work_size(system.lay, system.sysargs.X.shape[0]))
            persistent.append("_jwork")       # the linearization the Krylov modes' JVPs reuse
        if self.jacobian == "fd":
            self._fJ = np.zeros(N)
            persistent.append("_fJ")
        self._eta = 1.0                       # Newton's η = θ/(1 − θ) carried between stages (Hairer)
        self._theta = 0.0
        self._fresh = False
        if mode == "minres":
            self._dhalf = np.zeros(N)
            self._dmhalf = np.zeros(N)
            persistent += ["_dhalf", "_dmhalf"]
            w = np.concatenate(system.weights)
            if np.any(w <= 0):
                raise ConfigError("solver.linear_solver", "minres needs positive rule weights (zero-weight tracer "
                                                          "nodes break the symmetry); use gmres")
        self.persistent = tuple(self.persistent) + tuple(persistent)

    # ------------------------------------------------------------ counters
    def _count(self, key, n=1):
        self.stats[key] += n
        if key in ("rhs_evals", "jvps", "linearizations"):
            self.stats["rhs_equivalent"] += n

    def _rhs(self, t, y, out):
        self.system.rhs(t, y, out)
        self._count("rhs_evals")
        return out

    # ------------------------------------------------------------ Jacobian
    def _linearize(self, t, y):
        """Freeze J at (t, y): a dense Jacobian (dense mode) or the JVP base pass (Krylov)."""
        s = self.system
        N = s.size
        self._yJ[:] = y
        self._istate[0], self._istate[1], self._istate[2] = 1.0, t, 0.0
        if self.mode == "dense":
            if self.jacobian == "analytic":
                J_.jacobian(float(t), self._yJ, self._J, s.sysargs, self._jwork, np.zeros(N), np.zeros(N))
                self._count("linearizations")
                self._count("jvps", N)
            else:
                f0 = s.rhs(t, y)
                self._count("rhs_evals")
                J_.fd_jacobian(s, t, y, self._J, f0)
                self._count("jvps", N)
            self.stats["jacobians"] += 1
        elif self.jacobian == "analytic":
            J_.linearize(float(t), self._yJ, s.sysargs, self._jwork)
            self._count("linearizations")
        else:
            self._fJ[:] = s.rhs(t, self._yJ)
            self._count("rhs_evals")
        if self.mode == "minres":
            self._dhalf[:] = np.sqrt(self._metric(t))
            self._dmhalf[:] = np.where(self._dhalf > 0, 1.0 / np.where(self._dhalf > 0, self._dhalf, 1.0), 0.0)

    def _metric(self, t):
        """D = Ξ M⁻¹ per component: drift = −D ∇R (R the ρ-weighted risk)."""
        s = self.system
        p = s.problem
        m = p.model
        L = m.L
        sw, sb = p.schedules.weights, p.schedules.biases
        w = s.weights
        D = {"w_1": np.repeat((sw[0](t) / w[0])[:, None], m.input_dim, axis=1)}
        for l in range(2, L + 1):
            D[f"W_{l}"] = sw[l - 1](t) / np.outer(w[l - 2], w[l - 1])
        for l in range(1, L + 1):
            if m.biases[l - 1]:
                D[f"b_{l}"] = sb[l - 1](t) / w[l - 1]
        D["v"] = np.repeat((sw[L](t) / w[L - 1])[:, None], m.outputs, axis=1)
        if m.output_bias:
            D["b_out"] = np.full(m.outputs, sb[L](t))
        return s.layout.pack(D)

    def _Jv(self, u):
        s = self.system
        out = np.empty_like(u)
        tJ = float(self._istate[1])
        if self.jacobian == "analytic":
            J_.apply(tJ, self._yJ, np.ascontiguousarray(u), out, s.sysargs, self._jwork)
        else:
            out = J_.fd_jvp(s, tJ, self._yJ, u, self._fJ)
        self._count("jvps")
        return out

    def _factor(self, hg):
        """LU of (I − hγJ) into self._lu / self._piv unless it is already for this hγ."""
        if self._istate[2] != hg:
            N = self._J.shape[0]
            import scipy.linalg as sla   # lazily: only implicit solves need it

            lu, piv = sla.lu_factor(np.eye(N) - hg * self._J, overwrite_a=True, check_finite=False)
            self._lu[:] = lu
            self._piv[:] = piv
            self._istate[2] = hg
            self.stats["lu"] += 1

    def _solve(self, hg, r):
        """Δ with (I − hγJ) Δ = r."""
        N = r.shape[0]
        if self.mode == "dense":
            self._factor(hg)
            import scipy.linalg as sla

            return sla.lu_solve((self._lu, self._piv), r, check_finite=False)
        import scipy.sparse.linalg as spla   # lazily: only matrix-free implicit solves need it

        it = [0]

        def cb(_):
            it[0] += 1

        if self.mode == "gmres":
            op = spla.LinearOperator((N, N), matvec=lambda v: v - hg * self._Jv(v), dtype=float)
            x, info = spla.gmres(op, r, rtol=self.krylov_rtol, atol=0.0, restart=min(N, 50), maxiter=self.krylov_maxiter,
                                 callback=cb, callback_type="pr_norm")
        else:
            dh, dm = self._dhalf, self._dmhalf
            op = spla.LinearOperator((N, N), matvec=lambda v: v - hg * dm * self._Jv(dh * v), dtype=float)
            rr = np.where(dh > 0, dm * r, 0.0)
            z, info = spla.minres(op, rr, rtol=self.krylov_rtol, maxiter=self.krylov_maxiter, callback=cb)
            x = np.where(dh > 0, dh * z, r)
        self.stats["linear_iterations"] += it[0]
        return x

    # ------------------------------------------------------------ one step
    def _stage_scale(self, y):
        raise NotImplementedError

    def _step(self, y, t, h, ynew, err_out):
        """One DIRK step of size h from (t, y) into ``ynew``; returns a status (OK or NEWTON/NONFINITE).

        The Jacobian is refreshed once and the step retried if Newton fails with an old one.  An
        adaptive method then reduces h (its caller).  A fixed-step method (no step size to reduce)
        tries twice more before it reports a failure:

        1. from the trivial predictor Z = y: the default predictor y + hγ f(y) overshoots stiff
           components by up to hγρ, and Newton from there diverged (backward Euler, hρ ≈ 27);
        2. from Z = y with a full Newton, re-linearized at every iterate and damped (the step
           halved until the residual decreases): a Jacobian frozen at y contracts only linearly
           once Z moves far from y (θ ≈ 0.27 on the default problem at h = 0.2, 16 iterations
           needed; θ ≈ 0.84 at h = 0.5), full Newton converges quadratically in 3–6.

        A non-finite Newton iterate of a fixed step is retried the same way (y itself is finite).
        """
        attempt = 0                        # 0: default predictor, 1: Z = y, 2: Z = y, full Newton
        while True:
            if attempt:
                saved = self._f.copy()
                self._f[:] = 0.0           # first-stage predictor y + hγ·0 = y
                try:
                    status = self._try_step(y, t, h, ynew, err_out, full=attempt == 2)
                finally:
                    self._f[:] = saved
            else:
                status = self._try_step(y, t, h, ynew, err_out)
            if status == OK or (status == NONFINITE and (self.adaptive or attempt == 2)):
                return status
            self.stats["newton_failures"] += 1
            if not self._fresh:
                self._linearize(t, y)
                self._fresh = True
            elif self.adaptive or attempt == 2:
                return status
            else:
                attempt += 1

    def _newton_full(self, ti, Z, psi, hg, sc):
        """Damped Newton for Z − hγ f(ti, Z) = ψ, re-linearized at every iterate; Z in place.

        Each iteration solves (I − hγ J(Z)) ΔZ = −r(Z) and takes Z + λΔZ with λ = 1, ½, … (≥ 1/64)
        until ‖r‖ decreases (Armijo, 1e-4); converged when a full step (λ = 1) has
        ‖ΔZ‖ ≤ 1 in the newton_tol-scaled norm, or η‖ΔZ‖ ≤ 1 with η = θ/(1 − θ).  Returns a status.
        """
        fz = self._fz
        self._rhs(ti, Z, fz)
        res = Z - psi - hg * fz
        prev = None
        for it in range(self.newton_maxiter):
            r0 = float(np.linalg.norm(res))
            if not math.isfinite(r0):
                return NONFINITE
            self._linearize(ti, Z)
            dZ = self._solve(hg, -res)
            self.stats["newton_iterations"] += 1
            nrm = math.sqrt(float(np.mean((dZ / sc) ** 2)))
            if not math.isfinite(nrm):
                return NONFINITE
            lam = 1.0
            while True:
                Zt = Z + lam * dZ
                self._rhs(ti, Zt, fz)
                rt = Zt - psi - hg * fz
                r1 = float(np.linalg.norm(rt))
                if (math.isfinite(r1) and r1 <= (1.0 - 1e-4 * lam) * r0) or lam <= 1.0 / 64:
                    break
                lam *= 0.5
            Z[:] = Zt
            res = rt
            if lam == 1.0:
                if nrm <= 1.0:
                    return OK
                if prev is not None and nrm < prev and (nrm / prev) / (1.0 - nrm / prev) * nrm <= 1.0:
                    return OK
            prev = nrm
        return NEWTON

    def _stages(self, y, t, h, sc):
        """All stages by :func:`dirk_stages` (simplified Newton, J frozen); (status, largest θ).

        Dense mode factors (I − hγJ) once for the step and the loop solves with it; the Krylov
        modes answer each SOLVE request with GMRES/MINRES.
        """
        tb = self.tableau
        if self.mode == "dense":
            self._factor(h * tb.a[0, 0])
        mem = self._mem
        mem[:] = 0.0
        mem[M_ETA] = self._eta
        sc = np.ascontiguousarray(sc)
        while True:
            st = dirk_stages(y, float(t), float(h), tb.a, tb.c, self._K, self._f, self._Zbuf, self._psibuf, self._fz,
                             self._dZbuf, self._lu, self._piv, sc, int(self.newton_maxiter), self.system.sysargs, mem)
            if st != SOLVE:
                break
            self._dZbuf[:] = self._solve(h * tb.a[int(mem[M_STAGE]), int(mem[M_STAGE])], self._dZbuf.copy())
        self._eta = float(mem[M_ETA])
        self._count("rhs_evals", int(mem[M_RHS]))
        self.stats["newton_iterations"] += int(mem[M_NIT])
        return int(st), float(mem[M_THETA])

    def _stages_full(self, y, t, h, sc):
        """All stages by :meth:`_newton_full` (the fixed-step last resort); (status, last stage Z)."""
        tb = self.tableau
        K = self._K
        self._eta = max(self._eta, 1e-16) ** 0.8
        Z = None
        for i in range(tb.stages):
            hg = h * tb.a[i, i]
            psi = y.copy()
            for j in range(i):
                if tb.a[i, j] != 0.0:
                    psi += (h * tb.a[i, j]) * K[j]
            Z = psi + hg * (K[i - 1] if i > 0 else self._f)
            st = self._newton_full(t + tb.c[i] * h, Z, psi, hg, sc)
            if st != OK:
                return st, Z
            K[i] = (Z - psi) / hg
        return OK, Z

    def _try_step(self, y, t, h, ynew, err_out, full=False):
        tb = self.tableau
        s = tb.stages
        N = y.shape[0]
        K = self._K
        sc = self._stage_scale(y)
        if full:
            st, Z = self._stages_full(y, t, h, sc)
            theta_max = 0.0
        else:
            st, theta_max = self._stages(y, t, h, sc)
            Z = self._Zbuf
        if st != OK:
            return st
        if self._stiffly_accurate:
            ynew[:] = Z                    # y_new is the last stage: no amplification of Newton errors
        else:
            ynew[:] = y
            for i in range(s):
                if tb.b[i] != 0.0:
                    ynew += (h * tb.b[i]) * K[i]
        if tb.b_hat is not None:
            e = np.zeros(N)
            for i in range(s):
                c = tb.b[i] - tb.b_hat[i]
                if c != 0.0:
                    e += (h * c) * K[i]
            if self.mode == "dense":     # Hairer's filtered estimate (I − hγJ)⁻¹ e: no overestimate when stiff
                e = self._solve(h * tb.a[0, 0], e)
            err_out[:] = e
        self._theta = theta_max
        return OK

    def _accept(self, ynew, tnew):
        """After an accepted step to (tnew, ynew): f there (predictor) and the Jacobian policy."""
        if self._stiffly_accurate:
            self._f[:] = self._K[-1]          # stiffly accurate: the last stage derivative is f(t_new, y_new)
        else:
            self._rhs(tnew, ynew, self._f)
        self._istate[4], self._istate[5] = 1.0, tnew
        if self._theta > self.theta_refresh:
            self._istate[0] = 0.0             # slow convergence: a fresh Jacobian at the next step

    def _start(self, y, t):
        """Prepare f(t, y) (predictor) and a Jacobian unless continuing from the last call."""
        if not (self._istate[4] == 1.0 and self._istate[5] == t and np.array_equal(self._ylast, y)):
            self._rhs(t, y, self._f)
            self._istate[4], self._istate[5] = 1.0, t
            self._istate[0] = 0.0
            self._istate[3] = 0.0
        if self._istate[0] == 0.0:
            self._linearize(t, y)
            self._fresh = True
        else:
            self._fresh = False

    def describe(self):
        d = {"stepper": self.name, "order": self.tableau.order, "stages": self.tableau.stages, "implicit": True,
             "linear_solver": self.mode, "jacobian": self.jacobian, "newton_tol": self.newton_tol,
             "newton_maxiter": self.newton_maxiter, "theta_refresh": self.theta_refresh,
             "bound": None if math.isinf(self.bound) else self.bound}
        if self.mode in ("gmres", "minres"):
            d.update(krylov_rtol=self.krylov_rtol, krylov_maxiter=self.krylov_maxiter)
        if self.notes:
            d["notes"] = "; ".join(self.notes)
        return d


class FixedDIRK(FixedGrid, ImplicitDIRK):
    """Fixed-step implicit Runge–Kutta (backward Euler, implicit midpoint)."""

    adaptive = False
    schema = {"dt": STEP_OPTION, **NEWTON_OPTIONS}

    def __init__(self, system, dt: float, bound: float = 1e12, linear_solver: str = "auto", jacobian: str = "analytic",
                 newton_tol: float = 1e-10, newton_maxiter: int = 10, theta_refresh: float = 0.5,
                 krylov_rtol: float = 1e-8, krylov_maxiter: int = 1000, dense_max: int = 500):
        super().__init__(system)
        self.dt = self.check_option("dt", dt)
        self._setup(system, bound, linear_solver, jacobian, newton_tol, newton_maxiter, theta_refresh,
                    krylov_rtol, krylov_maxiter, dense_max)

    def _stage_scale(self, y):
        return self.newton_tol * (1.0 + np.abs(y))

    def _run(self, y, t0, dt, n, n0=0):
        done = 0
        for k in range(n):
            tn = t0 + (n0 + k) * dt
            self._start(y, tn)
            st = self._step(y, tn, dt, self._ynew, None)
            if st == OK:
                nrm2 = float(self._ynew @ self._ynew)
                if not math.isfinite(nrm2):
                    st = NONFINITE
                elif nrm2 > self.bound ** 2:
                    st = BOUND
            if st != OK:
                return st, done
            y[:] = self._ynew
            self._accept(y, t0 + (n0 + k + 1) * dt)
            self._ylast[:] = y
            self.stats["steps"] += 1
            done += 1
        return OK, done

    def describe(self):
        return {**super().describe(), "dt": self.dt}


class AdaptiveDIRK(ImplicitDIRK):
    """Embedded SDIRK pair with error control (local error per unit step of the embedded order).

    The accept/reject loop is the one of the explicit pairs (:mod:`mfpde.solvers.stepsize`:
    landing on t_target, accept_step, retry_step), with the I controller
    (:meth:`~mfpde.solvers.stepsize.Controller.integral`); a Newton failure with a fresh
    Jacobian is a failed attempt (h/4).
    """

    adaptive = True
    schema = {**ERROR_CONTROL_OPTIONS, **NEWTON_OPTIONS, "newton_tol": Option.number(strict=True, none_ok=True)}

    def __init__(self, system, rtol: float = 1e-6, atol: float = 1e-9, dt0: float | None = None, dt_min: float = 0.0,
                 dt_max: float = math.inf, max_rejections: int = 50, bound: float = 1e12, linear_solver: str = "auto",
                 jacobian: str = "analytic", newton_tol: float | None = None, newton_maxiter: int = 10,
                 theta_refresh: float = 0.5, krylov_rtol: float = 1e-3, krylov_maxiter: int = 1000,
                 dense_max: int = 500):
        super().__init__(system)
        error_control(self, rtol, atol, dt0, dt_min, dt_max, max_rejections)
        if newton_tol is None:   # Hairer's RADAU5 default: max(10 eps / rtol, min(0.03, rtol^½))
            newton_tol = max(10 * np.finfo(float).eps / max(self.rtol, 1e-300), min(0.03, math.sqrt(self.rtol)))
        self._setup(system, bound, linear_solver, jacobian, newton_tol, newton_maxiter, theta_refresh,
                    krylov_rtol, krylov_maxiter, dense_max)
        self.controller = Controller.integral(self.tableau.embedded_order)
        self._kc = self.controller.vector()
        self._err = np.zeros(system.size)

    @property
    def dt(self) -> float:
        return float(self._istate[3])

    def _stage_scale(self, y):
        return np.maximum(self.newton_tol * (self.atol + self.rtol * np.abs(y)), 1e-300)   # no 0/0 with atol = 0

    def _initial_dt(self, t, y):
        """``dt0``, or the shared starting-step heuristic without its explicit Euler probe."""
        if self.dt0 is not None:
            return min(self.dt0, self.dt_max)
        return float(initial_step(float(t), y, self._f, self._fz, self._ynew, self.rtol, self.atol,
                                  float(self.tableau.order), self.dt_max, self.system.sysargs, False))

    def advance(self, y, t, t_target, max_steps):
        t, t_target = float(t), float(t_target)
        if not t < t_target:
            return Advance(OK, t, 0)
        self._start(y, t)
        if self._istate[3] <= 0.0:
            self._istate[3] = self._initial_dt(t, y)
        dt = float(self._istate[3])
        kc = self._kc
        accepted = 0
        rejections = 0          # consecutive
        last_rejected = False
        status = OK
        while accepted < max_steps and t < t_target:
            h, tnew, clipped = landing(t, t_target, dt)
            st = self._step(y, t, h, self._ynew, self._err)
            err = math.inf
            if st == OK:
                sc = np.maximum(self.atol + self.rtol * np.maximum(np.abs(y), np.abs(self._ynew)), 1e-300)
                err = math.sqrt(float(np.mean((self._err / sc) ** 2)))
                if not math.isfinite(err):
                    st, err = NONFINITE, math.inf
            if st == OK and err <= 1.0:
                nrm2 = float(self._ynew @ self._ynew)
                if not (nrm2 <= self.bound ** 2):
                    status = BOUND
                    break
                y[:] = self._ynew
                t = tnew
                self._accept(y, t)
                self._ylast[:] = y
                self._fresh = False
                if self._istate[0] == 0.0:
                    self._linearize(t, y)
                    self._fresh = True
                accepted += 1
                rejections = 0
                dt, _ = accept_step(h, dt, err, 1.0, clipped, last_rejected, kc, self.dt_max)
                last_rejected = False
            else:                 # error too large, or Newton failed with a fresh Jacobian, or non-finite
                self.stats["rejected"] += 1
                rejections += 1
                last_rejected = True
                dt, give_up = retry_step(h, err, t, rejections, kc, self.dt_min, self.max_rejections)
                if give_up:
                    status = STEP_SIZE if st == OK else (NONFINITE if st == NONFINITE else NEWTON)
                    break
        self._istate[3] = dt
        self.stats["steps"] += accepted
        if status == OK and t < t_target:
            status = MAX_STEPS
        return Advance(int(status), float(t), accepted)

    def describe(self):
        return {**super().describe(), "embedded_order": self.tableau.embedded_order, "rtol": self.rtol, "atol": self.atol,
                "dt0": self.dt0, "dt_min": self.dt_min, "dt_max": None if math.isinf(self.dt_max) else self.dt_max,
                "max_rejections": self.max_rejections}


for _name in ("backward_euler", "implicit_midpoint"):
    register(type(f"DIRK_{_name}", (FixedDIRK,), {"name": _name, "order": DIRK_TABLEAUX[_name].order,
                                                  "tableau": DIRK_TABLEAUX[_name]}))
register(type("DIRK_sdirk4", (AdaptiveDIRK,), {"name": "sdirk4", "order": DIRK_TABLEAUX["sdirk4"].order,
                                               "tableau": DIRK_TABLEAUX["sdirk4"]}))

__all__ = ["DIRK_TABLEAUX", "DirkTableau", "ImplicitDIRK", "FixedDIRK", "AdaptiveDIRK", "dirk_stages", "NEWTON",
           "LINEAR_SOLVERS"]

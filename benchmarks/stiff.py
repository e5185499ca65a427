"""Stiff and long-horizon benchmark of the steppers: ``python -m benchmarks.stiff [--quick] [--out DIR]``.

(a) **Stiff layer rates.**  The two-hidden-layer test system of ``tests/solvers/test_adaptive.py``
    (tanh, Gauss–Hermite Q = 12, 11 data points, 168 unknowns) with ξ = (1, 10³, 1) to
    t = 10⁴.  Reference: SciPy's Radau (rtol 1e-11) given the analytic Jacobian, cross-checked
    against sdirk4 at rtol 1e-10.  For every stepper the cheapest tolerance of a list that
    reaches a relative error ≤ 1e-6 at t_end is chosen; reported: RHS-equivalent evaluations
    (RHS + JVPs + JVP linearizations), steps, and the median wall time of repeated runs.  Also
    a lower bound for fixed-step RK4 (4 RHS per step at its stability limit 2.785/ρ, ρ the
    Jacobian's spectral radius at t_end), and the Krylov variants of sdirk4 (GMRES, MINRES).
(b) **Non-stiff long horizon.**  The same system with ξ ≡ 1 to t = 10³: dopri5 at rtol 1e-6
    against fixed-step RK4 with the largest step (on a geometric grid) that is as accurate.

Every ratio is measured in the same run.  Writes ``stiff.json`` and ``stiff_benchmark.png`` to
``--out`` (default ``out/benchmarks``) and, unless ``--quick`` or ``--no-docs``, copies the
figure to ``docs/figures/``.
Imports numpy, scipy, matplotlib (lazily) and mfpde.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path

import numpy as np
from scipy.integrate import solve_ivp

from mfpde.problem import embedding as E
from mfpde.problem import quadrature as qd
from mfpde.problem.data import finite_set
from mfpde.problem.model import Embedding, Model, Problem, Schedules
from mfpde.problem.schedules import Schedule
from mfpde.solvers import integrate, make
from mfpde.system.stiffness import spectral_radius
from mfpde.system.system import System

ROOT = Path(__file__).resolve().parent.parent


def test_system(xi=(1.0, 1.0, 1.0), Q=12) -> System:
    X = np.linspace(-2.0, 2.0, 11)[:, None]
    emb = Embedding((qd.gauss_hermite(Q), qd.gauss_hermite(Q)), E.coordinate(), (E.constant(0.5),), E.coordinate())
    sch = Schedules(tuple(Schedule("constant", x) for x in xi), tuple(Schedule("constant", 1.0) for _ in xi))
    return System(Problem(Model(1, ("tanh", "tanh")), emb, sch, finite_set(X, np.tanh(2 * X)), name="stiff-bench"))


def dense_jac(system):
    return lambda t, y: np.column_stack([system.jvp(t, y, e) for e in np.eye(system.size)])


def run(system, name, t_end, times=None, **opts):
    st = make(name, system, **opts)
    t0 = time.perf_counter()
    sol = integrate(system, st, t_end, times=times, parameters="final")
    wall = time.perf_counter() - t0
    s = dict(st.stats)
    s.setdefault("rhs_equivalent", s["rhs_evals"] + s.get("jvps", 0))
    return sol, s, wall


def median_wall(system, name, t_end, repeats, **opts):
    return statistics.median(run(system, name, t_end, **opts)[2] for _ in range(repeats))


def cost_of_jvp(system, reps=2000):
    """Wall time of one JVP over one RHS, medians of 5 interleaved rounds: (a) a column of the
    compiled dense-Jacobian loop (what the dense mode pays), (b) ``System.jvp`` from Python
    (linearization + product + call overhead, what a Krylov iteration pays at most)."""
    from mfpde.system import jvp as J_

    N = system.size
    y = system.y0.copy()
    u = np.random.default_rng(0).standard_normal(N)
    jw = np.empty(J_.work_size(system.lay, system.sysargs.X.shape[0]))
    Jd, z1, z2 = np.empty((N, N)), np.zeros(N), np.zeros(N)
    system.jvp(0.0, y, u)
    J_.jacobian(0.0, y, Jd, system.sysargs, jw, z1, z2)
    dense, single = [], []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(reps):
            system.rhs(0.0, y)
        a = (time.perf_counter() - t0) / reps
        t0 = time.perf_counter()
        for _ in range(max(1, reps // N)):
            J_.jacobian(0.0, y, Jd, system.sysargs, jw, z1, z2)
        dense.append((time.perf_counter() - t0) / (max(1, reps // N) * N) / a)
        t0 = time.perf_counter()
        for _ in range(reps):
            system.jvp(0.0, y, u)
        single.append((time.perf_counter() - t0) / reps / a)
    return statistics.median(dense), statistics.median(single)


def linear_solvers(quick: bool, repeats: int) -> dict:
    """(c) sdirk4's linear solvers on a larger system (Q = 40: 1680 unknowns), ξ = (1, 1e3, 1)."""
    s = test_system((1.0, 1e3, 1.0), Q=40)
    T = 100.0
    ref = run(s, "dopri5", T, rtol=1e-10, atol=1e-14)[0].y
    out = {"N": s.size, "t_end": T}
    for ls in (("gmres", "minres") if quick else ("dense", "gmres", "minres")):
        sol, st, wall = run(s, "sdirk4", T, rtol=1e-5, atol=1e-14, linear_solver=ls)
        out[ls] = {"error": float(np.linalg.norm(sol.y - ref) / np.linalg.norm(ref)), "wall": wall,
                   **{k: st[k] for k in ("steps", "rejected", "rhs_evals", "jvps", "linear_iterations", "lu", "rhs_equivalent")}}
        print(f"  (c) sdirk4/{ls}: {out[ls]}", flush=True)
    sol, st, wall = run(s, "dopri5", T, rtol=1e-5, atol=1e-14)
    out["dopri5"] = {"error": float(np.linalg.norm(sol.y - ref) / np.linalg.norm(ref)), "wall": wall,
                     "steps": st["steps"], "rhs_evals": st["rhs_evals"]}
    return out


def stiff(quick: bool, repeats: int) -> dict:
    T = 1e3 if quick else 1e4
    target = 1e-6
    s = test_system((1.0, 1e3, 1.0))
    t0 = time.perf_counter()
    rad = solve_ivp(lambda t, y: s.rhs(t, y), (0.0, T), s.y0, method="Radau", rtol=1e-11, atol=1e-14, jac=dense_jac(s))
    ref = rad.y[:, -1]
    ref_wall = time.perf_counter() - t0
    nref = np.linalg.norm(ref)
    check = run(s, "sdirk4", T, rtol=1e-10, atol=1e-14)[0].y
    out = {"problem": "test system, ξ = (1, 1e3, 1), N = %d" % s.size, "t_end": T, "target": target,
           "reference": {"method": "scipy Radau rtol 1e-11 + analytic Jacobian", "nfev": int(rad.nfev), "njev": int(rad.njev),
                         "wall": ref_wall, "vs_sdirk4_1e-10": float(np.linalg.norm(check - ref) / nref)}}
    candidates = {"dopri5": (1e-4, 1e-5, 1e-6, 1e-7), "bs32": (1e-4, 1e-5, 1e-6, 1e-7),
                  "sdirk4": (1e-4, 1e-5, 1e-6, 1e-7)}
    sweep, best = {}, {}
    for name, tols in candidates.items():
        sweep[name] = []
        for rtol in tols:
            sol, st, wall = run(s, name, T, rtol=rtol, atol=1e-14)
            err = float(np.linalg.norm(sol.y - ref) / nref)
            row = {"rtol": rtol, "error": err, "steps": st["steps"], "rejected": st["rejected"], "rhs_evals": st["rhs_evals"],
                   "jvps": st.get("jvps", 0), "rhs_equivalent": st["rhs_equivalent"], "wall_once": wall}
            sweep[name].append(row)
            print(f"  (a) {name:7s} rtol {rtol:.0e}: error {err:.2e}, steps {st['steps']}, rhs-equivalent {st['rhs_equivalent']}, "
                  f"wall {wall:.2f} s", flush=True)
            if err <= target and name not in best:
                best[name] = row
    for name, row in best.items():
        row["wall_median"] = median_wall(s, name, T, repeats, rtol=row["rtol"], atol=1e-14)
    for ls in ("gmres", "minres"):
        r = best.get("sdirk4", {"rtol": 1e-5})["rtol"]
        sol, st, wall = run(s, "sdirk4", T, rtol=r, atol=1e-14, linear_solver=ls)
        out[f"sdirk4_{ls}"] = {"rtol": r, "error": float(np.linalg.norm(sol.y - ref) / nref), "steps": st["steps"],
                               "rhs_evals": st["rhs_evals"], "jvps": st["jvps"], "linear_iterations": st["linear_iterations"],
                               "rhs_equivalent": st["rhs_equivalent"],
                               "wall_median": median_wall(s, "sdirk4", T, repeats, rtol=r, atol=1e-14, linear_solver=ls)}
    rho = spectral_radius(s, ref, t=T)
    out["rk4_lower_bound_rhs"] = float(4 * T * rho / 2.7853)
    out["spectral_radius_t_end"] = rho
    out["spectral_radius_t0"] = spectral_radius(s)
    out["sweep"], out["best"] = sweep, best
    out["jvp_over_rhs_wall"], out["system_jvp_over_rhs_wall"] = cost_of_jvp(s)
    explicit = [n for n in ("dopri5", "bs32") if n in best]
    if "sdirk4" in best and explicit:
        be = min(explicit, key=lambda n: best[n]["rhs_equivalent"])
        imp = best["sdirk4"]
        out["best_explicit"] = be
        out["ratio_rhs_equivalent"] = best[be]["rhs_equivalent"] / imp["rhs_equivalent"]
        w = out["jvp_over_rhs_wall"]
        out["ratio_cost_weighted"] = best[be]["rhs_evals"] / (imp["rhs_evals"] + w * imp["jvps"])
        out["ratio_wall"] = best[be]["wall_median"] / imp["wall_median"]
        out["ratio_wall_vs_fastest_explicit"] = min(best[n]["wall_median"] for n in explicit) / imp["wall_median"]
    # step-size history for the figure: mean step per interval between log-spaced save times
    ts = np.unique(np.concatenate([np.geomspace(0.01, T, 40)]))
    hist = {}
    for name in ("dopri5", "sdirk4"):
        r = best.get(name, {"rtol": 1e-6})["rtol"]
        st = make(name, s, rtol=r, atol=1e-14)
        steps, prev, t_prev, rows = 0, 0, 0.0, []
        y = s.y0.copy()
        t = 0.0
        for tt in ts:
            while True:
                res = st.advance(y, t, float(tt), 10**7)
                t = res.t
                if t >= tt:
                    break
            n = st.stats["steps"] - prev
            prev = st.stats["steps"]
            if n:
                rows.append((float(tt), (tt - t_prev) / n))
            t_prev = float(tt)
        hist[name] = rows
    out["dt_history"] = hist
    return out


def nonstiff(quick: bool) -> dict:
    T = 1e3
    s = test_system()
    ref = solve_ivp(lambda t, y: s.rhs(t, y), (0.0, T), s.y0, method="DOP853", rtol=1e-13, atol=1e-15).y[:, -1]
    nref = np.linalg.norm(ref)
    sol, st, _ = run(s, "dopri5", T, rtol=1e-6, atol=1e-9)
    err = float(np.linalg.norm(sol.y - ref) / nref)
    dopri = {"rtol": 1e-6, "error": err, "steps": st["steps"], "rhs_evals": st["rhs_evals"]}
    rk = None
    tried = []
    dt = 0.5
    while dt > 1e-3:
        sol4, st4, _ = run(s, "rk4", T, dt=dt)
        e4 = float(np.linalg.norm(sol4.y - ref) / nref) if np.all(np.isfinite(sol4.y)) else float("inf")
        tried.append((dt, e4))
        print(f"  (b) rk4 dt {dt:.4g}: error {e4:.2e}", flush=True)
        if e4 <= err:
            rk = {"dt": dt, "error": e4, "steps": st4["steps"], "rhs_evals": st4["rhs_evals"]}
            break
        dt *= 0.9 if e4 < 100 * err else 0.5
    out = {"t_end": T, "dopri5": dopri, "rk4": rk, "rk4_tried": tried}
    if rk:
        out["ratio_steps"] = rk["steps"] / dopri["steps"]
        out["ratio_rhs"] = rk["rhs_evals"] / dopri["rhs_evals"]
    return out


def figure(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a = res["stiff"]
    fig, ax = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, mk in (("dopri5", "o-"), ("bs32", "s-"), ("sdirk4", "^-")):
        rows = a["sweep"][name]
        ax[0].loglog([r["rhs_equivalent"] for r in rows], [r["error"] for r in rows], mk, label=name)
    ax[0].axhline(a["target"], color="gray", ls=":", lw=1)
    ax[0].axvline(a["rk4_lower_bound_rhs"], color="C3", ls="--", lw=1, label="rk4 stability bound")
    ax[0].set_xlabel("RHS-equivalent evaluations (RHS + JVP)")
    ax[0].set_ylabel("relative error at t_end")
    ax[0].set_title(f"stiff: ξ = (1, 1e3, 1), t = {a['t_end']:g}")
    ax[0].legend()
    for name, mk in (("dopri5", "-"), ("sdirk4", "-")):
        rows = a["dt_history"][name]
        ax[1].loglog([r[0] for r in rows], [r[1] for r in rows], mk, label=name)
    ax[1].set_xlabel("t")
    ax[1].set_ylabel("mean step size")
    ax[1].set_title("step size along the solution")
    ax[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.stiff", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="t_end = 1e3 for (a), one wall-time repeat")
    p.add_argument("--repeats", type=int, default=3, help="wall-time repeats (median)")
    p.add_argument("--out", default=str(ROOT / "out" / "benchmarks"), help="output folder")
    p.add_argument("--no-docs", action="store_true", help="do not copy the figure to docs/figures")
    args = p.parse_args(argv)
    repeats = 1 if args.quick else args.repeats
    outdir = Path(args.out)
    outdir.mkdir(parents=True, exist_ok=True)
    test_system().rhs(0.0, test_system().y0)    # compile / load the cache before timing
    print("(a) stiff layer rates", flush=True)
    res = {"stiff": stiff(args.quick, repeats)}
    print("(b) non-stiff long horizon", flush=True)
    res["nonstiff"] = nonstiff(args.quick)
    print("(c) linear solvers on a larger system", flush=True)
    res["linear_solvers"] = linear_solvers(args.quick, repeats)
    (outdir / "stiff.json").write_text(json.dumps(res, indent=1, default=float))
    fig = outdir / "stiff_benchmark.png"
    figure(res, fig)
    if not (args.no_docs or args.quick):     # only a full run replaces the documented figure
        (ROOT / "docs" / "figures").mkdir(parents=True, exist_ok=True)
        shutil.copy(fig, ROOT / "docs" / "figures" / "stiff_benchmark.png")
    a, b = res["stiff"], res["nonstiff"]
    print()
    print(f"(a) t = {a['t_end']:g}, target relative error {a['target']:g}; reference Radau vs sdirk4(1e-10): "
          f"{a['reference']['vs_sdirk4_1e-10']:.1e}; spectral radius {a['spectral_radius_t0']:.3g} (t = 0), "
          f"{a['spectral_radius_t_end']:.3g} (t_end)")
    for name, row in a["best"].items():
        print(f"    {name:7s} rtol {row['rtol']:.0e}: error {row['error']:.2e}, steps {row['steps']}, RHS {row['rhs_evals']}, "
              f"JVP {row['jvps']}, RHS-equivalent {row['rhs_equivalent']}, wall {row['wall_median']:.3f} s (median of {repeats})")
    for ls in ("gmres", "minres"):
        r = a[f"sdirk4_{ls}"]
        print(f"    sdirk4/{ls}: error {r['error']:.2e}, steps {r['steps']}, RHS {r['rhs_evals']}, JVP {r['jvps']} "
              f"({r['linear_iterations']} Krylov iterations), RHS-equivalent {r['rhs_equivalent']}, wall {r['wall_median']:.3f} s")
    print(f"    rk4 lower bound (stability at t_end): {a['rk4_lower_bound_rhs']:.3g} RHS")
    print(f"    one analytic JVP costs {a['jvp_over_rhs_wall']:.2f} RHS in wall time inside the dense Jacobian loop, "
          f"{a['system_jvp_over_rhs_wall']:.2f} RHS as a lone System.jvp call")
    if "ratio_rhs_equivalent" in a:
        print(f"    RATIO best explicit ({a['best_explicit']}) / sdirk4: RHS-equivalent {a['ratio_rhs_equivalent']:.1f}x "
              f"(JVPs weighted by their wall cost: {a['ratio_cost_weighted']:.1f}x), wall {a['ratio_wall']:.1f}x "
              f"(vs the fastest explicit: {a['ratio_wall_vs_fastest_explicit']:.1f}x)")
    if b["rk4"]:
        print(f"(b) t = {b['t_end']:g}: dopri5 rtol 1e-6 error {b['dopri5']['error']:.2e} in {b['dopri5']['steps']} steps; "
              f"rk4 dt {b['rk4']['dt']:.4g} error {b['rk4']['error']:.2e} in {b['rk4']['steps']} steps")
        print(f"    RATIO rk4 / dopri5 steps {b['ratio_steps']:.1f}x, RHS {b['ratio_rhs']:.1f}x")
    c = res["linear_solvers"]
    print(f"(c) N = {c['N']}, t = {c['t_end']:g}, sdirk4 rtol 1e-5: " + "; ".join(
        f"{k}: error {c[k]['error']:.1e}, JVP {c[k]['jvps']}, RHS-equivalent {c[k]['rhs_equivalent']}, wall {c[k]['wall']:.2f} s"
        for k in ("dense", "gmres", "minres") if k in c) + f"; dopri5: {c['dopri5']['rhs_evals']} RHS, wall {c['dopri5']['wall']:.2f} s")
    print(f"figure: {fig}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

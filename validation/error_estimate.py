"""Validation of the error estimate attached to every solve and of ``--accuracy`` (issue 16,
"Done when", items 1–2).  Not one of the pre-registered studies of ``python -m validation``.

**Estimate.**  For the embedded default (``mfpde.load(None)``) and each stored reference of
``data/references`` (L = 1, 2, 3; squared, logistic and softmax losses; population laws by
quadrature and finite data sets), in two settings — the stored rules (``x1``) and every rule
size × 0.5 (``x0.5``, :func:`mfpde.analysis.references.scale_rules`) — this solves with the
estimate and against a *reference*: the same problem at rules × 2 of the setting and dt / 2
(fixed-step steppers) or rtol, atol / 100 (adaptive ones).  The true error is
sup_t |L(t) − L_ref(t)| of the train loss (and sup over t and probes of |ŷ − ŷ_ref|);
``factor`` = true / estimate, honest when in [1/3, 3].  The reference's own accuracy is
checked by a second reference at rules × 2.5 (× 1.5 when × 2.5 would exceed ``BIG`` unknowns),
same time setting: when sup_t |L_ref − L_ref2| > true / 10 the point is *flagged*
(``ref_ok = false``): the reference is not shown to be 10× more accurate than the setting.
The record also holds the estimate's parts (rule, sampling, time), the observed ratio ρ,
``reliable`` and the cost of the companion solves ÷ the cost of the solve (both warm: the
problem is solved once without the estimate first, so compilation is not counted).

**Accuracy.**  For the five main problems (default, shallow_l1, correlated_l3,
logistic_classes, iid_l2) :func:`mfpde.analysis.accuracy.solve_to` runs from the stored
setting with the target max(estimate / 20, 1e-9), and from the × 0.5 setting with
max(estimate(× 0.5) / 20, 1e-9) (this second start makes the loop refine where the first
target is met at once); the final solve is checked against a reference at 2× its own sizes
and dt / 2 (rtol / 100): ``met`` = true error ≤ target.

Results (cached: a rerun reuses every point whose configuration is unchanged, ``--force``
recomputes) in ``validation/results/error_estimate.json``, the figure
``docs/figures/error_estimate.png`` (true error against the estimate, log-log, the lines
y = x/3, x, 3x)::

    NUMBA_NUM_THREADS=1 .venv/bin/python -m validation.error_estimate [--force] [--only NAME,...]

Imports numpy, mfpde, matplotlib (lazily).
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import sys
import time
import tomllib
from pathlib import Path

import numpy as np

import mfpde
from mfpde.analysis import accuracy, references
from mfpde.analysis import estimate as E
from validation import common

RESULTS = common.DEFAULT_OUT / "error_estimate.json"
FIGURE = common.FIGURES / "error_estimate.png"
REFS = common.ROOT / "data" / "references"
PROBLEMS = ("default", "shallow_l1", "iid_l2", "iid_l3_collapsed", "correlated_l3", "logistic_classes",
            "softmax_k3", "finite_arrays", "frozen_ends_l3")
MAIN = ("default", "shallow_l1", "correlated_l3", "logistic_classes", "iid_l2")
SETTINGS = {"x1": 1.0, "x0.5": 0.5}
BAND = 3.0            # honest: true / estimate in [1/BAND, BAND]
REF_MARGIN = 10.0     # the reference must look this much more accurate than the setting
FLOOR = 1e-9          # --accuracy targets are at least this
BIG = 1_500_000       # the reference check uses rules × 1.5 instead of × 2.5 above this many unknowns


# ---------------------------------------------------------------------------- configurations
def raw_of(name: str) -> dict:
    if name == "default":
        return copy.deepcopy(mfpde.load(None).raw)
    return tomllib.loads((REFS / f"{name}.toml").read_text(encoding="utf-8"))


def finer_time(raw: dict) -> dict:
    """The reference's time setting: dt / 2 (fixed step) or rtol, atol / 100 (adaptive)."""
    v = references.time_value(raw)
    return references.with_time(raw, v / 2.0 if references.time_parameter(raw) == "dt" else v / 100.0)


def reference_raw(raw: dict, factor: float) -> dict:
    return finer_time(references.scale_rules(raw, factor, factor))


def key_of(raw: dict) -> str:
    text = json.dumps(raw, sort_keys=True, default=str) + f"{E.RATIO}{E.ALPHA}{E.MAX_RATIO}{E.SEEDS}{E.TOL_FACTOR}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def unknowns(raw: dict) -> int:
    return accuracy.unknowns(mfpde.load(raw, source="<unknowns>").problem)


# ---------------------------------------------------------------------------- solving
def curves(sol) -> tuple[np.ndarray, np.ndarray | None]:
    y = np.asarray(sol.observable("yhat_probe"), float) if "yhat_probe" in sol.observables else None
    return np.asarray(sol.observable("loss_train"), float), y


def plain(raw: dict, label: str):
    """(loss, ŷ, seconds, unknowns) of a solve without the estimate."""
    t0 = time.perf_counter()
    sol = mfpde.solve(mfpde.load(raw, source=label), parameters="none", progress=False, estimate=False)
    loss, y = curves(sol)
    return loss, y, time.perf_counter() - t0, int(sol.system.size)


def sup(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) if a is not None and b is not None else math.nan


def ratio(a: float, b: float) -> float:
    return a / b if b > 0 else (math.inf if a > 0 else math.nan)


def point(name: str, setting: str, say) -> dict:
    """One (problem, setting): the solve with its estimate, the references, the factors."""
    raw = references.scale_rules(raw_of(name), SETTINGS[setting], SETTINGS[setting])
    label = f"{name} {setting}"
    mfpde.solve(mfpde.load(raw, source=label + " (warm-up)"), parameters="none", progress=False,
                estimate=True)                            # compile outside the timed solves
    t0 = time.perf_counter()
    sol = mfpde.solve(mfpde.load(raw, source=label), parameters="none", progress=False, estimate=True)
    total = time.perf_counter() - t0
    est = sol.estimate
    loss, y = curves(sol)
    ref_l, ref_y, ref_s, ref_n = plain(reference_raw(raw, 2.0), label + " reference x2")
    f2 = 2.5 if unknowns(references.scale_rules(raw, 2.5, 2.5)) <= BIG else 1.5
    ref2_l, ref2_y, ref2_s, _ = plain(reference_raw(raw, f2), label + f" reference x{f2:g}")
    true_l, true_y = sup(loss, ref_l), sup(y, ref_y)
    ref_diff, ref_diff_y = sup(ref_l, ref2_l), sup(ref_y, ref2_y)
    ok = est.status == "ok"
    part = lambda a: float(np.max(a)) if a is not None else math.nan
    p = {"problem": name, "setting": setting, "key": key_of(raw), "unknowns": int(sol.system.size),
         "stepper": raw.get("solver", {}).get("stepper", "rk4"),
         "status": est.status, "reliable": bool(est.reliable), "ratio": float(est.ratio),
         "estimate_loss": est.sup_loss if ok else math.nan, "estimate_yhat": est.sup_yhat if ok else math.nan,
         "estimate_rule": part(est.loss_rule), "estimate_sampling": part(est.loss_sampling),
         "estimate_time": part(est.loss_time), "companions": list(est.companions),
         "true_loss": true_l, "true_yhat": true_y,
         "factor_loss": ratio(true_l, est.sup_loss) if ok else math.nan,
         "factor_yhat": ratio(true_y, est.sup_yhat) if ok and y is not None else math.nan,
         "reference_unknowns": ref_n, "reference_check_factor": f2,
         "reference_diff_loss": ref_diff, "reference_diff_yhat": ref_diff_y,
         "ref_ok": bool(ref_diff * REF_MARGIN <= true_l) if true_l > 0 else False,
         "solve_seconds": total - est.seconds, "estimate_seconds": est.seconds,
         "cost_ratio": est.seconds / max(total - est.seconds, 1e-9), "reference_seconds": ref_s + ref2_s,
         "times": [float(t) for t in sol.times], "loss": loss.tolist(), "estimate_per_time":
         est.loss.tolist() if ok else None, "reference_loss": ref_l.tolist(),
         "error_per_time": np.abs(loss - ref_l).tolist()}
    p["honest_loss"] = bool(1.0 / BAND <= p["factor_loss"] <= BAND)
    p["honest_yhat"] = bool(1.0 / BAND <= p["factor_yhat"] <= BAND) if y is not None else None
    say(f"  {label}: est {p['estimate_loss']:.2e} true {true_l:.2e} factor {p['factor_loss']:.2f}"
        f" | ŷ est {p['estimate_yhat']:.2e} true {true_y:.2e} factor {p['factor_yhat']:.2f}"
        f" | ref diff {ref_diff:.1e}{'' if p['ref_ok'] else ' (FLAG)'} | cost x{p['cost_ratio']:.2f}"
        f" | {time.perf_counter() - t0:.1f} s")
    return p


def accuracy_run(name: str, start: str, tol_from: float, say) -> dict:
    """solve_to from a setting with target max(tol_from / 20, FLOOR), checked against 2× its sizes."""
    raw = references.scale_rules(raw_of(name), SETTINGS[start], SETTINGS[start])
    tol = max(tol_from / 20.0, FLOOR)
    t0 = time.perf_counter()
    res = accuracy.solve_to(mfpde.load(raw, source=f"{name} {start}"), tol, say=say)
    wall = time.perf_counter() - t0
    final = copy.deepcopy(res.config.raw)
    final.pop("accuracy", None)
    loss, _ = curves(res.solution)
    ref_l, _, ref_s, ref_n = plain(reference_raw(final, 2.0), f"{name} accuracy reference")
    true_l = sup(loss, ref_l)
    r = {"problem": name, "start": start, "key": key_of(raw) + f"{tol:.3e}", "target": tol,
         "met_by_estimate": bool(res.met), "reason": res.reason, "iterations": len(res.history),
         "history": res.history, "final_unknowns": int(res.solution.system.size),
         "final_estimate": res.solution.estimate.sup_loss, "true_loss": true_l,
         "met": bool(res.met and true_l <= tol), "true_over_target": true_l / tol,
         "reference_unknowns": ref_n, "seconds": wall, "reference_seconds": ref_s}
    say(f"  accuracy {name} from {start}: target {tol:.2e}, {r['iterations']} iteration(s), "
        f"{r['final_unknowns']} unknowns, estimate {r['final_estimate']:.2e}, true {true_l:.2e} -> "
        f"{'met' if r['met'] else 'NOT met'} ({wall:.1f} s)")
    return r


# ---------------------------------------------------------------------------- output
def table(points: list[dict]) -> str:
    h = (f"{'problem':<17}{'set':<5}{'unknowns':>9} {'estimate':>9} {'true':>9} {'factor':>7} "
         f"{'ŷ est':>9} {'ŷ true':>9} {'ŷ fac':>7} {'rule':>8} {'samp':>8} {'time':>8} {'rho':>6} rel "
         f"{'ref diff':>8} ref {'cost':>5}")
    rows = [h, "-" * len(h)]
    g = lambda x: f"{x:.2e}" if x is not None and math.isfinite(x) else "-"
    for p in points:
        rows.append(f"{p['problem']:<17}{p['setting']:<5}{p['unknowns']:>9} {g(p['estimate_loss']):>9} "
                    f"{g(p['true_loss']):>9} {p['factor_loss']:>7.2f} {g(p['estimate_yhat']):>9} "
                    f"{g(p['true_yhat']):>9} {p['factor_yhat']:>7.2f} {g(p['estimate_rule'])[:8]:>8} "
                    f"{g(p['estimate_sampling'])[:8]:>8} {g(p['estimate_time'])[:8]:>8} {p['ratio']:>6.3f} "
                    f"{'y' if p['reliable'] else 'n':>3} {g(p['reference_diff_loss'])[:8]:>8} "
                    f"{'ok' if p['ref_ok'] else 'FLAG':>4}{p['cost_ratio']:>5.1f}")
    return "\n".join(rows)


def accuracy_table(runs: list[dict]) -> str:
    h = f"{'problem':<17}{'from':<6}{'target':>9} {'iter':>4} {'unknowns':>9} {'estimate':>9} {'true':>9} {'true/tol':>8} met"
    rows = [h, "-" * len(h)]
    for r in runs:
        rows.append(f"{r['problem']:<17}{r['start']:<6}{r['target']:>9.2e} {r['iterations']:>4} {r['final_unknowns']:>9} "
                    f"{r['final_estimate']:>9.2e} {r['true_loss']:>9.2e} {r['true_over_target']:>8.3f} "
                    f"{'yes' if r['met'] else 'NO'}")
    return "\n".join(rows)


def figure(points: list[dict], path: Path) -> None:
    plt = common.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8))
    markers = dict(zip(PROBLEMS, "o s ^ v D P X * h".split()))
    for ax, what, title in ((axes[0], "loss", "train loss, sup over t"), (axes[1], "yhat", "ŷ at the probes, sup over t, x")):
        xs = []
        for p in points:
            x, y = p[f"estimate_{what}"], p[f"true_{what}"]
            if not (math.isfinite(x) and math.isfinite(y) and x > 0 and y > 0):
                continue
            xs += [x, y]
            ax.loglog([x], [y], markers[p["problem"]], color=f"C{PROBLEMS.index(p['problem'])}",
                      mfc="none" if p["setting"] == "x1" else None, ms=8,
                      label=f"{p['problem']} {p['setting']}" + ("" if p["ref_ok"] else " (ref flagged)"))
        if xs:
            lo, hi = min(xs) / 3, max(xs) * 3
            g = np.geomspace(lo, hi, 2)
            for k, st in ((1 / 3, ":"), (1, "-"), (3, ":")):
                ax.loglog(g, k * g, "k" + st, lw=0.8)
            ax.set_xlim(lo, hi), ax.set_ylim(lo, hi)
        ax.set_xlabel("error estimate"), ax.set_ylabel("true error (vs rules x2, finer time)")
        ax.set_title(title + "; lines y = x/3, x, 3x", fontsize=9)
    axes[0].legend(fontsize=6, ncol=2, loc="upper left")
    common.save(fig, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m validation.error_estimate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--force", action="store_true", help="recompute the points of --only (default: all) instead of "
                    "reusing cached ones")
    ap.add_argument("--only", help="comma-separated problems (default: all)")
    ap.add_argument("--no-accuracy", action="store_true", help="skip the --accuracy runs")
    args = ap.parse_args(argv)
    say = lambda s: print(s, flush=True)
    old = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    names = PROBLEMS if not args.only else tuple(args.only.split(","))
    unknown = [n for n in names if n not in PROBLEMS]
    if unknown:
        ap.error(f"--only: unknown problem(s) {', '.join(unknown)}; known: {', '.join(PROBLEMS)}")
    stale = (lambda name: args.force and name in names)
    cache = {f"{p['problem']} {p['setting']}": p for p in old.get("points", []) if not stale(p["problem"])}
    acache = {f"{r['problem']} {r['start']}": r for r in old.get("accuracy", []) if not stale(r["problem"])}
    t0 = time.perf_counter()
    points = []
    for name in PROBLEMS:
        for setting in SETTINGS:
            k = f"{name} {setting}"
            raw = references.scale_rules(raw_of(name), SETTINGS[setting], SETTINGS[setting])
            if k in cache and (name not in names or cache[k]["key"] == key_of(raw)):
                points.append(cache[k])
            elif name in names:
                points.append(point(name, setting, say))
            save(points, list(acache.values()), old, t0)
    runs = []
    if not args.no_accuracy:
        by = {f"{p['problem']} {p['setting']}": p for p in points}
        for name in MAIN:
            for start in SETTINGS:
                k = f"{name} {start}"
                if k not in by or not math.isfinite(by[k]["estimate_loss"]):
                    continue
                tol = max(by[k]["estimate_loss"] / 20.0, FLOOR)
                raw = references.scale_rules(raw_of(name), SETTINGS[start], SETTINGS[start])
                if k in acache and (name not in names or acache[k]["key"] == key_of(raw) + f"{tol:.3e}"):
                    runs.append(acache[k])
                elif name in names:
                    runs.append(accuracy_run(name, start, by[k]["estimate_loss"], say))
                save(points, runs, old, t0)
    else:
        runs = list(acache.values())
    save(points, runs, old, t0)
    figure(points, FIGURE)
    say(table(points))
    say(accuracy_table(runs))
    honest = [p for p in points if p["honest_loss"]]
    say(f"honest (loss, factor in [1/3, 3]): {len(honest)} of {len(points)}; "
        f"references flagged: {sum(not p['ref_ok'] for p in points)}; "
        f"accuracy met: {sum(r['met'] for r in runs)} of {len(runs)}")
    return 0


def save(points, runs, old, t0) -> None:
    factors = [p["factor_loss"] for p in points if math.isfinite(p["factor_loss"])]
    common.write_summary(RESULTS, {
        "study": "error estimate and --accuracy (issue 16; validation/error_estimate.py)",
        "command": "NUMBA_NUM_THREADS=1 .venv/bin/python -m validation.error_estimate",
        "band": [1.0 / BAND, BAND], "reference_margin": REF_MARGIN,
        "estimate_constants": {"RATIO": E.RATIO, "ALPHA": E.ALPHA, "MAX_RATIO": E.MAX_RATIO, "SEEDS": E.SEEDS,
                               "TOL_FACTOR": E.TOL_FACTOR},
        "summary": {"points": len(points), "honest_loss": sum(bool(p["honest_loss"]) for p in points),
                    "honest_yhat": sum(bool(p["honest_yhat"]) for p in points),
                    "references_flagged": sum(not p["ref_ok"] for p in points),
                    "factor_loss_min": min(factors) if factors else None,
                    "factor_loss_max": max(factors) if factors else None,
                    "accuracy_runs": len(runs), "accuracy_met": sum(bool(r["met"]) for r in runs)},
        "points": points, "accuracy": runs,
        "wall_seconds_this_run": round(time.perf_counter() - t0, 1), "load_average_end": common.load_average()})


if __name__ == "__main__":
    sys.exit(main())

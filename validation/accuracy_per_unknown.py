"""Accuracy per unknown at late training times (issue 16, item 3; docs/convergence.md, last section).

The problem class is ``validation/configs/late_l2_d2.toml``: L = 2 tanh–tanh, squared loss, d = 2,
256 training points from a width-4 two-layer teacher, i.i.d. N(0, I) first layer, v ~ N(0, 1),
W_2 ~ N(0.5, 1), full-batch Euler (ε = dt = 0.05) to t = 20, loss saved every 0.5.  The index
space of layer 1 is w_1^0 ∈ R² (a 2-D rule), that of layer 2 is v^0 ∈ R (a 1-D rule); the state
has 2·Q_1 + Q_1·Q_2 + Q_2 unknowns (``System(problem).size``), dominated by W_2.  Only the index
rules vary (the training data are a finite sample, the time step is fixed), so every difference
is the index-rule error.

e(rule) = sup over the saved times of |loss_train(rule) − loss_train(reference)|, also at t = 1,
5, 20.  The reference is the trapezoid rule with 112 nodes per coordinate and half-width 7
(1.4e6 unknowns); it is checked against the trapezoid rule with 128 nodes and half-width 9
(2.1e6 unknowns, a different spacing and truncation) and against another family, the sinh-mapped
trapezoid 64 on layer 1 with Gauss–Hermite 16 on layer 2: the smaller sup difference is the
reference's error bar (both are stored in the results).  The reference curves (t = 20 and, for
the robustness check, t = 100) are cached in ``validation/results/accuracy_reference.json``
(keyed by the configuration text), so reruns only repeat the small solves.

Methods (rule options of mfpde/problem/quadrature.py): the Gaussian trapezoid with the fixed
half-width 9 (today's default) and with ``half_width = "auto"``; Gauss–Hermite, plain and with a
scale; the sinh-mapped trapezoid (``map = "sinh"``); the same kinds with unequal budgets per
layer and per coordinate; Aitken extrapolation in the rule size (post-processing of three
solves); sweeps of the option values (half-width, Gauss–Hermite scale, sinh scale and
half-width; layer 2 fixed at Gauss–Hermite 12); and a robustness check of selected rules trained
to t = 100 against their own references.  The wall time of the winner is compared with today's trapezoid-48 solve, interleaved
in the same run, median of 5.

Writes ``validation/results/accuracy_per_unknown.json`` and
``docs/figures/accuracy_per_unknown.png``, and prints the Markdown tables of the docs section.
Run (about 10 minutes on one core; the references another ~10 minutes the first time):

    NUMBA_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 .venv/bin/python -m validation.accuracy_per_unknown

``--quick`` runs only a few rules (a smoke test of the script).
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import statistics
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "validation" / "configs" / "late_l2_d2.toml"
RESULTS = ROOT / "validation" / "results"
REFERENCE_FILE = RESULTS / "accuracy_reference.json"
OUT_FILE = RESULTS / "accuracy_per_unknown.json"
FIGURE = ROOT / "docs" / "figures" / "accuracy_per_unknown.png"
DT, T_END, SAVE = 0.05, 20.0, 0.5
TIMES = (1.0, 5.0, 20.0)
TARGET_ERROR, TARGET_UNKNOWNS = 1e-5, 100_000


def trap(q, half_width=9.0):
    return {"kind": "gaussian_trapezoid", "size": q, "half_width": half_width}


def gh(q, scale=None):
    return {"kind": "gauss_hermite", "size": q, **({} if scale is None else {"scale": scale})}


def sinh(q, scale=1.0, half_width=6.0):
    return {"kind": "gaussian_trapezoid", "size": q, "map": "sinh", "scale": scale, "half_width": half_width}


REFERENCES = {"trap112_hw7": (trap(112, 7.0), trap(112, 7.0)),      # the reference
              "trap128_hw9": (trap(128, 9.0), trap(128, 9.0)),      # its check: other spacing and truncation
              "sinh64_gh16": (sinh(64), gh(16))}                    # and another family
REFERENCE = "trap112_hw7"
LATE_T_END = 100.0             # the robustness check: the same problem trained 5x longer
LATE_REFERENCES = {"trap160_hw7_gh24": (trap(160, 7.0), gh(24)),       # the t = 100 reference
                   "sinh64_hw8_gh24": (sinh(64, half_width=8.0), gh(24)),  # its check (another family)
                   "sinh96_hw8_gh24": (sinh(96, half_width=8.0), gh(24)),
                   "trap112_hw7": REFERENCES["trap112_hw7"],               # the t = 20 reference: too coarse here
                   "sinh64_gh16": REFERENCES["sinh64_gh16"]}
LATE_REFERENCE = "trap160_hw7_gh24"


def late_rules() -> dict[str, tuple[dict, dict]]:
    return {"trapezoid hw 9, 48 both layers (today)": (trap(48), trap(48)),
            "Gauss-Hermite 24 both layers": (gh(24), gh(24)),
            "trapezoid hw auto 32 + GH 8": (trap(32, "auto"), gh(8)),
            "sinh 12 + GH 6": (sinh(12), gh(6)),
            "sinh 16 + GH 6": (sinh(16), gh(6)),
            "sinh 24 + GH 8": (sinh(24), gh(8)),
            "sinh 32 + GH 10": (sinh(32), gh(10)),
            "sinh 48 + GH 12": (sinh(48), gh(12))}


def methods(quick: bool) -> dict[str, list[tuple[dict, dict, dict]]]:
    """method -> [(layer-1 table per coordinate (or a pair), layer-2 table, labels)]."""
    def same(make, qs, **kw):
        return [(make(q, **kw), make(q, **kw), {"Q1": q, "Q2": q}) for q in qs]

    if quick:
        return {"trapezoid hw 9 (today)": same(trap, (16, 24)),
                "sinh layer 1 + GH layer 2": [(sinh(12), gh(6), {"Q1": 12, "Q2": 6})]}
    return {
        "trapezoid hw 9 (today)": same(trap, (16, 24, 32, 40, 48, 64)),
        "trapezoid hw auto": same(trap, (16, 24, 32, 48, 64), half_width="auto"),
        "Gauss-Hermite": same(gh, (12, 16, 24, 32, 48)),
        "Gauss-Hermite scale 0.7": same(gh, (12, 16, 24, 32, 48), scale=0.7),
        "sinh both layers": same(sinh, (12, 16, 24, 32)),
        "trapezoid hw 9 layer 1 + GH 8 layer 2": [(trap(q), gh(8), {"Q1": q, "Q2": 8}) for q in (24, 32, 48, 64, 96)],
        "trapezoid hw auto layer 1 + GH layer 2": [(trap(q, "auto"), gh(q2), {"Q1": q, "Q2": q2})
                                                   for q, q2 in ((16, 6), (24, 8), (32, 8), (48, 10), (64, 12))],
        "sinh layer 1 + GH layer 2": [(sinh(q), gh(q2), {"Q1": q, "Q2": q2})
                                      for q, q2 in ((8, 4), (12, 6), (16, 6), (20, 8), (24, 8), (32, 10), (48, 12))],
    }


def isolation(quick: bool) -> dict[str, list[tuple[dict, dict, dict]]]:
    """One layer coarse, the other fine: where the error is."""
    if quick:
        return {}
    fine1, fine2 = sinh(48), gh(16)
    return {
        "layer 2 only: GH": [(fine1, gh(q), {"Q2": q}) for q in (3, 4, 6, 8, 12)],
        "layer 2 only: trapezoid hw 9": [(fine1, trap(q), {"Q2": q}) for q in (8, 12, 16, 24)],
        "layer 2 only: sinh": [(fine1, sinh(q), {"Q2": q}) for q in (4, 8, 16)],
        "layer 1 only: trapezoid hw 9": [(trap(q), fine2, {"Q1": q}) for q in (16, 24, 32, 48)],
        "layer 1 only: sinh": [(sinh(q), fine2, {"Q1": q}) for q in (12, 16, 24, 32)],
        "layer 1 per coordinate: sinh (Qa, Qb)": [((sinh(a), sinh(b)), gh(8), {"Qa": a, "Qb": b})
                                                  for a, b in ((24, 16), (16, 24), (24, 24), (20, 20))],
    }


def sweeps(quick: bool) -> dict[str, list[tuple[dict, dict, dict]]]:
    """Parameter sweeps of the layer-1 rule (layer 2: Gauss–Hermite 12, error ≲ 2e-10): the option values."""
    if quick:
        return {}
    l2 = gh(12)
    out = {"trapezoid half_width": [(trap(q, hw), l2, {"Q1": q, "half_width": hw})
                                    for q in (16, 24, 32, 48, 64) for hw in (3.5, 4.0, 4.5, 5.0, 5.5, 6.0, 7.0, 9.0)],
           "Gauss-Hermite scale": [(gh(q, sg), l2, {"Q1": q, "scale": sg})
                                   for q in (16, 24, 32) for sg in (0.7, 0.85, 1.0, 1.25, 1.5, 2.0)],
           "sinh scale, half_width": [(sinh(q, c, a), l2, {"Q1": q, "scale": c, "half_width": a})
                                      for q in (12, 16, 24) for c in (0.5, 0.7, 1.0, 2.0, 3.0) for a in (5.0, 6.0, 7.0)]}
    return out


# --------------------------------------------------------------------------------------------
# Solves
# --------------------------------------------------------------------------------------------

_BASE = None


def base_problem():
    global _BASE
    if _BASE is None:
        import mfpde

        _BASE = mfpde.load(str(CONFIG)).problem
    return _BASE


def layer_rules(layer1, layer2):
    """Rules of the two index spaces: layer 1 a tensor of two 1-D tables (w_1^0 ∈ R²), layer 2 1-D."""
    from mfpde.problem import quadrature as qd

    a, b = layer1 if isinstance(layer1, tuple) else (layer1, layer1)
    return qd.make_rule({"kind": "tensor", "rules": [a, b]}), qd.make_rule(layer2)


def solve(layer1, layer2, t_end: float = T_END) -> tuple[np.ndarray, int, float]:
    """(train loss at t = 0, 0.5, …, t_end, state size, seconds of the time loop)."""
    from mfpde.solvers import integrate, make
    from mfpde.system.system import System

    pb = base_problem()
    r1, r2 = layer_rules(layer1, layer2)
    system = System(dataclasses.replace(pb, embedding=dataclasses.replace(pb.embedding, rules=(r1, r2))))
    t0 = time.perf_counter()
    sol = integrate(system, make("euler", system, dt=DT), t_end, save_every=SAVE, parameters="none")
    return np.asarray(sol.observable("loss_train"), dtype=float), int(system.size), time.perf_counter() - t0


def config_path_check() -> float:
    """|loss via [iid] rule (the config path) − loss via the rule replacement used here|, trapezoid 24."""
    import mfpde
    from mfpde.solvers import integrate, make
    from mfpde.system.system import System

    pb = mfpde.load(str(CONFIG), set={"iid.rule": {"kind": "gaussian_trapezoid", "size": 24}}).problem
    system = System(pb)
    sol = integrate(system, make("euler", system, dt=DT), T_END, save_every=SAVE, parameters="none")
    mine, _, _ = solve(trap(24), trap(24))
    return float(np.max(np.abs(np.asarray(sol.observable("loss_train")) - mine)))


def references(say=print, late: bool = True) -> dict:
    """Reference curves (cached): ``curves[name]`` to t = 20 and ``curves[name + "_t100"]`` to t = 100."""
    key = hashlib.sha256(CONFIG.read_bytes()).hexdigest()
    cached = json.loads(REFERENCE_FILE.read_text()) if REFERENCE_FILE.exists() else {}
    if cached.get("config_sha256") != key:
        cached = {"config_sha256": key, "curves": {}}
    wanted = [(name, T_END, REFERENCES[name]) for name in REFERENCES]
    wanted += [(name, LATE_T_END, LATE_REFERENCES[name]) for name in LATE_REFERENCES] if late else []
    for name, t_end, (l1, l2) in wanted:
        label = name if t_end == T_END else f"{name}_t{t_end:g}"
        if label not in cached["curves"]:
            say(f"reference {label} ...")
            loss, n, sec = solve(l1, l2, t_end)
            cached["curves"][label] = {"layer_1": l1, "layer_2": l2, "t_end": t_end, "unknowns": n,
                                       "seconds": sec, "loss": loss.tolist()}
            RESULTS.mkdir(parents=True, exist_ok=True)
            REFERENCE_FILE.write_text(json.dumps(cached, indent=1))
    return cached


def errors(loss: np.ndarray, ref: np.ndarray, times=TIMES) -> dict:
    e = np.abs(loss - ref)
    out = {"sup": float(e.max()), "t_sup": float(np.argmax(e) * SAVE)}
    for t in times:
        out[f"t{t:g}"] = float(e[int(round(t / SAVE))])
    return out


def aitken(l0, l1, l2):
    """Aitken Δ² of three curves at equally spaced sizes (pointwise in t); falls back to l2 where Δ² ≈ 0."""
    d1, d2 = l1 - l0, l2 - l1
    den = d2 - d1
    safe = np.abs(den) > 1e-300
    out = l2.copy()
    out[safe] = l2[safe] - d2[safe] ** 2 / den[safe]
    return out


def interleaved_times(rules: dict[str, tuple], rounds: int = 5) -> dict[str, dict]:
    """Median (and all samples) of solve seconds, the rules interleaved round by round."""
    samples = {name: [] for name in rules}
    for name, (l1, l2) in rules.items():            # warm-up (compilation, caches)
        solve(l1, l2)
    for _ in range(rounds):
        for name, (l1, l2) in rules.items():
            samples[name].append(solve(l1, l2)[2])
    return {name: {"median_s": statistics.median(s), "samples_s": s} for name, s in samples.items()}


# --------------------------------------------------------------------------------------------
# Study
# --------------------------------------------------------------------------------------------

def run(quick: bool = False, say=print) -> dict:
    refs = references(say, late=not quick)
    ref = np.asarray(refs["curves"][REFERENCE]["loss"])
    checks = {name: errors(np.asarray(refs["curves"][name]["loss"]), ref) for name in REFERENCES if name != REFERENCE}
    for name, c in checks.items():
        say(f"reference {REFERENCE} vs {name}: sup |difference| = {c['sup']:.1e}")
    ref_err = min(checks.values(), key=lambda c: c["sup"])    # the closest independent rule bounds the reference's error
    out = {"config": str(CONFIG.relative_to(ROOT)), "reference": REFERENCE, "reference_check": ref_err,
           "reference_checks": checks,
           "config_path_check": config_path_check(), "methods": {}, "isolation": {}, "sweeps": {}}
    say(f"config path vs rule replacement (trapezoid 24): {out['config_path_check']:.1e}")
    curves = {}
    for group, table in (("methods", methods(quick)), ("isolation", isolation(quick)), ("sweeps", sweeps(quick))):
        for name, runs in table.items():
            rows = []
            for l1, l2, labels in runs:
                loss, n, sec = solve(l1, l2)
                row = {**labels, "layer_1": l1, "layer_2": l2, "unknowns": n, "seconds": sec,
                       **errors(loss, ref)}
                rows.append(row)
                curves[(name, tuple(labels.values()))] = (loss, n)
                say(f"{name:40s} {labels} n={n:8d} {sec:5.2f}s sup={row['sup']:.2e} @t={row['t_sup']:4.1f} "
                    f"e1={row['t1']:.1e} e5={row['t5']:.1e} e20={row['t20']:.1e}")
            out[group][name] = rows
    if not quick:
        ext = []
        for name, qs in (("trapezoid hw 9 (today)", (16, 24, 32)), ("trapezoid hw 9 (today)", (24, 32, 40)),
                         ("trapezoid hw 9 (today)", (32, 40, 48))):
            parts = [curves[(name, (q, q))] for q in qs]
            x = aitken(*[p[0] for p in parts])
            ext.append({"method": name, "Q": list(qs), "unknowns_total": sum(p[1] for p in parts),
                        "unknowns_largest": parts[-1][1], **errors(x, ref),
                        "largest_alone": errors(parts[-1][0], ref)})
            say(f"Aitken {name} Q={qs}: sup {ext[-1]['sup']:.1e} (largest alone {ext[-1]['largest_alone']['sup']:.1e})")
        out["extrapolation"] = ext
    if not quick:
        out["late"] = late(refs, say)
    winners = [r for r in out["methods"].get("sinh layer 1 + GH layer 2", [])
               if r["sup"] <= TARGET_ERROR and r["unknowns"] <= TARGET_UNKNOWNS]
    timing_rules = {"trapezoid hw 9, 48 both layers (today)": (trap(48), trap(48))}
    if winners:
        cheapest = min(winners, key=lambda r: r["unknowns"])
        best = min(winners, key=lambda r: r["sup"])
        for r in (cheapest, best):
            timing_rules[f"sinh {r['Q1']} + GH {r['Q2']}"] = (r["layer_1"], r["layer_2"])
    out["timing"] = interleaved_times(timing_rules, rounds=3 if quick else 5)
    for name, t in out["timing"].items():
        say(f"time {name}: median {t['median_s']:.3f} s  ({', '.join(f'{s:.3f}' for s in t['samples_s'])})")
    return out


def late(refs: dict, say=print) -> dict:
    """The same rules trained to t = 100: does the ranking hold when the functions sharpen further?"""
    times = (1.0, 5.0, 20.0, 50.0, 100.0)
    lref = np.asarray(refs["curves"][f"{LATE_REFERENCE}_t{LATE_T_END:g}"]["loss"])
    checks = {name: errors(np.asarray(refs["curves"][f"{name}_t{LATE_T_END:g}"]["loss"]), lref, times)
              for name in LATE_REFERENCES if name != LATE_REFERENCE}
    for name, c in checks.items():
        say(f"t = 100: reference {LATE_REFERENCE} vs {name}: sup |difference| = {c['sup']:.1e}")
    check = min(checks.values(), key=lambda c: c["sup"])
    rows = {}
    for name, (l1, l2) in late_rules().items():
        loss, n, sec = solve(l1, l2, LATE_T_END)
        rows[name] = {"layer_1": l1, "layer_2": l2, "unknowns": n, "seconds": sec,
                      **errors(loss, lref, times)}
        r = rows[name]
        say(f"t=100 {name:40s} n={n:8d} {sec:6.2f}s sup={r['sup']:.2e} @t={r['t_sup']:5.1f} e20={r['t20']:.1e} "
            f"e50={r['t50']:.1e} e100={r['t100']:.1e}")
    return {"t_end": LATE_T_END, "reference": LATE_REFERENCE, "reference_check": check, "reference_checks": checks,
            "loss_t100": float(lref[-1]), "rules": rows}


def figure(out: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    late_rows = out.get("late", {}).get("rules", {})
    fig, axes = plt.subplots(1, 5 if late_rows else 4, figsize=(21 if late_rows else 17, 4.4), sharey=True)
    keys = [("t1", "t = 1"), ("t5", "t = 5"), ("t20", "t = 20"), ("sup", "sup over t ∈ [0, 20]")]
    floor = out["reference_check"]["sup"]
    for ax, (k, title) in zip(axes, keys):
        for name, rows in out["methods"].items():
            n = [r["unknowns"] for r in rows]
            e = [max(r[k], 1e-13) for r in rows]
            ax.loglog(n, e, "o-", ms=4, label=name)
        ax.axhline(TARGET_ERROR, color="k", lw=0.8, ls="--")
        ax.axvline(TARGET_UNKNOWNS, color="k", lw=0.8, ls=":")
        ax.axhline(floor, color="grey", lw=0.8, ls="-.")
        ax.set_title(title)
        ax.set_xlabel("unknowns (state size)")
        ax.grid(True, which="major", alpha=0.3)
    if late_rows:
        ax = axes[4]
        sinh_rows = [r for name, r in late_rows.items() if name.startswith("sinh")]
        ax.loglog([r["unknowns"] for r in sinh_rows], [r["sup"] for r in sinh_rows], "o-", color="tab:gray",
                  ms=4, label="sinh layer 1 + GH layer 2")
        for name, r in late_rows.items():
            if not name.startswith("sinh"):
                ax.loglog([r["unknowns"]], [r["sup"]], "s", ms=6, label=name)
        ax.axhline(TARGET_ERROR, color="k", lw=0.8, ls="--")
        ax.axvline(TARGET_UNKNOWNS, color="k", lw=0.8, ls=":")
        ax.axhline(out["late"]["reference_check"]["sup"], color="grey", lw=0.8, ls="-.")
        ax.set_title("t_end = 100: sup over t ∈ [0, 100]")
        ax.set_xlabel("unknowns (state size)")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    axes[0].set_ylabel("|loss_train − reference|")
    axes[3].legend(fontsize=7, loc="lower left")
    fig.suptitle("late_l2_d2: index-rule error vs unknowns (dashed: target 1e-5, dotted: 1e5 unknowns, "
                 "dash-dot: reference check)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def tables(out: dict) -> str:
    lines = ["| method | Q_1 (per coord.) | Q_2 | unknowns | e(t=1) | e(t=5) | e(t=20) | sup_t e | s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, rows in out["methods"].items():
        for r in rows:
            lines.append(f"| {name} | {r['Q1']} | {r['Q2']} | {r['unknowns']:.3g} | {r['t1']:.1e} | {r['t5']:.1e} | "
                         f"{r['t20']:.1e} | {r['sup']:.1e} | {r['seconds']:.2f} |")
    lines += ["", "| isolation | sizes | unknowns | sup_t e |", "|---|---|---|---|"]
    for name, rows in out["isolation"].items():
        for r in rows:
            sizes = ", ".join(f"{k}={r[k]}" for k in ("Q1", "Q2", "Qa", "Qb") if k in r)
            lines.append(f"| {name} | {sizes} | {r['unknowns']:.3g} | {r['sup']:.1e} |")
    for name, rows in out.get("sweeps", {}).items():
        keys = [k for k in rows[0] if k not in ("Q1", "layer_1", "layer_2", "unknowns", "seconds", "sup", "t_sup",
                                                 "t1", "t5", "t20")]
        best = {}
        for r in rows:
            if r["Q1"] not in best or r["sup"] < best[r["Q1"]]["sup"]:
                best[r["Q1"]] = r
        lines += ["", f"| sweep: {name} | Q_1 | " + " | ".join(keys) + " | sup_t e |", "|---|---|" + "---|" * (len(keys) + 1)]
        for r in rows:
            mark = " (best)" if best[r["Q1"]] is r else ""
            lines.append(f"| {name} | {r['Q1']} | " + " | ".join(f"{r[k]}" for k in keys) + f" | {r['sup']:.1e}{mark} |")
    if "late" in out:
        lines += ["", "| t_end = 100 | unknowns | e(t=20) | e(t=50) | e(t=100) | sup_t e | s |", "|---|---|---|---|---|---|---|"]
        for name, r in out["late"]["rules"].items():
            lines.append(f"| {name} | {r['unknowns']:.3g} | {r['t20']:.1e} | {r['t50']:.1e} | {r['t100']:.1e} | "
                         f"{r['sup']:.1e} | {r['seconds']:.2f} |")
    if "extrapolation" in out:
        lines += ["", "| Aitken | Q | unknowns (3 solves) | sup_t e | largest alone |", "|---|---|---|---|---|"]
        for r in out["extrapolation"]:
            lines.append(f"| {r['method']} | {r['Q']} | {r['unknowns_total']:.3g} | {r['sup']:.1e} | "
                         f"{r['largest_alone']['sup']:.1e} |")
    lines += ["", "| timing (interleaved, median) | s | samples |", "|---|---|---|"]
    for name, t in out["timing"].items():
        lines.append(f"| {name} | {t['median_s']:.3f} | {', '.join(f'{x:.3f}' for x in t['samples_s'])} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a few rules only (smoke test)")
    args = p.parse_args(argv)
    out = run(quick=args.quick)
    if not args.quick:
        OUT_FILE.write_text(json.dumps(out, indent=1))
        figure(out, FIGURE)
        print(tables(out))
        print(f"wrote {OUT_FILE.relative_to(ROOT)} and {FIGURE.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

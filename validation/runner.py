"""The study runner: ``python -m validation [STUDY ...] [--quick] [--out DIR]``.

Runs the named studies (default: all, in order), each in its own sub-folder of the output
folder, and writes ``OUT/STUDY.json`` (the small summary: sizes, tables, rates, checks,
wall time and load average) and ``OUT/index.json``.  Exit status 0 when every check passed,
1 when one failed, 2 on a usage error.  Imports validation.common and the study modules.
"""
from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import time
from pathlib import Path

STUDIES = {
    "ss_lln": "validation.s1_ss_lln",
    "ss_deep": "validation.s2_ss_deep",
    "np_two_layer": "validation.s3_np_two_layer",
    "np_iid_three": "validation.s4_np_iid_three",
    "np_correlated": "validation.s5_np_correlated",
    "aoy_frozen": "validation.s6_aoy_frozen",
    "digits": "validation.s7_digits",
}


def build_parser(prog: str = "python -m validation") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Run the mfpde validation studies (docs/validation.md).")
    add_arguments(p)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("studies", nargs="*", metavar="STUDY", help=f"studies to run (default: all): {', '.join(STUDIES)}")
    p.add_argument("--quick", action="store_true", help="small sizes (CI, a few minutes) with wider tolerances")
    p.add_argument("--out", metavar="DIR", help="output folder (default validation/results, or validation/results/quick)")
    p.add_argument("--figures", metavar="DIR", help="PNG folder (default docs/figures in full mode, OUT/figures in quick mode)")


def run_studies(names=None, *, quick: bool = False, out=None, figures=None, say=print) -> dict:
    """Run studies and return {name: summary}; raises ValueError for unknown names."""
    from validation import common

    names = list(names or STUDIES)
    unknown = [n for n in names if n not in STUDIES]
    if unknown:
        raise ValueError(f"unknown study {', '.join(map(repr, unknown))}; known: {', '.join(STUDIES)}")
    out = Path(out) if out else (common.DEFAULT_OUT / "quick" if quick else common.DEFAULT_OUT)
    figures = Path(figures) if figures else (out / "figures" if quick else common.FIGURES)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    t_all = time.perf_counter()
    for name in names:
        mod = importlib.import_module(STUDIES[name])
        ctx = common.Context(name=name, out=out / name, figures=figures, quick=quick, say=say)
        say(f"== {name}: {mod.TITLE} ({'quick' if quick else 'full'} sizes)")
        load0 = common.load_average()
        t0 = time.perf_counter()
        status = "completed"
        message = ""
        try:
            mod.run(ctx)
        except ImportError as exc:
            status, message = "error", str(exc)
            say(f"  ERROR: {exc}")
        wall = time.perf_counter() - t0
        passed = status == "completed" and all(c["passed"] for c in ctx.checks)
        summary = {"study": name, "title": mod.TITLE, "paper": mod.PAPER, "mode": "quick" if quick else "full",
                   "status": status, "message": message, "passed": passed, "sizes": mod.SIZES["quick" if quick else "full"],
                   "checks": ctx.checks, "tables": ctx.tables, "extra": ctx.extra,
                   "figures": [str(Path(f).relative_to(common.ROOT)) if Path(f).is_relative_to(common.ROOT) else f
                               for f in ctx.files],
                   "wall_seconds": round(wall, 1), "load_average_start": load0, "load_average_end": common.load_average(),
                   "machine": f"{platform.node()} ({platform.machine()}, python {platform.python_version()})",
                   "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        common.write_summary(out / f"{name}.json", summary)
        say(f"== {name}: {'PASS' if passed else 'FAIL'} in {wall:.1f} s (load {load0} → {common.load_average()})")
        results[name] = summary
    index = {"studies": {k: {"passed": v["passed"], "wall_seconds": v["wall_seconds"]} for k, v in results.items()},
             "total_wall_seconds": round(time.perf_counter() - t_all, 1), "mode": "quick" if quick else "full"}
    if set(names) == set(STUDIES):
        (out / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    say(f"== total {index['total_wall_seconds']} s: " + ", ".join(f"{k} {'PASS' if v['passed'] else 'FAIL'}"
                                                          for k, v in results.items()))
    return results


def main(argv=None, prog: str = "python -m validation") -> int:
    args = build_parser(prog).parse_args(argv)
    return run_args(args)


def run_args(args) -> int:
    try:
        res = run_studies(args.studies, quick=args.quick, out=args.out, figures=args.figures)
    except ValueError as exc:
        print(f"validation: error: {exc}", file=sys.stderr)
        return 2
    return 0 if all(r["passed"] for r in res.values()) else 1

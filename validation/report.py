"""Markdown tables from the JSON summaries: ``python -m validation.report [DIR]``.

Prints, per study, the checks (value, 95 % CI, required band, pass/fail) and every table
(width, mean ± sem, × √n) — the numbers quoted in docs/validation.md.  Imports json only.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def _fmt(x, p=4):
    if x is None:
        return "—"
    if isinstance(x, str):
        return x
    if abs(x) >= 1e300:
        return "∞" if x > 0 else "−∞"
    return f"{x:.{p}g}"


def study_markdown(s: dict) -> str:
    out = [f"**{s['study']}** — {'PASS' if s['passed'] else 'FAIL'}, {s['mode']} sizes, {s['wall_seconds']} s wall "
           f"(load average {s['load_average_start']} → {s['load_average_end']})", "",
           "| check | measured | 95 % CI | required | result |", "|---|---|---|---|---|"]
    for c in s["checks"]:
        ci = "—" if not c["ci95"] else f"[{_fmt(c['ci95'][0], 3)}, {_fmt(c['ci95'][1], 3)}]"
        out.append(f"| {c['name']} | {_fmt(c['value'])} | {ci} | [{_fmt(c['band'][0], 3)}, {_fmt(c['band'][1], 3)}] "
                   f"| {'pass' if c['passed'] else '**FAIL**'} |")
    for name, rows in s["tables"].items():
        if isinstance(rows, list) and rows and "times_sqrt_n" in rows[0]:
            out += ["", f"{name}:", "", "| width | mean | ± sem | × √n |", "|---|---|---|---|"]
            out += [f"| {r['width']} | {_fmt(r['mean'])} | {_fmt(r['sem'], 2)} | {_fmt(r['times_sqrt_n'], 3)} |" for r in rows]
        elif isinstance(rows, list) and rows:
            keys = [k for k in rows[0]]
            out += ["", f"{name}:", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
            out += ["| " + " | ".join(_fmt(r.get(k)) for k in keys) + " |" for r in rows]
    return "\n".join(out)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    folder = Path(argv[0]) if argv else Path(__file__).resolve().parent / "results"
    from validation.runner import STUDIES

    for name in STUDIES:
        p = folder / f"{name}.json"
        if p.exists():
            print(study_markdown(json.loads(p.read_text())))
            print()
    return 0


if __name__ == "__main__":
    sys.exit(main())

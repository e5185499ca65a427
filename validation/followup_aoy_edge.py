"""Post-hoc follow-up of study 6, part B (σ(W, a) = tanh(W a), which failed its criterion).

Not a pre-registered study: the same problem and criterion as ``s6_aoy_frozen`` part B with
more replicas (48; replicas 0–15 are the study's own runs, same seeds) and, in the second
run, larger widths, to tell noise from a systematic deviation.  Results:
``validation/results/aoy_frozen_followup{,2}.json`` (reported in docs/validation.md)::

    python -m validation.followup_aoy_edge              # widths 32 … 256 × 48
    python -m validation.followup_aoy_edge 128,256,512,1024  # widths 128 … 1024 × 48 (≈ 30 min)
"""
from __future__ import annotations

import sys
import time

from validation import common, s6_aoy_frozen as s6


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    sz = dict(s6.SIZES["full"]["edge"], replicas=48)
    tag = "aoy_frozen_followup"
    if argv:
        sz["widths"] = [int(x) for x in argv[0].split(",")]
        tag += "2"
    ctx = common.Context(name=tag, out=common.DEFAULT_OUT / tag, figures=common.DEFAULT_OUT / tag, quick=False)
    plt = common.pyplot()
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.8))
    t0 = time.perf_counter()
    s6._part(ctx, s6.EDGE, sz, "_edge", f"follow-up: {sz['replicas']} replicas", ax)
    common.save(fig, common.DEFAULT_OUT / tag / "errors.png")
    common.write_summary(common.DEFAULT_OUT / f"{tag}.json",
                         {"study": "aoy_frozen part B follow-up (post hoc)", "sizes": sz, "checks": ctx.checks,
                          "tables": ctx.tables, "extra": ctx.extra, "wall_seconds": round(time.perf_counter() - t0, 1),
                          "load_average_end": common.load_average()})
    return 0


if __name__ == "__main__":
    sys.exit(main())

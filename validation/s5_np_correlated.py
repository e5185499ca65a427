"""Study 5 — Nguyen–Pham: three hidden layers with a correlated neuronal embedding — no collapse.

Setting (SPEC §4, ``examples/three_layer_correlated.toml``): L = 3 tanh layers, squared loss,
teacher y = tanh(1.5 ⟨u, x⟩), x ~ N(0, I_2) (10 × 10 Gauss–Hermite data nodes).  Every index
space is R² with the standard Gaussian law; w_1^0(c) = c/√2, v^0(c) = c[0],
W_2^0(c, c') = tanh(⟨c, c'⟩), W_3^0(c, c') = 0.2 + 0.8 sin(⟨A c, c'⟩).  Finite networks sample
C_l(j) ~ N(0, I_2) and evaluate these functions (correlated along rows and columns); full-batch
GD with ε = 0.05 against Euler (Δt = ε) on the limit.  The limit uses 32 × 32 Gaussian-trapezoid
nodes on [−6, 6]² per index space (quick: 24 × 24); a 24 × 24 (16 × 16) solve gives its
discretization-error estimate.

Expected: nothing collapses: the spread of h_2 across neurons converges to the limit's
(non-zero) spread instead of shrinking, and the output error falls like n^{−1/2}.

Criteria (stated before running; quick mode widens each band by twice the replica-noise SE):
* output-error rate in [0.35, 0.65];
* no collapse: the mean h_2 spread at the largest width is within 10 % of the limit's spread
  (and the limit's spread is > 0.05);
* the limit's discretization error (coarse vs fine rule, sup-time RMS output) is below a third
  of the smallest mean network error, so the rate measures the width alone.
"""
from __future__ import annotations

import numpy as np

from mfpde.analysis import compare as cmp
from mfpde.store import runs
from validation import common

TITLE = "NP three hidden layers, correlated embedding: no collapse"
PAPER = "Nguyen & Pham (2020), A rigorous framework for the mean field limit of multilayer neural networks"
SIZES = {
    "full": {"widths": [32, 64, 128, 256, 512, 1024], "replicas": 16, "t_end": 2.0, "eps": 0.05, "rule": 32, "coarse": 24},
    "quick": {"widths": [32, 64, 128, 256], "replicas": 16, "t_end": 1.0, "eps": 0.05, "rule": 24, "coarse": 16},
}


def limit_spread(sol, system, layer: int = 2) -> float:
    """Mean over probes of the rule-weighted std across nodes of h_layer in the final limit state."""
    from mfpde.system.system import reference_forward

    H = reference_forward(system, sol.y, np.asarray(system.problem.probes, float))[0][layer - 1]   # [P, Q]
    w = system.weights[layer - 1]
    mean = H @ w
    return float(np.mean(np.sqrt(((H - mean[:, None]) ** 2) @ w)))


def network_vs_limit(ctx: common.Context, name: str, sz: dict, *, coarse: int, label: str, statistics=True,
                     overrides=None):
    """Limit (fine and coarse rule), full-batch ensemble, comparison for the study configuration
    ``name`` with ``overrides``; returns (c, limit, sol, system, ens, res, discretization error)."""
    T, every, eps = sz["t_end"], 0.5, sz["eps"]
    c = common.load(name, {**(overrides or {}), "rules.default.size": sz["rule"]})
    limit, sol, system = common.solve_limit(c, ctx.path(f"limit{label}.nc"), stepper="euler", dt=eps, t_end=T,
                                            save_every=every)
    cc = common.load(name, {**(overrides or {}), "rules.default.size": coarse})
    lc, _, _ = common.solve_limit(cc, ctx.path(f"limit{label}_coarse.nc"), stepper="euler", dt=eps, t_end=T,
                                  save_every=every)
    disc = float(common.sup_rms(lc["yhat_probe"].values, limit["yhat_probe"].values))
    ens = runs.read(common.ensemble(c, ctx.path(f"runs{label}.h5"), sz["widths"], sz["replicas"], lr=eps, t_end=T,
                                    every=every, statistics=statistics, say=ctx.say))
    res = cmp.compare(limit, ens)
    ctx.say(cmp.table(res))
    return c, limit, sol, system, ens, res, disc


def run(ctx: common.Context) -> None:
    sz = SIZES["quick" if ctx.quick else "full"]
    c, limit, sol, system, ens, res, disc = network_vs_limit(ctx, "np_correlated", sz, coarse=sz["coarse"], label="")
    w = res["width"].values
    ctx.tables["output_error"] = common.compare_table(res, "output_error")
    ctx.tables["loss_error"] = common.compare_table(res, "loss_error")
    r = common.rate_check(ctx, "output_error_rate", w, res["output_error_mean"].values, res["output_error_sem"].values)
    spread_inf = limit_spread(sol, system)
    sp = ens["h_spread_2"].values[:, :, -1]
    ms, ss = common.per_width(sp)
    ctx.tables["h2_spread_final"] = common.rows_from(w, ms, ss)
    ctx.extra["limit_h2_spread_final"] = spread_inf
    ctx.say(common.table_text(ctx.tables["h2_spread_final"], "h_2 spread") + f"\n  limit: {spread_inf:.4e}")
    ctx.check("limit_h2_spread", spread_inf, 0.05, None, expected="> 0 (no collapse)")
    rel = abs(ms[-1] - spread_inf) / spread_inf
    ctx.check("h2_spread_relative_difference_at_largest_width", rel, None, 0.10,
              expected="→ 0 (networks' spread converges to the limit's)", slack=2 * ss[-1] / spread_inf)
    small = float(np.min(res["output_error_mean"].values))
    ctx.extra["limit_discretization_error"] = disc
    ctx.check("limit_discretization_error_over_smallest_network_error", disc / small, None, 1 / 3,
              expected="≪ 1 (the rule is not what is measured)")

    plt = common.pyplot()
    fig, ax = plt.subplots(1, 3, figsize=(14, 3.8))
    common.time_panel(ax[0], limit, ens, "loss_train", ylabel="train loss")
    ax[0].set_yscale("log"), ax[0].set_title("correlated embedding, L = 3")
    common.error_panel(ax[1], w, res["output_error_mean"].values, res["output_error_sem"].values, "output error",
                       r["rate"])
    common.error_panel(ax[1], w, res["loss_error_mean"].values, res["loss_error_sem"].values, "loss error",
                       res.attrs["loss_error_rate"], marker="s")
    common.guide(ax[1], w, res["output_error_mean"].values[0])
    common.loglog(ax[1])
    ax[2].errorbar(w, ms, yerr=ss, marker="o", capsize=3, label="networks (t = T)")
    ax[2].axhline(spread_inf, color="k", ls="--", label="limit")
    ax[2].set_xscale("log"), ax[2].set_xlabel("width n"), ax[2].set_ylabel("spread of $h_2$ across neurons")
    ax[2].set_ylim(0, 1.3 * max(spread_inf, float(np.max(ms)))), ax[2].legend(fontsize=7)
    ax[2].set_title("no collapse")
    common.save(fig, ctx.figure("errors"))

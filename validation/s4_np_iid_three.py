"""Study 4 — Nguyen–Pham: three hidden layers with i.i.d. initialization — the degeneracy.

Setting (SPEC §4, ``examples/np_iid_three_layer.toml``): L = 3 (sigmoid, tanh, tanh), squared
loss, teacher y = tanh(2x), x ~ N(0, 1) (48 trapezoid nodes); w_1^0 ~ N(0.5, 1),
W_2^0, W_3^0 ~ N(0.5, 1) i.i.d., v^0 ~ N(0.3, 1); full-batch GD, ε = 0.05.  The reduced limit
collapses the middle layer to one node (h_2 and δ_2 identical for every neuron; the last
hidden layer is rank one).  Finite networks are compared with it (Euler, Δt = ε), and the
collapse is measured in them: the spread of h_2 across neurons (mean over 13 probes) and
σ_2/σ_1 of the last hidden layer's pre-activation matrix [h_3(x_p, j)] on the probes.

The frozen case: W_2^0, W_3^0 ~ N(0, 1) (all middle means zero) and tanh (φ(0) = 0) in the
collapsed layers: h_2 ≡ 0 in the limit, the output never moves.

Expected: output error ∝ n^{−1/2}; spread of h_2 ∝ n^{−1/2}; σ_2/σ_1 → 0 at least like
n^{−1/2} (SPEC §4; docs/iid.md derives n^{−1}); frozen case: the limit is constant in time
and the networks' output displacement sup_t |ŷ_n(t) − ŷ_n(0)| → 0 with n.

Criteria (stated before running; quick mode widens each band by twice the replica-noise SE):
* output-error rate in [0.35, 0.65];
* rate of the h_2 spread at the final time in [0.35, 0.65];
* rate of σ_2/σ_1 (last hidden layer, final time) ≥ 0.35 (no upper bound: SPEC §4 says
  "like n^{−1/2}", the refined argument of docs/iid.md says n^{−1});
* frozen case: limit output displacement ≤ 1e−12; rate of the networks' output displacement
  ≥ 0.35; rate of their h_2 spread in [0.35, 0.65].
"""
from __future__ import annotations

import warnings

import numpy as np

from mfpde.analysis import compare as cmp
from mfpde.store import runs
from validation import common

TITLE = "NP three hidden layers, i.i.d.: degeneracy in networks vs the collapsed limit"
PAPER = "Nguyen & Pham (2020), A rigorous framework for the mean field limit of multilayer neural networks"
SIZES = {
    "full": {"widths": [64, 128, 256, 512, 1024], "replicas": 32, "frozen_replicas": 16, "t_end": 2.0, "eps": 0.05},
    "quick": {"widths": [64, 128, 256, 512], "replicas": 24, "frozen_replicas": 8, "t_end": 1.0, "eps": 0.05},
}


def _collapse_stats(ctx, ens, tag):
    spread = ens["h_spread_2"].values[:, :, -1]                      # [W, R] final time
    sv = ens["singular_values_3"].values[:, :, -1, :]                # [W, R, 3]
    ratio = sv[..., 1] / sv[..., 0]
    ms, ss = common.per_width(spread)
    mr, sr = common.per_width(ratio)
    w = ens["width"].values
    ctx.tables[f"{tag}h2_spread_final"] = common.rows_from(w, ms, ss)
    ctx.tables[f"{tag}sigma2_over_sigma1_final"] = common.rows_from(w, mr, sr)
    ctx.say(common.table_text(ctx.tables[f"{tag}h2_spread_final"], "h_2 spread"))
    ctx.say(common.table_text(ctx.tables[f"{tag}sigma2_over_sigma1_final"], "σ2/σ1"))
    return (ms, ss), (mr, sr)


def run(ctx: common.Context) -> None:
    sz = SIZES["quick" if ctx.quick else "full"]
    T, every, eps = sz["t_end"], 0.5, sz["eps"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c = common.load("np_iid_three")                     # m_2 = m_3 = 0.5
        cz = common.load("np_iid_three", {"iid.W": [{"mean": 0.0, "std": 1.0}] * 2})   # zero means: frozen
    ctx.extra["notes"] = list(c.notes)
    ctx.extra["frozen_notes"] = list(cz.notes)
    ctx.extra["limit_nodes_per_layer"] = [r.size for r in c.problem.embedding.rules]
    limit, _, _ = common.solve_limit(c, ctx.path("limit.nc"), stepper="euler", dt=eps, t_end=T, save_every=every)
    ens = runs.read(common.ensemble(c, ctx.path("runs.h5"), sz["widths"], sz["replicas"], lr=eps, t_end=T,
                                    every=every, statistics=True, say=ctx.say))
    res = cmp.compare(limit, ens)
    ctx.say(cmp.table(res))
    ctx.tables["output_error"] = common.compare_table(res, "output_error")
    ctx.tables["loss_error"] = common.compare_table(res, "loss_error")
    r_out = common.rate_check(ctx, "output_error_rate", res["width"].values, res["output_error_mean"].values,
                              res["output_error_sem"].values)
    (ms, ss), (mr, sr) = _collapse_stats(ctx, ens, "")
    w = ens["width"].values
    r_sp = common.rate_check(ctx, "h2_spread_rate", w, ms, ss)
    r_ra = common.rate_check(ctx, "sigma2_over_sigma1_rate", w, mr, sr, band=(0.35, None),
                             expected="≥ 1/2 (SPEC §4), ≈ 1 (docs/iid.md)")

    # frozen zero-mean case
    lz, _, _ = common.solve_limit(cz, ctx.path("limit_frozen.nc"), stepper="euler", dt=eps, t_end=T, save_every=every)
    yl = lz["yhat_probe"].values
    disp_lim = float(np.max(np.abs(yl - yl[0])))
    ctx.check("frozen_limit_output_displacement", disp_lim, None, 1e-12, expected="0 (the limit never moves)")
    ez = runs.read(common.ensemble(cz, ctx.path("runs_frozen.h5"), sz["widths"], sz["frozen_replicas"], lr=eps,
                                   t_end=T, every=every, statistics=True, say=ctx.say))
    yz = ez["yhat_probe"].values                                          # [W, R, T, P, K]
    disp = common.sup_rms(yz, yz[:, :, :1])
    md, sd = common.per_width(disp)
    ctx.tables["frozen_output_displacement"] = common.rows_from(w, md, sd)
    ctx.say(common.table_text(ctx.tables["frozen_output_displacement"], "displacement"))
    r_fd = common.rate_check(ctx, "frozen_output_displacement_rate", w, md, sd, band=(0.35, None),
                             expected="> 0 (networks freeze as n grows)")
    (fs, fss), (fr, frs) = _collapse_stats(ctx, ez, "frozen_")
    r_fs = common.rate_check(ctx, "frozen_h2_spread_rate", w, fs, fss)

    plt = common.pyplot()
    fig, ax = plt.subplots(1, 3, figsize=(14, 3.8))
    common.time_panel(ax[0], limit, ens, "loss_train", ylabel="train loss")
    ax[0].set_yscale("log"), ax[0].set_title("m_2 = m_3 = 0.5: networks vs collapsed limit")
    common.error_panel(ax[1], w, res["output_error_mean"].values, res["output_error_sem"].values, "output error",
                       r_out["rate"])
    common.error_panel(ax[1], w, ms, ss, "spread of $h_2$", r_sp["rate"], marker="s")
    common.error_panel(ax[1], w, mr, sr, r"$\sigma_2/\sigma_1$ of $h_3$", r_ra["rate"], marker="^")
    common.guide(ax[1], w, ms[0])
    common.guide(ax[1], w, mr[0], p=1.0, label="$n^{-1}$")
    common.loglog(ax[1], ylabel="error / collapse statistic (t = T)")
    common.error_panel(ax[2], w, md, sd, "output displacement", r_fd["rate"])
    common.error_panel(ax[2], w, fs, fss, "spread of $h_2$", r_fs["rate"], marker="s")
    common.guide(ax[2], w, fs[0])
    ax[2].set_title("frozen case m_2 = m_3 = 0 (limit frozen)")
    common.loglog(ax[2], ylabel="network statistic")
    common.save(fig, ctx.figure("collapse"))

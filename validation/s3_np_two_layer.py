"""Study 3 — Nguyen (2019) / Nguyen–Pham: two hidden layers, i.i.d. initialization; full batch
versus online minibatch SGD, with an ε refinement that separates the two error sources.

Setting (SPEC §4, L = 2, ``[iid]``): sigmoid then tanh, squared loss, teacher y = tanh(2x),
x ~ N(0, 1) (integrated by 48 Gaussian-trapezoid nodes); w_1^0 ~ N(0.5, 1),
W_2^0 ~ N(0.5, 1) i.i.d. (the limit keeps the mean, the networks add the noise),
v^0 ~ N(0.3, 1).  Non-zero means (and the non-odd sigmoid) avoid the symmetric cancellation
of docs/runs.md, where the output error would fall like 1/n at t = 0.

Part A — full-batch GD (ε = 0.05) at widths n, against Euler with Δt = ε on the reduced limit
(SPEC §1: full-batch GD *is* that Euler scheme up to the width error).  Expected: sup-time RMS
output error ∝ n^{−1/2}.

Part B — online SGD (fresh batch of B samples from the law each step) at a fixed width, for
several (ε, B).  The online run and the full-batch run of the *same* network (same seed, same
initialization; only the data of each step differ) are compared: their difference is the
online error alone, expected ∝ √(ε/B), independent of the width error.

Criteria (stated before running; quick mode widens each band by twice the replica-noise SE):
* Part A: output-error rate in n in [0.35, 0.65];
* Part B: rate of the online-minus-full-batch output difference in 1/(ε/B) in [0.35, 0.65]
  (i.e. difference ∝ (ε/B)^{1/2}).
Reported: loss-error rate, error × √n, and the online runs' total error against the limit.
"""
from __future__ import annotations

import numpy as np

from mfpde.analysis import compare as cmp
from mfpde.store import runs
from mfpde.problem.data import make_law
from validation import common

TITLE = "NP two hidden layers, i.i.d.: full batch vs online minibatch"
PAPER = "Nguyen (2019), Mean field limit of the learning dynamics of multilayer neural networks; Nguyen & Pham (2020)"
SIZES = {
    "full": {"widths": [64, 128, 256, 512, 1024, 2048], "replicas": 32, "t_end": 2.0, "eps": 0.05,
             "online_width": 256, "online": [[0.1, 4], [0.05, 4], [0.025, 4], [0.0125, 4], [0.05, 1], [0.05, 16]],
             "online_replicas": 32},
    "quick": {"widths": [64, 128, 256, 512, 1024], "replicas": 24, "t_end": 1.0, "eps": 0.05,
              "online_width": 128, "online": [[0.1, 4], [0.05, 4], [0.025, 4], [0.05, 1], [0.05, 16]],
              "online_replicas": 24},
}


def run(ctx: common.Context) -> None:
    sz = SIZES["quick" if ctx.quick else "full"]
    T, every, eps = sz["t_end"], 0.5, sz["eps"]
    c = common.load("np_two_layer")
    # Part A: full batch vs the Euler(ε) limit
    limit, _, _ = common.solve_limit(c, ctx.path("limit_euler.nc"), stepper="euler", dt=eps, t_end=T, save_every=every)
    store = common.ensemble(c, ctx.path("runs_full.h5"), sz["widths"], sz["replicas"], mode="full", lr=eps, t_end=T,
                            every=every, say=ctx.say)
    ens = runs.read(store)
    res = cmp.compare(limit, ens)
    ctx.say(cmp.table(res))
    rA = common.rate_check(ctx, "full_batch_output_error_rate", res["width"].values, res["output_error_mean"].values,
                           res["output_error_sem"].values)
    ctx.tables["full_batch_output_error"] = common.compare_table(res, "output_error")
    ctx.tables["full_batch_loss_error"] = common.compare_table(res, "loss_error")
    ctx.extra["full_batch_loss_error_rate"] = [res.attrs["loss_error_rate"], res.attrs["loss_error_rate_ci_low"],
                                               res.attrs["loss_error_rate_ci_high"]]
    # Part B: online minus full batch, same networks, (ε, B) refinement
    law = make_law(c.raw["data"]["train"], "data.train")
    n, R = sz["online_width"], sz["online_replicas"]
    flow, _, _ = common.solve_limit(c, ctx.path("limit_rk4.nc"), stepper="rk4", dt=0.0125, t_end=T, save_every=every)
    rows, diffs, tot = [], [], []
    for e, B in sz["online"]:
        full = runs.read(common.ensemble(c, ctx.path(f"runs_full_eps{e:g}.h5"), [n], R, mode="full", lr=e, t_end=T,
                                         every=every, say=ctx.say))
        onl = runs.read(common.ensemble(c, ctx.path(f"runs_online_eps{e:g}_B{B}.h5"), [n], R, mode="online", batch=B,
                                        lr=e, t_end=T, every=every, law=law, say=ctx.say))
        d = common.sup_rms(onl["yhat_probe"].values[0], full["yhat_probe"].values[0])    # [R]
        to = common.sup_rms(onl["yhat_probe"].values[0], flow["yhat_probe"].values[None])
        diffs.append(d)
        tot.append(to)
        rows.append({"eps": e, "B": B, "eps_over_B": e / B, "online_minus_full_mean": float(d.mean()),
                     "sem": float(d.std(ddof=1) / np.sqrt(R)), "over_sqrt_eps_over_B": float(d.mean() / np.sqrt(e / B)),
                     "online_vs_flow_mean": float(to.mean())})
        ctx.say(f"  ε = {e:g}, B = {B}: |online − full| = {d.mean():.3e} ± {d.std(ddof=1) / np.sqrt(R):.1e}, "
                f"/ √(ε/B) = {d.mean() / np.sqrt(e / B):.3f}; online vs gradient flow {to.mean():.3e}")
    ctx.tables["online_minus_full"] = rows
    x = np.array([r["eps_over_B"] for r in rows])
    m = np.array([r["online_minus_full_mean"] for r in rows])
    s = np.array([r["sem"] for r in rows])
    rB = common.rate_check(ctx, "online_difference_rate_in_B_over_eps", 1.0 / x, m, s,
                           expected="1/2 (difference ∝ (ε/B)^{1/2})")

    plt = common.pyplot()
    fig, ax = plt.subplots(1, 3, figsize=(14, 3.8))
    common.time_panel(ax[0], limit, ens, "loss_train", ylabel="train loss")
    ax[0].set_yscale("log"), ax[0].set_title("full batch GD, ε = %g" % eps)
    common.error_panel(ax[1], res["width"].values, res["output_error_mean"].values, res["output_error_sem"].values,
                       "output error (full batch)", rA["rate"])
    common.guide(ax[1], res["width"].values, res["output_error_mean"].values[0])
    common.loglog(ax[1])
    for B, mk in ((4, "o"), (1, "s"), (16, "^")):
        sel = [i for i, r in enumerate(rows) if r["B"] == B]
        ax[2].errorbar(x[sel], m[sel], yerr=s[sel], marker=mk, ls="none", capsize=3, label=f"B = {B}")
    xs = np.sort(x)
    ax[2].plot(xs, m[np.argmin(np.abs(x - xs[-1]))] * np.sqrt(xs / xs[-1]), "k:", label="$(ε/B)^{1/2}$")
    ax[2].set_title(f"|online − full batch|, n = {n} (rate {rB['rate']:.2f})")
    common.loglog(ax[2], "ε/B", "sup-time output difference")
    common.save(fig, ctx.figure("errors"))

"""Study 1 — Sirignano–Spiliopoulos law of large numbers: one hidden layer, online SGD, ε = 1/N.

Setting (SPEC §5, ``examples/shallow_sgd_lln.toml``): L = 1, tanh, identity output, squared
loss, neuron index c = (w_1^0, v^0) ~ N(0, I_2), teacher y = tanh(2x) on x ~ N(0, 1).  Finite
networks of width N are trained by online SGD with batch B = 1 and step ε = 1/N (a fresh
sample every step, time t = k/N), exactly the scaling of their LLN.  The limit is the
population gradient flow (RK4, dt = 0.01, Gaussian-trapezoid rules: 48 × 16 index nodes,
64 data nodes), i.e. ε → 0.

Expected: the network approaches the limit with error O(N^{−1/2}) (width) + O(√(ε/B)) =
O(N^{−1/2}) (online noise), so the sup-time RMS output error on 31 probes falls like N^{−1/2}.

Criteria (stated before running):
* output-error rate in [0.35, 0.65] (full); in quick mode the band is widened by twice the
  replica-noise standard error of the fitted slope;
* reported, not asserted: the loss-error rate (it mixes O(N^{−1/2}) fluctuations and O(1/N)
  bias) and error × √N.
"""
from __future__ import annotations

from mfpde.analysis import compare as cmp
from mfpde.store import runs
from mfpde.problem.data import make_law
from validation import common

TITLE = "SS-LLN: shallow online SGD with ε = 1/N"
PAPER = "Sirignano & Spiliopoulos, Mean field analysis of neural networks: a law of large numbers"
SIZES = {
    "full": {"widths": [100, 300, 1000, 3000, 10000], "replicas": 24, "t_end": 2.0},
    "quick": {"widths": [100, 300, 1000, 3000], "replicas": 16, "t_end": 1.0},
}


def run(ctx: common.Context) -> None:
    sz = SIZES["quick" if ctx.quick else "full"]
    T, every = sz["t_end"], 0.5
    c = common.load("ss_lln")
    limit, _, _ = common.solve_limit(c, ctx.path("limit.nc"), stepper="rk4", dt=0.01, t_end=T, save_every=every)
    law = make_law(c.raw["data"]["train"], "data.train")
    store = common.ensemble(c, ctx.path("runs.h5"), sz["widths"], sz["replicas"], mode="online", batch=1,
                            lr=lambda n: 1.0 / n, t_end=T, every=every, law=law, say=ctx.say)
    ens = runs.read(store)
    res = cmp.compare(limit, ens)
    ctx.say(cmp.table(res))
    out = common.rate_check(ctx, "output_error_rate", res["width"].values, res["output_error_mean"].values,
                            res["output_error_sem"].values)
    ctx.tables["output_error"] = common.compare_table(res, "output_error")
    ctx.tables["loss_error"] = common.compare_table(res, "loss_error")
    ctx.extra["loss_error_rate"] = [res.attrs["loss_error_rate"], res.attrs["loss_error_rate_ci_low"],
                                    res.attrs["loss_error_rate_ci_high"]]
    ctx.extra["limit_loss_final"] = float(limit["loss_train"].values[-1])
    plt = common.pyplot()
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.8))
    common.time_panel(ax[0], limit, ens, "loss_train", ylabel="train loss (population)")
    ax[0].set_yscale("log"), ax[0].set_title("online SGD, ε = 1/N, B = 1")
    common.error_panel(ax[1], res["width"].values, res["output_error_mean"].values, res["output_error_sem"].values,
                       "output error", out["rate"])
    common.error_panel(ax[1], res["width"].values, res["loss_error_mean"].values, res["loss_error_sem"].values,
                       "loss error", res.attrs["loss_error_rate"], marker="s")
    common.guide(ax[1], res["width"].values, res["output_error_mean"].values[0])
    common.loglog(ax[1], "width N (ε = 1/N)")
    common.save(fig, ctx.figure("errors"))

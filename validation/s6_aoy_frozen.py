"""Study 6 — Araújo–Oliveira–Yukimura: frozen random features at both ends, and a nonlinear edge map.

Setting (SPEC §5, ``examples/aoy_frozen_ends.toml``, ``examples/aoy_nonlinear_edges.toml``):
L = 3 tanh layers, squared loss, teacher y = tanh(1.5 ⟨u, x⟩), x ~ N(0, I_2) (10 × 10
Gauss–Hermite data nodes), the correlated embedding of study 5 (index spaces R² with
N(0, I_2), W_2^0 = tanh(⟨c, c'⟩), W_3^0 = m + s sin(⟨A c, c'⟩)); the input features w_1 and
the output features v are frozen (ξ_1 = ξ_4 = 0), the inner weights W_2, W_3 are trained with
SPEC §1's multiplier n_{l−1} n_l (their N²).  Full-batch GD, ε = 0.05, against Euler
(Δt = ε) on the limit (Gaussian-trapezoid rules on [−6, 6]²; a coarser solve estimates the
rule error).

Part A — linear edges (h_3 = E W_3 φ(h_2)), W_3^0 = 0.2 + 0.8 sin(…).
Part B — one nonlinear edge map (docs/edges.md): σ(W, a) = tanh(W a) for W_3, with i.i.d.
initial noise W_3^0 = 0.5 + 0.5 sin(…) + ω, ω ~ N(0, 1); the limit carries ω as an extra 1-D
index (8 Gauss–Hermite nodes), each network weight draws its own ω.

Expected: output error ∝ n^{−1/2} in both parts; w_1 and v do not move at all.

Criteria (stated before running; quick mode widens each band by twice the replica-noise SE):
* Part A and Part B: output-error rate in [0.35, 0.65];
* frozen ends: the recorded quantiles of w_1 and v in every network are constant in time
  (max change = 0 exactly);
* each limit's discretization error (coarse vs fine rule) is below a third of the smallest
  mean network error.
"""
from __future__ import annotations

import numpy as np

from validation import common
from validation.s5_np_correlated import network_vs_limit

TITLE = "AOY frozen ends (ξ_1 = ξ_{L+1} = 0), linear and nonlinear edge maps"
PAPER = "Araújo, Oliveira & Yukimura, A mean-field limit for certain deep neural networks"
SIZES = {
    "full": {"linear": {"widths": [32, 64, 128, 256, 512, 1024], "replicas": 16, "t_end": 2.0, "eps": 0.05,
                        "rule": 32, "coarse": 24},
             "edge": {"widths": [32, 64, 128, 256], "replicas": 16, "t_end": 2.0, "eps": 0.05, "rule": 20,
                      "coarse": 16}},
    "quick": {"linear": {"widths": [32, 64, 128, 256], "replicas": 16, "t_end": 1.0, "eps": 0.05, "rule": 24,
                         "coarse": 16},
              "edge": {"widths": [32, 64, 128], "replicas": 12, "t_end": 1.0, "eps": 0.05, "rule": 16, "coarse": 12}},
}

# part A is validation/configs/aoy_frozen.toml as it stands; part B differs by these keys
LINEAR: dict = {}
EDGE = {
    "name": "validation_aoy_tanh_product_edge",
    "model": {"input_dim": 2, "hidden": ["tanh", "tanh", "tanh"], "edges": ["linear", "tanh_product"], "loss": "squared"},
    "rules.omega_3": {"kind": "gauss_hermite", "size": 8},
    "init.W_3.m": 0.5,
    "init.W_3.s": 0.5,
    "init.W_3.noise_std": 1.0,
}

def _part(ctx, overrides, sz, label, title, axes):
    c, limit, sol, system, ens, res, disc = network_vs_limit(ctx, "aoy_frozen", sz, coarse=sz["coarse"], label=label,
                                                             overrides=overrides)
    w = res["width"].values
    key = label.strip("_")
    ctx.tables[f"{key}_output_error"] = common.compare_table(res, "output_error")
    ctx.tables[f"{key}_loss_error"] = common.compare_table(res, "loss_error")
    r = common.rate_check(ctx, f"{key}_output_error_rate", w, res["output_error_mean"].values,
                          res["output_error_sem"].values)
    moved = max(float(np.nanmax(np.abs(ens[q].values - ens[q].values[:, :, :1]))) for q in ("quantiles_w_1", "quantiles_v"))
    ctx.check(f"{key}_frozen_ends_max_quantile_change", moved, None, 0.0, expected="0 (w_1 and v frozen)")
    small = float(np.min(res["output_error_mean"].values))
    ctx.extra[f"{key}_limit_discretization_error"] = disc
    ctx.check(f"{key}_limit_discretization_error_over_smallest_network_error", disc / small, None, 1 / 3,
              expected="≪ 1")
    common.time_panel(axes[0], limit, ens, "loss_train", ylabel="train loss")
    axes[0].set_yscale("log"), axes[0].set_title(title)
    common.error_panel(axes[1], w, res["output_error_mean"].values, res["output_error_sem"].values, "output error",
                       r["rate"])
    common.error_panel(axes[1], w, res["loss_error_mean"].values, res["loss_error_sem"].values, "loss error",
                       res.attrs["loss_error_rate"], marker="s")
    common.guide(axes[1], w, res["output_error_mean"].values[0])
    common.loglog(axes[1])


def run(ctx: common.Context) -> None:
    sz = SIZES["quick" if ctx.quick else "full"]
    plt = common.pyplot()
    fig, ax = plt.subplots(2, 2, figsize=(10, 7.5))
    _part(ctx, LINEAR, sz["linear"], "_linear", "frozen ends, linear edges", ax[0])
    _part(ctx, EDGE, sz["edge"], "_edge", "frozen ends, σ(W, a) = tanh(W a) on W_3", ax[1])
    common.save(fig, ctx.figure("errors"))
